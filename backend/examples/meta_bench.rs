//! Measures metadata rates of the durable stores on this machine (docs/decisions/0001,
//! bench/STORE.md).
//!
//! Usage: `cargo run --release -p backend --example meta_bench -- [--store nvme|local]
//! [--dir DIR] [--large N]`. DIR defaults to the current directory (a fresh scratch directory is
//! made inside it, so the numbers are for the disk you run it on). It reports durable creates
//! per second (each create is one fsync'd redb transaction), lookups and getattrs (warm and
//! after reopen), readdir and removes, then the same lookups, getattrs and a full readdir in
//! one directory of N entries (default 100000) to show that large directories stay fast, and
//! a baseline: appending a record of similar size to a plain log file with one fdatasync each.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use backend::local::LocalStore;
use backend::nvme::NvmeStore;
use backend::{CreateMode, Cred, FileId, NodeKind, SetAttr, Store};

const FILES: usize = 2000;
const READDIR_BYTES: usize = 64 << 10;

fn rate(label: &str, ops: usize, start: Instant) {
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{label:<48} {ops:>7} ops in {secs:>8.3} s = {:>9.0} ops/s",
        ops as f64 / secs
    );
}

async fn create(store: &impl Store, dir: FileId, name: &str) -> FileId {
    store
        .create(
            &Cred::root(),
            dir,
            name.as_bytes(),
            NodeKind::Regular,
            SetAttr::default(),
            CreateMode::Guarded,
        )
        .await
        .expect("create")
        .0
        .id
}

async fn create_all(store: &impl Store, dir: FileId, prefix: &str, n: usize) -> Vec<FileId> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        ids.push(create(store, dir, &format!("{prefix}{i:07}")).await);
    }
    ids
}

/// `tasks` tasks creating at once: shows whether concurrent creates share fsyncs (not yet).
async fn create_concurrently<S: Store>(
    store: Arc<S>,
    dir: FileId,
    prefix: &str,
    n: usize,
    tasks: usize,
) {
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let store = Arc::clone(&store);
            let prefix = format!("{prefix}{t}-");
            tokio::spawn(async move {
                for i in 0..n / tasks {
                    create(&*store, dir, &format!("{prefix}{i:07}")).await;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("task");
    }
}

async fn lookup_all(store: &impl Store, dir: FileId, prefix: &str, n: usize, step: usize) -> usize {
    let mut done = 0;
    for i in (0..n).step_by(step) {
        let name = format!("{prefix}{i:07}");
        store
            .lookup(&Cred::root(), dir, name.as_bytes())
            .await
            .expect("lookup");
        done += 1;
    }
    done
}

async fn getattr_all(store: &impl Store, ids: &[FileId]) {
    for &id in ids {
        store.getattr(id).await.expect("getattr");
    }
}

/// Reads the whole directory in READDIRPLUS-sized pages; returns the entries seen.
async fn readdir_all(store: &impl Store, dir: FileId, with_attrs: bool) -> usize {
    let mut cookie = 0;
    let mut seen = 0;
    loop {
        let page = store
            .readdir(&Cred::root(), dir, cookie, READDIR_BYTES, with_attrs)
            .await
            .expect("readdir");
        seen += page.entries.len();
        match page.entries.last() {
            Some(last) if !page.eof => cookie = last.cookie,
            _ => return seen,
        }
    }
}

async fn remove_all(store: &impl Store, dir: FileId, prefix: &str, n: usize) {
    for i in 0..n {
        let name = format!("{prefix}{i:07}");
        store
            .remove(&Cred::root(), dir, name.as_bytes())
            .await
            .expect("remove");
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

async fn run<S: Store + 'static>(open: impl Fn() -> S, large: usize) {
    let store = open();
    let dir = store.root();
    let start = Instant::now();
    let ids = create_all(&store, dir, "f", FILES).await;
    rate("create (durable, sequential)", FILES, start);
    let start = Instant::now();
    let n = lookup_all(&store, dir, "f", FILES, 1).await;
    rate("lookup (warm inode cache)", n, start);
    let start = Instant::now();
    getattr_all(&store, &ids).await;
    rate("getattr (warm inode cache)", FILES, start);

    let store = Arc::new(store);
    let start = Instant::now();
    create_concurrently(Arc::clone(&store), dir, "c", FILES, 8).await;
    rate("create (durable, 8 concurrent tasks)", FILES, start);
    drop(store);

    let store = open();
    let start = Instant::now();
    getattr_all(&store, &ids).await;
    rate("getattr (after reopen: redb read per inode)", FILES, start);
    let start = Instant::now();
    let n = lookup_all(&store, dir, "f", FILES, 1).await;
    rate("lookup (after reopen)", n, start);
    let start = Instant::now();
    let n = readdir_all(&store, dir, true).await;
    rate("readdirplus entries (4000-entry directory)", n, start);
    let start = Instant::now();
    remove_all(&store, dir, "f", FILES).await;
    rate("remove (durable, sequential)", FILES, start);

    if large > 0 {
        let big = store
            .create(
                &Cred::root(),
                dir,
                b"big",
                NodeKind::Directory,
                SetAttr::default(),
                CreateMode::Guarded,
            )
            .await
            .expect("mkdir")
            .0
            .id;
        let store = Arc::new(store);
        let start = Instant::now();
        create_concurrently(Arc::clone(&store), big, "e", large, 8).await;
        rate(
            &format!("create into one directory of {large}"),
            large,
            start,
        );
        drop(store);
        let store = open();
        let start = Instant::now();
        let n = lookup_all(&store, big, "e0-", large / 8, 7).await;
        rate(
            &format!("lookup in the {large}-entry directory (cold)"),
            n,
            start,
        );
        let start = Instant::now();
        let n = readdir_all(&store, big, false).await;
        rate(
            &format!("readdir entries of the {large}-entry directory"),
            n,
            start,
        );
        let start = Instant::now();
        let n = readdir_all(&store, big, true).await;
        rate(
            &format!("readdirplus entries of the {large}-entry directory"),
            n,
            start,
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut kind = "nvme".to_string();
    let mut dir = PathBuf::from(".");
    let mut large = 100_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().expect("a value after the flag");
        match arg.as_str() {
            "--store" => kind = value(),
            "--dir" => dir = PathBuf::from(value()),
            "--large" => large = value().parse().expect("--large N"),
            other => panic!("unknown argument {other}; see the file's docs"),
        }
    }
    let scratch = tempfile::tempdir_in(&dir).expect("scratch directory");
    let path = scratch.path().join("store");
    println!("store: {kind} in {}", path.display());
    match kind.as_str() {
        "nvme" => run(|| NvmeStore::open(&path).expect("open"), large).await,
        "local" => run(|| LocalStore::open(&path).expect("open"), large).await,
        other => panic!("--store nvme|local, not {other}"),
    }
    fsync_log_baseline(scratch.path());
}
