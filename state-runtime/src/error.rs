//! The one error type of the runtime.

use std::path::PathBuf;

/// Everything that can go wrong while assigning keys, snapshotting, planning a
/// rescale or restoring state.
///
/// Every variant carries what a user needs to act on it: the state's name, the
/// file and offset, the expected and the found value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A parallelism of zero was given.
    #[error("parallelism must be at least 1, got 0")]
    ZeroParallelism,

    /// A max parallelism outside `1..=32768`.
    #[error("max parallelism must be in 1..={max}, got {got}", max = crate::keygroup::UPPER_BOUND_MAX_PARALLELISM)]
    InvalidMaxParallelism {
        /// The rejected value.
        got: u64,
    },

    /// More parallel instances than key groups.
    #[error("parallelism {parallelism} exceeds max parallelism {max_parallelism}")]
    ParallelismAboveMax {
        /// The requested parallelism.
        parallelism: u32,
        /// The configured max parallelism (the number of key groups).
        max_parallelism: u32,
    },

    /// A subtask index that is not below the parallelism.
    #[error("subtask index {subtask} out of range for parallelism {parallelism}")]
    SubtaskOutOfRange {
        /// The rejected index.
        subtask: u32,
        /// The parallelism it was checked against.
        parallelism: u32,
    },

    /// A key group index that is not below the max parallelism.
    #[error("key group {key_group} out of range for max parallelism {max_parallelism}")]
    KeyGroupOutOfRange {
        /// The rejected key group.
        key_group: u32,
        /// The max parallelism it was checked against.
        max_parallelism: u32,
    },

    /// Flink-compatible assignment was asked for a key type without a Java
    /// `hashCode()` (see `flink::JavaHashCode`).
    #[error(
        "key type `{key_type}` has no Java hashCode(), so it cannot be assigned in Flink mode; use the native assigner or a key of type i32, i64 or String"
    )]
    KeyNotFlinkCompatible {
        /// The key's Rust type.
        key_type: &'static str,
    },

    /// A key of keyed state hashes to a key group this instance does not own
    /// (or a key group outside the owned range was asked for). Nothing was
    /// read or written.
    #[error(
        "keyed state `{state}`: key group {key_group} is outside this instance's key groups {range}"
    )]
    KeyGroupOutsideRange {
        /// The keyed state.
        state: String,
        /// The key group of the key, under the state's assigner.
        key_group: u32,
        /// The key groups this instance owns.
        range: crate::keygroup::KeyGroupRange,
    },

    /// Keyed state was used before the runtime bound it to an assigner and a
    /// key-group range.
    #[error(
        "keyed state `{state}` is not bound to a key-group range yet; bind it (KeyedState::bind) before use"
    )]
    KeyedStateUnbound {
        /// The keyed state.
        state: String,
    },

    /// A Flink-mode checkpoint is restored with another max parallelism.
    /// Flink's `murmur % max_parallelism` would move nearly every key to
    /// another key group, so Flink refuses this, and so do we.
    #[error(
        "max parallelism changed from {old} to {new}, which Flink-compatible assignment does not allow (keys would move between key groups); keep max parallelism {old} or use the native assigner"
    )]
    MaxParallelismChanged {
        /// Max parallelism of the checkpoint.
        old: u32,
        /// Max parallelism asked for.
        new: u32,
    },

    /// A checkpoint is restored with another kind of key-group assigner.
    #[error(
        "the checkpoint's keyed state was assigned with the {old} assigner, it cannot be restored with the {new} assigner"
    )]
    AssignerKindChanged {
        /// The checkpoint's assigner kind.
        old: crate::keygroup::AssignerKind,
        /// The assigner kind asked for.
        new: crate::keygroup::AssignerKind,
    },

    /// Encoding a state item failed.
    #[error("could not encode an item of state `{state}`: {message}")]
    Encode {
        /// The state being written.
        state: String,
        /// The codec's message.
        message: String,
    },

    /// Decoding a state item failed (corrupt data or a changed item type).
    #[error("could not decode an item of state `{state}`: {message}")]
    Decode {
        /// The state being read.
        state: String,
        /// The codec's message.
        message: String,
    },

    /// An I/O error, with the file it happened on.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}
