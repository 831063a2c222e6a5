//! Requests a browser sent: whether the API serves them. An API protected by
//! `allow`/`deny` alone trusts the address a request comes from, and the
//! browser of someone allowed in comes from that address whatever page made it
//! send the request. Two browser attacks are refused:
//!
//! - cross-site writes (CSRF): a page of another site makes the browser send a
//!   `PUT`, `POST` or `DELETE` (a form, `fetch(…, {mode: "no-cors"})`,
//!   `sendBeacon`). Browsers say where such a request comes from: `Origin` (on
//!   every request but a `GET` or `HEAD`) and `Sec-Fetch-Site`. A write is
//!   refused unless `Origin` is the request's own scheme, host and port and
//!   `Sec-Fetch-Site` is `same-origin` or `none` (typed by the user);
//! - DNS rebinding: a page of the attacker's domain, once the domain resolves
//!   to the server, is same-origin with it as far as the browser knows. Its
//!   requests carry the attacker's domain in `Host`, so a browser's request
//!   is served only for a `Host` that is an IP address, `localhost`, or a
//!   name of the server.
//!
//! A request is a browser's when it carries `Origin` or `Sec-Fetch-Site`, or
//! a `User-Agent` starting with `Mozilla/`, as every browser's does. The last
//! is needed for reads: on plain HTTP a browser sends `Sec-Fetch-*` only to
//! `localhost` and addresses, and `Origin` on no `GET`, so a rebinding page's
//! same-origin `GET` carries neither; Chromium and WebKit do not let a page
//! change its `User-Agent`. Clients that send none of these (curl, scripts,
//! other servers, each with a `User-Agent` of its own) are served as before.
//!
//! Nothing here touches nginx: the module gathers the headers and decides
//! whether a host is one of the server's `server_name` regular expressions,
//! which only nginx can run.

use core::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// What a request says about itself, as its headers hold it.
#[derive(Clone, Debug, Default)]
pub struct Request<'a> {
    /// Anything but `GET` and `HEAD`: the API's writes, and methods it refuses.
    pub write: bool,
    /// `https` on a TLS connection, else `http`.
    pub https: bool,
    /// The `Host` header's value, port included, as sent (`None`: no header).
    pub host_header: Option<&'a [u8]>,
    /// The host nginx validated and chose the server by: lowercase, without
    /// port or trailing dot (`$host` without its fallback to `server_name`).
    pub host: &'a [u8],
    /// Every `Origin` header's value.
    pub origins: Vec<&'a [u8]>,
    /// Every `Sec-Fetch-Site` header's value.
    pub fetch_sites: Vec<&'a [u8]>,
    /// The `User-Agent` header's value.
    pub user_agent: Option<&'a [u8]>,
}

impl Request<'_> {
    /// Whether a browser sent the request, as far as its headers tell.
    pub fn from_browser(&self) -> bool {
        !self.origins.is_empty()
            || !self.fetch_sites.is_empty()
            || self.user_agent.is_some_and(|ua| ua.starts_with(b"Mozilla/"))
    }
}

/// Why a browser's request was refused (403, nothing changed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `Host` names neither an address, `localhost`, nor the server.
    ForeignHost(String),
    /// A write whose `Origin` is not the request's own.
    CrossOrigin(String),
    /// A write whose `Sec-Fetch-Site` is not `same-origin` or `none`.
    CrossSite(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::ForeignHost(h) => write!(f, "host \"{h}\" is not a name of this server"),
            Refusal::CrossOrigin(o) => write!(f, "cross-site write refused: origin \"{o}\""),
            Refusal::CrossSite(s) => write!(f, "cross-site write refused: Sec-Fetch-Site \"{s}\""),
        }
    }
}

impl std::error::Error for Refusal {}

/// Decides whether the API serves `req`. `named` says whether a host (never
/// an address nor `localhost`) is one of the server's names.
pub fn check(req: &Request<'_>, named: impl FnOnce(&[u8]) -> bool) -> Result<(), Refusal> {
    if !req.from_browser() {
        return Ok(());
    }
    if !(is_address_or_localhost(req.host) || (!req.host.is_empty() && named(req.host))) {
        return Err(Refusal::ForeignHost(shown(req.host)));
    }
    if !req.write {
        return Ok(());
    }
    if let Some(site) = req
        .fetch_sites
        .iter()
        .find(|s| !matches!(s.trim_ascii(), b"same-origin" | b"none"))
    {
        return Err(Refusal::CrossSite(shown(site)));
    }
    if let Some(origin) = req.origins.iter().find(|o| !same_origin(o, req.https, req.host_header)) {
        return Err(Refusal::CrossOrigin(shown(origin)));
    }
    Ok(())
}

/// A header value as a reason may show it: printable ASCII, at most 100 bytes.
fn shown(v: &[u8]) -> String {
    v.iter()
        .take(100)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

/// Whether `host` (as nginx validated it: lowercase, brackets around IPv6, no
/// port) is an IP address or `localhost`: names no DNS answer can move.
pub fn is_address_or_localhost(host: &[u8]) -> bool {
    if host == b"localhost" {
        return true;
    }
    let Ok(s) = core::str::from_utf8(host) else {
        return false;
    };
    if let Some(v6) = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().is_ok();
    }
    s.parse::<Ipv4Addr>().is_ok()
}

/// Whether `origin` is `scheme://Host`: the request's own scheme, host and
/// port (a default port written or not), compared without regard to case.
fn same_origin(origin: &[u8], https: bool, host_header: Option<&[u8]>) -> bool {
    let Some(host) = host_header else {
        return false;
    };
    let (scheme, default_port): (&[u8], &[u8]) = if https {
        (b"https://", b":443")
    } else {
        (b"http://", b":80")
    };
    let origin = origin.trim_ascii();
    if origin.len() < scheme.len() || !origin[..scheme.len()].eq_ignore_ascii_case(scheme) {
        return false;
    }
    let strip = |h: &'_ [u8]| -> Vec<u8> {
        let h = h.trim_ascii();
        let h = if h.len() > default_port.len() && h.ends_with(default_port) {
            &h[..h.len() - default_port.len()]
        } else {
            h
        };
        h.to_ascii_lowercase()
    };
    let theirs = strip(&origin[scheme.len()..]);
    !theirs.is_empty() && theirs == strip(host)
}

/// Whether `host` matches the server name `name`, as nginx matches names that
/// are not regular expressions: exactly, or a leading wildcard (`*.example.com`
/// matches the names under `example.com`, `.example.com` also `example.com`
/// itself). A trailing wildcard (`www.example.*`) matches nothing here: it
/// matches `www.example.attacker.test`, a name anyone can register and point
/// at the server. The empty name (a request without `Host`) matches nothing
/// either: a browser always sends one.
pub fn name_matches(name: &[u8], host: &[u8]) -> bool {
    if name.is_empty() || host.is_empty() {
        return false;
    }
    if let Some(domain) = name.strip_prefix(b"*") {
        // "*.example.com": at least one label before ".example.com".
        return domain.starts_with(b".") && host.len() > domain.len() && ends_with_ci(host, domain);
    }
    if let Some(domain) = name.strip_prefix(b".") {
        return host.eq_ignore_ascii_case(domain) || (host.len() > name.len() && ends_with_ci(host, name));
    }
    if name.ends_with(b"*") {
        return false;
    }
    host.eq_ignore_ascii_case(name)
}

fn ends_with_ci(s: &[u8], suffix: &[u8]) -> bool {
    s.len() >= suffix.len() && s[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(write: bool, host: &'a [u8], origins: &[&'a [u8]], sites: &[&'a [u8]]) -> Request<'a> {
        Request {
            write,
            https: false,
            host_header: Some(host),
            host: host.split(|&b| b == b':').next().unwrap_or_default(),
            origins: origins.to_vec(),
            fetch_sites: sites.to_vec(),
            user_agent: None,
        }
    }

    fn ours(host: &[u8]) -> bool {
        host.eq_ignore_ascii_case(b"api.example.com")
    }

    #[test]
    fn clients_that_are_not_browsers_are_served() {
        assert_eq!(check(&req(true, b"rebind.attacker.test:80", &[], &[]), ours), Ok(()));
        let no_host = Request {
            write: true,
            ..Request::default()
        };
        assert_eq!(check(&no_host, ours), Ok(()));
    }

    #[test]
    fn same_origin_writes_are_served() {
        for host in [
            &b"127.0.0.1:2350"[..],
            b"localhost:2350",
            b"api.example.com",
            b"API.Example.com:80",
        ] {
            let origin = [b"http://".as_slice(), host].concat();
            let r = req(true, host, &[&origin], &[b"same-origin"]);
            assert_eq!(check(&r, ours), Ok(()), "{}", shown(host));
        }
        // A default port may be written on either side.
        assert_eq!(
            check(
                &req(true, b"api.example.com:80", &[b"http://api.example.com"], &[]),
                ours
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &req(true, b"api.example.com", &[b"http://api.example.com:80"], &[]),
                ours
            ),
            Ok(())
        );
        // Typed by the user (a navigation): none.
        assert_eq!(check(&req(true, b"127.0.0.1", &[], &[b"none"]), ours), Ok(()));
        // IPv6 literals.
        let mut r = req(true, b"[::1]:2350", &[b"http://[::1]:2350"], &[]);
        r.host = b"[::1]";
        assert_eq!(check(&r, ours), Ok(()));
    }

    #[test]
    fn cross_site_writes_are_refused() {
        let host = b"127.0.0.1:2350";
        for origin in [
            &b"http://evil.example"[..],
            b"null",
            b"",
            b"https://127.0.0.1:2350",
            b"http://127.0.0.1:2351",
            b"http://127.0.0.1",
            b"http://127.0.0.1:2350.evil.example",
            b"http://",
        ] {
            let r = req(true, host, &[origin], &[]);
            assert!(
                matches!(check(&r, ours), Err(Refusal::CrossOrigin(_))),
                "{}",
                shown(origin)
            );
        }
        // A second Origin that is not ours.
        let r = req(true, host, &[b"http://127.0.0.1:2350", b"http://evil.example"], &[]);
        assert!(matches!(check(&r, ours), Err(Refusal::CrossOrigin(_))));
        for site in [&b"cross-site"[..], b"same-site", b"", b"bogus"] {
            let r = req(true, host, &[], &[site]);
            assert!(matches!(check(&r, ours), Err(Refusal::CrossSite(_))), "{}", shown(site));
        }
        // Sec-Fetch-Site is checked even when Origin looks right.
        let r = req(true, host, &[b"http://127.0.0.1:2350"], &[b"cross-site"]);
        assert!(matches!(check(&r, ours), Err(Refusal::CrossSite(_))));
        // On TLS the origin is https.
        let mut r = req(true, b"api.example.com", &[b"http://api.example.com"], &[]);
        r.https = true;
        assert!(check(&r, ours).is_err());
        r.origins = vec![b"https://api.example.com"];
        assert_eq!(check(&r, ours), Ok(()));
    }

    #[test]
    fn cross_site_reads_are_served() {
        let r = req(false, b"127.0.0.1:2350", &[b"http://evil.example"], &[b"cross-site"]);
        assert_eq!(check(&r, ours), Ok(()));
    }

    #[test]
    fn browsers_are_refused_for_hosts_that_are_not_the_servers() {
        for write in [false, true] {
            let host = b"rebind.attacker.test:2350";
            // The rebinding page is same-origin with itself.
            let r = req(write, host, &[b"http://rebind.attacker.test:2350"], &[b"same-origin"]);
            assert_eq!(
                check(&r, ours),
                Err(Refusal::ForeignHost("rebind.attacker.test".into()))
            );
            let r = req(write, host, &[], &[b"same-origin"]);
            assert!(matches!(check(&r, ours), Err(Refusal::ForeignHost(_))));
            let mut r = req(write, b"", &[b"null"], &[]);
            r.host_header = None;
            assert!(matches!(check(&r, ours), Err(Refusal::ForeignHost(_))));
        }
        let r = req(false, b"api.example.com", &[], &[b"cross-site"]);
        assert_eq!(check(&r, ours), Ok(()));
    }

    #[test]
    fn a_browsers_user_agent_makes_a_browsers_request() {
        // A rebinding page's same-origin GET on plain HTTP: no Origin, no Sec-Fetch-*.
        let chromium =
            b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/140.0.0.0";
        let mut r = req(false, b"rebind.attacker.test:2350", &[], &[]);
        r.user_agent = Some(chromium);
        assert!(matches!(check(&r, ours), Err(Refusal::ForeignHost(_))));
        r.host = b"127.0.0.1";
        assert_eq!(check(&r, ours), Ok(()));
        // Scripts name themselves.
        for ua in [
            &b"curl/8.14.1"[..],
            b"python-requests/2.32",
            b"Go-http-client/1.1",
            b"Prometheus/3.0",
            b"node",
        ] {
            let mut r = req(true, b"rebind.attacker.test:2350", &[], &[]);
            r.user_agent = Some(ua);
            assert!(!r.from_browser());
            assert_eq!(check(&r, ours), Ok(()), "{}", shown(ua));
        }
        // A write with no Origin from a browser (none sends one so): its Host is checked.
        let mut r = req(true, b"127.0.0.1:2350", &[], &[]);
        r.user_agent = Some(chromium);
        assert_eq!(check(&r, ours), Ok(()));
    }

    #[test]
    fn addresses_and_localhost() {
        for h in [&b"127.0.0.1"[..], b"10.1.2.3", b"[::1]", b"[2001:db8::1]", b"localhost"] {
            assert!(is_address_or_localhost(h), "{}", shown(h));
        }
        for h in [
            &b"127.0.0.1.nip.io"[..],
            b"localhost.attacker.test",
            b"::1",
            b"[::1",
            b"0x7f.1",
            b"",
            b"example.com",
            b"2130706433",
        ] {
            assert!(!is_address_or_localhost(h), "{}", shown(h));
        }
    }

    #[test]
    fn server_names_match_as_nginx_matches_them() {
        assert!(name_matches(b"example.com", b"example.com"));
        assert!(name_matches(b"example.com", b"Example.COM"));
        assert!(!name_matches(b"example.com", b"www.example.com"));
        assert!(!name_matches(b"example.com", b"example.com.attacker.test"));
        assert!(name_matches(b"*.example.com", b"www.example.com"));
        assert!(name_matches(b"*.example.com", b"a.b.example.com"));
        assert!(!name_matches(b"*.example.com", b"example.com"));
        assert!(!name_matches(b"*.example.com", b".example.com"));
        assert!(!name_matches(b"*.example.com", b"wwwexample.com"));
        assert!(name_matches(b".example.com", b"example.com"));
        assert!(name_matches(b".example.com", b"www.example.com"));
        assert!(!name_matches(b".example.com", b"badexample.com"));
        // Trailing wildcards match names of other people's domains: never.
        assert!(!name_matches(b"www.example.*", b"www.example.com"));
        assert!(!name_matches(b"www.example.*", b"www.example.attacker.test"));
        // The empty name and "_".
        assert!(!name_matches(b"", b""));
        assert!(!name_matches(b"_", b"example.com"));
    }
}
