//! ONC RPC v2 (RFC 5531): call and reply headers, AUTH_NONE / AUTH_SYS, and the TCP record
//! marking parser (§11).

use bytes::{Buf, Bytes, BytesMut};

use crate::limits;
use crate::xdr::{Decode, Encode, Reader, Writer, XdrError};

pub const RPC_VERSION: u32 = 2;
pub const MSG_CALL: u32 = 0;
pub const MSG_REPLY: u32 = 1;

pub const AUTH_NONE: u32 = 0;
pub const AUTH_SYS: u32 = 1;

/// accept_stat (RFC 5531 §9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptStat {
    Success = 0,
    ProgUnavail = 1,
    ProgMismatch = 2,
    ProcUnavail = 3,
    GarbageArgs = 4,
    SystemErr = 5,
}

/// auth_stat (RFC 5531 §9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthStat {
    Ok = 0,
    BadCred = 1,
    RejectedCred = 2,
    BadVerf = 3,
    RejectedVerf = 4,
    TooWeak = 5,
}

/// `opaque_auth`: a flavor and its body (at most 400 bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpaqueAuth {
    pub flavor: u32,
    pub body: Bytes,
}

impl OpaqueAuth {
    pub fn none() -> OpaqueAuth {
        OpaqueAuth {
            flavor: AUTH_NONE,
            body: Bytes::new(),
        }
    }
}

impl Decode for OpaqueAuth {
    fn decode(r: &mut Reader) -> crate::xdr::Result<Self> {
        Ok(OpaqueAuth {
            flavor: r.u32()?,
            body: r.opaque(limits::AUTH_BODY_LEN_MAX)?,
        })
    }
}

impl Encode for OpaqueAuth {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.flavor);
        w.opaque(&self.body);
    }
}

/// The AUTH_SYS credential body (RFC 5531 Appendix A, `authsys_parms`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthSys {
    pub stamp: u32,
    pub machine_name: Bytes,
    pub uid: u32,
    pub gid: u32,
    pub gids: Vec<u32>,
}

impl Decode for AuthSys {
    fn decode(r: &mut Reader) -> crate::xdr::Result<Self> {
        let stamp = r.u32()?;
        let machine_name = r.opaque(limits::MACHINE_NAME_LEN_MAX)?;
        let uid = r.u32()?;
        let gid = r.u32()?;
        let n = r.array_len(limits::AUTH_SYS_GROUPS_MAX, 4)?;
        let mut gids = Vec::with_capacity(n);
        for _ in 0..n {
            gids.push(r.u32()?);
        }
        Ok(AuthSys {
            stamp,
            machine_name,
            uid,
            gid,
            gids,
        })
    }
}

impl Encode for AuthSys {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.stamp);
        w.opaque(&self.machine_name);
        w.u32(self.uid);
        w.u32(self.gid);
        w.u32(self.gids.len() as u32);
        for g in &self.gids {
            w.u32(*g);
        }
    }
}

/// The credentials of a call after checking its flavor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    None,
    Sys(AuthSys),
}

/// A decoded call header. `args` is the rest of the record: the procedure's arguments.
/// An encoded reply: `head` (RPC header and results), then an optional bulk `payload` (READ
/// data) that must be followed by `xdr::pad_len(payload.len())` zero bytes, then `tail` (what
/// a COMPOUND encodes after its READ). Every transport sends this one type: TCP adds its record
/// marking; over RDMA the payload goes into the client's write chunk instead.
#[derive(Clone, Debug, Default)]
pub struct Reply {
    pub head: Bytes,
    pub payload: Bytes,
    pub tail: Bytes,
    /// When the reply was ready to send (the transport measures the wire phase from it).
    pub ready_at: Option<std::time::Instant>,
}

impl Reply {
    pub fn len(&self) -> usize {
        self.head.len()
            + self.payload.len()
            + crate::xdr::pad_len(self.payload.len())
            + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallHeader {
    pub xid: u32,
    pub prog: u32,
    pub vers: u32,
    pub proc_: u32,
    pub cred: OpaqueAuth,
    pub verf: OpaqueAuth,
}

/// Why a record is not a usable call, and what (if anything) to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallError {
    /// Not even an xid and a CALL: drop the record silently (RFC 5531 gives no reply).
    Undecodable,
    /// rpcvers != 2: reply MSG_DENIED / RPC_MISMATCH.
    RpcMismatch { xid: u32 },
    /// The credential or verifier is malformed or of a flavor we do not accept.
    Auth { xid: u32, stat: AuthStat },
}

/// Decodes a call header from a complete record. On success returns the header, the checked
/// credential, and a reader positioned at the procedure arguments.
pub fn decode_call(record: Bytes) -> Result<(CallHeader, Credential, Reader), CallError> {
    let mut r = Reader::new(record);
    let xid = r.u32().map_err(|_| CallError::Undecodable)?;
    match r.u32() {
        Ok(MSG_CALL) => {}
        _ => return Err(CallError::Undecodable),
    }
    let rpcvers = r.u32().map_err(|_| CallError::Undecodable)?;
    if rpcvers != RPC_VERSION {
        return Err(CallError::RpcMismatch { xid });
    }
    let bad_cred = CallError::Auth {
        xid,
        stat: AuthStat::BadCred,
    };
    let (prog, vers, proc_) = (|| Ok::<_, XdrError>((r.u32()?, r.u32()?, r.u32()?)))()
        .map_err(|_| CallError::Undecodable)?;
    let cred = OpaqueAuth::decode(&mut r).map_err(|_| bad_cred.clone())?;
    let verf = OpaqueAuth::decode(&mut r).map_err(|_| CallError::Auth {
        xid,
        stat: AuthStat::BadVerf,
    })?;
    let credential = match cred.flavor {
        AUTH_NONE => Credential::None,
        AUTH_SYS => {
            let mut cr = Reader::new(cred.body.clone());
            let sys = AuthSys::decode(&mut cr).map_err(|_| bad_cred.clone())?;
            cr.finish().map_err(|_| bad_cred)?;
            Credential::Sys(sys)
        }
        // RPCSEC_GSS and anything else: we do not offer it (yet).
        _ => {
            return Err(CallError::Auth {
                xid,
                stat: AuthStat::RejectedCred,
            })
        }
    };
    if verf.flavor != AUTH_NONE {
        return Err(CallError::Auth {
            xid,
            stat: AuthStat::BadVerf,
        });
    }
    Ok((
        CallHeader {
            xid,
            prog,
            vers,
            proc_,
            cred,
            verf,
        },
        credential,
        r,
    ))
}

/// Encodes a call header (used by clients and tests).
pub fn encode_call(w: &mut Writer, h: &CallHeader) {
    w.u32(h.xid);
    w.u32(MSG_CALL);
    w.u32(RPC_VERSION);
    w.u32(h.prog);
    w.u32(h.vers);
    w.u32(h.proc_);
    h.cred.encode(w);
    h.verf.encode(w);
}

/// A whole call record body (no record mark): the header, then `args` as they are. The one
/// call encoder of the server's own RPC client, the tests and the tools.
pub fn call_record(
    xid: u32,
    prog: u32,
    vers: u32,
    proc_: u32,
    cred: OpaqueAuth,
    args: &[u8],
) -> Bytes {
    let mut w = Writer::with_capacity(64 + args.len());
    encode_call(
        &mut w,
        &CallHeader {
            xid,
            prog,
            vers,
            proc_,
            cred,
            verf: OpaqueAuth::none(),
        },
    );
    // As they are: a test may send arguments that are not whole XDR words.
    let mut b = w.into_inner();
    b.extend_from_slice(args);
    b.freeze()
}

/// Writes the header of an accepted reply with the given status; the procedure's results
/// follow for `Success`, the version range for `ProgMismatch`.
pub fn encode_accepted(w: &mut Writer, xid: u32, stat: AcceptStat) {
    w.u32(xid);
    w.u32(MSG_REPLY);
    w.u32(0); // MSG_ACCEPTED
    OpaqueAuth::none().encode(w);
    w.u32(stat as u32);
}

/// A complete PROG_MISMATCH reply.
pub fn encode_prog_mismatch(w: &mut Writer, xid: u32, low: u32, high: u32) {
    encode_accepted(w, xid, AcceptStat::ProgMismatch);
    w.u32(low);
    w.u32(high);
}

/// A complete MSG_DENIED reply for a call error.
pub fn encode_denied(w: &mut Writer, err: &CallError) {
    match *err {
        CallError::Undecodable => {}
        CallError::RpcMismatch { xid } => {
            w.u32(xid);
            w.u32(MSG_REPLY);
            w.u32(1); // MSG_DENIED
            w.u32(0); // RPC_MISMATCH
            w.u32(RPC_VERSION);
            w.u32(RPC_VERSION);
        }
        CallError::Auth { xid, stat } => {
            w.u32(xid);
            w.u32(MSG_REPLY);
            w.u32(1); // MSG_DENIED
            w.u32(1); // AUTH_ERROR
            w.u32(stat as u32);
        }
    }
}

/// A decoded reply header (for clients and tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyHeader {
    Accepted { xid: u32, stat: u32 },
    RpcMismatch { xid: u32, low: u32, high: u32 },
    AuthError { xid: u32, stat: u32 },
}

pub fn decode_reply(r: &mut Reader) -> crate::xdr::Result<ReplyHeader> {
    let xid = r.u32()?;
    match r.u32()? {
        MSG_REPLY => {}
        d => return Err(XdrError::BadDiscriminant(d)),
    }
    match r.u32()? {
        0 => {
            let _verf = OpaqueAuth::decode(r)?;
            Ok(ReplyHeader::Accepted {
                xid,
                stat: r.u32()?,
            })
        }
        1 => match r.u32()? {
            0 => Ok(ReplyHeader::RpcMismatch {
                xid,
                low: r.u32()?,
                high: r.u32()?,
            }),
            1 => Ok(ReplyHeader::AuthError {
                xid,
                stat: r.u32()?,
            }),
            d => Err(XdrError::BadDiscriminant(d)),
        },
        d => Err(XdrError::BadDiscriminant(d)),
    }
}

/// Why the record stream cannot continue; the connection must be closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// The record (all fragments together) would exceed the limit.
    TooLarge { len: usize, max: usize },
    /// The record has more fragments than [`RECORD_FRAGMENTS_MAX`]: no client splits a record
    /// that finely, and empty fragments would otherwise keep a connection busy forever.
    TooManyFragments,
}

/// Most fragments one record may have.
pub const RECORD_FRAGMENTS_MAX: usize = 1024;

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::TooLarge { len, max } => {
                write!(
                    f,
                    "RPC record of at least {len} bytes exceeds the limit of {max}"
                )
            }
            RecordError::TooManyFragments => {
                write!(
                    f,
                    "RPC record split into more than {RECORD_FRAGMENTS_MAX} fragments"
                )
            }
        }
    }
}

impl std::error::Error for RecordError {}

/// Splits a TCP byte stream into RPC records (RFC 5531 §11, record marking).
///
/// Feed it the connection's read buffer; it removes complete fragments from the front. A record
/// in a single fragment is returned as a slice of that buffer (no copy); multi-fragment records
/// are gathered. The size limit is checked on every fragment header, before any payload arrives.
#[derive(Debug)]
pub struct RecordDecoder {
    record_len_max: usize,
    partial: BytesMut,
    partial_active: bool,
    fragments: usize,
}

impl RecordDecoder {
    pub fn new(record_len_max: usize) -> RecordDecoder {
        RecordDecoder {
            record_len_max,
            partial: BytesMut::new(),
            partial_active: false,
            fragments: 0,
        }
    }

    /// Whether part of a record has arrived: earlier fragments held here, or bytes in `buf`.
    /// A connection uses it to time how long a record takes to arrive.
    pub fn in_record(&self, buf: &[u8]) -> bool {
        self.partial_active || !buf.is_empty()
    }

    /// Bytes the caller should have buffered before calling again, when known: the size of the
    /// fragment currently arriving, header included. Lets the caller reserve once.
    pub fn bytes_wanted(&self, buf: &[u8]) -> usize {
        if buf.len() < 4 {
            return 4;
        }
        let header = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        4 + (header & 0x7fff_ffff) as usize
    }

    /// Returns the next complete record, `Ok(None)` if more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, RecordError> {
        loop {
            if buf.len() < 4 {
                return Ok(None);
            }
            let header = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
            let last = header & 0x8000_0000 != 0;
            let len = (header & 0x7fff_ffff) as usize;
            let total = self.partial.len() + len;
            if total > self.record_len_max {
                return Err(RecordError::TooLarge {
                    len: total,
                    max: self.record_len_max,
                });
            }
            if buf.len() < 4 + len {
                return Ok(None);
            }
            buf.advance(4);
            let fragment = buf.split_to(len);
            if last && !self.partial_active {
                return Ok(Some(fragment.freeze()));
            }
            self.fragments += 1;
            if self.fragments > RECORD_FRAGMENTS_MAX {
                return Err(RecordError::TooManyFragments);
            }
            self.partial.extend_from_slice(&fragment);
            self.partial_active = true;
            if last {
                self.partial_active = false;
                self.fragments = 0;
                return Ok(Some(self.partial.split().freeze()));
            }
        }
    }
}

/// The 4-byte record mark for a single-fragment record of `len` bytes.
pub fn record_mark(len: usize) -> [u8; 4] {
    (0x8000_0000u32 | len as u32).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call_bytes(rpcvers: u32, cred: OpaqueAuth) -> Bytes {
        let mut w = Writer::new();
        w.u32(0x1234);
        w.u32(MSG_CALL);
        w.u32(rpcvers);
        w.u32(100003);
        w.u32(3);
        w.u32(1);
        cred.encode(&mut w);
        OpaqueAuth::none().encode(&mut w);
        w.u32(0xdead);
        w.into_bytes()
    }

    fn sys_cred() -> OpaqueAuth {
        let mut w = Writer::new();
        AuthSys {
            stamp: 1,
            machine_name: Bytes::from_static(b"node1"),
            uid: 1000,
            gid: 100,
            gids: vec![100, 27],
        }
        .encode(&mut w);
        OpaqueAuth {
            flavor: AUTH_SYS,
            body: w.into_bytes(),
        }
    }

    #[test]
    fn call_with_auth_sys_decodes_uid_gid_and_groups() {
        let (h, cred, mut args) = decode_call(call_bytes(2, sys_cred())).unwrap();
        assert_eq!((h.xid, h.prog, h.vers, h.proc_), (0x1234, 100003, 3, 1));
        match cred {
            Credential::Sys(s) => assert_eq!((s.uid, s.gid, s.gids), (1000, 100, vec![100, 27])),
            other => panic!("{other:?}"),
        }
        assert_eq!(args.u32().unwrap(), 0xdead);
    }

    #[test]
    fn call_with_rpc_version_3_is_an_rpc_mismatch() {
        let err = decode_call(call_bytes(3, OpaqueAuth::none())).unwrap_err();
        assert_eq!(err, CallError::RpcMismatch { xid: 0x1234 });
    }

    #[test]
    fn call_with_unknown_flavor_is_rejected_cred() {
        let cred = OpaqueAuth {
            flavor: 6,
            body: Bytes::new(),
        };
        let err = decode_call(call_bytes(2, cred)).unwrap_err();
        assert!(matches!(
            err,
            CallError::Auth {
                stat: AuthStat::RejectedCred,
                ..
            }
        ));
    }

    #[test]
    fn auth_sys_with_seventeen_groups_is_a_bad_credential() {
        let mut w = Writer::new();
        w.u32(1);
        w.opaque(b"n");
        w.u32(0);
        w.u32(0);
        w.u32(17);
        for g in 0..17 {
            w.u32(g);
        }
        let cred = OpaqueAuth {
            flavor: AUTH_SYS,
            body: w.into_bytes(),
        };
        let err = decode_call(call_bytes(2, cred)).unwrap_err();
        assert!(matches!(
            err,
            CallError::Auth {
                stat: AuthStat::BadCred,
                ..
            }
        ));
    }

    #[test]
    fn single_fragment_record_is_returned_without_copy() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&record_mark(8));
        buf.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let base = buf.as_ptr() as usize;
        let mut d = RecordDecoder::new(1024);
        let rec = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(&rec[..], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(rec.as_ptr() as usize, base + 4);
    }

    #[test]
    fn multi_fragment_record_is_reassembled_across_partial_reads() {
        let mut stream = Vec::new();
        stream.extend_from_slice(&3u32.to_be_bytes());
        stream.extend_from_slice(b"abc");
        stream.extend_from_slice(&record_mark(2));
        stream.extend_from_slice(b"de");
        let mut d = RecordDecoder::new(1024);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in stream {
            buf.extend_from_slice(&[b]);
            if let Some(r) = d.decode(&mut buf).unwrap() {
                out.push(r);
            }
        }
        assert_eq!(out, vec![Bytes::from_static(b"abcde")]);
    }

    #[test]
    fn oversized_fragment_header_is_refused_before_its_payload_arrives() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&record_mark(1 << 30));
        let mut d = RecordDecoder::new(1 << 20);
        assert!(matches!(
            d.decode(&mut buf),
            Err(RecordError::TooLarge { .. })
        ));
    }

    #[test]
    fn endless_empty_fragments_are_refused() {
        let mut buf = BytesMut::new();
        for _ in 0..=RECORD_FRAGMENTS_MAX {
            buf.extend_from_slice(&0u32.to_be_bytes());
        }
        let mut d = RecordDecoder::new(1 << 20);
        assert_eq!(d.decode(&mut buf), Err(RecordError::TooManyFragments));
    }

    #[test]
    fn a_record_is_in_progress_between_its_fragments() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&1u32.to_be_bytes());
        buf.extend_from_slice(b"a");
        let mut d = RecordDecoder::new(1024);
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert!(buf.is_empty());
        assert!(
            d.in_record(&buf),
            "the first fragment is held by the decoder"
        );
    }

    #[test]
    fn many_small_fragments_cannot_exceed_the_record_limit() {
        let mut buf = BytesMut::new();
        for _ in 0..10 {
            buf.extend_from_slice(&100u32.to_be_bytes());
            buf.extend_from_slice(&[0u8; 100]);
        }
        let mut d = RecordDecoder::new(500);
        assert!(d.decode(&mut buf).is_err());
    }
}
