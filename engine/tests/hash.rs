//! The map's key hash is MurmurHash3 x86 32-bit, seed 0, byte for byte the
//! `murmur3` crate's.

use proptest::prelude::*;
use shared_map_engine::hash_key;

fn reference(key: &[u8]) -> u32 {
    let mut src = key;
    murmur3::murmur3_32(&mut src, 0).unwrap()
}

#[test]
fn known_values() {
    // Published MurmurHash3_x86_32 vectors, seed 0.
    assert_eq!(hash_key(b""), 0);
    assert_eq!(hash_key(b"hello"), 0x248b_fa47);
    assert_eq!(hash_key(b"The quick brown fox jumps over the lazy dog"), 0x2e4f_f723);
}

proptest! {
    #[test]
    fn same_hash_as_the_murmur3_crate(key in proptest::collection::vec(any::<u8>(), 0..100)) {
        prop_assert_eq!(hash_key(&key), reference(&key));
    }
}
