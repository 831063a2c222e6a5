//! Faults the engine must survive: a write that can never fit is refused before
//! anything is evicted (issue 11, finding 1); offsets in a corrupted zone are
//! never followed outside it (finding 10); a state file repeating a key counts
//! it once (finding 11).

mod common;

use common::{map, new_map, KINDS};
use shared_map_engine::heap::Heap;
use shared_map_engine::state::{self, Encoder};
use shared_map_engine::{Arena, Error, MapKind, Ttl, Value};

#[test]
fn a_value_that_can_never_fit_evicts_nothing() {
    for kind in KINDS {
        let mut heap = new_map(kind, 1 << 20, 8192, 0, true);
        let mut m = map(&mut heap);
        for i in 0..300u32 {
            m.put(&i.to_le_bytes(), Value::Str(&[b'v'; 100]), Ttl::Default, 0)
                .unwrap();
        }
        for len in [(1 << 20) - 1, (1 << 20) - 64 * 1024, 1 << 20, 1 << 21] {
            let big = vec![b'x'; len];
            assert_eq!(
                m.put(b"big", Value::Str(&big), Ttl::Default, 0),
                Err(Error::ValueTooLarge),
                "{kind:?}: {len} bytes"
            );
            assert_eq!(m.len(), 300, "{kind:?}: {len} bytes evicted entries");
            assert_eq!(m.stats().evictions, 0, "{kind:?}");
        }
        let key = vec![b'k'; (1 << 20) - 100];
        assert_eq!(m.add(&key, 1, 0, Ttl::Default, 0), Err(Error::KeyTooLarge), "{kind:?}");
        assert_eq!(
            m.put(&key, Value::Long(1), Ttl::Default, 0),
            Err(Error::KeyTooLarge),
            "{kind:?}"
        );
        assert_eq!(m.len(), 300, "{kind:?}");
    }
}

#[test]
fn the_largest_value_that_can_fit_is_still_admitted_by_evicting() {
    for kind in KINDS {
        let mut heap = new_map(kind, 1 << 20, 1024, 0, true);
        let mut m = map(&mut heap);
        for i in 0..300u32 {
            m.put(&i.to_le_bytes(), Value::Str(&[b'v'; 100]), Ttl::Default, 0)
                .unwrap();
        }
        // Half the space: never refused as too large, admitted after evicting.
        let big = vec![b'x'; 512 * 1024];
        m.put(b"big", Value::Str(&big), Ttl::Default, 0).unwrap();
        assert_eq!(m.peek(b"big", 0), Some(Value::Str(&big)), "{kind:?}");
    }
}

/// Offsets of the 4-byte-aligned positions in the heap holding `needle`.
fn find(heap: &Heap, needle: &[u8]) -> Vec<usize> {
    // SAFETY: the heap's region is `size` bytes, alive and not written meanwhile.
    let region = unsafe { std::slice::from_raw_parts(heap.base(), heap.size()) };
    (0..region.len() - needle.len())
        .step_by(4)
        .filter(|&i| &region[i..i + needle.len()] == needle)
        .collect()
}

fn poke(heap: &mut Heap, at: usize, bytes: &[u8]) {
    assert!(at + bytes.len() <= heap.size());
    // SAFETY: inside the heap's region, which this test owns.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), heap.base().add(at), bytes.len()) }
}

/// The offset of the entry of `key`, found by its layout's fields.
fn entry_of(heap: &mut Heap, kind: MapKind, key: &[u8]) -> usize {
    let hash = map(heap).hash(key).to_le_bytes();
    let heap = &*heap;
    match kind {
        // next u32, hash u32, key u32, meta u32 (len | type << 24)
        MapKind::Tiny => find(heap, &hash)
            .into_iter()
            .map(|at| at - 4)
            .filter(|at| at % 8 == 0)
            .find(|&at| {
                // SAFETY: inside the region.
                let meta = unsafe { (heap.base().add(at + 12) as *const u32).read_unaligned() };
                meta & 0xff_ffff == key.len() as u32
            })
            .expect("the tinymap entry"),
        // next u64, hash u32, vtype u32, key_len u32, ... 40 bytes, then the key
        MapKind::Hash => find(heap, key)
            .into_iter()
            .map(|at| at - 40)
            .find(|&at| {
                // SAFETY: inside the region.
                unsafe { (heap.base().add(at + 8) as *const [u8; 4]).read() == hash }
            })
            .expect("the hashmap entry"),
    }
}

/// Where each field of an entry is, by layout: next, key offset, string word.
fn fields(kind: MapKind) -> [(usize, usize); 3] {
    match kind {
        MapKind::Tiny => [(0, 4), (8, 4), (16, 8)],
        MapKind::Hash => [(0, 8), (12, 4), (32, 8)],
    }
}

/// A value read out of the map lies inside the zone, or is empty.
fn inside(heap: &Heap, v: Option<Value<'_>>) -> bool {
    match v {
        Some(Value::Str(s)) if !s.is_empty() => {
            let (b, e) = (heap.base() as usize, heap.base() as usize + heap.size());
            s.as_ptr() as usize >= b && s.as_ptr() as usize + s.len() <= e
        }
        _ => true,
    }
}

#[test]
fn offsets_outside_the_zone_are_never_followed() {
    let bad: [u64; 5] = [0xffff_fff0, 0x7fff_fff8, 1 << 40, u64::MAX - 7, 3];
    for kind in KINDS {
        for (field, (at, width)) in fields(kind).into_iter().enumerate() {
            for &b in &bad {
                let mut heap = new_map(kind, 256 * 1024, 1024, 0, true);
                {
                    let mut m = map(&mut heap);
                    for i in 0..50u32 {
                        m.put(format!("k{i}").as_bytes(), Value::Str(b"value"), Ttl::Default, 0)
                            .unwrap();
                    }
                    m.put(b"victim-key", Value::Str(b"victim-value"), Ttl::Default, 0)
                        .unwrap();
                }
                let e = entry_of(&mut heap, kind, b"victim-key");
                let word = b.to_le_bytes();
                let value = match (kind, field) {
                    // A tinymap string word: offset low, length high.
                    (MapKind::Tiny, 2) => (b & 0xffff_ffff | 0xffff << 32).to_le_bytes(),
                    _ => word,
                };
                poke(&mut heap, e + at, &value[..width]);
                let heap_ref: *const Heap = &heap;
                let mut m = map(&mut heap);
                // SAFETY: only the region's address and size are read.
                let h = unsafe { &*heap_ref };
                let what = format!("{kind:?}: field {field} = {b:#x}");
                assert!(inside(h, m.get(b"victim-key", 0)), "{what}: get");
                let mut n = 0;
                m.for_each(b"", 0, |_, v, _| {
                    assert!(inside(h, Some(v)), "{what}: for_each");
                    n += 1;
                    true
                });
                let _ = state::save(&mut m, 0);
                for i in 0..50u32 {
                    let _ = m.get(format!("k{i}").as_bytes(), 0);
                }
                // Writes go on (into the chains still reachable).
                m.put(b"after", Value::Str(b"x"), Ttl::Default, 0).unwrap();
                assert_eq!(m.peek(b"after", 0), Some(Value::Str(b"x")), "{what}");
                let _ = m.remove(b"victim-key", 0);
                let _ = m.verify();
                // Clearing empties every chain still reachable (entries cut off
                // by the damage stay lost, and may stay counted).
                m.clear();
                let mut left = 0;
                m.for_each(b"", 0, |_, _, _| {
                    left += 1;
                    true
                });
                assert_eq!(left, 0, "{what}");
            }
        }
    }
}

#[test]
fn a_cut_chain_shows_in_verify() {
    for kind in KINDS {
        let mut heap = new_map(kind, 256 * 1024, 64, 0, false);
        {
            let mut m = map(&mut heap);
            for i in 0..40u32 {
                m.put(format!("k{i}").as_bytes(), Value::Long(1), Ttl::Default, 0)
                    .unwrap();
            }
            m.put(b"victim-key", Value::Long(2), Ttl::Default, 0).unwrap();
            assert_eq!(m.verify(), Ok(41));
        }
        // An entry with a successor in its chain: cutting its link loses one.
        let (at, width) = fields(kind)[0];
        let entries: Vec<usize> = (0..40u32)
            .map(|i| entry_of(&mut heap, kind, format!("k{i}").as_bytes()))
            .collect();
        let linked = entries
            .into_iter()
            .find(|&e| {
                let mut next = [0u8; 8];
                // SAFETY: inside the heap's region.
                unsafe { std::ptr::copy_nonoverlapping(heap.base().add(e + at), next.as_mut_ptr(), width) };
                u64::from_le_bytes(next) != 0
            })
            .expect("some chain holds two entries");
        poke(&mut heap, linked + at, &(0xffff_fff0u64.to_le_bytes()[..width]));
        let mut m = map(&mut heap);
        assert!(m.verify().is_err(), "{kind:?}");
    }
}

#[test]
fn a_key_repeated_in_a_state_file_counts_once() {
    for kind in KINDS {
        let mut enc = Encoder::new(kind, 100);
        enc.push(b"k", Value::Long(1), 0);
        enc.push(b"other", Value::Long(5), 0);
        enc.push(b"k", Value::Long(2), 0);
        enc.push(b"k", Value::Str(b"three"), 0);
        let file = enc.finish();
        let parsed = state::parse(&file).unwrap();
        let mut heap = new_map(kind, 1 << 20, 100, 0, false);
        let mut m = map(&mut heap);
        let report = state::load(&mut m, &parsed, 100);
        assert_eq!(report.loaded, 2, "{kind:?}: {report:?}");
        assert_eq!(report.duplicates, 2, "{kind:?}: {report:?}");
        assert_eq!(report.loaded, m.len());
        assert_eq!(m.peek(b"k", 100), Some(Value::Str(b"three")), "the last record wins");
    }
}
