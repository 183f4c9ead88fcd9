//! The manifest decoder and its validation (offsets, key-group ranges,
//! region tiling, the read planner) on arbitrary bytes. The first byte
//! chooses whether the CRC is checked: unchecked, the fuzzer reaches the
//! structure behind it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use state_runtime::checkpoint::durable::{
    check_data_header_for_fuzzing, decode_manifest_for_fuzzing,
};

fuzz_target!(|data: &[u8]| {
    if let Some((first, rest)) = data.split_first() {
        let _ = decode_manifest_for_fuzzing(rest, first & 1 == 1);
        let _ = check_data_header_for_fuzzing(rest);
    }
});
