//! The map operations: lookup, insertion, atomic add, expiry and eviction.
//!
//! A [`Map`] is a short-lived handle over an arena, made while the caller holds
//! the arena's lock; the map itself lives in the arena, rooted at a [`Header`]
//! whose offset the caller keeps (nginx keeps it in `shpool->data`).

use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{
    AtomicU32, AtomicU64,
    Ordering::{Relaxed, Release},
};

use std::borrow::Cow;

use siphasher::sip::SipHasher13;

use crate::arena::Arena;
use crate::journal::{Journal, Recovery, Tracked, RECOUNT};
use crate::matching::{self, IpRange, MatchMode};
use crate::raw::{footprint, Hash, Layout, NewEntry, Region, Tiny, ValueType};
use crate::replog::{Batch, Log, LogStats, Op, Status};
use crate::spec::{self, MapKind};

const MAGIC: u64 = u64::from_le_bytes(*b"SHMAP\0\0\x04");

/// How many buckets one eviction or reclamation step looks at, at most.
const SCAN_BUCKETS: u64 = 256;
/// How many buckets a single write may sweep for expired entries when the map
/// is full, before it evicts (with `evict`) or gives up (without).
const SWEEP_BUDGET: u64 = 1024;
/// How many live entries eviction compares before choosing the least recent.
const EVICT_SAMPLE: usize = 8;
/// How many entries a single write may evict before it gives up. One is enough
/// for the entries limit; space may need many when freed chunks are scattered
/// over slab pages that stay partly used (fragmentation).
pub const MAX_EVICTIONS: usize = 512;
/// The most entries one bucket's chain holds. With a keyed hash and a load
/// factor of at most 0.75, a chain this long happens by chance with probability
/// about 1e-16 per bucket; it is a second line of defence against keys crafted to
/// collide (should the hash key ever leak), so that no lookup walks more than
/// this many entries. A new key for a full chain evicts that chain's least
/// recently used entry (with `evict`) or is refused ([`Error::ChainFull`]).
pub const MAX_CHAIN: usize = 16;

/// A value as stored: `int` and `long` inside the entry, `string` in the arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    Int(i32),
    Long(i64),
    Str(&'a [u8]),
}

impl Value<'_> {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::Int(_) => ValueType::Int,
            Value::Long(_) => ValueType::Long,
            Value::Str(_) => ValueType::String,
        }
    }

    pub fn to_owned(&self) -> OwnedValue {
        match *self {
            Value::Int(v) => OwnedValue::Int(v),
            Value::Long(v) => OwnedValue::Long(v),
            Value::Str(s) => OwnedValue::Str(s.to_vec()),
        }
    }
}

/// A value copied out of the map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnedValue {
    Int(i32),
    Long(i64),
    Str(Vec<u8>),
}

impl OwnedValue {
    pub fn as_value(&self) -> Value<'_> {
        match self {
            OwnedValue::Int(v) => Value::Int(*v),
            OwnedValue::Long(v) => Value::Long(*v),
            OwnedValue::Str(s) => Value::Str(s),
        }
    }
}

/// The time to live of a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ttl {
    /// The map's `timeout`.
    Default,
    /// Never expires.
    Never,
    /// Expires this many seconds from now.
    Secs(u32),
}

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

/// Why an operation was refused. A refused operation changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The map is full (entries or space) and could not evict.
    NoRoom,
    /// The existing value has another type than the operation needs.
    TypeConflict,
    /// The arithmetic would overflow.
    Overflow,
    /// The key is longer than the map allows.
    KeyTooLarge,
    /// The value is longer than the map allows.
    ValueTooLarge,
    /// `put_if_absent` found the key present.
    Exists,
    /// `replace` found the key absent.
    NotFound,
    /// The key of a write to an ip map is no IP address or range.
    InvalidKey,
    /// The key's bucket already holds [`MAX_CHAIN`] entries and the map does
    /// not evict.
    ChainFull,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::NoRoom => "map is full",
            Error::TypeConflict => "type conflict",
            Error::Overflow => "overflow",
            Error::KeyTooLarge => "key too large",
            Error::ValueTooLarge => "value too large",
            Error::Exists => "key exists",
            Error::NotFound => "key not found",
            Error::InvalidKey => "not an IP address or range",
            Error::ChainFull => "too many keys collide in one bucket",
        })
    }
}

impl std::error::Error for Error {}

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
struct Header {
    magic: u64,
    kind: u32,
    evict: u32,
    buckets: u64,
    /// Offset of the bucket table.
    table: u64,
    max_entries: u64,
    timeout: u32,
    /// The logical clock stamped into entries on use; eviction compares ages.
    clock: AtomicU32,
    len: AtomicU64,
    sweep_cursor: AtomicU64,
    evict_cursor: AtomicU64,
    /// Bumped by every write, so a saver knows whether the map changed.
    generation: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    expirations: AtomicU64,
    refused: AtomicU64,
    /// The generation last written to the state file (see `state`).
    saved: AtomicU64,
    /// Set once any entry was written with an expiry time; sweeping a map that
    /// never had one is skipped.
    expiring: AtomicU32,
    /// What the write in progress holds outside the chains, and whether a link
    /// or unlink is not yet counted in `len`: a process killed holding the lock
    /// leaves it set, and the next lock holder finishes the write (`attach`),
    /// so neither memory nor `len` drifts with crashes.
    journal: Journal,
    /// How lookups match (`matching::MatchMode`), fixed at creation.
    match_mode: u32,
    match_pad: u32,
    /// Offset of a prefix or ip map's key count per length slot (`u32` ×
    /// `matching::SLOTS`); 0 for an exact map.
    length_counts: u64,
    /// The slots whose count is nonzero: the lengths a lookup probes.
    length_bits: [AtomicU64; matching::SLOTS / 64],
    /// The SipHash-1-3 key, drawn from the OS random source when the map is
    /// created and kept with the map (a reload that keeps the zone keeps it).
    hash_key: [u64; 2],
    /// Lock statistics, written by the lock's holder: see [`Map::note_wait`].
    lock_waits: AtomicU64,
    lock_wait: AtomicU64,
    lock_hold_max: AtomicU64,
    /// Offset of the replication log of a map with `sync` (`replog`); 0 without.
    replog: AtomicU64,
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

/// What one write did so far to make room; bounds that work.
#[derive(Default)]
struct Room {
    swept: u64,
    /// Eviction steps taken, whatever each freed.
    steps: usize,
    evicted: usize,
    reclaimed: usize,
}

/// Where an entry is linked from: a bucket or the previous entry of its chain.
#[derive(Clone, Copy)]
enum Link {
    Bucket(u64),
    Entry(u64),
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

macro_rules! dispatch {
    ($self:ident . $f:ident ( $($arg:expr),* )) => {
        match $self.kind() {
            MapKind::Tiny => $self.$f::<Tiny>($($arg),*),
            MapKind::Hash => $self.$f::<Hash>($($arg),*),
        }
    };
}

/// The key's hash: SipHash-1-3 under the map's secret 128-bit key, its low 32
/// bits kept in the entry (the bucket is their low bits).
///
/// nginx-clojure hashes with MurmurHash3 x86 32-bit, seed 0: anyone can compute
/// offline keys that all land in one bucket, and MurmurHash3 has seed-independent
/// multicollisions, so a random seed alone would not help. SipHash is a keyed
/// pseudo-random function: without the key, colliding keys cannot be chosen.
pub fn hash_key(secret: [u64; 2], key: &[u8]) -> u32 {
    SipHasher13::new_with_keys(secret[0], secret[1]).hash(key) as u32
}

/// The key of a map's ETags, derived from its secret hash key: a value's ETag
/// (`shared_map_http_parse::conditional::etag`) is a keyed hash under it, so
/// nobody without the secret can make two values share one. A key of its own
/// (SipHash-2-4-128 of a label under the secret) keeps the ETags that every
/// reader sees apart from the hashes that place keys in buckets.
fn etag_key(secret: [u64; 2]) -> [u64; 2] {
    let h = siphasher::sip128::SipHasher24::new_with_keys(secret[0], secret[1]).hash(b"shared map etag key");
    [h.h1, h.h2]
}

/// A fresh hash key from the operating system's random source.
fn random_hash_key() -> Result<[u64; 2], Error> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|_| Error::NoRoom)?;
    let (a, b) = bytes.split_at(8);
    Ok([
        u64::from_le_bytes(a.try_into().unwrap_or_default()),
        u64::from_le_bytes(b.try_into().unwrap_or_default()),
    ])
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
                match_pad: 0,
                length_counts: 0,
                length_bits: Default::default(),
                hash_key,
                lock_waits: AtomicU64::new(0),
                lock_wait: AtomicU64::new(0),
                lock_hold_max: AtomicU64::new(0),
                replog: AtomicU64::new(0),
            })
        };
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
        // SAFETY: as above; the header was written before its offset was published.
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

    /// The key of the map's ETags ([`etag_key`]): the same in every worker
    /// and across reloads, as long as the map's zone is kept.
    pub fn etag_key(&self) -> [u64; 2] {
        etag_key(self.header().hash_key)
    }

    /// The map's SipHash key, to make the map again with it.
    pub(crate) fn hash_secret(&self) -> [u64; 2] {
        self.header().hash_key
    }

    fn journal(&self) -> &Journal {
        &self.header().journal
    }

    /// The arena, with every allocation and free recorded in the journal.
    fn tracked(&mut self) -> Tracked<'_, A> {
        // SAFETY: the header lives in the region as long as the handle (see
        // `header`); the journal is a field the arena's allocator never touches.
        let journal = unsafe { &(*self.hdr.as_ptr()).journal };
        Tracked {
            arena: &mut *self.arena,
            journal,
        }
    }

    /// The offset of the word a link is stored in.
    fn link_slot<L: Layout>(&self, link: Link) -> u64 {
        match link {
            Link::Bucket(i) => self.header().table + i * L::LINK_BYTES,
            // An entry's `next` is its first field.
            Link::Entry(prev) => prev,
        }
    }

    /// Records `e`'s chunks (entry, key, string) as dropped by the coming commit.
    fn retire_entry<L: Layout>(&self, e: u64) {
        let base = self.base();
        let j = self.journal();
        // SAFETY: `e` is live under the lock.
        unsafe {
            for c in L::entry_chunks(base, e) {
                j.retire(c);
            }
            if L::vtype(base, e) == ValueType::String {
                j.retire(L::string_chunk(base, L::word(base, e).load(Relaxed)));
            }
        }
    }

    fn header(&self) -> &Header {
        // SAFETY: `attach` checked the header, which lives as long as the region.
        unsafe { self.hdr.as_ref() }
    }

    fn kind(&self) -> MapKind {
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
        self.header().generation.load(Relaxed)
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
            hits: h.hits.load(Relaxed),
            misses: h.misses.load(Relaxed),
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

    /// The longest key this map accepts.
    pub fn max_key(&self) -> usize {
        match self.kind() {
            MapKind::Tiny => Tiny::MAX_KEY,
            MapKind::Hash => Hash::MAX_KEY,
        }
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
        let r = dispatch!(self.put_in(key, value, ttl, now, PutMode::Always));
        if r.is_ok() {
            self.record(|log| log.record_latest(key));
        }
        r
    }

    /// Stores `value` only if the key is absent; `Error::Exists` otherwise.
    pub fn put_if_absent(&mut self, key: &[u8], value: Value<'_>, ttl: Ttl, now: u32) -> Result<(), Error> {
        let key = self.write_key(key)?;
        let key = &*key;
        let r = dispatch!(self.put_in(key, value, ttl, now, PutMode::IfAbsent)).map(|_| ());
        if r.is_ok() {
            self.record(|log| log.record_latest(key));
        }
        r
    }

    /// Stores `value` only if the key is present; `Error::NotFound` otherwise.
    pub fn replace(&mut self, key: &[u8], value: Value<'_>, ttl: Ttl, now: u32) -> Result<OwnedValue, Error> {
        let key = self.write_key(key)?;
        let key = &*key;
        let r = dispatch!(self.put_in(key, value, ttl, now, PutMode::IfPresent))
            .map(|prev| prev.unwrap_or(OwnedValue::Int(0)));
        if r.is_ok() {
            self.record(|log| log.record_latest(key));
        }
        r
    }

    /// Removes the key, returning its value.
    pub fn remove(&mut self, key: &[u8], now: u32) -> Option<OwnedValue> {
        let key = self.write_key(key).ok()?;
        let key = &*key;
        let r = dispatch!(self.remove_in(key, now));
        if r.is_some() {
            self.record(|log| log.record_latest(key));
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
        let r = dispatch!(self.add_in(key, delta, init, ttl, now));
        if r.is_ok() {
            if made {
                self.record(|log| log.record_latest(key));
            } else {
                self.record(|log| log.record_add(key, delta));
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
            self.record(|log| log.record_latest(key));
        }
        dispatch!(self.get_renew_in(key, ttl, now))
    }

    /// Gives the map a replication log (`sync`) if it has none, named `host` at
    /// the server (a number no earlier log used). `Err(NoRoom)` when the arena
    /// cannot hold it.
    pub fn enable_sync(&mut self, host: u64) -> Result<(), Error> {
        if self.is_synced() {
            return Ok(());
        }
        let capacity = self.header().max_entries;
        self.journal().enter_allocator();
        let log = Log::create(self.arena, capacity, host);
        if let Some(log) = log {
            self.header().replog.store(log, Release);
        }
        self.journal().leave_allocator();
        log.map(|_| ()).ok_or(Error::NoRoom)
    }

    /// Drops the replication log and every change in it (`sync` removed).
    pub fn disable_sync(&mut self) {
        self.journal().enter_allocator();
        let offset = self.header().replog.swap(0, Relaxed);
        // SAFETY: the offset came from `Log::create` on this arena; the lock is held.
        if let Some(log) = unsafe { Log::attach(self.arena, offset, self.header().hash_key) } {
            log.destroy();
        }
        self.journal().leave_allocator();
    }

    /// Whether the map has a replication log.
    pub fn is_synced(&self) -> bool {
        self.header().replog.load(Relaxed) != 0
    }

    /// Whether writes through this handle are recorded for replication: off
    /// while applying what other hosts wrote, or loading a state file.
    pub fn set_replicate(&mut self, on: bool) {
        self.replicate = on;
    }

    fn log(&mut self) -> Option<Log<'_, A>> {
        let offset = self.header().replog.load(Relaxed);
        // SAFETY: the offset is 0 or came from `Log::create` on this arena, and
        // the lock is held for as long as this handle lives.
        unsafe { Log::attach(self.arena, offset, self.header().hash_key) }
    }

    /// Changes the replication log: its two lists change in several stores,
    /// and it allocates, so a death inside makes the next holder rebuild.
    fn change_log<R>(&mut self, f: impl FnOnce(&mut Log<'_, A>) -> R) -> Option<R> {
        if !self.is_synced() {
            return None;
        }
        self.journal().enter_allocator();
        let r = self.log().map(|mut log| f(&mut log));
        self.journal().leave_allocator();
        r
    }

    fn record(&mut self, f: impl FnOnce(&mut Log<'_, A>)) {
        if self.replicate {
            self.change_log(f);
        }
    }

    /// The batch of changes to send to the replication server: the one in
    /// flight if it was not acknowledged (the same number, the same additions;
    /// values as they are now), else up to `max` keys' pending changes. Values
    /// and expiry times are read from the map as of `now`.
    pub fn sync_take(&mut self, max: usize, now: u32) -> Option<Batch> {
        let (mut batch, latest) = self.change_log(|log| log.take(max))??;
        for (change, latest) in batch.changes.iter_mut().zip(latest) {
            let current = self
                .peek_with_expiry(&change.key, now)
                .map(|(v, expire)| (v.to_owned(), expire));
            change.op = match (latest, current, &change.op) {
                (true, Some((value, expire)), _) => Op::Put { value, expire },
                (true, None, _) => Op::Remove,
                (false, current, Op::Add { delta, .. }) => Op::Add {
                    delta: *delta,
                    expire: current.map_or(0, |(_, e)| e),
                },
                (false, _, op) => op.clone(),
            };
        }
        Some(batch)
    }

    /// The server applied batch `seq`: its changes leave the log. False when
    /// `seq` is not the batch in flight.
    pub fn sync_ack(&mut self, seq: u64) -> bool {
        self.change_log(|log| log.ack(seq)).unwrap_or(false)
    }

    /// Records what the replicating worker reports, for the statistics.
    pub fn set_sync_status(&mut self, status: &Status<'_>) {
        self.change_log(|log| log.set_status(status));
    }

    /// The replication log's counters, for a map with `sync`.
    pub fn sync_stats(&mut self) -> Option<LogStats> {
        self.log().map(|log| log.stats())
    }

    /// The additions to `key` made here and not yet acknowledged: what the
    /// local value holds beyond what the server has seen of this host. Wider
    /// than a long, so that adding it to a value never wraps.
    pub fn unacked_delta(&mut self, key: &[u8]) -> i128 {
        self.log().map_or(0, |log| log.unacked_delta(key))
    }

    /// Whether `key`'s latest state made here is not yet acknowledged.
    pub fn has_unacked_latest(&mut self, key: &[u8]) -> bool {
        self.log().is_some_and(|log| log.has_unacked_latest(key))
    }

    /// The replication log's name at the server.
    pub fn sync_host(&mut self) -> u64 {
        self.log().map_or(0, |log| log.host())
    }

    /// Whether `key` has a change made here and not yet acknowledged.
    pub fn has_unacked(&mut self, key: &[u8]) -> bool {
        self.log().is_some_and(|log| log.has_unacked(key))
    }
}

/// What one eviction step freed.
enum Freed {
    Evicted,
    Expired,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PutMode {
    Always,
    IfAbsent,
    IfPresent,
}

fn encode_inline(v: &Value<'_>) -> u64 {
    match *v {
        Value::Int(i) => i as u32 as u64,
        Value::Long(l) => l as u64,
        Value::Str(_) => 0,
    }
}

// The map's counters are atomics so that statistics can be read without the
// lock, but every writer holds the lock: a plain load and store replaces a
// locked read-modify-write instruction on the hot path.

fn add_locked(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

fn sub_locked(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_sub(n), Relaxed);
}

/// Advances the logical use clock and returns the new stamp.
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

// The layout-generic implementation. Every function here runs under the lock.
impl<A: Arena> Map<'_, A> {
    fn base(&self) -> Region {
        Region::new(self.arena.base(), self.arena.size())
    }

    /// The most slab any one write could ever have: the arena's capacity less
    /// the bucket table and the page that holds the map's header. A write that
    /// needs more can never fit, however much is evicted, so it is refused
    /// before anything is (the bound is loose, never tight: a write within it
    /// may still find no room).
    fn most_room(&self) -> usize {
        let h = self.header();
        let table = usize::try_from(h.buckets)
            .unwrap_or(usize::MAX)
            .saturating_mul(self.kind().bucket_bytes());
        // A table of half a page or less may share its page with the header.
        let fixed = if table > 2048 { footprint(table) + 4096 } else { 4096 };
        self.arena.capacity().saturating_sub(fixed)
    }

    /// Refuses a write of `key` and a string of `value` bytes (if any) that can
    /// never fit in this map, before anything is evicted for it.
    fn check_fits<L: Layout>(&self, key: &[u8], value: Option<usize>) -> Result<(), Error> {
        if key.len() > L::MAX_KEY {
            return Err(Error::KeyTooLarge);
        }
        let most = self.most_room();
        let entry = L::entry_footprint(key.len());
        if entry > most {
            return Err(Error::KeyTooLarge);
        }
        if let Some(len) = value {
            if len > L::MAX_STRING || entry.saturating_add(L::string_footprint(len)) > most {
                return Err(Error::ValueTooLarge);
            }
        }
        Ok(())
    }

    fn expire_at(&self, ttl: Ttl, now: u32) -> u32 {
        let secs = match ttl {
            Ttl::Default => self.header().timeout,
            Ttl::Never => 0,
            Ttl::Secs(s) => s,
        };
        if secs == 0 {
            0
        } else {
            let h = self.header();
            if h.expiring.load(Relaxed) == 0 {
                h.expiring.store(1, Relaxed);
            }
            now.saturating_add(secs).max(1)
        }
    }

    fn touch<L: Layout>(&self, e: u64) {
        let stamp = tick(&self.header().clock);
        // SAFETY: `e` is a live entry and the lock is held.
        unsafe { L::access(self.base(), e).store(stamp, Relaxed) };
    }

    fn wrote(&self) {
        add_locked(&self.header().generation, 1);
    }

    /// # Safety
    /// `e` is a live entry of layout `L`.
    unsafe fn read<L: Layout>(&self, e: u64) -> Value<'_> {
        let base = self.base();
        // SAFETY: live entry per the caller; strings live as long as the entry.
        unsafe {
            let word = L::word(base, e).load(Relaxed);
            match L::vtype(base, e) {
                ValueType::Int => Value::Int(word as u32 as i32),
                ValueType::Long => Value::Long(word as i64),
                ValueType::String => Value::Str(L::string(base, word)),
            }
        }
    }

    fn set_link<L: Layout>(&self, link: Link, to: u64) {
        let h = self.header();
        // SAFETY: links come from `find`/scans under the same lock hold.
        unsafe {
            match link {
                Link::Bucket(i) => L::set_bucket(self.base(), h.table, i, to),
                Link::Entry(prev) => L::set_next(self.base(), prev, to),
            }
        }
    }

    /// Finds the key's entry, expired or not.
    fn find<L: Layout>(&self, hash: u32, key: &[u8]) -> Option<(Link, u64)> {
        let h = self.header();
        let base = self.base();
        let idx = hash as u64 & (h.buckets - 1);
        let mut link = Link::Bucket(idx);
        // SAFETY: chains hold only live entries while the lock is held.
        unsafe {
            let mut e = L::bucket(base, h.table, idx);
            while e != 0 {
                if L::hash(base, e) == hash && L::key(base, e) == key {
                    return Some((link, e));
                }
                link = Link::Entry(e);
                e = L::next(base, e);
            }
        }
        None
    }

    /// Finds the key's entry unless it has expired by `now`, leaving an
    /// expired one in place: reads never remove, so a stale read still finds
    /// it. `now` 0 finds any entry held.
    fn find_held<L: Layout>(&self, hash: u32, key: &[u8], now: u32) -> Option<(Link, u64)> {
        let (link, e) = self.find::<L>(hash, key)?;
        // SAFETY: `e` is live.
        let expire = unsafe { L::expire(self.base(), e).load(Relaxed) };
        (!expired(expire, now)).then_some((link, e))
    }

    /// Finds the key's live entry for a write, reclaiming it if it has expired.
    fn lookup<L: Layout>(&mut self, hash: u32, key: &[u8], now: u32) -> Option<(Link, u64)> {
        let (link, e) = self.find::<L>(hash, key)?;
        // SAFETY: `e` is live.
        if expired(unsafe { L::expire(self.base(), e).load(Relaxed) }, now) {
            self.unlink_free::<L>(link, e);
            add_locked(&self.header().expirations, 1);
            return None;
        }
        Some((link, e))
    }

    /// Unlinks a live entry, then frees it and its string. Its chunks are in
    /// the journal from before the unlink until each is freed.
    fn unlink_free<L: Layout>(&mut self, link: Link, e: u64) {
        let base = self.base();
        self.retire_entry::<L>(e);
        // SAFETY: `e` is live and linked from `link`.
        let next = unsafe { L::next(base, e) };
        let j = self.journal();
        j.begin_commit(self.link_slot::<L>(link), L::LINK_BYTES == 8, next, false);
        j.begin_count();
        // SAFETY: `e` is live and linked from `link`; after the unlink store no
        // chain reaches it, so freeing it cannot expose a dangling link.
        unsafe {
            self.set_link::<L>(link, next);
            j.committed();
            sub_locked(&self.header().len, 1);
            self.count_length(L::key(base, e), false);
            j.end_count();
            self.free_unlinked::<L>(e);
        }
        self.journal().end_commit();
        self.wrote();
    }

    /// Frees an entry no chain reaches any more, and its string, forgetting
    /// each chunk in the journal as it is freed.
    ///
    /// # Safety
    /// `e` is an entry of layout `L` that was just unlinked under the lock.
    unsafe fn free_unlinked<L: Layout>(&mut self, e: u64) {
        let base = self.base();
        // SAFETY: per the contract, `e` is whole, and nothing reaches it.
        unsafe {
            let word = (L::vtype(base, e) == ValueType::String).then(|| L::word(base, e).load(Relaxed));
            let mut arena = self.tracked();
            if let Some(word) = word {
                L::free_string(&mut arena, word);
            }
            L::free_entry(&mut arena, e);
        }
    }

    fn get_in<L: Layout>(&mut self, key: &[u8], now: u32, touch: bool) -> Option<Value<'_>> {
        let hash = self.hash(key);
        match self.find_held::<L>(hash, key, now) {
            Some((_, e)) => {
                if touch {
                    add_locked(&self.header().hits, 1);
                    self.touch::<L>(e);
                }
                // SAFETY: `e` is live until the next write, which needs `&mut self`.
                Some(unsafe { self.read::<L>(e) })
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
        // SAFETY: `e` is live and the lock is held; the expiry is one word. Not a
        // write for `generation`: renewing on every read would make every read
        // look like a change to a saver.
        unsafe { L::expire(self.base(), e).store(expire, Relaxed) };
        // SAFETY: `e` is live until the next write, which needs `&mut self`.
        Some(unsafe { self.read::<L>(e) })
    }

    fn peek_expiry_in<L: Layout>(&mut self, key: &[u8], now: u32) -> Option<(Value<'_>, u32)> {
        let (_, e) = self.find_held::<L>(self.hash(key), key, now)?;
        // SAFETY: `e` is live.
        unsafe { Some((self.read::<L>(e), L::expire(self.base(), e).load(Relaxed))) }
    }

    /// Makes room for one more entry or allocation. Expired entries go first:
    /// they are dead weight. Then, with `evict`, one approximately least recently
    /// used entry. Returns false when the write's budget is spent or nothing
    /// could be freed.
    fn make_room<L: Layout>(&mut self, now: u32, room: &mut Room) -> bool {
        let budget = SWEEP_BUDGET.min(self.header().buckets);
        while room.swept < budget && self.header().expiring.load(Relaxed) != 0 {
            let n = SCAN_BUCKETS.min(budget - room.swept);
            room.swept += n;
            let removed = self.sweep_in::<L>(now, n);
            if removed > 0 {
                room.reclaimed += removed;
                return true;
            }
        }
        if self.header().evict == 0 || room.steps >= MAX_EVICTIONS {
            return false;
        }
        room.steps += 1;
        match self.evict_one::<L>(now) {
            Some(Freed::Evicted) => room.evicted += 1,
            Some(Freed::Expired) => room.reclaimed += 1,
            None => return false,
        }
        true
    }

    /// Evicts the least recently used of a sample of entries taken from the
    /// buckets after the eviction cursor; an expired entry met on the way is
    /// reclaimed instead.
    fn evict_one<L: Layout>(&mut self, now: u32) -> Option<Freed> {
        if self.is_empty() {
            return None;
        }
        let h = self.header();
        let base = self.base();
        let (table, buckets) = (h.table, h.buckets);
        let clock = h.clock.load(Relaxed);
        let start = h.evict_cursor.load(Relaxed);
        let mut victim: Option<(Link, u64, u32)> = None;
        let mut seen = 0;
        let mut scanned = 0;
        while scanned < buckets && (scanned < SCAN_BUCKETS || victim.is_none()) && seen < EVICT_SAMPLE {
            let idx = (start + scanned) & (buckets - 1);
            scanned += 1;
            let mut link = Link::Bucket(idx);
            // SAFETY: chains hold only live entries under the lock.
            let mut e = unsafe { L::bucket(base, table, idx) };
            while e != 0 {
                // SAFETY: `e` is live.
                let (expire, access, next) = unsafe {
                    (
                        L::expire(base, e).load(Relaxed),
                        L::access(base, e).load(Relaxed),
                        L::next(base, e),
                    )
                };
                if expired(expire, now) {
                    self.unlink_free::<L>(link, e);
                    add_locked(&self.header().expirations, 1);
                    self.header().evict_cursor.store(idx, Relaxed);
                    return Some(Freed::Expired);
                }
                let age = clock.wrapping_sub(access);
                if victim.is_none_or(|(_, _, best)| age > best) {
                    victim = Some((link, e, age));
                }
                seen += 1;
                link = Link::Entry(e);
                e = next;
            }
        }
        self.header()
            .evict_cursor
            .store((start + scanned) & (buckets - 1), Relaxed);
        let (link, e, _) = victim?;
        self.unlink_free::<L>(link, e);
        add_locked(&self.header().evictions, 1);
        Some(Freed::Evicted)
    }

    fn sweep_in<L: Layout>(&mut self, now: u32, max_buckets: u64) -> usize {
        if self.header().expiring.load(Relaxed) == 0 || self.is_empty() {
            return 0;
        }
        let (table, buckets) = (self.header().table, self.header().buckets);
        let start = self.header().sweep_cursor.load(Relaxed);
        let base = self.base();
        let n = max_buckets.min(buckets);
        let mut removed = 0;
        for i in 0..n {
            let idx = (start + i) & (buckets - 1);
            let mut link = Link::Bucket(idx);
            // SAFETY: chains hold only live entries under the lock.
            let mut e = unsafe { L::bucket(base, table, idx) };
            while e != 0 {
                // SAFETY: `e` is live; `next` is read before `e` may be freed.
                let (expire, next) = unsafe { (L::expire(base, e).load(Relaxed), L::next(base, e)) };
                if expired(expire, now) {
                    self.unlink_free::<L>(link, e);
                    removed += 1;
                } else {
                    link = Link::Entry(e);
                }
                e = next;
            }
        }
        let h = self.header();
        h.sweep_cursor.store((start + n) & (buckets - 1), Relaxed);
        add_locked(&h.expirations, removed as u64);
        removed
    }

    /// Allocates (with room made as needed) an unlinked entry.
    fn alloc_entry<L: Layout>(
        &mut self,
        e: &NewEntry<'_>,
        needs_slot: bool,
        now: u32,
        room: &mut Room,
    ) -> Result<u64, Error> {
        if needs_slot {
            while self.len() >= self.header().max_entries {
                if !self.make_room::<L>(now, room) {
                    return Err(self.no_room(0, room));
                }
            }
        }
        loop {
            // SAFETY: the lock is held; the new entry stays private until linked.
            if let Some(entry) = unsafe { L::new_entry(&mut self.tracked(), e, 0) } {
                return Ok(entry);
            }
            if !self.make_room::<L>(now, room) {
                return Err(self.no_room(L::ENTRY_BYTES + e.key.len(), room));
            }
        }
    }

    /// Allocates a string value (with room made as needed) and returns its word.
    fn alloc_string<L: Layout>(&mut self, bytes: &[u8], now: u32, room: &mut Room) -> Result<u64, Error> {
        loop {
            // SAFETY: the lock is held; the string stays private until linked.
            if let Some(word) = unsafe { L::new_string(&mut self.tracked(), bytes) } {
                return Ok(word);
            }
            if !self.make_room::<L>(now, room) {
                return Err(self.no_room(bytes.len(), room));
            }
        }
    }

    fn no_room(&mut self, bytes: usize, room: &Room) -> Error {
        self.refusal = Some(Refusal {
            bytes,
            evicted: room.evicted,
            reclaimed: room.reclaimed,
        });
        Error::NoRoom
    }

    /// Links a complete, unlinked entry at the head of its bucket's chain: the
    /// commit of the write's fresh chunks (the entry, its key, its string).
    fn link_new<L: Layout>(&mut self, hash: u32, entry: u64) {
        let h = self.header();
        let idx = hash as u64 & (h.buckets - 1);
        let j = self.journal();
        j.begin_commit(self.link_slot::<L>(Link::Bucket(idx)), L::LINK_BYTES == 8, entry, true);
        j.begin_count();
        // SAFETY: `entry` is complete and private; setting its `next` first and
        // then the bucket publishes it with one (release) store, after the flag.
        unsafe {
            L::set_next(self.base(), entry, L::bucket(self.base(), h.table, idx));
            L::set_bucket(self.base(), h.table, idx, entry);
        }
        j.committed();
        add_locked(&h.len, 1);
        // SAFETY: `entry` was just linked, complete, under the lock.
        self.count_length(unsafe { L::key(self.base(), entry) }, true);
        j.end_count();
        j.end_commit();
        self.wrote();
    }

    fn refuse<T>(&self, err: Error) -> Result<T, Error> {
        // A refused write frees what it allocated before it returns.
        self.journal().settle();
        if err == Error::NoRoom || err == Error::ChainFull {
            add_locked(&self.header().refused, 1);
        }
        Err(err)
    }

    fn put_in<L: Layout>(
        &mut self,
        key: &[u8],
        value: Value<'_>,
        ttl: Ttl,
        now: u32,
        mode: PutMode,
    ) -> Result<Option<OwnedValue>, Error> {
        // A write that can never fit is refused before anything is evicted for it.
        self.check_fits::<L>(
            key,
            match value {
                Value::Str(s) => Some(s.len()),
                _ => None,
            },
        )?;
        let hash = self.hash(key);
        let vtype = value.value_type();
        let expire = self.expire_at(ttl, now);
        let base = self.base();
        let mut room = Room::default();
        self.refusal = None;

        let found = self.lookup::<L>(hash, key, now);
        match (mode, found) {
            (PutMode::IfAbsent, Some(_)) => return Err(Error::Exists),
            (PutMode::IfPresent, None) => return Err(Error::NotFound),
            _ => {}
        }
        if found.is_none() {
            if let Err(err) = self.chain_room::<L>(hash, now) {
                return self.refuse(err);
            }
        }
        if let Some((_, e)) = found {
            // SAFETY: `e` was just found in its chain and the lock is held.
            if unsafe { L::vtype(base, e) } == vtype && vtype != ValueType::String {
                // SAFETY: as above; an inline value reads no other chunk.
                let prev = unsafe { self.read::<L>(e) }.to_owned();
                // SAFETY: as above; each field is one aligned word, changed by one store.
                unsafe {
                    L::word(base, e).store(encode_inline(&value), Relaxed);
                    L::expire(base, e).store(expire, Relaxed);
                }
                self.touch::<L>(e);
                self.wrote();
                return Ok(Some(prev));
            }
        }

        let word = match value {
            Value::Str(s) => match self.alloc_string::<L>(s, now, &mut room) {
                Ok(w) => w,
                Err(err) => return self.refuse(err),
            },
            _ => encode_inline(&value),
        };
        // Eviction above may have removed the entry: look again.
        let found = if matches!(value, Value::Str(_)) {
            self.lookup::<L>(hash, key, now)
        } else {
            found
        };
        if let Some((_, e)) = found {
            // SAFETY: `e` was found again after any eviction, under the lock.
            if unsafe { L::vtype(base, e) } == ValueType::String && vtype == ValueType::String {
                // SAFETY: as above; its string chunk is live until swapped out.
                let prev = unsafe { self.read::<L>(e) }.to_owned();
                // SAFETY: as above. One store swaps the value (the commit of the
                // fresh string); the old string is freed after it, when nothing
                // links it any more.
                let old = unsafe {
                    let slot = L::word(base, e);
                    self.journal().retire(L::string_chunk(base, slot.load(Relaxed)));
                    self.journal().begin_commit(e + L::WORD_AT, true, word, true);
                    slot.swap(word, Relaxed)
                };
                self.journal().committed();
                // SAFETY: `old` is the string this entry held and no longer links.
                unsafe {
                    L::expire(base, e).store(expire, Relaxed);
                    L::free_string(&mut self.tracked(), old);
                }
                self.journal().end_commit();
                self.touch::<L>(e);
                self.wrote();
                return Ok(Some(prev));
            }
        }

        // A new entry: the key is absent or its value changes type.
        let stamp = tick(&self.header().clock);
        let new = NewEntry {
            hash,
            key,
            vtype,
            word,
            expire,
            access: stamp,
        };
        let entry = match self.alloc_entry::<L>(&new, found.is_none(), now, &mut room) {
            Ok(entry) => entry,
            Err(err) => {
                if vtype == ValueType::String {
                    // SAFETY: the string was never linked.
                    unsafe { L::free_string(&mut self.tracked(), word) };
                }
                return self.refuse(err);
            }
        };
        match self.lookup::<L>(hash, key, now) {
            Some((link, old)) => {
                // SAFETY: `old` was just found in its chain under the lock.
                let prev = unsafe { self.read::<L>(old) }.to_owned();
                // SAFETY: `entry` is complete and unlinked, `old` is live and
                // `link` points at it. The new entry takes the old one's place
                // with one store (the commit of the fresh chunks); the old one is
                // unreachable before it is freed.
                unsafe {
                    L::set_next(base, entry, L::next(base, old));
                    self.retire_entry::<L>(old);
                    self.journal()
                        .begin_commit(self.link_slot::<L>(link), L::LINK_BYTES == 8, entry, true);
                    self.set_link::<L>(link, entry);
                    self.journal().committed();
                    self.free_unlinked::<L>(old);
                }
                self.journal().end_commit();
                self.wrote();
                Ok(Some(prev))
            }
            None => {
                self.link_new::<L>(hash, entry);
                Ok(None)
            }
        }
    }

    fn remove_in<L: Layout>(&mut self, key: &[u8], now: u32) -> Option<OwnedValue> {
        let (link, e) = self.lookup::<L>(self.hash(key), key, now)?;
        // SAFETY: `e` is live.
        let prev = unsafe { self.read::<L>(e) }.to_owned();
        self.unlink_free::<L>(link, e);
        Some(prev)
    }

    fn add_in<L: Layout>(&mut self, key: &[u8], delta: i64, init: i64, ttl: Ttl, now: u32) -> Result<i64, Error> {
        let hash = self.hash(key);
        let base = self.base();
        self.refusal = None;
        if let Some((_, e)) = self.lookup::<L>(hash, key, now) {
            // SAFETY: `e` is live; the value changes with one store.
            let word = unsafe { L::word(base, e) };
            // SAFETY: as above.
            let new = match unsafe { L::vtype(base, e) } {
                ValueType::Long => {
                    let v = (word.load(Relaxed) as i64).checked_add(delta).ok_or(Error::Overflow)?;
                    word.store(v as u64, Relaxed);
                    v
                }
                ValueType::Int => {
                    let v = (word.load(Relaxed) as u32 as i32 as i64)
                        .checked_add(delta)
                        .and_then(|v| i32::try_from(v).ok())
                        .ok_or(Error::Overflow)?;
                    word.store(v as u32 as u64, Relaxed);
                    v as i64
                }
                ValueType::String => return Err(Error::TypeConflict),
            };
            self.touch::<L>(e);
            self.wrote();
            return Ok(new);
        }
        let v = init.checked_add(delta).ok_or(Error::Overflow)?;
        // A key that can never fit is refused before anything is evicted for it
        // (a key already stored fits).
        self.check_fits::<L>(key, None)?;
        if let Err(err) = self.chain_room::<L>(hash, now) {
            return self.refuse(err);
        }
        let stamp = tick(&self.header().clock);
        let new = NewEntry {
            hash,
            key,
            vtype: ValueType::Long,
            word: v as u64,
            expire: self.expire_at(ttl, now),
            access: stamp,
        };
        match self.alloc_entry::<L>(&new, true, now, &mut Room::default()) {
            Ok(entry) => {
                self.link_new::<L>(hash, entry);
                Ok(v)
            }
            Err(err) => self.refuse(err),
        }
    }

    fn clear_in<L: Layout>(&mut self, cursor: u64, max_buckets: u64) -> Option<u64> {
        let (table, buckets) = (self.header().table, self.header().buckets);
        let end = cursor.saturating_add(max_buckets).min(buckets);
        for idx in cursor..end {
            loop {
                // SAFETY: the lock is held; the bucket holds a live chain.
                let e = unsafe { L::bucket(self.base(), table, idx) };
                if e == 0 {
                    break;
                }
                self.unlink_free::<L>(Link::Bucket(idx), e);
            }
        }
        (end < buckets).then_some(end)
    }

    fn walk_in<L: Layout>(
        &mut self,
        cursor: u64,
        max_buckets: u64,
        prefix: &[u8],
        now: u32,
        f: &mut dyn FnMut(&[u8], Value<'_>, u32),
    ) -> Option<u64> {
        let (table, buckets) = (self.header().table, self.header().buckets);
        let base = self.base();
        let end = cursor.saturating_add(max_buckets).min(buckets);
        for idx in cursor..end {
            // SAFETY: chains hold live entries; `f` cannot write to the map.
            unsafe {
                let mut e = L::bucket(base, table, idx);
                while e != 0 {
                    let expire = L::expire(base, e).load(Relaxed);
                    let key = L::key(base, e);
                    if !expired(expire, now) && key.starts_with(prefix) {
                        f(key, self.read::<L>(e), expire);
                    }
                    e = L::next(base, e);
                }
            }
        }
        (end < buckets).then_some(end)
    }

    /// Makes room in the chain of `hash`'s bucket for one more entry when it
    /// holds [`MAX_CHAIN`]: an expired entry of the chain goes first, then
    /// (with `evict`) its least recently used one; without, the write is
    /// refused. Bounds every walk of a chain, whatever keys a client chooses.
    fn chain_room<L: Layout>(&mut self, hash: u32, now: u32) -> Result<(), Error> {
        let h = self.header();
        let base = self.base();
        let idx = hash as u64 & (h.buckets - 1);
        let clock = h.clock.load(Relaxed);
        let mut link = Link::Bucket(idx);
        let mut n = 0;
        let mut dead = None;
        let mut victim: Option<(Link, u64, u32)> = None;
        // SAFETY: chains hold only live entries under the lock.
        let mut e = unsafe { L::bucket(base, h.table, idx) };
        while e != 0 {
            // SAFETY: `e` is live.
            let (expire, access, next) = unsafe {
                (
                    L::expire(base, e).load(Relaxed),
                    L::access(base, e).load(Relaxed),
                    L::next(base, e),
                )
            };
            if dead.is_none() && expired(expire, now) {
                dead = Some((link, e));
            }
            let age = clock.wrapping_sub(access);
            if victim.is_none_or(|(_, _, best)| age > best) {
                victim = Some((link, e, age));
            }
            n += 1;
            link = Link::Entry(e);
            e = next;
        }
        if n < MAX_CHAIN {
            return Ok(());
        }
        if let Some((link, e)) = dead {
            self.unlink_free::<L>(link, e);
            add_locked(&self.header().expirations, 1);
            return Ok(());
        }
        match victim {
            Some((link, e, _)) if self.header().evict != 0 => {
                self.unlink_free::<L>(link, e);
                add_locked(&self.header().evictions, 1);
                Ok(())
            }
            _ => Err(Error::ChainFull),
        }
    }

    /// Counts the entries of every chain into `len`, after a process died
    /// between linking or unlinking an entry and counting it.
    fn recount_in<L: Layout>(&mut self) {
        let (table, buckets) = (self.header().table, self.header().buckets);
        let base = self.base();
        let mut n = 0;
        self.reset_lengths();
        for idx in 0..buckets {
            // SAFETY: the lock is held; chains hold only whole entries.
            let mut e = unsafe { L::bucket(base, table, idx) };
            while e != 0 {
                n += 1;
                // SAFETY: as above.
                self.count_length(unsafe { L::key(base, e) }, true);
                // SAFETY: as above.
                e = unsafe { L::next(base, e) };
            }
        }
        let h = self.header();
        h.len.store(n, Relaxed);
        h.journal.end_count();
    }

    fn verify_in<L: Layout>(&mut self) -> Result<u64, String> {
        let (table, buckets) = (self.header().table, self.header().buckets);
        let base = self.base();
        let size = self.arena.size() as u64;
        let mut reachable = 0u64;
        for idx in 0..buckets {
            // SAFETY: the lock is held; every offset is checked to lie in the
            // zone before the entry behind it is read.
            let mut e = unsafe { L::bucket(base, table, idx) };
            while e != 0 {
                if e % 8 != 0 || e + L::ENTRY_BYTES as u64 > size {
                    return Err(format!("bucket {idx}: entry offset {e} is not inside the zone"));
                }
                reachable += 1;
                if reachable > size / L::ENTRY_BYTES as u64 {
                    return Err(format!("bucket {idx}: its chain loops"));
                }
                // SAFETY: `e` was checked to lie inside the zone just above.
                let hash = unsafe { L::hash(base, e) };
                if hash as u64 & (buckets - 1) != idx {
                    return Err(format!(
                        "bucket {idx}: entry {e} belongs in bucket {}",
                        hash as u64 & (buckets - 1)
                    ));
                }
                // SAFETY: as above; the key's offset and length are the entry's own.
                if self.hash(unsafe { L::key(base, e) }) != hash {
                    return Err(format!(
                        "bucket {idx}: entry {e} is torn: its key does not match its hash"
                    ));
                }
                // Reading the value touches a string's bytes.
                // SAFETY: as above.
                let _ = unsafe { self.read::<L>(e) };
                // SAFETY: as above.
                e = unsafe { L::next(base, e) };
            }
        }
        // A link outside the zone ends its chain (see `raw`): what it cut off
        // shows here.
        if reachable != self.len() {
            return Err(format!("{reachable} entries are linked, the map counts {}", self.len()));
        }
        Ok(reachable)
    }

    fn for_each_in<L: Layout>(&mut self, prefix: &[u8], now: u32, f: &mut dyn FnMut(&[u8], Value<'_>, u32) -> bool) {
        let (table, buckets) = (self.header().table, self.header().buckets);
        let base = self.base();
        for idx in 0..buckets {
            // SAFETY: chains hold live entries; `f` cannot write to the map.
            unsafe {
                let mut e = L::bucket(base, table, idx);
                while e != 0 {
                    let expire = L::expire(base, e).load(Relaxed);
                    let key = L::key(base, e);
                    if !expired(expire, now) && key.starts_with(prefix) && !f(key, self.read::<L>(e), expire) {
                        return;
                    }
                    e = L::next(base, e);
                }
            }
        }
    }
}

// Matching: prefix and IP-range lookups over the set of key lengths the map
// holds (see `matching`).
impl<'a, A: Arena> Map<'a, A> {
    /// Creates an empty map that matches lookups by `mode`; see [`Map::create`].
    pub fn create_matching(arena: &'a mut A, config: &MapConfig, mode: MatchMode) -> Result<u64, Error> {
        Self::create_matching_keyed(arena, config, mode, random_hash_key()?)
    }

    /// [`Map::create_matching`] with a given hash key: a map made again
    /// (`state::Snapshot`) keeps its key.
    pub(crate) fn create_matching_keyed(
        arena: &'a mut A,
        config: &MapConfig,
        mode: MatchMode,
        hash_key: [u64; 2],
    ) -> Result<u64, Error> {
        let root = Map::create_keyed(arena, config, hash_key)?;
        if mode == MatchMode::Exact {
            return Ok(root);
        }
        let bytes = matching::SLOTS * core::mem::size_of::<u32>();
        let Some(counts) = arena.alloc(bytes) else {
            return Err(Error::NoRoom);
        };
        // SAFETY: a fresh allocation of `bytes`; zero counts mean no keys.
        unsafe { counts.as_ptr().write_bytes(0, bytes) };
        let base = arena.base();
        // SAFETY: `root` is the header just written by `create`; nothing else
        // knows the map yet.
        unsafe {
            let h = &mut *(base.add(root as usize) as *mut Header);
            h.match_mode = mode as u32;
            h.length_counts = counts.as_ptr() as u64 - base as u64;
        }
        Ok(root)
    }

    /// How the map's lookups match.
    pub fn match_mode(&self) -> MatchMode {
        MatchMode::from_u32(self.header().match_mode).unwrap_or_default()
    }

    /// The key a write stores or a delete removes: an ip map's keys in normal
    /// form (`Error::InvalidKey` for one that is no address or range), a prefix
    /// map's at most `MAX_PREFIX_KEY` bytes long.
    #[inline]
    pub fn write_key<'k>(&self, key: &'k [u8]) -> Result<Cow<'k, [u8]>, Error> {
        if self.header().match_mode == MatchMode::Exact as u32 {
            return Ok(Cow::Borrowed(key));
        }
        match self.match_mode() {
            MatchMode::Exact => Ok(Cow::Borrowed(key)),
            MatchMode::Prefix if key.len() > matching::MAX_PREFIX_KEY => Err(Error::KeyTooLarge),
            MatchMode::Prefix => Ok(Cow::Borrowed(key)),
            MatchMode::Ip => {
                let range = IpRange::parse(key).ok_or(Error::InvalidKey)?;
                let norm = range.key();
                if norm.as_bytes() == key {
                    Ok(Cow::Borrowed(key))
                } else {
                    Ok(Cow::Owned(norm.as_bytes().to_vec()))
                }
            }
        }
    }

    /// The entry a lookup of `key` finds with the map's match mode, and the
    /// stored key it found; counted as a hit or a miss and marked as used.
    /// Exact maps: [`Map::get`]. Prefix maps: the longest stored key that is a
    /// prefix of `key`. Ip maps: the most specific stored range holding the
    /// address (or range) `key`; a key that is no address finds nothing.
    pub fn get_match(&mut self, key: &[u8], now: u32) -> Option<(&[u8], Value<'_>)> {
        let how = Read {
            touch: true,
            stale: false,
        };
        self.read_match(key, now, how).map(|hit| (hit.key, hit.value))
    }

    /// A lookup as [`Map::get_match`] (counted as a hit or a miss), with `how`
    /// saying whether it marks the entry as used and whether it also finds an
    /// expired entry still held.
    pub fn read_match(&mut self, key: &[u8], now: u32, how: Read) -> Option<Hit<'_>> {
        dispatch!(self.read_match_in(key, now, how))
    }

    /// How many probes a lookup of `key` makes at most: one per length the map
    /// holds that could match it.
    pub fn match_probes(&self, key: &[u8]) -> usize {
        let bits = self.length_bits();
        match self.match_mode() {
            MatchMode::Exact => 1,
            MatchMode::Prefix => matching::slots_down(bits, key.len().min(matching::MAX_PREFIX_KEY), 0).count(),
            MatchMode::Ip => match IpRange::parse(key) {
                Some(r) => matching::slots_down(bits, r.slot(), r.slot() - r.len as usize).count(),
                None => 0,
            },
        }
    }

    fn length_bits(&self) -> matching::LengthBits {
        let h = self.header();
        core::array::from_fn(|i| h.length_bits[i].load(Relaxed))
    }

    fn read_match_in<L: Layout>(&mut self, key: &[u8], now: u32, how: Read) -> Option<Hit<'_>> {
        // A stale read takes any held entry: one that expired before the epoch.
        let held_at = if how.stale { 0 } else { now };
        let found = match self.match_mode() {
            MatchMode::Exact => self.find_held::<L>(self.hash(key), key, held_at),
            MatchMode::Prefix => {
                let bits = self.length_bits();
                let top = key.len().min(matching::MAX_PREFIX_KEY);
                matching::slots_down(bits, top, 0).find_map(|s| {
                    let candidate = &key[..s];
                    self.find_held::<L>(self.hash(candidate), candidate, held_at)
                })
            }
            MatchMode::Ip => IpRange::parse(key).and_then(|range| {
                let bits = self.length_bits();
                let bottom = range.slot() - range.len as usize;
                matching::slots_down(bits, range.slot(), bottom).find_map(|s| {
                    let candidate = range.network((s - bottom) as u8).key();
                    let candidate = candidate.as_bytes();
                    self.find_held::<L>(self.hash(candidate), candidate, held_at)
                })
            }),
        };
        let Some((_, e)) = found else {
            add_locked(&self.header().misses, 1);
            return None;
        };
        add_locked(&self.header().hits, 1);
        if how.touch {
            self.touch::<L>(e);
        }
        // SAFETY: `e` is live until the next write, which needs `&mut self`.
        unsafe {
            Some(Hit {
                key: L::key(self.base(), e),
                value: self.read::<L>(e),
                stale: expired(L::expire(self.base(), e).load(Relaxed), now),
            })
        }
    }

    /// Counts a key linked (`added`) or unlinked in its length slot, keeping
    /// the slot's bit set exactly while the count is nonzero. Runs under the
    /// lock, inside the journal's `RECOUNT` window, so a crash is repaired by the
    /// recount in `attach`.
    fn count_length(&self, key: &[u8], added: bool) {
        let h = self.header();
        if h.length_counts == 0 || !self.length_counts_inside() {
            return;
        }
        let Some(slot) = matching::stored_slot(self.match_mode(), key) else {
            return;
        };
        // SAFETY: `length_counts` is the offset of SLOTS u32 counts allocated by
        // `create_matching` in this arena, aligned by the allocator; the lock
        // is held.
        let count = unsafe { &mut *(self.arena.base().add(h.length_counts as usize) as *mut u32).add(slot) };
        *count = if added {
            count.saturating_add(1)
        } else {
            count.saturating_sub(1)
        };
        let bit = 1u64 << (slot % 64);
        let word = &h.length_bits[slot / 64];
        let bits = word.load(Relaxed);
        word.store(if *count > 0 { bits | bit } else { bits & !bit }, Relaxed);
    }

    /// The length counts' offset, read from the zone, leaves them inside it.
    fn length_counts_inside(&self) -> bool {
        let off = self.header().length_counts;
        off.is_multiple_of(4) && off <= (self.arena.size() as u64).saturating_sub(matching::SLOTS as u64 * 4)
    }

    /// Empties the length set (a clear, or before a recount).
    fn reset_lengths(&self) {
        let h = self.header();
        if h.length_counts == 0 || !self.length_counts_inside() {
            return;
        }
        // SAFETY: as in `count_length`.
        unsafe {
            (self.arena.base().add(h.length_counts as usize) as *mut u32).write_bytes(0, matching::SLOTS);
        }
        for word in &h.length_bits {
            word.store(0, Relaxed);
        }
    }
}
