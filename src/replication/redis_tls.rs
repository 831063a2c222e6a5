//! TLS on the replication connection to Redis, through nginx's own OpenSSL,
//! as nginx's upstream SSL does it: one `ngx_ssl_t` made at configuration
//! (`ngx_ssl_create`, `ngx_ssl_trusted_certificate`, a client session cache),
//! then on each connection `ngx_ssl_create_connection`, SNI, the session of
//! the last connection (`ngx_ssl_set_session`) and a non-blocking
//! `ngx_ssl_handshake` in the event loop. After the handshake the certificate
//! is checked (`SSL_get_verify_result`, `ngx_ssl_check_host`), and the
//! connection's `recv`/`send` are OpenSSL's: the rest of `connection.rs` is unchanged.
//!
//! An nginx built without `--with-http_ssl_module` loads the module too: `tls`
//! is then refused at configuration.

use shared_map_http_parse::redis::TlsParams;

pub use imp::*;

/// What a handshake started or resumed came to.
// Without nginx's ssl module, `configure` refuses `tls`: none is made.
#[cfg_attr(not(ngx_feature = "ssl"), allow(dead_code))]
pub enum Handshake {
    /// Done and verified: Redis can be spoken to.
    Done { reused: bool },
    /// Waiting for the network; the handler given to `start` is called when
    /// the handshake ends.
    Again,
}

/// The certificate chain's depth verified at most: a server's certificate,
/// intermediates, and the CA given.
#[cfg(ngx_feature = "ssl")]
const VERIFY_DEPTH: isize = 4;

#[cfg(ngx_feature = "ssl")]
mod imp {
    use core::cell::Cell;
    use core::ffi::c_void;
    use core::ptr;

    use ngx::ffi::{
        ngx_conf_full_name, ngx_conf_t, ngx_connection_handler_pt, ngx_connection_t, ngx_create_pool, ngx_destroy_pool,
        ngx_inet_addr, ngx_pnalloc, ngx_pool_cleanup_add, ngx_pool_t, ngx_ssl_check_host, ngx_ssl_cleanup_ctx,
        ngx_ssl_client_session_cache, ngx_ssl_create, ngx_ssl_create_connection, ngx_ssl_get_session,
        ngx_ssl_handshake, ngx_ssl_set_session, ngx_ssl_shutdown, ngx_ssl_t, ngx_ssl_trusted_certificate, ngx_str_t,
        NGX_SSL_TLSv1_2, NGX_SSL_TLSv1_3, SSL_SESSION_free, SSL_ctrl, SSL_get_verify_result, SSL_session_reused,
        TLSEXT_NAMETYPE_host_name, X509_verify_cert_error_string, NGX_AGAIN, NGX_OK, NGX_SSL_CLIENT,
        SSL_CTRL_SET_TLSEXT_HOSTNAME, SSL_SESSION, X509_V_OK,
    };

    use super::{Handshake, TlsParams, VERIFY_DEPTH};

    /// The pool of a TLS connection: its `ngx_ssl_connection_t` only.
    const POOL_SIZE: usize = 1024;

    /// The TLS context of the `shared_map_redis` directive, in the
    /// configuration pool: as long as the cycle.
    pub struct TlsConf {
        ssl: *mut ngx_ssl_t,
        verify: bool,
        /// The name checked in the certificate, NUL-terminated for SNI.
        name: ngx_str_t,
        /// SNI is sent: not for an address literal (RFC 6066).
        sni: bool,
    }

    thread_local! {
        /// The session of the last connection, offered on the next one: one
        /// replicating connection per worker, so one session.
        static SESSION: Cell<*mut SSL_SESSION> = const { Cell::new(ptr::null_mut()) };
    }

    /// A copy of `s` in `pool`, NUL-terminated.
    unsafe fn pool_str(pool: *mut ngx_pool_t, s: &[u8]) -> Option<ngx_str_t> {
        // SAFETY: the pool is the configuration's, alive during the call.
        let p = unsafe { ngx_pnalloc(pool, s.len() + 1) } as *mut u8;
        if p.is_null() {
            return None;
        }
        // SAFETY: `p` holds s.len() + 1 bytes just allocated.
        unsafe {
            ptr::copy_nonoverlapping(s.as_ptr(), p, s.len());
            *p.add(s.len()) = 0;
        }
        Some(ngx_str_t { len: s.len(), data: p })
    }

    /// Makes the TLS context for `params`; `host` is the address's host, the
    /// name checked when `tls_server_name=` is not given. `Err` in nginx's wording.
    ///
    /// # Safety
    /// `cf` is the configuration being parsed.
    pub unsafe fn configure(cf: *mut ngx_conf_t, params: &TlsParams, host: &[u8]) -> Result<TlsConf, String> {
        // SAFETY: cf is live; its pool lasts as long as the cycle.
        let pool = unsafe { (*cf).pool };
        // SAFETY: the configuration pool is live while cf is parsed; ngx_pcalloc
        // returns zeroed memory, ngx_ssl_t's initial state, or null.
        let ssl = unsafe { ngx::ffi::ngx_pcalloc(pool, core::mem::size_of::<ngx_ssl_t>()) } as *mut ngx_ssl_t;
        if ssl.is_null() {
            return Err("could not allocate the TLS context".into());
        }
        // SAFETY: `ssl` is zeroed memory of the right size; the log is the
        // configuration's, as nginx's modules set it.
        unsafe { (*ssl).log = (*cf).log };
        let protocols = (NGX_SSL_TLSv1_2 | NGX_SSL_TLSv1_3) as usize;
        // SAFETY: `ssl` as above; nginx logs its own reason on failure.
        if unsafe { ngx_ssl_create(ssl, protocols, ptr::null_mut()) } != NGX_OK as isize {
            return Err("could not create the TLS context".into());
        }
        // SAFETY: the pool's cleanup frees the SSL_CTX with the cycle, as for
        // proxy_ssl.
        unsafe {
            let cln = ngx_pool_cleanup_add(pool, 0);
            if cln.is_null() {
                ngx_ssl_cleanup_ctx(ssl as *mut c_void);
                return Err("could not allocate the TLS context".into());
            }
            (*cln).handler = Some(ngx_ssl_cleanup_ctx);
            (*cln).data = ssl as *mut c_void;
        }
        if let Some(file) = &params.trusted_certificate {
            // SAFETY: pool as above.
            let Some(mut path) = (unsafe { pool_str(pool, file.as_bytes()) }) else {
                return Err("could not allocate the TLS context".into());
            };
            // SAFETY: a relative path is the configuration prefix's, as for
            // nginx's own ssl files; `path` is in the pool.
            if unsafe { ngx_conf_full_name((*cf).cycle, &mut path, 1) } != NGX_OK as isize {
                return Err(format!("invalid tls_trusted_certificate \"{file}\""));
            }
            // SAFETY: cf and ssl as above; nginx logs why a file is refused.
            if unsafe { ngx_ssl_trusted_certificate(cf, ssl, &mut path, VERIFY_DEPTH) } != NGX_OK as isize {
                return Err(format!("cannot load tls_trusted_certificate \"{file}\""));
            }
        }
        // SAFETY: cf is being parsed and `ssl` is the context made above; this
        // enables the sessions given to `save_session`.
        if unsafe { ngx_ssl_client_session_cache(cf, ssl, 1) } != NGX_OK as isize {
            return Err("could not enable TLS sessions".into());
        }
        let name = params.server_name.as_deref().map_or(host, str::as_bytes);
        // An IPv6 literal keeps its brackets in nginx's host.
        let name = name
            .strip_prefix(b"[")
            .and_then(|n| n.strip_suffix(b"]"))
            .unwrap_or(name);
        // SAFETY: pool as above.
        let Some(name) = (unsafe { pool_str(pool, name) }) else {
            return Err("could not allocate the TLS context".into());
        };
        // SAFETY: `name` holds name.len bytes.
        let ipv4 = unsafe { ngx_inet_addr(name.data, name.len) } != libc::INADDR_NONE;
        let sni = name.len > 0 && !ipv4 && !name.as_bytes().contains(&b':');
        Ok(TlsConf {
            ssl,
            verify: params.verify,
            name,
            sni,
        })
    }

    /// Starts TLS on an established connection: SNI, the last session, then
    /// the handshake; `handler` is called when a handshake that had to wait ends.
    ///
    /// # Safety
    /// `c` is an open, established connection of this worker with no TLS yet.
    pub unsafe fn start(
        tls: &TlsConf,
        c: *mut ngx_connection_t,
        handler: ngx_connection_handler_pt,
    ) -> Result<Handshake, String> {
        // The TLS connection's state is allocated from the connection's pool,
        // which a peer connection has not: one of its own, destroyed in `shutdown`.
        // SAFETY: c is open and ours.
        unsafe {
            if (*c).pool.is_null() {
                (*c).pool = ngx_create_pool(POOL_SIZE, (*c).log);
                if (*c).pool.is_null() {
                    return Err("could not allocate the TLS connection".into());
                }
            }
        }
        // SAFETY: the context lives as long as the cycle; c is open.
        if unsafe { ngx_ssl_create_connection(tls.ssl, c, NGX_SSL_CLIENT as usize) } != NGX_OK as isize {
            return Err("could not start TLS".into());
        }
        // SAFETY: ngx_ssl_create_connection set c->ssl; `name` is
        // NUL-terminated in the configuration pool.
        unsafe {
            let ssl = (*(*c).ssl).connection;
            if tls.sni
                && SSL_ctrl(
                    ssl,
                    SSL_CTRL_SET_TLSEXT_HOSTNAME as i32,
                    TLSEXT_NAMETYPE_host_name as _,
                    tls.name.data as *mut c_void,
                ) != 1
            {
                return Err("could not set the TLS server name".into());
            }
            (*(*c).ssl).save_session = Some(save_session);
            let session = SESSION.with(Cell::get);
            if !session.is_null() && ngx_ssl_set_session(c, session) != NGX_OK as isize {
                return Err("could not set the TLS session".into());
            }
        }
        // SAFETY: c has its TLS connection; the handshake reads and writes
        // without blocking, and calls the handler when it waited.
        let rc = unsafe { ngx_ssl_handshake(c) };
        if rc == NGX_AGAIN as isize {
            // SAFETY: c->ssl is set.
            unsafe { (*(*c).ssl).handler = handler };
            return Ok(Handshake::Again);
        }
        // SAFETY: c is as the handshake left it.
        unsafe { finish(tls, c) }
    }

    /// Checks a handshake ended: done, the certificate verified and its name.
    ///
    /// # Safety
    /// `c` is a connection `start` was called on.
    pub unsafe fn finish(tls: &TlsConf, c: *mut ngx_connection_t) -> Result<Handshake, String> {
        // SAFETY: c->ssl was set by `start`; a failed handshake keeps it.
        let sc = unsafe { (*c).ssl };
        // SAFETY: `sc` is read only when not null, then it is c->ssl from `start`.
        if sc.is_null() || unsafe { (*sc).handshaked() } == 0 {
            return Err("TLS handshake failed".into());
        }
        if tls.verify {
            // SAFETY: a connection after its handshake.
            let rc = unsafe { SSL_get_verify_result((*sc).connection) };
            if rc != X509_V_OK as core::ffi::c_long {
                // SAFETY: OpenSSL returns a static string for any code.
                let why = unsafe { core::ffi::CStr::from_ptr(X509_verify_cert_error_string(rc)) };
                return Err(format!(
                    "TLS certificate verify error: ({rc}:{})",
                    why.to_string_lossy()
                ));
            }
            let mut name = tls.name;
            // SAFETY: `c` is the caller's connection after its handshake; `name`
            // is a copy of the pool's string, read during the call.
            if unsafe { ngx_ssl_check_host(c, &mut name) } != NGX_OK as isize {
                return Err(format!(
                    "TLS certificate does not match \"{}\"",
                    String::from_utf8_lossy(tls.name.as_bytes())
                ));
            }
        }
        // SAFETY: `sc` is c->ssl, not null and handshaked (checked above), so
        // its OpenSSL connection is live.
        let reused = unsafe { SSL_session_reused((*sc).connection) } == 1;
        Ok(Handshake::Done { reused })
    }

    /// OpenSSL's new session (TLS 1.3 sends it after the handshake): kept
    /// for the next connection, the previous one released.
    unsafe extern "C" fn save_session(c: *mut ngx_connection_t) {
        // SAFETY: OpenSSL's callback on the live TLS connection; the session
        // returned holds a reference of its own.
        let session = unsafe { ngx_ssl_get_session(c) };
        if session.is_null() {
            return;
        }
        let old = SESSION.with(|s| s.replace(session));
        if !old.is_null() {
            // SAFETY: the reference taken when `old` was saved.
            unsafe { SSL_SESSION_free(old) };
        }
    }

    /// Ends TLS before the connection is closed, without waiting for Redis's
    /// reply to the close, and frees the connection's pool.
    ///
    /// # Safety
    /// `c` is open, about to be closed by the caller.
    pub unsafe fn shutdown(c: *mut ngx_connection_t) {
        // SAFETY: c is open; c->ssl is null or its TLS connection.
        unsafe {
            if !(*c).ssl.is_null() {
                (*(*c).ssl).set_no_wait_shutdown(1);
                let _ = ngx_ssl_shutdown(c);
            }
            if !(*c).pool.is_null() {
                ngx_destroy_pool((*c).pool);
                (*c).pool = ptr::null_mut();
            }
        }
    }
}

#[cfg(not(ngx_feature = "ssl"))]
mod imp {
    use ngx::ffi::{ngx_conf_t, ngx_connection_handler_pt, ngx_connection_t};

    use super::{Handshake, TlsParams};

    /// Never made: `configure` refuses.
    pub struct TlsConf(());

    /// # Safety
    /// Nothing is dereferenced.
    pub unsafe fn configure(_cf: *mut ngx_conf_t, _params: &TlsParams, _host: &[u8]) -> Result<TlsConf, String> {
        Err("\"tls\" requires nginx built with the ssl module (--with-http_ssl_module)".into())
    }

    /// # Safety
    /// Nothing is dereferenced.
    pub unsafe fn start(
        _tls: &TlsConf,
        _c: *mut ngx_connection_t,
        _handler: ngx_connection_handler_pt,
    ) -> Result<Handshake, String> {
        Err("TLS is not available".into())
    }

    /// # Safety
    /// Nothing is dereferenced.
    pub unsafe fn finish(_tls: &TlsConf, _c: *mut ngx_connection_t) -> Result<Handshake, String> {
        Err("TLS is not available".into())
    }

    /// # Safety
    /// Nothing is dereferenced.
    pub unsafe fn shutdown(_c: *mut ngx_connection_t) {}
}
