//! The allocator interface the map engine runs over.

use core::ptr::NonNull;

/// A region of memory with an allocator inside it, such as an nginx slab pool.
///
/// Everything the map stores is addressed by its offset from [`Arena::base`], so
/// the region may be mapped at different addresses in different processes.
///
/// # Safety
/// Implementors guarantee that every pointer `alloc` returns lies inside
/// `[base, base + size)`, is aligned to 8 bytes, is never at offset 0, stays
/// valid until passed to `free`, and that `base` is the same for the lifetime of
/// every map created in the arena within one process.
pub unsafe trait Arena {
    /// The start of the region; offsets are relative to it.
    fn base(&self) -> *mut u8;

    /// The size of the region in bytes.
    fn size(&self) -> usize;

    /// Allocates `size` bytes, or `None` when the region has no room.
    fn alloc(&mut self, size: usize) -> Option<NonNull<u8>>;

    /// Returns memory obtained from `alloc`.
    ///
    /// # Safety
    /// `ptr` came from this arena's `alloc` and was not freed since.
    unsafe fn free(&mut self, ptr: NonNull<u8>);

    /// Bytes still available for allocation (approximate: whole free pages).
    fn free_bytes(&self) -> usize;

    /// The bytes the allocator could hand out if nothing were allocated: the
    /// region less the allocator's own bookkeeping. No allocation can be larger.
    fn capacity(&self) -> usize {
        self.size()
    }
}
