//! portmap version 2 (RFC 1833 §3) and rpcbind versions 3 and 4 (RFC 1833 §2).

use bytes::Bytes;

use crate::limits::RPCB_STRING_LEN_MAX;
use crate::xdr::{Encode, Reader, Result, Writer};

pub const PROGRAM: u32 = 100000;
pub const PORT: u16 = 111;

pub const IPPROTO_TCP: u32 = 6;
pub const IPPROTO_UDP: u32 = 17;

/// Procedure numbers shared by portmap v2 and rpcbind v3/v4 where they coincide.
pub const PROC_NULL: u32 = 0;
pub const PROC_SET: u32 = 1;
pub const PROC_UNSET: u32 = 2;
/// v2 GETPORT, v3/v4 GETADDR.
pub const PROC_GETPORT: u32 = 3;
pub const PROC_DUMP: u32 = 4;
/// rpcbind v3/v4 GETTIME.
pub const PROC_GETTIME: u32 = 6;
/// rpcbind v4 GETVERSADDR.
pub const PROC_GETVERSADDR: u32 = 9;

/// portmap v2 `mapping`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub prog: u32,
    pub vers: u32,
    pub prot: u32,
    pub port: u32,
}

impl Mapping {
    pub fn decode(r: &mut Reader) -> Result<Mapping> {
        Ok(Mapping {
            prog: r.u32()?,
            vers: r.u32()?,
            prot: r.u32()?,
            port: r.u32()?,
        })
    }
}

impl Encode for Mapping {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.prog);
        w.u32(self.vers);
        w.u32(self.prot);
        w.u32(self.port);
    }
}

/// rpcbind v3/v4 `rpcb`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rpcb {
    pub prog: u32,
    pub vers: u32,
    pub netid: Bytes,
    pub addr: Bytes,
    pub owner: Bytes,
}

impl Rpcb {
    pub fn decode(r: &mut Reader) -> Result<Rpcb> {
        Ok(Rpcb {
            prog: r.u32()?,
            vers: r.u32()?,
            netid: r.opaque(RPCB_STRING_LEN_MAX)?,
            addr: r.opaque(RPCB_STRING_LEN_MAX)?,
            owner: r.opaque(RPCB_STRING_LEN_MAX)?,
        })
    }
}

impl Encode for Rpcb {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.prog);
        w.u32(self.vers);
        w.opaque(&self.netid);
        w.opaque(&self.addr);
        w.opaque(&self.owner);
    }
}

/// Encodes a pmaplist (v2 DUMP result).
pub fn encode_pmaplist(w: &mut Writer, list: &[Mapping]) {
    for m in list {
        w.bool(true);
        m.encode(w);
    }
    w.bool(false);
}

/// Encodes an rpcblist (v3/v4 DUMP result).
pub fn encode_rpcblist(w: &mut Writer, list: &[Rpcb]) {
    for m in list {
        w.bool(true);
        m.encode(w);
    }
    w.bool(false);
}

/// The universal address (RFC 5665 §5.2.3.3) of an IPv4 or IPv6 address and port:
/// "h1.h2.h3.h4.p1.p2" or "x:x::x.p1.p2".
pub fn universal_address(ip: std::net::IpAddr, port: u16) -> String {
    format!("{ip}.{}.{}", port >> 8, port & 0xff)
}

/// Parses a universal address back into an address and port.
pub fn parse_universal_address(s: &str) -> Option<(std::net::IpAddr, u16)> {
    let (rest, lo) = s.rsplit_once('.')?;
    let (ip, hi) = rest.rsplit_once('.')?;
    let port = (hi.parse::<u8>().ok()? as u16) << 8 | lo.parse::<u8>().ok()? as u16;
    Some((ip.parse().ok()?, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn universal_address_round_trips_for_ipv4_and_ipv6() {
        for (ip, port) in [("10.77.0.1", 2049u16), ("::1", 20048)] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            let u = universal_address(ip, port);
            assert_eq!(parse_universal_address(&u), Some((ip, port)));
        }
        assert_eq!(
            universal_address("10.0.0.1".parse().unwrap(), 2049),
            "10.0.0.1.8.1"
        );
    }
}
