//! State types: a changed type is refused before anything changes, in every
//! mode; declared migrations restore exact values, through chains and
//! rescales; renaming a type is not a change; format v1 checkpoints restore
//! unchecked.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use state_runtime::checkpoint::durable::{StoredCheckpoint, write_checkpoint};
use state_runtime::prelude::*;
use state_runtime::storage::LocalStorage;

fn assigner() -> KeyGroupAssigner {
    KeyGroupAssigner::native(MaxParallelism::new(16).unwrap())
}

/// Snapshots `n` subtasks built by `make(i)` (keyed state bound first).
fn checkpoint<T: Checkpointed + Default>(
    n: usize,
    mut make: impl FnMut(usize, &mut T),
) -> Checkpoint {
    let subtasks = (0..n)
        .map(|i| {
            let mut op = T::default();
            op.bind_keyed(assigner(), assigner().range_for_subtask(n, i).unwrap())
                .unwrap();
            make(i, &mut op);
            op.snapshot().unwrap()
        })
        .collect();
    Checkpoint::from_subtasks(subtasks).unwrap()
}

/// The same checkpoint after a trip through disk (format v2).
fn through_disk(cp: &Checkpoint, dir: &Path) -> Checkpoint {
    let storage = LocalStorage::open(dir).unwrap();
    write_checkpoint(&storage, 1, &[("op", cp)]).unwrap();
    let stored = StoredCheckpoint::latest(&storage).unwrap().unwrap();
    stored.operator("op").unwrap().load().unwrap()
}

fn keys_owned(n: usize, i: usize) -> impl Iterator<Item = u64> {
    let range = assigner().range_for_subtask(n, i).unwrap();
    (0..60u64).filter(move |k| range.contains(assigner().key_group(k).unwrap()))
}

mod v1 {
    use super::*;

    #[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
    pub struct Rules {
        pub min: u32,
        pub max: u32,
    }

    #[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
    pub struct Reading {
        pub celsius: i32,
    }

    #[derive(Checkpointed, Default)]
    pub struct Op {
        #[state(split)]
        pub offsets: Vec<(u32, i64)>,
        #[state(union)]
        pub seen: BTreeMap<u32, String>,
        #[state(broadcast)]
        pub rules: Option<Rules>,
        #[state(keyed)]
        pub last: KeyedValue<u64, Reading>,
    }

    pub fn checkpoint(n: usize) -> Checkpoint {
        super::checkpoint::<Op>(n, |subtask, op| {
            let i = subtask as u32;
            op.offsets = vec![(i, -200 - i64::from(i)), (i + 10, 7)];
            op.seen = BTreeMap::from([(i, format!("s{i}"))]);
            op.rules = Some(Rules { min: 1, max: 9 });
            for k in keys_owned(n, subtask) {
                op.last
                    .insert(
                        k,
                        Reading {
                            celsius: k as i32 - 30,
                        },
                    )
                    .unwrap();
            }
        })
    }
}

/// Each mode changed on its own, without a migration.
mod changed {
    use super::*;

    /// `Vec<(u32, i64)>` became `Vec<(u64, u64)>`.
    #[derive(Checkpointed)]
    pub struct Split {
        #[state(split)]
        pub offsets: Vec<(u64, u64)>,
        #[state(union)]
        pub seen: BTreeMap<u32, String>,
        #[state(broadcast)]
        pub rules: Option<v1::Rules>,
        #[state(keyed)]
        pub last: KeyedValue<u64, v1::Reading>,
    }

    /// The union's values became numbers.
    #[derive(Checkpointed)]
    pub struct Union {
        #[state(split)]
        pub offsets: Vec<(u32, i64)>,
        #[state(union)]
        pub seen: BTreeMap<u32, u64>,
        #[state(broadcast)]
        pub rules: Option<v1::Rules>,
        #[state(keyed)]
        pub last: KeyedValue<u64, v1::Reading>,
    }

    /// Two fields of one type swapped: the same bytes, the wrong values.
    #[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
    pub struct SwappedRules {
        pub max: u32,
        pub min: u32,
    }

    #[derive(Checkpointed)]
    pub struct Broadcast {
        #[state(split)]
        pub offsets: Vec<(u32, i64)>,
        #[state(union)]
        pub seen: BTreeMap<u32, String>,
        #[state(broadcast)]
        pub rules: Option<SwappedRules>,
        #[state(keyed)]
        pub last: KeyedValue<u64, v1::Reading>,
    }

    #[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
    pub struct Reading {
        pub celsius: f32,
    }

    #[derive(Checkpointed)]
    pub struct Keyed {
        #[state(split)]
        pub offsets: Vec<(u32, i64)>,
        #[state(union)]
        pub seen: BTreeMap<u32, String>,
        #[state(broadcast)]
        pub rules: Option<v1::Rules>,
        #[state(keyed)]
        pub last: KeyedValue<u64, Reading>,
    }

    /// The key type changed: refused even with a value migration.
    #[derive(Checkpointed)]
    pub struct Key {
        #[state(split)]
        pub offsets: Vec<(u32, i64)>,
        #[state(union)]
        pub seen: BTreeMap<u32, String>,
        #[state(broadcast)]
        pub rules: Option<v1::Rules>,
        #[state(keyed, migrate_from(v1::Reading))]
        pub last: KeyedValue<i64, v1::Reading>,
    }
}

/// Builds a `changed` operator holding sentinel values, to see that a
/// refused restore leaves it untouched.
macro_rules! sentinel {
    ($ty:path, $offsets:expr, $seen:expr, $rules:expr, $last:ty) => {{
        let mut last = <$last>::default();
        last.bind(assigner(), assigner().max_parallelism().all_key_groups())
            .unwrap();
        $ty {
            offsets: $offsets,
            seen: $seen,
            rules: $rules,
            last,
        }
    }};
}

fn assert_type_changed(err: StateError, state: &str) {
    match &err {
        StateError::TypeChanged { state: s, .. } => assert_eq!(s, state, "{err}"),
        other => panic!("expected TypeChanged for `{state}`, got {other}"),
    }
}

#[test]
fn every_mode_changed_without_a_migration_is_refused_and_the_operator_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let memory = v1::checkpoint(2);
    let disk = through_disk(&memory, dir.path());
    for cp in [&memory, &disk] {
        let mut op = sentinel!(
            changed::Split,
            vec![(1, 1)],
            BTreeMap::new(),
            None,
            KeyedValue<u64, v1::Reading>
        );
        assert_type_changed(cp.restore_into(&mut op, 0, 1).unwrap_err(), "offsets");
        assert_eq!(op.offsets, [(1, 1)]);
        assert_eq!(op.last.len(), 0);

        let mut op = sentinel!(
            changed::Union,
            vec![(5, 5)],
            BTreeMap::from([(9, 9)]),
            None,
            KeyedValue<u64, v1::Reading>
        );
        assert_type_changed(cp.restore_into(&mut op, 0, 1).unwrap_err(), "seen");
        assert_eq!(
            (op.offsets.clone(), op.seen.clone()),
            (vec![(5, 5)], BTreeMap::from([(9, 9)]))
        );

        let mut op = sentinel!(
            changed::Broadcast,
            vec![(5, 5)],
            BTreeMap::new(),
            Some(changed::SwappedRules { max: 0, min: 0 }),
            KeyedValue<u64, v1::Reading>
        );
        let err = cp.restore_into(&mut op, 0, 1).unwrap_err();
        assert!(err.to_string().contains("struct{min:u32,max:u32}"), "{err}");
        assert_type_changed(err, "rules");
        assert_eq!(op.rules, Some(changed::SwappedRules { max: 0, min: 0 }));
        assert_eq!(op.offsets, [(5, 5)]);

        let mut op = sentinel!(
            changed::Keyed,
            vec![(5, 5)],
            BTreeMap::new(),
            None,
            KeyedValue<u64, changed::Reading>
        );
        op.last
            .insert(3, changed::Reading { celsius: 1.5 })
            .unwrap();
        assert_type_changed(cp.restore_into(&mut op, 1, 2).unwrap_err(), "last");
        assert_eq!(op.offsets, [(5, 5)]);
        assert_eq!(
            op.last.get(3).unwrap(),
            Some(&changed::Reading { celsius: 1.5 })
        );

        let mut op = sentinel!(
            changed::Key,
            vec![(5, 5)],
            BTreeMap::new(),
            None,
            KeyedValue<i64, v1::Reading>
        );
        let err = cp.restore_into(&mut op, 0, 3).unwrap_err();
        assert!(
            matches!(&err, StateError::KeyTypeChanged { state, .. } if state == "last"),
            "{err}"
        );
        assert_eq!(op.offsets, [(5, 5)]);
    }
}

/// Version 2 of the job: every state's type changed, each with a migration.
mod v2 {
    use super::*;

    #[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
    pub struct Rules {
        pub min: u64,
        pub max: u64,
        pub strict: bool,
    }

    impl From<v1::Rules> for Rules {
        fn from(r: v1::Rules) -> Self {
            Rules {
                min: r.min.into(),
                max: r.max.into(),
                strict: false,
            }
        }
    }

    #[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
    pub struct Reading {
        pub kelvin: f64,
    }

    impl From<v1::Reading> for Reading {
        fn from(r: v1::Reading) -> Self {
            Reading {
                kelvin: f64::from(r.celsius) + 273.0,
            }
        }
    }

    /// Tuples are foreign types: a function converts them.
    pub fn widen(old: (u32, i64)) -> (u64, u64) {
        (old.0.into(), old.1.unsigned_abs())
    }

    pub fn count(old: (u32, String)) -> (u32, usize) {
        (old.0, old.1.len())
    }

    #[derive(Checkpointed, Default)]
    pub struct Op {
        #[state(split, migrate_from((u32, i64) => widen))]
        pub offsets: Vec<(u64, u64)>,
        #[state(union, migrate_from((u32, String) => count))]
        pub seen: BTreeMap<u32, usize>,
        #[state(broadcast, migrate_from(Option<v1::Rules> => upgrade_rules))]
        pub rules: Option<Rules>,
        #[state(keyed, migrate_from(v1::Reading))]
        pub last: KeyedValue<u64, Reading>,
    }

    pub fn upgrade_rules(old: Option<v1::Rules>) -> Option<Rules> {
        old.map(Rules::from)
    }
}

/// What the v2 operator restores from `v1::checkpoint(n)`: split items,
/// union map, keyed values.
type V2View = (Vec<(u64, u64)>, BTreeMap<u32, usize>, BTreeMap<u64, f64>);

fn v2_expected(n: usize) -> V2View {
    let offsets = (0..n as u32)
        .flat_map(|i| [(u64::from(i), 200 + u64::from(i)), (u64::from(i) + 10, 7)])
        .collect();
    let seen = (0..n as u32).map(|i| (i, format!("s{i}").len())).collect();
    let last = (0..60u64).map(|k| (k, k as f64 - 30.0 + 273.0)).collect();
    (offsets, seen, last)
}

#[test]
fn migrations_restore_exact_values_in_every_mode_through_a_rescale() {
    let dir = tempfile::tempdir().unwrap();
    let memory = v1::checkpoint(2);
    let disk = through_disk(&memory, dir.path());
    let (offsets, seen, last) = v2_expected(2);
    for cp in [&memory, &disk] {
        // 2 -> 3 subtasks.
        let mut got_offsets = Vec::new();
        let mut got_last = BTreeMap::new();
        for j in 0..3 {
            let mut op = v2::Op::default();
            cp.restore_into(&mut op, j, 3).unwrap();
            got_offsets.extend(op.offsets.iter().copied());
            assert_eq!(op.seen, seen, "union, subtask {j}");
            assert_eq!(
                op.rules,
                Some(v2::Rules {
                    min: 1,
                    max: 9,
                    strict: false
                })
            );
            got_last.extend(op.last.iter().map(|(k, v)| (*k, v.kelvin)));
        }
        assert_eq!(got_offsets, offsets);
        assert_eq!(got_last, last);
    }
}

#[test]
fn a_migrated_state_checkpoints_as_its_new_version_and_restores_without_converting() {
    let mut op = v2::Op::default();
    v1::checkpoint(1).restore_into(&mut op, 0, 1).unwrap();
    let cp = Checkpoint::from_subtasks(vec![op.snapshot().unwrap()]).unwrap();
    let versions: Vec<(&str, u32)> = cp.subtasks()[0]
        .states()
        .iter()
        .map(|s| (s.name(), s.recorded_type().unwrap().version()))
        .collect();
    assert_eq!(versions, [("offsets", 2), ("seen", 2), ("rules", 2)]);
    let keyed = cp.subtasks()[0].keyed().unwrap();
    assert_eq!(keyed.states()[0].recorded_type().unwrap().version(), 2);
    let mut again = v2::Op::default();
    cp.restore_into(&mut again, 0, 1).unwrap();
    assert_eq!(again.offsets, op.offsets);
    assert_eq!(
        again
            .last
            .iter()
            .map(|(k, v)| (*k, v.kelvin))
            .collect::<BTreeMap<_, _>>(),
        v2_expected(1).2
    );
}

/// Version 3: a chain v1 -> v2 -> v3 for the keyed values and the split
/// items.
mod v3 {
    use super::*;

    #[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
    pub struct Reading {
        pub kelvin: f64,
        pub source: Option<String>,
    }

    impl From<v2::Reading> for Reading {
        fn from(r: v2::Reading) -> Self {
            Reading {
                kelvin: r.kelvin,
                source: Some("migrated".into()),
            }
        }
    }

    pub fn tag(old: (u64, u64)) -> (u64, u64, bool) {
        (old.0, old.1, true)
    }

    #[derive(Checkpointed, Default)]
    pub struct Op {
        #[state(split, migrate_from((u32, i64) => v2::widen, (u64, u64) => tag))]
        pub offsets: Vec<(u64, u64, bool)>,
        #[state(keyed, migrate_from(v1::Reading, v2::Reading))]
        pub last: KeyedValue<u64, Reading>,
    }
}

#[test]
fn chains_of_migrations_convert_from_every_older_version() {
    // Version 1 -> 3 directly, at a rescale 2 -> 1.
    let mut op = v3::Op::default();
    let mut options = RestoreOptions::default().allow_non_restored_state(true);
    options = options.assigner(assigner());
    v1::checkpoint(2)
        .restore_into_with(&mut op, 0, 1, &options)
        .unwrap();
    let (offsets, _, last) = v2_expected(2);
    let tagged: Vec<_> = offsets.iter().map(|&(a, b)| (a, b, true)).collect();
    assert_eq!(op.offsets, tagged);
    assert_eq!(op.last.len(), 60);
    for (k, v) in op.last.iter() {
        assert_eq!(v.kelvin, last[k]);
        assert_eq!(v.source.as_deref(), Some("migrated"));
    }

    // Version 2 -> 3.
    let mut v2_op = v2::Op::default();
    v1::checkpoint(1).restore_into(&mut v2_op, 0, 1).unwrap();
    let v2_cp = Checkpoint::from_subtasks(vec![v2_op.snapshot().unwrap()]).unwrap();
    let mut op = v3::Op::default();
    v2_cp.restore_into_with(&mut op, 0, 2, &options).unwrap();
    assert!(op.offsets.iter().all(|o| o.2));
    assert!(op.last.iter().all(|(k, v)| v.kelvin == last[k]));
}

mod renamed {
    use super::*;

    /// `v1::Reading` under another name, in another module.
    #[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
    pub struct Measurement {
        pub celsius: i32,
    }

    #[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
    pub struct Limits {
        pub min: u32,
        pub max: u32,
    }

    #[derive(Checkpointed, Default)]
    pub struct Renamed {
        #[state(split)]
        pub offsets: Vec<(u32, i64)>,
        #[state(union)]
        pub seen: BTreeMap<u32, String>,
        #[state(broadcast)]
        pub rules: Option<Limits>,
        #[state(keyed)]
        pub last: KeyedValue<u64, Measurement>,
    }
}

#[test]
fn renaming_a_type_or_its_module_is_not_a_change() {
    let mut op = renamed::Renamed::default();
    v1::checkpoint(2).restore_into(&mut op, 0, 1).unwrap();
    assert_eq!(op.rules, Some(renamed::Limits { min: 1, max: 9 }));
    assert_eq!(op.last.get(5).unwrap().unwrap().celsius, -25);
}

#[test]
fn a_version_newer_than_the_operator_declares_is_refused() {
    // A v2 checkpoint restored by the v1 job (a rollback).
    let mut v2_op = v2::Op::default();
    v1::checkpoint(1).restore_into(&mut v2_op, 0, 1).unwrap();
    let cp = Checkpoint::from_subtasks(vec![v2_op.snapshot().unwrap()]).unwrap();
    let mut op = v1::Op::default();
    let err = cp.restore_into(&mut op, 0, 1).unwrap_err();
    assert_type_changed(err, "offsets");
}

/// The operator of `tests/data/format-v1/README.md`.
mod format_v1 {
    use super::*;

    #[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
    pub struct Rules {
        pub color: String,
        pub limit: u32,
    }

    #[derive(Checkpointed, Default)]
    pub struct Job {
        #[state(split)]
        pub offsets: Vec<(u32, i64)>,
        #[state(union)]
        pub watermarks: BTreeMap<u32, i64>,
        #[state(broadcast)]
        pub rules: Option<Rules>,
        #[state(keyed)]
        pub totals: KeyedValue<u64, i64>,
        #[state(keyed)]
        pub recent: KeyedList<u64, u32>,
    }
}

#[test]
fn a_format_v1_checkpoint_restores_unchecked_at_a_rescale() {
    restores_the_fixture("tests/data/format-v1", 1);
}

#[test]
fn a_format_v2_checkpoint_restores_checked_at_a_rescale() {
    restores_the_fixture("tests/data/format-v2", 2);
}

/// The checkpoint of `tests/data/format-v1/README.md`, written in format
/// `version`, restores at parallelism 3 to the values it was written with.
fn restores_the_fixture(dir: &str, version: u32) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let storage = LocalStorage::open(&dir).unwrap();
    let stored = StoredCheckpoint::latest(&storage).unwrap().unwrap();
    assert_eq!(stored.format_version(), version);
    let job = stored.operator("job").unwrap();
    let recorded = version >= 2;
    assert!(
        job.states()
            .iter()
            .all(|s| s.recorded_type().is_some() == recorded)
    );
    assert!(
        job.keyed_states()
            .iter()
            .all(|s| s.recorded_type().is_some() == recorded)
    );
    let mut offsets = Vec::new();
    let mut totals = BTreeMap::new();
    let mut recent = BTreeMap::new();
    for j in 0..3 {
        let mut op = format_v1::Job::default();
        job.restore_into(&mut op, j, 3).unwrap();
        offsets.extend(op.offsets.iter().copied());
        assert_eq!(op.watermarks, BTreeMap::from([(0, 1000), (1, 1001)]));
        assert_eq!(
            op.rules,
            Some(format_v1::Rules {
                color: "red".into(),
                limit: 7
            })
        );
        totals.extend(op.totals.iter().map(|(k, v)| (*k, *v)));
        recent.extend(op.recent.iter().map(|(k, v)| (*k, v.clone())));
    }
    assert_eq!(offsets, [(0, -1), (2, 200), (1, -101), (3, 200)]);
    assert_eq!(totals, (0..40u64).map(|k| (k, k as i64 * 3 - 20)).collect());
    let expected_recent: BTreeMap<u64, Vec<u32>> = (0..40u64)
        .filter(|k| k % 3 > 0)
        .map(|k| (k, (0..k % 3).map(|j| (k * 10 + j) as u32).collect()))
        .collect();
    assert_eq!(recent, expected_recent);
}

#[test]
fn check_restore_refuses_a_changed_type_and_accepts_a_declared_migration() {
    let cp = v1::checkpoint(2);
    let options = RestoreOptions::default();
    assert_type_changed(
        cp.check_restore::<changed::Split>(&options).unwrap_err(),
        "offsets",
    );
    assert_type_changed(
        cp.check_restore::<changed::Keyed>(&options).unwrap_err(),
        "last",
    );
    assert!(matches!(
        cp.check_restore::<changed::Key>(&options).unwrap_err(),
        StateError::KeyTypeChanged { .. }
    ));
    cp.check_restore::<v2::Op>(&options).unwrap();
    cp.check_restore::<renamed::Renamed>(&options).unwrap();
}
