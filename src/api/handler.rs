//! The HTTP API: `shared_map_api [name] [readonly];` serves maps under a
//! location. Requests are planned from the method, the URI and the query
//! (`plan`), run against the map (`execute`: a present key is read without the
//! map's lock, everything else holds it only around the engine call), and
//! answered with a plain-text, JSON or Prometheus body (`send`).

use core::ffi::{c_char, c_void};

use ngx::core::{Status, NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_command_t, ngx_conf_t, ngx_http_discard_request_body, ngx_http_finalize_request,
    ngx_http_read_client_request_body, ngx_http_request_t, ngx_int_t, ngx_str_t, NGX_HTTP_BAD_REQUEST,
    NGX_HTTP_CONFLICT, NGX_HTTP_CREATED, NGX_HTTP_DELETE, NGX_HTTP_FORBIDDEN, NGX_HTTP_GET, NGX_HTTP_HEAD,
    NGX_HTTP_INSUFFICIENT_STORAGE, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_NOT_ALLOWED, NGX_HTTP_NOT_FOUND,
    NGX_HTTP_NO_CONTENT, NGX_HTTP_OK, NGX_HTTP_POST, NGX_HTTP_PRECONDITION_FAILED, NGX_HTTP_PUT,
    NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, NGX_HTTP_SPECIAL_RESPONSE, NGX_LOG_ALERT, NGX_LOG_EMERG, NGX_LOG_ERR,
};
use ngx::http::{HttpModuleLocationConf, NgxHttpCoreModule, Request};
use ngx::{ngx_conf_log_error, ngx_log_error};
use shared_map_engine::{Error, Map, MatchMode, OwnedValue, Read, Ttl, Value};
use shared_map_http_parse::api::{self as api_plan, parse_number, Format, Method, Plan, PutType};
use shared_map_http_parse::conditional;

use crate::api::dashboard;
use crate::api::render::{self, Dump};
use crate::api::stream::{self, Stream, Work};
use crate::conf::{self, ApiConf, LocConf};
use crate::http;
use crate::http::browser;
use crate::http::request_flags;
use crate::log::{log_refusal, map_log, printable, MapName};
use crate::module::Module;
use crate::value::header_safe;
use crate::zone::{self, now, SharedMap, SlabArena};

/// The default `limit` of a JSON listing.
const DEFAULT_LIMIT: u64 = 1000;

/// `shared_map_api [name] [readonly];`
///
/// # Safety
/// Called by nginx with the configuration being parsed and our location conf.
pub unsafe extern "C" fn cmd_set_api(cf: *mut ngx_conf_t, _cmd: *mut ngx_command_t, conf: *mut c_void) -> *mut c_char {
    // SAFETY: nginx passes our location conf (NGX_HTTP_LOC_CONF_OFFSET).
    let lcf = unsafe { &mut *(conf as *mut LocConf) };
    if lcf.api.is_some() {
        return c"is duplicate".as_ptr() as *mut c_char;
    }
    // SAFETY: nginx fills `cf->args` with the directive's words.
    let args = unsafe { (*(*cf).args).as_slice_mut::<ngx_str_t>() };
    let readonly = args.len() > 1 && args[args.len() - 1].as_bytes() == b"readonly";
    let end = if readonly { args.len() - 1 } else { args.len() };
    let zone = match &mut args[1..end] {
        [] => None,
        [name] => {
            // A reference: the map may be defined later.
            // SAFETY: cf is being parsed; the name lives in the configuration pool.
            match unsafe { zone::add_zone(cf, name, 0) } {
                Some(z) => Some(z),
                None => return NGX_CONF_ERROR,
            }
        }
        [_, extra, ..] => {
            let extra = String::from_utf8_lossy(extra.as_bytes()).into_owned();
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "invalid parameter \"{}\"", extra);
            return NGX_CONF_ERROR;
        }
    };
    // SAFETY: the core module's location conf exists while a location is parsed.
    let Some(clcf) = NgxHttpCoreModule::location_conf_mut(unsafe { &*cf }) else {
        return NGX_CONF_ERROR;
    };
    let prefix =
        (clcf.regex.is_null() && clcf.named() == 0 && clcf.noname() == 0).then(|| clcf.name.as_bytes().to_vec());
    clcf.handler = Some(content_handler);
    lcf.api = Some(ApiConf { zone, readonly, prefix });
    NGX_CONF_OK
}

/// What a request asks for, its arguments validated.
enum Op {
    ListMaps {
        format: Format,
        /// The location refuses writes: the dashboard offers none.
        readonly: bool,
        prefix: Vec<u8>,
        limit: Option<u64>,
    },
    Get {
        map: &'static SharedMap,
        key: Vec<u8>,
        /// `stale`: an expired entry still held is answered too.
        stale: bool,
    },
    Put {
        map: &'static SharedMap,
        key: Vec<u8>,
        ttl: Ttl,
        vtype: PutType,
        nx: bool,
        /// `exchange`: the previous value is the reply.
        exchange: bool,
        cond: Cond,
    },
    Incr {
        map: &'static SharedMap,
        key: Vec<u8>,
        delta: i64,
        init: i64,
        ttl: Ttl,
        cond: Cond,
    },
    Delete {
        map: &'static SharedMap,
        key: Vec<u8>,
        cond: Cond,
    },
    List {
        map: &'static SharedMap,
        format: Format,
        prefix: Vec<u8>,
        limit: Option<u64>,
        /// `stale`: expired entries still held are listed, marked.
        stale: bool,
    },
    Clear {
        map: &'static SharedMap,
    },
}

/// A write's preconditions: the request's `If-Match` and `If-None-Match`.
#[derive(Default)]
struct Cond {
    if_match: Option<Vec<u8>>,
    if_none_match: Option<Vec<u8>>,
}

impl Cond {
    fn of(r: &Request) -> Cond {
        let h = &r.as_ref().headers_in;
        // SAFETY: nginx's pointers to the request's own header lines, or null.
        let value = |e: *mut ngx::ffi::ngx_table_elt_t| unsafe { e.as_ref() }.map(|e| e.value.as_bytes().to_vec());
        Cond {
            if_match: value(h.if_match),
            if_none_match: value(h.if_none_match),
        }
    }

    /// Whether the request has no preconditions.
    fn is_empty(&self) -> bool {
        self.if_match.is_none() && self.if_none_match.is_none()
    }

    /// Checks the preconditions on the key's current value. Called inside the
    /// same hold of the map's lock as the write it guards: compare-and-set.
    fn check(&self, m: &mut Map<'_, SlabArena>, key: &[u8], now: u32) -> Result<(), Refused> {
        if self.is_empty() {
            return Ok(());
        }
        let etag_key = m.etag_key();
        let current = m.peek(key, now).map(|v| value_etag(etag_key, &v));
        if conditional::write_allowed(
            self.if_match.as_deref(),
            self.if_none_match.as_deref(),
            current.as_deref(),
        ) {
            Ok(())
        } else {
            Err(Refused::Precondition)
        }
    }
}

/// The ETag of a value: of its type and its bytes, numbers in decimal, keyed
/// with the map's ETag key (`Map::etag_key`).
fn value_etag(key: [u64; 2], v: &Value<'_>) -> String {
    match *v {
        Value::Int(i) => conditional::etag(key, "int", itoa::Buffer::new().format(i).as_bytes()),
        Value::Long(l) => conditional::etag(key, "long", itoa::Buffer::new().format(l).as_bytes()),
        Value::Str(s) => conditional::etag(key, "string", s),
    }
}

/// Why a write of a key was refused.
enum Refused {
    Engine(Error),
    /// `If-Match` or `If-None-Match` did not hold: 412, nothing changed.
    Precondition,
}

impl From<Error> for Refused {
    fn from(e: Error) -> Self {
        Refused::Engine(e)
    }
}

/// A response: status, body and the headers that go with it.
struct Reply {
    status: u32,
    content_type: &'static str,
    body: Vec<u8>,
    value_type: Option<&'static str>,
    allow: Option<&'static str>,
    /// Further headers, such as the dashboard's.
    extra: &'static [(&'static str, &'static str)],
    /// A read of a key: its ETag and the stored key it found (boxed: replies
    /// travel in `Result`s and stay small).
    found: Option<Box<Found>>,
}

/// What a read of a key (or an exchange) adds to its reply's headers.
struct Found {
    etag: String,
    /// The stored key a prefix or ip lookup found.
    matched: Option<String>,
    /// The value has expired: a stale read answered it.
    stale: bool,
}

const TEXT: &str = "text/plain";
const JSON: &str = "application/json";

impl Reply {
    fn new(status: u32, content_type: &'static str, body: Vec<u8>) -> Self {
        Reply {
            status,
            content_type,
            body,
            value_type: None,
            allow: None,
            extra: &[],
            found: None,
        }
    }

    fn empty(status: u32) -> Self {
        Reply::new(status, TEXT, Vec::new())
    }

    /// An error: a short reason, one line of plain text.
    fn error(status: u32, reason: impl Into<String>) -> Self {
        let mut body = reason.into().into_bytes();
        body.push(b'\n');
        Reply::new(status, TEXT, body)
    }

    fn not_allowed(reason: impl Into<String>, allow: &'static str) -> Self {
        Reply {
            allow: Some(allow),
            ..Reply::error(NGX_HTTP_NOT_ALLOWED, reason)
        }
    }
}

fn bad_request(e: impl ToString) -> Reply {
    Reply::error(NGX_HTTP_BAD_REQUEST, e.to_string())
}

/// The reply to a refused write; refusals for lack of room are also logged.
fn refused(r: &Request, map: &SharedMap, key: &[u8], err: Error) -> Reply {
    match err {
        Error::NoRoom => {
            log_refusal(r.log(), &map.name, key, err, None);
            Reply::error(NGX_HTTP_INSUFFICIENT_STORAGE, format!("{} is full", MapName(&map.name)))
        }
        Error::TypeConflict => Reply::error(NGX_HTTP_CONFLICT, "type conflict: the value is not a number"),
        Error::Overflow => Reply::error(NGX_HTTP_CONFLICT, "overflow"),
        Error::Exists => Reply::error(NGX_HTTP_CONFLICT, "key exists"),
        Error::KeyTooLarge => Reply::error(NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "key too large"),
        Error::ValueTooLarge => Reply::error(NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "value too large"),
        Error::NotFound => Reply::error(NGX_HTTP_NOT_FOUND, "key not found"),
        Error::InvalidKey => Reply::error(
            NGX_HTTP_BAD_REQUEST,
            format!("invalid key \"{}\": not an IP address or range", printable(key)),
        ),
        Error::ChainFull => {
            log_refusal(r.log(), &map.name, key, err, None);
            Reply::error(
                NGX_HTTP_INSUFFICIENT_STORAGE,
                format!("{}: too many keys collide in one bucket", MapName(&map.name)),
            )
        }
        // Not refusals of a write: a map that is there and was made.
        Error::Random(_) | Error::NotAMap | Error::State(_) => {
            Reply::error(NGX_HTTP_INTERNAL_SERVER_ERROR, format!("{}: {err}", MapName(&map.name)))
        }
    }
}

/// The reply to a refused write of a key, a failed precondition included.
fn refused_write(r: &Request, map: &SharedMap, key: &[u8], why: Refused) -> Reply {
    match why {
        Refused::Engine(e) => refused(r, map, key, e),
        Refused::Precondition => Reply::error(NGX_HTTP_PRECONDITION_FAILED, "precondition failed"),
    }
}

fn unavailable(r: &Request, map: &SharedMap) -> Reply {
    map_log!(NGX_LOG_ALERT, r.log(), map.name, " is not initialised");
    Reply::error(NGX_HTTP_INTERNAL_SERVER_ERROR, "map unavailable")
}

/// The map a request names, `Ok(None)` for the list of maps.
fn find_map(r: &Request, api: &ApiConf) -> Result<Option<&'static SharedMap>, Reply> {
    if let Some(zone) = api.zone {
        // SAFETY: the zone was added by the directive in this cycle; `shared_map`
        // defined it, or nginx would not have started.
        return match unsafe { SharedMap::from_zone(zone.as_ptr()) } {
            Some(map) => Ok(Some(map)),
            None => Err(Reply::error(NGX_HTTP_INTERNAL_SERVER_ERROR, "map unavailable")),
        };
    }
    let uri = r.path().as_bytes();
    let name = match &api.prefix {
        Some(prefix) if uri.starts_with(prefix) => &uri[prefix.len()..],
        _ => &uri[uri.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1)..],
    };
    let name = name.strip_prefix(b"/").unwrap_or(name);
    if name.is_empty() {
        return Ok(None);
    }
    let maps: Vec<&'static SharedMap> = conf::running_maps();
    match maps.iter().find(|m| m.name.as_bytes() == name) {
        Some(m) => Ok(Some(&**m)),
        None => Err(Reply::error(
            NGX_HTTP_NOT_FOUND,
            format!("unknown map \"{}\"", printable(name)),
        )),
    }
}

/// Works out what the request asks for (`shared_map_http_parse::api::plan`),
/// refusing it when malformed, and finds its map.
fn plan(r: &Request, api: &ApiConf) -> Result<Op, Reply> {
    let method = match r.as_ref().method as u32 {
        NGX_HTTP_GET | NGX_HTTP_HEAD => Method::Get,
        NGX_HTTP_PUT => Method::Put,
        NGX_HTTP_POST => Method::Post,
        NGX_HTTP_DELETE => Method::Delete,
        _ => Method::Other,
    };
    let refused = |e: api_plan::Refusal, map: Option<&SharedMap>| match e {
        api_plan::Refusal::NotAllowed { reason, allow } => Reply::not_allowed(reason, allow),
        api_plan::Refusal::ReadOnly => Reply::not_allowed(
            format!("{} is read-only here", MapName(map.map_or("", |m| &m.name))),
            api_plan::ALLOW_READ,
        ),
        api_plan::Refusal::BadRequest(reason) => bad_request(reason),
    };
    api_plan::check_method(method, api.readonly).map_err(|e| refused(e, None))?;
    let map = find_map(r, api)?;
    let planned = api_plan::plan(method, r.as_ref().args.as_bytes(), map.is_some(), api.readonly, || {
        dashboard::wanted(r)
    })
    .map_err(|e| refused(e, map))?;
    let Some(map) = map else {
        return match planned {
            Plan::ListMaps { format, prefix, limit } => Ok(Op::ListMaps {
                format,
                readonly: api.readonly,
                prefix,
                limit,
            }),
            _ => Err(Reply::error(NGX_HTTP_INTERNAL_SERVER_ERROR, "no map")),
        };
    };
    Ok(match planned {
        Plan::Get { key, stale } => Op::Get { map, key, stale },
        Plan::List {
            format,
            prefix,
            limit,
            stale,
        } => Op::List {
            map,
            format,
            prefix,
            limit,
            stale,
        },
        Plan::Put {
            key,
            ttl,
            vtype,
            nx,
            exchange,
        } => Op::Put {
            map,
            key,
            ttl,
            vtype,
            nx,
            exchange,
            cond: Cond::of(r),
        },
        Plan::Incr { key, delta, init, ttl } => Op::Incr {
            map,
            key,
            delta,
            init,
            ttl,
            cond: Cond::of(r),
        },
        Plan::Delete { key } => Op::Delete {
            map,
            key,
            cond: Cond::of(r),
        },
        Plan::Clear => Op::Clear { map },
        Plan::ListMaps { .. } => return Err(Reply::error(NGX_HTTP_INTERNAL_SERVER_ERROR, "no list of maps")),
    })
}

/// Runs `op`, with `body` the request body of a `PUT`.
fn execute(r: &Request, op: Op, body: &[u8]) -> Reply {
    let now = now();
    match op {
        // API reads peek: looking at a map leaves what eviction chooses alone.
        // A present, live key of an exact map is read without the lock (a
        // stale read of a live entry answers the same); the ETag is made
        // from the copy, after the read.
        Op::Get { map, key, stale } => match map.read_api_lockless(&key, now, |v, etag_key| (v.to_owned(), etag_key)) {
            Some((v, etag_key)) => {
                let etag = value_etag(etag_key, &v.as_value());
                let found = Found {
                    etag,
                    matched: None,
                    stale: false,
                };
                value_reply(v, found)
            }
            None => get_locked(r, map, &key, stale, now),
        },
        Op::Put {
            map,
            key,
            ttl,
            vtype,
            nx,
            exchange,
            cond,
        } => {
            let value = match vtype {
                PutType::Str => Value::Str(body),
                PutType::Int => match parse_number::<i32>(body) {
                    Some(v) => Value::Int(v),
                    None => return bad_request(format!("invalid int value \"{}\"", printable(body))),
                },
                PutType::Long => match parse_number::<i64>(body) {
                    Some(v) => Value::Long(v),
                    None => return bad_request(format!("invalid long value \"{}\"", printable(body))),
                },
            };
            // A key as large as the zone can never be stored, whatever the engine's limit.
            if key.len() >= map.spec.space {
                return refused(r, map, &key, Error::KeyTooLarge);
            }
            let result = map.with(|m| -> Result<_, Refused> {
                let key = m.write_key(&key)?;
                cond.check(m, &key, now)?;
                let prev = if nx {
                    m.put_if_absent(&key, value, ttl, now).map(|()| None)?
                } else {
                    m.put(&key, value, ttl, now)?
                };
                Ok((prev, m.etag_key()))
            });
            match result {
                Err(_) => unavailable(r, map),
                Ok(Ok((None, _))) => Reply::empty(NGX_HTTP_CREATED),
                Ok(Ok((Some(prev), etag_key))) if exchange => {
                    let etag = value_etag(etag_key, &prev.as_value());
                    value_reply(
                        prev,
                        Found {
                            etag,
                            matched: None,
                            stale: false,
                        },
                    )
                }
                Ok(Ok((Some(_), _))) => Reply::empty(NGX_HTTP_NO_CONTENT),
                Ok(Err(e)) => refused_write(r, map, &key, e),
            }
        }
        Op::Incr {
            map,
            key,
            delta,
            init,
            ttl,
            cond,
        } => {
            if key.len() >= map.spec.space {
                return refused(r, map, &key, Error::KeyTooLarge);
            }
            // Without preconditions, a present number counts without the lock.
            if cond.is_empty() {
                match map.add_lockless(&key, delta, now) {
                    Some(Ok(v)) => return Reply::new(NGX_HTTP_OK, TEXT, v.to_string().into_bytes()),
                    Some(Err(e)) => return refused(r, map, &key, e),
                    None => {}
                }
            }
            match map.with(|m| -> Result<_, Refused> {
                let key = m.write_key(&key)?;
                cond.check(m, &key, now)?;
                Ok(m.add(&key, delta, init, ttl, now)?)
            }) {
                Err(_) => unavailable(r, map),
                Ok(Ok(v)) => Reply::new(NGX_HTTP_OK, TEXT, v.to_string().into_bytes()),
                Ok(Err(e)) => refused_write(r, map, &key, e),
            }
        }
        Op::Delete { map, key, cond } => match map.with(|m| -> Result<_, Refused> {
            let key = m.write_key(&key)?;
            cond.check(m, &key, now)?;
            Ok(m.remove(&key, now).is_some())
        }) {
            Err(_) => unavailable(r, map),
            Ok(Ok(true)) => Reply::empty(NGX_HTTP_NO_CONTENT),
            Ok(Ok(false)) => Reply::error(NGX_HTTP_NOT_FOUND, "key not found"),
            Ok(Err(e)) => refused_write(r, map, &key, e),
        },
        Op::ListMaps {
            format: Format::Html,
            readonly,
            ..
        } => Reply {
            extra: &dashboard::HEADERS,
            ..Reply::new(NGX_HTTP_OK, dashboard::CONTENT_TYPE, dashboard::page(readonly).to_vec())
        },
        Op::ListMaps { .. } => {
            // Statistics only, O(1) per map: Prometheus (with entries) streams.
            let maps: Vec<&'static SharedMap> = conf::running_maps();
            let mut dumps = Vec::with_capacity(maps.len());
            for map in maps {
                match map.with(|m| (m.stats(), m.sync_stats())) {
                    Ok((stats, sync)) => dumps.push(Dump {
                        name: &map.name,
                        kind: map.spec.kind.name(),
                        stats,
                        sync,
                    }),
                    Err(_) => return unavailable(r, map),
                }
            }
            match render::maps_json(&dumps) {
                // The same URI answers HTML to browsers: caches must keep both apart.
                Ok(body) => Reply {
                    extra: &[("Vary", "Accept")],
                    ..Reply::new(NGX_HTTP_OK, JSON, body)
                },
                Err(e) => {
                    ngx_log_error!(NGX_LOG_ALERT, r.log(), "could not serialise the maps: {}", e);
                    Reply::error(NGX_HTTP_INTERNAL_SERVER_ERROR, "could not serialise the maps")
                }
            }
        }
        Op::Clear { .. } | Op::List { .. } => Reply::error(NGX_HTTP_INTERNAL_SERVER_ERROR, "not streamed"),
    }
}

/// A read of a key under the map's lock: an absent, expired or stale key, or
/// a synced or matching map's.
fn get_locked(r: &Request, map: &SharedMap, key: &[u8], stale: bool, now: u32) -> Reply {
    match map.with(|m| {
        let matching = m.match_mode() != MatchMode::Exact;
        let etag_key = m.etag_key();
        m.read_match(key, now, Read { touch: false, stale }).map(|hit| {
            // Escaped as variables are: a stored key may hold CR or LF.
            let matched = matching.then(|| String::from_utf8_lossy(&header_safe(hit.key)).into_owned());
            (
                hit.value.to_owned(),
                value_etag(etag_key, &hit.value),
                matched,
                hit.stale,
            )
        })
    }) {
        Err(_) => unavailable(r, map),
        Ok(None) => Reply::error(NGX_HTTP_NOT_FOUND, "key not found"),
        Ok(Some((v, etag, matched, stale))) => value_reply(v, Found { etag, matched, stale }),
    }
}

/// A 200 answering a value: a read's, or the previous value of an exchange.
fn value_reply(v: OwnedValue, found: Found) -> Reply {
    let (t, body) = match v {
        OwnedValue::Int(i) => ("int", i.to_string().into_bytes()),
        OwnedValue::Long(l) => ("long", l.to_string().into_bytes()),
        OwnedValue::Str(s) => ("string", s),
    };
    Reply {
        value_type: Some(t),
        found: Some(Box::new(found)),
        ..Reply::new(NGX_HTTP_OK, TEXT, body)
    }
}

/// The requests whose work grows with the map, as a [`Stream`]: listings and
/// clears. Others are given back.
fn streamed(op: Op) -> Result<Stream, Op> {
    let now = now();
    match op {
        Op::List {
            map,
            format: Format::Json,
            prefix,
            limit,
            stale,
        } => {
            Ok(Stream::new(Work::Json, vec![map], prefix, Some(limit.unwrap_or(DEFAULT_LIMIT)), now).with_stale(stale))
        }
        Op::List {
            map,
            format: Format::Prometheus,
            prefix,
            limit,
            ..
        } => Ok(Stream::new(Work::Prometheus, vec![map], prefix, limit, now)),
        Op::ListMaps {
            format: Format::Prometheus,
            prefix,
            limit,
            ..
        } => {
            let maps: Vec<&'static SharedMap> = conf::running_maps();
            let maps = maps.into_iter().collect();
            // The same URI answers HTML to browsers: caches must keep both apart.
            Ok(Stream::new(Work::Prometheus, maps, prefix, limit, now).vary_accept())
        }
        Op::Clear { map } => Ok(Stream::new(Work::Clear, vec![map], Vec::new(), None, now)),
        op => Err(op),
    }
}

/// Sends `reply` as the whole response; returns what the content handler returns.
///
/// # Safety
/// `r` is a live request whose response has not been started.
unsafe fn send(r: *mut ngx_http_request_t, reply: Reply) -> ngx_int_t {
    // SAFETY: `r` is a live request (the caller's contract), valid until it is finalised.
    let req = unsafe { Request::from_ngx_http_request(r) };
    let headers = [
        ("X-Shared-Map-Type", reply.value_type),
        ("Allow", reply.allow),
        ("ETag", reply.found.as_ref().map(|f| f.etag.as_str())),
        (
            "X-Shared-Map-Key",
            reply.found.as_ref().and_then(|f| f.matched.as_deref()),
        ),
        (
            "X-Shared-Map-Stale",
            reply.found.as_ref().and_then(|f| f.stale.then_some("1")),
        ),
    ];
    let extra = reply.extra.iter().map(|&(name, value)| (name, Some(value)));
    for (name, value) in headers.into_iter().chain(extra) {
        if let Some(value) = value {
            if req.add_header_out(name, value).is_none() {
                return Status::NGX_ERROR.into();
            }
            if name == "ETag" {
                // nginx's not-modified filter answers a read's own If-None-Match
                // (304) and If-Match (412) against `headers_out.etag`: the line
                // just pushed, the last of the list's last part.
                // SAFETY: the list's last part holds at least the line just pushed.
                unsafe {
                    let out = &mut (*r).headers_out;
                    let part = &*out.headers.last;
                    out.etag = (part.elts as *mut ngx::ffi::ngx_table_elt_t).add(part.nelts - 1);
                }
            }
        }
    }
    // SAFETY: a live request.
    let read = matches!(unsafe { (*r).method } as u32, NGX_HTTP_GET | NGX_HTTP_HEAD);
    if reply.found.is_none() || !read {
        // The API evaluated a write's preconditions itself, under the map's lock;
        // nginx's filter must not judge the reply again (an exchange answers
        // the previous value's ETag, not the stored one's).
        // SAFETY: a live request whose header has not been sent.
        unsafe { request_flags::disable_not_modified(r) };
    }
    // SAFETY: `r` is a live request whose response has not been started.
    unsafe { http::send(r, reply.status, reply.content_type, &reply.body) }
}

fn api_conf(r: &Request) -> Option<&'static ApiConf> {
    Module::location_conf(r).and_then(|l| l.api.as_ref())
}

/// The location's content handler.
///
/// # Safety
/// Called by nginx with a live request.
unsafe extern "C" fn content_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx passes a live request.
    let req = unsafe { Request::from_ngx_http_request(r) };
    let Some(api) = api_conf(req) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    // A browser's request for another site, or for a host that is not ours,
    // is refused before anything is planned, read or changed.
    let planned = match browser::refusal(req) {
        Some(refusal) => Err(Reply::error(NGX_HTTP_FORBIDDEN, refusal.to_string())),
        None => plan(req, api),
    };
    match planned {
        Ok(Op::Put { .. }) => {
            // The body is read first; the post handler plans the request again
            // (it is cheap and deterministic) rather than keeping state.
            // SAFETY: a live request in its content phase.
            let rc = unsafe { ngx_http_read_client_request_body(r, Some(body_handler)) };
            if rc >= NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t {
                return rc;
            }
            Status::NGX_DONE.into()
        }
        planned => {
            // SAFETY: a live request in its content phase.
            let rc = unsafe { ngx_http_discard_request_body(r) };
            if rc != ngx_int_t::from(Status::NGX_OK) {
                return rc;
            }
            let reply = match planned {
                Ok(op) => match streamed(op) {
                    // SAFETY: a live request in its content phase, its body
                    // discarded, nothing sent yet.
                    Ok(stream) => return unsafe { stream::start(r, stream) },
                    Err(op) => execute(req, op, &[]),
                },
                Err(reply) => reply,
            };
            // SAFETY: nothing has been sent yet.
            unsafe { send(r, reply) }
        }
    }
}

/// Runs a `PUT` once nginx has read its body.
///
/// # Safety
/// Called by nginx with a live request whose body has been read.
unsafe extern "C" fn body_handler(r: *mut ngx_http_request_t) {
    // SAFETY: nginx passes a live request.
    let req = unsafe { Request::from_ngx_http_request(r) };
    let rc = match api_conf(req).map(|api| plan(req, api)) {
        None => NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t,
        // SAFETY: the body has been read; nothing has been sent yet.
        Some(Ok(op)) => {
            // A body as large as the map's zone can never be stored: it is
            // refused before it is copied.
            let limit = match &op {
                Op::Put { map, .. } => map.spec.space,
                _ => 0,
            };
            // SAFETY: `r` is a live request whose body nginx has read (this is its post handler).
            match unsafe { http::read_body(r, limit) } {
                // SAFETY: `r` is a live request whose response has not been started.
                Ok(body) => unsafe { send(r, execute(req, op, &body)) },
                Err(e) => {
                    let reply = match (&op, e) {
                        (Op::Put { map, key, .. }, http::BodyError::TooLarge(_)) => {
                            refused(req, map, key, Error::ValueTooLarge)
                        }
                        (_, e) => {
                            ngx_log_error!(
                                NGX_LOG_ERR,
                                req.log(),
                                "shared map: could not read the request body: {}",
                                e
                            );
                            Reply::error(NGX_HTTP_INTERNAL_SERVER_ERROR, "could not read the request body")
                        }
                    };
                    // SAFETY: `r` is a live request whose response has not been started.
                    unsafe { send(r, reply) }
                }
            }
        }
        // SAFETY: nothing has been sent yet.
        Some(Err(reply)) => unsafe { send(r, reply) },
    };
    // SAFETY: the post handler finishes the request it took over.
    unsafe { ngx_http_finalize_request(r, rc) };
}
