//! The production driver: runs the sans-IO `Server` on real tokio sockets.
//!
//! One worker per core (`Options::workers`), each a thread with a current-thread runtime and a
//! `LocalSet` that owns its own server (`Rc<RefCell<Server>>`: no lock anywhere on the query path).
//! Every worker binds every listen address with SO_REUSEPORT, so the kernel spreads clients over the
//! workers by their address and port. Each UDP listener loop calls `handle_query` and, on a cache hit,
//! answers from the same loop iteration with no channel and no allocation. Everything else (forwarded
//! answers, upstream queries, timers) flows through `poll_transmit`/`poll_timeout`, drained by the
//! flusher task whenever the core was touched.
//!
//! Worker 0 runs on the calling thread: it owns signals and the HTTP endpoints, gathers the other
//! workers' metrics when /metrics is scraped, and tells them to stop. Workers share only the
//! configuration and the cluster state (both `Arc`); each has its own cache with 1/N of the configured
//! capacity, its own upstream sockets and health checks.
//!
//! This is the only module of the crate that knows about tokio, sockets, clocks and signals.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::cluster::{ClusterSource, ClusterState, FileSource};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::server::{CacheFill, Client, Dest, Handled, Server, Transmit, Transport};
use crate::wire;

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

/// TCP connections idle longer than this are closed (CoreDNS `timeouts` idle default 10 s).
const TCP_IDLE: Duration = Duration::from_secs(10);
/// At most this many client TCP connections at once, shared out over the workers; more are closed at
/// accept.
const MAX_TCP_CONNS: usize = 1024;
/// Answers queued for one TCP client at most. A client that sends queries without reading the
/// answers is not read from while its queue is full (TCP flow control pushes back), and is closed
/// when the queue is still full after `TCP_IDLE` or an answer from upstream finds no room.
const TCP_OUT_MAX: usize = 64;
/// Sockets per upstream for UDP queries; each query goes out of a random one.
const UDP_SOCKETS_PER_UPSTREAM: usize = 4;
/// How often the cluster-state file is checked for changes.
const CLUSTER_POLL: Duration = Duration::from_secs(2);

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

/// Warnings that can fire per packet or per connection (a flood, a dead network, a full socket buffer)
/// are let through `BURST` times per key per second; the next one let through says how many were held
/// back, so nothing is hidden and the log cannot become the outage.
#[derive(Default)]
struct LogThrottle {
    /// key → (window start, let through in it, held back since the last one let through).
    windows: BTreeMap<&'static str, (Duration, u32, u64)>,
}

impl LogThrottle {
    const BURST: u32 = 10;

    /// Some(held back so far) if this one may be logged.
    fn allow(&mut self, key: &'static str, now: Duration) -> Option<u64> {
        let w = self.windows.entry(key).or_insert((now, 0, 0));
        if now.saturating_sub(w.0) >= Duration::from_secs(1) {
            *w = (now, 0, w.2);
        }
        if w.1 < Self::BURST {
            w.1 += 1;
            Some(std::mem::take(&mut w.2))
        } else {
            w.2 += 1;
            None
        }
    }
}

/// `warn!` through the worker's `LogThrottle`, keyed by call site.
macro_rules! warn_throttled {
    ($shared:expr, $key:literal, $($arg:tt)+) => {
        let held = $shared.log_throttle.borrow_mut().allow($key, $shared.now());
        match held {
            Some(0) => warn!($($arg)+),
            Some(held) => warn!(held_back = held, $($arg)+),
            None => {}
        }
    };
}

/// A client TCP connection's answer queue and its writer task.
type TcpClient = (mpsc::Sender<Vec<u8>>, tokio::task::AbortHandle);

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
}

/// Cache fills a worker's inbox holds before new ones are dropped.
const FILL_INBOX: usize = 4096;

/// One worker's sockets, bound on the calling thread before any worker starts.
struct Bound {
    udp: Vec<std::net::UdpSocket>,
    tcp: Vec<std::net::TcpListener>,
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
}

/// One worker per CPU this process may use (cgroup quotas included).
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Runs the server until SIGTERM/SIGINT (or `shutdown` resolving), then drains and returns.
pub fn run(opts: Options, shutdown: impl std::future::Future<Output = ()> + 'static) -> Result<(), DriverError> {
    let cfg = Arc::new(Config::load(&opts.conf)?);
    let state = Arc::new(load_state(&cfg)?);
    let workers = opts.workers.max(1);
    // Bind everything before serving anything: a bind error exits non-zero with nothing half-open.
    let mut bound = Vec::new();
    for _ in 0..workers {
        let mut b = Bound { udp: Vec::new(), tcp: Vec::new() };
        for addr in listen_addrs(&cfg) {
            b.udp.push(udp_socket(addr, workers > 1).map_err(|err| DriverError::Bind { addr, proto: "udp", err })?);
            b.tcp.push(tcp_listener_socket(addr, workers > 1).map_err(|err| DriverError::Bind { addr, proto: "tcp", err })?);
        }
        bound.push(b);
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
    let hub = Arc::new(Hub { workers, stop, halted: std::sync::Mutex::new(None), halt: Notify::new(), snapshots, fills });
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

/// A worker's share of the configuration: the cache capacities divided by the worker count, so the
/// process as a whole holds what the Corefile says.
fn for_worker(cfg: &Config, workers: usize) -> Config {
    let mut c = cfg.clone();
    if workers > 1 {
        for s in &mut c.servers {
            if let Some(cache) = &mut s.cache {
                cache.success.capacity = cache.success.capacity.div_ceil(workers);
                cache.denial.capacity = cache.denial.capacity.div_ceil(workers);
            }
        }
    }
    c
}

fn load_state(cfg: &Config) -> Result<ClusterState, DriverError> {
    let Some(k) = cfg.servers.iter().find_map(|s| s.kubernetes.as_ref()) else { return Ok(ClusterState::default()) };
    match &k.cluster_state {
        Some(path) => Ok(ClusterState::load(path)?),
        None => Err(DriverError::Config(crate::corefile::ConfigError::at(
            &k.pos,
            "kubernetes: no cluster source; expected `cluster_state FILE` in its block (ndots reads the List printed by `kubectl get namespaces,services,endpointslices,pods -A -o yaml`; an API watch is not implemented yet)",
        ))),
    }
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

/// A listening UDP socket; `reuse_port` when several workers share the address.
fn udp_socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::UdpSocket> {
    let domain = if addr.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    // A larger receive buffer absorbs bursts (coredns#4506: the UDP buffer is the real limit).
    let _ = s.set_recv_buffer_size(4 << 20);
    if addr.ip().is_unspecified() {
        // A wildcard socket learns each query's destination address (IP_PKTINFO) and answers from it:
        // on a host with several addresses the kernel would otherwise pick the source by route, and a
        // client that sent to another address drops the reply (as miekg/dns, under CoreDNS, does).
        use nix::sys::socket::{setsockopt, sockopt};
        let r = if addr.is_ipv4() {
            setsockopt(&s, sockopt::Ipv4PacketInfo, &true)
        } else {
            setsockopt(&s, sockopt::Ipv6RecvPacketInfo, &true)
        };
        r.map_err(std::io::Error::from)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// Sends one datagram from `from` (IP_PKTINFO) when the listener is a wildcard socket, else plainly.
async fn send_from(sock: &UdpSocket, payload: &[u8], dst: SocketAddr, from: Option<IpAddr>) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    match from {
        None => sock.send_to(payload, dst).await.map(|_| ()),
        Some(ip) => {
            let fd = sock.as_raw_fd();
            sock.async_io(tokio::io::Interest::WRITABLE, || batch::send_one(fd, payload, dst, ip)).await
        }
    }
}

fn tcp_listener_socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    let domain = if addr.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

async fn serve(
    w: Worker,
    cfg: Arc<Config>,
    state: Arc<ClusterState>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DriverError> {
    let log_queries = cfg.servers.iter().any(|s| s.log);
    let lameduck = cfg.servers.iter().filter_map(|s| s.health.as_ref()).map(|h| h.lameduck).max().unwrap_or_default();
    let shared = Rc::new(Shared {
        server: RefCell::new(Server::new(Arc::new(for_worker(&cfg, w.hub.workers)), state, w.seed)),
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
    let http = if w.id == 0 { start_http(&cfg, &shared).await? } else { Vec::new() };
    let mut tasks = Vec::new();
    for u in &udp {
        tasks.push(tokio::task::spawn_local(udp_listener(shared.clone(), u.clone())));
    }
    for t in tcp {
        tasks.push(tokio::task::spawn_local(tcp_listener(shared.clone(), t)));
    }
    let flush_task = tokio::task::spawn_local(flusher(shared.clone()));
    if cfg.servers.iter().any(|s| s.kubernetes.is_some()) {
        tasks.push(tokio::task::spawn_local(cluster_watch(shared.clone(), cfg.clone())));
    }
    if let Some(r) = cfg.servers.iter().find_map(|s| s.reload.clone()) {
        tasks.push(tokio::task::spawn_local(reload_watch(shared.clone(), w.conf.clone(), r.interval, r.jitter)));
    }
    if let Some(rx) = w.snapshots {
        tasks.push(tokio::task::spawn_local(metrics_responder(shared.clone(), rx)));
    }
    tasks.push(tokio::task::spawn_local(fill_receiver(shared.clone(), w.inbox)));
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
    // lameduck duration (dns-servers.md §1.6); then listeners close and in-flight queries finish.
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

/// Stores the siblings' cache fills.
async fn fill_receiver(shared: Rc<Shared>, mut inbox: mpsc::Receiver<Arc<CacheFill>>) {
    while let Some(fill) = inbox.recv().await {
        let now = shared.now();
        shared.server.borrow_mut().handle_cache_fill(now, &fill);
    }
}

/// Answers worker 0's requests for this worker's metrics.
async fn metrics_responder(shared: Rc<Shared>, mut rx: mpsc::UnboundedReceiver<oneshot::Sender<Metrics>>) {
    while let Some(reply) = rx.recv().await {
        let mut s = shared.server.borrow_mut();
        s.refresh_gauges();
        let _ = reply.send(s.metrics.clone());
    }
}

/// Every worker's metrics, summed (worker 0's own plus the others' snapshots).
async fn all_metrics(shared: &Rc<Shared>) -> Metrics {
    let mut total = {
        let mut s = shared.server.borrow_mut();
        s.refresh_gauges();
        s.metrics.clone()
    };
    for tx in &shared.hub.snapshots {
        let (reply, rx) = oneshot::channel();
        if tx.send(reply).is_ok()
            && let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(1), rx).await
        {
            total.merge(&m);
        }
    }
    total
}

/// A UDP listener: a batch of queries per wakeup, cache hits answered in one `sendmmsg`, the rest
/// left to the flusher.
async fn udp_listener(shared: Rc<Shared>, sock: Rc<UdpSocket>) {
    use std::os::fd::AsRawFd;
    let local = match sock.local_addr() {
        Ok(a) => a,
        Err(e) => return error!("udp local_addr: {e}"),
    };
    let fd = sock.as_raw_fd();
    let mut batch = batch::Batch::new();
    let mut outs: Vec<Vec<u8>> = (0..batch::BATCH).map(|_| Vec::with_capacity(4096)).collect();
    let mut ready: Vec<(usize, SocketAddr, Option<IpAddr>)> = Vec::with_capacity(batch::BATCH);
    loop {
        if let Err(e) = sock.readable().await {
            warn_throttled!(shared, "udp-readable", "udp readable on {local}: {e}");
            continue;
        }
        let n = match sock.try_io(tokio::io::Interest::READABLE, || batch.recv(fd)) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                warn_throttled!(shared, "udp-recv", "udp recv on {local}: {e}");
                continue;
            }
        };
        ready.clear();
        let mut pending = false;
        for (i, out) in outs.iter_mut().enumerate().take(n) {
            let (query, src, dst) = batch.get(i);
            let Some(src) = src else { continue };
            // On a wildcard socket, the address the query was sent to (IP_PKTINFO).
            let local = SocketAddr::new(dst.unwrap_or(local.ip()), local.port());
            let client = Client { src, local, transport: Transport::Udp, conn: 0 };
            let handled = {
                let now = shared.now();
                shared.server.borrow_mut().handle_query(now, client, query, out)
            };
            match handled {
                Handled::Answered => {
                    if shared.log_queries {
                        log_query(&client, query, out);
                    }
                    ready.push((i, src, dst));
                }
                Handled::Pending => pending = true,
                Handled::Dropped => {}
            }
        }
        if pending {
            shared.wake.notify_one();
        }
        let sent =
            if ready.is_empty() { 0 } else { sock.try_io(tokio::io::Interest::WRITABLE, || batch.send(fd, &outs, &ready)).unwrap_or(0) };
        // What the socket would not take at once goes out one by one, waiting for room.
        for &(i, dst, from) in ready.iter().skip(sent) {
            if let Err(e) = send_from(&sock, &outs[i], dst, from).await {
                warn_throttled!(shared, "udp-send", "udp send to {dst}: {e}");
            }
        }
    }
}

async fn tcp_listener(shared: Rc<Shared>, listener: TcpListener) {
    loop {
        let (stream, src) = match listener.accept().await {
            Ok(v) => v,
            Err(e) => {
                warn_throttled!(shared, "tcp-accept", "tcp accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if shared.tcp_clients.borrow().len() >= MAX_TCP_CONNS.div_ceil(shared.hub.workers) {
            warn_throttled!(shared, "tcp-limit", %src, "too many tcp connections; closing");
            continue;
        }
        let local = stream.local_addr().unwrap_or(src);
        let id = {
            let mut n = shared.next_conn.borrow_mut();
            *n += 1;
            *n
        };
        let client = Client { src, local, transport: Transport::Tcp, conn: id };
        tokio::task::spawn_local(tcp_conn(shared.clone(), stream, client));
    }
}

/// One client TCP connection: length-prefixed queries in (RFC 1035 §4.2.2, RFC 7766 pipelining),
/// answers out in whatever order they complete; closed after `TCP_IDLE` without a query.
async fn tcp_conn(shared: Rc<Shared>, stream: TcpStream, client: Client) {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(TCP_OUT_MAX);
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::task::spawn_local(async move {
        while let Some(msg) = rx.recv().await {
            let len = (msg.len() as u16).to_be_bytes();
            if wr.write_all(&len).await.is_err() || wr.write_all(&msg).await.is_err() {
                break;
            }
        }
    });
    shared.tcp_clients.borrow_mut().insert(client.conn, (tx.clone(), writer.abort_handle()));
    let mut out = Vec::with_capacity(4096);
    let mut buf = vec![0u8; 65535];
    loop {
        // Room for this query's answer first: a client that does not read is not read from.
        let Ok(Ok(permit)) = tokio::time::timeout(TCP_IDLE, tx.reserve()).await else { break };
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, rd.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => break,
        }
        let n = u16::from_be_bytes(len) as usize;
        if n == 0 {
            // A zero-length frame carries no message: close (RFC 7766 §8 leaves it to the server).
            break;
        }
        // A slow sender may not hold the connection forever: the frame must arrive within the idle time.
        match tokio::time::timeout(TCP_IDLE, rd.read_exact(&mut buf[..n])).await {
            Ok(Ok(_)) => {}
            _ => break,
        }
        let handled = {
            let now = shared.now();
            shared.server.borrow_mut().handle_query(now, client, &buf[..n], &mut out)
        };
        match handled {
            Handled::Answered => {
                if shared.log_queries {
                    log_query(&client, &buf[..n], &out);
                }
                permit.send(out.clone());
            }
            Handled::Pending => {
                drop(permit);
                shared.wake.notify_one();
            }
            Handled::Dropped => {}
        }
    }
    drop(tx);
    // Let pending answers for this connection still be written: drop our sender only once the
    // server has nothing in flight for it (bounded by the forward deadline).
    let deadline = Instant::now() + Duration::from_secs(6);
    while shared.server.borrow().in_flight() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shared.tcp_clients.borrow_mut().remove(&client.conn);
    let _ = writer.await;
}

/// Drains the core's transmits and fires its timers. Returns when the loop plugin halted the server.
async fn flusher(shared: Rc<Shared>) -> Option<String> {
    loop {
        loop {
            let c = shared.server.borrow_mut().poll_close_tcp();
            let Some(addr) = c else { break };
            // Dropping the sender ends the writer: the connection closes; the next query dials anew.
            shared.upstream_tcp.borrow_mut().remove(&addr);
        }
        loop {
            let t = shared.server.borrow_mut().poll_transmit();
            let Some(t) = t else { break };
            dispatch(&shared, t);
        }
        loop {
            let f = shared.server.borrow_mut().poll_cache_fill();
            let Some(f) = f else { break };
            let f = Arc::new(f);
            for (k, tx) in shared.hub.fills.iter().enumerate() {
                if k != shared.id {
                    let _ = tx.try_send(f.clone());
                }
            }
        }
        if let Some(reason) = shared.server.borrow().halted() {
            return Some(reason.to_string());
        }
        let next = shared.server.borrow().poll_timeout();
        match next {
            Some(at) => {
                let at = shared.epoch + at;
                tokio::select! {
                    biased;
                    _ = shared.wake.notified() => {}
                    _ = tokio::time::sleep_until(at) => {
                        let now = shared.now();
                        shared.server.borrow_mut().handle_timeout(now);
                    }
                }
            }
            None => shared.wake.notified().await,
        }
    }
}

fn dispatch(shared: &Rc<Shared>, t: Transmit) {
    match t.dest {
        Dest::Client(c) => match c.transport {
            Transport::Udp => {
                // Reply from the listener the query came in on: bound to that address, or a wildcard
                // socket answering from it.
                let sock = {
                    let l = shared.listeners.borrow();
                    l.get(&c.local).cloned().map(|s| (s, None)).or_else(|| {
                        let any = [IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)];
                        any.iter().find_map(|ip| l.get(&SocketAddr::new(*ip, c.local.port())).cloned()).map(|s| (s, Some(c.local.ip())))
                    })
                };
                if let Some((sock, from)) = sock {
                    if shared.log_queries {
                        info!(target: "ndots::log", "{}:{} - answer {} bytes", c.src.ip(), c.src.port(), t.payload.len());
                    }
                    tokio::task::spawn_local(async move {
                        let _ = send_from(&sock, &t.payload, c.src, from).await;
                    });
                }
            }
            Transport::Tcp => {
                let full = match shared.tcp_clients.borrow().get(&c.conn) {
                    Some((tx, _)) => matches!(tx.try_send(t.payload), Err(mpsc::error::TrySendError::Full(_))),
                    None => false,
                };
                if full && let Some((_, writer)) = shared.tcp_clients.borrow_mut().remove(&c.conn) {
                    warn_throttled!(shared, "tcp-no-reader", client = %c.src, "tcp client reads no answers; closing");
                    writer.abort();
                }
            }
        },
        Dest::Upstream { addr, transport: Transport::Udp } => {
            let sock = upstream_udp(shared, addr);
            match sock {
                Ok(s) => {
                    tokio::task::spawn_local(async move {
                        let _ = s.send(&t.payload).await;
                    });
                }
                Err(e) => {
                    warn_throttled!(shared, "upstream-socket", %addr, "upstream udp socket: {e}");
                    let now = shared.now();
                    shared.server.borrow_mut().handle_upstream_error(now, addr, Transport::Udp);
                }
            }
        }
        Dest::Upstream { addr, transport: Transport::Tcp } => upstream_tcp(shared, addr, t.payload),
        Dest::Local { port, ip } => {
            let target = SocketAddr::new(ip.filter(|i| !i.is_unspecified()).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)), port);
            let shared = shared.clone();
            tokio::task::spawn_local(async move {
                let sock = {
                    let existing = shared.local_probe.borrow().clone();
                    match existing {
                        Some(s) => s,
                        None => match UdpSocket::bind(SocketAddr::new(target.ip(), 0)).await {
                            Ok(s) => {
                                let s = Rc::new(s);
                                *shared.local_probe.borrow_mut() = Some(s.clone());
                                // Drain answers to our probes.
                                let r = s.clone();
                                tokio::task::spawn_local(async move {
                                    let mut b = [0u8; 512];
                                    while r.recv_from(&mut b).await.is_ok() {}
                                });
                                s
                            }
                            Err(_) => return,
                        },
                    }
                };
                let _ = sock.send_to(&t.payload, target).await;
            });
        }
    }
}

fn upstream_udp(shared: &Rc<Shared>, addr: SocketAddr) -> std::io::Result<Rc<UdpSocket>> {
    let mut map = shared.upstream_udp.borrow_mut();
    let pool = map.entry(addr).or_default();
    if pool.len() < UDP_SOCKETS_PER_UPSTREAM {
        // The kernel picks a random ephemeral port for each socket (spoofing resistance, RFC 5452 §10).
        let bind = if addr.is_ipv4() { SocketAddr::from(([0, 0, 0, 0], 0)) } else { SocketAddr::from(([0u16; 8], 0)) };
        let std_sock = std::net::UdpSocket::bind(bind)?;
        std_sock.connect(addr)?;
        std_sock.set_nonblocking(true)?;
        let s = Rc::new(UdpSocket::from_std(std_sock)?);
        pool.push(s.clone());
        let r = s.clone();
        let sh = shared.clone();
        tokio::task::spawn_local(async move {
            let mut buf = vec![0u8; 65535];
            loop {
                // ICMP port unreachable surfaces as ECONNREFUSED on a connected socket. It is treated
                // as a lost packet: the read timeout decides, so a dead upstream is not retried in a
                // tight loop.
                if let Ok(n) = r.recv(&mut buf).await {
                    let now = sh.now();
                    sh.server.borrow_mut().handle_upstream(now, addr, Transport::Udp, &buf[..n]);
                    sh.wake.notify_one();
                }
            }
        });
        return Ok(s);
    }
    let i = shared.rng.borrow_mut().usize(..pool.len());
    Ok(pool[i].clone())
}

/// Sends a query over the upstream's pooled TCP connection, opening one when there is none.
/// forward's `expire` for an upstream (default 10 s): how long an idle TCP connection is kept.
fn expire_for(shared: &Shared, addr: SocketAddr) -> Duration {
    let server = shared.server.borrow();
    server
        .config()
        .servers
        .iter()
        .flat_map(|s| &s.forward)
        .filter(|f| f.to.contains(&addr))
        .map(|f| f.expire)
        .min()
        .unwrap_or(Duration::from_secs(10))
}

fn upstream_tcp(shared: &Rc<Shared>, addr: SocketAddr, payload: Vec<u8>) {
    if let Some(tx) = shared.upstream_tcp.borrow().get(&addr)
        && tx.send(payload.clone()).is_ok()
    {
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let _ = tx.send(payload);
    shared.upstream_tcp.borrow_mut().insert(addr, tx);
    let sh = shared.clone();
    let expire = expire_for(shared, addr);
    tokio::task::spawn_local(async move {
        let stream = match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            _ => {
                sh.upstream_tcp.borrow_mut().remove(&addr);
                let now = sh.now();
                sh.server.borrow_mut().handle_upstream_error(now, addr, Transport::Tcp);
                sh.wake.notify_one();
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        let sh2 = sh.clone();
        let reader = tokio::task::spawn_local(async move {
            let mut buf = vec![0u8; 65535];
            loop {
                let mut len = [0u8; 2];
                if rd.read_exact(&mut len).await.is_err() {
                    break;
                }
                let n = u16::from_be_bytes(len) as usize;
                if rd.read_exact(&mut buf[..n]).await.is_err() {
                    break;
                }
                let now = sh2.now();
                sh2.server.borrow_mut().handle_upstream(now, addr, Transport::Tcp, &buf[..n]);
                sh2.wake.notify_one();
            }
        });
        // Write queries until the connection has been idle for `expire`.
        while let Ok(Some(q)) = tokio::time::timeout(expire, rx.recv()).await {
            let len = (q.len() as u16).to_be_bytes();
            if wr.write_all(&len).await.is_err() || wr.write_all(&q).await.is_err() {
                break;
            }
        }
        sh.upstream_tcp.borrow_mut().remove(&addr);
        // Give outstanding answers a moment before closing the read side.
        let _ = tokio::time::timeout(Duration::from_secs(3), reader).await;
    });
}

async fn cluster_watch(shared: Rc<Shared>, cfg: Arc<Config>) {
    let Some(path) = cfg.servers.iter().find_map(|s| s.kubernetes.as_ref()).and_then(|k| k.cluster_state.clone()) else { return };
    let mut source = FileSource::new(path.clone());
    // The first poll returns the state already loaded at start.
    let _ = source.poll();
    loop {
        tokio::time::sleep(CLUSTER_POLL).await;
        match source.poll() {
            Ok(Some(state)) => {
                info!(file = %path.display(), services = state.services.len(), pods = state.pods.len(), "cluster state reloaded");
                let now = shared.now();
                shared.server.borrow_mut().handle_cluster_state(now, Arc::new(state));
            }
            Ok(None) => {}
            Err(e) => error!("cluster state: {e}; keeping the previous state"),
        }
    }
}

async fn reload_watch(shared: Rc<Shared>, conf: PathBuf, interval: Duration, jitter: Duration) {
    let mut last = std::fs::read(&conf).ok();
    loop {
        let j = jitter.as_millis() as u64;
        let extra = if j > 0 { shared.rng.borrow_mut().u64(..j) } else { 0 };
        tokio::time::sleep(interval + Duration::from_millis(extra)).await;
        let now_bytes = std::fs::read(&conf).ok();
        if now_bytes == last {
            continue;
        }
        last = now_bytes;
        match Config::load(&conf) {
            Ok(cfg) => {
                let old = shared.server.borrow().config().clone();
                if listen_addrs(&old) != listen_addrs(&cfg) {
                    warn!("reload: listen addresses changed; they take effect at the next restart");
                }
                let now = shared.now();
                shared.server.borrow_mut().reconfigure(now, Arc::new(for_worker(&cfg, shared.hub.workers)));
                info!(file = %conf.display(), "reloaded configuration");
            }
            Err(e) => error!("reload: {e}; keeping the running configuration"),
        }
    }
}

fn log_query(client: &Client, query: &[u8], answer: &[u8]) {
    let mut name = Vec::new();
    let (qtype, id) = match wire::parse_query(query, &mut name) {
        Ok(v) => (v.qtype, v.id),
        Err(_) => (0, 0),
    };
    let rcode = if answer.len() >= wire::HEADER_LEN { wire::flags::rcode(answer) } else { 0 };
    info!(
        target: "ndots::log",
        "{}:{} - {} \"{} IN {} {:?} {}\" {} {}",
        client.src.ip(),
        client.src.port(),
        id,
        qtype,
        wire::name_to_string(&name),
        client.transport,
        query.len(),
        crate::metrics::RCODE_LABELS.get(usize::from(rcode)).copied().unwrap_or("?"),
        answer.len()
    );
}

/// Parses `:8080`, `localhost:9153`, `169.254.20.10:8080` into listen addresses.
fn http_addr(spec: &str) -> Option<SocketAddr> {
    let (host, port) = spec.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let ip = match host {
        "" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => h.trim_matches(['[', ']']).parse().ok()?,
    };
    Some(SocketAddr::new(ip, port))
}

#[derive(Clone, Copy)]
enum Endpoint {
    Health,
    Ready,
    Metrics,
}

async fn start_http(cfg: &Config, shared: &Rc<Shared>) -> Result<Vec<tokio::task::JoinHandle<()>>, DriverError> {
    let mut specs: Vec<(String, Endpoint)> = Vec::new();
    for s in &cfg.servers {
        if let Some(h) = &s.health {
            specs.push((h.addr.clone(), Endpoint::Health));
        }
        if let Some(r) = &s.ready {
            specs.push((r.clone(), Endpoint::Ready));
        }
        if let Some(p) = &s.prometheus {
            specs.push((p.clone(), Endpoint::Metrics));
        }
    }
    // One listener per address; several endpoints may share it.
    let mut by_addr: BTreeMap<SocketAddr, Vec<Endpoint>> = BTreeMap::new();
    for (spec, ep) in specs {
        let addr =
            http_addr(&spec).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bad http address '{spec}'")))?;
        by_addr.entry(addr).or_default().push(ep);
    }
    let mut handles = Vec::new();
    for (addr, eps) in by_addr {
        let listener = TcpListener::bind(addr).await.map_err(|err| DriverError::Bind { addr, proto: "http", err })?;
        info!(%addr, "http listening");
        let shared = shared.clone();
        handles.push(tokio::task::spawn_local(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let shared = shared.clone();
                let eps = eps.clone();
                tokio::task::spawn_local(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (shared, eps) = (shared.clone(), eps.clone());
                        async move { Ok::<_, Infallible>(http_response(&shared, &eps, req.uri().path()).await) }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
                });
            }
        }));
    }
    Ok(handles)
}

async fn http_response(shared: &Rc<Shared>, eps: &[Endpoint], path: &str) -> hyper::Response<Full<Bytes>> {
    let (status, body) = match path {
        // /health stays 200 through lameduck (dns-servers.md §1.6).
        "/health" if eps.iter().any(|e| matches!(e, Endpoint::Health)) => (200, "OK".to_string()),
        "/ready" if eps.iter().any(|e| matches!(e, Endpoint::Ready)) => {
            if shared.stopping.get() {
                (503, "shutting down".to_string())
            } else {
                (200, "OK".to_string())
            }
        }
        "/metrics" if eps.iter().any(|e| matches!(e, Endpoint::Metrics)) => (200, all_metrics(shared).await.render()),
        _ => (404, "not found".to_string()),
    };
    hyper::Response::builder().status(status).body(Full::new(Bytes::from(body))).unwrap_or_default()
}

/// For tests and tools: reads a Corefile and reports the first error, as the binary would.
pub fn check_config(path: &Path) -> Result<Config, DriverError> {
    let cfg = Config::load(path)?;
    load_state(&cfg)?;
    Ok(cfg)
}

/// Batched UDP I/O: up to `BATCH` queries per `recvmmsg` and their answers per `sendmmsg` (Linux),
/// so that under load the two system calls per query of `recv_from`/`send_to` are shared by a batch.
/// Through nix's safe wrappers; the buffers are allocated once per listener.
mod batch {
    use std::io;
    use std::io::{IoSlice, IoSliceMut};
    use std::net::SocketAddr;
    use std::os::fd::RawFd;

    use std::net::IpAddr;

    use nix::libc;
    use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg, sendmsg};

    /// Datagrams per system call.
    pub const BATCH: usize = 32;
    /// The largest query read whole; a larger datagram is cut here, fails to parse and gets FORMERR
    /// (queries are a few dozen bytes; RFC 6891 clients do not send 4 KB questions).
    pub const QUERY_MAX: usize = 4096;

    pub struct Batch {
        bufs: Box<[[u8; QUERY_MAX]; BATCH]>,
        lens: [usize; BATCH],
        srcs: [Option<SocketAddr>; BATCH],
        /// Destination address of each datagram, from IP_PKTINFO (wildcard sockets only).
        dsts: [Option<IpAddr>; BATCH],
        recv_headers: MultiHeaders<SockaddrStorage>,
        send_headers: MultiHeaders<SockaddrStorage>,
        /// The same with room for exactly one IP_PKTINFO / IPV6_PKTINFO message (the kernel reads the
        /// whole control buffer, so each size gets its own headers).
        send_v4: MultiHeaders<SockaddrStorage>,
        send_v6: MultiHeaders<SockaddrStorage>,
    }

    impl Batch {
        pub fn new() -> Batch {
            Batch {
                bufs: Box::new([[0u8; QUERY_MAX]; BATCH]),
                lens: [0; BATCH],
                srcs: [None; BATCH],
                dsts: [None; BATCH],
                recv_headers: MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(libc::in6_pktinfo))),
                send_headers: MultiHeaders::preallocate(BATCH, None),
                send_v4: MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(libc::in_pktinfo))),
                send_v6: MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(libc::in6_pktinfo))),
            }
        }

        /// Receives what is queued, without blocking: how many datagrams (WouldBlock: none).
        pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
            let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] = self.bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
            let got = recvmmsg(fd, &mut self.recv_headers, iovs.iter_mut(), MsgFlags::MSG_DONTWAIT, None).map_err(io::Error::from)?;
            let mut n = 0;
            for (i, m) in got.enumerate() {
                self.lens[i] = m.bytes;
                self.srcs[i] = m.address.and_then(|a: SockaddrStorage| {
                    a.as_sockaddr_in().map(|v4| SocketAddr::from(*v4)).or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6)))
                });
                self.dsts[i] = m.cmsgs().ok().and_then(|mut c| {
                    c.find_map(|c| match c {
                        ControlMessageOwned::Ipv4PacketInfo(pi) => Some(IpAddr::from(u32::from_be(pi.ipi_addr.s_addr).to_be_bytes())),
                        ControlMessageOwned::Ipv6PacketInfo(pi) => Some(IpAddr::from(pi.ipi6_addr.s6_addr)),
                        _ => None,
                    })
                    // A query to a broadcast or multicast address is answered from the route's source.
                    .filter(|ip| !ip.is_multicast() && *ip != IpAddr::from([255, 255, 255, 255]))
                });
                n = i + 1;
            }
            Ok(n)
        }

        /// Datagram `i` of the last `recv`, where it came from and (wildcard sockets) where it went.
        pub fn get(&self, i: usize) -> (&[u8], Option<SocketAddr>, Option<IpAddr>) {
            (&self.bufs[i][..self.lens[i].min(QUERY_MAX)], self.srcs[i], self.dsts[i])
        }

        /// Sends the replies `outs[slot]` to their destinations in one call: how many went (WouldBlock:
        /// none).
        pub fn send(&mut self, fd: RawFd, outs: &[Vec<u8>], ready: &[(usize, SocketAddr, Option<IpAddr>)]) -> io::Result<usize> {
            // The replies leave in runs of one source address (one run, unless a wildcard socket got
            // queries for several of its addresses).
            let ready = &ready[..ready.len().min(BATCH)];
            let mut done = 0;
            while done < ready.len() {
                let from = ready[done].2;
                let run = &ready[done..done + ready[done..].iter().take_while(|r| r.2 == from).count()];
                let slices: [[IoSlice<'_>; 1]; BATCH] =
                    std::array::from_fn(|j| [IoSlice::new(run.get(j).and_then(|r| outs.get(r.0)).map_or(&[][..], Vec::as_slice))]);
                let addrs: [Option<SockaddrStorage>; BATCH] = std::array::from_fn(|j| run.get(j).map(|r| SockaddrStorage::from(r.1)));
                let pi = from.map(PktInfo::new);
                let cmsg = pi.as_ref().map(PktInfo::cmsg);
                let headers = match from {
                    None => &mut self.send_headers,
                    Some(IpAddr::V4(_)) => &mut self.send_v4,
                    Some(IpAddr::V6(_)) => &mut self.send_v6,
                };
                let sent = match sendmmsg(fd, headers, slices.iter(), &addrs[..run.len()], cmsg.as_slice(), MsgFlags::MSG_DONTWAIT) {
                    Ok(s) => s.count(),
                    // What went before stays sent; the caller sends the rest one by one.
                    Err(_) if done > 0 => return Ok(done),
                    Err(e) => return Err(io::Error::from(e)),
                };
                done += sent;
                if sent < run.len() {
                    break;
                }
            }
            Ok(done)
        }
    }

    /// The source address of a reply, as IP_PKTINFO / IPV6_PKTINFO wants it.
    enum PktInfo {
        V4(libc::in_pktinfo),
        V6(libc::in6_pktinfo),
    }

    impl PktInfo {
        fn new(from: IpAddr) -> PktInfo {
            match from {
                IpAddr::V4(v4) => PktInfo::V4(libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr { s_addr: u32::from(v4).to_be() },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                }),
                IpAddr::V6(v6) => PktInfo::V6(libc::in6_pktinfo { ipi6_addr: libc::in6_addr { s6_addr: v6.octets() }, ipi6_ifindex: 0 }),
            }
        }

        fn cmsg(&self) -> ControlMessage<'_> {
            match self {
                PktInfo::V4(p) => ControlMessage::Ipv4PacketInfo(p),
                PktInfo::V6(p) => ControlMessage::Ipv6PacketInfo(p),
            }
        }
    }

    /// One reply from `from` (the slow path, when the socket would not take a whole batch).
    pub fn send_one(fd: RawFd, payload: &[u8], dst: SocketAddr, from: IpAddr) -> io::Result<()> {
        let pi = PktInfo::new(from);
        let iov = [IoSlice::new(payload)];
        sendmsg(fd, &iov, &[pi.cmsg()], MsgFlags::MSG_DONTWAIT, Some(&SockaddrStorage::from(dst))).map(|_| ()).map_err(io::Error::from)
    }
}

#[cfg(test)]
mod throttle_tests {
    use std::time::Duration;

    use super::LogThrottle;

    #[test]
    fn ten_a_second_per_key_then_a_count_of_what_was_held_back() {
        let mut t = LogThrottle::default();
        let s = Duration::from_secs;
        let let_through = (0..25).filter(|_| t.allow("udp-send", s(0)).is_some()).count();
        assert_eq!(let_through, 10);
        assert_eq!(t.allow("tcp-limit", s(0)), Some(0), "keys are separate");
        assert_eq!(t.allow("udp-send", Duration::from_millis(999)), None);
        assert_eq!(t.allow("udp-send", s(1)), Some(16), "the next one says how many were held back");
        assert_eq!(t.allow("udp-send", s(1)), Some(0));
    }
}
