//! ngx_http_shared_map_module: maps shared by every nginx worker, in nginx's
//! shared memory. This file only wires the module together.

mod api;
mod conf;
mod count;
mod http;
mod persist;
mod render;
mod session;
mod timer;
mod variables;
mod zone;

use core::ffi::c_void;
use core::ptr::addr_of;

use ngx::ffi::{
    ngx_array_push, ngx_conf_t, ngx_http_handler_pt, ngx_http_module_t,
    ngx_http_phases_NGX_HTTP_LOG_PHASE as NGX_HTTP_LOG_PHASE, ngx_int_t, ngx_module_t, ngx_uint_t, NGX_ERROR,
    NGX_HTTP_MODULE, NGX_OK,
};
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};

pub struct Module;

impl HttpModule for Module {
    fn module() -> &'static ngx_module_t {
        // SAFETY: the module static is initialised at load and only nginx writes
        // its index fields, before any request.
        unsafe { &*addr_of!(ngx_http_shared_map_module) }
    }

    unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        // SAFETY: nginx passes the configuration being parsed.
        let rc = unsafe { variables::add_variables(cf) };
        if rc != NGX_OK as ngx_int_t {
            return rc;
        }
        // SAFETY: as above.
        unsafe { session::add_variables(cf) }
    }

    unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        // SAFETY: the core module's main conf exists once the http block is parsed.
        let Some(cmcf) = NgxHttpCoreModule::main_conf_mut(unsafe { &*cf }) else {
            return NGX_ERROR as ngx_int_t;
        };
        let handlers = &mut cmcf.phases[NGX_HTTP_LOG_PHASE as usize].handlers;
        // SAFETY: the phase's handler array holds ngx_http_handler_pt elements.
        let h = unsafe { ngx_array_push(handlers) } as *mut ngx_http_handler_pt;
        if h.is_null() {
            return NGX_ERROR as ngx_int_t;
        }
        // SAFETY: a fresh slot of the array.
        unsafe { *h = Some(count::log_handler) };
        // SAFETY: postconfiguration runs once per configuration, in the master.
        unsafe { session::init_header_filter() };
        NGX_OK as ngx_int_t
    }
}

// SAFETY: the main conf slot of this module holds a conf::MainConf.
unsafe impl HttpModuleMainConf for Module {
    type MainConf = conf::MainConf;
}

// SAFETY: the location conf slot of this module holds a conf::LocConf.
unsafe impl HttpModuleLocationConf for Module {
    type LocationConf = conf::LocConf;
}

static NGX_HTTP_SHARED_MAP_MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(Module::preconfiguration),
    postconfiguration: Some(Module::postconfiguration),
    create_main_conf: Some(Module::create_main_conf),
    init_main_conf: None,
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(Module::create_loc_conf),
    merge_loc_conf: Some(Module::merge_loc_conf),
};

ngx::ngx_modules!(ngx_http_shared_map_module);

#[used]
#[allow(non_upper_case_globals)]
#[no_mangle]
pub static mut ngx_http_shared_map_module: ngx_module_t = ngx_module_t {
    ctx: addr_of!(NGX_HTTP_SHARED_MAP_MODULE_CTX) as *mut c_void,
    // SAFETY: a static command table nginx only reads.
    commands: unsafe { &raw mut conf::COMMANDS[0] },
    type_: NGX_HTTP_MODULE as ngx_uint_t,
    init_process: Some(timer::init_process),
    exit_process: Some(timer::exit_process),
    ..ngx_module_t::default()
};
