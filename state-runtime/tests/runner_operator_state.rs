//! The runner with an operator that has no keyed state: its per-customer
//! sums are `split` operator state, so after a rescale a customer's sum may
//! be on several instances (merged on restore, summed at the end). The
//! runner binds nothing and restores the split items.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use state_runtime::prelude::*;
use state_runtime::runner::log::LogWriter;
use state_runtime::runner::{InstanceInfo, Job, JobEnd, KeyedProcessor, MemoryCheckpointStore};

#[derive(Debug, Clone, Serialize, Deserialize, Keyed)]
struct Ev {
    #[key]
    customer: u32,
    cents: i64,
}

#[derive(Checkpointed, Default)]
#[checkpointed(on_restore = restored)]
struct Sums {
    #[state(split)]
    entries: Vec<(u32, i64)>,
    #[state(skip)]
    index: HashMap<u32, usize>,
}

impl Sums {
    fn restored(&mut self, _: &RestoreContext) {
        let mut merged: BTreeMap<u32, i64> = BTreeMap::new();
        for (k, v) in self.entries.drain(..) {
            *merged.entry(k).or_default() += v;
        }
        self.entries = merged.into_iter().collect();
        self.index = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (*k, i))
            .collect();
    }
}

impl KeyedProcessor for Sums {
    type Event = Ev;
    type Output = ();

    fn process(&mut self, e: Ev, _out: &mut impl FnMut(())) -> Result<(), StateError> {
        let i = *self.index.entry(e.customer).or_insert_with(|| {
            self.entries.push((e.customer, 0));
            self.entries.len() - 1
        });
        self.entries[i].1 += e.cents;
        Ok(())
    }
}

fn write_log(name: &str, partitions: u32, events: u64) -> (PathBuf, BTreeMap<u32, i64>) {
    let dir = std::env::temp_dir().join(format!("rs-runner-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut w = LogWriter::<Ev>::create(&dir, partitions).unwrap();
    let mut expected = BTreeMap::new();
    let mut x = 0x9e3779b97f4a7c15u64;
    for i in 0..events {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let e = Ev {
            customer: (x % 500) as u32,
            cents: (x >> 40) as i64 % 1000 - 300,
        };
        *expected.entry(e.customer).or_insert(0) += e.cents;
        w.append((i % partitions as u64) as u32, &e).unwrap();
    }
    w.finish().unwrap();
    (dir, expected)
}

fn totals(ops: &[Sums]) -> BTreeMap<u32, i64> {
    let mut m = BTreeMap::new();
    for op in ops {
        for (k, v) in &op.entries {
            *m.entry(*k).or_insert(0) += v;
        }
    }
    m
}

#[test]
fn operator_state_only_operator_survives_rescales_stops_and_a_kill() {
    let (dir, expected) = write_log("plumb", 5, 40_000);
    let store = MemoryCheckpointStore::new();
    let mut last = None;
    for (i, (s, n)) in [(2, 2), (3, 3), (1, 1), (4, 4)].into_iter().enumerate() {
        let job = Job::new(&dir, store.clone(), |_: &InstanceInfo| Sums::default())
            .parallelism(s, n)
            .assigner(KeyGroupAssigner::native(MaxParallelism::new(64).unwrap()))
            .checkpoint_every_events(3_000)
            .batch_size(64)
            .stop_at_end_of_input(true)
            .start()
            .unwrap();
        while job.events_read() < 8_000 && !job.is_finished() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let out = if i == 1 {
            job.kill().unwrap()
        } else if i < 3 {
            job.stop().unwrap()
        } else {
            job.wait().unwrap()
        };
        last = Some(out);
    }
    let out = last.unwrap();
    assert_eq!(out.report.end, JobEnd::Finished);
    assert_eq!(totals(&out.operators), expected);
}
