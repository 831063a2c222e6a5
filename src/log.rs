//! How the module words a refused write in the error log: the map, the key
//! (escaped and cut to a readable length) and the reason, at `error`.

use ngx::ffi::{ngx_log_t, NGX_LOG_ERR};
use ngx::ngx_log_error;
use shared_map_engine::{Error, Refusal};

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
