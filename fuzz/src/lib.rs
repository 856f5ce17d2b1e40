//! Shared bodies of the fuzz targets. Each decoder must never panic, and whatever it accepts
//! must re-encode to exactly the bytes it came from (XDR is canonical once padding must be zero
//! and booleans 0 or 1), so decode and encode agree.

use bytes::{Bytes, BytesMut};
use nfs_proto::mount::MountCall;
use nfs_proto::portmap::{Mapping, Rpcb};
use nfs_proto::rpc::{self, RecordDecoder};
use nfs_proto::v3::Nfs3Call;
use nfs_proto::xdr::{Encode, Reader, Writer};

/// The record-marking parser over a stream delivered in chunks whose sizes come from the input.
pub fn rpc_record(data: &[u8]) {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let chunk = (chunk as usize % 64) + 1;
    let limit = 4096;
    let mut d = RecordDecoder::new(limit);
    let mut buf = BytesMut::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(rec)) => assert!(rec.len() <= limit),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// The call header decoder; an accepted header re-encodes to the same prefix.
pub fn rpc_call(data: &[u8]) {
    let input = Bytes::copy_from_slice(data);
    if let Ok((hdr, _cred, args)) = rpc::decode_call(input.clone()) {
        let mut w = Writer::new();
        rpc::encode_call(&mut w, &hdr);
        let consumed = args.position();
        assert_eq!(&w.into_bytes()[..], &input[..consumed]);
    }
}

/// The argument decoder of NFSv3 procedure `proc_`.
pub fn nfs3_args(proc_: u32, data: &[u8]) {
    let input = Bytes::copy_from_slice(data);
    let mut r = Reader::new(input.clone());
    if let Ok(Some(call)) = Nfs3Call::decode(proc_, &mut r) {
        assert_eq!(call.proc_(), proc_);
        let mut w = Writer::new();
        call.encode(&mut w);
        assert_eq!(w.into_bytes(), input);
    }
}

/// The argument decoder of MOUNT procedure `proc_`.
pub fn mount_args(proc_: u32, data: &[u8]) {
    let input = Bytes::copy_from_slice(data);
    let mut r = Reader::new(input.clone());
    if let Ok(Some(call)) = MountCall::decode(proc_, &mut r) {
        let mut w = Writer::new();
        call.encode(&mut w);
        assert_eq!(w.into_bytes(), input);
    }
}

/// portmap v2 `mapping` and rpcbind `rpcb` arguments.
pub fn portmap_args(data: &[u8]) {
    let input = Bytes::copy_from_slice(data);
    let mut r = Reader::new(input.clone());
    if let Ok(m) = Mapping::decode(&mut r) {
        let mut w = Writer::new();
        m.encode(&mut w);
        assert_eq!(&w.into_bytes()[..], &input[..16]);
    }
    let mut r = Reader::new(input.clone());
    if let Ok(b) = Rpcb::decode(&mut r) {
        let mut w = Writer::new();
        b.encode(&mut w);
        assert_eq!(&w.into_bytes()[..], &input[..r.position()]);
    }
}

/// The argument decoder of NLM v4 procedure `proc_`.
pub fn nlm_args(proc_: u32, data: &[u8]) {
    let input = Bytes::copy_from_slice(data);
    let mut r = Reader::new(input.clone());
    if let Ok(Some(args)) = nfs_proto::nlm::NlmArgs::decode(proc_, &mut r) {
        let mut w = Writer::new();
        args.encode(&mut w);
        assert_eq!(w.into_bytes(), input);
    }
}

/// The argument decoder of NSM procedure `proc_` (decode only: we never send most of these).
pub fn nsm_args(proc_: u32, data: &[u8]) {
    let mut r = Reader::new(Bytes::copy_from_slice(data));
    let _ = nfs_proto::nlm::NsmArgs::decode(proc_, &mut r);
}

/// The NFSv4.1 COMPOUND decoder. Whatever it accepts re-encodes to exactly the input when every
/// op decoded; when decoding stopped early, the ops it did decode re-encode to a compound that
/// decodes to the same ops. Error results for those ops encode and decode back too.
pub fn v4_compound(data: &[u8]) {
    use nfs_proto::v4::{Compound4Args, Compound4Res, DecodeStop, NfsResOp4, Nfsstat4};
    let input = Bytes::copy_from_slice(data);
    let Ok(first) = Compound4Args::decode(&mut Reader::new(input.clone())) else {
        return;
    };
    assert!(first.args.argarray.len() <= nfs_proto::limits::COMPOUND_OPS_MAX as usize);
    let mut w = Writer::new();
    first.args.encode(&mut w);
    let bytes = w.into_bytes();
    if first.stop.is_none() {
        assert_eq!(bytes, input);
    }
    let again = Compound4Args::decode(&mut Reader::new(bytes))
        .unwrap_or_else(|e| panic!("re-encoded compound does not decode: {e}"));
    assert_eq!(again.args, first.args);
    match first.stop {
        Some(DecodeStop::MinorVersMismatch) => {
            assert_eq!(again.stop, Some(DecodeStop::MinorVersMismatch))
        }
        _ => assert_eq!(again.stop, None),
    }
    for op in &first.args.argarray {
        v4_sattr(op);
    }
    let mut resarray: Vec<NfsResOp4> = first
        .args
        .argarray
        .iter()
        .map(|op| NfsResOp4::error(op.opnum(), Nfsstat4::Delay))
        .collect();
    if let Some(DecodeStop::Op { opnum, status, .. }) = first.stop {
        resarray.push(NfsResOp4::error(opnum, status));
    }
    let reply = Compound4Res {
        status: resarray.last().map_or(Nfsstat4::Ok, NfsResOp4::status),
        tag: first.args.tag.clone(),
        resarray,
    };
    let back = Compound4Res::decode(&mut Reader::new(reply.to_bytes()))
        .unwrap_or_else(|e| panic!("error results do not decode: {e}"));
    assert_eq!(back, reply);
}

/// The COMPOUND4res decoder (the test client's side); canonical like the argument decoders.
pub fn v4_compound_res(data: &[u8]) {
    use nfs_proto::v4::Compound4Res;
    let input = Bytes::copy_from_slice(data);
    if let Ok(res) = Compound4Res::decode(&mut Reader::new(input.clone())) {
        assert_eq!(res.to_bytes(), input);
    }
}

/// The CB_COMPOUND4res decoder: a client's answer to our callback.
pub fn v4_cb_compound_res(data: &[u8]) {
    use nfs_proto::v4::CbCompound4Res;
    use nfs_proto::xdr::Decode;
    let input = Bytes::copy_from_slice(data);
    if let Ok(res) = CbCompound4Res::decode(&mut Reader::new(input.clone())) {
        let mut w = Writer::new();
        res.encode(&mut w);
        assert_eq!(w.into_bytes(), input);
    }
}

/// Settable attributes in an op's fattr4 decode without panicking, and what decodes survives
/// `to_fattr` and a second decode.
fn v4_sattr(op: &nfs_proto::v4::NfsArgOp4) {
    use nfs_proto::v4::{CreateHow4, NfsArgOp4, Sattr4};
    let fattr = match op {
        NfsArgOp4::Setattr(a) => &a.obj_attributes,
        NfsArgOp4::Create(a) => &a.createattrs,
        NfsArgOp4::Verify(f) | NfsArgOp4::Nverify(f) => f,
        NfsArgOp4::Open(a) => match &a.openhow.0 {
            Some(CreateHow4::Unchecked(f) | CreateHow4::Guarded(f)) => f,
            Some(CreateHow4::Exclusive41 { attrs, .. }) => attrs,
            _ => return,
        },
        _ => return,
    };
    if let Ok(s) = Sattr4::decode(fattr) {
        assert_eq!(Sattr4::decode(&s.to_fattr()), Ok(s));
    }
}
