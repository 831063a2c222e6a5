//! The module's logging layer: [`map_log!`], which writes nginx's
//! `shared map "NAME"` before a line about one map, the running cycle's log,
//! and the wording of a refused write (the map, the key, escaped and cut to a
//! readable length, and the reason, at `error`) and of the write of a dead
//! worker finished by the next one, or its zone made again (at `warn`).

use core::fmt;

use ngx::ffi::{ngx_log_t, NGX_LOG_ERR, NGX_LOG_WARN};
use shared_map_engine::{Error, Recovery, Refusal};

/// How a line names a map: `shared map "NAME"`.
pub struct MapName<'a>(pub &'a str);

impl fmt::Display for MapName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shared map \"{}\"", self.0)
    }
}

/// Logs a line about the map `name` at `level` to `log`: `shared map "NAME"`,
/// then the rest as `format!` makes it (it starts with `: ` or a space).
macro_rules! map_log {
    ($level:expr, $log:expr, $name:expr, $($arg:tt)+) => {
        ::ngx::ngx_log_error!($level, $log, "{}{}", $crate::log::MapName(&$name), format_args!($($arg)+))
    };
}
pub(crate) use map_log;

/// The running cycle's log, in a worker or the master.
pub fn cycle_log() -> *mut ngx_log_t {
    ngx::log::ngx_cycle_log().as_ptr()
}

/// A key as it may appear in a log line: escaped and cut to a readable length.
pub use shared_map_http_parse::api::printable;

/// Logs, once, why a write of `key` to the map `name` was refused; `why` says
/// what the engine tried before refusing for lack of room.
pub fn log_refusal(log: *mut ngx_log_t, name: &str, key: &[u8], err: Error, why: Option<Refusal>) {
    let key = printable(key);
    match (err, why) {
        (Error::NoRoom, Some(Refusal { bytes, evicted, .. })) if bytes > 0 => {
            map_log!(
                NGX_LOG_ERR,
                log,
                name,
                " is full: could not allocate {} bytes after evicting {} entries, could not add \"{}\"",
                bytes,
                evicted,
                key
            );
        }
        (Error::NoRoom, _) => {
            map_log!(NGX_LOG_ERR, log, name, " is full, could not add \"{}\"", key);
        }
        (Error::TypeConflict, _) => {
            map_log!(NGX_LOG_ERR, log, name, ": \"{}\" holds a string, not a number", key);
        }
        (Error::Overflow, _) => {
            map_log!(NGX_LOG_ERR, log, name, ": \"{}\" would overflow", key);
        }
        (other, _) => {
            map_log!(NGX_LOG_ERR, log, name, ": \"{}\": {}", key, other);
        }
    }
}

/// Logs that this process, taking the lock of the map `name`, finished the
/// write of a process that died holding it (nginx's master logs the death and
/// the lock it released just before, at `alert`).
pub fn log_recovery(name: &str, r: Recovery) {
    let log = cycle_log();
    map_log!(
        NGX_LOG_WARN,
        log,
        name,
        ": finished the write of a process that died holding its lock: {} the change, freed {} chunks{}",
        if r.committed { "kept" } else { "dropped" },
        r.freed,
        if r.recounted { ", counted the entries again" } else { "" }
    );
}

/// Logs that this process made the zone of the map `name` again, after a
/// process died inside nginx's allocator holding its lock.
pub fn log_rebuild(name: &str, kept: u64, dropped: u64, synced: bool) {
    let log = cycle_log();
    map_log!(
        NGX_LOG_WARN,
        log,
        name,
        ": a process died inside the allocator holding its lock: made the zone again, \
         kept {} entries, dropped {}{}",
        kept,
        dropped,
        if synced {
            ", replication starts again from the server"
        } else {
            ""
        }
    );
}
