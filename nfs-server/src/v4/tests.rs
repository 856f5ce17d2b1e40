//! A sans-IO harness: COMPOUNDs encoded as a client would, run against `MemStore` without
//! sockets, replies decoded as a client would.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backend::mem::MemStore;
use backend::Store;
use bytes::Bytes;
use nfs_proto::rpc::{AuthSys, Credential};
use nfs_proto::v4::*;
use nfs_proto::xdr::{Encode, Reader, Writer};

use crate::export::{ClientMatch, ClientRule, Export, ExportTable, Squash};
use crate::server::{Request, Server};
use crate::state::nfs4::ClientRecord;
use crate::state::{MemStateStore, ProtocolState, StateConfig, StateKey};
use crate::v4::compound::compound;

struct Harness {
    server: Server<MemStore>,
    now: Instant,
    session: SessionId4,
    clientid: Clientid4,
    seq: u32,
}

fn server() -> Server<MemStore> {
    server_with(ProtocolState::in_memory(Instant::now()))
}

/// The protocol state of a server restarted at `now` after a run that knew `clients` (v4) and
/// whose NSM monitor list named `nlm_clients`, kept in `store`.
async fn restarted_state(
    store: Arc<MemStateStore>,
    clients: &[ClientRecord],
    nlm_clients: &[&str],
    now: Instant,
) -> ProtocolState {
    store.put(
        StateKey::Nfs4Clients,
        crate::state::nfs4::records_doc(clients),
    );
    let nsm = crate::state::nlm::NsmRecord {
        state: 3,
        clients: nlm_clients
            .iter()
            .map(|n| crate::state::nlm::Monitored {
                name: n.to_string(),
                addr: "10.0.0.9".parse().unwrap(),
                server_addr: "10.0.0.1".parse().unwrap(),
            })
            .collect(),
    };
    store.put(StateKey::Nsm, nsm.to_doc());
    let identity = crate::state::Identity {
        cluster_id: "test".into(),
        node_id: 1,
        epoch: 2,
    };
    ProtocolState::open(
        identity,
        store,
        StateConfig {
            lease: Duration::from_secs(90),
            nlm_grace: Duration::from_secs(45),
        },
        Default::default(),
        now,
    )
    .await
    .unwrap()
}

fn server_with(state: ProtocolState) -> Server<MemStore> {
    Server::for_tests(MemStore::new(), state)
}

fn request() -> Request {
    Request {
        peer: "10.0.0.5:700".parse().unwrap(),
        local: "10.0.0.1:2049".parse().unwrap(),
        xid: 1,
        credential: Credential::Sys(AuthSys {
            stamp: 0,
            machine_name: Bytes::from_static(b"client"),
            uid: 0,
            gid: 0,
            gids: vec![],
        }),
        now: Instant::now(),
    }
}

fn encode_args(ops: Vec<NfsArgOp4>) -> Bytes {
    let mut w = Writer::new();
    Compound4Args {
        tag: Tag4::default(),
        minorversion: 1,
        argarray: ops,
    }
    .encode(&mut w);
    w.into_bytes()
}

fn fore(slots: u32) -> ChannelAttrs4 {
    ChannelAttrs4 {
        ca_headerpadsize: 0,
        ca_maxrequestsize: 1_049_620,
        ca_maxresponsesize: 1_049_480,
        ca_maxresponsesize_cached: 7584,
        ca_maxoperations: 8,
        ca_maxrequests: slots,
        ca_rdma_ird: None,
    }
}

fn exchange_id_args(owner: &'static [u8], verifier: u8) -> NfsArgOp4 {
    NfsArgOp4::ExchangeId(ExchangeId4Args {
        clientowner: ClientOwner4 {
            co_verifier: [verifier; 8],
            co_ownerid: Opaque4::from(owner),
        },
        flags: 0,
        state_protect: StateProtect4A::None,
        client_impl_id: None,
    })
}

fn create_session_args(clientid: Clientid4, sequence: u32) -> NfsArgOp4 {
    NfsArgOp4::CreateSession(CreateSession4Args {
        clientid,
        sequence,
        flags: 0,
        fore_chan_attrs: fore(16),
        back_chan_attrs: fore(1),
        cb_program: 0x4000_0000,
        sec_parms: vec![CallbackSecParms4::AuthNone],
    })
}

/// Runs raw COMPOUND arguments and decodes the reply.
async fn run_raw(server: &Server<MemStore>, args: Bytes, now: Instant) -> Compound4Res {
    run_as(server, &request(), args, now).await
}

/// Runs raw COMPOUND arguments sent as `req`, and decodes the reply.
async fn run_as(
    server: &Server<MemStore>,
    req: &Request,
    args: Bytes,
    now: Instant,
) -> Compound4Res {
    let args_len = args.len();
    let decoded = Compound4Args::decode(&mut Reader::new(args)).expect("COMPOUND decodes");
    let (w, payloads, _) = compound(server, req, decoded, args_len, Writer::new(), now).await;
    let bytes = splice_payloads(w.as_slice(), &payloads);
    Compound4Res::decode(&mut Reader::new(bytes)).expect("reply decodes")
}

impl Harness {
    /// A server with a confirmed client and a session.
    async fn new() -> Harness {
        let mut h = Harness::with(server()).await;
        h.ok(vec![NfsArgOp4::ReclaimComplete(false)]).await;
        h
    }

    /// A server whose client records are in `store`, with client "c1" connected but not
    /// yet RECLAIM_COMPLETE.
    async fn with(server: Server<MemStore>) -> Harness {
        Harness::at(server, Instant::now()).await
    }

    /// Like `with`, with the clock at `now`.
    async fn at(server: Server<MemStore>, now: Instant) -> Harness {
        let r = run_raw(&server, encode_args(vec![exchange_id_args(b"c1", 1)]), now).await;
        let NfsResOp4::ExchangeId(Ok(eid)) = &r.resarray[0] else {
            panic!("EXCHANGE_ID failed: {r:?}")
        };
        let clientid = eid.clientid;
        let r = run_raw(
            &server,
            encode_args(vec![create_session_args(clientid, eid.sequenceid)]),
            now,
        )
        .await;
        let NfsResOp4::CreateSession(Ok(cs)) = &r.resarray[0] else {
            panic!("CREATE_SESSION failed: {r:?}")
        };
        Harness {
            session: cs.sessionid,
            server,
            now,
            clientid,
            seq: 0,
        }
    }

    /// A second client with its own session on the same server.
    async fn second_client(&self, owner: &'static [u8]) -> (SessionId4, Clientid4) {
        let r = self.raw(vec![exchange_id_args(owner, 1)]).await;
        let NfsResOp4::ExchangeId(Ok(e)) = &r.resarray[0] else {
            panic!("{r:?}")
        };
        let r = self.raw(vec![create_session_args(e.clientid, 1)]).await;
        let NfsResOp4::CreateSession(Ok(cs)) = &r.resarray[0] else {
            panic!("{r:?}")
        };
        (cs.sessionid, e.clientid)
    }

    fn sequence(&mut self, slot: u32, cachethis: bool) -> NfsArgOp4 {
        self.seq += 1;
        NfsArgOp4::Sequence(Sequence4Args {
            sessionid: self.session,
            sequenceid: self.seq,
            slotid: slot,
            highest_slotid: slot,
            cachethis,
        })
    }

    async fn raw(&self, ops: Vec<NfsArgOp4>) -> Compound4Res {
        run_raw(&self.server, encode_args(ops), self.now).await
    }

    /// SEQUENCE (slot 0, cached) followed by `ops`.
    async fn run(&mut self, ops: Vec<NfsArgOp4>) -> Compound4Res {
        let mut all = vec![self.sequence(0, true)];
        all.extend(ops);
        self.raw(all).await
    }

    /// Like `run`, but panics unless every op succeeded.
    async fn ok(&mut self, ops: Vec<NfsArgOp4>) -> Vec<NfsResOp4> {
        let r = self.run(ops).await;
        assert_eq!(r.status, Nfsstat4::Ok, "COMPOUND failed: {r:?}");
        r.resarray
    }
}

fn name(s: &str) -> Component4 {
    Component4(Bytes::copy_from_slice(s.as_bytes()))
}

fn owner(clientid: Clientid4, s: &'static [u8]) -> StateOwner4 {
    StateOwner4 {
        clientid,
        owner: Opaque4::from(s),
    }
}

fn mode_attrs(mode: u32) -> Fattr4 {
    let mut w = FattrWriter::new();
    w.attr(attr4::MODE, |w| w.u32(mode));
    w.finish()
}

fn open_create(clientid: Clientid4, file: &str) -> NfsArgOp4 {
    NfsArgOp4::Open(Open4Args {
        seqid: 0,
        share_access: open4::SHARE_ACCESS_BOTH,
        share_deny: open4::SHARE_DENY_NONE,
        owner: owner(clientid, b"o1"),
        openhow: OpenFlag4(Some(CreateHow4::Unchecked(mode_attrs(0o644)))),
        claim: OpenClaim4::Null(name(file)),
    })
}

/// The reclaim after a restart or a takeover of client `clientid`'s open (owner "o1") of the
/// current file.
fn reclaim_open(clientid: Clientid4) -> NfsArgOp4 {
    NfsArgOp4::Open(Open4Args {
        seqid: 0,
        share_access: open4::SHARE_ACCESS_BOTH,
        share_deny: open4::SHARE_DENY_NONE,
        owner: owner(clientid, b"o1"),
        openhow: OpenFlag4(None),
        claim: OpenClaim4::Previous(OpenDelegationType4::None),
    })
}

fn open_stateid(res: &[NfsResOp4]) -> Stateid4 {
    res.iter()
        .find_map(|r| match r {
            NfsResOp4::Open(Ok(o)) => Some(o.stateid),
            _ => None,
        })
        .expect("an OPEN result")
}

fn getattr(bits: &[u32]) -> NfsArgOp4 {
    NfsArgOp4::Getattr(Bitmap4::from_bits(bits))
}

#[tokio::test]
async fn a_compound_without_sequence_first_gets_op_not_in_session() {
    let h = Harness::new().await;
    let r = h.raw(vec![NfsArgOp4::Putrootfh, NfsArgOp4::Getfh]).await;
    assert_eq!(r.status, Nfsstat4::OpNotInSession);
    assert_eq!(r.resarray.len(), 1);
    assert_eq!(r.resarray[0].opnum(), op4::PUTROOTFH);
}

#[tokio::test]
async fn exchange_id_with_other_ops_and_no_sequence_gets_not_only_op() {
    let h = Harness::new().await;
    let r = h
        .raw(vec![exchange_id_args(b"c2", 1), NfsArgOp4::Putrootfh])
        .await;
    assert_eq!(r.status, Nfsstat4::NotOnlyOp);
}

#[tokio::test]
async fn a_sequence_after_the_first_op_gets_sequence_pos() {
    let mut h = Harness::new().await;
    let s = NfsArgOp4::Sequence(Sequence4Args {
        sessionid: h.session,
        sequenceid: 1,
        slotid: 1,
        highest_slotid: 1,
        cachethis: false,
    });
    let r = h.run(vec![NfsArgOp4::Putrootfh, s]).await;
    assert_eq!(r.status, Nfsstat4::SequencePos);
    assert_eq!(r.resarray.len(), 3);
}

#[tokio::test]
async fn exchange_id_answers_the_same_owner_and_scope_every_time() {
    let h = Harness::new().await;
    let a = h.raw(vec![exchange_id_args(b"c2", 1)]).await;
    let b = h.raw(vec![exchange_id_args(b"c3", 1)]).await;
    let (NfsResOp4::ExchangeId(Ok(a)), NfsResOp4::ExchangeId(Ok(b))) =
        (&a.resarray[0], &b.resarray[0])
    else {
        panic!("EXCHANGE_ID failed")
    };
    assert_eq!(a.server_owner, b.server_owner);
    assert_eq!(a.server_scope, b.server_scope);
    assert_ne!(a.clientid, b.clientid);
    assert_eq!(a.flags & exchgid4::FLAG_CONFIRMED_R, 0);
}

#[tokio::test]
async fn a_confirmed_client_asking_again_gets_its_clientid_back_confirmed() {
    let h = Harness::new().await;
    let r = h.raw(vec![exchange_id_args(b"c1", 1)]).await;
    let NfsResOp4::ExchangeId(Ok(e)) = &r.resarray[0] else {
        panic!("{r:?}")
    };
    assert_eq!(e.clientid, h.clientid);
    assert_ne!(e.flags & exchgid4::FLAG_CONFIRMED_R, 0);
}

#[tokio::test]
async fn create_session_negotiates_a_megabyte_channel_and_replays_a_retransmission() {
    let h = Harness::new().await;
    let r = h.raw(vec![exchange_id_args(b"c9", 1)]).await;
    let NfsResOp4::ExchangeId(Ok(e)) = &r.resarray[0] else {
        panic!("{r:?}")
    };
    let a = h.raw(vec![create_session_args(e.clientid, 1)]).await;
    let b = h.raw(vec![create_session_args(e.clientid, 1)]).await;
    assert_eq!(a, b, "a retransmitted CREATE_SESSION gets the same reply");
    let NfsResOp4::CreateSession(Ok(cs)) = &a.resarray[0] else {
        panic!("{a:?}")
    };
    assert!(cs.fore_chan_attrs.ca_maxrequestsize >= 1 << 20);
    assert!(cs.fore_chan_attrs.ca_maxresponsesize >= 1 << 20);
    assert_eq!(cs.fore_chan_attrs.ca_maxrequests, 16);
    let c = h.raw(vec![create_session_args(e.clientid, 5)]).await;
    assert_eq!(c.status, Nfsstat4::SeqMisordered);
    let d = h.raw(vec![create_session_args(12345, 1)]).await;
    assert_eq!(d.status, Nfsstat4::StaleClientid);
}

#[tokio::test]
async fn a_replayed_slot_seqid_returns_the_cached_reply() {
    let mut h = Harness::new().await;
    let seq = h.sequence(0, true);
    let ops = vec![
        seq,
        NfsArgOp4::Putrootfh,
        NfsArgOp4::Create(Create4Args {
            objtype: CreateType4::Dir,
            objname: name("d"),
            createattrs: mode_attrs(0o755),
        }),
    ];
    let first = h.raw(ops.clone()).await;
    assert_eq!(first.status, Nfsstat4::Ok, "{first:?}");
    // The retransmission would fail with EXIST if it ran again.
    let again = h.raw(ops).await;
    assert_eq!(first, again);
}

#[tokio::test]
async fn a_replay_of_an_uncached_reply_gets_retry_uncached_rep() {
    let mut h = Harness::new().await;
    let seq = h.sequence(0, false);
    let ops = vec![seq, NfsArgOp4::Putrootfh];
    assert_eq!(h.raw(ops.clone()).await.status, Nfsstat4::Ok);
    assert_eq!(h.raw(ops).await.status, Nfsstat4::RetryUncachedRep);
}

#[tokio::test]
async fn a_skipped_seqid_gets_seq_misordered_and_a_bad_slot_gets_badslot() {
    let mut h = Harness::new().await;
    h.seq += 5;
    let r = h.run(vec![NfsArgOp4::Putrootfh]).await;
    assert_eq!(r.status, Nfsstat4::SeqMisordered);
    let mut s = h.sequence(0, false);
    if let NfsArgOp4::Sequence(a) = &mut s {
        a.slotid = 99;
    }
    assert_eq!(h.raw(vec![s]).await.status, Nfsstat4::BadSlot);
}

#[tokio::test]
async fn an_unknown_session_gets_badsession() {
    let mut h = Harness::new().await;
    h.session = SessionId4([9; 16]);
    assert_eq!(h.run(vec![]).await.status, Nfsstat4::BadSession);
}

#[tokio::test]
async fn destroy_session_then_sequence_gets_badsession() {
    let mut h = Harness::new().await;
    let r = h.raw(vec![NfsArgOp4::DestroySession(h.session)]).await;
    assert_eq!(r.status, Nfsstat4::Ok);
    assert_eq!(h.run(vec![]).await.status, Nfsstat4::BadSession);
    let r = h.raw(vec![NfsArgOp4::DestroyClientid(h.clientid)]).await;
    assert_eq!(r.status, Nfsstat4::Ok);
}

#[tokio::test]
async fn minor_version_2_gets_minor_vers_mismatch_with_no_results() {
    let h = Harness::new().await;
    let mut w = Writer::new();
    Compound4Args {
        tag: Tag4::default(),
        minorversion: 2,
        argarray: vec![NfsArgOp4::Putrootfh],
    }
    .encode(&mut w);
    let r = run_raw(&h.server, w.into_bytes(), h.now).await;
    assert_eq!(r.status, Nfsstat4::MinorVersMismatch);
    assert!(r.resarray.is_empty());
}

#[tokio::test]
async fn a_truncated_header_is_garbage_args() {
    let h = Harness::new().await;
    let _ = &h;
    let d = crate::call::decode(rpc_call(4, 1, &[0, 0]), false);
    let early = d.call.expect_err("not a call that runs");
    assert_eq!(early.status, "GARBAGE_ARGS");
    assert_eq!(
        word(&early.reply.expect("a reply").head, 5),
        4,
        "GARBAGE_ARGS"
    );
}

#[tokio::test]
async fn an_op_without_a_filehandle_gets_nofilehandle() {
    let mut h = Harness::new().await;
    let r = h.run(vec![NfsArgOp4::Getfh]).await;
    assert_eq!(r.status, Nfsstat4::NoFileHandle);
}

#[tokio::test]
async fn getattr_of_the_root_returns_the_mandatory_attributes() {
    let mut h = Harness::new().await;
    let res = h
        .ok(vec![
            NfsArgOp4::Putrootfh,
            getattr(&[
                attr4::SUPPORTED_ATTRS,
                attr4::TYPE,
                attr4::FH_EXPIRE_TYPE,
                attr4::CHANGE,
                attr4::SIZE,
                attr4::FSID,
                attr4::LEASE_TIME,
                attr4::FILEID,
                attr4::MODE,
                attr4::OWNER,
                attr4::FS_LAYOUT_TYPES,
            ]),
        ])
        .await;
    let NfsResOp4::Getattr(Ok(f)) = &res[2] else {
        panic!("{res:?}")
    };
    assert!(f.attrmask.contains(attr4::TYPE));
    assert!(
        !f.attrmask.contains(attr4::FS_LAYOUT_TYPES),
        "unsupported attrs are left out"
    );
    let mut r = f.vals_reader();
    let n = r.u32().unwrap() as usize;
    let words: Vec<u32> = (0..n).map(|_| r.u32().unwrap()).collect();
    let supported = Bitmap4(words);
    for a in attr4::REQUIRED {
        assert!(supported.contains(a), "required attribute {a} supported");
    }
    assert_eq!(r.u32().unwrap(), ftype4::NF4DIR);
    assert_eq!(r.u32().unwrap(), fh4::PERSISTENT);
}

#[tokio::test]
async fn lookup_of_a_missing_name_gets_noent_and_dot_dot_gets_badname() {
    let mut h = Harness::new().await;
    let r = h
        .run(vec![NfsArgOp4::Putrootfh, NfsArgOp4::Lookup(name("nope"))])
        .await;
    assert_eq!(r.status, Nfsstat4::NoEnt);
    let r = h
        .run(vec![NfsArgOp4::Putrootfh, NfsArgOp4::Lookup(name(".."))])
        .await;
    assert_eq!(r.status, Nfsstat4::BadName);
    let r = h.run(vec![NfsArgOp4::Putrootfh, NfsArgOp4::Lookupp]).await;
    assert_eq!(r.status, Nfsstat4::NoEnt);
}

#[tokio::test]
async fn open_create_write_close_then_read_returns_the_data() {
    let mut h = Harness::new().await;
    let c = h.clientid;
    let res = h
        .ok(vec![
            NfsArgOp4::Putrootfh,
            open_create(c, "f"),
            NfsArgOp4::Getfh,
        ])
        .await;
    let sid = open_stateid(&res);
    let NfsResOp4::Getfh(Ok(fh)) = &res[3] else {
        panic!("{res:?}")
    };
    let fh = fh.clone();
    let res = h
        .ok(vec![
            NfsArgOp4::Putfh(fh.clone()),
            NfsArgOp4::Write(Write4Args {
                stateid: sid,
                offset: 0,
                stable: StableHow4::FileSync,
                data: Bytes::from_static(b"hello v4"),
            }),
            NfsArgOp4::Close(Close4Args {
                seqid: 0,
                open_stateid: sid,
            }),
        ])
        .await;
    let NfsResOp4::Write(Ok(w)) = &res[2] else {
        panic!("{res:?}")
    };
    assert_eq!(w.count, 8);
    assert_eq!(w.committed, StableHow4::FileSync);
    let res = h
        .ok(vec![
            NfsArgOp4::Putfh(fh.clone()),
            NfsArgOp4::Read(Read4Args {
                stateid: Stateid4::ANONYMOUS,
                offset: 0,
                count: 100,
            }),
        ])
        .await;
    let NfsResOp4::Read(Ok(r)) = &res[2] else {
        panic!("{res:?}")
    };
    assert_eq!(&r.data[..], b"hello v4");
    assert!(r.eof);
    // The closed stateid is gone.
    let r = h
        .run(vec![
            NfsArgOp4::Putfh(fh),
            NfsArgOp4::Read(Read4Args {
                stateid: sid,
                offset: 0,
                count: 1,
            }),
        ])
        .await;
    assert_eq!(r.status, Nfsstat4::BadStateid);
}

#[tokio::test]
async fn the_current_stateid_stands_for_the_one_open_just_returned() {
    let mut h = Harness::new().await;
    let c = h.clientid;
    let res = h
        .ok(vec![
            NfsArgOp4::Putrootfh,
            open_create(c, "g"),
            NfsArgOp4::Write(Write4Args {
                stateid: Stateid4::CURRENT,
                offset: 0,
                stable: StableHow4::Unstable,
                data: Bytes::from_static(b"x"),
            }),
            NfsArgOp4::Close(Close4Args {
                seqid: 0,
                open_stateid: Stateid4::CURRENT,
            }),
        ])
        .await;
    assert_eq!(res.len(), 5);
    assert_eq!(h.server.state.nfs4.lock().state_count(), 0);
}

#[tokio::test]
async fn guarded_create_of_an_existing_file_gets_exist() {
    let mut h = Harness::new().await;
    let c = h.clientid;
    h.ok(vec![NfsArgOp4::Putrootfh, open_create(c, "f")]).await;
    let mut op = open_create(c, "f");
    if let NfsArgOp4::Open(a) = &mut op {
        a.openhow = OpenFlag4(Some(CreateHow4::Guarded(mode_attrs(0o644))));
    }
    let r = h.run(vec![NfsArgOp4::Putrootfh, op]).await;
    assert_eq!(r.status, Nfsstat4::Exist);
}

#[tokio::test]
async fn exclusive4_1_create_retried_with_the_same_verifier_opens_the_same_file() {
    let mut h = Harness::new().await;
    let c = h.clientid;
    let mk = |v: u8| {
        let mut op = open_create(c, "x");
        if let NfsArgOp4::Open(a) = &mut op {
            a.openhow = OpenFlag4(Some(CreateHow4::Exclusive41 {
                verifier: [v; 8],
                attrs: mode_attrs(0o600),
            }));
        }
        op
    };
    let a = h
        .ok(vec![NfsArgOp4::Putrootfh, mk(7), NfsArgOp4::Getfh])
        .await;
    let b = h
        .ok(vec![NfsArgOp4::Putrootfh, mk(7), NfsArgOp4::Getfh])
        .await;
    assert_eq!(a[3], b[3]);
    let r = h.run(vec![NfsArgOp4::Putrootfh, mk(8)]).await;
    assert_eq!(r.status, Nfsstat4::Exist);
}

#[tokio::test]
async fn a_deny_write_open_refuses_another_owners_write_open() {
    let mut h = Harness::new().await;
    let c = h.clientid;
    let mut op = open_create(c, "f");
    if let NfsArgOp4::Open(a) = &mut op {
        a.share_access = open4::SHARE_ACCESS_READ;
        a.share_deny = open4::SHARE_DENY_WRITE;
    }
    h.ok(vec![NfsArgOp4::Putrootfh, op]).await;
    let mut op = open_create(c, "f");
    if let NfsArgOp4::Open(a) = &mut op {
        a.owner = owner(c, b"o2");
    }
    let r = h.run(vec![NfsArgOp4::Putrootfh, op]).await;
    assert_eq!(r.status, Nfsstat4::ShareDenied);
}

#[tokio::test]
async fn writing_through_a_read_only_open_gets_openmode() {
    let mut h = Harness::new().await;
    let c = h.clientid;
    let mut op = open_create(c, "f");
    if let NfsArgOp4::Open(a) = &mut op {
        a.share_access = open4::SHARE_ACCESS_READ;
    }
    let res = h.ok(vec![NfsArgOp4::Putrootfh, op]).await;
    let sid = open_stateid(&res);
    let r = h
        .run(vec![
            NfsArgOp4::Putrootfh,
            NfsArgOp4::Lookup(name("f")),
            NfsArgOp4::Write(Write4Args {
                stateid: sid,
                offset: 0,
                stable: StableHow4::Unstable,
                data: Bytes::from_static(b"x"),
            }),
        ])
        .await;
    assert_eq!(r.status, Nfsstat4::OpenMode);
}

#[tokio::test]
async fn an_old_seqid_gets_old_stateid_and_a_stale_epoch_gets_stale_stateid() {
    let mut h = Harness::new().await;
    let c = h.clientid;
    let a = open_stateid(&h.ok(vec![NfsArgOp4::Putrootfh, open_create(c, "f")]).await);
    let b = open_stateid(&h.ok(vec![NfsArgOp4::Putrootfh, open_create(c, "f")]).await);
    assert_eq!(a.other, b.other);
    assert_eq!(b.seqid, a.seqid + 1);
    let res = h
        .ok(vec![NfsArgOp4::TestStateid(TestStateid4Args {
            stateids: vec![
                a,
                b,
                Stateid4 {
                    seqid: 1,
                    other: [0xee; 12],
                },
            ],
        })])
        .await;
    let NfsResOp4::TestStateid(Ok(l)) = &res[1] else {
        panic!("{res:?}")
    };
    assert_eq!(
        l.0,
        vec![Nfsstat4::OldStateid, Nfsstat4::Ok, Nfsstat4::StaleStateid]
    );
}

#[tokio::test]
async fn readdir_lists_created_files_in_pages_with_their_attributes() {
    let mut h = Harness::new().await;
    for i in 0..50 {
        let ops = vec![
            NfsArgOp4::Putrootfh,
            NfsArgOp4::Create(Create4Args {
                objtype: CreateType4::Dir,
                objname: name(&format!("d{i}")),
                createattrs: Fattr4::default(),
            }),
        ];
        h.ok(ops).await;
    }
    let (mut cookie, mut verf, mut names) = (0u64, [0u8; 8], Vec::new());
    for _ in 0..100 {
        let res = h
            .ok(vec![
                NfsArgOp4::Putrootfh,
                NfsArgOp4::Readdir(Readdir4Args {
                    cookie,
                    cookieverf: verf,
                    dircount: 512,
                    maxcount: 1024,
                    attr_request: Bitmap4::from_bits(&[
                        attr4::TYPE,
                        attr4::FILEID,
                        attr4::FILEHANDLE,
                    ]),
                }),
            ])
            .await;
        let NfsResOp4::Readdir(Ok(d)) = &res[2] else {
            panic!("{res:?}")
        };
        assert!(!d.entries.is_empty());
        for e in &d.entries {
            assert!(e.attrs.attrmask.contains(attr4::FILEHANDLE));
            names.push(String::from_utf8(e.name.0.to_vec()).unwrap());
        }
        cookie = d.entries.last().unwrap().cookie;
        verf = d.cookieverf;
        if d.eof {
            break;
        }
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 50);
}

#[tokio::test]
async fn rename_link_remove_and_readlink_work_between_saved_and_current_filehandles() {
    let mut h = Harness::new().await;
    let c = h.clientid;
    let sid = open_stateid(&h.ok(vec![NfsArgOp4::Putrootfh, open_create(c, "a")]).await);
    h.ok(vec![
        NfsArgOp4::Putrootfh,
        NfsArgOp4::Lookup(name("a")),
        NfsArgOp4::Close(Close4Args {
            seqid: 0,
            open_stateid: sid,
        }),
    ])
    .await;
    h.ok(vec![
        NfsArgOp4::Putrootfh,
        NfsArgOp4::Savefh,
        NfsArgOp4::Rename(Rename4Args {
            oldname: name("a"),
            newname: name("b"),
        }),
    ])
    .await;
    h.ok(vec![
        NfsArgOp4::Putrootfh,
        NfsArgOp4::Lookup(name("b")),
        NfsArgOp4::Savefh,
        NfsArgOp4::Putrootfh,
        NfsArgOp4::Link(name("c")),
    ])
    .await;
    let res = h
        .ok(vec![
            NfsArgOp4::Putrootfh,
            NfsArgOp4::Lookup(name("c")),
            getattr(&[attr4::NUMLINKS]),
        ])
        .await;
    let NfsResOp4::Getattr(Ok(f)) = &res[3] else {
        panic!()
    };
    assert_eq!(f.vals_reader().u32().unwrap(), 2);
    h.ok(vec![
        NfsArgOp4::Putrootfh,
        NfsArgOp4::Create(Create4Args {
            objtype: CreateType4::Lnk(LinkText4::from(&b"b"[..])),
            objname: name("l"),
            createattrs: Fattr4::default(),
        }),
    ])
    .await;
    let res = h
        .ok(vec![
            NfsArgOp4::Putrootfh,
            NfsArgOp4::Lookup(name("l")),
            NfsArgOp4::Readlink,
        ])
        .await;
    assert_eq!(res[3], NfsResOp4::Readlink(Ok(LinkText4::from(&b"b"[..]))));
    let res = h
        .ok(vec![NfsArgOp4::Putrootfh, NfsArgOp4::Remove(name("b"))])
        .await;
    let NfsResOp4::Remove(Ok(ci)) = &res[2] else {
        panic!()
    };
    assert!(
        ci.after > ci.before,
        "the directory's change attribute grows"
    );
    let r = h
        .run(vec![NfsArgOp4::Putrootfh, NfsArgOp4::Lookup(name("b"))])
        .await;
    assert_eq!(r.status, Nfsstat4::NoEnt);
}

#[tokio::test]
async fn setattr_changes_size_and_mode() {
    let mut h = Harness::new().await;
    let c = h.clientid;
    let sid = open_stateid(&h.ok(vec![NfsArgOp4::Putrootfh, open_create(c, "f")]).await);
    let mut w = FattrWriter::new();
    w.attr(attr4::SIZE, |w| w.u64(4096));
    w.attr(attr4::MODE, |w| w.u32(0o600));
    let res = h
        .ok(vec![
            NfsArgOp4::Putrootfh,
            NfsArgOp4::Lookup(name("f")),
            NfsArgOp4::Setattr(Setattr4Args {
                stateid: sid,
                obj_attributes: w.finish(),
            }),
            getattr(&[attr4::SIZE, attr4::MODE]),
        ])
        .await;
    let NfsResOp4::Getattr(Ok(f)) = &res[4] else {
        panic!("{res:?}")
    };
    let mut r = f.vals_reader();
    assert_eq!(r.u64().unwrap(), 4096);
    assert_eq!(r.u32().unwrap(), 0o600);
}

#[tokio::test]
async fn a_write_lock_conflicts_with_another_owner_until_unlocked() {
    let mut h = Harness::new().await;
    let c = h.clientid;
    let open = open_stateid(&h.ok(vec![NfsArgOp4::Putrootfh, open_create(c, "f")]).await);
    let lock = |owner_name: &'static [u8]| {
        NfsArgOp4::Lock(Lock4Args {
            locktype: NfsLockType4::Write,
            reclaim: false,
            offset: 0,
            length: u64::MAX,
            locker: Locker4::NewLockOwner(OpenToLockOwner4 {
                open_seqid: 0,
                open_stateid: open,
                lock_seqid: 0,
                lock_owner: owner(c, owner_name),
            }),
        })
    };
    let look = || vec![NfsArgOp4::Putrootfh, NfsArgOp4::Lookup(name("f"))];
    let mut ops = look();
    ops.push(lock(b"L1"));
    let res = h.ok(ops).await;
    let NfsResOp4::Lock(Lock4Res::Ok(lsid)) = &res[3] else {
        panic!("{res:?}")
    };
    let lsid = *lsid;
    let mut ops = look();
    ops.push(lock(b"L2"));
    let r = h.run(ops).await;
    assert_eq!(r.status, Nfsstat4::Denied);
    let mut ops = look();
    ops.push(NfsArgOp4::Locku(Locku4Args {
        locktype: NfsLockType4::Write,
        seqid: 0,
        lock_stateid: lsid,
        offset: 0,
        length: u64::MAX,
    }));
    h.ok(ops).await;
    let mut ops = look();
    ops.push(lock(b"L2"));
    h.ok(ops).await;
}

#[tokio::test]
async fn pnfs_and_directory_delegation_ops_get_notsupp() {
    let mut h = Harness::new().await;
    let r = h
        .run(vec![
            NfsArgOp4::Putrootfh,
            NfsArgOp4::GetDirDelegation(GetDirDelegation4Args {
                signal_deleg_avail: false,
                notification_types: Bitmap4::new(),
                child_attr_delay: Nfstime4::default(),
                dir_attr_delay: Nfstime4::default(),
                child_attributes: Bitmap4::new(),
                dir_attributes: Bitmap4::new(),
            }),
        ])
        .await;
    assert_eq!(r.status, Nfsstat4::NotSupp);
    let r = h
        .run(vec![NfsArgOp4::Getdevicelist(Getdevicelist4Args {
            layout_type: 1,
            maxdevices: 1,
            cookie: 0,
            cookieverf: [0; 8],
        })])
        .await;
    assert_eq!(r.status, Nfsstat4::NotSupp);
}

#[tokio::test]
async fn a_read_larger_than_the_reply_budget_is_shortened_to_fit() {
    let mut h = Harness::new().await;
    let c = h.clientid;
    let sid = open_stateid(
        &h.ok(vec![NfsArgOp4::Putrootfh, open_create(c, "big")])
            .await,
    );
    let data = Bytes::from(vec![7u8; 1 << 20]);
    h.ok(vec![
        NfsArgOp4::Putrootfh,
        NfsArgOp4::Lookup(name("big")),
        NfsArgOp4::Write(Write4Args {
            stateid: sid,
            offset: 0,
            stable: StableHow4::Unstable,
            data,
        }),
    ])
    .await;
    let read = |count| {
        NfsArgOp4::Read(Read4Args {
            stateid: sid,
            offset: 0,
            count,
        })
    };
    // Uncached: the whole megabyte fits the session's reply size.
    let seq = h.sequence(0, false);
    let res = h
        .raw(vec![
            seq,
            NfsArgOp4::Putrootfh,
            NfsArgOp4::Lookup(name("big")),
            read(1 << 20),
        ])
        .await;
    let NfsResOp4::Read(Ok(r)) = &res.resarray[3] else {
        panic!("{res:?}")
    };
    assert_eq!(r.data.len(), 1 << 20);
    // To be cached: shortened to the cache's reply size.
    let res = h
        .ok(vec![
            NfsArgOp4::Putrootfh,
            NfsArgOp4::Lookup(name("big")),
            read(1 << 20),
        ])
        .await;
    let NfsResOp4::Read(Ok(r)) = &res[3] else {
        panic!()
    };
    assert!(
        r.data.len() < 7584 && r.data.len() > 7000,
        "{}",
        r.data.len()
    );
}

#[tokio::test]
async fn an_idle_client_expires_after_two_leases() {
    let h = Harness::new().await;
    let later = h.now + Duration::from_secs(181);
    let gone = h.server.state.nfs4.lock().expire(later);
    assert_eq!(gone, vec![h.clientid]);
}

#[tokio::test]
async fn an_open_before_reclaim_complete_gets_grace() {
    let h = Harness::new().await;
    let (sid, c2) = h.second_client(b"other").await;
    let seq = NfsArgOp4::Sequence(Sequence4Args {
        sessionid: sid,
        sequenceid: 1,
        slotid: 0,
        highest_slotid: 0,
        cachethis: false,
    });
    let r = h
        .raw(vec![seq, NfsArgOp4::Putrootfh, open_create(c2, "f")])
        .await;
    assert_eq!(r.status, Nfsstat4::Grace);
    let seq = NfsArgOp4::Sequence(Sequence4Args {
        sessionid: sid,
        sequenceid: 2,
        slotid: 0,
        highest_slotid: 0,
        cachethis: false,
    });
    let r = h
        .raw(vec![seq.clone(), NfsArgOp4::ReclaimComplete(false)])
        .await;
    assert_eq!(r.status, Nfsstat4::Ok);
}

#[tokio::test]
async fn a_share_conflict_with_an_expired_client_revokes_its_open() {
    let mut h = Harness::new().await;
    let c = h.clientid;
    let mut op = open_create(c, "f");
    if let NfsArgOp4::Open(a) = &mut op {
        a.share_deny = open4::SHARE_DENY_WRITE;
    }
    h.ok(vec![NfsArgOp4::Putrootfh, op]).await;
    let (sid, c2) = h.second_client(b"other").await;
    let mut seqid = 0;
    let mut seq = || {
        seqid += 1;
        NfsArgOp4::Sequence(Sequence4Args {
            sessionid: sid,
            sequenceid: seqid,
            slotid: 0,
            highest_slotid: 0,
            cachethis: false,
        })
    };
    let mut open2 = open_create(c2, "f");
    if let NfsArgOp4::Open(a) = &mut open2 {
        a.owner = owner(c2, b"o2");
    }
    h.raw(vec![seq(), NfsArgOp4::ReclaimComplete(false)]).await;
    let r = h
        .raw(vec![seq(), NfsArgOp4::Putrootfh, open2.clone()])
        .await;
    assert_eq!(
        r.status,
        Nfsstat4::ShareDenied,
        "the first client's lease still runs"
    );
    // The first client goes silent past its lease; the second keeps renewing.
    h.now += Duration::from_secs(91);
    let r = h.raw(vec![seq(), NfsArgOp4::Putrootfh, open2]).await;
    assert_eq!(r.status, Nfsstat4::Ok, "{r:?}");
    assert!(
        h.server.state.nfs4.lock().client(c).is_none(),
        "the expired client is gone"
    );
}

#[tokio::test]
async fn another_principal_cannot_confirm_or_update_a_client() {
    let h = Harness::new().await;
    let mut other = request();
    other.credential = Credential::Sys(AuthSys {
        stamp: 0,
        machine_name: Bytes::from_static(b"x"),
        uid: 1111,
        gid: 37,
        gids: vec![],
    });
    let r = h.raw(vec![exchange_id_args(b"p", 1)]).await;
    let NfsResOp4::ExchangeId(Ok(e)) = &r.resarray[0] else {
        panic!("{r:?}")
    };
    let args = encode_args(vec![create_session_args(e.clientid, 1)]);
    let r = run_as(&h.server, &other, args, h.now).await;
    assert_eq!(r.status, Nfsstat4::ClidInUse);
    let mut upd = exchange_id_args(b"c1", 1);
    if let NfsArgOp4::ExchangeId(a) = &mut upd {
        a.flags = exchgid4::FLAG_UPD_CONFIRMED_REC_A;
    }
    let r = run_as(&h.server, &other, encode_args(vec![upd]), h.now).await;
    assert_eq!(r.status, Nfsstat4::Perm);
}

#[tokio::test]
async fn a_sequence_whose_reply_cannot_be_cached_gets_rep_too_big_to_cache() {
    let h = Harness::new().await;
    let r = h.raw(vec![exchange_id_args(b"small", 1)]).await;
    let NfsResOp4::ExchangeId(Ok(e)) = &r.resarray[0] else {
        panic!("{r:?}")
    };
    let mut cs = create_session_args(e.clientid, 1);
    if let NfsArgOp4::CreateSession(a) = &mut cs {
        a.fore_chan_attrs.ca_maxresponsesize_cached = 10;
    }
    let r = h.raw(vec![cs]).await;
    let NfsResOp4::CreateSession(Ok(s)) = &r.resarray[0] else {
        panic!("{r:?}")
    };
    let seq = NfsArgOp4::Sequence(Sequence4Args {
        sessionid: s.sessionid,
        sequenceid: 1,
        slotid: 0,
        highest_slotid: 0,
        cachethis: true,
    });
    assert_eq!(h.raw(vec![seq]).await.status, Nfsstat4::RepTooBigToCache);
}

/// An RPC call record with AUTH_NONE.
fn rpc_call(vers: u32, proc_: u32, args: &[u8]) -> Bytes {
    use nfs_proto::rpc::{call_record, OpaqueAuth};
    call_record(7, 100003, vers, proc_, OpaqueAuth::none(), args)
}

fn word(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes(b[i * 4..i * 4 + 4].try_into().unwrap())
}

#[tokio::test]
async fn version_4_null_succeeds_and_version_5_gets_prog_mismatch_3_to_4() {
    let s = server();
    let (peer, local) = (
        "10.0.0.5:700".parse().unwrap(),
        "10.0.0.1:2049".parse().unwrap(),
    );
    let r = s
        .handle_record(rpc_call(4, 0, &[]), peer, local)
        .await
        .unwrap();
    assert_eq!(r.head.len(), 24);
    assert_eq!(word(&r.head, 5), 0, "SUCCESS");
    let r = s
        .handle_record(rpc_call(5, 0, &[]), peer, local)
        .await
        .unwrap();
    assert_eq!(
        (word(&r.head, 5), word(&r.head, 6), word(&r.head, 7)),
        (2, 3, 4)
    );
    let r = s
        .handle_record(rpc_call(4, 2, &[]), peer, local)
        .await
        .unwrap();
    assert_eq!(word(&r.head, 5), 3, "PROC_UNAVAIL");
}

#[tokio::test]
async fn a_compound_over_rpc_returns_its_status_and_minor_version_0_is_refused() {
    let s = server();
    let (peer, local) = (
        "10.0.0.5:700".parse().unwrap(),
        "10.0.0.1:2049".parse().unwrap(),
    );
    let mut w = Writer::new();
    Compound4Args {
        tag: Tag4::default(),
        minorversion: 0,
        argarray: vec![NfsArgOp4::Putrootfh],
    }
    .encode(&mut w);
    let r = s
        .handle_record(rpc_call(4, 1, w.as_slice()), peer, local)
        .await
        .unwrap();
    assert_eq!(word(&r.head, 5), 0);
    assert_eq!(word(&r.head, 6), Nfsstat4::MinorVersMismatch as u32);
    let r = s
        .handle_record(rpc_call(4, 1, &[0, 0, 0, 9]), peer, local)
        .await
        .unwrap();
    assert_eq!(word(&r.head, 5), 4, "GARBAGE_ARGS");
}

#[tokio::test]
async fn after_a_restart_a_known_client_reclaims_its_open_in_grace_and_others_wait() {
    // The previous instance knew client "c1" (verifier [1; 8]) and gave out this file's handle.
    let now = Instant::now();
    let c1 = ClientRecord {
        clientid: 42,
        owner: Bytes::from_static(b"c1"),
        verifier: [1; 8],
        server: None,
    };
    let state = restarted_state(Arc::default(), &[c1], &[], now).await;
    let server = server_with(state);
    let root = server.store.root();
    let cred = backend::Cred::root();
    let (f, _) = server
        .store
        .create(
            &cred,
            root,
            b"f",
            backend::NodeKind::Regular,
            Default::default(),
            backend::CreateMode::Guarded,
        )
        .await
        .unwrap();
    let fh = NfsFh4(server.fh(1, f.id).0);
    let mut h = Harness::at(server, now).await;
    assert!(h.server.state.in_grace(h.now));
    // Another client may not open anything during the grace period.
    let (sid2, c2) = h.second_client(b"other").await;
    let seq2 = |n| {
        NfsArgOp4::Sequence(Sequence4Args {
            sessionid: sid2,
            sequenceid: n,
            slotid: 0,
            highest_slotid: 0,
            cachethis: false,
        })
    };
    h.raw(vec![seq2(1), NfsArgOp4::ReclaimComplete(false)])
        .await;
    let r = h
        .raw(vec![seq2(2), NfsArgOp4::Putrootfh, open_create(c2, "g")])
        .await;
    assert_eq!(r.status, Nfsstat4::Grace);
    // The known client reclaims its open of f, by filehandle.
    let c = h.clientid;
    let reclaim = reclaim_open(c);
    let res = h
        .ok(vec![NfsArgOp4::Putfh(fh.clone()), reclaim.clone()])
        .await;
    let sid = open_stateid(&res);
    h.ok(vec![NfsArgOp4::ReclaimComplete(false)]).await;
    // Every known client is done: the grace period ends early.
    assert!(!h.server.state.in_grace(h.now));
    let r = h
        .raw(vec![seq2(3), NfsArgOp4::Putrootfh, open_create(c2, "g")])
        .await;
    assert_eq!(r.status, Nfsstat4::Ok, "{r:?}");
    let r = h.run(vec![NfsArgOp4::Putfh(fh.clone()), reclaim]).await;
    assert_eq!(
        r.status,
        Nfsstat4::NoGrace,
        "no reclaim after RECLAIM_COMPLETE"
    );
    h.ok(vec![
        NfsArgOp4::Putfh(fh),
        NfsArgOp4::Write(Write4Args {
            stateid: sid,
            offset: 0,
            stable: StableHow4::FileSync,
            data: Bytes::from_static(b"after restart"),
        }),
    ])
    .await;
}

#[tokio::test]
async fn the_grace_period_ends_after_a_lease_even_if_a_client_never_returns() {
    let now = Instant::now();
    let gone = ClientRecord {
        clientid: 42,
        owner: Bytes::from_static(b"gone"),
        verifier: [1; 8],
        server: None,
    };
    let state = restarted_state(Arc::default(), &[gone], &[], now).await;
    let h = Harness::at(server_with(state), now).await;
    assert!(h.server.state.in_grace(h.now));
    let later = h.now + Duration::from_secs(91);
    assert!(!h.server.state.in_grace(later));
}

#[tokio::test]
async fn client_records_survive_a_restart_through_the_state_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(crate::state::FileStateStore::new(dir.path()));
    let identity = crate::state::Identity {
        cluster_id: "t".into(),
        node_id: 1,
        epoch: 1,
    };
    let open = |store: Arc<crate::state::FileStateStore>, epoch| {
        let identity = crate::state::Identity {
            epoch,
            ..identity.clone()
        };
        ProtocolState::open(
            identity,
            store,
            StateConfig::default(),
            Default::default(),
            Instant::now(),
        )
    };
    let h = Harness::at(
        server_with(open(store.clone(), 1).await.unwrap()),
        Instant::now(),
    )
    .await;
    let before = h.server.state.nfs4.lock().records();
    assert_eq!(before.len(), 1, "the confirmed client is recorded");
    let store = Arc::new(crate::state::FileStateStore::new(dir.path()));
    let after = open(store, 2).await.unwrap();
    assert_eq!(after.nfs4.lock().records(), before);
    assert_eq!(after.summary(Instant::now()).nfs4_clients_to_reclaim, 1);
    assert!(dir.path().join("nfs4-clients").exists());
}

#[tokio::test]
async fn a_client_record_that_cannot_be_saved_fails_create_session() {
    let store = Arc::new(MemStateStore::default());
    let state = restarted_state(store.clone(), &[], &[], Instant::now()).await;
    let server = server_with(state);
    let now = Instant::now();
    let r = run_raw(&server, encode_args(vec![exchange_id_args(b"c9", 1)]), now).await;
    let NfsResOp4::ExchangeId(Ok(eid)) = &r.resarray[0] else {
        panic!("EXCHANGE_ID failed: {r:?}")
    };
    store.set_failing(true);
    let args = encode_args(vec![create_session_args(eid.clientid, eid.sequenceid)]);
    let r = run_raw(&server, args, now).await;
    assert_eq!(r.status, Nfsstat4::ServerFault, "{r:?}");
    store.set_failing(false);
    let args = encode_args(vec![create_session_args(eid.clientid, eid.sequenceid)]);
    let r = run_raw(&server, args, now).await;
    assert_eq!(
        r.status,
        Nfsstat4::Ok,
        "a retry succeeds once the store works: {r:?}"
    );
    assert_eq!(
        store.get(StateKey::Nfs4Clients).map(|d| d.1.is_empty()),
        Some(false)
    );
}

/// An export of `root` at `path` to every client, unsquashed.
fn export(id: u32, path: &str, root: backend::FileId) -> Export {
    Export {
        id,
        path: path.into(),
        root,
        rules: vec![ClientRule {
            matcher: ClientMatch::Any,
            read_only: false,
            squash: Squash::None,
            anonuid: 65534,
            anongid: 65534,
        }],
        replication: None,
    }
}

#[tokio::test]
async fn without_an_export_at_the_root_a_pseudo_fs_joins_the_exports() {
    let server = server();
    let root = server.store.root();
    let data = mkdir(&server.store, root, b"data").await;
    let a = mkdir(&server.store, data, b"a").await;
    let scratch = mkdir(&server.store, root, b"scratch").await;
    *server.exports.write().unwrap() = Arc::new(ExportTable::new(vec![
        export(7, "/data/a", a),
        export(8, "/scratch", scratch),
    ]));
    let mut h = Harness::with(server).await;
    h.ok(vec![NfsArgOp4::ReclaimComplete(false)]).await;
    let names = |res: &NfsResOp4| match res {
        NfsResOp4::Readdir(Ok(d)) => d
            .entries
            .iter()
            .map(|e| String::from_utf8(e.name.0.to_vec()).unwrap())
            .collect::<Vec<_>>(),
        r => panic!("{r:?}"),
    };
    let readdir = || {
        NfsArgOp4::Readdir(Readdir4Args {
            cookie: 0,
            cookieverf: [0; 8],
            dircount: 1000,
            maxcount: 8192,
            attr_request: Bitmap4::from_bits(&[attr4::TYPE, attr4::FSID, attr4::FILEHANDLE]),
        })
    };
    let res = h.ok(vec![NfsArgOp4::Putrootfh, readdir()]).await;
    assert_eq!(names(&res[2]), vec!["data", "scratch"]);
    let res = h
        .ok(vec![
            NfsArgOp4::Putrootfh,
            NfsArgOp4::Lookup(name("data")),
            readdir(),
        ])
        .await;
    assert_eq!(names(&res[3]), vec!["a"]);
    // Into the export, where files can be made, and back up into the pseudo-fs.
    let c = h.clientid;
    let res = h
        .ok(vec![
            NfsArgOp4::Putrootfh,
            NfsArgOp4::Lookup(name("data")),
            NfsArgOp4::Lookup(name("a")),
            getattr(&[attr4::FSID]),
            open_create(c, "f"),
        ])
        .await;
    let NfsResOp4::Getattr(Ok(inside)) = &res[4] else {
        panic!()
    };
    let res = h
        .ok(vec![
            NfsArgOp4::Putrootfh,
            NfsArgOp4::Lookup(name("data")),
            NfsArgOp4::Lookup(name("a")),
            NfsArgOp4::Lookupp,
            getattr(&[attr4::FSID, attr4::MODE]),
        ])
        .await;
    let NfsResOp4::Getattr(Ok(pseudo)) = &res[5] else {
        panic!()
    };
    assert_eq!(inside.vals_reader().u64().unwrap(), 7, "the export's fsid");
    let mut r = pseudo.vals_reader();
    assert_eq!(
        (r.u64().unwrap(), r.u64().unwrap(), r.u32().unwrap()),
        (0, 0, 0o555)
    );
    // The pseudo-fs is read-only, and its handles survive a PUTFH.
    let res = h.ok(vec![NfsArgOp4::Putrootfh, NfsArgOp4::Getfh]).await;
    let NfsResOp4::Getfh(Ok(root_fh)) = &res[2] else {
        panic!()
    };
    let r = h
        .run(vec![
            NfsArgOp4::Putfh(root_fh.clone()),
            NfsArgOp4::Create(Create4Args {
                objtype: CreateType4::Dir,
                objname: name("x"),
                createattrs: Fattr4::default(),
            }),
        ])
        .await;
    assert_eq!(r.status, Nfsstat4::Rofs);
    let r = h
        .run(vec![NfsArgOp4::Putrootfh, NfsArgOp4::Lookup(name("nope"))])
        .await;
    assert_eq!(r.status, Nfsstat4::NoEnt);
}

async fn mkdir(store: &MemStore, dir: backend::FileId, name: &[u8]) -> backend::FileId {
    let (a, _) = store
        .create(
            &backend::Cred::root(),
            dir,
            name,
            backend::NodeKind::Directory,
            Default::default(),
            backend::CreateMode::Guarded,
        )
        .await
        .unwrap();
    a.id
}

#[tokio::test]
async fn a_client_its_target_keeps_waiting_is_asked_for_fewer_slots() {
    let mut h = Harness::new().await;
    let r = h.run(vec![]).await;
    let NfsResOp4::Sequence(Ok(before)) = &r.resarray[0] else {
        panic!("{r:?}")
    };
    assert_eq!(before.target_highest_slotid, before.highest_slotid);
    // The connection's local address belongs to a paced target that has kept this client
    // waiting 200 ms per request lately.
    let target = crate::qos::TargetConfig {
        name: "paced".into(),
        listen: vec![request().local],
        tier: crate::qos::TierConfig::Named("1g".into()),
        exports: Vec::new(),
        floating: false,
    };
    let table = Arc::new(crate::qos::TargetTable::new(&[target]).unwrap());
    let t = table.classify(request().local);
    for _ in 0..20 {
        t.pacer.record_wait(
            request().peer.ip(),
            Duration::from_millis(200),
            tokio::time::Instant::now(),
        );
    }
    assert!(h.server.targets.set(table).is_ok());
    let r = h.run(vec![]).await;
    let NfsResOp4::Sequence(Ok(after)) = &r.resarray[0] else {
        panic!("{r:?}")
    };
    assert_eq!(
        after.highest_slotid, before.highest_slotid,
        "the table stays"
    );
    assert_eq!(
        after.target_highest_slotid,
        crate::v4::compound::throttled_target_slotid(before.highest_slotid + 1)
    );
    assert!(after.target_highest_slotid < before.target_highest_slotid);
}

#[tokio::test]
async fn through_a_target_with_its_own_exports_the_pseudo_fs_shows_only_those() {
    let server = server();
    let root = server.store.root();
    let a = mkdir(&server.store, root, b"a").await;
    let b = mkdir(&server.store, root, b"b").await;
    *server.exports.write().unwrap() = Arc::new(ExportTable::new(vec![
        export(7, "/a", a),
        export(8, "/b", b),
    ]));
    let target = crate::qos::TargetConfig {
        name: "only-b".into(),
        listen: vec![request().local],
        tier: crate::qos::TierConfig::Named("unlimited".into()),
        exports: vec!["/b".into()],
        floating: false,
    };
    assert!(server
        .targets
        .set(Arc::new(crate::qos::TargetTable::new(&[target]).unwrap()))
        .is_ok());
    let a_fh = server.fh(7, a);
    let mut h = Harness::with(server).await;
    h.ok(vec![NfsArgOp4::ReclaimComplete(false)]).await;
    let res = h
        .ok(vec![
            NfsArgOp4::Putrootfh,
            NfsArgOp4::Readdir(Readdir4Args {
                cookie: 0,
                cookieverf: [0; 8],
                dircount: 1000,
                maxcount: 8192,
                attr_request: Bitmap4::from_bits(&[attr4::TYPE]),
            }),
        ])
        .await;
    let NfsResOp4::Readdir(Ok(d)) = &res[2] else {
        panic!("{res:?}")
    };
    let names: Vec<_> = d.entries.iter().map(|e| e.name.0.to_vec()).collect();
    assert_eq!(names, vec![b"b".to_vec()]);
    let r = h
        .run(vec![NfsArgOp4::Putrootfh, NfsArgOp4::Lookup(name("a"))])
        .await;
    assert_eq!(r.status, Nfsstat4::NoEnt);
    let r = h.run(vec![NfsArgOp4::Putfh(NfsFh4(a_fh.0))]).await;
    assert_eq!(r.status, Nfsstat4::Stale);
}

#[tokio::test]
async fn destroy_session_counts_only_on_a_connection_of_the_session() {
    let h = Harness::new().await;
    let mut other = request();
    other.peer = "10.0.0.5:701".parse().unwrap();
    let args = encode_args(vec![NfsArgOp4::DestroySession(h.session)]);
    let r = run_as(&h.server, &other, args, h.now).await;
    assert_eq!(r.status, Nfsstat4::ConnNotBoundToSession);
    // The connection that created it may.
    let r = h.raw(vec![NfsArgOp4::DestroySession(h.session)]).await;
    assert_eq!(r.status, Nfsstat4::Ok);
}

#[tokio::test]
async fn destroying_the_session_a_compound_runs_in_must_be_its_last_op() {
    let mut h = Harness::new().await;
    let r = h
        .run(vec![
            NfsArgOp4::DestroySession(h.session),
            NfsArgOp4::Putrootfh,
        ])
        .await;
    assert_eq!(r.status, Nfsstat4::NotOnlyOp);
    assert_eq!(
        r.resarray.len(),
        2,
        "SEQUENCE, then the refused DESTROY_SESSION"
    );
    let r = h.run(vec![NfsArgOp4::DestroySession(h.session)]).await;
    assert_eq!(r.status, Nfsstat4::Ok);
}

#[tokio::test]
async fn a_compound_tag_that_is_not_utf8_is_inval() {
    let h = Harness::new().await;
    let mut w = Writer::new();
    Compound4Args {
        tag: Tag4(Bytes::from_static(b"\xff\xfe")),
        minorversion: 1,
        argarray: vec![NfsArgOp4::Putrootfh],
    }
    .encode(&mut w);
    let r = run_raw(&h.server, w.into_bytes(), h.now).await;
    assert_eq!(r.status, Nfsstat4::Inval);
    assert!(r.resarray.is_empty());
}

#[tokio::test]
async fn reclaims_stretch_the_grace_period_up_to_twice_the_lease() {
    let now = Instant::now();
    let records: Vec<ClientRecord> = [(42, &b"c1"[..]), (43, &b"slow"[..])]
        .into_iter()
        .map(|(id, owner)| ClientRecord {
            clientid: id,
            owner: Bytes::copy_from_slice(owner),
            verifier: [1; 8],
            server: None,
        })
        .collect();
    let state = restarted_state(Arc::default(), &records, &[], now).await;
    let h = Harness::at(server_with(state), now).await;
    let s = |secs| h.now + Duration::from_secs(secs);
    let state = &h.server.state;
    let mut st = state.nfs4.lock();
    // Nobody reclaims for 80 s of the 90 s lease; then one reclaim keeps grace open for
    // another half lease.
    assert!(st
        .may_reclaim(&mut state.grace(), h.clientid, s(80))
        .is_ok());
    assert!(state.in_grace(s(120)), "stretched past one lease");
    assert!(!state.in_grace(s(126)), "by half a lease only");
    // However long reclaims go on, grace ends at twice the lease.
    assert!(st
        .may_reclaim(&mut state.grace(), h.clientid, s(124))
        .is_ok());
    assert!(st
        .may_reclaim(&mut state.grace(), h.clientid, s(168))
        .is_ok());
    assert!(state.in_grace(s(179)));
    assert!(!state.in_grace(s(180)));
    assert_eq!(
        st.may_reclaim(&mut state.grace(), h.clientid, s(181)),
        Err(Nfsstat4::NoGrace)
    );
}

#[test]
fn compounds_are_charged_to_the_pacer_by_their_reads_and_writes() {
    use crate::qos::Direction;
    let cost_of = |rec: &Bytes| {
        crate::call::decode(rec.clone(), false)
            .cost()
            .map(|c| (c.direction, c.bytes, c.ops))
    };
    let stateid = Stateid4::default();
    let read = |count| {
        NfsArgOp4::Read(Read4Args {
            stateid,
            offset: 0,
            count,
        })
    };
    let rec = rpc_call(
        4,
        1,
        &encode_args(vec![NfsArgOp4::Putrootfh, read(1 << 20), read(4096)]),
    );
    assert_eq!(cost_of(&rec), Some((Direction::Read, (1 << 20) + 4096, 1)));
    let rec = rpc_call(
        4,
        1,
        &encode_args(vec![
            NfsArgOp4::Putrootfh,
            NfsArgOp4::Write(Write4Args {
                stateid,
                offset: 0,
                stable: StableHow4::Unstable,
                data: Bytes::from(vec![1u8; 65536]),
            }),
        ]),
    );
    assert_eq!(cost_of(&rec), Some((Direction::Write, rec.len() as u64, 1)));
    let rec = rpc_call(
        4,
        1,
        &encode_args(vec![NfsArgOp4::Putrootfh, NfsArgOp4::Getfh]),
    );
    assert_eq!(
        cost_of(&rec),
        Some((Direction::Read, 0, 1)),
        "one operation, no bytes"
    );
    assert_eq!(cost_of(&rpc_call(4, 0, &[])), Some((Direction::Read, 0, 1)));
}

/// An NLM LOCK of all of `fh` by `host`, as a v3 client's lockd sends it, at `now`.
async fn nlm_lock(
    server: &Server<MemStore>,
    fh: &NfsFh4,
    host: &'static [u8],
    reclaim: bool,
    now: Instant,
) -> nfs_proto::nlm::Nlm4Stat {
    use nfs_proto::nlm::{nlmproc, Nlm4Lock, NlmArgs, NlmReply};
    let args = NlmArgs::Lock {
        cookie: Bytes::from_static(b"c"),
        block: false,
        exclusive: true,
        lock: Nlm4Lock {
            caller_name: Bytes::from_static(host),
            fh: fh.0.clone(),
            oh: Bytes::from_static(b"oh"),
            svid: 7,
            offset: 0,
            len: 0,
        },
        reclaim,
        state: 1,
    };
    let req = Request { now, ..request() };
    match server.nlm(&req, nlmproc::LOCK, args).await {
        Ok(NlmReply::Res { stat, .. }) => stat,
        other => panic!("NLM LOCK: {other:?}"),
    }
}

/// A v4 write LOCK of all of the current file by a new lock-owner of the open `open`.
fn v4_lock(c: Clientid4, open: Stateid4, reclaim: bool) -> NfsArgOp4 {
    NfsArgOp4::Lock(Lock4Args {
        locktype: NfsLockType4::Write,
        reclaim,
        offset: 0,
        length: u64::MAX,
        locker: Locker4::NewLockOwner(OpenToLockOwner4 {
            open_seqid: 0,
            open_stateid: open,
            lock_seqid: 0,
            lock_owner: owner(c, b"L1"),
        }),
    })
}

/// A regular file "f" in the root of `server`'s store, and its handle.
async fn file_f(server: &Server<MemStore>) -> NfsFh4 {
    let (f, _) = server
        .store
        .create(
            &backend::Cred::root(),
            server.store.root(),
            b"f",
            backend::NodeKind::Regular,
            Default::default(),
            backend::CreateMode::Guarded,
        )
        .await
        .unwrap();
    NfsFh4(server.fh(1, f.id).0)
}

#[tokio::test]
async fn an_nlm_lock_held_before_a_restart_cannot_be_taken_by_a_v4_lock_during_the_shared_grace() {
    use nfs_proto::nlm::Nlm4Stat;
    // The previous run had granted "nlmhost" a lock (it is in the NSM monitor list); no NFSv4.1
    // client had state.
    let now = Instant::now();
    let state = restarted_state(Arc::default(), &[], &["nlmhost"], now).await;
    let server = server_with(state);
    let fh = file_f(&server).await;
    let mut h = Harness::at(server, now).await;
    let c = h.clientid;
    h.ok(vec![NfsArgOp4::ReclaimComplete(false)]).await;
    assert!(h.server.state.in_grace(now), "NLM's clients may reclaim");
    let open = vec![NfsArgOp4::Putrootfh, open_create(c, "f")];
    let r = h.run(open.clone()).await;
    assert_eq!(
        r.status,
        Nfsstat4::Grace,
        "no new v4 state while NLM reclaims"
    );
    // nlmhost reclaims its lock; nobody else gets one.
    let s = |secs| now + Duration::from_secs(secs);
    assert_eq!(
        nlm_lock(&h.server, &fh, b"nlmhost", true, s(1)).await,
        Nlm4Stat::Granted
    );
    assert_eq!(
        nlm_lock(&h.server, &fh, b"other", false, s(2)).await,
        Nlm4Stat::DeniedGracePeriod
    );
    // After NLM's 45 s the v4 client may open, but the range is nlmhost's.
    h.now = s(46);
    assert!(!h.server.state.in_grace(h.now));
    let sid = open_stateid(&h.ok(open).await);
    let r = h
        .run(vec![NfsArgOp4::Putfh(fh.clone()), v4_lock(c, sid, false)])
        .await;
    assert_eq!(r.status, Nfsstat4::Denied, "{r:?}");
}

#[tokio::test]
async fn a_v4_lock_held_before_a_restart_cannot_be_taken_by_an_nlm_lock_during_the_shared_grace() {
    use nfs_proto::nlm::Nlm4Stat;
    // The previous run knew NFSv4.1 client "c1" (the harness's client, verifier [1; 8]); no
    // NLM client held locks.
    let now = Instant::now();
    let c1 = ClientRecord {
        clientid: 42,
        owner: Bytes::from_static(b"c1"),
        verifier: [1; 8],
        server: None,
    };
    let state = restarted_state(Arc::default(), &[c1], &[], now).await;
    let server = server_with(state);
    let fh = file_f(&server).await;
    let mut h = Harness::at(server, now).await;
    let c = h.clientid;
    let s = |secs| now + Duration::from_secs(secs);
    // An NLM client may not lock while c1 may still reclaim.
    assert_eq!(
        nlm_lock(&h.server, &fh, b"nlmhost", false, s(1)).await,
        Nlm4Stat::DeniedGracePeriod
    );
    // c1 reclaims its open and its lock, then says it is done: the grace period ends.
    let sid = open_stateid(
        &h.ok(vec![NfsArgOp4::Putfh(fh.clone()), reclaim_open(c)])
            .await,
    );
    h.ok(vec![NfsArgOp4::Putfh(fh.clone()), v4_lock(c, sid, true)])
        .await;
    h.ok(vec![NfsArgOp4::ReclaimComplete(false)]).await;
    assert!(!h.server.state.in_grace(s(2)));
    // The range is c1's: the NLM client is refused for the conflict, not for grace.
    assert_eq!(
        nlm_lock(&h.server, &fh, b"nlmhost", false, s(3)).await,
        Nlm4Stat::Denied
    );
}

#[tokio::test]
async fn an_nlm_client_that_cannot_be_recorded_durably_gets_no_lock() {
    use nfs_proto::nlm::Nlm4Stat;
    let store = Arc::new(MemStateStore::default());
    let now = Instant::now();
    let server = server_with(restarted_state(store.clone(), &[], &[], now).await);
    let fh = file_f(&server).await;
    store.set_failing(true);
    assert_eq!(
        nlm_lock(&server, &fh, b"nlmhost", false, now).await,
        Nlm4Stat::DeniedNoLocks
    );
    store.set_failing(false);
    assert_eq!(
        nlm_lock(&server, &fh, b"nlmhost", false, now).await,
        Nlm4Stat::Granted
    );
    let (_, doc) = store.get(StateKey::Nsm).unwrap();
    let saved = crate::state::nlm::NsmRecord::from_doc(&doc).unwrap();
    assert_eq!(
        saved.clients.len(),
        1,
        "the lock holder is in the saved monitor list"
    );
}

#[tokio::test]
async fn an_nlm_reclaim_is_accepted_in_grace_and_refused_after_it() {
    use nfs_proto::nlm::Nlm4Stat;
    let now = Instant::now();
    let state = restarted_state(Arc::default(), &[], &["node-a"], now).await;
    let server = server_with(state);
    let fh = file_f(&server).await;
    let s = |secs| now + Duration::from_secs(secs);
    assert_eq!(
        nlm_lock(&server, &fh, b"node-b", false, s(1)).await,
        Nlm4Stat::DeniedGracePeriod
    );
    assert_eq!(
        nlm_lock(&server, &fh, b"node-a", true, s(2)).await,
        Nlm4Stat::Granted,
        "reclaim in grace"
    );
    // grace_seconds is 45 in `restarted_state`: after it, a reclaim is too late, and the
    // reclaimed lock holds against everyone else.
    assert_eq!(
        nlm_lock(&server, &fh, b"node-a", true, s(46)).await,
        Nlm4Stat::DeniedGracePeriod,
        "reclaim too late"
    );
    assert_eq!(
        nlm_lock(&server, &fh, b"node-b", false, s(46)).await,
        Nlm4Stat::Denied,
        "node-a's reclaimed lock holds"
    );
}

#[tokio::test]
async fn after_a_takeover_the_target_s_lock_clients_reclaim_first_while_opens_go_on() {
    use crate::state::nlm::{Monitored, NsmRecord};
    use nfs_proto::nlm::Nlm4Stat;
    let server = server();
    let fh = file_f(&server).await;
    // Node 2's monitor list: gpu01 took its lock through the floating target's address,
    // gpu02 through another of node 2's addresses.
    let client = |name: &str, addr: &str, server_addr: &str| Monitored {
        name: name.into(),
        addr: addr.parse().unwrap(),
        server_addr: server_addr.parse().unwrap(),
    };
    let theirs = NsmRecord {
        state: 7,
        clients: vec![
            client("gpu01", "10.0.0.9", "10.0.0.200"),
            client("gpu02", "10.0.0.8", "10.0.0.2"),
        ],
    };
    server
        .store
        .put_doc(b"node/2/nsm", 1, theirs.to_doc())
        .await
        .unwrap();
    let told = server
        .adopt_target(Some(2), &["10.0.0.200".parse().unwrap()])
        .await;
    assert_eq!(told, vec![client("gpu01", "10.0.0.9", "10.0.0.200")]);
    let start = Instant::now();
    let s = |secs| start + Duration::from_secs(secs);
    // Until gpu01 reclaimed, nobody else gets a lock; its reclaim is taken.
    assert_eq!(
        nlm_lock(&server, &fh, b"other", false, s(1)).await,
        Nlm4Stat::DeniedGracePeriod
    );
    assert_eq!(
        nlm_lock(&server, &fh, b"gpu01", true, s(2)).await,
        Nlm4Stat::Granted
    );
    // Opens are not held: the files never went away.
    assert!(!server.state.in_grace(s(3)));
    let mut h = Harness::at(server, s(3)).await;
    let c = h.clientid;
    h.ok(vec![NfsArgOp4::ReclaimComplete(false)]).await;
    h.ok(vec![NfsArgOp4::Putrootfh, open_create(c, "g")]).await;
    // After the lock window (nlm.grace_seconds, 45 s here) the range is still gpu01's.
    assert_eq!(
        nlm_lock(&h.server, &fh, b"other", false, s(48)).await,
        Nlm4Stat::Denied
    );
    // Adopting the same target again (a retried takeover) tells gpu01 still, until it was.
    assert_eq!(
        h.server
            .adopt_target(Some(2), &["10.0.0.200".parse().unwrap()])
            .await
            .len(),
        1
    );
    // Once told, gpu01 holds its lock here. When this node stops serving the target, the lock
    // goes, and gpu01 stays in the saved list; taking the target back with no other owner in
    // between tells it again.
    let float: std::net::IpAddr = "10.0.0.200".parse().unwrap();
    h.server.state.nlm.notified("gpu01");
    h.server
        .state
        .nlm
        .monitor("gpu01", "10.0.0.9".parse().unwrap(), float);
    h.server.release_target(&[float]).await;
    assert_eq!(
        nlm_lock(&h.server, &fh, b"other", false, s(49)).await,
        Nlm4Stat::Granted,
        "the moved client's lock is gone here"
    );
    let told = h.server.adopt_target(None, &[float]).await;
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].name, "gpu01");
}

#[tokio::test]
async fn after_a_takeover_the_target_s_v4_clients_reclaim_opens_and_locks_and_new_locks_wait() {
    let server = server();
    let fh = file_f(&server).await;
    let float: std::net::IpAddr = "10.0.0.200".parse().unwrap();
    // Node 2 knew c1 through the floating target's address, c9 through one of its own.
    let record = |id, owner: &'static [u8], at: &str| ClientRecord {
        clientid: id,
        owner: Bytes::from_static(owner),
        verifier: [1; 8],
        server: Some(at.parse().unwrap()),
    };
    let theirs = [
        record(0x1_0020_0001, b"c1", "10.0.0.200"),
        record(0x1_0020_0002, b"c9", "10.0.0.2"),
    ];
    server
        .store
        .put_doc(
            b"node/2/nfs4-clients",
            1,
            crate::state::nfs4::records_doc(&theirs),
        )
        .await
        .unwrap();
    server.adopt_target(Some(2), &[float]).await;
    let now = Instant::now();
    assert!(!server.state.in_grace(now), "opens are not held");
    assert!(server.state.locks_in_grace(now));
    let saved = server.state.nfs4.lock().records();
    assert!(saved.iter().any(|r| r.owner == "c1"), "adopted and saved");
    assert!(
        !saved.iter().any(|r| r.owner == "c9"),
        "not the target's client"
    );
    // c1 comes back (a new clientid: node 2's sessions mean nothing here).
    let mut h = Harness::at(server, now).await;
    let c = h.clientid;
    assert_ne!(c, theirs[0].clientid);
    // Another client may open, but not lock, while c1 may still reclaim.
    let (sid2, c2) = h.second_client(b"other").await;
    let seq2 = |n| {
        NfsArgOp4::Sequence(Sequence4Args {
            sessionid: sid2,
            sequenceid: n,
            slotid: 0,
            highest_slotid: 0,
            cachethis: false,
        })
    };
    let r = h
        .raw(vec![seq2(1), NfsArgOp4::ReclaimComplete(false)])
        .await;
    assert_eq!(r.status, Nfsstat4::Ok, "{r:?}");
    let open2 = NfsArgOp4::Open(Open4Args {
        seqid: 0,
        share_access: open4::SHARE_ACCESS_BOTH,
        share_deny: open4::SHARE_DENY_NONE,
        owner: owner(c2, b"o2"),
        openhow: OpenFlag4(None),
        claim: OpenClaim4::Fh,
    });
    let r = h
        .raw(vec![seq2(2), NfsArgOp4::Putfh(fh.clone()), open2])
        .await;
    assert_eq!(r.status, Nfsstat4::Ok, "{r:?}");
    let sid_other = open_stateid(&r.resarray);
    let lock2 = |n| {
        vec![
            seq2(n),
            NfsArgOp4::Putfh(fh.clone()),
            v4_lock(c2, sid_other, false),
        ]
    };
    assert_eq!(h.raw(lock2(3)).await.status, Nfsstat4::Grace);
    // c1 reclaims its open and its lock, then says it is done: the window closes.
    let sid = open_stateid(
        &h.ok(vec![NfsArgOp4::Putfh(fh.clone()), reclaim_open(c)])
            .await,
    );
    h.ok(vec![NfsArgOp4::Putfh(fh.clone()), v4_lock(c, sid, true)])
        .await;
    h.ok(vec![NfsArgOp4::ReclaimComplete(false)]).await;
    assert!(!h.server.state.locks_in_grace(now));
    assert_eq!(
        h.raw(lock2(4)).await.status,
        Nfsstat4::Denied,
        "c1's reclaimed lock holds"
    );
    // c9 (through another address of node 2, so not adopted, above) gets a clientid of
    // this node, unlike node 2's.
    let r = h.raw(vec![exchange_id_args(b"c9", 1)]).await;
    let NfsResOp4::ExchangeId(Ok(e)) = &r.resarray[0] else {
        panic!("{r:?}")
    };
    assert_ne!(e.clientid >> 20 & 0xfff, theirs[1].clientid >> 20 & 0xfff);
    // When the target leaves this node, c1's session and lock go; its record stays for the
    // next owner. c1's EXCHANGE_ID came to 10.0.0.1 (the harness's address, as the other's).
    let here: std::net::IpAddr = "10.0.0.1".parse().unwrap();
    h.server.release_target(&[here]).await;
    assert_eq!(
        h.run(vec![NfsArgOp4::Putrootfh]).await.status,
        Nfsstat4::BadSession
    );
    assert!(h
        .server
        .state
        .nfs4
        .lock()
        .records()
        .iter()
        .any(|r| r.owner == "c1" && r.server == Some(here)));
    // Both v4 clients came through it, so neither holds a lock here now.
    assert_eq!(
        nlm_lock(&h.server, &fh, b"nlmhost", false, now).await,
        nfs_proto::nlm::Nlm4Stat::Granted,
        "c1's lock went"
    );
}

#[test]
fn ids_of_two_nodes_at_the_same_epoch_never_collide() {
    use crate::state::nfs4::StateTable;
    let now = Instant::now();
    let lease = Duration::from_secs(90);
    let mut a = StateTable::new(1, 1, lease, Vec::new());
    let mut b = StateTable::new(1, 2, lease, Vec::new());
    let owner = Bytes::from_static(b"c");
    let (ia, _, _) = a
        .exchange_id(&owner, [1; 8], "sys:0", false, None, now)
        .unwrap();
    let (ib, _, _) = b
        .exchange_id(&owner, [1; 8], "sys:0", false, None, now)
        .unwrap();
    assert_ne!(ia, ib);
    assert!(
        b.check_client(ia).is_err(),
        "node 1's clientid is stale on node 2"
    );
}

#[tokio::test]
async fn at_a_restart_clients_of_a_floating_target_do_not_hold_the_node_in_grace() {
    let now = Instant::now();
    let float: std::net::IpAddr = "10.0.0.200".parse().unwrap();
    let c1 = ClientRecord {
        clientid: 42,
        owner: Bytes::from_static(b"c1"),
        verifier: [1; 8],
        server: Some(float),
    };
    let state = restarted_state(Arc::default(), &[c1], &[], now).await;
    assert!(state.in_grace(now));
    // What `Server::set_aside_floating_v4` does once the targets are known.
    let owners = state.nfs4.lock().set_aside(&[float], now);
    state.grace().set_aside_v4(&owners);
    assert!(!state.in_grace(now), "c1 reclaims wherever the target goes");
    // The target comes (back) to this node: c1 may reclaim here after all.
    let server = server_with(state);
    server.adopt_target(None, &[float]).await;
    let later = Instant::now();
    assert!(server.state.locks_in_grace(later));
    assert!(!server.state.in_grace(later));
    // Had it gone elsewhere, the record would go after two leases.
    let mut st = server.state.nfs4.lock();
    st.expire(later + Duration::from_secs(181));
    assert_eq!(st.records().len(), 1, "kept: it was adopted here");
}

#[tokio::test]
async fn a_client_known_here_through_another_target_reclaims_what_it_held_through_the_moved_one() {
    // Linux sends one owner string to every server: "c1" uses a target of this node (the
    // harness's session, done reclaiming) and one of node 2 that moves here.
    let server = server();
    let fh = file_f(&server).await;
    let mut h = Harness::at(server, Instant::now()).await;
    let c = h.clientid;
    h.ok(vec![NfsArgOp4::ReclaimComplete(false)]).await;
    let float: std::net::IpAddr = "10.0.0.200".parse().unwrap();
    let theirs = [ClientRecord {
        clientid: 0x1_0020_0001,
        owner: Bytes::from_static(b"c1"),
        verifier: [1; 8],
        server: Some(float),
    }];
    h.server
        .store
        .put_doc(
            b"node/2/nfs4-clients",
            1,
            crate::state::nfs4::records_doc(&theirs),
        )
        .await
        .unwrap();
    h.server.adopt_target(Some(2), &[float]).await;
    h.now = Instant::now();
    assert!(
        h.server.state.locks_in_grace(h.now),
        "new locks wait for c1"
    );
    let sid = open_stateid(
        &h.ok(vec![NfsArgOp4::Putfh(fh.clone()), reclaim_open(c)])
            .await,
    );
    h.ok(vec![NfsArgOp4::Putfh(fh.clone()), v4_lock(c, sid, true)])
        .await;
    // Its second RECLAIM_COMPLETE ends the moved target's reclaim; a third is one too many.
    h.ok(vec![NfsArgOp4::ReclaimComplete(false)]).await;
    assert!(!h.server.state.locks_in_grace(h.now));
    let r = h.run(vec![NfsArgOp4::ReclaimComplete(false)]).await;
    assert_eq!(r.status, Nfsstat4::CompleteAlready);
    assert_eq!(
        h.server.state.nfs4.lock().records().len(),
        1,
        "one record per owner"
    );
}
