//! Building a cluster from its spec: the address plan, nodes with their kernel tables, pods with
//! their client libraries, CoreDNS replicas and node-local caches.

use std::collections::{BTreeMap, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use netmodel::conntrack::Conntrack;
use netmodel::dnat::{KubeProxy, Rules};
use netmodel::ipvs::Ipvs;
use netmodel::ports::Ports;
use netmodel::ratelimit::TokenBucket;
use netmodel::{Proto, conntrack};
use resolver::cluster::{ClusterObjects, Kind, Watched};
use resolver::config::Files;
use resolver::{Config, Server};

use crate::client::{Call, PodAddrs, Process, ResolvConf};
use crate::report::{NetCounters, Report, Wire};
use crate::spec::{ClusterSpec, ProxyMode, ServerProfile};

use super::queue::COMPACT_MIN;
use super::state::{States, cluster_list, dump_items, target_services};
use super::{Engine, Ev, Inst, InstKind, KUBE_DNS, KUBE_DNS_UPSTREAM, NODE_LOCAL_IP, Node, Pod, SimError, upstream_ip};

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
                kernel: spec.kernel_of(i),
                ct: Conntrack::new(conntrack::Config { nfqueue: spec.nfqueue, ..conntrack::Config::for_kernel(spec.kernel_of(i), ct_max) }),
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
        let node_search: Vec<&str> = spec.node_search.iter().map(String::as_str).collect();
        for (group, g) in spec.pods.iter().enumerate() {
            for _ in 0..g.count {
                let node = k % spec.nodes;
                k += 1;
                let ip = next_ip(node);
                let text = g
                    .resolv_conf
                    .clone()
                    .unwrap_or_else(|| ResolvConf::kubelet_cluster_first(nameserver, &g.namespace, &spec.cluster_domain, &node_search));
                pods.push(Pod {
                    node,
                    group,
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
        // Without one, Services are generated for the names the pod groups look up.
        let dump = match spec.cluster_state.as_deref() {
            Some(text) => dump_items(text)?,
            None => target_services(&spec.pods, &spec.cluster_domain),
        };
        // Every replica's watches list it at start, through the event-applying code the binary's
        // API watch uses (`cluster::Watched`).
        let mut watched = Watched::new(&Kind::ALL);
        watched.relist(&ClusterObjects::parse(
            &cluster_list(&replica_ips, &pods, spec.extra_pods, &BTreeMap::new(), &dump),
            "simulated-cluster",
        )?);
        let states = States::new(watched.state());
        let mut insts = Vec::new();
        for (r, (node, ip)) in replica_ips.iter().enumerate() {
            let az = nodes[*node].az;
            let corefile = spec.corefile.clone();
            let seed = spec.seed ^ (0x5eed_0000 + r as u64);
            insts.push(Inst {
                relist_until: Some(Duration::ZERO),
                ..Inst::new(
                    InstKind::ClusterDns,
                    *node,
                    *ip,
                    server_for(&corefile, az, &spec, InstKind::ClusterDns, &states, seed)?,
                    corefile,
                    seed,
                )
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
                insts.push(Inst::new(
                    InstKind::NodeLocal,
                    i,
                    NODE_LOCAL_IP,
                    server_for(&corefile, n.az, &spec, InstKind::NodeLocal, &states, seed)?,
                    corefile,
                    seed,
                ));
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
            states,
            watched,
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
            node_detect: BTreeMap::new(),
            wire: Wire::default(),
            cache_seen: Vec::new(),
            inst_trouble: BTreeMap::new(),
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
            // The sidecar staggers its first probe at random within its period.
            let first = Duration::from_micros(e.rng.u64(..super::kube_dns::PROBE_EVERY.as_micros() as u64));
            e.push(first, Ev::Probe);
        }
        for i in 0..e.insts.len() {
            e.drain_inst(i);
        }
        Ok(e)
    }
}

pub(super) fn node_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250 + 1) as u8))
}

pub(super) fn pod_ip(node: usize, j: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 100 + (node / 256) as u8, (node % 256) as u8, (j + 2) as u8))
}

/// The `/etc/resolv.conf` of a node in an AZ: the AZ's cloud resolver (what `forward . /etc/resolv.conf`
/// reads on that node).
pub(crate) fn node_resolv_conf(az: usize) -> String {
    format!("nameserver {}\n", upstream_ip(az))
}

/// The server an instance runs: the scenario's for the cluster DNS replicas and for node-local-dns
/// (node-cache's CoreDNS unless it says `ndots`).
pub(super) fn profile(spec: &ClusterSpec, kind: InstKind) -> &ServerProfile {
    match (kind, &spec.node_local) {
        (InstKind::NodeLocal, Some(nl)) => &nl.server,
        _ => &spec.server,
    }
}

/// A resolver as it starts on a node of `az`: its Corefile's files are the node's, never the host's.
/// The resolver an instance runs: its Corefile for its server (`profile`), and the detectors'
/// upstream budget the cloud's packet limit (as an operator would set `detect { upstream_budget }`).
pub(super) fn server_for(
    corefile: &str,
    az: usize,
    spec: &ClusterSpec,
    kind: InstKind,
    states: &States,
    seed: u64,
) -> Result<Server, SimError> {
    let profile = profile(spec, kind);
    // kube-dns has no Corefile: its dnsmasq and kubedns as server blocks (kube_dns.rs).
    let corefile = if *profile == ServerProfile::KubeDns { super::kube_dns::KUBE_DNS_COREFILE } else { corefile };
    let cf = resolver::corefile::parse_str(corefile, "Corefile", None, &|_| None)?;
    let rc = node_resolv_conf(az);
    let mut cfg = Config::from_corefile_in(&cf, &Files::Only(&[("/etc/resolv.conf", &rc)]))?;
    configure(profile, &cf, &mut cfg).map_err(SimError::Spec)?;
    let state = states.for_config(&cfg);
    let mut server = Server::new(Arc::new(cfg), state, seed);
    server.set_detect_budget(spec.eni_limit.map(|e| e.rate_per_sec as u32));
    Ok(server)
}

/// The Corefile a scenario runs when it gives none: kubeadm's, as the named CoreDNS release's
/// deployment had it.
pub(crate) fn default_corefile(profile: &ServerProfile) -> String {
    match profile {
        ServerProfile::CoreDns(version) => super::coredns::default_corefile(version.as_deref(), crate::spec::KUBEADM_COREFILE),
        _ => crate::spec::KUBEADM_COREFILE.to_string(),
    }
}

/// Turns the ndots configuration built from a Corefile into the server a profile names: ndots as
/// it is, CoreDNS of a release (coredns.rs), or kube-dns's dnsmasq (kube_dns.rs). Refuses Corefile
/// syntax the named release did not have.
pub(crate) fn configure(profile: &ServerProfile, cf: &resolver::corefile::Corefile, cfg: &mut Config) -> Result<(), String> {
    match profile {
        ServerProfile::Ndots => Ok(()),
        ServerProfile::CoreDns(version) => super::coredns::configure(version.as_deref(), cf, cfg),
        ServerProfile::KubeDns => {
            super::kube_dns::configure(cfg);
            Ok(())
        }
    }
}
