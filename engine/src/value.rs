//! Values as stored in a map and as copied out of it, and the time to live of a write.

use crate::raw::ValueType;

/// A value as stored: `int` and `long` inside the entry, `string` in the arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    Int(i32),
    Long(i64),
    Str(&'a [u8]),
}

impl Value<'_> {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::Int(_) => ValueType::Int,
            Value::Long(_) => ValueType::Long,
            Value::Str(_) => ValueType::String,
        }
    }

    pub fn to_owned(&self) -> OwnedValue {
        match *self {
            Value::Int(v) => OwnedValue::Int(v),
            Value::Long(v) => OwnedValue::Long(v),
            Value::Str(s) => OwnedValue::Str(s.to_vec()),
        }
    }
}

/// A value copied out of the map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnedValue {
    Int(i32),
    Long(i64),
    Str(Vec<u8>),
}

impl OwnedValue {
    pub fn as_value(&self) -> Value<'_> {
        match self {
            OwnedValue::Int(v) => Value::Int(*v),
            OwnedValue::Long(v) => Value::Long(*v),
            OwnedValue::Str(s) => Value::Str(s),
        }
    }
}

/// The time to live of a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ttl {
    /// The map's `timeout`.
    Default,
    /// Never expires.
    Never,
    /// Expires this many seconds from now.
    Secs(u32),
}
