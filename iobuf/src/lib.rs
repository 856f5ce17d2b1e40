//! Block-aligned I/O buffers, as O_DIRECT requires, carved from long-lived arenas and recycled
//! through a process-wide pool.
//!
//! A buffer read from disk leaves the store as a `Bytes` that owns it
//! ([`AlignedBuf::into_bytes`]), so a READ reply is sent from the very memory the disk filled.
//! When the last `Bytes` clone drops, the buffer goes back to the pool.
//!
//! **Why arenas.** The RDMA transport pushes a READ payload to the client with RDMA Write
//! straight from this memory, which needs the memory registered with the RDMA device. Buffers
//! come from a few large arenas that are never freed ([`arena_of`] finds the one holding a
//! payload), so the transport registers each arena once per device and never has to copy a
//! payload or register per request. Arena memory is bounded ([`ARENA_BYTES_MAX`]); past it,
//! buffers come from the heap as before and an RDMA transport copies them instead.
//!
//! This is its own crate because two layers that must not know each other share it: the
//! store (`backend`) fills these buffers, and the transport (`rdma`) registers them.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Alignment and size unit of every buffer.
pub const BLOCK: usize = 4096;
/// Size of one arena.
pub const ARENA_BYTES: usize = 32 << 20;
/// Arena memory at most, process-wide.
pub const ARENA_BYTES_MAX: usize = 256 << 20;
/// Heap buffers kept per size class; the rest are freed. Arena buffers are always kept.
const HEAP_POOLED_PER_CLASS: usize = 64;
/// Size classes in blocks: 1 (4 KiB), 16 (64 KiB), 256 (1 MiB), 512 (2 MiB).
const CLASSES: [usize; 4] = [1, 16, 256, 512];

/// A memory range that buffers are carved from; never freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arena {
    /// Its position in [`arenas`], stable for the life of the process.
    pub index: usize,
    pub base: usize,
    pub len: usize,
}

struct Arenas {
    all: Vec<Arena>,
    /// Bytes used in the newest arena.
    used: usize,
}

static ARENAS: Mutex<Arenas> = Mutex::new(Arenas {
    all: Vec::new(),
    used: 0,
});

/// Every arena so far.
pub fn arenas() -> Vec<Arena> {
    lock(&ARENAS).all.clone()
}

/// The arena that holds all of `ptr..ptr + len`, if any.
pub fn arena_of(ptr: *const u8, len: usize) -> Option<Arena> {
    let (start, end) = (ptr as usize, (ptr as usize).checked_add(len)?);
    lock(&ARENAS)
        .all
        .iter()
        .find(|a| start >= a.base && end <= a.base + a.len)
        .copied()
}

/// `bytes` (a multiple of BLOCK, at most ARENA_BYTES) from the arenas; `None` at the cap.
fn carve(bytes: usize) -> Option<NonNull<u8>> {
    let mut a = lock(&ARENAS);
    let room = a.all.last().map_or(0, |l| l.len - a.used);
    if room < bytes {
        if (a.all.len() + 1) * ARENA_BYTES > ARENA_BYTES_MAX || bytes > ARENA_BYTES {
            return None;
        }
        let layout = Layout::from_size_align(ARENA_BYTES, BLOCK).ok()?;
        // SAFETY: the layout has a non-zero size.
        let base = NonNull::new(unsafe { alloc_zeroed(layout) })?;
        let index = a.all.len();
        a.all.push(Arena {
            index,
            base: base.as_ptr() as usize,
            len: ARENA_BYTES,
        });
        a.used = 0;
    }
    let last = *a.all.last()?;
    let at = last.base + a.used;
    a.used += bytes;
    NonNull::new(at as *mut u8)
}

/// Memory aligned to [`BLOCK`], a whole number of blocks long.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    /// Bytes allocated (a multiple of BLOCK).
    cap: usize,
    /// Bytes in use (at most `cap`, a multiple of BLOCK).
    len: usize,
    /// Carved from an arena (never freed) rather than the heap.
    arena: bool,
    /// Goes back to the pool when dropped.
    pooled: bool,
}

// SAFETY: AlignedBuf uniquely owns its memory, like a Vec<u8>; nothing in it is tied to a
// thread.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared references only give out `&[u8]`, like Vec<u8>.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    fn layout(cap: usize) -> Layout {
        // BLOCK is a power of two and cap is at most a few MiB: this never fails.
        Layout::from_size_align(cap, BLOCK).unwrap_or_else(|_| unreachable!())
    }

    /// A zeroed heap buffer of `blocks` blocks, not returned to the pool.
    pub fn zeroed(blocks: usize) -> AlignedBuf {
        let cap = blocks.max(1) * BLOCK;
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc_zeroed(Self::layout(cap)) };
        let Some(ptr) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(Self::layout(cap));
        };
        AlignedBuf {
            ptr,
            cap,
            len: blocks * BLOCK,
            arena: false,
            pooled: false,
        }
    }

    /// Turns the buffer into `Bytes` without copying; the pool gets it back on the last drop.
    pub fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }

    /// Whether the buffer lives in an arena (see [`arena_of`]).
    pub fn in_arena(&self) -> bool {
        self.arena
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` points to `cap >= len` initialized bytes (zeroed at allocation) that
        // self owns.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in Deref, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.pooled || self.arena {
            let buf = AlignedBuf {
                ptr: self.ptr,
                cap: self.cap,
                len: self.cap,
                arena: self.arena,
                pooled: false,
            };
            if let Some(buf) = put(buf) {
                drop(buf); // A full class, and heap memory: free it (pooled is false now).
            }
            return;
        }
        // SAFETY: a heap buffer (arena buffers never get here), allocated with this layout in
        // `zeroed` and freed exactly once.
        unsafe { dealloc(self.ptr.as_ptr(), Self::layout(self.cap)) };
    }
}

static FREE: [Mutex<Vec<AlignedBuf>>; CLASSES.len()] = [
    Mutex::new(Vec::new()),
    Mutex::new(Vec::new()),
    Mutex::new(Vec::new()),
    Mutex::new(Vec::new()),
];

/// Keeps `buf` for reuse; hands a heap buffer back if its class is full.
fn put(buf: AlignedBuf) -> Option<AlignedBuf> {
    let Some(i) = CLASSES.iter().position(|&c| c * BLOCK == buf.cap) else {
        return (!buf.arena).then_some(buf);
    };
    let mut class = lock(&FREE[i]);
    if !buf.arena && class.len() >= HEAP_POOLED_PER_CLASS {
        return Some(buf);
    }
    class.push(buf);
    None
}

/// A handle on the process-wide pool (kept as a type so stores hold what they use).
pub struct BufPool(());

impl BufPool {
    pub fn new() -> Arc<BufPool> {
        Arc::new(BufPool(()))
    }

    /// A buffer of exactly `blocks` blocks. Its contents are unspecified (old data from the
    /// pool, or zeros): callers overwrite every byte they use.
    pub fn get(self: &Arc<Self>, blocks: usize) -> AlignedBuf {
        get(blocks)
    }
}

/// A buffer of exactly `blocks` blocks from the pool (see [`BufPool::get`]).
pub fn get(blocks: usize) -> AlignedBuf {
    let Some(i) = CLASSES.iter().position(|&c| c >= blocks) else {
        return AlignedBuf::zeroed(blocks);
    };
    let pooled = lock(&FREE[i]).pop();
    let mut buf = pooled.unwrap_or_else(|| {
        let cap = CLASSES[i] * BLOCK;
        match carve(cap) {
            Some(ptr) => AlignedBuf {
                ptr,
                cap,
                len: cap,
                arena: true,
                pooled: false,
            },
            None => AlignedBuf::zeroed(CLASSES[i]),
        }
    });
    buf.len = blocks * BLOCK;
    buf.pooled = true;
    buf
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_block_aligned_come_from_an_arena_and_come_back_to_the_pool() {
        let pool = BufPool::new();
        let mut buf = pool.get(200);
        assert_eq!(buf.len(), 200 * BLOCK);
        assert_eq!(buf.as_ptr() as usize % BLOCK, 0);
        assert!(buf.in_arena());
        buf[0] = 7;
        let addr = buf.as_ptr();
        let bytes = buf.into_bytes();
        assert_eq!(bytes[0], 7);
        let arena = arena_of(bytes.as_ptr(), bytes.len()).expect("in an arena");
        assert!(arenas().contains(&arena));
        assert!(arena_of(bytes.as_ptr(), arena.len + 1).is_none());
        drop(bytes);
        // Another test may take it first; it is in the pool or in use, never freed.
        let again: Vec<AlignedBuf> = (0..8).map(|_| pool.get(256)).collect();
        assert!(again.iter().any(|b| b.as_ptr() == addr) || arena_of(addr, 1).is_some());
    }

    #[test]
    fn oversized_buffers_come_from_the_heap_and_are_freed() {
        let buf = get(1000);
        assert_eq!(buf.len(), 1000 * BLOCK);
        assert!(!buf.in_arena());
        assert!(arena_of(buf.as_ptr(), buf.len()).is_none());
    }

    #[test]
    fn heap_memory_is_not_in_any_arena() {
        let v = std::hint::black_box(vec![0u8; 100].into_boxed_slice());
        assert!(arena_of(v.as_ptr(), v.len()).is_none());
    }
}
