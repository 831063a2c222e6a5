//! The stream module's directives and configuration: `shared_map`,
//! `shared_map_var`, `shared_map_incr` and `shared_map_count` in `stream {}`,
//! with the parameters and errors of their `http {}` twins.

use core::ffi::{c_char, c_void};
use core::ptr::NonNull;

use ngx::core::{Pool, NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_command_t, ngx_conf_t, ngx_cycle_t, ngx_shm_zone_t, ngx_str_t, ngx_stream_add_variable,
    ngx_stream_compile_complex_value, ngx_stream_compile_complex_value_t, ngx_stream_complex_value_t,
    ngx_stream_conf_ctx_t, ngx_stream_get_variable_index, ngx_stream_module, ngx_uint_t, NGX_LOG_EMERG, NGX_OK,
    NGX_STREAM_VAR_NOCACHEABLE,
};
use ngx::ngx_conf_log_error;

use crate::conf::{self as http_conf, args, lossy, NamedIncr};
use crate::counting::named::{declaration, Declaration};
use crate::zone::{self, SharedMap};

use super::session;

/// `stream` level: the maps `stream {}` defines and its named variables.
#[derive(Default)]
pub struct MainConf {
    /// Boxed: each zone's `data` points at its SharedMap, which must not move.
    #[allow(clippy::vec_box)]
    pub maps: Vec<Box<SharedMap>>,
    /// Boxed: each variable's `data` points at its StreamVar.
    #[allow(clippy::vec_box)]
    pub named: Vec<Box<StreamVar>>,
    /// How many of `named` are counters: the slots of a session's context.
    pub counters: usize,
}

/// `stream` and `server` level.
#[derive(Default)]
pub struct SrvConf {
    /// `shared_map_count`: counted in the log phase; `None` inherits.
    pub counts: Option<Vec<StreamKey>>,
}

/// A map and a key, evaluated per session.
#[derive(Clone, Copy)]
pub struct StreamKey {
    /// The map's zone; its `data` is the SharedMap once `shared_map` defined it,
    /// in `stream {}` or `http {}`.
    pub zone: NonNull<ngx_shm_zone_t>,
    pub key: NonNull<ngx_stream_complex_value_t>,
    /// The variable's index when the key is exactly one variable, read in place.
    pub index: Option<ngx_uint_t>,
}

impl StreamKey {
    pub fn map(&self) -> Option<&SharedMap> {
        // SAFETY: the zone belongs to the running cycle; nginx refuses to start
        // when a referenced zone was never defined (zero size).
        unsafe { SharedMap::from_zone(self.zone.as_ptr()) }
    }
}

/// One `shared_map_var` or `shared_map_incr` in `stream {}`.
pub struct StreamVar {
    /// Without `$`, lowercase as nginx keeps it.
    pub name: String,
    pub map_name: String,
    pub key: StreamKey,
    /// `shared_map_incr`: what to add; `None` for `shared_map_var`.
    pub incr: Option<NamedIncr>,
    /// The counter's number among the session's counters.
    pub slot: usize,
    pub peek: bool,
}

/// Every map `stream {}` defined in `cycle`; empty without a `stream` block.
///
/// # Safety
/// `cycle` is a live cycle, configured or being configured.
pub unsafe fn maps(cycle: &ngx_cycle_t) -> &[Box<SharedMap>] {
    // SAFETY: `conf_ctx` has a slot per module index; the stream block's is
    // null until `stream {}` is parsed, then its ngx_stream_conf_ctx_t.
    let ctx = unsafe { *cycle.conf_ctx.add(ngx_stream_module.index) } as *const ngx_stream_conf_ctx_t;
    // SAFETY: a parsed stream block's ctx holds a main conf array with a slot
    // per stream module, ours made by `create_main_conf`.
    let mcf = unsafe {
        match ctx.as_ref() {
            Some(ctx) => *ctx.main_conf.add(super::module().ctx_index) as *const MainConf,
            None => return &[],
        }
    };
    // SAFETY: null or our main conf, in the cycle's pool.
    unsafe { mcf.as_ref() }.map(|m| m.maps.as_slice()).unwrap_or(&[])
}

/// Allocates `T` in the configuration pool, dropped with it.
///
/// # Safety
/// `cf` is the configuration being parsed.
unsafe fn allocate<T: Default>(cf: *mut ngx_conf_t) -> *mut c_void {
    // SAFETY: the pool of the configuration being parsed lives with the cycle.
    let pool = unsafe { Pool::from_ngx_pool((*cf).pool) };
    pool.allocate(T::default()) as *mut c_void
}

pub unsafe extern "C" fn create_main_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    // SAFETY: nginx passes the configuration being parsed.
    unsafe { allocate::<MainConf>(cf) }
}

pub unsafe extern "C" fn create_srv_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    // SAFETY: nginx passes the configuration being parsed.
    unsafe { allocate::<SrvConf>(cf) }
}

pub unsafe extern "C" fn merge_srv_conf(_: *mut ngx_conf_t, prev: *mut c_void, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx passes two SrvConf made by create_srv_conf.
    let (prev, conf) = unsafe { (&*(prev as *const SrvConf), &mut *(conf as *mut SrvConf)) };
    if conf.counts.is_none() {
        conf.counts = prev.counts.clone();
    }
    NGX_CONF_OK
}

/// `init_main_conf`: every variable's map is defined, here or in an `http {}`
/// before this block (when `http {}` comes later, a map defined nowhere is
/// refused by nginx's own check, `zero size shared memory zone`); a map with
/// `sync` here needs `shared_map_redis` in `http {}`, checked there when it
/// comes later.
pub unsafe extern "C" fn init_main_conf(cf: *mut ngx_conf_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx passes our main conf and the configuration being parsed.
    let mcf = unsafe { &*(conf as *const MainConf) };
    // SAFETY: the cycle being configured.
    let http = unsafe { http_conf::http_main_conf((*cf).cycle) };
    let Some(http) = http else {
        return NGX_CONF_OK;
    };
    if let Some(n) = mcf.named.iter().find(|n| n.key.map().is_none()) {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "unknown shared_map \"{}\" in variable \"${}\"",
            n.map_name,
            n.name
        );
        return NGX_CONF_ERROR;
    }
    if let Some(map) = mcf.maps.iter().find(|m| m.spec.sync) {
        if http.redis.is_none() {
            ngx_conf_log_error!(
                NGX_LOG_EMERG,
                cf,
                "no \"shared_map_redis\" is defined for the shared map \"{}\" with \"sync\"",
                map.name
            );
            return NGX_CONF_ERROR;
        }
    }
    NGX_CONF_OK
}

/// `shared_map name type?space=size[...];` in `stream {}`.
pub unsafe extern "C" fn cmd_set_shared_map(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes our main conf (the main conf offset).
    let mcf = unsafe { &mut *(conf as *mut MainConf) };
    // SAFETY: nginx passes the configuration being parsed.
    unsafe { http_conf::define_map(cf, &mut mcf.maps) }
}

/// Resolves a map's name and a key to a zone reference and a compiled stream
/// complex value.
///
/// # Safety
/// `cf` is the configuration being parsed; both strings live in its pool.
unsafe fn stream_key(cf: *mut ngx_conf_t, mut name: ngx_str_t, mut key: ngx_str_t) -> Option<StreamKey> {
    // A reference, with the same tag as `http {}`'s: the map may be defined
    // later, in either block.
    // SAFETY: cf is the configuration being parsed, and the name lives in
    // its pool, as `add_zone` needs.
    let zone = unsafe { zone::add_zone(cf, &mut name, 0) }?;
    // SAFETY: the configuration pool outlives the cycle's sessions.
    let pool = unsafe { Pool::from_ngx_pool((*cf).pool) };
    let cv = NonNull::new(pool.calloc_type::<ngx_stream_complex_value_t>())?;
    // SAFETY: zeroed is the documented initial state of this struct.
    let mut ccv: ngx_stream_compile_complex_value_t = unsafe { core::mem::zeroed() };
    ccv.cf = cf;
    ccv.value = &mut key;
    ccv.complex_value = cv.as_ptr();
    // SAFETY: ccv is filled as ngx_stream_compile_complex_value expects; the
    // key's bytes stay in the configuration pool.
    if unsafe { ngx_stream_compile_complex_value(&mut ccv) } != NGX_OK as isize {
        return None;
    }
    let index = match http_conf::single_variable(key.as_bytes()) {
        Some(var) => {
            let mut var = ngx_str_t {
                len: var.len(),
                data: var.as_ptr() as *mut u8,
            };
            // SAFETY: cf is being parsed; the name lives in its pool.
            let index = unsafe { ngx_stream_get_variable_index(cf, &mut var) };
            Some(ngx_uint_t::try_from(index).ok()?)
        }
        None => None,
    };
    Some(StreamKey { zone, key: cv, index })
}

/// `shared_map_count name key;` (may be repeated)
pub unsafe extern "C" fn cmd_add_count(cf: *mut ngx_conf_t, _: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx passes our server conf.
    let scf = unsafe { &mut *(conf as *mut SrvConf) };
    // SAFETY: nginx passes the configuration being parsed.
    let args = unsafe { args(cf) };
    // SAFETY: cf is the configuration being parsed; the arguments live in its pool.
    match unsafe { stream_key(cf, args[1], args[2]) } {
        Some(k) => {
            scf.counts.get_or_insert_with(Vec::new).push(k);
            NGX_CONF_OK
        }
        None => NGX_CONF_ERROR,
    }
}

/// `shared_map_var key $variable map=NAME [peek];` in `stream {}`.
pub unsafe extern "C" fn cmd_shared_map_var(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes the configuration being parsed and our main conf.
    unsafe { declare(cf, conf, false) }
}

/// `shared_map_incr key $variable map=NAME [by=] [init=] [ttl=];` in `stream {}`.
pub unsafe extern "C" fn cmd_shared_map_incr(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes the configuration being parsed and our main conf.
    unsafe { declare(cf, conf, true) }
}

/// Declares one stream variable. `set` does not exist in stream: a lookup
/// variable only reads; writes come through the HTTP API.
///
/// # Safety
/// As the directive handlers.
unsafe fn declare(cf: *mut ngx_conf_t, conf: *mut c_void, counter: bool) -> *mut c_char {
    // SAFETY: nginx passes our main conf.
    let mcf = unsafe { &mut *(conf as *mut MainConf) };
    // SAFETY: nginx passes the configuration being parsed.
    let args = unsafe { args(cf) };
    // SAFETY: cf is the configuration being parsed.
    let Some(Declaration {
        mut name,
        lower,
        params,
        map,
    }) = (unsafe { declaration(cf, args, counter, |n| mcf.named.iter().any(|d| d.name == n)) })
    else {
        return NGX_CONF_ERROR;
    };

    // A lookup is read afresh each time; a counter is cached by nginx for the
    // session (and counted once through the session's context anyway).
    let flags = if counter { 0 } else { NGX_STREAM_VAR_NOCACHEABLE };
    // SAFETY: cf is being parsed; nginx copies the name.
    let v = unsafe { ngx_stream_add_variable(cf, &mut name, flags as ngx_uint_t) };
    if v.is_null() {
        return NGX_CONF_ERROR;
    }
    // SAFETY: a variable nginx just returned.
    if unsafe { (*v).get_handler.is_some() } {
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "the duplicate \"{}\" variable", lossy(&name));
        return NGX_CONF_ERROR;
    }
    // SAFETY: the arguments live in the configuration pool.
    let Some(key) = (unsafe { stream_key(cf, map, args[1]) }) else {
        return NGX_CONF_ERROR;
    };
    let slot = mcf.counters;
    mcf.counters += usize::from(counter);
    let named = Box::new(StreamVar {
        name: lower,
        map_name: lossy(&map),
        key,
        incr: counter.then_some(params.incr),
        slot,
        peek: params.peek,
    });
    // SAFETY: a variable slot that is ours now; the Box lives in the main conf
    // for the cycle's life.
    unsafe {
        (*v).data = &*named as *const StreamVar as usize;
        (*v).get_handler = Some(if counter {
            session::var_incr
        } else {
            session::var_lookup
        });
    }
    mcf.named.push(named);
    NGX_CONF_OK
}
