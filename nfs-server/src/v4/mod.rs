//! NFSv4.1 (RFC 8881): the COMPOUND procedure over the same `backend::Store`, handles, exports
//! and squashing as NFSv3.
//!
//! * [`compound`]: the one place for rules that span operations: SEQUENCE first, the current
//!   and saved filehandles, the current stateid, the reply size budget and the per-slot reply
//!   cache. It branches on the flags each op declares ([`ops::OpFlags`]), never on op numbers.
//! * [`ops`]: what each operation does, with its flags declared beside it.
//! * The protocol state (clients, sessions, slots, leases, stateids, the grace period) is in
//!   [`crate::state`], shared with NLM.
//! * [`attrs`]: fattr4 encoding (GETATTR, READDIR, VERIFY) and decoding (SETATTR, OPEN, CREATE).
//!
//! Not offered: delegations (never granted, see docs/nfsv41.md), pNFS, directory delegations,
//! SP4_MACH_CRED/SP4_SSV state protection, RPCSEC_GSS, named attributes, callbacks.

pub mod attrs;
pub mod compound;
pub mod idmap;
pub mod ops;

#[cfg(test)]
mod tests;

use std::sync::Mutex;
use std::time::Duration;

use nfs_proto::v4::{NfsImplId4, Opaque4, ServerOwner4, Utf8Str4};

pub use compound::compound;

/// Lease time (RFC 8881 §8.3) by default: 90 s, as knfsd's. `[nfs4] lease_seconds` sets it.
pub const LEASE_TIME: Duration = Duration::from_secs(90);

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
    pub state: Mutex<crate::state::nfs4::StateTable>,
}

impl Nfs4 {
    /// The NFSv4.1 side of a server with `identity` (its owner and scope are the cluster's,
    /// its minor id the node's), leases of `lease`, and the state in `table`.
    pub fn new(
        identity: &crate::state::Identity,
        lease: Duration,
        table: crate::state::nfs4::StateTable,
    ) -> Nfs4 {
        let major = bytes::Bytes::from(identity.server_major_id());
        Nfs4 {
            server_owner: ServerOwner4 {
                so_minor_id: identity.node_id,
                so_major_id: Opaque4(major.clone()),
            },
            server_scope: Opaque4(major),
            lease,
            state: Mutex::new(table),
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

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, crate::state::nfs4::StateTable> {
        self.state.lock().expect("NFSv4 state lock poisoned")
    }
}
