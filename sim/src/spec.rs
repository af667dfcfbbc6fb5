//! What a simulated cluster is made of: the Rust form of a scenario.

use std::time::Duration;

use netmodel::Kernel;
use netmodel::dnat::KubeProxyConfig;

use crate::client::Hints;
use crate::client::glibc::Version;

/// kube-proxy's mode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ProxyMode {
    Iptables,
    Ipvs(netmodel::ipvs::Config),
}

/// A client library and version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Library {
    Glibc(Version),
    /// Go's cgo resolver: glibc called with AI_CANONNAME | AI_V4MAPPED | AI_ALL (sources.md#go-cgo).
    GoCgo(Version),
    Musl(crate::client::musl::Version),
    /// Go's native resolver (a static build, or `GODEBUG=netdns=go`).
    Go,
    /// A cgo-linked Go program of a release, choosing its resolver per lookup as that release does
    /// (`client::go_choice`): glibc's for unknown resolv.conf options and `.local` names.
    GoBuild(crate::client::go_choice::GoBuild),
    CAres(crate::client::cares::Era),
    Evdns(crate::client::evdns::Version),
}

impl std::fmt::Display for Library {
    /// The name scenario files use: `glibc-2.36`, `go-cgo-2.36`, `musl-1.2.5`, `go`, `go-1.19`, `c-ares-2020`,
    /// `c-ares-1.34`, `evdns-2.1`, `evdns-2.2`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::client::{cares::Era, evdns};
        match self {
            Library::Glibc(Version(a, b)) => write!(f, "glibc-{a}.{b}"),
            Library::GoCgo(Version(a, b)) => write!(f, "go-cgo-{a}.{b}"),
            Library::Musl(crate::client::musl::Version(a, b, c)) => write!(f, "musl-{a}.{b}.{c}"),
            Library::Go => f.write_str("go"),
            Library::GoBuild(b) => write!(f, "go-1.{}", b.minor),
            Library::CAres(Era::V2020) => f.write_str("c-ares-2020"),
            Library::CAres(Era::V2022) => f.write_str("c-ares-1.18"),
            Library::CAres(Era::V2023) => f.write_str("c-ares-1.28"),
            Library::CAres(Era::Current) => f.write_str("c-ares-1.34"),
            Library::Evdns(evdns::Version::V2_1) => f.write_str("evdns-2.1"),
            Library::Evdns(evdns::Version::V2_2) => f.write_str("evdns-2.2"),
        }
    }
}

/// The libraries a scenario can name, for error messages.
pub const LIBRARIES: &str = "glibc[-2.X], go-cgo[-2.X] (Go's cgo resolver over that glibc), musl[-1.X.Y], go (Go's own resolver), go-1.X (a cgo-linked Go 1.17-1.23 build choosing as that release does), c-ares[-VERSION] (1.15 to 1.30, 1.32 and later, or 2020), evdns[-2.1|-2.2]";

impl std::str::FromStr for Library {
    type Err = String;

    /// Parses the names `Display` prints; without a version, the current one.
    fn from_str(s: &str) -> Result<Library, String> {
        use crate::client::{cares::Era, evdns, musl};
        let bad = || format!("unknown client library `{s}`; expected one of {LIBRARIES}");
        let nums = |v: &str| -> Result<Vec<u16>, String> { v.split('.').map(|p| p.parse::<u16>().map_err(|_| bad())).collect() };
        let (name, version) = match s.find(|c: char| c.is_ascii_digit()) {
            Some(i) if i > 0 && s.as_bytes()[i - 1] == b'-' => (&s[..i - 1], Some(&s[i..])),
            _ => (s, None),
        };
        Ok(match (name, version) {
            ("glibc", None) => Library::Glibc(Version::CURRENT),
            ("go-cgo", None) => Library::GoCgo(Version::CURRENT),
            ("glibc" | "go-cgo", Some(v)) => {
                let [a, b] = nums(v)?[..] else { return Err(bad()) };
                if name == "glibc" { Library::Glibc(Version(a, b)) } else { Library::GoCgo(Version(a, b)) }
            }
            ("musl", None) => Library::Musl(musl::Version::CURRENT),
            ("musl", Some(v)) => {
                let [a, b, c] = nums(v)?[..] else { return Err(bad()) };
                Library::Musl(musl::Version(a, b, c))
            }
            ("go", None) => Library::Go,
            ("go", Some(v)) => Library::GoBuild(crate::client::go_choice::GoBuild::for_version(v)?),
            ("c-ares", None) => Library::CAres(Era::Current),
            ("c-ares", Some(v)) => Library::CAres(Era::for_version(v)?),
            ("evdns", None) => Library::Evdns(evdns::Version::V2_2),
            ("evdns", Some(v)) => Library::Evdns(evdns::Version::for_version(v)?),
            _ => return Err(bad()),
        })
    }
}

/// A group of identical pods.
#[derive(Debug, Clone, PartialEq)]
pub struct PodGroup {
    pub count: usize,
    pub namespace: String,
    pub library: Library,
    /// resolv.conf text; None: the kubelet's ClusterFirst file for the namespace.
    pub resolv_conf: Option<String>,
    pub hints: Hints,
    /// Lookups per second per pod (Poisson arrivals).
    pub rate: f64,
    /// Names looked up, with weights. `{n}` stands for a random number per lookup (a new name
    /// every time, as with many distinct hostnames); reports group lookups by the name as written.
    pub names: Vec<(String, u32)>,
    /// Interface addresses besides the pod IP and loopback (e.g. a link-local `fe80::` address).
    pub extra_addrs: Vec<std::net::IpAddr>,
    /// An application-level cache in front of the library (Java's InetAddress cache).
    pub client_cache: Option<ClientCache>,
    /// At most this many lookups at once, the rest wait (Node's libuv pool: 4 threads).
    pub threadpool: Option<usize>,
    /// Application requests per second over TCP to pods on random nodes (request and response
    /// segments, retransmitted on loss with Linux's RTO: 200 ms, doubling, 15 retries).
    pub app_rate: f64,
}

/// Java's InetAddress cache (sources.md#java-cache): `networkaddress.cache.ttl` 30 s without a security
/// manager, forever with one; `networkaddress.cache.negative.ttl` 10 s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientCache {
    /// None: forever.
    pub positive: Option<Duration>,
    pub negative: Duration,
}

impl ClientCache {
    pub const JAVA: ClientCache = ClientCache { positive: Some(Duration::from_secs(30)), negative: Duration::from_secs(10) };
    pub const JAVA_SECURITY_MANAGER: ClientCache = ClientCache { positive: None, negative: Duration::from_secs(10) };
}

/// One-way latencies between places (sources.md#incident-s12 for loss, cloud-typical values otherwise).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub same_node: Duration,
    pub same_az: Duration,
    pub cross_az: Duration,
    /// Cluster node to its AZ's cloud resolver.
    pub upstream: Duration,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            same_node: Duration::from_micros(30),
            same_az: Duration::from_micros(150),
            cross_az: Duration::from_micros(600),
            upstream: Duration::from_millis(1),
        }
    }
}

/// The insertion-race parameters (sources.md#conntrack-race). A race needs two packets of one flow,
/// so only libraries sending A and AAAA from one socket are exposed (two sockets are two flows).
/// `window` (20 µs): how close the second packet must follow the first [unverified].
/// `p_cpu_split` (0.5): the chance such a one-thread pair (glibc's `sendmmsg`, musl's and c-ares'
/// sequential sends) is processed on two CPUs at once; `kernel-check` measures 0 on this machine's
/// kernel through a veth, production reports say busy nodes do it [assumption, swept in
/// ARCHITECTURE.md]. `p_reply_tuple_taken` (0.5): how often a same-target race is race 2 rather
/// than race 1, which only kernels before 5.0 tell apart [unverified]. `p_nfqueue` (0.65): the
/// chance such a pair races when a policy agent queues new flows to user space before conntrack
/// confirms them, which replaces `p_cpu_split` there; `kernel-check` measures 0.64-0.68 for glibc's
/// `sendmmsg` with a consumer that accepts at once [measured; a slower agent holds longer].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RaceParams {
    pub window: Duration,
    pub p_cpu_split: f64,
    pub p_reply_tuple_taken: f64,
    pub p_nfqueue: f64,
}

impl Default for RaceParams {
    fn default() -> Self {
        RaceParams { window: Duration::from_micros(20), p_cpu_split: 0.5, p_reply_tuple_taken: 0.5, p_nfqueue: 0.65 }
    }
}

/// A change at a point of simulated time.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Delete a CoreDNS replica pod (by index); the apiserver removes it from kube-dns's endpoints and
    /// its ReplicaSet creates a replacement at once (sources.md#pod-eviction).
    KillReplica(usize),
    /// The cloud resolver of an AZ stops answering (black-holes every query).
    UpstreamBlackhole(usize),
    UpstreamRepair(usize),
    /// node-local-dns on a node stops (SIGTERM teardown: its NOTRACK rules and address go).
    NodeLocalDown(usize),
    /// ...and starts again (a fresh process, empty cache).
    NodeLocalUp(usize),
    /// The apiserver restarts: every resolver's informers relist (#139117: memory roughly doubles
    /// while the new list is built beside the old one).
    ApiserverRestart,
    /// i.i.d. packet loss on every packet into or out of an AZ (0.0 repairs it).
    AzLoss {
        az: usize,
        loss: f64,
    },
    /// Packet loss into or out of an AZ in bursts (a Gilbert channel in time): `loss` is the share
    /// of time in a burst, `burst` the mean burst length; every packet in a burst is lost. `AzLoss`
    /// with 0.0 repairs it.
    AzBurstLoss {
        az: usize,
        loss: f64,
        burst: Duration,
    },
    /// A Service gets a new ClusterIP (deleted and recreated): the apiserver tells every resolver.
    ServiceIp {
        namespace: String,
        name: String,
        ip: std::net::IpAddr,
    },
    /// The cluster now has this many nodes (as the autoscaler counts them); nodes beyond the
    /// simulated ones carry no simulated pods.
    ClusterNodes(usize),
    /// The cloud resolver of an AZ answers this much later (0 repairs it).
    UpstreamSlow {
        az: usize,
        delay: Duration,
    },
    /// A node fails (power, kernel panic): its pods and resolvers vanish without a word; its
    /// CoreDNS replicas stay in kube-dns's endpoints until the node controller marks the node
    /// NotReady (`ClusterSpec::node_monitor_grace`); they are evicted and replaced 300 s after that
    /// (sources.md#pod-eviction).
    NodeDown(usize),
    /// A rolling update of the CoreDNS Deployment (kubeadm: maxUnavailable 1): one new replica at a
    /// time, and once it is ready an old one is deleted gracefully (out of the endpoints, then its
    /// 5 s lameduck).
    RollReplicas,
    /// The CoreDNS Deployment is scaled to this many replicas (`kubectl scale`, or a bad rollout
    /// scaling it to zero): extra replicas deleted at once (the newest first), missing ones created,
    /// in the endpoints once ready.
    ScaleReplicas(usize),
    /// kube-proxy restarts on every node (a DaemonSet rollout, an upgrade): its first sync cleans
    /// conntrack as its version does (kubernetes#122740; sources.md#kube-proxy-cleanup).
    KubeProxyRestart,
    /// i.i.d. loss of UDP packets between the nodes and an AZ's cloud resolver, both ways (0.0
    /// repairs it). TCP is reliable: its retransmissions are not modelled.
    UpstreamLoss {
        az: usize,
        loss: f64,
    },
    /// i.i.d. loss of UDP packets on the link between two nodes, both ways (0.0 repairs it).
    LinkLoss {
        a: usize,
        b: usize,
        loss: f64,
    },
    /// A rolling update of the node-local-dns DaemonSet (maxUnavailable 1): node by node, the old pod
    /// tears down (its NOTRACK rules and link-local address go, kubernetes/dns#310) and the new one
    /// serves `gap` later, then the next node's turn.
    RollNodeLocal {
        gap: Duration,
    },
}

impl Fault {
    /// The fault as a scenario file writes it, on one line: `kill_replica: 0`,
    /// `upstream_loss: {az: 0, loss: 0.02}`, `roll_replicas: true` (reports and events use it; a
    /// test reads every label back as a fault).
    pub fn label(&self) -> String {
        let d = |d: &Duration| humantime::format_duration(*d).to_string().replace(' ', "");
        match self {
            Fault::KillReplica(r) => format!("kill_replica: {r}"),
            Fault::UpstreamBlackhole(az) => format!("upstream_blackhole: {az}"),
            Fault::UpstreamRepair(az) => format!("upstream_repair: {az}"),
            Fault::NodeLocalDown(n) => format!("node_local_down: {n}"),
            Fault::NodeLocalUp(n) => format!("node_local_up: {n}"),
            Fault::ApiserverRestart => "apiserver_restart: true".into(),
            Fault::AzLoss { az, loss } => format!("az_loss: {{az: {az}, loss: {loss}}}"),
            Fault::AzBurstLoss { az, loss, burst } => format!("az_burst_loss: {{az: {az}, loss: {loss}, burst: {}}}", d(burst)),
            Fault::ServiceIp { namespace, name, ip } => format!("service_ip: {{namespace: {namespace}, name: {name}, ip: {ip}}}"),
            Fault::ClusterNodes(n) => format!("cluster_nodes: {n}"),
            Fault::UpstreamSlow { az, delay } => format!("upstream_slow: {{az: {az}, delay: {}}}", d(delay)),
            Fault::NodeDown(n) => format!("node_down: {n}"),
            Fault::RollReplicas => "roll_replicas: true".into(),
            Fault::ScaleReplicas(n) => format!("scale_replicas: {n}"),
            Fault::KubeProxyRestart => "kube_proxy_restart: true".into(),
            Fault::UpstreamLoss { az, loss } => format!("upstream_loss: {{az: {az}, loss: {loss}}}"),
            Fault::LinkLoss { a, b, loss } => format!("link_loss: {{a: {a}, b: {b}, loss: {loss}}}"),
            Fault::RollNodeLocal { gap } => format!("roll_node_local: {}", d(gap)),
        }
    }

    /// A fault that undoes another (a repair, a cache coming back, loss set to 0).
    pub fn is_repair(&self) -> bool {
        match self {
            Fault::UpstreamRepair(_) | Fault::NodeLocalUp(_) => true,
            Fault::AzLoss { loss, .. } | Fault::UpstreamLoss { loss, .. } | Fault::LinkLoss { loss, .. } => *loss == 0.0,
            Fault::UpstreamSlow { delay, .. } => delay.is_zero(),
            _ => false,
        }
    }
}

/// The kubelet's liveness check of each replica (sources.md#kube-dns, sources.md#incident-s15): every
/// `period` it reads the health the sidecar's probe query last found (a real query through the
/// replica's port 53 every 5 s; `engine/kube_dns.rs`) and restarts the container after
/// `failure_threshold` failures in a row (CrashLoopBackOff), then waits out the 60 s initial delay.
/// kube-dns's manifest: the default 10 s period, failureThreshold 5.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Liveness {
    pub period: Duration,
    pub failure_threshold: u32,
}

impl Liveness {
    pub const KUBE_DNS: Liveness = Liveness { period: Duration::from_secs(10), failure_threshold: 5 };
}

/// cluster-proportional-autoscaler, linear mode (sources.md#dns-autoscaler): replicas =
/// max(ceil(cores / coresPerReplica), ceil(nodes / nodesPerReplica)), at least 2 with
/// preventSinglePointFailure when there is more than one node; polled every 10 s [unverified].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Autoscaler {
    pub cores_per_replica: usize,
    pub nodes_per_replica: usize,
    pub prevent_single_point_failure: bool,
    /// The node count the autoscaler sees at the start.
    pub nodes: usize,
    pub poll: Duration,
}

impl Autoscaler {
    /// The standard addon's parameters: 256 cores and 16 nodes per replica.
    pub fn addon(nodes: usize) -> Autoscaler {
        Autoscaler {
            cores_per_replica: 256,
            nodes_per_replica: 16,
            prevent_single_point_failure: true,
            nodes,
            poll: Duration::from_secs(10),
        }
    }

    pub fn replicas(&self, nodes: usize, cores: usize) -> usize {
        let r = cores.div_ceil(self.cores_per_replica).max(nodes.div_ceil(self.nodes_per_replica));
        if self.prevent_single_point_failure && nodes > 1 { r.max(2) } else { r.max(1) }
    }
}

/// The DNS server a replica runs. Every replica runs the ndots resolver; `CoreDns` turns off what
/// ndots does that CoreDNS never did and sets what its release did, so a failing side measures
/// CoreDNS (the simulator's `engine/coredns.rs`: no merging, the client's EDNS forwarded, truncated
/// answers passed on, SERVFAIL caching and the minimum TTL by release, Corefile syntax the release
/// lacked refused); its memory is the separate `MemoryModel::CoreDns`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ServerProfile {
    #[default]
    Ndots,
    /// CoreDNS, with the release as written (`coredns-1.6.7`), when known.
    CoreDns(Option<String>),
    /// kube-dns: dnsmasq (before 2.83) in front of kubedns, one table of 150 forwards, the
    /// sidecar's probe through dnsmasq (sources.md#kube-dns; the simulator's `engine/kube_dns.rs`).
    KubeDns,
}

impl ServerProfile {
    /// `ndots`, `coredns`, `coredns-MAJOR.MINOR[.PATCH]` or `kube-dns`.
    pub fn parse(s: &str) -> Result<ServerProfile, String> {
        match s {
            "ndots" => Ok(ServerProfile::Ndots),
            "kube-dns" => Ok(ServerProfile::KubeDns),
            "coredns" => Ok(ServerProfile::CoreDns(None)),
            _ => match s.strip_prefix("coredns-") {
                Some(v) if v.split('.').count() >= 2 && v.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) => {
                    Ok(ServerProfile::CoreDns(Some(v.to_string())))
                }
                _ => Err(format!("server `{s}`: expected `ndots`, `coredns`, `coredns-VERSION` such as coredns-1.6.7, or `kube-dns`")),
            },
        }
    }
}

impl std::fmt::Display for ServerProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerProfile::Ndots => f.write_str("ndots"),
            ServerProfile::CoreDns(None) => f.write_str("coredns"),
            ServerProfile::CoreDns(Some(v)) => write!(f, "coredns-{v}"),
            ServerProfile::KubeDns => f.write_str("kube-dns"),
        }
    }
}

/// How a replica's memory is counted against its limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemoryModel {
    /// ndots: the server's own accounting of its structures (`Server::memory_bytes`).
    Ndots,
    /// CoreDNS as it ran in the incidents, from simulated quantities.
    CoreDns(CoreDnsMemory),
}

/// CoreDNS's memory (sources.md#coredns-memory), calibrated on coredns/deployment's
/// Scaling_CoreDNS.md, a best fit of CoreDNS's measured memory in the 500-, 2,000- and 5,000-node
/// e2e clusters: 0.000858 MB per Pod or Service (Endpoints carry every pod's address), 0.0025 MB with
/// autopath's `pods verified` (so 1,642 B more per watched pod), and 49.1 MB at none, of which 30 MB
/// is a full 10,000-entry cache (3,000 B per entry, counted here as entries fill) and the rest the
/// process under load: `base` 19.1 MB. ~2 KB per in-flight forwarded query (the forward plugin's
/// README, `max_concurrent`). Measured on CoreDNS 1.2; no later release publishes figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CoreDnsMemory {
    pub base: u64,
    pub per_watched_pod: u64,
    pub per_object: u64,
    pub per_inflight: u64,
    pub per_cache_entry: u64,
}

impl Default for CoreDnsMemory {
    fn default() -> Self {
        CoreDnsMemory { base: 19_100_000, per_watched_pod: 1_642, per_object: 858, per_inflight: 2_048, per_cache_entry: 3_000 }
    }
}

impl CoreDnsMemory {
    /// What the kubernetes plugin holds for a cluster of `pods` pods and `services` other watched
    /// objects: each counts once, and every pod again with `pods verified`.
    pub fn watched(&self, pods: u64, services: u64, verified: bool) -> u64 {
        (pods + services) * self.per_object + if verified { pods * self.per_watched_pod } else { 0 }
    }
}

/// A memory limit on the CoreDNS replicas (coredns/deployment: 170Mi).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplicaMemory {
    pub limit: u64,
    pub model: MemoryModel,
    /// How long a (re)list holds the old and the new objects together [unverified: 10 s].
    pub relist: Duration,
}

impl ReplicaMemory {
    pub fn mib(limit_mib: u64, model: MemoryModel) -> ReplicaMemory {
        ReplicaMemory { limit: limit_mib << 20, model, relist: Duration::from_secs(10) }
    }
}

/// node-local-dns on every node (sources.md#node-local-dns).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeLocal {
    /// The Corefile template with its `__PILLAR__` variables (substituted per node).
    pub corefile: String,
    /// iptables mode: also bind the kube-dns ClusterIP, so pods need no change. Otherwise pods point
    /// at 169.254.20.10.
    pub bind_kube_dns: bool,
    /// What each node's cache runs: node-cache embeds CoreDNS (`coredns`, the default: no merging of
    /// identical in-flight questions); `ndots` where ndots replaces it.
    pub server: ServerProfile,
}

impl NodeLocal {
    pub fn template() -> NodeLocal {
        NodeLocal { corefile: NODE_LOCAL_COREFILE.to_string(), bind_kube_dns: true, server: ServerProfile::CoreDns(None) }
    }
}

/// node-local-dns's Corefile template (kubernetes cluster/addons/dns/nodelocaldns; sources.md#node-local-dns).
pub const NODE_LOCAL_COREFILE: &str = include_str!("../../examples/nodelocaldns.Corefile");

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSpec {
    pub seed: u64,
    pub azs: usize,
    pub nodes: usize,
    pub cpus_per_node: usize,
    /// Every node's kernel, unless `node_kernels` gives each its own (then the oldest of them, which
    /// IPVS's configuration follows).
    pub kernel: Kernel,
    /// Node i's kernel (a cluster part-way through an upgrade); empty: every node runs `kernel`.
    pub node_kernels: Vec<Kernel>,
    pub proxy: ProxyMode,
    pub kube_proxy: KubeProxyConfig,
    /// kube-proxy --conntrack-max-per-core and --conntrack-min.
    pub conntrack_max_per_core: usize,
    pub conntrack_min: usize,
    pub coredns_replicas: usize,
    /// The server the cluster DNS replicas run: ndots, or CoreDNS as it behaved.
    pub server: ServerProfile,
    /// node-local-dns on every node, if deployed.
    pub node_local: Option<NodeLocal>,
    /// Memory limit of the CoreDNS replicas (None: unlimited).
    pub replica_memory: Option<ReplicaMemory>,
    /// Pods in the cluster state beyond the simulated workload (the rest of a large cluster).
    pub extra_pods: usize,
    /// IP fragments between the nodes and the cloud resolver are dropped (sources.md#incident-s18): a UDP
    /// answer over the 1500-byte MTU (1472 bytes of DNS payload) never arrives.
    pub drop_fragments: bool,
    /// A network-policy agent NFQUEUEs the first packets of new flows: a one-socket pair races in
    /// conntrack `race.p_nfqueue` of the time, and on kernels before 6.12 (8af79d3edb5f) the loser is
    /// dropped whatever else the kernel fixed (sources.md#incident-s20).
    pub nfqueue: bool,
    /// The cluster-proportional-autoscaler (dns-autoscaler), if it manages the replicas.
    pub autoscaler: Option<Autoscaler>,
    /// The cluster DNS Corefile; `/etc/resolv.conf` stands for the node's upstream (the AZ's resolver).
    pub corefile: String,
    pub cluster_domain: String,
    /// The nodes' own search domains, which the kubelet appends to a ClusterFirst pod's search list
    /// (AWS: `ec2.internal` in us-east-1, `<region>.compute.internal` elsewhere;
    /// sources.md#kubelet-resolv-conf).
    pub node_search: Vec<String>,
    pub pods: Vec<PodGroup>,
    /// A `kubectl get namespaces,services,endpointslices,pods -A -o yaml|json` dump whose objects
    /// join the simulated cluster's state (kube-dns's own Service and EndpointSlices stay the
    /// simulator's).
    pub cluster_state: Option<String>,
    /// The "internet": an RFC 1035 zone served by each AZ's cloud resolver, origin `.`.
    pub upstream_zone: String,
    /// Per-ENI packet budget to the cloud resolver (AWS: 1024/s).
    pub eni_limit: Option<netmodel::ratelimit::Config>,
    pub latency: Latency,
    pub race: RaceParams,
    pub duration: Duration,
    pub faults: Vec<(Duration, Fault)>,
    /// Record every wire query of every lookup in the report (`LookupRecord::wire`).
    pub trace_queries: bool,
    /// A liveness probe on the cluster DNS replicas that fails while forwards are refused at the
    /// concurrency limit (kube-dns's sidecar checking dnsmasq), restarting the container.
    pub liveness: Option<Liveness>,
    /// From a new replica's creation to its passing readiness probe, when it joins the endpoints
    /// [unverified: 2 s; the kubeadm manifest probes /ready every 10 s, the first can pass sooner].
    pub replica_startup: Duration,
    /// How long the control plane takes to notice a dead node (kube-controller-manager
    /// `--node-monitor-grace-period`: 40 s [unverified for releases after 1.31, which may use 50 s]).
    pub node_monitor_grace: Duration,
}

impl ClusterSpec {
    /// The kernel node `node` runs.
    pub fn kernel_of(&self, node: usize) -> Kernel {
        self.node_kernels.get(node).copied().unwrap_or(self.kernel)
    }

    /// A small healthy cluster: kubeadm's Corefile, iptables mode, kernel 5.15, glibc pods looking up
    /// a mix of cluster and external names.
    pub fn smoke(seed: u64) -> ClusterSpec {
        ClusterSpec {
            seed,
            azs: 3,
            nodes: 3,
            cpus_per_node: 2,
            kernel: Kernel::new(5, 15),
            node_kernels: Vec::new(),
            proxy: ProxyMode::Iptables,
            kube_proxy: KubeProxyConfig::default(),
            server: ServerProfile::Ndots,
            conntrack_max_per_core: 32768,
            conntrack_min: 131072,
            coredns_replicas: 2,
            node_local: None,
            replica_memory: None,
            extra_pods: 0,
            drop_fragments: false,
            nfqueue: false,
            autoscaler: None,
            corefile: KUBEADM_COREFILE.to_string(),
            cluster_domain: "cluster.local".into(),
            node_search: vec!["ec2.internal".into()],
            cluster_state: None,
            pods: vec![PodGroup {
                count: 30,
                namespace: "default".into(),
                library: Library::Glibc(Version::CURRENT),
                resolv_conf: None,
                hints: Hints::NULL,
                rate: 1.0,
                names: vec![
                    ("web".into(), 3),
                    ("api.shop.svc.cluster.local".into(), 2),
                    ("www.google.com".into(), 3),
                    ("api.github.com".into(), 2),
                ],
                extra_addrs: Vec::new(),
                client_cache: None,
                threadpool: None,
                app_rate: 0.0,
            }],
            upstream_zone: DEFAULT_INTERNET.to_string(),
            eni_limit: Some(netmodel::ratelimit::Config::AWS_ENI),
            latency: Latency::default(),
            race: RaceParams::default(),
            duration: Duration::from_secs(10),
            faults: Vec::new(),
            trace_queries: false,
            node_monitor_grace: Duration::from_secs(40),
            replica_startup: Duration::from_secs(2),
            liveness: None,
        }
    }
}

/// kubeadm's default Corefile (sources.md#default-corefiles).
pub const KUBEADM_COREFILE: &str = include_str!("../../examples/kubeadm.Corefile");

/// The simulated internet's zone: a few names with fixed records (tests look for them) and a
/// synthetic rest, so any name under a common top-level domain resolves as it would on the
/// internet. Wildcards under those TLDs and under every name that exists answer any other name
/// with an A and an AAAA record (RFC 4592: a wildcard applies only at the closest encloser, hence
/// one per level). Single-label names and names under `internal.`, `local.` and `arpa.` do not
/// exist, so the search-path expansions a pod's lookups walk through (`web.`,
/// `www.google.com.ec2.internal.`, `x.compute.internal.`) are NXDOMAIN, as the cloud resolver
/// answers them.
pub const DEFAULT_INTERNET: &str = "$TTL 300
@ IN SOA ns.cloud.internal. hostmaster.cloud.internal. 1 7200 1800 86400 60
www.google.com. 300 IN A 142.250.74.100
www.google.com. 300 IN AAAA 2a00:1450:4007:80e::2004
api.github.com. 60 IN A 140.82.121.6
*.example.com. 60 IN A 93.184.215.14
*.google.com. 300 IN A 142.250.74.101
*.google.com. 300 IN AAAA 2a00:1450:4007:80e::2005
*.github.com. 60 IN A 140.82.121.7
*.com. 300 IN A 198.51.100.11
*.com. 300 IN AAAA 2001:db8:100::11
*.net. 300 IN A 198.51.100.21
*.net. 300 IN AAAA 2001:db8:100::15
*.org. 300 IN A 198.51.100.22
*.org. 300 IN AAAA 2001:db8:100::16
*.io. 300 IN A 198.51.100.23
*.io. 300 IN AAAA 2001:db8:100::17
*.dev. 300 IN A 198.51.100.24
*.dev. 300 IN AAAA 2001:db8:100::18
*.app. 300 IN A 198.51.100.25
*.app. 300 IN AAAA 2001:db8:100::19
*.ai. 300 IN A 198.51.100.26
*.ai. 300 IN AAAA 2001:db8:100::1a
*.co. 300 IN A 198.51.100.27
*.co. 300 IN AAAA 2001:db8:100::1b
*.cloud. 300 IN A 198.51.100.28
*.cloud. 300 IN AAAA 2001:db8:100::1c
*.info. 300 IN A 198.51.100.29
*.info. 300 IN AAAA 2001:db8:100::1d
*.biz. 300 IN A 198.51.100.30
*.biz. 300 IN AAAA 2001:db8:100::1e
*.me. 300 IN A 198.51.100.31
*.me. 300 IN AAAA 2001:db8:100::1f
*.tv. 300 IN A 198.51.100.32
*.tv. 300 IN AAAA 2001:db8:100::20
*.xyz. 300 IN A 198.51.100.33
*.xyz. 300 IN AAAA 2001:db8:100::21
*.us. 300 IN A 198.51.100.34
*.us. 300 IN AAAA 2001:db8:100::22
*.uk. 300 IN A 198.51.100.35
*.uk. 300 IN AAAA 2001:db8:100::23
*.de. 300 IN A 198.51.100.36
*.de. 300 IN AAAA 2001:db8:100::24
*.fr. 300 IN A 198.51.100.37
*.fr. 300 IN AAAA 2001:db8:100::25
*.nl. 300 IN A 198.51.100.38
*.nl. 300 IN AAAA 2001:db8:100::26
*.eu. 300 IN A 198.51.100.39
*.eu. 300 IN AAAA 2001:db8:100::27
*.ch. 300 IN A 198.51.100.40
*.ch. 300 IN AAAA 2001:db8:100::28
*.se. 300 IN A 198.51.100.41
*.se. 300 IN AAAA 2001:db8:100::29
*.no. 300 IN A 198.51.100.42
*.no. 300 IN AAAA 2001:db8:100::2a
*.jp. 300 IN A 198.51.100.43
*.jp. 300 IN AAAA 2001:db8:100::2b
*.cn. 300 IN A 198.51.100.44
*.cn. 300 IN AAAA 2001:db8:100::2c
*.in. 300 IN A 198.51.100.45
*.in. 300 IN AAAA 2001:db8:100::2d
*.au. 300 IN A 198.51.100.46
*.au. 300 IN AAAA 2001:db8:100::2e
*.ca. 300 IN A 198.51.100.47
*.ca. 300 IN AAAA 2001:db8:100::2f
*.br. 300 IN A 198.51.100.48
*.br. 300 IN AAAA 2001:db8:100::30
";
