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
//! is charged to its ENI budget (sources.md#cloud-resolver-limits).
//!
//! Pods are never turmoil hosts, and nothing here grows the number of turmoil hosts.

mod blame;
mod build;
mod coredns;
mod events;
mod faults;
mod findings;
mod frame;
mod instances;
mod kube_dns;
mod network;
mod node_detect;
mod pods;
mod queue;
mod state;

use std::collections::{BTreeMap, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use netmodel::Proto;
use netmodel::conntrack::Conntrack;
use netmodel::dnat::{KubeProxy, Rules};
use netmodel::ipvs::Ipvs;
use netmodel::ports::Ports;
use netmodel::ratelimit::TokenBucket;
use resolver::Server;

use crate::client::{Call, Lookup, Process, ResolvConf, Transport};
use crate::report::{NetCounters, Report, Wire};
use crate::spec::{ClusterSpec, Library};

use events::Ev;
use queue::Scheduled;

pub(crate) use build::{configure, default_corefile, node_resolv_conf};
pub use frame::{Frame, upstream_ip};

/// The kube-dns ClusterIP.
/// How long pods stay bound to a NotReady or unreachable node before eviction: the
/// `tolerationSeconds` the DefaultTolerationSeconds admission plugin adds (sources.md#pod-eviction).
pub const EVICTION_TOLERATION: Duration = Duration::from_secs(300);

pub const KUBE_DNS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10)), 53);
/// node-local-dns's `kube-dns-upstream` Service: the same endpoints, another ClusterIP.
pub const KUBE_DNS_UPSTREAM: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 11)), 53);
/// node-local-dns's link-local listen address (sources.md#node-local-dns).
pub const NODE_LOCAL_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(169, 254, 20, 10));

type NodeId = usize;
type PodId = usize;
type InstId = usize;

struct Node {
    az: usize,
    ip: IpAddr,
    kernel: netmodel::Kernel,
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
    /// What went wrong so far (`explain`).
    causes: Vec<(Duration, crate::cause::Cause)>,
    /// The resolvers its queries reached.
    insts: Vec<InstId>,
}

struct Pod {
    node: NodeId,
    /// Its group in the scenario.
    group: usize,
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
    /// A cluster DNS replica that died with its node: evicted and replaced after the tolerations.
    awaiting_eviction: bool,
    /// Deleted and out of the endpoints, still answering until its lameduck ends.
    terminating: bool,
    /// The sidecar's probe and the kubelet's liveness count (kube-dns).
    probe: kube_dns::Probe,
}

impl Inst {
    /// A fresh instance: no timer, no upstream sockets, no restarts or probe failures yet.
    fn new(kind: InstKind, node: NodeId, ip: IpAddr, server: Server, corefile: String, seed: u64) -> Inst {
        Inst {
            kind,
            node,
            ip,
            server,
            alive: true,
            timer: None,
            up_ports: BTreeMap::new(),
            corefile,
            seed,
            restarts: 0,
            relist_until: None,
            unnoticed: false,
            awaiting_eviction: false,
            terminating: false,
            probe: kube_dns::Probe::default(),
        }
    }
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
    states: state::States,
    /// The cluster's objects as the replicas' API watches hold them; `states` is built from it.
    watched: resolver::cluster::Watched,
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
    /// ndots' node-side detector, on the nodes whose table ever held a suspect flow.
    node_detect: BTreeMap<NodeId, node_detect::NodeDetect>,
    /// Objects from the scenario's cluster-state dump.
    dump: Vec<serde_json::Value>,
    /// What pods put on the wire and got back since the last sample.
    wire: Wire,
    /// Cache hits and misses summed over the resolvers at the last sample, per instance.
    cache_seen: Vec<(u64, u64)>,
    /// Per instance, its recent packet losses and crashes (`explain`): the newest `BLAME_KEEP`.
    inst_trouble: BTreeMap<InstId, std::collections::VecDeque<(Duration, crate::cause::Cause)>>,
}

fn us(d: Duration) -> u64 {
    d.as_micros() as u64
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

impl Engine {
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

    /// Ends the run: the report with its trace hash and counters.
    pub fn into_report(mut self) -> Report {
        self.report.net = self.net.clone();
        self.report.trace_hash = self.trace;
        self.report.conntrack_max = self.nodes.iter().map(|n| n.ct.cfg.max).collect();
        // Lookups the run ended on: a stuck one is as real as a slow one.
        let now = self.now;
        // In flight, or waiting for a thread.
        self.report.unfinished = self
            .pods
            .iter()
            .flat_map(|p| p.lookups.values().map(|l| l.started).chain(p.waiting.iter().map(|w| w.0)))
            .map(|s| now.saturating_sub(s))
            .collect();
        self.report.unfinished.sort();
        let mut stuck = Vec::new();
        for (pod, p) in self.pods.iter().enumerate() {
            let waiting = p.waiting.iter().map(|(t, n)| (*t, n.clone(), vec![(*t, crate::cause::Cause::Queued)], Vec::new(), 0));
            let active = p.lookups.values().map(|l| (l.started, l.name.clone(), l.causes.clone(), l.insts.clone(), l.queries));
            for (start, name, causes, insts, queries) in active.chain(waiting) {
                if now.saturating_sub(start) < Report::STUCK {
                    continue;
                }
                let mut causes = self.finish_causes(start, false, causes, &insts);
                causes.push((now, crate::cause::Cause::Stuck));
                stuck.push(crate::report::LookupRecord {
                    pod,
                    group: p.group,
                    start,
                    end: now,
                    name,
                    queries,
                    ok: false,
                    outcome: crate::report::LookupOutcome::Again,
                    addr: None,
                    cached: false,
                    library: p.library,
                    wire: Vec::new(),
                    causes,
                });
            }
        }
        stuck.sort_by_key(|l| (l.start, l.pod));
        self.report.stuck = stuck;
        // The detectors' view at the end, beside what the 10 s checks raised.
        self.raise_findings();
        self.report
    }
}
