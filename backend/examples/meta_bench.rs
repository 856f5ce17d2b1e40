//! Measures metadata rates of `LocalStore` on this machine, for docs/decisions/0001.
//!
//! Usage: `cargo run --release -p backend --example meta_bench [DIR]` (DIR defaults to a fresh
//! directory under the current one, so the numbers are for the disk you run it on).
//! It reports durable creates per second (each create is one fsync'd redb transaction),
//! lookups and getattrs per second (warm and after reopen), and a baseline: appending a
//! record of similar size to a plain log file with one fdatasync per record.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use backend::local::LocalStore;
use backend::{CreateMode, Cred, FileId, NodeKind, SetAttr, Store};

const FILES: usize = 2000;

fn rate(label: &str, ops: usize, start: Instant) {
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{label:<44} {ops:>6} ops in {secs:>7.3} s = {:>9.0} ops/s",
        ops as f64 / secs
    );
}

async fn create_all(store: &LocalStore, dir: FileId, prefix: &str) -> Vec<FileId> {
    let mut ids = Vec::with_capacity(FILES);
    for i in 0..FILES {
        let name = format!("{prefix}{i:05}");
        let (attr, _) = store
            .create(
                &Cred::root(),
                dir,
                name.as_bytes(),
                NodeKind::Regular,
                SetAttr::default(),
                CreateMode::Guarded,
            )
            .await
            .expect("create");
        ids.push(attr.id);
    }
    ids
}

async fn lookup_all(store: &LocalStore, dir: FileId, prefix: &str) {
    for i in 0..FILES {
        let name = format!("{prefix}{i:05}");
        store
            .lookup(&Cred::root(), dir, name.as_bytes())
            .await
            .expect("lookup");
    }
}

async fn getattr_all(store: &LocalStore, ids: &[FileId]) {
    for &id in ids {
        store.getattr(id).await.expect("getattr");
    }
}

/// Eight tasks creating at once: shows whether concurrent creates share fsyncs (they do not yet).
async fn create_concurrently(store: Arc<LocalStore>, dir: FileId) {
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..FILES / 8 {
                    let name = format!("c{t}-{i:05}");
                    let kind = NodeKind::Regular;
                    store
                        .create(
                            &Cred::root(),
                            dir,
                            name.as_bytes(),
                            kind,
                            SetAttr::default(),
                            CreateMode::Guarded,
                        )
                        .await
                        .expect("create");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
}

fn fsync_log_baseline(dir: &Path) {
    let path = dir.join("baseline.log");
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("open log");
    let record = [0x5au8; 128];
    let start = Instant::now();
    for _ in 0..FILES {
        log.write_all(&record).expect("append");
        log.sync_data().expect("fdatasync");
    }
    rate("baseline: 128 B append + fdatasync", FILES, start);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let scratch = match std::env::args().nth(1) {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir_in("."),
    }
    .expect("scratch directory");
    let path = scratch.path().join("store");
    println!("store directory: {}", path.display());

    let store = LocalStore::open(&path).expect("open");
    let dir = store.root();
    let start = Instant::now();
    let ids = create_all(&store, dir, "f").await;
    rate("create (durable, sequential)", FILES, start);
    let start = Instant::now();
    lookup_all(&store, dir, "f").await;
    rate("lookup (warm inode cache)", FILES, start);
    let start = Instant::now();
    getattr_all(&store, &ids).await;
    rate("getattr (warm inode cache)", FILES, start);

    let store = Arc::new(store);
    let start = Instant::now();
    create_concurrently(Arc::clone(&store), dir).await;
    rate("create (durable, 8 concurrent tasks)", FILES, start);
    drop(store);

    let store = LocalStore::open(&path).expect("reopen");
    let start = Instant::now();
    getattr_all(&store, &ids).await;
    rate("getattr (after reopen: redb read per inode)", FILES, start);
    let start = Instant::now();
    lookup_all(&store, dir, "f").await;
    rate("lookup (after reopen)", FILES, start);
    let start = Instant::now();
    getattr_all(&store, &ids).await;
    rate("getattr (after reopen, second pass: cached)", FILES, start);
    drop(store);

    fsync_log_baseline(scratch.path());
}
