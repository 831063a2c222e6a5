//! State saves off the event loop. The saving worker (worker 0) hands each map
//! that changed to a thread of its own, which copies the map in batches (its
//! lock released between them), computes the checksum and does all the file
//! work: write, `fsync`, rename, the directory's `fsync` and lock. The event loop
//! only posts a job and, on its next timer tick, reads the outcome and logs it.
//!
//! One thread for every nginx build: nginx's thread pools exist only where nginx
//! was configured `--with-threads`, which the vendored nginx of the `ngx` crate
//! is not necessarily, and a save needs none of their machinery (the event loop
//! polls the outcome once a second). The thread blocks every signal, as nginx's
//! own pool threads do, so signals keep reaching the event loop's thread.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;
use std::thread::JoinHandle;

use crate::persist::state::{self, SaveError, Saved};
use crate::zone::SharedMap;

/// A map for the saver thread.
struct Job {
    index: usize,
    map: MapRef,
    now: u32,
}

/// A map of the worker's cycle.
struct MapRef(&'static SharedMap);

// SAFETY: the saver thread only calls `SharedMap::with` (the zone's mutex
// serialises it with the event loop's thread) and reads the map's immutable
// name and specification; the cycle holding the map outlives the thread, which
// `stop` joins in `exit_process`.
unsafe impl Send for MapRef {}

/// What one job did.
pub struct Outcome {
    pub index: usize,
    pub result: Result<Saved, SaveError>,
}

struct Saver {
    jobs: Sender<Job>,
    done: Receiver<Outcome>,
    thread: JoinHandle<()>,
    /// Per map: a job was posted and its outcome not read yet.
    in_flight: Vec<bool>,
}

static SAVER: Mutex<Option<Saver>> = Mutex::new(None);

/// Starts the saver thread for `maps` maps; false if it could not start (the
/// caller then saves synchronously).
pub fn start(maps: usize) -> bool {
    let (jobs, queue) = mpsc::channel::<Job>();
    let (report, done) = mpsc::channel::<Outcome>();
    // Every signal is blocked while the thread is made, so that it starts (and
    // stays) with them blocked; the event loop's mask is restored after.
    // SAFETY: sigset_t is plain data; the calls only read and write the masks.
    let old = unsafe {
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        old
    };
    let thread = std::thread::Builder::new()
        .name("shared_map save".into())
        .spawn(move || {
            for job in queue {
                let result = state::save_unlogged(job.map.0, job.now);
                if report
                    .send(Outcome {
                        index: job.index,
                        result,
                    })
                    .is_err()
                {
                    break;
                }
            }
        });
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut()) };
    let Ok(thread) = thread else {
        return false;
    };
    if let Ok(mut saver) = SAVER.lock() {
        *saver = Some(Saver {
            jobs,
            done,
            thread,
            in_flight: vec![false; maps],
        });
        return true;
    }
    false
}

/// Whether a saver thread runs.
pub fn running() -> bool {
    SAVER.lock().map(|s| s.is_some()).unwrap_or(false)
}

/// Posts a save of map `index` unless one is under way; returns whether posted.
pub fn post(index: usize, map: &'static SharedMap, now: u32) -> bool {
    let Ok(mut guard) = SAVER.lock() else {
        return false;
    };
    let Some(saver) = guard.as_mut() else {
        return false;
    };
    if saver.in_flight.get(index).copied().unwrap_or(true) {
        return false;
    }
    let posted = saver
        .jobs
        .send(Job {
            index,
            map: MapRef(map),
            now,
        })
        .is_ok();
    saver.in_flight[index] = posted;
    posted
}

/// The outcomes of the jobs finished since the last call.
pub fn poll() -> Vec<Outcome> {
    let Ok(mut guard) = SAVER.lock() else {
        return Vec::new();
    };
    let Some(saver) = guard.as_mut() else {
        return Vec::new();
    };
    let outcomes: Vec<Outcome> = saver.done.try_iter().collect();
    for o in &outcomes {
        if let Some(f) = saver.in_flight.get_mut(o.index) {
            *f = false;
        }
    }
    outcomes
}

/// Stops the thread after the job under way, if any, and waits for it.
pub fn stop() -> Vec<Outcome> {
    let saver = SAVER.lock().ok().and_then(|mut s| s.take());
    let Some(Saver { jobs, done, thread, .. }) = saver else {
        return Vec::new();
    };
    drop(jobs);
    let _ = thread.join();
    done.try_iter().collect()
}
