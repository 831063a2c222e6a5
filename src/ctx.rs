//! The per-request context: what a main request remembers between the module's
//! handlers, so that `$shared_map_incr` counts once and the session is looked up
//! once.

use core::ffi::c_void;
use core::ptr::NonNull;

use ngx::ffi::ngx_table_elt_t;
use ngx::http::{HttpModule, Request};
use shared_map_http_parse::session::ID_LEN;

use crate::module::Module;

/// Per main request: the result of `$shared_map_incr`, so it counts at most once,
/// and the session the request uses.
#[derive(Default)]
pub struct RequestCtx {
    pub incr: Option<Option<i64>>,
    pub session: SessionState,
}

/// The main request's context, made on first use; `None` if out of memory.
pub fn request_ctx<'a>(r: &Request) -> Option<&'a mut RequestCtx> {
    // SAFETY: a request's main request outlives it.
    let main = unsafe { Request::from_ngx_http_request(r.as_ref().main) };
    let ctx = match main.get_module_ctx::<RequestCtx>(Module::module()) {
        Some(ctx) => ctx as *const RequestCtx as *mut RequestCtx,
        None => {
            let ctx = main.pool().allocate(RequestCtx::default());
            if ctx.is_null() {
                return None;
            }
            main.set_module_ctx(ctx as *mut c_void, Module::module());
            ctx
        }
    };
    // SAFETY: the ctx lives in the main request's pool; requests are single-threaded.
    Some(unsafe { &mut *ctx })
}

/// The live session of a request.
pub struct Live {
    pub id: [u8; ID_LEN],
    pub data: Vec<u8>,
}

/// Per main request (inside [`RequestCtx`]): the session, looked up at
/// most once, and the `Set-Cookie` line this request added, if any.
#[derive(Default)]
pub struct SessionState {
    pub resolved: bool,
    /// The request carried a cookie of the session's name, live or not.
    pub had_cookie: bool,
    pub live: Option<Live>,
    pub cookie: Option<NonNull<ngx_table_elt_t>>,
}
