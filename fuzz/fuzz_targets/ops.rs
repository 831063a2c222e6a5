//! `cargo fuzz run ops`: see `shared_map_fuzz::ops`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shared_map_fuzz::ops(data));
