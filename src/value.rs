//! Variable values: the module's bytes in a request's `ngx_variable_value_t`,
//! escaped where they could otherwise end a header line.

use ngx::core::Status;
use ngx::ffi::{__BindgenBitfieldUnit, ngx_int_t, ngx_variable_value_t};
use ngx::http::{HttpModuleMainConf, NgxHttpCoreModule, Request};

/// Sets `v` to a copy of `bytes` in the request pool (empty: a valid empty value).
pub fn set_value(r: &Request, v: *mut ngx_variable_value_t, bytes: &[u8]) -> ngx_int_t {
    let data = if bytes.is_empty() {
        c"".as_ptr() as *mut u8
    } else {
        let p = r.pool().alloc_unaligned(bytes.len()) as *mut u8;
        if p.is_null() {
            return Status::NGX_ERROR.into();
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
    Status::NGX_OK.into()
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
pub(crate) fn set_found(v: &mut ngx_variable_value_t, len: usize) {
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

pub fn not_found(v: *mut ngx_variable_value_t) -> ngx_int_t {
    // SAFETY: nginx passes a value slot for this request.
    unsafe { (*v).set_not_found(1) };
    Status::NGX_OK.into()
}

/// A value that is safe wherever a variable may go, response headers included:
/// control bytes (CR and LF among them), DEL and `%` become `%XX`, as nginx
/// escapes memcached keys, so a stored value can never start a header of its
/// own and the escaping can be undone. The API returns the exact bytes.
pub fn header_safe(value: &[u8]) -> std::borrow::Cow<'_, [u8]> {
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

/// Whether `v` is the request's own slot in `r->variables`, nginx's per-request
/// cache of indexed variables: nginx then keeps the value (`no_cacheable` is 0)
/// for the rest of the request, its subrequests and internal redirects included,
/// so the getter is not called again. Other readers (`ngx_http_get_variable` on
/// a variable no configuration indexed: SSI, perl, njs) pass a fresh slot each
/// time and need the request context to count once.
pub fn cached_by_nginx(r: &Request, v: *mut ngx_variable_value_t) -> bool {
    let Some(cmcf) = NgxHttpCoreModule::main_conf(r) else {
        return false;
    };
    let start = r.as_ref().variables;
    let end = start.wrapping_add(cmcf.variables.nelts);
    start <= v && v < end
}
