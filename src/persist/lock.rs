//! One nginx per state file: the master holds an exclusive `flock()` on
//! `PATH.lock` next to each state file its maps name, for as long as they name
//! it, so a second nginx naming the same file refuses to start instead of
//! losing one instance's data to the other's saves.
//!
//! `flock()` locks belong to an open file description, not to a process: the
//! description is shared by every process forked from the master (the
//! daemonising fork at start, the workers) and by a new binary it executes (the
//! descriptor is kept across `execve`, for a binary upgrade). The lock is
//! therefore held while any process that may still save the map is alive, and
//! released by the kernel when the last of them exits, however it ends
//! (`kill -9` of the master included, once its workers are gone too).
//!
//! The lock file records the pid file of the nginx holding it, so that
//! `nginx -t` of that same nginx (a process of its own, which cannot take the
//! lock) passes while a second nginx's test does not.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::sync::Mutex;

/// A lock this process holds.
struct Held {
    file: File,
    /// The lock file's identity: a reload may name it another way.
    dev: u64,
    ino: u64,
    /// The pid file recorded in it.
    owner: String,
    /// The cycle that took it, until that cycle completes ([`commit`]); a
    /// cycle that fails releases what it took ([`abandon`]).
    pending: Option<usize>,
}

/// The locks the master holds, kept across reloads (a configuration's cycle is
/// freed on the next reload; the locks must outlive it when the maps stay).
static HELD: Mutex<Vec<Held>> = Mutex::new(Vec::new());

/// Why a state file cannot be claimed.
pub enum Refused {
    /// What failed (`open() "PATH.lock"`) and why.
    Io(String, io::Error),
    /// Another nginx holds the lock; the pid file it recorded, if any.
    Used { owner: String },
}

/// The lock file of a state file.
pub fn lock_path(state: &str) -> String {
    format!("{state}.lock")
}

/// Claims the state file `state` for the nginx whose pid file is `owner`, in
/// the configuration cycle `cycle` (its address, an identity only).
///
/// - Already held by this process (a reload): kept.
/// - Free: taken and held until [`commit`] drops it; with `test`
///   (`nginx -t`) only tried, and released at once.
/// - Held through a descriptor this process inherited (a binary upgrade: the
///   old master's description, kept across `execve`): adopted.
/// - Held by another process: refused, unless `test` and the holder recorded
///   `owner` as its pid file: the running nginx's own configuration test.
pub fn claim(state: &str, owner: &str, test: bool, cycle: usize) -> Result<(), Refused> {
    let path = lock_path(state);
    let io_error = |what: &str| {
        let path = path.clone();
        let what = what.to_owned();
        move |e| Refused::Io(format!("{what}() \"{path}\""), e)
    };
    // No link is followed (the master is often root), no FIFO waited on.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&path)
        .map_err(io_error("open"))?;
    let meta = file.metadata().map_err(io_error("fstat"))?;
    if !meta.is_file() {
        return Err(Refused::Io(
            format!("open() \"{path}\""),
            io::Error::other("not a regular file"),
        ));
    }
    let (dev, ino) = (meta.dev(), meta.ino());
    let mut held = HELD
        .lock()
        .map_err(|_| Refused::Io("lock".to_owned(), io::Error::other("poisoned")))?;
    if let Some(h) = held.iter_mut().find(|h| h.dev == dev && h.ino == ino) {
        // `file` is dropped: closing another description of the file leaves
        // a flock() lock in place (it belongs to the held description).
        if h.owner != owner {
            record(&h.file, owner).map_err(io_error("write"))?;
            h.owner = owner.to_owned();
        }
        return Ok(());
    }
    if try_lock(file.as_raw_fd()).map_err(io_error("flock"))? {
        if test {
            return Ok(());
        }
        record(&file, owner).map_err(io_error("write"))?;
        inheritable(&file).map_err(io_error("fcntl"))?;
        held.push(Held {
            file,
            dev,
            ino,
            owner: owner.to_owned(),
            pending: Some(cycle),
        });
        return Ok(());
    }
    if let Some(inherited) = inherited(dev, ino, file.as_raw_fd(), &held) {
        if !test {
            record(&inherited, owner).map_err(io_error("write"))?;
            held.push(Held {
                file: inherited,
                dev,
                ino,
                owner: owner.to_owned(),
                pending: Some(cycle),
            });
        }
        return Ok(());
    }
    let mut recorded = String::new();
    let _ = io::Read::read_to_string(&mut io::Read::take(&file, 4096), &mut recorded);
    let recorded = recorded.trim_end_matches('\n').to_owned();
    if test && !owner.is_empty() && recorded == owner {
        return Ok(());
    }
    Err(Refused::Used { owner: recorded })
}

/// The cycle `cycle` is complete (`init_module`): the locks it took are its
/// own for good, and those of the state files none of its maps (`states`)
/// names any more are released. Not done before: a reload that fails keeps
/// the old configuration, whose locks must stay. The kernel drops a lock when
/// the last process holding its description (old workers still saving, on
/// their way out) has closed it.
pub fn commit<'a>(cycle: usize, states: impl Iterator<Item = &'a str>) {
    let named: Vec<(u64, u64)> = states
        .filter_map(|s| fs::symlink_metadata(lock_path(s)).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect();
    if let Ok(mut held) = HELD.lock() {
        held.retain(|h| named.contains(&(h.dev, h.ino)));
        for h in held.iter_mut().filter(|h| h.pending == Some(cycle)) {
            h.pending = None;
        }
    }
}

/// The cycle `cycle` is freed (its pool's cleanup): if it never completed (a
/// refused reload), the locks it took for maps it added are released, so
/// another nginx may take those files. A completed cycle has none left.
pub fn abandon(cycle: usize) {
    if let Ok(mut held) = HELD.lock() {
        held.retain(|h| h.pending != Some(cycle));
    }
}

/// Takes the lock without waiting: false when another description holds it.
fn try_lock(fd: RawFd) -> io::Result<bool> {
    loop {
        // SAFETY: a valid open descriptor; flock() only takes a lock on it.
        if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => return Ok(false),
            _ => return Err(e),
        }
    }
}

/// Writes the holder's pid file into the lock file, replacing what was there.
fn record(file: &File, owner: &str) -> io::Result<()> {
    file.set_len(0)?;
    let mut f = file;
    io::Seek::seek(&mut f, io::SeekFrom::Start(0))?;
    f.write_all(format!("{owner}\n").as_bytes())
}

/// Keeps the descriptor across `execve` (std opens every file close-on-exec):
/// a binary upgrade's new master then holds the lock with the old one.
fn inheritable(file: &File) -> io::Result<()> {
    // SAFETY: a valid open descriptor; F_GETFD/F_SETFD only read and set its
    // descriptor flags.
    unsafe {
        let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFD);
        if flags < 0 || libc::fcntl(file.as_raw_fd(), libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A descriptor of the lock file (`dev`, `ino`) that this process inherited
/// and whose description holds the lock: a new master started by a binary
/// upgrade finds the old master's. `own` (just opened) and the descriptors
/// already held are not candidates.
fn inherited(dev: u64, ino: u64, own: RawFd, held: &[Held]) -> Option<File> {
    let fds = fs::read_dir("/proc/self/fd").ok()?;
    for entry in fds.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<RawFd>().ok()) else {
            continue;
        };
        if fd == own || held.iter().any(|h| h.file.as_raw_fd() == fd) {
            continue;
        }
        // SAFETY: fstat() only writes the stat buffer; a descriptor closed
        // meanwhile (the directory's own) fails with EBADF.
        let same = unsafe {
            let mut st: libc::stat = core::mem::zeroed();
            libc::fstat(fd, &mut st) == 0 && st.st_dev as u64 == dev && st.st_ino as u64 == ino
        };
        if same && try_lock(fd).unwrap_or(false) {
            // SAFETY: the descriptor is open (fstat succeeded) and refers to
            // the lock file; nothing in this process owns it (it is not among
            // the held ones, and the module opens the file nowhere else): it
            // was inherited across execve, and is adopted here.
            return Some(unsafe { File::from_raw_fd(fd) });
        }
    }
    None
}
