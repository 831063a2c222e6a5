//! Writes: storing a value (in place, by swapping a string, or as a new
//! entry), adding to a number, removing a key.

use core::sync::atomic::Ordering::Relaxed;

use super::lockless::add_word;
use super::room::Room;
use super::Map;
use crate::arena::Arena;
use crate::error::Error;
use crate::raw::{Entry, Layout, NewEntry, ValueType};
use crate::value::{OwnedValue, Ttl, Value};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum PutMode {
    Always,
    IfAbsent,
    IfPresent,
}

pub(super) fn encode_inline(v: &Value<'_>) -> u64 {
    match *v {
        Value::Int(i) => i as u32 as u64,
        Value::Long(l) => l as u64,
        Value::Str(_) => 0,
    }
}

impl<A: Arena> Map<'_, A> {
    pub(super) fn expire_at(&self, ttl: Ttl, now: u32) -> u32 {
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

    /// Stores `value` under `key` (whose hash is `hash`) as `mode` allows,
    /// returning the previous value: in place when the type stays inline, by
    /// swapping the string when a string replaces a string, else as a new entry.
    pub(super) fn put_in<L: Layout>(
        &mut self,
        hash: u32,
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
        let expire = self.expire_at(ttl, now);
        self.refusal = None;

        let found = self.lookup::<L>(hash, key, now);
        match (mode, found) {
            (PutMode::IfAbsent, Some(_)) => return Err(Error::Exists),
            (PutMode::IfPresent, None) => return Err(Error::NotFound),
            _ => {}
        }
        match found {
            None => {
                if let Err(err) = self.chain_room::<L>(hash, now) {
                    return self.refuse(err);
                }
            }
            Some((_, e)) => {
                let stored = e.vtype(self.base());
                if stored == value.value_type() && stored != ValueType::String {
                    return Ok(Some(self.put_inline::<L>(e, &value, expire)));
                }
            }
        }
        let mut room = Room::default();
        let word = match value {
            Value::Str(s) => match self.alloc_string::<L>(s, now, &mut room) {
                Ok(w) => w,
                Err(err) => return self.refuse(err),
            },
            _ => encode_inline(&value),
        };
        // Eviction for the string may have removed the entry: look again.
        let found = if matches!(value, Value::Str(_)) {
            self.lookup::<L>(hash, key, now)
        } else {
            found
        };
        if let (Some((_, e)), Value::Str(_)) = (found, value) {
            if e.vtype(self.base()) == ValueType::String {
                return Ok(Some(self.put_string::<L>(e, word, expire)));
            }
        }
        self.put_entry::<L>(
            hash,
            key,
            value.value_type(),
            word,
            expire,
            found.is_none(),
            now,
            &mut room,
        )
    }

    /// Overwrites the inline value of live entry `e` (of the same inline
    /// type) in place, returning the previous value.
    fn put_inline<L: Layout>(&mut self, e: Entry<L>, value: &Value<'_>, expire: u32) -> OwnedValue {
        let base = self.base();
        // The value and the expiry are each one aligned word, changed by one
        // store; the value is swapped, as lock-free counters may add to it meanwhile.
        let old = e.word(base).swap(encode_inline(value), Relaxed);
        e.expire(base).store(expire, Relaxed);
        let vtype = e.vtype(base);
        let prev = match vtype {
            ValueType::Int => OwnedValue::Int(old as u32 as i32),
            _ => OwnedValue::Long(old as i64),
        };
        self.touch::<L>(e);
        self.wrote();
        prev
    }

    /// Swaps the string of live entry `e` for the fresh string `word`,
    /// returning the previous value; the old string is freed after the swap.
    fn put_string<L: Layout>(&mut self, e: Entry<L>, word: u64, expire: u32) -> OwnedValue {
        let base = self.base();
        // Its string chunk is live until swapped out below.
        let prev = self.read::<L>(e).to_owned();
        // One store swaps the value (the commit of the fresh string); the old
        // string is freed after it, when nothing links it any more.
        let slot = e.word(base);
        self.journal().retire(L::string_chunk(base, slot.load(Relaxed)));
        self.journal().begin_commit(e.offset() + L::WORD_AT, true, word, true);
        let old = slot.swap(word, Relaxed);
        self.journal().committed();
        // Lock-free readers that read the old word finish with its string first.
        self.synchronize();
        e.expire(base).store(expire, Relaxed);
        // SAFETY: `old` is the string `e` held and no longer links, and the
        // lock-free readers that could still read it have finished.
        unsafe { L::free_string(&mut self.tracked(), old) };
        self.journal().end_commit();
        self.touch::<L>(e);
        self.wrote();
        prev
    }

    /// Stores a new entry: the key is absent (`needs_slot`: it takes one more
    /// of the entries limit), or its value changes type, and the new entry
    /// takes the old one's place. `word` is the value as stored (a fresh
    /// string's is freed if the write is refused).
    #[allow(clippy::too_many_arguments)]
    fn put_entry<L: Layout>(
        &mut self,
        hash: u32,
        key: &[u8],
        vtype: ValueType,
        word: u64,
        expire: u32,
        needs_slot: bool,
        now: u32,
        room: &mut Room,
    ) -> Result<Option<OwnedValue>, Error> {
        let base = self.base();
        let stamp = self.stamp();
        let new = NewEntry {
            hash,
            key,
            vtype,
            word,
            expire,
            access: stamp,
        };
        let entry = match self.alloc_entry::<L>(&new, needs_slot, now, room) {
            Ok(entry) => entry,
            Err(err) => {
                if vtype == ValueType::String {
                    // SAFETY: the string was allocated by this write and never linked.
                    unsafe { L::free_string(&mut self.tracked(), word) };
                }
                return self.refuse(err);
            }
        };
        match self.lookup::<L>(hash, key, now) {
            Some((link, old)) => {
                // SAFETY: `entry` is complete and unlinked, `old` is live and
                // `link` points at it. The new entry takes the old one's place
                // with one store (the commit of the fresh chunks); the old one is
                // unreachable before it is freed, and read once the lock-free
                // counts that found it are in.
                let prev = unsafe {
                    L::set_next(base, entry, old.next(base).map_or(0, Entry::offset));
                    self.retire_entry::<L>(old);
                    self.journal()
                        .begin_commit(self.link_slot::<L>(link), L::LINK_BYTES == 8, entry, true);
                    self.set_link::<L>(link, entry);
                    self.journal().committed();
                    self.free_unlinked::<L, _>(old, |m, old| m.read::<L>(old).to_owned())
                };
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

    pub(super) fn remove_in<L: Layout>(&mut self, hash: u32, key: &[u8], now: u32) -> Option<OwnedValue> {
        let (link, e) = self.lookup::<L>(hash, key, now)?;
        // Read once the lock-free counts that found the entry are in.
        Some(self.unlink_free_then::<L, _>(link, e, |m, e| m.read::<L>(e).to_owned()))
    }

    pub(super) fn add_in<L: Layout>(
        &mut self,
        hash: u32,
        key: &[u8],
        delta: i64,
        init: i64,
        ttl: Ttl,
        now: u32,
    ) -> Result<i64, Error> {
        let base = self.base();
        self.refusal = None;
        if let Some((_, e)) = self.lookup::<L>(hash, key, now) {
            let (word, vtype) = (e.word(base), e.vtype(base));
            // Lock-free counters add to the same word: one atomic update.
            let new = add_word(word, vtype, delta)?;
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
        let stamp = self.stamp();
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
}
