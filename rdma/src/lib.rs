//! NFS over RDMA (RPC-over-RDMA version 1, RFC 8166 / RFC 8267): **not implemented yet**
//! (issue 8).
//!
//! This crate will hold the verbs binding, the RFC 8166 transport header and chunk-list codecs,
//! and a registered-buffer pool that owns every buffer until its work completion is reaped.
//! It will carry no NFS semantics: it hands complete RPC records to
//! `nfs_server::server::Server::handle_record` and sends the `Reply { head, payload }` it gets
//! back, with `head` inline and `payload` moved by RDMA Write into the client's Write chunk.
//! See `docs/architecture.md`, "Transports".
#![deny(unsafe_op_in_unsafe_fn)]
