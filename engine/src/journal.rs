//! What a write in progress holds outside the map, so that the next holder of
//! the lock can finish it when the writer dies holding the lock.
//!
//! nginx's master force-unlocks the slab mutex of a worker that dies holding it,
//! and the next worker to take the mutex finds the map as the dead one left it.
//! Chains are always whole (an entry is written before the one store that links
//! it, and unlinked before it is freed), but without a record the chunks the
//! write had allocated and not yet linked, or unlinked and not yet freed, would
//! be lost until nginx restarts.
//!
//! The journal records them, in the map's header:
//! - `fresh`: chunks allocated by the write in progress that nothing links yet
//!   (recorded by [`Tracked`] as the allocator returns them);
//! - `retired`: chunks of an entry or string the write is dropping, recorded
//!   before the store that unlinks them, and forgotten one by one as they are
//!   freed;
//! - the commit: the one store that links `fresh` (when `ADOPT`) and unlinks
//!   `retired`: where it goes, and the value it writes.
//!
//! [`Journal::recover`] finishes the write: if the commit's slot holds the
//! commit's value, the store happened, and `retired` is freed (and `fresh` too
//! unless the store linked it); otherwise `fresh` is freed and `retired` stays
//! linked.
//!
//! What the journal cannot finish is a call into the allocator itself (nginx's
//! slab allocator moves pages between lists in several stores, and a kill
//! between two leaves the lists broken: later allocations crash) or into the
//! replication log (two lists as well). Such calls run with `IN_ALLOCATOR` set;
//! a writer that died inside one leaves it set, and the next lock holder
//! rebuilds the whole arena from the map's entries, which are always whole
//! (`state::Snapshot`).

use core::ptr::NonNull;
use core::sync::atomic::{
    AtomicU32, AtomicU64,
    Ordering::{Relaxed, Release},
};

use crate::arena::Arena;

/// Chunks of each kind one write holds at most: a string value, an entry, and a
/// tinymap's separate key chunk.
const SLOTS: usize = 4;

/// `pending` bit: a link or unlink has not yet been counted in the map's length.
pub(crate) const RECOUNT: u32 = 1;
/// `pending` bit: the journal holds chunks or a commit.
const JOURNALED: u32 = 2;
/// `pending` bit: the lock holder is inside the allocator or the replication
/// log, whose own state a death can tear.
pub(crate) const IN_ALLOCATOR: u32 = 4;

/// `flags` bit: the commit's slot is 8 bytes wide (else 4).
const WIDE: u32 = 1;
/// `flags` bit: the commit links the `fresh` chunks.
const ADOPT: u32 = 2;

/// The journal, part of the map's header in the zone. Written only by the lock's
/// holder; every field is one aligned word, written with one store.
#[repr(C)]
pub(crate) struct Journal {
    /// Nonzero when the last holder of the lock died with work unfinished:
    /// `RECOUNT`, `JOURNALED` and `IN_ALLOCATOR` bits. The one word a lock
    /// holder reads.
    pending: AtomicU32,
    flags: AtomicU32,
    fresh: [AtomicU64; SLOTS],
    retired: [AtomicU64; SLOTS],
    /// Offset of the commit's store; 0 when no commit is under way.
    slot: AtomicU64,
    value: AtomicU64,
}

/// What [`Journal::recover`] did for a writer that died holding the lock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Chunks handed back to the allocator.
    pub freed: usize,
    /// Whether the dead writer's store had happened (its change stays).
    pub committed: bool,
    /// Whether the map's length was counted again.
    pub recounted: bool,
    /// The writer died inside the allocator or the replication log: nothing
    /// was freed, and the arena must be rebuilt from the map's entries
    /// (`state::Snapshot`) before anything else allocates in it.
    pub rebuild: bool,
}

impl Journal {
    pub(crate) fn new() -> Journal {
        Journal {
            pending: AtomicU32::new(0),
            flags: AtomicU32::new(0),
            fresh: Default::default(),
            retired: Default::default(),
            slot: AtomicU64::new(0),
            value: AtomicU64::new(0),
        }
    }

    /// The bits left by a writer that died holding the lock; 0 normally.
    #[inline(always)]
    pub(crate) fn pending(&self) -> u32 {
        self.pending.load(Relaxed)
    }

    fn set(&self, bit: u32) {
        self.pending.store(self.pending.load(Relaxed) | bit, Relaxed);
    }

    fn unset(&self, bit: u32) {
        self.pending.store(self.pending.load(Relaxed) & !bit, Release);
    }

    pub(crate) fn begin_count(&self) {
        self.set(RECOUNT);
    }

    pub(crate) fn end_count(&self) {
        self.unset(RECOUNT);
    }

    pub(crate) fn enter_allocator(&self) {
        self.set(IN_ALLOCATOR);
    }

    pub(crate) fn leave_allocator(&self) {
        self.unset(IN_ALLOCATOR);
    }

    fn put(&self, list: &[AtomicU64; SLOTS], off: u64) {
        self.set(JOURNALED);
        if let Some(s) = list.iter().find(|s| s.load(Relaxed) == 0) {
            s.store(off, Relaxed);
        } else {
            debug_assert!(false, "a write holds more than {SLOTS} chunks");
        }
    }

    /// Records a chunk the allocator just returned to the write in progress.
    fn hold(&self, off: u64) {
        self.put(&self.fresh, off);
    }

    /// Records a chunk the coming commit unlinks, to be freed after it.
    pub(crate) fn retire(&self, off: u64) {
        if off != 0 {
            self.put(&self.retired, off);
        }
    }

    /// Forgets a chunk whose free returned.
    fn released(&self, off: u64) {
        for s in self.fresh.iter().chain(&self.retired) {
            if s.load(Relaxed) == off {
                s.store(0, Relaxed);
                return;
            }
        }
    }

    /// Records the commit: the store of `value` at the offset `slot`, 8 bytes
    /// wide or 4, which links the fresh chunks when `adopt`.
    pub(crate) fn begin_commit(&self, slot: u64, wide: bool, value: u64, adopt: bool) {
        self.set(JOURNALED);
        self.value.store(value, Relaxed);
        self.flags
            .store(if wide { WIDE } else { 0 } | if adopt { ADOPT } else { 0 }, Relaxed);
        self.slot.store(slot, Release);
    }

    /// After the commit's store: the fresh chunks it linked belong to the map.
    pub(crate) fn committed(&self) {
        if self.flags.load(Relaxed) & ADOPT != 0 {
            for s in &self.fresh {
                s.store(0, Relaxed);
            }
        }
    }

    /// After the commit's retired chunks were freed: the commit is over.
    pub(crate) fn end_commit(&self) {
        for s in &self.retired {
            s.store(0, Relaxed);
        }
        self.slot.store(0, Relaxed);
        self.flags.store(0, Relaxed);
        self.settle();
    }

    /// Clears the `JOURNALED` bit when the write holds nothing any more.
    pub(crate) fn settle(&self) {
        if self.pending.load(Relaxed) & JOURNALED != 0
            && self.slot.load(Relaxed) == 0
            && self.fresh.iter().chain(&self.retired).all(|s| s.load(Relaxed) == 0)
        {
            self.unset(JOURNALED);
        }
    }

    /// Finishes the write of a process that died holding the lock: frees what
    /// it held outside the map and empties the journal. The caller counts the
    /// map's length again when `RECOUNT` was set (it knows the chains). A
    /// writer that died inside the allocator is not finished here: the arena
    /// must be rebuilt, and until it is, nothing is freed in it.
    ///
    /// # Safety
    /// The lock is held, and the journal belongs to a map in `arena`'s region.
    pub(crate) unsafe fn recover<A: Arena>(&self, arena: &mut A) -> Recovery {
        if self.pending() & IN_ALLOCATOR != 0 {
            return Recovery {
                rebuild: true,
                ..Recovery::default()
            };
        }
        let size = arena.size() as u64;
        let inside = |off: u64, len: u64| off != 0 && off & (len - 1) == 0 && off <= size - len;
        let slot = self.slot.load(Relaxed);
        let flags = self.flags.load(Relaxed);
        let value = self.value.load(Relaxed);
        let committed = if flags & WIDE != 0 && inside(slot, 8) {
            // SAFETY: an aligned word inside the zone, read under the lock.
            unsafe { (*(arena.base().add(slot as usize) as *const AtomicU64)).load(Relaxed) == value }
        } else if flags & WIDE == 0 && inside(slot, 4) {
            // SAFETY: an aligned 4-byte link inside the zone (`inside` checked it), read under the lock.
            unsafe { (*(arena.base().add(slot as usize) as *const AtomicU32)).load(Relaxed) as u64 == value }
        } else {
            false
        };
        let mut freed = 0;
        let mut free = |list: &[AtomicU64; SLOTS]| {
            for off in list.iter().map(|s| s.load(Relaxed)).filter(|&off| inside(off, 8)) {
                // SAFETY: a chunk the dead writer allocated and nothing links:
                // not linked before its commit, or unlinked by it. It died
                // outside the allocator, so the chunk is allocated.
                unsafe { arena.free(NonNull::new_unchecked(arena.base().add(off as usize))) };
                freed += 1;
            }
        };
        if !(committed && flags & ADOPT != 0) {
            free(&self.fresh);
        }
        if committed {
            free(&self.retired);
        }
        for s in self.fresh.iter().chain(&self.retired) {
            s.store(0, Relaxed);
        }
        self.slot.store(0, Relaxed);
        self.flags.store(0, Relaxed);
        self.unset(JOURNALED);
        Recovery {
            freed,
            committed,
            ..Recovery::default()
        }
    }
}

/// The arena as a write uses it: each allocation is recorded in the journal as
/// the allocator returns it, and forgotten when it is freed, inside the same
/// `IN_ALLOCATOR` window as the call.
pub(crate) struct Tracked<'t, A: Arena> {
    pub(crate) arena: &'t mut A,
    pub(crate) journal: &'t Journal,
}

// SAFETY: every call is passed on to the arena, which keeps its guarantees.
unsafe impl<A: Arena> Arena for Tracked<'_, A> {
    fn base(&self) -> *mut u8 {
        self.arena.base()
    }

    fn size(&self) -> usize {
        self.arena.size()
    }

    fn alloc(&mut self, size: usize) -> Option<NonNull<u8>> {
        self.journal.enter_allocator();
        let p = self.arena.alloc(size);
        if let Some(p) = p {
            self.journal.hold(p.as_ptr() as u64 - self.arena.base() as u64);
        }
        self.journal.leave_allocator();
        p
    }

    unsafe fn free(&mut self, ptr: NonNull<u8>) {
        self.journal.enter_allocator();
        // SAFETY: per the caller's contract.
        unsafe { self.arena.free(ptr) };
        self.journal.released(ptr.as_ptr() as u64 - self.arena.base() as u64);
        self.journal.leave_allocator();
    }

    fn free_bytes(&self) -> usize {
        self.arena.free_bytes()
    }

    fn capacity(&self) -> usize {
        self.arena.capacity()
    }
}
