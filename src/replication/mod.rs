//! Replication through Redis (`shared_map_redis`): the connection and its
//! directive, and the per-map exchange of changes.

pub mod redis;
pub mod sync;
