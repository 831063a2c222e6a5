//! Engine operations on a warm map: get and add, for both map types.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use shared_map_engine::heap::Heap;
use shared_map_engine::{Map, MapConfig, MapKind, MatchMode, Ttl, Value};

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
        // The same map with `sync`: each add also updates the key's pending
        // delta in the replication log, what a request pays (the replicating
        // worker's flushes are not in this loop).
        map_with_sync(&mut heap, root);
        group.bench_function(BenchmarkId::new("add_synced", kind.name()), |b| {
            b.iter(|| {
                // SAFETY: as above.
                let mut m = unsafe { Map::attach(&mut heap, root) }.unwrap();
                i = (i + 7919) & (KEYS as usize - 1);
                black_box(m.add(&keys[i], 1, 0, Ttl::Default, 0).unwrap())
            })
        });
    }
    group.finish();
}

/// Keys whose unkeyed MurmurHash3 (seed 0, nginx-clojure's hash) falls into
/// bucket 0 of a 16384-bucket table: what an attacker computes offline.
fn murmur_flood(n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(n);
    let mut i = 0u64;
    while out.len() < n {
        let k = format!("/f/{i:x}").into_bytes();
        if mur3::murmurhash3_x86_32(&k, 0) & 16383 == 0 {
            out.push(k);
        }
        i += 1;
    }
    out
}

/// The flood of the issue: 11,000 keys crafted to collide under MurmurHash3 in
/// a tinymap of `entries=12000` (16384 buckets), against 11,000 ordinary keys
/// in a map of the same size, added to in turn in the same run.
fn flood(c: &mut Criterion) {
    const N: usize = 11_000;
    let flooded = murmur_flood(N);
    let ordinary: Vec<Vec<u8>> = (0..N as u64)
        .map(|i| format!("/o/{:x}", i * 16411 + (1 << 27)).into_bytes())
        .collect();
    let mut group = c.benchmark_group("flood");
    for (name, keys) in [("ordinary", &ordinary), ("murmur3-colliding", &flooded)] {
        let mut heap = Heap::new(8 << 20);
        let config = MapConfig {
            kind: MapKind::Tiny,
            entries: 12_000,
            timeout: 0,
            evict: false,
        };
        let root = Map::create(&mut heap, &config).unwrap();
        heap.set_root(root);
        {
            // SAFETY: single-threaded benchmark; the root came from create.
            let mut m = unsafe { Map::attach(&mut heap, root) }.unwrap();
            for k in keys.iter() {
                m.add(k, 1, 0, Ttl::Default, 0).unwrap();
            }
        }
        let mut i = 0usize;
        group.bench_function(BenchmarkId::new("add", name), |b| {
            b.iter(|| {
                // SAFETY: as above.
                let mut m = unsafe { Map::attach(&mut heap, root) }.unwrap();
                i = (i + 7919) % N;
                black_box(m.add(&keys[i], 1, 0, Ttl::Default, 0).unwrap())
            })
        });
    }
    group.finish();
}

/// One batch of the walks that listings, scrapes, saves and clears make: 1024
/// buckets of a map of 1,000,000 entries, what one hold of the lock covers.
fn batches(c: &mut Criterion) {
    const N: u64 = 1_000_000;
    const BATCH: u64 = 1024;
    let mut heap = Heap::new(96 << 20);
    let config = MapConfig {
        kind: MapKind::Tiny,
        entries: N,
        timeout: 0,
        evict: false,
    };
    let root = Map::create(&mut heap, &config).unwrap();
    heap.set_root(root);
    let buckets = {
        // SAFETY: single-threaded benchmark; the root came from create.
        let mut m = unsafe { Map::attach(&mut heap, root) }.unwrap();
        for i in 0..N {
            m.add(format!("/k/{i:07}").as_bytes(), 1, 0, Ttl::Default, 0).unwrap();
        }
        m.buckets()
    };
    let mut group = c.benchmark_group("batch of 1024 buckets, 1M entries");
    let mut cursor = 0;
    group.bench_function("walk, copying every entry", |b| {
        b.iter(|| {
            // SAFETY: as above.
            let mut m = unsafe { Map::attach(&mut heap, root) }.unwrap();
            let mut copied = Vec::with_capacity(1024);
            let next = m.walk(cursor, BATCH, b"", 0, |k, v, e| {
                copied.push((k.to_vec(), v.to_owned(), e))
            });
            cursor = next.unwrap_or(0);
            black_box(copied.len())
        })
    });
    // Each iteration clears a batch, then (untimed) puts its entries back.
    let mut cursor = 0;
    group.bench_function("clear", |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                // SAFETY: as above.
                let mut m = unsafe { Map::attach(&mut heap, root) }.unwrap();
                let mut keys = Vec::new();
                m.walk(cursor, BATCH, b"", 0, |k, _, _| keys.push(k.to_vec()));
                let t = std::time::Instant::now();
                let next = m.clear_batch(cursor, BATCH);
                total += t.elapsed();
                for k in &keys {
                    m.add(k, 1, 0, Ttl::Default, 0).unwrap();
                }
                cursor = next.unwrap_or(0) % buckets;
            }
            total
        })
    });
    group.finish();
}

fn map_with_sync(heap: &mut Heap, root: u64) {
    // SAFETY: single-threaded benchmark; the root came from create.
    let mut m = unsafe { Map::attach(heap, root) }.unwrap();
    m.enable_sync(1).unwrap();
}

criterion_group!(benches, ops);
criterion_group!(batching, batches);
criterion_main!(benches, hashing, matching, flooding, batching);

fn hash(c: &mut Criterion) {
    let key = b"/uri/00000004242";
    let secret = [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210];
    c.bench_function("hash/siphash13 16 bytes", |b| {
        b.iter(|| shared_map_engine::hash_key(secret, black_box(key)))
    });
    c.bench_function("hash/mur3 16 bytes", |b| {
        b.iter(|| mur3::murmurhash3_x86_32(black_box(key), 0))
    });
}

criterion_group!(hashing, hash);

/// Lookups in an ip map holding /8, /16, /24 and /32 ranges (1 + 64 + 512 +
/// 2048 of them, nested in 10.0.0.0/8), and in a prefix map of URI prefixes.
fn match_lookups(c: &mut Criterion) {
    let config = MapConfig {
        kind: MapKind::Hash,
        entries: KEYS,
        timeout: 0,
        evict: false,
    };
    let mut heap = Heap::new(64 << 20);
    let root = Map::create_matching(&mut heap, &config, MatchMode::Ip).unwrap();
    let addrs: Vec<Vec<u8>> = (0..KEYS as u32)
        .map(|i| format!("10.{}.{}.{}", i % 64, (i / 64) % 8, i % 251).into_bytes())
        .collect();
    {
        // SAFETY: single-threaded benchmark; the root came from create.
        let mut m = unsafe { Map::attach(&mut heap, root) }.unwrap();
        let mut put = |k: String| m.put(k.as_bytes(), Value::Long(1), Ttl::Default, 0).unwrap();
        put("10.0.0.0/8".into());
        for a in 0..64 {
            put(format!("10.{a}.0.0/16"));
            for b in 0..8 {
                put(format!("10.{a}.{b}.0/24"));
                for h in 0..4 {
                    put(format!("10.{a}.{b}.{}", h * 60));
                }
            }
        }
        assert_eq!(m.match_probes(b"10.1.2.3"), 4);
    }
    // Addresses outside every /16, /24 and /32: found at /8 after four probes.
    let far: Vec<Vec<u8>> = (0..KEYS as u32)
        .map(|i| format!("10.{}.{}.{}", 64 + i % 190, (i / 64) % 256, i % 251).into_bytes())
        .collect();
    let mut i = 0usize;
    c.bench_function("match/ip lookup, four probes", |b| {
        b.iter(|| {
            // SAFETY: as above.
            let mut m = unsafe { Map::attach(&mut heap, root) }.unwrap();
            i = (i + 7919) & (KEYS as usize - 1);
            black_box(m.get_match(&far[i], 0).is_some())
        })
    });
    c.bench_function("match/ip lookup, /8 /16 /24 /32 held", |b| {
        b.iter(|| {
            // SAFETY: as above.
            let mut m = unsafe { Map::attach(&mut heap, root) }.unwrap();
            i = (i + 7919) & (KEYS as usize - 1);
            black_box(m.get_match(&addrs[i], 0).is_some())
        })
    });

    let mut heap = Heap::new(64 << 20);
    let root = Map::create_matching(&mut heap, &config, MatchMode::Prefix).unwrap();
    let uris: Vec<Vec<u8>> = (0..KEYS)
        .map(|i| format!("/api/v{}/items/{i:08}", i % 4).into_bytes())
        .collect();
    {
        // SAFETY: as above.
        let mut m = unsafe { Map::attach(&mut heap, root) }.unwrap();
        for k in ["/", "/api/", "/api/v1/", "/api/v2/", "/api/v3/items/", "/static/"] {
            m.put(k.as_bytes(), Value::Str(b"backend"), Ttl::Default, 0).unwrap();
        }
    }
    c.bench_function("match/prefix lookup, 6 prefixes of 4 lengths", |b| {
        b.iter(|| {
            // SAFETY: as above.
            let mut m = unsafe { Map::attach(&mut heap, root) }.unwrap();
            i = (i + 7919) & (KEYS as usize - 1);
            black_box(m.get_match(&uris[i], 0).is_some())
        })
    });
}

/// The worst case of matching, against an exact lookup of a key as long, in
/// one run: a prefix map holding keys of every length 1..=255 and an ip map
/// holding IPv6 ranges of every length 0..=127, where only the shortest key
/// (`/`, `::/0`) matches the lookup, so every stored length is a candidate.
/// Each range differs from the looked-up address in its last bit alone, so
/// the filter's groups of eight lengths rule none out: only lengths are.
fn match_worst_case(c: &mut Criterion) {
    let config = MapConfig {
        kind: MapKind::Hash,
        entries: KEYS,
        timeout: 0,
        evict: false,
    };
    let uri = format!("/p/{}", "a".repeat(297)).into_bytes();
    let addr: u128 = 0x2001_0db8_1234_5678_9abc_def0_1234_5678;
    let ip = std::net::Ipv6Addr::from(addr).to_string().into_bytes();
    let mut group = c.benchmark_group("match worst case");
    let mut lookup = |name: &str, mode: MatchMode, keys: Vec<Vec<u8>>, key: &[u8]| {
        let mut heap = Heap::new(64 << 20);
        let root = Map::create_matching(&mut heap, &config, mode).unwrap();
        {
            // SAFETY: single-threaded benchmark; the root came from create.
            let mut m = unsafe { Map::attach(&mut heap, root) }.unwrap();
            for k in &keys {
                m.put(k, Value::Long(1), Ttl::Default, 0).unwrap();
            }
            assert!(m.get_match(key, 0).is_some());
        }
        group.bench_function(name, |b| {
            b.iter(|| {
                // SAFETY: as above.
                let mut m = unsafe { Map::attach(&mut heap, root) }.unwrap();
                black_box(m.get_match(black_box(key), 0).is_some())
            })
        });
    };
    lookup("exact, 300-byte key", MatchMode::Exact, vec![uri.clone()], &uri);
    let mut prefixes = vec![b"/".to_vec()];
    prefixes.extend((2..=255).map(|n| format!("/q{}", "b".repeat(n - 2)).into_bytes()));
    lookup("prefix, 255 lengths, 300-byte key", MatchMode::Prefix, prefixes, &uri);
    lookup("exact, IPv6 address", MatchMode::Exact, vec![ip.clone()], &ip);
    let mut ranges = vec![b"::/0".to_vec()];
    ranges.extend((1..128u32).map(|n| {
        let net = (addr ^ (1 << (128 - n))) >> (128 - n) << (128 - n);
        format!("{}/{n}", std::net::Ipv6Addr::from(net)).into_bytes()
    }));
    lookup("ip, 128 IPv6 lengths", MatchMode::Ip, ranges, &ip);
    // The same lengths in the other half of the address space: every group of
    // eight lengths but the first is ruled out at once.
    let mut far = vec![b"::/0".to_vec()];
    far.extend((1..128u32).map(|n| {
        let net = (addr ^ (1 << 127)) >> (128 - n) << (128 - n);
        format!("{}/{n}", std::net::Ipv6Addr::from(net)).into_bytes()
    }));
    lookup("ip, 128 IPv6 lengths in the other half", MatchMode::Ip, far, &ip);
    group.finish();
}

criterion_group!(matching, match_lookups, match_worst_case);
criterion_group!(flooding, flood);
