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
        let counts_bytes = matching::SLOTS * core::mem::size_of::<u32>();
        // The probe filter follows the counts in one allocation; a zone with
        // no room for it makes a map that probes every length it holds.
        let log2 = filter_log2(config.entries, arena.size());
        let with_filter = (log2 > 0).then(|| arena.alloc(counts_bytes + (1 << log2))).flatten();
        let (counts, log2) = match with_filter {
            Some(p) => (p, log2),
            None => (arena.alloc(counts_bytes).ok_or(Error::NoRoom)?, 0),
        };
        let bytes = counts_bytes + if log2 > 0 { 1 << log2 } else { 0 };
        // SAFETY: a fresh allocation of `bytes`; zero counts mean no keys.
        unsafe { counts.as_ptr().write_bytes(0, bytes) };
        let base = arena.base();
        // SAFETY: `root` is the header just written by `create`; nothing else
        // knows the map yet.
        unsafe {
            let h = &mut *(base.add(root as usize) as *mut Header);
            h.match_mode = mode as u32;
            h.filter_log2 = log2;
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

    /// How many probes a lookup of `key` makes at most without its probe
    /// filter: one per length the map holds that could match it.
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
    /// How many keyed probes (a SipHash and a bucket walk) a lookup of `key`
    /// that finds nothing makes: the lengths of [`Map::match_probes`] that
    /// the probe filter lets through.
    pub fn match_keyed_probes(&self, key: &[u8]) -> usize {
        match self.match_mode() {
            MatchMode::Exact => 1,
            MatchMode::Prefix => {
                let mut n = 0;
                self.prefix_lengths(key, |_| {
                    n += 1;
                    false
                });
                n
            }
            MatchMode::Ip => match IpRange::parse(key) {
                Some(r) => {
                    let mut n = 0;
                    self.range_lengths(r, |_| {
                        n += 1;
                        false
                    });
                    n
                }
                None => 0,
            },
        }
    }

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
                let mut found = None;
                self.prefix_lengths(key, |s| {
                    let candidate = &key[..s];
                    found = self.find_held::<L>(self.hash(candidate), candidate, held_at);
                    found.is_some()
                });
                found
            }
            MatchMode::Ip => IpRange::parse(key).and_then(|range| {
                let mut found = None;
                self.range_lengths(range, |len| {
                    let candidate = range.network(len).key();
                    let candidate = candidate.as_bytes();
                    found = self.find_held::<L>(self.hash(candidate), candidate, held_at);
                    found.is_some()
                });
                found
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

    /// Calls `probe` with each length a prefix lookup of `key` probes, longest
    /// first, until it returns true: the lengths the map holds up to the key's,
    /// less those the probe filter rules out, a group of eight lengths at a
    /// time (see `matching::Filter`).
    fn prefix_lengths(&self, key: &[u8], mut probe: impl FnMut(usize) -> bool) {
        let bits = self.length_bits();
        let top = key.len().min(matching::MAX_PREFIX_KEY);
        let Some(filter) = self.probe_filter() else {
            for s in matching::slots_down(bits, top, 0) {
                if probe(s) {
                    return;
                }
            }
            return;
        };
        walk_filtered(&filter, &bits, 0, top, || filter.hashes.prefixes(key), probe);
    }

    /// Calls `probe` with each range length an ip lookup of `range` probes,
    /// longest first, until it returns true: the lengths of its family the map
    /// holds up to its own, less those the probe filter rules out, a group of
    /// eight lengths at a time (see `matching::Filter`).
    fn range_lengths(&self, range: IpRange, mut probe: impl FnMut(u8) -> bool) {
        let bits = self.length_bits();
        let bottom = range.bottom();
        let top = range.len as usize;
        let Some(filter) = self.probe_filter() else {
            for s in matching::slots_down(bits, range.slot(), bottom) {
                if probe((s - bottom) as u8) {
                    return;
                }
            }
            return;
        };
        walk_filtered(
            &filter,
            &bits,
            bottom,
            top,
            || filter.hashes.ranges(range),
            |len| probe(len as u8),
        );
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
        let Some(filter) = self.probe_filter() else {
            return;
        };
        let mode = self.match_mode();
        let Some(hash) = filter.hashes.stored(mode, key) else {
            return;
        };
        let group = filter.hashes.stored_group(mode, key);
        let groups = group
            .map(|g| matching::filter_cells(g, filter.mask))
            .into_iter()
            .flatten();
        for i in matching::filter_cells(hash, filter.mask).into_iter().chain(groups) {
            // SAFETY: `i` is at most `mask`, and `probe_filter` checked that
            // `mask + 1` cells lie inside the zone; the lock is held.
            let cell = unsafe { &mut *filter.cells.add(i) };
            // A saturated cell stays: it may count more keys than it can say.
            if added && *cell < u8::MAX {
                *cell += 1;
            } else if !added && *cell < u8::MAX {
                *cell = cell.saturating_sub(1);
            }
        }
    }

    /// The map's probe filter, or `None`: an exact map, or a matching map in
    /// a zone that had no room for one (or made before there were filters).
    fn probe_filter(&self) -> Option<ProbeFilter> {
        let h = self.header();
        let log2 = h.filter_log2;
        if h.length_counts == 0 || log2 == 0 || log2 > 40 || !self.length_counts_inside() {
            return None;
        }
        let start = h.length_counts as usize + matching::SLOTS * 4;
        if start.checked_add(1 << log2)? > self.arena.size() {
            return None;
        }
        Some(ProbeFilter {
            hashes: matching::Filter::new(h.hash_key),
            // SAFETY: `start` plus the filter's cells lies inside the zone (checked above).
            cells: unsafe { self.arena.base().add(start) },
            mask: (1 << log2) - 1,
        })
    }

    /// Checks that the probe filter holds every stored key: for `verify`.
    pub(super) fn verify_filter(&self, key: &[u8]) -> Result<(), String> {
        let (Some(filter), Some(slot)) = (self.probe_filter(), matching::stored_slot(self.match_mode(), key)) else {
            return Ok(());
        };
        if !matching::has(&self.length_bits(), slot) {
            return Err(format!(
                "key {:?}: its length {slot} is not in the length set",
                String::from_utf8_lossy(key)
            ));
        }
        let mode = self.match_mode();
        let hashes = [filter.hashes.stored(mode, key), filter.hashes.stored_group(mode, key)];
        if hashes.into_iter().flatten().all(|hash| filter.may_hold(hash)) {
            Ok(())
        } else {
            Err(format!(
                "key {:?}: the probe filter would skip it",
                String::from_utf8_lossy(key)
            ))
        }
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
        if let Some(filter) = self.probe_filter() {
            // SAFETY: `probe_filter` checked that `mask + 1` cells lie inside the zone; the lock is held.
            unsafe { filter.cells.write_bytes(0, filter.mask + 1) };
        }
        for word in &h.length_bits {
            word.store(0, Relaxed);
        }
    }
}

/// Calls `probe` with the lengths `0..=top` the map holds in its slots from
/// `bottom` on, longest first, until it returns true, less those `filter`
/// rules out, a group of eight lengths at a time. `hashes` is made on the
/// first group holding a length: never for a map holding none up to `top`.
fn walk_filtered<H: matching::LengthHashes>(
    filter: &ProbeFilter,
    bits: &matching::LengthBits,
    bottom: usize,
    top: usize,
    hashes: impl Fn() -> H,
    mut probe: impl FnMut(usize) -> bool,
) {
    let mut made = None;
    for w in (0..=top / 8).rev() {
        // The lengths 8w..8w+8 the map holds, one bit each; none above `top`
        // (above it are longer keys, or the other family's slots, or none).
        let mut held = matching::byte_at(bits, bottom + 8 * w);
        if w == top / 8 {
            held &= (0xffu16 >> (7 - top % 8)) as u8;
        }
        if held == 0 {
            continue;
        }
        let hashes = made.get_or_insert_with(&hashes);
        if !filter.may_hold(hashes.group(w)) {
            continue;
        }
        while held != 0 {
            let b = 7 - held.leading_zeros() as usize;
            held &= !(1 << b);
            let len = 8 * w + b;
            if filter.may_hold(hashes.at(len)) && probe(len) {
                return;
            }
        }
    }
}

/// A map's probe filter (see the crate's `matching::Filter`), read and written
/// under the lock.
struct ProbeFilter {
    hashes: matching::Filter,
    /// `mask + 1` one-byte cells inside the zone.
    cells: *mut u8,
    mask: usize,
}

impl ProbeFilter {
    /// False when no stored key has `hash`: the probe would find nothing.
    #[inline]
    fn may_hold(&self, hash: u64) -> bool {
        matching::filter_cells(hash, self.mask)
            .into_iter()
            // SAFETY: `i` is at most `mask`; `probe_filter` checked the cells lie inside the zone.
            .all(|i| unsafe { *self.cells.add(i) } != 0)
    }
}

/// The log2 of the probe filter's cells for a map of `entries` in a zone of
/// `space` bytes: 16 cells per entry (a key counts in four: two for its
/// length, two for its group, so a full map lets through a length or a group
/// it need not about once in 20), at most a 32nd of the zone; 0 (no filter)
/// below 256 cells.
fn filter_log2(entries: u64, space: usize) -> u32 {
    let wanted = entries
        .max(1)
        .saturating_mul(16)
        .checked_next_power_of_two()
        .unwrap_or(1 << 40);
    let room = (space as u64 / 32).checked_ilog2().map_or(0, |l| 1u64 << l);
    let cells = wanted.min(room).min(1 << 40);
    if cells < 256 {
        0
    } else {
        cells.ilog2()
    }
}
