//! All encoding of user items goes through this module, so that the codec
//! (bincode 2 over serde, standard configuration) could be swapped in one
//! place.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StateError;

const CONFIG: bincode::config::Configuration = bincode::config::standard();

/// Appends the encoding of `value` to `out`.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
    state: &str,
) -> Result<(), StateError> {
    bincode::serde::encode_into_std_write(value, out, CONFIG)
        .map(|_| ())
        .map_err(|e| StateError::Encode {
            state: state.to_owned(),
            message: e.to_string(),
        })
}

/// Decodes one value that must span all of `bytes`.
// Not used by keyed state (which decodes entry by entry); kept for operator state.
#[allow(dead_code)]
pub(crate) fn decode_exact<T: DeserializeOwned>(
    bytes: &[u8],
    state: &str,
) -> Result<T, StateError> {
    let (value, used) = bincode::serde::decode_from_slice::<T, _>(bytes, CONFIG).map_err(|e| {
        StateError::Decode {
            state: state.to_owned(),
            message: e.to_string(),
        }
    })?;
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
    bincode::serde::decode_from_slice::<T, _>(bytes, CONFIG).map_err(|e| StateError::Decode {
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
}
