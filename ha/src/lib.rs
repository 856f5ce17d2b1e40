//! High availability: membership, leases, fencing epochs, mount-target takeover and grace.
//! **Not implemented yet** (a later issue).
//!
//! Design constraints this layer will rely on, already true of the single node:
//! * file handles are self-describing and signed by a cluster-wide key, so any node can serve
//!   any handle (`nfs_server::fh`);
//! * the write verifier changes on every restart, so clients resend uncommitted writes after a
//!   takeover;
//! * the core will be sans-IO (messages and `now` in, messages out) with a deterministic
//!   simulation harness, and `ha/PROTOCOL.md` will come first.
#![forbid(unsafe_code)]
