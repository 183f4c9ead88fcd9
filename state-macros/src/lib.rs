//! Derive macros for `state-runtime`. Use them through `state_runtime`
//! (`use state_runtime::prelude::*;`), which re-exports them; the generated code
//! names the runtime as `::state_runtime` (override with `crate = path`).
//!
//! Every derive follows the same stages: parse the input into a model
//! (reporting all attribute errors at once, with spans), check it, then
//! generate code. On error, the `compile_error!`s come with a minimal impl of
//! the trait so that one mistake does not cascade into many.

mod checkpointed;
mod common;
mod keyed;
mod stable_hash;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `state_runtime::hash::StableHash` (and `StateKey`): a 64-bit hash that
/// is the same on every machine, build and run.
///
/// Structs hash their fields in declaration order; enums hash the variant's
/// declaration index as `u32`, then its fields. Names are not hashed. See
/// `state_runtime::hash` for the byte-for-byte specification.
///
/// Container attribute: `#[stable_hash(crate = path)]` names the runtime crate
/// when it is not reachable as `::state_runtime`.
#[proc_macro_derive(StableHash, attributes(stable_hash))]
pub fn derive_stable_hash(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    stable_hash::expand(&input).into()
}

/// Derives `state_runtime::checkpoint::Checkpointed` for a struct with named fields:
/// operator state that is snapshotted item by item and redistributed when
/// the parallelism changes.
///
/// Every field says how it takes part in checkpoints:
///
/// | attribute | field type | on restore into `M` subtasks (from `N`) |
/// |---|---|---|
/// | `#[state(split)]` | a collection of serde items (`Vec`, `VecDeque`, `HashMap`, `BTreeMap`, `HashSet`, `BTreeSet`, any `state_runtime::ListState`) | the items of all old subtasks, in old-subtask order, dealt into `M` contiguous runs whose sizes differ by at most one (Flink's `SPLIT_DISTRIBUTE`); with `M == N` each subtask gets its own items back |
/// | `#[state(union)]` | a collection of serde items | every subtask gets every item of every old subtask |
/// | `#[state(broadcast)]` | any `Serialize + DeserializeOwned` value | subtask `j` gets the value of old subtask `j % N` |
/// | `#[state(keyed)]` | a keyed state container (`KeyedValue`, `KeyedList`, `KeyedMap`) | subtask `j` gets the entries of the key groups it owns now |
/// | `#[state(skip)]` | anything | not state: left as the constructor set it |
///
/// With several `split` fields, the subtasks that get the extra items (when
/// the item count does not divide evenly) rotate from one state to the next,
/// in declaration order. Flink rotates the same way but walks the states in
/// `java.util.HashMap` order of their names, so with several split states
/// the assignment can differ from Flink's; with one it is exactly Flink's.
///
/// Restored items come in origin order (old subtask, then position). A map's
/// items are its `(key, value)` pairs; hash maps and sets are snapshotted in
/// the order of their encoded bytes, so that the same state always gives the
/// same checkpoint. A map or set keeps one item per key: restored copies
/// identical to an earlier item are skipped, and items with one key but
/// different values are an error (`StateError::ConflictingItems`), never a
/// silently dropped value.
///
/// Field options, inside `#[state(..)]` next to the mode:
/// - `name = "..."`: the state's stable name in checkpoints (default: the
///   field's name). Set it before renaming a field, so that old checkpoints
///   still restore.
///
/// Container attribute `#[checkpointed(..)]`:
/// - `crate = path`: where the runtime crate is, when it is not reachable as
///   `::state_runtime` (re-exported or renamed).
/// - `on_restore = method`: calls `self.method(&RestoreContext)` after the
///   state fields are restored (subtask index, new and old parallelism,
///   checkpoint id), e.g. to notice an empty share.
///
/// The generated `restore` decodes every state before touching the
/// operator, then replaces the state fields; `skip` fields and everything
/// else the constructor set stay as they are (like Flink's
/// `initializeState`). Generic structs work; the impl requires `Ty:
/// ListState` (split, union) or `Ty: Serialize + DeserializeOwned`
/// (broadcast) for the field types that mention a type parameter.
///
/// Compile errors, all reported at once and pointing at the offending
/// tokens: a field without a mode, an unknown mode or option, two modes on
/// one field, `split`/`union` on a type that is not a collection of serde
/// items, two states with the same name, a `name` on a `skip` field, tuple
/// and unit structs, enums and unions.
///
/// ```
/// use std::collections::{BTreeSet, HashMap};
/// use state_runtime::prelude::*;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Clone, Default, PartialEq, Debug)]
/// struct Rules { max_lag: u64 }
///
/// #[derive(Checkpointed)]
/// #[checkpointed(on_restore = restored)]
/// struct KafkaSource {
///     /// `(partition, offset)` pairs, split across subtasks on rescale.
///     #[state(split, name = "offsets")]
///     partition_offsets: Vec<(u32, u64)>,
///     #[state(union)]
///     seen_schemas: BTreeSet<String>,
///     #[state(broadcast)]
///     rules: Rules,
///     #[state(split)]
///     pending: HashMap<u32, Vec<u8>>,
///     #[state(skip)]
///     topic: String,
///     #[state(skip)]
///     idle: bool,
/// }
///
/// impl KafkaSource {
///     fn new(topic: &str) -> Self {
///         KafkaSource {
///             partition_offsets: Vec::new(),
///             seen_schemas: BTreeSet::new(),
///             rules: Rules::default(),
///             pending: HashMap::new(),
///             topic: topic.to_string(),
///             idle: false,
///         }
///     }
///     fn restored(&mut self, _ctx: &RestoreContext) {
///         self.idle = self.partition_offsets.is_empty();
///     }
/// }
///
/// // Parallelism 2, four partitions.
/// let mut a = KafkaSource::new("events");
/// a.partition_offsets = vec![(0, 10), (1, 11)];
/// a.seen_schemas.insert("v1".into());
/// a.rules = Rules { max_lag: 5 };
/// let mut b = KafkaSource::new("events");
/// b.partition_offsets = vec![(2, 12), (3, 13)];
/// b.seen_schemas.insert("v2".into());
/// b.rules = Rules { max_lag: 5 };
/// let checkpoint = Checkpoint::from_subtasks(vec![a.snapshot()?, b.snapshot()?])?;
///
/// // Rescale to 5: one partition each, the fifth subtask is idle.
/// let mut restored = Vec::new();
/// for subtask in 0..5 {
///     let mut s = KafkaSource::new("events");
///     checkpoint.restore_into(&mut s, subtask, 5)?;
///     assert_eq!(s.topic, "events"); // untouched by restore
///     assert_eq!(s.seen_schemas.len(), 2); // union: everything everywhere
///     assert_eq!(s.rules, Rules { max_lag: 5 }); // broadcast copy
///     restored.push((s.partition_offsets, s.idle));
/// }
/// assert_eq!(restored, [
///     (vec![(0, 10)], false),
///     (vec![(1, 11)], false),
///     (vec![(2, 12)], false),
///     (vec![(3, 13)], false),
///     (vec![], true),
/// ]);
///
/// let names: Vec<_> = KafkaSource::state_descriptors().iter().map(|d| d.name).collect();
/// assert_eq!(names, ["offsets", "seen_schemas", "rules", "pending"]);
/// # Ok::<(), StateError>(())
/// ```
///
/// Generic operators:
///
/// ```
/// use state_runtime::prelude::*;
///
/// #[derive(Checkpointed)]
/// struct Buffer<T, C> {
///     #[state(split)]
///     items: Vec<T>,
///     #[state(skip)]
///     config: C, // no bound added: it is not state
/// }
///
/// let b = Buffer { items: vec!['x', 'y'], config: std::rc::Rc::new(()) };
/// let cp = Checkpoint::from_subtasks(vec![b.snapshot()?])?;
/// let mut c = Buffer { items: Vec::<char>::new(), config: std::rc::Rc::new(()) };
/// cp.restore_into(&mut c, 0, 1)?;
/// assert_eq!(c.items, ['x', 'y']);
/// # Ok::<(), StateError>(())
/// ```
#[proc_macro_derive(Checkpointed, attributes(state, checkpointed))]
pub fn derive_checkpointed(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    checkpointed::expand(&input).into()
}

/// Derives `state_runtime::Keyed` for an event type: the key of the keyed
/// state the event updates.
///
/// * `#[key]` on one field: the key is that field (`key()` returns `&T`, no
///   clone);
/// * `#[key]` on several fields: the key is the tuple of their types in field
///   order (`key()` returns the tuple of references);
/// * enums: every variant marks its key field(s) with `#[key]`, all of the
///   same type(s).
///
/// The key type must implement `StateKey` (derive `StableHash` for your own
/// key types), `Eq` and `Clone`; the derive adds these bounds spanned at the
/// key field, so a missing one is reported there.
///
/// Container attribute: `#[keyed(crate = path)]` names the runtime crate
/// when it is not reachable as `::state_runtime`.
///
/// Compile errors, all reported at once: no `#[key]`, a variant without a
/// key or with a key of another type, unions, `#[key(...)]` with options,
/// unknown `#[keyed(...)]` options.
///
/// ```
/// use state_runtime::prelude::*;
///
/// #[derive(Keyed)]
/// struct Purchase {
///     #[key]
///     customer: u32,
///     cents: i64,
/// }
///
/// assert_eq!(*Purchase { customer: 4, cents: 1 }.key(), 4);
/// ```
#[proc_macro_derive(Keyed, attributes(key, keyed))]
pub fn derive_keyed(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    keyed::expand(&input).into()
}
