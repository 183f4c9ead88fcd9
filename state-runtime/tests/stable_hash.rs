//! The stable hash's specification, pinned. These values were computed with
//! the reference XXH3 implementation (Python `xxhash`, wrapping the C library)
//! over encodings built by hand from the table in `state_runtime::hash`.
//! Changing any of them is a format break: keys would move to other key groups.

use state_runtime::hash::StableHash;

#[derive(StableHash)]
struct Region {
    region: u16,
    id: u64,
}

#[derive(StableHash)]
#[allow(dead_code)]
enum Event {
    View { page: u64 },
    Click(u32),
    Idle,
}

#[derive(StableHash)]
struct Wrapper<T>(T, bool);

#[derive(StableHash)]
struct Unit;

/// An enum without variants derives too (no value of it exists).
#[derive(StableHash)]
#[allow(dead_code)]
enum Never {}

#[test]
fn golden_values() {
    let table: Vec<(&str, u64, u64)> = vec![
        ("0u64", 0u64.stable_hash(), 0xc77b3abb6f87acd9),
        ("42u64", 42u64.stable_hash(), 0xd5a6f8c838df27c8),
        ("u64::MAX", u64::MAX.stable_hash(), 0x5111c7e47d784413),
        ("-1i64", (-1i64).stable_hash(), 0x5111c7e47d784413),
        ("1u32", 1u32.stable_hash(), 0xdb02334e96d65708),
        ("-7i32", (-7i32).stable_hash(), 0x93655db649343cea),
        ("0u8", 0u8.stable_hash(), 0xc44bdff4074eecdb),
        ("true", true.stable_hash(), 0xe12ef9d2eb86ceeb),
        ("false", false.stable_hash(), 0xc44bdff4074eecdb),
        ("'é'", 'é'.stable_hash(), 0x5874c6e996bdf0a5),
        ("\"\"", "".stable_hash(), 0xc77b3abb6f87acd9),
        (
            "\"customer-42\"",
            "customer-42".stable_hash(),
            0x878d299d22b84dbc,
        ),
        (
            "String customer-42",
            String::from("customer-42").stable_hash(),
            0x878d299d22b84dbc,
        ),
        ("\"héllo\"", "héllo".stable_hash(), 0xcac7941a35a3a6d8),
        (
            "(1u32, \"a\")",
            (1u32, "a").stable_hash(),
            0x7349a3a17a070994,
        ),
        ("Some(5u16)", Some(5u16).stable_hash(), 0x1df26bb75be2248b),
        ("None::<u16>", None::<u16>.stable_hash(), 0xc44bdff4074eecdb),
        (
            "vec![1u16, 2, 3]",
            vec![1u16, 2, 3].stable_hash(),
            0xe781ca61b60f9bb8,
        ),
        ("[1u8, 2, 3]", [1u8, 2, 3].stable_hash(), 0xebce9b7632ae733b),
        ("()", ().stable_hash(), 0x2d06800538d394c2),
        ("u128::MAX", u128::MAX.stable_hash(), 0x722a202f07a4b313),
        ("usize 42", 42usize.stable_hash(), 0xd5a6f8c838df27c8),
        (
            "Region { region: 3, id: 77 }",
            Region { region: 3, id: 77 }.stable_hash(),
            0xb64cd6084d65ef6f,
        ),
        (
            "Event::Click(9)",
            Event::Click(9).stable_hash(),
            0xce9df2673f7b11ea,
        ),
        (
            "\"x\" * 300",
            "x".repeat(300).stable_hash(),
            0x64e4cb6f337e54ff,
        ),
    ];
    let wrong: Vec<String> = table
        .iter()
        .filter(|(_, got, want)| got != want)
        .map(|(name, got, want)| format!("{name}: got {got:#018x}, pinned {want:#018x}"))
        .collect();
    assert!(
        wrong.is_empty(),
        "stable hash changed:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn derived_encoding_follows_the_table() {
    // Structs: fields in order, names not hashed.
    assert_eq!(
        Region { region: 3, id: 77 }.stable_hash(),
        (3u16, 77u64).stable_hash()
    );
    // Enums: variant index as u32, then fields.
    assert_eq!(
        Event::View { page: 5 }.stable_hash(),
        (0u32, 5u64).stable_hash()
    );
    assert_eq!(Event::Idle.stable_hash(), 2u32.stable_hash());
    // Generic tuple struct.
    assert_eq!(Wrapper("k", true).stable_hash(), ("k", true).stable_hash());
    assert_eq!(Unit.stable_hash(), ().stable_hash());
}

#[test]
fn distinct_values_of_one_type_get_distinct_hashes() {
    // Length prefixes keep composite encodings unambiguous.
    assert_ne!(("ab", "c").stable_hash(), ("a", "bc").stable_hash());
    assert_ne!(
        vec![vec![1u8], vec![]].stable_hash(),
        vec![vec![], vec![1u8]].stable_hash()
    );
    assert_ne!(Some(0u8).stable_hash(), None::<u8>.stable_hash());
    let hashes: std::collections::HashSet<u64> = (0..100_000u64).map(|k| k.stable_hash()).collect();
    assert_eq!(hashes.len(), 100_000);
}

mod renamed_runtime {
    // The derive works when the runtime is reachable under another name.
    use state_runtime as rt;

    #[derive(rt::hash::StableHash)]
    #[stable_hash(crate = rt)]
    pub struct Key(pub u32);

    #[test]
    fn crate_attribute() {
        use rt::hash::StableHash;
        assert_eq!(Key(1).stable_hash(), 1u32.stable_hash());
    }
}

mod prefetch {
    //! `StableHash::INDIRECT` and `prefetch`: which keys batch assignment
    //! looks ahead for, and what the derive forwards.

    use std::cell::Cell;
    use std::sync::Arc;

    use state_runtime::hash::StableHash;
    use state_runtime::hash::StableHasher;
    use state_runtime::keygroup::{KeyGroupAssigner, MaxParallelism};

    thread_local! {
        static PREFETCHED: Cell<u32> = const { Cell::new(0) };
    }

    /// A field that counts its prefetches.
    #[derive(Clone, PartialEq, Eq, Debug)]
    struct Probe(u32);

    impl state_runtime::hash::StateKey for Probe {}

    impl StableHash for Probe {
        fn stable_hash_into(&self, h: &mut StableHasher) {
            h.write_u32(self.0);
        }
        const INDIRECT: bool = true;
        fn prefetch(&self) {
            PREFETCHED.with(|c| c.set(c.get() + 1));
        }
    }

    fn prefetches(f: impl FnOnce()) -> u32 {
        let before = PREFETCHED.with(Cell::get);
        f();
        PREFETCHED.with(Cell::get) - before
    }

    #[derive(StableHash)]
    struct TwoProbes {
        first: Probe,
        plain: u8,
        second: Probe,
    }

    #[derive(StableHash)]
    #[allow(dead_code)]
    enum Either {
        Plain(u8),
        Probed { probe: Probe, id: u64 },
    }

    #[derive(StableHash)]
    struct Generic<T>(T, u16);

    #[test]
    fn indirect_is_set_for_keys_whose_hash_reads_behind_a_pointer() {
        let table = [
            ("String", String::INDIRECT, true),
            ("str", <str>::INDIRECT, true),
            ("&str", <&str>::INDIRECT, true),
            ("Box<str>", <Box<str>>::INDIRECT, true),
            ("Arc<str>", <Arc<str>>::INDIRECT, true),
            ("Vec<u8>", <Vec<u8>>::INDIRECT, true),
            ("(u16, String)", <(u16, String)>::INDIRECT, true),
            ("Option<String>", <Option<String>>::INDIRECT, true),
            ("[String; 2]", <[String; 2]>::INDIRECT, true),
            ("u64", u64::INDIRECT, false),
            ("i32", i32::INDIRECT, false),
            ("(u16, u64)", <(u16, u64)>::INDIRECT, false),
            ("Option<u64>", <Option<u64>>::INDIRECT, false),
            ("[u8; 16]", <[u8; 16]>::INDIRECT, false),
            ("()", <()>::INDIRECT, false),
            // The derive: whether any field's type is.
            ("TwoProbes", TwoProbes::INDIRECT, true),
            ("Either", Either::INDIRECT, true),
            ("Generic<String>", <Generic<String>>::INDIRECT, true),
            ("Generic<u64>", <Generic<u64>>::INDIRECT, false),
            ("Region", super::Region::INDIRECT, false),
            ("Event", super::Event::INDIRECT, false),
            ("Unit", super::Unit::INDIRECT, false),
            ("Never", super::Never::INDIRECT, false),
        ];
        for (ty, indirect, expected) in table {
            assert_eq!(indirect, expected, "{ty}");
        }
    }

    #[test]
    fn the_derive_prefetches_every_field_of_the_value() {
        let two = TwoProbes {
            first: Probe(1),
            plain: 2,
            second: Probe(3),
        };
        assert_eq!(prefetches(|| two.prefetch()), 2);
        assert_eq!(prefetches(|| Either::Plain(1).prefetch()), 0);
        let probed = Either::Probed {
            probe: Probe(1),
            id: 2,
        };
        assert_eq!(prefetches(|| probed.prefetch()), 1);
        assert_eq!(prefetches(|| (Probe(1), 2u8, Probe(3)).prefetch()), 2);
        assert_eq!(prefetches(|| Some(Probe(1)).prefetch()), 1);
        assert_eq!(prefetches(|| None::<Probe>.prefetch()), 0);
    }

    #[test]
    fn batches_of_indirect_keys_look_ahead_and_assign_as_key_by_key() {
        let keys: Vec<TwoProbes> = (0..1000)
            .map(|i| TwoProbes {
                first: Probe(i),
                plain: i as u8,
                second: Probe(i * 7),
            })
            .collect();
        for max_p in [1, 100, 128] {
            let native = KeyGroupAssigner::native(MaxParallelism::new(max_p).unwrap());
            let mut groups = Vec::new();
            let prefetched = prefetches(|| native.key_groups_into(&keys, &mut groups).unwrap());
            assert!(prefetched > 0, "no key was prefetched");
            assert!(prefetched <= 2 * 1000, "{prefetched} prefetches");
            let expected: Vec<u32> = keys.iter().map(|k| native.key_group(k).unwrap()).collect();
            assert_eq!(groups, expected, "max parallelism {max_p}");
        }
        // Derived plain keys take the loop without look-ahead: same groups.
        let plain: Vec<Generic<u64>> = (0..1000).map(|i| Generic(i, 1)).collect();
        let native = KeyGroupAssigner::native(MaxParallelism::new(128).unwrap());
        let mut groups = Vec::new();
        native.key_groups_into(&plain, &mut groups).unwrap();
        let expected: Vec<u32> = plain.iter().map(|k| native.key_group(k).unwrap()).collect();
        assert_eq!(groups, expected);
    }

    #[derive(state_runtime::Keyed)]
    #[allow(dead_code)] // `pages` only shows that the key is not the whole event
    struct Visit {
        #[key]
        who: Probe,
        pages: u32,
    }

    #[derive(state_runtime::Keyed)]
    struct RegionalVisit {
        #[key]
        region: u16,
        #[key]
        who: Probe,
    }

    /// An event's key is borrowed (`&Key`, or a tuple of references): the
    /// look-ahead must reach the memory the key's own hash reads, not stop
    /// at the key field inside the event.
    #[test]
    fn event_batches_prefetch_what_the_keys_hash_reads() {
        let native = KeyGroupAssigner::native(MaxParallelism::new(128).unwrap());
        let visits: Vec<Visit> = (0..1000)
            .map(|i| Visit {
                who: Probe(i),
                pages: i,
            })
            .collect();
        let mut groups = Vec::new();
        let prefetched = prefetches(|| native.event_key_groups_into(&visits, &mut groups).unwrap());
        assert!(prefetched > 0, "the keys' prefetch was never reached");
        let expected: Vec<u32> = visits
            .iter()
            .map(|v| native.key_group(&v.who).unwrap())
            .collect();
        assert_eq!(groups, expected);

        let regional: Vec<RegionalVisit> = (0..1000)
            .map(|i| RegionalVisit {
                region: i as u16,
                who: Probe(i),
            })
            .collect();
        groups.clear();
        let prefetched = prefetches(|| {
            native
                .event_key_groups_into(&regional, &mut groups)
                .unwrap()
        });
        assert!(prefetched > 0, "the keys' prefetch was never reached");
        let expected: Vec<u32> = regional
            .iter()
            .map(|v| native.key_group(&(v.region, v.who.clone())).unwrap())
            .collect();
        assert_eq!(groups, expected);
    }
}
