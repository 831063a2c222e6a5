//! Counting and reading by key: `shared_map_count` (the log phase), the
//! `$shared_map_*` variables, and the named variables of `shared_map_var` and
//! `shared_map_incr`.

pub mod count;
pub mod named;
pub mod variables;
