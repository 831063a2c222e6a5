//! `cargo fuzz run resp`: see `shared_map_fuzz::resp`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shared_map_fuzz::resp(data));
