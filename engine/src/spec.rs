//! Parsing of a map specification: `tinymap?space=1m&entries=8096&timeout=1h&evict&state=/path&sync`.
//!
//! Pure functions: the `shared_map` directive handler only reports the error.

use core::fmt;

use crate::matching::MatchMode;

/// The smallest zone nginx's slab allocator can usefully manage: 8 pages.
pub const MIN_SPACE: usize = 8 * 4096;

/// The largest zone a tinymap can address with 32-bit offsets.
pub const TINYMAP_MAX_SPACE: usize = 4 << 30;

/// The most buckets per entry: the load factor stays at or below 0.75.
const LOAD_NUM: u64 = 3;
const LOAD_DEN: u64 = 4;

/// Average bytes of space per entry when `entries` is not given.
pub const DEFAULT_BYTES_PER_ENTRY: usize = 128;

/// The map implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum MapKind {
    /// 32-bit offsets, 32-byte entries, keys up to 16 MiB - 1, space up to 4g.
    Tiny = 1,
    /// 64-bit offsets, entries with the key inline.
    Hash = 2,
}

impl MapKind {
    pub fn name(self) -> &'static str {
        match self {
            MapKind::Tiny => "tinymap",
            MapKind::Hash => "hashmap",
        }
    }

    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(MapKind::Tiny),
            2 => Some(MapKind::Hash),
            _ => None,
        }
    }

    /// Bytes one bucket takes in the bucket table.
    pub fn bucket_bytes(self) -> usize {
        match self {
            MapKind::Tiny => 4,
            MapKind::Hash => 8,
        }
    }
}

/// A parsed, validated map specification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub kind: MapKind,
    /// Zone size in bytes.
    pub space: usize,
    /// The most entries the map holds.
    pub entries: u64,
    /// Default time to live in seconds; 0 means never.
    pub timeout: u32,
    /// Evict approximately least recently used entries when full.
    pub evict: bool,
    /// The file the map is saved to and loaded from.
    pub state: Option<String>,
    /// How lookups match: `match=exact|prefix|ip`.
    pub matching: MatchMode,
    /// Replicated through the Redis server `shared_map_redis` names.
    pub sync: bool,
    /// Seconds the periodic sweep leaves an expired entry for stale reads
    /// (`stale=time`); 0, the default, sweeps it at once.
    pub stale: u32,
}

impl Spec {
    /// The bucket count: the smallest power of two keeping the load factor at or
    /// below 0.75 when the map holds `entries`.
    pub fn buckets(&self) -> u64 {
        buckets_for(self.entries)
    }
}

/// The bucket count for `entries` entries.
pub fn buckets_for(entries: u64) -> u64 {
    (entries.max(1) * LOAD_DEN).div_ceil(LOAD_NUM).next_power_of_two()
}

/// Why a specification was refused; `Display` gives nginx's wording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecError {
    UnknownType(String),
    InvalidParameter(String),
    DuplicateParameter(String),
    InvalidSize(String),
    InvalidEntries(String),
    InvalidTimeout(String),
    MissingSpace(String),
    TooSmall(String),
    TooLarge { name: String, space: String },
    TooManyEntries { name: String, entries: u64 },
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::UnknownType(t) => write!(f, "unknown map type \"{t}\""),
            SpecError::InvalidParameter(p) => write!(f, "invalid parameter \"{p}\""),
            SpecError::DuplicateParameter(p) => write!(f, "duplicate parameter \"{p}\""),
            SpecError::InvalidSize(v) => write!(f, "invalid zone size \"{v}\""),
            SpecError::InvalidEntries(v) => write!(f, "invalid number of entries \"{v}\""),
            SpecError::InvalidTimeout(v) => write!(f, "invalid timeout \"{v}\""),
            SpecError::MissingSpace(n) => {
                write!(f, "shared_map \"{n}\" must have \"space\" parameter")
            }
            SpecError::TooSmall(n) => write!(f, "zone \"{n}\" is too small"),
            SpecError::TooLarge { name, space } => write!(
                f,
                "zone \"{name}\" is too large: space \"{space}\" exceeds the 4g a tinymap can address"
            ),
            SpecError::TooManyEntries { name, entries } => {
                write!(f, "zone \"{name}\" is too small for {entries} entries")
            }
        }
    }
}

impl std::error::Error for SpecError {}

/// Parses the second argument of `shared_map NAME SPEC` for the map `name`.
pub fn parse(name: &str, spec: &str) -> Result<Spec, SpecError> {
    let (kind, params) = match spec.split_once('?') {
        Some((k, p)) => (k, Some(p)),
        None => (spec, None),
    };
    let kind = match kind {
        "tinymap" => MapKind::Tiny,
        "hashmap" => MapKind::Hash,
        other => return Err(SpecError::UnknownType(other.to_owned())),
    };

    let mut space = None;
    let mut entries = None;
    let mut timeout = None;
    let mut evict = false;
    let mut state = None;
    let mut matching = None;
    let mut sync = false;
    let mut stale = None;

    for param in params.into_iter().flat_map(|p| p.split('&')) {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (param, None),
        };
        let invalid = || SpecError::InvalidParameter(param.to_owned());
        let duplicate = || SpecError::DuplicateParameter(key.to_owned());
        match (key, value) {
            ("space", Some(v)) => {
                let size = parse_size(v).ok_or_else(|| SpecError::InvalidSize(v.to_owned()))?;
                if space.replace((size, v)).is_some() {
                    return Err(duplicate());
                }
            }
            ("entries", Some(v)) => {
                let n = v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0 && *n <= u32::MAX as u64)
                    .ok_or_else(|| SpecError::InvalidEntries(v.to_owned()))?;
                if entries.replace(n).is_some() {
                    return Err(duplicate());
                }
            }
            ("timeout", Some(v)) => {
                let secs = parse_time_secs(v).ok_or_else(|| SpecError::InvalidTimeout(v.to_owned()))?;
                if timeout.replace(secs).is_some() {
                    return Err(duplicate());
                }
            }
            ("evict", None) => {
                if evict {
                    return Err(duplicate());
                }
                evict = true;
            }
            ("sync", None) => {
                if sync {
                    return Err(duplicate());
                }
                sync = true;
            }
            ("state", Some(v)) if !v.is_empty() => {
                if state.replace(v.to_owned()).is_some() {
                    return Err(duplicate());
                }
            }
            ("stale", Some(v)) => {
                let secs = parse_time_secs(v).ok_or_else(invalid)?;
                if stale.replace(secs).is_some() {
                    return Err(duplicate());
                }
            }
            ("match", Some(v)) => {
                let mode = MatchMode::from_name(v).ok_or_else(invalid)?;
                if matching.replace(mode).is_some() {
                    return Err(duplicate());
                }
            }
            _ => return Err(invalid()),
        }
    }

    let (space, space_text) = space.ok_or_else(|| SpecError::MissingSpace(name.to_owned()))?;
    if space < MIN_SPACE {
        return Err(SpecError::TooSmall(name.to_owned()));
    }
    if kind == MapKind::Tiny && space > TINYMAP_MAX_SPACE {
        return Err(SpecError::TooLarge {
            name: name.to_owned(),
            space: space_text.to_owned(),
        });
    }
    let entries = entries.unwrap_or((space / DEFAULT_BYTES_PER_ENTRY).max(1) as u64);

    // The bucket table must leave at least half of the zone for entries.
    let table = buckets_for(entries).saturating_mul(kind.bucket_bytes() as u64);
    if table > (space / 2) as u64 {
        return Err(SpecError::TooManyEntries {
            name: name.to_owned(),
            entries,
        });
    }

    Ok(Spec {
        kind,
        space,
        entries,
        timeout: timeout.unwrap_or(0),
        evict,
        state,
        matching: matching.unwrap_or_default(),
        sync,
        stale: stale.unwrap_or(0),
    })
}

/// nginx size syntax: a number with an optional `k`, `m` or `g` suffix.
pub fn parse_size(v: &str) -> Option<usize> {
    let (digits, scale) = match v.as_bytes().last()? {
        b'k' | b'K' => (&v[..v.len() - 1], 1usize << 10),
        b'm' | b'M' => (&v[..v.len() - 1], 1 << 20),
        b'g' | b'G' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<usize>().ok()?.checked_mul(scale)
}

/// nginx time syntax (`90`, `30s`, `1h30m`, `500ms`), rounded up to whole seconds.
pub fn parse_time_secs(v: &str) -> Option<u32> {
    let ms = parse_time_ms(v)?;
    u32::try_from(ms.div_ceil(1000)).ok()
}

/// nginx time syntax in milliseconds; a bare number is seconds.
pub fn parse_time_ms(v: &str) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let bytes = v.as_bytes();
    let mut total: u64 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return None;
        }
        let n: u64 = v[start..i].parse().ok()?;
        let unit_ms: u64 = match &bytes[i..] {
            [] => 1000,
            [b'm', b's', ..] => {
                i += 2;
                1
            }
            [b's', ..] => {
                i += 1;
                1000
            }
            [b'm', ..] => {
                i += 1;
                60_000
            }
            [b'h', ..] => {
                i += 1;
                3_600_000
            }
            [b'd', ..] => {
                i += 1;
                86_400_000
            }
            [b'w', ..] => {
                i += 1;
                604_800_000
            }
            [b'M', ..] => {
                i += 1;
                2_592_000_000
            }
            [b'y', ..] => {
                i += 1;
                31_536_000_000
            }
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit_ms)?)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(spec: &str) -> String {
        parse("m", spec).unwrap_err().to_string()
    }

    #[test]
    fn accepts_the_documented_example() {
        let s = parse("uri_access_counters", "tinymap?space=1m&entries=8096").unwrap();
        assert_eq!(s.kind, MapKind::Tiny);
        assert_eq!(s.space, 1 << 20);
        assert_eq!(s.entries, 8096);
        assert_eq!(s.buckets(), 16384);
        assert_eq!((s.timeout, s.evict, s.state, s.sync), (0, false, None, false));
    }

    #[test]
    fn accepts_every_parameter() {
        let s = parse(
            "m",
            "hashmap?space=64k&timeout=1h30m&evict&state=/var/lib/m.state&sync&stale=1m",
        )
        .unwrap();
        assert_eq!(s.kind, MapKind::Hash);
        assert_eq!(s.space, 65536);
        assert_eq!(s.entries, 512);
        assert_eq!(s.timeout, 5400);
        assert!(s.evict);
        assert_eq!(s.state.as_deref(), Some("/var/lib/m.state"));
        assert!(s.sync);
        assert_eq!(s.stale, 60);
        assert_eq!(parse("m", "hashmap?space=64k").unwrap().stale, 0);
    }

    #[test]
    fn buckets_keep_load_factor_at_most_three_quarters() {
        for entries in [1u64, 2, 3, 4, 5, 6, 7, 100, 768, 769, 8096, 1_000_000] {
            let b = buckets_for(entries);
            assert!(b.is_power_of_two());
            assert!(entries * 4 <= b * 3, "{entries} -> {b}");
            assert!(b == 1 || entries * 4 > (b / 2) * 3, "{entries} -> {b} not minimal");
        }
    }

    #[test]
    fn refuses_bad_specs_in_nginx_wording() {
        assert_eq!(err("treemap?space=1m"), "unknown map type \"treemap\"");
        assert_eq!(err("tinymap?space=1m&foo=1"), "invalid parameter \"foo=1\"");
        assert_eq!(err("tinymap?space=abc"), "invalid zone size \"abc\"");
        assert_eq!(err("tinymap?space="), "invalid zone size \"\"");
        assert_eq!(err("tinymap?space=16k"), "zone \"m\" is too small");
        assert_eq!(err("tinymap"), "shared_map \"m\" must have \"space\" parameter");
        assert_eq!(
            err("tinymap?entries=10"),
            "shared_map \"m\" must have \"space\" parameter"
        );
        assert_eq!(err("tinymap?space=1m&entries=0"), "invalid number of entries \"0\"");
        assert_eq!(err("tinymap?space=1m&entries=x"), "invalid number of entries \"x\"");
        assert_eq!(err("tinymap?space=1m&timeout=1x"), "invalid timeout \"1x\"");
        assert_eq!(err("tinymap?space=1m&space=2m"), "duplicate parameter \"space\"");
        assert_eq!(err("tinymap?space=1m&evict=1"), "invalid parameter \"evict=1\"");
        assert_eq!(err("tinymap?space=1m&state="), "invalid parameter \"state=\"");
        assert_eq!(err("tinymap?space=1m&sync=on"), "invalid parameter \"sync=on\"");
        assert_eq!(err("tinymap?space=1m&sync&sync"), "duplicate parameter \"sync\"");
        assert_eq!(err("tinymap?space=1m&stale=soon"), "invalid parameter \"stale=soon\"");
        assert_eq!(err("tinymap?space=1m&stale"), "invalid parameter \"stale\"");
        assert_eq!(err("tinymap?space=1m&"), "invalid parameter \"\"");
        assert!(err("tinymap?space=5g").contains("too large"));
        assert_eq!(
            err("tinymap?space=64k&entries=100000"),
            "zone \"m\" is too small for 100000 entries"
        );
        assert!(parse("m", "hashmap?space=5g").is_ok());
        assert_eq!(err("hashmap?space=1m&match=regex"), "invalid parameter \"match=regex\"");
        assert_eq!(
            err("hashmap?space=1m&match=ip&match=ip"),
            "duplicate parameter \"match\""
        );
    }

    #[test]
    fn parses_match_modes() {
        assert_eq!(parse("m", "hashmap?space=1m").unwrap().matching, MatchMode::Exact);
        assert_eq!(
            parse("m", "hashmap?space=1m&match=exact").unwrap().matching,
            MatchMode::Exact
        );
        assert_eq!(
            parse("m", "tinymap?space=1m&match=prefix").unwrap().matching,
            MatchMode::Prefix
        );
        assert_eq!(parse("m", "hashmap?match=ip&space=1m").unwrap().matching, MatchMode::Ip);
    }

    #[test]
    fn parses_nginx_sizes_and_times() {
        assert_eq!(parse_size("32k"), Some(32768));
        assert_eq!(parse_size("1M"), Some(1 << 20));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("k"), None);
        assert_eq!(parse_size("-1k"), None);
        assert_eq!(parse_time_secs("90"), Some(90));
        assert_eq!(parse_time_secs("30s"), Some(30));
        assert_eq!(parse_time_secs("2m"), Some(120));
        assert_eq!(parse_time_secs("1d"), Some(86400));
        assert_eq!(parse_time_secs("1500ms"), Some(2));
        assert_eq!(parse_time_secs("0"), Some(0));
        assert_eq!(parse_time_secs("s"), None);
        assert_eq!(parse_time_secs(""), None);
    }
}
