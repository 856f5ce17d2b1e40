//! The Sluice NFS server: executes decoded calls (from `nfs-proto`) against a `backend::Store`.
//!
//! * [`server`]: the request path, from an RPC record to a reply.
//! * [`v3`]: NFSv3 procedures. [`v4`]: NFSv4.1 (COMPOUND, sessions, open and lock state).
//! * [`error`]: store errors to wire statuses, in one place.
//! * [`nlm`]: NFSv3 locking (NLM v4, NSM) over [`locks`], the shared lock manager.
//! * [`fh`]: file handles. [`export`]: exports and client rules. [`drc`]: duplicate requests.
//! * [`transport`]: TCP record marking and UDP. [`portmap`]: portmap/rpcbind.
//! * [`admin`]: the admin HTTP API; [`cli`]: the operator commands that call it.
//! * [`config`]: the TOML configuration. [`run`]: startup and shutdown.
#![forbid(unsafe_code)]

pub mod admin;
pub mod call;
pub mod cli;
pub mod config;
pub mod drc;
pub mod error;
pub mod export;
pub mod fh;
pub mod fsutil;
pub mod locks;
pub mod metrics;
pub mod metrics_names;
pub mod nlm;
pub mod portmap;
pub mod qos;
pub mod rpc_client;
pub mod run;
pub mod server;
pub mod state;
pub mod tls;
pub mod transport;
pub mod v3;
pub mod v4;
