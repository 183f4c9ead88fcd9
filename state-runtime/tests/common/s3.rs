//! The S3-compatible server the object-store tests run against (CI starts
//! moto with `.ci/s3-server.sh`).

use std::io::Write;

use state_runtime::storage::S3Config;

/// The S3 server from the environment, or `None` after saying why.
pub fn s3_server(test: &str) -> Option<(String, String)> {
    let endpoint = std::env::var("RESCALE_S3_ENDPOINT")
        .ok()
        .filter(|s| !s.is_empty());
    let bucket = std::env::var("RESCALE_S3_BUCKET")
        .ok()
        .filter(|s| !s.is_empty());
    match (endpoint, bucket) {
        (Some(e), Some(b)) => Some((e, b)),
        _ => {
            let why = "RESCALE_S3_ENDPOINT and RESCALE_S3_BUCKET are not both set \
                       (start a server with `source .ci/s3-server.sh`)";
            if std::env::var_os("RESCALE_S3_REQUIRED").is_some() {
                panic!("{test}: RESCALE_S3_REQUIRED is set but {why}");
            }
            // Straight to stderr, past the test harness's output capture.
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
            None
        }
    }
}

pub fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("tests/{test}-{}-{nanos}", std::process::id())
}

pub fn config(endpoint: &str, bucket: &str, prefix: &str) -> S3Config {
    S3Config::new(bucket, prefix)
        .with_endpoint(endpoint)
        .with_region("us-east-1")
        .with_credentials("testing", "testing")
}
