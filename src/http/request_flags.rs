//! The bit fields of `ngx_http_request_t` the module uses, through accessors the
//! C compiler builds from the target nginx's headers (`request_flags.c`).
//!
//! bindgen's accessors for this struct are wrong on nginx 1.30 and later: the
//! run of bit fields follows the 16-bit `port` there, and bindgen lays it out as
//! if it began aligned, two bits off from `uri_changes` on. The compiler that
//! builds nginx is the only authority on that layout, so the module never uses
//! bindgen's (or the `ngx` crate's) accessors for these fields; `clippy.toml`
//! refuses them.

use ngx::ffi::{ngx_http_request_t, ngx_uint_t};

extern "C" {
    fn ngx_http_shared_map_header_only(r: *const ngx_http_request_t) -> ngx_uint_t;
    fn ngx_http_shared_map_redirected(r: *const ngx_http_request_t) -> ngx_uint_t;
    fn ngx_http_shared_map_disable_not_modified(r: *mut ngx_http_request_t);
    fn ngx_http_shared_map_hold(r: *mut ngx_http_request_t);
}

/// `r->header_only`: the response has no body (`HEAD`, 204, 304), as the header
/// filter decided.
pub fn header_only(r: &ngx_http_request_t) -> bool {
    // SAFETY: `r` is a live request borrowed for the call; the function only
    // reads one of its fields.
    unsafe { ngx_http_shared_map_header_only(r) != 0 }
}

/// `r->internal || r->filter_finalize`: the request was redirected or its
/// response replaced, either of which may have cleared its module contexts.
pub fn redirected(r: &ngx_http_request_t) -> bool {
    // SAFETY: `r` is a live request borrowed for the call; the function only
    // reads two of its fields.
    unsafe { ngx_http_shared_map_redirected(r) != 0 }
}

/// `r->disable_not_modified = 1`: nginx's not-modified filter leaves the
/// response alone.
///
/// # Safety
/// `r` is a live request whose header has not been sent.
pub unsafe fn disable_not_modified(r: *mut ngx_http_request_t) {
    // SAFETY: `r` is a live request borrowed mutably for the call; nginx runs a request on one thread, so nothing
    // else writes the bit meanwhile.
    unsafe { ngx_http_shared_map_disable_not_modified(r) }
}

/// `r->main->count++`: the main request stays open until a matching
/// `ngx_http_finalize_request`.
///
/// # Safety
/// `r` is a live request.
pub unsafe fn hold(r: *mut ngx_http_request_t) {
    // SAFETY: `r` is a live request borrowed mutably for the call; nginx runs a request on one thread, so nothing
    // else writes its count meanwhile.
    unsafe { ngx_http_shared_map_hold(r) }
}
