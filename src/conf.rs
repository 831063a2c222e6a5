//! The module's directives: the command table, the configuration structures and
//! the `cmd_*` handlers. Parsing itself is in the engine (`spec::parse`).

use core::ffi::{c_char, c_void};
use core::ptr::NonNull;
use std::fs;
use std::path::Path;

use ngx::core::{Pool, NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_addr_t, ngx_command_t, ngx_conf_t, ngx_cycle_t, ngx_http_compile_complex_value,
    ngx_http_compile_complex_value_t, ngx_http_complex_value_t, ngx_http_core_srv_conf_t,
    ngx_http_get_flushed_variable, ngx_http_get_variable_index, ngx_http_request_t, ngx_shm_zone_t, ngx_str_t,
    ngx_uint_t, NGX_LOG_EMERG, NGX_OK,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, Merge, MergeConfigError, Request};
use ngx::ngx_conf_log_error;
use shared_map_engine::spec;
use shared_map_http_parse::redis::RedisParams;
use shared_map_http_parse::session::{ApiAccess, SessionSpec};

use crate::module::Module;
use crate::zone::{self, SharedMap};

/// `http` level: every map defined by `shared_map`.
#[derive(Default)]
pub struct MainConf {
    /// Boxed: each zone's `data` points at its SharedMap, which must not move.
    #[allow(clippy::vec_box)]
    pub maps: Vec<Box<SharedMap>>,
    /// Every `shared_map_var` and `shared_map_incr`; boxed, since each
    /// variable's `data` points at its NamedVar.
    #[allow(clippy::vec_box)]
    pub named: Vec<Box<NamedVar>>,
    /// `shared_map_redis`: where maps with `sync` replicate.
    pub redis: Option<RedisConf>,
    /// Every server's `server_name`s, for the API's browser guard
    /// (`browser.rs`): nginx's own array of them is gone after configuration.
    pub server_names: Vec<ServerNames>,
    /// Some context has `shared_map_count`: the log-phase handler is needed.
    pub counting: bool,
    /// Some context has `shared_map_session`: the header filter is needed.
    pub sessions: bool,
}

/// The names of one `server`, copied in postconfiguration: nginx keeps its
/// `server_names` array in the configuration's temporary pool, destroyed once
/// the configuration is read. The strings and compiled regular expressions it
/// points at live in the cycle's pool, as long as this configuration.
pub struct ServerNames {
    /// The server's core configuration: what a request's `srv_conf` holds.
    pub server: *const ngx_http_core_srv_conf_t,
    pub names: Vec<ServerName>,
}

pub enum ServerName {
    /// An exact name or a wildcard, lowercase as nginx keeps it.
    Plain(Vec<u8>),
    /// A `~regex` name: nginx's compiled expression (`ngx_regex_t`).
    Regex(NonNull<c_void>),
}

/// One `shared_map_var` or `shared_map_incr` directive.
pub struct NamedVar {
    /// The variable's name, without `$`, lowercase as nginx keeps it.
    pub name: String,
    pub map_name: String,
    pub mk: MapKey,
    /// `shared_map_incr`: what to add; `None` for `shared_map_var`.
    pub incr: Option<NamedIncr>,
    /// The counter's number among the request's counts.
    pub slot: usize,
    /// `shared_map_var ... peek`: reads leave the entry's recency alone.
    pub peek: bool,
}

/// The parameters of a `shared_map_incr`.
#[derive(Clone, Copy)]
pub struct NamedIncr {
    pub by: i64,
    pub init: i64,
    pub ttl: shared_map_engine::Ttl,
}

/// `shared_map_redis address [db=number] [password=text] [prefix=text];`
pub struct RedisConf {
    /// The resolved address, in the configuration pool (`ngx_parse_url`);
    /// none with `sentinel=`, which asks the sentinels for it.
    pub addr: Option<NonNull<ngx_addr_t>>,
    pub params: RedisParams,
    /// The TLS context, with `tls`.
    pub tls: Option<crate::replication::redis_tls::TlsConf>,
    /// The master's name and its sentinels, with `sentinel=`.
    pub sentinel: Option<crate::replication::sentinel::SentinelConf>,
}

/// `init_main_conf`: a map with `sync` needs `shared_map_redis`, which may come
/// before or after it in the `http` block.
pub unsafe extern "C" fn init_main_conf(cf: *mut ngx_conf_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx passes our main conf (made by create_main_conf).
    let mcf = unsafe { &*(conf as *const MainConf) };
    if mcf.redis.is_some() {
        return NGX_CONF_OK;
    }
    // With the maps a `stream {}` before this block defined.
    // SAFETY: the cycle being configured.
    if let Some(map) = unsafe { all_maps((*cf).cycle) }.into_iter().find(|m| m.spec.sync) {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "no \"shared_map_redis\" is defined for the shared map \"{}\" with \"sync\"",
            map.name
        );
        return NGX_CONF_ERROR;
    }
    NGX_CONF_OK
}

/// A map and a key to use in it: `shared_map_key` and `shared_map_count`.
#[derive(Clone, Copy)]
pub struct MapKey {
    /// The map's zone; its `data` is the SharedMap once `shared_map` defined it.
    pub zone: NonNull<ngx_shm_zone_t>,
    pub key: NonNull<ngx_http_complex_value_t>,
    /// Where the key comes from when it is a single variable.
    pub var: Option<KeyVar>,
}

/// A key that is a single variable, read in place instead of evaluating the
/// complex value into a fresh copy (the hot path of counting).
#[derive(Clone, Copy)]
pub enum KeyVar {
    /// `$uri`: `r->uri`, exactly what nginx's own `$uri` getter returns.
    Uri,
    /// Any other variable, by index.
    Index(ngx_uint_t),
}

impl MapKey {
    /// The key's bytes for request `r`; `None` when evaluating it failed. A
    /// variable that is not found is the empty key, as in a complex value.
    pub fn key<'r>(&self, r: &'r Request) -> Option<&'r [u8]> {
        let index = match self.var {
            None => {
                // SAFETY: compiled into the configuration pool.
                return r.get_complex_value(unsafe { self.key.as_ref() }).map(|k| k.as_bytes());
            }
            Some(KeyVar::Uri) => return Some(r.as_ref().uri.as_bytes()),
            Some(KeyVar::Index(index)) => index,
        };
        let rp = r as *const Request as *mut ngx_http_request_t;
        // SAFETY: a live request; the index was obtained at configuration time.
        let v = unsafe { ngx_http_get_flushed_variable(rp, index) };
        // SAFETY: null or a value in the request's variables, whose data lives
        // as long as the request.
        match unsafe { v.as_ref() } {
            None => None,
            Some(v) if v.not_found() != 0 || v.data.is_null() => Some(&[]),
            // SAFETY: a variable nginx evaluated without `not_found` has `len` valid bytes at `data`, in the
            // request's pool.
            Some(v) => Some(unsafe { core::slice::from_raw_parts(v.data, v.len() as usize) }),
        }
    }

    pub fn map(&self) -> Option<&SharedMap> {
        // SAFETY: the zone belongs to the running cycle; nginx refuses to start
        // when a referenced zone was never defined (zero size).
        unsafe { SharedMap::from_zone(self.zone.as_ptr()) }
    }
}

/// `http`, `server` and `location` level.
#[derive(Default)]
pub struct LocConf {
    /// `shared_map_key`: what `$shared_map_incr` and `$shared_map_value` use.
    pub key: Option<MapKey>,
    /// `shared_map_count`: counted in the log phase; `None` inherits.
    pub counts: Option<Vec<MapKey>>,
    /// `shared_map_api`: this location's own, never inherited.
    pub api: Option<ApiConf>,
    /// `shared_map_session`: the session store of this context.
    pub session: Option<NonNull<SessionConf>>,
    /// `shared_map_session_api`: this location's own, never inherited.
    pub session_api: Option<ApiAccess>,
}

/// `shared_map_api` in a location.
pub struct ApiConf {
    /// The one map served, or `None`: every map, at `LOCATION/NAME`.
    pub zone: Option<NonNull<ngx_shm_zone_t>>,
    pub readonly: bool,
    /// The location's name when it is a prefix or exact location: what precedes
    /// the map's name in the URI. `None` (regex locations): the last segment.
    pub prefix: Option<Vec<u8>>,
}

/// One `shared_map_session` directive; lives in the configuration pool.
pub struct SessionConf {
    /// The map's zone; its `data` is the SharedMap once `shared_map` defined it.
    pub zone: NonNull<ngx_shm_zone_t>,
    pub spec: SessionSpec,
}

impl Merge for LocConf {
    fn merge(&mut self, prev: &LocConf) -> Result<(), MergeConfigError> {
        if self.key.is_none() {
            self.key = prev.key;
        }
        if self.counts.is_none() {
            self.counts = prev.counts.clone();
        }
        if self.session.is_none() {
            self.session = prev.session;
        }
        Ok(())
    }
}

/// The directive's arguments, the directive name first.
///
/// # Safety
/// `cf` is the configuration being parsed.
pub(crate) unsafe fn args<'a>(cf: *mut ngx_conf_t) -> &'a mut [ngx_str_t] {
    // SAFETY: nginx fills `cf->args` with the directive's words.
    unsafe { (*(*cf).args).as_slice_mut::<ngx_str_t>() }
}

pub(crate) fn lossy(s: &ngx_str_t) -> String {
    String::from_utf8_lossy(s.as_bytes()).into_owned()
}

/// Runs a directive's pure parser on its words from the `from`th on, and
/// reports a refusal as nginx does: a word that is not UTF-8 is an
/// `invalid parameter`, else the parser's error says why. `None` when
/// refused (logged).
///
/// # Safety
/// `cf` is the configuration being parsed.
pub(crate) unsafe fn parse_words<T, E: core::fmt::Display>(
    cf: *mut ngx_conf_t,
    from: usize,
    parse: impl FnOnce(&[&str]) -> Result<T, E>,
) -> Option<T> {
    // SAFETY: `cf` is the configuration nginx is parsing; its `args` hold this directive's words.
    let args = unsafe { args(cf) };
    let mut words = Vec::with_capacity(args.len().saturating_sub(from));
    for a in args.get(from..).unwrap_or(&[]) {
        let Ok(w) = a.to_str() else {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "invalid parameter \"{}\"", lossy(a));
            return None;
        };
        words.push(w);
    }
    match parse(&words) {
        Ok(t) => Some(t),
        Err(e) => {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}", e);
            None
        }
    }
}

/// `shared_map name type?space=size[&entries=n][&timeout=t][&evict][&state=path];`
pub unsafe extern "C" fn cmd_set_shared_map(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes our main conf (NGX_HTTP_MAIN_CONF_OFFSET).
    let mcf = unsafe { &mut *(conf as *mut MainConf) };
    // SAFETY: nginx passes the configuration being parsed.
    unsafe { define_map(cf, &mut mcf.maps) }
}

/// Defines the map the directive in `cf` names, in `http {}` or `stream {}`:
/// one name is one zone, whichever block defines it, so the name must be new
/// to both. The map joins `maps`, the defining block's list.
///
/// # Safety
/// `cf` is the configuration being parsed, at a `shared_map` directive.
#[allow(clippy::vec_box)]
pub(crate) unsafe fn define_map(cf: *mut ngx_conf_t, maps: &mut Vec<Box<SharedMap>>) -> *mut c_char {
    // SAFETY: nginx passes the configuration being parsed.
    let args = unsafe { args(cf) };
    let name = lossy(&args[1]);
    if args[1].is_empty() || name.as_bytes() != args[1].as_bytes() {
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "invalid shared map name \"{}\"", name);
        return NGX_CONF_ERROR;
    }
    // SAFETY: the cycle being configured; the blocks parsed so far.
    let defined = unsafe { all_maps((*cf).cycle) };
    if defined.iter().any(|m| m.name == name) {
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "shared_map \"{}\" is already defined", name);
        return NGX_CONF_ERROR;
    }
    let Ok(spec_text) = args[2].to_str() else {
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "invalid parameter \"{}\"", lossy(&args[2]));
        return NGX_CONF_ERROR;
    };
    let spec = match spec::parse(&name, spec_text) {
        Ok(spec) => spec,
        Err(e) => {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}", e);
            return NGX_CONF_ERROR;
        }
    };

    let mut spec = spec;
    if let Some(path) = spec.state.take() {
        // SAFETY: the cycle being configured and its prefix (`-p`) are live.
        let prefix = unsafe { (*(*cf).cycle).prefix.as_bytes() };
        let path = full_path(prefix, &path);
        if let Some(other) = defined
            .iter()
            .find(|m| m.spec.state.as_deref().is_some_and(|p| same_state_file(p, &path)))
        {
            ngx_conf_log_error!(
                NGX_LOG_EMERG,
                cf,
                "state file \"{}\" is already used by shared_map \"{}\"",
                path,
                other.name
            );
            return NGX_CONF_ERROR;
        }
        spec.state = Some(path);
    }

    // SAFETY: cf is being parsed; the name lives in the configuration pool.
    let Some(zone) = (unsafe { zone::add_zone(cf, &mut args[1], spec.space) }) else {
        return NGX_CONF_ERROR;
    };
    // SAFETY: nginx passes the configuration being parsed, of a live cycle.
    let Some(cycle) = NonNull::new(unsafe { (*cf).cycle }) else {
        return NGX_CONF_ERROR;
    };
    let map = Box::new(SharedMap::new(name, spec, zone, cycle));
    // SAFETY: the zone is ours (same tag); the Box outlives the cycle's use of it
    // because the main conf is dropped only with the cycle's pool.
    unsafe {
        (*zone.as_ptr()).init = Some(zone::init_zone);
        (*zone.as_ptr()).data = &*map as *const SharedMap as *mut c_void;
    }
    maps.push(map);
    NGX_CONF_OK
}

/// Resolves `name key` to a zone reference and a compiled complex value.
///
/// # Safety
/// `cf` is the configuration being parsed and `args` its arguments.
unsafe fn map_key(cf: *mut ngx_conf_t, args: &mut [ngx_str_t]) -> Option<MapKey> {
    // SAFETY: `cf` is the configuration being parsed and `args` its words, as the caller guarantees.
    unsafe { map_key_of(cf, args[1], args[2]) }
}

/// Resolves a map's name and a key to a zone reference and a compiled complex
/// value.
///
/// # Safety
/// `cf` is the configuration being parsed; both strings live in its pool.
pub(crate) unsafe fn map_key_of(cf: *mut ngx_conf_t, mut name: ngx_str_t, mut key: ngx_str_t) -> Option<MapKey> {
    // A reference: the map may be defined later.
    // SAFETY: cf is being parsed; the name lives in the configuration pool.
    let zone = unsafe { zone::add_zone(cf, &mut name, 0) }?;

    // SAFETY: the configuration pool outlives the cycle's requests.
    let pool = unsafe { Pool::from_ngx_pool((*cf).pool) };
    let cv = NonNull::new(pool.calloc_type::<ngx_http_complex_value_t>())?;
    // SAFETY: zeroed is the documented initial state of this struct.
    let mut ccv: ngx_http_compile_complex_value_t = unsafe { core::mem::zeroed() };
    ccv.cf = cf;
    ccv.value = &mut key;
    ccv.complex_value = cv.as_ptr();
    // SAFETY: ccv is filled as ngx_http_compile_complex_value expects; it
    // copies the key's ngx_str_t, whose bytes stay in the configuration pool.
    if unsafe { ngx_http_compile_complex_value(&mut ccv) } != NGX_OK as isize {
        return None;
    }
    let var = match single_variable(key.as_bytes()) {
        Some(b"uri") => Some(KeyVar::Uri),
        Some(name) => {
            let mut name = ngx_str_t {
                len: name.len(),
                data: name.as_ptr() as *mut u8,
            };
            // SAFETY: cf is being parsed; the name lives in the configuration pool.
            let index = unsafe { ngx_http_get_variable_index(cf, &mut name) };
            Some(KeyVar::Index(ngx_uint_t::try_from(index).ok()?))
        }
        None => None,
    };
    Some(MapKey { zone, key: cv, var })
}

/// The name of the variable when `value` is exactly one variable: `$name` or
/// `${name}`, with the characters nginx allows in a variable name.
pub(crate) fn single_variable(value: &[u8]) -> Option<&[u8]> {
    let rest = value.strip_prefix(b"$")?;
    let name = match rest.strip_prefix(b"{") {
        Some(braced) => braced.strip_suffix(b"}")?,
        None => rest,
    };
    (!name.is_empty() && name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_')).then_some(name)
}

/// `shared_map_key name key;`
pub unsafe extern "C" fn cmd_set_key(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx passes our location conf.
    let lcf = unsafe { &mut *(conf as *mut LocConf) };
    if lcf.key.is_some() {
        return c"is duplicate".as_ptr() as *mut c_char;
    }
    // SAFETY: nginx passes the configuration being parsed.
    match unsafe { map_key(cf, args(cf)) } {
        Some(k) => {
            lcf.key = Some(k);
            NGX_CONF_OK
        }
        None => NGX_CONF_ERROR,
    }
}

/// `shared_map_count name key;` (may be repeated)
pub unsafe extern "C" fn cmd_add_count(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes our location conf.
    let lcf = unsafe { &mut *(conf as *mut LocConf) };
    // SAFETY: nginx passes the configuration being parsed.
    match unsafe { map_key(cf, args(cf)) } {
        Some(k) => {
            lcf.counts.get_or_insert_with(Vec::new).push(k);
            // SAFETY: nginx passes the configuration being parsed, inside `http`.
            if let Some(mcf) = Module::main_conf_mut(unsafe { &*cf }) {
                mcf.counting = true;
            }
            NGX_CONF_OK
        }
        None => NGX_CONF_ERROR,
    }
}

// SAFETY: the main conf slot of this module holds a MainConf, made by
// `create_main_conf` from this binding.
unsafe impl HttpModuleMainConf for Module {
    type MainConf = MainConf;
}

// SAFETY: the location conf slot of this module holds a LocConf, made by
// `create_loc_conf` from this binding.
unsafe impl HttpModuleLocationConf for Module {
    type LocationConf = LocConf;
}

/// Every map of the configuration `cycle` holds (or is parsing): those
/// `http {}` defined, then those `stream {}` defined.
///
/// # Safety
/// `cycle` is a live cycle, configured or being configured.
pub unsafe fn all_maps(cycle: *const ngx_cycle_t) -> Vec<&'static SharedMap> {
    // SAFETY: the caller's cycle is live, so the pointer is valid to read.
    let cycle = unsafe { &*cycle };
    let http = Module::main_conf(cycle).map(|m| m.maps.as_slice()).unwrap_or(&[]);
    #[cfg(shared_map_stream)]
    // SAFETY: `cycle` is the caller's live cycle, configured or being
    // configured, which is what `stream_module::maps` needs.
    let stream = unsafe { crate::stream_module::maps(cycle) };
    #[cfg(not(shared_map_stream))]
    let stream: &[Box<SharedMap>] = &[];
    // SAFETY: the main confs, and their maps, live as long as the cycle's pool.
    http.iter()
        .chain(stream)
        .map(|m| unsafe { &*(&**m as *const SharedMap) })
        .collect()
}

/// The `http {}` main conf of `cycle`, once that block is parsed.
///
/// # Safety
/// `cycle` is a live cycle, configured or being configured.
pub unsafe fn http_main_conf<'a>(cycle: *const ngx_cycle_t) -> Option<&'a MainConf> {
    // SAFETY: the caller's cycle is live, so the pointer is valid to read.
    Module::main_conf(unsafe { &*cycle })
}

/// Every map of the running configuration.
pub fn maps(cycle: &ngx_cycle_t) -> Vec<&'static SharedMap> {
    // SAFETY: a live cycle, by reference.
    unsafe { all_maps(cycle) }
}

/// Every map of the configuration this process runs.
pub fn running_maps() -> Vec<&'static SharedMap> {
    // SAFETY: `ngx_cycle` is the process's running cycle, set before any
    // request or event is handled.
    unsafe { all_maps(ngx::ffi::ngx_cycle) }
}

/// A relative `state=` path made absolute against nginx's prefix (`-p`), as
/// nginx does for `proxy_temp_path` and the other paths of its configuration.
pub fn full_path(prefix: &[u8], path: &str) -> String {
    if path.starts_with('/') || prefix.is_empty() {
        return path.to_owned();
    }
    let mut full = String::from_utf8_lossy(prefix).into_owned();
    if !full.ends_with('/') {
        full.push('/');
    }
    full.push_str(path.strip_prefix("./").unwrap_or(path));
    full
}

/// Two state paths name one file: the same text once the directory is resolved
/// (symbolic links, `..`), where it exists.
pub fn same_state_file(a: &str, b: &str) -> bool {
    fn canonical(path: &str) -> String {
        let p = Path::new(path);
        match (p.parent().and_then(|d| fs::canonicalize(d).ok()), p.file_name()) {
            (Some(dir), Some(name)) => dir.join(name).to_string_lossy().into_owned(),
            _ => path.to_owned(),
        }
    }
    a == b || canonical(a) == canonical(b)
}
