//! The replication log of a map with `sync`: what a write records, how changes
//! coalesce per key, how a batch is taken, resent and acknowledged, and that the
//! log stays bounded by the map's entries.

mod common;

use std::collections::HashMap;

use common::{map, new_map, KINDS};
use proptest::prelude::*;
use shared_map_engine::{Batch, Change, Op, OwnedValue, Ttl, Value};

const NOW: u32 = 1_000_000;

fn synced(kind: shared_map_engine::MapKind, entries: u64) -> shared_map_engine::heap::Heap {
    let mut heap = new_map(kind, 1 << 20, entries, 0, false);
    map(&mut heap).enable_sync(7).expect("room for the log");
    heap
}

fn change(key: &str, op: Op) -> Change {
    Change {
        key: key.as_bytes().to_vec(),
        op,
    }
}

#[test]
fn an_unsynced_map_records_nothing() {
    for kind in KINDS {
        let mut heap = new_map(kind, 1 << 20, 100, 0, false);
        let mut m = map(&mut heap);
        m.add(b"a", 1, 0, Ttl::Default, NOW).unwrap();
        assert!(!m.is_synced());
        assert_eq!(m.sync_take(100, NOW), None);
        assert_eq!(m.sync_stats(), None);
    }
}

#[test]
fn additions_coalesce_into_one_delta() {
    for kind in KINDS {
        let mut heap = synced(kind, 100);
        let mut m = map(&mut heap);
        for _ in 0..1000 {
            m.add(b"hits", 1, 0, Ttl::Default, NOW).unwrap();
        }
        m.add(b"hits", -10, 0, Ttl::Default, NOW).unwrap();
        let stats = m.sync_stats().unwrap();
        assert_eq!((stats.pending, stats.recorded), (1, 1001));
        let batch = m.sync_take(100, NOW).unwrap();
        assert_eq!(
            batch,
            Batch {
                seq: 1,
                clear: false,
                changes: vec![change("hits", Op::Add { delta: 990, expire: 0 })],
            }
        );
        assert!(m.sync_ack(1));
        assert_eq!(m.sync_take(100, NOW), None);
        assert_eq!(m.sync_stats().unwrap().pending, 0);
        assert_eq!(m.sync_stats().unwrap().acked, 1);
    }
}

#[test]
fn puts_and_removals_send_the_latest_state() {
    for kind in KINDS {
        let mut heap = synced(kind, 100);
        let mut m = map(&mut heap);
        m.put(b"s", Value::Str(b"one"), Ttl::Secs(60), NOW).unwrap();
        m.put(b"s", Value::Str(b"two"), Ttl::Secs(60), NOW).unwrap();
        m.add(b"n", 5, 0, Ttl::Default, NOW).unwrap();
        m.put(b"n", Value::Long(7), Ttl::Never, NOW).unwrap(); // replaces the delta
        m.add(b"n", 1, 0, Ttl::Default, NOW).unwrap(); // included in the latest value
        m.put(b"gone", Value::Int(1), Ttl::Never, NOW).unwrap();
        m.remove(b"gone", NOW);
        assert!(m.remove(b"never", NOW).is_none());
        let batch = m.sync_take(100, NOW).unwrap();
        assert_eq!(
            batch.changes,
            vec![
                change(
                    "s",
                    Op::Put {
                        value: OwnedValue::Str(b"two".to_vec()),
                        expire: NOW + 60
                    }
                ),
                change(
                    "n",
                    Op::Put {
                        value: OwnedValue::Long(8),
                        expire: 0
                    }
                ),
                change("gone", Op::Remove),
            ]
        );
    }
}

#[test]
fn an_addition_carries_the_entrys_absolute_expiry() {
    for kind in KINDS {
        let mut heap = new_map(kind, 1 << 20, 100, 30, false);
        map(&mut heap).enable_sync(7).unwrap();
        let mut m = map(&mut heap);
        m.add(b"c", 2, 0, Ttl::Default, NOW).unwrap();
        let batch = m.sync_take(100, NOW + 5).unwrap();
        assert_eq!(
            batch.changes,
            vec![change(
                "c",
                Op::Add {
                    delta: 2,
                    expire: NOW + 30
                }
            )]
        );
    }
}

#[test]
fn a_key_made_with_an_init_sends_its_value() {
    for kind in KINDS {
        let mut heap = synced(kind, 100);
        let mut m = map(&mut heap);
        m.add(b"c", 1, 100, Ttl::Never, NOW).unwrap();
        m.add(b"d", 1, 0, Ttl::Never, NOW).unwrap();
        m.add(b"d", 1, 100, Ttl::Never, NOW).unwrap(); // present: a delta
        let batch = m.sync_take(100, NOW).unwrap();
        assert_eq!(
            batch.changes,
            vec![
                change(
                    "c",
                    Op::Put {
                        value: OwnedValue::Long(101),
                        expire: 0
                    }
                ),
                change("d", Op::Add { delta: 2, expire: 0 }),
            ]
        );
    }
}

#[test]
fn a_clear_drops_pending_changes_and_goes_first() {
    for kind in KINDS {
        let mut heap = synced(kind, 100);
        let mut m = map(&mut heap);
        m.add(b"a", 1, 0, Ttl::Default, NOW).unwrap();
        m.clear();
        m.add(b"b", 2, 0, Ttl::Default, NOW).unwrap();
        let batch = m.sync_take(100, NOW).unwrap();
        assert!(batch.clear);
        assert_eq!(batch.changes, vec![change("b", Op::Add { delta: 2, expire: 0 })]);
        assert!(m.sync_ack(batch.seq));
        assert_eq!(m.sync_take(100, NOW), None);
        assert_eq!(m.sync_host(), 7);
    }
}

#[test]
fn a_clear_after_a_batch_was_taken_follows_it() {
    for kind in KINDS {
        let mut heap = synced(kind, 100);
        let mut m = map(&mut heap);
        m.add(b"a", 1, 0, Ttl::Default, NOW).unwrap();
        let first = m.sync_take(100, NOW).unwrap();
        m.clear();
        assert_eq!(
            m.sync_take(100, NOW).unwrap().seq,
            first.seq,
            "resent until acknowledged"
        );
        assert!(m.sync_ack(first.seq));
        let second = m.sync_take(100, NOW).unwrap();
        assert_eq!(
            (second.seq, second.clear, second.changes.len()),
            (first.seq + 1, true, 0)
        );
    }
}

#[test]
fn an_unacknowledged_batch_is_resent_with_the_same_number_and_deltas() {
    for kind in KINDS {
        let mut heap = synced(kind, 100);
        let mut m = map(&mut heap);
        m.add(b"a", 3, 0, Ttl::Default, NOW).unwrap();
        let first = m.sync_take(100, NOW).unwrap();
        // Written while the batch is in flight: pends behind it.
        m.add(b"a", 4, 0, Ttl::Default, NOW).unwrap();
        m.add(b"b", 1, 0, Ttl::Default, NOW).unwrap();
        assert_eq!(m.unacked_delta(b"a"), 7);
        assert!(!m.has_unacked_latest(b"a"));
        m.put(b"c", Value::Long(1), Ttl::Never, NOW).unwrap();
        assert!(m.has_unacked_latest(b"c"));
        let again = m.sync_take(100, NOW).unwrap();
        assert_eq!(again, first);
        assert!(!m.sync_ack(first.seq + 1), "only the batch in flight is acknowledged");
        assert!(m.sync_ack(first.seq));
        assert!(!m.sync_ack(first.seq), "an acknowledgement counts once");
        let next = m.sync_take(100, NOW).unwrap();
        assert_eq!(next.seq, first.seq + 1);
        assert_eq!(
            next.changes,
            vec![
                change("a", Op::Add { delta: 4, expire: 0 }),
                change("b", Op::Add { delta: 1, expire: 0 }),
                change(
                    "c",
                    Op::Put {
                        value: OwnedValue::Long(1),
                        expire: 0
                    }
                ),
            ]
        );
        assert!(m.sync_ack(next.seq));
        assert_eq!(m.unacked_delta(b"a"), 0);
        assert!(!m.has_unacked(b"a"));
    }
}

#[test]
fn a_batch_takes_at_most_max_keys_in_order() {
    for kind in KINDS {
        let mut heap = synced(kind, 100);
        let mut m = map(&mut heap);
        for i in 0..10 {
            m.add(format!("k{i}").as_bytes(), 1, 0, Ttl::Default, NOW).unwrap();
        }
        let mut seen = Vec::new();
        while let Some(batch) = m.sync_take(4, NOW) {
            assert!(batch.changes.len() <= 4);
            seen.extend(batch.changes.iter().map(|c| String::from_utf8(c.key.clone()).unwrap()));
            assert!(m.sync_ack(batch.seq));
        }
        assert_eq!(seen, (0..10).map(|i| format!("k{i}")).collect::<Vec<_>>());
    }
}

#[test]
fn additions_whose_sum_leaves_a_long_send_the_value_instead() {
    for kind in KINDS {
        let mut heap = synced(kind, 100);
        let mut m = map(&mut heap);
        // Another host's value, near the bottom of a long.
        m.set_replicate(false);
        m.put(b"n", Value::Long(i64::MIN + 10), Ttl::Never, NOW).unwrap();
        m.set_replicate(true);
        // Each addition fits the value, but their sum does not fit a delta.
        assert_eq!(m.add(b"n", i64::MAX, 0, Ttl::Default, NOW), Ok(9));
        assert_eq!(m.unacked_delta(b"n"), i128::from(i64::MAX));
        assert_eq!(m.add(b"n", i64::MAX - 9, 0, Ttl::Default, NOW), Ok(i64::MAX));
        let batch = m.sync_take(100, NOW).unwrap();
        assert_eq!(
            batch.changes,
            vec![change(
                "n",
                Op::Put {
                    value: OwnedValue::Long(i64::MAX),
                    expire: 0
                }
            )]
        );
        assert_eq!(m.unacked_delta(b"n"), 0);
    }
}

#[test]
fn unacknowledged_deltas_in_flight_and_pending_sum_without_wrapping() {
    for kind in KINDS {
        let mut heap = synced(kind, 100);
        let mut m = map(&mut heap);
        m.set_replicate(false);
        m.put(b"n", Value::Long(i64::MIN + 1), Ttl::Never, NOW).unwrap();
        m.set_replicate(true);
        m.add(b"n", i64::MAX, 0, Ttl::Default, NOW).unwrap();
        m.sync_take(100, NOW).unwrap(); // in flight: i64::MAX
        m.add(b"n", i64::MAX, 0, Ttl::Default, NOW).unwrap(); // pending: i64::MAX
        assert_eq!(m.unacked_delta(b"n"), 2 * i128::from(i64::MAX));
    }
}

#[test]
fn applying_remote_changes_records_nothing() {
    for kind in KINDS {
        let mut heap = synced(kind, 100);
        let mut m = map(&mut heap);
        m.set_replicate(false);
        m.add(b"a", 1, 0, Ttl::Default, NOW).unwrap();
        m.put(b"b", Value::Long(1), Ttl::Default, NOW).unwrap();
        m.clear();
        m.set_replicate(true);
        assert_eq!(m.sync_take(100, NOW), None);
    }
}

#[test]
fn the_log_is_bounded_by_the_maps_entries() {
    for kind in KINDS {
        let mut heap = synced(kind, 10);
        let mut m = map(&mut heap);
        for i in 0..25 {
            let key = format!("k{i}");
            let _ = m.put(key.as_bytes(), Value::Long(i), Ttl::Default, NOW);
            m.remove(key.as_bytes(), NOW);
        }
        let stats = m.sync_stats().unwrap();
        assert_eq!(stats.pending, 10);
        assert_eq!(stats.dropped, 30, "15 more keys, a put and a removal each");
        // Keys already in the log still coalesce.
        m.add(b"k0", 1, 0, Ttl::Default, NOW).unwrap();
        assert_eq!(m.sync_stats().unwrap().dropped, 30);
    }
}

#[test]
fn disabling_sync_frees_the_log() {
    for kind in KINDS {
        let mut heap = new_map(kind, 1 << 20, 1000, 0, false);
        let cycle = |heap: &mut shared_map_engine::heap::Heap| {
            let mut m = map(heap);
            m.enable_sync(7).unwrap();
            for i in 0..500 {
                m.add(format!("key-{i}").as_bytes(), 1, 0, Ttl::Default, NOW).unwrap();
            }
            m.clear();
            m.disable_sync();
            assert!(!m.is_synced());
            m.add(b"a", 1, 0, Ttl::Default, NOW).unwrap();
            assert_eq!(m.sync_take(10, NOW), None);
            m.clear();
            m.stats().free_space
        };
        // The slab keeps pages of a size class once used: compare cycles.
        let free = cycle(&mut heap);
        for _ in 0..5 {
            assert_eq!(cycle(&mut heap), free, "nothing leaks");
        }
    }
}

/// One host's writes, replayed through taken and acknowledged batches into a
/// model of the server, leave the server equal to the map, whatever the order of
/// writes, takes, losses of an acknowledgement and acknowledgements.
#[derive(Clone, Debug)]
enum Step {
    Add(u8, i8),
    Put(u8, i8),
    Remove(u8),
    Clear,
    /// Take a batch and deliver it; `lost`: the reply never comes back.
    Flush {
        max: u8,
        lost: bool,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..12, any::<i8>()).prop_map(|(k, d)| Step::Add(k, d)),
        2 => (0u8..12, any::<i8>()).prop_map(|(k, v)| Step::Put(k, v)),
        1 => (0u8..12).prop_map(Step::Remove),
        1 => Just(Step::Clear),
        3 => (1u8..6, any::<bool>()).prop_map(|(max, lost)| Step::Flush { max, lost }),
    ]
}

#[derive(Default)]
struct Server {
    data: HashMap<Vec<u8>, i64>,
    applied: u64,
}

impl Server {
    /// Applies a batch once: a number it already applied changes nothing.
    fn apply(&mut self, batch: &Batch) {
        if batch.seq <= self.applied {
            return;
        }
        self.applied = batch.seq;
        if batch.clear {
            self.data.clear();
        }
        for c in &batch.changes {
            match &c.op {
                Op::Add { delta, .. } => *self.data.entry(c.key.clone()).or_insert(0) += delta,
                Op::Put { value, .. } => {
                    let v = match value {
                        OwnedValue::Long(v) => *v,
                        OwnedValue::Int(v) => *v as i64,
                        OwnedValue::Str(_) => unreachable!(),
                    };
                    self.data.insert(c.key.clone(), v);
                }
                Op::Remove => {
                    self.data.remove(&c.key);
                }
            }
        }
    }
}

proptest! {
    #[test]
    fn the_server_converges_to_the_map(steps in proptest::collection::vec(step(), 1..120)) {
        for kind in KINDS {
            let mut heap = synced(kind, 64);
            let mut m = map(&mut heap);
            let mut server = Server::default();
            for s in &steps {
                match *s {
                    Step::Add(k, d) => { let _ = m.add(&[k], d as i64, 0, Ttl::Never, NOW); }
                    Step::Put(k, v) => { let _ = m.put(&[k], Value::Long(v as i64), Ttl::Never, NOW); }
                    Step::Remove(k) => { m.remove(&[k], NOW); }
                    Step::Clear => m.clear(),
                    Step::Flush { max, lost } => {
                        if let Some(batch) = m.sync_take(max as usize, NOW) {
                            server.apply(&batch);
                            if !lost {
                                prop_assert!(m.sync_ack(batch.seq));
                            }
                        }
                    }
                }
            }
            while let Some(batch) = m.sync_take(5, NOW) {
                server.apply(&batch);
                prop_assert!(m.sync_ack(batch.seq));
            }
            let mut local = HashMap::new();
            m.for_each(b"", NOW, |k, v, _| {
                if let Value::Long(v) = v { local.insert(k.to_vec(), v); }
                true
            });
            prop_assert_eq!(&server.data, &local);
            prop_assert_eq!(m.sync_stats().unwrap().pending, 0);
            prop_assert_eq!(m.sync_stats().unwrap().dropped, 0);
        }
    }
}

#[test]
fn the_replication_status_is_kept_for_every_worker() {
    use shared_map_engine::SyncStatus;
    for kind in KINDS {
        let mut heap = synced(kind, 100);
        let mut m = map(&mut heap);
        m.set_sync_status(&SyncStatus {
            connected: true,
            applied: 3,
            lag_ms: Some(12),
            error: None,
        });
        m.set_sync_status(&SyncStatus {
            connected: true,
            applied: 2,
            lag_ms: None,
            error: None,
        });
        let long = vec![b'e'; 500];
        m.set_sync_status(&SyncStatus {
            connected: false,
            applied: 0,
            lag_ms: None,
            error: Some(&long),
        });
        let stats = m.sync_stats().unwrap();
        assert_eq!((stats.connected, stats.applied, stats.lag_ms), (false, 5, 12));
        assert_eq!(stats.last_error.len(), 160, "a long error is cut");
    }
}

/// Slab bytes free in the map's arena.
fn free(m: &mut shared_map_engine::Map<'_, shared_map_engine::heap::Heap>) -> u64 {
    m.stats().free_space
}

#[test]
fn the_log_reports_the_space_it_takes() {
    for kind in KINDS {
        // The same 10,000 counters with 16-byte keys, without and with a log
        // waiting for an unreachable server: the difference is the log's.
        let taken = |synced: bool| {
            let mut heap = new_map(kind, 16 << 20, 20_000, 0, false);
            let mut m = map(&mut heap);
            if synced {
                m.enable_sync(7).unwrap();
            }
            let start = free(&mut m);
            for i in 0..10_000 {
                m.add(format!("key-{i:012}").as_bytes(), 1, 0, Ttl::Default, NOW)
                    .unwrap();
            }
            let bytes = m.sync_stats().map(|s| s.bytes);
            (start - free(&mut m), bytes)
        };
        let (plain, _) = taken(false);
        let (with_log, bytes) = taken(true);
        let bytes = bytes.unwrap();
        // 48 + 16 bytes each, a 64-byte chunk, and the log's header and index
        // (8 bytes per 4 entries of the map, a power of two: 64k here).
        assert!(
            (10_000 * 64..10_000 * 64 + 128 * 1024).contains(&bytes),
            "{kind:?}: {bytes}"
        );
        let measured = with_log - plain;
        let diff = measured.abs_diff(10_000 * 64) as f64 / (10_000 * 64) as f64;
        assert!(
            diff < 0.05,
            "{kind:?}: the log reported {bytes} bytes, the slab gave {measured}"
        );
    }
}

#[test]
fn an_acknowledged_batch_returns_the_logs_space() {
    for kind in KINDS {
        let mut heap = synced(kind, 20_000);
        let mut m = map(&mut heap);
        let empty = m.sync_stats().unwrap().bytes;
        for i in 0..1000 {
            m.add(format!("key-{i:012}").as_bytes(), 1, 0, Ttl::Default, NOW)
                .unwrap();
        }
        assert_eq!(m.sync_stats().unwrap().bytes, empty + 1000 * 64);
        let batch = m.sync_take(100_000, NOW).unwrap();
        assert!(m.sync_ack(batch.seq));
        assert_eq!(m.sync_stats().unwrap().bytes, empty);
    }
}

#[test]
fn a_synced_map_sized_as_docs_replication_says_takes_all_its_entries_while_unreachable() {
    // docs/replication.md: 136 bytes per entry for tinymap counters with 16-byte keys
    // (48 for the entry and key, about 11 for the buckets, 64 for the log's
    // entry, 3 for its index, the slab's bitmaps), and 64k for the rest.
    const N: u64 = 100_000;
    let space = (N * 136) as usize + (64 << 10);
    let mut heap = new_map(shared_map_engine::MapKind::Tiny, space, N, 0, false);
    let mut m = map(&mut heap);
    m.enable_sync(7).unwrap();
    for i in 0..N {
        m.add(format!("key-{i:012}").as_bytes(), 1, 0, Ttl::Default, NOW)
            .unwrap_or_else(|e| panic!("key {i} refused: {e:?}"));
    }
    let stats = m.sync_stats().unwrap();
    assert_eq!((stats.pending, stats.dropped), (N, 0));
    assert!(stats.bytes >= N * 64);
}
