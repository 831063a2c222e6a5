//! The module's variables: the table nginx learns them from, and the getters of
//! `$shared_map_incr` and `$shared_map_value` (the session's are in `session.rs`).

use ngx::core::Status;
use ngx::ffi::{
    ngx_conf_t, ngx_http_add_variable, ngx_http_request_t, ngx_http_variable_t, ngx_int_t, ngx_str_t, ngx_uint_t,
    ngx_variable_value_t, NGX_HTTP_VAR_NOCACHEABLE,
};
use ngx::http::{HttpModuleLocationConf, Request};
use ngx::ngx_string;
use shared_map_engine::Value;

use crate::counting::count;
use crate::ctx::request_ctx;
use crate::module::Module;
use crate::session;
use crate::value::{cached_by_nginx, header_safe, not_found, set_value};
use crate::zone::now;

type Getter = unsafe extern "C" fn(*mut ngx_http_request_t, *mut ngx_variable_value_t, usize) -> ngx_int_t;

/// Every variable of the module, with its getter and nginx flags.
const VARIABLES: [(ngx_str_t, Getter, u32); 4] = [
    (ngx_string!("shared_map_incr"), var_incr, 0),
    (ngx_string!("shared_map_value"), var_value, NGX_HTTP_VAR_NOCACHEABLE),
    (
        ngx_string!("shared_map_session_id"),
        session::var_session_id,
        NGX_HTTP_VAR_NOCACHEABLE,
    ),
    (
        ngx_string!("shared_map_session"),
        session::var_session,
        NGX_HTTP_VAR_NOCACHEABLE,
    ),
];

/// Registers the module's variables (preconfiguration).
///
/// # Safety
/// `cf` is the configuration being parsed.
pub unsafe fn add_variables(cf: *mut ngx_conf_t) -> ngx_int_t {
    for (mut name, get, flags) in VARIABLES {
        // SAFETY: `cf` is being parsed; nginx copies the name into its variables hash.
        let v: *mut ngx_http_variable_t = unsafe { ngx_http_add_variable(cf, &mut name, flags as ngx_uint_t) };
        if v.is_null() {
            return Status::NGX_ERROR.into();
        }
        // SAFETY: a variable slot nginx just returned, ours to fill.
        unsafe {
            (*v).get_handler = Some(get);
            (*v).data = 0;
        }
    }
    Status::NGX_OK.into()
}

unsafe extern "C" fn var_incr(r: *mut ngx_http_request_t, v: *mut ngx_variable_value_t, _: usize) -> ngx_int_t {
    // SAFETY: nginx passes a live request.
    let r = unsafe { Request::from_ngx_http_request(r) };
    let Some(mk) = Module::location_conf(r).and_then(|l| l.key) else {
        return not_found(v);
    };
    let result = if cached_by_nginx(r, v) {
        // nginx keeps this value for the rest of the request and never asks again.
        count::count(r, &mk)
    } else {
        let Some(ctx) = request_ctx(r) else {
            return Status::NGX_ERROR.into();
        };
        *ctx.incr.get_or_insert_with(|| count::count(r, &mk))
    };
    match result {
        // itoa formats on the stack: no heap allocation on the counting path.
        Some(n) => set_value(r, v, itoa::Buffer::new().format(n).as_bytes()),
        None => set_value(r, v, b""),
    }
}

unsafe extern "C" fn var_value(r: *mut ngx_http_request_t, v: *mut ngx_variable_value_t, _: usize) -> ngx_int_t {
    // SAFETY: nginx passes a live request.
    let r = unsafe { Request::from_ngx_http_request(r) };
    let Some(mk) = Module::location_conf(r).and_then(|l| l.key) else {
        return not_found(v);
    };
    let Some(key) = mk.key(r) else {
        return Status::NGX_ERROR.into();
    };
    let Some(map) = mk.map() else {
        return not_found(v);
    };
    // An exact map is read without the mutex.
    let value = map.read_lockless(key, now(), true, |v| match v {
        Value::Int(i) => i.to_string().into_bytes(),
        Value::Long(l) => l.to_string().into_bytes(),
        Value::Str(s) => s.to_vec(),
    });
    if let Some(value) = value {
        return set_value(r, v, &header_safe(&value.unwrap_or_default()));
    }
    let value = map.with(|m| match m.get_match(key, now()) {
        Some((_, Value::Int(i))) => i.to_string().into_bytes(),
        Some((_, Value::Long(l))) => l.to_string().into_bytes(),
        Some((_, Value::Str(s))) => s.to_vec(),
        None => Vec::new(),
    });
    set_value(r, v, &header_safe(&value.unwrap_or_default()))
}
