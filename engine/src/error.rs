//! Why an engine operation was refused or failed.

use crate::state::StateError;

/// Why an operation was refused. A refused operation changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The map is full (entries or space) and could not evict.
    #[error("map is full")]
    NoRoom,
    /// The existing value has another type than the operation needs.
    #[error("type conflict")]
    TypeConflict,
    /// The arithmetic would overflow.
    #[error("overflow")]
    Overflow,
    /// The key is longer than the map allows.
    #[error("key too large")]
    KeyTooLarge,
    /// The value is longer than the map allows.
    #[error("value too large")]
    ValueTooLarge,
    /// `put_if_absent` found the key present.
    #[error("key exists")]
    Exists,
    /// `replace` found the key absent.
    #[error("key not found")]
    NotFound,
    /// The key of a write to an ip map is no IP address or range.
    #[error("not an IP address or range")]
    InvalidKey,
    /// The key's bucket already holds [`crate::MAX_CHAIN`] entries and the map
    /// does not evict.
    #[error("too many keys collide in one bucket")]
    ChainFull,
    /// The operating system's random source gave no hash key for a new map.
    #[error("no random hash key: {0}")]
    Random(getrandom::Error),
    /// No valid map header at the offset given (a map just made included).
    #[error("no map at the offset given")]
    NotAMap,
    /// A state file (or a snapshot) does not parse.
    #[error("invalid state: {0}")]
    State(#[from] StateError),
}
