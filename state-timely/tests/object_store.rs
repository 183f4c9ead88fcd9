//! The timely job with its checkpoints in an object store: in memory
//! always, on an S3-compatible server when `RESCALE_S3_ENDPOINT` and
//! `RESCALE_S3_BUCKET` are set (`source .ci/s3-server.sh`;
//! `RESCALE_S3_REQUIRED` makes a missing server a failure).

#![cfg(feature = "object-store")]

use std::io::Write;
use std::sync::Arc;

use state_runtime::runner::log::LogWriter;
use state_runtime::storage::object_store::memory::InMemory;
use state_runtime::storage::{CheckpointStorage, ObjectStorage, S3Config};
use state_timely::TimelyJob;

mod common;

use common::{Purchase, Totals, newest_totals};

/// Runs 2 threads for 3 epochs, then 3 threads to the end, and checks the
/// final totals.
fn stop_and_rescale(storage: Arc<dyn CheckpointStorage>) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut w = LogWriter::<Purchase>::create(&log, 3).unwrap();
    for i in 0..2000u32 {
        w.append(
            i % 3,
            &Purchase {
                customer: i % 40,
                cents: 1,
            },
        )
        .unwrap();
    }
    w.finish().unwrap();
    let job = TimelyJob::new(&log, storage.clone(), "s3-a")
        .operator_name("totals")
        .records_per_epoch(200)
        .stop_after_epochs(3);
    job.execute(
        timely::Config::process(2),
        |_| Totals::default(),
        |_| Box::new(|_| {}),
    )
    .unwrap();
    assert_eq!(storage.latest().unwrap(), Some(3));
    let job = TimelyJob::new(&log, storage.clone(), "s3-b").operator_name("totals");
    let reports = job
        .execute(
            timely::Config::process(3),
            |_| Totals::default(),
            |_| Box::new(|_| {}),
        )
        .unwrap();
    assert!(reports.iter().all(|r| r.restored_from == Some(3)));
    let all = newest_totals(&*storage);
    assert_eq!(all.sums.len(), 40);
    assert!(all.sums.iter().all(|(_, v)| *v == 50));
}

#[test]
fn in_memory_object_store() {
    let storage = ObjectStorage::new(Arc::new(InMemory::new()), "jobs/t", "memory://").unwrap();
    stop_and_rescale(Arc::new(storage));
}

#[test]
fn s3_server() {
    let endpoint = std::env::var("RESCALE_S3_ENDPOINT")
        .ok()
        .filter(|s| !s.is_empty());
    let bucket = std::env::var("RESCALE_S3_BUCKET")
        .ok()
        .filter(|s| !s.is_empty());
    let (Some(endpoint), Some(bucket)) = (endpoint, bucket) else {
        let why = "RESCALE_S3_ENDPOINT and RESCALE_S3_BUCKET are not both set";
        assert!(
            std::env::var_os("RESCALE_S3_REQUIRED").is_none(),
            "RESCALE_S3_REQUIRED is set but {why}"
        );
        let _ = writeln!(std::io::stderr(), "SKIPPED s3_server: {why}");
        return;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("tests/timely-{}-{nanos}", std::process::id());
    let config = S3Config::new(bucket, prefix)
        .with_endpoint(endpoint)
        .with_region("us-east-1")
        .with_credentials("testing", "testing");
    stop_and_rescale(Arc::new(ObjectStorage::s3(&config).unwrap()));
}
