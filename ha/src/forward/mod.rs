//! Any node serves any export: the store a cluster node runs its NFS front ends on.
//!
//! The metadata log's leader is the one writer of the file system's metadata: its engine is
//! the only one that writes, so the engine's caches (inodes, names, the inode counter), which
//! are valid only for a single writer, stay valid without a coherence protocol of our own.
//! Every other node ships each `Store` call to the leader over the log's authenticated
//! transport ([`wire`], frames of [`crate::metalog::rpc`]) and answers its client with the
//! leader's answer. NFS clients cannot be redirected, so the node they mounted answers them,
//! whoever leads.
//!
//! * **Becoming the writer.** When this node becomes leader in term T it first waits until it
//!   has applied everything committed before T (`Raft::ensure_linearizable`), then builds its
//!   engine (the first time) or makes it drop what it cached in an earlier term
//!   (`Engine::resume`), and only then ties the log's batches to T
//!   (`RaftMeta::set_writer_term`): a batch from a view older than T is refused.
//! * **Linearizable reads.** A read answered by the leader's engine is preceded by a read
//!   barrier (`ensure_linearizable`: a heartbeat round confirms that no other leader was
//!   elected), shared by every read that arrived before the round started, or falls within
//!   the lease of the latest such round: [`crate::metalog::READ_LEASE`] after it started, in
//!   the same term, while no vote request has reached this node (openraft's followers refuse
//!   votes for 600 ms after hearing from their leader; the leader does not, so a vote request
//!   ends its lease). A cluster of one needs none. Followers keep no metadata caches, so they
//!   have nothing to keep coherent.
//! * **When no leader is known** (an election, a partitioned minority) a call waits up to
//!   [`ROUTE_WAIT`] and then answers `Unavailable` (NFS3ERR_JUKEBOX / NFS4ERR_DELAY): clients
//!   stall and retry, never see a split brain. A shipped call that got no answer is retried on
//!   the next leader.
//! * **At most once.** A mutating call (setattr, create, remove, rmdir, rename, link) runs as a
//!   request with an id that is the same on every try; each batch it commits records the id in
//!   the state machine (`MetaOp::NoteRequest`). A retry that finds the id recorded (the dying
//!   leader ran it and could not answer) is answered from the state the call left instead of
//!   running again, so the client never sees EEXIST or ENOENT for its own create or remove.
//!   Records expire 60 s after the call (by the sending node's clock).
//! * **The write verifier** a follower reports is the leader's, carried in every answer, so it
//!   changes whenever the leader (and with it the engine holding UNSTABLE state) changes.
//! * **File data** lives where the writing engine placed it: on the leader of the term in which
//!   the file was created and on `copies - 1` other nodes. Any later leader reaches the copies
//!   with data calls ([`ClusterData`]); reads go on from the other copies while one is down.

pub mod data;
pub mod fence;
pub mod wire;

pub use self::data::{
    domain_key, ClusterData, CopiesPass, RebuildProgress, ScrubCursor, ScrubState, ScrubStep,
    SCRUB_DOC,
};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use backend::engine::{DataStore, Engine, MetaStore, RequestId};
use backend::{
    AccessMask, Attr, CreateMode, Cred, DirPage, Error, FileId, FsStat, NodeKind, ReadResult,
    Residency, Result, SetAttr, Stability, Store, Timestamp, Wcc, WriteResult,
};
use bytes::Bytes;
use openraft::ServerState;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::metalog::net::{self, CallFuture, Calls};
use crate::metalog::rpc::Kind;
use crate::metalog::RaftMeta;

pub use self::wire::TargetEpoch;
use self::wire::{Answer, Call};

tokio::task_local! {
    /// The floating target whose client the calls of this task serve ([`on_target`]).
    static ON_TARGET: TargetEpoch;
    /// The client's call that the calls of this task serve ([`for_client_call`]).
    static CLIENT_CALL: ClientCall;
}

/// A client's non-idempotent call, named as every node that gets a try of it names it (see
/// [`for_client_call`]).
pub struct ClientCall {
    /// [`RequestId::FROM_CLIENT`] with a hash of the client's address and port and of the
    /// call's arguments.
    node: u64,
    /// The xid and procedure, shifted to leave [`CALL_INDEX_BITS`] for the store call's index.
    seq: u64,
    /// How many mutating store calls this client call made so far.
    index: AtomicU64,
}

/// Bits of a client-named request's `seq` that count the store calls of one client call.
const CALL_INDEX_BITS: u32 = 24;

impl ClientCall {
    /// The call `xid` (procedure `proc_`, arguments `args` as sent) from `client`. The hash
    /// is FNV-1a: the same on every node and build.
    pub fn new(client: std::net::SocketAddr, xid: u32, proc_: u32, args: &[u8]) -> ClientCall {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        match client.ip().to_canonical() {
            std::net::IpAddr::V4(a) => eat(&a.octets()),
            std::net::IpAddr::V6(a) => eat(&a.octets()),
        }
        eat(&client.port().to_be_bytes());
        eat(args);
        ClientCall {
            node: RequestId::FROM_CLIENT | (h >> 1),
            seq: (u64::from(xid) << 32) | (u64::from(proc_ & 0xff) << CALL_INDEX_BITS),
            index: AtomicU64::new(0),
        }
    }

    /// The id of this client call's next mutating store call, stamped `secs`.
    fn next(&self, secs: u64) -> RequestId {
        let index = self.index.fetch_add(1, Ordering::Relaxed) & ((1 << CALL_INDEX_BITS) - 1);
        RequestId {
            secs,
            node: self.node,
            seq: self.seq | index,
        }
    }
}

/// Runs `f` (an NFSv3 call's calls on a [`ClusterStore`]) for the client's call `call`: each
/// mutating store call it makes runs as a request named by the client's call, the same on
/// every node, so a retransmission that reaches another node (the target moved, its owner
/// died) after the first try ran is answered from the state that try left instead of
/// running twice (a REMOVE retransmitted after a takeover gets OK, not NOENT).
/// `ha/PROTOCOL.md` §7.6.
pub async fn for_client_call<F: std::future::Future>(call: ClientCall, f: F) -> F::Output {
    CLIENT_CALL.scope(call, f).await
}

/// Runs `f` (calls on a [`ClusterStore`]) on behalf of floating target `t` as its owner at
/// `t.epoch`: every call of `f` that changes anything carries the tag to the writer, which
/// refuses it once a later owner fenced the target ([`ClusterStore::fence_at`]).
pub async fn on_target<F: std::future::Future>(t: TargetEpoch, f: F) -> F::Output {
    ON_TARGET.scope(t, f).await
}

/// The tag of the calls of this task, if they serve a floating target.
fn current_target() -> Option<TargetEpoch> {
    ON_TARGET.try_with(Clone::clone).ok()
}

/// How long a call waits for a leader (an election takes 0.3-0.6 s) before it answers
/// `Unavailable` and the client retries.
pub const ROUTE_WAIT: Duration = Duration::from_secs(5);
/// How long a file-system call shipped to the leader may take before this node gives up on it
/// and the client retries: a leader that cannot answer in this time is cut off or gone.
const SHIP_TIMEOUT: Duration = ROUTE_WAIT;
/// How long a data call may take at the holder (a sync of a large file included).
const DATA_CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a data write may take at the holder: a copy whose node takes longer is taken
/// out of the file's layout (`data::ClusterData`), so writes go on with the other copies.
const DATA_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Idle connections kept per leader address.
const IDLE_CONNECTIONS_MAX: usize = 32;

/// An engine the cluster layer can make current again after other leaders wrote.
pub trait Writer: Store {
    /// Drops what was cached, re-reads the counters, changes the write verifier; `before`
    /// runs once that is done, before any call can use the engine again.
    fn resume(&self, before: &mut dyn FnMut()) -> Result<()>;
    /// One pass of the rebuild of copies lost with nodes that left, and of copies a read
    /// found bad ([`data::restore_copies`]; `scan`: look for lost copies too).
    fn restore_copies(&self, scan: bool) -> Result<CopiesPass>;
    /// Whether reads queued repairs.
    fn repairs_pending(&self) -> bool;
    /// Whether copies wait to leave their layouts (their node did not answer a change).
    fn drops_pending(&self) -> bool;
    /// One step of the background scrub from `cursor`, a second's worth at the engine's
    /// rate ([`data::scrub`]); `None` while scrubbing is off.
    fn scrub(&self, cursor: &mut ScrubCursor) -> Option<Result<ScrubStep>>;
    /// The least time from the start of one scrub pass to the start of the next.
    fn scrub_every(&self) -> Duration;
    /// The rebuild pass under way (all zero between passes).
    fn rebuild_progress(&self) -> RebuildProgress;
}

impl<M: MetaStore, D: DataStore> Writer for Engine<M, ClusterData<D>> {
    fn resume(&self, before: &mut dyn FnMut()) -> Result<()> {
        // Layouts may have changed while another node wrote (a rebuild).
        self.data().forget_layouts();
        Engine::resume(self, before)
    }
    fn restore_copies(&self, scan: bool) -> Result<CopiesPass> {
        data::restore_copies(self, scan)
    }
    fn repairs_pending(&self) -> bool {
        self.data().repairs_pending()
    }
    fn drops_pending(&self) -> bool {
        self.data().drops_pending()
    }
    fn scrub(&self, cursor: &mut ScrubCursor) -> Option<Result<ScrubStep>> {
        let (rate, _) = self.data().scrub_settings();
        (rate > 0).then(|| data::scrub(self, cursor, rate))
    }
    fn scrub_every(&self) -> Duration {
        self.data().scrub_settings().1
    }
    fn rebuild_progress(&self) -> RebuildProgress {
        self.data().rebuild_progress()
    }
}

/// Builds this node's engine the first time it leads (then the state machine has everything
/// committed before, the root included); called again on the next leadership if it failed.
pub type Factory<E> = Box<dyn FnMut() -> Result<E> + Send>;

enum Route<'a, E> {
    Local(&'a E),
    Remote(String),
}

/// Read barriers in flight: a read waits for a round that started after it arrived, unless
/// the lease of an earlier round still runs.
#[derive(Default)]
struct Barrier {
    started: u64,
    done: u64,
    running: bool,
    /// The term, start and vote count (`RaftMeta::votes_seen`) of the latest round a quorum
    /// acknowledged: reads need no round until [`crate::metalog::READ_LEASE`] after that
    /// start, in that term, while no vote request has arrived since.
    lease: crate::metalog::ReadLease,
}

/// The `Store` of a cluster node (a single node is a cluster of one, and runs this too).
pub struct ClusterStore<E> {
    meta: Arc<RaftMeta>,
    node: u64,
    engine: std::sync::OnceLock<E>,
    factory: Mutex<Factory<E>>,
    /// The term whose leadership the local engine serves (0: none yet).
    serving: watch::Sender<u64>,
    /// The last write verifier a leader reported (used while this node does not lead).
    verifier: AtomicU64,
    peers: Arc<Peers>,
    /// This node's data store, for the data calls of the writing engine on another node.
    held: Option<Arc<dyn HeldData>>,
    barrier: Mutex<Barrier>,
    barrier_done: watch::Sender<u64>,
    root: std::sync::OnceLock<FileId>,
    /// Calls this node shipped to a leader, and calls it answered for other nodes.
    shipped: AtomicU64,
    answered: AtomicU64,
    /// The next request number this node gives a mutating call (starts at the boot time in
    /// nanoseconds, so a restarted node never gives a number twice).
    next_request: AtomicU64,
    /// Requests the local engine is running now: a retry that overtakes its first try
    /// waits for it instead of running the call a second time.
    running: Mutex<std::collections::HashSet<RequestId>>,
    /// Retried calls answered from the state their first run left.
    replayed: AtomicU64,
    /// When this process started (ns since 1970): the boot id data answers carry.
    boot: u64,
    /// The newest writer term seen in a data call, and data calls refused as older.
    data_epoch: AtomicU64,
    fenced: AtomicU64,
    /// While this node writes: each floating target's floor and the tagged calls running
    /// ([`fence`]); woken when one of those calls ends. Calls refused below a floor.
    fences: Mutex<fence::Fences>,
    fence_left: tokio::sync::Notify,
    target_fenced: AtomicU64,
    /// The rebuild of lost copies, while this node writes: copies made and their bytes, and
    /// what the last pass left degraded or failed.
    copies: Mutex<CopiesTotals>,
}

#[derive(Default)]
struct CopiesTotals {
    /// The scrub: bytes checked (every copy counted), bytes of copies it could not check,
    /// ranges found bad, passes ended.
    scrub_bytes: u64,
    scrub_skipped: u64,
    scrub_bad: u64,
    scrub_passes: u64,
    repaired: u64,
    dropped: u64,
    restored: u64,
    bytes: u64,
    last: CopiesPass,
    passes: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<E: Writer> ClusterStore<E> {
    /// The store of node `meta.node()`: answers calls shipped from other nodes, and becomes
    /// the writer whenever this node leads. Returns once some node serves the metadata (this
    /// one or a leader it can reach), with `factory` used the first time this node leads.
    /// `held` is this node's data store, which answers the data calls of whichever node
    /// writes (see [`ClusterData`]); `peers` is shared with the engine's [`ClusterData`].
    pub async fn start(
        meta: Arc<RaftMeta>,
        peers: Arc<Peers>,
        held: Option<Arc<dyn HeldData>>,
        factory: Factory<E>,
    ) -> std::result::Result<Arc<ClusterStore<E>>, String> {
        let boot = unix_nanos();
        let store = Arc::new(ClusterStore {
            boot,
            data_epoch: AtomicU64::new(0),
            fenced: AtomicU64::new(0),
            fences: Mutex::default(),
            fence_left: tokio::sync::Notify::new(),
            target_fenced: AtomicU64::new(0),
            copies: Mutex::default(),
            node: meta.node(),
            meta: Arc::clone(&meta),
            engine: std::sync::OnceLock::new(),
            factory: Mutex::new(factory),
            serving: watch::Sender::new(0),
            verifier: AtomicU64::new(0),
            peers,
            held,
            barrier: Mutex::new(Barrier::default()),
            barrier_done: watch::Sender::new(0),
            root: std::sync::OnceLock::new(),
            shipped: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            next_request: AtomicU64::new(boot),
            running: Mutex::default(),
            replayed: AtomicU64::new(0),
        });
        let handler: Arc<dyn Calls> = Arc::clone(&store) as Arc<dyn Calls>;
        meta.serve_calls(Arc::downgrade(&handler));
        drop(handler);
        tokio::spawn(lead(Arc::downgrade(&store)));
        tokio::spawn(rebuild(Arc::downgrade(&store)));
        tokio::spawn(scrub(Arc::downgrade(&store)));
        // The root is the one FileId every front end needs before its first call.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match store.fetch_root().await {
                Ok(root) => {
                    let _ = store.root.set(root);
                    return Ok(store);
                }
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(format!("no node serves the metadata: {e}"));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The engine, while this node leads and has made it current.
    fn local(&self) -> Option<&E> {
        let serving = *self.serving.borrow();
        (serving != 0 && self.meta.leading() == Some(serving))
            .then(|| self.engine.get())
            .flatten()
    }

    /// The engine, while this node leads a cluster of one: a mutating call may run on it
    /// directly. In a larger cluster it runs as a request ([`ClusterStore::dispatch`]), so
    /// that a leadership lost while it commits cannot make its retry run it twice.
    fn alone(&self) -> Option<&E> {
        self.local().filter(|_| self.meta.voters() <= 1)
    }

    /// The engine, while this node leads and has made it current, and for a read only once a
    /// read barrier confirmed the leadership; `None`: the call goes to the leader.
    async fn here(&self, reads: bool) -> Option<&E> {
        let engine = self.local()?;
        if reads && self.read_barrier().await.is_err() {
            return None;
        }
        Some(engine)
    }

    /// The root's id: the engine's when local, else asked of the leader (an attribute call on
    /// inode 1 that reports the root's generation).
    async fn fetch_root(&self) -> Result<FileId> {
        let deadline = tokio::time::Instant::now() + ROUTE_WAIT;
        match self.route(false, deadline).await? {
            Route::Local(e) => Ok(e.root()),
            Route::Remote(addr) => {
                match self.ship(&addr, &Call::Getattr(ROOT_PROBE), None).await? {
                    Answer::Attr(attr) => Ok(attr.id),
                    Answer::Failed(e) => Err(e),
                    other => Err(mismatch(&other)),
                }
            }
        }
    }

    /// Where a call goes now: the local engine (after a read barrier for reads, on a cluster
    /// of more than one), or the leader's address. Waits until `deadline` for a leader (one
    /// deadline for a call's every try, so a call waits [`ROUTE_WAIT`] in all, not per try).
    async fn route(&self, reads: bool, deadline: tokio::time::Instant) -> Result<Route<'_, E>> {
        let mut metrics = self.meta.raft().metrics();
        let mut serving = self.serving.subscribe();
        loop {
            if let Some(engine) = self.here(reads).await {
                return Ok(Route::Local(engine));
            }
            // Another node, never this one: a leader whose read barrier failed waits here.
            let leader = {
                let m = metrics.borrow_and_update();
                m.current_leader
                    .filter(|&l| l != self.node && m.state != ServerState::Leader)
                    .and_then(|l| m.membership_config.membership().get_node(&l).cloned())
            };
            if let Some(node) = leader {
                return Ok(Route::Remote(node.addr));
            }
            let wait = async {
                tokio::select! {
                    r = metrics.changed() => r.is_ok(),
                    r = serving.changed() => r.is_ok(),
                    () = tokio::time::sleep(Duration::from_millis(50)) => true,
                }
            };
            match tokio::time::timeout_at(deadline, wait).await {
                Ok(true) => {}
                Ok(false) | Err(_) => return Err(Error::Unavailable),
            }
        }
    }

    /// Confirms that this node still leads: one heartbeat round, shared by every read that
    /// arrived before it started. A cluster of one has no one else to ask.
    async fn read_barrier(&self) -> Result<()> {
        if self.meta.voters() <= 1 {
            return Ok(());
        }
        let term = *self.serving.borrow();
        let target = {
            let b = lock(&self.barrier);
            if b.lease
                .holds(term, self.meta.votes_seen(), tokio::time::Instant::now())
            {
                return Ok(());
            }
            b.started + 1
        };
        let mut done = self.barrier_done.subscribe();
        loop {
            let round = {
                let mut b = lock(&self.barrier);
                if b.done >= target {
                    return Ok(());
                }
                if b.running {
                    None
                } else {
                    b.running = true;
                    b.started += 1;
                    Some(b.started)
                }
            };
            match round {
                Some(round) => {
                    // Before the round: its heartbeats leave after this instant.
                    let votes = self.meta.votes_seen();
                    let began = tokio::time::Instant::now();
                    let r = self.meta.raft().ensure_linearizable().await;
                    {
                        let mut b = lock(&self.barrier);
                        b.running = false;
                        if r.is_ok() {
                            b.done = round;
                            b.lease.renew(term, began, votes);
                        }
                    }
                    self.barrier_done.send_replace(round);
                    if r.is_err() {
                        return Err(Error::Unavailable);
                    }
                }
                None => {
                    if done.changed().await.is_err() {
                        return Err(Error::Unavailable);
                    }
                }
            }
        }
    }

    /// Ships `call` (run as `request`) to the leader at `addr`, keeping the verifier it
    /// reports.
    async fn ship(&self, addr: &str, call: &Call, request: Option<RequestId>) -> Result<Answer> {
        self.shipped.fetch_add(1, Ordering::Relaxed);
        let envelope = wire::Envelope {
            request,
            epoch: None,
            target: gated(call).then(current_target).flatten(),
        };
        let (verifier, answer) = self.peers.call_with(addr, call, envelope).await?;
        self.verifier
            .store(u64::from_be_bytes(verifier), Ordering::Relaxed);
        Ok(answer)
    }

    /// Runs `call` where the metadata is written: here when this node leads, else at the
    /// leader, re-routed while no leader answers, up to [`ROUTE_WAIT`].
    ///
    /// A mutating call runs as a request ([`RequestId`]) on every try: if a leader ran it and
    /// could not answer (it died, or lost its leadership while committing), the next leader
    /// finds it recorded in the log and answers from the state it left, instead of running
    /// it twice (a second create would fail with EEXIST, a second remove with ENOENT).
    async fn dispatch(&self, call: Call) -> Result<Answer> {
        let deadline = tokio::time::Instant::now() + ROUTE_WAIT;
        let named = call
            .once()
            .then(|| {
                CLIENT_CALL
                    .try_with(|c| c.next(unix_nanos() / 1_000_000_000))
                    .ok()
            })
            .flatten();
        let request = named.or_else(|| call.once().then(|| self.request_id()));
        // Until a try may have run somewhere, the log cannot hold the request; one named by
        // the client's call may have run on any node already (a retransmission).
        let mut tried = named.is_some();
        loop {
            match self.route(call.reads(), deadline).await? {
                Route::Local(engine) if matches!(call, Call::FenceTarget(_)) => {
                    let Call::FenceTarget(t) = call else {
                        unreachable!()
                    };
                    return Ok(self.raise_fence(engine, t).await);
                }
                Route::Local(engine) if request.is_none() => {
                    let tag = gated(&call).then(current_target).flatten();
                    let _admitted = match self.admit(engine, tag).await {
                        Ok(admitted) => admitted,
                        Err(e) => return Ok(Answer::Failed(e)),
                    };
                    return Ok(execute(engine, call).await);
                }
                Route::Local(engine) => {
                    let tag = gated(&call).then(current_target).flatten();
                    let answer = match self.admit(engine, tag).await {
                        Ok(_admitted) => self.run(engine, call.clone(), request, tried).await,
                        Err(e) => Answer::Failed(e),
                    };
                    tried = true;
                    match answer {
                        // This node lost its leadership while the batch committed: the next
                        // leader may still commit it. Ask that one, under the same request.
                        Answer::Failed(Error::Unavailable)
                            if request.is_some()
                                && self.local().is_none()
                                && tokio::time::Instant::now() < deadline =>
                        {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        answer => return Ok(answer),
                    }
                }
                Route::Remote(addr) => {
                    tried = true;
                    match self.ship(&addr, &call, request).await {
                        // A leader that just lost its leadership refuses: ask the next one.
                        Ok(Answer::Failed(Error::Unavailable))
                            if tokio::time::Instant::now() < deadline =>
                        {
                            tracing::debug!(
                                ?request,
                                addr,
                                "the leader refused a call; trying again"
                            );
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Ok(answer) => return Ok(answer),
                        Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                        Err(e) => {
                            tracing::debug!(?request, addr, error = %e, "a shipped call got no answer; trying again");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }
        }
    }
}

impl<E: Writer> ClusterStore<E> {
    /// A request id no call of any node had or will have.
    fn request_id(&self) -> RequestId {
        RequestId {
            secs: unix_nanos() / 1_000_000_000,
            node: self.node,
            seq: self.next_request.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Runs `call` on the local engine, as `request` when it has one: a request the log
    /// already records (run by an earlier leader) is answered from the state it left; one
    /// this engine is running is waited for first. `tried`: an earlier try may have run (here
    /// or under another leader); a first try needs neither the wait nor the look-up.
    async fn run(&self, engine: &E, call: Call, request: Option<RequestId>, tried: bool) -> Answer {
        // An id on a call that may run twice anyway is ignored (a peer of another build).
        let Some(id) = request.filter(|_| call.once()) else {
            return execute(engine, call).await;
        };
        if !tried {
            // A fresh id: nothing can have run it, and no other try of it exists yet.
            return backend::engine::on_behalf_of(id, execute(engine, call)).await;
        }
        let deadline = tokio::time::Instant::now() + ROUTE_WAIT;
        // Tries of a client-named call carry the clock of the node that took each: the same
        // call whatever its `secs`.
        let key = if id.from_client() {
            RequestId { secs: 0, ..id }
        } else {
            id
        };
        loop {
            if lock(&self.running).insert(key) {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Answer::Failed(Error::Unavailable);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        struct Running<'a>(&'a Mutex<std::collections::HashSet<RequestId>>, RequestId);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                lock(self.0).remove(&self.1);
            }
        }
        let _running = Running(&self.running, key);
        match self.meta.request_ran(id) {
            Ok(true) => {
                self.replayed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(?id, "a retried call ran before: answered from its state");
                replay(engine, call).await
            }
            Ok(false) => backend::engine::on_behalf_of(id, execute(engine, call)).await,
            Err(e) => Answer::Failed(e),
        }
    }
}

fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The answer to a mutating call that ran already (under an earlier leader, whose answer was
/// lost): what it left, read now. Its "before" attributes are the present ones, so a client
/// that cached the object's attributes from before the call drops them.
async fn replay<S: Store>(store: &S, call: Call) -> Answer {
    let wcc = |r: Result<Attr>| {
        r.map(|after| Wcc {
            before: (&after).into(),
            after,
        })
    };
    let answer = async {
        Ok(match call {
            Call::Setattr { id, .. } => Answer::Wcc(wcc(store.getattr(id).await)?),
            Call::Create {
                cred, dir, name, ..
            }
            | Call::Link {
                cred, dir, name, ..
            } => {
                let made = store.lookup(&cred, dir, &name).await?;
                Answer::Made(made, wcc(store.getattr(dir).await)?)
            }
            Call::Remove { dir, .. } | Call::Rmdir { dir, .. } => {
                Answer::Wcc(wcc(store.getattr(dir).await)?)
            }
            Call::Rename {
                from_dir, to_dir, ..
            } => Answer::Renamed(
                wcc(store.getattr(from_dir).await)?,
                wcc(store.getattr(to_dir).await)?,
            ),
            other => execute(store, other).await,
        })
    };
    answer.await.unwrap_or_else(Answer::Failed)
}

/// Connections to the other nodes, for shipped calls and data calls: a pool of idle
/// connections per address, each call on a connection of its own while it runs.
pub struct Peers {
    meta: Arc<RaftMeta>,
    idle: Mutex<HashMap<String, Vec<TcpStream>>>,
}

impl Peers {
    pub fn new(meta: Arc<RaftMeta>) -> Arc<Peers> {
        Arc::new(Peers {
            meta,
            idle: Mutex::new(HashMap::new()),
        })
    }

    /// The inter-node address of `node`, from the log's membership.
    pub fn addr_of(&self, node: u64) -> Option<String> {
        let metrics = self.meta.raft().metrics();
        let m = metrics.borrow();
        m.membership_config
            .membership()
            .get_node(&node)
            .map(|n| n.addr.clone())
    }

    /// Sends `call` to the node at `addr` and returns its answer and write verifier.
    /// `Unavailable` when the node cannot be reached or does not answer in time. A call given
    /// up on is reset, not closed: nothing of it still queued on this side reaches the node
    /// later (after a partition heals, say) and runs there after the client was told to retry.
    pub async fn call(&self, addr: &str, call: &Call) -> Result<([u8; 8], Answer)> {
        self.call_as(addr, call, None).await
    }

    /// [`Peers::call`] of a call that runs as `request` at the other end.
    pub async fn call_as(
        &self,
        addr: &str,
        call: &Call,
        request: Option<RequestId>,
    ) -> Result<([u8; 8], Answer)> {
        let envelope = wire::Envelope {
            request,
            epoch: None,
            target: None,
        };
        self.call_with(addr, call, envelope).await
    }

    /// [`Peers::call`] of a data call sent by the writing engine of `term`: the node refuses
    /// it (`Fenced`) once it has seen a newer term.
    pub async fn call_in_term(
        &self,
        addr: &str,
        call: &Call,
        term: u64,
    ) -> Result<([u8; 8], Answer)> {
        let envelope = wire::Envelope {
            request: None,
            epoch: Some(term),
            target: None,
        };
        self.call_with(addr, call, envelope).await
    }

    async fn call_with(
        &self,
        addr: &str,
        call: &Call,
        envelope: wire::Envelope,
    ) -> Result<([u8; 8], Answer)> {
        let timeout = match call {
            Call::DataWrite { .. } => DATA_WRITE_TIMEOUT,
            c if c.is_data() => DATA_CALL_TIMEOUT,
            _ => SHIP_TIMEOUT,
        };
        let key = self.meta.key().ok_or(Error::Unavailable)?;
        let (body, data) = wire::encode_shipped(call, envelope);
        let pooled = lock(&self.idle).get_mut(addr).and_then(Vec::pop);
        let mut conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
                    .await
                    .map_err(|_| Error::Unavailable)?
                    .map_err(|_| Error::Unavailable)?;
                let _ = conn.set_nodelay(true);
                conn
            }
        };
        let exchange = async {
            net::write_frame(&mut conn, key, Kind::Call, &body, data.as_ref()).await?;
            net::read_frame(&mut conn, key).await
        };
        let (kind, reply) = match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                tracing::warn!(addr, error = %e, "a call to another node failed");
                reset(&conn);
                return Err(Error::Unavailable);
            }
            Err(_) => {
                tracing::warn!(
                    addr,
                    ?timeout,
                    "a call to another node got no answer in time"
                );
                reset(&conn);
                return Err(Error::Unavailable);
            }
        };
        if kind != Kind::Reply {
            return Err(Error::Io("a node answered with a request".into()));
        }
        let answer = wire::decode_answer(Bytes::from(reply))
            .map_err(|e| Error::Io(format!("another node's answer: {e}")))?;
        let mut idle = lock(&self.idle);
        match idle.get_mut(addr) {
            Some(pool) if pool.len() >= IDLE_CONNECTIONS_MAX => {}
            Some(pool) => pool.push(conn),
            None => {
                idle.insert(addr.to_string(), vec![conn]);
            }
        }
        Ok(answer)
    }
}

/// Makes dropping `conn` reset it (SO_LINGER 0), discarding what it has not sent yet.
fn reset(conn: &TcpStream) {
    // Deprecated because a non-zero linger blocks the dropping thread; a zero one resets at
    // once and never blocks.
    #[allow(deprecated)]
    let _ = conn.set_linger(Some(Duration::ZERO));
}

/// The data store of this node as the data calls of other nodes see it.
pub trait HeldData: Send + Sync + 'static {
    fn read(&self, ino: u64, offset: u64, len: usize) -> Result<Bytes>;
    fn write_at(&self, ino: u64, offset: u64, data: &[u8]) -> Result<()>;
    fn set_len(&self, ino: u64, len: u64) -> Result<()>;
    fn sync(&self, ino: u64) -> Result<()>;
    fn remove(&self, ino: u64) -> Result<()>;
    fn residency(&self, ino: u64, size: u64) -> Result<Residency>;
    fn verify(&self, ino: u64, offset: u64, len: usize) -> Result<Option<String>>;
    fn stats(&self) -> Vec<(&'static str, u64)>;
}

impl<D: DataStore> HeldData for D {
    fn read(&self, ino: u64, offset: u64, len: usize) -> Result<Bytes> {
        DataStore::read(self, ino, offset, len)
    }
    fn write_at(&self, ino: u64, offset: u64, data: &[u8]) -> Result<()> {
        DataStore::write_at(self, ino, offset, data)
    }
    fn set_len(&self, ino: u64, len: u64) -> Result<()> {
        DataStore::set_len(self, ino, len)
    }
    fn sync(&self, ino: u64) -> Result<()> {
        DataStore::sync(self, ino)
    }
    fn remove(&self, ino: u64) -> Result<()> {
        DataStore::remove(self, ino)
    }
    fn residency(&self, ino: u64, size: u64) -> Result<Residency> {
        DataStore::residency(self, ino, size)
    }
    fn verify(&self, ino: u64, offset: u64, len: usize) -> Result<Option<String>> {
        DataStore::verify(self, ino, offset, len)
    }
    fn stats(&self) -> Vec<(&'static str, u64)> {
        DataStore::stats(self)
    }
}

/// Answers a data call from this node's data store (on the blocking pool: the stores block).
async fn serve_data(held: Arc<dyn HeldData>, call: Call) -> Answer {
    let task = tokio::task::spawn_blocking(move || {
        let done = |r: Result<()>| r.map_or_else(Answer::Failed, |()| Answer::Done);
        match call {
            Call::DataRead { ino, offset, len } => held
                .read(ino, offset, len as usize)
                .map_or_else(Answer::Failed, Answer::Data),
            Call::DataWrite { ino, offset, data } => done(held.write_at(ino, offset, &data)),
            Call::DataSetLen { ino, len } => done(held.set_len(ino, len)),
            Call::DataSync(ino) => done(held.sync(ino)),
            Call::DataRemove(ino) => done(held.remove(ino)),
            Call::DataResidency { ino, size } => held
                .residency(ino, size)
                .map_or_else(Answer::Failed, Answer::Residency),
            Call::DataVerify { ino, offset, len } => match held.verify(ino, offset, len as usize) {
                Ok(None) => Answer::Done,
                Ok(Some(why)) => Answer::Bad(why),
                Err(e) => Answer::Failed(e),
            },
            _ => Answer::Failed(Error::Invalid),
        }
    });
    task.await
        .unwrap_or_else(|e| Answer::Failed(Error::Io(format!("data task failed: {e}"))))
}

/// Stands for the root in the first call a node ships: the leader answers it with the root's
/// real id (see [`ClusterStore::fetch_root`]).
const ROOT_PROBE: FileId = FileId {
    ino: 0,
    generation: 0,
};

fn mismatch(answer: &Answer) -> Error {
    Error::Io(format!("the leader answered {answer:?} to another call"))
}

/// Runs one call on a store and wraps its result.
async fn execute<S: Store>(store: &S, call: Call) -> Answer {
    fn done<T>(r: Result<T>, wrap: impl FnOnce(T) -> Answer) -> Answer {
        r.map_or_else(Answer::Failed, wrap)
    }
    match call {
        Call::Getattr(id) if id == ROOT_PROBE => {
            done(store.getattr(store.root()).await, Answer::Attr)
        }
        Call::Getattr(id) => done(store.getattr(id).await, Answer::Attr),
        Call::Setattr {
            cred,
            id,
            attr,
            guard,
        } => done(store.setattr(&cred, id, attr, guard).await, Answer::Wcc),
        Call::Lookup { cred, dir, name } => {
            done(store.lookup(&cred, dir, &name).await, Answer::Attr)
        }
        Call::Parent { cred, dir } => done(store.parent(&cred, dir).await, Answer::Attr),
        Call::Access { cred, id, mask } => done(store.access(&cred, id, mask).await, |(m, a)| {
            Answer::Access(m, a)
        }),
        Call::Readlink { cred, id } => done(store.readlink(&cred, id).await, |(t, a)| {
            Answer::Readlink(t, a)
        }),
        Call::Read {
            cred,
            id,
            offset,
            count,
        } => done(store.read(&cred, id, offset, count).await, Answer::Read),
        Call::Write {
            cred,
            id,
            offset,
            stability,
            data,
        } => done(
            store.write(&cred, id, offset, data, stability).await,
            Answer::Write,
        ),
        Call::Create {
            cred,
            dir,
            name,
            kind,
            attr,
            mode,
        } => done(
            store.create(&cred, dir, &name, kind, attr, mode).await,
            |(a, w)| Answer::Made(a, w),
        ),
        Call::Remove { cred, dir, name } => {
            done(store.remove(&cred, dir, &name).await, Answer::Wcc)
        }
        Call::Rmdir { cred, dir, name } => done(store.rmdir(&cred, dir, &name).await, Answer::Wcc),
        Call::Rename {
            cred,
            from_dir,
            from_name,
            to_dir,
            to_name,
        } => done(
            store
                .rename(&cred, from_dir, &from_name, to_dir, &to_name)
                .await,
            |(f, t)| Answer::Renamed(f, t),
        ),
        Call::Link {
            cred,
            file,
            dir,
            name,
        } => done(store.link(&cred, file, dir, &name).await, |(a, w)| {
            Answer::Made(a, w)
        }),
        Call::Readdir {
            cred,
            dir,
            cookie,
            count_max,
            with_attrs,
        } => done(
            store
                .readdir(&cred, dir, cookie, count_max as usize, with_attrs)
                .await,
            Answer::Dir,
        ),
        Call::Commit { id, offset, count } => {
            done(store.commit(id, offset, count).await, Answer::Attr)
        }
        Call::Fsstat(id) => done(store.fsstat(id).await, Answer::Fsstat),
        Call::Residency(id) => done(store.residency(id).await, Answer::Residency),
        Call::PutDoc { key, version, doc } => {
            done(store.put_doc(&key, version, doc).await, |()| Answer::Done)
        }
        Call::Doc(key) => done(store.doc(&key).await, Answer::Doc),
        Call::SetReplication { dir, copies } => {
            done(store.set_replication(dir, copies).await, |()| Answer::Done)
        }
        Call::Replication(id) => done(store.replication(id).await, Answer::Replication),
        // Answered by the cluster store itself (`ClusterStore::raise_fence`).
        Call::FenceTarget(_) => Answer::Failed(Error::Invalid),
        // Data calls go to the holder's data store (`serve_data`), never to a writer.
        Call::DataRead { .. }
        | Call::DataWrite { .. }
        | Call::DataSetLen { .. }
        | Call::DataSync(_)
        | Call::DataRemove(_)
        | Call::DataResidency { .. }
        | Call::DataVerify { .. } => Answer::Failed(Error::Invalid),
    }
}

impl<E: Writer> Calls for ClusterStore<E> {
    fn call(self: Arc<Self>, body: Bytes) -> CallFuture {
        Box::pin(async move {
            // A data call is answered with this process's boot id where other answers carry
            // the leader's write verifier: the writer learns from it that this node restarted
            // and may have lost data it had not synced (see `ClusterData`).
            let (stamp, answer) = match wire::decode_shipped(body) {
                Err(e) => (
                    self.write_verifier(),
                    Answer::Failed(Error::Io(format!("a shipped call did not decode: {e}"))),
                ),
                Ok((envelope, call)) if call.is_data() => (
                    self.boot.to_be_bytes(),
                    match (&self.held, self.fence(envelope.epoch)) {
                        (_, Err(e)) => Answer::Failed(e),
                        (Some(held), Ok(())) => serve_data(Arc::clone(held), call).await,
                        (None, Ok(())) => Answer::Failed(Error::Unavailable),
                    },
                ),
                Ok((envelope, call)) => {
                    let answer = self.answer_shipped(call, envelope).await;
                    (self.write_verifier(), answer)
                }
            };
            wire::encode_answer(stamp, &answer)
        })
    }
}

impl<E: Writer> ClusterStore<E> {
    /// Fencing of data calls: one sent by the writer of a term older than the newest term
    /// this node has seen (in a data call, or in its own metadata log) is refused, so a
    /// leader that lost its term cannot change a copy after its successor did.
    fn fence(&self, epoch: Option<u64>) -> Result<()> {
        let Some(term) = epoch else {
            return Ok(());
        };
        let seen = self.data_epoch.fetch_max(term, Ordering::AcqRel);
        let current = self.meta.raft().metrics().borrow().current_term;
        if term < seen || term < current {
            tracing::warn!(
                term,
                seen,
                current,
                "a data call from the writer of an older term was refused"
            );
            self.fenced.fetch_add(1, Ordering::Relaxed);
            return Err(Error::Fenced);
        }
        Ok(())
    }

    /// A call another node shipped here: answered by the engine while this node leads, else
    /// refused with `Unavailable`, and the caller asks the next leader. Never shipped on:
    /// two nodes that each believe the other leads must not bounce a call between them.
    async fn answer_shipped(&self, call: Call, envelope: wire::Envelope) -> Answer {
        self.answered.fetch_add(1, Ordering::Relaxed);
        let Some(engine) = self.here(call.reads()).await else {
            return Answer::Failed(Error::Unavailable);
        };
        if let Call::FenceTarget(t) = call {
            return self.raise_fence(engine, t).await;
        }
        let tag = envelope.target.filter(|_| gated(&call));
        match self.admit(engine, tag).await {
            // A peer cannot tell whether an earlier try ran: always look.
            Ok(_admitted) => self.run(engine, call, envelope.request, true).await,
            Err(e) => Answer::Failed(e),
        }
    }

    /// Fences floating target `t.name` at epoch `t.epoch` on the writer ([`Store::fence_target`]), for its new owner
    /// to call before it serves the target: from then on the writer refuses the target's
    /// calls tagged with a lower epoch, none of those is still running when this returns,
    /// and the floor is in the metadata log (so the next writer refuses them too).
    /// `Fenced` when a greater epoch fenced the target already; `Unavailable` when older
    /// calls did not end within [`ROUTE_WAIT`] or no writer answered (the caller retries).
    pub async fn fence_at(&self, t: TargetEpoch) -> Result<()> {
        match self.dispatch(Call::FenceTarget(t)).await? {
            Answer::Done => Ok(()),
            Answer::Failed(e) => Err(e),
            other => Err(mismatch(&other)),
        }
    }

    /// Calls refused because a later owner of their target had fenced it.
    pub fn target_calls_fenced(&self) -> u64 {
        self.target_fenced.load(Ordering::Relaxed)
    }

    /// Admits a call tagged `tag` on the local engine: refused (`Fenced`) below its target's
    /// floor, else counted as running until the returned guard drops.
    async fn admit(&self, engine: &E, tag: Option<TargetEpoch>) -> Result<Option<Admitted<'_>>> {
        let Some(t) = tag else {
            return Ok(None);
        };
        // The term may move on between learning the floor and entering: learn again.
        for _ in 0..3 {
            let term = self.learn_floor(engine, &t).await?;
            let entered = lock(&self.fences).enter(term, &t);
            match entered {
                Ok(()) => {
                    return Ok(Some(Admitted {
                        fences: &self.fences,
                        left: &self.fence_left,
                        term,
                        t,
                    }))
                }
                Err(fence::Refused::Below(floor)) => {
                    self.target_fenced.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        target = %t.name, epoch = t.epoch, floor,
                        "a call from an earlier owner of the floating target was refused"
                    );
                    return Err(Error::Fenced);
                }
                Err(fence::Refused::Unlearned) => {}
            }
        }
        Err(Error::Unavailable)
    }

    /// Makes sure the floor of `t`'s target is known in the term this node writes in (read
    /// from the metadata log the first time in a term); returns that term.
    async fn learn_floor(&self, engine: &E, t: &TargetEpoch) -> Result<u64> {
        let term = *self.serving.borrow();
        if !lock(&self.fences).knows(term, &t.name) {
            let floor = match engine.doc(&fence::floor_key(&t.name)).await? {
                Some((version, _)) => version,
                None => 0,
            };
            lock(&self.fences).learn(term, &t.name, floor);
        }
        Ok(term)
    }

    /// [`ClusterStore::fence_at`] on the writer.
    async fn raise_fence(&self, engine: &E, t: TargetEpoch) -> Answer {
        let raised = async {
            let term = self.learn_floor(engine, &t).await?;
            let raised = lock(&self.fences).raise(term, &t);
            match raised {
                Ok(()) => {}
                Err(fence::Refused::Below(floor)) => {
                    tracing::warn!(
                        target = %t.name, epoch = t.epoch, floor,
                        "a floating target was fenced already by a later owner"
                    );
                    return Err(Error::Fenced);
                }
                // The term moved on: the new owner asks again (the next writer).
                Err(fence::Refused::Unlearned) => return Err(Error::Unavailable),
            }
            let deadline = tokio::time::Instant::now() + ROUTE_WAIT;
            loop {
                let left = self.fence_left.notified();
                tokio::pin!(left);
                left.as_mut().enable();
                if lock(&self.fences).drained(term, &t) {
                    break;
                }
                if tokio::time::timeout_at(deadline, left).await.is_err() {
                    return Err(Error::Unavailable);
                }
            }
            let floor = t.epoch.to_le_bytes().to_vec();
            engine
                .put_doc(&fence::floor_key(&t.name), t.epoch, floor)
                .await?;
            // A writer of a later term may have learnt the floor before this one was in the
            // log: the new owner fences again, there.
            if *self.serving.borrow() != term {
                return Err(Error::Unavailable);
            }
            Ok(())
        };
        match raised.await {
            Ok(()) => {
                tracing::info!(target = %t.name, epoch = t.epoch, "floating target fenced at its new owner's epoch");
                Answer::Done
            }
            Err(e) => Answer::Failed(e),
        }
    }
}

/// Whether a call made on a floating target's behalf is checked against the target's floor:
/// every call that changes anything (reads change nothing, data calls go between nodes).
fn gated(call: &Call) -> bool {
    !call.reads() && !call.is_data() && !matches!(call, Call::FenceTarget(_))
}

/// A call admitted past its target's floor, counted as running while this lives.
struct Admitted<'a> {
    fences: &'a Mutex<fence::Fences>,
    left: &'a tokio::sync::Notify,
    term: u64,
    t: TargetEpoch,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        lock(self.fences).leave(self.term, &self.t);
        self.left.notify_waiters();
    }
}

/// Makes this node's engine current whenever it becomes leader, until the store is dropped.
async fn lead<E: Writer>(store: Weak<ClusterStore<E>>) {
    // The server metrics: they change with the role and term, not with every entry.
    let Some(mut metrics) = store.upgrade().map(|s| s.meta.raft().server_metrics()) else {
        return;
    };
    loop {
        let term = {
            let m = metrics.borrow_and_update();
            (m.state == ServerState::Leader).then_some(m.vote.leader_id().get_term())
        };
        if let Some(term) = term {
            let Some(s) = store.upgrade() else { return };
            if *s.serving.borrow() != term {
                if let Err(e) = s.take_over(term).await {
                    tracing::warn!(term, error = %e, "could not become the metadata writer yet");
                    drop(s);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// How often the writing node looks for copies lost with nodes that left the cluster (only
/// after the voters changed, or while the last pass left work).
const REBUILD_EVERY: Duration = Duration::from_secs(2);
/// How soon a copy whose node did not answer is taken out of its file's layout.
const DROPS_EVERY: Duration = Duration::from_millis(100);

/// Restores copies lost with nodes that left, while this node writes the metadata.
async fn rebuild<E: Writer>(store: Weak<ClusterStore<E>>) {
    // The membership (by the log id of its entry: a set of voters can come back, as when a
    // node joins and is removed between two looks) for which a pass left nothing to do.
    let mut clean_for = None;
    let mut last = tokio::time::Instant::now();
    loop {
        // Copies to drop are taken out at once (writes to their files fail until then); the
        // rest waits for the next round.
        tokio::time::sleep(DROPS_EVERY).await;
        let Some(s) = store.upgrade() else { return };
        if s.local().is_none() {
            clean_for = None;
            continue;
        }
        let drops = s.local().is_some_and(|e| e.drops_pending());
        // Repairs a read or the scrub queued are made at once too: a bad block stays bad
        // (and is found again by the next scrub pass) until it is.
        let repairs = s.local().is_some_and(|e| e.repairs_pending());
        if !drops && !repairs && last.elapsed() < REBUILD_EVERY {
            continue;
        }
        last = tokio::time::Instant::now();
        if drops {
            // A file left with fewer copies gets them back once a voter can take them.
            clean_for = None;
        }
        let membership = Some(*s.meta.raft().metrics().borrow().membership_config.log_id());
        let scan = clean_for != membership && !drops;
        if !scan && !drops && !repairs {
            continue;
        }
        let task = Arc::clone(&s);
        let pass = tokio::task::spawn_blocking(move || {
            task.local().map(|engine| engine.restore_copies(scan))
        })
        .await;
        match pass {
            Ok(Some(Ok(pass))) => {
                if pass != CopiesPass::default() {
                    tracing::info!(?pass, "rebuild pass");
                }
                if scan && pass.is_clean() {
                    clean_for = membership;
                }
                let mut totals = lock(&s.copies);
                totals.repaired += pass.repaired;
                totals.dropped += pass.dropped;
                totals.restored += pass.restored;
                totals.bytes += pass.bytes;
                if scan {
                    totals.last = pass;
                    totals.passes += 1;
                }
            }
            Ok(Some(Err(e))) => tracing::warn!(error = %e, "a rebuild pass failed"),
            Ok(None) | Err(_) => {}
        }
    }
}

/// How often the scrub runs a step (a second's worth of its rate).
const SCRUB_TICK: Duration = Duration::from_secs(1);
/// A file system's first pass starts this long after its first leader started (or
/// `scrub_every`, if shorter): a new cluster has better things to do. Later leaders go on
/// from the state the log keeps ([`ScrubState`]), so a node restarted often still scrubs.
const SCRUB_FIRST: Duration = Duration::from_secs(3600);
/// How often the scrub saves its progress in the metadata log while a pass is under way.
const SCRUB_SAVE_EVERY: Duration = Duration::from_secs(10);

/// Checks every copy of every file in the background while this node writes the metadata,
/// at the engine's rate, a pass at most every `scrub_every` ([`data::scrub`]).
async fn scrub<E: Writer>(store: Weak<ClusterStore<E>>) {
    let unix_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    let mut state = ScrubState::default();
    // The term this node leads in and the version of the saved state it read or wrote last
    // in it (`None`: not read since it started leading; a new term reads again, since a
    // leader of the terms between may have saved: the log keeps a newer version silently).
    let mut version: Option<(u64, u64)> = None;
    let mut not_before = tokio::time::Instant::now();
    let mut saved_at = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(SCRUB_TICK).await;
        let Some(s) = store.upgrade() else { return };
        let (Some(engine), Some(term)) = (s.local(), s.meta.leading()) else {
            version = None;
            continue;
        };
        let every = engine.scrub_every();
        let now = tokio::time::Instant::now();
        if version.is_none_or(|(t, _)| t != term) {
            // Leading (again): go on from the state the log keeps.
            match engine.doc(SCRUB_DOC).await {
                Ok(found) => {
                    let (mut v, st) = found
                        .map(|(v, b)| (v, ScrubState::decode(&b).unwrap_or_default()))
                        .unwrap_or_default();
                    state = st;
                    if state == ScrubState::default() {
                        // A new file system: its first pass is due `SCRUB_FIRST` (or `every`)
                        // from now, kept as a pass that started `every` before that, so that
                        // leaders after this one keep the date.
                        let due = unix_now() + every.min(SCRUB_FIRST).as_secs();
                        state.started = due.saturating_sub(every.as_secs()).max(1);
                        if engine
                            .put_doc(SCRUB_DOC, v + 1, state.encode())
                            .await
                            .is_ok()
                        {
                            v += 1;
                        }
                    }
                    version = Some((term, v));
                    not_before = now + state.wait(unix_now(), every, SCRUB_FIRST);
                    if state.cursor.end != 0 {
                        tracing::info!(
                            ino = state.cursor.ino,
                            "scrub: going on with the pass under way"
                        );
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "scrub: its state not read yet");
                    continue;
                }
            }
        }
        if now < not_before {
            continue;
        }
        if state.cursor == ScrubCursor::default() {
            state.started = unix_now();
        }
        let task = Arc::clone(&s);
        let mut cursor = state.cursor;
        let step = tokio::task::spawn_blocking(move || {
            let step = task.local().and_then(|e| e.scrub(&mut cursor));
            (step, cursor)
        })
        .await;
        let Ok((step, at)) = step else { continue };
        state.cursor = at;
        let mut save = saved_at.elapsed() >= SCRUB_SAVE_EVERY;
        match step {
            None => save = false,
            Some(Err(e)) => tracing::warn!(error = %e, "a scrub step failed; trying again"),
            Some(Ok(step)) => {
                let mut totals = lock(&s.copies);
                totals.scrub_bytes += step.bytes;
                totals.scrub_skipped += step.skipped;
                totals.scrub_bad += step.bad;
                if step.wrapped {
                    totals.scrub_passes += 1;
                    drop(totals);
                    let ended = unix_now();
                    tracing::info!(
                        took = ?Duration::from_secs(ended.saturating_sub(state.started)),
                        "scrub pass ended"
                    );
                    state.ended = ended;
                    state.cursor = ScrubCursor::default();
                    not_before = now + state.wait(ended, every, SCRUB_FIRST);
                    save = true;
                }
            }
        }
        if save {
            let next = version.map_or(0, |(_, v)| v) + 1;
            match engine.put_doc(SCRUB_DOC, next, state.encode()).await {
                Ok(()) => version = Some((term, next)),
                // Another leader wrote meanwhile, or this node no longer leads: read again.
                Err(e) => {
                    tracing::debug!(error = %e, "scrub: its state not saved");
                    version = None;
                }
            }
            saved_at = tokio::time::Instant::now();
        }
    }
}

impl<E: Writer> ClusterStore<E> {
    /// Becomes the writer for `term`: applies everything committed before it (an entry of
    /// its own committed and applied: `RaftMeta::establish`), then builds or resumes the
    /// engine, then lets batches of `term` through.
    async fn take_over(self: &Arc<Self>, term: u64) -> std::result::Result<(), String> {
        self.meta.establish().await?;
        let store = Arc::clone(self);
        tokio::task::spawn_blocking(move || -> Result<()> {
            let meta = Arc::clone(&store.meta);
            match store.engine.get() {
                Some(engine) => engine.resume(&mut || meta.set_writer_term(term))?,
                None => {
                    // Building the engine may write (a new file system's root), and nothing
                    // was cached before it: its batches belong to this term.
                    meta.set_writer_term(term);
                    let engine = (lock(&store.factory))()?;
                    let _ = store.engine.set(engine);
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        self.serving.send_replace(term);
        tracing::info!(term, node = self.node, "this node writes the metadata now");
        Ok(())
    }
}

macro_rules! answer {
    ($answer:expr, $pat:pat => $value:expr) => {
        match $answer {
            $pat => Ok($value),
            Answer::Failed(e) => Err(e),
            other => Err(mismatch(&other)),
        }
    };
}

impl<E: Writer> Store for ClusterStore<E> {
    fn root(&self) -> FileId {
        self.root.get().copied().unwrap_or(ROOT_PROBE)
    }

    fn write_verifier(&self) -> [u8; 8] {
        match self.local() {
            Some(engine) => engine.write_verifier(),
            None => self.verifier.load(Ordering::Relaxed).to_be_bytes(),
        }
    }

    async fn getattr(&self, id: FileId) -> Result<Attr> {
        if let Some(engine) = self.here(true).await {
            return engine.getattr(id).await;
        }
        answer!(self.dispatch(Call::Getattr(id)).await?, Answer::Attr(a) => a)
    }

    async fn setattr(
        &self,
        cred: &Cred,
        id: FileId,
        attr: SetAttr,
        guard: Option<Timestamp>,
    ) -> Result<Wcc> {
        if let Some(engine) = self.alone() {
            let _admitted = self.admit(engine, current_target()).await?;
            return engine.setattr(cred, id, attr, guard).await;
        }
        let call = Call::Setattr {
            cred: cred.clone(),
            id,
            attr,
            guard,
        };
        answer!(self.dispatch(call).await?, Answer::Wcc(w) => w)
    }

    async fn lookup(&self, cred: &Cred, dir: FileId, name: &[u8]) -> Result<Attr> {
        if let Some(engine) = self.here(true).await {
            return engine.lookup(cred, dir, name).await;
        }
        let call = Call::Lookup {
            cred: cred.clone(),
            dir,
            name: name.to_vec(),
        };
        answer!(self.dispatch(call).await?, Answer::Attr(a) => a)
    }

    async fn parent(&self, cred: &Cred, dir: FileId) -> Result<Attr> {
        if let Some(engine) = self.here(true).await {
            return engine.parent(cred, dir).await;
        }
        let call = Call::Parent {
            cred: cred.clone(),
            dir,
        };
        answer!(self.dispatch(call).await?, Answer::Attr(a) => a)
    }

    async fn access(
        &self,
        cred: &Cred,
        id: FileId,
        mask: AccessMask,
    ) -> Result<(AccessMask, Attr)> {
        if let Some(engine) = self.here(true).await {
            return engine.access(cred, id, mask).await;
        }
        let call = Call::Access {
            cred: cred.clone(),
            id,
            mask,
        };
        answer!(self.dispatch(call).await?, Answer::Access(m, a) => (m, a))
    }

    async fn readlink(&self, cred: &Cred, id: FileId) -> Result<(Vec<u8>, Attr)> {
        if let Some(engine) = self.here(true).await {
            return engine.readlink(cred, id).await;
        }
        let call = Call::Readlink {
            cred: cred.clone(),
            id,
        };
        answer!(self.dispatch(call).await?, Answer::Readlink(t, a) => (t, a))
    }

    async fn read(&self, cred: &Cred, id: FileId, offset: u64, count: u32) -> Result<ReadResult> {
        if let Some(engine) = self.here(true).await {
            return engine.read(cred, id, offset, count).await;
        }
        let call = Call::Read {
            cred: cred.clone(),
            id,
            offset,
            count,
        };
        answer!(self.dispatch(call).await?, Answer::Read(r) => r)
    }

    async fn write(
        &self,
        cred: &Cred,
        id: FileId,
        offset: u64,
        data: Bytes,
        stability: Stability,
    ) -> Result<WriteResult> {
        if let Some(engine) = self.local() {
            let _admitted = self.admit(engine, current_target()).await?;
            return engine.write(cred, id, offset, data, stability).await;
        }
        let call = Call::Write {
            cred: cred.clone(),
            id,
            offset,
            stability,
            data,
        };
        answer!(self.dispatch(call).await?, Answer::Write(w) => w)
    }

    async fn create(
        &self,
        cred: &Cred,
        dir: FileId,
        name: &[u8],
        kind: NodeKind,
        attr: SetAttr,
        mode: CreateMode,
    ) -> Result<(Attr, Wcc)> {
        if let Some(engine) = self.alone() {
            let _admitted = self.admit(engine, current_target()).await?;
            return engine.create(cred, dir, name, kind, attr, mode).await;
        }
        let call = Call::Create {
            cred: cred.clone(),
            dir,
            name: name.to_vec(),
            kind,
            attr,
            mode,
        };
        answer!(self.dispatch(call).await?, Answer::Made(a, w) => (a, w))
    }

    async fn remove(&self, cred: &Cred, dir: FileId, name: &[u8]) -> Result<Wcc> {
        if let Some(engine) = self.alone() {
            let _admitted = self.admit(engine, current_target()).await?;
            return engine.remove(cred, dir, name).await;
        }
        let call = Call::Remove {
            cred: cred.clone(),
            dir,
            name: name.to_vec(),
        };
        answer!(self.dispatch(call).await?, Answer::Wcc(w) => w)
    }

    async fn rmdir(&self, cred: &Cred, dir: FileId, name: &[u8]) -> Result<Wcc> {
        if let Some(engine) = self.alone() {
            let _admitted = self.admit(engine, current_target()).await?;
            return engine.rmdir(cred, dir, name).await;
        }
        let call = Call::Rmdir {
            cred: cred.clone(),
            dir,
            name: name.to_vec(),
        };
        answer!(self.dispatch(call).await?, Answer::Wcc(w) => w)
    }

    async fn rename(
        &self,
        cred: &Cred,
        from_dir: FileId,
        from_name: &[u8],
        to_dir: FileId,
        to_name: &[u8],
    ) -> Result<(Wcc, Wcc)> {
        if let Some(engine) = self.alone() {
            let _admitted = self.admit(engine, current_target()).await?;
            return engine
                .rename(cred, from_dir, from_name, to_dir, to_name)
                .await;
        }
        let call = Call::Rename {
            cred: cred.clone(),
            from_dir,
            from_name: from_name.to_vec(),
            to_dir,
            to_name: to_name.to_vec(),
        };
        answer!(self.dispatch(call).await?, Answer::Renamed(f, t) => (f, t))
    }

    async fn link(
        &self,
        cred: &Cred,
        file: FileId,
        dir: FileId,
        name: &[u8],
    ) -> Result<(Attr, Wcc)> {
        if let Some(engine) = self.alone() {
            let _admitted = self.admit(engine, current_target()).await?;
            return engine.link(cred, file, dir, name).await;
        }
        let call = Call::Link {
            cred: cred.clone(),
            file,
            dir,
            name: name.to_vec(),
        };
        answer!(self.dispatch(call).await?, Answer::Made(a, w) => (a, w))
    }

    async fn readdir(
        &self,
        cred: &Cred,
        dir: FileId,
        cookie: u64,
        count_max: usize,
        with_attrs: bool,
    ) -> Result<DirPage> {
        if let Some(engine) = self.here(true).await {
            return engine
                .readdir(cred, dir, cookie, count_max, with_attrs)
                .await;
        }
        let call = Call::Readdir {
            cred: cred.clone(),
            dir,
            cookie,
            count_max: u32::try_from(count_max).unwrap_or(u32::MAX),
            with_attrs,
        };
        answer!(self.dispatch(call).await?, Answer::Dir(p) => p)
    }

    async fn commit(&self, id: FileId, offset: u64, count: u64) -> Result<Attr> {
        if let Some(engine) = self.local() {
            let _admitted = self.admit(engine, current_target()).await?;
            return engine.commit(id, offset, count).await;
        }
        answer!(self.dispatch(Call::Commit { id, offset, count }).await?, Answer::Attr(a) => a)
    }

    async fn fsstat(&self, id: FileId) -> Result<FsStat> {
        if let Some(engine) = self.here(true).await {
            return engine.fsstat(id).await;
        }
        answer!(self.dispatch(Call::Fsstat(id)).await?, Answer::Fsstat(f) => f)
    }

    async fn residency(&self, id: FileId) -> Result<Residency> {
        if let Some(engine) = self.here(true).await {
            return engine.residency(id).await;
        }
        answer!(self.dispatch(Call::Residency(id)).await?, Answer::Residency(r) => r)
    }

    async fn set_replication(&self, dir: FileId, copies: Option<u8>) -> Result<()> {
        if let Some(engine) = self.alone() {
            let _admitted = self.admit(engine, current_target()).await?;
            return engine.set_replication(dir, copies).await;
        }
        let call = Call::SetReplication { dir, copies };
        answer!(self.dispatch(call).await?, Answer::Done => ())
    }

    async fn fence_target(&self, target: &str, epoch: u64) -> Result<()> {
        let t = TargetEpoch {
            name: target.into(),
            epoch,
        };
        self.fence_at(t).await
    }

    async fn replication(&self, id: FileId) -> Result<Option<u8>> {
        if let Some(engine) = self.here(true).await {
            return engine.replication(id).await;
        }
        answer!(self.dispatch(Call::Replication(id)).await?, Answer::Replication(r) => r)
    }

    async fn put_doc(&self, key: &[u8], version: u64, doc: Vec<u8>) -> Result<()> {
        if let Some(engine) = self.alone() {
            let _admitted = self.admit(engine, current_target()).await?;
            return engine.put_doc(key, version, doc).await;
        }
        let call = Call::PutDoc {
            key: key.to_vec(),
            version,
            doc,
        };
        answer!(self.dispatch(call).await?, Answer::Done => ())
    }

    async fn doc(&self, key: &[u8]) -> Result<Option<(u64, Vec<u8>)>> {
        if let Some(engine) = self.here(true).await {
            return engine.doc(key).await;
        }
        answer!(self.dispatch(Call::Doc(key.to_vec())).await?, Answer::Doc(d) => d)
    }

    fn data_stats(&self) -> Vec<(&'static str, u64)> {
        // This node's own data store, whether or not its engine serves the metadata now.
        self.held.as_ref().map(|h| h.stats()).unwrap_or_default()
    }

    fn stats(&self) -> Vec<(&'static str, u64)> {
        let mut stats = self.meta.stats();
        stats.push(("calls_shipped", self.shipped.load(Ordering::Relaxed)));
        stats.push(("calls_answered", self.answered.load(Ordering::Relaxed)));
        stats.push(("calls_replayed", self.replayed.load(Ordering::Relaxed)));
        // Every round a read barrier ran (reads within a lease need none).
        stats.push(("read_barrier_rounds", lock(&self.barrier).started));
        let copies = lock(&self.copies);
        stats.push(("copies_restored", copies.restored));
        stats.push(("copies_restored_bytes", copies.bytes));
        stats.push(("files_degraded", copies.last.degraded));
        stats.push(("files_restore_failed", copies.last.failed));
        stats.push(("rebuild_passes", copies.passes));
        stats.push(("copies_repaired", copies.repaired));
        stats.push(("scrub_bytes", copies.scrub_bytes));
        stats.push(("scrub_skipped_bytes", copies.scrub_skipped));
        stats.push(("scrub_bad_ranges", copies.scrub_bad));
        stats.push(("scrub_passes", copies.scrub_passes));
        stats.push(("copies_dropped", copies.dropped));
        stats.push(("files_waiting_for_copies", copies.last.waiting));
        drop(copies);
        let progress = self
            .local()
            .map(|e| e.rebuild_progress())
            .unwrap_or_default();
        let now = std::time::Instant::now();
        stats.push(("rebuild_files_left", progress.files_left));
        stats.push(("rebuild_bytes_left", progress.bytes_left));
        stats.push(("rebuild_bytes_per_second", progress.rate(now)));
        // 0: no estimate (no pass under way, or not a second into one).
        stats.push((
            "rebuild_eta_seconds",
            progress.eta_seconds(now).unwrap_or(0),
        ));
        stats.push(("data_calls_fenced", self.fenced.load(Ordering::Relaxed)));
        stats.push((
            "target_calls_fenced",
            self.target_fenced.load(Ordering::Relaxed),
        ));
        stats
    }
}
