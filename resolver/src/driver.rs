//! The production driver: runs the sans-IO `Server` on real tokio sockets.
//!
//! One current-thread runtime with a `LocalSet` owns the server (`Rc<RefCell<Server>>`). Each UDP
//! listener loop calls `handle_query` and, on a cache hit, answers from the same loop iteration with
//! no channel and no allocation. Everything else (forwarded answers, upstream queries, timers) flows
//! through `poll_transmit`/`poll_timeout`, drained by the flusher task whenever the core was touched.
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
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::cluster::{ClusterSource, ClusterState, FileSource};
use crate::config::Config;
use crate::server::{Client, Dest, Handled, Server, Transmit, Transport};
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
/// At most this many client TCP connections at once; more are closed at accept.
const MAX_TCP_CONNS: usize = 1024;
/// Sockets per upstream for UDP queries; each query goes out of a random one.
const UDP_SOCKETS_PER_UPSTREAM: usize = 4;
/// How often the cluster-state file is checked for changes.
const CLUSTER_POLL: Duration = Duration::from_secs(2);

struct Shared {
    server: RefCell<Server>,
    epoch: Instant,
    wake: Notify,
    /// Client TCP connections: id → writer channel.
    tcp_clients: RefCell<BTreeMap<u64, mpsc::UnboundedSender<Vec<u8>>>>,
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
}

/// Runs the server until SIGTERM/SIGINT (or `shutdown` resolving), then drains and returns.
pub fn run(opts: Options, shutdown: impl std::future::Future<Output = ()> + 'static) -> Result<(), DriverError> {
    let cfg = Config::load(&opts.conf)?;
    let state = load_state(&cfg)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, serve(opts, cfg, state, shutdown))
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

fn udp_socket(addr: SocketAddr, reuse: bool) -> std::io::Result<UdpSocket> {
    let domain = if addr.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if reuse {
        s.set_reuse_address(true)?;
    }
    // A larger receive buffer absorbs bursts (coredns#4506: the UDP buffer is the real limit).
    let _ = s.set_recv_buffer_size(4 << 20);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

async fn serve(
    opts: Options,
    cfg: Config,
    state: ClusterState,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DriverError> {
    let cfg = Arc::new(cfg);
    let log_queries = cfg.servers.iter().any(|s| s.log);
    let lameduck = cfg.servers.iter().filter_map(|s| s.health.as_ref()).map(|h| h.lameduck).max().unwrap_or_default();
    let shared = Rc::new(Shared {
        server: RefCell::new(Server::new(cfg.clone(), Arc::new(state), opts.seed)),
        epoch: Instant::now(),
        wake: Notify::new(),
        tcp_clients: RefCell::new(BTreeMap::new()),
        next_conn: RefCell::new(1),
        upstream_udp: RefCell::new(BTreeMap::new()),
        upstream_tcp: RefCell::new(BTreeMap::new()),
        local_probe: RefCell::new(None),
        listeners: RefCell::new(BTreeMap::new()),
        rng: RefCell::new(fastrand::Rng::with_seed(opts.seed ^ 0x9e37_79b9_7f4a_7c15)),
        stopping: std::cell::Cell::new(false),
        log_queries,
    });
    // Bind everything before serving anything: a bind error exits non-zero with nothing half-open.
    let mut udp = Vec::new();
    let mut tcp = Vec::new();
    for addr in listen_addrs(&cfg) {
        let u = udp_socket(addr, true).map_err(|err| DriverError::Bind { addr, proto: "udp", err })?;
        let t = TcpListener::bind(addr).await.map_err(|err| DriverError::Bind { addr, proto: "tcp", err })?;
        info!(%addr, "listening on udp and tcp");
        let u = Rc::new(u);
        shared.listeners.borrow_mut().insert(u.local_addr()?, u.clone());
        udp.push(u);
        tcp.push(t);
    }
    let http = start_http(&cfg, &shared).await?;
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
        tasks.push(tokio::task::spawn_local(reload_watch(shared.clone(), opts.conf.clone(), r.interval, r.jitter)));
    }
    shared.wake.notify_one();

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let halted = tokio::select! {
        _ = sigterm.recv() => { info!("SIGTERM: shutting down"); None }
        _ = tokio::signal::ctrl_c() => { info!("SIGINT: shutting down"); None }
        _ = shutdown => None,
        h = flush_task => h.ok().flatten(),
    };
    if let Some(reason) = halted {
        error!("{reason}");
        return Err(DriverError::Halted(reason));
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
    info!(in_flight = shared.server.borrow().in_flight(), "stopped");
    Ok(())
}

async fn udp_listener(shared: Rc<Shared>, sock: Rc<UdpSocket>) {
    let local = match sock.local_addr() {
        Ok(a) => a,
        Err(e) => return error!("udp local_addr: {e}"),
    };
    let mut buf = vec![0u8; 65535];
    let mut out = Vec::with_capacity(4096);
    loop {
        let (n, src) = match sock.recv_from(&mut buf).await {
            Ok(v) => v,
            Err(e) => {
                warn!("udp recv on {local}: {e}");
                continue;
            }
        };
        let client = Client { src, local, transport: Transport::Udp, conn: 0 };
        let handled = {
            let now = shared.now();
            shared.server.borrow_mut().handle_query(now, client, &buf[..n], &mut out)
        };
        match handled {
            Handled::Answered => {
                if shared.log_queries {
                    log_query(&client, &buf[..n], &out);
                }
                if let Err(e) = sock.send_to(&out, src).await {
                    warn!("udp send to {src}: {e}");
                }
            }
            Handled::Pending => shared.wake.notify_one(),
            Handled::Dropped => {}
        }
    }
}

async fn tcp_listener(shared: Rc<Shared>, listener: TcpListener) {
    loop {
        let (stream, src) = match listener.accept().await {
            Ok(v) => v,
            Err(e) => {
                warn!("tcp accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if shared.tcp_clients.borrow().len() >= MAX_TCP_CONNS {
            warn!(%src, "too many tcp connections; closing");
            continue;
        }
        let local = stream.local_addr().unwrap_or(src);
        let id = {
            let mut n = shared.next_conn.borrow_mut();
            *n += 1;
            *n
        };
        let (tx, rx) = mpsc::unbounded_channel();
        shared.tcp_clients.borrow_mut().insert(id, tx);
        let client = Client { src, local, transport: Transport::Tcp, conn: id };
        tokio::task::spawn_local(tcp_conn(shared.clone(), stream, client, rx));
    }
}

/// One client TCP connection: length-prefixed queries in (RFC 1035 §4.2.2, RFC 7766 pipelining),
/// answers out in whatever order they complete; closed after `TCP_IDLE` without a query.
async fn tcp_conn(shared: Rc<Shared>, stream: TcpStream, client: Client, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::task::spawn_local(async move {
        while let Some(msg) = rx.recv().await {
            let len = (msg.len() as u16).to_be_bytes();
            if wr.write_all(&len).await.is_err() || wr.write_all(&msg).await.is_err() {
                break;
            }
        }
    });
    let mut out = Vec::with_capacity(4096);
    let mut buf = vec![0u8; 65535];
    loop {
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
                if let Some(tx) = shared.tcp_clients.borrow().get(&client.conn) {
                    let _ = tx.send(out.clone());
                }
            }
            Handled::Pending => shared.wake.notify_one(),
            Handled::Dropped => {}
        }
    }
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
            let t = shared.server.borrow_mut().poll_transmit();
            let Some(t) = t else { break };
            dispatch(&shared, t);
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
                // Reply from the listener the query came in on.
                let sock = shared.listeners.borrow().get(&c.local).cloned();
                if let Some(sock) = sock {
                    if shared.log_queries {
                        info!(target: "ndots::log", "{}:{} - answer {} bytes", c.src.ip(), c.src.port(), t.payload.len());
                    }
                    tokio::task::spawn_local(async move {
                        let _ = sock.send_to(&t.payload, c.src).await;
                    });
                }
            }
            Transport::Tcp => {
                if let Some(tx) = shared.tcp_clients.borrow().get(&c.conn) {
                    let _ = tx.send(t.payload);
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
                    warn!(%addr, "upstream udp socket: {e}");
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
                shared.server.borrow_mut().reconfigure(now, Arc::new(cfg));
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
                        let resp = http_response(&shared, &eps, req.uri().path());
                        async move { Ok::<_, Infallible>(resp) }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
                });
            }
        }));
    }
    Ok(handles)
}

fn http_response(shared: &Rc<Shared>, eps: &[Endpoint], path: &str) -> hyper::Response<Full<Bytes>> {
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
        "/metrics" if eps.iter().any(|e| matches!(e, Endpoint::Metrics)) => {
            let mut s = shared.server.borrow_mut();
            s.refresh_gauges();
            (200, s.metrics.render())
        }
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
