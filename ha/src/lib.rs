//! High availability: the metadata log, and (to come) membership, leases, fencing epochs,
//! mount-target takeover and grace. The protocol, its failure model and the invariants its
//! simulation must check are in `ha/PROTOCOL.md`, written before this code.
//!
//! Built so far: file-system metadata through openraft 0.9 over the redb state machine of
//! `backend::local`, as a `backend::engine::MetaStore` ([`metalog`], with its authenticated
//! inter-node transport); any node serving any export by shipping calls to the leader
//! ([`forward`]); nodes joining and leaving through etcd ([`members`]). Still to come (issues
//! 18-19): replicated data, ownership leases, takeover.
//!
//! Design constraints this layer relies on, already true of the single node:
//! * file handles are self-describing and signed by a cluster-wide key, so any node can serve
//!   any handle (`nfs_server::fh`);
//! * the write verifier changes on every restart, so clients resend uncommitted writes after a
//!   takeover;
//! * the NFSv4.1 server owner and scope come from the cluster id, not the host, and state is
//!   tagged with a durable, growing epoch (`nfs_server::state::identity`);
//! * metadata batches carry a writer epoch that the store checks (`backend::engine::Batch`),
//!   are applied at once and committed asynchronously (`MetaStore::commit`), and a file's
//!   placement is part of its metadata (`backend::engine::Layout`).
#![forbid(unsafe_code)]

pub mod forward;
pub mod members;
pub mod metalog;
pub mod targets;
