//! Sync glue: the map's side of its replication log (`replog`).

use core::sync::atomic::Ordering::{Relaxed, Release};

use super::Map;
use crate::arena::Arena;
use crate::error::Error;
use crate::replog::{Batch, Log, LogStats, Op, Status};

impl<'a, A: Arena> Map<'a, A> {
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
        if let Some(log) = unsafe { Log::attach(self.arena, offset) } {
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
        unsafe { Log::attach(self.arena, offset) }
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

    pub(super) fn record(&mut self, f: impl FnOnce(&mut Log<'_, A>)) {
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
        let hash = self.hash(key);
        self.log().map_or(0, |log| log.unacked_delta(hash, key))
    }

    /// Whether `key`'s latest state made here is not yet acknowledged.
    pub fn has_unacked_latest(&mut self, key: &[u8]) -> bool {
        let hash = self.hash(key);
        self.log().is_some_and(|log| log.has_unacked_latest(hash, key))
    }

    /// The replication log's name at the server.
    pub fn sync_host(&mut self) -> u64 {
        self.log().map_or(0, |log| log.host())
    }

    /// Whether `key` has a change made here and not yet acknowledged.
    pub fn has_unacked(&mut self, key: &[u8]) -> bool {
        let hash = self.hash(key);
        self.log().is_some_and(|log| log.has_unacked(hash, key))
    }
}
