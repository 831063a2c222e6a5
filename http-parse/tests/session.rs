//! The session directive's parameters, session ids and cookies.

use shared_map_http_parse::session::{
    cookie_values, encode_id, is_header_safe, is_valid_id, parse, SameSite, SessionSpec, SessionSpecError,
};

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
