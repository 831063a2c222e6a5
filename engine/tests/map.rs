//! The map operations' contract, for both map types.

mod common;

use common::{map, new_map, KINDS};
use shared_map_engine::{Error, OwnedValue, Ttl, Value, ValueType};

#[test]
fn get_put_remove_round_trip() {
    for kind in KINDS {
        let mut heap = new_map(kind, 1 << 20, 1000, 0, false);
        let mut m = map(&mut heap);
        assert_eq!(m.get(b"a", 0), None);
        assert_eq!(m.put(b"a", Value::Long(5), Ttl::Default, 0), Ok(None));
        assert_eq!(m.get(b"a", 0), Some(Value::Long(5)));
        assert_eq!(
            m.put(b"a", Value::Str(b"five"), Ttl::Default, 0),
            Ok(Some(OwnedValue::Long(5)))
        );
        assert_eq!(m.get(b"a", 0), Some(Value::Str(b"five")));
        assert_eq!(
            m.put(b"a", Value::Str(b"longer than before"), Ttl::Default, 0),
            Ok(Some(OwnedValue::Str(b"five".to_vec())))
        );
        assert_eq!(
            m.put(b"a", Value::Int(-3), Ttl::Default, 0).unwrap(),
            Some(OwnedValue::Str(b"longer than before".to_vec()))
        );
        assert_eq!(m.get(b"a", 0), Some(Value::Int(-3)));
        assert_eq!(m.len(), 1);
        assert_eq!(m.remove(b"a", 0), Some(OwnedValue::Int(-3)));
        assert_eq!(m.remove(b"a", 0), None);
        assert_eq!(m.len(), 0);
        let s = m.stats();
        assert_eq!((s.hits, s.misses), (3, 1), "{kind:?}");
    }
}

#[test]
fn binary_and_empty_keys_and_values() {
    for kind in KINDS {
        let mut heap = new_map(kind, 1 << 20, 1000, 0, false);
        let mut m = map(&mut heap);
        let key = b"\0/ \xff\xfe key";
        m.put(key, Value::Str(b"\0\r\n"), Ttl::Default, 0).unwrap();
        m.put(b"", Value::Str(b""), Ttl::Default, 0).unwrap();
        assert_eq!(m.get(key, 0), Some(Value::Str(b"\0\r\n")));
        assert_eq!(m.get(b"", 0), Some(Value::Str(b"")));
        assert_eq!(m.get(b"\0/ \xff\xfe ke", 0), None);
    }
}

#[test]
fn put_if_absent_and_replace() {
    for kind in KINDS {
        let mut heap = new_map(kind, 1 << 20, 1000, 0, false);
        let mut m = map(&mut heap);
        assert_eq!(m.replace(b"k", Value::Int(1), Ttl::Default, 0), Err(Error::NotFound));
        assert_eq!(m.put_if_absent(b"k", Value::Int(1), Ttl::Default, 0), Ok(()));
        assert_eq!(
            m.put_if_absent(b"k", Value::Int(2), Ttl::Default, 0),
            Err(Error::Exists)
        );
        assert_eq!(m.get(b"k", 0), Some(Value::Int(1)));
        assert_eq!(m.replace(b"k", Value::Long(7), Ttl::Default, 0), Ok(OwnedValue::Int(1)));
        assert_eq!(m.get(b"k", 0), Some(Value::Long(7)));
    }
}

#[test]
fn add_initialises_counts_and_refuses_overflow_and_strings() {
    for kind in KINDS {
        let mut heap = new_map(kind, 1 << 20, 1000, 0, false);
        let mut m = map(&mut heap);
        assert_eq!(m.add(b"c", 1, 0, Ttl::Default, 0), Ok(1));
        assert_eq!(m.add(b"c", 1, 0, Ttl::Default, 0), Ok(2));
        assert_eq!(m.add(b"c", -5, 0, Ttl::Default, 0), Ok(-3));
        assert_eq!(m.add(b"d", 2, 10, Ttl::Default, 0), Ok(12));
        assert_eq!(m.get(b"d", 0), Some(Value::Long(12)));

        m.put(b"max", Value::Long(i64::MAX), Ttl::Default, 0).unwrap();
        assert_eq!(m.add(b"max", 1, 0, Ttl::Default, 0), Err(Error::Overflow));
        assert_eq!(m.get(b"max", 0), Some(Value::Long(i64::MAX)));
        assert_eq!(m.add(b"new", 1, i64::MAX, Ttl::Default, 0), Err(Error::Overflow));
        assert_eq!(m.get(b"new", 0), None);

        m.put(b"i", Value::Int(i32::MAX - 1), Ttl::Default, 0).unwrap();
        assert_eq!(m.add(b"i", 1, 0, Ttl::Default, 0), Ok(i32::MAX as i64));
        assert_eq!(m.add(b"i", 1, 0, Ttl::Default, 0), Err(Error::Overflow));
        assert_eq!(m.get(b"i", 0), Some(Value::Int(i32::MAX)));

        m.put(b"s", Value::Str(b"text"), Ttl::Default, 0).unwrap();
        assert_eq!(m.add(b"s", 1, 0, Ttl::Default, 0), Err(Error::TypeConflict));
        assert_eq!(m.get(b"s", 0), Some(Value::Str(b"text")));
    }
}

#[test]
fn entries_limit_refuses_without_evict_and_changes_nothing() {
    for kind in KINDS {
        let mut heap = new_map(kind, 1 << 20, 4, 0, false);
        let mut m = map(&mut heap);
        for i in 0..4u8 {
            m.add(&[i], 1, 0, Ttl::Default, 0).unwrap();
        }
        assert_eq!(m.add(b"x", 1, 0, Ttl::Default, 0), Err(Error::NoRoom));
        assert_eq!(m.put(b"x", Value::Str(b"v"), Ttl::Default, 0), Err(Error::NoRoom));
        // Updating a present key needs no new slot.
        assert_eq!(m.add(&[0], 1, 0, Ttl::Default, 0), Ok(2));
        assert_eq!(
            m.put(&[1], Value::Str(b"now a string"), Ttl::Default, 0).map(|_| ()),
            Ok(())
        );
        assert_eq!(m.len(), 4);
        assert_eq!(m.stats().refused, 2);
        assert_eq!(m.get(b"x", 0), None);
    }
}

#[test]
fn space_exhaustion_refuses_cleanly() {
    for kind in KINDS {
        let mut heap = new_map(kind, 64 << 10, 1000, 0, false);
        let mut m = map(&mut heap);
        let big = vec![7u8; 3000];
        let mut stored = 0;
        for i in 0..1000u32 {
            match m.put(&i.to_le_bytes(), Value::Str(&big), Ttl::Default, 0) {
                Ok(_) => stored += 1,
                Err(e) => {
                    assert_eq!(e, Error::NoRoom);
                    break;
                }
            }
        }
        assert!(stored > 0 && stored < 1000);
        assert_eq!(m.len(), stored);
        for i in 0..stored as u32 {
            assert_eq!(m.get(&i.to_le_bytes(), 0), Some(Value::Str(&big)));
        }
    }
}

#[test]
fn expired_entries_are_never_returned_and_are_reclaimed() {
    for kind in KINDS {
        let mut heap = new_map(kind, 1 << 20, 1000, 10, false);
        let mut m = map(&mut heap);
        m.put(b"default", Value::Long(1), Ttl::Default, 100).unwrap();
        m.put(b"short", Value::Long(1), Ttl::Secs(2), 100).unwrap();
        m.put(b"never", Value::Long(1), Ttl::Never, 100).unwrap();
        assert_eq!(m.peek_with_expiry(b"default", 100).map(|v| v.1), Some(110));
        assert!(m.get(b"short", 101).is_some());
        assert!(m.get(b"short", 102).is_some(), "lives at least its time to live");
        assert_eq!(m.get(b"short", 103), None);
        assert!(m.get(b"default", 110).is_some());
        assert_eq!(m.add(b"default", 1, 5, Ttl::Default, 111), Ok(6), "starts again");
        assert_eq!(m.len(), 3, "a read leaves an expired entry to the sweep");
        assert_eq!(m.sweep(1000, 1 << 20), 2, "and the restarted counter expired again");
        assert_eq!(m.len(), 1);
        assert_eq!(m.get(b"never", u32::MAX - 1), Some(Value::Long(1)));
        assert_eq!(m.stats().expirations, 3);
    }
}

#[test]
fn sweep_returns_free_space_without_reads() {
    for kind in KINDS {
        let mut heap = new_map(kind, 1 << 20, 4000, 0, false);
        let mut m = map(&mut heap);
        let before = m.stats().free_space;
        for i in 0..500u32 {
            m.put(&i.to_le_bytes(), Value::Str(&[1; 1000]), Ttl::Secs(5), 0)
                .unwrap();
        }
        assert!(m.stats().free_space < before - 500 * 1000);
        let mut removed = 0;
        while removed < 500 {
            let n = m.sweep(10, 64);
            removed += n;
            if n == 0 && m.is_empty() {
                break;
            }
        }
        assert_eq!(removed, 500);
        assert_eq!(m.len(), 0);
        // Freed 1 KiB chunks return to their size class, freed pages to the pool.
        for i in 0..500u32 {
            m.put(&i.to_le_bytes(), Value::Str(&[2; 1000]), Ttl::Never, 20).unwrap();
        }
    }
}

#[test]
fn eviction_keeps_recently_read_entries_and_admits_the_newest() {
    for kind in KINDS {
        let mut heap = new_map(kind, 1 << 20, 8, 0, true);
        let mut m = map(&mut heap);
        for i in 0..8u8 {
            m.put(&[i], Value::Long(i as i64), Ttl::Default, 0).unwrap();
        }
        for round in 0..20u8 {
            // Keep key 3 hot; every new key must get in.
            assert!(m.get(&[3], 0).is_some(), "{kind:?} round {round}");
            let key = [100 + round];
            m.put(&key, Value::Long(1), Ttl::Default, 0).unwrap();
            assert_eq!(m.get(&key, 0), Some(Value::Long(1)));
            assert_eq!(m.len(), 8);
        }
        assert!(m.stats().evictions >= 20);
        assert_eq!(m.stats().refused, 0);
    }
}

#[test]
fn eviction_frees_space_for_large_values() {
    for kind in KINDS {
        let mut heap = new_map(kind, 128 << 10, 2000, 0, true);
        let mut m = map(&mut heap);
        for i in 0..2000u32 {
            let size = if i % 3 == 0 { 3000 } else { 100 };
            m.put(&i.to_le_bytes(), Value::Str(&vec![1; size]), Ttl::Default, 0)
                .expect("evict makes room");
            assert!(m.get(&i.to_le_bytes(), 0).is_some());
        }
        assert!(m.stats().evictions > 0);
    }
}

#[test]
fn clear_and_prefix_iteration() {
    for kind in KINDS {
        let mut heap = new_map(kind, 1 << 20, 1000, 0, false);
        let mut m = map(&mut heap);
        for i in 0..50 {
            m.put(format!("a/{i}").as_bytes(), Value::Long(i), Ttl::Default, 0)
                .unwrap();
            m.put(format!("b/{i}").as_bytes(), Value::Str(b"x"), Ttl::Default, 0)
                .unwrap();
        }
        let mut seen = Vec::new();
        m.for_each(b"a/", 0, |k, v, _| {
            assert_eq!(v.value_type(), ValueType::Long);
            seen.push(k.to_vec());
            true
        });
        assert_eq!(seen.len(), 50);
        let mut n = 0;
        m.for_each(b"", 0, |_, _, _| {
            n += 1;
            n < 7
        });
        assert_eq!(n, 7);
        let free = m.stats().free_space;
        m.clear();
        assert_eq!(m.len(), 0);
        assert_eq!(m.get(b"a/1", 0), None);
        assert!(m.stats().free_space >= free);
    }
}

#[test]
fn key_size_limits() {
    let mut heap = new_map(shared_map_engine::MapKind::Tiny, 64 << 20, 100, 0, false);
    let mut m = map(&mut heap);
    let key = vec![b'k'; 1 << 24];
    assert_eq!(m.put(&key, Value::Long(1), Ttl::Default, 0), Err(Error::KeyTooLarge));
    assert_eq!(m.add(&key[..(1 << 24) - 1], 1, 0, Ttl::Default, 0), Ok(1));
}
