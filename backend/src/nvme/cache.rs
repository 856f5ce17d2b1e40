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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
    /// Block lookups that found the block / did not.
    pub hits: u64,
    pub misses: u64,
    /// Blocks put in by reads and by writes.
    pub inserts: u64,
    pub evictions: u64,
}

/// A bounded, scan-resistant cache of file blocks. Capacity 0 turns it off.
pub struct BlockCache {
    map: Option<Cache<Key, Entry, Weigh, std::collections::hash_map::RandomState, Evictions>>,
    capacity: u64,
    hits: AtomicU64,
    misses: AtomicU64,
    inserts: AtomicU64,
    evictions: Evictions,
}

impl BlockCache {
    /// A cache holding at most `capacity_bytes` (entries and their overhead). Below one
    /// entry's worth, the cache is off and every call is a cheap no-op.
    pub fn new(capacity_bytes: u64) -> BlockCache {
        let evictions = Evictions::default();
        let map = (capacity_bytes >= ENTRY_WEIGHT * 64).then(|| {
            // The table grows as entries arrive; only a modest start is allocated up front.
            let estimate = (capacity_bytes / ENTRY_WEIGHT).min(4096) as usize;
            Cache::with(
                estimate,
                capacity_bytes,
                Weigh,
                Default::default(),
                evictions.clone(),
            )
        });
        BlockCache {
            capacity: if map.is_some() { capacity_bytes } else { 0 },
            map,
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
    /// read from or written to; holes are skipped. The caller guarantees each block is the
    /// content of its physical block, verified against (or just written with) its crc.
    pub fn insert(&self, device: u16, slots: &[Slot], buf: &[u8]) {
        let Some(map) = self.map.as_ref() else {
            return;
        };
        for (i, slot) in slots.iter().enumerate() {
            if slot.is_hole() {
                continue;
            }
            let data = Bytes::copy_from_slice(&buf[i * BLOCK..(i + 1) * BLOCK]);
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
