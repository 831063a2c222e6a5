//! `state=path`: loading a map's state file into a fresh zone, and saving the
//! map to it (temporary file, fsync, rename) so a crash never leaves a
//! half-written file. The format itself is the engine's (`state.rs`).
//!
//! Savers: the worker with `ngx_worker == 0` saves about once a second while the
//! map is dirty (its generation differs from the last saved one), and every
//! worker saves on its way out (a graceful or fast stop, or the end of an old
//! worker after a reload) if the map is still dirty. Saves of one directory are
//! serialised by an exclusive `flock()` on the directory, and a saver renames its
//! file into place only if its snapshot is newer than the last one saved (the
//! zone keeps that generation), so a slow saver of an older snapshot can never
//! replace a newer file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use core::ffi::c_void;
use core::ptr::NonNull;

use ngx::ffi::{
    ngx_core_conf_t, ngx_core_module, ngx_cycle, ngx_cycle_t, ngx_list_part_t, ngx_log_t, ngx_pool_cleanup_add,
    ngx_shm_zone_t, ngx_test_config, NGX_LOG_ERR, NGX_LOG_NOTICE, NGX_LOG_WARN,
};
use ngx::ngx_log_error;
use shared_map_engine::state;

use crate::log::map_log;
use crate::persist::lock::{self, Refused};
use crate::zone::{now, SharedMap, ZoneUnavailable};

/// An I/O error as nginx prints one: `(13: Permission denied)`.
struct OsError<'a>(&'a io::Error);

impl core::fmt::Display for OsError<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let text = self.0.to_string();
        let text = text.rsplit_once(" (os error").map_or(text.as_str(), |(t, _)| t);
        match self.0.raw_os_error() {
            Some(code) => write!(f, "({code}: {text})"),
            None => write!(f, "({text})"),
        }
    }
}

/// Fills a fresh map (the zone's `init` found no data to keep): from the zone
/// it had before a reload that changed its space, else from its state file.
/// The load held the lock before any worker could wait for it: lock
/// statistics start with the workers.
///
/// # Safety
/// `shm_zone` is the zone nginx is initialising, whose data is `map`.
pub unsafe fn fill_fresh(shm_zone: *mut ngx_shm_zone_t, map: &SharedMap, log: *mut ngx_log_t) {
    if map.spec.state.is_none() || !fill_from_old(shm_zone, map, log) {
        load(map, log);
    }
    let _ = map.with(|m| m.reset_lock_stats());
}

/// Loads the map's state file into its fresh, empty zone (in the master, from
/// `init_zone`). A missing file is normal; a corrupt or incompatible one is
/// renamed aside and the map starts empty. nginx starts either way.
pub fn load(map: &SharedMap, log: *mut ngx_log_t) {
    let Some(path) = map.spec.state.as_deref() else {
        return;
    };
    remove_leftovers(path, log);
    let bytes = match read_regular(path) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            ngx_log_error!(
                NGX_LOG_ERR,
                log,
                "\"{}\" is not a regular file, shared map \"{}\" starts empty and does not save there",
                path,
                map.name
            );
            return;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        // O_NOFOLLOW: a symbolic link at the path is never followed, so the
        // master (often root) reads no file someone else chose.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            ngx_log_error!(
                NGX_LOG_ERR,
                log,
                "\"{}\" is a symbolic link, which is not followed: shared map \"{}\" starts empty \
                 and its saves replace the link",
                path,
                map.name
            );
            return;
        }
        Err(e) => {
            ngx_log_error!(
                NGX_LOG_ERR,
                log,
                "open() \"{}\" failed {}, shared map \"{}\" starts empty",
                path,
                OsError(&e),
                map.name
            );
            return;
        }
    };
    let now = now();
    let parsed = match state::parse(&bytes) {
        Ok(parsed) => parsed,
        Err(err) => {
            let aside = format!("{path}.corrupt-{now}");
            match fs::rename(path, &aside) {
                Ok(()) => {
                    map_log!(
                        NGX_LOG_ERR,
                        log,
                        map.name,
                        ": invalid state file \"{}\": {}, renamed to \"{}\"; the map starts empty",
                        path,
                        err,
                        aside
                    );
                }
                Err(e) => {
                    map_log!(
                        NGX_LOG_ERR,
                        log,
                        map.name,
                        ": invalid state file \"{}\": {}, rename() to \"{}\" failed {}; the map starts empty",
                        path,
                        err,
                        aside,
                        OsError(&e)
                    );
                }
            }
            return;
        }
    };
    fill(map, &parsed, now, &format!("\"{path}\""), true, log);
}

/// Stores the records of `parsed` in the map's fresh zone and logs what came of
/// it; `source` names where they came from. `saved`: the records are what the
/// state file holds, so the map starts clean.
fn fill(map: &SharedMap, parsed: &state::State<'_>, now: u32, source: &str, saved: bool, log: *mut ngx_log_t) {
    let report = map.with(|m| {
        let report = state::load(m, parsed, now);
        if saved {
            let generation = m.generation();
            m.set_saved_generation(generation);
        }
        report
    });
    let Ok(report) = report else {
        return;
    };
    if parsed.kind != Some(map.spec.kind) {
        map_log!(
            NGX_LOG_WARN,
            log,
            map.name,
            ": {}{} was saved by a {}, loading it into a {}",
            if saved { "state file " } else { "" },
            source,
            parsed.kind.map_or("map of unknown type", |k| k.name()),
            map.spec.kind.name()
        );
    }
    if report.duplicates > 0 {
        map_log!(
            NGX_LOG_WARN,
            log,
            map.name,
            ": {} records in {} repeat a key of an earlier one; the last one is kept",
            report.duplicates,
            source
        );
    }
    if report.dropped() > 0 {
        map_log!(
            NGX_LOG_WARN,
            log,
            map.name,
            ": {} of {} entries in {} were not loaded: {} found no room, {} are too large for a {}",
            report.dropped(),
            parsed.count,
            source,
            report.no_room,
            report.too_large,
            map.spec.kind.name()
        );
    }
    map_log!(
        NGX_LOG_NOTICE,
        log,
        map.name,
        ": loaded {} entries from {}, {} expired meanwhile",
        report.loaded,
        source,
        report.expired
    );
}

/// On a reload that changes a `state=` map's space, nginx gives the map a new
/// zone while the old one is still mapped in the master, and still used by the
/// old workers until they exit. The new map is filled from the old zone's
/// current contents rather than from the state file, which may be a second
/// old. The old map is later marked as saved for good, so that no old worker's
/// last save replaces the file with a snapshot the new map has moved on from;
/// the new map is saved by the new worker 0 within a second (the old map is
/// retired in `init_module`, by [`retire_old_maps`]). What an old
/// worker writes after this copy (requests in flight at the reload) is lost.
/// Returns false when there is no old zone (nginx starts).
fn fill_from_old(shm_zone: *mut ngx_shm_zone_t, map: &SharedMap, log: *mut ngx_log_t) -> bool {
    // SAFETY: in the master, during ngx_init_cycle, `ngx_cycle` is still the
    // running (old) cycle; its zone list and zones are alive and mapped until
    // the new cycle is ready.
    let old = unsafe {
        let cycle = ngx_cycle;
        if cycle.is_null() {
            return false;
        }
        let me = &*shm_zone;
        let mut part: *const ngx_list_part_t = &(*cycle).shared_memory.part;
        let mut found: *const ngx_shm_zone_t = core::ptr::null();
        while !part.is_null() && found.is_null() {
            let zones = (*part).elts as *const ngx_shm_zone_t;
            for i in 0..(*part).nelts {
                let z = &*zones.add(i);
                if z.tag == me.tag
                    && z.shm.name.as_bytes() == me.shm.name.as_bytes()
                    && z.shm.size != me.shm.size
                    && !z.shm.addr.is_null()
                {
                    found = z;
                    break;
                }
            }
            part = (*part).next;
        }
        if found.is_null() {
            return false;
        }
        SharedMap::from_zone(found)
    };
    let Some(old) = old else {
        return false;
    };
    let now = now();
    let Ok(bytes) = old.with(|m| state::save(m, now)) else {
        return false;
    };
    let Ok(parsed) = state::parse(&bytes) else {
        return false;
    };
    fill(map, &parsed, now, "the zone it had before the reload", false, log);
    map.filled_from.set(Some(NonNull::from(old)));
    true
}

/// Once a reload's cycle is complete (`init_module`), marks every old map that
/// a new one was filled from as saved for good: its workers are retiring, and
/// their last saves must not replace the file with a snapshot the new map has
/// moved on from. Not done at the copy: a reload that fails later keeps the
/// old cycle, whose maps must go on saving.
pub fn retire_old_maps(maps: &[&SharedMap]) {
    for map in maps {
        if let Some(old) = map.filled_from.take() {
            // SAFETY: the previous cycle, and its maps, live until the new
            // cycle has started; init_module runs before that.
            let _ = unsafe { old.as_ref() }.with(|m| m.set_saved_generation(u64::MAX));
        }
    }
}

/// What a call to [`save`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Saved {
    /// The map has no `state`, or did not change since the last save.
    Clean,
    /// Another process saved this snapshot or a newer one meanwhile.
    Superseded,
    Written {
        entries: u64,
        bytes: usize,
    },
}

/// Buckets copied into a snapshot per hold of the map's lock.
const SAVE_BATCH: u64 = 1024;

/// Saves the map if it changed since the last save. Errors are logged here.
pub fn save(map: &SharedMap, log: *mut ngx_log_t) -> Result<Saved, SaveError> {
    let Some(path) = map.spec.state.as_deref() else {
        return Ok(Saved::Clean);
    };
    save_unlogged(map, now()).inspect_err(|e| log_failed(map, path, e, log))
}

/// Logs why a save failed.
pub fn log_failed(map: &SharedMap, path: &str, e: &SaveError, log: *mut ngx_log_t) {
    map_log!(
        NGX_LOG_ERR,
        log,
        map.name,
        ": could not save state to \"{}\": {}",
        path,
        e
    );
}

/// Whether the map changed since it was last saved: O(1). False while another
/// process holds the lock: the timer asks again on its next tick.
pub fn dirty(map: &SharedMap) -> bool {
    map.spec.state.is_some()
        && map
            .try_with(|m| m.generation() != m.saved_generation())
            .ok()
            .flatten()
            .unwrap_or(false)
}

/// [`save`] without logging, for the saver thread (which must not log):
/// the snapshot in batches, the checksum, then the file work. `now` is the
/// time the save was asked for.
pub fn save_unlogged(map: &SharedMap, now: u32) -> Result<Saved, SaveError> {
    let Some(path) = map.spec.state.as_deref() else {
        return Ok(Saved::Clean);
    };
    let unavailable = |ZoneUnavailable| SaveError::new("the map".to_owned(), io::Error::other("is not initialised"));
    let Some((generation, encoder)) = snapshot(map, now).map_err(unavailable)? else {
        return Ok(Saved::Clean);
    };
    let entries = encoder.count();
    // The checksum is computed here, with the map's lock released.
    let bytes = encoder.finish();
    match write(map, path, generation, &bytes)? {
        true => Ok(Saved::Written {
            entries,
            bytes: bytes.len(),
        }),
        false => Ok(Saved::Superseded),
    }
}

/// The map's live entries, copied in batches of [`SAVE_BATCH`] buckets with
/// the lock released between them, and the generation the map had when the
/// copy began; `None` when the map did not change since its last save.
///
/// Each entry is copied whole, and an entry present for the whole copy is in
/// it exactly once (the engine's bucket cursor). A write made during the copy
/// may or may not be in it; it made the generation move past the one recorded
/// as saved, so the next save has it.
fn snapshot(map: &SharedMap, now: u32) -> Result<Option<(u64, state::Encoder)>, ZoneUnavailable> {
    let (generation, saved, kind) = map.with(|m| (m.generation(), m.saved_generation(), m.config().kind))?;
    if generation == saved {
        return Ok(None);
    }
    let mut encoder = state::Encoder::new(kind, now);
    let mut batch = Vec::new();
    let mut cursor = Some(0);
    while let Some(c) = cursor {
        // Copied under the lock; encoded (the file's buffer grows, which may
        // copy it whole) after the lock is released.
        cursor = map.with(|m| {
            m.walk(c, SAVE_BATCH, b"", now, |key, value, expire| {
                batch.push((key.to_vec(), value.to_owned(), expire));
            })
        })?;
        for (key, value, expire) in batch.drain(..) {
            encoder.push(&key, value.as_value(), expire);
        }
    }
    Ok(Some((generation, encoder)))
}

/// Why a save failed: what failed (`open() "PATH"`) and the system's error.
#[derive(Debug, thiserror::Error)]
#[error("{what} failed {}", OsError(source))]
pub struct SaveError {
    what: String,
    source: io::Error,
}

impl SaveError {
    fn new(what: String, source: io::Error) -> Self {
        SaveError { what, source }
    }
}

/// `map_err`'s argument: the error of `what`, named only if it failed.
fn at(what: impl FnOnce() -> String) -> impl FnOnce(io::Error) -> SaveError {
    move |source| SaveError::new(what(), source)
}

/// Writes `bytes` to `path` through a temporary file; returns false when a
/// newer snapshot was saved meanwhile and this one was dropped.
fn write(map: &SharedMap, path: &str, generation: u64, bytes: &[u8]) -> Result<bool, SaveError> {
    let dir = match Path::new(path).parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let dir_file = File::open(dir).map_err(at(|| format!("open() \"{}\"", dir.display())))?;
    flock(&dir_file).map_err(at(|| format!("flock() \"{}\"", dir.display())))?;
    // The lock is held until `dir_file` is dropped.
    if map.with(|m| m.saved_generation()).unwrap_or(0) >= generation {
        return Ok(false);
    }
    // A FIFO or a device at the path is never written to nor replaced; a
    // symbolic link is replaced by the rename, its target never touched.
    match fs::symlink_metadata(path) {
        Ok(m) if !m.is_file() && !m.file_type().is_symlink() => {
            return Err(SaveError::new(
                format!("rename() over \"{path}\""),
                io::Error::other("not a regular file"),
            ))
        }
        _ => {}
    }
    let (mut f, tmp) = create_temporary(path)?;
    let written = (|| {
        f.write_all(bytes).map_err(at(|| format!("write() \"{tmp}\"")))?;
        f.sync_all().map_err(at(|| format!("fsync() \"{tmp}\"")))?;
        fs::rename(&tmp, path).map_err(at(|| format!("rename() \"{tmp}\" to \"{path}\"")))
    })();
    drop(f);
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    // The rename is durable once the directory is synced.
    dir_file
        .sync_all()
        .map_err(at(|| format!("fsync() \"{}\"", dir.display())))?;
    let _ = map.with(|m| m.set_saved_generation(generation));
    Ok(true)
}

/// Creates the temporary file of a save of `path`: `PATH.PID.RANDOM.tmp`,
/// where RANDOM is 64 bits from the system's random source, so nobody can
/// plant anything at the name beforehand. The file is created exclusively and
/// never through a symbolic link (`O_CREAT|O_EXCL|O_NOFOLLOW`): whatever is
/// found at the name (a planted link, a file) fails the attempt, and another
/// name is drawn. The PID lets the start-up cleanup tell a live saver's file
/// from a killed one's ([`remove_leftovers`]).
fn create_temporary(path: &str) -> Result<(File, String), SaveError> {
    let mut last = io::Error::from(io::ErrorKind::AlreadyExists);
    for _ in 0..TEMPORARY_TRIES {
        let mut random = [0u8; 8];
        // SAFETY: the buffer is 8 writable bytes; getrandom() writes at most that.
        let n = unsafe { libc::getrandom(random.as_mut_ptr().cast(), random.len(), 0) };
        if n != random.len() as isize {
            let e = if n < 0 {
                io::Error::last_os_error()
            } else {
                io::Error::from(io::ErrorKind::UnexpectedEof)
            };
            return Err(SaveError::new("getrandom()".to_owned(), e));
        }
        let tmp = format!("{path}.{}.{:016x}.tmp", std::process::id(), u64::from_ne_bytes(random));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
        {
            Ok(f) => return Ok((f, tmp)),
            // Something is already there (ELOOP: a link, on systems that
            // report O_NOFOLLOW so): left alone, another name is drawn.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists || e.raw_os_error() == Some(libc::ELOOP) => last = e,
            Err(e) => return Err(SaveError::new(format!("open() \"{tmp}\""), e)),
        }
    }
    Err(SaveError::new(
        format!("open() \"{path}.{}.*.tmp\"", std::process::id()),
        last,
    ))
}

/// Names [`create_temporary`] draws before giving up: only a name someone
/// planted a file at fails, which needs the 64 random bits guessed.
const TEMPORARY_TRIES: usize = 4;

/// Takes the directory's lock without ever blocking in the kernel: a saver
/// that finds it taken sleeps and tries again (the saver thread, or a worker
/// on its way out), for at most about five seconds.
fn flock(f: &File) -> io::Result<()> {
    for _ in 0..250 {
        // SAFETY: a valid open descriptor; flock() only takes a lock on it.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => std::thread::sleep(std::time::Duration::from_millis(20)),
            _ => return Err(e),
        }
    }
    Err(io::Error::from(io::ErrorKind::TimedOut))
}

/// The contents of the file at `path`, or `None` when it is not a regular file
/// (a FIFO, a device, a directory). It is opened without blocking, so a FIFO
/// with no writer never makes nginx wait, and checked with `fstat()` before
/// anything is read. A symbolic link is not followed (`ELOOP`).
fn read_regular(path: &str) -> io::Result<Option<Vec<u8>>> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_NOFOLLOW)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut f, &mut bytes)?;
    Ok(Some(bytes))
}

/// Removes the temporary files that savers killed midway left behind:
/// `PATH.PID.RANDOM.tmp` (and `PATH.PID.tmp`, the name of earlier versions)
/// whose process no longer exists; a live saver's file is left alone. Only
/// regular files are removed (the type comes from the directory entry, no link
/// is followed), and `unlink()` removes a name, never what a link points to.
pub fn remove_leftovers(path: &str, log: *mut ngx_log_t) {
    let p = Path::new(path);
    let (Some(dir), Some(name)) = (p.parent(), p.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(pid) = file
            .to_str()
            .and_then(|f| f.strip_prefix(name))
            .and_then(|f| f.strip_prefix('.'))
            .and_then(|f| f.strip_suffix(".tmp"))
            .and_then(temporary_pid)
        else {
            continue;
        };
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        // SAFETY: kill() with signal 0 only checks that the process exists.
        let alive = pid > 0
            && (unsafe { libc::kill(pid, 0) } == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH));
        if alive {
            continue;
        }
        let leftover = entry.path();
        match fs::remove_file(&leftover) {
            Ok(()) => {
                ngx_log_error!(
                    NGX_LOG_NOTICE,
                    log,
                    "shared map: removed \"{}\", left by a save that did not finish",
                    leftover.display()
                );
            }
            Err(e) => {
                ngx_log_error!(
                    NGX_LOG_WARN,
                    log,
                    "unlink() \"{}\" failed {}",
                    leftover.display(),
                    OsError(&e)
                );
            }
        }
    }
}

/// The saver's PID in the middle part of a temporary file's name: `PID` or
/// `PID.RANDOM` (16 hexadecimal digits).
fn temporary_pid(middle: &str) -> Option<libc::pid_t> {
    let (pid, random) = middle.split_once('.').unwrap_or((middle, ""));
    let random_ok = random.is_empty() || (random.len() == 16 && random.bytes().all(|b| b.is_ascii_hexdigit()));
    if !random_ok || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Why a map's state file cannot be this nginx's; `Display` gives the line
/// nginx logs (at `emerg`), and the cycle fails.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(
        "shared_map \"{map}\": {who} cannot write state files in \"{dir}\" {}, so \"{path}\" would never be saved",
        OsError(source)
    )]
    NotWritable {
        map: String,
        who: String,
        dir: String,
        source: io::Error,
        path: String,
    },
    #[error("shared_map \"{map}\": state file \"{path}\" is already used by another nginx (\"{lock}\" is locked)")]
    Locked { map: String, path: String, lock: String },
    #[error("shared_map \"{map}\": state file \"{path}\" is already used by another nginx (pid file \"{owner}\")")]
    Owned { map: String, path: String, owner: String },
    #[error(
        "shared_map \"{map}\": {what} failed {}, so \"{path}\" cannot be claimed for this nginx",
        OsError(source)
    )]
    Io {
        map: String,
        what: String,
        source: io::Error,
        path: String,
    },
}

/// Claims a `state=` map's file for this nginx, in the zone's `init` (every
/// cycle: a start, a reload, `nginx -t`), where a refusal fails the cycle
/// cleanly: a start or a test stops with `[emerg]`, a reload is refused and
/// the running configuration keeps serving.
///
/// - The worker processes, running as `user`, must be able to create files in
///   the directory: otherwise every save would fail and every write be lost at
///   the next restart.
/// - No other nginx may name the same file: the master holds a lock on
///   `PATH.lock` for as long as a map names `PATH` (`lock.rs`); `nginx -t` of
///   the nginx holding it passes.
///
/// # Safety
/// `map.cycle` is the cycle being initialised, in the (single-threaded)
/// master, with its core configuration complete.
pub unsafe fn claim_state_file(map: &SharedMap) -> Result<(), Box<dyn std::error::Error>> {
    let Some(path) = map.spec.state.as_deref() else {
        return Ok(());
    };
    let cycle = map.cycle.as_ptr();
    // SAFETY: `map.cycle` is the cycle being initialised, in the single-threaded master; nginx ran the core module's
    // init_conf before initialising the zones, so the user and the pid file are final.
    let (user, owner, test) = unsafe {
        let ccf = *(*cycle).conf_ctx.add(ngx_core_module.index) as *const ngx_core_conf_t;
        let user = if ccf.is_null() || (*ccf).user == libc::uid_t::MAX {
            None
        } else {
            Some(((*ccf).user, (*ccf).group, (*ccf).username))
        };
        let owner = if ccf.is_null() {
            String::new()
        } else {
            String::from_utf8_lossy((*ccf).pid.as_bytes()).into_owned()
        };
        (user, owner, ngx_test_config != 0)
    };
    let dir = match Path::new(path).parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(cdir) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) {
        // SAFETY: a valid C string; the master is single-threaded here.
        let err = unsafe { writable_by(&cdir, user) };
        if err != 0 {
            let e = io::Error::from_raw_os_error(err);
            let who = match user {
                Some((_, _, u)) if !u.is_null() => {
                    // SAFETY: nginx keeps the user name for the cycle's life.
                    let name = unsafe { core::ffi::CStr::from_ptr(u) }.to_string_lossy();
                    format!("the worker processes (user \"{name}\")")
                }
                _ => "the worker processes".to_owned(),
            };
            return Err(ClaimError::NotWritable {
                map: map.name.clone(),
                who,
                dir: dir.display().to_string(),
                source: e,
                path: path.to_owned(),
            }
            .into());
        }
    }
    match lock::claim(path, &owner, test, cycle as usize) {
        Ok(()) => {
            // A lock taken by a cycle that then fails (a refused reload) is
            // released when nginx frees that cycle's pool.
            // SAFETY: the cycle's pool lives until the cycle is freed; the
            // cleanup only passes the cycle's address on, as an identity.
            unsafe {
                let cln = ngx_pool_cleanup_add((*cycle).pool, 0);
                if !cln.is_null() {
                    (*cln).handler = Some(abandon_locks);
                    (*cln).data = cycle.cast();
                }
            }
            Ok(())
        }
        Err(Refused::Used { owner }) if owner.is_empty() => Err(ClaimError::Locked {
            map: map.name.clone(),
            path: path.to_owned(),
            lock: lock::lock_path(path),
        }
        .into()),
        Err(Refused::Used { owner }) => Err(ClaimError::Owned {
            map: map.name.clone(),
            path: path.to_owned(),
            owner,
        }
        .into()),
        Err(Refused::Io(what, e)) => Err(ClaimError::Io {
            map: map.name.clone(),
            what,
            source: e,
            path: path.to_owned(),
        }
        .into()),
    }
}

/// Once a cycle is complete (`init_module`), keeps the locks it took and
/// releases those of the state files that none of its maps names any more.
pub fn commit_locks(cycle: *mut ngx_cycle_t, maps: &[&SharedMap]) {
    lock::commit(cycle as usize, maps.iter().filter_map(|m| m.spec.state.as_deref()));
}

/// The cleanup of a cycle's pool: the locks that cycle took are released if
/// it never completed.
unsafe extern "C" fn abandon_locks(cycle: *mut c_void) {
    lock::abandon(cycle as usize);
}

/// 0 when `user` (nginx's own user when `None`) may create files in `dir`,
/// else the errno. Another user is checked in a child process that takes that
/// user's identity, as the workers will.
///
/// # Safety
/// Forks when `user` is set and nginx runs as root: the caller is single-threaded.
unsafe fn writable_by(dir: &core::ffi::CStr, user: Option<(libc::uid_t, libc::gid_t, *mut libc::c_char)>) -> i32 {
    let check = || {
        // SAFETY: a valid C string.
        if unsafe { libc::access(dir.as_ptr(), libc::W_OK | libc::X_OK) } == 0 {
            0
        } else {
            io::Error::last_os_error().raw_os_error().unwrap_or(libc::EACCES)
        }
    };
    // SAFETY: plain system calls; the child only calls async-signal-safe
    // functions (and initgroups, as nginx's own worker start does) and _exit.
    unsafe {
        let Some((uid, gid, name)) = user.filter(|_| libc::geteuid() == 0) else {
            return check();
        };
        let pid = libc::fork();
        if pid < 0 {
            return check();
        }
        if pid == 0 {
            let ok = libc::setgid(gid) == 0
                && (name.is_null() || libc::initgroups(name, gid) == 0)
                && libc::setuid(uid) == 0;
            libc::_exit(if ok { check().min(254) } else { 255 });
        }
        let mut status = 0;
        while libc::waitpid(pid, &mut status, 0) < 0 {
            if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return 0;
            }
        }
        match libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)) {
            Some(0) => 0,
            Some(255) | None => libc::EPERM,
            Some(errno) => errno,
        }
    }
}
