//! A slab-like allocator over a caller-provided memory region, for running the
//! engine without nginx: tests, property tests, the multi-process test, fuzzing
//! and benchmarks.
//!
//! It mirrors nginx's slab allocator where that matters for measurements:
//! 4096-byte pages, each with a 24-byte page descriptor (`ngx_slab_page_t`);
//! power-of-two chunk sizes from 8 to 2048 bytes, where chunks below 64 bytes
//! give up the first chunks of their page to its allocation bitmap; whole pages
//! above 2048 bytes; free space reported in whole free pages. All of its state lives in
//! the region, so processes sharing a `MAP_SHARED` mapping share one heap.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};
use std::alloc::{self, Layout as AllocLayout};

use crate::arena::Arena;
use crate::error::Error;
use crate::map::{Map, MapConfig};

pub const PAGE: usize = 4096;
const MIN_SHIFT: u32 = 3;
const CLASSES: usize = 9; // 8 .. 2048
/// The byte a freed small chunk is filled with.
const CANARY: u8 = 0xa5;
const MAGIC: u64 = u64::from_le_bytes(*b"SMHEAP\0\x01");
/// `page_class` value of a page that starts a run of whole pages.
const RUN: u8 = 0xfe;
const FREE: u8 = 0xff;
/// nginx's `sizeof(ngx_slab_page_t)` on 64-bit: what each page costs in the zone.
const PAGE_DESCRIPTOR: usize = 24;
/// nginx keeps the bitmap of pages with chunks smaller than this inside the page.
const EXACT_SIZE: usize = 64;

#[repr(C)]
struct HeapHeader {
    magic: u64,
    size: u64,
    /// The first page offset handed out by the page allocator.
    first_page: u64,
    /// The next never-used page.
    bump: u64,
    free_pages: u64,
    /// Free chunk lists per size class, by offset; a free chunk holds the next.
    small: [u64; CLASSES],
    /// Free runs of pages: each run's first page holds the next run's offset.
    runs: u64,
    /// The root a user keeps here (nginx keeps it in `shpool->data`).
    root: u64,
    lock: AtomicU32,
    /// Allocations not yet freed: tests measure leaks with it.
    live: u64,
}

/// A heap inside a memory region.
pub struct Heap {
    base: *mut u8,
    size: usize,
    owned: bool,
}

// SAFETY: the heap is only a pointer to a region; synchronisation is the caller's
// (the lock below), as for nginx's slab pool.
unsafe impl Send for Heap {}

impl Heap {
    /// Allocates an ordinary, page-aligned region of `size` bytes with a heap in it.
    pub fn new(size: usize) -> Heap {
        let layout = AllocLayout::from_size_align(size, PAGE).expect("heap size");
        // SAFETY: non-zero size (checked by `init`'s minimum below).
        let base = unsafe { alloc::alloc_zeroed(layout) };
        assert!(!base.is_null(), "out of memory for a test heap");
        // SAFETY: a fresh, exclusively owned region of `size` bytes.
        let mut heap = unsafe { Heap::init(base, size) };
        heap.owned = true;
        heap
    }

    /// Formats a heap in the region.
    ///
    /// # Safety
    /// `base` is page-aligned, valid for `size` bytes for the heap's lifetime and
    /// not in use by anything else.
    pub unsafe fn init(base: *mut u8, size: usize) -> Heap {
        assert!(size >= 16 * PAGE, "a heap needs at least 16 pages");
        let pages = size / PAGE;
        // 5 bytes of our own per page, padded to nginx's 24-byte page descriptor.
        let meta = core::mem::size_of::<HeapHeader>() + pages * PAGE_DESCRIPTOR;
        let first_page = meta.div_ceil(PAGE) * PAGE;
        // SAFETY: the region is ours; the header and the page tables fit before
        // `first_page`.
        unsafe {
            (base as *mut HeapHeader).write(HeapHeader {
                magic: MAGIC,
                size: size as u64,
                first_page: first_page as u64,
                bump: first_page as u64,
                free_pages: ((size - first_page) / PAGE) as u64,
                small: [0; CLASSES],
                runs: 0,
                root: 0,
                lock: AtomicU32::new(0),
                live: 0,
            });
            base.add(core::mem::size_of::<HeapHeader>()).write_bytes(FREE, pages);
        }
        Heap {
            base,
            size,
            owned: false,
        }
    }

    /// Opens a heap another process formatted in a shared region.
    ///
    /// # Safety
    /// The region was formatted by [`Heap::init`] and stays mapped.
    pub unsafe fn open(base: *mut u8) -> Option<Heap> {
        // SAFETY: the caller passes a region `Heap::init` formatted, which begins with the header.
        let h = unsafe { &*(base as *const HeapHeader) };
        (h.magic == MAGIC).then_some(Heap {
            base,
            size: h.size as usize,
            owned: false,
        })
    }

    fn hdr(&self) -> &HeapHeader {
        // SAFETY: `init` wrote the header; it lives in the region, not in `self`.
        unsafe { &*(self.base as *const HeapHeader) }
    }

    fn hdr_mut(&mut self) -> &mut HeapHeader {
        // SAFETY: `init` wrote the header, which lives in the region; `&mut self`
        // (and, across processes, the heap's lock) makes this the only reference.
        unsafe { &mut *(self.base as *mut HeapHeader) }
    }

    fn page_class(&self, page: usize) -> *mut u8 {
        // SAFETY: the class table has one byte per page of the region.
        unsafe { self.base.add(core::mem::size_of::<HeapHeader>() + page) }
    }

    fn run_len(&self, page: usize) -> *mut u32 {
        let pages = self.size / PAGE;
        // SAFETY: the run table follows the class table, one u32 per page
        // (unaligned: accessed with read/write_unaligned).
        unsafe { self.base.add(core::mem::size_of::<HeapHeader>() + pages + page * 4) as *mut u32 }
    }

    /// A heap of `space` bytes holding one empty map, made with `config`,
    /// at its root: where the engine's tests, benchmarks and fuzz targets start.
    pub fn with_map(space: usize, config: &MapConfig) -> Result<Heap, Error> {
        let mut heap = Heap::new(space);
        let root = Map::create(&mut heap, config)?;
        heap.set_root(root);
        Ok(heap)
    }

    /// How many allocations are not freed yet.
    pub fn live_allocations(&self) -> u64 {
        self.hdr().live
    }

    /// The root offset kept in the heap header.
    pub fn root(&self) -> u64 {
        self.hdr().root
    }

    pub fn set_root(&mut self, root: u64) {
        self.hdr_mut().root = root;
    }

    /// Takes the heap's spin lock (tests only: nginx uses its `ngx_shmtx`).
    /// The guard must not outlive the region.
    pub fn lock(&self) -> HeapGuard {
        let lock = &self.hdr().lock;
        while lock
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        HeapGuard { lock }
    }

    /// Releases the lock whoever holds it: what nginx's master does with
    /// `ngx_shmtx_force_unlock` for a worker that died holding the slab mutex.
    pub fn force_unlock(&self) {
        self.hdr().lock.store(0, Ordering::Release);
    }

    fn alloc_pages(&mut self, n: usize) -> Option<u64> {
        // First fit over the free runs, splitting the remainder off.
        let mut prev: Option<u64> = None;
        let mut run = self.hdr().runs;
        while run != 0 {
            let page = run as usize / PAGE;
            // SAFETY: `run` is a free run's first page inside the region.
            let len = unsafe { self.run_len(page).read_unaligned() } as usize;
            // SAFETY: a free run's first word holds the next run's offset.
            let next = unsafe { *(self.base.add(run as usize) as *const u64) };
            if len >= n {
                let rest = if len > n {
                    let rest = run + (n * PAGE) as u64;
                    // SAFETY: the remainder is inside the same free run.
                    unsafe {
                        self.run_len(rest as usize / PAGE).write_unaligned((len - n) as u32);
                        *(self.base.add(rest as usize) as *mut u64) = next;
                    }
                    rest
                } else {
                    next
                };
                match prev {
                    // SAFETY: `p` is a free run's first page.
                    Some(p) => unsafe { *(self.base.add(p as usize) as *mut u64) = rest },
                    None => self.hdr_mut().runs = rest,
                }
                self.hdr_mut().free_pages -= n as u64;
                return Some(run);
            }
            prev = Some(run);
            run = next;
        }
        let h = self.hdr_mut();
        if h.bump as usize + n * PAGE > h.size as usize {
            return None;
        }
        let off = h.bump;
        h.bump += (n * PAGE) as u64;
        h.free_pages -= n as u64;
        Some(off)
    }
}

impl Drop for Heap {
    fn drop(&mut self) {
        if self.owned {
            let layout = AllocLayout::from_size_align(self.size, PAGE).expect("heap size");
            // SAFETY: allocated in `new` with this layout.
            unsafe { alloc::dealloc(self.base, layout) };
        }
    }
}

/// Holds the heap's spin lock.
pub struct HeapGuard {
    lock: *const AtomicU32,
}

impl Drop for HeapGuard {
    fn drop(&mut self) {
        // SAFETY: the guard does not outlive the region holding the lock word.
        unsafe { (*self.lock).store(0, Ordering::Release) };
    }
}

fn class_of(size: usize) -> usize {
    let size = size.max(1 << MIN_SHIFT).next_power_of_two();
    (size.trailing_zeros() - MIN_SHIFT) as usize
}

// SAFETY: every allocation is carved from pages inside the region after the heap
// header, so none is at offset 0; chunks are at least 8-aligned.
unsafe impl Arena for Heap {
    fn base(&self) -> *mut u8 {
        self.base
    }

    fn size(&self) -> usize {
        self.size
    }

    fn alloc(&mut self, size: usize) -> Option<NonNull<u8>> {
        if size > PAGE / 2 {
            let n = size.div_ceil(PAGE);
            let off = self.alloc_pages(n)?;
            let page = off as usize / PAGE;
            // SAFETY: `page` is inside the region.
            unsafe {
                *self.page_class(page) = RUN;
                self.run_len(page).write_unaligned(n as u32);
            }
            self.hdr_mut().live += 1;
            // SAFETY: in the region and non-zero.
            return Some(unsafe { NonNull::new_unchecked(self.base.add(off as usize)) });
        }
        let class = class_of(size);
        if self.hdr().small[class] == 0 {
            let off = self.alloc_pages(1)?;
            // SAFETY: the page is inside the region and now ours.
            unsafe { *self.page_class(off as usize / PAGE) = class as u8 };
            let chunk = 1usize << (class as u32 + MIN_SHIFT);
            let bitmap_chunks = if chunk < EXACT_SIZE {
                (PAGE / chunk / 8).div_ceil(chunk)
            } else {
                0
            };
            let mut head = 0u64;
            for i in (bitmap_chunks..PAGE / chunk).rev() {
                let c = off + (i * chunk) as u64;
                // SAFETY: each chunk lies in the fresh page.
                unsafe { *(self.base.add(c as usize) as *mut u64) = head };
                head = c;
            }
            self.hdr_mut().small[class] = head;
        }
        let off = self.hdr().small[class];
        // SAFETY: a free chunk holds the offset of the next free chunk.
        self.hdr_mut().small[class] = unsafe { *(self.base.add(off as usize) as *const u64) };
        self.hdr_mut().live += 1;
        // SAFETY: in the region and non-zero.
        Some(unsafe { NonNull::new_unchecked(self.base.add(off as usize)) })
    }

    unsafe fn free(&mut self, ptr: NonNull<u8>) {
        let off = ptr.as_ptr() as u64 - self.base as u64;
        let page = off as usize / PAGE;
        if off < self.hdr().first_page || off >= self.size as u64 {
            return; // nginx: "ngx_slab_free(): outside of pool"
        }
        // SAFETY: `page` is inside the region.
        let class = unsafe { *self.page_class(page) };
        if class == FREE || (class != RUN && class as usize >= CLASSES) || !off.is_multiple_of(8) {
            return; // nginx: "page is already free", "pointer to wrong chunk"
        }
        if class == RUN && !off.is_multiple_of(PAGE as u64) {
            return; // nginx: "pointer to wrong page"
        }
        if class == RUN {
            // SAFETY: the run's first page records its length; it becomes a free run.
            unsafe {
                *(ptr.as_ptr() as *mut u64) = self.hdr().runs;
                let n = self.run_len(page).read_unaligned();
                self.hdr_mut().free_pages += n as u64;
            }
            self.hdr_mut().runs = off;
        } else {
            // SAFETY: a chunk of `8 << class` bytes, at least 8; past its free
            // list link it is filled with a canary, so that a use after free
            // reads garbage a test sees; it joins its class's free list.
            unsafe {
                ptr.as_ptr().add(8).write_bytes(CANARY, (8usize << class) - 8);
                *(ptr.as_ptr() as *mut u64) = self.hdr().small[class as usize];
            }
            self.hdr_mut().small[class as usize] = off;
        }
        // Counted once the chunk is on its free list: a process killed between
        // the two leaves the count high (a leak), never low.
        self.hdr_mut().live -= 1;
    }

    fn free_bytes(&self) -> usize {
        self.hdr().free_pages as usize * PAGE
    }

    fn capacity(&self) -> usize {
        self.size - self.hdr().first_page as usize
    }
}
