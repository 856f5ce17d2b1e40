//! Codec tests: every op and result round trips; hostile input (truncation at every offset,
//! undefined ops, huge counts and lengths) never panics, never allocates by a wire count, and
//! maps to the status RFC 8881 asks for.

use bytes::Bytes;

use super::*;
use crate::limits::{COMPOUND_OPS_MAX, FH4_LEN_MAX, IO_SIZE_MAX};
use crate::rpc::AuthSys;
use crate::xdr::{Decode, Encode, Reader, Writer, XdrError};

fn fh() -> NfsFh4 {
    NfsFh4(Bytes::from_static(&[7u8; 40]))
}

fn sid(n: u8) -> Stateid4 {
    Stateid4 {
        seqid: n as u32,
        other: [n; 12],
    }
}

fn sess() -> SessionId4 {
    SessionId4([3; 16])
}

fn name(s: &'static str) -> Component4 {
    Component4(Bytes::from_static(s.as_bytes()))
}

fn owner() -> StateOwner4 {
    StateOwner4 {
        clientid: 0x1234_5678_9abc_def0,
        owner: Opaque4::from(&b"open id:\x00\x00\x00\x01"[..]),
    }
}

fn attrs() -> Fattr4 {
    let mut w = FattrWriter::new();
    w.attr(attr4::SIZE, |w| w.u64(4096))
        .attr(attr4::MODE, |w| w.u32(0o644))
        .value(
            attr4::TIME_MODIFY_SET,
            &Settime4::ClientTime(Nfstime4 {
                seconds: -5,
                nseconds: 9,
            }),
        );
    w.finish()
}

fn chan() -> ChannelAttrs4 {
    ChannelAttrs4 {
        ca_headerpadsize: 0,
        ca_maxrequestsize: 1 << 20,
        ca_maxresponsesize: 1 << 20,
        ca_maxresponsesize_cached: 4096,
        ca_maxoperations: 16,
        ca_maxrequests: 64,
        ca_rdma_ird: Some(4),
    }
}

fn auth_sys() -> AuthSys {
    AuthSys {
        stamp: 1,
        machine_name: Bytes::from_static(b"gpu01"),
        uid: 0,
        gid: 0,
        gids: vec![1, 2],
    }
}

/// One instance of every NFSv4.1 operation, several for the unions.
fn every_op() -> Vec<NfsArgOp4> {
    use NfsArgOp4::*;
    let lock_owner = Locker4::NewLockOwner(OpenToLockOwner4 {
        open_seqid: 0,
        open_stateid: sid(1),
        lock_seqid: 0,
        lock_owner: owner(),
    });
    let mut ops = vec![
        Access(access4::READ | access4::LOOKUP),
        Close(Close4Args {
            seqid: 0,
            open_stateid: sid(2),
        }),
        Commit(Commit4Args {
            offset: 1 << 40,
            count: 0,
        }),
        Create(Create4Args {
            objtype: CreateType4::Lnk(LinkText4::from(&b"../target"[..])),
            objname: name("link"),
            createattrs: attrs(),
        }),
        Create(Create4Args {
            objtype: CreateType4::Chr(Specdata4 {
                specdata1: 1,
                specdata2: 3,
            }),
            objname: name("null"),
            createattrs: Fattr4::default(),
        }),
        Create(Create4Args {
            objtype: CreateType4::Other(ftype4::NF4REG),
            objname: name("reg"),
            createattrs: Fattr4::default(),
        }),
        Delegpurge(9),
        Delegreturn(sid(3)),
        Getattr(Bitmap4::from_bits(&[
            attr4::TYPE,
            attr4::SIZE,
            attr4::FILEID,
        ])),
        Getfh,
        Link(name("hard")),
        Lock(Lock4Args {
            locktype: NfsLockType4::WriteW,
            reclaim: false,
            offset: 0,
            length: u64::MAX,
            locker: lock_owner,
        }),
        Lock(Lock4Args {
            locktype: NfsLockType4::Read,
            reclaim: true,
            offset: 10,
            length: 10,
            locker: Locker4::ExistingLockOwner(ExistLockOwner4 {
                lock_stateid: sid(4),
                lock_seqid: 0,
            }),
        }),
        Lockt(Lockt4Args {
            locktype: NfsLockType4::Write,
            offset: 0,
            length: 1,
            owner: owner(),
        }),
        Locku(Locku4Args {
            locktype: NfsLockType4::Write,
            seqid: 0,
            lock_stateid: sid(4),
            offset: 0,
            length: 1,
        }),
        Lookup(name("dir")),
        Lookupp,
        Nverify(attrs()),
        Openattr(false),
        OpenDowngrade(OpenDowngrade4Args {
            open_stateid: sid(2),
            seqid: 0,
            share_access: open4::SHARE_ACCESS_READ,
            share_deny: open4::SHARE_DENY_NONE,
        }),
        Putfh(fh()),
        Putpubfh,
        Putrootfh,
        Read(Read4Args {
            stateid: Stateid4::ANONYMOUS,
            offset: 0,
            count: 1 << 20,
        }),
        Readdir(Readdir4Args {
            cookie: 0,
            cookieverf: [0; 8],
            dircount: 8192,
            maxcount: 32768,
            attr_request: Bitmap4::from_bits(&[attr4::TYPE, attr4::MOUNTED_ON_FILEID]),
        }),
        Readlink,
        Remove(name("old")),
        Rename(Rename4Args {
            oldname: name("a"),
            newname: name("b"),
        }),
        Restorefh,
        Savefh,
        Secinfo(name("export")),
        Setattr(Setattr4Args {
            stateid: Stateid4::ANONYMOUS,
            obj_attributes: attrs(),
        }),
        Verify(attrs()),
        Write(Write4Args {
            stateid: sid(2),
            offset: 7,
            stable: StableHow4::FileSync,
            data: Bytes::from_static(b"hello"),
        }),
        BackchannelCtl(BackchannelCtl4Args {
            cb_program: 0x4000_0000,
            sec_parms: vec![
                CallbackSecParms4::AuthNone,
                CallbackSecParms4::AuthSys(auth_sys()),
            ],
        }),
        BindConnToSession(BindConnToSession4Args {
            sessid: sess(),
            dir: 3,
            use_conn_in_rdma_mode: false,
        }),
        ExchangeId(ExchangeId4Args {
            clientowner: ClientOwner4 {
                co_verifier: [1; 8],
                co_ownerid: Opaque4::from(&b"Linux NFSv4.1 gpu01"[..]),
            },
            flags: exchgid4::FLAG_SUPP_MOVED_REFER | exchgid4::FLAG_BIND_PRINC_STATEID,
            state_protect: StateProtect4A::None,
            client_impl_id: Some(NfsImplId4 {
                nii_domain: Utf8Str4::from(&b"kernel.org"[..]),
                nii_name: Utf8Str4::from(&b"Linux 6.1"[..]),
                nii_date: Nfstime4::default(),
            }),
        }),
        ExchangeId(ExchangeId4Args {
            clientowner: ClientOwner4 {
                co_verifier: [2; 8],
                co_ownerid: Opaque4::from(&b"ssv client"[..]),
            },
            flags: 0,
            state_protect: StateProtect4A::Ssv(SsvSpParms4 {
                ssp_ops: StateProtectOps4 {
                    spo_must_enforce: Bitmap4::from_bits(&[op4::CLOSE]),
                    spo_must_allow: Bitmap4::new(),
                },
                ssp_hash_algs: vec![SecOid4::from(&[0x60, 0x86][..])],
                ssp_encr_algs: vec![],
                ssp_window: 1,
                ssp_num_gss_handles: 2,
            }),
            client_impl_id: None,
        }),
        ExchangeId(ExchangeId4Args {
            clientowner: ClientOwner4 {
                co_verifier: [3; 8],
                co_ownerid: Opaque4::from(&b"mach cred"[..]),
            },
            flags: 0,
            state_protect: StateProtect4A::MachCred(StateProtectOps4 {
                spo_must_enforce: Bitmap4::from_bits(&[op4::DESTROY_SESSION]),
                spo_must_allow: Bitmap4::from_bits(&[op4::CLOSE]),
            }),
            client_impl_id: None,
        }),
        CreateSession(CreateSession4Args {
            clientid: 5,
            sequence: 1,
            flags: create_session4::FLAG_CONN_BACK_CHAN,
            fore_chan_attrs: chan(),
            back_chan_attrs: ChannelAttrs4::default(),
            cb_program: 0x4000_0000,
            sec_parms: vec![
                CallbackSecParms4::AuthSys(auth_sys()),
                CallbackSecParms4::RpcsecGss(GssCbHandles4 {
                    gcbp_service: 1,
                    gcbp_handle_from_server: GssHandle4::from(&b"s"[..]),
                    gcbp_handle_from_client: GssHandle4::from(&b"c"[..]),
                }),
            ],
        }),
        DestroySession(sess()),
        FreeStateid(sid(5)),
        GetDirDelegation(GetDirDelegation4Args {
            signal_deleg_avail: true,
            notification_types: Bitmap4::from_bits(&[2, 3]),
            child_attr_delay: Nfstime4::default(),
            dir_attr_delay: Nfstime4 {
                seconds: 1,
                nseconds: 0,
            },
            child_attributes: Bitmap4::new(),
            dir_attributes: Bitmap4::from_bits(&[attr4::CHANGE]),
        }),
        Getdeviceinfo(Getdeviceinfo4Args {
            device_id: [9; 16],
            layout_type: 1,
            maxcount: 4096,
            notify_types: Bitmap4::new(),
        }),
        Getdevicelist(Getdevicelist4Args {
            layout_type: 1,
            maxdevices: 16,
            cookie: 0,
            cookieverf: [0; 8],
        }),
        Layoutcommit(Layoutcommit4Args {
            offset: 0,
            length: 100,
            reclaim: false,
            stateid: sid(6),
            last_write_offset: Some(99),
            time_modify: None,
            layoutupdate: LayoutContent4 {
                loc_type: 1,
                loc_body: Body4::default(),
            },
        }),
        Layoutget(Layoutget4Args {
            signal_layout_avail: false,
            layout_type: 1,
            iomode: 2,
            offset: 0,
            length: u64::MAX,
            minlength: 0,
            stateid: sid(6),
            maxcount: 4096,
        }),
        Layoutreturn(Layoutreturn4Args {
            reclaim: false,
            layout_type: 1,
            iomode: 3,
            layoutreturn: Layoutreturn4::File(LayoutreturnFile4 {
                offset: 0,
                length: u64::MAX,
                stateid: sid(6),
                body: Body4::from(&b"x"[..]),
            }),
        }),
        Layoutreturn(Layoutreturn4Args {
            reclaim: false,
            layout_type: 1,
            iomode: 3,
            layoutreturn: Layoutreturn4::Other(3),
        }),
        SecinfoNoName(SecinfoStyle4::CurrentFh),
        Sequence(Sequence4Args {
            sessionid: sess(),
            sequenceid: 1,
            slotid: 0,
            highest_slotid: 63,
            cachethis: true,
        }),
        SetSsv(SetSsv4Args {
            ssv: Opaque4::from(&b"secret"[..]),
            digest: Opaque4::from(&b"mic"[..]),
        }),
        TestStateid(TestStateid4Args {
            stateids: vec![sid(1), sid(2), Stateid4::INVALID],
        }),
        WantDelegation(WantDelegation4Args {
            want: open4::SHARE_ACCESS_WANT_READ_DELEG,
            claim: DelegClaim4::Previous(OpenDelegationType4::Read),
        }),
        DestroyClientid(5),
        ReclaimComplete(false),
    ];
    let claims = [
        OpenClaim4::Null(name("file")),
        OpenClaim4::Previous(OpenDelegationType4::Write),
        OpenClaim4::DelegateCur {
            delegate_stateid: sid(7),
            file: name("file"),
        },
        OpenClaim4::DelegatePrev(name("file")),
        OpenClaim4::Fh,
        OpenClaim4::DelegCurFh(sid(7)),
        OpenClaim4::DelegPrevFh,
    ];
    let hows = [
        None,
        Some(CreateHow4::Unchecked(attrs())),
        Some(CreateHow4::Guarded(Fattr4::default())),
        Some(CreateHow4::Exclusive([8; 8])),
        Some(CreateHow4::Exclusive41 {
            verifier: [8; 8],
            attrs: attrs(),
        }),
    ];
    for (i, claim) in claims.into_iter().enumerate() {
        ops.push(Open(Open4Args {
            seqid: 0,
            share_access: open4::SHARE_ACCESS_BOTH | open4::SHARE_ACCESS_WANT_NO_DELEG,
            share_deny: open4::SHARE_DENY_NONE,
            owner: owner(),
            openhow: OpenFlag4(hows[i % hows.len()].clone()),
            claim,
        }));
    }
    ops
}

fn encode_compound(args: &Compound4Args) -> Bytes {
    let mut w = Writer::new();
    args.encode(&mut w);
    w.into_bytes()
}

fn compound(ops: Vec<NfsArgOp4>) -> Compound4Args {
    Compound4Args {
        tag: Tag4::from(&b"test"[..]),
        minorversion: 1,
        argarray: ops,
    }
}

fn decode(b: Bytes) -> crate::xdr::Result<DecodedCompound4> {
    Compound4Args::decode(&mut Reader::new(b))
}

/// A COMPOUND header with `count` ops, followed by `body`.
fn raw_compound(count: u32, body: impl FnOnce(&mut Writer)) -> Bytes {
    let mut w = Writer::new();
    w.opaque(b"t");
    w.u32(1);
    w.u32(count);
    body(&mut w);
    w.into_bytes()
}

#[test]
fn every_operation_round_trips_through_encode_and_decode() {
    let ops = every_op();
    let mut seen: Vec<u32> = ops.iter().map(NfsArgOp4::opnum).collect();
    seen.sort_unstable();
    seen.dedup();
    let expected: Vec<u32> = (op4::FIRST..=op4::LAST)
        .filter(|&n| !op4::is_mandatory_not_implemented(n))
        .collect();
    assert_eq!(seen, expected, "every NFSv4.1 op has a sample");
    // One compound per op, so the op-count limit does not get in the way.
    for op in ops {
        let args = compound(vec![op]);
        let decoded = decode(encode_compound(&args)).unwrap();
        assert_eq!(decoded.stop, None, "{:?}", args.argarray[0]);
        assert_eq!(decoded.args, args);
    }
}

#[test]
fn a_compound_of_many_ops_round_trips_in_order() {
    let ops: Vec<_> = every_op()
        .into_iter()
        .take(COMPOUND_OPS_MAX as usize)
        .collect();
    let args = compound(ops);
    let decoded = decode(encode_compound(&args)).unwrap();
    assert_eq!(decoded.stop, None);
    assert_eq!(decoded.args, args);
}

#[test]
fn a_compound_with_more_ops_than_the_limit_is_refused_before_allocation() {
    let seq = NfsArgOp4::Sequence(Sequence4Args {
        sessionid: sess(),
        sequenceid: 1,
        slotid: 0,
        highest_slotid: 0,
        cachethis: false,
    });
    for count in [COMPOUND_OPS_MAX + 1, u32::MAX] {
        let b = raw_compound(count, |w| {
            seq.encode(w);
            NfsArgOp4::Putrootfh.encode(w);
        });
        let d = decode(b).unwrap();
        assert_eq!(d.stop, Some(DecodeStop::TooManyOps { count }));
        assert_eq!(
            d.stop.as_ref().map(DecodeStop::status),
            Some(Nfsstat4::TooManyOps)
        );
        // Only the first op (SEQUENCE, which carries the error) was decoded and allocated.
        assert_eq!(d.args.argarray, vec![seq.clone()]);
        assert!(d.args.argarray.capacity() <= 1);
    }
}

#[test]
fn a_compound_at_the_op_limit_is_accepted() {
    let ops = vec![NfsArgOp4::Getfh; COMPOUND_OPS_MAX as usize];
    let d = decode(encode_compound(&compound(ops))).unwrap();
    assert_eq!(d.stop, None);
    assert_eq!(d.args.argarray.len(), COMPOUND_OPS_MAX as usize);
}

#[test]
fn an_op_count_larger_than_the_bytes_left_allocates_only_what_the_bytes_allow() {
    let b = raw_compound(COMPOUND_OPS_MAX, |w| NfsArgOp4::Getfh.encode(w));
    let d = decode(b).unwrap();
    assert!(d.args.argarray.capacity() <= 1);
    assert_eq!(
        d.stop,
        Some(DecodeStop::Op {
            index: 1,
            opnum: op4::ILLEGAL,
            status: Nfsstat4::BadXdr
        })
    );
}

#[test]
fn truncating_a_sample_compound_at_every_byte_offset_never_panics_and_yields_badxdr() {
    let args = compound(vec![
        NfsArgOp4::Sequence(Sequence4Args {
            sessionid: sess(),
            sequenceid: 7,
            slotid: 1,
            highest_slotid: 1,
            cachethis: false,
        }),
        NfsArgOp4::Putfh(fh()),
        every_op()
            .into_iter()
            .find(|o| o.opnum() == op4::OPEN)
            .unwrap(),
        NfsArgOp4::Getattr(Bitmap4::from_bits(&[attr4::SIZE])),
        NfsArgOp4::Write(Write4Args {
            stateid: sid(1),
            offset: 0,
            stable: StableHow4::Unstable,
            data: Bytes::from_static(&[1u8; 33]),
        }),
    ]);
    let full = encode_compound(&args);
    let header_len = 4 + 4 + 4 + 4; // tag length, "test", minorversion, op count
    for cut in 0..full.len() {
        match decode(full.slice(..cut)) {
            Err(e) => {
                assert!(cut < header_len, "cut {cut}: {e}");
                assert_eq!(e, XdrError::Truncated);
            }
            Ok(d) => {
                assert!(cut >= header_len, "cut {cut}");
                let Some(DecodeStop::Op { index, status, .. }) = d.stop else {
                    panic!("cut {cut}: {:?}", d.stop);
                };
                assert_eq!(status, Nfsstat4::BadXdr, "cut {cut}");
                assert_eq!(index, d.args.argarray.len());
                assert_eq!(d.args.argarray[..], args.argarray[..index]);
            }
        }
    }
    assert_eq!(decode(full).unwrap().stop, None);
}

#[test]
fn an_unknown_op_number_stops_decoding_with_op_illegal() {
    // 0-2 are below the first op, 59 is NFSv4.2's ALLOCATE, 10044 is OP_ILLEGAL itself.
    for opnum in [0, 1, 2, 59, 75, op4::ILLEGAL, u32::MAX] {
        let b = raw_compound(3, |w| {
            NfsArgOp4::Putrootfh.encode(w);
            w.u32(opnum);
            NfsArgOp4::Getfh.encode(w);
        });
        let d = decode(b).unwrap();
        assert_eq!(d.args.argarray, vec![NfsArgOp4::Putrootfh]);
        let stop = d.stop.unwrap();
        assert_eq!(
            stop,
            DecodeStop::Op {
                index: 1,
                opnum: op4::ILLEGAL,
                status: Nfsstat4::OpIllegal
            }
        );
        let res = NfsResOp4::error(op4::ILLEGAL, stop.status());
        assert_eq!(res, NfsResOp4::Illegal(Nfsstat4::OpIllegal));
        let mut w = Writer::new();
        assert_eq!(res.encode(&mut w), None);
        assert_eq!(
            &w.into_bytes()[..],
            &[0, 0, 0x27, 0x3c, 0, 0, 0x27, 0x3c][..]
        );
    }
}

#[test]
fn nfsv4_0_only_operations_answer_notsupp_under_their_own_number() {
    for opnum in [
        op4::OPEN_CONFIRM,
        op4::RENEW,
        op4::SETCLIENTID,
        op4::SETCLIENTID_CONFIRM,
        op4::RELEASE_LOCKOWNER,
    ] {
        let b = raw_compound(2, |w| {
            NfsArgOp4::Putrootfh.encode(w);
            w.u32(opnum);
            w.u64(42); // some argument bytes; never looked at
        });
        let d = decode(b).unwrap();
        let stop = d.stop.unwrap();
        assert_eq!(
            stop,
            DecodeStop::Op {
                index: 1,
                opnum,
                status: Nfsstat4::NotSupp
            }
        );
        let res = NfsResOp4::error(opnum, Nfsstat4::NotSupp);
        assert_eq!(res.opnum(), opnum);
        let mut w = Writer::new();
        res.encode(&mut w);
        let back = NfsResOp4::decode(&mut Reader::new(w.into_bytes())).unwrap();
        assert_eq!(back, res);
    }
}

#[test]
fn a_minor_version_other_than_one_is_a_mismatch_and_no_op_is_decoded() {
    for minor in [0, 2, u32::MAX] {
        let mut args = compound(vec![NfsArgOp4::Putrootfh]);
        args.minorversion = minor;
        let d = decode(encode_compound(&args)).unwrap();
        assert_eq!(d.stop, Some(DecodeStop::MinorVersMismatch));
        assert!(d.args.argarray.is_empty());
        assert_eq!(d.args.tag, args.tag);
    }
}

#[test]
fn a_huge_bitmap_word_count_is_refused_before_allocating() {
    for words in [crate::limits::BITMAP4_WORDS_MAX + 1, u32::MAX] {
        let b = raw_compound(1, |w| {
            w.u32(op4::GETATTR);
            w.u32(words);
            w.u32(1);
        });
        let d = decode(b).unwrap();
        assert_eq!(
            d.stop,
            Some(DecodeStop::Op {
                index: 0,
                opnum: op4::GETATTR,
                status: Nfsstat4::BadXdr
            })
        );
    }
    let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]));
    assert!(matches!(
        Bitmap4::decode(&mut r),
        Err(XdrError::TooLong { .. })
    ));
}

#[test]
fn huge_opaque_lengths_and_array_counts_are_refused_before_allocating() {
    type ArgsBody = Box<dyn Fn(&mut Writer)>;
    let cases: Vec<(u32, ArgsBody)> = vec![
        // A handle one byte over NFS4_FHSIZE.
        (
            op4::PUTFH,
            Box::new(|w| w.opaque(&[0u8; FH4_LEN_MAX as usize + 1])),
        ),
        // WRITE data longer than we accept, with no data behind it.
        (
            op4::WRITE,
            Box::new(|w| {
                sid(1).encode(w);
                w.u64(0);
                w.u32(0);
                w.u32(IO_SIZE_MAX + 1);
            }),
        ),
        // A name of 4 GiB.
        (op4::LOOKUP, Box::new(|w| w.u32(u32::MAX))),
        // Four billion stateids.
        (op4::TEST_STATEID, Box::new(|w| w.u32(u32::MAX))),
        // attr_vals of 4 GiB.
        (
            op4::SETATTR,
            Box::new(|w| {
                sid(1).encode(w);
                w.u32(1);
                w.u32(1 << attr4::SIZE);
                w.u32(u32::MAX);
            }),
        ),
        // A callback security list of four billion entries.
        (
            op4::BACKCHANNEL_CTL,
            Box::new(|w| {
                w.u32(1);
                w.u32(u32::MAX);
            }),
        ),
    ];
    for (opnum, body) in cases {
        let b = raw_compound(1, |w| {
            w.u32(opnum);
            body(w);
        });
        let d = decode(b).unwrap();
        assert_eq!(
            d.stop,
            Some(DecodeStop::Op {
                index: 0,
                opnum,
                status: Nfsstat4::BadXdr
            }),
            "{}",
            op4::name(opnum)
        );
    }
}

#[test]
fn a_tag_longer_than_its_limit_is_garbage() {
    let mut w = Writer::new();
    w.opaque(&[b'x'; crate::limits::COMPOUND_TAG_LEN_MAX as usize + 1]);
    w.u32(1);
    w.u32(0);
    assert!(matches!(
        decode(w.into_bytes()),
        Err(XdrError::TooLong { .. })
    ));
}

#[test]
fn trailing_bytes_after_the_last_op_are_garbage() {
    let mut b = encode_compound(&compound(vec![NfsArgOp4::Getfh])).to_vec();
    b.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(decode(b.into()), Err(XdrError::TrailingBytes(4)));
}

#[test]
fn an_unknown_callback_security_flavor_is_badxdr() {
    let b = raw_compound(1, |w| {
        w.u32(op4::BACKCHANNEL_CTL);
        w.u32(0x4000_0000);
        w.u32(1);
        w.u32(390003); // RPCSEC_GSS_THREADS? Not in the union: no way to skip it.
    });
    let d = decode(b).unwrap();
    assert_eq!(d.stop.map(|s| s.status()), Some(Nfsstat4::BadXdr));
}

#[test]
fn an_undefined_create_type_decodes_for_the_server_to_answer_badtype() {
    let args = compound(vec![NfsArgOp4::Create(Create4Args {
        objtype: CreateType4::Other(77),
        objname: name("x"),
        createattrs: Fattr4::default(),
    })]);
    let d = decode(encode_compound(&args)).unwrap();
    assert_eq!(d.stop, None);
    assert_eq!(d.args, args);
}

#[test]
fn write_data_is_a_slice_of_the_request() {
    let data = Bytes::from(vec![5u8; 1000]);
    let args = compound(vec![
        NfsArgOp4::Putfh(fh()),
        NfsArgOp4::Write(Write4Args {
            stateid: sid(1),
            offset: 0,
            stable: StableHow4::Unstable,
            data,
        }),
    ]);
    let rec = encode_compound(&args);
    let base = rec.as_ptr() as usize;
    let d = decode(rec.clone()).unwrap();
    match &d.args.argarray[1] {
        NfsArgOp4::Write(w) => assert_eq!(w.data.as_ptr() as usize, base + rec.len() - 1000),
        other => panic!("{other:?}"),
    }
}

/// One result of every NFSv4.1 operation, with the special arms.
fn every_result() -> Vec<NfsResOp4> {
    use NfsResOp4::*;
    let cinfo = ChangeInfo4 {
        atomic: true,
        before: 1,
        after: 2,
    };
    let denied = Lock4Denied {
        offset: 0,
        length: 10,
        locktype: NfsLockType4::Write,
        owner: owner(),
    };
    let read_deleg = OpenDelegation4::Read(OpenReadDelegation4 {
        stateid: sid(8),
        recall: false,
        permissions: Nfsace4 {
            acetype: 0,
            flag: 0,
            access_mask: 0x1,
            who: Utf8Str4::from(&b"EVERYONE@"[..]),
        },
    });
    vec![
        Access(Ok(Access4ResOk {
            supported: 0x3f,
            access: 0x3,
        })),
        Close(Ok(Stateid4::INVALID)),
        Commit(Ok([4; 8])),
        Create(Ok(Create4ResOk {
            cinfo,
            attrset: Bitmap4::from_bits(&[attr4::MODE]),
        })),
        Delegpurge(Nfsstat4::NotSupp),
        Delegreturn(Nfsstat4::Ok),
        Getattr(Ok(attrs())),
        Getfh(Ok(fh())),
        Link(Ok(cinfo)),
        Lock(Lock4Res::Ok(sid(9))),
        Lock(Lock4Res::Denied(denied.clone())),
        Lock(Lock4Res::Fail(Nfsstat4::Grace)),
        Lockt(Lockt4Res::Ok),
        Lockt(Lockt4Res::Denied(denied)),
        Locku(Ok(sid(9))),
        Lookup(Nfsstat4::NoEnt),
        Lookupp(Nfsstat4::Ok),
        Nverify(Nfsstat4::Same),
        Open(Ok(Open4ResOk {
            stateid: sid(2),
            cinfo,
            rflags: open4::RESULT_LOCKTYPE_POSIX,
            attrset: Bitmap4::new(),
            delegation: OpenDelegation4::NoneExt(OpenNoneDelegation4::Other(wnd4::NOT_WANTED)),
        })),
        Open(Ok(Open4ResOk {
            stateid: sid(2),
            cinfo,
            rflags: 0,
            attrset: Bitmap4::new(),
            delegation: OpenDelegation4::Write(OpenWriteDelegation4 {
                stateid: sid(3),
                recall: true,
                space_limit: NfsSpaceLimit4::Blocks {
                    num_blocks: 1,
                    bytes_per_block: 4096,
                },
                permissions: Nfsace4 {
                    acetype: 0,
                    flag: 0,
                    access_mask: 0,
                    who: Utf8Str4::default(),
                },
            }),
        })),
        Open(Ok(Open4ResOk {
            stateid: sid(2),
            cinfo,
            rflags: 0,
            attrset: Bitmap4::new(),
            delegation: read_deleg.clone(),
        })),
        Openattr(Nfsstat4::NotSupp),
        OpenDowngrade(Ok(sid(2))),
        Putfh(Nfsstat4::Ok),
        Putpubfh(Nfsstat4::Ok),
        Putrootfh(Nfsstat4::Ok),
        Read(Ok(Read4ResOk {
            eof: true,
            data: Bytes::from_static(b"abcde"),
        })),
        Readdir(Ok(Readdir4ResOk {
            cookieverf: [1; 8],
            entries: vec![
                Entry4 {
                    cookie: 3,
                    name: name("a"),
                    attrs: attrs(),
                },
                Entry4 {
                    cookie: 4,
                    name: name("bb"),
                    attrs: Fattr4::default(),
                },
            ],
            eof: false,
        })),
        Readlink(Ok(LinkText4::from(&b"/x"[..]))),
        Remove(Ok(cinfo)),
        Rename(Ok(Rename4ResOk {
            source_cinfo: cinfo,
            target_cinfo: cinfo,
        })),
        Restorefh(Nfsstat4::RestoreFh),
        Savefh(Nfsstat4::Ok),
        Secinfo(Ok(SecinfoList4(vec![
            Secinfo4::RpcsecGss(RpcsecGssInfo {
                oid: SecOid4::from(&[0x2a, 0x86][..]),
                qop: 0,
                service: 1,
            }),
            Secinfo4::Flavor(flavor::AUTH_SYS),
        ]))),
        Setattr(Setattr4Res {
            status: Nfsstat4::Ok,
            attrsset: Bitmap4::from_bits(&[attr4::SIZE]),
        }),
        Verify(Nfsstat4::NotSame),
        Write(Ok(Write4ResOk {
            count: 5,
            committed: StableHow4::Unstable,
            writeverf: [6; 8],
        })),
        BackchannelCtl(Nfsstat4::Ok),
        BindConnToSession(Ok(BindConnToSession4ResOk {
            sessid: sess(),
            dir: 3,
            use_conn_in_rdma_mode: false,
        })),
        ExchangeId(Ok(ExchangeId4ResOk {
            clientid: 5,
            sequenceid: 1,
            flags: exchgid4::FLAG_USE_NON_PNFS | exchgid4::FLAG_CONFIRMED_R,
            state_protect: StateProtect4R::None,
            server_owner: ServerOwner4 {
                so_minor_id: 0,
                so_major_id: Opaque4::from(&b"sluice"[..]),
            },
            server_scope: Opaque4::from(&b"sluice"[..]),
            server_impl_id: None,
        })),
        ExchangeId(Ok(ExchangeId4ResOk {
            clientid: 5,
            sequenceid: 1,
            flags: 0,
            state_protect: StateProtect4R::Ssv(SsvProtInfo4 {
                spi_ops: StateProtectOps4 {
                    spo_must_enforce: Bitmap4::new(),
                    spo_must_allow: Bitmap4::new(),
                },
                spi_hash_alg: 0,
                spi_encr_alg: 0,
                spi_ssv_len: 32,
                spi_window: 1,
                spi_handles: vec![GssHandle4::from(&b"h"[..])],
            }),
            server_owner: ServerOwner4 {
                so_minor_id: 1,
                so_major_id: Opaque4::default(),
            },
            server_scope: Opaque4::default(),
            server_impl_id: Some(NfsImplId4 {
                nii_domain: Utf8Str4::default(),
                nii_name: Utf8Str4::default(),
                nii_date: Nfstime4::default(),
            }),
        })),
        ExchangeId(Err(Nfsstat4::EncrAlgUnsupp)),
        CreateSession(Ok(CreateSession4ResOk {
            sessionid: sess(),
            sequence: 1,
            flags: 0,
            fore_chan_attrs: chan(),
            back_chan_attrs: ChannelAttrs4::default(),
        })),
        DestroySession(Nfsstat4::BadSession),
        FreeStateid(Nfsstat4::LocksHeld),
        GetDirDelegation(Ok(GetDirDelegation4ResNonFatal::Unavail(false))),
        GetDirDelegation(Ok(GetDirDelegation4ResNonFatal::Ok(
            GetDirDelegation4ResOk {
                cookieverf: [0; 8],
                stateid: sid(1),
                notification: Bitmap4::new(),
                child_attributes: Bitmap4::new(),
                dir_attributes: Bitmap4::new(),
            },
        ))),
        Getdeviceinfo(Getdeviceinfo4Res::TooSmall { mincount: 300 }),
        Getdeviceinfo(Getdeviceinfo4Res::Ok(Getdeviceinfo4ResOk {
            device_addr: LayoutContent4 {
                loc_type: 1,
                loc_body: Body4::from(&b"addr"[..]),
            },
            notification: Bitmap4::new(),
        })),
        Getdevicelist(Ok(Getdevicelist4ResOk {
            cookie: 1,
            cookieverf: [0; 8],
            deviceid_list: vec![[1; 16], [2; 16]],
            eof: true,
        })),
        Layoutcommit(Ok(Some(4096))),
        Layoutcommit(Ok(None)),
        Layoutget(Layoutget4Res::TryLater {
            will_signal_layout_avail: true,
        }),
        Layoutget(Layoutget4Res::Ok(Layoutget4ResOk {
            return_on_close: true,
            stateid: sid(4),
            layouts: vec![Layout4 {
                lo_offset: 0,
                lo_length: u64::MAX,
                lo_iomode: 1,
                lo_content: LayoutContent4 {
                    loc_type: 1,
                    loc_body: Body4::from(&b"layout"[..]),
                },
            }],
        })),
        Layoutreturn(Ok(Some(sid(4)))),
        SecinfoNoName(Ok(SecinfoList4(vec![Secinfo4::Flavor(flavor::AUTH_SYS)]))),
        Sequence(Ok(Sequence4ResOk {
            sessionid: sess(),
            sequenceid: 1,
            slotid: 0,
            highest_slotid: 63,
            target_highest_slotid: 63,
            status_flags: seq4_status::CB_PATH_DOWN,
        })),
        SetSsv(Ok(Opaque4::from(&b"digest"[..]))),
        TestStateid(Ok(StatusList4(vec![Nfsstat4::Ok, Nfsstat4::BadStateid]))),
        WantDelegation(Ok(read_deleg)),
        DestroyClientid(Nfsstat4::ClientidBusy),
        ReclaimComplete(Nfsstat4::CompleteAlready),
        Obsolete {
            opnum: op4::RENEW,
            status: Nfsstat4::NotSupp,
        },
        Illegal(Nfsstat4::OpIllegal),
    ]
}

#[test]
fn every_result_round_trips_through_encode_and_decode() {
    let results = every_result();
    let mut seen: Vec<u32> = results.iter().map(NfsResOp4::opnum).collect();
    seen.sort_unstable();
    seen.dedup();
    for n in op4::FIRST..=op4::LAST {
        if !op4::is_mandatory_not_implemented(n) {
            assert!(seen.contains(&n), "no sample result for {}", op4::name(n));
        }
    }
    for res in results {
        let reply = Compound4Res {
            status: res.status(),
            tag: Tag4::from(&b"t"[..]),
            resarray: vec![res],
        };
        let back = Compound4Res::decode(&mut Reader::new(reply.to_bytes())).unwrap();
        assert_eq!(back, reply);
    }
}

#[test]
fn the_error_result_of_every_op_has_its_rfc_shape() {
    for opnum in (0..=op4::LAST + 2).chain([op4::ILLEGAL]) {
        let res = NfsResOp4::error(opnum, Nfsstat4::Io);
        assert_eq!(res.status(), Nfsstat4::Io);
        let mut w = Writer::new();
        assert_eq!(res.encode(&mut w), None);
        let bytes = w.into_bytes();
        let defined = (op4::FIRST..=op4::LAST).contains(&opnum);
        assert_eq!(res.opnum(), if defined { opnum } else { op4::ILLEGAL });
        // resop, status, and for SETATTR an empty attrsset bitmap: nothing else.
        let expected_len = if opnum == op4::SETATTR { 12 } else { 8 };
        assert_eq!(bytes.len(), expected_len, "{}", op4::name(opnum));
        assert_eq!(NfsResOp4::decode(&mut Reader::new(bytes)).unwrap(), res);
    }
}

#[test]
fn read_results_return_their_payload_beside_the_head() {
    let reply = Compound4Res {
        status: Nfsstat4::Ok,
        tag: Tag4::default(),
        resarray: vec![
            NfsResOp4::Putfh(Nfsstat4::Ok),
            NfsResOp4::Read(Ok(Read4ResOk {
                eof: false,
                data: Bytes::from_static(b"xyz"),
            })),
            NfsResOp4::Read(Ok(Read4ResOk {
                eof: true,
                data: Bytes::from_static(b"12345678"),
            })),
            NfsResOp4::Getattr(Ok(attrs())),
        ],
    };
    let mut w = Writer::new();
    w.u32(0xdead_beef); // an RPC header before the COMPOUND
    let payloads = reply.encode(&mut w);
    assert_eq!(payloads.len(), 2);
    assert_eq!(&payloads[0].data[..], b"xyz");
    assert_eq!(&payloads[1].data[..], b"12345678");
    // status, tag, count; PUTFH resop+status; READ resop, status, eof, length.
    assert_eq!(payloads[0].offset, 4 + 12 + 8 + 16);
    assert_eq!(payloads[1].offset, payloads[0].offset + 16);
    assert!(
        !w.as_slice().windows(3).any(|s| s == b"xyz"),
        "READ data was copied"
    );
    let whole = splice_payloads(&w.as_slice()[4..], &shift(&payloads, 4));
    assert_eq!(whole, reply.to_bytes());
    let back = Compound4Res::decode(&mut Reader::new(whole)).unwrap();
    assert_eq!(back, reply);
}

fn shift(p: &[ReplyPayload], by: usize) -> Vec<ReplyPayload> {
    p.iter()
        .map(|p| ReplyPayload {
            offset: p.offset - by,
            data: p.data.clone(),
        })
        .collect()
}

#[test]
fn a_result_that_would_exceed_the_reply_budget_is_taken_back() {
    let mut out = Compound4ResWriter::new(Writer::new(), &Tag4::from(&b"tag"[..]));
    out.push(&NfsResOp4::Putfh(Nfsstat4::Ok));
    let before = out.encoded_len();
    let big = NfsResOp4::Read(Ok(Read4ResOk {
        eof: false,
        data: Bytes::from(vec![0u8; 1000]),
    }));
    assert!(!out.push_within(&big, before + 500));
    assert_eq!(out.encoded_len(), before);
    assert_eq!(out.count(), 1);
    let too_big = NfsResOp4::error(op4::READ, Nfsstat4::RepTooBig);
    assert!(out.push_within(&too_big, before + 500));
    let (head, payloads) = out.finish(Nfsstat4::RepTooBig);
    assert!(payloads.is_empty());
    let back = Compound4Res::decode(&mut Reader::new(head.into_bytes())).unwrap();
    assert_eq!(
        back,
        Compound4Res {
            status: Nfsstat4::RepTooBig,
            tag: Tag4::from(&b"tag"[..]),
            resarray: vec![NfsResOp4::Putfh(Nfsstat4::Ok), too_big],
        }
    );
}

#[test]
fn a_payload_that_fits_the_budget_counts_toward_it() {
    let mut out = Compound4ResWriter::new(Writer::new(), &Tag4::default());
    let read = NfsResOp4::Read(Ok(Read4ResOk {
        eof: true,
        data: Bytes::from(vec![1u8; 5]),
    }));
    assert!(out.push_within(&read, 1000));
    // status, tag, count, resop, status, eof, length, 5 bytes + 3 of padding.
    assert_eq!(out.encoded_len(), 12 + 16 + 8);
}

#[test]
fn lock_denied_carries_the_conflicting_lock() {
    let denied = NfsResOp4::Lock(Lock4Res::Denied(Lock4Denied {
        offset: 5,
        length: 6,
        locktype: NfsLockType4::Read,
        owner: owner(),
    }));
    assert_eq!(denied.status(), Nfsstat4::Denied);
    let mut w = Writer::new();
    denied.encode(&mut w);
    let b = w.into_bytes();
    // resop, status DENIED, then offset 5.
    assert_eq!(
        &b[..16],
        &[0, 0, 0, 12, 0, 0, 0x27, 0x1a, 0, 0, 0, 0, 0, 0, 0, 5]
    );
    assert_eq!(NfsResOp4::decode(&mut Reader::new(b)).unwrap(), denied);
}

#[test]
fn bitmaps_set_test_and_iterate_in_attribute_order() {
    let mut b = Bitmap4::new();
    for bit in [
        attr4::SUPPATTR_EXCLCREAT,
        attr4::TYPE,
        attr4::MODE,
        attr4::SIZE,
    ] {
        b.set(bit);
    }
    assert_eq!(b.0.len(), 3);
    assert!(b.contains(attr4::MODE) && !b.contains(attr4::OWNER) && !b.contains(1000));
    assert_eq!(
        b.iter().collect::<Vec<_>>(),
        vec![
            attr4::TYPE,
            attr4::SIZE,
            attr4::MODE,
            attr4::SUPPATTR_EXCLCREAT
        ]
    );
    let other = Bitmap4::from_bits(&[attr4::SIZE, attr4::OWNER]);
    assert_eq!(b.intersection(&other), Bitmap4::from_bits(&[attr4::SIZE]));
    b.clear(attr4::SUPPATTR_EXCLCREAT);
    assert!(!b.contains(attr4::SUPPATTR_EXCLCREAT));
    assert!(Bitmap4(vec![0, 0]).is_empty());
}

#[test]
fn attribute_values_are_written_in_bit_order() {
    let f = attrs();
    assert_eq!(f.attrmask.iter().collect::<Vec<_>>(), vec![4, 33, 54]);
    let mut r = f.vals_reader();
    assert_eq!(r.u64().unwrap(), 4096);
    assert_eq!(r.u32().unwrap(), 0o644);
    assert_eq!(
        Settime4::decode(&mut r).unwrap(),
        Settime4::ClientTime(Nfstime4 {
            seconds: -5,
            nseconds: 9
        })
    );
    r.finish().unwrap();
}

#[test]
fn ssv_state_protection_decodes_so_the_server_can_refuse_it() {
    let op = every_op()
        .into_iter()
        .find(|o| matches!(o, NfsArgOp4::ExchangeId(a) if matches!(a.state_protect, StateProtect4A::Ssv(_))))
        .unwrap();
    let d = decode(encode_compound(&compound(vec![op.clone()]))).unwrap();
    assert_eq!(d.stop, None);
    assert_eq!(d.args.argarray, vec![op]);
}

fn cb_args() -> CbCompound4Args {
    CbCompound4Args {
        tag: Tag4::default(),
        minorversion: 1,
        callback_ident: 0,
        argarray: vec![
            NfsCbArgOp4::Sequence(CbSequence4Args {
                sessionid: sess(),
                sequenceid: 1,
                slotid: 0,
                highest_slotid: 0,
                cachethis: false,
                referring_call_lists: vec![ReferringCallList4 {
                    sessionid: sess(),
                    referring_calls: vec![ReferringCall4 {
                        sequenceid: 4,
                        slotid: 2,
                    }],
                }],
            }),
            NfsCbArgOp4::Recall(CbRecall4Args {
                stateid: sid(8),
                truncate: false,
                fh: fh(),
            }),
            NfsCbArgOp4::Getattr(CbGetattr4Args {
                fh: fh(),
                attr_request: Bitmap4::from_bits(&[attr4::SIZE, attr4::CHANGE]),
            }),
            NfsCbArgOp4::Layoutrecall(CbLayoutrecall4Args {
                layout_type: 1,
                iomode: 3,
                changed: true,
                recall: Layoutrecall4::Fsid(Fsid4 { major: 1, minor: 2 }),
            }),
            NfsCbArgOp4::Notify(CbNotify4Args {
                stateid: sid(1),
                fh: fh(),
                changes: NotifyList4(vec![Notify4 {
                    notify_mask: Bitmap4::from_bits(&[2]),
                    notify_vals: Body4::from(&b"entry"[..]),
                }]),
            }),
            NfsCbArgOp4::PushDeleg(CbPushDeleg4Args {
                fh: fh(),
                delegation: OpenDelegation4::None,
            }),
            NfsCbArgOp4::RecallAny(CbRecallAny4Args {
                objects_to_keep: 0,
                type_mask: Bitmap4::from_bits(&[0, 1]),
            }),
            NfsCbArgOp4::RecallableObjAvail(CbRecallAny4Args {
                objects_to_keep: 1,
                type_mask: Bitmap4::new(),
            }),
            NfsCbArgOp4::RecallSlot(3),
            NfsCbArgOp4::WantsCancelled(CbWantsCancelled4Args {
                contended_wants_cancelled: true,
                resourced_wants_cancelled: false,
            }),
            NfsCbArgOp4::NotifyLock(CbNotifyLock4Args {
                fh: fh(),
                lock_owner: owner(),
            }),
            NfsCbArgOp4::NotifyDeviceid(NotifyList4::default()),
            NfsCbArgOp4::Illegal,
        ],
    }
}

#[test]
fn cb_compound_arguments_round_trip() {
    let args = cb_args();
    let mut w = Writer::new();
    args.encode(&mut w);
    let back = CbCompound4Args::decode(&mut Reader::new(w.into_bytes())).unwrap();
    assert_eq!(back, args);
    assert_eq!(
        cb_op4::name(args.argarray[0].opnum()),
        "CB_SEQUENCE",
        "CB_SEQUENCE comes first"
    );
}

#[test]
fn cb_compound_results_from_the_client_decode() {
    let res = CbCompound4Res {
        status: Nfsstat4::Ok,
        tag: Tag4::default(),
        resarray: vec![
            NfsCbResOp4::Sequence(Ok(CbSequence4ResOk {
                sessionid: sess(),
                sequenceid: 1,
                slotid: 0,
                highest_slotid: 0,
                target_highest_slotid: 0,
            })),
            NfsCbResOp4::Recall(Nfsstat4::Ok),
            NfsCbResOp4::Getattr(Ok(attrs())),
            NfsCbResOp4::Illegal(Nfsstat4::OpIllegal),
        ],
    };
    let mut w = Writer::new();
    res.encode(&mut w);
    let back = CbCompound4Res::decode(&mut Reader::new(w.into_bytes())).unwrap();
    assert_eq!(back, res);
    assert_eq!(back.resarray[1].status(), Nfsstat4::Ok);
}

#[test]
fn a_cb_compound_reply_with_a_huge_result_count_is_refused_before_allocating() {
    let mut w = Writer::new();
    w.u32(0);
    w.opaque(b"");
    w.u32(u32::MAX);
    assert!(matches!(
        CbCompound4Res::decode(&mut Reader::new(w.into_bytes())),
        Err(XdrError::TooLong { .. })
    ));
}

#[test]
fn a_truncated_cb_compound_reply_is_an_error_at_every_offset() {
    let res = CbCompound4Res {
        status: Nfsstat4::Delay,
        tag: Tag4::from(&b"cb"[..]),
        resarray: vec![NfsCbResOp4::Sequence(Err(Nfsstat4::Delay))],
    };
    let mut w = Writer::new();
    res.encode(&mut w);
    let full = w.into_bytes();
    for cut in 0..full.len() {
        assert!(CbCompound4Res::decode(&mut Reader::new(full.slice(..cut))).is_err());
    }
}

#[test]
fn settable_attributes_round_trip_through_fattr4() {
    let s = Sattr4 {
        size: Some(0),
        acl: Some(vec![Nfsace4 {
            acetype: 0,
            flag: 0,
            access_mask: 0x1,
            who: Utf8Str4::from(&b"OWNER@"[..]),
        }]),
        mode: Some(0o755),
        owner: Some(Utf8Str4::from(&b"1000"[..])),
        owner_group: Some(Utf8Str4::from(&b"1000"[..])),
        time_access_set: Some(Settime4::ServerTime),
        time_modify_set: Some(Settime4::ClientTime(Nfstime4 {
            seconds: 1,
            nseconds: 2,
        })),
        mode_set_masked: Some(ModeMasked4 {
            set: 0o644,
            mask: 0o777,
        }),
        ..Sattr4::default()
    };
    let f = s.to_fattr();
    assert_eq!(f.attrmask, s.mask());
    assert_eq!(Sattr4::decode(&f), Ok(s));
    assert_eq!(Sattr4::decode(&attrs()).unwrap().mode, Some(0o644));
}

#[test]
fn setting_a_read_only_or_unknown_attribute_is_refused_with_the_rfc_status() {
    let mut read_only = FattrWriter::new();
    read_only.attr(attr4::TYPE, |w| w.u32(1));
    assert_eq!(Sattr4::decode(&read_only.finish()), Err(Nfsstat4::Inval));
    let mut dacl = FattrWriter::new();
    dacl.attr(attr4::DACL, |w| w.u32(0));
    assert_eq!(Sattr4::decode(&dacl.finish()), Err(Nfsstat4::AttrNotSupp));
    let mut unknown = FattrWriter::new();
    unknown.attr(200, |w| w.u32(0));
    const { assert!(200 < Bitmap4::BITS_MAX) };
    assert_eq!(
        Sattr4::decode(&unknown.finish()),
        Err(Nfsstat4::AttrNotSupp)
    );
    // A value cut short, and a value followed by stray bytes.
    let mut short = FattrWriter::new();
    short.attr(attr4::SIZE, |w| w.u32(0));
    assert_eq!(Sattr4::decode(&short.finish()), Err(Nfsstat4::BadXdr));
    let mut long = FattrWriter::new();
    long.attr(attr4::MODE, |w| w.u64(0));
    assert_eq!(Sattr4::decode(&long.finish()), Err(Nfsstat4::BadXdr));
    // An ACL claiming four billion entries.
    let mut acl = FattrWriter::new();
    acl.attr(attr4::ACL, |w| w.u32(u32::MAX));
    assert_eq!(Sattr4::decode(&acl.finish()), Err(Nfsstat4::BadXdr));
}

#[test]
fn every_result_fits_the_bound_its_arguments_give() {
    let ops = every_op();
    for res in every_result() {
        let Some(op) = ops.iter().find(|o| o.opnum() == res.opnum()) else {
            continue;
        };
        let mut w = Writer::new();
        let payload = res
            .encode(&mut w)
            .map_or(0, |p| p.len() + crate::xdr::pad_len(p.len()));
        let len = w.len() + payload;
        match op.result_len_max() {
            Some(max) => assert!(len <= max, "{}: {len} > {max}", op.name()),
            None => assert_eq!(op.opnum(), op4::GETATTR),
        }
    }
    // The bound of a READ follows its count, and of a CLOSE is exact.
    let read = NfsArgOp4::Read(Read4Args {
        stateid: Stateid4::ANONYMOUS,
        offset: 0,
        count: 5,
    });
    assert_eq!(read.result_len_max(), Some(8 + 4 + 4 + 8));
    let close = every_op()
        .into_iter()
        .find(|o| o.opnum() == op4::CLOSE)
        .unwrap();
    let mut w = Writer::new();
    NfsResOp4::Close(Ok(sid(1))).encode(&mut w);
    assert_eq!(close.result_len_max(), Some(w.len()));
}
