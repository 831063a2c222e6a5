//! ngx_http_shared_map_module: maps shared by every nginx worker, in nginx's
//! shared memory.
//!
//! This file only wires the module together: the module's `ngx_module_t`, its
//! HTTP context (the configuration hooks) and the command table. The folders
//! name the features (`api`, `counting`, `session`, `persist`, `replication`,
//! `stream_module` for `stream {}`)
//! over the zone, the configuration and the HTTP helpers they share.
#![deny(clippy::undocumented_unsafe_blocks)]

mod api;
mod clock;
mod conf;
mod counting;
mod ctx;
mod http;
mod log;
mod module;
mod persist;
mod replication;
mod session;
#[cfg(shared_map_stream)]
mod stream_module;
mod value;
mod zone;

use core::ffi::{c_char, c_void};
use core::ptr::{self, addr_of};

use ngx::core::{Status, NGX_CONF_OK};
use ngx::ffi::{
    ngx_array_push, ngx_command_t, ngx_conf_t, ngx_cycle_t, ngx_http_handler_pt, ngx_http_module_t,
    ngx_http_phases_NGX_HTTP_LOG_PHASE as NGX_HTTP_LOG_PHASE, ngx_int_t, ngx_module_t, ngx_str_t, ngx_uint_t,
    NGX_CONF_1MORE, NGX_CONF_2MORE, NGX_CONF_NOARGS, NGX_CONF_TAKE1, NGX_CONF_TAKE12, NGX_CONF_TAKE2,
    NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF, NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_MODULE,
    NGX_HTTP_SRV_CONF,
};
use ngx::http::{HttpModule, HttpModuleMainConf, NgxHttpCoreModule};
use ngx::ngx_string;

use crate::module::Module;

/// `preconfiguration`: the variables exist before any directive refers to them.
unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    zone::set_state_hooks(zone::StateHooks {
        claim: persist::state::claim_state_file,
        fill: persist::state::fill_fresh,
    });
    // SAFETY: nginx passes the configuration being parsed.
    unsafe { counting::variables::add_variables(cf) }
}

/// `postconfiguration`: the log-phase counter and the session's header filter,
/// each only if some context uses it, so that a configuration that does not
/// count or keep sessions pays nothing for them on any request.
unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
    // SAFETY: nginx passes the configuration being parsed; the main confs
    // exist once the http block is parsed.
    let (used, cmcf) = unsafe { (Module::main_conf(&*cf), NgxHttpCoreModule::main_conf_mut(&*cf)) };
    let (counting, sessions) = used.map_or((false, false), |m| (m.counting, m.sessions));
    let Some(cmcf) = cmcf else {
        return Status::NGX_ERROR.into();
    };
    if counting {
        let handlers = &mut cmcf.phases[NGX_HTTP_LOG_PHASE as usize].handlers;
        // SAFETY: the phase's handler array holds ngx_http_handler_pt elements.
        let h = unsafe { ngx_array_push(handlers) } as *mut ngx_http_handler_pt;
        if h.is_null() {
            return Status::NGX_ERROR.into();
        }
        // SAFETY: a fresh slot of the array, ours to fill.
        unsafe { *h = Some(counting::count::log_handler) };
    }
    if sessions {
        // SAFETY: postconfiguration runs once per configuration, in the master.
        unsafe { session::init_header_filter() };
    }
    // SAFETY: nginx passes the configuration being parsed; the servers' names are still in its temporary pool.
    if !unsafe { http::browser::collect_server_names(cf) } {
        return Status::NGX_ERROR.into();
    }
    Status::NGX_OK.into()
}

/// `init_main_conf`: the checks that need the whole `http` block.
unsafe extern "C" fn init_main_conf(cf: *mut ngx_conf_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx passes the configuration being parsed and this module's main conf.
    let rc = unsafe { counting::named::init_main_conf(cf, conf) };
    if rc != NGX_CONF_OK {
        return rc;
    }
    // SAFETY: nginx passes the configuration being parsed and this module's main conf.
    unsafe { conf::init_main_conf(cf, conf) }
}

/// `init_module`: the cycle is complete (a failure here would stop nginx, so
/// every check that may refuse a configuration runs in the zones' `init`,
/// `zone::init_zone`): the old maps a reload copied are retired, the locks
/// of state files the cycle took are its own, and those no map names any
/// more are released.
unsafe extern "C" fn init_module(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // SAFETY: nginx passes the cycle being initialised, in the master.
    let maps = conf::maps(unsafe { &*cycle });
    persist::state::retire_old_maps(&maps);
    persist::state::commit_locks(cycle, &maps);
    Status::NGX_OK.into()
}

/// `init_process`: the workers' timer, and replication in worker 0.
unsafe extern "C" fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // SAFETY: nginx passes the worker's cycle to both.
    let rc = unsafe { persist::timer::init_process(cycle) };
    if rc != ngx_int_t::from(Status::NGX_OK) {
        return rc;
    }
    // SAFETY: nginx passes the worker's cycle, alive for the whole process.
    unsafe { replication::connection::init_process(cycle) }
}

/// `exit_process`: the connection to Redis closes, the maps are saved.
unsafe extern "C" fn exit_process(cycle: *mut ngx_cycle_t) {
    replication::connection::exit_process();
    // SAFETY: nginx passes the worker's cycle.
    unsafe { persist::timer::exit_process(cycle) }
}

static NGX_HTTP_SHARED_MAP_MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(preconfiguration),
    postconfiguration: Some(postconfiguration),
    create_main_conf: Some(Module::create_main_conf),
    init_main_conf: Some(init_main_conf),
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(Module::create_loc_conf),
    merge_loc_conf: Some(Module::merge_loc_conf),
};

const ANY_LEVEL: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;
const LOC: usize = NGX_HTTP_LOC_CONF_OFFSET;

type CmdHandler = unsafe extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char;

/// One row of the command table; `conf` says which configuration level the
/// handler receives.
const fn command(name: ngx_str_t, type_: u32, set: CmdHandler, conf: usize) -> ngx_command_t {
    ngx_command_t {
        name,
        type_: type_ as ngx_uint_t,
        set: Some(set),
        conf,
        offset: 0,
        post: ptr::null_mut(),
    }
}

static mut COMMANDS: [ngx_command_t; 10] = [
    command(
        ngx_string!("shared_map"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE2,
        conf::cmd_set_shared_map,
        NGX_HTTP_MAIN_CONF_OFFSET,
    ),
    command(
        ngx_string!("shared_map_var"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_2MORE,
        counting::named::cmd_shared_map_var,
        NGX_HTTP_MAIN_CONF_OFFSET,
    ),
    command(
        ngx_string!("shared_map_incr"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_2MORE,
        counting::named::cmd_shared_map_incr,
        NGX_HTTP_MAIN_CONF_OFFSET,
    ),
    command(
        ngx_string!("shared_map_key"),
        ANY_LEVEL | NGX_CONF_TAKE2,
        conf::cmd_set_key,
        LOC,
    ),
    command(
        ngx_string!("shared_map_count"),
        ANY_LEVEL | NGX_CONF_TAKE2,
        conf::cmd_add_count,
        LOC,
    ),
    command(
        ngx_string!("shared_map_api"),
        NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS | NGX_CONF_TAKE12,
        api::handler::cmd_set_api,
        LOC,
    ),
    command(
        ngx_string!("shared_map_session"),
        ANY_LEVEL | NGX_CONF_1MORE,
        session::cmd_set_session,
        LOC,
    ),
    command(
        ngx_string!("shared_map_session_api"),
        NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS | NGX_CONF_TAKE1,
        session::cmd_set_session_api,
        LOC,
    ),
    command(
        ngx_string!("shared_map_redis"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE,
        replication::redis::cmd_set_redis,
        NGX_HTTP_MAIN_CONF_OFFSET,
    ),
    ngx_command_t::empty(),
];

// The module table a loadable .so needs. Built inside nginx's own build (the
// repository's `config`), nginx generates it instead, so the feature is off there.
#[cfg(all(feature = "export-modules", not(shared_map_stream)))]
ngx::ngx_modules!(ngx_http_shared_map_module);
// With stream, the same object holds the stream module (`stream_module/`):
// the three tables `load_module` reads, as `ngx_modules!` writes them for one
// module (its counting macro does not take two).
#[cfg(all(feature = "export-modules", shared_map_stream))]
mod exported {
    use core::ffi::c_char;

    use ngx::ffi::ngx_module_t;

    use crate::ngx_http_shared_map_module;
    use crate::stream_module::ngx_stream_shared_map_module;

    #[no_mangle]
    #[allow(non_upper_case_globals)]
    pub static mut ngx_modules: [*const ngx_module_t; 3] = [
        &raw const ngx_http_shared_map_module,
        &raw const ngx_stream_shared_map_module,
        core::ptr::null(),
    ];

    #[no_mangle]
    #[allow(non_upper_case_globals)]
    pub static mut ngx_module_names: [*const c_char; 3] = [
        c"ngx_http_shared_map_module".as_ptr(),
        c"ngx_stream_shared_map_module".as_ptr(),
        core::ptr::null(),
    ];

    #[no_mangle]
    #[allow(non_upper_case_globals)]
    pub static mut ngx_module_order: [*const c_char; 1] = [core::ptr::null()];
}

/// The module, as nginx loads it; `module.rs` declares it for the other files.
#[used]
#[allow(non_upper_case_globals)]
#[no_mangle]
pub static mut ngx_http_shared_map_module: ngx_module_t = ngx_module_t {
    ctx: addr_of!(NGX_HTTP_SHARED_MAP_MODULE_CTX) as *mut c_void,
    // SAFETY: a static command table that only nginx reads, after load.
    commands: unsafe { &raw mut COMMANDS[0] },
    type_: NGX_HTTP_MODULE as ngx_uint_t,
    init_module: Some(init_module),
    init_process: Some(init_process),
    exit_process: Some(exit_process),
    ..ngx_module_t::default()
};
