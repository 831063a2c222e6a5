//! What the module's two content handlers (`shared_map_api`, `shared_map_session_api`)
//! share: reading a request body wherever nginx kept it, and sending a whole response.

pub mod browser;
pub mod request_flags;

use core::ptr;

use ngx::core::Status;
use ngx::ffi::{
    ngx_buf_t, ngx_chain_t, ngx_http_output_filter, ngx_http_request_t, ngx_http_send_header, ngx_int_t, ngx_read_file,
    ngx_str_t,
};
use ngx::http::Request;

/// Why a request body was not read.
pub enum BodyError {
    /// The body is longer than the caller's limit (a map's space): it can never
    /// be stored, so it is not copied. Nothing was allocated for it.
    TooLarge(u64),
    /// Memory for the copy could not be had.
    NoMemory(u64),
    /// Reading nginx's temporary file failed.
    Read,
}

impl core::fmt::Display for BodyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BodyError::TooLarge(n) => write!(f, "a body of {n} bytes is too large"),
            BodyError::NoMemory(n) => write!(f, "no memory for a body of {n} bytes"),
            BodyError::Read => f.write_str("reading the temporary file failed"),
        }
    }
}

/// The request body, whether nginx kept it in memory or in a temporary file,
/// if it is at most `limit` bytes long. The length is summed from nginx's
/// buffers before anything is allocated, and the allocation itself may fail
/// without aborting the worker (`panic = "abort"`).
///
/// # Safety
/// `r` is a live request whose body has been read.
pub unsafe fn read_body(r: *mut ngx_http_request_t, limit: usize) -> Result<Vec<u8>, BodyError> {
    // SAFETY: nginx sets `request_body` before calling the post handler; its
    // chain links and buffers live in the request pool.
    unsafe {
        let rb = (*r).request_body;
        if rb.is_null() {
            return Ok(Vec::new());
        }
        let mut total: u64 = 0;
        let mut cl = (*rb).bufs;
        while !cl.is_null() {
            let b = (*cl).buf;
            let len = if (*b).in_file() != 0 {
                (*b).file_last.saturating_sub((*b).file_pos).max(0) as u64
            } else if !(*b).pos.is_null() {
                (*b).last.offset_from((*b).pos).max(0) as u64
            } else {
                0
            };
            total = total.saturating_add(len);
            cl = (*cl).next;
        }
        if total > limit as u64 {
            return Err(BodyError::TooLarge(total));
        }
        let mut body = Vec::new();
        body.try_reserve_exact(total as usize)
            .map_err(|_| BodyError::NoMemory(total))?;
        let mut cl = (*rb).bufs;
        while !cl.is_null() {
            let b = (*cl).buf;
            if (*b).in_file() != 0 {
                let mut pos = (*b).file_pos;
                let len = usize::try_from((*b).file_last - pos).map_err(|_| BodyError::Read)?;
                if len > body.capacity() - body.len() {
                    return Err(BodyError::Read); // the file grew: not nginx's way
                }
                let start = body.len();
                body.resize(start + len, 0);
                let mut done = 0;
                while done < len {
                    let n = ngx_read_file((*b).file, body.as_mut_ptr().add(start + done), len - done, pos);
                    if n <= 0 {
                        return Err(BodyError::Read);
                    }
                    done += n as usize;
                    pos += n as i64;
                }
            } else if !(*b).pos.is_null() {
                let len = (*b).last.offset_from((*b).pos) as usize;
                if len > body.capacity() - body.len() {
                    return Err(BodyError::Read);
                }
                body.extend_from_slice(core::slice::from_raw_parts((*b).pos, len));
            }
            cl = (*cl).next;
        }
        Ok(body)
    }
}

/// Sets the response's status, content type and length (`None`: unknown, sent
/// chunked) and sends its header, after any headers the caller already added.
/// `Err(rc)` when the caller must return `rc` at once: the header failed or
/// finished the request, or the response has no body (`HEAD`, 304).
///
/// # Safety
/// `r` is a live request whose response has not been started.
pub unsafe fn send_header(
    r: *mut ngx_http_request_t,
    status: u32,
    content_type: &'static str,
    length: Option<usize>,
) -> Result<(), ngx_int_t> {
    // SAFETY: `r` is a live request (the caller's contract), valid until it is finalised.
    let req = unsafe { Request::from_ngx_http_request(r) };
    {
        let hr = req.as_mut();
        hr.headers_out.status = status as _;
        hr.headers_out.content_length_n = length.map_or(-1, |n| n as _);
        hr.headers_out.content_type = ngx_str_t {
            len: content_type.len(),
            data: content_type.as_ptr() as *mut u8,
        };
        hr.headers_out.content_type_len = content_type.len();
        hr.headers_out.content_type_lowcase = ptr::null_mut();
    }
    // SAFETY: a live request with its headers set.
    let rc = unsafe { ngx_http_send_header(r) };
    if rc == ngx_int_t::from(Status::NGX_ERROR)
        || rc > ngx_int_t::from(Status::NGX_OK)
        || request_flags::header_only(req.as_ref())
    {
        return Err(rc);
    }
    Ok(())
}

/// Sends a whole response: `status`, `content_type` and `body` (possibly empty),
/// after any headers the caller already added. Returns what a content handler
/// returns (or passes to `ngx_http_finalize_request`).
///
/// # Safety
/// `r` is a live request whose response has not been started.
pub unsafe fn send(r: *mut ngx_http_request_t, status: u32, content_type: &'static str, body: &[u8]) -> ngx_int_t {
    // SAFETY: `r` is a live request whose response has not been started.
    if let Err(rc) = unsafe { send_header(r, status, content_type, Some(body.len())) } {
        return rc;
    }
    // SAFETY: `r` is a live request (the caller's contract), valid until it is finalised.
    let req = unsafe { Request::from_ngx_http_request(r) };
    let pool = req.pool();

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
