//! The cluster as a discrete-event simulation at microsecond resolution.
//!
//! One `Engine` holds every node of the cluster: its kernel tables (netmodel conntrack, kube-proxy's
//! rules or IPVS, the ENI budget, NOTRACK for node-local-dns), its pods (client-library models from
//! `client`) and the resolver instances on it: CoreDNS replicas and, optionally, a node-local cache
//! per node. Every instance is a `resolver::Server`, the same code as the `ndots` binary, driven here
//! directly: this is the resolver's simulator driver. Events are processed in (time, sequence) order;
//! every random choice comes from RNGs seeded from the scenario seed. Traffic to the cloud resolvers
//! leaves as `Frame`s, which the turmoil host carries to the resolver hosts.
//!
//! TCP is modelled packet by packet where it matters: a connection costs SYN, SYN-ACK and ACK before
//! its first query (one round trip), creates a TCP conntrack entry, is reused until idle for
//! `forward`'s `expire` (10 s), and ends with FIN/ACK; every packet a node sends to the cloud resolver
//! is charged to its ENI budget (incidents.md §5).
//!
//! Pods are never turmoil hosts, and nothing here grows the number of turmoil hosts.

use std::collections::{BTreeMap, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use netmodel::Proto;
use netmodel::conntrack::{self, Conntrack, Race, TcpFlag, Tuple, Verdict};
use netmodel::dnat::{Choice, KubeProxy, Rules};
use netmodel::ipvs::{self, Ipvs};
use netmodel::ports::Ports;
use netmodel::ratelimit::TokenBucket;
use resolver::{ClusterState, Config, Dest, Handled, Server};

use crate::client::cares::CAres;
use crate::client::evdns::Evdns;
use crate::client::glibc::Glibc;
use crate::client::go::Go;
use crate::client::musl::Musl;
use crate::client::{Call, Lookup, Outcome, PROCESS_SOCKET, PodAddrs, Process, ResolvConf, Transport};
use crate::report::{LookupRecord, Report};
use crate::spec::{ClusterSpec, Fault, Library, MemoryModel, ProxyMode};

/// The kube-dns ClusterIP.
pub const KUBE_DNS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10)), 53);
/// node-local-dns's `kube-dns-upstream` Service: the same endpoints, another ClusterIP.
pub const KUBE_DNS_UPSTREAM: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 11)), 53);
/// node-local-dns's link-local listen address (incidents.md §6.4).
/// From pod creation to a passing readiness probe for a new replica [unverified: 2 s; the
/// kubeadm manifest probes /ready every 10 s, the first probe can pass sooner].
const REPLICA_STARTUP: Duration = Duration::from_secs(2);
/// kubeadm's Corefile: `health { lameduck 5s }`.
const LAMEDUCK: Duration = Duration::from_secs(5);

pub const NODE_LOCAL_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(169, 254, 20, 10));
/// Idle time after which a simulated TCP connection is closed: forward's `expire` default.
const TCP_EXPIRE: Duration = Duration::from_secs(10);
/// TCP's initial retransmission timeout (RFC 6298): a lost SYN costs 1 s.
const TCP_SYN_RTO: Duration = Duration::from_secs(1);

/// The cloud resolver an AZ's nodes use (VPC+2 style), as the cluster sees it.
pub fn upstream_ip(az: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 255, az as u8, 2))
}

/// A DNS message crossing the cluster's edge to or from a cloud resolver host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The node-side address (after SNAT): the node IP and the upstream socket's port.
    pub node_addr: SocketAddr,
    pub az: usize,
    pub transport: Transport,
    pub payload: Vec<u8>,
}

impl Frame {
    /// Wire form between turmoil hosts: node ip (4) | port (2) | transport (1) | payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.payload.len() + 7);
        match self.node_addr.ip() {
            IpAddr::V4(v4) => v.extend_from_slice(&v4.octets()),
            IpAddr::V6(_) => v.extend_from_slice(&[0, 0, 0, 0]),
        }
        v.extend_from_slice(&self.node_addr.port().to_be_bytes());
        v.push(u8::from(self.transport == Transport::Tcp));
        v.extend_from_slice(&self.payload);
        v
    }

    pub fn decode(b: &[u8], az: usize) -> Option<Frame> {
        let ip = Ipv4Addr::new(*b.first()?, *b.get(1)?, *b.get(2)?, *b.get(3)?);
        let port = u16::from_be_bytes([*b.get(4)?, *b.get(5)?]);
        let transport = if *b.get(6)? == 1 { Transport::Tcp } else { Transport::Udp };
        Some(Frame { node_addr: SocketAddr::new(IpAddr::V4(ip), port), az, transport, payload: b.get(7..)?.to_vec() })
    }
}

type NodeId = usize;
type PodId = usize;
type InstId = usize;

struct Node {
    az: usize,
    ip: IpAddr,
    ct: Conntrack,
    rules: Rules,
    ipvs: Option<Ipvs>,
    kube_proxy: KubeProxy,
    eni: Option<TokenBucket>,
    /// The node's own port space (hostNetwork sockets and SNAT).
    ports: Ports,
    /// The node-local cache on this node, while it serves.
    node_local: Option<InstId>,
    /// The node failed: its pods and resolvers are gone, nothing reaches it.
    down: bool,
}

struct ActiveLookup {
    model: Box<dyn Lookup>,
    started: Duration,
    name: String,
    queries: u32,
    /// The wire queries, when the scenario traces them.
    wire: Vec<crate::report::WireQuery>,
    /// socket id → (local port, transport)
    sockets: BTreeMap<u32, u16>,
    timer: Option<Duration>,
}

struct Pod {
    node: NodeId,
    ip: IpAddr,
    namespace: String,
    library: Library,
    rc: ResolvConf,
    call: Call,
    rate: f64,
    names: Vec<(String, u32)>,
    process: Process,
    ports: Ports,
    /// local port → lookup id (`PROCESS_OWNER`: a process-wide socket, for every lookup)
    port_owner: BTreeMap<u16, u64>,
    lookups: BTreeMap<u64, ActiveLookup>,
    /// Process-wide sockets (c-ares channels, evdns bases): socket id → port, never closed.
    proc_sockets: BTreeMap<u32, u16>,
    client_cache: Option<crate::spec::ClientCache>,
    /// name → (expires, first address or None for a failure)
    cache: BTreeMap<String, (Option<Duration>, Option<IpAddr>)>,
    threadpool: Option<usize>,
    app_rate: f64,
    /// Lookups waiting for a thread: (when the application asked, name).
    waiting: std::collections::VecDeque<(Duration, String)>,
}

const PROCESS_OWNER: u64 = u64::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstKind {
    /// A CoreDNS replica pod behind kube-dns.
    ClusterDns,
    /// node-local-dns on a node (hostNetwork, NOTRACK).
    NodeLocal,
}

struct Inst {
    kind: InstKind,
    node: NodeId,
    /// Where it answers: the pod IP, or the link-local IP (and the kube-dns IP in iptables mode).
    ip: IpAddr,
    server: Server,
    alive: bool,
    timer: Option<Duration>,
    /// (dialed upstream, transport) → local port of this instance's socket to it.
    up_ports: BTreeMap<(SocketAddr, Transport), u16>,
    corefile: String,
    seed: u64,
    restarts: u32,
    /// While the informers (re)list, the old and new objects are both held.
    relist_until: Option<Duration>,
    /// Dead, but still a ready endpoint: its node went down and the control plane has not noticed.
    unnoticed: bool,
    /// Deleted and out of the endpoints, still answering until its lameduck ends.
    terminating: bool,
    /// Consecutive failed liveness probes, and the refused forwards counted at the last probe.
    probe_failures: u32,
    probe_refused: u64,
}

/// Who owns an address: where answers go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Pod(PodId),
    Inst(InstId),
}

#[derive(Debug, Clone)]
struct Packet {
    src: SocketAddr,
    dst: SocketAddr,
    transport: Transport,
    payload: Vec<u8>,
}

/// A simulated TCP connection (client local address, dialed address).
#[derive(Debug, Clone, Copy)]
struct Conn {
    /// When the handshake completes.
    ready: Duration,
    last: Duration,
}

/// An event at (µs, sequence): the heap pops the earliest, ties in the order they were pushed. The
/// event itself waits in `Engine::slab` (the heap moves only these 24 bytes as it sifts).
/// The smallest queue length at which `Engine::compact` runs.
const COMPACT_MIN: usize = 1 << 14;

/// A timer event whose timer has been re-armed since (or whose lookup ended, or whose instance died).
fn superseded(pods: &[Pod], insts: &[Inst], ev: &Ev) -> bool {
    match ev {
        Ev::ClientTimer { pod, lookup, at } => pods.get(*pod).and_then(|p| p.lookups.get(lookup)).map(|l| l.timer) != Some(Some(*at)),
        Ev::InstTimer { inst, at } => insts.get(*inst).is_none_or(|i| i.timer != Some(*at) || !i.alive),
        _ => false,
    }
}

struct Scheduled {
    t: u64,
    seq: u64,
    slot: u32,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.t, self.seq) == (o.t, o.seq)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Scheduled {
    /// Reversed: `BinaryHeap` is a max-heap.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.t, o.seq).cmp(&(self.t, self.seq))
    }
}

#[derive(Debug)]
enum Ev {
    /// The autoscaler sets the replica count (scale-down deletes the newest replicas).
    Scale {
        replicas: usize,
    },
    /// An application TCP request from a pod.
    AppRequest {
        pod: PodId,
    },
    LookupStart {
        pod: PodId,
    },
    ClientTimer {
        pod: PodId,
        lookup: u64,
        at: Duration,
    },
    /// A query reaches an instance (after DNAT or NOTRACK). `client_node` is where the sender's
    /// conntrack lives (for un-NAT of the answer), if it went through one.
    Query {
        inst: InstId,
        pkt: Packet,
        client_node: Option<NodeId>,
    },
    /// An answer reaches its owner.
    Answer {
        owner: Owner,
        pkt: Packet,
    },
    InstTimer {
        inst: InstId,
        at: Duration,
    },
    /// An answer from the cloud resolver reaches a node.
    FromUpstream {
        frame: Frame,
    },
    /// ... after the resolver's slowness.
    FromUpstreamLate {
        frame: Frame,
    },
    /// The replicas' liveness probes run.
    Liveness,
    /// The control plane notices a node that went down.
    NodeNotReady {
        node: NodeId,
    },
    /// A new replica's readiness probe passes: it joins the endpoints.
    ReplicaReady {
        inst: InstId,
    },
    /// A terminating replica's lameduck is over: the process exits.
    ReplicaExit {
        inst: InstId,
    },
    /// A rolling update: a new replica, and once it is ready the next old one goes.
    RollStep {
        old: Vec<InstId>,
    },
    RollNext {
        old: Vec<InstId>,
    },
    /// A frame leaves for the cloud resolver (after the node's TCP handshake, if any).
    ToUpstream {
        frame: Frame,
    },
    Sample,
    Fault(Fault),
    KubeProxy {
        node: NodeId,
    },
    Restart {
        inst: InstId,
    },
}

/// Counters of what happened on the simulated network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetCounters {
    pub packets: u64,
    pub dropped_race: u64,
    pub dropped_table_full: u64,
    pub dropped_eni: u64,
    pub dropped_dead: u64,
    pub dropped_ipvs: u64,
    pub dropped_blackhole: u64,
    pub rejected: u64,
    /// Packets nodes sent to the cloud resolvers (what the ENI budget counts).
    pub upstream_packets: u64,
    pub upstream_queries: u64,
    pub tcp_connections: u64,
    pub restarts: u64,
    pub dropped_fragments: u64,
    pub dropped_loss: u64,
}

pub struct Engine {
    spec: ClusterSpec,
    now: Duration,
    /// Pending events, earliest (time, sequence) first.
    queue: BinaryHeap<Scheduled>,
    /// The events themselves, and the free slots.
    slab: Vec<Option<Ev>>,
    free: Vec<u32>,
    /// Queue length at which superseded timer events are swept out (see `compact`).
    compact_at: usize,
    seq: u64,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    insts: Vec<Inst>,
    pod_by_ip: BTreeMap<IpAddr, PodId>,
    /// Replica pod IP → instance.
    replica_by_ip: BTreeMap<IpAddr, InstId>,
    /// Node IP → node.
    node_by_ip: BTreeMap<IpAddr, NodeId>,
    /// (node ip, port) of an instance's cloud socket → (instance, upstream as dialed, transport).
    snat: BTreeMap<SocketAddr, (InstId, SocketAddr, Transport)>,
    tcp: BTreeMap<(SocketAddr, SocketAddr), Conn>,
    blackholed: Vec<bool>,
    /// Packet loss into or out of each AZ.
    az_loss: Vec<f64>,
    /// Bursty loss per AZ: (loss share, mean burst, in a burst now, state until).
    az_burst: Vec<Option<(f64, Duration, bool, Duration)>>,
    /// Extra time each AZ's cloud resolver takes to answer.
    upstream_slow: Vec<Duration>,
    /// UDP loss between the nodes and each AZ's cloud resolver.
    upstream_loss: Vec<f64>,
    /// UDP loss on links between two nodes, keyed (lower node, higher node).
    link_loss: BTreeMap<(NodeId, NodeId), f64>,
    state: Arc<ClusterState>,
    replica_ips: Vec<(usize, IpAddr)>,
    /// Pod IPs handed out per node so far.
    per_node: Vec<usize>,
    /// Services whose ClusterIP changed: (namespace, name) → IP.
    service_ips: BTreeMap<(String, String), IpAddr>,
    rng: fastrand::Rng,
    next_lookup: u64,
    pub report: Report,
    pub net: NetCounters,
    outbox: Vec<Frame>,
    trace: u64,
    last_sample_lookups: usize,
    /// Objects from the scenario's cluster-state dump.
    dump: Vec<serde_json::Value>,
    /// What pods put on the wire and got back since the last sample.
    wire: Wire,
    /// Cache hits and misses summed over the resolvers at the last sample, per instance.
    cache_seen: Vec<(u64, u64)>,
}

/// Counters of one simulated second, what the report's per-second series show.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Wire {
    /// Queries pods sent, by type: A, AAAA, other.
    pub by_type: [u64; 3],
    /// Queries pods sent, by zone: under the cluster domain, or not.
    pub cluster: u64,
    pub external: u64,
    /// Responses pods received, by rcode: NOERROR, NXDOMAIN, SERVFAIL, REFUSED, other.
    pub rcodes: [u64; 5],
    /// Packets each node's ENI sent to the cloud resolver.
    pub eni: Vec<u64>,
    /// Resolver cache hits and misses (cluster DNS and node-local caches together).
    pub cache_hits: u64,
    pub cache_misses: u64,
}

impl Wire {
    /// The rcode bucket a response falls in.
    fn rcode(payload: &[u8]) -> Option<usize> {
        // A response (QR set) with a whole header (RFC 1035 §4.1.1).
        if payload.len() < 12 || payload[2] & 0x80 == 0 {
            return None;
        }
        Some(match payload[3] & 0x0f {
            0 => 0,
            3 => 1,
            2 => 2,
            5 => 3,
            _ => 4,
        })
    }
}

fn us(d: Duration) -> u64 {
    d.as_micros() as u64
}

fn node_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250 + 1) as u8))
}

fn pod_ip(node: usize, j: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 100 + (node / 256) as u8, (node % 256) as u8, (j + 2) as u8))
}

fn proto(t: Transport) -> Proto {
    match t {
        Transport::Udp => Proto::Udp,
        Transport::Tcp => Proto::Tcp,
    }
}

fn to_res(t: Transport) -> resolver::Transport {
    match t {
        Transport::Udp => resolver::Transport::Udp,
        Transport::Tcp => resolver::Transport::Tcp,
    }
}

fn from_res(t: resolver::Transport) -> Transport {
    match t {
        resolver::Transport::Udp => Transport::Udp,
        resolver::Transport::Tcp => Transport::Tcp,
    }
}

/// Why a cluster cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cluster DNS Corefile: {0}")]
    Corefile(#[from] resolver::corefile::ConfigError),
    #[error("cluster state: {0}")]
    State(#[from] resolver::cluster::ClusterError),
    #[error("{0}")]
    Spec(String),
}

fn server_for(corefile: &str, state: Arc<ClusterState>, seed: u64) -> Result<Server, SimError> {
    let cf = resolver::corefile::parse_str(corefile, "Corefile", None, &|_| None)?;
    let cfg = Config::from_corefile(&cf, std::path::Path::new("."))?;
    Ok(Server::new(Arc::new(cfg), state, seed))
}

impl Engine {
    pub fn new(spec: ClusterSpec) -> Result<Engine, SimError> {
        if spec.nodes == 0 || spec.azs == 0 {
            return Err(SimError::Spec("a cluster needs at least one node and one AZ".into()));
        }
        let mut rng = fastrand::Rng::with_seed(spec.seed);
        let ct_max = conntrack::kube_proxy_max(spec.cpus_per_node, spec.conntrack_max_per_core, spec.conntrack_min);
        let nodes: Vec<Node> = (0..spec.nodes)
            .map(|i| Node {
                az: i % spec.azs,
                ip: node_ip(i),
                ct: Conntrack::new(conntrack::Config {
                    nfqueue_unfixed: spec.nfqueue,
                    ..conntrack::Config::for_kernel(spec.kernel, ct_max)
                }),
                rules: Rules::default(),
                ipvs: match spec.proxy {
                    ProxyMode::Ipvs(cfg) => Some(Ipvs::new(cfg)),
                    ProxyMode::Iptables => None,
                },
                kube_proxy: KubeProxy::new(spec.kube_proxy),
                eni: spec.eni_limit.map(TokenBucket::new),
                ports: Ports::default(),
                node_local: None,
                down: false,
            })
            .collect();
        let mut per_node = vec![0usize; spec.nodes];
        let mut next_ip = |node: usize| {
            let ip = pod_ip(node, per_node[node]);
            per_node[node] += 1;
            ip
        };
        let replica_ips: Vec<(usize, IpAddr)> = (0..spec.coredns_replicas).map(|r| (r % spec.nodes, next_ip(r % spec.nodes))).collect();
        let mut pods = Vec::new();
        let mut k = 0usize;
        let nameserver = if spec.node_local.as_ref().is_some_and(|n| !n.bind_kube_dns) { NODE_LOCAL_IP } else { KUBE_DNS.ip() };
        for g in &spec.pods {
            for _ in 0..g.count {
                let node = k % spec.nodes;
                k += 1;
                let ip = next_ip(node);
                let text = g.resolv_conf.clone().unwrap_or_else(|| {
                    ResolvConf::kubelet_cluster_first(nameserver, &g.namespace, &spec.cluster_domain, &["ec2.internal"])
                });
                pods.push(Pod {
                    node,
                    ip,
                    namespace: g.namespace.clone(),
                    library: g.library,
                    rc: ResolvConf::parse(&text),
                    call: Call {
                        name: String::new(),
                        hints: g.hints,
                        pod: PodAddrs([ip, IpAddr::V4(Ipv4Addr::LOCALHOST)].into_iter().chain(g.extra_addrs.iter().copied()).collect()),
                    },
                    rate: g.rate,
                    names: g.names.clone(),
                    process: Process::default(),
                    ports: Ports::default(),
                    port_owner: BTreeMap::new(),
                    lookups: BTreeMap::new(),
                    proc_sockets: BTreeMap::new(),
                    client_cache: g.client_cache,
                    cache: BTreeMap::new(),
                    threadpool: g.threadpool,
                    app_rate: g.app_rate,
                    waiting: std::collections::VecDeque::new(),
                });
            }
        }
        // The cluster state every replica reads, in Kubernetes' own List format.
        let dump = spec.cluster_state.as_deref().map(dump_items).transpose()?.unwrap_or_default();
        let state = Arc::new(ClusterState::parse(
            &cluster_list(&replica_ips, &pods, spec.extra_pods, &BTreeMap::new(), &dump),
            "simulated-cluster",
        )?);
        let mut insts = Vec::new();
        for (r, (node, ip)) in replica_ips.iter().enumerate() {
            let az = nodes[*node].az;
            let corefile = spec.corefile.replace("/etc/resolv.conf", &upstream_ip(az).to_string());
            let seed = spec.seed ^ (0x5eed_0000 + r as u64);
            insts.push(Inst {
                kind: InstKind::ClusterDns,
                node: *node,
                ip: *ip,
                server: server_for(&corefile, state.clone(), seed)?,
                alive: true,
                timer: None,
                up_ports: BTreeMap::new(),
                corefile,
                seed,
                restarts: 0,
                relist_until: Some(Duration::ZERO),
                unnoticed: false,
                terminating: false,
                probe_failures: 0,
                probe_refused: 0,
            });
        }
        let mut nodes = nodes;
        if let Some(nl) = &spec.node_local {
            for (i, n) in nodes.iter_mut().enumerate() {
                let corefile = nl
                    .corefile
                    .replace("__PILLAR__DNS__DOMAIN__", &spec.cluster_domain)
                    .replace("__PILLAR__LOCAL__DNS__", &NODE_LOCAL_IP.to_string())
                    .replace("__PILLAR__DNS__SERVER__", &KUBE_DNS.ip().to_string())
                    .replace("__PILLAR__CLUSTER__DNS__", &KUBE_DNS_UPSTREAM.ip().to_string())
                    .replace("__PILLAR__UPSTREAM__SERVERS__", &upstream_ip(n.az).to_string());
                let seed = spec.seed ^ (0x10ca_1000 + i as u64);
                n.node_local = Some(insts.len());
                insts.push(Inst {
                    kind: InstKind::NodeLocal,
                    node: i,
                    ip: NODE_LOCAL_IP,
                    server: server_for(&corefile, state.clone(), seed)?,
                    alive: true,
                    timer: None,
                    up_ports: BTreeMap::new(),
                    corefile,
                    seed,
                    restarts: 0,
                    relist_until: None,
                    unnoticed: false,
                    terminating: false,
                    probe_failures: 0,
                    probe_refused: 0,
                });
            }
        }
        let pod_by_ip = pods.iter().enumerate().map(|(i, p)| (p.ip, i)).collect();
        let replica_by_ip = insts.iter().enumerate().filter(|(_, r)| r.kind == InstKind::ClusterDns).map(|(i, r)| (r.ip, i)).collect();
        let node_by_ip = nodes.iter().enumerate().map(|(i, n)| (n.ip, i)).collect();
        let mut e = Engine {
            now: Duration::ZERO,
            queue: BinaryHeap::new(),
            slab: Vec::new(),
            free: Vec::new(),
            compact_at: COMPACT_MIN,
            seq: 0,
            nodes,
            pods,
            insts,
            pod_by_ip,
            replica_by_ip,
            node_by_ip,
            snat: BTreeMap::new(),
            tcp: BTreeMap::new(),
            blackholed: vec![false; spec.azs],
            az_loss: vec![0.0; spec.azs],
            az_burst: vec![None; spec.azs],
            upstream_slow: vec![Duration::ZERO; spec.azs],
            upstream_loss: vec![0.0; spec.azs],
            link_loss: BTreeMap::new(),
            state,
            replica_ips,
            per_node,
            service_ips: BTreeMap::new(),
            rng: fastrand::Rng::with_seed(rng.u64(..)),
            next_lookup: 1,
            report: Report::new(&spec),
            net: NetCounters::default(),
            outbox: Vec::new(),
            trace: 0xcbf2_9ce4_8422_2325,
            last_sample_lookups: 0,
            wire: Wire::default(),
            cache_seen: Vec::new(),
            dump,
            spec,
        };
        e.wire.eni = vec![0; e.nodes.len()];
        // kube-proxy on every node programs kube-dns (and kube-dns-upstream) with the replicas.
        let eps = e.ready_endpoints();
        for n in &mut e.nodes {
            for vip in [KUBE_DNS, KUBE_DNS_UPSTREAM] {
                n.rules.set(Proto::Udp, vip, eps.clone());
                n.rules.set(Proto::Tcp, vip, eps.clone());
                if let Some(ipvs) = &mut n.ipvs {
                    ipvs.set_endpoints(Duration::ZERO, vip, &eps);
                }
            }
        }
        for p in 0..e.pods.len() {
            let first = e.exp_gap(p);
            e.push(first, Ev::LookupStart { pod: p });
            if e.pods[p].app_rate > 0.0 {
                let u = e.rng.f64().max(1e-12);
                let at = Duration::from_secs_f64(-u.ln() / e.pods[p].app_rate);
                e.push(at, Ev::AppRequest { pod: p });
            }
        }
        for (at, f) in e.spec.faults.clone() {
            e.push(at, Ev::Fault(f));
        }
        e.push(Duration::from_secs(1), Ev::Sample);
        if let Some(l) = e.spec.liveness {
            e.push(l.period, Ev::Liveness);
        }
        for i in 0..e.insts.len() {
            e.drain_inst(i);
        }
        Ok(e)
    }

    fn ready_endpoints(&self) -> Vec<SocketAddr> {
        self.insts
            .iter()
            .filter(|i| i.kind == InstKind::ClusterDns && ((i.alive && !i.terminating) || i.unnoticed))
            .map(|i| SocketAddr::new(i.ip, 53))
            .collect()
    }

    fn push(&mut self, at: Duration, ev: Ev) {
        self.seq += 1;
        let t = us(at.max(self.now));
        let slot = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = Some(ev);
                i
            }
            None => {
                self.slab.push(Some(ev));
                (self.slab.len() - 1) as u32
            }
        };
        self.queue.push(Scheduled { t, seq: self.seq, slot });
        if self.queue.len() >= self.compact_at {
            self.compact();
        }
    }

    /// Sweeps superseded timer events out of the queue. A lookup or resolver re-arms its timer at
    /// every send, and each re-arm leaves the old event behind to fire as a no-op seconds later, so
    /// most of a busy queue is dead weight that every push and pop pays for. Whenever the queue has
    /// doubled since the last sweep, the events whose timer was re-armed (or whose owner is gone) go.
    /// Deterministic: it depends only on the queue's contents.
    fn compact(&mut self) {
        let (pods, insts, slab, free) = (&self.pods, &self.insts, &mut self.slab, &mut self.free);
        self.queue.retain(|s| {
            let live = slab[s.slot as usize].as_ref().is_some_and(|ev| !superseded(pods, insts, ev));
            if !live {
                slab[s.slot as usize] = None;
                free.push(s.slot);
            }
            live
        });
        self.compact_at = (2 * self.queue.len()).max(COMPACT_MIN);
    }

    fn exp_gap(&mut self, pod: PodId) -> Duration {
        let rate = self.pods[pod].rate.max(1e-9);
        let u = self.rng.f64().max(1e-12);
        self.now + Duration::from_secs_f64(-u.ln() / rate)
    }

    fn mix(&mut self, a: u64, b: u64) {
        for v in [a, b] {
            self.trace = (self.trace ^ v).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// When the next event is due.
    pub fn next_event(&self) -> Option<Duration> {
        self.queue.peek().map(|e| Duration::from_micros(e.t))
    }

    /// Processes every event due by `until`; returns frames for the cloud resolvers.
    pub fn run_until(&mut self, until: Duration) -> Vec<Frame> {
        while self.queue.peek().is_some_and(|e| Duration::from_micros(e.t) <= until) {
            let Some(Scheduled { t, seq, slot }) = self.queue.pop() else { break };
            let Some(ev) = self.slab.get_mut(slot as usize).and_then(Option::take) else { continue };
            self.free.push(slot);
            self.now = Duration::from_micros(t);
            self.mix(t, seq);
            self.handle(ev);
        }
        self.now = self.now.max(until);
        std::mem::take(&mut self.outbox)
    }

    /// A frame from a cloud resolver host arrived now.
    pub fn deliver_frame(&mut self, frame: Frame) {
        let at = self.now;
        self.push(at, Ev::FromUpstream { frame });
    }

    pub fn trace_hash(&self) -> u64 {
        self.trace
    }

    pub fn conntrack_entries(&self) -> Vec<usize> {
        self.nodes.iter().map(|n| n.ct.len()).collect()
    }

    pub fn insert_failed(&self) -> u64 {
        self.nodes.iter().map(|n| n.ct.counters.insert_failed).sum()
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::LookupStart { pod } => {
                if self.nodes[self.pods[pod].node].down {
                    return;
                }
                self.start_lookup(pod);
                let next = self.exp_gap(pod);
                self.push(next, Ev::LookupStart { pod });
            }
            Ev::ClientTimer { pod, lookup, at } => {
                let Some(l) = self.pods[pod].lookups.get_mut(&lookup) else { return };
                if l.timer != Some(at) {
                    return;
                }
                l.model.handle_timeout(self.now);
                self.drive_lookup(pod, lookup);
            }
            Ev::Query { inst, pkt, client_node } => self.at_inst(inst, pkt, client_node),
            Ev::Answer { owner, pkt } => match owner {
                Owner::Pod(p) => self.at_pod(p, pkt),
                Owner::Inst(i) => {
                    if self.insts[i].alive {
                        self.insts[i].server.handle_upstream(self.now, pkt.src, to_res(pkt.transport), &pkt.payload);
                        self.drain_inst(i);
                    }
                }
            },
            Ev::InstTimer { inst, at } => {
                let r = &mut self.insts[inst];
                if r.timer != Some(at) || !r.alive {
                    return;
                }
                r.timer = None;
                r.server.handle_timeout(self.now);
                self.drain_inst(inst);
            }
            Ev::FromUpstream { frame } => match self.upstream_slow.get(frame.az).copied().filter(|d| !d.is_zero()) {
                // A slow cloud resolver: its answers leave it late.
                Some(delay) => self.push(self.now + delay, Ev::FromUpstreamLate { frame }),
                None => self.upstream_answer(frame),
            },
            Ev::FromUpstreamLate { frame } => self.upstream_answer(frame),
            Ev::Liveness => {
                let Some(l) = self.spec.liveness else { return };
                for inst in 0..self.insts.len() {
                    let i = &mut self.insts[inst];
                    if i.kind != InstKind::ClusterDns || !i.alive {
                        continue;
                    }
                    // The sidecar's probe query needs a forward too: it fails if forwards were refused
                    // for being over the limit since the last probe.
                    let refused: u64 = i.server.metrics.blocks.iter().map(|b| b.forward_max_concurrent_rejects).sum();
                    if refused > i.probe_refused {
                        i.probe_failures += 1;
                    } else {
                        i.probe_failures = 0;
                    }
                    i.probe_refused = refused;
                    if i.probe_failures >= l.failure_threshold {
                        i.probe_failures = 0;
                        self.crash(
                            inst,
                            format!("liveness probe failed {} times: forwards refused at the concurrency limit", l.failure_threshold),
                        );
                    }
                }
                self.push(self.now + l.period, Ev::Liveness);
            }
            Ev::ReplicaReady { inst } => {
                if let Some(i) = self.insts.get_mut(inst) {
                    i.alive = true;
                }
                self.endpoints_changed();
            }
            Ev::ReplicaExit { inst } => {
                if let Some(i) = self.insts.get_mut(inst) {
                    i.alive = false;
                    i.terminating = false;
                }
                self.endpoints_changed();
            }
            Ev::RollStep { old } => {
                if old.is_empty() {
                    self.report.events.push((self.now, "rollout complete".into()));
                    return;
                }
                self.spawn_replica();
                self.push(self.now + REPLICA_STARTUP, Ev::RollNext { old });
            }
            Ev::RollNext { mut old } => {
                let first = old.remove(0);
                self.terminate(first);
                self.push(self.now, Ev::RollStep { old });
            }
            Ev::NodeNotReady { node } => {
                // The node controller marked the node NotReady: its pods leave the endpoints.
                for i in &mut self.insts {
                    if i.node == node {
                        i.unnoticed = false;
                    }
                }
                self.report.events.push((self.now, format!("node {node} NotReady: its replicas leave the endpoints")));
                self.endpoints_changed();
            }
            Ev::ToUpstream { frame } => {
                if self.blackholed[frame.az] {
                    self.net.dropped_blackhole += 1;
                } else {
                    self.outbox.push(frame);
                }
            }
            Ev::Sample => {
                for n in &mut self.nodes {
                    n.ct.expire(self.now);
                }
                let entries = self.conntrack_entries();
                let done = self.report.lookups.len();
                let window = self.report.lookups[self.last_sample_lookups..].to_vec();
                let insert_failed = self.insert_failed();
                let replicas = self.insts.iter().filter(|i| i.kind == InstKind::ClusterDns && i.alive).count();
                let memory_max = self.check_memory();
                self.count_cache();
                let wire = std::mem::replace(&mut self.wire, Wire { eni: vec![0; self.nodes.len()], ..Wire::default() });
                self.report.sample(self.now, entries, &window, &self.net, insert_failed, replicas, memory_max, wire);
                self.last_sample_lookups = done;
                self.push(self.now + Duration::from_secs(1), Ev::Sample);
            }
            Ev::Fault(f) => self.fault(f),
            Ev::KubeProxy { node } => {
                let n = &mut self.nodes[node];
                n.kube_proxy.poll(self.now, &mut n.rules, &mut n.ct);
                // Work it queued for later (a late conntrack cleanup) needs its own wake-up.
                if let Some(at) = n.kube_proxy.next_due() {
                    self.push(at, Ev::KubeProxy { node });
                }
            }
            Ev::Restart { inst } => self.restart(inst),
            Ev::AppRequest { pod } => {
                if self.nodes[self.pods[pod].node].down {
                    return;
                }
                self.app_request(pod);
                let rate = self.pods[pod].app_rate;
                let u = self.rng.f64().max(1e-12);
                let at = self.now + Duration::from_secs_f64(-u.ln() / rate);
                self.push(at, Ev::AppRequest { pod });
            }
            Ev::Scale { replicas } => {
                let alive: Vec<InstId> =
                    (0..self.insts.len()).filter(|&i| self.insts[i].kind == InstKind::ClusterDns && self.insts[i].alive).collect();
                if alive.len() > replicas {
                    for &i in &alive[replicas..] {
                        self.insts[i].alive = false;
                    }
                    self.report.events.push((self.now, format!("autoscaler: {} → {replicas} replicas", alive.len())));
                    self.endpoints_changed();
                } else if alive.len() < replicas {
                    for _ in alive.len()..replicas {
                        self.spawn_replica();
                    }
                    self.report.events.push((self.now, format!("autoscaler: {} → {replicas} replicas", alive.len())));
                }
            }
        }
    }

    /// The apiserver tells every node's kube-proxy the current ready endpoints of kube-dns.
    fn endpoints_changed(&mut self) {
        let eps = self.ready_endpoints();
        let now = self.now;
        let mut due = Vec::new();
        for (i, n) in self.nodes.iter_mut().enumerate() {
            for vip in [KUBE_DNS, KUBE_DNS_UPSTREAM] {
                n.kube_proxy.endpoints_changed(now, Proto::Udp, vip, eps.clone());
                n.kube_proxy.endpoints_changed(now, Proto::Tcp, vip, eps.clone());
                if let Some(ipvs) = &mut n.ipvs {
                    ipvs.set_endpoints(now, vip, &eps);
                }
            }
            if let Some(at) = n.kube_proxy.next_due() {
                due.push((at, i));
            }
        }
        for (at, node) in due {
            self.push(at, Ev::KubeProxy { node });
        }
    }

    fn fault(&mut self, f: Fault) {
        self.report.events.push((self.now, format!("{f:?}")));
        match f {
            Fault::KillReplica(r) => {
                let Some(inst) = self.insts.iter().enumerate().filter(|(_, i)| i.kind == InstKind::ClusterDns).nth(r).map(|(i, _)| i)
                else {
                    return;
                };
                self.insts[inst].alive = false;
                self.endpoints_changed();
            }
            Fault::UpstreamBlackhole(az) => {
                if let Some(b) = self.blackholed.get_mut(az) {
                    *b = true;
                }
            }
            Fault::UpstreamRepair(az) => {
                if let Some(b) = self.blackholed.get_mut(az) {
                    *b = false;
                }
            }
            Fault::UpstreamSlow { az, delay } => {
                if let Some(d) = self.upstream_slow.get_mut(az) {
                    *d = delay;
                }
            }
            Fault::RollReplicas => {
                let old: Vec<InstId> =
                    (0..self.insts.len()).filter(|&i| self.insts[i].kind == InstKind::ClusterDns && self.insts[i].alive).collect();
                self.push(self.now, Ev::RollStep { old });
            }
            Fault::NodeDown(node) => {
                let Some(n) = self.nodes.get_mut(node) else { return };
                n.down = true;
                // Its pods are gone with their lookups; its resolvers stop answering but stay ready
                // endpoints until the node controller marks the node NotReady.
                for p in self.pods.iter_mut().filter(|p| p.node == node) {
                    p.lookups.clear();
                    p.waiting.clear();
                }
                for i in self.insts.iter_mut().filter(|i| i.node == node && i.alive) {
                    i.alive = false;
                    i.unnoticed = i.kind == InstKind::ClusterDns;
                }
                let grace = self.spec.node_monitor_grace;
                self.push(self.now + grace, Ev::NodeNotReady { node });
            }
            Fault::NodeLocalDown(node) => {
                // Teardown: the NOTRACK rules and the link-local address go (kubernetes/dns#310).
                if let Some(n) = self.nodes.get_mut(node) {
                    n.node_local = None;
                }
                if let Some(i) = self.insts.iter().position(|i| i.kind == InstKind::NodeLocal && i.node == node) {
                    self.insts[i].alive = false;
                }
            }
            Fault::AzLoss { az, loss } => {
                if let Some(l) = self.az_loss.get_mut(az) {
                    *l = loss.clamp(0.0, 1.0);
                }
                if let Some(b) = self.az_burst.get_mut(az) {
                    *b = None;
                }
            }
            Fault::AzBurstLoss { az, loss, burst } => {
                if let Some(b) = self.az_burst.get_mut(az) {
                    let loss = loss.clamp(0.0, 0.999);
                    *b = (loss > 0.0 && !burst.is_zero()).then_some((loss, burst, false, self.now));
                }
            }
            Fault::ServiceIp { namespace, name, ip } => {
                self.service_ips.insert((namespace, name), ip);
                self.publish_state();
            }
            Fault::ClusterNodes(n) => {
                if let Some(cpa) = self.spec.autoscaler {
                    // The autoscaler notices at its next poll.
                    let target = cpa.replicas(n, n * self.spec.cpus_per_node);
                    let at = self.now + cpa.poll;
                    self.push(at, Ev::Scale { replicas: target });
                }
            }
            Fault::ApiserverRestart => {
                let until = self.now + self.spec.replica_memory.map_or(Duration::from_secs(10), |m| m.relist);
                for i in &mut self.insts {
                    if i.alive && i.kind == InstKind::ClusterDns {
                        i.relist_until = Some(until);
                    }
                }
                self.check_memory();
            }
            Fault::UpstreamLoss { az, loss } => {
                if let Some(l) = self.upstream_loss.get_mut(az) {
                    *l = loss.clamp(0.0, 1.0);
                }
            }
            Fault::LinkLoss { a, b, loss } => {
                let key = (a.min(b), a.max(b));
                if loss > 0.0 {
                    self.link_loss.insert(key, loss.min(1.0));
                } else {
                    self.link_loss.remove(&key);
                }
            }
            Fault::RollNodeLocal { gap } => {
                // One node at a time, in node order, each waiting for the previous one's new pod.
                let nodes: Vec<NodeId> = self.insts.iter().filter(|i| i.kind == InstKind::NodeLocal).map(|i| i.node).collect();
                for (k, node) in nodes.into_iter().enumerate() {
                    let down = self.now + gap * k as u32;
                    self.push(down, Ev::Fault(Fault::NodeLocalDown(node)));
                    self.push(down + gap, Ev::Fault(Fault::NodeLocalUp(node)));
                }
            }
            Fault::NodeLocalUp(node) => {
                if let Some(i) = self.insts.iter().position(|i| i.kind == InstKind::NodeLocal && i.node == node) {
                    self.nodes[node].node_local = Some(i);
                    self.restart(i);
                }
            }
        }
    }

    /// The apiserver's view changed: rebuild the cluster state and hand it to every resolver.
    fn publish_state(&mut self) {
        let list = cluster_list(&self.replica_ips, &self.pods, self.spec.extra_pods, &self.service_ips, &self.dump);
        if let Ok(state) = ClusterState::parse(&list, "simulated-cluster") {
            self.state = Arc::new(state);
            let now = self.now;
            for i in &mut self.insts {
                i.server.handle_cluster_state(now, self.state.clone());
            }
        }
    }

    /// A new CoreDNS replica on the node with the fewest (a new pod IP, in the cluster state at once);
    /// it joins the endpoints when its readiness probe passes, `REPLICA_STARTUP` later.
    fn spawn_replica(&mut self) {
        let node = (0..self.nodes.len())
            .filter(|&n| !self.nodes[n].down)
            .min_by_key(|&n| self.insts.iter().filter(|i| i.kind == InstKind::ClusterDns && i.alive && i.node == n).count())
            .unwrap_or(0);
        let ip = pod_ip(node, self.per_node[node]);
        self.per_node[node] += 1;
        self.replica_ips.push((node, ip));
        self.publish_state();
        let corefile = self.spec.corefile.replace("/etc/resolv.conf", &upstream_ip(self.nodes[node].az).to_string());
        let seed = self.spec.seed ^ (0x5eed_0000 + self.replica_ips.len() as u64);
        let relist = self.spec.replica_memory.map_or(Duration::from_secs(10), |m| m.relist);
        // The Corefile parsed when the cluster was built, so it parses again.
        let Ok(server) = server_for(&corefile, self.state.clone(), seed) else { return };
        self.insts.push(Inst {
            kind: InstKind::ClusterDns,
            node,
            ip,
            server,
            alive: false,
            timer: None,
            up_ports: BTreeMap::new(),
            corefile,
            seed,
            restarts: 0,
            relist_until: Some(self.now + relist),
            unnoticed: false,
            terminating: false,
            probe_failures: 0,
            probe_refused: 0,
        });
        let inst = self.insts.len() - 1;
        self.replica_by_ip.insert(ip, inst);
        self.report.events.push((self.now, format!("replica {ip} created on node {node}")));
        self.push(self.now + REPLICA_STARTUP, Ev::ReplicaReady { inst });
    }

    /// A replica is deleted gracefully: out of the endpoints at once, serving through its lameduck,
    /// then gone (dns-servers.md §1.6).
    fn terminate(&mut self, inst: InstId) {
        let Some(i) = self.insts.get_mut(inst) else { return };
        i.terminating = true;
        let ip = i.ip;
        self.report.events.push((self.now, format!("replica {ip} terminating")));
        self.endpoints_changed();
        self.push(self.now + LAMEDUCK, Ev::ReplicaExit { inst });
    }

    /// A replica's memory by the scenario's model.
    fn memory(&self, inst: InstId) -> u64 {
        let i = &self.insts[inst];
        let relisting = i.relist_until.is_some_and(|t| self.now < t);
        let state = i.server.cluster_state();
        match self.spec.replica_memory.map(|m| m.model) {
            None | Some(MemoryModel::Ndots) => {
                // The new state is built beside the old one while relisting.
                (i.server.memory_bytes() + if relisting { state.bytes() } else { 0 }) as u64
            }
            Some(MemoryModel::CoreDns(m)) => {
                let verified = i
                    .server
                    .config()
                    .servers
                    .iter()
                    .filter_map(|s| s.kubernetes.as_ref())
                    .any(|k| k.pods == resolver::config::PodsMode::Verified);
                let objects = 2 * state.services.len() as u64;
                let watched = objects * m.per_object + if verified { state.pods.len() as u64 * m.per_watched_pod } else { 0 };
                m.base
                    + watched * if relisting { 2 } else { 1 }
                    + i.server.in_flight() as u64 * m.per_inflight
                    + i.server.cache_entries() as u64 * m.per_cache_entry
            }
        }
    }

    /// OOM-kills replicas over their limit; returns the largest replica memory.
    fn check_memory(&mut self) -> u64 {
        let mut max = 0;
        for inst in 0..self.insts.len() {
            if self.insts[inst].kind != InstKind::ClusterDns || !self.insts[inst].alive {
                continue;
            }
            let m = self.memory(inst);
            max = max.max(m);
            if let Some(limit) = self.spec.replica_memory.map(|r| r.limit)
                && m > limit
            {
                self.crash(inst, format!("OOMKilled: {} MiB over the {} MiB limit", m >> 20, limit >> 20));
            }
        }
        max
    }

    /// A fresh process for an instance: a new `Server` (empty cache), as a pod restart does.
    fn restart(&mut self, inst: InstId) {
        let relist = self.spec.replica_memory.map_or(Duration::from_secs(10), |m| m.relist);
        let now = self.now;
        let i = &mut self.insts[inst];
        if i.kind == InstKind::ClusterDns {
            // A starting replica lists everything.
            i.relist_until = Some(now + relist);
        }
        i.seed = i.seed.wrapping_add(0x9e37_79b9);
        match server_for(&i.corefile, self.state.clone(), i.seed) {
            Ok(s) => i.server = s,
            Err(_) => return,
        }
        i.alive = true;
        i.timer = None;
        i.up_ports.clear();
        let was_replica = i.kind == InstKind::ClusterDns;
        self.snat.retain(|_, v| v.0 != inst);
        self.drain_inst(inst);
        if was_replica {
            self.endpoints_changed();
        }
    }

    /// The process died (the loop plugin halted it, or the OOM killer): CrashLoopBackOff (10 s,
    /// doubling, at most 5 min).
    fn crash(&mut self, inst: InstId, why: String) {
        let i = &mut self.insts[inst];
        if !i.alive {
            return;
        }
        i.alive = false;
        let backoff = Duration::from_secs(10u64.saturating_mul(1 << i.restarts.min(5)).min(300));
        i.restarts += 1;
        self.net.restarts += 1;
        let was_replica = i.kind == InstKind::ClusterDns;
        self.report.events.push((self.now, format!("instance {inst} crashed: {why}; restart in {backoff:?}")));
        self.push(self.now + backoff, Ev::Restart { inst });
        if was_replica {
            self.endpoints_changed();
        }
    }

    fn start_lookup(&mut self, pod: PodId) {
        let p = &mut self.pods[pod];
        let total: u32 = p.names.iter().map(|n| n.1).sum();
        let mut pick = self.rng.u32(..total.max(1));
        let mut name = p.names.first().map(|n| n.0.clone()).unwrap_or_default();
        for (n, w) in &p.names {
            if pick < *w {
                name = n.clone();
                break;
            }
            pick -= w;
        }
        self.begin_lookup(pod, name, self.now);
    }

    /// The application asks for `name` (asked at `asked`): the client cache, the thread pool, then
    /// the library.
    fn begin_lookup(&mut self, pod: PodId, name: String, asked: Duration) {
        let now = self.now;
        let p = &mut self.pods[pod];
        if p.client_cache.is_some()
            && let Some((expires, addr)) = p.cache.get(&name)
            && expires.is_none_or(|e| now < e)
        {
            let (addr, ok) = (*addr, addr.is_some());
            self.report.lookups.push(LookupRecord {
                pod,
                start: asked,
                end: now,
                name,
                queries: 0,
                ok,
                outcome: if ok { "ok" } else { "nxdomain" },
                addr,
                cached: true,
                library: p.library,
                wire: Vec::new(),
            });
            return;
        }
        if p.threadpool.is_some_and(|n| p.lookups.len() >= n) {
            p.waiting.push_back((asked, name));
            return;
        }
        let id = self.next_lookup;
        self.next_lookup += 1;
        let mut call = p.call.clone();
        // `{n}` in a workload name: a random number per lookup, so every lookup asks a new name.
        call.name = name.replace("{n}", &self.rng.u32(..1_000_000).to_string());
        let seed = self.rng.u64(..);
        let model: Box<dyn Lookup> = match p.library {
            Library::Glibc(v) => Box::new(Glibc::new(self.now, v, &p.rc, &call, p.process.clone(), seed)),
            Library::GoCgo(v) => {
                call.hints = crate::client::Hints::GO_CGO;
                Box::new(Glibc::new(self.now, v, &p.rc, &call, p.process.clone(), seed))
            }
            Library::Musl(v) => Box::new(Musl::new(self.now, v, &p.rc, &call, seed)),
            Library::Go => Box::new(Go::new(self.now, &p.rc, &call, p.process.clone(), seed)),
            Library::CAres(era) => Box::new(CAres::new(self.now, era, &p.rc, &call, p.process.clone(), seed)),
            Library::Evdns(v) => Box::new(Evdns::new(self.now, v, &p.rc, &call, p.process.clone(), seed)),
        };
        p.lookups
            .insert(id, ActiveLookup { model, started: asked, name, queries: 0, wire: Vec::new(), sockets: BTreeMap::new(), timer: None });
        self.drive_lookup(pod, id);
    }

    /// Sends what the lookup wants to send, arms its timer, finishes it when it has a result.
    fn drive_lookup(&mut self, pod: PodId, id: u64) {
        loop {
            let Some(l) = self.pods[pod].lookups.get_mut(&id) else { return };
            let Some(send) = l.model.poll_send() else { break };
            l.queries += 1;
            if self.spec.trace_queries {
                l.wire.push(crate::report::WireQuery {
                    at: self.now,
                    qname: send.qname.clone(),
                    qtype: send.qtype,
                    transport: send.transport,
                    server: send.server,
                });
            }
            self.wire.by_type[match send.qtype {
                1 => 0,
                28 => 1,
                _ => 2,
            }] += 1;
            if in_zone(&send.qname, &self.spec.cluster_domain) {
                self.wire.cluster += 1;
            } else {
                self.wire.external += 1;
            }
            let port = if send.socket >= PROCESS_SOCKET {
                let p = &mut self.pods[pod];
                match p.proc_sockets.get(&send.socket) {
                    Some(port) => *port,
                    None => {
                        let Some(port) = p.ports.bind(&mut self.rng) else { continue };
                        p.proc_sockets.insert(send.socket, port);
                        p.port_owner.insert(port, PROCESS_OWNER);
                        port
                    }
                }
            } else {
                match l.sockets.get(&send.socket) {
                    Some(p) => *p,
                    None => {
                        let Some(port) = self.pods[pod].ports.bind(&mut self.rng) else { continue };
                        let l = self.pods[pod].lookups.get_mut(&id).expect("lookup present: checked above");
                        l.sockets.insert(send.socket, port);
                        self.pods[pod].port_owner.insert(port, id);
                        port
                    }
                }
            };
            let src = SocketAddr::new(self.pods[pod].ip, port);
            let pkt = Packet { src, dst: send.server, transport: send.transport, payload: send.payload };
            self.send(Owner::Pod(pod), pkt);
        }
        let p = &mut self.pods[pod];
        let Some(l) = p.lookups.get_mut(&id) else { return };
        let mut closed = Vec::new();
        while let Some(s) = l.model.poll_closed() {
            if let Some(port) = l.sockets.remove(&s) {
                closed.push(port);
            }
        }
        let result = l.model.result().cloned();
        if let Some(outcome) = result {
            let l = p.lookups.remove(&id).expect("lookup present: checked above");
            closed.extend(l.sockets.values().copied());
            p.process = l.model.process();
            let addr = match &outcome {
                Outcome::Addrs(a) => a.first().copied(),
                _ => None,
            };
            if let Some(cc) = p.client_cache {
                let ttl = if addr.is_some() { cc.positive } else { Some(cc.negative) };
                p.cache.insert(l.name.clone(), (ttl.map(|t| self.now + t), addr));
            }
            self.report.lookups.push(LookupRecord {
                pod,
                start: l.started,
                end: self.now,
                name: l.name,
                queries: l.queries,
                ok: outcome.is_ok(),
                outcome: outcome_label(&outcome),
                addr,
                cached: false,
                library: self.pods[pod].library,
                wire: l.wire,
            });
            // A thread is free: the next waiting lookup.
            if let Some((asked, name)) = self.pods[pod].waiting.pop_front() {
                for port in std::mem::take(&mut closed) {
                    self.close_pod_socket(pod, port);
                }
                return self.begin_lookup(pod, name, asked);
            }
        }
        for port in closed {
            self.close_pod_socket(pod, port);
        }
        let Some(l) = self.pods[pod].lookups.get_mut(&id) else { return };
        let next = l.model.poll_timeout();
        if next != l.timer {
            l.timer = next;
            if let Some(at) = next {
                self.push(at, Ev::ClientTimer { pod, lookup: id, at });
            }
        }
    }

    /// A pod closes a socket: its port is free again; a TCP connection on it ends with FIN/ACK.
    fn close_pod_socket(&mut self, pod: PodId, port: u16) {
        let p = &mut self.pods[pod];
        p.ports.release(port);
        p.port_owner.remove(&port);
        let local = SocketAddr::new(p.ip, port);
        let node = p.node;
        let conns: Vec<(SocketAddr, SocketAddr)> =
            self.tcp.range((local, SocketAddr::from(([0, 0, 0, 0], 0)))..).take_while(|(k, _)| k.0 == local).map(|(k, _)| *k).collect();
        for key in conns {
            self.tcp.remove(&key);
            self.net.packets += 2;
            let t = Tuple { proto: Proto::Tcp, src: key.0, dst: key.1 };
            let now = self.now;
            let ct = &mut self.nodes[node].ct;
            if let Some((orig, _)) = ct.lookup(now, &t) {
                ct.tcp_event(now, orig, TcpFlag::Fin, false);
                ct.tcp_event(now, orig, TcpFlag::Fin, true);
            }
        }
    }

    fn latency(&self, a: NodeId, b: NodeId) -> Duration {
        let lat = self.spec.latency;
        if a == b {
            lat.same_node
        } else if self.nodes[a].az == self.nodes[b].az {
            lat.same_az
        } else {
            lat.cross_az
        }
    }

    /// Whether a packet between two nodes is lost to AZ packet loss (incidents.md S12).
    fn lost(&mut self, a: NodeId, b: NodeId) -> bool {
        if a == b {
            // Same node: never on the wire.
            return false;
        }
        let (za, zb) = (self.nodes[a].az, self.nodes[b].az);
        if self.in_burst(za) || (za != zb && self.in_burst(zb)) {
            return true;
        }
        let link = self.link_loss.get(&(a.min(b), a.max(b))).copied().unwrap_or(0.0);
        let keep = (1.0 - self.az_loss[za]) * if za == zb { 1.0 } else { 1.0 - self.az_loss[zb] } * (1.0 - link);
        keep < 1.0 && self.rng.f64() >= keep
    }

    /// Whether an AZ with bursty loss is in a burst now: a two-state (Gilbert) channel in time,
    /// bursts of exponential length with the given mean, spaced so that the share of time in a burst
    /// is the loss share; every packet in a burst is lost.
    fn in_burst(&mut self, az: usize) -> bool {
        let now = self.now;
        let Some(Some((loss, mean, mut bad, mut until))) = self.az_burst.get(az).copied() else { return false };
        while until <= now {
            bad = !bad;
            let m = if bad { mean.as_secs_f64() } else { mean.as_secs_f64() * (1.0 - loss) / loss };
            let u = self.rng.f64().max(1e-12);
            until += Duration::from_secs_f64(-u.ln() * m).max(Duration::from_micros(1));
        }
        self.az_burst[az] = Some((loss, mean, bad, until));
        bad
    }

    /// An application request over an established TCP connection to a pod on a random node: the
    /// request and the response segment, each retransmitted after Linux's RTO (200 ms minimum,
    /// doubling) when lost, given up after 15 retransmissions (tcp_retries2).
    fn app_request(&mut self, pod: PodId) {
        let from = self.pods[pod].node;
        let to = self.rng.usize(..self.nodes.len());
        let one_way = self.latency(from, to);
        let mut total = Duration::ZERO;
        let mut ok = true;
        for _ in 0..2 {
            let mut rto = Duration::from_millis(200);
            let mut tries = 0;
            while self.lost(from, to) {
                tries += 1;
                if tries > 15 {
                    ok = false;
                    break;
                }
                total += rto;
                rto = (rto * 2).min(Duration::from_secs(120));
            }
            total += one_way;
        }
        self.report.app.push((self.now, total, ok));
    }

    fn owner_node(&self, o: Owner) -> NodeId {
        match o {
            Owner::Pod(p) => self.pods[p].node,
            Owner::Inst(i) => self.insts[i].node,
        }
    }

    /// Charges `n` packets to a node's ENI budget; false if the budget refused them.
    fn eni(&mut self, node: NodeId, n: u32) -> bool {
        let now = self.now;
        let mut ok = true;
        for _ in 0..n {
            self.net.upstream_packets += 1;
            if let Some(c) = self.wire.eni.get_mut(node) {
                *c += 1;
            }
            if let Some(b) = &mut self.nodes[node].eni
                && !b.allow(now)
            {
                self.net.dropped_eni += 1;
                ok = false;
            }
        }
        ok
    }

    /// A packet leaves its owner: NOTRACK to node-local-dns, or conntrack and DNAT/IPVS, then routing.
    fn send(&mut self, from: Owner, pkt: Packet) {
        self.net.packets += 1;
        let node = self.owner_node(from);
        let now = self.now;
        // node-local-dns: pod traffic to its listen addresses skips conntrack (NOTRACK, incidents.md §6.4).
        if let (Owner::Pod(_), Some(nl)) = (from, self.nodes[node].node_local) {
            let binds_vip = self.spec.node_local.as_ref().is_some_and(|n| n.bind_kube_dns) && self.nodes[node].ipvs.is_none();
            if pkt.dst.ip() == NODE_LOCAL_IP || (binds_vip && pkt.dst == KUBE_DNS) {
                let at = now + self.spec.latency.same_node + self.tcp_delay(&pkt, now);
                self.push(at, Ev::Query { inst: nl, pkt, client_node: None });
                return;
            }
        }
        if pkt.dst.ip() == NODE_LOCAL_IP {
            // The link-local address with no cache behind it (torn down): nothing answers.
            self.net.dropped_dead += 1;
            return;
        }
        // Loopback: the loop plugin's nightmare (a resolver forwarding to 127.0.0.53 inside its pod).
        if pkt.dst.ip().is_loopback() {
            if let Owner::Inst(i) = from {
                self.push(now, Ev::Query { inst: i, pkt, client_node: None });
            }
            return;
        }
        let tuple = Tuple { proto: proto(pkt.transport), src: pkt.src, dst: pkt.dst };
        let race = self.spec.race;
        let kernel = self.spec.kernel;
        let new_tcp = pkt.transport == Transport::Tcp && !self.tcp.contains_key(&(pkt.src, pkt.dst));
        let n = &mut self.nodes[node];
        let target = if let Some((orig, is_reply)) = n.ct.lookup(now, &tuple) {
            let e = n.ct.get(&orig).cloned().expect("lookup found it");
            let mut to = e.nat_target();
            // The second packet of a new UDP flow within the race window, on another CPU: the
            // insertion race (incidents.md §2.2).
            if !is_reply
                && pkt.transport == Transport::Udp
                && now.saturating_sub(e.created) < race.window
                && self.rng.f64() < race.p_cpu_split
            {
                let mine = match (&mut n.ipvs, n.rules.choose(proto(pkt.transport), pkt.dst, &mut self.rng)) {
                    (None, Some(Choice::Dnat(ep))) => ep,
                    _ => to,
                };
                let kind = if mine != to {
                    Race::DifferentTargets
                } else if self.rng.f64() < race.p_reply_tuple_taken {
                    Race::ReplyTupleTaken
                } else {
                    Race::SameTarget
                };
                let pending = n.ct.begin(tuple, mine);
                match n.ct.confirm(now, pending, Some(kind), &mut self.rng) {
                    Verdict::Accept { to: t } => to = t,
                    _ => {
                        self.net.dropped_race += 1;
                        self.report.events_race(now, kernel, kind);
                        return;
                    }
                }
            } else {
                n.ct.touch(now, orig, is_reply);
            }
            to
        } else {
            // A new flow: DNAT decision, then insertion.
            let chosen = if let Some(ipvs) = &mut n.ipvs {
                // A new conntrack flow is a new socket: if IPVS still has an entry for its address, the port was reused.
                match ipvs.forward(now, proto(pkt.transport), pkt.src, pkt.dst, true, &mut self.rng) {
                    ipvs::Verdict::To(d) => Some(d),
                    ipvs::Verdict::NotService => None,
                    ipvs::Verdict::NoDest | ipvs::Verdict::NoBackend => {
                        self.net.dropped_ipvs += 1;
                        return;
                    }
                }
            } else {
                match n.rules.choose(proto(pkt.transport), pkt.dst, &mut self.rng) {
                    Some(Choice::Dnat(ep)) => Some(ep),
                    Some(Choice::Reject) => {
                        self.net.rejected += 1;
                        if let Owner::Pod(p) = from {
                            self.refused(p, pkt.src.port());
                        }
                        return;
                    }
                    None => None,
                }
            };
            let target = chosen.unwrap_or(pkt.dst);
            let pending = n.ct.begin(tuple, target);
            match n.ct.confirm(now, pending, None, &mut self.rng) {
                Verdict::Accept { to } => to,
                Verdict::TableFull | Verdict::InsertFailed => {
                    self.net.dropped_table_full += 1;
                    return;
                }
            }
        };
        if new_tcp {
            // SYN went through above; SYN-ACK and ACK complete the handshake.
            let t = Tuple { proto: Proto::Tcp, src: pkt.src, dst: pkt.dst };
            let n = &mut self.nodes[node];
            n.ct.tcp_event(now, t, TcpFlag::SynAck, true);
            n.ct.tcp_event(now, t, TcpFlag::Ack, false);
        }
        if let Some(az) = (0..self.spec.azs).find(|az| upstream_ip(*az) == target.ip()) {
            return self.send_cloud(from, az, pkt);
        }
        let Some(&inst) = self.replica_by_ip.get(&target.ip()) else {
            self.net.dropped_dead += 1;
            return;
        };
        if pkt.transport == Transport::Udp && self.lost(node, self.insts[inst].node) {
            self.net.dropped_loss += 1;
            return;
        }
        let at = now + self.latency(node, self.insts[inst].node) + self.tcp_delay(&pkt, now);
        let pkt = Packet { dst: target, ..pkt };
        self.push(at, Ev::Query { inst, pkt, client_node: Some(node) });
    }

    /// Extra delay before a TCP message: the handshake of a new (or expired) connection.
    fn tcp_delay(&mut self, pkt: &Packet, now: Duration) -> Duration {
        if pkt.transport != Transport::Tcp {
            return Duration::ZERO;
        }
        let key = (pkt.src, pkt.dst);
        let rtt = 2 * self.spec.latency.same_az;
        match self.tcp.get_mut(&key) {
            Some(c) if now <= c.last + TCP_EXPIRE => {
                c.last = now;
                c.ready.saturating_sub(now)
            }
            _ => {
                self.net.tcp_connections += 1;
                self.net.packets += 2;
                self.tcp.insert(key, Conn { ready: now + rtt, last: now });
                rtt
            }
        }
    }

    /// A query for a cloud resolver from an instance: SNAT to the node, the ENI budget (every packet
    /// of a TCP exchange included), then the frame.
    fn send_cloud(&mut self, from: Owner, az: usize, pkt: Packet) {
        let Owner::Inst(inst) = from else {
            self.net.dropped_dead += 1;
            return;
        };
        let node = self.insts[inst].node;
        let dialed = pkt.dst;
        // `drain_inst` bound this socket's port on the node and registered its SNAT mapping.
        let node_addr = SocketAddr::new(self.nodes[node].ip, pkt.src.port());
        self.net.upstream_queries += 1;
        let now = self.now;
        let mut at = now;
        if pkt.transport == Transport::Tcp {
            let key = (node_addr, dialed);
            let reuse = self.tcp.get(&key).is_some_and(|c| now <= c.last + TCP_EXPIRE);
            if reuse {
                if let Some(c) = self.tcp.get_mut(&key) {
                    c.last = now;
                    at = c.ready.max(now);
                }
            } else {
                if self.tcp.remove(&key).is_some() {
                    // The expired connection's FIN and ACK.
                    self.eni(node, 2);
                }
                self.net.tcp_connections += 1;
                // SYN (retransmitted after 1 s while the budget refuses it), then ACK.
                let mut ready = now + 2 * self.spec.latency.upstream;
                if !self.eni(node, 1) {
                    ready += TCP_SYN_RTO;
                }
                self.eni(node, 1);
                self.tcp.insert(key, Conn { ready, last: now });
                at = ready;
            }
        }
        if !self.eni(node, 1) {
            // linklocal_allowance_exceeded: dropped silently (incidents.md §5).
            return;
        }
        if pkt.transport == Transport::Udp && self.upstream_lost(az) {
            self.net.dropped_loss += 1;
            return;
        }
        self.push(at, Ev::ToUpstream { frame: Frame { node_addr, az, transport: pkt.transport, payload: pkt.payload } });
    }

    /// The destination REJECTed (a Service without endpoints): ICMP port unreachable to the socket.
    fn refused(&mut self, pod: PodId, port: u16) {
        for (id, socket) in self.port_lookups(pod, port) {
            if let Some(l) = self.pods[pod].lookups.get_mut(&id) {
                l.model.handle_refused(self.now, socket);
                self.drive_lookup(pod, id);
            }
        }
    }

    fn at_inst(&mut self, inst: InstId, pkt: Packet, client_node: Option<NodeId>) {
        if !self.insts[inst].alive {
            self.net.dropped_dead += 1;
            return;
        }
        let conn = match pkt.transport {
            Transport::Udp => 0,
            Transport::Tcp => {
                (u64::from(u32::from_be_bytes(match pkt.src.ip() {
                    IpAddr::V4(v4) => v4.octets(),
                    IpAddr::V6(_) => [0; 4],
                })) << 16)
                    | u64::from(pkt.src.port())
            }
        };
        let client = resolver::Client { src: pkt.src, local: pkt.dst, transport: to_res(pkt.transport), conn };
        let mut out = Vec::new();
        let h = self.insts[inst].server.handle_query(self.now, client, &pkt.payload, &mut out);
        if h == Handled::Answered {
            self.answer(inst, client_node, Packet { src: pkt.dst, dst: pkt.src, transport: pkt.transport, payload: out });
        }
        self.drain_inst(inst);
    }

    /// An instance's answer goes back to whoever asked, through the asker's conntrack (un-NAT).
    fn answer(&mut self, inst: InstId, client_node: Option<NodeId>, pkt: Packet) {
        let owner = if let Some(&p) = self.pod_by_ip.get(&pkt.dst.ip()) {
            Owner::Pod(p)
        } else if let Some(&n) = self.node_by_ip.get(&pkt.dst.ip()) {
            match self.nodes[n].node_local.or_else(|| self.insts.iter().position(|i| i.kind == InstKind::NodeLocal && i.node == n)) {
                Some(i) => Owner::Inst(i),
                None => return,
            }
        } else if pkt.dst.ip() == self.insts[inst].ip || pkt.dst.ip().is_loopback() {
            // The instance asked itself (a forwarding loop): its answer comes back to it.
            Owner::Inst(inst)
        } else {
            return;
        };
        let dest_node = self.owner_node(owner);
        let now = self.now;
        let src = match client_node {
            Some(cn) => {
                let ct = &mut self.nodes[cn].ct;
                let reply = Tuple { proto: proto(pkt.transport), src: pkt.src, dst: pkt.dst };
                match ct.lookup(now, &reply) {
                    Some((orig, true)) => {
                        ct.touch(now, orig, true);
                        orig.dst
                    }
                    // No entry (expired, deleted): not un-NATed; the socket ignores it.
                    _ => pkt.src,
                }
            }
            None => pkt.src,
        };
        if pkt.transport == Transport::Udp && self.lost(self.insts[inst].node, dest_node) {
            self.net.dropped_loss += 1;
            return;
        }
        let at = now + self.latency(self.insts[inst].node, dest_node);
        self.push(at, Ev::Answer { owner, pkt: Packet { src, ..pkt } });
    }

    /// The lookups a datagram on `port` is for, and their socket id.
    fn port_lookups(&self, pod: PodId, port: u16) -> Vec<(u64, u32)> {
        let p = &self.pods[pod];
        match p.port_owner.get(&port) {
            Some(&PROCESS_OWNER) => match p.proc_sockets.iter().find(|(_, q)| **q == port) {
                Some((&socket, _)) => p.lookups.keys().map(|&id| (id, socket)).collect(),
                None => Vec::new(),
            },
            Some(&id) => p
                .lookups
                .get(&id)
                .and_then(|l| l.sockets.iter().find(|(_, q)| **q == port))
                .map(|(&s, _)| vec![(id, s)])
                .unwrap_or_default(),
            None => Vec::new(),
        }
    }

    fn at_pod(&mut self, pod: PodId, pkt: Packet) {
        if self.nodes[self.pods[pod].node].down {
            return;
        }
        for (id, socket) in self.port_lookups(pod, pkt.dst.port()) {
            if let Some(l) = self.pods[pod].lookups.get_mut(&id) {
                l.model.handle_answer(self.now, socket, pkt.transport, &pkt.payload);
                if let Some(b) = Wire::rcode(&pkt.payload) {
                    self.wire.rcodes[b] += 1;
                }
                self.drive_lookup(pod, id);
            }
        }
    }

    /// An answer from the cloud resolver reaches the node that asked.
    /// Whether a UDP packet to or from an AZ's cloud resolver is lost.
    fn upstream_lost(&mut self, az: usize) -> bool {
        let loss = self.upstream_loss.get(az).copied().unwrap_or(0.0);
        loss > 0.0 && self.rng.f64() < loss
    }

    fn upstream_answer(&mut self, frame: Frame) {
        let Some(&(inst, up, transport)) = self.snat.get(&frame.node_addr) else { return };
        if transport == Transport::Udp && self.upstream_lost(frame.az) {
            self.net.dropped_loss += 1;
            return;
        }
        // 1500-byte MTU: 20 bytes of IP and 8 of UDP leave 1472 for DNS; more is fragmented.
        if transport == Transport::Udp && self.spec.drop_fragments && frame.payload.len() > 1472 {
            self.net.dropped_fragments += 1;
            return;
        }
        if !self.insts[inst].alive {
            return;
        }
        if transport == Transport::Tcp {
            // The ACK of the response is a packet the ENI sends too.
            self.eni(self.insts[inst].node, 1);
        }
        self.insts[inst].server.handle_upstream(self.now, up, to_res(transport), &frame.payload);
        self.drain_inst(inst);
    }

    /// Adds the resolvers' cache hits and misses since the last sample to this second's counters.
    fn count_cache(&mut self) {
        self.cache_seen.resize(self.insts.len(), (0, 0));
        for (i, inst) in self.insts.iter().enumerate() {
            let (hits, misses) = inst
                .server
                .metrics
                .blocks
                .iter()
                .fold((0, 0), |(h, m), b| (h + b.cache_hits_success + b.cache_hits_denial, m + b.cache_misses));
            let (h0, m0) = self.cache_seen[i];
            // A restarted instance starts its counters again from zero.
            self.wire.cache_hits += if hits >= h0 { hits - h0 } else { hits };
            self.wire.cache_misses += if misses >= m0 { misses - m0 } else { misses };
            self.cache_seen[i] = (hits, misses);
        }
    }

    /// Sends an instance's transmits and re-arms its timer.
    fn drain_inst(&mut self, inst: InstId) {
        // A timed-out TCP connection is abandoned: the next query to that upstream opens a new one
        // from a new port (through DNAT again, so to a live endpoint).
        while let Some(addr) = self.insts[inst].server.poll_close_tcp() {
            self.insts[inst].up_ports.remove(&(addr, Transport::Tcp));
        }
        while let Some(t) = self.insts[inst].server.poll_transmit() {
            match t.dest {
                Dest::Client(c) => {
                    let client_node = if self.insts[inst].kind == InstKind::ClusterDns && c.local.ip() == self.insts[inst].ip {
                        // Came through DNAT (or straight to the pod IP): find the asker's node.
                        self.pod_by_ip.get(&c.src.ip()).map(|&p| self.pods[p].node).or_else(|| self.node_by_ip.get(&c.src.ip()).copied())
                    } else {
                        None
                    };
                    self.answer(
                        inst,
                        client_node,
                        Packet { src: c.local, dst: c.src, transport: from_res(c.transport), payload: t.payload },
                    );
                }
                Dest::Upstream { addr, transport } => {
                    let node = self.insts[inst].node;
                    // hostNetwork node-local sockets live on the node IP; replica sockets on the pod IP.
                    let local_ip = match self.insts[inst].kind {
                        InstKind::NodeLocal => self.nodes[node].ip,
                        InstKind::ClusterDns => self.insts[inst].ip,
                    };
                    let transport = from_res(transport);
                    let port = match self.insts[inst].up_ports.get(&(addr, transport)) {
                        Some(p) => *p,
                        None => {
                            let Some(p) = self.nodes[node].ports.bind(&mut self.rng) else { continue };
                            self.insts[inst].up_ports.insert((addr, transport), p);
                            if (0..self.spec.azs).any(|az| upstream_ip(az) == addr.ip()) {
                                self.snat.insert(SocketAddr::new(self.nodes[node].ip, p), (inst, addr, transport));
                            }
                            p
                        }
                    };
                    self.send(Owner::Inst(inst), Packet { src: SocketAddr::new(local_ip, port), dst: addr, transport, payload: t.payload });
                }
                // The loop plugin's probe to itself.
                Dest::Local { port, .. } => {
                    let ip = self.insts[inst].ip;
                    let pkt = Packet {
                        src: SocketAddr::new(ip, 33_000),
                        dst: SocketAddr::new(ip, port),
                        transport: Transport::Udp,
                        payload: t.payload,
                    };
                    self.push(self.now, Ev::Query { inst, pkt, client_node: None });
                }
            }
        }
        if let Some(why) = self.insts[inst].server.halted() {
            let why = why.to_string();
            return self.crash(inst, why);
        }
        let r = &mut self.insts[inst];
        let next = r.server.poll_timeout();
        if let Some(at) = next
            && next != r.timer
        {
            r.timer = next;
            self.push(at, Ev::InstTimer { inst, at });
        }
    }

    /// Ends the run: the report with its trace hash and counters.
    pub fn into_report(mut self) -> Report {
        self.report.net = self.net.clone();
        self.report.trace_hash = self.trace;
        self.report.conntrack_max = self.nodes.iter().map(|n| n.ct.cfg.max).collect();
        // Lookups the run ended on: a stuck one is as real as a slow one.
        let now = self.now;
        self.report.unfinished = self.pods.iter().flat_map(|p| p.lookups.values().map(move |l| now.saturating_sub(l.started))).collect();
        self.report.unfinished.sort();
        self.report
    }
}

fn outcome_label(o: &Outcome) -> &'static str {
    match o {
        Outcome::Addrs(_) => "ok",
        Outcome::NoName => "nxdomain",
        Outcome::NoData => "nodata",
        Outcome::Again => "again",
        Outcome::Fail(_) => "fail",
    }
}

/// Whether a dotted name (trailing dot or not, any case) is the cluster domain or under it.
fn in_zone(name: &str, domain: &str) -> bool {
    let name = name.trim_end_matches('.').as_bytes();
    let domain = domain.trim_end_matches('.').as_bytes();
    name.len() >= domain.len()
        && name[name.len() - domain.len()..].eq_ignore_ascii_case(domain)
        && (name.len() == domain.len() || name[name.len() - domain.len() - 1] == b'.')
}

/// The cluster as `kubectl get namespaces,services,endpointslices,pods -A -o json` would print it.
fn cluster_list(
    replicas: &[(usize, IpAddr)],
    pods: &[Pod],
    extra_pods: usize,
    service_ips: &BTreeMap<(String, String), IpAddr>,
    dump: &[serde_json::Value],
) -> String {
    use serde_json::json;
    let mut items = Vec::new();
    let mut namespaces: Vec<&str> = vec!["default", "kube-system", "shop", "bulk"];
    for p in pods {
        if !namespaces.contains(&p.namespace.as_str()) {
            namespaces.push(&p.namespace);
        }
    }
    for ns in &namespaces {
        items.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
    }
    let endpoints: Vec<_> = replicas
        .iter()
        .enumerate()
        .map(|(i, (_, ip))| json!({"addresses": [ip.to_string()], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "name": format!("coredns-{i}")}}))
        .collect();
    for (name, vip) in [("kube-dns", KUBE_DNS), ("kube-dns-upstream", KUBE_DNS_UPSTREAM)] {
        items.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "kube-system"},
            "spec": {"clusterIP": vip.ip().to_string(), "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}}));
        items.push(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{name}-sim"), "namespace": "kube-system", "labels": {"kubernetes.io/service-name": name}},
            "endpoints": endpoints, "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}));
    }
    // Application services the workloads look up: `web` and `api` in every namespace.
    for (i, ns) in namespaces.iter().enumerate() {
        for (j, svc) in ["web", "api"].iter().enumerate() {
            let ip = service_ips
                .get(&(ns.to_string(), svc.to_string()))
                .map_or_else(|| format!("10.96.{}.{}", 10 + i, 10 + j), ToString::to_string);
            items.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": svc, "namespace": ns},
                "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}));
        }
    }
    for (i, (_, ip)) in replicas.iter().enumerate() {
        items.push(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("coredns-{i}"), "namespace": "kube-system"}, "status": {"podIP": ip.to_string()}}));
    }
    for (i, p) in pods.iter().enumerate() {
        items.push(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("app-{i}"), "namespace": p.namespace}, "status": {"podIP": p.ip.to_string()}}));
    }
    // The rest of a large cluster: pods that only exist in the state.
    for i in 0..extra_pods {
        items.push(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("bulk-{i}"), "namespace": "bulk"},
            "status": {"podIP": format!("10.{}.{}.{}", 200 + (i >> 16), (i >> 8) & 255, i & 255)}}));
    }
    items.extend(dump.iter().cloned());
    json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

/// The objects of a `kubectl get ... -o yaml|json` dump that join the simulated state: everything
/// but kube-dns's own Services and EndpointSlices, which the simulator owns.
fn dump_items(text: &str) -> Result<Vec<serde_json::Value>, SimError> {
    let doc: serde_json::Value = serde_yaml_ng::from_str(text).map_err(|e| SimError::Spec(format!("cluster state dump: {e}")))?;
    let items = match doc.get("items").and_then(|i| i.as_array()) {
        Some(items) => items.clone(),
        None => vec![doc],
    };
    let owned = |o: &serde_json::Value| {
        let kind = o["kind"].as_str().unwrap_or_default();
        let ns = o["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = o["metadata"]["name"].as_str().unwrap_or_default();
        let svc = o["metadata"]["labels"]["kubernetes.io/service-name"].as_str().unwrap_or_default();
        ns == "kube-system"
            && ((kind == "Service" && name.starts_with("kube-dns"))
                || (kind == "EndpointSlice" && svc.starts_with("kube-dns"))
                || (kind == "Endpoints" && name.starts_with("kube-dns")))
    };
    Ok(items.into_iter().filter(|o| !owned(o)).collect())
}
