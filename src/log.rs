//! How the module words a refused write in the error log: the map, the key
//! (escaped and cut to a readable length) and the reason, at `error`; and the
//! write of a dead worker finished by the next one, or its zone made again, at
//! `warn`.

use ngx::ffi::{ngx_cycle, ngx_log_t, NGX_LOG_ERR, NGX_LOG_WARN};
use ngx::ngx_log_error;
use shared_map_engine::{Error, Recovery, Refusal};

/// A key as it may appear in a log line: escaped and cut to a readable length.
pub fn printable(key: &[u8]) -> String {
    const MAX: usize = 64;
    let mut s: String = key[..key.len().min(MAX)].escape_ascii().to_string();
    if key.len() > MAX {
        s.push_str("...");
    }
    s
}

/// Logs, once, why a write of `key` to the map `name` was refused; `why` says
/// what the engine tried before refusing for lack of room.
pub fn log_refusal(log: *mut ngx_log_t, name: &str, key: &[u8], err: Error, why: Option<Refusal>) {
    let key = printable(key);
    match (err, why) {
        (Error::NoRoom, Some(Refusal { bytes, evicted, .. })) if bytes > 0 => {
            ngx_log_error!(
                NGX_LOG_ERR,
                log,
                "shared map \"{}\" is full: could not allocate {} bytes after evicting {} entries, could not add \"{}\"",
                name,
                bytes,
                evicted,
                key
            );
        }
        (Error::NoRoom, _) => {
            ngx_log_error!(
                NGX_LOG_ERR,
                log,
                "shared map \"{}\" is full, could not add \"{}\"",
                name,
                key
            );
        }
        (Error::TypeConflict, _) => {
            ngx_log_error!(
                NGX_LOG_ERR,
                log,
                "shared map \"{}\": \"{}\" holds a string, not a number",
                name,
                key
            );
        }
        (Error::Overflow, _) => {
            ngx_log_error!(NGX_LOG_ERR, log, "shared map \"{}\": \"{}\" would overflow", name, key);
        }
        (other, _) => {
            ngx_log_error!(NGX_LOG_ERR, log, "shared map \"{}\": \"{}\": {}", name, key, other);
        }
    }
}

/// Logs that this process, taking the lock of the map `name`, finished the
/// write of a process that died holding it (nginx's master logs the death and
/// the lock it released just before, at `alert`).
pub fn log_recovery(name: &str, r: Recovery) {
    // SAFETY: `ngx_cycle` is the running cycle in a worker or the master.
    let log = unsafe { (*ngx_cycle).log };
    ngx_log_error!(
        NGX_LOG_WARN,
        log,
        "shared map \"{}\": finished the write of a process that died holding its lock: {} the change, freed {} chunks{}",
        name,
        if r.committed { "kept" } else { "dropped" },
        r.freed,
        if r.recounted { ", counted the entries again" } else { "" }
    );
}

/// Logs that this process made the zone of the map `name` again, after a
/// process died inside nginx's allocator holding its lock.
pub fn log_rebuild(name: &str, kept: u64, dropped: u64, synced: bool) {
    // SAFETY: `ngx_cycle` is the running cycle in a worker or the master.
    let log = unsafe { (*ngx_cycle).log };
    ngx_log_error!(
        NGX_LOG_WARN,
        log,
        "shared map \"{}\": a process died inside the allocator holding its lock: made the zone again, \
         kept {} entries, dropped {}{}",
        name,
        kept,
        dropped,
        if synced {
            ", replication starts again from the server"
        } else {
            ""
        }
    );
}
