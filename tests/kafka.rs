//! The Kafka source against librdkafka's mock cluster (no external broker):
//! rescales with kills in between, topics created while the job runs,
//! instances without partitions, and the typed errors.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rescale::kafka::{decode_purchase, produce};
use rescale::{LogSpec, Purchase, RunningSum, Total, compare_totals, totals_of, totals_over};
use state_runtime::kafka::{KafkaError, KafkaInput};
use state_runtime::keygroup::{KeyGroupAssigner, MaxParallelism};
use state_runtime::runner::source::PartitionOffset;
use state_runtime::runner::{
    DurableCheckpointStore, Instance, Job, JobError, JobOutcome, JobReport, RunningJob, TaskError,
};
use state_runtime::storage::LocalStorage;

type Cluster = MockCluster<'static, DefaultProducerContext>;

fn cluster(topics: &[(&str, i32)]) -> Cluster {
    let cluster = MockCluster::new(1).expect("mock cluster");
    for (topic, partitions) in topics {
        cluster.create_topic(topic, *partitions, 1).unwrap();
    }
    cluster
}

/// `count` purchases after the first `skip` of a fixed sequence, over
/// `partitions` partitions.
fn purchases(skip: u64, count: u64, partitions: u32) -> Vec<(u32, Purchase)> {
    let spec = LogSpec {
        partitions,
        events: skip + count,
        customers: 500,
        seed: 23,
    };
    spec.purchases().skip(skip as usize).collect()
}

/// A mock cluster with `topics`, and a durable store in a temporary
/// folder (dropped before the cluster, which must outlive every client).
fn setup(topics: &[(&str, i32)]) -> (Cluster, tempfile::TempDir, DurableCheckpointStore) {
    let cluster = cluster(topics);
    let dir = tempfile::tempdir().unwrap();
    let store = durable(&dir);
    (cluster, dir, store)
}

fn durable(dir: &tempfile::TempDir) -> DurableCheckpointStore {
    DurableCheckpointStore::new(
        std::sync::Arc::new(LocalStorage::open(dir.path()).unwrap()),
        2,
    )
}

fn input(cluster: &Cluster) -> KafkaInput<Purchase> {
    KafkaInput::new(cluster.bootstrap_servers(), decode_purchase)
        .discovery_interval(Duration::from_millis(100))
        .timeout(Duration::from_secs(5))
}

fn start(
    input: KafkaInput<Purchase>,
    store: &DurableCheckpointStore,
    sources: usize,
    keyed: usize,
) -> RunningJob<RunningSum> {
    Job::with_input(input, store.clone(), |_| RunningSum::default())
        .parallelism(sources, keyed)
        .assigner(KeyGroupAssigner::native(MaxParallelism::new(32).unwrap()))
        .checkpoint_every_events(1_500)
        .batch_size(64)
        .start()
        .unwrap()
}

/// Waits until the run has read `events` records (failing the test after
/// 60 s, or if the job ends first).
fn wait_for(job: &RunningJob<RunningSum>, events: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while job.events_read() < events {
        assert!(
            !job.is_finished(),
            "the job ended before reading {events} records"
        );
        assert!(
            Instant::now() < deadline,
            "read {} of {events} records in 60 s",
            job.events_read()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every source instance's positions, sorted.
fn positions(report: &JobReport) -> Vec<PartitionOffset> {
    let mut all: Vec<PartitionOffset> = report
        .sources
        .iter()
        .flat_map(|s| s.offsets.iter().cloned())
        .collect();
    all.sort();
    all
}

fn end_offsets(topic: &str, records: &[(u32, Purchase)], partitions: u32) -> Vec<PartitionOffset> {
    (0..partitions)
        .map(|p| {
            let n = records.iter().filter(|(rp, _)| *rp == p).count() as u64;
            PartitionOffset::new(topic, p, n)
        })
        .collect()
}

fn values(records: &[(u32, Purchase)]) -> impl Iterator<Item = Purchase> + '_ {
    records.iter().map(|(_, p)| *p)
}

fn assert_totals(outcome: &JobOutcome<RunningSum>, expected: &HashMap<u32, Total>) {
    if let Err(diff) = compare_totals(&totals_of(&outcome.operators), expected) {
        panic!("keyed state differs from the single-threaded computation: {diff}");
    }
}

#[test]
fn rescale_2_3_1_with_kills_puts_every_record_into_state_exactly_once() {
    let (cluster, _dir, store) = setup(&[("purchases", 4)]);
    let brokers = cluster.bootstrap_servers();
    let all = purchases(0, 20_000, 4);
    let (first, rest) = all.split_at(8_000);
    let (second, third) = rest.split_at(8_000);

    // 2 sources x 2 keyed: read the first 8,000, killed after the last
    // checkpoint (every 1,500), so the restart reads some records again.
    produce(&brokers, "purchases", first.iter().copied()).unwrap();
    let job = start(input(&cluster).topic("purchases"), &store, 2, 2);
    wait_for(&job, 8_000);
    let killed = job.kill().unwrap();
    assert!(
        !killed.report.checkpoints.is_empty(),
        "no checkpoint before the kill"
    );

    // 3 x 3, from the checkpoint, with 8,000 more records; killed again.
    produce(&brokers, "purchases", second.iter().copied()).unwrap();
    let job = start(input(&cluster).topic("purchases"), &store, 3, 3);
    let resumed_at = store_events(&store);
    assert!(resumed_at > 0 && resumed_at <= 8_000, "{resumed_at}");
    wait_for(&job, 16_000 - resumed_at);
    let killed = job.kill().unwrap();
    assert!(killed.report.restored_from.is_some());

    // 1 x 1, bounded: reads to the end and stops with a final checkpoint.
    produce(&brokers, "purchases", third.iter().copied()).unwrap();
    let done = Job::with_input(
        input(&cluster).topic("purchases").bounded(true),
        store.clone(),
        |_| RunningSum::default(),
    )
    .parallelism(1, 1)
    .assigner(KeyGroupAssigner::native(MaxParallelism::new(32).unwrap()))
    .start()
    .unwrap()
    .wait()
    .unwrap();
    assert!(done.report.restored_from.is_some());
    assert_totals(&done, &totals_over(values(&all)));
    // Every partition read to its end, by exactly one instance.
    assert_eq!(positions(&done.report), end_offsets("purchases", &all, 4));
}

/// Records in the store's latest checkpoint's prefix of the input.
fn store_events(store: &DurableCheckpointStore) -> u64 {
    use state_runtime::runner::JobCheckpointStore;
    store.latest().unwrap().map_or(0, |cp| cp.events)
}

#[test]
fn topics_created_while_running_are_discovered_and_read_once_across_a_rescale() {
    let (cluster, _dir, store) = setup(&[("clicks.a", 2)]);
    let brokers = cluster.bootstrap_servers();
    let a1 = purchases(0, 3_000, 2);
    let b = purchases(3_000, 3_000, 3);
    let c = purchases(6_000, 1_000, 1);
    let a2 = purchases(7_000, 1_000, 2);

    produce(&brokers, "clicks.a", a1.iter().copied()).unwrap();
    let job = start(input(&cluster).topic_prefix("clicks."), &store, 2, 2);
    wait_for(&job, 3_000);
    // A new topic while the job runs: found at the next discovery.
    cluster.create_topic("clicks.b", 3, 1).unwrap();
    produce(&brokers, "clicks.b", b.iter().copied()).unwrap();
    wait_for(&job, 6_000);
    job.kill().unwrap();

    // Another topic, and more records, while the job is down; restart at
    // 3 sources: the restored instances know every claimed partition (union
    // state), so only clicks.c is new, and it is read once.
    cluster.create_topic("clicks.c", 1, 1).unwrap();
    produce(&brokers, "clicks.c", c.iter().copied()).unwrap();
    produce(&brokers, "clicks.a", a2.iter().copied()).unwrap();
    let job = start(input(&cluster).topic_prefix("clicks."), &store, 3, 1);
    wait_for(&job, 8_000 - store_events(&store));
    let done = job.stop().unwrap();

    let everything: Vec<Purchase> = [&a1, &b, &c, &a2]
        .into_iter()
        .flat_map(|r| values(r))
        .collect();
    assert_totals(&done, &totals_over(everything));
    let a_all: Vec<(u32, Purchase)> = a1.iter().chain(&a2).copied().collect();
    let mut expected = end_offsets("clicks.a", &a_all, 2);
    expected.extend(end_offsets("clicks.b", &b, 3));
    expected.extend(end_offsets("clicks.c", &c, 1));
    assert_eq!(positions(&done.report), expected);
}

#[test]
fn more_source_instances_than_partitions_still_checkpoint_and_finish() {
    let (cluster, _dir, store) = setup(&[("one", 1)]);
    let records = purchases(0, 5_000, 1);
    produce(&cluster.bootstrap_servers(), "one", records.iter().copied()).unwrap();
    // Three instances, one partition: two read nothing, yet every
    // checkpoint completes (they snapshot empty offsets) and the bounded
    // job ends. At least one periodic checkpoint and the final one: more
    // if the coordinator polls before the source has read everything.
    let done = start(input(&cluster).topic("one").bounded(true), &store, 3, 2)
        .wait()
        .unwrap();
    assert!(
        done.report.checkpoints.len() >= 2,
        "{:?}",
        done.report.checkpoints.len()
    );
    let with_partitions: Vec<usize> = done
        .report
        .sources
        .iter()
        .filter(|s| !s.offsets.is_empty())
        .map(|s| s.subtask)
        .collect();
    assert_eq!(with_partitions.len(), 1);
    assert_totals(&done, &totals_over(values(&records)));
    assert_eq!(positions(&done.report), end_offsets("one", &records, 1));
}

#[test]
fn an_unknown_topic_is_refused_before_the_job_starts() {
    let (cluster, _dir, store) = setup(&[("exists", 1)]);
    let err = Job::with_input(
        input(&cluster).topic("exists").topic("missing"),
        store,
        |_| RunningSum::default(),
    )
    .start()
    .expect_err("an unknown topic must not start");
    match &err {
        JobError::Start(TaskError::Kafka(e)) => match e.as_ref() {
            KafkaError::UnknownTopic { topic, .. } => assert_eq!(topic, "missing"),
            other => panic!("expected UnknownTopic, got {other:?}"),
        },
        other => panic!("expected a Kafka error, got {other:?}"),
    }
    assert!(err.to_string().contains("\"missing\""), "{err}");
}

#[test]
fn a_record_that_does_not_decode_fails_the_job_naming_topic_partition_and_offset() {
    let (cluster, _dir, store) = setup(&[("mixed", 2)]);
    let brokers = cluster.bootstrap_servers();
    produce(&brokers, "mixed", purchases(0, 100, 2)).unwrap();
    // Offset 100 of partition 1 is 3 bytes, not a purchase.
    let bad = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create::<rdkafka::producer::BaseProducer>()
        .unwrap();
    let first_in_1 = purchases(0, 100, 2).iter().filter(|(p, _)| *p == 1).count() as u64;
    bad.send(
        rdkafka::producer::BaseRecord::<(), [u8]>::to("mixed")
            .partition(1)
            .payload(&b"bad"[..]),
    )
    .map_err(|(e, _)| e)
    .unwrap();
    rdkafka::producer::Producer::flush(&bad, Duration::from_secs(10)).unwrap();
    let err = start(input(&cluster).topic("mixed").bounded(true), &store, 2, 1)
        .wait()
        .expect_err("a bad record must fail the job");
    let JobError::Failed {
        instance: Instance::Source(_),
        source: TaskError::Kafka(kafka),
    } = &err
    else {
        panic!("expected a source's Kafka error, got {err:?}");
    };
    match kafka.as_ref() {
        KafkaError::Decode {
            topic,
            partition,
            offset,
            message,
        } => {
            assert_eq!(
                (topic.as_str(), *partition, *offset),
                ("mixed", 1, first_in_1)
            );
            assert!(message.contains("found 3"), "{message}");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert!(
        err.to_string().contains(&format!("mixed/1@{first_in_1}")),
        "{err}"
    );
}

#[test]
fn a_cluster_that_goes_down_fails_the_job_with_a_typed_error() {
    let (cluster, _dir, store) = setup(&[("down", 2)]);
    produce(&cluster.bootstrap_servers(), "down", purchases(0, 500, 2)).unwrap();
    let job = start(
        input(&cluster)
            .topic("down")
            .timeout(Duration::from_secs(1)),
        &store,
        1,
        1,
    );
    wait_for(&job, 500);
    cluster.broker_down(-1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !job.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the job did not notice the cluster is down"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = job.wait().expect_err("the job must fail");
    let failed_reading = match &err {
        JobError::Failed {
            instance: Instance::Source(0),
            source: TaskError::Kafka(e),
        } => matches!(
            e.as_ref(),
            KafkaError::Client { .. } | KafkaError::Consume { .. }
        ),
        _ => false,
    };
    assert!(failed_reading, "{err:?}");
    assert!(err.to_string().contains("down"), "{err}");
}

/// The Kafka source on timely workers (`state-timely`): 2 workers, then 3,
/// then 1 to the end of a bounded topic, each run restoring the newest
/// checkpoint's offsets (split state) and key groups. The final checkpoint
/// holds every record exactly once, and every partition at its end.
#[test]
fn timely_workers_read_kafka_across_rescales() {
    use state_runtime::checkpoint::Restore;
    use state_runtime::checkpoint::durable::StoredCheckpoint;
    use state_runtime::runner::source::{Source, SourceFactory, SourceInstance};
    use state_runtime::storage::CheckpointStorage;
    use state_timely::{TimelyJob, WorkerReport, cluster_config};

    let cluster = cluster(&[("orders", 4)]);
    let records = purchases(0, 6_000, 4);
    produce(
        &cluster.bootstrap_servers(),
        "orders",
        records.iter().copied(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let storage: std::sync::Arc<dyn CheckpointStorage> =
        std::sync::Arc::new(LocalStorage::open(dir.path()).unwrap());
    let run = |run_id: &str, workers: usize, epochs: Option<u64>| -> Vec<WorkerReport> {
        let mut job = TimelyJob::with_storage(storage.clone(), run_id)
            .assigner(KeyGroupAssigner::native(MaxParallelism::new(32).unwrap()))
            .records_per_epoch(400);
        if let Some(n) = epochs {
            job = job.stop_after_epochs(n);
        }
        let config = cluster_config(0, &["127.0.0.1:0".to_owned()], workers).unwrap();
        job.execute_with_input(
            config,
            input(&cluster).topic("orders").bounded(true),
            |_| RunningSum::default(),
            |_| Box::new(|_| {}),
        )
        .unwrap()
    };
    let first = run("first", 2, Some(3));
    assert_eq!(first.len(), 2);
    let second = run("second", 3, Some(2));
    assert!(second.iter().all(|r| r.restored_from == first[0].committed));
    let last = run("last", 1, None);
    assert_eq!(last[0].restored_from, second[0].committed);
    let read: u64 = [&first, &second, &last]
        .into_iter()
        .flatten()
        .map(|r| r.events)
        .sum();
    assert_eq!(
        read,
        records.len() as u64,
        "each record read once over the runs"
    );

    let stored = StoredCheckpoint::latest(&*storage).unwrap().unwrap();
    let mut ops = Vec::new();
    for j in 0..2 {
        let mut op = RunningSum::default();
        stored
            .operator("keyed")
            .unwrap()
            .restore_into(&mut op, j, 2)
            .unwrap();
        ops.push(op);
    }
    if let Err(diff) = compare_totals(&totals_of(&ops), &totals_over(values(&records))) {
        panic!("keyed state differs from the single-threaded computation: {diff}");
    }
    // Every partition at its end, each held by exactly one instance.
    let mut offsets = Vec::new();
    for j in 0..4 {
        let mut source = input(&cluster)
            .topic("orders")
            .create(&SourceInstance::new(j, 4, false))
            .unwrap();
        stored
            .operator(state_timely::SOURCE_OPERATOR)
            .unwrap()
            .restore_into(&mut source, j, 4)
            .unwrap();
        offsets.extend(source.positions());
    }
    offsets.sort();
    assert_eq!(offsets, end_offsets("orders", &records, 4));
}
