//! Sliding expiry, as the session store uses it: `get_renew`.

mod common;

use common::{map, new_map, KINDS};
use shared_map_engine::{Ttl, Value};

#[test]
fn get_renew_slides_the_expiry_and_counts_a_hit() {
    for kind in KINDS {
        let mut heap = new_map(kind, 1 << 20, 100, 0, false);
        let mut m = map(&mut heap);
        m.put(b"s", Value::Str(b"data"), Ttl::Secs(10), 100).unwrap();
        assert_eq!(m.get_renew(b"s", Ttl::Secs(10), 105), Some(Value::Str(b"data")));
        assert_eq!(m.peek_with_expiry(b"s", 106).map(|v| v.1), Some(115), "{kind:?}");
        // Used every 8 seconds, it outlives its 10 second timeout many times over.
        for now in (113..200).step_by(8) {
            assert_eq!(
                m.get_renew(b"s", Ttl::Secs(10), now),
                Some(Value::Str(b"data")),
                "{kind:?} at {now}"
            );
        }
        let s = m.stats();
        assert_eq!((s.hits, s.misses), (12, 0), "{kind:?}");
    }
}

#[test]
fn get_renew_removes_an_idle_entry_for_good() {
    for kind in KINDS {
        let mut heap = new_map(kind, 1 << 20, 100, 0, false);
        let mut m = map(&mut heap);
        m.put(b"s", Value::Str(b"data"), Ttl::Secs(10), 100).unwrap();
        assert_eq!(m.len(), 1);
        // Alive for its whole time to live (second 110 included), gone after it.
        assert_eq!(m.get_renew(b"s", Ttl::Secs(10), 111), None, "{kind:?}: expired at 111");
        assert_eq!(m.len(), 0, "{kind:?}: the entry is gone, not hidden");
        assert_eq!(m.stats().expirations, 1);
        assert_eq!(m.get_renew(b"missing", Ttl::Secs(10), 111), None);
        assert_eq!(m.stats().misses, 2);
    }
}

#[test]
fn get_renew_does_not_count_as_a_change() {
    let mut heap = new_map(KINDS[0], 1 << 20, 100, 0, false);
    let mut m = map(&mut heap);
    m.put(b"s", Value::Str(b"data"), Ttl::Secs(10), 100).unwrap();
    let g = m.generation();
    m.get_renew(b"s", Ttl::Secs(10), 101);
    assert_eq!(m.generation(), g);
}
