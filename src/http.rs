//! What the module's two content handlers (`shared_map_api`, `shared_map_session_api`)
//! share: reading a request body wherever nginx kept it, and sending a whole response.

use core::ptr;

use ngx::core::Status;
use ngx::ffi::{
    ngx_buf_t, ngx_chain_t, ngx_http_output_filter, ngx_http_request_t, ngx_http_send_header, ngx_int_t, ngx_read_file,
    ngx_str_t,
};
use ngx::http::Request;

/// The request body, whether nginx kept it in memory or in a temporary file.
///
/// # Safety
/// `r` is a live request whose body has been read.
pub unsafe fn read_body(r: *mut ngx_http_request_t) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    // SAFETY: nginx sets `request_body` before calling the post handler; its
    // chain links and buffers live in the request pool.
    unsafe {
        let rb = (*r).request_body;
        if rb.is_null() {
            return Some(body);
        }
        let mut cl = (*rb).bufs;
        while !cl.is_null() {
            let b = (*cl).buf;
            if (*b).in_file() != 0 {
                let mut pos = (*b).file_pos;
                let start = body.len();
                let len = usize::try_from((*b).file_last - pos).ok()?;
                body.resize(start + len, 0);
                let mut done = 0;
                while done < len {
                    let n = ngx_read_file((*b).file, body.as_mut_ptr().add(start + done), len - done, pos);
                    if n <= 0 {
                        return None;
                    }
                    done += n as usize;
                    pos += n as i64;
                }
            } else if !(*b).pos.is_null() {
                let len = (*b).last.offset_from((*b).pos) as usize;
                body.extend_from_slice(core::slice::from_raw_parts((*b).pos, len));
            }
            cl = (*cl).next;
        }
    }
    Some(body)
}

/// Sends a whole response: `status`, `content_type` and `body` (possibly empty),
/// after any headers the caller already added. Returns what a content handler
/// returns (or passes to `ngx_http_finalize_request`).
///
/// # Safety
/// `r` is a live request whose response has not been started.
pub unsafe fn send(r: *mut ngx_http_request_t, status: u32, content_type: &'static str, body: &[u8]) -> ngx_int_t {
    // SAFETY: per the contract.
    let req = unsafe { Request::from_ngx_http_request(r) };
    let pool = req.pool();
    {
        let hr = req.as_mut();
        hr.headers_out.status = status as _;
        hr.headers_out.content_length_n = body.len() as _;
        hr.headers_out.content_type = ngx_str_t {
            len: content_type.len(),
            data: content_type.as_ptr() as *mut u8,
        };
        hr.headers_out.content_type_len = content_type.len();
        hr.headers_out.content_type_lowcase = ptr::null_mut();
    }

    // SAFETY: a live request with its headers set.
    let rc = unsafe { ngx_http_send_header(r) };
    if rc == ngx_int_t::from(Status::NGX_ERROR) || rc > ngx_int_t::from(Status::NGX_OK) || req.header_only() {
        return rc;
    }

    let b = pool.calloc_type::<ngx_buf_t>();
    if b.is_null() {
        return Status::NGX_ERROR.into();
    }
    // SAFETY: `b` is a zeroed buffer from the request pool; the body is copied
    // into the pool, which outlives the response.
    unsafe {
        if !body.is_empty() {
            let data = pool.alloc_unaligned(body.len()) as *mut u8;
            if data.is_null() {
                return Status::NGX_ERROR.into();
            }
            ptr::copy_nonoverlapping(body.as_ptr(), data, body.len());
            (*b).pos = data;
            (*b).last = data.add(body.len());
            (*b).set_memory(1);
        }
        (*b).set_last_buf(if req.is_main() { 1 } else { 0 });
        (*b).set_last_in_chain(1);
        let mut out = ngx_chain_t {
            buf: b,
            next: ptr::null_mut(),
        };
        ngx_http_output_filter(r, &mut out)
    }
}
