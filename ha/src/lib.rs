//! High availability: membership, leases, fencing epochs, mount-target takeover and grace.
//! **Not implemented yet** (issues 17-19). The protocol, its failure model and the invariants
//! its simulation must check are in `ha/PROTOCOL.md`, written before this code.
//!
//! Design constraints this layer will rely on, already true of the single node:
//! * file handles are self-describing and signed by a cluster-wide key, so any node can serve
//!   any handle (`nfs_server::fh`);
//! * the write verifier changes on every restart, so clients resend uncommitted writes after a
//!   takeover;
//! * the NFSv4.1 server owner and scope come from the cluster id, not the host, and state is
//!   tagged with a durable, growing epoch (`nfs_server::state::identity`);
//! * metadata batches carry a writer epoch that the store checks (`backend::engine::Batch`);
//! * the core will be sans-IO (messages and `now` in, messages out) with a deterministic
//!   simulation harness, and `ha/PROTOCOL.md` will come first.
#![forbid(unsafe_code)]
