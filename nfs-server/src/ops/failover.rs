//! Floating mount targets (issue 19, `ha/PROTOCOL.md` §6): one node at a time owns each, under
//! an etcd lease; the owner puts the target's addresses on its interface and serves them, and
//! when it dies another node claims the target and does the same. The decisions are
//! `ha::targets::Ownership` (sans-IO); this module does the etcd calls, the addresses and the
//! listeners.
//!
//! Two things stop a node that lost touch from answering for a target it may no longer own:
//! * it stops serving (listeners, open connections, addresses) once half the lease's TTL has
//!   passed without a renewal, checked ten times a second;
//! * the addresses it adds carry a kernel lifetime of half the TTL, extended only while the
//!   last renewal is younger than a quarter of it, so they vanish by themselves even if the
//!   process is killed or stopped (SIGSTOP) and cannot answer ARP for the new owner's address.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ha::members::etcd::EtcdTargets;
use ha::targets::{Action, Lease, Ownership, StopWhy};

use crate::qos::{Target, TargetTable};
use crate::state::nlm::Monitored;

/// A bound on every etcd call of the loop.
const CALL: Duration = Duration::from_millis(500);
/// How often the owners are read (and unowned targets claimed).
const READ_EVERY: Duration = Duration::from_millis(250);
/// How often the kernel lifetime of served addresses is extended.
const EXTEND_EVERY: Duration = Duration::from_millis(250);
/// How often the watchdog checks that the lease is fresh.
const WATCH_EVERY: Duration = Duration::from_millis(100);
/// A hook or `ip` command that takes longer is killed and counted as failed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// A future the takeover hooks return.
pub type HookFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The clients a takeover tells, once the target's addresses are up.
#[derive(Debug, Default)]
pub struct Adopted {
    /// NLM clients, told with SM_NOTIFY to reclaim their locks.
    pub nlm: Vec<Monitored>,
    /// TCP connections to the target on its earlier owner, tickled to reconnect now
    /// (`crate::tickle`).
    pub tickles: std::collections::BTreeSet<crate::tickle::Endpoint>,
}

impl Adopted {
    pub fn is_empty(&self) -> bool {
        self.nlm.is_empty() && self.tickles.is_empty()
    }
}

/// What a takeover needs of the running server (its store and protocol state).
pub trait Takeover: Send + Sync + 'static {
    /// Fences the target at `epoch` on the metadata writer (`backend::Store::fence_target`).
    fn fence(&self, target: String, epoch: u64) -> HookFuture<'_, Result<(), backend::Error>>;
    /// Takes over the clients (NLM, NFSv4.1) of the target at `addrs` on node `previous`
    /// (`Server::adopt_target`); returns those to tell once the addresses are up, with that
    /// node's open connections to the target.
    fn adopt(&self, previous: Option<u64>, addrs: Vec<IpAddr>) -> HookFuture<'_, Adopted>;
    /// Tickles the connections and sends SM_NOTIFY to the NLM clients.
    fn notify(&self, clients: Adopted) -> HookFuture<'_, ()>;
    /// Saves the floating targets' connections now (`crate::tickle::save`), for a target's
    /// next owner to tickle them.
    fn save_endpoints(&self) -> HookFuture<'_, Result<(), String>>;
    /// Drops the locks taken through `addrs`, which this node no longer serves.
    fn release(&self, addrs: Vec<IpAddr>) -> HookFuture<'_, ()>;
}

impl<S: backend::Store> Takeover for crate::server::Server<S> {
    fn fence(&self, target: String, epoch: u64) -> HookFuture<'_, Result<(), backend::Error>> {
        Box::pin(async move { self.store.fence_target(&target, epoch).await })
    }
    fn adopt(&self, previous: Option<u64>, addrs: Vec<IpAddr>) -> HookFuture<'_, Adopted> {
        Box::pin(async move {
            let nlm = self.adopt_target(previous, &addrs).await;
            let tickles = match previous {
                Some(p) => match self.store.doc(&crate::tickle::doc_key(p)).await {
                    Ok(Some((_, doc))) => crate::tickle::parse(&doc, &addrs),
                    Ok(None) => Default::default(),
                    Err(e) => {
                        tracing::warn!(
                            previous = p,
                            "cannot read the earlier owner's client connections: its clients \
                             reconnect at their next retransmission: {e}"
                        );
                        Default::default()
                    }
                },
                None => Default::default(),
            };
            Adopted { nlm, tickles }
        })
    }
    fn notify(&self, clients: Adopted) -> HookFuture<'_, ()> {
        Box::pin(async move {
            let Adopted { nlm, tickles } = clients;
            let tickle = async {
                if tickles.is_empty() {
                    return;
                }
                let start = tokio::time::Instant::now();
                let mut sent = 0;
                let tickles = Arc::new(tickles);
                for at in crate::tickle::ROUNDS {
                    tokio::time::sleep_until(start + at).await;
                    let round = Arc::clone(&tickles);
                    sent += tokio::task::spawn_blocking(move || crate::tickle::send(&round))
                        .await
                        .unwrap_or(0);
                }
                tracing::info!(
                    connections = tickles.len(),
                    sent,
                    "tickle ACKs sent to the earlier owner's connections of a floating target \
                     that moved here"
                );
            };
            let notify = async {
                if !nlm.is_empty() {
                    crate::server::Server::notify(self, nlm).await;
                }
            };
            tokio::join!(tickle, notify);
        })
    }
    fn release(&self, addrs: Vec<IpAddr>) -> HookFuture<'_, ()> {
        Box::pin(async move { self.release_target(&addrs).await })
    }
    fn save_endpoints(&self) -> HookFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let targets = self.targets.get().ok_or("no target table")?;
            crate::tickle::save(self, targets)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// How a node brings a floating target's addresses up and down.
#[derive(Clone, Debug)]
pub struct Addresses {
    pub interface: Option<String>,
    pub prefix: u8,
    pub hook: Option<PathBuf>,
    /// The kernel lifetime given to an address (half the lease's TTL, at least 1 s).
    pub lifetime: Duration,
}

/// The distinct IP addresses of a target.
fn ips(t: &Target) -> BTreeSet<IpAddr> {
    t.listen.iter().map(|a| a.ip()).collect()
}

/// Runs `program args` on the blocking pool, killed after [`COMMAND_TIMEOUT`]; its stderr on
/// failure.
async fn run(program: PathBuf, args: Vec<String>) -> Result<(), String> {
    let what = format!("{} {}", program.display(), args.join(" "));
    tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new(&program)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("{what}: {e}"))?;
        let started = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        use std::io::Read;
                        let _ = e.read_to_string(&mut err);
                    }
                    return Err(format!("{what}: {status}: {}", err.trim()));
                }
                Ok(None) if started.elapsed() > COMMAND_TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("{what}: no exit within {COMMAND_TIMEOUT:?}"));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(format!("{what}: {e}")),
            }
        }
    })
    .await
    .map_err(|e| format!("command task: {e}"))?
}

impl Addresses {
    fn cidr(&self, ip: IpAddr) -> String {
        let prefix = match ip {
            IpAddr::V4(_) => self.prefix.min(32),
            IpAddr::V6(_) => self.prefix,
        };
        format!("{ip}/{prefix}")
    }

    /// `ip addr replace` with the lifetime: adds the address, or renews its lifetime.
    async fn place(&self, ip: IpAddr) -> Result<(), String> {
        let Some(dev) = &self.interface else {
            return Ok(());
        };
        let life = self.lifetime.as_secs().max(1).to_string();
        let mut args: Vec<String> = ["addr", "replace", &self.cidr(ip), "dev", dev]
            .into_iter()
            .map(String::from)
            .collect();
        args.extend([
            "valid_lft".into(),
            life.clone(),
            "preferred_lft".into(),
            life,
        ]);
        if ip.is_ipv6() {
            // Usable at once: the owner key in etcd already says that nobody else has it.
            args.push("nodad".into());
        }
        run("ip".into(), args).await
    }

    /// Brings the target's addresses up and announces them.
    async fn up(&self, t: &Target, epoch: i64) -> Result<(), String> {
        for ip in ips(t) {
            match &self.hook {
                Some(hook) => {
                    let args = vec![
                        "up".into(),
                        self.cidr(ip),
                        t.name.clone(),
                        epoch.to_string(),
                    ];
                    run(hook.clone(), args).await?
                }
                None => {
                    self.place(ip).await?;
                    self.announce(ip);
                }
            }
        }
        Ok(())
    }

    /// Extends the kernel lifetime of the target's addresses (not with a hook).
    async fn extend(&self, t: &Target) -> Result<(), String> {
        if self.hook.is_some() {
            return Ok(());
        }
        for ip in ips(t) {
            self.place(ip).await?;
        }
        Ok(())
    }

    /// Takes the target's addresses down (an address already gone is no error).
    async fn down(&self, t: &Target, epoch: i64) {
        for ip in ips(t) {
            let done = match (&self.hook, &self.interface) {
                (Some(hook), _) => {
                    let args = vec![
                        "down".into(),
                        self.cidr(ip),
                        t.name.clone(),
                        epoch.to_string(),
                    ];
                    run(hook.clone(), args).await
                }
                (None, Some(dev)) => {
                    let args = ["addr", "del", &self.cidr(ip), "dev", dev];
                    match run("ip".into(), args.map(String::from).to_vec()).await {
                        Err(e)
                            if e.contains("Address not found") || e.contains("Cannot assign") =>
                        {
                            Ok(())
                        }
                        r => r,
                    }
                }
                (None, None) => Ok(()),
            };
            if let Err(e) = done {
                tracing::error!(target = %t.name, %ip, "floating address not taken down: {e}");
            }
        }
    }

    /// Gratuitous ARP (iputils `arping -U`), three times a second apart, in the background: clients
    /// on the link then send to this node at once instead of after their ARP entry ages out.
    /// IPv6 addresses are not announced (the neighbours learn them by solicitation).
    fn announce(&self, ip: IpAddr) {
        let (IpAddr::V4(v4), Some(dev)) = (ip, &self.interface) else {
            return;
        };
        let args: Vec<String> = ["-U", "-c", "3", "-I", dev, &v4.to_string()]
            .into_iter()
            .map(String::from)
            .collect();
        tokio::spawn(async move {
            if let Err(e) = run("arping".into(), args).await {
                tracing::warn!(
                    %ip,
                    "gratuitous ARP not sent ({e}); clients reach the address once their ARP \
                     entries age out (Debian: apt-get install iputils-arping)"
                );
            }
        });
    }
}

/// Why [`Floating::prefer`] refused.
#[derive(Debug)]
pub enum PreferError {
    NotFloating,
    /// With the live nodes.
    NodeNotLive(Vec<u64>),
    NodeCannotServe,
    NodeDrained,
    Etcd(String),
}

/// What the ownership loop needs from the running server.
pub struct Floating {
    pub node: u64,
    pub ttl: Duration,
    pub etcd: EtcdTargets,
    pub targets: Arc<TargetTable>,
    pub addresses: Addresses,
    /// Starts a target's listeners (those no NFS listener covers).
    #[allow(clippy::type_complexity)]
    pub listen: Box<
        dyn Fn(
                Arc<Target>,
            )
                -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
            + Send
            + Sync,
    >,
    /// The server's side of a takeover: fencing, and the lock clients that move with it.
    pub host: Arc<dyn Takeover>,
    /// The loop's state (see [`Floating::shared`]); `None` until first used.
    pub shared: Mutex<Option<Arc<Mutex<Shared>>>>,
    /// Held while addresses or listeners change, so that a stop never runs before an up or an
    /// extension decided earlier (which would put an address back after it was taken down).
    pub acting: tokio::sync::Mutex<()>,
    /// The preferred node of each target, as this node last read it from etcd.
    pub preferred: Mutex<std::collections::BTreeMap<String, u64>>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Takeover timing: when each target was first read without an owner, and when this
    /// node's claim of it was won (`sluice_target_takeover_seconds`).
    pub unowned_since: Mutex<std::collections::BTreeMap<String, Instant>>,
    pub claimed_at: Mutex<std::collections::BTreeMap<String, Instant>>,
}

pub struct Shared {
    own: Ownership,
    lease: Option<Lease>,
    /// Set by [`Floating::release_all`]: nothing is claimed or served any more.
    stopping: bool,
}

impl Floating {
    /// The ownership loop's state.
    fn shared(&self) -> Arc<Mutex<Shared>> {
        let mut s = self.shared.lock().expect("ownership lock poisoned");
        Arc::clone(s.get_or_insert_with(|| {
            Arc::new(Mutex::new(Shared {
                own: Ownership::new(self.node, self.ttl),
                lease: None,
                stopping: false,
            }))
        }))
    }

    /// A clean stop (SIGTERM): stops serving every target and gives it up in etcd, so that
    /// another node claims it at once instead of after the lease.
    pub async fn release_all(&self) {
        let shared = self.shared();
        let (serving, lease): (Vec<(String, i64)>, _) = {
            let mut s = shared.lock().expect("ownership lock poisoned");
            s.stopping = true;
            let lease = s.lease;
            let serving = s
                .own
                .step(Instant::now(), lease, &BTreeSet::new(), None)
                .into_iter()
                .filter_map(|a| match a {
                    Action::Stop { target, epoch, .. } => Some((target, epoch)),
                    _ => None,
                })
                .collect();
            (serving, lease)
        };
        let _acting = self.acting.lock().await;
        for (name, epoch) in serving {
            if let Some(t) = self.targets.by_name(&name) {
                self.stop(&t, epoch, StopWhy::Gone).await;
            }
            match self.etcd.release(&name, epoch, CALL).await {
                Ok(()) => {
                    self.metrics.ownership(&name, "released");
                    tracing::info!(target = %name, epoch, "floating target handed over")
                }
                Err(e) => tracing::warn!(target = %name, "floating target not released: {e}"),
            }
        }
        // This node is no candidate any more: the others claim without waiting for its lease.
        if let Some(l) = lease {
            if let Err(e) = self.etcd.revoke(l.id, CALL).await {
                tracing::warn!("floating targets: lease not revoked: {e}");
            }
        }
    }

    /// Asks for `target` to move to `node` (`None`: to no node in particular), checked against
    /// what this node knows: the target must be floating here, and the node live and able to
    /// serve it at the last read. The owner hands it over at its next read.
    pub async fn prefer(&self, target: &str, node: Option<u64>) -> Result<(), PreferError> {
        if !self.floating().contains(target) {
            return Err(PreferError::NotFloating);
        }
        if let Some(n) = node {
            let view = self.etcd.view(CALL).await.map_err(PreferError::Etcd)?;
            if !view.alive.contains(&n) {
                return Err(PreferError::NodeNotLive(view.alive.into_iter().collect()));
            }
            if !view.able.get(&n).is_some_and(|a| a.contains(target)) {
                return Err(PreferError::NodeCannotServe);
            }
            if view.drained.contains(&n) {
                return Err(PreferError::NodeDrained);
            }
        }
        self.etcd
            .prefer(target, node, CALL)
            .await
            .map_err(PreferError::Etcd)?;
        let mut preferred = self.preferred.lock().expect("preferred lock poisoned");
        match node {
            Some(n) => preferred.insert(target.to_string(), n),
            None => preferred.remove(target),
        };
        tracing::info!(target = %target, node = ?node, "preferred node of the floating target set");
        Ok(())
    }

    /// Gives every floating target that `node` owns or is preferred on another preferred
    /// node ([`ha::targets::drain_plan`]): the moves set, and the targets left where they are
    /// (no other live node can serve them).
    #[allow(clippy::type_complexity)]
    pub async fn drain(&self, node: u64) -> Result<(Vec<(String, u64)>, Vec<String>), String> {
        // Marked first: no target left unowned meanwhile goes to it.
        self.etcd.set_drained(node, true, CALL).await?;
        let view = self.etcd.view(CALL).await?;
        let (moves, stuck) = ha::targets::drain_plan(&view, node);
        for (t, n) in &moves {
            self.etcd.prefer(t, Some(*n), CALL).await?;
            self.preferred
                .lock()
                .expect("preferred lock poisoned")
                .insert(t.clone(), *n);
            tracing::info!(target = %t, from = node, to = n, "draining: the floating target moves");
        }
        Ok((moves, stuck))
    }

    /// The preferred node of `target`, as last read.
    pub fn preferred_of(&self, target: &str) -> Option<u64> {
        self.preferred
            .lock()
            .expect("preferred lock poisoned")
            .get(target)
            .copied()
    }

    fn floating(&self) -> BTreeSet<String> {
        self.targets
            .list()
            .into_iter()
            .filter(|t| t.floating)
            .map(|t| t.name.clone())
            .collect()
    }

    /// Runs for the life of the server.
    pub async fn run(self: Arc<Self>) {
        // Addresses left by an earlier run of this node (killed within their lifetime).
        for t in self.targets.list().into_iter().filter(|t| t.floating) {
            self.addresses.down(&t, 0).await;
        }
        // A drain lasts until the node starts again (targets come back only when moved).
        if let Err(e) = self.etcd.set_drained(self.node, false, CALL).await {
            tracing::warn!("floating targets: this node's drained mark not cleared: {e}");
        }
        let shared = self.shared();
        {
            let (me, shared) = (Arc::clone(&self), Arc::clone(&shared));
            tokio::spawn(async move { me.watchdog(shared).await });
        }
        {
            let (me, shared) = (Arc::clone(&self), Arc::clone(&shared));
            tokio::spawn(async move { me.renew(shared).await });
        }
        let mut warned = false;
        loop {
            let view = self.etcd.view(CALL).await;
            let view = match view {
                Ok(v) => {
                    warned = false;
                    v
                }
                Err(e) => {
                    if !warned {
                        tracing::warn!("floating targets: cannot read their owners: {e}");
                        warned = true;
                    }
                    tokio::time::sleep(READ_EVERY).await;
                    continue;
                }
            };
            for t in self.targets.list().into_iter().filter(|t| t.floating) {
                let o = view.owners.get(&t.name).map(|o| (o.node, o.epoch));
                *t.owner.lock().expect("owner lock poisoned") = o;
                if let Some((node, _)) = o.filter(|&(node, _)| node != self.node) {
                    *t.previous_owner.lock().expect("owner lock poisoned") = Some(node);
                }
            }
            view.preferred
                .clone_into(&mut self.preferred.lock().expect("preferred lock poisoned"));
            {
                let now = Instant::now();
                let mut unowned = self.unowned_since.lock().expect("timing lock poisoned");
                unowned.retain(|t, _| !view.owners.contains_key(t));
                for t in self.floating() {
                    if !view.owners.contains_key(&t) {
                        unowned.entry(t).or_insert(now);
                    }
                }
            }
            let (actions, lease) = {
                let mut s = shared.lock().expect("ownership lock poisoned");
                if s.stopping {
                    return;
                }
                let now = Instant::now();
                let lease = s.lease;
                let actions = s.own.step(now, lease, &self.floating(), Some(&view));
                (actions, lease)
            };
            let mut claimed = false;
            for a in actions {
                // A claim of a target whose preferred node is down (or cannot serve it): once
                // won, the preference goes, so that the target does not move back (one more
                // stall) whenever that node returns, and a node that keeps failing does not
                // take its targets down with it each time. Move it back by hand.
                // (Not when this node is the preferred one: a planned move ends that way.)
                let passed_over = match &a {
                    Action::Claim(t) => view
                        .preferred
                        .get(t)
                        .filter(|&&n| n != self.node)
                        .map(|&n| (t.clone(), n)),
                    _ => None,
                };
                let won = self.act(a, lease).await;
                claimed |= won;
                if let Some((t, n)) = passed_over.filter(|_| won) {
                    match self.etcd.prefer(&t, None, CALL).await {
                        Ok(()) => {
                            self.preferred
                                .lock()
                                .expect("preferred lock poisoned")
                                .remove(&t);
                            tracing::warn!(
                                target = %t, preferred = n,
                                "took the floating target over from its preferred node, which \
                                 is down or cannot serve it: the preference is dropped (sluice \
                                 target move to move it back)"
                            );
                        }
                        Err(e) => tracing::warn!(target = %t, "preference not dropped: {e}"),
                    }
                }
            }
            // After a won claim, read again at once: the next round serves the target.
            if !claimed {
                tokio::time::sleep(READ_EVERY).await;
            }
        }
    }

    /// Whether this node still serves `target` at `epoch` and may: checked again right
    /// before and after addresses go up, since the watchdog may have fenced meanwhile.
    fn still_serving(&self, target: &str, epoch: i64) -> bool {
        let shared = self.shared();
        let s = shared.lock().expect("ownership lock poisoned");
        !s.stopping
            && s.own.serving().get(target) == Some(&epoch)
            && s.own.fresh(Instant::now(), s.lease)
    }

    /// Records how long a takeover `phase` of `target` took, if `started` holds its start.
    fn phase_ended(
        &self,
        started: &Mutex<std::collections::BTreeMap<String, Instant>>,
        target: &str,
        phase: &'static str,
        now: Instant,
    ) {
        let start = started.lock().expect("timing lock poisoned").remove(target);
        if let Some(start) = start {
            self.metrics.takeover(target, phase, now - start);
        }
    }

    /// Does one action; whether it was a won claim.
    async fn act(&self, a: Action, lease: Option<Lease>) -> bool {
        let _acting = self.acting.lock().await;
        match a {
            Action::Claim(name) => {
                let Some(lease) = lease else { return false };
                match self.etcd.claim(&name, self.node, lease.id, CALL).await {
                    Ok(Some(epoch)) => {
                        tracing::info!(target = %name, epoch, "claimed the floating target");
                        let now = Instant::now();
                        self.metrics.ownership(&name, "claimed");
                        self.phase_ended(&self.unowned_since, &name, "unowned_to_claimed", now);
                        self.claimed_at
                            .lock()
                            .expect("timing lock poisoned")
                            .insert(name, now);
                        return true;
                    }
                    Ok(None) => tracing::debug!(target = %name, "another node claimed it first"),
                    Err(e) => tracing::warn!(target = %name, "claim failed: {e}"),
                }
            }
            Action::Serve { target, epoch } => {
                let Some(t) = self.targets.by_name(&target) else {
                    return false;
                };
                if !self.still_serving(&target, epoch) {
                    return false;
                }
                let started = Instant::now();
                // Before any client can reach this node on the target: calls an earlier owner
                // still makes for it are refused from now on, and none of them runs any more.
                if let Err(e) = self.host.fence(target.clone(), epoch as u64).await {
                    tracing::error!(
                        target = %target, epoch,
                        "owning the floating target, but cannot fence it against its earlier \
                         owner (trying again): {e}"
                    );
                    self.shared()
                        .lock()
                        .expect("ownership lock poisoned")
                        .own
                        .forget(&target);
                    return false;
                }
                // The NLM clients that held locks through the target on its earlier owner (or
                // here, before this node stopped serving it): told to reclaim them here once
                // the addresses are up.
                let previous = t
                    .previous_owner
                    .lock()
                    .expect("owner lock poisoned")
                    .filter(|&p| p != self.node);
                let mut adopted = self
                    .host
                    .adopt(previous, ips(&t).into_iter().collect())
                    .await;
                // Connections of an earlier time here are gone (their endpoints were kept for
                // the next owner to tickle, which may be this node: they are tickled too).
                adopted.tickles.extend(t.take_endpoints());
                self.targets
                    .endpoints_changed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                t.serving_epoch
                    .store(epoch as u64, std::sync::atomic::Ordering::Release);
                let up = match self.addresses.up(&t, epoch).await {
                    Ok(()) => (self.listen)(Arc::clone(&t)).await,
                    Err(e) => Err(e),
                };
                if !self.still_serving(&target, epoch) {
                    // Fenced while the addresses went up: take them down again.
                    self.stop(&t, epoch, StopWhy::SelfFenced).await;
                    return false;
                }
                match up {
                    Ok(()) => {
                        tracing::info!(
                            target = %target, epoch, took = ?started.elapsed(),
                            "serving the floating target: its addresses are up here"
                        );
                        self.metrics.ownership(&target, "serving");
                        if !adopted.is_empty() {
                            let host = Arc::clone(&self.host);
                            tokio::spawn(async move { host.notify(adopted).await });
                        }
                        let now = Instant::now();
                        self.phase_ended(&self.claimed_at, &target, "claimed_to_serving", now);
                    }
                    // Tried again at the next read (a listener that has not let go of the
                    // port yet, a hook that failed once); an operator sees the error.
                    Err(e) => {
                        tracing::error!(
                            target = %target, epoch,
                            "owning the floating target, but cannot serve it (trying again): {e}"
                        );
                        t.stop_listeners();
                        self.shared()
                            .lock()
                            .expect("ownership lock poisoned")
                            .own
                            .forget(&target);
                    }
                }
            }
            Action::Stop { target, epoch, why } => {
                if let Some(t) = self.targets.by_name(&target) {
                    self.stop(&t, epoch, why).await;
                }
                if why == StopWhy::Moved {
                    // Given up only now that nothing here answers for it any more.
                    match self.etcd.release(&target, epoch, CALL).await {
                        Ok(()) => {
                            self.metrics.ownership(&target, "released");
                            tracing::info!(target = %target, epoch, "floating target released to its preferred node")
                        }
                        Err(e) => {
                            tracing::warn!(target = %target, "floating target not released (its lease will expire): {e}")
                        }
                    }
                }
            }
        }
        false
    }

    async fn stop(&self, t: &Target, epoch: i64, why: StopWhy) {
        self.metrics.ownership(
            &t.name,
            match why {
                StopWhy::SelfFenced => "stopped_self_fenced",
                StopWhy::Lost => "stopped_lost",
                StopWhy::Moved => "stopped_moved",
                StopWhy::Gone => "stopped_gone",
            },
        );
        t.stop_listeners();
        t.serving_epoch
            .store(0, std::sync::atomic::Ordering::Release);
        // For a move (and when cut off), the addresses go before the connections: closed once
        // its address is gone, a socket's FIN cannot leave (there is no route from an address
        // that is not local), so the client keeps the connection until the next owner tickles
        // it (`crate::tickle`; the endpoints stay in this node's list,
        // `TargetTable::connection`, saved here first for a move) and then reconnects there at
        // once. A FIN sent while the address was here made a kernel client reconnect to an
        // address that no node held yet and then back off (Linux waits 3 s after a server's
        // FIN before trying again): planned moves stalled 1.5-3.5 s. Otherwise (the target
        // removed, this node shutting down, another owner already serving it, IPv6 clients
        // that cannot be tickled, or the list not saved) the FIN goes first, as it is the
        // clients' only news.
        let silent = match why {
            StopWhy::SelfFenced => true,
            StopWhy::Moved => {
                ips(t).iter().all(IpAddr::is_ipv4)
                    && match tokio::time::timeout(CALL, self.host.save_endpoints()).await {
                        Ok(Ok(())) => true,
                        Ok(Err(e)) => {
                            tracing::warn!(target = %t.name, "cannot save the target's connections before the move ({e}): its clients get a FIN instead");
                            false
                        }
                        Err(_) => false,
                    }
            }
            StopWhy::Lost | StopWhy::Gone => false,
        };
        if !silent {
            t.cut_connections();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.addresses.down(t, epoch).await;
        // Also a client that reconnected meanwhile through a wildcard NFS listener (which
        // covers the address, and stays).
        t.cut_connections();
        // Its lock clients reclaim their locks from the next owner.
        self.host.release(ips(t).into_iter().collect()).await;
        match why {
            StopWhy::SelfFenced => tracing::warn!(
                target = %t.name, epoch,
                "stopped serving the floating target: no etcd renewal for half the lease \
                 (another node takes it over)"
            ),
            StopWhy::Lost => tracing::warn!(
                target = %t.name, epoch,
                "stopped serving the floating target: etcd names another owner"
            ),
            StopWhy::Gone => tracing::info!(target = %t.name, epoch, "floating target removed"),
            StopWhy::Moved => tracing::info!(
                target = %t.name, epoch,
                "stopped serving the floating target: it moves to its preferred node"
            ),
        }
    }

    /// Keeps the lease alive (a keep-alive every eighth of the TTL), granting a new one when etcd
    /// no longer has it.
    async fn renew(&self, shared: Arc<Mutex<Shared>>) {
        let ttl = self.ttl.as_secs() as i64;
        let mut warned = false;
        loop {
            let (lease, stopping) = {
                let s = shared.lock().expect("ownership lock poisoned");
                (s.lease, s.stopping)
            };
            if stopping {
                return;
            }
            let sent = Instant::now();
            let result = match lease {
                None => {
                    let able = self.floating();
                    self.etcd.grant(self.node, &able, ttl, CALL).await.map(Some)
                }
                Some(l) => self
                    .etcd
                    .keep_alive(l.id, CALL)
                    .await
                    .map(|live| live.then_some(l.id)),
            };
            let next = match result {
                Ok(Some(id)) => {
                    if warned {
                        tracing::info!("floating targets: lease renewed again");
                        warned = false;
                    }
                    Some(Lease { id, renewed: sent })
                }
                Ok(None) => {
                    tracing::warn!("floating targets: the lease expired; asking for a new one");
                    None
                }
                Err(e) => {
                    if !warned {
                        tracing::warn!("floating targets: cannot renew the lease: {e}");
                        warned = true;
                    }
                    // Unrenewed for a whole TTL, the lease is gone in etcd (which may answer
                    // "not found" rather than a TTL of 0): ask for a new one.
                    lease.filter(|l| sent.saturating_duration_since(l.renewed) < self.ttl)
                }
            };
            shared.lock().expect("ownership lock poisoned").lease = next;
            // Eight tries per TTL: a node fences itself after four failed ones in a row.
            tokio::time::sleep_until((sent + self.ttl / 8).into()).await;
        }
    }

    /// Stops serving on time even while the read loop waits on etcd, and extends the
    /// kernel lifetime of the served addresses while the lease is fresh.
    async fn watchdog(&self, shared: Arc<Mutex<Shared>>) {
        let mut last_extend = Instant::now();
        loop {
            tokio::time::sleep(WATCH_EVERY).await;
            if last_extend.elapsed() >= EXTEND_EVERY {
                last_extend = Instant::now();
                let _acting = self.acting.lock().await;
                // Decided with the lock held: no stop can be pending behind this extension.
                let serving: Vec<String> = {
                    let s = shared.lock().expect("ownership lock poisoned");
                    if s.stopping || !s.own.may_extend(Instant::now(), s.lease) {
                        Vec::new()
                    } else {
                        s.own.serving().keys().cloned().collect()
                    }
                };
                for t in serving.iter().filter_map(|n| self.targets.by_name(n)) {
                    if let Err(e) = self.addresses.extend(&t).await {
                        tracing::warn!(target = %t.name, "floating address not renewed: {e}");
                    }
                }
            }
            let actions = {
                let mut s = shared.lock().expect("ownership lock poisoned");
                if s.stopping {
                    return;
                }
                let lease = s.lease;
                s.own.step(Instant::now(), lease, &self.floating(), None)
            };
            for a in actions {
                self.act(a, None).await;
            }
        }
    }
}
