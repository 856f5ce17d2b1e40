//! Mount-target pacing: each target's bandwidth tier is enforced by *delaying* data movement,
//! never by error replies (no JUKEBOX, no DELAY), so clients see a smooth rate instead of stalls.
//!
//! A [`Pacer`] holds token buckets for read bytes, write bytes, total bytes and operations, each
//! refilled at the tier's rate and holding at most its burst. A request that finds enough tokens
//! and nobody waiting passes at once. Otherwise it queues under its client's address, and a
//! background task grants queued requests in deficit-round-robin order across clients as tokens
//! arrive. Every client gets an equal share of a saturated target, whatever its number of
//! connections (`nconnect=16` cannot starve a client with one connection). Targets have their own
//! pacers and do not disturb each other.
//!
//! Where it acts (transport.rs): a WRITE waits for its tokens before it runs, so a connection's
//! in-flight budget fills and we stop reading its socket. A READ reply waits for its tokens
//! before it is sent.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

/// Largest single charge: one 1 MiB READ or WRITE plus its headers.
const COST_MAX: u64 = (1 << 20) + 64 * 1024;
/// Deficit-round-robin quantum: one maximal operation per client per round.
const QUANTUM: u64 = COST_MAX;
/// Smallest burst: a bucket must be able to hold one maximal operation.
const BURST_MIN: u64 = 2 * COST_MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Read,
    Write,
}

impl Direction {
    pub fn label(self) -> &'static str {
        match self {
            Direction::Read => "read",
            Direction::Write => "write",
        }
    }
}

/// A bandwidth tier. `None` means unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tier {
    /// Bytes per second.
    pub read: Option<u64>,
    pub write: Option<u64>,
    pub total: Option<u64>,
    /// Operations per second.
    pub iops: Option<u64>,
    /// Bytes of credit a bucket accumulates while idle (at least 2 MiB).
    pub burst: u64,
}

impl Tier {
    pub const fn unlimited() -> Tier {
        Tier {
            read: None,
            write: None,
            total: None,
            iops: None,
            burst: BURST_MIN,
        }
    }

    /// Named tiers: "1g", "20g", "40g", "80g" (Gbit/s of total bandwidth, as mount targets are
    /// sold), "unlimited". Burst: 100 ms of the rate.
    pub fn named(name: &str) -> Option<Tier> {
        let gbit: u64 = match name {
            "unlimited" => return Some(Tier::unlimited()),
            "1g" => 1,
            "20g" => 20,
            "40g" => 40,
            "80g" => 80,
            _ => return None,
        };
        let bytes = gbit * 1_000_000_000 / 8;
        Some(Tier {
            total: Some(bytes),
            burst: (bytes / 10).max(BURST_MIN),
            ..Tier::unlimited()
        })
    }

    pub fn is_unlimited(&self) -> bool {
        self.read.is_none() && self.write.is_none() && self.total.is_none() && self.iops.is_none()
    }
}

/// A tier as written in the config: a name, or a table of rates.
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum TierConfig {
    Named(String),
    Custom(CustomTier),
}

/// `{ read = "40MB/s", write = "40MB/s", total = "80MB/s", iops = 20000, burst = "16MiB" }`.
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CustomTier {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iops: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<String>,
}

impl TierConfig {
    pub fn resolve(&self) -> Result<Tier, String> {
        match self {
            TierConfig::Named(n) => Tier::named(n).ok_or_else(|| {
                format!("unknown tier {n:?}: use 1g, 20g, 40g, 80g, unlimited or a table of rates")
            }),
            TierConfig::Custom(c) => {
                let rate = |v: &Option<String>| v.as_deref().map(parse_rate).transpose();
                let tier = Tier {
                    read: rate(&c.read)?,
                    write: rate(&c.write)?,
                    total: rate(&c.total)?,
                    iops: c.iops.filter(|&n| n > 0),
                    burst: BURST_MIN,
                };
                let fastest = [tier.read, tier.write, tier.total]
                    .into_iter()
                    .flatten()
                    .max()
                    .unwrap_or(0);
                let burst = match &c.burst {
                    Some(b) => parse_size(b)?,
                    None => fastest / 10,
                };
                Ok(Tier {
                    burst: burst.max(BURST_MIN),
                    ..tier
                })
            }
        }
    }
}

/// "40MB/s", "2.5GB/s", "800MiB/s", "10Gbit/s", "1000000" (bytes per second).
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, unit) = split_number(t);
    let x: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a rate like \"40MB/s\" or \"10Gbit/s\""))?;
    let mult = match unit.trim() {
        "" | "B/s" => 1.0,
        "KB/s" => 1e3,
        "MB/s" => 1e6,
        "GB/s" => 1e9,
        "KiB/s" => 1024.0,
        "MiB/s" => 1024.0 * 1024.0,
        "GiB/s" => 1024.0 * 1024.0 * 1024.0,
        "Kbit/s" => 1e3 / 8.0,
        "Mbit/s" => 1e6 / 8.0,
        "Gbit/s" => 1e9 / 8.0,
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?} (B/s, MB/s, GiB/s, Gbit/s, ...)"
            ))
        }
    };
    let v = x * mult;
    if !(v.is_finite() && v >= 1.0) {
        return Err(format!("{s:?}: a rate must be at least 1 B/s"));
    }
    Ok(v as u64)
}

/// "16MiB", "8MB", "1048576".
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (num, unit) = split_number(s.trim());
    let x: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a size like \"16MiB\""))?;
    let mult = match unit.trim() {
        "" | "B" => 1.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?} (B, KiB, MiB, MB, ...)"
            ))
        }
    };
    let v = x * mult;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("{s:?}: not a size"));
    }
    Ok(v as u64)
}

fn split_number(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    s.split_at(end)
}

#[derive(Debug)]
struct Bucket {
    /// Units per second.
    rate: f64,
    capacity: f64,
    level: f64,
}

impl Bucket {
    fn new(rate: u64, capacity: u64) -> Bucket {
        Bucket {
            rate: rate as f64,
            capacity: capacity as f64,
            level: capacity as f64,
        }
    }

    fn refill(&mut self, seconds: f64) {
        self.level = (self.level + self.rate * seconds).min(self.capacity);
    }

    /// A cost never exceeds what the bucket can hold, or it would wait forever.
    fn clamp(&self, cost: u64) -> f64 {
        (cost as f64).min(self.capacity)
    }

    fn wait_for(&self, cost: u64) -> Duration {
        let missing = self.clamp(cost) - self.level;
        if missing <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(missing / self.rate)
        }
    }
}

#[derive(Debug)]
struct Waiter {
    direction: Direction,
    bytes: u64,
    ops: u64,
    tx: oneshot::Sender<()>,
}

#[derive(Debug, Default)]
struct ClientQueue {
    deficit: u64,
    /// Whether this client got its quantum in the current round.
    credited: bool,
    waiters: VecDeque<Waiter>,
}

#[derive(Debug)]
struct Buckets {
    read: Option<Bucket>,
    write: Option<Bucket>,
    total: Option<Bucket>,
    ops: Option<Bucket>,
}

impl Buckets {
    fn new(t: &Tier) -> Buckets {
        let b = |rate: Option<u64>| rate.map(|r| Bucket::new(r, t.burst));
        Buckets {
            read: b(t.read),
            write: b(t.write),
            total: b(t.total),
            // Operations: a burst of 100 ms worth, at least one.
            ops: t.iops.map(|r| Bucket::new(r, (r / 10).max(1))),
        }
    }

    /// The buckets a request in `direction` draws from, each with whether it counts
    /// operations (rather than bytes).
    fn each(&mut self, direction: Direction) -> impl Iterator<Item = (&mut Bucket, bool)> {
        let dir = match direction {
            Direction::Read => self.read.as_mut(),
            Direction::Write => self.write.as_mut(),
        };
        [
            dir.map(|b| (b, false)),
            self.total.as_mut().map(|b| (b, false)),
            self.ops.as_mut().map(|b| (b, true)),
        ]
        .into_iter()
        .flatten()
    }

    fn all(&mut self) -> impl Iterator<Item = &mut Bucket> {
        [
            &mut self.read,
            &mut self.write,
            &mut self.total,
            &mut self.ops,
        ]
        .into_iter()
        .flatten()
    }

    fn wait_for(&mut self, direction: Direction, bytes: u64, ops: u64) -> Duration {
        self.each(direction)
            .map(|(b, is_ops)| b.wait_for(if is_ops { ops } else { bytes }))
            .max()
            .unwrap_or(Duration::ZERO)
    }

    fn take(&mut self, direction: Direction, bytes: u64, ops: u64) {
        for (b, is_ops) in self.each(direction) {
            b.level -= b.clamp(if is_ops { ops } else { bytes });
        }
    }

    fn refill(&mut self, seconds: f64) {
        for b in self.all() {
            b.refill(seconds);
        }
    }
}

#[derive(Debug)]
struct Inner {
    tier: Tier,
    buckets: Buckets,
    last: Instant,
    clients: HashMap<IpAddr, ClientQueue>,
    ring: VecDeque<IpAddr>,
}

impl Inner {
    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.buckets.refill(dt);
    }

    /// Grants queued requests in deficit-round-robin order while tokens last. Returns how long
    /// until the request at the head can be granted, or None when nothing waits.
    fn grant(&mut self) -> Option<Duration> {
        while let Some(&client) = self.ring.front() {
            let Some(q) = self.clients.get_mut(&client) else {
                self.ring.pop_front();
                continue;
            };
            if !q.credited {
                q.deficit += QUANTUM;
                q.credited = true;
            }
            while let Some(head) = q.waiters.front() {
                if head.tx.is_closed() {
                    q.waiters.pop_front();
                    continue;
                }
                let bytes = head.bytes.min(COST_MAX);
                if bytes > q.deficit {
                    break;
                }
                let wait = self.buckets.wait_for(head.direction, bytes, head.ops);
                if !wait.is_zero() {
                    return Some(wait);
                }
                let w = q.waiters.pop_front().expect("head exists");
                self.buckets.take(w.direction, bytes, w.ops);
                q.deficit -= bytes;
                let _ = w.tx.send(());
            }
            self.ring.pop_front();
            if q.waiters.is_empty() {
                self.clients.remove(&client);
            } else {
                q.credited = false;
                self.ring.push_back(client);
            }
        }
        None
    }
}

/// The pacer of one mount target.
#[derive(Debug)]
pub struct Pacer {
    inner: Mutex<Inner>,
    /// Per client host: how long its requests have been waiting lately (see [`Pacer::pressure`]).
    pressure: Mutex<HashMap<IpAddr, Ewma>>,
    wake: Arc<Notify>,
    /// Whether the tier limits anything: lets the connection skip pacing work entirely on
    /// unlimited targets (the common case) without taking the lock.
    limited: std::sync::atomic::AtomicBool,
}

impl Pacer {
    /// A pacer and the task that grants its queued requests; spawn the task on the runtime.
    pub fn new(tier: Tier) -> (Arc<Pacer>, impl std::future::Future<Output = ()> + Send) {
        let pacer = Arc::new(Pacer {
            inner: Mutex::new(Inner {
                tier,
                buckets: Buckets::new(&tier),
                last: Instant::now(),
                clients: HashMap::new(),
                ring: VecDeque::new(),
            }),
            pressure: Mutex::new(HashMap::new()),
            wake: Arc::new(Notify::new()),
            limited: std::sync::atomic::AtomicBool::new(!tier.is_unlimited()),
        });
        // The task holds the pacer weakly: it ends when the last user drops the pacer.
        let weak = Arc::downgrade(&pacer);
        let wake = pacer.wake.clone();
        let task = async move {
            loop {
                let Some(p) = weak.upgrade() else { return };
                let next = {
                    let mut g = p.inner.lock().expect("pacer lock poisoned");
                    g.refill(Instant::now());
                    g.grant()
                };
                drop(p);
                // notify_one() stores a permit, so a wake between grant() and here is not lost.
                let notified = wake.notified();
                match next {
                    Some(d) => {
                        tokio::select! {
                            _ = tokio::time::sleep(d) => {}
                            _ = notified => {}
                        }
                    }
                    None => notified.await,
                }
            }
        };
        (pacer, task)
    }

    pub fn is_limited(&self) -> bool {
        self.limited.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn tier(&self) -> Tier {
        self.inner.lock().expect("pacer lock poisoned").tier
    }

    /// Changes the tier in place: connections stay, queued requests are granted at the new rate.
    pub fn set_tier(&self, tier: Tier) {
        let mut g = self.inner.lock().expect("pacer lock poisoned");
        g.refill(Instant::now());
        g.tier = tier;
        self.limited
            .store(!tier.is_unlimited(), std::sync::atomic::Ordering::Relaxed);
        g.buckets = Buckets::new(&tier);
        // Start the new tier empty, so a change down takes effect at once rather than after
        // a burst at the old rate.
        for b in g.buckets.all() {
            b.level = 0.0;
        }
        drop(g);
        self.wake.notify_one();
    }

    /// Waits until `client` may move `bytes` in `direction` (and `ops` operations); returns how
    /// long it waited.
    pub async fn acquire(
        &self,
        direction: Direction,
        client: IpAddr,
        bytes: u64,
        ops: u64,
    ) -> Duration {
        let start = Instant::now();
        let rx = {
            let mut g = self.inner.lock().expect("pacer lock poisoned");
            // Calls that move no data wait only when operations are capped.
            if g.tier.is_unlimited() || (bytes == 0 && g.tier.iops.is_none()) {
                return Duration::ZERO;
            }
            g.refill(start);
            let bytes_capped = bytes.min(COST_MAX);
            if g.ring.is_empty() && g.buckets.wait_for(direction, bytes_capped, ops).is_zero() {
                g.buckets.take(direction, bytes_capped, ops);
                return Duration::ZERO;
            }
            let (tx, rx) = oneshot::channel();
            let q = g.clients.entry(client).or_default();
            let was_idle = q.waiters.is_empty();
            q.waiters.push_back(Waiter {
                direction,
                bytes,
                ops,
                tx,
            });
            if was_idle {
                g.ring.push_back(client);
            }
            rx
        };
        self.wake.notify_one();
        let _ = rx.await;
        let waited = start.elapsed();
        self.record_wait(client, waited, Instant::now());
        waited
    }

    pub(crate) fn record_wait(&self, client: IpAddr, waited: Duration, now: Instant) {
        let mut p = self.pressure.lock().expect("pressure lock poisoned");
        if p.len() >= PRESSURE_CLIENTS_MAX && !p.contains_key(&client) {
            p.retain(|_, e| e.value(now) >= PRESSURE_FORGET);
            if p.len() >= PRESSURE_CLIENTS_MAX {
                return;
            }
        }
        p.entry(client).or_default().add(waited, now);
    }

    /// How long `client`'s requests have waited for tokens lately: an average over the last
    /// few seconds (half-life [`PRESSURE_HALF_LIFE`]) that decays when it stops waiting.
    /// NFSv4.1 uses it to ask a chronically throttled client for fewer slots.
    pub fn pressure(&self, client: IpAddr, now: Instant) -> Duration {
        self.pressure
            .lock()
            .expect("pressure lock poisoned")
            .get(&client)
            .map_or(Duration::ZERO, |e| e.value(now))
    }
}

/// Half-life of [`Pacer::pressure`].
pub const PRESSURE_HALF_LIFE: Duration = Duration::from_secs(2);
/// Client hosts whose pressure is tracked per target; quiet ones are forgotten first.
const PRESSURE_CLIENTS_MAX: usize = 4096;
const PRESSURE_FORGET: Duration = Duration::from_millis(1);

/// An exponentially weighted average of waits that decays with time.
#[derive(Debug, Default, Clone, Copy)]
struct Ewma {
    seconds: f64,
    at: Option<Instant>,
}

impl Ewma {
    fn decayed(&self, now: Instant) -> f64 {
        let Some(at) = self.at else { return 0.0 };
        let dt = now.saturating_duration_since(at).as_secs_f64();
        self.seconds * 0.5f64.powf(dt / PRESSURE_HALF_LIFE.as_secs_f64())
    }

    fn add(&mut self, waited: Duration, now: Instant) {
        // Each sample moves the average an eighth of the way.
        let v = self.decayed(now);
        self.seconds = v + (waited.as_secs_f64() - v) / 8.0;
        self.at = Some(now);
    }

    fn value(&self, now: Instant) -> Duration {
        Duration::from_secs_f64(self.decayed(now).max(0.0))
    }
}

/// A mount target as configured.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Shown in logs and metrics; the key for live tier changes.
    pub name: String,
    /// Addresses clients mount this target at. Sluice listens on them (unless a wildcard
    /// `server.listen` already covers the port) and classifies every connection by the local
    /// address it arrived on.
    pub listen: Vec<std::net::SocketAddr>,
    /// "1g", "20g", "40g", "80g", "unlimited", or a table `{ read, write, total, iops, burst }`.
    pub tier: TierConfig,
    /// Paths of the exports served through this target; empty (the default): every export.
    /// Through the target, other exports cannot be mounted, their handles are stale, and the
    /// NFSv4.1 pseudo file system does not show them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<String>,
    /// In a cluster with etcd: one node at a time serves the target, claimed under an etcd
    /// lease; it puts the `listen` addresses on `cluster.interface` and takes them off when
    /// it loses the target, and another node takes over when it dies (docs/cluster.md).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub floating: bool,
}

/// Where a target or export was defined: the config file (the API may not delete it) or the
/// admin API (persisted in the data directory).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Config,
    Api,
}

/// Target names appear in URLs, metrics and logs: 1 to 63 of `A-Z a-z 0-9 . _ -`, starting
/// with a letter or digit.
pub fn check_target_name(name: &str) -> Result<(), String> {
    let ok = (1..=63).contains(&name.len())
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?}: use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit"
        ))
    }
}

/// A mount target at run time.
#[derive(Debug)]
pub struct Target {
    pub name: String,
    pub listen: Vec<std::net::SocketAddr>,
    /// Export paths served through it; empty: all.
    pub exports: Vec<String>,
    pub pacer: Arc<Pacer>,
    pub tier_config: Mutex<TierConfig>,
    pub source: Source,
    /// Open connections.
    pub connections: std::sync::atomic::AtomicUsize,
    /// Listener tasks of this target's own addresses, stopped when it is deleted.
    pub listeners: Mutex<Vec<tokio::task::AbortHandle>>,
    /// Served only while this node owns it (`TargetConfig::floating`).
    pub floating: bool,
    /// Bumped to close every open connection of the target (a floating target this node
    /// stopped owning); each connection watches it.
    pub cut: tokio::sync::watch::Sender<u64>,
    /// A floating target's owner (node, epoch) as this node last read it from etcd.
    pub owner: Mutex<Option<(u64, i64)>>,
    /// The ownership epoch this node serves a floating target at (0: it does not serve it):
    /// the calls of its clients carry it to the writer, which refuses them once a later owner
    /// fenced the target (`ha::forward::fence`).
    pub serving_epoch: std::sync::atomic::AtomicU64,
    /// `name` as the tag carries it (made once: RDMA tags every call).
    tag_name: Arc<str>,
    /// The last node other than this one that this node saw owning a floating target: after
    /// a takeover, its NLM clients of the target are told to reclaim here.
    pub previous_owner: Mutex<Option<u64>>,
    /// A floating target's open TCP connections, for its next owner to tickle
    /// (`crate::tickle`).
    pub endpoints: Mutex<std::collections::BTreeSet<crate::tickle::Endpoint>>,
}

impl Target {
    /// A target and its pacer; spawns the pacer's task (needs a runtime).
    pub fn new(config: &TargetConfig, source: Source) -> Result<Arc<Target>, String> {
        let (pacer, task) = Pacer::new(config.tier.resolve()?);
        tokio::spawn(task);
        Ok(Arc::new(Target {
            name: config.name.clone(),
            listen: config.listen.clone(),
            exports: config.exports.clone(),
            pacer,
            tier_config: Mutex::new(config.tier.clone()),
            source,
            connections: std::sync::atomic::AtomicUsize::new(0),
            listeners: Mutex::new(Vec::new()),
            floating: config.floating,
            cut: tokio::sync::watch::Sender::new(0),
            owner: Mutex::new(None),
            serving_epoch: std::sync::atomic::AtomicU64::new(0),
            tag_name: config.name.as_str().into(),
            previous_owner: Mutex::new(None),
            endpoints: Mutex::new(Default::default()),
        }))
    }

    /// Stops the target's listener tasks (dropping an `AbortHandle` would leave them running).
    pub fn stop_listeners(&self) {
        for l in self
            .listeners
            .lock()
            .expect("listeners lock poisoned")
            .drain(..)
        {
            l.abort();
        }
    }

    /// Takes the connections listed for the target's next owner to tickle (this node serves
    /// the target again: those connections are gone here).
    pub fn take_endpoints(&self) -> std::collections::BTreeSet<crate::tickle::Endpoint> {
        std::mem::take(&mut *self.endpoints.lock().expect("endpoints lock poisoned"))
    }

    /// Closes every open connection of the target (they notice at once, mid-call or idle).
    pub fn cut_connections(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// The tag the calls of a connection of this target carry (`None`: not floating).
    pub fn tag(&self) -> Option<ha::forward::TargetEpoch> {
        self.floating.then(|| ha::forward::TargetEpoch {
            name: Arc::clone(&self.tag_name),
            epoch: self
                .serving_epoch
                .load(std::sync::atomic::Ordering::Acquire),
        })
    }

    /// Whether the export at `path` is served through this target.
    pub fn serves(&self, path: &str) -> bool {
        self.exports.is_empty() || self.exports.iter().any(|p| p == path)
    }

    /// Applies a new tier in place (connections stay).
    pub fn set_tier(&self, tier: &TierConfig) -> Result<(), String> {
        let resolved = tier.resolve()?;
        self.pacer.set_tier(resolved);
        *self.tier_config.lock().expect("tier lock poisoned") = tier.clone();
        Ok(())
    }
}

/// Every target of a node, plus the unlimited "default" target for connections that arrive on
/// no target's address.
#[derive(Debug)]
pub struct TargetTable {
    targets: std::sync::RwLock<Vec<Arc<Target>>>,
    pub default: Arc<Target>,
    /// Open connections per client address (for status: how many clients are connected).
    clients: Mutex<HashMap<IpAddr, usize>>,
    /// Whether some target serves only chosen exports: without one, handle checks need not
    /// classify the connection on every call.
    restricts_exports: std::sync::atomic::AtomicBool,
    /// Bumped whenever a floating target's connections change (saved by `crate::tickle`).
    pub endpoints_changed: std::sync::atomic::AtomicU64,
    /// Saves of them made by this run (their versions).
    pub endpoints_saves: std::sync::atomic::AtomicU64,
}

impl TargetTable {
    /// Builds the targets of the config file and spawns their pacers' tasks (needs a runtime).
    pub fn new(configs: &[TargetConfig]) -> Result<TargetTable, String> {
        let mut targets = Vec::new();
        for c in configs {
            targets.push(Target::new(c, Source::Config)?);
        }
        let default = TargetConfig {
            name: "default".into(),
            listen: Vec::new(),
            tier: TierConfig::Named("unlimited".into()),
            exports: Vec::new(),
            floating: false,
        };
        let restricts = targets.iter().any(|t| !t.exports.is_empty());
        Ok(TargetTable {
            targets: std::sync::RwLock::new(targets),
            default: Target::new(&default, Source::Config)?,
            clients: Mutex::new(HashMap::new()),
            restricts_exports: std::sync::atomic::AtomicBool::new(restricts),
            endpoints_changed: Default::default(),
            endpoints_saves: Default::default(),
        })
    }

    /// Whether some target serves only chosen exports.
    pub fn restricts_exports(&self) -> bool {
        self.restricts_exports
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn note_exports(&self, targets: &[Arc<Target>]) {
        let r = targets.iter().any(|t| !t.exports.is_empty());
        self.restricts_exports
            .store(r, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn list(&self) -> Vec<Arc<Target>> {
        self.targets.read().expect("targets lock poisoned").clone()
    }

    /// Adds a target; fails if the name is taken.
    pub fn add(&self, t: Arc<Target>) -> Result<(), String> {
        let mut g = self.targets.write().expect("targets lock poisoned");
        if t.name == "default" || g.iter().any(|x| x.name == t.name) {
            return Err(format!("a target named {:?} exists", t.name));
        }
        g.push(t);
        self.note_exports(&g);
        Ok(())
    }

    /// Removes a target and stops its listeners; its open connections keep its pacer until
    /// they close.
    pub fn remove(&self, name: &str) -> Option<Arc<Target>> {
        let mut g = self.targets.write().expect("targets lock poisoned");
        let i = g.iter().position(|t| t.name == name)?;
        let t = g.remove(i);
        self.note_exports(&g);
        t.stop_listeners();
        Some(t)
    }

    /// The target a connection belongs to, by the local address it arrived on: an exact
    /// address and port first, then the same IP on any port.
    pub fn classify(&self, local: std::net::SocketAddr) -> Arc<Target> {
        let ip = |a: std::net::SocketAddr| crate::export::canonical(a.ip());
        let g = self.targets.read().expect("targets lock poisoned");
        g.iter()
            .find(|t| t.listen.contains(&local))
            .or_else(|| {
                g.iter()
                    .find(|t| t.listen.iter().any(|a| ip(*a) == ip(local)))
            })
            .unwrap_or(&self.default)
            .clone()
    }

    pub fn by_name(&self, name: &str) -> Option<Arc<Target>> {
        let g = self.targets.read().expect("targets lock poisoned");
        g.iter().find(|t| t.name == name).cloned()
    }

    /// Bookkeeping of a connection opening (+1) or closing (-1).
    pub fn connection(
        &self,
        target: &Target,
        local: std::net::SocketAddr,
        peer: std::net::SocketAddr,
        opened: bool,
    ) {
        use std::sync::atomic::Ordering;
        // A connection that ends after this node stopped serving the target (it closes them
        // then) stays listed: the target's next owner tickles it (`crate::tickle`).
        let serving = target.serving_epoch.load(Ordering::Acquire) != 0;
        if target.floating && (opened || serving) {
            // (a dual-stack listener sees IPv4 clients as IPv4-mapped IPv6 addresses)
            let canonical = |a: std::net::SocketAddr| {
                std::net::SocketAddr::new(a.ip().to_canonical(), a.port())
            };
            let endpoint = (canonical(local), canonical(peer));
            let mut e = target.endpoints.lock().expect("endpoints lock poisoned");
            if opened {
                e.insert(endpoint);
            } else {
                e.remove(&endpoint);
            }
            self.endpoints_changed.fetch_add(1, Ordering::Relaxed);
        }
        let client = peer.ip();
        let mut c = self.clients.lock().expect("clients lock poisoned");
        if opened {
            target.connections.fetch_add(1, Ordering::Relaxed);
            *c.entry(client).or_default() += 1;
        } else {
            target.connections.fetch_sub(1, Ordering::Relaxed);
            if let Some(n) = c.get_mut(&client) {
                *n -= 1;
                if *n == 0 {
                    c.remove(&client);
                }
            }
        }
    }

    /// Distinct client addresses with an open connection.
    pub fn client_count(&self) -> usize {
        self.clients.lock().expect("clients lock poisoned").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1_000_000;

    fn tier(read: u64) -> Tier {
        Tier {
            read: Some(read),
            burst: BURST_MIN,
            ..Tier::unlimited()
        }
    }

    #[test]
    fn named_tiers_are_gigabits_of_total_bandwidth() {
        assert_eq!(Tier::named("1g").unwrap().total, Some(125_000_000));
        assert_eq!(Tier::named("80g").unwrap().total, Some(10_000_000_000));
        assert!(Tier::named("unlimited").unwrap().is_unlimited());
        assert!(Tier::named("7g").is_none());
    }

    #[test]
    fn rates_and_sizes_parse_with_their_units() {
        assert_eq!(parse_rate("40MB/s"), Ok(40 * MB));
        assert_eq!(parse_rate("10Gbit/s"), Ok(1_250_000_000));
        assert_eq!(parse_rate("1MiB/s"), Ok(1 << 20));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("40 furlongs/s").is_err());
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
    }

    #[test]
    fn custom_tier_gets_a_burst_of_at_least_two_operations() {
        let t = TierConfig::Custom(CustomTier {
            read: Some("20MB/s".into()),
            ..CustomTier::default()
        })
        .resolve()
        .unwrap();
        assert_eq!(t.read, Some(20 * MB));
        assert_eq!(t.burst, BURST_MIN);
    }

    async fn run_for(pacer: &Arc<Pacer>, clients: &[(IpAddr, usize)], secs: u64) -> Vec<u64> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut handles = Vec::new();
        for (i, &(ip, conns)) in clients.iter().enumerate() {
            for _ in 0..conns {
                let p = pacer.clone();
                handles.push((
                    i,
                    tokio::spawn(async move {
                        let mut moved = 0u64;
                        while Instant::now() < deadline {
                            p.acquire(Direction::Read, ip, 1 << 20, 1).await;
                            moved += 1 << 20;
                        }
                        moved
                    }),
                ));
            }
        }
        let mut per_client = vec![0u64; clients.len()];
        for (i, h) in handles {
            per_client[i] += h.await.unwrap();
        }
        per_client
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[tokio::test(start_paused = true)]
    async fn a_saturating_client_gets_the_tier_rate() {
        let (p, task) = Pacer::new(tier(20 * MB));
        tokio::spawn(task);
        let moved = run_for(&p, &[(ip(1), 4)], 10).await;
        let rate = moved[0] as f64 / 10.0;
        assert!((rate / (20 * MB) as f64 - 1.0).abs() < 0.05, "rate {rate}");
    }

    #[tokio::test(start_paused = true)]
    async fn sixteen_connections_do_not_starve_one() {
        let (p, task) = Pacer::new(tier(40 * MB));
        tokio::spawn(task);
        let moved = run_for(&p, &[(ip(1), 16), (ip(2), 1)], 10).await;
        let (a, b) = (moved[0] as f64, moved[1] as f64);
        let jain = (a + b).powi(2) / (2.0 * (a * a + b * b));
        assert!(jain >= 0.95, "jain {jain}: {a} vs {b}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_tier_change_takes_effect_at_once() {
        let (p, task) = Pacer::new(tier(40 * MB));
        tokio::spawn(task);
        run_for(&p, &[(ip(1), 2)], 2).await;
        p.set_tier(tier(10 * MB));
        let moved = run_for(&p, &[(ip(1), 2)], 5).await;
        let rate = moved[0] as f64 / 5.0;
        assert!((rate / (10 * MB) as f64 - 1.0).abs() < 0.1, "rate {rate}");
    }

    #[tokio::test]
    async fn connections_are_classified_by_the_address_they_arrived_on() {
        let cfg = |name: &str, addr: &str| TargetConfig {
            name: name.into(),
            listen: vec![addr.parse().unwrap()],
            tier: TierConfig::Named("1g".into()),
            exports: Vec::new(),
            floating: false,
        };
        let t =
            TargetTable::new(&[cfg("a", "127.0.0.2:2049"), cfg("b", "127.0.0.3:2049")]).unwrap();
        assert_eq!(t.classify("127.0.0.3:2049".parse().unwrap()).name, "b");
        assert_eq!(t.classify("127.0.0.2:20048".parse().unwrap()).name, "a");
        assert_eq!(
            t.classify("127.0.0.1:2049".parse().unwrap()).name,
            "default"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_tier_never_waits() {
        let (p, task) = Pacer::new(Tier::unlimited());
        tokio::spawn(task);
        let d = p.acquire(Direction::Write, ip(1), 1 << 20, 1).await;
        assert_eq!(d, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn reads_do_not_consume_a_write_only_cap() {
        let t = Tier {
            write: Some(MB),
            ..Tier::unlimited()
        };
        let (p, task) = Pacer::new(t);
        tokio::spawn(task);
        let start = Instant::now();
        for _ in 0..100 {
            p.acquire(Direction::Read, ip(1), 1 << 20, 1).await;
        }
        assert!(start.elapsed() < Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn an_iops_cap_limits_small_operations() {
        let t = Tier {
            iops: Some(100),
            ..Tier::unlimited()
        };
        let (p, task) = Pacer::new(t);
        tokio::spawn(task);
        let start = Instant::now();
        for _ in 0..210 {
            p.acquire(Direction::Read, ip(1), 4096, 1).await;
        }
        let secs = start.elapsed().as_secs_f64();
        assert!(
            (1.9..2.2).contains(&secs),
            "{secs} s for 210 ops at 100/s with a 10-op burst"
        );
    }
}

#[cfg(test)]
mod pressure_tests {
    use super::*;

    #[tokio::test]
    async fn pressure_follows_a_clients_waits_and_fades_when_they_stop() {
        let (pacer, task) = Pacer::new(TierConfig::Named("1g".into()).resolve().unwrap());
        tokio::spawn(task);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..30 {
            pacer.record_wait(a, Duration::from_millis(100), t0);
        }
        let p = pacer.pressure(a, t0);
        assert!(
            p > Duration::from_millis(90) && p <= Duration::from_millis(100),
            "{p:?}"
        );
        assert_eq!(pacer.pressure(b, t0), Duration::ZERO, "per client host");
        let later = pacer.pressure(a, t0 + PRESSURE_HALF_LIFE * 4);
        assert!(later < Duration::from_millis(7), "fades: {later:?}");
    }
}
