//! The writing engine's data store in a cluster: a file's bytes are on every node its layout
//! names, and whichever node writes the metadata reaches them there.
//!
//! [`ClusterData`] wraps this node's own data store. A new file is placed on this node (the
//! writer) and on `copies - 1` other voters of the metadata log, chosen in turn so that copies
//! spread over the cluster (`Layout { copies, nodes }` with `nodes.len() == copies`: every
//! copy holds the whole file). Then:
//!
//! * **Every change goes to every copy** (WRITE, truncation, COMMIT, removal), in parallel,
//!   and succeeds only when every copy took it. A copy on a node that cannot be reached makes
//!   the call fail with `Unavailable` (NFS3ERR_JUKEBOX: the client retries) until the node
//!   is back or removed from the cluster. A node that is no longer a voter (`sluice cluster
//!   remove`, `leave`) never returns, so its copies are skipped for writes and reads alike.
//!   So every copy on a voter has every acknowledged write.
//! * **The rebuild** ([`restore_copies`], run every few seconds by the writing node after the
//!   voters changed) gives each file with a copy on a departed node a new copy on a voter
//!   its layout does not name: copied a MiB at a time while the file's data is held still,
//!   with the new node taking every change made meanwhile, synced, and only then named in the
//!   layout (one metadata batch). With no free voter the file stays degraded until one
//!   joins.
//! * **A COMMIT** syncs every copy. Each data answer carries its node's boot id: when a copy's
//!   node restarted since this engine last reached it, UNSTABLE data it held may be gone, so
//!   [`DataStore::losses`] rises, which changes the engine's write verifier and makes clients
//!   send their uncommitted writes again (RFC 1813, COMMIT).
//! * **Reads** come from this node's own copy when it has one, else from the copies in turn
//!   (starting at a different one per MiB, to spread the load); a copy that fails (its node
//!   down, a bad block) is passed over for the next.
//!
//! * **Fencing**: every data call carries the term this node's engine writes in; a node
//!   refuses one older than the newest term it has seen (in a data call or in its own log),
//!   so a leader that lost its term cannot change a copy after its successor did.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backend::engine::{Counter, DataStore, Engine, Layout, MetaStore, Staged};
use backend::{CopyResidency, Error, FsStat, Residency, Result};
use bytes::Bytes;

use super::wire::{Answer, Call};
use super::{lock, Peers};
use crate::metalog::RaftMeta;

/// Files whose copies are remembered (cleared when full, and per file when its layout
/// changes).
const HOLDERS_CACHED_MAX: usize = 1 << 16;
/// What a rebuild copies under one hold of a file's data.
const COPY_PIECE: u64 = 1 << 20;
/// Repairs are written in whole pieces of this size (a multiple of every store's block).
const REPAIR_ALIGN: u64 = 64 * 1024;
/// Repairs waiting at most; more wait for a scrub.
const REPAIRS_QUEUED_MAX: usize = 4096;
/// How often a change waiting on a copy's node checks that the node still takes connections.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// A copy's node that has left the log's calls unanswered this long (the leader calls every
/// follower each 100 ms) is checked at once, and with [`QUICK_PROBE`] (see [`unresponsive`]).
const SILENT_AFTER: Duration = Duration::from_millis(500);
/// How long the check of a silent node waits for it to take a connection.
const QUICK_PROBE: Duration = Duration::from_millis(300);
/// How often a change waiting on a copy's node looks whether the node fell silent.
const SILENCE_CHECK_EVERY: Duration = Duration::from_millis(100);
/// How long a node that failed a data call as unreachable gets no new file and no new copy.
const UNREACHABLE_FOR: Duration = Duration::from_secs(10);

/// See the module docs.
pub struct ClusterData<D> {
    local: Arc<D>,
    node: u64,
    meta: Arc<RaftMeta>,
    peers: Arc<Peers>,
    /// Copies a new file gets (at most the number of voters).
    copies: u8,
    holders: Mutex<HashMap<u64, Arc<[u64]>>>,
    runtime: tokio::runtime::Handle,
    /// The boot id each copy's node last answered with.
    boots: Mutex<HashMap<u64, u64>>,
    /// Restarts of copies' nodes seen (see the module docs).
    losses: AtomicU64,
    /// Turns the choice of partners for new files and of the copy a read starts at.
    turn: AtomicU64,
    /// Files being copied to a new node by the rebuild: that node takes every change too,
    /// but serves no read until the layout names it.
    filling: Mutex<HashMap<u64, u64>>,
    /// Bytes a copy failed to read (a bad block), to write again there from a good copy.
    repairs: Mutex<Vec<Repair>>,
    /// Bumped whenever remembered layouts are replaced or dropped (see `holders`).
    layouts_changed: AtomicU64,
    /// When each node last failed a data call as unreachable: new files and new copies
    /// avoid it for [`UNREACHABLE_FOR`].
    unreachable: Mutex<HashMap<u64, Instant>>,
    /// When each node last failed a connect probe while a change waited on it (see
    /// [`unresponsive`]): while it stays silent to the log, changes do not wait on it.
    probed_out: Mutex<HashMap<u64, Instant>>,
    /// Copies to take out of their file's layout, `(ino, node)`: the node did not answer a
    /// change that the file's other copies took (see the module docs).
    drops: Mutex<BTreeSet<(u64, u64)>>,
    /// When a copy last left a layout (a change that failed meanwhile is tried again).
    last_drop: Mutex<Option<Instant>>,
    /// Writes staged on this node's store only and not yet installed, per inode (see
    /// `fill`). Per inode, so a rebuild copying one file never waits on saves to others.
    staging: Arc<Mutex<HashMap<u64, u64>>>,
    /// The background scrub's rate (bytes per second, every copy counted; 0: off) and the
    /// least time between the starts of two passes (see [`scrub`]).
    scrub_rate: u64,
    scrub_every: Duration,
    /// The rebuild pass under way, for `sluice status` (see [`RebuildProgress`]).
    rebuild: Mutex<RebuildProgress>,
    /// Each node's failure domain as last read from the log ([`domain_key`]; empty: none)
    /// and when the reading began.
    domains: Mutex<Option<(Instant, Arc<Domains>)>>,
}

/// The document under which node `node` keeps its failure domain (`[cluster] domain`, e.g.
/// a rack): copies of a file go to distinct domains while there are enough of them.
pub fn domain_key(node: u64) -> Vec<u8> {
    format!("cluster/domain/{node}").into_bytes()
}

/// Nodes' failure domains by node id (empty: none).
type Domains = HashMap<u64, String>;

/// Node `n`'s failure domain in a map from [`ClusterData::domains`] (`None`: it has none).
fn domain_in(domains: &Domains, n: u64) -> Option<&str> {
    domains
        .get(&n)
        .map(String::as_str)
        .filter(|d| !d.is_empty())
}

/// How long the nodes' domains read from the log are used before they are read again.
const DOMAINS_FOR: Duration = Duration::from_secs(2);

/// `candidates` in their order, those whose failure domain (`domain_of`; a node without one
/// is a domain of its own) none of `taken` nor an earlier pick has coming first.
fn spread<'a>(
    candidates: impl IntoIterator<Item = u64>,
    taken: impl IntoIterator<Item = u64>,
    domain_of: impl Fn(u64) -> Option<&'a str>,
) -> Vec<u64> {
    let mut used: Vec<&str> = taken.into_iter().filter_map(&domain_of).collect();
    let (mut first, mut rest) = (Vec::new(), Vec::new());
    for n in candidates {
        match domain_of(n) {
            Some(d) if used.contains(&d) => rest.push(n),
            Some(d) => {
                used.push(d);
                first.push(n);
            }
            None => first.push(n),
        }
    }
    first.extend(rest);
    first
}

/// Where the rebuild pass under way is: what is left of the copies it found missing when it
/// began, and what it has copied since. All zero between passes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RebuildProgress {
    /// Files with a copy to make, not yet done.
    pub files_left: u64,
    /// Bytes still to copy (each missing copy counts the file's size).
    pub bytes_left: u64,
    /// Bytes copied in this pass, and when it began.
    pub copied: u64,
    pub started: Option<Instant>,
}

impl RebuildProgress {
    /// Bytes a second copied so far in this pass (0 before the first second).
    pub fn rate(&self, now: Instant) -> u64 {
        let secs = self
            .started
            .map_or(0.0, |at| now.saturating_duration_since(at).as_secs_f64());
        if secs < 1.0 {
            return 0;
        }
        (self.copied as f64 / secs) as u64
    }

    /// Seconds to the end of the pass at the rate so far (`None` without a rate yet).
    pub fn eta_seconds(&self, now: Instant) -> Option<u64> {
        let rate = self.rate(now);
        (rate > 0).then(|| self.bytes_left.div_ceil(rate))
    }
}

/// A write this node's store staged, with the count of staged writes in flight it holds.
struct ClusterStaged {
    inner: Staged,
    _guard: StagingGuard,
}

/// One staged write to an inode in flight (counted in `ClusterData::staging` while it lives).
struct StagingGuard(Arc<Mutex<HashMap<u64, u64>>>, u64);

impl StagingGuard {
    fn new(counts: &Arc<Mutex<HashMap<u64, u64>>>, ino: u64) -> StagingGuard {
        *lock(counts).entry(ino).or_insert(0) += 1;
        StagingGuard(Arc::clone(counts), ino)
    }
}

impl Drop for StagingGuard {
    fn drop(&mut self) {
        let mut counts = lock(&self.0);
        if let Some(n) = counts.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.1);
            }
        }
    }
}

/// See [`ClusterData::repair`].
#[derive(Clone, Copy, Debug)]
struct Repair {
    ino: u64,
    offset: u64,
    len: u64,
    node: u64,
}

/// What one pass of [`restore_copies`] found and did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopiesPass {
    /// Copies made on a new node (one per file and lost node), and the bytes they took.
    pub restored: u64,
    pub bytes: u64,
    /// Files left with fewer copies than their layout asks: no voter is free to hold one.
    pub degraded: u64,
    /// Files whose copy failed (a node unreachable, a read error): tried again next pass.
    pub failed: u64,
    /// Ranges of a copy that failed a read (a bad block) written again from a good copy.
    pub repaired: u64,
    /// Copies taken out of their file's layout because their node did not answer a change
    /// the other copies took.
    pub dropped: u64,
    /// Files with fewer copies than new files get, waiting for an unreachable voter to
    /// answer again (looked at again every pass).
    pub waiting: u64,
}

impl CopiesPass {
    /// Nothing left to do until the voters change (a degraded file waits for a new voter).
    pub fn is_clean(&self) -> bool {
        self.failed == 0 && self.waiting == 0
    }
}

impl<D: DataStore> ClusterData<D> {
    /// This node's store `local`, as seen by the engine of node `node`; new files get one
    /// copy (see [`ClusterData::copies`]). Must be made on the runtime the inter-node calls
    /// run on.
    pub fn new(local: Arc<D>, node: u64, meta: Arc<RaftMeta>, peers: Arc<Peers>) -> Self {
        ClusterData {
            local,
            node,
            meta,
            peers,
            copies: 1,
            holders: Mutex::new(HashMap::new()),
            runtime: tokio::runtime::Handle::current(),
            boots: Mutex::new(HashMap::new()),
            losses: AtomicU64::new(0),
            turn: AtomicU64::new(0),
            filling: Mutex::new(HashMap::new()),
            repairs: Mutex::new(Vec::new()),
            layouts_changed: AtomicU64::new(0),
            unreachable: Mutex::new(HashMap::new()),
            drops: Mutex::new(BTreeSet::new()),
            probed_out: Mutex::new(HashMap::new()),
            last_drop: Mutex::new(None),
            staging: Arc::new(Mutex::new(HashMap::new())),
            scrub_rate: 0,
            scrub_every: Duration::from_secs(7 * 24 * 3600),
            rebuild: Mutex::new(RebuildProgress::default()),
            domains: Mutex::new(None),
        }
    }

    /// The failure domains of `nodes` (and of any node read before), read from the log at
    /// most every [`DOMAINS_FOR`]; look one up with [`domain_in`]. Shared, not copied: a
    /// create reads the log only for a node it has not seen in that time.
    fn domains(&self, nodes: impl IntoIterator<Item = u64>) -> Arc<Domains> {
        let mut cached = lock(&self.domains);
        if cached
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() >= DOMAINS_FOR)
        {
            *cached = Some((Instant::now(), Arc::default()));
        }
        let (_, known) = cached.as_mut().expect("set above");
        let sm = self.meta.state_machine();
        for n in nodes {
            if !known.contains_key(&n) {
                let d = sm
                    .doc(&domain_key(n))
                    .ok()
                    .flatten()
                    .map(|(_, d)| String::from_utf8_lossy(&d).into_owned())
                    .unwrap_or_default();
                Arc::make_mut(known).insert(n, d);
            }
        }
        Arc::clone(known)
    }

    /// The rebuild pass under way (all zero between passes).
    pub fn rebuild_progress(&self) -> RebuildProgress {
        *lock(&self.rebuild)
    }

    /// Scrubs every copy at `bytes_per_second` (0: never), a pass at most every `every`.
    #[must_use]
    pub fn scrub(mut self, bytes_per_second: u64, every: Duration) -> Self {
        self.scrub_rate = bytes_per_second;
        self.scrub_every = every;
        self
    }

    pub(super) fn scrub_settings(&self) -> (u64, Duration) {
        (self.scrub_rate, self.scrub_every)
    }

    /// New files get `copies` copies, on as many distinct voters (fewer while the cluster
    /// has fewer voters). 0 counts as 1.
    #[must_use]
    pub fn copies(mut self, copies: u8) -> Self {
        self.copies = copies.max(1);
        self
    }

    /// The nodes holding `ino`'s data: every node its layout names. A file without a layout
    /// (written before layouts) or without a record (removed) is this node's.
    fn holders(&self, ino: u64) -> Result<Arc<[u64]>> {
        if let Some(nodes) = lock(&self.holders).get(&ino) {
            return Ok(Arc::clone(nodes));
        }
        // A layout read before a rebuild changed it must not be cached after: the rebuild
        // bumps the generation when it sets the new one.
        let generation = self.layouts_changed.load(Ordering::Acquire);
        // The writer's view first (a file made in this term may not be applied yet), then the
        // applied state (a file whose removal is pending still names its holders there).
        let inode = match self.meta.inode(ino)? {
            Some(inode) => Some(inode),
            None => self.meta.state_machine().inode(ino)?,
        };
        let nodes: Arc<[u64]> = match inode.and_then(|i| i.layout) {
            Some(layout) => layout.nodes.into(),
            None => Arc::new([self.node]),
        };
        let mut holders = lock(&self.holders);
        if self.layouts_changed.load(Ordering::Acquire) == generation {
            if holders.len() >= HOLDERS_CACHED_MAX {
                holders.clear();
            }
            holders.insert(ino, Arc::clone(&nodes));
        }
        Ok(nodes)
    }

    /// Drops every remembered layout: another leader may have changed them (a rebuild)
    /// while this node did not write. Called when this node's engine takes over again.
    pub fn forget_layouts(&self) {
        let mut holders = lock(&self.holders);
        self.layouts_changed.fetch_add(1, Ordering::AcqRel);
        holders.clear();
    }

    /// Whether this node holds every copy of `ino` (the common single-node case), and no
    /// rebuild is copying it.
    fn only_here(&self, ino: u64) -> Result<bool> {
        Ok(*self.holders(ino)? == [self.node] && !lock(&self.filling).contains_key(&ino))
    }

    /// The term this node's engine writes in, which every data call carries: `Unavailable`
    /// once this node no longer leads (its client retries and reaches the new leader).
    fn term(&self) -> Result<u64> {
        self.meta.leading().ok_or(Error::Unavailable)
    }

    /// The voters of the metadata log: the nodes copies may be placed on.
    fn voters(&self) -> BTreeSet<u64> {
        let metrics = self.meta.raft().metrics();
        let m = metrics.borrow();
        m.membership_config.membership().voter_ids().collect()
    }

    fn done(&self, node: u64, call: &Call) -> Result<()> {
        match self.call_blocking(node, call)? {
            Answer::Done => Ok(()),
            other => Err(Error::Io(format!("a data call answered {other:?}"))),
        }
    }

    /// Gives `ino` a copy on every voter that replaces a node its layout names but that left
    /// the cluster. `Ok(false)`: no voter was free for some lost copy (the file stays
    /// degraded). Each copy is made under the file's data hold a piece at a time, with the
    /// new node taking every change made meanwhile, and the layout names it only once its
    /// copy is whole and synced.
    fn restore_file<M: MetaStore>(
        &self,
        engine: &Engine<M, Self>,
        ino: u64,
        layout: &Layout,
        wanted: usize,
        voters: &BTreeSet<u64>,
        pass: &mut CopiesPass,
    ) -> Result<bool> {
        let mut current = layout.clone();
        loop {
            // A copy on a departed node to replace, else a missing one to add.
            let lost_slot = current.nodes.iter().position(|n| !voters.contains(n));
            if lost_slot.is_none() && current.nodes.len() >= wanted {
                return Ok(true);
            }
            let free: BTreeSet<u64> = voters
                .iter()
                .copied()
                .filter(|v| !current.nodes.contains(v))
                .collect();
            if free.is_empty() {
                return Ok(false);
            }
            let free: Vec<u64> = self.reachable(free).into_iter().collect();
            if free.is_empty() {
                // Its free voters did not answer lately: looked at again next pass.
                pass.waiting += 1;
                return Ok(true);
            }
            // In turn, a node of a failure domain the file's copies do not use yet first.
            let start = (self.turn.fetch_add(1, Ordering::Relaxed) as usize) % free.len();
            let kept = current.nodes.iter().copied().filter(|n| voters.contains(n));
            let domains = self.domains(free.iter().copied().chain(current.nodes.iter().copied()));
            let order = free.iter().cycle().skip(start).take(free.len()).copied();
            let new = spread(order, kept, |n| domain_in(&domains, n))[0];
            lock(&self.filling).insert(ino, new);
            let copied = self.fill(engine, ino, new).and_then(|bytes| {
                let mut next = current.clone();
                match lost_slot {
                    Some(slot) => next.nodes[slot] = new,
                    None => {
                        next.nodes.push(new);
                        next.copies = next.nodes.len() as u8;
                    }
                }
                engine.change_layout(ino, &current, next.clone())?;
                Ok((bytes, next))
            });
            // With the file's data held still, so that no write sees the old copies without
            // the filling node, nor the layout before this change once it is made.
            let settle = || {
                let mut holders = lock(&self.holders);
                self.layouts_changed.fetch_add(1, Ordering::AcqRel);
                match &copied {
                    Ok((_, next)) => {
                        holders.insert(ino, next.nodes.clone().into());
                    }
                    Err(_) => {
                        holders.remove(&ino);
                    }
                }
                lock(&self.filling).remove(&ino);
            };
            if engine
                .with_data_held(ino, |_| {
                    settle();
                    Ok(())
                })
                .is_err()
            {
                // The file is gone: nothing writes it any more.
                settle();
            }
            if let Err(Error::Unavailable) = &copied {
                lock(&self.unreachable).insert(new, Instant::now());
            }
            let (bytes, next) = copied?;
            tracing::info!(
                ino,
                lost = ?lost_slot.map(|s| current.nodes[s]),
                new,
                bytes,
                "a missing copy was made on another node"
            );
            pass.restored += 1;
            pass.bytes += bytes;
            current = next;
        }
    }

    /// Copies all of `ino` to `new` (see [`ClusterData::restore_file`]); the bytes copied.
    fn fill<M: MetaStore>(&self, engine: &Engine<M, Self>, ino: u64, new: u64) -> Result<u64> {
        // Writes staged on this node alone before `filling` named the new node would be
        // installed only here, possibly behind a piece already copied: wait for them.
        let waited = Instant::now();
        while lock(&self.staging).contains_key(&ino) {
            if waited.elapsed() > Duration::from_secs(5) {
                return Err(Error::Unavailable);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut offset = 0u64;
        let mut bytes = 0u64;
        // The new node's boot id after the first piece: if it restarts before the final sync,
        // pieces it had not synced may be gone, and the copy must not be named.
        let mut boot = None;
        loop {
            let piece = engine.with_data_held(ino, |inode| {
                if offset >= inode.size {
                    // The exact length (a shorter file drops what the new node held past
                    // it), then durable before the layout names the copy.
                    self.done(
                        new,
                        &Call::DataSetLen {
                            ino,
                            len: inode.size,
                        },
                    )?;
                    self.done(new, &Call::DataSync(ino))?;
                    return Ok(None);
                }
                let len = (inode.size - offset).min(COPY_PIECE) as usize;
                let data = DataStore::read(self, ino, offset, len)?;
                let n = data.len() as u64;
                self.done(new, &Call::DataWrite { ino, offset, data })?;
                Ok(Some(n))
            })?;
            let now = lock(&self.boots).get(&new).copied();
            if boot.is_some() && boot != now {
                return Err(Error::Io(format!(
                    "node {new} restarted while the file was copied to it"
                )));
            }
            boot = now;
            match piece {
                Some(n) => {
                    bytes += n;
                    offset += COPY_PIECE;
                    let mut progress = lock(&self.rebuild);
                    progress.copied += n;
                    progress.bytes_left = progress.bytes_left.saturating_sub(n);
                }
                None => return Ok(bytes),
            }
        }
    }

    /// The copies a read tries, in order: this node's first, then the others starting at
    /// one that turns with `offset`'s MiB.
    fn read_order(&self, ino: u64, offset: u64) -> Result<Vec<u64>> {
        let nodes = self.holders(ino)?;
        let mut order: Vec<u64> = Vec::with_capacity(nodes.len());
        if nodes.contains(&self.node) {
            order.push(self.node);
        }
        // A node that left the cluster (a learner on its way out included) took no change
        // since: never read from it.
        let voters = self.voters();
        let others: Vec<u64> = nodes
            .iter()
            .copied()
            .filter(|&n| n != self.node && voters.contains(&n))
            .collect();
        if !others.is_empty() {
            let start = ((offset >> 20) as usize) % others.len();
            order.extend(others[start..].iter().chain(&others[..start]));
        }
        Ok(order)
    }

    /// `nodes` without those that failed a data call as unreachable lately.
    fn reachable(&self, nodes: BTreeSet<u64>) -> BTreeSet<u64> {
        let mut unreachable = lock(&self.unreachable);
        unreachable.retain(|_, at| at.elapsed() < UNREACHABLE_FOR);
        nodes
            .into_iter()
            .filter(|n| !unreachable.contains_key(n))
            .collect()
    }

    /// Whether `node` failed a connect probe lately (see `probed_out`) and has left the
    /// log's calls unanswered since at least [`SILENT_AFTER`] before `now`: both, so a node
    /// that is merely slow (its kernel takes connections) is never written off.
    fn written_off(&self, node: u64, now: Instant) -> bool {
        self.meta.silent_for(node, now) >= SILENT_AFTER
            && lock(&self.probed_out)
                .get(&node)
                .is_some_and(|&at| now.saturating_duration_since(at) < UNREACHABLE_FOR)
    }

    /// Whether copies wait to be taken out of their layouts.
    pub fn drops_pending(&self) -> bool {
        !lock(&self.drops).is_empty()
    }

    /// Takes the unreachable copy `node` out of `ino`'s layout through `change` (a committed
    /// layout change; the file keeps its other copies, and every acknowledged write is on each
    /// of them). `Ok(false)`: nothing to do (the layout no longer names it, or it is the
    /// file's last copy).
    fn drop_copy(
        &self,
        ino: u64,
        node: u64,
        change: &dyn Fn(u64, &Layout, Layout) -> Result<()>,
    ) -> Result<bool> {
        let Some(layout) = self.meta.inode(ino)?.and_then(|i| i.layout) else {
            return Ok(false);
        };
        if !layout.nodes.contains(&node) || layout.nodes.len() < 2 {
            return Ok(false);
        }
        let nodes: Vec<u64> = layout
            .nodes
            .iter()
            .copied()
            .filter(|&n| n != node)
            .collect();
        let next = Layout {
            copies: nodes.len() as u8,
            nodes,
        };
        let changed = change(ino, &layout, next.clone());
        // A layout read before the change must not be remembered after it (the generation).
        let mut holders = lock(&self.holders);
        self.layouts_changed.fetch_add(1, Ordering::AcqRel);
        match &changed {
            Ok(()) => holders.insert(ino, next.nodes.clone().into()),
            Err(_) => holders.remove(&ino),
        };
        drop(holders);
        changed?;
        tracing::warn!(
            ino,
            node,
            "a copy's node did not answer: the copy left the file's layout (the rebuild makes \
             it again when a voter can take it)"
        );
        Ok(true)
    }

    /// Takes every copy waiting in `drops` out of its layout; how many left, and the pairs
    /// that failed for another reason than a changed layout (kept for the next try).
    fn drop_pending(&self, change: &dyn Fn(u64, &Layout, Layout) -> Result<()>) -> u64 {
        let drops = std::mem::take(&mut *lock(&self.drops));
        let mut dropped = 0;
        for (ino, node) in drops {
            match self.drop_copy(ino, node, change) {
                Ok(true) => {
                    dropped += 1;
                    *lock(&self.last_drop) = Some(Instant::now());
                }
                Ok(false) | Err(Error::Stale) => {}
                Err(e) => {
                    tracing::warn!(ino, node, error = %e, "could not take a copy out of a layout");
                    lock(&self.drops).insert((ino, node));
                }
            }
        }
        dropped
    }

    /// Notes the boot id `boot` that node `node` answered with.
    fn saw(&self, node: u64, boot: [u8; 8]) {
        let boot = u64::from_be_bytes(boot);
        let before = lock(&self.boots).insert(node, boot);
        if before.is_some_and(|b| b != boot) {
            self.losses.fetch_add(1, Ordering::SeqCst);
            tracing::warn!(
                node,
                "a node holding copies restarted: data it had not synced may be lost, so the \
                 write verifier changes and clients resend what they have not committed"
            );
        }
    }

    async fn call(&self, node: u64, call: &Call) -> Result<Answer> {
        let Some(addr) = self.peers.addr_of(node) else {
            tracing::warn!(node, "a copy's node is not a member of the cluster");
            return Err(Error::Unavailable);
        };
        let (boot, answer) = self.peers.call_in_term(&addr, call, self.term()?).await?;
        self.saw(node, boot);
        match answer {
            Answer::Failed(e) => Err(e),
            answer => Ok(answer),
        }
    }

    /// A data call from the blocking pool, where the engine runs data operations.
    fn call_blocking(&self, node: u64, call: &Call) -> Result<Answer> {
        self.runtime.block_on(self.call(node, call))
    }

    /// Runs a change on every copy of `ino`: `here` on this node's store, `call` on the
    /// others' (all at once); fails if any copy on a member node failed.
    fn on_every_copy(
        &self,
        ino: u64,
        here: impl FnOnce(&D) -> Result<()>,
        call: Call,
    ) -> Result<()> {
        let nodes = self.holders(ino)?;
        let filling = lock(&self.filling).get(&ino).copied();
        let voters = self.voters();
        let mut remote = Vec::new();
        let mut local = false;
        for &node in nodes.iter().chain(filling.iter()) {
            if node == self.node {
                local = true;
            } else if voters.contains(&node) {
                remote.push(node);
            } else {
                tracing::debug!(
                    ino,
                    node,
                    "a copy's node left the cluster: the copy is skipped"
                );
            }
        }
        if !local && remote.is_empty() {
            tracing::warn!(
                ino,
                "no node holding a copy of the file is a voter of the cluster"
            );
            return Err(Error::Unavailable);
        }
        let call = Arc::new(call);
        // A node found unreachable a moment ago that the log still finds silent is not
        // waited on again: the change fails for it at once and its copy leaves the layout.
        let now = Instant::now();
        let (written_off, remote): (Vec<u64>, Vec<u64>) =
            remote.into_iter().partition(|&n| self.written_off(n, now));
        let term = if remote.is_empty() { 0 } else { self.term()? };
        let tasks: Vec<_> = remote
            .into_iter()
            .map(|node| {
                let (peers, call) = (Arc::clone(&self.peers), Arc::clone(&call));
                let meta = Arc::clone(&self.meta);
                // The answer, and whether the node failed a connect probe meanwhile.
                let task = self.runtime.spawn(async move {
                    let Some(addr) = peers.addr_of(node) else {
                        return (Err(Error::Unavailable), false);
                    };
                    let silent = || meta.silent_for(node, Instant::now()) >= SILENT_AFTER;
                    tokio::select! {
                        answer = peers.call_in_term(&addr, &call, term) => (answer, false),
                        () = unresponsive(&addr, silent) => (Err(Error::Unavailable), true),
                    }
                });
                (node, task)
            })
            .collect();
        let mut result = if local { here(&self.local) } else { Ok(()) };
        let mut took = result.is_ok();
        let mut unanswered = Vec::new();
        let mut probed_out = Vec::new();
        for &node in &written_off {
            tracing::debug!(
                ino,
                node,
                "a copy's node failed a probe and is silent: not waited on"
            );
            result = result.and(Err(Error::Unavailable));
        }
        for (node, task) in tasks {
            let answer = match self.runtime.block_on(task) {
                Ok((Ok((boot, answer)), _)) => {
                    self.saw(node, boot);
                    answer
                }
                Ok((Err(e), probed)) => {
                    if probed {
                        probed_out.push(node);
                    }
                    Answer::Failed(e)
                }
                Err(e) => Answer::Failed(Error::Io(format!("a data call task failed: {e}"))),
            };
            match answer {
                Answer::Done => took = true,
                Answer::Failed(e) => {
                    tracing::debug!(ino, node, error = %e, "a copy did not take a change");
                    if e == Error::Unavailable {
                        unanswered.push(node);
                    }
                    result = result.and(Err(e));
                }
                other => {
                    result = result.and(Err(Error::Io(format!("a data call answered {other:?}"))));
                }
            }
        }
        // A copy whose node does not answer while others took the change leaves the layout
        // (the rebuild does it at once); the caller fails with `Unavailable` meanwhile, and
        // the client's retry reaches only the copies left.
        // A node not waited on renews no mark: its marks date from the probe it failed.
        let now = Instant::now();
        let mut probed = lock(&self.probed_out);
        for &node in &probed_out {
            probed.insert(node, now);
        }
        drop(probed);
        if took && !(unanswered.is_empty() && written_off.is_empty()) {
            let mut unreachable = lock(&self.unreachable);
            let mut drops = lock(&self.drops);
            for &node in &unanswered {
                unreachable.insert(node, now);
            }
            for node in unanswered.into_iter().chain(written_off) {
                drops.insert((ino, node));
            }
        }
        result
    }

    /// Reads from the first copy that answers (see [`ClusterData::read_order`]).
    /// `len` bytes at `offset` are a data read (not a residency call): a copy that failed
    /// with an I/O error (a bad block) is queued for repair when another copy answered.
    fn read_any<T>(
        &self,
        ino: u64,
        (offset, len): (u64, u64),
        here: impl Fn(&D) -> Result<T>,
        call: Call,
        answer: impl Fn(Answer) -> Result<T>,
    ) -> Result<T> {
        let mut last = Error::Unavailable;
        let mut bad = Vec::new();
        for node in self.read_order(ino, offset)? {
            let r = if node == self.node {
                here(&self.local)
            } else {
                self.call_blocking(node, &call).and_then(&answer)
            };
            match r {
                Ok(v) => {
                    self.queue_repairs(ino, offset, len, bad);
                    return Ok(v);
                }
                Err(e) => {
                    tracing::debug!(ino, node, error = %e, "a copy could not be read; trying the next");
                    if matches!(e, Error::Io(_)) {
                        bad.push(node);
                    }
                    last = e;
                }
            }
        }
        Err(last)
    }

    fn queue_repairs(&self, ino: u64, offset: u64, len: u64, bad: Vec<u64>) {
        if bad.is_empty() || len == 0 {
            return;
        }
        let mut repairs = lock(&self.repairs);
        for node in bad {
            if repairs.len() >= REPAIRS_QUEUED_MAX {
                tracing::warn!(
                    ino,
                    node,
                    "too many repairs queued: this one waits for a scrub"
                );
                return;
            }
            tracing::warn!(
                ino,
                node,
                offset,
                len,
                "a copy failed a read; read from another copy, repair queued"
            );
            repairs.push(Repair {
                ino,
                offset,
                len,
                node,
            });
        }
    }

    /// Writes the bytes of `r` again on its node from another copy, with the file's data held
    /// still, in whole aligned blocks (a partial block would be read, and fail, first).
    fn repair<M: MetaStore>(&self, engine: &Engine<M, Self>, r: &Repair) -> Result<()> {
        engine.with_data_held(r.ino, |inode| {
            let align = |v: u64| v.div_ceil(REPAIR_ALIGN) * REPAIR_ALIGN;
            let start = r.offset / REPAIR_ALIGN * REPAIR_ALIGN;
            let end = align(r.offset.saturating_add(r.len)).min(align(inode.size));
            if start >= end {
                return Ok(());
            }
            let len = (end - start) as usize;
            let call = Call::DataRead {
                ino: r.ino,
                offset: start,
                len: len32(len)?,
            };
            let mut good = None;
            for node in self.read_order(r.ino, start)? {
                if node == r.node {
                    continue;
                }
                let got = if node == self.node {
                    self.local.read(r.ino, start, len)
                } else {
                    self.call_blocking(node, &call).and_then(Self::data)
                };
                if let Ok(data) = got {
                    good = Some(data);
                    break;
                }
            }
            let data = good.ok_or(Error::Unavailable)?;
            if r.node == self.node {
                self.local.write_at(r.ino, start, &data)?;
                self.local.sync(r.ino)
            } else {
                self.done(
                    r.node,
                    &Call::DataWrite {
                        ino: r.ino,
                        offset: start,
                        data,
                    },
                )?;
                self.done(r.node, &Call::DataSync(r.ino))
            }
        })
    }

    /// Whether reads queued repairs.
    pub fn repairs_pending(&self) -> bool {
        !lock(&self.repairs).is_empty()
    }

    fn data(answer: Answer) -> Result<Bytes> {
        match answer {
            Answer::Data(bytes) => Ok(bytes),
            other => Err(Error::Io(format!("a data read answered {other:?}"))),
        }
    }
}

/// Returns once `addr` neither accepts nor refuses a new connection in time, probed every
/// [`PROBE_EVERY`]: a node that is cut off, as opposed to one that is slow (whose kernel still
/// accepts connections). A change to a copy on it then fails at once instead of after the
/// call's timeout, and the copy leaves the layout.
///
/// While `silent()` (the node leaves the log's calls unanswered, [`SILENT_AFTER`]) the probe
/// comes at once and waits only [`QUICK_PROBE`]: a partitioned node is then found in a
/// fraction of a second instead of two, and one whose kernel still takes connections is
/// waited on as before.
async fn unresponsive(addr: &str, silent: impl Fn() -> bool) {
    let mut first = true;
    loop {
        let mut waited = Duration::ZERO;
        while waited < PROBE_EVERY && !(silent() && (first || waited >= QUICK_PROBE)) {
            tokio::time::sleep(SILENCE_CHECK_EVERY).await;
            waited += SILENCE_CHECK_EVERY;
        }
        first = false;
        let patience = if silent() { QUICK_PROBE } else { PROBE_EVERY };
        match tokio::time::timeout(patience, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return,
        }
    }
}

fn len32(len: usize) -> Result<u32> {
    u32::try_from(len).map_err(|_| Error::Invalid)
}

impl<D: DataStore> DataStore for ClusterData<D> {
    // Remote calls wait on the network: the engine runs data operations off the runtime.
    const BLOCKING: bool = true;
    const ASYNC_READ: bool = D::ASYNC_READ;
    const ASYNC_WRITE: bool = D::ASYNC_WRITE;
    const REACHES_EVERY_NODE: bool = true;

    fn place(&self, node: u64, copies: Option<u8>) -> Layout {
        let copies = copies.unwrap_or(self.copies).max(1);
        let voters: Vec<u64> = self
            .reachable(self.voters())
            .into_iter()
            .filter(|&n| n != node)
            .collect();
        let partners = usize::from(copies - 1).min(voters.len());
        let mut nodes = vec![node];
        if partners > 0 {
            // In turn so that copies spread, nodes of other failure domains first.
            let start = (self.turn.fetch_add(1, Ordering::Relaxed) as usize) % voters.len();
            let order = voters
                .iter()
                .cycle()
                .skip(start)
                .take(voters.len())
                .copied();
            let domains = self.domains(voters.iter().copied().chain([node]));
            let picked = spread(order, [node], |n| domain_in(&domains, n));
            nodes.extend(picked.into_iter().take(partners));
        }
        Layout {
            copies: nodes.len() as u8,
            nodes,
        }
    }

    fn losses(&self) -> u64 {
        // Both only grow: a copy's restart, or this node's own store losing a write it had
        // acknowledged UNSTABLE.
        self.losses
            .load(Ordering::SeqCst)
            .wrapping_add(self.local.losses())
    }

    fn read_at(&self, ino: u64, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if self.only_here(ino)? {
            return self.local.read_at(ino, offset, buf);
        }
        let len = len32(buf.len())?;
        let data = self.read_any(
            ino,
            (offset, u64::from(len)),
            |d| d.read(ino, offset, len as usize),
            Call::DataRead { ino, offset, len },
            Self::data,
        )?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        buf[n..].fill(0);
        Ok(buf.len())
    }

    async fn read_async(&self, ino: u64, offset: u64, len: usize) -> Result<Bytes> {
        if self.only_here(ino)? {
            return self.local.read_async(ino, offset, len).await;
        }
        let order = self.read_order(ino, offset)?;
        let len32 = len32(len)?;
        let mut last = Error::Unavailable;
        let mut bad = Vec::new();
        for node in order {
            let r = if node == self.node {
                self.local.read_async(ino, offset, len).await
            } else {
                let call = Call::DataRead {
                    ino,
                    offset,
                    len: len32,
                };
                match self.call(node, &call).await {
                    Ok(answer) => Self::data(answer),
                    Err(e) => Err(e),
                }
            };
            match r {
                Ok(v) => {
                    self.queue_repairs(ino, offset, len as u64, bad);
                    return Ok(v);
                }
                Err(e) => {
                    if matches!(e, Error::Io(_)) {
                        bad.push(node);
                    }
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn write_staged(&self, ino: u64, offset: u64, data: &Bytes) -> Result<Option<Staged>> {
        // Counted before the check: a rebuild that starts filling a new copy of this file
        // after the check waits for the count to drop (see `fill`), so no staged write lands
        // on the old copy only, behind a piece already copied.
        let guard = StagingGuard::new(&self.staging, ino);
        if !self.only_here(ino)? {
            // Written to every copy, on the blocking path.
            return Ok(None);
        }
        let Some(inner) = self.local.write_staged(ino, offset, data).await? else {
            return Ok(None);
        };
        Ok(Some(Staged(Box::new(ClusterStaged {
            inner,
            _guard: guard,
        }))))
    }

    fn install(&self, staged: Staged) -> Result<()> {
        // Only this node's own store stages writes; the guard goes once it is installed.
        let Ok(staged) = staged.0.downcast::<ClusterStaged>() else {
            return Err(Error::Io("a staged write from another store".into()));
        };
        let ClusterStaged { inner, _guard } = *staged;
        self.local.install(inner)
    }

    fn read(&self, ino: u64, offset: u64, len: usize) -> Result<Bytes> {
        if self.only_here(ino)? {
            return self.local.read(ino, offset, len);
        }
        self.read_any(
            ino,
            (offset, len as u64),
            |d| d.read(ino, offset, len),
            Call::DataRead {
                ino,
                offset,
                len: len32(len)?,
            },
            Self::data,
        )
    }

    fn write_at(&self, ino: u64, offset: u64, data: &[u8]) -> Result<()> {
        if self.only_here(ino)? {
            return self.local.write_at(ino, offset, data);
        }
        let call = Call::DataWrite {
            ino,
            offset,
            data: Bytes::copy_from_slice(data),
        };
        self.on_every_copy(ino, |d| d.write_at(ino, offset, data), call)
    }

    fn set_len(&self, ino: u64, len: u64) -> Result<()> {
        if self.only_here(ino)? {
            return self.local.set_len(ino, len);
        }
        self.on_every_copy(ino, |d| d.set_len(ino, len), Call::DataSetLen { ino, len })
    }

    fn sync(&self, ino: u64) -> Result<()> {
        if self.only_here(ino)? {
            return self.local.sync(ino);
        }
        self.on_every_copy(ino, |d| d.sync(ino), Call::DataSync(ino))
    }

    fn remove(&self, ino: u64) -> Result<()> {
        let r = self.on_every_copy(ino, |d| d.remove(ino), Call::DataRemove(ino));
        lock(&self.holders).remove(&ino);
        r
    }

    fn space(&self, files_used: u64) -> Result<FsStat> {
        self.local.space(files_used)
    }

    fn drop_unanswered(&self, change: &dyn Fn(u64, &Layout, Layout) -> Result<()>) -> bool {
        // Whether there was anything to drop, or a copy left a layout a moment ago (another
        // thread may have dropped this call's copy): the call is then tried again.
        let pending = self.drops_pending();
        self.drop_pending(change);
        pending || lock(&self.last_drop).is_some_and(|at| at.elapsed() < Duration::from_secs(1))
    }

    fn stats(&self) -> Vec<(&'static str, u64)> {
        self.local.stats()
    }

    /// Asks every node the file's layout names for its copy (for operators: a node that
    /// does not answer is reported, not retried).
    fn residency(&self, ino: u64, size: u64) -> Result<Residency> {
        let holders = self.holders(ino)?;
        let mut copies = Vec::with_capacity(holders.len());
        for &node in holders.iter() {
            let found = if node == self.node {
                self.local.residency(ino, size).map_err(|e| e.to_string())
            } else {
                match self.call_blocking(node, &Call::DataResidency { ino, size }) {
                    Ok(Answer::Residency(r)) => Ok(r),
                    Ok(Answer::Failed(e)) => Err(e.to_string()),
                    Ok(other) => Err(format!("a residency call answered {other:?}")),
                    Err(e) => Err(e.to_string()),
                }
            };
            copies.push(CopyResidency { node, found });
        }
        let mut first = copies
            .iter()
            .find_map(|c| c.found.as_ref().ok().cloned())
            .unwrap_or_default();
        first.copies = copies;
        Ok(first)
    }
}

/// One pass of the rebuild, run by the writing engine's node: first the repairs reads queued
/// (see `ClusterData::repair`); then, with `scan`, every regular file whose layout names a
/// node that is no longer a voter gets a new copy on a voter its layout does not name yet
/// (see `ClusterData::restore_file`), reading the applied metadata inode by inode.
pub fn restore_copies<M: MetaStore, D: DataStore>(
    engine: &Engine<M, ClusterData<D>>,
    scan: bool,
) -> Result<CopiesPass> {
    let data = engine.data();
    let mut pass = CopiesPass {
        dropped: data.drop_pending(&|ino, from, to| engine.change_layout(ino, from, to)),
        ..CopiesPass::default()
    };
    let repairs = std::mem::take(&mut *lock(&data.repairs));
    for r in &repairs {
        match data.repair(engine, r) {
            Ok(()) => {
                tracing::info!(
                    ino = r.ino,
                    node = r.node,
                    offset = r.offset,
                    len = r.len,
                    "repaired a copy from another"
                );
                pass.repaired += 1;
            }
            Err(Error::Stale) => {}
            Err(e) => {
                tracing::warn!(ino = r.ino, node = r.node, error = %e, "could not repair a copy")
            }
        }
    }
    if !scan {
        return Ok(pass);
    }
    let voters = data.voters();
    let sm = data.meta.state_machine();
    let next = sm.counter(Counter::NextIno)?.unwrap_or(0);
    // What the pass has to do, first: `sluice status` shows it going down, with an ETA.
    let mut todo = RebuildProgress::default();
    for ino in 1..next {
        let Some(inode) = sm.inode(ino)? else {
            continue;
        };
        let Some(layout) = &inode.layout else {
            continue;
        };
        if let Need::Copies { missing, .. } = need(layout, inode.replication, data.copies, &voters)
        {
            todo.files_left += 1;
            todo.bytes_left += inode.size.saturating_mul(missing as u64);
        }
    }
    todo.started = Some(Instant::now());
    *lock(&data.rebuild) = todo;
    let pass = restore_files(engine, data, &voters, next, pass);
    *lock(&data.rebuild) = RebuildProgress::default();
    pass
}

/// What the rebuild has to do for one file.
enum Need {
    /// Every copy it wants is on a voter.
    Whole,
    /// Every copy left with its node: nothing to copy from.
    Lost,
    /// `missing` copies to make, for `wanted` in all (at most the voters).
    Copies { wanted: usize, missing: usize },
}

/// What a file with `layout` needs, its own factor `replication` (its directory's when it
/// was made) or else the cluster's `copies` deciding how many copies it wants.
fn need(layout: &Layout, replication: Option<u8>, copies: u8, voters: &BTreeSet<u64>) -> Need {
    let wanted = usize::from(replication.unwrap_or(copies)).min(voters.len());
    let kept = layout.nodes.iter().filter(|n| voters.contains(n)).count();
    let gone = layout.nodes.len() - kept;
    match (kept, gone + wanted.saturating_sub(layout.nodes.len())) {
        (_, 0) => Need::Whole,
        (0, _) => Need::Lost,
        (_, missing) => Need::Copies { wanted, missing },
    }
}

/// The second half of a [`restore_copies`] pass: each file with a copy to make.
fn restore_files<M: MetaStore, D: DataStore>(
    engine: &Engine<M, ClusterData<D>>,
    data: &ClusterData<D>,
    voters: &BTreeSet<u64>,
    next: u64,
    mut pass: CopiesPass,
) -> Result<CopiesPass> {
    let sm = data.meta.state_machine();
    for ino in 1..next {
        let Some((layout, replication, size)) = sm
            .inode(ino)?
            .and_then(|i| Some((i.layout?, i.replication, i.size)))
        else {
            continue;
        };
        let (wanted, missing) = match need(&layout, replication, data.copies, voters) {
            Need::Whole => continue,
            Need::Lost => {
                // Every copy left with its node: nothing to copy from (counted, not retried).
                pass.degraded += 1;
                continue;
            }
            Need::Copies { wanted, missing } => (wanted, missing),
        };
        let waiting = pass.waiting;
        let copied = lock(&data.rebuild).copied;
        let done = data.restore_file(engine, ino, &layout, wanted, voters, &mut pass);
        {
            let mut progress = lock(&data.rebuild);
            progress.files_left = progress.files_left.saturating_sub(1);
            if !matches!(done, Ok(true)) || pass.waiting > waiting {
                // Left for a later pass: what it did not copy is not left for this one (what
                // it did copy was taken off as it went).
                let not_copied = size
                    .saturating_mul(missing as u64)
                    .saturating_sub(progress.copied.saturating_sub(copied));
                progress.bytes_left = progress.bytes_left.saturating_sub(not_copied);
            }
        }
        match done {
            Ok(true) => {}
            Ok(false) => pass.degraded += 1,
            // Removed or changed meanwhile: the next pass sees what it is now.
            Err(Error::Stale) => {}
            Err(e) => {
                tracing::warn!(ino, error = %e, "could not restore a lost copy; trying again later");
                pass.failed += 1;
            }
        }
    }
    Ok(pass)
}

/// How much of one copy a scrub checks in one call.
const SCRUB_STEP: u64 = 1 << 20;

/// Where a scrub goes on from: the next inode and the offset in it, and the inode its pass
/// ends before (the files that existed when the pass began: files made meanwhile wait for
/// the next pass, so a pass ends even while files are made faster than it checks them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScrubCursor {
    pub ino: u64,
    pub offset: u64,
    /// 0: not started (set from the next inode number at the pass's first step).
    pub end: u64,
}

/// The key of the scrub's progress ([`ScrubState`]) among the metadata log's documents.
pub const SCRUB_DOC: &[u8] = b"cluster/scrub";

/// The scrub's progress as the metadata log keeps it ([`SCRUB_DOC`]), saved every few
/// seconds and at each pass's end: a restarted node or a new leader goes on from where the
/// last one was, and waits out the time to the next pass, instead of starting over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScrubState {
    /// The pass under way (`end == 0`: none).
    pub cursor: ScrubCursor,
    /// Unix seconds: when the pass under way (or else the last one) started; 0: never.
    pub started: u64,
    /// Unix seconds: when the last pass ended; 0: never.
    pub ended: u64,
}

const SCRUB_STATE_VERSION: u8 = 1;

impl ScrubState {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![SCRUB_STATE_VERSION];
        for v in [
            self.cursor.ino,
            self.cursor.offset,
            self.cursor.end,
            self.started,
            self.ended,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// `None` for a document of another version or length (the scrub then starts afresh).
    pub fn decode(bytes: &[u8]) -> Option<ScrubState> {
        let (&version, rest) = bytes.split_first()?;
        if version != SCRUB_STATE_VERSION || rest.len() != 40 {
            return None;
        }
        let v = |i: usize| u64::from_le_bytes(rest[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        Some(ScrubState {
            cursor: ScrubCursor {
                ino: v(0).max(1),
                offset: v(1),
                end: v(2),
            },
            started: v(3),
            ended: v(4),
        })
    }

    /// How long a node that starts scrubbing at `now` (Unix seconds) waits before its first
    /// step, passes starting at most every `every`: none while a pass is under way; `first`
    /// (capped by `every`) when no pass ever started; else until `every` after the last
    /// pass started.
    pub fn wait(&self, now: u64, every: Duration, first: Duration) -> Duration {
        if self.cursor.end != 0 {
            return Duration::ZERO;
        }
        if self.started == 0 {
            return every.min(first);
        }
        let due = self.started.saturating_add(every.as_secs());
        Duration::from_secs(due.saturating_sub(now))
    }
}

impl Default for ScrubCursor {
    fn default() -> Self {
        ScrubCursor {
            ino: 1,
            offset: 0,
            end: 0,
        }
    }
}

/// What one call of [`scrub`] checked and found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScrubStep {
    /// Bytes checked, every copy counted.
    pub bytes: u64,
    /// Bytes of copies not checked: their node did not answer, or its store cannot check.
    pub skipped: u64,
    /// Ranges of a copy that failed the check (queued for repair from a good copy).
    pub bad: u64,
    /// The scrub went past the last inode: a pass over every file ended.
    pub wrapped: bool,
}

/// Checks every copy of every file, about `budget` bytes per call (every copy counted), from
/// `cursor` on, reading each copy's medium past its cache ([`DataStore::verify`] on the copy's
/// node). A range that fails the check (a bad block: `Error::Io`) is queued for repair, which
/// the next rebuild pass writes again from a good copy. Run by the writing engine's node;
/// copies that do not answer are left to the rebuild.
pub fn scrub<M: MetaStore, D: DataStore>(
    engine: &Engine<M, ClusterData<D>>,
    cursor: &mut ScrubCursor,
    budget: u64,
) -> Result<ScrubStep> {
    let data = engine.data();
    let sm = data.meta.state_machine();
    if cursor.end == 0 {
        cursor.end = sm.counter(Counter::NextIno)?.unwrap_or(0).max(1);
    }
    let mut step = ScrubStep::default();
    // Inodes looked at count too, so a long run of removed or empty ones takes several steps.
    let mut looked = 0u64;
    while step.bytes + step.skipped + looked * 4096 < budget {
        looked += 1;
        if cursor.ino >= cursor.end {
            *cursor = ScrubCursor::default();
            step.wrapped = true;
            return Ok(step);
        }
        let size = match sm.inode(cursor.ino)? {
            Some(inode) if inode.layout.is_some() => inode.size,
            _ => 0,
        };
        if cursor.offset >= size {
            cursor.ino += 1;
            cursor.offset = 0;
            continue;
        }
        let (ino, offset) = (cursor.ino, cursor.offset);
        let len = SCRUB_STEP.min(size - offset);
        for node in data.read_order(ino, offset)? {
            let checked = if node == data.node {
                data.local.verify(ino, offset, len as usize)
            } else {
                let call = Call::DataVerify {
                    ino,
                    offset,
                    len: len32(len as usize)?,
                };
                match data.call_blocking(node, &call) {
                    Ok(Answer::Done) => Ok(None),
                    Ok(Answer::Bad(why)) => Ok(Some(why)),
                    Ok(other) => Err(Error::Io(format!("a verify call answered {other:?}"))),
                    Err(e) => Err(e),
                }
            };
            match checked {
                Ok(None) => step.bytes += len,
                // Only what the copy's medium gave back bad is repaired: a node that could
                // not look (an older version, a database error) is no reason to rewrite.
                Ok(Some(why)) => {
                    tracing::warn!(ino, node, offset, len, error = %why, "scrub: a copy failed its check");
                    step.bytes += len;
                    step.bad += 1;
                    data.queue_repairs(ino, offset, len, vec![node]);
                }
                // Removed or cut meanwhile, the node away, or its store cannot check: the
                // rebuild's business, or nothing to do.
                Err(e) => {
                    step.skipped += len;
                    tracing::debug!(ino, node, error = %e, "scrub: a copy was not checked");
                }
            }
        }
        cursor.offset += len;
    }
    Ok(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An address whose kernel neither accepts nor refuses a connection (the listener's
    /// queue is full and never drained, so new SYNs are dropped), as a cut-off node's.
    async fn hanging_addr() -> (
        tokio::net::TcpListener,
        Vec<tokio::task::JoinHandle<()>>,
        String,
    ) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut fillers = Vec::new();
        for _ in 0..2 {
            let a = addr.clone();
            fillers.push(tokio::spawn(async move {
                let _held = tokio::net::TcpStream::connect(a).await;
                std::future::pending::<()>().await;
            }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        (listener, fillers, addr)
    }

    #[tokio::test]
    async fn a_copy_s_node_silent_to_the_log_is_given_up_on_after_a_quick_probe_not_two_seconds() {
        let (_listener, fillers, addr) = hanging_addr().await;
        let started = Instant::now();
        unresponsive(&addr, || true).await;
        let silent = started.elapsed();
        let started = Instant::now();
        unresponsive(&addr, || false).await;
        let not_silent = started.elapsed();
        fillers.iter().for_each(|f| f.abort());
        // Silent: one probe of QUICK_PROBE at once; else a pause of PROBE_EVERY and a probe
        // of as long.
        assert!(silent >= QUICK_PROBE && silent < PROBE_EVERY, "{silent:?}");
        assert!(not_silent >= 2 * PROBE_EVERY, "{not_silent:?}");
    }

    #[tokio::test]
    async fn a_copy_s_node_that_takes_connections_is_waited_on_even_while_silent_to_the_log() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let waited =
            tokio::time::timeout(Duration::from_millis(1500), unresponsive(&addr, || true));
        assert!(
            waited.await.is_err(),
            "a node whose kernel takes connections was given up on"
        );
    }

    #[test]
    fn the_scrub_state_round_trips_and_a_document_of_another_shape_is_ignored() {
        let st = ScrubState {
            cursor: ScrubCursor {
                ino: 77,
                offset: 3 << 20,
                end: 900,
            },
            started: 1_700_000_000,
            ended: 1_699_000_000,
        };
        assert_eq!(ScrubState::decode(&st.encode()), Some(st));
        let mut other = st.encode();
        other[0] = 2;
        assert_eq!(ScrubState::decode(&other), None);
        assert_eq!(ScrubState::decode(&st.encode()[..20]), None);
        assert_eq!(ScrubState::decode(&[]), None);
    }

    #[test]
    fn copies_go_to_failure_domains_not_used_yet_in_the_order_given() {
        let domains: HashMap<u64, &str> =
            HashMap::from([(1, "rack-a"), (2, "rack-a"), (3, "rack-b"), (4, "rack-b")]);
        let of = |n: u64| domains.get(&n).copied();
        assert_eq!(spread([2, 3, 4], [1], of), [3, 2, 4]);
        assert_eq!(spread([4, 2, 3], [1], of), [4, 2, 3]);
        // Node 5 has no domain: a domain of its own, never passed over.
        assert_eq!(spread([2, 5, 3], [1], of), [5, 3, 2]);
        // Without domains the order stays.
        assert_eq!(spread([3, 2, 4], [1], |_| None), [3, 2, 4]);
    }

    #[test]
    fn the_rebuild_s_eta_is_what_is_left_at_the_rate_so_far() {
        let start = Instant::now();
        let p = RebuildProgress {
            files_left: 3,
            bytes_left: 1000,
            copied: 400,
            started: Some(start),
        };
        // Not a second in: no rate, no estimate.
        assert_eq!(p.rate(start + Duration::from_millis(500)), 0);
        assert_eq!(p.eta_seconds(start + Duration::from_millis(500)), None);
        let later = start + Duration::from_secs(4);
        assert_eq!(p.rate(later), 100);
        assert_eq!(p.eta_seconds(later), Some(10));
        assert_eq!(RebuildProgress::default().eta_seconds(later), None);
    }

    #[test]
    fn a_new_leader_goes_on_with_a_pass_under_way_and_otherwise_waits_out_the_interval() {
        let every = Duration::from_secs(100);
        let first = Duration::from_secs(3600);
        let never = ScrubState::default();
        assert_eq!(never.wait(5_000, every, first), every);
        assert_eq!(never.wait(5_000, Duration::from_secs(7200), first), first);
        let under_way = ScrubState {
            cursor: ScrubCursor {
                ino: 9,
                offset: 0,
                end: 50,
            },
            started: 4_000,
            ended: 3_990,
        };
        assert_eq!(under_way.wait(5_000, every, first), Duration::ZERO);
        let done = ScrubState {
            cursor: ScrubCursor::default(),
            started: 4_950,
            ended: 4_990,
        };
        assert_eq!(done.wait(5_000, every, first), Duration::from_secs(50));
        assert_eq!(done.wait(6_000, every, first), Duration::ZERO);
    }
}
