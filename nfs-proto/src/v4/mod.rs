//! NFS version 4.1 (RFC 8881; XDR from RFC 5662): types named after the RFC, the COMPOUND
//! codec, and the callback program.
//!
//! * [`consts`]: nfsstat4, operation and attribute numbers, flag words.
//! * [`types`]: stateid4, bitmap4, fattr4, nfs_fh4, sessionid4, owners, open claims, lockers ...
//! * [`attr`]: settable attribute values decoded from a fattr4 ([`Sattr4`]).
//! * [`args`]: COMPOUND4args. The decoder checks the tag, the op count and every length against
//!   `limits` before allocating, and stops at the first op that does not decode, saying which
//!   and with what status ([`DecodeStop`]). WRITE data stays a slice of the request.
//! * [`res`]: COMPOUND4res. Results encode with their exact resok and error arms; READ data is
//!   returned beside the head buffer ([`ReplyPayload`]) so it is never copied; and
//!   [`Compound4ResWriter`] holds a reply to a size budget (NFS4ERR_REP_TOO_BIG).
//! * [`cb`]: CB_COMPOUND arguments out, results in.
//!
//! Arguments decode and encode (encoding serves a test client and fuzz round trips); results
//! encode and decode (decoding serves the test client). Decoding never panics on any input.
//!
//! A server uses it like this:
//!
//! ```
//! use nfs_proto::v4::*;
//! use nfs_proto::xdr::{Reader, Writer};
//! # let call = { let mut w = Writer::new();
//! #   use nfs_proto::xdr::Encode;
//! #   Compound4Args { minorversion: 1, argarray: vec![NfsArgOp4::Putrootfh, NfsArgOp4::Getfh],
//! #     ..Default::default() }.encode(&mut w); w.into_bytes() };
//! let decoded = Compound4Args::decode(&mut Reader::new(call)).expect("header decodes");
//! let mut reply = Compound4ResWriter::new(Writer::new(), &decoded.args.tag);
//! let mut status = Nfsstat4::Ok;
//! for op in &decoded.args.argarray {
//!     let res = NfsResOp4::error(op.opnum(), Nfsstat4::NotSupp); // a real server executes op
//!     status = res.status();
//!     reply.push(&res);
//!     if !status.is_ok() {
//!         break;
//!     }
//! }
//! if let (Nfsstat4::Ok, Some(stop)) = (status, &decoded.stop) {
//!     if let DecodeStop::Op { opnum, status: s, .. } = stop {
//!         reply.push(&NfsResOp4::error(*opnum, *s));
//!     }
//!     status = stop.status();
//! }
//! let (head, payloads) = reply.finish(status);
//! # let _ = (head, payloads);
//! ```

pub mod args;
pub mod attr;
pub mod cb;
pub mod consts;
pub mod res;
pub mod types;

pub use args::*;
pub use attr::*;
pub use cb::*;
pub use consts::*;
pub use res::*;
pub use types::*;

/// The NFS program number, shared with NFSv3.
pub const PROGRAM: u32 = 100003;
/// NFS version 4 (every minor version).
pub const VERSION: u32 = 4;

#[cfg(test)]
mod tests;
