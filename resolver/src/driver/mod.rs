//! The production driver: runs the sans-IO `Server` on real tokio sockets.
//!
//! One worker per core (`Options::workers`), each a thread with a current-thread runtime and a
//! `LocalSet` that owns its own server (`Rc<RefCell<Server>>`: no lock anywhere on the query path).
//! Every worker binds every listen address with SO_REUSEPORT; a reuse-port program steers UDP queries
//! to as few workers as keep up (`steer`: one, until it falls behind). Each UDP listener loop calls `handle_query` and, on a cache hit,
//! answers from the same loop iteration with no channel and no allocation. Everything else (forwarded
//! answers, upstream queries, timers) flows through `poll_transmit`/`poll_timeout`, drained by the
//! flusher task whenever the core was touched.
//!
//! Worker 0 runs on the calling thread: it owns signals and the HTTP endpoints, gathers the other
//! workers' metrics when /metrics is scraped, and tells them to stop. Workers share only the
//! configuration and the cluster state (both `Arc`); each has its own cache of the configured capacity
//! (cache fills make the workers' caches copies of one another, so a share of 1/N would cache 1/N of
//! the names the Corefile asks for), its own upstream sockets and health checks.
//!
//! This is the only module of the crate that knows about tokio, sockets, clocks and signals.

#[macro_use]
mod log;
mod batch;
mod http;
mod iptables;
mod kube_api;
mod netif;
pub mod node_scan;
pub mod nodelocal;
mod process;
mod reload;
mod steer;
mod tcp;
mod transmit;
mod udp;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{error, info};

use crate::cluster::ClusterState;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::server::{CacheFill, Server};

use http::{metrics_responder, start_http};
use log::LogThrottle;
use reload::{api_watch, cluster_watch, reload_watch};
use tcp::{TcpClient, tcp_listener, tcp_listener_socket};
use transmit::{fill_receiver, flusher};
use udp::{udp_listener, udp_socket};

/// Why the server stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("{0}")]
    Config(#[from] crate::corefile::ConfigError),
    #[error("{0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("cannot listen on {addr} ({proto}): {err}")]
    Bind { addr: SocketAddr, proto: &'static str, err: std::io::Error },
    #[error("{0}")]
    Halted(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

struct Shared {
    server: RefCell<Server>,
    epoch: Instant,
    wake: Notify,
    /// Client TCP connections: id → writer channel (bounded) and the writer task, aborted to close
    /// a connection whose client does not read its answers.
    tcp_clients: RefCell<BTreeMap<u64, TcpClient>>,
    next_conn: RefCell<u64>,
    /// Upstream UDP sockets.
    upstream_udp: RefCell<BTreeMap<SocketAddr, Vec<Rc<UdpSocket>>>>,
    /// Upstream TCP connection writers.
    upstream_tcp: RefCell<BTreeMap<SocketAddr, mpsc::UnboundedSender<Vec<u8>>>>,
    local_probe: RefCell<Option<Rc<UdpSocket>>>,
    /// UDP listeners by local address: replies to pending queries leave from where the query arrived.
    listeners: RefCell<BTreeMap<SocketAddr, Rc<UdpSocket>>>,
    rng: RefCell<fastrand::Rng>,
    stopping: std::cell::Cell<bool>,
    log_queries: bool,
    log_throttle: RefCell<LogThrottle>,
    hub: Arc<Hub>,
    /// This worker's index in `hub`.
    id: usize,
}

/// What the workers share: how to stop them, and how worker 0 reaches their metrics.
struct Hub {
    workers: usize,
    /// Set by worker 0 when the process stops: every other worker goes into lameduck.
    stop: watch::Sender<bool>,
    /// A worker's loop plugin halted it: the reason, for worker 0 to stop the process with.
    halted: std::sync::Mutex<Option<String>>,
    halt: Notify,
    /// Workers 1.. answer a request with a snapshot of their metrics.
    snapshots: Vec<mpsc::UnboundedSender<oneshot::Sender<Metrics>>>,
    /// Each worker's inbox of its siblings' cache fills (bounded; a full inbox drops the fill).
    fills: Vec<mpsc::Sender<Arc<CacheFill>>>,
    /// The cluster state the API watch publishes (none with a file source or no `kubernetes`).
    cluster: Option<watch::Receiver<Arc<ClusterState>>>,
    /// Each worker's UDP receive counts, for the steering controller (`steer`).
    loads: Arc<[steer::Load]>,
    /// Node-local mode's DNS Services, for the conntrack scans (`node_scan`).
    dns_services: Option<node_scan::Services>,
    /// How many workers the kernel hands UDP queries to (all of them unless steering is on).
    udp_active: std::sync::atomic::AtomicUsize,
}

/// Cache fills a worker's inbox holds before new ones are dropped.
const FILL_INBOX: usize = 4096;

/// One worker's sockets, bound on the calling thread before any worker starts.
struct Bound {
    udp: Vec<std::net::UdpSocket>,
    tcp: Vec<std::net::TcpListener>,
    /// Worker 0's: the health, ready and metrics listeners.
    http: Vec<(Vec<http::Endpoint>, std::net::TcpListener)>,
}

impl Shared {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }
}

/// Everything `run` needs to know.
pub struct Options {
    pub conf: PathBuf,
    pub seed: u64,
    /// Worker threads, each with its own server and sockets (at least 1).
    pub workers: usize,
    /// Bind specific addresses with IP_FREEBIND (node-local mode).
    pub freebind: bool,
    /// Called once every listening socket is bound, before any query is served (the pidfile, and
    /// node-local mode's rules, wait for it).
    pub on_listening: Option<Box<dyn FnOnce() + Send>>,
    /// Node-local mode: the DNS Services from the API, for worker 0's conntrack scans
    /// (`stale_conntrack`, `node_scan`).
    pub dns_services: Option<node_scan::Services>,
}

/// One worker per CPU this process may use (cgroup quotas included).
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Runs the server until SIGTERM/SIGINT (or `shutdown` resolving), then drains and returns.
pub fn run(opts: Options, shutdown: impl std::future::Future<Output = ()> + 'static) -> Result<(), DriverError> {
    let cfg = Arc::new(load_config(&opts.conf)?);
    let (state, cluster) = cluster_source(&cfg)?;
    let workers = opts.workers.max(1);
    // Bind everything before serving anything: a bind error exits non-zero with nothing half-open.
    let mut bound = Vec::new();
    for _ in 0..workers {
        let mut b = Bound { udp: Vec::new(), tcp: Vec::new(), http: Vec::new() };
        for addr in listen_addrs(&cfg) {
            let free = opts.freebind && !addr.ip().is_unspecified();
            b.udp.push(udp_socket(addr, workers > 1, free).map_err(|err| DriverError::Bind { addr, proto: "udp", err })?);
            b.tcp.push(tcp_listener_socket(addr, workers > 1, free).map_err(|err| DriverError::Bind { addr, proto: "tcp", err })?);
        }
        bound.push(b);
    }
    if let Some(first) = bound.first_mut() {
        first.http = http::bind_http(&cfg)?;
    }
    if let Some(f) = opts.on_listening {
        f();
    }
    let (stop, _) = watch::channel(false);
    let mut receivers = Vec::new();
    let mut snapshots = Vec::new();
    for _ in 1..workers {
        let (tx, rx) = mpsc::unbounded_channel();
        snapshots.push(tx);
        receivers.push(rx);
    }
    let mut fills = Vec::new();
    let mut inboxes = Vec::new();
    for _ in 0..workers {
        let (tx, rx) = mpsc::channel(FILL_INBOX);
        fills.push(tx);
        inboxes.push(rx);
    }
    let hub = Arc::new(Hub {
        workers,
        stop,
        halted: std::sync::Mutex::new(None),
        halt: Notify::new(),
        snapshots,
        fills,
        cluster,
        loads: (0..workers).map(|_| steer::Load::default()).collect(),
        dns_services: opts.dns_services.clone(),
        udp_active: std::sync::atomic::AtomicUsize::new(workers),
    });
    let mut inboxes = inboxes.into_iter();
    let first_inbox = inboxes.next().ok_or_else(|| std::io::Error::other("no worker"))?;
    let mut bound = bound.into_iter();
    let first = bound.next().ok_or_else(|| std::io::Error::other("no worker"))?;
    let mut threads = Vec::new();
    for (k, ((b, rx), inbox)) in bound.zip(receivers).zip(inboxes).enumerate() {
        let id = k + 1;
        let (cfg, state, hub, conf) = (cfg.clone(), state.clone(), hub.clone(), opts.conf.clone());
        let seed = opts.seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        threads.push(std::thread::Builder::new().name(format!("ndots-worker-{id}")).spawn(move || -> Result<(), DriverError> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let local = tokio::task::LocalSet::new();
            let mut stopped = hub.stop.subscribe();
            let w = Worker { id, conf, seed, hub, bound: b, snapshots: Some(rx), inbox };
            local.block_on(
                &rt,
                serve(w, cfg, state, async move {
                    let _ = stopped.wait_for(|s| *s).await;
                }),
            )
        })?);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    let w = Worker { id: 0, conf: opts.conf.clone(), seed: opts.seed, hub: hub.clone(), bound: first, snapshots: None, inbox: first_inbox };
    let result = local.block_on(&rt, serve(w, cfg, state, shutdown));
    // However worker 0 ended, the others stop too (they drain what they have in flight).
    hub.stop.send_replace(true);
    for t in threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => error!("worker: {e}"),
            Err(_) => error!("a worker panicked"),
        }
    }
    result
}

/// What one worker is given.
struct Worker {
    id: usize,
    conf: PathBuf,
    seed: u64,
    hub: Arc<Hub>,
    bound: Bound,
    /// Metrics snapshot requests from worker 0 (workers 1..).
    snapshots: Option<mpsc::UnboundedReceiver<oneshot::Sender<Metrics>>>,
    /// Siblings' cache fills.
    inbox: mpsc::Receiver<Arc<CacheFill>>,
}

/// Where the cluster state comes from: nowhere (no `kubernetes` plugin), a file (`cluster_state`), or
/// the API, waited for up to `startup_timeout` before serving (sources.md#coredns-kubernetes).
type Source = (Arc<ClusterState>, Option<watch::Receiver<Arc<ClusterState>>>);

fn cluster_source(cfg: &Config) -> Result<Source, DriverError> {
    let Some(k) = cfg.servers.iter().find_map(|s| s.kubernetes.as_ref()) else { return Ok((Arc::default(), None)) };
    if let Some(path) = &k.cluster_state {
        return Ok((Arc::new(ClusterState::load(path)?), None));
    }
    let rx = kube_api::start(k, cfg.watches_pods())?;
    kube_api::wait_for_sync(&rx, k.startup_timeout);
    let state = rx.borrow().clone();
    Ok((state, Some(rx)))
}

fn listen_addrs(cfg: &Config) -> Vec<SocketAddr> {
    let mut v: Vec<SocketAddr> = Vec::new();
    for s in &cfg.servers {
        let ips = if s.bind.is_empty() { vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)] } else { s.bind.clone() };
        for ip in ips {
            let a = SocketAddr::new(ip, s.port);
            if !v.contains(&a) {
                v.push(a);
            }
        }
    }
    v
}

async fn serve(
    w: Worker,
    cfg: Arc<Config>,
    state: Arc<ClusterState>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DriverError> {
    w.hub.loads[w.id].set_thread();
    let log_queries = cfg.servers.iter().any(|s| !s.log.is_empty());
    let lameduck = cfg.servers.iter().filter_map(|s| s.health.as_ref()).map(|h| h.lameduck).max().unwrap_or_default();
    let shared = Rc::new(Shared {
        server: RefCell::new(Server::new(cfg.clone(), state, w.seed)),
        epoch: Instant::now(),
        wake: Notify::new(),
        tcp_clients: RefCell::new(BTreeMap::new()),
        next_conn: RefCell::new(1),
        upstream_udp: RefCell::new(BTreeMap::new()),
        upstream_tcp: RefCell::new(BTreeMap::new()),
        local_probe: RefCell::new(None),
        listeners: RefCell::new(BTreeMap::new()),
        rng: RefCell::new(fastrand::Rng::with_seed(w.seed ^ 0x9e37_79b9_7f4a_7c15)),
        stopping: std::cell::Cell::new(false),
        log_queries,
        log_throttle: RefCell::default(),
        hub: w.hub.clone(),
        id: w.id,
    });
    // With siblings, upstream answers one worker caches are stored by the others too: a name a
    // client resolved once is a cache hit whichever worker the kernel hands its next query to.
    shared.server.borrow_mut().share_cache_fills(w.hub.workers > 1);
    let mut udp = Vec::new();
    let mut tcp = Vec::new();
    for (u, t) in w.bound.udp.into_iter().zip(w.bound.tcp) {
        let u = Rc::new(UdpSocket::from_std(u)?);
        let t = TcpListener::from_std(t)?;
        if w.id == 0 {
            info!(addr = %u.local_addr()?, workers = w.hub.workers, "listening on udp and tcp");
        }
        shared.listeners.borrow_mut().insert(u.local_addr()?, u.clone());
        udp.push(u);
        tcp.push(t);
    }
    let http = start_http(w.bound.http, &shared)?;
    let mut tasks = Vec::new();
    for u in &udp {
        tasks.push(tokio::task::spawn_local(udp_listener(shared.clone(), u.clone())));
    }
    for t in tcp {
        tasks.push(tokio::task::spawn_local(tcp_listener(shared.clone(), t)));
    }
    let flush_task = tokio::task::spawn_local(flusher(shared.clone()));
    // NDOTS_UDP_STEERING=off: every worker receives, spread by the kernel's hash of the client.
    if w.id == 0 && w.hub.workers > 1 && std::env::var("NDOTS_UDP_STEERING").map_or(true, |v| v != "off") {
        tasks.push(tokio::task::spawn_local(steer::steer(w.hub.clone(), udp.clone())));
    }
    match w.hub.cluster.clone() {
        Some(rx) => tasks.push(tokio::task::spawn_local(api_watch(shared.clone(), rx))),
        None if cfg.servers.iter().any(|s| s.kubernetes.is_some()) => {
            tasks.push(tokio::task::spawn_local(cluster_watch(shared.clone(), cfg.clone())))
        }
        None => {}
    }
    if let Some(r) = cfg.servers.iter().find_map(|s| s.reload.clone()) {
        tasks.push(tokio::task::spawn_local(reload_watch(shared.clone(), w.conf.clone(), r.interval, r.jitter)));
    }
    if let Some(rx) = w.snapshots {
        tasks.push(tokio::task::spawn_local(metrics_responder(shared.clone(), rx)));
    }
    tasks.push(tokio::task::spawn_local(fill_receiver(shared.clone(), w.inbox)));
    if w.id == 0 {
        tasks.push(tokio::task::spawn_local(http::findings_logger(shared.clone())));
        if let Some(rx) = w.hub.dns_services.clone() {
            tasks.push(tokio::task::spawn_local(node_scan::scanner(shared.clone(), rx)));
        }
    }
    shared.wake.notify_one();

    let halted = if w.id == 0 {
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let hub = w.hub.clone();
        tokio::select! {
            _ = sigterm.recv() => { info!("SIGTERM: shutting down"); None }
            _ = tokio::signal::ctrl_c() => { info!("SIGINT: shutting down"); None }
            _ = shutdown => None,
            h = flush_task => h.ok().flatten(),
            _ = hub.halt.notified() => hub.halted.lock().ok().and_then(|h| h.clone()),
        }
    } else {
        tokio::select! {
            _ = shutdown => None,
            h = flush_task => h.ok().flatten(),
        }
    };
    if let Some(reason) = halted {
        error!("{reason}");
        if w.id != 0 {
            if let Ok(mut h) = w.hub.halted.lock() {
                *h = Some(reason.clone());
            }
            w.hub.halt.notify_one();
        }
        return Err(DriverError::Halted(reason));
    }
    if w.id == 0 {
        w.hub.stop.send_replace(true);
    }
    // Lameduck: /ready goes non-200 at once, /health stays 200, DNS keeps being served for the
    // lameduck duration (sources.md#coredns-health-ready); then listeners close and in-flight queries finish.
    shared.stopping.set(true);
    if !lameduck.is_zero() {
        info!(?lameduck, "lameduck");
        tokio::time::sleep(lameduck).await;
    }
    for t in &tasks {
        t.abort();
    }
    // Keep flushing until nothing is in flight, bounded by forward's 5 s deadline plus a margin.
    let drain_flusher = tokio::task::spawn_local(flusher(shared.clone()));
    let drain_until = Instant::now() + Duration::from_secs(7);
    while shared.server.borrow().in_flight() > 0 && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let the last answers go out.
    tokio::task::yield_now().await;
    shared.wake.notify_one();
    tokio::time::sleep(Duration::from_millis(20)).await;
    drain_flusher.abort();
    for h in http {
        h.abort();
    }
    info!(worker = w.id, in_flight = shared.server.borrow().in_flight(), "stopped");
    Ok(())
}

/// Loads a Corefile from disk with what the host supplies: the search list of its resolv.conf
/// (`NDOTS_HOST_RESOLV_CONF`, else /etc/resolv.conf) for `autopath @kubernetes`.
pub(crate) fn load_config(path: &Path) -> Result<Config, crate::corefile::ConfigError> {
    let mut cfg = Config::load(path)?;
    if cfg.needs_host_search() {
        let host = std::env::var("NDOTS_HOST_RESOLV_CONF").unwrap_or_else(|_| "/etc/resolv.conf".into());
        let search = crate::config::read_resolv_conf(Path::new(&host)).map(|rc| rc.search).unwrap_or_default();
        cfg.set_host_search(&search);
    }
    Ok(cfg)
}

/// For tests and tools: reads a Corefile and reports the first error, as the binary would.
pub fn check_config(path: &Path) -> Result<Config, DriverError> {
    let cfg = load_config(path)?;
    // A cluster-state file must read; the API is not contacted by a check.
    if let Some(path) = cfg.servers.iter().find_map(|s| s.kubernetes.as_ref()?.cluster_state.as_ref()) {
        ClusterState::load(path)?;
    }
    Ok(cfg)
}
