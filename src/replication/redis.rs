//! The `shared_map_redis` directive: Redis's address (or the master's name
//! and its sentinels), its credentials and TLS, checked and resolved when the
//! configuration is read. The connection made from them is `connection.rs`'s.

use core::ffi::{c_char, c_void};
use core::ptr::NonNull;

use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{ngx_addr_t, ngx_command_t, ngx_conf_t, ngx_parse_url, ngx_str_t, ngx_url_t, NGX_LOG_EMERG, NGX_OK};
use ngx::ngx_conf_log_error;
use shared_map_http_parse::redis;

use crate::conf::{args, lossy, parse_words, MainConf, RedisConf};
use crate::replication::redis_tls;
use crate::replication::sentinel::SentinelConf;

/// Redis's own port, when the address names none.
const DEFAULT_PORT: u16 = 6379;
/// Sentinel's, when a sentinel's address names none.
const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// `shared_map_redis address [db=number] [user=name] [password=text]
/// [prefix=text] [tls] [tls_verify=on|off] [tls_trusted_certificate=file]
/// [tls_server_name=name];` and
/// `shared_map_redis master_name sentinel=address[,address...]
/// [sentinel_password=text] [...];`
pub unsafe extern "C" fn cmd_set_redis(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes our main conf (NGX_HTTP_MAIN_CONF_OFFSET).
    let mcf = unsafe { &mut *(conf as *mut MainConf) };
    if mcf.redis.is_some() {
        return c"is duplicate".as_ptr() as *mut c_char;
    }
    // SAFETY: nginx passes the configuration being parsed.
    let Some(params) = (unsafe { parse_words(cf, 2, |words| redis::parse(words.iter().copied())) }) else {
        return NGX_CONF_ERROR;
    };
    // SAFETY: `cf` is the configuration nginx is parsing; its `args` hold this directive's words.
    let args = unsafe { args(cf) };

    // With sentinel=, the first word names the master; the sentinels are
    // addresses, each resolved as Redis's own.
    let (addr, host, sentinel) = match &params.sentinel {
        None => {
            // SAFETY: cf is the configuration being parsed.
            let Some((addr, host)) = (unsafe { parse_address(cf, args[1], DEFAULT_PORT) }) else {
                return NGX_CONF_ERROR;
            };
            (Some(addr), host, None)
        }
        Some(sp) => {
            let mut addrs = Vec::new();
            for a in &sp.addrs {
                let url = ngx_str_t {
                    len: a.len(),
                    data: a.as_ptr() as *mut u8,
                };
                // SAFETY: cf is the configuration being parsed; `url` points into
                // `sp.addrs`, alive for the call, and is read during it only.
                let Some((addr, _)) = (unsafe { parse_address(cf, url, DEFAULT_SENTINEL_PORT) }) else {
                    return NGX_CONF_ERROR;
                };
                addrs.push(addr);
            }
            let conf = SentinelConf {
                master: lossy(&args[1]),
                addrs,
                password: sp.password.clone(),
            };
            (None, &[][..], Some(conf))
        }
    };
    let tls = match &params.tls {
        // SAFETY: cf is the configuration being parsed; `host` points into it.
        Some(t) => match unsafe { redis_tls::configure(cf, t, host) } {
            Ok(tls) => Some(tls),
            Err(e) => {
                ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}", e);
                return NGX_CONF_ERROR;
            }
        },
        None => None,
    };
    mcf.redis = Some(RedisConf {
        addr,
        params,
        tls,
        sentinel,
    });
    NGX_CONF_OK
}

/// Resolves `url` (`host[:port]` or `unix:path`) in the configuration pool;
/// `None` when refused, with nginx's reason logged.
///
/// # Safety
/// `cf` is the configuration being parsed.
unsafe fn parse_address<'a>(
    cf: *mut ngx_conf_t,
    url: ngx_str_t,
    default_port: u16,
) -> Option<(NonNull<ngx_addr_t>, &'a [u8])> {
    // SAFETY: zeroed is ngx_url_t's documented initial state.
    let mut u: ngx_url_t = unsafe { core::mem::zeroed() };
    u.url = url;
    u.default_port = default_port;
    // SAFETY: `u` is filled as ngx_parse_url expects; the results live in the
    // configuration pool, as long as the cycle.
    if unsafe { ngx_parse_url((*cf).pool, &mut u) } != NGX_OK as isize {
        if !u.err.is_null() {
            // SAFETY: nginx sets `err` to a static C string.
            let err = unsafe { core::ffi::CStr::from_ptr(u.err) }.to_string_lossy();
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{} in \"{}\"", err, lossy(&u.url));
        }
        return None;
    }
    let Some(addr) = NonNull::new(u.addrs) else {
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "no address in \"{}\"", lossy(&u.url));
        return None;
    };
    let host = match u.host.data.is_null() {
        // A unix socket has no host.
        true => &[][..],
        // SAFETY: u.host points into the configuration's words or pool.
        false => unsafe { core::slice::from_raw_parts(u.host.data, u.host.len) },
    };
    Some((addr, host))
}
