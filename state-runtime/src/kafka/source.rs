//! One Kafka source instance: a consumer with its own assignment, the
//! offsets it checkpoints, and partition discovery.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError as ClientError, RDKafkaErrorCode};
use rdkafka::message::Message;

use super::assign::{TopicPartition, partitions_to_claim};
use super::error::KafkaError;
use super::{InputConfig, KafkaRecord};
use crate::checkpoint::{Checkpointed, RestoredState, SnapshotWriter};
use crate::error::StateError;
use crate::key::Keyed;
use crate::operator::{StateDescriptor, StateMode};
use crate::runner::TaskError;
use crate::runner::source::{PartitionOffset, Source, SourceInstance};

/// The name of the `split` state of `(topic, partition, next offset)` items.
pub const KAFKA_OFFSETS_STATE: &str = "kafka-partition-offsets";

/// The name of the `union` state of the `(topic, partition)` pairs the job
/// has claimed: after a rescale every instance knows every claimed
/// partition, so a partition it discovers is new only if no old instance
/// read it.
pub const KAFKA_CLAIMED_STATE: &str = "kafka-claimed-partitions";

/// How long one poll waits for the first record.
const POLL_WAIT: Duration = Duration::from_millis(20);

/// One partition an instance reads.
#[derive(Debug, Clone)]
struct Assigned {
    topic: String,
    partition: u32,
    /// The offset of the next record to read.
    next: u64,
    /// Bounded sources: the end offset (exclusive), known once assigned.
    stop: Option<u64>,
    /// Handed to the consumer (it fetches from `next`).
    assigned: bool,
}

impl Assigned {
    fn done(&self) -> bool {
        self.stop.is_some_and(|stop| self.next >= stop)
    }
}

/// One instance of a Kafka source (built by [`KafkaInput`](super::KafkaInput)):
/// reads the partitions it was dealt or claimed, with its own consumer and
/// `assign()`, and checkpoints `(topic, partition, next offset)` items as
/// `split` state ([`KAFKA_OFFSETS_STATE`]) and the claimed partitions as
/// `union` state ([`KAFKA_CLAIMED_STATE`]).
pub struct KafkaSource<E> {
    config: Arc<InputConfig<E>>,
    instance: SourceInstance,
    consumer: BaseConsumer,
    partitions: Vec<Assigned>,
    /// `(topic, partition)` to its index in `partitions`.
    index: HashMap<TopicPartition, usize>,
    /// Every partition claimed by any instance of the job.
    claimed: BTreeSet<TopicPartition>,
    last_discovery: Option<Instant>,
    /// Since when polls have failed without a record in between.
    failing_since: Option<Instant>,
}

impl<E> std::fmt::Debug for KafkaSource<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("instance", &self.instance)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl<E> KafkaSource<E> {
    pub(super) fn new(
        config: Arc<InputConfig<E>>,
        instance: SourceInstance,
    ) -> Result<Self, KafkaError> {
        let consumer = config.consumer()?;
        Ok(Self {
            config,
            instance,
            consumer,
            partitions: Vec::new(),
            index: HashMap::new(),
            claimed: BTreeSet::new(),
            last_discovery: None,
            failing_since: None,
        })
    }

    /// Where the instance is in each of its partitions.
    pub fn offsets(&self) -> Vec<PartitionOffset> {
        self.partitions
            .iter()
            .map(|a| PartitionOffset::new(a.topic.clone(), a.partition, a.next))
            .collect()
    }

    fn describe_partitions(&self) -> String {
        let names: Vec<String> = self
            .partitions
            .iter()
            .map(|a| format!("{}/{}", a.topic, a.partition))
            .collect();
        if names.is_empty() {
            "no partitions".to_owned()
        } else {
            names.join(", ")
        }
    }

    fn set_partitions(&mut self, offsets: Vec<(String, u32, u64)>) {
        self.partitions.clear();
        self.index.clear();
        for (topic, partition, next) in offsets {
            self.add(topic, partition, next);
        }
    }

    fn add(&mut self, topic: String, partition: u32, next: u64) {
        let key = (topic.clone(), partition);
        self.claimed.insert(key.clone());
        self.index.insert(key, self.partitions.len());
        self.partitions.push(Assigned {
            topic,
            partition,
            next,
            stop: None,
            assigned: false,
        });
    }

    /// Claims the partitions discovered since the last discovery, and makes
    /// sure every partition is handed to the consumer.
    fn discover(&mut self) -> Result<(), KafkaError> {
        let topics = self.config.topic_partitions(&self.consumer)?;
        let claim = partitions_to_claim(
            &topics,
            &self.claimed,
            self.instance.subtask,
            self.instance.parallelism,
        );
        let first = self.last_discovery.is_none();
        for (topic, partition) in claim {
            let (low, _) = self.config.watermarks(&self.consumer, &topic, partition)?;
            if !first {
                tracing::info!(subtask = self.instance.subtask, %topic, partition, "discovered a new Kafka partition");
            }
            self.add(topic, partition, low);
        }
        self.last_discovery = Some(Instant::now());
        self.assign_new()
    }

    /// Hands the partitions not yet assigned to the consumer, from their
    /// next offsets; a bounded source first reads their end offsets.
    fn assign_new(&mut self) -> Result<(), KafkaError> {
        let mut list = TopicPartitionList::new();
        for i in 0..self.partitions.len() {
            if self.partitions[i].assigned {
                continue;
            }
            if self.config.bounded {
                let a = &self.partitions[i];
                let (_, high) = self
                    .config
                    .watermarks(&self.consumer, &a.topic, a.partition)?;
                self.partitions[i].stop = Some(high);
            }
            let a = &mut self.partitions[i];
            a.assigned = true;
            if a.done() {
                continue;
            }
            list.add_partition_offset(&a.topic, a.partition as i32, Offset::Offset(a.next as i64))
                .map_err(|source| KafkaError::Client {
                    what: format!("assign {}/{}", a.topic, a.partition),
                    source,
                })?;
        }
        if list.count() > 0 {
            self.consumer
                .incremental_assign(&list)
                .map_err(|source| KafkaError::Client {
                    what: format!("assign partitions ({})", self.describe_partitions()),
                    source,
                })?;
        }
        Ok(())
    }

    /// Stops fetching a bounded partition read to its end.
    fn pause(&self, i: usize) -> Result<(), KafkaError> {
        let a = &self.partitions[i];
        let mut list = TopicPartitionList::new();
        list.add_partition(&a.topic, a.partition as i32);
        self.consumer
            .pause(&list)
            .map_err(|source| KafkaError::Client {
                what: format!("pause {}/{}", a.topic, a.partition),
                source,
            })
    }

    /// A consume error: fatal ones at once, transient ones (a broker
    /// connection lost, retried by the client) once they have lasted the
    /// source's timeout with no record in between.
    fn consume_error(&mut self, error: ClientError) -> Result<(), KafkaError> {
        if let Some(RDKafkaErrorCode::OffsetOutOfRange) = error.rdkafka_error_code() {
            // The client does not say which partition; the first assigned
            // one still unread names it when there is only one candidate.
            let candidates: Vec<&Assigned> = self.partitions.iter().filter(|a| !a.done()).collect();
            if let [a] = candidates[..] {
                return Err(KafkaError::OffsetOutOfRange {
                    topic: a.topic.clone(),
                    partition: a.partition,
                    offset: a.next,
                });
            }
        }
        let fatal = matches!(error, ClientError::MessageConsumptionFatal(_))
            || matches!(
                error.rdkafka_error_code(),
                Some(
                    RDKafkaErrorCode::OffsetOutOfRange
                        | RDKafkaErrorCode::UnknownTopicOrPartition
                        | RDKafkaErrorCode::TopicAuthorizationFailed
                        | RDKafkaErrorCode::ClusterAuthorizationFailed
                )
            );
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        if fatal || since.elapsed() >= self.config.timeout {
            return Err(KafkaError::Consume {
                partitions: self.describe_partitions(),
                source: error,
            });
        }
        tracing::warn!(subtask = self.instance.subtask, %error, "Kafka consume error (retrying)");
        Ok(())
    }
}

impl<E: Keyed + Send + 'static> Source for KafkaSource<E> {
    type Event = E;

    fn poll(&mut self, max: usize, emit: &mut impl FnMut(E)) -> Result<usize, TaskError> {
        let due = self
            .last_discovery
            .is_none_or(|t| t.elapsed() >= self.config.discovery_interval);
        if due {
            self.discover()?;
        }
        if self.partitions.iter().all(Assigned::done) {
            // Nothing to read now; wait as a poll would.
            std::thread::sleep(POLL_WAIT);
            return Ok(0);
        }
        let mut read = 0;
        let mut wait = POLL_WAIT;
        while read < max {
            let message = match self.consumer.poll(wait) {
                None => break,
                Some(Err(e)) => {
                    self.consume_error(e)?;
                    break;
                }
                Some(Ok(m)) => m,
            };
            wait = Duration::ZERO;
            self.failing_since = None;
            let (Ok(partition), Ok(offset)) = (
                u32::try_from(message.partition()),
                u64::try_from(message.offset()),
            ) else {
                continue;
            };
            let key = (message.topic().to_owned(), partition);
            let Some(&i) = self.index.get(&key) else {
                continue;
            };
            let a = &self.partitions[i];
            if offset < a.next || a.done() {
                // Read before a seek, or past a bounded partition's end.
                continue;
            }
            let record = KafkaRecord {
                topic: &a.topic,
                partition,
                offset,
                key: message.key(),
                payload: message.payload(),
                timestamp_ms: message.timestamp().to_millis(),
            };
            let event = (self.config.decode)(&record).map_err(|message| KafkaError::Decode {
                topic: a.topic.clone(),
                partition,
                offset,
                message,
            })?;
            emit(event);
            read += 1;
            let a = &mut self.partitions[i];
            a.next = offset + 1;
            if a.done() {
                self.pause(i)?;
            }
        }
        Ok(read)
    }

    fn is_exhausted(&self) -> bool {
        // A bounded source is done once it has discovered its partitions and
        // read each to its end; an unbounded one never is.
        self.config.bounded
            && self.last_discovery.is_some()
            && self.partitions.iter().all(Assigned::done)
    }

    fn positions(&self) -> Vec<PartitionOffset> {
        self.offsets()
    }
}

impl<E: Keyed + Send + 'static> Checkpointed for KafkaSource<E> {
    fn state_descriptors() -> Vec<StateDescriptor> {
        vec![
            StateDescriptor::new(
                KAFKA_OFFSETS_STATE,
                StateMode::Split,
                std::any::type_name::<(String, u32, u64)>(),
            ),
            StateDescriptor::new(
                KAFKA_CLAIMED_STATE,
                StateMode::Union,
                std::any::type_name::<(String, u32)>(),
            ),
        ]
    }

    fn write_snapshot(&self, w: &mut SnapshotWriter<'_>) -> Result<(), StateError> {
        let offsets: Vec<(String, u32, u64)> = self
            .partitions
            .iter()
            .map(|a| (a.topic.clone(), a.partition, a.next))
            .collect();
        let claimed: Vec<(String, u32)> = self
            .partitions
            .iter()
            .map(|a| (a.topic.clone(), a.partition))
            .collect();
        w.split(KAFKA_OFFSETS_STATE, &offsets)?;
        w.union(KAFKA_CLAIMED_STATE, &claimed)?;
        Ok(())
    }

    fn restore(&mut self, state: &mut RestoredState<'_>) -> Result<(), StateError> {
        let offsets: Vec<(String, u32, u64)> = state.list(KAFKA_OFFSETS_STATE)?;
        let claimed: Vec<(String, u32)> = state.list(KAFKA_CLAIMED_STATE)?;
        self.claimed = claimed.into_iter().collect();
        self.set_partitions(offsets);
        self.last_discovery = None;
        Ok(())
    }
}
