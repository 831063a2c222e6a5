//! Counting: the add behind `$shared_map_incr` and `shared_map_count`, and the
//! log-phase handler that runs `shared_map_count` for every request.

use ngx::core::Status;
use ngx::ffi::{ngx_http_request_t, ngx_int_t, ngx_log_t, NGX_LOG_ALERT};
use ngx::http::{HttpModuleLocationConf, Request};
use shared_map_engine::Ttl;

use crate::conf::MapKey;
use crate::log::{log_refusal, map_log};
use crate::module::Module;
use crate::zone::{now, SharedMap};

/// Adds 1 to the key `mk` names for this request; `None` (logged) if refused.
pub fn count(r: &Request, mk: &MapKey) -> Option<i64> {
    let key = mk.key(r)?;
    count_by(r, mk.map()?, key, 1, 0, Ttl::Default)
}

/// Adds `by` to `key` in `map` (an absent key starts at `init` with `ttl`);
/// `None` (logged) if refused.
pub fn count_by(r: &Request, map: &SharedMap, key: &[u8], by: i64, init: i64, ttl: Ttl) -> Option<i64> {
    add(r.log(), map, key, by, init, ttl)
}

/// Adds `by` to `key` in `map` for an HTTP request or a stream session, whose
/// log takes a refusal; `None` (logged) if refused.
pub fn add(log: *mut ngx_log_t, map: &SharedMap, key: &[u8], by: i64, init: i64, ttl: Ttl) -> Option<i64> {
    // A present number counts without the mutex; an insert takes it.
    match map.add_lockless(key, by, now()) {
        Some(Ok(v)) => return Some(v),
        Some(Err(e)) => {
            log_refusal(log, &map.name, key, e, None);
            return None;
        }
        None => {}
    }
    match map.with(|m| m.add(key, by, init, ttl, now()).map_err(|e| (e, m.refusal()))) {
        Ok(Ok(v)) => Some(v),
        Ok(Err((e, why))) => {
            log_refusal(log, &map.name, key, e, why);
            None
        }
        Err(_) => {
            map_log!(NGX_LOG_ALERT, log, map.name, " is not initialised");
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
    Status::NGX_OK.into()
}
