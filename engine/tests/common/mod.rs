//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use shared_map_engine::heap::Heap;
use shared_map_engine::state::Snapshot;
use shared_map_engine::{Map, MapConfig, MapKind, MatchMode, Recovery};

pub const KINDS: [MapKind; 2] = [MapKind::Tiny, MapKind::Hash];

/// A heap of `space` bytes holding one empty map.
pub fn new_map(kind: MapKind, space: usize, entries: u64, timeout: u32, evict: bool) -> Heap {
    let config = MapConfig {
        kind,
        entries,
        timeout,
        evict,
    };
    Heap::with_map(space, &config).expect("create map")
}

/// Opens the map kept at the heap's root.
pub fn map(heap: &mut Heap) -> Map<'_, Heap> {
    let root = heap.root();
    // SAFETY: the root came from `Map::create` on this heap; tests are single-threaded
    // or hold the heap's lock.
    unsafe { Map::attach(heap, root) }.expect("attach map")
}

/// An anonymous `MAP_SHARED` region holding a heap with one empty map at its root,
/// for tests that fork writers into it: the children see the parent's mapping at
/// the same address. Unmapped when dropped.
pub struct SharedHeap {
    base: *mut u8,
    size: usize,
    pub heap: Heap,
}

impl SharedHeap {
    pub fn new(kind: MapKind, size: usize, entries: u64, evict: bool) -> SharedHeap {
        Self::new_matching(kind, size, entries, evict, MatchMode::Exact)
    }

    /// [`SharedHeap::new`] with a map matching lookups by `mode`.
    pub fn new_matching(kind: MapKind, size: usize, entries: u64, evict: bool, mode: MatchMode) -> SharedHeap {
        // SAFETY: a fresh anonymous mapping; nothing else refers to it.
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
        assert_ne!(base, libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
        let base = base as *mut u8;
        // SAFETY: the mapping is fresh, page-aligned and stays mapped until `drop`.
        let mut heap = unsafe { Heap::init(base, size) };
        let config = MapConfig {
            kind,
            entries,
            timeout: 0,
            evict,
        };
        let root = Map::create_matching(&mut heap, &config, mode).expect("create map");
        heap.set_root(root);
        SharedHeap { base, size, heap }
    }

    /// Takes the map over after its writer died holding the lock, as the
    /// module does: releases the lock (nginx's master force-unlocks a dead
    /// worker's mutex), attaches, which finishes the dead writer's write from
    /// the journal, and, if the writer died inside the allocator, rebuilds the
    /// heap from the map's entries. Returns what attaching reported.
    pub fn take_over(&mut self) -> Option<Recovery> {
        self.heap.force_unlock();
        let root = self.heap.root();
        let recovery = map(&mut self.heap).recovery();
        if recovery.is_some_and(|r| r.rebuild) {
            let snapshot = Snapshot::take(&mut map(&mut self.heap), 0);
            // SAFETY: the region is ours (the writer is dead) and stays mapped;
            // formatting it again is what resetting nginx's slab pool does.
            self.heap = unsafe { Heap::init(self.base, self.size) };
            let (rebuilt, _) = snapshot.restore(&mut self.heap, None).expect("restore the map");
            assert_eq!(rebuilt, root, "the map is made again where it was");
            self.heap.set_root(root);
        }
        recovery
    }

    /// The start of the shared region.
    pub fn base(&self) -> *mut u8 {
        self.base
    }

    /// The heap as a forked child opens it (through the region's header only).
    pub fn open_in_child(&self) -> Heap {
        // SAFETY: formatted in `new`; the child inherited the mapping at this address.
        unsafe { Heap::open(self.base) }.expect("open shared heap")
    }
}

impl Drop for SharedHeap {
    fn drop(&mut self) {
        // SAFETY: mapped in `new`; `heap` does not own the region and is not used after.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.size) };
    }
}

/// Forks a child that runs `child` and leaves with `_exit`: status 0, or 1 if it
/// panicked, so it never returns into its copy of the test harness. Returns its pid.
pub fn fork_child(child: impl FnOnce()) -> libc::pid_t {
    // SAFETY: the child only runs `child`, which touches the shared region, and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).is_ok();
        // SAFETY: leave without running the destructors of the parent's copy.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    pid
}

/// Waits for a child of `fork_child` and asserts that it exited with 0 (it
/// neither panicked nor died by a signal).
pub fn wait_ok(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: `pid` is a child of this process; `status` is ours.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child {pid} failed (wait status {status:#x})"
    );
}
