//! Lock-free counting into and reading of present keys, and the epochs that
//! keep what they read from being freed under them.
//!
//! A process that counts or reads without the lock claims one reader slot of
//! the map (a [`Reader`] remembers which), announces the map's epoch in it for
//! the length of one operation, and clears it after. The lock holder frees an
//! entry or string only after unlinking it and then waiting out a grace period
//! ([`Map::synchronize`]): it bumps the epoch and waits until no slot still
//! announces an older one. A slot whose owner died is cleared by the waiter, so
//! a process killed inside a lock-free operation cannot block frees for ever;
//! one stopped inside one (a debugger) delays the next free until it resumes.
//!
//! Lock-free operations only ever read entries (bounds-checked by `raw`), add
//! to a value word with one compare-and-swap, store an access stamp, and
//! store a renewed expiry (one word, of an entry not near its expiry);
//! everything else (inserts, expiry, strings, synced maps) takes the lock.

use core::sync::atomic::{
    AtomicU32, AtomicU64,
    Ordering::{Acquire, Relaxed, Release, SeqCst},
};

use super::header::{Header, MAGIC};
use super::{add_locked, expired, Map};
use crate::arena::Arena;
use crate::error::Error;
use crate::hash::{etag_key, hash_key};
use crate::matching::MatchMode;
use crate::raw::{Hash, Layout, Region, Tiny, ValueType};
use crate::spec::MapKind;
use crate::value::{Ttl, Value};

/// Reader slots per map: processes beyond this many take the lock.
pub(super) const READERS: usize = 128;
/// The bytes of the reader slots.
pub(super) const SLOTS_BYTES: usize = READERS * core::mem::size_of::<Slot>();
/// The most entries a lock-free lookup walks: a chain holds at most
/// `MAX_CHAIN`, and a longer walk means it met entries being relinked.
const MAX_WALK: usize = 2 * super::MAX_CHAIN;
/// The least time to live, in seconds, an entry keeps for a lock-free renewal
/// ([`Lockless::get_renew`]): one nearer its expiry is renewed under the lock,
/// as a lock holder whose clock runs ahead could sweep it between the check
/// and the renewal (workers' clocks differ by their event loops' lag).
const RENEW_MARGIN: u32 = 2;

/// What a lock-free read marks besides reading, as the lock's reads do.
#[derive(Clone, Copy)]
struct Marks {
    /// Marks the entry as used, for eviction.
    touch: bool,
    /// Counts a hit.
    hit: bool,
    /// Counts a miss (a caller that then asks under the lock counts none here).
    miss: bool,
}

/// One process's reader slot, in the zone.
#[repr(C)]
pub(super) struct Slot {
    /// The owning process's id; 0 when free.
    owner: AtomicU32,
    _pad: u32,
    /// The epoch its operation in progress announced; 0 when it has none.
    epoch: AtomicU64,
    /// The changes its lock-free counting made, for [`Map::generation`];
    /// written by its owner only.
    changes: AtomicU64,
    /// The hits of its lock-free reads, for [`Map::stats`]; written by its
    /// owner only.
    hits: AtomicU64,
    /// The misses of its lock-free reads, likewise.
    misses: AtomicU64,
    /// The last use stamp its lock-free operations gave an entry.
    last: AtomicU32,
    _pad3: u32,
    /// A slot to a cache line: a process writes its own at every operation,
    /// and sharing a line with another's would make them take turns.
    _pad2: [u64; 2],
}

const _: () = assert!(core::mem::size_of::<Slot>() == 64);

/// One process's claim on a reader slot of one map: kept by the caller for
/// as long as it uses the map, in the process that made it (a forked child
/// makes its own).
#[derive(Debug, Default)]
pub struct Reader {
    /// The slot's index plus one; 0 before a slot is claimed.
    slot: AtomicU32,
    /// The process that claimed it.
    pid: AtomicU32,
}

impl Reader {
    pub const fn new() -> Reader {
        Reader {
            slot: AtomicU32::new(0),
            pid: AtomicU32::new(0),
        }
    }
}

/// A lock-free handle on a map: counts into and reads present keys.
pub struct Lockless<'r> {
    base: Region,
    hdr: &'r Header,
    slot: &'r Slot,
}

/// Whether process `pid` is gone.
fn dead(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// Whether use stamp `a` is later than `b` (stamps wrap).
fn newer(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// Adds `delta` to a number's value word with one compare-and-swap loop,
/// refusing an overflow. The one place a number changes by addition, with the
/// lock or without.
pub(super) fn add_word(word: &AtomicU64, vtype: ValueType, delta: i64) -> Result<i64, Error> {
    let mut cur = word.load(Relaxed);
    loop {
        let (new, bits) = match vtype {
            ValueType::Long => {
                let v = (cur as i64).checked_add(delta).ok_or(Error::Overflow)?;
                (v, v as u64)
            }
            ValueType::Int => {
                let v = (cur as u32 as i32 as i64)
                    .checked_add(delta)
                    .and_then(|v| i32::try_from(v).ok())
                    .ok_or(Error::Overflow)?;
                (i64::from(v), v as u32 as u64)
            }
            ValueType::String => return Err(Error::TypeConflict),
        };
        match word.compare_exchange_weak(cur, bits, Relaxed, Relaxed) {
            Ok(_) => return Ok(new),
            Err(now) => cur = now,
        }
    }
}

/// The reader slots of the map whose header is `hdr`, or `None` without.
fn slots(base: Region, hdr: &Header) -> Option<&[Slot]> {
    let off = hdr.readers;
    if off == 0 || !off.is_multiple_of(8) || off.checked_add(SLOTS_BYTES as u64)? > base.size() {
        return None;
    }
    // SAFETY: READERS slots lie inside the zone at `off` (checked just above),
    // 8-aligned; they are atomics, shared by every process.
    Some(unsafe { core::slice::from_raw_parts(base.view::<Slot>(off), READERS) })
}

impl<A: Arena> Map<'_, A> {
    /// Waits until no lock-free operation can still hold what the caller just
    /// unlinked: bumps the epoch, then waits for every slot announcing an older
    /// one (a dead owner's is cleared). Called with the lock held, after the
    /// unlink and before the free.
    pub(super) fn synchronize(&self) {
        let hdr = self.header();
        let Some(slots) = slots(self.base(), hdr) else {
            return;
        };
        let used = (hdr.readers_used.load(Acquire) as usize).min(READERS);
        let epoch = hdr.epoch.fetch_add(1, SeqCst) + 1;
        for slot in &slots[..used] {
            let mut spins = 0u32;
            loop {
                let seen = slot.epoch.load(SeqCst);
                if seen == 0 || seen >= epoch {
                    break;
                }
                spins += 1;
                if spins.is_multiple_of(1024) {
                    let owner = slot.owner.load(Relaxed);
                    if owner == 0 || dead(owner) {
                        // Its owner died inside an operation: it holds nothing.
                        let _ = slot.epoch.compare_exchange(seen, 0, SeqCst, Relaxed);
                        break;
                    }
                    std::thread::yield_now();
                } else {
                    core::hint::spin_loop();
                }
            }
        }
    }

    /// Closes the map to lock-free operations and waits out those in flight:
    /// before the zone is rebuilt (`state::Snapshot`). A map made again is open.
    pub fn close_lockless(&self) {
        self.header().closed.store(1, SeqCst);
        self.synchronize();
    }

    /// Brings the use clock past every stamp lock-free operations gave, and
    /// returns it: before the lock holder stamps an entry or compares ages.
    pub(super) fn sync_clock(&self) -> u32 {
        let hdr = self.header();
        let mut clock = hdr.clock.load(Relaxed);
        let used = (hdr.readers_used.load(Acquire) as usize).min(READERS);
        if let Some(slots) = slots(self.base(), hdr) {
            for slot in &slots[..used] {
                let last = slot.last.load(Relaxed);
                if newer(last, clock) {
                    clock = last;
                }
            }
            hdr.clock.store(clock, Relaxed);
        }
        clock
    }

    /// A fresh use stamp, later than every one given before.
    pub(super) fn stamp(&self) -> u32 {
        self.sync_clock();
        super::tick(&self.header().clock)
    }

    /// The changes lock-free counting made, summed over the reader slots.
    pub(super) fn lockless_changes(&self) -> u64 {
        self.sum_slots(|slot| &slot.changes)
    }

    /// The hits of lock-free reads, summed over the reader slots.
    pub(super) fn lockless_hits(&self) -> u64 {
        self.sum_slots(|slot| &slot.hits)
    }

    /// The misses of lock-free reads, summed over the reader slots.
    pub(super) fn lockless_misses(&self) -> u64 {
        self.sum_slots(|slot| &slot.misses)
    }

    fn sum_slots(&self, field: impl Fn(&Slot) -> &AtomicU64) -> u64 {
        let hdr = self.header();
        let used = (hdr.readers_used.load(Acquire) as usize).min(READERS);
        slots(self.base(), hdr).map_or(0, |s| {
            s[..used]
                .iter()
                .fold(0u64, |sum, slot| sum.wrapping_add(field(slot).load(Relaxed)))
        })
    }
}

impl<'r> Lockless<'r> {
    /// A lock-free handle on the map whose header is at `root` in the zone
    /// `base..base + size`, or `None` when the map takes the lock for
    /// everything: synced, matching by prefix or ip, closed for a rebuild, without
    /// reader slots, or with every slot taken by other live processes.
    ///
    /// # Safety
    /// The zone is mapped at `base` for `size` bytes for as long as the handle
    /// lives, and `root` was returned by [`Map::create`] in it.
    pub unsafe fn open(base: *mut u8, size: usize, root: u64, reader: &'r Reader) -> Option<Lockless<'r>> {
        let region = Region::new(base, size);
        if root == 0 || !root.is_multiple_of(8) || root + core::mem::size_of::<Header>() as u64 > size as u64 {
            return None;
        }
        // SAFETY: a whole, aligned header lies at `root` inside the zone (checked
        // above); its fields read here are atomics or fixed at creation.
        let hdr = unsafe { region.view::<Header>(root) };
        if hdr.magic != MAGIC
            || hdr.replog.load(Relaxed) != 0
            || hdr.match_mode != MatchMode::Exact as u32
            || hdr.closed.load(Relaxed) != 0
        {
            return None;
        }
        let slots = slots(region, hdr)?;
        let slot = Self::claim(hdr, slots, reader)?;
        Some(Lockless {
            base: region,
            hdr,
            slot,
        })
    }

    /// The reader's slot, claimed on first use (a free slot, or one whose
    /// owner died).
    fn claim(hdr: &Header, slots: &'r [Slot], reader: &Reader) -> Option<&'r Slot> {
        let pid = match reader.slot.load(Relaxed) {
            0 => std::process::id(),
            i => {
                let slot = slots.get(i as usize - 1)?;
                let pid = reader.pid.load(Relaxed);
                if slot.owner.load(Relaxed) == pid {
                    return Some(slot);
                }
                // The zone was made again: claim anew.
                pid
            }
        };
        for (i, slot) in slots.iter().enumerate() {
            let owner = slot.owner.load(Relaxed);
            if (owner == 0 || (owner != pid && slot.epoch.load(SeqCst) == 0 && dead(owner)))
                && slot.owner.compare_exchange(owner, pid, SeqCst, Relaxed).is_ok()
            {
                hdr.readers_used.fetch_max(i as u32 + 1, SeqCst);
                reader.pid.store(pid, Relaxed);
                reader.slot.store(i as u32 + 1, Relaxed);
                return Some(slot);
            }
        }
        None
    }

    /// Announces the epoch: until [`Lockless::leave`], nothing this operation
    /// can reach is freed. False (announcing nothing) when the map was closed
    /// meanwhile ([`Map::close_lockless`]): the caller takes the lock.
    #[inline]
    fn enter(&self) -> bool {
        loop {
            let epoch = self.hdr.epoch.load(SeqCst);
            self.slot.epoch.store(epoch, SeqCst);
            if self.hdr.epoch.load(SeqCst) == epoch {
                break;
            }
        }
        // Closing stores the flag before its grace period: an operation that
        // announced after the grace period's scan sees it.
        if self.hdr.closed.load(SeqCst) != 0 {
            self.leave();
            return false;
        }
        true
    }

    #[inline]
    fn leave(&self) {
        self.slot.epoch.store(0, Release);
    }

    /// Marks an entry as the most recently used without writing the map's
    /// shared clock (a line every process would then take turns on): the
    /// stamp is past both the clock and this process's last stamp, so one
    /// process's uses keep their order, and the lock holder brings the clock
    /// past every process's stamps before it stamps or evicts
    /// (`Map::sync_clock`). Uses in two processes at once are ordered
    /// approximately, as eviction is.
    #[inline]
    fn touch(&self, access: &AtomicU32) {
        let clock = self.hdr.clock.load(Relaxed);
        let last = self.slot.last.load(Relaxed);
        let stamp = if newer(last, clock) { last } else { clock }.wrapping_add(1);
        self.slot.last.store(stamp, Relaxed);
        access.store(stamp, Relaxed);
    }

    /// Adds `delta` to `key`'s number if the key is present and not expired:
    /// `Some` with the new value (or the refusal: overflow, not a number),
    /// `None` when the caller must take the lock (absent or expired key).
    pub fn add(&self, key: &[u8], delta: i64, now: u32) -> Option<Result<i64, Error>> {
        match self.hdr.kind {
            1 => self.add_in::<Tiny>(key, delta, now),
            _ => self.add_in::<Hash>(key, delta, now),
        }
    }

    /// Calls `f` with `key`'s value and expiry time if the key is present and
    /// not expired, counting a hit; `None`, counting a miss, when it is not
    /// (as [`Map::get`]: no read removes an expired entry). The value is read
    /// whole: a string is immutable once linked, and a number is one word.
    pub fn get<R>(&self, key: &[u8], now: u32, f: impl FnOnce(Value<'_>, u32) -> R) -> Option<R> {
        self.read(key, now, true, f)
    }

    /// [`Lockless::get`], marking the entry as used (`touch`, and counting the
    /// hit or the miss) or not (a peek, counting nothing).
    pub fn read<R>(&self, key: &[u8], now: u32, touch: bool, f: impl FnOnce(Value<'_>, u32) -> R) -> Option<R> {
        let marks = Marks {
            touch,
            hit: touch,
            miss: touch,
        };
        self.dispatch_get(key, now, marks, None, f)
    }

    /// A read as [`Map::read_match`] makes it without `touch` in an exact
    /// map (the API's): `f` has the value and expiry time of a present key
    /// that has not expired, the hit is counted and the entry's recency left
    /// alone. `None` for an absent or expired key, counting nothing: the
    /// caller asks again under the lock, which counts the miss (or finds a
    /// stale entry).
    pub fn read_counted<R>(&self, key: &[u8], now: u32, f: impl FnOnce(Value<'_>, u32) -> R) -> Option<R> {
        let marks = Marks {
            touch: false,
            hit: true,
            miss: false,
        };
        self.dispatch_get(key, now, marks, None, f)
    }

    /// [`Map::get_renew`] without the lock: `f` has the value of a present
    /// key that has not expired, the hit is counted, the entry marked as used
    /// and its expiry reset to `ttl` from `now` (a sliding expiry, as
    /// sessions need). `None`, counting nothing, for an absent or expired key,
    /// one within `RENEW_MARGIN` of its expiry, or `Ttl::Default` (the map's
    /// timeout is read under the lock): the caller renews under the lock.
    pub fn get_renew<R>(&self, key: &[u8], ttl: Ttl, now: u32, f: impl FnOnce(Value<'_>) -> R) -> Option<R> {
        let expire = match ttl {
            Ttl::Default => return None,
            Ttl::Never | Ttl::Secs(0) => 0,
            // As `Map::expire_at`.
            Ttl::Secs(s) => now.saturating_add(s).max(1),
        };
        let marks = Marks {
            touch: true,
            hit: true,
            miss: false,
        };
        self.dispatch_get(key, now, marks, Some(expire), |v, _| f(v))
    }

    /// The key of the map's ETags, as [`Map::etag_key`] gives it: made from
    /// the hash key, which is fixed when the map is created.
    pub fn etag_key(&self) -> [u64; 2] {
        etag_key(self.hdr.hash_key)
    }

    fn dispatch_get<R>(
        &self,
        key: &[u8],
        now: u32,
        marks: Marks,
        renew: Option<u32>,
        f: impl FnOnce(Value<'_>, u32) -> R,
    ) -> Option<R> {
        match self.hdr.kind {
            1 => self.get_in::<Tiny, R>(key, now, marks, renew, f),
            _ => self.get_in::<Hash, R>(key, now, marks, renew, f),
        }
    }

    /// Runs `f` on `key`'s live entry inside an announced epoch: `Some(None)`
    /// for an absent or expired key, `None` for a map closed to lock-free
    /// operations meanwhile.
    fn in_epoch<L: Layout, R>(&self, key: &[u8], now: u32, f: impl FnOnce(u64) -> Option<R>) -> Option<Option<R>> {
        let hash = hash_key(self.hdr.hash_key, key);
        if !self.enter() {
            return None;
        }
        let r = self.find::<L>(hash, key, now).and_then(f);
        self.leave();
        Some(r)
    }

    fn add_in<L: Layout>(&self, key: &[u8], delta: i64, now: u32) -> Option<Result<i64, Error>> {
        self.in_epoch::<L, _>(key, now, |e| {
            // SAFETY: `e` was reached through its chain inside this operation's
            // epoch, so it is not freed before `leave`; `raw` checked its offset.
            let (word, vtype, access) =
                unsafe { (L::word(self.base, e), L::vtype(self.base, e), L::access(self.base, e)) };
            if vtype == ValueType::String {
                return None;
            }
            let r = add_word(word, vtype, delta);
            if r.is_ok() {
                self.touch(access);
                add_locked(&self.slot.changes, 1);
            }
            Some(r)
        })
        .flatten()
    }

    /// Reads `key`'s live entry as `marks` says and, with `renew`, stores
    /// that expiry in it first (unless the entry is within `RENEW_MARGIN` of
    /// its own: then `None`).
    fn get_in<L: Layout, R>(
        &self,
        key: &[u8],
        now: u32,
        marks: Marks,
        renew: Option<u32>,
        f: impl FnOnce(Value<'_>, u32) -> R,
    ) -> Option<R> {
        let r = self.in_epoch::<L, _>(key, now, |e| {
            // SAFETY: `e` is not freed before `leave` (see `add_in`); its
            // offset was checked by `raw`, and its expiry is one aligned word.
            let expiry = unsafe { L::expire(self.base, e) };
            let mut expire = expiry.load(Relaxed);
            if let Some(renewed) = renew {
                if expire != 0 && expire < now.saturating_add(RENEW_MARGIN) {
                    return None;
                }
                if renewed != 0 && self.hdr.expiring.load(Relaxed) == 0 {
                    // As `Map::expire_at`: the sweep looks at the map from now
                    // on. Every writer only ever sets the flag.
                    self.hdr.expiring.store(1, Relaxed);
                }
                // One store, as `Map::get_renew` makes it under the lock. An
                // entry unlinked meanwhile is renewed in vain: it is not freed
                // before `leave`, and no chain reaches it.
                expiry.store(renewed, Relaxed);
                expire = renewed;
            }
            // SAFETY: `e` and its string are not freed before `leave` (see
            // `add_in`); the value word is read once, and names an immutable
            // string or holds the number.
            let value = unsafe {
                let word = L::word(self.base, e).load(Acquire);
                match L::vtype(self.base, e) {
                    ValueType::Int => Value::Int(word as u32 as i32),
                    ValueType::Long => Value::Long(word as i64),
                    ValueType::String => Value::Str(L::string(self.base, word)),
                }
            };
            if marks.touch {
                // SAFETY: `e` is not freed before `leave`; its offset was checked by `raw`.
                let access = unsafe { L::access(self.base, e) };
                self.touch(access);
            }
            if marks.hit {
                add_locked(&self.slot.hits, 1);
            }
            Some(f(value, expire))
        })?;
        if r.is_none() && marks.miss {
            add_locked(&self.slot.misses, 1);
        }
        r
    }

    /// The key's live entry, found without the lock inside an announced epoch.
    fn find<L: Layout>(&self, hash: u32, key: &[u8], now: u32) -> Option<u64> {
        let h = self.hdr;
        let idx = hash as u64 & (h.buckets - 1);
        // SAFETY: bucket and next offsets read from the zone are checked by
        // `raw`; entries reached inside the epoch are not freed under us.
        unsafe {
            let mut e = L::bucket(self.base, h.table, idx);
            for _ in 0..MAX_WALK {
                if e == 0 {
                    return None;
                }
                if L::hash(self.base, e) == hash && L::key(self.base, e) == key {
                    let expire = L::expire(self.base, e).load(Relaxed);
                    return (!expired(expire, now)).then_some(e);
                }
                e = L::next(self.base, e);
            }
        }
        None
    }
}

// Kinds as `Header::kind` stores them.
const _: () = assert!(MapKind::Tiny as u32 == 1);
