//! Measures the data path of a store through the `Store` trait, as the NFS server drives it, for
//! comparison with fio on the same file system (bench/store/run.sh, bench/STORE.md).
//!
//! Usage: `cargo run --release -p backend --example store_bench -- [FLAGS]`
//!
//! * `--store nvme|local` (default nvme), `--dir PATH` (the store directory; default
//!   `./store-bench`), `--engine auto|uring|threads` and `--device PATH` (repeatable) for nvme.
//! * `--size BYTES` (default 4G; K/M/G suffixes are powers of 1024), `--qd N` (default 32),
//!   `--seconds N` (default 15), `--meta-files N` (default 1000, 0 skips the metadata phase).
//! * `--drop-caches`: `sync` and `echo 3 > /proc/sys/vm/drop_caches` before each phase (root).
//!
//! Phases, on one file in the store's root:
//! 1. `seqwrite`: 1 MiB UNSTABLE writes at `qd` distinct offsets in flight, covering `--size`,
//!    then one COMMIT; the time includes the COMMIT.
//! 2. `seqread`: 1 MiB reads of the whole file, `qd` in flight.
//! 3. `randread`: 4 KiB reads at uniformly random aligned offsets, `qd` in flight, `--seconds`.
//! 4. `randwrite`: 4 KiB UNSTABLE writes likewise, then one COMMIT included in the time.
//! 5. `meta`: durable creates, lookups and getattrs of `--meta-files` empty files (as meta_bench).
//!
//! MB/s is 10^6 bytes per second. The local store reads through the page cache, so without
//! `--drop-caches` its reads of data it just wrote can come from memory; the nvme store uses
//! O_DIRECT and always reads the device. It prints a table and one JSON line (starting with `{`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backend::local::LocalStore;
use backend::nvme::io::EngineChoice;
use backend::nvme::{NvmeConfig, NvmeStore};
use backend::{CreateMode, Cred, FileId, NodeKind, SetAttr, Stability, Store};
use bytes::Bytes;

const MIB: u64 = 1 << 20;
const SMALL: u64 = 4096;

struct Args {
    store: String,
    dir: PathBuf,
    engine: EngineChoice,
    devices: Vec<PathBuf>,
    size: u64,
    qd: usize,
    seconds: u64,
    meta_files: usize,
    drop_caches: bool,
}

fn usage(msg: &str) -> ! {
    eprintln!("store_bench: {msg}");
    eprintln!(
        "usage: store_bench [--store nvme|local] [--dir PATH] [--engine auto|uring|threads] \
         [--device PATH]... [--size BYTES] [--qd N] [--seconds N] [--meta-files N] [--drop-caches]"
    );
    std::process::exit(2)
}

fn parse_size(s: &str) -> u64 {
    let (digits, unit) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let n: u64 = digits
        .parse()
        .unwrap_or_else(|_| usage(&format!("bad size {s}")));
    let mul = match unit.to_ascii_uppercase().trim_end_matches("IB") {
        "" | "B" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => usage(&format!("bad size unit in {s}")),
    };
    n * mul
}

fn parse_args() -> Args {
    let mut args = Args {
        store: "nvme".into(),
        dir: PathBuf::from("store-bench"),
        engine: EngineChoice::Auto,
        devices: Vec::new(),
        size: 4 << 30,
        qd: 32,
        seconds: 15,
        meta_files: 1000,
        drop_caches: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--drop-caches" {
            args.drop_caches = true;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            usage("help");
        }
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let number = |v: &str| -> u64 {
            v.parse()
                .unwrap_or_else(|_| usage(&format!("{flag}: not a number: {v}")))
        };
        match flag.as_str() {
            "--store" => args.store = value,
            "--dir" => args.dir = PathBuf::from(value),
            "--engine" => {
                args.engine = match value.as_str() {
                    "auto" => EngineChoice::Auto,
                    "uring" | "io_uring" => EngineChoice::Uring,
                    "threads" => EngineChoice::Threads,
                    other => usage(&format!("unknown engine {other}")),
                }
            }
            "--device" => args.devices.push(PathBuf::from(value)),
            "--size" => args.size = parse_size(&value),
            "--qd" => args.qd = number(&value).max(1) as usize,
            "--seconds" => args.seconds = number(&value),
            "--meta-files" => args.meta_files = number(&value) as usize,
            other => usage(&format!("unknown flag {other}")),
        }
    }
    if args.store != "nvme" && args.store != "local" {
        usage(&format!("unknown store {}", args.store));
    }
    if args.size < MIB || !args.size.is_multiple_of(MIB) {
        usage("--size must be a positive multiple of 1 MiB");
    }
    args
}

/// One measured phase.
struct Phase {
    name: &'static str,
    block: u64,
    ops: u64,
    secs: f64,
    /// Part of `secs` spent in the final COMMIT, if any.
    commit_secs: Option<f64>,
}

impl Phase {
    fn mbps(&self) -> f64 {
        (self.ops * self.block) as f64 / self.secs / 1e6
    }

    fn iops(&self) -> f64 {
        self.ops as f64 / self.secs
    }
}

fn drop_caches(enabled: bool) {
    if !enabled {
        return;
    }
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    if let Err(e) = std::fs::write("/proc/sys/vm/drop_caches", "3") {
        eprintln!("store_bench: cannot drop caches ({e}); reads may hit the page cache");
    }
}

/// xorshift64*: enough to spread offsets, no dependency.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

async fn commit<S: Store>(store: &S, id: FileId, size: u64) -> f64 {
    let start = Instant::now();
    store.commit(id, 0, size).await.expect("commit");
    start.elapsed().as_secs_f64()
}

/// 1 MiB blocks over the whole file in order, `qd` in flight; writes end with a COMMIT.
async fn sequential<S: Store>(
    store: &Arc<S>,
    id: FileId,
    args: &Args,
    write: bool,
    data: &Bytes,
) -> Phase {
    let blocks = args.size / MIB;
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..args.qd)
        .map(|_| {
            let store = Arc::clone(store);
            let next = Arc::clone(&next);
            let data = data.clone();
            tokio::spawn(async move {
                let cred = Cred::root();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= blocks {
                        break;
                    }
                    if write {
                        let r = store
                            .write(&cred, id, i * MIB, data.clone(), Stability::Unstable)
                            .await
                            .expect("write");
                        assert_eq!(u64::from(r.count), MIB);
                    } else {
                        let r = store
                            .read(&cred, id, i * MIB, MIB as u32)
                            .await
                            .expect("read");
                        assert_eq!(r.data.len() as u64, MIB, "short read at block {i}");
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let commit_secs = if write {
        Some(commit(store.as_ref(), id, args.size).await)
    } else {
        None
    };
    Phase {
        name: if write { "seqwrite" } else { "seqread" },
        block: MIB,
        ops: blocks,
        secs: start.elapsed().as_secs_f64(),
        commit_secs,
    }
}

/// 4 KiB blocks at random aligned offsets for `--seconds`, `qd` in flight; writes end with a
/// COMMIT.
async fn random<S: Store>(
    store: &Arc<S>,
    id: FileId,
    args: &Args,
    write: bool,
    data: &Bytes,
) -> Phase {
    let blocks = args.size / SMALL;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    let tasks: Vec<_> = (0..args.qd as u64)
        .map(|t| {
            let store = Arc::clone(store);
            let data = data.slice(..SMALL as usize);
            tokio::spawn(async move {
                let cred = Cred::root();
                let mut rng =
                    0x9e37_79b9_7f4a_7c15u64 ^ (t + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                let mut ops = 0u64;
                while Instant::now() < deadline {
                    let offset = next_random(&mut rng) % blocks * SMALL;
                    if write {
                        store
                            .write(&cred, id, offset, data.clone(), Stability::Unstable)
                            .await
                            .expect("write");
                    } else {
                        let r = store
                            .read(&cred, id, offset, SMALL as u32)
                            .await
                            .expect("read");
                        assert_eq!(r.data.len() as u64, SMALL);
                    }
                    ops += 1;
                }
                ops
            })
        })
        .collect();
    let mut ops = 0;
    for task in tasks {
        ops += task.await.expect("task");
    }
    let commit_secs = if write {
        Some(commit(store.as_ref(), id, args.size).await)
    } else {
        None
    };
    Phase {
        name: if write { "randwrite" } else { "randread" },
        block: SMALL,
        ops,
        secs: start.elapsed().as_secs_f64(),
        commit_secs,
    }
}

/// Durable creates, then lookups and getattrs, of `n` empty files in a fresh directory.
async fn metadata<S: Store>(store: &S, n: usize) -> Vec<(&'static str, f64)> {
    let cred = Cred::root();
    let (dir, _) = store
        .create(
            &cred,
            store.root(),
            format!("meta-{}", std::process::id()).as_bytes(),
            NodeKind::Directory,
            SetAttr::default(),
            CreateMode::Guarded,
        )
        .await
        .expect("mkdir");
    let mut ids = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let name = format!("f{i:06}");
        let (attr, _) = store
            .create(
                &cred,
                dir.id,
                name.as_bytes(),
                NodeKind::Regular,
                SetAttr::default(),
                CreateMode::Guarded,
            )
            .await
            .expect("create");
        ids.push(attr.id);
    }
    let creates = n as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for i in 0..n {
        let name = format!("f{i:06}");
        store
            .lookup(&cred, dir.id, name.as_bytes())
            .await
            .expect("lookup");
    }
    let lookups = n as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for &id in &ids {
        store.getattr(id).await.expect("getattr");
    }
    let getattrs = n as f64 / start.elapsed().as_secs_f64();
    vec![
        ("create_per_s", creates),
        ("lookup_per_s", lookups),
        ("getattr_per_s", getattrs),
    ]
}

async fn run<S: Store>(store: Arc<S>, args: &Args, label: &str) {
    let cred = Cred::root();
    // UNCHECKED with size 0: a rerun in the same directory starts from an empty file.
    let (attr, _) = store
        .create(
            &cred,
            store.root(),
            b"store-bench.dat",
            NodeKind::Regular,
            SetAttr {
                size: Some(0),
                ..SetAttr::default()
            },
            CreateMode::Unchecked,
        )
        .await
        .expect("create the test file");
    let id = attr.id;
    // Incompressible-looking, non-zero contents.
    let mut seed = 0x1234_5678_9abc_def1u64;
    let data: Bytes = (0..MIB / 8)
        .flat_map(|_| next_random(&mut seed).to_le_bytes())
        .collect::<Vec<u8>>()
        .into();

    eprintln!(
        "store_bench: {label}, dir {}, file {} MiB, qd {}, {} s random phases",
        args.dir.display(),
        args.size / MIB,
        args.qd,
        args.seconds
    );
    let mut phases = Vec::new();
    drop_caches(args.drop_caches);
    phases.push(sequential(&store, id, args, true, &data).await);
    drop_caches(args.drop_caches);
    phases.push(sequential(&store, id, args, false, &data).await);
    drop_caches(args.drop_caches);
    phases.push(random(&store, id, args, false, &data).await);
    drop_caches(args.drop_caches);
    phases.push(random(&store, id, args, true, &data).await);
    let meta = if args.meta_files > 0 {
        metadata(store.as_ref(), args.meta_files).await
    } else {
        Vec::new()
    };

    println!("{label}: {} MiB file, qd {}", args.size / MIB, args.qd);
    println!(
        "{:<10} {:>5} {:>10} {:>8} {:>9} {:>10} {:>10}",
        "workload", "bs", "ops", "secs", "MB/s", "IOPS", "commit s"
    );
    for p in &phases {
        println!(
            "{:<10} {:>5} {:>10} {:>8.2} {:>9.1} {:>10.0} {:>10}",
            p.name,
            if p.block == MIB { "1M" } else { "4k" },
            p.ops,
            p.secs,
            p.mbps(),
            p.iops(),
            p.commit_secs.map_or("-".into(), |s| format!("{s:.3}"))
        );
    }
    for (name, rate) in &meta {
        println!("meta {name:<14} {rate:>10.0} ({} files)", args.meta_files);
    }

    let phase_json: Vec<String> = phases
        .iter()
        .map(|p| {
            format!(
                "\"{}\":{{\"bs\":{},\"ops\":{},\"secs\":{:.4},\"mbps\":{:.2},\"iops\":{:.1},\
                 \"commit_secs\":{}}}",
                p.name,
                p.block,
                p.ops,
                p.secs,
                p.mbps(),
                p.iops(),
                p.commit_secs.map_or("null".into(), |s| format!("{s:.4}"))
            )
        })
        .collect();
    let meta_json: Vec<String> = meta
        .iter()
        .map(|(name, rate)| format!("\"{name}\":{rate:.1}"))
        .collect();
    println!(
        "{{\"store\":\"{}\",\"label\":\"{label}\",\"size\":{},\"qd\":{},\"seconds\":{},\
         \"drop_caches\":{},\"phases\":{{{}}},\"meta\":{{{}}}}}",
        args.store,
        args.size,
        args.qd,
        args.seconds,
        args.drop_caches,
        phase_json.join(","),
        meta_json.join(",")
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = parse_args();
    if args.store == "nvme" {
        let mut config = NvmeConfig::new(&args.dir);
        config.engine = args.engine;
        config.devices = args.devices.clone();
        let store = NvmeStore::open_with(&config).expect("open the nvme store");
        let label = format!("nvme ({})", store.data().engine_name());
        run(Arc::new(store), &args, &label).await;
    } else {
        let store = LocalStore::open(&args.dir).expect("open the local store");
        run(Arc::new(store), &args, "local").await;
    }
}
