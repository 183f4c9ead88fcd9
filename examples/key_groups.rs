//! How a million keys spread over subtasks before and after a parallelism
//! change, with the native and the Flink-compatible assigner.
//!
//! `cargo run --release --example key_groups -- [KEYS] [FROM] [TO]`

use state_runtime::keygroup::{KeyGroupAssigner, MaxParallelism, key_group_range_for_subtask};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let keys: u32 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let from: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(3);
    let to: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(4);
    let max_p = MaxParallelism::default_for(from.max(to))?;
    println!("{keys} keys \"customer-<n>\", max parallelism {max_p}, rescale {from} -> {to}\n");

    for assigner in [
        KeyGroupAssigner::native(max_p),
        KeyGroupAssigner::flink(max_p),
    ] {
        let key_groups: Vec<u32> = (0..keys)
            .map(|n| assigner.key_group(&format!("customer-{n}")))
            .collect::<Result<_, _>>()?;
        println!("assigner: {assigner}");
        let mut per_group = vec![0u64; max_p.get() as usize];
        for &kg in &key_groups {
            per_group[kg as usize] += 1;
        }
        for p in [from, to] {
            println!("  parallelism {p}:");
            for subtask in 0..p {
                let range = key_group_range_for_subtask(max_p, p, subtask)?;
                let count: u64 = range.iter().map(|kg| per_group[kg as usize]).sum();
                println!(
                    "    subtask {subtask}: key groups {range:<14} {count:>9} keys ({:>5.1}%)",
                    100.0 * count as f64 / keys as f64
                );
            }
        }
        let moved = key_groups
            .iter()
            .filter(|&&kg| {
                assigner.subtask_for_key_group(from, kg).ok()
                    != assigner.subtask_for_key_group(to, kg).ok()
            })
            .count();
        println!(
            "  keys that change subtask on {from} -> {to}: {moved} ({:.1}%), moved as whole key groups\n",
            100.0 * moved as f64 / keys as f64
        );
    }
    Ok(())
}
