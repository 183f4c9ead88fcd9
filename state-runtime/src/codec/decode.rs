//! The decoder: a serde `Deserializer` over a byte slice that reads what
//! [`encode`](super::encode) writes (bincode 2.0.1's standard configuration)
//! and accepts exactly the values bincode's decoder accepts from valid input.
//!
//! Decoding is ours for the same reason as encoding: a restore decodes
//! millions of small keys and values, one call each, and bincode's per-call
//! set-up, its zero-filled byte buffers and its error values were most of a
//! restore's CPU time. The rules are those of the encoder (see its module
//! documentation); equality with bincode is tested over the whole serde
//! data model and on random bytes (`tests` below).
//!
//! Corrupt input gives an error, never a panic or an allocation beyond the
//! input: a string's or byte string's length is checked against the bytes
//! left before anything is read, and serde's own collections cap what they
//! reserve from a length (`size_hint::cautious`). A sequence or map may
//! claim more elements than bytes left (elements of zero bytes, such as
//! `()`, take none), up to [`MAX_ZERO_BYTE_ELEMENTS`]: more is an error, so
//! a corrupt length cannot loop for long.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

/// A sequence or map may claim more elements than bytes left (zero-byte
/// elements) up to this many; bincode's decoder has no such bound.
pub(crate) const MAX_ZERO_BYTE_ELEMENTS: u64 = 1 << 32;

use super::{SINGLE_BYTE_MAX, U16_BYTE, U32_BYTE, U64_BYTE, U128_BYTE};

/// Why bytes could not be decoded.
#[derive(Debug)]
pub(crate) struct DecodeError(String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

impl de::Error for DecodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DecodeError(msg.to_string())
    }
}

/// Decodes a `T` from the start of `bytes`: the value and the bytes it
/// took.
#[inline]
pub(crate) fn decode<T: de::DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), DecodeError> {
    let mut de = Decoder { bytes, pos: 0 };
    let value = T::deserialize(&mut de)?;
    Ok((value, de.pos))
}

/// The input and the position of the next byte.
struct Decoder<'de> {
    bytes: &'de [u8],
    pos: usize,
}

#[cold]
#[inline(never)]
fn unexpected_end(needed: usize, left: usize) -> DecodeError {
    DecodeError(format!(
        "unexpected end of input: {needed} bytes needed, {left} left"
    ))
}

impl<'de> Decoder<'de> {
    #[inline(always)]
    fn left(&self) -> usize {
        self.bytes.len() - self.pos
    }

    #[inline(always)]
    fn take(&mut self, n: usize) -> Result<&'de [u8], DecodeError> {
        match self.bytes.get(self.pos..self.pos.wrapping_add(n)) {
            Some(s) if n <= self.left() => {
                self.pos += n;
                Ok(s)
            }
            _ => Err(unexpected_end(n, self.left())),
        }
    }

    #[inline(always)]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.take(N)?;
        Ok(s.try_into().expect("N bytes"))
    }

    #[inline(always)]
    fn byte(&mut self) -> Result<u8, DecodeError> {
        match self.bytes.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(unexpected_end(1, 0)),
        }
    }

    /// A varint of at most `max_marker`'s width (`U16_BYTE` for a `u16`,
    /// and so on), as a `u128`.
    #[inline(always)]
    fn varint(&mut self, max_marker: u8, ty: &'static str) -> Result<u128, DecodeError> {
        let b = self.byte()?;
        if b <= SINGLE_BYTE_MAX {
            return Ok(u128::from(b));
        }
        self.wide_varint(b, max_marker, ty)
    }

    #[inline(never)]
    fn wide_varint(
        &mut self,
        marker: u8,
        max_marker: u8,
        ty: &'static str,
    ) -> Result<u128, DecodeError> {
        if marker > max_marker {
            return Err(DecodeError(if marker > U128_BYTE {
                format!(
                    "invalid integer marker byte {marker} at byte {}",
                    self.pos - 1
                )
            } else {
                format!(
                    "a {}-byte integer where a {ty} was expected (byte {})",
                    1usize << (marker - U16_BYTE + 1),
                    self.pos - 1
                )
            }));
        }
        Ok(match marker {
            U16_BYTE => u128::from(u16::from_le_bytes(self.array()?)),
            U32_BYTE => u128::from(u32::from_le_bytes(self.array()?)),
            U64_BYTE => u128::from(u64::from_le_bytes(self.array()?)),
            _ => u128::from_le_bytes(self.array()?),
        })
    }

    #[inline(always)]
    fn u64_varint(&mut self) -> Result<u64, DecodeError> {
        self.varint(U64_BYTE, "u64").map(|v| v as u64)
    }

    /// A length, as a `u64` varint, that must fit `usize`.
    #[inline(always)]
    fn len(&mut self) -> Result<usize, DecodeError> {
        let n = self.u64_varint()?;
        usize::try_from(n).map_err(|_| DecodeError(format!("length {n} does not fit in memory")))
    }

    /// A length of `n` bytes that follow.
    #[inline(always)]
    fn byte_len(&mut self) -> Result<usize, DecodeError> {
        let n = self.len()?;
        if n > self.left() {
            return Err(unexpected_end(n, self.left()));
        }
        Ok(n)
    }

    /// A length of elements that follow: more than the bytes left only if
    /// the elements could be of zero bytes (at most `MAX_ZERO_BYTE_ELEMENTS`).
    #[inline(always)]
    fn count(&mut self) -> Result<usize, DecodeError> {
        let n = self.len()?;
        if n > self.left() && n as u64 > MAX_ZERO_BYTE_ELEMENTS {
            return Err(DecodeError(format!(
                "a length of {n} elements with {} bytes left",
                self.left()
            )));
        }
        Ok(n)
    }

    fn str(&mut self) -> Result<&'de str, DecodeError> {
        let n = self.byte_len()?;
        let at = self.pos;
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes)
            .map_err(|e| DecodeError(format!("invalid UTF-8 in a string at byte {at}: {e}")))
    }
}

fn zigzag(v: u128) -> i128 {
    ((v >> 1) as i128) ^ -((v & 1) as i128)
}

macro_rules! unsigned {
    ($($method:ident $visit:ident $ty:ty, $marker:expr;)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
            visitor.$visit(self.varint($marker, stringify!($ty))? as $ty)
        }
    )*};
}

macro_rules! signed {
    ($($method:ident $visit:ident $ty:ty, $marker:expr;)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
            visitor.$visit(zigzag(self.varint($marker, stringify!($ty))?) as $ty)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &mut Decoder<'de> {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, DecodeError> {
        Err(DecodeError(
            "the format is not self-describing: deserialize_any is not supported".into(),
        ))
    }

    #[inline]
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.byte()? {
            0 => visitor.visit_bool(false),
            1 => visitor.visit_bool(true),
            b => Err(DecodeError(format!(
                "invalid bool byte {b} at byte {}",
                self.pos - 1
            ))),
        }
    }

    #[inline]
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_u8(self.byte()?)
    }

    #[inline]
    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_i8(self.byte()? as i8)
    }

    unsigned! {
        deserialize_u16 visit_u16 u16, U16_BYTE;
        deserialize_u32 visit_u32 u32, U32_BYTE;
        deserialize_u64 visit_u64 u64, U64_BYTE;
        deserialize_u128 visit_u128 u128, U128_BYTE;
    }

    signed! {
        deserialize_i16 visit_i16 i16, U16_BYTE;
        deserialize_i32 visit_i32 i32, U32_BYTE;
        deserialize_i64 visit_i64 i64, U64_BYTE;
        deserialize_i128 visit_i128 i128, U128_BYTE;
    }

    #[inline]
    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_f32(f32::from_le_bytes(self.array()?))
    }

    #[inline]
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_f64(f64::from_le_bytes(self.array()?))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let at = self.pos;
        let first = self.byte()?;
        let width = match first {
            0x00..=0x7f => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => 0,
        };
        let invalid = || DecodeError(format!("invalid UTF-8 in a char at byte {at}"));
        if width == 0 {
            return Err(invalid());
        }
        self.take(width - 1)?;
        let c = std::str::from_utf8(&self.bytes[at..self.pos])
            .ok()
            .and_then(|s| s.chars().next())
            .ok_or_else(invalid)?;
        visitor.visit_char(c)
    }

    #[inline]
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_borrowed_str(self.str()?)
    }

    #[inline]
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_borrowed_str(self.str()?)
    }

    #[inline]
    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let n = self.byte_len()?;
        visitor.visit_borrowed_bytes(self.take(n)?)
    }

    #[inline]
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let n = self.byte_len()?;
        visitor.visit_borrowed_bytes(self.take(n)?)
    }

    #[inline]
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.byte()? {
            0 => visitor.visit_none(),
            1 => visitor.visit_some(self),
            b => Err(DecodeError(format!(
                "invalid Option tag {b} at byte {}",
                self.pos - 1
            ))),
        }
    }

    #[inline]
    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_unit()
    }

    #[inline]
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        visitor.visit_unit()
    }

    #[inline]
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        visitor.visit_newtype_struct(self)
    }

    #[inline]
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let len = self.count()?;
        visitor.visit_seq(Elements { de: self, len })
    }

    #[inline]
    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        visitor.visit_seq(Elements { de: self, len })
    }

    #[inline]
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        visitor.visit_seq(Elements { de: self, len })
    }

    #[inline]
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let len = self.count()?;
        visitor.visit_map(Elements { de: self, len })
    }

    #[inline]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        visitor.visit_seq(Elements {
            de: self,
            len: fields.len(),
        })
    }

    #[inline]
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        visitor.visit_enum(self)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, _: V) -> Result<V::Value, DecodeError> {
        Err(DecodeError(
            "identifiers are not encoded: deserialize_identifier is not supported".into(),
        ))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, DecodeError> {
        Err(DecodeError(
            "the format is not self-describing: deserialize_ignored_any is not supported".into(),
        ))
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// The elements of a sequence, tuple, struct or map: `len` more to come.
struct Elements<'a, 'de> {
    de: &'a mut Decoder<'de>,
    len: usize,
}

impl<'de> Elements<'_, 'de> {
    /// The next element (or map key), if `len` says there is one.
    #[inline]
    fn next<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DecodeError> {
        if self.len == 0 {
            return Ok(None);
        }
        self.len -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }
}

impl<'de> de::SeqAccess<'de> for Elements<'_, 'de> {
    type Error = DecodeError;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DecodeError> {
        self.next(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.len)
    }
}

impl<'de> de::MapAccess<'de> for Elements<'_, 'de> {
    type Error = DecodeError;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DecodeError> {
        self.next(seed)
    }

    #[inline]
    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DecodeError> {
        seed.deserialize(&mut *self.de)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.len)
    }
}

impl<'de> de::EnumAccess<'de> for &mut Decoder<'de> {
    type Error = DecodeError;
    type Variant = Self;

    #[inline]
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self), DecodeError> {
        let index = self.varint(U32_BYTE, "u32")? as u32;
        let value = seed.deserialize(IntoDeserializer::<DecodeError>::into_deserializer(index))?;
        Ok((value, self))
    }
}

impl<'de> de::VariantAccess<'de> for &mut Decoder<'de> {
    type Error = DecodeError;

    #[inline]
    fn unit_variant(self) -> Result<(), DecodeError> {
        Ok(())
    }

    #[inline]
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, DecodeError> {
        seed.deserialize(self)
    }

    #[inline]
    fn tuple_variant<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        visitor.visit_seq(Elements { de: self, len })
    }

    #[inline]
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        visitor.visit_seq(Elements {
            de: self,
            len: fields.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use proptest::prelude::*;
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    use super::decode;
    use crate::codec::test_model::{Bytes, Everything, Shape, TupleStruct, edgy_u64, everything};

    /// bincode's decoding of `bytes` as a `T`: the value and the bytes used.
    /// (With a limit: without one bincode allocates what a corrupt length
    /// claims.)
    fn bincode_decode<T: DeserializeOwned>(bytes: &[u8]) -> Option<(T, usize)> {
        let config = bincode::config::standard().with_limit::<{ 1 << 20 }>();
        bincode::serde::decode_from_slice(bytes, config).ok()
    }

    fn bincode_bytes<T: Serialize>(v: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap()
    }

    /// Both decoders on the same bytes: the same value and length, or both
    /// an error.
    fn agree<T: DeserializeOwned + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
        let theirs = bincode_decode::<T>(bytes);
        let ours = decode::<T>(bytes).ok();
        assert_eq!(ours, theirs, "bytes {bytes:?}");
    }

    proptest! {
        #[test]
        fn reads_what_bincode_writes(v in everything(), floats in (any::<f32>(), any::<f64>())) {
            // Compared by their encodings: floats may be NaN.
            let bytes = bincode_bytes(&v);
            let (back, used) = decode::<Everything>(&bytes).unwrap();
            prop_assert_eq!(bincode_bytes(&back), bytes.clone());
            prop_assert_eq!(used, bytes.len());
            // Floats bit for bit (NaNs too).
            let bytes = bincode_bytes(&floats);
            let (back, _) = decode::<(f32, f64)>(&bytes).unwrap();
            prop_assert_eq!((back.0.to_bits(), back.1.to_bits()), (floats.0.to_bits(), floats.1.to_bits()));
            // And every prefix of it is an error, as in bincode.
            let bytes = bincode_bytes(&v);
            for cut in [0, bytes.len() / 3, bytes.len() / 2, bytes.len().saturating_sub(1)] {
                if cut < bytes.len() {
                    prop_assert!(decode::<Everything>(&bytes[..cut]).is_err());
                }
            }
        }

        #[test]
        fn agrees_with_bincode_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            agree::<u16>(&bytes);
            agree::<u32>(&bytes);
            agree::<u64>(&bytes);
            agree::<u128>(&bytes);
            agree::<i16>(&bytes);
            agree::<i32>(&bytes);
            agree::<i64>(&bytes);
            agree::<i128>(&bytes);
            agree::<bool>(&bytes);
            agree::<char>(&bytes);
            agree::<String>(&bytes);
            agree::<Bytes>(&bytes);
            agree::<Vec<u8>>(&bytes);
            agree::<Option<u32>>(&bytes);
            agree::<(u8, String, Option<i64>)>(&bytes);
            agree::<Vec<Shape>>(&bytes);
            agree::<BTreeMap<u16, String>>(&bytes);
            agree::<HashMap<u8, Vec<u32>>>(&bytes);
            agree::<TupleStruct>(&bytes);
        }

        #[test]
        fn integers_near_every_marker_agree(v in edgy_u64(), w in any::<u128>(), marker in 251u8..=255) {
            for bytes in [
                bincode_bytes(&v),
                bincode_bytes(&w),
                bincode_bytes(&(v as i64)),
                [&[marker][..], &v.to_le_bytes(), &w.to_le_bytes()].concat(),
            ] {
                agree::<u16>(&bytes);
                agree::<u32>(&bytes);
                agree::<u64>(&bytes);
                agree::<u128>(&bytes);
                agree::<usize>(&bytes);
                agree::<i16>(&bytes);
                agree::<i32>(&bytes);
                agree::<i64>(&bytes);
                agree::<i128>(&bytes);
                agree::<isize>(&bytes);
            }
        }
    }

    /// A `Vec<u8>` (a sequence of bytes) and a byte string encode alike, so
    /// a state may switch between them (`serde_bytes` is much faster).
    #[test]
    fn byte_sequences_and_byte_strings_are_interchangeable() {
        for v in [vec![], vec![7u8], (0..=255).collect::<Vec<u8>>()] {
            let seq = bincode_bytes(&v);
            assert_eq!(seq, bincode_bytes(&Bytes(v.clone())));
            assert_eq!(
                decode::<Bytes>(&seq).unwrap(),
                (Bytes(v.clone()), seq.len())
            );
            assert_eq!(decode::<Vec<u8>>(&seq).unwrap(), (v, seq.len()));
        }
    }

    /// Sequences and maps of zero-byte elements longer than the input, as
    /// the encoder writes them, decode (up to a bound far past any real
    /// state).
    #[test]
    fn long_sequences_of_zero_byte_elements_decode() {
        #[derive(Serialize, serde::Deserialize, Debug, PartialEq)]
        struct Marker;
        let units = vec![(); 100_000];
        let markers: Vec<Marker> = (0..70_000).map(|_| Marker).collect();
        for bytes in [bincode_bytes(&units), bincode_bytes(&(7u8, &units))] {
            agree::<(u8, Vec<()>)>(&bytes);
        }
        assert_eq!(decode::<Vec<()>>(&bincode_bytes(&units)).unwrap().0, units);
        assert_eq!(
            decode::<Vec<Marker>>(&bincode_bytes(&markers)).unwrap().0,
            markers
        );
        let mut too_long = vec![253];
        too_long.extend_from_slice(&((1u64 << 32) + 1).to_le_bytes());
        let e = decode::<Vec<()>>(&too_long).unwrap_err().to_string();
        assert!(e.contains("a length of 4294967297 elements"), "{e}");
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let err = |bytes: &[u8]| decode::<(bool, String)>(bytes).unwrap_err().to_string();
        assert!(err(&[2]).contains("invalid bool byte 2"), "{}", err(&[2]));
        assert!(
            err(&[1, 5, b'a']).contains("5 bytes needed, 1 left"),
            "{}",
            err(&[1, 5, b'a'])
        );
        assert!(err(&[1, 2, 0xff, 0xfe]).contains("invalid UTF-8"));
        let e = decode::<u16>(&[252, 0, 0, 1, 0]).unwrap_err().to_string();
        assert!(e.contains("4-byte integer where a u16 was expected"), "{e}");
        let e = decode::<u64>(&[255]).unwrap_err().to_string();
        assert!(e.contains("invalid integer marker byte 255"), "{e}");
    }
}
