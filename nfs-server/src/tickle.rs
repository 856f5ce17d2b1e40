//! Tickle ACKs: after a floating target moved here from a node that died or was cut off, its
//! clients' TCP connections still point at the old node, and nothing tells them so: their
//! retransmissions back off exponentially (0.2, 0.4, ... 3.2 s) and the first to reach this
//! node, which answers it with a reset, may come seconds after the address is up. So the new
//! owner sends each of those connections a bare ACK with a sequence number out of its window
//! (a "tickle", as CTDB does for Samba and NFS): the client answers with an ACK of its own
//! (RFC 793 §3.9, RFC 5961 §4), this node's kernel, which knows no such connection, answers
//! that with a reset, and the client reconnects at once instead of at its next backoff.
//!
//! Each node keeps the client endpoints of its floating targets' TCP connections in the
//! metadata log (document `node/<id>/tickles`, one `local peer` pair per line, saved within
//! [`SAVE_EVERY`] of a change), so the target's next owner can read them even when this node
//! is gone. IPv4 only: an IPv6 client waits for its own retransmission.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::time::Duration;

/// How often a node saves its list when it changed.
pub const SAVE_EVERY: Duration = Duration::from_secs(1);
/// When, after a takeover's addresses are up, the tickles go: three rounds, as a client's
/// answer may be lost while its ARP entry still names the old owner.
pub const ROUNDS: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(600),
    Duration::from_millis(1500),
];
/// Endpoints kept in the document at most (about 45 bytes each, well under the log's 1 MiB
/// bound for a document); beyond, the newest are left out and their clients wait for their
/// own retransmission.
pub const ENDPOINTS_MAX: usize = 16_384;

/// A TCP connection of a floating target: this node's end (the target's address and port)
/// and the client's.
pub type Endpoint = (SocketAddr, SocketAddr);

/// The metadata-log document under which node `node` keeps its floating targets' endpoints.
pub fn doc_key(node: u64) -> Vec<u8> {
    format!("node/{node}/tickles").into_bytes()
}

/// Saves this node's endpoints now (its floating targets' connections, as listed).
pub async fn save<S: backend::Store>(
    server: &crate::server::Server<S>,
    targets: &crate::qos::TargetTable,
) -> backend::Result<()> {
    use std::sync::atomic::Ordering;
    let all: BTreeSet<Endpoint> = targets
        .list()
        .iter()
        .filter(|t| t.floating)
        .flat_map(|t| t.endpoints.lock().expect("endpoints lock poisoned").clone())
        .collect();
    // Versions grow across runs (the epoch) and saves (the counter), so a slow save never
    // overwrites a newer one.
    let n = targets.endpoints_saves.fetch_add(1, Ordering::Relaxed) + 1;
    let version = (u64::from(server.state.identity.epoch) << 32) | (n & 0xffff_ffff);
    server
        .store
        .put_doc(&doc_key(server.state.identity.node_id), version, doc(&all))
        .await
}

/// Keeps this node's endpoints saved: within [`SAVE_EVERY`] of a change, and once at start
/// (which clears what the previous run left). A failed save is logged once and retried.
pub async fn keep_saved<S: backend::Store>(
    server: std::sync::Arc<crate::server::Server<S>>,
    targets: std::sync::Arc<crate::qos::TargetTable>,
) {
    use std::sync::atomic::Ordering;
    let mut saved = None;
    let mut warned = false;
    loop {
        let changed = targets.endpoints_changed.load(Ordering::Relaxed);
        if saved != Some(changed) {
            match save(&server, &targets).await {
                Ok(()) => {
                    saved = Some(changed);
                    warned = false;
                }
                Err(e) if !warned => {
                    warned = true;
                    tracing::warn!(
                        "cannot save the floating targets' client connections ({e}); if this \
                         node dies, their clients reconnect only at their next retransmission"
                    );
                }
                Err(_) => {}
            }
        }
        tokio::time::sleep(SAVE_EVERY).await;
    }
}

/// The document of a node's endpoints: the IPv4 ones (the others cannot be tickled), at most
/// [`ENDPOINTS_MAX`].
pub fn doc<'a>(endpoints: impl IntoIterator<Item = &'a Endpoint>) -> Vec<u8> {
    let mut text = String::new();
    for (local, peer) in endpoints
        .into_iter()
        .filter(|(l, p)| l.is_ipv4() && p.is_ipv4())
        .take(ENDPOINTS_MAX)
    {
        text.push_str(&format!("{local} {peer}\n"));
    }
    text.into_bytes()
}

/// The endpoints in a document whose local address is one of `addrs` (lines that do not
/// parse are skipped: their clients wait for their own retransmission).
pub fn parse(doc: &[u8], addrs: &[IpAddr]) -> BTreeSet<Endpoint> {
    String::from_utf8_lossy(doc)
        .lines()
        .filter_map(|l| {
            let (local, peer) = l.split_once(' ')?;
            Some((local.parse().ok()?, peer.parse().ok()?))
        })
        .filter(|(local, _): &Endpoint| addrs.contains(&local.ip()))
        .collect()
}

/// The TCP segment of a tickle from `local` to `peer`: ACK set, sequence and
/// acknowledgement numbers 0 (out of any window but by chance), no options or data.
pub fn segment(local: SocketAddrV4, peer: SocketAddrV4) -> [u8; 20] {
    let mut s = [0u8; 20];
    s[0..2].copy_from_slice(&local.port().to_be_bytes());
    s[2..4].copy_from_slice(&peer.port().to_be_bytes());
    // seq 4..8 and ack 8..12 stay 0.
    s[12] = 5 << 4; // data offset: 5 words
    s[13] = 0x10; // ACK
    s[14..16].copy_from_slice(&1024u16.to_be_bytes()); // window
    let sum = checksum(local.ip().octets(), peer.ip().octets(), &s);
    s[16..18].copy_from_slice(&sum.to_be_bytes());
    s
}

/// The TCP checksum of `segment` (its checksum field zero) between `src` and `dst`: the
/// one's complement sum over the pseudo-header and the segment (RFC 793 §3.1).
fn checksum(src: [u8; 4], dst: [u8; 4], segment: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
            sum += u32::from(w);
        }
    };
    add(&src);
    add(&dst);
    add(&[0, 6]);
    add(&(segment.len() as u16).to_be_bytes());
    add(segment);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends one tickle to each IPv4 endpoint, from its local address (which must be up on this
/// node): system calls, so call it off the async runtime. Returns how many went; the first
/// error, if any, is logged once.
pub fn send(endpoints: &BTreeSet<Endpoint>) -> usize {
    let mut sent = 0;
    let mut failed: Option<String> = None;
    // One raw socket per local address (endpoints are sorted by it).
    let mut sock: Option<(std::net::Ipv4Addr, socket2::Socket)> = None;
    for (local, peer) in endpoints {
        let (SocketAddr::V4(local), SocketAddr::V4(peer)) = (local, peer) else {
            continue;
        };
        if sock.as_ref().is_none_or(|(ip, _)| ip != local.ip()) {
            sock = match raw_socket(*local.ip()) {
                Ok(s) => Some((*local.ip(), s)),
                Err(e) => {
                    failed.get_or_insert_with(|| format!("a raw socket on {}: {e}", local.ip()));
                    None
                }
            };
        }
        let Some((_, s)) = &sock else { continue };
        let seg = segment(*local, *peer);
        match s.send_to(
            &seg,
            &SocketAddr::V4(SocketAddrV4::new(*peer.ip(), 0)).into(),
        ) {
            Ok(_) => sent += 1,
            Err(e) => {
                failed.get_or_insert_with(|| format!("{local} -> {peer}: {e}"));
            }
        }
    }
    if let Some(e) = failed {
        tracing::warn!(
            "tickle ACK not sent ({e}); those clients reconnect at their next retransmission"
        );
    }
    sent
}

/// A raw TCP socket (CAP_NET_RAW) bound to `local`: the kernel adds the IP header, from it.
fn raw_socket(local: std::net::Ipv4Addr) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::TCP))?;
    sock.bind(&SocketAddr::V4(SocketAddrV4::new(local, 0)).into())?;
    Ok(sock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tickle_is_a_bare_ack_whose_checksum_verifies() {
        let local: SocketAddrV4 = "10.77.0.200:2049".parse().unwrap();
        let peer: SocketAddrV4 = "10.77.0.11:822".parse().unwrap();
        let s = segment(local, peer);
        assert_eq!(u16::from_be_bytes([s[0], s[1]]), 2049);
        assert_eq!(u16::from_be_bytes([s[2], s[3]]), 822);
        assert_eq!(s[13], 0x10, "ACK only");
        // Summing a segment with its checksum in place gives zero.
        assert_eq!(
            checksum(local.ip().octets(), peer.ip().octets(), &s),
            0,
            "{s:02x?}"
        );
    }

    #[test]
    fn the_checksum_matches_a_known_segment() {
        // A hand-checked case: 192.168.0.1:80 -> 192.168.0.2:1234, ACK, window 1024.
        let s = segment(
            "192.168.0.1:80".parse().unwrap(),
            "192.168.0.2:1234".parse().unwrap(),
        );
        // pseudo: c0a8 + 0001 + c0a8 + 0002 + 0006 + 0014 = 0x1816d
        // tcp:    0050 + 04d2 + 5010 + 0400 = 0x5932
        // total:  0x1816d + 0x5932 = 0x1da9f -> 0xda9f + 1 = 0xdaa0 -> !0xdaa0 = 0x255f
        assert_eq!(u16::from_be_bytes([s[16], s[17]]), 0x255f);
    }

    #[test]
    fn the_document_keeps_only_the_target_s_endpoints_and_skips_garbage() {
        let a: Endpoint = (
            "10.77.0.200:2049".parse().unwrap(),
            "10.77.0.11:822".parse().unwrap(),
        );
        let b: Endpoint = (
            "10.77.0.101:2049".parse().unwrap(),
            "10.77.0.12:700".parse().unwrap(),
        );
        let mut d = doc([&a, &b]);
        d.extend_from_slice(b"not a line\n10.77.0.200:1 nonsense\n");
        let float: IpAddr = "10.77.0.200".parse().unwrap();
        assert_eq!(parse(&d, &[float]), BTreeSet::from([a]));
    }
}
