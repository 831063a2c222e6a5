//! Several forked processes add to counters in one `MAP_SHARED` mapping.

mod common;

use shared_map_engine::heap::Heap;
use shared_map_engine::{Map, MapConfig, MapKind, Ttl, Value};

const PROCS: usize = 4;
const ROUNDS: i64 = 20_000;
const KEYS: usize = 16;

fn run(kind: MapKind) {
    let size = 4 << 20;
    // SAFETY: an anonymous shared mapping, unmapped at the end of the test.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(base, libc::MAP_FAILED);
    // SAFETY: the mapping is fresh and page-aligned.
    let mut heap = unsafe { Heap::init(base as *mut u8, size) };
    let config = MapConfig {
        kind,
        entries: 1000,
        timeout: 0,
        evict: false,
    };
    let root = Map::create(&mut heap, &config).unwrap();
    heap.set_root(root);

    let mut children = Vec::new();
    for p in 0..PROCS {
        // SAFETY: the child only touches the shared mapping and exits with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: formatted by the parent before the fork.
            let mut heap = unsafe { Heap::open(base as *mut u8) }.unwrap();
            for i in 0..ROUNDS {
                let key = format!("counter-{}", (i as usize + p) % KEYS);
                let _guard = heap.lock();
                let root = heap.root();
                // SAFETY: the lock is held until the end of this iteration.
                let mut m = unsafe { Map::attach(&mut heap, root) }.unwrap();
                m.add(key.as_bytes(), 1, 0, Ttl::Default, 0).unwrap();
                if i % 100 == 0 {
                    m.put(
                        format!("s-{p}").as_bytes(),
                        Value::Str(&vec![p as u8; (i % 700) as usize]),
                        Ttl::Default,
                        0,
                    )
                    .unwrap();
                }
            }
            // SAFETY: leave without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        children.push(pid);
    }
    for pid in children {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }
    let root = heap.root();
    // SAFETY: all children have exited; we are alone.
    let mut m = unsafe { Map::attach(&mut heap, root) }.unwrap();
    let mut total = 0;
    for k in 0..KEYS {
        match m.get(format!("counter-{k}").as_bytes(), 0) {
            Some(Value::Long(v)) => total += v,
            other => panic!("counter-{k}: {other:?}"),
        }
    }
    assert_eq!(total, PROCS as i64 * ROUNDS);
    assert_eq!(m.len(), (KEYS + PROCS) as u64);
    // SAFETY: mapped above; the map handle is not used past this point.
    unsafe { libc::munmap(base, size) };
}

#[test]
fn forked_processes_count_exactly_in_a_tinymap() {
    run(MapKind::Tiny);
}

#[test]
fn forked_processes_count_exactly_in_a_hashmap() {
    run(MapKind::Hash);
}
