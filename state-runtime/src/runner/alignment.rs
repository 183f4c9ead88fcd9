//! Barrier alignment at a keyed instance, as Flink's aligned checkpoints do
//! it: once barrier `k` has come from a source, that source's later messages
//! are held until barrier `k` has come from every source; then the instance
//! snapshots and the held messages are released, in source order.
//!
//! A pure state machine over the messages (no channels, no threads), so
//! that the protocol is tested on its own.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::channel::Msg;

/// What a barrier led to.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum BarrierStep {
    /// Barriers of other sources are still to come.
    Waiting,
    /// Every source's barrier of checkpoint `id` has come, the first
    /// `alignment` ago: snapshot now, then release the held messages.
    Aligned { id: u64, alignment: Duration },
}

/// A barrier for another checkpoint than the one being aligned: the
/// sources broke the protocol.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Misaligned {
    pub(super) aligning: u64,
    pub(super) barrier: u64,
    pub(super) from: usize,
}

/// The alignment state of one keyed instance over `sources` sources.
pub(super) struct Alignment<E> {
    /// Per source: its barrier for the checkpoint being aligned has come, so
    /// its later messages wait in `held`.
    blocked: Vec<bool>,
    held: Vec<VecDeque<Msg<E>>>,
    /// The checkpoint being aligned, and when its first barrier came.
    current: Option<(u64, Instant)>,
    ended: Vec<bool>,
}

impl<E> Alignment<E> {
    pub(super) fn new(sources: usize) -> Self {
        Self {
            blocked: vec![false; sources],
            held: (0..sources).map(|_| VecDeque::new()).collect(),
            current: None,
            ended: vec![false; sources],
        }
    }

    /// A message off the channel: handed back to be processed now, or held
    /// (`None`) because its source is blocked.
    pub(super) fn offer(&mut self, msg: Msg<E>) -> Option<Msg<E>> {
        let from = msg.from();
        if self.blocked[from] {
            self.held[from].push_back(msg);
            return None;
        }
        Some(msg)
    }

    /// Barrier `id` from source `from`, which the instance is processing.
    pub(super) fn barrier(&mut self, from: usize, id: u64) -> Result<BarrierStep, Misaligned> {
        let (aligning, since) = *self.current.get_or_insert((id, Instant::now()));
        if aligning != id {
            return Err(Misaligned {
                aligning,
                barrier: id,
                from,
            });
        }
        self.blocked[from] = true;
        if !self.blocked.iter().all(|b| *b) {
            return Ok(BarrierStep::Waiting);
        }
        self.blocked.iter_mut().for_each(|b| *b = false);
        self.current = None;
        Ok(BarrierStep::Aligned {
            id,
            alignment: since.elapsed(),
        })
    }

    /// The end of source `from`'s input; whether every source has ended.
    pub(super) fn end(&mut self, from: usize) -> bool {
        self.ended[from] = true;
        self.ended.iter().all(|e| *e)
    }

    /// The next held message to process: the oldest of the first source
    /// that is not blocked and holds any. After an alignment, process these
    /// until there are none (processing one may block its source again).
    pub(super) fn next_released(&mut self) -> Option<Msg<E>> {
        let blocked = &self.blocked;
        self.held
            .iter_mut()
            .enumerate()
            .find(|(s, held)| !blocked[*s] && !held.is_empty())
            .and_then(|(_, held)| held.pop_front())
    }

    /// Whether source `from` is blocked.
    #[cfg(test)]
    fn is_blocked(&self, from: usize) -> bool {
        self.blocked[from]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages as `(source, what)`, for comparing.
    fn ids(msgs: &[Msg<u32>]) -> Vec<(usize, String)> {
        msgs.iter()
            .map(|m| match m {
                Msg::Records(s, r) => (*s, format!("r{r:?}")),
                Msg::Barrier(s, id) => (*s, format!("b{id}")),
                Msg::End(s) => (*s, "end".into()),
            })
            .collect()
    }

    /// Runs `input` through an alignment over `sources` sources as the
    /// keyed instance does: what it processes, in order, and the
    /// checkpoints it snapshots (with what it had processed by then).
    fn run(sources: usize, input: Vec<Msg<u32>>) -> (Vec<Msg<u32>>, Vec<(u64, usize)>) {
        let mut a = Alignment::new(sources);
        let mut processed = Vec::new();
        let mut snapshots = Vec::new();
        let mut handle = |a: &mut Alignment<u32>, m: Msg<u32>, processed: &mut Vec<Msg<u32>>| {
            let step = match m {
                Msg::Barrier(from, id) => Some(a.barrier(from, id).unwrap()),
                Msg::End(from) => {
                    a.end(from);
                    None
                }
                Msg::Records(..) => None,
            };
            processed.push(m);
            if let Some(BarrierStep::Aligned { id, .. }) = step {
                snapshots.push((id, processed.len()));
                return true;
            }
            false
        };
        for m in input {
            let Some(m) = a.offer(m) else { continue };
            if handle(&mut a, m, &mut processed) {
                while let Some(m) = a.next_released() {
                    handle(&mut a, m, &mut processed);
                }
            }
        }
        (processed, snapshots)
    }

    #[test]
    fn records_after_a_barrier_wait_for_every_sources_barrier() {
        let (processed, snapshots) = run(
            2,
            vec![
                Msg::Records(0, vec![1]),
                Msg::Barrier(0, 7),
                Msg::Records(0, vec![2]), // after source 0's barrier: held
                Msg::Records(1, vec![3]), // before source 1's barrier: processed
                Msg::Records(0, vec![4]),
                Msg::Barrier(1, 7),
                Msg::Records(1, vec![5]),
            ],
        );
        assert_eq!(
            ids(&processed),
            [
                (0, "r[1]".into()),
                (0, "b7".into()),
                (1, "r[3]".into()),
                (1, "b7".into()),
                (0, "r[2]".into()),
                (0, "r[4]".into()),
                (1, "r[5]".into()),
            ]
        );
        // The snapshot covers records 1 and 3 only: every source's prefix
        // up to its barrier.
        assert_eq!(snapshots, [(7, 4)]);
    }

    #[test]
    fn held_messages_may_complete_the_next_alignment() {
        // Source 0 runs two checkpoints ahead of source 1.
        let (processed, snapshots) = run(
            2,
            vec![
                Msg::Barrier(0, 1),
                Msg::Records(0, vec![10]),
                Msg::Barrier(0, 2),
                Msg::Records(0, vec![11]),
                Msg::End(0),
                Msg::Records(1, vec![20]),
                Msg::Barrier(1, 1),
                Msg::Records(1, vec![21]),
                Msg::Barrier(1, 2),
                Msg::End(1),
            ],
        );
        assert_eq!(snapshots, [(1, 3), (2, 7)]);
        let records: Vec<_> = ids(&processed)
            .into_iter()
            .filter(|(_, w)| w.starts_with('r'))
            .collect();
        assert_eq!(
            records,
            [
                (1, "r[20]".into()),
                (0, "r[10]".into()),
                (1, "r[21]".into()),
                (0, "r[11]".into()),
            ]
        );
        assert_eq!(ids(&processed).last(), Some(&(1, "end".into())));
    }

    #[test]
    fn a_barrier_of_another_checkpoint_is_an_error() {
        let mut a = Alignment::<u32>::new(2);
        assert_eq!(a.barrier(0, 3), Ok(BarrierStep::Waiting));
        assert!(a.is_blocked(0) && !a.is_blocked(1));
        assert_eq!(
            a.barrier(1, 4),
            Err(Misaligned {
                aligning: 3,
                barrier: 4,
                from: 1
            })
        );
    }

    #[test]
    fn one_source_aligns_at_once_and_ends_count_every_source() {
        let mut a = Alignment::<u32>::new(1);
        assert!(matches!(
            a.barrier(0, 9),
            Ok(BarrierStep::Aligned { id: 9, .. })
        ));
        assert!(!a.is_blocked(0));
        let mut b = Alignment::<u32>::new(3);
        assert!(!b.end(2));
        assert!(!b.end(0));
        assert!(b.end(1));
    }
}
