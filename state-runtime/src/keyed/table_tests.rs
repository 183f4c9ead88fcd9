//! Tests of the key-group tables: snapshots byte-identical whatever the
//! history, restores linear in the entries, corrupt counts bounded.

use super::*;

use crate::hash::{StableHash, StableHasher};
use serde::Deserialize;

/// A key whose stable hash has only five values: long runs of equal
/// hashes, ordered by encoded key.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
struct Weak(u64);

impl StableHash for Weak {
    fn stable_hash_into(&self, h: &mut StableHasher) {
        h.write_bytes(&(self.0 % 5).to_le_bytes());
    }
}
impl StateKey for Weak {}

/// A key whose stable hash comes in pairs that differ only in the
/// lowest bit, which the tables do not keep: the snapshot must still
/// order each pair by hash.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
struct Paired(u64);

impl StableHash for Paired {
    fn stable_hash_into(&self, h: &mut StableHasher) {
        h.write_bytes(&self.0.to_le_bytes());
    }

    fn stable_hash(&self) -> u64 {
        // The larger key of a pair has the smaller hash, so byte order
        // alone would give the wrong order.
        (wide(self.0 / 2) & !1) | u64::from(self.0 % 2 == 0)
    }
}
impl StateKey for Paired {}

type Key<K> = fn(u64) -> K;

fn wide(i: u64) -> u64 {
    i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn weak(i: u64) -> Weak {
    Weak(i)
}

fn new_table<K: StateKey + Eq>() -> Tables<K, i64> {
    let a = KeyGroupAssigner::native(MaxParallelism::new(8).unwrap());
    Tables::new(a, a.max_parallelism().all_key_groups()).unwrap()
}

/// How the tests' `i64` values encode: by the codec.
fn i64_encoders<K: StateKey + Serialize>() -> Encoders<K, i64> {
    Encoders::of::<super::super::frozen::SerdeValue>()
}

/// Every owned key group's section, as `write_key_group` writes it.
fn sections<K: StateKey + Eq + Serialize + DeserializeOwned>(t: &Tables<K, i64>) -> Vec<Vec<u8>> {
    t.range
        .iter()
        .map(|kg| {
            let mut out = Vec::new();
            t.write_key_group(kg, &mut out, i64_encoders()).unwrap();
            out
        })
        .collect()
}

/// The sections as the format defines them, computed the slow way.
fn expected<K: StateKey + Eq + Serialize + DeserializeOwned>(t: &Tables<K, i64>) -> Vec<Vec<u8>> {
    t.range
        .iter()
        .map(|kg| {
            let mut entries: Vec<(u64, Vec<u8>, Vec<u8>)> = t
                .iter_key_group(kg)
                .unwrap()
                .map(|(k, v)| {
                    let mut key = Vec::new();
                    codec::encode_into(k, &mut key, "t").unwrap();
                    let mut value = Vec::new();
                    codec::encode_into(v, &mut value, "t").unwrap();
                    (k.stable_hash(), key, value)
                })
                .collect();
            entries.sort();
            let mut out = Vec::new();
            codec::encode_into(&(entries.len() as u64), &mut out, "t").unwrap();
            for (_, key, value) in entries {
                out.extend(key);
                out.extend(value);
            }
            out
        })
        .collect()
}

/// A table restored from `sections` (one per key group).
fn restored<K: StateKey + Eq + Serialize + DeserializeOwned>(
    sections: &[Vec<u8>],
) -> Tables<K, i64> {
    let mut r = new_table::<K>();
    for (kg, bytes) in r.range.iter().zip(sections) {
        r.read_key_group(kg, bytes, None, |b, name| {
            codec::decode_prefix::<i64>(b, name)
        })
        .unwrap();
    }
    r
}

/// A table with `keys` inserted in that order, never snapshotted.
fn fresh<K: StateKey + Eq + Serialize + DeserializeOwned>(
    key: Key<K>,
    keys: impl IntoIterator<Item = u64>,
) -> Tables<K, i64> {
    let mut t = new_table();
    for i in keys {
        t.insert(key(i), i as i64).unwrap();
    }
    t
}

fn lcg(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *seed >> 33
}

fn histories_give_one_snapshot<K: StateKey + Eq + Serialize + DeserializeOwned + Clone>(
    key: Key<K>,
    n: u64,
) {
    let want = expected(&fresh(key, 0..n));
    assert_eq!(sections(&fresh(key, 0..n)), want, "insert order");
    assert_eq!(sections(&fresh(key, (0..n).rev())), want, "reverse order");

    // Extra keys inserted and snapshotted, then removed.
    let mut t = fresh(key, (0..n + n / 3).rev());
    sections(&t);
    for i in n..n + n / 3 {
        t.remove(key(i)).unwrap();
    }
    assert_eq!(sections(&t), want, "after removals");
    assert_eq!(sections(&t), want, "twice");

    // Half the keys, snapshotted, then the rest.
    let mut t = fresh(key, (0..n).filter(|i| i % 2 == 0));
    sections(&t);
    for i in (0..n).filter(|i| i % 2 == 1) {
        t.insert(key(i), i as i64).unwrap();
    }
    assert_eq!(sections(&t), want, "after inserts");

    // Restored from its own sections, then from a snapshotted state.
    let r = restored::<K>(&want);
    assert_eq!(sections(&r), want, "after restore");
    assert_eq!(sections(&r), want, "after restore, twice");

    // Cleared after a snapshot of other keys, then refilled.
    let mut t = fresh(key, n..2 * n);
    sections(&t);
    t.clear();
    for i in 0..n {
        t.insert(key(i), i as i64).unwrap();
    }
    assert_eq!(sections(&t), want, "after clear");

    // A clone of a snapshotted state, snapshotted and changed on its own.
    let mut t = fresh(key, 0..n + 1);
    sections(&t);
    let mut c = t.clone();
    c.remove(key(n)).unwrap();
    assert_eq!(sections(&c), want, "clone");
    t.remove(key(n)).unwrap();
    assert_eq!(sections(&t), want, "original after the clone");

    // Rebound (all slots move), after a snapshot.
    let mut t = fresh(key, 0..n);
    sections(&t);
    let (assigner, range) = t.binding().unwrap();
    t.bind(assigner, range).unwrap();
    assert_eq!(sections(&t), want, "after bind");
}

/// Entries of different lengths, with long runs of equal hashes (ties
/// compared by bytes, across lengths).
#[test]
fn entries_with_equal_hashes_are_written_in_byte_order() {
    let value = |i: u64| {
        if i % 3 == 0 {
            i as i64
        } else {
            (i as i64).wrapping_mul(0x1234_5678_9abc_def1)
        }
    };
    let build = |keys: &mut dyn Iterator<Item = u64>| {
        let mut t = new_table::<Weak>();
        for i in keys {
            t.insert(Weak(wide(i)), value(i)).unwrap();
        }
        t
    };
    let n = 3000;
    let want = expected(&build(&mut (0..n)));
    let longest = want.iter().map(|s| s.len()).max().unwrap();
    assert!(longest > 16 * 100, "sections hold many entries");
    let mut t = build(&mut (0..n).rev());
    assert_eq!(sections(&t), want, "reverse insert order");
    assert_eq!(sections(&t), want, "twice");
    t.insert(Weak(wide(n)), value(n)).unwrap();
    t.remove(Weak(wide(n))).unwrap();
    t.remove(Weak(wide(1))).unwrap();
    t.insert(Weak(wide(1)), value(1)).unwrap();
    assert_eq!(sections(&t), want, "after changes");
    let r = restored::<Weak>(&want);
    for i in 0..n {
        assert_eq!(r.get(Weak(wide(i))).unwrap(), Some(&value(i)));
    }
}

/// A `retain` predicate that panics (and is caught) leaves every count
/// in step with the entries: the sections still decode, and `len` is
/// what they hold.
#[test]
fn a_panicking_retain_leaves_counts_in_step() {
    let mut t = fresh(wide, 0..5_000);
    let mut seen = 0;
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        t.retain(|_, v| {
            seen += 1;
            assert!(seen < 2_500, "the predicate fails half way");
            *v % 2 == 0
        })
    }));
    assert!(caught.is_err());
    let held: usize = t.iter().count();
    assert_eq!(t.len(), held);
    let written = sections(&t);
    assert_eq!(written, expected(&t));
    let r = restored::<u64>(&written);
    assert_eq!(r.len(), held);
}

/// One key group of a million entries (max parallelism 1): the entry
/// count and its section.
fn million_entry_section() -> (u64, Vec<u8>) {
    let n = 1_000_000u64;
    let one = KeyGroupAssigner::native(MaxParallelism::new(1).unwrap());
    let mut t = Tables::<u64, i64>::new(one, KeyGroupRange::new(0, 0)).unwrap();
    for i in 0..n {
        t.insert(wide(i), i as i64).unwrap();
    }
    let mut section = Vec::new();
    t.write_key_group(0, &mut section, i64_encoders()).unwrap();
    (n, section)
}

/// `section` (of key group 0) restored at max parallelism `max_p`: the
/// tables, the entries inserted and the slot steps it took.
fn restore_counting_steps(section: &[u8], max_p: u32) -> (Tables<u64, i64>, usize, u64) {
    let a = KeyGroupAssigner::native(MaxParallelism::new(max_p).unwrap());
    let mut r = Tables::<u64, i64>::new(a, a.max_parallelism().all_key_groups()).unwrap();
    let before = super::super::ordered::STEPS.with(|s| s.get());
    let inserted = r
        .read_key_group(0, section, None, |b, name| {
            codec::decode_prefix::<i64>(b, name)
        })
        .unwrap();
    let steps = super::super::ordered::STEPS.with(|s| s.get()) - before;
    (r, inserted, steps)
}

/// A restore is linear in the entries it reads, whatever the size of a
/// key group: one section of a million entries, restored into its own
/// key group and re-bucketed (max parallelism 1 -> 4: each entry into
/// one of four key groups), within a few slot steps per entry (searches,
/// shifts, rebuilds, pages visited to count a key group's entries). Entries arrive in hash order; inserted one by one
/// with a search each, they pile into one cluster and every insert walks
/// it. Re-bucketed, the growing key groups' full pages would count the
/// entries over all pages at every insert.
#[test]
fn restoring_a_million_entry_key_group_takes_linear_steps() {
    let (n, section) = million_entry_section();
    for max_p in [1, 4] {
        let (r, inserted, steps) = restore_counting_steps(&section, max_p);
        assert_eq!(inserted as u64, n);
        assert!(
            steps <= 6 * n,
            "{steps} slot steps to restore {n} entries at max parallelism {max_p}"
        );
        for i in (0..n).step_by(997) {
            assert_eq!(r.get(wide(i)).unwrap(), Some(&(i as i64)));
        }
        if max_p == 1 {
            let mut again = Vec::new();
            r.write_key_group(0, &mut again, i64_encoders()).unwrap();
            assert!(
                again == section,
                "the restored key group snapshots as before"
            );
        }
    }
}

/// A section whose count claims far more entries than it holds (corrupt,
/// though it passed its checksum) reserves slots in proportion to its
/// bytes, not to the count, and fails on the entries it lacks.
#[test]
fn a_corrupt_count_reserves_in_proportion_to_the_bytes() {
    let one = KeyGroupAssigner::native(MaxParallelism::new(1).unwrap());
    let mut t = Tables::<u64, i64>::new(one, KeyGroupRange::new(0, 0)).unwrap();
    // A count of 99,000 (within the bytes, so it passes the count check),
    // then 300 valid entries as dense in hashes as 100,000 would be (so the
    // restore sizes the key group for the whole count), then zeros up to
    // 100 kB: one two-byte entry repeated.
    let mut keys: Vec<u64> = (1..=100_000).map(wide).collect();
    keys.sort_by_key(|k| k.stable_hash());
    let mut valid = Tables::<u64, i64>::new(one, KeyGroupRange::new(0, 0)).unwrap();
    for &k in &keys[..300] {
        valid.insert(k, 1).unwrap();
    }
    let mut entries = Vec::new();
    valid
        .write_key_group(0, &mut entries, i64_encoders())
        .unwrap();
    let (_, at) = codec::decode_prefix::<u64>(&entries, "t").unwrap();
    let mut section = Vec::new();
    codec::encode_into(&99_000u64, &mut section, "t").unwrap();
    section.extend_from_slice(&entries[at..]);
    section.resize(100_000, 0);
    let err = t
        .read_key_group(0, &section, None, |b, name| {
            codec::decode_prefix::<i64>(b, name)
        })
        .unwrap_err();
    assert!(err.to_string().contains("duplicate key"), "{err}");
    assert_eq!(
        t.groups[0].len(),
        301,
        "the valid entries and one zero entry"
    );
    assert!(
        t.groups[0].pages.len() >= 64,
        "the key group was sized for the entries to come"
    );
    let slot_bytes = std::mem::size_of::<Option<(u64, u64, i64)>>();
    let reserved = t.groups[0].slot_count() * slot_bytes;
    assert!(
        reserved <= 16 * section.len(),
        "{reserved} bytes of slots for a {}-byte section",
        section.len()
    );
}

#[test]
fn same_key_set_gives_the_same_snapshot_whatever_the_history() {
    histories_give_one_snapshot(wide, 20_000);
    histories_give_one_snapshot(weak, 600);
    histories_give_one_snapshot(Paired, 5_000);
}

fn mutate_and_snapshot<K: StateKey + Eq + Serialize + DeserializeOwned + Clone>(
    key: Key<K>,
    universe: u64,
    rounds: usize,
) {
    let mut seed = 7;
    let mut t = fresh(key, 0..universe / 2);
    let mut live: std::collections::BTreeMap<u64, i64> =
        (0..universe / 2).map(|i| (i, i as i64)).collect();
    for round in 0..rounds {
        // A different mix every round: inserts of new keys, removals,
        // value updates, sometimes nothing.
        let changes = match round % 4 {
            0 => universe / 50,
            1 => universe / 3,
            2 => 0,
            _ => 3,
        };
        for _ in 0..changes {
            let i = lcg(&mut seed) % universe;
            match lcg(&mut seed) % 3 {
                0 => {
                    t.remove(key(i)).unwrap();
                    live.remove(&i);
                }
                _ => {
                    let v = lcg(&mut seed) as i64;
                    t.insert(key(i), v).unwrap();
                    live.insert(i, v);
                }
            }
        }
        let mut reference = new_table::<K>();
        for (&i, &v) in &live {
            reference.insert(key(i), v).unwrap();
        }
        let want = expected(&reference);
        assert_eq!(sections(&t), want, "round {round}");
        assert_eq!(sections(&reference), want, "round {round}, fresh state");
    }
}

#[test]
fn snapshot_after_changes_matches_a_fresh_state() {
    mutate_and_snapshot(wide, 30_000, 12);
    mutate_and_snapshot(weak, 900, 12);
    mutate_and_snapshot(Paired, 6_000, 12);
}

/// Keys whose stable hashes collide fill one page, which splitting would
/// not spread: a key group's pages stay within twice its entries over half
/// a page (they doubled without bound before).
#[test]
fn colliding_hashes_do_not_multiply_pages() {
    let mut t = new_table::<Weak>();
    for i in 0..5_000 {
        t.insert(weak(i), i as i64).unwrap();
    }
    assert_eq!(t.len(), 5_000);
    let pages: usize = t.groups.iter().map(|g| g.pages.len()).sum();
    let bound = 8 + 2 * 5_000 / (crate::keyed::group::PAGE_SPLIT / 2);
    assert!(
        pages <= bound,
        "{pages} pages for 5 distinct hashes (at most {bound})"
    );
}

/// A growing key group splits one page at a time: no single insert moves
/// more than a few pages' worth of entries, also at 300,000 entries in one
/// key group (a rebuild of the whole key group at once stalled the job for
/// several milliseconds, and key groups that grow alike rebuilt together).
/// Lookups find every entry across the splits, and the pages hold between
/// a quarter of a full page and a full page on average.
#[test]
fn a_growing_key_group_splits_one_page_at_a_time() {
    use super::super::group::PAGE_SPLIT;
    use super::super::ordered::STEPS;
    let n = 300_000u64;
    let one = KeyGroupAssigner::native(MaxParallelism::new(1).unwrap());
    let mut t = Tables::<u64, i64>::new(one, KeyGroupRange::new(0, 0)).unwrap();
    let mut worst = 0;
    for i in 0..n {
        let before = STEPS.with(|s| s.get());
        t.insert(wide(i), i as i64).unwrap();
        worst = worst.max(STEPS.with(|s| s.get()) - before);
    }
    assert!(
        worst <= 8 * PAGE_SPLIT as u64,
        "an insert took {worst} steps (at most {})",
        8 * PAGE_SPLIT
    );
    let pages = t.groups[0].pages.len();
    assert!(
        pages >= n as usize / PAGE_SPLIT && pages <= 4 * n as usize / PAGE_SPLIT,
        "{pages} pages for {n} entries"
    );
    assert_eq!(t.len() as u64, n);
    for i in (0..n).step_by(7) {
        assert_eq!(t.get(wide(i)).unwrap(), Some(&(i as i64)), "key {i}");
    }
}

/// A key group of a million entries restored into 4 and 16 key groups (max
/// parallelism changed) is laid out once for what it receives: no page
/// splits while the entries arrive (nearly no entry moves), and no key group
/// reserves room for entries that went to the others.
#[test]
fn a_rebucketed_restore_sizes_each_key_group_once() {
    let (n, section) = million_entry_section();
    for max_p in [4, 16] {
        let (r, inserted, steps) = restore_counting_steps(&section, max_p);
        assert_eq!(inserted as u64, n);
        assert!(
            steps <= n / 10,
            "{steps} slot steps (moves and counts) to restore {n} entries into {max_p} key groups"
        );
        for (kg, group) in r.groups.iter().enumerate() {
            let (slots, entries) = (group.slot_count(), group.len());
            assert!(
                slots <= entries * 5 / 2,
                "key group {kg} of {max_p}: {slots} slots for {entries} entries"
            );
        }
        for i in (0..n).step_by(997) {
            assert_eq!(r.get(wide(i)).unwrap(), Some(&(i as i64)));
        }
    }
}
