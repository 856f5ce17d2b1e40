//! The RPC-over-RDMA server transport: RDMA-CM listener, one task per connection.
//!
//! Per connection the server owns three registered regions:
//!
//! * receive buffers (`RECV_BUFFERS` × [`INLINE_SIZE`]): one per credit, posted at accept and
//!   reposted as soon as a message has been copied out of it (an inline message is at most
//!   4 KiB, so that copy is small);
//! * send buffers (`SEND_BUFFERS` × [`INLINE_SIZE`]): the transport header and the inline part
//!   of a reply;
//! * bulk slots (`BULK_SLOTS` × a record): a call with read chunks is assembled in one, the
//!   chunks pulled by RDMA Read straight to their place, and the slot is handed to the RPC layer
//!   as the record's `Bytes` (no copy; it returns to the pool when the last slice drops). A
//!   reply's payload and reply-chunk message are staged in one for RDMA Write.
//!
//! What the NFS layer sees is the same as over TCP: a record in, a reply of head, payload and
//! tail out ([`Handler`]). Where bytes go is decided by `nfs_proto::rpcrdma`, which is tested
//! without verbs.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use nfs_proto::limits::RECORD_LEN_MAX;
use nfs_proto::rpcrdma::{
    self, decode_header, encode_error, CallPlan, ConnectPrivate, Credits, Header, HeaderError,
    Piece, ReplyPlan, Write,
};
use nfs_proto::xdr::pad_len;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{mpsc, Notify};

use crate::verbs::{
    Access, CmEventKind, CmId, Cq, EventChannel, Mr, Pd, Region, Sge, WorkCompletion,
};

/// Largest inline message either way. The Linux client's default (and its maximum unless
/// `rdma_max_inline_*` is raised) is 4 KiB; RFC 8797 private data tells the client ours.
pub const INLINE_SIZE: usize = 4096;
/// Receive buffers per connection, which is also the most credits we grant.
const RECV_BUFFERS: usize = 64;
const SEND_BUFFERS: usize = 64;
/// Calls being assembled or replies with bulk data in flight, per connection.
const BULK_SLOTS: usize = 16;
const BULK_SLOT_SIZE: usize = (RECORD_LEN_MAX + 4095) & !4095;
/// RDMA connections at once; more are rejected.
const CONNECTIONS_MAX: usize = 64;
/// Work requests on the send queue: sends, RDMA Reads and RDMA Writes.
const SEND_QUEUE_DEPTH: usize = 1024;
/// "As many as the peer and the device allow" for the RDMA Read depths at accept.
const MAX_DEPTH: u8 = 0xff;
/// A connection with nothing in flight and no call for this long is closed (a client that
/// died without disconnecting must not hold its registered memory forever); clients
/// reconnect on their next call.
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(360);
/// Records up to this size are copied out of their bulk slot at once, so a slot is held only
/// by big WRITE payloads while the store takes them (small records' slices may be kept in
/// protocol state, e.g. open-owner names).
const RECORD_COPY_MAX: usize = 64 * 1024;

/// A reply: `head`, then `payload` (the DDP-eligible data of a READ, followed on the wire by
/// its XDR roundup), then `tail`: the one reply type every transport sends.
pub use nfs_proto::rpc::Reply;

/// What the transport hands complete RPC records to.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        record: Bytes,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> impl Future<Output = Option<Reply>> + Send;
}

struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// An RDMA-CM listener.
pub struct Listener {
    // Drop order: the listening id before its event channel.
    id: CmId,
    channel: EventChannel,
    addr: SocketAddr,
}

impl Listener {
    /// Loads rdma-core and listens on `addr`. Fails with a message that says what is missing
    /// (the libraries, the rdma_ucm module, an RDMA device on that address).
    pub fn bind(addr: SocketAddr) -> io::Result<Listener> {
        crate::sys::lib().map_err(|e| io::Error::other(e.to_string()))?;
        let channel = EventChannel::new()?;
        let id = channel.listen(addr, 128).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen for RDMA on {addr}: {e} (is there an RDMA device on that address? `rdma link` lists them)"),
            )
        })?;
        Ok(Listener { id, channel, addr })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves every connection until the process ends.
    pub async fn serve<H: Handler>(self, handler: Arc<H>) -> io::Result<()> {
        let Listener {
            id: listener,
            channel,
            addr,
        } = self;
        tracing::info!(%addr, "listening on {addr} (rdma)");
        // SAFETY: the fd is the event channel's, which is declared before `afd` and so
        // outlives it.
        let afd = unsafe { AsyncFd::register_with_interest(Fd(channel.fd()), Interest::READABLE) }?;
        // Connections by cm_id, to hand them their disconnect.
        let mut conns: HashMap<usize, Arc<Notify>> = HashMap::new();
        let mut devices: HashMap<usize, Arc<Device>> = HashMap::new();
        let live = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        loop {
            let mut guard = match afd.readable().await {
                Ok(g) => g,
                Err(e) => {
                    for n in conns.values() {
                        n.notify_one();
                    }
                    return Err(e);
                }
            };
            loop {
                let ev = match channel.next_event() {
                    Ok(Some(ev)) => ev,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!("RDMA CM event channel: {e}");
                        break;
                    }
                };
                let key = ev.id as usize;
                match ev.kind {
                    CmEventKind::ConnectRequest => {
                        // SAFETY: a CONNECT_REQUEST event of this channel hands us a new id that
                        // nothing else owns.
                        let id = unsafe { channel.adopt(ev.id) };
                        if live.load(Ordering::Relaxed) >= CONNECTIONS_MAX {
                            // Each connection pins ~20 MiB of registered memory.
                            tracing::warn!(
                                peer = ?id.peer_addr(),
                                "refusing an RDMA connection: {CONNECTIONS_MAX} are open"
                            );
                            let _ = id.reject(&[]);
                            continue;
                        }
                        match Conn::accept(id, &ev.private_data, &mut devices) {
                            Ok(conn) => {
                                let closed = Arc::new(Notify::new());
                                conns.insert(key, closed.clone());
                                let (handler, live) = (handler.clone(), live.clone());
                                live.fetch_add(1, Ordering::Relaxed);
                                tokio::spawn(async move {
                                    conn.run(handler, closed).await;
                                    live.fetch_sub(1, Ordering::Relaxed);
                                });
                            }
                            Err(e) => tracing::warn!("RDMA connection refused: {e}"),
                        }
                    }
                    CmEventKind::Established => {}
                    CmEventKind::Disconnected
                    | CmEventKind::TimewaitExit
                    | CmEventKind::Rejected
                    | CmEventKind::Unreachable
                    | CmEventKind::ConnectError => {
                        if let Some(n) = conns.remove(&key) {
                            n.notify_one();
                        }
                    }
                    CmEventKind::DeviceRemoval => {
                        if key == listener.as_ptr() as usize {
                            for n in conns.values() {
                                n.notify_one();
                            }
                            return Err(io::Error::other("RDMA device removed under the listener"));
                        }
                        if let Some(n) = conns.remove(&key) {
                            n.notify_one();
                        }
                    }
                    other => tracing::debug!(?other, "RDMA CM event"),
                }
            }
            guard.clear_ready();
        }
    }
}

/// Free-list of equal slots in one region.
struct Slots {
    free: Mutex<Vec<usize>>,
    freed: Notify,
}

impl Slots {
    fn new(n: usize) -> Arc<Slots> {
        Arc::new(Slots {
            free: Mutex::new((0..n).rev().collect()),
            freed: Notify::new(),
        })
    }

    fn take(&self) -> Option<usize> {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    fn put(&self, i: usize) {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).push(i);
        self.freed.notify_one();
    }
}

/// A bulk slot lent out as a record's bytes; back in the pool when dropped.
struct BulkLease {
    region: Arc<Region>,
    slots: Arc<Slots>,
    index: usize,
    len: usize,
}

impl AsRef<[u8]> for BulkLease {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the slot is ours alone from `take` until this lease drops, every RDMA Read into
        // it has completed before the lease was made, and nothing writes it meanwhile.
        unsafe { self.region.slice(self.index * BULK_SLOT_SIZE, self.len) }
    }
}

impl Drop for BulkLease {
    fn drop(&mut self) {
        self.slots.put(self.index);
    }
}

/// A call being pulled in with RDMA Reads.
struct Pending {
    hdr: Header,
    slot: usize,
    len: usize,
    reads_left: usize,
}

/// What a completed send-queue work request releases.
#[derive(Debug)]
enum SendWr {
    /// A Send from `send_buf`, with the bulk slot its RDMA Writes read from, if any, and the
    /// payload they read in place.
    Reply {
        send_buf: usize,
        bulk: Option<usize>,
        _keep: Option<Bytes>,
    },
    /// An RDMA Write (completion only counted).
    Write,
    /// An RDMA Read for pending call `call`.
    Read { call: u64 },
}

/// Something to send on the connection, in arrival order.
enum Outgoing {
    /// The RPC layer's answer to a call (`None`: it sends nothing, e.g. a retransmission of a
    /// call still in progress).
    Reply(Header, Option<Reply>),
    /// An RDMA_ERROR for a call that could not be taken.
    Error(Bytes),
}

/// The send side of a connection: send buffers, send-queue room, work-request ids.
struct SendQueue {
    free: Vec<usize>,
    used: usize,
    next_wr: u64,
    wrs: HashMap<u64, SendWr>,
}

impl SendQueue {
    fn wr_id(&mut self, what: SendWr) -> u64 {
        let wr = self.next_wr;
        self.next_wr += 1;
        self.used += 1;
        self.wrs.insert(wr, what);
        wr
    }

    fn room(&self, wrs: usize) -> bool {
        self.used + wrs <= SEND_QUEUE_DEPTH
    }
}

/// What every connection on one RDMA device shares: a protection domain, and the store's I/O
/// arenas registered in it (once each, on first use), so READ payloads go out uncopied.
struct Device {
    pd: Arc<Pd>,
    /// By arena index; `None` when registering failed (not retried: those payloads are copied).
    arenas: Mutex<HashMap<usize, Option<Mr>>>,
}

impl Device {
    fn new(pd: Arc<Pd>) -> Arc<Device> {
        Arc::new(Device {
            pd,
            arenas: Mutex::new(HashMap::new()),
        })
    }

    /// The lkey that covers `payload`, if it lies in an arena this device can register.
    fn lkey_for(&self, payload: &[u8]) -> Option<u32> {
        let arena = iobuf::arena_of(payload.as_ptr(), payload.len())?;
        let mut arenas = self.arenas.lock().unwrap_or_else(|p| p.into_inner());
        let mr = arenas.entry(arena.index).or_insert_with(|| {
            let read_only = Access {
                local_write: false,
                remote_read: false,
                remote_write: false,
            };
            // SAFETY: iobuf never frees or remaps an arena.
            let r = unsafe {
                self.pd
                    .register_external(arena.base as *mut u8, arena.len, read_only)
            };
            match r {
                Ok(mr) => {
                    tracing::info!(arena = arena.index, bytes = arena.len, "registered an I/O arena for RDMA");
                    Some(mr)
                }
                Err(e) => {
                    tracing::warn!(arena = arena.index, "cannot register an I/O arena for RDMA (READ payloads from it are copied): {e}");
                    None
                }
            }
        });
        mr.as_ref().map(Mr::lkey)
    }
}

struct Conn {
    // Field order is drop order: the QP (in `id`) goes before the CQ, regions, and PD.
    id: CmId,
    cq: Cq,
    recv: Region,
    send: Region,
    bulk: Arc<Region>,
    device: Arc<Device>,
    peer: SocketAddr,
    local: SocketAddr,
    /// Largest inline message the client receives.
    inline_max: usize,
    stats: Stats,
}

/// What a connection did, logged when it closes.
#[derive(Default, Debug)]
struct Stats {
    calls: AtomicU64,
    /// Call bytes pulled with RDMA Read (WRITE payloads, position-zero calls).
    read_chunk_bytes: AtomicU64,
    /// READ payload bytes pushed with RDMA Write into write chunks.
    write_chunk_bytes: AtomicU64,
    /// Replies sent through the reply chunk (RDMA_NOMSG).
    reply_chunk_replies: AtomicU64,
    /// Of those, bytes written straight from the store's registered buffers.
    zero_copy_bytes: AtomicU64,
    /// RDMA_ERROR messages sent.
    errors: AtomicU64,
}

impl Stats {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    fn summary(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "calls={} read_chunk_bytes={} write_chunk_bytes={} zero_copy_bytes={} reply_chunk_replies={} rdma_errors={}",
            g(&self.calls),
            g(&self.read_chunk_bytes),
            g(&self.write_chunk_bytes),
            g(&self.zero_copy_bytes),
            g(&self.reply_chunk_replies),
            g(&self.errors)
        )
    }
}

impl Conn {
    fn accept(
        id: CmId,
        private: &[u8],
        devices: &mut HashMap<usize, Arc<Device>>,
    ) -> io::Result<Conn> {
        let theirs = ConnectPrivate::decode(private);
        let inline_max = theirs.map_or(rpcrdma::INLINE_SIZE_DEFAULT, |p| p.recv_size);
        let inline_max = inline_max.min(INLINE_SIZE);
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        let peer = id.peer_addr().unwrap_or(unspecified);
        let local = id.local_addr().unwrap_or(unspecified);
        let device = match devices.get(&id.device_key()) {
            Some(d) => d.clone(),
            None => {
                let d = Device::new(id.alloc_pd()?);
                devices.insert(id.device_key(), d.clone());
                d
            }
        };
        let pd = device.pd.clone();
        let cq = id.create_cq((RECV_BUFFERS + SEND_QUEUE_DEPTH) as i32)?;
        let local_write = Access {
            local_write: true,
            remote_read: false,
            remote_write: false,
        };
        let recv = pd.register(RECV_BUFFERS * INLINE_SIZE, local_write)?;
        let send = pd.register(SEND_BUFFERS * INLINE_SIZE, local_write)?;
        let bulk = Arc::new(pd.register(BULK_SLOTS * BULK_SLOT_SIZE, local_write)?);
        // Declared after the CQ and the regions, so on an early return below the id (and its
        // QP) is destroyed first: the QP must go before the CQ it uses and the buffers its
        // posted receives point into.
        let mut id = id;
        id.create_qp(&pd, &cq, SEND_QUEUE_DEPTH as u32, RECV_BUFFERS as u32, 1, 1)?;
        for i in 0..RECV_BUFFERS {
            // SAFETY: the receive buffer lives in `recv`, which outlives the QP (field order).
            unsafe { id.post_recv(i as u64, &[recv.sge(i * INLINE_SIZE, INLINE_SIZE as u32)])? };
        }
        let ours = ConnectPrivate {
            version: 1,
            remote_invalidate: false,
            send_size: inline_max,
            recv_size: INLINE_SIZE,
        };
        // RDMA_MAX_INIT_DEPTH / RDMA_MAX_RESP_RES: librdmacm takes the smaller of what the
        // client offered and what the device allows.
        id.accept(MAX_DEPTH, MAX_DEPTH, &ours.encode())?;
        tracing::info!(
            %peer, device = %id.device_name(), inline_max,
            client_private = ?theirs, "NFS over RDMA connection accepted"
        );
        Ok(Conn {
            id,
            cq,
            recv,
            send,
            bulk,
            device,
            peer,
            local,
            inline_max,
            stats: Stats::default(),
        })
    }

    async fn run<H: Handler>(self, handler: Arc<H>, closed: Arc<Notify>) {
        let peer = self.peer;
        // The send queue's bookkeeping holds what posted work requests read from (READ
        // payloads in the store's arenas): it must outlive the QP, which `drop(self)` destroys.
        let mut sq = SendQueue {
            free: (0..SEND_BUFFERS).rev().collect(),
            used: 0,
            next_wr: 1 << 32, // receive wr_ids are buffer indexes below this
            wrs: HashMap::new(),
        };
        let r = self.serve(handler, closed, &mut sq).await;
        let s = self.stats.summary();
        drop(self);
        drop(sq);
        match r {
            Ok(()) => tracing::info!(%peer, "NFS over RDMA connection closed: {s}"),
            Err(e) => tracing::warn!(%peer, "NFS over RDMA connection failed: {e}; {s}"),
        }
    }

    async fn serve<H: Handler>(
        &self,
        handler: Arc<H>,
        closed: Arc<Notify>,
        sq: &mut SendQueue,
    ) -> io::Result<()> {
        // SAFETY: the fd is the CQ's completion channel; `self` (and its `cq`) outlives this
        // function and so this local.
        let afd = unsafe {
            AsyncFd::register_with_interest(Fd(self.cq.channel_fd()), Interest::READABLE)
        }?;
        let (reply_tx, mut reply_rx) = mpsc::unbounded_channel::<Outgoing>();
        let bulk_slots = Slots::new(BULK_SLOTS);
        let mut credits = Credits::new(RECV_BUFFERS as u32);
        let mut pending: HashMap<u64, Pending> = HashMap::new();
        // Calls waiting for a bulk slot or send-queue room, and what waits to be sent.
        let mut calls_waiting: VecDeque<(Header, Bytes)> = VecDeque::new();
        let mut out_waiting: VecDeque<Outgoing> = VecDeque::new();
        let mut wcs: Vec<WorkCompletion> = Vec::with_capacity(64);
        let mut idle_check = tokio::time::interval(IDLE_TIMEOUT / 6);
        let mut last_active = std::time::Instant::now();
        loop {
            tokio::select! {
                _ = closed.notified() => {
                    let _ = self.id.disconnect();
                    return Ok(());
                }
                r = afd.readable() => {
                    let mut guard = r?;
                    while self.cq.take_event()? {}
                    guard.clear_ready();
                }
                Some(o) = reply_rx.recv() => out_waiting.push_back(o),
                _ = bulk_slots.freed.notified() => {}
                _ = idle_check.tick() => {
                    let quiet = credits.outstanding() == 0 && pending.is_empty() && sq.used == 0;
                    if quiet && last_active.elapsed() >= IDLE_TIMEOUT {
                        tracing::info!(peer = %self.peer, "closing an idle NFS over RDMA connection");
                        let _ = self.id.disconnect();
                        return Ok(());
                    }
                }
            }
            // Reap completions (the CQ was re-armed first, so none is missed).
            loop {
                wcs.clear();
                if self.cq.poll(&mut wcs, 64)? == 0 {
                    break;
                }
                last_active = std::time::Instant::now();
                for wc in &wcs {
                    if !wc.ok {
                        return Err(io::Error::other(format!(
                            "work request {:#x} failed: {}",
                            wc.wr_id,
                            wc.status_str()
                        )));
                    }
                    if wc.wr_id < (1 << 32) {
                        let msg = self.received(wc)?;
                        // Every message but a runt or a stray RDMA_ERROR takes a credit until
                        // its reply (or RDMA_ERROR) is sent: a client cannot queue unbounded
                        // answers by sending garbage.
                        match decode_header(&msg) {
                            Err(HeaderError::Runt(_) | HeaderError::NotACall { .. }) => {}
                            r => {
                                if !credits.call_arrived() {
                                    return Err(io::Error::other("client exceeded its credits"));
                                }
                                match r {
                                    Ok(hdr) => {
                                        Stats::add(&self.stats.calls, 1);
                                        calls_waiting.push_back((hdr, msg));
                                    }
                                    Err(e) => {
                                        tracing::debug!(peer = %self.peer, "{e}");
                                        let asked = msg.get(8..12).map_or(1, |b| {
                                            u32::from_be_bytes([b[0], b[1], b[2], b[3]])
                                        });
                                        match encode_error(&e, credits.grant(asked)) {
                                            Some(h) => out_waiting.push_back(Outgoing::Error(h)),
                                            None => credits.reply_sent(),
                                        }
                                    }
                                }
                            }
                        }
                        continue;
                    }
                    sq.used -= 1;
                    match sq.wrs.remove(&wc.wr_id) {
                        Some(SendWr::Reply { send_buf, bulk, .. }) => {
                            sq.free.push(send_buf);
                            if let Some(b) = bulk {
                                bulk_slots.put(b);
                            }
                        }
                        Some(SendWr::Write) | None => {}
                        Some(SendWr::Read { call }) => {
                            let done = pending.get_mut(&call).is_some_and(|p| {
                                p.reads_left -= 1;
                                p.reads_left == 0
                            });
                            if let Some(p) = done.then(|| pending.remove(&call)).flatten() {
                                let record = self.record(&bulk_slots, p.slot, p.len);
                                self.dispatch(&handler, &reply_tx, p.hdr, record);
                            }
                        }
                    }
                }
            }
            // Start calls. One waiting for a bulk slot does not hold up those that need none.
            let mut blocked = VecDeque::new();
            while let Some((hdr, msg)) = calls_waiting.pop_front() {
                let inline = msg.slice(hdr.len..);
                let plan = match CallPlan::new(&hdr, inline.len()) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::debug!(peer = %self.peer, "{e}");
                        // Its credit is returned when the RDMA_ERROR is sent.
                        match encode_error(&e, credits.grant(hdr.credits)) {
                            Some(h) => out_waiting.push_back(Outgoing::Error(h)),
                            None => credits.reply_sent(),
                        }
                        continue;
                    }
                };
                let reads = plan
                    .pieces
                    .iter()
                    .filter(|p| matches!(p, Piece::Read { .. }))
                    .count();
                if reads == 0 {
                    self.dispatch(&handler, &reply_tx, hdr, inline);
                    continue;
                }
                let slot = match sq.room(reads).then(|| bulk_slots.take()).flatten() {
                    Some(s) => s,
                    None => {
                        blocked.push_back((hdr, msg));
                        continue;
                    }
                };
                let call = self.start_reads(slot, &plan, &inline, sq)?;
                let reads_left = reads;
                let len = plan.len;
                pending.insert(
                    call,
                    Pending {
                        hdr,
                        slot,
                        len,
                        reads_left,
                    },
                );
            }
            calls_waiting = blocked;
            // Send, in order.
            while let Some(o) = out_waiting.pop_front() {
                let sent = match &o {
                    Outgoing::Error(h) => {
                        let sent = self.post_send(&[h], None, None, sq)?;
                        if sent {
                            Stats::add(&self.stats.errors, 1);
                            credits.reply_sent();
                        }
                        sent
                    }
                    Outgoing::Reply(_, None) => {
                        credits.reply_sent();
                        true
                    }
                    Outgoing::Reply(hdr, Some(reply)) => {
                        let grant = credits.grant(hdr.credits);
                        let sent = self.send_reply(hdr, reply, grant, &bulk_slots, sq)?;
                        if sent {
                            credits.reply_sent();
                        }
                        sent
                    }
                };
                if !sent {
                    out_waiting.push_front(o);
                    break;
                }
            }
        }
    }

    /// The record assembled in bulk slot `slot`: copied out (and the slot freed at once) when
    /// small, else the slot itself, lent until the last slice of the record drops.
    fn record(&self, slots: &Arc<Slots>, slot: usize, len: usize) -> Bytes {
        if len <= RECORD_COPY_MAX {
            // SAFETY: every RDMA Read into the slot has completed and the slot is still ours.
            let b = Bytes::copy_from_slice(unsafe { self.bulk.slice(slot * BULK_SLOT_SIZE, len) });
            slots.put(slot);
            return b;
        }
        Bytes::from_owner(BulkLease {
            region: self.bulk.clone(),
            slots: slots.clone(),
            index: slot,
            len,
        })
    }

    /// Copies a received message out of its buffer and posts the buffer again.
    fn received(&self, wc: &WorkCompletion) -> io::Result<Bytes> {
        let i = wc.wr_id as usize;
        let len = (wc.byte_len as usize).min(INLINE_SIZE);
        // SAFETY: the receive into buffer i completed; nothing else touches the buffer until it
        // is posted again below.
        let msg = Bytes::copy_from_slice(unsafe { self.recv.slice(i * INLINE_SIZE, len) });
        let sge = self.recv.sge(i * INLINE_SIZE, INLINE_SIZE as u32);
        // SAFETY: as at accept; `recv` outlives the QP.
        unsafe { self.id.post_recv(i as u64, &[sge])? };
        Ok(msg)
    }

    /// Lays the inline pieces of a call out in bulk slot `slot` and posts the RDMA Reads of
    /// its chunks; returns the id their completions carry.
    fn start_reads(
        &self,
        slot: usize,
        plan: &CallPlan,
        inline: &[u8],
        sq: &mut SendQueue,
    ) -> io::Result<u64> {
        Stats::add(&self.stats.read_chunk_bytes, plan.read_len() as u64);
        let base = slot * BULK_SLOT_SIZE;
        {
            // SAFETY: the slot is ours until its lease drops, and no RDMA targets it yet; the
            // slice is gone before the Reads are posted.
            let dst = unsafe { self.bulk.slice_mut(base, plan.len) };
            // The inline pieces, and zeros in the gaps between pieces (the XDR roundup after a
            // read chunk). Pieces are laid out in ascending order.
            let mut at = 0;
            for p in &plan.pieces {
                let (to, len) = match p {
                    Piece::Inline { from, to } => (*to, from.len()),
                    Piece::Read { segment, to } => (*to, segment.length as usize),
                };
                dst[at.min(to)..to].fill(0);
                if let Piece::Inline { from, .. } = p {
                    dst[to..to + len].copy_from_slice(&inline[from.clone()]);
                }
                at = at.max(to + len);
            }
            dst[at.min(plan.len)..].fill(0);
        }
        let call = sq.next_wr;
        sq.next_wr += 1;
        for p in &plan.pieces {
            if let Piece::Read { segment, to } = p {
                let wr = sq.wr_id(SendWr::Read { call });
                let sge = self.bulk.sge(base + to, segment.length);
                // SAFETY: the destination is in the bulk slot, which stays ours (and
                // registered) until the read completes and beyond.
                unsafe {
                    self.id
                        .post_rdma_read(wr, &[sge], segment.offset, segment.handle, true)?
                };
            }
        }
        Ok(call)
    }

    fn dispatch<H: Handler>(
        &self,
        handler: &Arc<H>,
        tx: &mpsc::UnboundedSender<Outgoing>,
        hdr: Header,
        record: Bytes,
    ) {
        let (handler, tx, peer, local) = (handler.clone(), tx.clone(), self.peer, self.local);
        tokio::spawn(async move {
            let reply = handler.handle(record, peer, local).await;
            let _ = tx.send(Outgoing::Reply(hdr, reply));
        });
    }

    /// Posts the RDMA Writes and the Send of one reply. `Ok(false)`: not now (no send buffer,
    /// bulk slot or send-queue room); it is tried again after the next completion.
    ///
    /// A payload in a registered arena (an nvme store READ) is written from where the store
    /// read it; any other payload, and a reply-chunk message, is first copied into a bulk slot.
    fn send_reply(
        &self,
        hdr: &Header,
        reply: &Reply,
        grant: u32,
        bulk_slots: &Slots,
        sq: &mut SendQueue,
    ) -> io::Result<bool> {
        let (head, payload, tail) = (&reply.head[..], &reply.payload[..], &reply.tail[..]);
        let plan = ReplyPlan::new(
            hdr,
            grant,
            head.len(),
            payload.len(),
            tail.len(),
            self.inline_max,
        );
        let pad = &[0u8; 4][..pad_len(payload.len())];
        // What goes inline after the header, the message for the reply chunk (with its
        // writes), and the payload's writes.
        type Parts<'a> = Vec<&'a [u8]>;
        let (header, inline, message, message_writes, payload_writes): (
            Bytes,
            Parts,
            Parts,
            Vec<Write>,
            Vec<Write>,
        ) = match plan {
            ReplyPlan::Error { header } => {
                Stats::add(&self.stats.errors, 1);
                tracing::warn!(
                    peer = %self.peer, xid = hdr.xid,
                    "reply larger than the chunks the client offered"
                );
                (header, vec![], vec![], vec![], vec![])
            }
            ReplyPlan::Inline {
                header,
                payload_inline: true,
                ..
            } => (
                header,
                vec![head, payload, pad, tail],
                vec![],
                vec![],
                vec![],
            ),
            ReplyPlan::Inline {
                header,
                payload_writes,
                ..
            } => (header, vec![head, tail], vec![], vec![], payload_writes),
            ReplyPlan::ReplyChunk {
                header,
                payload_writes,
                message_writes,
            } => {
                Stats::add(&self.stats.reply_chunk_replies, 1);
                let message = if payload_writes.is_empty() {
                    vec![head, payload, pad, tail]
                } else {
                    vec![head, tail]
                };
                (header, vec![], message, message_writes, payload_writes)
            }
        };
        let writes = message_writes.len() + payload_writes.len();
        if sq.free.is_empty() || !sq.room(writes + 1) {
            return Ok(false);
        }
        // The payload straight from its arena, if this device has it registered.
        let payload_lkey = (!payload_writes.is_empty())
            .then(|| self.device.lkey_for(payload))
            .flatten();
        let message_len: usize = message.iter().map(|p| p.len()).sum();
        let copied_payload = !payload_writes.is_empty() && payload_lkey.is_none();
        let staged_len = message_len + if copied_payload { payload.len() } else { 0 };
        let slot = if staged_len == 0 {
            None
        } else {
            if staged_len > BULK_SLOT_SIZE {
                return Err(io::Error::other("reply larger than a bulk slot"));
            }
            let Some(slot) = bulk_slots.take() else {
                return Ok(false);
            };
            // SAFETY: the slot was just taken from the free list; nothing reads or writes it.
            let dst = unsafe { self.bulk.slice_mut(slot * BULK_SLOT_SIZE, staged_len) };
            copy_parts(&mut dst[..message_len], &message);
            if copied_payload {
                dst[message_len..].copy_from_slice(payload);
            }
            Some(slot)
        };
        let base = slot.map_or(0, |s| s * BULK_SLOT_SIZE);
        for w in &message_writes {
            self.post_write(w, self.bulk.sge(base + w.src, w.len), sq)?;
        }
        if !payload_writes.is_empty() {
            Stats::add(&self.stats.write_chunk_bytes, payload.len() as u64);
        }
        for w in &payload_writes {
            let sge = match payload_lkey {
                Some(lkey) => {
                    Stats::add(&self.stats.zero_copy_bytes, w.len as u64);
                    Sge {
                        addr: payload.as_ptr() as u64 + w.src as u64,
                        length: w.len,
                        lkey,
                    }
                }
                None => self.bulk.sge(base + message_len + w.src, w.len),
            };
            self.post_write(w, sge, sq)?;
        }
        let mut parts = vec![&header[..]];
        parts.extend(inline);
        // The payload's Bytes ride with the Send, so its memory outlives the Writes.
        let keep = payload_lkey.map(|_| reply.payload.clone());
        self.post_send(&parts, slot, keep, sq)
    }

    fn post_write(&self, w: &Write, sge: Sge, sq: &mut SendQueue) -> io::Result<()> {
        let wr = sq.wr_id(SendWr::Write);
        // SAFETY: the source (a bulk slot, or a payload in a registered arena) is released only
        // when the Send posted after this Write completes (an RC queue completes in order).
        unsafe {
            self.id
                .post_rdma_write(wr, &[sge], w.remote_offset, w.handle, true)
        }
    }

    /// Copies `parts` into a send buffer and posts the Send; `Ok(false)` if no buffer or room.
    /// `bulk` and `keep` are released when the Send completes.
    fn post_send(
        &self,
        parts: &[&[u8]],
        bulk: Option<usize>,
        keep: Option<Bytes>,
        sq: &mut SendQueue,
    ) -> io::Result<bool> {
        if !sq.room(1) {
            return Ok(false);
        }
        let Some(send_buf) = sq.free.pop() else {
            return Ok(false);
        };
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > INLINE_SIZE {
            return Err(io::Error::other("inline reply over the send buffer size"));
        }
        let base = send_buf * INLINE_SIZE;
        // SAFETY: the send buffer was taken from the free list; no Send uses it.
        copy_parts(unsafe { self.send.slice_mut(base, len) }, parts);
        let wr = sq.wr_id(SendWr::Reply {
            send_buf,
            bulk,
            _keep: keep,
        });
        // SAFETY: the send buffer returns to the free list only at this Send's completion.
        unsafe {
            self.id
                .post_send(wr, &[self.send.sge(base, len as u32)], true)?
        };
        Ok(true)
    }
}

fn copy_parts(dst: &mut [u8], parts: &[&[u8]]) {
    let mut at = 0;
    for p in parts {
        dst[at..at + p.len()].copy_from_slice(p);
        at += p.len();
    }
}
