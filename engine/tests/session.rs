//! The session store's engine parts: sliding expiry, the directive's
//! parameters, ids and cookies.

mod common;

use common::{map, new_map, KINDS};
use shared_map_engine::session_spec::{
    cookie_values, encode_id, is_header_safe, is_valid_id, parse, SameSite, SessionSpec, SessionSpecError,
};
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

fn spec(args: &[&str]) -> Result<SessionSpec, String> {
    parse(args).map_err(|e| e.to_string())
}

#[test]
fn session_defaults() {
    let s = spec(&["sessions"]).unwrap();
    assert_eq!(
        s,
        SessionSpec {
            map: "sessions".into(),
            cookie: "SMSESSION".into(),
            timeout: 1800,
            secure: false,
            samesite: SameSite::Lax,
            path: "/".into(),
            domain: None,
        }
    );
}

#[test]
fn session_every_parameter() {
    let s = spec(&[
        "m",
        "cookie=sid",
        "timeout=1h",
        "secure",
        "samesite=none",
        "path=/app",
        "domain=example.com",
    ])
    .unwrap();
    assert_eq!(s.cookie, "sid");
    assert_eq!(s.timeout, 3600);
    assert!(s.secure);
    assert_eq!(s.samesite, SameSite::None);
    assert_eq!(s.path, "/app");
    assert_eq!(s.domain.as_deref(), Some("example.com"));
    assert_eq!(spec(&["m", "samesite=Strict"]).unwrap().samesite, SameSite::Strict);
}

#[test]
fn session_refuses_bad_parameters_in_nginx_wording() {
    let cases: &[(&[&str], &str)] = &[
        (&["m", "foo"], "invalid parameter \"foo\""),
        (&["m", "foo=1"], "invalid parameter \"foo=1\""),
        (&["m", "secure=1"], "invalid parameter \"secure=1\""),
        (&["m", "cookie"], "invalid parameter \"cookie\""),
        (&["m", "cookie=a;b"], "invalid cookie name \"a;b\""),
        (&["m", "cookie="], "invalid cookie name \"\""),
        (&["m", "timeout=abc"], "invalid timeout \"abc\""),
        (&["m", "timeout=0"], "invalid timeout \"0\""),
        (&["m", "samesite=maybe"], "invalid parameter \"samesite=maybe\""),
        (&["m", "samesite=none"], "\"samesite=none\" requires \"secure\""),
        (&["m", "path=app"], "invalid parameter \"path=app\""),
        (&["m", "path=/a;b"], "invalid parameter \"path=/a;b\""),
        (&["m", "domain="], "invalid parameter \"domain=\""),
        (&["m", "secure", "secure"], "duplicate parameter \"secure\""),
        (&["m", "timeout=1m", "timeout=2m"], "duplicate parameter \"timeout\""),
    ];
    for (args, want) in cases {
        assert_eq!(spec(args).unwrap_err(), *want, "{args:?}");
    }
    assert!(matches!(parse(&["m", "x"]), Err(SessionSpecError::InvalidParameter(_))));
}

#[test]
fn cookies_carry_every_attribute() {
    let id = encode_id(&[0xab; 16]);
    let s = spec(&["m"]).unwrap();
    assert_eq!(
        s.set_cookie(&id),
        "SMSESSION=abababababababababababababababab; Path=/; HttpOnly; SameSite=Lax"
    );
    let s = spec(&[
        "m",
        "cookie=sid",
        "secure",
        "samesite=strict",
        "path=/app",
        "domain=.example.com",
    ])
    .unwrap();
    assert_eq!(
        s.set_cookie(&id),
        "sid=abababababababababababababababab; Path=/app; Domain=.example.com; HttpOnly; Secure; SameSite=Strict"
    );
    assert_eq!(
        s.expire_cookie(),
        "sid=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:01 GMT; Path=/app; Domain=.example.com; HttpOnly; \
         Secure; SameSite=Strict"
    );
}

#[test]
fn ids_are_lowercase_hex_and_checked_strictly() {
    let id = encode_id(&[
        0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0, 0xff, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60,
    ]);
    assert_eq!(&id, b"0123456789abcdef00ff102030405060");
    assert!(is_valid_id(&id));
    assert!(!is_valid_id(b"0123456789ABCDEF00ff102030405060"), "upper case");
    assert!(!is_valid_id(b"0123456789abcdef00ff10203040506"), "short");
    assert!(!is_valid_id(b"0123456789abcdef00ff1020304050600"), "long");
    assert!(!is_valid_id(b"0123456789abcdef00ff10203040506g"));
    assert!(!is_valid_id(b""));
}

#[test]
fn cookie_values_finds_every_cookie_of_the_name() {
    let line = b"a=1; SMSESSION=first ;b=2;SMSESSION=second; SMSESSIONX=no; xSMSESSION=no; SMSESSION";
    let got: Vec<&[u8]> = cookie_values(line, b"SMSESSION").collect();
    assert_eq!(got, [&b"first"[..], b"second"]);
    assert_eq!(cookie_values(b"", b"SMSESSION").count(), 0);
    assert_eq!(
        cookie_values(b"SMSESSION=", b"SMSESSION").collect::<Vec<_>>(),
        [&b""[..]]
    );
}

#[test]
fn header_safe_data_has_no_cr_lf_or_nul() {
    assert!(is_header_safe(b"user=alice; role=admin \xff"));
    assert!(!is_header_safe(b"a\r\nX-Evil: 1"));
    assert!(!is_header_safe(b"a\nb"));
    assert!(!is_header_safe(b"a\0b"));
}
