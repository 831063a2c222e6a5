//! The fuzz targets as plain tests, without libFuzzer: every input stored under
//! `corpus/TARGET/` (seeds, and every input a fuzzing run found failing, kept
//! as a regression), then a fixed number of pseudo-random inputs, the same on
//! every run. `make fuzz` runs the real fuzzer over the same targets.

use std::fs;
use std::path::Path;

fn stored(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    let mut inputs: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a corpus entry").path())
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), fs::read(&p).expect("a corpus file")))
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no corpus for {target}");
    inputs
}

/// xorshift64*: the same inputs on every run, varied in length and content,
/// half of them mutations of stored inputs.
fn generated(seeds: &[(String, Vec<u8>)], count: usize, max_len: usize) -> Vec<Vec<u8>> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    (0..count)
        .map(|i| {
            if i % 2 == 0 && !seeds.is_empty() {
                let mut v = seeds[next() as usize % seeds.len()].1.clone();
                for _ in 0..1 + next() % 8 {
                    let at = next() as usize % (v.len() + 1);
                    match next() % 3 {
                        0 if at < v.len() => v[at] = next() as u8,
                        1 => v.insert(at, next() as u8),
                        _ if at < v.len() => {
                            v.remove(at);
                        }
                        _ => {}
                    }
                }
                v
            } else {
                let len = next() as usize % max_len;
                (0..len).map(|_| next() as u8).collect()
            }
        })
        .collect()
}

fn run(target: &str, f: fn(&[u8]), count: usize, max_len: usize) {
    let seeds = stored(target);
    for (name, input) in &seeds {
        let r = std::panic::catch_unwind(|| f(input));
        assert!(r.is_ok(), "{target}: stored input {name} fails");
    }
    for (i, input) in generated(&seeds, count, max_len).iter().enumerate() {
        let r = std::panic::catch_unwind(|| f(input));
        assert!(r.is_ok(), "{target}: generated input {i} fails: {input:?}");
    }
}

#[test]
fn spec() {
    run("spec", shared_map_fuzz::spec, 20_000, 80);
}

#[test]
fn query() {
    run("query", shared_map_fuzz::query, 50_000, 120);
}

#[test]
fn state() {
    run("state", shared_map_fuzz::state, 5_000, 300);
}

#[test]
fn ops() {
    run("ops", shared_map_fuzz::ops, 1_000, 3000);
}

#[test]
fn resp() {
    run("resp", shared_map_fuzz::resp, 50_000, 200);
}
