//! Keyed containers: range checks, binding, Flink key checks, and decoding
//! of corrupt sections (errors, never panics or huge allocations).

use state_runtime::prelude::*;

fn native(m: u32) -> KeyGroupAssigner {
    KeyGroupAssigner::native(MaxParallelism::new(m).unwrap())
}

/// A key owned by `range` and one that is not.
fn inside_and_outside(a: KeyGroupAssigner, range: KeyGroupRange) -> (u64, u64) {
    let inside = (0u64..)
        .find(|k| range.contains(a.key_group(k).unwrap()))
        .unwrap();
    let outside = (0u64..)
        .find(|k| !range.contains(a.key_group(k).unwrap()))
        .unwrap();
    (inside, outside)
}

#[test]
fn keys_outside_the_range_are_typed_errors_for_every_operation() {
    let a = native(128);
    let range = a.range_for_subtask(4, 2).unwrap();
    let (inside, outside) = inside_and_outside(a, range);
    let mut v = KeyedValue::<u64, i32>::new(a, range).unwrap().named("sum");
    let mut l = KeyedList::<u64, i32>::new(a, range).unwrap();
    let mut m = KeyedMap::<u64, u8, i32>::new(a, range).unwrap();
    v.insert(inside, 1).unwrap();
    l.push(inside, 1).unwrap();
    m.insert(inside, 0, 1).unwrap();

    let kg = a.key_group(&outside).unwrap();
    let check = |e: StateError| match e {
        StateError::KeyGroupOutsideRange {
            key_group,
            range: r,
            ..
        } => {
            assert_eq!((key_group, r), (kg, range));
        }
        other => panic!("unexpected {other:?}"),
    };
    check(v.get(outside).unwrap_err());
    check(v.get_mut(outside).unwrap_err());
    check(v.insert(outside, 2).unwrap_err());
    check(v.remove(outside).unwrap_err());
    check(v.update(&outside, || 0, |x| *x += 1).unwrap_err());
    check(v.contains_key(outside).unwrap_err());
    check(l.push(outside, 2).unwrap_err());
    check(l.get(outside).unwrap_err());
    check(m.insert(outside, 1, 2).unwrap_err());
    check(m.get(outside, &1).unwrap_err());
    check(m.remove(outside, &1).unwrap_err());
    // Nothing changed.
    assert_eq!((v.len(), l.len(), m.len()), (1, 1, 1));
    assert_eq!(v.get(inside).unwrap(), Some(&1));

    let err = v.insert(outside, 2).unwrap_err().to_string();
    assert!(
        err.contains("`sum`")
            && err.contains(&format!("key group {kg}"))
            && err.contains(&range.to_string()),
        "{err}"
    );
    // Snapshotting a key group that is not owned is refused too.
    let mut out = Vec::new();
    assert!(matches!(
        v.write_key_group(kg, &mut out),
        Err(StateError::KeyGroupOutsideRange { .. })
    ));
}

#[test]
fn unbound_state_says_so() {
    let mut v = KeyedValue::<u64, i32>::default();
    v.set_state_name("totals");
    assert!(v.binding().is_none());
    let err = v.insert(1, 1).unwrap_err();
    assert!(matches!(&err, StateError::KeyedStateUnbound { state } if state == "totals"));
    assert!(matches!(
        v.read_key_group(0, &[0], None),
        Err(StateError::KeyedStateUnbound { .. })
    ));
    v.bind(native(8), native(8).max_parallelism().all_key_groups())
        .unwrap();
    v.insert(1, 1).unwrap();
}

#[test]
fn flink_mode_checks_the_key_type_once() {
    let f = KeyGroupAssigner::flink(MaxParallelism::new(128).unwrap());
    let all = f.max_parallelism().all_key_groups();
    assert!(matches!(
        KeyedValue::<u64, i32>::new(f, all),
        Err(StateError::KeyNotFlinkCompatible { .. })
    ));
    let mut by_name = KeyedValue::<String, i32>::new(f, all).unwrap();
    by_name.insert("a", 1).unwrap();
    // The key group is Flink's.
    assert_eq!(
        by_name.key_group_of("a").unwrap(),
        state_runtime::flink::assign_to_key_group(&"a", 128).unwrap()
    );
    let range = f.range_for_subtask(2, 0).unwrap();
    let mut v = KeyedValue::<i64, i64>::new(f, range).unwrap();
    for k in 0..1000i64 {
        let owned = range.contains(state_runtime::flink::assign_to_key_group(&k, 128).unwrap());
        assert_eq!(v.insert(k, k).is_ok(), owned, "key {k}");
    }
}

#[test]
fn bind_rebuckets_and_refuses_foreign_entries() {
    let mut v =
        KeyedValue::<u64, u64>::new(native(16), native(16).max_parallelism().all_key_groups())
            .unwrap();
    for k in 0..500 {
        v.insert(k, k).unwrap();
    }
    // Same keys under a new max parallelism: every key moves into its new group.
    let big = native(1000);
    v.bind(big, big.max_parallelism().all_key_groups()).unwrap();
    assert_eq!(v.len(), 500);
    for k in 0..500u64 {
        let kg = big.key_group(&k).unwrap();
        assert!(v.iter_key_group(kg).unwrap().any(|(key, _)| *key == k));
        assert_eq!(v.get(k).unwrap(), Some(&k));
    }
    // A range that would lose entries is refused, and nothing changes.
    let half = big.range_for_subtask(2, 0).unwrap();
    assert!(matches!(
        v.bind(big, half),
        Err(StateError::KeyGroupOutsideRange { .. })
    ));
    assert_eq!(
        v.binding(),
        Some((big, big.max_parallelism().all_key_groups()))
    );
    assert_eq!(v.len(), 500);
    // A range past the max parallelism is refused.
    assert!(v.bind(native(8), KeyGroupRange::new(0, 8)).is_err());
}

#[test]
fn map_and_list_api() {
    let a = native(32);
    let all = a.max_parallelism().all_key_groups();
    let mut m = KeyedMap::<String, String, u32>::new(a, all).unwrap();
    m.update("k", "x".to_string(), || 0, |c| *c += 2).unwrap();
    m.insert("k", "y".to_string(), 5).unwrap();
    assert!(m.contains("k", "x").unwrap());
    *m.get_mut("k", "y").unwrap().unwrap() += 1;
    assert_eq!(m.get("k", "y").unwrap(), Some(&6));
    assert_eq!(m.remove("k", "nope").unwrap(), None);
    assert_eq!(m.len(), 1);
    assert_eq!(m.remove_map("k").unwrap().map(|mm| mm.len()), Some(2));
    assert!(m.is_empty());

    let mut l = KeyedList::<(u8, String), i32>::new(a, all).unwrap();
    let key = (1u8, "a".to_string());
    l.push((&key.0, &key.1), 1).unwrap();
    l.push(&key, 2).unwrap();
    assert_eq!(l.get(&key).unwrap(), Some(&[1, 2][..]));
    assert_eq!(l.insert(key.clone(), vec![9]).unwrap(), Some(vec![1, 2]));
    l.retain(|_, list| list[0] != 9);
    assert!(l.is_empty());

    let mut v = KeyedValue::<u32, u32>::new(a, all).unwrap();
    for k in 0..100 {
        v.insert(k, k).unwrap();
    }
    for (_, x) in v.iter_mut() {
        *x += 1;
    }
    assert_eq!(
        v.iter().map(|(_, x)| *x).sum::<u32>(),
        (1..=100u32).sum::<u32>()
    );
    let total: usize = all.iter().map(|kg| v.key_group_len(kg).unwrap()).sum();
    assert_eq!(total, 100);
    let copy = v.clone();
    v.clear();
    assert_eq!(copy.len(), 100, "a clone is independent");
    assert_eq!(copy.get(7).unwrap(), Some(&8));
    assert!(v.is_empty() && v.get(5).unwrap().is_none());
}

/// A section of key group `kg` of a full-range state, and the state.
fn section<S: KeyedState>(state: &S, kg: u32) -> Vec<u8> {
    let mut out = Vec::new();
    state.write_key_group(kg, &mut out).unwrap();
    out
}

fn fuller_group<S: KeyedState>(state: &S, max: u32) -> u32 {
    (0..max)
        .max_by_key(|kg| state.key_group_len(*kg).unwrap())
        .unwrap()
}

#[test]
fn corrupt_sections_are_decode_errors_never_panics() {
    let a = native(4);
    let all = a.max_parallelism().all_key_groups();
    let mut v = KeyedValue::<String, Vec<u64>>::new(a, all).unwrap();
    let mut l = KeyedList::<u64, String>::new(a, all).unwrap();
    let mut m = KeyedMap::<u64, String, i64>::new(a, all).unwrap();
    for k in 0..40u64 {
        v.insert(format!("key-{k}"), (0..k).collect()).unwrap();
        l.extend(k, (0..k % 5).map(|i| format!("item {i}")))
            .unwrap();
        for i in 0..k % 4 {
            m.insert(k, format!("u{i}"), i as i64).unwrap();
        }
    }
    let kg = fuller_group(&v, 4);
    type Reader = Box<dyn Fn(&[u8]) -> Result<usize, StateError>>;
    let sections: Vec<(Vec<u8>, Reader)> = vec![
        (
            section(&v, kg),
            Box::new(move |b: &[u8]| {
                let mut s = KeyedValue::<String, Vec<u64>>::new(a, all)
                    .unwrap()
                    .named("v");
                s.read_key_group(kg, b, None)
            }),
        ),
        (
            section(&l, kg),
            Box::new(move |b: &[u8]| {
                let mut s = KeyedList::<u64, String>::new(a, all).unwrap().named("l");
                s.read_key_group(kg, b, None)
            }),
        ),
        (
            section(&m, kg),
            Box::new(move |b: &[u8]| {
                let mut s = KeyedMap::<u64, String, i64>::new(a, all)
                    .unwrap()
                    .named("m");
                s.read_key_group(kg, b, None)
            }),
        ),
    ];
    for (bytes, read) in &sections {
        assert!(read(bytes).unwrap() > 0);
        // Every truncation fails with a decode error.
        for cut in 0..bytes.len() {
            match read(&bytes[..cut]) {
                Err(StateError::Decode { message, .. }) => {
                    assert!(message.contains(&format!("key group {kg}")), "{message}");
                }
                other => panic!("truncated at {cut}: {other:?}"),
            }
        }
        // Trailing bytes too.
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(read(&longer), Err(StateError::Decode { .. })));
        // Any single corrupted byte: an error or a (different) valid section,
        // never a panic.
        for i in 0..bytes.len() {
            for x in [0x00, 0xff, 0x80, 0xfb, 0xfc, 0xfd] {
                let mut c = bytes.clone();
                c[i] = x;
                let _ = read(&c);
            }
        }
    }
}

#[test]
fn corrupt_counts_do_not_allocate() {
    let a = native(1);
    let all = a.max_parallelism().all_key_groups();
    // bincode varint: 0xfd = u64 follows.
    let huge = |out: &mut Vec<u8>| {
        out.push(0xfd);
        out.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
    };
    // Entry count.
    let mut b = Vec::new();
    huge(&mut b);
    let mut v = KeyedValue::<u64, u64>::new(a, all).unwrap().named("v");
    let err = v.read_key_group(0, &b, None).unwrap_err().to_string();
    assert!(err.contains("`v`") && err.contains("exceeds"), "{err}");
    // A list length.
    let mut b = vec![1, 7];
    huge(&mut b);
    let mut l = KeyedList::<u64, u64>::new(a, all).unwrap();
    assert!(matches!(
        l.read_key_group(0, &b, None),
        Err(StateError::Decode { .. })
    ));
    // A map length.
    let mut m = KeyedMap::<u64, u64, u64>::new(a, all).unwrap();
    assert!(matches!(
        m.read_key_group(0, &b, None),
        Err(StateError::Decode { .. })
    ));
    // A Vec inside a value (decoded by the codec).
    let mut vv = KeyedValue::<u64, Vec<u64>>::new(a, all).unwrap();
    assert!(matches!(
        vv.read_key_group(0, &b, None),
        Err(StateError::Decode { .. })
    ));
    // A String key.
    let mut b = vec![1];
    huge(&mut b);
    let mut s = KeyedValue::<String, u8>::new(a, all).unwrap();
    assert!(matches!(
        s.read_key_group(0, &b, None),
        Err(StateError::Decode { .. })
    ));
}

#[test]
fn reading_a_section_twice_or_into_the_wrong_instance_is_an_error() {
    let a = native(128);
    let all = a.max_parallelism().all_key_groups();
    let mut v = KeyedValue::<u64, u64>::new(a, all).unwrap();
    for k in 0..2000 {
        v.insert(k, k).unwrap();
    }
    let kg = fuller_group(&v, 128);
    let bytes = section(&v, kg);

    let mut w = KeyedValue::<u64, u64>::new(a, all).unwrap();
    w.read_key_group(kg, &bytes, None).unwrap();
    let err = w.read_key_group(kg, &bytes, None).unwrap_err().to_string();
    assert!(err.contains("duplicate key"), "{err}");

    let other = KeyGroupRange::new(kg + 1, 127);
    let mut x = KeyedValue::<u64, u64>::new(a, other).unwrap();
    assert!(matches!(
        x.read_key_group(kg, &bytes, None),
        Err(StateError::KeyGroupOutsideRange { .. })
    ));
    // With a filter that rejects them, the foreign entries are skipped.
    let keep = |g: u32| other.contains(g);
    assert_eq!(x.read_key_group(kg, &bytes, Some(&keep)).unwrap(), 0);
    assert!(x.is_empty());
}

/// The size hint a snapshot reserves its buffer with: unknown (0) before the
/// first snapshot, then close to what a snapshot writes.
#[test]
fn encoded_size_hint_follows_the_last_snapshot() {
    let a = native(16);
    let all = a.max_parallelism().all_key_groups();
    let mut v = KeyedValue::<u64, String>::new(a, all).unwrap();
    for k in 0..2000u64 {
        v.insert(k, format!("value-{k}")).unwrap();
    }
    assert_eq!(v.encoded_size_hint(), 0);
    let mut written = Vec::new();
    for kg in all {
        v.write_key_group(kg, &mut written).unwrap();
    }
    let hint = v.encoded_size_hint();
    let actual = written.len();
    assert!(
        hint.abs_diff(actual) * 10 <= actual,
        "hint {hint} vs {actual} bytes written"
    );
}

/// The prelude's traits must not shadow common methods: `KeyQuery` is
/// implemented for `String`, and a method of it named `matches` took
/// precedence over `str::matches` on a `String`.
#[test]
fn the_prelude_does_not_shadow_str_methods_on_strings() {
    let text = String::from("a-b-a");
    assert_eq!(text.matches('a').count(), 2);
    assert_eq!(text.matches("-b-").count(), 1);
}
