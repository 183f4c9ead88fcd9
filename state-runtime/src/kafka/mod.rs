//! A Kafka source for the runner (feature `kafka`, on rdkafka with
//! librdkafka built from source).
//!
//! [`KafkaInput`] is the job's [`SourceFactory`]; each source instance is a
//! [`KafkaSource`] with a consumer of its own. The checkpoint decides who
//! reads what:
//!
//! * **Assignment, not subscription.** An instance hands its partitions to
//!   its consumer with `assign()`, from the offsets it holds; there is no
//!   consumer-group rebalancing. Offsets are not committed to the broker:
//!   the checkpoint is their source of truth.
//! * **Offsets as `split` state**: one `(topic, partition, next offset)`
//!   item per partition ([`KAFKA_OFFSETS_STATE`]). A restore at another
//!   parallelism deals the items over the new instances, so every
//!   partition is read by exactly one instance, from its checkpointed
//!   offset.
//! * **Discovery.** Each instance asks for the topics' partitions when it
//!   starts and then every [`discovery_interval`](KafkaInput::discovery_interval).
//!   A partition no instance has claimed goes to instance [`owner_of`]`(topic,
//!   partition, parallelism)` (Flink's assignment), which reads it from its
//!   earliest offset. Which partitions are claimed is `union` state
//!   ([`KAFKA_CLAIMED_STATE`]), so after a rescale every instance knows them
//!   all and none is read twice. Topics are named, or matched by a prefix
//!   ([`topic_prefix`](KafkaInput::topic_prefix)), in which case new topics
//!   are discovered too.
//! * **Bounded reads** ([`bounded`](KafkaInput::bounded)): each partition
//!   is read up to the end offset it had when the instance took it, then
//!   the instance is exhausted and the job can stop at the end of its
//!   input.
//! * **Errors** are [`KafkaError`]s naming the topic and partition: an
//!   unknown topic (refused before the job starts), a record that does not
//!   decode, an offset deleted by retention, a failed request. Lost broker
//!   connections are retried by the client; a discovery that cannot reach
//!   the cluster, or consume errors lasting the [`timeout`](KafkaInput::timeout),
//!   fail the job, which then restarts from its latest checkpoint.
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//! use state_runtime::kafka::{KafkaInput, KafkaRecord};
//! use state_runtime::prelude::*;
//! use state_runtime::runner::{DurableCheckpointStore, Job, KeyedProcessor};
//! use state_runtime::storage::LocalStorage;
//!
//! #[derive(Keyed)]
//! struct Purchase {
//!     #[key]
//!     customer: u32,
//!     cents: i64,
//! }
//!
//! /// Payloads are 12 bytes: customer, then cents, little-endian.
//! fn decode(r: &KafkaRecord<'_>) -> Result<Purchase, String> {
//!     let p = r.payload.ok_or("no payload")?;
//!     let p: &[u8; 12] = p.try_into().map_err(|_| format!("{} bytes", p.len()))?;
//!     Ok(Purchase {
//!         customer: u32::from_le_bytes(p[..4].try_into().unwrap()),
//!         cents: i64::from_le_bytes(p[4..].try_into().unwrap()),
//!     })
//! }
//!
//! #[derive(Checkpointed, Default)]
//! struct Totals {
//!     #[state(keyed)]
//!     sums: KeyedValue<u32, i64>,
//! }
//!
//! impl KeyedProcessor for Totals {
//!     type Event = Purchase;
//!     type Output = ();
//!     fn process(&mut self, p: Purchase, _: &mut impl FnMut(())) -> Result<(), StateError> {
//!         *self.sums.get_or_insert_with(&p.customer, || 0)? += p.cents;
//!         Ok(())
//!     }
//! }
//!
//! let input = KafkaInput::new("broker-1:9092,broker-2:9092", decode).topic("purchases");
//! let storage = LocalStorage::open("/var/lib/totals")?;
//! let store = DurableCheckpointStore::new(std::sync::Arc::new(storage), 3);
//! let job = Job::with_input(input, store, |_| Totals::default())
//!     .parallelism(4, 8)
//!     .checkpoint_interval(std::time::Duration::from_secs(10))
//!     .start()?;
//! job.wait()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod assign;
mod error;
mod source;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

pub use assign::owner_of;
pub use error::KafkaError;
pub use source::{KAFKA_CLAIMED_STATE, KAFKA_OFFSETS_STATE, KafkaSource};

use crate::key::Keyed;
use crate::runner::TaskError;
use crate::runner::source::{SourceFactory, SourceInstance};

/// One Kafka record, as the decoder sees it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct KafkaRecord<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: u32,
    /// The record's offset.
    pub offset: u64,
    /// The record's key.
    pub key: Option<&'a [u8]>,
    /// The record's value.
    pub payload: Option<&'a [u8]>,
    /// The record's timestamp, in milliseconds since the Unix epoch.
    pub timestamp_ms: Option<i64>,
}

impl<'a> KafkaRecord<'a> {
    /// A record, as a decoder would see it (for testing decoders).
    ///
    /// ```
    /// use state_runtime::kafka::KafkaRecord;
    ///
    /// let r = KafkaRecord::new("orders", 3, 17, Some(&b"k"[..]), Some(&b"v"[..]), None);
    /// assert_eq!((r.topic, r.partition, r.offset, r.payload), ("orders", 3, 17, Some(&b"v"[..])));
    /// ```
    pub fn new(
        topic: &'a str,
        partition: u32,
        offset: u64,
        key: Option<&'a [u8]>,
        payload: Option<&'a [u8]>,
        timestamp_ms: Option<i64>,
    ) -> Self {
        Self {
            topic,
            partition,
            offset,
            key,
            payload,
            timestamp_ms,
        }
    }
}

type Decoder<E> = dyn Fn(&KafkaRecord<'_>) -> Result<E, String> + Send + Sync;

/// The configuration of one Kafka input, which each instance copies.
pub(crate) struct InputConfig<E> {
    brokers: String,
    topics: Vec<String>,
    prefixes: Vec<String>,
    client: Vec<(String, String)>,
    bounded: bool,
    discovery_interval: Duration,
    timeout: Duration,
    decode: Arc<Decoder<E>>,
}

impl<E> Clone for InputConfig<E> {
    fn clone(&self) -> Self {
        Self {
            brokers: self.brokers.clone(),
            topics: self.topics.clone(),
            prefixes: self.prefixes.clone(),
            client: self.client.clone(),
            bounded: self.bounded,
            discovery_interval: self.discovery_interval,
            timeout: self.timeout,
            decode: Arc::clone(&self.decode),
        }
    }
}

impl<E> InputConfig<E> {
    fn consumer(&self) -> Result<BaseConsumer, KafkaError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", "rescale")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // A checkpointed offset that retention deleted is an error, not
            // a silent jump.
            .set("auto.offset.reset", "error")
            .set("allow.auto.create.topics", "false");
        for (key, value) in &self.client {
            config.set(key, value);
        }
        config.create().map_err(|source| KafkaError::Client {
            what: format!("create a consumer for {}", self.brokers),
            source,
        })
    }

    /// The input's topics and their partition counts, sorted by topic.
    fn topic_partitions(&self, consumer: &BaseConsumer) -> Result<Vec<(String, u32)>, KafkaError> {
        let mut found = Vec::new();
        for topic in &self.topics {
            let metadata =
                consumer
                    .fetch_metadata(Some(topic), self.timeout)
                    .map_err(|source| KafkaError::Client {
                        what: format!("fetch the metadata of topic {topic:?}"),
                        source,
                    })?;
            let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
                return Err(self.unknown(topic));
            };
            if t.error().is_some() || t.partitions().is_empty() {
                return Err(self.unknown(topic));
            }
            found.push((topic.clone(), t.partitions().len() as u32));
        }
        if !self.prefixes.is_empty() {
            let metadata = consumer
                .fetch_metadata(None, self.timeout)
                .map_err(|source| KafkaError::Client {
                    what: format!("list the topics of {}", self.brokers),
                    source,
                })?;
            for t in metadata.topics() {
                let matches = self.prefixes.iter().any(|p| t.name().starts_with(p));
                let listed = self.topics.iter().any(|n| n == t.name());
                if matches && !listed && t.error().is_none() {
                    found.push((t.name().to_owned(), t.partitions().len() as u32));
                }
            }
        }
        found.sort();
        Ok(found)
    }

    fn unknown(&self, topic: &str) -> KafkaError {
        KafkaError::UnknownTopic {
            topic: topic.to_owned(),
            brokers: self.brokers.clone(),
        }
    }

    /// A partition's `(earliest, end)` offsets.
    fn watermarks(
        &self,
        consumer: &BaseConsumer,
        topic: &str,
        partition: u32,
    ) -> Result<(u64, u64), KafkaError> {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition as i32, self.timeout)
            .map_err(|source| KafkaError::Client {
                what: format!("fetch the offsets of {topic}/{partition}"),
                source,
            })?;
        Ok((low.max(0) as u64, high.max(0) as u64))
    }
}

/// The sources of a job reading Kafka: the cluster, the topics, how records
/// decode into events, and how partitions are found. See the
/// [module documentation](self).
///
/// ```
/// use std::time::Duration;
/// use state_runtime::kafka::KafkaInput;
///
/// let input = KafkaInput::new("127.0.0.1:9092", |r| Ok(r.offset))
///     .topic("orders")
///     .topic_prefix("returns.")
///     .discovery_interval(Duration::from_secs(60))
///     .set("fetch.wait.max.ms", "50");
/// # let _ = input;
/// ```
pub struct KafkaInput<E> {
    config: InputConfig<E>,
}

impl<E> std::fmt::Debug for KafkaInput<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaInput")
            .field("brokers", &self.config.brokers)
            .field("topics", &self.config.topics)
            .field("prefixes", &self.config.prefixes)
            .field("bounded", &self.config.bounded)
            .finish_non_exhaustive()
    }
}

impl<E> KafkaInput<E> {
    /// An input reading from the cluster at `bootstrap_servers`
    /// (`host:port,...`), decoding each record with `decode` (an error
    /// fails the job with [`KafkaError::Decode`]). Add topics with
    /// [`topic`](Self::topic) or [`topic_prefix`](Self::topic_prefix).
    /// Defaults: unbounded, discovery every 30 s, requests time out after
    /// 10 s.
    pub fn new(
        bootstrap_servers: impl Into<String>,
        decode: impl Fn(&KafkaRecord<'_>) -> Result<E, String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            config: InputConfig {
                brokers: bootstrap_servers.into(),
                topics: Vec::new(),
                prefixes: Vec::new(),
                client: Vec::new(),
                bounded: false,
                discovery_interval: Duration::from_secs(30),
                timeout: Duration::from_secs(10),
                decode: Arc::new(decode),
            },
        }
    }

    /// Reads `topic`, which must exist ([`KafkaError::UnknownTopic`]
    /// otherwise, before the job starts).
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.config.topics.push(topic.into());
        self
    }

    /// Reads every topic whose name starts with `prefix`, including topics
    /// created while the job runs (found at the next discovery).
    pub fn topic_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.prefixes.push(prefix.into());
        self
    }

    /// Whether each instance stops at the end offsets its partitions had
    /// when it took them (default false: read for ever).
    pub fn bounded(mut self, bounded: bool) -> Self {
        self.config.bounded = bounded;
        self
    }

    /// How often each instance asks for new partitions and topics (default
    /// 30 s). A discovery that fails fails the job.
    pub fn discovery_interval(mut self, interval: Duration) -> Self {
        self.config.discovery_interval = interval;
        self
    }

    /// How long a request to the cluster may take, and how long consume
    /// errors may last before they fail the job (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// Sets a librdkafka client property (`fetch.wait.max.ms`,
    /// `security.protocol`, ...), after the source's own (`group.id`
    /// `rescale`, no auto commit, `auto.offset.reset` `error`), so it can
    /// override them.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.client.push((key.into(), value.into()));
        self
    }

    /// Builds the configured consumer and reads the topics' partition counts
    /// (sorted by topic): what [`check`](SourceFactory::check) verifies
    /// before a job starts.
    pub fn partitions(&self) -> Result<Vec<(String, u32)>, KafkaError> {
        let consumer = self.config.consumer()?;
        self.config.topic_partitions(&consumer)
    }
}

impl<E: Keyed + Send + 'static> SourceFactory for KafkaInput<E> {
    type Source = KafkaSource<E>;

    fn check(&self) -> Result<(), TaskError> {
        self.partitions()?;
        Ok(())
    }

    fn create(&self, instance: &SourceInstance) -> Result<KafkaSource<E>, TaskError> {
        Ok(KafkaSource::new(Arc::new(self.config.clone()), *instance)?)
    }
}
