//! Chains: finding an entry by key, linking a new one, unlinking and freeing
//! one, and walks over every chain (verify, recount, iteration).

use core::sync::atomic::Ordering::Relaxed;

use super::{add_locked, expired, sub_locked, Map};
use crate::arena::Arena;
use crate::raw::{Entry, Layout, ValueType};
use crate::value::Value;

/// Where an entry is linked from: a bucket or the previous entry of its chain.
#[derive(Clone, Copy)]
pub(super) enum Link {
    Bucket(u64),
    Entry(u64),
}

impl<A: Arena> Map<'_, A> {
    /// The offset of the word a link is stored in.
    pub(super) fn link_slot<L: Layout>(&self, link: Link) -> u64 {
        match link {
            Link::Bucket(i) => self.header().table + i * L::LINK_BYTES,
            // An entry's `next` is its first field.
            Link::Entry(prev) => prev,
        }
    }

    /// Records `e`'s chunks (entry, key, string) as dropped by the coming commit.
    pub(super) fn retire_entry<L: Layout>(&self, e: Entry<L>) {
        let base = self.base();
        let j = self.journal();
        for c in e.chunks(base) {
            j.retire(c);
        }
        if e.vtype(base) == ValueType::String {
            j.retire(L::string_chunk(base, e.word(base).load(Relaxed)));
        }
    }

    pub(super) fn touch<L: Layout>(&self, e: Entry<L>) {
        let stamp = self.stamp();
        e.access(self.base()).store(stamp, Relaxed);
    }

    pub(super) fn wrote(&self) {
        add_locked(&self.header().generation, 1);
    }

    /// `e`'s value. A string stays valid until the next write, which needs
    /// `&mut self`; `raw` checks its range, so a freed one reads as zone bytes.
    pub(super) fn read<L: Layout>(&self, e: Entry<L>) -> Value<'_> {
        let base = self.base();
        let word = e.word(base).load(Relaxed);
        match e.vtype(base) {
            ValueType::Int => Value::Int(word as u32 as i32),
            ValueType::Long => Value::Long(word as i64),
            ValueType::String => Value::Str(Entry::<L>::string(base, word)),
        }
    }

    pub(super) fn set_link<L: Layout>(&self, link: Link, to: u64) {
        let h = self.header();
        // SAFETY: links come from `find`/scans under the same lock hold.
        unsafe {
            match link {
                Link::Bucket(i) => L::set_bucket(self.base(), h.table, i, to),
                Link::Entry(prev) => L::set_next(self.base(), prev, to),
            }
        }
    }

    /// Finds the key's entry, expired or not. Always inlined: called, its
    /// `Option<(Link, Entry)>` came back through memory, and reading it back
    /// stalled (an exact `read_match` took 39 ns instead of 22 once the
    /// matching code around it grew).
    #[inline(always)]
    pub(super) fn find<L: Layout>(&self, hash: u32, key: &[u8]) -> Option<(Link, Entry<L>)> {
        let h = self.header();
        let base = self.base();
        let idx = hash as u64 & (h.buckets - 1);
        let mut link = Link::Bucket(idx);
        let mut cur = Entry::<L>::head(base, h.table, idx);
        while let Some(e) = cur {
            if e.hash(base) == hash && e.key(base) == key {
                return Some((link, e));
            }
            link = Link::Entry(e.offset());
            cur = e.next(base);
        }
        None
    }

    /// Finds the key's entry unless it has expired by `now`, leaving an
    /// expired one in place: reads never remove, so a stale read still finds
    /// it. `now` 0 finds any entry held.
    pub(super) fn find_held<L: Layout>(&self, hash: u32, key: &[u8], now: u32) -> Option<(Link, Entry<L>)> {
        let (link, e) = self.find::<L>(hash, key)?;
        let expire = e.expire(self.base()).load(Relaxed);
        (!expired(expire, now)).then_some((link, e))
    }

    /// Finds the key's live entry for a write, reclaiming it if it has expired.
    pub(super) fn lookup<L: Layout>(&mut self, hash: u32, key: &[u8], now: u32) -> Option<(Link, Entry<L>)> {
        let (link, e) = self.find::<L>(hash, key)?;
        if expired(e.expire(self.base()).load(Relaxed), now) {
            self.unlink_free::<L>(link, e);
            add_locked(&self.header().expirations, 1);
            return None;
        }
        Some((link, e))
    }

    /// Unlinks a live entry, then frees it and its string. Its chunks are in
    /// the journal from before the unlink until each is freed.
    pub(super) fn unlink_free<L: Layout>(&mut self, link: Link, e: Entry<L>) {
        self.unlink_free_then::<L, ()>(link, e, |_, _| ());
    }

    /// [`Map::unlink_free`], running `last` on the entry just before it is
    /// freed, once no lock-free operation can reach it any more: what `last`
    /// reads holds every lock-free count that found the entry.
    pub(super) fn unlink_free_then<L: Layout, R>(
        &mut self,
        link: Link,
        e: Entry<L>,
        last: impl FnOnce(&Self, Entry<L>) -> R,
    ) -> R {
        let base = self.base();
        self.retire_entry::<L>(e);
        let next = e.next(base).map_or(0, Entry::offset);
        let j = self.journal();
        j.begin_commit(self.link_slot::<L>(link), L::LINK_BYTES == 8, next, false);
        j.begin_count();
        // SAFETY: `e` is live and linked from `link`; after the unlink store no
        // chain reaches it, so freeing it cannot expose a dangling link.
        let r = unsafe {
            self.set_link::<L>(link, next);
            j.committed();
            sub_locked(&self.header().len, 1);
            self.count_length(e.key(base), false);
            j.end_count();
            self.free_unlinked::<L, R>(e, last)
        };
        self.journal().end_commit();
        self.wrote();
        r
    }

    /// Frees an entry no chain reaches any more, and its string, forgetting
    /// each chunk in the journal as it is freed; `last` runs on it before,
    /// once the lock-free operations that found it have finished.
    ///
    /// # Safety
    /// `e` is an entry of layout `L` that was just unlinked under the lock.
    pub(super) unsafe fn free_unlinked<L: Layout, R>(
        &mut self,
        e: Entry<L>,
        last: impl FnOnce(&Self, Entry<L>) -> R,
    ) -> R {
        // Lock-free operations that found `e` before the unlink finish first.
        self.synchronize();
        let r = last(self, e);
        let base = self.base();
        let word = (e.vtype(base) == ValueType::String).then(|| e.word(base).load(Relaxed));
        let mut arena = self.tracked();
        // SAFETY: the caller just unlinked `e` under the lock: it is whole, and no chain reaches it.
        unsafe {
            if let Some(word) = word {
                L::free_string(&mut arena, word);
            }
            L::free_entry(&mut arena, e.offset());
        }
        r
    }

    /// Links a complete, unlinked entry at the head of its bucket's chain: the
    /// commit of the write's fresh chunks (the entry, its key, its string).
    pub(super) fn link_new<L: Layout>(&mut self, hash: u32, entry: u64) {
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

    pub(super) fn clear_in<L: Layout>(&mut self, cursor: u64, max_buckets: u64) -> Option<u64> {
        let (table, buckets) = (self.header().table, self.header().buckets);
        let end = cursor.saturating_add(max_buckets).min(buckets);
        for idx in cursor..end {
            while let Some(e) = Entry::<L>::head(self.base(), table, idx) {
                self.unlink_free::<L>(Link::Bucket(idx), e);
            }
        }
        (end < buckets).then_some(end)
    }

    pub(super) fn walk_in<L: Layout>(
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
            let mut cur = Entry::<L>::head(base, table, idx);
            while let Some(e) = cur {
                let expire = e.expire(base).load(Relaxed);
                let key = e.key(base);
                if !expired(expire, now) && key.starts_with(prefix) {
                    f(key, self.read::<L>(e), expire);
                }
                cur = e.next(base);
            }
        }
        (end < buckets).then_some(end)
    }

    /// Counts the entries of every chain into `len`, after a process died
    /// between linking or unlinking an entry and counting it.
    pub(super) fn recount_in<L: Layout>(&mut self) {
        let (table, buckets) = (self.header().table, self.header().buckets);
        let base = self.base();
        let mut n = 0;
        self.reset_lengths();
        for idx in 0..buckets {
            let mut cur = Entry::<L>::head(base, table, idx);
            while let Some(e) = cur {
                n += 1;
                self.count_length(e.key(base), true);
                cur = e.next(base);
            }
        }
        let h = self.header();
        h.len.store(n, Relaxed);
        h.journal.end_count();
    }

    pub(super) fn verify_in<L: Layout>(&mut self) -> Result<u64, String> {
        let (table, buckets) = (self.header().table, self.header().buckets);
        let base = self.base();
        let size = self.arena.size() as u64;
        let mut reachable = 0u64;
        for idx in 0..buckets {
            // `raw` checks every offset to lie in the zone before the entry
            // behind it is read; the check below restates it for the report.
            let mut cur = Entry::<L>::head(base, table, idx);
            while let Some(entry) = cur {
                let e = entry.offset();
                if e % 8 != 0 || e + L::ENTRY_BYTES as u64 > size {
                    return Err(format!("bucket {idx}: entry offset {e} is not inside the zone"));
                }
                reachable += 1;
                if reachable > size / L::ENTRY_BYTES as u64 {
                    return Err(format!("bucket {idx}: its chain loops"));
                }
                let hash = entry.hash(base);
                if hash as u64 & (buckets - 1) != idx {
                    return Err(format!(
                        "bucket {idx}: entry {e} belongs in bucket {}",
                        hash as u64 & (buckets - 1)
                    ));
                }
                if self.hash(entry.key(base)) != hash {
                    return Err(format!(
                        "bucket {idx}: entry {e} is torn: its key does not match its hash"
                    ));
                }
                self.verify_filter(entry.key(base))
                    .map_err(|why| format!("bucket {idx}: {why}"))?;
                // Reading the value touches a string's bytes.
                let _ = self.read::<L>(entry);
                cur = entry.next(base);
            }
        }
        // A link outside the zone ends its chain (see `raw`): what it cut off
        // shows here.
        if reachable != self.len() {
            return Err(format!("{reachable} entries are linked, the map counts {}", self.len()));
        }
        Ok(reachable)
    }

    pub(super) fn for_each_in<L: Layout>(
        &mut self,
        prefix: &[u8],
        now: u32,
        f: &mut dyn FnMut(&[u8], Value<'_>, u32) -> bool,
    ) {
        let (table, buckets) = (self.header().table, self.header().buckets);
        let base = self.base();
        for idx in 0..buckets {
            let mut cur = Entry::<L>::head(base, table, idx);
            while let Some(e) = cur {
                let expire = e.expire(base).load(Relaxed);
                let key = e.key(base);
                if !expired(expire, now) && key.starts_with(prefix) {
                    let value = self.read::<L>(e);
                    if !f(key, value, expire) {
                        return;
                    }
                }
                cur = e.next(base);
            }
        }
    }
}
