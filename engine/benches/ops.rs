//! Engine operations on a warm map: get and add, for both map types.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use shared_map_engine::heap::Heap;
use shared_map_engine::{Map, MapConfig, MapKind, Ttl};

/// A power of two, so that the benchmark steps through keys with a mask.
const KEYS: u64 = 8192;

fn warm_map(kind: MapKind) -> (Heap, Vec<Vec<u8>>) {
    let mut heap = Heap::new(64 << 20);
    let config = MapConfig {
        kind,
        entries: KEYS,
        timeout: 0,
        evict: false,
    };
    let root = Map::create(&mut heap, &config).unwrap();
    heap.set_root(root);
    let keys: Vec<Vec<u8>> = (0..KEYS).map(|i| format!("/uri/{i:011}").into_bytes()).collect();
    {
        // SAFETY: single-threaded benchmark; the root came from create.
        let mut m = unsafe { Map::attach(&mut heap, root) }.unwrap();
        for k in &keys {
            m.add(k, 1, 0, Ttl::Default, 0).unwrap();
        }
    }
    (heap, keys)
}

fn ops(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    for kind in [MapKind::Tiny, MapKind::Hash] {
        let (mut heap, keys) = warm_map(kind);
        let root = heap.root();
        let mut i = 0usize;
        group.bench_function(BenchmarkId::new("get", kind.name()), |b| {
            b.iter(|| {
                // SAFETY: as above.
                let mut m = unsafe { Map::attach(&mut heap, root) }.unwrap();
                i = (i + 7919) & (KEYS as usize - 1);
                black_box(m.get(&keys[i], 0).is_some())
            })
        });
        group.bench_function(BenchmarkId::new("add", kind.name()), |b| {
            b.iter(|| {
                // SAFETY: as above.
                let mut m = unsafe { Map::attach(&mut heap, root) }.unwrap();
                i = (i + 7919) & (KEYS as usize - 1);
                black_box(m.add(&keys[i], 1, 0, Ttl::Default, 0).unwrap())
            })
        });
        group.bench_function(BenchmarkId::new("add_locked", kind.name()), |b| {
            b.iter(|| {
                let _guard = heap.lock();
                // SAFETY: the heap's lock is held, as nginx holds the slab mutex.
                let mut m = unsafe { Map::attach(&mut heap, root) }.unwrap();
                i = (i + 7919) & (KEYS as usize - 1);
                black_box(m.add(&keys[i], 1, 0, Ttl::Default, 0).unwrap())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, ops);
criterion_main!(benches, hashing);

fn hash(c: &mut Criterion) {
    let key = b"/uri/00000004242";
    c.bench_function("hash/mur3 16 bytes", |b| {
        b.iter(|| shared_map_engine::hash_key(black_box(key)))
    });
    c.bench_function("hash/murmur3 crate 16 bytes", |b| {
        b.iter(|| {
            let mut src: &[u8] = black_box(key);
            murmur3::murmur3_32(&mut src, 0).unwrap()
        })
    });
}

criterion_group!(hashing, hash);
