//! Entry layouts in shared memory. Every raw-pointer operation of the engine is here.
//!
//! Offsets are relative to the arena's base; offset 0 is never an allocation
//! (the arena's own header lives there) and means "none".
//!
//! Publication rule: an entry is completely written before the single store that
//! links it into a chain, and unlinked before it is freed, so a process killed at
//! any instant leaves every reachable entry whole; at worst an unlinked chunk leaks.

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
/// Every function taking `base` and an offset requires the lock to be held, `base`
/// to be the arena's base and the offset to be one this layout produced and that
/// is still linked (or, for `init_entry`, freshly allocated).
pub unsafe trait Layout {
    /// The longest key an entry can hold.
    const MAX_KEY: usize;
    /// The longest string value.
    const MAX_STRING: usize;
    /// Bytes an entry takes besides its key.
    const ENTRY_BYTES: usize;

    unsafe fn bucket(base: *mut u8, table: u64, i: u64) -> u64;
    unsafe fn set_bucket(base: *mut u8, table: u64, i: u64, entry: u64);

    /// Allocates and fully writes an entry, not yet linked anywhere.
    unsafe fn new_entry<A: Arena>(arena: &mut A, e: &NewEntry<'_>, next: u64) -> Option<u64>;
    /// Frees an unlinked entry and its key (not its string value).
    unsafe fn free_entry<A: Arena>(arena: &mut A, entry: u64);

    unsafe fn next(base: *mut u8, entry: u64) -> u64;
    unsafe fn set_next(base: *mut u8, entry: u64, next: u64);
    unsafe fn hash(base: *mut u8, entry: u64) -> u32;
    unsafe fn key<'a>(base: *mut u8, entry: u64) -> &'a [u8];
    unsafe fn vtype(base: *mut u8, entry: u64) -> ValueType;
    unsafe fn word(base: *mut u8, entry: u64) -> &'static AtomicU64;
    unsafe fn expire(base: *mut u8, entry: u64) -> &'static AtomicU32;
    unsafe fn access(base: *mut u8, entry: u64) -> &'static AtomicU32;

    /// Copies `bytes` into a new string allocation and returns its value word.
    unsafe fn new_string<A: Arena>(arena: &mut A, bytes: &[u8]) -> Option<u64>;
    unsafe fn string<'a>(base: *mut u8, word: u64) -> &'a [u8];
    unsafe fn free_string<A: Arena>(arena: &mut A, word: u64);
}

/// Converts an allocation to its offset from the arena base.
fn offset_of<A: Arena>(arena: &A, p: NonNull<u8>) -> u64 {
    p.as_ptr() as u64 - arena.base() as u64
}

/// # Safety
/// `off` is a live offset inside the arena.
unsafe fn at(base: *mut u8, off: u64) -> *mut u8 {
    // SAFETY: the caller guarantees `off` lies inside the region starting at `base`.
    unsafe { base.add(off as usize) }
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

const _: () = assert!(core::mem::size_of::<TinyEntry>() == 32);

pub enum Tiny {}

// SAFETY: all offsets produced here come from the arena and fit in 32 bits because
// a tinymap's space is at most 4g (checked by the spec parser and at creation).
unsafe impl Layout for Tiny {
    const MAX_KEY: usize = (1 << 24) - 1;
    const MAX_STRING: usize = u32::MAX as usize;
    const ENTRY_BYTES: usize = core::mem::size_of::<TinyEntry>();

    unsafe fn bucket(base: *mut u8, table: u64, i: u64) -> u64 {
        // SAFETY: the table holds `buckets` u32 slots and `i` is masked below it.
        unsafe { (*(at(base, table + i * 4) as *const AtomicU32)).load(Ordering::Acquire) as u64 }
    }

    unsafe fn set_bucket(base: *mut u8, table: u64, i: u64, entry: u64) {
        // SAFETY: as in `bucket`; one aligned store publishes the chain head.
        unsafe { (*(at(base, table + i * 4) as *const AtomicU32)).store(entry as u32, Ordering::Release) }
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
        let Some(p) = arena.alloc(core::mem::size_of::<TinyEntry>()) else {
            if key != 0 {
                // SAFETY: allocated just above and never linked.
                unsafe { arena.free(NonNull::new_unchecked(at(arena.base(), key))) };
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
        let base = arena.base();
        // SAFETY: the entry is unlinked and live; its key chunk (if any) too.
        unsafe {
            let e = &*(at(base, entry) as *const TinyEntry);
            if e.key != 0 {
                arena.free(NonNull::new_unchecked(at(base, e.key as u64)));
            }
            arena.free(NonNull::new_unchecked(at(base, entry)));
        }
    }

    unsafe fn next(base: *mut u8, entry: u64) -> u64 {
        // SAFETY: live entry per the trait contract.
        unsafe { (*(at(base, entry) as *const TinyEntry)).next.load(Ordering::Acquire) as u64 }
    }

    unsafe fn set_next(base: *mut u8, entry: u64, next: u64) {
        // SAFETY: live entry; one aligned store relinks the chain.
        unsafe {
            (*(at(base, entry) as *const TinyEntry))
                .next
                .store(next as u32, Ordering::Release)
        }
    }

    unsafe fn hash(base: *mut u8, entry: u64) -> u32 {
        // SAFETY: live entry.
        unsafe { (*(at(base, entry) as *const TinyEntry)).hash }
    }

    unsafe fn key<'a>(base: *mut u8, entry: u64) -> &'a [u8] {
        // SAFETY: live entry; its key chunk holds `len` bytes written at creation.
        unsafe {
            let e = &*(at(base, entry) as *const TinyEntry);
            let len = (e.meta & 0x00ff_ffff) as usize;
            if len == 0 {
                return &[];
            }
            core::slice::from_raw_parts(at(base, e.key as u64), len)
        }
    }

    unsafe fn vtype(base: *mut u8, entry: u64) -> ValueType {
        // SAFETY: live entry.
        unsafe { ValueType::from_bits((*(at(base, entry) as *const TinyEntry)).meta >> 24) }
    }

    unsafe fn word(base: *mut u8, entry: u64) -> &'static AtomicU64 {
        // SAFETY: live entry; the reference is used only while the lock is held.
        unsafe { &(*(at(base, entry) as *const TinyEntry)).word }
    }

    unsafe fn expire(base: *mut u8, entry: u64) -> &'static AtomicU32 {
        // SAFETY: as in `word`.
        unsafe { &(*(at(base, entry) as *const TinyEntry)).expire }
    }

    unsafe fn access(base: *mut u8, entry: u64) -> &'static AtomicU32 {
        // SAFETY: as in `word`.
        unsafe { &(*(at(base, entry) as *const TinyEntry)).access }
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

    unsafe fn string<'a>(base: *mut u8, word: u64) -> &'a [u8] {
        let len = (word >> 32) as usize;
        if len == 0 {
            return &[];
        }
        // SAFETY: the word was made by `new_string` and its chunk is still live.
        unsafe { core::slice::from_raw_parts(at(base, word & 0xffff_ffff), len) }
    }

    unsafe fn free_string<A: Arena>(arena: &mut A, word: u64) {
        if word >> 32 != 0 {
            // SAFETY: a live chunk from `new_string`, no longer referenced.
            unsafe { arena.free(NonNull::new_unchecked(at(arena.base(), word & 0xffff_ffff))) }
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

pub enum Hash {}

// SAFETY: offsets are 64-bit; every entry chunk is HASH_HDR + key_len bytes.
unsafe impl Layout for Hash {
    const MAX_KEY: usize = u32::MAX as usize - HASH_HDR;
    const MAX_STRING: usize = usize::MAX >> 1;
    const ENTRY_BYTES: usize = HASH_HDR;

    unsafe fn bucket(base: *mut u8, table: u64, i: u64) -> u64 {
        // SAFETY: the table holds `buckets` u64 slots and `i` is masked below it.
        unsafe { (*(at(base, table + i * 8) as *const AtomicU64)).load(Ordering::Acquire) }
    }

    unsafe fn set_bucket(base: *mut u8, table: u64, i: u64, entry: u64) {
        // SAFETY: as in `bucket`.
        unsafe { (*(at(base, table + i * 8) as *const AtomicU64)).store(entry, Ordering::Release) }
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
        // SAFETY: unlinked live entry.
        unsafe { arena.free(NonNull::new_unchecked(at(arena.base(), entry))) }
    }

    unsafe fn next(base: *mut u8, entry: u64) -> u64 {
        // SAFETY: live entry.
        unsafe { (*(at(base, entry) as *const HashEntry)).next.load(Ordering::Acquire) }
    }

    unsafe fn set_next(base: *mut u8, entry: u64, next: u64) {
        // SAFETY: live entry; one aligned store relinks the chain.
        unsafe {
            (*(at(base, entry) as *const HashEntry))
                .next
                .store(next, Ordering::Release)
        }
    }

    unsafe fn hash(base: *mut u8, entry: u64) -> u32 {
        // SAFETY: live entry.
        unsafe { (*(at(base, entry) as *const HashEntry)).hash }
    }

    unsafe fn key<'a>(base: *mut u8, entry: u64) -> &'a [u8] {
        // SAFETY: live entry; the key follows the header.
        unsafe {
            let p = at(base, entry);
            let len = (*(p as *const HashEntry)).key_len as usize;
            core::slice::from_raw_parts(p.add(HASH_HDR), len)
        }
    }

    unsafe fn vtype(base: *mut u8, entry: u64) -> ValueType {
        // SAFETY: live entry.
        unsafe { ValueType::from_bits((*(at(base, entry) as *const HashEntry)).vtype) }
    }

    unsafe fn word(base: *mut u8, entry: u64) -> &'static AtomicU64 {
        // SAFETY: live entry; used only while the lock is held.
        unsafe { &(*(at(base, entry) as *const HashEntry)).word }
    }

    unsafe fn expire(base: *mut u8, entry: u64) -> &'static AtomicU32 {
        // SAFETY: as in `word`.
        unsafe { &(*(at(base, entry) as *const HashEntry)).expire }
    }

    unsafe fn access(base: *mut u8, entry: u64) -> &'static AtomicU32 {
        // SAFETY: as in `word`.
        unsafe { &(*(at(base, entry) as *const HashEntry)).access }
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

    unsafe fn string<'a>(base: *mut u8, word: u64) -> &'a [u8] {
        // SAFETY: the word names a live chunk written by `new_string`.
        unsafe {
            let p = at(base, word);
            core::slice::from_raw_parts(p.add(8), *(p as *const u64) as usize)
        }
    }

    unsafe fn free_string<A: Arena>(arena: &mut A, word: u64) {
        // SAFETY: a live chunk from `new_string`, no longer referenced.
        unsafe { arena.free(NonNull::new_unchecked(at(arena.base(), word))) }
    }
}
