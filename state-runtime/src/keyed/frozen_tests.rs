//! Tests of frozen (captured) keyed states: a snapshot written while the
//! live state changes holds exactly the entries at capture, capture encodes
//! nothing, and a write encodes only the page it changes.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Decoders, Encoders, SerdeValue, WriteValue};
use crate::codec;
use crate::error::StateError;
use crate::keyed::group::PAGE_SPLIT;
use crate::keyed::table::Tables;
use crate::keygroup::{KeyGroupAssigner, MaxParallelism};

fn encoders() -> Encoders<u64, i64> {
    Encoders::of::<SerdeValue>()
}

fn read_value(b: &[u8], name: &str) -> Result<(i64, usize), StateError> {
    codec::decode_prefix(b, name)
}

fn decoders() -> Decoders<u64, i64> {
    Decoders {
        key: codec::decode_prefix::<u64>,
        value: read_value,
    }
}

fn table(max_parallelism: u32) -> Tables<u64, i64> {
    let a = KeyGroupAssigner::native(MaxParallelism::new(max_parallelism).unwrap());
    Tables::new(a, a.max_parallelism().all_key_groups()).unwrap()
}

/// Every owned key group's section, written from the live table.
fn live_sections(t: &Tables<u64, i64>, key_groups: u32) -> Vec<Vec<u8>> {
    (0..key_groups)
        .map(|kg| {
            let mut out = Vec::new();
            t.write_key_group(kg, &mut out, encoders()).unwrap();
            out
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u64, i64),
    Add(u64, i64),
    Remove(u64),
    Retain(u64),
    Clear,
}

fn op(keys: u64) -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..keys, any::<i64>()).prop_map(|(k, v)| Op::Insert(k, v)),
        8 => (0..keys, -5i64..5).prop_map(|(k, d)| Op::Add(k, d)),
        4 => (0..keys).prop_map(Op::Remove),
        1 => (2..7u64).prop_map(Op::Retain),
        1 => Just(Op::Clear),
    ]
}

fn apply(t: &mut Tables<u64, i64>, op: &Op) {
    match *op {
        Op::Insert(k, v) => {
            t.insert(k, v).unwrap();
        }
        Op::Add(k, d) => {
            if let Some(v) = t.get_mut(k).unwrap() {
                *v = v.wrapping_add(d);
            }
        }
        Op::Remove(k) => {
            t.remove(k).unwrap();
        }
        Op::Retain(m) => t.retain(|k, _| k % m != 0),
        Op::Clear => t.clear(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the live table does after a capture, and while another
    /// thread writes the snapshot, the snapshot is the table at capture.
    #[test]
    fn a_frozen_state_written_during_changes_is_the_state_at_capture(
        before in proptest::collection::vec(op(6_000), 0..3_000),
        after in proptest::collection::vec(op(6_000), 0..3_000),
        bulk in 0u64..5_000,
    ) {
        let mut t = table(4);
        for k in 0..bulk {
            t.insert(k * 7, k as i64).unwrap();
        }
        for o in &before {
            apply(&mut t, o);
        }
        let expected = live_sections(&t, 4);
        let frozen = t.freeze(encoders(), decoders(), false);
        let writer = std::thread::spawn(move || {
            (0..4)
                .map(|kg| {
                    let mut out = Vec::new();
                    if frozen.key_group_len(kg).unwrap() > 0 {
                        frozen.write_key_group(kg, &mut out).unwrap();
                    }
                    out
                })
                .collect::<Vec<_>>()
        });
        for o in &after {
            apply(&mut t, o);
        }
        let written = writer.join().unwrap();
        let expected: Vec<Vec<u8>> = expected
            .into_iter()
            .map(|s| if s.len() == 1 && s[0] == 0 { Vec::new() } else { s })
            .collect();
        prop_assert_eq!(written, expected);
    }
}

static ENCODED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static ON_THIS_THREAD: Cell<u64> = const { Cell::new(0) };
}

/// A value that counts its encodings, per thread and in all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Counted(i64);

struct WriteCounted;

impl WriteValue<Counted> for WriteCounted {
    fn write(v: &Counted, out: &mut Vec<u8>, name: &str) -> Result<(), StateError> {
        ENCODED.fetch_add(1, Ordering::Relaxed);
        ON_THIS_THREAD.with(|c| c.set(c.get() + 1));
        codec::encode_into(&v.0, out, name)
    }
}

#[test]
fn capture_encodes_nothing_and_a_write_encodes_only_its_page() {
    const N: u64 = 1_000_000;
    let a = KeyGroupAssigner::native(MaxParallelism::new(8).unwrap());
    let mut t: Tables<u64, Counted> = Tables::new(a, a.max_parallelism().all_key_groups()).unwrap();
    for k in 0..N {
        t.insert(k, Counted(k as i64)).unwrap();
    }
    let encoders = Encoders::<u64, Counted>::of::<WriteCounted>();
    let here = || ON_THIS_THREAD.with(Cell::get);
    ENCODED.store(0, Ordering::Relaxed);
    let start = here();
    let decoders = Decoders {
        key: codec::decode_prefix::<u64>,
        value: |b: &[u8], n: &str| {
            codec::decode_prefix::<i64>(b, n).map(|(v, used)| (Counted(v), used))
        },
    };
    let frozen = t.freeze(encoders, decoders, false);
    assert_eq!(here() - start, 0, "capture encoded entries");

    // Changing one key encodes its page for the snapshot, and no more.
    *t.get_mut(17u64).unwrap().unwrap() = Counted(-1);
    let one_page = here() - start;
    assert!(
        one_page > 0 && one_page <= PAGE_SPLIT as u64,
        "a write encoded {one_page} entries"
    );
    // Changing it again, or reading anything, encodes nothing more.
    *t.get_mut(17u64).unwrap().unwrap() = Counted(-2);
    assert_eq!(t.get(99u64).unwrap(), Some(&Counted(99)));
    assert_eq!(here() - start, one_page);

    // Writing the snapshot encodes every other entry once: N in all.
    let mut out = Vec::new();
    for kg in 0..8 {
        frozen.write_key_group(kg, &mut out).unwrap();
    }
    assert_eq!(ENCODED.load(Ordering::Relaxed), N);
    drop(frozen);
    // Written and dropped: the live state shares nothing, so a write
    // encodes nothing.
    let before = here();
    *t.get_mut(18u64).unwrap().unwrap() = Counted(0);
    assert_eq!(here(), before);
}

#[test]
fn a_dropped_capture_releases_its_pages_without_encoding() {
    let mut t = table(2);
    for k in 0..50_000u64 {
        t.insert(k, 1).unwrap();
    }
    let frozen = t.freeze(encoders(), decoders(), false);
    drop(frozen);
    // Every page is the live state's own again, so inserts split pages as
    // they grow (splitting needs unshared pages).
    for k in 50_000..200_000u64 {
        t.insert(k, 1).unwrap();
    }
    assert_eq!(t.len(), 200_000);
    let sections = live_sections(&t, 2);
    let entries: usize = sections.iter().map(Vec::len).sum();
    assert!(entries > 200_000);
}

/// The value of the key whose encoding the writer thread holds up, and the
/// gate: `(entered, released)`.
static GATE: (Mutex<(bool, bool)>, Condvar) = (Mutex::new((false, false)), Condvar::new());
const GATED: i64 = 4_242;

thread_local! {
    static IS_WRITER: Cell<bool> = const { Cell::new(false) };
}

/// Encodes an `i64`; on the writer thread, the value [`GATED`] waits at the
/// gate until it is released, as a writer descheduled mid-page would.
struct WriteGated;

impl WriteValue<i64> for WriteGated {
    fn write(v: &i64, out: &mut Vec<u8>, name: &str) -> Result<(), StateError> {
        if *v == GATED && IS_WRITER.with(Cell::get) {
            let (lock, cv) = &GATE;
            let mut g = lock.lock().unwrap();
            g.0 = true;
            cv.notify_all();
            while !g.1 {
                g = cv.wait(g).unwrap();
            }
        }
        codec::encode_into(v, out, name)
    }
}

/// A write to the page a writer is encoding just then does not wait for
/// the writer: it changes a copy, and the snapshot still holds the entries
/// at capture.
#[test]
fn a_write_does_not_wait_for_a_writer_holding_its_page() {
    let mut t = table(1);
    for k in 0..2_000u64 {
        t.insert(k, k as i64).unwrap();
    }
    t.insert(GATED as u64, GATED).unwrap();
    let expected = live_sections(&t, 1);
    let gated = Encoders::<u64, i64>::of::<WriteGated>();
    let frozen = t.freeze(gated, decoders(), false);
    let writer = std::thread::spawn(move || {
        IS_WRITER.with(|w| w.set(true));
        let mut out = Vec::new();
        frozen.write_key_group(0, &mut out).unwrap();
        out
    });
    let (lock, cv) = &GATE;
    {
        let mut g = lock.lock().unwrap();
        while !g.0 {
            g = cv.wait(g).unwrap();
        }
    }
    // The writer is inside the page of GATED, holding its lock. Should this
    // write wait for it, the watchdog opens the gate after 20 s.
    std::thread::spawn(|| {
        std::thread::sleep(std::time::Duration::from_secs(20));
        let (lock, cv) = &GATE;
        lock.lock().unwrap().1 = true;
        cv.notify_all();
    });
    *t.get_mut(GATED as u64).unwrap().unwrap() = -1;
    t.insert(5_000u64, 5).unwrap();
    let waited = lock.lock().unwrap().1;
    {
        let mut g = lock.lock().unwrap();
        g.1 = true;
        cv.notify_all();
    }
    let written = writer.join().unwrap();
    assert!(!waited, "the write waited for the writer holding its page");
    assert_eq!(written, expected[0], "the snapshot changed");
    assert_eq!(t.get(GATED as u64).unwrap(), Some(&-1));
    assert_eq!(t.get(5_000u64).unwrap(), Some(&5));
    assert_eq!(t.len(), 2_002);
    // The live state owns its pages: writing it again is the changed state.
    let mut again = table(1);
    for (k, v) in t.iter() {
        again.insert(*k, *v).unwrap();
    }
    assert_eq!(live_sections(&t, 1), live_sections(&again, 1));
}

thread_local! {
    /// What [`Logged`] keys saw: `(prefetched, id)`, in order.
    static LOG: std::cell::RefCell<Vec<(bool, u64)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A key that logs its prefetches and its encodings.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Logged(u64);

impl crate::hash::StableHash for Logged {
    fn stable_hash_into(&self, h: &mut crate::hash::StableHasher) {
        h.write_u64(self.0);
    }
    const INDIRECT: bool = true;
    fn prefetch(&self) {
        LOG.with(|l| l.borrow_mut().push((true, self.0)));
    }
}

impl crate::hash::StateKey for Logged {}

impl Serialize for Logged {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        LOG.with(|l| l.borrow_mut().push((false, self.0)));
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Logged {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u64::deserialize(d).map(Logged)
    }
}

/// Encoding a page prefetches each key whose hash reads behind a pointer
/// once, `PREFETCH_DISTANCE` entries before it is encoded; every entry is
/// encoded once.
#[test]
fn encoding_a_page_prefetches_each_key_a_fixed_distance_ahead() {
    use super::PREFETCH_DISTANCE;
    for n in [5, PREFETCH_DISTANCE + 1, 300] {
        let a = KeyGroupAssigner::native(MaxParallelism::new(1).unwrap());
        let mut t: Tables<Logged, i64> =
            Tables::new(a, a.max_parallelism().all_key_groups()).unwrap();
        for k in 0..n as u64 {
            t.insert(Logged(k), k as i64).unwrap();
        }
        LOG.with(|l| l.borrow_mut().clear());
        let mut out = Vec::new();
        t.write_key_group(0, &mut out, Encoders::of::<SerdeValue>())
            .unwrap();
        let log = LOG.with(|l| std::mem::take(&mut *l.borrow_mut()));
        let encoded: Vec<u64> = log.iter().filter(|e| !e.0).map(|e| e.1).collect();
        let mut sorted = encoded.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..n as u64).collect::<Vec<_>>(), "n {n}");
        let mut done = 0;
        let mut prefetched = 0;
        for (is_prefetch, id) in log {
            if is_prefetch {
                assert_eq!(id, encoded[done + PREFETCH_DISTANCE], "n {n}");
                prefetched += 1;
            } else {
                done += 1;
            }
        }
        assert_eq!(prefetched, n.saturating_sub(PREFETCH_DISTANCE), "n {n}");
    }
}
