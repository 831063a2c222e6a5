//! The state file format: a map's live entries written to disk and read back.
//!
//! All integers are little-endian. A file is a header, `count` records and a
//! CRC-32 (IEEE, as `crc32fast` computes it) of everything before it:
//!
//! ```text
//! header   magic "SHMSTATE" (8) | version u32 = 1 | kind u32 (1 tinymap, 2 hashmap)
//!          | count u64 | saved_at u32 (unix seconds) | reserved u32 = 0
//! record   key_len u32 | type u8 (0 int, 1 long, 2 string) | expire u32 (unix
//!          seconds, 0 = never) | value_len u64 (4 for int, 8 for long) | key | value
//! trailer  crc32 u32
//! ```
//!
//! [`parse`] checks the whole file (checksum, then every record) before anything
//! is loaded, so a truncated or corrupt file is refused as a whole and never half
//! loaded. Records do not depend on the map type, so a file saved by a tinymap
//! loads into a hashmap and back, within the limits of the map it loads into.

use core::fmt;

use crate::arena::Arena;
use crate::error::Error;
use crate::map::{Map, MapConfig};
use crate::matching::MatchMode;
use crate::spec::MapKind;
use crate::value::{Ttl, Value};

pub const MAGIC: [u8; 8] = *b"SHMSTATE";
pub const VERSION: u32 = 1;

const HEADER: usize = 32;
const RECORD_HEADER: usize = 4 + 1 + 4 + 8;
const TRAILER: usize = 4;

/// Why a state file was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateError {
    /// Shorter than a header and a checksum.
    Truncated,
    /// Not a state file at all.
    BadMagic,
    /// Written by an incompatible version of the format.
    Version(u32),
    /// Corrupt or truncated: the checksum does not match the contents.
    Checksum,
    /// The checksum matches but a record does not parse (a bug, or a forgery).
    BadRecord(u64),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Truncated => f.write_str("file is truncated"),
            StateError::BadMagic => f.write_str("not a shared map state file"),
            StateError::Version(v) => write!(f, "unsupported format version {v}"),
            StateError::Checksum => f.write_str("checksum mismatch"),
            StateError::BadRecord(n) => write!(f, "record {n} is malformed"),
        }
    }
}

impl std::error::Error for StateError {}

/// One entry as stored in a state file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub key: &'a [u8],
    pub value: Value<'a>,
    /// Unix seconds; 0 means never.
    pub expire: u32,
}

/// Builds a state file in memory.
pub struct Encoder {
    buf: Vec<u8>,
    count: u64,
}

impl Encoder {
    pub fn new(kind: MapKind, saved_at: u32) -> Self {
        let mut buf = Vec::with_capacity(4096);
        buf.extend_from_slice(&MAGIC);
        buf.extend_from_slice(&VERSION.to_le_bytes());
        buf.extend_from_slice(&(kind as u32).to_le_bytes());
        buf.extend_from_slice(&0u64.to_le_bytes());
        buf.extend_from_slice(&saved_at.to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        debug_assert_eq!(buf.len(), HEADER);
        Encoder { buf, count: 0 }
    }

    /// Appends one record. Keys longer than 4 GiB - 1 cannot be stored (no map
    /// accepts them either) and are skipped; returns whether it was written.
    pub fn push(&mut self, key: &[u8], value: Value<'_>, expire: u32) -> bool {
        let Ok(key_len) = u32::try_from(key.len()) else {
            return false;
        };
        let (vtype, bytes): (u8, &[u8]);
        let inline;
        match value {
            Value::Int(i) => {
                inline = (i as i64).to_le_bytes();
                (vtype, bytes) = (0, &inline[..4]);
            }
            Value::Long(l) => {
                inline = l.to_le_bytes();
                (vtype, bytes) = (1, &inline[..]);
            }
            Value::Str(s) => (vtype, bytes) = (2, s),
        }
        self.buf.reserve(RECORD_HEADER + key.len() + bytes.len());
        self.buf.extend_from_slice(&key_len.to_le_bytes());
        self.buf.push(vtype);
        self.buf.extend_from_slice(&expire.to_le_bytes());
        self.buf.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(bytes);
        self.count += 1;
        true
    }

    /// The number of records pushed so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The complete file: the count filled in and the checksum appended.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf[16..24].copy_from_slice(&self.count.to_le_bytes());
        let crc = crc32fast::hash(&self.buf);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.buf
    }
}

/// A parsed, fully checked state file.
#[derive(Clone, Copy, Debug)]
pub struct State<'a> {
    /// The type of the map that saved it.
    pub kind: Option<MapKind>,
    pub saved_at: u32,
    pub count: u64,
    body: &'a [u8],
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Reads the record at the start of `b`: the record and its length, or `None`
/// when it does not parse.
fn record(b: &[u8]) -> Option<(Record<'_>, usize)> {
    if b.len() < RECORD_HEADER {
        return None;
    }
    let key_len = u32_at(b, 0) as usize;
    let vtype = b[4];
    let expire = u32_at(b, 5);
    let value_len = usize::try_from(u64_at(b, 9)).ok()?;
    let end = RECORD_HEADER.checked_add(key_len)?.checked_add(value_len)?;
    if end > b.len() {
        return None;
    }
    let key = &b[RECORD_HEADER..RECORD_HEADER + key_len];
    let v = &b[RECORD_HEADER + key_len..end];
    let value = match (vtype, value_len) {
        (0, 4) => Value::Int(u32_at(v, 0) as i32),
        (1, 8) => Value::Long(u64_at(v, 0) as i64),
        (2, _) => Value::Str(v),
        _ => return None,
    };
    Some((Record { key, value, expire }, end))
}

/// Checks a whole state file: header, checksum and every record.
pub fn parse(file: &[u8]) -> Result<State<'_>, StateError> {
    if file.len() >= MAGIC.len() && file[..MAGIC.len()] != MAGIC {
        return Err(StateError::BadMagic);
    }
    if file.len() < HEADER + TRAILER {
        return Err(StateError::Truncated);
    }
    let version = u32_at(file, 8);
    if version != VERSION {
        return Err(StateError::Version(version));
    }
    let (content, trailer) = file.split_at(file.len() - TRAILER);
    if crc32fast::hash(content) != u32_at(trailer, 0) {
        return Err(StateError::Checksum);
    }
    let count = u64_at(content, 16);
    let body = &content[HEADER..];
    let mut rest = body;
    for n in 0..count {
        let (_, len) = record(rest).ok_or(StateError::BadRecord(n))?;
        rest = &rest[len..];
    }
    if !rest.is_empty() {
        return Err(StateError::BadRecord(count));
    }
    Ok(State {
        kind: MapKind::from_u32(u32_at(content, 12)),
        saved_at: u32_at(content, 24),
        count,
        body,
    })
}

impl<'a> State<'a> {
    /// The records, in file order.
    pub fn records(&self) -> impl Iterator<Item = Record<'a>> + 'a {
        let mut rest = self.body;
        let mut left = self.count;
        core::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            // `parse` checked every record.
            let (r, len) = record(rest)?;
            rest = &rest[len..];
            left -= 1;
            Some(r)
        })
    }
}

/// Serialises the map's live entries. The caller holds the map's lock, so the
/// file is a consistent snapshot.
pub fn save<A: Arena>(map: &mut Map<'_, A>, now: u32) -> Vec<u8> {
    let mut enc = Encoder::new(map.config().kind, now);
    map.for_each(b"", now, |key, value, expire| {
        enc.push(key, value, expire);
        true
    });
    enc.finish()
}

/// What [`load`] did with the records of a state file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Entries stored: distinct keys, however often a key is repeated.
    pub loaded: u64,
    /// Records whose key an earlier record of the file already stored; the
    /// later record replaced it.
    pub duplicates: u64,
    /// Entries whose time to live ran out before they were loaded.
    pub expired: u64,
    /// Entries the map had no room for (entries limit or space); never evicts.
    pub no_room: u64,
    /// Entries whose key or value is larger than this map type allows.
    pub too_large: u64,
}

impl LoadReport {
    /// Entries that were valid but not loaded.
    pub fn dropped(&self) -> u64 {
        self.no_room + self.too_large
    }
}

/// Stores the records of `state` in `map` (normally empty), keeping each entry's
/// absolute expiry time and dropping those already expired at `now`. Loading
/// never evicts, whatever the map's `evict` setting: what does not fit is
/// counted in the report.
pub fn load<A: Arena>(map: &mut Map<'_, A>, state: &State<'_>, now: u32) -> LoadReport {
    let config = map.config();
    map.reconfigure(config.timeout, false);
    // What the file holds is this host's past, not a change to replicate.
    map.set_replicate(false);
    let mut report = LoadReport::default();
    for r in state.records() {
        let ttl = match r.expire {
            0 => Ttl::Never,
            e if e < now => {
                report.expired += 1;
                continue;
            }
            e => Ttl::Secs(e - now),
        };
        match map.put(r.key, r.value, ttl, now) {
            Ok(None) => report.loaded += 1,
            Ok(Some(_)) => report.duplicates += 1,
            Err(Error::KeyTooLarge | Error::ValueTooLarge) => report.too_large += 1,
            Err(_) => report.no_room += 1,
        }
    }
    map.reconfigure(config.timeout, config.evict);
    map.set_replicate(true);
    report
}

/// A map held in process memory while its arena is reset: what is needed to
/// make it again, as it was, in the emptied arena. After a process died inside
/// the allocator (`Recovery::rebuild`), the allocator's own lists may be torn,
/// but the map's chains are whole (an entry is linked by one store, and
/// unlinked before it is freed): they are read, not freed, the arena is reset,
/// and the map is made again with the same configuration, hash key and entries.
pub struct Snapshot {
    config: MapConfig,
    mode: MatchMode,
    hash_key: [u64; 2],
    now: u32,
    /// The live entries, as a state file.
    entries: Vec<u8>,
}

impl Snapshot {
    /// Reads the map's live entries and identity. Reads only: nothing is
    /// allocated or freed in the arena.
    pub fn take<A: Arena>(map: &mut Map<'_, A>, now: u32) -> Snapshot {
        Snapshot {
            config: map.config(),
            mode: map.match_mode(),
            hash_key: map.hash_secret(),
            now,
            entries: save(map, now),
        }
    }

    /// Makes the map again in `arena`, which was just reset: the allocations
    /// happen in the order of the map's creation, so the map's header lands
    /// where it was (the caller checks the returned offset). `sync_host` gives
    /// the map a new, empty replication log under that name. Returns the
    /// header's offset and what was loaded.
    pub fn restore<A: Arena>(&self, arena: &mut A, sync_host: Option<u64>) -> Result<(u64, LoadReport), Error> {
        let root = Map::create_matching_keyed(arena, &self.config, self.mode, self.hash_key)?;
        // SAFETY: `root` was just made in this arena, whose lock the caller holds.
        let mut map = unsafe { Map::attach(arena, root) }.ok_or(Error::NotAMap)?;
        if let Some(host) = sync_host {
            map.enable_sync(host)?;
        }
        let state = parse(&self.entries)?;
        Ok((root, load(&mut map, &state, self.now)))
    }
}
