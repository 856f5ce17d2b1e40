//! The metadata log over TCP: openraft's network client ([`TcpNetwork`]) and the server that
//! answers other nodes ([`serve`]), speaking the frames of [`super::rpc`]. One connection per
//! peer, requests one at a time on it, every call bounded by openraft's timeout. A frame that
//! fails its MAC (a node without the cluster key) closes the connection and is logged.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::rpc::{self, ClusterKey, Kind};
use super::TypeConfig;

/// The answer to a shipped call: its body and the file data that follows it.
pub type CallFuture = Pin<Box<dyn Future<Output = (Vec<u8>, Option<Bytes>)> + Send>>;

/// What answers file-system calls shipped to this node (`crate::forward`).
pub trait Calls: Send + Sync + 'static {
    fn call(self: Arc<Self>, body: Bytes) -> CallFuture;
}

/// Where the log's server finds the call handler once the node has one: calls that arrive
/// before (or after it is gone) are refused by closing the connection, and the caller
/// retries elsewhere.
pub type CallSlot = Arc<OnceLock<Weak<dyn Calls>>>;

/// Writes one frame: header and body, then `data` from where it lies, then the MAC.
pub async fn write_frame(
    w: &mut (impl AsyncWrite + Unpin),
    key: &ClusterKey,
    kind: Kind,
    body: &[u8],
    data: Option<&Bytes>,
) -> io::Result<()> {
    match data {
        None => w.write_all(&rpc::encode_frame(key, kind, body)).await,
        Some(data) => {
            let (head, mac) = rpc::encode_frame_parts(key, kind, body, data);
            w.write_all(&head).await?;
            w.write_all(data).await?;
            w.write_all(&mac).await
        }
    }
}

/// Reads one frame and checks its MAC.
pub async fn read_frame(
    r: &mut (impl AsyncRead + Unpin),
    key: &ClusterKey,
) -> io::Result<(Kind, Vec<u8>)> {
    let mut header = [0u8; rpc::HEADER_BYTES];
    r.read_exact(&mut header).await?;
    let h = rpc::decode_header(&header).map_err(io::Error::other)?;
    // Bounded by FRAME_BODY_MAX in decode_header. Read into spare capacity rather than zero
    // a MiB of file data first only to overwrite it.
    let len = rpc::rest_len(&h);
    let mut rest = Vec::with_capacity(len);
    while rest.len() < len {
        let left = (len - rest.len()) as u64;
        if (&mut *r).take(left).read_buf(&mut rest).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    rpc::verify(key, &header, &rest).map_err(io::Error::other)?;
    // The body is what precedes the MAC: keep the buffer rather than copy it out.
    rest.truncate(h.len);
    Ok((h.kind, rest))
}

/// Idle connections to peers, by address. openraft makes a client for every heartbeat round
/// a read barrier asks for (`ensure_linearizable`) and drops it after: without this pool each
/// round connected anew, and the TIME_WAIT sockets piling up made every connect slower.
type Idle = Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<TcpStream>>>>;

/// Idle connections kept per peer.
const IDLE_PER_PEER: usize = 8;

pub struct TcpNetwork {
    key: ClusterKey,
    idle: Idle,
    heard: Heard,
}

impl TcpNetwork {
    /// `heard` learns which peers answer this node's log calls.
    pub fn new(key: ClusterKey, heard: Heard) -> TcpNetwork {
        TcpNetwork {
            key,
            idle: Idle::default(),
            heard,
        }
    }
}

/// Which peers answer this node's log calls: for each peer, since when it has left its calls
/// unanswered, and when it was last called. A leader calls every follower at least every
/// heartbeat (100 ms), so a follower silent for longer is cut off, stopped or gone, as the
/// leader sees it; the data path then checks such a node at once instead of waiting on it
/// (`crate::forward::data`). A peer this node stopped calling (it no longer leads, or a
/// candidate's votes went unanswered) is not counted silent: a count whose last call is older
/// than [`Heard::STALE`] starts again with the next call.
#[derive(Clone, Default)]
pub struct Heard(Arc<std::sync::Mutex<HashMap<u64, Asked>>>);

/// See [`Heard`].
#[derive(Clone, Copy)]
struct Asked {
    since: Instant,
    last: Instant,
}

impl Heard {
    /// A peer not called for this long is not counted silent (more than a heartbeat, more
    /// than openraft's longest wait for an answer to a heartbeat or an append).
    pub const STALE: Duration = Duration::from_secs(3);

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Asked>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A call to `node` leaves at `now`.
    pub fn asking(&self, node: u64, now: Instant) {
        let mut asked = self.lock();
        match asked.get_mut(&node) {
            Some(a) if now.saturating_duration_since(a.last) <= Self::STALE => a.last = now,
            _ => {
                asked.insert(
                    node,
                    Asked {
                        since: now,
                        last: now,
                    },
                );
            }
        }
    }

    /// `node` answered a call (any answer, an error included: it is alive).
    pub fn answered(&self, node: u64) {
        self.lock().remove(&node);
    }

    /// How long, at `now`, `node` has left this node's calls unanswered (zero: it answered
    /// the last one, or is not being called).
    pub fn silent_for(&self, node: u64, now: Instant) -> Duration {
        self.lock()
            .get(&node)
            .filter(|a| now.saturating_duration_since(a.last) <= Self::STALE)
            .map_or(Duration::ZERO, |a| now.saturating_duration_since(a.since))
    }
}

fn lock_idle(
    idle: &Idle,
) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Vec<TcpStream>>> {
    idle.lock().unwrap_or_else(|e| e.into_inner())
}

impl RaftNetworkFactory<TypeConfig> for TcpNetwork {
    type Network = TcpPeer;
    async fn new_client(&mut self, target: u64, node: &BasicNode) -> TcpPeer {
        let conn = lock_idle(&self.idle).get_mut(&node.addr).and_then(Vec::pop);
        TcpPeer {
            target,
            addr: node.addr.clone(),
            key: self.key.clone(),
            conn,
            idle: Arc::clone(&self.idle),
            heard: self.heard.clone(),
        }
    }
}

pub struct TcpPeer {
    target: u64,
    addr: String,
    key: ClusterKey,
    conn: Option<TcpStream>,
    idle: Idle,
    heard: Heard,
}

impl Drop for TcpPeer {
    /// A healthy connection (one whose last call completed) goes back to the pool.
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut idle = lock_idle(&self.idle);
            let pool = idle.entry(self.addr.clone()).or_default();
            if pool.len() < IDLE_PER_PEER {
                pool.push(conn);
            }
        }
    }
}

/// Why a call failed: before anything was sent (the peer is unreachable) or after.
enum CallError {
    Connect(io::Error),
    Io(io::Error),
}

impl TcpPeer {
    async fn call(
        &mut self,
        kind: Kind,
        body: Vec<u8>,
        ttl: Duration,
    ) -> Result<Vec<u8>, CallError> {
        let frame = rpc::encode_frame(&self.key, kind, &body);
        self.heard.asking(self.target, Instant::now());
        let result = tokio::time::timeout(ttl, async {
            // The connection is out of `self` until its reply is read: a call that openraft
            // gives up on (its own timeout drops this future) between request and reply
            // drops the connection with it. Kept, the next call on it would read this
            // call's late reply as its own (a stale Success counted as an acknowledgement).
            let mut conn = match self.conn.take() {
                Some(conn) => conn,
                None => {
                    let conn = TcpStream::connect(&self.addr)
                        .await
                        .map_err(CallError::Connect)?;
                    conn.set_nodelay(true).map_err(CallError::Connect)?;
                    conn
                }
            };
            conn.write_all(&frame).await.map_err(CallError::Io)?;
            let (kind, reply) = read_frame(&mut conn, &self.key)
                .await
                .map_err(CallError::Io)?;
            if kind != Kind::Reply {
                return Err(CallError::Io(io::Error::other(
                    "a request where a reply was due",
                )));
            }
            self.conn = Some(conn);
            Ok(reply)
        })
        .await;
        let result = result.unwrap_or_else(|_| {
            Err(CallError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "no answer in time",
            )))
        });
        match result {
            Ok(_) => self.heard.answered(self.target),
            // The stream may hold half a frame: start over on the next call.
            Err(_) => self.conn = None,
        }
        result
    }

    fn rpc_error<E: std::error::Error>(&self, e: CallError) -> RPCError<u64, BasicNode, E> {
        match e {
            CallError::Connect(e) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Io(e) => RPCError::Network(NetworkError::new(&e)),
        }
    }

    async fn request<T, E>(
        &mut self,
        kind: Kind,
        body: Vec<u8>,
        option: &RPCOption,
    ) -> Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>>
    where
        T: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let reply = self
            .call(kind, body, option.hard_ttl())
            .await
            .map_err(|e| self.rpc_error(e))?;
        match rpc::decode_reply::<T, RaftError<u64, E>>(&reply) {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(self.target, remote))),
            Err(e) => Err(RPCError::Network(NetworkError::new(&io::Error::other(e)))),
        }
    }
}

impl RaftNetwork<TypeConfig> for TcpPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.request(Kind::AppendEntries, rpc::encode_append(&rpc), &option)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.request(Kind::InstallSnapshot, rpc::encode_snapshot(&rpc), &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.request(Kind::Vote, rpc::encode_vote(&rpc), &option)
            .await
    }
}

/// Resolves when the log has shut down (its metrics channel closes). The server metrics,
/// which do not change with every entry.
async fn stopped(raft: &Raft<TypeConfig>) {
    let mut metrics = raft.server_metrics();
    while metrics.changed().await.is_ok() {}
}

/// Answers other nodes' log requests on `listener` until the log shuts down.
pub async fn serve(
    listener: TcpListener,
    raft: Raft<TypeConfig>,
    key: ClusterKey,
    calls: CallSlot,
    votes_seen: Arc<AtomicU64>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&raft) => return,
        };
        let (conn, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "metadata log: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = conn.set_nodelay(true);
        let (raft, key, calls) = (raft.clone(), key.clone(), Arc::clone(&calls));
        let votes_seen = Arc::clone(&votes_seen);
        tokio::spawn(async move {
            if let Err(e) = answer(conn, &raft, &key, &calls, &votes_seen).await {
                if e.kind() != io::ErrorKind::UnexpectedEof {
                    tracing::warn!(%peer, error = %e, "metadata log: refused a peer's frame; connection closed");
                }
            }
        });
    }
}

async fn answer(
    mut conn: TcpStream,
    raft: &Raft<TypeConfig>,
    key: &ClusterKey,
    calls: &CallSlot,
    votes_seen: &AtomicU64,
) -> io::Result<()> {
    loop {
        let (kind, body) = read_frame(&mut conn, key).await?;
        let reply = match kind {
            Kind::AppendEntries => {
                let req = rpc::decode_append(&body).map_err(io::Error::other)?;
                rpc::encode_reply(&raft.append_entries(req).await)
            }
            Kind::Vote => {
                let req = rpc::decode_vote(&body).map_err(io::Error::other)?;
                // Before the log sees it: ends this node's read lease (`super::READ_LEASE`).
                votes_seen.fetch_add(1, Ordering::SeqCst);
                rpc::encode_reply(&raft.vote(req).await)
            }
            Kind::InstallSnapshot => {
                let req = rpc::decode_snapshot(&body).map_err(io::Error::other)?;
                rpc::encode_reply(&raft.install_snapshot(req).await)
            }
            Kind::Call => {
                let handler = calls
                    .get()
                    .and_then(Weak::upgrade)
                    .ok_or_else(|| io::Error::other("a call before this node serves calls"))?;
                let (reply, data) = handler.call(Bytes::from(body)).await;
                write_frame(&mut conn, key, Kind::Reply, &reply, data.as_ref()).await?;
                continue;
            }
            Kind::Reply => return Err(io::Error::other("a reply where a request was due")),
        };
        conn.write_all(&rpc::encode_frame(key, Kind::Reply, &reply))
            .await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that answers "slow" after 300 ms and anything else at once, echoing the body.
    async fn echo_peer(key: ClusterKey) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let key = key.clone();
                tokio::spawn(async move {
                    while let Ok((_, body)) = read_frame(&mut conn, &key).await {
                        if body == b"slow" {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                        }
                        let mut reply = b"reply to ".to_vec();
                        reply.extend_from_slice(&body);
                        let frame = rpc::encode_frame(&key, Kind::Reply, &reply);
                        if conn.write_all(&frame).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn a_peer_is_silent_from_its_first_unanswered_call_until_it_answers() {
        let heard = Heard::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(heard.silent_for(2, t0), Duration::ZERO, "never called");
        heard.asking(2, t0);
        // A later call does not restart the count.
        heard.asking(2, t0 + ms(100));
        assert_eq!(heard.silent_for(2, t0 + ms(700)), ms(700));
        assert_eq!(heard.silent_for(3, t0 + ms(700)), Duration::ZERO);
        heard.answered(2);
        assert_eq!(heard.silent_for(2, t0 + ms(800)), Duration::ZERO);
    }

    #[test]
    fn a_peer_no_longer_called_is_not_silent_and_its_count_starts_again_with_the_next_call() {
        let heard = Heard::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        heard.asking(2, t0);
        // This node stopped calling it (it lost its leadership): not silent.
        let later = t0 + Heard::STALE + ms(1);
        assert_eq!(heard.silent_for(2, later), Duration::ZERO);
        // Leading again, it calls: the count starts from this call, not the old one.
        heard.asking(2, later);
        assert_eq!(heard.silent_for(2, later + ms(200)), ms(200));
    }

    /// A client of node 2 at `addr`.
    fn peer_2(addr: String, key: ClusterKey, heard: Heard) -> TcpPeer {
        TcpPeer {
            target: 2,
            addr,
            key,
            conn: None,
            idle: Default::default(),
            heard,
        }
    }

    #[tokio::test]
    async fn a_peer_that_answers_is_heard_and_one_whose_call_times_out_is_silent() {
        let key = ClusterKey::new(b"0123456789abcdef");
        let addr = echo_peer(key.clone()).await;
        let heard = Heard::default();
        let mut peer = peer_2(addr, key, heard.clone());
        let ttl = Duration::from_millis(100);
        assert!(peer.call(Kind::Vote, b"first".to_vec(), ttl).await.is_ok());
        assert_eq!(heard.silent_for(2, Instant::now()), Duration::ZERO);
        assert!(peer.call(Kind::Vote, b"slow".to_vec(), ttl).await.is_err());
        assert!(heard.silent_for(2, Instant::now()) > Duration::ZERO);
        assert!(peer.call(Kind::Vote, b"next".to_vec(), ttl).await.is_ok());
        assert_eq!(heard.silent_for(2, Instant::now()), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_call_given_up_between_request_and_reply_leaves_no_reply_for_the_next_call() {
        let key = ClusterKey::new(b"0123456789abcdef");
        let addr = echo_peer(key.clone()).await;
        let mut peer = peer_2(addr, key, Heard::default());
        let ttl = Duration::from_secs(2);
        assert_eq!(
            peer.call(Kind::Vote, b"first".to_vec(), ttl).await.ok(),
            Some(b"reply to first".to_vec())
        );
        // openraft's own timeout, shorter than the peer's answer, drops the call mid-way.
        let given_up = tokio::time::timeout(
            Duration::from_millis(50),
            peer.call(Kind::Vote, b"slow".to_vec(), ttl),
        )
        .await;
        assert!(given_up.is_err());
        let next = peer.call(Kind::Vote, b"next".to_vec(), ttl).await;
        assert_eq!(
            next.ok().map(|r| String::from_utf8_lossy(&r).into_owned()),
            Some("reply to next".to_string()),
            "the next call read another call's reply"
        );
    }
}
