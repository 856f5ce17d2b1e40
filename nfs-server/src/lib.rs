//! The Sluice NFS server: executes decoded calls (from `nfs-proto`) against a `backend::Store`.
//! Read it in layers, from the wire down:
//!
//! 1. **Wire.** [`transport`]: TCP record marking, UDP, and the RDMA handler; admission and
//!    pacing by mount target ([`qos`]). [`call`]: each record decoded once, with its entry in
//!    the procedure table. [`portmap`]: portmap/rpcbind.
//! 2. **Protocol services.** [`server`]: the request path from a decoded call to a reply, and
//!    MOUNT. [`v3`]: NFSv3. [`v4`]: NFSv4.1 (COMPOUND and its operations). [`nlm`]: NLM and
//!    NSM. Beside them: [`fh`] (signed file handles), [`export`] (exports, client rules),
//!    [`drc`] (the NFSv3 duplicate request cache), [`error`] (store errors to wire statuses,
//!    in one place), [`rpc_client`] (callbacks to clients' lockd and statd).
//! 3. **Protocol state.** [`state`]: identity, NFSv4.1 clients and sessions, NLM/NSM and the
//!    shared lock manager ([`locks`]), the one grace period, persisted through a `StateStore`.
//! 4. **Cluster.** Membership, ownership leases and failover are the `ha` crate's
//!    (`ha/PROTOCOL.md`); this crate holds the seams it plugs into.
//! 5. **Storage.** The `backend` crate.
//! 6. **Operations.** [`ops`]: CLI, admin API, configuration, startup. [`metrics`]: Prometheus
//!    metrics (recorded on the request path, served by operations).
#![forbid(unsafe_code)]

pub mod call;
pub mod drc;
pub mod error;
pub mod export;
pub mod fh;
pub mod fsutil;
pub mod locks;
pub mod metrics;
pub mod metrics_names;
pub mod nlm;
pub mod ops;
pub mod portmap;
pub mod qos;
pub mod rpc_client;
pub mod server;
pub mod state;
pub mod tickle;
pub mod transport;
pub mod v3;
pub mod v4;
