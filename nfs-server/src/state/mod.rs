//! The protocol-state layer: everything a client relies on beyond the file system itself.
//!
//! * [`identity`]: who this server is (cluster id, node id, epoch), from configuration.
//! * [`nfs4`]: NFSv4.1 clients, sessions with their slot tables, leases, open and lock stateids.
//! * [`nlm`]: the byte-range lock manager that NLM and NFSv4.1 share, and NSM monitors.
//! * [`grace`]: the one grace period after a restart, which NLM and NFSv4.1 both obey.
//! * [`store`]: the fallible, async [`StateStore`] through which what must survive a restart
//!   is saved (client records, the monitor list).
//!
//! [`ProtocolState`] holds them all as one field of `Server`: no globals, and no clock read
//! here: every call that needs the time takes `now`, so lease, grace and expiry tests run on a
//! virtual clock. Lock order: the NFSv4.1 table, then the grace period, then the lock
//! manager; the NSM monitor list and the grace period are never held together.

pub mod grace;
pub mod identity;
pub mod nfs4;
pub mod nlm;
pub mod store;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use grace::Grace;
pub use identity::Identity;
pub use store::{FileStateStore, LogStateStore, MemStateStore, StateKey, StateStore};

use crate::v4::idmap::IdMap;
use crate::v4::Nfs4;

/// Settings of the protocol state (from `[nfs4]` and `[nlm]`).
#[derive(Clone, Debug)]
pub struct StateConfig {
    /// NFSv4.1 lease time.
    pub lease: Duration,
    /// How long NLM clients of the previous run may reclaim.
    pub nlm_grace: Duration,
}

impl Default for StateConfig {
    fn default() -> StateConfig {
        StateConfig {
            lease: crate::v4::LEASE_TIME,
            nlm_grace: Duration::from_secs(45),
        }
    }
}

/// Counts for the admin status and the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateSummary {
    pub nfs4_clients: usize,
    pub nfs4_sessions: usize,
    pub nfs4_state_ids: usize,
    pub nfs4_clients_to_reclaim: usize,
    pub grace: bool,
    pub nlm_locks: usize,
    pub nsm_monitored: usize,
}

/// The version of a state document: the run's epoch, then the change count within the run, so
/// that versions grow across restarts too.
fn version(epoch: u32, changes: u64) -> u64 {
    (u64::from(epoch) << 32) | (changes & 0xffff_ffff)
}

/// The protocol state of a server: see the module docs.
pub struct ProtocolState {
    pub identity: Identity,
    pub nfs4: Nfs4,
    pub nlm: nlm::Nlm,
    grace: Mutex<Grace>,
    store: Arc<dyn StateStore>,
    /// How NFSv4 owner strings map to uids and gids.
    pub idmap: IdMap,
    pub config: StateConfig,
}

impl ProtocolState {
    /// Loads what the previous run saved in `store` and starts this run at `now`: the NSM state
    /// number advances (saved before this returns), and if clients of either protocol held
    /// state, the grace period begins.
    pub async fn open(
        identity: Identity,
        store: Arc<dyn StateStore>,
        config: StateConfig,
        idmap: IdMap,
        now: Instant,
    ) -> std::io::Result<ProtocolState> {
        let nsm = match store.load(StateKey::Nsm).await? {
            Some(doc) => nlm::NsmRecord::from_doc(&doc)?,
            None => nlm::NsmRecord::default(),
        };
        let v4_clients = match store.load(StateKey::Nfs4Clients).await? {
            Some(doc) => nfs4::parse_records(&doc),
            None => Vec::new(),
        };
        let (nlm, (v, doc)) = nlm::Nlm::open(&nsm);
        store
            .save(StateKey::Nsm, version(identity.epoch, v), doc)
            .await?;
        nlm.saved(v);
        let grace = Grace::start(
            now,
            config.nlm_grace,
            nsm.clients.len(),
            config.lease,
            v4_clients.iter().map(|r| (r.owner.clone(), r.clientid)),
        );
        let table =
            nfs4::StateTable::new(identity.epoch, identity.node_id, config.lease, v4_clients);
        Ok(ProtocolState {
            nfs4: Nfs4::new(&identity, config.lease, table),
            identity,
            nlm,
            grace: Mutex::new(grace),
            store,
            idmap,
            config,
        })
    }

    /// A fresh state in memory (tests): epoch 1, nothing to reclaim.
    pub fn in_memory(now: Instant) -> ProtocolState {
        let identity = Identity {
            cluster_id: "test".into(),
            node_id: 1,
            epoch: 1,
        };
        let config = StateConfig::default();
        let (nlm, _) = nlm::Nlm::open(&nlm::NsmRecord::default());
        ProtocolState {
            nfs4: Nfs4::new(
                &identity,
                config.lease,
                nfs4::StateTable::new(identity.epoch, identity.node_id, config.lease, Vec::new()),
            ),
            identity,
            nlm,
            grace: Mutex::new(Grace::start(now, Duration::ZERO, 0, config.lease, [])),
            store: Arc::new(MemStateStore::default()),
            idmap: IdMap::default(),
            config,
        }
    }

    /// The grace period (a leaf lock: take it after the NFSv4.1 table, never before).
    pub fn grace(&self) -> MutexGuard<'_, Grace> {
        self.grace.lock().expect("grace lock poisoned")
    }

    /// Whether only reclaims are accepted now, by NLM and NFSv4.1 alike.
    pub fn in_grace(&self, now: Instant) -> bool {
        self.grace().in_grace(now)
    }

    /// Whether locks are only reclaimed now (the grace period, or a takeover's lock window).
    pub fn locks_in_grace(&self, now: Instant) -> bool {
        self.grace().locks_in_grace(now)
    }

    /// Makes the NFSv4.1 client records durable if they changed. Call before answering an
    /// operation that may have changed them; an error must reach the client.
    pub async fn save_nfs4(&self) -> std::io::Result<()> {
        let Some((v, doc)) = self.nfs4.lock().unsaved_records() else {
            return Ok(());
        };
        let version = version(self.identity.epoch, v);
        self.store.save(StateKey::Nfs4Clients, version, doc).await?;
        self.nfs4.lock().records_saved(v);
        Ok(())
    }

    /// Makes the NSM monitor list durable if it changed. Call before granting a lock to a
    /// newly monitored client; an error must reach the client.
    pub async fn save_nsm(&self) -> std::io::Result<()> {
        let Some((v, doc)) = self.nlm.unsaved() else {
            return Ok(());
        };
        let version = version(self.identity.epoch, v);
        self.store.save(StateKey::Nsm, version, doc).await?;
        self.nlm.saved(v);
        Ok(())
    }

    pub fn summary(&self, now: Instant) -> StateSummary {
        let (clients, sessions, state_ids) = {
            let t = self.nfs4.lock();
            let (c, s) = t.summary();
            (c, s, t.state_count())
        };
        let (grace, to_reclaim) = {
            let g = self.grace();
            (g.in_grace(now), g.clients_to_reclaim())
        };
        StateSummary {
            nfs4_clients: clients,
            nfs4_sessions: sessions,
            nfs4_state_ids: state_ids,
            nfs4_clients_to_reclaim: to_reclaim,
            grace,
            nlm_locks: self
                .nlm
                .locks
                .lock()
                .expect("lock table poisoned")
                .held_count(),
            nsm_monitored: self.nlm.monitored_count(),
        }
    }
}
