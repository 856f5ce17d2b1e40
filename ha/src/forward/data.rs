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
//!   is back or removed from the cluster. A node removed from the cluster (`sluice cluster
//!   remove`) never returns, so its copies are skipped (the file has one copy fewer until a
//!   rebuild, which is not built yet). So every copy on a member node has every acknowledged
//!   write.
//! * **A COMMIT** syncs every copy. Each data answer carries its node's boot id: when a copy's
//!   node restarted since this engine last reached it, UNSTABLE data it held may be gone, so
//!   [`DataStore::losses`] rises, which changes the engine's write verifier and makes clients
//!   send their uncommitted writes again (RFC 1813, COMMIT).
//! * **Reads** come from this node's own copy when it has one, else from the copies in turn
//!   (starting at a different one per MiB, to spread the load); a copy that fails (its node
//!   down, a bad block) is passed over for the next.
//!
//! Data calls carry no fencing epoch yet: the mount-target issue makes the holder refuse a
//! writer older than the one it has seen.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use backend::engine::{DataStore, Layout, MetaStore, Staged};
use backend::{Error, FsStat, Residency, Result};
use bytes::Bytes;

use super::wire::{Answer, Call};
use super::{lock, Peers};
use crate::metalog::RaftMeta;

/// Files whose copies are remembered (layouts do not change once made): cleared when full.
const HOLDERS_CACHED_MAX: usize = 1 << 16;

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
        }
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
        if holders.len() >= HOLDERS_CACHED_MAX {
            holders.clear();
        }
        holders.insert(ino, Arc::clone(&nodes));
        Ok(nodes)
    }

    /// Whether this node holds every copy of `ino` (the common single-node case).
    fn only_here(&self, ino: u64) -> Result<bool> {
        Ok(*self.holders(ino)? == [self.node])
    }

    /// The copies a read tries, in order: this node's first, then the others starting at
    /// one that turns with `offset`'s MiB.
    fn read_order(&self, ino: u64, offset: u64) -> Result<Vec<u64>> {
        let nodes = self.holders(ino)?;
        let mut order: Vec<u64> = Vec::with_capacity(nodes.len());
        if nodes.contains(&self.node) {
            order.push(self.node);
        }
        let others: Vec<u64> = nodes.iter().copied().filter(|&n| n != self.node).collect();
        if !others.is_empty() {
            let start = ((offset >> 20) as usize) % others.len();
            order.extend(others[start..].iter().chain(&others[..start]));
        }
        Ok(order)
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
        let (boot, answer) = self.peers.call(&addr, call).await?;
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
        let mut remote = Vec::new();
        let mut local = false;
        for &node in nodes.iter() {
            if node == self.node {
                local = true;
            } else if self.peers.addr_of(node).is_some() {
                remote.push(node);
            } else {
                tracing::warn!(
                    ino,
                    node,
                    "a copy's node left the cluster: the copy is skipped"
                );
            }
        }
        if !local && remote.is_empty() {
            tracing::warn!(
                ino,
                "no node holding a copy of the file is a member of the cluster"
            );
            return Err(Error::Unavailable);
        }
        let call = Arc::new(call);
        let tasks: Vec<_> = remote
            .into_iter()
            .map(|node| {
                let (peers, call) = (Arc::clone(&self.peers), Arc::clone(&call));
                let task = self.runtime.spawn(async move {
                    let addr = peers.addr_of(node).ok_or(Error::Unavailable)?;
                    peers.call(&addr, &call).await
                });
                (node, task)
            })
            .collect();
        let mut result = if local { here(&self.local) } else { Ok(()) };
        for (node, task) in tasks {
            let answer = match self.runtime.block_on(task) {
                Ok(Ok((boot, answer))) => {
                    self.saw(node, boot);
                    answer
                }
                Ok(Err(e)) => Answer::Failed(e),
                Err(e) => Answer::Failed(Error::Io(format!("a data call task failed: {e}"))),
            };
            match answer {
                Answer::Done => {}
                Answer::Failed(e) => {
                    tracing::debug!(ino, node, error = %e, "a copy did not take a change");
                    result = result.and(Err(e));
                }
                other => {
                    result = result.and(Err(Error::Io(format!("a data call answered {other:?}"))));
                }
            }
        }
        result
    }

    /// Reads from the first copy that answers (see [`ClusterData::read_order`]).
    fn read_any<T>(
        &self,
        ino: u64,
        offset: u64,
        here: impl Fn(&D) -> Result<T>,
        call: Call,
        answer: impl Fn(Answer) -> Result<T>,
    ) -> Result<T> {
        let mut last = Error::Unavailable;
        for node in self.read_order(ino, offset)? {
            let r = if node == self.node {
                here(&self.local)
            } else {
                self.call_blocking(node, &call).and_then(&answer)
            };
            match r {
                Ok(v) => return Ok(v),
                Err(e) => {
                    tracing::debug!(ino, node, error = %e, "a copy could not be read; trying the next");
                    last = e;
                }
            }
        }
        Err(last)
    }

    fn data(answer: Answer) -> Result<Bytes> {
        match answer {
            Answer::Data(bytes) => Ok(bytes),
            other => Err(Error::Io(format!("a data read answered {other:?}"))),
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

    fn place(&self, node: u64) -> Layout {
        let voters: Vec<u64> = {
            let metrics = self.meta.raft().metrics();
            let m = metrics.borrow();
            m.membership_config
                .membership()
                .voter_ids()
                .filter(|&n| n != node)
                .collect()
        };
        let partners = usize::from(self.copies - 1).min(voters.len());
        let mut nodes = vec![node];
        if partners > 0 {
            let start = (self.turn.fetch_add(1, Ordering::Relaxed) as usize) % voters.len();
            nodes.extend(voters.iter().cycle().skip(start).take(partners));
        }
        Layout {
            copies: nodes.len() as u8,
            nodes,
        }
    }

    fn losses(&self) -> u64 {
        self.losses.load(Ordering::SeqCst)
    }

    fn read_at(&self, ino: u64, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if self.only_here(ino)? {
            return self.local.read_at(ino, offset, buf);
        }
        let len = len32(buf.len())?;
        let data = self.read_any(
            ino,
            offset,
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
        let order = self.read_order(ino, offset)?;
        let len32 = len32(len)?;
        let mut last = Error::Unavailable;
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
                Ok(v) => return Ok(v),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn write_staged(&self, ino: u64, offset: u64, data: &Bytes) -> Result<Option<Staged>> {
        if self.only_here(ino)? {
            self.local.write_staged(ino, offset, data).await
        } else {
            // Written to every copy, on the blocking path.
            Ok(None)
        }
    }

    fn install(&self, staged: Staged) -> Result<()> {
        // Only this node's own store stages writes.
        self.local.install(staged)
    }

    fn read(&self, ino: u64, offset: u64, len: usize) -> Result<Bytes> {
        if self.only_here(ino)? {
            return self.local.read(ino, offset, len);
        }
        self.read_any(
            ino,
            offset,
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
        self.on_every_copy(ino, |d| d.set_len(ino, len), Call::DataSetLen { ino, len })
    }

    fn sync(&self, ino: u64) -> Result<()> {
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

    fn residency(&self, ino: u64, size: u64) -> Result<Residency> {
        self.read_any(
            ino,
            0,
            |d| d.residency(ino, size),
            Call::DataResidency { ino, size },
            |answer| match answer {
                Answer::Residency(r) => Ok(r),
                other => Err(Error::Io(format!("a residency call answered {other:?}"))),
            },
        )
    }
}
