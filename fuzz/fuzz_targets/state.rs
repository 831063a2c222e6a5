//! `cargo fuzz run state`: see `shared_map_fuzz::state`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shared_map_fuzz::state(data));
