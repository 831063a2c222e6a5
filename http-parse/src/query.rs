//! Query strings of the HTTP API: splitting `a=1&b&c=%2F` into arguments and
//! percent-decoding their values, so any byte string can travel as a key.
//!
//! Decoding is RFC 3986 percent-decoding and nothing more: `%XX` (either case)
//! is the byte 0xXX, every other byte stands for itself, `+` included (as in
//! nginx's `ngx_unescape_uri`; a space is `%20`). A `%` not followed by two hex
//! digits is an error, never guessed at.

use core::fmt;

/// Why a query string was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryError {
    /// A `%` not followed by two hexadecimal digits, in the named argument.
    BadEscape(String),
    /// The same argument given twice.
    Duplicate(String),
    /// An argument this request does not take.
    Unknown(String),
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::BadEscape(name) => write!(f, "invalid percent-encoding in argument \"{name}\""),
            QueryError::Duplicate(name) => write!(f, "duplicate argument \"{name}\""),
            QueryError::Unknown(name) => write!(f, "unknown argument \"{name}\""),
        }
    }
}

impl std::error::Error for QueryError {}

/// One argument: its raw name and, when it has a `=`, its decoded value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arg {
    pub name: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// The byte a hex digit stands for.
fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `s`; `None` if a `%` is not followed by two hex digits.
pub fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hi = hex(*s.get(i + 1)?)?;
            let lo = hex(*s.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Percent-encodes every byte outside RFC 3986's unreserved set.
pub fn percent_encode(s: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
    out
}

/// Splits a query string into its arguments, in order, decoding names and
/// values. Empty pieces (`a=1&&b=2`, a trailing `&`) are skipped. Only the
/// names in `allowed` are accepted, each at most once.
pub fn parse(query: &[u8], allowed: &[&str]) -> Result<Vec<Arg>, QueryError> {
    let mut args: Vec<Arg> = Vec::new();
    for piece in query.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = match piece.iter().position(|&b| b == b'=') {
            Some(eq) => (&piece[..eq], Some(&piece[eq + 1..])),
            None => (piece, None),
        };
        let shown = || String::from_utf8_lossy(raw_name).into_owned();
        let name = percent_decode(raw_name).ok_or_else(|| QueryError::BadEscape(shown()))?;
        if !allowed.iter().any(|a| a.as_bytes() == name.as_slice()) {
            return Err(QueryError::Unknown(String::from_utf8_lossy(&name).into_owned()));
        }
        if args.iter().any(|a| a.name == name) {
            return Err(QueryError::Duplicate(String::from_utf8_lossy(&name).into_owned()));
        }
        let value = match raw_value {
            Some(v) => Some(percent_decode(v).ok_or_else(|| QueryError::BadEscape(shown()))?),
            None => None,
        };
        args.push(Arg { name, value });
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_keeps_plus() {
        assert_eq!(percent_decode(b"a%2Fb%2fc").unwrap(), b"a/b/c");
        assert_eq!(percent_decode(b"a+b").unwrap(), b"a+b");
        assert_eq!(percent_decode(b"%00%FF%20").unwrap(), b"\0\xff ");
        assert_eq!(percent_decode(b"").unwrap(), b"");
    }

    #[test]
    fn refuses_bad_escapes() {
        for bad in [&b"%"[..], b"%2", b"%zz", b"a%g0", b"%%41"] {
            assert_eq!(percent_decode(bad), None, "{:?}", bad);
        }
    }

    #[test]
    fn encode_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(percent_decode(percent_encode(&all).as_bytes()).unwrap(), all);
    }

    #[test]
    fn splits_arguments() {
        let args = parse(b"key=a%26b&nx&&ttl=", &["key", "nx", "ttl"]).unwrap();
        assert_eq!(
            args,
            vec![
                Arg {
                    name: b"key".to_vec(),
                    value: Some(b"a&b".to_vec())
                },
                Arg {
                    name: b"nx".to_vec(),
                    value: None
                },
                Arg {
                    name: b"ttl".to_vec(),
                    value: Some(Vec::new())
                },
            ]
        );
    }

    #[test]
    fn refuses_unknown_duplicate_and_malformed() {
        assert_eq!(parse(b"foo=1", &["key"]), Err(QueryError::Unknown("foo".into())));
        assert_eq!(
            parse(b"key=1&key=2", &["key"]),
            Err(QueryError::Duplicate("key".into()))
        );
        assert_eq!(parse(b"key=%4", &["key"]), Err(QueryError::BadEscape("key".into())));
        assert_eq!(parse(b"k%ey=1", &["key"]), Err(QueryError::BadEscape("k%ey".into())));
    }
}
