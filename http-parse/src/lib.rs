//! Parsing for the HTTP side of the module, kept out of the nginx crate so that
//! it is unit-tested, property-tested and fuzzed without nginx: the API's
//! request planning (`api`) and query strings (`query`), conditional requests
//! (`conditional`), which requests of browsers the API serves (`browser`), the
//! session store's directive, ids and cookies (`session`), the
//! `shared_map_redis` directive's parameters (`redis`), what Redis Sentinel
//! answers (`sentinel`), the one error of those
//! directives' parameters (`param`), the bounds on Redis's replies (`resp`) and
//! the rate at which a repeated failure is logged (`throttle`).

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod api;
pub mod browser;
pub mod conditional;
pub mod param;
pub mod query;
pub mod redis;
pub mod resp;
pub mod sentinel;
pub mod session;
pub mod throttle;
