//! The per-worker timer: sweeps expired entries out of every map in small
//! batches, so their memory returns without waiting for a read, and saves the
//! maps that have `state=` while they are dirty (through the saver thread,
//! `saver.rs`, so the event loop never waits for the disk). The `init_process`
//! and `exit_process` hooks of the module.

use core::ffi::c_void;
use core::ptr;

use ngx::core::{Pool, Status};
use ngx::ffi::{
    ngx_add_timer, ngx_cycle_t, ngx_event_t, ngx_exiting, ngx_int_t, ngx_log_t, ngx_process, ngx_worker, NGX_LOG_WARN,
    NGX_PROCESS_SINGLE, NGX_PROCESS_WORKER,
};
use ngx::log::DebugMask;
use ngx::{ngx_log_debug, ngx_log_error};

use crate::conf;
use crate::persist::saver::{self, Outcome};
use crate::persist::state::{self, Saved};
use crate::zone::{now, SharedMap};

/// How often the timer runs, in milliseconds.
const INTERVAL: usize = 1000;
/// Buckets swept under one hold of a map's lock.
const SWEEP_BATCH: u64 = 1024;
/// Buckets each worker sweeps per map and tick: at least this many, and at
/// least 1/`SWEEP_PASS` of the table, so the workers together cover a table
/// in at most `SWEEP_PASS` seconds.
const SWEEP_MIN: u64 = 4096;
const SWEEP_PASS: u64 = 32;
/// After a failed save, the next periodic attempt waits this many seconds.
const SAVE_RETRY: u32 = 10;

/// One worker's timer and what it remembers between ticks.
struct Worker {
    event: ngx_event_t,
    maps: Vec<&'static SharedMap>,
    /// Per map: the time of the next periodic save attempt.
    next_save: Vec<u32>,
}

/// `init_process`: arms the timer in worker processes (not in the cache
/// manager or loader) when there is any map.
///
/// # Safety
/// Called by nginx with the worker's cycle.
pub unsafe extern "C" fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // SAFETY: nginx sets these globals before calling init_process.
    let process = unsafe { ngx_process } as u32;
    if process != NGX_PROCESS_WORKER && process != NGX_PROCESS_SINGLE {
        return Status::NGX_OK.into();
    }
    crate::clock::start();
    // SAFETY: the cycle is live for the whole worker.
    let cycle = unsafe { &*cycle };
    let maps = conf::maps(cycle);
    if maps.is_empty() {
        return Status::NGX_OK.into();
    }
    // The saver removes what savers killed midway left (a worker killed while
    // saving is replaced by a new one, which starts here).
    // SAFETY: set by nginx before init_process.
    if unsafe { ngx_worker } == 0 {
        for path in maps.iter().filter_map(|m| m.spec.state.as_deref()) {
            state::remove_leftovers(path, cycle.log);
        }
    }
    for map in &maps {
        map.prefault();
    }
    // SAFETY: a plain global of the worker process.
    if unsafe { ngx_worker } == 0 && maps.iter().any(|m| m.spec.state.is_some()) && !saver::start(maps.len()) {
        ngx_log_error!(
            NGX_LOG_WARN,
            cycle.log,
            "shared map: could not start the saving thread, state files are saved by the event loop"
        );
    }
    // SAFETY: the cycle's pool outlives the worker's event loop.
    let pool = unsafe { Pool::from_ngx_pool(cycle.pool) };
    let worker = pool.allocate(Worker {
        // SAFETY: a zeroed ngx_event_t is nginx's own initial state for one.
        event: unsafe { core::mem::zeroed() },
        next_save: vec![0; maps.len()],
        maps,
    });
    if worker.is_null() {
        return ngx_ffi_error();
    }
    // SAFETY: `worker` was just allocated and lives as long as the cycle; the
    // event is cancelable, so it never delays a graceful shutdown.
    unsafe {
        let ev = ptr::addr_of_mut!((*worker).event);
        (*ev).handler = Some(on_timer);
        (*ev).data = worker as *mut c_void;
        (*ev).log = cycle.log;
        (*ev).set_cancelable(1);
        ngx_add_timer(ev, INTERVAL as _);
    }
    Status::NGX_OK.into()
}

fn ngx_ffi_error() -> ngx_int_t {
    Status::NGX_ERROR.into()
}

/// `exit_process`: every worker saves the maps still dirty on its way out.
///
/// # Safety
/// Called by nginx with the worker's cycle.
pub unsafe extern "C" fn exit_process(cycle: *mut ngx_cycle_t) {
    // SAFETY: `ngx_process` is written once by nginx before the worker runs any module code; reading it is a plain
    // load.
    let process = unsafe { ngx_process } as u32;
    if process != NGX_PROCESS_WORKER && process != NGX_PROCESS_SINGLE {
        return;
    }
    // SAFETY: the cycle is live until the process exits.
    let cycle = unsafe { &*cycle };
    let maps = conf::maps(cycle);
    // The saves under way finish first; then what changed since is saved here.
    report(&maps, saver::stop(), cycle.log, None, 0);
    for map in maps {
        save(map, cycle.log, "exit");
    }
}

fn save(map: &SharedMap, log: *mut ngx_log_t, why: &str) -> bool {
    match state::save(map, log) {
        Ok(Saved::Written { entries, bytes }) => {
            ngx_log_debug!(
                mask: DebugMask::Http,
                log,
                "shared map: \"{}\" saved on {}: {} entries, {} bytes",
                map.name,
                why,
                entries,
                bytes
            );
            true
        }
        Ok(_) => true,
        Err(_) => false,
    }
}

/// Logs what the saver thread did; a failed map waits `SAVE_RETRY` seconds.
fn report(
    maps: &[&SharedMap],
    outcomes: Vec<Outcome>,
    log: *mut ngx_log_t,
    mut next_save: Option<&mut Vec<u32>>,
    now: u32,
) {
    for Outcome { index, result } in outcomes {
        let Some(map) = maps.get(index) else { continue };
        match result {
            Ok(Saved::Written { entries, bytes }) => {
                ngx_log_debug!(
                    mask: DebugMask::Http,
                    log,
                    "shared map: \"{}\" saved by the saving thread: {} entries, {} bytes",
                    map.name,
                    entries,
                    bytes
                );
            }
            Ok(_) => {}
            Err(failed) => {
                state::log_failed(map, map.spec.state.as_deref().unwrap_or(""), &failed, log);
                if let Some(next) = next_save.as_deref_mut().and_then(|n| n.get_mut(index)) {
                    *next = now.saturating_add(SAVE_RETRY);
                }
            }
        }
    }
}

/// Sweeps one map's share of buckets for this tick, a batch per lock hold.
/// Entries expired less than the map's `stale=` ago stay for stale reads.
/// Only while the lock is free: a sweep can wait for the next tick, and the
/// event loop must not wait for a process stopped inside the lock.
fn sweep(map: &SharedMap, now: u32) -> usize {
    let now = now.saturating_sub(map.spec.stale);
    let Ok(Some(buckets)) = map.try_with(|m| m.buckets()) else {
        return 0;
    };
    let mut todo = SWEEP_MIN.max(buckets / SWEEP_PASS).min(buckets);
    let mut removed = 0;
    while todo > 0 {
        let n = todo.min(SWEEP_BATCH);
        match map.try_with(|m| m.sweep(now, n)) {
            Ok(Some(swept)) => removed += swept,
            _ => break,
        }
        todo -= n;
    }
    removed
}

unsafe extern "C" fn on_timer(ev: *mut ngx_event_t) {
    // SAFETY: `data` is the Worker this event is embedded in.
    let worker = unsafe { &mut *((*ev).data as *mut Worker) };
    // SAFETY: nginx passes the live event, whose log init_process set.
    let log = unsafe { (*ev).log };
    let now = now();
    // SAFETY: plain globals of the worker process.
    let (saver, exiting) = unsafe { (ngx_worker == 0, ngx_exiting != 0) };
    let threaded = saver && saver::running();
    if threaded {
        report(&worker.maps, saver::poll(), log, Some(&mut worker.next_save), now);
    }
    for (i, map) in worker.maps.iter().enumerate() {
        let removed = sweep(map, now);
        if removed > 0 {
            ngx_log_debug!(mask: DebugMask::Http, log, "shared map: \"{}\" swept {} expired", map.name, removed);
        }
        // While exiting, exit_process saves; until then, one worker saves.
        if !saver || exiting || map.spec.state.is_none() || now < worker.next_save[i] {
            continue;
        }
        if threaded {
            // The event loop only checks, in O(1), whether the map changed.
            if state::dirty(map) {
                saver::post(i, map, now);
            }
        } else if !save(map, log, "timer") {
            worker.next_save[i] = now.saturating_add(SAVE_RETRY);
        }
    }
    // SAFETY: the event lives as long as the cycle; re-arming a fired timer.
    unsafe { ngx_add_timer(ev, INTERVAL as _) };
}
