//! What the Redis link and the sentinel link do alike on their sockets:
//! the pending error of a connection under way, nginx's send of a link's
//! pending output, and RESP commands.

use core::ffi::c_void;

use ngx::ffi::{ngx_connection_t, ngx_handle_write_event, NGX_AGAIN, NGX_OK};
use redis_protocol::resp2::types::{OwnedFrame, Resp2Frame};

/// The socket's pending error (`SO_ERROR`): 0 once a non-blocking connect
/// succeeded.
///
/// # Safety
/// `c` is an open connection.
pub(super) unsafe fn socket_error(c: *mut ngx_connection_t) -> std::io::Result<()> {
    let mut err: libc::c_int = 0;
    let mut len = core::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the caller's connection is open, so its fd is a socket; err and
    // len are ours and sized for SO_ERROR.
    let rc = unsafe {
        libc::getsockopt(
            (*c).fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            &mut err as *mut libc::c_int as *mut c_void,
            &mut len,
        )
    };
    if rc == -1 {
        return Err(std::io::Error::last_os_error());
    }
    match err {
        0 => Ok(()),
        err => Err(std::io::Error::from_raw_os_error(err)),
    }
}

/// How far [`send_pending`] got.
pub(super) enum Sent {
    /// All of the output went.
    All,
    /// The socket is full; the write event is armed for the rest.
    Again,
    /// The write event could not be armed.
    CannotWait,
    /// send() failed.
    Failed(std::io::Error),
}

/// Sends `out[*written..]` with the connection's send, advancing `*written`,
/// until it is all sent or the socket is full.
///
/// # Safety
/// `c` is an open connection.
pub(super) unsafe fn send_pending(c: *mut ngx_connection_t, out: &[u8], written: &mut usize) -> Sent {
    while *written < out.len() {
        let rest = &out[*written..];
        // SAFETY: the caller's connection is open; nginx's send reads `rest` only.
        let n = unsafe { ((*c).send.expect("send"))(c, rest.as_ptr() as *mut u8, rest.len()) };
        if n > 0 {
            *written += n as usize;
        } else if n == NGX_AGAIN as isize {
            // SAFETY: the open connection's write event.
            if unsafe { ngx_handle_write_event((*c).write, 0) } != NGX_OK as isize {
                return Sent::CannotWait;
            }
            return Sent::Again;
        } else {
            return Sent::Failed(std::io::Error::last_os_error());
        }
    }
    Sent::All
}

/// A command: an array of bulk strings.
pub(super) fn command(words: &[&[u8]]) -> OwnedFrame {
    OwnedFrame::Array(words.iter().map(|w| OwnedFrame::BulkString(w.to_vec())).collect())
}

/// Appends `frame` to `out` in RESP2; nothing if it cannot be encoded.
pub(super) fn encode(out: &mut Vec<u8>, frame: &OwnedFrame) {
    let start = out.len();
    out.resize(start + frame.encode_len(false), 0);
    if redis_protocol::resp2::encode::encode(&mut out[start..], frame, false).is_err() {
        out.truncate(start);
    }
}
