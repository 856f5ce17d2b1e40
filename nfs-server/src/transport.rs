//! ONC RPC over TCP (record marking) and UDP (one record per datagram; portmap and MOUNT only).
//!
//! Per TCP connection: one task reads records and runs up to `inflight_requests_max` of them
//! concurrently (a bounded `FuturesUnordered`, not a spawn per request); while that many
//! requests or `inflight_bytes_max` request bytes are in progress it stops reading the socket,
//! so a fast client is slowed by TCP flow control instead of growing our memory. A second task
//! writes replies in batches with vectored writes: a READ payload goes from the store's buffer
//! to the socket without being copied into an encode buffer.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;

use backend::Store;
use bytes::BytesMut;
use futures_util::stream::{FuturesUnordered, StreamExt};
use nfs_proto::limits::RECORD_LEN_MAX;
use nfs_proto::rpc::{record_mark, RecordDecoder};
use nfs_proto::{mount, nlm, portmap, xdr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

use crate::server::{Reply, Server};

/// Back-pressure limits of one connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    pub inflight_requests_max: usize,
    pub inflight_bytes_max: usize,
}

/// Accepts connections forever; each gets its own task.
pub async fn serve_tcp<S: Store>(
    server: Arc<Server<S>>,
    listener: TcpListener,
    limits: ConnLimits,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let server = server.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_connection(server, stream, limits).await {
                        tracing::debug!(%peer, "connection ended: {e}");
                    }
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

pub async fn serve_connection<S: Store>(
    server: Arc<Server<S>>,
    stream: TcpStream,
    limits: ConnLimits,
) -> std::io::Result<()> {
    let peer = stream.peer_addr()?;
    let local = stream.local_addr()?;
    stream.set_nodelay(true)?;
    tracing::debug!(%peer, %local, "connection accepted");
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel::<Reply>(limits.inflight_requests_max);
    let writer = tokio::spawn(write_loop(wr, rx));

    let mut decoder = RecordDecoder::new(RECORD_LEN_MAX);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut inflight = FuturesUnordered::new();
    let mut inflight_bytes = 0usize;
    let mut eof = false;
    let result = loop {
        let can_take = inflight.len() < limits.inflight_requests_max
            && inflight_bytes < limits.inflight_bytes_max;
        if can_take {
            match decoder.decode(&mut buf) {
                Ok(Some(record)) => {
                    let n = record.len();
                    inflight_bytes += n;
                    let server = server.clone();
                    inflight
                        .push(async move { (server.handle_record(record, peer, local).await, n) });
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(%peer, "closing connection: {e}");
                    break Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
                }
            }
        }
        if eof && inflight.is_empty() {
            break Ok(());
        }
        let want = decoder.bytes_wanted(&buf).max(buf.len() + 64 * 1024);
        if buf.capacity() < want {
            buf.reserve(want - buf.len());
        }
        tokio::select! {
            Some((reply, n)) = inflight.next(), if !inflight.is_empty() => {
                inflight_bytes -= n;
                if let Some(r) = reply {
                    if tx.send(r).await.is_err() {
                        break Ok(());
                    }
                }
            }
            read = rd.read_buf(&mut buf), if can_take && !eof => {
                match read {
                    Ok(0) => eof = true,
                    Ok(_) => {}
                    Err(e) => break Err(e),
                }
            }
        }
    };
    drop(tx);
    let _ = writer.await;
    result
}

static ZERO_PAD: [u8; 4] = [0; 4];

async fn write_loop(mut wr: tokio::net::tcp::OwnedWriteHalf, mut rx: mpsc::Receiver<Reply>) {
    let mut batch: Vec<Reply> = Vec::with_capacity(32);
    while let Some(r) = rx.recv().await {
        batch.push(r);
        // Coalesce replies that are already waiting into one system call.
        while batch.len() < 32 {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        if let Err(e) = write_batch(&mut wr, &batch).await {
            tracing::debug!("write failed: {e}");
            return;
        }
        batch.clear();
    }
    let _ = wr.shutdown().await;
}

async fn write_batch(
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    batch: &[Reply],
) -> std::io::Result<()> {
    let marks: Vec<[u8; 4]> = batch.iter().map(|r| record_mark(r.len())).collect();
    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(batch.len() * 4);
    for (r, mark) in batch.iter().zip(&marks) {
        slices.push(IoSlice::new(mark));
        slices.push(IoSlice::new(&r.head));
        if !r.payload.is_empty() {
            slices.push(IoSlice::new(&r.payload));
            let pad = xdr::pad_len(r.payload.len());
            if pad > 0 {
                slices.push(IoSlice::new(&ZERO_PAD[..pad]));
            }
        }
    }
    let mut rest: &mut [IoSlice<'_>] = &mut slices;
    while !rest.is_empty() {
        let n = wr.write_vectored(rest).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

/// Answers portmap/rpcbind, MOUNT, NLM and NSM calls that arrive over UDP (rpcbind queries and
/// SM_NOTIFY usually do). NFS itself is TCP-only.
pub async fn serve_udp<S: Store>(server: Arc<Server<S>>, socket: UdpSocket) {
    let local = socket
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!("udp receive failed: {e}");
                continue;
            }
        };
        // Program number is the fourth word of a call.
        let prog = buf
            .get(12..16)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let udp_programs = [
            portmap::PROGRAM,
            mount::PROGRAM,
            nlm::NLM_PROGRAM,
            nlm::NSM_PROGRAM,
        ];
        if !prog.is_some_and(|p| udp_programs.contains(&p)) {
            continue;
        }
        let record = bytes::Bytes::copy_from_slice(&buf[..n]);
        if let Some(reply) = server.handle_record(record, peer, local).await {
            let mut out = Vec::with_capacity(reply.len());
            out.extend_from_slice(&reply.head);
            out.extend_from_slice(&reply.payload);
            let _ = socket.send_to(&out, peer).await;
        }
    }
}
