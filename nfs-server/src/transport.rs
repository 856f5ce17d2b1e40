//! ONC RPC over TCP (record marking) and UDP (one record per datagram; portmap and MOUNT only).
//!
//! Per TCP connection: one task reads records and runs up to `inflight_requests_max` of them
//! concurrently (a bounded `FuturesUnordered`, not a spawn per request); while that many
//! requests or `inflight_bytes_max` request bytes are in progress it stops reading the socket,
//! so a fast client is slowed by TCP flow control instead of growing our memory. A global
//! budget bounds the request memory of all connections together, a cap bounds the number of
//! connections, and idle connections and records that dribble in too slowly are closed. A second task
//! writes replies in batches with vectored writes: a READ payload goes from the store's buffer
//! to the socket without being copied into an encode buffer.

use std::io::IoSlice;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backend::Store;
use bytes::{Bytes, BytesMut};
use futures_util::stream::{FuturesUnordered, StreamExt};
use nfs_proto::limits::RECORD_LEN_MAX;
use nfs_proto::rpc::{record_mark, RecordDecoder};
use nfs_proto::{mount, nlm, portmap, xdr};
use std::os::fd::AsFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::call::{Cost, Decoded};
use crate::qos::{Target, TargetTable};
use crate::server::{Reply, Server};

/// Limits that keep a connection, and all of them together, bounded.
#[derive(Clone, Debug)]
pub struct ConnLimits {
    pub inflight_requests_max: usize,
    pub inflight_bytes_max: usize,
    /// Close a connection with nothing in progress and nothing received for this long.
    pub idle_timeout: Duration,
    /// Close a connection whose record takes longer than this to arrive (slowloris).
    pub record_timeout: Duration,
    /// In-flight request memory across every connection, in [`BUDGET_UNIT`]s.
    pub global_budget: Arc<Semaphore>,
    /// Connections accepted at most at once; more are closed right after accept.
    pub connections_max: usize,
}

/// The global in-flight budget counts KiB, and every request at least [`REQUEST_UNITS_MIN`] of
/// them, so the budget bounds the number of requests as well as their bytes.
pub const BUDGET_UNIT: usize = 1024;
pub const REQUEST_UNITS_MIN: usize = 4;

/// How long the calls of a connection that closed may still run (see `serve_connection`).
const DRAIN_MAX: Duration = Duration::from_secs(30);

fn budget_units(record_len: usize) -> u32 {
    (record_len.div_ceil(BUDGET_UNIT)).max(REQUEST_UNITS_MIN) as u32
}

/// Accepts connections forever; each gets its own task.
pub async fn serve_tcp<S: Store>(
    server: Arc<Server<S>>,
    listener: TcpListener,
    limits: ConnLimits,
    targets: Arc<TargetTable>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut last_cap_log: Option<Instant> = None;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if open.load(Ordering::Relaxed) >= limits.connections_max {
                    server.metrics.connection_refused();
                    // One line per 10 s at most: a flood must not become a log flood.
                    if last_cap_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        tracing::warn!(
                            %peer, connections_max = limits.connections_max,
                            "connection cap reached: refusing new connections; raise \
                             server.connections_max if these clients are legitimate"
                        );
                        last_cap_log = Some(Instant::now());
                    }
                    drop(stream);
                    continue;
                }
                open.fetch_add(1, Ordering::Relaxed);
                let local = stream.local_addr().ok();
                let target = match local {
                    Some(local) => targets.classify(local),
                    None => targets.default.clone(),
                };
                // (unknown only if the socket already failed: it is not tickled)
                let local = local.unwrap_or(peer);
                let (server, limits, open) = (server.clone(), limits.clone(), open.clone());
                let targets = targets.clone();
                tokio::spawn(async move {
                    let metrics = server.metrics.clone();
                    let t = target.clone();
                    metrics.connection_opened(&t.name);
                    targets.connection(&t, local, peer, true);
                    let span = tracing::debug_span!("conn", client = %peer, target = %t.name);
                    // A cut (this node stopped owning the target) shuts the socket down: the
                    // connection then ends as if the client had gone, between calls or not.
                    // Only a floating target is ever cut: others need no second descriptor.
                    let sock = t.floating.then(|| stream.as_fd().try_clone_to_owned());
                    let mut cut = t.cut.subscribe();
                    // The calls of a floating target's connection carry the epoch it was
                    // accepted at: the writer refuses them once a later owner fenced it.
                    let tag = t.tag();
                    let conn = async move {
                        let conn = serve_connection(server, stream, &limits, target);
                        match tag {
                            Some(tag) => ha::forward::on_target(tag, conn).await,
                            None => conn.await,
                        }
                    };
                    let conn = tracing::Instrument::instrument(conn, span);
                    tokio::pin!(conn);
                    let ended = loop {
                        tokio::select! {
                            r = &mut conn => break r,
                            Ok(()) = cut.changed() => {
                                if let Some(Ok(fd)) = &sock {
                                    let _ = socket2::SockRef::from(fd)
                                        .shutdown(std::net::Shutdown::Both);
                                }
                            }
                        }
                    };
                    drop(sock);
                    if let Err(e) = ended {
                        tracing::debug!(%peer, "connection ended: {e}");
                    }
                    targets.connection(&t, local, peer, false);
                    metrics.connection_closed(&t.name);
                    open.fetch_sub(1, Ordering::Relaxed);
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Lets one log line through per interval, so a client cannot turn abuse into a log flood.
pub struct LogLimit {
    last_ms: std::sync::atomic::AtomicU64,
}

impl LogLimit {
    const INTERVAL_MS: u64 = 10_000;

    pub const fn new() -> LogLimit {
        LogLimit {
            last_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn allow(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let last = self.last_ms.load(Ordering::Relaxed);
        now.saturating_sub(last) >= Self::INTERVAL_MS
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

impl Default for LogLimit {
    fn default() -> LogLimit {
        LogLimit::new()
    }
}

static CLOSE_LOG: LogLimit = LogLimit::new();

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, what.to_string())
}

pub async fn serve_connection<S: Store>(
    server: Arc<Server<S>>,
    stream: TcpStream,
    limits: &ConnLimits,
    target: Arc<Target>,
) -> std::io::Result<()> {
    let peer = stream.peer_addr()?;
    let local = stream.local_addr()?;
    stream.set_nodelay(true)?;
    tracing::debug!(%peer, %local, "connection accepted");
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel::<Reply>(limits.inflight_requests_max);
    let writer = tokio::spawn(write_loop(wr, rx, server.metrics.clone()));

    let mut decoder = RecordDecoder::new(RECORD_LEN_MAX);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut inflight = FuturesUnordered::new();
    let mut inflight_bytes = 0usize;
    // A complete record waiting for room in the global budget, and when it became complete.
    let mut pending: Option<Admitted> = None;
    let mut queued_at = Instant::now();
    // A data call waiting for its target's tokens; meanwhile the connection reads nothing more.
    let mut pacing: Option<(Admitted, PaceFuture)> = None;
    let mut eof = false;
    let mut last_activity = Instant::now();
    let mut record_started: Option<Instant> = None;
    let result = loop {
        let can_take = pending.is_none()
            && pacing.is_none()
            && inflight.len() < limits.inflight_requests_max
            && inflight_bytes < limits.inflight_bytes_max;
        if can_take {
            match decoder.decode(&mut buf) {
                Ok(Some(record)) => {
                    queued_at = Instant::now();
                    let call = Admitted {
                        len: record.len(),
                        decoded: server.decode(record),
                    };
                    match pace(&target, &call.decoded, peer.ip()) {
                        Some(wait) => pacing = Some((call, wait)),
                        None => pending = Some(call),
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    if CLOSE_LOG.allow() {
                        tracing::warn!(%peer, "closing connection: {e} (further such lines within 10 s are dropped)");
                    }
                    break Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
                }
            }
        }
        if let Some(record) = pending.take() {
            let units = budget_units(record.len);
            match limits.global_budget.clone().try_acquire_many_owned(units) {
                Ok(permit) => {
                    inflight_bytes += record.len;
                    inflight.push(server.metrics.task_monitor.instrument(run(
                        server.clone(),
                        record,
                        peer,
                        local,
                        permit,
                        queued_at,
                    )));
                    continue;
                }
                Err(_) => pending = Some(record),
            }
        }
        if eof && inflight.is_empty() && pending.is_none() && pacing.is_none() {
            break Ok(());
        }
        // A partial record counts against the record timeout only while the server is not
        // the one holding things up.
        record_started = match (
            !decoder.in_record(&buf) || !inflight.is_empty(),
            record_started,
        ) {
            (true, _) => None,
            (false, None) => Some(Instant::now()),
            (false, started) => started,
        };
        let deadline = match record_started {
            Some(t) => t + limits.record_timeout,
            None => last_activity + limits.idle_timeout,
        };
        let want = decoder.bytes_wanted(&buf).max(buf.len() + 64 * 1024);
        if buf.capacity() < want {
            buf.reserve(want - buf.len());
        }
        let units = pending.as_ref().map(|r| budget_units(r.len)).unwrap_or(0);
        tokio::select! {
            Some((reply, n)) = inflight.next(), if !inflight.is_empty() => {
                inflight_bytes -= n;
                last_activity = Instant::now();
                if let Some(r) = reply {
                    if tx.send(r).await.is_err() {
                        break Ok(());
                    }
                }
            }
            paced = async { (&mut pacing.as_mut().expect("checked").1).await }, if pacing.is_some() => {
                let (cost, delay) = paced;
                record_pacing(&server.metrics, &target, cost, delay);
                pending = pacing.take().map(|(record, _)| record);
            }
            permit = limits.global_budget.clone().acquire_many_owned(units), if pending.is_some() => {
                let (Ok(permit), Some(record)) = (permit, pending.take()) else {
                    break Ok(());
                };
                inflight_bytes += record.len;
                inflight.push(server.metrics.task_monitor.instrument(run(
                        server.clone(),
                        record,
                        peer,
                        local,
                        permit,
                        queued_at,
                    )));
            }
            read = rd.read_buf(&mut buf), if can_take && !eof => {
                match read {
                    Ok(0) => eof = true,
                    Ok(_) => last_activity = Instant::now(),
                    Err(e) => break Err(e),
                }
            }
            _ = tokio::time::sleep_until(deadline.into()), if inflight.is_empty() && pending.is_none() && pacing.is_none() => {
                break Err(timed_out(if record_started.is_some() {
                    "record not completed within server.record_timeout_seconds"
                } else {
                    "idle for server.idle_timeout_seconds"
                }));
            }
        }
    };
    drop(tx);
    let _ = writer.await;
    // Calls already running finish although their connection is gone, their replies unsent:
    // cut off half-way, a mutating call could have changed the file system without its
    // reply reaching the duplicate request cache (v3) or its session slot (v4.1), and the
    // client's retransmission on its next connection would then find nothing to replay.
    // Bounded: a call that has not finished by then is dropped (its cache entry forgotten).
    let abandoned = inflight.len();
    if abandoned > 0 {
        tracing::debug!(%peer, abandoned, "connection closed with calls running: finishing them");
        let drain = async { while inflight.next().await.is_some() {} };
        if tokio::time::timeout(DRAIN_MAX, drain).await.is_err() {
            tracing::warn!(%peer, "calls of a closed connection still running after {DRAIN_MAX:?}: dropped");
        }
    }
    result
}

/// A decoded call admitted from a connection, with the size of its record (what it holds of
/// the connection's and the global in-flight budgets).
struct Admitted {
    decoded: Decoded,
    len: usize,
}

/// One request, holding its share of the global budget until its reply is built.
async fn run<S: Store>(
    server: Arc<Server<S>>,
    call: Admitted,
    peer: SocketAddr,
    local: SocketAddr,
    permit: OwnedSemaphorePermit,
    queued_at: Instant,
) -> (Option<Reply>, usize) {
    server.metrics.rpc_phase("queue", queued_at.elapsed());
    let reply = server.handle(call.decoded, peer, local).await;
    drop(permit);
    (reply, call.len)
}

/// Waits for a call's tokens from its mount target's pacer; yields its cost and the delay.
type PaceFuture = std::pin::Pin<Box<dyn std::future::Future<Output = (Cost, Duration)> + Send>>;

/// The wait for `decoded`'s tokens at `target`, or `None` if it need not wait (the target is
/// unlimited, or the call is not paced). Every transport paces through this.
pub fn pace(target: &Target, decoded: &Decoded, client: IpAddr) -> Option<PaceFuture> {
    if !target.pacer.is_limited() {
        return None;
    }
    let cost = decoded.cost()?;
    let pacer = target.pacer.clone();
    Some(Box::pin(async move {
        let delay = pacer
            .acquire(cost.direction, client, cost.bytes, cost.ops)
            .await;
        (cost, delay)
    }))
}

/// Records what pacing charged a call, for the target's metrics.
pub fn record_pacing(
    metrics: &crate::metrics::Metrics,
    target: &Target,
    cost: Cost,
    delay: Duration,
) {
    if cost.bytes > 0 {
        metrics.target_bytes(&target.name, cost.direction.label(), cost.bytes);
        metrics.throttle_delay(&target.name, cost.direction.label(), delay);
    }
}

/// Hands records from the RDMA transport to the same path as TCP: decode once, pace by the
/// mount target of the address the connection came to (by IP: RDMA listens on its own port),
/// run.
pub struct RdmaHandler<S: Store>(pub Arc<Server<S>>);

impl<S: Store> rdma::transport::Handler for RdmaHandler<S> {
    async fn handle(&self, record: Bytes, peer: SocketAddr, local: SocketAddr) -> Option<Reply> {
        let server = &self.0;
        let decoded = server.decode(record);
        let mut tag = None;
        if let Some(targets) = server.targets.get() {
            let target = targets.classify(local);
            if let Some(wait) = pace(&target, &decoded, peer.ip()) {
                let (cost, delay) = wait.await;
                record_pacing(&server.metrics, &target, cost, delay);
            }
            tag = target.tag();
        }
        match tag {
            Some(tag) => ha::forward::on_target(tag, server.handle(decoded, peer, local)).await,
            None => server.handle(decoded, peer, local).await,
        }
    }
}

static ZERO_PAD: [u8; 4] = [0; 4];

async fn write_loop(
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::Receiver<Reply>,
    metrics: Arc<crate::metrics::Metrics>,
) {
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
        for r in &batch {
            if let Some(t) = r.ready_at {
                metrics.rpc_phase("wire", t.elapsed());
            }
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
    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(batch.len() * 5);
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
        if !r.tail.is_empty() {
            slices.push(IoSlice::new(&r.tail));
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
            out.extend_from_slice(&ZERO_PAD[..xdr::pad_len(reply.payload.len())]);
            out.extend_from_slice(&reply.tail);
            let _ = socket.send_to(&out, peer).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;

    use backend::engine::{Batch, Counter, Engine, Inode, MetaStore, StoredEntry};
    use backend::mem::{MemData, MemMeta};
    use nfs_proto::rpc as rpc_;
    use nfs_proto::v3::{self, proc3, DirOpArgs3, Nfs3Call, Sattr3};
    use nfs_proto::xdr::{Encode, Reader, Writer};
    use tokio::sync::oneshot;

    use super::*;
    use crate::state::ProtocolState;

    /// MemMeta whose commits, while `held`, wait until the test releases them.
    #[derive(Clone, Default)]
    struct Gated {
        meta: Arc<MemMeta>,
        held: Arc<AtomicBool>,
        parked: Arc<Mutex<Vec<oneshot::Sender<()>>>>,
    }

    impl Gated {
        fn parked(&self) -> usize {
            self.parked.lock().unwrap().len()
        }

        fn release_all(&self) {
            self.held.store(false, Ordering::SeqCst);
            for tx in self.parked.lock().unwrap().drain(..) {
                let _ = tx.send(());
            }
        }
    }

    impl MetaStore for Gated {
        const BLOCKING: bool = false;
        fn inode(&self, ino: u64) -> backend::Result<Option<Inode>> {
            self.meta.inode(ino)
        }
        fn entry(&self, dir: u64, name: &[u8]) -> backend::Result<Option<(u64, u64)>> {
            self.meta.entry(dir, name)
        }
        fn entries(&self, dir: u64, after: u64, limit: usize) -> backend::Result<Vec<StoredEntry>> {
            self.meta.entries(dir, after, limit)
        }
        fn counter(&self, counter: Counter) -> backend::Result<Option<u64>> {
            self.meta.counter(counter)
        }
        fn inode_count(&self) -> backend::Result<u64> {
            self.meta.inode_count()
        }
        fn apply(&self, batch: &Batch<'_>) -> backend::Result<()> {
            self.meta.apply(batch)
        }
        fn commit(
            &self,
            _announced: bool,
        ) -> impl Future<Output = backend::Result<()>> + Send + 'static + use<> {
            let wait = self.held.load(Ordering::SeqCst).then(|| {
                let (tx, rx) = oneshot::channel();
                self.parked.lock().unwrap().push(tx);
                rx
            });
            async move {
                if let Some(rx) = wait {
                    let _ = rx.await;
                }
                Ok(())
            }
        }
    }

    fn mkdir_record(server: &Server<Engine<Gated, MemData>>, xid: u32, name: &str) -> Vec<u8> {
        let call = Nfs3Call::Mkdir {
            place: DirOpArgs3 {
                dir: server.fh(1, server.store.root()),
                name: Bytes::copy_from_slice(name.as_bytes()),
            },
            attr: Sattr3::default(),
        };
        let mut args = Writer::new();
        call.encode(&mut args);
        let body =
            crate::rpc_client::call_bytes(xid, v3::PROGRAM, 3, proc3::MKDIR, &args.into_bytes());
        let mut out = record_mark(body.len()).to_vec();
        out.extend_from_slice(&body);
        out
    }

    /// The nfsstat3 of the first reply on `conn`, or `None` if none came within `wait`.
    async fn reply_status(conn: &mut TcpStream, wait: Duration) -> Option<u32> {
        let mut mark = [0u8; 4];
        tokio::time::timeout(wait, conn.read_exact(&mut mark))
            .await
            .ok()?
            .ok()?;
        let mut body = vec![0u8; (u32::from_be_bytes(mark) & 0x7fff_ffff) as usize];
        conn.read_exact(&mut body).await.ok()?;
        let mut r = Reader::new(Bytes::from(body));
        rpc_::decode_reply(&mut r).ok()?;
        r.u32().ok()
    }

    #[tokio::test]
    async fn a_call_whose_connection_is_reset_still_finishes_and_its_retransmission_gets_its_reply()
    {
        let meta = Gated::default();
        let store = Engine::with_stores(meta.clone(), MemData::default()).unwrap();
        let server = Arc::new(Server::for_tests(
            store,
            ProtocolState::in_memory(std::time::Instant::now()),
        ));
        let limits = ConnLimits {
            inflight_requests_max: 16,
            inflight_bytes_max: 1 << 20,
            idle_timeout: Duration::from_secs(60),
            record_timeout: Duration::from_secs(60),
            global_budget: Arc::new(Semaphore::new(1 << 16)),
            connections_max: 16,
        };
        let targets = TargetTable::new(&[]).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (srv, target) = (server.clone(), targets.default.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (srv, limits, target) = (srv.clone(), limits.clone(), target.clone());
                tokio::spawn(async move {
                    let _ = serve_connection(srv, stream, &limits, target).await;
                });
            }
        });

        meta.held.store(true, Ordering::SeqCst);
        let record = mkdir_record(&server, 77, "d");
        let mut first = TcpStream::connect(addr).await.unwrap();
        first.write_all(&record).await.unwrap();
        while meta.parked() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The client gives up on the connection while the MKDIR waits for its commit: a
        // reset, which the server sees as a read error.
        // A zero linger sends the reset at once; it never blocks the thread on drop.
        #[allow(deprecated)]
        first.set_linger(Some(Duration::ZERO)).unwrap();
        drop(first);
        tokio::time::sleep(Duration::from_millis(200)).await;
        meta.release_all();

        // Its retransmission on a new connection, resent as a client does while unanswered.
        let mut second = TcpStream::connect(addr).await.unwrap();
        let mut status = None;
        for _ in 0..20 {
            second.write_all(&record).await.unwrap();
            status = reply_status(&mut second, Duration::from_millis(500)).await;
            if status.is_some() {
                break;
            }
        }
        assert_eq!(
            status,
            Some(0),
            "the retransmission gets the MKDIR's own OK, neither dropped for ever nor run again (EXIST)"
        );
    }
}
