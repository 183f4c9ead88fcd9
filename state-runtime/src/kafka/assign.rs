//! Which source instance reads which partition: pure functions over topic
//! metadata, so that every instance decides alike without talking to the
//! others.

use std::collections::BTreeSet;

use crate::hash::JavaHashCode;

/// A topic's partition: `(topic, partition)`.
pub type TopicPartition = (String, u32);

/// The source instance (of `parallelism`) that claims a partition first
/// seen by the job: Flink's `KafkaTopicPartitionAssigner`. A topic's
/// partitions go round-robin over the instances, starting at an instance
/// chosen by the topic's Java `hashCode`, so several topics spread evenly.
///
/// ```
/// use state_runtime::kafka::owner_of;
///
/// // "orders".hashCode() = -1008770331; (h * 31 & 0x7FFFFFFF) % 3 = 0.
/// assert_eq!(owner_of("orders", 0, 3), 0);
/// assert_eq!(owner_of("orders", 1, 3), 1);
/// assert_eq!(owner_of("orders", 5, 1), 0);
/// ```
pub fn owner_of(topic: &str, partition: u32, parallelism: usize) -> usize {
    let parallelism = parallelism.max(1);
    let start = (topic.java_hash_code().wrapping_mul(31) & 0x7FFF_FFFF) as usize % parallelism;
    (start + partition as usize) % parallelism
}

/// The partitions instance `subtask` of `parallelism` claims: those of
/// `topics` (name and partition count) that no instance has claimed yet
/// (`known`) and that [`owner_of`] gives to it. Every instance computes
/// this over the same `known` set (restored as union state), so a partition
/// is claimed by exactly one instance.
pub(crate) fn partitions_to_claim(
    topics: &[(String, u32)],
    known: &BTreeSet<TopicPartition>,
    subtask: usize,
    parallelism: usize,
) -> Vec<TopicPartition> {
    let mut claim = Vec::new();
    for (topic, count) in topics {
        for partition in 0..*count {
            if owner_of(topic, partition, parallelism) == subtask
                && !known.contains(&(topic.clone(), partition))
            {
                claim.push((topic.clone(), partition));
            }
        }
    }
    claim
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(
        topics: &[(String, u32)],
        known: &BTreeSet<TopicPartition>,
        n: usize,
    ) -> Vec<Vec<TopicPartition>> {
        (0..n)
            .map(|i| partitions_to_claim(topics, known, i, n))
            .collect()
    }

    #[test]
    fn the_owner_is_flinks_formula_with_javas_string_hash() {
        // Flink: ((topic.hashCode() * 31) & 0x7FFFFFFF) % n, then + partition.
        let h = "orders".java_hash_code();
        assert_eq!(h, -1_008_770_331);
        let start = (h.wrapping_mul(31) & 0x7FFF_FFFF) % 3;
        for p in 0..7 {
            assert_eq!(owner_of("orders", p, 3), (start as usize + p as usize) % 3);
        }
    }

    #[test]
    fn every_partition_is_claimed_by_exactly_one_instance_and_spread_evenly() {
        let topics = vec![
            ("a".to_string(), 7),
            ("b".to_string(), 5),
            ("c".to_string(), 1),
        ];
        for n in 1..6 {
            let all = claims(&topics, &BTreeSet::new(), n);
            let mut flat: Vec<_> = all.iter().flatten().cloned().collect();
            flat.sort();
            let expected: Vec<_> = topics
                .iter()
                .flat_map(|(t, c)| (0..*c).map(move |p| (t.clone(), p)))
                .collect();
            assert_eq!(flat, expected, "parallelism {n}");
            // Per topic, the instances' shares differ by at most one.
            for (t, _) in &topics {
                let shares: Vec<usize> = all
                    .iter()
                    .map(|c| c.iter().filter(|(ct, _)| ct == t).count())
                    .collect();
                let (lo, hi) = (shares.iter().min(), shares.iter().max());
                assert!(hi.unwrap() - lo.unwrap() <= 1, "{t} at {n}: {shares:?}");
            }
        }
    }

    #[test]
    fn a_grown_topic_claims_only_its_new_partitions() {
        // Partitions 0..3 were claimed by a job at another parallelism; the
        // topic now has 6, so 3, 4 and 5 are new, each for one instance.
        let known: BTreeSet<_> = (0..3).map(|p| ("t".to_string(), p)).collect();
        let all = claims(&[("t".to_string(), 6)], &known, 2);
        let mut flat: Vec<_> = all.into_iter().flatten().map(|(_, p)| p).collect();
        flat.sort();
        assert_eq!(flat, [3, 4, 5]);
        // Nothing new: nothing to claim.
        let known: BTreeSet<_> = (0..6).map(|p| ("t".to_string(), p)).collect();
        assert!(
            claims(&[("t".to_string(), 6)], &known, 4)
                .iter()
                .all(Vec::is_empty)
        );
    }
}
