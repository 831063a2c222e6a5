//! API answers that take many holds of a map's lock: listings (JSON and
//! Prometheus), streamed out while they are produced, and clears.
//!
//! The work goes in batches of [`BATCH`] buckets, one hold of the lock each (the
//! engine's bucket cursor: an entry present for the whole walk is listed exactly
//! once). A turn of the event loop does at most [`STEP_BATCHES`] of them, hands
//! what they produced to the output filters, and yields: to the client's write
//! event while the socket is full, else to the next turn of the event loop
//! (`ngx_posted_next_events`), so other requests of this worker interleave
//! with a listing of any size. As nginx's own content handlers that outlive
//! their call, the request is held (`count`) until [`finish`] finalizes it.

use core::ffi::c_void;
use core::ptr::{self, NonNull};
use std::collections::VecDeque;

use ngx::ffi::{
    ngx_add_timer, ngx_buf_t, ngx_chain_t, ngx_del_timer, ngx_handle_write_event, ngx_http_finalize_request,
    ngx_http_output_filter, ngx_http_request_t, ngx_int_t, ngx_palloc, ngx_pfree, ngx_post_event,
    ngx_posted_next_events, NGX_DONE, NGX_ERROR, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_NO_CONTENT, NGX_HTTP_OK,
    NGX_HTTP_REQUEST_TIME_OUT, NGX_LOG_ALERT, NGX_OK,
};
use ngx::http::{HttpModuleLocationConf, NgxHttpCoreModule, Request};
use ngx::ngx_log_error;
use shared_map_engine::Value;

use crate::api::render::{self, Entry};
use crate::ctx::request_ctx;
use crate::http;
use crate::http::request_flags;
use crate::zone::{SharedMap, ZoneUnavailable};

/// Buckets walked under one hold of a map's lock: about 770 entries at the
/// highest load factor, copied in well under a millisecond.
pub const BATCH: u64 = 1024;
/// Batches per turn of the event loop.
const STEP_BATCHES: usize = 4;
/// Output buffers are at least this large, so that the request pool allocates
/// each on its own and frees it once sent (`ngx_pfree`).
const MIN_BUF: usize = 8192;

/// What a stream does.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// One map's statistics and entries, as JSON.
    Json,
    /// The statistics of `maps` and their numeric entries, Prometheus text.
    Prometheus,
    /// Removes every entry of the map, then answers 204.
    Clear,
}

/// A stream in progress; lives in the request's pool.
pub struct Stream {
    work: Work,
    maps: Vec<&'static SharedMap>,
    prefix: Vec<u8>,
    /// Entries listed per map at most.
    limit: u64,
    now: u32,
    /// The map being walked and the cursor in it.
    index: usize,
    cursor: u64,
    /// Entries listed from the current map.
    emitted: u64,
    /// Output buffers handed to the filters and not yet freed: the buffer and
    /// its memory.
    sent: VecDeque<(NonNull<ngx_buf_t>, NonNull<u8>)>,
    /// Rendered output not yet handed to the filters.
    pending: Vec<u8>,
    /// Adds `Vary: Accept` (the list of maps, which answers HTML to browsers).
    vary: bool,
    /// Lists expired entries still held too (`?stale`), marked as such.
    stale: bool,
}

impl Stream {
    pub fn new(work: Work, maps: Vec<&'static SharedMap>, prefix: Vec<u8>, limit: Option<u64>, now: u32) -> Self {
        Stream {
            work,
            maps,
            prefix,
            limit: limit.unwrap_or(u64::MAX),
            now,
            index: 0,
            cursor: 0,
            emitted: 0,
            sent: VecDeque::new(),
            pending: Vec::new(),
            vary: false,
            stale: false,
        }
    }

    /// Lists expired entries still held too.
    pub fn with_stale(mut self, stale: bool) -> Self {
        self.stale = stale;
        self
    }

    /// The response varies with the request's `Accept` header.
    pub fn vary_accept(mut self) -> Self {
        self.vary = true;
        self
    }

    fn content_type(&self) -> &'static str {
        match self.work {
            Work::Json => "application/json",
            _ => "text/plain; version=0.0.4",
        }
    }

    /// What precedes the entries: statistics, read in O(1) from each map.
    fn head(&mut self) -> Result<(), StreamError> {
        match self.work {
            Work::Json => {
                let map = self.maps[0];
                let (stats, sync) = map.with(|m| (m.stats(), m.sync_stats()))?;
                self.pending = render::json_head(&map.name, map.spec.kind.name(), &stats, sync.as_ref())?;
            }
            Work::Prometheus => {
                let mut heads = Vec::with_capacity(self.maps.len());
                for map in &self.maps {
                    let (stats, sync) = map.with(|m| (m.stats(), m.sync_stats()))?;
                    heads.push((map.name.as_str(), map.spec.kind.name(), stats, sync));
                }
                self.pending = render::prometheus_head(&heads).into_bytes();
            }
            Work::Clear => {}
        }
        Ok(())
    }

    fn done(&self) -> bool {
        self.index >= self.maps.len()
    }

    /// One batch: one hold of the current map's lock.
    fn batch(&mut self) -> Result<(), StreamError> {
        let Some(&map) = self.maps.get(self.index) else {
            return Ok(());
        };
        let next = if self.work == Work::Clear {
            map.with(|m| m.clear_batch(self.cursor, BATCH))?
        } else {
            let numeric = self.work == Work::Prometheus;
            let left = self.limit - self.emitted;
            let (prefix, now) = (&self.prefix, self.now);
            // A walk as of the epoch skips no entry held, expired or not.
            let held_at = if self.stale { 0 } else { now };
            let walked = map.with(|m| {
                let mut entries = Vec::new();
                let mut more = false;
                let next = m.walk(self.cursor, BATCH, prefix, held_at, |key, value, expire| {
                    if numeric && matches!(value, Value::Str(_)) {
                        return;
                    }
                    if entries.len() as u64 >= left {
                        more = true;
                        return;
                    }
                    entries.push(Entry {
                        key: key.to_vec(),
                        value: value.to_owned(),
                        expire,
                    });
                });
                (if more { None } else { next }, entries, more)
            });
            let (next, entries, more) = walked?;
            let mut text = String::new();
            for e in &entries {
                match self.work {
                    Work::Json => render::json_entry(&mut self.pending, self.emitted > 0, e, now)?,
                    _ => render::prometheus_value(&mut text, &map.name, e),
                }
                self.emitted += 1;
            }
            self.pending.extend_from_slice(text.as_bytes());
            if next.is_none() && self.work == Work::Json {
                render::json_tail(&mut self.pending, more);
            }
            next
        };
        match next {
            Some(cursor) => self.cursor = cursor,
            None => {
                self.index += 1;
                self.cursor = 0;
                self.emitted = 0;
            }
        }
        Ok(())
    }
}

/// Why a listing stopped: logged at `alert`, since neither can happen to a
/// map that nginx initialised.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("a shared map {0}")]
    Unavailable(#[from] ZoneUnavailable),
    #[error("could not serialise a listing: {0}")]
    Render(#[from] serde_json::Error),
}

/// Starts `stream` as the response to `r` from its content handler; returns
/// what the content handler returns.
///
/// # Safety
/// `r` is a live main request in its content phase, its body discarded, its
/// response not started.
pub unsafe fn start(r: *mut ngx_http_request_t, mut stream: Stream) -> ngx_int_t {
    // SAFETY: `r` is a live request (the caller's contract), valid until it is finalised.
    let req = unsafe { Request::from_ngx_http_request(r) };
    if stream.work != Work::Clear {
        if let Err(e) = stream.head() {
            ngx_log_error!(NGX_LOG_ALERT, req.log(), "{}", e);
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        }
        if stream.vary && req.add_header_out("Vary", "Accept").is_none() {
            return NGX_ERROR as ngx_int_t;
        }
        // SAFETY: `r` is a live request whose response has not been started.
        if let Err(rc) = unsafe { http::send_header(r, NGX_HTTP_OK, stream.content_type(), None) } {
            return rc;
        }
    }
    let Some(ctx) = request_ctx(req) else {
        return NGX_ERROR as ngx_int_t;
    };
    let s = req.pool().allocate(stream);
    let Some(s) = NonNull::new(s) else {
        return NGX_ERROR as ngx_int_t;
    };
    ctx.stream = Some(s.cast::<c_void>());
    // SAFETY: `r` is a live main request in its content phase; it is held
    // (its count raised) from here until `finish`.
    unsafe {
        request_flags::hold(r);
        (*r).write_event_handler = Some(write_handler);
    }
    // SAFETY: `r` is the live main request `start` holds (its count raised) until `finish`, and `s` its stream in the
    // request's pool.
    unsafe { step(r, &mut *s.as_ptr()) };
    NGX_DONE as ngx_int_t
}

/// The request's write event handler while a stream is under way.
unsafe extern "C" fn write_handler(r: *mut ngx_http_request_t) {
    // SAFETY: nginx calls it with the live request `start` set it on.
    let req = unsafe { Request::from_ngx_http_request(r) };
    let Some(s) = request_ctx(req).and_then(|ctx| ctx.stream) else {
        // SAFETY: a live request held by `start`.
        unsafe { ngx_http_finalize_request(r, NGX_ERROR as ngx_int_t) };
        return;
    };
    // SAFETY: the stream lives in the request's pool, set by `start`.
    unsafe { step(r, &mut *(s.as_ptr() as *mut Stream)) };
}

/// One turn: send what waits, produce a few batches, then yield.
///
/// # Safety
/// `r` is the live request `start` holds, `s` its stream.
unsafe fn step(r: *mut ngx_http_request_t, s: &mut Stream) {
    // SAFETY: a live request has a connection and a write event.
    let wev = unsafe { (*(*r).connection).write };
    // SAFETY: `r` is the live main request `start` holds until `finish`; its
    // connection and write event live as long as it.
    unsafe {
        if (*wev).timedout() != 0 {
            (*(*r).connection).set_timedout(1);
            finish(r, NGX_HTTP_REQUEST_TIME_OUT as ngx_int_t);
            return;
        }
        if (*wev).timer_set() != 0 {
            ngx_del_timer(wev);
        }
    }
    if !s.sent.is_empty() {
        // SAFETY: pushes out what the filters hold.
        let rc = unsafe { ngx_http_output_filter(r, ptr::null_mut()) };
        // SAFETY: `r` is the live main request `start` holds (its count raised) until `finish`, and `s` its stream in
        // the request's pool.
        if rc == NGX_ERROR as ngx_int_t || unsafe { release(r, s) } {
            if rc == NGX_ERROR as ngx_int_t {
                // SAFETY: `r` is the live main request `start` holds (its count raised) until `finish`, and `s` its
                // stream in the request's pool.
                unsafe { finish(r, rc) };
            } else {
                // SAFETY: `r` is the live main request `start` holds (its count raised) until `finish`, and `s` its
                // stream in the request's pool.
                unsafe { wait(r) };
            }
            return;
        }
    }
    for _ in 0..STEP_BATCHES {
        if s.done() {
            break;
        }
        if let Err(e) = s.batch() {
            // SAFETY: nginx's live request, which `start` holds.
            ngx_log_error!(NGX_LOG_ALERT, unsafe { (*(*r).connection).log }, "{}", e);
            // SAFETY: `r` is the live main request `start` holds (its count raised) until `finish`, and `s` its
            // stream in the request's pool.
            unsafe { finish(r, NGX_ERROR as ngx_int_t) };
            return;
        }
    }
    let done = s.done();
    if s.work == Work::Clear {
        if done {
            // SAFETY: nothing was sent yet for a clear.
            let rc = unsafe { http::send(r, NGX_HTTP_NO_CONTENT, "text/plain", &[]) };
            // SAFETY: `r` is the live main request `start` holds (its count raised) until `finish`, and `s` its
            // stream in the request's pool.
            unsafe { finish(r, rc) };
        } else {
            // SAFETY: `r` is the live main request `start` holds (its count raised) until `finish`, and `s` its
            // stream in the request's pool.
            unsafe { yield_turn(r) };
        }
        return;
    }
    // SAFETY: `r` is the live main request `start` holds (its count raised) until `finish`, and `s` its stream in the
    // request's pool.
    let rc = unsafe { send_pending(r, s, done) };
    if rc == NGX_ERROR as ngx_int_t {
        // SAFETY: `r` is the live main request `start` holds (its count raised) until `finish`, and `s` its stream in
        // the request's pool.
        unsafe { finish(r, rc) };
        return;
    }
    // SAFETY: `r` is the live main request `start` holds (its count raised) until `finish`, and `s` its stream in the
    // request's pool.
    let busy = unsafe { release(r, s) };
    if done {
        // With output still buffered, nginx's writer finishes sending it.
        // SAFETY: `r` is the live main request `start` holds (its count raised) until `finish`, and `s` its stream in
        // the request's pool.
        unsafe { finish(r, rc) };
    } else if busy {
        // SAFETY: `r` is the live main request `start` holds (its count raised) until `finish`, and `s` its stream in
        // the request's pool.
        unsafe { wait(r) };
    } else {
        // SAFETY: `r` is the live main request `start` holds (its count raised) until `finish`, and `s` its stream in
        // the request's pool.
        unsafe { yield_turn(r) };
    }
}

/// Hands the pending output to the filters, flushed, with `last_buf` at the end.
///
/// # Safety
/// As for `step`.
unsafe fn send_pending(r: *mut ngx_http_request_t, s: &mut Stream, last: bool) -> ngx_int_t {
    if s.pending.is_empty() && !last {
        return NGX_OK as ngx_int_t;
    }
    // SAFETY: a live request.
    let req = unsafe { Request::from_ngx_http_request(r) };
    let pool = req.pool();
    let b = pool.calloc_type::<ngx_buf_t>();
    if b.is_null() {
        return NGX_ERROR as ngx_int_t;
    }
    let len = s.pending.len();
    // SAFETY: `b` is a zeroed buffer from the request pool; its memory is a
    // separate (large, so freeable) allocation of the pool.
    unsafe {
        let mem = ngx_palloc((*r).pool, len.max(MIN_BUF)) as *mut u8;
        let Some(mem) = NonNull::new(mem) else {
            return NGX_ERROR as ngx_int_t;
        };
        ptr::copy_nonoverlapping(s.pending.as_ptr(), mem.as_ptr(), len);
        (*b).start = mem.as_ptr();
        (*b).pos = mem.as_ptr();
        (*b).last = mem.as_ptr().add(len);
        (*b).end = mem.as_ptr().add(len.max(MIN_BUF));
        if len > 0 {
            (*b).set_temporary(1);
        }
        (*b).set_flush(1);
        if last {
            (*b).set_last_buf(1);
            (*b).set_last_in_chain(1);
        }
        s.sent.push_back((NonNull::new_unchecked(b), mem));
    }
    s.pending.clear();
    let mut out = ngx_chain_t {
        buf: b,
        next: ptr::null_mut(),
    };
    // SAFETY: a live request whose header was sent.
    unsafe { ngx_http_output_filter(r, &mut out) }
}

/// Frees the output buffers the filters have consumed; returns whether any is
/// still waiting to be sent.
///
/// # Safety
/// As for `step`.
unsafe fn release(r: *mut ngx_http_request_t, s: &mut Stream) -> bool {
    // SAFETY: a live request.
    let pool = unsafe { (*r).pool };
    while let Some(&(b, mem)) = s.sent.front() {
        // SAFETY: our buffer, in the request pool.
        if unsafe { (*b.as_ptr()).pos != (*b.as_ptr()).last } {
            return true;
        }
        s.sent.pop_front();
        // SAFETY: a large allocation of this pool, no longer referenced by any
        // filter (consumed); the buffer struct itself stays in the pool.
        unsafe {
            (*b.as_ptr()).start = ptr::null_mut();
            (*b.as_ptr()).pos = ptr::null_mut();
            (*b.as_ptr()).last = ptr::null_mut();
            (*b.as_ptr()).end = ptr::null_mut();
            ngx_pfree(pool, mem.as_ptr() as *mut c_void);
        }
    }
    false
}

/// Waits for the client's socket to take more, within `send_timeout`.
///
/// # Safety
/// As for `step`.
unsafe fn wait(r: *mut ngx_http_request_t) {
    // SAFETY: a live request.
    let req = unsafe { Request::from_ngx_http_request(r) };
    let timeout = NgxHttpCoreModule::location_conf(req).map_or(60_000, |c| c.send_timeout);
    // SAFETY: the connection's write event.
    unsafe {
        let wev = (*(*r).connection).write;
        ngx_add_timer(wev, timeout);
        if ngx_handle_write_event(wev, 0) != NGX_OK as ngx_int_t {
            finish(r, NGX_ERROR as ngx_int_t);
        }
    }
}

/// Lets the event loop run other events, then continues in its next turn.
///
/// # Safety
/// As for `step`.
unsafe fn yield_turn(r: *mut ngx_http_request_t) {
    // SAFETY: the connection's write event, posted to the queue nginx runs
    // after its next wait for events (which then does not block).
    unsafe { ngx_post_event((*(*r).connection).write, ptr::addr_of_mut!(ngx_posted_next_events)) };
}

/// Ends the stream and releases the request `start` held.
///
/// # Safety
/// As for `step`; called once.
unsafe fn finish(r: *mut ngx_http_request_t, rc: ngx_int_t) {
    // SAFETY: a live request.
    let req = unsafe { Request::from_ngx_http_request(r) };
    if let Some(ctx) = request_ctx(req) {
        ctx.stream = None;
    }
    // SAFETY: the request is live and held by `start`; this releases it.
    unsafe {
        let wev = (*(*r).connection).write;
        if (*wev).posted() != 0 {
            ngx::ffi::ngx_delete_posted_event(wev);
        }
        if (*wev).timer_set() != 0 {
            ngx_del_timer(wev);
        }
        (*r).write_event_handler = Some(ngx::ffi::ngx_http_request_empty_handler);
        ngx_http_finalize_request(r, rc);
    }
}
