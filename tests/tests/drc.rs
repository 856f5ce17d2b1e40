//! The duplicate request cache: a retransmitted non-idempotent call (same xid, same arguments,
//! same client address, on the same or a new connection) gets the original reply again instead
//! of being executed twice, while a new xid is executed normally.

use bytes::Bytes;
use nfs_proto::v3::{self, proc3, Nfs3Call, NfsFh3, Sattr3};
use nfs_proto::xdr::Reader;
use sluice_tests::{encode, nfsstat, parse_reply, place, RpcClient, Sluice};

/// Sends `call` with `xid`; returns the raw reply and its nfsstat3.
fn send(c: &mut RpcClient, xid: u32, call: &Nfs3Call) -> (Bytes, u32) {
    let rec = c
        .call_xid(xid, v3::PROGRAM, 3, call.proc_(), &encode(call))
        .unwrap();
    let (h, mut r): (_, Reader) = parse_reply(rec.clone());
    assert!(
        matches!(h, nfs_proto::rpc::ReplyHeader::Accepted { stat: 0, .. }),
        "{h:?}"
    );
    (rec, r.u32().unwrap())
}

/// Runs `call` once with xid X, retransmits it on the same and on a new connection, then
/// sends it with a new xid.
fn check_retransmissions(s: &Sluice, c: &mut RpcClient, call: Nfs3Call, second_status: u32) {
    let xid = c.next_xid();
    let (first, st) = send(c, xid, &call);
    assert_eq!(st, nfsstat::OK, "first {:?}", call.proc_());

    let (again, st) = send(c, xid, &call);
    assert_eq!(st, nfsstat::OK, "retransmission on the same connection");
    assert_eq!(again, first, "the replayed reply is byte-identical");

    let mut other = s.client();
    let (again, st) = send(&mut other, xid, &call);
    assert_eq!(st, nfsstat::OK, "retransmission on a new connection");
    assert_eq!(again, first, "the replayed reply is byte-identical");

    let (_, st) = send(c, xid.wrapping_add(1000), &call);
    assert_eq!(st, second_status, "a new xid is executed again");
}

#[test]
fn retransmitted_remove_gets_the_original_ok_and_a_new_xid_gets_noent() {
    let s = Sluice::start_memory();
    let (mut c, root) = s.mounted("/");
    c.create(&root, "victim").unwrap();
    check_retransmissions(
        &s,
        &mut c,
        Nfs3Call::Remove(place(&root, "victim")),
        nfsstat::NOENT,
    );
    assert_eq!(c.lookup(&root, "victim"), Err(nfsstat::NOENT));
}

#[test]
fn retransmitted_rename_gets_the_original_ok_and_a_new_xid_gets_noent() {
    let s = Sluice::start_memory();
    let (mut c, root) = s.mounted("/");
    let fh = c.create(&root, "old").unwrap();
    check_retransmissions(
        &s,
        &mut c,
        Nfs3Call::Rename {
            from: place(&root, "old"),
            to: place(&root, "new"),
        },
        nfsstat::NOENT,
    );
    assert_eq!(c.lookup(&root, "new").unwrap(), fh);
    assert_eq!(c.lookup(&root, "old"), Err(nfsstat::NOENT));
}

#[test]
fn retransmitted_mkdir_gets_the_original_ok_and_a_new_xid_gets_exist() {
    let s = Sluice::start_memory();
    let (mut c, root) = s.mounted("/");
    check_retransmissions(
        &s,
        &mut c,
        Nfs3Call::Mkdir {
            place: place(&root, "d"),
            attr: Sattr3::default(),
        },
        nfsstat::EXIST,
    );
    let d = c.lookup(&root, "d").unwrap();
    assert_eq!(c.getattr(&d).unwrap().ftype, 2);
}

#[test]
fn same_xid_with_other_arguments_is_not_a_retransmission() {
    let s = Sluice::start_memory();
    let (mut c, root) = s.mounted("/");
    let xid = c.next_xid();
    let mk = |name: &str| Nfs3Call::Mkdir {
        place: place(&root, name),
        attr: Sattr3::default(),
    };
    let (_, st) = send(&mut c, xid, &mk("one"));
    assert_eq!(st, nfsstat::OK);
    let (_, st) = send(&mut c, xid, &mk("two"));
    assert_eq!(st, nfsstat::OK);
    c.lookup(&root, "one").unwrap();
    c.lookup(&root, "two").unwrap();
}

#[test]
fn idempotent_calls_are_not_cached() {
    // A GETATTR retransmitted after a change reports the new attributes.
    let s = Sluice::start_memory();
    let (mut c, root) = s.mounted("/");
    let fh = c.create(&root, "f").unwrap();
    let call = Nfs3Call::Getattr(NfsFh3(fh.0.clone()));
    let xid = c.next_xid();
    let args = encode(&call);
    let size = |rec: Bytes| {
        let (_, mut r) = parse_reply(rec);
        assert_eq!(r.u32().unwrap(), 0);
        sluice_tests::fattr3(&mut r).size
    };
    let a = c
        .call_xid(xid, v3::PROGRAM, 3, proc3::GETATTR, &args)
        .unwrap();
    assert_eq!(size(a), 0);
    c.write(&fh, 0, b"grown", v3::StableHow::FileSync).unwrap();
    let b = c
        .call_xid(xid, v3::PROGRAM, 3, proc3::GETATTR, &args)
        .unwrap();
    assert_eq!(size(b), 5);
}

#[test]
fn exclusive_create_retry_with_the_same_verifier_returns_the_same_file() {
    let s = Sluice::start_memory();
    let (mut c, root) = s.mounted("/");
    let how = |v: u8| nfs_proto::v3::CreateHow3::Exclusive([v; 8]);
    let a = c.create_how(&root, "excl", how(1)).unwrap();
    // A retry with a new xid (the DRC cannot help) but the same verifier.
    let b = c.create_how(&root, "excl", how(1)).unwrap();
    assert_eq!(a, b);
    assert_eq!(c.create_how(&root, "excl", how(2)), Err(nfsstat::EXIST));
}

#[test]
fn handle_of_a_removed_file_is_stale() {
    let s = Sluice::start_memory();
    let (mut c, root) = s.mounted("/");
    let fh = c.create(&root, "gone").unwrap();
    c.remove(&root, "gone").unwrap();
    assert_eq!(c.getattr(&fh), Err(nfsstat::STALE));
    // A new file of the same name gets a different handle; the old one stays stale.
    let fh2 = c.create(&root, "gone").unwrap();
    assert_ne!(fh2, fh);
    assert_eq!(c.getattr(&fh), Err(nfsstat::STALE));
}
