//! The file's schema: serde structs with every key optional and unknown keys refused, and the
//! value types whose `TryFrom` conversions give the errors serde_yaml_ng places at the value.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use netmodel::Kernel;
use netmodel::dnat::{Cleanup, KubeProxyVersion};
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use crate::spec::{ClientCache, Fault};

use super::Expect;

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawFile {
    pub(super) version: Option<u32>,
    pub(super) name: Option<String>,
    pub(super) description: Option<String>,
    pub(super) seed: Option<u64>,
    #[serde(with = "humantime_serde::option")]
    pub(super) duration: Option<Duration>,
    pub(super) cluster: Option<RawCluster>,
    pub(super) kube_proxy: Option<RawKubeProxy>,
    pub(super) coredns: Option<RawCoreDns>,
    pub(super) node_local: Option<RawNodeLocal>,
    pub(super) upstream: Option<RawUpstream>,
    pub(super) latency: Option<RawLatency>,
    pub(super) race: Option<RawRace>,
    /// What every pod group has unless it says otherwise (a cluster-wide dnsConfig, library, rate).
    pub(super) pod_defaults: Option<RawPods>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) pods: Vec<RawPods>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) faults: Vec<FaultAt>,
    pub(super) expect: Option<Expect>,
    /// Record every wire query of every lookup (the JSON report lists them).
    pub(super) trace_queries: Option<bool>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCluster {
    pub(super) azs: Option<usize>,
    pub(super) nodes: Option<usize>,
    pub(super) cpus_per_node: Option<usize>,
    pub(super) kernel: Option<KernelName>,
    /// How many nodes run each kernel (`"5.10": 6`), in node order: a cluster mid-upgrade.
    pub(super) kernels: Option<IndexMap<String, usize>>,
    pub(super) domain: Option<String>,
    /// The AWS region: the nodes' search domain is `ec2.internal` in us-east-1, else
    /// `<region>.compute.internal`.
    pub(super) region: Option<String>,
    /// The nodes' own search domains (what the kubelet appends to a ClusterFirst pod's list).
    pub(super) node_search: Option<Vec<String>>,
    /// Pods that exist only in the cluster state (the rest of a large cluster).
    pub(super) extra_pods: Option<usize>,
    pub(super) drop_fragments: Option<bool>,
    /// A network-policy agent NFQUEUEs new flows, kernel without the 2024 fix (S20).
    pub(super) nfqueue: Option<bool>,
    /// A `kubectl get namespaces,services,endpointslices,pods -A -o yaml|json` dump (path).
    pub(super) state_file: Option<PathBuf>,
    /// The same dump, inline.
    pub(super) state: Option<String>,
    /// How long until a dead node's pods leave the endpoints (40s).
    #[serde(with = "humantime_serde::option")]
    pub(super) node_monitor_grace: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Mode {
    Iptables,
    Ipvs,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawKubeProxy {
    pub(super) mode: Option<Mode>,
    #[serde(with = "humantime_serde::option")]
    pub(super) sync_delay: Option<Duration>,
    /// `on-sync`, `never`, or a delay such as `30s`.
    pub(super) conntrack_cleanup: Option<CleanupName>,
    /// The release, `"1.32"`: how conntrack entries are cleaned (events up to 1.31, the reconciler since).
    pub(super) version: Option<KubeProxyVersionName>,
    pub(super) conntrack_max_per_core: Option<usize>,
    pub(super) conntrack_min: Option<usize>,
    pub(super) ipvs: Option<RawIpvs>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawIpvs {
    #[serde(with = "humantime_serde::option")]
    pub(super) udp_timeout: Option<Duration>,
    #[serde(with = "humantime_serde::option")]
    pub(super) tcp_timeout: Option<Duration>,
    pub(super) expire_nodest_conn: Option<bool>,
    pub(super) conn_reuse_mode: Option<u8>,
    /// kube-proxy's graceful termination: v1 (2018), v2 (#76664), v3 (current).
    pub(super) graceful: Option<String>,
    /// The IPVS kernel, when it differs from the nodes' (tests of the 5.9 fix).
    pub(super) kernel: Option<KernelName>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCoreDns {
    pub(super) replicas: Option<usize>,
    /// `ndots` (the default), `coredns`, `coredns-1.6.7` or `kube-dns`: the server the replicas run.
    pub(super) server: Option<String>,
    pub(super) corefile: Option<String>,
    pub(super) corefile_file: Option<PathBuf>,
    pub(super) memory: Option<RawMemory>,
    pub(super) autoscaler: Option<RawAutoscaler>,
    /// kube-dns's sidecar liveness coupling: `{}` for its defaults.
    pub(super) liveness: Option<RawLiveness>,
    /// A new replica's creation to ready.
    #[serde(with = "humantime_serde::option")]
    pub(super) startup: Option<Duration>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLiveness {
    #[serde(with = "humantime_serde::option")]
    pub(super) period: Option<Duration>,
    pub(super) failure_threshold: Option<u32>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawMemory {
    pub(super) limit_mib: Option<u64>,
    pub(super) limit_bytes: Option<u64>,
    /// `ndots` (the server's own accounting) or `coredns` (CoreDNS's, from simulated quantities).
    pub(super) model: Option<String>,
    #[serde(with = "humantime_serde::option")]
    pub(super) relist: Option<Duration>,
    pub(super) coredns: Option<RawCoreDnsMemory>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCoreDnsMemory {
    pub(super) base: Option<u64>,
    pub(super) per_watched_pod: Option<u64>,
    pub(super) per_object: Option<u64>,
    pub(super) per_inflight: Option<u64>,
    pub(super) per_cache_entry: Option<u64>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAutoscaler {
    pub(super) cores_per_replica: Option<usize>,
    pub(super) nodes_per_replica: Option<usize>,
    pub(super) prevent_single_point_failure: Option<bool>,
    pub(super) nodes: Option<usize>,
    #[serde(with = "humantime_serde::option")]
    pub(super) poll: Option<Duration>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawNodeLocal {
    pub(super) corefile: Option<String>,
    pub(super) corefile_file: Option<PathBuf>,
    pub(super) bind_kube_dns: Option<bool>,
    pub(super) server: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawUpstream {
    pub(super) zone: Option<String>,
    pub(super) zone_file: Option<PathBuf>,
    /// Missing: AWS's 1024 packets/s; `null`: no limit.
    #[serde(with = "serde_with::rust::double_option", skip_serializing_if = "Option::is_none")]
    pub(super) eni_limit: Option<Option<RawEni>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEni {
    pub(super) rate: f64,
    pub(super) burst: f64,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLatency {
    #[serde(with = "humantime_serde::option")]
    pub(super) same_node: Option<Duration>,
    #[serde(with = "humantime_serde::option")]
    pub(super) same_az: Option<Duration>,
    #[serde(with = "humantime_serde::option")]
    pub(super) cross_az: Option<Duration>,
    #[serde(with = "humantime_serde::option")]
    pub(super) upstream: Option<Duration>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRace {
    #[serde(with = "humantime_serde::option")]
    pub(super) window: Option<Duration>,
    pub(super) p_cpu_split: Option<f64>,
    pub(super) p_reply_tuple_taken: Option<f64>,
    pub(super) p_nfqueue: Option<f64>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawPods {
    pub(super) count: Option<usize>,
    pub(super) namespace: Option<String>,
    /// A name `Library` parses; checked in `build`, where the error can point at its line.
    pub(super) library: Option<String>,
    pub(super) resolv_conf: Option<String>,
    pub(super) resolv_conf_file: Option<PathBuf>,
    /// `ClusterFirst` (the default) or `None` (dns_config only), as in a pod spec.
    pub(super) dns_policy: Option<String>,
    pub(super) dns_config: Option<RawDnsConfig>,
    pub(super) hints: Option<RawHints>,
    pub(super) rate: Option<f64>,
    pub(super) names: Option<IndexMap<String, u32>>,
    pub(super) extra_addrs: Option<Vec<IpAddr>>,
    pub(super) client_cache: Option<ClientCacheName>,
    pub(super) threadpool: Option<usize>,
    pub(super) app_rate: Option<f64>,
}

impl RawPods {
    /// This group with `d`'s keys where it has none, and the keys taken from `d`. A group that
    /// writes its resolv.conf takes no dnsPolicy/dnsConfig from the defaults, and one with a
    /// dnsPolicy/dnsConfig no resolv.conf.
    pub(super) fn or(mut self, d: &RawPods) -> (RawPods, Vec<&'static str>) {
        let mut taken = Vec::new();
        let own_file = self.resolv_conf.is_some() || self.resolv_conf_file.is_some();
        let own_spec = self.dns_policy.is_some() || self.dns_config.is_some();
        macro_rules! take {
            ($($field:ident),* $(,)?) => {$(
                if self.$field.is_none() && d.$field.is_some() {
                    self.$field = d.$field.clone();
                    taken.push(stringify!($field));
                }
            )*};
        }
        take!(namespace, library, hints, rate, names, extra_addrs, client_cache, threadpool, app_rate);
        if !own_file {
            take!(dns_policy, dns_config);
        }
        if !own_spec {
            take!(resolv_conf, resolv_conf_file);
        }
        (self, taken)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDnsConfig {
    pub(super) nameservers: Vec<IpAddr>,
    pub(super) searches: Vec<String>,
    pub(super) options: Vec<RawDnsOption>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDnsOption {
    pub(super) name: String,
    pub(super) value: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawHints {
    /// `unspec`, `inet` or `inet6`.
    pub(super) family: Option<String>,
    pub(super) addrconfig: Option<bool>,
    pub(super) v4mapped: Option<bool>,
    pub(super) all: Option<bool>,
    pub(super) canonname: Option<bool>,
}

/// A kernel version `MAJOR.MINOR` (`"5.15"`; quote it, or YAML reads 5.10 as the number 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "serde_yaml_ng::Value", into = "String")]
pub(super) struct KernelName(pub(super) Kernel);

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub(super) struct CleanupName(pub(super) Cleanup);

/// A kube-proxy release `"1.32"` (quoted, or YAML reads 1.30 as the number 1.3).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "serde_yaml_ng::Value", into = "String")]
pub(super) struct KubeProxyVersionName(pub(super) KubeProxyVersion);

/// `java`, `java-security-manager`, or `{positive: 30s | forever, negative: 10s}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "serde_yaml_ng::Value", into = "serde_yaml_ng::Value")]
pub(super) struct ClientCacheName(pub(super) ClientCache);

/// A fault at a point of simulated time: `at` and exactly one of the fault keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawFault", into = "RawFault")]
pub(super) struct FaultAt(pub(super) Duration, pub(super) Fault);

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawFault {
    #[serde(with = "humantime_serde::option")]
    pub(super) at: Option<Duration>,
    pub(super) kill_replica: Option<usize>,
    pub(super) upstream_blackhole: Option<usize>,
    pub(super) upstream_repair: Option<usize>,
    pub(super) node_local_down: Option<usize>,
    pub(super) node_local_up: Option<usize>,
    pub(super) apiserver_restart: Option<bool>,
    pub(super) az_loss: Option<RawAzLoss>,
    pub(super) service_ip: Option<RawServiceIp>,
    pub(super) cluster_nodes: Option<usize>,
    pub(super) upstream_slow: Option<RawSlow>,
    pub(super) node_down: Option<usize>,
    pub(super) az_burst_loss: Option<RawBurst>,
    pub(super) roll_replicas: Option<bool>,
    pub(super) scale_replicas: Option<usize>,
    pub(super) kube_proxy_restart: Option<bool>,
    pub(super) upstream_loss: Option<RawAzLoss>,
    pub(super) link_loss: Option<RawLinkLoss>,
    #[serde(with = "humantime_serde::option")]
    pub(super) roll_node_local: Option<Duration>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLinkLoss {
    pub(super) a: usize,
    pub(super) b: usize,
    pub(super) loss: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBurst {
    pub(super) az: usize,
    pub(super) loss: f64,
    #[serde(with = "humantime_serde")]
    pub(super) burst: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSlow {
    pub(super) az: usize,
    #[serde(with = "humantime_serde")]
    pub(super) delay: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAzLoss {
    pub(super) az: usize,
    pub(super) loss: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServiceIp {
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) ip: IpAddr,
}

impl TryFrom<serde_yaml_ng::Value> for KernelName {
    type Error = String;
    fn try_from(v: serde_yaml_ng::Value) -> Result<KernelName, String> {
        let s = match &v {
            serde_yaml_ng::Value::String(s) => s.clone(),
            serde_yaml_ng::Value::Number(n) => {
                return Err(format!(
                    "kernel {n} is a number; write it quoted, as \"MAJOR.MINOR\" (e.g. \"5.10\"), so YAML keeps the digits"
                ));
            }
            _ => return Err("expected a kernel version \"MAJOR.MINOR\", e.g. \"5.15\"".into()),
        };
        let bad = || format!("kernel `{s}`: expected \"MAJOR.MINOR\", e.g. \"5.15\"");
        let (a, b) = s.split_once('.').ok_or_else(bad)?;
        Ok(KernelName(Kernel::new(a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?)))
    }
}

impl TryFrom<serde_yaml_ng::Value> for KubeProxyVersionName {
    type Error = String;
    fn try_from(v: serde_yaml_ng::Value) -> Result<KubeProxyVersionName, String> {
        match &v {
            serde_yaml_ng::Value::String(s) => KubeProxyVersion::parse(s).map(KubeProxyVersionName),
            serde_yaml_ng::Value::Number(n) => Err(format!(
                "kube-proxy version {n} is a number; write it quoted, as \"MAJOR.MINOR\" (e.g. \"1.30\"), so YAML keeps the digits"
            )),
            _ => Err("expected a kube-proxy version \"MAJOR.MINOR\", e.g. \"1.32\"".into()),
        }
    }
}

impl From<KubeProxyVersionName> for String {
    fn from(v: KubeProxyVersionName) -> String {
        v.0.to_string()
    }
}

impl TryFrom<String> for CleanupName {
    type Error = String;
    fn try_from(s: String) -> Result<CleanupName, String> {
        Ok(CleanupName(match s.as_str() {
            "on-sync" => Cleanup::OnSync,
            "never" => Cleanup::Never,
            d => Cleanup::Late(
                humantime::parse_duration(d)
                    .map_err(|_| format!("conntrack_cleanup `{s}`: expected `on-sync`, `never`, or a delay such as `30s`"))?,
            ),
        }))
    }
}

impl TryFrom<serde_yaml_ng::Value> for ClientCacheName {
    type Error = String;
    fn try_from(v: serde_yaml_ng::Value) -> Result<ClientCacheName, String> {
        let expected = "expected `java`, `java-security-manager`, or {positive: DURATION|forever, negative: DURATION}";
        match &v {
            serde_yaml_ng::Value::String(s) if s == "java" => Ok(ClientCacheName(ClientCache::JAVA)),
            serde_yaml_ng::Value::String(s) if s == "java-security-manager" => Ok(ClientCacheName(ClientCache::JAVA_SECURITY_MANAGER)),
            serde_yaml_ng::Value::Mapping(m) => {
                let dur = |k: &str| -> Result<Option<Duration>, String> {
                    match m.get(k).and_then(|v| v.as_str()) {
                        Some("forever") => Ok(None),
                        Some(d) => humantime::parse_duration(d).map(Some).map_err(|e| format!("client_cache.{k}: {e}")),
                        None => Err(format!("client_cache.{k} missing: {expected}")),
                    }
                };
                if let Some(k) = m.keys().find(|k| !matches!(k.as_str(), Some("positive" | "negative"))) {
                    return Err(format!("client_cache: unknown key {k:?}; {expected}"));
                }
                let negative = dur("negative")?.ok_or("client_cache.negative cannot be forever")?;
                Ok(ClientCacheName(ClientCache { positive: dur("positive")?, negative }))
            }
            _ => Err(format!("client_cache: {expected}")),
        }
    }
}

pub(super) const FAULT_KEYS: &str = "kill_replica, upstream_blackhole, upstream_repair, upstream_slow, upstream_loss, node_local_down, node_local_up, roll_node_local, node_down, roll_replicas, scale_replicas, kube_proxy_restart, apiserver_restart, az_loss, az_burst_loss, link_loss, service_ip, cluster_nodes";

impl TryFrom<RawFault> for FaultAt {
    type Error = String;
    fn try_from(r: RawFault) -> Result<FaultAt, String> {
        let at = r.at.ok_or("a fault needs `at`, the simulated time it happens (e.g. `at: 10s`)")?;
        let mut found: Vec<Fault> = Vec::new();
        found.extend(r.kill_replica.map(Fault::KillReplica));
        found.extend(r.upstream_blackhole.map(Fault::UpstreamBlackhole));
        found.extend(r.upstream_repair.map(Fault::UpstreamRepair));
        found.extend(r.node_local_down.map(Fault::NodeLocalDown));
        found.extend(r.node_local_up.map(Fault::NodeLocalUp));
        match r.roll_replicas {
            Some(true) => found.push(Fault::RollReplicas),
            Some(false) => return Err("roll_replicas: write `roll_replicas: true`, or leave the fault out".into()),
            None => {}
        }
        found.extend(r.scale_replicas.map(Fault::ScaleReplicas));
        match r.kube_proxy_restart {
            Some(true) => found.push(Fault::KubeProxyRestart),
            Some(false) => return Err("kube_proxy_restart: write `kube_proxy_restart: true`, or leave the fault out".into()),
            None => {}
        }
        match r.apiserver_restart {
            Some(true) => found.push(Fault::ApiserverRestart),
            Some(false) => return Err("apiserver_restart: write `apiserver_restart: true`, or leave the fault out".into()),
            None => {}
        }
        if let Some(l) = r.az_loss {
            if !(0.0..=1.0).contains(&l.loss) {
                return Err(format!("az_loss.loss {}: expected a fraction from 0.0 to 1.0", l.loss));
            }
            found.push(Fault::AzLoss { az: l.az, loss: l.loss });
        }
        found.extend(r.service_ip.map(|s| Fault::ServiceIp { namespace: s.namespace, name: s.name, ip: s.ip }));
        found.extend(r.cluster_nodes.map(Fault::ClusterNodes));
        found.extend(r.upstream_slow.map(|s| Fault::UpstreamSlow { az: s.az, delay: s.delay }));
        found.extend(r.node_down.map(Fault::NodeDown));
        if let Some(b) = r.az_burst_loss {
            if !(0.0..1.0).contains(&b.loss) {
                return Err(format!("az_burst_loss.loss {}: expected a fraction from 0.0 up to (not including) 1.0", b.loss));
            }
            found.push(Fault::AzBurstLoss { az: b.az, loss: b.loss, burst: b.burst });
        }
        if let Some(l) = r.upstream_loss {
            if !(0.0..=1.0).contains(&l.loss) {
                return Err(format!("upstream_loss.loss {}: expected a fraction from 0.0 to 1.0", l.loss));
            }
            found.push(Fault::UpstreamLoss { az: l.az, loss: l.loss });
        }
        if let Some(l) = r.link_loss {
            if !(0.0..=1.0).contains(&l.loss) {
                return Err(format!("link_loss.loss {}: expected a fraction from 0.0 to 1.0", l.loss));
            }
            if l.a == l.b {
                return Err(format!("link_loss: a and b are both node {}; a link joins two nodes", l.a));
            }
            found.push(Fault::LinkLoss { a: l.a, b: l.b, loss: l.loss });
        }
        if let Some(gap) = r.roll_node_local {
            if gap.is_zero() {
                return Err("roll_node_local: expected the gap each node's update leaves, e.g. `roll_node_local: 5s`".into());
            }
            found.push(Fault::RollNodeLocal { gap });
        }
        match found.len() {
            1 => Ok(FaultAt(at, found.remove(0))),
            0 => Err(format!("a fault needs one of: {FAULT_KEYS}")),
            _ => Err(format!("a fault has exactly one of: {FAULT_KEYS}; write two faults with the same `at`")),
        }
    }
}

impl From<KernelName> for String {
    fn from(k: KernelName) -> String {
        format!("{}.{}", k.0.major, k.0.minor)
    }
}

impl From<CleanupName> for String {
    fn from(c: CleanupName) -> String {
        match c.0 {
            Cleanup::OnSync => "on-sync".into(),
            Cleanup::Never => "never".into(),
            Cleanup::Late(d) => humantime::format_duration(d).to_string(),
        }
    }
}

impl From<ClientCacheName> for serde_yaml_ng::Value {
    fn from(c: ClientCacheName) -> serde_yaml_ng::Value {
        let c = c.0;
        if c == ClientCache::JAVA {
            return "java".into();
        }
        if c == ClientCache::JAVA_SECURITY_MANAGER {
            return "java-security-manager".into();
        }
        let mut m = serde_yaml_ng::Mapping::new();
        m.insert("positive".into(), c.positive.map_or("forever".to_string(), |d| humantime::format_duration(d).to_string()).into());
        m.insert("negative".into(), humantime::format_duration(c.negative).to_string().into());
        serde_yaml_ng::Value::Mapping(m)
    }
}

impl From<FaultAt> for RawFault {
    fn from(FaultAt(at, f): FaultAt) -> RawFault {
        let mut r = RawFault { at: Some(at), ..RawFault::default() };
        match f {
            Fault::KillReplica(i) => r.kill_replica = Some(i),
            Fault::UpstreamBlackhole(i) => r.upstream_blackhole = Some(i),
            Fault::UpstreamRepair(i) => r.upstream_repair = Some(i),
            Fault::NodeLocalDown(i) => r.node_local_down = Some(i),
            Fault::NodeLocalUp(i) => r.node_local_up = Some(i),
            Fault::ApiserverRestart => r.apiserver_restart = Some(true),
            Fault::AzLoss { az, loss } => r.az_loss = Some(RawAzLoss { az, loss }),
            Fault::ServiceIp { namespace, name, ip } => r.service_ip = Some(RawServiceIp { namespace, name, ip }),
            Fault::ClusterNodes(n) => r.cluster_nodes = Some(n),
            Fault::UpstreamSlow { az, delay } => r.upstream_slow = Some(RawSlow { az, delay }),
            Fault::NodeDown(n) => r.node_down = Some(n),
            Fault::RollReplicas => r.roll_replicas = Some(true),
            Fault::ScaleReplicas(n) => r.scale_replicas = Some(n),
            Fault::KubeProxyRestart => r.kube_proxy_restart = Some(true),
            Fault::AzBurstLoss { az, loss, burst } => r.az_burst_loss = Some(RawBurst { az, loss, burst }),
            Fault::UpstreamLoss { az, loss } => r.upstream_loss = Some(RawAzLoss { az, loss }),
            Fault::LinkLoss { a, b, loss } => r.link_loss = Some(RawLinkLoss { a, b, loss }),
            Fault::RollNodeLocal { gap } => r.roll_node_local = Some(gap),
        }
        r
    }
}
