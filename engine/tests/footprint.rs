//! Memory per entry, over the allocator that mirrors nginx's slab (page
//! descriptors, in-page bitmaps, power-of-two chunks).

mod common;

use common::{map, new_map};
use shared_map_engine::heap::Heap;
use shared_map_engine::{Map, MapConfig, MapKind, Ttl};

/// Slab bytes used per long counter with a 16-byte key, buckets excluded.
fn bytes_per_counter(kind: MapKind) -> f64 {
    const N: u64 = 100_000;
    let mut heap = new_map(kind, 64 << 20, N, 0, false);
    let mut m = map(&mut heap);
    let before = m.stats().free_space;
    for i in 0..N {
        m.add(format!("key-{i:012}").as_bytes(), 1, 0, Ttl::Default, 0).unwrap();
    }
    (before - m.stats().free_space) as f64 / N as f64
}

#[test]
fn a_tinymap_counter_takes_a_32_byte_entry_and_a_16_byte_key() {
    let per = bytes_per_counter(MapKind::Tiny);
    // 32 + 16 bytes of chunks, plus the in-page bitmaps (1/128 and 2/256).
    assert!(per <= 48.0 * 1.02, "tinymap uses {per:.1} bytes per counter");
}

#[test]
fn a_hashmap_counter_takes_one_64_byte_chunk() {
    let per = bytes_per_counter(MapKind::Hash);
    assert!(per <= 64.0 * 1.01, "hashmap uses {per:.1} bytes per counter");
}

#[test]
fn a_million_counters_with_16_byte_keys_fit_in_64m() {
    let space = 64 << 20;
    let mut heap = Heap::new(space);
    let config = MapConfig {
        kind: MapKind::Tiny,
        entries: 1_000_000,
        timeout: 0,
        evict: false,
    };
    let root = Map::create(&mut heap, &config).unwrap();
    heap.set_root(root);
    let mut m = map(&mut heap);
    for i in 0..1_000_000u64 {
        m.add(format!("key-{i:012}").as_bytes(), 1, 0, Ttl::Default, 0).unwrap();
    }
    assert_eq!(m.len(), 1_000_000);
    let free = m.stats().free_space;
    assert!(free > 0, "64m is exactly full");
    eprintln!(
        "1,000,000 counters in 64m: {:.1} MiB left",
        free as f64 / (1 << 20) as f64
    );
}
