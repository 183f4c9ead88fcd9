//! Keyed rescale end to end with real keys: fill N instances, snapshot every
//! key group through `write_key_group`, plan, restore M instances through
//! `read_key_group`, and check that every key's value, list and map is on
//! exactly one instance, the one owning its key group at parallelism M.

use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::prelude::*;
use state_runtime::keyed::plan::KeyedRescalePlan;
use state_runtime::keygroup::KeyGroup;
use state_runtime::prelude::*;

/// One operator instance with the three kinds of keyed state.
struct Instance {
    value: KeyedValue<i64, i64>,
    list: KeyedList<i64, u32>,
    map: KeyedMap<i64, u16, String>,
}

impl Instance {
    fn bound(assigner: KeyGroupAssigner, range: KeyGroupRange) -> Self {
        let mut s = Instance {
            value: KeyedValue::default(),
            list: KeyedList::default(),
            map: KeyedMap::default(),
        };
        s.value.set_state_name("value");
        s.list.set_state_name("list");
        s.map.set_state_name("map");
        for st in s.states_mut() {
            st.bind(assigner, range).unwrap();
        }
        s
    }

    fn states_mut(&mut self) -> [&mut dyn KeyedState; 3] {
        [&mut self.value, &mut self.list, &mut self.map]
    }

    fn states(&self) -> [&dyn KeyedState; 3] {
        [&self.value, &self.list, &self.map]
    }
}

fn expected_list(k: i64) -> Vec<u32> {
    (0..(k.rem_euclid(4) as u32))
        .map(|i| k as u32 ^ i)
        .collect()
}

fn expected_map(k: i64) -> HashMap<u16, String> {
    (0..(1 + k.rem_euclid(3) as u16))
        .map(|i| (i, format!("{k}/{i}")))
        .collect()
}

/// N instances holding `keys`, each key on the instance owning its key group.
fn fill(assigner: KeyGroupAssigner, parallelism: usize, keys: &[i64]) -> Vec<Instance> {
    let mut instances: Vec<Instance> = (0..parallelism)
        .map(|i| {
            Instance::bound(
                assigner,
                assigner.range_for_subtask(parallelism, i).unwrap(),
            )
        })
        .collect();
    for &k in keys {
        let kg = assigner.key_group(&k).unwrap();
        let inst = &mut instances[assigner.subtask_for_key_group(parallelism, kg).unwrap()];
        inst.value
            .update(&k, || 0, |v| *v += k.wrapping_mul(3))
            .unwrap();
        let list = expected_list(k);
        if !list.is_empty() {
            inst.list.extend(&k, list).unwrap();
        }
        for (uk, v) in expected_map(k) {
            inst.map.insert(k, uk, v).unwrap();
        }
    }
    instances
}

/// Per old subtask: key group -> one section per state.
type Snapshot = Vec<BTreeMap<KeyGroup, [Vec<u8>; 3]>>;

fn snapshot(instances: &[Instance]) -> Snapshot {
    instances
        .iter()
        .map(|inst| {
            let (_, range) = inst.value.binding().unwrap();
            range
                .iter()
                .map(|kg| {
                    let sections = inst.states().map(|st| {
                        let mut out = Vec::new();
                        st.write_key_group(kg, &mut out).unwrap();
                        out
                    });
                    (kg, sections)
                })
                .collect()
        })
        .collect()
}

/// Restores M instances as the plan says; returns them and the number of
/// (old key group, new subtask) sections read.
fn restore(plan: &KeyedRescalePlan, snap: &Snapshot) -> (Vec<Instance>, usize) {
    let mut sections_read = 0;
    let instances = plan
        .subtasks()
        .iter()
        .map(|s| {
            let mut inst = Instance {
                value: KeyedValue::default(),
                list: KeyedList::default(),
                map: KeyedMap::default(),
            };
            for (i, st) in inst.states_mut().into_iter().enumerate() {
                plan.restore_subtask(s.subtask, st, |old_subtask, kg, buf| {
                    if i == 0 {
                        sections_read += 1;
                    }
                    buf.extend_from_slice(&snap[old_subtask][&kg][i]);
                    Ok(())
                })
                .unwrap();
                assert_eq!(st.binding(), Some((plan.new_assigner(), s.key_groups)));
            }
            inst
        })
        .collect();
    (instances, sections_read)
}

/// Every key exactly once, on its owner at the new parallelism, with its
/// value, list and map.
fn verify(instances: &[Instance], assigner: KeyGroupAssigner, keys: &[i64]) {
    let p = instances.len();
    let (mut values, mut lists, mut maps) = (0, 0, 0);
    for inst in instances {
        values += inst.value.len();
        lists += inst.list.len();
        maps += inst.map.len();
    }
    assert_eq!(values, keys.len(), "every key's value exactly once");
    assert_eq!(
        lists,
        keys.iter()
            .filter(|k| !expected_list(**k).is_empty())
            .count(),
        "every key's list exactly once"
    );
    assert_eq!(maps, keys.len(), "every key's map exactly once");
    for &k in keys {
        let owner = assigner
            .subtask_for_key_group(p, assigner.key_group(&k).unwrap())
            .unwrap();
        let inst = &instances[owner];
        assert_eq!(
            inst.value.get(k).unwrap(),
            Some(&k.wrapping_mul(3)),
            "key {k}"
        );
        let list = expected_list(k);
        let got = inst.list.get(k).unwrap();
        if list.is_empty() {
            assert_eq!(got, None);
        } else {
            assert_eq!(got, Some(&list[..]), "key {k}");
        }
        assert_eq!(
            inst.map.get_map(k).unwrap(),
            Some(&expected_map(k)),
            "key {k}"
        );
    }
}

fn keys(n: usize, seed: u64) -> Vec<i64> {
    let mut s = seed;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    while out.len() < n {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let k = (z ^ (z >> 31)) as i64;
        if seen.insert(k) {
            out.push(k);
        }
    }
    out
}

fn rescale(
    old: KeyGroupAssigner,
    n: usize,
    new: KeyGroupAssigner,
    m: usize,
    keys: &[i64],
) -> usize {
    let before = fill(old, n, keys);
    verify(&before, old, keys);
    let snap = snapshot(&before);
    let plan = KeyedRescalePlan::new(old, n, new, m).unwrap();
    let (after, sections_read) = restore(&plan, &snap);
    verify(&after, new, keys);
    sections_read
}

fn native(m: u32) -> KeyGroupAssigner {
    KeyGroupAssigner::native(MaxParallelism::new(m).unwrap())
}

#[test]
fn native_128_to_256() {
    let read = rescale(native(128), 4, native(256), 7, &keys(20_000, 1));
    // Each new subtask reads its own hash interval plus at most its two
    // boundary groups: never more than 128 + 2 * 7 sections in all.
    assert!(read <= 128 + 2 * 7, "{read} sections read");
}

#[test]
fn native_256_to_100() {
    let read = rescale(native(256), 5, native(100), 3, &keys(20_000, 2));
    assert!(read <= 256 + 2 * 3, "{read} sections read");
}

#[test]
fn native_128_to_1000() {
    let read = rescale(native(128), 3, native(1000), 11, &keys(20_000, 3));
    assert!(read <= 128 + 2 * 11, "{read} sections read");
}

#[test]
fn same_max_parallelism_reads_each_key_group_once() {
    for old in [
        native(128),
        KeyGroupAssigner::flink(MaxParallelism::new(128).unwrap()),
    ] {
        for (n, m) in [(2, 3), (3, 2), (4, 1), (1, 4), (5, 5), (7, 16)] {
            let read = rescale(old, n, old, m, &keys(5_000, (n * 31 + m) as u64));
            assert_eq!(read, 128, "read amplification 1.0 for {n} -> {m}");
        }
    }
}

#[test]
fn snapshots_are_deterministic_and_survive_a_round_trip() {
    let ks = keys(5_000, 9);
    let a = fill(native(128), 3, &ks);
    let mut reversed = ks.clone();
    reversed.reverse();
    let b = fill(native(128), 3, &reversed);
    // Same state, other insertion order: byte-identical snapshots.
    let snap = snapshot(&a);
    assert_eq!(snap, snapshot(&b));
    // Restoring at the same parallelism and snapshotting again: identical.
    let plan = KeyedRescalePlan::new(native(128), 3, native(128), 3).unwrap();
    let (c, _) = restore(&plan, &snap);
    assert_eq!(snapshot(&c), snap);
    // And a rescale there and back.
    let there = KeyedRescalePlan::new(native(128), 3, native(300), 5).unwrap();
    let (d, _) = restore(&there, &snap);
    let back = KeyedRescalePlan::new(native(300), 5, native(128), 3).unwrap();
    let (e, _) = restore(&back, &snapshot(&d));
    assert_eq!(snapshot(&e), snap);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn conservation_native(
        n in 1usize..=16,
        m in 1usize..=16,
        old_max in 16u32..=400,
        new_max in 16u32..=400,
        same in any::<bool>(),
        ks in proptest::collection::hash_set(any::<i64>(), 1000..3000),
    ) {
        let ks: Vec<i64> = ks.into_iter().collect();
        let new_max = if same { old_max } else { new_max };
        let read = rescale(native(old_max), n, native(new_max), m, &ks);
        prop_assert!(read as u32 <= old_max + 2 * m as u32);
    }

    #[test]
    fn conservation_flink(
        n in 1usize..=16,
        m in 1usize..=16,
        max in 16u32..=400,
        ks in proptest::collection::hash_set(any::<i64>(), 1000..3000),
    ) {
        let ks: Vec<i64> = ks.into_iter().collect();
        let a = KeyGroupAssigner::flink(MaxParallelism::new(max).unwrap());
        let read = rescale(a, n, a, m, &ks);
        prop_assert_eq!(read as u32, max);
    }
}
