//! Keys are hashed with SipHash-1-3 under a per-map secret key: keys crafted to
//! collide under nginx-clojure's unkeyed MurmurHash3 spread out, and the hash is
//! byte for byte the `siphasher` crate's.

mod common;

use proptest::prelude::*;
use shared_map_engine::heap::Heap;
use shared_map_engine::{hash_key, Map, MapConfig, MapKind, Ttl};

fn reference(secret: [u64; 2], key: &[u8]) -> u32 {
    siphasher::sip::SipHasher13::new_with_keys(secret[0], secret[1]).hash(key) as u32
}

proptest! {
    #[test]
    fn same_hash_as_siphash_1_3(k0 in any::<u64>(), k1 in any::<u64>(), key in proptest::collection::vec(any::<u8>(), 0..100)) {
        prop_assert_eq!(hash_key([k0, k1], &key), reference([k0, k1], &key));
    }
}

#[test]
fn each_map_draws_its_own_key() {
    let a = common::new_map(MapKind::Tiny, 1 << 20, 1000, 0, false);
    let mut b = common::new_map(MapKind::Tiny, 1 << 20, 1000, 0, false);
    let mut a = a;
    let (ma, mb) = (common::map(&mut a), common::map(&mut b));
    let differ = (0..32).any(|i| {
        let k = format!("key-{i}");
        ma.hash(k.as_bytes()) != mb.hash(k.as_bytes())
    });
    assert!(differ, "two maps hash alike: the key is not random");
}

/// Keys whose MurmurHash3 (seed 0) falls in one bucket of a 1024-bucket table,
/// found by brute force as an attacker would.
fn murmur_collisions(n: usize, buckets: u32) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0u64;
    while out.len() < n {
        let k = format!("/flood/{i:x}").into_bytes();
        if mur3::murmurhash3_x86_32(&k, 0) & (buckets - 1) == 0 {
            out.push(k);
        }
        i += 1;
    }
    out
}

#[test]
fn keys_colliding_under_murmur3_spread_out() {
    for kind in common::KINDS {
        // 700 entries: 1024 buckets.
        let mut heap = common::new_map(kind, 4 << 20, 700, 0, false);
        let mut m = common::map(&mut heap);
        assert_eq!(m.buckets(), 1024);
        let keys = murmur_collisions(600, 1024);
        for k in &keys {
            m.add(k, 1, 0, Ttl::Default, 0).unwrap();
        }
        let mut per_bucket = vec![0usize; 1024];
        for k in &keys {
            per_bucket[(m.hash(k) & 1023) as usize] += 1;
        }
        let longest = per_bucket.iter().max().copied().unwrap_or(0);
        assert!(longest <= 8, "{kind:?}: a chain of {longest}");
        assert_eq!(m.verify(), Ok(600));
    }
}

/// Keys that collide in bucket 0 under a known hash key.
fn keyed_collisions(secret: [u64; 2], n: usize, buckets: u64) -> Vec<Vec<u8>> {
    (0u64..)
        .map(|i| format!("k{i}").into_bytes())
        .filter(|k| hash_key(secret, k) as u64 & (buckets - 1) == 0)
        .take(n)
        .collect()
}

fn keyed_map(kind: MapKind, evict: bool, secret: [u64; 2]) -> Heap {
    let mut heap = Heap::new(4 << 20);
    let config = MapConfig {
        kind,
        entries: 100,
        timeout: 0,
        evict,
    };
    let root = Map::create_keyed(&mut heap, &config, secret).unwrap();
    heap.set_root(root);
    heap
}

#[test]
fn a_full_chain_refuses_a_new_key_without_evict() {
    let secret = [7, 11];
    for kind in common::KINDS {
        let mut heap = keyed_map(kind, false, secret);
        let mut m = common::map(&mut heap);
        let keys = keyed_collisions(secret, shared_map_engine::MAX_CHAIN + 1, m.buckets());
        for k in &keys[..shared_map_engine::MAX_CHAIN] {
            m.add(k, 1, 0, Ttl::Default, 0).unwrap();
        }
        let last = &keys[shared_map_engine::MAX_CHAIN];
        assert_eq!(
            m.add(last, 1, 0, Ttl::Default, 0),
            Err(shared_map_engine::Error::ChainFull)
        );
        assert_eq!(
            m.put(last, shared_map_engine::Value::Long(1), Ttl::Default, 0),
            Err(shared_map_engine::Error::ChainFull)
        );
        assert_eq!(m.stats().refused, 2);
        // Keys already there still count; other buckets take new keys.
        assert_eq!(m.add(&keys[0], 1, 0, Ttl::Default, 0), Ok(2));
        m.add(b"elsewhere-0", 1, 0, Ttl::Default, 0).unwrap();
        assert_eq!(m.len(), shared_map_engine::MAX_CHAIN as u64 + 1);
    }
}

#[test]
fn a_full_chain_evicts_its_least_recently_used_entry_with_evict() {
    let secret = [3, 5];
    for kind in common::KINDS {
        let mut heap = keyed_map(kind, true, secret);
        let mut m = common::map(&mut heap);
        let cap = shared_map_engine::MAX_CHAIN;
        let keys = keyed_collisions(secret, cap + 4, m.buckets());
        for k in &keys {
            m.add(k, 1, 0, Ttl::Default, 0).unwrap();
        }
        assert_eq!(m.len(), cap as u64);
        assert_eq!(m.stats().evictions, 4);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(m.peek(k, 0).is_some(), i >= 4, "{kind:?} key {i}");
        }
        assert_eq!(m.verify(), Ok(cap as u64));
    }
}

#[test]
fn a_chain_makes_room_with_an_expired_entry_first() {
    let secret = [1, 2];
    let mut heap = keyed_map(MapKind::Tiny, false, secret);
    let mut m = common::map(&mut heap);
    let cap = shared_map_engine::MAX_CHAIN;
    let keys = keyed_collisions(secret, cap + 1, m.buckets());
    m.add(&keys[0], 1, 0, Ttl::Secs(1), 100).unwrap();
    for k in &keys[1..cap] {
        m.add(k, 1, 0, Ttl::Default, 100).unwrap();
    }
    // At 102 the first key has expired and gives its place.
    m.add(&keys[cap], 1, 0, Ttl::Default, 102).unwrap();
    assert_eq!(m.stats().expirations, 1);
    assert_eq!(m.len(), cap as u64);
}
