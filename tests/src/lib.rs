//! Harness for the end-to-end tests in `tests/tests/`: runs the real `sluice` binary on
//! loopback ([`Sluice`]) and talks to it with a small blocking ONC RPC client ([`RpcClient`])
//! built on the `nfs-proto` codecs. Results are encode-only in `nfs-proto`, so the decoders for
//! the reply bodies the tests need live here.
//!
//! The binary is found next to the test executable (`<target>/<profile>/sluice`) after running
//! `cargo build -p nfs-server --bin sluice` once per test process with the same target dir, so
//! a plain `cargo test --workspace` on a clean checkout works. `SLUICE_BIN` overrides this.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use nfs_proto::mount::{self, MountCall};
use nfs_proto::rpc::{self, AuthSys, OpaqueAuth, ReplyHeader};
use nfs_proto::v3::{self, CreateHow3, DirOpArgs3, Nfs3Call, NfsFh3, Sattr3, StableHow};
use nfs_proto::xdr::{Encode, Reader, Writer};

pub use nfs_proto;

/// How long a server may take to say "sluice ready".
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Socket read/write timeout of [`RpcClient`].
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest reply record the client accepts.
const REPLY_LEN_MAX: usize = 8 << 20;

/// nfsstat3 values the tests compare against.
pub mod nfsstat {
    pub const OK: u32 = 0;
    pub const PERM: u32 = 1;
    pub const NOENT: u32 = 2;
    pub const ACCES: u32 = 13;
    pub const EXIST: u32 = 17;
    pub const NOTDIR: u32 = 20;
    pub const ROFS: u32 = 30;
    pub const STALE: u32 = 70;
    pub const BADHANDLE: u32 = 10001;
    pub const BAD_COOKIE: u32 = 10003;
    pub const JUKEBOX: u32 = 10008;
}

/// accept_stat values.
pub mod accept {
    pub const SUCCESS: u32 = 0;
    pub const PROG_UNAVAIL: u32 = 1;
    pub const PROG_MISMATCH: u32 = 2;
    pub const PROC_UNAVAIL: u32 = 3;
    pub const GARBAGE_ARGS: u32 = 4;
}

// ---------------------------------------------------------------------------------------------
// Locating (and building) the binary
// ---------------------------------------------------------------------------------------------

/// The `sluice` binary, built once per test process.
pub fn sluice_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(build_sluice)
}

fn build_sluice() -> PathBuf {
    if let Some(p) = std::env::var_os("SLUICE_BIN") {
        return PathBuf::from(p);
    }
    build_bin("nfs-server", "sluice")
}

/// Builds binary `bin` of workspace package `package` with the target dir and profile of the
/// running test executable, and returns its path.
pub fn build_bin(package: &str, bin: &str) -> PathBuf {
    // A test executable lives in <target>/<profile>/deps/<name>-<hash>.
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable is not in <target>/<profile>/deps");
    let target_dir = profile_dir
        .parent()
        .expect("no target dir above the profile dir");
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug")
        .to_string();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .arg("--target-dir")
        .arg(target_dir)
        .stdin(Stdio::null());
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let status = cmd.status().expect("cannot run cargo");
    assert!(status.success(), "cargo build of {bin} failed: {status}");
    let path = profile_dir.join(bin);
    assert!(
        path.exists(),
        "{} missing after cargo build",
        path.display()
    );
    path
}

/// A port that was free on 127.0.0.1 a moment ago.
///
/// The port is free when this returns, not reserved: the kernel may hand it out again. A port
/// is never returned twice to one test process, so two ports asked for one server (its NFS
/// and admin ports, say) cannot collide, which made a server start without its admin API.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        if GIVEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------------------------

/// How to start a server.
#[derive(Clone, Debug)]
pub struct Options {
    /// TOML written to `<tempdir>/sluice.toml` and passed with `--config`.
    pub config: Option<String>,
    /// `--memory`.
    pub memory: bool,
    /// `--portmap` value.
    pub portmap: String,
    /// SLUICE_LOG.
    pub log: String,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            config: None,
            memory: false,
            portmap: "off".into(),
            log: "info".into(),
        }
    }
}

/// A running `sluice serve` on loopback with a private data dir; killed on drop.
pub struct Sluice {
    child: Option<Child>,
    dir: tempfile::TempDir,
    opts: Options,
    pub nfs: SocketAddr,
    pub mount: SocketAddr,
    starts: u32,
}

impl Sluice {
    /// The default local (durable) store, default export.
    pub fn start() -> Sluice {
        Sluice::start_with(Options::default())
    }

    /// `--memory`, default export.
    pub fn start_memory() -> Sluice {
        Sluice::start_with(Options {
            memory: true,
            ..Options::default()
        })
    }

    /// With a configuration file (listen addresses and data dir still come from the command
    /// line, which overrides the file).
    pub fn start_config(toml: &str) -> Sluice {
        Sluice::start_with(Options {
            config: Some(toml.to_string()),
            ..Options::default()
        })
    }

    pub fn start_with(opts: Options) -> Sluice {
        let mut s = Sluice::prepare(opts);
        s.spawn();
        s
    }

    /// Several servers started at once (the nodes of one cluster, which become ready only
    /// when a majority of them runs); each waits for "sluice ready".
    pub fn start_together(opts: Vec<Options>) -> Vec<Sluice> {
        let mut all: Vec<Sluice> = opts.into_iter().map(Sluice::prepare).collect();
        for s in &mut all {
            s.launch();
        }
        for s in &mut all {
            if let Err(log) = s.wait_ready() {
                panic!("sluice exited before ready:\n{log}");
            }
        }
        all
    }

    fn prepare(opts: Options) -> Sluice {
        let dir = tempfile::Builder::new()
            .prefix("sluice-test-")
            .tempdir()
            .expect("tempdir");
        let nfs = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut mount = SocketAddr::from(([127, 0, 0, 1], free_port()));
        while mount == nfs {
            mount = SocketAddr::from(([127, 0, 0, 1], free_port()));
        }
        Sluice {
            child: None,
            dir,
            opts,
            nfs,
            mount,
            starts: 0,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The scratch directory holding the data dir, config and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self, n: u32) -> PathBuf {
        self.dir.path().join(format!("stderr.{n}.log"))
    }

    /// stderr of the current (or last) server process.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path(self.starts)).unwrap_or_default()
    }

    /// Starts the process and waits for "sluice ready". A port we picked may be probed by
    /// another test's [`free_port`] at the wrong moment: a bind failure is retried (bounded).
    fn spawn(&mut self) {
        for attempt in 1..=5 {
            match self.spawn_once() {
                Ok(()) => return,
                Err(log) if attempt < 5 && log.contains("cannot listen") => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(log) => panic!("sluice exited before ready:\n{log}"),
            }
        }
    }

    fn spawn_once(&mut self) -> Result<(), String> {
        self.launch();
        self.wait_ready()
    }

    /// Starts the process, without waiting for it.
    fn launch(&mut self) {
        self.starts += 1;
        let log = File::create(self.log_path(self.starts)).expect("create log file");
        let mut cmd = Command::new(sluice_bin());
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen")
            .arg(self.nfs.to_string())
            .arg("--mount-listen")
            .arg(self.mount.to_string())
            .arg("--portmap")
            .arg(&self.opts.portmap);
        if self.opts.memory {
            cmd.arg("--memory");
        }
        if let Some(cfg) = &self.opts.config {
            let p = self.dir.path().join("sluice.toml");
            std::fs::write(&p, cfg).expect("write config");
            cmd.arg("--config").arg(p);
        }
        cmd.env("SLUICE_LOG", &self.opts.log)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = cmd.spawn().expect("spawn sluice");
        self.child = Some(child);
    }

    /// `Err(log)` if the process exited before it was ready.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.log().contains("sluice ready") {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!("({status})\n{}", self.log()));
            }
            if Instant::now() > deadline {
                panic!("sluice not ready within {READY_TIMEOUT:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the process again, expecting it to exit before it is ready: returns its log.
    pub fn start_expecting_failure(&mut self) -> String {
        match self.spawn_once() {
            Ok(()) => panic!(
                "sluice started, but it should have refused:\n{}",
                self.log()
            ),
            Err(log) => log,
        }
    }

    /// SIGKILL: no shutdown path runs, nothing is flushed.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same data dir and ports (killing first if still running).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// The server's process id (for signals).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Rewrites the configuration file in place and sends SIGHUP (a live reload).
    pub fn reload_config(&mut self, toml: &str) {
        std::fs::write(self.dir.path().join("sluice.toml"), toml).expect("write config");
        self.opts.config = Some(toml.to_string());
        let pid = self.pid().expect("server running");
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -HUP {pid} failed");
    }

    /// Replaces the configuration used by the next [`Sluice::restart`].
    pub fn set_config(&mut self, toml: &str) {
        self.opts.config = Some(toml.to_string());
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// A client on the NFS port with AUTH_SYS root credentials.
    pub fn client(&self) -> RpcClient {
        RpcClient::connect(self.nfs).expect("connect to sluice")
    }

    /// A client on the NFS port with the root of export `path` mounted.
    pub fn mounted(&self, path: &str) -> (RpcClient, NfsFh3) {
        let mut c = self.client();
        let root = c.mnt(path).unwrap_or_else(|s| panic!("MNT {path}: {s}"));
        (c, root)
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "---- sluice stderr ({}) ----\n{}",
                self.log_path(self.starts).display(),
                self.log()
            );
        }
    }
}

/// Runs `sluice <args>` to completion (bounded): (exit success, stdout, stderr).
pub fn run_sluice(args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new(sluice_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sluice");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait().expect("wait sluice") {
            Some(_) => break,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("sluice {args:?} did not exit within 10 s");
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    let out = child.wait_with_output().expect("sluice output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------------------------------------
// RPC client
// ---------------------------------------------------------------------------------------------

/// Credentials sent with each call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    None,
    Sys { uid: u32, gid: u32, gids: Vec<u32> },
}

impl Auth {
    pub fn root() -> Auth {
        Auth::user(0, 0)
    }

    pub fn user(uid: u32, gid: u32) -> Auth {
        Auth::Sys {
            uid,
            gid,
            gids: Vec::new(),
        }
    }

    pub fn opaque(&self) -> OpaqueAuth {
        match self {
            Auth::None => OpaqueAuth::none(),
            Auth::Sys { uid, gid, gids } => {
                let mut w = Writer::new();
                AuthSys {
                    stamp: 1,
                    machine_name: Bytes::from_static(b"sluice-tests"),
                    uid: *uid,
                    gid: *gid,
                    gids: gids.clone(),
                }
                .encode(&mut w);
                OpaqueAuth {
                    flavor: rpc::AUTH_SYS,
                    body: w.into_bytes(),
                }
            }
        }
    }
}

/// Attributes (fattr3) as the tests need them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fattr {
    pub ftype: u32,
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub fsid: u64,
    pub fileid: u64,
}

/// A successful WRITE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteRes {
    pub count: u32,
    pub committed: u32,
    pub verf: [u8; 8],
}

/// One READDIR / READDIRPLUS entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub fileid: u64,
    pub name: String,
    pub cookie: u64,
    pub attr: Option<Fattr>,
    pub fh: Option<NfsFh3>,
}

/// One READDIR / READDIRPLUS page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirPage {
    pub cookieverf: [u8; 8],
    pub entries: Vec<Entry>,
    pub eof: bool,
}

/// Result of an NFS procedure: `Err` is the nfsstat3.
pub type NfsResult<T> = Result<T, u32>;

/// A blocking ONC RPC client over one TCP connection.
pub struct RpcClient {
    stream: TcpStream,
    next_xid: u32,
    pub auth: Auth,
}

impl RpcClient {
    pub fn connect(addr: SocketAddr) -> std::io::Result<RpcClient> {
        RpcClient::from_stream(TcpStream::connect_timeout(&addr, IO_TIMEOUT)?)
    }

    /// Connects from a chosen local address (e.g. 127.0.0.3), so one test can play several
    /// client hosts on loopback.
    pub fn connect_from(source: std::net::IpAddr, addr: SocketAddr) -> std::io::Result<RpcClient> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.bind(&SocketAddr::new(source, 0).into())?;
        socket.connect_timeout(&addr.into(), IO_TIMEOUT)?;
        RpcClient::from_stream(socket.into())
    }

    pub fn from_stream(stream: TcpStream) -> std::io::Result<RpcClient> {
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        // Distinct xid ranges per connection, so retransmission tests choose xids on purpose.
        static SEED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        let seed = SEED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(RpcClient {
            stream,
            next_xid: (std::process::id() << 20) ^ (seed << 12),
            auth: Auth::root(),
        })
    }

    pub fn with_auth(mut self, auth: Auth) -> RpcClient {
        self.auth = auth;
        self
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    pub fn next_xid(&mut self) -> u32 {
        self.next_xid = self.next_xid.wrapping_add(1);
        self.next_xid
    }

    /// A call record body (no record mark).
    pub fn encode_call(&self, xid: u32, prog: u32, vers: u32, proc_: u32, args: &[u8]) -> Vec<u8> {
        rpc::call_record(xid, prog, vers, proc_, self.auth.opaque(), args).to_vec()
    }

    /// Writes raw bytes to the socket.
    pub fn send_raw(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(b)
    }

    /// Sends one record in a single fragment.
    pub fn send_record(&mut self, body: &[u8]) -> std::io::Result<()> {
        let mut v = Vec::with_capacity(body.len() + 4);
        v.extend_from_slice(&rpc::record_mark(body.len()));
        v.extend_from_slice(body);
        self.stream.write_all(&v)
    }

    /// Reads one record (gathering fragments).
    pub fn read_record(&mut self) -> std::io::Result<Bytes> {
        let mut out = Vec::new();
        for _ in 0..1024 {
            let mut h = [0u8; 4];
            self.stream.read_exact(&mut h)?;
            let h = u32::from_be_bytes(h);
            let len = (h & 0x7fff_ffff) as usize;
            if out.len() + len > REPLY_LEN_MAX {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("reply fragment of {len} bytes"),
                ));
            }
            let start = out.len();
            out.resize(start + len, 0);
            self.stream.read_exact(&mut out[start..])?;
            if h & 0x8000_0000 != 0 {
                return Ok(Bytes::from(out));
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "more than 1024 fragments",
        ))
    }

    /// Sends a call with the given xid and returns the whole reply record.
    pub fn call_xid(
        &mut self,
        xid: u32,
        prog: u32,
        vers: u32,
        proc_: u32,
        args: &[u8],
    ) -> std::io::Result<Bytes> {
        let body = self.encode_call(xid, prog, vers, proc_, args);
        self.send_record(&body)?;
        let rec = self.read_record()?;
        let got = rec
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        if got != Some(xid) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("reply xid {got:?}, expected {xid}"),
            ));
        }
        Ok(rec)
    }

    /// Sends a call with a fresh xid; panics on transport errors.
    pub fn call(&mut self, prog: u32, vers: u32, proc_: u32, args: &[u8]) -> Bytes {
        let xid = self.next_xid();
        self.call_xid(xid, prog, vers, proc_, args)
            .unwrap_or_else(|e| panic!("RPC {prog}/{vers}/{proc_} failed: {e}"))
    }

    /// A call that must be accepted with SUCCESS: a reader at the results.
    pub fn call_ok(&mut self, prog: u32, vers: u32, proc_: u32, args: &[u8]) -> Reader {
        let rec = self.call(prog, vers, proc_, args);
        let (h, r) = parse_reply(rec);
        match h {
            ReplyHeader::Accepted { stat: 0, .. } => r,
            other => panic!("RPC {prog}/{vers}/{proc_}: {other:?}"),
        }
    }

    /// An NFSv3 call that must be accepted: a reader at the results.
    pub fn nfs(&mut self, call: &Nfs3Call) -> Reader {
        let args = encode(call);
        self.call_ok(v3::PROGRAM, v3::VERSION, call.proc_(), &args)
    }

    /// Like [`RpcClient::nfs`], but a transport failure (the server died, the connection
    /// closed) is an `Err` instead of a panic, for tests that kill the server under the client.
    /// Any other surprise (a reply that is not SUCCESS, or does not decode) still panics.
    pub fn try_nfs(&mut self, call: &Nfs3Call) -> std::io::Result<Reader> {
        let args = encode(call);
        let xid = self.next_xid();
        let rec = self.call_xid(xid, v3::PROGRAM, v3::VERSION, call.proc_(), &args)?;
        let (h, r) = parse_reply(rec);
        match h {
            ReplyHeader::Accepted { stat: 0, .. } => Ok(r),
            other => panic!("NFSv3 procedure {}: {other:?}", call.proc_()),
        }
    }

    /// WRITE, with transport failures as `Err` (see [`RpcClient::try_nfs`]).
    pub fn try_write(
        &mut self,
        fh: &NfsFh3,
        offset: u64,
        data: &[u8],
        stable: StableHow,
    ) -> std::io::Result<NfsResult<WriteRes>> {
        let mut r = self.try_nfs(&Nfs3Call::Write {
            file: fh.clone(),
            offset,
            count: data.len() as u32,
            stable,
            data: Bytes::copy_from_slice(data),
        })?;
        Ok(write_res(&mut r))
    }

    /// COMMIT of the whole file, with transport failures as `Err`.
    pub fn try_commit(&mut self, fh: &NfsFh3) -> std::io::Result<NfsResult<[u8; 8]>> {
        let mut r = self.try_nfs(&Nfs3Call::Commit {
            file: fh.clone(),
            offset: 0,
            count: 0,
        })?;
        Ok(commit_res(&mut r))
    }

    // -- MOUNT ----------------------------------------------------------------------------------

    /// MOUNTPROC3_MNT: the root handle, or the mountstat3.
    pub fn mnt(&mut self, path: &str) -> NfsResult<NfsFh3> {
        let args = encode(&MountCall::Mnt(Bytes::copy_from_slice(path.as_bytes())));
        let mut r = self.call_ok(mount::PROGRAM, mount::VERSION, mount::MOUNTPROC3_MNT, &args);
        status(&mut r)?;
        let fh = r.opaque(64).expect("mnt fh");
        Ok(NfsFh3(fh))
    }

    // -- NFSv3 ----------------------------------------------------------------------------------

    pub fn getattr(&mut self, fh: &NfsFh3) -> NfsResult<Fattr> {
        let mut r = self.nfs(&Nfs3Call::Getattr(fh.clone()));
        status(&mut r)?;
        Ok(fattr3(&mut r))
    }

    pub fn setattr(&mut self, fh: &NfsFh3, attr: Sattr3) -> NfsResult<()> {
        let mut r = self.nfs(&Nfs3Call::Setattr {
            object: fh.clone(),
            attr,
            guard: None,
        });
        status(&mut r)
    }

    pub fn lookup(&mut self, dir: &NfsFh3, name: &str) -> NfsResult<NfsFh3> {
        let mut r = self.nfs(&Nfs3Call::Lookup(place(dir, name)));
        status(&mut r)?;
        Ok(NfsFh3(r.opaque(64).expect("lookup fh")))
    }

    /// GUARDED create, mode 0644.
    pub fn create(&mut self, dir: &NfsFh3, name: &str) -> NfsResult<NfsFh3> {
        self.create_how(
            dir,
            name,
            CreateHow3::Guarded(Sattr3 {
                mode: Some(0o644),
                ..Sattr3::default()
            }),
        )
    }

    pub fn create_how(&mut self, dir: &NfsFh3, name: &str, how: CreateHow3) -> NfsResult<NfsFh3> {
        let mut r = self.nfs(&Nfs3Call::Create {
            place: place(dir, name),
            how,
        });
        created(&mut r)
    }

    pub fn mkdir(&mut self, dir: &NfsFh3, name: &str) -> NfsResult<NfsFh3> {
        let mut r = self.nfs(&Nfs3Call::Mkdir {
            place: place(dir, name),
            attr: Sattr3 {
                mode: Some(0o755),
                ..Sattr3::default()
            },
        });
        created(&mut r)
    }

    pub fn write(
        &mut self,
        fh: &NfsFh3,
        offset: u64,
        data: &[u8],
        stable: StableHow,
    ) -> NfsResult<WriteRes> {
        let mut r = self.nfs(&Nfs3Call::Write {
            file: fh.clone(),
            offset,
            count: data.len() as u32,
            stable,
            data: Bytes::copy_from_slice(data),
        });
        write_res(&mut r)
    }

    /// COMMIT of the whole file: the write verifier.
    pub fn commit(&mut self, fh: &NfsFh3) -> NfsResult<[u8; 8]> {
        let mut r = self.nfs(&Nfs3Call::Commit {
            file: fh.clone(),
            offset: 0,
            count: 0,
        });
        commit_res(&mut r)
    }

    /// READ: (data, eof).
    pub fn read(&mut self, fh: &NfsFh3, offset: u64, count: u32) -> NfsResult<(Bytes, bool)> {
        let mut r = self.nfs(&Nfs3Call::Read {
            file: fh.clone(),
            offset,
            count,
        });
        status(&mut r)?;
        post_op_attr(&mut r);
        let n = r.u32().expect("read count");
        let eof = r.bool().expect("read eof");
        let data = r.opaque(64 << 20).expect("read data");
        assert_eq!(
            n as usize,
            data.len(),
            "READ count differs from data length"
        );
        Ok((data, eof))
    }

    /// The whole file, in 64 KiB READs (at most 1024 of them).
    pub fn read_all(&mut self, fh: &NfsFh3) -> NfsResult<Vec<u8>> {
        let mut out = Vec::new();
        for _ in 0..1024 {
            let (d, eof) = self.read(fh, out.len() as u64, 64 * 1024)?;
            out.extend_from_slice(&d);
            if eof {
                return Ok(out);
            }
            assert!(!d.is_empty(), "READ returned no data and no eof");
        }
        panic!("file larger than 64 MiB or READ never reports eof");
    }

    pub fn remove(&mut self, dir: &NfsFh3, name: &str) -> NfsResult<()> {
        let mut r = self.nfs(&Nfs3Call::Remove(place(dir, name)));
        status(&mut r)
    }

    pub fn rmdir(&mut self, dir: &NfsFh3, name: &str) -> NfsResult<()> {
        let mut r = self.nfs(&Nfs3Call::Rmdir(place(dir, name)));
        status(&mut r)
    }

    pub fn rename(&mut self, from: &NfsFh3, a: &str, to: &NfsFh3, b: &str) -> NfsResult<()> {
        let mut r = self.nfs(&Nfs3Call::Rename {
            from: place(from, a),
            to: place(to, b),
        });
        status(&mut r)
    }

    pub fn readdir(
        &mut self,
        dir: &NfsFh3,
        cookie: u64,
        cookieverf: [u8; 8],
        count: u32,
    ) -> NfsResult<DirPage> {
        let mut r = self.nfs(&Nfs3Call::Readdir {
            dir: dir.clone(),
            cookie,
            cookieverf,
            count,
        });
        dir_page(&mut r, false)
    }

    pub fn readdirplus(
        &mut self,
        dir: &NfsFh3,
        cookie: u64,
        cookieverf: [u8; 8],
        dircount: u32,
        maxcount: u32,
    ) -> NfsResult<DirPage> {
        let mut r = self.nfs(&Nfs3Call::Readdirplus {
            dir: dir.clone(),
            cookie,
            cookieverf,
            dircount,
            maxcount,
        });
        dir_page(&mut r, true)
    }

    /// Every entry of a directory, READDIR pages of `count` bytes (at most 10000 pages).
    pub fn list_dir(&mut self, dir: &NfsFh3, count: u32) -> NfsResult<Vec<Entry>> {
        let (mut cookie, mut verf, mut out) = (0u64, [0u8; 8], Vec::new());
        for _ in 0..10_000 {
            let page = self.readdir(dir, cookie, verf, count)?;
            verf = page.cookieverf;
            if let Some(last) = page.entries.last() {
                cookie = last.cookie;
            }
            let empty = page.entries.is_empty();
            out.extend(page.entries);
            if page.eof {
                return Ok(out);
            }
            assert!(!empty, "READDIR page with no entries and no eof");
        }
        panic!("READDIR did not reach eof within 10000 pages");
    }
}

/// Encodes any XDR value.
pub fn encode<T: Encode>(v: &T) -> Vec<u8> {
    let mut w = Writer::new();
    v.encode(&mut w);
    w.into_bytes().to_vec()
}

pub fn place(dir: &NfsFh3, name: &str) -> DirOpArgs3 {
    DirOpArgs3 {
        dir: dir.clone(),
        name: Bytes::copy_from_slice(name.as_bytes()),
    }
}

// ---------------------------------------------------------------------------------------------
// Reply decoders
// ---------------------------------------------------------------------------------------------

/// WRITE3res after the RPC header.
fn write_res(r: &mut Reader) -> NfsResult<WriteRes> {
    status(r)?;
    wcc_data(r);
    let count = r.u32().expect("write count");
    let committed = r.u32().expect("write committed");
    let verf = r.opaque_fixed::<8>().expect("write verf");
    Ok(WriteRes {
        count,
        committed,
        verf,
    })
}

/// COMMIT3res after the RPC header: the write verifier.
fn commit_res(r: &mut Reader) -> NfsResult<[u8; 8]> {
    status(r)?;
    wcc_data(r);
    Ok(r.opaque_fixed::<8>().expect("commit verf"))
}

/// Splits a reply record into its header and a reader at the results.
pub fn parse_reply(rec: Bytes) -> (ReplyHeader, Reader) {
    let mut r = Reader::new(rec);
    let h = rpc::decode_reply(&mut r).expect("undecodable RPC reply");
    (h, r)
}

/// The nfsstat3 (or mountstat3) that starts every result: `Err(status)` unless OK.
pub fn status(r: &mut Reader) -> NfsResult<()> {
    match r.u32().expect("status") {
        0 => Ok(()),
        s => Err(s),
    }
}

pub fn fattr3(r: &mut Reader) -> Fattr {
    let mut u = || r.u32().expect("fattr3");
    let (ftype, mode, nlink, uid, gid) = (u(), u(), u(), u(), u());
    let size = r.u64().expect("fattr3 size");
    let _used = r.u64().expect("fattr3 used");
    let _rdev = (r.u32().expect("rdev"), r.u32().expect("rdev"));
    let fsid = r.u64().expect("fattr3 fsid");
    let fileid = r.u64().expect("fattr3 fileid");
    for _ in 0..6 {
        r.u32().expect("fattr3 times");
    }
    Fattr {
        ftype,
        mode,
        nlink,
        uid,
        gid,
        size,
        fsid,
        fileid,
    }
}

pub fn post_op_attr(r: &mut Reader) -> Option<Fattr> {
    r.optional(|r| Ok(fattr3(r))).expect("post_op_attr")
}

/// wcc_data: returns the after attributes.
pub fn wcc_data(r: &mut Reader) -> Option<Fattr> {
    let _before = r
        .optional(|r| {
            r.u64()?;
            for _ in 0..4 {
                r.u32()?;
            }
            Ok(())
        })
        .expect("pre_op_attr");
    post_op_attr(r)
}

/// CREATE / MKDIR / SYMLINK / MKNOD results.
fn created(r: &mut Reader) -> NfsResult<NfsFh3> {
    status(r)?;
    let fh = r
        .optional(|r| r.opaque(64))
        .expect("post_op_fh3")
        .expect("CREATE returned no handle");
    Ok(NfsFh3(fh))
}

fn dir_page(r: &mut Reader, plus: bool) -> NfsResult<DirPage> {
    status(r)?;
    post_op_attr(r);
    let cookieverf = r.opaque_fixed::<8>().expect("cookieverf");
    let mut entries = Vec::new();
    while r.bool().expect("value_follows") {
        assert!(entries.len() < 100_000, "runaway READDIR reply");
        let fileid = r.u64().expect("fileid");
        let name = r.opaque(1024).expect("name");
        let cookie = r.u64().expect("cookie");
        let (attr, fh) = if plus {
            let a = post_op_attr(r);
            let fh = r.optional(|r| r.opaque(64)).expect("name_handle");
            (a, fh.map(NfsFh3))
        } else {
            (None, None)
        };
        entries.push(Entry {
            fileid,
            name: String::from_utf8_lossy(&name).into_owned(),
            cookie,
            attr,
            fh,
        });
    }
    let eof = r.bool().expect("eof");
    Ok(DirPage {
        cookieverf,
        entries,
        eof,
    })
}

// ---------------------------------------------------------------------------------------------
// Deterministic pseudo-random numbers
// ---------------------------------------------------------------------------------------------

/// xorshift64*: deterministic, no dependency.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}
