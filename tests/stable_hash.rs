//! The stable hash's specification, pinned. These values were computed with
//! the reference XXH3 implementation (Python `xxhash`, wrapping the C library)
//! over encodings built by hand from the table in `state_runtime::hash`.
//! Changing any of them is a format break: keys would move to other key groups.

use state_runtime::StableHash;

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

    #[derive(rt::StableHash)]
    #[stable_hash(crate = rt)]
    pub struct Key(pub u32);

    #[test]
    fn crate_attribute() {
        use rt::StableHash;
        assert_eq!(Key(1).stable_hash(), 1u32.stable_hash());
    }
}
