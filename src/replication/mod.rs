//! Replication through Redis (`shared_map_redis`): the connection and its
//! directive, TLS on it, the master found through Sentinel, and the per-map
//! exchange of changes.

pub mod redis;
pub mod redis_tls;
pub mod sentinel;
pub mod sync;
