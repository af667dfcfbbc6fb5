//! From a read file to a `ClusterSpec` and its expectations: defaults, cross-key checks placed by
//! `locate`, pods' DNS configuration merged as the kubelet does, Corefiles checked.

use std::net::IpAddr;
use std::path::Path;

use crate::client::{Family, Hints, ResolvConf};
use crate::spec::{Autoscaler, ClusterSpec, CoreDnsMemory, Fault, Library, MemoryModel, NodeLocal, PodGroup, ProxyMode, ReplicaMemory};

use super::locate::locate;
use super::raw::{FaultAt, Mode, RawDnsConfig, RawFile};
use super::write::fmt_d;
use super::{FORMAT_VERSION, FileError, Scenario};

pub(super) fn build(raw: RawFile, file: &str, text: &str, base: &Path) -> Result<Scenario, FileError> {
    let err_at = |path: &[&str], msg: String| match locate(text, path) {
        Some((line, column)) => FileError::At { file: file.to_string(), line, column, msg },
        None => FileError::File { file: file.to_string(), msg },
    };
    let read = |key: &[&str], p: &Path| -> Result<String, FileError> {
        let full = base.join(p);
        std::fs::read_to_string(&full).map_err(|e| err_at(key, format!("{}: cannot read {}: {e}", key.join("."), full.display())))
    };
    match raw.version {
        Some(FORMAT_VERSION) => {}
        Some(v) => return Err(err_at(&["version"], format!("unsupported version {v}; this ndots-sim reads version {FORMAT_VERSION}"))),
        None => {
            return Err(FileError::File {
                file: file.into(),
                msg: format!("missing `version: {FORMAT_VERSION}` (the file format's version)"),
            });
        }
    }
    let mut spec = ClusterSpec::smoke(raw.seed.unwrap_or(1));
    spec.pods.clear();
    if let Some(d) = raw.duration {
        spec.duration = d;
    }
    spec.trace_queries = raw.trace_queries.unwrap_or(false);
    let c = raw.cluster.unwrap_or_default();
    spec.azs = c.azs.unwrap_or(spec.azs);
    spec.nodes = c.nodes.unwrap_or(spec.nodes);
    if spec.nodes == 0 || spec.azs == 0 {
        return Err(err_at(&["cluster"], "a cluster needs at least one node and one AZ".into()));
    }
    spec.cpus_per_node = c.cpus_per_node.unwrap_or(spec.cpus_per_node);
    spec.kernel = c.kernel.map_or(spec.kernel, |k| k.0);
    if let Some(kernels) = c.kernels {
        if c.kernel.is_some() {
            return Err(err_at(
                &["cluster", "kernels"],
                "give `kernel` (every node) or `kernels` (how many nodes run each), not both".into(),
            ));
        }
        let mut per_node = Vec::new();
        for (k, n) in &kernels {
            let kernel: netmodel::Kernel = k.parse().map_err(|e: String| err_at(&["cluster", "kernels"], e))?;
            per_node.extend(std::iter::repeat_n(kernel, *n));
        }
        if per_node.len() != spec.nodes {
            return Err(err_at(
                &["cluster", "kernels"],
                format!("the kernels' node counts add up to {}; cluster.nodes is {}", per_node.len(), spec.nodes),
            ));
        }
        spec.kernel = per_node.iter().copied().min().unwrap_or(spec.kernel);
        spec.node_kernels = per_node;
    }
    spec.cluster_domain = c.domain.unwrap_or(spec.cluster_domain);
    spec.node_search = match (c.region, c.node_search) {
        (Some(_), Some(_)) => {
            return Err(err_at(&["cluster", "node_search"], "give the AWS `region` or the nodes' `node_search` list, not both".into()));
        }
        (Some(r), None) => vec![aws_search_domain(&r).map_err(|e| err_at(&["cluster", "region"], e))?],
        (None, Some(s)) => s,
        (None, None) => spec.node_search,
    };
    spec.extra_pods = c.extra_pods.unwrap_or(0);
    spec.drop_fragments = c.drop_fragments.unwrap_or(false);
    spec.nfqueue = c.nfqueue.unwrap_or(false);
    spec.node_monitor_grace = c.node_monitor_grace.unwrap_or(spec.node_monitor_grace);
    spec.cluster_state = match (c.state, c.state_file) {
        (Some(_), Some(_)) => {
            return Err(err_at(
                &["cluster", "state_file"],
                "give the cluster state inline (`state`) or as a file (`state_file`), not both".into(),
            ));
        }
        (Some(s), None) => Some(s),
        (None, Some(p)) => Some(read(&["cluster", "state_file"], &p)?),
        (None, None) => None,
    };
    if let Some(s) = &spec.cluster_state {
        let name = format!("{file} (cluster state)");
        resolver::ClusterState::parse(s, &name).map_err(|e| err_at(&["cluster", "state"], e.to_string()))?;
    }

    let k = raw.kube_proxy.unwrap_or_default();
    spec.kube_proxy.sync_delay = k.sync_delay.unwrap_or(spec.kube_proxy.sync_delay);
    spec.kube_proxy.cleanup = k.conntrack_cleanup.map_or(spec.kube_proxy.cleanup, |c| c.0);
    spec.kube_proxy.version = k.version.map_or(spec.kube_proxy.version, |v| v.0);
    spec.conntrack_max_per_core = k.conntrack_max_per_core.unwrap_or(spec.conntrack_max_per_core);
    spec.conntrack_min = k.conntrack_min.unwrap_or(spec.conntrack_min);
    spec.proxy = match (k.mode.unwrap_or(Mode::Iptables), k.ipvs) {
        (Mode::Iptables, Some(_)) => {
            return Err(err_at(&["kube_proxy", "ipvs"], "`ipvs` settings need `mode: ipvs`".into()));
        }
        (Mode::Iptables, None) => ProxyMode::Iptables,
        (Mode::Ipvs, i) => {
            let i = i.unwrap_or_default();
            let mut cfg = netmodel::ipvs::Config::kube_proxy(i.kernel.map_or(spec.kernel, |k| k.0));
            cfg.udp_timeout = i.udp_timeout.unwrap_or(cfg.udp_timeout);
            cfg.tcp_timeout = i.tcp_timeout.unwrap_or(cfg.tcp_timeout);
            cfg.expire_nodest_conn = i.expire_nodest_conn.unwrap_or(cfg.expire_nodest_conn);
            cfg.conn_reuse_mode = i.conn_reuse_mode.unwrap_or(cfg.conn_reuse_mode);
            cfg.graceful = match i.graceful.as_deref() {
                None => cfg.graceful,
                Some("v1") => netmodel::ipvs::Graceful::V1,
                Some("v2") => netmodel::ipvs::Graceful::V2,
                Some("v3") => netmodel::ipvs::Graceful::V3,
                Some(g) => {
                    return Err(err_at(
                        &["kube_proxy", "ipvs", "graceful"],
                        format!("graceful `{g}`: expected v1 (2018), v2 (#76664) or v3 (current)"),
                    ));
                }
            };
            ProxyMode::Ipvs(cfg)
        }
    };

    let d = raw.coredns.unwrap_or_default();
    spec.coredns_replicas = d.replicas.unwrap_or(spec.coredns_replicas);
    spec.replica_startup = d.startup.unwrap_or(spec.replica_startup);
    if let Some(server) = &d.server {
        spec.server = crate::spec::ServerProfile::parse(server).map_err(|e| err_at(&["coredns", "server"], e))?;
    }
    spec.corefile = match (d.corefile, d.corefile_file) {
        (Some(_), Some(_)) => {
            return Err(err_at(
                &["coredns", "corefile_file"],
                "give the Corefile inline (`corefile`) or as a file (`corefile_file`), not both".into(),
            ));
        }
        (Some(t), None) => t,
        (None, Some(p)) => read(&["coredns", "corefile_file"], &p)?,
        (None, None) if spec.corefile == crate::spec::KUBEADM_COREFILE => crate::engine::default_corefile(&spec.server),
        (None, None) => spec.corefile,
    };
    check_corefile(&spec.corefile, &format!("{file} (coredns.corefile)"), &spec.server).map_err(|e| err_at(&["coredns", "corefile"], e))?;
    if let Some(m) = d.memory {
        let limit = match (m.limit_mib, m.limit_bytes) {
            (Some(mib), None) => mib << 20,
            (None, Some(b)) => b,
            _ => return Err(err_at(&["coredns", "memory"], "give exactly one of `limit_mib` and `limit_bytes`".into())),
        };
        let model = match (m.model.as_deref().unwrap_or("ndots"), m.coredns) {
            ("ndots", None) => MemoryModel::Ndots,
            ("ndots", Some(_)) => return Err(err_at(&["coredns", "memory", "coredns"], "coefficients need `model: coredns`".into())),
            ("coredns", k) => {
                let k = k.unwrap_or_default();
                let d = CoreDnsMemory::default();
                MemoryModel::CoreDns(CoreDnsMemory {
                    base: k.base.unwrap_or(d.base),
                    per_watched_pod: k.per_watched_pod.unwrap_or(d.per_watched_pod),
                    per_object: k.per_object.unwrap_or(d.per_object),
                    per_inflight: k.per_inflight.unwrap_or(d.per_inflight),
                    per_cache_entry: k.per_cache_entry.unwrap_or(d.per_cache_entry),
                })
            }
            (other, _) => {
                return Err(err_at(&["coredns", "memory", "model"], format!("memory model `{other}`: expected `ndots` or `coredns`")));
            }
        };
        let mut rm = ReplicaMemory::mib(0, model);
        rm.limit = limit;
        rm.relist = m.relist.unwrap_or(rm.relist);
        spec.replica_memory = Some(rm);
    }
    spec.liveness = d.liveness.map(|l| {
        let k = crate::spec::Liveness::KUBE_DNS;
        crate::spec::Liveness {
            period: l.period.unwrap_or(k.period),
            failure_threshold: l.failure_threshold.unwrap_or(k.failure_threshold),
        }
    });
    if let Some(a) = d.autoscaler {
        let mut cpa = Autoscaler::addon(a.nodes.unwrap_or(spec.nodes));
        cpa.cores_per_replica = a.cores_per_replica.unwrap_or(cpa.cores_per_replica);
        cpa.nodes_per_replica = a.nodes_per_replica.unwrap_or(cpa.nodes_per_replica);
        if cpa.cores_per_replica == 0 || cpa.nodes_per_replica == 0 {
            return Err(err_at(&["coredns", "autoscaler"], "cores_per_replica and nodes_per_replica must be at least 1".into()));
        }
        cpa.prevent_single_point_failure = a.prevent_single_point_failure.unwrap_or(cpa.prevent_single_point_failure);
        cpa.poll = a.poll.unwrap_or(cpa.poll);
        spec.autoscaler = Some(cpa);
    }

    if let Some(n) = raw.node_local {
        let mut nl = NodeLocal::template();
        nl.corefile = match (n.corefile, n.corefile_file) {
            (Some(_), Some(_)) => {
                return Err(err_at(&["node_local", "corefile_file"], "give the Corefile inline or as a file, not both".into()));
            }
            (Some(t), None) => t,
            (None, Some(p)) => read(&["node_local", "corefile_file"], &p)?,
            (None, None) => nl.corefile,
        };
        nl.bind_kube_dns = n.bind_kube_dns.unwrap_or(nl.bind_kube_dns);
        if let Some(server) = &n.server {
            nl.server = match crate::spec::ServerProfile::parse(server) {
                Ok(crate::spec::ServerProfile::KubeDns) => {
                    return Err(err_at(
                        &["node_local", "server"],
                        "node-local-dns runs `coredns` (node-cache) or `ndots`, not kube-dns".into(),
                    ));
                }
                Ok(p) => p,
                Err(e) => return Err(err_at(&["node_local", "server"], e)),
            };
        }
        spec.node_local = Some(nl);
    }

    let u = raw.upstream.unwrap_or_default();
    spec.upstream_zone = match (u.zone, u.zone_file) {
        (Some(_), Some(_)) => return Err(err_at(&["upstream", "zone_file"], "give the zone inline or as a file, not both".into())),
        (Some(z), None) => {
            resolver::zone::Zone::parse(&z, ".")
                .map_err(|e| err_at(&["upstream", "zone"], format!("the upstream zone: {e} (an RFC 1035 zone, origin `.`)")))?;
            z
        }
        (None, Some(p)) => {
            let z = read(&["upstream", "zone_file"], &p)?;
            resolver::zone::Zone::parse(&z, ".").map_err(|e| {
                err_at(&["upstream", "zone_file"], format!("{}: {e} (an RFC 1035 zone, origin `.`)", base.join(&p).display()))
            })?;
            z
        }
        (None, None) => spec.upstream_zone,
    };
    spec.eni_limit = match u.eni_limit {
        None => spec.eni_limit,
        Some(None) => None,
        Some(Some(e)) => Some(netmodel::ratelimit::Config { rate_per_sec: e.rate, burst: e.burst }),
    };

    let l = raw.latency.unwrap_or_default();
    spec.latency.same_node = l.same_node.unwrap_or(spec.latency.same_node);
    spec.latency.same_az = l.same_az.unwrap_or(spec.latency.same_az);
    spec.latency.cross_az = l.cross_az.unwrap_or(spec.latency.cross_az);
    spec.latency.upstream = l.upstream.unwrap_or(spec.latency.upstream);
    let r = raw.race.unwrap_or_default();
    spec.race.window = r.window.unwrap_or(spec.race.window);
    spec.race.p_cpu_split = r.p_cpu_split.unwrap_or(spec.race.p_cpu_split);
    spec.race.p_reply_tuple_taken = r.p_reply_tuple_taken.unwrap_or(spec.race.p_reply_tuple_taken);
    spec.race.p_nfqueue = r.p_nfqueue.unwrap_or(spec.race.p_nfqueue);

    let defaults = raw.pod_defaults.unwrap_or_default();
    if defaults.count.is_some() {
        return Err(err_at(&["pod_defaults", "count"], "pod_defaults applies to every group; give `count` in each group".into()));
    }
    for (i, p) in raw.pods.into_iter().enumerate() {
        let idx = i.to_string();
        let (p, taken) = p.or(&defaults);
        // A bad value from pod_defaults is reported there.
        let at = |key: &str, msg: String| {
            if taken.contains(&key) { err_at(&["pod_defaults", key], msg) } else { err_at(&["pods", &idx, key], msg) }
        };
        let library = match p.library.as_deref() {
            None => Library::Glibc(crate::client::glibc::Version::CURRENT),
            Some(l) => l.parse().map_err(|e| at("library", e))?,
        };
        let count = p.count.ok_or_else(|| err_at(&["pods", &idx], "a pod group needs `count`".into()))?;
        let namespace = p.namespace.unwrap_or_else(|| "default".into());
        let rate = p.rate.unwrap_or(1.0);
        if !(rate.is_finite() && rate >= 0.0) {
            return Err(at("rate", format!("rate {rate}: expected lookups per second per pod, 0 or more")));
        }
        let names: Vec<(String, u32)> = p.names.map(|m| m.into_iter().collect()).unwrap_or_default();
        if rate > 0.0 && names.is_empty() {
            return Err(err_at(&["pods", &idx], "pods that look names up need `names` (name: weight)".into()));
        }
        let pod_dns_set = p.dns_policy.is_some() || p.dns_config.is_some();
        let resolv_conf = match (p.resolv_conf, p.resolv_conf_file) {
            (Some(_), Some(_)) => return Err(at("resolv_conf_file", "give resolv.conf inline or as a file, not both".into())),
            (Some(_), None) | (None, Some(_)) if pod_dns_set => {
                return Err(at(
                    "dns_policy",
                    "give resolv_conf (the file itself) or dns_policy/dns_config (the pod spec), not both".into(),
                ));
            }
            (Some(t), None) => Some(t),
            (None, Some(f)) if taken.contains(&"resolv_conf_file") => Some(read(&["pod_defaults", "resolv_conf_file"], &f)?),
            (None, Some(f)) => Some(read(&["pods", &idx, "resolv_conf_file"], &f)?),
            (None, None) => pod_dns(&spec, &namespace, p.dns_policy.as_deref(), p.dns_config).map_err(|m| at("dns_policy", m))?,
        };
        let hints = match p.hints {
            None => Hints::NULL,
            Some(h) => Hints {
                family: match h.family.as_deref().unwrap_or("unspec") {
                    "unspec" => Family::Unspec,
                    "inet" => Family::Inet,
                    "inet6" => Family::Inet6,
                    f => return Err(at("hints", format!("family `{f}`: expected unspec, inet or inet6"))),
                },
                addrconfig: h.addrconfig.unwrap_or(false),
                v4mapped: h.v4mapped.unwrap_or(false),
                all: h.all.unwrap_or(false),
                canonname: h.canonname.unwrap_or(false),
            },
        };
        spec.pods.push(PodGroup {
            count,
            namespace,
            library,
            resolv_conf,
            hints,
            rate,
            names,
            extra_addrs: p.extra_addrs.unwrap_or_default(),
            client_cache: p.client_cache.map(|c| c.0),
            threadpool: p.threadpool,
            app_rate: p.app_rate.unwrap_or(0.0),
        });
    }

    let replicas_max = spec.autoscaler.map_or(spec.coredns_replicas, |_| usize::MAX);
    for (i, FaultAt(at, f)) in raw.faults.iter().enumerate() {
        let idx = i.to_string();
        let (key, n, limit, what) = match f {
            Fault::KillReplica(r) => ("kill_replica", *r, replicas_max, "coredns.replicas"),
            Fault::UpstreamBlackhole(a) => ("upstream_blackhole", *a, spec.azs, "cluster.azs"),
            Fault::UpstreamRepair(a) => ("upstream_repair", *a, spec.azs, "cluster.azs"),
            Fault::NodeLocalDown(n) => ("node_local_down", *n, spec.nodes, "cluster.nodes"),
            Fault::NodeLocalUp(n) => ("node_local_up", *n, spec.nodes, "cluster.nodes"),
            Fault::AzLoss { az, .. } => ("az_loss", *az, spec.azs, "cluster.azs"),
            Fault::UpstreamSlow { az, .. } => ("upstream_slow", *az, spec.azs, "cluster.azs"),
            Fault::NodeDown(n) => ("node_down", *n, spec.nodes, "cluster.nodes"),
            Fault::AzBurstLoss { az, .. } => ("az_burst_loss", *az, spec.azs, "cluster.azs"),
            Fault::UpstreamLoss { az, .. } => ("upstream_loss", *az, spec.azs, "cluster.azs"),
            Fault::LinkLoss { a, b, .. } => ("link_loss", *a.max(b), spec.nodes, "cluster.nodes"),
            _ => ("", 0, 1, ""),
        };
        if n >= limit {
            return Err(err_at(&["faults", &idx, key], format!("{key} {n}: out of range, {what} is {limit} (counted from 0)")));
        }
        if matches!(f, Fault::NodeLocalDown(_) | Fault::NodeLocalUp(_)) && spec.node_local.is_none() {
            return Err(err_at(&["faults", &idx, key], format!("{key} needs `node_local` deployed")));
        }
        if matches!(f, Fault::RollNodeLocal { .. }) && spec.node_local.is_none() {
            return Err(err_at(&["faults", &idx, "roll_node_local"], "roll_node_local needs `node_local` deployed".to_string()));
        }
        if *at > spec.duration {
            return Err(err_at(
                &["faults", &idx, "at"],
                format!("at {}: after the end of the run (duration {})", fmt_d(*at), fmt_d(spec.duration)),
            ));
        }
        spec.faults.push((*at, f.clone()));
    }
    Ok(Scenario { name: raw.name, description: raw.description, spec, expect: raw.expect.unwrap_or_default() })
}

/// A resolv.conf option: name and value (`ndots` `5`).
type DnsOption = (String, Option<String>);

/// The resolv.conf the kubelet writes for a pod's `dnsPolicy` and `dnsConfig` (sources.md#kubelet-resolv-conf;
/// kubelet `pkg/kubelet/network/dns`: dnsConfig nameservers and searches are appended without
/// duplicates, its options replace those of the same name). None: the engine's ClusterFirst default.
pub(super) fn pod_dns(
    spec: &ClusterSpec,
    namespace: &str,
    policy: Option<&str>,
    cfg: Option<RawDnsConfig>,
) -> Result<Option<String>, String> {
    let (mut servers, mut search, mut options): (Vec<IpAddr>, Vec<String>, Vec<DnsOption>) = match policy {
        None | Some("ClusterFirst") => {
            if cfg.is_none() {
                return Ok(None);
            }
            let ns = if spec.node_local.as_ref().is_some_and(|n| !n.bind_kube_dns) {
                crate::engine::NODE_LOCAL_IP
            } else {
                crate::engine::KUBE_DNS.ip()
            };
            let node_search: Vec<&str> = spec.node_search.iter().map(String::as_str).collect();
            let rc = ResolvConf::kubelet_cluster_first(ns, namespace, &spec.cluster_domain, &node_search);
            let parsed = ResolvConf::parse(&rc);
            (vec![ns], parsed.search.clone(), vec![("ndots".into(), Some("5".into()))])
        }
        Some("None") => {
            if cfg.as_ref().is_none_or(|c| c.nameservers.is_empty()) {
                return Err("dns_policy None needs dns_config with at least one nameserver (as the apiserver requires)".into());
            }
            (Vec::new(), Vec::new(), Vec::new())
        }
        Some("Default") => {
            return Err("dns_policy Default (the node's resolv.conf) is not modelled; write the node's file as resolv_conf".into());
        }
        Some(p) => return Err(format!("dns_policy `{p}`: expected ClusterFirst or None")),
    };
    let cfg = cfg.unwrap_or_default();
    for s in cfg.nameservers {
        if !servers.contains(&s) {
            servers.push(s);
        }
    }
    for s in cfg.searches {
        if !search.contains(&s) {
            search.push(s);
        }
    }
    for o in cfg.options {
        match options.iter_mut().find(|(n, _)| *n == o.name) {
            Some(slot) => slot.1 = o.value,
            None => options.push((o.name, o.value)),
        }
    }
    let mut text = String::new();
    if !search.is_empty() {
        text.push_str(&format!("search {}\n", search.join(" ")));
    }
    for s in servers.iter().take(3) {
        text.push_str(&format!("nameserver {s}\n"));
    }
    if !options.is_empty() {
        let opts: Vec<String> = options.into_iter().map(|(n, v)| v.map_or(n.clone(), |v| format!("{n}:{v}"))).collect();
        text.push_str(&format!("options {}\n", opts.join(" ")));
    }
    Ok(Some(text))
}

/// Parses a cluster DNS Corefile as the simulator will (with the files of a node: `/etc/resolv.conf`
/// names the AZ's resolver) for the server that runs it (a CoreDNS release refuses what it lacked).
pub(super) fn check_corefile(text: &str, name: &str, server: &crate::spec::ServerProfile) -> Result<(), String> {
    let cf = resolver::corefile::parse_str(text, name, None, &|_| None).map_err(|e| e.to_string())?;
    let rc = crate::engine::node_resolv_conf(0);
    let mut cfg =
        resolver::Config::from_corefile_in(&cf, &resolver::config::Files::Only(&[("/etc/resolv.conf", &rc)])).map_err(|e| e.to_string())?;
    crate::engine::configure(server, &cf, &mut cfg)
}

/// The search domain AWS's DHCP options give instances using the Amazon-provided DNS in a region:
/// `ec2.internal` in us-east-1, `<region>.compute.internal` in any other (sources.md#aws-search-domain).
pub fn aws_search_domain(region: &str) -> Result<String, String> {
    let ok = region.split('-').count() >= 3
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && region.ends_with(|c: char| c.is_ascii_digit());
    if !ok {
        return Err(format!(
            "region `{region}`: expected an AWS region such as us-east-1 or eu-west-2 (for other clouds give `node_search`)"
        ));
    }
    Ok(if region == "us-east-1" { "ec2.internal".into() } else { format!("{region}.compute.internal") })
}
