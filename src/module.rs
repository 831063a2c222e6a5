//! The module's identity for the rest of the crate: [`Module`], through which
//! every file reaches the module's configuration and zone tag.
//!
//! `lib.rs` defines `ngx_http_shared_map_module` with the command table, which
//! names every feature's handlers. Declaring it here, as nginx's C modules
//! forward-declare theirs (`extern ngx_module_t ngx_http_limit_req_module;`),
//! lets every file use the module without importing `lib.rs`, so the files'
//! dependencies run one way.

use core::ptr::addr_of;

use ngx::ffi::ngx_module_t;
use ngx::http::HttpModule;

extern "C" {
    /// Defined in `lib.rs`; one symbol, declared here with the same type.
    #[allow(non_upper_case_globals)]
    pub static mut ngx_http_shared_map_module: ngx_module_t;
}

/// The module, as the `ngx` crate's traits know it. Its configuration types are
/// bound in `conf.rs`.
pub struct Module;

impl HttpModule for Module {
    fn module() -> &'static ngx_module_t {
        // SAFETY: the module static is initialised at load time and nginx writes
        // its index fields only while loading the configuration, before any
        // request or handler reads them.
        unsafe { &*addr_of!(ngx_http_shared_map_module) }
    }
}
