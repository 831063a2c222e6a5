//! The state file: round trips, expiry across a save and load, refusal of
//! truncated, corrupt and incompatible files, and loading into a smaller map
//! or a map of the other type.

mod common;

use std::collections::HashMap;

use common::{map, new_map, KINDS};
use proptest::prelude::*;
use shared_map_engine::state::{self, Encoder, StateError};
use shared_map_engine::{MapKind, OwnedValue, Ttl, Value};

fn contents(
    m: &mut shared_map_engine::Map<'_, shared_map_engine::heap::Heap>,
    now: u32,
) -> HashMap<Vec<u8>, (OwnedValue, u32)> {
    let mut all = HashMap::new();
    m.for_each(b"", now, |k, v, e| {
        all.insert(k.to_vec(), (v.to_owned(), e));
        true
    });
    all
}

fn sample(kind: MapKind) -> (shared_map_engine::heap::Heap, Vec<u8>) {
    let mut heap = new_map(kind, 1 << 20, 1000, 0, false);
    let mut m = map(&mut heap);
    m.put(b"int", Value::Int(-7), Ttl::Default, 100).unwrap();
    m.put(b"long", Value::Long(i64::MIN), Ttl::Secs(50), 100).unwrap();
    m.put(b"str", Value::Str(b"a\0b\xffc"), Ttl::Never, 100).unwrap();
    m.put(b"", Value::Str(b""), Ttl::Default, 100).unwrap();
    m.put(b"gone", Value::Long(1), Ttl::Secs(1), 100).unwrap();
    let file = state::save(&mut m, 105);
    (heap, file)
}

#[test]
fn a_saved_map_loads_whole_and_keeps_expiry_times() {
    for kind in KINDS {
        let (mut heap, file) = sample(kind);
        let parsed = state::parse(&file).expect("valid file");
        assert_eq!(parsed.kind, Some(kind));
        assert_eq!(parsed.saved_at, 105);
        assert_eq!(parsed.count, 4, "the expired entry is not saved");

        let mut fresh = new_map(kind, 1 << 20, 1000, 0, true);
        let mut m = map(&mut fresh);
        let report = state::load(&mut m, &parsed, 106);
        assert_eq!((report.loaded, report.expired, report.dropped()), (4, 0, 0));
        assert_eq!(contents(&mut m, 106), contents(&mut map(&mut heap), 106));
        assert_eq!(m.peek_with_expiry(b"long", 106).map(|v| v.1), Some(150));
        assert!(m.config().evict, "loading restores the evict setting");
    }
}

#[test]
fn entries_that_expired_meanwhile_are_dropped() {
    for kind in KINDS {
        let (_, file) = sample(kind);
        let parsed = state::parse(&file).unwrap();
        let mut fresh = new_map(kind, 1 << 20, 1000, 0, false);
        let mut m = map(&mut fresh);
        let report = state::load(&mut m, &parsed, 151);
        assert_eq!((report.loaded, report.expired), (3, 1));
        assert_eq!(m.get(b"long", 151), None);
    }
}

#[test]
fn a_smaller_map_or_the_other_type_loads_what_fits() {
    let mut heap = new_map(MapKind::Hash, 1 << 20, 1000, 0, false);
    let mut m = map(&mut heap);
    for i in 0..100u32 {
        m.put(&i.to_le_bytes(), Value::Long(i as i64), Ttl::Never, 0).unwrap();
    }
    let file = state::save(&mut m, 0);
    let parsed = state::parse(&file).unwrap();
    let mut small = new_map(MapKind::Tiny, 64 << 10, 30, 0, true);
    let mut s = map(&mut small);
    let report = state::load(&mut s, &parsed, 0);
    assert_eq!(report.loaded, 30);
    assert_eq!(report.no_room, 70, "loading never evicts");
    assert_eq!(s.stats().evictions, 0);
    assert_eq!(s.len(), 30);
}

#[test]
fn truncated_corrupt_and_foreign_files_are_refused() {
    let (_, file) = sample(MapKind::Tiny);
    assert_eq!(state::parse(&[]).err(), Some(StateError::Truncated));
    assert_eq!(state::parse(b"SHMSTATE").err(), Some(StateError::Truncated));
    assert_eq!(state::parse(b"{\"json\": true}\n").err(), Some(StateError::BadMagic));
    for len in 0..file.len() {
        assert!(state::parse(&file[..len]).is_err(), "cut at {len}");
    }
    let mut newer = file.clone();
    newer[8] = 2;
    assert_eq!(state::parse(&newer).err(), Some(StateError::Version(2)));
    for i in 12..file.len() {
        let mut bad = file.clone();
        bad[i] ^= 0x20;
        assert_eq!(state::parse(&bad).err(), Some(StateError::Checksum), "byte {i}");
    }
    let mut longer = file.clone();
    longer.insert(40, 0);
    assert!(state::parse(&longer).is_err());
}

#[test]
fn a_well_checksummed_file_with_a_bad_record_is_refused() {
    let mut enc = Encoder::new(MapKind::Tiny, 0);
    enc.push(b"k", Value::Long(1), 0);
    let mut file = enc.finish();
    // Claim two records where there is one, and fix the checksum up.
    file[16] = 2;
    let n = file.len() - 4;
    let crc = crc32fast::hash(&file[..n]);
    file[n..].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(state::parse(&file).err(), Some(StateError::BadRecord(1)));
}

fn value() -> impl Strategy<Value = OwnedValue> {
    prop_oneof![
        any::<i32>().prop_map(OwnedValue::Int),
        any::<i64>().prop_map(OwnedValue::Long),
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(OwnedValue::Str),
    ]
}

proptest! {
    #[test]
    fn any_map_round_trips(
        entries in proptest::collection::hash_map(
            proptest::collection::vec(any::<u8>(), 0..40),
            (value(), prop_oneof![Just(0u32), 1u32..1000]),
            0..200),
        tiny in any::<bool>(),
    ) {
        let kind = if tiny { MapKind::Tiny } else { MapKind::Hash };
        let mut heap = new_map(kind, 1 << 20, 1000, 0, false);
        let mut m = map(&mut heap);
        for (k, (v, ttl)) in &entries {
            let ttl = if *ttl == 0 { Ttl::Never } else { Ttl::Secs(*ttl) };
            m.put(k, v.as_value(), ttl, 1000).unwrap();
        }
        let file = state::save(&mut m, 1000);
        let parsed = state::parse(&file).unwrap();
        prop_assert_eq!(parsed.count, entries.len() as u64);
        let mut other = new_map(MapKind::Hash, 1 << 20, 1000, 0, false);
        let mut o = map(&mut other);
        let report = state::load(&mut o, &parsed, 1000);
        prop_assert_eq!(report.loaded, entries.len() as u64);
        prop_assert_eq!(contents(&mut o, 1000), contents(&mut m, 1000));
    }

    #[test]
    fn any_damage_is_detected(at in any::<prop::sample::Index>(), flip in 1u8..=255, cut in any::<bool>()) {
        let (_, file) = sample(MapKind::Hash);
        let i = at.index(file.len());
        let damaged = if cut { file[..i].to_vec() } else {
            let mut d = file.clone();
            d[i] ^= flip;
            d
        };
        prop_assert!(state::parse(&damaged).is_err());
    }
}
