//! Cluster membership: which nodes are the metadata log's voters, decided by what is
//! registered in etcd (decision 0009).
//!
//! * A node registers itself (`/sluice/<cluster>/nodes/<id>` = its inter-node address) under
//!   an etcd lease that it keeps alive; a node whose lease lapses is **down** (failure
//!   detection), but stays a voter: only an operator removes a voter, because removing a
//!   node that is merely slow shrinks the quorum exactly when it matters.
//! * The first node of a new cluster claims `/sluice/<cluster>/founder` in an etcd
//!   transaction and initializes the log with itself as its only voter; every other node
//!   starts with an empty log and waits to be added.
//! * The log's leader runs [`reconcile`]: a registered node that is not in the log is added
//!   as a learner, caught up (snapshot and entries), then made a voter through openraft's
//!   joint consensus; a node whose removal was asked for (`/sluice/<cluster>/remove/<id>`,
//!   written by `sluice cluster leave|remove`) is taken out the same way, and the request is
//!   cleared once the change is committed. One change at a time.
//!
//! etcd sits behind [`Registry`], so tests and the simulation can stand in for it.

#[cfg(feature = "etcd")]
pub mod etcd;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers};
use serde_json::{json, Value};

use crate::metalog::RaftMeta;

/// What a node registered: its id and the address of its inter-node port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    pub node: u64,
    pub addr: String,
}

/// What [`Registry::claim_founder`] tells a starting node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Founding {
    /// This node initializes the log (unless its data directory holds it already).
    Found,
    /// This node initialized the log on an earlier start: its data directory must hold it.
    /// Started on an empty directory it would begin a second log beside the cluster's.
    FoundedEarlier,
    /// Another node founds the log: this one waits to be added.
    Join,
}

/// The control plane's view of the cluster (etcd in production).
pub trait Registry: Send + Sync + 'static {
    /// Registers `node` at `addr` under a lease this registry keeps alive from now on. Fails
    /// when another address holds `node` under a live lease (two nodes given one id).
    fn register(&self, node: u64, addr: &str) -> impl Future<Output = Result<(), String>> + Send;
    /// Claims the founding of the cluster: the first node that asks founds it (and so does
    /// that node when it asks again before it recorded [`Registry::founded`]); every other
    /// node joins.
    fn claim_founder(&self, node: u64) -> impl Future<Output = Result<Founding, String>> + Send;
    /// Records that `node` initialized the log (after [`Founding::Found`]).
    fn founded(&self, node: u64) -> impl Future<Output = Result<(), String>> + Send;
    /// Every node whose lease is live.
    fn alive(&self) -> impl Future<Output = Result<Vec<Registered>, String>> + Send;
    /// Records that `node` is to leave the log.
    fn request_removal(&self, node: u64) -> impl Future<Output = Result<(), String>> + Send;
    /// The nodes whose removal was asked for and not yet done.
    fn removals(&self) -> impl Future<Output = Result<BTreeSet<u64>, String>> + Send;
    /// Records that `node` is out of the log: clears its request and registration and leaves
    /// a tombstone, so the node (running, or started again on its old data) stops.
    fn removal_done(&self, node: u64) -> impl Future<Output = Result<(), String>> + Send;
    /// Whether `node` was removed (its tombstone).
    fn was_removed(&self, node: u64) -> impl Future<Output = Result<bool, String>> + Send;
}

/// How often the leader compares the registry with the log's membership.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(1);
/// How long a learner may take to catch up before the leader tries again later.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

/// What one round of [`reconcile_once`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Added(u64),
    Removed(u64),
}

/// On the leader, makes the log's membership follow the registry, one change per call
/// (`None`: nothing to do, or this node does not lead).
pub async fn reconcile_once<R: Registry>(
    meta: &RaftMeta,
    registry: &R,
) -> Result<Option<Change>, String> {
    if meta.leading().is_none() {
        return Ok(None);
    }
    let raft = meta.raft();
    let (voters, nodes): (BTreeSet<u64>, BTreeSet<u64>) = {
        let m = raft.metrics();
        let m = m.borrow();
        let ms = m.membership_config.membership();
        (
            ms.voter_ids().collect(),
            ms.nodes().map(|(&id, _)| id).collect(),
        )
    };
    let removals = registry.removals().await?;
    for &node in &removals {
        if !nodes.contains(&node) {
            // Out already (a leader before this one made the change and did not get to
            // record it): record it now, so the node stops.
            registry.removal_done(node).await?;
            return Ok(Some(Change::Removed(node)));
        }
        if voters.len() == 1 && voters.contains(&node) {
            // The last voter cannot leave: there would be no log.
            continue;
        }
        let change = if voters.contains(&node) {
            ChangeMembers::RemoveVoters(BTreeSet::from([node]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([node]))
        };
        raft.change_membership(change, false)
            .await
            .map_err(|e| format!("remove node {node}: {e}"))?;
        registry.removal_done(node).await?;
        tracing::info!(node, "cluster: node removed from the metadata log");
        return Ok(Some(Change::Removed(node)));
    }
    for r in registry.alive().await? {
        if voters.contains(&r.node) || removals.contains(&r.node) {
            continue;
        }
        // A removed node that registered again (its lease had lapsed while it was cut off,
        // and it renewed before it saw its tombstone) stays out.
        if registry.was_removed(r.node).await? {
            continue;
        }
        if !nodes.contains(&r.node) {
            tracing::info!(node = r.node, addr = %r.addr, "cluster: adding a node as a learner");
            let add = raft.add_learner(r.node, BasicNode::new(&r.addr), true);
            match tokio::time::timeout(CATCH_UP_TIMEOUT, add).await {
                Ok(added) => added.map_err(|e| format!("add node {}: {e}", r.node))?,
                Err(_) => return Err(format!("node {} did not catch up in time", r.node)),
            };
        } else if let Some(lag) = learner_lag(meta, r.node) {
            // A learner from an earlier round (or leader) that has not caught up: openraft
            // would make it a voter anyway, and a voter that cannot keep up (or be reached)
            // costs the quorum a member.
            if lag > PROMOTE_LAG_MAX {
                return Err(format!(
                    "node {} is a learner {lag} entries behind; it becomes a voter once it \
                     has caught up",
                    r.node
                ));
            }
        }
        raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([r.node])), false)
            .await
            .map_err(|e| format!("make node {} a voter: {e}", r.node))?;
        tracing::info!(
            node = r.node,
            "cluster: node is a voter of the metadata log"
        );
        return Ok(Some(Change::Added(r.node)));
    }
    Ok(None)
}

/// A learner is made a voter only within this many entries of the leader's log.
const PROMOTE_LAG_MAX: u64 = 64;

/// How many entries `node` lacks, as this leader last heard (`u64::MAX` when it never
/// answered).
fn learner_lag(meta: &RaftMeta, node: u64) -> Option<u64> {
    let m = meta.raft().metrics();
    let m = m.borrow();
    let matched = m
        .replication
        .as_ref()?
        .get(&node)
        .map(|l| l.map_or(0, |l| l.index));
    Some(match matched {
        Some(i) => m.last_log_index.unwrap_or(0).saturating_sub(i),
        None => u64::MAX,
    })
}

/// Runs [`reconcile_once`] every [`RECONCILE_EVERY`] for as long as `meta` lives; returns
/// when this node has been removed from the cluster.
pub async fn reconcile<R: Registry>(meta: std::sync::Weak<RaftMeta>, registry: Arc<R>) {
    let mut last_error = String::new();
    loop {
        let Some(m) = meta.upgrade() else { return };
        if registry.was_removed(m.node()).await == Ok(true) {
            return;
        }
        let again = match reconcile_once(&m, &*registry).await {
            Ok(c) => {
                last_error.clear();
                c.is_some()
            }
            Err(e) => {
                if e != last_error {
                    tracing::warn!("cluster membership: {e}");
                    last_error = e;
                }
                false
            }
        };
        drop(m);
        if !again {
            tokio::time::sleep(RECONCILE_EVERY).await;
        }
    }
}

/// Why a membership request was refused.
#[derive(Debug)]
pub enum MemberError {
    /// Membership is fixed by configuration (`cluster.members`) or this is a cluster of one.
    Static(String),
    /// No such node.
    Unknown(u64),
    /// The change would leave the log without voters.
    LastVoter(u64),
    /// The request could not be recorded (etcd unreachable).
    Unavailable(String),
}

impl std::fmt::Display for MemberError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemberError::Static(s) | MemberError::Unavailable(s) => f.write_str(s),
            MemberError::Unknown(n) => write!(f, "node {n} is not a member of the cluster"),
            MemberError::LastVoter(n) => write!(
                f,
                "node {n} is the log's last voter: a cluster needs one; add a node first"
            ),
        }
    }
}

/// A boxed future, for the object-safe [`ClusterAdmin`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the admin API asks of the cluster layer: `sluice cluster status|leave|remove`.
pub trait ClusterAdmin: Send + Sync {
    /// The members, their roles, health and log position, as JSON (docs/admin-api.md).
    fn status(&self) -> BoxFuture<'_, Value>;
    /// Asks for `node` to leave the log (this node's own id: `leave`).
    fn remove(&self, node: u64) -> BoxFuture<'_, Result<(), MemberError>>;
}

/// A member as the log sees it: address, whether a voter, the log index it has.
type LogMember = (String, bool, Option<u64>);

/// The members as the log sees them, with each one's matched log index when this node leads.
fn log_members(meta: &RaftMeta) -> (Value, BTreeMap<u64, LogMember>) {
    let m = meta.raft().metrics();
    let m = m.borrow();
    let ms = m.membership_config.membership();
    let voters: BTreeSet<u64> = ms.voter_ids().collect();
    let matched = m.replication.clone().unwrap_or_default();
    let mut out = BTreeMap::new();
    for (&id, node) in ms.nodes() {
        let at = if id == meta.node() {
            m.last_log_index
        } else {
            matched.get(&id).and_then(|l| l.map(|l| l.index))
        };
        out.insert(id, (node.addr.clone(), voters.contains(&id), at));
    }
    let log = json!({
        "term": m.current_term,
        "leader": m.current_leader,
        "last_log_index": m.last_log_index,
        "applied": m.last_applied.map(|l| l.index),
    });
    (log, out)
}

fn members_json(
    meta: &RaftMeta,
    alive: Option<&BTreeSet<u64>>,
    removals: &BTreeSet<u64>,
    source: &str,
    registry_error: Option<String>,
) -> Value {
    let (log, members) = log_members(meta);
    let leading = meta.leading().is_some();
    let last = log["last_log_index"].as_u64().unwrap_or(0);
    let list: Vec<Value> = members
        .iter()
        .map(|(&id, (addr, voter, at))| {
            let health = match alive {
                Some(a) if a.contains(&id) => "up",
                Some(_) => "down",
                None => "unknown",
            };
            let lag = if leading {
                json!(at.map(|i| last.saturating_sub(i)))
            } else {
                Value::Null
            };
            json!({
                "node": id,
                "addr": addr,
                "role": if *voter { "voter" } else { "learner" },
                "health": health,
                "leaving": removals.contains(&id),
                "log_lag": lag,
            })
        })
        .collect();
    json!({
        "node": meta.node(),
        "membership": source,
        "log": log,
        "members": list,
        "registry_error": registry_error,
    })
}

/// Membership fixed by configuration: status from the log, no changes.
pub struct StaticMembers {
    pub meta: Arc<RaftMeta>,
}

impl ClusterAdmin for StaticMembers {
    fn status(&self) -> BoxFuture<'_, Value> {
        Box::pin(async move { members_json(&self.meta, None, &BTreeSet::new(), "static", None) })
    }

    fn remove(&self, _node: u64) -> BoxFuture<'_, Result<(), MemberError>> {
        Box::pin(async move {
            Err(MemberError::Static(
                "membership is fixed by cluster.members: change the table on every node, or \
                 use cluster.etcd for nodes that join and leave"
                    .into(),
            ))
        })
    }
}

/// Membership through a [`Registry`].
pub struct RegisteredMembers<R> {
    pub meta: Arc<RaftMeta>,
    pub registry: Arc<R>,
}

impl<R: Registry> ClusterAdmin for RegisteredMembers<R> {
    fn status(&self) -> BoxFuture<'_, Value> {
        Box::pin(async move {
            let alive = self.registry.alive().await;
            let removals = self.registry.removals().await;
            match (alive, removals) {
                (Ok(a), Ok(r)) => {
                    let a: BTreeSet<u64> = a.iter().map(|r| r.node).collect();
                    members_json(&self.meta, Some(&a), &r, "etcd", None)
                }
                (Err(e), _) | (_, Err(e)) => {
                    members_json(&self.meta, None, &BTreeSet::new(), "etcd", Some(e))
                }
            }
        })
    }

    fn remove(&self, node: u64) -> BoxFuture<'_, Result<(), MemberError>> {
        Box::pin(async move {
            let (known, last) = {
                let m = self.meta.raft().metrics();
                let m = m.borrow();
                let ms = m.membership_config.membership();
                let voters: Vec<u64> = ms.voter_ids().collect();
                (ms.get_node(&node).is_some(), voters == [node])
            };
            if !known {
                return Err(MemberError::Unknown(node));
            }
            if last {
                return Err(MemberError::LastVoter(node));
            }
            self.registry
                .request_removal(node)
                .await
                .map_err(MemberError::Unavailable)
        })
    }
}

/// A node about to join: where its log lives and how the others reach it.
pub struct Joining<'a> {
    pub dir: &'a std::path::Path,
    pub node: u64,
    /// Its inter-node address as the others reach it (`host:port`).
    pub addr: String,
    pub tuning: crate::metalog::Tuning,
    /// Bound to `addr` (or to the address it is reached at).
    pub listener: tokio::net::TcpListener,
    pub key: crate::metalog::rpc::ClusterKey,
}

/// Starts a node whose membership comes from `registry`: registers it, founds the cluster if
/// no node has, and opens the log; returns once a leader is known (the founder at once, a
/// joining node once the leader has added it), with the reconciler running. `removed` runs
/// once this node has been removed from the cluster (the server stops).
pub async fn open_registered<R: Registry>(
    join: Joining<'_>,
    registry: Arc<R>,
    removed: Box<dyn FnOnce() + Send>,
) -> Result<Arc<RaftMeta>, String> {
    let Joining {
        dir,
        node,
        addr,
        tuning,
        listener,
        key,
    } = join;
    let addr = addr.as_str();
    if registry.was_removed(node).await? {
        return Err(format!(
            "node {node} was removed from the cluster: its data is stale. To join again, \
             start it with an empty data directory and a node id never used before"
        ));
    }
    registry.register(node, addr).await?;
    let founding = registry.claim_founder(node).await?;
    let members = if founding == Founding::Found {
        BTreeMap::from([(node, addr.to_string())])
    } else {
        BTreeMap::new()
    };
    let cluster = crate::metalog::Cluster {
        listener,
        members,
        key,
    };
    tracing::info!(
        node,
        addr,
        ?founding,
        "cluster: registered; opening the metadata log"
    );
    let no_log = || {
        format!(
            "node {node} founded this cluster, but {} holds no metadata log: started like \
             this it would begin a second log beside the cluster's. Start it on its own data \
             directory, or on an empty one under a node id never used before",
            dir.display()
        )
    };
    // Checked before the log serves: a vote or an entry from the others would make an
    // empty log look like one that was there.
    if founding == Founding::FoundedEarlier && !RaftMeta::has_log(dir) {
        return Err(no_log());
    }
    let meta = RaftMeta::open_cluster_started(dir, node, tuning, cluster).await?;
    let checked = match founding {
        Founding::Found => registry.founded(node).await,
        Founding::FoundedEarlier => match meta.raft().is_initialized().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(no_log()),
            Err(e) => Err(format!("the metadata log: {e}")),
        },
        Founding::Join => Ok(()),
    };
    if let Err(e) = checked {
        let _ = meta.raft().shutdown().await;
        return Err(e);
    }
    let meta = Arc::new(meta);
    let weak = Arc::downgrade(&meta);
    tokio::spawn(async move {
        reconcile(weak, registry).await;
        removed();
    });
    // A joining node waits for as long as the leader takes to add it (it may be adding
    // another node, or etcd may be electing); a member coming back waits for a quorum.
    let mut waited = Duration::ZERO;
    loop {
        let wait = meta.raft().wait(Some(LEADER_LOG_EVERY));
        match wait
            .metrics(|m| m.current_leader.is_some(), "a leader is known")
            .await
        {
            Ok(_) => break,
            Err(openraft::metrics::WaitError::Timeout(..)) => {}
            Err(e) => return Err(format!("the metadata log: {e}")),
        }
        waited += LEADER_LOG_EVERY;
        tracing::warn!(
            node,
            ?waited,
            "cluster: no leader known yet: waiting for the leader to add this node, or for a \
             quorum of the voters"
        );
    }
    Ok(meta)
}

/// How often a starting node that knows no leader says so.
const LEADER_LOG_EVERY: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_errors_name_the_node_and_what_to_do() {
        assert_eq!(
            MemberError::Unknown(7).to_string(),
            "node 7 is not a member of the cluster"
        );
        assert!(MemberError::LastVoter(1)
            .to_string()
            .contains("add a node first"));
    }
}
