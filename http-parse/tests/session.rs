//! The session directive's parameters, session ids and cookies.

use shared_map_http_parse::param::ParamError;
use shared_map_http_parse::session::{
    cookie_values, encode_id, flag_is_set, is_header_safe, is_valid_id, parse, parse_api, upstream_write, ApiAccess,
    SameSite, SessionSpec, UpstreamWrite,
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
            rotate: true,
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
        "rotate=off",
    ])
    .unwrap();
    assert!(!s.rotate);
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
        (&["m", "rotate"], "invalid parameter \"rotate\""),
        (&["m", "rotate=yes"], "invalid parameter \"rotate=yes\""),
        (&["m", "rotate=ON"], "invalid parameter \"rotate=ON\""),
        (&["m", "rotate=on", "rotate=off"], "duplicate parameter \"rotate\""),
    ];
    for (args, want) in cases {
        assert_eq!(spec(args).unwrap_err(), *want, "{args:?}");
    }
    assert!(matches!(parse(&["m", "x"]), Err(ParamError::Invalid(_))));
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

#[test]
fn rotation_is_on_unless_turned_off() {
    assert!(spec(&["m"]).unwrap().rotate);
    assert!(spec(&["m", "rotate=on"]).unwrap().rotate);
    assert!(!spec(&["m", "rotate=off"]).unwrap().rotate);
}

#[test]
fn the_session_api_is_read_only_unless_given_write() {
    assert_eq!(parse_api(&[]), Ok(ApiAccess::ReadOnly));
    assert_eq!(parse_api(&["write"]), Ok(ApiAccess::Write));
    assert_eq!(ApiAccess::ReadOnly.allow(), "GET, HEAD");
    assert_eq!(ApiAccess::Write.allow(), "GET, HEAD, PUT, DELETE");
    let err = |args: &[&str]| parse_api(args).unwrap_err().to_string();
    assert_eq!(err(&["readonly"]), "invalid parameter \"readonly\"");
    assert_eq!(err(&["WRITE"]), "invalid parameter \"WRITE\"");
    assert_eq!(err(&["write=1"]), "invalid parameter \"write=1\"");
    assert_eq!(err(&["write", "write"]), "invalid parameter \"write\"");
    assert_eq!(err(&["write", "x"]), "invalid parameter \"x\"");
}

#[test]
fn an_empty_upstream_write_ends_the_session() {
    assert_eq!(upstream_write(b""), UpstreamWrite::End);
    assert_eq!(upstream_write(b"user=alice"), UpstreamWrite::Store(b"user=alice"));
    assert_eq!(upstream_write(b" "), UpstreamWrite::Store(b" "));
}

#[test]
fn flags_are_set_by_any_value_but_empty_or_zero() {
    assert!(flag_is_set(b"1"));
    assert!(flag_is_set(b"yes"));
    assert!(!flag_is_set(b""));
    assert!(!flag_is_set(b"0"));
}
