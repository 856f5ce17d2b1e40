//! [`LocalStore`]: the engine over a directory on a local file system.
//!
//! Layout of the store directory:
//! * `meta.redb`: inode records, directory entries and counters in one redb database. Every
//!   batch is a write transaction; the store call that made it returns only after a durable
//!   (fsync'd) commit that covers it, shared by concurrent calls ([`LocalMeta`]).
//! * `data/ab/<16 hex digits of the inode number>`: the bytes of one regular file, in one of 256
//!   shard directories (`ab` = the low byte of the inode number) so no directory grows huge.
//!   Data files are created on first write. The first sync of a new data file also syncs its
//!   shard directory, so the file's name is durable with its bytes.
//!
//! A data file may be shorter than the file's size (holes read as zeros) and, after a crash,
//! longer (the engine trims it before reuse). A data file whose inode is gone is only a leak.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::engine::{
    check_batch, Batch, Counter, DataStore, Engine, Inode, MetaOp, MetaStore, RequestId,
    StoredEntry, REQUEST_KEEP_SECS,
};
use crate::{Error, FsStat, Result};

/// A durable [`Store`](crate::Store) in a local directory.
pub type LocalStore = Engine<LocalMeta, LocalData>;

const INODES: TableDefinition<u64, &[u8]> = TableDefinition::new("inodes");
/// (dir, name) -> (child, seq)
const NAMES: TableDefinition<(u64, &[u8]), (u64, u64)> = TableDefinition::new("names");
/// (dir, seq) -> child (8 bytes little-endian) followed by the name: readdir in cookie order.
const SEQS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("seqs");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
/// State a replicated log keeps with the metadata it applied (see [`LocalMeta::apply_logged`]).
const LOG_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("log_state");
/// Calls that ran (`MetaOp::NoteRequest`): (secs, node, seq), oldest first.
const REQUESTS: TableDefinition<(u64, u64, u64), ()> = TableDefinition::new("requests");
/// The calls of `REQUESTS` whose ids came from the client's call
/// ([`RequestId::FROM_CLIENT`]), looked up without their `secs`: (node, seq) -> secs.
const ORIGINS: TableDefinition<(u64, u64), u64> = TableDefinition::new("request_origins");
/// Documents (`MetaOp::PutDoc`): key -> version (8 bytes, little endian) then the document.
const DOCS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("docs");

/// Open data files kept around; beyond this an arbitrary one is closed.
const OPEN_FILES_MAX: usize = 1024;
/// redb's page cache; metadata records are small and the engine caches inodes itself.
const META_CACHE_BYTES: usize = 64 << 20;

impl LocalStore {
    /// Opens the store in `dir`, creating it if needed. Fails with a message naming the problem
    /// if the directory cannot be used or holds a store of another format version.
    pub fn open(dir: &Path) -> Result<LocalStore> {
        let data = LocalData::open_in(dir)?;
        let meta_path = dir.join("meta.redb");
        let meta_is_new = !meta_path.exists();
        let meta = LocalMeta::open(&meta_path)?;
        if meta_is_new {
            sync_dir(dir)?;
        }
        let store = Engine::with_stores(meta, data)?;
        tracing::info!(
            dir = %dir.display(),
            inodes = store.inode_count()?,
            "opened local store"
        );
        Ok(store)
    }
}

/// Maps an OS error to the store's error, keeping the OS message for the operator.
fn io_error(what: &str, e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => Error::NoSpace,
        Some(libc::EFBIG) => Error::FileTooBig,
        _ => Error::Io(format!("{what}: {e}")),
    }
}

/// statvfs field widths differ between platforms (u32 on some 32-bit targets).
fn widen<T: Into<u64>>(value: T) -> u64 {
    value.into()
}

fn db_error(e: impl Into<redb::Error>) -> Error {
    Error::Io(format!("metadata store: {}", e.into()))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(&format!("sync directory {}", dir.display()), e))
}

/// Creates `dir` if missing and makes its name durable in its parent.
fn create_dir_durably(dir: &Path) -> Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
            _ => Ok(()),
        },
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_error(&format!("create directory {}", dir.display()), e)),
    }
}

/// The redb half of the local store.
///
/// Batches apply without an fsync (`Durability::None`); [`MetaStore::commit`] commits an empty
/// transaction with `Durability::Immediate`, which makes every earlier batch durable at once
/// (redb persists non-durable commits with the next durable one). Callers arriving while a
/// flush runs share the next one.
pub struct LocalMeta {
    db: Database,
    group: crate::group::GroupCommit,
    /// Log applies (`apply_logged_all`) committed without an fsync since the last durable one.
    undurable: std::sync::atomic::AtomicU32,
}

/// A log apply is committed durably once in this many. redb frees the pages a transaction
/// replaced only at a durable commit: a state machine applied with `Durability::None` alone
/// grew `meta.redb` by about 67 KB per create (270 MB after 4000), until the next snapshot.
/// Once in 64 bounds that to a few MB, for one fsync per 64 entries.
const LOGGED_DURABLE_EVERY: u32 = 64;

impl LocalMeta {
    pub fn open(path: &Path) -> Result<LocalMeta> {
        let db = Database::builder()
            .set_cache_size(META_CACHE_BYTES)
            .create(path)
            .map_err(|e| Error::Io(format!("open metadata store {}: {e}", path.display())))?;
        Self::with_db(db)
    }

    /// On storage other than a file: the simulation's disk, which can lose power.
    pub fn open_on(storage: impl redb::StorageBackend) -> Result<LocalMeta> {
        let db = Database::builder()
            .set_cache_size(META_CACHE_BYTES)
            .create_with_backend(storage)
            .map_err(|e| Error::Io(format!("open metadata store: {e}")))?;
        Self::with_db(db)
    }

    fn with_db(db: Database) -> Result<LocalMeta> {
        // Create the tables once, so read transactions never meet a missing table.
        let tx = db.begin_write().map_err(db_error)?;
        tx.open_table(INODES).map_err(db_error)?;
        tx.open_table(NAMES).map_err(db_error)?;
        tx.open_table(SEQS).map_err(db_error)?;
        tx.open_table(COUNTERS).map_err(db_error)?;
        tx.open_table(LOG_STATE).map_err(db_error)?;
        tx.open_table(REQUESTS).map_err(db_error)?;
        tx.open_table(ORIGINS).map_err(db_error)?;
        tx.open_table(DOCS).map_err(db_error)?;
        tx.commit().map_err(db_error)?;
        Ok(LocalMeta {
            db,
            group: crate::group::GroupCommit::default(),
            undurable: std::sync::atomic::AtomicU32::new(0),
        })
    }
}

impl LocalMeta {
    /// An empty transaction with `Durability::Immediate`: makes every earlier batch durable.
    fn durable_commit(&self) -> Result<()> {
        let mut tx = self.db.begin_write().map_err(db_error)?;
        tx.set_durability(Durability::Immediate);
        tx.commit().map_err(db_error)
    }
}

fn counter_key(counter: Counter) -> &'static str {
    match counter {
        Counter::FormatVersion => "format_version",
        Counter::NextIno => "next_ino",
        Counter::WriterEpoch => "writer_epoch",
    }
}

fn seq_value(child: u64, name: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(8 + name.len());
    value.extend_from_slice(&child.to_le_bytes());
    value.extend_from_slice(name);
    value
}

impl MetaStore for LocalMeta {
    const BLOCKING: bool = true;

    fn inode(&self, ino: u64) -> Result<Option<Inode>> {
        let tx = self.db.begin_read().map_err(db_error)?;
        let table = tx.open_table(INODES).map_err(db_error)?;
        match table.get(ino).map_err(db_error)? {
            Some(bytes) => Inode::decode(bytes.value()).map(Some),
            None => Ok(None),
        }
    }

    fn entry(&self, dir: u64, name: &[u8]) -> Result<Option<(u64, u64)>> {
        let tx = self.db.begin_read().map_err(db_error)?;
        let table = tx.open_table(NAMES).map_err(db_error)?;
        Ok(table.get((dir, name)).map_err(db_error)?.map(|v| v.value()))
    }

    fn entries(&self, dir: u64, after_seq: u64, limit: usize) -> Result<Vec<StoredEntry>> {
        let Some(start) = after_seq.checked_add(1) else {
            return Ok(Vec::new());
        };
        let tx = self.db.begin_read().map_err(db_error)?;
        let table = tx.open_table(SEQS).map_err(db_error)?;
        let mut out = Vec::new();
        for item in table
            .range((dir, start)..=(dir, u64::MAX))
            .map_err(db_error)?
            .take(limit)
        {
            let (key, value) = item.map_err(db_error)?;
            let value = value.value();
            let (child, name) = value
                .split_first_chunk::<8>()
                .ok_or_else(|| Error::Io("corrupt directory entry in the metadata store".into()))?;
            out.push(StoredEntry {
                seq: key.value().1,
                name: name.to_vec(),
                child: u64::from_le_bytes(*child),
            });
        }
        Ok(out)
    }

    fn counter(&self, counter: Counter) -> Result<Option<u64>> {
        let tx = self.db.begin_read().map_err(db_error)?;
        let table = tx.open_table(COUNTERS).map_err(db_error)?;
        let value = table.get(counter_key(counter)).map_err(db_error)?;
        Ok(value.map(|v| v.value()))
    }

    fn inode_count(&self) -> Result<u64> {
        let tx = self.db.begin_read().map_err(db_error)?;
        let table = tx.open_table(INODES).map_err(db_error)?;
        table.len().map_err(db_error)
    }

    fn doc(&self, key: &[u8]) -> Result<Option<(u64, Vec<u8>)>> {
        let tx = self.db.begin_read().map_err(db_error)?;
        let table = tx.open_table(DOCS).map_err(db_error)?;
        let value = table.get(key).map_err(db_error)?;
        Ok(value.and_then(|v| split_doc(v.value()).map(|(version, doc)| (version, doc.to_vec()))))
    }

    /// Flushes inside the call (the engine calls it on the blocking pool): one redb commit
    /// with fsync serves every caller that arrived before it began.
    fn commit(
        &self,
        announced: bool,
    ) -> impl std::future::Future<Output = Result<()>> + Send + 'static + use<> {
        let flush = || self.durable_commit();
        std::future::ready(if announced {
            self.group.sync_announced(flush)
        } else {
            self.group.sync(flush)
        })
    }

    fn announce(&self) {
        self.group.announce();
    }

    fn withdraw(&self) {
        self.group.withdraw();
    }

    fn apply(&self, batch: &Batch<'_>) -> Result<()> {
        let mut tx = self.db.begin_write().map_err(db_error)?;
        tx.set_durability(Durability::None);
        apply_in(&tx, batch)?;
        // Dropping an uncommitted transaction aborts it, so an error above applies nothing.
        tx.commit().map_err(db_error)
    }
}

/// Checks `batch` and writes its ops in `tx`; nothing is written if the check fails.
fn apply_in(tx: &redb::WriteTransaction, batch: &Batch<'_>) -> Result<()> {
    let mut inodes = tx.open_table(INODES).map_err(db_error)?;
    let mut names = tx.open_table(NAMES).map_err(db_error)?;
    let mut seqs = tx.open_table(SEQS).map_err(db_error)?;
    let mut counters = tx.open_table(COUNTERS).map_err(db_error)?;
    // Checked inside the write transaction, so nothing can change in between.
    let raised = check_batch(
        batch,
        |c| {
            let v = counters.get(counter_key(c)).map_err(db_error)?;
            Ok(v.map(|v| v.value()))
        },
        |dir, name| {
            let v = names.get((dir, name)).map_err(db_error)?;
            Ok(v.map(|v| v.value().0))
        },
        |ino| Ok(inodes.get(ino).map_err(db_error)?.is_some()),
    )?;
    if let Some(epoch) = raised {
        counters
            .insert(counter_key(Counter::WriterEpoch), epoch)
            .map_err(db_error)?;
    }
    for op in batch.ops {
        match op {
            MetaOp::PutInode(ino, inode) => {
                inodes
                    .insert(*ino, inode.encode().as_slice())
                    .map_err(db_error)?;
            }
            MetaOp::DeleteInode(ino) => {
                inodes.remove(*ino).map_err(db_error)?;
            }
            MetaOp::PutEntry {
                dir,
                name,
                child,
                seq,
            } => {
                names
                    .insert((*dir, name.as_slice()), (*child, *seq))
                    .map_err(db_error)?;
                let value = seq_value(*child, name);
                seqs.insert((*dir, *seq), value.as_slice())
                    .map_err(db_error)?;
            }
            MetaOp::DeleteEntry { dir, name, seq } => {
                names.remove((*dir, name.as_slice())).map_err(db_error)?;
                seqs.remove((*dir, *seq)).map_err(db_error)?;
            }
            MetaOp::SetCounter(counter, value) => {
                counters
                    .insert(counter_key(*counter), *value)
                    .map_err(db_error)?;
            }
            MetaOp::PutDoc { key, version, doc } => {
                let mut docs = tx.open_table(DOCS).map_err(db_error)?;
                let stored = docs
                    .get(key.as_slice())
                    .map_err(db_error)?
                    .and_then(|v| split_doc(v.value()).map(|d| d.0));
                if stored.is_none_or(|v| v < *version) {
                    let mut value = Vec::with_capacity(8 + doc.len());
                    value.extend_from_slice(&version.to_le_bytes());
                    value.extend_from_slice(doc);
                    docs.insert(key.as_slice(), value.as_slice())
                        .map_err(db_error)?;
                }
            }
            MetaOp::NoteRequest(id) => {
                let mut requests = tx.open_table(REQUESTS).map_err(db_error)?;
                let mut origins = tx.open_table(ORIGINS).map_err(db_error)?;
                note_request(&mut requests, &mut origins, id)?;
                let before = id.secs.saturating_sub(REQUEST_KEEP_SECS);
                if before > 0 {
                    let mut expired = Vec::new();
                    for item in requests.range(..(before, 0, 0)).map_err(db_error)? {
                        let (secs, node, seq) = item.map_err(db_error)?.0.value();
                        if node & RequestId::FROM_CLIENT != 0 {
                            expired.push(((node, seq), secs));
                        }
                    }
                    for (key, secs) in expired {
                        // Unless a later record of the same call replaced it.
                        let current = origins.get(key).map_err(db_error)?.map(|v| v.value());
                        if current == Some(secs) {
                            origins.remove(key).map_err(db_error)?;
                        }
                    }
                    requests
                        .retain_in(..(before, 0, 0), |_, _| false)
                        .map_err(db_error)?;
                }
            }
        }
    }
    Ok(())
}

/// Records that the call `id` ran (both tables, see `ORIGINS`).
fn note_request(
    requests: &mut redb::Table<(u64, u64, u64), ()>,
    origins: &mut redb::Table<(u64, u64), u64>,
    id: &RequestId,
) -> Result<()> {
    requests
        .insert((id.secs, id.node, id.seq), ())
        .map_err(db_error)?;
    if id.from_client() {
        // Two records of one call (tries stamped by two clocks) keep the later stamp, in
        // whatever order they are applied (a snapshot's import goes by time).
        let before = origins
            .get((id.node, id.seq))
            .map_err(db_error)?
            .map(|v| v.value());
        let secs = before.map_or(id.secs, |b| b.max(id.secs));
        origins.insert((id.node, id.seq), secs).map_err(db_error)?;
    }
    Ok(())
}

/// A stored document's version and body; `None` for a value too short to hold a version.
fn split_doc(value: &[u8]) -> Option<(u64, &[u8])> {
    let (version, doc) = value.split_first_chunk::<8>()?;
    Some((u64::from_le_bytes(*version), doc))
}

/// For a replicated log that uses this store as its state machine: batches applied together
/// with the log's own state (which entry was applied last), in one transaction, so a crash
/// leaves the two consistent whatever was lost.
impl LocalMeta {
    /// Applies `batch` (if any) and records `state` under `key`, atomically. The outer result
    /// is the store's (an I/O error applies nothing); the inner one says whether the batch was
    /// refused (`Fenced`, `GuardMismatch`), in which case only `state` is recorded: a refused
    /// entry is still applied, as a no-op, on every replica alike.
    pub fn apply_logged(
        &self,
        batch: Option<&Batch<'_>>,
        key: &str,
        state: &[u8],
    ) -> Result<Result<()>> {
        let one = batch.copied();
        let mut outcomes = self.apply_logged_all(one.as_slice(), key, state)?;
        Ok(outcomes.pop().unwrap_or(Ok(())))
    }

    /// [`LocalMeta::apply_logged`] for several batches in order, in one transaction: each is
    /// checked against the state the ones before it left. `state` is recorded once, after the
    /// last. One outcome per batch.
    pub fn apply_logged_all(
        &self,
        batches: &[Batch<'_>],
        key: &str,
        state: &[u8],
    ) -> Result<Vec<Result<()>>> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut tx = self.db.begin_write().map_err(db_error)?;
        // Not durable: the log replays what a crash loses. Durable once in a while, so redb
        // frees the pages replaced since (see `LOGGED_DURABLE_EVERY`).
        let durable = self.undurable.fetch_add(1, Relaxed) + 1 >= LOGGED_DURABLE_EVERY;
        tx.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        });
        let mut outcomes = Vec::with_capacity(batches.len());
        for batch in batches {
            match apply_in(&tx, batch) {
                Ok(()) => outcomes.push(Ok(())),
                // Refused: a no-op, reported; the transaction goes on.
                Err(e @ (Error::Fenced | Error::GuardMismatch)) => outcomes.push(Err(e)),
                // The store failed: the transaction is dropped, so nothing is applied.
                Err(e) => return Err(e),
            }
        }
        tx.open_table(LOG_STATE)
            .map_err(db_error)?
            .insert(key, state)
            .map_err(db_error)?;
        tx.commit().map_err(db_error)?;
        if durable {
            self.undurable.store(0, Relaxed);
        }
        Ok(outcomes)
    }

    /// Whether a batch of the call `id` was applied (and its record not yet expired).
    /// An id taken from the client's call is found whatever its `secs`: each node that got a
    /// try of the call stamped it with its own clock.
    pub fn request_ran(&self, id: RequestId) -> Result<bool> {
        let tx = self.db.begin_read().map_err(db_error)?;
        if id.from_client() {
            let table = tx.open_table(ORIGINS).map_err(db_error)?;
            return Ok(table.get((id.node, id.seq)).map_err(db_error)?.is_some());
        }
        let table = tx.open_table(REQUESTS).map_err(db_error)?;
        Ok(table
            .get((id.secs, id.node, id.seq))
            .map_err(db_error)?
            .is_some())
    }

    /// What [`LocalMeta::apply_logged`] last recorded under `key`.
    pub fn log_state(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let tx = self.db.begin_read().map_err(db_error)?;
        let table = tx.open_table(LOG_STATE).map_err(db_error)?;
        Ok(table
            .get(key)
            .map_err(db_error)?
            .map(|v| v.value().to_vec()))
    }

    /// Makes everything applied so far durable (one fsync), outside any group commit.
    pub fn make_durable(&self) -> Result<()> {
        self.durable_commit()
    }

    /// Every inode, entry and counter, as the ops of one batch (a snapshot of the metadata),
    /// and what [`LocalMeta::apply_logged`] recorded under `key`, read at one point in time.
    pub fn export(&self, key: &str) -> Result<(crate::engine::wire::OwnedBatch, Option<Vec<u8>>)> {
        let tx = self.db.begin_read().map_err(db_error)?;
        let state = tx
            .open_table(LOG_STATE)
            .map_err(db_error)?
            .get(key)
            .map_err(db_error)?
            .map(|v| v.value().to_vec());
        let mut ops = Vec::new();
        let counters = tx.open_table(COUNTERS).map_err(db_error)?;
        for c in [
            Counter::FormatVersion,
            Counter::NextIno,
            Counter::WriterEpoch,
        ] {
            if let Some(v) = counters.get(counter_key(c)).map_err(db_error)? {
                ops.push(MetaOp::SetCounter(c, v.value()));
            }
        }
        let inodes = tx.open_table(INODES).map_err(db_error)?;
        for item in inodes.iter().map_err(db_error)? {
            let (ino, record) = item.map_err(db_error)?;
            ops.push(MetaOp::PutInode(
                ino.value(),
                Inode::decode(record.value())?,
            ));
        }
        let names = tx.open_table(NAMES).map_err(db_error)?;
        for item in names.iter().map_err(db_error)? {
            let (key, value) = item.map_err(db_error)?;
            let (dir, name) = key.value();
            let (child, seq) = value.value();
            ops.push(MetaOp::PutEntry {
                dir,
                name: name.to_vec(),
                child,
                seq,
            });
        }
        let requests = tx.open_table(REQUESTS).map_err(db_error)?;
        for item in requests.iter().map_err(db_error)? {
            let (secs, node, seq) = item.map_err(db_error)?.0.value();
            ops.push(MetaOp::NoteRequest(RequestId { secs, node, seq }));
        }
        let docs = tx.open_table(DOCS).map_err(db_error)?;
        for item in docs.iter().map_err(db_error)? {
            let (key, value) = item.map_err(db_error)?;
            if let Some((version, doc)) = split_doc(value.value()) {
                ops.push(MetaOp::PutDoc {
                    key: key.value().to_vec(),
                    version,
                    doc: doc.to_vec(),
                });
            }
        }
        let all = crate::engine::wire::OwnedBatch {
            epoch: 0,
            preconditions: Vec::new(),
            ops,
        };
        Ok((all, state))
    }

    /// Replaces everything with `snapshot` (from [`LocalMeta::export`]) and records `state`
    /// under `key`, atomically and durably.
    pub fn import(
        &self,
        snapshot: &crate::engine::wire::OwnedBatch,
        key: &str,
        state: &[u8],
    ) -> Result<()> {
        let mut tx = self.db.begin_write().map_err(db_error)?;
        tx.set_durability(Durability::Immediate);
        tx.delete_table(INODES).map_err(db_error)?;
        tx.delete_table(NAMES).map_err(db_error)?;
        tx.delete_table(SEQS).map_err(db_error)?;
        tx.delete_table(COUNTERS).map_err(db_error)?;
        tx.delete_table(REQUESTS).map_err(db_error)?;
        tx.delete_table(ORIGINS).map_err(db_error)?;
        tx.delete_table(DOCS).map_err(db_error)?;
        // Made again even when the snapshot has none: readers never meet a missing table.
        tx.open_table(REQUESTS).map_err(db_error)?;
        tx.open_table(ORIGINS).map_err(db_error)?;
        tx.open_table(DOCS).map_err(db_error)?;
        let all = crate::engine::Batch {
            epoch: u64::MAX,
            preconditions: &[],
            ops: &snapshot.ops,
        };
        apply_in(&tx, &all)?;
        // Applying the request records one by one pruned against each in turn: put back
        // what that dropped, so the importer holds exactly the exporter's records.
        {
            let mut requests = tx.open_table(REQUESTS).map_err(db_error)?;
            let mut origins = tx.open_table(ORIGINS).map_err(db_error)?;
            for op in &snapshot.ops {
                if let MetaOp::NoteRequest(id) = op {
                    note_request(&mut requests, &mut origins, id)?;
                }
            }
        }
        // The epoch above only passes the check; the snapshot's own counter is the truth.
        let epoch = snapshot.ops.iter().find_map(|op| match op {
            MetaOp::SetCounter(Counter::WriterEpoch, v) => Some(*v),
            _ => None,
        });
        {
            let mut counters = tx.open_table(COUNTERS).map_err(db_error)?;
            match epoch {
                Some(v) => counters.insert(counter_key(Counter::WriterEpoch), v),
                None => counters.remove(counter_key(Counter::WriterEpoch)),
            }
            .map_err(db_error)?;
        }
        tx.open_table(LOG_STATE)
            .map_err(db_error)?
            .insert(key, state)
            .map_err(db_error)?;
        tx.commit().map_err(db_error)
    }
}

/// The file half of the local store.
pub struct LocalData {
    dir: PathBuf,
    handles: Mutex<HashMap<u64, Arc<File>>>,
    /// Data files created since their shard directory was last synced.
    new_files: Mutex<HashSet<u64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The mount source (device) of the file system holding `path`, from /proc/self/mountinfo.
pub(crate) fn device_of(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path).ok()?.dev();
    // Linux's dev_t encoding of major and minor numbers.
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    let want = format!("{major}:{minor}");
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let mut f = l.split(' ');
        (f.nth(2)? == want).then_some(())?;
        let (_, after) = l.split_once(" - ")?;
        after.split(' ').nth(1).map(str::to_string)
    })
}

/// The data-holding ranges of an open file, by SEEK_DATA / SEEK_HOLE.
fn data_extents(file: &File, size: u64) -> Result<Vec<(u64, u64)>> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let mut out = Vec::new();
    let mut pos: i64 = 0;
    let size = size as i64;
    while pos < size {
        // SAFETY: `fd` belongs to `file`, which outlives these calls; lseek only moves the
        // file offset and takes no pointers.
        let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if data < 0 || data >= size {
            break; // ENXIO: no data past `pos`.
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        let end = if hole < 0 { size } else { hole.min(size) };
        out.push((data as u64, (end - data) as u64));
        pos = end;
    }
    Ok(out)
}

impl LocalData {
    /// Opens (or creates) the file data of the local store in `dir` (under `data/`), for an
    /// engine over any metadata store.
    pub fn open_in(dir: &Path) -> Result<LocalData> {
        if dir.join("extents.redb").exists() {
            return Err(Error::Io(format!(
                "{} holds a store of kind \"nvme\"; open it with store = \"nvme\"",
                dir.display()
            )));
        }
        create_dir_durably(dir)?;
        LocalData::open(&dir.join("data"))
    }

    fn open(dir: &Path) -> Result<LocalData> {
        create_dir_durably(dir)?;
        let mut created = false;
        for shard in 0..=255u8 {
            let path = dir.join(format!("{shard:02x}"));
            match std::fs::create_dir(&path) {
                Ok(()) => created = true,
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_error(&format!("create {}", path.display()), e)),
            }
        }
        if created {
            sync_dir(dir)?;
        }
        Ok(LocalData {
            dir: dir.to_path_buf(),
            handles: Mutex::new(HashMap::new()),
            new_files: Mutex::new(HashSet::new()),
        })
    }

    fn shard_dir(&self, ino: u64) -> PathBuf {
        self.dir.join(format!("{:02x}", ino & 0xff))
    }

    fn path(&self, ino: u64) -> PathBuf {
        self.shard_dir(ino).join(format!("{ino:016x}"))
    }

    /// The open data file of `ino`; `None` if it does not exist and `create` is false.
    fn file(&self, ino: u64, create: bool) -> Result<Option<Arc<File>>> {
        if let Some(file) = lock(&self.handles).get(&ino) {
            return Ok(Some(Arc::clone(file)));
        }
        let path = self.path(ino);
        let opened = OpenOptions::new().read(true).write(true).open(&path);
        let file = match opened {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound && !create => return Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)
                    .map_err(|e| io_error(&format!("create {}", path.display()), e))?;
                lock(&self.new_files).insert(ino);
                file
            }
            Err(e) => return Err(io_error(&format!("open {}", path.display()), e)),
        };
        let file = Arc::new(file);
        let mut handles = lock(&self.handles);
        if handles.len() >= OPEN_FILES_MAX {
            if let Some(&victim) = handles.keys().next() {
                handles.remove(&victim);
            }
        }
        handles.insert(ino, Arc::clone(&file));
        Ok(Some(file))
    }
}

impl DataStore for LocalData {
    fn residency(&self, ino: u64, size: u64) -> Result<crate::Residency> {
        let extents = match self.file(ino, false)? {
            Some(file) => data_extents(&file, size)?,
            None => Vec::new(),
        };
        Ok(crate::Residency {
            placement: None,
            store: "local",
            device: device_of(&self.dir),
            data_file: Some(self.path(ino)),
            extents,
            copies: Vec::new(),
        })
    }

    const BLOCKING: bool = true;

    fn read_at(&self, ino: u64, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let Some(file) = self.file(ino, false)? else {
            return Ok(0);
        };
        loop {
            match file.read_at(buf, offset) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error(&format!("read data of inode {ino}"), e)),
            }
        }
    }

    fn write_at(&self, ino: u64, offset: u64, data: &[u8]) -> Result<()> {
        let file = self.file(ino, true)?.ok_or(Error::Stale)?;
        file.write_all_at(data, offset)
            .map_err(|e| io_error(&format!("write data of inode {ino}"), e))
    }

    fn set_len(&self, ino: u64, len: u64) -> Result<()> {
        // A missing file already reads as zeros up to any size.
        let Some(file) = self.file(ino, false)? else {
            return Ok(());
        };
        file.set_len(len)
            .map_err(|e| io_error(&format!("truncate data of inode {ino}"), e))
    }

    fn sync(&self, ino: u64) -> Result<()> {
        let Some(file) = self.file(ino, false)? else {
            return Ok(());
        };
        // Always Io, even for ENOSPC: a failed sync means acknowledged data may be lost.
        file.sync_data()
            .map_err(|e| Error::Io(format!("sync data of inode {ino}: {e}")))?;
        if lock(&self.new_files).contains(&ino) {
            sync_dir(&self.shard_dir(ino))?;
            lock(&self.new_files).remove(&ino);
        }
        Ok(())
    }

    fn remove(&self, ino: u64) -> Result<()> {
        lock(&self.handles).remove(&ino);
        lock(&self.new_files).remove(&ino);
        let path = self.path(ino);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(&format!("remove {}", path.display()), e)),
        }
    }

    fn space(&self, files_used: u64) -> Result<FsStat> {
        let stat = statvfs(&self.dir)?;
        Ok(FsStat {
            total_files: stat.total_files.max(files_used),
            ..stat
        })
    }
}

/// Capacity figures of the file system holding `path`.
pub(crate) fn statvfs(path: &Path) -> Result<FsStat> {
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::Io("data directory path contains a NUL byte".into()))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `path` is a valid NUL-terminated C string that outlives the call, and `st`
    // points to writable memory the size of a `statvfs`, which the call fills on success.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io_error("statvfs", std::io::Error::last_os_error()));
    }
    // SAFETY: statvfs returned 0, so it initialized the structure (and it was zeroed anyway).
    let st = unsafe { st.assume_init() };
    let frsize = widen(st.f_frsize);
    let free_files = widen(st.f_ffree);
    Ok(FsStat {
        total_bytes: widen(st.f_blocks) * frsize,
        free_bytes: widen(st.f_bfree) * frsize,
        avail_bytes: widen(st.f_bavail) * frsize,
        total_files: widen(st.f_files),
        free_files,
        avail_files: widen(st.f_favail).min(free_files),
    })
}
