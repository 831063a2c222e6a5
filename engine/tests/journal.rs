//! A writer that dies holding the lock, at every call it makes to the
//! allocator, loses no memory and no entry: the next lock holder finds the
//! death inside the allocator in the map's journal and rebuilds the heap from
//! the map's entries. This is what gdb does to nginx in
//! `t/007-killed-in-lock.t` (stop in `ngx_slab_alloc_locked` or
//! `ngx_slab_free_locked`, kill), done here at every such call of a sequence of
//! writes rather than at a sample of them.

mod common;

use core::ptr::NonNull;

use common::SharedHeap;
use shared_map_engine::heap::Heap;
use shared_map_engine::{state, Arena, Map, MapKind, Ttl, Value};

/// Where the writer dies, counted in calls to the allocator.
#[derive(Clone, Copy, Debug)]
enum Death {
    /// On entering its Nth call, before the allocator runs.
    Before(u32),
    /// Just after its Nth `free` returned: the chunk is free, the journal still
    /// names it, and the next holder frees it again.
    AfterFree(u32),
}

/// The heap, as a writer that dies (`_exit`, as abrupt as SIGKILL) at a given call.
struct Dying {
    heap: Heap,
    calls: u32,
    death: Death,
}

impl Dying {
    fn enter(&mut self) {
        self.calls += 1;
        if matches!(self.death, Death::Before(n) if n == self.calls) {
            // SAFETY: leaves the child at once, the lock held, nothing unwound.
            unsafe { libc::_exit(9) };
        }
    }
}

// SAFETY: every call is passed on to the heap.
unsafe impl Arena for Dying {
    fn base(&self) -> *mut u8 {
        self.heap.base()
    }

    fn size(&self) -> usize {
        self.heap.size()
    }

    fn alloc(&mut self, size: usize) -> Option<NonNull<u8>> {
        self.enter();
        self.heap.alloc(size)
    }

    unsafe fn free(&mut self, ptr: NonNull<u8>) {
        self.enter();
        // SAFETY: per the caller's contract.
        unsafe { self.heap.free(ptr) };
        if matches!(self.death, Death::AfterFree(n) if n == self.calls) {
            // SAFETY: as in `enter`.
            unsafe { libc::_exit(9) };
        }
    }

    fn free_bytes(&self) -> usize {
        self.heap.free_bytes()
    }

    fn capacity(&self) -> usize {
        self.heap.capacity()
    }
}

fn big(tag: u8, len: usize) -> Vec<u8> {
    vec![tag; len]
}

/// The writes the child makes, each path of the engine that allocates or
/// frees: a new key with a string (string, entry, key chunk), a string replaced
/// by a longer one, a string replaced by a long (a new entry takes the old
/// one's place), a counter made, a removal, writes that evict to make room, a
/// write refused after it allocated, and a clear.
fn writes(m: &mut Map<'_, Dying>) {
    let _ = m.put(b"new-string", Value::Str(&big(b'n', 300)), Ttl::Default, 0);
    let _ = m.put(b"s-1", Value::Str(&big(b's', 5000)), Ttl::Default, 0);
    let _ = m.put(b"s-2", Value::Long(7), Ttl::Default, 0);
    let _ = m.add(b"new-counter", 1, 0, Ttl::Default, 0);
    let _ = m.remove(b"s-3", 0);
    for i in 0..6 {
        let _ = m.put(
            format!("evicting-{i}").as_bytes(),
            Value::Str(&big(b'e', 2500)),
            Ttl::Default,
            0,
        );
    }
    let _ = m.put(b"too-big", Value::Str(&big(b't', 40_000)), Ttl::Default, 0);
    let mut cursor = Some(0);
    while let Some(c) = cursor {
        cursor = m.clear_batch(c, 4);
    }
}

/// A map of 20 entries of every kind, in a heap too small to take the writes
/// without evicting.
fn fixture(kind: MapKind) -> SharedHeap {
    let mut shared = SharedHeap::new(kind, 96 << 10, 24, true);
    let mut m = common::map(&mut shared.heap);
    for i in 0..20 {
        let key = format!("s-{i}");
        let value = if i % 3 == 0 {
            Value::Long(i)
        } else {
            Value::Str(&big(b'a' + i as u8, 100 + 700 * (i as usize % 4)))
        };
        m.put(key.as_bytes(), value, Ttl::Default, 0).unwrap();
    }
    shared
}

/// How many allocator calls the writes make, run here to the end.
fn calls(kind: MapKind) -> u32 {
    let shared = fixture(kind);
    let root = shared.heap.root();
    let mut dying = Dying {
        heap: shared.open_in_child(),
        calls: 0,
        death: Death::Before(0),
    };
    // SAFETY: single-threaded; nothing else uses the heap.
    let mut m = unsafe { Map::attach(&mut dying, root) }.unwrap();
    writes(&mut m);
    dying.calls
}

/// The map's live entries, as sorted records.
fn entries(heap: &mut Heap) -> Vec<(Vec<u8>, String, u32)> {
    let bytes = state::save(&mut common::map(heap), 0);
    let parsed = state::parse(&bytes).unwrap();
    let mut v: Vec<_> = parsed
        .records()
        .map(|r| (r.key.to_vec(), format!("{:?}", r.value), r.expire))
        .collect();
    v.sort();
    v
}

/// Runs the writes in a child that dies at `death`; then takes the map over
/// as the next lock holder. Returns whether the child died, whether the heap
/// was rebuilt, and the chunks lost.
fn die_and_recover(kind: MapKind, death: Death) -> (bool, bool, i64) {
    let mut shared = fixture(kind);
    let root = shared.heap.root();
    let child = shared.open_in_child();
    let pid = common::fork_child(move || {
        // The child never unlocks: it dies holding the lock, or exits.
        core::mem::forget(child.lock());
        let mut dying = Dying {
            heap: child,
            calls: 0,
            death,
        };
        // SAFETY: the lock is held.
        let mut m = unsafe { Map::attach(&mut dying, root) }.unwrap();
        writes(&mut m);
    });
    let mut status = 0;
    // SAFETY: our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status),
        "{kind:?} {death:?}: the child ended by a signal"
    );
    let died = libc::WEXITSTATUS(status) == 9;
    assert!(
        died || libc::WEXITSTATUS(status) == 0,
        "{kind:?} {death:?}: the child failed"
    );
    // What the chains hold as the writer left them (read without allocating).
    let left = {
        let mut m = common::map(&mut shared.heap);
        let mut v = Vec::new();
        m.for_each(b"", 0, |k, val, e| {
            v.push((k.to_vec(), format!("{val:?}"), e));
            true
        });
        v.sort();
        v
    };
    let recovery = shared.take_over();
    let rebuilt = recovery.is_some_and(|r| r.rebuild);
    assert_eq!(
        entries(&mut shared.heap),
        left,
        "{kind:?} {death:?}: every entry kept, whole"
    );
    let _guard = shared.heap.lock();
    let mut m = common::map(&mut shared.heap);
    assert_eq!(m.verify(), Ok(m.len()), "{kind:?} {death:?}: the map verifies");
    m.clear();
    // A cleared map holds its header and bucket table only, as a new one does:
    // anything else still allocated was lost.
    let empty = SharedHeap::new(kind, 96 << 10, 24, true);
    let lost = shared.heap.live_allocations() as i64 - empty.heap.live_allocations() as i64;
    (died, rebuilt, lost)
}

/// Kills the writer at each of its allocator calls; returns the kills and how
/// many of them made the next holder rebuild the heap.
fn every_call(kind: MapKind, death: fn(u32) -> Death) -> (u32, u32) {
    let (mut kills, mut rebuilds) = (0, 0);
    for n in 1..=calls(kind) {
        let (died, rebuilt, lost) = die_and_recover(kind, death(n));
        assert_eq!(lost, 0, "{kind:?}: a writer dying at {:?} lost {lost} chunks", death(n));
        assert_eq!(
            died,
            rebuilt,
            "{kind:?}: a writer dying at {:?} inside the allocator",
            death(n)
        );
        kills += died as u32;
        rebuilds += rebuilt as u32;
    }
    (kills, rebuilds)
}

#[test]
fn a_writer_dying_at_any_allocator_call_loses_nothing() {
    for kind in common::KINDS {
        let (kills, rebuilds) = every_call(kind, Death::Before);
        assert!(kills > 30, "{kind:?}: the writes made only {kills} allocator calls");
        eprintln!("{kind:?}: died entering each of {kills} allocator calls, {rebuilds} rebuilds, nothing lost");
    }
}

#[test]
fn a_writer_dying_just_after_a_free_loses_nothing_and_frees_nothing_twice() {
    for kind in common::KINDS {
        let (kills, rebuilds) = every_call(kind, Death::AfterFree);
        assert!(kills > 10, "{kind:?}: the writes made only {kills} frees");
        eprintln!("{kind:?}: died after each of {kills} frees, {rebuilds} rebuilds, nothing lost nor freed twice");
    }
}

/// How long the lock is held to make a large map again: the one hold that
/// grows with the map, and only after a death inside the allocator. Run with
/// `cargo test --release -p shared-map-engine --test journal -- --ignored --nocapture`.
#[test]
#[ignore]
fn the_time_to_make_a_large_map_again() {
    for kind in common::KINDS {
        let n = 500_000u64;
        let mut shared = SharedHeap::new(kind, 64 << 20, 1_000_000, false);
        let root = shared.heap.root();
        {
            let mut m = common::map(&mut shared.heap);
            for i in 0..n {
                m.add(format!("/counter/{i:08}").as_bytes(), 1, 0, Ttl::Default, 0)
                    .unwrap();
            }
        }
        let t0 = std::time::Instant::now();
        let snapshot = state::Snapshot::take(&mut common::map(&mut shared.heap), 0);
        let t1 = std::time::Instant::now();
        // SAFETY: nothing else uses the region; this is what `take_over` does.
        shared.heap = unsafe { Heap::init(shared.base(), 64 << 20) };
        let (rebuilt, report) = snapshot.restore(&mut shared.heap, None).unwrap();
        let t2 = std::time::Instant::now();
        assert_eq!((rebuilt, report.loaded), (root, n));
        eprintln!(
            "{kind:?}: {n} entries read in {:.0} ms, made again in {:.0} ms",
            (t1 - t0).as_secs_f64() * 1e3,
            (t2 - t1).as_secs_f64() * 1e3
        );
    }
}
