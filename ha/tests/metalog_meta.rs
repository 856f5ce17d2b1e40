//! The metadata log as a `MetaStore`: the same suite the in-memory and redb stores pass
//! (`backend::testing`), and the engine running over it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use backend::engine::Engine;
use backend::mem::MemData;
use backend::{CreateMode, Cred, NodeKind, SetAttr, Stability, Store};
use bytes::Bytes;
use ha::metalog::{RaftMeta, Tuning};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn the_metadata_log_passes_the_meta_store_suite() {
    let rt = runtime();
    backend::testing::all(|| {
        let dir = tempfile::tempdir().unwrap();
        let meta = rt.block_on(RaftMeta::open(dir.path(), 1)).unwrap();
        (dir, meta)
    });
}

type LogStore = Engine<RaftMeta, MemData>;

/// Opens an engine over the log in `dir`; called off the runtime (opening commits the root).
fn open(rt: &tokio::runtime::Runtime, dir: &Path) -> LogStore {
    open_tuned(rt, dir, Tuning::default())
}

fn open_tuned(rt: &tokio::runtime::Runtime, dir: &Path, tuning: Tuning) -> LogStore {
    for _ in 0..100 {
        match rt.block_on(RaftMeta::open_with(dir, 1, tuning)) {
            Ok(meta) => return Engine::with_stores(meta, MemData::default()).unwrap(),
            // The last run's log lets go of its files just after its shutdown.
            Err(e) if e.contains("already open") => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the metadata log stayed open");
}

fn create(
    s: &Arc<LogStore>,
    dir: backend::FileId,
    name: &str,
    kind: NodeKind,
) -> impl std::future::Future<Output = backend::Attr> {
    let (s, name) = (Arc::clone(s), name.to_string());
    async move {
        let made = s
            .create(
                &Cred::root(),
                dir,
                name.as_bytes(),
                kind,
                SetAttr::default(),
                CreateMode::Guarded,
            )
            .await;
        made.unwrap().0
    }
}

#[test]
fn the_engine_over_the_metadata_log_keeps_what_it_acknowledged_across_a_restart() {
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&rt, tmp.path()));
    let root = store.root();
    let (d, f) = rt.block_on(async {
        let d = create(&store, root, "d", NodeKind::Directory).await;
        // Concurrent creates: their batches are in flight in the log together.
        let creates: Vec<_> = (0..32)
            .map(|i| tokio::spawn(create(&store, d.id, &format!("f{i:02}"), NodeKind::Regular)))
            .collect();
        for c in creates {
            c.await.unwrap();
        }
        let f = create(&store, d.id, "data", NodeKind::Regular).await;
        let bytes = Bytes::from_static(b"through the log");
        store
            .write(&Cred::root(), f.id, 0, bytes, Stability::FileSync)
            .await
            .unwrap();
        (d, f)
    });
    let store = Arc::into_inner(store).unwrap();
    rt.block_on(store.meta().shutdown()).unwrap();
    drop(store);

    let store = open(&rt, tmp.path());
    rt.block_on(async {
        let page = store
            .readdir(&Cred::root(), d.id, 0, 1 << 20, false)
            .await
            .unwrap();
        assert_eq!(page.entries.len(), 33);
        assert_eq!(store.getattr(f.id).await.unwrap().size, 15);
        // Inode numbers go on from where the log left them: never reused.
        let g = create(&Arc::new(store), root, "g", NodeKind::Regular).await;
        assert!(g.id.ino > f.id.ino);
    });
}

#[test]
fn a_restart_after_snapshots_and_log_compaction_loses_nothing() {
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    // A snapshot every 10 entries, nothing kept behind it: the log is purged again and again,
    // so the restart must find the snapshot and replay only what follows it. (This is a clean
    // shutdown; the kill -9 case is the libnfs e2e's `--metadata log --crash`.)
    let tuning = Tuning {
        snapshot_every: 10,
        keep_after_snapshot: 0,
    };
    let store = Arc::new(open_tuned(&rt, tmp.path(), tuning));
    let root = store.root();
    let made: Vec<backend::Attr> = rt.block_on(async {
        let mut made = Vec::new();
        for i in 0..60 {
            // One at a time: one entry each.
            made.push(create(&store, root, &format!("s{i:02}"), NodeKind::Regular).await);
        }
        made
    });
    assert!(
        tmp.path().join("raft-snapshot").exists(),
        "60 entries with a snapshot every 10 built one"
    );
    let store = Arc::into_inner(store).unwrap();
    rt.block_on(store.meta().shutdown()).unwrap();
    drop(store);

    let store = open_tuned(&rt, tmp.path(), tuning);
    rt.block_on(async {
        let page = store
            .readdir(&Cred::root(), root, 0, 1 << 20, false)
            .await
            .unwrap();
        assert_eq!(page.entries.len(), 60);
        for attr in &made {
            assert_eq!(store.getattr(attr.id).await.unwrap().id, attr.id);
        }
    });
}
