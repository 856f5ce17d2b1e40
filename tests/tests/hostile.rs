//! Hostile clients (idle crowds, slowloris, giant and tiny fragments, oversized READDIRs,
//! duplicate xids, aborted WRITEs, floods, garbage) do not kill the server, blow up its memory
//! or starve a well-behaved client. Runs `sluice-hostile --scale small` (see tests/HOSTILE.md)
//! against a memory-store server and prints its report (`cargo test -p sluice-tests --test
//! hostile -- --nocapture`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nfs_proto::v3;
use sluice_tests::{RpcClient, Sluice};

/// The whole tool run must finish within this (it takes ~20 s on 2 cores, debug build).
const TOOL_TIMEOUT: Duration = Duration::from_secs(80);
/// The server's RSS during any attack must stay below this. Measured peaks at this scale are
/// about 28 MiB (tests/HOSTILE.md); the bound catches unbounded growth, not small drift.
const RSS_MAX_MIB: u64 = 256;

/// `<target>/<profile>/sluice-hostile`, built with the same target dir and profile as this
/// test executable (`SLUICE_HOSTILE_BIN` overrides).
fn hostile_bin() -> PathBuf {
    match std::env::var_os("SLUICE_HOSTILE_BIN") {
        Some(p) => PathBuf::from(p),
        None => sluice_tests::build_bin("sluice-tests", "sluice-hostile"),
    }
}

/// The pid of the `sluice serve` listening on `nfs` (the harness does not expose it): the
/// process whose command line holds `--listen <nfs>`.
fn server_pid(nfs: SocketAddr) -> Option<u32> {
    let want = nfs.to_string();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        let serve = args.iter().any(|a| *a == b"serve");
        let listens = args
            .windows(2)
            .any(|w| w[0] == b"--listen" && w[1] == want.as_bytes());
        if serve && listens {
            return Some(pid);
        }
    }
    None
}

#[test]
fn hostile_clients_do_not_hurt_the_server_or_a_well_behaved_client() {
    let bin = hostile_bin();
    let mut s = Sluice::start_memory();
    // Without the pid the tool could not watch the server's memory: that is a failure, not a
    // check to skip.
    let pid = server_pid(s.nfs).expect("the server's pid (from /proc), for the RSS check");
    let mut cmd = Command::new(&bin);
    cmd.arg("--target")
        .arg(s.nfs.to_string())
        .arg("--mount-port")
        .arg(s.mount.port().to_string())
        .args(["--scale", "small"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.arg("--pid")
        .arg(pid.to_string())
        .arg("--rss-max-mib")
        .arg(RSS_MAX_MIB.to_string());
    let mut child = cmd.spawn().expect("spawn sluice-hostile");
    // Drain stdout on a thread so a full pipe never blocks the tool.
    let mut out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut v = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut v);
        v
    });
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait sluice-hostile") {
            break Some(st);
        }
        if t0.elapsed() > TOOL_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = reader.join().unwrap_or_default();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    println!("{stdout}");
    if !stderr.is_empty() {
        println!("---- sluice-hostile stderr ----\n{stderr}");
    }
    let status = status.unwrap_or_else(|| {
        panic!("sluice-hostile did not finish within {TOOL_TIMEOUT:?}:\n{stdout}")
    });
    assert!(
        s.is_running(),
        "the server died under hostile clients:\n{}",
        s.log()
    );
    let mut c: RpcClient = s.client();
    c.call_ok(v3::PROGRAM, v3::VERSION, 0, &[]);
    assert!(
        status.success(),
        "sluice-hostile failed ({status}):\n{stdout}"
    );
    let log = s.log();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}
