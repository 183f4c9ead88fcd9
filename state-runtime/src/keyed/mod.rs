//! Keyed state: state scoped to the key of each event, stored and
//! redistributed by key group.
//!
//! * [`Keyed`](crate::Keyed): events that carry a key (`#[derive(Keyed)]`).
//! * [`KeyedValue`], [`KeyedList`], [`KeyedMap`]: one value, a list, or a map
//!   per key, as Flink's `ValueState`, `ListState` and `MapState`. Each holds
//!   the entries of the key groups its instance owns, one hash table per key
//!   group; a key outside the owned range is a
//!   [`StateError::KeyGroupOutsideRange`].
//! * [`KeyedState`]: what the runtime needs from any keyed container to
//!   snapshot and restore it key group by key group.
//! * [`plan`]: which old key groups each new instance reads on a rescale
//!   (metadata only).
//!
//! ```
//! use state_runtime::prelude::*;
//!
//! let assigner = KeyGroupAssigner::native(MaxParallelism::new(128)?);
//! // Instance 0 of 2 owns key groups 0..=63.
//! let range = assigner.range_for_subtask(2, 0)?;
//! let mut sums = KeyedValue::<u64, i64>::new(assigner, range)?;
//! let mine = (0u64..).find(|k| range.contains(assigner.key_group(k).unwrap())).unwrap();
//! sums.update(&mine, || 0, |s| *s += 5)?;
//! assert_eq!(sums.get(&mine)?, Some(&5));
//! let foreign = (0u64..).find(|k| !range.contains(assigner.key_group(k).unwrap())).unwrap();
//! assert!(matches!(
//!     sums.get(&foreign),
//!     Err(StateError::KeyGroupOutsideRange { .. })
//! ));
//! # Ok::<(), StateError>(())
//! ```

pub(crate) mod changes;
pub(crate) mod frozen;
pub(crate) mod group;
mod list;
mod map;
mod ordered;
pub mod plan;
mod prefetch;
pub(crate) mod table;
mod value;

#[doc(hidden)]
pub use changes::SnapshotPosition;
pub use frozen::FrozenKeyGroups;
pub use list::KeyedList;
pub use map::KeyedMap;
pub use value::KeyedValue;

use crate::error::StateError;
use crate::keygroup::{KeyGroup, KeyGroupAssigner, KeyGroupRange};
use crate::schema::{Migrations, StateType};

/// The runtime's view of a keyed container: naming, binding to a key-group
/// range, and snapshot / restore of one key group at a time.
///
/// Object safe, so a runtime can hold `&mut dyn KeyedState` for every keyed
/// field of an operator.
///
/// # Snapshot
/// [`write_key_group`](KeyedState::write_key_group) appends one key group's
/// section: its entries sorted by stable hash (ties by encoded key), so the same state gives the
/// same bytes. A checkpoint writes the sections of every owned key group with
/// an offsets index.
///
/// # Restore
/// The runtime binds a fresh container to the new assigner and range
/// ([`bind`](KeyedState::bind)), then hands it every section the
/// [`plan`] says to read with
/// [`read_key_group`](KeyedState::read_key_group). Each entry keeps its key,
/// so its key group is recomputed with the new assigner: when the max
/// parallelism changed (native mode), entries are re-bucketed into the new
/// key groups. For the boundary key groups the plan marks, a filter drops
/// entries that now belong to another instance.
///
/// ```
/// use state_runtime::prelude::*;
///
/// let old = KeyGroupAssigner::native(MaxParallelism::new(128)?);
/// let mut before = KeyedValue::<u64, i64>::new(old, old.max_parallelism().all_key_groups())?;
/// for k in 0..1000u64 {
///     before.insert(k, k as i64 * 2)?;
/// }
/// // Snapshot every key group.
/// let sections: Vec<(u32, Vec<u8>)> = old
///     .max_parallelism()
///     .all_key_groups()
///     .iter()
///     .map(|kg| {
///         let mut out = Vec::new();
///         before.write_key_group(kg, &mut out).map(|()| (kg, out))
///     })
///     .collect::<Result<_, _>>()?;
///
/// // Restore into instance 1 of 3 with a new max parallelism of 200.
/// let new = KeyGroupAssigner::native(MaxParallelism::new(200)?);
/// let range = new.range_for_subtask(3, 1)?;
/// let mut after = KeyedValue::<u64, i64>::default();
/// after.bind(new, range)?;
/// for (kg, bytes) in &sections {
///     // (a real restore reads only what the plan names; see `plan`)
///     let keep = |new_kg: u32| range.contains(new_kg);
///     after.read_key_group(*kg, bytes, Some(&keep))?;
/// }
/// let expected = (0..1000u64).filter(|k| range.contains(new.key_group(k).unwrap())).count();
/// assert_eq!(after.len(), expected);
/// assert!(after.iter().all(|(k, v)| *v == *k as i64 * 2));
/// # Ok::<(), StateError>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a keyed state container, so it cannot be `keyed` state",
    label = "not a keyed state container",
    note = "keyed state is a `KeyedValue<K, V>`, `KeyedList<K, V>` or `KeyedMap<K, UK, V>` (or another `KeyedState + Default`)"
)]
pub trait KeyedState {
    /// The state's name, used in errors and by checkpoints.
    fn state_name(&self) -> &str;

    /// The container's type name, recorded in checkpoints.
    fn type_name(&self) -> &'static str {
        std::any::type_name::<Self>()
    }

    /// Sets the state's name (the runtime uses the field name or
    /// `#[state(name = "...")]`).
    fn set_state_name(&mut self, name: &str);

    /// The assigner and the owned key groups, `None` while unbound.
    fn binding(&self) -> Option<(KeyGroupAssigner, KeyGroupRange)>;

    /// Binds the state to `assigner` and the owned `range`, moving every
    /// entry it already holds into its key group under `assigner`. Checks the
    /// key type against the assigner once (Flink mode needs a Java hash code).
    ///
    /// Errors, leaving the state unchanged, if the key type does not fit the
    /// assigner, `range` goes past the max parallelism, or an entry would fall
    /// outside `range`.
    fn bind(&mut self, assigner: KeyGroupAssigner, range: KeyGroupRange) -> Result<(), StateError>;

    /// Number of keys with state.
    fn key_count(&self) -> usize;

    /// Number of keys with state in `key_group` (an owned key group).
    fn key_group_len(&self, key_group: KeyGroup) -> Result<usize, StateError>;

    /// About how many bytes [`write_key_group`](KeyedState::write_key_group)
    /// would append for every owned key group together (a hint for reserving
    /// the snapshot buffer; 0 if unknown).
    fn encoded_size_hint(&self) -> usize {
        0
    }

    /// Appends the section of `key_group` (an owned key group) to `out`:
    /// every entry of the key group, sorted by stable hash (ties by encoded key), so the same state
    /// gives byte-identical output.
    fn write_key_group(&self, key_group: KeyGroup, out: &mut Vec<u8>) -> Result<(), StateError>;

    /// Decodes a section written by
    /// [`write_key_group`](KeyedState::write_key_group) for `key_group` of the
    /// checkpoint, and inserts its entries, each into its key group under the
    /// *bound* assigner.
    ///
    /// `filter` is given each entry's new key group; entries it rejects are
    /// skipped (the plan asks for this on boundary key groups when the max
    /// parallelism changed). Without a filter, or for entries the filter
    /// keeps, a key outside the owned range is an error: the section was not
    /// meant for this instance. A key already present is a decode error.
    ///
    /// Corrupt bytes give [`StateError::Decode`] naming the state, the key
    /// group and the byte offset; they never panic, and a corrupt length
    /// never allocates beyond the section's size. On error the state may hold
    /// some of the section's entries; abandon the restore.
    ///
    /// Returns the number of entries inserted.
    fn read_key_group(
        &mut self,
        key_group: KeyGroup,
        bytes: &[u8],
        filter: Option<&dyn Fn(KeyGroup) -> bool>,
    ) -> Result<usize, StateError>;

    /// Applies a delta section that an incremental checkpoint wrote for
    /// `key_group` on top of the sections restored before it (see
    /// [`FrozenKeyGroups::write_key_group_delta`]): for each changed key, its
    /// entry now, or its removal. `filter` and errors as for
    /// [`read_key_group`](KeyedState::read_key_group). Returns the number of
    /// entries inserted.
    ///
    /// Only states whose [`freeze`](KeyedState::freeze) knows its changes
    /// are written as deltas; the default refuses.
    fn read_key_group_delta(
        &mut self,
        key_group: KeyGroup,
        bytes: &[u8],
        filter: Option<&dyn Fn(KeyGroup) -> bool>,
    ) -> Result<usize, StateError> {
        let _ = (bytes, filter);
        Err(StateError::Decode {
            state: self.state_name().to_owned(),
            message: format!(
                "key group {key_group}: a delta section, which this container does not read"
            ),
        })
    }

    /// Removes every entry (the binding stays).
    fn clear_state(&mut self);

    /// The state as it is now, for a snapshot written later on another
    /// thread while the state goes on changing (an asynchronous snapshot);
    /// `None` if the container cannot share its entries, in which case the
    /// snapshot encodes them at once. The containers of this crate share
    /// their pages, copying no entry.
    ///
    /// With `track_changes`, the state records from now on which keys
    /// change, so that the next snapshot can be written as a delta of this
    /// one (incremental checkpoints); without, it stops recording.
    #[doc(hidden)]
    fn freeze(&self, track_changes: bool) -> Option<std::sync::Arc<dyn FrozenKeyGroups>> {
        let _ = track_changes;
        None
    }

    /// Version 1 of the state's type: the shapes of its key and value types,
    /// as a checkpoint records them (see [`crate::schema`]).
    fn value_type(&self) -> Result<StateType, StateError>;

    /// Checks the type a checkpoint recorded for this state (`None`: a format
    /// v1 checkpoint, unchecked) against the state's, and chooses how
    /// [`read_key_group`](KeyedState::read_key_group) decodes values: as the
    /// current type, or as an older version declared with
    /// [`MigrateValues::set_migrations`], converted. A changed key type is
    /// [`StateError::KeyTypeChanged`]; a changed value type without a
    /// migration is [`StateError::TypeChanged`].
    fn prepare_restore(&mut self, recorded: Option<&StateType>) -> Result<(), StateError>;
}

/// A keyed container whose values can be migrated from older types: the
/// value of a [`KeyedValue`], the element of a [`KeyedList`], the value of a
/// [`KeyedMap`] (keys, and a map's user keys, cannot change type).
///
/// ```
/// use state_runtime::prelude::*;
/// use state_runtime::keyed::MigrateValues;
/// use state_runtime::schema::Migrations;
///
/// let mut totals = KeyedValue::<String, i64>::default();
/// totals.set_migrations(Migrations::new().from(|old: i32| i64::from(old)));
/// # let _ = totals;
/// ```
pub trait MigrateValues: KeyedState {
    /// The type that migrates.
    type Value;

    /// Declares the older versions of the value type, for restores of
    /// checkpoints written by them. Snapshots record the version the
    /// operator writes (see [`SnapshotWriter::version`](crate::checkpoint::SnapshotWriter::version)).
    fn set_migrations(&mut self, migrations: Migrations<Self::Value>);
}

/// A keyed state's declared migrations, and which version the restore in
/// progress decodes.
pub(crate) struct ValueVersions<V> {
    migrations: crate::schema::SharedMigrations<V>,
    /// `Some(v)`: values are decoded as older version `v`, converted.
    decoding: Option<u32>,
}

impl<V> Default for ValueVersions<V> {
    fn default() -> Self {
        Self {
            migrations: None,
            decoding: None,
        }
    }
}

impl<V> Clone for ValueVersions<V> {
    fn clone(&self) -> Self {
        Self {
            migrations: self.migrations.clone(),
            decoding: self.decoding,
        }
    }
}

impl<V: serde::de::DeserializeOwned> ValueVersions<V> {
    fn set(&mut self, migrations: Migrations<V>) {
        self.migrations = Some(std::sync::Arc::new(migrations));
        self.decoding = None;
    }

    /// See [`KeyedState::prepare_restore`]; `key` traces the key's shape.
    fn prepare(
        &mut self,
        state: &str,
        recorded: Option<&StateType>,
        key: fn() -> Result<String, StateError>,
    ) -> Result<(), StateError> {
        let decoder = crate::schema::check(
            state,
            crate::schema::Part::Values,
            recorded,
            Some(key),
            self.migrations.as_deref(),
        )?;
        self.decoding = decoder.older_version();
        Ok(())
    }

    /// Decodes one value from the front of `bytes`, as the version chosen by
    /// [`prepare`](Self::prepare).
    #[inline]
    fn decode_prefix(&self, bytes: &[u8], state: &str) -> Result<(V, usize), StateError> {
        match (self.decoding, self.migrations.as_deref()) {
            (Some(version), Some(m)) => m.decode_older(version, bytes, state),
            _ => crate::codec::decode_prefix::<V>(bytes, state),
        }
    }
}

/// Implements the container methods that only forward to the key-group
/// tables, and `KeyedState`.
macro_rules! keyed_common {
    (
        $ty:ident < $($p:ident),+ >, value = $val:ty,
        migrates = $elem:ty, key = $key:ty,
        state_bounds = { $($bounds:tt)* },
        write = $write:ty, read = $read:expr
    ) => {
        impl<$($p),+> Default for $ty<$($p),+> {
            /// An unbound, empty state: the runtime binds it before use.
            fn default() -> Self {
                Self {
                    tables: $crate::keyed::table::Tables::default(),
                    versions: $crate::keyed::ValueVersions::default(),
                }
            }
        }

        impl<$($p),+> ::std::fmt::Debug for $ty<$($p),+>
        where
            K: $crate::hash::StateKey + Eq,
        {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("name", &self.tables.name())
                    .field("binding", &self.tables.binding())
                    .field("keys", &self.tables.len())
                    .finish()
            }
        }

        impl<$($p),+> $ty<$($p),+>
        where
            K: $crate::hash::StateKey + Eq,
        {
            /// A state bound to `assigner` that owns the key groups `range`.
            ///
            /// Errors if the key type cannot be assigned by `assigner` (Flink
            /// mode needs a Java hash code: `i32`, `i64`, `String`) or if
            /// `range` goes past the max parallelism.
            pub fn new(
                assigner: $crate::keygroup::KeyGroupAssigner,
                range: $crate::keygroup::KeyGroupRange,
            ) -> Result<Self, $crate::StateError> {
                Ok(Self {
                    tables: $crate::keyed::table::Tables::new(assigner, range)?,
                    versions: $crate::keyed::ValueVersions::default(),
                })
            }

            /// Sets the state's name, used in errors (builder style).
            pub fn named(mut self, name: &str) -> Self {
                self.tables.set_name(name);
                self
            }

            /// The state's name.
            pub fn name(&self) -> &str {
                self.tables.name()
            }

            /// Binds the state to `assigner` and `range`; see
            /// [`KeyedState::bind`](crate::keyed::KeyedState::bind).
            pub fn bind(
                &mut self,
                assigner: $crate::keygroup::KeyGroupAssigner,
                range: $crate::keygroup::KeyGroupRange,
            ) -> Result<(), $crate::StateError> {
                self.tables.bind(assigner, range)
            }

            /// The assigner and owned key groups, `None` while unbound.
            pub fn binding(
                &self,
            ) -> Option<($crate::keygroup::KeyGroupAssigner, $crate::keygroup::KeyGroupRange)> {
                self.tables.binding()
            }

            /// The key group of `key` under the bound assigner (whether or not
            /// this instance owns it).
            pub fn key_group_of<Q: $crate::key::KeyQuery<K>>(
                &self,
                key: Q,
            ) -> Result<$crate::keygroup::KeyGroup, $crate::StateError> {
                self.tables.key_group(&key)
            }

            /// Number of keys with state.
            pub fn len(&self) -> usize {
                self.tables.len()
            }

            /// Whether no key has state.
            pub fn is_empty(&self) -> bool {
                self.tables.len() == 0
            }

            /// Removes every entry (the binding stays).
            pub fn clear(&mut self) {
                self.tables.clear()
            }

            /// Whether `key` has state. Errors if `key` is outside the owned
            /// key groups.
            pub fn contains_key<Q: $crate::key::KeyQuery<K>>(
                &self,
                key: Q,
            ) -> Result<bool, $crate::StateError> {
                Ok(self.tables.get(key)?.is_some())
            }

            /// Every key with its state, key group by key group (in no
            /// particular order within a key group).
            pub fn iter(&self) -> impl Iterator<Item = (&K, &$val)> + '_ {
                self.tables.iter()
            }

            /// Every key with mutable access to its state.
            pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut $val)> + '_ {
                self.tables.iter_mut()
            }

            /// The keys of `key_group` (an owned key group) with their state.
            pub fn iter_key_group(
                &self,
                key_group: $crate::keygroup::KeyGroup,
            ) -> Result<impl Iterator<Item = (&K, &$val)> + '_, $crate::StateError> {
                self.tables.iter_key_group(key_group)
            }

            /// Keeps only the keys for which `f` returns true.
            pub fn retain(&mut self, f: impl FnMut(&K, &mut $val) -> bool) {
                self.tables.retain(f)
            }
        }

        impl<$($p),+> $ty<$($p),+>
        where
            K: $crate::hash::StateKey + Eq + ::serde::Serialize + ::serde::de::DeserializeOwned,
            $($p: Send + Sync + 'static,)+
            $($bounds)*
        {
            /// Decodes a full (`delta == false`) or delta section of
            /// `key_group` into the tables, values as the current type or
            /// as the older version a restore prepared.
            fn read_section(
                &mut self,
                delta: bool,
                key_group: $crate::keygroup::KeyGroup,
                bytes: &[u8],
                filter: Option<&dyn Fn($crate::keygroup::KeyGroup) -> bool>,
            ) -> Result<usize, $crate::StateError> {
                let versions = &self.versions;
                let tables = &mut self.tables;
                if versions.decoding.is_none() {
                    // The current type: decoded inline.
                    let elem = |b: &[u8], n: &str| $crate::codec::decode_prefix::<$elem>(b, n);
                    tables.read_section(delta, key_group, bytes, filter, |b, n| $read(b, n, &elem))
                } else {
                    let elem = |b: &[u8], n: &str| versions.decode_prefix(b, n);
                    tables.read_section(delta, key_group, bytes, filter, |b, n| $read(b, n, &elem))
                }
            }
        }

        impl<$($p),+> $crate::keyed::KeyedState for $ty<$($p),+>
        where
            K: $crate::hash::StateKey + Eq + ::serde::Serialize + ::serde::de::DeserializeOwned,
            $($p: Send + Sync + 'static,)+
            $($bounds)*
        {
            fn state_name(&self) -> &str {
                self.tables.name()
            }

            fn set_state_name(&mut self, name: &str) {
                self.tables.set_name(name)
            }

            fn binding(
                &self,
            ) -> Option<($crate::keygroup::KeyGroupAssigner, $crate::keygroup::KeyGroupRange)> {
                self.tables.binding()
            }

            fn bind(
                &mut self,
                assigner: $crate::keygroup::KeyGroupAssigner,
                range: $crate::keygroup::KeyGroupRange,
            ) -> Result<(), $crate::StateError> {
                self.tables.bind(assigner, range)
            }

            fn key_count(&self) -> usize {
                self.tables.len()
            }

            fn key_group_len(
                &self,
                key_group: $crate::keygroup::KeyGroup,
            ) -> Result<usize, $crate::StateError> {
                self.tables.key_group_len(key_group)
            }

            fn encoded_size_hint(&self) -> usize {
                self.tables.encoded_size_hint()
            }

            fn write_key_group(
                &self,
                key_group: $crate::keygroup::KeyGroup,
                out: &mut Vec<u8>,
            ) -> Result<(), $crate::StateError> {
                self.tables
                    .write_key_group(key_group, out, $crate::keyed::frozen::Encoders::of::<$write>())
            }

            fn read_key_group(
                &mut self,
                key_group: $crate::keygroup::KeyGroup,
                bytes: &[u8],
                filter: Option<&dyn Fn($crate::keygroup::KeyGroup) -> bool>,
            ) -> Result<usize, $crate::StateError> {
                self.read_section(false, key_group, bytes, filter)
            }

            fn read_key_group_delta(
                &mut self,
                key_group: $crate::keygroup::KeyGroup,
                bytes: &[u8],
                filter: Option<&dyn Fn($crate::keygroup::KeyGroup) -> bool>,
            ) -> Result<usize, $crate::StateError> {
                self.read_section(true, key_group, bytes, filter)
            }

            fn clear_state(&mut self) {
                self.tables.clear()
            }

            fn freeze(
                &self,
                track_changes: bool,
            ) -> Option<::std::sync::Arc<dyn $crate::keyed::FrozenKeyGroups>> {
                let encode = $crate::keyed::frozen::Encoders::<K, $val>::of::<$write>();
                // Values as this build encodes them: the current type.
                let read: fn(&[u8], &str) -> Result<($val, usize), $crate::StateError> =
                    |b, n| {
                        let elem =
                            |b: &[u8], n: &str| $crate::codec::decode_prefix::<$elem>(b, n);
                        $read(b, n, &elem)
                    };
                let decode = $crate::keyed::frozen::Decoders {
                    key: $crate::codec::decode_prefix::<K>,
                    value: read,
                };
                Some(self.tables.freeze(encode, decode, track_changes))
            }

            fn value_type(&self) -> Result<$crate::schema::StateType, $crate::StateError> {
                $crate::schema::StateType::keyed::<$key, $elem>(1)
            }

            fn prepare_restore(
                &mut self,
                recorded: Option<&$crate::schema::StateType>,
            ) -> Result<(), $crate::StateError> {
                let name = self.tables.name().to_owned();
                self.versions.prepare(&name, recorded, $crate::schema::shape_text::<$key>)
            }
        }

        impl<$($p),+> $crate::keyed::MigrateValues for $ty<$($p),+>
        where
            K: $crate::hash::StateKey + Eq + ::serde::Serialize + ::serde::de::DeserializeOwned,
            $($p: Send + Sync + 'static,)+
            $($bounds)*
        {
            type Value = $elem;

            fn set_migrations(&mut self, migrations: $crate::schema::Migrations<$elem>) {
                self.versions.set(migrations)
            }
        }
    };
}
pub(crate) use keyed_common;
