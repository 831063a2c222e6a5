//! Replication through Redis: the `shared_map_redis` directive.

use core::ffi::{c_char, c_void};
use core::ptr::NonNull;

use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{ngx_command_t, ngx_conf_t, ngx_parse_url, ngx_url_t, NGX_LOG_EMERG, NGX_OK};
use ngx::ngx_conf_log_error;
use shared_map_http_parse::redis;

use crate::conf::{args, lossy, MainConf, RedisConf};

/// Redis's own port, when the address names none.
const DEFAULT_PORT: u16 = 6379;

/// `shared_map_redis address [db=number] [password=text] [prefix=text];`
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
    let args = unsafe { args(cf) };
    let words: Vec<String> = args[2..].iter().map(lossy).collect();
    let params = match redis::parse(words.iter().map(String::as_str)) {
        Ok(p) => p,
        Err(e) => {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}", e);
            return NGX_CONF_ERROR;
        }
    };

    // SAFETY: zeroed is ngx_url_t's documented initial state.
    let mut u: ngx_url_t = unsafe { core::mem::zeroed() };
    u.url = args[1];
    u.default_port = DEFAULT_PORT;
    // SAFETY: `u` is filled as ngx_parse_url expects; the results live in the
    // configuration pool, as long as the cycle.
    if unsafe { ngx_parse_url((*cf).pool, &mut u) } != NGX_OK as isize {
        if !u.err.is_null() {
            // SAFETY: nginx sets `err` to a static C string.
            let err = unsafe { core::ffi::CStr::from_ptr(u.err) }.to_string_lossy();
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{} in \"{}\"", err, lossy(&u.url));
        }
        return NGX_CONF_ERROR;
    }
    let Some(addr) = NonNull::new(u.addrs) else {
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "no address in \"{}\"", lossy(&u.url));
        return NGX_CONF_ERROR;
    };
    mcf.redis = Some(RedisConf { addr, params });
    NGX_CONF_OK
}
