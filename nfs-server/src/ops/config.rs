//! Configuration: one TOML file, every field optional, every default safe.
//!
//! `sluice serve` with no file gives: data under the default directory, NFS and MOUNT on every
//! IPv4 address (2049 and 20048), portmap answered on 111 when no rpcbind runs, and one export
//! of `/`, read-write to every client with root squashing. `docs/configuration.md` documents
//! each field; `sluice.example.toml` shows them all.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::export::{ClientMatch, ClientRule, ExportConfig, Squash};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the store keeps metadata and file data. Default: /var/lib/sluice as root,
    /// else $HOME/.local/share/sluice.
    pub data_dir: PathBuf,
    /// The 16-byte secret that signs file handles. Default: `<data_dir>/cluster.key`, created
    /// on first start. Every node of a cluster must share it.
    pub cluster_key_file: Option<PathBuf>,
    /// Who this node is within its cluster (the NFSv4.1 server identity every node shares).
    pub cluster: ClusterConfig,
    /// "auto" (the default: "nvme" for a new data_dir, else the kind it already holds),
    /// "nvme" (durable, checksummed blocks on devices or a device file), "local" (durable, a
    /// file per inode) or "memory" (lost at exit; for tests).
    pub store: StoreKind,
    /// Settings of the nvme store.
    pub nvme: NvmeSettings,
    pub server: ServerConfig,
    pub nlm: NlmConfig,
    pub nfs4: Nfs4Config,
    pub rdma: RdmaConfig,
    /// Mount targets: named addresses with a bandwidth tier. Connections to no target's
    /// address belong to the unlimited "default" target.
    #[serde(rename = "target")]
    pub targets: Vec<crate::qos::TargetConfig>,
    /// Where this configuration was read from (for reloads on SIGHUP).
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// Exports. Default: one export of "/" to every client, read-write, root squashed.
    #[serde(rename = "export")]
    pub exports: Vec<ExportConfig>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    #[default]
    Auto,
    Local,
    Nvme,
    Memory,
}

impl StoreKind {
    /// The kind to open in `data_dir`: `Auto` becomes the kind found there, or `Nvme`.
    pub fn resolve(self, data_dir: &std::path::Path) -> StoreKind {
        match self {
            StoreKind::Auto
                if data_dir.join("meta.redb").exists()
                    && !data_dir.join("extents.redb").exists() =>
            {
                StoreKind::Local
            }
            StoreKind::Auto => StoreKind::Nvme,
            other => other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Auto => "auto",
            StoreKind::Local => "local",
            StoreKind::Nvme => "nvme",
            StoreKind::Memory => "memory",
        }
    }
}

/// How the nvme store reaches its devices.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NvmeSettings {
    /// Block devices (or files) that hold file data; all of them, in the same order, every
    /// time. Default: one file, `<data_dir>/nvme/dev0`, grown as needed.
    pub devices: Vec<PathBuf>,
    /// "auto" (io_uring where the kernel allows it, else threads), "io_uring" or "threads".
    pub io_engine: IoEngineKind,
    /// io_uring submission queue depth. Default 256.
    pub queue_depth: u32,
    /// Threads of the portable engine. Default 32.
    pub io_threads: usize,
    /// MiB of file data the block cache keeps in memory; 0 turns it off. Default (unset): a
    /// quarter of the machine's memory (or of the cgroup's limit).
    pub cache_mib: Option<u64>,
    /// MiB of UNSTABLE writes that may be acknowledged before their device write completes
    /// (COMMIT waits for them); 0: every WRITE replies after its device write. Default 256.
    pub write_back_mib: u64,
}

/// The largest `[nvme] write_back_mib`: the set is held in memory.
pub const WRITE_BACK_MIB_MAX: u64 = 65_536;

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IoEngineKind {
    #[default]
    Auto,
    IoUring,
    Threads,
}

impl Default for NvmeSettings {
    fn default() -> NvmeSettings {
        NvmeSettings {
            devices: Vec::new(),
            io_engine: IoEngineKind::Auto,
            queue_depth: 256,
            io_threads: 32,
            cache_mib: None,
            write_back_mib: backend::nvme::WRITE_BACK_DEFAULT >> 20,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PortmapMode {
    /// Register with a running rpcbind; answer on port 111 ourselves if none runs.
    #[default]
    Auto,
    /// Always answer portmap/rpcbind on `portmap_listen` ourselves.
    Serve,
    /// Only register with a running rpcbind (warn if there is none).
    Register,
    /// Neither: clients must give port= and mountport=.
    Off,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// NFS listeners (every RPC program is served on each). Default ["0.0.0.0:2049"].
    pub listen: Vec<SocketAddr>,
    /// MOUNT listeners, a separate port because some clients insist. Default ["0.0.0.0:20048"].
    /// An empty list serves MOUNT only on the NFS listeners.
    pub mount_listen: Vec<SocketAddr>,
    pub portmap: PortmapMode,
    /// Where to answer portmap/rpcbind (TCP and UDP) when we serve it. Default "0.0.0.0:111".
    pub portmap_listen: SocketAddr,
    /// Requests a connection may have in progress before we stop reading its socket.
    /// Memory cost: up to this many decoded requests per connection. Default 128.
    pub inflight_requests_max: usize,
    /// Request bytes a connection may have in progress before we stop reading its socket.
    /// Default 64 MiB (64 one-MiB WRITEs).
    pub inflight_bytes_max: usize,
    /// Request bytes all connections together may have in progress (each request counts at
    /// least 4 KiB). Bounds server memory under load: about this plus 1.1 MiB per connection.
    /// Default 1 GiB.
    pub global_inflight_bytes_max: usize,
    /// Connections open at once; beyond it new connections are closed at once, with a log
    /// line. Default 4096 (hundreds of clients with nconnect=16).
    pub connections_max: usize,
    /// A connection with nothing in progress and nothing received for this long is closed
    /// (clients reconnect transparently). Default 360.
    pub idle_timeout_seconds: u64,
    /// A record must arrive completely within this many seconds of its first byte (unless
    /// the server is busy with the connection's earlier requests). Default 60.
    pub record_timeout_seconds: u64,
    /// Where to serve Prometheus metrics (`GET /metrics`, plain HTTP). Default
    /// "127.0.0.1:9049": local only until the admin API brings authentication. If the address
    /// is taken, the server starts without metrics and logs a warning.
    pub metrics_listen: Option<SocketAddr>,
    /// Where the admin API listens (docs/admin-api.md). Default "127.0.0.1:9050", loopback only.
    /// If the address is taken, the server starts without it and logs a warning.
    pub admin_listen: Option<SocketAddr>,
    /// The admin API's bearer token. Default `<data_dir>/admin.token`, created (mode 0600) on
    /// first start.
    pub admin_token_file: Option<PathBuf>,
    /// Serve the admin API over TLS with this PEM certificate chain (and `admin_tls_key`).
    /// Default: plain HTTP, which is fine on loopback.
    pub admin_tls_cert: Option<PathBuf>,
    /// The PEM private key of `admin_tls_cert`.
    pub admin_tls_key: Option<PathBuf>,
    /// Replies kept for retransmitted non-idempotent calls. Each holds a small reply
    /// (well under 1 KiB). Default 16384.
    pub drc_entries: usize,
}

/// The cluster this node belongs to. A single node is a cluster of one: the defaults make one.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The cluster's name: clients see `sluice:<id>` as the NFSv4.1 server owner and scope on
    /// every node, so a mount target that moves keeps its clients' state and handles valid.
    /// 1 to 64 of `A-Z a-z 0-9 . _ -`. Default: generated at the first start and kept in
    /// `<data_dir>/cluster.id`. Changing it makes NFSv4.1 clients see a new server.
    pub id: Option<String>,
    /// This node's number within the cluster (the NFSv4.1 server_owner minor id), unique per
    /// node. Default 1.
    pub node_id: u64,
    /// Where metadata changes go: `"log"` (default), through the metadata log (openraft; a
    /// cluster of one, or of `members` / the nodes in etcd), with `meta.redb` as its state
    /// machine; `"local"`, straight into `meta.redb` (the direct path, a single node only). A
    /// `"local"` directory opens as the log's starting state; a directory that has used the
    /// log keeps using it.
    pub metadata: MetadataMode,
    /// The metadata log's voters, this node included: node id -> `host:port` of its
    /// inter-node port (`[cluster.members]`, e.g. `1 = "10.0.0.1:2050"`). Empty (default): a
    /// cluster of one. Every node is given the same table and the same `cluster.key`; any node
    /// then serves every export (mutations go to the log's leader). Needs `metadata = "log"`.
    pub members: std::collections::BTreeMap<String, String>,
    /// Where this node listens for the others. Default: its own address in `members`. With
    /// `etcd`, required, and the address the other nodes reach (not 0.0.0.0).
    pub listen: Option<SocketAddr>,
    /// The etcd endpoints (e.g. `["http://10.0.0.5:2379"]`) through which nodes join and
    /// leave: a node registers there and the metadata log's leader adds it as a voter
    /// (docs/cluster.md). Needs `metadata = "log"`, `id` and `listen`; excludes `members`.
    /// Empty (default): membership from `members`.
    pub etcd: Vec<String>,
    /// Entries of the metadata log between snapshots (each entry carries a group of changes).
    /// A node that was away longer than this catches up from a snapshot, and the log on disk
    /// stays within about this size. 16 to 10 000 000; default 50 000.
    pub log_snapshot_every: u64,
    /// Copies of each new file's data, each on a different voter of the metadata log (fewer
    /// while the cluster has fewer voters: a single node keeps one). Every copy takes every
    /// write, a COMMIT syncs them all, and reads go on from the others while one node is
    /// down. 1 to 3; default 3 (docs/cluster.md).
    pub replicas: u8,
    /// This node's failure domain (e.g. its rack, `"rack-a"`): a file's copies go to nodes
    /// of distinct domains while there are enough of them. Kept in the metadata log, so every
    /// node places alike. Unset: a domain of its own.
    pub domain: Option<String>,
    /// The interface a node puts a floating target's addresses on while it owns the target
    /// (`[[target]] floating = true`), e.g. `"eth0"`. Needed by floating targets unless
    /// `address_hook` is set.
    pub interface: Option<String>,
    /// The prefix length floating addresses get on `interface`. 1 to 128; default 24.
    pub address_prefix: u8,
    /// A command run instead of `ip addr` to bring a floating address up or down (a cloud's
    /// secondary-IP API): `HOOK up|down ADDRESS/PREFIX TARGET EPOCH`. It must finish within
    /// 10 s and exit 0. Default: none.
    pub address_hook: Option<PathBuf>,
    /// The TTL of the etcd lease a node owns its floating targets under. A node that dies is
    /// replaced within about this long; a node that cannot renew it for half of it stops
    /// serving its targets. 2 to 60; default 3.
    pub target_lease_seconds: u64,
    /// The background scrub: every copy of every file is read back from its node's disk
    /// (past the block cache) and checked against its block checksums; a bad range is written
    /// again from a good copy. Its rate in MiB per second, all copies together, read by the
    /// node that writes the metadata. 0 turns it off; at most 10 000; default 32.
    pub scrub_mib_per_second: u64,
    /// The least time between the starts of two scrub passes (the first starts an hour after
    /// the node leads, or this long if shorter). 1 to 31 536 000; default 604 800 (a week).
    pub scrub_every_seconds: u64,
}

impl Config {
    /// A floating target needs etcd (its owner holds it under a lease there), specific
    /// addresses, and a way to bring them up.
    pub fn check_floating(
        &self,
        at: &str,
        t: &crate::qos::TargetConfig,
    ) -> Result<(), ConfigError> {
        if self.cluster.etcd.is_empty() {
            return Err(ConfigError(format!(
                "{at}.floating: a floating target needs cluster.etcd (one node at a time owns \
                 it under an etcd lease)"
            )));
        }
        if self.cluster.interface.is_none() && self.cluster.address_hook.is_none() {
            return Err(ConfigError(format!(
                "{at}.floating: set cluster.interface (e.g. \"eth0\", where the owner puts \
                 the target's addresses) or cluster.address_hook"
            )));
        }
        if let Some(a) = t.listen.iter().find(|a| a.ip().is_unspecified()) {
            return Err(ConfigError(format!(
                "{at}.listen: {a} cannot float; give the address clients mount, e.g. \
                 \"10.0.0.100:2049\""
            )));
        }
        Ok(())
    }
}

impl ClusterConfig {
    /// When the metadata log snapshots and how much log it keeps behind a snapshot.
    pub fn log_tuning(&self) -> ha::metalog::Tuning {
        ha::metalog::Tuning {
            snapshot_every: self.log_snapshot_every,
            keep_after_snapshot: (self.log_snapshot_every / 2).min(1_000),
        }
    }

    /// The voters by node id, checked (see [`ClusterConfig::members`]).
    pub fn voters(&self) -> Result<std::collections::BTreeMap<u64, SocketAddr>, ConfigError> {
        let mut voters = std::collections::BTreeMap::new();
        for (id, addr) in &self.members {
            let node: u64 = id.parse().ok().filter(|&n| n >= 1).ok_or_else(|| {
                ConfigError(format!(
                    "cluster.members: {id:?} is not a node id; give whole numbers from 1"
                ))
            })?;
            let addr: SocketAddr = addr.parse().map_err(|_| {
                ConfigError(format!(
                    "cluster.members.{id}: {addr:?} is not an address; give ip:port, e.g. \
                     \"10.0.0.1:2050\""
                ))
            })?;
            voters.insert(node, addr);
        }
        Ok(voters)
    }
}

/// See [`ClusterConfig::metadata`].
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MetadataMode {
    Local,
    #[default]
    Log,
}

impl Default for ClusterConfig {
    fn default() -> ClusterConfig {
        ClusterConfig {
            id: None,
            node_id: 1,
            metadata: MetadataMode::Log,
            members: Default::default(),
            listen: None,
            etcd: Vec::new(),
            log_snapshot_every: 50_000,
            replicas: 3,
            domain: None,
            interface: None,
            address_prefix: 24,
            address_hook: None,
            target_lease_seconds: 3,
            scrub_mib_per_second: 32,
            scrub_every_seconds: 7 * 24 * 3600,
        }
    }
}

/// NFSv3 locking.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NlmConfig {
    /// After a restart, how long only lock reclaims are accepted, so clients that held locks
    /// get them back before anyone else can take them. Only when some client held locks.
    /// Default 45 s.
    pub grace_seconds: u64,
}

/// NFSv4.1.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Nfs4Config {
    /// Lease time: a client that sends nothing for this long loses its opens and locks once
    /// another client needs them; after a restart, clients have this long to reclaim.
    /// 5 to 3600; default 90.
    pub lease_seconds: u64,
    /// How uids and gids appear in owner strings: "numeric" (the default: "1000", what the
    /// Linux client uses with AUTH_SYS) or "names" ("alice@<id_domain>" from `passwd_file`
    /// and `group_file`; ids without a name stay numeric).
    pub id_mapping: IdMapping,
    /// The NFSv4 domain for "names" (the clients' idmapd.conf `Domain`).
    pub id_domain: Option<String>,
    pub passwd_file: PathBuf,
    pub group_file: PathBuf,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum IdMapping {
    #[default]
    Numeric,
    Names,
}

/// NFS over RDMA (RPC-over-RDMA version 1).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RdmaConfig {
    /// RDMA-CM listen addresses (the standard port is 20049). Empty (the default): no RDMA.
    /// Needs an RDMA device and the rdma-core libraries (libibverbs, librdmacm), which are
    /// loaded only when this is set.
    pub listen: Vec<SocketAddr>,
}

impl Default for Nfs4Config {
    fn default() -> Nfs4Config {
        Nfs4Config {
            lease_seconds: 90,
            id_mapping: IdMapping::Numeric,
            id_domain: None,
            passwd_file: PathBuf::from("/etc/passwd"),
            group_file: PathBuf::from("/etc/group"),
        }
    }
}

impl Default for NlmConfig {
    fn default() -> NlmConfig {
        NlmConfig { grace_seconds: 45 }
    }
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: vec!["0.0.0.0:2049".parse().expect("literal")],
            mount_listen: vec!["0.0.0.0:20048".parse().expect("literal")],
            portmap: PortmapMode::Auto,
            portmap_listen: "0.0.0.0:111".parse().expect("literal"),
            inflight_requests_max: 128,
            inflight_bytes_max: 64 << 20,
            global_inflight_bytes_max: 1 << 30,
            connections_max: 4096,
            idle_timeout_seconds: 360,
            record_timeout_seconds: 60,
            metrics_listen: Some("127.0.0.1:9049".parse().expect("literal")),
            admin_listen: Some("127.0.0.1:9050".parse().expect("literal")),
            admin_token_file: None,
            admin_tls_cert: None,
            admin_tls_key: None,
            drc_entries: 16384,
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: default_data_dir(),
            cluster_key_file: None,
            cluster: ClusterConfig::default(),
            store: StoreKind::Auto,
            nvme: NvmeSettings::default(),
            server: ServerConfig::default(),
            nlm: NlmConfig::default(),
            nfs4: Nfs4Config::default(),
            rdma: RdmaConfig::default(),
            targets: Vec::new(),
            source: None,
            exports: Vec::new(),
        }
    }
}

/// The data directory used when none is configured (the CLI finds the admin token there).
pub fn default_data_dir() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    // /proc/self is owned by the effective uid of this process.
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    if is_root {
        return PathBuf::from("/var/lib/sluice");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/sluice"),
        None => PathBuf::from("sluice-data"),
    }
}

pub use crate::export::ConfigError;

impl Config {
    /// Parses a TOML document, then checks what the types cannot.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let mut c: Config = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        c.finish()?;
        Ok(c)
    }

    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config {}: {e}", path.display())))?;
        let mut c = Config::from_toml(&text)
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        c.source = Some(path.to_path_buf());
        Ok(c)
    }

    /// The configuration used when no file is given.
    pub fn default_single_node() -> Config {
        let mut c = Config::default();
        c.finish().expect("the default configuration is valid");
        c
    }

    /// True when the exports are the built-in open default (prints a warning at startup).
    pub fn uses_default_export(&self) -> bool {
        self.exports.len() == 1 && self.exports[0].is_builtin_default
    }

    fn finish(&mut self) -> Result<(), ConfigError> {
        if self.nvme.write_back_mib > WRITE_BACK_MIB_MAX {
            return Err(ConfigError(format!(
                "nvme.write_back_mib = {} is over {WRITE_BACK_MIB_MAX}: the writes it holds \
                 wait in memory; 256 (the default) keeps a disk busy, 0 turns it off",
                self.nvme.write_back_mib
            )));
        }
        if self.exports.is_empty() {
            self.exports.push(ExportConfig::builtin_default());
        }
        if self.nfs4.id_mapping == IdMapping::Names
            && self.nfs4.id_domain.as_deref().is_none_or(str::is_empty)
        {
            return Err(ConfigError(
                "nfs4.id_mapping = \"names\" needs nfs4.id_domain, the domain your clients' \
                 idmapd.conf names (e.g. id_domain = \"example.com\")"
                    .into(),
            ));
        }
        if self.server.admin_tls_cert.is_some() != self.server.admin_tls_key.is_some() {
            return Err(ConfigError(
                "server.admin_tls_cert and server.admin_tls_key go together: give both (PEM \
                 files) for TLS, or neither for plain HTTP"
                    .into(),
            ));
        }
        if let Some(id) = &self.cluster.id {
            crate::state::identity::check_cluster_id(id)
                .map_err(|e| ConfigError(format!("cluster.id: {e}")))?;
        }
        // NFSv4.1 clientids keep 12 bits of the node id, so that no two nodes of a cluster
        // issue the same one (`state::nfs4`).
        if !(1..=4095).contains(&self.cluster.node_id) {
            return Err(ConfigError(format!(
                "cluster.node_id: {} is out of range; give 1 to 4095",
                self.cluster.node_id
            )));
        }
        let voters = self.cluster.voters()?;
        if !voters.is_empty() {
            if self.cluster.metadata != MetadataMode::Log {
                return Err(ConfigError(
                    "cluster.members needs cluster.metadata = \"log\": the nodes share their \
                     metadata through the metadata log"
                        .into(),
                ));
            }
            if !voters.contains_key(&self.cluster.node_id) {
                return Err(ConfigError(format!(
                    "cluster.node_id {} is not in cluster.members; list every node, this one \
                     included",
                    self.cluster.node_id
                )));
            }
        }
        if !(16..=10_000_000).contains(&self.cluster.log_snapshot_every) {
            return Err(ConfigError(format!(
                "cluster.log_snapshot_every: {} is out of range; give 16 to 10000000 (default \
                 50000)",
                self.cluster.log_snapshot_every
            )));
        }
        if !(1..=3).contains(&self.cluster.replicas) {
            return Err(ConfigError(format!(
                "cluster.replicas: {} is out of range; give 1, 2 or 3 (default 3)",
                self.cluster.replicas
            )));
        }
        if let Some(d) = &self.cluster.domain {
            let ok = (1..=64).contains(&d.len())
                && d.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !ok {
                return Err(ConfigError(format!(
                    "cluster.domain: {d:?}: give 1 to 64 letters, digits, '.', '_' or '-' \
                     (e.g. \"rack-a\")"
                )));
            }
        }
        if self.cluster.scrub_mib_per_second > 10_000 {
            return Err(ConfigError(format!(
                "cluster.scrub_mib_per_second: {} is out of range; give 0 (off) to 10000 \
                 (default 32)",
                self.cluster.scrub_mib_per_second
            )));
        }
        if !(1..=31_536_000).contains(&self.cluster.scrub_every_seconds) {
            return Err(ConfigError(format!(
                "cluster.scrub_every_seconds: {} is out of range; give 1 to 31536000 (default \
                 604800, a week)",
                self.cluster.scrub_every_seconds
            )));
        }
        if !(2..=60).contains(&self.cluster.target_lease_seconds) {
            return Err(ConfigError(format!(
                "cluster.target_lease_seconds: {} is out of range; give 2 to 60 (default 3)",
                self.cluster.target_lease_seconds
            )));
        }
        if !(1..=128).contains(&self.cluster.address_prefix) {
            return Err(ConfigError(format!(
                "cluster.address_prefix: {} is out of range; give 1 to 128 (default 24)",
                self.cluster.address_prefix
            )));
        }
        if !self.cluster.etcd.is_empty() {
            let c = &self.cluster;
            let need = |what: &str| {
                Err(ConfigError(format!(
                    "cluster.etcd needs {what}: nodes that join through etcd share the metadata \
                     log, a cluster id and reachable inter-node addresses"
                )))
            };
            if c.metadata != MetadataMode::Log {
                return need("cluster.metadata = \"log\"");
            }
            if c.id.is_none() {
                return need("cluster.id (the same on every node)");
            }
            if !voters.is_empty() {
                return Err(ConfigError(
                    "cluster.etcd and cluster.members exclude each other: give the etcd \
                     endpoints (nodes join and leave) or a fixed member table"
                        .into(),
                ));
            }
            match c.listen {
                None => return need("cluster.listen (this node's inter-node address)"),
                Some(a) if a.ip().is_unspecified() => {
                    return Err(ConfigError(format!(
                        "cluster.listen: {a} is not an address other nodes can reach; give \
                         this node's own address, e.g. \"10.0.0.1:2050\""
                    )))
                }
                Some(_) => {}
            }
            for e in &c.etcd {
                if !(e.starts_with("http://") || e.starts_with("https://")) {
                    return Err(ConfigError(format!(
                        "cluster.etcd: {e:?} is not an endpoint; give a URL such as \
                         \"http://10.0.0.5:2379\""
                    )));
                }
            }
        }
        if !(5..=3600).contains(&self.nfs4.lease_seconds) {
            return Err(ConfigError(format!(
                "nfs4.lease_seconds: {} is out of range; give 5 to 3600 (default 90)",
                self.nfs4.lease_seconds
            )));
        }
        if self.server.listen.is_empty() {
            return Err(ConfigError(
                "server.listen: at least one address is needed, e.g. [\"0.0.0.0:2049\"]".into(),
            ));
        }
        if self.server.global_inflight_bytes_max < self.server.inflight_bytes_max {
            return Err(ConfigError(
                "server.global_inflight_bytes_max must be at least server.inflight_bytes_max"
                    .into(),
            ));
        }
        if self.server.connections_max == 0
            || self.server.idle_timeout_seconds == 0
            || self.server.record_timeout_seconds == 0
        {
            return Err(ConfigError(
                "server.connections_max, server.idle_timeout_seconds and \
                 server.record_timeout_seconds must be greater than 0"
                    .into(),
            ));
        }
        if self.server.inflight_requests_max == 0 || self.server.inflight_bytes_max < (2 << 20) {
            return Err(ConfigError(
                "server.inflight_requests_max must be > 0 and server.inflight_bytes_max at least \
                 2097152 (two 1 MiB WRITEs)"
                    .into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            crate::qos::check_target_name(&t.name)
                .map_err(|e| ConfigError(format!("target[{i}].name: {e}")))?;
            if !names.insert(t.name.clone()) || t.name == "default" {
                return Err(ConfigError(format!(
                    "target[{i}].name: {:?} is taken (\"default\" is reserved); give each \
                     target its own name",
                    t.name
                )));
            }
            if t.listen.is_empty() {
                return Err(ConfigError(format!(
                    "target[{i}].listen: give at least one address, e.g. [\"10.0.0.5:2049\"]"
                )));
            }
            if t.floating {
                self.check_floating(&format!("target[{i}]"), t)?;
            }
            t.tier
                .resolve()
                .map_err(|e| ConfigError(format!("target[{i}].tier: {e}")))?;
        }
        let mut ids = std::collections::HashSet::new();
        let mut paths = std::collections::HashSet::new();
        for (i, e) in self.exports.iter_mut().enumerate() {
            e.validate(i)?;
            if !ids.insert(e.export_id()) {
                return Err(ConfigError(format!(
                    "export[{i}].id: {} is used by another export; give each export its own id",
                    e.export_id()
                )));
            }
            if !paths.insert(e.path.clone()) {
                return Err(ConfigError(format!(
                    "export[{i}].path: {:?} is exported twice; merge the client rules into one \
                     export",
                    e.path
                )));
            }
        }
        Ok(())
    }
}

impl ExportConfig {
    pub fn builtin_default() -> ExportConfig {
        ExportConfig {
            path: "/".into(),
            id: None,
            replication: None,
            clients: vec![ClientRule {
                matcher: ClientMatch::Any,
                read_only: false,
                squash: Squash::Root,
                anonuid: 65534,
                anongid: 65534,
            }],
            is_builtin_default: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_single_node_default() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.server.listen, vec!["0.0.0.0:2049".parse().unwrap()]);
        assert!(c.uses_default_export());
        assert_eq!(c.exports[0].clients[0].squash, Squash::Root);
    }

    #[test]
    fn unknown_field_is_named_in_the_error() {
        let e = Config::from_toml("[server]\nlistn = []\n").unwrap_err();
        assert!(e.0.contains("listn"), "{e}");
    }

    #[test]
    fn bad_cidr_names_the_export_and_rule() {
        let text = r#"
            [[export]]
            path = "/data"
            [[export.clients]]
            match = "10.0.0.0/33"
        "#;
        let e = Config::from_toml(text).unwrap_err();
        assert!(e.0.contains("export[0].clients[0].match"), "{e}");
    }

    #[test]
    fn full_export_config_parses() {
        let text = r#"
            data_dir = "/tmp/x"
            store = "memory"
            [server]
            listen = ["127.0.0.1:2049"]
            portmap = "off"
            [[export]]
            path = "/projects"
            id = 7
            [[export.clients]]
            match = "192.168.0.0/16"
            access = "ro"
            squash = "all"
            anonuid = 1000
            anongid = 1000
            [[export.clients]]
            match = "*"
            squash = "none"
        "#;
        let c = Config::from_toml(text).unwrap();
        assert_eq!(c.store, StoreKind::Memory);
        assert_eq!(c.exports[0].export_id(), 7);
        assert!(c.exports[0].clients[0].read_only);
        assert_eq!(c.exports[0].clients[1].squash, Squash::None);
    }

    #[test]
    fn an_nfs4_lease_out_of_range_is_refused_with_the_range() {
        let e = Config::from_toml("[nfs4]\nlease_seconds = 2\n").unwrap_err();
        assert!(
            e.0.contains("nfs4.lease_seconds") && e.0.contains("5 to 3600"),
            "{e}"
        );
        assert_eq!(Config::from_toml("").unwrap().nfs4.lease_seconds, 90);
    }

    #[test]
    fn an_etcd_cluster_needs_the_log_an_id_and_a_reachable_address() {
        let base = "[cluster]\netcd = [\"http://10.78.0.11:2379\"]\n";
        let local = format!("{base}metadata = \"local\"\n");
        let e = Config::from_toml(&local).unwrap_err();
        assert!(e.0.contains("cluster.metadata"), "{e}");
        let with_log = format!("{base}metadata = \"log\"\n");
        let e = Config::from_toml(&with_log).unwrap_err();
        assert!(e.0.contains("cluster.id"), "{e}");
        let with_id = format!("{with_log}id = \"c1\"\n");
        let e = Config::from_toml(&with_id).unwrap_err();
        assert!(e.0.contains("cluster.listen"), "{e}");
        let e = Config::from_toml(&format!("{with_id}listen = \"0.0.0.0:2050\"\n")).unwrap_err();
        assert!(e.0.contains("not an address other nodes can reach"), "{e}");
        let good = format!("{with_id}listen = \"10.78.0.101:2050\"\n");
        assert_eq!(Config::from_toml(&good).unwrap().cluster.etcd.len(), 1);
        let both = format!("{good}[cluster.members]\n1 = \"10.78.0.101:2050\"\n");
        let e = Config::from_toml(&both).unwrap_err();
        assert!(e.0.contains("exclude each other"), "{e}");
        let bad = good.replace("http://10.78.0.11:2379", "10.78.0.11:2379");
        let e = Config::from_toml(&bad).unwrap_err();
        assert!(e.0.contains("is not an endpoint"), "{e}");
    }

    #[test]
    fn name_mapping_without_a_domain_is_refused_with_what_to_add() {
        let e = Config::from_toml("[nfs4]\nid_mapping = \"names\"\n").unwrap_err();
        assert!(e.0.contains("nfs4.id_domain"), "{}", e.0);
        let c = Config::from_toml("[nfs4]\nid_mapping = \"names\"\nid_domain = \"example.com\"\n")
            .unwrap();
        assert_eq!(c.nfs4.id_mapping, IdMapping::Names);
    }

    #[test]
    fn nvme_devices_and_engine_parse() {
        let text = r#"
            store = "nvme"
            [nvme]
            devices = ["/dev/nvme0n1", "/dev/nvme1n1"]
            io_engine = "io_uring"
            queue_depth = 64
            cache_mib = 512
        "#;
        let c = Config::from_toml(text).unwrap();
        assert_eq!(c.nvme.cache_mib, Some(512));
        assert_eq!(Config::from_toml("").unwrap().nvme.cache_mib, None);
        assert_eq!(c.store, StoreKind::Nvme);
        assert_eq!(c.nvme.devices.len(), 2);
        assert_eq!(c.nvme.io_engine, IoEngineKind::IoUring);
        assert_eq!(c.nvme.queue_depth, 64);
        assert_eq!(c.nvme.io_threads, 32);
        assert_eq!(c.nvme.write_back_mib, 256);
    }

    #[test]
    fn write_back_is_bounded_and_can_be_turned_off() {
        let off = Config::from_toml("[nvme]\nwrite_back_mib = 0").unwrap();
        assert_eq!(off.nvme.write_back_mib, 0);
        let err = Config::from_toml("[nvme]\nwrite_back_mib = 70000").unwrap_err();
        assert!(err.0.contains("nvme.write_back_mib"), "{}", err.0);
    }

    #[test]
    fn the_automatic_store_kind_keeps_an_existing_local_store_and_picks_nvme_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(StoreKind::Auto.resolve(dir.path()), StoreKind::Nvme);
        std::fs::write(dir.path().join("meta.redb"), b"").unwrap();
        assert_eq!(StoreKind::Auto.resolve(dir.path()), StoreKind::Local);
        std::fs::write(dir.path().join("extents.redb"), b"").unwrap();
        assert_eq!(StoreKind::Auto.resolve(dir.path()), StoreKind::Nvme);
        assert_eq!(StoreKind::Memory.resolve(dir.path()), StoreKind::Memory);
    }

    #[test]
    fn targets_with_named_and_custom_tiers_parse() {
        let text = r#"
            [[target]]
            name = "train"
            listen = ["10.0.0.5:2049"]
            tier = "40g"
            [[target]]
            name = "ckpt"
            listen = ["10.0.0.6:2049"]
            tier = { write = "80MB/s", burst = "16MiB" }
        "#;
        let c = Config::from_toml(text).unwrap();
        assert_eq!(c.targets.len(), 2);
        assert_eq!(c.targets[1].tier.resolve().unwrap().write, Some(80_000_000));
    }

    #[test]
    fn the_scrub_runs_by_default_and_out_of_range_settings_name_their_field() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.cluster.scrub_mib_per_second, 32);
        assert_eq!(c.cluster.scrub_every_seconds, 604_800);
        let off = Config::from_toml("[cluster]\nscrub_mib_per_second = 0\n").unwrap();
        assert_eq!(off.cluster.scrub_mib_per_second, 0);
        let fast = Config::from_toml("[cluster]\nscrub_mib_per_second = 20000\n").unwrap_err();
        assert!(fast.0.contains("cluster.scrub_mib_per_second"), "{fast}");
        let never = Config::from_toml("[cluster]\nscrub_every_seconds = 0\n").unwrap_err();
        assert!(never.0.contains("cluster.scrub_every_seconds"), "{never}");
    }

    #[test]
    fn a_failure_domain_is_a_short_label_and_a_bad_one_names_its_field() {
        let c = Config::from_toml("[cluster]\ndomain = \"rack-a.row_1\"\n").unwrap();
        assert_eq!(c.cluster.domain.as_deref(), Some("rack-a.row_1"));
        assert_eq!(Config::from_toml("").unwrap().cluster.domain, None);
        for bad in ["", "rack a", &"r".repeat(65)] {
            let e = Config::from_toml(&format!("[cluster]\ndomain = \"{bad}\"\n")).unwrap_err();
            assert!(e.0.starts_with("cluster.domain: "), "{e}");
        }
    }

    #[test]
    fn a_floating_target_needs_etcd_an_interface_and_a_specific_address() {
        let target = |listen: &str| {
            format!(
                "[[target]]\nname = \"f\"\nlisten = [\"{listen}\"]\ntier = \"1g\"\n\
                 floating = true\n"
            )
        };
        let cluster = |extra: &str| {
            format!(
                "[cluster]\nid = \"c\"\nlisten = \"10.0.0.1:2050\"\n\
                 etcd = [\"http://10.0.0.9:2379\"]\n{extra}"
            )
        };
        let no_etcd = Config::from_toml(&target("10.0.0.100:2049")).unwrap_err();
        assert!(no_etcd.0.contains("target[0].floating"), "{no_etcd}");
        assert!(no_etcd.0.contains("cluster.etcd"), "{no_etcd}");
        let text = format!("{}{}", cluster(""), target("10.0.0.100:2049"));
        let no_interface = Config::from_toml(&text).unwrap_err();
        assert!(
            no_interface.0.contains("cluster.interface"),
            "{no_interface}"
        );
        let text = format!(
            "{}{}",
            cluster("interface = \"eth0\"\n"),
            target("0.0.0.0:2049")
        );
        let wildcard = Config::from_toml(&text).unwrap_err();
        assert!(wildcard.0.contains("cannot float"), "{wildcard}");
        let text = format!(
            "{}{}",
            cluster("interface = \"eth0\"\n"),
            target("10.0.0.100:2049")
        );
        let c = Config::from_toml(&text).unwrap();
        assert!(c.targets[0].floating);
        assert_eq!(c.cluster.target_lease_seconds, 3);
        let text = format!(
            "{}{}",
            cluster("interface = \"eth0\"\ntarget_lease_seconds = 1\n"),
            target("10.0.0.100:2049")
        );
        let short = Config::from_toml(&text).unwrap_err();
        assert!(short.0.contains("cluster.target_lease_seconds"), "{short}");
    }

    #[test]
    fn an_unknown_tier_names_the_target() {
        let text = "[[target]]\nname = \"t\"\nlisten = [\"10.0.0.5:2049\"]\ntier = \"7g\"\n";
        let e = Config::from_toml(text).unwrap_err();
        assert!(e.0.contains("target[0].tier"), "{e}");
    }

    #[test]
    fn duplicate_export_ids_are_refused() {
        let text = r#"
            [[export]]
            path = "/a"
            id = 1
            [[export.clients]]
            match = "*"
            [[export]]
            path = "/b"
            id = 1
            [[export.clients]]
            match = "*"
        "#;
        assert!(Config::from_toml(text)
            .unwrap_err()
            .0
            .contains("export[1].id"));
    }
}
