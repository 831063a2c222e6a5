//! The HTTP API (`shared_map_api`): the handler, the JSON and Prometheus
//! renderings, answers streamed over several turns of the event loop, and the
//! dashboard page.

pub mod dashboard;
pub mod handler;
pub mod render;
pub mod stream;
