//! Parsing for the HTTP side of the module, kept out of the nginx crate so that
//! it is unit-tested, property-tested and fuzzed without nginx: the API's query
//! strings (`query`), conditional requests (`conditional`) and the session store's directive, ids and cookies
//! (`session`).

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod conditional;
pub mod query;
pub mod session;
