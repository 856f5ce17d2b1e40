//! File placement is metadata: a regular file's layout (which nodes hold its chunks) is part
//! of its inode record, chosen when it is created, and an engine serves the data of a file only
//! where the layout places it.

use backend::engine::{Batch, Counter, Layout, MetaOp, MetaStore};
use backend::local::{LocalMeta, LocalStore};
use backend::mem::MemStore;
use backend::{CreateMode, Cred, Error, NodeKind, SetAttr, Stability, Store};
use bytes::Bytes;

async fn create<S: Store>(s: &S, name: &str) -> backend::FileId {
    s.create(
        &Cred::root(),
        s.root(),
        name.as_bytes(),
        NodeKind::Regular,
        SetAttr::default(),
        CreateMode::Guarded,
    )
    .await
    .unwrap()
    .0
    .id
}

#[tokio::test]
async fn a_new_file_is_placed_on_the_node_the_engine_runs_on() {
    let s = MemStore::new();
    s.set_node(7);
    let file = create(&s, "f").await;
    let r = s.residency(file).await.unwrap();
    assert_eq!(r.placement, Some(Layout::on(7)));
    assert_eq!(r.store, "memory");
}

#[tokio::test]
async fn a_file_placed_on_another_node_has_attributes_here_but_no_data() {
    // One metadata, two nodes: the file was created (and placed) on node 1, node 2 serves it.
    let s = MemStore::new();
    let file = create(&s, "f").await;
    let data = Bytes::from_static(b"on node one");
    s.write(&Cred::root(), file, 0, data, Stability::FileSync)
        .await
        .unwrap();
    s.set_node(2);
    let root = Cred::root();
    // Names and attributes are metadata: every node has them.
    assert_eq!(s.getattr(file).await.unwrap().size, 11);
    assert!(s.lookup(&root, s.root(), b"f").await.is_ok());
    // The bytes are on node 1: this engine cannot fetch them yet, and says so (a transient
    // status clients retry), never zeros or an empty read.
    assert_eq!(
        s.read(&root, file, 0, 100).await.err(),
        Some(Error::Unavailable)
    );
    let more = Bytes::from_static(b"x");
    let unstable = s
        .write(&root, file, 0, more.clone(), Stability::Unstable)
        .await;
    assert_eq!(unstable.err(), Some(Error::Unavailable));
    let stable = s.write(&root, file, 0, more, Stability::FileSync).await;
    assert_eq!(stable.err(), Some(Error::Unavailable));
    assert_eq!(s.commit(file, 0, 0).await.err(), Some(Error::Unavailable));
    let cut = SetAttr {
        size: Some(0),
        ..SetAttr::default()
    };
    assert_eq!(
        s.setattr(&root, file, cut, None).await.err(),
        Some(Error::Unavailable)
    );
    let r = s.residency(file).await.unwrap();
    assert_eq!(r.placement, Some(Layout::on(1)));
    assert!(r.extents.is_empty() && r.store.is_empty(), "{r:?}");
    // Back on node 1 the file is whole.
    s.set_node(1);
    let read = s.read(&root, file, 0, 100).await.unwrap();
    assert_eq!(&read.data[..], b"on node one");
}

/// Rewrites a store as a build before layouts left it: format 1, files without layouts.
async fn make_format_1(dir: &std::path::Path, file: u64) {
    let meta = LocalMeta::open(&dir.join("meta.redb")).unwrap();
    let epoch = meta.counter(Counter::WriterEpoch).unwrap().unwrap_or(0);
    let mut inode = meta.inode(file).unwrap().unwrap();
    inode.layout = None;
    meta.apply(&Batch {
        epoch,
        preconditions: &[],
        ops: &[
            MetaOp::PutInode(file, inode),
            MetaOp::SetCounter(Counter::FormatVersion, 1),
        ],
    })
    .unwrap();
    meta.commit(false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_format_1_opens_upgraded_and_serves_its_files_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let file = {
        let s = LocalStore::open(tmp.path()).unwrap();
        let file = create(&s, "old").await;
        let data = Bytes::from_static(b"written before layouts");
        s.write(&Cred::root(), file, 0, data, Stability::FileSync)
            .await
            .unwrap();
        file
    };
    make_format_1(tmp.path(), file.ino).await;
    let s = LocalStore::open(tmp.path()).unwrap();
    // Even on another node id: a file without a layout lives with its record.
    s.set_node(5);
    let read = s.read(&Cred::root(), file, 0, 100).await.unwrap();
    assert_eq!(&read.data[..], b"written before layouts");
    assert_eq!(s.residency(file).await.unwrap().placement, None);
    drop(s);
    let meta = LocalMeta::open(&tmp.path().join("meta.redb")).unwrap();
    assert_eq!(
        meta.counter(Counter::FormatVersion).unwrap(),
        Some(backend::engine::FORMAT_VERSION)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_a_newer_format_is_refused_with_the_versions_this_build_reads() {
    let tmp = tempfile::tempdir().unwrap();
    drop(LocalStore::open(tmp.path()).unwrap());
    {
        let meta = LocalMeta::open(&tmp.path().join("meta.redb")).unwrap();
        let epoch = meta.counter(Counter::WriterEpoch).unwrap().unwrap_or(0);
        let ops = [MetaOp::SetCounter(Counter::FormatVersion, 99)];
        meta.apply(&Batch {
            epoch,
            preconditions: &[],
            ops: &ops,
        })
        .unwrap();
        meta.commit(false).await.unwrap();
    }
    let err = match LocalStore::open(tmp.path()) {
        Ok(_) => panic!("a store of format 99 opened"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("format version 99"), "{err}");
}
