//! [`SnapshotWriter`]: encodes one subtask's states, item by item and key
//! group by key group, into a snapshot in memory or, streaming, into a data
//! file through a bounded buffer.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{KeyedSection, KeyedStateMeta, Layers, Parts, StateMeta, SubtaskSnapshot};
use crate::codec;
use crate::error::StateError;
use crate::keyed::{FrozenKeyGroups, KeyedState};
use crate::keygroup::{KeyGroup, KeyGroupRange};
use crate::operator::{ListState, StateMode};
use crate::schema::StateType;
use crate::storage::FileSink;

/// Writes the states of one subtask into a [`SubtaskSnapshot`]; what
/// [`Checkpointed::write_snapshot`](crate::checkpoint::Checkpointed::write_snapshot)
/// implementations use.
///
/// ```
/// use std::collections::BTreeMap;
/// use state_runtime::StateMode;
/// use state_runtime::checkpoint::SnapshotWriter;
///
/// let mut w = SnapshotWriter::new();
/// w.split("offsets", &vec![(0u32, 5u64), (1, 9)])?;
/// w.union("watermarks", &BTreeMap::from([(1u8, 10i64)]))?;
/// w.broadcast("rules", &"only-red".to_string())?;
/// let snap = w.finish();
/// let modes: Vec<_> = snap.states().iter().map(|s| (s.name(), s.mode(), s.len())).collect();
/// assert_eq!(modes, [
///     ("offsets", StateMode::Split, 2),
///     ("watermarks", StateMode::Union, 1),
///     ("rules", StateMode::Broadcast, 1),
/// ]);
/// # Ok::<(), state_runtime::StateError>(())
/// ```
#[derive(Debug, Default)]
pub struct SnapshotWriter<'a> {
    /// The metadata, with offsets from the start of the payload, and the
    /// bytes not yet streamed (all of them in memory).
    snapshot: SubtaskSnapshot,
    /// Scratch space for sorting the items of unordered collections.
    scratch: Vec<u8>,
    /// Where the bytes go, when the writer streams into a data file.
    stream: Option<Stream<'a>>,
    /// The first state whose write failed: the data file is then unusable,
    /// even if the caller ignored the error.
    failed: Option<String>,
    /// A capturing writer ([`SnapshotWriter::capturing`]): the keyed states,
    /// frozen instead of written.
    capture: Option<FrozenStates>,
}

/// The keyed states a capturing writer froze, and whether they record
/// their changes from now on.
#[derive(Default)]
struct FrozenStates(Vec<Arc<dyn FrozenKeyGroups>>, bool);

impl std::fmt::Debug for FrozenStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} frozen keyed states", self.0.len())
    }
}

/// Where a keyed section's bytes come from: a live state, or one frozen
/// for a snapshot written later.
trait Sections {
    fn key_group_len(&self, key_group: KeyGroup) -> Result<usize, StateError>;
    fn write_key_group(&self, key_group: KeyGroup, out: &mut Vec<u8>) -> Result<(), StateError>;
    fn encoded_size_hint(&self) -> usize;
    /// The delta section of `key_group` (only frozen states write deltas).
    fn write_key_group_delta(
        &self,
        key_group: KeyGroup,
        out: &mut Vec<u8>,
    ) -> Result<(), StateError>;
}

impl Sections for &dyn KeyedState {
    fn key_group_len(&self, key_group: KeyGroup) -> Result<usize, StateError> {
        KeyedState::key_group_len(*self, key_group)
    }
    fn write_key_group(&self, key_group: KeyGroup, out: &mut Vec<u8>) -> Result<(), StateError> {
        KeyedState::write_key_group(*self, key_group, out)
    }
    fn encoded_size_hint(&self) -> usize {
        KeyedState::encoded_size_hint(*self)
    }
    fn write_key_group_delta(
        &self,
        key_group: KeyGroup,
        _: &mut Vec<u8>,
    ) -> Result<(), StateError> {
        Err(StateError::Encode {
            state: self.state_name().to_owned(),
            message: format!("key group {key_group}: a live state writes no delta"),
        })
    }
}

impl Sections for Arc<dyn FrozenKeyGroups> {
    fn key_group_len(&self, key_group: KeyGroup) -> Result<usize, StateError> {
        FrozenKeyGroups::key_group_len(&**self, key_group)
    }
    fn write_key_group(&self, key_group: KeyGroup, out: &mut Vec<u8>) -> Result<(), StateError> {
        FrozenKeyGroups::write_key_group(&**self, key_group, out)
    }
    fn encoded_size_hint(&self) -> usize {
        0
    }
    fn write_key_group_delta(
        &self,
        key_group: KeyGroup,
        out: &mut Vec<u8>,
    ) -> Result<(), StateError> {
        FrozenKeyGroups::write_key_group_delta(&**self, key_group, out)
    }
}

/// A [`SnapshotWriter`]'s data file: the payload goes out through a bounded
/// buffer, each region's CRC-32C taken while its bytes are in it.
struct Stream<'a> {
    sink: Box<dyn FileSink + 'a>,
    /// Payload bytes already written to the sink.
    flushed: u64,
    /// CRC-32C of the payload written so far.
    payload_crc: u32,
    /// Per operator state, the CRC-32C of each item.
    item_crcs: Vec<Vec<u32>>,
    /// The CRC-32C of each owned key group (every keyed state's section).
    key_group_crcs: Vec<u32>,
}

impl std::fmt::Debug for Stream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("flushed", &self.flushed)
            .finish_non_exhaustive()
    }
}

/// A streaming writer hands its buffer to the sink once it holds this many
/// bytes (after the item or key group that reached it).
const STREAM_BUFFER: usize = 8 << 20;

/// What a [`SnapshotWriter`] streamed into a data file: the payload's length
/// and CRC-32C, the metadata with its offsets, and each region's CRC-32C.
#[derive(Debug)]
pub(crate) struct StreamedPayload {
    pub(crate) len: u64,
    pub(crate) crc: u32,
    pub(crate) states: Vec<StateMeta>,
    pub(crate) keyed: Option<KeyedSection>,
    pub(crate) item_crcs: Vec<Vec<u32>>,
    pub(crate) key_group_crcs: Vec<u32>,
}

impl SnapshotWriter<'static> {
    /// An empty writer that keeps the snapshot in memory.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<'a> SnapshotWriter<'a> {
    /// A writer that streams the payload into `sink`, through a buffer of
    /// about [`STREAM_BUFFER`] bytes (or one key group, if larger).
    pub(crate) fn streaming(sink: Box<dyn FileSink + 'a>) -> Self {
        Self {
            snapshot: SubtaskSnapshot::default(),
            scratch: Vec::new(),
            stream: Some(Stream {
                sink,
                flushed: 0,
                payload_crc: 0,
                item_crcs: Vec::new(),
                key_group_crcs: Vec::new(),
            }),
            failed: None,
            capture: None,
        }
    }

    /// A writer that encodes the operator states at once and freezes the
    /// keyed states ([`KeyedState::freeze`]), for
    /// [`Checkpointed::capture`](crate::checkpoint::Checkpointed::capture).
    pub(crate) fn capturing(track_changes: bool) -> Self {
        Self {
            capture: Some(FrozenStates(Vec::new(), track_changes)),
            ..Self::default()
        }
    }

    /// What a capturing writer captured.
    pub(crate) fn finish_capture(
        self,
    ) -> Result<(SubtaskSnapshot, Vec<Arc<dyn FrozenKeyGroups>>), StateError> {
        if let Some(state) = self.failed {
            return Err(StateError::Encode {
                state,
                message: "writing it failed, so the snapshot is incomplete (the error was ignored)"
                    .into(),
            });
        }
        Ok((self.snapshot, self.capture.unwrap_or_default().0))
    }

    /// Writes what [`capturing`](Self::capturing) captured: the operator
    /// states' items as encoded then, the keyed states from their frozen
    /// pages, as full sections or (`delta`) as delta sections of what
    /// changed since the previous snapshot of each state. Each frozen state
    /// is written once.
    pub(crate) fn write_captured(
        &mut self,
        captured: &SubtaskSnapshot,
        frozen: &[Arc<dyn FrozenKeyGroups>],
        parts: &Parts,
    ) -> Result<(), StateError> {
        for meta in &captured.states {
            self.guarded(&meta.name, |w| w.copy_state(meta, &captured.data))?;
        }
        if let Some(keyed) = &captured.keyed {
            let name = keyed.states.first().map_or("<keyed>", |s| s.name.as_str());
            self.guarded(name, |w| {
                w.check_keyed_absent(name)?;
                let bounds = w.write_sections(keyed.key_groups, frozen, parts)?;
                w.snapshot.keyed = Some(KeyedSection {
                    assigner: keyed.assigner,
                    key_groups: keyed.key_groups,
                    states: keyed.states.clone(),
                    bounds,
                    layers: Layers {
                        parts: parts.clone(),
                        earlier: Vec::new(),
                    },
                });
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Copies an operator state's items, encoded elsewhere.
    fn copy_state(&mut self, meta: &StateMeta, data: &[u8]) -> Result<(), StateError> {
        self.check_new(&meta.name)?;
        self.begin_items();
        let mut bounds = vec![self.position()];
        for item in meta.bounds.windows(2) {
            let start = self.position();
            self.snapshot
                .data
                .extend_from_slice(&data[item[0] as usize..item[1] as usize]);
            bounds.push(self.position());
            self.end_item(start)?;
        }
        self.snapshot.states.push(StateMeta {
            bounds,
            ..meta.clone()
        });
        Ok(())
    }

    /// Runs one state's write, remembering a failure.
    fn guarded(
        &mut self,
        name: &str,
        write: impl FnOnce(&mut Self) -> Result<(), StateError>,
    ) -> Result<&mut Self, StateError> {
        match write(self) {
            Ok(()) => Ok(self),
            Err(e) => {
                self.failed.get_or_insert_with(|| name.to_owned());
                Err(e)
            }
        }
    }

    /// Writes a `split` state: `state`'s items, one by one.
    pub fn split<L: ListState>(&mut self, name: &str, state: &L) -> Result<&mut Self, StateError> {
        self.guarded(name, |w| w.list(name, StateMode::Split, state))
    }

    /// Writes a `union` state: `state`'s items, one by one.
    pub fn union<L: ListState>(&mut self, name: &str, state: &L) -> Result<&mut Self, StateError> {
        self.guarded(name, |w| w.list(name, StateMode::Union, state))
    }

    /// Writes a `broadcast` state: `value` as one item.
    pub fn broadcast<T: Serialize + DeserializeOwned>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<&mut Self, StateError> {
        self.guarded(name, |w| {
            w.check_new(name)?;
            w.begin_items();
            let start = w.position();
            codec::encode_into(value, &mut w.snapshot.data, name)?;
            let end = w.position();
            w.end_item(start)?;
            w.push_meta::<T>(name, StateMode::Broadcast, vec![start, end]);
            Ok(())
        })
    }

    /// Writes the keyed states, key group by key group: for each key group
    /// they own, the section of each state in the order given. Every state
    /// must be bound, to the same assigner and key groups (see
    /// [`Checkpointed::bind_keyed`](crate::checkpoint::Checkpointed::bind_keyed)). Call it once, after the operator
    /// states.
    ///
    /// ```
    /// use state_runtime::prelude::*;
    ///
    /// let a = KeyGroupAssigner::native(MaxParallelism::new(4)?);
    /// let mut counts = KeyedValue::<String, u64>::new(a, a.range_for_subtask(2, 1)?)?;
    /// let mine = (0..).map(|i| format!("k{i}")).find(|k| counts.key_group_of(k.as_str()).is_ok()).unwrap();
    /// counts.insert(mine, 3)?;
    /// let mut w = SnapshotWriter::new();
    /// w.keyed(&[("counts", &counts)])?;
    /// let snap = w.finish();
    /// assert_eq!(snap.keyed().unwrap().key_groups(), KeyGroupRange::new(2, 3));
    /// # Ok::<(), StateError>(())
    /// ```
    pub fn keyed(&mut self, states: &[(&str, &dyn KeyedState)]) -> Result<&mut Self, StateError> {
        let name = states.first().map_or("<keyed>", |s| s.0);
        self.guarded(name, |w| w.write_keyed(states))
    }

    /// Records that the state `name`, already written, is at version
    /// `version` of its type (see [`Migrations`](crate::schema::Migrations));
    /// states are version 1 unless set. What the derive calls for a field
    /// with `#[state(.., migrate_from(..))]`.
    ///
    /// ```
    /// use state_runtime::checkpoint::SnapshotWriter;
    ///
    /// let mut w = SnapshotWriter::new();
    /// w.split("orders", &vec![(1u64, 2u64)])?.version("orders", 2)?;
    /// assert_eq!(w.finish().states()[0].recorded_type().unwrap().version(), 2);
    /// # Ok::<(), state_runtime::StateError>(())
    /// ```
    pub fn version(&mut self, name: &str, version: u32) -> Result<&mut Self, StateError> {
        let keyed = self.snapshot.keyed.iter_mut().flat_map(|k| &mut k.states);
        let ty = self
            .snapshot
            .states
            .iter_mut()
            .filter(|s| s.name == name)
            .map(|s| &mut s.ty)
            .chain(keyed.filter(|s| s.name == name).map(|s| &mut s.ty))
            .next()
            .ok_or_else(|| StateError::Encode {
                state: name.to_owned(),
                message: "no state of this name was written, so it has no version to set"
                    .to_owned(),
            })?;
        *ty = ty.take().map(|t| t.with_version(version));
        Ok(self)
    }

    fn check_keyed_absent(&self, name: &str) -> Result<(), StateError> {
        if self.snapshot.keyed.is_some() {
            return Err(StateError::DuplicateState {
                state: name.to_owned(),
            });
        }
        Ok(())
    }

    fn write_keyed(&mut self, states: &[(&str, &dyn KeyedState)]) -> Result<(), StateError> {
        self.check_keyed_absent(states.first().map_or("<keyed>", |s| s.0))?;
        let Some(&(first_name, first)) = states.first() else {
            return Ok(());
        };
        let binding = first
            .binding()
            .ok_or_else(|| StateError::KeyedStateUnbound {
                state: first_name.to_owned(),
            })?;
        let mut metas = Vec::with_capacity(states.len());
        for &(name, s) in states {
            if self.snapshot.states.iter().any(|m| m.name == name)
                || metas.iter().any(|m: &KeyedStateMeta| m.name == name)
            {
                return Err(StateError::DuplicateState {
                    state: name.to_owned(),
                });
            }
            match s.binding() {
                None => {
                    return Err(StateError::KeyedStateUnbound {
                        state: name.to_owned(),
                    });
                }
                Some(b) if b != binding => {
                    return Err(StateError::KeyedBindingMismatch {
                        state: name.to_owned(),
                        detail: format!(
                            "bound to {} over key groups {}, but `{first_name}` to {} over {}",
                            b.0, b.1, binding.0, binding.1
                        ),
                    });
                }
                Some(_) => {}
            }
            metas.push(KeyedStateMeta {
                name: name.to_owned(),
                state_type: s.type_name().to_owned(),
                ty: Some(recorded_type(name, s.value_type())),
            });
        }
        let (assigner, key_groups) = binding;
        let bounds = match &mut self.capture {
            Some(frozen) => {
                // Captured: frozen now, written later (see write_captured).
                for &(_, s) in states {
                    frozen.0.push(match s.freeze(frozen.1) {
                        Some(f) => f,
                        None => Arc::new(PreEncoded::of(s, key_groups)?),
                    });
                }
                Vec::new()
            }
            None => {
                let live: Vec<&dyn KeyedState> = states.iter().map(|&(_, s)| s).collect();
                self.write_sections(key_groups, &live, &Parts::Whole)?
            }
        };
        self.snapshot.keyed = Some(KeyedSection {
            assigner,
            key_groups,
            states: metas,
            bounds,
            layers: Layers::default(),
        });
        Ok(())
    }

    /// Writes the sections of `states`, key group by key group, each whole
    /// or as a delta as `parts` says; returns their bounds.
    fn write_sections<S: Sections>(
        &mut self,
        key_groups: KeyGroupRange,
        states: &[S],
        parts: &Parts,
    ) -> Result<Vec<u64>, StateError> {
        // In memory, the whole snapshot is reserved once, not grown by
        // doubling. A hint, so never an abort: a reservation that cannot be
        // made is skipped (the buffer then grows as it is written).
        let in_memory = self.stream.is_none();
        let hint = || -> usize {
            states
                .iter()
                .fold(0usize, |sum, s| sum.saturating_add(s.encoded_size_hint()))
        };
        let mut reserved = if in_memory { hint() } else { 0 };
        let _ = self.snapshot.data.try_reserve(reserved);
        let data_start = self.snapshot.data.len();
        let mut bounds = Vec::with_capacity(key_groups.len() as usize * states.len() + 1);
        bounds.push(self.position());
        for (g, kg) in key_groups.iter().enumerate() {
            let start = self.position();
            let delta = !parts.is_whole(g);
            for s in states {
                if delta {
                    // Also for an empty key group: its keys may be removed.
                    s.write_key_group_delta(kg, &mut self.snapshot.data)?;
                } else if s.key_group_len(kg)? > 0 {
                    // An empty key group has an empty section.
                    s.write_key_group(kg, &mut self.snapshot.data)?;
                }
                bounds.push(self.position());
            }
            if let Some(crc) = self.end_region(start)? {
                let stream = self.stream.as_mut().expect("a streaming writer");
                stream.key_group_crcs.push(crc);
            }
            // A state never snapshotted has no size hint until its first
            // key group is written: reserve once then.
            if in_memory && reserved == 0 {
                let written = self.snapshot.data.len() - data_start;
                if written > 0 {
                    reserved = hint();
                    let _ = self
                        .snapshot
                        .data
                        .try_reserve(reserved.saturating_sub(written));
                }
            }
        }
        Ok(bounds)
    }

    /// The snapshot.
    ///
    /// # Panics
    ///
    /// On a writer that streams into a data file (only this crate makes
    /// those, and finishes them itself).
    pub fn finish(self) -> SubtaskSnapshot {
        assert!(
            self.stream.is_none(),
            "a streaming SnapshotWriter is finished by its checkpoint writer"
        );
        self.snapshot
    }

    /// Streams the rest of the payload into the sink, makes the file durable
    /// and says what it holds.
    pub(crate) fn finish_streaming(mut self) -> Result<StreamedPayload, StateError> {
        if let Some(state) = self.failed.take() {
            return Err(StateError::Encode {
                state,
                message: "writing it failed, so the snapshot is incomplete (the error was ignored)"
                    .into(),
            });
        }
        self.flush()?;
        let stream = self.stream.take().expect("a streaming writer");
        // Every item and key group has its CRC (each state's write either
        // completed or failed, and a failure ends the file above).
        let items_match = stream.item_crcs.len() == self.snapshot.states.len()
            && (self.snapshot.states.iter())
                .zip(&stream.item_crcs)
                .all(|(meta, crcs)| meta.len() == crcs.len());
        let key_groups = self
            .snapshot
            .keyed
            .as_ref()
            .map_or(0, |k| k.key_groups().len());
        if !items_match || stream.key_group_crcs.len() != key_groups as usize {
            return Err(StateError::Encode {
                state: "<snapshot>".into(),
                message: "the checksums written do not match the states written".into(),
            });
        }
        stream.sink.finish()?;
        Ok(StreamedPayload {
            len: stream.flushed,
            crc: stream.payload_crc,
            states: self.snapshot.states,
            keyed: self.snapshot.keyed,
            item_crcs: stream.item_crcs,
            key_group_crcs: stream.key_group_crcs,
        })
    }

    /// The offset from the start of the payload of the next byte written.
    fn position(&self) -> u64 {
        let flushed = self.stream.as_ref().map_or(0, |s| s.flushed);
        flushed + self.snapshot.data.len() as u64
    }

    /// Starts an operator state's items (their CRCs, when streaming).
    fn begin_items(&mut self) {
        if let Some(stream) = &mut self.stream {
            stream.item_crcs.push(Vec::new());
        }
    }

    /// Ends an item that started at `start`: keeps its CRC, when streaming.
    fn end_item(&mut self, start: u64) -> Result<(), StateError> {
        if let Some(crc) = self.end_region(start)? {
            let stream = self.stream.as_mut().expect("a streaming writer");
            stream.item_crcs.last_mut().expect("begun").push(crc);
        }
        Ok(())
    }

    /// Ends a checksummed region (an item or a key group) that started at
    /// `start`: when streaming, its CRC-32C, taken while all its bytes are
    /// in the buffer, and the buffer handed to the sink if it is full.
    fn end_region(&mut self, start: u64) -> Result<Option<u32>, StateError> {
        let Some(stream) = &self.stream else {
            return Ok(None);
        };
        let at = (start - stream.flushed) as usize;
        let crc = crc32c::crc32c(&self.snapshot.data[at..]);
        if self.snapshot.data.len() >= STREAM_BUFFER {
            self.flush()?;
        }
        Ok(Some(crc))
    }

    /// Hands the buffered bytes to the sink (when streaming).
    fn flush(&mut self) -> Result<(), StateError> {
        let Some(stream) = &mut self.stream else {
            return Ok(());
        };
        let data = &mut self.snapshot.data;
        if data.is_empty() {
            return Ok(());
        }
        stream.sink.write(data)?;
        stream.payload_crc = crc32c::crc32c_append(stream.payload_crc, data);
        stream.flushed += data.len() as u64;
        data.clear();
        Ok(())
    }

    fn list<L: ListState>(
        &mut self,
        name: &str,
        mode: StateMode,
        state: &L,
    ) -> Result<(), StateError> {
        self.check_new(name)?;
        self.begin_items();
        let mut bounds = vec![self.position()];
        if L::UNORDERED {
            // Encode aside, then append sorted by bytes: hash iteration order
            // must not leak into the checkpoint.
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            let mut ranges = Vec::new();
            for item in state.items() {
                let start = scratch.len();
                codec::encode_into(&item, &mut scratch, name)?;
                ranges.push(start..scratch.len());
            }
            ranges.sort_unstable_by(|a, b| scratch[a.clone()].cmp(&scratch[b.clone()]));
            for r in ranges {
                let start = self.position();
                self.snapshot.data.extend_from_slice(&scratch[r]);
                bounds.push(self.position());
                self.end_item(start)?;
            }
            self.scratch = scratch;
        } else {
            for item in state.items() {
                let start = self.position();
                codec::encode_into(&item, &mut self.snapshot.data, name)?;
                bounds.push(self.position());
                self.end_item(start)?;
            }
        }
        self.push_meta::<L::Item>(name, mode, bounds);
        Ok(())
    }

    fn check_new(&self, name: &str) -> Result<(), StateError> {
        let keyed = self.snapshot.keyed.iter().flat_map(|k| &k.states);
        if self.snapshot.states.iter().any(|s| s.name == name)
            || keyed.into_iter().any(|s| s.name == name)
        {
            return Err(StateError::DuplicateState {
                state: name.to_owned(),
            });
        }
        Ok(())
    }

    fn push_meta<T: DeserializeOwned>(&mut self, name: &str, mode: StateMode, bounds: Vec<u64>) {
        self.snapshot.states.push(StateMeta {
            name: name.to_owned(),
            mode,
            item_type: std::any::type_name::<T>().to_owned(),
            ty: Some(recorded_type(name, StateType::of::<T>(1))),
            bounds,
        });
    }
}

/// A keyed state that cannot be frozen, encoded when it is captured.
struct PreEncoded {
    key_groups: KeyGroupRange,
    sections: Vec<(usize, Vec<u8>)>,
}

impl PreEncoded {
    fn of(state: &dyn KeyedState, key_groups: KeyGroupRange) -> Result<Self, StateError> {
        let mut sections = Vec::with_capacity(key_groups.len() as usize);
        for kg in key_groups {
            let len = state.key_group_len(kg)?;
            let mut bytes = Vec::new();
            if len > 0 {
                state.write_key_group(kg, &mut bytes)?;
            }
            sections.push((len, bytes));
        }
        Ok(Self {
            key_groups,
            sections,
        })
    }

    fn section(&self, key_group: KeyGroup) -> Result<&(usize, Vec<u8>), StateError> {
        self.key_groups
            .index_of(key_group)
            .and_then(|i| self.sections.get(i))
            .ok_or_else(|| StateError::KeyGroupOutsideRange {
                state: "<captured>".to_owned(),
                key_group,
                range: self.key_groups,
            })
    }
}

impl FrozenKeyGroups for PreEncoded {
    fn key_group_len(&self, key_group: KeyGroup) -> Result<usize, StateError> {
        Ok(self.section(key_group)?.0)
    }

    fn write_key_group(&self, key_group: KeyGroup, out: &mut Vec<u8>) -> Result<(), StateError> {
        out.extend_from_slice(&self.section(key_group)?.1);
        Ok(())
    }
}

/// The type a checkpoint records for state `name`: its traced shapes, or,
/// for a type whose shape cannot be traced, none (with a warning: restores
/// of that state are then unchecked).
fn recorded_type(name: &str, traced: Result<StateType, StateError>) -> StateType {
    traced.unwrap_or_else(|e| {
        tracing::warn!(state = name, error = %e, "state recorded without a shape: its restores are unchecked");
        StateType::untraced(1)
    })
}
