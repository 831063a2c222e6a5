//! Following a Redis master through Redis Sentinel: one connection to a
//! sentinel at a time, in the replicating worker's event loop, never waited
//! on. It asks `SENTINEL get-master-addr-by-name` and then stays subscribed
//! to `+switch-master`, so that a failover reaches the replicator at once;
//! `connection.rs` closes it to ask again after each disconnect from the master.
//! A sentinel that fails is left for the next one in the list.

use std::collections::VecDeque;
use std::net::SocketAddr;

use core::ffi::c_void;
use core::ptr::{self, NonNull};

use ngx::ffi::{
    ngx_addr_t, ngx_close_connection, ngx_connection_log_error_e_NGX_ERROR_ERR as NGX_ERROR_ERR, ngx_connection_t,
    ngx_event_connect_peer, ngx_event_get_peer, ngx_event_handler_pt, ngx_handle_read_event, ngx_log_t,
    ngx_peer_connection_t, ngx_str_t, NGX_AGAIN, NGX_OK,
};
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::types::{OwnedFrame, Resp2Frame};
use shared_map_http_parse::resp::{Limits, Scanner};
use shared_map_http_parse::sentinel;

use crate::replication::io::{command, encode, send_pending, socket_error, Sent};

/// The master's name and the sentinels, resolved at configuration.
pub struct SentinelConf {
    pub master: String,
    /// Each sentinel's address, in the configuration pool.
    pub addrs: Vec<NonNull<ngx_addr_t>>,
    pub password: Option<String>,
}

/// What a sentinel said.
pub enum Notice {
    /// The master's address, asked for.
    Master(SocketAddr),
    /// A failover: the new master.
    Switch(SocketAddr),
}

/// The replies awaited, in order.
enum Ask {
    Auth,
    Master,
    /// `SUBSCRIBE`'s confirmation, then the messages.
    Subscribe,
}

/// A sentinel's replies are small: an address, a message.
const LIMITS: Limits = Limits {
    depth: 2,
    bytes: 16 * 1024,
};

/// The connection to one sentinel.
pub struct Link {
    pub conf: &'static SentinelConf,
    pc: ngx_peer_connection_t,
    conn: *mut ngx_connection_t,
    established: bool,
    /// The sentinel asked next: rotates on each failure.
    next: usize,
    out: Vec<u8>,
    written: usize,
    input: Vec<u8>,
    scanner: Scanner,
    asks: VecDeque<Ask>,
    /// The master's address was answered on this connection.
    pub answered: bool,
}

impl Link {
    pub fn new(conf: &'static SentinelConf) -> Self {
        Link {
            conf,
            // SAFETY: zeroed is nginx's own initial state for a peer connection.
            pc: unsafe { core::mem::zeroed() },
            conn: ptr::null_mut(),
            established: false,
            next: 0,
            out: Vec::new(),
            written: 0,
            input: Vec::new(),
            scanner: Scanner::default(),
            asks: VecDeque::new(),
            answered: false,
        }
    }

    pub fn is_open(&self) -> bool {
        !self.conn.is_null()
    }

    /// The sentinel connected to (or last tried), for the log.
    pub fn name(&self) -> String {
        let i = self.next.checked_sub(1).unwrap_or(self.conf.addrs.len() - 1);
        // SAFETY: the address lives in the configuration pool.
        let name: &ngx_str_t = unsafe { &(*self.conf.addrs[i].as_ptr()).name };
        String::from_utf8_lossy(name.as_bytes()).into_owned()
    }

    /// Connects to the next sentinel and sends the questions; the
    /// connection's data is `data`, its handlers `on_read` and `on_write`.
    pub fn open(
        &mut self,
        data: *mut c_void,
        log: *mut ngx_log_t,
        on_read: ngx_event_handler_pt,
        on_write: ngx_event_handler_pt,
    ) -> Result<(), String> {
        let addr = self.conf.addrs[self.next % self.conf.addrs.len()].as_ptr();
        self.next = self.next % self.conf.addrs.len() + 1;
        // SAFETY: the address lives in the configuration pool, as long as the
        // cycle; the peer connection is the link's own.
        let rc = unsafe {
            self.pc = core::mem::zeroed();
            self.pc.sockaddr = (*addr).sockaddr;
            self.pc.socklen = (*addr).socklen;
            self.pc.name = &mut (*addr).name;
            self.pc.get = Some(ngx_event_get_peer);
            self.pc.log = log;
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
            return Err(format!("connect() to sentinel {} failed ({err})", self.name()));
        }
        self.conn = c;
        // SAFETY: a fresh connection with its events; ours until closed.
        unsafe {
            (*c).data = data;
            (*(*c).read).handler = on_read;
            (*(*c).write).handler = on_write;
            (*c).log = log;
            (*(*c).read).log = log;
            (*(*c).write).log = log;
        }
        self.established = rc == NGX_OK as isize;
        if let Some(password) = &self.conf.password {
            encode(&mut self.out, &command(&[b"AUTH", password.as_bytes()]));
            self.asks.push_back(Ask::Auth);
        }
        let master = self.conf.master.as_bytes();
        encode(
            &mut self.out,
            &command(&[b"SENTINEL", b"get-master-addr-by-name", master]),
        );
        self.asks.push_back(Ask::Master);
        encode(&mut self.out, &command(&[b"SUBSCRIBE", b"+switch-master"]));
        self.asks.push_back(Ask::Subscribe);
        if self.established {
            self.write()?;
        }
        Ok(())
    }

    fn connected(&mut self) -> Result<(), String> {
        if self.established {
            return Ok(());
        }
        // SAFETY: the link's connection is open while it is being connected.
        if let Err(err) = unsafe { socket_error(self.conn) } {
            return Err(format!("connect() to sentinel {} failed ({err})", self.name()));
        }
        self.established = true;
        Ok(())
    }

    /// The write event: the questions sent.
    pub fn on_write(&mut self) -> Result<(), String> {
        self.connected()?;
        self.write()
    }

    fn write(&mut self) -> Result<(), String> {
        // SAFETY: the link writes only while its connection is open.
        match unsafe { send_pending(self.conn, &self.out, &mut self.written) } {
            Sent::All => {}
            Sent::Again => return Ok(()),
            Sent::CannotWait => return Err("could not wait for the sentinel's socket".into()),
            Sent::Failed(_) => return Err(format!("send() to sentinel {} failed", self.name())),
        }
        self.out.clear();
        self.written = 0;
        Ok(())
    }

    /// The read event: what the sentinel said.
    pub fn on_read(&mut self) -> Result<Vec<Notice>, String> {
        self.connected()?;
        if self.written < self.out.len() {
            self.write()?;
        }
        let c = self.conn;
        let mut notices = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: an open connection; recv writes at most buf.len() bytes.
            let n = unsafe { ((*c).recv.expect("recv"))(c, buf.as_mut_ptr(), buf.len()) };
            if n > 0 {
                self.input.extend_from_slice(&buf[..n as usize]);
                self.replies(&mut notices)?;
                continue;
            }
            if n == 0 {
                return Err(format!("sentinel {} closed the connection", self.name()));
            }
            if n == NGX_AGAIN as isize {
                break;
            }
            return Err(format!("recv() from sentinel {} failed", self.name()));
        }
        // SAFETY: the connection's read event, still open.
        if unsafe { ngx_handle_read_event((*c).read, 0) } != NGX_OK as isize {
            return Err("could not wait for the sentinel's socket".into());
        }
        Ok(notices)
    }

    fn replies(&mut self, notices: &mut Vec<Notice>) -> Result<(), String> {
        let mut start = 0;
        while start < self.input.len() {
            let len = match self.scanner.scan(&self.input[start..], LIMITS) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(e) => return Err(format!("sentinel {}: {e}", self.name())),
            };
            let frame = match decode(&self.input[start..start + len]) {
                Ok(Some((frame, used))) if used == len => frame,
                _ => return Err(format!("sentinel {}: invalid reply", self.name())),
            };
            start += len;
            self.reply(frame, notices)?;
        }
        self.input.drain(..start);
        Ok(())
    }

    fn reply(&mut self, frame: OwnedFrame, notices: &mut Vec<Notice>) -> Result<(), String> {
        if let OwnedFrame::Error(e) = &frame {
            return Err(format!("sentinel {}: {e}", self.name()));
        }
        match self.asks.front() {
            Some(Ask::Auth) => {
                self.asks.pop_front();
            }
            Some(Ask::Master) => {
                self.asks.pop_front();
                let addr = match &frame {
                    OwnedFrame::Array(words) => match words.as_slice() {
                        [ip, port] => {
                            sentinel::master_addr(ip.as_bytes().unwrap_or(b""), port.as_bytes().unwrap_or(b""))
                        }
                        _ => None,
                    },
                    _ => None,
                };
                let Some(addr) = addr else {
                    return Err(format!(
                        "sentinel {} knows no master \"{}\"",
                        self.name(),
                        self.conf.master
                    ));
                };
                self.answered = true;
                notices.push(Notice::Master(addr));
            }
            // The confirmation, then messages: ["message", channel, text].
            Some(Ask::Subscribe) => {
                if let OwnedFrame::Array(words) = &frame {
                    if let [kind, _, text] = words.as_slice() {
                        if kind.as_bytes() == Some(b"message") {
                            let text = text.as_bytes().unwrap_or(b"");
                            if let Some(addr) = sentinel::switch_master(text, &self.conf.master) {
                                notices.push(Notice::Switch(addr));
                            }
                        }
                    }
                }
            }
            None => return Err(format!("sentinel {}: unexpected reply", self.name())),
        }
        Ok(())
    }

    pub fn close(&mut self) {
        if !self.conn.is_null() {
            // SAFETY: the open connection this link made.
            unsafe { ngx_close_connection(self.conn) };
            self.conn = ptr::null_mut();
        }
        self.established = false;
        self.answered = false;
        self.out = Vec::new();
        self.written = 0;
        self.input = Vec::new();
        self.scanner = Scanner::default();
        self.asks.clear();
    }
}

/// A master's address as nginx connects to it: a socket address and its
/// name, owned by the replicator.
pub struct Target {
    sockaddr: Box<libc::sockaddr_storage>,
    socklen: libc::socklen_t,
    /// The text of `name`, which points into it.
    text: String,
    name: Box<ngx_str_t>,
    pub addr: SocketAddr,
}

impl Target {
    pub fn new(addr: SocketAddr) -> Self {
        // SAFETY: an all-zero sockaddr_storage is valid; the family's fields
        // are filled below within its size.
        let mut storage: Box<libc::sockaddr_storage> = Box::new(unsafe { core::mem::zeroed() });
        let socklen = match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
                unsafe { ptr::write(&mut *storage as *mut _ as *mut libc::sockaddr_in, sin) };
                core::mem::size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
                unsafe { ptr::write(&mut *storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
                core::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        let text = addr.to_string();
        let name = Box::new(ngx_str_t {
            len: text.len(),
            data: text.as_ptr() as *mut u8,
        });
        Target {
            sockaddr: storage,
            socklen: socklen as libc::socklen_t,
            text,
            name,
            addr,
        }
    }

    /// The address for `ngx_peer_connection_t`: valid while the target lives.
    pub fn peer(&mut self) -> (*mut ngx::ffi::sockaddr, ngx::ffi::socklen_t, *mut ngx_str_t) {
        debug_assert_eq!(self.name.data as *const u8, self.text.as_ptr());
        (
            &mut *self.sockaddr as *mut libc::sockaddr_storage as *mut ngx::ffi::sockaddr,
            self.socklen as ngx::ffi::socklen_t,
            &mut *self.name,
        )
    }
}
