//! The writing engine's data store in a cluster: a file's bytes stay on the node its layout
//! names (the leader of the term it was created in), and whichever node writes the metadata
//! later reaches them there.
//!
//! [`ClusterData`] wraps this node's own data store. For a file placed here it is that store;
//! for a file placed on another node each data operation becomes a data call to that node
//! ([`super::wire::Call::DataRead`] and friends), answered by its data store
//! ([`super::HeldData`]). A file is placed whole on its layout's first node for now; the
//! replication issue spreads chunks over several nodes and reads from any copy.
//!
//! Data calls carry no fencing epoch yet: the mount-target issue makes the holder refuse a
//! writer older than the one it has seen.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use backend::engine::{DataStore, MetaStore, Staged};
use backend::{Error, FsStat, Residency, Result};
use bytes::Bytes;

use super::wire::{Answer, Call};
use super::{lock, Peers};
use crate::metalog::RaftMeta;

/// Files whose holder is remembered (layouts do not change once made): cleared when full.
const HOLDERS_CACHED_MAX: usize = 1 << 16;

/// See the module docs.
pub struct ClusterData<D> {
    local: Arc<D>,
    node: u64,
    meta: Arc<RaftMeta>,
    peers: Arc<Peers>,
    holders: Mutex<HashMap<u64, u64>>,
    runtime: tokio::runtime::Handle,
}

impl<D: DataStore> ClusterData<D> {
    /// This node's store `local`, as seen by the engine of node `node`. Must be made on the
    /// runtime the inter-node calls run on.
    pub fn new(local: Arc<D>, node: u64, meta: Arc<RaftMeta>, peers: Arc<Peers>) -> Self {
        ClusterData {
            local,
            node,
            meta,
            peers,
            holders: Mutex::new(HashMap::new()),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// The node holding `ino`'s data: its layout's first node, unless the layout names this
    /// node. A file without a layout (written before layouts) or without a record (removed)
    /// is this node's.
    fn holder(&self, ino: u64) -> Result<u64> {
        if let Some(&node) = lock(&self.holders).get(&ino) {
            return Ok(node);
        }
        // The writer's view first (a file made in this term may not be applied yet), then the
        // applied state (a file whose removal is pending still names its holder there).
        let inode = match self.meta.inode(ino)? {
            Some(inode) => Some(inode),
            None => self.meta.state_machine().inode(ino)?,
        };
        let node = match inode.and_then(|i| i.layout) {
            Some(layout) if !layout.holds(self.node) => {
                layout.nodes.first().copied().unwrap_or(self.node)
            }
            _ => self.node,
        };
        let mut holders = lock(&self.holders);
        if holders.len() >= HOLDERS_CACHED_MAX {
            holders.clear();
        }
        holders.insert(ino, node);
        Ok(node)
    }

    /// `None` when the data is here, else the holder's address.
    fn remote(&self, ino: u64) -> Result<Option<String>> {
        let node = self.holder(ino)?;
        if node == self.node {
            return Ok(None);
        }
        match self.peers.addr_of(node) {
            Some(addr) => Ok(Some(addr)),
            None => {
                tracing::warn!(ino, node, "the data's node is not a member of the cluster");
                Err(Error::Unavailable)
            }
        }
    }

    async fn call(&self, addr: &str, call: Call) -> Result<Answer> {
        match self.peers.call(addr, &call).await?.1 {
            Answer::Failed(e) => Err(e),
            answer => Ok(answer),
        }
    }

    /// A data call from the blocking pool, where the engine runs data operations.
    fn call_blocking(&self, addr: &str, call: Call) -> Result<Answer> {
        self.runtime.block_on(self.call(addr, call))
    }

    fn done(&self, addr: &str, call: Call) -> Result<()> {
        match self.call_blocking(addr, call)? {
            Answer::Done => Ok(()),
            other => Err(Error::Io(format!("a data call answered {other:?}"))),
        }
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

    fn read_at(&self, ino: u64, offset: u64, buf: &mut [u8]) -> Result<usize> {
        match self.remote(ino)? {
            None => self.local.read_at(ino, offset, buf),
            Some(addr) => {
                let call = Call::DataRead {
                    ino,
                    offset,
                    len: len32(buf.len())?,
                };
                let data = Self::data(self.call_blocking(&addr, call)?)?;
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                buf[n..].fill(0);
                Ok(buf.len())
            }
        }
    }

    async fn read_async(&self, ino: u64, offset: u64, len: usize) -> Result<Bytes> {
        match self.remote(ino)? {
            None => self.local.read_async(ino, offset, len).await,
            Some(addr) => {
                let len = len32(len)?;
                Self::data(
                    self.call(&addr, Call::DataRead { ino, offset, len })
                        .await?,
                )
            }
        }
    }

    async fn write_staged(&self, ino: u64, offset: u64, data: &Bytes) -> Result<Option<Staged>> {
        match self.remote(ino)? {
            None => self.local.write_staged(ino, offset, data).await,
            // Written where it lives, on the blocking path.
            Some(_) => Ok(None),
        }
    }

    fn install(&self, staged: Staged) -> Result<()> {
        // Only this node's own store stages writes.
        self.local.install(staged)
    }

    fn read(&self, ino: u64, offset: u64, len: usize) -> Result<Bytes> {
        match self.remote(ino)? {
            None => self.local.read(ino, offset, len),
            Some(addr) => {
                let call = Call::DataRead {
                    ino,
                    offset,
                    len: len32(len)?,
                };
                Self::data(self.call_blocking(&addr, call)?)
            }
        }
    }

    fn write_at(&self, ino: u64, offset: u64, data: &[u8]) -> Result<()> {
        match self.remote(ino)? {
            None => self.local.write_at(ino, offset, data),
            Some(addr) => {
                let data = Bytes::copy_from_slice(data);
                self.done(&addr, Call::DataWrite { ino, offset, data })
            }
        }
    }

    fn set_len(&self, ino: u64, len: u64) -> Result<()> {
        match self.remote(ino)? {
            None => self.local.set_len(ino, len),
            Some(addr) => self.done(&addr, Call::DataSetLen { ino, len }),
        }
    }

    fn sync(&self, ino: u64) -> Result<()> {
        match self.remote(ino)? {
            None => self.local.sync(ino),
            Some(addr) => self.done(&addr, Call::DataSync(ino)),
        }
    }

    fn remove(&self, ino: u64) -> Result<()> {
        let remote = self.remote(ino)?;
        lock(&self.holders).remove(&ino);
        match remote {
            None => self.local.remove(ino),
            Some(addr) => self.done(&addr, Call::DataRemove(ino)),
        }
    }

    fn space(&self, files_used: u64) -> Result<FsStat> {
        self.local.space(files_used)
    }

    fn residency(&self, ino: u64, size: u64) -> Result<Residency> {
        match self.remote(ino)? {
            None => self.local.residency(ino, size),
            Some(addr) => match self.call_blocking(&addr, Call::DataResidency { ino, size })? {
                Answer::Residency(r) => Ok(r),
                other => Err(Error::Io(format!("a residency call answered {other:?}"))),
            },
        }
    }
}
