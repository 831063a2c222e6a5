//! The map's root in the arena, its settings and its statistics.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use super::{add_locked, Map, MapConfig, Refusal};
use crate::arena::Arena;
use crate::hash::{etag_key, hash_key};
use crate::journal::{Journal, Tracked};
use crate::matching;
use crate::spec::MapKind;

pub(super) const MAGIC: u64 = u64::from_le_bytes(*b"SHMAP\0\0\x05");

/// A snapshot of a map's statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub entries: u64,
    pub max_entries: u64,
    pub space: u64,
    pub free_space: u64,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub expirations: u64,
    pub refused: u64,
    /// Lock acquisitions that found the lock taken and had to wait.
    pub lock_waits: u64,
    /// The time they waited in all, in the caller's clock units (see [`Map::note_wait`]).
    pub lock_wait: u64,
    /// The longest hold of the lock since the map was created, in the same units.
    pub lock_hold_max: u64,
}

/// The root of a map in the arena.
#[repr(C)]
pub(super) struct Header {
    pub(super) magic: u64,
    pub(super) kind: u32,
    pub(super) evict: u32,
    pub(super) buckets: u64,
    /// Offset of the bucket table.
    pub(super) table: u64,
    pub(super) max_entries: u64,
    pub(super) timeout: u32,
    /// The logical clock stamped into entries on use; eviction compares ages.
    pub(super) clock: AtomicU32,
    pub(super) len: AtomicU64,
    pub(super) sweep_cursor: AtomicU64,
    pub(super) evict_cursor: AtomicU64,
    /// Bumped by every write, so a saver knows whether the map changed.
    pub(super) generation: AtomicU64,
    pub(super) hits: AtomicU64,
    pub(super) misses: AtomicU64,
    pub(super) evictions: AtomicU64,
    pub(super) expirations: AtomicU64,
    pub(super) refused: AtomicU64,
    /// The generation last written to the state file (see `state`).
    pub(super) saved: AtomicU64,
    /// Set once any entry was written with an expiry time; sweeping a map that
    /// never had one is skipped.
    pub(super) expiring: AtomicU32,
    /// What the write in progress holds outside the chains, and whether a link
    /// or unlink is not yet counted in `len`: a process killed holding the lock
    /// leaves it set, and the next lock holder finishes the write (`attach`),
    /// so neither memory nor `len` drifts with crashes.
    pub(super) journal: Journal,
    /// How lookups match (`matching::MatchMode`), fixed at creation.
    pub(super) match_mode: u32,
    /// The log2 of the probe filter's one-byte cells (`matching::Filter`),
    /// which follow the length counts; 0: the map has none and probes every
    /// length it holds.
    pub(super) filter_log2: u32,
    /// Offset of a prefix or ip map's key count per length slot (`u32` ×
    /// `matching::SLOTS`), then of its probe filter; 0 for an exact map.
    pub(super) length_counts: u64,
    /// The slots whose count is nonzero: the lengths a lookup probes.
    pub(super) length_bits: [AtomicU64; matching::SLOTS / 64],
    /// The SipHash-1-3 key, drawn from the OS random source when the map is
    /// created and kept with the map (a reload that keeps the zone keeps it).
    pub(super) hash_key: [u64; 2],
    /// Lock statistics, written by the lock's holder: see [`Map::note_wait`].
    pub(super) lock_waits: AtomicU64,
    pub(super) lock_wait: AtomicU64,
    pub(super) lock_hold_max: AtomicU64,
    /// Offset of the replication log of a map with `sync` (`replog`); 0 without.
    pub(super) replog: AtomicU64,
    /// The reclamation epoch (see `lockless`): lock-free operations announce
    /// it, and a lock holder about to free what it unlinked bumps it and waits
    /// for every operation that announced an older one. Starts at 1.
    pub(super) epoch: AtomicU64,
    /// Offset of the reader slots (`lockless::READERS` of them); 0 when the
    /// map has none, and then nothing is done without the lock.
    pub(super) readers: u64,
    /// How many reader slots were ever claimed: the slots a grace period scans.
    pub(super) readers_used: AtomicU32,
    /// Nonzero while the zone is being rebuilt: lock-free operations take the lock.
    pub(super) closed: AtomicU32,
}

impl<'a, A: Arena> Map<'a, A> {
    /// The key of the map's ETags ([`etag_key`]): the same in every worker
    /// and across reloads, as long as the map's zone is kept.
    pub fn etag_key(&self) -> [u64; 2] {
        etag_key(self.header().hash_key)
    }

    /// The map's SipHash key, to make the map again with it.
    pub(crate) fn hash_secret(&self) -> [u64; 2] {
        self.header().hash_key
    }

    pub(super) fn journal(&self) -> &Journal {
        &self.header().journal
    }

    /// The arena, with every allocation and free recorded in the journal.
    pub(super) fn tracked(&mut self) -> Tracked<'_, A> {
        // SAFETY: the header lives in the region as long as the handle (see
        // `header`); the journal is a field the arena's allocator never touches.
        let journal = unsafe { &(*self.hdr.as_ptr()).journal };
        Tracked {
            arena: &mut *self.arena,
            journal,
        }
    }

    pub(super) fn header(&self) -> &Header {
        // SAFETY: `attach` checked the header, which lives as long as the region.
        unsafe { self.hdr.as_ref() }
    }

    pub(super) fn kind(&self) -> MapKind {
        match self.header().kind {
            1 => MapKind::Tiny,
            _ => MapKind::Hash,
        }
    }

    /// The configuration the map was created with.
    pub fn config(&self) -> MapConfig {
        let h = self.header();
        MapConfig {
            kind: self.kind(),
            entries: h.max_entries,
            timeout: h.timeout,
            evict: h.evict != 0,
        }
    }

    /// Changes the settings that do not affect the layout (on a reload).
    pub fn reconfigure(&mut self, timeout: u32, evict: bool) {
        // SAFETY: the lock is held; these fields are plain words read under it.
        unsafe {
            let h = self.hdr.as_mut();
            h.timeout = timeout;
            h.evict = evict as u32;
        }
    }

    /// The number of live (and not yet reclaimed expired) entries.
    pub fn len(&self) -> u64 {
        self.header().len.load(Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A counter that changes whenever the map is written.
    pub fn generation(&self) -> u64 {
        self.header()
            .generation
            .load(Relaxed)
            .wrapping_add(self.lockless_changes())
    }

    /// The generation last recorded by [`Map::set_saved_generation`].
    pub fn saved_generation(&self) -> u64 {
        self.header().saved.load(Relaxed)
    }

    /// Records that the map's state as of `generation` is on disk; never moves
    /// backwards, so a slower saver of an older snapshot cannot undo a newer one.
    pub fn set_saved_generation(&mut self, generation: u64) {
        self.header().saved.fetch_max(generation, Relaxed);
    }

    /// The bucket count, fixed at creation.
    pub fn buckets(&self) -> u64 {
        self.header().buckets
    }

    /// Why the last write through this handle returned [`Error::NoRoom`].
    pub fn refusal(&self) -> Option<Refusal> {
        self.refusal
    }

    pub fn stats(&self) -> Stats {
        let h = self.header();
        Stats {
            entries: h.len.load(Relaxed),
            max_entries: h.max_entries,
            space: self.arena.size() as u64,
            free_space: self.arena.free_bytes() as u64,
            hits: h.hits.load(Relaxed).wrapping_add(self.lockless_hits()),
            misses: h.misses.load(Relaxed).wrapping_add(self.lockless_misses()),
            evictions: h.evictions.load(Relaxed),
            expirations: h.expirations.load(Relaxed),
            refused: h.refused.load(Relaxed),
            lock_waits: h.lock_waits.load(Relaxed),
            lock_wait: h.lock_wait.load(Relaxed),
            lock_hold_max: h.lock_hold_max.load(Relaxed),
        }
    }

    /// The hash of `key` in this map.
    pub fn hash(&self, key: &[u8]) -> u32 {
        hash_key(self.header().hash_key, key)
    }

    /// Records that taking the lock for this handle had to wait `waited` (in the
    /// caller's clock units). Called right after the lock was acquired.
    pub fn note_wait(&mut self, waited: u64) {
        let h = self.header();
        add_locked(&h.lock_waits, 1);
        add_locked(&h.lock_wait, waited);
    }

    /// Starts the lock statistics afresh (after a load that nobody waited for).
    pub fn reset_lock_stats(&mut self) {
        let h = self.header();
        h.lock_waits.store(0, Relaxed);
        h.lock_wait.store(0, Relaxed);
        h.lock_hold_max.store(0, Relaxed);
    }

    /// Records that the lock was held for `held`, right before it is released.
    pub fn note_hold(&mut self, held: u64) {
        let h = self.header();
        if held > h.lock_hold_max.load(Relaxed) {
            h.lock_hold_max.store(held, Relaxed);
        }
    }
}
