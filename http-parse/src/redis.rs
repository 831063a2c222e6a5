//! The `shared_map_redis` directive's parameters: `[db=number] [user=name]
//! [password=text] [prefix=text] [tls] [tls_verify=on|off]
//! [tls_trusted_certificate=file] [tls_server_name=name]
//! [sentinel=address[,address...]] [sentinel_password=text]` after the
//! address (with `sentinel=`, the master's name). Addresses are nginx's to
//! parse (`ngx_parse_url`), in the module.

use core::fmt;

use crate::param::ParamError;

/// What every Redis key of the module starts with when `prefix=` is not given.
pub const DEFAULT_PREFIX: &str = "shared_map";

/// The parameters after `shared_map_redis address`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RedisParams {
    /// The database `SELECT`ed after connecting; 0 is Redis's default.
    pub db: u32,
    /// The ACL user: `AUTH user password` instead of `AUTH password`.
    pub user: Option<String>,
    /// Sent with `AUTH` after connecting, when given.
    pub password: Option<String>,
    /// What every key starts with: `PREFIX:MAP`, `PREFIX:MAP:log`, ...
    pub prefix: String,
    /// TLS to Redis, when given.
    pub tls: Option<TlsParams>,
    /// The sentinels to ask for the master, when given.
    pub sentinel: Option<SentinelParams>,
}

/// `sentinel=` and `sentinel_password=`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SentinelParams {
    /// The sentinels' addresses, in the order given.
    pub addrs: Vec<String>,
    /// Sent with `AUTH` to each sentinel, when given.
    pub password: Option<String>,
}

impl fmt::Debug for SentinelParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelParams")
            .field("addrs", &self.addrs)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// `tls` and its parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsParams {
    /// The server's certificate is verified (`tls_verify=on`, the default).
    pub verify: bool,
    /// The CA certificates the server's is verified against (a file).
    pub trusted_certificate: Option<String>,
    /// The name sent in SNI and checked in the certificate; `None`: the host
    /// of the address.
    pub server_name: Option<String>,
}

/// Written without the password: `Debug` output ends up in logs and panics.
impl fmt::Debug for RedisParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisParams")
            .field("db", &self.db)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("prefix", &self.prefix)
            .field("tls", &self.tls)
            .field("sentinel", &self.sentinel)
            .finish()
    }
}

fn set<T>(slot: &mut Option<T>, value: T, key: &str) -> Result<(), ParamError> {
    if slot.replace(value).is_some() {
        return Err(ParamError::Duplicate(key.to_owned()));
    }
    Ok(())
}

/// Parses the words after the address.
pub fn parse<'a>(words: impl IntoIterator<Item = &'a str>) -> Result<RedisParams, ParamError> {
    let mut db = None;
    let mut user = None;
    let mut password = None;
    let mut prefix = None;
    let mut tls = None;
    let mut verify = None;
    let mut trusted = None;
    let mut server_name = None;
    let mut sentinel = None;
    let mut sentinel_password = None;
    for word in words {
        if word == "tls" {
            set(&mut tls, (), word)?;
            continue;
        }
        let Some((key, value)) = word.split_once('=') else {
            return Err(ParamError::Invalid(word.to_owned()));
        };
        match key {
            "db" => {
                let n = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n <= i32::MAX as u32 && !value.starts_with('+'))
                    .ok_or_else(|| ParamError::InvalidValue {
                        what: "db",
                        value: value.to_owned(),
                    })?;
                set(&mut db, n, key)?;
            }
            // A user name is one word to Redis (ACL SETUSER); a space or a
            // control character would split `AUTH`'s meaning in logs.
            "user" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic()) => {
                set(&mut user, value.to_owned(), key)?;
            }
            "password" if !value.is_empty() => set(&mut password, value.to_owned(), key)?,
            // The prefix is a key's first part, joined with ':'; whitespace and
            // control characters would make keys that redis-cli users cannot type.
            "prefix" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic()) => {
                set(&mut prefix, value.to_owned(), key)?;
            }
            "tls_verify" if value == "on" || value == "off" => set(&mut verify, value == "on", key)?,
            "tls_trusted_certificate" if !value.is_empty() => set(&mut trusted, value.to_owned(), key)?,
            "tls_server_name" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic()) => {
                set(&mut server_name, value.to_owned(), key)?;
            }
            "sentinel" if !value.is_empty() && value.split(',').all(|a| !a.is_empty()) => {
                set(&mut sentinel, value.split(',').map(str::to_owned).collect(), key)?;
            }
            "sentinel_password" if !value.is_empty() => set(&mut sentinel_password, value.to_owned(), key)?,
            _ => return Err(ParamError::Invalid(word.to_owned())),
        }
    }
    let sentinel = match (sentinel, sentinel_password) {
        (Some(addrs), password) => Some(SentinelParams { addrs, password }),
        (None, Some(_)) => return Err(ParamError::Requires("sentinel_password=", "sentinel=")),
        (None, None) => None,
    };
    if sentinel.is_some() && server_name.is_none() && tls.is_some() && verify != Some(false) {
        return Err(ParamError::Missing(
            "tls_server_name=",
            "to check the certificate of a master named by \"sentinel=\"",
        ));
    }
    if user.is_some() && password.is_none() {
        return Err(ParamError::Requires("user=", "password="));
    }
    let tls = match tls {
        Some(()) => {
            let verify = verify.unwrap_or(true);
            if verify && trusted.is_none() {
                return Err(ParamError::Missing(
                    "tls_trusted_certificate=",
                    "to verify Redis's certificate against (or \"tls_verify=off\")",
                ));
            }
            Some(TlsParams {
                verify,
                trusted_certificate: trusted,
                server_name,
            })
        }
        None => {
            let given = [
                ("tls_verify=", verify.is_some()),
                ("tls_trusted_certificate=", trusted.is_some()),
                ("tls_server_name=", server_name.is_some()),
            ];
            if let Some((name, _)) = given.into_iter().find(|(_, given)| *given) {
                return Err(ParamError::Requires(name, "tls"));
            }
            None
        }
    };
    Ok(RedisParams {
        db: db.unwrap_or(0),
        user,
        password,
        prefix: prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_owned()),
        tls,
        sentinel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        assert_eq!(
            parse([]),
            Ok(RedisParams {
                db: 0,
                user: None,
                password: None,
                prefix: "shared_map".into(),
                tls: None,
                sentinel: None,
            })
        );
    }

    #[test]
    fn every_parameter() {
        assert_eq!(
            parse([
                "db=3",
                "user=app",
                "password=s3cret=x",
                "prefix=site:a",
                "tls",
                "tls_trusted_certificate=/etc/ca.pem",
                "tls_server_name=redis.example.com",
            ]),
            Ok(RedisParams {
                db: 3,
                user: Some("app".into()),
                password: Some("s3cret=x".into()),
                prefix: "site:a".into(),
                tls: Some(TlsParams {
                    verify: true,
                    trusted_certificate: Some("/etc/ca.pem".into()),
                    server_name: Some("redis.example.com".into()),
                }),
                sentinel: None,
            })
        );
    }

    #[test]
    fn tls_without_verification_needs_no_ca() {
        let p = parse(["tls", "tls_verify=off"]).unwrap();
        assert_eq!(
            p.tls,
            Some(TlsParams {
                verify: false,
                trusted_certificate: None,
                server_name: None
            })
        );
    }

    #[test]
    fn sentinels() {
        let p = parse(["sentinel=10.0.0.1:26379,s2,[::1]:26380", "sentinel_password=pw"]).unwrap();
        assert_eq!(
            p.sentinel,
            Some(SentinelParams {
                addrs: vec!["10.0.0.1:26379".into(), "s2".into(), "[::1]:26380".into()],
                password: Some("pw".into()),
            })
        );
    }

    #[test]
    fn debug_hides_the_password() {
        let p = parse([
            "user=app",
            "password=hunter2",
            "sentinel=s",
            "sentinel_password=hunter3",
        ])
        .unwrap();
        let text = format!("{p:?}");
        assert!(!text.contains("hunter"), "{text}");
        assert!(text.contains("app"), "{text}");
    }

    #[test]
    fn refusals_in_nginx_wording() {
        let err = |w: &[&str]| parse(w.iter().copied()).unwrap_err().to_string();
        assert_eq!(err(&["db=x"]), "invalid db \"x\"");
        assert_eq!(err(&["db=-1"]), "invalid db \"-1\"");
        assert_eq!(err(&["db=+1"]), "invalid db \"+1\"");
        assert_eq!(err(&["db=4294967295"]), "invalid db \"4294967295\"");
        assert_eq!(err(&["db=1", "db=2"]), "duplicate parameter \"db\"");
        assert_eq!(err(&["prefix=a", "prefix=b"]), "duplicate parameter \"prefix\"");
        assert_eq!(err(&["password="]), "invalid parameter \"password=\"");
        assert_eq!(err(&["prefix="]), "invalid parameter \"prefix=\"");
        assert_eq!(err(&["prefix=a b"]), "invalid parameter \"prefix=a b\"");
        assert_eq!(err(&["sync"]), "invalid parameter \"sync\"");
        assert_eq!(err(&["timeout=1s"]), "invalid parameter \"timeout=1s\"");
        assert_eq!(err(&["user=app"]), "\"user=\" requires \"password=\"");
        assert_eq!(err(&["user=", "password=x"]), "invalid parameter \"user=\"");
        assert_eq!(err(&["tls", "tls"]), "duplicate parameter \"tls\"");
        assert_eq!(err(&["tls_verify=off"]), "\"tls_verify=\" requires \"tls\"");
        assert_eq!(err(&["tls_server_name=a"]), "\"tls_server_name=\" requires \"tls\"");
        assert_eq!(err(&["tls", "tls_verify=yes"]), "invalid parameter \"tls_verify=yes\"");
        assert!(err(&["tls"]).starts_with("no \"tls_trusted_certificate=\""));
        assert_eq!(err(&["sentinel="]), "invalid parameter \"sentinel=\"");
        assert_eq!(err(&["sentinel=a,,b"]), "invalid parameter \"sentinel=a,,b\"");
        assert_eq!(
            err(&["sentinel_password=x"]),
            "\"sentinel_password=\" requires \"sentinel=\""
        );
        assert_eq!(
            err(&["sentinel=a", "tls", "tls_trusted_certificate=ca.pem"]),
            "no \"tls_server_name=\" to check the certificate of a master named by \"sentinel=\""
        );
    }

    #[test]
    fn a_refused_password_is_not_quoted() {
        let e = parse(["password=hunter2", "password=hunter3"]).unwrap_err().to_string();
        assert!(!e.contains("hunter"), "{e}");
    }
}
