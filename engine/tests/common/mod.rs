//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use shared_map_engine::heap::Heap;
use shared_map_engine::{Map, MapConfig, MapKind};

pub const KINDS: [MapKind; 2] = [MapKind::Tiny, MapKind::Hash];

/// A heap of `space` bytes holding one empty map.
pub fn new_map(kind: MapKind, space: usize, entries: u64, timeout: u32, evict: bool) -> Heap {
    let mut heap = Heap::new(space);
    let config = MapConfig {
        kind,
        entries,
        timeout,
        evict,
    };
    let root = Map::create(&mut heap, &config).expect("create map");
    heap.set_root(root);
    heap
}

/// Opens the map kept at the heap's root.
pub fn map(heap: &mut Heap) -> Map<'_, Heap> {
    let root = heap.root();
    // SAFETY: the root came from `Map::create` on this heap; tests are single-threaded
    // or hold the heap's lock.
    unsafe { Map::attach(heap, root) }.expect("attach map")
}
