//! What the stream module does per session: its variables' getters, the
//! counters' once-per-session results, and `shared_map_count` in stream's log
//! phase.

use core::ptr;

use ngx::core::Status;
use ngx::ffi::{
    ngx_array_push, ngx_conf_t, ngx_int_t, ngx_pcalloc, ngx_pnalloc, ngx_str_t, ngx_stream_complex_value,
    ngx_stream_conf_ctx_t, ngx_stream_core_main_conf_t, ngx_stream_core_module, ngx_stream_get_flushed_variable,
    ngx_stream_handler_pt, ngx_stream_phases_NGX_STREAM_LOG_PHASE as NGX_STREAM_LOG_PHASE, ngx_stream_session_t,
    ngx_stream_variable_value_t, NGX_OK,
};
use shared_map_engine::{Read, Value};

use super::conf::{MainConf, SrvConf, StreamKey, StreamVar};
use super::module;
use crate::counting::count;
use crate::value::{header_safe, set_found};
use crate::zone::now;

/// `postconfiguration`: `shared_map_count` runs in stream's log phase.
pub unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    // SAFETY: nginx passes the stream block's configuration; its main conf
    // array holds the core module's main conf.
    let cmcf = unsafe {
        let ctx = (*cf).ctx as *mut ngx_stream_conf_ctx_t;
        *(*ctx).main_conf.add(ngx_stream_core_module.ctx_index) as *mut ngx_stream_core_main_conf_t
    };
    // SAFETY: cmcf is the core module's main conf (read just above); its log
    // phase's handler array holds ngx_stream_handler_pt.
    let h = unsafe { ngx_array_push(&mut (*cmcf).phases[NGX_STREAM_LOG_PHASE as usize].handlers) }
        as *mut ngx_stream_handler_pt;
    if h.is_null() {
        return Status::NGX_ERROR.into();
    }
    // SAFETY: a fresh slot of the array, ours to fill.
    unsafe { *h = Some(log_handler) };
    Status::NGX_OK.into()
}

/// The key's bytes for session `s`, in the session's pool or variables;
/// `None` when evaluating it failed. A variable not found is the empty key.
///
/// # Safety
/// `s` is a live session of the configuration `key` belongs to.
unsafe fn key_bytes<'s>(s: *mut ngx_stream_session_t, key: &StreamKey) -> Option<&'s [u8]> {
    let Some(index) = key.index else {
        let mut out = ngx_str_t {
            len: 0,
            data: ptr::null_mut(),
        };
        // SAFETY: a live session; the value was compiled at configuration.
        if unsafe { ngx_stream_complex_value(s, key.key.as_ptr(), &mut out) } != NGX_OK as ngx_int_t {
            return None;
        }
        if out.len == 0 || out.data.is_null() {
            return Some(&[]);
        }
        // SAFETY: the value's `len` bytes are in the session's pool.
        return Some(unsafe { core::slice::from_raw_parts(out.data, out.len) });
    };
    // SAFETY: a live session; the index was obtained at configuration time.
    let v = unsafe { ngx_stream_get_flushed_variable(s, index) };
    // SAFETY: null or a value whose data lives as long as the session.
    match unsafe { v.as_ref() } {
        None => None,
        Some(v) if v.not_found() != 0 || v.data.is_null() => Some(&[]),
        // SAFETY: a found value's `data` holds `len` bytes, alive as long as the session.
        Some(v) => Some(unsafe { core::slice::from_raw_parts(v.data, v.len() as usize) }),
    }
}

/// Sets `v` to a copy of `bytes` in the session's pool.
///
/// # Safety
/// `s` is a live session and `v` a value slot nginx passed for it.
unsafe fn set_value(s: *mut ngx_stream_session_t, v: *mut ngx_stream_variable_value_t, bytes: &[u8]) -> ngx_int_t {
    let data = if bytes.is_empty() {
        c"".as_ptr() as *mut u8
    } else {
        // SAFETY: the session's connection and its pool are live.
        let p = unsafe { ngx_pnalloc((*(*s).connection).pool, bytes.len()) } as *mut u8;
        if p.is_null() {
            return Status::NGX_ERROR.into();
        }
        // SAFETY: `p` has room for `bytes`.
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
        p
    };
    // SAFETY: nginx passes the variable's value slot of a live session; `data`
    // holds `bytes.len()` bytes in the session's pool.
    unsafe {
        (*v).data = data;
        set_found(&mut *v, bytes.len());
    }
    Status::NGX_OK.into()
}

/// `shared_map_var` in stream: the value the key finds with the map's
/// matching, escaped as `$shared_map_value` is; empty when absent.
pub unsafe extern "C" fn var_lookup(
    s: *mut ngx_stream_session_t,
    v: *mut ngx_stream_variable_value_t,
    data: usize,
) -> ngx_int_t {
    // SAFETY: `declare` set `data` to a StreamVar of the running configuration.
    let named = unsafe { &*(data as *const StreamVar) };
    let Some(map) = named.key.map() else {
        return Status::NGX_ERROR.into();
    };
    // SAFETY: nginx passes a live session.
    let Some(key) = (unsafe { key_bytes(s, &named.key) }) else {
        return Status::NGX_ERROR.into();
    };
    let mut buf = itoa::Buffer::new();
    let how = Read {
        touch: !named.peek,
        stale: false,
    };
    let value = map.with(|m| match m.read_match(key, now(), how).map(|hit| hit.value) {
        Some(Value::Int(i)) => buf.format(i).as_bytes().to_vec(),
        Some(Value::Long(l)) => buf.format(l).as_bytes().to_vec(),
        Some(Value::Str(s)) => header_safe(s).into_owned(),
        None => Vec::new(),
    });
    // SAFETY: nginx passes a live session and its value slot.
    unsafe { set_value(s, v, &value.unwrap_or_default()) }
}

/// The session's counter results, one slot per `shared_map_incr` (`None` not
/// yet counted, `Some(None)` refused), in the connection's pool; made on first
/// use. `None` if out of memory.
///
/// # Safety
/// `s` is a live session.
unsafe fn counters<'s>(s: *mut ngx_stream_session_t) -> Option<&'s mut [Option<Option<i64>>]> {
    let index = module().ctx_index;
    // SAFETY: a live session's main conf array holds ours.
    let mcf = unsafe { &*(*(*s).main_conf.add(index) as *const MainConf) };
    let n = mcf.counters;
    // SAFETY: `s->ctx` has a slot per stream module; ours is null or the slots
    // allocated below for this session.
    let slot = unsafe { (*s).ctx.add(index) };
    // SAFETY: `slot` points into the live session's ctx array (just above).
    let mut p = unsafe { *slot } as *mut Option<Option<i64>>;
    if p.is_null() {
        // SAFETY: the connection's pool lives as long as the session; zeroed
        // bytes are `None` for Option<Option<i64>> only by layout accident,
        // so every slot is written.
        p = unsafe { ngx_pcalloc((*(*s).connection).pool, n * size_of::<Option<Option<i64>>>()) }
            as *mut Option<Option<i64>>;
        if p.is_null() {
            return None;
        }
        for i in 0..n {
            // SAFETY: `i` is inside the allocation, aligned by the pool.
            unsafe { p.add(i).write(None) };
        }
        // SAFETY: our slot in the session's context array.
        unsafe { *slot = p.cast() };
    }
    // SAFETY: `n` initialised slots, used by this session's handlers only.
    Some(unsafe { core::slice::from_raw_parts_mut(p, n) })
}

/// Whether `v` is the session's own slot in `s->variables`, nginx's cache of
/// indexed variables: a counter is not `NOCACHEABLE`, so nginx keeps its value
/// for the rest of the session and never calls the getter again. Other readers
/// (`ngx_stream_get_variable` by name, as njs does) pass a fresh slot each time
/// and need the session's context to count once.
///
/// # Safety
/// `s` is a live session.
unsafe fn cached_by_nginx(s: *mut ngx_stream_session_t, v: *mut ngx_stream_variable_value_t) -> bool {
    // SAFETY: a live session's main conf array holds the core module's.
    let cmcf =
        unsafe { &*(*(*s).main_conf.add(ngx_stream_core_module.ctx_index) as *const ngx_stream_core_main_conf_t) };
    // SAFETY: the caller's session is live; its `variables` array has
    // cmcf.variables.nelts values.
    let start = unsafe { (*s).variables };
    let end = start.wrapping_add(cmcf.variables.nelts);
    start <= v && v < end
}

/// `shared_map_incr` in stream: adds `by` once per session, however often the
/// variable is read, and yields the new value.
pub unsafe extern "C" fn var_incr(
    s: *mut ngx_stream_session_t,
    v: *mut ngx_stream_variable_value_t,
    data: usize,
) -> ngx_int_t {
    // SAFETY: `declare` set `data` to a StreamVar of the running configuration.
    let named = unsafe { &*(data as *const StreamVar) };
    let (Some(incr), Some(map)) = (named.incr, named.key.map()) else {
        return Status::NGX_ERROR.into();
    };
    let add = || {
        // SAFETY: nginx passes a live session.
        let key = unsafe { key_bytes(s, &named.key) }?;
        // SAFETY: a live session's connection.
        let log = unsafe { (*(*s).connection).log };
        Some(count::add(log, map, key, incr.by, incr.init, incr.ttl))
    };
    // SAFETY: nginx passes a live session and a value slot for it.
    let result = if unsafe { cached_by_nginx(s, v) } {
        // nginx keeps this value for the rest of the session and never asks again.
        let Some(n) = add() else {
            return Status::NGX_ERROR.into();
        };
        n
    } else {
        // SAFETY: nginx passes a live session.
        let Some(slots) = (unsafe { counters(s) }) else {
            return Status::NGX_ERROR.into();
        };
        let Some(slot) = slots.get_mut(named.slot) else {
            return Status::NGX_ERROR.into();
        };
        match *slot {
            Some(done) => done,
            None => {
                let Some(n) = add() else {
                    return Status::NGX_ERROR.into();
                };
                *slot = Some(n);
                n
            }
        }
    };
    let mut buf = itoa::Buffer::new();
    let bytes = result.map_or(&b""[..], |n| buf.format(n).as_bytes());
    // SAFETY: nginx passes a live session and its value slot.
    unsafe { set_value(s, v, bytes) }
}

/// Stream's log phase: `shared_map_count` of the session's server, once per
/// session, however it ended.
unsafe extern "C" fn log_handler(s: *mut ngx_stream_session_t) -> ngx_int_t {
    // SAFETY: a live session's server conf array holds ours.
    let scf = unsafe { &*(*(*s).srv_conf.add(module().ctx_index) as *const SrvConf) };
    let Some(counts) = scf.counts.as_ref() else {
        return Status::NGX_OK.into();
    };
    // SAFETY: a session in its log phase still has its connection.
    let log = unsafe { (*(*s).connection).log };
    for k in counts {
        // SAFETY: nginx passes a live session.
        if let (Some(map), Some(key)) = (k.map(), unsafe { key_bytes(s, k) }) {
            count::add(log, map, key, 1, 0, shared_map_engine::Ttl::Default);
        }
    }
    Status::NGX_OK.into()
}
