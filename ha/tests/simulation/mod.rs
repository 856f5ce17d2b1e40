//! Shared by `tests/sim.rs` (a few hundred seeds in CI) and `examples/sim.rs` (many more by
//! hand, or one failing seed replayed).
//!
//! A seeded, deterministic simulation of the metadata log: three nodes of `RaftMeta` that
//! found the log and two that may join later, in one process, on one single-threaded runtime
//! with virtual time, joined by a simulated fabric
//! that loses, delays and reorders messages, delivers some requests seconds late (after their
//! sender gave up on them and terms moved on), and partitions nodes, while nodes crash and
//! restart and clients create names through whichever node believes it leads. At the end the
//! faults stop and the invariants of `ha/PROTOCOL.md` §9 that this layer owns are checked:
//!
//! * **no acknowledged change is lost**: every create whose commit succeeded is in every
//!   node's state machine;
//! * **refused means refused**: a create the state machine refused (a name taken first) is in
//!   none;
//! * **one name, one inode**: no name is bound by two acknowledged creates;
//! * **replicas agree**: every node's state machine holds the same metadata;
//! * **documents keep the newest**: a protocol-state document (`MetaOp::PutDoc`) is never
//!   older on any node than its newest acknowledged save, whatever order saves were made in,
//!   and holds the body saved with its version;
//! * **votes only go forward**: no node's vote (term, candidate) ever goes back, crashes
//!   included. Not "one leader per term": openraft by default orders leaders by
//!   (term, node id), so two nodes may lead in one term, the higher id superseding the lower
//!   (the `single-term-leader` feature gives the textbook rule); what makes that safe is the
//!   ordering, and what it protects is checked by the invariants above;
//! * **membership follows the registry, and only forward**: nodes 4 and 5 join through a
//!   modelled etcd ([`SimRegistry`], which can be unreachable) and the leader's
//!   `ha::members::reconcile_once`, and voters are removed on request, under the same faults;
//!   a removed node is never a member again, and once quiet every running node is a voter
//!   with the same metadata as the others (a joined node included).
//!
//! Everything the schedule depends on comes from the seed: message fates, delays, faults and
//! the workload are drawn from one generator, time is virtual (tokio's paused clock), the log
//! is not flushed by a thread, and election timeouts are fixed per node (openraft draws them
//! from a generator no seed reaches). So a seed replays: [`run`] returns a trace digest, and
//! the same seed gives the same digest.
//!
//! Each node's redb files (log and state machine) live on a simulated disk
//! (`ha::metalog::simdisk`) that keeps a file's bytes as written and as of its last sync. A
//! crash is a process crash (what was written stays) or, half the time, a power loss too (each
//! file goes back to its last sync), so every durability claim of the log and the state
//! machine is tested against what they actually synced. With `liar`, one founding node's disk
//! answers syncs without keeping anything: PROTOCOL.md §2 says what that breaks. Snapshot
//! files are still real files, written and renamed with fsync.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backend::engine::{
    Batch, Inode, MetaOp, MetaStore, Precondition, RequestId, REQUEST_KEEP_SECS,
};
use backend::{Error, FileType};
use ha::metalog::simdisk::{SimDisk, Trouble};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft, ServerState};

use ha::members::{reconcile_once, Change, Founding, Registered, Registry};
use ha::metalog::{RaftMeta, ReadLease, Tuning, TypeConfig};

/// etcd as the membership layer sees it: registrations, the founder, removal requests and
/// tombstones, linearizable, and unreachable while `down`.
#[derive(Default)]
struct RegState {
    alive: BTreeMap<u64, String>,
    founder: Option<u64>,
    founded: bool,
    removals: BTreeSet<u64>,
    removed: BTreeSet<u64>,
    down: bool,
}

#[derive(Clone, Default)]
pub struct SimRegistry(Arc<Mutex<RegState>>);

impl SimRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, RegState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn up(&self) -> Result<std::sync::MutexGuard<'_, RegState>, String> {
        let s = self.lock();
        if s.down {
            Err("etcd unreachable".into())
        } else {
            Ok(s)
        }
    }

    /// The node's lease lapses (it crashed).
    fn lapse(&self, node: u64) {
        self.lock().alive.remove(&node);
    }
}

impl Registry for SimRegistry {
    async fn register(&self, node: u64, addr: &str) -> Result<(), String> {
        let mut s = self.up()?;
        if s.removed.contains(&node) {
            return Err(format!("node {node} was removed"));
        }
        s.alive.insert(node, addr.to_string());
        Ok(())
    }

    async fn claim_founder(&self, node: u64) -> Result<Founding, String> {
        let mut s = self.up()?;
        Ok(match (*s.founder.get_or_insert(node) == node, s.founded) {
            (false, _) => Founding::Join,
            (true, false) => Founding::Found,
            (true, true) => Founding::FoundedEarlier,
        })
    }

    async fn founded(&self, _node: u64) -> Result<(), String> {
        self.up()?.founded = true;
        Ok(())
    }

    async fn alive(&self) -> Result<Vec<Registered>, String> {
        Ok(self
            .up()?
            .alive
            .iter()
            .map(|(&node, addr)| Registered {
                node,
                addr: addr.clone(),
            })
            .collect())
    }

    async fn request_removal(&self, node: u64) -> Result<(), String> {
        self.up()?.removals.insert(node);
        Ok(())
    }

    async fn removals(&self) -> Result<BTreeSet<u64>, String> {
        Ok(self.up()?.removals.clone())
    }

    async fn removal_done(&self, node: u64) -> Result<(), String> {
        let mut s = self.up()?;
        s.removals.remove(&node);
        s.alive.remove(&node);
        s.removed.insert(node);
        Ok(())
    }

    async fn was_removed(&self, node: u64) -> Result<bool, String> {
        Ok(self.up()?.removed.contains(&node))
    }
}

/// A small, seedable generator (xorshift64*): the simulation needs no statistical quality,
/// only that every draw follows from the seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// True with probability `per_mille`/1000.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// How hostile the fabric is.
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    /// Messages (and replies) lost, per mille.
    pub drop_per_mille: u64,
    /// Each message and reply is delayed by up to this (reordering follows).
    pub delay_max_ms: u64,
    /// Requests, per mille, that arrive late: 1 to 4 s after they were sent, when the sender
    /// has long given up on them (it sees a lost reply at once) and terms may have moved on. A
    /// connection that delivers what a stalled peer sent before it was replaced.
    pub late_per_mille: u64,
}

struct FabricState {
    rng: Rng,
    nodes: BTreeMap<u64, Raft<TypeConfig>>,
    /// Nodes on the minority side of a partition (empty: none).
    cut: BTreeSet<u64>,
    faults: Faults,
    /// Requests delivered late so far.
    late: usize,
    trace: u64,
}

/// The simulated network between the nodes, the registry they join through, and each node's
/// disk.
#[derive(Clone)]
pub struct Fabric {
    state: Arc<Mutex<FabricState>>,
    registry: SimRegistry,
    disks: BTreeMap<u64, SimDisk>,
}

impl Fabric {
    fn lock(&self) -> std::sync::MutexGuard<'_, FabricState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Folds an event into the trace digest (FNV-1a over its words).
    fn note(&self, words: &[u64]) {
        let mut s = self.lock();
        for w in words {
            s.trace ^= *w;
            s.trace = s.trace.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }

    /// Whether a message from `from` to `to` gets through now, and after what delay.
    fn fate(&self, from: u64, to: u64) -> Option<Duration> {
        let mut s = self.lock();
        let split = s.cut.contains(&from) != s.cut.contains(&to);
        let faults = s.faults;
        let dropped = s.rng.chance(faults.drop_per_mille);
        let delay = s.rng.below(faults.delay_max_ms + 1);
        (!split && !dropped).then(|| Duration::from_millis(delay))
    }

    /// Whether a request is to arrive late, and when.
    fn late(&self) -> Option<Duration> {
        let mut s = self.lock();
        let late = s.faults.late_per_mille;
        s.rng
            .chance(late)
            .then(|| Duration::from_millis(1000 + s.rng.below(3000)))
    }

    fn target(&self, to: u64) -> Option<Raft<TypeConfig>> {
        self.lock().nodes.get(&to).cloned()
    }

    /// Carries one request: delayed, maybe lost either way, refused across a partition.
    async fn carry<T, E, F, Fut>(
        &self,
        from: u64,
        to: u64,
        send: F,
    ) -> Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>>
    where
        E: std::error::Error,
        F: FnOnce(Raft<TypeConfig>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, RaftError<u64, E>>> + Send,
    {
        let unreachable = || {
            let e = std::io::Error::other(format!("node {to} unreachable"));
            RPCError::Unreachable(Unreachable::new(&e))
        };
        let Some(delay) = self.fate(from, to) else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            return Err(unreachable());
        };
        if let Some(late) = self.late() {
            // Delivered later, to whatever node `to` is by then; its answer goes nowhere.
            let fabric = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(late).await;
                fabric.note(&[14, from, to]);
                fabric.lock().late += 1;
                if let Some(target) = fabric.target(to) {
                    let _ = send(target).await;
                }
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
            let e = std::io::Error::other("reply lost (the request is held in the network)");
            return Err(RPCError::Network(NetworkError::new(&e)));
        }
        tokio::time::sleep(delay).await;
        let target = self.target(to).ok_or_else(unreachable)?;
        let answer = send(target).await;
        // The reply travels back through the same fabric.
        let Some(delay) = self.fate(to, from) else {
            let e = std::io::Error::other("reply lost");
            return Err(RPCError::Network(NetworkError::new(&e)));
        };
        tokio::time::sleep(delay).await;
        answer.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(to, e)))
    }
}

/// One node's view of the fabric, as openraft's network.
pub struct SimNetwork {
    fabric: Fabric,
    from: u64,
}

pub struct SimPeer {
    fabric: Fabric,
    from: u64,
    to: u64,
}

impl RaftNetworkFactory<TypeConfig> for SimNetwork {
    type Network = SimPeer;
    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> SimPeer {
        SimPeer {
            fabric: self.fabric.clone(),
            from: self.from,
            to: target,
        }
    }
}

impl RaftNetwork<TypeConfig> for SimPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.fabric
            .carry(self.from, self.to, |r| async move {
                r.append_entries(rpc).await
            })
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.fabric
            .carry(self.from, self.to, |r| async move {
                r.install_snapshot(rpc).await
            })
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.fabric
            .carry(self.from, self.to, |r| async move { r.vote(rpc).await })
            .await
    }
}

/// What one run found.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    /// A digest of every event in order: the same seed gives the same digest.
    pub trace: u64,
    pub creates_acknowledged: usize,
    pub creates_refused: usize,
    pub creates_unknown: usize,
    pub crashes: usize,
    /// Crashes that lost power too (the disk kept only what it had synced).
    pub power_losses: usize,
    pub partitions: usize,
    /// Requests the fabric delivered seconds late, after their sender gave up on them.
    pub late_requests: usize,
    /// Disks that failed for a while, and the logs that stopped (and restarted) on it.
    pub disk_failures: usize,
    pub logs_stopped: usize,
    /// Nodes made voters, and voters removed, by the leader's reconciler.
    pub joins: usize,
    pub removals: usize,
    /// Protocol-state document saves acknowledged.
    pub docs_saved: usize,
    /// Linearizable reads on nodes that believed they led: answered within a read lease
    /// (no round of their own), and after a heartbeat round.
    pub reads_by_lease: usize,
    pub reads_by_round: usize,
    /// The broken invariants (empty: the run passed).
    pub violations: Vec<String>,
}

/// A read of the directory's names, as `forward`'s read barrier would serve it on a node
/// that believes it leads.
struct Read {
    node: u64,
    /// When the read arrived: every create acknowledged before must be in it.
    at: tokio::time::Instant,
    by_lease: bool,
    /// Name -> inode, as the node's state machine held them.
    seen: BTreeMap<u64, u64>,
}

/// A running node that believes it leads, drawn with `rng` (one draw, even when there is none).
fn pick_believer(nodes: &BTreeMap<u64, Arc<RaftMeta>>, rng: &mut Rng) -> Option<u64> {
    let believers: Vec<u64> = nodes
        .iter()
        .filter(|(_, m)| m.leading().is_some())
        .map(|(&n, _)| n)
        .collect();
    believers
        .get(rng.below(believers.len() as u64) as usize)
        .copied()
}

/// What `forward::ClusterStore` keeps for reads in one life of a node: the term it took over
/// in, and its read lease.
#[derive(Default)]
struct Serving {
    term: u64,
    lease: ReadLease,
}

/// Serves one read on `meta` as `forward::ClusterStore` does: once the node took over in its
/// term (`take_over`: `RaftMeta::establish`), within the lease of its last acknowledged round
/// at once, else after a round of its own (`read_barrier`, which renews the lease). None: the
/// node does not lead, or the take-over or round failed (the client would retry).
async fn lease_read(node: u64, meta: &RaftMeta, serving: &Mutex<Serving>) -> Option<Read> {
    let at = tokio::time::Instant::now();
    let term = meta.leading()?;
    if serving.lock().unwrap().term != term {
        tokio::time::timeout(Duration::from_secs(5), meta.establish())
            .await
            .ok()?
            .ok()?;
        serving.lock().unwrap().term = term;
    }
    let now = tokio::time::Instant::now();
    let by_lease = serving
        .lock()
        .unwrap()
        .lease
        .holds(term, meta.votes_seen(), now);
    if !by_lease {
        let votes = meta.votes_seen();
        let began = tokio::time::Instant::now();
        let round = tokio::time::timeout(Duration::from_secs(5), meta.raft().ensure_linearizable());
        match round.await {
            Ok(Ok(_)) => serving.lock().unwrap().lease.renew(term, began, votes),
            _ => return None,
        }
    }
    if std::env::var_os("SIM_VERBOSE").is_some() {
        let m = meta.raft().metrics().borrow().clone();
        eprintln!(
            "read on {node} arrived {at:?} (lease {by_lease}): {:?} term {} last log {:?} applied {:?}",
            m.state, m.current_term, m.last_log_index, m.last_applied
        );
    }
    let sm = meta.state_machine();
    let seen = (0..NAMES)
        .filter_map(|k| {
            let entry = sm.entry(1, format!("n{k}").as_bytes()).ok().flatten()?;
            Some((k, entry.0))
        })
        .collect();
    Some(Read {
        node,
        at,
        by_lease,
        seen,
    })
}

/// The outcome of one create as its client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Acknowledged,
    /// The state machine refused it: definitely not applied.
    Refused,
    /// Unavailable, timed out, or the node crashed: may or may not have been applied.
    Unknown,
}

/// Nodes 1-3 found the log (a fixed table); 4 and 5 join through the registry.
const NODES: u64 = 3;
const ALL_NODES: u64 = 5;
const NAMES: u64 = 40;

fn inode() -> Inode {
    let mut inode = backend::testing::inode(FileType::Regular);
    (inode.atime, inode.mtime, inode.ctime) = Default::default();
    inode
}

async fn open_node(dir: &Path, node: u64, fabric: &Fabric) -> Option<Arc<RaftMeta>> {
    // A joining node starts with an empty log and initializes nothing.
    let members: BTreeMap<u64, BasicNode> = if node <= NODES {
        (1..=NODES).map(|id| (id, BasicNode::default())).collect()
    } else {
        BTreeMap::new()
    };
    let tuning = Tuning {
        snapshot_every: 40,
        keep_after_snapshot: 10,
    };
    // A restarted node may find its files still held for a moment by the tasks of its last
    // life, winding down.
    for _ in 0..50 {
        let network = SimNetwork {
            fabric: fabric.clone(),
            from: node,
        };
        // Distinct, fixed election timeouts: node 1 first, the others later.
        let election_ms = 300 + 150 * (node - 1);
        let disk = &fabric.disks[&node];
        let members = members.clone();
        match RaftMeta::open_simulated(dir, node, tuning, network, members, election_ms, disk).await
        {
            Ok(meta) => {
                fabric.lock().nodes.insert(node, meta.raft().clone());
                return Some(Arc::new(meta));
            }
            Err(e) if e.contains("already open") || e.contains("lock") => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("node {node} did not open: {e}"),
        }
    }
    None
}

/// A node that sees its tombstone stops, for good.
async fn stop_tombstoned(
    fabric: &Fabric,
    nodes: &mut BTreeMap<u64, Arc<RaftMeta>>,
    gone: &mut BTreeSet<u64>,
) {
    let tombstoned: Vec<u64> = nodes
        .keys()
        .copied()
        .filter(|n| fabric.registry.lock().removed.contains(n))
        .collect();
    for n in tombstoned {
        crash(fabric, nodes, n).await;
        gone.insert(n);
        fabric.note(&[7, n]);
    }
}

async fn crash(fabric: &Fabric, nodes: &mut BTreeMap<u64, Arc<RaftMeta>>, node: u64) {
    fabric.lock().nodes.remove(&node);
    fabric.registry.lapse(node);
    if let Some(meta) = nodes.remove(&node) {
        let _ = meta.shutdown().await;
    }
}

/// Which founding node lies (taken modulo their count), from the seed alone.
fn rng_liar(seed: u64) -> u64 {
    Rng::new(seed ^ 0x1ead).next()
}

/// Stops every node whose log stopped on an error (its disk failed), as its server would
/// exit; returns them. Such a node must say why (`RaftMeta::failed`).
async fn stop_failed(
    fabric: &Fabric,
    nodes: &mut BTreeMap<u64, Arc<RaftMeta>>,
    violations: &mut Vec<String>,
) -> Vec<u64> {
    let stopped: Vec<u64> = nodes
        .iter()
        .filter(|(_, m)| m.raft().metrics().borrow().running_state.is_err())
        .map(|(&n, _)| n)
        .collect();
    for &n in &stopped {
        let failed = nodes[&n].failed();
        if tokio::time::timeout(Duration::from_millis(1), failed)
            .await
            .is_err()
        {
            violations.push(format!(
                "node {n}'s log stopped, and `failed` did not say so"
            ));
        }
        // The server exits: the disk is as the process left it.
        fabric.disks[&n].kill();
        crash(fabric, nodes, n).await;
        fabric.note(&[12, n]);
    }
    stopped
}

/// Protocol-state documents the workload saves (`MetaOp::PutDoc`).
const DOC_KEYS: u64 = 3;

fn doc_key(key: u64) -> Vec<u8> {
    format!("node/{key}/nsm").into_bytes()
}

/// What version `version` of document `key` holds: telling the versions apart.
fn doc_body(key: u64, version: u64) -> Vec<u8> {
    format!("document {key} version {version}").into_bytes()
}

/// The request time of step 0 (one simulated second per step).
const REQUEST_EPOCH: u64 = 1_800_000_000;

/// Runs one seed for `steps` steps of the workload and checks the invariants. Call it on a
/// current-thread runtime with a paused clock (see [`run_seed`]).
pub async fn run(seed: u64, steps: usize, root: &Path, outside: OutsideModel) -> Report {
    let fabric = Fabric {
        state: Arc::new(Mutex::new(FabricState {
            rng: Rng::new(seed),
            nodes: BTreeMap::new(),
            cut: BTreeSet::new(),
            faults: Faults {
                drop_per_mille: 0,
                delay_max_ms: 5,
                late_per_mille: 0,
            },
            late: 0,
            trace: 0xcbf2_9ce4_8422_2325,
        })),
        registry: SimRegistry::default(),
        disks: (1..=ALL_NODES).map(|n| (n, SimDisk::default())).collect(),
    };
    // A node whose disk lies about syncs, from the start (`liar`).
    let liar = outside.liar.then(|| 1 + rng_liar(seed) % NODES);
    // What a disk in trouble does: fills up, or (outside the model) fails its syncs.
    let trouble = match outside.eio {
        true => Trouble::Eio,
        false => Trouble::Full,
    };
    if let Some(n) = liar {
        fabric.disks[&n].set_lying(true);
    }
    let registry = fabric.registry.clone();
    let mut rng = Rng::new(seed ^ 0x5151_5151);
    let dirs: BTreeMap<u64, PathBuf> = (1..=ALL_NODES)
        .map(|n| (n, root.join(format!("n{n}"))))
        .collect();
    let mut nodes = BTreeMap::new();
    for n in 1..=NODES {
        if let Some(meta) = open_node(&dirs[&n], n, &fabric).await {
            let _ = registry.register(n, "").await;
            nodes.insert(n, meta);
        }
    }
    // The founders' registry entry, as node 1 would have claimed it.
    let _ = registry.claim_founder(1).await;
    let _ = registry.founded(1).await;
    let changes: Arc<Mutex<Vec<Change>>> = Arc::default();
    let mut reconciling: Option<tokio::task::JoinHandle<()>> = None;
    // Nodes out of the log for good (they stopped on their tombstone).
    let mut gone: BTreeSet<u64> = BTreeSet::new();
    let outcomes: Arc<Mutex<Vec<(u64, u64, Outcome)>>> = Arc::default();
    // The request id of each create, by inode.
    let mut asked: BTreeMap<u64, RequestId> = BTreeMap::new();
    let mut votes: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut violations = Vec::new();
    let (mut crashes, mut partitions, mut power_losses) = (0, 0, 0);
    // Disks that fail (syncs refused, no room to grow) until a step, and the logs that
    // stopped on such a failure.
    let mut failing: BTreeMap<u64, usize> = BTreeMap::new();
    let (mut disk_failures, mut logs_stopped) = (0, 0);
    let mut down: BTreeMap<u64, usize> = BTreeMap::new();
    let mut next_ino = 100u64;
    let mut tasks = Vec::new();
    // Documents: the last version handed out, and the (key, version) saves acknowledged.
    let mut doc_version = 0u64;
    let saved: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    // Reads served, when each acknowledged create was acknowledged, and each running node's
    // read lease (a restarted node starts without one: it lives in memory).
    let reads: Arc<Mutex<Vec<Read>>> = Arc::default();
    let acked_at: Arc<Mutex<BTreeMap<u64, tokio::time::Instant>>> = Arc::default();
    // Keyed by the node's life: a Weak keeps its allocation, so a restarted node's new
    // `RaftMeta` never compares equal to the old one.
    let mut leases: BTreeMap<u64, (std::sync::Weak<RaftMeta>, Arc<Mutex<Serving>>)> =
        BTreeMap::new();

    let verbose = std::env::var_os("SIM_VERBOSE").is_some();
    for step in 0..steps {
        // Leaders seen now: at most one per term.
        for (&n, meta) in &nodes {
            let m = meta.raft().metrics().borrow().clone();
            if verbose {
                eprintln!(
                    "step {step} node {n} {:?} term {} vote {} last_log {:?} applied {:?} cut {:?}",
                    m.state,
                    m.current_term,
                    m.vote,
                    m.last_log_index,
                    m.last_applied.map(|l| l.index),
                    fabric.lock().cut
                );
            }
            // A node's vote never goes back, across crashes too (it is saved durably).
            let vote = (m.vote.leader_id().term, m.vote.leader_id().node_id);
            if let Some(&before) = votes.get(&n) {
                if vote < before {
                    violations.push(format!(
                        "node {n}'s vote went back from {before:?} to {vote:?}"
                    ));
                }
            }
            votes.insert(n, vote);
        }
        // Failing disks whose time is up work again.
        failing.retain(|&n, until| {
            let keep = *until > step;
            if !keep {
                fabric.disks[&n].set_trouble(Trouble::None);
            }
            keep
        });
        // A node whose log stopped on its disk exits (its server does, on `failed`); it
        // restarts once its disk works again.
        for n in stop_failed(&fabric, &mut nodes, &mut violations).await {
            logs_stopped += 1;
            let healed = failing.get(&n).copied().unwrap_or(step);
            down.insert(n, healed.max(step) + 1);
        }
        // Restarts that are due.
        let due: Vec<u64> = down
            .iter()
            .filter(|(_, &at)| at <= step)
            .map(|(&n, _)| n)
            .collect();
        for n in due {
            down.remove(&n);
            if registry.lock().removed.contains(&n) {
                gone.insert(n);
            }
            if gone.contains(&n) {
                continue;
            }
            // A node cannot start on a failing disk (redb's recovery syncs): later.
            if fabric.disks[&n].trouble() != Trouble::None {
                down.insert(n, step + 1);
                continue;
            }
            if let Some(meta) = open_node(&dirs[&n], n, &fabric).await {
                let _ = registry.register(n, "").await;
                nodes.insert(n, meta);
                fabric.note(&[1, n]);
            }
        }
        // A running node whose registration lapsed registers again (its lease keeper does).
        let lapsed: Vec<u64> = nodes
            .keys()
            .copied()
            .filter(|n| !registry.lock().alive.contains_key(n))
            .collect();
        for n in lapsed {
            let _ = registry.register(n, "").await;
        }
        stop_tombstoned(&fabric, &mut nodes, &mut gone).await;
        // The leader's membership round, one at a time, as `members::reconcile` runs it.
        if reconciling.as_ref().is_none_or(|t| t.is_finished()) {
            let leader = nodes.values().find(|m| m.leading().is_some()).cloned();
            if let Some(meta) = leader {
                let registry = registry.clone();
                let changes = Arc::clone(&changes);
                reconciling = Some(tokio::spawn(async move {
                    let round = reconcile_once(&meta, &registry);
                    if let Ok(Ok(Some(c))) =
                        tokio::time::timeout(Duration::from_secs(10), round).await
                    {
                        changes.lock().unwrap().push(c);
                    }
                }));
            }
        }
        match rng.below(100) {
            // A protocol-state document saved through a node that believes it leads, at times
            // with a version below one saved before (saves arrive out of order).
            60..=69 => {
                if let Some(n) = pick_believer(&nodes, &mut rng) {
                    let meta = Arc::clone(&nodes[&n]);
                    let key = rng.below(DOC_KEYS);
                    doc_version += 1;
                    let version = doc_version - rng.below(3).min(doc_version - 1);
                    let op = MetaOp::PutDoc {
                        key: doc_key(key),
                        version,
                        doc: doc_body(key, version),
                    };
                    let applied = meta.apply(&Batch {
                        epoch: 0,
                        preconditions: &[],
                        ops: &[op],
                    });
                    fabric.note(&[11, n, key, version, u64::from(applied.is_ok())]);
                    if applied.is_ok() {
                        // Read back at once through the node that saved it (from its overlay
                        // of what it proposed, or its state machine): never older.
                        match meta.doc(&doc_key(key)) {
                            Ok(Some((held, _))) if held >= version => {}
                            other => violations.push(format!(
                                "node {n} reads document {key} as version {:?} right after saving version {version}",
                                other.map(|d| d.map(|d| d.0))
                            )),
                        }
                        let commit = meta.commit(false);
                        let saved = Arc::clone(&saved);
                        tasks.push(tokio::spawn(async move {
                            let r = tokio::time::timeout(Duration::from_secs(5), commit).await;
                            if let Ok(Ok(())) = r {
                                saved.lock().unwrap().push((key, version));
                            }
                        }));
                    }
                }
            }
            // A create through a node that believes it leads (or any node, to see refusals).
            0..=59 => {
                let believers: Vec<u64> = nodes
                    .iter()
                    .filter(|(_, m)| m.leading().is_some() || rng.chance(100))
                    .map(|(&n, _)| n)
                    .collect();
                if let Some(&n) = believers.get(rng.below(believers.len() as u64) as usize) {
                    let meta = Arc::clone(&nodes[&n]);
                    let name = rng.below(NAMES);
                    let ino = next_ino;
                    next_ino += 1;
                    let key = format!("n{name}").into_bytes();
                    let request = RequestId {
                        secs: REQUEST_EPOCH + step as u64,
                        node: n,
                        seq: ino,
                    };
                    asked.insert(ino, request);
                    let pre = [
                        Precondition::EntryAbsent {
                            dir: 1,
                            name: key.clone(),
                        },
                        Precondition::InodeExists(ino, false),
                    ];
                    let ops = [
                        MetaOp::PutInode(ino, inode()),
                        MetaOp::PutEntry {
                            dir: 1,
                            name: key,
                            child: ino,
                            seq: ino,
                        },
                        // One simulated second per step: records expire within a run.
                        MetaOp::NoteRequest(request),
                    ];
                    let applied = meta.apply(&Batch {
                        epoch: 0,
                        preconditions: &pre,
                        ops: &ops,
                    });
                    fabric.note(&[2, n, name, ino, u64::from(applied.is_ok())]);
                    let outcomes = Arc::clone(&outcomes);
                    match applied {
                        // Refused against this node's own view: nothing was proposed.
                        Err(Error::GuardMismatch) => {
                            outcomes.lock().unwrap().push((name, ino, Outcome::Refused))
                        }
                        Err(_) => outcomes.lock().unwrap().push((name, ino, Outcome::Unknown)),
                        Ok(()) => {
                            let commit = meta.commit(false);
                            let acked_at = Arc::clone(&acked_at);
                            tasks.push(tokio::spawn(async move {
                                let r = tokio::time::timeout(Duration::from_secs(5), commit).await;
                                let outcome = match r {
                                    Ok(Ok(())) => {
                                        let now = tokio::time::Instant::now();
                                        acked_at.lock().unwrap().insert(ino, now);
                                        Outcome::Acknowledged
                                    }
                                    Ok(Err(Error::GuardMismatch)) => Outcome::Refused,
                                    _ => Outcome::Unknown,
                                };
                                outcomes.lock().unwrap().push((name, ino, outcome));
                            }));
                        }
                    }
                }
            }
            // Partition: cut one node off, or heal.
            70..=77 => {
                let mut s = fabric.lock();
                if s.cut.is_empty() {
                    let running: Vec<u64> = nodes.keys().copied().collect();
                    if !running.is_empty() {
                        let n = running[s.rng.below(running.len() as u64) as usize];
                        s.cut.insert(n);
                        partitions += 1;
                    }
                } else {
                    s.cut.clear();
                }
                let cut: Vec<u64> = s.cut.iter().copied().collect();
                drop(s);
                fabric.note(&[3, cut.first().copied().unwrap_or(0)]);
            }
            // Crash a node (the leader half the time); it restarts some steps later.
            78..=82 if down.is_empty() => {
                let leader = nodes
                    .iter()
                    .find(|(_, m)| m.leading().is_some())
                    .map(|(&n, _)| n);
                let running: Vec<u64> = nodes.keys().copied().collect();
                let n = match leader {
                    Some(l) if rng.chance(500) => l,
                    _ => running[rng.below(running.len() as u64) as usize],
                };
                if nodes.contains_key(&n) {
                    // Half the crashes lose power: the node's disk keeps only what it synced.
                    let power = rng.chance(500);
                    if verbose {
                        eprintln!("step {step}: crash node {n}, power lost: {power}");
                    }
                    // Before the shutdown: the dead process closes nothing cleanly.
                    if power {
                        // Half of them after the disk wrote some unsynced sectors, any.
                        match rng.chance(500) {
                            true => fabric.disks[&n].power_loss_keeping(&mut || rng.chance(500)),
                            false => fabric.disks[&n].power_loss(),
                        }
                        power_losses += 1;
                        fabric.note(&[13, n]);
                    } else {
                        fabric.disks[&n].kill();
                    }
                    crash(&fabric, &mut nodes, n).await;
                    down.insert(n, step + 5 + rng.below(30) as usize);
                    crashes += 1;
                    fabric.note(&[4, n]);
                }
            }
            // Change how lossy the fabric is.
            83..=87 => {
                let faults = match rng.below(4) {
                    0 => Faults {
                        drop_per_mille: 0,
                        delay_max_ms: 5,
                        late_per_mille: 0,
                    },
                    1 => Faults {
                        drop_per_mille: 20,
                        delay_max_ms: 40,
                        late_per_mille: 0,
                    },
                    2 => Faults {
                        drop_per_mille: 20,
                        delay_max_ms: 40,
                        late_per_mille: 250,
                    },
                    _ => Faults {
                        drop_per_mille: 150,
                        delay_max_ms: 120,
                        late_per_mille: 50,
                    },
                };
                fabric.lock().faults = faults;
                fabric.note(&[5, faults.drop_per_mille]);
            }
            // A new node starts and registers; the leader's round adds it.
            88..=90 => {
                let n = NODES + 1 + rng.below(ALL_NODES - NODES);
                let removed = registry.lock().removed.contains(&n);
                let fresh = !nodes.contains_key(&n) && !down.contains_key(&n) && !gone.contains(&n);
                // A node that cannot register at its start exits (`open_registered`).
                if fresh && !removed && registry.register(n, "").await.is_ok() {
                    if let Some(meta) = open_node(&dirs[&n], n, &fabric).await {
                        nodes.insert(n, meta);
                        fabric.note(&[8, n]);
                    }
                }
            }
            // An operator asks for a voter's removal, while at least 4 are voters.
            91..=92 => {
                let voters: Vec<u64> = nodes
                    .values()
                    .find(|m| m.leading().is_some())
                    .map(|m| {
                        let m = m.raft().metrics().borrow().clone();
                        m.membership_config.membership().voter_ids().collect()
                    })
                    .unwrap_or_default();
                if voters.len() >= 4 && registry.lock().removals.is_empty() {
                    let n = voters[rng.below(voters.len() as u64) as usize];
                    let _ = registry.request_removal(n).await;
                    fabric.note(&[9, n]);
                }
            }
            // A node's disk is in trouble for a few steps: full (or failing its syncs).
            95..=96 if down.is_empty() && failing.is_empty() => {
                let running: Vec<u64> = nodes.keys().copied().collect();
                if !running.is_empty() {
                    let n = running[rng.below(running.len() as u64) as usize];
                    fabric.disks[&n].set_trouble(trouble);
                    failing.insert(n, step + 2 + rng.below(10) as usize);
                    disk_failures += 1;
                    fabric.note(&[15, n]);
                }
            }
            // etcd becomes unreachable, or reachable again.
            93..=94 => {
                let mut r = registry.lock();
                r.down = !r.down;
                let down = r.down;
                drop(r);
                fabric.note(&[10, u64::from(down)]);
            }
            _ => {}
        }
        // A read on a node that believes it leads, half the steps, a few ms into the step.
        if rng.chance(500) {
            if let Some(n) = pick_believer(&nodes, &mut rng) {
                let meta = Arc::clone(&nodes[&n]);
                let lease = match leases.get(&n) {
                    Some((life, lease)) if life.ptr_eq(&Arc::downgrade(&meta)) => Arc::clone(lease),
                    _ => {
                        let lease: Arc<Mutex<Serving>> = Arc::default();
                        leases.insert(n, (Arc::downgrade(&meta), Arc::clone(&lease)));
                        lease
                    }
                };
                let delay = Duration::from_millis(rng.below(30));
                let reads = Arc::clone(&reads);
                fabric.note(&[16, n]);
                tasks.push(tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Some(r) = lease_read(n, &meta, &lease).await {
                        reads.lock().unwrap().push(r);
                    }
                }));
            }
        }
        tokio::time::sleep(Duration::from_millis(1 + rng.below(60))).await;
    }

    // Quiet: heal, restart everyone, wait for the clients and for every node to apply all.
    {
        let mut s = fabric.lock();
        s.cut.clear();
        s.faults = Faults {
            drop_per_mille: 0,
            delay_max_ms: 2,
            late_per_mille: 0,
        };
    }
    registry.lock().down = false;
    for (n, _) in std::mem::take(&mut failing) {
        fabric.disks[&n].set_trouble(Trouble::None);
    }
    for n in stop_failed(&fabric, &mut nodes, &mut violations).await {
        logs_stopped += 1;
        down.insert(n, steps);
    }
    for n in std::mem::take(&mut down).into_keys() {
        if registry.lock().removed.contains(&n) {
            gone.insert(n);
        }
        if gone.contains(&n) {
            continue;
        }
        if let Some(meta) = open_node(&dirs[&n], n, &fabric).await {
            let _ = registry.register(n, "").await;
            nodes.insert(n, meta);
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    if let Some(t) = reconciling.take() {
        let _ = t.await;
    }
    // Membership rounds until there is nothing left to do: every running node a voter, every
    // requested removal done (and its node stopped).
    let mut settled = false;
    for _ in 0..60 {
        for &n in nodes.keys() {
            let _ = registry.register(n, "").await;
        }
        stop_tombstoned(&fabric, &mut nodes, &mut gone).await;
        let Some(meta) = nodes.values().find(|m| m.leading().is_some()).cloned() else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let round = reconcile_once(&meta, &registry);
        match tokio::time::timeout(Duration::from_secs(10), round).await {
            Ok(Ok(None)) => {
                settled = true;
                break;
            }
            Ok(Ok(Some(c))) => changes.lock().unwrap().push(c),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    if !settled {
        violations.push("membership did not settle within 60 rounds of quiet".into());
    }
    let converged = converge(&nodes).await;
    if !converged {
        violations.push("the nodes did not converge within 60 s of quiet".into());
    }
    let running: BTreeSet<u64> = nodes.keys().copied().collect();
    for (&n, meta) in &nodes {
        let m = meta.raft().metrics().borrow().clone();
        let voters: BTreeSet<u64> = m.membership_config.membership().voter_ids().collect();
        if voters != running {
            violations.push(format!(
                "node {n} sees voters {voters:?}, but the running nodes are {running:?}"
            ));
        }
        for g in &gone {
            if m.membership_config.membership().get_node(g).is_some() {
                violations.push(format!("removed node {g} is a member again on node {n}"));
            }
        }
    }

    // The invariants.
    let outcomes = outcomes.lock().unwrap().clone();
    let count = |o| outcomes.iter().filter(|(_, _, x)| *x == o).count();
    let mut bound: BTreeMap<u64, u64> = BTreeMap::new();
    for (name, ino, o) in &outcomes {
        if *o == Outcome::Acknowledged {
            if let Some(other) = bound.insert(*name, *ino) {
                violations.push(format!(
                    "name n{name} acknowledged for inodes {other} and {ino}"
                ));
            }
        }
    }
    // Reads are linearizable: each holds every create acknowledged before it arrived.
    let acked_at = acked_at.lock().unwrap().clone();
    let reads = std::mem::take(&mut *reads.lock().unwrap());
    for r in &reads {
        for (name, ino, o) in &outcomes {
            let Some(&at) = acked_at.get(ino) else {
                continue;
            };
            if *o == Outcome::Acknowledged && at < r.at && r.seen.get(name) != Some(ino) {
                violations.push(format!(
                    "node {} read at {:?} ({}) without n{name} -> {ino}, acknowledged at {:?}",
                    r.node,
                    r.at,
                    if r.by_lease {
                        "in its lease"
                    } else {
                        "after a round"
                    },
                    at
                ));
            }
        }
    }
    let reads_by_lease = reads.iter().filter(|r| r.by_lease).count();
    let mut exports = Vec::new();
    for (&n, meta) in &nodes {
        let sm = meta.state_machine();
        for (name, ino, o) in &outcomes {
            let entry = sm.entry(1, format!("n{name}").as_bytes()).ok().flatten();
            let has = sm.inode(*ino).ok().flatten().is_some();
            match o {
                Outcome::Acknowledged if entry.map(|e| e.0) != Some(*ino) || !has => violations
                    .push(format!(
                        "node {n} lost acknowledged create n{name} -> {ino}"
                    )),
                Outcome::Refused if has => {
                    violations.push(format!("node {n} holds refused create n{name} -> {ino}"))
                }
                _ => {}
            }
            // At most once: a create's record is there exactly when its effect is, until it
            // expires (no record younger than the window is gone; none of a refusal exists).
            let Some(&request) = asked.get(ino) else {
                continue;
            };
            let ran = sm.request_ran(request);
            match (o, ran) {
                (_, Err(e)) => violations.push(format!("node {n}: request records: {e}")),
                (Outcome::Acknowledged, Ok(false))
                    if request.secs + REQUEST_KEEP_SECS >= REQUEST_EPOCH + steps as u64 =>
                {
                    violations.push(format!(
                        "node {n} lost the record of acknowledged create n{name} -> {ino}"
                    ))
                }
                (Outcome::Refused, Ok(true)) => violations.push(format!(
                    "node {n} records refused create n{name} -> {ino} as run"
                )),
                _ => {}
            }
        }
        // Documents: never older than the newest acknowledged save of their key, and always
        // the body saved with the version they hold.
        for key in 0..DOC_KEYS {
            let newest = saved
                .lock()
                .unwrap()
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| *v)
                .max();
            match (sm.doc(&doc_key(key)), newest) {
                (Err(e), _) => violations.push(format!("node {n}: documents: {e}")),
                (Ok(None), Some(v)) => violations.push(format!(
                    "node {n} lost document {key}, acknowledged at version {v}"
                )),
                (Ok(Some((held, _))), Some(v)) if held < v => violations.push(format!(
                    "node {n} holds document {key} at version {held}, below acknowledged {v}"
                )),
                (Ok(Some((held, body))), _) if body != doc_body(key, held) => {
                    violations.push(format!(
                        "node {n} holds document {key} version {held} with another version's body"
                    ))
                }
                _ => {}
            }
        }
        match sm.export("") {
            Ok((batch, _)) => exports.push((n, wire_bytes(&batch))),
            Err(e) => violations.push(format!("node {n}: export failed: {e}")),
        }
    }
    if let Some((first, bytes)) = exports.first() {
        for (n, other) in &exports[1..] {
            if other != bytes {
                violations.push(format!("node {n}'s metadata differs from node {first}'s"));
            }
        }
    }
    for (&n, _) in nodes.iter() {
        fabric.note(&[6, n]);
    }
    for meta in nodes.values() {
        let _ = meta.shutdown().await;
    }
    let (trace, late_requests) = {
        let s = fabric.lock();
        (s.trace, s.late)
    };
    let docs_saved = saved.lock().unwrap().len();
    let changes = changes.lock().unwrap().clone();
    let joins = changes
        .iter()
        .filter(|c| matches!(c, Change::Added(_)))
        .count();
    Report {
        joins,
        removals: changes.len() - joins,
        seed,
        trace,
        creates_acknowledged: count(Outcome::Acknowledged),
        creates_refused: count(Outcome::Refused),
        creates_unknown: count(Outcome::Unknown),
        docs_saved,
        reads_by_lease,
        reads_by_round: reads.len() - reads_by_lease,
        crashes,
        power_losses,
        partitions,
        late_requests,
        disk_failures,
        logs_stopped,
        violations,
    }
}

fn wire_bytes(batch: &backend::engine::wire::OwnedBatch) -> Vec<u8> {
    backend::engine::wire::encode(&batch.as_batch())
}

/// Waits (virtual time) until every node has applied the same last log entry.
async fn converge(nodes: &BTreeMap<u64, Arc<RaftMeta>>) -> bool {
    for _ in 0..600 {
        let mut applied = BTreeSet::new();
        let mut leader = false;
        for meta in nodes.values() {
            let m = meta.raft().metrics().borrow().clone();
            leader |= m.state == ServerState::Leader;
            applied.insert((m.last_applied.map(|l| l.index), m.last_log_index));
        }
        if leader && applied.len() == 1 {
            let (a, l) = applied.into_iter().next().unwrap_or_default();
            if a == l {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Runs one seed on a fresh current-thread runtime with a paused clock, in a fresh directory
/// under `scratch` (use a tmpfs such as /dev/shm: the state machines still fsync).
/// Faults outside the model (PROTOCOL.md §2): they break the invariants by design, so they
/// run by hand only, to see how.
#[derive(Clone, Copy, Debug, Default)]
pub struct OutsideModel {
    /// One of the founding nodes is on a disk that lies about syncs.
    pub liar: bool,
    /// A disk in trouble fails its syncs (EIO, and what they should have written is lost at
    /// the next power loss) instead of filling up.
    pub eio: bool,
}

pub fn run_seed(seed: u64, steps: usize, scratch: &Path, outside: OutsideModel) -> Report {
    let dir = scratch.join(format!("sim-{seed}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    let report = runtime.block_on(run(seed, steps, &dir, outside));
    drop(runtime);
    let _ = std::fs::remove_dir_all(&dir);
    report
}
