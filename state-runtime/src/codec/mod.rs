//! All encoding of user items goes through this module, so that the codec
//! (bincode 2 over serde, standard configuration) could be swapped in one
//! place. Encoding and decoding are our own serializer ([`encode`]) and
//! deserializer ([`decode`]), which write and read bincode's bytes without
//! its per-call layers.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StateError;

mod decode;
mod encode;

/// The varint of bincode's standard configuration: values up to this are
/// one byte; larger ones are a marker byte and the value little-endian in 2,
/// 4, 8 or 16 bytes.
const SINGLE_BYTE_MAX: u8 = 250;
const U16_BYTE: u8 = 251;
const U32_BYTE: u8 = 252;
const U64_BYTE: u8 = 253;
const U128_BYTE: u8 = 254;
#[cfg(test)]
mod test_model;

/// Appends the encoding of `value` to `out` (the bytes bincode's serde
/// encoder writes with the standard configuration; see [`encode`]).
#[inline]
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
    state: &str,
) -> Result<(), StateError> {
    encode::encode(value, out).map_err(|e| StateError::Encode {
        state: state.to_owned(),
        message: e.to_string(),
    })
}

/// Decodes one value that must span all of `bytes`.
pub(crate) fn decode_exact<T: DeserializeOwned>(
    bytes: &[u8],
    state: &str,
) -> Result<T, StateError> {
    let (value, used) = decode_with::<T>(bytes, state)?;
    if used != bytes.len() {
        return Err(StateError::Decode {
            state: state.to_owned(),
            message: format!("{} trailing bytes after the item", bytes.len() - used),
        });
    }
    Ok(value)
}

/// Decodes one value from the front of `bytes`, returning it and the number of
/// bytes it used.
pub(crate) fn decode_prefix<T: DeserializeOwned>(
    bytes: &[u8],
    state: &str,
) -> Result<(T, usize), StateError> {
    decode_with(bytes, state)
}

/// Decodes with a bincode limit proportional to the input, so that a corrupt
/// length prefix cannot make the codec allocate more than a small multiple of
/// the input: bincode claims every decoded primitive's in-memory size (at
/// most 16 bytes per encoded byte, for a one-byte varint `u128`) and every
/// container's `len * size_of::<T>()` before allocating it. Valid data never
/// claims more than `16 * bytes.len()`; the limit is the next power-of-four
/// tier above it (a const generic in bincode). Only inputs of more than
/// 64 GiB (64 MiB on 32-bit targets) are decoded without a limit.
fn decode_with<T: DeserializeOwned>(bytes: &[u8], state: &str) -> Result<(T, usize), StateError> {
    decode::decode(bytes).map_err(|e| StateError::Decode {
        state: state.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_trailing_bytes() {
        let mut buf = Vec::new();
        encode_into(&(7u32, "abc".to_string()), &mut buf, "s").unwrap();
        let back: (u32, String) = decode_exact(&buf, "s").unwrap();
        assert_eq!(back, (7, "abc".to_string()));
        buf.push(0);
        let err = decode_exact::<(u32, String)>(&buf, "s").unwrap_err();
        assert!(err.to_string().contains("1 trailing bytes"), "{err}");
        let (v, used) = decode_prefix::<(u32, String)>(&buf, "s").unwrap();
        assert_eq!((v.0, used), (7, buf.len() - 1));
    }

    #[test]
    fn corrupt_lengths_do_not_allocate() {
        // A String, bytes and a Vec whose length prefix says 2^62.
        let mut buf = vec![0xfd];
        buf.extend_from_slice(&(1u64 << 62).to_le_bytes());
        buf.extend_from_slice(b"abc");
        assert!(decode_prefix::<String>(&buf, "s").is_err());
        assert!(decode_prefix::<Vec<u8>>(&buf, "s").is_err());
        assert!(decode_prefix::<Vec<u64>>(&buf, "s").is_err());
        assert!(decode_exact::<std::collections::HashMap<u8, u8>>(&buf, "s").is_err());
    }

    #[test]
    fn the_limit_admits_valid_data_of_every_density() {
        // One-byte varints that decode to 16 bytes each: the densest case.
        let v: Vec<u128> = vec![1; 10_000];
        let mut buf = Vec::new();
        encode_into(&v, &mut buf, "s").unwrap();
        assert_eq!(decode_exact::<Vec<u128>>(&buf, "s").unwrap(), v);
        let s: Vec<String> = (0..1000).map(|i| "x".repeat(i % 50)).collect();
        let mut buf = Vec::new();
        encode_into(&s, &mut buf, "s").unwrap();
        assert_eq!(decode_exact::<Vec<String>>(&buf, "s").unwrap(), s);
        let mut buf = Vec::new();
        encode_into(&(), &mut buf, "s").unwrap();
        decode_exact::<()>(&buf, "s").unwrap();
    }
}
