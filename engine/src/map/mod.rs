//! The map: a handle over a map in an arena, and its operations by key.
//!
//! A [`Map`] is a short-lived handle over an arena, made while the caller holds
//! the arena's lock; the map itself lives in the arena, rooted at a [`Header`]
//! whose offset the caller keeps (nginx keeps it in `shpool->data`). The
//! handle's internals are in the files beside this one, one concept each:
//! `header` (the root and its statistics), `chains` (find, link, unlink, walk),
//! `room` (sweep and eviction), `writes`, `matching` and `sync` (the
//! replication log).

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::arena::Arena;
use crate::error::Error;
use crate::hash::random_hash_key;
use crate::journal::{Journal, Recovery, RECOUNT};
use crate::matching::MatchMode;
use crate::raw::{Layout, Region};
use crate::spec::{self, MapKind};
use crate::value::{OwnedValue, Ttl, Value};

/// Calls the layout-generic `$f` for the map's layout.
macro_rules! dispatch {
    ($self:ident . $f:ident ( $($arg:expr),* )) => {
        match $self.kind() {
            $crate::spec::MapKind::Tiny => $self.$f::<$crate::raw::Tiny>($($arg),*),
            $crate::spec::MapKind::Hash => $self.$f::<$crate::raw::Hash>($($arg),*),
        }
    };
}

mod chains;
mod header;
mod lockless;
mod matching;
mod room;
mod sync;
mod writes;

pub use header::Stats;
use header::{Header, MAGIC};
pub use lockless::{Lockless, Reader};
pub use room::{MAX_CHAIN, MAX_EVICTIONS};
use writes::PutMode;

/// How a read by key treats the entry it finds. No read removes an entry, an
/// expired one included: expired entries go with the sweep, an eviction, or a
/// write to their key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Read {
    /// Marks the entry as used, for eviction. Without: a peek, which leaves
    /// the entry's recency as it was.
    pub touch: bool,
    /// Also finds an expired entry still held (not yet swept, evicted or
    /// overwritten): a stale read.
    pub stale: bool,
}

/// What a read by key found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit<'a> {
    /// The stored key: the key itself, or what a prefix or ip lookup matched.
    pub key: &'a [u8],
    pub value: Value<'a>,
    /// The entry has expired: only a stale read finds it.
    pub stale: bool,
}

/// What a map is created with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapConfig {
    pub kind: MapKind,
    pub entries: u64,
    /// Default time to live in seconds; 0 means never.
    pub timeout: u32,
    pub evict: bool,
}

impl From<&spec::Spec> for MapConfig {
    fn from(s: &spec::Spec) -> Self {
        MapConfig {
            kind: s.kind,
            entries: s.entries,
            timeout: s.timeout,
            evict: s.evict,
        }
    }
}

/// Why the last write of a handle found no room: what it needed and what it
/// did to make room before giving up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refusal {
    /// The allocation that failed, in bytes; 0 when the entries limit refused.
    pub bytes: usize,
    /// Live entries evicted while trying.
    pub evicted: usize,
    /// Expired entries reclaimed while trying.
    pub reclaimed: usize,
}

/// A handle on a map in an arena; the caller holds the arena's lock throughout.
pub struct Map<'a, A: Arena> {
    arena: &'a mut A,
    hdr: NonNull<Header>,
    refusal: Option<Refusal>,
    /// Writes through this handle are recorded in the replication log, if any.
    replicate: bool,
    /// What `attach` finished for a writer that died holding the lock.
    recovery: Option<Recovery>,
}

impl<'a, A: Arena> Map<'a, A> {
    /// Creates an empty map in `arena` and returns its header's offset, to be
    /// passed to [`Map::attach`] later (and in other processes).
    pub fn create(arena: &'a mut A, config: &MapConfig) -> Result<u64, Error> {
        Self::create_keyed(arena, config, random_hash_key()?)
    }

    /// [`Map::create`] with a given hash key: for tests that need to know it.
    pub fn create_keyed(arena: &'a mut A, config: &MapConfig, hash_key: [u64; 2]) -> Result<u64, Error> {
        if config.kind == MapKind::Tiny && arena.size() > spec::TINYMAP_MAX_SPACE {
            return Err(Error::NoRoom);
        }
        let buckets = spec::buckets_for(config.entries);
        let table_bytes = usize::try_from(buckets).map_err(|_| Error::NoRoom)? * config.kind.bucket_bytes();
        let table = arena.alloc(table_bytes).ok_or(Error::NoRoom)?;
        // SAFETY: a fresh allocation of table_bytes; zero means an empty bucket.
        unsafe { table.as_ptr().write_bytes(0, table_bytes) };
        let Some(hdr) = arena.alloc(core::mem::size_of::<Header>()) else {
            // SAFETY: allocated above, referenced by nothing.
            unsafe { arena.free(table) };
            return Err(Error::NoRoom);
        };
        let base = arena.base() as u64;
        // SAFETY: a fresh, 8-aligned allocation of a Header.
        unsafe {
            (hdr.as_ptr() as *mut Header).write(Header {
                magic: MAGIC,
                kind: config.kind as u32,
                evict: config.evict as u32,
                buckets,
                table: table.as_ptr() as u64 - base,
                max_entries: config.entries,
                timeout: config.timeout,
                clock: AtomicU32::new(0),
                len: AtomicU64::new(0),
                sweep_cursor: AtomicU64::new(0),
                evict_cursor: AtomicU64::new(0),
                generation: AtomicU64::new(0),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                evictions: AtomicU64::new(0),
                expirations: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                saved: AtomicU64::new(0),
                expiring: AtomicU32::new(0),
                journal: Journal::new(),
                match_mode: MatchMode::Exact as u32,
                filter_log2: 0,
                length_counts: 0,
                length_bits: Default::default(),
                hash_key,
                lock_waits: AtomicU64::new(0),
                lock_wait: AtomicU64::new(0),
                lock_hold_max: AtomicU64::new(0),
                replog: AtomicU64::new(0),
                epoch: AtomicU64::new(1),
                readers: 0,
                readers_used: AtomicU32::new(0),
                closed: AtomicU32::new(0),
            })
        };
        // The reader slots come last, so that a map too small for them still
        // works (under the lock alone).
        if let Some(slots) = arena.alloc(lockless::SLOTS_BYTES) {
            // SAFETY: a fresh allocation of SLOTS_BYTES; zero is a free slot.
            unsafe { slots.as_ptr().write_bytes(0, lockless::SLOTS_BYTES) };
            // SAFETY: the header just written; nothing else knows the map yet.
            unsafe { (*(hdr.as_ptr() as *mut Header)).readers = slots.as_ptr() as u64 - base };
        }
        Ok(hdr.as_ptr() as u64 - base)
    }

    /// Opens the map whose header is at `offset`, or `None` if there is none.
    ///
    /// # Safety
    /// `offset` was returned by [`Map::create`] on this arena's region, and the
    /// caller holds the region's lock for as long as the handle lives.
    pub unsafe fn attach(arena: &'a mut A, offset: u64) -> Option<Self> {
        if offset == 0 || offset as usize + core::mem::size_of::<Header>() > arena.size() {
            return None;
        }
        // SAFETY: the offset lies in the region, per the caller's contract.
        let hdr = unsafe { NonNull::new_unchecked(arena.base().add(offset as usize) as *mut Header) };
        // SAFETY: `hdr` lies inside the region (the caller's offset, checked above); the header was written
        // before its offset was published.
        let header = unsafe { hdr.as_ref() };
        let kind = MapKind::from_u32(header.kind)?;
        // The bucket table must lie inside the zone: every bucket index is
        // masked below `buckets`, and each slot read is checked again in `raw`.
        let table_end = header
            .buckets
            .checked_mul(kind.bucket_bytes() as u64)
            .and_then(|bytes| bytes.checked_add(header.table));
        if header.magic != MAGIC
            || !header.buckets.is_power_of_two()
            || table_end.is_none_or(|end| end > arena.size() as u64)
        {
            return None;
        }
        let pending = header.journal.pending();
        let mut map = Map {
            arena,
            hdr,
            refusal: None,
            replicate: true,
            recovery: None,
        };
        if pending != 0 {
            map.recover(pending);
        }
        Some(map)
    }

    /// Finishes the write of a process that died holding the lock (nginx's
    /// master force-unlocked it): frees the chunks it held outside the chains,
    /// and counts the chains again if it died between a link and its count.
    #[cold]
    fn recover(&mut self, pending: u32) {
        // What the dead writer held may still be seen by lock-free operations.
        self.synchronize();
        // SAFETY: the caller of `attach` holds the lock; the journal is this
        // map's, in the region, and no allocator call touches it.
        let mut recovery = unsafe { (*self.hdr.as_ptr()).journal.recover(&mut *self.arena) };
        if pending & RECOUNT != 0 {
            dispatch!(self.recount_in());
            recovery.recounted = true;
        }
        self.recovery = Some(recovery);
    }

    /// What [`Map::attach`] finished for a process that died holding the lock:
    /// `Some` once, on the first attach after such a death.
    pub fn recovery(&self) -> Option<Recovery> {
        self.recovery
    }

    /// The key's value, counting a hit or a miss and marking the entry as used.
    pub fn get(&mut self, key: &[u8], now: u32) -> Option<Value<'_>> {
        dispatch!(self.get_in(key, now, true))
    }

    /// The key's value without marking it as used and without counting.
    pub fn peek(&mut self, key: &[u8], now: u32) -> Option<Value<'_>> {
        dispatch!(self.get_in(key, now, false))
    }

    /// The key's value and its expiry time (0 = never), without marking it used.
    pub fn peek_with_expiry(&mut self, key: &[u8], now: u32) -> Option<(Value<'_>, u32)> {
        dispatch!(self.peek_expiry_in(key, now))
    }

    /// Stores `value`, returning the previous value: an exchange, as the
    /// lookup and the store happen in one hold of the caller's lock. An expired
    /// previous value is no value (`None`).
    pub fn put(&mut self, key: &[u8], value: Value<'_>, ttl: Ttl, now: u32) -> Result<Option<OwnedValue>, Error> {
        let key = self.write_key(key)?;
        let key = &*key;
        let hash = self.hash(key);
        let r = dispatch!(self.put_in(hash, key, value, ttl, now, PutMode::Always));
        if r.is_ok() {
            self.record(|log| log.record_latest(hash, key));
        }
        r
    }

    /// Stores `value` only if the key is absent; `Error::Exists` otherwise.
    pub fn put_if_absent(&mut self, key: &[u8], value: Value<'_>, ttl: Ttl, now: u32) -> Result<(), Error> {
        let key = self.write_key(key)?;
        let key = &*key;
        let hash = self.hash(key);
        let r = dispatch!(self.put_in(hash, key, value, ttl, now, PutMode::IfAbsent)).map(|_| ());
        if r.is_ok() {
            self.record(|log| log.record_latest(hash, key));
        }
        r
    }

    /// Stores `value` only if the key is present; `Error::NotFound` otherwise.
    pub fn replace(&mut self, key: &[u8], value: Value<'_>, ttl: Ttl, now: u32) -> Result<OwnedValue, Error> {
        let key = self.write_key(key)?;
        let key = &*key;
        let hash = self.hash(key);
        // `IfPresent` stores only over a previous value, which it returns.
        let r = dispatch!(self.put_in(hash, key, value, ttl, now, PutMode::IfPresent))
            .and_then(|prev| prev.ok_or(Error::NotFound));
        if r.is_ok() {
            self.record(|log| log.record_latest(hash, key));
        }
        r
    }

    /// Removes the key, returning its value.
    pub fn remove(&mut self, key: &[u8], now: u32) -> Option<OwnedValue> {
        let key = self.write_key(key).ok()?;
        let key = &*key;
        let hash = self.hash(key);
        let r = dispatch!(self.remove_in(hash, key, now));
        if r.is_some() {
            self.record(|log| log.record_latest(hash, key));
        }
        r
    }

    /// Adds `delta` to an int or long value; an absent key starts at `init` and
    /// is stored as a long with time to live `ttl`. Returns the new value.
    pub fn add(&mut self, key: &[u8], delta: i64, init: i64, ttl: Ttl, now: u32) -> Result<i64, Error> {
        let key = self.write_key(key)?;
        let key = &*key;
        // A key made here with an `init` other than 0: other hosts learn its value.
        let made = init != 0 && self.replicate && self.is_synced() && self.peek(key, now).is_none();
        let hash = self.hash(key);
        let r = dispatch!(self.add_in(hash, key, delta, init, ttl, now));
        if r.is_ok() {
            if made {
                self.record(|log| log.record_latest(hash, key));
            } else {
                self.record(|log| log.record_add(hash, key, delta));
            }
        }
        r
    }

    /// Removes every entry, in one hold of the lock. [`Map::clear_batch`]
    /// bounds each hold.
    pub fn clear(&mut self) {
        let mut cursor = 0;
        while let Some(next) = self.clear_batch(cursor, u64::MAX) {
            cursor = next;
        }
    }

    /// Removes every entry of the buckets from `cursor` on, at most
    /// `max_buckets` of them, one entry at a time (unlinked, then freed, so a
    /// process killed here leaks at most the entry it was freeing). Returns the
    /// cursor of the next batch, `None` when the last bucket was cleared.
    pub fn clear_batch(&mut self, cursor: u64, max_buckets: u64) -> Option<u64> {
        // The first batch replicates the clear: writes made between batches
        // follow it in the replication log.
        if cursor == 0 {
            self.record(|log| log.record_clear());
        }
        dispatch!(self.clear_in(cursor, max_buckets))
    }

    /// Calls `f` with each live entry whose key starts with `prefix`, with its
    /// expiry time (0 = never), in the buckets from `cursor` on, at most
    /// `max_buckets` of them. Returns the next batch's cursor, `None` when the
    /// last bucket was walked.
    ///
    /// Buckets are never rehashed, so a walk of consecutive batches (the lock
    /// released between them) yields every entry present for the whole walk
    /// exactly once: its bucket is fixed by its key. An entry written or removed
    /// meanwhile may or may not appear, and appears at most once; a value
    /// changed meanwhile appears as it was when its bucket was walked.
    pub fn walk<F>(&mut self, cursor: u64, max_buckets: u64, prefix: &[u8], now: u32, mut f: F) -> Option<u64>
    where
        F: FnMut(&[u8], Value<'_>, u32),
    {
        dispatch!(self.walk_in(cursor, max_buckets, prefix, now, &mut f))
    }

    /// Calls `f` with each live entry whose key starts with `prefix`, with its
    /// expiry time (0 = never), until `f` returns false. Order is unspecified.
    pub fn for_each<F>(&mut self, prefix: &[u8], now: u32, mut f: F)
    where
        F: FnMut(&[u8], Value<'_>, u32) -> bool,
    {
        dispatch!(self.for_each_in(prefix, now, &mut f))
    }

    /// Walks every chain and checks what readers rely on: each linked entry lies
    /// inside the zone, sits in the bucket its hash names, and its key still
    /// hashes to the stored hash (a torn entry would not). Returns how many
    /// entries are reachable, which equals `len()` (a handle made after a crash
    /// recounts). For tests of the publication rule.
    pub fn verify(&mut self) -> Result<u64, String> {
        dispatch!(self.verify_in())
    }

    /// Removes expired entries from at most `max_buckets` buckets, continuing
    /// where the previous sweep stopped. Returns how many were removed.
    pub fn sweep(&mut self, now: u32, max_buckets: u64) -> usize {
        dispatch!(self.sweep_in(now, max_buckets))
    }

    /// The key's value, counted and marked as used like [`Map::get`], with its
    /// expiry reset to `ttl` from `now`: a sliding expiry, as sessions need.
    /// An expired entry is removed and gives `None`, as in every lookup.
    pub fn get_renew(&mut self, key: &[u8], ttl: Ttl, now: u32) -> Option<Value<'_>> {
        // The renewed expiry replicates; a miss records nothing.
        if self.replicate && self.header().replog.load(Relaxed) != 0 && self.peek(key, now).is_some() {
            let hash = self.hash(key);
            self.record(|log| log.record_latest(hash, key));
        }
        dispatch!(self.get_renew_in(key, ttl, now))
    }
}

// The map's counters are atomics so that statistics can be read without the
// lock, but every writer holds the lock (or, for a reader slot's counters, is
// the slot's one process): a plain load and store replaces a locked
// read-modify-write instruction on the hot path.

pub(super) fn add_locked(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

fn sub_locked(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_sub(n), Relaxed);
}

/// Advances the logical use clock and returns the new stamp.
/// Advances the logical use clock and returns the new stamp. Under the lock:
/// the caller first brought the clock past the stamps of lock-free uses
/// (`Map::sync_clock`).
fn tick(clock: &AtomicU32) -> u32 {
    let stamp = clock.load(Relaxed).wrapping_add(1);
    clock.store(stamp, Relaxed);
    stamp
}

/// Expiry has a resolution of one second, the resolution of `now`: an entry
/// written at second `now` with a time to live of `t` expires at `now + t` and
/// is gone from second `now + t + 1` on. So it lives at least `t` seconds and
/// at most one more; a short `timeout=1s` never vanishes a moment after it was
/// written because a second boundary happened to pass.
fn expired(expire: u32, now: u32) -> bool {
    expire != 0 && expire < now
}

// Reads by key, under the lock.
impl<A: Arena> Map<'_, A> {
    fn base(&self) -> Region {
        Region::new(self.arena.base(), self.arena.size())
    }

    fn get_in<L: Layout>(&mut self, key: &[u8], now: u32, touch: bool) -> Option<Value<'_>> {
        let hash = self.hash(key);
        match self.find_held::<L>(hash, key, now) {
            Some((_, e)) => {
                if touch {
                    add_locked(&self.header().hits, 1);
                    self.touch::<L>(e);
                }
                // `e` stays live until the next write, which needs `&mut self`.
                Some(self.read::<L>(e))
            }
            None => {
                if touch {
                    add_locked(&self.header().misses, 1);
                }
                None
            }
        }
    }

    fn get_renew_in<L: Layout>(&mut self, key: &[u8], ttl: Ttl, now: u32) -> Option<Value<'_>> {
        let expire = self.expire_at(ttl, now);
        let Some((_, e)) = self.lookup::<L>(self.hash(key), key, now) else {
            add_locked(&self.header().misses, 1);
            return None;
        };
        add_locked(&self.header().hits, 1);
        self.touch::<L>(e);
        // The expiry is one word. Not a write for `generation`: renewing on
        // every read would make every read look like a change to a saver.
        e.expire(self.base()).store(expire, Relaxed);
        // `e` stays live until the next write, which needs `&mut self`.
        Some(self.read::<L>(e))
    }

    fn peek_expiry_in<L: Layout>(&mut self, key: &[u8], now: u32) -> Option<(Value<'_>, u32)> {
        let (_, e) = self.find_held::<L>(self.hash(key), key, now)?;
        Some((self.read::<L>(e), e.expire(self.base()).load(Relaxed)))
    }
}
