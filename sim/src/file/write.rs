//! Writing a scenario back as a file, leaving out what equals the defaults (the incident files are
//! generated with it).

use std::time::Duration;

use serde::Serialize;

use crate::client::{Family, Hints};
use crate::spec::{Autoscaler, ClusterSpec, CoreDnsMemory, Library, MemoryModel, NodeLocal, ProxyMode};

use super::raw::{
    CleanupName, ClientCacheName, FaultAt, KernelName, KubeProxyVersionName, Mode, RawAutoscaler, RawCluster, RawCoreDns, RawCoreDnsMemory,
    RawEni, RawFile, RawHints, RawIpvs, RawKubeProxy, RawLatency, RawLiveness, RawMemory, RawNodeLocal, RawPods, RawRace, RawUpstream,
};
use super::{Expect, FORMAT_VERSION, Scenario};

pub(super) fn fmt_d(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

pub(super) fn differs<T: PartialEq>(v: T, d: T) -> Option<T> {
    (v != d).then_some(v)
}

/// A section that says something: None when every key in it is unset.
pub(super) fn nonempty<T: Serialize>(section: T) -> Option<T> {
    serde_yaml_ng::to_value(&section).is_ok_and(|v| v.as_mapping().is_some_and(|m| !m.is_empty())).then_some(section)
}

pub(super) fn unbuild(sc: &Scenario) -> RawFile {
    let s = &sc.spec;
    let mut d = ClusterSpec::smoke(1);
    d.pods.clear();
    let cluster = RawCluster {
        azs: differs(s.azs, d.azs),
        nodes: differs(s.nodes, d.nodes),
        cpus_per_node: differs(s.cpus_per_node, d.cpus_per_node),
        kernel: if s.node_kernels.is_empty() { differs(s.kernel, d.kernel).map(KernelName) } else { None },
        kernels: (!s.node_kernels.is_empty()).then(|| {
            let mut m: indexmap::IndexMap<String, usize> = indexmap::IndexMap::new();
            for k in &s.node_kernels {
                *m.entry(format!("{}.{}", k.major, k.minor)).or_default() += 1;
            }
            m
        }),
        domain: differs(s.cluster_domain.clone(), d.cluster_domain.clone()),
        region: None,
        node_search: differs(s.node_search.clone(), d.node_search.clone()),
        extra_pods: differs(s.extra_pods, 0),
        drop_fragments: differs(s.drop_fragments, false),
        nfqueue: differs(s.nfqueue, false),
        state_file: None,
        state: s.cluster_state.clone(),
        node_monitor_grace: differs(s.node_monitor_grace, d.node_monitor_grace),
    };
    let ipvs = match s.proxy {
        ProxyMode::Iptables => None,
        ProxyMode::Ipvs(c) => {
            let dk = netmodel::ipvs::Config::kube_proxy(c.kernel);
            Some(RawIpvs {
                udp_timeout: differs(c.udp_timeout, dk.udp_timeout),
                tcp_timeout: differs(c.tcp_timeout, dk.tcp_timeout),
                expire_nodest_conn: differs(c.expire_nodest_conn, dk.expire_nodest_conn),
                conn_reuse_mode: differs(c.conn_reuse_mode, dk.conn_reuse_mode),
                graceful: differs(c.graceful, dk.graceful).map(|g| format!("{g:?}").to_lowercase()),
                kernel: differs(c.kernel, s.kernel).map(KernelName),
            })
        }
    };
    let kube_proxy = RawKubeProxy {
        mode: match s.proxy {
            ProxyMode::Iptables => None,
            ProxyMode::Ipvs(_) => Some(Mode::Ipvs),
        },
        sync_delay: differs(s.kube_proxy.sync_delay, d.kube_proxy.sync_delay),
        conntrack_cleanup: differs(s.kube_proxy.cleanup, d.kube_proxy.cleanup).map(CleanupName),
        version: differs(s.kube_proxy.version, d.kube_proxy.version).map(KubeProxyVersionName),
        conntrack_max_per_core: differs(s.conntrack_max_per_core, d.conntrack_max_per_core),
        conntrack_min: differs(s.conntrack_min, d.conntrack_min),
        ipvs,
    };
    let memory = s.replica_memory.map(|m| {
        let (limit_mib, limit_bytes) = if m.limit % (1 << 20) == 0 { (Some(m.limit >> 20), None) } else { (None, Some(m.limit)) };
        let (model, coredns) = match m.model {
            MemoryModel::Ndots => (None, None),
            MemoryModel::CoreDns(k) => {
                let dk = CoreDnsMemory::default();
                let raw = RawCoreDnsMemory {
                    base: differs(k.base, dk.base),
                    per_watched_pod: differs(k.per_watched_pod, dk.per_watched_pod),
                    per_object: differs(k.per_object, dk.per_object),
                    per_inflight: differs(k.per_inflight, dk.per_inflight),
                    per_cache_entry: differs(k.per_cache_entry, dk.per_cache_entry),
                };
                (Some("coredns".to_string()), (k != dk).then_some(raw))
            }
        };
        RawMemory { limit_mib, limit_bytes, model, relist: differs(m.relist, Duration::from_secs(10)), coredns }
    });
    let autoscaler = s.autoscaler.map(|a| {
        let da = Autoscaler::addon(s.nodes);
        RawAutoscaler {
            cores_per_replica: differs(a.cores_per_replica, da.cores_per_replica),
            nodes_per_replica: differs(a.nodes_per_replica, da.nodes_per_replica),
            prevent_single_point_failure: differs(a.prevent_single_point_failure, da.prevent_single_point_failure),
            nodes: differs(a.nodes, da.nodes),
            poll: differs(a.poll, da.poll),
        }
    });
    let coredns = RawCoreDns {
        replicas: differs(s.coredns_replicas, d.coredns_replicas),
        server: differs(s.server.to_string(), d.server.to_string()),
        corefile: differs(s.corefile.clone(), d.corefile.clone()),
        corefile_file: None,
        memory,
        autoscaler,
        startup: differs(s.replica_startup, d.replica_startup),
        liveness: s.liveness.map(|l| {
            let k = crate::spec::Liveness::KUBE_DNS;
            RawLiveness { period: differs(l.period, k.period), failure_threshold: differs(l.failure_threshold, k.failure_threshold) }
        }),
    };
    let node_local = s.node_local.as_ref().map(|n| {
        let dn = NodeLocal::template();
        RawNodeLocal {
            corefile: differs(n.corefile.clone(), dn.corefile),
            corefile_file: None,
            bind_kube_dns: differs(n.bind_kube_dns, dn.bind_kube_dns),
            server: differs(n.server.clone(), dn.server).map(|s| s.to_string()),
        }
    });
    let upstream = RawUpstream {
        zone: differs(s.upstream_zone.clone(), d.upstream_zone.clone()),
        zone_file: None,
        eni_limit: (s.eni_limit != d.eni_limit).then(|| s.eni_limit.map(|e| RawEni { rate: e.rate_per_sec, burst: e.burst })),
    };
    let latency = RawLatency {
        same_node: differs(s.latency.same_node, d.latency.same_node),
        same_az: differs(s.latency.same_az, d.latency.same_az),
        cross_az: differs(s.latency.cross_az, d.latency.cross_az),
        upstream: differs(s.latency.upstream, d.latency.upstream),
    };
    let race = RawRace {
        window: differs(s.race.window, d.race.window),
        p_cpu_split: differs(s.race.p_cpu_split, d.race.p_cpu_split),
        p_reply_tuple_taken: differs(s.race.p_reply_tuple_taken, d.race.p_reply_tuple_taken),
        p_nfqueue: differs(s.race.p_nfqueue, d.race.p_nfqueue),
    };
    let pods = s
        .pods
        .iter()
        .map(|p| {
            let h = p.hints;
            RawPods {
                count: Some(p.count),
                namespace: differs(p.namespace.clone(), "default".into()),
                library: differs(p.library, Library::Glibc(crate::client::glibc::Version::CURRENT)).map(|l| l.to_string()),
                resolv_conf: p.resolv_conf.clone(),
                resolv_conf_file: None,
                dns_policy: None,
                dns_config: None,
                hints: (h != Hints::NULL).then(|| RawHints {
                    family: match h.family {
                        Family::Unspec => None,
                        Family::Inet => Some("inet".into()),
                        Family::Inet6 => Some("inet6".into()),
                    },
                    addrconfig: h.addrconfig.then_some(true),
                    v4mapped: h.v4mapped.then_some(true),
                    all: h.all.then_some(true),
                    canonname: h.canonname.then_some(true),
                }),
                rate: differs(p.rate, 1.0),
                names: (!p.names.is_empty()).then(|| p.names.iter().cloned().collect()),
                extra_addrs: (!p.extra_addrs.is_empty()).then(|| p.extra_addrs.clone()),
                client_cache: p.client_cache.map(ClientCacheName),
                threadpool: p.threadpool,
                app_rate: differs(p.app_rate, 0.0),
            }
        })
        .collect();
    RawFile {
        version: Some(FORMAT_VERSION),
        name: sc.name.clone(),
        description: sc.description.clone(),
        seed: Some(s.seed),
        duration: Some(s.duration),
        cluster: nonempty(cluster),
        kube_proxy: nonempty(kube_proxy),
        coredns: nonempty(coredns),
        node_local,
        upstream: nonempty(upstream),
        latency: nonempty(latency),
        race: nonempty(race),
        pod_defaults: None,
        pods,
        faults: s.faults.iter().map(|(at, f)| FaultAt(*at, f.clone())).collect(),
        expect: (sc.expect != Expect::default()).then(|| sc.expect.clone()),
        trace_queries: s.trace_queries.then_some(true),
    }
}
