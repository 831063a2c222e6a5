//! Replication through Redis (`shared_map_redis`): the directive, the
//! connection, TLS on it, the master found through Sentinel, the round trip
//! said on the connection, and the per-map exchange of changes.

pub mod connection;
mod io;
pub mod redis;
pub mod redis_tls;
mod round_trip;
pub mod sentinel;
pub mod sync;
