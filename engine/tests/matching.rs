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
