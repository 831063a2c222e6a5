//! Bounds on a Redis reply (RESP2) before anything decodes it. Redis is on
//! the other side of a network: a reply nested deeper than the module's
//! replies ever are, larger than the map it is for could hold, or malformed
//! is refused from its header on, before its bytes are buffered.
//!
//! [`Scanner`] walks a reply's structure as its bytes arrive, without
//! recursion (one counter per open array) and without reading a byte twice:
//! each call resumes where the last one stopped. Once it has seen a whole
//! reply within the bounds, that reply's bytes are handed to the
//! `redis-protocol` crate's decoder, which recurses once per level and has
//! no bound of its own: here it only ever sees a complete reply of at most
//! [`Limits::depth`] levels and [`Limits::bytes`] bytes, decoded once.

use core::fmt;

/// What a reply may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Arrays nested at most this deep (a flat array is 1; an empty array
    /// holds nothing to decode, and adds no level).
    pub depth: usize,
    /// The whole reply, headers included, at most this many bytes.
    pub bytes: usize,
}

/// Why a reply was refused; `Display` gives the log's wording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// Arrays nested deeper than the limit.
    TooDeep(usize),
    /// A reply (or a bulk string, or an array's announced elements) larger
    /// than the limit.
    TooLarge(usize),
    /// Not RESP2.
    Malformed(&'static str),
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::TooDeep(d) => write!(f, "invalid reply: nested deeper than {d} levels"),
            ReplyError::TooLarge(b) => write!(f, "invalid reply: larger than {b} bytes"),
            ReplyError::Malformed(what) => write!(f, "invalid reply: {what}"),
        }
    }
}

impl std::error::Error for ReplyError {}

/// The shortest element: `+\r\n`. An array announcing more elements than
/// this many bytes each could hold within the limit is refused at once.
const MIN_ELEMENT: usize = 3;

/// Where one reply's scan stands, between reads. Positions count from the
/// reply's first byte.
#[derive(Clone, Debug, Default)]
pub struct Scanner {
    /// The start of the next header line: everything before it was checked.
    pos: usize,
    /// Where the search for the current header's line feed resumes.
    line_from: usize,
    /// The end of a bulk string (its CR LF included) whose header was read.
    bulk_end: Option<usize>,
    /// Elements still to come in each open array, the innermost last.
    open: Vec<u64>,
}

impl Scanner {
    /// Scans `buf`, the bytes received from the reply's first byte on (and
    /// maybe the next replies'), from where the previous call stopped.
    /// `Ok(Some(len))`: `buf[..len]` is one whole reply within `limits`, and
    /// the scanner is ready for the next. `Ok(None)`: more bytes are needed.
    /// `buf` must start with the same bytes at every call for one reply.
    pub fn scan(&mut self, buf: &[u8], limits: Limits) -> Result<Option<usize>, ReplyError> {
        loop {
            if let Some(end) = self.bulk_end {
                if buf.len() < end {
                    return Ok(None);
                }
                if &buf[end - 2..end] != b"\r\n" {
                    return Err(ReplyError::Malformed("bulk string not followed by CR LF"));
                }
                self.bulk_end = None;
                self.pos = end;
                if self.element_done() {
                    return Ok(Some(self.finish()));
                }
                continue;
            }
            let Some(&kind) = buf.get(self.pos) else {
                return Ok(None);
            };
            if !matches!(kind, b'+' | b'-' | b':' | b'$' | b'*') {
                return Err(ReplyError::Malformed("unknown type"));
            }
            let from = self.line_from.max(self.pos + 1);
            if buf.len() <= from {
                return Ok(None);
            }
            let Some(lf) = memchr::memchr(b'\n', &buf[from..]).map(|i| from + i) else {
                self.line_from = buf.len();
                if buf.len() > limits.bytes {
                    return Err(ReplyError::TooLarge(limits.bytes));
                }
                return Ok(None);
            };
            let next = lf + 1;
            if next > limits.bytes {
                return Err(ReplyError::TooLarge(limits.bytes));
            }
            if lf < self.pos + 2 || buf[lf - 1] != b'\r' {
                return Err(ReplyError::Malformed("line not ended by CR LF"));
            }
            let line = &buf[self.pos + 1..lf - 1];
            self.pos = next;
            self.line_from = 0;
            match kind {
                b'+' | b'-' | b':' => {
                    if kind == b':' {
                        number(line)?;
                    }
                    if self.element_done() {
                        return Ok(Some(self.finish()));
                    }
                }
                b'$' => match number(line)? {
                    -1 => {
                        if self.element_done() {
                            return Ok(Some(self.finish()));
                        }
                    }
                    n if n < 0 => return Err(ReplyError::Malformed("negative length")),
                    n => {
                        let end = usize::try_from(n)
                            .ok()
                            .and_then(|n| next.checked_add(n)?.checked_add(2))
                            .filter(|&end| end <= limits.bytes)
                            .ok_or(ReplyError::TooLarge(limits.bytes))?;
                        self.bulk_end = Some(end);
                    }
                },
                b'*' => match number(line)? {
                    -1 | 0 => {
                        if self.element_done() {
                            return Ok(Some(self.finish()));
                        }
                    }
                    n if n < 0 => return Err(ReplyError::Malformed("negative length")),
                    n => {
                        if self.open.len() >= limits.depth {
                            return Err(ReplyError::TooDeep(limits.depth));
                        }
                        usize::try_from(n)
                            .ok()
                            .and_then(|n| n.checked_mul(MIN_ELEMENT)?.checked_add(next))
                            .filter(|&end| end <= limits.bytes)
                            .ok_or(ReplyError::TooLarge(limits.bytes))?;
                        self.open.push(n as u64);
                    }
                },
                _ => return Err(ReplyError::Malformed("unknown type")),
            }
        }
    }

    /// One element ended: counts it in its array, and the arrays it ends in
    /// theirs. True when the reply itself ended.
    fn element_done(&mut self) -> bool {
        while let Some(left) = self.open.last_mut() {
            *left -= 1;
            if *left > 0 {
                return false;
            }
            self.open.pop();
        }
        true
    }

    /// The reply's length; the scanner starts afresh.
    fn finish(&mut self) -> usize {
        let len = self.pos;
        self.pos = 0;
        self.line_from = 0;
        self.bulk_end = None;
        self.open.clear();
        len
    }
}

/// A header's decimal number, as RESP writes it: an optional `-`, then digits.
fn number(line: &[u8]) -> Result<i64, ReplyError> {
    let digits = line.strip_prefix(b"-").unwrap_or(line);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ReplyError::Malformed("invalid number"));
    }
    core::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ReplyError::Malformed("invalid number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        depth: 4,
        bytes: 1 << 16,
    };

    /// Scans `input` fed in pieces of `step` bytes; the first result that is
    /// not "more bytes needed".
    fn fed(input: &[u8], step: usize, limits: Limits) -> Result<Option<usize>, ReplyError> {
        let mut s = Scanner::default();
        let mut end = 0;
        while end < input.len() {
            end = (end + step).min(input.len());
            if let Some(r) = s.scan(&input[..end], limits).transpose() {
                return r.map(Some);
            }
        }
        Ok(None)
    }

    #[test]
    fn whole_replies_are_found_in_any_pieces() {
        let replies: &[&[u8]] = &[
            b"+OK\r\n",
            b"-ERR no\r\n",
            b":-42\r\n",
            b"$5\r\nhello\r\n",
            b"$0\r\n\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"$4\r\na\r\nb\r\n",
            b"*3\r\n:0\r\n$2\r\nid\r\n*2\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nk\r\n$1\r\nv\r\n*0\r\n",
        ];
        for reply in replies {
            for step in [1, 2, 3, 7, reply.len()] {
                assert_eq!(fed(reply, step, LIMITS), Ok(Some(reply.len())), "{reply:?} by {step}");
            }
        }
    }

    #[test]
    fn a_reply_ends_where_the_next_begins() {
        let mut s = Scanner::default();
        let two = b"*2\r\n:1\r\n:2\r\n+OK\r\n";
        assert_eq!(s.scan(two, LIMITS), Ok(Some(12)));
        assert_eq!(s.scan(&two[12..], LIMITS), Ok(Some(5)));
    }

    #[test]
    fn an_incomplete_reply_asks_for_more() {
        for partial in [&b"*2\r\n:1\r\n"[..], b"$5\r\nhel", b"+OK\r", b"*", b"$5\r\nhello\r"] {
            assert_eq!(Scanner::default().scan(partial, LIMITS), Ok(None), "{partial:?}");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = b"*1\r\n".repeat(50_000);
        assert_eq!(Scanner::default().scan(&deep, LIMITS), Err(ReplyError::TooDeep(4)));
        let four = [&b"*1\r\n".repeat(4)[..], b":1\r\n"].concat();
        assert_eq!(Scanner::default().scan(&four, LIMITS), Ok(Some(four.len())));
    }

    #[test]
    fn a_large_bulk_is_refused_at_its_header() {
        let e = Scanner::default().scan(b"$9000000000\r\n", LIMITS);
        assert_eq!(e, Err(ReplyError::TooLarge(1 << 16)));
        let e = Scanner::default().scan(b"$99999999999999999999\r\n", LIMITS);
        assert_eq!(e, Err(ReplyError::Malformed("invalid number")));
        let e = Scanner::default().scan(b"$9223372036854775807\r\n", LIMITS);
        assert_eq!(e, Err(ReplyError::TooLarge(1 << 16)));
    }

    #[test]
    fn an_array_announcing_more_than_fits_is_refused_at_its_header() {
        let e = Scanner::default().scan(b"*5000000\r\n", LIMITS);
        assert_eq!(e, Err(ReplyError::TooLarge(1 << 16)));
    }

    #[test]
    fn a_long_line_is_refused_before_its_end() {
        let mut line = b"+".to_vec();
        line.resize(LIMITS.bytes + 10, b'x');
        assert_eq!(
            Scanner::default().scan(&line, LIMITS),
            Err(ReplyError::TooLarge(1 << 16))
        );
    }

    #[test]
    fn many_small_elements_count_against_the_size() {
        let small = Limits { depth: 4, bytes: 100 };
        let mut reply = b"*30\r\n".to_vec();
        for _ in 0..30 {
            reply.extend_from_slice(b":1\r\n");
        }
        assert_eq!(fed(&reply, 4, small), Err(ReplyError::TooLarge(100)));
    }

    #[test]
    fn malformed_replies_are_refused() {
        for bad in [
            &b"?x\r\n"[..],
            b"$x\r\n",
            b"*-2\r\n",
            b"$-2\r\n",
            b":1x\r\n",
            b"+OK\n",
            b"$1\r\nab\r\n",
            b"$\r\n",
        ] {
            assert!(
                matches!(Scanner::default().scan(bad, LIMITS), Err(ReplyError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_resumed_scan_reads_each_byte_once() {
        // A reply fed one byte at a time: every call starts where the last
        // stopped, so the line search never goes back past `line_from`.
        let mut s = Scanner::default();
        let mut reply = b"+".to_vec();
        reply.resize(1000, b'x');
        reply.extend_from_slice(b"\r\n");
        for end in 1..reply.len() {
            assert_eq!(s.scan(&reply[..end], LIMITS), Ok(None));
            assert!(s.line_from == end || end == 1);
        }
        assert_eq!(s.scan(&reply, LIMITS), Ok(Some(reply.len())));
    }
}
