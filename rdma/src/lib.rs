//! NFS over RDMA: RPC-over-RDMA version 1 (RFC 8166) with the NFS binding (RFC 8267), served
//! on port 20049 to the Linux kernel client.
//!
//! * [`sys`]: hand-written FFI to libibverbs and librdmacm, loaded with `dlopen` the first time
//!   an RDMA listener is created, so the binary runs on machines without rdma-core
//!   (`docs/decisions/0004-rdma-verbs.md`).
//! * [`verbs`]: a small safe layer (CM ids, PD, registered regions, CQ with completion channel).
//! * [`transport`]: the listener and one task per connection. It carries no NFS semantics: it
//!   hands complete RPC records to a [`transport::Handler`] (the same dispatcher as TCP) and
//!   sends back the `head`/`payload`/`tail` reply, moving the payload by RDMA Write into the
//!   client's write chunk. Where bytes go is decided by `nfs_proto::rpcrdma`, tested without
//!   verbs.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod sys;
pub mod transport;
pub mod verbs;
