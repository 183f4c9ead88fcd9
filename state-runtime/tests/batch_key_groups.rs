//! The batch key-group API (`key_groups_into`, `event_key_groups_into`)
//! gives exactly the per-key assignment, for keys and for events, in both
//! modes and for any max parallelism.

use proptest::prelude::*;
use state_runtime::prelude::*;

#[derive(Keyed, Debug, Clone)]
struct Payment {
    #[key]
    customer: String,
    cents: i64,
}

#[derive(Keyed, Debug, Clone)]
struct Click {
    #[key]
    user: u32,
    #[key]
    page: String,
}

fn assigners(max_p: u32) -> [KeyGroupAssigner; 2] {
    let m = MaxParallelism::new(max_p).unwrap();
    [KeyGroupAssigner::native(m), KeyGroupAssigner::flink(m)]
}

proptest! {
    #[test]
    fn event_batches_equal_per_key_assignment(
        customers in proptest::collection::vec("[a-z0-9é]{0,20}", 0..300),
        ids in proptest::collection::vec(any::<i64>(), 0..300),
        max_p in 1u32..=32768,
    ) {
        let payments: Vec<Payment> = customers
            .iter()
            .map(|c| Payment { customer: c.clone(), cents: 1 })
            .collect();
        prop_assert!(payments.iter().all(|p| p.cents == 1));
        for a in assigners(max_p) {
            let mut groups = vec![u32::MAX];
            a.event_key_groups_into(&payments, &mut groups).unwrap();
            prop_assert_eq!(groups.len(), payments.len() + 1);
            for (p, kg) in payments.iter().zip(&groups[1..]) {
                prop_assert_eq!(*kg, a.key_group(&p.customer).unwrap());
            }
            let mut by_key = Vec::new();
            a.key_groups_into(&customers, &mut by_key).unwrap();
            prop_assert_eq!(&by_key[..], &groups[1..]);

            let mut int_groups = Vec::new();
            a.key_groups_into(&ids, &mut int_groups).unwrap();
            for (id, kg) in ids.iter().zip(&int_groups) {
                prop_assert_eq!(*kg, a.key_group(id).unwrap());
            }
        }
    }
}

#[test]
fn tuple_keys_batch_natively_and_are_refused_in_flink_mode() {
    let clicks: Vec<Click> = (0..50)
        .map(|i| Click {
            user: i,
            page: format!("/p/{}", i % 7),
        })
        .collect();
    let [native, flink] = assigners(128);
    let mut groups = Vec::new();
    native.event_key_groups_into(&clicks, &mut groups).unwrap();
    for (c, kg) in clicks.iter().zip(&groups) {
        assert_eq!(*kg, native.key_group(&(c.user, c.page.clone())).unwrap());
    }
    let mut out = vec![1];
    let err = flink.event_key_groups_into(&clicks, &mut out).unwrap_err();
    assert!(
        matches!(err, StateError::KeyNotFlinkCompatible { .. }),
        "{err}"
    );
    assert_eq!(out, [1], "nothing appended on error");
}
