//! The fuzz targets' checks, one function per target, so that `cargo fuzz run
//! NAME` (see `fuzz_targets/`) and the corpus tests (`tests/corpus.rs`, run by
//! `make test` without libFuzzer) check exactly the same things.
//!
//! Each function takes arbitrary bytes and panics when a property fails:
//! - [`spec`]: the map specification parser (`shared_map NAME SPEC`);
//! - [`query`]: the HTTP API's query decoding;
//! - [`state`]: the state file parser, and loading what it accepts;
//! - [`ops`]: random operation sequences on the engine, against a model;
//! - [`resp`]: the bounds on a Redis reply, against the decoder behind them.

#![deny(clippy::undocumented_unsafe_blocks)]

use std::collections::HashMap;

use shared_map_engine::heap::Heap;
use shared_map_engine::spec::{self, MapKind};
use shared_map_engine::state::{self, StateError};
use shared_map_engine::{Arena, Error, Lockless, Map, MapConfig, OwnedValue, Reader, Ttl, Value};
use shared_map_http_parse::query;
use shared_map_http_parse::resp::{Limits, Scanner};

/// Reads the fuzzer's bytes as a stream of small decisions; zeros once spent.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |v, _| v << 8 | self.u8() as u64)
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a.to_vec()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A heap of `space` bytes holding one empty map, and the map's root.
fn new_map(kind: MapKind, space: usize, entries: u64, evict: bool) -> (Heap, u64) {
    let config = MapConfig {
        kind,
        entries,
        timeout: 0,
        evict,
    };
    let heap = Heap::with_map(space, &config).expect("a map fits its own heap");
    let root = heap.root();
    (heap, root)
}

fn attach(heap: &mut Heap, root: u64) -> Map<'_, Heap> {
    // SAFETY: `root` came from `Map::create` on this heap; one thread.
    unsafe { Map::attach(heap, root) }.expect("attach")
}

/// The map specification parser: never panics; what it accepts is a map that
/// can be made.
pub fn spec(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(s) = spec::parse("m", &text) else {
        return;
    };
    assert!(s.space >= 8 * 4096, "{text:?}: space {} below 8 pages", s.space);
    if s.kind == MapKind::Tiny {
        assert!(s.space <= spec::TINYMAP_MAX_SPACE, "{text:?}: tinymap above 4g");
    }
    assert!(s.entries > 0, "{text:?}: no entries");
    let buckets = s.buckets();
    assert!(buckets.is_power_of_two(), "{text:?}: {buckets} buckets");
    assert!(buckets * 3 / 4 >= s.entries.min(buckets * 3 / 4), "{text:?}");
    let table = buckets.saturating_mul(s.kind.bucket_bytes() as u64);
    assert!(table <= s.space as u64 / 2, "{text:?}: a table of {table} bytes");
    // Small enough to make here: the map is created in a heap of that size.
    if (16 * 4096..=1 << 20).contains(&s.space) {
        let mut heap = Heap::new(s.space);
        let config = MapConfig::from(&s);
        let root = Map::create(&mut heap, &config).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        let mut m = attach(&mut heap, root);
        m.put(b"k", Value::Long(1), Ttl::Default, 0).unwrap();
        assert_eq!(m.verify(), Ok(1));
    }
}

/// Every argument name the API knows, in the order `http-parse/src/api.rs` lists them.
const ARGS: [&str; 9] = ["key", "ttl", "type", "nx", "incr", "init", "prefix", "limit", "format"];

/// The API's query decoding: never panics; accepted arguments are known,
/// unique and decoded; percent-encoding round-trips any bytes.
pub fn query(data: &[u8]) {
    let (allowed, q) = match data.split_first() {
        Some((&b, rest)) => (&ARGS[..1 + b as usize % ARGS.len()], rest),
        None => (&ARGS[..], data),
    };
    match query::parse(q, allowed) {
        Ok(args) => {
            for (i, a) in args.iter().enumerate() {
                assert!(allowed.iter().any(|n| n.as_bytes() == a.name), "{a:?} not allowed");
                assert!(args[..i].iter().all(|b| b.name != a.name), "{a:?} twice");
                if let Some(v) = &a.value {
                    let encoded = query::percent_encode(v);
                    assert_eq!(query::percent_decode(encoded.as_bytes()).as_ref(), Some(v));
                }
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    let encoded = query::percent_encode(q);
    assert!(encoded.bytes().all(|b| b.is_ascii_graphic()));
    assert_eq!(query::percent_decode(encoded.as_bytes()).as_deref(), Some(q));
    if !q.contains(&b'%') {
        assert_eq!(query::percent_decode(q).as_deref(), Some(q));
    }
}

/// The state file parser: never panics; a file it accepts loads without
/// breaking the map, every record is accounted for, and saving what loaded
/// gives a file it accepts again.
///
/// With the first byte odd, the rest gets a correct checksum appended, so the
/// fuzzer explores record parsing rather than the checksum.
pub fn state(data: &[u8]) {
    let file = match data.split_first() {
        Some((&mode, rest)) if mode & 1 == 1 => {
            let mut f = rest.to_vec();
            f.extend_from_slice(&crc32(rest).to_le_bytes());
            f
        }
        Some((_, rest)) => rest.to_vec(),
        None => Vec::new(),
    };
    let parsed = match state::parse(&file) {
        Ok(p) => p,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            if let StateError::BadRecord(n) = e {
                assert!(file.len() >= 36, "record {n} of a file shorter than a header");
            }
            return;
        }
    };
    let records = parsed.records().count() as u64;
    assert_eq!(records, parsed.count, "records listed vs counted");
    for kind in [MapKind::Tiny, MapKind::Hash] {
        let (mut heap, root) = new_map(kind, 256 * 1024, 512, true);
        let mut m = attach(&mut heap, root);
        let now = parsed.saved_at;
        let report = state::load(&mut m, &parsed, now);
        assert_eq!(
            report.loaded + report.duplicates + report.expired + report.dropped(),
            parsed.count,
            "{report:?}"
        );
        assert!(report.loaded <= m.len(), "{report:?} but {} entries", m.len());
        assert_eq!(m.verify(), Ok(m.len()));
        assert!(m.config().evict, "loading restores the map's evict setting");
        let saved = state::save(&mut m, now);
        let again = state::parse(&saved).expect("a saved file parses");
        assert_eq!(again.count, m.len());
    }
}

fn crc32(b: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in b {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { crc >> 1 ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// The model's add: what the engine's `add` must answer.
fn model_add(model: &mut HashMap<Vec<u8>, OwnedValue>, k: &[u8], d: i64, init: i64) -> Result<i64, Error> {
    let v = match model.get(k) {
        None => OwnedValue::Long(init.checked_add(d).ok_or(Error::Overflow)?),
        Some(OwnedValue::Long(v)) => OwnedValue::Long(v.checked_add(d).ok_or(Error::Overflow)?),
        Some(OwnedValue::Int(v)) => OwnedValue::Int(
            (*v as i64)
                .checked_add(d)
                .and_then(|v| i32::try_from(v).ok())
                .ok_or(Error::Overflow)?,
        ),
        Some(OwnedValue::Str(_)) => return Err(Error::TypeConflict),
    };
    let n = match v {
        OwnedValue::Long(n) => n,
        OwnedValue::Int(n) => n as i64,
        OwnedValue::Str(_) => unreachable!(),
    };
    model.insert(k.to_vec(), v);
    Ok(n)
}

/// Random operations on a small map (64 entries, 256 KiB, no eviction), each
/// checked against a `HashMap`: a write the map refuses for lack of room
/// (`NoRoom`, or a value that can never fit) must change nothing.
pub fn ops(data: &[u8]) {
    let mut b = Bytes(data);
    let kind = if b.u8() & 1 == 0 { MapKind::Tiny } else { MapKind::Hash };
    let (mut heap, root) = new_map(kind, 256 * 1024, 64, false);
    let (base, size) = (heap.base(), heap.size());
    let reader = Reader::new();
    let mut m = attach(&mut heap, root);
    let mut model: HashMap<Vec<u8>, OwnedValue> = HashMap::new();
    let mut n = 0;
    while !b.is_empty() && n < 2000 {
        n += 1;
        let op = b.u8();
        let key = match b.u8() {
            k @ 0..=199 => vec![k % 80],
            len => b.take(len as usize - 200),
        };
        let value = |b: &mut Bytes<'_>| match b.u8() % 8 {
            0 => OwnedValue::Int(b.u64() as i32),
            1 | 2 => OwnedValue::Long(b.u64() as i64),
            3 => OwnedValue::Long(b.u8() as i64 - 128),
            4 => OwnedValue::Str(vec![b'x'; 300 * 1024]),
            5 => OwnedValue::Str(vec![b'y'; b.u8() as usize * 64]),
            _ => {
                let len = b.u8() as usize;
                OwnedValue::Str(b.take(len))
            }
        };
        match op % 8 {
            0 | 1 => assert_eq!(m.get(&key, 0).map(|v| v.to_owned()), model.get(&key).cloned()),
            2 | 3 => {
                let v = value(&mut b);
                match m.put(&key, v.as_value(), Ttl::Never, 0) {
                    Ok(prev) => assert_eq!(prev, model.insert(key, v)),
                    Err(Error::NoRoom | Error::ValueTooLarge) => {}
                    Err(e) => panic!("put: {e}"),
                }
            }
            4 => {
                let v = value(&mut b);
                match m.put_if_absent(&key, v.as_value(), Ttl::Never, 0) {
                    Ok(()) => assert!(model.insert(key, v).is_none()),
                    Err(Error::Exists) => assert!(model.contains_key(&key)),
                    Err(Error::NoRoom | Error::ValueTooLarge) => {}
                    Err(e) => panic!("put_if_absent: {e}"),
                }
            }
            5 => assert_eq!(m.remove(&key, 0), model.remove(&key)),
            6 => {
                let (d, init) = (b.u8() as i64 - 128, if b.u8() & 1 == 0 { 0 } else { b.u64() as i64 });
                let mut next = model.clone();
                let expect = model_add(&mut next, &key, d, init);
                // Every other add tries the lock-free path first, as the
                // module does: it answers for a present number only.
                let lockless = match b.u8() & 1 {
                    // SAFETY: the heap's region outlives the handle, and `root`
                    // came from `Map::create` in it.
                    0 => unsafe { Lockless::open(base, size, root, &reader) }.and_then(|l| l.add(&key, d, 0)),
                    _ => None,
                };
                if lockless.is_some() {
                    assert!(
                        matches!(model.get(&key), Some(OwnedValue::Int(_) | OwnedValue::Long(_))),
                        "lock-free add answered for an absent key or a string"
                    );
                }
                match lockless.unwrap_or_else(|| m.add(&key, d, init, Ttl::Never, 0)) {
                    Err(Error::NoRoom) => assert!(!model.contains_key(&key)),
                    got => {
                        assert_eq!(got, expect);
                        model = next;
                    }
                }
            }
            _ => {
                if b.u8() < 8 {
                    m.clear();
                    model.clear();
                }
            }
        }
        assert_eq!(m.len(), model.len() as u64, "after op {n}");
        if n % 32 == 0 {
            assert_eq!(m.verify(), Ok(m.len()));
        }
    }
    let mut listed = HashMap::new();
    m.for_each(b"", 0, |k, v, _| {
        listed.insert(k.to_vec(), v.to_owned());
        true
    });
    assert_eq!(listed, model);
    assert_eq!(m.verify(), Ok(m.len()));
}

/// Arrays nested in a decoded reply, as the scanner counts them (an empty
/// array adds no level).
fn resp_depth(f: &redis_protocol::resp2::types::OwnedFrame) -> usize {
    use redis_protocol::resp2::types::OwnedFrame;
    match f {
        OwnedFrame::Array(items) if !items.is_empty() => 1 + items.iter().map(resp_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The bounds on a Redis reply (what a hostile server sends): the first byte
/// chooses the depth, the size and the pieces the rest arrives in. Never
/// panics; answers the same whole or in pieces; what it accepts, the decoder
/// takes at exactly that length and no deeper, or refuses.
pub fn resp(data: &[u8]) {
    let Some((&choice, input)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        depth: 1 + (choice & 7) as usize,
        bytes: 16 << (choice >> 6),
    };
    let step = 1 + ((choice >> 3) & 7) as usize;
    let whole = Scanner::default().scan(input, limits);
    let mut s = Scanner::default();
    let mut pieces = Ok(None);
    let mut end = 0;
    while end < input.len() {
        end = (end + step).min(input.len());
        if let Some(r) = s.scan(&input[..end], limits).transpose() {
            pieces = r.map(Some);
            break;
        }
    }
    assert_eq!(pieces, whole, "{input:?} in pieces of {step}");
    if let Ok(Some(len)) = whole {
        assert!(len <= limits.bytes && len <= input.len());
        match redis_protocol::resp2::decode::decode(&input[..len]) {
            Ok(Some((frame, used))) => {
                assert_eq!(used, len, "{input:?}");
                assert!(resp_depth(&frame) <= limits.depth, "{input:?}");
            }
            Ok(None) => panic!("{input:?}: the decoder wants more than the scanner's reply"),
            Err(_) => {}
        }
    }
}
