//! The wire layer of Sluice, with no I/O: bytes in, typed calls out; typed replies in, bytes out.
//!
//! * [`xdr`]: bounded XDR reader/writer; opaque data stays a slice of the received buffer.
//! * [`rpc`]: ONC RPC v2 headers, AUTH_SYS, TCP record marking.
//! * [`v3`]: NFSv3 (RFC 1813) argument decoders and result encoders.
//! * [`v4`]: NFSv4.1 (RFC 8881) COMPOUND and CB_COMPOUND codecs, with bounded decoding.
//! * [`mount`]: MOUNT v3 (RFC 1813 Appendix I).
//! * [`nlm`]: NLM v4 and NSM v1, NFSv3 locking.
//! * [`portmap`]: portmap v2 (RFC 1833 §3) and rpcbind v3/v4 (RFC 1833 §2).
//! * [`rpcrdma`]: RPC-over-RDMA v1 (RFC 8166) headers, chunk planning, RFC 8797 private data.
//!
//! This crate depends on nothing but `bytes`: no tokio, no libc, no clock. The NFS server,
//! the RDMA transport and the fuzz targets all use it.
#![forbid(unsafe_code)]
// Everything here handles bytes from the network: no panics on that path.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod limits;
pub mod mount;
pub mod nlm;
pub mod portmap;
pub mod rpc;
pub mod rpcrdma;
pub mod v3;
pub mod v4;
pub mod xdr;
