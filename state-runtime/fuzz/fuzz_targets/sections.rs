//! The keyed section decoders, full and delta (`KeyedState::read_key_group`
//! and `read_key_group_delta`), on arbitrary bytes, for a value, a list and
//! a map state, with and without a filter: errors are fine, panics and large
//! allocations are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use state_runtime::keyed::{KeyedList, KeyedMap, KeyedState, KeyedValue};
use state_runtime::keygroup::{KeyGroupAssigner, MaxParallelism};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let max = MaxParallelism::new(8).expect("valid");
    let assigner = if selector & 0x10 == 0 {
        KeyGroupAssigner::native(max)
    } else {
        KeyGroupAssigner::flink(max)
    };
    let range = max.all_key_groups();
    let key_group = u32::from(selector >> 5) % 8;
    let keep_even = |kg: u32| kg % 2 == 0;
    let filter: Option<&dyn Fn(u32) -> bool> = if selector & 0x08 == 0 {
        None
    } else {
        Some(&keep_even)
    };
    match selector & 0x07 {
        0 | 1 => {
            let mut s = KeyedValue::<i64, String>::new(assigner, range).expect("bind");
            let _ = s.read_key_group(key_group, bytes, filter);
            let _ = s.read_key_group_delta(key_group, bytes, filter);
        }
        2 | 3 => {
            let mut s = KeyedList::<i32, Vec<u8>>::new(assigner, range).expect("bind");
            let _ = s.read_key_group(key_group, bytes, filter);
            let _ = s.read_key_group_delta(key_group, bytes, filter);
        }
        4 | 5 => {
            let mut s = KeyedMap::<String, u64, (u8, i64)>::new(assigner, range).expect("bind");
            let _ = s.read_key_group(key_group, bytes, filter);
            let _ = s.read_key_group_delta(key_group, bytes, filter);
        }
        _ => {
            let mut s = KeyedValue::<i64, Vec<u128>>::new(assigner, range).expect("bind");
            let _ = s.read_key_group(key_group, bytes, filter);
            let _ = s.read_key_group_delta(key_group, bytes, filter);
        }
    }
});
