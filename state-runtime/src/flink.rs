//! Flink-compatible key assignment: the same key group and the same subtask
//! for a key as Apache Flink (checked against vectors produced by Flink 2.3.0's
//! own classes), so a Rust operator and a Flink job agree on who owns a key.
//!
//! * [`murmur_hash`]: Flink's `MathUtils.murmurHash(int)`.
//! * [`JavaHashCode`]: Java's `hashCode()` for `i32` (`Integer`), `i64`
//!   (`Long`) and strings (`String`, over UTF-16 code units).
//! * [`assign_to_key_group`]: `murmurHash(key.hashCode()) % maxParallelism`.
//! * the range and operator-index formulas of `KeyGroupRangeAssignment`, and
//!   `computeDefaultMaxParallelism`.
//!
//! ```
//! use state_runtime::flink;
//!
//! assert_eq!(flink::murmur_hash(0), 593_689_054);
//! assert_eq!(flink::assign_to_key_group(&"", 128)?, 94);
//! assert_eq!(flink::compute_default_max_parallelism(100)?, 256);
//! let r = flink::compute_key_group_range_for_operator_index(128, 3, 2)?;
//! assert_eq!((r.start(), r.last()), (86, Some(127)));
//! assert_eq!(flink::compute_operator_index_for_key_group(128, 3, 86)?, 2);
//! # Ok::<(), state_runtime::StateError>(())
//! ```

use crate::error::StateError;
use crate::keygroup::{self, KeyGroup, KeyGroupRange, MaxParallelism};

/// Flink's `MathUtils.murmurHash(int)`: the murmur3 32-bit mix of one int
/// (seed 0, length 4), then the absolute value, with `i32::MIN` mapped to 0.
/// The result is never negative.
#[inline]
pub const fn murmur_hash(code: i32) -> i32 {
    let mut h = code as u32;
    h = h.wrapping_mul(0xcc9e_2d51);
    h = h.rotate_left(15);
    h = h.wrapping_mul(0x1b87_3593);
    h = h.rotate_left(13);
    h = h.wrapping_mul(5).wrapping_add(0xe654_6b64);
    h ^= 4;
    // fmix32
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    let h = h as i32;
    if h >= 0 {
        h
    } else if h != i32::MIN {
        -h
    } else {
        0
    }
}

/// Java's `Object.hashCode()` for the Rust type that corresponds to a Java
/// boxed type.
pub trait JavaHashCode {
    /// The value Java's `hashCode()` returns for the equivalent Java object.
    fn java_hash_code(&self) -> i32;
}

impl JavaHashCode for i32 {
    /// `Integer.hashCode()`: the value itself.
    #[inline]
    fn java_hash_code(&self) -> i32 {
        *self
    }
}

impl JavaHashCode for i64 {
    /// `Long.hashCode()`: `(int) (value ^ (value >>> 32))`.
    #[inline]
    fn java_hash_code(&self) -> i32 {
        let v = *self as u64;
        (v ^ (v >> 32)) as i32
    }
}

impl JavaHashCode for str {
    /// `String.hashCode()`: `s[0]*31^(n-1) + ... + s[n-1]` over the UTF-16
    /// code units, in wrapping 32-bit arithmetic.
    #[inline]
    fn java_hash_code(&self) -> i32 {
        java_string_hash(self)
    }
}

impl JavaHashCode for String {
    #[inline]
    fn java_hash_code(&self) -> i32 {
        java_string_hash(self)
    }
}

impl<T: JavaHashCode + ?Sized> JavaHashCode for &T {
    #[inline]
    fn java_hash_code(&self) -> i32 {
        (**self).java_hash_code()
    }
}

const P1: u32 = 31;
const P2: u32 = P1.wrapping_mul(31);
const P3: u32 = P2.wrapping_mul(31);
const P4: u32 = P3.wrapping_mul(31);
const P5: u32 = P4.wrapping_mul(31);
const P6: u32 = P5.wrapping_mul(31);
const P7: u32 = P6.wrapping_mul(31);
const P8: u32 = P7.wrapping_mul(31);

/// Java's `String.hashCode()` of `s`.
///
/// ASCII runs (one UTF-16 unit per byte) are hashed eight bytes at a time,
/// `h * 31^8 + b0 * 31^7 + ... + b7`, then four, then one by one: the
/// products are independent, which breaks the serial `* 31` dependency chain.
/// Anything after the first non-ASCII byte goes through `encode_utf16`.
#[inline]
fn java_string_hash(s: &str) -> i32 {
    let bytes = s.as_bytes();
    let mut h: u32 = 0;
    let mut i = 0;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        if word & 0x8080_8080_8080_8080 != 0 {
            break;
        }
        let b = |k: usize| chunk[k] as u32;
        let sum = (b(0).wrapping_mul(P7))
            .wrapping_add(b(1).wrapping_mul(P6))
            .wrapping_add(b(2).wrapping_mul(P5))
            .wrapping_add(b(3).wrapping_mul(P4))
            .wrapping_add(b(4).wrapping_mul(P3))
            .wrapping_add(b(5).wrapping_mul(P2))
            .wrapping_add(b(6).wrapping_mul(P1))
            .wrapping_add(b(7));
        h = h.wrapping_mul(P8).wrapping_add(sum);
        i += 8;
    }
    if let Some(chunk) = bytes.get(i..i + 4) {
        let word = u32::from_le_bytes(chunk.try_into().expect("4 bytes"));
        if word & 0x8080_8080 == 0 {
            let b = |k: usize| chunk[k] as u32;
            let sum = (b(0).wrapping_mul(P3))
                .wrapping_add(b(1).wrapping_mul(P2))
                .wrapping_add(b(2).wrapping_mul(P1))
                .wrapping_add(b(3));
            h = h.wrapping_mul(P4).wrapping_add(sum);
            i += 4;
        }
    }
    while let Some(&b) = bytes.get(i) {
        if b >= 0x80 {
            // Everything before `i` was ASCII, so `i` is a char boundary.
            for unit in s[i..].encode_utf16() {
                h = h.wrapping_mul(31).wrapping_add(unit as u32);
            }
            return h as i32;
        }
        h = h.wrapping_mul(31).wrapping_add(b as u32);
        i += 1;
    }
    h as i32
}

/// The key group of a Java hash code: `murmurHash(code) % maxParallelism`
/// (Flink's `computeKeyGroupForKeyHash`).
#[inline]
pub const fn key_group_for_hash_code(code: i32, max_parallelism: MaxParallelism) -> KeyGroup {
    max_parallelism.reduce(murmur_hash(code) as u32)
}

/// Flink's `KeyGroupRangeAssignment.assignToKeyGroup(key, maxParallelism)`.
pub fn assign_to_key_group<K: JavaHashCode + ?Sized>(
    key: &K,
    max_parallelism: u32,
) -> Result<KeyGroup, StateError> {
    let max_p = MaxParallelism::new(max_parallelism)?;
    Ok(key_group_for_hash_code(key.java_hash_code(), max_p))
}

/// Flink's `assignKeyToParallelOperator(key, maxParallelism, parallelism)`:
/// the subtask that owns `key`.
pub fn assign_key_to_parallel_operator<K: JavaHashCode + ?Sized>(
    key: &K,
    max_parallelism: u32,
    parallelism: u32,
) -> Result<u32, StateError> {
    let kg = assign_to_key_group(key, max_parallelism)?;
    compute_operator_index_for_key_group(max_parallelism, parallelism, kg)
}

/// Flink's `computeKeyGroupRangeForOperatorIndex(maxP, p, operatorIndex)`.
///
/// Unlike Flink, an `operator_index >= parallelism` is an error rather than a
/// range past the end.
pub fn compute_key_group_range_for_operator_index(
    max_parallelism: u32,
    parallelism: u32,
    operator_index: u32,
) -> Result<KeyGroupRange, StateError> {
    keygroup::key_group_range_for_subtask(
        MaxParallelism::new(max_parallelism)?,
        parallelism,
        operator_index,
    )
}

/// Flink's `computeOperatorIndexForKeyGroup(maxP, p, keyGroup)`.
pub fn compute_operator_index_for_key_group(
    max_parallelism: u32,
    parallelism: u32,
    key_group: KeyGroup,
) -> Result<u32, StateError> {
    keygroup::subtask_for_key_group(
        MaxParallelism::new(max_parallelism)?,
        parallelism,
        key_group,
    )
}

/// Flink's `computeDefaultMaxParallelism(parallelism)`.
pub fn compute_default_max_parallelism(parallelism: u32) -> Result<u32, StateError> {
    MaxParallelism::default_for(parallelism).map(MaxParallelism::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference_string_hash(s: &str) -> i32 {
        s.encode_utf16()
            .fold(0u32, |h, u| h.wrapping_mul(31).wrapping_add(u as u32)) as i32
    }

    #[test]
    fn string_fast_path_matches_utf16_loop() {
        for s in [
            "",
            "a",
            "abcdefgh",
            "abcdefghi",
            "customer-000042",
            "héllo wörld, ascii again and again",
            "12345678é",
            "😀 astral",
            "abcdefgh😀abcdefgh",
        ] {
            assert_eq!(java_string_hash(s), reference_string_hash(s), "{s:?}");
        }
    }
}
