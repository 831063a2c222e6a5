//! The per-request context: what a main request remembers between the module's
//! handlers, so that `$shared_map_incr` and the named counters count once and the session is looked up
//! once, across internal redirects too.

use core::ffi::c_void;
use core::mem::size_of;
use core::ptr::NonNull;

use ngx::ffi::{ngx_pool_cleanup_add, ngx_table_elt_t};
use ngx::http::{HttpModule, Request};
use shared_map_http_parse::session::ID_LEN;

use crate::http::request_flags;
use crate::module::Module;

/// Per main request: the results of `$shared_map_incr` and of the
/// `shared_map_incr` variables (by their number), so that each counts at most
/// once (`None` not yet, `Some(None)` refused), and the session the request uses.
#[derive(Default)]
pub struct RequestCtx {
    pub incr: Option<Option<i64>>,
    pub named: Vec<Option<Option<i64>>>,
    pub session: SessionState,
    /// The API's answer under way when it spans several turns of the event
    /// loop: a `stream::Stream` in the request's pool.
    pub stream: Option<NonNull<c_void>>,
}

/// The main request's context, made on first use; `None` if out of memory.
///
/// nginx zeroes every module's context on an internal redirect (`error_page`,
/// `try_files`, a named location) and when a filter replaces the response
/// (`ngx_http_filter_finalize_request`). The context lives in a cleanup of the
/// main request's pool, which both leave alone, and is found there again after
/// either, as nginx's realip module finds its own: so `$shared_map_incr` counts
/// once and a request knows the session and cookie it made, whatever redirects.
pub fn request_ctx<'a>(r: &Request) -> Option<&'a mut RequestCtx> {
    // SAFETY: a request's main request outlives it.
    let main = unsafe { Request::from_ngx_http_request(r.as_ref().main) };
    // SAFETY: `r->ctx` has a slot for every module's `ctx_index`; ours is
    // null or a RequestCtx set below.
    let slot = unsafe { *main.as_ref().ctx.add(Module::module().ctx_index) } as *mut RequestCtx;
    if let Some(ctx) = NonNull::new(slot) {
        // SAFETY: the ctx lives in the main request's pool; requests are single-threaded.
        return Some(unsafe { &mut *ctx.as_ptr() });
    }
    let ctx = match find_request_ctx(main) {
        Some(ctx) => ctx,
        None => new_request_ctx(main)?,
    };
    main.set_module_ctx(ctx.as_ptr() as *mut c_void, Module::module());
    // SAFETY: the context is in the request's pool, made by this module for the main request, and alive until the
    // request is freed; nginx runs a request on one thread.
    Some(unsafe { &mut *ctx.as_ptr() })
}

/// The context a redirect or a replaced response hid from `r->ctx`, if any.
fn find_request_ctx(main: &Request) -> Option<NonNull<RequestCtx>> {
    let raw = main.as_ref();
    if !request_flags::redirected(raw) {
        return None;
    }
    // SAFETY: the pool's cleanup list is a chain of live entries; ours (found by
    // its handler) holds a RequestCtx written by `new_request_ctx`.
    unsafe {
        let mut cln = (*raw.pool).cleanup;
        while let Some(c) = cln.as_ref() {
            // One non-generic function, referenced only here and where it is
            // set: its address is the mark, as `ngx_http_realip_cleanup` is realip's.
            if c.handler.is_some_and(|h| core::ptr::fn_addr_eq(h, DROP_REQUEST_CTX)) {
                return NonNull::new(c.data as *mut RequestCtx);
            }
            cln = c.next;
        }
    }
    None
}

fn new_request_ctx(main: &Request) -> Option<NonNull<RequestCtx>> {
    // SAFETY: the main request's pool; the cleanup runs when the pool is destroyed.
    let cln = unsafe { ngx_pool_cleanup_add(main.as_ref().pool, size_of::<RequestCtx>()) };
    // SAFETY: a fresh cleanup whose `data` has room for a RequestCtx.
    unsafe {
        let cln = cln.as_mut()?;
        let ctx = NonNull::new(cln.data as *mut RequestCtx)?;
        ctx.as_ptr().write(RequestCtx::default());
        cln.handler = Some(DROP_REQUEST_CTX);
        Some(ctx)
    }
}

const DROP_REQUEST_CTX: unsafe extern "C" fn(*mut c_void) = drop_request_ctx;

/// Drops the request's context with its pool.
#[inline(never)]
unsafe extern "C" fn drop_request_ctx(data: *mut c_void) {
    // SAFETY: `data` is the RequestCtx `new_request_ctx` wrote, dropped once.
    unsafe { core::ptr::drop_in_place(data as *mut RequestCtx) };
}

/// The live session of a request.
pub struct Live {
    pub id: [u8; ID_LEN],
    pub data: Vec<u8>,
    /// Made by this request: its id is new, so a write need not rotate it.
    pub created: bool,
}

/// The session cookie a request gives the client.
#[derive(Clone, Copy)]
pub enum CookieOut {
    Set([u8; ID_LEN]),
    Expire,
}

/// Per main request (inside [`RequestCtx`], which survives internal
/// redirects): the session, looked up at most once, and the cookie to send.
#[derive(Default)]
pub struct SessionState {
    pub resolved: bool,
    /// The request carried a cookie of the session's name, live or not.
    pub had_cookie: bool,
    pub live: Option<Live>,
    pub cookie: Option<CookieOut>,
    /// The `Set-Cookie` line the header filter added, and the address of its
    /// value: the line is ours only while both still match (a filter that
    /// replaces the response empties the header list, and nginx reuses its slots).
    pub cookie_line: Option<(NonNull<ngx_table_elt_t>, *const u8)>,
}
