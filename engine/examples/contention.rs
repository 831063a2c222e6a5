//! The contention benchmark: N processes count in one shared region, on one
//! hot key and on distinct keys, without the lock (`Lockless`) and, for
//! comparison, under it (as every count did before). Prints throughput at each
//! N and its ratio to N = 1. Run by `bench/contention.sh`.
//!
//! Usage: contention [SECONDS_PER_RUN] [N...]   (defaults: 1, and 1 2 4 8)

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use shared_map_engine::heap::Heap;
use shared_map_engine::{Arena, Lockless, Map, MapConfig, MapKind, Reader, Ttl};

const SPACE: usize = 16 << 20;
/// Keys each process counts in the distinct-keys runs.
const KEYS_EACH: usize = 64;
const MAX_PROCS: usize = 64;

/// What the processes of one run share besides the heap: a start flag, and
/// each process's count.
#[repr(C)]
struct Board {
    start: AtomicU32,
    stop: AtomicU32,
    counts: [AtomicU64; MAX_PROCS],
}

#[derive(Clone, Copy, PartialEq)]
enum Keys {
    Hot,
    Distinct,
}

#[derive(Clone, Copy, PartialEq)]
enum Path {
    Lockless,
    Locked,
}

fn mmap_shared(size: usize) -> *mut u8 {
    // SAFETY: a fresh anonymous shared mapping.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "mmap");
    p as *mut u8
}

fn key(keys: Keys, p: usize, i: usize) -> String {
    match keys {
        Keys::Hot => "hot".to_string(),
        Keys::Distinct => format!("key-{p}-{}", i % KEYS_EACH),
    }
}

/// Counts per second of `n` processes for `secs`.
fn run(n: usize, keys: Keys, path: Path, secs: f64) -> f64 {
    let base = mmap_shared(SPACE);
    let board = mmap_shared(core::mem::size_of::<Board>()) as *const Board;
    // SAFETY: the mapping is fresh, page-aligned and stays mapped (never unmapped: the run is short).
    let mut heap = unsafe { Heap::init(base, SPACE) };
    let config = MapConfig {
        kind: MapKind::Hash,
        entries: 100_000,
        timeout: 0,
        evict: false,
    };
    let root = Map::create(&mut heap, &config).expect("create");
    heap.set_root(root);
    {
        // SAFETY: the root was just made in this heap; one process so far.
        let mut m = unsafe { Map::attach(&mut heap, root) }.expect("attach");
        for p in 0..n {
            for i in 0..KEYS_EACH {
                m.add(key(keys, p, i).as_bytes(), 0, 0, Ttl::Never, 0).expect("add");
            }
        }
    }
    // SAFETY: the board is a fresh zeroed shared mapping.
    let board = unsafe { &*board };
    let pids: Vec<_> = (0..n)
        .map(|p| {
            // SAFETY: the child only counts in the shared mappings, then exits.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid == 0 {
                // SAFETY: formatted above; inherited at the same address.
                let mut heap = unsafe { Heap::open(base) }.expect("open");
                let reader = Reader::new();
                while board.start.load(Relaxed) == 0 {
                    std::hint::spin_loop();
                }
                let keys: Vec<String> = (0..KEYS_EACH).map(|i| key(keys, p, i)).collect();
                let mut done = 0u64;
                let mut i = 0;
                while board.stop.load(Relaxed) == 0 {
                    for _ in 0..64 {
                        let k = keys[i % KEYS_EACH].as_bytes();
                        i += 1;
                        let counted = match path {
                            // SAFETY: the heap's region stays mapped; its root came from `Map::create`.
                            Path::Lockless => unsafe { Lockless::open(heap.base(), heap.size(), root, &reader) }
                                .and_then(|l| l.add(k, 1, 0)),
                            Path::Locked => None,
                        };
                        if counted.is_none() {
                            let _guard = heap.lock();
                            // SAFETY: the root came from `Map::create`; the lock is held.
                            let mut m = unsafe { Map::attach(&mut heap, root) }.expect("attach");
                            m.add(k, 1, 0, Ttl::Never, 0).expect("add");
                        }
                        done += 1;
                    }
                }
                board.counts[p].store(done, Relaxed);
                // SAFETY: leave without the parent's destructors.
                unsafe { libc::_exit(0) };
            }
            pid
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    board.start.store(1, Relaxed);
    std::thread::sleep(Duration::from_secs_f64(secs));
    board.stop.store(1, Relaxed);
    for pid in pids {
        // SAFETY: our own child.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }
    let elapsed = t.elapsed().as_secs_f64();
    let total: u64 = board.counts[..n].iter().map(|c| c.load(Relaxed)).sum();
    total as f64 / elapsed
}

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let ns: Vec<usize> = args
        .filter_map(|s| s.parse().ok())
        .filter(|n| (1..=MAX_PROCS).contains(n))
        .collect();
    let ns = if ns.is_empty() { vec![1, 2, 4, 8] } else { ns };
    println!("| path | keys | processes | counts/s | ratio to 1 process |");
    println!("| --- | --- | --- | --- | --- |");
    for (path, pname) in [(Path::Lockless, "lock-free"), (Path::Locked, "locked")] {
        for (keys, kname) in [(Keys::Distinct, "distinct"), (Keys::Hot, "one hot key")] {
            let mut one = None;
            for &n in &ns {
                let rate = run(n, keys, path, secs);
                let base = *one.get_or_insert(rate);
                println!("| {pname} | {kname} | {n} | {rate:.0} | {:.2} |", rate / base);
            }
        }
    }
}
