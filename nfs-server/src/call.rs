//! Decode once. A transport hands over a record; [`decode`] turns it into a [`Decoded`] call
//! (header, credential, typed arguments) or into the answer a malformed call gets, and looks up
//! the procedure's [`ProcInfo`]: its metric names, its duplicate-request-cache policy and how
//! pacing charges it. Admission, pacing, metrics and execution then read the decoded call and
//! the typed status; nothing parses the record, or our own reply, again.
//!
//! Sans-IO: no sockets, no clock, no awaits.

use bytes::Bytes;
use nfs_proto::mount::{self, MountCall};
use nfs_proto::nlm::{self, NlmArgs, NsmArgs};
use nfs_proto::rpc::{self, AcceptStat, CallError, CallHeader, Credential, Reply};
use nfs_proto::v3::{self, Nfs3Call};
use nfs_proto::v4::{self, Compound4Args, DecodedCompound4, NfsArgOp4};
use nfs_proto::xdr::{Reader, Writer};
use nfs_proto::{limits, portmap};

use crate::qos::Direction;

/// How retransmissions of a procedure are answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrcPolicy {
    /// Run again: the procedure is idempotent (or has its own replay rules, like NLM).
    None,
    /// The duplicate request cache replays the first reply (NFSv3's non-idempotent calls).
    Cache,
    /// NFSv4.1: the session's slot caches replies (exactly-once semantics, RFC 8881 §2.10.6).
    Slot,
}

/// How a mount target's pacer charges a procedure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pacing {
    /// Not paced (MOUNT, NLM, NSM, portmap: tiny, and needed to make progress).
    Free,
    /// One operation, no bytes.
    Op,
    /// The bytes it reads (its requested count, charged up front).
    Read,
    /// Its size: the record carries the data.
    Write,
    /// A COMPOUND: its size if it writes, else the sum of its READ counts.
    Compound,
}

/// The facts about one procedure: one table entry per (program, version, procedure).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcInfo {
    /// Metric labels, from a fixed set (a client cannot create label values).
    pub program: &'static str,
    pub procedure: &'static str,
    pub drc: DrcPolicy,
    pub pacing: Pacing,
}

/// NFSv3 procedures by number: name, DRC policy, pacing.
const NFS3: [(&str, DrcPolicy, Pacing); 22] = {
    use DrcPolicy::{Cache, None as Run};
    use Pacing::{Op, Read, Write};
    [
        ("NULL", Run, Op),
        ("GETATTR", Run, Op),
        ("SETATTR", Cache, Op),
        ("LOOKUP", Run, Op),
        ("ACCESS", Run, Op),
        ("READLINK", Run, Op),
        ("READ", Run, Read),
        // WRITE is idempotent: the same data at the same offset again.
        ("WRITE", Run, Write),
        ("CREATE", Cache, Op),
        ("MKDIR", Cache, Op),
        ("SYMLINK", Cache, Op),
        ("MKNOD", Cache, Op),
        ("REMOVE", Cache, Op),
        ("RMDIR", Cache, Op),
        ("RENAME", Cache, Op),
        ("LINK", Cache, Op),
        ("READDIR", Run, Op),
        ("READDIRPLUS", Run, Op),
        ("FSSTAT", Run, Op),
        ("FSINFO", Run, Op),
        ("PATHCONF", Run, Op),
        ("COMMIT", Run, Op),
    ]
};

/// The table entry of a procedure.
pub fn proc_info(prog: u32, vers: u32, proc_: u32) -> ProcInfo {
    let (program, procedure) = crate::metrics_names::names(prog, vers, proc_);
    let free = ProcInfo {
        program,
        procedure,
        drc: DrcPolicy::None,
        pacing: Pacing::Free,
    };
    match (prog, vers) {
        (v3::PROGRAM, v3::VERSION) => match NFS3.get(proc_ as usize) {
            Some(&(procedure, drc, pacing)) => ProcInfo {
                program,
                procedure,
                drc,
                pacing,
            },
            None => free,
        },
        (v3::PROGRAM, v4::VERSION) => ProcInfo {
            drc: if proc_ == v4::proc4::COMPOUND {
                DrcPolicy::Slot
            } else {
                DrcPolicy::None
            },
            pacing: if proc_ == v4::proc4::COMPOUND {
                Pacing::Compound
            } else {
                Pacing::Op
            },
            ..free
        },
        _ => free,
    }
}

/// What a decoded call carries, by program.
#[derive(Debug)]
pub enum Body {
    Nfs3 {
        call: Nfs3Call,
        /// The encoded arguments (the DRC's checksum of a call).
        raw_args: Bytes,
    },
    Nfs4Null,
    Compound {
        decoded: Box<DecodedCompound4>,
        /// The size of the encoded arguments (checked against the session's limit).
        args_len: usize,
    },
    Mount(MountCall),
    Nlm(NlmArgs),
    Nsm(NsmArgs),
    /// Portmap/rpcbind decodes per version; its arguments are left to its table.
    Portmap(Reader),
}

/// A call decoded once, ready to run.
#[derive(Debug)]
pub struct Call {
    pub hdr: CallHeader,
    pub credential: Credential,
    pub body: Body,
    /// The record's size (pacing charges writes by it).
    pub record_len: usize,
}

/// The answer to a call that does not get to run, and its status for metrics.
#[derive(Debug)]
pub struct Early {
    /// `None`: send nothing (RFC 5531: a record that is not even a call gets no reply).
    pub reply: Option<Reply>,
    pub status: &'static str,
}

/// A record after [`decode`].
#[derive(Debug)]
pub struct Decoded {
    pub info: ProcInfo,
    pub call: Result<Call, Early>,
}

/// What pacing charges a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cost {
    pub direction: Direction,
    pub bytes: u64,
    pub ops: u64,
}

impl Decoded {
    /// What the call costs its mount target, or `None` if it is not paced.
    pub fn cost(&self) -> Option<Cost> {
        let call = self.call.as_ref().ok()?;
        let (direction, bytes) = match self.info.pacing {
            Pacing::Free => return None,
            Pacing::Op => (Direction::Read, 0),
            Pacing::Write => (Direction::Write, call.record_len as u64),
            Pacing::Read => match &call.body {
                Body::Nfs3 {
                    call: Nfs3Call::Read { count, .. },
                    ..
                } => (
                    Direction::Read,
                    u64::from((*count).min(limits::IO_SIZE_MAX)),
                ),
                _ => (Direction::Read, 0),
            },
            Pacing::Compound => match &call.body {
                Body::Compound { decoded, .. } => compound_cost(&decoded.args, call.record_len),
                _ => (Direction::Read, 0),
            },
        };
        Some(Cost {
            direction,
            bytes,
            ops: 1,
        })
    }
}

/// A COMPOUND with WRITEs is charged its size, else the sum of its READ counts; each op's
/// part comes from its flags (`v4::ops::flags`), the NFSv4.1 op table.
fn compound_cost(args: &Compound4Args, record_len: usize) -> (Direction, u64) {
    use crate::v4::ops::{flags, OpPacing};
    let (mut read, mut write) = (0u64, false);
    for op in &args.argarray {
        match (flags(op).pacing, op) {
            (OpPacing::ReadCount, NfsArgOp4::Read(a)) => {
                read += u64::from(a.count.min(limits::IO_SIZE_MAX))
            }
            (OpPacing::WritesRecord, _) => write = true,
            _ => {}
        }
    }
    if write {
        (Direction::Write, record_len as u64)
    } else {
        (Direction::Read, read)
    }
}

/// Decodes `record` once. `portmap` says whether this server answers portmap itself.
pub fn decode(record: Bytes, portmap: bool) -> Decoded {
    let record_len = record.len();
    let (hdr, credential, mut args) = match rpc::decode_call(record) {
        Ok(x) => x,
        Err(CallError::Undecodable) => {
            return Decoded {
                info: proc_info(0, 0, u32::MAX),
                call: Err(Early {
                    reply: None,
                    status: "DROPPED",
                }),
            }
        }
        Err(e) => {
            let mut w = Writer::with_capacity(32);
            rpc::encode_denied(&mut w, &e);
            let status = match e {
                CallError::RpcMismatch { .. } => "RPC_MISMATCH",
                _ => "AUTH_ERROR",
            };
            return Decoded {
                info: proc_info(0, 0, u32::MAX),
                call: Err(Early {
                    reply: Some(reply_of(w)),
                    status,
                }),
            };
        }
    };
    let info = proc_info(hdr.prog, hdr.vers, hdr.proc_);
    let body = decode_body(&hdr, &mut args, portmap);
    Decoded {
        info,
        call: body.map(|body| Call {
            hdr,
            credential,
            body,
            record_len,
        }),
    }
}

#[allow(
    clippy::result_large_err,
    reason = "an Early is built once per refused call and moved once into Decoded"
)]
fn decode_body(hdr: &CallHeader, args: &mut Reader, portmap: bool) -> Result<Body, Early> {
    let xid = hdr.xid;
    let garbage = || accept_only(xid, AcceptStat::GarbageArgs, "GARBAGE_ARGS");
    let unavail = || accept_only(xid, AcceptStat::ProcUnavail, "PROC_UNAVAIL");
    let mismatch = |low, high| {
        let mut w = Writer::with_capacity(32);
        rpc::encode_prog_mismatch(&mut w, xid, low, high);
        Early {
            reply: Some(reply_of(w)),
            status: "PROG_MISMATCH",
        }
    };
    match hdr.prog {
        v3::PROGRAM if hdr.vers == v4::VERSION => match hdr.proc_ {
            v4::proc4::NULL => Ok(Body::Nfs4Null),
            v4::proc4::COMPOUND => {
                let args_len = args.remaining();
                match Compound4Args::decode(args) {
                    Ok(c) => Ok(Body::Compound {
                        decoded: Box::new(c),
                        args_len,
                    }),
                    Err(_) => Err(garbage()),
                }
            }
            _ => Err(unavail()),
        },
        v3::PROGRAM if hdr.vers == v3::VERSION => {
            let raw_args = args.rest();
            match Nfs3Call::decode(hdr.proc_, args) {
                Ok(Some(call)) => Ok(Body::Nfs3 { call, raw_args }),
                Ok(None) => Err(unavail()),
                Err(e) => {
                    tracing::debug!(proc_ = hdr.proc_, "garbage NFSv3 args: {e}");
                    Err(garbage())
                }
            }
        }
        v3::PROGRAM => Err(mismatch(v3::VERSION, v4::VERSION)),
        mount::PROGRAM if hdr.vers != mount::VERSION => {
            Err(mismatch(mount::VERSION, mount::VERSION))
        }
        mount::PROGRAM => match MountCall::decode(hdr.proc_, args) {
            Ok(Some(c)) => Ok(Body::Mount(c)),
            Ok(None) => Err(unavail()),
            Err(_) => Err(garbage()),
        },
        nlm::NLM_PROGRAM if hdr.vers != nlm::NLM_VERSION => {
            Err(mismatch(nlm::NLM_VERSION, nlm::NLM_VERSION))
        }
        nlm::NLM_PROGRAM => match NlmArgs::decode(hdr.proc_, args) {
            Ok(Some(a)) => Ok(Body::Nlm(a)),
            Ok(None) => Err(unavail()),
            Err(_) => Err(garbage()),
        },
        nlm::NSM_PROGRAM if hdr.vers != nlm::NSM_VERSION => {
            Err(mismatch(nlm::NSM_VERSION, nlm::NSM_VERSION))
        }
        nlm::NSM_PROGRAM => match NsmArgs::decode(hdr.proc_, args) {
            Ok(Some(a)) => Ok(Body::Nsm(a)),
            Ok(None) => Err(unavail()),
            Err(_) => Err(garbage()),
        },
        portmap::PROGRAM if portmap => Ok(Body::Portmap(std::mem::replace(
            args,
            Reader::new(Bytes::new()),
        ))),
        _ => Err(accept_only(xid, AcceptStat::ProgUnavail, "PROG_UNAVAIL")),
    }
}

fn reply_of(w: Writer) -> Reply {
    Reply {
        head: w.into_bytes(),
        ..Reply::default()
    }
}

fn accept_only(xid: u32, stat: AcceptStat, status: &'static str) -> Early {
    let mut w = Writer::with_capacity(24);
    rpc::encode_accepted(&mut w, xid, stat);
    Early {
        reply: Some(reply_of(w)),
        status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nfs_proto::v3::proc3;

    #[test]
    fn every_nfs3_procedure_has_its_name_from_the_wire_table() {
        for p in 0..22 {
            assert_eq!(proc_info(v3::PROGRAM, 3, p).procedure, proc3::name(p));
        }
        assert_eq!(proc_info(v3::PROGRAM, 3, 99).procedure, proc3::name(99));
    }

    #[test]
    fn only_non_idempotent_nfs3_procedures_use_the_duplicate_request_cache() {
        use proc3::*;
        let cached: Vec<u32> = (0..22)
            .filter(|&p| proc_info(v3::PROGRAM, 3, p).drc == DrcPolicy::Cache)
            .collect();
        assert_eq!(
            cached,
            vec![SETATTR, CREATE, MKDIR, SYMLINK, MKNOD, REMOVE, RMDIR, RENAME, LINK]
        );
    }

    #[test]
    fn an_undecodable_record_is_dropped_without_a_reply() {
        let d = decode(Bytes::from_static(&[0, 0, 0, 1]), false);
        let early = d.call.unwrap_err();
        assert!(early.reply.is_none());
        assert_eq!(early.status, "DROPPED");
    }
}
