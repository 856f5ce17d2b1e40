//! The `sluice` command line: argument definitions (clap derive), the operator subcommands that
//! talk to a running node's admin API (`docs/admin-api.md`), a tiny blocking HTTP/1.1 client,
//! and the human output (tables and summary blocks). `--json` prints the API's JSON instead.
//!
//! `sluice serve` itself lives in `main.rs`; only its arguments are defined here, so that the
//! whole command tree (and shell completions) comes from one place.

use std::io::{IsTerminal, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};

/// The admin API's default address (`server.admin_listen`).
pub const DEFAULT_API: &str = "http://127.0.0.1:9050";
/// Connect, read and write timeout of one API request.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest response the client accepts.
const RESPONSE_MAX: u64 = 16 << 20;

// ---------------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------------

/// sluice: a scale-out NFS server, and the tool to operate it.
#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    propagate_version = true,
    max_term_width = 100
)]
#[command(after_help = "\
With no options, `sluice serve` runs a single node: data under /var/lib/sluice (as root), NFSv3 \
on 0.0.0.0:2049, MOUNT on 0.0.0.0:20048, portmap on 111 if no rpcbind runs, exporting / \
read-write to every client with root squashing. The other commands talk to a running node's \
admin API.")]
pub struct Cli {
    #[command(flatten)]
    pub client: ClientOpts,
    #[command(subcommand)]
    pub command: Command,
}

/// How to reach and authenticate to the admin API. Global: accepted before or after the
/// subcommand.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Admin API options")]
pub struct ClientOpts {
    /// Admin API base URL: http://HOST:PORT, or https://HOST:PORT when the server has
    /// server.admin_tls_cert (then give --ca).
    #[arg(long, global = true, value_name = "URL", env = "SLUICE_API", default_value = DEFAULT_API)]
    pub api: String,
    /// PEM file with the certificate (or its CA) that an https:// admin API must present.
    #[arg(long, global = true, value_name = "PATH", env = "SLUICE_CA")]
    pub ca: Option<PathBuf>,
    /// Admin token (else $SLUICE_TOKEN, else the token file).
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// File holding the admin token [default: /var/lib/sluice/admin.token as root, else
    /// $HOME/.local/share/sluice/admin.token].
    #[arg(long, global = true, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Print the API's JSON (pretty) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the NFS server (the default single node when given no options).
    Serve(ServeArgs),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Old spelling of `config check`.
    #[command(hide = true)]
    CheckConfig {
        /// The TOML configuration file.
        file: PathBuf,
    },
    /// Show the node: version, uptime, store, connections, locks, throughput and targets.
    Status,
    /// Mount targets: named addresses with a bandwidth tier.
    #[command(subcommand)]
    Target(TargetCommand),
    /// Exports: trees of the store and the clients that may mount them.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Show where a file's data lives (node, store, device, data file, extents).
    Residency {
        /// Path inside the store, as exports name it (not a client's mount path).
        path: String,
    },
    /// The cluster: members, their roles and health, and the log; nodes leaving.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// One node of the cluster: moving its floating targets away for maintenance.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Print a shell completion script to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The TOML configuration file (default: the built-in single-node configuration).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the store keeps metadata and file data.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// NFS listener (repeatable); replaces server.listen.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_socket_addr)]
    pub listen: Vec<SocketAddr>,
    /// MOUNT listener (repeatable); replaces server.mount_listen.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_socket_addr)]
    pub mount_listen: Vec<SocketAddr>,
    /// NFS over RDMA listener (repeatable; the standard port is 20049); replaces rdma.listen.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_socket_addr)]
    pub rdma_listen: Vec<SocketAddr>,
    /// Portmap/rpcbind handling.
    #[arg(long, value_enum, value_name = "MODE")]
    pub portmap: Option<PortmapArg>,
    /// Keep everything in memory (lost at exit; for tests).
    #[arg(long)]
    pub memory: bool,
    /// Log line format on stderr. The level comes from SLUICE_LOG (else RUST_LOG, else info).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PortmapArg {
    /// Register with rpcbind; answer on 111 ourselves if none runs.
    Auto,
    /// Always answer portmap ourselves.
    Serve,
    /// Only register with a running rpcbind.
    Register,
    /// Neither: clients must give port= and mountport=.
    Off,
}

impl From<PortmapArg> for crate::ops::config::PortmapMode {
    fn from(p: PortmapArg) -> Self {
        use crate::ops::config::PortmapMode as M;
        match p {
            PortmapArg::Auto => M::Auto,
            PortmapArg::Serve => M::Serve,
            PortmapArg::Register => M::Register,
            PortmapArg::Off => M::Off,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration file and report the first problem.
    Check {
        /// The TOML configuration file.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Members (voters and learners), health (etcd lease), log position and lag.
    Status,
    /// Take the node this command talks to out of the cluster; it stops once out. Its data
    /// directory is then stale: it cannot rejoin with it, or with its id.
    Leave,
    /// Take NODE out of the cluster (it need not be running).
    Remove {
        /// The node id.
        node: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Move every floating target NODE owns (or is preferred on) to the other live nodes
    /// that can serve them, fewest targets first; each stays there (its preferred node) until
    /// moved again (`sluice target move NAME NODE|any`).
    Drain {
        /// The node id.
        node: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum TargetCommand {
    /// List the targets with their tiers, connections and rates.
    List,
    /// Show one target.
    Show { name: String },
    /// Create a target: it is served at once and persisted.
    Create {
        name: String,
        /// Address clients mount it at (repeatable, at least one).
        #[arg(long, required = true, value_name = "ADDR:PORT", value_parser = parse_socket_addr)]
        listen: Vec<SocketAddr>,
        /// A named tier (1g, 20g, 40g, 80g, unlimited) or a JSON object such as
        /// '{"read":"40MB/s","write":"40MB/s"}'.
        #[arg(long, value_parser = parse_tier)]
        tier: Value,
    },
    /// Change a target's tier: applies within a second, keeps connections, persisted.
    SetTier {
        name: String,
        /// A named tier (1g, 20g, 40g, 80g, unlimited) or a JSON object such as
        /// '{"read":"40MB/s"}'.
        #[arg(value_parser = parse_tier)]
        tier: Value,
    },
    /// Delete a target created through the API (config-file targets cannot be deleted).
    Delete { name: String },
    /// Move a floating target to a node (a planned move, e.g. before maintenance): its owner
    /// hands it over within about a second, and it stays on that node while the node is live.
    /// `any` drops the preference (the target stays where it is).
    Move {
        name: String,
        /// A node id, or `any`.
        #[arg(value_parser = parse_node_choice)]
        node: NodeChoice,
    },
}

/// `sluice target move`'s node: an id, or none (`any`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeChoice(pub Option<u64>);

/// `sluice target move`'s node: an id (1 or more), or `any` (no preference).
fn parse_node_choice(s: &str) -> Result<NodeChoice, String> {
    if s == "any" {
        return Ok(NodeChoice(None));
    }
    match s.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(NodeChoice(Some(n))),
        _ => Err(format!("{s:?} is not a node id (1 or more) or \"any\"")),
    }
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// List the exports and their client rules.
    List,
    /// Add an export; the directory is created if missing.
    Add {
        /// Path inside the store, e.g. /projects/a.
        path: String,
        /// Client rule, first match wins (repeatable, at least one):
        /// MATCH[:rw|ro][:root|all|none], MATCH being *, a CIDR, an address or a host name.
        /// Defaults: rw, root.
        #[arg(long = "client", required = true, value_name = "SPEC", value_parser = parse_client_spec)]
        clients: Vec<Value>,
        /// Export id written into file handles (default: derived from the path).
        #[arg(long, value_name = "N")]
        id: Option<u32>,
        /// Copies of each file made in the export, 1 to 3 (default: the cluster's
        /// `cluster.replicas`).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=3))]
        replication: Option<u8>,
    },
    /// Set the copies files made in an export from now on get: 1 to 3, or "default" for the
    /// cluster's `cluster.replicas`. Files made before keep theirs.
    Replication {
        id: u32,
        #[arg(value_name = "N|default", value_parser = parse_replication)]
        copies: Value,
    },
    /// Remove an export created through the API; its file handles turn stale.
    Remove { id: u32 },
}

/// A replication argument: 1 to 3, or "default" (JSON null: the cluster's default).
fn parse_replication(s: &str) -> Result<Value, String> {
    match s {
        "default" => Ok(Value::Null),
        "1" | "2" | "3" => Ok(json!(s.parse::<u8>().expect("a digit"))),
        _ => Err("give 1, 2 or 3, or \"default\" for the cluster's default".into()),
    }
}

fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| "expected ADDR:PORT, e.g. 0.0.0.0:2049 or [::]:2049".to_string())
}

/// A tier argument: a name ("40g") or a JSON object ('{"read":"40MB/s"}'). Checked here with
/// the server's own rules, so mistakes are usage errors rather than round trips.
pub fn parse_tier(s: &str) -> Result<Value, String> {
    let t = s.trim();
    let v = if t.starts_with('{') {
        let v: Value = serde_json::from_str(t).map_err(|e| format!("not a JSON object: {e}"))?;
        if !v.is_object() {
            return Err("a custom tier must be a JSON object".into());
        }
        v
    } else {
        Value::String(t.to_string())
    };
    let config: crate::qos::TierConfig = serde_json::from_value(v.clone()).map_err(|e| {
        format!("{e} (fields: read, write, total, iops, burst; e.g. '{{\"read\":\"40MB/s\"}}')")
    })?;
    config.resolve()?;
    Ok(v)
}

/// A `--client` spec, `MATCH[:rw|ro][:root|all|none]`, as the API's rule object. The options
/// are peeled off the right, so IPv6 matches ("fd00::/8:ro") keep their colons.
pub fn parse_client_spec(s: &str) -> Result<Value, String> {
    let mut rest = s;
    let (mut access, mut squash) = (None, None);
    while let Some((head, word)) = rest.rsplit_once(':') {
        match word {
            "rw" | "ro" if access.is_none() => access = Some(word),
            "root" | "all" | "none" if squash.is_none() && access.is_none() => squash = Some(word),
            "rw" | "ro" | "root" | "all" | "none" => {
                return Err(format!(
                    "{s:?}: {word:?} given twice or out of order; use MATCH[:rw|ro][:root|all|none]"
                ))
            }
            _ => break,
        }
        rest = head;
    }
    if rest.is_empty() {
        return Err(format!(
            "{s:?}: no client to match; use MATCH[:rw|ro][:root|all|none], e.g. 10.0.0.0/8:rw:root"
        ));
    }
    if rest.chars().any(char::is_whitespace) {
        return Err(format!("{s:?}: the match may not contain spaces"));
    }
    Ok(json!({
        "match": rest,
        "access": access.unwrap_or("rw"),
        "squash": squash.unwrap_or("root"),
    }))
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// A failed operator command. Every variant's text says what to do.
#[derive(Debug)]
pub enum CliError {
    /// The API answered with a non-2xx status.
    Api { status: u16, message: String },
    /// Anything else: unreachable API, unreadable token, bad URL, malformed response.
    Other(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        1
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Api { status, message } => write!(f, "{message} (HTTP {status})"),
            CliError::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for CliError {}

fn other(m: impl Into<String>) -> CliError {
    CliError::Other(m.into())
}

// ---------------------------------------------------------------------------------------------
// HTTP client
// ---------------------------------------------------------------------------------------------

/// An `http(s)://host[:port][/prefix]` base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiUrl {
    /// As given, for messages.
    pub original: String,
    /// https: the connection is TLS, verified against `--ca`.
    pub https: bool,
    /// The host, without brackets or port (the name the certificate must carry).
    pub host: String,
    /// `host:port` (IPv6 hosts in brackets), for connecting and the Host header.
    pub authority: String,
    /// Path prefix without a trailing slash ("" for none).
    pub prefix: String,
}

impl ApiUrl {
    pub fn parse(url: &str) -> Result<ApiUrl, CliError> {
        let u = url.trim();
        let (https, rest) = match (u.strip_prefix("https://"), u.strip_prefix("http://")) {
            (Some(r), _) => (true, r),
            (None, Some(r)) => (false, r),
            (None, None) => {
                return Err(other(format!(
                    "--api {url:?}: expected http://HOST[:PORT] or https://HOST[:PORT], e.g. \
                     {DEFAULT_API}"
                )))
            }
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(other(format!(
                "--api {url:?}: expected http://HOST[:PORT], e.g. {DEFAULT_API}"
            )));
        }
        let has_port = match authority.rfind(']') {
            Some(b) => authority[b..].contains(':'),
            None => authority.contains(':'),
        };
        let host = match authority.rfind(']') {
            Some(b) => authority[1..b].to_string(),
            None => authority.split(':').next().unwrap_or_default().to_string(),
        };
        let authority = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:{}", if https { 443 } else { 80 })
        };
        Ok(ApiUrl {
            original: u.trim_end_matches('/').to_string(),
            https,
            host,
            authority,
            prefix: path.trim_end_matches('/').to_string(),
        })
    }
}

/// A parsed HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a complete HTTP/1.x response (the connection was read to EOF). The body is the
/// Content-Length bytes, or a chunked body decoded, or everything to EOF.
pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the response has no complete header")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "the response header is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1 response: {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .filter(|c| (100..1000).contains(c))
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (n, v) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let rest = &raw[end + 4..];
    if resp
        .header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
    {
        resp.body = decode_chunked(rest)?;
    } else if let Some(len) = resp.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| format!("bad Content-Length {len:?}"))?;
        if rest.len() < len {
            return Err(format!(
                "the response ended after {} of {len} body bytes",
                rest.len()
            ));
        }
        resp.body = rest[..len].to_vec();
    } else {
        resp.body = rest.to_vec();
    }
    Ok(resp)
}

fn decode_chunked(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunked body")?;
        let size_text = std::str::from_utf8(&b[..eol]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 {
            return Err("truncated chunked body".into());
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters and '/' pass).
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-._~/".contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// Percent-encodes one path segment.
pub fn segment_escape(s: &str) -> String {
    query_escape(s).replace('/', "%2F")
}

/// Sends one request and reads the whole response (Connection: close).
pub fn http_request(
    url: &ApiUrl,
    tls: Option<&Arc<rustls::ClientConfig>>,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<Response, CliError> {
    let unreachable = |e: &dyn std::fmt::Display| {
        other(format!(
            "cannot reach the admin API at {}: is `sluice serve` running? (set --api or \
             SLUICE_API) [{e}]",
            url.original
        ))
    };
    let addrs: Vec<SocketAddr> = url
        .authority
        .to_socket_addrs()
        .map_err(|e| unreachable(&e))?
        .collect();
    let mut last_err: Option<std::io::Error> = None;
    let mut stream = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_err = Some(e),
        }
    }
    let stream = match stream {
        Some(s) => s,
        None => {
            return Err(match last_err {
                Some(e) => unreachable(&e),
                None => unreachable(&"the host name has no address"),
            })
        }
    };
    let io = |e: std::io::Error| {
        if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            other(format!(
                "the admin API at {} did not answer within {} s",
                url.original,
                TIMEOUT.as_secs()
            ))
        } else {
            other(format!("talking to the admin API at {}: {e}", url.original))
        }
    };
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    let mut stream: Box<dyn ReadWrite> = match (url.https, tls) {
        (false, _) => Box::new(stream),
        (true, None) => {
            return Err(other(format!(
                "{} is https: give --ca FILE (or SLUICE_CA) with the server's certificate or \
                 its CA",
                url.original
            )))
        }
        (true, Some(config)) => {
            let name = rustls_pki_types::ServerName::try_from(url.host.clone())
                .map_err(|e| other(format!("{}: {e}", url.original)))?;
            let conn = rustls::ClientConnection::new(config.clone(), name)
                .map_err(|e| other(format!("TLS to {}: {e}", url.original)))?;
            Box::new(rustls::StreamOwned::new(conn, stream))
        }
    };
    let body_bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let mut req = format!(
        "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: sluice/{}\r\n\
         Accept: application/json\r\nConnection: close\r\n",
        url.prefix,
        url.authority,
        env!("CARGO_PKG_VERSION")
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if body.is_some() || matches!(method, "POST" | "PUT") {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body_bytes.len()
        ));
    }
    req.push_str("\r\n");
    let mut out = req.into_bytes();
    out.extend_from_slice(&body_bytes);
    stream.write_all(&out).map_err(io)?;
    stream.flush().map_err(io)?;
    let mut raw = Vec::new();
    (&mut stream)
        .take(RESPONSE_MAX + 1)
        .read_to_end(&mut raw)
        .or_else(|e| {
            // A server that closes without close_notify still sent a whole response.
            if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() {
                Ok(0)
            } else {
                Err(e)
            }
        })
        .map_err(io)?;
    if raw.len() as u64 > RESPONSE_MAX {
        return Err(other(format!(
            "the admin API at {} sent more than {} MiB",
            url.original,
            RESPONSE_MAX >> 20
        )));
    }
    parse_response(&raw).map_err(|e| {
        other(format!(
            "bad answer from the admin API at {}: {e}",
            url.original
        ))
    })
}

/// A plain or TLS connection.
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// The message of an error response: its JSON `error`, else the body itself.
fn api_error(resp: &Response) -> CliError {
    let from_json = serde_json::from_slice::<Value>(&resp.body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string));
    let mut message = from_json.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(&resp.body).trim().to_string();
        if text.is_empty() {
            "the admin API refused the request".to_string()
        } else {
            text.chars().take(500).collect()
        }
    });
    if resp.status == 401 && !message.contains("--token") {
        message.push_str("; the CLI takes it from --token, SLUICE_TOKEN or --token-file");
    }
    CliError::Api {
        status: resp.status,
        message,
    }
}

// ---------------------------------------------------------------------------------------------
// Progress indicator
// ---------------------------------------------------------------------------------------------

/// A spinner on stderr that appears only after a second, and only when stderr is a terminal.
/// Dropping it stops it and clears its line.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    pub fn start(message: String) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            return Progress { stop, thread: None };
        }
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(1);
            while std::time::Instant::now() < deadline {
                if flag.load(Ordering::Acquire) {
                    return;
                }
                std::thread::park_timeout(deadline - std::time::Instant::now());
            }
            let frames = ['|', '/', '-', '\\'];
            let mut i = 0;
            let mut shown = false;
            while !flag.load(Ordering::Acquire) {
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r{} {message}", frames[i % frames.len()]);
                let _ = err.flush();
                shown = true;
                i += 1;
                drop(err);
                std::thread::park_timeout(Duration::from_millis(120));
            }
            if shown {
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2K");
                let _ = err.flush();
            }
        });
        Progress {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The API client
// ---------------------------------------------------------------------------------------------

/// The default token file: `<default data dir>/admin.token` (see `config::default_data_dir`).
pub fn default_token_file() -> PathBuf {
    crate::ops::config::default_data_dir().join("admin.token")
}

/// A connection-less client for one admin API.
pub struct Client {
    url: ApiUrl,
    token: String,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Client {
    /// Resolves the URL and the token: `--token`, else `--token-file`, else `SLUICE_TOKEN`,
    /// else the default token file.
    pub fn new(opts: &ClientOpts) -> Result<Client, CliError> {
        let url = ApiUrl::parse(&opts.api)?;
        let tls = match &opts.ca {
            Some(ca) => {
                Some(crate::ops::tls::client_config(ca).map_err(|e| other(format!("--ca: {e}")))?)
            }
            None => None,
        };
        let env_token = std::env::var("SLUICE_TOKEN").ok().filter(|t| !t.is_empty());
        let token = match (&opts.token, &opts.token_file, env_token) {
            (Some(t), _, _) => t.trim().to_string(),
            (None, Some(f), _) => read_token_file(f)?,
            (None, None, Some(t)) => t.trim().to_string(),
            (None, None, None) => read_token_file(&default_token_file())?,
        };
        Ok(Client { url, token, tls })
    }

    /// A client with a known token (tests, embedding).
    pub fn with_token(api: &str, token: &str) -> Result<Client, CliError> {
        Ok(Client {
            url: ApiUrl::parse(api)?,
            token: token.to_string(),
            tls: None,
        })
    }

    /// Trusts the certificates in `ca` for an https:// API.
    pub fn with_ca(mut self, ca: &std::path::Path) -> Result<Client, CliError> {
        self.tls =
            Some(crate::ops::tls::client_config(ca).map_err(|e| other(format!("--ca: {e}")))?);
        Ok(self)
    }

    /// Sends a request; a 2xx answer gives its JSON body (`Null` when empty).
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        self.call_raw(method, path, body).map(|a| a.value)
    }

    /// As [`Client::call`], keeping the body's text too (for `--json`, which prints it as the
    /// server wrote it, key order included).
    pub fn call_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, CliError> {
        let progress = Progress::start(format!(
            "waiting for the admin API at {}",
            self.url.original
        ));
        let resp = http_request(
            &self.url,
            self.tls.as_ref(),
            method,
            path,
            Some(&self.token),
            body,
        );
        drop(progress);
        let resp = resp?;
        if !(200..300).contains(&resp.status) {
            return Err(api_error(&resp));
        }
        let raw = String::from_utf8_lossy(&resp.body).trim().to_string();
        if raw.is_empty() {
            return Ok(Answer {
                value: Value::Null,
                raw,
            });
        }
        let value = serde_json::from_str(&raw).map_err(|e| {
            other(format!(
                "the admin API at {} answered {} with a body that is not JSON: {e}",
                self.url.original, resp.status
            ))
        })?;
        Ok(Answer { value, raw })
    }
}

/// A successful answer: the parsed body and its text.
#[derive(Debug, Clone)]
pub struct Answer {
    pub value: Value,
    pub raw: String,
}

fn read_token_file(path: &std::path::Path) -> Result<String, CliError> {
    let hint = |what: String| {
        other(format!(
            "{what}. Pass --token-file with the server's <data_dir>/admin.token (run as the \
             user that owns it, e.g. with sudo), or the token itself with --token or SLUICE_TOKEN"
        ))
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        hint(format!(
            "cannot read the admin token file {}: {e}",
            path.display()
        ))
    })?;
    let t = text.trim();
    if t.is_empty() {
        return Err(hint(format!(
            "the admin token file {} is empty",
            path.display()
        )));
    }
    Ok(t.to_string())
}

/// Runs an operator command (everything but `serve`, `config check` and `completions`, which
/// need no API) and prints its result on stdout.
pub fn run_api_command(opts: &ClientOpts, command: &Command) -> Result<(), CliError> {
    let client = Client::new(opts)?;
    let out = execute(&client, opts.json, command)?;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
    Ok(())
}

/// Runs a command against the API and returns what to print.
pub fn execute(client: &Client, json_out: bool, command: &Command) -> Result<String, CliError> {
    let show = |a: &Answer, human: &dyn Fn(&Value) -> String| {
        if json_out {
            pretty(&a.raw)
        } else {
            human(&a.value)
        }
    };
    Ok(match command {
        Command::Status => show(&client.call_raw("GET", "/v1/status", None)?, &render_status),
        Command::Target(t) => match t {
            TargetCommand::List => show(&client.call_raw("GET", "/v1/targets", None)?, &|v| {
                render_targets(v.as_array().map(Vec::as_slice).unwrap_or_default())
            }),
            TargetCommand::Show { name } => {
                let path = format!("/v1/targets/{}", segment_escape(name));
                show(&client.call_raw("GET", &path, None)?, &render_target)
            }
            TargetCommand::Create { name, listen, tier } => {
                let listen: Vec<String> = listen.iter().map(ToString::to_string).collect();
                let body = json!({"name": name, "listen": listen, "tier": tier});
                let v = client.call_raw("POST", "/v1/targets", Some(&body))?;
                show(&v, &|v| {
                    format!("created target {name}\n{}", render_target(v))
                })
            }
            TargetCommand::SetTier { name, tier } => {
                let path = format!("/v1/targets/{}/tier", segment_escape(name));
                let v = client.call_raw("PUT", &path, Some(&json!({ "tier": tier })))?;
                show(&v, &|v| {
                    format!(
                        "target {name}: tier {} (applies within a second; connections kept)\n{}",
                        tier_text(&v["tier"]),
                        render_target(v)
                    )
                })
            }
            TargetCommand::Delete { name } => {
                let path = format!("/v1/targets/{}", segment_escape(name));
                let v = client.call_raw("DELETE", &path, None)?;
                show(&v, &|_| format!("deleted target {name}\n"))
            }
            TargetCommand::Move {
                name,
                node: NodeChoice(node),
            } => {
                let path = format!("/v1/targets/{}/node", segment_escape(name));
                let v = client.call_raw("PUT", &path, Some(&json!({ "node": node })))?;
                show(&v, &|v| match node {
                    Some(n) => format!(
                        "target {name}: moving to node {n} (its owner hands it over within \
                         about a second)\n{}",
                        render_target(v)
                    ),
                    None => format!(
                        "target {name}: no preferred node (it stays where it is)\n{}",
                        render_target(v)
                    ),
                })
            }
        },
        Command::Export(e) => match e {
            ExportCommand::List => show(&client.call_raw("GET", "/v1/exports", None)?, &|v| {
                render_exports(v.as_array().map(Vec::as_slice).unwrap_or_default())
            }),
            ExportCommand::Add {
                path,
                clients,
                id,
                replication,
            } => {
                let mut body = json!({"path": path, "clients": clients});
                if let Some(id) = id {
                    body["id"] = json!(id);
                }
                if let Some(r) = replication {
                    body["replication"] = json!(r);
                }
                let v = client.call_raw("POST", "/v1/exports", Some(&body))?;
                show(&v, &|v| {
                    format!(
                        "created export {} {}\n",
                        v["id"],
                        v["path"].as_str().unwrap_or(path)
                    ) + &render_exports(std::slice::from_ref(v))
                })
            }
            ExportCommand::Replication { id, copies } => {
                let body = json!({ "replication": copies });
                let p = format!("/v1/exports/{id}/replication");
                let v = client.call_raw("PUT", &p, Some(&body))?;
                show(&v, &|v| {
                    format!(
                        "export {id}: files made from now on get {}\n",
                        match v["replication"].as_u64() {
                            Some(1) => "1 copy".to_string(),
                            Some(n) => format!("{n} copies"),
                            None => "the cluster's default number of copies".to_string(),
                        }
                    ) + &render_exports(std::slice::from_ref(v))
                })
            }
            ExportCommand::Remove { id } => {
                let v = client.call_raw("DELETE", &format!("/v1/exports/{id}"), None)?;
                show(&v, &|_| format!("removed export {id}\n"))
            }
        },
        Command::Residency { path } => {
            let p = format!("/v1/residency?path={}", query_escape(path));
            show(&client.call_raw("GET", &p, None)?, &render_residency)
        }
        Command::Cluster(c) => match c {
            ClusterCommand::Status => show(
                &client.call_raw("GET", "/v1/cluster", None)?,
                &render_cluster,
            ),
            ClusterCommand::Leave => {
                let v = client.call_raw("POST", "/v1/cluster/leave", None)?;
                show(&v, &|v| {
                    format!(
                        "node {} is leaving: the log's leader takes it out, then it stops\n",
                        text(&v["node"])
                    )
                })
            }
            ClusterCommand::Remove { node } => {
                let v = client.call_raw("DELETE", &format!("/v1/cluster/nodes/{node}"), None)?;
                show(&v, &|_| {
                    format!("node {node} is leaving: the log's leader takes it out\n")
                })
            }
        },
        Command::Node(NodeCommand::Drain { node }) => {
            let v = client.call_raw("POST", &format!("/v1/cluster/nodes/{node}/drain"), None)?;
            show(&v, &|v| render_drain(*node, v))
        }
        Command::Serve(_)
        | Command::Config(_)
        | Command::CheckConfig { .. }
        | Command::Completions { .. } => {
            return Err(other("internal error: not an admin API command"))
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

/// Re-indents valid JSON text (two spaces), keeping its key order; "" stays "".
pub fn pretty(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 2);
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    let mut chars = json.trim().chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", depth));
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                // Keep empty containers on one line.
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if matches!(chars.peek(), Some('}' | ']')) {
                    out.push(chars.next().unwrap_or_default());
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// Aligned columns, two spaces apart; the last column is not padded.
pub fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, (c, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            l.push_str(c);
            l.extend(std::iter::repeat_n(
                ' ',
                w.saturating_sub(c.chars().count()),
            ));
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
    out
}

/// Bytes per second in decimal units, "unlimited" for 0 (the API's "no limit").
pub fn human_rate(bytes_per_second: u64) -> String {
    if bytes_per_second == 0 {
        return "unlimited".into();
    }
    format!("{}/s", human_bytes(bytes_per_second))
}

/// A byte count in decimal units: "512 B", "1.5 MB", "5.0 GB".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KB", "MB", "GB", "TB", "PB", "EB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut x = n as f64 / 1000.0;
    let mut u = 0;
    while x >= 999.95 && u + 1 < UNITS.len() {
        x /= 1000.0;
        u += 1;
    }
    format!("{x:.1} {}", UNITS[u])
}

fn human_duration(mut s: u64) -> String {
    let d = s / 86400;
    s %= 86400;
    let (h, m, sec) = (s / 3600, s % 3600 / 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// A tier as typed: "40g", or "read=40MB/s write=40MB/s".
pub fn tier_text(t: &Value) -> String {
    match t {
        Value::String(s) => s.clone(),
        Value::Object(m) if m.is_empty() => "{}".into(),
        Value::Object(m) => {
            const ORDER: [&str; 5] = ["read", "write", "total", "iops", "burst"];
            let rank = |k: &str| ORDER.iter().position(|o| *o == k).unwrap_or(ORDER.len());
            let mut fields: Vec<(&String, &Value)> =
                m.iter().filter(|(_, v)| !v.is_null()).collect();
            fields.sort_by_key(|(k, _)| rank(k));
            fields
                .into_iter()
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}={s}"),
                    other => format!("{k}={other}"),
                })
                .collect::<Vec<_>>()
                .join(" ")
        }
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn listen_text(v: &Value) -> String {
    match v.as_array() {
        Some(a) if !a.is_empty() => a.iter().map(text).collect::<Vec<_>>().join(","),
        _ => "-".into(),
    }
}

fn rate_cell(target: &Value, dir: &str) -> String {
    match target["rate_bytes_per_second"][dir].as_u64() {
        Some(r) => human_rate(r),
        None => "-".into(),
    }
}

/// The targets table.
pub fn render_targets(targets: &[Value]) -> String {
    if targets.is_empty() {
        return "no targets\n".into();
    }
    let rows: Vec<Vec<String>> = targets
        .iter()
        .map(|t| {
            vec![
                text(&t["name"]),
                tier_text(&t["tier"]),
                listen_text(&t["listen"]),
                text(&t["connections"]),
                rate_cell(t, "read"),
                rate_cell(t, "write"),
                rate_cell(t, "total"),
                text(&t["source"]),
                owner_text(t),
            ]
        })
        .collect();
    render_table(
        &[
            "NAME",
            "TIER",
            "LISTEN",
            "CONNECTIONS",
            "READ",
            "WRITE",
            "TOTAL",
            "SOURCE",
            "OWNER",
        ],
        &rows,
    )
}

fn render_fields(fields: &[(&str, String)]) -> String {
    let w = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    fields
        .iter()
        .map(|(k, v)| format!("{k:<w$}  {v}\n"))
        .collect()
}

/// What `sluice node drain` set in motion.
fn render_drain(node: u64, v: &Value) -> String {
    let mut out = String::new();
    let moves = v["moves"].as_array().map(Vec::as_slice).unwrap_or_default();
    if moves.is_empty() {
        out.push_str(&format!("node {node} has no floating targets to move\n"));
    }
    for m in moves {
        out.push_str(&format!(
            "target {}: moving to node {}\n",
            text(&m["target"]),
            text(&m["node"])
        ));
    }
    for t in v["stuck"].as_array().map(Vec::as_slice).unwrap_or_default() {
        out.push_str(&format!(
            "target {}: stays (no other live node can serve it)\n",
            text(t)
        ));
    }
    out
}

/// One target as a field block.
pub fn render_target(t: &Value) -> String {
    render_fields(&[
        ("name", text(&t["name"])),
        ("tier", tier_text(&t["tier"])),
        ("listen", listen_text(&t["listen"])),
        ("source", text(&t["source"])),
        ("connections", text(&t["connections"])),
        ("read", rate_cell(t, "read")),
        ("write", rate_cell(t, "write")),
        ("total", rate_cell(t, "total")),
        ("owner", owner_text(t)),
        (
            "preferred node",
            t["preferred_node"]
                .as_u64()
                .map_or_else(|| "-".into(), |n| n.to_string()),
        ),
    ])
}

/// A floating target's owner (`node 2, epoch 57`), `none` while it has none, `-` for a target
/// that does not float (every node serves it).
fn owner_text(t: &Value) -> String {
    if t["floating"].as_bool() != Some(true) {
        return "-".into();
    }
    match (t["owner"]["node"].as_u64(), t["owner"]["epoch"].as_i64()) {
        (Some(node), Some(epoch)) => format!("node {node}, epoch {epoch}"),
        _ => "none".into(),
    }
}

fn rule_text(r: &Value) -> String {
    let mut s = format!(
        "{}:{}:{}",
        text(&r["match"]),
        r["access"].as_str().unwrap_or("rw"),
        r["squash"].as_str().unwrap_or("root")
    );
    let (uid, gid) = (r["anonuid"].as_u64(), r["anongid"].as_u64());
    if uid.is_some_and(|u| u != 65534) || gid.is_some_and(|g| g != 65534) {
        s.push_str(&format!(
            " (anon {}:{})",
            uid.unwrap_or(65534),
            gid.unwrap_or(65534)
        ));
    }
    s
}

/// The exports table.
pub fn render_exports(exports: &[Value]) -> String {
    if exports.is_empty() {
        return "no exports\n".into();
    }
    let rows: Vec<Vec<String>> = exports
        .iter()
        .map(|e| {
            let clients = e["clients"]
                .as_array()
                .map(|a| a.iter().map(rule_text).collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            let replication = match e["replication"].as_u64() {
                Some(n) => n.to_string(),
                None => "default".into(),
            };
            vec![
                text(&e["id"]),
                text(&e["path"]),
                text(&e["source"]),
                replication,
                clients,
            ]
        })
        .collect();
    render_table(&["ID", "PATH", "SOURCE", "COPIES", "CLIENTS"], &rows)
}

/// `cluster status`: the log, then one row per member.
pub fn render_cluster(c: &Value) -> String {
    let log = &c["log"];
    let mut out = match c["membership"].as_str() {
        Some("single") => {
            "a single node on the direct path: metadata outside the log (cluster.metadata = \"local\")\n".to_string()
        }
        m => format!(
            "node {} answering; membership {}; term {}, leader {}, log at {} (applied {})\n",
            text(&c["node"]),
            m.unwrap_or("-"),
            text(&log["term"]),
            text(&log["leader"]),
            text(&log["last_log_index"]),
            text(&log["applied"]),
        ),
    };
    if let Some(e) = c["registry_error"].as_str() {
        out.push_str(&format!("etcd: {e}\n"));
    }
    let rows: Vec<Vec<String>> = c["members"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|m| {
            let mut role = text(&m["role"]);
            if m["node"] == log["leader"] {
                role = format!("{role}, leader");
            }
            vec![
                text(&m["node"]),
                text(&m["addr"]),
                role,
                text(&m["health"]),
                text(&m["log_lag"]),
                if m["leaving"].as_bool() == Some(true) {
                    "yes"
                } else {
                    ""
                }
                .to_string(),
            ]
        })
        .collect();
    out + &render_table(&["NODE", "ADDR", "ROLE", "HEALTH", "LAG", "LEAVING"], &rows)
}

/// `status`: a summary block, then the targets table.
pub fn render_status(s: &Value) -> String {
    let nlm = &s["nlm"];
    let grace = if nlm["grace"].as_bool() == Some(true) {
        ", in grace period"
    } else {
        ""
    };
    let moved = |d: &str| {
        s["throughput_bytes"][d]
            .as_u64()
            .map(human_bytes)
            .unwrap_or_else(|| "-".into())
    };
    let mut fields = vec![
        (
            "node",
            format!(
                "{} (sluice {}), up {}",
                text(&s["node"]),
                text(&s["version"]),
                s["uptime_seconds"]
                    .as_u64()
                    .map(human_duration)
                    .unwrap_or_else(|| "-".into())
            ),
        ),
        (
            "store",
            format!("{} in {}", text(&s["store"]), text(&s["data_dir"])),
        ),
        (
            "clients",
            format!(
                "{} ({} connections)",
                text(&s["clients"]),
                text(&s["connections"])
            ),
        ),
        ("exports", text(&s["exports"])),
        (
            "settings",
            match s["settings"]["kept_in"].as_str() {
                Some("log") => format!(
                    "the cluster's, in the metadata log (version {} applied)",
                    text(&s["settings"]["version"])
                ),
                Some(_) => "this node's, in admin-state.json".to_string(),
                None => "-".to_string(),
            },
        ),
        (
            "locks",
            format!(
                "{} (NSM state {}{grace})",
                text(&nlm["locks"]),
                text(&nlm["state"])
            ),
        ),
        (
            "nfsv4.1",
            format!(
                "{} clients, {} sessions{}",
                text(&s["nfs4"]["clients"]),
                text(&s["nfs4"]["sessions"]),
                if s["nfs4"]["grace"].as_bool() == Some(true) {
                    format!(
                        ", in grace period ({} clients to reclaim)",
                        text(&s["nfs4"]["clients_to_reclaim"])
                    )
                } else {
                    String::new()
                }
            ),
        ),
        (
            "moved",
            format!("read {}, written {}", moved("read"), moved("write")),
        ),
    ];
    let data = &s["data_store"];
    if let Some(capacity) = data["block_cache_capacity_bytes"].as_u64() {
        let hits = data["block_cache_hits"].as_u64().unwrap_or(0);
        let misses = data["block_cache_misses"].as_u64().unwrap_or(0);
        fields.push((
            "block cache",
            if capacity == 0 {
                "off ([nvme] cache_mib = 0)".to_string()
            } else {
                format!(
                    "{} MiB of {} MiB, {} hits, {} misses ({:.0}% hits), {} evictions",
                    data["block_cache_bytes"].as_u64().unwrap_or(0) >> 20,
                    capacity >> 20,
                    hits,
                    misses,
                    100.0 * hits as f64 / (hits + misses).max(1) as f64,
                    text(&data["block_cache_evictions"])
                )
            },
        ));
    }
    let log = &s["cluster"]["metadata_log"];
    if log.as_object().is_some_and(|o| !o.is_empty()) {
        fields.push((
            "metadata log",
            format!(
                "{} voters, term {}, leader node {} (slowest follower {} behind), applied {} (lag {}), {} batches in {} entries",
                text(&log["voters"]),
                text(&log["term"]),
                text(&log["leader"]),
                text(&log["followers_lag_max"]),
                text(&log["applied_index"]),
                text(&log["apply_lag"]),
                text(&log["batches_proposed"]),
                text(&log["entries_proposed"])
            ),
        ));
        if log["is_leader"].as_u64() == Some(1) && log.get("rebuild_passes").is_some() {
            fields.push((
                "data copies",
                format!(
                    "{} files degraded, {} waiting for a node, {} failing to copy (last pass); {} copies dropped, {} made again ({}), {} ranges repaired",
                    text(&log["files_degraded"]),
                    text(&log["files_waiting_for_copies"]),
                    text(&log["files_restore_failed"]),
                    text(&log["copies_dropped"]),
                    text(&log["copies_restored"]),
                    log["copies_restored_bytes"]
                        .as_u64()
                        .map(human_bytes)
                        .unwrap_or_else(|| "-".into()),
                    text(&log["copies_repaired"])
                ),
            ));
            if let Some(files) = log["rebuild_files_left"].as_u64().filter(|&n| n > 0) {
                let bytes = log["rebuild_bytes_left"].as_u64().unwrap_or(0);
                let rate = log["rebuild_bytes_per_second"].as_u64().unwrap_or(0);
                let eta = match log["rebuild_eta_seconds"].as_u64().unwrap_or(0) {
                    0 => "no estimate yet".to_string(),
                    s if s < 120 => format!("about {s} s left"),
                    s if s < 7200 => format!("about {} min left", s.div_ceil(60)),
                    s => format!("about {:.1} h left", s as f64 / 3600.0),
                };
                fields.push((
                    "rebuilding",
                    format!(
                        "{files} files, {} to copy at {}/s: {eta}",
                        human_bytes(bytes),
                        human_bytes(rate)
                    ),
                ));
            }
            if log.get("scrub_bytes").is_some() {
                fields.push((
                    "scrub",
                    format!(
                        "{} checked, {} passes, {} bad ranges found",
                        log["scrub_bytes"]
                            .as_u64()
                            .map(human_bytes)
                            .unwrap_or_else(|| "-".into()),
                        text(&log["scrub_passes"]),
                        text(&log["scrub_bad_ranges"])
                    ),
                ));
            }
        }
    }
    let mut out = render_fields(&fields);
    out.push('\n');
    out.push_str(&render_targets(
        s["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default(),
    ));
    out
}

/// `residency`: where a file's data lives.
pub fn render_residency(r: &Value) -> String {
    let size = r["size"]
        .as_u64()
        .map(|n| format!("{n} ({})", human_bytes(n)))
        .unwrap_or_else(|| "-".into());
    let mut fields = vec![
        ("path", text(&r["path"])),
        ("inode", text(&r["inode"])),
        ("size", size),
        ("node", text(&r["node"])),
        ("store", text(&r["store"])),
    ];
    if let Some(nodes) = r["placement"]["nodes"].as_array() {
        let nodes: Vec<String> = nodes.iter().map(text).collect();
        let copies = r["placement"]["copies"].as_u64().unwrap_or(1);
        let plural = if copies == 1 { "copy" } else { "copies" };
        fields.push((
            "placement",
            format!(
                "nodes {} ({copies} {plural} of each chunk)",
                nodes.join(", ")
            ),
        ));
    }
    fields.push((
        "replication",
        match r["replication"].as_u64() {
            Some(n) => format!("{n} (from its directory when it was made)"),
            None => "the cluster's default".into(),
        },
    ));
    if !r["device"].is_null() {
        fields.push(("device", text(&r["device"])));
    }
    if !r["data_file"].is_null() {
        fields.push(("data file", text(&r["data_file"])));
    }
    let extents = r["extents"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut out = render_fields(&fields);
    if extents.is_empty() {
        out.push_str("\nno data extents (empty or all holes)\n");
    } else {
        let rows: Vec<Vec<String>> = extents
            .iter()
            .map(|e| {
                let off = e["offset"].as_u64().unwrap_or(0);
                let len = e["length"].as_u64().unwrap_or(0);
                vec![
                    off.to_string(),
                    len.to_string(),
                    off.saturating_add(len).to_string(),
                    human_bytes(len),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&render_table(&["OFFSET", "LENGTH", "END", "SIZE"], &rows));
    }
    // In a cluster: every copy, asked of its node (the extents above are the first's).
    let copies = r["copies"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !copies.is_empty() {
        let rows: Vec<Vec<String>> = copies
            .iter()
            .map(|c| {
                if let Some(why) = c["error"].as_str() {
                    return vec![
                        text(&c["node"]),
                        format!("not asked: {why}"),
                        String::new(),
                        String::new(),
                        String::new(),
                    ];
                }
                let extents = c["extents"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let bytes: u64 = extents.iter().filter_map(|e| e["length"].as_u64()).sum();
                vec![
                    text(&c["node"]),
                    text(&c["store"]),
                    if c["device"].is_null() {
                        "-".into()
                    } else {
                        text(&c["device"])
                    },
                    extents.len().to_string(),
                    human_bytes(bytes),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&render_table(
            &["COPY ON NODE", "STORE", "DEVICE", "EXTENTS", "DATA"],
            &rows,
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn cluster_status_shows_each_member_with_its_role_health_and_lag() {
        let v = json!({
            "node": 2, "membership": "etcd",
            "log": {"term": 3, "leader": 1, "last_log_index": 90, "applied": 90},
            "members": [
                {"node": 1, "addr": "10.78.0.101:2050", "role": "voter", "health": "up",
                 "leaving": false, "log_lag": null},
                {"node": 3, "addr": "10.78.0.103:2050", "role": "learner", "health": "down",
                 "leaving": true, "log_lag": null},
            ],
            "registry_error": null,
        });
        let out = render_cluster(&v);
        assert!(
            out.starts_with("node 2 answering; membership etcd; term 3, leader 1"),
            "{out}"
        );
        let one = out.lines().find(|l| l.starts_with("1 ")).unwrap();
        assert!(one.contains("voter, leader") && one.contains("up"), "{one}");
        let three = out.lines().find(|l| l.starts_with("3 ")).unwrap();
        assert!(
            three.contains("learner") && three.contains("down") && three.ends_with("yes"),
            "{three}"
        );
    }

    #[test]
    fn status_shows_the_metadata_log_only_when_there_is_one() {
        let mut s = json!({"cluster": {"metadata_log": {}}, "targets": []});
        assert!(!render_status(&s).contains("metadata log"));
        s["cluster"]["metadata_log"] = json!({
            "voters": 3, "followers_lag_max": 4,
            "term": 2, "leader": 1, "applied_index": 57, "apply_lag": 0,
            "batches_proposed": 120, "entries_proposed": 40,
        });
        let out = render_status(&s);
        assert!(
            out.contains(
                "3 voters, term 2, leader node 1 (slowest follower 4 behind), applied 57 \
                 (lag 0), 120 batches in 40 entries"
            ),
            "{out}"
        );
        assert!(
            !out.contains("data copies"),
            "a follower's figures say nothing: {out}"
        );
    }

    #[test]
    fn status_on_the_writing_node_shows_the_state_of_the_data_copies() {
        let s = json!({"cluster": {"metadata_log": {
            "voters": 3, "is_leader": 1, "rebuild_passes": 4, "files_degraded": 2,
            "files_restore_failed": 1, "copies_restored": 5, "copies_restored_bytes": 3_000_000,
            "copies_repaired": 7, "copies_dropped": 6, "files_waiting_for_copies": 3,
            "scrub_bytes": 5_000_000, "scrub_passes": 2, "scrub_bad_ranges": 1,
        }}, "targets": []});
        let out = render_status(&s);
        assert!(
            out.contains(
                "2 files degraded, 3 waiting for a node, 1 failing to copy (last pass); 6 copies \
                 dropped, 5 made again (3.0 MB), 7 ranges repaired"
            ),
            "{out}"
        );
        assert!(
            out.contains("5.0 MB checked, 2 passes, 1 bad ranges found"),
            "{out}"
        );
        assert!(!out.contains("rebuilding"), "no pass under way: {out}");
    }

    #[test]
    fn status_during_a_rebuild_shows_what_is_left_and_an_eta() {
        let s = json!({"cluster": {"metadata_log": {
            "voters": 2, "is_leader": 1, "rebuild_passes": 1, "rebuild_files_left": 12,
            "rebuild_bytes_left": 3_000_000_000u64, "rebuild_bytes_per_second": 100_000_000,
            "rebuild_eta_seconds": 30,
        }}, "targets": []});
        let out = render_status(&s);
        assert!(
            out.contains("12 files, 3.0 GB to copy at 100.0 MB/s: about 30 s left"),
            "{out}"
        );
    }

    #[test]
    fn a_floating_target_shows_its_owner_and_epoch_and_a_fixed_one_a_dash() {
        let t = |floating: bool, owner: Value| {
            json!({"name": "t", "tier": "unlimited", "listen": ["10.0.0.100:2049"],
                   "connections": 0, "source": "config", "floating": floating, "owner": owner,
                   "rate_bytes_per_second": {"read": 0, "write": 0, "total": 0}})
        };
        let out = render_targets(&[
            t(true, json!({"node": 2, "epoch": 57})),
            t(true, Value::Null),
            t(false, Value::Null),
        ]);
        let owners: Vec<&str> = out
            .lines()
            .skip(1)
            .map(|l| l.split("config").nth(1).unwrap_or("").trim())
            .collect();
        assert_eq!(owners, ["node 2, epoch 57", "none", "-"], "{out}");
    }

    #[test]
    fn a_drain_lists_each_target_s_new_node_and_the_ones_that_stay() {
        let v = json!({"node": 1, "moves": [{"target": "ckpt", "node": 3}], "stuck": ["data"]});
        assert_eq!(
            render_drain(1, &v),
            "target ckpt: moving to node 3\ntarget data: stays (no other live node can serve it)\n"
        );
        let none = json!({"node": 2, "moves": [], "stuck": []});
        assert_eq!(
            render_drain(2, &none),
            "node 2 has no floating targets to move\n"
        );
    }

    #[test]
    fn target_move_takes_a_node_id_or_any_and_refuses_anything_else() {
        let node = |arg: &str| match Cli::try_parse_from(["sluice", "target", "move", "ckpt", arg])
        {
            Ok(Cli {
                command: Command::Target(TargetCommand::Move { node, .. }),
                ..
            }) => Ok(node.0),
            Ok(other) => panic!("parsed as {other:?}"),
            Err(e) => Err(e.to_string()),
        };
        assert_eq!(node("3"), Ok(Some(3)));
        assert_eq!(node("any"), Ok(None));
        assert!(node("0").unwrap_err().contains("not a node id"));
        assert!(node("node2").unwrap_err().contains("not a node id"));
    }

    #[test]
    fn residency_shows_the_placement_from_the_metadata() {
        let r = json!({
            "path": "/f", "inode": 9, "size": 4096, "node": "n1", "store": "nvme",
            "placement": {"copies": 2, "nodes": [1, 2, 3]},
            "device": null, "data_file": null, "extents": [],
        });
        let out = render_residency(&r);
        assert!(
            out.contains("nodes 1, 2, 3 (2 copies of each chunk)"),
            "{out}"
        );
        let legacy = json!({
            "path": "/f", "inode": 9, "size": 0, "node": "n1", "store": "local",
            "placement": null, "device": null, "data_file": null, "extents": [],
        });
        assert!(!render_residency(&legacy).contains("placement"));
    }

    #[test]
    fn residency_in_a_cluster_lists_every_copy_and_a_node_that_did_not_answer() {
        let r = json!({
            "path": "/f", "inode": 9, "size": 8192, "node": "n1", "store": "nvme",
            "placement": {"copies": 2, "nodes": [1, 3]}, "replication": 2,
            "device": null, "data_file": null, "extents": [{"offset": 0, "length": 8192}],
            "copies": [
                {"node": 1, "store": "nvme", "device": "/dev/vdb", "data_file": null,
                 "extents": [{"offset": 0, "length": 8192}]},
                {"node": 3, "error": "the node did not answer"},
            ],
        });
        let out = render_residency(&r);
        assert!(out.contains("COPY ON NODE"), "{out}");
        assert!(out.contains("/dev/vdb"), "{out}");
        assert!(out.contains("8.2 KB"), "{out}");
        assert!(out.contains("not asked: the node did not answer"), "{out}");
        assert!(
            out.contains("2 (from its directory when it was made)"),
            "{out}"
        );
    }

    #[test]
    fn a_client_spec_with_only_a_match_gets_rw_and_root_squash() {
        assert_eq!(
            parse_client_spec("10.0.0.0/8").unwrap(),
            json!({"match": "10.0.0.0/8", "access": "rw", "squash": "root"})
        );
    }

    #[test]
    fn a_client_spec_carries_access_and_squash() {
        assert_eq!(
            parse_client_spec("*:ro:all").unwrap(),
            json!({"match": "*", "access": "ro", "squash": "all"})
        );
        assert_eq!(
            parse_client_spec("host.example:none").unwrap(),
            json!({"match": "host.example", "access": "rw", "squash": "none"})
        );
    }

    #[test]
    fn an_ipv6_client_spec_keeps_its_colons() {
        assert_eq!(
            parse_client_spec("fd00::/8:ro").unwrap(),
            json!({"match": "fd00::/8", "access": "ro", "squash": "root"})
        );
        assert_eq!(parse_client_spec("::1").unwrap()["match"], "::1");
    }

    #[test]
    fn a_client_spec_without_a_match_or_with_options_out_of_order_is_refused() {
        assert!(parse_client_spec(":rw").is_err());
        assert!(parse_client_spec("").is_err());
        assert!(parse_client_spec("10.0.0.0/8:root:rw").is_err());
        assert!(parse_client_spec("10.0.0.0/8:ro:rw").is_err());
    }

    #[test]
    fn a_named_tier_argument_becomes_a_json_string() {
        assert_eq!(parse_tier("40g").unwrap(), json!("40g"));
        assert_eq!(parse_tier("unlimited").unwrap(), json!("unlimited"));
    }

    #[test]
    fn a_json_tier_argument_becomes_a_json_object() {
        assert_eq!(
            parse_tier(r#"{"read":"40MB/s","iops":20000}"#).unwrap(),
            json!({"read": "40MB/s", "iops": 20000})
        );
    }

    #[test]
    fn a_bad_tier_argument_is_a_usage_error_that_says_why() {
        assert!(parse_tier("41g").unwrap_err().contains("unknown tier"));
        assert!(parse_tier(r#"{"read":"fast"}"#).is_err());
        assert!(parse_tier(r#"{"reed":"40MB/s"}"#).is_err());
        assert!(parse_tier("{not json").unwrap_err().contains("JSON"));
    }

    #[test]
    fn the_command_line_parses_target_create_with_repeated_listen() {
        let cli = Cli::try_parse_from([
            "sluice",
            "target",
            "create",
            "train",
            "--listen",
            "10.0.0.5:2049",
            "--listen",
            "10.0.0.6:2049",
            "--tier",
            "40g",
            "--json",
        ])
        .unwrap();
        assert!(cli.client.json);
        match cli.command {
            Command::Target(TargetCommand::Create { name, listen, tier }) => {
                assert_eq!(name, "train");
                assert_eq!(listen.len(), 2);
                assert_eq!(tier, json!("40g"));
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn the_old_check_config_spelling_still_parses() {
        let cli = Cli::try_parse_from(["sluice", "check-config", "x.toml"]).unwrap();
        assert!(matches!(cli.command, Command::CheckConfig { .. }));
    }

    #[test]
    fn a_usage_error_exits_with_code_2() {
        let e =
            Cli::try_parse_from(["sluice", "target", "create", "x", "--tier", "40g"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    fn sample_targets() -> Vec<Value> {
        serde_json::from_str(
            r#"[
              {"name": "train", "listen": ["10.0.0.5:2049"], "tier": "40g", "source": "config",
               "connections": 3,
               "rate_bytes_per_second": {"read": 0, "write": 0, "total": 5000000000}},
              {"name": "scratch", "listen": ["10.0.0.6:2049", "10.0.0.7:2049"],
               "tier": {"read": "40MB/s"}, "source": "api", "connections": 12,
               "rate_bytes_per_second": {"read": 40000000, "write": 0, "total": 0}}
            ]"#,
        )
        .unwrap()
    }

    #[test]
    fn a_target_list_renders_as_an_aligned_table_with_humanized_rates() {
        let t = render_targets(&sample_targets());
        // Column alignment: every row's cells start where the header's do.
        let header = t.lines().next().unwrap();
        for col in [
            "TIER",
            "LISTEN",
            "CONNECTIONS",
            "READ",
            "WRITE",
            "TOTAL",
            "SOURCE",
        ] {
            let at = header.find(col).unwrap();
            for row in t.lines().skip(1) {
                assert_eq!(&row[at - 2..at], "  ", "column {col} in {row:?}");
                assert_ne!(&row[at..at + 1], " ", "column {col} in {row:?}");
            }
        }
        assert_eq!(t.lines().count(), 3);
        assert!(t.contains("5.0 GB/s"));
        assert!(t.contains("40.0 MB/s"));
        assert!(t.contains("read=40MB/s"));
    }

    #[test]
    fn a_custom_tier_shows_only_the_fields_that_are_set() {
        let t = json!({"read": "40MB/s", "write": null, "iops": 20000, "burst": null});
        assert_eq!(tier_text(&t), "read=40MB/s iops=20000");
        let t = json!({"total": "1GB/s", "burst": "16MiB", "write": "2MB/s"});
        assert_eq!(tier_text(&t), "write=2MB/s total=1GB/s burst=16MiB");
    }

    #[test]
    fn json_output_is_reindented_in_the_servers_key_order() {
        let raw = r#"{"name":"a, b","listen":[],"tier":{"read":"4\"0"},"z":{},"n":[1,2]}"#;
        let out = pretty(raw);
        assert_eq!(
            out,
            "{\n  \"name\": \"a, b\",\n  \"listen\": [],\n  \"tier\": {\n    \"read\": \"4\\\"0\"\n  },\n  \"z\": {},\n  \"n\": [\n    1,\n    2\n  ]\n}\n"
        );
        let back: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(raw).unwrap());
        assert_eq!(pretty(""), "");
    }

    #[test]
    fn an_empty_target_list_says_so() {
        assert_eq!(render_targets(&[]), "no targets\n");
    }

    #[test]
    fn rates_are_humanized_and_zero_means_unlimited() {
        assert_eq!(human_rate(0), "unlimited");
        assert_eq!(human_rate(5_000_000_000), "5.0 GB/s");
        assert_eq!(human_rate(125_000_000), "125.0 MB/s");
        assert_eq!(human_rate(999), "999 B/s");
        assert_eq!(human_rate(999_999), "1.0 MB/s");
    }

    #[test]
    fn status_renders_a_summary_and_the_targets() {
        let s = json!({"version": "0.1.0", "node": "n1", "uptime_seconds": 3725,
            "data_dir": "/var/lib/sluice", "store": "local", "connections": 5, "clients": 2,
            "targets": sample_targets(), "exports": 1,
            "nlm": {"grace": false, "state": 7, "locks": 3},
            "nfs4": {"clients": 2, "sessions": 3, "grace": true, "clients_to_reclaim": 1, "state_ids": 9, "lease_seconds": 90},
            "throughput_bytes": {"read": 123, "write": 4_560_000}});
        let out = render_status(&s);
        assert!(out.contains("n1 (sluice 0.1.0), up 1h 2m"), "{out}");
        assert!(out.contains("2 (5 connections)"), "{out}");
        assert!(out.contains("read 123 B, written 4.6 MB"), "{out}");
        assert!(
            out.contains("2 clients, 3 sessions, in grace period (1 clients to reclaim)"),
            "{out}"
        );
        assert!(out.contains("\nNAME "), "{out}");
    }

    #[test]
    fn an_http_response_with_content_length_is_parsed() {
        let raw = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n\
                    Content-Length: 13\r\n\r\n{\"id\": 1}\r\n\r\nextra";
        let r = parse_response(raw).unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("Content-Length"), Some("13"));
        assert_eq!(r.body, b"{\"id\": 1}\r\n\r\n");
    }

    #[test]
    fn an_http_response_without_content_length_is_read_to_eof() {
        let r = parse_response(b"HTTP/1.0 204 No Content\r\nServer: x\r\n\r\n").unwrap();
        assert_eq!(r.status, 204);
        assert!(r.body.is_empty());
        let r = parse_response(b"HTTP/1.1 404 Not Found\r\n\r\n{\"error\":\"no\"}").unwrap();
        assert_eq!(r.body, b"{\"error\":\"no\"}");
    }

    #[test]
    fn a_chunked_http_response_is_decoded() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n[1,2\r\n2;x=y\r\n,3\r\n1\r\n]\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw).unwrap().body, b"[1,2,3]");
    }

    #[test]
    fn a_truncated_or_garbled_http_response_is_an_error() {
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 1").is_err());
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 abc OK\r\n\r\n").is_err());
    }

    #[test]
    fn an_api_error_shows_the_apis_message() {
        let r = parse_response(
            b"HTTP/1.1 409 Conflict\r\nContent-Length: 43\r\n\r\n{\"error\":\"target train is in the config\"}\r\n",
        )
        .unwrap();
        let e = api_error(&r);
        assert_eq!(e.to_string(), "target train is in the config (HTTP 409)");
        assert_eq!(e.exit_code(), 1);
    }

    #[test]
    fn a_closed_port_gives_the_is_sluice_serve_running_message() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let api = format!("http://127.0.0.1:{port}");
        let client = Client::with_token(&api, "t").unwrap();
        let e = client
            .call("GET", "/v1/status", None)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "cannot reach the admin API at {api}: is `sluice serve` running? (set --api or \
                 SLUICE_API)"
            )),
            "{e}"
        );
    }

    #[test]
    fn urls_get_a_default_port_and_https_a_host_to_verify() {
        let e = ApiUrl::parse("ftp://127.0.0.1:9050")
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected http://HOST[:PORT] or https://"), "{e}");
        let u = ApiUrl::parse("https://admin.example.com").unwrap();
        assert!(u.https);
        assert_eq!(u.authority, "admin.example.com:443");
        assert_eq!(u.host, "admin.example.com");
        assert_eq!(ApiUrl::parse("https://[::1]:9050").unwrap().host, "::1");
        let u = ApiUrl::parse("http://localhost/admin/").unwrap();
        assert!(!u.https);
        assert_eq!(u.authority, "localhost:80");
        assert_eq!(u.prefix, "/admin");
        assert_eq!(
            ApiUrl::parse("http://[::1]:9050").unwrap().authority,
            "[::1]:9050"
        );
        assert_eq!(ApiUrl::parse("http://[::1]").unwrap().authority, "[::1]:80");
    }

    #[test]
    fn an_unreadable_token_file_is_named_with_a_way_out() {
        let e = read_token_file(std::path::Path::new("/nonexistent/admin.token"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/admin.token"), "{e}");
        assert!(e.contains("--token"), "{e}");
    }

    #[test]
    fn residency_paths_are_percent_encoded_in_the_query() {
        assert_eq!(query_escape("/a b/c&d"), "/a%20b/c%26d");
        assert_eq!(segment_escape("a/b"), "a%2Fb");
    }

    /// A one-shot HTTP server on loopback answering `status` with `body`, handing back the
    /// request.
    fn serve_once(status: &str, body: &str) -> (String, std::thread::JoinHandle<String>) {
        let answer = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let api = format!("http://{}", l.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = vec![0u8; 65536];
            let mut got = Vec::new();
            // Read the header and the announced body.
            loop {
                let n = s.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
                if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map(|v| v.trim().parse::<usize>().unwrap())
                        .unwrap_or(0);
                    if got.len() >= end + 4 + len {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            s.write_all(answer.as_bytes()).unwrap();
            String::from_utf8(got).unwrap()
        });
        (api, h)
    }

    #[test]
    fn set_tier_sends_a_put_with_the_token_and_the_tier_object() {
        let (api, h) = serve_once(
            "200 OK",
            "{\"name\":\"train\",\"listen\":[\"10.0.0.5:2049\"],\"tier\":\"80g\",\"source\":\"api\",\"connections\":0,\"rate_bytes_per_second\":{\"read\":0}}",
        );
        let client = Client::with_token(&api, "abc123").unwrap();
        let cmd = Command::Target(TargetCommand::SetTier {
            name: "train".into(),
            tier: json!("80g"),
        });
        let out = execute(&client, false, &cmd).unwrap();
        let req = h.join().unwrap();
        assert!(
            req.starts_with("PUT /v1/targets/train/tier HTTP/1.1\r\n"),
            "{req}"
        );
        assert!(req.contains("Authorization: Bearer abc123\r\n"), "{req}");
        assert!(req.contains("Content-Type: application/json\r\n"), "{req}");
        assert!(req.contains("Connection: close\r\n"), "{req}");
        assert!(req.ends_with("\r\n\r\n{\"tier\":\"80g\"}"), "{req}");
        assert!(out.starts_with("target train: tier 80g"), "{out}");
    }

    #[test]
    fn an_error_answer_becomes_an_api_error_with_the_servers_message() {
        let (api, h) = serve_once("404 Not Found", "{\"error\":\"no target named nope\"}");
        let client = Client::with_token(&api, "abc").unwrap();
        let cmd = Command::Target(TargetCommand::Show {
            name: "nope".into(),
        });
        let e = execute(&client, true, &cmd).unwrap_err();
        h.join().unwrap();
        assert!(matches!(e, CliError::Api { status: 404, .. }));
        assert_eq!(e.to_string(), "no target named nope (HTTP 404)");
    }
}
