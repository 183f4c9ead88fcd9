//! Routing records to the worker that owns their key group.
//!
//! Timely's exchange sends a record to worker `hash % peers`, so the
//! routing function returns the owning worker's index itself: worker `w` of
//! `W` owns the key groups `assigner.range_for_subtask(W, w)`, the same
//! ranges a restore at `W` reads.

use state_runtime::hash::StateKey;
use state_runtime::keygroup::KeyGroupAssigner;
use state_runtime::{Keyed, StateError};

/// The owner of every key group for one worker count: what the exchange
/// calls for each record.
///
/// ```
/// use state_runtime::prelude::*;
/// use state_timely::KeyGroupRouter;
///
/// #[derive(Keyed)]
/// struct Click { #[key] user: u64 }
///
/// let assigner = KeyGroupAssigner::native(MaxParallelism::new(16)?);
/// let router = KeyGroupRouter::new(assigner, 3)?;
/// let click = Click { user: 42 };
/// let worker = router.worker_for(&click) as usize;
/// let kg = assigner.key_group(&42u64)?;
/// assert!(assigner.range_for_subtask(3, worker)?.contains(kg));
/// # Ok::<(), StateError>(())
/// ```
#[derive(Debug, Clone)]
pub struct KeyGroupRouter {
    assigner: KeyGroupAssigner,
    /// `owner[kg]`: the worker owning key group `kg`.
    owner: Vec<u32>,
}

impl KeyGroupRouter {
    /// The routing of `workers` workers: an error for none, or for more
    /// workers than key groups.
    pub fn new(assigner: KeyGroupAssigner, workers: usize) -> Result<Self, StateError> {
        let groups = assigner.max_parallelism().get();
        let mut owner = Vec::with_capacity(groups as usize);
        for kg in 0..groups {
            let w = assigner.subtask_for_key_group(workers, kg)?;
            owner.push(u32::try_from(w).unwrap_or(u32::MAX));
        }
        Ok(KeyGroupRouter { assigner, owner })
    }

    /// The assigner.
    pub fn assigner(&self) -> KeyGroupAssigner {
        self.assigner
    }

    /// The worker that owns `record`'s key group. A key the assigner cannot
    /// hash (a Flink-mode assigner and a key without a Java hash code) goes
    /// to worker 0, whose keyed state then reports the error.
    pub fn worker_for<R: Keyed>(&self, record: &R) -> u64 {
        self.worker_for_key(&record.key())
    }

    /// The worker that owns the key group of `key`.
    pub fn worker_for_key<Q: StateKey + ?Sized>(&self, key: &Q) -> u64 {
        match self.assigner.key_group(key) {
            Ok(kg) => u64::from(self.owner.get(kg as usize).copied().unwrap_or(0)),
            Err(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use state_runtime::keygroup::MaxParallelism;

    #[test]
    fn every_key_goes_to_the_worker_whose_range_holds_its_key_group() {
        for max in [1, 7, 128] {
            let assigner = KeyGroupAssigner::native(MaxParallelism::new(max).unwrap());
            for workers in 1..=max.min(9) as usize {
                let router = KeyGroupRouter::new(assigner, workers).unwrap();
                let mut seen = vec![false; workers];
                for key in 0..2000u64 {
                    let w = router.worker_for_key(&key) as usize;
                    let kg = assigner.key_group(&key).unwrap();
                    assert!(assigner.range_for_subtask(workers, w).unwrap().contains(kg));
                    seen[w] = true;
                }
                assert!(seen.iter().all(|s| *s), "max {max}, {workers} workers");
            }
        }
        let assigner = KeyGroupAssigner::native(MaxParallelism::new(4).unwrap());
        assert!(KeyGroupRouter::new(assigner, 0).is_err());
        assert!(KeyGroupRouter::new(assigner, 5).is_err());
    }
}
