//! `cargo fuzz run query`: see `shared_map_fuzz::query`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shared_map_fuzz::query(data));
