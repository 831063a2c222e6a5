//! The session store: `shared_map_session` and `shared_map_session_api`, the
//! variables `$shared_map_session_id` and `$shared_map_session`, and the header
//! filter that applies (and hides) the upstream's `X-Shared-Map-Session`,
//! `X-Shared-Map-Session-Destroy` and `X-Shared-Map-Session-Rotate`.
//!
//! A session is one string entry of a shared map: the key is the session id (32
//! lowercase hex digits from 128 bits of `getrandom`), the value is the session's
//! data, and its expiry is renewed by every request that uses it. An id is only
//! ever made here: a cookie naming no live session is ignored, so a client cannot
//! choose its session id; and an upstream write gives the session a new id
//! (`rotate=on`), so an id known before a login never carries it (fixation).
//!
//! Only the application writes sessions: the API is read-only unless `write`.
//! The cookie a request gives the client is kept in the request's state and
//! written into the response by the header filter, with
//! `Cache-Control: private, no-store`, on every pass: a response replaced by a
//! filter (`ngx_http_filter_finalize_request` clears the headers) still carries it.

use core::ffi::{c_char, c_void};
use core::ptr::NonNull;
use std::io;

use ngx::core::{Pool, Status, NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_command_t, ngx_conf_t, ngx_http_discard_request_body, ngx_http_finalize_request,
    ngx_http_output_header_filter_pt, ngx_http_read_client_request_body, ngx_http_request_t,
    ngx_http_top_header_filter, ngx_int_t, ngx_list_push, ngx_list_t, ngx_str_t, ngx_table_elt_t, ngx_variable_value_t,
    NGX_HTTP_CACHE_HIT, NGX_HTTP_CACHE_REVALIDATED, NGX_HTTP_CACHE_STALE, NGX_HTTP_CACHE_UPDATING, NGX_HTTP_DELETE,
    NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_PUT, NGX_HTTP_SPECIAL_RESPONSE,
    NGX_LOG_ALERT, NGX_LOG_ERR, NGX_LOG_WARN,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule, Request};
use ngx::{ngx_log_debug_http, ngx_log_error};
use shared_map_engine::{Error, Ttl, Value};
use shared_map_http_parse::session::{
    self as session_spec, flag_is_set, upstream_write, ApiAccess, UpstreamWrite, ID_BYTES, ID_LEN,
};

use crate::conf::{args, parse_words, LocConf, SessionConf};
use crate::ctx::{request_ctx, CookieOut, Live, SessionState};
use crate::http;
use crate::http::browser;
use crate::log::map_log;
use crate::module::Module;
use crate::value::{header_safe, set_value};
use crate::zone::{self, now, SharedMap};

const SESSION_HEADER: &[u8] = b"X-Shared-Map-Session";
const DESTROY_HEADER: &[u8] = b"X-Shared-Map-Session-Destroy";
const ROTATE_HEADER: &[u8] = b"X-Shared-Map-Session-Rotate";
/// What every response that sets or expires the session cookie gets instead of
/// the upstream's own: a shared cache must never hand one client's cookie to another.
const NO_STORE: &[u8] = b"private, no-store";

impl SessionConf {
    fn map(&self) -> Option<&SharedMap> {
        // SAFETY: the zone belongs to the running cycle; nginx refuses to start
        // when a referenced zone was never defined.
        unsafe { SharedMap::from_zone(self.zone.as_ptr()) }
    }

    fn ttl(&self) -> Ttl {
        Ttl::Secs(self.spec.timeout)
    }
}

/// Why a write to the session was refused; the session is unchanged.
enum StoreError {
    TooLarge,
    Full,
    Random(io::Error),
    Unavailable,
}

enum Stored {
    Created,
    Replaced,
}

// ---------------------------------------------------------------------------
// Configuration

/// `shared_map_session name [cookie=name] [timeout=time] [secure]
/// [samesite=strict|lax|none] [path=path] [domain=domain] [rotate=on|off];`
///
/// # Safety
/// Called by nginx with the configuration being parsed and our location conf.
pub unsafe extern "C" fn cmd_set_session(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes our location conf (NGX_HTTP_LOC_CONF_OFFSET).
    let lcf = unsafe { &mut *(conf as *mut LocConf) };
    if lcf.session.is_some() {
        return c"is duplicate".as_ptr() as *mut c_char;
    }
    // SAFETY: nginx passes the configuration being parsed.
    let Some(spec) = (unsafe { parse_words(cf, 1, session_spec::parse) }) else {
        return NGX_CONF_ERROR;
    };
    // SAFETY: `cf` is the configuration nginx is parsing; its `args` hold this directive's words.
    let args = unsafe { args(cf) };
    // A reference: the map may be defined later.
    // SAFETY: cf is being parsed; the name lives in the configuration pool.
    let Some(zone) = (unsafe { zone::add_zone(cf, &mut args[1], 0) }) else {
        return NGX_CONF_ERROR;
    };
    // SAFETY: the configuration pool outlives every request of the cycle.
    let pool = unsafe { Pool::from_ngx_pool((*cf).pool) };
    let Some(session) = NonNull::new(pool.allocate(SessionConf { zone, spec })) else {
        return NGX_CONF_ERROR;
    };
    lcf.session = Some(session);
    // SAFETY: nginx passes the configuration being parsed, inside `http`.
    if let Some(mcf) = Module::main_conf_mut(unsafe { &*cf }) {
        mcf.sessions = true;
    }
    NGX_CONF_OK
}

/// `shared_map_session_api [write];`
///
/// # Safety
/// Called by nginx with the configuration being parsed and our location conf.
pub unsafe extern "C" fn cmd_set_session_api(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes our location conf (NGX_HTTP_LOC_CONF_OFFSET).
    let lcf = unsafe { &mut *(conf as *mut LocConf) };
    if lcf.session_api.is_some() {
        return c"is duplicate".as_ptr() as *mut c_char;
    }
    // SAFETY: nginx passes the configuration being parsed.
    let Some(access) = (unsafe { parse_words(cf, 1, session_spec::parse_api) }) else {
        return NGX_CONF_ERROR;
    };
    lcf.session_api = Some(access);
    // SAFETY: the core module's location conf exists in a location block.
    let Some(clcf) = NgxHttpCoreModule::location_conf_mut(unsafe { &*cf }) else {
        return NGX_CONF_ERROR;
    };
    clcf.handler = Some(api_handler);
    NGX_CONF_OK
}

// ---------------------------------------------------------------------------
// The store

fn session_conf(r: &Request) -> Option<&'static SessionConf> {
    // SAFETY: the SessionConf lives in the configuration pool of the running cycle.
    Module::location_conf(r)
        .and_then(|l| l.session)
        .map(|s| unsafe { &*s.as_ptr() })
}

/// 128 bits from the operating system's random source, as an id.
fn new_id() -> io::Result<[u8; ID_LEN]> {
    let mut buf = [0u8; ID_BYTES];
    let mut filled = 0;
    while filled < ID_BYTES {
        // SAFETY: writes at most the unfilled rest of `buf`.
        let n = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), ID_BYTES - filled, 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        filled += n as usize;
    }
    Ok(session_spec::encode_id(&buf))
}

/// Finds the request's live session, once per request, renewing its expiry:
/// without the map's lock when the session is live (`Lockless::get_renew`),
/// so a request never waits for a writer to find its session. Only a cookie
/// shaped like our ids is looked up, the first
/// `session_spec::MAX_LOOKUPS` of them in the request's order, and only a live
/// session is taken: an unknown id is ignored, never adopted. With two live
/// ids, the first wins.
fn resolve(r: &Request, conf: &SessionConf, st: &mut SessionState) {
    if st.resolved {
        return;
    }
    st.resolved = true;
    let Some(map) = conf.map() else { return };
    let name = conf.spec.cookie.as_bytes();
    let mut lookups = 0;
    for h in cookie_lines(r) {
        for value in session_spec::cookie_values(h.value.as_bytes(), name) {
            st.had_cookie = true;
            if !session_spec::is_valid_id(value) {
                continue;
            }
            let Ok(id) = <[u8; ID_LEN]>::try_from(value) else {
                continue;
            };
            if lookups == session_spec::MAX_LOOKUPS {
                return;
            }
            lookups += 1;
            let data = |v: Value<'_>| match v {
                Value::Str(data) => Some(data.to_vec()),
                _ => None,
            };
            // A live session, not near its expiry, is read and renewed without
            // the lock; anything else (a miss, a synced map) under it.
            let now = now();
            let found = match map.get_renew_lockless(&id, conf.ttl(), now, data) {
                Some(found) => Ok(found),
                None => map.with(|m| m.get_renew(&id, conf.ttl(), now).and_then(data)),
            };
            match found {
                Ok(Some(data)) => {
                    st.live = Some(Live {
                        id,
                        data,
                        created: false,
                    });
                    return;
                }
                Ok(None) => {}
                Err(_) => {
                    map_log!(NGX_LOG_ALERT, r.log(), map.name, " is not initialised");
                    return;
                }
            }
        }
    }
}

/// The request's `Cookie` header lines: since nginx 1.23 a chain linked by `next`.
#[cfg(nginx1_23_0)]
fn cookie_lines(r: &Request) -> impl Iterator<Item = &ngx_table_elt_t> {
    let mut line = r.as_ref().headers_in.cookie;
    core::iter::from_fn(move || {
        // SAFETY: `cookie` heads a chain of this request's header lines.
        let h = unsafe { line.as_ref() }?;
        line = h.next;
        Some(h)
    })
}

/// The request's `Cookie` header lines: before nginx 1.23 an array of pointers.
#[cfg(not(nginx1_23_0))]
fn cookie_lines(r: &Request) -> impl Iterator<Item = &ngx_table_elt_t> {
    let cookies = &r.as_ref().headers_in.cookies;
    // SAFETY: an initialised array of pointers to this request's header lines
    // (empty when the request has none: nginx then leaves `elts` null).
    let lines: &[*mut ngx_table_elt_t] = if cookies.elts.is_null() {
        &[]
    } else {
        unsafe { cookies.as_slice() }
    };
    // SAFETY: each pointer names a live header line of this request.
    lines.iter().filter_map(|h| unsafe { h.as_ref() })
}

/// Appends a header line to the response; returns it and its value's address.
fn push_header(r: &mut Request, key: &'static str, value: &[u8]) -> Option<(NonNull<ngx_table_elt_t>, *const u8)> {
    let pool = r.pool().as_ptr();
    // SAFETY: the pool is the request's; the copy lives as long as the request.
    let value = unsafe { ngx_str_t::from_bytes(pool, value) }?;
    let list: *mut ngx_list_t = &mut r.as_mut().headers_out.headers;
    // SAFETY: headers_out.headers is an initialised list of table elements.
    let h = NonNull::new(unsafe { ngx_list_push(list) } as *mut ngx_table_elt_t)?;
    // SAFETY: a fresh element, fully written here; zero is a valid state for
    // every field, including `next` where nginx has it (1.23+).
    unsafe {
        let mut elt: ngx_table_elt_t = core::mem::zeroed();
        elt.hash = 1;
        elt.key = ngx_str_t {
            len: key.len(),
            data: key.as_ptr() as *mut u8,
        };
        elt.value = value;
        h.as_ptr().write(elt);
    }
    Some((h, value.data))
}

/// Calls `f` on every response header line that is still sent (`hash != 0`).
fn for_each_header(r: &mut Request, mut f: impl FnMut(*mut ngx_table_elt_t)) {
    let mut part = &mut r.as_mut().headers_out.headers.part as *mut ngx::ffi::ngx_list_part_t;
    // SAFETY: the parts and elements of this request's own header list.
    while let Some(p) = unsafe { part.as_mut() } {
        let elts = p.elts as *mut ngx_table_elt_t;
        for i in 0..p.nelts {
            // SAFETY: i < nelts.
            let h = unsafe { elts.add(i) };
            // SAFETY: `h` points into the request's header list, which lives in its pool.
            if unsafe { (*h).hash } != 0 {
                f(h);
            }
        }
        part = p.next;
    }
}

/// Hides every `Cache-Control` line of the response and adds ours.
fn replace_cache_control(r: &mut Request) -> Option<()> {
    for_each_header(r, |h| {
        // SAFETY: a live line of this request's header list.
        let h = unsafe { &mut *h };
        if h.key.as_bytes().eq_ignore_ascii_case(b"Cache-Control") {
            h.hash = 0;
        }
    });
    forget_cache_control(r);
    push_header(r, "Cache-Control", NO_STORE).map(|_| ())
}

/// Drops nginx's shortcut to the `Cache-Control` lines (since 1.23 a chain).
#[cfg(nginx1_23_0)]
fn forget_cache_control(r: &mut Request) {
    r.as_mut().headers_out.cache_control = core::ptr::null_mut();
}

/// Drops nginx's shortcut to the `Cache-Control` lines (before 1.23 an array).
#[cfg(not(nginx1_23_0))]
fn forget_cache_control(r: &mut Request) {
    r.as_mut().headers_out.cache_control.nelts = 0;
}

/// Puts the request's session cookie, if it has one to send, into the
/// response, with `Cache-Control: private, no-store`. Called by the header
/// filter on each of its passes: a line an earlier pass added is rewritten while
/// it is still in the header list, and added again when a filter emptied it.
fn emit_cookie(r: &mut Request, conf: &SessionConf, st: &mut SessionState) -> Option<()> {
    let Some(cookie) = st.cookie else {
        return Some(());
    };
    let value = match cookie {
        CookieOut::Set(id) => conf.spec.set_cookie(&id),
        CookieOut::Expire => conf.spec.expire_cookie(),
    };
    let mut ours = None;
    if let Some((line, data)) = st.cookie_line {
        for_each_header(r, |h| {
            // SAFETY: a live line of this request's header list.
            if h == line.as_ptr() && core::ptr::eq(unsafe { (*h).value.data }, data) {
                ours = Some(line);
            }
        });
    }
    st.cookie_line = match ours {
        Some(line) => {
            let pool = r.pool().as_ptr();
            // SAFETY: the pool is the request's; the copy lives as long as the request.
            let value = unsafe { ngx_str_t::from_bytes(pool, value.as_bytes()) }?;
            // SAFETY: a line this request added to its own header list, still there.
            unsafe { (*line.as_ptr()).value = value };
            Some((line, value.data))
        }
        None => Some(push_header(r, "Set-Cookie", value.as_bytes())?),
    };
    replace_cache_control(r)
}

/// Writes `data` to the request's session, creating the session (with a new id
/// and its cookie) when the request has none. With `rotate`, a session the
/// request came with moves to a new id, and the old id stops naming it in the
/// same locked step.
fn store(
    r: &Request,
    conf: &SessionConf,
    st: &mut SessionState,
    data: &[u8],
    rotate: bool,
) -> Result<Stored, StoreError> {
    resolve(r, conf, st);
    let map = conf.map().ok_or(StoreError::Unavailable)?;
    let refused = |e: Error| match e {
        Error::ValueTooLarge | Error::KeyTooLarge => StoreError::TooLarge,
        _ => StoreError::Full,
    };
    let mut old = None;
    if let Some(live) = &mut st.live {
        if rotate && !live.created {
            old = Some(live.id);
        } else {
            match map.with(|m| m.replace(&live.id, Value::Str(data), conf.ttl(), now())) {
                Ok(Ok(_)) => {
                    live.data = data.to_vec();
                    return Ok(Stored::Replaced);
                }
                // Ended since this request found it: a new session, never a resurrection.
                Ok(Err(Error::NotFound)) => st.live = None,
                Ok(Err(e)) => return Err(refused(e)),
                Err(_) => return Err(StoreError::Unavailable),
            }
        }
    }
    // 128 random bits do not collide; the retry only keeps `put_if_absent` honest.
    for _ in 0..4 {
        let id = new_id().map_err(StoreError::Random)?;
        let put = map.with(|m| {
            m.put_if_absent(&id, Value::Str(data), conf.ttl(), now())?;
            if let Some(old) = &old {
                m.remove(old, now());
            }
            Ok(())
        });
        match put {
            Ok(Ok(())) => {
                ngx_log_debug_http!(
                    r,
                    "shared map: session {} in \"{}\"",
                    if old.is_some() { "moved to a new id" } else { "created" },
                    map.name
                );
                st.live = Some(Live {
                    id,
                    data: data.to_vec(),
                    created: true,
                });
                st.cookie = Some(CookieOut::Set(id));
                return Ok(if old.is_some() {
                    Stored::Replaced
                } else {
                    Stored::Created
                });
            }
            Ok(Err(Error::Exists)) => continue,
            Ok(Err(e)) => return Err(refused(e)),
            Err(_) => return Err(StoreError::Unavailable),
        }
    }
    Err(StoreError::Full)
}

/// Ends the request's session, if any, and expires the client's cookie.
/// Returns whether there was a live session.
fn destroy(r: &Request, conf: &SessionConf, st: &mut SessionState) -> bool {
    resolve(r, conf, st);
    let ended = match (st.live.take(), conf.map()) {
        (Some(live), Some(map)) => map.with(|m| m.remove(&live.id, now())).ok().flatten().is_some(),
        _ => false,
    };
    if ended || st.had_cookie || st.cookie.is_some() {
        st.cookie = Some(CookieOut::Expire);
    }
    ended
}

fn log_store_error(r: &Request, conf: &SessionConf, len: usize, err: &StoreError) {
    let name = &conf.spec.map;
    match err {
        StoreError::TooLarge => {
            map_log!(
                NGX_LOG_ERR,
                r.log(),
                name,
                ": session data of {} bytes is too large, the session is unchanged",
                len
            );
        }
        StoreError::Full => {
            map_log!(
                NGX_LOG_ERR,
                r.log(),
                name,
                " is full, could not store session data of {} bytes",
                len
            );
        }
        StoreError::Random(e) => {
            ngx_log_error!(NGX_LOG_ALERT, r.log(), "getrandom() failed ({})", e);
        }
        StoreError::Unavailable => {
            map_log!(NGX_LOG_ALERT, r.log(), name, " could not store a session");
        }
    }
}

// ---------------------------------------------------------------------------
// Variables

/// The session of the request's main request, in a context with a session store.
fn var_session_of<'a>(
    r: *mut ngx_http_request_t,
) -> Option<(&'a mut Request, &'static SessionConf, &'a mut SessionState)> {
    // SAFETY: nginx passes a live request; its main request outlives it.
    let main = unsafe { Request::from_ngx_http_request((*r).main) };
    let conf = session_conf(main)?;
    let st = &mut request_ctx(main)?.session;
    Some((main, conf, st))
}

pub unsafe extern "C" fn var_session_id(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _: usize,
) -> ngx_int_t {
    let Some((main, conf, st)) = var_session_of(r) else {
        // SAFETY: nginx passes a live request.
        return set_value(unsafe { Request::from_ngx_http_request(r) }, v, b"");
    };
    resolve(main, conf, st);
    // Ids are checked hex digits; escaped all the same, as the data is.
    set_value(main, v, &header_safe(st.live.as_ref().map_or(&[][..], |l| &l.id[..])))
}

pub unsafe extern "C" fn var_session(r: *mut ngx_http_request_t, v: *mut ngx_variable_value_t, _: usize) -> ngx_int_t {
    let Some((main, conf, st)) = var_session_of(r) else {
        // SAFETY: nginx passes a live request.
        return set_value(unsafe { Request::from_ngx_http_request(r) }, v, b"");
    };
    resolve(main, conf, st);
    // Data may have reached the map another way (shared_map_api, a state
    // file) holding CR or LF: escaped, it can never start a header of its own.
    set_value(main, v, &header_safe(st.live.as_ref().map_or(&[][..], |l| &l.data[..])))
}

// ---------------------------------------------------------------------------
// The header filter

static mut NEXT_HEADER_FILTER: ngx_http_output_header_filter_pt = None;

/// Puts the session's header filter at the top of nginx's chain (postconfiguration).
///
/// # Safety
/// Called from postconfiguration, single-threaded, once per configuration.
pub unsafe fn init_header_filter() {
    // SAFETY: nginx builds the filter chain in postconfiguration, in the master only.
    unsafe {
        NEXT_HEADER_FILTER = ngx_http_top_header_filter;
        ngx_http_top_header_filter = Some(header_filter);
    }
}

/// Whether the response was served from the proxy cache rather than just now by
/// the upstream: a cached `X-Shared-Map-Session` belongs to another client.
fn from_cache(r: &Request) -> bool {
    let Some(u) = r.upstream() else { return false };
    // SAFETY: a request's upstream lives as long as the request.
    let status = unsafe { (*u).cache_status() };
    matches!(
        status,
        NGX_HTTP_CACHE_HIT | NGX_HTTP_CACHE_STALE | NGX_HTTP_CACHE_UPDATING | NGX_HTTP_CACHE_REVALIDATED
    )
}

/// Applies the upstream's session headers and removes them from the response,
/// then puts the request's session cookie, if any, into the response.
///
/// The upstream modules (proxy, fastcgi, uwsgi, scgi, grpc) copy an upstream's
/// header lines into `headers_out.headers` before the header filters run; a
/// line with `hash == 0` is skipped by nginx's header writers.
unsafe extern "C" fn header_filter(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: set in postconfiguration, before any request.
    let next = unsafe { NEXT_HEADER_FILTER };
    let Some(next) = next else {
        return Status::NGX_ERROR.into();
    };
    // SAFETY: nginx passes a live request.
    if unsafe { (*r).main } != r {
        // SAFETY: the next filter of nginx's chain, with the request nginx passed.
        return unsafe { next(r) };
    }
    // SAFETY: `r` is a live request (the caller's contract), valid until it is finalised.
    let req = unsafe { Request::from_ngx_http_request(r) };
    let Some(conf) = session_conf(req) else {
        // SAFETY: `r` is the live request the header filter chain passes on.
        return unsafe { next(r) };
    };
    let Some(ctx) = request_ctx(req) else {
        return Status::NGX_ERROR.into();
    };
    let st = &mut ctx.session;

    let mut data: Option<ngx_str_t> = None;
    let mut end = false;
    let mut rotate = false;
    for_each_header(req, |h| {
        // SAFETY: a live line of this request's header list.
        let h = unsafe { &mut *h };
        let key = h.key.as_bytes();
        if key.eq_ignore_ascii_case(SESSION_HEADER) {
            data = Some(h.value);
        } else if key.eq_ignore_ascii_case(DESTROY_HEADER) {
            end |= flag_is_set(h.value.as_bytes());
        } else if key.eq_ignore_ascii_case(ROTATE_HEADER) {
            rotate |= flag_is_set(h.value.as_bytes());
        } else {
            return;
        }
        h.hash = 0;
    });

    if (data.is_some() || end || rotate) && from_cache(req) {
        ngx_log_error!(
            NGX_LOG_WARN,
            req.log(),
            "shared map: ignored \"X-Shared-Map-Session\" headers of a cached response"
        );
        data = None;
        end = false;
        rotate = false;
    }

    // An empty value ends the session: empty data would look to the upstream
    // exactly like no session.
    let data = match data.as_ref().map(|v| upstream_write(v.as_bytes())) {
        Some(UpstreamWrite::Store(bytes)) => Some(bytes),
        Some(UpstreamWrite::End) => {
            end = true;
            None
        }
        None => None,
    };
    // Destroying first and then storing gives a fresh id whatever `rotate` says.
    if end {
        destroy(req, conf, st);
    }
    let written = match data {
        Some(bytes) => Some((bytes.to_vec(), rotate || conf.spec.rotate)),
        // `-Rotate` alone moves the session, data and all, to a new id.
        None if rotate && !end => {
            resolve(req, conf, st);
            st.live.as_ref().map(|l| (l.data.clone(), true))
        }
        // Every request that uses a session renews it.
        None => {
            resolve(req, conf, st);
            None
        }
    };
    if let Some((bytes, rotate)) = written {
        if let Err(e) = store(req, conf, st, &bytes, rotate) {
            log_store_error(req, conf, bytes.len(), &e);
        }
    }
    if emit_cookie(req, conf, st).is_none() {
        return Status::NGX_ERROR.into();
    }
    // SAFETY: the next filter of nginx's chain, with the request nginx passed.
    unsafe { next(r) }
}

// ---------------------------------------------------------------------------
// shared_map_session_api

/// Sends a complete response: `status`, a plain-text `body` (possibly empty).
fn send(r: &mut Request, status: u32, body: &[u8]) -> ngx_int_t {
    // SAFETY: a live request whose response has not been started.
    unsafe { http::send(r.into(), status, "text/plain", body) }
}

/// The content handler of `shared_map_session_api`.
unsafe extern "C" fn api_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx passes a live request.
    let req = unsafe { Request::from_ngx_http_request(r) };
    let Some(conf) = session_conf(req) else {
        ngx_log_error!(
            NGX_LOG_ERR,
            req.log(),
            "\"shared_map_session_api\" needs \"shared_map_session\""
        );
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    let access = Module::location_conf(req)
        .and_then(|l| l.session_api)
        .unwrap_or(ApiAccess::ReadOnly);
    let method = req.as_ref().method as u32;
    // Where it writes, the API is for trusted callers: a browser's request for
    // another site, or for a host that is not ours, is refused unread.
    if access == ApiAccess::Write {
        if let Some(refusal) = browser::refusal(req) {
            // SAFETY: a live request.
            if unsafe { ngx_http_discard_request_body(r) } != ngx_int_t::from(Status::NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
            }
            return send(req, 403, format!("{refusal}\n").as_bytes());
        }
    }
    let allowed = match method {
        NGX_HTTP_GET | NGX_HTTP_HEAD => true,
        NGX_HTTP_PUT | NGX_HTTP_DELETE => access == ApiAccess::Write,
        _ => false,
    };
    if allowed && method == NGX_HTTP_PUT {
        // SAFETY: the body is read (possibly later) and then `api_put` runs.
        let rc = unsafe { ngx_http_read_client_request_body(r, Some(api_put)) };
        if rc >= NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t {
            return rc;
        }
        return Status::NGX_DONE.into();
    }
    // SAFETY: a live request.
    if unsafe { ngx_http_discard_request_body(r) } != ngx_int_t::from(Status::NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    if !allowed {
        if push_header(req, "Allow", access.allow().as_bytes()).is_none() {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        }
        return send(req, 405, b"method not allowed\n");
    }
    let Some(ctx) = request_ctx(req) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    let st = &mut ctx.session;
    if method == NGX_HTTP_DELETE {
        return if destroy(req, conf, st) {
            send(req, 204, b"")
        } else {
            send(req, 404, b"no session\n")
        };
    }
    resolve(req, conf, st);
    if push_header(req, "Cache-Control", b"no-store").is_none() {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    match &st.live {
        Some(live) => {
            let data = live.data.clone();
            send(req, 200, &data)
        }
        None => send(req, 404, b"no session\n"),
    }
}

/// Runs once a PUT's body is read: the body becomes the session's data.
unsafe extern "C" fn api_put(r: *mut ngx_http_request_t) {
    // SAFETY: nginx passes the live request whose body it read.
    let rc = api_put_rc(unsafe { Request::from_ngx_http_request(r) });
    // SAFETY: reading the body holds a reference that this releases.
    unsafe { ngx_http_finalize_request(r, rc) };
}

fn api_put_rc(r: &mut Request) -> ngx_int_t {
    let Some(conf) = session_conf(r) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    // Data as large as the map's zone can never be stored: it is refused
    // before it is copied.
    let limit = conf.map().map_or(0, |m| m.spec.space);
    // SAFETY: `api_put` runs once nginx has read the body.
    let data = match unsafe { http::read_body(r.into(), limit) } {
        Ok(data) => data,
        Err(http::BodyError::TooLarge(len)) => {
            log_store_error(r, conf, len as usize, &StoreError::TooLarge);
            return send(r, 413, b"session data is too large\n");
        }
        Err(e) => {
            ngx_log_error!(
                NGX_LOG_ERR,
                r.log(),
                "shared map: could not read the request body: {}",
                e
            );
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        }
    };
    // An empty session would look to the upstream exactly like none: DELETE ends one.
    if data.is_empty() {
        return send(r, 400, b"session data must not be empty\n");
    }
    // Session data goes upstream in a header (`proxy_set_header`); the
    // variables escape it anyway, and the API refuses what would need escaping.
    if !session_spec::is_header_safe(&data) {
        return send(r, 400, b"session data must not contain CR, LF or NUL\n");
    }
    let Some(ctx) = request_ctx(r) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    let st = &mut ctx.session;
    // A trusted caller's write keeps the id (`write` is never for clients).
    match store(r, conf, st, &data, false) {
        Ok(Stored::Created) => send(r, 201, b""),
        Ok(Stored::Replaced) => send(r, 204, b""),
        Err(e) => {
            log_store_error(r, conf, data.len(), &e);
            match e {
                StoreError::TooLarge => send(r, 413, b"session data is too large\n"),
                StoreError::Full => send(r, 507, b"the session map is full\n"),
                _ => NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t,
            }
        }
    }
}
