//! Counting into and reading present keys without the lock: what it does, and
//! that it stays exact and never reads freed memory while other processes
//! remove, re-insert and evict the same keys under the lock.

mod common;

use common::{SharedHeap, KINDS};
use shared_map_engine::heap::Heap;
use shared_map_engine::{Error, Lockless, MapKind, Reader, Ttl, Value};

/// A lock-free handle on the map at the heap's root.
fn lockless<'r>(heap: &Heap, reader: &'r Reader) -> Option<Lockless<'r>> {
    use shared_map_engine::Arena;
    // SAFETY: the heap's region stays mapped while the handle lives; its root
    // came from `Map::create`.
    unsafe { Lockless::open(heap.base(), heap.size(), heap.root(), reader) }
}

#[test]
fn a_present_number_counts_without_the_lock() {
    for kind in KINDS {
        let mut heap = common::new_map(kind, 1 << 20, 100, 0, false);
        let reader = Reader::new();
        {
            let mut m = common::map(&mut heap);
            m.add(b"hits", 5, 0, Ttl::Never, 10).unwrap();
            m.put(b"int", Value::Int(i32::MAX - 1), Ttl::Never, 10).unwrap();
            m.put(b"s", Value::Str(b"text"), Ttl::Never, 10).unwrap();
            m.add(b"short", 1, 0, Ttl::Secs(1), 10).unwrap();
        }
        let l = lockless(&heap, &reader).expect("a plain map is open to lock-free counting");
        assert_eq!(l.add(b"hits", 2, 10), Some(Ok(7)));
        assert_eq!(l.add(b"hits", -10, 10), Some(Ok(-3)));
        assert_eq!(l.add(b"int", 1, 10), Some(Ok(i32::MAX as i64)));
        assert_eq!(l.add(b"int", 1, 10), Some(Err(Error::Overflow)), "an int stays an int");
        assert_eq!(l.add(b"absent", 1, 10), None, "an insert takes the lock");
        assert_eq!(l.add(b"s", 1, 10), None, "a string takes the lock, which refuses it");
        assert_eq!(l.add(b"short", 1, 11), Some(Ok(2)));
        assert_eq!(l.add(b"short", 1, 12), None, "an expired entry takes the lock");
        assert_eq!(
            l.get(b"s", 10, |v, _| v.to_owned()),
            Some(Value::Str(b"text").to_owned())
        );
        assert_eq!(
            l.get(b"hits", 10, |v, e| (v.to_owned(), e)),
            Some((Value::Long(-3).to_owned(), 0))
        );
        assert_eq!(l.get(b"short", 12, |v, _| v.to_owned()), None);
        let mut m = common::map(&mut heap);
        assert_eq!(m.get(b"hits", 10), Some(Value::Long(-3)));
        assert_eq!(m.get(b"int", 10), Some(Value::Int(i32::MAX)));
    }
}

#[test]
fn a_lock_free_read_counts_a_hit_and_marks_the_entry_used_unless_a_peek() {
    let mut heap = common::new_map(MapKind::Tiny, 1 << 20, 100, 0, false);
    let reader = Reader::new();
    common::map(&mut heap).put(b"k", Value::Long(7), Ttl::Never, 1).unwrap();
    let hits = common::map(&mut heap).stats().hits;
    let l = lockless(&heap, &reader).unwrap();
    assert_eq!(
        l.read(b"k", 1, false, |v, _| v.to_owned()),
        Some(Value::Long(7).to_owned())
    );
    assert_eq!(common::map(&mut heap).stats().hits, hits, "a peek counts nothing");
    let l = lockless(&heap, &reader).unwrap();
    assert_eq!(l.get(b"k", 1, |v, _| v.to_owned()), Some(Value::Long(7).to_owned()));
    let misses = common::map(&mut heap).stats().misses;
    assert_eq!(l.get(b"absent", 1, |v, _| v.to_owned()), None);
    let stats = common::map(&mut heap).stats();
    assert_eq!((stats.hits, stats.misses), (hits + 1, misses + 1));
}

#[test]
fn a_lock_free_read_as_the_api_makes_it_counts_the_hit_only() {
    for kind in KINDS {
        let mut heap = common::new_map(kind, 1 << 20, 100, 0, false);
        let reader = Reader::new();
        let etag_key = {
            let mut m = common::map(&mut heap);
            m.put(b"k", Value::Str(b"text"), Ttl::Secs(10), 1).unwrap();
            m.put(b"short", Value::Long(1), Ttl::Secs(1), 1).unwrap();
            m.etag_key()
        };
        let before = common::map(&mut heap).stats();
        let l = lockless(&heap, &reader).unwrap();
        assert_eq!(l.etag_key(), etag_key, "the ETag key is the locked map's");
        assert_eq!(
            l.read_counted(b"k", 1, |v, e| (v.to_owned(), e)),
            Some((Value::Str(b"text").to_owned(), 11)),
            "the value with its expiry time"
        );
        assert_eq!(l.read_counted(b"absent", 1, |_, _| ()), None);
        assert_eq!(
            l.read_counted(b"short", 3, |_, _| ()),
            None,
            "an expired entry is left to the lock"
        );
        let after = common::map(&mut heap).stats();
        assert_eq!(
            (after.hits, after.misses),
            (before.hits + 1, before.misses),
            "a miss is counted by the caller's locked retry, not here"
        );
    }
}

/// A peek leaves the entry's recency: the entry read only this way is the
/// least recently used, and an eviction takes it.
#[test]
fn a_lock_free_counted_read_leaves_the_recency_alone() {
    for kind in KINDS {
        let mut heap = common::new_map(kind, 1 << 20, 2, 0, true);
        let reader = Reader::new();
        {
            let mut m = common::map(&mut heap);
            m.put(b"a", Value::Long(1), Ttl::Never, 1).unwrap();
            m.put(b"b", Value::Long(1), Ttl::Never, 1).unwrap();
        }
        let l = lockless(&heap, &reader).unwrap();
        assert!(l.read_counted(b"a", 1, |_, _| ()).is_some());
        let mut m = common::map(&mut heap);
        m.put(b"c", Value::Long(1), Ttl::Never, 1).unwrap();
        assert_eq!(m.peek(b"a", 1), None, "a, only peeked at, goes");
        assert!(m.peek(b"b", 1).is_some());
    }
}

#[test]
fn a_lock_free_renewal_slides_the_expiry_as_under_the_lock() {
    for kind in KINDS {
        let mut heap = common::new_map(kind, 1 << 20, 100, 0, false);
        let reader = Reader::new();
        {
            let mut m = common::map(&mut heap);
            m.put(b"s", Value::Str(b"data"), Ttl::Secs(30), 100).unwrap();
            m.put(b"near", Value::Str(b"data"), Ttl::Secs(1), 100).unwrap();
            m.put(b"gone", Value::Str(b"data"), Ttl::Secs(1), 100).unwrap();
        }
        let before = common::map(&mut heap).stats();
        let l = lockless(&heap, &reader).unwrap();
        assert_eq!(
            l.get_renew(b"s", Ttl::Secs(30), 110, |v| v.to_owned()),
            Some(Value::Str(b"data").to_owned())
        );
        assert_eq!(
            common::map(&mut heap).peek_with_expiry(b"s", 110).map(|(_, e)| e),
            Some(140),
            "renewed to 30 s from now"
        );
        let l = lockless(&heap, &reader).unwrap();
        assert_eq!(
            l.get_renew(b"near", Ttl::Secs(30), 100, |_| ()),
            None,
            "an entry near its expiry is renewed under the lock"
        );
        assert_eq!(l.get_renew(b"gone", Ttl::Secs(30), 102, |_| ()), None, "expired");
        assert_eq!(l.get_renew(b"absent", Ttl::Secs(30), 100, |_| ()), None);
        assert_eq!(
            l.get_renew(b"s", Ttl::Default, 110, |_| ()),
            None,
            "the map's timeout is read under the lock"
        );
        let after = common::map(&mut heap).stats();
        assert_eq!(
            (after.hits, after.misses),
            (before.hits + 1, before.misses),
            "one hit; misses are the locked retry's"
        );
    }
}

/// A renewal gives an entry that never expired an expiry: the sweep, which
/// skips a map where nothing ever expired, then takes it when it expires.
#[test]
fn a_lock_free_renewal_makes_the_sweep_look() {
    for kind in KINDS {
        let mut heap = common::new_map(kind, 1 << 20, 100, 0, false);
        let reader = Reader::new();
        common::map(&mut heap)
            .put(b"s", Value::Str(b"data"), Ttl::Never, 1)
            .unwrap();
        let l = lockless(&heap, &reader).unwrap();
        assert!(l.get_renew(b"s", Ttl::Secs(5), 1, |_| ()).is_some());
        let mut m = common::map(&mut heap);
        let buckets = m.buckets();
        assert_eq!(m.sweep(7, buckets), 1, "swept once expired");
        assert_eq!(m.peek(b"s", 7), None);
    }
}

#[test]
fn lock_free_counting_changes_the_generation() {
    let mut heap = common::new_map(MapKind::Hash, 1 << 20, 100, 0, false);
    let reader = Reader::new();
    common::map(&mut heap).add(b"k", 1, 0, Ttl::Never, 1).unwrap();
    let before = common::map(&mut heap).generation();
    lockless(&heap, &reader).unwrap().add(b"k", 1, 1).unwrap().unwrap();
    assert_ne!(common::map(&mut heap).generation(), before, "a saver sees the change");
}

#[test]
fn a_closed_map_counts_under_the_lock() {
    let mut heap = common::new_map(MapKind::Hash, 1 << 20, 100, 0, false);
    let reader = Reader::new();
    common::map(&mut heap).add(b"k", 1, 0, Ttl::Never, 1).unwrap();
    let open = lockless(&heap, &reader).unwrap();
    common::map(&mut heap).close_lockless();
    assert_eq!(
        open.add(b"k", 1, 1),
        None,
        "a handle opened before the close takes the lock too"
    );
    assert!(lockless(&heap, &reader).is_none());
}

#[test]
fn a_synced_map_counts_under_the_lock() {
    let mut heap = common::new_map(MapKind::Hash, 1 << 20, 100, 0, false);
    common::map(&mut heap).enable_sync(1).unwrap();
    assert!(lockless(&heap, &Reader::new()).is_none());
}

const PROCS: usize = 2;
const ROUNDS: i64 = 100_000;
/// Keys counted by everyone and never removed.
const STABLE: usize = 8;
/// Keys removed, re-inserted and evicted while others read and count them.
const CHURNED: usize = 8;

/// The one value a churned key ever holds, so a read of anything else is a
/// torn value or freed memory.
fn churned_value(k: usize) -> Vec<u8> {
    format!("value of churned key {k} ").repeat(k + 1).into_bytes()
}

/// Counters and readers without the lock, against writers that remove and
/// re-insert the churned keys and evict (a map of few buckets, so chains are
/// shared): the stable counters come out exact, and every read of a churned
/// key is its one value. Freed chunks are filled with a canary by the test
/// heap, so a use after free shows as a wrong value or a lost count.
fn stress(kind: MapKind) {
    let shared = SharedHeap::new(kind, 4 << 20, 64, true);
    let counters: Vec<_> = (0..PROCS)
        .map(|p| {
            common::fork_child(|| {
                let mut heap = shared.open_in_child();
                let reader = Reader::new();
                for i in 0..ROUNDS {
                    let key = format!("stable-{}", (i as usize + p) % STABLE);
                    let counted = lockless(&heap, &reader).and_then(|l| l.add(key.as_bytes(), 1, 0));
                    match counted {
                        Some(r) => {
                            r.unwrap();
                        }
                        None => {
                            let _guard = heap.lock();
                            common::map(&mut heap).add(key.as_bytes(), 1, 0, Ttl::Never, 0).unwrap();
                        }
                    }
                    let k = i as usize % CHURNED;
                    let want = churned_value(k);
                    if let Some(l) = lockless(&heap, &reader) {
                        let key = format!("churned-{k}");
                        // Every kind of lock-free read: the variables', the
                        // API's, and a session's renewing one.
                        let got = match i % 3 {
                            0 => l.get(key.as_bytes(), 0, |v, _| v.to_owned()),
                            1 => l.read_counted(key.as_bytes(), 0, |v, _| v.to_owned()),
                            _ => l.get_renew(key.as_bytes(), Ttl::Secs(1000), 0, |v| v.to_owned()),
                        };
                        if let Some(v) = got {
                            assert_eq!(v, Value::Str(&want).to_owned(), "churned-{k} read torn or freed");
                        }
                    }
                }
            })
        })
        .collect();
    let writer = common::fork_child(|| {
        let mut heap = shared.open_in_child();
        for i in 0..ROUNDS / 4 {
            let k = i as usize % CHURNED;
            let key = format!("churned-{k}");
            let _guard = heap.lock();
            let mut m = common::map(&mut heap);
            if i % 3 == 0 {
                m.remove(key.as_bytes(), 0);
            } else {
                m.put(key.as_bytes(), Value::Str(&churned_value(k)), Ttl::Never, 0)
                    .unwrap();
            }
            // Filler keys fill the map past its entries limit: evictions.
            let _ = m.add(format!("filler-{i}").as_bytes(), 1, 0, Ttl::Never, 0);
        }
    });
    for pid in counters.into_iter().chain([writer]) {
        common::wait_ok(pid);
    }
    let mut heap = shared.open_in_child();
    let mut m = common::map(&mut heap);
    let mut total = 0;
    for k in 0..STABLE {
        // Evicted stable keys lose their count: a map of 64 entries keeps
        // the most recently used, and the stable keys are counted all along.
        if let Some(Value::Long(v)) = m.peek(format!("stable-{k}").as_bytes(), 0) {
            total += v;
        }
    }
    assert!(total <= PROCS as i64 * ROUNDS);
    m.verify().unwrap();
}

#[test]
fn lock_free_readers_and_counters_survive_removals_and_evictions_in_a_tinymap() {
    stress(MapKind::Tiny);
}

#[test]
fn lock_free_readers_and_counters_survive_removals_and_evictions_in_a_hashmap() {
    stress(MapKind::Hash);
}

/// `PROCS` forked processes, each adding 1 `rounds` times to key `key(round,
/// process)`: without the lock, or under it when the key is absent.
fn counters(shared: &SharedHeap, rounds: i64, key: impl Fn(i64, usize) -> String) -> Vec<libc::pid_t> {
    (0..PROCS)
        .map(|p| {
            common::fork_child(|| {
                let mut heap = shared.open_in_child();
                let reader = Reader::new();
                for i in 0..rounds {
                    let key = key(i, p);
                    match lockless(&heap, &reader).and_then(|l| l.add(key.as_bytes(), 1, 0)) {
                        Some(r) => {
                            r.unwrap();
                        }
                        None => {
                            let _guard = heap.lock();
                            common::map(&mut heap).add(key.as_bytes(), 1, 0, Ttl::Never, 0).unwrap();
                        }
                    }
                }
            })
        })
        .collect()
}

/// Counters only, with removals of other keys in the same chains: exact.
#[test]
fn lock_free_counts_are_exact_beside_removals() {
    for kind in KINDS {
        let shared = SharedHeap::new(kind, 4 << 20, 10_000, false);
        let pids: Vec<_> = counters(&shared, ROUNDS, |i, p| format!("stable-{}", (i as usize + p) % STABLE))
            .into_iter()
            .chain([common::fork_child(|| {
                let mut heap = shared.open_in_child();
                for i in 0..ROUNDS {
                    let _guard = heap.lock();
                    let mut m = common::map(&mut heap);
                    let key = format!("other-{}", i % 50);
                    if m.remove(key.as_bytes(), 0).is_none() {
                        m.put(key.as_bytes(), Value::Str(b"x"), Ttl::Never, 0).unwrap();
                    }
                }
            })])
            .collect();
        for pid in pids {
            common::wait_ok(pid);
        }
        let mut heap = shared.open_in_child();
        let mut m = common::map(&mut heap);
        let total: i64 = (0..STABLE)
            .map(|k| match m.get(format!("stable-{k}").as_bytes(), 0) {
                Some(Value::Long(v)) => v,
                other => panic!("stable-{k}: {other:?}"),
            })
            .sum();
        assert_eq!(total, PROCS as i64 * ROUNDS, "no count lost");
        m.verify().unwrap();
    }
}

/// Counters and removals of the same keys: what a removal answers holds every
/// count that found the entry, so the counts answered add up exactly to what
/// the removals took plus what is left.
#[test]
fn a_removal_answers_every_lock_free_count_into_the_entry() {
    const KEYS: usize = 4;
    // The race is a few instructions wide: enough rounds to meet it (without
    // the grace period before the read, one run in three met it).
    const ROUNDS: i64 = 4 * self::ROUNDS;
    for kind in KINDS.into_iter().cycle().take(3 * KINDS.len()) {
        let shared = SharedHeap::new(kind, 4 << 20, 10_000, false);
        let pids: Vec<_> = counters(&shared, ROUNDS, |i, p| format!("k-{}", (i as usize + p) % KEYS))
            .into_iter()
            .chain([common::fork_child(|| {
                let mut heap = shared.open_in_child();
                for i in 0..ROUNDS {
                    let _guard = heap.lock();
                    let mut m = common::map(&mut heap);
                    let key = format!("k-{}", i as usize % KEYS);
                    if let Some(v) = m.remove(key.as_bytes(), 0) {
                        let Value::Long(v) = v.as_value() else {
                            panic!("{key}: {v:?}")
                        };
                        m.add(b"removed", v, 0, Ttl::Never, 0).unwrap();
                    }
                }
            })])
            .collect();
        for pid in pids {
            common::wait_ok(pid);
        }
        let mut heap = shared.open_in_child();
        let mut m = common::map(&mut heap);
        let long = |m: &mut shared_map_engine::Map<'_, _>, key: &str| match m.get(key.as_bytes(), 0) {
            Some(Value::Long(v)) => v,
            None => 0,
            other => panic!("{key}: {other:?}"),
        };
        let left: i64 = (0..KEYS).map(|k| long(&mut m, &format!("k-{k}"))).sum();
        let removed = long(&mut m, "removed");
        assert_eq!(
            left + removed,
            PROCS as i64 * ROUNDS,
            "every count is left or was removed"
        );
        m.verify().unwrap();
    }
}

/// A process killed inside lock-free counting (at any instant of a tight
/// loop) does not block the next free for ever: the waiter finds it dead.
#[test]
fn a_reader_killed_at_any_instant_does_not_block_frees() {
    for kind in KINDS {
        let mut shared = SharedHeap::new(kind, 4 << 20, 1000, false);
        {
            let mut m = common::map(&mut shared.heap);
            m.add(b"hot", 1, 0, Ttl::Never, 0).unwrap();
            m.put(b"gone", Value::Long(1), Ttl::Never, 0).unwrap();
        }
        let pid = common::fork_child(|| {
            let heap = shared.open_in_child();
            let reader = Reader::new();
            loop {
                if let Some(l) = lockless(&heap, &reader) {
                    let _ = l.add(b"hot", 1, 0);
                }
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        // SAFETY: our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        let done = std::time::Instant::now();
        let mut m = common::map(&mut shared.heap);
        assert!(m.remove(b"gone", 0).is_some(), "the free after the removal returns");
        assert!(done.elapsed() < std::time::Duration::from_secs(5));
        m.verify().unwrap();
    }
}

/// Lock-free uses keep their order for eviction, and an insert after them is
/// the newest: the one key not read since goes.
#[test]
fn eviction_keeps_the_order_of_lock_free_uses() {
    for kind in KINDS {
        let mut heap = common::new_map(kind, 1 << 20, 3, 0, true);
        let reader = Reader::new();
        {
            let mut m = common::map(&mut heap);
            for k in [b"a", b"b", b"c"] {
                m.put(k, Value::Long(1), Ttl::Never, 1).unwrap();
            }
        }
        let l = lockless(&heap, &reader).unwrap();
        assert!(l.get(b"b", 1, |_, _| ()).is_some());
        assert_eq!(l.add(b"a", 1, 1), Some(Ok(2)));
        assert!(l.get(b"c", 1, |_, _| ()).is_some());
        let mut m = common::map(&mut heap);
        m.put(b"d", Value::Long(1), Ttl::Never, 1).unwrap();
        assert_eq!(m.peek(b"b", 1), None, "b, used first, goes");
        m.put(b"e", Value::Long(1), Ttl::Never, 1).unwrap();
        assert_eq!(m.peek(b"a", 1), None, "then a");
        assert!(m.peek(b"c", 1).is_some() && m.peek(b"d", 1).is_some() && m.peek(b"e", 1).is_some());
    }
}
