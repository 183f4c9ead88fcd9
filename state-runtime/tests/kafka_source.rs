//! A Kafka-style source: each subtask reads some partitions and checkpoints
//! one `(partition, offset)` item per partition. Rescaling must hand every
//! partition to exactly one subtask, with its offset.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use state_runtime::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct PartitionOffset {
    partition: u32,
    offset: u64,
}

/// Not state: a connection, rebuilt by the constructor.
#[derive(Debug, PartialEq)]
struct Client {
    brokers: String,
}

#[derive(Checkpointed)]
#[checkpointed(on_restore = on_restore)]
struct KafkaSource {
    #[state(split, name = "partition-offsets")]
    offsets: Vec<PartitionOffset>,
    /// Highest event time seen per partition (every subtask needs all, to
    /// compute the global watermark). Union: every subtask restores every
    /// old subtask's copy, stale ones included, and keeps the highest. (A
    /// union `BTreeMap` would refuse to restore differing copies.)
    #[state(union)]
    watermarks: Vec<(u32, i64)>,
    #[state(skip)]
    client: Client,
    #[state(skip)]
    restored_with: Option<RestoreContext>,
}

impl KafkaSource {
    fn new() -> Self {
        KafkaSource {
            offsets: Vec::new(),
            watermarks: Vec::new(),
            client: Client {
                brokers: "localhost:9092".into(),
            },
            restored_with: None,
        }
    }

    /// Read some records: every partition advances.
    fn poll(&mut self, records: u64) {
        for p in &mut self.offsets {
            p.offset += records;
            let w = (p.offset * 10) as i64;
            match self.watermarks.iter_mut().find(|(q, _)| *q == p.partition) {
                Some((_, old)) => *old = w,
                None => self.watermarks.push((p.partition, w)),
            }
        }
    }

    fn on_restore(&mut self, ctx: &RestoreContext) {
        self.restored_with = Some(*ctx);
        let mut highest = BTreeMap::new();
        for &(partition, w) in &self.watermarks {
            let h = highest.entry(partition).or_insert(w);
            *h = (*h).max(w);
        }
        self.watermarks = highest.into_iter().collect();
    }

    /// An empty share: more subtasks than partitions.
    fn is_idle(&self) -> bool {
        self.offsets.is_empty()
    }
}

/// The initial job: `partitions` partitions round-robin over `p` subtasks.
fn start(partitions: u32, p: usize) -> Vec<KafkaSource> {
    (0..p)
        .map(|i| {
            let mut s = KafkaSource::new();
            s.offsets = (0..partitions)
                .filter(|q| *q as usize % p == i)
                .map(|partition| PartitionOffset {
                    partition,
                    offset: 0,
                })
                .collect();
            s
        })
        .collect()
}

fn checkpoint(subtasks: &[KafkaSource], id: u64) -> Checkpoint {
    Checkpoint::from_subtasks(subtasks.iter().map(|s| s.snapshot().unwrap()).collect())
        .unwrap()
        .with_checkpoint_id(id)
}

fn rescale(cp: &Checkpoint, p: usize) -> Vec<KafkaSource> {
    (0..p)
        .map(|i| {
            let mut s = KafkaSource::new();
            let report = cp.restore_into(&mut s, i, p).unwrap();
            assert_eq!(Some(report.context), s.restored_with);
            assert_eq!(
                s.client,
                Client {
                    brokers: "localhost:9092".into()
                }
            );
            s
        })
        .collect()
}

fn all_offsets(subtasks: &[KafkaSource]) -> Vec<PartitionOffset> {
    let mut v: Vec<_> = subtasks.iter().flat_map(|s| s.offsets.clone()).collect();
    v.sort();
    v
}

#[test]
fn chained_rescales_keep_every_partition_offset_exactly_once() {
    let mut job = start(7, 3);
    for (id, p) in [2usize, 5, 1, 3, 16].into_iter().enumerate() {
        for s in &mut job {
            s.poll(id as u64 + 1);
        }
        let before = all_offsets(&job);
        assert_eq!(before.len(), 7);
        let cp = checkpoint(&job, id as u64 + 1);
        job = rescale(&cp, p);
        assert_eq!(job.len(), p);
        assert_eq!(all_offsets(&job), before, "rescale to {p}");
        let ctx = job[0].restored_with.unwrap();
        assert_eq!((ctx.checkpoint_id, ctx.parallelism), (id as u64 + 1, p));
        // Every subtask knows every partition's latest watermark (its
        // reader's), not a stale copy another subtask held.
        let latest: Vec<(u32, i64)> = before
            .iter()
            .map(|p| (p.partition, (p.offset * 10) as i64))
            .collect();
        for s in &job {
            assert_eq!(s.watermarks, latest, "rescale to {p}");
        }
    }
    // Parallelism 16 over 7 partitions: 9 idle subtasks, which can tell.
    assert_eq!(job.iter().filter(|s| s.is_idle()).count(), 9);
}

#[test]
fn unchanged_parallelism_gives_each_subtask_its_own_partitions() {
    let mut job = start(10, 4);
    for s in &mut job {
        s.poll(3);
    }
    let cp = checkpoint(&job, 1);
    let restored = rescale(&cp, 4);
    for (old, new) in job.iter().zip(&restored) {
        assert_eq!(old.offsets, new.offsets);
    }
    assert!(!restored[0].restored_with.unwrap().is_rescale());
}

#[test]
fn checkpoints_are_byte_identical_for_the_same_state() {
    let job = start(5, 2);
    assert_eq!(checkpoint(&job, 1), checkpoint(&start(5, 2), 1));
}

/// The same source after a refactor: the field was renamed, `name` keeps
/// the checkpointed state name, and a new state was added.
#[derive(Checkpointed)]
struct KafkaSourceV2 {
    #[state(split, name = "partition-offsets")]
    positions: Vec<PartitionOffset>,
    #[state(union)]
    topics: Vec<String>,
}

#[test]
fn renamed_field_restores_and_mismatches_are_reported() {
    let mut job = start(4, 2);
    for s in &mut job {
        s.poll(2);
    }
    let cp = checkpoint(&job, 3);
    let mut v2 = KafkaSourceV2 {
        positions: vec![],
        topics: vec!["kept".into()],
    };

    // `watermarks` is in the checkpoint but not declared any more.
    match cp.restore_into(&mut v2, 0, 1) {
        Err(StateError::UnknownState { state }) => assert_eq!(state, "watermarks"),
        other => panic!("{other:?}"),
    }
    assert!(
        v2.positions.is_empty(),
        "a failed restore leaves the operator alone"
    );

    let options = RestoreOptions::default().allow_non_restored_state(true);
    let report = cp.restore_into_with(&mut v2, 0, 1, &options).unwrap();
    assert_eq!(v2.positions.len(), 4);
    assert_eq!(report.dropped_states, ["watermarks"]);
    assert_eq!(report.missing_states, ["topics"]);
    assert!(v2.topics.is_empty(), "a missing list state starts empty");
    assert_eq!(report.items_restored, 4);
    assert!(report.bytes_read > 0);
}

#[derive(Checkpointed)]
struct WrongMode {
    #[state(union, name = "partition-offsets")]
    offsets: Vec<PartitionOffset>,
    #[state(union)]
    watermarks: BTreeMap<u32, i64>,
}

#[test]
fn restore_errors_are_typed() {
    let cp = checkpoint(&start(4, 2), 1);
    let mut s = KafkaSource::new();
    assert!(matches!(
        cp.restore_into(&mut s, 0, 0),
        Err(StateError::ZeroParallelism)
    ));
    assert!(matches!(
        cp.restore_into(&mut s, 3, 3),
        Err(StateError::SubtaskOutOfRange {
            subtask: 3,
            parallelism: 3
        })
    ));
    let mut w = WrongMode {
        offsets: vec![],
        watermarks: BTreeMap::new(),
    };
    for options in [
        RestoreOptions::default(),
        RestoreOptions::default().allow_non_restored_state(true),
    ] {
        match cp.restore_into_with(&mut w, 0, 1, &options) {
            Err(StateError::ModeMismatch {
                state,
                declared,
                found,
            }) => {
                assert_eq!(state, "partition-offsets");
                assert_eq!((declared, found), (StateMode::Union, StateMode::Split));
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        Checkpoint::from_subtasks(vec![]),
        Err(StateError::ZeroParallelism)
    ));
}

#[test]
fn subtasks_of_different_operators_do_not_make_a_checkpoint() {
    let a = KafkaSource::new().snapshot().unwrap();
    let b = KafkaSourceV2 {
        positions: vec![],
        topics: vec![],
    }
    .snapshot()
    .unwrap();
    match Checkpoint::from_subtasks(vec![a.clone(), b]) {
        Err(StateError::SubtaskMismatch { subtask: 1, detail }) => {
            assert!(detail.contains("topics"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    let w = WrongMode {
        offsets: vec![],
        watermarks: BTreeMap::new(),
    }
    .snapshot()
    .unwrap();
    match Checkpoint::from_subtasks(vec![a, w]) {
        Err(StateError::SubtaskMismatch { subtask: 1, detail }) => {
            assert!(
                detail.contains("partition-offsets") && detail.contains("union"),
                "{detail}"
            )
        }
        other => panic!("{other:?}"),
    }
}

/// The item type of a state changed: the restore fails with a type error
/// naming the state and both shapes, before decoding anything, and the
/// operator is left as constructed.
#[derive(Checkpointed)]
struct ChangedItemType {
    #[state(split, name = "partition-offsets")]
    offsets: Vec<String>,
    #[state(union)]
    watermarks: BTreeMap<u32, i64>,
}

#[test]
fn a_changed_item_type_is_a_type_error_and_changes_nothing() {
    let mut job = start(3, 1);
    job[0].poll(1000);
    let cp = checkpoint(&job, 1);
    let mut op = ChangedItemType {
        offsets: vec!["constructed".into()],
        watermarks: BTreeMap::from([(9, 9)]),
    };
    match cp.restore_into(&mut op, 0, 1) {
        Err(StateError::TypeChanged {
            state,
            what,
            recorded,
            declared,
        }) => {
            assert_eq!((state.as_str(), what), ("partition-offsets", "items"));
            assert_eq!(recorded, "v1 struct{partition:u32,offset:u64}");
            assert_eq!(declared, "v1 str");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(op.offsets, ["constructed"]);
    assert_eq!(op.watermarks, BTreeMap::from([(9, 9)]));
}
