//! Starting the processes of a job on several machines (or on loopback):
//! timely's cluster configuration, and free local ports.

use std::net::TcpListener;

use timely::{CommunicationConfig, WorkerConfig};

use crate::error::TimelyError;

/// The timely configuration of process `process` of a cluster whose
/// processes listen at `addresses` (`host:port`, one per process, in
/// process order; the same list for every process), each running `threads`
/// worker threads. Worker indexes are `process * threads + thread`.
///
/// ```
/// let config = state_timely::cluster_config(1, &["127.0.0.1:4000".into(), "127.0.0.1:4001".into()], 2)?;
/// # Ok::<(), state_timely::TimelyError>(())
/// ```
pub fn cluster_config(
    process: usize,
    addresses: &[String],
    threads: usize,
) -> Result<timely::Config, TimelyError> {
    if threads == 0 || process >= addresses.len() {
        return Err(TimelyError::InvalidConfig {
            reason: format!(
                "process {process} of {} with {threads} threads",
                addresses.len()
            ),
        });
    }
    let communication = if addresses.len() == 1 {
        CommunicationConfig::Process(threads)
    } else {
        CommunicationConfig::Cluster {
            threads,
            process,
            addresses: addresses.to_vec(),
            report: false,
            zerocopy: false,
        }
    };
    Ok(timely::Config {
        communication,
        worker: WorkerConfig::default(),
    })
}

/// `n` addresses `127.0.0.1:<port>` with ports the system reports free
/// (they are bound, read and released, so two runs started one after the
/// other get different ports).
///
/// ```
/// let addresses = state_timely::free_local_addresses(3)?;
/// assert_eq!(addresses.len(), 3);
/// assert!(addresses.iter().all(|a| a.starts_with("127.0.0.1:")));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn free_local_addresses(n: usize) -> std::io::Result<Vec<String>> {
    // Hold every listener until all are chosen, so the ports differ.
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.to_string()))
        .collect()
}
