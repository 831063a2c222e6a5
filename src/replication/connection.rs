//! The replicating worker's connection to Redis: worker 0 holds one, in
//! nginx's event loop (`ngx_event_connect_peer`, non-blocking reads and
//! writes), made again after a failure, and, with `sentinel=`, to the master
//! the sentinels name. What is said on it is `round_trip.rs`'s.
//!
//! A failure closes the connection, which is made again after a pause that
//! doubles up to [`RETRY_MAX`]; the same failure is logged once per
//! [`LOG_PERIOD`] at most, with a count of its repeats.

use std::collections::VecDeque;

use core::ffi::c_void;
use core::ptr;

use ngx::core::Status;
use ngx::ffi::{
    ngx_add_timer, ngx_close_connection, ngx_connection_log_error_e_NGX_ERROR_ERR as NGX_ERROR_ERR, ngx_connection_t,
    ngx_current_msec, ngx_cycle_t, ngx_event_connect_peer, ngx_event_get_peer, ngx_event_t, ngx_exiting,
    ngx_handle_read_event, ngx_int_t, ngx_log_t, ngx_msec_t, ngx_peer_connection_t, ngx_process, ngx_str_t, ngx_worker,
    NGX_AGAIN, NGX_LOG_CRIT, NGX_LOG_ERR, NGX_LOG_INFO, NGX_LOG_NOTICE, NGX_OK, NGX_PROCESS_SINGLE, NGX_PROCESS_WORKER,
};
use ngx::http::HttpModuleMainConf;
use ngx::ngx_log_error;
use redis_protocol::resp2::types::OwnedFrame;
use shared_map_http_parse::resp::Scanner;
use shared_map_http_parse::throttle::Throttle;

use crate::conf::RedisConf;
use crate::module::Module;
use crate::replication::io::{send_pending, socket_error, Sent};
use crate::replication::redis_tls::{self, Handshake};
use crate::replication::round_trip::Expect;
use crate::replication::sentinel::{Link, Notice, Target};
use crate::replication::sync::{self, MapSync};

/// How often the replicating worker runs a round trip, in milliseconds.
const TICK: ngx_msec_t = 20;
/// A round trip (or a connection) that takes longer is abandoned: the
/// connection is closed and made again; the batch in flight is resent.
pub(super) const TIMEOUT: ngx_msec_t = 2000;
/// The wait before connecting again after a first failure; it doubles with
/// each failure that follows, up to `RETRY_MAX`, until a round trip succeeds.
pub(super) const RETRY: ngx_msec_t = 500;
const RETRY_MAX: ngx_msec_t = 8000;
/// One line per failure kind and period at most, with the repeats counted.
const LOG_PERIOD: u64 = 60_000;
/// The buffers' capacity kept between replies (input) and batches (output);
/// more is returned.
pub(super) const BUFFER_KEPT: usize = 64 * 1024;
/// The pause before asking the next sentinel after one failed.
const SENTINEL_RETRY: ngx_msec_t = 300;

/// The replicating worker's connection to Redis and what it remembers.
pub(super) struct Replicator {
    pub(super) timer: ngx_event_t,
    pub(super) pc: ngx_peer_connection_t,
    /// The connection, or null.
    pub(super) conn: *mut ngx_connection_t,
    /// The TCP (or unix) connection is established.
    pub(super) established: bool,
    /// Its TLS handshake is done and verified (with `tls`), or it has none.
    pub(super) secured: bool,
    /// Replies are awaited.
    pub(super) busy: bool,
    pub(super) deadline: ngx_msec_t,
    pub(super) retry_at: ngx_msec_t,
    /// The pause before the next connection after a failure.
    pub(super) backoff: ngx_msec_t,
    pub(super) out: Vec<u8>,
    pub(super) written: usize,
    /// Received bytes: the reply being read (and maybe the next ones').
    pub(super) input: Vec<u8>,
    /// How far the reply at the start of `input` was scanned.
    pub(super) scanner: Scanner,
    pub(super) expect: VecDeque<Expect>,
    pub(super) maps: Vec<MapSync>,
    pub(super) conf: &'static RedisConf,
    pub(super) log: *mut ngx_log_t,
    /// The connection's log: the worker's, but quiet below `crit`, so that
    /// nginx's own line for each refused connection or reset does not
    /// repeat at every retry; `fail` logs the failure, throttled.
    pub(super) conn_log: *mut ngx_log_t,
    /// A failure was logged since replication last worked for every map.
    pub(super) failing: bool,
    /// The round trip of every map under way: whether all succeeded so far.
    pub(super) round_ok: Option<bool>,
    pub(super) throttle: Throttle,
    /// Its own for the line saying replication works again: never flushed.
    pub(super) notices: Throttle,
    /// The script's SHA-1 as `SCRIPT LOAD` returned it on this connection.
    pub(super) sha: Vec<u8>,
    /// With `sentinel=`: the link to a sentinel, and the master it named
    /// (none: being asked).
    pub(super) sentinel: Option<Link>,
    pub(super) target: Option<Target>,
    /// The master last named: a new one is a failover, logged once.
    pub(super) last_master: Option<std::net::SocketAddr>,
    pub(super) sentinel_retry_at: ngx_msec_t,
    pub(super) sentinel_deadline: ngx_msec_t,
    /// The maps' replies of the round trip, held until `WAIT` and `ROLE` answer.
    pub(super) held: Vec<(usize, OwnedFrame)>,
    /// `WAIT` said a replica has the round trip's batches.
    pub(super) copied: bool,
    /// The master's replicas at the last `ROLE` (1 until known).
    pub(super) replicas: usize,
}

/// Milliseconds since the epoch, for the log's throttle.
pub(super) fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(super) fn current_msec() -> ngx_msec_t {
    // SAFETY: a plain global of the worker, updated by its event loop.
    unsafe { ngx_current_msec }
}

/// Starts replication in the one worker that talks to Redis: worker 0 (nginx
/// starts a new worker 0 if it dies, which loads from Redis and resends the
/// batch left in flight).
///
/// # Safety
/// Called by nginx's `init_process` with the worker's cycle.
pub unsafe fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // SAFETY: nginx sets these globals before calling init_process.
    let (process, worker) = unsafe { (ngx_process as u32, ngx_worker) };
    if (process != NGX_PROCESS_WORKER && process != NGX_PROCESS_SINGLE) || worker != 0 {
        return Status::NGX_OK.into();
    }
    // SAFETY: the cycle is live for the whole worker.
    let cycle = unsafe { &*cycle };
    let Some(mcf) = Module::main_conf(cycle) else {
        return Status::NGX_OK.into();
    };
    let Some(conf) = mcf.redis.as_ref() else {
        return Status::NGX_OK.into();
    };
    // Maps with `sync` defined in `stream {}` replicate through the same Redis.
    let maps: Vec<MapSync> = crate::conf::maps(cycle)
        .into_iter()
        .filter(|m| m.spec.sync)
        .map(|map| MapSync {
            map,
            last_id: String::new(),
            host: 0,
            flight: 0,
            more: false,
        })
        .collect();
    if maps.is_empty() {
        return Status::NGX_OK.into();
    }
    // SAFETY: the configuration lives as long as the cycle.
    let conf: &'static RedisConf = unsafe { &*(conf as *const RedisConf) };
    // SAFETY: the cycle's log is valid for the whole worker; a copy of it is
    // a valid log writing to the same files.
    let mut quiet: ngx_log_t = unsafe { *cycle.log };
    quiet.log_level = NGX_LOG_CRIT as usize;
    let conn_log = Box::leak(Box::new(quiet)) as *mut ngx_log_t;
    let r = Box::leak(Box::new(Replicator {
        // SAFETY: zeroed is nginx's own initial state for both.
        timer: unsafe { core::mem::zeroed() },
        // SAFETY: `ngx_peer_connection_t` is plain C data whose all-zero state is the one nginx's own modules start
        // from.
        pc: unsafe { core::mem::zeroed() },
        conn: ptr::null_mut(),
        established: false,
        secured: false,
        busy: false,
        deadline: 0,
        retry_at: 0,
        backoff: RETRY,
        out: Vec::new(),
        written: 0,
        input: Vec::new(),
        scanner: Scanner::default(),
        expect: VecDeque::new(),
        maps,
        conf,
        log: cycle.log,
        conn_log,
        failing: false,
        round_ok: None,
        throttle: Throttle::new(LOG_PERIOD),
        notices: Throttle::new(LOG_PERIOD),
        sha: Vec::new(),
        sentinel: conf.sentinel.as_ref().map(Link::new),
        target: None,
        last_master: None,
        sentinel_retry_at: 0,
        sentinel_deadline: 0,
        held: Vec::new(),
        copied: false,
        replicas: 1,
    }));
    REPLICATOR.with(|cell| cell.set(r as *mut Replicator));
    r.timer.handler = Some(on_tick);
    r.timer.data = r as *mut Replicator as *mut c_void;
    r.timer.log = cycle.log;
    r.timer.set_cancelable(1);
    // SAFETY: the replicator is leaked: it lives as long as the worker.
    unsafe { ngx_add_timer(&mut r.timer, 1) };
    Status::NGX_OK.into()
}

thread_local! {
    static REPLICATOR: core::cell::Cell<*mut Replicator> = const { core::cell::Cell::new(ptr::null_mut()) };
}

/// `exit_process`: the connection is closed before nginx looks for sockets left open.
pub fn exit_process() {
    let r = REPLICATOR.with(|cell| cell.get());
    // SAFETY: null or the worker's leaked replicator; nginx runs one thread.
    if let Some(r) = unsafe { r.as_mut() } {
        r.shutdown();
    }
}

unsafe extern "C" fn on_tick(ev: *mut ngx_event_t) {
    // SAFETY: `data` is the leaked Replicator this event belongs to.
    let r = unsafe { &mut *((*ev).data as *mut Replicator) };
    // SAFETY: a plain global of the worker.
    if unsafe { ngx_exiting } != 0 {
        r.shutdown();
        return;
    }
    r.tick();
    // SAFETY: the event lives as long as the worker; re-arming a fired timer.
    unsafe { ngx_add_timer(ev, TICK) };
}

unsafe extern "C" fn on_write(ev: *mut ngx_event_t) {
    // SAFETY: a connection event's data is its connection, whose data is the replicator.
    let r = unsafe { &mut *((*((*ev).data as *mut ngx_connection_t)).data as *mut Replicator) };
    if r.connected() {
        r.write();
    }
}

unsafe extern "C" fn on_read(ev: *mut ngx_event_t) {
    // SAFETY: nginx calls the handler with the connection's event; the connection's data is the Replicator `connect`
    // set, boxed and alive while it is connected.
    let r = unsafe { &mut *((*((*ev).data as *mut ngx_connection_t)).data as *mut Replicator) };
    // A refused connection wakes the read handler first.
    if r.connected() {
        if r.written < r.out.len() {
            r.write();
        }
        if !r.conn.is_null() {
            r.read();
        }
    }
}

unsafe extern "C" fn on_sentinel_write(ev: *mut ngx_event_t) {
    // SAFETY: nginx passes the sentinel connection's write event, whose data is
    // that connection; its data is the replicator, which outlives it.
    let r = unsafe { &mut *((*((*ev).data as *mut ngx_connection_t)).data as *mut Replicator) };
    let Some(link) = r.sentinel.as_mut() else { return };
    if let Err(e) = link.on_write() {
        r.sentinel_fail(&e);
    }
}

unsafe extern "C" fn on_sentinel_read(ev: *mut ngx_event_t) {
    // SAFETY: nginx passes the sentinel connection's read event, whose data is
    // that connection; its data is the replicator, which outlives it.
    let r = unsafe { &mut *((*((*ev).data as *mut ngx_connection_t)).data as *mut Replicator) };
    let Some(link) = r.sentinel.as_mut() else { return };
    match link.on_read() {
        Ok(notices) => r.sentinel_notices(notices),
        Err(e) => r.sentinel_fail(&e),
    }
}

/// The end of a TLS handshake that waited for the network (`c->ssl->handler`).
unsafe extern "C" fn on_handshake(c: *mut ngx_connection_t) {
    // SAFETY: the connection's data is the replicator, as in on_write.
    let r = unsafe { &mut *((*c).data as *mut Replicator) };
    // SAFETY: the handshake had put its own handlers on the connection's events.
    unsafe {
        (*(*c).read).handler = Some(on_read);
        (*(*c).write).handler = Some(on_write);
    }
    let Some(tls) = r.conf.tls.as_ref() else { return };
    // SAFETY: the connection TLS was started on.
    match unsafe { redis_tls::finish(tls, c) } {
        Ok(Handshake::Done { reused }) => {
            r.secured(reused);
            r.write();
        }
        Ok(Handshake::Again) => {}
        Err(e) => r.fail(&e),
    }
}

/// What a throttled line adds: the times it was left out.
pub(super) fn repeated(n: u64) -> String {
    match n {
        0 => String::new(),
        n => format!(" (repeated {n} times since it was last logged)"),
    }
}

/// An OS error in nginx's words: `111: Connection refused`.
fn os_error(e: &std::io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        Some(n) => {
            let suffix = format!(" (os error {n})");
            format!("{n}: {}", text.strip_suffix(&suffix).unwrap_or(&text))
        }
        None => text,
    }
}

impl Replicator {
    /// Whether the connection under way is established; a failed one is closed.
    pub(super) fn connected(&mut self) -> bool {
        if !self.established {
            // SAFETY: a connection under way is open.
            match unsafe { socket_error(self.conn) } {
                Ok(()) => self.established = true,
                Err(err) => {
                    self.fail(&format!("connect() failed ({})", os_error(&err)));
                    return false;
                }
            }
        }
        self.secured || self.secure()
    }

    /// Starts TLS on the established connection (with `tls`); true when
    /// Redis can be spoken to now.
    fn secure(&mut self) -> bool {
        let Some(tls) = self.conf.tls.as_ref() else {
            self.secured = true;
            return true;
        };
        // SAFETY: the established connection, without TLS yet (`secured` is
        // reset with each connection).
        match unsafe { redis_tls::start(tls, self.conn, Some(on_handshake)) } {
            Ok(Handshake::Done { reused }) => {
                self.secured(reused);
                true
            }
            Ok(Handshake::Again) => false,
            Err(e) => {
                self.fail(&e);
                false
            }
        }
    }

    fn secured(&mut self, reused: bool) {
        self.secured = true;
        if reused {
            if let Some(repeats) = self.notices.check("tls session reused", wall_ms()) {
                ngx_log_error!(
                    NGX_LOG_INFO,
                    self.log,
                    "shared map: Redis: TLS session reused{}",
                    repeated(repeats)
                );
            }
        }
    }

    pub(super) fn connect(&mut self) {
        let (sockaddr, socklen, name) = match (&mut self.target, self.conf.addr) {
            (Some(t), _) => t.peer(),
            // SAFETY: the address lives in the configuration pool, as long as the cycle.
            (None, Some(a)) => unsafe {
                let a = a.as_ptr();
                ((*a).sockaddr, (*a).socklen, &mut (*a).name as *mut ngx_str_t)
            },
            (None, None) => return,
        };
        // SAFETY: the address is the configuration's or the target's, which
        // outlives the connection (a new target closes it first); the peer
        // connection is the replicator's own.
        let rc = unsafe {
            self.pc = core::mem::zeroed();
            self.pc.sockaddr = sockaddr;
            self.pc.socklen = socklen;
            self.pc.name = name;
            self.pc.get = Some(ngx_event_get_peer);
            self.pc.log = self.conn_log;
            self.pc.set_log_error(NGX_ERROR_ERR);
            ngx_event_connect_peer(&mut self.pc)
        };
        let err = std::io::Error::last_os_error();
        let c = self.pc.connection;
        if c.is_null() || (rc != NGX_OK as isize && rc != NGX_AGAIN as isize) {
            if !c.is_null() {
                // SAFETY: the connection ngx_event_connect_peer made and failed.
                unsafe { ngx_close_connection(c) };
            }
            return self.fail(&format!("connect() failed ({})", os_error(&err)));
        }
        self.conn = c;
        // SAFETY: a fresh connection with its events; ours until closed.
        unsafe {
            (*c).data = self as *mut Replicator as *mut c_void;
            (*(*c).read).handler = Some(on_read);
            (*(*c).write).handler = Some(on_write);
            (*c).log = self.conn_log;
            (*(*c).read).log = self.conn_log;
            (*(*c).write).log = self.conn_log;
        }
        self.established = rc == NGX_OK as isize;
        self.busy = true;
        self.deadline = current_msec() + TIMEOUT;
        self.handshake();
        if self.established && self.connected() {
            self.write();
        }
    }

    pub(super) fn write(&mut self) {
        // SAFETY: the replicator writes only while its connection is open.
        match unsafe { send_pending(self.conn, &self.out, &mut self.written) } {
            Sent::All => {}
            Sent::Again => return,
            Sent::CannotWait => return self.fail("could not wait for the socket"),
            Sent::Failed(err) => return self.fail(&format!("send() failed ({})", os_error(&err))),
        }
        self.out.clear();
        self.written = 0;
        // A large batch (long strings) does not keep its memory.
        if self.out.capacity() > BUFFER_KEPT {
            self.out = Vec::new();
        }
    }

    fn read(&mut self) {
        let c = self.conn;
        let mut buf = [0u8; 16384];
        loop {
            // SAFETY: an open connection; recv writes at most buf.len() bytes.
            let n = unsafe { ((*c).recv.expect("recv"))(c, buf.as_mut_ptr(), buf.len()) };
            if n > 0 {
                // Each piece is scanned as it arrives: a reply beyond its
                // bounds is refused before more of it is buffered.
                self.input.extend_from_slice(&buf[..n as usize]);
                if !self.replies() {
                    return;
                }
                continue;
            }
            if n == 0 {
                return self.fail("Redis closed the connection");
            }
            if n == NGX_AGAIN as isize {
                break;
            }
            let err = std::io::Error::last_os_error();
            return self.fail(&format!("recv() failed ({})", os_error(&err)));
        }
        // SAFETY: the connection's read event, still open.
        if unsafe { ngx_handle_read_event((*c).read, 0) } != NGX_OK as isize {
            self.fail("could not wait for the socket");
        }
    }

    /// With `sentinel=`: the link opened when closed, abandoned when its
    /// answer is late.
    pub(super) fn sentinel_tick(&mut self, now: ngx_msec_t) {
        let data = self as *mut Replicator as *mut c_void;
        let conn_log = self.conn_log;
        let Some(link) = self.sentinel.as_mut() else { return };
        if link.is_open() {
            if !link.answered && now > self.sentinel_deadline {
                let msg = format!("sentinel {} timed out", link.name());
                self.sentinel_fail(&msg);
            }
            return;
        }
        if now < self.sentinel_retry_at {
            return;
        }
        self.sentinel_deadline = now + TIMEOUT;
        if let Err(e) = link.open(data, conn_log, Some(on_sentinel_read), Some(on_sentinel_write)) {
            self.sentinel_fail(&e);
        }
    }

    fn sentinel_fail(&mut self, msg: &str) {
        self.log_failure(msg);
        sync::report_error(&self.maps, !self.conn.is_null(), msg);
        if let Some(link) = self.sentinel.as_mut() {
            link.close();
        }
        self.sentinel_retry_at = current_msec() + SENTINEL_RETRY;
    }

    fn sentinel_notices(&mut self, notices: Vec<Notice>) {
        for notice in notices {
            // Asked (after a disconnect) or announced (+switch-master).
            let (Notice::Master(addr) | Notice::Switch(addr)) = notice;
            if self.target.as_ref().map(|t| t.addr) == Some(addr) {
                continue;
            }
            if self.last_master != Some(addr) {
                let master = self.sentinel.as_ref().map_or("", |l| l.conf.master.as_str());
                let what = if self.last_master.is_some() {
                    "failed over to"
                } else {
                    "is at"
                };
                ngx_log_error!(
                    NGX_LOG_NOTICE,
                    self.log,
                    "shared map: Redis: master \"{}\" {} {}",
                    master,
                    what,
                    addr
                );
                self.last_master = Some(addr);
            }
            if !self.conn.is_null() {
                // The connection is to the old master: replication resumes
                // on the new one now, and resends the batches in flight.
                self.close();
            }
            self.target = Some(Target::new(addr));
            self.retry_at = current_msec();
            self.backoff = RETRY;
        }
    }

    /// Closes every connection: the worker exits.
    fn shutdown(&mut self) {
        self.close();
        if let Some(link) = self.sentinel.as_mut() {
            link.close();
        }
    }

    /// Logs a failure, at most once per period for the same message.
    pub(super) fn log_failure(&mut self, msg: &str) {
        self.failing = true;
        if let Some(repeats) = self.throttle.check(msg, wall_ms()) {
            ngx_log_error!(NGX_LOG_ERR, self.log, "shared map: Redis: {}{}", msg, repeated(repeats));
        }
    }

    /// Closes the connection after an error; the next tick after a pause
    /// connects again, and the batch in flight is resent.
    pub(super) fn fail(&mut self, msg: &str) {
        self.log_failure(msg);
        sync::report_error(&self.maps, false, msg);
        self.close();
        self.retry_at = current_msec() + self.backoff;
        self.backoff = (self.backoff * 2).min(RETRY_MAX);
        // With sentinels, the master is asked again after every disconnect.
        if let Some(link) = self.sentinel.as_mut() {
            link.close();
            self.target = None;
            self.sentinel_retry_at = current_msec();
        }
    }

    fn close(&mut self) {
        if !self.conn.is_null() {
            // SAFETY: the open connection this replicator made; TLS, if any,
            // ends before it closes.
            unsafe {
                redis_tls::shutdown(self.conn);
                ngx_close_connection(self.conn);
            }
            self.conn = ptr::null_mut();
        }
        self.established = false;
        self.secured = false;
        self.busy = false;
        self.round_ok = None;
        // What the connection took is returned, not only emptied.
        self.out = Vec::new();
        self.written = 0;
        self.input = Vec::new();
        self.scanner = Scanner::default();
        self.expect.clear();
        self.held.clear();
        self.replicas = 1;
        for m in &mut self.maps {
            m.flight = 0;
        }
    }
}
