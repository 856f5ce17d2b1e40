//! The admin HTTP API (docs/admin-api.md, docs/openapi.json): status, mount targets, exports and
//! residency, for operators and the `sluice` CLI.
//!
//! Plain HTTP/1.1 with JSON bodies on a loopback address by default, one request per
//! connection, every request authenticated with a bearer token. Heads are limited to 8 KiB,
//! bodies to 1 MiB, and each connection to 10 s.
//!
//! Changes made here (targets, tiers, exports) are kept in a [`Book`]: on a node whose
//! metadata goes through the metadata log, the cluster's document `cluster/admin`, the same
//! on every node (each node applies it within a second: [`Admin::follow`]); otherwise
//! `<data_dir>/admin-state.json`. Either is applied again at the next start.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backend::{Cred, Store};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::export::{ClientMatch, ClientRule, ExportConfig, Squash};
use crate::qos::{Source, Target, TargetConfig, TargetTable, TierConfig};
use crate::server::Server;
use crate::transport::ConnLimits;

const HEAD_MAX: usize = 8 * 1024;
const BODY_MAX: usize = 1 << 20;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Routes, for the OpenAPI sync test: (method, path template).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/status"),
    ("GET", "/v1/targets"),
    ("POST", "/v1/targets"),
    ("GET", "/v1/targets/{name}"),
    ("PUT", "/v1/targets/{name}/tier"),
    ("PUT", "/v1/targets/{name}/node"),
    ("DELETE", "/v1/targets/{name}"),
    ("GET", "/v1/exports"),
    ("POST", "/v1/exports"),
    ("DELETE", "/v1/exports/{id}"),
    ("PUT", "/v1/exports/{id}/replication"),
    ("GET", "/v1/residency"),
    ("GET", "/v1/cluster"),
    ("POST", "/v1/cluster/leave"),
    ("DELETE", "/v1/cluster/nodes/{node}"),
    ("POST", "/v1/cluster/nodes/{node}/drain"),
];

/// An export rule as the API writes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiRule {
    #[serde(rename = "match")]
    pub matcher: String,
    #[serde(default = "rw")]
    pub access: String,
    #[serde(default)]
    pub squash: Squash,
    #[serde(default = "nobody")]
    pub anonuid: u32,
    #[serde(default = "nobody")]
    pub anongid: u32,
}

fn rw() -> String {
    "rw".into()
}

fn nobody() -> u32 {
    65534
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiExport {
    pub path: String,
    #[serde(default)]
    pub id: Option<u32>,
    pub clients: Vec<ApiRule>,
    /// Copies of each file made in the export (1-3); absent or null: the cluster's default.
    /// Any JSON number here, checked by [`export_config`] so that the error names the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<Value>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplicationBody {
    /// A number or null; required (`{}` is refused rather than taken for null). Checked by
    /// [`replication_of`], so that a wrong value names the field.
    replication: Value,
}

/// An API replication factor: null (the default) or 1 to 3; the error names the field.
fn replication_of(v: &Value) -> Result<Option<u8>, String> {
    if v.is_null() {
        return Ok(None);
    }
    let r = v
        .as_i64()
        .and_then(|n| u8::try_from(n).ok())
        .ok_or_else(|| format!("replication: {v} is not 1, 2, 3 or null"))?;
    crate::export::check_replication(Some(r))?;
    Ok(Some(r))
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TierBody {
    tier: TierConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeBody {
    node: Option<u64>,
}

/// What the API changed, persisted across restarts.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AdminState {
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
    #[serde(default)]
    pub exports: Vec<ApiExport>,
    /// Tier changes of config-file targets.
    #[serde(default)]
    pub tiers: BTreeMap<String, TierConfig>,
}

impl AdminState {
    pub fn load(path: &Path) -> std::io::Result<AdminState> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                std::io::Error::other(format!("{}: {e}; fix or remove the file", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AdminState::default()),
            Err(e) => Err(e),
        }
    }

    fn save(&self, path: &Path) -> std::io::Result<()> {
        let doc = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::fsutil::replace_file(path, &doc, None)
    }
}

/// The id of an API export, without checking its rules (which may look up host names).
fn api_export_id(e: &ApiExport) -> u32 {
    ExportConfig {
        path: crate::export::normalize_path(&e.path),
        id: e.id,
        clients: Vec::new(),
        replication: None,
        is_builtin_default: false,
    }
    .export_id()
}

/// Converts an API export into the config form (checks the path and every rule).
pub fn export_config(e: &ApiExport) -> Result<ExportConfig, String> {
    let mut clients = Vec::new();
    for (j, r) in e.clients.iter().enumerate() {
        let read_only = match r.access.as_str() {
            "rw" => false,
            "ro" => true,
            other => {
                return Err(format!(
                    "clients[{j}].access: {other:?}: use \"rw\" or \"ro\""
                ))
            }
        };
        let matcher =
            ClientMatch::parse(&r.matcher).map_err(|m| format!("clients[{j}].match: {m}"))?;
        clients.push(ClientRule {
            matcher,
            read_only,
            squash: r.squash,
            anonuid: r.anonuid,
            anongid: r.anongid,
        });
    }
    let replication = replication_of(e.replication.as_ref().unwrap_or(&Value::Null))?;
    let mut c = ExportConfig {
        path: e.path.clone(),
        id: e.id,
        clients,
        replication,
        is_builtin_default: false,
    };
    c.validate(0)
        .map_err(|err| err.0.replace("export[0].", ""))?;
    Ok(c)
}

fn rule_json(r: &ClientRule) -> Value {
    let matcher = match &r.matcher {
        ClientMatch::Any => "*".to_string(),
        ClientMatch::Cidr { net, prefix } => format!("{net}/{prefix}"),
        ClientMatch::Host { name, .. } => name.clone(),
    };
    json!({
        "match": matcher,
        "access": if r.read_only { "ro" } else { "rw" },
        "squash": r.squash,
        "anonuid": r.anonuid,
        "anongid": r.anongid,
    })
}

/// The key of the cluster's settings document in the metadata log.
pub const SETTINGS_DOC: &[u8] = b"cluster/admin";

/// How often a node of a cluster reads the settings document to apply other nodes' changes.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// How often a node tries again what it could not apply of the settings.
const RETRY_EVERY: Duration = Duration::from_secs(30);

/// Where the admin API keeps its changes.
#[derive(Clone, Debug)]
pub enum Book {
    /// This node's own file (no metadata log: a cluster of one that cannot grow).
    File(PathBuf),
    /// The document [`SETTINGS_DOC`] in the metadata log, shared by every node. A change is
    /// a put at the next version, read back: when two nodes change the settings at once,
    /// the log's order picks one and the other is told to retry (409).
    Log,
}

impl Book {
    fn name(&self) -> &'static str {
        match self {
            Book::File(_) => "file",
            Book::Log => "log",
        }
    }
}

/// Everything the admin API needs from a running server.
pub struct Admin<S> {
    /// The cluster's membership (`None`: the metadata is not in the log, a cluster of one).
    pub members: Option<Arc<dyn ha::members::ClusterAdmin>>,
    /// This node's floating-target ownership loop, once started (none without floating
    /// targets).
    pub floating: Arc<std::sync::OnceLock<Arc<crate::ops::failover::Floating>>>,
    pub server: Arc<Server<S>>,
    pub targets: Arc<TargetTable>,
    pub limits: ConnLimits,
    /// Bound NFS listener addresses: a target address on a covered port needs no listener.
    pub nfs_bound: Vec<SocketAddr>,
    pub token: String,
    pub book: Book,
    /// Held across a change and across applying the book, so that this node's changes and
    /// its following of other nodes' changes never interleave.
    pub changes: tokio::sync::Mutex<()>,
    /// The version of the book this node has applied (0: none yet, or a file).
    pub applied: std::sync::atomic::AtomicU64,
    /// Ids of exports defined by the config file (the API may not delete them).
    pub config_exports: Vec<u32>,
    pub data_dir: PathBuf,
    pub store_kind: &'static str,
    pub started: Instant,
}

/// The admin token: `path`'s content, created (32 hex characters, mode 0600) if missing.
pub fn load_or_create_token(path: &Path) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
    let token: String = b.iter().map(|x| format!("{x:02x}")).collect();
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    Ok(token)
}

/// Listens on `target`'s addresses that no NFS listener (`nfs_bound`) covers. `elsewhere`: an
/// address that is not this node's (EADDRNOTAVAIL) is left to the node that holds it.
pub async fn listen_on<S: Store>(
    server: &Arc<Server<S>>,
    limits: &ConnLimits,
    targets: &Arc<TargetTable>,
    nfs_bound: &[SocketAddr],
    target: &Arc<Target>,
    elsewhere: bool,
) -> Result<(), String> {
    let covered = |a: &SocketAddr| {
        nfs_bound
            .iter()
            .any(|b| b.port() == a.port() && (b.ip().is_unspecified() || b.ip() == a.ip()))
    };
    for a in target.listen.iter().filter(|a| !covered(a)) {
        let l = match TcpListener::bind(a).await {
            Ok(l) => l,
            Err(e) if elsewhere && e.kind() == std::io::ErrorKind::AddrNotAvailable => {
                tracing::debug!(target = %target.name, %a, "address not on this node");
                continue;
            }
            Err(e) => return Err(format!("cannot listen on {a}: {e}")),
        };
        let task = tokio::spawn(crate::transport::serve_tcp(
            server.clone(),
            l,
            limits.clone(),
            targets.clone(),
        ));
        target
            .listeners
            .lock()
            .expect("listeners lock poisoned")
            .push(task.abort_handle());
    }
    Ok(())
}

/// A parsed request.
struct Request {
    method: String,
    path: String,
    query: String,
    token: Option<String>,
    body: Vec<u8>,
}

/// A response: status and JSON body (None for 204).
struct Response(u16, Option<Value>);

/// The methods `ROUTES` allows on a concrete path (for 405's Allow header).
fn allowed_methods(path: &str) -> Vec<&'static str> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    ROUTES
        .iter()
        .filter(|(_, template)| {
            let t: Vec<&str> = template.split('/').collect();
            t.len() == segs.len()
                && t.iter()
                    .zip(&segs)
                    .all(|(a, b)| a.starts_with('{') || a == b)
        })
        .map(|(m, _)| *m)
        .collect()
}

fn error(status: u16, msg: impl Into<String>) -> Response {
    Response(status, Some(json!({ "error": msg.into() })))
}

/// Serves the admin API on `listener` until the task is dropped.
pub async fn serve<S: Store>(
    admin: Arc<Admin<S>>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (admin, tls) = (admin.clone(), tls.clone());
        tokio::spawn(async move {
            let served = tokio::time::timeout(REQUEST_TIMEOUT, async move {
                match tls {
                    None => one(admin, stream).await,
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(s) => one(admin, s).await,
                        Err(e) => tracing::debug!(%peer, "admin TLS handshake failed: {e}"),
                    },
                }
            });
            if let Err(e) = served.await {
                tracing::debug!(%peer, "admin request timed out: {e}");
            }
        });
    }
}

async fn one<S: Store, T: AsyncRead + AsyncWrite + Unpin>(admin: Arc<Admin<S>>, mut stream: T) {
    let (response, allow) = match read_request(&mut stream).await {
        Ok(req) => {
            let allow = allowed_methods(&req.path).join(", ");
            // In a task of its own: when the request's time runs out, a change already
            // under way (listeners bound, document saved) still finishes.
            let handled = tokio::spawn(async move { admin.handle(req).await });
            let response = handled
                .await
                .unwrap_or_else(|e| error(500, format!("the request failed: {e}")));
            (response, allow)
        }
        Err(resp) => (resp, String::new()),
    };
    let allow = if response.0 == 405 {
        format!("Allow: {allow}\r\n")
    } else {
        String::new()
    };
    let (status, body) = match response.1 {
        Some(v) => (
            response.0,
            serde_json::to_vec_pretty(&v).unwrap_or_default(),
        ),
        None => (response.0, Vec::new()),
    };
    let reason = match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&body).await;
    let _ = stream.shutdown().await;
}

async fn read_request<T: AsyncRead + Unpin>(stream: &mut T) -> Result<Request, Response> {
    let mut buf = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > HEAD_MAX {
            return Err(error(431, "request head over 8 KiB"));
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(error(400, "incomplete request")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(target)) = (first.next(), first.next()) else {
        return Err(error(400, "malformed request line"));
    };
    let (mut length, mut token) = (0usize, None);
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                length = v
                    .trim()
                    .parse()
                    .map_err(|_| error(400, "bad Content-Length"))?
            }
            "authorization" => {
                token = v
                    .trim()
                    .strip_prefix("Bearer ")
                    .map(|t| t.trim().to_string())
            }
            _ => {}
        }
    }
    if length > BODY_MAX {
        return Err(error(413, "body over 1 MiB"));
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = vec![0u8; (length - body.len()).min(64 * 1024)];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(error(400, "body shorter than Content-Length")),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(length);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        token,
        body,
    })
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| error(400, format!("invalid JSON body: {e}")))
}

/// Compares without an early exit, so timing reveals nothing about the token.
fn token_matches(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

impl<S: Store> Admin<S> {
    async fn handle(&self, req: Request) -> Response {
        if !req
            .token
            .as_deref()
            .is_some_and(|t| token_matches(t, &self.token))
        {
            return error(401, "missing or wrong token: send Authorization: Bearer <token> (the content of <data_dir>/admin.token)");
        }
        let segs: Vec<&str> = req.path.trim_end_matches('/').split('/').skip(1).collect();
        let m = req.method.as_str();
        let r = match (m, segs.as_slice()) {
            ("GET", ["v1", "status"]) => Ok(Response(200, Some(self.status()))),
            ("GET", ["v1", "targets"]) => Ok(Response(
                200,
                Some(Value::Array(
                    self.targets
                        .list()
                        .iter()
                        .map(|t| self.target_json(t))
                        .collect(),
                )),
            )),
            ("POST", ["v1", "targets"]) => self.create_target(&req.body).await,
            ("GET", ["v1", "targets", name]) => self
                .targets
                .by_name(name)
                .map(|t| Response(200, Some(self.target_json(&t))))
                .ok_or_else(|| error(404, format!("no target named {name:?}"))),
            ("PUT", ["v1", "targets", name, "tier"]) => self.set_tier(name, &req.body).await,
            ("PUT", ["v1", "targets", name, "node"]) => self.move_target(name, &req.body).await,
            ("DELETE", ["v1", "targets", name]) => self.delete_target(name).await,
            ("GET", ["v1", "exports"]) => Ok(Response(200, Some(self.exports_json()))),
            ("POST", ["v1", "exports"]) => self.create_export(&req.body).await,
            ("DELETE", ["v1", "exports", id]) => self.delete_export(id).await,
            ("PUT", ["v1", "exports", id, "replication"]) => {
                self.set_replication(id, &req.body).await
            }
            ("GET", ["v1", "residency"]) => self.residency(&req.query).await,
            ("GET", ["v1", "cluster"]) => Ok(self.cluster_status().await),
            ("POST", ["v1", "cluster", "leave"]) => self.remove_member(None).await,
            ("POST", ["v1", "cluster", "nodes", node, "drain"]) => match node.parse::<u64>() {
                Ok(n) => self.drain(n).await,
                Err(_) => Err(error(400, format!("{node:?} is not a node id"))),
            },
            ("DELETE", ["v1", "cluster", "nodes", node]) => match node.parse::<u64>() {
                Ok(n) => self.remove_member(Some(n)).await,
                Err(_) => Err(error(400, format!("{node:?} is not a node id"))),
            },
            (_, ["v1", "status" | "targets" | "exports" | "residency" | "cluster", ..]) => {
                Err(error(405, format!("{m} is not allowed on {}", req.path)))
            }
            _ => Err(error(
                404,
                format!("no route {} (see docs/admin-api.md)", req.path),
            )),
        };
        r.unwrap_or_else(|e| e)
    }

    async fn cluster_status(&self) -> Response {
        match &self.members {
            Some(m) => Response(200, Some(m.status().await)),
            None => {
                let identity = &self.server.state.identity;
                Response(
                    200,
                    Some(json!({
                        "node": identity.node_id,
                        "membership": "single",
                        "log": null,
                        "members": [{
                            "node": identity.node_id, "addr": null, "role": "voter",
                            "health": "up", "leaving": false, "log_lag": null,
                        }],
                        "registry_error": null,
                    })),
                )
            }
        }
    }

    /// `leave` (`node` is `None`: this node) or `remove NODE`: recorded, then done by the
    /// log's leader (202).
    async fn remove_member(&self, node: Option<u64>) -> Result<Response, Response> {
        let Some(m) = &self.members else {
            return Err(error(
                409,
                "this node keeps its metadata outside the metadata log (cluster.metadata = \
                 \"local\"): it is a cluster of one, with no members to change",
            ));
        };
        let node = node.unwrap_or(self.server.state.identity.node_id);
        match m.remove(node).await {
            Ok(()) => Ok(Response(
                202,
                Some(json!({ "node": node, "leaving": true })),
            )),
            Err(
                e @ (ha::members::MemberError::Static(_) | ha::members::MemberError::LastVoter(_)),
            ) => Err(error(409, e.to_string())),
            Err(e @ ha::members::MemberError::Unknown(_)) => Err(error(404, e.to_string())),
            Err(e @ ha::members::MemberError::Unavailable(_)) => Err(error(503, e.to_string())),
        }
    }

    fn target_json(&self, t: &Target) -> Value {
        let tier = t.pacer.tier();
        json!({
            "name": t.name,
            "listen": t.listen,
            "exports": t.exports,
            "tier": *t.tier_config.lock().expect("tier lock poisoned"),
            "source": t.source,
            "connections": t.connections.load(std::sync::atomic::Ordering::Relaxed),
            "floating": t.floating,
            "owner": (*t.owner.lock().expect("owner lock poisoned"))
                .map(|(node, epoch)| json!({ "node": node, "epoch": epoch })),
            "preferred_node": self.floating.get().and_then(|f| f.preferred_of(&t.name)),
            "rate_bytes_per_second": {
                "read": tier.read.unwrap_or(0),
                "write": tier.write.unwrap_or(0),
                "total": tier.total.unwrap_or(0),
            },
        })
    }

    fn status(&self) -> Value {
        let targets = self.targets.list();
        let connections: usize = targets
            .iter()
            .chain(std::iter::once(&self.targets.default))
            .map(|t| t.connections.load(std::sync::atomic::Ordering::Relaxed))
            .sum();
        let now = std::time::Instant::now();
        let state = &self.server.state;
        let summary = state.summary(now);
        let node = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "node": node,
            "uptime_seconds": self.started.elapsed().as_secs(),
            "data_dir": self.data_dir,
            "store": self.store_kind,
            "connections": connections,
            "clients": self.targets.client_count(),
            "targets": targets.iter().map(|t| self.target_json(t)).collect::<Vec<_>>(),
            "exports": self.server.exports().iter().count(),
            "nlm": { "grace": summary.grace, "state": state.nlm.state, "locks": summary.nlm_locks },
            "nfs4": {
                "clients": summary.nfs4_clients,
                "sessions": summary.nfs4_sessions,
                "grace": summary.grace,
                "clients_to_reclaim": summary.nfs4_clients_to_reclaim,
                "state_ids": summary.nfs4_state_ids,
                "lease_seconds": state.nfs4.lease.as_secs(),
            },
            "cluster": {
                "id": state.identity.cluster_id,
                "node_id": state.identity.node_id,
                "epoch": state.identity.epoch,
                "metadata_log": self.server.store.stats().into_iter()
                    .map(|(k, v)| (k.to_string(), json!(v)))
                    .collect::<serde_json::Map<String, Value>>(),
            },
            "data_store": self.server.store.data_stats().into_iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect::<serde_json::Map<String, Value>>(),
            "settings": {
                "kept_in": self.book.name(),
                "version": self.applied.load(std::sync::atomic::Ordering::Relaxed),
            },
            "throughput_bytes": {
                "read": self.server.bytes_read.load(std::sync::atomic::Ordering::Relaxed),
                "write": self.server.bytes_written.load(std::sync::atomic::Ordering::Relaxed),
            },
        })
    }

    /// The book as saved: its version (0 for a file, or no document yet) and content.
    pub async fn read_book(&self) -> Result<(u64, AdminState), String> {
        match &self.book {
            Book::File(path) => AdminState::load(path)
                .map(|st| (0, st))
                .map_err(|e| e.to_string()),
            Book::Log => match self.server.store.doc(SETTINGS_DOC).await {
                Ok(None) => Ok((0, AdminState::default())),
                Ok(Some((version, body))) => serde_json::from_slice(&body)
                    .map(|st| (version, st))
                    .map_err(|e| format!("the cluster's settings document is damaged: {e}")),
                Err(e) => Err(format!("cannot read the cluster's settings: {e}")),
            },
        }
    }

    /// Saves `state` as the successor of `version` (read by [`Admin::read_book`]) and returns
    /// the new version. In the log, another node's change saved at the same version wins: 409.
    async fn write_book(&self, version: u64, state: &AdminState) -> Result<u64, Response> {
        match &self.book {
            Book::File(path) => {
                state
                    .save(path)
                    .map_err(|e| error(500, format!("change not saved: {e}")))?;
                Ok(0)
            }
            Book::Log => {
                let body = serde_json::to_vec(state)
                    .map_err(|e| error(500, format!("change not saved: {e}")))?;
                let next = version + 1;
                if let Err(e) = self
                    .server
                    .store
                    .put_doc(SETTINGS_DOC, next, body.clone())
                    .await
                {
                    return Err(error(
                        503,
                        format!(
                            "the change may not have been saved (the metadata log: {e}); list \
                             to see whether it was, then retry"
                        ),
                    ));
                }
                match self.server.store.doc(SETTINGS_DOC).await {
                    Ok(Some((v, b))) if v == next && b == body => Ok(next),
                    Ok(Some((v, _))) if v == next => Err(error(
                        409,
                        "another change to the cluster's settings was saved at the same moment; \
                         nothing was changed: retry",
                    )),
                    // Newer already (ours may be under it), or not there: unknown.
                    Ok(_) => Err(error(
                        503,
                        "the change may not have been saved (the settings moved on meanwhile); \
                         list to see whether it was, then retry",
                    )),
                    Err(e) => Err(error(
                        503,
                        format!(
                            "the change may not have been saved (read-back failed: {e}); list \
                             to see whether it was, then retry"
                        ),
                    )),
                }
            }
        }
    }

    /// At start: reads the book (waiting up to a minute for the metadata log), imports an
    /// `admin-state.json` left from a run without the log (`file`), and applies the book.
    pub async fn open(&self, file: &Path) -> Result<(), String> {
        let _held = self.changes.lock().await;
        let since = tokio::time::Instant::now();
        let (mut version, mut st) = loop {
            match self.read_book().await {
                Ok(book) => break book,
                Err(e) if self.is_cluster() && since.elapsed() < Duration::from_secs(60) => {
                    tracing::debug!("settings not readable yet: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e),
            }
        };
        if self.is_cluster() && file.exists() {
            let old = AdminState::load(file).map_err(|e| e.to_string())?;
            let outcome = if version == 0 {
                self.write_book(0, &old).await
            } else {
                Err(error(409, "the cluster has settings of its own"))
            };
            let (suffix, outcome) = match outcome {
                Ok(v) => {
                    (version, st) = (v, old);
                    (
                        "imported",
                        "imported into the cluster's settings".to_string(),
                    )
                }
                Err(Response(409, body)) => {
                    let why = body.map(|b| b["error"].to_string()).unwrap_or_default();
                    ("ignored", format!("not imported ({why}); apply it again through the admin API if it is still wanted"))
                }
                Err(Response(_, body)) => {
                    let why = body.map(|b| b["error"].to_string()).unwrap_or_default();
                    return Err(format!(
                        "{} not imported yet, left in place: {why}",
                        file.display()
                    ));
                }
            };
            let moved = file.with_extension(format!("json.{suffix}"));
            std::fs::rename(file, &moved).map_err(|e| format!("{}: {e}", file.display()))?;
            tracing::warn!(file = %file.display(), moved = %moved.display(), "this node's admin-state.json was {outcome}");
        }
        let problems = self.apply(version, &st).await;
        if !self.is_cluster() && !problems.is_empty() {
            return Err(format!(
                "{}: {}; fix or remove the file",
                file.display(),
                problems.join("; ")
            ));
        }
        Ok(())
    }

    /// Reads the book and applies it (call with [`Admin::changes`] held): the running
    /// targets, tiers and exports catch up with other nodes' changes before this node checks
    /// a change of its own against them.
    async fn catch_up(&self) -> Result<(u64, AdminState), Response> {
        let (version, st) = self.read_book().await.map_err(|e| error(503, e))?;
        let _ = self.apply(version, &st).await;
        Ok((version, st))
    }

    /// Makes the running targets, tiers and exports what `st` says, leaving the config
    /// file's own alone, and returns what could not be applied here (each also logged): an
    /// address that cannot be bound, a name or id that this node's config file already uses,
    /// an export whose directory cannot be made. In a cluster these are this node's problems
    /// and the other nodes apply the settings all the same; a node without the log refuses
    /// to start with them, as before the settings could be the cluster's.
    pub async fn apply(&self, version: u64, st: &AdminState) -> Vec<String> {
        let mut problems = Vec::new();
        let mut problem = |p: String| {
            tracing::warn!("settings: {p}");
            problems.push(p);
        };
        let tier_of = |t: &Target| t.tier_config.lock().expect("tier lock poisoned").clone();
        // Tier changes of config-file targets; an API target's tier is in its own entry.
        for (name, tier) in &st.tiers {
            match self.targets.by_name(name) {
                Some(t) if t.source == Source::Config && tier_of(&t) != *tier => {
                    self.retier(&t, tier)
                }
                Some(_) => {}
                None => tracing::debug!(target = %name, "a tier for a target this node lacks"),
            }
        }
        for cfg in &st.targets {
            match self.targets.by_name(&cfg.name) {
                Some(t) if t.source == Source::Config => problem(format!(
                    "target {:?}: this node's config file defines a target of that name, which wins here",
                    cfg.name
                )),
                Some(t) if tier_of(&t) != cfg.tier => self.retier(&t, &cfg.tier),
                Some(_) => {}
                None => {
                    let t = match Target::new(cfg, Source::Api) {
                        Ok(t) => t,
                        Err(e) => {
                            problem(format!("target {:?} not served: {e}", cfg.name));
                            continue;
                        }
                    };
                    if let Err(e) = self.start_listeners(&t, self.is_cluster()).await {
                        t.stop_listeners();
                        problem(format!(
                            "target {:?} served only where other listeners cover its addresses: {e}",
                            cfg.name
                        ));
                    }
                    match self.targets.add(t.clone()) {
                        Ok(()) => {
                            crate::ops::run::publish_rates(&self.server.metrics, &t);
                            tracing::info!(target = %cfg.name, "mount target added from the settings");
                        }
                        Err(e) => {
                            t.stop_listeners();
                            problem(format!("target {:?} not served: {e}", cfg.name));
                        }
                    }
                }
            }
        }
        for t in self.targets.list() {
            if t.source == Source::Api && !st.targets.iter().any(|c| c.name == t.name) {
                self.targets.remove(&t.name);
                tracing::info!(target = %t.name, "mount target removed from the settings");
            }
        }
        let wanted: Vec<u32> = st.exports.iter().map(api_export_id).collect();
        for e in &st.exports {
            let id = api_export_id(e);
            if self.config_exports.contains(&id) {
                problem(format!(
                    "export {:?}: id {id} is a config-file export's on this node; change one of them",
                    e.path
                ));
                continue;
            }
            if let Some(served) = self.server.exports().by_id(id).cloned() {
                // The factor itself is metadata, set on the root by the node that took the
                // change (`set_replication`): a node following the settings only shows it, so
                // that one that read them just before a change cannot write the old back.
                // (Not `export_config`: it resolves the rules' host names.)
                let wanted = e
                    .replication
                    .as_ref()
                    .and_then(|v| replication_of(v).ok().flatten());
                if served.replication != wanted {
                    let mut w = self.server.exports.write().expect("exports lock poisoned");
                    *w = Arc::new(w.replaced(crate::export::Export {
                        replication: wanted,
                        ..(*served).clone()
                    }));
                }
                continue;
            }
            let cfg = match export_config(e) {
                Ok(c) => c,
                Err(err) => {
                    problem(format!("export {:?} not served: {err}", e.path));
                    continue;
                }
            };
            if self.server.exports().by_path(&cfg.path).is_some() {
                problem(format!(
                    "export {:?} not served: this node exports that path already",
                    cfg.path
                ));
                continue;
            }
            match crate::ops::run::resolve_export(&cfg, &self.server.store).await {
                Ok(export) => {
                    let mut w = self.server.exports.write().expect("exports lock poisoned");
                    if w.by_id(id).is_none() {
                        *w = Arc::new(w.with(export));
                        tracing::info!(export = %cfg.path, id, "export added from the settings");
                    }
                }
                Err(err) => problem(format!("export {:?} not served yet: {}", cfg.path, err.0)),
            }
        }
        let gone: Vec<u32> = self
            .server
            .exports()
            .iter()
            .map(|e| e.id)
            .filter(|id| !self.config_exports.contains(id) && !wanted.contains(id))
            .collect();
        for id in gone {
            let mut w = self.server.exports.write().expect("exports lock poisoned");
            *w = Arc::new(w.without(id));
            tracing::info!(
                id,
                "export removed from the settings; its handles are now stale"
            );
        }
        self.applied
            .store(version, std::sync::atomic::Ordering::Relaxed);
        problems
    }

    fn retier(&self, t: &Target, tier: &TierConfig) {
        match t.set_tier(tier) {
            Ok(()) => {
                crate::ops::run::publish_rates(&self.server.metrics, t);
                tracing::info!(target = %t.name, ?tier, "tier changed");
            }
            Err(e) => tracing::warn!(target = %t.name, "tier not applied: {e}"),
        }
    }

    /// Applies the cluster's settings as other nodes change them: reads the book every
    /// [`FOLLOW_EVERY`] and applies a new version. Runs for the life of the server.
    pub async fn follow(self: Arc<Self>) {
        let mut failing = false;
        // What could not be applied is tried again now and then (an address may appear).
        let mut retry_at = None;
        loop {
            tokio::time::sleep(FOLLOW_EVERY).await;
            let _held = self.changes.lock().await;
            match self.read_book().await {
                Ok((version, st)) => {
                    failing = false;
                    let now = tokio::time::Instant::now();
                    let moved = version != self.applied.load(std::sync::atomic::Ordering::Relaxed);
                    if moved || retry_at.is_some_and(|at| now >= at) {
                        let problems = self.apply(version, &st).await;
                        retry_at = (!problems.is_empty()).then(|| now + RETRY_EVERY);
                    }
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!("settings not followed for now: {e}");
                }
                Err(_) => {}
            }
        }
    }

    async fn create_target(&self, body: &[u8]) -> Result<Response, Response> {
        let cfg: TargetConfig = parse_body(body)?;
        crate::qos::check_target_name(&cfg.name).map_err(|e| error(400, format!("name: {e}")))?;
        if cfg.floating {
            return Err(error(
                400,
                "floating: floating targets are defined in every node's config file \
                 ([[target]] floating = true), not through the API yet",
            ));
        }
        if cfg.listen.is_empty() {
            return Err(error(
                400,
                "listen: give at least one address, e.g. [\"10.0.0.5:2049\"]",
            ));
        }
        cfg.tier
            .resolve()
            .map_err(|e| error(400, format!("tier: {e}")))?;
        let _held = self.changes.lock().await;
        let (version, mut st) = self.catch_up().await?;
        // Refuse a taken name before touching any socket: a refused request changes nothing.
        if self.targets.by_name(&cfg.name).is_some()
            || cfg.name == "default"
            || st.targets.iter().any(|t| t.name == cfg.name)
        {
            return Err(error(
                409,
                format!("name: a target named {:?} exists", cfg.name),
            ));
        }
        let target = Target::new(&cfg, Source::Api).map_err(|e| error(400, e))?;
        // In a cluster, an address another node holds is served there.
        if let Err(e) = self.start_listeners(&target, self.is_cluster()).await {
            target.stop_listeners();
            // Prefixed with the field, as the 400s are (the Terraform provider underlines it).
            return Err(error(409, format!("listen: {e}")));
        }
        st.tiers.remove(&cfg.name);
        st.targets.push(cfg);
        let version = match self.write_book(version, &st).await {
            Ok(v) => v,
            Err(e) => {
                target.stop_listeners();
                return Err(e);
            }
        };
        if let Err(e) = self.targets.add(target.clone()) {
            target.stop_listeners();
            return Err(error(409, e));
        }
        crate::ops::run::publish_rates(&self.server.metrics, &target);
        let _ = self.apply(version, &st).await;
        tracing::info!(target = %target.name, "mount target created by the admin API");
        Ok(Response(201, Some(self.target_json(&target))))
    }

    fn is_cluster(&self) -> bool {
        matches!(self.book, Book::Log)
    }

    /// Listens on a target's addresses that no NFS listener covers. `elsewhere`: an address
    /// that is not this node's (EADDRNOTAVAIL) is left to the node that holds it. A floating
    /// target is listened on only while this node owns it (`ops::failover`).
    pub async fn start_listeners(
        &self,
        target: &Arc<Target>,
        elsewhere: bool,
    ) -> Result<(), String> {
        if target.floating {
            return Ok(());
        }
        listen_on(
            &self.server,
            &self.limits,
            &self.targets,
            &self.nfs_bound,
            target,
            elsewhere,
        )
        .await
    }

    async fn set_tier(&self, name: &str, body: &[u8]) -> Result<Response, Response> {
        let b: TierBody = parse_body(body)?;
        b.tier
            .resolve()
            .map_err(|e| error(400, format!("tier: {e}")))?;
        let _held = self.changes.lock().await;
        let (version, mut st) = self.catch_up().await?;
        let t = self
            .targets
            .by_name(name)
            .ok_or_else(|| error(404, format!("no target named {name:?}")))?;
        match (t.source, st.targets.iter_mut().find(|c| c.name == name)) {
            (Source::Api, Some(c)) => c.tier = b.tier.clone(),
            _ => {
                st.tiers.insert(name.to_string(), b.tier.clone());
            }
        }
        let version = self.write_book(version, &st).await?;
        let _ = self.apply(version, &st).await;
        tracing::info!(target = %name, tier = ?b.tier, "tier changed by the admin API");
        Ok(Response(200, Some(self.target_json(&t))))
    }

    /// A planned move: the floating target's preferred node (`{"node": N}`), or none
    /// (`{"node": null}`). Answers 202: the owner hands the target over at its next read of
    /// etcd (within a second), and the new owner brings the addresses up.
    async fn move_target(&self, name: &str, body: &[u8]) -> Result<Response, Response> {
        use crate::ops::failover::PreferError;
        let b: NodeBody = parse_body(body)?;
        let t = self
            .targets
            .by_name(name)
            .ok_or_else(|| error(404, format!("no target named {name:?}")))?;
        if b.node == Some(0) {
            return Err(error(400, "node: node ids start at 1"));
        }
        let floating = self.floating.get().filter(|_| t.floating).ok_or_else(|| {
            error(
                400,
                format!(
                    "node: target {name:?} is not floating; only a floating target \
                     ([[target]] floating = true) moves between nodes"
                ),
            )
        })?;
        floating.prefer(name, b.node).await.map_err(|e| match e {
            PreferError::NotFloating => error(
                400,
                format!("node: target {name:?} is not floating on this node"),
            ),
            PreferError::NodeNotLive(live) => error(
                409,
                format!(
                    "node: node {} is not live (the live nodes: {live:?})",
                    b.node.unwrap_or(0)
                ),
            ),
            PreferError::NodeCannotServe => error(
                409,
                format!(
                    "node: node {} does not serve target {name:?} (its config has no floating \
                     [[target]] of that name)",
                    b.node.unwrap_or(0)
                ),
            ),
            PreferError::NodeDrained => error(
                409,
                format!(
                    "node: node {} is drained (sluice node drain); it takes targets again once \
                     it has restarted",
                    b.node.unwrap_or(0)
                ),
            ),
            PreferError::Etcd(e) => error(503, format!("the preferred node was not set: {e}")),
        })?;
        Ok(Response(202, Some(self.target_json(&t))))
    }

    /// `sluice node drain`: every floating target of `node` gets another preferred node.
    async fn drain(&self, node: u64) -> Result<Response, Response> {
        let floating = self.floating.get().ok_or_else(|| {
            error(
                400,
                "node: this node has no floating targets ([[target]] floating = true); only \
                 those move between nodes",
            )
        })?;
        let (moves, stuck) = floating.drain(node).await.map_err(|e| {
            error(
                503,
                format!("the node was not drained (some targets may have moved): {e}"),
            )
        })?;
        let moves: Vec<Value> = moves
            .iter()
            .map(|(t, n)| json!({"target": t, "node": n}))
            .collect();
        Ok(Response(
            202,
            Some(json!({"node": node, "moves": moves, "stuck": stuck})),
        ))
    }

    async fn delete_target(&self, name: &str) -> Result<Response, Response> {
        let _held = self.changes.lock().await;
        let (version, mut st) = self.catch_up().await?;
        let t = self
            .targets
            .by_name(name)
            .ok_or_else(|| error(404, format!("no target named {name:?}")))?;
        if t.source == Source::Config {
            return Err(error(
                409,
                format!(
                    "target {name:?} is defined in the config file: remove it there and restart"
                ),
            ));
        }
        st.targets.retain(|c| c.name != name);
        let version = self.write_book(version, &st).await?;
        let _ = self.apply(version, &st).await;
        tracing::info!(target = %name, "mount target deleted by the admin API");
        Ok(Response(204, None))
    }

    fn exports_json(&self) -> Value {
        Value::Array(
            self.server
                .exports()
                .iter()
                .map(|e| {
                    json!({
                        "id": e.id,
                        "path": e.path,
                        "source": if self.config_exports.contains(&e.id) { "config" } else { "api" },
                        "clients": e.rules.iter().map(rule_json).collect::<Vec<_>>(),
                        "replication": e.replication,
                    })
                })
                .collect(),
        )
    }

    async fn create_export(&self, body: &[u8]) -> Result<Response, Response> {
        let api: ApiExport = parse_body(body)?;
        let cfg = export_config(&api).map_err(|e| error(400, e))?;
        let id = cfg.export_id();
        let _held = self.changes.lock().await;
        let (version, mut st) = self.catch_up().await?;
        {
            let table = self.server.exports();
            let saved = st.exports.iter().any(|e| api_export_id(e) == id);
            if saved || table.by_id(id).is_some() || table.by_path(&cfg.path).is_some() {
                return Err(error(
                    409,
                    format!("export id {id} or path {:?} is taken", cfg.path),
                ));
            }
        }
        // The directory first: an export whose path cannot be made is refused, not saved.
        crate::ops::run::resolve_export(&cfg, &self.server.store)
            .await
            .map_err(|e| error(500, e.0))?;
        st.exports.push(ApiExport {
            id: Some(id),
            ..api
        });
        let version = self.write_book(version, &st).await?;
        let _ = self.apply(version, &st).await;
        tracing::info!(export = %cfg.path, id, "export added by the admin API");
        let v = self.exports_json();
        let created = v
            .as_array()
            .and_then(|a| a.iter().find(|e| e["id"] == json!(id)).cloned());
        match created {
            Some(c) => Ok(Response(201, Some(c))),
            None => Err(error(
                500,
                format!("export {id} was saved but is not served here: see the server's log"),
            )),
        }
    }

    /// `PUT /v1/exports/{id}/replication`: the copies files made in the export from now on
    /// get (`null`: the cluster's default). Files made before keep theirs.
    async fn set_replication(&self, id: &str, body: &[u8]) -> Result<Response, Response> {
        let id: u32 = id
            .parse()
            .map_err(|_| error(400, format!("{id:?} is not an export id")))?;
        let b: ReplicationBody = parse_body(body)?;
        let replication = replication_of(&b.replication).map_err(|e| error(400, e))?;
        let _held = self.changes.lock().await;
        let (version, mut st) = self.catch_up().await?;
        let Some(served) = self.server.exports().by_id(id).cloned() else {
            return Err(error(404, format!("no export with id {id}")));
        };
        if self.config_exports.contains(&id) {
            return Err(error(
                409,
                format!(
                    "export {id} is defined in the config file: set replication there and restart"
                ),
            ));
        }
        let saved = st
            .exports
            .iter_mut()
            .find(|e| api_export_id(e) == id)
            .ok_or_else(|| error(404, format!("no export with id {id} in the settings")))?;
        saved.replication = replication.map(|r| json!(r));
        // The factor on the root first, set by this node alone (see `apply`), then the
        // settings; if they cannot be saved, the root gets its factor back.
        let set = |replication| {
            let store = &self.server.store;
            crate::ops::run::set_export_replication(&served.path, replication, store, served.root)
        };
        set(replication).await.map_err(|e| error(500, e.0))?;
        let version = match self.write_book(version, &st).await {
            Ok(v) => v,
            Err(refused) => {
                if let Err(e) = set(served.replication).await {
                    tracing::warn!(id, error = %e.0, "the export's replication factor not set back");
                }
                return Err(refused);
            }
        };
        let problems = self.apply(version, &st).await;
        let v = self.exports_json();
        let changed = v
            .as_array()
            .and_then(|a| a.iter().find(|e| e["id"] == json!(id)).cloned())
            .filter(|e| e["replication"] == json!(replication));
        match changed {
            Some(e) => {
                tracing::info!(id, replication = ?replication, "export's replication set by the admin API");
                Ok(Response(200, Some(e)))
            }
            None => Err(error(
                500,
                format!(
                    "the replication of export {id} was saved but not applied here: {}",
                    problems.join("; ")
                ),
            )),
        }
    }

    async fn delete_export(&self, id: &str) -> Result<Response, Response> {
        let id: u32 = id
            .parse()
            .map_err(|_| error(400, format!("{id:?} is not an export id")))?;
        let _held = self.changes.lock().await;
        let (version, mut st) = self.catch_up().await?;
        if self.server.exports().by_id(id).is_none() {
            return Err(error(404, format!("no export with id {id}")));
        }
        if self.config_exports.contains(&id) {
            return Err(error(
                409,
                format!("export {id} is defined in the config file: remove it there and restart"),
            ));
        }
        st.exports.retain(|e| api_export_id(e) != id);
        let root = self.server.exports().by_id(id).map(|e| e.root);
        let version = self.write_book(version, &st).await?;
        let _ = self.apply(version, &st).await;
        // The directory stays, without the export's factor: files made there later (through
        // an export above it) take that export's.
        if let Some(root) = root {
            if let Err(e) = self.server.store.set_replication(root, None).await {
                tracing::warn!(id, error = %e, "the removed export's replication factor stays on its directory");
            }
        }
        tracing::info!(
            id,
            "export removed by the admin API; its handles are now stale"
        );
        Ok(Response(204, None))
    }

    async fn residency(&self, query: &str) -> Result<Response, Response> {
        let path = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("path="))
            .map(percent_decode)
            .ok_or_else(|| error(400, "give ?path=/a/b (a path inside the store)"))?;
        let root = Cred::root();
        let mut id = self.server.store.root();
        for c in path.split('/').filter(|c| !c.is_empty()) {
            id = match self.server.store.lookup(&root, id, c.as_bytes()).await {
                Ok(a) => a.id,
                Err(
                    backend::Error::NotFound
                    | backend::Error::NotDir
                    | backend::Error::NameTooLong
                    | backend::Error::Invalid,
                ) => {
                    return Err(error(
                        404,
                        format!("{path}: no such file ({c:?} is missing)"),
                    ))
                }
                Err(e) => return Err(error(500, format!("{path}: {e}"))),
            };
        }
        let attr = self
            .server
            .store
            .getattr(id)
            .await
            .map_err(|e| error(500, format!("{path}: {e}")))?;
        let r = match self.server.store.residency(id).await {
            Ok(r) => r,
            Err(backend::Error::Invalid) => {
                return Err(error(
                    400,
                    format!("{path} is not a regular file: only files hold data"),
                ))
            }
            Err(e) => return Err(error(500, format!("{path}: {e}"))),
        };
        let replication = self
            .server
            .store
            .replication(id)
            .await
            .map_err(|e| error(500, format!("{path}: {e}")))?;
        let node = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        Ok(Response(
            200,
            Some(json!({
                "path": path,
                "inode": id.ino,
                "size": attr.size,
                "node": node,
                "store": r.store,
                "placement": r.placement.as_ref().map(|l| json!({"copies": l.copies, "nodes": l.nodes})),
                "replication": replication,
                "device": r.device,
                "data_file": r.data_file,
                "extents": extents_json(&r.extents),
                "copies": r.copies.iter().map(|c| match &c.found {
                    Ok(h) => json!({
                        "node": c.node,
                        "store": h.store,
                        "device": h.device,
                        "data_file": h.data_file,
                        "extents": extents_json(&h.extents),
                    }),
                    Err(why) => json!({"node": c.node, "error": why}),
                }).collect::<Vec<_>>(),
            })),
        ))
    }
}

fn extents_json(extents: &[(u64, u64)]) -> Vec<Value> {
    extents
        .iter()
        .map(|(o, l)| json!({"offset": o, "length": l}))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1..i + 3)) {
            (b'%', Some(h)) => match u8::from_str_radix(&String::from_utf8_lossy(h), 16) {
                Ok(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            (b'+', _) => out.push(b' '),
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abd", "abc"));
        assert!(!token_matches("ab", "abc"));
    }

    #[test]
    fn percent_encoded_paths_decode() {
        assert_eq!(percent_decode("/a%20b/c+d"), "/a b/c d");
        assert_eq!(percent_decode("/100%"), "/100%");
    }

    #[test]
    fn an_api_export_with_a_bad_rule_names_the_rule() {
        let e = ApiExport {
            path: "/x".into(),
            id: None,
            clients: vec![ApiRule {
                matcher: "10.0.0.0/40".into(),
                access: "rw".into(),
                squash: Squash::Root,
                anonuid: 1,
                anongid: 1,
            }],
            replication: None,
        };
        assert!(export_config(&e).unwrap_err().contains("clients[0].match"));
        let e = ApiExport {
            replication: Some(json!(4)),
            clients: Vec::new(),
            ..e
        };
        assert!(export_config(&e)
            .unwrap_err()
            .starts_with("replication: 4 is out of range"));
    }

    #[test]
    fn admin_state_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("admin-state.json");
        assert!(AdminState::load(&p).unwrap().targets.is_empty());
        let mut st = AdminState::default();
        st.tiers.insert("t".into(), TierConfig::Named("1g".into()));
        st.save(&p).unwrap();
        assert_eq!(AdminState::load(&p).unwrap().tiers.len(), 1);
    }

    #[test]
    fn a_token_file_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("admin.token");
        let a = load_or_create_token(&p).unwrap();
        assert_eq!(a.len(), 32);
        assert_eq!(load_or_create_token(&p).unwrap(), a);
    }
}
