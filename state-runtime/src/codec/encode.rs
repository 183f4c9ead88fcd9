//! The encoder: a serde `Serializer` that writes exactly what bincode 2.0.1's
//! serde encoder writes with the standard configuration (little endian,
//! variable-length integers), straight into a `Vec<u8>`.
//!
//! Decoding stays with bincode; encoding is ours because it is a snapshot's
//! hot path (millions of small keys and values, one call each) and bincode's
//! varint writer is not inlined there. Byte-for-byte equality with bincode is
//! tested over the whole serde data model (`tests` below).
//!
//! The rules, as in bincode:
//! * `u8`, `i8`, `bool`: one byte. `f32`, `f64`: little-endian bytes. `char`:
//!   its UTF-8 bytes.
//! * `u16`..`u128`, `usize`: a varint: below 251 one byte; else a marker
//!   byte (251 for 2 bytes, 252 for 4, 253 for 8, 254 for 16) and the value
//!   little-endian in the smallest of those widths that holds it (never
//!   wider than the type).
//! * `i16`..`i128`, `isize`: zigzag (`0, -1, 1, -2, ...` to `0, 1, 2, 3, ...`),
//!   then as unsigned.
//! * strings and byte strings: the length as `u64`, then the bytes;
//!   sequences and maps: the length, then the elements (a length is
//!   required); `None` 0, `Some` 1 then the value; enum variants: the variant
//!   index as `u32`, then the fields; units write nothing.

use std::fmt;

use serde::ser::{self, Serialize};

use super::{SINGLE_BYTE_MAX, U16_BYTE, U32_BYTE, U64_BYTE, U128_BYTE};

/// Why a value could not be encoded.
#[derive(Debug)]
pub(crate) struct EncodeError(String);

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EncodeError {}

impl ser::Error for EncodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        EncodeError(msg.to_string())
    }
}

/// Appends `value`'s encoding to `out`.
#[inline]
pub(crate) fn encode<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    value.serialize(Encoder(out))
}

#[inline(always)]
fn varint_u64(out: &mut Vec<u8>, v: u64) {
    if v <= u64::from(SINGLE_BYTE_MAX) {
        out.push(v as u8);
    } else if v <= u64::from(u16::MAX) {
        out.push(U16_BYTE);
        out.extend_from_slice(&(v as u16).to_le_bytes());
    } else if v <= u64::from(u32::MAX) {
        out.push(U32_BYTE);
        out.extend_from_slice(&(v as u32).to_le_bytes());
    } else {
        out.push(U64_BYTE);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

#[inline(always)]
fn varint_u128(out: &mut Vec<u8>, v: u128) {
    if v <= u128::from(u64::MAX) {
        varint_u64(out, v as u64);
    } else {
        out.push(U128_BYTE);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

#[inline(always)]
fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline(always)]
fn len(out: &mut Vec<u8>, len: Option<usize>) -> Result<(), EncodeError> {
    match len {
        Some(n) => {
            varint_u64(out, n as u64);
            Ok(())
        }
        None => Err(EncodeError(
            "sequences and maps must have a known length".to_owned(),
        )),
    }
}

/// The serializer: a `Vec` to append to.
struct Encoder<'a>(&'a mut Vec<u8>);

impl<'a> ser::Serializer for Encoder<'a> {
    type Ok = ();
    type Error = EncodeError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    #[inline]
    fn serialize_bool(self, v: bool) -> Result<(), EncodeError> {
        self.0.push(u8::from(v));
        Ok(())
    }
    #[inline]
    fn serialize_i8(self, v: i8) -> Result<(), EncodeError> {
        self.0.push(v as u8);
        Ok(())
    }
    #[inline]
    fn serialize_i16(self, v: i16) -> Result<(), EncodeError> {
        self.serialize_u16(((v << 1) ^ (v >> 15)) as u16)
    }
    #[inline]
    fn serialize_i32(self, v: i32) -> Result<(), EncodeError> {
        self.serialize_u32(((v << 1) ^ (v >> 31)) as u32)
    }
    #[inline]
    fn serialize_i64(self, v: i64) -> Result<(), EncodeError> {
        varint_u64(self.0, zigzag64(v));
        Ok(())
    }
    #[inline]
    fn serialize_i128(self, v: i128) -> Result<(), EncodeError> {
        varint_u128(self.0, ((v << 1) ^ (v >> 127)) as u128);
        Ok(())
    }
    #[inline]
    fn serialize_u8(self, v: u8) -> Result<(), EncodeError> {
        self.0.push(v);
        Ok(())
    }
    #[inline]
    fn serialize_u16(self, v: u16) -> Result<(), EncodeError> {
        varint_u64(self.0, u64::from(v));
        Ok(())
    }
    #[inline]
    fn serialize_u32(self, v: u32) -> Result<(), EncodeError> {
        varint_u64(self.0, u64::from(v));
        Ok(())
    }
    #[inline]
    fn serialize_u64(self, v: u64) -> Result<(), EncodeError> {
        varint_u64(self.0, v);
        Ok(())
    }
    #[inline]
    fn serialize_u128(self, v: u128) -> Result<(), EncodeError> {
        varint_u128(self.0, v);
        Ok(())
    }
    #[inline]
    fn serialize_f32(self, v: f32) -> Result<(), EncodeError> {
        self.0.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    #[inline]
    fn serialize_f64(self, v: f64) -> Result<(), EncodeError> {
        self.0.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    #[inline]
    fn serialize_char(self, v: char) -> Result<(), EncodeError> {
        let mut buf = [0u8; 4];
        self.0.extend_from_slice(v.encode_utf8(&mut buf).as_bytes());
        Ok(())
    }
    #[inline]
    fn serialize_str(self, v: &str) -> Result<(), EncodeError> {
        self.serialize_bytes(v.as_bytes())
    }
    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result<(), EncodeError> {
        varint_u64(self.0, v.len() as u64);
        self.0.extend_from_slice(v);
        Ok(())
    }
    #[inline]
    fn serialize_none(self) -> Result<(), EncodeError> {
        self.0.push(0);
        Ok(())
    }
    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), EncodeError> {
        self.0.push(1);
        value.serialize(self)
    }
    #[inline]
    fn serialize_unit(self) -> Result<(), EncodeError> {
        Ok(())
    }
    #[inline]
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), EncodeError> {
        Ok(())
    }
    #[inline]
    fn serialize_unit_variant(
        self,
        _: &'static str,
        variant_index: u32,
        _: &'static str,
    ) -> Result<(), EncodeError> {
        self.serialize_u32(variant_index)
    }
    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        value.serialize(self)
    }
    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        variant_index: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        varint_u64(self.0, u64::from(variant_index));
        value.serialize(self)
    }
    #[inline]
    fn serialize_seq(self, n: Option<usize>) -> Result<Self, EncodeError> {
        len(self.0, n)?;
        Ok(self)
    }
    #[inline]
    fn serialize_tuple(self, _: usize) -> Result<Self, EncodeError> {
        Ok(self)
    }
    #[inline]
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, EncodeError> {
        Ok(self)
    }
    #[inline]
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        variant_index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, EncodeError> {
        varint_u64(self.0, u64::from(variant_index));
        Ok(self)
    }
    #[inline]
    fn serialize_map(self, n: Option<usize>) -> Result<Self, EncodeError> {
        len(self.0, n)?;
        Ok(self)
    }
    #[inline]
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, EncodeError> {
        Ok(self)
    }
    #[inline]
    fn serialize_struct_variant(
        self,
        _: &'static str,
        variant_index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, EncodeError> {
        varint_u64(self.0, u64::from(variant_index));
        Ok(self)
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

/// The compound serializers: each element or field in turn.
macro_rules! compound {
    ($($trait:ident :: $method:ident),* $(,)?) => {$(
        impl ser::$trait for Encoder<'_> {
            type Ok = ();
            type Error = EncodeError;
            #[inline]
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
                value.serialize(Encoder(self.0))
            }
            #[inline]
            fn end(self) -> Result<(), EncodeError> {
                Ok(())
            }
        }
    )*};
}

compound!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

impl ser::SerializeMap for Encoder<'_> {
    type Ok = ();
    type Error = EncodeError;
    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), EncodeError> {
        key.serialize(Encoder(self.0))
    }
    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        value.serialize(Encoder(self.0))
    }
    #[inline]
    fn end(self) -> Result<(), EncodeError> {
        Ok(())
    }
}

/// The struct serializers: each field in turn, names unwritten.
macro_rules! fields {
    ($($trait:ident),* $(,)?) => {$(
        impl ser::$trait for Encoder<'_> {
            type Ok = ();
            type Error = EncodeError;
            #[inline]
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                _: &'static str,
                value: &T,
            ) -> Result<(), EncodeError> {
                value.serialize(Encoder(self.0))
            }
            #[inline]
            fn end(self) -> Result<(), EncodeError> {
                Ok(())
            }
        }
    )*};
}

fields!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::Serialize;

    use super::encode;
    use crate::codec::test_model::{edgy_u64, everything};

    fn bincode_bytes<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap()
    }

    fn ours<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
        let mut out = vec![0xAA]; // appends: what was there stays
        encode(v, &mut out).unwrap();
        assert_eq!(out[0], 0xAA);
        out.remove(0);
        out
    }

    proptest! {
        #[test]
        fn writes_what_bincode_writes(v in everything()) {
            prop_assert_eq!(ours(&v), bincode_bytes(&v));
        }

        #[test]
        fn integers_at_every_width_write_what_bincode_writes(v in edgy_u64(), w in any::<u128>()) {
            prop_assert_eq!(ours(&(v as u16)), bincode_bytes(&(v as u16)));
            prop_assert_eq!(ours(&(v as i16)), bincode_bytes(&(v as i16)));
            prop_assert_eq!(ours(&(v as u32)), bincode_bytes(&(v as u32)));
            prop_assert_eq!(ours(&(v as i32)), bincode_bytes(&(v as i32)));
            prop_assert_eq!(ours(&v), bincode_bytes(&v));
            prop_assert_eq!(ours(&(v as i64)), bincode_bytes(&(v as i64)));
            prop_assert_eq!(ours(&w), bincode_bytes(&w));
            prop_assert_eq!(ours(&(w as i128)), bincode_bytes(&(w as i128)));
            prop_assert_eq!(ours(&u128::from(v)), bincode_bytes(&u128::from(v)));
        }
    }

    #[test]
    fn sequences_without_a_length_are_errors_as_in_bincode() {
        struct Unsized;
        impl Serialize for Unsized {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                let mut seq = s.serialize_seq(None)?;
                seq.serialize_element(&1u8)?;
                seq.end()
            }
        }
        let mut out = Vec::new();
        assert!(encode(&Unsized, &mut out).is_err());
        assert!(bincode::serde::encode_to_vec(&Unsized, bincode::config::standard()).is_err());
    }

    #[test]
    fn display_values_are_collected_as_strings() {
        let v = std::net::Ipv4Addr::new(10, 0, 0, 1);
        assert_eq!(ours(&v), bincode_bytes(&v));
        let d = std::time::Duration::new(5, 7);
        assert_eq!(ours(&d), bincode_bytes(&d));
    }
}
