//! Passes nginx's feature, OS and version flags (exported by `nginx-sys`) through
//! as `cfg`s, as the `ngx` crate documents, and lets the cdylib leave nginx's
//! symbols unresolved until `load_module` loads it into nginx.

use std::env;

fn main() {
    let features_check = env::var("DEP_NGINX_FEATURES_CHECK").unwrap_or_else(|_| "any()".into());
    println!("cargo::rustc-check-cfg=cfg(ngx_feature, values({features_check}))");
    if let Ok(features) = env::var("DEP_NGINX_FEATURES") {
        for feature in features.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            println!("cargo::rustc-cfg=ngx_feature=\"{feature}\"");
        }
    }

    let os_check = env::var("DEP_NGINX_OS_CHECK").unwrap_or_else(|_| "any()".into());
    println!("cargo::rustc-check-cfg=cfg(ngx_os, values({os_check}))");
    if let Ok(os) = env::var("DEP_NGINX_OS") {
        println!("cargo::rustc-cfg=ngx_os=\"{os}\"");
    }

    // `nginx1_25_1` style cfgs would go here; the module currently needs none, but
    // keeps the version visible for diagnostics.
    if let Ok(version) = env::var("DEP_NGINX_VERSION_NUMBER") {
        println!("cargo::rustc-env=SHARED_MAP_NGINX_VERSION_NUMBER={version}");
    }

    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("macos") {
        println!("cargo::rustc-link-arg=-undefined");
        println!("cargo::rustc-link-arg=dynamic_lookup");
    }
}
