//! Persistence (`state=`): the state file's format and its loading, the saver
//! thread, the workers' timer that triggers saves, and the lock that gives each
//! state file one nginx.

pub mod lock;
pub mod saver;
pub mod state;
pub mod timer;
