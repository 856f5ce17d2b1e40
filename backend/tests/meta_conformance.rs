//! What every `MetaStore` must do, run against each implementation (after TiKV's
//! `engine_traits_tests`): a replicated store for the cluster has to pass the same suite.
//!
//! The contract: a batch applies all its ops or none; it is refused as `Fenced` below the
//! highest writer epoch accepted so far, and the higher epoch is remembered durably with the
//! batch that raised it; a failed precondition (`GuardMismatch`) applies nothing; entries list
//! in sequence order; what a committed store holds survives a reopen (`apply` is the quick,
//! ordered half of a batch; `commit` the asynchronous wait for it to be durable).

use backend::engine::{Batch, Counter, Inode, Layout, MetaOp, MetaStore, Precondition};
use backend::local::LocalMeta;
use backend::mem::MemMeta;
use backend::{Error, FileType, Timestamp};

/// A store under test, and how to reopen it (`None`: it keeps nothing across a reopen).
trait Subject: MetaStore + Sized {
    fn fresh(dir: &std::path::Path) -> Self;
    fn reopen(self, dir: &std::path::Path) -> Option<Self>;
}

impl Subject for MemMeta {
    fn fresh(_: &std::path::Path) -> Self {
        MemMeta::default()
    }
    fn reopen(self, _: &std::path::Path) -> Option<Self> {
        None
    }
}

impl Subject for LocalMeta {
    fn fresh(dir: &std::path::Path) -> Self {
        LocalMeta::open(&dir.join("meta.redb")).unwrap()
    }
    fn reopen(self, dir: &std::path::Path) -> Option<Self> {
        drop(self);
        Some(LocalMeta::open(&dir.join("meta.redb")).unwrap())
    }
}

fn inode(kind: FileType) -> Inode {
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

fn a_batch_applies_all_its_ops_and_lists_entries_in_sequence_order<S: Subject>(s: S) {
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

fn a_failed_precondition_applies_nothing<S: Subject>(s: S) {
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

fn an_older_writer_is_fenced_once_a_newer_one_has_written<S: Subject>(s: S) {
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

fn the_fencing_epoch_and_synced_batches_survive_a_reopen<S: Subject>(s: S, dir: &std::path::Path) {
    s.apply(&batch(
        5,
        &[],
        &[
            MetaOp::PutInode(1, inode(FileType::Directory)),
            MetaOp::PutInode(3, inode(FileType::Regular)),
        ],
    ))
    .unwrap();
    // The commit is awaited on an async runtime, as the engine awaits it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(s.commit(false)).unwrap();
    let Some(s) = s.reopen(dir) else {
        return; // keeps nothing: nothing to check
    };
    assert!(s.inode(1).unwrap().is_some());
    assert_eq!(s.inode(3).unwrap(), Some(inode(FileType::Regular)));
    assert_eq!(s.counter(Counter::WriterEpoch).unwrap(), Some(5));
    let late = [MetaOp::PutInode(2, inode(FileType::Regular))];
    assert_eq!(s.apply(&batch(4, &[], &late)), Err(Error::Fenced));
}

fn deletes_remove_inodes_and_entries<S: Subject>(s: S) {
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

macro_rules! suite {
    ($module:ident, $store:ty) => {
        mod $module {
            use super::*;

            fn fresh() -> (tempfile::TempDir, $store) {
                let dir = tempfile::tempdir().unwrap();
                let s = <$store as Subject>::fresh(dir.path());
                (dir, s)
            }

            #[test]
            fn a_batch_applies_all_its_ops_and_lists_entries_in_sequence_order() {
                let (_d, s) = fresh();
                super::a_batch_applies_all_its_ops_and_lists_entries_in_sequence_order(s);
            }

            #[test]
            fn a_failed_precondition_applies_nothing() {
                let (_d, s) = fresh();
                super::a_failed_precondition_applies_nothing(s);
            }

            #[test]
            fn an_older_writer_is_fenced_once_a_newer_one_has_written() {
                let (_d, s) = fresh();
                super::an_older_writer_is_fenced_once_a_newer_one_has_written(s);
            }

            #[test]
            fn the_fencing_epoch_and_synced_batches_survive_a_reopen() {
                let (d, s) = fresh();
                super::the_fencing_epoch_and_synced_batches_survive_a_reopen(s, d.path());
            }

            #[test]
            fn deletes_remove_inodes_and_entries() {
                let (_d, s) = fresh();
                super::deletes_remove_inodes_and_entries(s);
            }
        }
    };
}

suite!(mem, MemMeta);
suite!(redb, LocalMeta);

#[tokio::test]
async fn an_engine_whose_store_saw_a_newer_writer_stops_and_serves_nothing_from_its_caches() {
    use backend::{CreateMode, Cred, NodeKind, SetAttr, Store};
    let s = backend::mem::MemStore::new();
    let root = Cred::root();
    let create = |name: &'static str| {
        s.create(
            &root,
            s.root(),
            name.as_bytes(),
            NodeKind::Regular,
            SetAttr::default(),
            CreateMode::Guarded,
        )
    };
    let (f, _) = create("f").await.unwrap();
    assert_eq!(
        s.lookup(&Cred::root(), s.root(), b"f").await.unwrap().id,
        f.id
    );
    // This engine's epoch is now below the one the store has accepted: a newer owner wrote.
    s.set_writer_epoch(0);
    assert_eq!(create("g").await.map(|_| ()), Err(Error::Fenced));
    assert!(s.is_fenced());
    assert_eq!(
        s.lookup(&Cred::root(), s.root(), b"f").await.map(|_| ()),
        Err(Error::Fenced),
        "no cached answer once fenced"
    );
    assert_eq!(s.getattr(f.id).await.map(|_| ()), Err(Error::Fenced));
}
