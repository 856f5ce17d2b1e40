//! The request path, transport-independent: one RPC record in, at most one reply out.
//!
//! `handle_record` is the whole path: decode the call header → check the RPC version and
//! credential flavor → pick the program and version → decode the arguments (GARBAGE_ARGS on
//! failure) → consult the duplicate request cache → run the procedure → encode the reply. A
//! transport (TCP today, RPC-over-RDMA later) only frames records and moves bytes.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use backend::{Cred, FileId, Store};
use bytes::Bytes;
use nfs_proto::mount::{ExportNode, MountBody, MountCall, MountReply, MountStat3};
use nfs_proto::rpc::{self, AcceptStat, AuthStat, CallError, Credential};
use nfs_proto::v3::{Nfs3Call, NfsFh3, Nfsstat3};
use nfs_proto::xdr::{Encode, Writer};

use crate::call::{Body, Call, Decoded, DrcPolicy, ProcInfo};
use crate::drc::{Drc, DrcKey, Lookup};
use crate::export::{ClientRule, Export, ExportTable};
use crate::fh::{FhKey, FileHandle};
use crate::portmap::PortmapTable;
use crate::v3::Failure;

/// Who sent a call and over what.
#[derive(Clone, Debug)]
pub struct Request {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub xid: u32,
    pub credential: Credential,
    /// When the call arrived: the time every lease, grace and expiry decision of this call
    /// uses (tests give a virtual one).
    pub now: std::time::Instant,
}

/// A handle after its MAC, export and client rule were checked.
pub struct Resolved {
    pub export: Arc<Export>,
    rule_index: usize,
    pub id: FileId,
    pub cred: Cred,
}

impl Resolved {
    /// The client rule that admitted this call.
    pub fn rule(&self) -> &ClientRule {
        &self.export.rules[self.rule_index]
    }
}

pub use nfs_proto::rpc::Reply;

/// Average pacing wait above which a v4.1 client is asked for fewer slots.
pub const CHRONIC_PACING: std::time::Duration = std::time::Duration::from_millis(50);

/// Ports we serve, as advertised through portmap.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub nfs: u16,
    pub mount: u16,
}

pub struct Server<S> {
    pub store: S,
    /// Swapped whole by the admin API; read per request (an `Arc` clone under a read lock).
    pub exports: RwLock<Arc<ExportTable>>,
    pub fh_key: FhKey,
    pub drc: Drc,
    /// Mounts as MOUNT DUMP reports them: (client host, path).
    pub mounts: Mutex<BTreeSet<(String, String)>>,
    /// Set when we answer portmap/rpcbind ourselves.
    pub portmap: Option<PortmapTable>,
    /// Protocol state: NFSv4.1 clients and sessions, NLM/NSM, the lock manager, the grace
    /// period, the server's identity.
    pub state: crate::state::ProtocolState,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Payload bytes moved since start (admin status).
    pub bytes_read: std::sync::atomic::AtomicU64,
    pub bytes_written: std::sync::atomic::AtomicU64,
    pub ports: Ports,
    /// Mount targets, set once at startup (NFSv4.1 asks clients their pacer holds back for a
    /// while to use fewer slots).
    pub targets: std::sync::OnceLock<Arc<crate::qos::TargetTable>>,
}

impl<S: Store> Server<S> {
    /// A server over `store` exporting its root as "/" (export id 1) read-write to every
    /// client with no squash, a 16-entry duplicate request cache and no portmap.
    #[cfg(test)]
    pub(crate) fn for_tests(store: S, state: crate::state::ProtocolState) -> Server<S> {
        use crate::export::{ClientMatch, ClientRule, Export, Squash};
        let root = store.root();
        let rule = ClientRule {
            matcher: ClientMatch::Any,
            read_only: false,
            squash: Squash::None,
            anonuid: 65534,
            anongid: 65534,
        };
        Server {
            store,
            exports: RwLock::new(Arc::new(ExportTable::new(vec![Export {
                id: 1,
                path: "/".into(),
                root,
                rules: vec![rule],
                replication: None,
            }]))),
            fh_key: FhKey::from_bytes([3; 16]),
            drc: Drc::new(16),
            mounts: Mutex::new(Default::default()),
            portmap: None,
            state,
            metrics: Arc::new(crate::metrics::Metrics::new()),
            bytes_read: Default::default(),
            bytes_written: Default::default(),
            ports: Ports {
                nfs: 2049,
                mount: 20048,
            },
            targets: Default::default(),
        }
    }

    /// Whether the mount target this call came through has kept its client waiting for
    /// tokens for longer than [`CHRONIC_PACING`] on average lately.
    pub fn chronically_throttled(&self, req: &Request) -> bool {
        let Some(targets) = self.targets.get() else {
            return false;
        };
        let t = targets.classify(req.local);
        t.pacer.is_limited()
            && t.pacer.pressure(req.peer.ip(), tokio::time::Instant::now()) > CHRONIC_PACING
    }

    pub fn fh(&self, export_id: u32, id: FileId) -> NfsFh3 {
        let b = self.fh_key.encode(&FileHandle { export_id, id });
        NfsFh3(Bytes::copy_from_slice(&b))
    }

    /// The current export table.
    pub fn exports(&self) -> Arc<ExportTable> {
        self.exports.read().expect("exports lock poisoned").clone()
    }

    /// The mount target a call arrived through, if some target serves only chosen exports
    /// (otherwise every target serves every export, and no call needs classifying).
    fn target_of(&self, req: &Request) -> Option<Arc<crate::qos::Target>> {
        let targets = self.targets.get()?;
        targets
            .restricts_exports()
            .then(|| targets.classify(req.local))
    }

    /// Whether the export at `path` is served through the target `req` came through.
    pub fn target_serves(&self, req: &Request, path: &str) -> bool {
        self.target_of(req).is_none_or(|t| t.serves(path))
    }

    /// The exports visible through the target `req` came through (all, for most targets).
    pub fn exports_for(&self, req: &Request) -> Arc<ExportTable> {
        let all = self.exports();
        match self.target_of(req) {
            Some(t) if !t.exports.is_empty() => Arc::new(all.filtered(|e| t.serves(&e.path))),
            _ => all,
        }
    }

    /// Checks a handle and the client's right to use it; returns the squashed credentials.
    pub fn resolve(&self, fh: &NfsFh3, req: &Request) -> Result<Resolved, Failure> {
        let h = self
            .fh_key
            .decode(&fh.0)
            .map_err(|_| Failure::Status(Nfsstat3::BadHandle))?;
        // An export that was removed from the configuration: its handles are stale.
        let export = self
            .exports()
            .by_id(h.export_id)
            .cloned()
            .ok_or(Failure::Status(Nfsstat3::Stale))?;
        // Through a target that does not serve this export, its handles are stale too.
        if !self.target_serves(req, &export.path) {
            return Err(Failure::Status(Nfsstat3::Stale));
        }
        let peer = req.peer.ip();
        let rule_index = export.rules.iter().position(|r| r.matcher.matches(peer));
        let rule = rule_index.map(|i| &export.rules[i]).ok_or_else(|| {
            static REFUSED_LOG: crate::transport::LogLimit = crate::transport::LogLimit::new();
            if REFUSED_LOG.allow() {
                tracing::warn!(
                client = %req.peer.ip(), export = %export.path,
                    "refused: no client rule of this export matches the client (further \
                     refusals within 10 s are not logged)"
                );
            }
            Failure::Auth(AuthStat::TooWeak)
        })?;
        let cred = match &req.credential {
            Credential::Sys(s) => rule.map_cred(s.uid, s.gid, &s.gids, false),
            Credential::None => rule.map_cred(0, 0, &[], true),
        };
        let rule_index = rule_index.expect("rule found above");
        Ok(Resolved {
            export,
            rule_index,
            id: h.id,
            cred,
        })
    }

    /// Handles one complete RPC record: [`Server::decode`], then [`Server::handle`].
    /// `None`: send nothing (undecodable, or a retransmission whose original is still running).
    pub async fn handle_record(
        &self,
        record: Bytes,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> Option<Reply> {
        self.handle(self.decode(record), peer, local).await
    }

    /// Decodes a record once (see [`crate::call`]).
    pub fn decode(&self, record: Bytes) -> Decoded {
        crate::call::decode(record, self.portmap.is_some())
    }

    /// Runs a decoded call and records its metrics. `None`: send nothing.
    pub async fn handle(
        &self,
        decoded: Decoded,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> Option<Reply> {
        let start = std::time::Instant::now();
        let Decoded { info, call } = decoded;
        let (reply, status) = match call {
            Err(early) => {
                if early.reply.is_none() {
                    tracing::debug!(%peer, "dropping undecodable RPC record");
                }
                (early.reply, early.status)
            }
            Ok(call) => {
                use tracing::Instrument;
                // Costs one level check when debug logging is off.
                let span = tracing::debug_span!(
                    "rpc",
                    xid = call.hdr.xid,
                    program = info.program,
                    procedure = info.procedure
                );
                self.execute(call, &info, peer, local)
                    .instrument(span)
                    .await
            }
        };
        let status = if reply.is_none() { "DROPPED" } else { status };
        let elapsed = start.elapsed();
        self.metrics
            .rpc_call(info.program, info.procedure, status, elapsed);
        self.metrics.rpc_phase("backend", elapsed);
        reply.map(|r| Reply {
            ready_at: Some(std::time::Instant::now()),
            ..r
        })
    }

    /// Runs one call; returns its reply and its status for metrics.
    async fn execute(
        &self,
        call: Call,
        info: &ProcInfo,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> (Option<Reply>, &'static str) {
        let Call {
            hdr,
            credential,
            body,
            ..
        } = call;
        let req = Request {
            peer,
            local,
            xid: hdr.xid,
            credential,
            now: std::time::Instant::now(),
        };
        let mut w = Writer::with_capacity(256);
        let ok = |w: Writer, payload| (Some(reply(w, payload)), "OK");
        match body {
            Body::Nfs4Null => {
                rpc::encode_accepted(&mut w, hdr.xid, AcceptStat::Success);
                ok(w, None)
            }
            Body::Compound { decoded, args_len } => {
                rpc::encode_accepted(&mut w, hdr.xid, AcceptStat::Success);
                let (head, payloads, status) =
                    crate::v4::compound(self, &req, *decoded, args_len, w, req.now).await;
                (Some(reply_with_payloads(head, payloads)), status)
            }
            Body::Nfs3 { call, raw_args } => {
                if info.drc == DrcPolicy::Cache {
                    let key =
                        DrcKey::new(peer.ip(), hdr.xid, hdr.prog, hdr.vers, hdr.proc_, &raw_args);
                    let named = ha::forward::ClientCall::new(peer, hdr.xid, hdr.proc_, &raw_args);
                    return self.nfs3_cached(key, named, &req, call).await;
                }
                match self.nfs3(&req, call).await {
                    Ok(r) => {
                        let status = r.status().name();
                        rpc::encode_accepted(&mut w, hdr.xid, AcceptStat::Success);
                        let payload = r.encode(&mut w);
                        (Some(reply(w, payload)), status)
                    }
                    Err(stat) => (Some(auth_error(hdr.xid, stat)), "AUTH_ERROR"),
                }
            }
            Body::Mount(c) => {
                let r = self.mount(&req, c).await;
                rpc::encode_accepted(&mut w, hdr.xid, AcceptStat::Success);
                r.encode(&mut w);
                ok(w, None)
            }
            Body::Nlm(a) => match self.nlm(&req, hdr.proc_, a).await {
                Ok(r) => {
                    rpc::encode_accepted(&mut w, hdr.xid, AcceptStat::Success);
                    r.encode(&mut w);
                    ok(w, None)
                }
                Err(stat) => (Some(auth_error(hdr.xid, stat)), "AUTH_ERROR"),
            },
            Body::Nsm(a) => {
                let body = self.nsm(&req, a).await.into_bytes();
                rpc::encode_accepted(&mut w, hdr.xid, AcceptStat::Success);
                // Results are whole XDR words, so this adds no padding.
                w.opaque_fixed(&body);
                ok(w, None)
            }
            Body::Portmap(mut args) => match self.portmap.as_ref() {
                Some(table) => (Some(reply_from(table.handle(&hdr, &req, &mut args))), "OK"),
                None => (
                    Some(accept_only(hdr.xid, AcceptStat::ProgUnavail)),
                    "PROG_UNAVAIL",
                ),
            },
        }
    }

    /// A non-idempotent NFSv3 call, through the duplicate request cache: this node's (in
    /// memory), and the metadata log's for a retransmission that reaches another node than
    /// the first try did (`named`, see `ha::forward::for_client_call`).
    async fn nfs3_cached(
        &self,
        key: DrcKey,
        named: ha::forward::ClientCall,
        req: &Request,
        call: Nfs3Call,
    ) -> (Option<Reply>, &'static str) {
        match self.drc.begin(key) {
            Lookup::InProgress => return (None, "DROPPED"),
            Lookup::Replay(b) => {
                self.metrics.drc_hit();
                tracing::debug!(peer = %req.peer, xid = req.xid, "replaying cached reply");
                let r = Reply {
                    head: b,
                    ..Reply::default()
                };
                return (Some(r), "REPLAYED");
            }
            Lookup::New => {}
        }
        let running = self.drc.running(key);
        let ran = ha::forward::for_client_call(named, self.nfs3(req, call)).await;
        let (r, status) = match ran {
            Ok(r) => {
                let status = r.status().name();
                let mut w = Writer::with_capacity(256);
                rpc::encode_accepted(&mut w, req.xid, AcceptStat::Success);
                r.encode(&mut w);
                (reply(w, None), status)
            }
            // Dropping `running` forgets the call.
            Err(stat) => return (Some(auth_error(req.xid, stat)), "AUTH_ERROR"),
        };
        running.finish(r.head.clone());
        (Some(r), status)
    }

    async fn mount(&self, req: &Request, call: MountCall) -> MountReply {
        match call {
            MountCall::Null => MountReply::Null,
            MountCall::Mnt(path) => MountReply::Mnt(self.mnt(req, &path).await),
            MountCall::Dump => MountReply::Dump(
                self.mounts
                    .lock()
                    .expect("mounts lock poisoned")
                    .iter()
                    .map(|(h, p)| MountBody {
                        hostname: Bytes::from(h.clone()),
                        directory: Bytes::from(p.clone()),
                    })
                    .collect(),
            ),
            MountCall::Umnt(path) => {
                let path = String::from_utf8_lossy(&path).into_owned();
                self.mounts
                    .lock()
                    .expect("mounts lock poisoned")
                    .remove(&(req.peer.ip().to_string(), path));
                MountReply::Umnt
            }
            MountCall::Umntall => {
                let host = req.peer.ip().to_string();
                self.mounts
                    .lock()
                    .expect("mounts lock poisoned")
                    .retain(|(h, _)| *h != host);
                MountReply::Umntall
            }
            MountCall::Export => MountReply::Export(
                self.exports_for(req)
                    .iter()
                    .map(|e| ExportNode {
                        dir: Bytes::from(e.path.clone()),
                        groups: e.rules.iter().map(|r| Bytes::from(rule_label(r))).collect(),
                    })
                    .collect(),
            ),
        }
    }

    async fn mnt(&self, req: &Request, path: &[u8]) -> Result<(Bytes, Vec<u32>), MountStat3> {
        let path = std::str::from_utf8(path).map_err(|_| MountStat3::Inval)?;
        let exports = self.exports_for(req);
        let Some(export) = exports.by_path(path) else {
            tracing::info!(client = %req.peer.ip(), path, "MNT of a path that is not exported");
            return Err(MountStat3::NoEnt);
        };
        if export.rule_for(req.peer.ip()).is_none() {
            tracing::warn!(
                client = %req.peer.ip(), export = %export.path,
                "MNT refused: no client rule of this export matches the client"
            );
            return Err(MountStat3::Acces);
        }
        self.store
            .getattr(export.root)
            .await
            .map_err(|e| crate::error::to_mountstat3(&e))?;
        let first = self
            .mounts
            .lock()
            .expect("mounts lock poisoned")
            .insert((req.peer.ip().to_string(), export.path.clone()));
        // Once per client and export: repeated MNTs (or a flood of them) add no log lines.
        if first {
            tracing::info!(client = %req.peer.ip(), export = %export.path, "mounted");
        }
        let fh = self.fh(export.id, export.root);
        Ok((fh.0, vec![rpc::AUTH_SYS, rpc::AUTH_NONE]))
    }
}

/// A reply whose READ payloads sit inside the head: one payload is sent without a copy, as the
/// reply's `payload` between `head` and `tail`; several (two READs in one COMPOUND, rare) are
/// spliced into one buffer.
fn reply_with_payloads(head: Writer, payloads: Vec<nfs_proto::v4::ReplyPayload>) -> Reply {
    match payloads.as_slice() {
        [] => reply(head, None),
        [p] if p.offset == head.len() => reply(head, Some(p.data.clone())),
        [p] if p.offset < head.len() => {
            // A READ followed by more ops: its data sits between head and tail, uncopied.
            let mut head = head.into_bytes();
            let tail = head.split_off(p.offset);
            Reply {
                head,
                payload: p.data.clone(),
                tail,
                ready_at: None,
            }
        }
        _ => Reply {
            head: nfs_proto::v4::splice_payloads(head.as_slice(), &payloads),
            ..Reply::default()
        },
    }
}

fn rule_label(r: &ClientRule) -> String {
    use crate::export::ClientMatch;
    match &r.matcher {
        ClientMatch::Any => "*".into(),
        ClientMatch::Cidr { net, prefix } => format!("{net}/{prefix}"),
        ClientMatch::Host { name, .. } => name.clone(),
    }
}

fn reply(w: Writer, payload: Option<Bytes>) -> Reply {
    Reply {
        head: w.into_bytes(),
        payload: payload.unwrap_or_default(),
        ..Reply::default()
    }
}

pub(crate) fn reply_from(w: Writer) -> Reply {
    reply(w, None)
}

fn accept_only(xid: u32, stat: AcceptStat) -> Reply {
    let mut w = Writer::with_capacity(24);
    rpc::encode_accepted(&mut w, xid, stat);
    reply(w, None)
}

fn auth_error(xid: u32, stat: AuthStat) -> Reply {
    let mut w = Writer::with_capacity(24);
    rpc::encode_denied(&mut w, &CallError::Auth { xid, stat });
    reply(w, None)
}

/// Encodes a value with its `Encode` impl into a fresh buffer (tests, small replies).
pub fn encode_to_bytes<T: Encode>(v: &T) -> Bytes {
    let mut w = Writer::new();
    v.encode(&mut w);
    w.into_bytes()
}
