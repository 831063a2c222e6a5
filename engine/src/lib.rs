//! The shared map engine: fixed-bucket hash maps (`tinymap`, `hashmap`) that live
//! in one memory region shared by several processes, addressed by offsets.
//!
//! The engine knows nothing of nginx. It runs over any [`Arena`]: nginx's slab pool
//! in the module, [`heap::Heap`] over an ordinary or `mmap`ed region in tests and
//! benchmarks (behind the `test-heap` feature, which only tests, benchmarks and
//! fuzzing turn on). Every operation of a [`Map`] expects the caller to hold the
//! region's lock; a [`Lockless`] handle counts into and reads present keys without it.

#![deny(clippy::undocumented_unsafe_blocks)]

mod arena;
mod error;
mod hash;
#[cfg(feature = "test-heap")]
pub mod heap;
mod journal;
mod map;
pub mod matching;
mod raw;
pub mod replog;
pub mod spec;
pub mod state;
mod value;

pub use arena::Arena;
pub use error::Error;
pub use hash::hash_key;
pub use journal::Recovery;
pub use map::{Hit, Lockless, Map, MapConfig, Read, Reader, Refusal, Stats, MAX_CHAIN, MAX_EVICTIONS};
pub use matching::MatchMode;
pub use raw::ValueType;
pub use replog::{Batch, Change, LogStats, Op, Status as SyncStatus};
pub use spec::{MapKind, Spec, SpecError};
pub use value::{OwnedValue, Ttl, Value};
