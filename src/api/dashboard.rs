//! The dashboard: the HTML page `GET LOCATION/` of `shared_map_api` answers to
//! a browser. `build.rs` assembles it from `src/api/dashboard/` with its style and
//! script inline, so it loads nothing from anywhere, and hashes both into the
//! Content-Security-Policy sent with it. The page reads the same location's
//! JSON API; under `readonly` it offers no writes.

use ngx::http::Request;

/// The page where the API takes writes: it offers resets and clears, each
/// behind a confirmation.
const WRITABLE: &str = include_str!(concat!(env!("OUT_DIR"), "/dashboard-writable.html"));
/// The page under `readonly`: it shows, and offers nothing to change.
const READONLY: &str = include_str!(concat!(env!("OUT_DIR"), "/dashboard-readonly.html"));

/// Headers sent with the page: the policy that allows its own script and style
/// and requests to its own origin only, and no caching or sniffing.
pub const HEADERS: [(&str, &str); 5] = [
    (
        "Content-Security-Policy",
        include_str!(concat!(env!("OUT_DIR"), "/dashboard-csp.txt")),
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "no-referrer"),
    ("Vary", "Accept"),
];

pub const CONTENT_TYPE: &str = "text/html; charset=utf-8";

/// The page for an API location that is read-only or not.
pub fn page(readonly: bool) -> &'static [u8] {
    if readonly { READONLY } else { WRITABLE }.as_bytes()
}

/// Whether the client prefers HTML: its `Accept` header names `text/html`, as
/// every browser's navigation request does; `curl` and API clients do not.
pub fn wanted(r: &Request) -> bool {
    r.headers_in_iterator().any(|(name, value)| {
        name.as_bytes().eq_ignore_ascii_case(b"accept") && value.as_bytes().windows(9).any(|w| w == b"text/html")
    })
}
