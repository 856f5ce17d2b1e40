#![no_main]
//! The RPC-over-RDMA transport header and both plans built from it: no panic, and every plan
//! stays inside the message and the chunks the peer offered.
use bytes::Bytes;
use nfs_proto::rpcrdma::{decode_header, encode_error, CallPlan, Piece, ReplyPlan};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let msg = Bytes::copy_from_slice(data);
    let hdr = match decode_header(&msg) {
        Ok(h) => h,
        Err(e) => {
            let _ = encode_error(&e, 32);
            return;
        }
    };
    assert!(hdr.len <= msg.len());
    let inline_len = msg.len() - hdr.len;
    if let Ok(plan) = CallPlan::new(&hdr, inline_len) {
        for p in &plan.pieces {
            match p {
                Piece::Inline { from, to } => {
                    assert!(from.end <= inline_len);
                    assert!(to + from.len() <= plan.len);
                }
                Piece::Read { segment, to } => assert!(to + segment.length as usize <= plan.len),
            }
        }
    }
    // Reply sizes from the message's tail bytes.
    let n = |i: usize| data.get(data.len().wrapping_sub(i)).copied().unwrap_or(0) as usize;
    let (head, payload, tail) = (n(1) * 64, n(2) * 4099, n(3) * 8);
    let writes_ok = |ws: &[nfs_proto::rpcrdma::Write], len: usize| {
        assert!(ws.iter().all(|w| w.src + w.len as usize <= len));
    };
    match ReplyPlan::new(&hdr, 16, head, payload, tail, 1024 + n(4) * 16) {
        ReplyPlan::Inline { payload_writes, .. } => writes_ok(&payload_writes, payload),
        ReplyPlan::ReplyChunk {
            payload_writes,
            message_writes,
            ..
        } => {
            writes_ok(&payload_writes, payload);
            writes_ok(&message_writes, head + payload + 3 + tail);
        }
        ReplyPlan::Error { header } => assert!(!header.is_empty()),
    }
});
