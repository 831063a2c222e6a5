//! Reads by key that leave the map as it was (peeks, stale reads), and the
//! exchange: a put that answers the previous value.

mod common;

use std::collections::HashSet;

use common::{map, new_map, SharedHeap, KINDS};
use shared_map_engine::{Hit, MapKind, OwnedValue, Read, Ttl, Value};

const PEEK: Read = Read {
    touch: false,
    stale: false,
};
const GET: Read = Read {
    touch: true,
    stale: false,
};
const STALE: Read = Read {
    touch: false,
    stale: true,
};

fn hit(value: Value<'_>, stale: bool) -> Option<Hit<'_>> {
    Some(Hit {
        key: b"k",
        value,
        stale,
    })
}

#[test]
fn a_key_only_peeked_at_is_evicted_before_keys_read_since() {
    for kind in KINDS {
        // Four entries: eviction samples all of them, so it is exact LRU.
        let mut heap = new_map(kind, 1 << 20, 4, 0, true);
        let mut m = map(&mut heap);
        for k in [b"a", b"b", b"c", b"d"] {
            m.put(k, Value::Long(1), Ttl::Default, 0).unwrap();
        }
        for k in [b"b", b"c", b"d"] {
            assert!(m.read_match(k, 0, GET).is_some());
        }
        for _ in 0..10 {
            assert!(m.read_match(b"a", 0, PEEK).is_some(), "{kind:?}");
        }
        m.put(b"e", Value::Long(1), Ttl::Default, 0).unwrap();
        assert_eq!(m.peek(b"a", 0), None, "{kind:?}: the peeked key went first");
        for k in [b"b", b"c", b"d", b"e"] {
            assert!(m.peek(k, 0).is_some(), "{kind:?}");
        }
        // The same with reads that mark the entry: `b` is now the oldest.
        assert!(m.read_match(b"c", 0, GET).is_some());
        assert!(m.read_match(b"d", 0, GET).is_some());
        assert!(m.read_match(b"b", 0, GET).is_some());
        m.put(b"f", Value::Long(1), Ttl::Default, 0).unwrap();
        assert_eq!(m.peek(b"e", 0), None, "{kind:?}: the key not read since went");
        assert!(m.peek(b"b", 0).is_some(), "{kind:?}");
    }
}

#[test]
fn peeks_count_hits_and_misses() {
    for kind in KINDS {
        let mut heap = new_map(kind, 1 << 20, 100, 0, false);
        let mut m = map(&mut heap);
        m.put(b"k", Value::Int(1), Ttl::Default, 0).unwrap();
        assert_eq!(m.read_match(b"k", 0, PEEK), hit(Value::Int(1), false));
        assert_eq!(m.read_match(b"x", 0, PEEK), None);
        let s = m.stats();
        assert_eq!((s.hits, s.misses), (1, 1), "{kind:?}");
    }
}

#[test]
fn an_expired_entry_is_read_stale_until_it_is_swept() {
    for kind in KINDS {
        let mut heap = new_map(kind, 1 << 20, 100, 0, false);
        let mut m = map(&mut heap);
        m.put(b"k", Value::Str(b"old"), Ttl::Secs(10), 100).unwrap();
        assert_eq!(m.read_match(b"k", 110, STALE), hit(Value::Str(b"old"), false));
        assert_eq!(m.read_match(b"k", 111, STALE), hit(Value::Str(b"old"), true));
        // Ordinary reads find nothing and leave it in place.
        assert_eq!(m.get(b"k", 111), None);
        assert_eq!(m.peek(b"k", 111), None);
        assert_eq!(m.read_match(b"k", 111, GET), None);
        assert_eq!(m.peek_with_expiry(b"k", 111), None);
        assert_eq!(m.len(), 1, "{kind:?}: no read removes");
        assert_eq!(m.read_match(b"k", 500, STALE), hit(Value::Str(b"old"), true));
        assert_eq!(m.sweep(500, 1 << 20), 1);
        assert_eq!(m.read_match(b"k", 500, STALE), None, "{kind:?}: gone once swept");
        assert_eq!(m.stats().expirations, 1);
    }
}

#[test]
fn a_write_to_the_key_ends_its_stale_value() {
    for kind in KINDS {
        let mut heap = new_map(kind, 1 << 20, 100, 0, false);
        let mut m = map(&mut heap);
        m.put(b"k", Value::Long(7), Ttl::Secs(1), 100).unwrap();
        assert_eq!(
            m.put(b"k", Value::Long(8), Ttl::Secs(1), 102),
            Ok(None),
            "an expired value is no value"
        );
        assert_eq!(m.read_match(b"k", 102, STALE), hit(Value::Long(8), false));
        assert_eq!(
            m.add(b"k", 1, 0, Ttl::Secs(1), 104),
            Ok(1),
            "an expired counter starts again"
        );
        assert_eq!(m.remove(b"k", 106), None, "an expired key is absent to a removal");
        assert_eq!(m.read_match(b"k", 106, STALE), None, "{kind:?}");
    }
}

#[test]
fn a_full_map_reclaims_expired_entries_before_stale_reads_see_them() {
    for kind in KINDS {
        let mut heap = new_map(kind, 1 << 20, 2, 0, false);
        let mut m = map(&mut heap);
        m.put(b"k", Value::Long(1), Ttl::Secs(1), 100).unwrap();
        m.put(b"live", Value::Long(1), Ttl::Never, 100).unwrap();
        m.put(b"other", Value::Long(1), Ttl::Never, 101).unwrap_err();
        assert!(m.read_match(b"k", 101, STALE).is_some(), "{kind:?}: not expired yet");
        m.put(b"other", Value::Long(1), Ttl::Never, 102).unwrap();
        assert_eq!(m.read_match(b"k", 102, STALE), None, "{kind:?}: its room was taken");
    }
}

#[test]
fn put_answers_the_previous_value_of_every_type() {
    for kind in KINDS {
        let mut heap = new_map(kind, 1 << 20, 100, 0, false);
        let mut m = map(&mut heap);
        let steps: [(Value<'_>, Option<OwnedValue>); 5] = [
            (Value::Int(1), None),
            (Value::Int(2), Some(OwnedValue::Int(1))),
            (Value::Str(b"three"), Some(OwnedValue::Int(2))),
            (Value::Str(b"four"), Some(OwnedValue::Str(b"three".to_vec()))),
            (Value::Long(5), Some(OwnedValue::Str(b"four".to_vec()))),
        ];
        for (value, previous) in steps {
            assert_eq!(m.put(b"k", value, Ttl::Default, 0), Ok(previous), "{kind:?}");
        }
        assert_eq!(m.get(b"k", 0), Some(Value::Long(5)));
    }
}

const PROCS: usize = 4;
const ROUNDS: usize = 2000;

/// Forked processes exchange values of their own into one key; each answered
/// previous value is recorded under `seen:VALUE` in the same hold of the lock
/// (a second answer of one value would find it there).
fn exchange_in_processes(kind: MapKind) {
    let mut shared = SharedHeap::new(kind, 16 << 20, 20_000, false);
    map(&mut shared.heap)
        .put(b"x", Value::Str(b"initial"), Ttl::Default, 0)
        .unwrap();
    let children: Vec<_> = (0..PROCS)
        .map(|p| {
            common::fork_child(|| {
                let mut heap = shared.open_in_child();
                for i in 0..ROUNDS {
                    let mine = format!("{p}-{i}");
                    let _guard = heap.lock();
                    let mut m = map(&mut heap);
                    let Ok(Some(OwnedValue::Str(prev))) = m.put(b"x", Value::Str(mine.as_bytes()), Ttl::Default, 0)
                    else {
                        panic!("no previous value");
                    };
                    let seen = [b"seen:".as_slice(), &prev].concat();
                    m.put_if_absent(&seen, Value::Int(1), Ttl::Default, 0)
                        .expect("each previous value is answered once");
                }
            })
        })
        .collect();
    for pid in children {
        common::wait_ok(pid);
    }
    let mut m = map(&mut shared.heap);
    let mut answered = HashSet::new();
    m.for_each(b"seen:", 0, |k, _, _| answered.insert(k[5..].to_vec()));
    let Some(Value::Str(last)) = m.get(b"x", 0) else {
        panic!("no final value")
    };
    answered.insert(last.to_vec());
    let mut written: HashSet<Vec<u8>> = (0..PROCS)
        .flat_map(|p| (0..ROUNDS).map(move |i| format!("{p}-{i}").into_bytes()))
        .collect();
    written.insert(b"initial".to_vec());
    assert_eq!(answered.len(), PROCS * ROUNDS + 1);
    assert_eq!(answered, written);
}

#[test]
fn concurrent_exchanges_answer_each_previous_value_once_in_a_tinymap() {
    exchange_in_processes(MapKind::Tiny);
}

#[test]
fn concurrent_exchanges_answer_each_previous_value_once_in_a_hashmap() {
    exchange_in_processes(MapKind::Hash);
}
