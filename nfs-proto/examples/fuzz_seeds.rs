//! Writes a seed corpus for the fuzz targets: one valid encoding per NFSv3/MOUNT procedure,
//! an RPC call and a record-marked stream. Run: `cargo run -p nfs-proto --example fuzz_seeds`.

use std::path::Path;

use bytes::Bytes;
use nfs_proto::mount::MountCall;
use nfs_proto::rpc::{self, AuthSys, CallHeader, OpaqueAuth};
use nfs_proto::v3::*;
use nfs_proto::xdr::{Encode, Writer};

fn put(dir: &Path, target: &str, n: usize, bytes: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).expect("create corpus dir");
    std::fs::write(d.join(format!("seed-{n}")), bytes).expect("write seed");
}

fn enc<T: Encode>(v: &T) -> Bytes {
    let mut w = Writer::new();
    v.encode(&mut w);
    w.into_bytes()
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let fh = NfsFh3(Bytes::from_static(&[1u8; 40]));
    let place = DirOpArgs3 {
        dir: fh.clone(),
        name: Bytes::from_static(b"name"),
    };
    let attr = Sattr3 {
        mode: Some(0o644),
        uid: Some(1),
        gid: None,
        size: Some(9),
        atime: SetTime3::ServerTime,
        mtime: SetTime3::ClientTime(Nfstime3::default()),
    };
    let calls = [
        ("null", Nfs3Call::Null),
        ("getattr", Nfs3Call::Getattr(fh.clone())),
        (
            "setattr",
            Nfs3Call::Setattr {
                object: fh.clone(),
                attr: attr.clone(),
                guard: Some(Nfstime3::default()),
            },
        ),
        ("lookup", Nfs3Call::Lookup(place.clone())),
        (
            "access",
            Nfs3Call::Access {
                object: fh.clone(),
                access: 0x3f,
            },
        ),
        ("readlink", Nfs3Call::Readlink(fh.clone())),
        (
            "read",
            Nfs3Call::Read {
                file: fh.clone(),
                offset: 4096,
                count: 1 << 20,
            },
        ),
        (
            "write",
            Nfs3Call::Write {
                file: fh.clone(),
                offset: 0,
                count: 5,
                stable: StableHow::Unstable,
                data: Bytes::from_static(b"hello"),
            },
        ),
        (
            "create",
            Nfs3Call::Create {
                place: place.clone(),
                how: CreateHow3::Unchecked(attr.clone()),
            },
        ),
        (
            "mkdir",
            Nfs3Call::Mkdir {
                place: place.clone(),
                attr: attr.clone(),
            },
        ),
        (
            "symlink",
            Nfs3Call::Symlink {
                place: place.clone(),
                attr: attr.clone(),
                target: Bytes::from_static(b"../t"),
            },
        ),
        (
            "mknod",
            Nfs3Call::Mknod {
                place: place.clone(),
                what: MknodData3::Blk(attr.clone(), Specdata3 { major: 8, minor: 1 }),
            },
        ),
        ("remove", Nfs3Call::Remove(place.clone())),
        ("rmdir", Nfs3Call::Rmdir(place.clone())),
        (
            "rename",
            Nfs3Call::Rename {
                from: place.clone(),
                to: place.clone(),
            },
        ),
        (
            "link",
            Nfs3Call::Link {
                file: fh.clone(),
                link: place.clone(),
            },
        ),
        (
            "readdir",
            Nfs3Call::Readdir {
                dir: fh.clone(),
                cookie: 3,
                cookieverf: [0; 8],
                count: 4096,
            },
        ),
        (
            "readdirplus",
            Nfs3Call::Readdirplus {
                dir: fh.clone(),
                cookie: 3,
                cookieverf: [0; 8],
                dircount: 512,
                maxcount: 8192,
            },
        ),
        ("fsstat", Nfs3Call::Fsstat(fh.clone())),
        ("fsinfo", Nfs3Call::Fsinfo(fh.clone())),
        ("pathconf", Nfs3Call::Pathconf(fh.clone())),
        (
            "commit",
            Nfs3Call::Commit {
                file: fh.clone(),
                offset: 0,
                count: 0,
            },
        ),
    ];
    for (name, call) in &calls {
        put(&dir, &format!("nfs3_{name}"), 0, &enc(call));
    }
    put(
        &dir,
        "mount_mnt",
        0,
        &enc(&MountCall::Mnt(Bytes::from_static(b"/"))),
    );
    put(
        &dir,
        "mount_umnt",
        0,
        &enc(&MountCall::Umnt(Bytes::from_static(b"/data"))),
    );

    let sys = enc(&AuthSys {
        stamp: 1,
        machine_name: Bytes::from_static(b"gpu01"),
        uid: 1000,
        gid: 1000,
        gids: vec![1000, 27],
    });
    let mut w = Writer::new();
    rpc::encode_call(
        &mut w,
        &CallHeader {
            xid: 7,
            prog: PROGRAM,
            vers: VERSION,
            proc_: proc3::GETATTR,
            cred: OpaqueAuth {
                flavor: rpc::AUTH_SYS,
                body: sys,
            },
            verf: OpaqueAuth::none(),
        },
    );
    fh.encode(&mut w);
    let call = w.into_bytes();
    put(&dir, "rpc_call", 0, &call);
    // rpc_record: first byte is the chunk size, then two records, the second in two fragments.
    let mut s = vec![7u8];
    s.extend_from_slice(&rpc::record_mark(call.len()));
    s.extend_from_slice(&call);
    s.extend_from_slice(&(10u32).to_be_bytes());
    s.extend_from_slice(&call[..10]);
    s.extend_from_slice(&rpc::record_mark(call.len() - 10));
    s.extend_from_slice(&call[10..]);
    put(&dir, "rpc_record", 0, &s);
    let mut w = Writer::new();
    nfs_proto::portmap::Mapping {
        prog: PROGRAM,
        vers: 3,
        prot: 6,
        port: 2049,
    }
    .encode(&mut w);
    put(&dir, "portmap_args", 0, &w.into_bytes());
    let mut w = Writer::new();
    nfs_proto::portmap::Rpcb {
        prog: PROGRAM,
        vers: 3,
        netid: Bytes::from_static(b"tcp"),
        addr: Bytes::from_static(b"10.0.0.1.8.1"),
        owner: Bytes::from_static(b"root"),
    }
    .encode(&mut w);
    put(&dir, "portmap_args", 1, &w.into_bytes());
    let lock = nfs_proto::nlm::Nlm4Lock {
        caller_name: Bytes::from_static(b"gpu01"),
        fh: Bytes::from_static(&[1u8; 40]),
        oh: Bytes::from_static(b"123@gpu01"),
        svid: 123,
        offset: 0,
        len: 0,
    };
    let cookie = Bytes::from_static(b"cookie");
    use nfs_proto::nlm::NlmArgs;
    let nlm = [
        (
            "nlm_test",
            NlmArgs::Test {
                cookie: cookie.clone(),
                exclusive: true,
                lock: lock.clone(),
            },
        ),
        (
            "nlm_lock",
            NlmArgs::Lock {
                cookie: cookie.clone(),
                block: true,
                exclusive: true,
                lock: lock.clone(),
                reclaim: false,
                state: 3,
            },
        ),
        (
            "nlm_cancel",
            NlmArgs::Cancel {
                cookie: cookie.clone(),
                block: true,
                exclusive: false,
                lock: lock.clone(),
            },
        ),
        (
            "nlm_unlock",
            NlmArgs::Unlock {
                cookie: cookie.clone(),
                lock: lock.clone(),
            },
        ),
        (
            "nlm_granted_res",
            NlmArgs::Res {
                cookie: cookie.clone(),
                stat: nfs_proto::nlm::Nlm4Stat::Granted,
            },
        ),
        (
            "nlm_free_all",
            NlmArgs::FreeAll {
                name: Bytes::from_static(b"gpu01"),
                state: 5,
            },
        ),
    ];
    for (name, args) in &nlm {
        put(&dir, name, 0, &enc(args));
    }
    let mut w = Writer::new();
    nfs_proto::nlm::encode_notify(&mut w, b"10.0.0.1", 3);
    put(&dir, "nsm_notify", 0, &w.into_bytes());
    let mut w = Writer::new();
    w.opaque(b"gpu01");
    put(&dir, "nsm_stat", 0, &w.into_bytes());
    v4_seeds(&dir);
    println!("seeds written under {}", dir.display());
}

/// NFSv4.1: the compounds a Linux client sends first (EXCHANGE_ID, CREATE_SESSION, a mount's
/// lookups), an OPEN/WRITE/READ/LOCK/CLOSE session, and replies to them and to a callback.
fn v4_seeds(dir: &Path) {
    use nfs_proto::v4::*;

    let session = SessionId4([5; 16]);
    let seq = NfsArgOp4::Sequence(Sequence4Args {
        sessionid: session,
        sequenceid: 1,
        slotid: 0,
        highest_slotid: 0,
        cachethis: false,
    });
    let owner = StateOwner4 {
        clientid: 1,
        owner: Opaque4::from(&b"open id:\x00\x00\x00\x01"[..]),
    };
    let stateid = Stateid4 {
        seqid: 1,
        other: [2; 12],
    };
    let chan = ChannelAttrs4 {
        ca_maxrequestsize: 1 << 20,
        ca_maxresponsesize: 1 << 20,
        ca_maxresponsesize_cached: 4096,
        ca_maxoperations: 16,
        ca_maxrequests: 64,
        ..ChannelAttrs4::default()
    };
    let mut attrs = FattrWriter::new();
    attrs.attr(attr4::MODE, |w| w.u32(0o644));
    let attrs = attrs.finish();
    let compounds = [
        vec![NfsArgOp4::ExchangeId(ExchangeId4Args {
            clientowner: ClientOwner4 {
                co_verifier: [1; 8],
                co_ownerid: Opaque4::from(&b"Linux NFSv4.1 gpu01"[..]),
            },
            flags: exchgid4::FLAG_SUPP_MOVED_REFER | exchgid4::FLAG_BIND_PRINC_STATEID,
            state_protect: StateProtect4A::None,
            client_impl_id: None,
        })],
        vec![NfsArgOp4::CreateSession(CreateSession4Args {
            clientid: 1,
            sequence: 1,
            flags: create_session4::FLAG_CONN_BACK_CHAN,
            fore_chan_attrs: chan.clone(),
            back_chan_attrs: chan,
            cb_program: 0x4000_0000,
            sec_parms: vec![CallbackSecParms4::AuthNone],
        })],
        vec![
            seq.clone(),
            NfsArgOp4::Putrootfh,
            NfsArgOp4::Lookup(Component4::from(&b"data"[..])),
            NfsArgOp4::Getfh,
            NfsArgOp4::Getattr(Bitmap4::from_bits(&[attr4::TYPE, attr4::SIZE, attr4::FSID])),
        ],
        vec![
            seq.clone(),
            NfsArgOp4::Putfh(NfsFh4::from(&[1u8; 40][..])),
            NfsArgOp4::Open(Open4Args {
                seqid: 0,
                share_access: open4::SHARE_ACCESS_BOTH,
                share_deny: open4::SHARE_DENY_NONE,
                owner: owner.clone(),
                openhow: OpenFlag4(Some(CreateHow4::Exclusive41 {
                    verifier: [3; 8],
                    attrs,
                })),
                claim: OpenClaim4::Null(Component4::from(&b"ckpt"[..])),
            }),
            NfsArgOp4::Getfh,
            NfsArgOp4::Write(Write4Args {
                stateid,
                offset: 0,
                stable: StableHow4::Unstable,
                data: Bytes::from_static(b"hello"),
            }),
            NfsArgOp4::Read(Read4Args {
                stateid,
                offset: 0,
                count: 4096,
            }),
            NfsArgOp4::Lock(Lock4Args {
                locktype: NfsLockType4::Write,
                reclaim: false,
                offset: 0,
                length: u64::MAX,
                locker: Locker4::NewLockOwner(OpenToLockOwner4 {
                    open_seqid: 0,
                    open_stateid: stateid,
                    lock_seqid: 0,
                    lock_owner: owner,
                }),
            }),
            NfsArgOp4::Close(Close4Args {
                seqid: 0,
                open_stateid: stateid,
            }),
        ],
        vec![seq.clone(), NfsArgOp4::ReclaimComplete(false)],
        vec![NfsArgOp4::DestroySession(session)],
    ];
    for (n, ops) in compounds.into_iter().enumerate() {
        let args = Compound4Args {
            tag: Tag4::default(),
            minorversion: 1,
            argarray: ops,
        };
        put(dir, "v4_compound", n, &enc(&args));
    }
    let seq_ok = Sequence4ResOk {
        sessionid: session,
        sequenceid: 1,
        slotid: 0,
        highest_slotid: 0,
        target_highest_slotid: 0,
        status_flags: 0,
    };
    let reply = Compound4Res {
        status: Nfsstat4::Ok,
        tag: Tag4::default(),
        resarray: vec![
            NfsResOp4::Sequence(Ok(seq_ok)),
            NfsResOp4::Putfh(Nfsstat4::Ok),
            NfsResOp4::Read(Ok(Read4ResOk {
                eof: true,
                data: Bytes::from_static(b"hello"),
            })),
            NfsResOp4::Lock(Lock4Res::Ok(stateid)),
        ],
    };
    put(dir, "v4_compound_res", 0, &reply.to_bytes());
    let cb = CbCompound4Res {
        status: Nfsstat4::Ok,
        tag: Tag4::default(),
        resarray: vec![
            NfsCbResOp4::Sequence(Ok(CbSequence4ResOk {
                sessionid: session,
                sequenceid: 1,
                slotid: 0,
                highest_slotid: 0,
                target_highest_slotid: 0,
            })),
            NfsCbResOp4::Recall(Nfsstat4::Ok),
        ],
    };
    put(dir, "v4_cb_compound_res", 0, &enc(&cb));
}
