//! What every implementation of a backend trait must do, as plain functions that panic on the
//! first broken rule (after TiKV's `engine_traits_tests`): `backend/tests/meta_conformance.rs`
//! runs them against the in-memory and redb metadata stores, and the replicated store in `ha`
//! runs the very same functions.
//!
//! The `MetaStore` contract: a batch applies all its ops or none; it is refused as `Fenced`
//! below the highest writer epoch accepted so far, and the higher epoch is remembered durably
//! with the batch that raised it; a failed precondition (`GuardMismatch`) applies nothing;
//! applied batches are visible to reads at once, and entries list in sequence order; what a
//! committed store holds survives a reopen (`apply` is the quick, ordered half of a batch;
//! `commit` the asynchronous wait for it to be durable).
//!
//! Call these from a thread that is not running an async runtime: `commit` is awaited on a
//! runtime of its own, as the engine awaits it.

use std::path::Path;

use crate::engine::{Batch, Counter, Inode, Layout, MetaOp, MetaStore, Precondition};
use crate::{Error, FileType, Result, Timestamp};

/// A store under test, and how to reopen it (`None`: it keeps nothing across a reopen).
pub trait Subject: MetaStore + Sized {
    fn reopen(self, dir: &Path) -> Option<Self>;
}

impl Subject for crate::mem::MemMeta {
    fn reopen(self, _: &Path) -> Option<Self> {
        None
    }
}

/// Reopens `meta.redb` in the directory.
impl Subject for crate::local::LocalMeta {
    fn reopen(self, dir: &Path) -> Option<Self> {
        drop(self);
        crate::local::LocalMeta::open(&dir.join("meta.redb")).ok()
    }
}

/// Awaits `s.commit(false)` on a runtime of its own.
pub fn commit<S: MetaStore>(s: &S) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| Error::Io(e.to_string()))?;
    runtime.block_on(s.commit(false))
}

/// Runs every check, each on a store from `fresh` (with the directory it lives in, kept
/// until the check ends).
pub fn all<S: Subject, D: AsRef<Path>>(fresh: impl Fn() -> (D, S)) {
    let (_d, s) = fresh();
    a_batch_applies_all_its_ops_and_lists_entries_in_sequence_order(s);
    let (_d, s) = fresh();
    a_failed_precondition_applies_nothing(s);
    let (_d, s) = fresh();
    an_older_writer_is_fenced_once_a_newer_one_has_written(s);
    let (d, s) = fresh();
    the_fencing_epoch_and_synced_batches_survive_a_reopen(s, d.as_ref());
    let (_d, s) = fresh();
    deletes_remove_inodes_and_entries(s);
    let (_d, s) = fresh();
    a_page_of_entries_sees_committed_and_uncommitted_changes_alike(s);
}

/// A record of `kind`; regular files carry a layout, which every store must keep.
pub fn inode(kind: FileType) -> Inode {
    Inode {
        generation: 1,
        file_type: kind,
        mode: 0o644,
        nlink: 1,
        uid: 0,
        gid: 0,
        size: 0,
        rdev: (0, 0),
        atime: Timestamp::default(),
        mtime: Timestamp::default(),
        ctime: Timestamp::default(),
        change: 1,
        parent: 0,
        last_seq: 2,
        verifier: None,
        // Placement is metadata: every store must keep a file's layout with its record.
        layout: (kind == FileType::Regular).then(|| Layout {
            copies: 2,
            nodes: vec![3, 1, 2],
        }),
        replication: None,
        target: Vec::new(),
    }
}

fn entry(dir: u64, name: &str, child: u64, seq: u64) -> MetaOp {
    MetaOp::PutEntry {
        dir,
        name: name.as_bytes().to_vec(),
        child,
        seq,
    }
}

fn batch<'a>(epoch: u64, pre: &'a [Precondition], ops: &'a [MetaOp]) -> Batch<'a> {
    Batch {
        epoch,
        preconditions: pre,
        ops,
    }
}

pub fn a_batch_applies_all_its_ops_and_lists_entries_in_sequence_order<S: Subject>(s: S) {
    let ops = [
        MetaOp::PutInode(1, inode(FileType::Directory)),
        MetaOp::PutInode(2, inode(FileType::Regular)),
        MetaOp::PutInode(3, inode(FileType::Regular)),
        entry(1, "b", 3, 5),
        entry(1, "a", 2, 4),
        MetaOp::SetCounter(Counter::NextIno, 4),
    ];
    s.apply(&batch(1, &[], &ops)).unwrap();
    // The whole record comes back, layout included.
    assert_eq!(s.inode(2).unwrap(), Some(inode(FileType::Regular)));
    assert_eq!(s.entry(1, b"a").unwrap(), Some((2, 4)));
    let names: Vec<Vec<u8>> = s
        .entries(1, 0, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec![b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(
        s.entries(1, 4, 10).unwrap().len(),
        1,
        "after a sequence number"
    );
    assert_eq!(s.counter(Counter::NextIno).unwrap(), Some(4));
    assert_eq!(s.inode_count().unwrap(), 3);
}

pub fn a_failed_precondition_applies_nothing<S: Subject>(s: S) {
    s.apply(&batch(
        1,
        &[],
        &[MetaOp::PutInode(1, inode(FileType::Directory))],
    ))
    .unwrap();
    s.apply(&batch(1, &[], &[entry(1, "x", 7, 3)])).unwrap();
    let ops = [
        MetaOp::PutInode(2, inode(FileType::Regular)),
        entry(1, "x", 2, 4),
    ];
    for pre in [
        Precondition::EntryAbsent {
            dir: 1,
            name: b"x".to_vec(),
        },
        Precondition::EntryIs {
            dir: 1,
            name: b"x".to_vec(),
            child: 9,
        },
        Precondition::InodeExists(2, true),
        Precondition::CounterIs(Counter::NextIno, Some(99)),
    ] {
        let r = s.apply(&batch(1, std::slice::from_ref(&pre), &ops));
        assert_eq!(r, Err(Error::GuardMismatch), "{pre:?}");
        assert_eq!(s.inode(2).unwrap(), None, "{pre:?}: nothing applied");
        assert_eq!(s.entry(1, b"x").unwrap(), Some((7, 3)));
    }
    let holds = [
        Precondition::EntryIs {
            dir: 1,
            name: b"x".to_vec(),
            child: 7,
        },
        Precondition::InodeExists(2, false),
        Precondition::CounterIs(Counter::NextIno, None),
    ];
    s.apply(&batch(1, &holds, &ops)).unwrap();
    assert_eq!(s.entry(1, b"x").unwrap(), Some((2, 4)));
}

pub fn an_older_writer_is_fenced_once_a_newer_one_has_written<S: Subject>(s: S) {
    let put = |ino| [MetaOp::PutInode(ino, inode(FileType::Regular))];
    s.apply(&batch(3, &[], &put(10))).unwrap();
    assert_eq!(s.counter(Counter::WriterEpoch).unwrap(), Some(3));
    // A paused old owner wakes up and writes with its epoch: refused, nothing applied.
    assert_eq!(s.apply(&batch(2, &[], &put(11))), Err(Error::Fenced));
    assert_eq!(s.inode(11).unwrap(), None);
    // The current writer and a newer one go on; the newer one fences the current one.
    s.apply(&batch(3, &[], &put(12))).unwrap();
    s.apply(&batch(4, &[], &put(13))).unwrap();
    assert_eq!(s.apply(&batch(3, &[], &put(14))), Err(Error::Fenced));
    assert_eq!(s.counter(Counter::WriterEpoch).unwrap(), Some(4));
}

pub fn the_fencing_epoch_and_synced_batches_survive_a_reopen<S: Subject>(
    s: S,
    dir: &std::path::Path,
) {
    s.apply(&batch(
        5,
        &[],
        &[
            MetaOp::PutInode(1, inode(FileType::Directory)),
            MetaOp::PutInode(3, inode(FileType::Regular)),
        ],
    ))
    .unwrap();
    commit(&s).unwrap();
    let Some(s) = s.reopen(dir) else {
        return; // keeps nothing: nothing to check
    };
    assert!(s.inode(1).unwrap().is_some());
    assert_eq!(s.inode(3).unwrap(), Some(inode(FileType::Regular)));
    assert_eq!(s.counter(Counter::WriterEpoch).unwrap(), Some(5));
    let late = [MetaOp::PutInode(2, inode(FileType::Regular))];
    assert_eq!(s.apply(&batch(4, &[], &late)), Err(Error::Fenced));
}

pub fn deletes_remove_inodes_and_entries<S: Subject>(s: S) {
    s.apply(&batch(
        1,
        &[],
        &[
            MetaOp::PutInode(1, inode(FileType::Directory)),
            MetaOp::PutInode(2, inode(FileType::Regular)),
            entry(1, "f", 2, 3),
        ],
    ))
    .unwrap();
    s.apply(&batch(
        1,
        &[],
        &[
            MetaOp::DeleteEntry {
                dir: 1,
                name: b"f".to_vec(),
                seq: 3,
            },
            MetaOp::DeleteInode(2),
        ],
    ))
    .unwrap();
    assert_eq!(s.entry(1, b"f").unwrap(), None);
    assert!(s.entries(1, 0, 10).unwrap().is_empty());
    assert_eq!(s.inode(2).unwrap(), None);
}

pub fn a_page_of_entries_sees_committed_and_uncommitted_changes_alike<S: Subject>(s: S) {
    let mut ops = vec![MetaOp::PutInode(1, inode(FileType::Directory))];
    for (i, name) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        let ino = 10 + i as u64;
        ops.push(MetaOp::PutInode(ino, inode(FileType::Regular)));
        ops.push(entry(1, name, ino, 3 + i as u64));
    }
    s.apply(&batch(1, &[], &ops)).unwrap();
    commit(&s).unwrap();
    // Not committed yet: two removed, one added at the end, one added in a later batch.
    let remove = |name: &str, seq| MetaOp::DeleteEntry {
        dir: 1,
        name: name.as_bytes().to_vec(),
        seq,
    };
    s.apply(&batch(
        1,
        &[],
        &[remove("a", 3), remove("c", 5), entry(1, "f", 20, 8)],
    ))
    .unwrap();
    s.apply(&batch(1, &[], &[entry(1, "g", 21, 9)])).unwrap();
    let page = |after, limit| -> Vec<String> {
        s.entries(1, after, limit)
            .unwrap()
            .into_iter()
            .map(|e| String::from_utf8(e.name).unwrap())
            .collect()
    };
    assert_eq!(page(0, 3), ["b", "d", "e"]);
    assert_eq!(page(0, 10), ["b", "d", "e", "f", "g"]);
    assert_eq!(page(6, 2), ["e", "f"]);
    assert_eq!(page(9, 10), Vec::<String>::new());
    commit(&s).unwrap();
    assert_eq!(page(0, 10), ["b", "d", "e", "f", "g"]);
    assert_eq!(s.entry(1, b"c").unwrap(), None);
    assert_eq!(s.entry(1, b"g").unwrap(), Some((21, 9)));
}
