//! Passes nginx's feature, OS and version flags (exported by `nginx-sys`) through
//! as `cfg`s, as the `ngx` crate documents (this needs `nginx-sys` as a direct
//! dependency: cargo hands `DEP_NGINX_*` only to direct dependents), and lets the cdylib leave nginx's
//! symbols unresolved until `load_module` loads it into nginx. Compiles
//! `src/http/request_flags.c` against the target nginx's headers (the include paths
//! and defines `nginx-sys` exports), and assembles
//! the dashboard page (`src/api/dashboard/`) and its Content-Security-Policy.

use std::path::Path;
use std::{env, fs};

use base64::Engine as _;
use sha2::{Digest, Sha256};

fn main() {
    dashboard();
    request_flags();
    let features_check = env::var("DEP_NGINX_FEATURES_CHECK").unwrap_or_else(|_| "any()".into());
    println!("cargo::rustc-check-cfg=cfg(ngx_feature, values({features_check}))");
    if let Ok(features) = env::var("DEP_NGINX_FEATURES") {
        for feature in features.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            println!("cargo::rustc-cfg=ngx_feature=\"{feature}\"");
        }
    }

    stream_cfg();

    let os_check = env::var("DEP_NGINX_OS_CHECK").unwrap_or_else(|_| "any()".into());
    println!("cargo::rustc-check-cfg=cfg(ngx_os, values({os_check}))");
    if let Ok(os) = env::var("DEP_NGINX_OS") {
        println!("cargo::rustc-cfg=ngx_os=\"{os}\"");
    }

    // `nginx1_25_1`-style cfgs for the versions whose API differences matter.
    const VERSIONS: &[(u64, &str)] = &[(1_023_000, "nginx1_23_0"), (1_025_001, "nginx1_25_1")];
    for (_, name) in VERSIONS {
        println!("cargo::rustc-check-cfg=cfg({name})");
    }
    if let Some(version) = env::var("DEP_NGINX_VERSION_NUMBER")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        for (min, name) in VERSIONS {
            if version >= *min {
                println!("cargo::rustc-cfg={name}");
            }
        }
    }
    for var in ["DEP_NGINX_FEATURES", "DEP_NGINX_OS", "DEP_NGINX_VERSION_NUMBER"] {
        println!("cargo::rerun-if-env-changed={var}");
    }

    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("macos") {
        println!("cargo::rustc-link-arg=-undefined");
        println!("cargo::rustc-link-arg=dynamic_lookup");
    }
}

/// `cfg(shared_map_stream)`: the stream module (`src/stream_module/`) is built
/// when the target nginx has stream, unless `NGX_SHARED_MAP_STREAM=no`, which
/// the repository's `config` sets when nginx's stream is not built in
/// (`--with-stream=dynamic`, as Debian's): the module's references to stream's
/// symbols would then be unresolved when `load_module` loads it before
/// `ngx_stream_module.so`, and nginx would refuse it.
fn stream_cfg() {
    println!("cargo::rustc-check-cfg=cfg(shared_map_stream)");
    println!("cargo::rerun-if-env-changed=NGX_SHARED_MAP_STREAM");
    let has_stream = env::var("DEP_NGINX_FEATURES")
        .map(|f| f.split(',').any(|f| f.trim() == "stream"))
        .unwrap_or(false);
    if has_stream && env::var("NGX_SHARED_MAP_STREAM").as_deref() != Ok("no") {
        println!("cargo::rustc-cfg=shared_map_stream");
    }
}

/// The accessors of `ngx_http_request_t`'s bit fields (see `src/http/request_flags.rs`),
/// built by the C compiler from the same headers and defines as the bindings.
fn request_flags() {
    println!("cargo::rerun-if-changed=src/http/request_flags.c");
    for var in ["DEP_NGINX_INCLUDE", "DEP_NGINX_CFLAGS"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    let includes = env::var_os("DEP_NGINX_INCLUDE").expect("nginx-sys exports DEP_NGINX_INCLUDE");
    let mut build = cc::Build::new();
    build.file("src/http/request_flags.c").warnings(false);
    for dir in env::split_paths(&includes) {
        build.include(dir);
    }
    if let Ok(cflags) = env::var("DEP_NGINX_CFLAGS") {
        for flag in cflags.split_whitespace() {
            build.flag(flag);
        }
    }
    build.compile("shared_map_request_flags");
}

/// The dashboard page (`src/api/dashboard/`): the HTML with its style and script
/// inline, so the page loads nothing from anywhere, in a writable and a
/// read-only variant, and the Content-Security-Policy that allows exactly that
/// style and that script by their SHA-256 (no `unsafe-inline`).
fn dashboard() {
    let dir = Path::new("src/api/dashboard");
    let read = |name: &str| {
        let path = dir.join(name);
        println!("cargo::rerun-if-changed={}", path.display());
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let (html, style, script) = (read("page.html"), read("page.css"), read("page.js"));
    let hash = |text: &str| base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()));
    let page = html.replace("/*STYLE*/", &style).replace("/*SCRIPT*/", &script);
    let csp = format!(
        "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; connect-src 'self'; img-src data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hash(&script),
        hash(&style)
    );
    let out = env::var("OUT_DIR").expect("OUT_DIR");
    let out = Path::new(&out);
    let write = |name: &str, text: &str| fs::write(out.join(name), text).expect("write to OUT_DIR");
    write("dashboard-writable.html", &page.replace("/*WRITABLE*/", "yes"));
    write("dashboard-readonly.html", &page.replace("/*WRITABLE*/", "no"));
    write("dashboard-csp.txt", &csp);
}
