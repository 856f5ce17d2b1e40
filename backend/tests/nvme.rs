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
        let dev = std::fs::OpenOptions::new()
            .write(true)
            .open(device)
            .unwrap();
        dev.write_all_at(b"rot", at).unwrap();
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
    let dev = std::fs::OpenOptions::new()
        .write(true)
        .open(device)
        .unwrap();
    dev.write_all_at(b"X", at + 4000).unwrap();
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
