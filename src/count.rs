//! Counting: the add behind `$shared_map_incr` and `shared_map_count`, and the
//! log-phase handler that runs `shared_map_count` for every request.

use ngx::ffi::{ngx_http_request_t, ngx_int_t, ngx_time, NGX_LOG_ALERT, NGX_LOG_ERR, NGX_OK};
use ngx::http::{HttpModuleLocationConf, Request};
use ngx::ngx_log_error;
use shared_map_engine::{Error, Refusal, Ttl};

use crate::conf::MapKey;
use crate::zone::SharedMap;
use crate::Module;

/// The current time as the engine counts it: whole seconds since the epoch.
pub fn now() -> u32 {
    ngx_time() as u32
}

/// A key as it may appear in a log line: escaped and cut to a readable length.
pub fn printable(key: &[u8]) -> String {
    const MAX: usize = 64;
    let mut s: String = key[..key.len().min(MAX)].escape_ascii().to_string();
    if key.len() > MAX {
        s.push_str("...");
    }
    s
}

/// Logs, once, why a write to `map` was refused.
pub fn log_refusal(r: &Request, map: &SharedMap, key: &[u8], err: Error) {
    let key = printable(key);
    match err {
        Error::NoRoom => log_no_room(r, map, &key, None),
        Error::TypeConflict => {
            ngx_log_error!(
                NGX_LOG_ERR,
                r.log(),
                "shared map \"{}\": \"{}\" holds a string, not a number",
                map.name,
                key
            );
        }
        Error::Overflow => {
            ngx_log_error!(
                NGX_LOG_ERR,
                r.log(),
                "shared map \"{}\": \"{}\" would overflow",
                map.name,
                key
            );
        }
        other => {
            ngx_log_error!(
                NGX_LOG_ERR,
                r.log(),
                "shared map \"{}\": \"{}\": {}",
                map.name,
                key,
                other
            );
        }
    }
}

/// Logs a write refused for lack of room, with what the engine tried first.
pub fn log_no_room(r: &Request, map: &SharedMap, key: &str, why: Option<Refusal>) {
    match why {
        Some(Refusal { bytes, evicted, .. }) if bytes > 0 => {
            ngx_log_error!(
                NGX_LOG_ERR,
                r.log(),
                "shared map \"{}\" is full: could not allocate {} bytes after evicting {} entries, could not add \"{}\"",
                map.name,
                bytes,
                evicted,
                key
            );
        }
        _ => {
            ngx_log_error!(
                NGX_LOG_ERR,
                r.log(),
                "shared map \"{}\" is full, could not add \"{}\"",
                map.name,
                key
            );
        }
    }
}

/// Adds 1 to the key `mk` names for this request; `None` (logged) if refused.
pub fn count(r: &Request, mk: &MapKey) -> Option<i64> {
    // SAFETY: the complex value was compiled into the configuration pool.
    let key = r.get_complex_value(unsafe { mk.key.as_ref() })?.as_bytes();
    let map = mk.map()?;
    match map.with(|m| m.add(key, 1, 0, Ttl::Default, now()).map_err(|e| (e, m.refusal()))) {
        Ok(Ok(v)) => Some(v),
        Ok(Err((Error::NoRoom, why))) => {
            log_no_room(r, map, &printable(key), why);
            None
        }
        Ok(Err((e, _))) => {
            log_refusal(r, map, key, e);
            None
        }
        Err(_) => {
            ngx_log_error!(NGX_LOG_ALERT, r.log(), "shared map \"{}\" is not initialised", map.name);
            None
        }
    }
}

/// The log-phase handler: `shared_map_count`, whatever the response status.
///
/// # Safety
/// Called by nginx with a live request.
pub unsafe extern "C" fn log_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx passes a live request.
    let r = unsafe { Request::from_ngx_http_request(r) };
    if let Some(counts) = Module::location_conf(r).and_then(|l| l.counts.as_ref()) {
        for mk in counts {
            count(r, mk);
        }
    }
    NGX_OK as ngx_int_t
}
