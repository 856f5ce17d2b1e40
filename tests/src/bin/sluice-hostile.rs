//! `sluice-hostile`: a hostile-client load tool for a running Sluice server.
//!
//! Runs a fixed sequence of attacks (idle connections, slowloris, giant fragment headers, tiny
//! fragment floods, oversized READDIR requests, duplicate and reordered xids, aborted 1 MiB
//! WRITEs, a MOUNT/NULL flood, garbage records) against `--target`, each bounded in count and
//! time, while one well-behaved client does GETATTR + 4 KiB WRITE + 4 KiB READ round trips on
//! its own connection and records its latencies. Prints, per attack, what was sent, how the
//! server answered, its RSS (with `--pid`) and the well-behaved client's latencies, then a
//! summary table. Exits non-zero if the server died, the well-behaved client saw an error or
//! stalled, its p99 latency exceeded the bound, or the server broke a protocol expectation.
//!
//! See tests/HOSTILE.md.

use std::collections::{BTreeMap, HashSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use nfs_proto::limits::{READDIR_REPLY_LEN_MAX, RECORD_LEN_MAX};
use nfs_proto::mount;
use nfs_proto::rpc::{self, AuthSys, OpaqueAuth, ReplyHeader};
use nfs_proto::v3::{self, proc3, CreateHow3, Nfs3Call, NfsFh3, Sattr3, StableHow};
use nfs_proto::xdr::{Encode, Reader, Writer};
use sluice_tests::{encode, place, XorShift};

const USAGE: &str = "\
usage: sluice-hostile --target 127.0.0.1:PORT [--mount-port Q] [--pid PID]
                      [--scale small|full] [--only abcdefghi] [--p99-max-ms N]
                      [--rss-max-mib N (needs --pid; an RSS that cannot be read fails)]";

/// Well-behaved client p99 bound (default; --p99-max-ms overrides).
const P99_MAX_DEFAULT: Duration = Duration::from_secs(2);
/// Socket timeout of the well-behaved client and of probes.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server may take to close a connection it must close.
const CLOSE_DEADLINE: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Arguments and scale
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ScaleKind {
    Small,
    Full,
}

/// Every count and duration of the attacks.
#[derive(Clone, Copy, Debug)]
struct Scale {
    idle_conns: usize,
    idle_hold: Duration,
    slow_conns: usize,
    slow_time: Duration,
    huge_reps: usize,
    tiny_conns: usize,
    zero_frag_time: Duration,
    dir_entries: usize,
    readdir_threads: usize,
    readdir_reps: usize,
    dup_copies: usize,
    dup_rounds: usize,
    midwrite_reps: usize,
    flood_threads: usize,
    flood_time: Duration,
    garbage_records: usize,
}

impl Scale {
    fn new(kind: ScaleKind) -> Scale {
        match kind {
            ScaleKind::Small => Scale {
                idle_conns: 200,
                idle_hold: Duration::from_secs(3),
                slow_conns: 20,
                slow_time: Duration::from_secs(3),
                huge_reps: 5,
                tiny_conns: 2,
                zero_frag_time: Duration::from_secs(2),
                dir_entries: 3000,
                readdir_threads: 2,
                readdir_reps: 3,
                dup_copies: 50,
                dup_rounds: 3,
                midwrite_reps: 200,
                flood_threads: 16,
                flood_time: Duration::from_secs(2),
                garbage_records: 300,
            },
            ScaleKind::Full => Scale {
                idle_conns: 1000,
                idle_hold: Duration::from_secs(10),
                slow_conns: 100,
                slow_time: Duration::from_secs(10),
                huge_reps: 20,
                tiny_conns: 8,
                zero_frag_time: Duration::from_secs(5),
                dir_entries: 6000,
                readdir_threads: 4,
                readdir_reps: 10,
                dup_copies: 50,
                dup_rounds: 10,
                midwrite_reps: 1000,
                flood_threads: 16,
                flood_time: Duration::from_secs(5),
                garbage_records: 3000,
            },
        }
    }
}

struct Args {
    target: SocketAddr,
    mount: SocketAddr,
    pid: Option<u32>,
    kind: ScaleKind,
    only: Option<String>,
    p99_max: Duration,
    /// A phase whose peak RSS exceeds this fails; so does one whose RSS cannot be read.
    rss_max_kib: Option<u64>,
}

fn parse_args() -> Result<Args, String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let (mut target, mut mount_port, mut pid, mut kind, mut only, mut p99) =
        (None, None, None, ScaleKind::Small, None, P99_MAX_DEFAULT);
    let mut rss_max_kib = None;
    let mut i = 0;
    while i < argv.len() {
        let flag = argv[i].as_str();
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        let v = argv
            .get(i + 1)
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag {
            "--target" => {
                target = Some(
                    v.parse::<SocketAddr>()
                        .map_err(|_| format!("--target {v:?}: expected ADDR:PORT"))?,
                )
            }
            "--mount-port" => {
                mount_port = Some(
                    v.parse::<u16>()
                        .map_err(|_| format!("--mount-port {v:?}"))?,
                )
            }
            "--pid" => pid = Some(v.parse::<u32>().map_err(|_| format!("--pid {v:?}"))?),
            "--scale" => {
                kind = match v.as_str() {
                    "small" => ScaleKind::Small,
                    "full" => ScaleKind::Full,
                    _ => return Err(format!("--scale {v:?}: small or full")),
                }
            }
            "--only" => only = Some(v.clone()),
            "--p99-max-ms" => {
                p99 = Duration::from_millis(v.parse().map_err(|_| format!("--p99-max-ms {v:?}"))?)
            }
            "--rss-max-mib" => {
                let mib: u64 = v.parse().map_err(|_| format!("--rss-max-mib {v:?}"))?;
                rss_max_kib = Some(mib * 1024);
            }
            _ => return Err(format!("unknown option {flag:?}\n{USAGE}")),
        }
        i += 2;
    }
    let target = target.ok_or_else(|| format!("--target is required\n{USAGE}"))?;
    if rss_max_kib.is_some() && pid.is_none() {
        return Err(format!("--rss-max-mib needs --pid\n{USAGE}"));
    }
    let mount = match mount_port {
        Some(p) => SocketAddr::new(target.ip(), p),
        None => target,
    };
    Ok(Args {
        target,
        mount,
        pid,
        kind,
        only,
        p99_max: p99,
        rss_max_kib,
    })
}

// ---------------------------------------------------------------------------------------------
// Wire helpers (no panics: a hostile run must report, not crash)
// ---------------------------------------------------------------------------------------------

fn auth_sys(gids: Vec<u32>, machine: &[u8]) -> OpaqueAuth {
    let mut w = Writer::new();
    AuthSys {
        stamp: 7,
        machine_name: Bytes::copy_from_slice(machine),
        uid: 0,
        gid: 0,
        gids,
    }
    .encode(&mut w);
    OpaqueAuth {
        flavor: rpc::AUTH_SYS,
        body: w.into_bytes(),
    }
}

fn root_cred() -> OpaqueAuth {
    auth_sys(Vec::new(), b"sluice-hostile")
}

/// A call record body (no record mark).
fn call_body(xid: u32, prog: u32, vers: u32, proc_: u32, cred: OpaqueAuth, args: &[u8]) -> Vec<u8> {
    rpc::call_record(xid, prog, vers, proc_, cred, args).to_vec()
}

/// Record mark + body.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(body.len() + 4);
    v.extend_from_slice(&rpc::record_mark(body.len()));
    v.extend_from_slice(body);
    v
}

fn nfs_call(xid: u32, call: &Nfs3Call) -> Vec<u8> {
    framed(&call_body(
        xid,
        v3::PROGRAM,
        v3::VERSION,
        call.proc_(),
        root_cred(),
        &encode(call),
    ))
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Reads one reply record (fragments gathered, at most 8 MiB).
fn read_record(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let mut h = [0u8; 4];
        s.read_exact(&mut h)?;
        let h = u32::from_be_bytes(h);
        let len = (h & 0x7fff_ffff) as usize;
        if out.len() + len > 8 << 20 {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                format!("reply fragment of {len} bytes"),
            ));
        }
        let start = out.len();
        out.resize(start + len, 0);
        s.read_exact(&mut out[start..])?;
        if h & 0x8000_0000 != 0 {
            return Ok(out);
        }
    }
}

fn xid_of(rec: &[u8]) -> Option<u32> {
    rec.get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reply header and a reader at the results.
fn parse(rec: Vec<u8>) -> Result<(ReplyHeader, Reader), String> {
    let mut r = Reader::new(Bytes::from(rec));
    let h = rpc::decode_reply(&mut r).map_err(|e| format!("undecodable reply: {e:?}"))?;
    Ok((h, r))
}

/// An accepted SUCCESS reply whose results start with NFS3_OK.
fn nfs3_ok(rec: Vec<u8>) -> bool {
    match parse(rec) {
        Ok((ReplyHeader::Accepted { stat: 0, .. }, mut r)) => r.u32() == Ok(0),
        _ => false,
    }
}

/// One call on a blocking stream: the reader at the results of an accepted SUCCESS reply.
fn call(
    s: &mut TcpStream,
    xid: u32,
    prog: u32,
    vers: u32,
    proc_: u32,
    args: &[u8],
) -> Result<Reader, String> {
    let rec = framed(&call_body(xid, prog, vers, proc_, root_cred(), args));
    s.write_all(&rec).map_err(|e| format!("send: {e}"))?;
    let rep = read_record(s).map_err(|e| format!("receive: {e}"))?;
    if xid_of(&rep) != Some(xid) {
        return Err(format!("reply xid {:?}, expected {xid}", xid_of(&rep)));
    }
    match parse(rep)? {
        (ReplyHeader::Accepted { stat: 0, .. }, r) => Ok(r),
        (h, _) => Err(format!("{h:?}")),
    }
}

fn nfs(s: &mut TcpStream, xid: u32, c: &Nfs3Call) -> Result<Reader, String> {
    call(s, xid, v3::PROGRAM, v3::VERSION, c.proc_(), &encode(c))
}

/// The nfsstat3 at the start of results.
fn ok_status(r: &mut Reader, what: &str) -> Result<(), String> {
    match r.u32() {
        Ok(0) => Ok(()),
        Ok(s) => Err(format!("{what}: nfsstat3 {s}")),
        Err(e) => Err(format!("{what}: {e:?}")),
    }
}

fn skip_fattr(r: &mut Reader) -> Result<u64, String> {
    let e = |e| format!("fattr3: {e:?}");
    for _ in 0..5 {
        r.u32().map_err(e)?;
    }
    let size = r.u64().map_err(e)?;
    r.u64().map_err(e)?; // used
    r.u32().map_err(e)?; // rdev
    r.u32().map_err(e)?;
    r.u64().map_err(e)?; // fsid
    r.u64().map_err(e)?; // fileid
    for _ in 0..6 {
        r.u32().map_err(e)?;
    }
    Ok(size)
}

fn skip_post_op_attr(r: &mut Reader) -> Result<Option<u64>, String> {
    match r.bool().map_err(|e| format!("post_op_attr: {e:?}"))? {
        true => skip_fattr(r).map(Some),
        false => Ok(None),
    }
}

/// CREATE/MKDIR results: the new handle.
fn created_fh(r: &mut Reader, what: &str) -> Result<NfsFh3, String> {
    ok_status(r, what)?;
    match r.optional(|r| r.opaque(64)) {
        Ok(Some(fh)) => Ok(NfsFh3(fh)),
        Ok(None) => Err(format!("{what}: no handle")),
        Err(e) => Err(format!("{what}: {e:?}")),
    }
}

/// MOUNT MNT of "/": the root handle.
fn mnt(s: &mut TcpStream, xid: u32) -> Result<NfsFh3, String> {
    let args = encode(&mount::MountCall::Mnt(Bytes::from_static(b"/")));
    let mut r = call(
        s,
        xid,
        mount::PROGRAM,
        mount::VERSION,
        mount::MOUNTPROC3_MNT,
        &args,
    )?;
    ok_status(&mut r, "MNT")?;
    r.opaque(64)
        .map(NfsFh3)
        .map_err(|e| format!("MNT fh: {e:?}"))
}

fn lookup(s: &mut TcpStream, xid: u32, dir: &NfsFh3, name: &str) -> Result<NfsFh3, String> {
    let mut r = nfs(s, xid, &Nfs3Call::Lookup(place(dir, name)))?;
    ok_status(&mut r, "LOOKUP")?;
    r.opaque(64)
        .map(NfsFh3)
        .map_err(|e| format!("LOOKUP fh: {e:?}"))
}

fn mkdir_call(dir: &NfsFh3, name: &str) -> Nfs3Call {
    Nfs3Call::Mkdir {
        place: place(dir, name),
        attr: Sattr3 {
            mode: Some(0o777),
            ..Sattr3::default()
        },
    }
}

fn create_call(dir: &NfsFh3, name: &str) -> Nfs3Call {
    Nfs3Call::Create {
        place: place(dir, name),
        how: CreateHow3::Unchecked(Sattr3 {
            mode: Some(0o666),
            ..Sattr3::default()
        }),
    }
}

/// A directory or file under the root, created if missing (MKDIR/CREATE, then LOOKUP).
fn ensure(
    s: &mut TcpStream,
    xid: &mut u32,
    root: &NfsFh3,
    name: &str,
    dir: bool,
) -> Result<NfsFh3, String> {
    *xid += 1;
    let c = if dir {
        mkdir_call(root, name)
    } else {
        create_call(root, name)
    };
    let mut r = nfs(s, *xid, &c)?;
    if let Ok(fh) = created_fh(&mut r, "create") {
        return Ok(fh);
    }
    *xid += 1;
    lookup(s, *xid, root, name)
}

/// True when the peer has closed (or reset) the connection.
fn closed_by_peer(s: &TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return true;
    }
    let mut b = [0u8; 1];
    let closed = match s.peek(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    };
    let _ = s.set_nonblocking(false);
    closed
}

/// Reads (and discards) until the peer closes: the time it took, `None` if still open after
/// `limit`. Also returns how many bytes arrived.
fn wait_closed(s: &mut TcpStream, limit: Duration) -> (Option<Duration>, usize) {
    let t0 = Instant::now();
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 4096];
    let mut got = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (Some(t0.elapsed()), got),
            Ok(n) => got += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return (Some(t0.elapsed()), got),
        }
        if t0.elapsed() > limit {
            return (None, got);
        }
    }
}

fn is_blocked(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

// ---------------------------------------------------------------------------------------------
// Server health: RSS and liveness
// ---------------------------------------------------------------------------------------------

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // state is the field after "(comm)".
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|st| st != "Z" && st != "X"),
        Err(_) => false,
    }
}

/// The process (if known) exists and a NULL on a fresh connection is answered.
fn server_alive(args: &Args) -> Result<(), String> {
    if let Some(pid) = args.pid {
        if !pid_alive(pid) {
            return Err(format!("process {pid} is gone"));
        }
    }
    let mut last = String::new();
    for _ in 0..3 {
        match connect(args.target)
            .map_err(|e| format!("connect: {e}"))
            .and_then(|mut s| call(&mut s, 0x5eed_0001, v3::PROGRAM, v3::VERSION, 0, &[]))
        {
            Ok(_) => return Ok(()),
            Err(e) => last = e,
        }
        thread::sleep(Duration::from_millis(300));
    }
    Err(format!("NULL on a fresh connection failed: {last}"))
}

fn mib(k: Option<u64>) -> String {
    match k {
        Some(k) => format!("{:.1}", k as f64 / 1024.0),
        None => "-".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Phase bookkeeping: latencies of the well-behaved client and RSS peaks per attack
// ---------------------------------------------------------------------------------------------

const PHASES: usize = 12;

struct Shared {
    phase: AtomicUsize,
    stop: AtomicBool,
    samples: Mutex<Vec<Vec<Duration>>>,
    errors: Mutex<Vec<Vec<String>>>,
    rss_peak: Vec<AtomicU64>,
    /// Set once the well-behaved client has its file and runs.
    ready: AtomicBool,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            phase: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            samples: Mutex::new(vec![Vec::new(); PHASES]),
            errors: Mutex::new(vec![Vec::new(); PHASES]),
            rss_peak: (0..PHASES).map(|_| AtomicU64::new(0)).collect(),
            ready: AtomicBool::new(false),
        }
    }

    fn record(&self, phase: usize, d: Duration) {
        if let Ok(mut s) = self.samples.lock() {
            s[phase].push(d);
        }
    }

    fn error(&self, phase: usize, e: String) {
        if let Ok(mut s) = self.errors.lock() {
            s[phase].push(e);
        }
    }
}

/// The well-behaved client: GETATTR, 4 KiB WRITE, 4 KiB READ, forever, on one connection
/// (reconnecting after an error, which is counted).
fn well_behaved(args: (SocketAddr, SocketAddr), sh: Arc<Shared>) {
    let (target, mount_addr) = args;
    let mut xid: u32 = 0x7700_0000 | (std::process::id() & 0xfff) << 12;
    let data = vec![0x5au8; 4096];
    let name = format!("wb-{}", std::process::id());
    while !sh.stop.load(Ordering::Relaxed) {
        let setup = (|| -> Result<(TcpStream, NfsFh3), String> {
            let mut m = connect(mount_addr).map_err(|e| format!("connect mount: {e}"))?;
            xid += 1;
            let root = mnt(&mut m, xid)?;
            let mut s = connect(target).map_err(|e| format!("connect: {e}"))?;
            let fh = ensure(&mut s, &mut xid, &root, &name, false)?;
            Ok((s, fh))
        })();
        let (mut s, fh) = match setup {
            Ok(x) => x,
            Err(e) => {
                sh.error(sh.phase.load(Ordering::Relaxed), format!("setup: {e}"));
                thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        sh.ready.store(true, Ordering::Relaxed);
        let mut i: u64 = 0;
        let broken = loop {
            if sh.stop.load(Ordering::Relaxed) {
                break None;
            }
            i += 1;
            let off = (i % 64) * 4096;
            let ops: [(&str, Nfs3Call); 3] = [
                ("GETATTR", Nfs3Call::Getattr(fh.clone())),
                (
                    "WRITE",
                    Nfs3Call::Write {
                        file: fh.clone(),
                        offset: off,
                        count: 4096,
                        stable: StableHow::Unstable,
                        data: Bytes::copy_from_slice(&data),
                    },
                ),
                (
                    "READ",
                    Nfs3Call::Read {
                        file: fh.clone(),
                        offset: off,
                        count: 4096,
                    },
                ),
            ];
            let mut failed = None;
            for (what, op) in ops {
                let phase = sh.phase.load(Ordering::Relaxed);
                xid = xid.wrapping_add(1);
                let t0 = Instant::now();
                let res = nfs(&mut s, xid, &op).and_then(|mut r| {
                    ok_status(&mut r, what)?;
                    if what == "READ" {
                        skip_post_op_attr(&mut r)?;
                        let n = r.u32().map_err(|e| format!("READ count: {e:?}"))?;
                        if n != 4096 {
                            return Err(format!("READ returned {n} bytes, wanted 4096"));
                        }
                    }
                    Ok(())
                });
                let d = t0.elapsed();
                sh.record(phase, d);
                if let Err(e) = res {
                    failed = Some((phase, format!("{what}: {e}")));
                    break;
                }
            }
            if let Some(f) = failed {
                break Some(f);
            }
            thread::sleep(Duration::from_millis(1));
        };
        match broken {
            None => return,
            Some((phase, e)) => {
                sh.error(phase, e);
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Samples the server's RSS every 50 ms into the current phase's peak.
fn rss_sampler(pid: Option<u32>, sh: Arc<Shared>) {
    while !sh.stop.load(Ordering::Relaxed) {
        if let Some(k) = rss_kib(pid) {
            sh.rss_peak[sh.phase.load(Ordering::Relaxed)].fetch_max(k, Ordering::Relaxed);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    let m = d.as_secs_f64() * 1000.0;
    if m < 10.0 {
        format!("{m:.2}")
    } else {
        format!("{m:.0}")
    }
}

/// What an attack reports.
#[derive(Default)]
struct Outcome {
    sent: String,
    server: String,
    /// Broken expectations: make the run fail.
    problems: Vec<String>,
    /// Worth knowing, not a failure (e.g. limits not enforced yet).
    notes: Vec<String>,
}

struct Row {
    key: char,
    name: &'static str,
    secs: f64,
    rss: (Option<u64>, Option<u64>, Option<u64>),
    ops: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
    errors: usize,
    verdict: &'static str,
}

// ---------------------------------------------------------------------------------------------
// The attacks
// ---------------------------------------------------------------------------------------------

struct Ctx<'a> {
    args: &'a Args,
    sc: Scale,
    rng: XorShift,
    xid: u32,
}

impl Ctx<'_> {
    fn xid(&mut self) -> u32 {
        self.xid = self.xid.wrapping_add(1);
        self.xid
    }

    /// A connection with the root mounted (MNT on the mount port, calls on the NFS port).
    fn mounted(&mut self) -> Result<(TcpStream, NfsFh3), String> {
        let mut m = connect(self.args.mount).map_err(|e| format!("connect mount: {e}"))?;
        let x = self.xid();
        let root = mnt(&mut m, x)?;
        let s = connect(self.args.target).map_err(|e| format!("connect: {e}"))?;
        Ok((s, root))
    }
}

/// a. Many idle connections held open.
fn attack_idle(cx: &mut Ctx) -> Outcome {
    let n = cx.sc.idle_conns;
    let mut conns = Vec::with_capacity(n);
    let mut failed = 0;
    let mut first_err = None;
    for _ in 0..n {
        match connect(cx.args.target) {
            Ok(s) => conns.push(s),
            Err(e) => {
                failed += 1;
                first_err.get_or_insert(e.to_string());
            }
        }
    }
    let t0 = Instant::now();
    let mut first_close = None;
    while t0.elapsed() < cx.sc.idle_hold {
        thread::sleep(Duration::from_millis(250));
        if first_close.is_none() && conns.iter().any(closed_by_peer) {
            first_close = Some(t0.elapsed());
        }
    }
    let closed = conns.iter().filter(|s| closed_by_peer(s)).count();
    // A newcomer while the idle crowd is still there.
    let fresh = match connect(cx.args.target)
        .map_err(|e| e.to_string())
        .and_then(|mut s| call(&mut s, 0x1d1e_0001, v3::PROGRAM, 3, 0, &[]))
    {
        Ok(_) => "answered".to_string(),
        Err(e) => format!("failed ({e})"),
    };
    // Does an idle survivor still work?
    let mut survivors_ok = 0;
    let mut probed = 0;
    for s in conns.iter_mut().filter(|s| !closed_by_peer(s)).take(10) {
        probed += 1;
        if call(s, 0x1d1e_0100 + probed, v3::PROGRAM, 3, 0, &[]).is_ok() {
            survivors_ok += 1;
        }
    }
    drop(conns);
    let mut o = Outcome {
        sent: format!(
            "{n} TCP connections, nothing sent, held {:.0} s",
            cx.sc.idle_hold.as_secs_f64()
        ),
        server: format!(
            "{} established ({failed} connect errors{}), {closed} closed by server{}; NULL from a \
             new connection {fresh}; {survivors_ok}/{probed} idle survivors answer NULL",
            n - failed,
            first_err.map(|e| format!(": {e}")).unwrap_or_default(),
            first_close
                .map(|d| format!(" (first after {:.1} s)", d.as_secs_f64()))
                .unwrap_or_default(),
        ),
        ..Outcome::default()
    };
    if closed == 0 {
        o.notes.push(format!(
            "all {} idle connections kept for {:.0} s (no idle timeout / connection cap hit)",
            n - failed,
            cx.sc.idle_hold.as_secs_f64()
        ));
    }
    if survivors_ok < probed {
        o.problems.push(format!(
            "only {survivors_ok}/{probed} surviving idle connections answer NULL"
        ));
    }
    o
}

/// b. Slowloris: each connection dribbles one byte of a record every 100 ms.
fn attack_slowloris(cx: &mut Ctx) -> Outcome {
    let n = cx.sc.slow_conns;
    // A 4 KiB record: a NULL call padded with zero bytes; it never completes in time.
    let mut body = call_body(0x510_0000, v3::PROGRAM, 3, 0, OpaqueAuth::none(), &[]);
    body.resize(4096, 0);
    let rec = framed(&body);
    let mut conns: Vec<(TcpStream, usize, Option<Duration>)> = Vec::new();
    let mut failed = 0;
    for _ in 0..n {
        match connect(cx.args.target) {
            Ok(s) => conns.push((s, 0, None)),
            Err(_) => failed += 1,
        }
    }
    let t0 = Instant::now();
    while t0.elapsed() < cx.sc.slow_time {
        for (idx, (s, pos, closed)) in conns.iter_mut().enumerate() {
            if closed.is_some() {
                continue;
            }
            // Even connections: one byte of a single-fragment record. Odd ones: a 1-byte
            // non-last fragment per tick (the record grows one byte at a time).
            let frag = [0, 0, 0, 1, rec[*pos]];
            let r = if idx % 2 == 0 {
                s.write_all(&rec[*pos..*pos + 1])
            } else {
                s.write_all(&frag)
            };
            if r.is_err() || closed_by_peer(s) {
                *closed = Some(t0.elapsed());
                continue;
            }
            *pos = (*pos + 1).min(rec.len() - 1);
        }
        thread::sleep(Duration::from_millis(100));
    }
    let closed: Vec<Duration> = conns.iter().filter_map(|c| c.2).collect();
    let closed_frag = conns
        .iter()
        .skip(1)
        .step_by(2)
        .filter(|c| c.2.is_some())
        .count();
    let n_frag = conns.len() / 2;
    let sent: usize = conns.iter().map(|c| c.1).sum();
    let first = closed.iter().min().copied();
    let mut o = Outcome {
        sent: format!(
            "{n} connections sending a 4 KiB record 1 byte / 100 ms for {:.0} s ({sent} bytes in \
             all); half as plain bytes, half as 1-byte non-last fragments",
            cx.sc.slow_time.as_secs_f64()
        ),
        server: format!(
            "{} connected ({failed} failed), {} closed by server ({} plain, {closed_frag} \
             fragmented){}",
            conns.len(),
            closed.len(),
            closed.len() - closed_frag,
            first
                .map(|d| format!(" (first after {:.1} s)", d.as_secs_f64()))
                .unwrap_or_default()
        ),
        ..Outcome::default()
    };
    if closed.is_empty() {
        o.notes.push(format!(
            "no slow record was cut off within {:.0} s (no record timeout)",
            cx.sc.slow_time.as_secs_f64()
        ));
    } else if closed_frag < n_frag {
        o.notes.push(format!(
            "plain slow records were cut off but {} of {n_frag} records dribbled as 1-byte \
             fragments were not: the record timeout does not see fragment-by-fragment records",
            n_frag - closed_frag
        ));
    }
    o
}

/// c. Fragment headers claiming up to 4 GiB: the connection must be closed at once.
fn attack_huge_fragment(cx: &mut Ctx) -> Outcome {
    let over = (RECORD_LEN_MAX + 1) as u32;
    let headers: [(u32, &str); 4] = [
        (0x7fff_ffff, "0x7fffffff (2 GiB, not last)"),
        (0xffff_ffff, "0xffffffff (2 GiB, last)"),
        (0x8000_0000 | over, "limit+1, last"),
        (over, "limit+1, not last"),
    ];
    let mut o = Outcome::default();
    let mut worst = Duration::ZERO;
    let mut open = 0;
    let mut replied = 0;
    for (h, label) in headers {
        for _ in 0..cx.sc.huge_reps {
            let Ok(mut s) = connect(cx.args.target) else {
                o.problems.push(format!("{label}: connect failed"));
                continue;
            };
            let mut msg = h.to_be_bytes().to_vec();
            msg.extend_from_slice(&[0xab; 64]);
            let _ = s.write_all(&msg);
            match wait_closed(&mut s, CLOSE_DEADLINE) {
                (Some(d), got) => {
                    worst = worst.max(d);
                    if got > 0 {
                        replied += 1;
                    }
                }
                (None, _) => open += 1,
            }
        }
        if open > 0 {
            o.problems.push(format!(
                "header {label}: {open} connections still open after {CLOSE_DEADLINE:?}"
            ));
            open = 0;
        }
    }
    o.sent = format!(
        "{} connections, each one fragment header (0x7fffffff, 0xffffffff, limit+1 last/not \
         last) and 64 bytes",
        4 * cx.sc.huge_reps
    );
    o.server = format!(
        "closed all, slowest close {} ms, {replied} sent bytes back",
        ms(worst)
    );
    if replied > 0 {
        o.problems.push(format!(
            "{replied} connections got bytes back for an oversized fragment"
        ));
    }
    o
}

/// d. Floods of tiny non-last fragments toward the record limit, and zero-length fragments.
fn attack_tiny_fragments(cx: &mut Ctx) -> Outcome {
    let target = cx.args.target;
    // 1-byte fragments: 5 wire bytes each.
    let chunk: Vec<u8> = std::iter::repeat_n([0u8, 0, 0, 1, 0x41], 13107)
        .flatten()
        .collect();
    let handles: Vec<_> = (0..cx.sc.tiny_conns)
        .map(|_| {
            let chunk = chunk.clone();
            thread::spawn(move || -> Result<(usize, Option<Duration>), String> {
                let mut s = connect(target).map_err(|e| e.to_string())?;
                let mut payload = 0usize;
                let t0 = Instant::now();
                while payload <= RECORD_LEN_MAX + 64 * 1024
                    && t0.elapsed() < Duration::from_secs(20)
                {
                    match s.write_all(&chunk) {
                        Ok(()) => payload += chunk.len() / 5,
                        Err(_) => break,
                    }
                }
                let (closed, _) = wait_closed(&mut s, CLOSE_DEADLINE);
                Ok((payload, closed.map(|_| t0.elapsed())))
            })
        })
        .collect();
    let mut closed = 0;
    let mut sent_max = 0;
    let mut slowest = Duration::ZERO;
    let mut o = Outcome::default();
    for h in handles {
        match h.join() {
            Ok(Ok((p, c))) => {
                sent_max = sent_max.max(p);
                if let Some(d) = c {
                    closed += 1;
                    slowest = slowest.max(d);
                }
            }
            Ok(Err(e)) => o.problems.push(format!("tiny fragments: {e}")),
            Err(_) => o.problems.push("tiny-fragment thread panicked".into()),
        }
    }
    if closed < cx.sc.tiny_conns {
        o.problems.push(format!(
            "{} of {} connections sending 1-byte fragments past the {RECORD_LEN_MAX}-byte limit \
             were not closed",
            cx.sc.tiny_conns - closed,
            cx.sc.tiny_conns
        ));
    }
    // Zero-length non-last fragments never grow the record.
    let mut zero_sent = 0usize;
    let mut zero_closed = None;
    if let Ok(mut s) = connect(target) {
        let zeros = vec![0u8; 64 * 1024];
        let t0 = Instant::now();
        while t0.elapsed() < cx.sc.zero_frag_time {
            match s.write_all(&zeros) {
                Ok(()) => zero_sent += zeros.len(),
                Err(e) if is_blocked(&e) => {}
                Err(_) => {
                    zero_closed = Some(t0.elapsed());
                    break;
                }
            }
        }
        if zero_closed.is_none() && closed_by_peer(&s) {
            zero_closed = Some(t0.elapsed());
        }
    }
    o.sent = format!(
        "{} connections streaming 1-byte non-last fragments (up to {} KiB payload = {} MiB on \
         the wire); 1 connection streaming zero-length non-last fragments for {:.0} s",
        cx.sc.tiny_conns,
        sent_max / 1024,
        (sent_max * 5) >> 20,
        cx.sc.zero_frag_time.as_secs_f64()
    );
    o.server = format!(
        "{closed}/{} 1-byte-fragment connections closed (slowest {:.1} s from first byte); \
         zero-length fragments: {} MiB ({} fragments) accepted, {}",
        cx.sc.tiny_conns,
        slowest.as_secs_f64(),
        zero_sent >> 20,
        zero_sent / 4,
        match zero_closed {
            Some(d) => format!("closed after {:.1} s", d.as_secs_f64()),
            None => "connection still open".into(),
        }
    );
    if zero_closed.is_none() {
        o.notes.push(format!(
            "an endless stream of zero-length fragments is never cut off ({} fragments in \
             {:.0} s; only a record timeout can end it)",
            zero_sent / 4,
            cx.sc.zero_frag_time.as_secs_f64()
        ));
    }
    o
}

/// Decodes a READDIR/READDIRPLUS reply: (entry count, last cookie, eof).
fn readdir_entries(r: &mut Reader, plus: bool) -> Result<(usize, u64, bool, [u8; 8]), String> {
    ok_status(r, "READDIR")?;
    skip_post_op_attr(r)?;
    let verf = r.opaque_fixed::<8>().map_err(|e| format!("{e:?}"))?;
    let (mut n, mut cookie) = (0, 0);
    let e = |e| format!("entry: {e:?}");
    while r.bool().map_err(e)? {
        n += 1;
        r.u64().map_err(e)?;
        r.opaque(1024).map_err(e)?;
        cookie = r.u64().map_err(e)?;
        if plus {
            skip_post_op_attr(r)?;
            r.optional(|r| r.opaque(64)).map_err(e)?;
        }
    }
    let eof = r.bool().map_err(e)?;
    Ok((n, cookie, eof, verf))
}

/// e. READDIR / READDIRPLUS with count / maxcount u32::MAX on a big directory.
fn attack_readdir(cx: &mut Ctx) -> Outcome {
    let mut o = Outcome::default();
    let setup = (|| -> Result<(NfsFh3, usize), String> {
        let (mut s, root) = cx.mounted()?;
        let mut x = cx.xid();
        let dir = ensure(
            &mut s,
            &mut x,
            &root,
            &format!("hostile-readdir-{}", std::process::id()),
            true,
        )?;
        // Pipelined CREATEs, 32 in flight, long names so the listing is big.
        let names: Vec<String> = (0..cx.sc.dir_entries)
            .map(|i| format!("{i:06}-{}", "n".repeat(248)))
            .collect();
        let mut bad = 0;
        for batch in names.chunks(32) {
            let mut out = Vec::new();
            for n in batch {
                x += 1;
                out.extend_from_slice(&nfs_call(x, &create_call(&dir, n)));
            }
            s.write_all(&out).map_err(|e| format!("send CREATE: {e}"))?;
            for _ in batch {
                let rep = read_record(&mut s).map_err(|e| format!("CREATE reply: {e}"))?;
                if !nfs3_ok(rep) {
                    bad += 1;
                }
            }
        }
        cx.xid = x + 1;
        Ok((dir, bad))
    })();
    let (dir, bad) = match setup {
        Ok(x) => x,
        Err(e) => {
            o.problems.push(format!("setup: {e}"));
            return o;
        }
    };
    if bad > 0 {
        o.problems
            .push(format!("{bad} CREATEs of the directory entries failed"));
    }
    let t_setup = Instant::now();
    let target = cx.args.target;
    let reps = cx.sc.readdir_reps;
    let handles: Vec<_> = (0..cx.sc.readdir_threads)
        .map(|t| {
            let dir = dir.clone();
            thread::spawn(move || -> Result<(usize, usize, Duration, usize), String> {
                let mut s = connect(target).map_err(|e| e.to_string())?;
                s.set_read_timeout(Some(Duration::from_secs(20))).ok();
                let (mut max_len, mut max_entries, mut slowest, mut replies) =
                    (0, 0, Duration::ZERO, 0);
                for i in 0..reps {
                    let xid = 0xd1d0_0000 + (t as u32) * 1000 + i as u32;
                    let plus = i % 2 == 1;
                    let c = if plus {
                        Nfs3Call::Readdirplus {
                            dir: dir.clone(),
                            cookie: 0,
                            cookieverf: [0; 8],
                            dircount: u32::MAX,
                            maxcount: u32::MAX,
                        }
                    } else {
                        Nfs3Call::Readdir {
                            dir: dir.clone(),
                            cookie: 0,
                            cookieverf: [0; 8],
                            count: u32::MAX,
                        }
                    };
                    let t0 = Instant::now();
                    s.write_all(&nfs_call(xid, &c)).map_err(|e| e.to_string())?;
                    let rep = read_record(&mut s).map_err(|e| e.to_string())?;
                    slowest = slowest.max(t0.elapsed());
                    max_len = max_len.max(rep.len());
                    replies += 1;
                    match parse(rep)? {
                        (ReplyHeader::Accepted { stat: 0, .. }, mut r) => {
                            let (n, _, _, _) = readdir_entries(&mut r, plus)?;
                            max_entries = max_entries.max(n);
                        }
                        (h, _) => return Err(format!("{h:?}")),
                    }
                }
                Ok((max_len, max_entries, slowest, replies))
            })
        })
        .collect();
    let (mut max_len, mut max_entries, mut slowest, mut replies) = (0, 0, Duration::ZERO, 0);
    for h in handles {
        match h.join() {
            Ok(Ok((l, e, d, n))) => {
                max_len = max_len.max(l);
                max_entries = max_entries.max(e);
                slowest = slowest.max(d);
                replies += n;
            }
            Ok(Err(e)) => o.problems.push(format!("READDIR u32::MAX: {e}")),
            Err(_) => o.problems.push("READDIR thread panicked".into()),
        }
    }
    if max_len > READDIR_REPLY_LEN_MAX as usize + 4096 {
        o.problems.push(format!(
            "a READDIR reply of {max_len} bytes exceeds the {READDIR_REPLY_LEN_MAX}-byte cap"
        ));
    }
    // A full walk with maxcount u32::MAX reaches every entry and eof.
    let walk = (|| -> Result<(usize, usize), String> {
        let mut s = connect(target).map_err(|e| e.to_string())?;
        let (mut cookie, mut verf, mut total, mut pages) = (0u64, [0u8; 8], 0, 0);
        loop {
            pages += 1;
            if pages > 1000 {
                return Err("no eof after 1000 pages".into());
            }
            let c = Nfs3Call::Readdirplus {
                dir: dir.clone(),
                cookie,
                cookieverf: verf,
                dircount: u32::MAX,
                maxcount: u32::MAX,
            };
            let mut r = nfs(&mut s, 0xd1d1_0000 + pages as u32, &c)?;
            let (n, last, eof, v) = readdir_entries(&mut r, true)?;
            total += n;
            verf = v;
            if eof {
                return Ok((total, pages));
            }
            if n == 0 {
                return Err("page with no entries and no eof".into());
            }
            cookie = last;
        }
    })();
    let walk_s = match walk {
        Ok((total, pages)) => {
            if total < cx.sc.dir_entries + 2 - bad {
                o.problems.push(format!(
                    "full READDIRPLUS walk saw {total} entries, expected {}",
                    cx.sc.dir_entries + 2
                ));
            }
            format!("full walk: {total} entries in {pages} pages")
        }
        Err(e) => {
            o.problems.push(format!("full READDIRPLUS walk: {e}"));
            "full walk failed".into()
        }
    };
    o.sent = format!(
        "directory of {} entries (255-byte names, created pipelined); {} threads x {reps} \
         READDIR count=u32::MAX / READDIRPLUS dircount=maxcount=u32::MAX",
        cx.sc.dir_entries, cx.sc.readdir_threads
    );
    o.server = format!(
        "{replies} replies, largest {} KiB with {max_entries} entries, slowest {} ms; {walk_s} \
         ({:.1} s)",
        max_len / 1024,
        ms(slowest),
        t_setup.elapsed().as_secs_f64()
    );
    o
}

/// f. The same non-idempotent call pipelined many times with one xid; xids descending.
fn attack_xids(cx: &mut Ctx) -> Outcome {
    let mut o = Outcome::default();
    let (mut s, root) = match cx.mounted() {
        Ok(x) => x,
        Err(e) => {
            o.problems.push(format!("setup: {e}"));
            return o;
        }
    };
    s.set_read_timeout(Some(Duration::from_millis(1500))).ok();
    let mut x = cx.xid();
    let base = match ensure(
        &mut s,
        &mut x,
        &root,
        &format!("hostile-xid-{}", std::process::id()),
        true,
    ) {
        Ok(fh) => fh,
        Err(e) => {
            o.problems.push(format!("setup: {e}"));
            return o;
        }
    };
    let copies = cx.sc.dup_copies;
    let (mut dup_replies, mut dup_min, mut dup_max) = (0, usize::MAX, 0);
    for round in 0..cx.sc.dup_rounds {
        x += 1;
        let xid = x;
        let name = format!("dup-{round}-{}", cx.rng.next_u64());
        let rec = nfs_call(xid, &mkdir_call(&base, &name));
        let mut out = Vec::with_capacity(rec.len() * copies);
        for _ in 0..copies {
            out.extend_from_slice(&rec);
        }
        if let Err(e) = s.write_all(&out) {
            o.problems.push(format!("send duplicates: {e}"));
            return o;
        }
        let mut replies: Vec<Vec<u8>> = Vec::new();
        while replies.len() < copies {
            match read_record(&mut s) {
                Ok(r) => replies.push(r),
                Err(e) if is_blocked(&e) => break,
                Err(e) => {
                    o.problems.push(format!("duplicates: connection lost: {e}"));
                    return o;
                }
            }
        }
        dup_replies += replies.len();
        dup_min = dup_min.min(replies.len());
        dup_max = dup_max.max(replies.len());
        if replies.is_empty() {
            o.problems.push(format!(
                "round {round}: no reply to {copies} copies of MKDIR"
            ));
        }
        if replies.iter().any(|r| xid_of(r) != Some(xid)) {
            o.problems
                .push(format!("round {round}: a reply with a foreign xid"));
        }
        let distinct: HashSet<&Vec<u8>> = replies.iter().collect();
        if distinct.len() > 1 {
            // Some copy was executed again (EXIST) instead of replayed.
            o.problems.push(format!(
                "round {round}: {} different replies to one MKDIR retransmitted {copies} times \
                 (the call ran more than once)",
                distinct.len()
            ));
        }
        if let Some(first) = replies.first() {
            if !nfs3_ok(first.clone()) {
                o.problems
                    .push(format!("round {round}: first MKDIR reply is not NFS3_OK"));
            }
        }
    }
    // Descending xids: GETATTRs and distinct MKDIRs, pipelined.
    let n = copies as u32;
    let top = x + 10 * n;
    let mut out = Vec::new();
    let mut want = HashSet::new();
    for i in 0..n {
        let xid = top - i;
        want.insert(xid);
        let c = if i % 2 == 0 {
            Nfs3Call::Getattr(base.clone())
        } else {
            mkdir_call(&base, &format!("desc-{xid}-{}", cx.rng.next_u64()))
        };
        out.extend_from_slice(&nfs_call(xid, &c));
    }
    cx.xid = top + 1;
    let mut got = 0;
    let mut bad = 0;
    if s.write_all(&out).is_ok() {
        while got < n {
            match read_record(&mut s) {
                Ok(r) => {
                    got += 1;
                    let ok = xid_of(&r).is_some_and(|x| want.remove(&x)) && nfs3_ok(r);
                    if !ok {
                        bad += 1;
                    }
                }
                Err(_) => break,
            }
        }
    }
    if got < n || bad > 0 {
        o.problems.push(format!(
            "descending xids: {got}/{n} replies, {bad} unexpected or failed"
        ));
    }
    o.sent = format!(
        "{} rounds of one MKDIR sent {copies} times back to back with the same xid; {n} calls \
         (GETATTR + distinct MKDIRs) with descending xids",
        cx.sc.dup_rounds
    );
    o.server = format!(
        "duplicates: {dup_replies} replies ({dup_min}..{dup_max} per round), all identical \
         replays = {}; descending: {got}/{n} replies, {bad} wrong",
        !o.problems.iter().any(|p| p.contains("different replies"))
    );
    o
}

/// g. Half of a 1 MiB WRITE, then the connection goes away; repeated.
fn attack_midwrite(cx: &mut Ctx) -> Outcome {
    let mut o = Outcome::default();
    let (mut s, root) = match cx.mounted() {
        Ok(x) => x,
        Err(e) => {
            o.problems.push(format!("setup: {e}"));
            return o;
        }
    };
    let mut x = cx.xid();
    let name = format!("hostile-midwrite-{}", std::process::id());
    let fh = match ensure(&mut s, &mut x, &root, &name, false) {
        Ok(fh) => fh,
        Err(e) => {
            o.problems.push(format!("setup: {e}"));
            return o;
        }
    };
    let rec = nfs_call(
        x + 1,
        &Nfs3Call::Write {
            file: fh.clone(),
            offset: 0,
            count: 1 << 20,
            stable: StableHow::FileSync,
            data: Bytes::from(vec![0xeeu8; 1 << 20]),
        },
    );
    let half = &rec[..rec.len() / 2];
    let (mut aborted, mut halfclosed, mut hc_closed, mut failures) = (0, 0, 0, 0);
    let mut hc_slowest = Duration::ZERO;
    for i in 0..cx.sc.midwrite_reps {
        let Ok(mut c) = connect(cx.args.target) else {
            failures += 1;
            continue;
        };
        if c.write_all(half).is_err() {
            failures += 1;
            continue;
        }
        if i % 10 == 9 {
            // Half-close: the server sees EOF inside a record and must close its side.
            halfclosed += 1;
            let _ = c.shutdown(Shutdown::Write);
            if let (Some(d), _) = wait_closed(&mut c, CLOSE_DEADLINE) {
                hc_closed += 1;
                hc_slowest = hc_slowest.max(d);
            }
        } else {
            aborted += 1;
        }
        drop(c);
    }
    thread::sleep(Duration::from_millis(200));
    x += 2;
    let size = nfs(&mut s, x, &Nfs3Call::Getattr(fh.clone())).and_then(|mut r| {
        ok_status(&mut r, "GETATTR")?;
        skip_fattr(&mut r)
    });
    cx.xid = x + 1;
    match &size {
        Ok(0) => {}
        Ok(n) => o.problems.push(format!(
            "file is {n} bytes: a half-received WRITE was applied"
        )),
        Err(e) => o
            .problems
            .push(format!("GETATTR after the aborted WRITEs: {e}")),
    }
    if hc_closed < halfclosed {
        o.problems.push(format!(
            "{} of {halfclosed} half-closed connections with a partial record were not closed",
            halfclosed - hc_closed
        ));
    }
    o.sent = format!(
        "{} times: connect, {} KiB of a {} KiB WRITE record, then close ({aborted}) or \
         shutdown(WR) and wait ({halfclosed})",
        cx.sc.midwrite_reps,
        half.len() / 1024,
        rec.len() / 1024
    );
    o.server = format!(
        "{hc_closed}/{halfclosed} half-closed connections closed by server (slowest {} ms), \
         {failures} connect/send failures, target file size {}",
        ms(hc_slowest),
        size.map(|n| n.to_string()).unwrap_or_else(|e| e)
    );
    o
}

/// h. MOUNT MNT + NULL flood from many threads, pipelined 8 deep.
fn attack_flood(cx: &mut Ctx) -> Outcome {
    let (target, mount_addr) = (cx.args.target, cx.args.mount);
    let dur = cx.sc.flood_time;
    let handles: Vec<_> = (0..cx.sc.flood_threads)
        .map(|t| {
            thread::spawn(move || -> (u64, u64, Option<String>) {
                let on_mount = t % 2 == 0;
                let addr = if on_mount { mount_addr } else { target };
                let mut s = match connect(addr) {
                    Ok(s) => s,
                    Err(e) => return (0, 1, Some(e.to_string())),
                };
                let mnt_args = encode(&mount::MountCall::Mnt(Bytes::from_static(b"/")));
                let mut xid = 0xf100_0000u32 + ((t as u32) << 20);
                let (mut replies, mut errors, mut first) = (0u64, 0u64, None);
                let t0 = Instant::now();
                while t0.elapsed() < dur {
                    let mut out = Vec::new();
                    for k in 0..8 {
                        xid = xid.wrapping_add(1);
                        let body = if on_mount && k % 2 == 0 {
                            call_body(
                                xid,
                                mount::PROGRAM,
                                mount::VERSION,
                                mount::MOUNTPROC3_MNT,
                                root_cred(),
                                &mnt_args,
                            )
                        } else if on_mount {
                            call_body(
                                xid,
                                mount::PROGRAM,
                                mount::VERSION,
                                mount::MOUNTPROC3_NULL,
                                OpaqueAuth::none(),
                                &[],
                            )
                        } else {
                            call_body(
                                xid,
                                v3::PROGRAM,
                                v3::VERSION,
                                proc3::NULL,
                                OpaqueAuth::none(),
                                &[],
                            )
                        };
                        out.extend_from_slice(&framed(&body));
                    }
                    if let Err(e) = s.write_all(&out) {
                        errors += 1;
                        first.get_or_insert(format!("send: {e}"));
                        break;
                    }
                    for _ in 0..8 {
                        match read_record(&mut s)
                            .map_err(|e| e.to_string())
                            .and_then(parse)
                        {
                            Ok((ReplyHeader::Accepted { stat: 0, .. }, _)) => replies += 1,
                            Ok((h, _)) => {
                                errors += 1;
                                first.get_or_insert(format!("{h:?}"));
                            }
                            Err(e) => {
                                errors += 1;
                                first.get_or_insert(e);
                                return (replies, errors, first);
                            }
                        }
                    }
                }
                (replies, errors, first)
            })
        })
        .collect();
    let (mut replies, mut errors, mut first) = (0, 0, None);
    for h in handles {
        match h.join() {
            Ok((r, e, f)) => {
                replies += r;
                errors += e;
                if first.is_none() {
                    first = f;
                }
            }
            Err(_) => errors += 1,
        }
    }
    let mut o = Outcome {
        sent: format!(
            "{} threads for {:.0} s, 8 calls in flight each: MOUNT MNT \"/\" + MOUNT NULL on the \
             mount port, NFS NULL on the NFS port",
            cx.sc.flood_threads,
            dur.as_secs_f64()
        ),
        server: format!(
            "{replies} replies ({:.0}/s), {errors} errors{}",
            replies as f64 / dur.as_secs_f64(),
            first
                .as_ref()
                .map(|f| format!(" (first: {f})"))
                .unwrap_or_default()
        ),
        ..Outcome::default()
    };
    if errors > 0 {
        o.problems.push(format!("{errors} flood calls failed"));
    }
    o
}

/// i. Garbage: random records, truncated headers, bad credentials, unknown programs, raw noise.
fn attack_garbage(cx: &mut Ctx) -> Outcome {
    let mut o = Outcome::default();
    let target = cx.args.target;
    let mut counts: BTreeMap<&'static str, (u32, u32)> = BTreeMap::new(); // kind -> (sent, replies)
    let null_probe = |s: &mut TcpStream, xid: u32| -> Result<(), String> {
        call(s, xid, v3::PROGRAM, 3, proc3::NULL, &[]).map(|_| ())
    };
    // 1. Random-content records, correctly framed; a NULL after every 10 must still work.
    let mut s = match connect(target) {
        Ok(s) => s,
        Err(e) => {
            o.problems.push(format!("connect: {e}"));
            return o;
        }
    };
    s.set_read_timeout(Some(Duration::from_millis(500))).ok();
    let mut reconnects = 0;
    let mut random_replies = 0;
    for i in 0..cx.sc.garbage_records {
        let len = 1 + cx.rng.below(2048) as usize;
        let mut body = vec![0u8; len];
        cx.rng.fill(&mut body);
        if i % 3 == 0 && len >= 8 {
            // A CALL with random rest, so the header decoder goes deeper.
            body[4..8].copy_from_slice(&0u32.to_be_bytes());
            if len >= 12 {
                body[8..12].copy_from_slice(&2u32.to_be_bytes());
            }
        }
        let _ = s.write_all(&framed(&body));
        if i % 10 == 9 {
            let probe = 0x9a00_0000 + i as u32;
            let _ = s.write_all(&framed(&call_body(
                probe,
                v3::PROGRAM,
                3,
                0,
                OpaqueAuth::none(),
                &[],
            )));
            // Replies to garbage (if any) come first, in some order; find the probe's.
            let mut found = false;
            for _ in 0..20 {
                match read_record(&mut s) {
                    Ok(r) if xid_of(&r) == Some(probe) => {
                        found = true;
                        break;
                    }
                    Ok(_) => random_replies += 1,
                    Err(_) => break,
                }
            }
            if !found {
                reconnects += 1;
                match connect(target) {
                    Ok(n) => {
                        s = n;
                        s.set_read_timeout(Some(Duration::from_millis(500))).ok();
                    }
                    Err(e) => {
                        o.problems.push(format!("reconnect: {e}"));
                        return o;
                    }
                }
            }
        }
    }
    counts.insert(
        "random records",
        (cx.sc.garbage_records as u32, random_replies),
    );
    if reconnects > 0 {
        o.notes.push(format!(
            "{reconnects} times a NULL after framed random records went unanswered (connection \
             closed or reply lost)"
        ));
    }
    // 2. Truncated headers: every prefix of a valid call shorter than its header. Silence or
    // an error reply is fine; the connection must stay usable.
    let full = call_body(
        0x7777_0001,
        v3::PROGRAM,
        3,
        proc3::GETATTR,
        root_cred(),
        &[],
    );
    let mut trunc_replies = 0;
    let mut trunc_dead = 0;
    for cut in (0..full.len()).step_by(4) {
        let Ok(mut c) = connect(target) else { continue };
        c.set_read_timeout(Some(Duration::from_millis(500))).ok();
        let _ = c.write_all(&framed(&full[..cut]));
        let _ = c.write_all(&framed(&call_body(
            0x7777_1000,
            v3::PROGRAM,
            3,
            0,
            OpaqueAuth::none(),
            &[],
        )));
        let mut ok = false;
        for _ in 0..3 {
            match read_record(&mut c) {
                Ok(r) if xid_of(&r) == Some(0x7777_1000) => {
                    ok = true;
                    break;
                }
                Ok(_) => trunc_replies += 1,
                Err(_) => break,
            }
        }
        if !ok {
            trunc_dead += 1;
        }
    }
    counts.insert(
        "truncated headers",
        ((full.len() / 4) as u32, trunc_replies),
    );
    if trunc_dead > 0 {
        o.problems.push(format!(
            "{trunc_dead} connections stopped answering after a truncated call header"
        ));
    }
    // 3. Bad credentials and unknown programs: exact replies expected.
    let gids17 = auth_sys((0..17).collect(), b"h");
    let long_name = auth_sys(Vec::new(), &[b'm'; 400]); // body > 400 bytes
    let mut huge_body = OpaqueAuth {
        flavor: rpc::AUTH_SYS,
        body: Bytes::from(vec![0u8; 1000]),
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "AUTH_SYS 17 gids",
            call_body(0x8800_0001, v3::PROGRAM, 3, proc3::NULL, gids17, &[]),
            "auth",
        ),
        (
            "AUTH_SYS 400-byte machine name",
            call_body(0x8800_0002, v3::PROGRAM, 3, proc3::NULL, long_name, &[]),
            "auth",
        ),
        (
            "1000-byte cred body",
            call_body(
                0x8800_0003,
                v3::PROGRAM,
                3,
                proc3::NULL,
                huge_body.clone(),
                &[],
            ),
            "auth",
        ),
        (
            "RPCSEC_GSS flavor",
            {
                huge_body.flavor = 6;
                huge_body.body = Bytes::from_static(&[0; 8]);
                call_body(0x8800_0004, v3::PROGRAM, 3, proc3::NULL, huge_body, &[])
            },
            "auth",
        ),
        (
            "cred length 0xffffffff",
            {
                let mut b = call_body(
                    0x8800_0005,
                    v3::PROGRAM,
                    3,
                    proc3::NULL,
                    OpaqueAuth::none(),
                    &[],
                );
                b[28..32].copy_from_slice(&u32::MAX.to_be_bytes());
                b
            },
            "auth",
        ),
        (
            "program 200999",
            call_body(0x8800_0006, 200_999, 1, 0, root_cred(), &[]),
            "prog_unavail",
        ),
        (
            "program 0",
            call_body(0x8800_0007, 0, 0, 0, root_cred(), &[]),
            "prog_unavail",
        ),
        (
            "portmap (not served)",
            call_body(0x8800_0008, 100_000, 2, 0, root_cred(), &[]),
            "prog_unavail",
        ),
        (
            "NFS v5",
            call_body(0x8800_0009, v3::PROGRAM, 5, 0, root_cred(), &[]),
            "prog_mismatch",
        ),
        (
            "NFS proc 999",
            call_body(0x8800_000a, v3::PROGRAM, 3, 999, root_cred(), &[]),
            "proc_unavail",
        ),
        (
            "rpcvers 3",
            {
                let mut b = call_body(0x8800_000b, v3::PROGRAM, 3, 0, root_cred(), &[]);
                b[8..12].copy_from_slice(&3u32.to_be_bytes());
                b
            },
            "rpc_mismatch",
        ),
    ];
    let mut exact = 0;
    let ncases = cases.len();
    for (label, body, want) in cases {
        let res = connect(target)
            .map_err(|e| e.to_string())
            .and_then(|mut c| {
                c.write_all(&framed(&body)).map_err(|e| e.to_string())?;
                let rep = read_record(&mut c).map_err(|e| e.to_string())?;
                let h = parse(rep)?.0;
                let ok = matches!(
                    (want, &h),
                    ("auth", ReplyHeader::AuthError { .. })
                        | (
                            "rpc_mismatch",
                            ReplyHeader::RpcMismatch {
                                low: 2,
                                high: 2,
                                ..
                            }
                        )
                        | ("prog_unavail", ReplyHeader::Accepted { stat: 1, .. })
                        | ("prog_mismatch", ReplyHeader::Accepted { stat: 2, .. })
                        | ("proc_unavail", ReplyHeader::Accepted { stat: 3, .. })
                );
                if !ok {
                    return Err(format!("got {h:?}"));
                }
                null_probe(&mut c, 0x8800_1000)
            });
        match res {
            Ok(()) => exact += 1,
            Err(e) => o.problems.push(format!("{label}: expected {want}: {e}")),
        }
    }
    counts.insert("bad auth / unknown programs", (ncases as u32, exact));
    // 4. Raw noise without framing: the connection should be closed quickly.
    let mut noise_closed = 0;
    let noise_reps = 10;
    let mut noise_slowest = Duration::ZERO;
    for _ in 0..noise_reps {
        let Ok(mut c) = connect(target) else { continue };
        let mut buf = vec![0u8; 64 * 1024];
        cx.rng.fill(&mut buf);
        let _ = c.write_all(&buf);
        if let (Some(d), _) = wait_closed(&mut c, CLOSE_DEADLINE) {
            noise_closed += 1;
            noise_slowest = noise_slowest.max(d);
        }
    }
    counts.insert("64 KiB raw noise", (noise_reps, noise_closed));
    if noise_closed < noise_reps {
        o.notes.push(format!(
            "{} of {noise_reps} connections sending 64 KiB of unframed noise still open after \
             {CLOSE_DEADLINE:?}",
            noise_reps - noise_closed
        ));
    }
    o.sent = format!(
        "{} framed random records (NULL probe every 10), {} truncated call headers, {ncases} \
         bad-credential / unknown-program calls, {noise_reps} x 64 KiB unframed noise",
        cx.sc.garbage_records,
        full.len() / 4
    );
    o.server = format!(
        "random: {random_replies} replies, {reconnects} probes lost; truncated: {trunc_replies} \
         replies, {} connections kept working; {exact}/{ncases} exact RFC 5531 replies; noise: \
         {noise_closed}/{noise_reps} closed (slowest {} ms)",
        full.len() / 4 - trunc_dead,
        ms(noise_slowest)
    );
    o
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

type Attack = fn(&mut Ctx) -> Outcome;

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let sc = Scale::new(args.kind);
    let attacks: [(char, &'static str, Attack); 9] = [
        ('a', "idle connections", attack_idle),
        ('b', "slowloris", attack_slowloris),
        ('c', "4 GiB fragment header", attack_huge_fragment),
        ('d', "tiny fragment flood", attack_tiny_fragments),
        ('e', "READDIR maxcount u32::MAX", attack_readdir),
        ('f', "duplicate/reordered xids", attack_xids),
        ('g', "disconnect mid-WRITE", attack_midwrite),
        ('h', "MNT/NULL flood", attack_flood),
        ('i', "garbage", attack_garbage),
    ];
    println!(
        "sluice-hostile: target {} (mount {}), pid {}, scale {:?}",
        args.target,
        args.mount,
        args.pid
            .map(|p| p.to_string())
            .unwrap_or_else(|| "-".into()),
        args.kind
    );
    if let Err(e) = server_alive(&args) {
        println!("server not reachable before the first attack: {e}");
        return ExitCode::from(1);
    }
    let sh = Arc::new(Shared::new());
    let wb = {
        let sh = sh.clone();
        let a = (args.target, args.mount);
        thread::spawn(move || well_behaved(a, sh))
    };
    let sampler = {
        let sh = sh.clone();
        let pid = args.pid;
        thread::spawn(move || rss_sampler(pid, sh))
    };
    let t_ready = Instant::now();
    while !sh.ready.load(Ordering::Relaxed) && t_ready.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_millis(20));
    }
    // A baseline second of well-behaved traffic (phase 0).
    thread::sleep(Duration::from_secs(1));
    let mut cx = Ctx {
        args: &args,
        sc,
        rng: XorShift::new(0x5eed ^ u64::from(std::process::id())),
        xid: 0x4000_0000 | (std::process::id() & 0xffff) << 8,
    };
    let mut rows = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let mut dead = false;
    let mut all_samples: Vec<Duration> = Vec::new();
    for (i, (key, name, attack)) in attacks.iter().enumerate() {
        if args.only.as_ref().is_some_and(|o| !o.contains(*key)) {
            continue;
        }
        let phase = i + 1;
        let rss_before = rss_kib(args.pid);
        sh.phase.store(phase, Ordering::Relaxed);
        let t0 = Instant::now();
        let out = attack(&mut cx);
        let secs = t0.elapsed().as_secs_f64();
        // Let the server settle (closed connections torn down) before measuring "after".
        thread::sleep(Duration::from_millis(500));
        sh.phase.store(0, Ordering::Relaxed);
        let rss_after = rss_kib(args.pid);
        let peak = match sh.rss_peak[phase].load(Ordering::Relaxed) {
            0 => None,
            k => Some(k),
        };
        let alive = server_alive(&args);
        let mut samples = sh
            .samples
            .lock()
            .map(|s| s[phase].clone())
            .unwrap_or_default();
        samples.sort();
        all_samples.extend_from_slice(&samples);
        let errs = sh
            .errors
            .lock()
            .map(|e| e[phase].clone())
            .unwrap_or_default();
        let (p50, p99, max) = (
            percentile(&samples, 0.5),
            percentile(&samples, 0.99),
            samples.last().copied().unwrap_or_default(),
        );
        let mut problems = out.problems.clone();
        if let Err(e) = &alive {
            problems.push(format!("SERVER DOWN after attack: {e}"));
            dead = true;
        }
        if !errs.is_empty() {
            problems.push(format!(
                "well-behaved client: {} errors (first: {})",
                errs.len(),
                errs[0]
            ));
        }
        if samples.is_empty() {
            problems.push("well-behaved client completed no call during the attack".into());
        }
        if let Some(max) = args.rss_max_kib {
            match peak.or(rss_after) {
                None => problems.push("server RSS could not be read (--rss-max-mib)".into()),
                Some(k) if k > max => problems.push(format!(
                    "server RSS peaked at {} MiB > {} MiB",
                    k / 1024,
                    max / 1024
                )),
                Some(_) => {}
            }
        }
        if p99 > args.p99_max {
            problems.push(format!(
                "well-behaved client p99 {} ms > {} ms",
                ms(p99),
                args.p99_max.as_millis()
            ));
        }
        let verdict = if !problems.is_empty() {
            "FAIL"
        } else if !out.notes.is_empty() {
            "note"
        } else {
            "ok"
        };
        println!("\n[{key}] {name} ({secs:.1} s) {verdict}");
        println!("    sent:   {}", out.sent);
        println!("    server: {}", out.server);
        println!(
            "    rss:    {} -> peak {} -> {} MiB",
            mib(rss_before),
            mib(peak),
            mib(rss_after)
        );
        println!(
            "    client: {} calls, p50 {} ms, p99 {} ms, max {} ms, {} errors",
            samples.len(),
            ms(p50),
            ms(p99),
            ms(max),
            errs.len()
        );
        for n in &out.notes {
            println!("    note:   {n}");
        }
        for p in &problems {
            println!("    FAIL:   {p}");
            failures.push(format!("[{key}] {p}"));
        }
        rows.push(Row {
            key: *key,
            name,
            secs,
            rss: (rss_before, peak, rss_after),
            ops: samples.len(),
            p50,
            p99,
            max,
            errors: errs.len(),
            verdict,
        });
        if dead {
            break;
        }
    }
    sh.stop.store(true, Ordering::Relaxed);
    let _ = wb.join();
    let _ = sampler.join();
    let base_errs = sh.errors.lock().map(|e| e[0].clone()).unwrap_or_default();
    if !base_errs.is_empty() {
        failures.push(format!(
            "well-behaved client: {} errors between attacks (first: {})",
            base_errs.len(),
            base_errs[0]
        ));
    }

    println!("\nSUMMARY  target {}  scale {:?}", args.target, args.kind);
    println!(
        "{:<30} {:>6} {:>22} {:>7} {:>8} {:>8} {:>8} {:>5}  result",
        "attack",
        "secs",
        "rss MiB before/peak/after",
        "calls",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errs"
    );
    for r in &rows {
        println!(
            "{:<30} {:>6.1} {:>22} {:>7} {:>8} {:>8} {:>8} {:>5}  {}",
            format!("{} {}", r.key, r.name),
            r.secs,
            format!("{}/{}/{}", mib(r.rss.0), mib(r.rss.1), mib(r.rss.2)),
            r.ops,
            ms(r.p50),
            ms(r.p99),
            ms(r.max),
            r.errors,
            r.verdict
        );
    }
    all_samples.sort();
    println!(
        "well-behaved client overall: {} calls during attacks, p50 {} ms, p99 {} ms, max {} ms; \
         server {}",
        all_samples.len(),
        ms(percentile(&all_samples, 0.5)),
        ms(percentile(&all_samples, 0.99)),
        ms(all_samples.last().copied().unwrap_or_default()),
        if dead { "DIED" } else { "alive" }
    );
    if let Some(pid) = args.pid {
        if let Ok(st) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(l) = st.lines().find(|l| l.starts_with("VmHWM:")) {
                println!(
                    "server peak RSS (VmHWM): {}",
                    l.trim_start_matches("VmHWM:").trim()
                );
            }
        }
    }
    if failures.is_empty() {
        println!("RESULT: PASS");
        ExitCode::SUCCESS
    } else {
        println!("RESULT: FAIL ({} problems)", failures.len());
        for f in &failures {
            println!("  {f}");
        }
        ExitCode::from(1)
    }
}
