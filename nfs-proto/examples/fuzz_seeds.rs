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
    println!("seeds written under {}", dir.display());
}
