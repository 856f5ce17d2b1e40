//! Server metrics and the HTTP endpoint that exposes them to Prometheus.
//!
//! Job: count what the server does (RPC calls by program, procedure and status with their
//! latency, duplicate request cache hits, connections, payload bytes and pacing per mount target)
//! and serve the counts as OpenMetrics text on `GET /metrics`.
//!
//! Contract:
//! * Recording is cheap and callable from any task: every metric is an atomic (or a short
//!   uncontended lock for histograms) inside `prometheus-client`. Nothing here blocks on I/O.
//! * Label cardinality is bounded. Program, procedure, status and direction labels are
//!   `&'static str` chosen by the caller from fixed tables. Target names come from the
//!   configuration; as a guard against a caller passing something unbounded, at most
//!   [`TARGETS_MAX`] distinct target names are kept and any further one is counted under
//!   [`TARGET_OVERFLOW`].
//! * What [`Metrics::encode`] lists: the unlabelled counters `sluice_drc_hits_total` and
//!   `sluice_connections_refused_total` from the start (value 0). Every labelled family (all the
//!   others) appears, `# HELP`/`# TYPE` lines included, only once one of its label sets has been
//!   used: `prometheus-client` 0.24 skips a family with no series, and cannot invent label
//!   values. So a server that has answered no call yet shows no `sluice_rpc_calls_total`; a
//!   dashboard treats the missing series as 0.
//! * [`serve_http`] is a deliberately small HTTP/1.1 responder, not a web server: one request
//!   per connection, request head at most [`HTTP_HEAD_MAX`] bytes read within
//!   [`HTTP_READ_TIMEOUT`], answer, close. A client that sends nothing, too much or garbage costs
//!   at most one bounded task for the timeout, and at most [`HTTP_CONNECTIONS_MAX`] such tasks
//!   exist at once.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Most distinct target names the per-target families keep (see the module contract).
pub const TARGETS_MAX: usize = 256;
/// The target label used for names beyond [`TARGETS_MAX`]. Not a valid export name, so it
/// cannot collide with a real target.
pub const TARGET_OVERFLOW: &str = "_other";

/// Largest HTTP request head accepted by [`serve_http`]; a scrape request is a few hundred bytes.
pub const HTTP_HEAD_MAX: usize = 8 * 1024;
/// Time a client gets to send its whole request head, and again to take the whole response.
pub const HTTP_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes of unread input [`serve_http`] discards after its response before closing.
const HTTP_DRAIN_MAX: usize = 64 * 1024;
/// HTTP connections handled at once; further ones wait in the listen backlog.
pub const HTTP_CONNECTIONS_MAX: usize = 16;

/// The Content-Type of `/metrics`: `prometheus-client` writes OpenMetrics text (with `# EOF`
/// and `_total` samples under a `# TYPE name counter` line), which Prometheus accepts under
/// this type. Serving it as `text/plain; version=0.0.4` would make Prometheus read the counters
/// as untyped, so the type is not negotiated.
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of `sluice_rpc_calls_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    program: &'static str,
    procedure: &'static str,
    status: &'static str,
}

/// Labels of `sluice_rpc_latency_seconds`: no status, so the series count stays
/// programs × procedures (a histogram is ~20 series per label set).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcLabels {
    program: &'static str,
    procedure: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OwnershipLabels {
    target: String,
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TakeoverLabels {
    target: String,
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetDirLabels {
    target: String,
    direction: &'static str,
}

/// A histogram family; the constructor is a plain `fn` so the type can be named in a field.
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// RPC latency bucket bounds in seconds: 50 µs (a cached GETATTR on loopback) to 10 s (a stuck
/// backend), growing exponentially in the 1-2.5-5 steps Prometheus users read at a glance
/// (`exponential_buckets_range` gives the same spacing with bounds like 9.999999999999984).
const LATENCY_BUCKETS: [f64; 17] = [
    50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3,
    1.0, 2.5, 5.0, 10.0,
];

/// Pacing delay bucket bounds in seconds: an exact 0 bucket (the request was not held back at
/// all, the common case), then 100 µs to 10 s like [`LATENCY_BUCKETS`].
const THROTTLE_BUCKETS: [f64; 17] = [
    0.0, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3,
    1.0, 2.5, 5.0, 10.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

fn throttle_histogram() -> Histogram {
    Histogram::new(THROTTLE_BUCKETS)
}

/// Every metric of a server. Cheap to update from any task (atomics inside prometheus-client).
pub struct Metrics {
    registry: Registry,
    rpc_calls: Family<CallLabels, Counter>,
    rpc_latency: HistogramFamily<ProcLabels>,
    rpc_phase: HistogramFamily<PhaseLabels>,
    drc_hits: Counter,
    connections_open: Family<TargetLabels, Gauge>,
    connections_opened: Family<TargetLabels, Counter>,
    connections_refused: Counter,
    target_bytes: Family<TargetDirLabels, Counter>,
    throttle_delay: HistogramFamily<TargetDirLabels>,
    target_rate: Family<TargetDirLabels, Gauge>,
    ownership: Family<OwnershipLabels, Counter>,
    takeover: Family<TakeoverLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Target names seen so far, for the [`TARGETS_MAX`] bound.
    targets: RwLock<HashSet<String>>,
    /// Wraps every request future (transport.rs): poll, scheduling and idle time of requests.
    pub task_monitor: tokio_metrics::TaskMonitor,
    /// Read from `task_monitor` and the runtime at each scrape.
    runtime: Family<RuntimeLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// NFSv4.1 clients, sessions, stateids and grace, read at scrape time.
    nfs4: Family<RuntimeLabels, Gauge>,
    /// Where those come from: set once the server's protocol state exists.
    state_source: std::sync::OnceLock<StateSource>,
    /// The store's own figures (the metadata log's, when metadata goes through it).
    store: Family<RuntimeLabels, Gauge>,
    data: Family<RuntimeLabels, Gauge>,
    store_source: std::sync::OnceLock<StoreSource>,
    data_source: std::sync::OnceLock<StoreSource>,
}

/// Reads the store's figures at a scrape (`Store::stats`).
pub type StoreSource = Box<dyn Fn() -> Vec<(&'static str, u64)> + Send + Sync + 'static>;

/// Reads the protocol state's counts at a scrape (`now` passed in).
pub type StateSource =
    Box<dyn Fn(std::time::Instant) -> crate::state::StateSummary + Send + Sync + 'static>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuntimeLabels {
    metric: &'static str,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let rpc_calls = Family::<CallLabels, Counter>::default();
        let rpc_latency: HistogramFamily<ProcLabels> =
            Family::new_with_constructor(latency_histogram);
        let rpc_phase: HistogramFamily<PhaseLabels> =
            Family::new_with_constructor(latency_histogram);
        let drc_hits = Counter::default();
        let connections_open = Family::<TargetLabels, Gauge>::default();
        let connections_opened = Family::<TargetLabels, Counter>::default();
        let connections_refused = Counter::default();
        let target_bytes = Family::<TargetDirLabels, Counter>::default();
        let throttle_delay: HistogramFamily<TargetDirLabels> =
            Family::new_with_constructor(throttle_histogram);
        let target_rate = Family::<TargetDirLabels, Gauge>::default();
        let ownership = Family::<OwnershipLabels, Counter>::default();
        let takeover =
            Family::<TakeoverLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let runtime = Family::<RuntimeLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let nfs4 = Family::<RuntimeLabels, Gauge>::default();
        let store = Family::<RuntimeLabels, Gauge>::default();
        let data = Family::<RuntimeLabels, Gauge>::default();

        // Names are given without the `_total` suffix: prometheus-client appends it to
        // counter samples (and OpenMetrics names the counter family without it).
        let mut registry = Registry::default();
        registry.register(
            "sluice_rpc_calls",
            "RPC calls answered, by program, procedure and wire status",
            rpc_calls.clone(),
        );
        registry.register(
            "sluice_rpc_latency_seconds",
            "Time from a decoded RPC call to its encoded reply, by program and procedure",
            rpc_latency.clone(),
        );
        registry.register(
            "sluice_rpc_phase_seconds",
            "Where a request's time goes: queue (complete record to start, waiting for the \
             in-flight budget or pacing), backend (running the call), wire (reply ready to \
             written to the socket)",
            rpc_phase.clone(),
        );
        registry.register(
            "sluice_drc_hits",
            "Retransmitted calls answered from the duplicate request cache",
            drc_hits.clone(),
        );
        registry.register(
            "sluice_connections_open",
            "Client connections open now, by mount target",
            connections_open.clone(),
        );
        registry.register(
            "sluice_connections_opened",
            "Client connections accepted, by mount target",
            connections_opened.clone(),
        );
        registry.register(
            "sluice_connections_refused",
            "Client connections refused because the connection cap was reached",
            connections_refused.clone(),
        );
        registry.register(
            "sluice_target_bytes",
            "File payload bytes moved, by mount target and direction (read, write)",
            target_bytes.clone(),
        );
        registry.register(
            "sluice_target_throttle_delay_seconds",
            "Time a request was held back by its target's pacing (0 when not delayed)",
            throttle_delay.clone(),
        );
        registry.register(
            "sluice_target_rate_bytes_per_second",
            "Configured rate limit of a target by direction (read, write, total); 0 is unlimited",
            target_rate.clone(),
        );
        registry.register(
            "sluice_target_ownership",
            "Ownership events of floating targets on this node: claimed (an etcd claim won), \
             serving (addresses up and listening), stopped_self_fenced, stopped_lost, \
             stopped_moved, stopped_gone, released (the owner key given up)",
            ownership.clone(),
        );
        registry.register(
            "sluice_target_takeover_seconds",
            "This node's last takeover of a floating target, by phase: unowned_to_claimed \
             (from the first read that found the target without an owner to the won claim; \
             the dead owner's lease, target_lease_seconds, comes before it) and \
             claimed_to_serving (addresses up, announced and listening)",
            takeover.clone(),
        );

        registry.register(
            "sluice_runtime",
            "Tokio runtime and request-task figures, read at scrape time: workers, alive_tasks, \
             global_queue_depth, and cumulative request_polls_seconds (running), \
             request_scheduled_seconds (woken but waiting for a worker), request_idle_seconds \
             (waiting on I/O), requests_instrumented",
            runtime.clone(),
        );

        registry.register(
            "sluice_nfs4",
            "NFSv4.1 state, read at scrape time: clients (confirmed), sessions, state_ids (open \
             and lock stateids), grace (1 during the grace period after a restart), \
             clients_to_reclaim",
            nfs4.clone(),
        );
        registry.register(
            "sluice_metadata_log",
            "The metadata log, read at scrape time (only when [cluster] metadata = \"log\"): \
             voters, followers_lag_max (on the leader: entries the slowest voter lacks), term \
             (counts elections), leader, is_leader, last_log_index, applied_index, apply_lag, \
             entries_proposed and batches_proposed (their ratio is the group size), \
             batches_failed, commit_micros_sum (time from proposal to outcome, per entry), \
             snapshot_index (of this node's last snapshot), purged_index (the log is compacted up \
             to it), snapshots_installed (sent by the \
             leader to a node that was behind), calls_shipped (to the leader), \
             calls_answered (for other nodes), calls_replayed (retried calls that had run \
             under an earlier leader, answered from the state they left) and \
             read_barrier_rounds (heartbeat rounds run to confirm the leadership for reads; \
             reads within a round's lease need none); on the writing node, the rebuild of file \
             copies lost with nodes that left: copies_restored and copies_restored_bytes, \
             files_degraded (after the last pass: files with a copy on a departed node and no \
             free voter to take it), files_restore_failed (the last pass could not copy them; \
             retried), rebuild_passes, copies_repaired (ranges of a copy that failed a read, \
             written again from a good copy), scrub_bytes, scrub_skipped_bytes, scrub_passes \
             and scrub_bad_ranges (the background scrub: bytes of copies checked on their \
             disks, bytes it could not check, passes ended, ranges that failed the check and \
             were queued for repair), copies_dropped (copies taken out of their \
             file's layout because their node did not answer a change the other copies took), \
             files_waiting_for_copies (after the last pass: files with fewer copies than \
             cluster.replicas whose free voters did not answer lately), data_calls_fenced \
             (data calls this node \
             refused because their writer's term was older than one it had seen), and \
             target_calls_fenced (calls this node refused as the metadata writer because they \
             came from an earlier owner of a floating target that a later owner had fenced)",
            store.clone(),
        );
        registry.register(
            "sluice_data_store",
            "This node's data store, read at scrape time (nvme store): block_cache_capacity_bytes \
             (the [nvme] cache_mib bound), block_cache_bytes and block_cache_blocks (held now, \
             bytes with overhead), block_cache_memory_bytes (memory taken for blocks, in 2 MiB \
             slabs), block_cache_hits and block_cache_misses (4 KiB block lookups by reads), \
             block_cache_inserts (blocks put in by reads and writes), block_cache_fills_skipped \
             (blocks left out while the cache's memory was still growing), \
             block_cache_evictions, write_back_writes (UNSTABLE writes acknowledged before their \
             device write), write_back_blocks (their blocks still being written), \
             write_back_capacity_blocks (the [nvme] write_back_mib bound) and \
             write_back_failures (background writes that failed: each changed the write verifier)",
            data.clone(),
        );

        Metrics {
            store,
            data,
            data_source: std::sync::OnceLock::new(),
            store_source: std::sync::OnceLock::new(),
            task_monitor: tokio_metrics::TaskMonitor::new(),
            runtime,
            nfs4,
            state_source: std::sync::OnceLock::new(),
            registry,
            rpc_calls,
            rpc_latency,
            rpc_phase,
            drc_hits,
            connections_open,
            connections_opened,
            connections_refused,
            target_bytes,
            throttle_delay,
            target_rate,
            ownership,
            takeover,
            targets: RwLock::new(HashSet::new()),
        }
    }

    /// One RPC call answered: `program` is a fixed label like "nfs3", "mount3", "nlm4", "nsm1",
    /// "portmap"; `procedure` a fixed name ("READ", "WRITE", ...: the RFC procedure names);
    /// `status` the wire status name ("OK", "NOENT", "JUKEBOX", ..., or
    /// "GARBAGE_ARGS"/"PROC_UNAVAIL"/"AUTH_ERROR" for RPC-level outcomes) and the latency.
    pub fn rpc_call(
        &self,
        program: &'static str,
        procedure: &'static str,
        status: &'static str,
        latency: Duration,
    ) {
        self.rpc_calls
            .get_or_create(&CallLabels {
                program,
                procedure,
                status,
            })
            .inc();
        self.rpc_latency
            .get_or_create(&ProcLabels { program, procedure })
            .observe(latency.as_secs_f64());
    }

    /// A duplicate request cache hit (a retransmission answered from the cache).
    /// Time a request spent in one phase: "queue", "backend" or "wire".
    pub fn rpc_phase(&self, phase: &'static str, d: Duration) {
        self.rpc_phase
            .get_or_create(&PhaseLabels { phase })
            .observe(d.as_secs_f64());
    }

    pub fn drc_hit(&self) {
        self.drc_hits.inc();
    }

    /// A connection was accepted for `target` (a mount target name from the configuration).
    pub fn connection_opened(&self, target: &str) {
        let labels = TargetLabels {
            target: self.target_label(target),
        };
        self.connections_open.get_or_create(&labels).inc();
        self.connections_opened.get_or_create(&labels).inc();
    }

    /// A connection counted by [`Metrics::connection_opened`] was closed.
    pub fn connection_closed(&self, target: &str) {
        let labels = TargetLabels {
            target: self.target_label(target),
        };
        self.connections_open.get_or_create(&labels).dec();
    }

    /// A connection refused by the connection cap.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// Payload bytes moved for a target: direction "read" or "write".
    pub fn target_bytes(&self, target: &str, direction: &'static str, bytes: u64) {
        self.target_bytes
            .get_or_create(&self.target_dir(target, direction))
            .inc_by(bytes);
    }

    /// How long a request was held back by its target's pacing (0 for not delayed), per
    /// direction.
    pub fn throttle_delay(&self, target: &str, direction: &'static str, delay: Duration) {
        self.throttle_delay
            .get_or_create(&self.target_dir(target, direction))
            .observe(delay.as_secs_f64());
    }

    /// The configured rate of a target, bytes per second per direction ("read", "write",
    /// "total"; 0 = unlimited); set at startup and on a tier change.
    pub fn target_rate(&self, target: &str, direction: &'static str, bytes_per_second: u64) {
        // The gauge is an i64; a rate above 2^63 B/s is unlimited in all but name.
        let value = i64::try_from(bytes_per_second).unwrap_or(i64::MAX);
        self.target_rate
            .get_or_create(&self.target_dir(target, direction))
            .set(value);
    }

    /// An ownership event of a floating target (see `sluice_target_ownership`).
    pub fn ownership(&self, target: &str, event: &'static str) {
        self.ownership
            .get_or_create(&OwnershipLabels {
                target: self.target_label(target),
                event,
            })
            .inc();
    }

    /// How long a phase of this node's last takeover of `target` took.
    pub fn takeover(&self, target: &str, phase: &'static str, took: Duration) {
        self.takeover
            .get_or_create(&TakeoverLabels {
                target: self.target_label(target),
                phase,
            })
            .set(took.as_secs_f64());
    }

    /// Prometheus text exposition (OpenMetrics text format as prometheus-client encodes it,
    /// ending in `# EOF`).
    /// Refreshes the figures that are read rather than counted.
    fn refresh_runtime(&self) {
        let set = |metric: &'static str, v: f64| {
            self.runtime.get_or_create(&RuntimeLabels { metric }).set(v);
        };
        let t = self.task_monitor.cumulative();
        set("requests_instrumented", t.instrumented_count as f64);
        set("request_polls_seconds", t.total_poll_duration.as_secs_f64());
        set(
            "request_scheduled_seconds",
            t.total_scheduled_duration.as_secs_f64(),
        );
        set("request_idle_seconds", t.total_idle_duration.as_secs_f64());
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            let m = h.metrics();
            set("workers", m.num_workers() as f64);
            set("alive_tasks", m.num_alive_tasks() as f64);
            set("global_queue_depth", m.global_queue_depth() as f64);
        }
    }

    /// Makes scrapes read the protocol state through `source` (set once; later calls are
    /// ignored).
    pub fn set_state_source(&self, source: StateSource) {
        let _ = self.state_source.set(source);
    }

    /// Makes scrapes read the store's figures through `source` (set once).
    pub fn set_store_source(&self, source: StoreSource) {
        let _ = self.store_source.set(source);
    }

    /// Where the data store's figures come from (`Store::data_stats`).
    pub fn set_data_source(&self, source: StoreSource) {
        let _ = self.data_source.set(source);
    }

    fn refresh_store(&self) {
        for (family, source) in [
            (&self.store, &self.store_source),
            (&self.data, &self.data_source),
        ] {
            let Some(source) = source.get() else {
                continue;
            };
            for (metric, value) in source() {
                family
                    .get_or_create(&RuntimeLabels { metric })
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            }
        }
    }

    fn refresh_nfs4(&self) {
        let s = self
            .state_source
            .get()
            .map(|source| source(std::time::Instant::now()))
            .unwrap_or_default();
        let set = |metric: &'static str, v: usize| {
            self.nfs4
                .get_or_create(&RuntimeLabels { metric })
                .set(v as i64);
        };
        set("clients", s.nfs4_clients);
        set("sessions", s.nfs4_sessions);
        set("state_ids", s.nfs4_state_ids);
        set("grace", usize::from(s.grace));
        set("clients_to_reclaim", s.nfs4_clients_to_reclaim);
    }

    pub fn encode(&self) -> String {
        self.refresh_runtime();
        self.refresh_nfs4();
        self.refresh_store();
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail and none of our label types returns an error, so an
        // error here is a library bug: report it and serve what was written rather than
        // panicking (a panic aborts the whole NFS server in release builds).
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!("metrics encoding failed: {e}");
        }
        out
    }

    fn target_dir(&self, target: &str, direction: &'static str) -> TargetDirLabels {
        TargetDirLabels {
            target: self.target_label(target),
            direction,
        }
    }

    /// The label value for `target`: the name itself while fewer than [`TARGETS_MAX`] names
    /// have been seen, else [`TARGET_OVERFLOW`].
    fn target_label(&self, target: &str) -> String {
        // A poisoned lock only means another task panicked while inserting a name; the set is
        // still a valid set, so keep using it.
        let known = self.targets.read().unwrap_or_else(|p| p.into_inner());
        if known.contains(target) {
            return target.to_string();
        }
        drop(known);
        let mut known = self.targets.write().unwrap_or_else(|p| p.into_inner());
        if known.contains(target) || known.len() < TARGETS_MAX {
            known.insert(target.to_string());
            target.to_string()
        } else {
            TARGET_OVERFLOW.to_string()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP endpoint
// ---------------------------------------------------------------------------------------------

/// Serves GET /metrics (and GET / with a one-line hint) over plain HTTP/1.1 on `listener` until
/// the task is dropped. Dropping the future also aborts the connections it is still serving.
pub async fn serve_http(metrics: Arc<Metrics>, listener: TcpListener) {
    serve_http_with(metrics, listener, HTTP_READ_TIMEOUT).await;
}

/// [`serve_http`] with the timeout as a parameter, so tests need not wait 5 s.
async fn serve_http_with(metrics: Arc<Metrics>, listener: TcpListener, timeout: Duration) {
    let slots = Arc::new(Semaphore::new(HTTP_CONNECTIONS_MAX));
    // Owned by this future: dropping it aborts every connection task.
    let mut conns = JoinSet::new();
    loop {
        // Reap finished connection tasks so the set does not grow with every scrape.
        while conns.try_join_next().is_some() {}
        // Take a slot before accepting, so excess clients wait in the kernel backlog instead
        // of costing a task each.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return; // The semaphore is never closed.
        };
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // Usually EMFILE or a connection reset before accept; back off briefly so an
                // fd shortage does not become a busy loop.
                tracing::warn!("metrics listener: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = Arc::clone(&metrics);
        conns.spawn(async move {
            handle_http(&metrics, stream, timeout).await;
            drop(slot);
        });
    }
}

/// One request, one response, close. Errors are the client's problem and are dropped.
async fn handle_http(metrics: &Metrics, mut stream: TcpStream, timeout: Duration) {
    let reply = match tokio::time::timeout(timeout, read_head(&mut stream)).await {
        Ok(Ok(head)) => route(metrics, &head),
        Ok(Err(HeadError::TooLarge)) => response(
            "431 Request Header Fields Too Large",
            "text/plain",
            "",
            b"request head too large\n",
        ),
        // The client closed, the socket failed or the timeout passed: nobody to answer.
        Ok(Err(HeadError::Io)) | Err(_) => return,
    };
    let finish = async {
        stream.write_all(&reply).await?;
        stream.shutdown().await?;
        // Closing a socket with unread input makes the kernel send RST, which can destroy the
        // response before the client reads it (an oversized head, a body we ignored). So read
        // what the client still sends until it closes too, bounded in bytes and by the timeout.
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < HTTP_DRAIN_MAX {
            match stream.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<(), std::io::Error>(())
    };
    let _ = tokio::time::timeout(timeout, finish).await;
}

enum HeadError {
    TooLarge,
    Io,
}

/// Reads until the blank line that ends the request head; the bytes after it (a body, which a
/// GET does not have) are ignored.
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, HeadError> {
    let mut buf = vec![0u8; HTTP_HEAD_MAX];
    let mut len = 0;
    loop {
        if len == buf.len() {
            return Err(HeadError::TooLarge);
        }
        let n = stream
            .read(&mut buf[len..])
            .await
            .map_err(|_| HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Io);
        }
        // Search only the new bytes plus the 3 before them, where a terminator could start.
        let from = len.saturating_sub(3);
        len += n;
        if let Some(end) = head_end(&buf[from..len]) {
            buf.truncate(from + end);
            return Ok(buf);
        }
    }
}

/// Where the head ends in `b`: after "\r\n\r\n", or "\n\n" from lenient clients.
fn head_end(b: &[u8]) -> Option<usize> {
    (0..b.len()).find_map(|i| {
        if b[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if b[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

/// The response to a request head.
fn route(metrics: &Metrics, head: &[u8]) -> Vec<u8> {
    let line = head.split(|&c| c == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_ascii_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return response("400 Bad Request", "text/plain", "", b"bad request line\n");
    };
    if !version.starts_with("HTTP/1.") {
        return response("400 Bad Request", "text/plain", "", b"HTTP/1.x only\n");
    }
    // HEAD is GET without the body (RFC 9110 says every server supports both).
    let with_body = match method {
        "GET" => true,
        "HEAD" => false,
        _ => {
            return response(
                "405 Method Not Allowed",
                "text/plain",
                "Allow: GET, HEAD\r\n",
                b"only GET\n",
            )
        }
    };
    let path = target.split('?').next().unwrap_or_default();
    let (status, content_type, body) = match path {
        "/metrics" => (
            "200 OK",
            OPENMETRICS_CONTENT_TYPE,
            metrics.encode().into_bytes(),
        ),
        "/" => (
            "200 OK",
            "text/plain; charset=utf-8",
            b"Sluice NFS server: metrics are at /metrics\n".to_vec(),
        ),
        _ => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
    };
    if with_body {
        response(status, content_type, "", &body)
    } else {
        let mut r = response(status, content_type, "", &body);
        r.truncate(r.len() - body.len());
        r
    }
}

/// A complete HTTP/1.1 response; `extra` is zero or more header lines ending in CRLF.
fn response(status: &str, content_type: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One sample line: name, labels sorted by key, value.
    type Sample = (String, Vec<(String, String)>, f64);

    /// The samples of an exposition; comments skipped.
    fn samples(text: &str) -> Vec<Sample> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').expect("`series value`");
                let value: f64 = value.parse().expect("numeric value");
                let (name, mut labels) = match series.split_once('{') {
                    None => (series.to_string(), Vec::new()),
                    Some((name, rest)) => {
                        let body = rest.strip_suffix('}').expect("closing brace");
                        // Our label values never contain `,` or `"`, so a plain split is exact.
                        let labels = body
                            .split(',')
                            .map(|kv| {
                                let (k, v) = kv.split_once('=').expect("k=v");
                                (k.to_string(), v.trim_matches('"').to_string())
                            })
                            .collect();
                        (name.to_string(), labels)
                    }
                };
                labels.sort();
                (name, labels, value)
            })
            .collect()
    }

    /// The value of sample `name` with exactly `labels` (in any order), if present.
    fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut want: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        want.sort();
        samples(text)
            .into_iter()
            .find(|(n, l, _)| n == name && *l == want)
            .map(|(_, _, v)| v)
    }

    /// Every `# TYPE` family name in `text`.
    fn families(text: &str) -> Vec<&str> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
            .collect()
    }

    #[test]
    fn a_recorded_call_is_counted_under_its_program_procedure_and_status() {
        let m = Metrics::new();
        m.rpc_call("nfs3", "WRITE", "OK", Duration::from_micros(300));
        m.rpc_call("nfs3", "WRITE", "OK", Duration::from_micros(300));
        m.rpc_call("nfs3", "WRITE", "NOSPC", Duration::from_micros(300));
        let text = m.encode();
        let calls = |status| {
            sample(
                &text,
                "sluice_rpc_calls_total",
                &[
                    ("program", "nfs3"),
                    ("procedure", "WRITE"),
                    ("status", status),
                ],
            )
        };
        assert_eq!(calls("OK"), Some(2.0), "{text}");
        assert_eq!(calls("NOSPC"), Some(1.0), "{text}");
        assert_eq!(calls("JUKEBOX"), None, "{text}");
        // The latency family has no status label: all three calls are in one histogram.
        assert_eq!(
            sample(
                &text,
                "sluice_rpc_latency_seconds_count",
                &[("program", "nfs3"), ("procedure", "WRITE")]
            ),
            Some(3.0),
            "{text}"
        );
    }

    #[test]
    fn a_latency_lands_in_every_bucket_at_or_above_it_and_in_count_and_sum() {
        let m = Metrics::new();
        m.rpc_call("nfs3", "READ", "OK", Duration::from_millis(3));
        let text = m.encode();
        let labels = [("program", "nfs3"), ("procedure", "READ")];
        assert_eq!(
            sample(&text, "sluice_rpc_latency_seconds_count", &labels),
            Some(1.0),
            "{text}"
        );
        let sum = sample(&text, "sluice_rpc_latency_seconds_sum", &labels).expect("sum");
        assert!((sum - 0.003).abs() < 1e-9, "{sum}");
        // Buckets are cumulative: those below 3 ms hold 0, those at or above hold 1.
        let buckets: Vec<(String, f64)> = samples(&text)
            .into_iter()
            .filter(|(n, _, _)| n == "sluice_rpc_latency_seconds_bucket")
            .map(|(_, l, v)| {
                let le = l.into_iter().find(|(k, _)| k == "le").expect("le").1;
                (le, v)
            })
            .collect();
        assert_eq!(
            buckets.len(),
            LATENCY_BUCKETS.len() + 1,
            "plus +Inf: {text}"
        );
        for (le, value) in &buckets {
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().expect("le")
            };
            assert_eq!(*value, if bound >= 0.003 { 1.0 } else { 0.0 }, "le={le}");
        }
        let les: Vec<&str> = buckets.iter().map(|(le, _)| le.as_str()).collect();
        assert_eq!(les.first(), Some(&"0.00005"), "{les:?}");
        assert_eq!(les[les.len() - 2], "10.0", "{les:?}");
    }

    #[test]
    fn an_undelayed_request_falls_in_the_zero_bucket_of_the_throttle_histogram() {
        let m = Metrics::new();
        m.throttle_delay("fast", "read", Duration::ZERO);
        m.throttle_delay("fast", "read", Duration::from_millis(50));
        let text = m.encode();
        let bucket = |le| {
            sample(
                &text,
                "sluice_target_throttle_delay_seconds_bucket",
                &[("target", "fast"), ("direction", "read"), ("le", le)],
            )
        };
        assert_eq!(bucket("0.0"), Some(1.0), "{text}");
        assert_eq!(bucket("0.0001"), Some(1.0), "{text}");
        assert_eq!(bucket("0.05"), Some(2.0), "{text}");
        assert_eq!(bucket("+Inf"), Some(2.0), "{text}");
    }

    #[test]
    fn the_store_s_figures_show_once_a_store_reports_them() {
        let m = Metrics::new();
        assert!(!m.encode().contains("sluice_metadata_log{"));
        m.set_store_source(Box::new(|| vec![("term", 3), ("apply_lag", 0)]));
        m.set_data_source(Box::new(|| vec![("block_cache_hits", 12)]));
        let text = m.encode();
        assert_eq!(
            sample(&text, "sluice_metadata_log", &[("metric", "term")]),
            Some(3.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                "sluice_data_store",
                &[("metric", "block_cache_hits")]
            ),
            Some(12.0),
            "{text}"
        );
    }

    #[test]
    fn unlabelled_counters_show_from_the_start_and_every_family_once_used() {
        let m = Metrics::new();
        let text = m.encode();
        assert_eq!(
            families(&text),
            [
                "sluice_drc_hits",
                "sluice_connections_refused",
                "sluice_runtime",
                "sluice_nfs4"
            ],
            "{text}"
        );
        assert_eq!(sample(&text, "sluice_drc_hits_total", &[]), Some(0.0));
        assert_eq!(
            sample(&text, "sluice_connections_refused_total", &[]),
            Some(0.0)
        );
        assert!(text.ends_with("# EOF\n"), "{text}");

        m.rpc_call("nfs3", "NULL", "OK", Duration::ZERO);
        m.connection_opened("t");
        m.target_bytes("t", "read", 1);
        m.throttle_delay("t", "read", Duration::ZERO);
        m.target_rate("t", "read", 0);
        m.ownership("t", "claimed");
        m.takeover("t", "claimed_to_serving", Duration::ZERO);
        let text = m.encode();
        let mut got = families(&text);
        got.sort_unstable();
        let mut want = [
            "sluice_runtime",
            "sluice_nfs4",
            "sluice_rpc_calls",
            "sluice_rpc_latency_seconds",
            "sluice_drc_hits",
            "sluice_connections_open",
            "sluice_connections_opened",
            "sluice_connections_refused",
            "sluice_target_bytes",
            "sluice_target_throttle_delay_seconds",
            "sluice_target_rate_bytes_per_second",
            "sluice_target_ownership",
            "sluice_target_takeover_seconds",
        ];
        want.sort_unstable();
        assert_eq!(got, want, "{text}");
        // Every sample line parses as `name{labels} value` or `name value`.
        assert!(!samples(&text).is_empty());
    }

    #[test]
    fn ownership_events_count_per_target_and_takeover_phases_keep_the_last_duration() {
        let m = Metrics::new();
        m.ownership("ckpt", "claimed");
        m.ownership("ckpt", "claimed");
        m.ownership("ckpt", "stopped_moved");
        m.takeover("ckpt", "unowned_to_claimed", Duration::from_millis(300));
        m.takeover("ckpt", "unowned_to_claimed", Duration::from_millis(250));
        let text = m.encode();
        let events = |e| {
            sample(
                &text,
                "sluice_target_ownership_total",
                &[("target", "ckpt"), ("event", e)],
            )
        };
        assert_eq!(events("claimed"), Some(2.0), "{text}");
        assert_eq!(events("stopped_moved"), Some(1.0), "{text}");
        assert_eq!(
            sample(
                &text,
                "sluice_target_takeover_seconds",
                &[("target", "ckpt"), ("phase", "unowned_to_claimed")]
            ),
            Some(0.25),
            "{text}"
        );
    }

    #[test]
    fn connections_target_bytes_and_rates_are_reported_per_target() {
        let m = Metrics::new();
        m.connection_opened("gold");
        m.connection_opened("gold");
        m.connection_closed("gold");
        m.connection_refused();
        m.drc_hit();
        m.target_bytes("gold", "write", 4096);
        m.target_bytes("gold", "write", 4096);
        m.target_rate("gold", "total", 100 << 20);
        m.target_rate("gold", "read", u64::MAX);
        let text = m.encode();
        let gold = [("target", "gold")];
        assert_eq!(sample(&text, "sluice_connections_open", &gold), Some(1.0));
        assert_eq!(
            sample(&text, "sluice_connections_opened_total", &gold),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "sluice_connections_refused_total", &[]),
            Some(1.0)
        );
        assert_eq!(sample(&text, "sluice_drc_hits_total", &[]), Some(1.0));
        assert_eq!(
            sample(
                &text,
                "sluice_target_bytes_total",
                &[("target", "gold"), ("direction", "write")]
            ),
            Some(8192.0)
        );
        let rate = |direction| {
            sample(
                &text,
                "sluice_target_rate_bytes_per_second",
                &[("target", "gold"), ("direction", direction)],
            )
        };
        assert_eq!(rate("total"), Some((100u64 << 20) as f64));
        assert_eq!(
            rate("read"),
            Some(i64::MAX as f64),
            "a rate above i64::MAX saturates"
        );
    }

    #[test]
    fn target_names_beyond_the_cap_are_folded_into_one_overflow_label() {
        let m = Metrics::new();
        for i in 0..TARGETS_MAX + 10 {
            m.target_bytes(&format!("t{i}"), "read", 1);
        }
        // A name seen before the cap keeps its own label afterwards.
        m.target_bytes("t0", "read", 1);
        let text = m.encode();
        let series = samples(&text)
            .into_iter()
            .filter(|(n, _, _)| n == "sluice_target_bytes_total")
            .count();
        assert_eq!(
            series,
            TARGETS_MAX + 1,
            "{TARGETS_MAX} names plus the overflow label"
        );
        let read = |target| {
            sample(
                &text,
                "sluice_target_bytes_total",
                &[("target", target), ("direction", "read")],
            )
        };
        assert_eq!(read(TARGET_OVERFLOW), Some(10.0));
        assert_eq!(read("t0"), Some(2.0));
    }

    // -- HTTP ---------------------------------------------------------------------------------

    /// A server on 127.0.0.1 with `timeout`; returns its address and the task (aborted on drop
    /// of the runtime at the end of the test).
    async fn start(metrics: Arc<Metrics>, timeout: Duration) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        tokio::spawn(serve_http_with(metrics, listener, timeout));
        addr
    }

    /// Sends `request` and reads the whole response (the server closes the connection).
    async fn exchange(addr: std::net::SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(request.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .expect("the server closes the connection after its response")
            .expect("read");
        String::from_utf8(out).expect("utf-8 response")
    }

    #[tokio::test]
    async fn get_metrics_answers_200_with_the_openmetrics_text() {
        let m = Arc::new(Metrics::new());
        m.rpc_call("nfs3", "GETATTR", "OK", Duration::from_micros(80));
        let addr = start(Arc::clone(&m), HTTP_READ_TIMEOUT).await;
        let r = exchange(
            addr,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
        )
        .await;
        let (head, body) = r.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains(&format!("Content-Type: {OPENMETRICS_CONTENT_TYPE}\r\n")),
            "{head}"
        );
        assert!(
            head.contains(&format!("Content-Length: {}\r\n", body.len())),
            "{head}"
        );
        assert!(head.contains("Connection: close"), "{head}");
        assert!(
            body.contains(
                r#"sluice_rpc_calls_total{program="nfs3",procedure="GETATTR",status="OK"} 1"#
            ),
            "{body}"
        );
        assert!(body.ends_with("# EOF\n"));

        // A query string is not part of the path.
        let r = exchange(addr, "GET /metrics?x=1 HTTP/1.0\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    }

    #[tokio::test]
    async fn other_paths_get_404_other_methods_405_and_the_root_a_hint() {
        let addr = start(Arc::new(Metrics::new()), HTTP_READ_TIMEOUT).await;
        let r = exchange(addr, "GET /nope HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"), "{r}");
        let r = exchange(addr, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{r}");
        assert!(r.contains("Allow: GET, HEAD\r\n"), "{r}");
        let r = exchange(addr, "GET / HTTP/1.1\r\n\r\n").await;
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.contains("/metrics"),
            "{r}"
        );
        let r = exchange(addr, "HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\n"),
            "{r}"
        );
        let r = exchange(addr, "garbage\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{r}");
    }

    #[tokio::test]
    async fn a_request_head_over_the_limit_is_refused_with_431() {
        let addr = start(Arc::new(Metrics::new()), HTTP_READ_TIMEOUT).await;
        let request = format!(
            "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(HTTP_HEAD_MAX)
        );
        let r = exchange(addr, &request).await;
        assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
    }

    #[tokio::test]
    async fn a_client_that_never_sends_a_request_is_dropped_after_the_read_timeout() {
        let timeout = Duration::from_millis(300);
        let addr = start(Arc::new(Metrics::new()), timeout).await;
        let started = std::time::Instant::now();
        let mut idle = TcpStream::connect(addr).await.expect("connect");
        // A second client is served while the first one sits idle.
        let r = exchange(addr, "GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        let mut out = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(10), idle.read_to_end(&mut out))
            .await
            .expect("the server closes an idle connection")
            .expect("read");
        assert_eq!(n, 0, "no response to a request never sent");
        assert!(
            started.elapsed() >= timeout,
            "closed only after the timeout"
        );
        // The real timeout is the documented one.
        assert_eq!(HTTP_READ_TIMEOUT, Duration::from_secs(5));
    }
}
