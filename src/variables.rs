//! The variables `$shared_map_incr` and `$shared_map_value`.

use core::ffi::c_void;

use ngx::ffi::{
    __BindgenBitfieldUnit, ngx_conf_t, ngx_http_add_variable, ngx_http_request_t, ngx_http_variable_t, ngx_int_t,
    ngx_str_t, ngx_uint_t, ngx_variable_value_t, NGX_ERROR, NGX_HTTP_VAR_NOCACHEABLE, NGX_OK,
};
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule, Request};
use ngx::ngx_string;
use shared_map_engine::Value;

use crate::count::{self, now};
use crate::Module;

/// Per main request: the result of `$shared_map_incr`, so it counts at most once,
/// and the session the request uses.
#[derive(Default)]
pub struct RequestCtx {
    incr: Option<Option<i64>>,
    pub session: crate::session::SessionState,
}

/// The main request's context, made on first use; `None` if out of memory.
pub fn request_ctx<'a>(r: &Request) -> Option<&'a mut RequestCtx> {
    // SAFETY: a request's main request outlives it.
    let main = unsafe { Request::from_ngx_http_request(r.as_ref().main) };
    let ctx = match main.get_module_ctx::<RequestCtx>(Module::module()) {
        Some(ctx) => ctx as *const RequestCtx as *mut RequestCtx,
        None => {
            let ctx = main.pool().allocate(RequestCtx::default());
            if ctx.is_null() {
                return None;
            }
            main.set_module_ctx(ctx as *mut c_void, Module::module());
            ctx
        }
    };
    // SAFETY: the ctx lives in the main request's pool; requests are single-threaded.
    Some(unsafe { &mut *ctx })
}

pub(crate) type Getter = unsafe extern "C" fn(*mut ngx_http_request_t, *mut ngx_variable_value_t, usize) -> ngx_int_t;

/// Registers variables with their getters and nginx flags (preconfiguration).
///
/// # Safety
/// `cf` is the configuration being parsed.
pub(crate) unsafe fn register(cf: *mut ngx_conf_t, vars: [(ngx_str_t, Getter, u32); 2]) -> ngx_int_t {
    for (mut name, get, flags) in vars {
        // SAFETY: nginx copies the name into its variables hash.
        let v: *mut ngx_http_variable_t = unsafe { ngx_http_add_variable(cf, &mut name, flags as ngx_uint_t) };
        if v.is_null() {
            return NGX_ERROR as ngx_int_t;
        }
        // SAFETY: a fresh variable slot.
        unsafe {
            (*v).get_handler = Some(get);
            (*v).data = 0;
        }
    }
    NGX_OK as ngx_int_t
}

/// Registers `$shared_map_incr` and `$shared_map_value` (preconfiguration).
///
/// # Safety
/// `cf` is the configuration being parsed.
pub unsafe fn add_variables(cf: *mut ngx_conf_t) -> ngx_int_t {
    // SAFETY: passed through from nginx.
    unsafe {
        register(
            cf,
            [
                (ngx_string!("shared_map_incr"), var_incr, 0),
                (ngx_string!("shared_map_value"), var_value, NGX_HTTP_VAR_NOCACHEABLE),
            ],
        )
    }
}

/// Sets `v` to a copy of `bytes` in the request pool (empty: a valid empty value).
pub(crate) fn set_value(r: &Request, v: *mut ngx_variable_value_t, bytes: &[u8]) -> ngx_int_t {
    let data = if bytes.is_empty() {
        c"".as_ptr() as *mut u8
    } else {
        let p = r.pool().alloc_unaligned(bytes.len()) as *mut u8;
        if p.is_null() {
            return NGX_ERROR as ngx_int_t;
        }
        // SAFETY: `p` has room for `bytes`.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
        p
    };
    // SAFETY: nginx passes a value slot for this request.
    unsafe {
        (*v).data = data;
        set_found(&mut *v, bytes.len());
    }
    NGX_OK as ngx_int_t
}

/// Sets `len`, `valid = 1`, `no_cacheable = 0` and `not_found = 0`, keeping `escape`.
///
/// bindgen's setter for a multi-bit field writes it one bit at a time: for a
/// length not known at compile time `set_len` alone ran a 28-step loop of
/// about 600 instructions, more than the count itself. On little-endian
/// targets bindgen stores bit `i` of the unit in bit `i % 8` of byte `i / 8`,
/// that is the unit is the little-endian bytes of a `u32` holding `len` in
/// bits 0-27, then `valid`, `no_cacheable`, `not_found` and `escape`; so the
/// whole unit is written at once.
fn set_found(v: &mut ngx_variable_value_t, len: usize) {
    if cfg!(target_endian = "little") {
        const LEN_MASK: u32 = (1 << 28) - 1;
        const VALID: u32 = 1 << 28;
        const ESCAPE: u32 = 1 << 31;
        let escape = if v.escape() != 0 { ESCAPE } else { 0 };
        let unit = (len as u32 & LEN_MASK) | VALID | escape;
        v._bitfield_1 = __BindgenBitfieldUnit::new(unit.to_le_bytes());
    } else {
        v.set_len(len as _);
        v.set_valid(1);
        v.set_no_cacheable(0);
        v.set_not_found(0);
    }
}

fn not_found(v: *mut ngx_variable_value_t) -> ngx_int_t {
    // SAFETY: nginx passes a value slot for this request.
    unsafe { (*v).set_not_found(1) };
    NGX_OK as ngx_int_t
}

/// Whether `v` is the request's own slot in `r->variables`, nginx's per-request
/// cache of indexed variables: nginx then keeps the value (`no_cacheable` is 0)
/// for the rest of the request, its subrequests and internal redirects included,
/// so the getter is not called again. Other readers (`ngx_http_get_variable` on
/// a variable no configuration indexed: SSI, perl, njs) pass a fresh slot each
/// time and need the request context to count once.
fn cached_by_nginx(r: &Request, v: *mut ngx_variable_value_t) -> bool {
    let Some(cmcf) = NgxHttpCoreModule::main_conf(r) else {
        return false;
    };
    let start = r.as_ref().variables;
    let end = start.wrapping_add(cmcf.variables.nelts);
    start <= v && v < end
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
            return NGX_ERROR as ngx_int_t;
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
    // SAFETY: compiled into the configuration pool.
    let Some(key) = r.get_complex_value(unsafe { mk.key.as_ref() }) else {
        return NGX_ERROR as ngx_int_t;
    };
    let Some(map) = mk.map() else {
        return not_found(v);
    };
    let value = map.with(|m| match m.get(key.as_bytes(), now()) {
        Some(Value::Int(i)) => i.to_string().into_bytes(),
        Some(Value::Long(l)) => l.to_string().into_bytes(),
        Some(Value::Str(s)) => s.to_vec(),
        None => Vec::new(),
    });
    set_value(r, v, &header_safe(&value.unwrap_or_default()))
}

/// A value that is safe wherever a variable may go, response headers included:
/// control bytes (CR and LF among them), DEL and `%` become `%XX`, as nginx
/// escapes memcached keys, so a stored value can never start a header of its
/// own and the escaping can be undone. The API returns the exact bytes.
fn header_safe(value: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let unsafe_byte = |b: u8| b < 0x20 || b == 0x7f || b == b'%';
    if !value.iter().any(|&b| unsafe_byte(b)) {
        return value.into();
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(value.len() + 8);
    for &b in value {
        if unsafe_byte(b) {
            out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        } else {
            out.push(b);
        }
    }
    out.into()
}
