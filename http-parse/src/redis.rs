//! The `shared_map_redis` directive's parameters: `[db=number] [password=text]
//! [prefix=text]` after the address. The address itself is nginx's to parse
//! (`ngx_parse_url`), in the module.

use crate::param::ParamError;

/// What every Redis key of the module starts with when `prefix=` is not given.
pub const DEFAULT_PREFIX: &str = "shared_map";

/// The parameters after `shared_map_redis address`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedisParams {
    /// The database `SELECT`ed after connecting; 0 is Redis's default.
    pub db: u32,
    /// Sent with `AUTH` after connecting, when given.
    pub password: Option<String>,
    /// What every key starts with: `PREFIX:MAP`, `PREFIX:MAP:log`, ...
    pub prefix: String,
}

/// Parses the words after the address.
pub fn parse<'a>(words: impl IntoIterator<Item = &'a str>) -> Result<RedisParams, ParamError> {
    let mut db = None;
    let mut password = None;
    let mut prefix = None;
    for word in words {
        let Some((key, value)) = word.split_once('=') else {
            return Err(ParamError::Invalid(word.to_owned()));
        };
        let duplicate = || ParamError::Duplicate(key.to_owned());
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
                if db.replace(n).is_some() {
                    return Err(duplicate());
                }
            }
            "password" if !value.is_empty() => {
                if password.replace(value.to_owned()).is_some() {
                    return Err(duplicate());
                }
            }
            // The prefix is a key's first part, joined with ':'; whitespace and
            // control characters would make keys that redis-cli users cannot type.
            "prefix" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic()) => {
                if prefix.replace(value.to_owned()).is_some() {
                    return Err(duplicate());
                }
            }
            _ => return Err(ParamError::Invalid(word.to_owned())),
        }
    }
    Ok(RedisParams {
        db: db.unwrap_or(0),
        password,
        prefix: prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_owned()),
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
                password: None,
                prefix: "shared_map".into()
            })
        );
    }

    #[test]
    fn every_parameter() {
        assert_eq!(
            parse(["db=3", "password=s3cret=x", "prefix=site:a"]),
            Ok(RedisParams {
                db: 3,
                password: Some("s3cret=x".into()),
                prefix: "site:a".into()
            })
        );
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
    }
}
