//! Properties of the NVMe store beyond the shared conformance suite: checksums, durability
//! across reopen, free-space reuse, huge sparse files, several devices.

use std::os::unix::fs::FileExt;
use std::path::Path;

use backend::nvme::io::EngineChoice;
use backend::nvme::{NvmeConfig, NvmeStore};
use backend::{Attr, CreateMode, Cred, Error, NodeKind, SetAttr, Stability, Store};
use bytes::Bytes;

fn root() -> Cred {
    Cred::root()
}

async fn create(s: &NvmeStore, name: &str) -> Attr {
    s.create(
        &root(),
        s.root(),
        name.as_bytes(),
        NodeKind::Regular,
        SetAttr::default(),
        CreateMode::Guarded,
    )
    .await
    .unwrap()
    .0
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn read(s: &NvmeStore, file: &Attr, offset: u64, count: u32) -> backend::Result<Vec<u8>> {
    s.read(&root(), file.id, offset, count)
        .await
        .map(|r| r.data.to_vec())
}

async fn write(s: &NvmeStore, file: &Attr, offset: u64, data: &[u8], how: Stability) {
    s.write(&root(), file.id, offset, Bytes::copy_from_slice(data), how)
        .await
        .unwrap();
}

/// Writes `bytes` at byte `at` of a device file, behind the store's back (a bad disk).
fn write_on_disk(device: &Path, at: u64, bytes: &[u8]) {
    let dev = std::fs::OpenOptions::new()
        .write(true)
        .open(device)
        .unwrap();
    dev.write_all_at(bytes, at).unwrap();
}

fn open(dir: &Path) -> NvmeStore {
    NvmeStore::open(dir).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_block_reads_as_an_io_error_never_as_data() {
    let tmp = tempfile::tempdir().unwrap();
    let file = {
        let s = open(tmp.path());
        let file = create(&s, "f").await;
        write(&s, &file, 0, &pattern(3 * 4096, 1), Stability::FileSync).await;
        let (device, at) = s.data().locate(file.id.ino, 4096 + 100).unwrap().unwrap();
        write_on_disk(&device, at, b"rot");
        file
    };
    let s = open(tmp.path());
    // The first and last blocks are intact; the middle one fails, alone or inside a range.
    assert_eq!(read(&s, &file, 0, 4096).await.unwrap(), pattern(4096, 1));
    assert_eq!(
        read(&s, &file, 8192, 4096).await.unwrap(),
        pattern(3 * 4096, 1)[8192..]
    );
    assert!(matches!(read(&s, &file, 4096, 10).await, Err(Error::Io(_))));
    assert!(matches!(read(&s, &file, 0, 12288).await, Err(Error::Io(_))));
    // Rewriting the block heals the file.
    write(&s, &file, 4096, &[7u8; 4096], Stability::FileSync).await;
    assert_eq!(read(&s, &file, 4096, 4096).await.unwrap(), vec![7u8; 4096]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_write_next_to_a_corrupted_block_fails_instead_of_spreading_it() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path());
    let file = create(&s, "f").await;
    write(&s, &file, 0, &pattern(4096, 2), Stability::FileSync).await;
    let (device, at) = s.data().locate(file.id.ino, 0).unwrap().unwrap();
    drop(s);
    write_on_disk(&device, at + 4000, b"X");
    let s = open(tmp.path());
    let partial = s
        .write(
            &root(),
            file.id,
            10,
            Bytes::from_static(b"abc"),
            Stability::FileSync,
        )
        .await;
    assert!(matches!(partial, Err(Error::Io(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_data_survives_reopen_and_uncommitted_overwrites_do_not_damage_it() {
    let tmp = tempfile::tempdir().unwrap();
    let file = {
        let s = open(tmp.path());
        let file = create(&s, "f").await;
        write(&s, &file, 0, &pattern(1 << 20, 3), Stability::Unstable).await;
        s.commit(file.id, 0, 0).await.unwrap();
        // Overwritten but never committed: the store may keep either version of these bytes,
        // and nothing else.
        write(&s, &file, 4096, &[0xee; 8192], Stability::Unstable).await;
        file
    };
    let s = open(tmp.path());
    let back = read(&s, &file, 0, 1 << 20).await.unwrap();
    let old = pattern(1 << 20, 3);
    assert_eq!(back.len(), old.len());
    assert_eq!(back[..4096], old[..4096]);
    assert_eq!(back[12288..], old[12288..]);
    let middle = &back[4096..12288];
    assert!(middle == &old[4096..12288] || middle == [0xee; 8192]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn space_of_overwritten_and_removed_files_is_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path());
    let file = create(&s, "f").await;
    let start = s.data().free_blocks();
    for round in 0..4u8 {
        write(&s, &file, 0, &pattern(1 << 20, round), Stability::FileSync).await;
    }
    // One MiB in use plus nothing leaked by three overwrites.
    assert_eq!(start - s.data().free_blocks(), 256);
    s.remove(&root(), s.root(), b"f").await.unwrap();
    s.commit(s.root(), 0, 0).await.unwrap();
    let other = create(&s, "g").await;
    s.commit(other.id, 0, 0).await.unwrap();
    assert_eq!(s.data().free_blocks(), start);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_space_of_a_file_removed_before_a_crash_is_reclaimed_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let start = {
        let s = open(tmp.path());
        let start = s.data().free_blocks();
        let file = create(&s, "f").await;
        write(&s, &file, 0, &pattern(1 << 20, 4), Stability::FileSync).await;
        // The unlink is durable in the metadata; the freed chunk maps are not flushed.
        s.remove(&root(), s.root(), b"f").await.unwrap();
        start
    };
    let s = open(tmp.path());
    assert_eq!(s.data().free_blocks(), start);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_more_than_a_tebibyte_is_sparse_and_readable_at_both_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path());
    let file = create(&s, "big").await;
    let far = (1u64 << 40) + 12345;
    write(&s, &file, 0, b"head", Stability::Unstable).await;
    write(&s, &file, far, b"tail", Stability::FileSync).await;
    assert_eq!(s.getattr(file.id).await.unwrap().size, far + 4);
    assert_eq!(read(&s, &file, far, 4).await.unwrap(), b"tail");
    assert_eq!(read(&s, &file, 0, 4).await.unwrap(), b"head");
    assert_eq!(read(&s, &file, 1 << 39, 8).await.unwrap(), vec![0; 8]);
    let residency = s.residency(file.id).await.unwrap();
    assert_eq!(residency.store, "nvme");
    assert_eq!(residency.extents.len(), 2);
    // Cutting it back frees the far block.
    s.setattr(
        &root(),
        file.id,
        SetAttr {
            size: Some(2),
            ..SetAttr::default()
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(read(&s, &file, 0, 10).await.unwrap(), b"he");
    s.setattr(
        &root(),
        file.id,
        SetAttr {
            size: Some(4),
            ..SetAttr::default()
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(read(&s, &file, 0, 10).await.unwrap(), b"he\0\0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_of_a_file_rotate_over_several_devices_and_reopen_in_order_only() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = NvmeConfig::new(tmp.path());
    config.devices = vec![tmp.path().join("a"), tmp.path().join("b")];
    config.engine = EngineChoice::Threads;
    let file = {
        let s = NvmeStore::open_with(&config).unwrap();
        let file = create(&s, "f").await;
        write(&s, &file, 0, &pattern(3 << 20, 5), Stability::FileSync).await;
        let dev0 = s.data().locate(file.id.ino, 0).unwrap().unwrap().0;
        let dev1 = s.data().locate(file.id.ino, 1 << 20).unwrap().unwrap().0;
        assert_ne!(dev0, dev1);
        file
    };
    {
        let s = NvmeStore::open_with(&config).unwrap();
        assert_eq!(
            read(&s, &file, 0, 3 << 20).await.unwrap(),
            pattern(3 << 20, 5)
        );
    }
    config.devices.reverse();
    let refused = NvmeStore::open_with(&config).err().unwrap();
    assert!(matches!(refused, Error::Io(m) if m.contains("not device 0")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwrites_without_commit_reuse_space_instead_of_growing_the_device() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path());
    let file = create(&s, "f").await;
    let capacity = s.data().capacity_blocks();
    let data = pattern(1 << 20, 6);
    // Twice the device's size in overwrites, never committed.
    for _ in 0..(2 * capacity / 256) {
        write(&s, &file, 0, &data, Stability::Unstable).await;
    }
    assert_eq!(s.data().capacity_blocks(), capacity);
    assert_eq!(read(&s, &file, 0, 1 << 20).await.unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aligned_unstable_writes_take_the_async_path_and_concurrent_ones_survive_commit_and_reopen()
{
    let tmp = tempfile::tempdir().unwrap();
    let file = {
        let s = std::sync::Arc::new(open(tmp.path()));
        let file = create(&s, "f").await;
        // The first write of a run takes the blocking path (it trims and caches the chunk).
        write(&s, &file, 0, &pattern(2 << 20, 7), Stability::Unstable).await;
        // With nothing else running, the next aligned UNSTABLE write is staged on the runtime.
        let before = s.data().staged_writes();
        write(&s, &file, 0, &pattern(4096, 7), Stability::Unstable).await;
        assert_eq!(s.data().staged_writes(), before + 1);
        // Concurrent writes: each one whose state lock is busy at that instant goes to the
        // blocking path by design, so how many were staged varies; what they leave must not.
        let tasks: Vec<_> = (0..64u64)
            .map(|i| {
                let s = std::sync::Arc::clone(&s);
                let id = file.id;
                tokio::spawn(async move {
                    let block = Bytes::from(vec![i as u8; 4096]);
                    s.write(&root(), id, i * 8192, block, Stability::Unstable)
                        .await
                        .unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        s.commit(file.id, 0, 0).await.unwrap();
        file
    };
    let s = open(tmp.path());
    let back = read(&s, &file, 0, 2 << 20).await.unwrap();
    let old = pattern(2 << 20, 7);
    for i in 0..64usize {
        let at = i * 8192;
        assert_eq!(back[at..at + 4096], vec![i as u8; 4096][..], "block {i}");
        assert_eq!(back[at + 4096..at + 8192], old[at + 4096..at + 8192]);
    }
    assert_eq!(back[64 * 8192..], old[64 * 8192..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_aligned_writes_to_one_block_leave_one_of_them_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(open(tmp.path()));
    let file = create(&s, "f").await;
    write(&s, &file, 0, &[0u8; 4096], Stability::Unstable).await;
    let tasks: Vec<_> = (1..=32u8)
        .map(|v| {
            let s = std::sync::Arc::clone(&s);
            let id = file.id;
            tokio::spawn(async move {
                s.write(
                    &root(),
                    id,
                    0,
                    Bytes::from(vec![v; 4096]),
                    Stability::Unstable,
                )
                .await
                .unwrap();
                if v % 8 == 0 {
                    s.commit(id, 0, 0).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let back = read(&s, &file, 0, 4096).await.unwrap();
    assert!((1..=32).contains(&back[0]));
    assert!(back.iter().all(|&b| b == back[0]), "a torn block");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_written_out_of_order_are_laid_out_in_file_order() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path());
    let file = create(&s, "f").await;
    let other = create(&s, "g").await;
    for (n, k) in [3u64, 1, 0, 2, 5, 4, 7, 6].into_iter().enumerate() {
        write(
            &s,
            &file,
            k << 20,
            &pattern(1 << 20, k as u8),
            Stability::Unstable,
        )
        .await;
        // Another file allocating in between must not break the layout.
        write(
            &s,
            &other,
            (n as u64) << 20,
            &pattern(1 << 20, 9),
            Stability::Unstable,
        )
        .await;
    }
    let at = |k: u64| s.data().locate(file.id.ino, k << 20).unwrap().unwrap().1;
    let base = at(0);
    for k in 1..8 {
        assert_eq!(at(k), base + (k << 20), "chunk {k}");
    }
    assert_eq!(
        read(&s, &file, 5 << 20, 1 << 20).await.unwrap(),
        pattern(1 << 20, 5)
    );
}

fn open_with_cache(dir: &Path, cache_bytes: u64) -> NvmeStore {
    let mut config = NvmeConfig::new(dir);
    config.cache_bytes = cache_bytes;
    // What a test reads is cached at once (no background thread to wait for).
    config.cache_background_growth = false;
    NvmeStore::open_with(&config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_read_again_comes_from_memory_until_the_store_reopens() {
    let tmp = tempfile::tempdir().unwrap();
    let file = {
        let s = open_with_cache(tmp.path(), 64 << 20);
        let file = create(&s, "f").await;
        write(&s, &file, 0, &pattern(3 * 4096, 1), Stability::FileSync).await;
        // A first read fills the cache (a write does too, once the cache has memory).
        read(&s, &file, 0, 3 * 4096).await.unwrap();
        // Damage the middle block on disk: the cached copy answers.
        let (device, at) = s.data().locate(file.id.ino, 4096).unwrap().unwrap();
        write_on_disk(&device, at, b"rot");
        let before = s.data().cache_stats();
        assert_eq!(
            read(&s, &file, 0, 3 * 4096).await.unwrap(),
            pattern(3 * 4096, 1)
        );
        assert_eq!(
            read(&s, &file, 4096 + 7, 100).await.unwrap()[..],
            { pattern(3 * 4096, 1)[4096 + 7..4096 + 107].to_vec() }[..]
        );
        let after = s.data().cache_stats();
        assert_eq!(after.hits - before.hits, 4);
        assert_eq!(after.misses, before.misses);
        file
    };
    // A reopened store starts empty and reads the disk, checksums and all.
    let s = open_with_cache(tmp.path(), 64 << 20);
    assert!(matches!(read(&s, &file, 4096, 10).await, Err(Error::Io(_))));
    assert_eq!(read(&s, &file, 0, 4096).await.unwrap(), pattern(4096, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwrites_truncations_and_removals_never_let_an_old_block_be_read_again() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open_with_cache(tmp.path(), 64 << 20);
    let f = create(&s, "f").await;
    write(&s, &f, 0, &pattern(1 << 20, 1), Stability::FileSync).await;
    assert_eq!(read(&s, &f, 0, 1 << 20).await.unwrap(), pattern(1 << 20, 1));
    // Overwrite (aligned, partial, unstable), then read before and after the commit.
    write(&s, &f, 8192, &[9u8; 4096], Stability::Unstable).await;
    write(&s, &f, 100, b"xyz", Stability::Unstable).await;
    let mut want = pattern(1 << 20, 1);
    want[8192..12288].fill(9);
    want[100..103].copy_from_slice(b"xyz");
    assert_eq!(read(&s, &f, 0, 1 << 20).await.unwrap(), want);
    s.commit(f.id, 0, 0).await.unwrap();
    assert_eq!(read(&s, &f, 0, 1 << 20).await.unwrap(), want);
    // Cut inside a block, then grow again: the tail reads as zeros, not as the cached tail.
    let size = |n| SetAttr {
        size: Some(n),
        ..SetAttr::default()
    };
    s.setattr(&root(), f.id, size(5000), None).await.unwrap();
    s.setattr(&root(), f.id, size(1 << 20), None).await.unwrap();
    let back = read(&s, &f, 0, 1 << 20).await.unwrap();
    assert_eq!(back[..5000], want[..5000]);
    assert!(back[5000..].iter().all(|&b| b == 0));
    // Remove it; new files take the freed blocks and read only their own data.
    s.remove(&root(), s.root(), b"f").await.unwrap();
    s.commit(s.root(), 0, 0).await.unwrap();
    for i in 0..4u8 {
        let g = create(&s, &format!("g{i}")).await;
        write(&s, &g, 0, &pattern(256 << 10, 50 + i), Stability::FileSync).await;
        assert_eq!(
            read(&s, &g, 0, 256 << 10).await.unwrap(),
            pattern(256 << 10, 50 + i)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_racing_overwrites_and_commits_see_only_whole_blocks_of_their_own_file_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(open_with_cache(tmp.path(), 64 << 20));
    let f = create(&s, "f").await;
    // Block k holds k in its first half and a version (u16, repeated) in its second.
    const BLOCKS: u64 = 256;
    let version = |v: u16| {
        let mut data = vec![0u8; BLOCKS as usize * 4096];
        for (k, b) in data.chunks_mut(4096).enumerate() {
            b[..2048].fill(k as u8);
            for pair in b[2048..].chunks_mut(2) {
                pair.copy_from_slice(&v.to_le_bytes());
            }
        }
        data
    };
    write(&s, &f, 0, &version(0), Stability::FileSync).await;
    // 320 versions of 1 MiB: more than the device file's first 256 MiB, so blocks freed by
    // the commits are allocated again while the readers (and the cache) still know them.
    const VERSIONS: u16 = 320;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let s = std::sync::Arc::clone(&s);
        let id = f.id;
        let done = std::sync::Arc::clone(&done);
        tokio::spawn(async move {
            for v in 1..=VERSIONS {
                let data = Bytes::from(version(v));
                s.write(&root(), id, 0, data, Stability::Unstable)
                    .await
                    .unwrap();
                // Each commit frees the blocks of the version before.
                s.commit(id, 0, 0).await.unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let readers: Vec<_> = (0..2u64)
        .map(|r| {
            let s = std::sync::Arc::clone(&s);
            let id = f.id;
            let done = std::sync::Arc::clone(&done);
            tokio::spawn(async move {
                // Each read starts after the one before ended: a block never goes back
                // to an older version (a stale cached copy would).
                let mut seen = [0u16; BLOCKS as usize];
                let mut reads = 0u64;
                // While the writer runs (bounded in count).
                while !done.load(std::sync::atomic::Ordering::SeqCst) && reads < 3000 {
                    let k = (reads * 7 + r * 13) % BLOCKS;
                    let got = s.read(&root(), id, k * 4096, 8192).await.unwrap().data;
                    for (i, b) in got.chunks(4096).enumerate() {
                        let at = (k + i as u64) as usize;
                        assert!(b[..2048].iter().all(|&x| x == at as u8), "block {at}");
                        let v = u16::from_le_bytes([b[2048], b[2049]]);
                        assert!(
                            b[2048..].chunks(2).all(|p| p == v.to_le_bytes()),
                            "block {at} torn"
                        );
                        assert!(
                            v >= seen[at],
                            "block {at} went back from {} to {v}",
                            seen[at]
                        );
                        seen[at] = v;
                    }
                    reads += 1;
                }
            })
        })
        .collect();
    writer.await.unwrap();
    for r in readers {
        r.await.unwrap();
    }
    assert_eq!(read(&s, &f, 0, 1 << 20).await.unwrap(), version(VERSIONS));
    assert!(s.data().cache_stats().hits > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_many_times_the_cache_keeps_memory_within_the_cache_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let capacity = 2 << 20;
    let s = open_with_cache(tmp.path(), capacity);
    let f = create(&s, "f").await;
    for i in 0..16u64 {
        write(
            &s,
            &f,
            i << 20,
            &pattern(1 << 20, i as u8),
            Stability::Unstable,
        )
        .await;
    }
    s.commit(f.id, 0, 0).await.unwrap();
    for _ in 0..2 {
        for i in 0..16u64 {
            let got = read(&s, &f, i << 20, 1 << 20).await.unwrap();
            assert_eq!(got, pattern(1 << 20, i as u8));
            let c = s.data().cache_stats();
            assert!(c.bytes <= capacity, "{c:?}");
            // Memory: the entries, plus at most one slab being cut and the pieces that
            // replies still hold (none here once a read returned).
            assert!(c.memory_bytes <= capacity + (2 << 20), "{c:?}");
        }
    }
    let c = s.data().cache_stats();
    assert!(c.evictions > 0 && c.misses > 0, "{c:?}");
    assert_eq!(c.capacity_bytes, capacity);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_a_cache_reads_everything_from_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open_with_cache(tmp.path(), 0);
    let f = create(&s, "f").await;
    write(&s, &f, 0, &pattern(64 << 10, 3), Stability::FileSync).await;
    assert_eq!(
        read(&s, &f, 0, 64 << 10).await.unwrap(),
        pattern(64 << 10, 3)
    );
    assert_eq!(s.data().cache_stats(), Default::default());
}

/// The store never writes over a mapped block, so a cached block can only go stale when its
/// block is freed and allocated again. Two guards stop that: `release` drops the entries of
/// freed blocks, and every hit must carry the crc the chunk map expects. Either alone keeps
/// this test green; without both, the new file reads the removed file's bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freed_block_allocated_again_never_reads_as_its_old_cached_content() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open_with_cache(tmp.path(), 64 << 20);
    // 2 MiB: one whole slab of cache memory, so no piece is left free for later writes
    // (which, given one, would replace the stale entries and hide the bug).
    const LEN: usize = 2 << 20;
    let old = create(&s, "old").await;
    write(&s, &old, 0, &pattern(LEN, 1), Stability::FileSync).await;
    assert_eq!(
        read(&s, &old, 0, LEN as u32).await.unwrap(),
        pattern(LEN, 1)
    );
    let old_at = s.data().locate(old.id.ino, 0).unwrap().unwrap();
    s.remove(&root(), s.root(), b"old").await.unwrap();
    s.commit(s.root(), 0, 0).await.unwrap();
    // New files until one lands on the freed blocks (the 256 MiB first extent of the device
    // file bounds the search: next fit comes back to them before the device grows).
    for i in 0..140u8 {
        let new = create(&s, &format!("new{i}")).await;
        write(&s, &new, 0, &pattern(LEN, 100 + i), Stability::FileSync).await;
        let got = read(&s, &new, 0, LEN as u32).await.unwrap();
        assert!(got == pattern(LEN, 100 + i), "new{i} read other bytes");
        if s.data().locate(new.id.ino, 0).unwrap().unwrap() == old_at {
            return;
        }
    }
    panic!("no new file took the freed blocks: the test no longer exercises reuse");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrub_s_verify_reads_the_disk_and_finds_a_bad_block_that_the_cache_still_hides() {
    use backend::engine::DataStore;
    let tmp = tempfile::tempdir().unwrap();
    let s = open_with_cache(tmp.path(), 64 << 20);
    let f = create(&s, "f").await;
    write(&s, &f, 0, &pattern(3 * 4096, 4), Stability::FileSync).await;
    // A scrub's read of blocks not in the cache leaves them out of it.
    let before = s.data().cache_stats();
    assert_eq!(s.data().verify(f.id.ino, 0, 3 * 4096).unwrap(), None);
    assert_eq!(
        s.data().cache_stats().inserts,
        before.inserts,
        "a scrub caches nothing"
    );
    read(&s, &f, 0, 3 * 4096).await.unwrap();
    let (device, at) = s.data().locate(f.id.ino, 4096).unwrap().unwrap();
    write_on_disk(&device, at, b"rot");
    // Reads are answered from memory; the scrub's read is not.
    assert_eq!(
        read(&s, &f, 0, 3 * 4096).await.unwrap(),
        pattern(3 * 4096, 4)
    );
    let bad = s.data().verify(f.id.ino, 0, 3 * 4096).unwrap();
    assert!(
        bad.as_deref()
            .is_some_and(|why| why.contains("checksum mismatch")),
        "{bad:?}"
    );
    assert_eq!(s.data().verify(f.id.ino, 8192, 4096).unwrap(), None);
}

/// Reads (`None`) or writes one 4 KiB block at byte `at` of a device file with O_DIRECT, as
/// the store does (mixing buffered and direct I/O on one file is not coherent everywhere).
fn direct_block(device: &Path, at: u64, write: Option<&[u8]>) -> Vec<u8> {
    use std::os::unix::fs::OpenOptionsExt;
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(device)
        .unwrap();
    let mut buf = iobuf::AlignedBuf::zeroed(1);
    match write {
        Some(data) => {
            buf.copy_from_slice(data);
            dev.write_all_at(&buf, at).unwrap();
        }
        None => dev.read_exact_at(&mut buf, at).unwrap(),
    }
    buf.to_vec()
}

fn open_with_write_back(dir: &Path, write_back_bytes: u64) -> NvmeStore {
    let mut config = NvmeConfig::new(dir);
    // No block cache: a read that does not come from the disk came from the write-back set.
    config.cache_bytes = 0;
    config.write_back_bytes = write_back_bytes;
    NvmeStore::open_with(&config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unstable_write_still_running_reads_from_memory_and_commit_waits_for_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (file, new) = {
        let s = std::sync::Arc::new(open_with_write_back(tmp.path(), 256 << 20));
        let file = create(&s, "f").await;
        // The first write of a run takes the blocking path (it trims and caches the chunk).
        write(&s, &file, 0, &pattern(1 << 20, 1), Stability::FileSync).await;
        s.data().hold_write_back(true);
        let new = pattern(1 << 20, 2);
        let before = s.data().staged_writes();
        write(&s, &file, 0, &new, Stability::Unstable).await;
        assert_eq!(s.data().staged_writes(), before + 1, "took the async path");
        assert_eq!(
            s.data().write_back_blocks(),
            256,
            "acknowledged while running"
        );
        // Behind the store's back, the disk loses the new blocks: a read must not notice,
        // because a block whose write is running is read from memory.
        let mut saved = Vec::new();
        for offset in [0u64, 4096, (1 << 20) - 4096] {
            let (device, at) = s.data().locate(file.id.ino, offset).unwrap().unwrap();
            let was = &new[offset as usize..offset as usize + 4096];
            // The device write itself runs (only its completion is held): let it land first.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while direct_block(&device, at, None) != was {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the device write never ran"
                );
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            direct_block(&device, at, Some(&[0xee; 4096]));
            saved.push((device, at, was.to_vec()));
        }
        assert_eq!(read(&s, &file, 0, 1 << 20).await.unwrap(), new);
        assert_eq!(read(&s, &file, 4096, 4096).await.unwrap(), new[4096..8192]);
        // COMMIT waits for the write.
        let commit = {
            let s = std::sync::Arc::clone(&s);
            let id = file.id;
            tokio::spawn(async move { s.commit(id, 0, 0).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(
            !commit.is_finished(),
            "COMMIT returned before the write completed"
        );
        for (device, at, was) in saved {
            direct_block(&device, at, Some(&was));
        }
        s.data().hold_write_back(false);
        tokio::time::timeout(std::time::Duration::from_secs(10), commit)
            .await
            .expect("COMMIT returned once the write completed")
            .unwrap()
            .unwrap();
        assert_eq!(s.data().write_back_blocks(), 0);
        (file, new)
    };
    let s = open_with_write_back(tmp.path(), 256 << 20);
    assert_eq!(read(&s, &file, 0, 1 << 20).await.unwrap(), new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_finds_the_write_back_set_full_waits_for_room_and_is_not_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(open_with_write_back(tmp.path(), 64 << 10));
    let file = create(&s, "f").await;
    write(&s, &file, 0, &pattern(1 << 20, 3), Stability::FileSync).await;
    s.data().hold_write_back(true);
    let first = pattern(64 << 10, 4);
    write(&s, &file, 0, &first, Stability::Unstable).await;
    assert_eq!(s.data().write_back_blocks(), 16, "the set is full");
    let second = {
        let s = std::sync::Arc::clone(&s);
        let id = file.id;
        tokio::spawn(async move {
            let data = Bytes::from(pattern(64 << 10, 5));
            s.write(&root(), id, 64 << 10, data, Stability::Unstable)
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "the second write found room that was not there"
    );
    assert!(s.data().write_back_blocks() <= 16);
    s.data().hold_write_back(false);
    tokio::time::timeout(std::time::Duration::from_secs(10), second)
        .await
        .expect("the second write went once room came back")
        .unwrap()
        .unwrap();
    s.commit(file.id, 0, 0).await.unwrap();
    let back = read(&s, &file, 0, 128 << 10).await.unwrap();
    assert_eq!(back[..64 << 10], first[..]);
    assert_eq!(back[64 << 10..], pattern(64 << 10, 5)[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_write_back_off_no_write_is_acknowledged_before_its_device_write() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open_with_write_back(tmp.path(), 0);
    let file = create(&s, "f").await;
    write(&s, &file, 0, &pattern(1 << 20, 6), Stability::FileSync).await;
    let before = s.data().staged_writes();
    write(&s, &file, 0, &pattern(1 << 20, 7), Stability::Unstable).await;
    assert_eq!(s.data().staged_writes(), before + 1, "took the async path");
    let stat = |name: &str| {
        s.data_stats()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    };
    assert_eq!(stat("write_back_writes"), Some(0));
    assert_eq!(stat("write_back_capacity_blocks"), Some(0));
    assert_eq!(
        read(&s, &file, 0, 1 << 20).await.unwrap(),
        pattern(1 << 20, 7)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_write_that_fails_moves_the_verifier_and_fails_the_commit_that_waited() {
    let tmp = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(open_with_write_back(tmp.path(), 256 << 20));
    let file = create(&s, "f").await;
    write(&s, &file, 0, &pattern(1 << 20, 8), Stability::FileSync).await;
    let before = s.write_verifier();
    s.data().hold_write_back(true);
    write(&s, &file, 0, &pattern(1 << 20, 9), Stability::Unstable).await;
    assert_eq!(s.write_verifier(), before, "nothing has failed yet");
    let commit = {
        let s = std::sync::Arc::clone(&s);
        let id = file.id;
        tokio::spawn(async move { s.commit(id, 0, 0).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    s.data().fail_held_write_back();
    s.data().hold_write_back(false);
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), commit)
        .await
        .expect("COMMIT returned")
        .unwrap();
    assert!(
        answer.is_err(),
        "a COMMIT that waited for a lost write said OK"
    );
    let after = s.write_verifier();
    assert_ne!(
        after, before,
        "clients must learn that uncommitted data was lost"
    );
    // The client sends its data again; this time it lands, and COMMIT says so.
    write(&s, &file, 0, &pattern(1 << 20, 9), Stability::Unstable).await;
    s.commit(file.id, 0, 0).await.unwrap();
    assert_eq!(
        s.write_verifier(),
        after,
        "a later COMMIT that lost nothing keeps it"
    );
    assert_eq!(
        read(&s, &file, 0, 1 << 20).await.unwrap(),
        pattern(1 << 20, 9)
    );
}
