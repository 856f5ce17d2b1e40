//! With `--portmap serve`, sluice answers portmap v2 and rpcbind v4 itself (here on a loopback
//! port, since 111 may be taken): clients find NFS and MOUNT without port= options, and local
//! processes may register their own programs.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use bytes::Bytes;
use nfs_proto::portmap::{self as pm, Mapping, Rpcb};
use nfs_proto::rpc::ReplyHeader;
use nfs_proto::xdr::Reader;
use nfs_proto::{mount, v3};
use sluice_tests::{encode, free_port, parse_reply, Options, RpcClient, Sluice};

fn portmap_server() -> (Sluice, SocketAddr) {
    let pm_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let s = Sluice::start_with(Options {
        config: Some(format!("[server]\nportmap_listen = \"{pm_addr}\"\n")),
        memory: true,
        portmap: "serve".into(),
        ..Options::default()
    });
    (s, pm_addr)
}

fn getport(c: &mut RpcClient, prog: u32, vers: u32, prot: u32) -> u32 {
    let m = Mapping {
        prog,
        vers,
        prot,
        port: 0,
    };
    c.call_ok(pm::PROGRAM, 2, pm::PROC_GETPORT, &encode(&m))
        .u32()
        .unwrap()
}

fn set(c: &mut RpcClient, proc_: u32, prog: u32, port: u32) -> bool {
    let m = Mapping {
        prog,
        vers: 1,
        prot: pm::IPPROTO_TCP,
        port,
    };
    c.call_ok(pm::PROGRAM, 2, proc_, &encode(&m))
        .bool()
        .unwrap()
}

fn dump_v2(c: &mut RpcClient) -> Vec<Mapping> {
    let mut r = c.call_ok(pm::PROGRAM, 2, pm::PROC_DUMP, &[]);
    let mut out = Vec::new();
    while r.bool().unwrap() {
        assert!(out.len() < 1000);
        out.push(Mapping::decode(&mut r).unwrap());
    }
    out
}

#[test]
fn getport_v2_finds_nfs_and_mount_over_tcp() {
    let (s, pm_addr) = portmap_server();
    let mut c = RpcClient::connect(pm_addr).unwrap();
    assert_eq!(
        getport(&mut c, v3::PROGRAM, 3, pm::IPPROTO_TCP),
        s.nfs.port() as u32
    );
    assert_eq!(
        getport(&mut c, mount::PROGRAM, 3, pm::IPPROTO_TCP),
        s.mount.port() as u32
    );
    assert_eq!(getport(&mut c, 399_999, 1, pm::IPPROTO_TCP), 0, "unknown");
}

#[test]
fn getport_v2_is_answered_over_udp() {
    let (s, pm_addr) = portmap_server();
    let c = RpcClient::connect(pm_addr).unwrap();
    let m = Mapping {
        prog: v3::PROGRAM,
        vers: 3,
        prot: pm::IPPROTO_TCP,
        port: 0,
    };
    let call = c.encode_call(4242, pm::PROGRAM, 2, pm::PROC_GETPORT, &encode(&m));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 512];
    let mut got = None;
    for _ in 0..5 {
        sock.send_to(&call, pm_addr).unwrap();
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            got = Some(Bytes::copy_from_slice(&buf[..n]));
            break;
        }
    }
    let (h, mut r) = parse_reply(got.expect("no UDP reply within 2.5 s"));
    assert_eq!(h, ReplyHeader::Accepted { xid: 4242, stat: 0 });
    assert_eq!(r.u32().unwrap(), s.nfs.port() as u32);
}

#[test]
fn rpcbind_v4_getaddr_returns_a_loopback_universal_address() {
    let (s, pm_addr) = portmap_server();
    let mut c = RpcClient::connect(pm_addr).unwrap();
    for (prog, port) in [
        (v3::PROGRAM, s.nfs.port()),
        (mount::PROGRAM, s.mount.port()),
    ] {
        let q = Rpcb {
            prog,
            vers: 3,
            netid: Bytes::from_static(b"tcp"),
            addr: Bytes::new(),
            owner: Bytes::new(),
        };
        let mut r: Reader = c.call_ok(pm::PROGRAM, 4, pm::PROC_GETPORT, &encode(&q));
        let addr = r.opaque(256).unwrap();
        let want = format!("127.0.0.1.{}.{}", port >> 8, port & 0xff);
        assert_eq!(String::from_utf8_lossy(&addr), want);
    }
}

#[test]
fn dump_lists_nfs_and_mount() {
    let (s, pm_addr) = portmap_server();
    let mut c = RpcClient::connect(pm_addr).unwrap();
    let list = dump_v2(&mut c);
    let has = |prog, port: u16| {
        list.iter().any(|m| {
            m.prog == prog && m.vers == 3 && m.prot == pm::IPPROTO_TCP && m.port == port as u32
        })
    };
    assert!(has(v3::PROGRAM, s.nfs.port()), "{list:?}");
    assert!(has(mount::PROGRAM, s.mount.port()), "{list:?}");
    assert!(
        list.iter().any(|m| m.prog == pm::PROGRAM && m.vers == 2),
        "portmap lists itself: {list:?}"
    );
}

#[test]
fn set_and_unset_from_loopback_change_the_table() {
    let (_s, pm_addr) = portmap_server();
    let mut c = RpcClient::connect(pm_addr).unwrap();
    const PROG: u32 = 400_123;
    assert!(set(&mut c, pm::PROC_SET, PROG, 5555), "SET from loopback");
    assert_eq!(getport(&mut c, PROG, 1, pm::IPPROTO_TCP), 5555);
    assert!(dump_v2(&mut c)
        .iter()
        .any(|m| m.prog == PROG && m.port == 5555));
    assert!(set(&mut c, pm::PROC_UNSET, PROG, 0), "UNSET from loopback");
    assert_eq!(getport(&mut c, PROG, 1, pm::IPPROTO_TCP), 0);
}

#[test]
fn portmap_version_5_is_prog_mismatch_2_to_4() {
    let (_s, pm_addr) = portmap_server();
    let mut c = RpcClient::connect(pm_addr).unwrap();
    let (h, mut r) = parse_reply(c.call(pm::PROGRAM, 5, 0, &[]));
    assert!(matches!(h, ReplyHeader::Accepted { stat: 2, .. }), "{h:?}");
    assert_eq!((r.u32().unwrap(), r.u32().unwrap()), (2, 4));
}
