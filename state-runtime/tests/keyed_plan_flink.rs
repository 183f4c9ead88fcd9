//! The same-max-parallelism keyed plan equals Flink 2.3.0's
//! `createKeyGroupPartitions` + `extractIntersectingState`
//! (`tests/data/flink/keyed_handle_redistribution.json`).

use serde_json::Value;
use state_runtime::keyed::plan::KeyedRescalePlan;
use state_runtime::prelude::*;

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/flink/keyed_handle_redistribution.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("vector file")).expect("json")
}

fn range(v: &Value) -> KeyGroupRange {
    let start = v[0].as_i64().unwrap();
    let end = v[1].as_i64().unwrap();
    if end < start {
        KeyGroupRange::EMPTY
    } else {
        KeyGroupRange::new(start as u32, end as u32)
    }
}

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

#[test]
fn plan_matches_flink_for_every_case_and_both_assigners() {
    let v = vectors();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 9, "vector file has {} cases", cases.len());
    for case in cases {
        let max_p = MaxParallelism::new(case["maxParallelism"].as_u64().unwrap() as u32).unwrap();
        let old_p = case["oldParallelism"].as_u64().unwrap() as usize;
        let new_p = case["newParallelism"].as_u64().unwrap() as usize;
        let old = case["old"].as_array().unwrap();
        let new = case["new"].as_array().unwrap();
        assert_eq!(old.len(), old_p);
        assert_eq!(new.len(), new_p);
        let label = format!("maxP {max_p}, {old_p} -> {new_p}");

        for assigner in [
            KeyGroupAssigner::native(max_p),
            KeyGroupAssigner::flink(max_p),
        ] {
            for o in old {
                let i = o["subtask"].as_u64().unwrap() as usize;
                assert_eq!(
                    assigner.range_for_subtask(old_p, i).unwrap(),
                    range(&o["range_inclusive"]),
                    "{label}: old range {i}"
                );
            }
            let plan = KeyedRescalePlan::new(assigner, old_p, assigner, new_p).unwrap();
            assert!(!plan.max_parallelism_changed());
            assert_eq!(plan.subtasks().len(), new.len());
            for (s, expected) in plan.subtasks().iter().zip(new) {
                assert_eq!(s.subtask as u64, expected["subtask"].as_u64().unwrap());
                assert_eq!(s.key_groups, range(&expected["range_inclusive"]), "{label}");
                let handles = expected["handles"].as_array().unwrap();
                assert_eq!(
                    s.reads.len(),
                    handles.len(),
                    "{label}: new subtask {} reads {:?}",
                    s.subtask,
                    s.reads
                );
                for (read, h) in s.reads.iter().zip(handles) {
                    assert_eq!(
                        read.old_subtask as u64,
                        h["from_old_subtask"].as_u64().unwrap(),
                        "{label}"
                    );
                    assert_eq!(read.key_groups, range(&h["range_inclusive"]), "{label}");
                    assert!(
                        read.filtered.is_empty(),
                        "same max parallelism: no filtering"
                    );
                    // The sub-handle keeps the old per-key-group offsets: the
                    // plan's key groups index the old subtask's offsets.
                    let src = &old[read.old_subtask];
                    let src_start = range(&src["range_inclusive"]).start();
                    let src_offsets = u64s(&src["offsets"]);
                    let offsets: Vec<u64> = read
                        .key_groups
                        .iter()
                        .map(|kg| src_offsets[(kg - src_start) as usize])
                        .collect();
                    assert_eq!(offsets, u64s(&h["offsets"]), "{label}");
                }
            }
        }
    }
}

#[test]
fn empty_intersection_is_left_out() {
    let v = vectors();
    let e = &v["empty_intersection"];
    assert!(e["result_is_null"].as_bool().unwrap());
    assert!(
        range(&e["handle_range"])
            .intersection(range(&e["intersect_with"]))
            .is_empty()
    );
    // 4 -> 4 with max parallelism 8: every new subtask reads exactly one old
    // subtask; the three with an empty intersection are left out.
    let a = KeyGroupAssigner::flink(MaxParallelism::new(8).unwrap());
    let plan = KeyedRescalePlan::new(a, 4, a, 4).unwrap();
    for s in plan.subtasks() {
        assert_eq!(s.reads.len(), 1);
        assert_eq!(s.reads[0].old_subtask, s.subtask);
        assert_eq!(s.reads[0].key_groups, s.key_groups);
    }
}

#[test]
fn flink_mode_refuses_a_new_max_parallelism() {
    let old = KeyGroupAssigner::flink(MaxParallelism::new(128).unwrap());
    let new = KeyGroupAssigner::flink(MaxParallelism::new(256).unwrap());
    let err = KeyedRescalePlan::new(old, 4, new, 4).unwrap_err();
    assert!(matches!(
        err,
        StateError::MaxParallelismChanged { old: 128, new: 256 }
    ));
    let msg = err.to_string();
    assert!(
        msg.contains("128") && msg.contains("256") && msg.contains("Flink"),
        "{msg}"
    );
}
