//! The cluster as a discrete-event simulation at microsecond resolution.
//!
//! One `Engine` holds every node of the cluster: its kernel tables (netmodel conntrack, kube-proxy's
//! rules, IPVS, the ENI budget), its pods (client-library models from `client`) and the CoreDNS
//! replicas running on it (`resolver::Server`, the same code as the `ndots` binary, driven here
//! directly: this is the resolver's simulator driver). Events are processed in (time, sequence)
//! order; every random choice comes from RNGs seeded from the scenario seed. Traffic to the cloud
//! resolvers leaves as `Frame`s, which the turmoil host carries to the resolver hosts.
//!
//! Pods are never turmoil hosts, and nothing here grows the number of turmoil hosts.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use netmodel::conntrack::{self, Conntrack, Race, Tuple, Verdict};
use netmodel::dnat::{Choice, KubeProxy, Rules};
use netmodel::ipvs::{self, Ipvs};
use netmodel::ports::Ports;
use netmodel::ratelimit::TokenBucket;
use netmodel::{Kernel, Proto};
use resolver::{ClusterState, Config, Dest, Handled, Server};

use crate::client::glibc::Glibc;
use crate::client::go::Go;
use crate::client::musl::Musl;
use crate::client::{Call, Lookup, Outcome, PodAddrs, Process, ResolvConf, Transport};
use crate::report::{LookupRecord, Report};
use crate::spec::{ClusterSpec, Fault, Library, ProxyMode};

/// The kube-dns ClusterIP.
pub const KUBE_DNS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10)), 53);

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
type ResId = usize;

struct Node {
    az: usize,
    ip: IpAddr,
    ct: Conntrack,
    rules: Rules,
    ipvs: Option<Ipvs>,
    kube_proxy: KubeProxy,
    eni: Option<TokenBucket>,
    /// Ports the node uses for SNATed upstream sockets.
    snat_ports: Ports,
}

struct ActiveLookup {
    model: Box<dyn Lookup>,
    started: Duration,
    name: String,
    queries: u32,
    /// socket id → local port
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
    /// local port → lookup id
    port_owner: BTreeMap<u16, u64>,
    lookups: BTreeMap<u64, ActiveLookup>,
}

struct Replica {
    node: NodeId,
    ip: IpAddr,
    server: Server,
    alive: bool,
    timer: Option<Duration>,
    /// (upstream, transport) → the node-side SNAT port of this replica's socket to it.
    upstream_ports: BTreeMap<(SocketAddr, Transport), u16>,
}

#[derive(Debug, Clone)]
struct Packet {
    src: SocketAddr,
    dst: SocketAddr,
    transport: Transport,
    payload: Vec<u8>,
}

#[derive(Debug)]
enum Ev {
    LookupStart {
        pod: PodId,
    },
    ClientTimer {
        pod: PodId,
        lookup: u64,
        at: Duration,
    },
    /// A packet from a pod reaches a replica (after DNAT), `vip` remembering the original destination.
    ToReplica {
        res: ResId,
        pkt: Packet,
        client_node: NodeId,
        vip: Option<SocketAddr>,
    },
    /// A reply reaches the pod.
    ToPod {
        pod: PodId,
        pkt: Packet,
    },
    ResolverTimer {
        res: ResId,
        at: Duration,
    },
    /// An answer from the cloud resolver reaches a replica's node.
    FromUpstream {
        frame: Frame,
    },
    Sample,
    Fault(Fault),
    KubeProxy {
        node: NodeId,
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
    pub rejected: u64,
}

pub struct Engine {
    spec: ClusterSpec,
    now: Duration,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: BTreeMap<u64, Ev>,
    seq: u64,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    replicas: Vec<Replica>,
    /// Pod IP → pod; replica IP → replica.
    pod_by_ip: BTreeMap<IpAddr, PodId>,
    replica_by_ip: BTreeMap<IpAddr, ResId>,
    /// node-side SNAT (node ip, port) → replica.
    snat: BTreeMap<SocketAddr, (ResId, SocketAddr, Transport)>,
    rng: fastrand::Rng,
    next_lookup: u64,
    pub report: Report,
    pub net: NetCounters,
    outbox: Vec<Frame>,
    trace: u64,
    last_sample_lookups: usize,
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
                ct: Conntrack::new(conntrack::Config::for_kernel(spec.kernel, ct_max)),
                rules: Rules::default(),
                ipvs: match spec.proxy {
                    ProxyMode::Ipvs(cfg) => Some(Ipvs::new(cfg)),
                    ProxyMode::Iptables => None,
                },
                kube_proxy: KubeProxy::new(spec.kube_proxy),
                eni: spec.eni_limit.map(TokenBucket::new),
                snat_ports: Ports::default(),
            })
            .collect();
        let mut per_node = vec![0usize; spec.nodes];
        let mut next_ip = |node: usize| {
            let ip = pod_ip(node, per_node[node]);
            per_node[node] += 1;
            ip
        };
        // CoreDNS replicas, spread over nodes.
        let replica_ips: Vec<(usize, IpAddr)> = (0..spec.coredns_replicas).map(|r| (r % spec.nodes, next_ip(r % spec.nodes))).collect();
        // Application pods, spread over nodes.
        let mut pods = Vec::new();
        let mut k = 0usize;
        for g in &spec.pods {
            for _ in 0..g.count {
                let node = k % spec.nodes;
                k += 1;
                let ip = next_ip(node);
                let text = g.resolv_conf.clone().unwrap_or_else(|| {
                    ResolvConf::kubelet_cluster_first(KUBE_DNS.ip(), &g.namespace, &spec.cluster_domain, &["ec2.internal"])
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
                });
            }
        }
        // The cluster state every replica reads, in Kubernetes' own List format.
        let state = Arc::new(ClusterState::parse(&cluster_list(&spec, &replica_ips, &pods), "simulated-cluster")?);
        let mut replicas = Vec::new();
        for (r, (node, ip)) in replica_ips.iter().enumerate() {
            let az = nodes[*node].az;
            let text = spec.corefile.replace("/etc/resolv.conf", &upstream_ip(az).to_string());
            let cf = resolver::corefile::parse_str(&text, "Corefile", None, &|_| None)?;
            let cfg = Config::from_corefile(&cf, std::path::Path::new("."))?;
            let seed = spec.seed ^ (0x5eed_0000 + r as u64);
            replicas.push(Replica {
                node: *node,
                ip: *ip,
                server: Server::new(Arc::new(cfg), state.clone(), seed),
                alive: true,
                timer: None,
                upstream_ports: BTreeMap::new(),
            });
        }
        let pod_by_ip = pods.iter().enumerate().map(|(i, p)| (p.ip, i)).collect();
        let replica_by_ip = replicas.iter().enumerate().map(|(i, r)| (r.ip, i)).collect();
        let mut e = Engine {
            now: Duration::ZERO,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            seq: 0,
            nodes,
            pods,
            replicas,
            pod_by_ip,
            replica_by_ip,
            snat: BTreeMap::new(),
            rng: fastrand::Rng::with_seed(rng.u64(..)),
            next_lookup: 1,
            report: Report::new(&spec),
            net: NetCounters::default(),
            outbox: Vec::new(),
            trace: 0xcbf2_9ce4_8422_2325,
            last_sample_lookups: 0,
            spec,
        };
        // kube-proxy on every node programs kube-dns with the replicas as endpoints.
        let eps: Vec<SocketAddr> = e.replicas.iter().map(|r| SocketAddr::new(r.ip, 53)).collect();
        for n in &mut e.nodes {
            n.rules.set(Proto::Udp, KUBE_DNS, eps.clone());
            n.rules.set(Proto::Tcp, KUBE_DNS, eps.clone());
            if let Some(ipvs) = &mut n.ipvs {
                ipvs.set_endpoints(Duration::ZERO, KUBE_DNS, &eps);
            }
        }
        for p in 0..e.pods.len() {
            let first = e.exp_gap(p);
            e.push(first, Ev::LookupStart { pod: p });
        }
        for (at, f) in e.spec.faults.clone() {
            e.push(at, Ev::Fault(f));
        }
        e.push(Duration::from_secs(1), Ev::Sample);
        // The loop plugin's startup probes etc.
        for r in 0..e.replicas.len() {
            e.drain_replica(r);
        }
        Ok(e)
    }

    fn push(&mut self, at: Duration, ev: Ev) {
        self.seq += 1;
        let t = us(at.max(self.now));
        self.queue.push(Reverse((t, self.seq)));
        self.events.insert(self.seq, ev);
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
        self.queue.peek().map(|Reverse((t, _))| Duration::from_micros(*t))
    }

    /// Processes every event due by `until`; returns frames for the cloud resolvers.
    pub fn run_until(&mut self, until: Duration) -> Vec<Frame> {
        while let Some(&Reverse((t, seq))) = self.queue.peek() {
            if Duration::from_micros(t) > until {
                break;
            }
            self.queue.pop();
            let Some(ev) = self.events.remove(&seq) else { continue };
            self.now = Duration::from_micros(t);
            self.mix(t, seq);
            self.handle(ev);
        }
        self.now = self.now.max(until);
        std::mem::take(&mut self.outbox)
    }

    /// A frame from a cloud resolver host arrived now (the upstream latency is added here).
    pub fn deliver_frame(&mut self, frame: Frame) {
        let at = self.now + self.spec.latency.upstream;
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
            Ev::ToReplica { res, pkt, client_node, vip } => self.at_replica(res, pkt, client_node, vip),
            Ev::ToPod { pod, pkt } => self.at_pod(pod, pkt),
            Ev::ResolverTimer { res, at } => {
                let r = &mut self.replicas[res];
                if r.timer != Some(at) || !r.alive {
                    return;
                }
                r.timer = None;
                r.server.handle_timeout(self.now);
                self.drain_replica(res);
            }
            Ev::FromUpstream { frame } => {
                let Some(&(res, up, transport)) = self.snat.get(&frame.node_addr) else { return };
                if !self.replicas[res].alive {
                    return;
                }
                let t = match transport {
                    Transport::Udp => resolver::Transport::Udp,
                    Transport::Tcp => resolver::Transport::Tcp,
                };
                self.replicas[res].server.handle_upstream(self.now, up, t, &frame.payload);
                self.drain_replica(res);
            }
            Ev::Sample => {
                for n in &mut self.nodes {
                    n.ct.expire(self.now);
                }
                let entries = self.conntrack_entries();
                let done = self.report.lookups.len();
                let window = self.report.lookups[self.last_sample_lookups..].to_vec();
                let insert_failed = self.insert_failed();
                self.report.sample(self.now, entries, &window, &self.net, insert_failed);
                self.last_sample_lookups = done;
                self.push(self.now + Duration::from_secs(1), Ev::Sample);
            }
            Ev::Fault(f) => self.fault(f),
            Ev::KubeProxy { node } => {
                let n = &mut self.nodes[node];
                n.kube_proxy.poll(self.now, &mut n.rules, &mut n.ct);
            }
        }
    }

    fn fault(&mut self, f: Fault) {
        self.report.events.push((self.now, format!("{f:?}")));
        match f {
            Fault::KillReplica(r) => {
                let Some(rep) = self.replicas.get_mut(r) else { return };
                rep.alive = false;
                let eps: Vec<SocketAddr> = self.replicas.iter().filter(|r| r.alive).map(|r| SocketAddr::new(r.ip, 53)).collect();
                for (i, n) in self.nodes.iter_mut().enumerate() {
                    n.kube_proxy.endpoints_changed(self.now, Proto::Udp, KUBE_DNS, eps.clone());
                    n.kube_proxy.endpoints_changed(self.now, Proto::Tcp, KUBE_DNS, eps.clone());
                    if let Some(ipvs) = &mut n.ipvs {
                        ipvs.set_endpoints(self.now, KUBE_DNS, &eps);
                    }
                    if let Some(at) = n.kube_proxy.next_due() {
                        self.seq += 1;
                        self.queue.push(Reverse((us(at), self.seq)));
                        self.events.insert(self.seq, Ev::KubeProxy { node: i });
                    }
                }
            }
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
        let id = self.next_lookup;
        self.next_lookup += 1;
        let mut call = p.call.clone();
        call.name = name.clone();
        let seed = self.rng.u64(..);
        let model: Box<dyn Lookup> = match p.library {
            Library::Glibc(v) => Box::new(Glibc::new(self.now, v, &p.rc, &call, p.process.clone(), seed)),
            Library::GoCgo(v) => {
                call.hints = crate::client::Hints::GO_CGO;
                Box::new(Glibc::new(self.now, v, &p.rc, &call, p.process.clone(), seed))
            }
            Library::Musl(v) => Box::new(Musl::new(self.now, v, &p.rc, &call, seed)),
            Library::Go => Box::new(Go::new(self.now, &p.rc, &call, p.process.clone(), seed)),
        };
        p.lookups.insert(id, ActiveLookup { model, started: self.now, name, queries: 0, sockets: BTreeMap::new(), timer: None });
        self.drive_lookup(pod, id);
    }

    /// Sends what the lookup wants to send, arms its timer, finishes it when it has a result.
    fn drive_lookup(&mut self, pod: PodId, id: u64) {
        loop {
            let Some(l) = self.pods[pod].lookups.get_mut(&id) else { return };
            let Some(send) = l.model.poll_send() else { break };
            l.queries += 1;
            let port = match l.sockets.get(&send.socket) {
                Some(p) => *p,
                None => {
                    let Some(port) = self.pods[pod].ports.bind(&mut self.rng) else { continue };
                    let l = self.pods[pod].lookups.get_mut(&id).expect("lookup present: checked above");
                    l.sockets.insert(send.socket, port);
                    self.pods[pod].port_owner.insert(port, id);
                    port
                }
            };
            let src = SocketAddr::new(self.pods[pod].ip, port);
            let pkt = Packet { src, dst: send.server, transport: send.transport, payload: send.payload };
            self.pod_egress(pod, pkt);
        }
        let p = &mut self.pods[pod];
        let Some(l) = p.lookups.get_mut(&id) else { return };
        while let Some(s) = l.model.poll_closed() {
            if let Some(port) = l.sockets.remove(&s) {
                p.ports.release(port);
                p.port_owner.remove(&port);
            }
        }
        let Some(l) = self.pods[pod].lookups.get_mut(&id) else { return };
        if let Some(outcome) = l.model.result().cloned() {
            let l = self.pods[pod].lookups.remove(&id).expect("lookup present: checked above");
            for (_, port) in l.sockets {
                self.pods[pod].ports.release(port);
                self.pods[pod].port_owner.remove(&port);
            }
            self.pods[pod].process = l.model.process();
            self.report.lookups.push(LookupRecord {
                pod,
                start: l.started,
                end: self.now,
                name: l.name,
                queries: l.queries,
                ok: outcome.is_ok(),
                outcome: outcome_label(&outcome),
            });
            return;
        }
        let next = l.model.poll_timeout();
        if next != l.timer {
            l.timer = next;
            if let Some(at) = next {
                self.push(at, Ev::ClientTimer { pod, lookup: id, at });
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

    /// A pod's packet leaves it: the node's conntrack, DNAT (iptables) or IPVS, then routing.
    fn pod_egress(&mut self, pod: PodId, pkt: Packet) {
        self.net.packets += 1;
        let node = self.pods[pod].node;
        let proto = match pkt.transport {
            Transport::Udp => Proto::Udp,
            Transport::Tcp => Proto::Tcp,
        };
        let tuple = Tuple { proto, src: pkt.src, dst: pkt.dst };
        let now = self.now;
        let race = self.spec.race;
        let kernel = self.spec.kernel;
        let n = &mut self.nodes[node];
        let target = if let Some((orig, is_reply)) = n.ct.lookup(now, &tuple) {
            let e = n.ct.get(&orig).cloned().expect("lookup found it");
            let mut to = e.nat_target();
            // The second packet of a new flow within the race window, on another CPU: the insertion
            // race (incidents.md §2.2).
            if !is_reply && now.saturating_sub(e.created) < race.window && self.rng.f64() < race.p_cpu_split {
                let mine = match (&mut n.ipvs, n.rules.choose(proto, pkt.dst, &mut self.rng)) {
                    (Some(_), _) => to,
                    (None, Some(Choice::Dnat(ep))) => ep,
                    (None, _) => to,
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
                match ipvs.forward(now, proto, pkt.src, pkt.dst, false, &mut self.rng) {
                    ipvs::Verdict::To(d) => Some(d),
                    ipvs::Verdict::NotService => None,
                    ipvs::Verdict::NoDest | ipvs::Verdict::NoBackend => {
                        self.net.dropped_ipvs += 1;
                        return;
                    }
                }
            } else {
                match n.rules.choose(proto, pkt.dst, &mut self.rng) {
                    Some(Choice::Dnat(ep)) => Some(ep),
                    Some(Choice::Reject) => {
                        self.net.rejected += 1;
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
        let vip = (target != pkt.dst).then_some(pkt.dst);
        let Some(&res) = self.replica_by_ip.get(&target.ip()) else {
            self.net.dropped_dead += 1;
            return;
        };
        let at = now + self.latency(node, self.replicas[res].node);
        let pkt = Packet { dst: target, ..pkt };
        self.push(at, Ev::ToReplica { res, pkt, client_node: node, vip });
    }

    fn at_replica(&mut self, res: ResId, pkt: Packet, client_node: NodeId, vip: Option<SocketAddr>) {
        if !self.replicas[res].alive {
            self.net.dropped_dead += 1;
            return;
        }
        let transport = match pkt.transport {
            Transport::Udp => resolver::Transport::Udp,
            Transport::Tcp => resolver::Transport::Tcp,
        };
        let client = resolver::Client { src: pkt.src, local: pkt.dst, transport, conn: 0 };
        let mut out = Vec::new();
        let h = self.replicas[res].server.handle_query(self.now, client, &pkt.payload, &mut out);
        if h == Handled::Answered {
            self.reply_to_pod(res, client_node, vip, Packet { src: pkt.dst, dst: pkt.src, transport: pkt.transport, payload: out });
        }
        self.drain_replica(res);
    }

    /// A replica's answer goes back to the client's node, where conntrack un-NATs it.
    fn reply_to_pod(&mut self, res: ResId, client_node: NodeId, vip: Option<SocketAddr>, pkt: Packet) {
        let Some(&pod) = self.pod_by_ip.get(&pkt.dst.ip()) else { return };
        let proto = match pkt.transport {
            Transport::Udp => Proto::Udp,
            Transport::Tcp => Proto::Tcp,
        };
        let now = self.now;
        let n = &mut self.nodes[client_node];
        let reply = Tuple { proto, src: pkt.src, dst: pkt.dst };
        let src = match n.ct.lookup(now, &reply) {
            Some((orig, true)) => {
                n.ct.touch(now, orig, true);
                orig.dst
            }
            // No entry (expired, deleted): the reply is not un-NATed and the socket ignores it.
            _ => pkt.src,
        };
        let _ = vip;
        let at = now + self.latency(self.replicas[res].node, client_node);
        self.push(at, Ev::ToPod { pod, pkt: Packet { src, ..pkt } });
    }

    fn at_pod(&mut self, pod: PodId, pkt: Packet) {
        let Some(&id) = self.pods[pod].port_owner.get(&pkt.dst.port()) else { return };
        let Some(l) = self.pods[pod].lookups.get_mut(&id) else { return };
        let Some((&socket, _)) = l.sockets.iter().find(|(_, p)| **p == pkt.dst.port()) else { return };
        l.model.handle_answer(self.now, socket, pkt.transport, &pkt.payload);
        self.drive_lookup(pod, id);
    }

    /// Sends a replica's transmits and re-arms its timer.
    fn drain_replica(&mut self, res: ResId) {
        while let Some(t) = self.replicas[res].server.poll_transmit() {
            match t.dest {
                Dest::Client(c) => {
                    let transport = match c.transport {
                        resolver::Transport::Udp => Transport::Udp,
                        resolver::Transport::Tcp => Transport::Tcp,
                    };
                    let Some(&pod) = self.pod_by_ip.get(&c.src.ip()) else { continue };
                    let client_node = self.pods[pod].node;
                    self.reply_to_pod(res, client_node, None, Packet { src: c.local, dst: c.src, transport, payload: t.payload });
                }
                Dest::Upstream { addr, transport } => self.send_upstream(res, addr, transport, t.payload),
                // The loop plugin's probe to itself: answered locally, nothing loops in this topology.
                Dest::Local { .. } => {}
            }
        }
        let r = &mut self.replicas[res];
        let next = r.server.poll_timeout();
        if let Some(at) = next
            && next != r.timer
        {
            r.timer = next;
            self.push(at, Ev::ResolverTimer { res, at });
        }
    }

    /// A replica's query to the cloud resolver: SNAT to the node, the ENI budget, then the frame.
    fn send_upstream(&mut self, res: ResId, addr: SocketAddr, transport: resolver::Transport, payload: Vec<u8>) {
        let transport = match transport {
            resolver::Transport::Udp => Transport::Udp,
            resolver::Transport::Tcp => Transport::Tcp,
        };
        let node = self.replicas[res].node;
        let Some(az) = (0..self.spec.azs).find(|az| upstream_ip(*az) == addr.ip()) else {
            self.net.dropped_dead += 1;
            return;
        };
        self.net.packets += 1;
        let port = match self.replicas[res].upstream_ports.get(&(addr, transport)) {
            Some(p) => *p,
            None => {
                let Some(p) = self.nodes[node].snat_ports.bind(&mut self.rng) else { return };
                self.replicas[res].upstream_ports.insert((addr, transport), p);
                let node_addr = SocketAddr::new(self.nodes[node].ip, p);
                self.snat.insert(node_addr, (res, addr, transport));
                p
            }
        };
        let now = self.now;
        if let Some(eni) = &mut self.nodes[node].eni
            && !eni.allow(now)
        {
            // linklocal_allowance_exceeded: dropped silently (incidents.md §5).
            self.net.dropped_eni += 1;
            return;
        }
        let node_addr = SocketAddr::new(self.nodes[node].ip, port);
        self.outbox.push(Frame { node_addr, az, transport, payload });
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

/// The cluster as `kubectl get namespaces,services,endpointslices,pods -A -o json` would print it.
fn cluster_list(spec: &ClusterSpec, replicas: &[(usize, IpAddr)], pods: &[Pod]) -> String {
    use serde_json::json;
    let mut items = Vec::new();
    let mut namespaces: Vec<&str> = vec!["default", "kube-system", "shop"];
    for p in pods {
        if !namespaces.contains(&p.namespace.as_str()) {
            namespaces.push(&p.namespace);
        }
    }
    for ns in &namespaces {
        items.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
    }
    items.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-dns", "namespace": "kube-system"},
        "spec": {"clusterIP": KUBE_DNS.ip().to_string(), "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}}));
    items.push(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kube-dns-sim", "namespace": "kube-system", "labels": {"kubernetes.io/service-name": "kube-dns"}},
        "endpoints": replicas.iter().enumerate().map(|(i, (_, ip))| json!({"addresses": [ip.to_string()], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "name": format!("coredns-{i}")}})).collect::<Vec<_>>(),
        "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}));
    // Application services the workloads look up: `web` and `api` in every namespace.
    for (i, ns) in namespaces.iter().enumerate() {
        for (j, svc) in ["web", "api"].iter().enumerate() {
            items.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": svc, "namespace": ns},
                "spec": {"clusterIP": format!("10.96.{}.{}", 10 + i, 10 + j), "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}));
        }
    }
    for (i, (_, ip)) in replicas.iter().enumerate() {
        items.push(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("coredns-{i}"), "namespace": "kube-system"}, "status": {"podIP": ip.to_string()}}));
    }
    for (i, p) in pods.iter().enumerate() {
        items.push(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("app-{i}"), "namespace": p.namespace}, "status": {"podIP": p.ip.to_string()}}));
    }
    let _ = spec;
    json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

/// A kernel's label for reports.
pub fn kernel_label(k: Kernel) -> String {
    k.to_string()
}

impl Engine {
    /// Ends the run: the report with its trace hash and counters.
    pub fn into_report(mut self) -> Report {
        self.report.net = self.net.clone();
        self.report.trace_hash = self.trace;
        self.report.conntrack_max = self.nodes.iter().map(|n| n.ct.cfg.max).collect();
        self.report
    }
}
