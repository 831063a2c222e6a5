//! What the HTTP API sends for listings: JSON (through `serde_json`) and the
//! Prometheus text exposition format. Works on data already copied out of the
//! maps, so nothing here runs under a map's lock.
//!
//! Keys and string values that are valid UTF-8 appear as JSON strings (`key`,
//! `value`) and Prometheus label values (`key`); others appear base64-encoded
//! (standard alphabet, padded) under `key_base64` / `value_base64`, so every
//! byte string is represented exactly.

use base64::Engine as _;
use serde::Serialize;
use serde_json::{Map as JsonObject, Value as Json};
use shared_map_engine::{LogStats, OwnedValue, Stats};

use crate::clock;

/// One entry copied out of a map; `expire` is the unix time it expires, 0 never.
pub struct Entry {
    pub key: Vec<u8>,
    pub value: OwnedValue,
    pub expire: u32,
}

/// A map's name, type and statistics, copied out under its lock.
pub struct Dump<'a> {
    pub name: &'a str,
    pub kind: &'static str,
    pub stats: Stats,
    /// The replication state of a map with `sync`.
    pub sync: Option<LogStats>,
}

#[derive(Serialize)]
struct StatsJson {
    #[serde(rename = "type")]
    kind: &'static str,
    space: u64,
    free_space: u64,
    entries: u64,
    max_entries: u64,
    hits: u64,
    misses: u64,
    evictions: u64,
    expirations: u64,
    refused: u64,
    lock: LockJson,
}

/// The map's lock: acquisitions that had to wait, the time they waited in all
/// and the longest hold since the map was created, in microseconds.
#[derive(Serialize)]
struct LockJson {
    waits: u64,
    wait_us: u64,
    hold_max_us: u64,
}

impl StatsJson {
    fn new(kind: &'static str, s: &Stats) -> Self {
        StatsJson {
            kind,
            space: s.space,
            free_space: s.free_space,
            entries: s.entries,
            max_entries: s.max_entries,
            hits: s.hits,
            misses: s.misses,
            evictions: s.evictions,
            expirations: s.expirations,
            refused: s.refused,
            lock: LockJson {
                waits: s.lock_waits,
                wait_us: clock::to_nanos(s.lock_wait) / 1000,
                hold_max_us: clock::to_nanos(s.lock_hold_max) / 1000,
            },
        }
    }
}

/// A synced map's replication: `sent` counts changes Redis acknowledged (one
/// per key and batch, after coalescing), `applied` changes from the stream.
#[derive(Serialize)]
struct SyncJson {
    connected: bool,
    pending: u64,
    /// Bytes of the map's space the replication log takes.
    log_bytes: u64,
    sent: u64,
    applied: u64,
    dropped: u64,
    lag_ms: u64,
    last_error: String,
}

impl SyncJson {
    fn new(s: &LogStats) -> Self {
        SyncJson {
            connected: s.connected,
            pending: s.pending,
            log_bytes: s.bytes,
            sent: s.acked,
            applied: s.applied,
            dropped: s.dropped,
            lag_ms: s.lag_ms,
            last_error: String::from_utf8_lossy(&s.last_error).into_owned(),
        }
    }
}

#[derive(Serialize)]
struct MapJson<'a> {
    name: &'a str,
    stats: StatsJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    sync: Option<SyncJson>,
}

#[derive(Serialize)]
struct MapsJson<'a> {
    maps: Vec<MapJson<'a>>,
}

/// Puts `bytes` under `name` when UTF-8, else base64 under `name_base64`.
fn put_bytes(obj: &mut JsonObject<String, Json>, name: &str, bytes: &[u8]) {
    match core::str::from_utf8(bytes) {
        Ok(s) => obj.insert(name.to_owned(), Json::String(s.to_owned())),
        Err(_) => obj.insert(
            format!("{name}_base64"),
            Json::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
        ),
    };
}

fn entry_json(e: &Entry, now: u32) -> Json {
    let mut obj = JsonObject::new();
    put_bytes(&mut obj, "key", &e.key);
    match &e.value {
        OwnedValue::Int(v) => {
            obj.insert("type".into(), "int".into());
            obj.insert("value".into(), (*v).into());
        }
        OwnedValue::Long(v) => {
            obj.insert("type".into(), "long".into());
            obj.insert("value".into(), (*v).into());
        }
        OwnedValue::Str(s) => {
            obj.insert("type".into(), "string".into());
            put_bytes(&mut obj, "value", s);
        }
    }
    if e.expire != 0 {
        obj.insert("ttl".into(), e.expire.saturating_sub(now).into());
    }
    // Only a `?stale` listing holds an entry expired by `now`.
    if e.expire != 0 && e.expire < now {
        obj.insert("stale".into(), true.into());
    }
    Json::Object(obj)
}

/// The start of a map's JSON listing, up to the opening of its entries.
pub fn json_head(
    name: &str,
    kind: &'static str,
    stats: &Stats,
    sync: Option<&LogStats>,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = b"{\"name\":".to_vec();
    serde_json::to_writer(&mut out, name)?;
    out.extend_from_slice(b",\"stats\":");
    serde_json::to_writer(&mut out, &StatsJson::new(kind, stats))?;
    if let Some(sync) = sync {
        out.extend_from_slice(b",\"sync\":");
        serde_json::to_writer(&mut out, &SyncJson::new(sync))?;
    }
    out.extend_from_slice(b",\"entries\":[");
    Ok(out)
}

/// One entry of a JSON listing, after a comma unless it is the first.
pub fn json_entry(out: &mut Vec<u8>, comma: bool, e: &Entry, now: u32) -> Result<(), serde_json::Error> {
    if comma {
        out.push(b',');
    }
    serde_json::to_writer(&mut *out, &entry_json(e, now))
}

/// The end of a map's JSON listing.
pub fn json_tail(out: &mut Vec<u8>, more: bool) {
    out.extend_from_slice(if more {
        b"],\"more\":true}"
    } else {
        b"],\"more\":false}"
    });
}

/// Every map with its statistics.
pub fn maps_json(dumps: &[Dump<'_>]) -> Result<Vec<u8>, serde_json::Error> {
    let doc = MapsJson {
        maps: dumps
            .iter()
            .map(|d| MapJson {
                name: d.name,
                stats: StatsJson::new(d.kind, &d.stats),
                sync: d.sync.as_ref().map(SyncJson::new),
            })
            .collect(),
    };
    serde_json::to_vec(&doc)
}

/// A label value escaped as the text format requires: `\\`, `\"` and `\n`.
fn label(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `name="value"` for bytes: `key` when UTF-8, else base64 in `key_base64`.
fn bytes_label(out: &mut String, name: &str, bytes: &[u8]) {
    match core::str::from_utf8(bytes) {
        Ok(s) => {
            out.push_str(name);
            out.push_str("=\"");
            label(out, s);
        }
        Err(_) => {
            out.push_str(name);
            out.push_str("_base64=\"");
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(bytes));
        }
    }
    out.push('"');
}

type StatFn = fn(&Stats) -> u64;

const STATS: [(&str, &str, &str, StatFn); 9] = [
    (
        "shared_map_space_bytes",
        "gauge",
        "Size of the map's shared memory zone.",
        |s| s.space,
    ),
    (
        "shared_map_free_space_bytes",
        "gauge",
        "Free pages in the map's zone, in bytes.",
        |s| s.free_space,
    ),
    ("shared_map_entries", "gauge", "Entries in the map.", |s| s.entries),
    (
        "shared_map_max_entries",
        "gauge",
        "The most entries the map holds.",
        |s| s.max_entries,
    ),
    (
        "shared_map_hits_total",
        "counter",
        "Lookups that found their key.",
        |s| s.hits,
    ),
    (
        "shared_map_misses_total",
        "counter",
        "Lookups that did not find their key.",
        |s| s.misses,
    ),
    (
        "shared_map_evictions_total",
        "counter",
        "Entries evicted to make room.",
        |s| s.evictions,
    ),
    (
        "shared_map_expirations_total",
        "counter",
        "Entries removed because they expired.",
        |s| s.expirations,
    ),
    (
        "shared_map_refused_total",
        "counter",
        "Writes refused for lack of room.",
        |s| s.refused,
    ),
];

type SyncFn = fn(&LogStats) -> f64;

/// The replication families, with a sample for each map with `sync`.
const SYNC_STATS: [(&str, &str, &str, SyncFn); 7] = [
    (
        "shared_map_sync_connected",
        "gauge",
        "1 while the map's host is connected to Redis.",
        |s| f64::from(u8::from(s.connected)),
    ),
    (
        "shared_map_sync_pending",
        "gauge",
        "Keys with changes not yet acknowledged by Redis.",
        |s| s.pending as f64,
    ),
    (
        "shared_map_sync_log_bytes",
        "gauge",
        "Bytes of the map's space its replication log takes.",
        |s| s.bytes as f64,
    ),
    (
        "shared_map_sync_sent_total",
        "counter",
        "Changes Redis acknowledged, one per key and batch.",
        |s| s.acked as f64,
    ),
    (
        "shared_map_sync_applied_total",
        "counter",
        "Changes read from Redis and applied to the map.",
        |s| s.applied as f64,
    ),
    (
        "shared_map_sync_dropped_total",
        "counter",
        "Changes not replicated: the replication log was full.",
        |s| s.dropped as f64,
    ),
    (
        "shared_map_sync_lag_seconds",
        "gauge",
        "Time from a change's arrival in Redis to its application here, last measured.",
        |s| s.lag_ms as f64 / 1000.0,
    ),
];

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
}

/// Lock statistics, in seconds as the format's conventions want.
const LOCK_STATS: [(&str, &str, &str, StatFn); 2] = [
    (
        "shared_map_lock_wait_seconds_total",
        "counter",
        "Time spent waiting for the map's lock.",
        |s| s.lock_wait,
    ),
    (
        "shared_map_lock_hold_max_seconds",
        "gauge",
        "The longest hold of the map's lock.",
        |s| s.lock_hold_max,
    ),
];

/// The statistics of every map, then the `shared_map_value` family's HELP
/// and TYPE lines: everything before the samples of entries.
pub fn prometheus_head(maps: &[(&str, &'static str, Stats, Option<LogStats>)]) -> String {
    let mut out = String::new();
    family(&mut out, "shared_map_info", "gauge", "The map and its type.");
    for (name, kind, _, _) in maps {
        out.push_str("shared_map_info{map=\"");
        label(&mut out, name);
        out.push_str("\",type=\"");
        label(&mut out, kind);
        out.push_str("\"} 1\n");
    }
    let sample = |out: &mut String, metric: &str, map: &str, value: &dyn core::fmt::Display| {
        out.push_str(metric);
        out.push_str("{map=\"");
        label(out, map);
        out.push_str(&format!("\"}} {value}\n"));
    };
    for (metric, kind, help, get) in STATS {
        family(&mut out, metric, kind, help);
        for (name, _, stats, _) in maps {
            sample(&mut out, metric, name, &get(stats));
        }
    }
    family(
        &mut out,
        "shared_map_lock_waits_total",
        "counter",
        "Acquisitions of the map's lock that had to wait.",
    );
    for (name, _, stats, _) in maps {
        sample(&mut out, "shared_map_lock_waits_total", name, &stats.lock_waits);
    }
    for (metric, kind, help, get) in LOCK_STATS {
        family(&mut out, metric, kind, help);
        for (name, _, stats, _) in maps {
            let secs = clock::to_nanos(get(stats)) as f64 / 1e9;
            sample(&mut out, metric, name, &secs);
        }
    }
    if maps.iter().any(|m| m.3.is_some()) {
        for (metric, kind, help, get) in SYNC_STATS {
            family(&mut out, metric, kind, help);
            for (name, _, _, sync) in maps {
                if let Some(sync) = sync {
                    sample(&mut out, metric, name, &get(sync));
                }
            }
        }
    }
    family(&mut out, "shared_map_value", "gauge", "Numeric entries of the map.");
    out
}

/// One entry as a `shared_map_value` sample; strings have none.
pub fn prometheus_value(out: &mut String, map: &str, e: &Entry) {
    let v = match e.value {
        OwnedValue::Int(v) => v as i64,
        OwnedValue::Long(v) => v,
        OwnedValue::Str(_) => return,
    };
    out.push_str("shared_map_value{map=\"");
    label(out, map);
    out.push_str("\",");
    bytes_label(out, "key", &e.key);
    out.push_str(&format!("}} {v}\n"));
}
