//! The shared map engine: fixed-bucket hash maps (`tinymap`, `hashmap`) that live
//! in one memory region shared by several processes, addressed by offsets.
//!
//! The engine knows nothing of nginx. It runs over any [`Arena`]: nginx's slab pool
//! in the module, [`heap::Heap`] over an ordinary or `mmap`ed region in tests and
//! benchmarks (behind the `test-heap` feature, which only tests, benchmarks and
//! fuzzing turn on). Every operation expects the caller to hold the region's lock.

#![deny(clippy::undocumented_unsafe_blocks)]

mod arena;
#[cfg(feature = "test-heap")]
pub mod heap;
mod journal;
mod map;
pub mod matching;
mod raw;
pub mod replog;
pub mod spec;
pub mod state;

pub use arena::Arena;
pub use journal::Recovery;
pub use map::{
    hash_key, Error, Hit, Map, MapConfig, OwnedValue, Read, Refusal, Stats, Ttl, Value, MAX_CHAIN, MAX_EVICTIONS,
};
pub use matching::MatchMode;
pub use raw::ValueType;
pub use replog::{Batch, Change, LogStats, Op, Status as SyncStatus};
pub use spec::{MapKind, Spec, SpecError};
