//! The codec against a software model of the peer: a client that registers memory, builds
//! calls the way the Linux client does, lets the server's plan "RDMA Read" and "RDMA Write" its
//! memory, and rebuilds replies the way `rpcrdma_inline_fixup` does.

use std::collections::HashMap;

use super::*;

/// The client side: registered regions by handle, addressed by (handle, offset).
#[derive(Default)]
struct Peer {
    regions: HashMap<u32, (u64, Vec<u8>)>,
    next: u32,
}

impl Peer {
    fn register(&mut self, data: Vec<u8>) -> Segment {
        self.next += 1;
        let base = 0x1000_0000u64 * self.next as u64 + 0x123;
        let length = data.len() as u32;
        self.regions.insert(self.next, (base, data));
        Segment {
            handle: self.next,
            length,
            offset: base,
        }
    }

    /// A region split into segments of at most `seg` bytes, as FRWR might register it.
    fn register_split(&mut self, data: &[u8], seg: usize) -> Vec<Segment> {
        data.chunks(seg)
            .map(|c| self.register(c.to_vec()))
            .collect()
    }

    fn rdma_read(&self, s: &Segment) -> Vec<u8> {
        let (base, data) = &self.regions[&s.handle];
        let at = (s.offset - base) as usize;
        data[at..at + s.length as usize].to_vec()
    }

    fn rdma_write(&mut self, handle: u32, offset: u64, bytes: &[u8]) {
        let (base, data) = self.regions.get_mut(&handle).expect("registered");
        let at = (offset - *base) as usize;
        data[at..at + bytes.len()].copy_from_slice(bytes);
    }

    fn read_chunk(&self, chunk: &[Segment], len: usize) -> Vec<u8> {
        let mut out: Vec<u8> = chunk.iter().flat_map(|s| self.rdma_read(s)).collect();
        out.truncate(len);
        out
    }
}

/// A header with the given lists, followed by `inline`.
fn call(
    xid: u32,
    proc_: u32,
    reads: &[ReadSegment],
    writes: &[Vec<Segment>],
    reply: Option<&[Segment]>,
    inline: &[u8],
) -> Bytes {
    let mut w = Writer::new();
    w.u32(xid);
    w.u32(VERSION);
    w.u32(128);
    w.u32(proc_);
    for r in reads {
        w.bool(true);
        w.u32(r.position);
        encode_segment(&mut w, &r.segment);
    }
    w.bool(false);
    for c in writes {
        w.bool(true);
        w.u32(c.len() as u32);
        c.iter().for_each(|s| encode_segment(&mut w, s));
    }
    w.bool(false);
    match reply {
        Some(c) => {
            w.bool(true);
            w.u32(c.len() as u32);
            c.iter().for_each(|s| encode_segment(&mut w, s));
        }
        None => w.bool(false),
    }
    let mut v = w.as_slice().to_vec();
    v.extend_from_slice(inline);
    Bytes::from(v)
}

fn encode_segment(w: &mut Writer, s: &Segment) {
    w.u32(s.handle);
    w.u32(s.length);
    w.u64(s.offset);
}

/// What the server does with a plan: the record it hands to the RPC layer.
fn assemble(peer: &Peer, msg: &Bytes, hdr: &Header, plan: &CallPlan) -> Vec<u8> {
    let inline = &msg[hdr.len..];
    let mut rec = vec![0u8; plan.len];
    for p in &plan.pieces {
        match p {
            Piece::Inline { from, to } => {
                rec[*to..*to + from.len()].copy_from_slice(&inline[from.clone()])
            }
            Piece::Read { segment, to } => {
                let data = peer.rdma_read(segment);
                rec[*to..*to + data.len()].copy_from_slice(&data);
            }
        }
    }
    rec
}

/// A fake RPC message: `len` bytes of a recognisable pattern.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// A fake WRITE call: a 100-byte head ending in an opaque length, `data`, its roundup, and a
/// 12-byte tail (v4: the ops after WRITE).
fn write_call(data: &[u8]) -> (Vec<u8>, usize) {
    let mut full = pattern(96, 1);
    full.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let position = full.len();
    full.extend_from_slice(data);
    full.extend(std::iter::repeat_n(0, pad_len(data.len())));
    full.extend_from_slice(&pattern(12, 2));
    (full, position)
}

#[test]
fn an_inline_call_is_one_inline_piece() {
    let rpc = pattern(200, 7);
    let msg = call(9, proc_::RDMA_MSG, &[], &[], None, &rpc);
    let hdr = decode_header(&msg).unwrap();
    assert_eq!(hdr.len, HEADER_MIN_LEN);
    assert_eq!((hdr.xid, hdr.credits), (9, 128));
    let plan = CallPlan::new(&hdr, msg.len() - hdr.len).unwrap();
    assert_eq!(plan.read_len(), 0);
    assert_eq!(assemble(&Peer::default(), &msg, &hdr, &plan), rpc);
}

#[test]
fn a_write_payload_in_a_read_chunk_lands_at_its_position_with_roundup() {
    for data_len in [1usize, 4094, 4096, 65_537, 1 << 20] {
        let data = pattern(data_len, 3);
        let (full, position) = write_call(&data);
        let mut peer = Peer::default();
        let reads: Vec<ReadSegment> = peer
            .register_split(&data, 256 * 1024)
            .into_iter()
            .map(|segment| ReadSegment {
                position: position as u32,
                segment,
            })
            .collect();
        // Inline: everything but the data and its roundup (the Linux client drops the pad).
        let mut inline = full[..position].to_vec();
        inline.extend_from_slice(&full[position + data_len + pad_len(data_len)..]);
        let msg = call(1, proc_::RDMA_MSG, &reads, &[], None, &inline);
        let hdr = decode_header(&msg).unwrap();
        let plan = CallPlan::new(&hdr, msg.len() - hdr.len).unwrap();
        assert_eq!(plan.read_len(), data_len);
        assert_eq!(assemble(&peer, &msg, &hdr, &plan), full, "len {data_len}");
    }
}

#[test]
fn a_position_zero_chunk_carries_the_whole_call() {
    let full = pattern(10_000, 5);
    let mut peer = Peer::default();
    let reads: Vec<ReadSegment> = peer
        .register_split(&full, 4096)
        .into_iter()
        .map(|segment| ReadSegment {
            position: 0,
            segment,
        })
        .collect();
    let msg = call(2, proc_::RDMA_NOMSG, &reads, &[], None, &[]);
    let hdr = decode_header(&msg).unwrap();
    let plan = CallPlan::new(&hdr, 0).unwrap();
    assert_eq!(assemble(&peer, &msg, &hdr, &plan), full);
}

#[test]
fn chunks_that_do_not_fit_the_message_are_err_chunk() {
    let seg = Segment {
        handle: 1,
        length: 8,
        offset: 0,
    };
    let at = |position| ReadSegment {
        position,
        segment: seg,
    };
    let inline = pattern(64, 0);
    let cases: [(u32, Vec<ReadSegment>, &[u8]); 6] = [
        (proc_::RDMA_MSG, vec![at(68)], &inline), // past the inline message
        (proc_::RDMA_MSG, vec![at(6)], &inline),  // not XDR-aligned
        (proc_::RDMA_MSG, vec![at(0)], &inline),  // position zero needs NOMSG
        (proc_::RDMA_NOMSG, vec![at(0)], &inline), // NOMSG with inline bytes
        (proc_::RDMA_NOMSG, vec![at(8)], &[]),    // NOMSG without position zero
        (proc_::RDMA_NOMSG, vec![at(0), at(8)], &[]), // more after position zero
    ];
    for (i, (p, reads, inline)) in cases.into_iter().enumerate() {
        let msg = call(3, p, &reads, &[], None, inline);
        let hdr = decode_header(&msg).unwrap();
        let err = CallPlan::new(&hdr, msg.len() - hdr.len).unwrap_err();
        assert!(
            matches!(err, HeaderError::Chunk { xid: 3, .. }),
            "case {i}: {err:?}"
        );
    }
}

#[test]
fn a_read_chunk_larger_than_a_record_is_refused_before_anything_is_read() {
    let seg = Segment {
        handle: 1,
        length: u32::MAX,
        offset: 0,
    };
    let reads = [ReadSegment {
        position: 0,
        segment: seg,
    }];
    let msg = call(4, proc_::RDMA_NOMSG, &reads, &[], None, &[]);
    let hdr = decode_header(&msg).unwrap();
    assert!(CallPlan::new(&hdr, 0).is_err());
}

#[test]
fn a_read_payload_goes_into_the_write_chunk_and_out_of_the_inline_reply() {
    for payload_len in [0usize, 3, 4096, 1 << 20] {
        let mut peer = Peer::default();
        let sink = peer.register_split(&vec![0xee; 1 << 20], 300_000);
        let msg = call(
            5,
            proc_::RDMA_MSG,
            &[],
            std::slice::from_ref(&sink),
            None,
            &pattern(90, 0),
        );
        let hdr = decode_header(&msg).unwrap();
        let (head, payload, tail) = (pattern(120, 1), pattern(payload_len, 2), pattern(8, 3));
        let plan = ReplyPlan::new(&hdr, 32, head.len(), payload.len(), tail.len(), 4096);
        let ReplyPlan::Inline {
            header,
            payload_inline,
            payload_writes,
        } = plan
        else {
            panic!("expected an inline reply: {plan:?}")
        };
        for w in &payload_writes {
            let src = &payload[w.src..w.src + w.len as usize];
            peer.rdma_write(w.handle, w.remote_offset, src);
        }
        // The client's view: the header's write list says how much landed.
        let rhdr = decode_reply_header(&header);
        assert_eq!(rhdr.proc_, proc_::RDMA_MSG);
        assert_eq!(rhdr.credits, 32);
        assert!(rhdr.reply.is_none());
        let used: u64 = rhdr.writes.iter().flatten().map(|s| s.length as u64).sum();
        if payload_len == 0 {
            assert!(payload_inline);
            assert_eq!(used, 0);
            continue;
        }
        assert!(!payload_inline);
        assert_eq!(used, payload_len as u64);
        assert_eq!(peer.read_chunk(&rhdr.writes[0], payload_len), payload);
    }
}

#[test]
fn a_payload_larger_than_the_write_chunk_stays_in_the_message() {
    let mut peer = Peer::default();
    let sink = vec![peer.register(vec![0; 100])];
    let reply_chunk = peer.register_split(&vec![0; 8192], 4096);
    let msg = call(6, proc_::RDMA_MSG, &[], &[sink], Some(&reply_chunk), &[]);
    let hdr = decode_header(&msg).unwrap();
    let plan = ReplyPlan::new(&hdr, 8, 100, 200, 0, 1024);
    let ReplyPlan::Inline { payload_inline, .. } = plan else {
        panic!("{plan:?}")
    };
    assert!(payload_inline);
}

#[test]
fn a_large_reply_is_written_into_the_reply_chunk_as_rdma_nomsg() {
    let mut peer = Peer::default();
    let reply_chunk = peer.register_split(&vec![0; 64 * 1024], 16 * 1024);
    let msg = call(
        7,
        proc_::RDMA_MSG,
        &[],
        &[],
        Some(&reply_chunk),
        &pattern(40, 0),
    );
    let hdr = decode_header(&msg).unwrap();
    let message = pattern(50_001, 9); // a READDIR reply: all head
    let plan = ReplyPlan::new(&hdr, 16, message.len(), 0, 0, 4096);
    let ReplyPlan::ReplyChunk {
        header,
        payload_writes,
        message_writes,
    } = plan
    else {
        panic!("{plan:?}")
    };
    assert!(payload_writes.is_empty());
    for w in &message_writes {
        peer.rdma_write(
            w.handle,
            w.remote_offset,
            &message[w.src..w.src + w.len as usize],
        );
    }
    let rhdr = decode_reply_header(&header);
    assert_eq!(rhdr.proc_, proc_::RDMA_NOMSG);
    assert_eq!(
        header.len(),
        rhdr.len,
        "RDMA_NOMSG carries no inline message"
    );
    let chunk = rhdr.reply.expect("reply chunk returned");
    let used: usize = chunk.iter().map(|s| s.length as usize).sum();
    assert_eq!(used, message.len());
    assert_eq!(peer.read_chunk(&chunk, used), message);
}

#[test]
fn a_small_reply_to_a_call_with_a_reply_chunk_goes_inline() {
    let mut peer = Peer::default();
    let reply_chunk = vec![peer.register(vec![0; 8192])];
    let msg = call(8, proc_::RDMA_MSG, &[], &[], Some(&reply_chunk), &[]);
    let hdr = decode_header(&msg).unwrap();
    let plan = ReplyPlan::new(&hdr, 16, 300, 0, 0, 4096);
    let ReplyPlan::Inline { header, .. } = plan else {
        panic!("{plan:?}")
    };
    let rhdr = decode_reply_header(&header);
    assert_eq!(rhdr.proc_, proc_::RDMA_MSG);
    assert!(
        rhdr.reply.is_none(),
        "Linux rejects RDMA_MSG with a used reply chunk"
    );
}

#[test]
fn a_reply_chunk_whose_echo_would_not_fit_inline_is_an_err_chunk() {
    // 64 tiny segments: the RDMA_NOMSG header echoing them is over a 1 KiB inline limit.
    let mut peer = Peer::default();
    let reply_chunk = peer.register_split(&vec![0; 64 * 256], 256);
    let msg = call(14, proc_::RDMA_MSG, &[], &[], Some(&reply_chunk), &[]);
    let hdr = decode_header(&msg).unwrap();
    let plan = ReplyPlan::new(&hdr, 4, 8000, 0, 0, 1024);
    assert!(matches!(plan, ReplyPlan::Error { .. }), "{plan:?}");
    // With room for the echo it is a reply-chunk reply.
    let plan = ReplyPlan::new(&hdr, 4, 8000, 0, 0, 4096);
    assert!(matches!(plan, ReplyPlan::ReplyChunk { .. }), "{plan:?}");
}

#[test]
fn a_reply_that_fits_nothing_offered_is_an_err_chunk() {
    let msg = call(10, proc_::RDMA_MSG, &[], &[], None, &[]);
    let hdr = decode_header(&msg).unwrap();
    let ReplyPlan::Error { header } = ReplyPlan::new(&hdr, 4, 5000, 0, 0, 4096) else {
        panic!("expected an error")
    };
    assert_eq!(words(&header), [10, 1, 4, proc_::RDMA_ERROR, ERR_CHUNK]);
}

#[test]
fn another_version_is_answered_with_err_vers() {
    let mut msg = call(11, proc_::RDMA_MSG, &[], &[], None, &[]).to_vec();
    msg[7] = 2;
    let err = decode_header(&Bytes::from(msg)).unwrap_err();
    assert_eq!(err, HeaderError::Version { xid: 11, vers: 2 });
    let header = encode_error(&err, 1).unwrap();
    assert_eq!(
        words(&header),
        [11, 1, 1, proc_::RDMA_ERROR, ERR_VERS, 1, 1]
    );
}

#[test]
fn malformed_headers_are_err_chunk_and_runts_get_no_answer() {
    let good = call(12, proc_::RDMA_MSG, &[], &[], None, &[]);
    // Every truncation of a header with chunks.
    let seg = Segment {
        handle: 1,
        length: 2,
        offset: 3,
    };
    let full = call(
        12,
        proc_::RDMA_MSG,
        &[ReadSegment {
            position: 4,
            segment: seg,
        }],
        &[vec![seg, seg]],
        Some(&[seg]),
        &[],
    );
    for n in 0..full.len() {
        match decode_header(&full.slice(..n)) {
            Err(HeaderError::Runt(m)) => assert!(m < HEADER_FIXED_LEN && m == n),
            Err(HeaderError::Chunk { xid: 12, .. }) => assert!(n >= HEADER_FIXED_LEN),
            other => panic!("truncated to {n}: {other:?}"),
        }
    }
    assert!(encode_error(&HeaderError::Runt(3), 1).is_none());
    for p in [proc_::RDMA_MSGP, proc_::RDMA_DONE, 99] {
        let mut m = good.to_vec();
        m[12..16].copy_from_slice(&p.to_be_bytes());
        let err = decode_header(&Bytes::from(m)).unwrap_err();
        assert!(
            matches!(err, HeaderError::Chunk { xid: 12, .. }),
            "proc {p}"
        );
    }
    // An RDMA_ERROR from the peer is dropped, not answered.
    let mut m = good.to_vec();
    m[12..16].copy_from_slice(&proc_::RDMA_ERROR.to_be_bytes());
    let err = decode_header(&Bytes::from(m)).unwrap_err();
    assert_eq!(err, HeaderError::NotACall { xid: 12 });
    assert!(encode_error(&err, 1).is_none());
}

#[test]
fn lists_over_their_limits_are_refused() {
    let seg = Segment {
        handle: 1,
        length: 1,
        offset: 0,
    };
    let reads = vec![
        ReadSegment {
            position: 4,
            segment: seg
        };
        READ_SEGMENTS_MAX + 1
    ];
    let msg = call(13, proc_::RDMA_MSG, &reads, &[], None, &[0; 8]);
    assert!(matches!(
        decode_header(&msg),
        Err(HeaderError::Chunk { .. })
    ));
    let writes = vec![vec![seg]; WRITE_CHUNKS_MAX + 1];
    let msg = call(13, proc_::RDMA_MSG, &[], &writes, None, &[]);
    assert!(decode_header(&msg).is_err());
    let big = vec![seg; CHUNK_SEGMENTS_MAX + 1];
    let msg = call(13, proc_::RDMA_MSG, &[], &[], Some(&big), &[]);
    assert!(decode_header(&msg).is_err());
    // A segment count far beyond the bytes present is refused before allocating.
    let mut m = call(13, proc_::RDMA_MSG, &[], &[], Some(&[seg]), &[]).to_vec();
    m[28..32].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(decode_header(&Bytes::from(m)).is_err());
}

#[test]
fn connect_private_data_round_trips_and_reads_the_linux_defaults() {
    // What xprtrdma sends: magic, version 1, remote invalidate, 4 KiB each way.
    let linux = [0xf6, 0xab, 0x0e, 0x18, 1, 1, 3, 3];
    let p = ConnectPrivate::decode(&linux).unwrap();
    assert_eq!(p.send_size, 4096);
    assert_eq!(p.recv_size, 4096);
    assert!(p.remote_invalidate);
    assert_eq!(p.encode(), linux);
    assert_eq!(ConnectPrivate::decode(&[0; 56]), None);
    assert_eq!(ConnectPrivate::decode(&linux[..7]), None);
}

#[test]
fn the_credit_ledger_grants_within_bounds_and_catches_overruns() {
    let mut c = Credits::new(16);
    assert_eq!(c.grant(128), 16);
    assert_eq!(c.grant(0), 1, "a client asking for none still gets one");
    assert_eq!(c.grant(8), 8);
    for _ in 0..16 {
        assert!(c.call_arrived());
    }
    assert!(
        !c.call_arrived(),
        "the 17th outstanding call overruns every grant"
    );
    c.reply_sent();
    c.reply_sent();
    assert!(c.call_arrived());
    assert_eq!(c.outstanding(), 15);
}

fn words(b: &[u8]) -> Vec<u32> {
    b.chunks(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Decodes a reply's transport header the way the client does (the call decoder, with the
/// procedure relaxed).
fn decode_reply_header(b: &Bytes) -> Header {
    let p = u32::from_be_bytes([b[12], b[13], b[14], b[15]]);
    let mut v = b.to_vec();
    v[12..16].copy_from_slice(&proc_::RDMA_MSG.to_be_bytes());
    let mut h = decode_header(&Bytes::from(v)).unwrap();
    h.proc_ = p;
    h
}
