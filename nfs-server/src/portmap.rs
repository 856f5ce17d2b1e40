//! portmap v2 / rpcbind v3-v4: either we answer on port 111 ourselves (no rpcbind on the host),
//! or we register our programs with the host's rpcbind. Either way a client finds NFS and MOUNT
//! without `port=` or `mountport=`.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use nfs_proto::portmap::{self as pm, Mapping, Rpcb};
use nfs_proto::rpc::{self, AcceptStat, CallHeader, OpaqueAuth};
use nfs_proto::xdr::{Encode, Reader, Writer};
use nfs_proto::{mount, nlm, v3};

use crate::server::Request;

/// One registration.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    prog: u32,
    vers: u32,
    /// "tcp", "udp", "tcp6", "udp6".
    netid: String,
    port: u16,
    owner: String,
}

fn netid_of(prot: u32) -> Option<&'static str> {
    match prot {
        pm::IPPROTO_TCP => Some("tcp"),
        pm::IPPROTO_UDP => Some("udp"),
        _ => None,
    }
}

fn prot_of(netid: &str) -> u32 {
    if netid.starts_with("udp") {
        pm::IPPROTO_UDP
    } else {
        pm::IPPROTO_TCP
    }
}

/// The registrations we answer for when we are the portmapper.
#[derive(Debug, Default)]
pub struct PortmapTable {
    entries: Mutex<Vec<Entry>>,
}

/// One program Sluice offers, as portmap advertises it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Program {
    pub prog: u32,
    pub vers: u32,
    /// "tcp" or "udp".
    pub netid: &'static str,
    pub port: u16,
    /// NLM and NSM: on a host that is also an NFS client, the kernel's lockd and rpc.statd may
    /// own these; we never take a registration away from them.
    pub shared: bool,
}

/// Every program Sluice offers. UDP programs live on the MOUNT port, the only UDP socket
/// besides portmap's, so they are offered only when `has_udp`.
pub fn our_programs(nfs_port: u16, mount_port: u16, has_udp: bool) -> Vec<Program> {
    let p = |prog, vers, netid, port, shared| Program {
        prog,
        vers,
        netid,
        port,
        shared,
    };
    let mut v = vec![
        p(v3::PROGRAM, v3::VERSION, "tcp", nfs_port, false),
        p(mount::PROGRAM, mount::VERSION, "tcp", mount_port, false),
        p(nlm::NLM_PROGRAM, nlm::NLM_VERSION, "tcp", nfs_port, true),
        p(nlm::NSM_PROGRAM, nlm::NSM_VERSION, "tcp", nfs_port, true),
    ];
    if has_udp {
        v.push(p(mount::PROGRAM, mount::VERSION, "udp", mount_port, false));
        v.push(p(
            nlm::NLM_PROGRAM,
            nlm::NLM_VERSION,
            "udp",
            mount_port,
            true,
        ));
        v.push(p(
            nlm::NSM_PROGRAM,
            nlm::NSM_VERSION,
            "udp",
            mount_port,
            true,
        ));
    }
    v
}

impl PortmapTable {
    pub fn new(portmap_port: u16, programs: &[Program]) -> PortmapTable {
        let mut entries = Vec::new();
        for vers in [2, 3, 4] {
            for netid in ["tcp", "udp"] {
                entries.push(Entry {
                    prog: pm::PROGRAM,
                    vers,
                    netid: netid.into(),
                    port: portmap_port,
                    owner: "superuser".into(),
                });
            }
        }
        for p in programs {
            entries.push(Entry {
                prog: p.prog,
                vers: p.vers,
                netid: p.netid.into(),
                port: p.port,
                owner: "sluice".into(),
            });
        }
        PortmapTable {
            entries: Mutex::new(entries),
        }
    }

    fn find(&self, prog: u32, vers: u32, netid: &str, exact: bool) -> Option<u16> {
        let g = self.entries.lock().expect("portmap lock poisoned");
        let same = |e: &&Entry| e.prog == prog && e.netid == netid;
        g.iter()
            .filter(same)
            .find(|e| e.vers == vers)
            .or_else(|| if exact { None } else { g.iter().find(same) })
            .map(|e| e.port)
    }

    /// Answers one portmap/rpcbind call; returns the whole reply.
    pub fn handle(&self, hdr: &CallHeader, req: &Request, args: &mut Reader) -> Writer {
        let mut w = Writer::with_capacity(128);
        if !(2..=4).contains(&hdr.vers) {
            rpc::encode_prog_mismatch(&mut w, hdr.xid, 2, 4);
            return w;
        }
        let garbage = |w: &mut Writer| rpc::encode_accepted(w, hdr.xid, AcceptStat::GarbageArgs);
        // Only local processes may change registrations.
        let local_caller = req.peer.ip().is_loopback();
        match (hdr.vers, hdr.proc_) {
            (_, pm::PROC_NULL) => rpc::encode_accepted(&mut w, hdr.xid, AcceptStat::Success),
            (2, pm::PROC_GETPORT) => match Mapping::decode(args) {
                Ok(m) => {
                    let port = netid_of(m.prot)
                        .and_then(|n| self.find(m.prog, m.vers, n, false))
                        .unwrap_or(0);
                    rpc::encode_accepted(&mut w, hdr.xid, AcceptStat::Success);
                    w.u32(port as u32);
                }
                Err(_) => garbage(&mut w),
            },
            (2, pm::PROC_DUMP) => {
                let list: Vec<Mapping> = self
                    .entries
                    .lock()
                    .expect("portmap lock poisoned")
                    .iter()
                    .filter(|e| e.netid == "tcp" || e.netid == "udp")
                    .map(|e| Mapping {
                        prog: e.prog,
                        vers: e.vers,
                        prot: prot_of(&e.netid),
                        port: e.port as u32,
                    })
                    .collect();
                rpc::encode_accepted(&mut w, hdr.xid, AcceptStat::Success);
                pm::encode_pmaplist(&mut w, &list);
            }
            (2, p @ (pm::PROC_SET | pm::PROC_UNSET)) => match Mapping::decode(args) {
                Ok(m) => {
                    let ok = local_caller
                        && netid_of(m.prot).is_some_and(|n| {
                            self.change(p == pm::PROC_SET, m.prog, m.vers, n, m.port as u16)
                        });
                    rpc::encode_accepted(&mut w, hdr.xid, AcceptStat::Success);
                    w.bool(ok);
                }
                Err(_) => garbage(&mut w),
            },
            (_, p @ (pm::PROC_GETPORT | pm::PROC_GETVERSADDR))
                if p == pm::PROC_GETPORT || hdr.vers == 4 =>
            {
                match Rpcb::decode(args) {
                    Ok(r) => {
                        let netid = String::from_utf8_lossy(&r.netid);
                        let exact = p == pm::PROC_GETVERSADDR;
                        let addr = self
                            .find(r.prog, r.vers, &netid, exact)
                            .map(|port| pm::universal_address(reply_ip(req), port))
                            .unwrap_or_default();
                        rpc::encode_accepted(&mut w, hdr.xid, AcceptStat::Success);
                        w.opaque(addr.as_bytes());
                    }
                    Err(_) => garbage(&mut w),
                }
            }
            (_, pm::PROC_DUMP) => {
                let list: Vec<Rpcb> = self
                    .entries
                    .lock()
                    .expect("portmap lock poisoned")
                    .iter()
                    .map(|e| Rpcb {
                        prog: e.prog,
                        vers: e.vers,
                        netid: Bytes::from(e.netid.clone()),
                        addr: Bytes::from(pm::universal_address(reply_ip(req), e.port)),
                        owner: Bytes::from(e.owner.clone()),
                    })
                    .collect();
                rpc::encode_accepted(&mut w, hdr.xid, AcceptStat::Success);
                pm::encode_rpcblist(&mut w, &list);
            }
            (_, p @ (pm::PROC_SET | pm::PROC_UNSET)) => match Rpcb::decode(args) {
                Ok(r) => {
                    let netid = String::from_utf8_lossy(&r.netid).into_owned();
                    let port = pm::parse_universal_address(&String::from_utf8_lossy(&r.addr))
                        .map(|(_, p)| p)
                        .unwrap_or(0);
                    let ok = local_caller
                        && self.change(p == pm::PROC_SET, r.prog, r.vers, &netid, port);
                    rpc::encode_accepted(&mut w, hdr.xid, AcceptStat::Success);
                    w.bool(ok);
                }
                Err(_) => garbage(&mut w),
            },
            (_, pm::PROC_GETTIME) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as u32)
                    .unwrap_or(0);
                rpc::encode_accepted(&mut w, hdr.xid, AcceptStat::Success);
                w.u32(now);
            }
            _ => rpc::encode_accepted(&mut w, hdr.xid, AcceptStat::ProcUnavail),
        }
        w
    }

    fn change(&self, set: bool, prog: u32, vers: u32, netid: &str, port: u16) -> bool {
        let mut g = self.entries.lock().expect("portmap lock poisoned");
        let pos = g
            .iter()
            .position(|e| e.prog == prog && e.vers == vers && e.netid == netid);
        match (set, pos) {
            (true, Some(_)) => false,
            (true, None) => {
                g.push(Entry {
                    prog,
                    vers,
                    netid: netid.into(),
                    port,
                    owner: "unknown".into(),
                });
                true
            }
            (false, Some(i)) => {
                g.remove(i);
                true
            }
            (false, None) => false,
        }
    }
}

/// The address to put in a universal address for this client: the one it reached us on, or,
/// when the listener was a wildcard (UDP), the one the kernel would use to reach it.
fn reply_ip(req: &Request) -> IpAddr {
    if !req.local.ip().is_unspecified() {
        return req.local.ip();
    }
    let bind: SocketAddr = if req.peer.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    UdpSocket::bind(bind)
        .and_then(|s| {
            s.connect(req.peer)?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(req.local.ip())
}

/// Where libtirpc's rpcbind listens for local registrations (SO_PEERCRED tells it our uid).
pub const RPCBIND_SOCKET: &str = "/run/rpcbind.sock";

/// Whether an rpcbind answers a NULL call on 127.0.0.1:111 in our network namespace. (Its
/// local socket alone proves nothing: AF_UNIX sockets cross network namespaces, so it may
/// belong to an rpcbind that our clients cannot reach.)
pub fn system_rpcbind_running() -> bool {
    let addr: SocketAddr = "127.0.0.1:111".parse().expect("literal");
    let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let timeout = Some(Duration::from_secs(2));
    s.set_read_timeout(timeout).is_ok()
        && s.set_write_timeout(timeout).is_ok()
        && rpc_over_stream(s, 2, pm::PROC_NULL, None).is_ok()
}

/// Registers our programs with the host's rpcbind (rpcbind v4 SET over its local socket, or
/// portmap v2 SET over TCP), replacing any stale registration from an earlier run.
/// Returns the programs actually registered (shared ones owned by another service are left to it).
pub fn register_with_system_rpcbind(programs: &[Program]) -> std::io::Result<Vec<Program>> {
    let mut done = Vec::new();
    for p in programs {
        if !p.shared {
            local_rpcbind_call(pm::PROC_UNSET, Some(*p))?;
        }
        if local_rpcbind_call(pm::PROC_SET, Some(*p))? {
            done.push(*p);
        } else if p.shared {
            tracing::warn!(
                "program {} version {} ({}) is registered by another service (the host's lockd \
                 or rpc.statd?): NFSv3 clients of this host need `nolock` until it is stopped",
                p.prog,
                p.vers,
                p.netid
            );
        } else {
            return Err(std::io::Error::other(format!(
                "rpcbind refused to register program {} version {} on port {}",
                p.prog, p.vers, p.port
            )));
        }
    }
    Ok(done)
}

/// Removes our registrations (at shutdown).
pub fn unregister_from_system_rpcbind(programs: &[Program]) {
    for p in programs {
        let _ = local_rpcbind_call(pm::PROC_UNSET, Some(*p));
    }
}

/// One call to the host's rpcbind: rpcbind v4 over the local socket when it exists, else
/// portmap v2 over TCP to 127.0.0.1:111.
fn local_rpcbind_call(proc_: u32, reg: Option<Program>) -> std::io::Result<bool> {
    let timeout = Some(Duration::from_secs(2));
    if let Ok(s) = std::os::unix::net::UnixStream::connect(RPCBIND_SOCKET) {
        s.set_read_timeout(timeout)?;
        s.set_write_timeout(timeout)?;
        let args = reg.map(|p| {
            let mut w = Writer::new();
            Rpcb {
                prog: p.prog,
                vers: p.vers,
                netid: Bytes::from_static(p.netid.as_bytes()),
                addr: Bytes::from(pm::universal_address([0, 0, 0, 0].into(), p.port)),
                owner: Bytes::from_static(b"sluice"),
            }
            .encode(&mut w);
            w.into_bytes()
        });
        return rpc_over_stream(s, 4, proc_, args);
    }
    let addr: SocketAddr = "127.0.0.1:111".parse().expect("literal");
    let s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    s.set_read_timeout(timeout)?;
    s.set_write_timeout(timeout)?;
    let args = reg.map(|p| {
        let mut w = Writer::new();
        Mapping {
            prog: p.prog,
            vers: p.vers,
            prot: prot_of(p.netid),
            port: p.port as u32,
        }
        .encode(&mut w);
        w.into_bytes()
    });
    rpc_over_stream(s, 2, proc_, args)
}

/// A blocking RPC call over a record-marked stream; returns the boolean result (true for NULL).
fn rpc_over_stream<T: Read + Write>(
    mut s: T,
    vers: u32,
    proc_: u32,
    args: Option<Bytes>,
) -> std::io::Result<bool> {
    let mut w = Writer::new();
    w.u32(0); // record mark, patched below
    rpc::encode_call(
        &mut w,
        &CallHeader {
            xid: std::process::id() ^ proc_,
            prog: pm::PROGRAM,
            vers,
            proc_,
            cred: OpaqueAuth::none(),
            verf: OpaqueAuth::none(),
        },
    );
    let mut w = w.into_inner();
    if let Some(a) = args {
        w.extend_from_slice(&a);
    }
    let len = w.len() - 4;
    w[..4].copy_from_slice(&(0x8000_0000 | len as u32).to_be_bytes());
    s.write_all(&w)?;
    let mut mark = [0u8; 4];
    s.read_exact(&mut mark)?;
    let len = (u32::from_be_bytes(mark) & 0x7fff_ffff) as usize;
    if len > 4096 {
        return Err(std::io::Error::other("oversized reply from rpcbind"));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    let mut r = Reader::new(Bytes::from(body));
    match rpc::decode_reply(&mut r) {
        Ok(rpc::ReplyHeader::Accepted { stat: 0, .. }) => {}
        other => return Err(std::io::Error::other(format!("rpcbind answered {other:?}"))),
    }
    if proc_ == pm::PROC_NULL {
        return Ok(true);
    }
    r.bool().map_err(std::io::Error::other)
}
