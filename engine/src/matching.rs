//! How a map matches a lookup key against its stored keys: exactly, by the
//! longest stored prefix, or by the most specific IP range holding an address.
//!
//! Pure functions over keys. A map that matches by prefix or range keeps, in
//! its header, the set of key lengths (prefix) or range lengths (ip) it holds,
//! one bit per length, so that a lookup probes only those lengths, longest
//! first: a map holding /8, /16, /24 and /32 ranges costs at most four probes.
//! A probe [`Filter`] then rules out most of those lengths before their keyed
//! probe, so that a map of many lengths costs about one probe per lookup.
//! IP keys are stored as text in one normal form (host bits cleared, the
//! address as `std::net` writes it, `/len` unless it is a full-length range),
//! so that listings, state files and deletes see the same key.

use core::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How a lookup finds its entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u32)]
pub enum MatchMode {
    /// The key itself.
    #[default]
    Exact = 0,
    /// The longest stored key that is a prefix of the lookup key.
    Prefix = 1,
    /// The most specific stored IPv4 or IPv6 range holding the lookup address.
    Ip = 2,
}

impl MatchMode {
    pub fn name(self) -> &'static str {
        match self {
            MatchMode::Exact => "exact",
            MatchMode::Prefix => "prefix",
            MatchMode::Ip => "ip",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "exact" => Some(MatchMode::Exact),
            "prefix" => Some(MatchMode::Prefix),
            "ip" => Some(MatchMode::Ip),
            _ => None,
        }
    }

    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            0 => Some(MatchMode::Exact),
            1 => Some(MatchMode::Prefix),
            2 => Some(MatchMode::Ip),
            _ => None,
        }
    }
}

/// The longest key a prefix map holds: its lengths fit one small bitmap.
pub const MAX_PREFIX_KEY: usize = 255;

/// Slots of the length set: key lengths 0..=255 (prefix), or range lengths
/// 0..=32 of IPv4 then 0..=128 of IPv6 (ip).
pub const SLOTS: usize = 256;
const V6_BASE: usize = 33;

/// The length set's bitmap, as the map header stores it.
pub type LengthBits = [u64; SLOTS / 64];

pub fn has(bits: &LengthBits, slot: usize) -> bool {
    bits[slot / 64] & (1 << (slot % 64)) != 0
}

/// The slots `lo..lo + 8` of `bits`, one bit each (slot `lo` the lowest);
/// slots past the bitmap read as clear.
pub fn byte_at(bits: &LengthBits, lo: usize) -> u8 {
    let (w, b) = (lo / 64, lo % 64);
    let low = bits.get(w).map_or(0, |word| word >> b);
    let high = match bits.get(w + 1) {
        Some(word) if b > 56 => word << (64 - b),
        _ => 0,
    };
    (low | high) as u8
}

/// The set slots from `top` down to `bottom`, longest first. Finds each by
/// the highest set bit of a masked word, so an empty map costs one word.
pub fn slots_down(bits: LengthBits, top: usize, bottom: usize) -> SlotsDown {
    SlotsDown {
        bits,
        top: Some(top),
        bottom,
    }
}

pub struct SlotsDown {
    bits: LengthBits,
    /// The highest slot still to look at.
    top: Option<usize>,
    bottom: usize,
}

impl Iterator for SlotsDown {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let mut top = self.top?;
        loop {
            if top < self.bottom {
                self.top = None;
                return None;
            }
            let (w, b) = (top / 64, top % 64);
            let word = self.bits[w] & (u64::MAX >> (63 - b));
            if word != 0 {
                let slot = w * 64 + 63 - word.leading_zeros() as usize;
                if slot < self.bottom {
                    self.top = None;
                    return None;
                }
                self.top = slot.checked_sub(1);
                return Some(slot);
            }
            if w == 0 {
                self.top = None;
                return None;
            }
            top = w * 64 - 1;
        }
    }
}

/// An IPv4 or IPv6 range, host bits cleared. An IPv4-mapped IPv6 range of
/// length 96 or more is the IPv4 range it maps, so `::ffff:10.0.0.1` (as nginx
/// gives `$remote_addr` on a dual-stack socket) finds `10.0.0.0/8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpRange {
    pub addr: IpAddr,
    pub len: u8,
}

impl IpRange {
    /// Parses `ADDRESS` or `ADDRESS/LEN` (LEN in decimal digits only).
    pub fn parse(key: &[u8]) -> Option<IpRange> {
        let text = core::str::from_utf8(key).ok()?;
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => {
                if l.is_empty() || l.len() > 3 || !l.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (a, Some(l.parse::<u8>().ok()?))
            }
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = len.unwrap_or(max);
        if len > max {
            return None;
        }
        let range = match addr {
            IpAddr::V6(a) if len >= 96 => match a.to_ipv4_mapped() {
                Some(v4) => IpRange {
                    addr: IpAddr::V4(v4),
                    len: len - 96,
                },
                None => IpRange { addr, len },
            },
            _ => IpRange { addr, len },
        };
        Some(range.network(range.len))
    }

    /// The range of length `len` holding this one (`len` at most its own).
    pub fn network(self, len: u8) -> IpRange {
        let addr = match self.addr {
            IpAddr::V4(a) => {
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len as u32) };
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = if len == 0 { 0 } else { u128::MAX << (128 - len as u32) };
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        };
        IpRange { addr, len }
    }

    pub fn max_len(self) -> u8 {
        if self.addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    /// The slot of its family's length 0.
    pub fn bottom(self) -> usize {
        self.slot() - self.len as usize
    }

    /// Its slot in the length set.
    pub fn slot(self) -> usize {
        if self.addr.is_ipv4() {
            self.len as usize
        } else {
            V6_BASE + self.len as usize
        }
    }

    /// The stored key: the normal form, on the stack.
    pub fn key(self) -> KeyBuf {
        let mut k = KeyBuf::default();
        match self.addr {
            // By hand: `Display` for Ipv4Addr goes through the formatting
            // machinery, which took most of a lookup's time.
            IpAddr::V4(a) => {
                for (i, octet) in a.octets().into_iter().enumerate() {
                    if i > 0 {
                        k.push(b'.');
                    }
                    k.push_decimal(octet);
                }
            }
            // Cannot fail: the longest IPv6 text is shorter than the buffer.
            IpAddr::V6(a) => {
                let _ = write!(k, "{a}");
            }
        }
        if self.len != self.max_len() {
            k.push(b'/');
            k.push_decimal(self.len);
        }
        k
    }
}

/// A stored IP key, formatted without a heap allocation.
pub struct KeyBuf {
    buf: [u8; 64],
    len: usize,
}

impl Default for KeyBuf {
    fn default() -> Self {
        KeyBuf { buf: [0; 64], len: 0 }
    }
}

impl KeyBuf {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Appends one byte; the buffer holds the longest key (an IPv6 address
    /// of 39 bytes, `/128`), so it never overflows.
    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    fn push_decimal(&mut self, n: u8) {
        if n >= 100 {
            self.push(b'0' + n / 100);
        }
        if n >= 10 {
            self.push(b'0' + n / 10 % 10);
        }
        self.push(b'0' + n % 10);
    }
}

impl fmt::Write for KeyBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The probe filter: a counting filter over (length, candidate key) that a
/// lookup checks before each keyed probe, so that of the lengths a map holds
/// only those where a stored key may match cost a SipHash and a bucket walk.
/// Each stored key counts in two one-byte cells picked by a cheap hash of its
/// length and bytes (prefix) or of its range (ip), seeded from the map's secret
/// key. A cell at zero proves no stored key hashes there, so a lookup skips
/// the length; a nonzero cell only costs the probe it would have made anyway:
/// keys chosen to hit set cells bring a lookup back to one probe per length,
/// never to a wrong answer. A cell that reaches 255 stays there, so it never
/// drops to zero while a key still counts in it.
///
/// A key also counts in the cells of its group: the eight lengths of its
/// 8-byte word (`len / 8`, prefix) or of its byte of address (`len / 8`, ip),
/// with the words or bytes before it. A lookup checks a group once and skips
/// its eight lengths when no stored key can be in it, so a long key costs
/// about one check per word or byte rather than one per length.
///
/// The cells live in the zone, which a reload (even with a new module) keeps:
/// these hashes are part of the map's layout, and changing them needs a new
/// header `MAGIC`.
pub struct Filter {
    seed: u64,
}

const K0: u64 = 0x9e37_79b9_7f4a_7c15;
const K1: u64 = 0xc2b2_ae3d_27d4_eb4f;
const K2: u64 = 0x1656_67b1_9e37_79f9;

/// A multiply folding its 128-bit product: a fast mix (as in wyhash).
#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let p = a as u128 * b as u128;
    p as u64 ^ (p >> 64) as u64
}

/// The cells a candidate hash counts in, for a filter of `mask + 1` cells.
#[inline(always)]
pub fn filter_cells(hash: u64, mask: usize) -> [usize; 2] {
    [hash as usize & mask, (hash >> 32) as usize & mask]
}

impl Filter {
    /// The filter hashes of a map with SipHash key `secret`.
    pub fn new(secret: [u64; 2]) -> Filter {
        Filter {
            seed: fold(secret[0] ^ K0, secret[1] ^ K1) | 1,
        }
    }

    /// The hashes of every prefix of `key` up to `MAX_PREFIX_KEY` bytes.
    #[inline]
    pub fn prefixes(&self, key: &[u8]) -> PrefixHashes {
        let key = &key[..key.len().min(MAX_PREFIX_KEY)];
        let mut chain = [0u64; MAX_PREFIX_KEY / 8 + 1];
        let mut words = [0u64; MAX_PREFIX_KEY / 8 + 1];
        chain[0] = self.seed;
        let mut chunks = key.chunks_exact(8);
        for (w, word) in chunks.by_ref().enumerate() {
            words[w] = u64::from_le_bytes(word.try_into().unwrap_or_default());
            chain[w + 1] = fold(chain[w] ^ words[w], K0);
        }
        let mut last = [0u8; 8];
        last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        words[key.len() / 8] = u64::from_le_bytes(last);
        PrefixHashes { chain, words }
    }

    /// The hashes of every range holding `range` (its own included).
    #[inline]
    pub fn ranges(&self, range: IpRange) -> RangeHashes {
        let (octets, n) = match range.addr {
            IpAddr::V4(a) => {
                let mut o = [0u8; 16];
                o[..4].copy_from_slice(&a.octets());
                (o, 4)
            }
            IpAddr::V6(a) => (a.octets(), 16),
        };
        let bottom = range.bottom();
        let mut chain = [0u64; 17];
        chain[0] = fold(self.seed, K1 ^ bottom as u64);
        for i in 0..n {
            chain[i + 1] = fold(chain[i] ^ octets[i] as u64, K0);
        }
        RangeHashes { chain, octets, bottom }
    }

    /// The hash of a stored key's group (see [`PrefixHashes::group`] and
    /// [`RangeHashes::group`]); `None` for an exact map.
    pub fn stored_group(&self, mode: MatchMode, key: &[u8]) -> Option<u64> {
        match mode {
            MatchMode::Exact => None,
            MatchMode::Prefix => Some(self.prefixes(key).group(key.len().min(MAX_PREFIX_KEY) / 8)),
            MatchMode::Ip => IpRange::parse(key).map(|r| self.ranges(r).group(r.len as usize / 8)),
        }
    }

    /// The hash of a stored key (in normal form) of a map matching by `mode`.
    pub fn stored(&self, mode: MatchMode, key: &[u8]) -> Option<u64> {
        match mode {
            MatchMode::Exact => None,
            MatchMode::Prefix => Some(self.prefixes(key).at(key.len().min(MAX_PREFIX_KEY))),
            MatchMode::Ip => IpRange::parse(key).map(|r| self.ranges(r).at(r.len)),
        }
    }
}

/// The filter hashes of the ranges holding a looked-up address, from one pass
/// over its bytes: the hash of its range of length `len` depends on its
/// first `len` bits and its family alone.
pub struct RangeHashes {
    /// `chain[i]`: the hash of the family and the first `i` bytes.
    chain: [u64; 17],
    octets: [u8; 16],
    /// The slot of the family's length 0.
    bottom: usize,
}

impl RangeHashes {
    /// The hash of the range of `len` bits (at most the address's length).
    #[inline]
    pub fn at(&self, len: u8) -> u64 {
        let (w, rem) = (len as usize / 8 % 17, len % 8);
        let tail = if rem == 0 {
            0
        } else {
            (self.octets[w % 16] & (0xff << (8 - rem))) as u64
        };
        fold(self.chain[w] ^ tail, K2 ^ (self.bottom + len as usize) as u64)
    }

    /// The hash of the group of lengths `8w..8w+8`: the same for each range
    /// of those lengths holding the address.
    #[inline]
    pub fn group(&self, w: usize) -> u64 {
        fold(self.chain[w % 17] ^ K1, K0 ^ w as u64)
    }
}

/// What a lookup walks its candidate lengths with: [`PrefixHashes`] or
/// [`RangeHashes`].
pub trait LengthHashes {
    /// The hash of the candidate of `len` (bytes of a prefix, bits of a range).
    fn at(&self, len: usize) -> u64;
    /// The hash of the group of lengths `8w..8w+8`.
    fn group(&self, w: usize) -> u64;
}

impl LengthHashes for RangeHashes {
    #[inline]
    fn at(&self, len: usize) -> u64 {
        RangeHashes::at(self, len as u8)
    }

    #[inline]
    fn group(&self, w: usize) -> u64 {
        RangeHashes::group(self, w)
    }
}

impl LengthHashes for PrefixHashes {
    #[inline]
    fn at(&self, len: usize) -> u64 {
        PrefixHashes::at(self, len)
    }

    #[inline]
    fn group(&self, w: usize) -> u64 {
        PrefixHashes::group(self, w)
    }
}

/// The filter hashes of a lookup key's prefixes, from one pass over its
/// 8-byte words: the hash of `key[..len]` depends on those bytes alone.
pub struct PrefixHashes {
    /// `chain[w]`: the hash of the first `w` words.
    chain: [u64; MAX_PREFIX_KEY / 8 + 1],
    /// The key's words, the last zero-padded.
    words: [u64; MAX_PREFIX_KEY / 8 + 1],
}

impl PrefixHashes {
    /// The hash of the prefix of `len` bytes (at most the key's length).
    #[inline]
    pub fn at(&self, len: usize) -> u64 {
        let (w, rem) = (len / 8 % (MAX_PREFIX_KEY / 8 + 1), len % 8);
        // The bytes of the last, partial word; those past `len` read as zero.
        let tail = if rem == 0 {
            0
        } else {
            self.words[w] & (u64::MAX >> (64 - rem * 8))
        };
        fold(self.chain[w] ^ tail, K2 ^ len as u64)
    }

    /// The hash of the group of lengths `8 * w .. 8 * w + 8` whose first `w`
    /// words are the key's: the same for every prefix of those lengths.
    #[inline]
    pub fn group(&self, w: usize) -> u64 {
        fold(self.chain[w % (MAX_PREFIX_KEY / 8 + 1)] ^ K1, K0 ^ w as u64)
    }
}

/// The slot of a key already stored in normal form (or `None`: an exact map).
pub fn stored_slot(mode: MatchMode, key: &[u8]) -> Option<usize> {
    match mode {
        MatchMode::Exact => None,
        MatchMode::Prefix => Some(key.len().min(MAX_PREFIX_KEY)),
        MatchMode::Ip => IpRange::parse(key).map(IpRange::slot),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(k: &str) -> Option<String> {
        IpRange::parse(k.as_bytes()).map(|r| String::from_utf8(r.key().as_bytes().to_vec()).unwrap())
    }

    #[test]
    fn normalises_addresses_and_ranges() {
        assert_eq!(norm("10.1.2.3/8").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(norm("10.1.2.3").as_deref(), Some("10.1.2.3"));
        assert_eq!(norm("10.1.2.3/32").as_deref(), Some("10.1.2.3"));
        assert_eq!(norm("0.0.0.0/0").as_deref(), Some("0.0.0.0/0"));
        assert_eq!(norm("2001:DB8::1/32").as_deref(), Some("2001:db8::/32"));
        assert_eq!(norm("2001:db8:0:0::1").as_deref(), Some("2001:db8::1"));
        assert_eq!(norm("::ffff:10.1.2.3").as_deref(), Some("10.1.2.3"));
        assert_eq!(norm("::ffff:10.1.2.3/104").as_deref(), Some("10.0.0.0/8"));
        for bad in [
            "",
            "x",
            "10.0.0",
            "10.0.0.1/33",
            "10.0.0.1/",
            "10.0.0.1/+8",
            "010.0.0.1",
            "::1/129",
            "1.2.3.4/8/8",
            " 1.2.3.4",
        ] {
            assert_eq!(norm(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_prefix_hash_depends_on_the_prefix_alone() {
        let f = Filter::new([1, 2]);
        let key = b"/api/v2/users/0123456789abcdefghijklmnopqrstuvwxyz";
        let hashes = f.prefixes(key);
        for len in 0..=key.len() {
            assert_eq!(
                hashes.at(len),
                f.stored(MatchMode::Prefix, &key[..len]).unwrap(),
                "{len}"
            );
            let mut other = key[..len].to_vec();
            other.extend_from_slice(b"zzzzzzzz");
            assert_eq!(hashes.at(len), f.prefixes(&other).at(len), "{len}");
        }
        assert_ne!(hashes.at(8), hashes.at(9));
        for len in 0..=key.len() {
            assert_eq!(
                hashes.group(len / 8),
                f.stored_group(MatchMode::Prefix, &key[..len]).unwrap()
            );
        }
        assert_ne!(hashes.group(1), hashes.group(2));
        assert_eq!(f.stored_group(MatchMode::Exact, b"/"), None);
        assert_ne!(f.prefixes(b"").at(0), Filter::new([1, 3]).prefixes(b"").at(0));
        let long = [b'x'; 300];
        assert_eq!(
            f.prefixes(&long).at(255),
            f.stored(MatchMode::Prefix, &long[..255]).unwrap()
        );
    }

    #[test]
    fn a_range_hash_is_the_stored_range_hash() {
        let f = Filter::new([5, 6]);
        let r = f.ranges(IpRange::parse(b"2001:db8:ffff::1").unwrap());
        let stored = |k: &[u8]| f.stored(MatchMode::Ip, k).unwrap();
        let group = |k: &[u8]| f.stored_group(MatchMode::Ip, k).unwrap();
        assert_eq!(r.at(32), stored(b"2001:db8::/32"));
        assert_eq!(r.at(35), stored(b"2001:db8:e000::/35"));
        assert_eq!(r.at(128), stored(b"2001:db8:ffff::1"));
        assert_eq!(r.at(0), stored(b"::/0"));
        assert_ne!(r.at(32), r.at(33));
        assert_eq!(r.group(4), group(b"2001:db8::/32"));
        assert_eq!(r.group(4), group(b"2001:db8:e000::/35"));
        assert_eq!(r.group(16), group(b"2001:db8:ffff::1"));
        assert_ne!(r.group(4), r.group(3));
        let v4 = f.ranges(IpRange::parse(b"::ffff:10.1.2.3").unwrap());
        assert_eq!(v4.at(8), stored(b"10.0.0.0/8"));
        assert_eq!(v4.at(32), stored(b"10.1.2.3"));
        assert_eq!(v4.group(4), group(b"10.1.2.3"));
        assert_eq!(v4.group(1), group(b"10.0.0.0/15"));
        // The same bits in the other family are another range.
        assert_ne!(stored(b"0.0.0.0/0"), stored(b"::/0"));
        assert_ne!(group(b"0.0.0.0/0"), group(b"::/0"));
    }

    #[test]
    fn bytes_of_the_bitmap_span_words() {
        let mut bits: LengthBits = [0; 4];
        for s in [0usize, 7, 8, 60, 63, 64, 66, 161, 255] {
            bits[s / 64] |= 1 << (s % 64);
        }
        assert_eq!(byte_at(&bits, 0), 0b1000_0001);
        assert_eq!(byte_at(&bits, 1), 0b1100_0000);
        assert_eq!(byte_at(&bits, 60), 0b0101_1001);
        assert_eq!(byte_at(&bits, 161), 1);
        assert_eq!(byte_at(&bits, 250), 0b10_0000);
        assert_eq!(byte_at(&bits, 255), 1);
    }

    #[test]
    fn slots_separate_families() {
        assert_eq!(IpRange::parse(b"10.0.0.0/8").unwrap().slot(), 8);
        assert_eq!(IpRange::parse(b"::/0").unwrap().slot(), 33);
        assert_eq!(IpRange::parse(b"::1").unwrap().slot(), 161);
        const { assert!(V6_BASE + 128 < SLOTS) };
        let mut bits: LengthBits = [0; 4];
        for s in [8usize, 16, 24, 32, 40] {
            bits[s / 64] |= 1 << (s % 64);
        }
        assert_eq!(slots_down(bits, 32, 0).collect::<Vec<_>>(), vec![32, 24, 16, 8]);
        assert_eq!(slots_down(bits, 40, 9).collect::<Vec<_>>(), vec![40, 32, 24, 16]);
        assert_eq!(slots_down(bits, 7, 0).count(), 0);
        let mut all: LengthBits = [u64::MAX; 4];
        assert_eq!(slots_down(all, 255, 0).count(), 256);
        all[1] = 0;
        assert_eq!(
            slots_down(all, 130, 60).collect::<Vec<_>>(),
            vec![130, 129, 128, 63, 62, 61, 60]
        );
    }
}
