//! The API's guard against browsers used by other sites: gathers what a
//! request says about itself (its `Host`, `Origin`, `Sec-Fetch-Site` and
//! `User-Agent` headers, its scheme) and the names of the server nginx chose
//! for it, and lets `shared_map_http_parse::browser` decide. `shared_map_api`
//! and `shared_map_session_api write` ask before anything else.

use core::ffi::c_void;
use core::ptr::NonNull;

use ngx::ffi::{
    ngx_conf_t, ngx_http_core_srv_conf_t, ngx_http_server_name_t, NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_LOG_ERR,
};
use ngx::http::{HttpModuleMainConf, HttpModuleServerConf, NgxHttpCoreModule, Request};
use ngx::ngx_log_error;
use shared_map_http_parse::browser::{self, Refusal};

use crate::conf::{ServerName, ServerNames};
use crate::module::Module;

/// Why the API must refuse `r` with 403, or `None` to serve it. A refusal is
/// logged at `error`, as nginx logs a request its access rules forbid.
pub fn refusal(r: &Request) -> Option<Refusal> {
    let hr = r.as_ref();
    let method = hr.method as u32;
    let mut req = browser::Request {
        write: method != NGX_HTTP_GET && method != NGX_HTTP_HEAD,
        https: is_https(r),
        // SAFETY: nginx's pointer to the request's own Host line, or null.
        host_header: unsafe { hr.headers_in.host.as_ref() }.map(|h| h.value.as_bytes()),
        host: hr.headers_in.server.as_bytes(),
        origins: Vec::new(),
        fetch_sites: Vec::new(),
        // SAFETY: nginx's pointer to the request's own User-Agent line, or null.
        user_agent: unsafe { hr.headers_in.user_agent.as_ref() }.map(|h| h.value.as_bytes()),
    };
    for (name, value) in r.headers_in_iterator() {
        let name = name.as_bytes();
        if name.eq_ignore_ascii_case(b"Origin") {
            req.origins.push(value.as_bytes());
        } else if name.eq_ignore_ascii_case(b"Sec-Fetch-Site") {
            req.fetch_sites.push(value.as_bytes());
        }
    }
    let refusal = browser::check(&req, |host| is_server_name(r, host)).err()?;
    ngx_log_error!(NGX_LOG_ERR, r.log(), "shared map: {}", refusal);
    Some(refusal)
}

/// Whether the request came over TLS: its scheme is `https`, as `$scheme` says.
#[cfg(any(ngx_feature = "ssl", ngx_feature = "compat"))]
fn is_https(r: &Request) -> bool {
    // SAFETY: a live request's connection outlives it.
    unsafe { !(*r.connection()).ssl.is_null() }
}

#[cfg(not(any(ngx_feature = "ssl", ngx_feature = "compat")))]
fn is_https(_: &Request) -> bool {
    false
}

/// Copies every server's `server_name`s into our main conf (postconfiguration:
/// nginx's array of them still exists, and is gone once the configuration has
/// been read). Returns `false` when the http block's main confs are missing.
///
/// # Safety
/// Called from postconfiguration with the configuration being read.
pub unsafe fn collect_server_names(cf: *mut ngx_conf_t) -> bool {
    // SAFETY: the http block's main confs exist in postconfiguration.
    let cf = unsafe { &*cf };
    let (Some(cmcf), Some(mcf)) = (NgxHttpCoreModule::main_conf(cf), Module::main_conf_mut(cf)) else {
        return false;
    };
    if cmcf.servers.elts.is_null() {
        return true;
    }
    // SAFETY: the core module's array of its servers' configurations.
    let servers = unsafe {
        core::slice::from_raw_parts(
            cmcf.servers.elts as *const *mut ngx_http_core_srv_conf_t,
            cmcf.servers.nelts,
        )
    };
    mcf.server_names.clear();
    for &cscf in servers {
        // SAFETY: a server's core configuration, alive for the cycle.
        let names = unsafe { &(*cscf).server_names };
        let names: &[ngx_http_server_name_t] = if names.elts.is_null() {
            &[]
        } else {
            // SAFETY: the server's names, as `server_name` and the core
            // module's merge made them; still there in postconfiguration.
            unsafe { core::slice::from_raw_parts(names.elts as *const ngx_http_server_name_t, names.nelts) }
        };
        let names = names
            .iter()
            .map(|sn| match regex_of(sn) {
                Some(re) => ServerName::Regex(re),
                None => ServerName::Plain(sn.name.as_bytes().to_vec()),
            })
            .collect();
        mcf.server_names.push(ServerNames { server: cscf, names });
    }
    true
}

/// Whether `host` is a name of the server nginx chose for the request: one of
/// its `server_name`s, matched as nginx matches them (exactly, a leading
/// wildcard, or a regular expression run by nginx's regex engine). Trailing
/// wildcards count for nothing (see `browser::name_matches`).
fn is_server_name(r: &Request, host: &[u8]) -> bool {
    let (Some(cscf), Some(mcf)) = (NgxHttpCoreModule::server_conf(r), Module::main_conf(r)) else {
        return false;
    };
    let server = cscf as *const ngx_http_core_srv_conf_t;
    let Some(ours) = mcf.server_names.iter().find(|s| s.server == server) else {
        return false;
    };
    ours.names.iter().any(|name| match name {
        ServerName::Plain(name) => browser::name_matches(name, host),
        ServerName::Regex(re) => regex_matches(r, *re, host),
    })
}

/// A regular-expression server name's compiled expression.
#[cfg(ngx_feature = "pcre")]
fn regex_of(sn: &ngx_http_server_name_t) -> Option<NonNull<c_void>> {
    // SAFETY: nginx sets `regex` for a `~` name, to its compiled expression.
    NonNull::new(sn.regex).and_then(|re| NonNull::new(unsafe { re.as_ref() }.regex.cast()))
}

/// Without PCRE, nginx refuses regular-expression server names: none exist.
#[cfg(not(ngx_feature = "pcre"))]
fn regex_of(_: &ngx_http_server_name_t) -> Option<NonNull<c_void>> {
    None
}

/// Runs a server name's regular expression on `host`, as nginx does to pick a
/// server, but without captures: the request's `$1`… stay as they are.
#[cfg(ngx_feature = "pcre")]
fn regex_matches(r: &Request, re: NonNull<c_void>, host: &[u8]) -> bool {
    use ngx::ffi::{ngx_array_t, ngx_int_t, ngx_regex_elt_t, ngx_regex_exec_array, ngx_str_t, NGX_OK};
    let mut elt = ngx_regex_elt_t {
        regex: re.as_ptr().cast(),
        name: c"server_name".as_ptr() as *mut u8,
    };
    let mut one = ngx_array_t {
        elts: (&mut elt as *mut ngx_regex_elt_t).cast(),
        nelts: 1,
        size: core::mem::size_of::<ngx_regex_elt_t>(),
        nalloc: 1,
        pool: core::ptr::null_mut(),
    };
    let mut s = ngx_str_t {
        len: host.len(),
        data: host.as_ptr() as *mut u8,
    };
    // SAFETY: an array of one element that lives across the call, holding a
    // compiled expression of this cycle; the match only reads the string.
    // nginx logs a failure itself.
    unsafe { ngx_regex_exec_array(&mut one, &mut s, r.log()) == NGX_OK as ngx_int_t }
}

#[cfg(not(ngx_feature = "pcre"))]
fn regex_matches(_: &Request, _: NonNull<c_void>, _: &[u8]) -> bool {
    false
}
