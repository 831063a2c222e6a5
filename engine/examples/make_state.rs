//! Writes a state file (the format of `state.rs`) holding COUNT long counters
//! `/k/0000000` .. to standard output: a large map for the benchmarks.
//!
//!     cargo run --release -p shared-map-engine --example make_state -- 600000 > big.state

use std::io::Write;

use shared_map_engine::{state, MapKind, Value};

fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(600_000);
    let mut enc = state::Encoder::new(MapKind::Tiny, 0);
    for i in 0..n {
        enc.push(format!("/k/{i:07}").as_bytes(), Value::Long(i as i64), 0);
    }
    std::io::stdout().write_all(&enc.finish()).expect("write");
}
