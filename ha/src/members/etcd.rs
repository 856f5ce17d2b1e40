//! The [`Registry`] in etcd (v3 API, etcd 3.4 and later), through the `etcd-client` crate.
//!
//! Keys, under `/sluice/<cluster>/`:
//! * `nodes/<id>` = the node's inter-node address, attached to the node's lease;
//! * `founder` = the id of the node that founds the log (claimed before it initializes it);
//! * `founded` = the same id, once the log is initialized: from then on the founder refuses to
//!   start on a data directory without the log;
//! * `remove/<id>` = a removal asked for and not yet done;
//! * `removed/<id>` = a tombstone: the node is out of the log and may not come back.
//!
//! The lease has a TTL of [`LEASE_TTL`] and is renewed every third of it. When a renewal
//! fails (etcd unreachable, or the lease expired while this node was stopped or cut off),
//! the node keeps trying and registers again under a new lease as soon as etcd answers.
//!
//! One client per etcd member, tried in turn: the crate's own balancing over several
//! endpoints sends a request to a dead member and fails it (found by killing one of three
//! members in `deploy/local/cluster.sh`), so a request that finds its member unreachable is
//! sent to the next one, and the member that answered is tried first next time. While no
//! member answers (etcd electing a leader after its leader died answers `Unavailable` on every
//! member for seconds) a request keeps trying for up to 20 s before it fails.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
};
use tokio::sync::Mutex;

use super::{Founding, Registered, Registry};

/// How long a node stays `up` after its last renewal.
pub const LEASE_TTL: i64 = 6;
/// Bound on one etcd request to one member.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one registry operation keeps trying while no member answers.
const PATIENCE: Duration = Duration::from_secs(20);

/// A client per etcd member, and which one answered last.
#[derive(Clone)]
struct Members {
    clients: Arc<Vec<(String, Client)>>,
    preferred: Arc<AtomicUsize>,
}

/// Whether an error says "this member is out of reach" (try another), not "etcd refused".
fn unreachable(e: &etcd_client::Error) -> bool {
    use etcd_client::Error as E;
    match e {
        E::TransportError(_) | E::IoError(_) => true,
        E::GRpcStatus(s) => matches!(
            s.code(),
            tonic::Code::Unavailable
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Cancelled
                | tonic::Code::Unknown
        ),
        _ => false,
    }
}

impl Members {
    /// Runs `op` on the preferred member, then on each other one while members are out of
    /// reach, pass after pass (backing off between passes) for up to [`PATIENCE`]: while
    /// etcd elects a new leader, every member may answer `Unavailable` for a few seconds,
    /// and that must not stop a node that is starting or renewing its lease. Every
    /// operation given here may run twice (the first answer lost): each is idempotent or
    /// checks what is there (see `register_once`).
    async fn run<T, F, Fut>(&self, what: &str, op: F) -> Result<T, String>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let n = self.clients.len();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let mut pause = Duration::from_millis(200);
        let mut errors = Vec::new();
        loop {
            errors.clear();
            let first = self.preferred.load(Ordering::Relaxed);
            for i in 0..n {
                let at = (first + i) % n;
                let (endpoint, client) = &self.clients[at];
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let bound = left.clamp(Duration::from_millis(100), REQUEST_TIMEOUT);
                match tokio::time::timeout(bound, op(client.clone())).await {
                    Ok(Ok(v)) => {
                        self.preferred.store(at, Ordering::Relaxed);
                        return Ok(v);
                    }
                    Ok(Err(e)) if !unreachable(&e) => return Err(format!("etcd: {what}: {e}")),
                    Ok(Err(e)) => errors.push(format!("{endpoint}: {e}")),
                    Err(_) => errors.push(format!("{endpoint}: no answer in {bound:?}")),
                }
            }
            let now = tokio::time::Instant::now();
            if now + pause >= deadline {
                break;
            }
            tracing::debug!("etcd: {what}: no member answered; trying again in {pause:?}");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
        Err(format!(
            "etcd: {what}: no member answered in {PATIENCE:?} ({})",
            errors.join("; ")
        ))
    }
}

pub struct EtcdRegistry {
    members: Members,
    prefix: String,
    /// The registration this node holds, renewed by a task (`register`).
    registration: Arc<Mutex<Option<(u64, String)>>>,
}

impl EtcdRegistry {
    /// Prepares clients for the etcd members at `endpoints` (e.g. `http://10.0.0.5:2379`);
    /// connections are made on first use. The keys of cluster `cluster` live under
    /// `/sluice/<cluster>/`.
    pub async fn connect(endpoints: &[String], cluster: &str) -> Result<EtcdRegistry, String> {
        if endpoints.is_empty() {
            return Err("no etcd endpoints".into());
        }
        // HTTP/2 pings find a connection that a cut link left hanging (its TCP retransmits back
        // off for minutes), so the next call reconnects instead of waiting on it.
        let options = ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(1), Duration::from_secs(1))
            .with_keep_alive_while_idle(true);
        let mut clients = Vec::new();
        for e in endpoints {
            let client = Client::connect([e.as_str()], Some(options.clone()))
                .await
                .map_err(|err| format!("etcd endpoint {e}: {err}"))?;
            clients.push((e.clone(), client));
        }
        Ok(EtcdRegistry {
            members: Members {
                clients: Arc::new(clients),
                preferred: Arc::default(),
            },
            prefix: format!("/sluice/{cluster}/"),
            registration: Arc::default(),
        })
    }

    fn founded_key(&self) -> String {
        format!("{}founded", self.prefix)
    }

    fn node_key(&self, node: u64) -> String {
        format!("{}nodes/{node}", self.prefix)
    }

    fn remove_key(&self, node: u64) -> String {
        format!("{}remove/{node}", self.prefix)
    }

    fn removed_key(&self, node: u64) -> String {
        format!("{}removed/{node}", self.prefix)
    }

    /// One registration: a new lease, and the node's key under it unless another address
    /// holds the key or the node has a tombstone. Returns the lease id.
    async fn register_once(
        members: &Members,
        key: &str,
        tombstone: &str,
        addr: &str,
    ) -> Result<i64, String> {
        let lease = members
            .run("grant a lease", |mut c| async move {
                c.lease_grant(LEASE_TTL, None).await
            })
            .await?
            .id();
        let txn = Txn::new()
            .when([
                Compare::version(key, CompareOp::Equal, 0),
                Compare::version(tombstone, CompareOp::Equal, 0),
            ])
            .and_then([TxnOp::put(
                key,
                addr,
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key, None), TxnOp::get(tombstone, None)]);
        let r = members
            .run("register", |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        if r.succeeded() {
            return Ok(lease);
        }
        let mut holder = None;
        let mut removed = false;
        for op in r.op_responses() {
            if let TxnOpResponse::Get(g) = op {
                if let Some(kv) = g.kvs().first() {
                    if kv.key() == tombstone.as_bytes() {
                        removed = true;
                    } else {
                        holder = Some(String::from_utf8_lossy(kv.value()).into_owned());
                    }
                }
            }
        }
        let revoke = |what: &'static str| {
            members.run(
                what,
                move |mut c| async move { c.lease_revoke(lease).await },
            )
        };
        if removed {
            let _ = revoke("revoke the lease").await;
            return Err(format!("{key}: this node was removed from the cluster"));
        }
        let holder = holder.unwrap_or_default();
        if holder != addr {
            let _ = revoke("revoke the lease").await;
            return Err(format!(
                "{key} is held by {holder:?} under a live lease: two nodes were given one \
                 cluster.node_id (this one is at {addr:?})"
            ));
        }
        // This node before a restart, within its old lease: take the key over.
        members
            .run("register", |mut c| async move {
                c.put(key, addr, Some(PutOptions::new().with_lease(lease)))
                    .await
            })
            .await?;
        Ok(lease)
    }

    /// Keeps `lease` alive; registers anew when it is lost (never after a removal).
    async fn keep_alive(
        members: Members,
        key: String,
        tombstone: String,
        addr: String,
        mut lease: i64,
    ) {
        let every = Duration::from_secs((LEASE_TTL / 3).max(1) as u64);
        let mut warned = false;
        loop {
            tokio::time::sleep(every).await;
            let renewed = members
                .run("renew the lease", |mut c| async move {
                    let (mut keeper, mut answers) = c.lease_keep_alive(lease).await?;
                    keeper.keep_alive().await?;
                    Ok(answers.message().await?.map(|a| a.ttl()).unwrap_or(0))
                })
                .await;
            match renewed {
                Ok(ttl) if ttl > 0 => {
                    if warned {
                        tracing::info!("cluster: etcd lease renewed again");
                        warned = false;
                    }
                    continue;
                }
                Ok(_) => tracing::warn!("cluster: the etcd lease expired; registering again"),
                Err(e) if !warned => {
                    tracing::warn!("cluster: cannot renew the etcd lease: {e}");
                    warned = true;
                }
                Err(_) => {}
            }
            match Self::register_once(&members, &key, &tombstone, &addr).await {
                Ok(l) => {
                    lease = l;
                    warned = false;
                    tracing::info!("cluster: registered in etcd again");
                }
                Err(e) => tracing::debug!("cluster: register again: {e}"),
            }
        }
    }
}

impl Registry for EtcdRegistry {
    async fn register(&self, node: u64, addr: &str) -> Result<(), String> {
        let mut held = self.registration.lock().await;
        if held.is_some() {
            return Err("this node is registered already".into());
        }
        let key = self.node_key(node);
        let tombstone = self.removed_key(node);
        let lease = Self::register_once(&self.members, &key, &tombstone, addr).await?;
        tokio::spawn(Self::keep_alive(
            self.members.clone(),
            key,
            tombstone,
            addr.to_string(),
            lease,
        ));
        *held = Some((node, addr.to_string()));
        Ok(())
    }

    async fn claim_founder(&self, node: u64) -> Result<Founding, String> {
        let key = format!("{}founder", self.prefix);
        let founded = self.founded_key();
        let id = node.to_string();
        let txn = Txn::new()
            .when([Compare::version(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), id.as_str(), None)])
            .or_else([
                TxnOp::get(key.as_str(), None),
                TxnOp::get(founded.as_str(), None),
            ]);
        let r = self
            .members
            .run("claim the founding", |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        if r.succeeded() {
            return Ok(Founding::Found);
        }
        let mut got = r.op_responses().into_iter().map(|op| match op {
            TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
            _ => None,
        });
        let (founder, recorded) = (got.next().flatten(), got.next().flatten());
        Ok(
            match (founder.as_deref() == Some(id.as_bytes()), recorded) {
                (false, _) => Founding::Join,
                (true, None) => Founding::Found,
                (true, Some(_)) => Founding::FoundedEarlier,
            },
        )
    }

    async fn founded(&self, node: u64) -> Result<(), String> {
        let key = self.founded_key();
        let (k, id) = (key.as_str(), node.to_string());
        let id = id.as_str();
        self.members
            .run("record the founding", |mut c| async move {
                c.put(k, id, None).await
            })
            .await
            .map(|_| ())
    }

    async fn alive(&self) -> Result<Vec<Registered>, String> {
        let prefix = format!("{}nodes/", self.prefix);
        let p = prefix.as_str();
        let r = self
            .members
            .run("list the nodes", |mut c| async move {
                c.get(p, Some(GetOptions::new().with_prefix())).await
            })
            .await?;
        let mut out = Vec::new();
        for kv in r.kvs() {
            let key = String::from_utf8_lossy(kv.key());
            let Some(node) = key.strip_prefix(p).and_then(|n| n.parse().ok()) else {
                continue;
            };
            let addr = String::from_utf8_lossy(kv.value()).into_owned();
            out.push(Registered { node, addr });
        }
        Ok(out)
    }

    async fn request_removal(&self, node: u64) -> Result<(), String> {
        let key = self.remove_key(node);
        let k = key.as_str();
        self.members
            .run("record the removal", |mut c| async move {
                c.put(k, "", None).await
            })
            .await
            .map(|_| ())
    }

    async fn removals(&self) -> Result<BTreeSet<u64>, String> {
        let prefix = format!("{}remove/", self.prefix);
        let p = prefix.as_str();
        let r = self
            .members
            .run("list the removals", |mut c| async move {
                c.get(p, Some(GetOptions::new().with_prefix().with_keys_only()))
                    .await
            })
            .await?;
        Ok(r.kvs()
            .iter()
            .filter_map(|kv| {
                String::from_utf8_lossy(kv.key())
                    .strip_prefix(p)
                    .and_then(|n| n.parse().ok())
            })
            .collect())
    }

    async fn removal_done(&self, node: u64) -> Result<(), String> {
        let txn = Txn::new().and_then([
            TxnOp::put(self.removed_key(node), "", None),
            TxnOp::delete(self.remove_key(node), None),
            TxnOp::delete(self.node_key(node), None),
        ]);
        self.members
            .run("clear the removal", |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await
            .map(|_| ())
    }

    async fn was_removed(&self, node: u64) -> Result<bool, String> {
        let key = self.removed_key(node);
        let k = key.as_str();
        let r = self
            .members
            .run("read the tombstones", |mut c| async move {
                c.get(k, Some(GetOptions::new().with_count_only())).await
            })
            .await?;
        Ok(r.count() > 0)
    }
}

/// Mount-target ownership in etcd (`ha/PROTOCOL.md` §6): `/sluice/<cluster>/targets/<name>`
/// holds the owner's node id under the owner's lease; the key's create revision is the
/// ownership epoch. `candidates/<node>` (under the node's lease) lists the floating targets
/// the node can serve; `preferred/<name>` (no lease) the node a target should move to;
/// `drained/<node>` (no lease) marks a node drained until it starts again. Every call is bounded by the time given (no retries beyond it): the
/// driver calls again on its next round, and its self-fencing must not wait on etcd.
#[derive(Clone)]
pub struct EtcdTargets {
    members: Members,
    prefix: String,
}

impl Members {
    /// Like [`Members::run`], but one pass over the endpoints within `bound`, each given an
    /// equal share of it; an endpoint that fails or is slow is not tried first next time.
    async fn once<T, F, Fut>(&self, what: &str, bound: Duration, op: F) -> Result<T, String>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let n = self.clients.len();
        let deadline = tokio::time::Instant::now() + bound;
        let share = bound / n.max(1) as u32;
        let first = self.preferred.load(Ordering::Relaxed);
        let mut errors = Vec::new();
        for i in 0..n {
            let at = (first + i) % n;
            let (endpoint, client) = &self.clients[at];
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let left = if i + 1 < n { left.min(share) } else { left };
            // Until this endpoint answers, the next call starts at the next one.
            let _ = self.preferred.compare_exchange(
                at,
                (at + 1) % n,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            match tokio::time::timeout(left, op(client.clone())).await {
                Ok(Ok(v)) => {
                    self.preferred.store(at, Ordering::Relaxed);
                    return Ok(v);
                }
                Ok(Err(e)) if !unreachable(&e) => return Err(format!("etcd: {what}: {e}")),
                Ok(Err(e)) => errors.push(format!("{endpoint}: {e}")),
                Err(_) => errors.push(format!("{endpoint}: no answer in {left:?}")),
            }
        }
        Err(format!("etcd: {what}: {}", errors.join("; ")))
    }
}

impl EtcdTargets {
    pub async fn connect(endpoints: &[String], cluster: &str) -> Result<EtcdTargets, String> {
        let r = EtcdRegistry::connect(endpoints, cluster).await?;
        Ok(EtcdTargets {
            members: r.members,
            prefix: r.prefix,
        })
    }

    fn target_key(&self, name: &str) -> String {
        format!("{}targets/{name}", self.prefix)
    }

    /// A new lease of `ttl` seconds for `node`, with the node's candidate key under it
    /// (`candidates/<node>`, naming the floating targets `able` it can serve): the nodes
    /// that may claim targets are those whose key is there.
    pub async fn grant(
        &self,
        node: u64,
        able: &BTreeSet<String>,
        ttl: i64,
        bound: Duration,
    ) -> Result<i64, String> {
        let lease = self
            .members
            .once("grant the targets' lease", bound, |mut c| async move {
                c.lease_grant(ttl, None).await
            })
            .await?
            .id();
        let key = format!("{}candidates/{node}", self.prefix);
        let k = key.as_str();
        let names = able.iter().cloned().collect::<Vec<_>>().join(",");
        let v = names.as_str();
        self.members
            .once("put the candidate key", bound, |mut c| async move {
                c.put(k, v, Some(PutOptions::new().with_lease(lease))).await
            })
            .await?;
        Ok(lease)
    }

    /// One keep-alive of `lease`: `Ok(false)` when etcd no longer has it.
    pub async fn keep_alive(&self, lease: i64, bound: Duration) -> Result<bool, String> {
        self.members
            .once("renew the targets' lease", bound, |mut c| async move {
                let (mut keeper, mut answers) = c.lease_keep_alive(lease).await?;
                keeper.keep_alive().await?;
                Ok(answers.message().await?.map(|a| a.ttl()).unwrap_or(0) > 0)
            })
            .await
    }

    /// Claims `target` for `node` under `lease` if nobody owns it: the epoch, or `None` when
    /// another claim won.
    pub async fn claim(
        &self,
        target: &str,
        node: u64,
        lease: i64,
        bound: Duration,
    ) -> Result<Option<i64>, String> {
        let key = self.target_key(target);
        let txn = Txn::new()
            .when([Compare::version(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.as_str(),
                node.to_string(),
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let r = self
            .members
            .once("claim a target", bound, |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        Ok(r.succeeded()
            .then(|| r.header().map(|h| h.revision()))
            .flatten())
    }

    /// Gives `target` up if `node` still owns it at `epoch` (a planned move, a clean stop).
    pub async fn release(&self, target: &str, epoch: i64, bound: Duration) -> Result<(), String> {
        let key = self.target_key(target);
        let txn = Txn::new()
            .when([Compare::create_revision(
                key.as_str(),
                CompareOp::Equal,
                epoch,
            )])
            .and_then([TxnOp::delete(key.as_str(), None)]);
        self.members
            .once("release a target", bound, |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await
            .map(|_| ())
    }

    /// Makes `node` the preferred owner of `target` (a planned move), or clears the
    /// preference (`None`). The owner hands the target over at its next read (see
    /// [`crate::targets`]).
    pub async fn prefer(
        &self,
        target: &str,
        node: Option<u64>,
        bound: Duration,
    ) -> Result<(), String> {
        let value = node.map(|n| n.to_string());
        self.put_or_delete(
            format!("{}preferred/{target}", self.prefix),
            value.as_deref(),
            if node.is_some() {
                "set a target's preferred node"
            } else {
                "clear a target's preferred node"
            },
            bound,
        )
        .await
    }

    /// Marks `node` drained (`sluice node drain`), or not (a node clears its own mark when
    /// it starts).
    pub async fn set_drained(
        &self,
        node: u64,
        drained: bool,
        bound: Duration,
    ) -> Result<(), String> {
        self.put_or_delete(
            format!("{}drained/{node}", self.prefix),
            drained.then_some(""),
            if drained {
                "mark a node drained"
            } else {
                "clear a node's drained mark"
            },
            bound,
        )
        .await
    }

    /// Puts `value` at `key` (no lease), or deletes the key (`None`); `what` names the call in
    /// errors.
    async fn put_or_delete(
        &self,
        key: String,
        value: Option<&str>,
        what: &str,
        bound: Duration,
    ) -> Result<(), String> {
        let k = key.as_str();
        match value {
            Some(v) => self
                .members
                .once(what, bound, |mut c| async move { c.put(k, v, None).await })
                .await
                .map(|_| ()),
            None => self
                .members
                .once(what, bound, |mut c| async move { c.delete(k, None).await })
                .await
                .map(|_| ()),
        }
    }

    /// Revokes `lease`: its owner keys and candidate key go at once (a clean stop).
    pub async fn revoke(&self, lease: i64, bound: Duration) -> Result<(), String> {
        self.members
            .once("revoke the targets' lease", bound, |mut c| async move {
                c.lease_revoke(lease).await
            })
            .await
            .map(|_| ())
    }

    /// The owners of every target, and the nodes whose targets' lease is live.
    pub async fn view(&self, bound: Duration) -> Result<crate::targets::View, String> {
        let p = self.prefix.as_str();
        let r = self
            .members
            .once("read the targets' owners", bound, |mut c| async move {
                c.get(p, Some(GetOptions::new().with_prefix())).await
            })
            .await?;
        let mut view = crate::targets::View::default();
        let (targets, nodes) = (format!("{p}targets/"), format!("{p}candidates/"));
        let preferred = format!("{p}preferred/");
        let drained = format!("{p}drained/");
        for kv in r.kvs() {
            let key = String::from_utf8_lossy(kv.key());
            if let Some(name) = key.strip_prefix(&targets) {
                let Ok(node) = String::from_utf8_lossy(kv.value()).parse() else {
                    continue;
                };
                let owner = crate::targets::Owner {
                    node,
                    lease: kv.lease(),
                    epoch: kv.create_revision(),
                };
                view.owners.insert(name.to_string(), owner);
            } else if let Some(node) = key.strip_prefix(&nodes).and_then(|n| n.parse().ok()) {
                view.alive.insert(node);
                let able = String::from_utf8_lossy(kv.value());
                let able = able.split(',').filter(|t| !t.is_empty()).map(String::from);
                view.able.insert(node, able.collect());
            } else if let Some(node) = key.strip_prefix(&drained).and_then(|n| n.parse().ok()) {
                view.drained.insert(node);
            } else if let Some(name) = key.strip_prefix(&preferred) {
                if let Ok(node) = String::from_utf8_lossy(kv.value()).parse() {
                    view.preferred.insert(name.to_string(), node);
                }
            }
        }
        Ok(view)
    }
}
