//! NFSv4.1 (RFC 8881): the COMPOUND procedure over the same `backend::Store`, handles, exports
//! and squashing as NFSv3.
//!
//! * [`compound`]: the one place for rules that span operations: SEQUENCE first, the current
//!   and saved filehandles, the current stateid, the reply size budget and the per-slot reply
//!   cache. It branches on the flags each op declares ([`ops::OpFlags`]), never on op numbers.
//! * [`ops`]: what each operation does, with its flags declared beside it.
//! * [`state`]: clients, sessions, slots, leases, open and lock stateids: plain data, `now`
//!   passed in, client records persisted through [`state::ClientStore`].
//! * [`attrs`]: fattr4 encoding (GETATTR, READDIR, VERIFY) and decoding (SETATTR, OPEN, CREATE).
//!
//! Not offered: delegations (never granted, see docs/nfsv41.md), pNFS, directory delegations,
//! SP4_MACH_CRED/SP4_SSV state protection, RPCSEC_GSS, named attributes, callbacks.

pub mod attrs;
pub mod compound;
pub mod idmap;
pub mod ops;
pub mod state;

#[cfg(test)]
mod tests;

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use nfs_proto::v4::{NfsImplId4, Opaque4, ServerOwner4, Utf8Str4};

pub use compound::compound;

/// Lease time (RFC 8881 §8.3) by default: 90 s, as knfsd's. `[nfs4] lease_seconds` sets it;
/// the environment variable `SLUICE_V4_LEASE_SECONDS` (5 to 3600) overrides both, for
/// conformance runs.
pub const LEASE_TIME: Duration = Duration::from_secs(90);

fn lease_time(configured: Duration) -> Duration {
    std::env::var("SLUICE_V4_LEASE_SECONDS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| (5..=3600).contains(s))
        .map_or(configured, Duration::from_secs)
}
/// Slots offered per session (fore channel).
pub const SLOTS_MAX: u32 = 64;
/// Largest reply kept in a slot's reply cache (ca_maxresponsesize_cached).
pub const CACHED_REPLY_LEN_MAX: u32 = 64 * 1024;

/// The NFSv4.1 side of a server: its identity and its protocol state.
pub struct Nfs4 {
    /// The same on every listening address, so a client sees one server and can trunk.
    pub server_owner: ServerOwner4,
    pub server_scope: Opaque4,
    pub lease: Duration,
    pub state: Mutex<state::StateTable>,
}

impl Nfs4 {
    /// A server whose owner and scope are `major_id`, with client records kept in `store`.
    pub fn new(major_id: &[u8], lease: Duration, store: Box<dyn state::ClientStore>) -> Nfs4 {
        let major = bytes::Bytes::copy_from_slice(major_id);
        Nfs4 {
            server_owner: ServerOwner4 {
                so_minor_id: 0,
                so_major_id: Opaque4(major.clone()),
            },
            server_scope: Opaque4(major),
            lease,
            state: Mutex::new(state::StateTable::new(
                boot_epoch(),
                lease,
                store,
                std::time::Instant::now(),
            )),
        }
    }

    pub fn impl_id() -> NfsImplId4 {
        NfsImplId4 {
            nii_domain: Utf8Str4(bytes::Bytes::from_static(b"sluice.invalid")),
            nii_name: Utf8Str4(bytes::Bytes::from(format!(
                "sluice {}",
                env!("CARGO_PKG_VERSION")
            ))),
            nii_date: Default::default(),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, state::StateTable> {
        self.state.lock().expect("NFSv4 state lock poisoned")
    }
}

/// Seconds since the epoch at start: a new value on each restart, so clientids, sessions and
/// stateids of an earlier instance are recognizably stale.
fn boot_epoch() -> u32 {
    let s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    (s as u32).max(1)
}

static NFS4: OnceLock<Nfs4> = OnceLock::new();

fn server_major_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!("sluice:{host}")
}

/// The process's NFSv4.1 state, shared by every listening address. Client records are kept
/// in memory unless [`init`] ran first. (A field of `Server` would be better; `run.rs`, which
/// builds `Server`, is outside this module's files for now.)
pub fn instance() -> &'static Nfs4 {
    NFS4.get_or_init(|| {
        Nfs4::new(
            server_major_id().as_bytes(),
            lease_time(LEASE_TIME),
            Box::new(state::MemClientStore::default()),
        )
    })
}

/// Sets up the NFSv4.1 state with leases of `lease` and client records persisted in
/// `data_dir` (in memory when `None`), so that after a restart known clients get a grace
/// period to reclaim their opens and locks. Call it at startup, before the first request;
/// later calls (or calls after [`instance`]) fail.
pub fn init(data_dir: Option<&std::path::Path>, lease: Duration) -> std::io::Result<&'static Nfs4> {
    let store: Box<dyn state::ClientStore> = match data_dir {
        Some(dir) => Box::new(state::FileClientStore::open(dir)?),
        None => Box::new(state::MemClientStore::default()),
    };
    let nfs4 = Nfs4::new(server_major_id().as_bytes(), lease_time(lease), store);
    NFS4.set(nfs4)
        .map_err(|_| std::io::Error::other("NFSv4 state already initialized"))?;
    Ok(instance())
}
