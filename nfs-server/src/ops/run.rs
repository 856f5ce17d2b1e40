//! Startup: open the store, resolve exports, bind listeners, find or become the portmapper.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use backend::{Cred, FileId, NodeKind, SetAttr, Store};
use tokio::net::{TcpListener, UdpSocket};

use crate::drc::Drc;
use crate::export::{Export, ExportConfig, ExportTable};
use crate::fh::FhKey;
use crate::ops::config::{Config, MetadataMode, PortmapMode, StoreKind};
use crate::portmap::{self, PortmapTable};
use crate::server::{Ports, Server};
use crate::transport::{self, ConnLimits};

/// Mode of the root directory of a fresh store under the default export: world-writable with
/// the sticky bit, like /tmp, so squashed root and ordinary users can both create files.
pub const DEFAULT_ROOT_MODE: u32 = 0o1777;

/// A startup failure, with what to do about it.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// Opens the configured store and serves until SIGINT/SIGTERM.
pub async fn run(config: Config) -> Result<(), StartError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        StartError(format!(
            "cannot create data_dir {}: {e}; set data_dir in the config or pass --data-dir",
            config.data_dir.display()
        ))
    })?;
    let mut config = config;
    config.store = config.store.resolve(&config.data_dir);
    match config.store {
        StoreKind::Memory => {
            tracing::warn!("store = \"memory\": every file is lost when the server stops");
            let store = backend::mem::MemStore::new();
            store.set_node(config.cluster.node_id);
            serve(config, store).await
        }
        StoreKind::Local | StoreKind::Nvme | StoreKind::Auto
            if config.cluster.metadata == MetadataMode::Log =>
        {
            serve_logged(config).await
        }
        StoreKind::Local => {
            refuse_logged_dir(&config)?;
            let store = backend::local::LocalStore::open(&config.data_dir).map_err(|e| {
                StartError(format!(
                    "cannot open the store in {}: {e}",
                    config.data_dir.display()
                ))
            })?;
            store.set_node(config.cluster.node_id);
            serve(config, store).await
        }
        StoreKind::Nvme | StoreKind::Auto => {
            refuse_logged_dir(&config)?;
            let nvme = nvme_config(&config);
            let store = backend::nvme::NvmeStore::open_with(&nvme).map_err(|e| {
                StartError(format!(
                    "cannot open the nvme store in {}: {e}",
                    config.data_dir.display()
                ))
            })?;
            store.set_node(config.cluster.node_id);
            serve(config, store).await
        }
    }
}

fn nvme_config(config: &Config) -> backend::nvme::NvmeConfig {
    use backend::nvme::io::EngineChoice;
    let settings = &config.nvme;
    let mut nvme = backend::nvme::NvmeConfig::new(&config.data_dir);
    nvme.devices = settings.devices.clone();
    nvme.queue_depth = settings.queue_depth;
    nvme.io_threads = settings.io_threads;
    if let Some(mib) = settings.cache_mib {
        nvme.cache_bytes = mib.saturating_mul(1 << 20);
    }
    nvme.write_back_bytes = settings.write_back_mib << 20;
    nvme.engine = match settings.io_engine {
        crate::ops::config::IoEngineKind::Auto => EngineChoice::Auto,
        crate::ops::config::IoEngineKind::IoUring => EngineChoice::Uring,
        crate::ops::config::IoEngineKind::Threads => EngineChoice::Threads,
    };
    nvme
}

/// A directory whose metadata went through the log has its newest state there (the state
/// machine in `meta.redb` may lag it): opening `meta.redb` alone would lose changes.
fn refuse_logged_dir(config: &Config) -> Result<(), StartError> {
    if config.data_dir.join("raft-log.redb").exists() {
        return Err(StartError(format!(
            "{} keeps its metadata in the metadata log (raft-log.redb); set [cluster] \
             metadata = \"log\" to open it",
            config.data_dir.display()
        )));
    }
    Ok(())
}

/// Opens the metadata log (a cluster of one, or this node's place among `[cluster.members]`)
/// and serves through the cluster store: the engine over the log writes while this node leads
/// (built the first time it does, with the data store beside it); otherwise every call is
/// shipped to the leader.
async fn serve_logged(config: Config) -> Result<(), StartError> {
    let dir = config.data_dir.clone();
    let node = config.cluster.node_id;
    let open_err = {
        let dir = dir.clone();
        move |e: String| StartError(format!("cannot open the store in {}: {e}", dir.display()))
    };
    let nvme = (config.store != StoreKind::Local).then(|| nvme_config(&config));
    if let Some(nvme) = &nvme {
        // Before the log creates meta.redb in a new directory.
        backend::nvme::NvmeData::check_dir(nvme).map_err(|e| open_err(e.to_string()))?;
    }
    let voters = config
        .cluster
        .voters()
        .map_err(|e| StartError(e.to_string()))?;
    let etcd = !config.cluster.etcd.is_empty();
    let mut members: Option<Arc<dyn ha::members::ClusterAdmin>> = None;
    let meta = if etcd {
        // Checked by Config::check.
        let listen = config
            .cluster
            .listen
            .expect("cluster.listen with cluster.etcd");
        let cluster_id = config
            .cluster
            .id
            .clone()
            .expect("cluster.id with cluster.etcd");
        let listener = bind_tcp(listen, "the other nodes of the cluster").await?;
        let key = ha::metalog::rpc::ClusterKey::new(&cluster_key(&config)?);
        let registry = ha::members::etcd::EtcdRegistry::connect(&config.cluster.etcd, &cluster_id)
            .await
            .map_err(StartError)?;
        let registry = Arc::new(registry);
        let removed = Box::new(move || {
            tracing::warn!(
                node,
                "this node was removed from the cluster; stopping. Its data directory is stale: \
                 to join again, start it empty, with a node id never used before"
            );
            std::process::exit(0);
        });
        tracing::info!(node, %listen, etcd = ?config.cluster.etcd, "joining the cluster through etcd");
        let addr = listen.to_string();
        let join = ha::members::Joining {
            dir: &dir,
            node,
            addr,
            tuning: config.cluster.log_tuning(),
            listener,
            key,
        };
        let meta = ha::members::open_registered(join, Arc::clone(&registry), removed)
            .await
            .map_err(|e| open_err(format!("the metadata log: {e}")))?;
        members = Some(Arc::new(ha::members::RegisteredMembers {
            meta: Arc::clone(&meta),
            registry,
        }));
        meta
    } else if voters.is_empty() {
        let meta = ha::metalog::RaftMeta::open_with(&dir, node, config.cluster.log_tuning())
            .await
            .map_err(|e| open_err(format!("the metadata log: {e}")))?;
        tracing::info!(dir = %dir.display(), node, "metadata goes through the metadata log (a cluster of one)");
        Arc::new(meta)
    } else {
        let listen = config.cluster.listen.or(voters.get(&node).copied());
        let listen = listen.ok_or_else(|| StartError("cluster.listen is not set".into()))?;
        let listener = bind_tcp(listen, "the other nodes of the cluster").await?;
        let key = cluster_key(&config)?;
        let members = voters.iter().map(|(&id, a)| (id, a.to_string())).collect();
        let cluster = ha::metalog::Cluster {
            listener,
            members,
            key: ha::metalog::rpc::ClusterKey::new(&key),
        };
        tracing::info!(node, %listen, voters = voters.len(), "joining the cluster's metadata log");
        let tuning = config.cluster.log_tuning();
        let meta = ha::metalog::RaftMeta::open_cluster(&dir, node, tuning, cluster)
            .await
            .map_err(|e| open_err(format!("the metadata log: {e}")))?;
        Arc::new(meta)
    };
    let members = members.unwrap_or_else(|| {
        Arc::new(ha::members::StaticMembers {
            meta: Arc::clone(&meta),
        })
    });
    // This node's data store serves the data this node holds to whichever node writes, so it
    // opens now, not when this node first leads.
    match nvme {
        Some(nvme) => {
            // A cluster of one has applied its whole log by now: files it does not know are
            // orphans of a crash. A cluster node's state machine may still lag the log.
            // A node that joins through etcd may gain voters at any time.
            let sm = (voters.len() <= 1 && !etcd).then(|| meta.state_machine());
            let data =
                backend::nvme::NvmeData::open_in(&nvme, sm).map_err(|e| open_err(e.to_string()))?;
            serve_cluster(config, meta, Arc::new(data), members).await
        }
        None => {
            let data =
                backend::local::LocalData::open_in(&dir).map_err(|e| open_err(e.to_string()))?;
            serve_cluster(config, meta, Arc::new(data), members).await
        }
    }
}

/// Serves through the cluster store, with `data` as this node's data store.
async fn serve_cluster<D: backend::engine::DataStore>(
    config: Config,
    meta: Arc<ha::metalog::RaftMeta>,
    data: Arc<D>,
    members: Arc<dyn ha::members::ClusterAdmin>,
) -> Result<(), StartError> {
    use ha::forward::{ClusterData, ClusterStore, HeldData, Peers};
    let node = config.cluster.node_id;
    let copies = config.cluster.replicas;
    let scrub_rate = config.cluster.scrub_mib_per_second << 20;
    let scrub_every = std::time::Duration::from_secs(config.cluster.scrub_every_seconds);
    let peers = Peers::new(Arc::clone(&meta));
    let (for_engine, for_data, engine_peers) =
        (Arc::clone(&meta), Arc::clone(&data), Arc::clone(&peers));
    // Called on the blocking pool of this runtime (ClusterData needs its handle); again at
    // the next leadership if building failed.
    let factory = Box::new(move || {
        let engine_data = ClusterData::new(
            Arc::clone(&for_data),
            node,
            Arc::clone(&for_engine),
            Arc::clone(&engine_peers),
        )
        .copies(copies)
        .scrub(scrub_rate, scrub_every);
        let engine = backend::engine::Engine::with_stores(Arc::clone(&for_engine), engine_data)?;
        engine.set_node(node);
        Ok(engine)
    });
    let held: Arc<dyn HeldData> = data;
    // A log that stopped on an error (its disk refused a sync or a write) changes nothing
    // until this node restarts, and its clients would stall here for good: exit instead, and
    // let the supervisor restart the node, which recovers its files on the way up.
    let failed = meta.failed();
    let store = ClusterStore::start(meta, peers, Some(held), factory)
        .await
        .map_err(|e| StartError(format!("cannot serve {}: {e}", config.data_dir.display())))?;
    tokio::spawn(publish_domain(
        Arc::clone(&store),
        node,
        config.cluster.domain.clone().unwrap_or_default(),
    ));
    // The protocol state rides the log, under this node's id.
    let docs: Arc<dyn crate::state::StateStore> = Arc::new(crate::state::LogStateStore::new(
        Arc::clone(&store),
        node,
        &config.data_dir,
    ));
    tokio::select! {
        served = serve_with(config, store, Some((members, docs))) => served,
        reason = failed => {
            tracing::error!(%reason, "the metadata log stopped; exiting");
            Err(StartError(format!(
                "the metadata log stopped: {reason}. Exiting so that this node restarts \
                 (a supervisor such as systemd restarts it; the log recovers its files on \
                 the way up). If the disk failed or is full, fix that first"
            )))
        }
    }
}

/// Keeps this node's failure domain (`[cluster] domain`; empty: none) in the metadata log,
/// where placement reads every node's: tried until the log takes it (a new cluster may
/// have no leader yet).
async fn publish_domain<S: Store>(store: Arc<S>, node: u64, domain: String) {
    let key = ha::forward::domain_key(node);
    loop {
        match store.doc(&key).await {
            Ok(kept)
                if kept
                    .as_ref()
                    .map_or(domain.is_empty(), |(_, d)| *d == domain.as_bytes()) =>
            {
                return;
            }
            Ok(kept) => {
                // A version above the kept one and above any earlier start's.
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                let version = now.max(kept.map_or(0, |(v, _)| v + 1));
                match store
                    .put_doc(&key, version, domain.clone().into_bytes())
                    .await
                {
                    Ok(()) => {
                        tracing::info!(node, domain = %domain, "failure domain kept in the log");
                        return;
                    }
                    Err(e) => tracing::debug!(error = %e, "failure domain not kept yet"),
                }
            }
            Err(e) => tracing::debug!(error = %e, "failure domain not read yet"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// The cluster key's bytes (the file that also signs file handles), created on a first start.
fn cluster_key(config: &Config) -> Result<Vec<u8>, StartError> {
    let path = config
        .cluster_key_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join("cluster.key"));
    FhKey::load_or_create(&path)
        .and_then(|_| std::fs::read(&path))
        .map_err(|e| {
            StartError(format!(
                "cannot load the cluster key {}: {e}",
                path.display()
            ))
        })
}

/// The listeners a running server holds, with the ports they were actually bound to.
pub struct Bound {
    pub nfs: Vec<TcpListener>,
    pub mount: Vec<TcpListener>,
    pub mount_udp: Vec<UdpSocket>,
    pub portmap: Option<(TcpListener, UdpSocket)>,
    pub ports: Ports,
}

async fn bind_tcp(addr: SocketAddr, what: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|e| {
        StartError(format!(
            "cannot listen for {what} on {addr}: {e}; is another NFS server (knfsd, Ganesha) \
             running? Stop it or change the address in the config"
        ))
    })
}

/// Decides the portmap role and binds every socket.
/// Also returns the programs registered with the host's rpcbind, to unregister at shutdown.
pub async fn bind_all(config: &Config) -> Result<(Bound, Vec<portmap::Program>), StartError> {
    let mut nfs = Vec::new();
    for a in &config.server.listen {
        nfs.push(bind_tcp(*a, "NFS").await?);
    }
    let nfs_port = nfs[0].local_addr().map(|a| a.port()).unwrap_or(2049);
    let mut mount = Vec::new();
    let mut mount_udp = Vec::new();
    for a in &config.server.mount_listen {
        let l = bind_tcp(*a, "MOUNT").await?;
        let port = l.local_addr().map(|a| a.port()).unwrap_or(a.port());
        if let Ok(u) = UdpSocket::bind(SocketAddr::new(a.ip(), port)).await {
            mount_udp.push(u);
        }
        mount.push(l);
    }
    let mount_port = mount
        .first()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.port())
        .unwrap_or(nfs_port);
    let ports = Ports {
        nfs: nfs_port,
        mount: mount_port,
    };
    let programs = portmap::our_programs(nfs_port, mount_port, !mount_udp.is_empty());
    let mode = config.server.portmap;
    let system = matches!(mode, PortmapMode::Auto | PortmapMode::Register)
        && tokio::task::spawn_blocking(portmap::system_rpcbind_running)
            .await
            .unwrap_or(false);
    let mut registered = Vec::new();
    let mut pm = None;
    if system {
        let progs = programs.clone();
        match tokio::task::spawn_blocking(move || portmap::register_with_system_rpcbind(&progs))
            .await
        {
            Ok(Ok(done)) => {
                tracing::info!("registered NFS and MOUNT with the host's rpcbind");
                registered = done;
            }
            Ok(Err(e)) => tracing::warn!("could not register with the host's rpcbind: {e}"),
            Err(e) => tracing::warn!("could not register with the host's rpcbind: {e}"),
        }
    } else if matches!(mode, PortmapMode::Register) {
        tracing::warn!(
            "portmap = \"register\" but no rpcbind answers (on /run/rpcbind.sock or 127.0.0.1:111)"
        );
    }
    if mode == PortmapMode::Serve || (mode == PortmapMode::Auto && !system) {
        let a = config.server.portmap_listen;
        match (TcpListener::bind(a).await, UdpSocket::bind(a).await) {
            (Ok(t), Ok(u)) => {
                tracing::info!("no rpcbind on this host: answering portmap/rpcbind on {a}");
                pm = Some((t, u));
            }
            (Err(e), _) | (_, Err(e)) => tracing::warn!(
                "cannot answer portmap on {a}: {e}; clients must mount with port={nfs_port},\
                 mountport={mount_port} (or run rpcbind, or start sluice as root)"
            ),
        }
    }
    Ok((
        Bound {
            nfs,
            mount,
            mount_udp,
            portmap: pm,
            ports,
        },
        registered,
    ))
}

/// Finds or creates each export's root directory.
pub async fn resolve_exports<S: Store>(
    config: &Config,
    store: &S,
) -> Result<ExportTable, StartError> {
    let mut out = Vec::new();
    for e in &config.exports {
        out.push(resolve_export(e, store).await?);
    }
    Ok(ExportTable::new(out))
}

/// Finds or creates one export's root directory.
pub async fn resolve_export<S: Store>(e: &ExportConfig, store: &S) -> Result<Export, StartError> {
    let root = Cred::root();
    let mut dir = store.root();
    for comp in e.components() {
        dir = match store.lookup(&root, dir, comp.as_bytes()).await {
            Ok(a) => a.id,
            Err(backend::Error::NotFound) => {
                let attr = SetAttr {
                    mode: Some(0o755),
                    ..SetAttr::default()
                };
                let kind = NodeKind::Directory;
                let mode = backend::CreateMode::Guarded;
                match store
                    .create(&root, dir, comp.as_bytes(), kind, attr, mode)
                    .await
                {
                    Ok(created) => {
                        tracing::info!(export = %e.path, "created the export's directory");
                        created.0.id
                    }
                    // Another node applying the same settings made it first.
                    Err(backend::Error::Exists) => {
                        store
                            .lookup(&root, dir, comp.as_bytes())
                            .await
                            .map_err(|err| {
                                StartError(format!("export {:?}: {comp:?}: {err}", e.path))
                            })?
                            .id
                    }
                    Err(err) => {
                        return Err(StartError(format!(
                            "export {:?}: cannot create {comp:?}: {err}",
                            e.path
                        )))
                    }
                }
            }
            Err(err) => return Err(StartError(format!("export {:?}: {comp:?}: {err}", e.path))),
        };
    }
    if e.is_builtin_default {
        init_default_root(store, dir).await?;
    }
    // The built-in default export has no factor to set, and must not clear one.
    if !e.is_builtin_default {
        set_export_replication(&e.path, e.replication, store, dir).await?;
    }
    Ok(Export {
        id: e.export_id(),
        path: e.path.clone(),
        root: dir,
        rules: e.clients.clone(),
        replication: e.replication,
    })
}

/// Makes the export's replication factor the one its root carries (a metadata change only
/// when it differs, so restarts and every node applying the same settings write nothing).
pub async fn set_export_replication<S: Store>(
    path: &str,
    replication: Option<u8>,
    store: &S,
    root: FileId,
) -> Result<(), StartError> {
    let failed = |err: backend::Error| {
        StartError(format!(
            "export {path:?}: its replication factor not set: {err}"
        ))
    };
    let current = store.replication(root).await.map_err(failed)?;
    if current != replication {
        store
            .set_replication(root, replication)
            .await
            .map_err(failed)?;
        tracing::info!(export = %path, replication = ?replication, "export's replication factor set");
    }
    Ok(())
}

/// On a fresh store (empty root), makes the root world-writable and sticky. An administrator's
/// later chmod of the root is kept: this runs only while the root is empty.
async fn init_default_root<S: Store>(store: &S, root: FileId) -> Result<(), StartError> {
    let cred = Cred::root();
    let page = store
        .readdir(&cred, root, 0, 1, false)
        .await
        .map_err(|e| StartError(format!("cannot list the store root: {e}")))?;
    let attr = store
        .getattr(root)
        .await
        .map_err(|e| StartError(format!("cannot read the store root: {e}")))?;
    if page.entries.is_empty() && attr.mode & 0o7777 != DEFAULT_ROOT_MODE {
        let set = SetAttr {
            mode: Some(DEFAULT_ROOT_MODE),
            ..SetAttr::default()
        };
        store
            .setattr(&cred, root, set, None)
            .await
            .map_err(|e| StartError(format!("cannot set the store root's mode: {e}")))?;
    }
    Ok(())
}

/// Lease time for NFSv4.1: `[nfs4] lease_seconds`, unless the environment variable
/// `SLUICE_V4_LEASE_SECONDS` (5 to 3600) overrides it, for conformance runs.
fn lease_time(config: &Config) -> std::time::Duration {
    let configured = config.nfs4.lease_seconds;
    let secs = std::env::var("SLUICE_V4_LEASE_SECONDS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| (5..=3600).contains(s))
        .unwrap_or(configured);
    std::time::Duration::from_secs(secs)
}

/// The protocol state of this run: the identity (a new epoch, durable before anything is
/// answered), NFSv4.1 client records and the NSM monitor list of the previous run (kept beside
/// the data; in memory for the memory store), and the grace period they call for.
async fn open_state(
    config: &Config,
    in_log: Option<Arc<dyn crate::state::StateStore>>,
) -> Result<crate::state::ProtocolState, StartError> {
    use crate::state::{FileStateStore, MemStateStore, ProtocolState, StateConfig, StateStore};
    let identity = crate::state::Identity::start(
        &config.data_dir,
        config.cluster.id.as_deref(),
        config.cluster.node_id,
    )
    .map_err(|e| {
        StartError(format!(
            "cannot load the cluster identity in {}: {e}",
            config.data_dir.display()
        ))
    })?;
    tracing::info!(
        cluster = %identity.cluster_id,
        node = identity.node_id,
        epoch = identity.epoch,
        "identity"
    );
    let idmap = if config.nfs4.id_mapping == crate::ops::config::IdMapping::Names {
        let n = &config.nfs4;
        let domain = n.id_domain.as_deref().unwrap_or_default();
        let map = crate::v4::idmap::IdMap::names(domain, &n.passwd_file, &n.group_file)
            .map_err(|e| StartError(format!("nfs4.id_mapping = \"names\": {e}")))?;
        tracing::info!(domain, "NFSv4 owners are names at {domain}");
        map
    } else {
        crate::v4::idmap::IdMap::default()
    };
    let from_log = in_log.is_some();
    let store: Arc<dyn StateStore> = match (in_log, config.store) {
        (Some(log), _) => log,
        (None, StoreKind::Memory) => Arc::new(MemStateStore::default()),
        (None, StoreKind::Local | StoreKind::Nvme | StoreKind::Auto) => {
            Arc::new(FileStateStore::new(&config.data_dir))
        }
    };
    let state_config = StateConfig {
        lease: lease_time(config),
        nlm_grace: std::time::Duration::from_secs(config.nlm.grace_seconds),
    };
    // Through the metadata log, a leadership change while this node starts is a passing
    // error (the store itself waits 5 s for a leader per call): try for a minute.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let opened = ProtocolState::open(
            identity.clone(),
            Arc::clone(&store),
            state_config.clone(),
            idmap.clone(),
            std::time::Instant::now(),
        )
        .await;
        match opened {
            Ok(state) => return Ok(state),
            Err(e) if from_log && std::time::Instant::now() < deadline => {
                tracing::warn!("the protocol state is not readable from the metadata log yet: {e}; trying again");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(e) => {
                let place = if from_log {
                    "from the metadata log".to_string()
                } else {
                    format!("in {}", config.data_dir.display())
                };
                return Err(StartError(format!(
                    "cannot load the protocol state (NFSv4.1 clients, NSM monitors) {place}: {e}"
                )));
            }
        }
    }
}

pub async fn serve<S: Store>(config: Config, store: S) -> Result<(), StartError> {
    serve_with(config, store, None).await
}

/// [`serve`], with the cluster's membership for the admin API and the protocol state's
/// store in the metadata log (`None`: no metadata log, so a cluster of one that cannot grow,
/// its protocol state in files of the data directory).
pub async fn serve_with<S: Store>(
    config: Config,
    store: S,
    cluster: Option<(
        Arc<dyn ha::members::ClusterAdmin>,
        Arc<dyn crate::state::StateStore>,
    )>,
) -> Result<(), StartError> {
    let (members, docs) = cluster.unzip();
    let key_path = config
        .cluster_key_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join("cluster.key"));
    let fh_key = FhKey::load_or_create(&key_path).map_err(|e| {
        StartError(format!(
            "cannot load the cluster key {}: {e}",
            key_path.display()
        ))
    })?;
    let exports = resolve_exports(&config, &store).await?;
    let (bound, registered) = bind_all(&config).await?;
    let ports = bound.ports;
    let programs = portmap::our_programs(ports.nfs, ports.mount, !bound.mount_udp.is_empty());
    let state = open_state(&config, docs).await?;
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let server = Arc::new(Server {
        metrics: metrics.clone(),
        bytes_read: Default::default(),
        bytes_written: Default::default(),
        store,
        exports: std::sync::RwLock::new(Arc::new(exports)),
        fh_key,
        drc: Drc::new(config.server.drc_entries),
        mounts: Mutex::new(Default::default()),
        state,
        portmap: bound.portmap.as_ref().map(|(t, _)| {
            let port = t.local_addr().map(|a| a.port()).unwrap_or(111);
            PortmapTable::new(port, &programs)
        }),
        ports,
        targets: Default::default(),
    });
    let sc = &config.server;
    let limits = ConnLimits {
        inflight_requests_max: sc.inflight_requests_max,
        inflight_bytes_max: sc.inflight_bytes_max,
        idle_timeout: std::time::Duration::from_secs(sc.idle_timeout_seconds),
        record_timeout: std::time::Duration::from_secs(sc.record_timeout_seconds),
        global_budget: Arc::new(tokio::sync::Semaphore::new(
            sc.global_inflight_bytes_max / transport::BUDGET_UNIT,
        )),
        connections_max: sc.connections_max,
    };
    let targets = Arc::new(crate::qos::TargetTable::new(&config.targets).map_err(StartError)?);
    let _ = server.targets.set(targets.clone());
    {
        let weak = Arc::downgrade(&server);
        metrics.set_state_source(Box::new(move |now| {
            weak.upgrade()
                .map(|s| s.state.summary(now))
                .unwrap_or_default()
        }));
        let weak = Arc::downgrade(&server);
        metrics.set_store_source(Box::new(move || {
            weak.upgrade().map(|s| s.store.stats()).unwrap_or_default()
        }));
        let weak = Arc::downgrade(&server);
        metrics.set_data_source(Box::new(move || {
            weak.upgrade()
                .map(|s| s.store.data_stats())
                .unwrap_or_default()
        }));
    }
    for t in targets.list() {
        tracing::info!(target = %t.name, tier = ?t.pacer.tier(), "mount target");
        publish_rates(&metrics, &t);
    }
    if let Some(a) = config.server.metrics_listen {
        match TcpListener::bind(a).await {
            Ok(l) => {
                tracing::info!("metrics on http://{a}/metrics");
                tokio::spawn(crate::metrics::serve_http(metrics.clone(), l));
            }
            Err(e) => {
                tracing::warn!("no metrics: cannot listen on {a}: {e}; set server.metrics_listen")
            }
        }
    }
    let nfs_bound: Vec<SocketAddr> = bound
        .nfs
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    let target_listeners = bind_targets(&config, &bound.nfs).await?;
    for l in bound
        .nfs
        .into_iter()
        .chain(bound.mount)
        .chain(target_listeners)
    {
        if let Ok(a) = l.local_addr() {
            tracing::info!("listening on {a} (tcp)");
        }
        tokio::spawn(transport::serve_tcp(
            server.clone(),
            l,
            limits.clone(),
            targets.clone(),
        ));
    }
    for u in bound.mount_udp {
        tokio::spawn(transport::serve_udp(server.clone(), u));
    }
    if let Some((t, u)) = bound.portmap {
        tokio::spawn(transport::serve_tcp(
            server.clone(),
            t,
            limits.clone(),
            targets.clone(),
        ));
        tokio::spawn(transport::serve_udp(server.clone(), u));
    }
    for &a in &config.rdma.listen {
        let l = rdma::transport::Listener::bind(a)
            .map_err(|e| StartError(format!("rdma.listen {a}: {e}")))?;
        let handler = Arc::new(transport::RdmaHandler(server.clone()));
        tokio::spawn(async move {
            if let Err(e) = l.serve(handler).await {
                tracing::error!("NFS over RDMA on {a} stopped: {e}");
            }
        });
    }
    server.set_aside_floating_v4();
    {
        let server = server.clone();
        tokio::spawn(async move { server.notify_clients().await });
    }
    let floating_slot = Arc::new(std::sync::OnceLock::new());
    start_admin(
        &config,
        &server,
        &targets,
        &limits,
        nfs_bound.clone(),
        members,
        Arc::clone(&floating_slot),
    )
    .await?;
    let floating = start_floating(&config, &server, &targets, &limits, nfs_bound).await?;
    if let Some(f) = &floating {
        let _ = floating_slot.set(Arc::clone(f));
    }
    for e in server.exports().iter() {
        tracing::info!(export = %e.path, id = e.id, rules = e.rules.len(), "exporting");
    }
    if config.uses_default_export() {
        tracing::warn!(
            "exporting / read-write to EVERY client (root squashed). To restrict access, write \
             a config with [[export]] and [[export.clients]] match = \"10.0.0.0/8\" rules and \
             start with --config FILE (see docs/configuration.md)"
        );
    }
    tracing::info!(
        "sluice ready: mount with `mount -t nfs -o vers=3 <server>:/ /mnt` (NFS port {}, MOUNT port {})",
        ports.nfs,
        ports.mount
    );
    while let Signal::Reload = next_signal().await {
        reload_tiers(&config, &targets);
        for t in targets.list() {
            publish_rates(&metrics, &t);
        }
    }
    tracing::info!("shutting down");
    if let Some(f) = floating {
        f.release_all().await;
    }
    if !registered.is_empty() {
        let _ = tokio::task::spawn_blocking(move || {
            portmap::unregister_from_system_rpcbind(&registered)
        })
        .await;
    }
    Ok(())
}

/// Binds each target's addresses that no NFS listener already covers (a wildcard listener on
/// the same port accepts them, and classification by local address does the rest).
async fn bind_targets(
    config: &Config,
    nfs: &[TcpListener],
) -> Result<Vec<TcpListener>, StartError> {
    let bound: Vec<SocketAddr> = nfs.iter().filter_map(|l| l.local_addr().ok()).collect();
    let covered = |a: &SocketAddr| {
        bound
            .iter()
            .any(|b| b.port() == a.port() && (b.ip().is_unspecified() || b.ip() == a.ip()))
    };
    let mut out = Vec::new();
    for t in &config.targets {
        // A floating target is listened on while this node owns it (start_floating).
        for a in t.listen.iter().filter(|a| !covered(a) && !t.floating) {
            out.push(bind_tcp(*a, &format!("mount target {:?}", t.name)).await?);
        }
    }
    Ok(out)
}

/// Starts the ownership loop of the floating targets (`ops::failover`), if there are any.
async fn start_floating<S: Store>(
    config: &Config,
    server: &Arc<Server<S>>,
    targets: &Arc<crate::qos::TargetTable>,
    limits: &ConnLimits,
    nfs_bound: Vec<SocketAddr>,
) -> Result<Option<Arc<crate::ops::failover::Floating>>, StartError> {
    if !config.targets.iter().any(|t| t.floating) {
        return Ok(None);
    }
    // Checked by Config::check: a floating target needs etcd, so a cluster id.
    let cluster = config.cluster.id.clone().unwrap_or_default();
    let etcd = ha::members::etcd::EtcdTargets::connect(&config.cluster.etcd, &cluster)
        .await
        .map_err(|e| StartError(format!("floating targets: {e}")))?;
    let ttl = std::time::Duration::from_secs(config.cluster.target_lease_seconds);
    let metrics = Arc::clone(&server.metrics);
    let host: Arc<dyn crate::ops::failover::Takeover> = server.clone();
    let server_for_tickles = server.clone();
    let (server, limits, table) = (server.clone(), limits.clone(), targets.clone());
    let listen = Box::new(move |t: Arc<crate::qos::Target>| {
        let (server, limits, table, bound) = (
            server.clone(),
            limits.clone(),
            table.clone(),
            nfs_bound.clone(),
        );
        Box::pin(async move {
            crate::ops::admin::listen_on(&server, &limits, &table, &bound, &t, false).await
        }) as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>
    });
    let floating = Arc::new(crate::ops::failover::Floating {
        node: config.cluster.node_id,
        ttl,
        etcd,
        targets: targets.clone(),
        addresses: crate::ops::failover::Addresses {
            interface: config.cluster.interface.clone(),
            prefix: config.cluster.address_prefix,
            hook: config.cluster.address_hook.clone(),
            lifetime: ttl / 2,
        },
        listen,
        host,
        shared: Default::default(),
        acting: Default::default(),
        preferred: Default::default(),
        metrics,
        unowned_since: Default::default(),
        claimed_at: Default::default(),
    });
    tracing::info!(
        ttl = ?ttl,
        targets = ?config.targets.iter().filter(|t| t.floating).map(|t| &t.name).collect::<Vec<_>>(),
        "floating targets: owned through etcd leases"
    );
    tokio::spawn(Arc::clone(&floating).run());
    tokio::spawn(crate::tickle::keep_saved(
        server_for_tickles,
        targets.clone(),
    ));
    Ok(Some(floating))
}

/// SIGHUP: re-reads the config file and applies tier changes to running targets. Other changes
/// (addresses, exports, new targets) need a restart, and the log says so.
fn reload_tiers(config: &Config, targets: &crate::qos::TargetTable) {
    let Some(path) = &config.source else {
        tracing::warn!("SIGHUP: no config file to reload (started without --config)");
        return;
    };
    let new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("SIGHUP: config not reloaded, the running one stays: {e}");
            return;
        }
    };
    for t in &new.targets {
        let Some(running) = targets.by_name(&t.name) else {
            tracing::warn!(target = %t.name, "SIGHUP: new target needs a restart to be served");
            continue;
        };
        if running.listen != t.listen {
            tracing::warn!(target = %t.name, "SIGHUP: address changes need a restart");
        }
        match t.tier.resolve() {
            Ok(tier) if tier != running.pacer.tier() => match running.set_tier(&t.tier) {
                Ok(()) => tracing::info!(target = %t.name, ?tier, "tier changed"),
                Err(e) => tracing::error!(target = %t.name, "SIGHUP: {e}"),
            },
            Ok(_) => {}
            Err(e) => tracing::error!(target = %t.name, "SIGHUP: {e}"),
        }
    }
}

/// Applies what the admin API changed (the cluster's settings, or this node's from earlier
/// runs), follows other nodes' changes, and serves the API.
async fn start_admin<S: Store>(
    config: &Config,
    server: &Arc<Server<S>>,
    targets: &Arc<crate::qos::TargetTable>,
    limits: &ConnLimits,
    nfs_bound: Vec<SocketAddr>,
    members: Option<Arc<dyn ha::members::ClusterAdmin>>,
    floating: Arc<std::sync::OnceLock<Arc<crate::ops::failover::Floating>>>,
) -> Result<(), StartError> {
    use crate::ops::admin::{Admin, Book};
    let file = config.data_dir.join("admin-state.json");
    // With a metadata log, the settings are the cluster's; without, this node's file.
    let book = match members {
        Some(_) => Book::Log,
        None => Book::File(file.clone()),
    };
    let token_path = config
        .server
        .admin_token_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join("admin.token"));
    let token = crate::ops::admin::load_or_create_token(&token_path)
        .map_err(|e| StartError(format!("admin token {}: {e}", token_path.display())))?;
    let admin = Arc::new(Admin {
        members,
        floating,
        server: server.clone(),
        targets: targets.clone(),
        limits: limits.clone(),
        nfs_bound,
        token,
        book,
        changes: Default::default(),
        applied: Default::default(),
        config_exports: server.exports().iter().map(|e| e.id).collect(),
        data_dir: config.data_dir.clone(),
        store_kind: config.store.name(),
        started: std::time::Instant::now(),
    });
    admin
        .open(&file)
        .await
        .map_err(|e| StartError(format!("the admin API's settings: {e}")))?;
    if let Book::Log = admin.book {
        tokio::spawn(admin.clone().follow());
    }
    let tls = match (&config.server.admin_tls_cert, &config.server.admin_tls_key) {
        (Some(cert), Some(key)) => Some(tokio_rustls::TlsAcceptor::from(
            crate::ops::tls::server_config(cert, key)
                .map_err(|e| StartError(format!("server.admin_tls_cert/key: {e}")))?,
        )),
        _ => None,
    };
    if let Some(a) = config.server.admin_listen {
        match TcpListener::bind(a).await {
            Ok(l) => {
                let scheme = if tls.is_some() { "https" } else { "http" };
                tracing::info!(
                    "admin API on {scheme}://{a}/v1 (token in {})",
                    token_path.display()
                );
                tokio::spawn(crate::ops::admin::serve(admin, l, tls));
            }
            Err(e) => {
                tracing::warn!("no admin API: cannot listen on {a}: {e}; set server.admin_listen")
            }
        }
    }
    Ok(())
}

pub fn publish_rates(metrics: &crate::metrics::Metrics, t: &crate::qos::Target) {
    let tier = t.pacer.tier();
    for (direction, rate) in [
        ("read", tier.read),
        ("write", tier.write),
        ("total", tier.total),
    ] {
        metrics.target_rate(&t.name, direction, rate.unwrap_or(0));
    }
}

enum Signal {
    Reload,
    Stop,
}

async fn next_signal() -> Signal {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return Signal::Stop;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Signal::Stop,
        _ = term.recv() => Signal::Stop,
        _ = hup.recv() => Signal::Reload,
    }
}
