//! Every record of the Flink 2.3.0 vectors (tests/data/flink/, produced by the
//! real Flink classes) reproduced exactly.

use serde_json::Value;
use state_runtime::flink;
use state_runtime::keygroup::{AssignerKind, KeyGroupAssigner, MaxParallelism};

fn load(name: &str) -> Value {
    let path = format!("{}/tests/data/flink/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

#[test]
fn murmur_hash_matches_flink() {
    let records = load("murmur_hash.json");
    let records = records.as_array().unwrap();
    assert!(records.len() >= 25);
    for r in records {
        let input = int(&r["input"]) as i32;
        assert_eq!(
            state_runtime::hash::murmur_hash(input) as i64,
            int(&r["output"]),
            "{r}"
        );
    }
}

/// The key of a record as a Rust value, plus its Java hash code.
fn java_hash(r: &Value) -> i32 {
    use state_runtime::hash::JavaHashCode;
    match r["type"].as_str().unwrap() {
        "Integer" => (int(&r["key"]) as i32).java_hash_code(),
        "Long" => {
            let v: i64 = r["key_str"].as_str().unwrap().parse().unwrap();
            v.java_hash_code()
        }
        "String" => {
            let s = r["key"].as_str().unwrap();
            // The vectors give the UTF-16 units Java hashed; check we read the same string.
            let units: Vec<u16> = r["utf16_units"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| int(u) as u16)
                .collect();
            assert_eq!(s.encode_utf16().collect::<Vec<_>>(), units, "{r}");
            let utf8: String = s.bytes().map(|b| format!("{b:02x}")).collect();
            assert_eq!(utf8, r["utf8_hex"].as_str().unwrap(), "{r}");
            s.java_hash_code()
        }
        other => panic!("unknown type {other}"),
    }
}

#[test]
fn key_groups_match_flink() {
    let records = load("key_groups.json");
    let records = records.as_array().unwrap();
    let mut by_type = std::collections::BTreeMap::new();
    for r in records {
        let code = java_hash(r);
        assert_eq!(code as i64, int(&r["hashCode"]), "hashCode {r}");
        assert_eq!(
            state_runtime::hash::murmur_hash(code) as i64,
            int(&r["murmur"]),
            "murmur {r}"
        );
        let max_p = int(&r["maxParallelism"]) as u32;
        let expected = int(&r["keyGroup"]);
        let assigner = KeyGroupAssigner::flink(MaxParallelism::new(max_p).unwrap());
        let got = match r["type"].as_str().unwrap() {
            "Integer" => {
                let k = int(&r["key"]) as i32;
                assert_eq!(
                    flink::assign_to_key_group(&k, max_p).unwrap() as i64,
                    expected
                );
                assigner.key_group(&k).unwrap()
            }
            "Long" => {
                let k: i64 = r["key_str"].as_str().unwrap().parse().unwrap();
                assert_eq!(
                    flink::assign_to_key_group(&k, max_p).unwrap() as i64,
                    expected
                );
                assigner.key_group(&k).unwrap()
            }
            _ => {
                let k = r["key"].as_str().unwrap().to_string();
                assert_eq!(
                    flink::assign_to_key_group(k.as_str(), max_p).unwrap() as i64,
                    expected
                );
                assigner.key_group(&k).unwrap()
            }
        };
        assert_eq!(got as i64, expected, "assigner {r}");
        *by_type
            .entry(r["type"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(by_type.len(), 3, "{by_type:?}");
    assert_eq!(records.len(), 355);
}

#[test]
fn key_group_ranges_match_flink() {
    let data = load("key_group_ranges.json");
    let cases = data["cases"].as_array().unwrap();
    assert!(cases.len() > 20);
    for c in cases {
        let max_p = int(&c["maxParallelism"]) as u32;
        let p = int(&c["parallelism"]) as usize;
        let ranges = c["ranges_inclusive"].as_array().unwrap();
        assert_eq!(ranges.len(), p);
        for (i, r) in ranges.iter().enumerate() {
            let got = flink::compute_key_group_range_for_operator_index(max_p, p, i).unwrap();
            let (start, end) = (int(&r[0]), int(&r[1]));
            assert_eq!(got.start() as i64, start, "maxP {max_p} p {p} i {i}");
            assert_eq!(
                got.last().map(|l| l as i64).unwrap_or(-1),
                end,
                "maxP {max_p} p {p} i {i}"
            );
        }
    }
    for e in data["error_cases"].as_array().unwrap() {
        let max_p = int(&e["maxParallelism"]);
        // A negative parallelism or index wraps to a huge one: an error too.
        let p = int(&e["parallelism"]) as usize;
        let i = int(&e["operatorIndex"]) as usize;
        // Every one is an error here, including operatorIndex >= parallelism,
        // which Flink answers with a range past the end.
        let res = u32::try_from(max_p).map_err(|_| ()).and_then(|m| {
            flink::compute_key_group_range_for_operator_index(m, p, i).map_err(|_| ())
        });
        assert!(res.is_err(), "expected an error for {e}");
    }
}

#[test]
fn operator_index_matches_flink() {
    let data = load("operator_index.json");
    let per_kg = data["computeOperatorIndexForKeyGroup"].as_array().unwrap();
    assert!(!per_kg.is_empty());
    for r in per_kg {
        let got = flink::compute_operator_index_for_key_group(
            int(&r["maxParallelism"]) as u32,
            int(&r["parallelism"]) as usize,
            int(&r["keyGroup"]) as u32,
        )
        .unwrap();
        assert_eq!(got as i64, int(&r["operatorIndex"]), "{r}");
    }
    let per_key = data["assignKeyToParallelOperator"].as_array().unwrap();
    assert!(!per_key.is_empty());
    for r in per_key {
        let (max_p, p) = (
            int(&r["maxParallelism"]) as u32,
            int(&r["parallelism"]) as usize,
        );
        let (kg, op) = match r["type"].as_str().unwrap() {
            "Integer" => {
                let k = int(&r["key"]) as i32;
                (
                    flink::assign_to_key_group(&k, max_p).unwrap(),
                    flink::assign_key_to_parallel_operator(&k, max_p, p).unwrap(),
                )
            }
            "Long" => {
                let k = int(&r["key"]);
                (
                    flink::assign_to_key_group(&k, max_p).unwrap(),
                    flink::assign_key_to_parallel_operator(&k, max_p, p).unwrap(),
                )
            }
            _ => {
                let k = r["key"].as_str().unwrap();
                (
                    flink::assign_to_key_group(k, max_p).unwrap(),
                    flink::assign_key_to_parallel_operator(k, max_p, p).unwrap(),
                )
            }
        };
        assert_eq!(kg as i64, int(&r["keyGroup"]), "{r}");
        assert_eq!(op as i64, int(&r["operatorIndex"]), "{r}");
        let assigner =
            KeyGroupAssigner::new(AssignerKind::Flink, MaxParallelism::new(max_p).unwrap());
        assert_eq!(assigner.subtask_for_key_group(p, kg).unwrap(), op);
    }
}

#[test]
fn default_max_parallelism_matches_flink() {
    let records = load("default_max_parallelism.json");
    let records = records.as_array().unwrap();
    let mut errors = 0;
    for r in records {
        // A negative parallelism wraps to a huge one: an error too.
        let p = int(&r["parallelism"]) as usize;
        match r.get("defaultMaxParallelism") {
            Some(v) => assert_eq!(
                flink::compute_default_max_parallelism(p).unwrap() as i64,
                int(v),
                "{r}"
            ),
            None => {
                assert!(flink::compute_default_max_parallelism(p).is_err(), "{r}");
                errors += 1;
            }
        }
    }
    assert_eq!(errors, 2);
}
