//! Room: sweeping expired entries, evicting the least recently used, and
//! bounding each chain's length, so that a write finds room or is refused.

use core::sync::atomic::Ordering::Relaxed;

use super::chains::Link;
use super::{add_locked, expired, Map, Refusal};
use crate::arena::Arena;
use crate::error::Error;
use crate::raw::{footprint, Entry, Layout, NewEntry};

/// How many buckets one eviction or reclamation step looks at, at most.
pub(super) const SCAN_BUCKETS: u64 = 256;
/// How many buckets a single write may sweep for expired entries when the map
/// is full, before it evicts (with `evict`) or gives up (without).
pub(super) const SWEEP_BUDGET: u64 = 1024;
/// How many live entries eviction compares before choosing the least recent.
pub(super) const EVICT_SAMPLE: usize = 8;
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

/// What one write did so far to make room; bounds that work.
#[derive(Default)]
pub(super) struct Room {
    swept: u64,
    /// Eviction steps taken, whatever each freed.
    steps: usize,
    evicted: usize,
    reclaimed: usize,
}

/// What the victim picker found in the chains it walked.
struct Pick<L> {
    /// The use clock when the walk began: an entry's age is measured from it.
    clock: u32,
    /// The first expired entry met, and the link to it.
    expired: Option<(Link, Entry<L>)>,
    /// The least recently used entry met, the link to it and its age.
    oldest: Option<(Link, Entry<L>, u32)>,
    /// How many entries were walked.
    seen: usize,
}

impl<L> Pick<L> {
    fn new(clock: u32) -> Pick<L> {
        Pick {
            clock,
            expired: None,
            oldest: None,
            seen: 0,
        }
    }
}

/// What one eviction step freed.
enum Freed {
    Evicted,
    Expired,
}

impl<A: Arena> Map<'_, A> {
    /// The most slab any one write could ever have: the arena's capacity less
    /// the bucket table and the page that holds the map's header. A write that
    /// needs more can never fit, however much is evicted, so it is refused
    /// before anything is (the bound is loose, never tight: a write within it
    /// may still find no room).
    pub(super) fn most_room(&self) -> usize {
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
    pub(super) fn check_fits<L: Layout>(&self, key: &[u8], value: Option<usize>) -> Result<(), Error> {
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

    /// Makes room for one more entry or allocation. Expired entries go first:
    /// they are dead weight. Then, with `evict`, one approximately least recently
    /// used entry. Returns false when the write's budget is spent or nothing
    /// could be freed.
    pub(super) fn make_room<L: Layout>(&mut self, now: u32, room: &mut Room) -> bool {
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
        let buckets = h.buckets;
        let start = h.evict_cursor.load(Relaxed);
        let mut pick = Pick::new(self.sync_clock());
        let mut scanned = 0;
        while scanned < buckets && (scanned < SCAN_BUCKETS || pick.oldest.is_none()) && pick.seen < EVICT_SAMPLE {
            let idx = (start + scanned) & (buckets - 1);
            scanned += 1;
            self.pick_in_chain::<L>(idx, now, &mut pick);
            if let Some((link, e)) = pick.expired {
                self.unlink_free::<L>(link, e);
                add_locked(&self.header().expirations, 1);
                self.header().evict_cursor.store(idx, Relaxed);
                return Some(Freed::Expired);
            }
        }
        self.header()
            .evict_cursor
            .store((start + scanned) & (buckets - 1), Relaxed);
        let (link, e, _) = pick.oldest?;
        self.unlink_free::<L>(link, e);
        add_locked(&self.header().evictions, 1);
        Some(Freed::Evicted)
    }

    /// The one victim picker: walks the chain of bucket `idx`, noting its first
    /// expired entry and, over every chain walked with `pick`, the least
    /// recently used entry.
    fn pick_in_chain<L: Layout>(&self, idx: u64, now: u32, pick: &mut Pick<L>) {
        let base = self.base();
        let mut link = Link::Bucket(idx);
        let mut cur = Entry::<L>::head(base, self.header().table, idx);
        while let Some(e) = cur {
            let (expire, access, next) = (e.expire(base).load(Relaxed), e.access(base).load(Relaxed), e.next(base));
            if pick.expired.is_none() && expired(expire, now) {
                pick.expired = Some((link, e));
            }
            let age = pick.clock.wrapping_sub(access);
            if pick.oldest.is_none_or(|(_, _, best)| age > best) {
                pick.oldest = Some((link, e, age));
            }
            pick.seen += 1;
            link = Link::Entry(e.offset());
            cur = next;
        }
    }

    pub(super) fn sweep_in<L: Layout>(&mut self, now: u32, max_buckets: u64) -> usize {
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
            let mut cur = Entry::<L>::head(base, table, idx);
            while let Some(e) = cur {
                // `next` is read before `e` may be freed.
                let (expire, next) = (e.expire(base).load(Relaxed), e.next(base));
                if expired(expire, now) {
                    self.unlink_free::<L>(link, e);
                    removed += 1;
                } else {
                    link = Link::Entry(e.offset());
                }
                cur = next;
            }
        }
        let h = self.header();
        h.sweep_cursor.store((start + n) & (buckets - 1), Relaxed);
        add_locked(&h.expirations, removed as u64);
        removed
    }

    /// Allocates (with room made as needed) an unlinked entry.
    pub(super) fn alloc_entry<L: Layout>(
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
    pub(super) fn alloc_string<L: Layout>(&mut self, bytes: &[u8], now: u32, room: &mut Room) -> Result<u64, Error> {
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

    pub(super) fn no_room(&mut self, bytes: usize, room: &Room) -> Error {
        self.refusal = Some(Refusal {
            bytes,
            evicted: room.evicted,
            reclaimed: room.reclaimed,
        });
        Error::NoRoom
    }

    pub(super) fn refuse<T>(&self, err: Error) -> Result<T, Error> {
        // A refused write frees what it allocated before it returns.
        self.journal().settle();
        if err == Error::NoRoom || err == Error::ChainFull {
            add_locked(&self.header().refused, 1);
        }
        Err(err)
    }

    /// Makes room in the chain of `hash`'s bucket for one more entry when it
    /// holds [`MAX_CHAIN`]: an expired entry of the chain goes first, then
    /// (with `evict`) its least recently used one; without, the write is
    /// refused. Bounds every walk of a chain, whatever keys a client chooses.
    pub(super) fn chain_room<L: Layout>(&mut self, hash: u32, now: u32) -> Result<(), Error> {
        let h = self.header();
        let mut pick = Pick::new(self.sync_clock());
        self.pick_in_chain::<L>(hash as u64 & (h.buckets - 1), now, &mut pick);
        if pick.seen < MAX_CHAIN {
            return Ok(());
        }
        if let Some((link, e)) = pick.expired {
            self.unlink_free::<L>(link, e);
            add_locked(&self.header().expirations, 1);
            return Ok(());
        }
        match pick.oldest {
            Some((link, e, _)) if self.header().evict != 0 => {
                self.unlink_free::<L>(link, e);
                add_locked(&self.header().evictions, 1);
                Ok(())
            }
            _ => Err(Error::ChainFull),
        }
    }
}
