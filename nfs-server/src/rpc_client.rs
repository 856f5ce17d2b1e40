//! A small outgoing ONC RPC client, for the calls a server makes to its clients: NLM GRANTED
//! callbacks and NSM SM_NOTIFY after a restart. Every call is bounded in time.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use nfs_proto::portmap::{self as pm, Mapping};
use nfs_proto::rpc::{self, AuthSys, OpaqueAuth, ReplyHeader};
use nfs_proto::xdr::{Encode, Reader, Writer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long one call may take, connection included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest reply accepted from a client.
const REPLY_LEN_MAX: usize = 64 * 1024;

/// One call's record (without record mark), as root over AUTH_SYS.
pub(crate) fn call_bytes(xid: u32, prog: u32, vers: u32, proc_: u32, args: &[u8]) -> Bytes {
    let mut cred = Writer::new();
    AuthSys {
        stamp: 0,
        machine_name: Bytes::from_static(b"sluice"),
        uid: 0,
        gid: 0,
        gids: Vec::new(),
    }
    .encode(&mut cred);
    let cred = OpaqueAuth {
        flavor: rpc::AUTH_SYS,
        body: cred.into_bytes(),
    };
    rpc::call_record(xid, prog, vers, proc_, cred, args)
}

fn next_xid() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static XID: AtomicU32 = AtomicU32::new(0x5100_0000);
    XID.fetch_add(1, Ordering::Relaxed)
}

/// Checks the reply header and returns the results.
fn results(reply: Bytes, xid: u32) -> std::io::Result<Reader> {
    let mut r = Reader::new(reply);
    match rpc::decode_reply(&mut r) {
        Ok(ReplyHeader::Accepted { xid: x, stat: 0 }) if x == xid => Ok(r),
        other => Err(std::io::Error::other(format!("RPC call failed: {other:?}"))),
    }
}

/// One call over TCP with record marking.
pub async fn call_tcp(
    addr: SocketAddr,
    prog: u32,
    vers: u32,
    proc_: u32,
    args: &[u8],
) -> std::io::Result<Reader> {
    call_tcp_from(addr, None, prog, vers, proc_, args).await
}

/// [`call_tcp`] from local address `from` (a client that checks where a callback comes from,
/// as Linux lockd does for GRANTED, needs it from the address it called: a floating target's).
pub async fn call_tcp_from(
    addr: SocketAddr,
    from: Option<IpAddr>,
    prog: u32,
    vers: u32,
    proc_: u32,
    args: &[u8],
) -> std::io::Result<Reader> {
    let fut = async {
        let xid = next_xid();
        let body = call_bytes(xid, prog, vers, proc_, args);
        let mut s = match from {
            None => TcpStream::connect(addr).await?,
            Some(ip) => {
                let socket = if ip.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()?
                } else {
                    tokio::net::TcpSocket::new_v6()?
                };
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(addr).await?
            }
        };
        s.write_all(&rpc::record_mark(body.len())).await?;
        s.write_all(&body).await?;
        let mut reply = Vec::new();
        loop {
            let mut mark = [0u8; 4];
            s.read_exact(&mut mark).await?;
            let m = u32::from_be_bytes(mark);
            let len = (m & 0x7fff_ffff) as usize;
            if reply.len() + len > REPLY_LEN_MAX {
                return Err(std::io::Error::other("oversized RPC reply"));
            }
            let start = reply.len();
            reply.resize(start + len, 0);
            s.read_exact(&mut reply[start..]).await?;
            if m & 0x8000_0000 != 0 {
                break;
            }
        }
        results(Bytes::from(reply), xid)
    };
    tokio::time::timeout(CALL_TIMEOUT, fut)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// One call over UDP, retransmitted up to three times.
pub async fn call_udp(
    addr: SocketAddr,
    prog: u32,
    vers: u32,
    proc_: u32,
    args: &[u8],
) -> std::io::Result<Reader> {
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let s = UdpSocket::bind(bind).await?;
    s.connect(addr).await?;
    let xid = next_xid();
    let body = call_bytes(xid, prog, vers, proc_, args);
    let mut buf = vec![0u8; REPLY_LEN_MAX];
    for _ in 0..3 {
        s.send(&body).await?;
        match tokio::time::timeout(CALL_TIMEOUT / 3, s.recv(&mut buf)).await {
            Ok(Ok(n)) => return results(Bytes::copy_from_slice(&buf[..n]), xid),
            Ok(Err(e)) => return Err(e),
            Err(_) => continue,
        }
    }
    Err(std::io::ErrorKind::TimedOut.into())
}

/// Asks the portmapper on `host` where a program listens (portmap v2 GETPORT over TCP).
pub async fn getport(host: IpAddr, prog: u32, vers: u32, prot: u32) -> std::io::Result<u16> {
    let mut w = Writer::new();
    Mapping {
        prog,
        vers,
        prot,
        port: 0,
    }
    .encode(&mut w);
    let addr = SocketAddr::new(host, pm::PORT);
    let mut r = call_tcp(addr, pm::PROGRAM, 2, pm::PROC_GETPORT, &w.into_bytes()).await?;
    match r.u32() {
        Ok(0) => Err(std::io::Error::other(format!(
            "program {prog} version {vers} is not registered on {host}"
        ))),
        Ok(p) if p <= u16::MAX as u32 => Ok(p as u16),
        _ => Err(std::io::Error::other("bad GETPORT reply")),
    }
}
