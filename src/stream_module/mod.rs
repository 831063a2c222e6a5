//! ngx_stream_shared_map_module: the maps in `stream {}`. `shared_map`,
//! `shared_map_var`, `shared_map_incr` and `shared_map_count` for TCP and UDP
//! servers, over the same zones as `http {}` (one name, one zone).
//!
//! A second module of the same shared object, of nginx's stream type: this file
//! wires it (module static, stream context, command table); the directives are
//! in `conf.rs`, the variables and the log-phase count in `session.rs`.
//! Compiled only against an nginx with stream built in (`cfg(shared_map_stream)`,
//! see `build.rs`).

mod conf;
mod session;

use core::ffi::c_void;
use core::mem::offset_of;
use core::ptr::{self, addr_of};

use ngx::ffi::{
    ngx_command_t, ngx_module_t, ngx_stream_conf_ctx_t, ngx_stream_module_t, ngx_uint_t, NGX_CONF_2MORE,
    NGX_CONF_TAKE2, NGX_STREAM_MAIN_CONF, NGX_STREAM_MODULE, NGX_STREAM_SRV_CONF,
};
use ngx::ngx_string;

pub use conf::maps;

const MAIN: usize = offset_of!(ngx_stream_conf_ctx_t, main_conf);
const SRV: usize = offset_of!(ngx_stream_conf_ctx_t, srv_conf);

static NGX_STREAM_SHARED_MAP_MODULE_CTX: ngx_stream_module_t = ngx_stream_module_t {
    preconfiguration: None,
    postconfiguration: Some(session::postconfiguration),
    create_main_conf: Some(conf::create_main_conf),
    init_main_conf: Some(conf::init_main_conf),
    create_srv_conf: Some(conf::create_srv_conf),
    merge_srv_conf: Some(conf::merge_srv_conf),
};

type CmdHandler =
    unsafe extern "C" fn(*mut ngx::ffi::ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut core::ffi::c_char;

const fn command(name: ngx::ffi::ngx_str_t, type_: u32, set: CmdHandler, conf: usize) -> ngx_command_t {
    ngx_command_t {
        name,
        type_: type_ as ngx_uint_t,
        set: Some(set),
        conf,
        offset: 0,
        post: ptr::null_mut(),
    }
}

static mut COMMANDS: [ngx_command_t; 5] = [
    command(
        ngx_string!("shared_map"),
        NGX_STREAM_MAIN_CONF | NGX_CONF_TAKE2,
        conf::cmd_set_shared_map,
        MAIN,
    ),
    command(
        ngx_string!("shared_map_var"),
        NGX_STREAM_MAIN_CONF | NGX_CONF_2MORE,
        conf::cmd_shared_map_var,
        MAIN,
    ),
    command(
        ngx_string!("shared_map_incr"),
        NGX_STREAM_MAIN_CONF | NGX_CONF_2MORE,
        conf::cmd_shared_map_incr,
        MAIN,
    ),
    command(
        ngx_string!("shared_map_count"),
        NGX_STREAM_MAIN_CONF | NGX_STREAM_SRV_CONF | NGX_CONF_TAKE2,
        conf::cmd_add_count,
        SRV,
    ),
    ngx_command_t::empty(),
];

/// The stream module, as nginx loads it beside `ngx_http_shared_map_module`.
#[used]
#[allow(non_upper_case_globals)]
#[no_mangle]
pub static mut ngx_stream_shared_map_module: ngx_module_t = ngx_module_t {
    ctx: addr_of!(NGX_STREAM_SHARED_MAP_MODULE_CTX) as *mut c_void,
    // SAFETY: a static command table that only nginx reads, after load.
    commands: unsafe { &raw mut COMMANDS[0] },
    type_: NGX_STREAM_MODULE as ngx_uint_t,
    ..ngx_module_t::default()
};

/// The module's `ngx_module_t`, for its indexes (set by nginx while loading
/// the configuration, before any session).
fn module() -> &'static ngx_module_t {
    // SAFETY: initialised at load time; nginx writes its index fields only
    // while loading the configuration, before any session reads them.
    unsafe { &*addr_of!(ngx_stream_shared_map_module) }
}
