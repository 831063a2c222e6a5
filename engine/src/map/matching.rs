//! Matching: prefix and IP-range lookups over the set of key lengths the map
//! holds (see the crate's `matching`).

use core::sync::atomic::Ordering::Relaxed;
use std::borrow::Cow;

use super::header::Header;
use super::{add_locked, expired, Hit, Map, MapConfig, Read};
use crate::arena::Arena;
use crate::error::Error;
use crate::hash::random_hash_key;
use crate::matching::{self, IpRange, MatchMode};
use crate::raw::Layout;
use crate::value::Value;

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
}

impl<A: Arena> Map<'_, A> {
    pub(super) fn length_bits(&self) -> matching::LengthBits {
        let h = self.header();
        core::array::from_fn(|i| h.length_bits[i].load(Relaxed))
    }

    pub(super) fn read_match_in<L: Layout>(&mut self, key: &[u8], now: u32, how: Read) -> Option<Hit<'_>> {
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
        // `e` and its key and string stay live until the next write, which needs `&mut self`.
        Some(Hit {
            key: e.key(self.base()),
            value: self.read::<L>(e),
            stale: expired(e.expire(self.base()).load(Relaxed), now),
        })
    }

    /// Counts a key linked (`added`) or unlinked in its length slot, keeping
    /// the slot's bit set exactly while the count is nonzero. Runs under the
    /// lock, inside the journal's `RECOUNT` window, so a crash is repaired by the
    /// recount in `attach`.
    pub(super) fn count_length(&self, key: &[u8], added: bool) {
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
    pub(super) fn length_counts_inside(&self) -> bool {
        let off = self.header().length_counts;
        off.is_multiple_of(4) && off <= (self.arena.size() as u64).saturating_sub(matching::SLOTS as u64 * 4)
    }

    /// Empties the length set (a clear, or before a recount).
    pub(super) fn reset_lengths(&self) {
        let h = self.header();
        if h.length_counts == 0 || !self.length_counts_inside() {
            return;
        }
        // SAFETY: `length_counts` is the offset of SLOTS u32 counts allocated by `create_matching` in this
        // arena (checked to lie inside by `length_counts_inside`); the lock is held.
        unsafe {
            (self.arena.base().add(h.length_counts as usize) as *mut u32).write_bytes(0, matching::SLOTS);
        }
        for word in &h.length_bits {
            word.store(0, Relaxed);
        }
    }
}
