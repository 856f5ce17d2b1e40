//! The Raft log on local disk: one redb database (`raft-log.redb`) with the entries by index
//! and the vote, the committed id and the purge point.
//!
//! Every write happens in openraft's call order, at once, as a redb commit without fsync, so
//! entries are readable as soon as `append` returns. Durability is a flush thread's job: it
//! takes every append that asked for one since its last flush, makes them durable with one
//! empty `Durability::Immediate` commit (redb then persists every earlier commit), and only
//! then tells openraft, so concurrent appends share one fsync (a group commit) and the async
//! runtime's threads do not wait for the disk. Votes are durable before `save_vote` returns.
//!
//! In a cluster of one an append with no flush outstanding is instead one durable commit on
//! the appending task: one redb commit instead of two, and no round trip through the flush
//! thread. That task (openraft's core) waits for the fsync, holding its runtime thread; the
//! core waits for every append's flush before it goes on in openraft 0.9 anyway. Concurrent
//! proposals still share that fsync, because the proposer groups everything that queued
//! meanwhile into the next entry (`super::propose`). Nodes of a larger cluster keep the flush
//! thread, so a fsync never holds a runtime thread that replication and NFS calls need.

#![allow(
    clippy::result_large_err,
    reason = "openraft's StorageError is what its storage traits return; helpers return it too"
)]

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError,
    Vote,
};
use redb::{Database, Durability, ReadableTable, TableDefinition};

use super::{Proposal, TypeConfig};

const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");

type Error = StorageError<u64>;

fn io(subject: ErrorSubject<u64>, verb: ErrorVerb, e: impl ToString) -> Error {
    StorageError::from_io_error(subject, verb, std::io::Error::other(e.to_string()))
}

fn read_err(e: impl ToString) -> Error {
    io(ErrorSubject::Logs, ErrorVerb::Read, e)
}

fn write_err(e: impl ToString) -> Error {
    io(ErrorSubject::Logs, ErrorVerb::Write, e)
}

/// An entry's bytes: `len:u32 log_id(json) tag:u8 payload`, where the payload of a normal
/// entry is the metadata batch as is (no JSON around file-system data) and a membership is JSON.
pub fn encode_entry(entry: &Entry<TypeConfig>) -> Vec<u8> {
    // Serializing plain data structs into a Vec cannot fail.
    let id = serde_json::to_vec(&entry.log_id).unwrap_or_default();
    let mut out = Vec::with_capacity(8 + id.len() + 64);
    out.extend_from_slice(&(id.len() as u32).to_le_bytes());
    out.extend_from_slice(&id);
    match &entry.payload {
        EntryPayload::Blank => out.push(0),
        EntryPayload::Normal(p) => {
            out.push(1);
            out.extend_from_slice(&p.0);
        }
        EntryPayload::Membership(m) => {
            out.push(2);
            out.extend_from_slice(&serde_json::to_vec(m).unwrap_or_default());
        }
    }
    out
}

pub fn decode_entry(bytes: &[u8]) -> Result<Entry<TypeConfig>, String> {
    let (len, rest) = bytes.split_first_chunk::<4>().ok_or("short entry")?;
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() <= len {
        return Err("entry shorter than its log id".into());
    }
    let (id, rest) = rest.split_at(len);
    let log_id: LogId<u64> = serde_json::from_slice(id).map_err(|e| e.to_string())?;
    let payload = match rest[0] {
        0 if rest.len() == 1 => EntryPayload::Blank,
        1 => EntryPayload::Normal(Proposal(rest[1..].to_vec())),
        2 => {
            EntryPayload::Membership(serde_json::from_slice(&rest[1..]).map_err(|e| e.to_string())?)
        }
        _ => return Err("bad entry payload".into()),
    };
    Ok(Entry { log_id, payload })
}

/// The log store; cloned into the reader openraft asks for.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    /// `None`: every append is one durable commit on the appending task, reported at once
    /// (the deterministic simulation, where a thread would make the schedule depend on the
    /// host), as a cluster of one's appends are when nothing is outstanding.
    flush: Option<std::sync::mpsc::Sender<LogFlushed<TypeConfig>>>,
    /// Appends handed to the flush thread and not yet reported.
    outstanding: Arc<AtomicUsize>,
    /// The voters of the log (kept by `super::watch_leading`); 0 until known. With one voter
    /// an append is made durable inline when nothing is outstanding (see the module's text).
    voters: Arc<AtomicU64>,
}

/// An empty `Durability::Immediate` commit: redb then persists every earlier commit.
fn make_durable(db: &Database) -> Result<(), String> {
    let mut tx = db.begin_write().map_err(|e| e.to_string())?;
    tx.set_durability(Durability::Immediate);
    tx.commit().map_err(|e| e.to_string())
}

/// Makes appends durable, many at a time, and reports each one to openraft.
fn flush_thread(
    db: Arc<Database>,
    jobs: std::sync::mpsc::Receiver<LogFlushed<TypeConfig>>,
    outstanding: Arc<AtomicUsize>,
) {
    while let Ok(first) = jobs.recv() {
        let mut waiting = vec![first];
        waiting.extend(jobs.try_iter());
        tracing::trace!(appends = waiting.len(), "raft log flush");
        let flushed = make_durable(&db);
        let count = waiting.len();
        for callback in waiting {
            callback.log_io_completed(flushed.clone().map_err(std::io::Error::other));
        }
        // After the reports: an inline append must not be reported before an earlier one.
        outstanding.fetch_sub(count, Ordering::AcqRel);
    }
}

impl LogStore {
    /// A file; appends are made durable by the flush thread.
    /// `voters`: the log's voter count, kept current by the caller (0 while unknown).
    pub fn open(path: &Path, voters: Arc<AtomicU64>) -> Result<LogStore, String> {
        let db = Database::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::with_db(db, false, voters)
    }

    /// On the simulation's disk, which can lose power: each append is made durable before
    /// it is reported, on the caller's task (a flush thread would not be deterministic).
    #[doc(hidden)]
    pub fn open_simulated(storage: impl redb::StorageBackend) -> Result<LogStore, String> {
        let db = Database::builder()
            .create_with_backend(storage)
            .map_err(|e| format!("open the log: {e}"))?;
        Self::with_db(db, true, Arc::new(AtomicU64::new(0)))
    }

    /// `inline`: each append is made durable on the appending task; else by the flush thread.
    fn with_db(db: Database, inline: bool, voters: Arc<AtomicU64>) -> Result<LogStore, String> {
        let tx = db.begin_write().map_err(|e| e.to_string())?;
        tx.open_table(ENTRIES).map_err(|e| e.to_string())?;
        tx.open_table(STATE).map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
        let db = Arc::new(db);
        let outstanding = Arc::new(AtomicUsize::new(0));
        if inline {
            return Ok(LogStore {
                db,
                flush: None,
                outstanding,
                voters,
            });
        }
        let (flush, jobs) = std::sync::mpsc::channel();
        let (flusher, counter) = (Arc::clone(&db), Arc::clone(&outstanding));
        std::thread::Builder::new()
            .name("raft-log-flush".into())
            .spawn(move || flush_thread(flusher, jobs, counter))
            .map_err(|e| format!("start the log flush thread: {e}"))?;
        Ok(LogStore {
            db,
            flush: Some(flush),
            outstanding,
            voters,
        })
    }

    /// Before the log opens: a saved vote that is this node's own committed leadership is
    /// saved again uncommitted (same term, same node), so openraft starts the node as a
    /// follower and it must win a new term before it leads again. Returns whether it did.
    ///
    /// openraft 0.9 would restart it as the leader of its old term at once
    /// (`Engine::startup`) and append under that term's leader id. A leader's entries reach
    /// its followers before its own fsync (the flush thread), and two followers can commit
    /// them, so after a power loss its log can be shorter than theirs. An entry it then
    /// appended under the old leader id (`RaftMeta::establish` does so at once) would take a
    /// log id the followers hold with other content; they keep theirs, the ids being equal,
    /// and the state machines diverge. A new term brings new log ids, and a node that lost
    /// its tail cannot win one. A cluster of one elects itself at once.
    pub(crate) fn step_down_at_open(&self, node: u64) -> Result<bool, String> {
        let vote: Option<Vote<u64>> = self.get_state("vote").map_err(|e| e.to_string())?;
        let Some(vote) = vote else {
            return Ok(false);
        };
        if !vote.is_committed() || vote.leader_id().voted_for() != Some(node) {
            return Ok(false);
        }
        let plain = Vote::new(vote.leader_id().term, node);
        let bytes = serde_json::to_vec(&plain).map_err(|e| e.to_string())?;
        let mut tx = self.db.begin_write().map_err(|e| e.to_string())?;
        tx.set_durability(Durability::Immediate);
        tx.open_table(STATE)
            .map_err(|e| e.to_string())?
            .insert("vote", bytes.as_slice())
            .map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
        Ok(true)
    }

    fn get_state<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let tx = self.db.begin_read().map_err(read_err)?;
        let table = tx.open_table(STATE).map_err(read_err)?;
        match table.get(key).map_err(read_err)? {
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(read_err),
            None => Ok(None),
        }
    }

    fn last_entry(&self) -> Result<Option<LogId<u64>>, Error> {
        let tx = self.db.begin_read().map_err(read_err)?;
        let table = tx.open_table(ENTRIES).map_err(read_err)?;
        let last = table.last().map_err(read_err)?;
        match last {
            Some((_, v)) => decode_entry(v.value())
                .map(|e| Some(e.log_id))
                .map_err(read_err),
            None => Ok(None),
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, Error> {
        let tx = self.db.begin_read().map_err(read_err)?;
        let table = tx.open_table(ENTRIES).map_err(read_err)?;
        let mut out = Vec::new();
        for item in table.range(range).map_err(read_err)? {
            let (_, v) = item.map_err(read_err)?;
            out.push(decode_entry(v.value()).map_err(read_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, Error> {
        let last_purged: Option<LogId<u64>> = self.get_state("last_purged")?;
        let last = self.last_entry()?.or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), Error> {
        // Durable: a node must never vote twice in a term, across a crash too.
        let bytes = serde_json::to_vec(vote).map_err(write_err)?;
        let mut tx = self.db.begin_write().map_err(write_err)?;
        tx.set_durability(Durability::Immediate);
        tx.open_table(STATE)
            .map_err(write_err)?
            .insert("vote", bytes.as_slice())
            .map_err(write_err)?;
        tx.commit().map_err(write_err)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, Error> {
        self.get_state("vote")
    }

    // `save_committed`/`read_committed` keep openraft's defaults (not stored): storing the
    // committed id only lets a restart apply a little sooner, and cost a write per commit.

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), Error>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // The flush thread, unless this one commit makes the entry durable: always without a
        // thread (the simulation), and in a cluster of one with nothing outstanding.
        let alone = self.voters.load(Ordering::Acquire) == 1
            && self.outstanding.load(Ordering::Acquire) == 0;
        let thread = self.flush.as_ref().filter(|_| !alone);
        let mut tx = self.db.begin_write().map_err(write_err)?;
        tx.set_durability(match thread {
            Some(_) => Durability::None,
            None => Durability::Immediate,
        });
        {
            let mut table = tx.open_table(ENTRIES).map_err(write_err)?;
            for entry in entries {
                let bytes = encode_entry(&entry);
                table
                    .insert(entry.log_id.index, bytes.as_slice())
                    .map_err(write_err)?;
            }
        }
        tx.commit().map_err(write_err)?;
        // The flush thread lives as long as any clone of this store.
        match thread {
            Some(flush) => {
                self.outstanding.fetch_add(1, Ordering::AcqRel);
                flush.send(callback).map_err(|_| {
                    self.outstanding.fetch_sub(1, Ordering::AcqRel);
                    write_err("the log flush thread stopped")
                })
            }
            // Already durable: that commit was `Durability::Immediate`.
            None => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), Error> {
        // Durable with the next flush; truncated entries were never committed, so if a crash
        // brings them back the leader truncates them again.
        let mut tx = self.db.begin_write().map_err(write_err)?;
        tx.set_durability(Durability::None);
        {
            let mut table = tx.open_table(ENTRIES).map_err(write_err)?;
            table
                .retain_in(log_id.index.., |_, _| false)
                .map_err(write_err)?;
        }
        tx.commit().map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), Error> {
        let bytes = serde_json::to_vec(&Some(log_id)).map_err(write_err)?;
        let mut tx = self.db.begin_write().map_err(write_err)?;
        tx.set_durability(Durability::Immediate);
        {
            tx.open_table(STATE)
                .map_err(write_err)?
                .insert("last_purged", bytes.as_slice())
                .map_err(write_err)?;
            let mut table = tx.open_table(ENTRIES).map_err(write_err)?;
            table
                .retain_in(..=log_id.index, |_, _| false)
                .map_err(write_err)?;
        }
        tx.commit().map_err(write_err)
    }
}
