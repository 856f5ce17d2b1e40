//! The block cache: file data in memory, keyed by where it lives on disk.
//!
//! An entry is one 4 KiB block, keyed by (device, physical block) and stamped with the block's
//! crc32c. Keying by physical block makes coherence a property of the store's layout rather
//! than of every write path: the store never overwrites a block that a chunk map points to
//! (writes, truncations and removals all go to fresh blocks and swap maps), so the content of
//! an allocated block never changes. The only event that can make an entry wrong is the
//! block being freed and allocated again, and [`NvmeData::release`](super::NvmeData) removes
//! the entries of blocks before they return to the free map. A hit is also checked against
//! the crc the chunk map expects, so an entry can only be served for the map that wrote it.
//!
//! Eviction is quick_cache's Clock-PRO variant (close to S3-FIFO): a block seen once sits in a
//! small probation queue and only a second access promotes it, so a one-pass scan (a 1 TiB
//! restore, a checkpoint written once) cannot push out the data set read every epoch.
//! `docs/decisions/0013-block-cache.md` says why this crate and this key.

use std::alloc::{alloc, dealloc, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use quick_cache::sync::Cache;
use quick_cache::{Lifecycle, Weighter};

use super::chunk::Slot;
use super::BLOCK;

/// Memory an entry costs beyond its 4 KiB: the table slot, the `Bytes` header and the
/// allocator's rounding. Counted in the weight so `capacity` bounds what the cache holds.
const ENTRY_OVERHEAD: u64 = 128;
const ENTRY_WEIGHT: u64 = BLOCK as u64 + ENTRY_OVERHEAD;

type Key = (u16, u64);

#[derive(Clone)]
struct Entry {
    crc: u32,
    data: Bytes,
}

#[derive(Clone)]
struct Weigh;

impl Weighter<Key, Entry> for Weigh {
    fn weight(&self, _key: &Key, _val: &Entry) -> u64 {
        ENTRY_WEIGHT
    }
}

/// Bytes of one slab of cache memory: 2 MiB, one transparent huge page where the kernel gives
/// them on `madvise`.
const SLAB: usize = 2 << 20;

/// Memory for cached blocks: 2 MiB slabs cut into 4 KiB pieces that are recycled, never
/// returned to the system until the cache is dropped.
///
/// Why not a heap allocation per block: first-touch page faults. On the machine of issue 22
/// each new 4 KiB page cost about 15 µs (1 GiB of 4 KiB `Bytes` took 4.2 s to allocate and
/// fill), which halved the rate of every write and cold read that filled the cache. A slab is
/// one huge-page fault, and a recycled piece none.
struct Slabs {
    free: Mutex<Vec<NonNull<u8>>>,
    slabs: Mutex<Vec<NonNull<u8>>>,
}

// SAFETY: the pointers are into slabs this value owns; pieces are handed out to one `Piece`
// at a time (popped from `free` under its mutex), so no two owners share one.
unsafe impl Send for Slabs {}
// SAFETY: as above; all mutation of the lists is under their mutexes.
unsafe impl Sync for Slabs {}

impl Slabs {
    fn layout() -> Layout {
        // SLAB is a power of two: this never fails.
        Layout::from_size_align(SLAB, SLAB).unwrap_or_else(|_| unreachable!())
    }

    /// A piece holding a copy of `block` (BLOCK bytes), as `Bytes` that give the piece back
    /// when the last clone drops. With `grow` false, `None` when no piece is free.
    fn copy(self: &Arc<Self>, block: &[u8], grow: bool) -> Option<Bytes> {
        assert_eq!(block.len(), BLOCK);
        // (The guard must drop before `grow`, which takes the same lock.)
        let recycled = crate::nvme::lock(&self.free).pop();
        let ptr = match recycled {
            Some(ptr) => ptr,
            None if grow => self.grow(),
            None => return None,
        };
        // SAFETY: `ptr` is a BLOCK-long piece of a live slab that no one else holds (just
        // popped or carved), and `block` is BLOCK bytes that cannot overlap it.
        unsafe { std::ptr::copy_nonoverlapping(block.as_ptr(), ptr.as_ptr(), BLOCK) };
        Some(Bytes::from_owner(Piece {
            ptr,
            slabs: Arc::clone(self),
        }))
    }

    fn bytes(&self) -> u64 {
        (crate::nvme::lock(&self.slabs).len() * SLAB) as u64
    }

    /// Allocates one more slab and touches each of its pages (so the page faults happen
    /// here, on the growing thread, not in the request that copies into a piece); returns
    /// its first piece and frees the others.
    fn grow(&self) -> NonNull<u8> {
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc(Self::layout()) };
        let Some(base) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(Self::layout());
        };
        // SAFETY: advice on memory this function just allocated, SLAB-aligned and SLAB long;
        // the call changes no contents, only how the kernel backs the range.
        unsafe { libc::madvise(base.as_ptr().cast(), SLAB, libc::MADV_HUGEPAGE) };
        for page in (0..SLAB).step_by(BLOCK) {
            // SAFETY: inside the slab, which nothing else references yet; a raw write (no
            // reference to uninitialized memory is made).
            unsafe { base.as_ptr().add(page).write(0) };
        }
        {
            let mut free = crate::nvme::lock(&self.free);
            for i in 1..SLAB / BLOCK {
                // SAFETY: i * BLOCK < SLAB: inside the slab.
                free.push(unsafe { base.add(i * BLOCK) });
            }
        }
        // Counted last: whoever sees the slab in `bytes()` finds its pieces free already.
        crate::nvme::lock(&self.slabs).push(base);
        base
    }
}

impl Drop for Slabs {
    fn drop(&mut self) {
        // Every `Piece` holds an Arc on this, so none is alive now.
        for base in crate::nvme::lock(&self.slabs).drain(..) {
            // SAFETY: allocated in `grow` with this layout, freed once.
            unsafe { dealloc(base.as_ptr(), Self::layout()) };
        }
    }
}

/// Starts the thread of [`BlockCache::with_background_growth`]: on each request it adds slabs
/// while fills want pieces and the slabs stay within `capacity`, at the lowest CPU priority.
/// It ends when the cache (the sender) is dropped. `None` if it cannot start (fills then
/// only use memory that evictions free, and the cache stays empty: logged).
fn spawn_grower(
    memory: Arc<Slabs>,
    wanted: Arc<AtomicU64>,
    capacity: u64,
) -> Option<std::sync::mpsc::SyncSender<()>> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    let started = std::thread::Builder::new()
        .name("sluice-cache-grow".into())
        .spawn(move || {
            // SAFETY: plain syscalls on this thread's own id; no memory is passed.
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                libc::setpriority(libc::PRIO_PROCESS, tid, 19);
            }
            while rx.recv().is_ok() {
                // (May end one slab past a capacity that is not a multiple of 2 MiB.)
                while wanted.load(Ordering::Relaxed) > 0 && memory.bytes() < capacity {
                    let first = memory.grow();
                    crate::nvme::lock(&memory.free).push(first);
                    let pieces = (SLAB / BLOCK) as u64;
                    let _ = wanted.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                        Some(w.saturating_sub(pieces))
                    });
                }
                if memory.bytes() >= capacity {
                    wanted.store(0, Ordering::Relaxed);
                }
            }
        });
    match started {
        Ok(_) => Some(tx),
        Err(e) => {
            tracing::warn!("block cache: cannot start the thread that takes its memory: {e}");
            None
        }
    }
}

/// One 4 KiB piece of a slab, owned by the `Bytes` that hold a cached block.
struct Piece {
    ptr: NonNull<u8>,
    slabs: Arc<Slabs>,
}

// SAFETY: a Piece is the only owner of its BLOCK bytes, written once before it was made and
// only read afterwards.
unsafe impl Send for Piece {}
// SAFETY: as above: shared access is read-only.
unsafe impl Sync for Piece {}

impl AsRef<[u8]> for Piece {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: BLOCK initialized bytes (copied in `Slabs::copy`) of a slab that lives as
        // long as `self.slabs`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), BLOCK) }
    }
}

impl Drop for Piece {
    fn drop(&mut self) {
        crate::nvme::lock(&self.slabs.free).push(self.ptr);
    }
}

/// Counts evictions (the cache's only hook into them).
#[derive(Clone, Default)]
struct Evictions(Arc<AtomicU64>);

impl Lifecycle<Key, Entry> for Evictions {
    type RequestState = ();

    fn begin_request(&self) {}

    fn on_evict(&self, _state: &mut (), _key: Key, _val: Entry) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// The default size: a quarter of the memory this process may use (the machine's, or its
/// cgroup's limit when lower); 256 MiB when neither can be read.
pub fn default_capacity() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let total = meminfo.as_deref().and_then(|text| {
        let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        kib.checked_mul(1024)
    });
    let limit = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    match (total, limit) {
        (Some(t), Some(l)) => t.min(l) / 4,
        (Some(m), None) | (None, Some(m)) => m / 4,
        (None, None) => 256 << 20,
    }
}

/// Counters and size of a [`BlockCache`], for metrics and the status page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// The configured bound, in bytes (0: the cache is off).
    pub capacity_bytes: u64,
    /// Bytes held now, overhead included (never above `capacity_bytes`).
    pub bytes: u64,
    pub blocks: u64,
    /// Memory taken for blocks (whole 2 MiB slabs, recycled; never given back while the
    /// store is open): the cache's share of the process's RSS.
    pub memory_bytes: u64,
    /// Block lookups that found the block / did not.
    pub hits: u64,
    pub misses: u64,
    /// Blocks put in by reads and by writes.
    pub inserts: u64,
    /// Blocks left out because no memory was free (the cache's memory was still growing).
    pub fills_skipped: u64,
    pub evictions: u64,
}

/// A bounded, scan-resistant cache of file blocks. Capacity 0 turns it off.
pub struct BlockCache {
    map: Option<Cache<Key, Entry, Weigh, std::collections::hash_map::RandomState, Evictions>>,
    capacity: u64,
    memory: Arc<Slabs>,
    /// See [`CacheStats::fills_skipped`].
    fills_skipped: AtomicU64,
    /// With background growth: pieces wanted by fills that found none free, and the thread
    /// that takes them (see [`BlockCache::with_background_growth`]).
    wanted: Arc<AtomicU64>,
    grower: Option<std::sync::mpsc::SyncSender<()>>,
    hits: AtomicU64,
    misses: AtomicU64,
    inserts: AtomicU64,
    evictions: Evictions,
}

impl BlockCache {
    /// A cache holding at most `capacity_bytes` (entries and their overhead). Below one
    /// entry's worth, the cache is off and every call is a cheap no-op.
    pub fn new(capacity_bytes: u64) -> BlockCache {
        Self::build(capacity_bytes, false)
    }

    /// Like [`BlockCache::new`], but no read or write ever waits for the cache to take fresh
    /// memory: a fill that finds no free piece leaves its blocks out and asks a background
    /// thread, at the lowest CPU priority, for that many more pieces (up to the capacity).
    ///
    /// Why: fresh memory costs page faults, and on the machine of issue 22 they cost 1-4 s of
    /// CPU per GiB (a VM that backs guest memory lazily). Filling the cache inline cut the
    /// first read of a checkpoint from about 800 to 365 MB/s. So memory grows when a CPU is
    /// idle, tracks what reads asked for (a store that reads 10 MiB takes about 10 MiB), and
    /// once the cache is full, evictions free pieces and every fill is cached at once.
    pub fn with_background_growth(capacity_bytes: u64) -> BlockCache {
        Self::build(capacity_bytes, true)
    }

    fn build(capacity_bytes: u64, background: bool) -> BlockCache {
        let evictions = Evictions::default();
        let map = (capacity_bytes >= ENTRY_WEIGHT * 64).then(|| {
            // The table grows as entries arrive; only a modest start is allocated up front.
            // (quick_cache 0.6 allocates its tables as entries arrive; the estimate sizes
            // the ghost list that recognises returning blocks, so it must be the real one.)
            let estimate = (capacity_bytes / ENTRY_WEIGHT) as usize;
            Cache::with(
                estimate,
                capacity_bytes,
                Weigh,
                Default::default(),
                evictions.clone(),
            )
        });
        let memory = Arc::new(Slabs {
            free: Mutex::new(Vec::new()),
            slabs: Mutex::new(Vec::new()),
        });
        let wanted = Arc::new(AtomicU64::new(0));
        let grower = (background && map.is_some())
            .then(|| spawn_grower(Arc::clone(&memory), Arc::clone(&wanted), capacity_bytes))
            .flatten();
        BlockCache {
            capacity: if map.is_some() { capacity_bytes } else { 0 },
            map,
            memory,
            fills_skipped: AtomicU64::new(0),
            wanted,
            grower,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            inserts: AtomicU64::new(0),
            evictions,
        }
    }

    pub fn enabled(&self) -> bool {
        self.map.is_some()
    }

    /// The cached content of `slot` on `device`, if it is cached with the checksum the slot
    /// expects. Holes are never looked up.
    pub fn get(&self, device: u16, slot: Slot) -> Option<Bytes> {
        let map = self.map.as_ref()?;
        match map.get(&(device, slot.physical)) {
            Some(entry) if entry.crc == slot.crc => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(entry.data)
            }
            _ => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Puts the blocks of `buf` (block `i` at `i * BLOCK`) in, under the slots they were
    /// read from; holes are skipped. The caller guarantees each block is the content of its
    /// physical block, verified against its crc. Takes more memory when none is free (with
    /// background growth: leaves them out and asks for more).
    pub fn insert(&self, device: u16, slots: &[Slot], buf: &[u8]) {
        self.put(device, slots, buf, self.grower.is_none(), true);
    }

    /// [`BlockCache::insert`] for blocks just written with these crcs, but only into memory
    /// already free (pieces of evicted or released blocks), and without asking for more:
    /// taking memory for a checkpoint as it is written (inline or on the background thread,
    /// which then competes with the save for the CPU and the address space) cut the save
    /// from 862-974 to 312-495 MB/s on the machine of issue 22. So the cache's memory grows
    /// with what is read; once it is full, evictions free pieces and writes are cached too.
    pub fn insert_written(&self, device: u16, slots: &[Slot], buf: &[u8]) {
        self.put(device, slots, buf, false, false);
    }

    fn put(&self, device: u16, slots: &[Slot], buf: &[u8], grow: bool, ask: bool) {
        let Some(map) = self.map.as_ref() else {
            return;
        };
        for (i, slot) in slots.iter().enumerate() {
            if slot.is_hole() {
                continue;
            }
            let Some(data) = self.memory.copy(&buf[i * BLOCK..(i + 1) * BLOCK], grow) else {
                let left = slots[i..].iter().filter(|s| !s.is_hole()).count() as u64;
                self.fills_skipped.fetch_add(left, Ordering::Relaxed);
                if let Some(grower) = self.grower.as_ref().filter(|_| ask) {
                    self.wanted.fetch_add(left, Ordering::Relaxed);
                    let _ = grower.try_send(()); // Full: a request is already waiting.
                }
                return;
            };
            map.insert(
                (device, slot.physical),
                Entry {
                    crc: slot.crc,
                    data,
                },
            );
            self.inserts.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drops the entries of these blocks of `device` (they are being freed, or an insert
    /// turned out to race with a change of the map).
    pub fn remove(&self, device: u16, blocks: impl IntoIterator<Item = u64>) {
        let Some(map) = self.map.as_ref() else {
            return;
        };
        for physical in blocks {
            map.remove(&(device, physical));
        }
    }

    pub fn stats(&self) -> CacheStats {
        let (bytes, blocks) = self
            .map
            .as_ref()
            .map_or((0, 0), |m| (m.weight(), m.len() as u64));
        CacheStats {
            capacity_bytes: self.capacity,
            bytes,
            blocks,
            memory_bytes: self.memory.bytes(),
            fills_skipped: self.fills_skipped.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            inserts: self.inserts.load(Ordering::Relaxed),
            evictions: self.evictions.0.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(byte: u8) -> Vec<u8> {
        vec![byte; BLOCK]
    }

    fn slot(physical: u64, data: &[u8]) -> Slot {
        Slot {
            physical,
            crc: crc32c::crc32c(data),
        }
    }

    #[test]
    fn a_block_put_in_comes_back_only_for_the_checksum_it_was_stored_with() {
        let cache = BlockCache::new(1 << 20);
        let a = block(1);
        cache.insert(0, &[slot(7, &a)], &a);
        assert_eq!(cache.get(0, slot(7, &a)).as_deref(), Some(&a[..]));
        assert!(cache.get(0, slot(7, &block(2))).is_none());
        assert!(cache.get(1, slot(7, &a)).is_none(), "another device");
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.inserts, s.blocks), (1, 2, 1, 1));
    }

    #[test]
    fn holes_are_neither_stored_nor_looked_up() {
        let cache = BlockCache::new(1 << 20);
        let buf = [block(0), block(3)].concat();
        cache.insert(0, &[Slot::default(), slot(9, &block(3))], &buf);
        assert_eq!(cache.stats().blocks, 1);
        assert_eq!(
            cache.get(0, slot(9, &block(3))).as_deref(),
            Some(&block(3)[..])
        );
    }

    #[test]
    fn removed_blocks_are_gone() {
        let cache = BlockCache::new(1 << 20);
        let a = block(4);
        cache.insert(2, &[slot(5, &a)], &a);
        cache.remove(2, [5]);
        assert!(cache.get(2, slot(5, &a)).is_none());
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity() {
        let capacity = 256 * ENTRY_WEIGHT;
        let cache = BlockCache::new(capacity);
        for i in 1..=10_000u64 {
            let b = block(i as u8);
            cache.insert(0, &[slot(i, &b)], &b);
            assert!(cache.stats().bytes <= capacity);
        }
        let s = cache.stats();
        assert!(s.blocks <= 256 && s.blocks > 128, "{s:?}");
        assert!(s.evictions >= 10_000 - 256, "{s:?}");
    }

    #[test]
    fn written_blocks_are_cached_only_into_memory_that_is_free() {
        let cache = BlockCache::new(64 * ENTRY_WEIGHT);
        let a = block(5);
        cache.insert_written(0, &[slot(1, &a)], &a);
        assert!(cache.get(0, slot(1, &a)).is_none());
        assert_eq!(cache.stats().fills_skipped, 1);
        // Reads take memory; once the cache is full, evictions free pieces for writes.
        for i in 10..1000u64 {
            let b = block(i as u8);
            cache.insert(0, &[slot(i, &b)], &b);
        }
        cache.insert_written(0, &[slot(1, &a)], &a);
        assert_eq!(cache.get(0, slot(1, &a)).as_deref(), Some(&a[..]));
        assert_eq!(cache.stats().fills_skipped, 1);
    }

    #[test]
    fn with_background_growth_fills_wait_for_memory_taken_off_the_request_path() {
        let cache = BlockCache::with_background_growth(64 << 20);
        let a = block(5);
        cache.insert(0, &[slot(1, &a)], &a);
        assert!(cache.get(0, slot(1, &a)).is_none());
        assert_eq!(cache.stats().fills_skipped, 1);
        // The thread takes one slab for the one block wanted, soon after.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while cache.stats().memory_bytes == 0 {
            assert!(std::time::Instant::now() < deadline, "{:?}", cache.stats());
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        cache.insert(0, &[slot(1, &a)], &a);
        assert_eq!(cache.get(0, slot(1, &a)).as_deref(), Some(&a[..]));
        assert_eq!(cache.stats().memory_bytes, SLAB as u64);
    }

    #[test]
    fn memory_of_evicted_blocks_is_used_again() {
        let capacity = 4 << 20;
        let cache = BlockCache::new(capacity);
        for i in 1..=10_000u64 {
            let b = block(i as u8);
            cache.insert(0, &[slot(i, &b)], &b);
        }
        let s = cache.stats();
        assert!(s.memory_bytes <= capacity + 2 * SLAB as u64, "{s:?}");
        // The newest blocks read back whole from recycled memory.
        let last = block(10_000u64 as u8);
        assert_eq!(
            cache.get(0, slot(10_000, &last)).as_deref(),
            Some(&last[..])
        );
    }

    #[test]
    fn a_block_handed_out_outlives_its_eviction_and_the_cache() {
        let cache = BlockCache::new(64 * ENTRY_WEIGHT);
        let a = block(42);
        cache.insert(0, &[slot(1, &a)], &a);
        let held = cache.get(0, slot(1, &a)).unwrap();
        for i in 2..=1000u64 {
            let b = block(i as u8);
            cache.insert(0, &[slot(i, &b)], &b);
        }
        drop(cache);
        assert_eq!(&held[..], &a[..]);
    }

    #[test]
    fn a_single_pass_over_many_blocks_does_not_evict_blocks_read_twice() {
        let capacity = 1024 * ENTRY_WEIGHT;
        let cache = BlockCache::new(capacity);
        let hot: Vec<Slot> = (1..=256u64).map(|i| slot(i, &block(i as u8))).collect();
        for _ in 0..2 {
            for s in &hot {
                if cache.get(0, *s).is_none() {
                    let b = block(s.physical as u8);
                    cache.insert(0, &[*s], &b);
                }
            }
        }
        // A scan ten times the cache's size, each block seen once.
        for i in 100_000..110_240u64 {
            let b = block(i as u8);
            cache.insert(0, &[slot(i, &b)], &b);
        }
        let kept = hot.iter().filter(|s| cache.get(0, **s).is_some()).count();
        assert!(
            kept >= 230,
            "only {kept} of 256 hot blocks survived the scan"
        );
    }

    #[test]
    fn a_cache_smaller_than_a_few_blocks_is_off() {
        let cache = BlockCache::new(0);
        let a = block(1);
        cache.insert(0, &[slot(7, &a)], &a);
        assert!(!cache.enabled());
        assert!(cache.get(0, slot(7, &a)).is_none());
        assert_eq!(cache.stats(), CacheStats::default());
    }
}
