//! Block-aligned I/O buffers, as O_DIRECT requires, recycled through a small pool.
//!
//! A buffer read from disk leaves the store as a `Bytes` that owns it
//! ([`AlignedBuf::into_bytes`]), so a READ reply is sent from the very memory the disk filled.
//! When the last `Bytes` clone drops, the buffer goes back to its pool.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::BLOCK;

/// Buffers kept per size class; the rest are freed.
const POOLED_PER_CLASS: usize = 64;
/// Size classes in blocks: 1 (4 KiB), 16 (64 KiB), 256 (1 MiB), 512 (2 MiB).
const CLASSES: [usize; 4] = [1, 16, 256, 512];

/// Memory aligned to [`BLOCK`], a whole number of blocks long.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    /// Bytes allocated (a multiple of BLOCK).
    cap: usize,
    /// Bytes in use (at most `cap`, a multiple of BLOCK).
    len: usize,
    pool: Option<Arc<BufPool>>,
}

// SAFETY: AlignedBuf uniquely owns its allocation, like a Vec<u8>; nothing in it is tied to a
// thread.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared references only give out `&[u8]`, like Vec<u8>.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    fn layout(cap: usize) -> Layout {
        // BLOCK is a power of two and cap is at most a few MiB: this never fails.
        Layout::from_size_align(cap, BLOCK).unwrap_or_else(|_| unreachable!())
    }

    /// A zeroed buffer of `blocks` blocks, not returned to any pool.
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
            pool: None,
        }
    }

    /// Turns the buffer into `Bytes` without copying; the pool gets it back on the last drop.
    pub fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` points to `cap >= len` initialized bytes (allocated zeroed) owned by self.
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
        if let Some(pool) = self.pool.take() {
            let buf = AlignedBuf {
                ptr: self.ptr,
                cap: self.cap,
                len: self.cap,
                pool: None,
            };
            if let Some(buf) = pool.put(buf) {
                drop(buf); // The class is full: free it for real (pool is None now).
            }
            return;
        }
        // SAFETY: `ptr` was allocated with this layout in `zeroed` and is freed exactly once.
        unsafe { dealloc(self.ptr.as_ptr(), Self::layout(self.cap)) };
    }
}

/// Recycles buffers by size class, so the hot path does not hit the allocator.
pub struct BufPool {
    classes: [Mutex<Vec<AlignedBuf>>; CLASSES.len()],
}

impl BufPool {
    pub fn new() -> Arc<BufPool> {
        Arc::new(BufPool {
            classes: Default::default(),
        })
    }

    /// A buffer of exactly `blocks` blocks. Its contents are unspecified (old data from the
    /// pool, or zeros): callers overwrite every byte they use.
    pub fn get(self: &Arc<Self>, blocks: usize) -> AlignedBuf {
        let class = CLASSES.iter().position(|&c| c >= blocks);
        let mut buf = match class {
            Some(i) => {
                let pooled = lock(&self.classes[i]).pop();
                pooled.unwrap_or_else(|| AlignedBuf::zeroed(CLASSES[i]))
            }
            None => AlignedBuf::zeroed(blocks),
        };
        buf.len = blocks * BLOCK;
        if class.is_some() {
            buf.pool = Some(Arc::clone(self));
        }
        buf
    }

    /// Keeps `buf` for reuse; hands it back if its class is full.
    fn put(&self, buf: AlignedBuf) -> Option<AlignedBuf> {
        let i = CLASSES.iter().position(|&c| c * BLOCK == buf.cap)?;
        let mut class = lock(&self.classes[i]);
        if class.len() >= POOLED_PER_CLASS {
            return Some(buf);
        }
        class.push(buf);
        None
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_block_aligned_and_come_back_to_the_pool() {
        let pool = BufPool::new();
        let mut buf = pool.get(3);
        assert_eq!(buf.len(), 3 * BLOCK);
        assert_eq!(buf.as_ptr() as usize % BLOCK, 0);
        buf[0] = 7;
        let addr = buf.as_ptr();
        let bytes = buf.into_bytes();
        assert_eq!(bytes[0], 7);
        drop(bytes);
        let again = pool.get(16);
        assert_eq!(again.as_ptr(), addr, "the 16-block class buffer is reused");
    }

    #[test]
    fn oversized_buffers_are_not_pooled() {
        let pool = BufPool::new();
        let buf = pool.get(1000);
        assert_eq!(buf.len(), 1000 * BLOCK);
        drop(buf);
        assert!(pool.classes.iter().all(|c| lock(c).is_empty()));
    }
}
