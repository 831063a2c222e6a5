//! Entry layouts in shared memory. Every raw-pointer operation of the engine is here.
//!
//! Offsets are relative to the arena's base; offset 0 is never an allocation
//! (the arena's own header lives there) and means "none".
//!
//! Publication rule: an entry is completely written before the single store that
//! links it into a chain, and unlinked before it is freed, so a process killed at
//! any instant leaves every reachable entry whole; the chunks it held outside the
//! chains are in the map's journal (`journal`), and the next lock holder frees them.
//!
//! Nothing read from the zone is trusted: every offset (a bucket, a `next`, a key,
//! a string) is checked against the zone's size, with one compare, before the
//! bytes behind it are read. A link outside the zone ends its chain, a key or
//! string outside it reads as empty, so a corrupted zone can lose entries but
//! never crash a worker nor show process memory in an answer.

use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::arena::Arena;

/// The value type tag kept in an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ValueType {
    Int = 0,
    Long = 1,
    String = 2,
}

impl ValueType {
    fn from_bits(b: u32) -> ValueType {
        match b & 3 {
            0 => ValueType::Int,
            1 => ValueType::Long,
            _ => ValueType::String,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ValueType::Int => "int",
            ValueType::Long => "long",
            ValueType::String => "string",
        }
    }
}

/// The fields every layout stores, as the map sees them.
pub struct NewEntry<'k> {
    pub hash: u32,
    pub key: &'k [u8],
    pub vtype: ValueType,
    pub word: u64,
    pub expire: u32,
    pub access: u32,
}

/// One map implementation's memory layout.
///
/// # Safety
/// Every function taking `base` and an entry offset requires the lock to be held,
/// `base` to be the arena's region and the entry offset to be one that `bucket` or
/// `next` returned (so checked to lie inside the zone) or that `new_entry` made.
/// Offsets read from inside an entry (its key, its string) are checked here.
pub unsafe trait Layout {
    /// The longest key an entry can hold.
    const MAX_KEY: usize;
    /// The longest string value.
    const MAX_STRING: usize;
    /// Bytes an entry takes besides its key.
    const ENTRY_BYTES: usize;
    /// Bytes of a link (a bucket or an entry's `next`, which is an entry's
    /// first field): 4 or 8.
    const LINK_BYTES: u64;
    /// Where an entry's value word is, from the entry's start.
    const WORD_AT: u64;

    /// The least slab an entry with a key of `key_len` bytes takes.
    fn entry_footprint(key_len: usize) -> usize;
    /// The least slab a string value of `len` bytes takes.
    fn string_footprint(len: usize) -> usize;

    unsafe fn bucket(base: Region, table: u64, i: u64) -> u64;
    unsafe fn set_bucket(base: Region, table: u64, i: u64, entry: u64);

    /// Allocates and fully writes an entry, not yet linked anywhere.
    unsafe fn new_entry<A: Arena>(arena: &mut A, e: &NewEntry<'_>, next: u64) -> Option<u64>;
    /// Frees an unlinked entry and its key (not its string value).
    unsafe fn free_entry<A: Arena>(arena: &mut A, entry: u64);
    /// The chunks `free_entry` frees: the entry's, and its key's or 0.
    unsafe fn entry_chunks(base: Region, entry: u64) -> [u64; 2];

    unsafe fn next(base: Region, entry: u64) -> u64;
    unsafe fn set_next(base: Region, entry: u64, next: u64);
    unsafe fn hash(base: Region, entry: u64) -> u32;
    unsafe fn key<'a>(base: Region, entry: u64) -> &'a [u8];
    unsafe fn vtype(base: Region, entry: u64) -> ValueType;
    unsafe fn word(base: Region, entry: u64) -> &'static AtomicU64;
    unsafe fn expire(base: Region, entry: u64) -> &'static AtomicU32;
    unsafe fn access(base: Region, entry: u64) -> &'static AtomicU32;

    /// Copies `bytes` into a new string allocation and returns its value word.
    unsafe fn new_string<A: Arena>(arena: &mut A, bytes: &[u8]) -> Option<u64>;
    unsafe fn string<'a>(base: Region, word: u64) -> &'a [u8];
    unsafe fn free_string<A: Arena>(arena: &mut A, word: u64);
    /// The chunk `free_string` frees for `word`, or 0.
    fn string_chunk(base: Region, word: u64) -> u64;
}

/// The zone as the layouts read it: its base address and its size. Every offset
/// read from the zone goes through [`Region::entry`] or [`Region::bytes`].
#[derive(Clone, Copy)]
pub struct Region {
    base: *mut u8,
    size: u64,
}

impl Region {
    /// The zone's size in bytes.
    pub fn size(self) -> u64 {
        self.size
    }

    pub fn new(base: *mut u8, size: usize) -> Region {
        Region {
            base,
            size: size as u64,
        }
    }

    /// `off` when `len` bytes at it lie inside the zone and `off` is a multiple
    /// of `align` (a power of two), else 0: the end of a chain. `len` is a
    /// struct's size, never above the zone's (32 KiB at least), so the
    /// subtraction cannot wrap and one compare checks the range.
    #[inline(always)]
    fn checked(self, off: u64, len: usize, align: u64) -> u64 {
        if off <= self.size - len as u64 && off & (align - 1) == 0 {
            off
        } else {
            0
        }
    }

    /// `off` when a whole entry of `len` bytes at it lies inside the zone.
    #[inline(always)]
    fn entry(self, off: u64, len: usize) -> u64 {
        self.checked(off, len, 8)
    }

    /// `len` bytes at `off`, or `None` when they do not lie inside the zone.
    #[inline(always)]
    fn bytes<'a>(self, off: u64, len: u64) -> Option<&'a [u8]> {
        // `len` comes from the zone too: two compares, neither can wrap.
        if len > self.size || off > self.size - len {
            return None;
        }
        // SAFETY: `off..off + len` lies inside the zone, which stays mapped while
        // the lock is held; the bytes are read only, under the lock.
        Some(unsafe { core::slice::from_raw_parts(self.base.add(off as usize), len as usize) })
    }

    /// The address of `off`.
    ///
    /// # Safety
    /// `off` lies inside the zone: it passed [`Region::checked`] or is a fresh
    /// allocation's.
    #[inline]
    unsafe fn at(self, off: u64) -> *mut u8 {
        // SAFETY: the caller passes an offset inside the zone, so the sum stays inside its mapping.
        unsafe { self.base.add(off as usize) }
    }

    /// The entry of either layout (`TinyEntry`, `HashEntry`) at `entry`.
    ///
    /// # Safety
    /// `entry` is a checked or fresh entry offset (see [`Layout`]) of an entry
    /// of type `E`.
    #[inline(always)]
    pub(crate) unsafe fn view<'a, E>(self, entry: u64) -> &'a E {
        // SAFETY: the caller passes an offset checked (or freshly allocated) to
        // hold a whole, aligned `E` inside the zone.
        unsafe { &*(self.at(entry) as *const E) }
    }
}

/// An entry of layout `L`: an offset only this module makes, from a bucket, a
/// `next` link or [`Entry::at`], each checked (see [`Region::entry`]) to hold a
/// whole, aligned entry inside the zone. Its accessors are safe because every
/// byte they read lies inside the zone, which stays mapped for the process's
/// life, and every offset read from inside the entry is checked again; an
/// entry freed and reused meanwhile reads as other bytes of the zone, never as
/// process memory. Whether the entry is still linked is the caller's concern
/// (the lock, or the lock-free readers' grace period).
pub struct Entry<L> {
    off: u64,
    _layout: PhantomData<fn() -> L>,
}

impl<L> Clone for Entry<L> {
    #[inline(always)]
    fn clone(&self) -> Self {
        *self
    }
}

impl<L> Copy for Entry<L> {}

impl<L> PartialEq for Entry<L> {
    #[inline(always)]
    fn eq(&self, other: &Self) -> bool {
        self.off == other.off
    }
}

impl<L> Eq for Entry<L> {}

impl<L> core::fmt::Debug for Entry<L> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Entry({})", self.off)
    }
}

impl<L: Layout> Entry<L> {
    /// A checked offset (0 meaning none) as a handle.
    #[inline(always)]
    fn checked(off: u64) -> Option<Entry<L>> {
        (off != 0).then_some(Entry {
            off,
            _layout: PhantomData,
        })
    }

    /// The entry's offset from the arena's base.
    #[inline(always)]
    pub fn offset(self) -> u64 {
        self.off
    }

    /// The head of bucket `i`'s chain in the table at `table`.
    #[inline]
    pub fn head(base: Region, table: u64, i: u64) -> Option<Entry<L>> {
        // SAFETY: `bucket` checks the slot and the entry it names to lie inside the zone.
        Entry::checked(unsafe { L::bucket(base, table, i) })
    }

    /// The next entry of its chain.
    #[inline]
    pub fn next(self, base: Region) -> Option<Entry<L>> {
        // SAFETY: `self` holds a whole entry inside the zone; `next` checks the link it reads.
        Entry::checked(unsafe { L::next(base, self.off) })
    }

    #[inline]
    pub fn hash(self, base: Region) -> u32 {
        // SAFETY: `self` holds a whole entry inside the zone.
        unsafe { L::hash(base, self.off) }
    }

    /// The key's bytes; empty when its offset or length leaves the zone.
    #[inline]
    pub fn key<'a>(self, base: Region) -> &'a [u8] {
        // SAFETY: `self` holds a whole entry inside the zone; `key` checks the key's range.
        unsafe { L::key(base, self.off) }
    }

    /// The expiry second, 0 for none.
    #[inline]
    pub fn expire(self, base: Region) -> &'static AtomicU32 {
        // SAFETY: `self` holds a whole, aligned entry inside the zone, mapped for the process's life.
        unsafe { L::expire(base, self.off) }
    }

    #[inline]
    pub fn vtype(self, base: Region) -> ValueType {
        // SAFETY: `self` holds a whole entry inside the zone.
        unsafe { L::vtype(base, self.off) }
    }

    /// The value word: an int or long inline, or a string's chunk.
    #[inline]
    pub fn word(self, base: Region) -> &'static AtomicU64 {
        // SAFETY: `self` holds a whole, aligned entry inside the zone, mapped for the process's life.
        unsafe { L::word(base, self.off) }
    }

    /// The stamp of the last use, for eviction.
    #[inline]
    pub fn access(self, base: Region) -> &'static AtomicU32 {
        // SAFETY: `self` holds a whole, aligned entry inside the zone, mapped for the process's life.
        unsafe { L::access(base, self.off) }
    }

    /// The string a value word of this layout names; empty when it leaves the zone.
    #[inline]
    pub fn string<'a>(base: Region, word: u64) -> &'a [u8] {
        // SAFETY: `string` checks the chunk `word` names to lie inside the zone before reading it.
        unsafe { L::string(base, word) }
    }

    /// The chunks freeing this entry frees: the entry's, and its key's or 0.
    #[inline]
    pub fn chunks(self, base: Region) -> [u64; 2] {
        // SAFETY: `self` holds a whole entry inside the zone; the key's chunk is checked.
        unsafe { L::entry_chunks(base, self.off) }
    }
}

/// Converts an allocation to its offset from the arena base.
fn offset_of<A: Arena>(arena: &A, p: NonNull<u8>) -> u64 {
    p.as_ptr() as u64 - arena.base() as u64
}

/// What an allocation of `bytes` takes from the slab at least: allocations above
/// half a page take whole pages (4096 bytes, the smallest page nginx runs with).
pub fn footprint(bytes: usize) -> usize {
    const PAGE: usize = 4096;
    if bytes > PAGE / 2 {
        bytes.div_ceil(PAGE).saturating_mul(PAGE)
    } else {
        bytes
    }
}

/// A tinymap entry: 32 bytes, one 32-byte slab chunk. The key is a separate chunk.
#[repr(C)]
struct TinyEntry {
    next: AtomicU32,
    hash: u32,
    key: u32,
    /// bits 0..24 key length, bits 24..26 value type.
    meta: u32,
    /// int or long inline; string: offset (low 32 bits) and length (high 32 bits).
    word: AtomicU64,
    expire: AtomicU32,
    access: AtomicU32,
}

const TINY_BYTES: usize = core::mem::size_of::<TinyEntry>();
const _: () = assert!(TINY_BYTES == 32);
const _: () = assert!(core::mem::offset_of!(TinyEntry, next) == 0);

pub enum Tiny {}

// SAFETY: all offsets produced here come from the arena and fit in 32 bits because
// a tinymap's space is at most 4g (checked by the spec parser and at creation);
// every offset read back from the zone is checked before use.
unsafe impl Layout for Tiny {
    const MAX_KEY: usize = (1 << 24) - 1;
    const MAX_STRING: usize = u32::MAX as usize;
    const ENTRY_BYTES: usize = TINY_BYTES;
    const LINK_BYTES: u64 = 4;
    const WORD_AT: u64 = core::mem::offset_of!(TinyEntry, word) as u64;

    fn entry_footprint(key_len: usize) -> usize {
        footprint(TINY_BYTES) + if key_len == 0 { 0 } else { footprint(key_len) }
    }

    fn string_footprint(len: usize) -> usize {
        if len == 0 {
            0
        } else {
            footprint(len)
        }
    }

    unsafe fn bucket(base: Region, table: u64, i: u64) -> u64 {
        let slot = base.checked(table.wrapping_add(i * 4), 4, 4);
        if slot == 0 {
            return 0;
        }
        // SAFETY: the slot lies inside the zone and is aligned for a u32.
        let e = unsafe { (*(base.at(slot) as *const AtomicU32)).load(Ordering::Acquire) };
        base.entry(e as u64, TINY_BYTES)
    }

    unsafe fn set_bucket(base: Region, table: u64, i: u64, entry: u64) {
        let slot = base.checked(table.wrapping_add(i * 4), 4, 4);
        if slot != 0 {
            // SAFETY: the slot lies inside the zone and is aligned for a u32 (checked above); one aligned
            // store publishes the chain head.
            unsafe { (*(base.at(slot) as *const AtomicU32)).store(entry as u32, Ordering::Release) }
        }
    }

    unsafe fn new_entry<A: Arena>(arena: &mut A, e: &NewEntry<'_>, next: u64) -> Option<u64> {
        let key = if e.key.is_empty() {
            0
        } else {
            let k = arena.alloc(e.key.len())?;
            // SAFETY: `k` is a fresh allocation of key.len() bytes.
            unsafe { core::ptr::copy_nonoverlapping(e.key.as_ptr(), k.as_ptr(), e.key.len()) };
            offset_of(arena, k)
        };
        let Some(p) = arena.alloc(TINY_BYTES) else {
            if key != 0 {
                // SAFETY: allocated just above and never linked.
                unsafe { arena.free(NonNull::new_unchecked(arena.base().add(key as usize))) };
            }
            return None;
        };
        // SAFETY: `p` is a fresh, aligned 32-byte allocation nobody else can see yet.
        unsafe {
            (p.as_ptr() as *mut TinyEntry).write(TinyEntry {
                next: AtomicU32::new(next as u32),
                hash: e.hash,
                key: key as u32,
                meta: e.key.len() as u32 | (e.vtype as u32) << 24,
                word: AtomicU64::new(e.word),
                expire: AtomicU32::new(e.expire),
                access: AtomicU32::new(e.access),
            })
        };
        Some(offset_of(arena, p))
    }

    unsafe fn free_entry<A: Arena>(arena: &mut A, entry: u64) {
        let base = Region::new(arena.base(), arena.size());
        // SAFETY: the entry is unlinked and live; a key chunk outside the zone is
        // left alone (leaked) rather than handed to the allocator.
        unsafe {
            let [_, key] = Tiny::entry_chunks(base, entry);
            if key != 0 {
                arena.free(NonNull::new_unchecked(base.at(key)));
            }
            arena.free(NonNull::new_unchecked(base.at(entry)));
        }
    }

    unsafe fn entry_chunks(base: Region, entry: u64) -> [u64; 2] {
        // SAFETY: a live entry per the trait contract.
        let e = unsafe { base.view::<TinyEntry>(entry) };
        let len = (e.meta & 0x00ff_ffff) as u64;
        let key = if e.key & 7 == 0 && e.key != 0 && base.bytes(e.key as u64, len.max(1)).is_some() {
            e.key as u64
        } else {
            0
        };
        [entry, key]
    }

    unsafe fn next(base: Region, entry: u64) -> u64 {
        // SAFETY: live entry per the trait contract.
        let next = unsafe { base.view::<TinyEntry>(entry) }.next.load(Ordering::Acquire);
        base.entry(next as u64, TINY_BYTES)
    }

    unsafe fn set_next(base: Region, entry: u64, next: u64) {
        // SAFETY: live entry; one aligned store relinks the chain.
        unsafe { base.view::<TinyEntry>(entry) }
            .next
            .store(next as u32, Ordering::Release)
    }

    unsafe fn hash(base: Region, entry: u64) -> u32 {
        // SAFETY: live entry.
        unsafe { base.view::<TinyEntry>(entry) }.hash
    }

    unsafe fn key<'a>(base: Region, entry: u64) -> &'a [u8] {
        // SAFETY: live entry.
        let e = unsafe { base.view::<TinyEntry>(entry) };
        let len = (e.meta & 0x00ff_ffff) as u64;
        if len == 0 {
            return &[];
        }
        base.bytes(e.key as u64, len).unwrap_or(&[])
    }

    unsafe fn vtype(base: Region, entry: u64) -> ValueType {
        // SAFETY: live entry.
        ValueType::from_bits(unsafe { base.view::<TinyEntry>(entry) }.meta >> 24)
    }

    unsafe fn word(base: Region, entry: u64) -> &'static AtomicU64 {
        // SAFETY: live entry; the reference is used only while the lock is held.
        unsafe { &base.view::<TinyEntry>(entry).word }
    }

    unsafe fn expire(base: Region, entry: u64) -> &'static AtomicU32 {
        // SAFETY: the caller passes a live entry; the reference is used only while the lock is held.
        unsafe { &base.view::<TinyEntry>(entry).expire }
    }

    unsafe fn access(base: Region, entry: u64) -> &'static AtomicU32 {
        // SAFETY: the caller passes a live entry; the reference is used only while the lock is held.
        unsafe { &base.view::<TinyEntry>(entry).access }
    }

    unsafe fn new_string<A: Arena>(arena: &mut A, bytes: &[u8]) -> Option<u64> {
        if bytes.is_empty() {
            return Some(0);
        }
        let p = arena.alloc(bytes.len())?;
        // SAFETY: fresh allocation of bytes.len() bytes.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), p.as_ptr(), bytes.len()) };
        Some(offset_of(arena, p) | (bytes.len() as u64) << 32)
    }

    unsafe fn string<'a>(base: Region, word: u64) -> &'a [u8] {
        let len = word >> 32;
        if len == 0 {
            return &[];
        }
        base.bytes(word & 0xffff_ffff, len).unwrap_or(&[])
    }

    unsafe fn free_string<A: Arena>(arena: &mut A, word: u64) {
        let chunk = Tiny::string_chunk(Region::new(arena.base(), arena.size()), word);
        if chunk != 0 {
            // SAFETY: a live chunk from `new_string` inside the zone, no longer referenced.
            unsafe { arena.free(NonNull::new_unchecked(arena.base().add(chunk as usize))) }
        }
    }

    fn string_chunk(base: Region, word: u64) -> u64 {
        let len = word >> 32;
        if len != 0 && word & 7 == 0 && base.bytes(word & 0xffff_ffff, len).is_some() {
            word & 0xffff_ffff
        } else {
            0
        }
    }
}

/// A hashmap entry: a 40-byte header with the key inline after it.
#[repr(C)]
struct HashEntry {
    next: AtomicU64,
    hash: u32,
    vtype: u32,
    key_len: u32,
    expire: AtomicU32,
    access: AtomicU32,
    _pad: u32,
    /// int or long inline; string: offset of a chunk holding a u64 length then the bytes.
    word: AtomicU64,
}

const HASH_HDR: usize = core::mem::size_of::<HashEntry>();
const _: () = assert!(HASH_HDR == 40);
const _: () = assert!(core::mem::offset_of!(HashEntry, next) == 0);

pub enum Hash {}

impl Hash {
    /// The string chunk a value word names: its length and bytes, when the
    /// whole chunk lies inside the zone.
    fn chunk<'a>(base: Region, word: u64) -> Option<&'a [u8]> {
        let len = base.bytes(word, 8)?;
        let len = u64::from_le_bytes(len.try_into().ok()?);
        base.bytes(word.checked_add(8)?, len)
    }
}

// SAFETY: offsets are 64-bit; every entry chunk is HASH_HDR + key_len bytes;
// every offset read back from the zone is checked before use.
unsafe impl Layout for Hash {
    const MAX_KEY: usize = u32::MAX as usize - HASH_HDR;
    const MAX_STRING: usize = usize::MAX >> 1;
    const ENTRY_BYTES: usize = HASH_HDR;
    const LINK_BYTES: u64 = 8;
    const WORD_AT: u64 = core::mem::offset_of!(HashEntry, word) as u64;

    fn entry_footprint(key_len: usize) -> usize {
        footprint(HASH_HDR.saturating_add(key_len))
    }

    fn string_footprint(len: usize) -> usize {
        footprint(len.saturating_add(8))
    }

    unsafe fn bucket(base: Region, table: u64, i: u64) -> u64 {
        let slot = base.checked(table.wrapping_add(i * 8), 8, 8);
        if slot == 0 {
            return 0;
        }
        // SAFETY: the slot lies inside the zone and is aligned for a u64.
        let e = unsafe { (*(base.at(slot) as *const AtomicU64)).load(Ordering::Acquire) };
        base.entry(e, HASH_HDR)
    }

    unsafe fn set_bucket(base: Region, table: u64, i: u64, entry: u64) {
        let slot = base.checked(table.wrapping_add(i * 8), 8, 8);
        if slot != 0 {
            // SAFETY: the slot lies inside the zone and is aligned for a u64 (checked above); one aligned
            // store publishes the chain head.
            unsafe { (*(base.at(slot) as *const AtomicU64)).store(entry, Ordering::Release) }
        }
    }

    unsafe fn new_entry<A: Arena>(arena: &mut A, e: &NewEntry<'_>, next: u64) -> Option<u64> {
        let p = arena.alloc(HASH_HDR + e.key.len())?;
        // SAFETY: fresh allocation of HASH_HDR + key.len() bytes, 8-aligned.
        unsafe {
            (p.as_ptr() as *mut HashEntry).write(HashEntry {
                next: AtomicU64::new(next),
                hash: e.hash,
                vtype: e.vtype as u32,
                key_len: e.key.len() as u32,
                expire: AtomicU32::new(e.expire),
                access: AtomicU32::new(e.access),
                _pad: 0,
                word: AtomicU64::new(e.word),
            });
            core::ptr::copy_nonoverlapping(e.key.as_ptr(), p.as_ptr().add(HASH_HDR), e.key.len());
        }
        Some(offset_of(arena, p))
    }

    unsafe fn free_entry<A: Arena>(arena: &mut A, entry: u64) {
        // SAFETY: unlinked live entry, checked to lie inside the zone.
        unsafe { arena.free(NonNull::new_unchecked(arena.base().add(entry as usize))) }
    }

    unsafe fn entry_chunks(_: Region, entry: u64) -> [u64; 2] {
        [entry, 0]
    }

    unsafe fn next(base: Region, entry: u64) -> u64 {
        // SAFETY: live entry.
        let next = unsafe { base.view::<HashEntry>(entry) }.next.load(Ordering::Acquire);
        base.entry(next, HASH_HDR)
    }

    unsafe fn set_next(base: Region, entry: u64, next: u64) {
        // SAFETY: live entry; one aligned store relinks the chain.
        unsafe { base.view::<HashEntry>(entry) }
            .next
            .store(next, Ordering::Release)
    }

    unsafe fn hash(base: Region, entry: u64) -> u32 {
        // SAFETY: live entry.
        unsafe { base.view::<HashEntry>(entry) }.hash
    }

    unsafe fn key<'a>(base: Region, entry: u64) -> &'a [u8] {
        // SAFETY: live entry; the key follows the header.
        let len = unsafe { base.view::<HashEntry>(entry) }.key_len as u64;
        base.bytes(entry + HASH_HDR as u64, len).unwrap_or(&[])
    }

    unsafe fn vtype(base: Region, entry: u64) -> ValueType {
        // SAFETY: live entry.
        ValueType::from_bits(unsafe { base.view::<HashEntry>(entry) }.vtype)
    }

    unsafe fn word(base: Region, entry: u64) -> &'static AtomicU64 {
        // SAFETY: live entry; used only while the lock is held.
        unsafe { &base.view::<HashEntry>(entry).word }
    }

    unsafe fn expire(base: Region, entry: u64) -> &'static AtomicU32 {
        // SAFETY: the caller passes a live entry; the reference is used only while the lock is held.
        unsafe { &base.view::<HashEntry>(entry).expire }
    }

    unsafe fn access(base: Region, entry: u64) -> &'static AtomicU32 {
        // SAFETY: the caller passes a live entry; the reference is used only while the lock is held.
        unsafe { &base.view::<HashEntry>(entry).access }
    }

    unsafe fn new_string<A: Arena>(arena: &mut A, bytes: &[u8]) -> Option<u64> {
        let p = arena.alloc(8 + bytes.len())?;
        // SAFETY: fresh allocation of 8 + len bytes, 8-aligned.
        unsafe {
            (p.as_ptr() as *mut u64).write(bytes.len() as u64);
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), p.as_ptr().add(8), bytes.len());
        }
        Some(offset_of(arena, p))
    }

    unsafe fn string<'a>(base: Region, word: u64) -> &'a [u8] {
        Hash::chunk(base, word).unwrap_or(&[])
    }

    unsafe fn free_string<A: Arena>(arena: &mut A, word: u64) {
        let chunk = Hash::string_chunk(Region::new(arena.base(), arena.size()), word);
        if chunk != 0 {
            // SAFETY: a live chunk from `new_string` inside the zone, no longer referenced.
            unsafe { arena.free(NonNull::new_unchecked(arena.base().add(chunk as usize))) }
        }
    }

    fn string_chunk(base: Region, word: u64) -> u64 {
        if word != 0 && word & 7 == 0 && Hash::chunk(base, word).is_some() {
            word
        } else {
            0
        }
    }
}
