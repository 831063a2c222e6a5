//! Planning a request of the HTTP API (`shared_map_api`): from its method, its
//! query string and whether its URI names a map, what it asks for, its
//! arguments validated, or why it is refused (405 or 400). The module finds the
//! map, reads the request's headers and body, and runs the plan.

use shared_map_engine::spec;
use shared_map_engine::Ttl;

use crate::query::{self, Arg};

/// What `Allow` says where the API takes writes.
pub const ALLOW_ALL: &str = "GET, HEAD, PUT, POST, DELETE";
/// What `Allow` says where it does not (`readonly`, or the list of maps).
pub const ALLOW_READ: &str = "GET, HEAD";

/// Every argument the API knows; any other is refused.
pub const ALL_ARGS: [&str; 11] = [
    "key", "prefix", "limit", "format", "ttl", "type", "nx", "incr", "init", "exchange", "stale",
];

/// The request's method, as far as the API tells methods apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET` or `HEAD`.
    Get,
    Put,
    Post,
    Delete,
    /// Any other: refused with 405.
    Other,
}

/// The value type a `PUT` stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutType {
    Int,
    Long,
    Str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The dashboard: only for the list of maps.
    Html,
    Json,
    Prometheus,
}

/// What a request asks for, its arguments validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    ListMaps {
        format: Format,
        prefix: Vec<u8>,
        limit: Option<u64>,
    },
    Get {
        key: Vec<u8>,
        /// `stale`: an expired entry still held is answered too.
        stale: bool,
    },
    Put {
        key: Vec<u8>,
        ttl: Ttl,
        vtype: PutType,
        nx: bool,
        /// `exchange`: the previous value is the reply.
        exchange: bool,
    },
    Incr {
        key: Vec<u8>,
        delta: i64,
        init: i64,
        ttl: Ttl,
    },
    Delete {
        key: Vec<u8>,
    },
    List {
        format: Format,
        prefix: Vec<u8>,
        limit: Option<u64>,
        /// `stale`: expired entries still held are listed, marked.
        stale: bool,
    },
    Clear,
}

/// Why a request was refused before anything was read or changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 405, with the methods `Allow` names.
    #[error("{reason}")]
    NotAllowed { reason: String, allow: &'static str },
    /// 405: a write to a map of a `readonly` location (the module names the map).
    #[error("is read-only here")]
    ReadOnly,
    /// 400, with the reason.
    #[error("{0}")]
    BadRequest(String),
}

fn bad(reason: impl Into<String>) -> Refusal {
    Refusal::BadRequest(reason.into())
}

/// A value as it may appear in a reply: escaped and cut to a readable length.
pub fn printable(v: &[u8]) -> String {
    const MAX: usize = 64;
    let mut s: String = v[..v.len().min(MAX)].escape_ascii().to_string();
    if v.len() > MAX {
        s.push_str("...");
    }
    s
}

/// Whether the method writes; 405 for a method the API does not take. Checked
/// before the map is looked for.
pub fn check_method(method: Method, readonly: bool) -> Result<bool, Refusal> {
    match method {
        Method::Get => Ok(false),
        Method::Put | Method::Post | Method::Delete => Ok(true),
        Method::Other => Err(Refusal::NotAllowed {
            reason: "method not allowed".into(),
            allow: if readonly { ALLOW_READ } else { ALLOW_ALL },
        }),
    }
}

/// The validated arguments of one request.
struct Args(Vec<Arg>);

impl Args {
    fn get(&self, name: &str) -> Option<&Arg> {
        self.0.iter().find(|a| a.name == name.as_bytes())
    }

    /// Refuses any argument not in `allowed`.
    fn only(&self, allowed: &[&str]) -> Result<(), Refusal> {
        match self
            .0
            .iter()
            .find(|a| !allowed.iter().any(|n| n.as_bytes() == a.name.as_slice()))
        {
            Some(a) => Err(bad(format!(
                "unexpected argument \"{}\"",
                String::from_utf8_lossy(&a.name)
            ))),
            None => Ok(()),
        }
    }

    /// The value of an argument that must have one (`name=...`).
    fn value(&self, name: &str) -> Result<Option<&[u8]>, Refusal> {
        match self.get(name) {
            None => Ok(None),
            Some(Arg { value: Some(v), .. }) => Ok(Some(v)),
            Some(_) => Err(bad(format!("argument \"{name}\" needs a value"))),
        }
    }

    fn required(&self, name: &str) -> Result<&[u8], Refusal> {
        self.value(name)?
            .ok_or_else(|| bad(format!("missing argument \"{name}\"")))
    }

    /// A flag (`nx`): present without a value.
    fn flag(&self, name: &str) -> Result<bool, Refusal> {
        match self.get(name) {
            None => Ok(false),
            Some(Arg { value: None, .. }) => Ok(true),
            Some(_) => Err(bad(format!("argument \"{name}\" takes no value"))),
        }
    }

    fn number<T: core::str::FromStr>(&self, name: &str) -> Result<Option<T>, Refusal> {
        let Some(v) = self.value(name)? else { return Ok(None) };
        parse_number(v)
            .map(Some)
            .ok_or_else(|| bad(format!("invalid {name} \"{}\"", printable(v))))
    }

    fn ttl(&self) -> Result<Ttl, Refusal> {
        let Some(v) = self.value("ttl")? else {
            return Ok(Ttl::Default);
        };
        match core::str::from_utf8(v).ok().and_then(spec::parse_time_secs) {
            Some(0) => Ok(Ttl::Never),
            Some(secs) => Ok(Ttl::Secs(secs)),
            None => Err(bad(format!("invalid ttl \"{}\"", printable(v)))),
        }
    }

    fn format(&self) -> Result<Format, Refusal> {
        match self.value("format")? {
            None | Some(b"json") => Ok(Format::Json),
            Some(b"prometheus") => Ok(Format::Prometheus),
            Some(b"html") => Ok(Format::Html),
            Some(v) => Err(bad(format!("invalid format \"{}\"", printable(v)))),
        }
    }
}

/// A decimal number: an optional `-`, then digits only.
pub fn parse_number<T: core::str::FromStr>(v: &[u8]) -> Option<T> {
    let digits = v.strip_prefix(b"-").unwrap_or(v);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    core::str::from_utf8(v).ok()?.parse().ok()
}

/// Works out what a request asks for, once its method passed
/// [`check_method`] and its map (if its URI names one: `map`) was found.
/// `wants_html` says whether the client prefers HTML, asked only for the list
/// of maps without a `format`.
pub fn plan(
    method: Method,
    query: &[u8],
    map: bool,
    readonly: bool,
    wants_html: impl FnOnce() -> bool,
) -> Result<Plan, Refusal> {
    let write = check_method(method, readonly)?;
    let args = Args(query::parse(query, &ALL_ARGS).map_err(|e| bad(e.to_string()))?);

    if !map {
        if write {
            return Err(Refusal::NotAllowed {
                reason: "method not allowed".into(),
                allow: ALLOW_READ,
            });
        }
        args.only(&["format", "prefix", "limit"])?;
        let format = match args.value("format")? {
            None if wants_html() => Format::Html,
            _ => args.format()?,
        };
        return Ok(Plan::ListMaps {
            format,
            prefix: args.value("prefix")?.unwrap_or_default().to_vec(),
            limit: args.number("limit")?,
        });
    }
    if write && readonly {
        return Err(Refusal::ReadOnly);
    }

    let key = args.value("key")?.map(<[u8]>::to_vec);
    match (method, key) {
        (Method::Get, Some(key)) => {
            args.only(&["key", "stale"])?;
            let stale = args.flag("stale")?;
            Ok(Plan::Get { key, stale })
        }
        (Method::Get, None) => {
            args.only(&["format", "prefix", "limit", "stale"])?;
            let format = args.format()?;
            if format == Format::Html {
                return Err(bad("format \"html\" is for the list of maps only"));
            }
            let stale = args.flag("stale")?;
            if stale && format != Format::Json {
                return Err(bad("argument \"stale\" is for JSON listings only"));
            }
            Ok(Plan::List {
                format,
                prefix: args.value("prefix")?.unwrap_or_default().to_vec(),
                limit: args.number("limit")?,
                stale,
            })
        }
        (Method::Put, key) => {
            args.only(&["key", "ttl", "type", "nx", "exchange"])?;
            let key = key.ok_or_else(|| bad("missing argument \"key\""))?;
            let vtype = match args.value("type")? {
                None | Some(b"string") => PutType::Str,
                Some(b"int") => PutType::Int,
                Some(b"long") => PutType::Long,
                Some(v) => return Err(bad(format!("invalid type \"{}\"", printable(v)))),
            };
            let (nx, exchange) = (args.flag("nx")?, args.flag("exchange")?);
            if nx && exchange {
                return Err(bad("arguments \"nx\" and \"exchange\" exclude each other"));
            }
            Ok(Plan::Put {
                key,
                ttl: args.ttl()?,
                vtype,
                nx,
                exchange,
            })
        }
        (Method::Post, key) => {
            args.only(&["key", "incr", "init", "ttl"])?;
            let key = key.ok_or_else(|| bad("missing argument \"key\""))?;
            args.required("incr")?;
            Ok(Plan::Incr {
                key,
                delta: args.number("incr")?.unwrap_or(0),
                init: args.number("init")?.unwrap_or(0),
                ttl: args.ttl()?,
            })
        }
        (_, Some(key)) => {
            args.only(&["key"])?;
            Ok(Plan::Delete { key })
        }
        (_, None) => {
            args.only(&[])?;
            Ok(Plan::Clear)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(method: Method, query: &str, map: bool, readonly: bool) -> Result<Plan, Refusal> {
        plan(method, query.as_bytes(), map, readonly, || false)
    }

    fn bad_request(r: Result<Plan, Refusal>) -> String {
        match r {
            Err(Refusal::BadRequest(s)) => s,
            other => panic!("not a 400: {other:?}"),
        }
    }

    #[test]
    fn reads() {
        assert_eq!(
            p(Method::Get, "key=a%2Fb", true, false),
            Ok(Plan::Get {
                key: b"a/b".to_vec(),
                stale: false
            })
        );
        assert_eq!(
            p(Method::Get, "key=a&stale", true, true),
            Ok(Plan::Get {
                key: b"a".to_vec(),
                stale: true
            })
        );
        assert_eq!(
            p(Method::Get, "prefix=u&limit=5", true, false),
            Ok(Plan::List {
                format: Format::Json,
                prefix: b"u".to_vec(),
                limit: Some(5),
                stale: false
            })
        );
    }

    #[test]
    fn writes() {
        assert_eq!(
            p(Method::Put, "key=k&ttl=1m&type=int&nx", true, false),
            Ok(Plan::Put {
                key: b"k".to_vec(),
                ttl: Ttl::Secs(60),
                vtype: PutType::Int,
                nx: true,
                exchange: false
            })
        );
        assert_eq!(
            p(Method::Post, "key=k&incr=-2&init=5&ttl=0", true, false),
            Ok(Plan::Incr {
                key: b"k".to_vec(),
                delta: -2,
                init: 5,
                ttl: Ttl::Never
            })
        );
        assert_eq!(
            p(Method::Delete, "key=k", true, false),
            Ok(Plan::Delete { key: b"k".to_vec() })
        );
        assert_eq!(p(Method::Delete, "", true, false), Ok(Plan::Clear));
    }

    #[test]
    fn the_list_of_maps() {
        assert_eq!(
            plan(Method::Get, b"", false, false, || true),
            Ok(Plan::ListMaps {
                format: Format::Html,
                prefix: vec![],
                limit: None
            })
        );
        // An explicit format wins over the client's preference.
        assert_eq!(
            plan(Method::Get, b"format=json", false, false, || true),
            Ok(Plan::ListMaps {
                format: Format::Json,
                prefix: vec![],
                limit: None
            })
        );
        assert_eq!(
            p(Method::Put, "", false, false),
            Err(Refusal::NotAllowed {
                reason: "method not allowed".into(),
                allow: ALLOW_READ
            })
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(
            p(Method::Other, "", true, true),
            Err(Refusal::NotAllowed {
                reason: "method not allowed".into(),
                allow: ALLOW_READ
            })
        );
        assert_eq!(
            check_method(Method::Other, false),
            Err(Refusal::NotAllowed {
                reason: "method not allowed".into(),
                allow: ALLOW_ALL
            })
        );
        assert_eq!(p(Method::Put, "key=k", true, true), Err(Refusal::ReadOnly));
        assert_eq!(bad_request(p(Method::Put, "", true, false)), "missing argument \"key\"");
        assert_eq!(
            bad_request(p(Method::Post, "key=k", true, false)),
            "missing argument \"incr\""
        );
        assert_eq!(
            bad_request(p(Method::Post, "key=k&incr=1x", true, false)),
            "invalid incr \"1x\""
        );
        assert_eq!(
            bad_request(p(Method::Get, "key=k&nx", true, false)),
            "unexpected argument \"nx\""
        );
        assert_eq!(
            bad_request(p(Method::Get, "bogus=1", true, false)),
            "unknown argument \"bogus\""
        );
        assert_eq!(
            bad_request(p(Method::Put, "key=k&nx=1", true, false)),
            "argument \"nx\" takes no value"
        );
        assert_eq!(
            bad_request(p(Method::Put, "key", true, false)),
            "argument \"key\" needs a value"
        );
        assert_eq!(
            bad_request(p(Method::Put, "key=k&nx&exchange", true, false)),
            "arguments \"nx\" and \"exchange\" exclude each other"
        );
        assert_eq!(
            bad_request(p(Method::Get, "format=prometheus&stale", true, false)),
            "argument \"stale\" is for JSON listings only"
        );
        assert_eq!(
            bad_request(p(Method::Get, "format=html", true, false)),
            "format \"html\" is for the list of maps only"
        );
        assert_eq!(
            bad_request(p(Method::Put, "key=k&ttl=soon", true, false)),
            "invalid ttl \"soon\""
        );
        assert_eq!(
            bad_request(p(Method::Put, "key=k&type=float", true, false)),
            "invalid type \"float\""
        );
    }
}
