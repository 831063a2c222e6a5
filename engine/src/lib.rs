//! The shared map engine: fixed-bucket hash maps (`tinymap`, `hashmap`) that live
//! in one memory region shared by several processes, addressed by offsets.
//!
//! The engine knows nothing of nginx. It runs over any [`Arena`]: nginx's slab pool
//! in the module, [`heap::Heap`] over an ordinary or `mmap`ed region in tests and
//! benchmarks. Every operation expects the caller to hold the region's lock.

mod arena;
pub mod heap;
mod map;
pub mod query;
mod raw;
pub mod session_spec;
pub mod spec;
pub mod state;

pub use arena::Arena;
pub use map::{hash_key, Error, Map, MapConfig, OwnedValue, Refusal, Stats, Ttl, Value, MAX_EVICTIONS};
pub use raw::ValueType;
pub use spec::{MapKind, Spec, SpecError};
