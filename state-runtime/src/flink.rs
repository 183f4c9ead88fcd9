//! Flink-compatible key assignment: the same key group and the same subtask
//! for a key as Apache Flink (checked against vectors produced by Flink 2.3.0's
//! own classes), so a Rust operator and a Flink job agree on who owns a key.
//!
//! * [`murmur_hash`] (Flink's
//!   `MathUtils.murmurHash(int)`) and [`JavaHashCode`]
//!   (Java's `hashCode()`) live in [`hash`](crate::hash), with the other hashes.
//! * [`assign_to_key_group`]: `murmurHash(key.hashCode()) % maxParallelism`.
//! * the range and operator-index formulas of `KeyGroupRangeAssignment`, and
//!   `computeDefaultMaxParallelism`.
//!
//! ```
//! use state_runtime::flink;
//!
//! assert_eq!(state_runtime::hash::murmur_hash(0), 593_689_054);
//! assert_eq!(flink::assign_to_key_group(&"", 128)?, 94);
//! assert_eq!(flink::compute_default_max_parallelism(100)?, 256);
//! let r = flink::compute_key_group_range_for_operator_index(128, 3, 2)?;
//! assert_eq!((r.start(), r.last()), (86, Some(127)));
//! assert_eq!(flink::compute_operator_index_for_key_group(128, 3, 86)?, 2);
//! # Ok::<(), state_runtime::StateError>(())
//! ```

use crate::error::StateError;
use crate::hash::{JavaHashCode, murmur_hash};
use crate::keygroup::{self, KeyGroup, KeyGroupRange, MaxParallelism};

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
    parallelism: usize,
) -> Result<usize, StateError> {
    let kg = assign_to_key_group(key, max_parallelism)?;
    compute_operator_index_for_key_group(max_parallelism, parallelism, kg)
}

/// Flink's `computeKeyGroupRangeForOperatorIndex(maxP, p, operatorIndex)`.
///
/// Unlike Flink, an `operator_index >= parallelism` is an error rather than a
/// range past the end.
pub fn compute_key_group_range_for_operator_index(
    max_parallelism: u32,
    parallelism: usize,
    operator_index: usize,
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
    parallelism: usize,
    key_group: KeyGroup,
) -> Result<usize, StateError> {
    keygroup::subtask_for_key_group(
        MaxParallelism::new(max_parallelism)?,
        parallelism,
        key_group,
    )
}

/// Flink's `computeDefaultMaxParallelism(parallelism)`.
pub fn compute_default_max_parallelism(parallelism: usize) -> Result<u32, StateError> {
    MaxParallelism::default_for(parallelism).map(MaxParallelism::get)
}
