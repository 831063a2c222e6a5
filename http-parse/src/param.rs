//! The one error of the directives' parameter parsers (`shared_map_session`,
//! `shared_map_redis`), worded as nginx words its own: the module logs its
//! `Display` at `emerg`.

/// Why a directive's parameters were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// A word the directive does not take, or a known one with a value it
    /// never takes (`prefix=`).
    #[error("invalid parameter \"{0}\"")]
    Invalid(String),
    /// A parameter given twice.
    #[error("duplicate parameter \"{0}\"")]
    Duplicate(String),
    /// A known parameter whose value is refused: `invalid timeout "1x"`.
    #[error("invalid {what} \"{value}\"")]
    InvalidValue { what: &'static str, value: String },
    /// A parameter that needs another: `"samesite=none" requires "secure"`.
    #[error("\"{0}\" requires \"{1}\"")]
    Requires(&'static str, &'static str),
    /// A parameter the others need, and why: `no "tls_server_name=" to ...`.
    #[error("no \"{0}\" {1}")]
    Missing(&'static str, &'static str),
}
