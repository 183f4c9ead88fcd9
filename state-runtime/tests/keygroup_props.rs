//! Properties of the key-group formulas for all valid (max parallelism,
//! parallelism) pairs.

use proptest::prelude::*;
use state_runtime::hash::StableHash;
use state_runtime::keygroup::{
    KeyGroupAssigner, MaxParallelism, key_group_range_for_subtask, native_key_group_for_hash,
    subtask_for_key_group,
};

fn max_and_p() -> impl Strategy<Value = (u32, usize)> {
    (1u32..=32768).prop_flat_map(|m| (Just(m), 1usize..=m.min(2000) as usize))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn ranges_partition_all_key_groups((m, p) in max_and_p()) {
        let max_p = MaxParallelism::new(m).unwrap();
        let mut next = 0u32;
        for i in 0..p {
            let r = key_group_range_for_subtask(max_p, p, i).unwrap();
            prop_assert_eq!(r.start(), next, "contiguous at subtask {}", i);
            prop_assert!(!r.is_empty(), "p <= maxP gives every subtask a key group");
            next = r.end_exclusive();
        }
        prop_assert_eq!(next, m);
    }

    #[test]
    fn owner_agrees_with_ranges((m, p) in max_and_p(), probe in any::<u32>()) {
        let max_p = MaxParallelism::new(m).unwrap();
        let kg = probe % m;
        let owner = subtask_for_key_group(max_p, p, kg).unwrap();
        prop_assert!(owner < p);
        prop_assert!(key_group_range_for_subtask(max_p, p, owner).unwrap().contains(kg));
    }

    #[test]
    fn native_assignment_in_range_and_monotone(m in 1u32..=32768, a in any::<u64>(), b in any::<u64>()) {
        let max_p = MaxParallelism::new(m).unwrap();
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let (kl, kh) = (native_key_group_for_hash(lo, max_p), native_key_group_for_hash(hi, max_p));
        prop_assert!(kl < m && kh < m);
        prop_assert!(kl <= kh, "monotone in the hash");
    }

    #[test]
    fn native_assigner_uses_stable_hash(m in 1u32..=32768, key in any::<i64>(), s in ".{0,40}") {
        let max_p = MaxParallelism::new(m).unwrap();
        let a = KeyGroupAssigner::native(max_p);
        prop_assert_eq!(a.key_group(&key).unwrap(), native_key_group_for_hash(key.stable_hash(), max_p));
        prop_assert_eq!(a.key_group(&s).unwrap(), native_key_group_for_hash(s.stable_hash(), max_p));
        prop_assert_eq!(a.key_group(&s).unwrap(), a.key_group(s.as_str()).unwrap());
    }

    #[test]
    fn flink_ascii_string_hash_equals_utf16_definition(s in "[ -~]{0,70}", tail in "[ -~é😀]{0,3}") {
        use state_runtime::hash::JavaHashCode;
        let s = s + &tail; // ASCII blocks of every length, sometimes followed by non-ASCII
        let reference = s.encode_utf16().fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(u as i32));
        prop_assert_eq!(s.java_hash_code(), reference);
    }

    #[test]
    fn flink_string_hash_equals_utf16_definition(s in any::<String>()) {
        use state_runtime::hash::JavaHashCode;
        let reference = s.encode_utf16().fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(u as i32));
        prop_assert_eq!(s.java_hash_code(), reference);
    }
}

#[test]
fn flink_mode_rejects_keys_without_java_hash_code() {
    let a = KeyGroupAssigner::flink(MaxParallelism::new(128).unwrap());
    assert!(a.check_key_type::<u64>().is_err());
    assert!(a.check_key_type::<String>().is_ok());
    let err = a.key_group(&5u64).unwrap_err();
    assert!(err.to_string().contains("u64"), "{err}");
    // The native assigner takes any StateKey.
    assert!(
        KeyGroupAssigner::native(MaxParallelism::new(128).unwrap())
            .key_group(&5u64)
            .is_ok()
    );
}
