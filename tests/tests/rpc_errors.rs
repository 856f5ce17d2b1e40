//! The RPC layer answers malformed, unsupported and hostile calls the way RFC 5531 says, and a
//! hostile connection never disturbs the others.

use std::io::Read;
use std::time::{Duration, Instant};

use nfs_proto::rpc::{ReplyHeader, AUTH_SYS};
use nfs_proto::v3::{self, proc3};
use nfs_proto::xdr::Reader;
use sluice_tests::{accept, parse_reply, Auth, RpcClient, Sluice};

fn accepted_stat(rec: bytes::Bytes) -> (u32, Reader) {
    match parse_reply(rec) {
        (ReplyHeader::Accepted { stat, .. }, r) => (stat, r),
        (other, _) => panic!("expected an accepted reply, got {other:?}"),
    }
}

#[test]
fn unknown_program_is_prog_unavail() {
    let s = Sluice::start_memory();
    let mut c = s.client();
    let (stat, _) = accepted_stat(c.call(200_999, 1, 0, &[]));
    assert_eq!(stat, accept::PROG_UNAVAIL);
}

#[test]
fn nfs_versions_2_and_5_are_prog_mismatch_offering_3_to_4() {
    let s = Sluice::start_memory();
    let mut c = s.client();
    for vers in [2, 5] {
        let (stat, mut r) = accepted_stat(c.call(v3::PROGRAM, vers, 0, &[]));
        assert_eq!(stat, accept::PROG_MISMATCH, "NFS v{vers}");
        assert_eq!((r.u32().unwrap(), r.u32().unwrap()), (3, 4), "NFS v{vers}");
    }
}

#[test]
fn nfs_procedure_22_is_proc_unavail() {
    let s = Sluice::start_memory();
    let mut c = s.client();
    let (stat, _) = accepted_stat(c.call(v3::PROGRAM, 3, 22, &[]));
    assert_eq!(stat, accept::PROC_UNAVAIL);
}

#[test]
fn truncated_getattr_arguments_are_garbage_args() {
    let s = Sluice::start_memory();
    let mut c = s.client();
    // A handle that claims 40 bytes but carries 10.
    let mut args = 40u32.to_be_bytes().to_vec();
    args.extend_from_slice(&[1u8; 10]);
    let (stat, _) = accepted_stat(c.call(v3::PROGRAM, 3, proc3::GETATTR, &args));
    assert_eq!(stat, accept::GARBAGE_ARGS);
    // The connection is still usable.
    let (stat, _) = accepted_stat(c.call(v3::PROGRAM, 3, proc3::NULL, &[]));
    assert_eq!(stat, accept::SUCCESS);
}

#[test]
fn rpc_version_3_is_denied_with_rpc_mismatch_2_to_2() {
    let s = Sluice::start_memory();
    let mut c = s.client();
    let xid = c.next_xid();
    let mut body = c.encode_call(xid, v3::PROGRAM, 3, proc3::NULL, &[]);
    body[8..12].copy_from_slice(&3u32.to_be_bytes()); // rpcvers
    c.send_record(&body).unwrap();
    let (h, _) = parse_reply(c.read_record().unwrap());
    assert_eq!(
        h,
        ReplyHeader::RpcMismatch {
            xid,
            low: 2,
            high: 2
        }
    );
}

#[test]
fn unknown_auth_flavor_is_denied_with_auth_error() {
    let s = Sluice::start_memory();
    let mut c = s.client();
    let xid = c.next_xid();
    let mut body = c.encode_call(xid, v3::PROGRAM, 3, proc3::NULL, &[]);
    // Credential flavor follows xid, msg_type, rpcvers, prog, vers, proc.
    assert_eq!(&body[24..28], &AUTH_SYS.to_be_bytes());
    body[24..28].copy_from_slice(&9999u32.to_be_bytes());
    c.send_record(&body).unwrap();
    let (h, _) = parse_reply(c.read_record().unwrap());
    match h {
        ReplyHeader::AuthError { xid: got, stat } => {
            assert_eq!(got, xid);
            // AUTH_BADCRED (1) or AUTH_REJECTEDCRED (2); sluice uses REJECTEDCRED.
            assert_eq!(stat, 2, "auth_stat");
        }
        other => panic!("expected AUTH_ERROR, got {other:?}"),
    }
}

#[test]
fn record_mark_claiming_one_gib_closes_that_connection_only() {
    let s = Sluice::start_memory();
    let mut bad = s.client();
    let mut good = s.client();
    bad.send_raw(&(0x8000_0000u32 | (1 << 30)).to_be_bytes())
        .unwrap();
    bad.send_raw(&[0u8; 64]).unwrap();
    let started = Instant::now();
    bad.stream()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 16];
    match bad.stream().read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("server answered {n} bytes to a 1 GiB record mark"),
        Err(e) => assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "server kept the connection open: {e}"
        ),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // The other connection, and new ones, are still served.
    let (stat, _) = accepted_stat(good.call(v3::PROGRAM, 3, proc3::NULL, &[]));
    assert_eq!(stat, accept::SUCCESS);
    let mut fresh = s.client();
    let (stat, _) = accepted_stat(fresh.call(v3::PROGRAM, 3, proc3::NULL, &[]));
    assert_eq!(stat, accept::SUCCESS);
}

#[test]
fn null_call_split_into_three_fragments_is_answered() {
    let s = Sluice::start_memory();
    let mut c = s.client();
    let xid = c.next_xid();
    let body = c.encode_call(xid, v3::PROGRAM, 3, proc3::NULL, &[]);
    let (a, rest) = body.split_at(7);
    let (b, last) = rest.split_at(13);
    let mut wire = Vec::new();
    for (frag, is_last) in [(a, false), (b, false), (last, true)] {
        let mark = frag.len() as u32 | if is_last { 0x8000_0000 } else { 0 };
        wire.extend_from_slice(&mark.to_be_bytes());
        wire.extend_from_slice(frag);
    }
    c.send_raw(&wire).unwrap();
    let (h, _) = parse_reply(c.read_record().unwrap());
    assert_eq!(h, ReplyHeader::Accepted { xid, stat: 0 });
}

#[test]
fn null_is_answered_with_auth_none_and_auth_sys() {
    let s = Sluice::start_memory();
    for auth in [Auth::None, Auth::user(1000, 1000), Auth::root()] {
        let mut c = RpcClient::connect(s.nfs).unwrap().with_auth(auth.clone());
        let (stat, r) = accepted_stat(c.call(v3::PROGRAM, 3, proc3::NULL, &[]));
        assert_eq!(stat, accept::SUCCESS, "{auth:?}");
        assert_eq!(r.remaining(), 0, "NULL returns no results ({auth:?})");
        // MOUNT NULL on the MOUNT port as well.
        let mut m = RpcClient::connect(s.mount).unwrap().with_auth(auth.clone());
        let (stat, _) = accepted_stat(m.call(nfs_proto::mount::PROGRAM, 3, 0, &[]));
        assert_eq!(stat, accept::SUCCESS, "MOUNT NULL {auth:?}");
    }
}

#[test]
fn empty_record_is_dropped_and_the_connection_keeps_working() {
    let s = Sluice::start_memory();
    let mut c = s.client();
    c.send_raw(&0x8000_0000u32.to_be_bytes()).unwrap();
    let (stat, _) = accepted_stat(c.call(v3::PROGRAM, 3, proc3::NULL, &[]));
    assert_eq!(stat, accept::SUCCESS);
}

#[test]
fn pipelined_calls_are_all_answered() {
    let s = Sluice::start_memory();
    let mut c = s.client();
    let first = c.next_xid();
    let mut wire = Vec::new();
    for i in 0..300u32 {
        let body = c.encode_call(first + i, v3::PROGRAM, 3, proc3::NULL, &[]);
        wire.extend_from_slice(&nfs_proto::rpc::record_mark(body.len()));
        wire.extend_from_slice(&body);
    }
    c.send_raw(&wire).unwrap();
    let mut xids = std::collections::BTreeSet::new();
    for _ in 0..300 {
        match parse_reply(c.read_record().unwrap()).0 {
            ReplyHeader::Accepted { xid, stat: 0 } => assert!(xids.insert(xid)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(xids, (first..first + 300).collect());
}

#[test]
fn one_mib_write_is_accepted_and_a_larger_payload_is_garbage_args() {
    let s = Sluice::start_memory();
    let (mut c, root) = s.mounted("/");
    let fh = c.create(&root, "big").unwrap();
    let data = vec![0xa5u8; 1 << 20];
    let w = c.write(&fh, 0, &data, v3::StableHow::FileSync).unwrap();
    assert_eq!(w.count, 1 << 20);
    assert_eq!(c.read_all(&fh).unwrap(), data);
    let too_big = v3::Nfs3Call::Write {
        file: fh.clone(),
        offset: 0,
        count: (1 << 20) + 4,
        stable: v3::StableHow::Unstable,
        data: bytes::Bytes::from(vec![1u8; (1 << 20) + 4]),
    };
    let (stat, _) = accepted_stat(c.call(
        v3::PROGRAM,
        3,
        proc3::WRITE,
        &sluice_tests::encode(&too_big),
    ));
    assert_eq!(stat, accept::GARBAGE_ARGS);
    assert_eq!(c.getattr(&fh).unwrap().size, 1 << 20, "nothing written");
}
