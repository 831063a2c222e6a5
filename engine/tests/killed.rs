//! A process killed at any instant in the middle of writes leaves no torn entry
//! and no broken chain: only whole entries are ever linked, and entries are
//! unlinked before they are freed. The heap's lock is force-unlocked after each
//! kill, as nginx's master does for a dead worker.

mod common;

use common::SharedHeap;
use shared_map_engine::{MapKind, MatchMode, Ttl, Value};

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Writes forever: strings of every size, longs, adds and removes, with eviction.
fn write_forever(shared: &SharedHeap, seed: u64, mode: MatchMode) -> ! {
    let mut heap = shared.open_in_child();
    let mut rng = seed | 1;
    loop {
        let r = xorshift(&mut rng);
        let key = match mode {
            MatchMode::Exact => format!("key-{}", r % 600),
            // Keys of many lengths, each counted in the length set and the probe filter.
            MatchMode::Prefix => format!("/k/{}", "x".repeat((r % 200) as usize)),
            MatchMode::Ip => format!("2001:db8::{:x}/{}", r % 600, 16 + r % 113),
        };
        let _guard = heap.lock();
        let mut m = common::map(&mut heap);
        let _ = match (r >> 32) % 5 {
            0 => m
                .put(
                    key.as_bytes(),
                    Value::Str(&vec![b'x'; (r >> 40) as usize % 700]),
                    Ttl::Default,
                    0,
                )
                .map(|_| ()),
            1 => m
                .put(key.as_bytes(), Value::Long(r as i64), Ttl::Default, 0)
                .map(|_| ()),
            2 => m.add(key.as_bytes(), 1, 0, Ttl::Default, 0).map(|_| ()),
            3 => m.put(key.as_bytes(), Value::Int(r as i32), Ttl::Secs(1), 0).map(|_| ()),
            _ => {
                m.remove(key.as_bytes(), 0);
                Ok(())
            }
        };
    }
}

fn run(kind: MapKind) {
    run_matching(kind, MatchMode::Exact);
}

fn run_matching(kind: MapKind, mode: MatchMode) {
    let mut shared = SharedHeap::new_matching(kind, 256 << 10, 400, true, mode);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..60u64 {
        let pid = common::fork_child(|| write_forever(&shared, round.wrapping_mul(0x2545_f491_4f6c_dd1d) + 1, mode));
        std::thread::sleep(std::time::Duration::from_micros(200 + xorshift(&mut rng) % 3000));
        // SAFETY: our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        shared.take_over();

        let _guard = shared.heap.lock();
        // The lock is held and the writer is dead.
        let mut m = common::map(&mut shared.heap);
        // In a prefix or ip map `verify` also checks that every stored key's
        // length is in the length set and its probe filter cells are set.
        let reachable = m
            .verify()
            .unwrap_or_else(|e| panic!("{kind:?} {mode:?} round {round}: {e}"));
        // A writer killed between linking (or unlinking) an entry and counting
        // it left `len` behind; attaching after the kill counted the chains again.
        assert_eq!(reachable, m.len(), "{kind:?} round {round}: reachable entries and len");
        // The map goes on working after the kill.
        let after: &[u8] = if mode == MatchMode::Ip {
            b"192.0.2.0/24"
        } else {
            b"after"
        };
        m.put(after, Value::Str(b"kill"), Ttl::Default, 0).unwrap();
        assert_eq!(m.get(after, 0), Some(Value::Str(b"kill")));
        if mode != MatchMode::Exact {
            // Every stored key is found by a lookup of itself, through the filter.
            let mut keys = Vec::new();
            m.for_each(b"", 0, |k, _, _| {
                keys.push(k.to_vec());
                true
            });
            for k in keys {
                let hit = m.get_match(&k, 0).map(|(found, _)| found.to_vec());
                assert_eq!(hit.as_deref(), Some(&k[..]), "{kind:?} {mode:?} round {round}");
            }
            m.remove(after, 0);
        }
    }
}

#[test]
fn a_tinymap_survives_writers_killed_at_any_instant() {
    run(MapKind::Tiny);
}

#[test]
fn a_hashmap_survives_writers_killed_at_any_instant() {
    run(MapKind::Hash);
}

#[test]
fn a_prefix_map_survives_writers_killed_at_any_instant() {
    run_matching(MapKind::Hash, MatchMode::Prefix);
}

#[test]
fn an_ip_map_survives_writers_killed_at_any_instant() {
    run_matching(MapKind::Tiny, MatchMode::Ip);
}
