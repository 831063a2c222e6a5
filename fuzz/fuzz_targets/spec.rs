//! `cargo fuzz run spec`: see `shared_map_fuzz::spec`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shared_map_fuzz::spec(data));
