//! The shared zone of each map: the slab pool as the engine's arena, the zone's
//! initialisation across reloads, and locked access to the map.

use core::ffi::c_void;
use core::ptr::{self, NonNull};

use ngx::core::{SlabPool, Status};
use ngx::ffi::{
    ngx_conf_t, ngx_cycle_t, ngx_int_t, ngx_log_t, ngx_pagesize, ngx_shared_memory_add, ngx_shm_zone_t, ngx_shmtx_lock,
    ngx_shmtx_t, ngx_shmtx_trylock, ngx_shmtx_unlock, ngx_slab_alloc_locked, ngx_slab_free_locked, ngx_slab_init,
    ngx_slab_pool_t, ngx_str_t, ngx_time, NGX_LOG_ALERT, NGX_LOG_EMERG,
};
use ngx::ngx_log_error;

use crate::{
    clock,
    log::{self, map_log},
    module,
};
use shared_map_engine::state::Snapshot;
use shared_map_engine::{Arena, Lockless, Map, MapConfig, MatchMode, Spec, Ttl, Value};

/// One `shared_map` directive: the map's name, its specification and its zone.
///
/// Lives in the configuration cycle's pool; `shm_zone.data` points to it.
pub struct SharedMap {
    pub name: String,
    pub spec: Spec,
    pub shm_zone: NonNull<ngx_shm_zone_t>,
    /// The cycle whose configuration defined the map: its zone's `init` reads
    /// the workers' user and the pid file from it (nginx passes it no cycle).
    pub cycle: NonNull<ngx_cycle_t>,
    /// Offset of the map's header in the zone, set by `init_zone` in the master
    /// and inherited by the workers.
    root: u64,
    /// The previous cycle's map this one was filled from, on a reload that
    /// changed the space; its saves are retired once the new cycle is complete
    /// (`persist::retire_old_maps`), never while the reload may still fail.
    pub filled_from: core::cell::Cell<Option<NonNull<SharedMap>>>,
    /// This worker's reader slot in the map, for counting without the lock.
    reader: shared_map_engine::Reader,
}

/// nginx's slab pool as the engine's arena. Exists only while the pool's mutex
/// is held (see [`SharedMap::with`]).
pub struct SlabArena {
    pool: NonNull<ngx_slab_pool_t>,
    size: usize,
}

// SAFETY: the slab allocator returns chunks inside the zone, after the pool
// header at offset 0, aligned to at least 8 bytes (its smallest chunk).
unsafe impl Arena for SlabArena {
    fn base(&self) -> *mut u8 {
        self.pool.as_ptr() as *mut u8
    }

    fn size(&self) -> usize {
        self.size
    }

    fn alloc(&mut self, size: usize) -> Option<NonNull<u8>> {
        // SAFETY: the pool's mutex is held while a SlabArena exists.
        NonNull::new(unsafe { ngx_slab_alloc_locked(self.pool.as_ptr(), size.max(8)) } as *mut u8)
    }

    unsafe fn free(&mut self, ptr: NonNull<u8>) {
        // SAFETY: the mutex is held and `ptr` came from `alloc`.
        unsafe { ngx_slab_free_locked(self.pool.as_ptr(), ptr.as_ptr() as *mut c_void) }
    }

    fn free_bytes(&self) -> usize {
        // SAFETY: the pool header is valid for the zone's lifetime; pfree counts
        // whole free pages.
        unsafe { (*self.pool.as_ptr()).pfree * ngx_pagesize }
    }

    fn capacity(&self) -> usize {
        // SAFETY: the pool header is valid for the zone's lifetime; `start..end` are the pages the slab hands out, in
        // one allocation.
        unsafe { (*self.pool.as_ptr()).end.offset_from((*self.pool.as_ptr()).start) as usize }
    }
}

/// The current time as the engine counts it: whole seconds since the epoch.
pub fn now() -> u32 {
    ngx_time() as u32
}

/// Why a map could not be used: its zone is not mapped, or its header was not
/// found where `init` put it.
#[derive(Debug, thiserror::Error)]
#[error("is not initialised")]
pub struct ZoneUnavailable;

/// Why a zone's `init` refused the map: nginx must not start (or the reload
/// is refused). `Display` gives the line nginx logs, at [`InitError::level`].
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(
        "shared_map \"{name}\" uses \"{kind}\" with {entries} entries while previously it used \"{old_kind}\" \
         with {old_entries} entries; change its name or restart nginx"
    )]
    LayoutChanged {
        name: String,
        kind: &'static str,
        entries: u64,
        old_kind: &'static str,
        old_entries: u64,
    },
    #[error(
        "shared_map \"{name}\" uses \"match={matching}\" while previously it used \"match={old}\"; \
         change its name or restart nginx"
    )]
    MatchChanged {
        name: String,
        matching: &'static str,
        old: &'static str,
    },
    #[error("could not allocate the replication log in shared map \"{0}\"")]
    NoLogRoom(String),
    #[error("could not allocate the bucket table or the replication log in shared map \"{0}\"")]
    NoRoom(String),
    #[error("shared map \"{0}\" is not initialised")]
    Unavailable(String),
}

impl InitError {
    /// A changed map is the configuration's fault; no room is the zone's.
    pub fn level(&self) -> u32 {
        match self {
            InitError::LayoutChanged { .. } | InitError::MatchChanged { .. } => NGX_LOG_EMERG,
            _ => NGX_LOG_ALERT,
        }
    }
}

/// The slab pool had no room for the map's name in its log context.
#[derive(Debug, thiserror::Error)]
#[error("no room for the log context")]
pub struct NoLogCtxRoom;

impl SharedMap {
    pub fn new(name: String, spec: Spec, shm_zone: NonNull<ngx_shm_zone_t>, cycle: NonNull<ngx_cycle_t>) -> Self {
        SharedMap {
            name,
            spec,
            shm_zone,
            cycle,
            root: 0,
            filled_from: core::cell::Cell::new(None),
            reader: shared_map_engine::Reader::new(),
        }
    }

    /// The map a zone's `data` points to.
    ///
    /// # Safety
    /// `shm_zone` was created by the `shared_map` directive (or a reference to it
    /// that the directive then defined) in the running cycle.
    pub unsafe fn from_zone<'a>(shm_zone: *const ngx_shm_zone_t) -> Option<&'a SharedMap> {
        // SAFETY: `shm_zone` belongs to the running cycle (the caller's contract), and its `data` is null or the
        // SharedMap `cmd_set_shared_map` set, which lives as long as that cycle.
        unsafe { ((*shm_zone).data as *const SharedMap).as_ref() }
    }

    /// A handle on the map without the mutex, or `None` when the map takes
    /// the mutex for everything: matching or synced (known from its spec,
    /// before the zone is read), or refused by the engine.
    fn lockless(&self) -> Option<Lockless<'_>> {
        if self.spec.matching != MatchMode::Exact || self.spec.sync {
            return None;
        }
        // SAFETY: the zone is mapped for the whole life of a worker.
        let zone = unsafe { self.shm_zone.as_ref() };
        if zone.shm.addr.is_null() {
            return None;
        }
        // SAFETY: the zone is mapped at `addr` for `size` bytes while this
        // process uses the map, and `root` came from `Map::create` in it (0,
        // refused, before the zone's init).
        unsafe { Lockless::open(zone.shm.addr, zone.shm.size, self.root, &self.reader) }
    }

    /// Adds `by` to `key` without the mutex when the key holds a number and
    /// has not expired; `None` when the caller must take the mutex (an absent
    /// or expired key, a string, a synced or matching map).
    pub fn add_lockless(&self, key: &[u8], by: i64, now: u32) -> Option<Result<i64, shared_map_engine::Error>> {
        self.lockless()?.add(key, by, now)
    }

    /// Reads `key` without the mutex: `Some` with `f` of its value, or with
    /// `None` for a key absent or expired (counted, and marked used when
    /// `touch`, as under the mutex); `None` when the caller must take the
    /// mutex (a synced or matching map).
    pub fn read_lockless<R>(
        &self,
        key: &[u8],
        now: u32,
        touch: bool,
        f: impl FnOnce(Value<'_>) -> R,
    ) -> Option<Option<R>> {
        Some(self.lockless()?.read(key, now, touch, |v, _| f(v)))
    }

    /// Reads `key` without the mutex as the API does under it: `f` has the
    /// value of a present key that has not expired and the map's ETag key,
    /// the hit is counted and the entry's recency left alone. `None` when the
    /// caller must take the mutex: an absent or expired key (the locked read
    /// counts the miss, or answers a stale entry), a synced or matching map.
    pub fn read_api_lockless<R>(&self, key: &[u8], now: u32, f: impl FnOnce(Value<'_>, [u64; 2]) -> R) -> Option<R> {
        let l = self.lockless()?;
        let etag_key = l.etag_key();
        l.read_counted(key, now, |v, _| f(v, etag_key))
    }

    /// Reads `key` without the mutex and renews its expiry to `ttl` from
    /// `now`, as `Map::get_renew` does under it: `f` of its value. `None`
    /// when the caller must take the mutex: an absent or expired key, one
    /// near its expiry, a synced or matching map.
    pub fn get_renew_lockless<R>(&self, key: &[u8], ttl: Ttl, now: u32, f: impl FnOnce(Value<'_>) -> R) -> Option<R> {
        self.lockless()?.get_renew(key, ttl, now, f)
    }

    /// Runs `f` on the map with the slab pool's mutex held.
    ///
    /// The mutex is nginx's `ngx_shmtx`: if a worker dies holding it, the master
    /// force-unlocks it, so a killed worker never deadlocks the others. An
    /// acquisition that finds it taken is counted with the time it waited, and
    /// every hold is timed for the longest-hold statistic (see `clock`).
    pub fn with<R>(&self, f: impl FnOnce(&mut Map<'_, SlabArena>) -> R) -> Result<R, ZoneUnavailable> {
        let pool = self.pool()?;
        self.locked(Locked::lock(pool), f)
    }

    /// As [`SharedMap::with`], only when the mutex is free at once: `Ok(None)`
    /// when another process holds it. For work that can wait for its next turn
    /// (the timer's sweep), so that a process stopped inside the mutex never
    /// stalls this one's event loop.
    pub fn try_with<R>(&self, f: impl FnOnce(&mut Map<'_, SlabArena>) -> R) -> Result<Option<R>, ZoneUnavailable> {
        let pool = self.pool()?;
        match Locked::try_lock(pool) {
            Some(locked) => self.locked(locked, f).map(Some),
            None => Ok(None),
        }
    }

    /// The zone's slab pool, which starts the zone once it is mapped.
    fn pool(&self) -> Result<NonNull<ngx_slab_pool_t>, ZoneUnavailable> {
        // SAFETY: the zone is mapped for the whole life of a worker (and of the
        // master between zone initialisation and the next reload).
        let zone = unsafe { self.shm_zone.as_ref() };
        NonNull::new(zone.shm.addr as *mut ngx_slab_pool_t).ok_or(ZoneUnavailable)
    }

    /// Runs `f` on the map while `locked` holds the mutex; a map left
    /// inconsistent by a process that died inside it is recovered first.
    fn locked<R>(&self, locked: Locked, f: impl FnOnce(&mut Map<'_, SlabArena>) -> R) -> Result<R, ZoneUnavailable> {
        // SAFETY: as in `pool`, which gave `locked` its pool.
        let zone = unsafe { self.shm_zone.as_ref() };
        let pool = locked.pool;
        let mut arena = SlabArena {
            pool,
            size: zone.shm.size,
        };
        // SAFETY: `root` was returned by Map::create on this zone, and the mutex
        // is held until `locked` drops after `f` returns.
        let mut map = unsafe { Map::attach(&mut arena, self.root) }.ok_or(ZoneUnavailable)?;
        if let Some(recovery) = map.recovery() {
            if recovery.rebuild {
                // The chains are whole: read them (nothing is freed) before the
                // pool is reset.
                // Lock-free counters finish before the pool is reset.
                map.close_lockless();
                let snapshot = Snapshot::take(&mut map, now());
                let synced = map.is_synced();
                self.rebuild(&mut arena, &snapshot, synced)?;
                // SAFETY: the mutex is still held (`locked`), and the map was made again at `root` in this zone.
                map = unsafe { Map::attach(&mut arena, self.root) }.ok_or(ZoneUnavailable)?;
            } else {
                log::log_recovery(&self.name, recovery);
            }
        }
        if let Some(waited) = locked.waited {
            map.note_wait(waited);
        }
        let r = f(&mut map);
        map.note_hold(clock::ticks().wrapping_sub(locked.since));
        Ok(r)
    }
}

impl SharedMap {
    /// Makes the zone again after a process died inside nginx's slab allocator
    /// (or the replication log) holding the mutex: the allocator's page lists
    /// may be torn, and a later allocation would crash on them. The map's
    /// chains are whole, so the caller has read its entries (nothing freed);
    /// the pool is reset with `ngx_slab_init`, as at the zone's creation, and
    /// the map is made again with the same allocations in the same order, so
    /// its header is where every worker expects it; `synced` gives it a new
    /// replication log. The one lock hold that grows with the map, and only
    /// after such a death.
    fn rebuild(&self, arena: &mut SlabArena, snapshot: &Snapshot, synced: bool) -> Result<(), ZoneUnavailable> {
        let shpool = arena.pool.as_ptr();
        // SAFETY: the mutex is held, and nothing but the map (made again below)
        // refers to the pool's pages: the handles of other workers exist only
        // while they hold the mutex.
        unsafe { ngx_slab_init(shpool) };
        // SAFETY: the mutex is held and the pool was just reset: nothing else uses it.
        let restored = unsafe { set_log_ctx(shpool, &self.name) }
            .map_err(|NoLogCtxRoom| shared_map_engine::Error::NoRoom)
            .and_then(|()| snapshot.restore(arena, synced.then(host_id)));
        let root = self.root;
        match restored {
            Ok((rebuilt, report)) if rebuilt == root => {
                // SAFETY: the header lies inside the zone.
                unsafe { (*shpool).data = (shpool as *mut u8).add(root as usize) as *mut c_void };
                log::log_rebuild(&self.name, report.loaded + report.duplicates, report.dropped(), synced);
                Ok(())
            }
            _ => {
                let log = log::cycle_log();
                map_log!(
                    NGX_LOG_ALERT,
                    log,
                    self.name,
                    " could not be made again after a process died in its allocator; restart nginx"
                );
                Err(ZoneUnavailable)
            }
        }
    }

    /// Maps every page of the zone into this process's page tables now, so
    /// that a walk of a large map never takes a page fault per entry while it
    /// holds the lock (a worker inherits the zone, not its page tables: every
    /// first touch faults, about a microsecond each, a millisecond for a batch
    /// of a large map). Best effort: without `MADV_POPULATE_WRITE` (Linux
    /// 5.14) the pages fault in as before.
    pub fn prefault(&self) {
        /// `MADV_POPULATE_WRITE` of Linux 5.14.
        const MADV_POPULATE_WRITE: libc::c_int = 23;
        // SAFETY: the zone is mapped for the whole life of the worker.
        let zone = unsafe { self.shm_zone.as_ref() };
        // SAFETY: advice on our own mapping; it never changes its contents.
        unsafe { libc::madvise(zone.shm.addr as *mut c_void, zone.shm.size, MADV_POPULATE_WRITE) };
    }
}

/// The slab pool's mutex, held until dropped.
struct Locked {
    pool: NonNull<ngx_slab_pool_t>,
    /// When the mutex was acquired, in clock ticks.
    since: u64,
    /// How long acquiring it waited, when it was taken.
    waited: Option<u64>,
}

impl Locked {
    fn lock(pool: NonNull<ngx_slab_pool_t>) -> Locked {
        if let Some(locked) = Locked::try_lock(pool) {
            return locked;
        }
        let t = clock::ticks();
        // SAFETY: `mutex` is the zone's slab pool mutex (see `mutex`);
        // `ngx_shmtx_lock` waits until its holder (or the master, for a dead
        // holder) releases it.
        unsafe { ngx_shmtx_lock(Locked::mutex(pool)) };
        let since = clock::ticks();
        Locked {
            pool,
            since,
            waited: Some(since.wrapping_sub(t)),
        }
    }

    /// The mutex if it is free; `None` at once if another process holds it.
    fn try_lock(pool: NonNull<ngx_slab_pool_t>) -> Option<Locked> {
        // SAFETY: `mutex` is the zone's slab pool mutex (see `mutex`);
        // `ngx_shmtx_trylock` takes it only if it is free.
        (unsafe { ngx_shmtx_trylock(Locked::mutex(pool)) } != 0).then(|| Locked {
            pool,
            since: clock::ticks(),
            waited: None,
        })
    }

    fn mutex(pool: NonNull<ngx_slab_pool_t>) -> *mut ngx_shmtx_t {
        // SAFETY: a mapped zone of this module starts with nginx's slab pool,
        // whose mutex was created with the zone; only its address is taken.
        unsafe { ptr::addr_of_mut!((*pool.as_ptr()).mutex) }
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        // SAFETY: this process holds the mutex, taken in `lock`.
        unsafe { ngx_shmtx_unlock(Locked::mutex(self.pool)) }
    }
}

/// The shared zone of the map `name`, tagged as this module's. `size` 0 adds a
/// reference: a map may be used before `shared_map` defines it, and nginx
/// refuses to start (`zero size shared memory zone`) if it never is. `None`
/// when nginx refused (it has logged why, e.g. a name another module uses).
///
/// # Safety
/// `cf` is the configuration being parsed; `name` lives in its pool.
pub unsafe fn add_zone(cf: *mut ngx_conf_t, name: &mut ngx_str_t, size: usize) -> Option<NonNull<ngx_shm_zone_t>> {
    // SAFETY: `cf` is the configuration being parsed and `name` lives in its pool, which nginx keeps for the cycle's
    // life.
    NonNull::new(unsafe {
        ngx_shared_memory_add(
            cf,
            name,
            size,
            ptr::addr_of_mut!(module::ngx_http_shared_map_module) as *mut c_void,
        )
    })
}

/// What a map's state file adds to its zone's `init`. Persistence builds on
/// the zone (it reads and fills maps through it), so the zone does not name it:
/// `lib.rs` sets these before any zone is initialised.
pub struct StateHooks {
    /// Claims the map's state file for this nginx; `Err` fails the cycle.
    pub claim: unsafe fn(&SharedMap) -> Result<(), Box<dyn std::error::Error>>,
    /// Fills a fresh map from the zone it had before a reload or from its
    /// state file.
    pub fill: unsafe fn(*mut ngx_shm_zone_t, &SharedMap, *mut ngx_log_t),
}

static STATE_HOOKS: std::sync::OnceLock<StateHooks> = std::sync::OnceLock::new();

/// Sets the state file's part of every zone's `init`; the first call wins
/// (the functions are the same on every reload).
pub fn set_state_hooks(hooks: StateHooks) {
    let _ = STATE_HOOKS.set(hooks);
}

/// `shm_zone.init` of every map: the zone's own initialisation ([`init`]),
/// with the map's state file claimed before and, for a fresh map, loaded
/// after.
///
/// # Safety
/// Called by nginx with a zone whose `data` is a SharedMap and, on a reload that
/// reuses the zone, `old` pointing to the previous cycle's SharedMap.
pub unsafe extern "C" fn init_zone(shm_zone: *mut ngx_shm_zone_t, old: *mut c_void) -> ngx_int_t {
    let hooks = STATE_HOOKS.get();
    // SAFETY: nginx passes a live zone; `cmd_set_shared_map` set its data to
    // a SharedMap that lives as long as the cycle nginx is initialising.
    let (map, log) = unsafe { (SharedMap::from_zone(shm_zone), (*shm_zone).shm.log) };
    if let (Some(map), Some(hooks)) = (map, hooks) {
        // SAFETY: `map.cycle` is the cycle being initialised, in the master.
        if let Err(e) = unsafe { (hooks.claim)(map) } {
            ngx_log_error!(NGX_LOG_EMERG, log, "{}", e);
            return Status::NGX_ERROR.into();
        }
    }
    // SAFETY: nginx passes the zone and the previous cycle's data, as `init` requires.
    match unsafe { init(shm_zone, old) } {
        Ok(Init::Kept) => Status::NGX_OK.into(),
        Ok(Init::Fresh) => {
            if let (Some(map), Some(hooks)) = (map, hooks) {
                // SAFETY: `shm_zone` is being initialised and its data is `map`.
                unsafe { (hooks.fill)(shm_zone, map, log) };
            }
            Status::NGX_OK.into()
        }
        Err(e) => {
            ngx_log_error!(e.level(), log, "{}", e);
            Status::NGX_ERROR.into()
        }
    }
}

/// What [`init`] found.
pub enum Init {
    /// The zone kept its map: a reload, or a zone that already existed.
    Kept,
    /// A fresh, empty map.
    Fresh,
}

/// The zone's initialisation: three cases, as in nginx's own zone modules. `Err` when nginx must not start; logged.
///
/// # Safety
/// Called with a zone whose `data` is a SharedMap and, on a reload that reuses
/// the zone, `old` pointing to the previous cycle's SharedMap.
unsafe fn init(shm_zone: *mut ngx_shm_zone_t, old: *mut c_void) -> Result<Init, InitError> {
    // SAFETY: nginx passes the zone the directive created; its data is our map.
    let zone = unsafe { &mut *shm_zone };
    // SAFETY: `cmd_set_shared_map` set `data` to this zone's SharedMap.
    let map = unsafe { &mut *(zone.data as *mut SharedMap) };
    let shpool = zone.shm.addr as *mut ngx_slab_pool_t;

    // A reload reusing the zone: keep the data if the layout is unchanged.
    if !old.is_null() {
        // SAFETY: the previous cycle's SharedMap is alive until the new cycle is ready.
        let prev = unsafe { &*(old as *const SharedMap) };
        if prev.spec.kind != map.spec.kind || prev.spec.entries != map.spec.entries {
            return Err(InitError::LayoutChanged {
                name: map.name.clone(),
                kind: map.spec.kind.name(),
                entries: map.spec.entries,
                old_kind: prev.spec.kind.name(),
                old_entries: prev.spec.entries,
            });
        }
        if prev.spec.matching != map.spec.matching {
            return Err(InitError::MatchChanged {
                name: map.name.clone(),
                matching: map.spec.matching.name(),
                old: prev.spec.matching.name(),
            });
        }
        map.root = prev.root;
        let (timeout, evict, sync) = (map.spec.timeout, map.spec.evict, map.spec.sync);
        let synced = map.with(|m| {
            m.reconfigure(timeout, evict);
            // `sync` added or removed by the reload.
            if sync {
                m.enable_sync(host_id()).is_ok()
            } else {
                m.disable_sync();
                true
            }
        });
        return match synced {
            Ok(true) => Ok(Init::Kept),
            Ok(false) => Err(InitError::NoLogRoom(map.name.clone())),
            Err(ZoneUnavailable) => Err(InitError::Unavailable(map.name.clone())),
        };
    }

    // The zone already exists (a shared mapping inherited on Windows): reuse it.
    if zone.shm.exists != 0 {
        // SAFETY: the pool header is initialised; `data` holds the map header.
        map.root = unsafe { (*shpool).data as u64 - shpool as u64 };
        return Ok(Init::Kept);
    }

    // A fresh zone.
    // SAFETY: a fresh zone is ours alone in the master.
    unsafe { set_log_ctx(shpool, &map.name) }.map_err(|NoLogCtxRoom| InitError::NoRoom(map.name.clone()))?;
    let config = MapConfig::from(&map.spec);
    let created = {
        // SAFETY: the zone is mapped and starts with nginx's slab pool, made with the zone.
        let pool = unsafe { SlabPool::from_shm_zone(zone) };
        let Some(pool) = pool else {
            return Err(InitError::Unavailable(map.name.clone()));
        };
        let _locked = pool.lock();
        let mut arena = SlabArena {
            // SAFETY: a mapped zone's address is never null.
            pool: unsafe { NonNull::new_unchecked(shpool) },
            size: zone.shm.size,
        };
        let sync = map.spec.sync;
        Map::create_matching(&mut arena, &config, map.spec.matching).and_then(|root| {
            if sync {
                // SAFETY: just created on this arena, under the lock held here.
                let mut m = unsafe { Map::attach(&mut arena, root) }.ok_or(shared_map_engine::Error::NotAMap)?;
                m.enable_sync(host_id())?;
            }
            Ok(root)
        })
    };
    match created {
        Ok(root) => {
            map.root = root;
            // SAFETY: the header lies inside the zone.
            unsafe { (*shpool).data = (shpool as *mut u8).add(root as usize) as *mut c_void };
            Ok(Init::Fresh)
        }
        Err(_) => Err(InitError::NoRoom(map.name.clone())),
    }
}

/// Names the map in the slab allocator's own messages, and turns off its
/// "no memory" message (a full map is reported by the module): the first
/// allocation of a fresh or reset pool, before the map's.
///
/// # Safety
/// `shpool` is the zone's pool, fresh or just reset, and nobody else uses it.
unsafe fn set_log_ctx(shpool: *mut ngx_slab_pool_t, name: &str) -> Result<(), NoLogCtxRoom> {
    let ctx = format!(" in shared map \"{name}\"\0");
    // SAFETY: `shpool` is the zone's pool, fresh or just reset, and nobody else uses it; `ngx_slab_alloc_locked`
    // because the caller holds the mutex or is alone with the pool.
    unsafe {
        let log_ctx = ngx_slab_alloc_locked(shpool, ctx.len()) as *mut u8;
        if log_ctx.is_null() {
            return Err(NoLogCtxRoom);
        }
        core::ptr::copy_nonoverlapping(ctx.as_ptr(), log_ctx, ctx.len());
        (*shpool).log_ctx = log_ctx as *mut _;
        (*shpool).set_log_nomem(0);
    }
    Ok(())
}

/// A name for a new replication log at the server: never one an earlier log of
/// this or another host used (random, with the time and the process).
fn host_id() -> u64 {
    let mut bytes = [0u8; 8];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let id = u64::from_le_bytes(bytes) ^ time.rotate_left(17) ^ u64::from(std::process::id());
    // Random bytes missing, time and pid still differ between incarnations.
    let _ = random;
    id.max(1)
}
