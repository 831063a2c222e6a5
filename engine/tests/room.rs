//! Expiry, eviction and the room a full map makes for a write: which entries go,
//! what a refused write reports, fragmentation, and the size of an entry.

mod common;

use common::{map, new_map, KINDS};
use shared_map_engine::{Error, MapKind, Refusal, Ttl, Value, MAX_EVICTIONS};

#[test]
fn eviction_keeps_recently_read_entries_and_always_admits_the_newest() {
    for kind in KINDS {
        let mut heap = new_map(kind, 1 << 20, 1000, 0, true);
        let mut m = map(&mut heap);
        for i in 0..1000u32 {
            m.put(&i.to_le_bytes(), Value::Long(i as i64), Ttl::Default, 0).unwrap();
        }
        let hot: Vec<u32> = (0..1000).step_by(10).collect();
        for round in 0..300u32 {
            for k in &hot {
                assert!(
                    m.get(&k.to_le_bytes(), 0).is_some(),
                    "{kind:?}: hot key {k} evicted in round {round}"
                );
            }
            for j in 0..10 {
                let key = (10_000 + round * 10 + j).to_le_bytes();
                m.put(&key, Value::Long(1), Ttl::Default, 0)
                    .expect("the newest is admitted");
                assert_eq!(m.peek(&key, 0), Some(Value::Long(1)));
            }
            assert_eq!(m.len(), 1000);
        }
        let s = m.stats();
        assert_eq!(s.evictions, 3000);
        assert_eq!(s.refused, 0);
    }
}

#[test]
fn peek_does_not_count_as_use() {
    for kind in KINDS {
        let mut heap = new_map(kind, 1 << 20, 8, 0, true);
        let mut m = map(&mut heap);
        for i in 0..8u8 {
            m.put(&[i], Value::Long(i as i64), Ttl::Default, 0).unwrap();
        }
        let mut evicted_at = None;
        for round in 0..64u8 {
            if m.peek(&[3], 0).is_none() {
                evicted_at = Some(round);
                break;
            }
            m.put(&[100 + round], Value::Long(1), Ttl::Default, 0).unwrap();
        }
        assert!(evicted_at.is_some(), "{kind:?}: a peeked entry ages like any other");
        assert_eq!(m.stats().hits, 0);
    }
}

#[test]
fn expired_entries_are_reclaimed_before_anything_is_evicted() {
    for kind in KINDS {
        let mut heap = new_map(kind, 1 << 20, 100, 0, true);
        let mut m = map(&mut heap);
        for i in 0..100u32 {
            let ttl = if i % 2 == 0 { Ttl::Secs(1) } else { Ttl::Never };
            m.put(&i.to_le_bytes(), Value::Long(1), ttl, 10).unwrap();
        }
        for i in 100..150u32 {
            m.add(&i.to_le_bytes(), 1, 0, Ttl::Default, 20).unwrap();
        }
        let s = m.stats();
        assert_eq!((s.evictions, s.expirations, s.entries), (0, 50, 100), "{kind:?}");
        for i in (1..100u32).step_by(2) {
            assert!(m.get(&i.to_le_bytes(), 20).is_some());
        }
    }
}

#[test]
fn a_full_map_without_evict_admits_writes_once_entries_expire_without_reads() {
    for kind in KINDS {
        // 8192 buckets: expired entries lie far from the sweep cursor too.
        let mut heap = new_map(kind, 4 << 20, 4000, 0, false);
        let mut m = map(&mut heap);
        for i in 0..4000u32 {
            m.add(&i.to_le_bytes(), 1, 0, Ttl::Secs(1), 100).unwrap();
        }
        assert_eq!(m.add(b"new", 1, 0, Ttl::Never, 100), Err(Error::NoRoom));
        assert_eq!(
            m.refusal(),
            Some(Refusal {
                bytes: 0,
                evicted: 0,
                reclaimed: 0
            })
        );
        for i in 0..4000u32 {
            let key = (1_000_000 + i).to_le_bytes();
            assert_eq!(m.add(&key, 1, 0, Ttl::Never, 102), Ok(1), "{kind:?} write {i}");
        }
        let s = m.stats();
        assert_eq!((s.entries, s.expirations, s.evictions, s.refused), (4000, 4000, 0, 1));
    }
}

#[test]
fn refused_writes_change_nothing_and_say_why() {
    for kind in KINDS {
        let mut heap = new_map(kind, 64 << 10, 1000, 0, false);
        let mut m = map(&mut heap);
        let mut n = 0u32;
        while m.put(&n.to_le_bytes(), Value::Str(&[5; 1000]), Ttl::Never, 0).is_ok() {
            n += 1;
        }
        let refusal = m.refusal().expect("the last write was refused");
        assert_eq!(refusal.evicted, 0);
        assert!(
            refusal.bytes >= 1000 || refusal.bytes == 36 || refusal.bytes == 44,
            "{refusal:?}"
        );
        assert_eq!(m.len(), n as u64);
        for i in 0..n {
            assert_eq!(m.get(&i.to_le_bytes(), 0), Some(Value::Str(&[5; 1000])));
        }
    }
}

/// Small values fill slab pages of small chunks; a value needing whole pages
/// only gets them when every chunk of some page is freed, which random
/// eviction reaches slowly. Eviction keeps going up to its bound, then the
/// write fails and says how much it evicted; the map stays whole either way.
#[test]
fn fragmentation_either_succeeds_or_fails_after_bounded_eviction() {
    for kind in KINDS {
        let mut heap = new_map(kind, 256 << 10, 4000, 0, true);
        let mut m = map(&mut heap);
        let mut i = 0u32;
        // Fill the space with small strings; eviction makes room among them.
        while m.stats().evictions < 100 {
            m.put(&i.to_le_bytes(), Value::Str(&[1; 100]), Ttl::Never, 0).unwrap();
            i += 1;
        }
        let before = m.len();
        let big = vec![2u8; 16 << 10];
        match m.put(b"big", Value::Str(&big), Ttl::Never, 0) {
            Ok(_) => {
                eprintln!(
                    "{kind:?}: 16 KiB among 100-byte values: stored after {} evictions",
                    before + 1 - m.len()
                );
                assert_eq!(m.get(b"big", 0), Some(Value::Str(&big)));
                assert!(m.len() < before);
            }
            Err(e) => {
                assert_eq!(e, Error::NoRoom);
                let r = m.refusal().unwrap();
                eprintln!("{kind:?}: 16 KiB among 100-byte values: refused after {r:?}");
                assert_eq!(r.bytes, 16 << 10);
                assert_eq!(r.evicted + r.reclaimed, MAX_EVICTIONS.min(before as usize));
                assert_eq!(m.len(), before - r.evicted as u64);
            }
        }
        // Whatever happened, every entry left is whole and small writes still work.
        let mut live = 0;
        m.for_each(b"", 0, |k, v, _| {
            live += 1;
            k == b"big" || v == Value::Str(&[1; 100])
        });
        assert_eq!(live, m.len());
        m.put(b"after", Value::Str(&[3; 100]), Ttl::Never, 0).unwrap();
    }
}

/// Mixed sizes under churn: every refusal is a clean NoRoom with its report,
/// and the map stays consistent.
#[test]
fn mixed_value_sizes_under_eviction_stay_consistent() {
    for kind in KINDS {
        let mut heap = new_map(kind, 512 << 10, 8000, 0, true);
        let mut m = map(&mut heap);
        let (mut ok, mut refused) = (0, 0);
        for i in 0..20_000u32 {
            let size = [16, 100, 700, 3000, 9000][(i.wrapping_mul(2_654_435_761) >> 29) as usize % 5];
            match m.put(
                &i.to_le_bytes(),
                Value::Str(&vec![(i % 251) as u8; size]),
                Ttl::Never,
                0,
            ) {
                Ok(_) => ok += 1,
                Err(Error::NoRoom) => {
                    refused += 1;
                    assert!(m.refusal().is_some());
                }
                Err(e) => panic!("{e}"),
            }
        }
        let mut live = 0;
        m.for_each(b"", 0, |k, v, _| {
            live += 1;
            let i = u32::from_le_bytes(k.try_into().unwrap());
            matches!(v, Value::Str(s) if s.iter().all(|&b| b == (i % 251) as u8))
        });
        assert_eq!(live, m.len());
        eprintln!(
            "{kind:?}: mixed sizes: {ok} stored, {refused} refused, {} evicted",
            m.stats().evictions
        );
        assert!(ok > 19_000, "{kind:?}: {ok} of 20000 stored");
    }
}

/// A tinymap entry is one 32-byte slab chunk; its key is a chunk of its own.
#[test]
fn a_tinymap_entry_takes_32_bytes_of_slab_besides_its_key() {
    let n = 100_000u64;
    let mut heap = new_map(MapKind::Tiny, 16 << 20, n, 0, true);
    let mut m = map(&mut heap);
    let before = m.stats().free_space;
    for i in 0..n {
        m.add(&i.to_le_bytes(), 1, 0, Ttl::Default, 0).unwrap();
    }
    let used = (before - m.stats().free_space) as f64 / n as f64;
    eprintln!("tinymap: {used:.1} bytes of slab per entry with an 8-byte key (32 entry + 8 key)");
    assert!(used <= 32.0 + 8.0 + 0.5, "{used}");
}

#[test]
fn a_key_or_value_larger_than_the_space_is_refused_without_evicting() {
    for kind in KINDS {
        let mut heap = new_map(kind, 64 << 10, 100, 0, true);
        let mut m = map(&mut heap);
        for i in 0..50u32 {
            m.add(&i.to_le_bytes(), 1, 0, Ttl::Never, 0).unwrap();
        }
        assert_eq!(m.add(&[1; 64 << 10], 1, 0, Ttl::Never, 0), Err(Error::KeyTooLarge));
        assert_eq!(
            m.put(b"k", Value::Str(&[1; 64 << 10]), Ttl::Never, 0),
            Err(Error::ValueTooLarge)
        );
        assert_eq!((m.len(), m.stats().evictions), (50, 0));
    }
}
