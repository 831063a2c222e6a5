//! Conditional requests on one key of a map (RFC 9110, section 13): the ETag
//! of a value and the evaluation of `If-Match` / `If-None-Match` against it.
//!
//! The ETag is a strong validator of the value's type and bytes: a number's
//! ETag holds the number itself (`"l-42"`), a string's its length and a
//! 128-bit SipHash-2-4 of its bytes under the map's ETag key (`"s-5-…"`), a
//! key derived from the map's secret (`Map::etag_key`). Without the secret
//! nobody can find two values with one ETag: an unkeyed hash (MurmurHash3,
//! as before) lets anyone solve one 16-byte block for a second value with the
//! same ETag, so that `If-None-Match` answers 304 and `If-Match` lets a write
//! through for a value the client never saw. The ETag is the same in every
//! worker and across reloads that keep the map's zone.

use siphasher::sip128::SipHasher24;

/// The ETag (quoted, as sent in the header) of a value of type `vtype`
/// (`int`, `long` or `string`) whose bytes, numbers in decimal, are `bytes`,
/// in a map whose ETag key is `key`.
pub fn etag(key: [u64; 2], vtype: &str, bytes: &[u8]) -> String {
    match vtype {
        "int" | "long" => format!("\"{}-{}\"", &vtype[..1], String::from_utf8_lossy(bytes)),
        _ => {
            let h = SipHasher24::new_with_keys(key[0], key[1]).hash(bytes);
            format!("\"s-{:x}-{:016x}{:016x}\"", bytes.len(), h.h1, h.h2)
        }
    }
}

/// Whether a write may proceed, given the request's `If-Match` and
/// `If-None-Match` header values and the current value's ETag (`None`: the
/// key is absent). `If-Match` compares strongly (a weak `W/` tag never
/// matches); `If-None-Match` weakly; `*` matches any present value.
pub fn write_allowed(if_match: Option<&[u8]>, if_none_match: Option<&[u8]>, current: Option<&str>) -> bool {
    if let Some(header) = if_match {
        let ok = match current {
            None => false,
            Some(cur) => list_matches(header, |tag| !tag.starts_with(b"W/") && tag == cur.as_bytes()),
        };
        if !ok {
            return false;
        }
    }
    if let Some(header) = if_none_match {
        if let Some(cur) = current {
            let weak = |t: &[u8]| t.strip_prefix(b"W/").map(<[u8]>::to_vec).unwrap_or_else(|| t.to_vec());
            if list_matches(header, |tag| weak(tag) == weak(cur.as_bytes())) {
                return false;
            }
        }
    }
    true
}

/// Whether a header value, `*` or a comma-separated list of entity tags, has
/// an element `eq` accepts (`*` accepts any present value).
fn list_matches(header: &[u8], eq: impl Fn(&[u8]) -> bool) -> bool {
    let header = header.trim_ascii();
    if header == b"*" {
        return true;
    }
    header
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .any(|t| !t.is_empty() && eq(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u64; 2] = [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210];

    #[test]
    fn etags_tell_types_and_values_apart() {
        assert_eq!(etag(KEY, "long", b"42"), "\"l-42\"");
        assert_eq!(etag(KEY, "int", b"-7"), "\"i--7\"");
        assert_ne!(etag(KEY, "int", b"42"), etag(KEY, "long", b"42"));
        assert_ne!(etag(KEY, "string", b"42"), etag(KEY, "long", b"42"));
        assert_ne!(etag(KEY, "string", b"a"), etag(KEY, "string", b"b"));
        assert_eq!(etag(KEY, "string", b"hello"), etag(KEY, "string", b"hello"));
        assert!(etag(KEY, "string", b"").starts_with("\"s-0-"));
        assert!(etag(KEY, "string", b"hello").starts_with("\"s-5-"));
        assert_eq!(etag(KEY, "string", b"hello").len(), "\"s-5-\"".len() + 32);
    }

    #[test]
    fn etags_depend_on_the_key() {
        let other = [KEY[0], KEY[1] ^ 1];
        assert_ne!(etag(KEY, "string", b"hello"), etag(other, "string", b"hello"));
        // Numbers are their own ETag: no two share one, whatever the key.
        assert_eq!(etag(KEY, "long", b"42"), etag(other, "long", b"42"));
    }

    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;

    fn inverse(a: u64) -> u64 {
        // Newton's iteration for the inverse of an odd number modulo 2^64.
        let mut x = a;
        for _ in 0..6 {
            x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
        }
        x
    }

    /// MurmurHash3 x64_128's state after the 16-byte blocks of `data`.
    fn blocks(data: &[u8]) -> (u64, u64) {
        let (mut h1, mut h2) = (0u64, 0u64);
        for b in data.chunks_exact(16) {
            let k1 = u64::from_le_bytes(b[..8].try_into().unwrap());
            let k2 = u64::from_le_bytes(b[8..].try_into().unwrap());
            h1 ^= k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
            h1 = h1
                .rotate_left(27)
                .wrapping_add(h2)
                .wrapping_mul(5)
                .wrapping_add(0x52dc_e729);
            h2 ^= k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
            h2 = h2
                .rotate_left(31)
                .wrapping_add(h1)
                .wrapping_mul(5)
                .wrapping_add(0x3849_5ab5);
        }
        (h1, h2)
    }

    /// A second 32-byte value with `value`'s unkeyed MurmurHash3: its first
    /// block is `first`, its second solved so that the state after it is
    /// `value`'s (every step of a block is invertible).
    fn murmur_collision(value: &[u8; 32], first: &[u8; 16]) -> Vec<u8> {
        let (t1, t2) = blocks(value);
        let (s1, s2) = blocks(first);
        let inv5 = inverse(5);
        let x1 = t1
            .wrapping_sub(0x52dc_e729)
            .wrapping_mul(inv5)
            .wrapping_sub(s2)
            .rotate_right(27);
        let m1 = (x1 ^ s1)
            .wrapping_mul(inverse(C2))
            .rotate_right(31)
            .wrapping_mul(inverse(C1));
        let x2 = t2
            .wrapping_sub(0x3849_5ab5)
            .wrapping_mul(inv5)
            .wrapping_sub(t1)
            .rotate_right(31);
        let m2 = (x2 ^ s2)
            .wrapping_mul(inverse(C1))
            .rotate_right(33)
            .wrapping_mul(inverse(C2));
        let mut forged = first.to_vec();
        forged.extend_from_slice(&m1.to_le_bytes());
        forged.extend_from_slice(&m2.to_le_bytes());
        forged
    }

    #[test]
    fn values_that_collide_under_unkeyed_murmur3_get_different_etags() {
        let value = *b"balance=100;owner=alice;ok=true!";
        let forged = murmur_collision(&value, b"balance=999999;x");
        assert_ne!(forged, value);
        assert_eq!(
            mur3::murmurhash3_x64_128(&forged, 0),
            mur3::murmurhash3_x64_128(&value, 0),
            "the old scheme's ETags collide"
        );
        assert_ne!(etag(KEY, "string", &forged), etag(KEY, "string", &value));
        // Pinned: t/403-conditional.t stores both through the API.
        assert_eq!(
            forged.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "62616c616e63653d3939393939393b78435e1574dd102481423e370eafc00760"
        );
    }

    #[test]
    fn preconditions() {
        let cur = etag(KEY, "string", b"v1");
        let other = etag(KEY, "string", b"v2");
        let c = Some(cur.as_str());
        // No condition: always.
        assert!(write_allowed(None, None, c));
        assert!(write_allowed(None, None, None));
        // If-Match: the current ETag, one of a list, or * when present.
        assert!(write_allowed(Some(cur.as_bytes()), None, c));
        assert!(write_allowed(Some(format!("{other}, {cur}").as_bytes()), None, c));
        assert!(!write_allowed(Some(other.as_bytes()), None, c));
        assert!(!write_allowed(Some(cur.as_bytes()), None, None));
        assert!(!write_allowed(Some(format!("W/{cur}").as_bytes()), None, c));
        assert!(write_allowed(Some(b"*"), None, c));
        assert!(!write_allowed(Some(b"*"), None, None));
        // If-None-Match: * only when absent; a list when none matches.
        assert!(write_allowed(None, Some(b"*"), None));
        assert!(!write_allowed(None, Some(b" * "), c));
        assert!(!write_allowed(None, Some(cur.as_bytes()), c));
        assert!(!write_allowed(None, Some(format!("W/{cur}").as_bytes()), c));
        assert!(write_allowed(None, Some(other.as_bytes()), c));
    }
}
