//! The metadata log: file-system metadata replicated through openraft, with the redb store of
//! `backend::local` as its state machine, behind `backend::engine::MetaStore` so the engine
//! runs over it unchanged (`ha/PROTOCOL.md`, "The metadata log").
//!
//! * [`RaftMeta::apply`] checks a batch against what this node has applied and proposed (the
//!   state machine plus [`pending::Pending`]), makes it visible to this node's reads and hands
//!   it to the proposer task, which submits batches to openraft in order. Nothing waits there.
//! * [`RaftMeta::commit`] is a future that resolves when every batch applied before it has been
//!   committed by a quorum and applied by the state machine, or fails with the reason.
//!   Openraft appends every batch queued meanwhile with one fsync ([`log`]), so concurrent
//!   callers share the cost.
//! * The state machine re-checks each batch's epoch and preconditions when it applies it, on
//!   every voter alike; a refusal comes back as the commit's error, and this node forgets its
//!   not yet applied batches (its caches are dropped by the engine too).
//!
//! Today the group has one voter: [`RaftMeta::open`] initializes a node as a cluster of one, and
//! the network refuses every peer. Joining nodes, forwarding from followers and the inter-node
//! transport are the rest of issue 17.

pub mod log;
pub mod net;
pub mod pending;
pub mod rpc;
#[doc(hidden)]
pub mod simdisk;
pub mod sm;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use backend::engine::{check_batch, wire, Batch, Counter, Inode, MetaStore, StoredEntry};
use backend::local::LocalMeta;
use backend::{Error, Result};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft, ServerState};
use tokio::sync::{mpsc, watch};

use self::pending::Pending;

/// A log entry's payload: the metadata batches one node applied since its last proposal, in
/// order, each in its `engine::wire` form ([`encode_group`]). One entry per group is the log's
/// group commit: openraft 0.9 appends and flushes each entry on its own, so batches that
/// arrive while an entry is being flushed ride together in the next one.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Proposal(pub Vec<u8>);

/// Most batches in one entry.
pub const GROUP_MAX: usize = 512;
/// An entry takes no further batch once it holds this many bytes. With its last batch (a
/// document batch is at most `backend::engine::DOC_LEN_MAX` and a little) an entry stays
/// under 2 MiB, so an append of `max_payload_entries` (16) stays far below the frame bound
/// (`rpc::FRAME_BODY_MAX`, 64 MiB) that a follower enforces.
pub const GROUP_BYTES_MAX: usize = 1 << 20;

/// `count:u32 (len:u32 bytes)*`
pub fn encode_group(batches: &[Vec<u8>]) -> Vec<u8> {
    let len = 4 + batches.iter().map(|b| 4 + b.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&(batches.len() as u32).to_le_bytes());
    for b in batches {
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(b);
    }
    out
}

/// The batches of a group, bounded by [`GROUP_MAX`] and by the bytes present.
pub fn decode_group(bytes: &[u8]) -> std::result::Result<Vec<&[u8]>, String> {
    let (count, mut rest) = bytes.split_first_chunk::<4>().ok_or("short group")?;
    let count = u32::from_le_bytes(*count) as usize;
    if count > GROUP_MAX || count > rest.len() / 4 {
        return Err(format!("a group of {count} batches"));
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let (len, after) = rest.split_first_chunk::<4>().ok_or("short group")?;
        let len = u32::from_le_bytes(*len) as usize;
        if after.len() < len {
            return Err("a batch longer than its group".into());
        }
        let (batch, after) = after.split_at(len);
        out.push(batch);
        rest = after;
    }
    if !rest.is_empty() {
        return Err("trailing bytes after a group".into());
    }
    Ok(out)
}

/// What applying an entry did: one outcome per batch of its group (none for entries that
/// carry no batches).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Outcomes(pub Vec<Outcome>);

/// What applying an entry did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    Applied,
    /// Refused: its writer epoch is below one already applied.
    Fenced,
    /// Refused: a precondition did not hold.
    GuardMismatch,
    /// Refused: the batch did not decode.
    Malformed,
}

openraft::declare_raft_types!(
    /// The metadata log's types: u64 node ids, batches in, outcomes out.
    pub TypeConfig:
        D = Proposal,
        R = Outcomes,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// Peers are unreachable: a cluster of one has none. The inter-node transport replaces this.
pub struct NoPeers;

fn unreachable<E: std::error::Error>(target: u64) -> RPCError<u64, BasicNode, E> {
    let e = std::io::Error::other(format!("node {target}: no inter-node transport yet"));
    RPCError::Unreachable(Unreachable::new(&e))
}

pub struct NoPeer(u64);

impl RaftNetworkFactory<TypeConfig> for NoPeers {
    type Network = NoPeer;
    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> NoPeer {
        NoPeer(target)
    }
}

impl RaftNetwork<TypeConfig> for NoPeer {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> std::result::Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>>
    {
        Err(unreachable(self.0))
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> std::result::Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        Err(unreachable(self.0))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> std::result::Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        Err(RPCError::Network(NetworkError::new(
            &std::io::Error::other("no inter-node transport yet"),
        )))
    }
}

/// How far this node's proposals got, for the commit futures.
#[derive(Clone, Debug, Default)]
struct Progress {
    /// Every proposal up to this one has finished (committed and applied, or failed).
    done: u64,
    /// Recent failed ranges of proposals `(from, upto, why)`.
    failed: Vec<(u64, u64, Error)>,
    /// Failures up to here may have been dropped from `failed`.
    forgotten: u64,
}

const FAILURES_KEPT: usize = 64;

impl Progress {
    fn outcome(&self, target: u64) -> Option<Result<()>> {
        if target == 0 {
            return Some(Ok(())); // nothing was proposed
        }
        if let Some((_, _, e)) = self
            .failed
            .iter()
            .find(|(from, upto, _)| (*from..=*upto).contains(&target))
        {
            return Some(Err(e.clone()));
        }
        if self.done < target {
            return None;
        }
        Some(if target <= self.forgotten {
            Err(Error::Io(
                "the outcome of this metadata commit is no longer known".into(),
            ))
        } else {
            Ok(())
        })
    }

    fn fail(&mut self, from: u64, upto: u64, e: Error) {
        if self.failed.len() >= FAILURES_KEPT {
            let (_, upto, _) = self.failed.remove(0);
            self.forgotten = self.forgotten.max(upto);
        }
        self.failed.push((from, upto, e));
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts kept by the proposer and completion tasks, for metrics.
#[derive(Default)]
struct Counts {
    /// Log entries proposed, and the batches they carried (the group size is their ratio).
    entries: std::sync::atomic::AtomicU64,
    batches: std::sync::atomic::AtomicU64,
    /// Batches whose commit failed.
    failed: std::sync::atomic::AtomicU64,
    /// Time from proposing an entry to its outcome, summed, in microseconds.
    commit_micros: std::sync::atomic::AtomicU64,
}

/// A [`MetaStore`] whose batches go through the metadata log.
pub struct RaftMeta {
    counts: Arc<Counts>,
    node: u64,
    sm: Arc<LocalMeta>,
    pending: Arc<Mutex<Pending>>,
    proposals: mpsc::UnboundedSender<(u64, Vec<u8>)>,
    progress: watch::Receiver<Progress>,
    raft: Raft<TypeConfig>,
    /// The runtime the log's tasks run on.
    runtime: tokio::runtime::Handle,
    /// The cluster key, for calls to other nodes (`None` for a cluster of one).
    key: Option<rpc::ClusterKey>,
    /// Where the log's server finds the handler of shipped calls.
    calls: net::CallSlot,
    /// The term in which this node's writer (the engine above it) was made current, or 0 when
    /// batches are not tied to a term (a store used without the cluster layer).
    writer_term: AtomicU64,
    /// The term this node leads in, or 0 while it does not lead, and the number of voters
    /// (kept by a metrics watcher, so the request path reads atomics, not the metrics).
    leading: Arc<AtomicU64>,
    voters: Arc<AtomicU64>,
    snapshots_installed: Arc<AtomicU64>,
    /// Vote requests this node received from other nodes (counted before each is answered).
    votes_seen: Arc<AtomicU64>,
    /// Which peers answer this node's log calls ([`net::Heard`]).
    heard: net::Heard,
}

/// The other voters of a metadata log, and how to reach and serve them.
pub struct Cluster {
    /// Where this node serves the others (its log port).
    pub listener: tokio::net::TcpListener,
    /// Every voter, this node included: id -> `host:port` of its log port.
    pub members: BTreeMap<u64, String>,
    pub key: rpc::ClusterKey,
}

/// When the log is compacted.
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    /// Entries between snapshots (each entry carries a group of batches).
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot, for peers that are a little behind.
    pub keep_after_snapshot: u64,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            snapshot_every: 50_000,
            keep_after_snapshot: 1_000,
        }
    }
}

/// Election timeouts of a real node. openraft makes a follower refuse votes for
/// `ELECTION_MAX_MS` after it last heard from its leader (its `leader_lease`), which is what
/// [`READ_LEASE`] rests on.
const ELECTION_MIN_MS: u64 = 300;
const ELECTION_MAX_MS: u64 = 600;

/// How long after a heartbeat round that started at `t` and was acknowledged by a quorum the
/// leader may answer reads without another round. Every follower that acknowledged refuses
/// votes until `ELECTION_MAX_MS` after it accepted the heartbeat (openraft's follower lease,
/// kept across a restart: a node starts with its stored vote fresh). The leader itself does
/// not refuse: it votes for a higher-term candidate whose log is as long as its own, and a
/// candidate can win with that vote. So any vote request this node receives ends its lease
/// ([`RaftMeta::votes_seen`]). Every quorum that could elect another leader holds either an
/// acknowledging follower or this node, so none can before `t + ELECTION_MAX_MS` without
/// this node seeing a vote request first; less than half of that leaves room for clocks that
/// run at different rates.
pub const READ_LEASE: Duration = Duration::from_millis(ELECTION_MAX_MS * 2 / 5);

/// A leader's read lease: the term, start and vote count ([`RaftMeta::votes_seen`]) of its
/// latest heartbeat round that a quorum acknowledged. Reads need no round of their own while
/// it [`holds`](ReadLease::holds). Kept by the caller that runs the rounds (`forward`'s read
/// barrier; the simulation's reads), so both run this one rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadLease(Option<(u64, tokio::time::Instant, u64)>);

impl ReadLease {
    /// Whether a read at `now`, by a leader of `term` that has seen `votes_seen` vote
    /// requests, may skip the round: within [`READ_LEASE`] of the last acknowledged round's
    /// start, in the same term, with no vote request since that round began.
    pub fn holds(&self, term: u64, votes_seen: u64, now: tokio::time::Instant) -> bool {
        self.0.is_some_and(|(t, began, votes)| {
            t == term && votes == votes_seen && now < began + READ_LEASE
        })
    }

    /// Records a round a quorum acknowledged: it began at `began` (before its heartbeats
    /// left), in `term`, when this node had seen `votes_seen` vote requests.
    pub fn renew(&mut self, term: u64, began: tokio::time::Instant, votes_seen: u64) {
        self.0 = Some((term, began, votes_seen));
    }
}

/// How long a cluster of one may take to elect itself and replay its log at open.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// The log's file in a node's data directory.
const LOG_FILE: &str = "raft-log.redb";

impl RaftMeta {
    /// Opens the log in `dir` (`raft-log.redb`, `meta.redb` as the state machine,
    /// `raft-snapshot`) as node `node`, a cluster of one: initialized on the first open,
    /// leader and caught up with its log before this returns. A `meta.redb` written without
    /// the log (a single node of an earlier build) is the starting state.
    pub async fn open(dir: &Path, node: u64) -> std::result::Result<RaftMeta, String> {
        Self::open_with(dir, node, Tuning::default()).await
    }

    /// [`RaftMeta::open`] with other snapshot settings (tests use small ones).
    pub async fn open_with(
        dir: &Path,
        node: u64,
        tuning: Tuning,
    ) -> std::result::Result<RaftMeta, String> {
        let members = BTreeMap::from([(node, BasicNode::default())]);
        let meta = Self::open_inner(dir, node, tuning, NoPeers, members, None).await?;
        meta.raft
            .wait(Some(OPEN_TIMEOUT))
            .state(ServerState::Leader, "a cluster of one leads")
            .await
            .map_err(|e| format!("the metadata log elected no leader: {e}"))?;
        // Everything in the log is applied before the engine reads the state machine.
        meta.caught_up().await?;
        Ok(meta)
    }

    /// Opens the log as node `node` of a cluster whose voters are `cluster.members` (node id
    /// -> address of its log port), reached over TCP with frames signed by the cluster key
    /// ([`rpc`]); serves the other nodes on `cluster.listener`. The lowest node id initializes
    /// the group on its first start. Returns once a leader is known.
    pub async fn open_cluster(
        dir: &Path,
        node: u64,
        tuning: Tuning,
        cluster: Cluster,
    ) -> std::result::Result<RaftMeta, String> {
        let meta = Self::open_cluster_started(dir, node, tuning, cluster).await?;
        meta.wait_for_leader().await?;
        Ok(meta)
    }

    /// [`RaftMeta::open_cluster`] without waiting for a leader. `cluster.members` may be
    /// empty: the node then waits to be added by the leader (`crate::members`), and
    /// initializes nothing.
    pub async fn open_cluster_started(
        dir: &Path,
        node: u64,
        tuning: Tuning,
        cluster: Cluster,
    ) -> std::result::Result<RaftMeta, String> {
        let members: BTreeMap<u64, BasicNode> = cluster
            .members
            .iter()
            .map(|(&id, addr)| (id, BasicNode::new(addr)))
            .collect();
        let heard = net::Heard::default();
        let network = net::TcpNetwork::new(cluster.key.clone(), heard.clone());
        let serving = Some((cluster.listener, cluster.key, heard));
        Self::open_inner(dir, node, tuning, network, members, serving).await
    }

    /// Waits (at most 30 s) until this node knows a leader.
    pub async fn wait_for_leader(&self) -> std::result::Result<(), String> {
        self.raft
            .wait(Some(OPEN_TIMEOUT))
            .metrics(|m| m.current_leader.is_some(), "a leader is known")
            .await
            .map(|_| ())
            .map_err(|e| format!("the metadata log found no leader: {e}"))
    }

    /// How long, at `now`, node `node` has left a log call of this node unanswered (zero when
    /// it answered the last one, or this node does not call it: see [`net::Heard`]).
    pub fn silent_for(&self, node: u64, now: std::time::Instant) -> Duration {
        self.heard.silent_for(node, now)
    }

    /// Whether this node's state machine has applied a batch of the call `id` (a call that
    /// another leader ran; see `backend::engine::on_behalf_of`).
    pub fn request_ran(&self, id: backend::engine::RequestId) -> Result<bool> {
        self.sm.request_ran(id)
    }

    /// Whether `dir` holds a metadata log (opened before, by any node).
    pub fn has_log(dir: &Path) -> bool {
        dir.join(LOG_FILE).exists()
    }

    /// Waits until this node has applied every entry of its log.
    /// Commits an empty entry as this node's leader and waits until it is applied here: then
    /// every entry committed before it, by any leader in any term, is applied here too. A
    /// leader runs this before it serves (`forward`'s take-over). openraft 0.9 restarts a node
    /// whose saved vote is its own committed vote as the leader of that same term, appending
    /// nothing, and the commit index is not saved: until an entry of its own commits, such a
    /// leader's read index (`ensure_linearizable`) can be older than entries it acknowledged
    /// before the restart, and its state machine (durable only once in 64 applies) older
    /// still. Found by the simulation's reads.
    pub async fn establish(&self) -> std::result::Result<(), String> {
        self.raft
            .client_write(Proposal(encode_group(&[])))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    pub async fn caught_up(&self) -> std::result::Result<(), String> {
        let last = self.raft.metrics().borrow().last_log_index;
        self.raft
            .wait(Some(OPEN_TIMEOUT))
            .applied_index_at_least(last, "the log is replayed")
            .await
            .map(|_| ())
            .map_err(|e| format!("the metadata log did not replay: {e}"))
    }

    /// A node of the deterministic simulation (`ha/tests/simulation/`): `network` is the simulated
    /// fabric, appends are not flushed (a simulated crash is a process crash), and the election
    /// timeout is fixed per node (`election_ms`), because openraft draws it from a thread-local
    /// generator no seed reaches.
    #[doc(hidden)]
    pub async fn open_simulated<N: RaftNetworkFactory<TypeConfig>>(
        dir: &Path,
        node: u64,
        tuning: Tuning,
        network: N,
        members: BTreeMap<u64, BasicNode>,
        election_ms: u64,
        disk: &simdisk::SimDisk,
    ) -> std::result::Result<RaftMeta, String> {
        let sim = Some((election_ms, disk));
        Self::open_inner_with(dir, node, tuning, network, members, None, sim).await
    }

    async fn open_inner<N: RaftNetworkFactory<TypeConfig>>(
        dir: &Path,
        node: u64,
        tuning: Tuning,
        network: N,
        members: BTreeMap<u64, BasicNode>,
        serving: Option<(tokio::net::TcpListener, rpc::ClusterKey, net::Heard)>,
    ) -> std::result::Result<RaftMeta, String> {
        Self::open_inner_with(dir, node, tuning, network, members, serving, None).await
    }

    async fn open_inner_with<N: RaftNetworkFactory<TypeConfig>>(
        dir: &Path,
        node: u64,
        tuning: Tuning,
        network: N,
        members: BTreeMap<u64, BasicNode>,
        serving: Option<(tokio::net::TcpListener, rpc::ClusterKey, net::Heard)>,
        simulated: Option<(u64, &simdisk::SimDisk)>,
    ) -> std::result::Result<RaftMeta, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let (election_min, election_max) = match simulated {
            Some((ms, _)) => (ms, ms + 1),
            None => (ELECTION_MIN_MS, ELECTION_MAX_MS),
        };
        let config = openraft::Config {
            cluster_name: "sluice-metadata".into(),
            heartbeat_interval: 100,
            election_timeout_min: election_min,
            election_timeout_max: election_max,
            // Bounds an append frame: 16 entries of at most GROUP_MAX batches and about
            // GROUP_BYTES_MAX bytes each.
            max_payload_entries: 16,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(tuning.snapshot_every),
            max_in_snapshot_log_to_keep: tuning.keep_after_snapshot,
            ..Default::default()
        }
        .validate()
        .map_err(|e| e.to_string())?;
        // The voter count, kept by `watch_leading` once the log runs; the log store reads it.
        let voters = Arc::new(AtomicU64::new(0));
        let (log, meta) = match simulated {
            None => (
                log::LogStore::open(&dir.join(LOG_FILE), Arc::clone(&voters))?,
                LocalMeta::open(&dir.join("meta.redb")),
            ),
            Some((_, disk)) => (
                log::LogStore::open_simulated(disk.open(&dir.join(LOG_FILE))?)?,
                LocalMeta::open_on(disk.open(&dir.join("meta.redb"))?),
            ),
        };
        // Never the leader of an old term after a restart (`LogStore::step_down_at_open`).
        let stepped_down = log.step_down_at_open(node)?;
        let sm_meta = Arc::new(meta.map_err(|e| e.to_string())?);
        let sm = sm::StateMachine::open(Arc::clone(&sm_meta), &dir.join("raft-snapshot"))?;
        let snapshots_installed = Arc::clone(&sm.installed);
        let raft = Raft::new(node, Arc::new(config), network, log, sm)
            .await
            .map_err(|e| e.to_string())?;
        if stepped_down {
            // It led before: ask for the next term now rather than after a timeout (a cluster
            // of one wins it at once; a cluster's followers may still refuse while their
            // lease of the old term runs, and the election timer retries).
            raft.trigger().elect().await.map_err(|e| e.to_string())?;
        }
        let calls = net::CallSlot::default();
        let votes_seen = Arc::new(AtomicU64::new(0));
        let cluster_key = serving.as_ref().map(|(_, key, _)| key.clone());
        let heard = serving
            .as_ref()
            .map_or_else(net::Heard::default, |(_, _, heard)| heard.clone());
        if let Some((listener, key, _)) = serving {
            tokio::spawn(net::serve(
                listener,
                raft.clone(),
                key,
                Arc::clone(&calls),
                Arc::clone(&votes_seen),
            ));
        }
        let leading = Arc::new(AtomicU64::new(0));
        // Read now, not left to the watcher's first turn: a read barrier must never see a
        // cluster of several as one.
        let count = raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .count() as u64;
        voters.store(count, Ordering::Release);
        tokio::spawn(watch_leading(
            raft.clone(),
            Arc::clone(&leading),
            Arc::clone(&voters),
        ));
        let first = members.keys().next().copied();
        if !raft.is_initialized().await.map_err(|e| e.to_string())? && first == Some(node) {
            raft.initialize(members)
                .await
                .map_err(|e| format!("initialize the metadata log: {e}"))?;
        }
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (proposals, queued) = mpsc::unbounded_channel();
        let (submitted_tx, submitted) = mpsc::unbounded_channel();
        let (progress_tx, progress) = watch::channel(Progress::default());
        let counts = Arc::new(Counts::default());
        tokio::spawn(propose(
            raft.clone(),
            queued,
            submitted_tx,
            Arc::clone(&counts),
        ));
        tokio::spawn(complete(
            submitted,
            Arc::clone(&pending),
            progress_tx,
            Arc::clone(&counts),
        ));
        Ok(RaftMeta {
            counts,
            node,
            sm: sm_meta,
            pending,
            proposals,
            progress,
            raft,
            runtime: tokio::runtime::Handle::current(),
            key: cluster_key,
            calls,
            writer_term: AtomicU64::new(0),
            leading,
            voters,
            snapshots_installed,
            votes_seen,
            heard,
        })
    }

    /// How many vote requests this node has received from other nodes. Counted before each is
    /// handed to the log, so a read lease taken before a vote request is seen as ended by
    /// the time that request can change anything ([`READ_LEASE`]).
    pub fn votes_seen(&self) -> u64 {
        self.votes_seen.load(Ordering::SeqCst)
    }

    /// Stops the log (its files can be opened again once this returns).
    pub async fn shutdown(&self) -> std::result::Result<(), String> {
        self.raft.shutdown().await.map_err(|e| e.to_string())
    }

    /// Resolves, with the reason, if the log stops on an error: its storage failed (a sync or
    /// a write refused: a bad or full disk) or its core panicked. Never for a requested
    /// shutdown. A node whose log stopped can change no metadata until it is restarted, so its
    /// server exits and leaves the restart to its supervisor.
    pub fn failed(&self) -> impl Future<Output = String> + Send + 'static {
        // The server metrics change only with the vote, role, leader or membership (not with
        // every entry, as the full metrics do), and end when the core does; the full metrics
        // then hold why it ended.
        let (mut server, metrics) = (self.raft.server_metrics(), self.raft.metrics());
        async move {
            while server.changed().await.is_ok() {}
            let why = match &metrics.borrow().running_state {
                // A shutdown: not a failure.
                Err(openraft::error::Fatal::Stopped) => None,
                Err(e) => Some(e.to_string()),
                Ok(()) => Some("the log's core ended without saying why (it panicked)".into()),
            };
            match why {
                Some(why) => why,
                None => std::future::pending().await,
            }
        }
    }

    /// This node's id in the log.
    pub fn node(&self) -> u64 {
        self.node
    }

    /// The state machine's store (read-only use: the nvme data store rebuilds its free space
    /// from the inodes it holds).
    pub fn state_machine(&self) -> &LocalMeta {
        &self.sm
    }

    /// The openraft handle, for metrics and (later) membership changes.
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// The cluster key (`None` for a cluster of one, which talks to nobody).
    pub fn key(&self) -> Option<&rpc::ClusterKey> {
        self.key.as_ref()
    }

    /// Makes `handler` answer the file-system calls other nodes ship here. Once only.
    pub fn serve_calls(&self, handler: Weak<dyn net::Calls>) {
        if self.calls.set(handler).is_err() {
            tracing::warn!("metadata log: a second call handler was ignored");
        }
    }

    /// Ties this node's batches to `term`: from now on a batch is refused (`Unavailable`)
    /// unless this node leads in `term`. The cluster layer calls it once the writer above has
    /// dropped what it cached before the term, so a writer never proposes from a view older
    /// than the term it leads in.
    pub fn set_writer_term(&self, term: u64) {
        self.writer_term.store(term, Ordering::Release);
    }

    /// The term this node leads in, or `None`.
    pub fn leading(&self) -> Option<u64> {
        Some(self.leading.load(Ordering::Acquire)).filter(|&t| t != 0)
    }

    /// The voters of the log, as this node last saw its membership.
    pub fn voters(&self) -> u64 {
        self.voters.load(Ordering::Acquire)
    }
}

/// Keeps `leading` at the term this node leads in (0 while it does not) and `voters` at the
/// size of the membership, from the server metrics (which change with the vote, role, leader
/// or membership only, not with every entry).
async fn watch_leading(raft: Raft<TypeConfig>, leading: Arc<AtomicU64>, voters: Arc<AtomicU64>) {
    let mut metrics = raft.server_metrics();
    loop {
        {
            let m = metrics.borrow_and_update();
            let term = if m.state == ServerState::Leader {
                m.vote.leader_id().get_term()
            } else {
                0
            };
            // Voters first: whoever sees this node lead sees the membership it leads.
            let count = m.membership_config.membership().voter_ids().count() as u64;
            voters.store(count, Ordering::Release);
            leading.store(term, Ordering::Release);
        }
        if metrics.changed().await.is_err() {
            leading.store(0, Ordering::Release);
            return;
        }
    }
}

/// Entries in flight in openraft at once: enough to keep the log busy, few enough that
/// batches arriving meanwhile gather in the next group instead of queueing one by one.
const ENTRIES_IN_FLIGHT: usize = 2;

/// Batches `first..=last`, submitted as one entry.
struct Submission {
    first: u64,
    last: u64,
    at: std::time::Instant,
    receiver: Submitted,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

/// Submits the applied batches to openraft in order, as groups: everything queued when an
/// entry slot is free goes into one entry.
async fn propose(
    raft: Raft<TypeConfig>,
    mut queued: mpsc::UnboundedReceiver<(u64, Vec<u8>)>,
    submitted: mpsc::UnboundedSender<Submission>,
    counts: Arc<Counts>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let slots = Arc::new(tokio::sync::Semaphore::new(ENTRIES_IN_FLIGHT));
    while let Some((first, bytes)) = queued.recv().await {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        // Everything that queued while waiting for the slot rides along.
        let mut size = bytes.len();
        let (mut last, mut group) = (first, vec![bytes]);
        while group.len() < GROUP_MAX && size < GROUP_BYTES_MAX {
            match queued.try_recv() {
                Ok((seq, bytes)) => {
                    last = seq;
                    size += bytes.len();
                    group.push(bytes);
                }
                Err(_) => break,
            }
        }
        counts.entries.fetch_add(1, Relaxed);
        counts.batches.fetch_add(group.len() as u64, Relaxed);
        let at = std::time::Instant::now();
        let receiver = raft.client_write_ff(Proposal(encode_group(&group))).await;
        let submission = Submission {
            first,
            last,
            at,
            receiver,
            _slot: slot,
        };
        if submitted.send(submission).is_err() {
            return;
        }
    }
}

type Submitted = std::result::Result<
    <<TypeConfig as openraft::RaftTypeConfig>::Responder as openraft::raft::responder::Responder<
        TypeConfig,
    >>::Receiver,
    openraft::error::Fatal<u64>,
>;

fn outcome_error(outcome: Outcome) -> Option<Error> {
    match outcome {
        Outcome::Applied => None,
        Outcome::Fenced => Some(Error::Fenced),
        Outcome::GuardMismatch => Some(Error::GuardMismatch),
        Outcome::Malformed => Some(Error::Io("a metadata batch did not decode".into())),
    }
}

/// Waits for each entry's outcome, in order, and publishes the progress batch by batch.
async fn complete(
    mut submitted: mpsc::UnboundedReceiver<Submission>,
    pending: Arc<Mutex<Pending>>,
    progress: watch::Sender<Progress>,
    counts: Arc<Counts>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    while let Some(s) = submitted.recv().await {
        // One result per batch first..=last, or one error for the whole entry.
        let outcomes: std::result::Result<Vec<Outcome>, Error> = match s.receiver {
            Err(fatal) => Err(Error::Io(format!("the metadata log stopped: {fatal}"))),
            Ok(receiver) => match receiver.await {
                Err(_) => Err(Error::Unavailable),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "metadata proposal not committed");
                    Err(Error::Unavailable)
                }
                Ok(Ok(response)) => Ok(response.data.0),
            },
        };
        let micros = u64::try_from(s.at.elapsed().as_micros()).unwrap_or(u64::MAX);
        counts.commit_micros.fetch_add(micros, Relaxed);
        let expected = (s.last - s.first + 1) as usize;
        // The batches that failed, each with its reason. A whole entry that was not committed
        // fails every batch in it (its fate is unknown: `Unavailable`); otherwise each batch
        // has its own outcome from the state machine. Batches of later entries are not failed
        // here: the state machine re-checks each, and they get their own outcomes.
        let failures: Vec<(u64, u64, Error)> = match outcomes {
            Err(e) => vec![(s.first, s.last, e)],
            Ok(list) if list.len() != expected => vec![(
                s.first,
                s.last,
                Error::Io(format!("{} outcomes for {expected} batches", list.len())),
            )],
            Ok(list) => (s.first..=s.last)
                .zip(list)
                .filter_map(|(seq, o)| outcome_error(o).map(|e| (seq, seq, e)))
                .collect(),
        };
        if failures.is_empty() {
            lock(&pending).settle(s.last);
            progress.send_modify(|p| p.done = s.last);
            continue;
        }
        let failed: u64 = failures.iter().map(|(from, upto, _)| upto - from + 1).sum();
        counts.failed.fetch_add(failed, Relaxed);
        // What this node applied after a failed batch was checked against it: the state
        // machine is the truth again, and this node's reads see only what it applied.
        lock(&pending).clear();
        for (from, upto, e) in &failures {
            tracing::error!(error = %e, from, upto, "metadata batches failed");
        }
        progress.send_modify(|p| {
            p.done = s.last;
            for (from, upto, e) in failures {
                p.fail(from, upto, e);
            }
        });
    }
}

impl RaftMeta {
    fn inode_in(&self, p: &Pending, ino: u64) -> Result<Option<Inode>> {
        match p.inodes.get(&ino) {
            Some((_, v)) => Ok(v.clone()),
            None => self.sm.inode(ino),
        }
    }

    fn entry_in(&self, p: &Pending, dir: u64, name: &[u8]) -> Result<Option<(u64, u64)>> {
        if p.names.is_empty() {
            // Nothing pending (the usual case between groups): no key to build.
            return self.sm.entry(dir, name);
        }
        match p.names.get(&(dir, name.to_vec())) {
            Some((_, v)) => Ok(*v),
            None => self.sm.entry(dir, name),
        }
    }

    fn counter_in(&self, p: &Pending, c: Counter) -> Result<Option<u64>> {
        match p.counters.get(&c) {
            Some((_, v)) => Ok(Some(*v)),
            None => self.sm.counter(c),
        }
    }
}

impl MetaStore for RaftMeta {
    const BLOCKING: bool = true;

    fn inode(&self, ino: u64) -> Result<Option<Inode>> {
        self.inode_in(&lock(&self.pending), ino)
    }

    fn entry(&self, dir: u64, name: &[u8]) -> Result<Option<(u64, u64)>> {
        self.entry_in(&lock(&self.pending), dir, name)
    }

    fn entries(&self, dir: u64, after_seq: u64, limit: usize) -> Result<Vec<StoredEntry>> {
        let p = lock(&self.pending);
        // The state machine's page, long enough that the overlay cannot hide a full page.
        let hidden = p.changes_in(dir, after_seq);
        let mut merged: BTreeMap<u64, Option<(Vec<u8>, u64)>> = self
            .sm
            .entries(dir, after_seq, limit.saturating_add(hidden))?
            .into_iter()
            .map(|e| (e.seq, Some((e.name, e.child))))
            .collect();
        if let Some(start) = after_seq.checked_add(1) {
            for (&(_, seq), (_, v)) in p.seqs.range((dir, start)..=(dir, u64::MAX)) {
                merged.insert(seq, v.clone());
            }
        }
        Ok(merged
            .into_iter()
            .filter_map(|(seq, v)| v.map(|(name, child)| StoredEntry { seq, name, child }))
            .take(limit)
            .collect())
    }

    fn counter(&self, counter: Counter) -> Result<Option<u64>> {
        self.counter_in(&lock(&self.pending), counter)
    }

    fn doc(&self, key: &[u8]) -> Result<Option<(u64, Vec<u8>)>> {
        let p = lock(&self.pending);
        let stored = self.sm.doc(key)?;
        match p.docs.get(key) {
            Some((_, (version, doc))) if stored.as_ref().is_none_or(|s| s.0 < *version) => {
                Ok(Some((*version, doc.clone())))
            }
            _ => Ok(stored),
        }
    }

    fn inode_count(&self) -> Result<u64> {
        let p = lock(&self.pending);
        let mut count = self.sm.inode_count()?;
        for (&ino, (_, v)) in &p.inodes {
            match (v.is_some(), self.sm.inode(ino)?.is_some()) {
                (true, false) => count += 1,
                (false, true) => count = count.saturating_sub(1),
                _ => {}
            }
        }
        Ok(count)
    }

    fn apply(&self, batch: &Batch<'_>) -> Result<()> {
        let term = self.writer_term.load(Ordering::Acquire);
        if term != 0 && self.leading.load(Ordering::Acquire) != term {
            // Not the leader of the term the writer above was made current in: its view may
            // be older than what a later leader wrote.
            return Err(Error::Unavailable);
        }
        let mut p = lock(&self.pending);
        let raised = {
            let p = &*p;
            check_batch(
                batch,
                |c| self.counter_in(p, c),
                |dir, name| Ok(self.entry_in(p, dir, name)?.map(|(child, _)| child)),
                |ino| Ok(self.inode_in(p, ino)?.is_some()),
            )?
        };
        let seq = p.push(batch, raised);
        // In order: the proposer submits in the order of this channel, under this lock.
        if self.proposals.send((seq, wire::encode(batch))).is_err() {
            // The log has stopped: nothing pending will ever be applied.
            p.clear();
            return Err(Error::Unavailable);
        }
        Ok(())
    }

    fn stats(&self) -> Vec<(&'static str, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        let m = self.raft.metrics().borrow().clone();
        let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
        let last = m.last_log_index.unwrap_or(0);
        // On the leader: how far the slowest other voter is behind this node's log.
        let lag_max = m.replication.as_ref().map_or(0, |r| {
            r.iter()
                .filter(|(&id, _)| id != self.node)
                .map(|(_, matched)| last.saturating_sub(matched.map_or(0, |l| l.index)))
                .max()
                .unwrap_or(0)
        });
        vec![
            ("voters", self.voters()),
            ("followers_lag_max", lag_max),
            ("term", m.current_term),
            ("leader", m.current_leader.unwrap_or(0)),
            ("is_leader", u64::from(m.state == ServerState::Leader)),
            ("last_log_index", last),
            ("applied_index", applied),
            ("apply_lag", last.saturating_sub(applied)),
            ("entries_proposed", self.counts.entries.load(Relaxed)),
            ("batches_proposed", self.counts.batches.load(Relaxed)),
            ("batches_failed", self.counts.failed.load(Relaxed)),
            ("commit_micros_sum", self.counts.commit_micros.load(Relaxed)),
            ("snapshot_index", m.snapshot.map_or(0, |l| l.index)),
            ("purged_index", m.purged.map_or(0, |l| l.index)),
            (
                "snapshots_installed",
                self.snapshots_installed.load(Relaxed),
            ),
        ]
    }

    fn commit(
        &self,
        _announced: bool,
    ) -> impl Future<Output = Result<()>> + Send + 'static + use<> {
        let target = lock(&self.pending).last;
        let mut progress = self.progress.clone();
        async move {
            loop {
                if let Some(outcome) = progress.borrow_and_update().outcome(target) {
                    return outcome;
                }
                if progress.changed().await.is_err() {
                    // The log's tasks are gone (shut down): nothing more will commit.
                    return Err(Error::Unavailable);
                }
            }
        }
    }
}

/// The `MetaStore` suite reopens a store: shut the log down, open it again on its runtime.
/// Called from outside that runtime, as the suite's functions are.
impl backend::testing::Subject for RaftMeta {
    fn reopen(self, dir: &Path) -> Option<Self> {
        let (runtime, node) = (self.runtime.clone(), self.node);
        runtime.block_on(self.shutdown()).ok()?;
        drop(self);
        // The log's flush thread lets go of its database just after the shutdown.
        for _ in 0..100 {
            match runtime.block_on(RaftMeta::open(dir, node)) {
                Ok(meta) => return Some(meta),
                Err(e) if e.contains("already open") => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => panic!("reopen the metadata log: {e}"),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_waits_for_its_batch_and_fails_if_a_batch_it_covers_failed() {
        let mut p = Progress::default();
        assert_eq!(
            p.outcome(0),
            Some(Ok(())),
            "nothing proposed, nothing to wait for"
        );
        assert_eq!(p.outcome(1), None);
        p.done = 2;
        assert_eq!(p.outcome(2), Some(Ok(())));
        // Batch 3 was refused; 4 and 5 had been checked against it.
        p.done = 3;
        p.fail(3, 5, Error::GuardMismatch);
        assert_eq!(p.outcome(2), Some(Ok(())));
        assert_eq!(p.outcome(4), Some(Err(Error::GuardMismatch)));
        p.done = 6;
        assert_eq!(p.outcome(6), Some(Ok(())));
    }

    #[test]
    fn a_commit_whose_failure_was_forgotten_is_not_told_ok() {
        let mut p = Progress::default();
        for i in 0..=FAILURES_KEPT as u64 {
            p.fail(10 * i + 1, 10 * i + 1, Error::Unavailable);
        }
        p.done = 10_000;
        // The oldest failure (batch 1) was dropped to bound the list: still an error.
        assert!(p.outcome(1).unwrap().is_err(), "failed, then forgotten");
        assert_eq!(p.outcome(5), Some(Ok(())), "in no failed range");
        assert!(p.outcome(11).unwrap().is_err(), "failed and remembered");
        assert_eq!(p.outcome(10_000), Some(Ok(())));
    }
}
