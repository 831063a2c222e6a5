//! Several forked processes add to counters in one `MAP_SHARED` mapping.

mod common;

use common::SharedHeap;
use shared_map_engine::{MapKind, Ttl, Value};

const PROCS: usize = 4;
const ROUNDS: i64 = 20_000;
const KEYS: usize = 16;

fn run(kind: MapKind) {
    let mut shared = SharedHeap::new(kind, 4 << 20, 1000, false);
    let children: Vec<_> = (0..PROCS)
        .map(|p| {
            common::fork_child(|| {
                let mut heap = shared.open_in_child();
                for i in 0..ROUNDS {
                    let key = format!("counter-{}", (i as usize + p) % KEYS);
                    let _guard = heap.lock();
                    let mut m = common::map(&mut heap);
                    m.add(key.as_bytes(), 1, 0, Ttl::Default, 0).unwrap();
                    if i % 100 == 0 {
                        m.put(
                            format!("s-{p}").as_bytes(),
                            Value::Str(&vec![p as u8; (i % 700) as usize]),
                            Ttl::Default,
                            0,
                        )
                        .unwrap();
                    }
                }
            })
        })
        .collect();
    for pid in children {
        common::wait_ok(pid);
    }
    // All children have exited; we are alone.
    let mut m = common::map(&mut shared.heap);
    let mut total = 0;
    for k in 0..KEYS {
        match m.get(format!("counter-{k}").as_bytes(), 0) {
            Some(Value::Long(v)) => total += v,
            other => panic!("counter-{k}: {other:?}"),
        }
    }
    assert_eq!(total, PROCS as i64 * ROUNDS);
    assert_eq!(m.len(), (KEYS + PROCS) as u64);
}

#[test]
fn forked_processes_count_exactly_in_a_tinymap() {
    run(MapKind::Tiny);
}

#[test]
fn forked_processes_count_exactly_in_a_hashmap() {
    run(MapKind::Hash);
}
