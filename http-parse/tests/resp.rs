//! The reply scanner against the decoder the module hands whole replies to
//! (`redis-protocol`): every reply that decoder encodes within the bounds is
//! found whole, at its exact length, however its bytes are split; a reply
//! nested too deep or too large is refused; whatever the bytes, the decoder
//! takes exactly a reply the scanner accepts, or refuses it (an error reply
//! that is not UTF-8), and finds it no deeper than the bound.

use proptest::prelude::*;
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::encode::encode;
use redis_protocol::resp2::types::{OwnedFrame, Resp2Frame};
use shared_map_http_parse::resp::{Limits, ReplyError, Scanner};

fn frame(depth: u32) -> impl Strategy<Value = OwnedFrame> {
    let leaf = prop_oneof![
        "[a-zA-Z0-9 :_-]{0,12}".prop_map(|s| OwnedFrame::SimpleString(s.into_bytes())),
        "[a-zA-Z0-9 :_-]{0,12}".prop_map(OwnedFrame::Error),
        any::<i64>().prop_map(OwnedFrame::Integer),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(OwnedFrame::BulkString),
        Just(OwnedFrame::Null),
    ];
    leaf.prop_recursive(depth, 64, 6, |inner| {
        proptest::collection::vec(inner, 0..6).prop_map(OwnedFrame::Array)
    })
}

/// Arrays nested, as the scanner counts them: an empty array holds nothing
/// to decode within it, so it adds no level.
fn depth(f: &OwnedFrame) -> usize {
    match f {
        OwnedFrame::Array(items) if !items.is_empty() => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn bytes(f: &OwnedFrame) -> Vec<u8> {
    let mut out = vec![0; f.encode_len(false)];
    let n = encode(&mut out, f, false).expect("encodes");
    out.truncate(n);
    out
}

/// Feeds `input` in pieces of `step` bytes; the first answer that is not
/// "more bytes needed", or `Ok(None)`.
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

proptest! {
    #[test]
    fn every_encoded_reply_within_bounds_is_found_whole(f in frame(4), step in 1usize..64, tail in proptest::collection::vec(any::<u8>(), 0..8)) {
        let reply = bytes(&f);
        let limits = Limits { depth: 4, bytes: reply.len() };
        let mut input = reply.clone();
        input.extend_from_slice(&tail);
        prop_assert_eq!(fed(&input, step, limits), Ok(Some(reply.len())));
        let (decoded, used) = decode(&input[..reply.len()]).unwrap().unwrap();
        prop_assert_eq!(used, reply.len());
        prop_assert_eq!(decoded, f);
    }

    #[test]
    fn a_reply_beyond_the_bounds_is_refused(f in frame(6), step in 1usize..64) {
        let reply = bytes(&f);
        let d = depth(&f);
        if d > 2 {
            let r = fed(&reply, step, Limits { depth: d - 1, bytes: reply.len() });
            prop_assert_eq!(r, Err(ReplyError::TooDeep(d - 1)));
        }
        if reply.len() > 1 {
            let r = fed(&reply, step, Limits { depth: 6, bytes: reply.len() - 1 });
            prop_assert_eq!(r, Err(ReplyError::TooLarge(reply.len() - 1)));
        }
    }

    #[test]
    fn the_decoder_agrees_with_whatever_the_scanner_accepts(input in proptest::collection::vec(
        prop_oneof![Just(b'*'), Just(b'$'), Just(b':'), Just(b'+'), Just(b'-'), Just(b'\r'), Just(b'\n'),
                    Just(b'1'), Just(b'2'), Just(b'0'), any::<u8>()], 0..64), step in 1usize..16) {
        let limits = Limits { depth: 3, bytes: 48 };
        let whole = Scanner::default().scan(&input, limits);
        prop_assert_eq!(&fed(&input, step, limits), &whole);
        if let Ok(Some(len)) = whole {
            match decode(&input[..len]) {
                Ok(Some((f, used))) => {
                    prop_assert_eq!(used, len);
                    prop_assert!(depth(&f) <= 3);
                }
                Ok(None) => prop_assert!(false, "{:?}: the decoder wants more", &input[..len]),
                Err(_) => {}
            }
        }
    }
}
