//! The demo job on Kafka (feature `kafka`): purchases as 12-byte records,
//! a producer that writes them and counts every failed delivery, and the
//! reference totals over what was produced.
//!
//! ```
//! use rescale::Purchase;
//! use rescale::kafka::{decode_purchase, encode_purchase};
//! use state_runtime::kafka::KafkaRecord;
//!
//! let p = Purchase { customer: 7, cents: -250 };
//! let bytes = encode_purchase(&p);
//! let record = |value| KafkaRecord::new("purchases", 0, 41, None, value, None);
//! assert_eq!(decode_purchase(&record(Some(&bytes[..])))?, p);
//! assert!(decode_purchase(&record(Some(&bytes[..5]))).is_err());
//! # Ok::<(), String>(())
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use state_runtime::kafka::KafkaRecord;

use crate::Purchase;

/// A purchase as a record value: customer (`u32`), then cents (`i64`),
/// little-endian.
pub fn encode_purchase(p: &Purchase) -> [u8; 12] {
    let mut bytes = [0; 12];
    bytes[..4].copy_from_slice(&p.customer.to_le_bytes());
    bytes[4..].copy_from_slice(&p.cents.to_le_bytes());
    bytes
}

/// Decodes [`encode_purchase`]'s records; anything else is an error naming
/// what it found.
pub fn decode_purchase(record: &KafkaRecord<'_>) -> Result<Purchase, String> {
    let payload = record.payload.ok_or("the record has no value")?;
    let bytes: &[u8; 12] = payload
        .try_into()
        .map_err(|_| format!("expected 12 bytes, found {}", payload.len()))?;
    let (customer, cents) = bytes.split_at(4);
    Ok(Purchase {
        customer: u32::from_le_bytes(customer.try_into().expect("4 bytes")),
        cents: i64::from_le_bytes(cents.try_into().expect("8 bytes")),
    })
}

/// Counts the records the cluster did not take.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Writes `records` (value, then partition) to `topic` on the cluster at
/// `brokers`, and waits until every one is acknowledged. Fails if any
/// delivery failed.
pub fn produce(
    brokers: &str,
    topic: &str,
    records: impl IntoIterator<Item = (u32, Purchase)>,
) -> Result<u64, KafkaError> {
    let producer: BaseProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create_with_context(Deliveries::default())?;
    let mut sent = 0;
    for (partition, purchase) in records {
        let value = encode_purchase(&purchase);
        let mut record = BaseRecord::<(), [u8]>::to(topic)
            .partition(partition as i32)
            .payload(&value[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    producer.poll(Duration::from_millis(10));
                    record = back;
                }
                Err((e, _)) => return Err(e),
            }
        }
        sent += 1;
    }
    producer.flush(Duration::from_secs(30))?;
    let failed = producer.context().failed.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(KafkaError::MessageProduction(RDKafkaErrorCode::Fail));
    }
    Ok(sent)
}
