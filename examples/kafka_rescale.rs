//! The demo job on Kafka: a running sum per customer, read from a topic of
//! librdkafka's mock cluster (in this process, no broker to install), rescaled
//! 2 -> 3 -> 1 with a kill in between, and checked against a single-threaded
//! computation over the records produced.
//!
//! ```text
//! cargo run --release --features kafka --example kafka_rescale -- [--events N] [--partitions P]
//! ```
//!
//! Exits non-zero if the keyed state or the final offsets differ from what
//! was produced.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rescale::kafka::{decode_purchase, produce};
use rescale::{LogSpec, Purchase, RunningSum, compare_totals, totals_of, totals_over};
use state_runtime::kafka::KafkaInput;
use state_runtime::runner::{
    DurableCheckpointStore, Job, JobCheckpointStore, JobOutcome, RunningJob,
};
use state_runtime::storage::LocalStorage;

const TOPIC: &str = "purchases";

#[derive(Parser)]
struct Args {
    /// Records produced in all (a third before each phase).
    #[arg(long, default_value_t = 300_000)]
    events: u64,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 6)]
    partitions: u32,
    /// Customers (keys).
    #[arg(long, default_value_t = 20_000)]
    customers: u32,
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

type Error = Box<dyn std::error::Error>;

fn run(args: &Args) -> Result<(), Error> {
    let cluster: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1)?;
    cluster.create_topic(TOPIC, args.partitions as i32, 1)?;
    let brokers = cluster.bootstrap_servers();
    let spec = LogSpec {
        partitions: args.partitions,
        events: args.events,
        customers: args.customers,
        seed: 5,
    };
    let all: Vec<(u32, Purchase)> = spec.purchases().collect();
    let third = all.len() / 3;
    let dir = tempfile::tempdir()?;
    let store =
        DurableCheckpointStore::new(std::sync::Arc::new(LocalStorage::open(dir.path())?), 2);
    println!(
        "mock Kafka cluster at {brokers}: topic {TOPIC:?} with {} partitions; checkpoints in {}",
        args.partitions,
        dir.path().display()
    );

    // Phase 1: 2 sources x 2 keyed instances, killed once they have read
    // the first third (after their last checkpoint, so the next phase
    // reads some records again).
    produce(&brokers, TOPIC, all[..third].iter().copied())?;
    let job = start(&brokers, &store, 2, 2, false)?;
    wait_for(&job, third as u64)?;
    report("1: 2 x 2, killed", &job.kill()?, &store)?;

    // Phase 2: 3 x 3 from that checkpoint, with the second third; killed.
    produce(&brokers, TOPIC, all[third..2 * third].iter().copied())?;
    let resumed = store.latest()?.map_or(0, |c| c.events);
    let job = start(&brokers, &store, 3, 3, false)?;
    wait_for(&job, 2 * third as u64 - resumed)?;
    report("2: 3 x 3, killed", &job.kill()?, &store)?;

    // Phase 3: 1 x 1, bounded: reads to the end and stops.
    produce(&brokers, TOPIC, all[2 * third..].iter().copied())?;
    let done = start(&brokers, &store, 1, 1, true)?.wait()?;
    report("3: 1 x 1, to the end", &done, &store)?;

    let expected = totals_over(all.iter().map(|(_, p)| *p));
    compare_totals(&totals_of(&done.operators), &expected)?;
    let mut offsets: Vec<(u32, u64)> = done
        .report
        .sources
        .iter()
        .flat_map(|s| s.offsets.iter().map(|o| (o.partition, o.offset)))
        .collect();
    offsets.sort();
    let ends: Vec<(u32, u64)> = (0..args.partitions)
        .map(|p| (p, all.iter().filter(|(rp, _)| *rp == p).count() as u64))
        .collect();
    if offsets != ends {
        return Err(
            format!("final offsets {offsets:?}, expected the partitions' ends {ends:?}").into(),
        );
    }
    println!(
        "verified: the keyed state of {} customers equals a single-threaded sum over the {} records \
         produced (no record lost or counted twice across two kills and the rescales 2 -> 3 -> 1), \
         and every partition was read to its end by exactly one instance",
        expected.len(),
        all.len()
    );
    Ok(())
}

fn start(
    brokers: &str,
    store: &DurableCheckpointStore,
    sources: usize,
    keyed: usize,
    bounded: bool,
) -> Result<RunningJob<RunningSum>, Error> {
    let input = KafkaInput::new(brokers, decode_purchase)
        .topic(TOPIC)
        .bounded(bounded);
    Ok(
        Job::with_input(input, store.clone(), |_| RunningSum::default())
            .parallelism(sources, keyed)
            .checkpoint_every_events(25_000)
            .start()?,
    )
}

fn wait_for(job: &RunningJob<RunningSum>, events: u64) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while job.events_read() < events {
        if job.is_finished() || Instant::now() > deadline {
            return Err(format!("the job read {} of {events} records", job.events_read()).into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

fn report(
    phase: &str,
    outcome: &JobOutcome<RunningSum>,
    store: &DurableCheckpointStore,
) -> Result<(), Error> {
    let r = &outcome.report;
    let secs = r.elapsed.as_secs_f64();
    println!(
        "phase {phase}: restored from {}, read {} records in {secs:.2} s ({:.0}/s), {} checkpoints, latest stored {}",
        r.restored_from
            .map_or("nothing".to_owned(), |id| format!("checkpoint {id}")),
        r.events_read,
        r.events_read as f64 / secs.max(1e-9),
        r.checkpoints.len(),
        store.latest()?.map_or("none".to_owned(), |c| format!(
            "{} ({} records in)",
            c.id, c.events
        )),
    );
    for s in &r.sources {
        let parts: Vec<String> = s.offsets.iter().map(ToString::to_string).collect();
        println!("  source {}: {}", s.subtask, parts.join(" "));
    }
    Ok(())
}
