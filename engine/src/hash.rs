//! The keyed hashes of a map: where a key's bucket is, and the key of its ETags.

use siphasher::sip::SipHasher13;

use crate::error::Error;

/// The key's hash: SipHash-1-3 under the map's secret 128-bit key, its low 32
/// bits kept in the entry (the bucket is their low bits).
///
/// nginx-clojure hashes with MurmurHash3 x86 32-bit, seed 0: anyone can compute
/// offline keys that all land in one bucket, and MurmurHash3 has seed-independent
/// multicollisions, so a random seed alone would not help. SipHash is a keyed
/// pseudo-random function: without the key, colliding keys cannot be chosen.
pub fn hash_key(secret: [u64; 2], key: &[u8]) -> u32 {
    SipHasher13::new_with_keys(secret[0], secret[1]).hash(key) as u32
}

/// The key of a map's ETags, derived from its secret hash key: a value's ETag
/// (`shared_map_http_parse::conditional::etag`) is a keyed hash under it, so
/// nobody without the secret can make two values share one. A key of its own
/// (SipHash-2-4-128 of a label under the secret) keeps the ETags that every
/// reader sees apart from the hashes that place keys in buckets.
pub(crate) fn etag_key(secret: [u64; 2]) -> [u64; 2] {
    let h = siphasher::sip128::SipHasher24::new_with_keys(secret[0], secret[1]).hash(b"shared map etag key");
    [h.h1, h.h2]
}

/// A fresh hash key from the operating system's random source.
pub(crate) fn random_hash_key() -> Result<[u64; 2], Error> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(Error::Random)?;
    let (a, b) = bytes.split_at(8);
    Ok([
        u64::from_le_bytes(a.try_into().unwrap_or_default()),
        u64::from_le_bytes(b.try_into().unwrap_or_default()),
    ])
}
