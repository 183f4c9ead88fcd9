//! Restoring operator state: match the checkpoint's states against the
//! operator's declarations, plan (metadata only), then read and decode the
//! planned byte ranges, each item once.

use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::Range;

use serde::de::DeserializeOwned;

use super::plan::RestorePlan;
use super::{KeyedSection, StateMeta, SubtaskSnapshot};
use crate::checkpoint::{Checkpointed, RestoreContext};
use crate::error::StateError;
use crate::keyed::KeyedState;
use crate::keyed::plan::SubtaskRestore;
use crate::keygroup::{KeyGroup, KeyGroupAssigner, KeyGroupRange};
use crate::operator::{ListState, StateMode};
use crate::repartition::operator::ItemRun;
use crate::schema::{self, Decoder, Migrations, Part};

pub(crate) use super::matching::{StateMatch, check_restore, match_states};

/// Where the bytes of a checkpoint's items come from: memory, or files
/// serving exact byte ranges lazily. Shared with a read-ahead thread.
pub(crate) trait StateBytes: Sync {
    /// Whether reads cost I/O, so that reading ahead on another thread
    /// pays.
    fn reads_io(&self) -> bool {
        true
    }

    /// The bytes `range` of old subtask `old_subtask`'s data, read for state
    /// `state` (named in errors).
    fn read(
        &self,
        state: &str,
        old_subtask: usize,
        range: Range<u64>,
    ) -> Result<Cow<'_, [u8]>, StateError>;

    /// [`read`](Self::read) into `buf` (replacing what it held), so that a
    /// reader can reuse one buffer.
    fn read_into(
        &self,
        state: &str,
        old_subtask: usize,
        range: Range<u64>,
        buf: &mut Vec<u8>,
    ) -> Result<(), StateError> {
        let bytes = self.read(state, old_subtask, range)?;
        buf.clear();
        buf.extend_from_slice(&bytes);
        Ok(())
    }

    /// The bytes `range` of earlier layer `layer` of old subtask
    /// `old_subtask`'s keyed section (an incremental checkpoint's), into
    /// `buf`. Only stored checkpoints have layers.
    fn read_layer_into(
        &self,
        state: &str,
        old_subtask: usize,
        layer: usize,
        range: Range<u64>,
        buf: &mut Vec<u8>,
    ) -> Result<(), StateError> {
        let _ = (range, buf);
        Err(StateError::CorruptSnapshot {
            state: state.to_owned(),
            subtask: old_subtask,
            message: format!("earlier layer {layer} of a snapshot held in memory"),
        })
    }

    /// [`read_into`](Self::read_into) of the section's own data (`None`) or
    /// of an earlier layer.
    fn read_view_into(
        &self,
        state: &str,
        old_subtask: usize,
        layer: Option<usize>,
        range: Range<u64>,
        buf: &mut Vec<u8>,
    ) -> Result<(), StateError> {
        match layer {
            None => self.read_into(state, old_subtask, range, buf),
            Some(l) => self.read_layer_into(state, old_subtask, l, range, buf),
        }
    }
}

impl StateBytes for Vec<SubtaskSnapshot> {
    fn reads_io(&self) -> bool {
        false
    }

    fn read(
        &self,
        state: &str,
        old_subtask: usize,
        range: Range<u64>,
    ) -> Result<Cow<'_, [u8]>, StateError> {
        let data = self.get(old_subtask).map(|s| s.data()).unwrap_or_default();
        usize::try_from(range.start)
            .ok()
            .zip(usize::try_from(range.end).ok())
            .and_then(|(a, b)| data.get(a..b))
            .map(Cow::Borrowed)
            .ok_or_else(|| StateError::CorruptSnapshot {
                state: state.to_owned(),
                subtask: old_subtask,
                message: format!(
                    "bytes {}..{} are outside the {} bytes of data",
                    range.start,
                    range.end,
                    data.len()
                ),
            })
    }
}

/// Options of [`Restore::restore_into_with`](crate::checkpoint::Restore::restore_into_with).
///
/// ```
/// use state_runtime::checkpoint::RestoreOptions;
///
/// let strict = RestoreOptions::default();
/// let lenient = RestoreOptions::default().allow_non_restored_state(true);
/// assert_ne!(strict, lenient);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreOptions {
    pub(super) allow_non_restored_state: bool,
    pub(super) assigner: Option<KeyGroupAssigner>,
}

impl RestoreOptions {
    /// The key-group assigner to restore keyed state under. By default the
    /// checkpoint's. A different max parallelism is allowed with the native
    /// assigner (keys are re-bucketed; each new subtask still reads only the
    /// old key groups that overlap its hash interval) and refused with the
    /// Flink one ([`StateError::MaxParallelismChanged`]); a different kind is
    /// [`StateError::AssignerKindChanged`]. Required when the operator
    /// declares keyed state and the checkpoint has none.
    ///
    /// ```
    /// use state_runtime::prelude::*;
    ///
    /// let wider = KeyGroupAssigner::native(MaxParallelism::new(1024)?);
    /// let options = RestoreOptions::default().assigner(wider);
    /// # let _ = options;
    /// # Ok::<(), StateError>(())
    /// ```
    pub fn assigner(mut self, assigner: KeyGroupAssigner) -> Self {
        self.assigner = Some(assigner);
        self
    }

    /// Whether state in the checkpoint that the operator does not declare is
    /// dropped (and listed in [`RestoreReport::dropped_states`]) instead of
    /// failing the restore, like Flink's `--allowNonRestoredState`. Off by
    /// default. A state declared with another mode than it was checkpointed
    /// with is an error either way: the operator expects that state, so
    /// dropping it would lose data silently.
    pub fn allow_non_restored_state(mut self, allow: bool) -> Self {
        self.allow_non_restored_state = allow;
        self
    }
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreReport {
    /// The restoring subtask, the parallelisms and the checkpoint id (what
    /// the operator's `on_restore` hook saw).
    pub context: RestoreContext,
    /// Bytes of item data read for this subtask.
    pub bytes_read: u64,
    /// Items decoded for this subtask, over all states (a broadcast value
    /// counts as one).
    pub items_restored: u64,
    /// Items of map and set states skipped, not decoded, because their
    /// bytes equal an earlier item's: a `union` state's copies of one entry
    /// (see [`RestoredState::list`]).
    pub identical_items_skipped: u64,
    /// States the operator declares that the checkpoint lacks; they started
    /// empty (a broadcast one kept its constructed value).
    pub missing_states: Vec<String>,
    /// States in the checkpoint the operator does not declare, dropped
    /// because [`RestoreOptions::allow_non_restored_state`] was set.
    pub dropped_states: Vec<String>,
    /// The key groups this subtask owns now (`None`: no keyed state).
    pub key_groups: Option<KeyGroupRange>,
    /// The old key groups read (whole key groups, all keyed states).
    pub key_groups_read: u64,
    /// Keyed entries restored (one per key and keyed state).
    pub keyed_entries_restored: u64,
}

/// One restored state: which of the checkpoint's states, and the item runs
/// this subtask receives.
#[derive(Debug)]
struct Entry {
    index: usize,
    runs: Vec<ItemRun>,
}

/// The state a restoring subtask receives, handed to
/// [`Checkpointed::restore`]: take each state by name.
///
/// See [`Checkpointed`] for a hand-written implementation that uses it.
pub struct RestoredState<'a> {
    context: RestoreContext,
    /// Per old subtask, its states' metadata (all subtasks agree on names).
    metas: &'a [&'a [StateMeta]],
    bytes: &'a dyn StateBytes,
    entries: Vec<(&'a str, Entry)>,
    keyed: Option<KeyedRestore<'a>>,
    bytes_read: u64,
    items_restored: u64,
    identical_items_skipped: u64,
}

/// The keyed part of a restore: the new binding, and what to read.
struct KeyedRestore<'a> {
    /// The assigner and key groups the restored states are bound to.
    binding: Option<(KeyGroupAssigner, KeyGroupRange)>,
    /// The old sections (per old subtask) and this subtask's plan; `None` if
    /// the checkpoint has no keyed state.
    source: Option<(Vec<&'a KeyedSection>, SubtaskRestore)>,
    /// Declared keyed states not yet taken, by name.
    pending: Vec<&'a str>,
    entries_restored: u64,
}

impl std::fmt::Debug for RestoredState<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoredState")
            .field("context", &self.context)
            .field("states", &self.entries)
            .finish_non_exhaustive()
    }
}

impl RestoredState<'_> {
    /// The subtask, parallelisms and checkpoint id of this restore.
    pub fn context(&self) -> RestoreContext {
        self.context
    }

    /// Takes the `split` or `union` state `name`: the items this subtask
    /// receives, in origin order (old subtask, then position), collected
    /// into `L`. A state the checkpoint lacks gives an empty `L`.
    ///
    /// A map or set ([`ListState::UNIQUE_KEYS`]) keeps one item per key. An
    /// item whose bytes equal an earlier one's (a union state's copies of
    /// one entry) is skipped; an item that shares a key with an earlier one
    /// but differs from it is an error
    /// ([`StateError::ConflictingItems`]), never a silently dropped value.
    /// Copies are compared by their encoded bytes, so a `HashMap` or
    /// `HashSet` inside such items (written in its iteration order) makes
    /// equal copies differ: use `BTreeMap` and `BTreeSet` there.
    ///
    /// The checkpoint's item type must be `L::Item`'s (see
    /// [`crate::schema`]): a changed type is [`StateError::TypeChanged`],
    /// before anything is decoded. [`list_with`](Self::list_with) also reads
    /// older versions.
    pub fn list<L: ListState>(&mut self, name: &str) -> Result<L, StateError> {
        self.list_inner(name, None)
    }

    /// [`list`](Self::list), reading items of an older version with its
    /// type from `migrations` and converting them.
    ///
    /// ```
    /// use state_runtime::prelude::*;
    /// use state_runtime::schema::Migrations;
    ///
    /// // Version 2 of the state holds (u64, u64); version 1 held (u32, i64).
    /// struct Offsets(Vec<(u64, u64)>);
    ///
    /// impl Checkpointed for Offsets {
    ///     fn state_descriptors() -> Vec<StateDescriptor> {
    ///         vec![StateDescriptor::new("offsets", StateMode::Split, "(u64, u64)")]
    ///     }
    ///     fn write_snapshot(&self, w: &mut SnapshotWriter<'_>) -> Result<(), StateError> {
    ///         w.split("offsets", &self.0)?.version("offsets", 2)?;
    ///         Ok(())
    ///     }
    ///     fn restore(&mut self, state: &mut RestoredState<'_>) -> Result<(), StateError> {
    ///         let v2 = Migrations::<(u64, u64)>::new()
    ///             .from(|(p, o): (u32, i64)| (u64::from(p), o.max(0) as u64));
    ///         self.0 = state.list_with("offsets", &v2)?;
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let mut w = SnapshotWriter::new();
    /// w.split("offsets", &vec![(3u32, 5i64)])?; // written by version 1
    /// let checkpoint = Checkpoint::from_subtasks(vec![w.finish()])?;
    /// let mut op = Offsets(Vec::new());
    /// checkpoint.restore_into(&mut op, 0, 1)?;
    /// assert_eq!(op.0, [(3, 5)]);
    /// # Ok::<(), StateError>(())
    /// ```
    pub fn list_with<L: ListState>(
        &mut self,
        name: &str,
        migrations: &Migrations<L::Item>,
    ) -> Result<L, StateError> {
        self.list_inner(name, Some(migrations))
    }

    fn list_inner<L: ListState>(
        &mut self,
        name: &str,
        migrations: Option<&Migrations<L::Item>>,
    ) -> Result<L, StateError> {
        let Some(entry) = self.take(name) else {
            return Ok(L::from_items(std::iter::empty()));
        };
        let meta = &self.metas[0][entry.index];
        let mode = meta.mode;
        if mode == StateMode::Broadcast {
            return Err(StateError::ModeMismatch {
                state: name.to_owned(),
                declared: StateMode::Split,
                found: mode,
            });
        }
        let decoder = schema::check(name, Part::Items, meta.recorded_type(), None, migrations)?;
        let mut items = Vec::new();
        if !L::UNIQUE_KEYS {
            self.decode_runs(name, &entry, &decoder, |_| true, |item| items.push(item))?;
            return Ok(L::from_items(items));
        }
        // Copies of an item can only come from different old subtasks (one
        // subtask's map or set holds each key once): compare bytes only then.
        let first_origin = entry.runs.first().map(|r| r.old_subtask);
        let one_origin = entry
            .runs
            .iter()
            .all(|r| Some(r.old_subtask) == first_origin);
        let mut seen: HashSet<Box<[u8]>> = HashSet::new();
        self.decode_runs(
            name,
            &entry,
            &decoder,
            |bytes| one_origin || seen.insert(bytes.into()),
            |item| items.push(item),
        )?;
        let received: u64 = entry.runs.iter().map(|r| r.items.end - r.items.start).sum();
        let distinct = items.len();
        self.identical_items_skipped += received - distinct as u64;
        let collection = L::from_items(items);
        let kept = collection.items().count();
        if kept < distinct {
            return Err(StateError::ConflictingItems {
                state: name.to_owned(),
                conflicting: (distinct - kept) as u64,
            });
        }
        Ok(collection)
    }

    /// Takes the `broadcast` state `name`: the value of old subtask
    /// `subtask % old_parallelism`, or `None` if the checkpoint lacks it.
    /// Its type is checked as [`list`](Self::list)'s items are.
    pub fn broadcast<T: DeserializeOwned>(&mut self, name: &str) -> Result<Option<T>, StateError> {
        self.broadcast_inner(name, None)
    }

    /// [`broadcast`](Self::broadcast), reading a value of an older version
    /// with its type from `migrations` and converting it.
    pub fn broadcast_with<T: DeserializeOwned>(
        &mut self,
        name: &str,
        migrations: &Migrations<T>,
    ) -> Result<Option<T>, StateError> {
        self.broadcast_inner(name, Some(migrations))
    }

    fn broadcast_inner<T: DeserializeOwned>(
        &mut self,
        name: &str,
        migrations: Option<&Migrations<T>>,
    ) -> Result<Option<T>, StateError> {
        let Some(entry) = self.take(name) else {
            return Ok(None);
        };
        let meta = &self.metas[0][entry.index];
        let mode = meta.mode;
        if mode != StateMode::Broadcast {
            return Err(StateError::ModeMismatch {
                state: name.to_owned(),
                declared: StateMode::Broadcast,
                found: mode,
            });
        }
        let decoder = schema::check(name, Part::Items, meta.recorded_type(), None, migrations)?;
        let mut value = None;
        self.decode_runs(name, &entry, &decoder, |_| true, |v| value = Some(v))?;
        Ok(value)
    }

    /// Takes the `keyed` state `name`: a fresh `T`, bound to the key groups
    /// this subtask now owns, holding every entry of those key groups. Reads
    /// only the bytes of the old key groups the plan names. An operator with
    /// several keyed states takes them with one
    /// [`keyed_states`](Self::keyed_states) call, which reads those bytes
    /// once for all of them (the derive does).
    pub fn keyed<T: KeyedState + Default>(&mut self, name: &str) -> Result<T, StateError> {
        let mut state = T::default();
        self.keyed_states(&mut [(name, &mut state)])?;
        Ok(state)
    }

    /// Takes the keyed states `states` (name, and a fresh state to fill):
    /// binds each to the key groups this subtask now owns and fills it with
    /// every entry of those key groups, in one pass over the bytes of the
    /// old key groups the plan names. The bytes are read in chunks of whole
    /// key groups of about 16 MiB (or one key group, if larger), the next
    /// chunk read ahead on another thread while this one
    /// is decoded: memory stays bounded, and reading and decoding overlap.
    pub fn keyed_states(
        &mut self,
        states: &mut [(&str, &mut dyn KeyedState)],
    ) -> Result<(), StateError> {
        let Some(&(first_name, _)) = states.first() else {
            return Ok(());
        };
        let no_assigner = || StateError::NoAssigner {
            state: first_name.to_owned(),
        };
        let keyed = self.keyed.as_mut().ok_or_else(no_assigner)?;
        let (assigner, range) = keyed.binding.ok_or_else(no_assigner)?;
        for (name, state) in states.iter_mut() {
            state.set_state_name(name);
            state.bind(assigner, range)?;
            keyed.pending.retain(|n| n != name);
        }
        let Some((sections, plan)) = &keyed.source else {
            return Ok(());
        };
        // Each state's index in the checkpoint (`None`: missing from it,
        // listed in the report).
        let indices: Vec<Option<usize>> = states
            .iter()
            .map(|(name, _)| sections[0].states().iter().position(|s| s.name() == *name))
            .collect();
        let Some(named) = states
            .iter()
            .zip(&indices)
            .find_map(|((name, _), i)| i.map(|_| *name))
        else {
            return Ok(());
        };
        // Every state's type is checked before any byte is read.
        for ((_, state), index) in states.iter_mut().zip(&indices) {
            if let Some(index) = *index {
                state.prepare_restore(sections[0].states()[index].recorded_type())?;
            }
        }
        let chunks = keyed_chunks(sections, plan, named)?;
        let mut decode = |chunk: &KeyedChunk, bytes: &[u8]| -> Result<u64, StateError> {
            let view = sections[chunk.old_subtask]
                .view(chunk.layer)
                .expect("a layer of the section");
            let read = &plan.reads[chunk.read];
            let mut entries = 0;
            for kg in chunk.key_groups {
                for ((_, state), index) in states.iter_mut().zip(&indices) {
                    let Some(index) = *index else { continue };
                    let part = view.state_range(kg, index).expect("key group in the chunk");
                    let at = |p: u64| (p - chunk.bytes.start) as usize;
                    let slice = &bytes[at(part.start)..at(part.end)];
                    let delta = !view.is_whole(kg);
                    entries += plan.decode_key_group(read, kg, slice, &mut **state, delta)? as u64;
                }
            }
            Ok(entries)
        };
        let source = self.bytes;
        let mut bytes_read = 0;
        let mut entries = 0;
        if chunks.len() < 2 || !source.reads_io() {
            let mut buf = Vec::new();
            for chunk in &chunks {
                let bytes = match chunk.layer {
                    None => source.read(named, chunk.old_subtask, chunk.bytes.clone())?,
                    Some(_) => {
                        source.read_view_into(
                            named,
                            chunk.old_subtask,
                            chunk.layer,
                            chunk.bytes.clone(),
                            &mut buf,
                        )?;
                        Cow::Borrowed(buf.as_slice())
                    }
                };
                bytes_read += bytes.len() as u64;
                entries += decode(chunk, &bytes)?;
            }
        } else {
            // Read ahead: one chunk in the channel, one being read, and
            // their buffers reused (no fresh memory to fault in per chunk).
            std::thread::scope(|scope| {
                let (tx, rx) = std::sync::mpsc::sync_channel(1);
                let (recycle_tx, recycle_rx) = std::sync::mpsc::channel::<Vec<u8>>();
                let chunks = &chunks;
                scope.spawn(move || {
                    for c in chunks {
                        let mut buf = recycle_rx.try_recv().unwrap_or_default();
                        let read = source.read_view_into(
                            named,
                            c.old_subtask,
                            c.layer,
                            c.bytes.clone(),
                            &mut buf,
                        );
                        let failed = read.is_err();
                        if tx.send(read.map(|()| buf)).is_err() || failed {
                            break;
                        }
                    }
                });
                for (chunk, bytes) in chunks.iter().zip(rx) {
                    let bytes = bytes?;
                    bytes_read += bytes.len() as u64;
                    entries += decode(chunk, &bytes)?;
                    let _ = recycle_tx.send(bytes);
                }
                Ok::<(), StateError>(())
            })?;
        }
        self.bytes_read += bytes_read;
        if let Some(k) = self.keyed.as_mut() {
            k.entries_restored += entries;
        }
        Ok(())
    }

    fn take(&mut self, name: &str) -> Option<Entry> {
        let pos = self.entries.iter().position(|(n, _)| *n == name)?;
        Some(self.entries.swap_remove(pos).1)
    }

    /// Reads each run's bytes in one piece, then decodes each item once.
    fn decode_runs<T: DeserializeOwned>(
        &mut self,
        name: &str,
        entry: &Entry,
        decoder: &Decoder<'_, T>,
        mut wanted: impl FnMut(&[u8]) -> bool,
        mut sink: impl FnMut(T),
    ) -> Result<(), StateError> {
        for run in &entry.runs {
            let meta = &self.metas[run.old_subtask][entry.index];
            let range = meta.items_range(&run.items);
            let bytes = self.bytes.read(name, run.old_subtask, range.clone())?;
            self.bytes_read += bytes.len() as u64;
            for i in run.items.clone() {
                let item = meta.items_range(&(i..i + 1));
                let slice =
                    &bytes[(item.start - range.start) as usize..(item.end - range.start) as usize];
                if !wanted(slice) {
                    continue;
                }
                let value = decoder.decode_exact(slice, name).map_err(|e| match e {
                    StateError::Decode { state, message } => StateError::Decode {
                        state,
                        message: format!("old subtask {}, item {i}: {message}", run.old_subtask),
                    },
                    other => other,
                })?;
                self.items_restored += 1;
                sink(value);
            }
        }
        Ok(())
    }
}

/// A keyed restore reads old key groups in chunks of about this many bytes
/// (whole key groups; one key group, if larger).
const KEYED_CHUNK: u64 = 16 << 20;

/// Whole old key groups of one planned read, of one layer of their keyed
/// section, read in one piece.
struct KeyedChunk {
    /// The planned read they belong to.
    read: usize,
    old_subtask: usize,
    /// The layer: `None` for the section's own data.
    layer: Option<usize>,
    key_groups: KeyGroupRange,
    /// Their bytes in the old subtask's data (every keyed state's sections).
    bytes: Range<u64>,
}

/// The chunks of `plan`'s reads, in order: per read, every layer of the old
/// subtask's keyed section in the order they apply, each with the key
/// groups it contributes (see [`KeyedSection::layer_runs`]).
fn keyed_chunks(
    sections: &[&KeyedSection],
    plan: &SubtaskRestore,
    state: &str,
) -> Result<Vec<KeyedChunk>, StateError> {
    let mut chunks = Vec::new();
    for (r, read) in plan.reads.iter().enumerate() {
        let old_subtask = read.old_subtask;
        let section = sections[old_subtask];
        let missing = || StateError::CorruptSnapshot {
            state: state.to_owned(),
            subtask: old_subtask,
            message: format!(
                "key groups {} are not in the snapshot's {}",
                read.key_groups,
                section.key_groups()
            ),
        };
        section
            .key_groups_bytes(read.key_groups)
            .ok_or_else(missing)?;
        for (view, run) in section.layer_runs(read.key_groups) {
            let mut first: Option<(KeyGroup, u64)> = None;
            for kg in run {
                let bytes = view.key_group_range(kg).ok_or_else(missing)?;
                let (start_kg, start) = *first.get_or_insert((kg, bytes.start));
                let last = kg == run.last().expect("a non-empty run");
                if bytes.end - start >= KEYED_CHUNK || last {
                    chunks.push(KeyedChunk {
                        read: r,
                        old_subtask,
                        layer: view.layer,
                        key_groups: KeyGroupRange::new(start_kg, kg),
                        bytes: start..bytes.end,
                    });
                    first = None;
                }
            }
        }
    }
    Ok(chunks)
}

/// Restores subtask `subtask` of `parallelism` into `op` from a checkpoint
/// given as metadata (`metas[i]`: the states of old subtask `i`, validated to
/// agree) and a byte source.
#[allow(clippy::too_many_arguments)]
pub(crate) fn restore_operator<T: Checkpointed>(
    checkpoint_id: u64,
    metas: &[&[StateMeta]],
    keyed_sections: &[Option<&KeyedSection>],
    bytes: &dyn StateBytes,
    op: &mut T,
    subtask: usize,
    parallelism: usize,
    options: &RestoreOptions,
) -> Result<RestoreReport, StateError> {
    if parallelism == 0 {
        return Err(StateError::ZeroParallelism);
    }
    if subtask >= parallelism {
        return Err(StateError::SubtaskOutOfRange {
            subtask,
            parallelism,
        });
    }
    let states = metas.first().copied().ok_or(StateError::ZeroParallelism)?;
    let declared = T::state_descriptors();
    let old_keyed: Vec<&KeyedSection> = keyed_sections.iter().flatten().copied().collect();
    let StateMatch {
        restored,
        dropped_states,
        missing_states,
    } = match_states(&declared, states, old_keyed.first().copied(), options)?;

    // The plan (metadata only), and the keyed state's new binding.
    let declared_keyed: Vec<&'static str> = declared
        .iter()
        .filter(|d| d.mode == StateMode::Keyed)
        .map(|d| d.name)
        .collect();
    let sections = (!declared_keyed.is_empty()).then_some(keyed_sections);
    let restore_plan = RestorePlan::new(metas, sections, options.assigner, parallelism)?;
    let keyed = if declared_keyed.is_empty() {
        None
    } else {
        let (binding, source) = match restore_plan.keyed(subtask) {
            Some(mine) => {
                let new = options.assigner.unwrap_or(old_keyed[0].assigner());
                (
                    Some((new, mine.key_groups)),
                    Some((old_keyed.clone(), mine.clone())),
                )
            }
            None => match options.assigner {
                Some(a) => (Some((a, a.range_for_subtask(parallelism, subtask)?)), None),
                None => (None, None),
            },
        };
        Some(KeyedRestore {
            binding,
            source,
            pending: declared_keyed,
            entries_restored: 0,
        })
    };
    let plan = restore_plan.items(subtask);

    let context = RestoreContext {
        subtask,
        parallelism,
        old_parallelism: metas.len(),
        checkpoint_id,
    };
    let mut state = RestoredState {
        context,
        metas,
        bytes,
        entries: plan
            .into_iter()
            .enumerate()
            .filter(|(i, _)| restored[*i])
            .map(|(index, runs)| (states[index].name(), Entry { index, runs }))
            .collect(),
        keyed,
        bytes_read: 0,
        items_restored: 0,
        identical_items_skipped: 0,
    };
    op.restore(&mut state)?;
    let (key_groups, key_groups_read, keyed_entries_restored) = match &state.keyed {
        Some(k) => {
            if let Some(name) = k.pending.first() {
                // A hand-written restore that forgot a keyed state.
                return Err(StateError::KeyedStateUnbound {
                    state: (*name).to_owned(),
                });
            }
            let read = k.source.as_ref().map_or(0, |(_, p)| p.key_groups_read());
            (k.binding.map(|b| b.1), u64::from(read), k.entries_restored)
        }
        None => (None, 0, 0),
    };
    Ok(RestoreReport {
        context,
        bytes_read: state.bytes_read,
        items_restored: state.items_restored,
        identical_items_skipped: state.identical_items_skipped,
        missing_states,
        dropped_states,
        key_groups,
        key_groups_read,
        keyed_entries_restored,
    })
}

#[cfg(test)]
#[path = "restore_tests.rs"]
mod tests;
