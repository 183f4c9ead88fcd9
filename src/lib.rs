//! The workspace's demo job: purchases keyed by customer, a per-customer
//! running sum in keyed state, a deterministic input log, and the
//! single-threaded reference computation it is checked against.
//!
//! ```
//! use rescale::{LogSpec, RunningSum, reference_totals, totals_of};
//! use state_runtime::runner::{Job, MemoryCheckpointStore};
//!
//! let spec = LogSpec { partitions: 4, events: 20_000, customers: 300, seed: 7 };
//! let dir = std::env::temp_dir().join(format!("rescale-lib-doc-{}", std::process::id()));
//! spec.write_log(&dir)?;
//!
//! let store = MemoryCheckpointStore::new();
//! // Run at parallelism 2 and stop half-way, then finish at parallelism 3.
//! let job = Job::new(&dir, store.clone(), |_| RunningSum::default())
//!     .parallelism(2, 2)
//!     .start()?;
//! while job.events_read() < 10_000 && !job.is_finished() {
//!     std::thread::yield_now();
//! }
//! job.stop()?;
//! let done = Job::new(&dir, store, |_| RunningSum::default())
//!     .parallelism(3, 3)
//!     .start()?
//!     .wait()?;
//! assert_eq!(totals_of(&done.operators), reference_totals(&spec));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod timely_cluster;

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use state_runtime::prelude::*;
use state_runtime::runner::KeyedProcessor;
use state_runtime::runner::log::{LogError, LogWriter};

#[cfg(feature = "kafka")]
pub mod kafka;

/// One purchase: the input event of the demo job, keyed by customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Keyed)]
pub struct Purchase {
    /// The customer, the key.
    #[key]
    pub customer: u32,
    /// The amount in cents; negative for a refund.
    pub cents: i64,
}

/// A customer's running total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Total {
    /// Sum of the purchases' cents.
    pub cents: i64,
    /// Number of purchases.
    pub purchases: u64,
}

/// A deterministic input log: `events` purchases by `customers` customers
/// over `partitions` partitions, generated from `seed`.
///
/// ```
/// use rescale::LogSpec;
///
/// let spec = LogSpec { partitions: 3, events: 100, customers: 10, seed: 1 };
/// let a: Vec<_> = spec.purchases().collect();
/// assert_eq!(a, spec.purchases().collect::<Vec<_>>()); // same seed, same log
/// assert_eq!(a.len(), 100);
/// assert!(a.iter().all(|(p, e)| *p < 3 && e.customer < 10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSpec {
    /// Number of partitions.
    pub partitions: u32,
    /// Number of purchases.
    pub events: u64,
    /// Number of distinct customers (keys).
    pub customers: u32,
    /// The generator's seed.
    pub seed: u64,
}

/// SplitMix64: a tiny, fast generator with a fixed, documented output.
fn split_mix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl LogSpec {
    /// Every purchase in log order, with the partition it goes to. About
    /// one in twenty is a refund.
    pub fn purchases(&self) -> impl Iterator<Item = (u32, Purchase)> + use<> {
        let spec = *self;
        let mut state = spec.seed;
        (0..spec.events).map(move |_| {
            let r = split_mix(&mut state);
            let customer = (r % u64::from(spec.customers.max(1))) as u32;
            let amount = ((r >> 32) % 20_000) as i64 + 1;
            let cents = if (r >> 24) & 0xff < 13 {
                -amount
            } else {
                amount
            };
            let partition = ((r >> 40) % u64::from(spec.partitions.max(1))) as u32;
            (partition, Purchase { customer, cents })
        })
    }

    /// Writes the log into `dir` (replacing a log there); returns the bytes
    /// written.
    pub fn write_log(&self, dir: &Path) -> Result<u64, LogError> {
        let mut w = LogWriter::<Purchase>::create(dir, self.partitions.max(1))?;
        for (partition, purchase) in self.purchases() {
            w.append(partition, &purchase)?;
        }
        w.finish()?;
        let mut bytes = 0;
        for p in 0..self.partitions.max(1) {
            let path = state_runtime::runner::log::partition_path(dir, p);
            bytes += std::fs::metadata(&path)
                .map_err(|source| LogError::Io { path, source })?
                .len();
        }
        Ok(bytes)
    }
}

/// The single-threaded reference: every customer's total over the whole
/// log, with a plain `HashMap`.
pub fn reference_totals(spec: &LogSpec) -> HashMap<u32, Total> {
    totals_over(spec.purchases().map(|(_, p)| p))
}

/// Every customer's total over `purchases`, with a plain `HashMap`.
pub fn totals_over(purchases: impl IntoIterator<Item = Purchase>) -> HashMap<u32, Total> {
    let mut totals: HashMap<u32, Total> = HashMap::new();
    for p in purchases {
        let t = totals.entry(p.customer).or_default();
        t.cents += p.cents;
        t.purchases += 1;
    }
    totals
}

/// The keyed operator of the demo: each customer's running total, in keyed
/// state. Emits `(customer, running sum)` after every purchase.
#[derive(Checkpointed, Default)]
pub struct RunningSum {
    /// Per customer: cents and number of purchases.
    #[state(keyed)]
    pub sums: KeyedValue<u32, Total>,
}

impl KeyedProcessor for RunningSum {
    type Event = Purchase;
    type Output = (u32, i64);

    #[inline]
    fn process(
        &mut self,
        event: Purchase,
        out: &mut impl FnMut((u32, i64)),
    ) -> Result<(), StateError> {
        let total = self.sums.get_or_insert_with(event.key(), Total::default)?;
        total.cents += event.cents;
        total.purchases += 1;
        out((event.customer, total.cents));
        Ok(())
    }
}

/// The totals held by a set of instances (each key is on exactly one).
pub fn totals_of(operators: &[RunningSum]) -> HashMap<u32, Total> {
    operators
        .iter()
        .flat_map(|op| op.sums.iter().map(|(k, v)| (*k, *v)))
        .collect()
}

/// Compares `actual` with `expected`; `Err` describes up to five
/// differences and counts them all.
///
/// ```
/// use std::collections::HashMap;
/// use rescale::{Total, compare_totals};
///
/// let a = HashMap::from([(1, Total { cents: 5, purchases: 1 })]);
/// assert!(compare_totals(&a, &a).is_ok());
/// let err = compare_totals(&HashMap::new(), &a).unwrap_err();
/// assert!(err.contains("customer 1"), "{err}");
/// ```
pub fn compare_totals(
    actual: &HashMap<u32, Total>,
    expected: &HashMap<u32, Total>,
) -> Result<(), String> {
    let mut keys: Vec<u32> = actual.keys().chain(expected.keys()).copied().collect();
    keys.sort_unstable();
    keys.dedup();
    let diffs: Vec<String> = keys
        .iter()
        .filter(|k| actual.get(k) != expected.get(k))
        .map(|k| {
            format!(
                "customer {k}: got {:?}, expected {:?}",
                actual.get(k),
                expected.get(k)
            )
        })
        .collect();
    if diffs.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} of {} customers differ: {}",
        diffs.len(),
        keys.len(),
        diffs[..diffs.len().min(5)].join("; ")
    ))
}
