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
        parallelism: usize,
        /// The configured max parallelism (the number of key groups).
        max_parallelism: u32,
    },

    /// A subtask index that is not below the parallelism.
    #[error("subtask index {subtask} out of range for parallelism {parallelism}")]
    SubtaskOutOfRange {
        /// The rejected index.
        subtask: usize,
        /// The parallelism it was checked against.
        parallelism: usize,
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
    /// `hashCode()` (see `hash::JavaHashCode`).
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

    /// The keyed states of one operator are bound to different assigners or
    /// key-group ranges.
    #[error(
        "keyed state `{state}` is {detail}; all keyed states of an operator must share one binding (use Checkpointed::bind_keyed)"
    )]
    KeyedBindingMismatch {
        /// The state that differs.
        state: String,
        /// Both bindings.
        detail: String,
    },

    /// An operator declares keyed state, but neither the checkpoint nor the
    /// restore options say how keys are assigned.
    #[error(
        "keyed state `{state}` cannot be bound: the checkpoint has no keyed state, so pass an assigner with RestoreOptions::assigner"
    )]
    NoAssigner {
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

    /// One operator declared, or wrote into one snapshot, two states with
    /// the same name.
    #[error(
        "state `{state}` is declared or written twice by one operator; state names must be unique"
    )]
    DuplicateState {
        /// The repeated name.
        state: String,
    },

    /// Restored items of a map or set state share a key but differ (old
    /// subtasks held different values for one key): the collection keeps
    /// one item per key, so restoring it would lose some of them.
    #[error(
        "operator state `{state}`: {conflicting} restored item(s) have the key of an earlier item \
         but a different value, and a map or set keeps one item per key, so restoring would lose \
         them; keep a key's value equal in every subtask, or declare the state as a `Vec` of \
         pairs to receive every copy and choose in `on_restore`"
    )]
    ConflictingItems {
        /// The state's name.
        state: String,
        /// How many items would have been lost.
        conflicting: u64,
    },

    /// A checkpoint holds a state that the restoring operator does not
    /// declare (and dropping unknown state was not allowed).
    #[error(
        "checkpoint holds state `{state}` that the operator does not declare; restore with \
         `RestoreOptions::allow_non_restored_state(true)` (a job: \
         `Job::allow_non_restored_state(true)`) to drop it"
    )]
    UnknownState {
        /// The state's name in the checkpoint.
        state: String,
    },

    /// A state was checkpointed with another mode than the restoring
    /// operator declares.
    #[error("state `{state}` is declared `{declared}` but was checkpointed as `{found}`")]
    ModeMismatch {
        /// The state's name.
        state: String,
        /// The mode the operator declares.
        declared: crate::operator::StateMode,
        /// The mode in the checkpoint.
        found: crate::operator::StateMode,
    },

    /// A state's item (or keyed value) type differs from the one it was
    /// checkpointed with, and the operator declares no migration from the
    /// recorded version (see [`crate::schema`]). Nothing was decoded.
    #[error(
        "state `{state}`: its {what} were checkpointed as {recorded}, but the operator declares {declared}; declare a migration from the checkpoint's version (#[state(.., migrate_from(OldType))]), or restore with the old type"
    )]
    TypeChanged {
        /// The state's name.
        state: String,
        /// `"items"` (operator state) or `"values"` (keyed state).
        what: &'static str,
        /// The recorded version and shape.
        recorded: String,
        /// The operator's version and shape for that version.
        declared: String,
    },

    /// A keyed state's key type differs from the one it was checkpointed
    /// with. Keys cannot change type: a key decides its key group.
    #[error(
        "state `{state}`: its keys were checkpointed as {recorded}, but the operator declares {declared}; keys cannot change type (a key decides its key group), so restore with the old key type"
    )]
    KeyTypeChanged {
        /// The state's name.
        state: String,
        /// The recorded key shape.
        recorded: String,
        /// The operator's key shape.
        declared: String,
    },

    /// A state type whose shape cannot be traced, so a checkpoint could not
    /// record it (see [`crate::schema`]).
    #[error("the shape of type `{type_name}` cannot be traced: {message}")]
    UntraceableType {
        /// The Rust type.
        type_name: String,
        /// Why.
        message: String,
    },

    /// The subtask snapshots of one checkpoint do not declare the same
    /// operator states.
    #[error("subtask {subtask} does not hold the same operator states as subtask 0: {detail}")]
    SubtaskMismatch {
        /// The subtask that differs from subtask 0.
        subtask: usize,
        /// Which state differs, and how.
        detail: String,
    },

    /// A snapshot's metadata does not fit its data (item boundaries out of
    /// order or past the end, a broadcast state without exactly one value).
    #[error("corrupt snapshot of operator state `{state}` on subtask {subtask}: {message}")]
    CorruptSnapshot {
        /// The state's name.
        state: String,
        /// The (old) subtask whose snapshot is corrupt.
        subtask: usize,
        /// What is wrong.
        message: String,
    },

    /// A checkpoint file (manifest or data file) fails a check of the
    /// on-disk format: bad magic bytes, a CRC-32C mismatch, a truncated file,
    /// a length or offset that does not fit. Nothing of it was used.
    #[error(
        "corrupt checkpoint file {path} at offset {offset}: expected {expected}, found {found}"
    )]
    Corrupt {
        /// The file (storage location, checkpoint folder and file name).
        path: String,
        /// Byte offset in the file where the bad region starts.
        offset: u64,
        /// What the format or the manifest says should be there.
        expected: String,
        /// What is there.
        found: String,
    },

    /// A checkpoint file written in a newer version of the on-disk format
    /// than this build reads.
    #[error(
        "checkpoint file {path} has format version {found}, but this build reads only versions up to {supported}; upgrade to read it"
    )]
    UnsupportedFormatVersion {
        /// The file.
        path: String,
        /// The version in the file.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },

    /// A job checkpoint has no operator of this name.
    #[error("checkpoint {checkpoint_id} has no operator `{operator}` (it has {available:?})")]
    OperatorNotFound {
        /// The name asked for.
        operator: String,
        /// The checkpoint.
        checkpoint_id: u64,
        /// The operators it has.
        available: Vec<String>,
    },

    /// The operators given to a job checkpoint writer are not valid: an
    /// empty or repeated name, or none at all.
    #[error("cannot write job checkpoint: {reason}")]
    InvalidOperators {
        /// What is wrong.
        reason: String,
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

    /// A checkpoint data file name that the storage refuses (see
    /// `storage::validate_file_name`).
    #[error("invalid checkpoint file name {name:?}: {reason}")]
    InvalidFileName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A checkpoint that is not complete (no manifest) or does not exist.
    #[error("checkpoint {checkpoint_id} not found (or not complete) at {location}")]
    CheckpointNotFound {
        /// The checkpoint asked for.
        checkpoint_id: u64,
        /// Where it was looked for (folder path or object URL).
        location: String,
    },

    /// `begin` was asked for a checkpoint id that is not newer than the newest
    /// complete checkpoint (checkpoint ids only grow, and a complete
    /// checkpoint is never rewritten).
    #[error(
        "cannot begin checkpoint {checkpoint_id} at {location}: checkpoint {latest} is already complete and ids must increase"
    )]
    CheckpointIdNotIncreasing {
        /// The id that was asked for.
        checkpoint_id: u64,
        /// The newest complete checkpoint.
        latest: u64,
        /// The storage's root.
        location: String,
    },

    /// A file was written to, or a manifest committed for, a checkpoint that
    /// this storage handle has not begun (or has already committed).
    #[error(
        "checkpoint {checkpoint_id} is not in progress at {location}: call begin() before writing files or committing"
    )]
    CheckpointNotBegun {
        /// The checkpoint id.
        checkpoint_id: u64,
        /// The storage's root.
        location: String,
    },

    /// A create-only commit ([`CheckpointStorage::commit_create_only`](crate::storage::CheckpointStorage::commit_create_only))
    /// found the checkpoint already committed, by this or another process.
    #[error(
        "checkpoint {checkpoint_id} at {location} is already committed: a create-only commit never replaces a manifest"
    )]
    CheckpointAlreadyCommitted {
        /// The checkpoint id.
        checkpoint_id: u64,
        /// The storage's root.
        location: String,
    },

    /// An operator of an incremental checkpoint was asked for in memory
    /// ([`StoredOperator::load`](crate::checkpoint::durable::StoredOperator::load)):
    /// its keyed sections are deltas on top of other checkpoints' files.
    #[error(
        "operator `{operator}` of checkpoint {checkpoint_id} is incremental: restore it from storage, it cannot be loaded into memory"
    )]
    IncrementalCheckpoint {
        /// The checkpoint id.
        checkpoint_id: u64,
        /// The operator.
        operator: String,
    },

    /// A staged data file ([`CheckpointStorage::create_staged_file`](crate::storage::CheckpointStorage::create_staged_file))
    /// already exists: staged writes never overwrite a file.
    #[error("checkpoint file {location} already exists: a staged write never overwrites a file")]
    FileExists {
        /// The file's path or object URL.
        location: String,
    },

    /// A file of a checkpoint that does not exist.
    #[error("checkpoint file not found: {location}")]
    FileNotFound {
        /// The file's path or object URL.
        location: String,
    },

    /// A byte range that ends before it starts, or reaches past the end of
    /// the file.
    #[error("byte range {start}..{end} is invalid for {location} ({len} bytes long)")]
    RangeOutOfBounds {
        /// The file's path or object URL.
        location: String,
        /// First byte asked for.
        start: u64,
        /// One past the last byte asked for.
        end: u64,
        /// The file's length.
        len: u64,
    },

    /// `retain_last(0, ..)`: retention must keep at least one checkpoint.
    #[error("checkpoint retention must keep at least 1 checkpoint, got {keep}")]
    InvalidRetention {
        /// The rejected count.
        keep: usize,
    },

    /// An error of a storage backend other than the local file system (object
    /// storage), with the operation and the object it happened on.
    #[error("storage error during {operation} on {location}: {source}")]
    Storage {
        /// What was being done (`"put"`, `"get range"`, `"list"`, ...).
        operation: &'static str,
        /// The object URL or prefix.
        location: String,
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}
