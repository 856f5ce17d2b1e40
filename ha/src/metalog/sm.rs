//! The state machine of the metadata log: the redb metadata store of `backend::local`
//! (`meta.redb`), to which every committed entry is applied in log order on every voter.
//! Each entry's batch and the id of the entry are written in one transaction
//! (`LocalMeta::apply_logged`), so after a crash the state and the point to replay from agree.
//! A batch refused by its preconditions or epoch is still applied, as a no-op, and its
//! refusal is the entry's response.
//!
//! Snapshots: the whole metadata as one batch of puts (`LocalMeta::export`, `engine::wire`),
//! made durable first and kept in a file beside the database.

#![allow(
    clippy::result_large_err,
    reason = "openraft's StorageError is what its storage traits return; helpers return it too"
)]

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use backend::engine::wire;
use backend::local::LocalMeta;
use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder, StorageError,
    StoredMembership,
};

use super::{decode_group, Outcome, Outcomes, TypeConfig};

type Error = StorageError<u64>;
type Membership = StoredMembership<u64, openraft::BasicNode>;

/// Where in `meta.redb` the log's applied state is kept.
const APPLIED_KEY: &str = "raft_applied";

fn sm_err(verb: ErrorVerb, e: impl ToString) -> Error {
    StorageError::from_io_error(
        ErrorSubject::StateMachine,
        verb,
        std::io::Error::other(e.to_string()),
    )
}

#[derive(serde::Serialize, serde::Deserialize, Default, Clone)]
struct Applied {
    last: Option<LogId<u64>>,
    membership: Membership,
}

/// A snapshot as kept in its file: `meta_len:u32 meta(json) data`.
struct StoredSnapshot {
    meta: SnapshotMeta<u64, openraft::BasicNode>,
    /// `engine::wire` bytes of the whole metadata.
    data: Vec<u8>,
}

impl StoredSnapshot {
    fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        let meta = serde_json::to_vec(&self.meta)?;
        let mut out = Vec::with_capacity(4 + meta.len() + self.data.len());
        out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(&self.data);
        Ok(out)
    }

    fn decode(mut bytes: Vec<u8>) -> Result<StoredSnapshot, String> {
        let len = bytes
            .first_chunk::<4>()
            .map(|b| u32::from_le_bytes(*b) as usize)
            .ok_or("short snapshot")?;
        if bytes.len() < 4 + len {
            return Err("snapshot shorter than its header".into());
        }
        let meta = serde_json::from_slice(&bytes[4..4 + len]).map_err(|e| e.to_string())?;
        let data = bytes.split_off(4 + len);
        Ok(StoredSnapshot { meta, data })
    }
}

#[derive(Clone)]
pub struct StateMachine {
    meta: Arc<LocalMeta>,
    snapshot_path: PathBuf,
    current: Arc<Mutex<Option<Arc<StoredSnapshot>>>>,
    applied: Arc<Mutex<Applied>>,
    /// Snapshots received from the leader and installed since open (a node that was away
    /// too long catches up this way).
    pub installed: Arc<std::sync::atomic::AtomicU64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl StateMachine {
    pub fn open(meta: Arc<LocalMeta>, snapshot_path: &Path) -> Result<StateMachine, String> {
        let applied = match meta.log_state(APPLIED_KEY).map_err(|e| e.to_string())? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| e.to_string())?,
            None => Applied::default(),
        };
        let current = match std::fs::read(snapshot_path) {
            Ok(bytes) => Some(Arc::new(
                StoredSnapshot::decode(bytes)
                    .map_err(|e| format!("{}: {e}", snapshot_path.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("{}: {e}", snapshot_path.display())),
        };
        Ok(StateMachine {
            meta,
            snapshot_path: snapshot_path.to_path_buf(),
            current: Arc::new(Mutex::new(current)),
            applied: Arc::new(Mutex::new(applied)),
            installed: Default::default(),
        })
    }

    fn save_snapshot(&self, snapshot: &StoredSnapshot) -> Result<(), Error> {
        let bytes = snapshot.encode().map_err(|e| sm_err(ErrorVerb::Write, e))?;
        let tmp = self.snapshot_path.with_extension("tmp");
        (|| {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.snapshot_path)?;
            if let Some(dir) = self.snapshot_path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok::<(), std::io::Error>(())
        })()
        .map_err(|e| sm_err(ErrorVerb::Write, e))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, Error> {
        // The metadata and the id of the last entry in it, read in one transaction: entries
        // may go on being applied while this runs.
        let (all, state) = self
            .meta
            .export(APPLIED_KEY)
            .map_err(|e| sm_err(ErrorVerb::Read, e))?;
        // Then durable, covering at least what was exported: the log may be purged up to the
        // snapshot once it exists, and a crash must not take the state below it.
        self.meta
            .make_durable()
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        let applied: Applied = match state {
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| sm_err(ErrorVerb::Read, e))?
            }
            None => Applied::default(),
        };
        let data = wire::encode(&all.as_batch());
        let id = match applied.last {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, data.len()),
            None => format!("none-{}", data.len()),
        };
        let meta = SnapshotMeta {
            last_log_id: applied.last,
            last_membership: applied.membership,
            snapshot_id: id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.save_snapshot(&stored)?;
        let snapshot = Cursor::new(stored.data.clone());
        *lock(&self.current) = Some(Arc::new(stored));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(snapshot),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId<u64>>, Membership), Error> {
        let a = lock(&self.applied).clone();
        Ok((a.last, a.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcomes>, Error>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        // Every entry of this call in one transaction: its batches in log order, then the
        // id of the last entry (and the membership, if one changed).
        let mut applied = lock(&self.applied).clone();
        let mut decoded = Vec::new();
        // Per entry, per batch of its group: index into `decoded`, or why it has none.
        let mut slots: Vec<Vec<std::result::Result<usize, Outcome>>> = Vec::new();
        for entry in entries {
            applied.last = Some(entry.log_id);
            let mut entry_slots = Vec::new();
            match entry.payload {
                EntryPayload::Normal(p) => match decode_group(&p.0) {
                    Ok(group) => {
                        for bytes in group {
                            entry_slots.push(match wire::decode(bytes) {
                                Ok(batch) => {
                                    decoded.push(batch);
                                    Ok(decoded.len() - 1)
                                }
                                Err(e) => {
                                    // Never proposed by a node of this build: a no-op on
                                    // every replica alike.
                                    tracing::error!(error = %e, log = %entry.log_id, "undecodable metadata batch");
                                    Err(Outcome::Malformed)
                                }
                            });
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, log = %entry.log_id, "undecodable metadata entry");
                        entry_slots.push(Err(Outcome::Malformed));
                    }
                },
                EntryPayload::Membership(m) => {
                    applied.membership = StoredMembership::new(Some(entry.log_id), m);
                }
                EntryPayload::Blank => {}
            }
            slots.push(entry_slots);
        }
        if slots.is_empty() {
            return Ok(Vec::new());
        }
        let state = serde_json::to_vec(&applied).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        let batches: Vec<_> = decoded.iter().map(|b| b.as_batch()).collect();
        let results = self
            .meta
            .apply_logged_all(&batches, APPLIED_KEY, &state)
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        *lock(&self.applied) = applied;
        let outcome = |slot: std::result::Result<usize, Outcome>| match slot {
            Err(outcome) => outcome,
            Ok(i) => match &results[i] {
                Ok(()) => Outcome::Applied,
                Err(backend::Error::Fenced) => Outcome::Fenced,
                Err(_) => Outcome::GuardMismatch,
            },
        };
        Ok(slots
            .into_iter()
            .map(|entry| Outcomes(entry.into_iter().map(outcome).collect()))
            .collect())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, Error> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), Error> {
        let data = snapshot.into_inner();
        let all = wire::decode(&data).map_err(|e| sm_err(ErrorVerb::Read, e))?;
        let applied = Applied {
            last: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        let state = serde_json::to_vec(&applied).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        self.meta
            .import(&all, APPLIED_KEY, &state)
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        *lock(&self.applied) = applied;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.save_snapshot(&stored)?;
        *lock(&self.current) = Some(Arc::new(stored));
        self.installed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(last = ?meta.last_log_id, "metadata log: installed a snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, Error> {
        Ok(lock(&self.current).clone().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.data.clone())),
        }))
    }
}
