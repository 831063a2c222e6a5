//! The replication log of a map with `sync`: the changes not yet acknowledged by
//! the replication server, coalesced per key, in the map's arena.
//!
//! Every write to a synced map records, under the same lock hold, what another
//! host needs to learn of it, and nothing more:
//!
//! - an addition records its delta, summed with the key's pending delta, so a
//!   counter written a million times between two flushes sends one number;
//! - a put, a removal or a renewed expiry records that the key's latest state
//!   is to be sent; the sender reads it from the map when it flushes (the value
//!   and its absolute expiry, or its absence), so a string is never copied twice
//!   and only its last value travels. It replaces a pending delta, whose effect
//!   that state includes;
//! - a clear drops every pending change and is sent before any later one.
//!
//! One batch is in flight at a time, under a sequence number. Taking a batch
//! moves each key's pending change to its in-flight slot; changes made meanwhile
//! pend again behind it. Until the batch is acknowledged, taking again returns
//! the same batch with the same number and the same deltas, so a sender that
//! lost its connection (or died: the log is in shared memory) resends exactly
//! what it sent, and the receiver recognises a number it already applied.
//!
//! The log holds at most `capacity` keys (the map's entries); a change to one
//! more key, or one the arena has no room for, is counted in `dropped` instead.
//! It takes its room from the map's arena, as the map's entries do: `bytes`
//! says how much, for the statistics and for sizing a synced map.

use core::mem::size_of;
use core::ptr::NonNull;

use crate::arena::Arena;
use crate::raw::footprint;
use crate::value::OwnedValue;

/// What an allocation of `bytes` takes from nginx's slab: a power-of-two
/// chunk of at least 8 bytes, or whole pages above half a page.
fn slab_bytes(bytes: usize) -> u64 {
    if bytes > 2048 {
        footprint(bytes) as u64
    } else {
        bytes.max(8).next_power_of_two() as u64
    }
}

/// What one key's entry takes.
fn entry_bytes(key_len: usize) -> u64 {
    slab_bytes(size_of::<LogEntry>().saturating_add(key_len))
}

const MAGIC: u64 = u64::from_le_bytes(*b"SHMLOG\0\x02");

const PENDING_DELTA: u32 = 1;
const PENDING_LATEST: u32 = 2;
const FLIGHT_DELTA: u32 = 4;
const FLIGHT_LATEST: u32 = 8;
const PENDING: u32 = PENDING_DELTA | PENDING_LATEST;
const FLIGHT: u32 = FLIGHT_DELTA | FLIGHT_LATEST;

/// `clear` bits of the log header.
const CLEAR_PENDING: u32 = 1;
const CLEAR_FLIGHT: u32 = 2;

/// The log's root, in the arena; the map header keeps its offset.
#[repr(C)]
pub(crate) struct LogHeader {
    magic: u64,
    /// Buckets of the key index, a power of two.
    buckets: u64,
    /// Offset of the key index: `buckets` offsets of entries.
    table: u64,
    /// The most keys the log holds.
    capacity: u64,
    /// Keys in the log.
    len: u64,
    /// The log's keys in the order of their first change, oldest first.
    head: u64,
    tail: u64,
    clear: u32,
    _pad: u32,
    /// The sequence number of the batch in flight; 0 when none is.
    flight: u64,
    /// The last sequence number given to a batch.
    seq: u64,
    /// Changes recorded, and changes acknowledged.
    recorded: u64,
    acked: u64,
    /// Changes that found no room in the log.
    dropped: u64,
    /// This log's name at the server, whose sequence numbers it counts: made
    /// anew with the log, so a restarted host never reuses an acknowledged number.
    host: u64,
    /// What the replicating worker last reported (`set_status`).
    connected: u32,
    error_len: u32,
    applied: u64,
    lag_ms: u64,
    error: [u8; ERROR_BYTES],
    /// Bytes of the arena the log takes: its header, index and entries.
    bytes: u64,
}

/// The longest last error kept.
const ERROR_BYTES: usize = 160;

/// What the replicating worker reports of a map's replication.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status<'a> {
    pub connected: bool,
    /// Changes from other hosts applied since the last report.
    pub applied: u64,
    /// Milliseconds between the last applied change's arrival at the server and
    /// its application here.
    pub lag_ms: Option<u64>,
    /// The last error, if this report has one.
    pub error: Option<&'a [u8]>,
}

/// One key's pending and in-flight changes; the key follows the struct.
#[repr(C)]
struct LogEntry {
    /// The next entry in the key index's chain.
    hnext: u64,
    /// The next entry in order.
    next: u64,
    delta: i64,
    flight_delta: i64,
    flags: u32,
    hash: u32,
    key_len: u64,
}

/// A change as the sender sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Add `delta` to a number; an absent key starts at 0 and expires at
    /// `expire` (0 = never), the local entry's.
    Add { delta: i64, expire: u32 },
    /// The key's latest value and absolute expiry (0 = never).
    Put { value: OwnedValue, expire: u32 },
    /// The key is absent.
    Remove,
}

/// One key's change in a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub key: Vec<u8>,
    pub op: Op,
}

/// What the sender sends at once, under `seq`: a clear first if `clear`, then
/// each change in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub seq: u64,
    pub clear: bool,
    pub changes: Vec<Change>,
}

/// A snapshot of the log's counters and the replication's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Keys with a change not yet acknowledged (pending or in flight).
    pub pending: u64,
    /// Changes recorded since the log was made (before coalescing).
    pub recorded: u64,
    /// Changes acknowledged (after coalescing: one per key and batch).
    pub acked: u64,
    /// Changes that found no room in the log and will not be sent.
    pub dropped: u64,
    /// The sequence number of the last batch taken.
    pub seq: u64,
    /// Connected to the server, as last reported.
    pub connected: bool,
    /// Changes from other hosts applied.
    pub applied: u64,
    /// The replication lag last measured, in milliseconds.
    pub lag_ms: u64,
    /// The last error reported (empty: none).
    pub last_error: Vec<u8>,
    /// Bytes of the map's space the log takes now.
    pub bytes: u64,
}

/// The log of one map, over its arena, for one lock hold.
pub(crate) struct Log<'a, A: Arena> {
    arena: &'a mut A,
    hdr: NonNull<LogHeader>,
}

impl<'a, A: Arena> Log<'a, A> {
    /// Makes an empty log for `capacity` keys; returns its offset.
    pub(crate) fn create(arena: &mut A, capacity: u64, host: u64) -> Option<u64> {
        // A short index: the log is usually nearly empty, and a full one
        // walks chains of about four entries.
        let buckets = (capacity.max(1) / 4).next_power_of_two().max(16);
        let table_bytes = usize::try_from(buckets).ok()? * size_of::<u64>();
        let table = arena.alloc(table_bytes)?;
        // SAFETY: a fresh allocation of table_bytes; zero is an empty bucket.
        unsafe { table.as_ptr().write_bytes(0, table_bytes) };
        let Some(hdr) = arena.alloc(size_of::<LogHeader>()) else {
            // SAFETY: allocated above and referenced by nothing.
            unsafe { arena.free(table) };
            return None;
        };
        let base = arena.base() as u64;
        // SAFETY: a fresh, 8-aligned allocation of a LogHeader.
        unsafe {
            (hdr.as_ptr() as *mut LogHeader).write(LogHeader {
                magic: MAGIC,
                buckets,
                table: table.as_ptr() as u64 - base,
                capacity: capacity.max(1),
                len: 0,
                head: 0,
                tail: 0,
                clear: 0,
                _pad: 0,
                flight: 0,
                seq: 0,
                recorded: 0,
                acked: 0,
                dropped: 0,
                host,
                connected: 0,
                error_len: 0,
                applied: 0,
                lag_ms: 0,
                error: [0; ERROR_BYTES],
                bytes: slab_bytes(table_bytes) + slab_bytes(size_of::<LogHeader>()),
            })
        };
        Some(hdr.as_ptr() as u64 - base)
    }

    /// Opens the log at `offset`, or `None` if there is none.
    ///
    /// # Safety
    /// `offset` is 0 or was returned by [`Log::create`] on this arena, and the
    /// caller holds the arena's lock while the log lives.
    pub(crate) unsafe fn attach(arena: &'a mut A, offset: u64) -> Option<Self> {
        if offset == 0 || offset as usize + size_of::<LogHeader>() > arena.size() {
            return None;
        }
        // SAFETY: inside the region, per the caller's contract.
        let hdr = unsafe { NonNull::new_unchecked(arena.base().add(offset as usize) as *mut LogHeader) };
        // SAFETY: `hdr` lies inside the region (checked just above) and the log's header was written
        // completely before its offset was published.
        if unsafe { hdr.as_ref() }.magic != MAGIC {
            return None;
        }
        Some(Log { arena, hdr })
    }

    /// Frees the log and everything in it (`sync` removed by a reload).
    pub(crate) fn destroy(mut self) {
        let mut e = self.h().head;
        while e != 0 {
            // SAFETY: `e` is a live entry of the order list, under the lock.
            let next = unsafe { self.entry(e) }.next;
            // SAFETY: the whole log goes; nothing links it once the map header forgets it.
            unsafe { self.free_entry(e) };
            e = next;
        }
        let base = self.arena.base();
        let table = self.h().table;
        // SAFETY: both were allocated by `create` and nothing else refers to them.
        unsafe {
            self.arena.free(NonNull::new_unchecked(base.add(table as usize)));
            self.arena.free(self.hdr.cast());
        }
    }

    fn h(&self) -> &LogHeader {
        // SAFETY: `attach` checked the header; the lock is held.
        unsafe { self.hdr.as_ref() }
    }

    fn h_mut(&mut self) -> &mut LogHeader {
        // SAFETY: `attach` checked the header, which lives in the region; the lock holder is its only writer
        // and `&mut self` the only reference.
        unsafe { self.hdr.as_mut() }
    }

    fn entry_ptr(&self, e: u64) -> *mut LogEntry {
        self.arena.base().wrapping_add(e as usize) as *mut LogEntry
    }

    /// # Safety
    /// `e` is a live entry of this log.
    unsafe fn entry(&self, e: u64) -> &LogEntry {
        // SAFETY: the caller passes a live entry of this log: inside the arena, written whole by `entry_for`
        // before it was linked.
        unsafe { &*self.entry_ptr(e) }
    }

    /// # Safety
    /// `e` is a live entry of this log.
    unsafe fn entry_mut(&mut self, e: u64) -> &mut LogEntry {
        // SAFETY: the caller passes a live entry of this log; the lock holder is its only writer and `&mut
        // self` the only reference.
        unsafe { &mut *self.entry_ptr(e) }
    }

    /// # Safety
    /// `e` is a live entry of this log.
    unsafe fn key(&self, e: u64) -> &[u8] {
        // SAFETY: the caller passes a live entry of this log; its key follows it in the same allocation,
        // `key_len` bytes long.
        unsafe {
            let len = self.entry(e).key_len as usize;
            core::slice::from_raw_parts(self.arena.base().add(e as usize + size_of::<LogEntry>()), len)
        }
    }

    fn bucket_slot(&self, hash: u32) -> *mut u64 {
        let h = self.h();
        let idx = hash as u64 & (h.buckets - 1);
        // SAFETY: the table holds `buckets` words; idx is below that.
        unsafe { (self.arena.base().add(h.table as usize) as *mut u64).add(idx as usize) }
    }

    fn find(&self, hash: u32, key: &[u8]) -> Option<u64> {
        // SAFETY: the bucket slot is inside the table; chains hold live entries.
        let mut e = unsafe { *self.bucket_slot(hash) };
        while e != 0 {
            // SAFETY: a live entry of the chain.
            let entry = unsafe { self.entry(e) };
            // SAFETY: `e` is a live entry of the chain (just read above), with its key.
            if entry.hash == hash && unsafe { self.key(e) } == key {
                return Some(e);
            }
            e = entry.hnext;
        }
        None
    }

    /// The key's entry, made (at the end of the order) if it has none; `None`
    /// when the log is full or the arena has no room.
    fn entry_for(&mut self, hash: u32, key: &[u8]) -> Option<u64> {
        if let Some(e) = self.find(hash, key) {
            return Some(e);
        }
        if self.h().len >= self.h().capacity {
            return None;
        }
        let ptr = self.arena.alloc(size_of::<LogEntry>() + key.len())?;
        let e = ptr.as_ptr() as u64 - self.arena.base() as u64;
        let slot = self.bucket_slot(hash);
        // SAFETY: a fresh allocation of an entry and its key, written before it
        // is linked into its chain and the order list.
        unsafe {
            (ptr.as_ptr() as *mut LogEntry).write(LogEntry {
                hnext: *slot,
                next: 0,
                delta: 0,
                flight_delta: 0,
                flags: 0,
                hash,
                key_len: key.len() as u64,
            });
            core::ptr::copy_nonoverlapping(key.as_ptr(), ptr.as_ptr().add(size_of::<LogEntry>()), key.len());
            *slot = e;
            match self.h().tail {
                0 => self.h_mut().head = e,
                tail => self.entry_mut(tail).next = e,
            }
        }
        let h = self.h_mut();
        h.tail = e;
        h.len += 1;
        h.bytes += entry_bytes(key.len());
        Some(e)
    }

    fn dropped(&mut self) {
        self.h_mut().dropped += 1;
    }

    /// Records an addition of `delta` to `key`.
    pub(crate) fn record_add(&mut self, hash: u32, key: &[u8], delta: i64) {
        self.h_mut().recorded += 1;
        let Some(e) = self.entry_for(hash, key) else {
            return self.dropped();
        };
        // SAFETY: `entry_for` returned a live entry.
        let entry = unsafe { self.entry_mut(e) };
        // A pending latest state already includes the addition.
        if entry.flags & PENDING_LATEST != 0 {
            return;
        }
        match entry.delta.checked_add(delta) {
            Some(sum) => {
                entry.delta = sum;
                entry.flags |= PENDING_DELTA;
            }
            // The additions made here swing further than a long: never
            // wrapped, the key's value is sent instead (it includes them).
            None => {
                entry.delta = 0;
                entry.flags = (entry.flags & !PENDING_DELTA) | PENDING_LATEST;
            }
        }
    }

    /// Records that `key`'s latest state (value, expiry or absence) is to be sent.
    pub(crate) fn record_latest(&mut self, hash: u32, key: &[u8]) {
        self.h_mut().recorded += 1;
        let Some(e) = self.entry_for(hash, key) else {
            return self.dropped();
        };
        // SAFETY: `entry_for` returned a live entry.
        let entry = unsafe { self.entry_mut(e) };
        entry.delta = 0;
        entry.flags = (entry.flags & !PENDING_DELTA) | PENDING_LATEST;
    }

    /// Records a clear: every pending change is dropped, the clear goes first.
    pub(crate) fn record_clear(&mut self) {
        self.h_mut().recorded += 1;
        self.h_mut().clear |= CLEAR_PENDING;
        let (mut prev, mut e) = (0, self.h().head);
        while e != 0 {
            // SAFETY: a live entry of the order list.
            let entry = unsafe { self.entry_mut(e) };
            let next = entry.next;
            entry.delta = 0;
            entry.flags &= !PENDING;
            if entry.flags == 0 {
                self.unlink(prev, e);
            } else {
                prev = e;
            }
            e = next;
        }
    }

    /// The key's additions not yet acknowledged, pending and in flight: what the
    /// local value holds beyond what the server has seen of this host. Wider
    /// than a long: the two deltas summed never wrap.
    pub(crate) fn unacked_delta(&self, hash: u32, key: &[u8]) -> i128 {
        self.find(hash, key).map_or(0, |e| {
            // SAFETY: `find` returned a live entry.
            let entry = unsafe { self.entry(e) };
            let mut d = 0i128;
            if entry.flags & PENDING_DELTA != 0 {
                d += i128::from(entry.delta);
            }
            if entry.flags & FLIGHT_DELTA != 0 {
                d += i128::from(entry.flight_delta);
            }
            d
        })
    }

    /// Whether the key's latest state is pending or in flight: a change from
    /// another host must not overwrite it, since it will be sent after that one.
    pub(crate) fn has_unacked_latest(&self, hash: u32, key: &[u8]) -> bool {
        self.find(hash, key).is_some_and(|e| {
            // SAFETY: `find` returned a live entry.
            unsafe { self.entry(e) }.flags & (PENDING_LATEST | FLIGHT_LATEST) != 0
        })
    }

    /// The log's name at the server.
    pub(crate) fn host(&self) -> u64 {
        self.h().host
    }

    /// Whether the key has a change not yet acknowledged.
    pub(crate) fn has_unacked(&self, hash: u32, key: &[u8]) -> bool {
        self.find(hash, key).is_some()
    }

    /// Unlinks and frees `e`, which has neither pending nor in-flight changes
    /// and follows `prev` in order (0: `e` is the head).
    fn unlink(&mut self, prev: u64, e: u64) {
        // SAFETY: `e` is live; its hash names its chain.
        let (hash, next, hnext) = unsafe { (self.entry(e).hash, self.entry(e).next, self.entry(e).hnext) };
        let slot = self.bucket_slot(hash);
        // SAFETY: the chain holds `e`; the link to it is rewritten past it.
        unsafe {
            let mut link = slot;
            while *link != e {
                link = core::ptr::addr_of_mut!((*self.entry_ptr(*link)).hnext);
            }
            *link = hnext;
        }
        match prev {
            0 => self.h_mut().head = next,
            // SAFETY: `prev` is live and precedes `e`.
            p => unsafe { self.entry_mut(p) }.next = next,
        }
        if self.h().tail == e {
            self.h_mut().tail = prev;
        }
        self.h_mut().len -= 1;
        // SAFETY: unlinked from both lists above.
        unsafe { self.free_entry(e) };
    }

    /// # Safety
    /// `e` is an entry of this log that nothing links any more.
    unsafe fn free_entry(&mut self, e: u64) {
        // SAFETY: the caller passes an entry of this log that nothing links but that is not yet freed: still
        // whole.
        let key_len = unsafe { self.entry(e) }.key_len as usize;
        let h = self.h_mut();
        h.bytes = h.bytes.saturating_sub(entry_bytes(key_len));
        // SAFETY: `e` came from this arena's `alloc`, nothing links it, and it is freed once, here.
        unsafe {
            let ptr = NonNull::new_unchecked(self.arena.base().add(e as usize));
            self.arena.free(ptr);
        }
    }

    /// The batch to send: the one in flight if any (the same changes under the
    /// same number), else up to `max` keys' pending changes, now in flight.
    /// `None` when there is nothing to send. Latest states are returned as
    /// `Op::Remove` here; the map fills in the values it holds.
    pub(crate) fn take(&mut self, max: usize) -> Option<(Batch, Vec<bool>)> {
        let resend = self.h().flight != 0;
        if !resend {
            if self.h().clear & CLEAR_PENDING == 0 && !self.any_pending() {
                return None;
            }
            let h = self.h_mut();
            h.seq += 1;
            h.flight = h.seq;
            if h.clear & CLEAR_PENDING != 0 {
                h.clear = CLEAR_FLIGHT;
            }
        }
        let mut batch = Batch {
            seq: self.h().flight,
            clear: self.h().clear & CLEAR_FLIGHT != 0,
            changes: Vec::new(),
        };
        let mut latest = Vec::new();
        let mut e = self.h().head;
        while e != 0 {
            // SAFETY: a live entry of the order list.
            let entry = unsafe { self.entry_mut(e) };
            if !resend && entry.flags & PENDING != 0 && batch.changes.len() < max {
                entry.flags = (entry.flags & !(PENDING | FLIGHT)) | ((entry.flags & PENDING) << 2);
                entry.flight_delta = entry.delta;
                entry.delta = 0;
            }
            let flags = entry.flags;
            let (delta, next) = (entry.flight_delta, entry.next);
            if flags & FLIGHT != 0 {
                // SAFETY: `e` is a live entry of the order list, with its key.
                let key = unsafe { self.key(e) }.to_vec();
                let op = if flags & FLIGHT_LATEST != 0 {
                    Op::Remove
                } else {
                    Op::Add { delta, expire: 0 }
                };
                latest.push(flags & FLIGHT_LATEST != 0);
                batch.changes.push(Change { key, op });
            }
            e = next;
        }
        Some((batch, latest))
    }

    fn any_pending(&self) -> bool {
        let mut e = self.h().head;
        while e != 0 {
            // SAFETY: a live entry of the order list.
            let entry = unsafe { self.entry(e) };
            if entry.flags & PENDING != 0 {
                return true;
            }
            e = entry.next;
        }
        false
    }

    /// The batch `seq` arrived: its changes leave the log. Returns false (and
    /// changes nothing) when `seq` is not the batch in flight.
    pub(crate) fn ack(&mut self, seq: u64) -> bool {
        if seq == 0 || self.h().flight != seq {
            return false;
        }
        let mut acked = u64::from(self.h().clear & CLEAR_FLIGHT != 0);
        let h = self.h_mut();
        h.flight = 0;
        h.clear &= !CLEAR_FLIGHT;
        let (mut prev, mut e) = (0, self.h().head);
        while e != 0 {
            // SAFETY: a live entry of the order list.
            let entry = unsafe { self.entry_mut(e) };
            let next = entry.next;
            if entry.flags & FLIGHT != 0 {
                acked += 1;
                entry.flags &= !FLIGHT;
                entry.flight_delta = 0;
            }
            if entry.flags == 0 {
                self.unlink(prev, e);
            } else {
                prev = e;
            }
            e = next;
        }
        self.h_mut().acked += acked;
        true
    }

    pub(crate) fn stats(&self) -> LogStats {
        let h = self.h();
        LogStats {
            pending: h.len + u64::from(h.clear != 0),
            recorded: h.recorded,
            acked: h.acked,
            dropped: h.dropped,
            seq: h.seq,
            connected: h.connected != 0,
            applied: h.applied,
            lag_ms: h.lag_ms,
            last_error: h.error[..(h.error_len as usize).min(ERROR_BYTES)].to_vec(),
            bytes: h.bytes,
        }
    }

    /// Records what the replicating worker reports.
    pub(crate) fn set_status(&mut self, status: &Status<'_>) {
        let h = self.h_mut();
        h.connected = u32::from(status.connected);
        h.applied = h.applied.wrapping_add(status.applied);
        if let Some(lag) = status.lag_ms {
            h.lag_ms = lag;
        }
        if let Some(error) = status.error {
            let n = error.len().min(ERROR_BYTES);
            h.error[..n].copy_from_slice(&error[..n]);
            h.error_len = n as u32;
        }
    }
}
