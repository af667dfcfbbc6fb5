//! Scenario files: the documented, versioned YAML form of a [`ClusterSpec`] and the expectations
//! that make a run fail (README "Scenario files" is the reference; `FORMAT_VERSION` is its version).
//!
//! Every key is optional except `version`; a missing key takes the value of the built-in smoke
//! cluster (`ClusterSpec::smoke`: 3 nodes in 3 AZs, 2 CPUs, kernel 5.15, iptables kube-proxy,
//! kubeadm's Corefile with 2 replicas, AWS's 1024 packets/s per ENI, 10 s). Unknown keys are errors.
//! Errors name the file, the line and column, and what was expected there: serde's own messages for
//! shapes and types, and `TryFrom` conversions for values (library names, kernels, faults), which
//! serde_yaml_ng places at the offending value.
//!
//! API boundary: `load`/`parse` give a [`Scenario`]; `to_yaml` writes one back (used to export the
//! incident registry; `parse(to_yaml(s)) == s` is tested).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use netmodel::Kernel;
use netmodel::dnat::Cleanup;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use crate::client::{Family, Hints, ResolvConf};
use crate::report::Report;
use crate::spec::{
    Autoscaler, ClientCache, ClusterSpec, CoreDnsMemory, Fault, Library, MemoryModel, NodeLocal, PodGroup, ProxyMode, ReplicaMemory,
};

/// The scenario file format's version; files declare it as `version: 1`.
pub const FORMAT_VERSION: u32 = 1;

/// A loaded scenario: the cluster to simulate and what its run must show.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: Option<String>,
    pub description: Option<String>,
    pub spec: ClusterSpec,
    pub expect: Expect,
}

/// A mistake in a scenario file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("{file}:{line}:{column}: {msg}")]
    At { file: String, line: usize, column: usize, msg: String },
    #[error("{file}: {msg}")]
    File { file: String, msg: String },
}

/// Reads and checks a scenario file; `sets` are `key.path=value` overrides (`--set`).
pub fn load(path: &Path, sets: &[String]) -> Result<Scenario, FileError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| FileError::File { file: file.clone(), msg: e.to_string() })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, &file, base, sets)
}

/// Parses scenario text; relative paths inside resolve against `base`.
pub fn parse(text: &str, file: &str, base: &Path, sets: &[String]) -> Result<Scenario, FileError> {
    let raw: RawFile = if sets.is_empty() {
        serde_yaml_ng::from_str(text).map_err(|e| yaml_error(file, &e))?
    } else {
        let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| yaml_error(file, &e))?;
        for s in sets {
            apply_set(&mut doc, s).map_err(|msg| FileError::File { file: file.to_string(), msg: format!("--set {s}: {msg}") })?;
        }
        serde_yaml_ng::from_value(doc).map_err(|e| FileError::File {
            file: file.to_string(),
            msg: format!("{} (after --set {})", strip_location(&e.to_string()), sets.join(" --set ")),
        })?
    };
    build(raw, file, text, base)
}

/// Writes a scenario as YAML: only what differs from the defaults, with `header` as a comment.
pub fn to_yaml(s: &Scenario, header: &str) -> String {
    let raw = unbuild(s);
    let body = serde_yaml_ng::to_string(&raw).unwrap_or_else(|e| format!("# cannot serialise: {e}\n"));
    let mut out = String::new();
    for line in header.lines() {
        out.push_str(if line.is_empty() { "#" } else { "# " });
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&body);
    out
}

/// The fuzz target's body (`resolver/fuzz`, `scenario_file`): any text is a scenario or an error
/// that names the file; a scenario written back with `to_yaml` reads back the same.
pub fn fuzz(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse(text, "fuzz.yaml", Path::new("/nonexistent"), &[]) {
        Ok(s) => {
            let again = parse(&to_yaml(&s, ""), "again.yaml", Path::new("/nonexistent"), &[]);
            assert!(again.as_ref().is_ok_and(|a| *a == s), "round trip: {again:?}");
        }
        Err(e) => assert!(e.to_string().starts_with("fuzz.yaml"), "{e}"),
    }
}

/// Expectations (SLOs) a run must meet; each unset one is not checked.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Expect {
    /// Share of lookups that returned addresses, 0..=1 (NXDOMAIN, NODATA and errors are not).
    pub success_rate_min: Option<f64>,
    pub p50_ms_max: Option<f64>,
    pub p99_ms_max: Option<f64>,
    /// The slowest lookup.
    pub max_ms_max: Option<f64>,
    /// Packets conntrack dropped: insertion races and a full table.
    pub conntrack_drops_max: Option<u64>,
    /// Packets the cloud dropped over the per-ENI budget (`linklocal_allowance_exceeded`).
    pub eni_drops_max: Option<u64>,
    /// Resolver restarts (OOM kills).
    pub restarts_max: Option<u64>,
    /// Queries on the wire per application lookup.
    pub queries_per_lookup_max: Option<f64>,
    /// Lookups still waiting at the end of the run after 1 s or more (stuck, not yet counted).
    pub unfinished_max: Option<u64>,
}

/// One checked expectation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub measured: f64,
    pub limit: f64,
    pub ok: bool,
}

impl Expect {
    /// Checks the run against every set expectation.
    pub fn check(&self, r: &Report) -> Vec<Check> {
        let mut out = Vec::new();
        let mut max = |name, measured: f64, limit: Option<f64>| {
            if let Some(limit) = limit {
                out.push(Check { name, measured, limit, ok: measured <= limit });
            }
        };
        max("p50_ms_max", r.latency_ms(0.5), self.p50_ms_max);
        max("p99_ms_max", r.latency_ms(0.99), self.p99_ms_max);
        max("max_ms_max", r.latency_ms(1.0), self.max_ms_max);
        max("conntrack_drops_max", (r.net.dropped_race + r.net.dropped_table_full) as f64, self.conntrack_drops_max.map(|v| v as f64));
        max("eni_drops_max", r.net.dropped_eni as f64, self.eni_drops_max.map(|v| v as f64));
        max("restarts_max", r.net.restarts as f64, self.restarts_max.map(|v| v as f64));
        max("unfinished_max", r.unfinished_over(Duration::from_secs(1)) as f64, self.unfinished_max.map(|v| v as f64));
        max("queries_per_lookup_max", r.queries() as f64 / r.lookups.len().max(1) as f64, self.queries_per_lookup_max);
        if let Some(limit) = self.success_rate_min {
            let measured = r.success_rate();
            out.push(Check { name: "success_rate_min", measured, limit, ok: measured >= limit });
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// The raw file: serde's view. Every field optional (a missing one takes the default in `build`).

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFile {
    version: Option<u32>,
    name: Option<String>,
    description: Option<String>,
    seed: Option<u64>,
    #[serde(with = "humantime_serde::option")]
    duration: Option<Duration>,
    cluster: Option<RawCluster>,
    kube_proxy: Option<RawKubeProxy>,
    coredns: Option<RawCoreDns>,
    node_local: Option<RawNodeLocal>,
    upstream: Option<RawUpstream>,
    latency: Option<RawLatency>,
    race: Option<RawRace>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pods: Vec<RawPods>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    faults: Vec<FaultAt>,
    expect: Option<Expect>,
    /// Record every wire query of every lookup (the JSON report lists them).
    trace_queries: Option<bool>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCluster {
    azs: Option<usize>,
    nodes: Option<usize>,
    cpus_per_node: Option<usize>,
    kernel: Option<KernelName>,
    domain: Option<String>,
    /// Pods that exist only in the cluster state (the rest of a large cluster).
    extra_pods: Option<usize>,
    drop_fragments: Option<bool>,
    /// A network-policy agent NFQUEUEs new flows, kernel without the 2024 fix (S20).
    nfqueue: Option<bool>,
    /// A `kubectl get namespaces,services,endpointslices,pods -A -o yaml|json` dump (path).
    state_file: Option<PathBuf>,
    /// The same dump, inline.
    state: Option<String>,
    /// How long until a dead node's pods leave the endpoints (40s).
    #[serde(with = "humantime_serde::option")]
    node_monitor_grace: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Iptables,
    Ipvs,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawKubeProxy {
    mode: Option<Mode>,
    #[serde(with = "humantime_serde::option")]
    sync_delay: Option<Duration>,
    /// `on-sync`, `never`, or a delay such as `30s`.
    conntrack_cleanup: Option<CleanupName>,
    conntrack_max_per_core: Option<usize>,
    conntrack_min: Option<usize>,
    ipvs: Option<RawIpvs>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawIpvs {
    #[serde(with = "humantime_serde::option")]
    udp_timeout: Option<Duration>,
    #[serde(with = "humantime_serde::option")]
    tcp_timeout: Option<Duration>,
    expire_nodest_conn: Option<bool>,
    conn_reuse_mode: Option<u8>,
    /// kube-proxy's graceful termination: v1 (2018), v2 (#76664), v3 (current).
    graceful: Option<String>,
    /// The IPVS kernel, when it differs from the nodes' (tests of the 5.9 fix).
    kernel: Option<KernelName>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCoreDns {
    replicas: Option<usize>,
    corefile: Option<String>,
    corefile_file: Option<PathBuf>,
    memory: Option<RawMemory>,
    autoscaler: Option<RawAutoscaler>,
    /// kube-dns's sidecar liveness coupling: `{}` for its defaults.
    liveness: Option<RawLiveness>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLiveness {
    #[serde(with = "humantime_serde::option")]
    period: Option<Duration>,
    failure_threshold: Option<u32>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMemory {
    limit_mib: Option<u64>,
    limit_bytes: Option<u64>,
    /// `ndots` (the server's own accounting) or `coredns` (CoreDNS's, from simulated quantities).
    model: Option<String>,
    #[serde(with = "humantime_serde::option")]
    relist: Option<Duration>,
    coredns: Option<RawCoreDnsMemory>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCoreDnsMemory {
    base: Option<u64>,
    per_watched_pod: Option<u64>,
    per_object: Option<u64>,
    per_inflight: Option<u64>,
    per_cache_entry: Option<u64>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAutoscaler {
    cores_per_replica: Option<usize>,
    nodes_per_replica: Option<usize>,
    prevent_single_point_failure: Option<bool>,
    nodes: Option<usize>,
    #[serde(with = "humantime_serde::option")]
    poll: Option<Duration>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawNodeLocal {
    corefile: Option<String>,
    corefile_file: Option<PathBuf>,
    bind_kube_dns: Option<bool>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawUpstream {
    zone: Option<String>,
    zone_file: Option<PathBuf>,
    /// Missing: AWS's 1024 packets/s; `null`: no limit.
    #[serde(with = "serde_with::rust::double_option", skip_serializing_if = "Option::is_none")]
    eni_limit: Option<Option<RawEni>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEni {
    rate: f64,
    burst: f64,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLatency {
    #[serde(with = "humantime_serde::option")]
    same_node: Option<Duration>,
    #[serde(with = "humantime_serde::option")]
    same_az: Option<Duration>,
    #[serde(with = "humantime_serde::option")]
    cross_az: Option<Duration>,
    #[serde(with = "humantime_serde::option")]
    upstream: Option<Duration>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRace {
    #[serde(with = "humantime_serde::option")]
    window: Option<Duration>,
    p_cpu_split: Option<f64>,
    p_reply_tuple_taken: Option<f64>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawPods {
    count: Option<usize>,
    namespace: Option<String>,
    /// A name `Library` parses; checked in `build`, where the error can point at its line.
    library: Option<String>,
    resolv_conf: Option<String>,
    resolv_conf_file: Option<PathBuf>,
    /// `ClusterFirst` (the default) or `None` (dns_config only), as in a pod spec.
    dns_policy: Option<String>,
    dns_config: Option<RawDnsConfig>,
    hints: Option<RawHints>,
    rate: Option<f64>,
    names: Option<IndexMap<String, u32>>,
    extra_addrs: Option<Vec<IpAddr>>,
    client_cache: Option<ClientCacheName>,
    threadpool: Option<usize>,
    app_rate: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDnsConfig {
    nameservers: Vec<IpAddr>,
    searches: Vec<String>,
    options: Vec<RawDnsOption>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDnsOption {
    name: String,
    value: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHints {
    /// `unspec`, `inet` or `inet6`.
    family: Option<String>,
    addrconfig: Option<bool>,
    v4mapped: Option<bool>,
    all: Option<bool>,
    canonname: Option<bool>,
}

// Values checked while deserialising, so their errors carry the line of the value.

/// A kernel version `MAJOR.MINOR` (`"5.15"`; quote it, or YAML reads 5.10 as the number 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "serde_yaml_ng::Value", into = "String")]
struct KernelName(Kernel);

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

impl From<KernelName> for String {
    fn from(k: KernelName) -> String {
        format!("{}.{}", k.0.major, k.0.minor)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
struct CleanupName(Cleanup);

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

impl From<CleanupName> for String {
    fn from(c: CleanupName) -> String {
        match c.0 {
            Cleanup::OnSync => "on-sync".into(),
            Cleanup::Never => "never".into(),
            Cleanup::Late(d) => humantime::format_duration(d).to_string(),
        }
    }
}

/// `java`, `java-security-manager`, or `{positive: 30s | forever, negative: 10s}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "serde_yaml_ng::Value", into = "serde_yaml_ng::Value")]
struct ClientCacheName(ClientCache);

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

/// A fault at a point of simulated time: `at` and exactly one of the fault keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawFault", into = "RawFault")]
struct FaultAt(Duration, Fault);

#[skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFault {
    #[serde(with = "humantime_serde::option")]
    at: Option<Duration>,
    kill_replica: Option<usize>,
    upstream_blackhole: Option<usize>,
    upstream_repair: Option<usize>,
    node_local_down: Option<usize>,
    node_local_up: Option<usize>,
    apiserver_restart: Option<bool>,
    az_loss: Option<RawAzLoss>,
    service_ip: Option<RawServiceIp>,
    cluster_nodes: Option<usize>,
    upstream_slow: Option<RawSlow>,
    node_down: Option<usize>,
    az_burst_loss: Option<RawBurst>,
    roll_replicas: Option<bool>,
    upstream_loss: Option<RawAzLoss>,
    link_loss: Option<RawLinkLoss>,
    #[serde(with = "humantime_serde::option")]
    roll_node_local: Option<Duration>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLinkLoss {
    a: usize,
    b: usize,
    loss: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBurst {
    az: usize,
    loss: f64,
    #[serde(with = "humantime_serde")]
    burst: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlow {
    az: usize,
    #[serde(with = "humantime_serde")]
    delay: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAzLoss {
    az: usize,
    loss: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServiceIp {
    namespace: String,
    name: String,
    ip: IpAddr,
}

const FAULT_KEYS: &str = "kill_replica, upstream_blackhole, upstream_repair, upstream_slow, upstream_loss, node_local_down, node_local_up, roll_node_local, node_down, roll_replicas, apiserver_restart, az_loss, az_burst_loss, link_loss, service_ip, cluster_nodes";

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
            Fault::AzBurstLoss { az, loss, burst } => r.az_burst_loss = Some(RawBurst { az, loss, burst }),
            Fault::UpstreamLoss { az, loss } => r.upstream_loss = Some(RawAzLoss { az, loss }),
            Fault::LinkLoss { a, b, loss } => r.link_loss = Some(RawLinkLoss { a, b, loss }),
            Fault::RollNodeLocal { gap } => r.roll_node_local = Some(gap),
        }
        r
    }
}

// ---------------------------------------------------------------------------------------------
// Raw file → Scenario, with the checks that need more than one value.

fn build(raw: RawFile, file: &str, text: &str, base: &Path) -> Result<Scenario, FileError> {
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
    spec.cluster_domain = c.domain.unwrap_or(spec.cluster_domain);
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
    spec.corefile = match (d.corefile, d.corefile_file) {
        (Some(_), Some(_)) => {
            return Err(err_at(
                &["coredns", "corefile_file"],
                "give the Corefile inline (`corefile`) or as a file (`corefile_file`), not both".into(),
            ));
        }
        (Some(t), None) => t,
        (None, Some(p)) => read(&["coredns", "corefile_file"], &p)?,
        (None, None) => spec.corefile,
    };
    check_corefile(&spec.corefile, &format!("{file} (coredns.corefile)")).map_err(|e| err_at(&["coredns", "corefile"], e))?;
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
        spec.node_local = Some(nl);
    }

    let u = raw.upstream.unwrap_or_default();
    spec.upstream_zone = match (u.zone, u.zone_file) {
        (Some(_), Some(_)) => return Err(err_at(&["upstream", "zone_file"], "give the zone inline or as a file, not both".into())),
        (Some(z), None) => z,
        (None, Some(p)) => read(&["upstream", "zone_file"], &p)?,
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

    for (i, p) in raw.pods.into_iter().enumerate() {
        let idx = i.to_string();
        let at = |key: &str, msg: String| err_at(&["pods", &idx, key], msg);
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

fn fmt_d(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The resolv.conf the kubelet writes for a pod's `dnsPolicy` and `dnsConfig` (incidents.md §1.0;
/// kubelet `pkg/kubelet/network/dns`: dnsConfig nameservers and searches are appended without
/// duplicates, its options replace those of the same name). None: the engine's ClusterFirst default.
/// A resolv.conf option: name and value (`ndots` `5`).
type DnsOption = (String, Option<String>);

fn pod_dns(spec: &ClusterSpec, namespace: &str, policy: Option<&str>, cfg: Option<RawDnsConfig>) -> Result<Option<String>, String> {
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
            let rc = ResolvConf::kubelet_cluster_first(ns, namespace, &spec.cluster_domain, &["ec2.internal"]);
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

/// Parses a cluster DNS Corefile as the simulator will (`/etc/resolv.conf` is the AZ's resolver).
fn check_corefile(text: &str, name: &str) -> Result<(), String> {
    let text = text.replace("/etc/resolv.conf", &crate::engine::upstream_ip(0).to_string());
    let cf = resolver::corefile::parse_str(&text, name, None, &|_| None).map_err(|e| e.to_string())?;
    resolver::Config::from_corefile(&cf, Path::new(".")).map_err(|e| e.to_string())?;
    Ok(())
}

fn yaml_error(file: &str, e: &serde_yaml_ng::Error) -> FileError {
    let msg = strip_location(&e.to_string());
    match e.location() {
        Some(l) => FileError::At { file: file.to_string(), line: l.line(), column: l.column(), msg },
        None => FileError::File { file: file.to_string(), msg },
    }
}

/// serde_yaml_ng appends " at line L column C"; the error puts the place first instead.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(" column ") => msg[..i].to_string(),
        _ => msg.to_string(),
    }
}

/// Where a key path (`["faults", "2", "kill_replica"]`) sits in block-style YAML: 1-based line and
/// column of the deepest segment found. Used for errors that need several values to detect, after
/// serde (which knows positions) has finished. Flow-style maps are not searched into.
fn locate(text: &str, path: &[&str]) -> Option<(usize, usize)> {
    // (line, indent, body, starts a sequence item). "- key: v" is an item marker at the dash's
    // indent plus a line "key: v" two columns further in.
    let mut lines: Vec<(usize, usize, &str, bool)> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let body = raw.trim_start();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let indent = raw.len() - body.len();
        if let Some(rest) = body.strip_prefix("- ").or(if body == "-" { Some("") } else { None }) {
            lines.push((n, indent, "", true));
            let rest_trim = rest.trim_start();
            if !rest_trim.is_empty() {
                lines.push((n, indent + 2 + (rest.len() - rest_trim.len()), rest_trim, false));
            }
        } else {
            lines.push((n, indent, body, false));
        }
    }
    let (mut from, mut to) = (0, lines.len());
    let mut best = None;
    for seg in path {
        let Some(child_indent) = lines.get(from..to).and_then(|l| l.first()).map(|l| l.1) else { break };
        let hit = if let Ok(idx) = seg.parse::<usize>() {
            lines[from..to].iter().enumerate().filter(|(_, l)| l.3 && l.1 == child_indent).nth(idx).map(|(i, _)| from + i)
        } else {
            lines[from..to]
                .iter()
                .position(|l| {
                    !l.3 && l.1 == child_indent && (l.2.starts_with(&format!("{seg}:")) || l.2.starts_with(&format!("\"{seg}\":")))
                })
                .map(|i| from + i)
        };
        let Some(h) = hit else { break };
        let (line, indent, _, item) = lines[h];
        best = Some((line + 1, indent + 1));
        // The block under it: following lines indented deeper; a key's list may also sit at the
        // key's own indentation (`pods:` then `- count: 1`), an item ends at its dash's column.
        let start = h + 1;
        let end = lines[start..]
            .iter()
            .position(|l| if item { l.1 <= indent } else { l.1 < indent || (l.1 == indent && !l.3) })
            .map_or(lines.len(), |e| start + e);
        (from, to) = (start, end);
    }
    best
}

/// Applies one `--set a.b.0.c=value` to the document (the value is YAML: `3`, `ipvs`, `null`, `{}`).
fn apply_set(doc: &mut serde_yaml_ng::Value, set: &str) -> Result<(), String> {
    use serde_yaml_ng::Value;
    let (path, value) = set.split_once('=').ok_or("expected KEY.PATH=VALUE")?;
    let value: Value = serde_yaml_ng::from_str(value).map_err(|e| format!("value: {e}"))?;
    let mut cur = doc;
    let segs: Vec<&str> = path.split('.').collect();
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        if cur.is_null() {
            *cur = Value::Mapping(serde_yaml_ng::Mapping::new());
        }
        cur = match cur {
            Value::Sequence(items) => {
                let n: usize = seg.parse().map_err(|_| format!("`{seg}`: a list, index it with a number"))?;
                let len = items.len();
                items.get_mut(n).ok_or_else(|| format!("index {n}: the list has {len} entries"))?
            }
            Value::Mapping(m) => {
                if last {
                    m.insert(Value::String(seg.to_string()), value);
                    return Ok(());
                }
                m.entry(Value::String(seg.to_string())).or_insert(Value::Null)
            }
            _ => return Err(format!("`{}` is a value, not a section", segs[..i].join("."))),
        };
        if last {
            *cur = value;
            return Ok(());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Scenario → raw file: only what differs from the defaults.

fn differs<T: PartialEq>(v: T, d: T) -> Option<T> {
    (v != d).then_some(v)
}

/// A section that says something: None when every key in it is unset.
fn nonempty<T: Serialize>(section: T) -> Option<T> {
    serde_yaml_ng::to_value(&section).is_ok_and(|v| v.as_mapping().is_some_and(|m| !m.is_empty())).then_some(section)
}

fn unbuild(sc: &Scenario) -> RawFile {
    let s = &sc.spec;
    let mut d = ClusterSpec::smoke(1);
    d.pods.clear();
    let cluster = RawCluster {
        azs: differs(s.azs, d.azs),
        nodes: differs(s.nodes, d.nodes),
        cpus_per_node: differs(s.cpus_per_node, d.cpus_per_node),
        kernel: differs(s.kernel, d.kernel).map(KernelName),
        domain: differs(s.cluster_domain.clone(), d.cluster_domain.clone()),
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
        corefile: differs(s.corefile.clone(), d.corefile.clone()),
        corefile_file: None,
        memory,
        autoscaler,
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
        pods,
        faults: s.faults.iter().map(|(at, f)| FaultAt(*at, f.clone())).collect(),
        expect: (sc.expect != Expect::default()).then(|| sc.expect.clone()),
        trace_queries: s.trace_queries.then_some(true),
    }
}

#[cfg(test)]
mod tests {
    use super::locate;

    #[test]
    fn locate_finds_keys_in_lists_indented_or_not() {
        let flush = "version: 1\npods:\n- count: 1\n  rate: 2\n- count: 3\n  rate: 4\nfaults:\n- at: 1s\n";
        assert_eq!(locate(flush, &["pods", "1", "rate"]), Some((6, 3)));
        assert_eq!(locate(flush, &["faults", "0", "at"]), Some((8, 3)));
        let nested = "pods:\n  - count: 1\n    rate: 2\n  - count: 3\n    rate: 4\nexpect:\n  p99_ms_max: 1\n";
        assert_eq!(locate(nested, &["pods", "1", "rate"]), Some((5, 5)));
        assert_eq!(locate(nested, &["expect", "p99_ms_max"]), Some((7, 3)));
        // A key that is not there: the deepest one found.
        assert_eq!(locate(nested, &["pods", "0", "names"]), Some((2, 3)));
        assert_eq!(locate(nested, &["coredns"]), None);
    }
}
