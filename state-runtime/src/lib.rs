//! Rescalable state for Rust stream operators.
//!
//! A job runs each operator as N parallel instances. A checkpoint captures
//! every instance's state; restoring it into M instances gives each new
//! instance exactly the state it is now responsible for. This crate holds the
//! runtime: key groups and stable key hashing, keyed and operator state, the
//! repartitioner and checkpoints. The derives (`Checkpointed`, `Keyed`,
//! `StableHash`) are re-exported from `state-macros` behind the default
//! `derive` feature.

#![warn(missing_docs)]

pub mod checkpoint;
mod codec;
mod error;
pub mod flink;
pub mod hash;
#[cfg(feature = "kafka")]
pub mod kafka;
mod key;
pub mod keyed;
pub mod keygroup;
mod operator;
pub(crate) mod repartition;
pub mod runner;
pub mod schema;
pub(crate) mod shape;
pub mod storage;

// Each public name has one path: its module's, or the root's for the few
// whose modules are private (the prelude is a convenience glob).
pub use error::StateError;
pub use key::{KeyQuery, Keyed};
pub use operator::{ListState, StateDescriptor, StateMode};

#[cfg(feature = "derive")]
pub use state_macros::Keyed;

/// The names most programs need: `use state_runtime::prelude::*;`.
pub mod prelude {
    pub use crate::checkpoint::{
        Checkpoint, Checkpointed, Restore, RestoreContext, RestoreOptions, RestoreReport,
        RestoredState, SnapshotWriter, SubtaskSnapshot,
    };
    pub use crate::error::StateError;
    pub use crate::hash::{StableHash, StateKey};
    pub use crate::key::{KeyQuery, Keyed};
    pub use crate::keyed::{KeyedList, KeyedMap, KeyedState, KeyedValue};
    pub use crate::keygroup::{AssignerKind, KeyGroupAssigner, KeyGroupRange, MaxParallelism};
    pub use crate::operator::{ListState, StateDescriptor, StateMode};
    // The derives come with their traits' names (`Keyed` through the root).
    #[cfg(feature = "derive")]
    pub use state_macros::Keyed;
}

/// Not public API: what the derives' generated code names by absolute path.
#[doc(hidden)]
pub mod __private {
    pub use crate::checkpoint::derive_support::{
        broadcast_ops, check_item_type, check_keyed_type, keyed_ops, list_ops,
    };
    pub use crate::checkpoint::{
        Checkpointed, RestoreContext, RestoredState, SnapshotWriter, SubtaskSnapshot,
    };
    pub use crate::error::StateError;
    pub use crate::hash::{StableHash, StableHasher, StateKey};
    pub use crate::key::{KeyQuery, Keyed};
    pub use crate::keyed::{KeyedState, MigrateValues};
    pub use crate::keygroup::{KeyGroupAssigner, KeyGroupRange};
    pub use crate::operator::{ListState, StateDescriptor, StateMode};
    pub use crate::schema::Migrations;
    pub use core;
    pub use serde::Serialize;
    pub use serde::de::DeserializeOwned;
    pub use std::vec::Vec;

    /// Fails to compile, at the caller's span, unless `T` can be a single key.
    #[inline]
    pub fn assert_state_key<T: StateKey + Eq + Clone>() {}

    /// Fails to compile, at the caller's span, unless `T` can be part of a
    /// tuple key.
    #[inline]
    pub fn assert_key_part<T: StableHash + Eq + Clone>() {}
}

/// The README's Rust examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme_doctests {}

/// The state-types guide's Rust examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/state-types.md")]
mod state_types_doctests {}

/// The operator-state guide's Rust examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/operator-state.md")]
mod operator_state_doctests {}

/// The keyed-state guide's Rust examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/keyed-state.md")]
mod keyed_state_doctests {}

/// The runner guide's Rust examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/runner.md")]
mod runner_doctests {}

/// The durable-checkpoints guide's Rust examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/durable-checkpoints.md")]
mod durable_checkpoints_doctests {}
