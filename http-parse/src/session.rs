//! The session store's pure parts: the `shared_map_session` directive's
//! parameters, the session id format, and the cookie header lines.
//!
//! Nothing here touches nginx or the map; the module's `session.rs` builds the
//! store on these functions.

use crate::param::ParamError;

use shared_map_engine::spec::parse_time_secs;

/// Random bytes in a session id: 128 bits.
pub const ID_BYTES: usize = 16;
/// Length of an encoded id: two lowercase hex digits per byte.
pub const ID_LEN: usize = ID_BYTES * 2;

const DEFAULT_COOKIE: &str = "SMSESSION";
const DEFAULT_TIMEOUT: u32 = 30 * 60;

/// The cookie's `SameSite` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

impl SameSite {
    pub fn name(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// `shared_map_session name [cookie=name] [timeout=time] [secure]
/// [samesite=strict|lax|none] [path=path] [domain=domain] [rotate=on|off]`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSpec {
    /// The map the sessions live in.
    pub map: String,
    pub cookie: String,
    /// Seconds a session lives after its last use; never 0.
    pub timeout: u32,
    pub secure: bool,
    pub samesite: SameSite,
    pub path: String,
    pub domain: Option<String>,
    /// Every upstream write gives the session a new id (`rotate=on`, the
    /// default), so an id known before a login never carries it.
    pub rotate: bool,
}

/// A cookie name: an RFC 6265 token (visible ASCII without separators).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// A `Path` or `Domain` attribute value: visible ASCII other than `;`.
fn is_attribute_value(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b';')
}

/// Parses the directive's arguments after its name: `args[0]` is the map's name.
pub fn parse(args: &[&str]) -> Result<SessionSpec, ParamError> {
    let Some((map, params)) = args.split_first() else {
        return Err(ParamError::Invalid(String::new()));
    };
    let mut cookie = None;
    let mut timeout = None;
    let mut secure = false;
    let mut samesite = None;
    let mut path = None;
    let mut domain = None;
    let mut rotate = None;
    let invalid = |p: &str| ParamError::Invalid(p.to_string());

    for &p in params {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (p, None),
        };
        let duplicate = match (name, value) {
            ("secure", None) => core::mem::replace(&mut secure, true),
            ("cookie", Some(v)) => {
                if !is_token(v) {
                    return Err(ParamError::InvalidValue {
                        what: "cookie name",
                        value: v.to_string(),
                    });
                }
                cookie.replace(v.to_string()).is_some()
            }
            ("timeout", Some(v)) => match parse_time_secs(v) {
                Some(t) if t > 0 => timeout.replace(t).is_some(),
                _ => {
                    return Err(ParamError::InvalidValue {
                        what: "timeout",
                        value: v.to_string(),
                    })
                }
            },
            ("samesite", Some(v)) => {
                let s = match v.to_ascii_lowercase().as_str() {
                    "strict" => SameSite::Strict,
                    "lax" => SameSite::Lax,
                    "none" => SameSite::None,
                    _ => return Err(invalid(p)),
                };
                samesite.replace(s).is_some()
            }
            ("path", Some(v)) if is_attribute_value(v) && v.starts_with('/') => path.replace(v.to_string()).is_some(),
            ("domain", Some(v)) if is_attribute_value(v) => domain.replace(v.to_string()).is_some(),
            ("rotate", Some("on")) => rotate.replace(true).is_some(),
            ("rotate", Some("off")) => rotate.replace(false).is_some(),
            _ => return Err(invalid(p)),
        };
        if duplicate {
            return Err(ParamError::Duplicate(name.to_string()));
        }
    }

    let samesite = samesite.unwrap_or(SameSite::Lax);
    if samesite == SameSite::None && !secure {
        return Err(ParamError::Requires("samesite=none", "secure"));
    }
    Ok(SessionSpec {
        map: map.to_string(),
        cookie: cookie.unwrap_or_else(|| DEFAULT_COOKIE.to_string()),
        timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
        secure,
        samesite,
        path: path.unwrap_or_else(|| "/".to_string()),
        domain,
        rotate: rotate.unwrap_or(true),
    })
}

/// `shared_map_session_api [write]`: what the API lets a caller do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiAccess {
    /// `GET` and `HEAD` only: any client may read its own session.
    ReadOnly,
    /// Also `PUT` and `DELETE`: for trusted callers only.
    Write,
}

impl ApiAccess {
    /// The `Allow` header of a 405 answer.
    pub fn allow(self) -> &'static str {
        match self {
            ApiAccess::ReadOnly => "GET, HEAD",
            ApiAccess::Write => "GET, HEAD, PUT, DELETE",
        }
    }
}

/// Parses the arguments of `shared_map_session_api` after its name.
pub fn parse_api(args: &[&str]) -> Result<ApiAccess, ParamError> {
    match args {
        [] => Ok(ApiAccess::ReadOnly),
        ["write"] => Ok(ApiAccess::Write),
        ["write", p, ..] | [p, ..] => Err(ParamError::Invalid(p.to_string())),
    }
}

/// What an upstream's `X-Shared-Map-Session` header asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamWrite<'a> {
    /// Store the data (never empty).
    Store(&'a [u8]),
    /// An empty value: the session ends, as with `X-Shared-Map-Session-Destroy: 1`.
    /// An empty session would look to the upstream exactly like no session.
    End,
}

/// Classifies the value of an upstream's `X-Shared-Map-Session` header.
pub fn upstream_write(value: &[u8]) -> UpstreamWrite<'_> {
    if value.is_empty() {
        UpstreamWrite::End
    } else {
        UpstreamWrite::Store(value)
    }
}

/// Whether a flag header (`X-Shared-Map-Session-Destroy`, `-Rotate`) is set:
/// any value but empty or `0`.
pub fn flag_is_set(value: &[u8]) -> bool {
    !matches!(value, b"" | b"0")
}

impl SessionSpec {
    fn attributes(&self, out: &mut String) {
        out.push_str("; Path=");
        out.push_str(&self.path);
        if let Some(d) = &self.domain {
            out.push_str("; Domain=");
            out.push_str(d);
        }
        out.push_str("; HttpOnly");
        if self.secure {
            out.push_str("; Secure");
        }
        out.push_str("; SameSite=");
        out.push_str(self.samesite.name());
    }

    /// The `Set-Cookie` value that gives the client session `id`. It has no
    /// `Max-Age`: the browser keeps it for its own session, and the server's
    /// sliding `timeout` decides how long the session lives.
    pub fn set_cookie(&self, id: &[u8; ID_LEN]) -> String {
        let mut s = String::with_capacity(self.cookie.len() + ID_LEN + 64);
        s.push_str(&self.cookie);
        s.push('=');
        // Hex digits are ASCII.
        s.extend(id.iter().map(|&b| b as char));
        self.attributes(&mut s);
        s
    }

    /// The `Set-Cookie` value that makes the client drop the cookie.
    pub fn expire_cookie(&self) -> String {
        let mut s = String::with_capacity(self.cookie.len() + 96);
        s.push_str(&self.cookie);
        s.push_str("=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:01 GMT");
        self.attributes(&mut s);
        s
    }
}

/// Encodes the random bytes of an id as lowercase hex.
pub fn encode_id(bytes: &[u8; ID_BYTES]) -> [u8; ID_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; ID_LEN];
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 0xf) as usize];
    }
    out
}

/// How many of a request's session cookies are looked up: those shaped like
/// an id, in the order the request sends them, the first live one winning. A
/// browser sends several cookies of one name only when they differ in `Path`
/// or `Domain` (a configuration changed under it), so a few; each lookup
/// takes the map's lock, so a request with 170 of them must not make 170.
pub const MAX_LOOKUPS: usize = 3;

/// Whether `s` has the exact shape of an id this store gives out; anything else
/// in the cookie is ignored before any lookup.
pub fn is_valid_id(s: &[u8]) -> bool {
    s.len() == ID_LEN && s.iter().all(|&b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The values of every cookie called `name` in one `Cookie` header line, in
/// order (`a=1; b=2`). Whitespace around names and values is ignored.
pub fn cookie_values<'a>(line: &'a [u8], name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    line.split(|&b| b == b';').filter_map(move |pair| {
        let eq = pair.iter().position(|&b| b == b'=')?;
        (pair[..eq].trim_ascii() == name).then(|| pair[eq + 1..].trim_ascii())
    })
}

/// Whether session data may travel in a request header: no CR, LF or NUL.
pub fn is_header_safe(data: &[u8]) -> bool {
    !data.iter().any(|&b| matches!(b, b'\r' | b'\n' | b'\0'))
}
