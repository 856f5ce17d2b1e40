//! COMPOUND (RFC 8881 §16.2, §2.10.6): every rule that spans operations lives here.
//!
//! * SEQUENCE first (§2.10.6): a COMPOUND starts with SEQUENCE, or is a single op that may run
//!   outside a session ([`OpFlags::sessionless`]); otherwise NFS4ERR_OP_NOT_IN_SESSION, and a
//!   SEQUENCE later on is NFS4ERR_SEQUENCE_POS.
//! * The slot's reply cache: a retransmission (same slot, same seqid) gets the cached
//!   COMPOUND4res back, byte for byte, or NFS4ERR_RETRY_UNCACHED_REP when the client did not
//!   ask to cache it; a request still running in its slot gets NFS4ERR_DELAY.
//! * The current and saved filehandles and the current stateid (§16.2.3.1.2): an op that needs
//!   a filehandle gets NFS4ERR_NOFILEHANDLE without one; an op that sets the filehandle clears
//!   the current stateid.
//! * Limits: ca_maxoperations (NFS4ERR_TOO_MANY_OPS), ca_maxrequestsize (NFS4ERR_REQ_TOO_BIG)
//!   and the reply budget: ca_maxresponsesize, or ca_maxresponsesize_cached when the reply is to
//!   be cached (NFS4ERR_REP_TOO_BIG, NFS4ERR_REP_TOO_BIG_TO_CACHE). An op that modifies
//!   something runs only if its largest reply still fits.
//! * Execution stops at the first op that fails; the COMPOUND status is that op's status.

use std::sync::Arc;
use std::time::Instant;

use backend::{Cred, FileId, Store};
use bytes::Bytes;
use nfs_proto::v4::*;
use nfs_proto::xdr::Writer;

use crate::export::Export;
use crate::server::{Request, Server};
use crate::state::nfs4::SeqOutcome;
use crate::v4::ops::{self, OpFlags, Sessionless};
use crate::v4::Nfs4;

/// A filehandle after its MAC, export and client rule were checked.
#[derive(Clone, Debug)]
pub struct CurFh {
    pub fh: NfsFh4,
    pub export: Arc<Export>,
    pub id: FileId,
    pub cred: Cred,
    pub read_only: bool,
    /// A directory of the pseudo file system (its path), not an object of the store.
    pub pseudo: Option<String>,
}

/// The session and slot a COMPOUND runs in.
#[derive(Clone, Debug)]
pub struct SessionCtx {
    pub id: SessionId4,
    pub slotid: u32,
    pub clientid: Clientid4,
    pub cachethis: bool,
}

/// What ops see of the COMPOUND they run in.
pub struct Ctx<'a, S> {
    pub server: &'a Server<S>,
    pub nfs4: &'a Nfs4,
    pub req: &'a Request,
    pub now: Instant,
    pub cur: Option<CurFh>,
    pub saved: Option<CurFh>,
    pub cur_stateid: Option<Stateid4>,
    pub saved_stateid: Option<Stateid4>,
    pub session: Option<SessionCtx>,
    /// Bytes the rest of this reply may still take.
    pub reply_room: usize,
}

impl<S> Ctx<'_, S> {
    pub fn cur(&self) -> Result<&CurFh, Nfsstat4> {
        self.cur.as_ref().ok_or(Nfsstat4::NoFileHandle)
    }

    /// The client this COMPOUND's session belongs to.
    pub fn clientid(&self) -> Result<Clientid4, Nfsstat4> {
        self.session
            .as_ref()
            .map(|s| s.clientid)
            .ok_or(Nfsstat4::OpNotInSession)
    }

    /// Replaces the special "current stateid" (§16.2.3.1.2) with the current one.
    pub fn stateid(&self, sid: &Stateid4) -> Result<Stateid4, Nfsstat4> {
        if *sid == Stateid4::CURRENT {
            return self.cur_stateid.ok_or(Nfsstat4::BadStateid);
        }
        Ok(*sid)
    }
}

/// Ends a slot's request when dropped, so a request abandoned mid-way (its connection closed)
/// does not leave its slot busy forever.
struct SlotGuard<'a> {
    nfs4: &'a Nfs4,
    session: SessionCtx,
    reply: Option<Bytes>,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.nfs4
            .lock()
            .finish_slot(&self.session.id, self.session.slotid, self.reply.take());
    }
}

/// Runs one decoded COMPOUND and appends COMPOUND4res to `w` (which holds the RPC reply
/// header). Returns the head buffer, the READ payloads that belong inside it, and the
/// COMPOUND's status for metrics (its name, or "REPLAYED" for an answer from the slot's reply
/// cache). `request_len` is the size of the encoded arguments.
pub async fn compound<S: Store>(
    server: &Server<S>,
    req: &Request,
    decoded: DecodedCompound4,
    request_len: usize,
    w: Writer,
    now: Instant,
) -> (Writer, Vec<ReplyPayload>, &'static str) {
    let nfs4 = &server.state.nfs4;
    let start = w.len();
    let mut out = Compound4ResWriter::new(w, &decoded.args.tag);
    let ops = &decoded.args.argarray;
    let finish = |mut out: Compound4ResWriter, res: Option<NfsResOp4>, status: Nfsstat4| {
        if let Some(r) = res {
            out.push(&r);
        }
        let (w, payloads) = out.finish(status);
        (w, payloads, status.name())
    };
    // §14.4 (and pynfs COMP3): a tag that is not UTF-8 is NFS4ERR_INVAL, before any op runs.
    if std::str::from_utf8(&decoded.args.tag.0).is_err() {
        return finish(out, None, Nfsstat4::Inval);
    }
    match &decoded.stop {
        Some(DecodeStop::MinorVersMismatch) => {
            return finish(out, None, Nfsstat4::MinorVersMismatch)
        }
        Some(DecodeStop::TooManyOps { .. }) => {
            let opnum = ops.first().map_or(op4::ILLEGAL, |o| o.opnum());
            let res = NfsResOp4::error(opnum, Nfsstat4::TooManyOps);
            return finish(out, Some(res), Nfsstat4::TooManyOps);
        }
        _ => {}
    }
    let mut cx = Ctx {
        server,
        nfs4,
        req,
        now,
        cur: None,
        saved: None,
        cur_stateid: None,
        saved_stateid: None,
        session: None,
        reply_room: nfs_proto::limits::RECORD_LEN_MAX,
    };
    let mut guard = None;
    // The reply budget and, for a cached reply, the smaller budget of the cache.
    let (mut budget, mut cache_budget) = (nfs_proto::limits::RECORD_LEN_MAX, usize::MAX);
    let mut first = 0;
    if let Some(NfsArgOp4::Sequence(sa)) = ops.first() {
        let throttled = server.chronically_throttled(req);
        let conn = (req.peer, req.local);
        let seq = sequence(
            &server.state,
            sa,
            ops.len(),
            request_len,
            throttled,
            conn,
            now,
        );
        let res = match seq {
            Err(s) => return finish(out, Some(NfsResOp4::Sequence(Err(s))), s),
            Ok(Sequenced::Replay(bytes)) => {
                // The cached COMPOUND4res, byte for byte, after this call's RPC header.
                let (mut w, _) = out.finish(Nfsstat4::Ok);
                w.truncate(start);
                w.opaque_fixed(&bytes);
                return (w, Vec::new(), "REPLAYED");
            }
            Ok(Sequenced::New {
                res,
                fore,
                clientid,
            }) => {
                let session = SessionCtx {
                    id: sa.sessionid,
                    slotid: sa.slotid,
                    clientid,
                    cachethis: sa.cachethis,
                };
                guard = Some(SlotGuard {
                    nfs4,
                    session: session.clone(),
                    reply: None,
                });
                cx.session = Some(session);
                budget = fore.ca_maxresponsesize as usize;
                if sa.cachethis {
                    cache_budget = fore.ca_maxresponsesize_cached as usize;
                }
                res
            }
        };
        let seq = NfsResOp4::Sequence(Ok(res));
        if !out.push_within(&seq, budget.min(cache_budget)) {
            let s = too_big(out.encoded_len() + encoded_len(&seq), budget);
            return finish(out, Some(NfsResOp4::Sequence(Err(s))), s);
        }
        first = 1;
    }
    let mut status = Nfsstat4::Ok;
    for (i, op) in ops.iter().enumerate().skip(first) {
        let flags = ops::flags(op);
        let limit = budget.min(cache_budget);
        cx.reply_room = limit.saturating_sub(out.encoded_len() + 8);
        let early = position_error(&flags, i, ops.len(), cx.session.is_some())
            .or_else(|| {
                // §18.37.3: DESTROY_SESSION of the session this COMPOUND runs in must be last.
                let own = matches!(op, NfsArgOp4::DestroySession(id)
                    if cx.session.as_ref().is_some_and(|s| s.id == *id));
                (own && i + 1 != ops.len()).then_some(Nfsstat4::NotOnlyOp)
            })
            .or_else(|| (flags.needs_fh && cx.cur.is_none()).then_some(Nfsstat4::NoFileHandle))
            .or_else(|| {
                // The pseudo file system is read-only directories (§7.3).
                let pseudo = cx.cur.as_ref().is_some_and(|c| c.pseudo.is_some());
                (flags.needs_fh && pseudo && !flags.pseudo_ok).then_some(if flags.modifies {
                    Nfsstat4::Rofs
                } else {
                    Nfsstat4::IsDir
                })
            })
            .or_else(|| {
                (flags.modifies && out.encoded_len() + flags.reply_max > limit)
                    .then(|| too_big(out.encoded_len() + flags.reply_max, budget))
            });
        let res = match early {
            Some(s) => NfsResOp4::error(op.opnum(), s),
            None => {
                // A new current filehandle has no current stateid, unless the op that sets it
                // (OPEN) sets one too.
                if flags.sets_fh {
                    cx.cur_stateid = None;
                }
                let res = ops::execute(&mut cx, op).await;
                // Client records this op (or the SEQUENCE before it) changed are durable
                // before it is answered; if they cannot be saved, the op fails.
                match server.state.save_nfs4().await {
                    Ok(()) => res,
                    Err(e) => {
                        tracing::error!("cannot save NFSv4.1 client records: {e}");
                        NfsResOp4::error(op.opnum(), crate::error::state_save_failed_v4(&e))
                    }
                }
            }
        };
        status = res.status();
        if !out.push_within(&res, limit) {
            let s = too_big(out.encoded_len() + encoded_len(&res), budget);
            out.push(&NfsResOp4::error(op.opnum(), s));
            status = s;
        }
        if !status.is_ok() {
            break;
        }
    }
    if status.is_ok() {
        if let Some(DecodeStop::Op {
            opnum, status: s, ..
        }) = &decoded.stop
        {
            out.push(&NfsResOp4::error(*opnum, *s));
            status = *s;
        }
    }
    let (w, payloads) = out.finish(status);
    if let Some(mut g) = guard {
        if g.session.cachethis {
            let rel: Vec<ReplyPayload> = payloads
                .iter()
                .map(|p| ReplyPayload {
                    offset: p.offset - start,
                    data: p.data.clone(),
                })
                .collect();
            g.reply = Some(splice_payloads(&w.as_slice()[start..], &rel));
        }
    }
    (w, payloads, status.name())
}

/// Bytes `res` takes in a reply, payload included.
fn encoded_len(res: &NfsResOp4) -> usize {
    let mut w = Writer::new();
    let payload = res.encode(&mut w);
    w.len() + payload.map_or(0, |p| p.len() + nfs_proto::xdr::pad_len(p.len()))
}

/// NFS4ERR_REP_TOO_BIG when `len` exceeds the session's reply size, else the cache's limit
/// was the one exceeded.
fn too_big(len: usize, budget: usize) -> Nfsstat4 {
    if len > budget {
        Nfsstat4::RepTooBig
    } else {
        Nfsstat4::RepTooBigToCache
    }
}

/// The SEQUENCE-first rules for op `i` of `n` (§2.10.6, §18.46.3).
fn position_error(f: &OpFlags, i: usize, n: usize, in_session: bool) -> Option<Nfsstat4> {
    if f.is_sequence {
        return Some(Nfsstat4::SequencePos);
    }
    if in_session {
        return None;
    }
    match f.sessionless {
        Sessionless::Solo if i == 0 && n == 1 => None,
        Sessionless::Solo if i == 0 => Some(Nfsstat4::NotOnlyOp),
        _ => Some(Nfsstat4::OpNotInSession),
    }
}

/// The highest slot a chronically throttled client is asked to use: a quarter of its table,
/// at least 4 slots.
pub fn throttled_target_slotid(slots: u32) -> u32 {
    (slots / 4).max(4).min(slots) - 1
}

enum Sequenced {
    New {
        res: Sequence4ResOk,
        fore: ChannelAttrs4,
        clientid: Clientid4,
    },
    Replay(Bytes),
}

/// SEQUENCE (§18.46): the session's limits, then the slot. A client whose mount target has
/// been holding its requests back for a while (`throttled`) is asked to use fewer slots
/// (sr_target_highest_slotid, §2.10.6.1): pacing still sets its rate, but it keeps fewer
/// requests queued in the server.
fn sequence(
    state: &crate::state::ProtocolState,
    sa: &Sequence4Args,
    op_count: usize,
    request_len: usize,
    throttled: bool,
    conn: crate::state::nfs4::ConnId,
    now: Instant,
) -> Result<Sequenced, Nfsstat4> {
    let mut st = state.nfs4.lock();
    let s = st.session(&sa.sessionid).ok_or(Nfsstat4::BadSession)?;
    let fore = s.fore.clone();
    if op_count > fore.ca_maxoperations as usize {
        return Err(Nfsstat4::TooManyOps);
    }
    if request_len > fore.ca_maxrequestsize as usize {
        return Err(Nfsstat4::ReqTooBig);
    }
    let outcome = st.sequence(&sa.sessionid, sa.slotid, sa.sequenceid, conn, now)?;
    st.grace_tick(&mut state.grace(), now);
    match outcome {
        SeqOutcome::Replay(b) => Ok(Sequenced::Replay(b)),
        SeqOutcome::New { clientid, slots } => Ok(Sequenced::New {
            res: Sequence4ResOk {
                sessionid: sa.sessionid,
                sequenceid: sa.sequenceid,
                slotid: sa.slotid,
                highest_slotid: slots - 1,
                target_highest_slotid: if throttled {
                    throttled_target_slotid(slots)
                } else {
                    slots - 1
                },
                status_flags: 0,
            },
            fore,
            clientid,
        }),
    }
}
