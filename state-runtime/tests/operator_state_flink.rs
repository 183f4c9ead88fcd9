//! Operator-state redistribution against Apache Flink 2.3.0's
//! `RoundRobinOperatorStateRepartitioner` (vectors in
//! `tests/data/flink/operator_state_repartition.json`), end to end: derive,
//! snapshot, checkpoint, restore.

use serde_json::Value;
use state_runtime::prelude::*;

type Origin = (u32, u32);

#[derive(Checkpointed, Default)]
struct SplitOp {
    #[state(split)]
    s: Vec<Origin>,
}

#[derive(Checkpointed, Default)]
struct UnionOp {
    #[state(union)]
    s: Vec<Origin>,
}

/// Flink's broadcast state is a list per subtask; here the whole list is the
/// one broadcast value.
#[derive(Checkpointed, Default)]
struct BroadcastOp {
    #[state(broadcast)]
    s: Vec<Origin>,
}

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/flink/operator_state_repartition.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn origins(v: &Value) -> Vec<Origin> {
    match v.as_array() {
        None => Vec::new(),
        Some(a) => a
            .iter()
            .map(|p| (p[0].as_u64().unwrap() as u32, p[1].as_u64().unwrap() as u32))
            .collect(),
    }
}

fn flink_mode(case: &Value) -> String {
    case["input"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|h| h.as_array().unwrap())
        .map(|h| h["states"]["s"]["mode"].as_str().unwrap().to_owned())
        .next()
        .unwrap()
}

/// Restores `case` with operator type `T` whose one state field is built
/// and read by `make` / `take`; returns each new subtask's items.
fn run<T: Checkpointed + Default>(
    case: &Value,
    make: impl Fn(Vec<Origin>) -> T,
    take: impl Fn(T) -> Vec<Origin>,
) -> Vec<Vec<Origin>> {
    let old_p = case["oldParallelism"].as_u64().unwrap() as usize;
    let new_p = case["newParallelism"].as_u64().unwrap() as usize;
    let snapshots = (0..old_p)
        .map(|i| {
            make(origins(&case["input_elements"][i]["s"]))
                .snapshot()
                .unwrap()
        })
        .collect();
    let checkpoint = Checkpoint::from_subtasks(snapshots).unwrap();
    (0..new_p)
        .map(|j| {
            let mut op = T::default();
            let report = checkpoint.restore_into(&mut op, j, new_p).unwrap();
            assert_eq!(report.context.old_parallelism, old_p);
            take(op)
        })
        .collect()
}

/// Every single-state case: the items each new subtask gets, and their
/// order, are Flink's (compared by origin: old subtask, then index).
///
/// One case is left out on purpose: `BROADCAST_partly_reported_3to3`, where an
/// old subtask reported no state at all. Our subtask snapshots always hold
/// every declared state, so that input cannot be expressed (an old subtask
/// with an empty broadcast value gives its copy, empty, to new subtask
/// `j % N`).
#[test]
fn single_state_cases_match_flink() {
    let v = vectors();
    let mut checked = 0;
    for case in v["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let single = case["java_hashmap_state_name_order"]
            .as_array()
            .unwrap()
            .len()
            == 1
            && case["input_elements"][0].get("s").is_some();
        if !single || name == "BROADCAST_partly_reported_3to3" {
            continue;
        }
        let got = match flink_mode(case).as_str() {
            "SPLIT_DISTRIBUTE" => run(case, |s| SplitOp { s }, |o| o.s),
            "UNION" => run(case, |s| UnionOp { s }, |o| o.s),
            "BROADCAST" => run(case, |s| BroadcastOp { s }, |o| o.s),
            other => panic!("{name}: unknown mode {other}"),
        };
        for (j, items) in got.iter().enumerate() {
            let want = origins(&case["output_elements_sorted_by_origin"][j]["s"]);
            assert_eq!(items, &want, "{name}: new subtask {j}");
        }
        checked += 1;
    }
    // 36 single-state cases, minus the one explained above.
    assert_eq!(checked, 35);
}

/// Several split states: rotation of the extra items in declaration order.
/// Declared in Flink's HashMap order, the result is Flink's.
#[derive(Checkpointed, Default)]
struct ThreeSplits {
    #[state(split)]
    a: Vec<Origin>,
    #[state(split)]
    b: Vec<Origin>,
    #[state(split)]
    c: Vec<Origin>,
}

#[test]
fn three_split_states_rotate_like_flink_when_declared_in_its_order() {
    let v = vectors();
    for name in [
        "SPLIT_DISTRIBUTE_three_states_3to2",
        "SPLIT_DISTRIBUTE_three_states_3to4",
    ] {
        let case = v["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap();
        assert_eq!(
            case["java_hashmap_state_name_order"],
            serde_json::json!(["a", "b", "c"])
        );
        let old_p = case["oldParallelism"].as_u64().unwrap() as usize;
        let new_p = case["newParallelism"].as_u64().unwrap() as usize;
        let snaps = (0..old_p)
            .map(|i| {
                let e = &case["input_elements"][i];
                ThreeSplits {
                    a: origins(&e["a"]),
                    b: origins(&e["b"]),
                    c: origins(&e["c"]),
                }
                .snapshot()
                .unwrap()
            })
            .collect();
        let cp = Checkpoint::from_subtasks(snaps).unwrap();
        for j in 0..new_p {
            let mut op = ThreeSplits::default();
            cp.restore_into(&mut op, j, new_p).unwrap();
            let want = &case["output_elements_sorted_by_origin"][j];
            assert_eq!(op.a, origins(&want["a"]), "{name} {j} a");
            assert_eq!(op.b, origins(&want["b"]), "{name} {j} b");
            assert_eq!(op.c, origins(&want["c"]), "{name} {j} c");
        }
    }
}

/// Flink's `chain` vectors (3 -> 2 -> 5 -> 1 -> 3, feeding each output into
/// the next repartitioning) lose items. We snapshot after every restore, as
/// a real job does, and lose nothing.
#[test]
fn chained_rescales_lose_nothing_where_flink_vectors_lose_items() {
    let v = vectors();
    let chain = v["chain"].as_array().unwrap();
    let first = &chain[0];
    let flink_last = &chain[chain.len() - 1];
    let all: Vec<Origin> = (0..first["oldParallelism"].as_u64().unwrap() as usize)
        .flat_map(|i| origins(&first["input_elements"][i]["s"]))
        .collect();
    let flink_out: usize = (0..flink_last["newParallelism"].as_u64().unwrap() as usize)
        .map(|j| origins(&flink_last["output_elements_sorted_by_origin"][j]["s"]).len())
        .sum();
    assert!(flink_out < all.len(), "the Flink chain loses items");

    let mut ops: Vec<SplitOp> = (0..first["oldParallelism"].as_u64().unwrap() as usize)
        .map(|i| SplitOp {
            s: origins(&first["input_elements"][i]["s"]),
        })
        .collect();
    for step in chain {
        let new_p = step["newParallelism"].as_u64().unwrap() as usize;
        assert_eq!(ops.len(), step["oldParallelism"].as_u64().unwrap() as usize);
        let cp =
            Checkpoint::from_subtasks(ops.iter().map(|o| o.snapshot().unwrap()).collect()).unwrap();
        ops = (0..new_p)
            .map(|j| {
                let mut op = SplitOp::default();
                cp.restore_into(&mut op, j, new_p).unwrap();
                op
            })
            .collect();
        let mut now: Vec<Origin> = ops.iter().flat_map(|o| o.s.clone()).collect();
        now.sort();
        let mut want = all.clone();
        want.sort();
        assert_eq!(now, want, "after {}", step["name"]);
    }
}
