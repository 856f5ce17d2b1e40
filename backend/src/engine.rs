//! The file system semantics, written once for every store.
//!
//! [`Engine`] implements [`Store`] on top of two small traits:
//! * [`MetaStore`] keeps inode records, directory entries and counters. A batch of
//!   [`MetaOp`]s is applied atomically (a quick, ordered, synchronous step that may refuse it),
//!   and durable once the asynchronous [`MetaStore::commit`] that follows resolves; every store
//!   call that applied one awaits its commit before it returns (a group commit), outside the
//!   engine's locks and off the blocking pool, so a replicated store can wait for its quorum
//!   without holding a thread.
//! * [`DataStore`] keeps the bytes of regular files, one sparse backing area per inode
//!   (a file per inode in `local`, chunk maps over raw blocks in `nvme`).
//!
//! The engine owns everything POSIX: permission checks, link counts, times, rename rules,
//! readdir cookies. The stores only persist what they are told.
//!
//! Concurrency: namespace and attribute work runs under one metadata mutex, which also guards an
//! in-memory cache of inode records. Data I/O runs outside that mutex, under a striped per-inode
//! read/write lock: reads and writes share it, truncation and COMMIT take it exclusively so that
//! they never interleave with a write between its data I/O and its size update. The order is
//! always stripe lock, then metadata mutex.
//!
//! Durability: the record's size is the truth and the data area may be shorter (reads below the
//! size but past the data return zeros). UNSTABLE writes update the cached record only and mark it
//! dirty; the record is persisted by COMMIT, by a DataSync/FileSync write, or by any metadata
//! batch that touches the inode. Truncation makes the data change durable before the metadata
//! batch. Data left past the recorded size by a crash is trimmed before the first write or size
//! change of that inode in this run, so it can never reappear inside a file.

mod perm;
mod record;
mod rename;
pub mod wire;

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
pub use record::{Inode, Layout, LAYOUT_NODES_MAX, REPLICATION_MAX};

use self::perm::{may, may_io, require, require_sticky, MAY_EXEC, MAY_READ, MAY_WRITE};
use crate::{
    AccessMask, Attr, CreateMode, Cred, DirEntry, DirPage, Error, FileId, FileType, FsStat,
    NodeKind, PreAttr, ReadResult, Result, SetAttr, Stability, Store, Timestamp, Wcc, WriteResult,
    FILE_SIZE_MAX, NAME_LEN_MAX, PATH_LEN_MAX,
};

/// The root directory's inode number.
pub const ROOT_INO: u64 = 1;
/// The metadata format this build writes. Version 2 added file layouts to inode records.
pub const FORMAT_VERSION: u64 = 2;
/// Older formats this build opens and upgrades in place (version 1: records without layouts,
/// which still decode; the counter moves to 2 so that older builds refuse the store).
const FORMAT_VERSIONS_UPGRADED: [u64; 1] = [1];
/// Directory cookies start above 2 because NFSv4 reserves cookies 1 and 2.
const FIRST_SEQ: u64 = 3;
/// Most bytes one READ returns; a larger request gets a short read.
const READ_BYTES_MAX: u64 = 4 << 20;
/// Most hard links to one inode.
const LINK_MAX: u32 = 65_000;
/// The most directories a walk up the tree visits (to find a replication factor): far more
/// than any real path has; it only stops a walk round a cycle in corrupt metadata.
const DEPTH_MAX: usize = 4096;
const STRIPES: usize = 64;
/// The node id of a store nobody assigned one (a single node's default `[cluster] node_id`).
pub const DEFAULT_NODE: u64 = 1;

/// What one store call did that its wrapper ([`Engine::run`]) must finish: whether it applied a
/// metadata batch, in which case the call syncs the metadata store before it returns. Passed
/// explicitly to every method that can commit, so nothing is kept per thread.
#[derive(Default)]
pub(crate) struct CallCx {
    applied: std::cell::Cell<bool>,
    /// The request this call runs for ([`on_behalf_of`]).
    request: Option<RequestId>,
}

/// Named counters kept by a [`MetaStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Counter {
    FormatVersion,
    NextIno,
    /// The highest writer epoch any batch carried (see [`Batch::epoch`]).
    WriterEpoch,
}

/// A condition on the current metadata that a [`Batch`] needs, checked atomically with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// `dir` has no entry `name`.
    EntryAbsent { dir: u64, name: Vec<u8> },
    /// `dir`'s entry `name` names `child`.
    EntryIs { dir: u64, name: Vec<u8>, child: u64 },
    /// The inode exists (`true`) or does not (`false`).
    InodeExists(u64, bool),
    /// The counter has this value (`None`: unset).
    CounterIs(Counter, Option<u64>),
}

/// One atomic change of the metadata, from one writer.
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    /// The writer's epoch. A store refuses a batch whose epoch is below the highest it has
    /// accepted ([`Error::Fenced`]), and remembers a higher one durably with the batch: once a
    /// new writer has written, an old one (a paused process, a node that lost its lease)
    /// cannot. `ha/PROTOCOL.md`, "Fencing".
    pub epoch: u64,
    /// Checked against the state before `ops`; if one fails, nothing is applied
    /// ([`Error::GuardMismatch`]).
    pub preconditions: &'a [Precondition],
    pub ops: &'a [MetaOp],
}

/// Checks a batch's epoch and preconditions through the store's own reads (made inside the
/// transaction that will apply it). Returns the epoch to store if the batch raises it.
pub fn check_batch(
    batch: &Batch<'_>,
    mut counter: impl FnMut(Counter) -> Result<Option<u64>>,
    mut entry: impl FnMut(u64, &[u8]) -> Result<Option<u64>>,
    mut inode_exists: impl FnMut(u64) -> Result<bool>,
) -> Result<Option<u64>> {
    let current = counter(Counter::WriterEpoch)?.unwrap_or(0);
    if batch.epoch < current {
        return Err(Error::Fenced);
    }
    // Bounded where they enter (`Engine`), checked again where every store applies them:
    // the batch encoding could not carry a longer key.
    for op in batch.ops {
        if let MetaOp::PutDoc { key, doc, .. } = op {
            check_doc(key, doc)?;
        }
    }
    for p in batch.preconditions {
        let holds = match p {
            Precondition::EntryAbsent { dir, name } => entry(*dir, name)?.is_none(),
            Precondition::EntryIs { dir, name, child } => entry(*dir, name)? == Some(*child),
            Precondition::InodeExists(ino, exists) => inode_exists(*ino)? == *exists,
            Precondition::CounterIs(c, value) => counter(*c)? == *value,
        };
        if !holds {
            return Err(Error::GuardMismatch);
        }
    }
    Ok((batch.epoch > current).then_some(batch.epoch))
}

/// One change in a metadata batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaOp {
    PutInode(u64, Inode),
    DeleteInode(u64),
    /// Adds `name` to `dir` with readdir sequence number `seq`.
    PutEntry {
        dir: u64,
        name: Vec<u8>,
        child: u64,
        seq: u64,
    },
    DeleteEntry {
        dir: u64,
        name: Vec<u8>,
        seq: u64,
    },
    SetCounter(Counter, u64),
    /// Records that the call `RequestId` names has run (this batch is its effect), and forgets
    /// records more than [`REQUEST_KEEP_SECS`] older than it: a call retried on another
    /// metadata writer is answered from the state it left instead of running twice.
    NoteRequest(RequestId),
    /// Makes `doc` the document under `key`, unless the store holds one of `version` or
    /// above: a document is a snapshot that contains every change of its lower versions, so
    /// saves that arrive out of order keep the newest. State that is not the file system's
    /// (the protocol state of `nfs-server`'s `StateStore`) rides the metadata log this way.
    PutDoc {
        key: Vec<u8>,
        version: u64,
        doc: Vec<u8>,
    },
}

/// The longest document key ([`MetaOp::PutDoc`]).
pub const DOC_KEY_MAX: usize = 255;
/// The largest document ([`MetaOp::PutDoc`]): a log entry, held in memory whole, and an
/// append carries up to 16 entries (`ha::metalog::GROUP_BYTES_MAX`).
pub const DOC_LEN_MAX: usize = 1 << 20;

/// Rejects a document key or body beyond the bounds, or an empty key.
pub fn check_doc(key: &[u8], doc: &[u8]) -> Result<()> {
    if key.is_empty() || key.len() > DOC_KEY_MAX || doc.len() > DOC_LEN_MAX {
        return Err(Error::Invalid);
    }
    Ok(())
}

/// Names one mutating call across its retries, whichever node runs it: the node that took
/// the call from its client (`node`), a number that node never gives twice (`seq`), and
/// that node's clock when it first sent the call (`secs`, Unix seconds), by which records
/// expire. `ha/PROTOCOL.md`, "At most once".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId {
    pub secs: u64,
    pub node: u64,
    pub seq: u64,
}

impl RequestId {
    /// The bit of `node` that marks an id taken from the client's own call (its address,
    /// port, xid, procedure and arguments) rather than from the node that took it: every
    /// node derives the same id for a client's retransmission, so the id's `secs` (each
    /// node's clock when the call reached it) is not part of it. `ha/PROTOCOL.md` §7.6.
    pub const FROM_CLIENT: u64 = 1 << 63;

    /// Whether this id was taken from the client's call (see [`RequestId::FROM_CLIENT`]).
    pub fn from_client(&self) -> bool {
        self.node & Self::FROM_CLIENT != 0
    }
}

/// How long a call's record is kept after it ran (by the clock of the node that sent it):
/// retries come within seconds (`ha::forward::ROUTE_WAIT`); the rest is room for clock skew.
pub const REQUEST_KEEP_SECS: u64 = 60;

tokio::task_local! {
    /// The request the engine calls of this task run for (see [`on_behalf_of`]).
    static REQUEST: RequestId;
}

/// Runs `f` (calls on an [`Engine`]) as request `id`: every batch it commits carries a
/// [`MetaOp::NoteRequest`] for `id`, so whoever writes next can tell that it ran.
pub async fn on_behalf_of<F: std::future::Future>(id: RequestId, f: F) -> F::Output {
    REQUEST.scope(id, f).await
}

/// A directory entry as the metadata store lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEntry {
    pub seq: u64,
    pub name: Vec<u8>,
    pub child: u64,
}

/// Persistence of inode records, directory entries and counters.
pub trait MetaStore: Send + Sync + 'static {
    /// True when calls block on the disk, so the engine must run them on the blocking pool.
    const BLOCKING: bool;
    fn inode(&self, ino: u64) -> Result<Option<Inode>>;
    /// The child and sequence number of `name` in `dir`.
    fn entry(&self, dir: u64, name: &[u8]) -> Result<Option<(u64, u64)>>;
    /// Up to `limit` entries of `dir` with a sequence number above `after_seq`, in order.
    /// Costs O(returned entries), whatever the directory size.
    fn entries(&self, dir: u64, after_seq: u64, limit: usize) -> Result<Vec<StoredEntry>>;
    fn counter(&self, counter: Counter) -> Result<Option<u64>>;
    fn inode_count(&self) -> Result<u64>;
    /// The document under `key` and its version ([`MetaOp::PutDoc`]). A store that keeps no
    /// documents says so.
    fn doc(&self, key: &[u8]) -> Result<Option<(u64, Vec<u8>)>> {
        let _ = key;
        Err(Error::Io("this metadata store keeps no documents".into()))
    }
    /// Applies every op of the batch or none: refused with [`Error::Fenced`] below the highest
    /// writer epoch accepted so far, with [`Error::GuardMismatch`] if a precondition fails
    /// (use [`check_batch`]). Visible to later reads at once, in the order batches were
    /// applied (a replicated store keeps its not yet committed batches visible to this node's
    /// reads), and committed by the next [`MetaStore::commit`]. A replicated store may also
    /// refuse with [`Error::Unavailable`].
    ///
    /// Applying is synchronous and quick (it orders the batch and checks it); waiting for the
    /// batch to be durable is the asynchronous half, [`MetaStore::commit`], so that many
    /// batches can be in flight and no thread waits for a disk or a quorum while holding the
    /// engine's locks.
    fn apply(&self, batch: &Batch<'_>) -> Result<()>;
    /// Commits every batch applied so far: the returned future resolves once they are on
    /// stable storage (a local store) or committed by a quorum of the metadata log (a
    /// replicated store), with the reason if they may not be. Concurrent callers may share one
    /// flush or log append (group commit), which is why `apply` does not commit by itself.
    ///
    /// `announced`: the caller announced itself ([`MetaStore::announce`]) and this ends its
    /// announcement. A [`MetaStore::BLOCKING`] store may do its flush inside this call (the
    /// engine calls it on the blocking pool) and return a ready future; a replicated store
    /// returns at once and resolves the future when the log has committed.
    fn commit(
        &self,
        announced: bool,
    ) -> impl std::future::Future<Output = Result<()>> + Send + 'static + use<Self>;
    /// Figures for metrics, read at scrape time (see `Store::stats`). None by default.
    fn stats(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    /// Announces a caller that may apply a batch and then commit: a flush about to start waits
    /// briefly for it, so that concurrent callers share one. Each announcement ends with
    /// exactly one `commit(true)` or [`MetaStore::withdraw`].
    fn announce(&self) {}
    /// Ends an announcement without a commit.
    fn withdraw(&self) {}
}

/// A shared store is a store: the cluster layer keeps a handle on the metadata log beside the
/// engine that writes through it.
impl<M: MetaStore> MetaStore for Arc<M> {
    const BLOCKING: bool = M::BLOCKING;
    fn inode(&self, ino: u64) -> Result<Option<Inode>> {
        (**self).inode(ino)
    }
    fn entry(&self, dir: u64, name: &[u8]) -> Result<Option<(u64, u64)>> {
        (**self).entry(dir, name)
    }
    fn entries(&self, dir: u64, after_seq: u64, limit: usize) -> Result<Vec<StoredEntry>> {
        (**self).entries(dir, after_seq, limit)
    }
    fn counter(&self, counter: Counter) -> Result<Option<u64>> {
        (**self).counter(counter)
    }
    fn inode_count(&self) -> Result<u64> {
        (**self).inode_count()
    }
    fn doc(&self, key: &[u8]) -> Result<Option<(u64, Vec<u8>)>> {
        (**self).doc(key)
    }
    fn apply(&self, batch: &Batch<'_>) -> Result<()> {
        (**self).apply(batch)
    }
    fn commit(
        &self,
        announced: bool,
    ) -> impl std::future::Future<Output = Result<()>> + Send + 'static + use<M> {
        (**self).commit(announced)
    }
    fn stats(&self) -> Vec<(&'static str, u64)> {
        (**self).stats()
    }
    fn announce(&self) {
        (**self).announce()
    }
    fn withdraw(&self) {
        (**self).withdraw()
    }
}

/// Waits for a future on the calling thread: for [`MetaStore::commit`] where the engine is
/// already off the async runtime (opening a store, the flush at drop).
pub(crate) fn wait<F: std::future::Future>(future: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(out) => return out,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// An announcement to the metadata store's group commit that is withdrawn when dropped (also
/// on a panic), unless the caller went on to sync.
struct Announced<'a, M: MetaStore> {
    meta: &'a M,
    pending: bool,
}

impl<'a, M: MetaStore> Announced<'a, M> {
    fn new(meta: &'a M) -> Self {
        meta.announce();
        Announced {
            meta,
            pending: true,
        }
    }

    /// The caller goes on to commit, which ends the announcement.
    fn finish(mut self) -> bool {
        self.pending = false;
        true
    }
}

impl<M: MetaStore> Drop for Announced<'_, M> {
    fn drop(&mut self) {
        if self.pending {
            self.meta.withdraw();
        }
    }
}

/// Byte storage of regular files, addressed by inode number.
pub trait DataStore: Send + Sync + 'static {
    /// True when calls block on the disk, so the engine must run them on the blocking pool.
    const BLOCKING: bool;
    /// Fills `buf` from `offset`; returns how many bytes the backing area held (a short count at
    /// its physical end; a missing area reads as empty).
    fn read_at(&self, ino: u64, offset: u64, buf: &mut [u8]) -> Result<usize>;
    /// True when [`DataStore::read_async`] reads without blocking the calling thread, so the
    /// engine serves READs on the async runtime instead of the blocking pool.
    const ASYNC_READ: bool = false;
    /// Like [`DataStore::read`], on the async runtime. Called only when `ASYNC_READ`.
    fn read_async(
        &self,
        ino: u64,
        offset: u64,
        len: usize,
    ) -> impl std::future::Future<Output = Result<Bytes>> + Send {
        std::future::ready(self.read(ino, offset, len))
    }
    /// True when [`DataStore::write_staged`] can write without blocking the calling thread.
    const ASYNC_WRITE: bool = false;
    /// True when the store reaches the data of every node (a cluster's store, which calls
    /// the node a file's layout names): the engine then serves files placed elsewhere too,
    /// instead of answering `Unavailable`.
    const REACHES_EVERY_NODE: bool = false;
    /// First half of a write on the async runtime: puts `data` on disk where the file does not
    /// see it yet. `Ok(None)`: this write needs the blocking path ([`DataStore::write_at`]),
    /// e.g. it is not block-aligned. Called only when `ASYNC_WRITE`.
    fn write_staged(
        &self,
        _ino: u64,
        _offset: u64,
        _data: &Bytes,
    ) -> impl std::future::Future<Output = Result<Option<Staged>>> + Send {
        std::future::ready(Ok(None))
    }
    /// Second half: makes a staged write part of the file (durable at the next sync). Quick
    /// and in memory: the engine calls it under the file's stripe lock.
    fn install(&self, _staged: Staged) -> Result<()> {
        Err(Error::Invalid)
    }
    /// `len` bytes from `offset`, zeros past the backing area. Stores that read into their own
    /// buffers override this to hand those buffers out without a copy.
    fn read(&self, ino: u64, offset: u64, len: usize) -> Result<Bytes> {
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        while filled < buf.len() {
            let n = self.read_at(ino, offset + filled as u64, &mut buf[filled..])?;
            if n == 0 {
                break; // The rest is a hole past the backing area: zeros.
            }
            filled += n;
        }
        Ok(Bytes::from(buf))
    }
    /// Checks that `len` bytes from `offset` read back as written, from the medium itself
    /// (past any cache): a scrub's read. `Ok(None)`: clean; `Ok(Some(why))`: the medium gave
    /// back bad or short data (a checksum mismatch, a read error), so the range wants a repair
    /// from a good copy; `Err`: not checked (the store could not look). By default
    /// `NotSupported`: a store without checksums, read through the OS page cache, has nothing
    /// a scrub could check, and reading it would only push clients' data out of that cache.
    fn verify(&self, _ino: u64, _offset: u64, _len: usize) -> Result<Option<String>> {
        Err(Error::NotSupported)
    }
    fn write_at(&self, ino: u64, offset: u64, data: &[u8]) -> Result<()>;
    /// Cuts or extends the backing area; bytes past `len` are gone.
    fn set_len(&self, ino: u64, len: u64) -> Result<()>;
    /// Makes data and length written so far durable.
    fn sync(&self, ino: u64) -> Result<()>;
    fn remove(&self, ino: u64) -> Result<()>;
    /// Capacity figures; `files_used` is the number of inodes.
    fn space(&self, files_used: u64) -> Result<FsStat>;
    /// Where a new regular file made by node `node` keeps its data, `copies` the replication
    /// factor its directory asks for (`None`: the store's default). A store that reaches
    /// other nodes may place copies there; by default, one copy on `node`.
    fn place(&self, node: u64, copies: Option<u8>) -> Layout {
        let _ = copies;
        Layout::on(node)
    }
    /// How many times data this store accepted, but had not synced, may have been lost
    /// outside this process (a node holding a copy restarted). The engine's write verifier
    /// moves with it, so clients send their uncommitted writes again. 0 for a local store,
    /// whose unsynced data dies with the process (and the verifier with it).
    fn losses(&self) -> u64 {
        0
    }
    /// Where the bytes of `ino` (of logical size `size`) live.
    fn residency(&self, ino: u64, size: u64) -> Result<crate::Residency>;
    /// Takes copies out of their files' layouts whose node did not answer a change that the
    /// file's other copies took, through `change(ino, from, to)` (a committed layout change);
    /// whether any layout changed. A change that failed with `Unavailable` is then tried again:
    /// it needs only the copies left. Default: nothing to do.
    fn drop_unanswered(&self, _change: &dyn Fn(u64, &Layout, Layout) -> Result<()>) -> bool {
        false
    }
    /// Figures for metrics, read at scrape time (see `Store::data_stats`). None by default.
    fn stats(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

/// A write that a [`DataStore`] has put on disk but not yet into the file; only the store that
/// made it knows what is inside.
pub struct Staged(pub Box<dyn std::any::Any + Send>);

/// A [`Store`] made of a metadata store and a data store.
pub struct Engine<M: MetaStore, D: DataStore> {
    inner: Arc<Inner<M, D>>,
}

struct Inner<M, D> {
    meta: M,
    data: D,
    state: Mutex<State>,
    stripes: Vec<RwLock<()>>,
    verifier: AtomicU64,
    root: FileId,
    /// Generation given to inodes created by this run.
    generation: u64,
    /// The node this engine runs on: new files are placed here, and a file whose layout does
    /// not name it has no data here (see [`Layout`]).
    node: AtomicU64,
}

struct State {
    cache: HashMap<u64, Cached>,
    names: NameCache,
    next_ino: u64,
    /// The inode counter as last written, which a batch that allocates expects to find: a
    /// differing value means another writer allocated.
    stored_next_ino: u64,
    /// The epoch this engine writes with (see [`Batch::epoch`]).
    epoch: u64,
    /// Set when the store refused a batch as fenced, or found the metadata changed under
    /// this engine: another writer owns it now. The caches, which are valid only while this
    /// engine is the one writer, are dropped, and every later call fails with `Fenced`.
    fenced: bool,
}

impl State {
    /// Forgets every cached record and name, which may no longer match the store; `fenced`:
    /// another writer owns the metadata, so this engine stops for good.
    fn drop_caches(&mut self, fenced: bool) {
        self.cache.clear();
        self.names = NameCache::default();
        self.fenced |= fenced;
    }
}

/// Directory entries seen or made in this run: `(dir, name) -> child`, so that a LOOKUP of a
/// cached name answers on the async runtime instead of hopping to the blocking pool.
///
/// It is kept exact under the state lock: every entry change goes through [`Tx::commit`], which
/// updates it after the batch is applied, and a miss falls back to the store. Only names that
/// exist are cached. Bounded by [`CACHE_NAMES_MAX`]: when full it is simply emptied.
#[derive(Default)]
struct NameCache {
    dirs: HashMap<u64, HashMap<Box<[u8]>, u64>>,
    len: usize,
}

impl NameCache {
    fn get(&self, dir: u64, name: &[u8]) -> Option<u64> {
        self.dirs.get(&dir)?.get(name).copied()
    }

    fn insert(&mut self, dir: u64, name: &[u8], child: u64) {
        if self.len >= CACHE_NAMES_MAX {
            self.dirs.clear();
            self.len = 0;
        }
        if self
            .dirs
            .entry(dir)
            .or_default()
            .insert(name.into(), child)
            .is_none()
        {
            self.len += 1;
        }
    }

    fn remove(&mut self, dir: u64, name: &[u8]) {
        if let Some(names) = self.dirs.get_mut(&dir) {
            if names.remove(name).is_some() {
                self.len -= 1;
            }
            if names.is_empty() {
                self.dirs.remove(&dir);
            }
        }
    }

    fn forget_dir(&mut self, dir: u64) {
        if let Some(names) = self.dirs.remove(&dir) {
            self.len -= names.len();
        }
    }
}

struct Cached {
    inode: Inode,
    /// Holds size/time changes of UNSTABLE writes that are not persisted yet.
    dirty: bool,
    /// The data area was cut to the record's size in this run (see the module docs).
    trimmed: bool,
}

impl<M: MetaStore, D: DataStore> Engine<M, D> {
    /// Opens a store: checks the format version and creates the root directory if missing.
    pub fn with_stores(meta: M, data: D) -> Result<Engine<M, D>> {
        let boot_nanos = record::timestamp_nanos(Timestamp::now()).max(1);
        let root_generation = open_root(&meta, boot_nanos)?;
        wait(meta.commit(false))?;
        let next_ino = meta.counter(Counter::NextIno)?.unwrap_or(ROOT_INO + 1);
        // A single node writes with the epoch already stored (at least 1); a cluster node is
        // given its ownership epoch with `set_writer_epoch`.
        let epoch = meta.counter(Counter::WriterEpoch)?.unwrap_or(0).max(1);
        let inner = Inner {
            meta,
            data,
            state: Mutex::new(State {
                cache: HashMap::new(),
                names: NameCache::default(),
                next_ino,
                stored_next_ino: next_ino,
                epoch,
                fenced: false,
            }),
            stripes: (0..STRIPES).map(|_| RwLock::new(())).collect(),
            verifier: AtomicU64::new(boot_nanos),
            root: FileId {
                ino: ROOT_INO,
                generation: root_generation,
            },
            generation: boot_nanos,
            node: AtomicU64::new(DEFAULT_NODE),
        };
        Ok(Engine {
            inner: Arc::new(inner),
        })
    }

    /// Makes this engine write with `epoch` from now on (the cluster layer's ownership epoch).
    /// A store that has seen a higher epoch refuses the next batch, and the engine stops.
    pub fn set_writer_epoch(&self, epoch: u64) {
        self.inner.lock().epoch = epoch;
    }

    /// Makes this engine the store of node `node` (the cluster identity's node id; a single
    /// node is node 1 unless configured): new files are placed on it, and files placed
    /// elsewhere are answered `Unavailable` until the cluster layer fetches them.
    pub fn set_node(&self, node: u64) {
        self.inner.node.store(node, Ordering::Relaxed);
    }

    /// Starts a new spell as the metadata writer (a node that became the metadata log's
    /// leader again): everything cached from an earlier spell may have been changed by other
    /// leaders since, so the caches are dropped and the inode counter re-read, and the write
    /// verifier changes, because UNSTABLE sizes held only in the cache are gone. `before`
    /// runs under the engine's lock once the caches are gone (the cluster layer lets batches
    /// through again there), so no call sees the old caches after it.
    pub fn resume(&self, before: impl FnOnce()) -> Result<()> {
        let mut state = self.inner.lock();
        let next_ino = self
            .inner
            .meta
            .counter(Counter::NextIno)?
            .unwrap_or(ROOT_INO + 1);
        state.drop_caches(false);
        state.next_ino = state.next_ino.max(next_ino);
        state.stored_next_ino = next_ino;
        self.inner.verifier.fetch_add(1, Ordering::SeqCst);
        before();
        Ok(())
    }

    /// Runs `f` with the data of regular file `ino` held still: no write, truncation or
    /// COMMIT of it runs meanwhile (the file's stripe lock, taken exclusively). `f` gets the
    /// file's current record, UNSTABLE size included. For copying a file's data elsewhere
    /// (the cluster's rebuild) a piece at a time. `Stale` if the file is gone.
    pub fn with_data_held<T>(&self, ino: u64, f: impl FnOnce(&Inode) -> Result<T>) -> Result<T> {
        let _exclusive = self.inner.stripe_exclusive(ino);
        let inode = {
            let mut state = self.inner.lock();
            let entry = cached(&self.inner.meta, &mut state, ino)?.ok_or(Error::Stale)?;
            if entry.inode.file_type != FileType::Regular {
                return Err(Error::Invalid);
            }
            entry.inode.clone()
        };
        f(&inode)
    }

    /// Gives regular file `ino` the layout `to` if it still has `from` (else `Stale`: it
    /// changed or went meanwhile), in one metadata batch, with its data held still.
    pub fn change_layout(&self, ino: u64, from: &Layout, to: Layout) -> Result<()> {
        self.inner.change_layout(ino, from, to)
    }

    /// Whether another writer took over (see [`Error::Fenced`]).
    pub fn is_fenced(&self) -> bool {
        self.inner.lock().fenced
    }

    /// The metadata store, for store-specific control (shutting a replicated log down, tests).
    pub fn meta(&self) -> &M {
        &self.inner.meta
    }

    /// The data store, for store-specific inspection (tests, the admin API).
    pub fn data(&self) -> &D {
        &self.inner.data
    }

    /// Number of inodes in the store, for logging.
    pub fn inode_count(&self) -> Result<u64> {
        self.inner.meta.inode_count()
    }

    /// Runs synchronous engine work: on the blocking pool when a store blocks, inline otherwise.
    ///
    /// Metadata batches that `f` applied are made durable before this returns (one group
    /// commit shared with concurrent calls), so every metadata operation is on stable storage
    /// when it replies, without an fsync inside the metadata mutex.
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner<M, D>, &CallCx) -> Result<T> + Send + 'static,
    {
        self.run_announced(false, f).await
    }

    /// [`Engine::run`] for a quick metadata change (create, remove, rename, link, a setattr
    /// that cuts no data): it announces itself to the group commit, so a flush about to start
    /// waits briefly for it. Calls that do slow data I/O before their batch (COMMIT, stable
    /// WRITEs, truncation) and calls that apply nothing use [`Engine::run`]: a flush must not
    /// wait for them.
    async fn run_mut<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner<M, D>, &CallCx) -> Result<T> + Send + 'static,
    {
        self.run_announced(true, f).await
    }

    async fn run_announced<T, F>(&self, announce: bool, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner<M, D>, &CallCx) -> Result<T> + Send + 'static,
    {
        // The synchronous half: the work and the batches it applied, then the call that starts
        // their commit (a blocking store flushes inside it, on this same thread).
        let request = REQUEST.try_with(|r| *r).ok();
        let work = move |inner: &Inner<M, D>| {
            let announced = announce.then(|| Announced::new(&inner.meta));
            let cx = CallCx {
                request,
                ..CallCx::default()
            };
            let result = f(inner, &cx);
            let commit = cx
                .applied
                .get()
                .then(|| inner.meta.commit(announced.is_some_and(Announced::finish)));
            (result, commit)
        };
        let (result, commit) = if M::BLOCKING || D::BLOCKING {
            let inner = Arc::clone(&self.inner);
            tokio::task::spawn_blocking(move || work(&inner))
                .await
                .map_err(|e| Error::Io(format!("store task failed: {e}")))?
        } else {
            work(&self.inner)
        };
        // The asynchronous half: no thread waits here for a disk or a quorum.
        if let Some(commit) = commit {
            commit.await.inspect_err(|e| self.inner.commit_failed(e))?;
        }
        result
    }
}

/// Checks the format version, creates the root on a new store, returns the root's generation.
fn open_root<M: MetaStore>(meta: &M, generation: u64) -> Result<u64> {
    match meta.counter(Counter::FormatVersion)? {
        Some(FORMAT_VERSION) => {}
        Some(old) if FORMAT_VERSIONS_UPGRADED.contains(&old) => {
            meta.apply(&Batch {
                // The epoch the store has: opening is not a new writer taking over.
                epoch: meta.counter(Counter::WriterEpoch)?.unwrap_or(0),
                preconditions: &[Precondition::CounterIs(Counter::FormatVersion, Some(old))],
                ops: &[MetaOp::SetCounter(Counter::FormatVersion, FORMAT_VERSION)],
            })?;
            tracing::info!(
                from = old,
                to = FORMAT_VERSION,
                "upgraded the metadata format; older Sluice builds will refuse this store"
            );
        }
        Some(other) => {
            return Err(Error::Io(format!(
                "the metadata store has format version {other}; this build reads versions \
                 {FORMAT_VERSIONS_UPGRADED:?} and {FORMAT_VERSION}. Open it with a matching \
                 Sluice build."
            )))
        }
        None if meta.inode_count()? != 0 => {
            return Err(Error::Io(
                "the metadata store has inodes but no format version; refusing to open it".into(),
            ))
        }
        None => {
            let now = Timestamp::now();
            let mut root = new_inode(FileType::Directory, 0o755, 0, 0, generation, now);
            root.parent = ROOT_INO;
            meta.apply(&Batch {
                epoch: 0,
                preconditions: &[
                    Precondition::InodeExists(ROOT_INO, false),
                    Precondition::CounterIs(Counter::FormatVersion, None),
                ],
                ops: &[
                    MetaOp::PutInode(ROOT_INO, root),
                    MetaOp::SetCounter(Counter::NextIno, ROOT_INO + 1),
                    MetaOp::SetCounter(Counter::FormatVersion, FORMAT_VERSION),
                ],
            })?;
        }
    }
    match meta.inode(ROOT_INO)? {
        Some(root) if root.is_dir() => Ok(root.generation),
        _ => Err(Error::Io("the metadata store has no root directory".into())),
    }
}

fn new_inode(
    file_type: FileType,
    mode: u32,
    uid: u32,
    gid: u32,
    generation: u64,
    now: Timestamp,
) -> Inode {
    let is_dir = file_type == FileType::Directory;
    Inode {
        generation,
        file_type,
        mode,
        nlink: if is_dir { 2 } else { 1 },
        uid,
        gid,
        size: 0,
        rdev: (0, 0),
        atime: now,
        mtime: now,
        ctime: now,
        change: record::timestamp_nanos(now),
        parent: 0,
        last_seq: if is_dir { FIRST_SEQ - 1 } else { 0 },
        verifier: None,
        layout: None,
        replication: None,
        target: Vec::new(),
    }
}

/// Rejects names that cannot be directory entries.
fn validate_name(name: &[u8]) -> Result<()> {
    if name.len() > NAME_LEN_MAX {
        return Err(Error::NameTooLong);
    }
    let reserved = name.is_empty() || name == b"." || name == b"..";
    if reserved || name.iter().any(|&b| b == b'/' || b == 0) {
        return Err(Error::Invalid);
    }
    Ok(())
}

/// A metadata transaction: reads through the cache, collects changes, applies them as one
/// batch and only then updates the cache, so a failed batch leaves no trace.
struct Tx<'a, M> {
    meta: &'a M,
    state: &'a mut State,
    changed: BTreeMap<u64, Option<Inode>>,
    ops: Vec<MetaOp>,
    allocated: bool,
}

impl<'a, M: MetaStore> Tx<'a, M> {
    fn new(meta: &'a M, state: &'a mut State) -> Tx<'a, M> {
        Tx {
            meta,
            state,
            changed: BTreeMap::new(),
            ops: Vec::new(),
            allocated: false,
        }
    }

    /// The current record of `ino`, loading it into the cache on a miss.
    fn inode(&mut self, ino: u64) -> Result<Option<Inode>> {
        if let Some(change) = self.changed.get(&ino) {
            return Ok(change.clone());
        }
        Ok(cached(self.meta, self.state, ino)?.map(|c| c.inode.clone()))
    }

    /// The record named by `id`, or `Stale` when it is gone or was replaced.
    fn checked(&mut self, id: FileId) -> Result<Inode> {
        if self.state.fenced {
            return Err(Error::Fenced);
        }
        match self.inode(id.ino)? {
            Some(inode) if inode.generation == id.generation => Ok(inode),
            _ => Err(Error::Stale),
        }
    }

    fn dir(&mut self, id: FileId) -> Result<Inode> {
        let dir = self.checked(id)?;
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(Error::NotDir)
        }
    }

    /// The replication factor for regular files made in directory `ino` (record `dir`): the
    /// nearest factor up the tree from it, `None` when no directory up to the root has one.
    fn replication_below(&mut self, ino: u64, dir: &Inode) -> Result<Option<u8>> {
        let (mut ino, mut parent, mut found) = (ino, dir.parent, dir.replication);
        // A directory's parent chain ends at the root, its own parent; the bound only keeps
        // corrupt metadata (a cycle) from looping.
        for _ in 0..DEPTH_MAX {
            if found.is_some() || parent == ino || parent == 0 {
                break;
            }
            ino = parent;
            let up = self.child(ino)?;
            (parent, found) = (up.parent, up.replication);
        }
        Ok(found)
    }

    /// The record a directory entry points at; a dangling entry is corruption.
    fn child(&mut self, ino: u64) -> Result<Inode> {
        self.inode(ino)?
            .ok_or_else(|| Error::Io(format!("directory entry points at missing inode {ino}")))
    }

    fn put(&mut self, ino: u64, inode: Inode) {
        self.changed.insert(ino, Some(inode));
    }

    fn delete(&mut self, ino: u64) {
        self.changed.insert(ino, None);
    }

    fn allocate_ino(&mut self) -> u64 {
        let ino = self.state.next_ino;
        self.state.next_ino += 1;
        self.allocated = true;
        ino
    }

    /// Adds an entry with the directory's next sequence number.
    fn add_entry(&mut self, dir_ino: u64, dir: &mut Inode, name: &[u8], child: u64) {
        dir.last_seq += 1;
        self.ops.push(MetaOp::PutEntry {
            dir: dir_ino,
            name: name.to_vec(),
            child,
            seq: dir.last_seq,
        });
    }

    fn remove_entry(&mut self, dir: u64, name: &[u8], seq: u64) {
        self.ops.push(MetaOp::DeleteEntry {
            dir,
            name: name.to_vec(),
            seq,
        });
    }

    fn commit(mut self, cx: &CallCx) -> Result<()> {
        let mut ops = std::mem::take(&mut self.ops);
        for (&ino, change) in &self.changed {
            ops.push(match change {
                Some(inode) => MetaOp::PutInode(ino, inode.clone()),
                None => MetaOp::DeleteInode(ino),
            });
        }
        if self.allocated {
            ops.push(MetaOp::SetCounter(Counter::NextIno, self.state.next_ino));
        }
        if ops.is_empty() {
            return Ok(());
        }
        if let Some(id) = cx.request {
            ops.push(MetaOp::NoteRequest(id));
        }
        let mut preconditions = Vec::new();
        if self.allocated {
            preconditions.push(Precondition::CounterIs(
                Counter::NextIno,
                Some(self.state.stored_next_ino),
            ));
        }
        let batch = Batch {
            epoch: self.state.epoch,
            preconditions: &preconditions,
            ops: &ops,
        };
        // On failure, inode numbers handed out by this batch are skipped: never reused.
        match self.meta.apply(&batch) {
            Ok(()) => {}
            Err(e @ (Error::Fenced | Error::GuardMismatch)) => {
                // Another writer owns the metadata: what this engine caches may be wrong, and
                // nothing more may be written from here.
                tracing::error!(
                    error = ?e,
                    epoch = self.state.epoch,
                    "metadata store refused a batch: another writer took over; this store stops"
                );
                self.state.drop_caches(true);
                return Err(Error::Fenced);
            }
            Err(e) => return Err(e),
        }
        if self.allocated {
            self.state.stored_next_ino = self.state.next_ino;
        }
        cx.applied.set(true);
        for op in &ops {
            match op {
                MetaOp::PutEntry {
                    dir, name, child, ..
                } => self.state.names.insert(*dir, name, *child),
                MetaOp::DeleteEntry { dir, name, .. } => self.state.names.remove(*dir, name),
                MetaOp::DeleteInode(ino) => self.state.names.forget_dir(*ino),
                MetaOp::PutInode(..)
                | MetaOp::SetCounter(..)
                | MetaOp::NoteRequest(_)
                | MetaOp::PutDoc { .. } => {}
            }
        }
        for (ino, change) in std::mem::take(&mut self.changed) {
            match change {
                Some(inode) => {
                    let entry = self.state.cache.entry(ino).or_insert(Cached {
                        inode: inode.clone(),
                        dirty: false,
                        trimmed: false,
                    });
                    entry.inode = inode;
                    entry.dirty = false;
                }
                None => {
                    self.state.cache.remove(&ino);
                }
            }
        }
        Ok(())
    }
}

/// Evicts clean records once the cache holds this many; dirty ones stay until persisted.
const CACHE_INODES_MAX: usize = 1 << 20;
/// Directory entries the name cache holds at most.
const CACHE_NAMES_MAX: usize = 1 << 20;
const CACHE_EVICT_BATCH: usize = 1024;

fn evict_clean(state: &mut State) {
    let victims: Vec<u64> = state
        .cache
        .iter()
        .filter(|(_, c)| !c.dirty)
        .map(|(&ino, _)| ino)
        .take(CACHE_EVICT_BATCH)
        .collect();
    for ino in victims {
        state.cache.remove(&ino);
    }
}

fn cached<'s, M: MetaStore>(
    meta: &M,
    state: &'s mut State,
    ino: u64,
) -> Result<Option<&'s mut Cached>> {
    if state.cache.len() >= CACHE_INODES_MAX && !state.cache.contains_key(&ino) {
        evict_clean(state);
    }
    match state.cache.entry(ino) {
        Entry::Occupied(entry) => Ok(Some(entry.into_mut())),
        Entry::Vacant(entry) => Ok(meta.inode(ino)?.map(|inode| {
            entry.insert(Cached {
                inode,
                dirty: false,
                trimmed: false,
            })
        })),
    }
}

/// ACCESS (RFC 1813 §3.3.4): the bits of `mask` that `cred` is granted on `inode`.
fn access_of(cred: &Cred, inode: &Inode, ino: u64, mask: AccessMask) -> (AccessMask, Attr) {
    let mut granted = 0;
    let mut grant = |bits: u32, want: u32| {
        if may(cred, inode, want) {
            granted |= bits;
        }
    };
    grant(AccessMask::READ, MAY_READ);
    grant(AccessMask::MODIFY | AccessMask::EXTEND, MAY_WRITE);
    if inode.is_dir() {
        grant(AccessMask::LOOKUP, MAY_EXEC);
        grant(AccessMask::DELETE, MAY_WRITE | MAY_EXEC);
    } else {
        grant(AccessMask::EXECUTE, MAY_EXEC);
    }
    (AccessMask(granted & mask.0), inode.attr(ino))
}

fn wcc(before: &Inode, after: &Inode, ino: u64) -> Wcc {
    Wcc {
        before: PreAttr {
            size: before.size,
            mtime: before.mtime,
            ctime: before.ctime,
        },
        after: after.attr(ino),
    }
}

impl<M: MetaStore, D: DataStore> Inner<M, D> {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied change in the cache
        // (Tx updates it only after a successful batch), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn node(&self) -> u64 {
        self.node.load(Ordering::Relaxed)
    }

    /// Whether this node holds the data of `inode` (a file without a layout predates layouts
    /// and lives with its record). Data placed elsewhere is `Unavailable` here: the cluster
    /// fetches it from a holder, which this single-node engine cannot do yet.
    fn data_here(&self, inode: &Inode) -> Result<()> {
        match &inode.layout {
            Some(layout) if !D::REACHES_EVERY_NODE && !layout.holds(self.node()) => {
                Err(Error::Unavailable)
            }
            _ => Ok(()),
        }
    }

    /// The state lock for the cached answers given on the async runtime, or `None` while it is
    /// held: a holder may be waiting for the metadata store behind a flush (an fsync), and a
    /// runtime worker must not park for that. The caller then takes the blocking path.
    fn try_lock(&self) -> Option<MutexGuard<'_, State>> {
        match self.state.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    fn stripe(&self, ino: u64) -> &RwLock<()> {
        &self.stripes[(ino % STRIPES as u64) as usize]
    }

    fn stripe_shared(&self, ino: u64) -> RwLockReadGuard<'_, ()> {
        self.stripe(ino).read().unwrap_or_else(|e| e.into_inner())
    }

    fn stripe_exclusive(&self, ino: u64) -> RwLockWriteGuard<'_, ()> {
        self.stripe(ino).write().unwrap_or_else(|e| e.into_inner())
    }

    /// See [`Engine::change_layout`].
    fn change_layout(&self, ino: u64, from: &Layout, to: Layout) -> Result<()> {
        let _exclusive = self.stripe_exclusive(ino);
        let mut state = self.lock();
        let entry = cached(&self.meta, &mut state, ino)?.ok_or(Error::Stale)?;
        if entry.inode.file_type != FileType::Regular || entry.inode.layout.as_ref() != Some(from) {
            return Err(Error::Stale);
        }
        let mut record = entry.inode.clone();
        record.layout = Some(to);
        let mut tx = Tx::new(&self.meta, &mut state);
        tx.put(ino, record);
        tx.commit(&CallCx::default())
    }

    /// Runs `op` again (at most twice more) when it failed with `Unavailable` and the data
    /// store then took copies whose node did not answer out of their layouts
    /// ([`DataStore::drop_unanswered`]): the change needs only the copies left, each of which
    /// took every acknowledged write, so the client sees no error for a node that died.
    fn retrying<T>(&self, mut op: impl FnMut() -> Result<T>) -> Result<T> {
        let mut tries = 0;
        loop {
            match op() {
                Err(Error::Unavailable)
                    if tries < 2
                        && self.data.drop_unanswered(&|ino, from, to| {
                            self.change_layout(ino, from, to)
                        }) =>
                {
                    tries += 1;
                }
                r => return r,
            }
        }
    }

    /// A commit failed: the applied batches it covered may be lost (a failed flush) or rolled
    /// back (a replicated store that lost its quorum or its leadership), so the caches, which
    /// hold them, are dropped, and acknowledged UNSTABLE sizes may be among what was lost: the
    /// write verifier changes so that clients resend. A `Fenced` commit stops this engine.
    fn commit_failed(&self, error: &Error) {
        self.verifier.fetch_add(1, Ordering::SeqCst);
        let mut state = self.lock();
        state.drop_caches(*error == Error::Fenced);
        tracing::error!(
            %error,
            fenced = state.fenced,
            "metadata commit failed; caches dropped and write verifier changed"
        );
    }

    fn verifier(&self) -> [u8; 8] {
        // Both only grow, so their sum never repeats.
        let v = self.verifier.load(Ordering::SeqCst);
        v.wrapping_add(self.data.losses()).to_be_bytes()
    }

    /// Syncs file data. A failure changes the write verifier, because data acknowledged as
    /// UNSTABLE may now be lost and clients must resend it.
    fn sync_data(&self, ino: u64) -> Result<()> {
        self.data.sync(ino).inspect_err(|e| {
            self.verifier.fetch_add(1, Ordering::SeqCst);
            tracing::error!(ino, error = %e, "data sync failed; write verifier changed");
        })
    }

    fn getattr(&self, id: FileId) -> Result<Attr> {
        Ok(self.record(id)?.attr(id.ino))
    }

    /// The current record named by `id`.
    fn record(&self, id: FileId) -> Result<Inode> {
        let mut state = self.lock();
        Tx::new(&self.meta, &mut state).checked(id)
    }

    fn lookup(&self, cred: &Cred, dir_id: FileId, name: &[u8]) -> Result<Attr> {
        let mut state = self.lock();
        let mut tx = Tx::new(&self.meta, &mut state);
        let dir = tx.dir(dir_id)?;
        require(may(cred, &dir, MAY_EXEC))?;
        match name {
            b"." => return Ok(dir.attr(dir_id.ino)),
            b".." => return Ok(tx.child(dir.parent)?.attr(dir.parent)),
            _ => validate_name(name)?,
        }
        let child = match tx.state.names.get(dir_id.ino, name) {
            Some(child) => child,
            None => {
                let (child, _) = self.meta.entry(dir_id.ino, name)?.ok_or(Error::NotFound)?;
                tx.state.names.insert(dir_id.ino, name, child);
                child
            }
        };
        Ok(tx.child(child)?.attr(child))
    }

    /// [`Inner::lookup`] from the caches alone; `None` when anything it needs is not cached or
    /// the state lock is busy (then the blocking path answers, errors included).
    fn lookup_cached(&self, cred: &Cred, dir_id: FileId, name: &[u8]) -> Option<Result<Attr>> {
        // "." and ".." are refused by validate_name too; the blocking path answers them.
        if validate_name(name).is_err() {
            return None;
        }
        let state = self.try_lock()?;
        let dir = &state.cache.get(&dir_id.ino)?.inode;
        if dir.generation != dir_id.generation || !dir.is_dir() {
            return None;
        }
        if let Err(e) = require(may(cred, dir, MAY_EXEC)) {
            return Some(Err(e));
        }
        let child = state.names.get(dir_id.ino, name)?;
        Some(Ok(state.cache.get(&child)?.inode.attr(child)))
    }

    fn parent(&self, cred: &Cred, dir_id: FileId) -> Result<Attr> {
        self.lookup(cred, dir_id, b"..")
    }

    fn access(&self, cred: &Cred, id: FileId, mask: AccessMask) -> Result<(AccessMask, Attr)> {
        let mut state = self.lock();
        let inode = Tx::new(&self.meta, &mut state).checked(id)?;
        Ok(access_of(cred, &inode, id.ino, mask))
    }

    /// [`Inner::access`] from the inode cache alone; `None` when the inode is not cached or the
    /// state lock is busy.
    fn access_cached(
        &self,
        cred: &Cred,
        id: FileId,
        mask: AccessMask,
    ) -> Option<Result<(AccessMask, Attr)>> {
        let state = self.try_lock()?;
        let inode = &state.cache.get(&id.ino)?.inode;
        Some(if inode.generation == id.generation {
            Ok(access_of(cred, inode, id.ino, mask))
        } else {
            Err(Error::Stale)
        })
    }

    fn readlink(&self, id: FileId) -> Result<(Vec<u8>, Attr)> {
        let mut state = self.lock();
        let inode = Tx::new(&self.meta, &mut state).checked(id)?;
        if inode.file_type != FileType::Symlink {
            return Err(Error::NotSymlink(inode.file_type));
        }
        Ok((inode.target.clone(), inode.attr(id.ino)))
    }

    /// [`Inner::getattr`] from the inode cache alone; `None` when the inode is not cached or
    /// the state lock is busy.
    fn getattr_cached(&self, id: FileId) -> Option<Result<Attr>> {
        let state = self.try_lock()?;
        let inode = &state.cache.get(&id.ino)?.inode;
        Some(if inode.generation == id.generation {
            Ok(inode.attr(id.ino))
        } else {
            Err(Error::Stale)
        })
    }

    /// Whether a WRITE may take the async path: the inode is cached, already trimmed in this
    /// run, and `cred` may write it. `None`: take the blocking path (which reports errors).
    fn async_write_allowed(&self, cred: &Cred, id: FileId) -> Option<()> {
        // On the async runtime: never wait for the state mutex, whose holder may be waiting
        // on other nodes through this runtime (the blocking path asks instead).
        let state = self.try_lock()?;
        let cached = state.cache.get(&id.ino)?;
        let inode = &cached.inode;
        let ok = cached.trimmed
            && inode.generation == id.generation
            && inode.file_type == FileType::Regular
            && require(may_io(cred, inode, MAY_WRITE)).is_ok()
            && self.data_here(inode).is_ok();
        ok.then_some(())
    }

    /// Second half of an async WRITE: installs the staged data and updates size and times,
    /// under the stripe lock so that no COMMIT sees one without the other. `Err(staged)` back
    /// when the stripe is busy (a COMMIT or truncation holds it): the caller retries off the
    /// async runtime rather than block it.
    fn install_write(
        &self,
        cred: &Cred,
        id: FileId,
        end: u64,
        staged: Staged,
        wait: bool,
    ) -> std::result::Result<Result<Wcc>, Staged> {
        let _shared = if wait {
            self.stripe_shared(id.ino)
        } else {
            match self.stripe(id.ino).try_read() {
                Ok(guard) => guard,
                Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return Err(staged),
            }
        };
        if let Err(e) = self.data.install(staged) {
            return Ok(Err(e));
        }
        // An UNSTABLE write only marks the cached record dirty: it commits nothing, so there
        // is nothing to sync and this may run on the async runtime.
        let cx = CallCx::default();
        let wcc = self.finish_write(&cx, cred, id, end, Stability::Unstable);
        debug_assert!(!cx.applied.get(), "an UNSTABLE write committed metadata");
        Ok(wcc)
    }

    /// [`Inner::io_target`] from the inode cache alone: `None` when the inode is not cached
    /// (the caller then asks the blocking path, which may read the metadata store).
    fn io_target_cached(&self, cred: &Cred, id: FileId, want: u32) -> Option<Result<Inode>> {
        // See `async_write_allowed`: `None` sends the caller to the blocking path.
        let state = self.try_lock()?;
        let inode = &state.cache.get(&id.ino)?.inode;
        Some(if inode.generation != id.generation {
            Err(Error::Stale)
        } else {
            match inode.file_type {
                FileType::Regular => require(may_io(cred, inode, want))
                    .and_then(|()| self.data_here(inode))
                    .map(|()| inode.clone()),
                other => Err(Error::NotRegular(other)),
            }
        })
    }

    /// The record of a regular file that `cred` may read or write.
    fn io_target(&self, cred: &Cred, id: FileId, want: u32) -> Result<Inode> {
        let mut state = self.lock();
        let inode = Tx::new(&self.meta, &mut state).checked(id)?;
        if inode.file_type != FileType::Regular {
            return Err(Error::NotRegular(inode.file_type));
        }
        require(may_io(cred, &inode, want))?;
        self.data_here(&inode)?;
        Ok(inode)
    }

    fn read(&self, cred: &Cred, id: FileId, offset: u64, count: u32) -> Result<ReadResult> {
        let _shared = self.stripe_shared(id.ino);
        let inode = self.io_target(cred, id, MAY_READ)?;
        let available = inode.size.saturating_sub(offset);
        let len = available.min(u64::from(count)).min(READ_BYTES_MAX);
        // `len` is at most READ_BYTES_MAX, so the conversion cannot truncate.
        let data = self.data.read(id.ino, offset, len as usize)?;
        Ok(ReadResult {
            data,
            eof: offset.saturating_add(len) >= inode.size,
            attr: inode.attr(id.ino),
        })
    }

    fn write(
        &self,
        cx: &CallCx,
        cred: &Cred,
        id: FileId,
        offset: u64,
        data: &[u8],
        stability: Stability,
    ) -> Result<WriteResult> {
        let count = u32::try_from(data.len()).map_err(|_| Error::Invalid)?;
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(Error::FileTooBig)?;
        if end > FILE_SIZE_MAX {
            return Err(Error::FileTooBig);
        }
        self.trim_once(id)?;
        let _shared = self.stripe_shared(id.ino);
        self.io_target(cred, id, MAY_WRITE)?;
        // A node holding a copy that restarts between the write and its sync may have lost
        // the write and still answer the sync: a durable write then fails (the client
        // retries it) rather than be acknowledged (`DataStore::losses`).
        let losses = self.data.losses();
        let landed = self
            .data
            .write_at(id.ino, offset, data)
            .and_then(|()| match stability {
                Stability::Unstable => Ok(()),
                _ => self.sync_data(id.ino).and_then(|()| {
                    if self.data.losses() == losses {
                        Ok(())
                    } else {
                        Err(Error::Unavailable)
                    }
                }),
            });
        if let Err(e) = landed {
            // The bytes (or part of them) may sit past the recorded size, which stays as it was.
            self.mark_untrimmed(id.ino);
            return Err(e);
        }
        let wcc = self.finish_write(cx, cred, id, end, stability)?;
        Ok(WriteResult {
            count,
            committed: stability,
            wcc,
        })
    }

    /// Cuts data left past the recorded size (by a crash or a failed write) before this run
    /// first writes the file, so it cannot reappear inside the file.
    fn trim_once(&self, id: FileId) -> Result<()> {
        {
            let mut state = self.lock();
            let cached = cached(&self.meta, &mut state, id.ino)?.ok_or(Error::Stale)?;
            if cached.trimmed {
                return Ok(());
            }
        }
        let _exclusive = self.stripe_exclusive(id.ino);
        let size = {
            let mut state = self.lock();
            let cached = cached(&self.meta, &mut state, id.ino)?.ok_or(Error::Stale)?;
            if cached.trimmed || cached.inode.file_type != FileType::Regular {
                return Ok(());
            }
            self.data_here(&cached.inode)?;
            cached.inode.size
        };
        // Not under the state mutex: in a cluster this may wait on other nodes. The exclusive
        // stripe lock keeps the size as read (writes and truncations of the file take it).
        self.data.set_len(id.ino, size)?;
        let mut state = self.lock();
        if let Some(cached) = cached(&self.meta, &mut state, id.ino)? {
            cached.trimmed = true;
        }
        Ok(())
    }

    fn mark_untrimmed(&self, ino: u64) {
        if let Some(c) = self.lock().cache.get_mut(&ino) {
            c.trimmed = false;
        }
    }

    /// Updates size and times after the data landed; persists them for stable writes.
    fn finish_write(
        &self,
        cx: &CallCx,
        cred: &Cred,
        id: FileId,
        end: u64,
        stability: Stability,
    ) -> Result<Wcc> {
        let mut state = self.lock();
        let now = Timestamp::now();
        let Some(entry) = cached(&self.meta, &mut state, id.ino)? else {
            // Removed while the data was being written: drop the orphaned data again.
            self.data.remove(id.ino)?;
            return Err(Error::Stale);
        };
        let before = entry.inode.clone();
        entry.inode.size = entry.inode.size.max(end);
        perm::kill_suid_on_write(cred, &mut entry.inode);
        entry.inode.touch_mtime(now);
        entry.dirty = true;
        let after = entry.inode.clone();
        if stability > Stability::Unstable {
            let mut tx = Tx::new(&self.meta, &mut state);
            tx.put(id.ino, after.clone());
            tx.commit(cx)?;
        }
        Ok(wcc(&before, &after, id.ino))
    }

    fn commit(&self, cx: &CallCx, id: FileId) -> Result<Attr> {
        // Exclusive: no write may sit between its data I/O and its size update, or the size
        // persisted below could cover data this sync did not flush.
        let _exclusive = self.stripe_exclusive(id.ino);
        let inode = self.record(id)?;
        if inode.file_type != FileType::Regular {
            return Ok(inode.attr(id.ino));
        }
        self.data_here(&inode)?;
        self.sync_data(id.ino)?;
        let mut state = self.lock();
        let entry = cached(&self.meta, &mut state, id.ino)?.ok_or(Error::Stale)?;
        if entry.dirty {
            let record = entry.inode.clone();
            let mut tx = Tx::new(&self.meta, &mut state);
            tx.put(id.ino, record);
            tx.commit(cx).inspect_err(|_| {
                self.verifier.fetch_add(1, Ordering::SeqCst);
            })?;
        }
        drop(state);
        self.getattr(id)
    }

    fn setattr(
        &self,
        cx: &CallCx,
        cred: &Cred,
        id: FileId,
        attr: &SetAttr,
        guard: Option<Timestamp>,
    ) -> Result<Wcc> {
        let _exclusive = attr.size.map(|_| self.stripe_exclusive(id.ino));
        let mut state = self.lock();
        let mut tx = Tx::new(&self.meta, &mut state);
        let before = tx.checked(id)?;
        if guard.is_some_and(|ctime| ctime != before.ctime) {
            return Err(Error::GuardMismatch);
        }
        let mut after = before.clone();
        perm::apply_setattr(cred, &mut after, attr, Timestamp::now())?;
        // An empty file truncated to empty (what `open(O_TRUNC)` of a new file sends) cuts no
        // byte: its data, wherever it is held, is not needed. Data a crash left past size 0
        // is trimmed before the first write, as for any file (see the module docs).
        let cuts = attr.size.filter(|&size| size != 0 || before.size != 0);
        if let Some(size) = cuts {
            self.data_here(&before)?;
            // Durable before the record says so: a crash must not resurrect cut bytes (nor a
            // copy's node that restarted in between and lost the cut).
            let losses = self.data.losses();
            self.data.set_len(id.ino, size.min(before.size))?;
            self.sync_data(id.ino)?;
            if self.data.losses() != losses {
                return Err(Error::Unavailable);
            }
        }
        tx.put(id.ino, after.clone());
        tx.commit(cx)?;
        if cuts.is_some() {
            if let Some(c) = state.cache.get_mut(&id.ino) {
                c.trimmed = true;
            }
        }
        Ok(wcc(&before, &after, id.ino))
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "the Store::create arguments plus the call context"
    )]
    fn create(
        &self,
        cx: &CallCx,
        cred: &Cred,
        dir_id: FileId,
        name: &[u8],
        kind: NodeKind,
        attr: &SetAttr,
        mode: CreateMode,
    ) -> Result<(Attr, Wcc)> {
        validate_name(name)?;
        if let NodeKind::Symlink { target } = &kind {
            if target.len() > PATH_LEN_MAX {
                return Err(Error::NameTooLong);
            }
        }
        let mode = match kind {
            NodeKind::Regular => mode,
            _ => CreateMode::Guarded,
        };
        let mut state = self.lock();
        let mut tx = Tx::new(&self.meta, &mut state);
        let dir = tx.dir(dir_id)?;
        require(may(cred, &dir, MAY_EXEC))?;
        if let Some((child, _)) = self.meta.entry(dir_id.ino, name)? {
            let existing = tx.child(child)?;
            let dir_wcc = wcc(&dir, &dir, dir_id.ino);
            let existing_id = existing.attr(child).id;
            match mode {
                CreateMode::Exclusive(v) if existing.verifier == Some(v) => {
                    return Ok((existing.attr(child), dir_wcc));
                }
                CreateMode::Unchecked if existing.file_type == FileType::Regular => {
                    drop(state);
                    return self.create_existing(cx, cred, existing_id, attr.size, dir_wcc);
                }
                _ => return Err(Error::Exists),
            }
        }
        require(may(cred, &dir, MAY_WRITE | MAY_EXEC))?;
        let copies = match kind {
            NodeKind::Regular => tx.replication_below(dir_id.ino, &dir)?,
            _ => None,
        };
        let ino = tx.allocate_ino();
        let inode = self.new_child(cred, &dir, dir_id.ino, kind, attr, mode, copies)?;
        let mut dir_after = dir.clone();
        if inode.is_dir() {
            dir_after.nlink = dir_after.nlink.checked_add(1).ok_or(Error::TooManyLinks)?;
        }
        dir_after.touch_mtime(inode.ctime);
        tx.add_entry(dir_id.ino, &mut dir_after, name, ino);
        tx.put(dir_id.ino, dir_after.clone());
        tx.put(ino, inode.clone());
        tx.commit(cx)?;
        if let Some(c) = state.cache.get_mut(&ino) {
            c.trimmed = true; // A new file has no data yet, so nothing to trim.
        }
        Ok((inode.attr(ino), wcc(&dir, &dir_after, dir_id.ino)))
    }

    /// UNCHECKED create of an existing regular file: only the size is applied.
    fn create_existing(
        &self,
        cx: &CallCx,
        cred: &Cred,
        id: FileId,
        size: Option<u64>,
        dir_wcc: Wcc,
    ) -> Result<(Attr, Wcc)> {
        if size.is_none() {
            return Ok((self.getattr(id)?, dir_wcc));
        }
        let attr = SetAttr {
            size,
            ..SetAttr::default()
        };
        Ok((self.setattr(cx, cred, id, &attr, None)?.after, dir_wcc))
    }

    /// The record of a new object, with the caller's attributes applied by the setattr rules.
    #[allow(
        clippy::too_many_arguments,
        reason = "the create arguments and the replication factor found for them"
    )]
    fn new_child(
        &self,
        cred: &Cred,
        dir: &Inode,
        dir_ino: u64,
        kind: NodeKind,
        attr: &SetAttr,
        mode: CreateMode,
        copies: Option<u8>,
    ) -> Result<Inode> {
        let (file_type, default_mode) = match &kind {
            NodeKind::Regular => (FileType::Regular, 0o644),
            NodeKind::Directory => (FileType::Directory, 0o755),
            NodeKind::Symlink { .. } => (FileType::Symlink, 0o777),
            NodeKind::BlockDevice { .. } => (FileType::BlockDevice, 0o644),
            NodeKind::CharDevice { .. } => (FileType::CharDevice, 0o644),
            NodeKind::Socket => (FileType::Socket, 0o644),
            NodeKind::Fifo => (FileType::Fifo, 0o644),
        };
        let gid = if dir.mode & 0o2000 != 0 {
            dir.gid
        } else {
            cred.gid
        };
        let mode_bits = attr.mode.unwrap_or(default_mode);
        let mode_bits = perm::initial_mode(cred, dir, file_type, mode_bits, gid);
        let now = Timestamp::now();
        let mut inode = new_inode(file_type, mode_bits, cred.uid, gid, self.generation, now);
        match kind {
            NodeKind::Symlink { target } => {
                inode.size = target.len() as u64;
                inode.target = target;
            }
            NodeKind::BlockDevice { rdev } | NodeKind::CharDevice { rdev } => inode.rdev = rdev,
            NodeKind::Directory => inode.parent = dir_ino,
            NodeKind::Regular => {
                inode.replication = copies;
                inode.layout = Some(self.data.place(self.node(), copies));
            }
            _ => {}
        }
        let rest = SetAttr {
            mode: None,
            ..attr.clone()
        };
        if rest != SetAttr::default() {
            perm::apply_setattr(cred, &mut inode, &rest, now)?;
        }
        if let CreateMode::Exclusive(v) = mode {
            inode.verifier = Some(v);
        }
        Ok(inode)
    }

    fn remove(
        &self,
        cx: &CallCx,
        cred: &Cred,
        dir_id: FileId,
        name: &[u8],
        want_dir: bool,
    ) -> Result<Wcc> {
        validate_name(name)?;
        let mut state = self.lock();
        let mut tx = Tx::new(&self.meta, &mut state);
        let dir = tx.dir(dir_id)?;
        require(may(cred, &dir, MAY_WRITE | MAY_EXEC))?;
        let (child_ino, seq) = self.meta.entry(dir_id.ino, name)?.ok_or(Error::NotFound)?;
        let mut child = tx.child(child_ino)?;
        match (want_dir, child.is_dir()) {
            (false, true) => return Err(Error::IsDir),
            (true, false) => return Err(Error::NotDir),
            (true, true) if !self.meta.entries(child_ino, 0, 1)?.is_empty() => {
                return Err(Error::NotEmpty)
            }
            _ => {}
        }
        require_sticky(cred, &dir, &child)?;
        let now = Timestamp::now();
        let mut dir_after = dir.clone();
        dir_after.touch_mtime(now);
        tx.remove_entry(dir_id.ino, name, seq);
        let freed = self.unlink_child(&mut tx, &mut dir_after, child_ino, &mut child, now);
        tx.put(dir_id.ino, dir_after.clone());
        tx.commit(cx)?;
        drop(state);
        self.free_data(freed);
        Ok(wcc(&dir, &dir_after, dir_id.ino))
    }

    /// Drops one link to `child` from `dir`; returns the inode to free if it was the last.
    fn unlink_child(
        &self,
        tx: &mut Tx<'_, M>,
        dir: &mut Inode,
        child_ino: u64,
        child: &mut Inode,
        now: Timestamp,
    ) -> Option<u64> {
        if child.is_dir() {
            dir.nlink = dir.nlink.saturating_sub(1);
            tx.delete(child_ino);
            return None;
        }
        child.nlink = child.nlink.saturating_sub(1);
        child.touch_ctime(now);
        if child.nlink > 0 {
            tx.put(child_ino, child.clone());
            return None;
        }
        tx.delete(child_ino);
        (child.file_type == FileType::Regular).then_some(child_ino)
    }

    /// Frees the data of a deleted inode. The inode is already gone from the metadata, so a
    /// failure only leaks space; it is logged, not returned.
    fn free_data(&self, ino: Option<u64>) {
        if let Some(ino) = ino {
            if let Err(e) = self.data.remove(ino) {
                tracing::warn!(ino, error = %e, "could not free the data of a removed file");
            }
        }
    }

    fn set_replication(&self, cx: &CallCx, id: FileId, copies: Option<u8>) -> Result<()> {
        if copies.is_some_and(|c| !(1..=REPLICATION_MAX).contains(&c)) {
            return Err(Error::Invalid);
        }
        let mut state = self.lock();
        let mut tx = Tx::new(&self.meta, &mut state);
        let before = tx.dir(id)?;
        if before.replication == copies {
            return Ok(());
        }
        let mut after = before;
        after.replication = copies;
        after.touch_ctime(Timestamp::now());
        tx.put(id.ino, after);
        tx.commit(cx)
    }

    fn put_doc(&self, cx: &CallCx, key: Vec<u8>, version: u64, doc: Vec<u8>) -> Result<()> {
        check_doc(&key, &doc)?;
        let mut state = self.lock();
        let mut tx = Tx::new(&self.meta, &mut state);
        tx.ops.push(MetaOp::PutDoc { key, version, doc });
        tx.commit(cx)
    }

    fn link(
        &self,
        cx: &CallCx,
        cred: &Cred,
        file: FileId,
        dir_id: FileId,
        name: &[u8],
    ) -> Result<(Attr, Wcc)> {
        validate_name(name)?;
        let mut state = self.lock();
        let mut tx = Tx::new(&self.meta, &mut state);
        let dir = tx.dir(dir_id)?;
        let mut inode = tx.checked(file)?;
        if inode.is_dir() {
            return Err(Error::Perm);
        }
        require(may(cred, &dir, MAY_WRITE | MAY_EXEC))?;
        if self.meta.entry(dir_id.ino, name)?.is_some() {
            return Err(Error::Exists);
        }
        if inode.nlink >= LINK_MAX {
            return Err(Error::TooManyLinks);
        }
        let now = Timestamp::now();
        inode.nlink += 1;
        inode.touch_ctime(now);
        let mut dir_after = dir.clone();
        dir_after.touch_mtime(now);
        tx.add_entry(dir_id.ino, &mut dir_after, name, file.ino);
        tx.put(dir_id.ino, dir_after.clone());
        tx.put(file.ino, inode.clone());
        tx.commit(cx)?;
        Ok((inode.attr(file.ino), wcc(&dir, &dir_after, dir_id.ino)))
    }

    fn readdir(
        &self,
        cred: &Cred,
        dir_id: FileId,
        cookie: u64,
        count_max: usize,
        with_attrs: bool,
    ) -> Result<DirPage> {
        let mut state = self.lock();
        let mut tx = Tx::new(&self.meta, &mut state);
        let dir = tx.dir(dir_id)?;
        require(may(cred, &dir, MAY_READ))?;
        if cookie > dir.last_seq {
            return Err(Error::BadCookie);
        }
        let mut stored = self
            .meta
            .entries(dir_id.ino, cookie, count_max.saturating_add(1))?;
        let eof = stored.len() <= count_max;
        stored.truncate(count_max);
        let mut entries = Vec::with_capacity(stored.len());
        for e in stored {
            let child = tx.child(e.child)?;
            let attr = child.attr(e.child);
            entries.push(DirEntry {
                cookie: e.seq,
                name: e.name,
                id: attr.id,
                attr: with_attrs.then_some(attr),
            });
        }
        Ok(DirPage {
            entries,
            eof,
            dir_attr: dir.attr(dir_id.ino),
        })
    }

    fn fsstat(&self, id: FileId) -> Result<FsStat> {
        self.getattr(id)?;
        self.data.space(self.meta.inode_count()?)
    }

    /// Persists every dirty record after syncing its data; used when the store is dropped.
    fn flush_all(&self) -> Result<()> {
        let mut state = self.lock();
        let dirty: Vec<(u64, Inode)> = state
            .cache
            .iter()
            .filter(|(_, c)| c.dirty)
            .map(|(&ino, c)| (ino, c.inode.clone()))
            .collect();
        if dirty.is_empty() {
            return Ok(());
        }
        let mut tx = Tx::new(&self.meta, &mut state);
        for (ino, inode) in dirty {
            self.sync_data(ino)?;
            tx.put(ino, inode);
        }
        tx.commit(&CallCx::default())?;
        drop(state);
        // Applied batches are durable only once committed (see `MetaStore::apply`).
        wait(self.meta.commit(false))
    }
}

impl<M: MetaStore, D: DataStore> Drop for Engine<M, D> {
    fn drop(&mut self) {
        // Only the last handle flushes; tasks still running hold their own handles.
        if Arc::strong_count(&self.inner) == 1 {
            if let Err(e) = self.inner.flush_all() {
                tracing::error!(error = %e, "could not flush unstable writes at shutdown");
            }
        }
    }
}

/// Each method takes owned copies of its arguments so the work can move to the blocking pool.
impl<M: MetaStore, D: DataStore> Store for Engine<M, D> {
    fn root(&self) -> FileId {
        self.inner.root
    }

    fn write_verifier(&self) -> [u8; 8] {
        self.inner.verifier()
    }

    async fn getattr(&self, id: FileId) -> Result<Attr> {
        // A cached inode answers on the async runtime: no blocking-pool hop for the most
        // frequent call of all.
        if let Some(attr) = self.inner.getattr_cached(id) {
            return attr;
        }
        self.run(move |s, _| s.getattr(id)).await
    }

    async fn setattr(
        &self,
        cred: &Cred,
        id: FileId,
        attr: SetAttr,
        guard: Option<Timestamp>,
    ) -> Result<Wcc> {
        let cred = cred.clone();
        if attr.size.is_some() {
            self.run(move |s, cx| s.retrying(|| s.setattr(cx, &cred, id, &attr, guard)))
                .await
        } else {
            self.run_mut(move |s, cx| s.setattr(cx, &cred, id, &attr, guard))
                .await
        }
    }

    async fn lookup(&self, cred: &Cred, dir: FileId, name: &[u8]) -> Result<Attr> {
        if let Some(attr) = self.inner.lookup_cached(cred, dir, name) {
            return attr;
        }
        let (cred, name) = (cred.clone(), name.to_vec());
        self.run(move |s, _| s.lookup(&cred, dir, &name)).await
    }

    async fn parent(&self, cred: &Cred, dir: FileId) -> Result<Attr> {
        let cred = cred.clone();
        self.run(move |s, _| s.parent(&cred, dir)).await
    }

    async fn access(
        &self,
        cred: &Cred,
        id: FileId,
        mask: AccessMask,
    ) -> Result<(AccessMask, Attr)> {
        if let Some(result) = self.inner.access_cached(cred, id, mask) {
            return result;
        }
        let cred = cred.clone();
        self.run(move |s, _| s.access(&cred, id, mask)).await
    }

    async fn readlink(&self, _cred: &Cred, id: FileId) -> Result<(Vec<u8>, Attr)> {
        self.run(move |s, _| s.readlink(id)).await
    }

    async fn read(&self, cred: &Cred, id: FileId, offset: u64, count: u32) -> Result<ReadResult> {
        if D::ASYNC_READ {
            // No stripe lock: a READ racing a truncation may see the file before or after it,
            // chunk by chunk, which is what a concurrent READ may see anyway.
            let inode = match self.inner.io_target_cached(cred, id, MAY_READ) {
                Some(checked) => checked?,
                None => {
                    let cred = cred.clone();
                    self.run(move |s, _| s.io_target(&cred, id, MAY_READ))
                        .await?
                }
            };
            let available = inode.size.saturating_sub(offset);
            let len = available.min(u64::from(count)).min(READ_BYTES_MAX);
            let data = self
                .inner
                .data
                .read_async(id.ino, offset, len as usize)
                .await?;
            return Ok(ReadResult {
                data,
                eof: offset.saturating_add(len) >= inode.size,
                attr: inode.attr(id.ino),
            });
        }
        let cred = cred.clone();
        self.run(move |s, _| s.read(&cred, id, offset, count)).await
    }

    async fn write(
        &self,
        cred: &Cred,
        id: FileId,
        offset: u64,
        data: Bytes,
        stability: Stability,
    ) -> Result<WriteResult> {
        let end = offset.checked_add(data.len() as u64);
        let async_ok = D::ASYNC_WRITE
            && stability == Stability::Unstable
            && end.is_some_and(|end| end <= FILE_SIZE_MAX)
            && self.inner.async_write_allowed(cred, id).is_some();
        if let (true, Some(end), Ok(count)) = (async_ok, end, u32::try_from(data.len())) {
            if let Some(staged) = self.inner.data.write_staged(id.ino, offset, &data).await? {
                let wcc = match self.inner.install_write(cred, id, end, staged, false) {
                    Ok(wcc) => wcc?,
                    Err(staged) => {
                        let cred = cred.clone();
                        self.run(
                            move |s, _| match s.install_write(&cred, id, end, staged, true) {
                                Ok(wcc) => wcc,
                                Err(_) => {
                                    Err(Error::Io("stripe lock refused a blocking wait".into()))
                                }
                            },
                        )
                        .await?
                    }
                };
                return Ok(WriteResult {
                    count,
                    committed: Stability::Unstable,
                    wcc,
                });
            }
        }
        let cred = cred.clone();
        self.run(move |s, cx| s.retrying(|| s.write(cx, &cred, id, offset, &data, stability)))
            .await
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
        let (cred, name) = (cred.clone(), name.to_vec());
        self.run_mut(move |s, cx| s.create(cx, &cred, dir, &name, kind, &attr, mode))
            .await
    }

    async fn remove(&self, cred: &Cred, dir: FileId, name: &[u8]) -> Result<Wcc> {
        let (cred, name) = (cred.clone(), name.to_vec());
        self.run_mut(move |s, cx| s.remove(cx, &cred, dir, &name, false))
            .await
    }

    async fn rmdir(&self, cred: &Cred, dir: FileId, name: &[u8]) -> Result<Wcc> {
        let (cred, name) = (cred.clone(), name.to_vec());
        self.run_mut(move |s, cx| s.remove(cx, &cred, dir, &name, true))
            .await
    }

    async fn rename(
        &self,
        cred: &Cred,
        from_dir: FileId,
        from_name: &[u8],
        to_dir: FileId,
        to_name: &[u8],
    ) -> Result<(Wcc, Wcc)> {
        let cred = cred.clone();
        let (from_name, to_name) = (from_name.to_vec(), to_name.to_vec());
        self.run_mut(move |s, cx| s.rename(cx, &cred, from_dir, &from_name, to_dir, &to_name))
            .await
    }

    async fn link(
        &self,
        cred: &Cred,
        file: FileId,
        dir: FileId,
        name: &[u8],
    ) -> Result<(Attr, Wcc)> {
        let (cred, name) = (cred.clone(), name.to_vec());
        self.run_mut(move |s, cx| s.link(cx, &cred, file, dir, &name))
            .await
    }

    async fn readdir(
        &self,
        cred: &Cred,
        dir: FileId,
        cookie: u64,
        count_max: usize,
        with_attrs: bool,
    ) -> Result<DirPage> {
        let cred = cred.clone();
        self.run(move |s, _| s.readdir(&cred, dir, cookie, count_max, with_attrs))
            .await
    }

    async fn commit(&self, id: FileId, _offset: u64, _count: u64) -> Result<Attr> {
        self.run(move |s, cx| s.retrying(|| s.commit(cx, id))).await
    }

    async fn residency(&self, id: FileId) -> Result<crate::Residency> {
        self.run(move |inner, _| {
            let inode = inner.record(id)?;
            if inode.file_type != FileType::Regular {
                return Err(Error::Invalid);
            }
            let mut residency = match inner.data_here(&inode) {
                Ok(()) => inner.data.residency(id.ino, inode.size)?,
                // Placed on other nodes: the metadata says where, this node holds nothing.
                Err(_) => crate::Residency::default(),
            };
            residency.placement = inode.layout;
            Ok(residency)
        })
        .await
    }

    async fn fsstat(&self, id: FileId) -> Result<FsStat> {
        self.run(move |s, _| s.fsstat(id)).await
    }

    async fn set_replication(&self, dir: FileId, copies: Option<u8>) -> Result<()> {
        self.run_mut(move |s, cx| s.set_replication(cx, dir, copies))
            .await
    }

    async fn replication(&self, id: FileId) -> Result<Option<u8>> {
        self.run(move |s, _| Ok(s.record(id)?.replication)).await
    }

    async fn put_doc(&self, key: &[u8], version: u64, doc: Vec<u8>) -> Result<()> {
        let key = key.to_vec();
        self.run_mut(move |s, cx| s.put_doc(cx, key, version, doc))
            .await
    }

    async fn doc(&self, key: &[u8]) -> Result<Option<(u64, Vec<u8>)>> {
        let key = key.to_vec();
        self.run(move |s, _| s.meta.doc(&key)).await
    }

    fn stats(&self) -> Vec<(&'static str, u64)> {
        self.inner.meta.stats()
    }

    fn data_stats(&self) -> Vec<(&'static str, u64)> {
        self.inner.data.stats()
    }
}
