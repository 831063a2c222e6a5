//! Prefix and IP-range maps: what a lookup finds, what a write stores, and the
//! set of lengths that bounds a lookup's probes.

mod common;

use common::{map, KINDS};
use proptest::prelude::*;
use shared_map_engine::heap::Heap;
use shared_map_engine::{Error, Map, MapConfig, MapKind, MatchMode, Ttl, Value};

fn new_matching(kind: MapKind, mode: MatchMode) -> Heap {
    let mut heap = Heap::new(1 << 20);
    let config = MapConfig {
        kind,
        entries: 4096,
        timeout: 0,
        evict: false,
    };
    let root = Map::create_matching(&mut heap, &config, mode).expect("create map");
    heap.set_root(root);
    heap
}

fn found(m: &mut Map<'_, Heap>, key: &str) -> Option<(String, String)> {
    m.get_match(key.as_bytes(), 0).map(|(k, v)| {
        let v = match v {
            Value::Str(s) => String::from_utf8_lossy(s).into_owned(),
            Value::Int(i) => i.to_string(),
            Value::Long(l) => l.to_string(),
        };
        (String::from_utf8_lossy(k).into_owned(), v)
    })
}

fn put(m: &mut Map<'_, Heap>, key: &str, value: &str) -> Result<(), Error> {
    m.put(key.as_bytes(), Value::Str(value.as_bytes()), Ttl::Default, 0)
        .map(|_| ())
}

#[test]
fn prefix_lookup_finds_the_longest_stored_prefix() {
    for kind in KINDS {
        let mut heap = new_matching(kind, MatchMode::Prefix);
        let mut m = map(&mut heap);
        put(&mut m, "/", "root").unwrap();
        put(&mut m, "/api/", "api").unwrap();
        put(&mut m, "/api/v2/", "v2").unwrap();
        assert_eq!(found(&mut m, "/api/v2/users"), Some(("/api/v2/".into(), "v2".into())));
        assert_eq!(found(&mut m, "/api/v1/users"), Some(("/api/".into(), "api".into())));
        assert_eq!(found(&mut m, "/static/x"), Some(("/".into(), "root".into())));
        assert_eq!(found(&mut m, "nope"), None);
        assert_eq!(m.match_probes(b"/api/v2/users"), 3);
        // Removing a key removes its length from the probes.
        m.remove(b"/api/", 0).unwrap();
        assert_eq!(found(&mut m, "/api/v1/users"), Some(("/".into(), "root".into())));
        assert_eq!(m.match_probes(b"/api/v2/users"), 2);
        assert_eq!(m.write_key(&[b'a'; 256]), Err(Error::KeyTooLarge));
        m.clear();
        assert_eq!(m.match_probes(b"/api/v2/users"), 0);
        assert_eq!(found(&mut m, "/api/"), None);
    }
}

#[test]
fn ip_lookup_finds_the_most_specific_range_in_four_probes() {
    for kind in KINDS {
        let mut heap = new_matching(kind, MatchMode::Ip);
        let mut m = map(&mut heap);
        put(&mut m, "10.1.2.3/8", "eight").unwrap();
        put(&mut m, "10.1.0.0/16", "sixteen").unwrap();
        put(&mut m, "10.1.2.0/24", "twenty-four").unwrap();
        put(&mut m, "10.1.2.3", "host").unwrap();
        put(&mut m, "2001:db8::/32", "v6").unwrap();
        assert_eq!(found(&mut m, "10.1.2.3"), Some(("10.1.2.3".into(), "host".into())));
        assert_eq!(
            found(&mut m, "10.1.2.4"),
            Some(("10.1.2.0/24".into(), "twenty-four".into()))
        );
        assert_eq!(
            found(&mut m, "10.1.3.1"),
            Some(("10.1.0.0/16".into(), "sixteen".into()))
        );
        assert_eq!(found(&mut m, "10.2.0.1"), Some(("10.0.0.0/8".into(), "eight".into())));
        assert_eq!(
            found(&mut m, "::ffff:10.2.0.1"),
            Some(("10.0.0.0/8".into(), "eight".into()))
        );
        assert_eq!(found(&mut m, "11.0.0.1"), None);
        assert_eq!(
            found(&mut m, "2001:db8:1::1"),
            Some(("2001:db8::/32".into(), "v6".into()))
        );
        assert_eq!(found(&mut m, "2001:db9::1"), None);
        assert_eq!(found(&mut m, "not an address"), None);
        // IPv4 lookups probe only the four IPv4 lengths held, never IPv6 ones.
        assert_eq!(m.match_probes(b"10.2.0.1"), 4);
        assert_eq!(m.match_probes(b"2001:db8::1"), 1);
        // Writes store the normal form, refuse what is no address, and deletes
        // name the stored range exactly (in any spelling of it).
        assert_eq!(put(&mut m, "example.com", "x"), Err(Error::InvalidKey));
        assert_eq!(m.add(b"10.0.0.0/33", 1, 0, Ttl::Default, 0), Err(Error::InvalidKey));
        let mut keys = Vec::new();
        m.for_each(b"", 0, |k, _, _| {
            keys.push(String::from_utf8_lossy(k).into_owned());
            true
        });
        keys.sort();
        assert_eq!(
            keys,
            ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3", "2001:db8::/32"]
        );
        assert!(m.remove(b"10.9.9.9/8", 0).is_some());
        assert_eq!(found(&mut m, "10.2.0.1"), None);
        assert_eq!(m.match_probes(b"10.2.0.1"), 3);
    }
}

/// A prefix map holding keys of every length 1..=255, of which only `/`
/// prefixes the lookup key: without the probe filter, 255 keyed probes.
#[test]
fn a_prefix_lookup_over_255_lengths_skips_the_lengths_the_filter_rules_out() {
    for kind in KINDS {
        let mut heap = new_matching(kind, MatchMode::Prefix);
        let mut m = map(&mut heap);
        put(&mut m, "/", "root").unwrap();
        for n in 2..=255 {
            put(&mut m, &format!("/q{}", "b".repeat(n - 2)), &n.to_string()).unwrap();
        }
        let lookup = format!("/p/{}", "a".repeat(297));
        assert_eq!(m.match_probes(lookup.as_bytes()), 255);
        // A false positive costs one more probe; with 255 keys in 65536 cells
        // one is rare, and two would say the filter is not doing its work.
        assert!(m.match_keyed_probes(lookup.as_bytes()) <= 3, "{kind:?}");
        assert_eq!(found(&mut m, &lookup), Some(("/".into(), "root".into())));
        // Every stored key is found by a lookup of it and of longer keys.
        for n in 2..=255 {
            let key = format!("/q{}", "b".repeat(n - 2));
            assert_eq!(found(&mut m, &key), Some((key.clone(), n.to_string())));
            assert_eq!(found(&mut m, &format!("{key}c")), Some((key.clone(), n.to_string())));
        }
        // Removed keys leave the filter: their lookups find the next shorter key.
        for n in (2..=255).step_by(2) {
            m.remove(format!("/q{}", "b".repeat(n - 2)).as_bytes(), 0).unwrap();
        }
        for n in 2..=255 {
            let key = format!("/q{}", "b".repeat(n - 2));
            let expect = if n == 2 {
                ("/".to_string(), "root".to_string())
            } else if n % 2 == 0 {
                (format!("/q{}", "b".repeat(n - 3)), (n - 1).to_string())
            } else {
                (key.clone(), n.to_string())
            };
            assert_eq!(found(&mut m, &key), Some(expect));
        }
        assert!(m.verify().is_ok());
        m.clear();
        assert_eq!(m.match_keyed_probes(lookup.as_bytes()), 0);
        assert_eq!(found(&mut m, &lookup), None);
    }
}

/// An ip map holding IPv6 ranges of every length 0..=127, of which only
/// `::/0` holds the lookup address.
#[test]
fn an_ip_lookup_over_128_lengths_skips_the_lengths_the_filter_rules_out() {
    let addr: u128 = 0x2001_0db8_1234_5678_9abc_def0_1234_5678;
    let ranges: Vec<String> = (1..128u32)
        .map(|n| {
            let net = (addr ^ (1 << (128 - n))) >> (128 - n) << (128 - n);
            format!("{}/{n}", std::net::Ipv6Addr::from(net))
        })
        .collect();
    for kind in KINDS {
        let mut heap = new_matching(kind, MatchMode::Ip);
        let mut m = map(&mut heap);
        put(&mut m, "::/0", "all").unwrap();
        for r in &ranges {
            put(&mut m, r, r).unwrap();
        }
        let lookup = std::net::Ipv6Addr::from(addr).to_string();
        assert_eq!(m.match_probes(lookup.as_bytes()), 128);
        assert!(m.match_keyed_probes(lookup.as_bytes()) <= 3, "{kind:?}");
        assert_eq!(found(&mut m, &lookup), Some(("::/0".into(), "all".into())));
        // Each range is found by the addresses it holds.
        for (i, r) in ranges.iter().enumerate() {
            let n = i as u32 + 1;
            let inside = (addr ^ (1 << (128 - n))) | 1;
            let got = found(&mut m, &std::net::Ipv6Addr::from(inside).to_string());
            assert_eq!(got, Some((r.clone(), r.clone())), "/{n}");
        }
        // IPv4 lookups never pass through IPv6 lengths.
        assert_eq!(m.match_keyed_probes(b"10.0.0.1"), 0);
        assert!(m.verify().is_ok());
    }
}

#[test]
fn exact_maps_are_unchanged() {
    let mut heap = new_matching(MapKind::Tiny, MatchMode::Exact);
    let mut m = map(&mut heap);
    put(&mut m, "/api/", "api").unwrap();
    put(&mut m, "not an address", "x").unwrap();
    assert_eq!(found(&mut m, "/api/v1"), None);
    assert_eq!(found(&mut m, "/api/"), Some(("/api/".into(), "api".into())));
    assert_eq!(m.match_mode(), MatchMode::Exact);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever IPv4 ranges are stored and removed, a lookup finds the longest
    /// stored range holding the address, as a linear scan does.
    #[test]
    fn ip_lookup_agrees_with_a_scan(
        ops in proptest::collection::vec((any::<u32>(), 0u8..=32, any::<bool>()), 1..60),
        probes in proptest::collection::vec(any::<u32>(), 1..20),
    ) {
        let mut heap = new_matching(MapKind::Hash, MatchMode::Ip);
        let mut m = map(&mut heap);
        let mut model: Vec<(u32, u8)> = Vec::new();
        for (addr, len, insert) in ops {
            // Bias towards a few networks so that ranges nest.
            let addr = addr & 0x0a0f_0f0f;
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len as u32) };
            let net = (addr & mask, len);
            let key = format!("{}/{}", std::net::Ipv4Addr::from(addr), len);
            if insert {
                put(&mut m, &key, &format!("{}", len)).unwrap();
                if !model.contains(&net) { model.push(net); }
            } else {
                m.remove(key.as_bytes(), 0);
                model.retain(|n| *n != net);
            }
        }
        for p in probes {
            let p = p & 0x0a0f_0f0f;
            let expect = model.iter().filter(|(n, l)| {
                let mask = if *l == 0 { 0 } else { u32::MAX << (32 - *l as u32) };
                p & mask == *n
            }).map(|(_, l)| *l).max();
            let got = found(&mut m, &std::net::Ipv4Addr::from(p).to_string()).map(|(_, v)| v.parse::<u8>().unwrap());
            prop_assert_eq!(got, expect);
        }
        prop_assert!(m.verify().is_ok());
    }
}

/// A map whose probe filter is small for its keys (2048 cells, a 32nd of
/// the zone, for up to 400 keys counting in four cells each): most cells
/// shared, and a length or group that holds no candidate let through about
/// once in four.
fn new_crowded(mode: MatchMode) -> Heap {
    let mut heap = Heap::new(64 << 10);
    let config = MapConfig {
        kind: MapKind::Hash,
        entries: 1000,
        timeout: 0,
        evict: false,
    };
    let root = Map::create_matching(&mut heap, &config, mode).expect("create map");
    heap.set_root(root);
    heap
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever keys are stored and removed, a prefix lookup finds the longest
    /// stored prefix, as a linear scan does, whether the probe filter is
    /// roomy or crowded.
    #[test]
    fn prefix_lookup_agrees_with_a_scan(
        ops in proptest::collection::vec(("[ab]{0,12}", any::<bool>()), 1..400),
        probes in proptest::collection::vec("[ab]{0,16}", 1..40),
        crowded in any::<bool>(),
    ) {
        let mut heap = if crowded {
            new_crowded(MatchMode::Prefix)
        } else {
            new_matching(MapKind::Hash, MatchMode::Prefix)
        };
        let mut m = map(&mut heap);
        let mut model: std::collections::BTreeSet<String> = Default::default();
        for (key, insert) in ops {
            if insert {
                if put(&mut m, &key, &key).is_ok() {
                    model.insert(key);
                }
            } else {
                m.remove(key.as_bytes(), 0);
                model.remove(&key);
            }
        }
        for p in probes {
            let expect = model.iter().filter(|k| p.starts_with(k.as_str())).max_by_key(|k| k.len());
            let got = found(&mut m, &p).map(|(k, _)| k);
            prop_assert_eq!(got.as_ref(), expect);
        }
        for k in &model {
            let got = found(&mut m, k).map(|(k, _)| k);
            prop_assert_eq!(got.as_ref(), Some(k));
        }
        prop_assert!(m.verify().is_ok());
    }

    /// The same for IPv6 ranges of any length.
    #[test]
    fn ipv6_lookup_agrees_with_a_scan(
        ops in proptest::collection::vec((any::<u16>(), 0u8..=128, any::<bool>()), 1..300),
        probes in proptest::collection::vec(any::<u16>(), 1..30),
        crowded in any::<bool>(),
    ) {
        // Addresses that share their first 112 bits, so that ranges nest.
        let full = |low: u16| (0x2001_0db8u128 << 96) | low as u128;
        let mut heap = if crowded { new_crowded(MatchMode::Ip) } else { new_matching(MapKind::Hash, MatchMode::Ip) };
        let mut m = map(&mut heap);
        let mut model: Vec<(u128, u8)> = Vec::new();
        let mask = |l: u8| if l == 0 { 0 } else { u128::MAX << (128 - l as u32) };
        for (low, len, insert) in ops {
            let addr = full(low);
            let net = (addr & mask(len), len);
            let key = format!("{}/{}", std::net::Ipv6Addr::from(addr), len);
            if insert {
                if put(&mut m, &key, &len.to_string()).is_ok() && !model.contains(&net) {
                    model.push(net);
                }
            } else {
                m.remove(key.as_bytes(), 0);
                model.retain(|n| *n != net);
            }
        }
        for p in probes {
            let p = full(p);
            let expect = model.iter().filter(|(n, l)| p & mask(*l) == *n).map(|(_, l)| *l).max();
            let got = found(&mut m, &std::net::Ipv6Addr::from(p).to_string()).map(|(_, v)| v.parse::<u8>().unwrap());
            prop_assert_eq!(got, expect);
        }
        prop_assert!(m.verify().is_ok());
    }
}
