//! How a map matches a lookup key against its stored keys: exactly, by the
//! longest stored prefix, or by the most specific IP range holding an address.
//!
//! Pure functions over keys. A map that matches by prefix or range keeps, in
//! its header, the set of key lengths (prefix) or range lengths (ip) it holds,
//! one bit per length, so that a lookup probes only those lengths, longest
//! first: a map holding /8, /16, /24 and /32 ranges costs at most four probes.
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
