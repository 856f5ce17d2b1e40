//! Durable creates through the engine, over the redb metadata store directly and over the
//! metadata log (a cluster of one), with the same concurrency: what the log costs.
//!
//! `cargo run --release -p ha --example meta_log_bench -- [--dir DIR] [--files N] [--tasks T]`
//! Prints creates/s and process CPU seconds per 1000 creates for each.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use backend::engine::{Engine, MetaStore};
use backend::local::LocalMeta;
use backend::mem::MemData;
use backend::{CreateMode, Cred, NodeKind, SetAttr, Store};
use ha::metalog::RaftMeta;

fn cpu_seconds() -> f64 {
    // utime + stime of this process from /proc/self/stat (fields 14 and 15, in clock ticks).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

async fn creates<M: MetaStore>(
    store: Arc<Engine<M, MemData>>,
    files: usize,
    tasks: usize,
) -> (f64, f64) {
    let root = store.root();
    let (d, _) = store
        .create(
            &Cred::root(),
            root,
            b"bench",
            NodeKind::Directory,
            SetAttr::default(),
            CreateMode::Guarded,
        )
        .await
        .unwrap();
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let per_task = files / tasks;
    let workers: Vec<_> = (0..tasks)
        .map(|t| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..per_task {
                    let name = format!("t{t}-{i}");
                    store
                        .create(
                            &Cred::root(),
                            d.id,
                            name.as_bytes(),
                            NodeKind::Regular,
                            SetAttr::default(),
                            CreateMode::Guarded,
                        )
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    let n = (per_task * tasks) as f64;
    (n / secs, cpu / n * 1000.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let base: PathBuf = arg("--dir")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let files: usize = arg("--files").and_then(|v| v.parse().ok()).unwrap_or(4000);
    let tasks: usize = arg("--tasks").and_then(|v| v.parse().ok()).unwrap_or(8);
    // `--only redb` or `--only log`: one of the two (e.g. under strace or perf).
    let only = arg("--only");
    let run = |what: &str| only.as_deref().is_none_or(|o| o == what);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let fresh = |name: &str| -> PathBuf {
        let dir = base.join(format!("meta-log-bench-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    };
    let report = |what: &str, (rate, cpu): (f64, f64)| {
        println!("{what:<28} {rate:>9.0} creates/s  {cpu:>6.3} CPU s per 1000 creates");
    };
    if run("redb") {
        let dir = fresh("redb");
        let local = Engine::with_stores(
            LocalMeta::open(&dir.join("meta.redb")).unwrap(),
            MemData::default(),
        )
        .unwrap();
        report(
            &format!("redb, {tasks} tasks"),
            rt.block_on(creates(Arc::new(local), files, tasks)),
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    if !run("log") {
        return;
    }
    let dir: &Path = &fresh("log");
    let meta = rt.block_on(RaftMeta::open(dir, 1)).unwrap();
    let logged = Arc::new(Engine::with_stores(meta, MemData::default()).unwrap());
    report(
        &format!("metadata log, {tasks} tasks"),
        rt.block_on(creates(Arc::clone(&logged), files, tasks)),
    );
    rt.block_on(logged.meta().shutdown()).unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
