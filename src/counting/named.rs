//! Named variables: `shared_map_var key $variable map=NAME [peek];` binds a
//! variable to a lookup (and `set $variable VALUE;` to a write), `shared_map_incr key
//! $variable map=NAME [by=] [init=] [ttl=];` to a counter that counts once per
//! request. Their directives, getters and setter.

use core::ffi::{c_char, c_void};

use ngx::core::{Status, NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_command_t, ngx_conf_t, ngx_http_add_variable, ngx_http_request_t, ngx_int_t, ngx_str_t, ngx_uint_t,
    ngx_variable_value_t, NGX_HTTP_VAR_CHANGEABLE, NGX_HTTP_VAR_NOCACHEABLE, NGX_LOG_ALERT, NGX_LOG_EMERG,
};
use ngx::http::Request;
use ngx::ngx_conf_log_error;
use shared_map_engine::{spec, Read, Ttl, Value};

use crate::conf::{self, args, lossy, MainConf, NamedIncr, NamedVar};
use crate::counting::count;
use crate::ctx::request_ctx;
use crate::log::{log_refusal, map_log};
use crate::value::{cached_by_nginx, header_safe, set_value};
use crate::zone::{now, SharedMap};

/// `shared_map_var key $variable map=NAME [peek];`
///
/// # Safety
/// Called by nginx with the configuration being parsed and our main conf.
pub unsafe extern "C" fn cmd_shared_map_var(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes the configuration being parsed and this module's main conf, as `declare` requires.
    unsafe { declare(cf, conf, false) }
}

/// `shared_map_incr key $variable map=NAME [by=number] [init=number] [ttl=time];`
///
/// # Safety
/// Called by nginx with the configuration being parsed and our main conf.
pub unsafe extern "C" fn cmd_shared_map_incr(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes the configuration being parsed and this module's main conf, as `declare` requires.
    unsafe { declare(cf, conf, true) }
}

/// The parameters after `key $variable`, in nginx's wording when refused.
pub(crate) struct Params {
    pub map: Option<ngx_str_t>,
    pub incr: NamedIncr,
    /// `peek`, of a lookup only.
    pub peek: bool,
}

pub(crate) fn parse_params(args: &[ngx_str_t], counter: bool) -> Result<Params, String> {
    let mut map = None;
    let mut peek = false;
    let mut seen: Vec<&[u8]> = Vec::new();
    let mut incr = NamedIncr {
        by: 1,
        init: 0,
        ttl: Ttl::Default,
    };
    for arg in args {
        let bytes = arg.as_bytes();
        let invalid = || format!("invalid parameter \"{}\"", lossy(arg));
        if bytes == b"peek" && !counter {
            if peek {
                return Err("duplicate parameter \"peek\"".into());
            }
            peek = true;
            continue;
        }
        let Some(eq) = bytes.iter().position(|&b| b == b'=') else {
            return Err(invalid());
        };
        let (name, value) = (&bytes[..eq], &bytes[eq + 1..]);
        if seen.contains(&name) {
            return Err(format!("duplicate parameter \"{}\"", String::from_utf8_lossy(name)));
        }
        seen.push(name);
        let number = || {
            core::str::from_utf8(value)
                .ok()
                .filter(|v| {
                    let digits = v.strip_prefix('-').unwrap_or(v);
                    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
                })
                .and_then(|v| v.parse::<i64>().ok())
        };
        match name {
            b"map" if !value.is_empty() => {
                map = Some(ngx_str_t {
                    len: value.len(),
                    // The bytes stay in the configuration pool with the argument.
                    data: value.as_ptr() as *mut u8,
                })
            }
            b"by" if counter => incr.by = number().ok_or_else(invalid)?,
            b"init" if counter => incr.init = number().ok_or_else(invalid)?,
            b"ttl" if counter => {
                incr.ttl = match core::str::from_utf8(value).ok().and_then(spec::parse_time_secs) {
                    Some(0) => Ttl::Never,
                    Some(secs) => Ttl::Secs(secs),
                    None => return Err(invalid()),
                }
            }
            _ => return Err(invalid()),
        }
    }
    Ok(Params { map, incr, peek })
}

/// What a `shared_map_var` or `shared_map_incr` line declares, checked alike
/// in http and stream: the variable's name (without its `$`), that name in
/// lowercase, the parameters, and the map they name.
pub(crate) struct Declaration {
    pub name: ngx_str_t,
    pub lower: String,
    pub params: Params,
    pub map: ngx_str_t,
}

/// Checks the arguments of a declaring directive, logging nginx's wording when
/// they are refused; `taken` says whether a lowercase name is already declared
/// in the same context.
///
/// # Safety
/// `cf` is the configuration being parsed, and `args` its arguments.
pub(crate) unsafe fn declaration(
    cf: *mut ngx_conf_t,
    args: &[ngx_str_t],
    counter: bool,
    taken: impl Fn(&str) -> bool,
) -> Option<Declaration> {
    let directive = lossy(&args[0]);
    let var = args[2];
    if var.len < 2 || var.as_bytes()[0] != b'$' {
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "invalid variable name \"{}\"", lossy(&var));
        return None;
    }
    let name = ngx_str_t {
        len: var.len - 1,
        // SAFETY: inside the argument, which is at least two bytes long.
        data: unsafe { var.data.add(1) },
    };
    let lower = lossy(&name).to_ascii_lowercase();
    let params = match parse_params(&args[3..], counter) {
        Ok(p) => p,
        Err(e) => {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}", e);
            return None;
        }
    };
    let Some(map) = params.map else {
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"{}\" must have \"map\" parameter", directive);
        return None;
    };
    if taken(&lower) {
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "the duplicate \"{}\" variable", lossy(&name));
        return None;
    }
    Some(Declaration {
        name,
        lower,
        params,
        map,
    })
}

/// Declares one named variable.
///
/// # Safety
/// As the directive handlers.
unsafe fn declare(cf: *mut ngx_conf_t, conf: *mut c_void, counter: bool) -> *mut c_char {
    // SAFETY: nginx passes our main conf (NGX_HTTP_MAIN_CONF_OFFSET).
    let mcf = unsafe { &mut *(conf as *mut MainConf) };
    // SAFETY: nginx passes the configuration being parsed.
    let args = unsafe { args(cf) };
    // SAFETY: cf is the configuration being parsed.
    let Some(Declaration {
        mut name,
        lower,
        params,
        map,
    }) = (unsafe { declaration(cf, args, counter, |n| mcf.named.iter().any(|d| d.name == n)) })
    else {
        return NGX_CONF_ERROR;
    };

    // A lookup is changeable, so that `set` reaches its set handler; a counter
    // is not, so that nginx refuses `set` on it ("the duplicate ... variable").
    let flags = if counter {
        0
    } else {
        NGX_HTTP_VAR_CHANGEABLE | NGX_HTTP_VAR_NOCACHEABLE
    };
    // SAFETY: cf is being parsed; nginx copies the name.
    let v = unsafe { ngx_http_add_variable(cf, &mut name, flags as ngx_uint_t) };
    if v.is_null() {
        return NGX_CONF_ERROR;
    }
    // SAFETY: a variable nginx just returned; a changeable one may be another's.
    if unsafe { (*v).get_handler.is_some() } {
        // Declared by `set` or another module before this directive.
        ngx_conf_log_error!(NGX_LOG_EMERG, cf, "the duplicate \"{}\" variable", lossy(&name));
        return NGX_CONF_ERROR;
    }
    // SAFETY: the arguments live in the configuration pool.
    let Some(mk) = (unsafe { conf::map_key_of(cf, map, args[1]) }) else {
        return NGX_CONF_ERROR;
    };
    let slot = mcf.named.iter().filter(|n| n.incr.is_some()).count();
    let named = Box::new(NamedVar {
        name: lower,
        map_name: lossy(&map),
        mk,
        incr: counter.then_some(params.incr),
        slot,
        peek: params.peek,
    });
    // SAFETY: a variable slot that is ours now; the Box lives in the main conf
    // for the cycle's life.
    unsafe {
        (*v).data = &*named as *const NamedVar as usize;
        if counter {
            (*v).get_handler = Some(var_named_incr);
        } else {
            (*v).get_handler = Some(var_named);
            (*v).set_handler = Some(set_named);
        }
    }
    mcf.named.push(named);
    NGX_CONF_OK
}

/// `init_main_conf`: every named variable's map is defined by `shared_map`.
///
/// # Safety
/// Called by nginx with the configuration being parsed and our main conf.
pub unsafe extern "C" fn init_main_conf(cf: *mut ngx_conf_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx passes our main conf.
    let mcf = unsafe { &*(conf as *const MainConf) };
    // Maps defined in `http {}` or in a `stream {}` before it.
    // SAFETY: the cycle being configured.
    let defined = unsafe { conf::all_maps((*cf).cycle) };
    for n in &mcf.named {
        if !defined.iter().any(|m| m.name == n.map_name) {
            ngx_conf_log_error!(
                NGX_LOG_EMERG,
                cf,
                "unknown shared_map \"{}\" in variable \"${}\"",
                n.map_name,
                n.name
            );
            return NGX_CONF_ERROR;
        }
    }
    NGX_CONF_OK
}

/// The declaration a variable's `data` points to, its map and its key for
/// this request.
fn resolve(r: &Request, data: usize) -> Option<(&NamedVar, &SharedMap, &[u8])> {
    // SAFETY: `declare` set `data` to a NamedVar of the running configuration.
    let named = unsafe { &*(data as *const NamedVar) };
    let map = named.mk.map()?;
    let key = named.mk.key(r)?;
    Some((named, map, key))
}

/// `shared_map_var`: the value the key finds with the map's matching, escaped
/// as `$shared_map_value` is; empty when absent. Changes no value; marks the
/// entry as used unless declared with `peek`.
unsafe extern "C" fn var_named(r: *mut ngx_http_request_t, v: *mut ngx_variable_value_t, data: usize) -> ngx_int_t {
    // SAFETY: nginx passes a live request.
    let r = unsafe { Request::from_ngx_http_request(r) };
    let Some((named, map, key)) = resolve(r, data) else {
        return Status::NGX_ERROR.into();
    };
    let mut buf = itoa::Buffer::new();
    let how = Read {
        touch: !named.peek,
        stale: false,
    };
    // An exact map is read without the mutex.
    let value = map.read_lockless(key, now(), how.touch, |v| match v {
        Value::Int(i) => buf.format(i).as_bytes().to_vec(),
        Value::Long(l) => buf.format(l).as_bytes().to_vec(),
        Value::Str(s) => header_safe(s).into_owned(),
    });
    if let Some(value) = value {
        return set_value(r, v, &value.unwrap_or_default());
    }
    let value = map.with(|m| match m.read_match(key, now(), how).map(|hit| hit.value) {
        Some(Value::Int(i)) => buf.format(i).as_bytes().to_vec(),
        Some(Value::Long(l)) => buf.format(l).as_bytes().to_vec(),
        Some(Value::Str(s)) => header_safe(s).into_owned(),
        None => Vec::new(),
    });
    set_value(r, v, &value.unwrap_or_default())
}

/// `set $variable VALUE;` on a `shared_map_var`: stores VALUE as a string with
/// the map's timeout; an empty VALUE removes the key. A refused write is logged
/// and the request goes on.
unsafe extern "C" fn set_named(r: *mut ngx_http_request_t, v: *mut ngx_variable_value_t, data: usize) {
    // SAFETY: nginx passes a live request.
    let r = unsafe { Request::from_ngx_http_request(r) };
    let Some((named, map, key)) = resolve(r, data) else {
        return;
    };
    // SAFETY: nginx passes the value `set` evaluated, valid for this call.
    let value: &[u8] = unsafe {
        let v = &*v;
        if v.data.is_null() || v.len() == 0 {
            &[]
        } else {
            core::slice::from_raw_parts(v.data, v.len() as usize)
        }
    };
    let now = now();
    let result = map.with(|m| {
        let written = match m.write_key(key) {
            Err(e) => Err(e),
            Ok(k) if value.is_empty() => {
                m.remove(&k, now);
                Ok(())
            }
            Ok(k) => m.put(&k, Value::Str(value), Ttl::Default, now).map(|_| ()),
        };
        written.map_err(|e| (e, m.refusal()))
    });
    match result {
        Ok(Ok(())) => {}
        Ok(Err((e, why))) => log_refusal(r.log(), &named.map_name, key, e, why),
        Err(_) => {
            map_log!(NGX_LOG_ALERT, r.log(), map.name, " is not initialised");
        }
    }
}

/// `shared_map_incr`: adds `by` once per request and yields the new value.
unsafe extern "C" fn var_named_incr(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    data: usize,
) -> ngx_int_t {
    // SAFETY: nginx passes a live request.
    let r = unsafe { Request::from_ngx_http_request(r) };
    let Some((named, map, key)) = resolve(r, data) else {
        return Status::NGX_ERROR.into();
    };
    let Some(incr) = named.incr else {
        return Status::NGX_ERROR.into();
    };
    let add = || count::count_by(r, map, key, incr.by, incr.init, incr.ttl);
    let result = if cached_by_nginx(r, v) {
        // nginx keeps this value for the rest of the request, its internal
        // redirects and subrequests included, and never asks again.
        add()
    } else {
        let Some(ctx) = request_ctx(r) else {
            return Status::NGX_ERROR.into();
        };
        if ctx.named.len() <= named.slot {
            ctx.named.resize(named.slot + 1, None);
        }
        *ctx.named[named.slot].get_or_insert_with(add)
    };
    match result {
        Some(n) => set_value(r, v, itoa::Buffer::new().format(n).as_bytes()),
        None => set_value(r, v, b""),
    }
}
