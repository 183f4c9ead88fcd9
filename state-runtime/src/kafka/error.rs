//! What can go wrong reading Kafka, naming the topic and partition.

/// An error of the Kafka source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaError {
    /// A topic the source was given does not exist on the cluster.
    #[error("Kafka topic {topic:?} does not exist on {brokers}")]
    UnknownTopic {
        /// The topic.
        topic: String,
        /// The bootstrap servers asked.
        brokers: String,
    },

    /// A request to the cluster failed: creating the client, reading a
    /// topic's metadata or a partition's offsets, assigning partitions.
    #[error("Kafka: could not {what}: {source}")]
    Client {
        /// What was asked, naming the topic and partition (`fetch the
        /// offsets of orders/3`).
        what: String,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },

    /// Reading records failed for longer than the source's timeout.
    #[error("Kafka: reading {partitions} failed: {source}")]
    Consume {
        /// The partitions the instance reads (`orders/0, orders/2`).
        partitions: String,
        /// The last error.
        #[source]
        source: rdkafka::error::KafkaError,
    },

    /// A checkpointed offset is no longer in the partition (the broker's
    /// retention deleted it): reading on would silently skip records.
    #[error(
        "Kafka partition {topic}/{partition}: offset {offset} is out of range (deleted by retention?)"
    )]
    OffsetOutOfRange {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The offset the source was to read next.
        offset: u64,
    },

    /// A record could not be decoded into an event.
    #[error("Kafka record {topic}/{partition}@{offset} does not decode: {message}")]
    Decode {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The record's offset.
        offset: u64,
        /// The decoder's message.
        message: String,
    },
}
