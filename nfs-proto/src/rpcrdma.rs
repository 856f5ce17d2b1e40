//! RPC-over-RDMA version 1 (RFC 8166) with the NFS upper-layer binding (RFC 8267) and the
//! connection-parameter private data (RFC 8797), without I/O.
//!
//! A transport that owns the verbs calls three things from here:
//!
//! * [`decode_header`] on every received message: the transport header with its read list,
//!   write list and reply chunk, every count and length bounded before anything is allocated.
//!   A malformed header is a [`HeaderError`], which [`encode_error`] turns into the RDMA_ERROR
//!   the RFC prescribes.
//! * [`CallPlan::new`]: where each byte of the RPC call comes from. The inline part of the
//!   message and the read chunks (pulled with RDMA Read) are laid out into one record; the
//!   transport reads each chunk straight to its place, so a WRITE payload lands once.
//! * [`ReplyPlan::new`]: how a reply of `head`, `payload` (a READ's data) and `tail` goes back.
//!   The payload is pushed with RDMA Write into the client's write chunk and left out of the
//!   inline message (RFC 8166 §3.5.5, "reduced" data item, no XDR roundup). A message too
//!   large to send inline goes into the reply chunk and the header says RDMA_NOMSG.
//!
//! Positions in the read list are byte offsets into the reassembled RPC message. The Linux
//! client sends either one position-zero chunk (RDMA_NOMSG: the whole call) or one chunk at the
//! offset of a WRITE's data; both are handled, and so are several chunks in ascending order.

use std::ops::Range;

use bytes::Bytes;

use crate::limits::RECORD_LEN_MAX;
use crate::xdr::{pad_len, Reader, Writer, XdrError};

/// The only version we speak.
pub const VERSION: u32 = 1;
/// IANA port for NFS over RDMA (RFC 8267 §6).
pub const NFS_RDMA_PORT: u16 = 20049;

/// `rdma_proc` values.
pub mod proc_ {
    pub const RDMA_MSG: u32 = 0;
    pub const RDMA_NOMSG: u32 = 1;
    pub const RDMA_MSGP: u32 = 2;
    pub const RDMA_DONE: u32 = 3;
    pub const RDMA_ERROR: u32 = 4;
}

/// `rpc_rdma_errcode` values.
pub const ERR_VERS: u32 = 1;
pub const ERR_CHUNK: u32 = 2;

/// Segments in the read list of one call. The Linux client uses at most a few (one memory
/// registration covers a whole 1 MiB payload with FRWR); the receive buffer bounds it anyway.
pub const READ_SEGMENTS_MAX: usize = 64;
/// Write chunks in one call's write list (the Linux client sends at most one).
pub const WRITE_CHUNKS_MAX: usize = 4;
/// Segments in one write chunk or the reply chunk.
pub const CHUNK_SEGMENTS_MAX: usize = 64;
/// Fixed part of the transport header: xid, vers, credits, proc.
pub const HEADER_FIXED_LEN: usize = 16;
/// Smallest header of a call: the fixed part plus three empty lists.
pub const HEADER_MIN_LEN: usize = HEADER_FIXED_LEN + 12;

/// One registered remote memory region (`xdr_rdma_segment`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub handle: u32,
    pub length: u32,
    pub offset: u64,
}

/// A read-list entry: a segment and where its bytes go in the RPC message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadSegment {
    pub position: u32,
    pub segment: Segment,
}

/// A decoded transport header of a call (RDMA_MSG or RDMA_NOMSG).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub xid: u32,
    pub credits: u32,
    /// [`proc_::RDMA_MSG`] or [`proc_::RDMA_NOMSG`].
    pub proc_: u32,
    pub reads: Vec<ReadSegment>,
    pub writes: Vec<Vec<Segment>>,
    pub reply: Option<Vec<Segment>>,
    /// Bytes of the header; the inline RPC message follows.
    pub len: usize,
}

/// Why a received message cannot be processed. Every variant with an xid is answered with
/// RDMA_ERROR; the rest are dropped (there is nobody to answer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Shorter than the fixed header: no xid to answer.
    Runt(usize),
    /// An RDMA_ERROR from the peer (it is not a call, and answering errors with errors could
    /// loop): dropped.
    NotACall { xid: u32 },
    /// Not version 1: answer ERR_VERS (RFC 8166 §5.3.2).
    Version { xid: u32, vers: u32 },
    /// A malformed or unsupported header (bad proc, list over its limit, truncated, chunks
    /// that do not fit the message): answer ERR_CHUNK.
    Chunk { xid: u32, why: &'static str },
}

impl HeaderError {
    /// The xid to answer with RDMA_ERROR, if any.
    pub fn xid(&self) -> Option<u32> {
        match self {
            HeaderError::Runt(_) | HeaderError::NotACall { .. } => None,
            HeaderError::Version { xid, .. } | HeaderError::Chunk { xid, .. } => Some(*xid),
        }
    }
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Runt(n) => write!(f, "runt RPC-over-RDMA message of {n} bytes"),
            HeaderError::NotACall { .. } => write!(f, "RDMA_ERROR from the peer"),
            HeaderError::Version { vers, .. } => write!(f, "RPC-over-RDMA version {vers}"),
            HeaderError::Chunk { why, .. } => write!(f, "bad RPC-over-RDMA header: {why}"),
        }
    }
}

impl std::error::Error for HeaderError {}

fn segment(r: &mut Reader) -> Result<Segment, XdrError> {
    Ok(Segment {
        handle: r.u32()?,
        length: r.u32()?,
        offset: r.u64()?,
    })
}

fn segments(r: &mut Reader) -> Result<Vec<Segment>, XdrError> {
    let n = r.array_len(CHUNK_SEGMENTS_MAX as u32, 16)?;
    (0..n).map(|_| segment(r)).collect()
}

/// Decodes the transport header at the start of `msg`.
pub fn decode_header(msg: &Bytes) -> Result<Header, HeaderError> {
    if msg.len() < HEADER_FIXED_LEN {
        return Err(HeaderError::Runt(msg.len()));
    }
    let word = |i: usize| u32::from_be_bytes([msg[i], msg[i + 1], msg[i + 2], msg[i + 3]]);
    let (xid, vers, credits, proc_) = (word(0), word(4), word(8), word(12));
    if vers != VERSION {
        return Err(HeaderError::Version { xid, vers });
    }
    let chunk = |why| HeaderError::Chunk { xid, why };
    match proc_ {
        proc_::RDMA_MSG | proc_::RDMA_NOMSG => {}
        proc_::RDMA_MSGP | proc_::RDMA_DONE => return Err(chunk("deprecated procedure")),
        proc_::RDMA_ERROR => return Err(HeaderError::NotACall { xid }),
        _ => return Err(chunk("not a call")),
    }
    let mut r = Reader::new(msg.slice(HEADER_FIXED_LEN..));
    let lists = (|| -> Result<_, XdrError> {
        let mut reads = Vec::new();
        while r.bool()? {
            if reads.len() == READ_SEGMENTS_MAX {
                return Err(XdrError::TooLong {
                    len: reads.len() as u32 + 1,
                    max: READ_SEGMENTS_MAX as u32,
                });
            }
            let position = r.u32()?;
            reads.push(ReadSegment {
                position,
                segment: segment(&mut r)?,
            });
        }
        let mut writes = Vec::new();
        while r.bool()? {
            if writes.len() == WRITE_CHUNKS_MAX {
                return Err(XdrError::TooLong {
                    len: writes.len() as u32 + 1,
                    max: WRITE_CHUNKS_MAX as u32,
                });
            }
            writes.push(segments(&mut r)?);
        }
        let reply = r.optional(segments)?;
        Ok((reads, writes, reply))
    })();
    let (reads, writes, reply) = lists.map_err(|e| match e {
        XdrError::Truncated => chunk("truncated chunk lists"),
        XdrError::TooLong { .. } => chunk("too many chunks or segments"),
        _ => chunk("malformed chunk lists"),
    })?;
    Ok(Header {
        xid,
        credits,
        proc_,
        reads,
        writes,
        reply,
        len: HEADER_FIXED_LEN + r.position(),
    })
}

/// Encodes an RDMA_ERROR answering `err` (nothing for a runt).
pub fn encode_error(err: &HeaderError, credits: u32) -> Option<Bytes> {
    let xid = err.xid()?;
    let mut w = Writer::with_capacity(28);
    w.u32(xid);
    w.u32(VERSION);
    w.u32(credits);
    w.u32(proc_::RDMA_ERROR);
    match err {
        HeaderError::Version { .. } => {
            w.u32(ERR_VERS);
            w.u32(VERSION);
            w.u32(VERSION);
        }
        _ => w.u32(ERR_CHUNK),
    }
    Some(w.into_bytes())
}

/// Where one piece of the reassembled RPC call comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Bytes `from` of the received message (after the transport header) go to `to`.
    Inline { from: Range<usize>, to: usize },
    /// The segment's bytes are pulled with RDMA Read to `to`.
    Read { segment: Segment, to: usize },
}

/// The layout of one RPC call: a record of `len` bytes made of `pieces`. Bytes no piece covers
/// are the XDR roundup after a read chunk and must be zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallPlan {
    pub len: usize,
    pub pieces: Vec<Piece>,
}

impl CallPlan {
    /// Lays out the call carried by `hdr` with `inline_len` bytes after the header.
    pub fn new(hdr: &Header, inline_len: usize) -> Result<CallPlan, HeaderError> {
        let chunk = |why| HeaderError::Chunk { xid: hdr.xid, why };
        let mut pieces = Vec::with_capacity(hdr.reads.len() * 2 + 1);
        let mut out = 0usize; // bytes laid out so far
        let mut inline = 0usize; // inline bytes consumed so far
        let mut reads = hdr.reads.iter().peekable();
        if hdr.proc_ == proc_::RDMA_NOMSG {
            // The whole message is the position-zero chunk.
            if inline_len != 0 {
                return Err(chunk("RDMA_NOMSG with an inline message"));
            }
            if reads.peek().is_none_or(|r| r.position != 0) {
                return Err(chunk("RDMA_NOMSG without a position-zero read chunk"));
            }
            while let Some(r) = reads.next_if(|r| r.position == 0) {
                out = add_read(&mut pieces, out, r.segment).ok_or(chunk("call too large"))?;
            }
            if reads.peek().is_some() {
                return Err(chunk("read chunks after a position-zero chunk"));
            }
            return Ok(CallPlan { len: out, pieces });
        }
        while let Some(first) = reads.peek().copied() {
            let position = first.position as usize;
            if position == 0 {
                return Err(chunk("position-zero read chunk in RDMA_MSG"));
            }
            if position < out || position - out > inline_len - inline {
                return Err(chunk("read chunk position outside the message"));
            }
            if position & 3 != 0 {
                return Err(chunk("read chunk position not XDR-aligned"));
            }
            let take = position - out;
            if take > 0 {
                pieces.push(Piece::Inline {
                    from: inline..inline + take,
                    to: out,
                });
                inline += take;
                out += take;
            }
            while let Some(r) = reads.next_if(|r| r.position == first.position) {
                out = add_read(&mut pieces, out, r.segment).ok_or(chunk("call too large"))?;
            }
            out += pad_len(out);
        }
        if inline < inline_len {
            pieces.push(Piece::Inline {
                from: inline..inline_len,
                to: out,
            });
            out += inline_len - inline;
        }
        if out > RECORD_LEN_MAX {
            return Err(chunk("call too large"));
        }
        Ok(CallPlan { len: out, pieces })
    }

    /// Bytes pulled with RDMA Read.
    pub fn read_len(&self) -> usize {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Read { segment, .. } => segment.length as usize,
                Piece::Inline { .. } => 0,
            })
            .sum()
    }
}

fn add_read(pieces: &mut Vec<Piece>, out: usize, segment: Segment) -> Option<usize> {
    let end = out.checked_add(segment.length as usize)?;
    if end > RECORD_LEN_MAX {
        return None;
    }
    if segment.length > 0 {
        pieces.push(Piece::Read { segment, to: out });
    }
    Some(end)
}

/// One RDMA Write: `len` bytes from `src` (an offset into the part it names) to a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Write {
    pub src: usize,
    pub len: u32,
    pub handle: u32,
    pub remote_offset: u64,
}

/// How the reply goes out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyPlan {
    /// Send `header` followed inline by head and tail (and by the payload and its roundup when
    /// `payload_inline`). `payload_writes` push the payload into the write chunk first.
    Inline {
        header: Bytes,
        payload_inline: bool,
        payload_writes: Vec<Write>,
    },
    /// Write the message (head, then payload and its roundup unless `payload_writes` moved
    /// it, then tail) into the reply chunk with `message_writes` (offsets into that logical
    /// message), then send `header` alone (RDMA_NOMSG).
    ReplyChunk {
        header: Bytes,
        payload_writes: Vec<Write>,
        message_writes: Vec<Write>,
    },
    /// The reply fits none of what the client offered: send `header` (an RDMA_ERROR with
    /// ERR_CHUNK) instead.
    Error { header: Bytes },
}

impl ReplyPlan {
    /// Plans a reply of `head_len` + `payload_len` (+ roundup) + `tail_len` bytes to the call
    /// `hdr`, when at most `inline_max` bytes (transport header included) may be sent inline.
    pub fn new(
        hdr: &Header,
        credits: u32,
        head_len: usize,
        payload_len: usize,
        tail_len: usize,
        inline_max: usize,
    ) -> ReplyPlan {
        // A READ's data goes into the first write chunk that holds it (RFC 8267 §2.2: only the
        // opaque data of READ and READLINK results is DDP-eligible, and the client offers a
        // write chunk only for those).
        let chunk_cap = |c: &[Segment]| c.iter().map(|s| s.length as u64).sum::<u64>();
        let used = if payload_len > 0 {
            hdr.writes
                .iter()
                .position(|c| chunk_cap(c) >= payload_len as u64)
        } else {
            None
        };
        let mut payload_writes = Vec::new();
        let mut written = vec![0u64; hdr.writes.len()];
        if let Some(i) = used {
            written[i] = payload_len as u64;
            payload_writes = fill(&hdr.writes[i], payload_len);
        }
        let payload_in_message = if used.is_some() {
            0
        } else {
            payload_len + pad_len(payload_len)
        };
        let message_len = head_len + payload_in_message + tail_len;
        // The write list goes back with the bytes actually written in each segment.
        let mut w = Writer::with_capacity(64);
        w.u32(hdr.xid);
        w.u32(VERSION);
        w.u32(credits);
        let proc_at = w.len();
        w.u32(proc_::RDMA_MSG);
        w.bool(false); // no read list in a reply
        for (chunk, &n) in hdr.writes.iter().zip(&written) {
            w.bool(true);
            encode_used(&mut w, chunk, n);
        }
        w.bool(false);
        let header_len_inline = w.len() + 4; // plus the absent reply chunk
        if header_len_inline + message_len <= inline_max {
            w.bool(false);
            return ReplyPlan::Inline {
                header: w.into_bytes(),
                payload_inline: used.is_none(),
                payload_writes,
            };
        }
        match &hdr.reply {
            // The RDMA_NOMSG header itself (the write list and reply chunk echoed) must fit.
            Some(chunk)
                if chunk_cap(chunk) >= message_len as u64
                    && w.len() + 8 + 16 * chunk.len() <= inline_max =>
            {
                w.patch_u32(proc_at, proc_::RDMA_NOMSG);
                w.bool(true);
                encode_used(&mut w, chunk, message_len as u64);
                ReplyPlan::ReplyChunk {
                    header: w.into_bytes(),
                    payload_writes,
                    message_writes: fill(chunk, message_len),
                }
            }
            _ => ReplyPlan::Error {
                header: encode_error(
                    &HeaderError::Chunk {
                        xid: hdr.xid,
                        why: "reply larger than the chunks offered",
                    },
                    credits,
                )
                .unwrap_or_default(),
            },
        }
    }
}

/// Spreads `len` bytes over `chunk`'s segments in order.
fn fill(chunk: &[Segment], len: usize) -> Vec<Write> {
    let mut left = len;
    let mut out = Vec::new();
    for s in chunk {
        if left == 0 {
            break;
        }
        let n = left.min(s.length as usize);
        out.push(Write {
            src: len - left,
            len: n as u32,
            handle: s.handle,
            remote_offset: s.offset,
        });
        left -= n;
    }
    out
}

/// Encodes `chunk` with each segment's length cut to what `used` bytes fill.
fn encode_used(w: &mut Writer, chunk: &[Segment], used: u64) {
    w.u32(chunk.len() as u32);
    let mut left = used;
    for s in chunk {
        let n = left.min(s.length as u64);
        left -= n;
        w.u32(s.handle);
        w.u32(n as u32);
        w.u64(s.offset);
    }
}

/// Encodes a transport header for a reply sent wholly inline with no chunks, e.g. to a call
/// that offered none.
pub fn encode_msg_header(xid: u32, credits: u32) -> Bytes {
    let mut w = Writer::with_capacity(28);
    w.u32(xid);
    w.u32(VERSION);
    w.u32(credits);
    w.u32(proc_::RDMA_MSG);
    w.bool(false);
    w.bool(false);
    w.bool(false);
    w.into_bytes()
}

/// RFC 8797 connection parameters, carried in RDMA-CM private data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectPrivate {
    pub version: u8,
    /// RPCRDMA_CMP_F_SND_W_INV_OK: the peer accepts Send With Invalidate.
    pub remote_invalidate: bool,
    /// Largest message the sender of this private data sends inline.
    pub send_size: usize,
    /// Largest message the sender of this private data receives inline.
    pub recv_size: usize,
}

/// RFC 8797 §5.1: the private data's first word.
pub const CONNECT_PRIVATE_MAGIC: u32 = 0xf6ab_0e18;
/// Inline size when the peer sends no private data (RFC 8166 §3.3.3).
pub const INLINE_SIZE_DEFAULT: usize = 1024;

impl ConnectPrivate {
    pub const LEN: usize = 8;

    /// Decodes private data; `None` when absent or not RFC 8797 (use the 1 KiB defaults).
    pub fn decode(b: &[u8]) -> Option<ConnectPrivate> {
        let b: &[u8; 8] = b.get(..8)?.try_into().ok()?;
        if u32::from_be_bytes([b[0], b[1], b[2], b[3]]) != CONNECT_PRIVATE_MAGIC {
            return None;
        }
        Some(ConnectPrivate {
            version: b[4],
            remote_invalidate: b[5] & 1 != 0,
            send_size: (b[6] as usize + 1) * 1024,
            recv_size: (b[7] as usize + 1) * 1024,
        })
    }

    /// Encodes; sizes are rounded down to a KiB and clamped to 1..256 KiB.
    pub fn encode(&self) -> [u8; 8] {
        let code = |n: usize| (n / 1024).clamp(1, 256) as u8 - 1;
        let m = CONNECT_PRIVATE_MAGIC.to_be_bytes();
        [
            m[0],
            m[1],
            m[2],
            m[3],
            self.version,
            self.remote_invalidate as u8,
            code(self.send_size),
            code(self.recv_size),
        ]
    }
}

/// Credit accounting for one connection (RFC 8166 §3.3.1). The server has receive buffers for
/// `max` calls; it grants what a client asks for up to that, and counts the calls waiting for a
/// reply. A client past `max` is broken or hostile: its call found no receive buffer, or would
/// have, had the transport not kept some slack.
#[derive(Clone, Debug)]
pub struct Credits {
    max: u32,
    outstanding: u32,
}

impl Credits {
    pub fn new(max: u32) -> Credits {
        Credits {
            max: max.max(1),
            outstanding: 0,
        }
    }

    /// The grant for a reply's header, from what the call asked for: never 0 (the client
    /// would stall), never more than `max`.
    pub fn grant(&self, requested: u32) -> u32 {
        requested.clamp(1, self.max)
    }

    /// Counts a received call; `false` when it exceeds every grant we can have made.
    pub fn call_arrived(&mut self) -> bool {
        if self.outstanding >= self.max {
            return false;
        }
        self.outstanding += 1;
        true
    }

    pub fn reply_sent(&mut self) {
        self.outstanding = self.outstanding.saturating_sub(1);
    }

    pub fn outstanding(&self) -> u32 {
        self.outstanding
    }
}

#[cfg(test)]
mod tests;
