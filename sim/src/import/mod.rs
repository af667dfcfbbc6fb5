//! `ndots-sim import`: a scenario file of a real cluster, from what
//! `kubectl get nodes,pods,services,endpointslices,configmaps,daemonsets,deployments -A -o yaml` prints.
//!
//! Read from the dump: the nodes (count, AZs from `topology.kubernetes.io/zone`, the region and the
//! cloud from the provider ID, kernels, CPUs), kube-proxy's mode and conntrack settings from its
//! ConfigMap and its release from its image, CoreDNS's Corefile, replicas, image release and memory
//! limit, node-local-dns from its DaemonSet and ConfigMap, the Services and EndpointSlices as the
//! cluster state, and the pods, grouped by namespace, DNS policy and configuration, and the client
//! library their image implies (`library`). Not in a dump, so written as assumptions the user edits:
//! lookups per second per pod, and the names each group looks up (from its environment, `names`).
//! The scenario is loaded before it is written, so what `import` writes runs.

pub mod command;
pub mod library;
pub mod names;
mod write;

use std::collections::{BTreeMap, BTreeSet};

use netmodel::Kernel;
use serde_json::Value;

pub use write::scenario_text;

/// What the user chose.
#[derive(Debug, Clone)]
pub struct Options {
    /// The scenario's `name`.
    pub name: String,
    /// Lookups per second per pod (the dump has no traffic).
    pub rate: f64,
    /// Image rules before the built-in heuristic.
    pub rules: Vec<library::Rule>,
    /// The state file's name, next to the scenario.
    pub state_file: String,
}

/// A cluster as read from a dump.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub source: String,
    pub nodes: usize,
    /// Nodes per zone, by zone name.
    pub zones: BTreeMap<String, usize>,
    pub region: Option<String>,
    /// `aws`, `gce`, `azure`, ... from `spec.providerID`.
    pub cloud: Option<String>,
    /// Nodes per kernel (MAJOR.MINOR).
    pub kernels: BTreeMap<Kernel, usize>,
    pub cpus: usize,
    pub domain: String,
    pub kube_proxy: KubeProxy,
    pub dns: ClusterDns,
    pub node_local: Option<NodeLocal>,
    pub groups: Vec<Group>,
    /// Pods in the state but not simulated, with why.
    pub not_simulated: BTreeMap<String, usize>,
    /// Namespaces, Services and EndpointSlices: the state file.
    pub state: Vec<Value>,
}

#[derive(Debug, Clone, Default)]
pub struct KubeProxy {
    /// `iptables`, `ipvs`, or what the ConfigMap said when it is not modelled.
    pub mode: String,
    pub version: Option<String>,
    pub conntrack_max_per_core: Option<u64>,
    pub conntrack_min: Option<u64>,
    pub ipvs_udp_timeout: Option<u64>,
    pub ipvs_tcp_timeout: Option<u64>,
    /// Where the settings came from.
    pub from: String,
}

#[derive(Debug, Clone, Default)]
pub struct ClusterDns {
    pub replicas: usize,
    /// `ndots`, `kube-dns`, `coredns` or `coredns-X.Y.Z`.
    pub server: String,
    pub image: String,
    pub corefile: Option<String>,
    pub memory_limit_mib: Option<u64>,
    pub service_ip: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct NodeLocal {
    pub corefile: Option<String>,
    pub bind_kube_dns: bool,
    pub image: String,
}

/// Pods that resolve alike: same namespace, DNS settings and library.
#[derive(Debug, Clone)]
pub struct Group {
    pub namespace: String,
    pub count: usize,
    pub guess: library::Guess,
    /// `None` or `ClusterFirst` when the pod spec says so and has a `dnsConfig`.
    pub dns_policy: Option<String>,
    pub dns_config: Option<Value>,
    /// Workloads (kind/name): pod count and image.
    pub workloads: BTreeMap<String, (usize, String)>,
    /// Names from the containers' environment (`names::from_env`).
    pub names: Vec<String>,
    /// The namespace's Services, the fallback when the environment names none.
    pub fallback: Vec<String>,
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter().fold(v, |v, k| &v[*k]).as_str().unwrap_or_default()
}

fn items(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// `4`, `3920m` (millicores): whole CPUs, at least 1.
fn cpus(q: &str) -> Option<usize> {
    match q.strip_suffix('m') {
        Some(m) => m.parse::<usize>().ok().map(|m| (m / 1000).max(1)),
        None => q.parse::<f64>().ok().map(|c| (c as usize).max(1)),
    }
}

/// `170Mi`, `1Gi`, `200M`, bytes: MiB.
fn mib(q: &str) -> Option<u64> {
    let units: [(&str, f64); 6] = [("Ki", 1024.0), ("Mi", 1048576.0), ("Gi", 1073741824.0), ("k", 1e3), ("M", 1e6), ("G", 1e9)];
    let (n, mult) = units.iter().find_map(|(u, m)| q.strip_suffix(u).map(|n| (n, *m))).unwrap_or((q, 1.0));
    n.parse::<f64>().ok().map(|n| (n * mult / 1048576.0).round() as u64)
}

/// A Go duration (`5m0s`, `300s`, `1h`): seconds; None for 0 (kube-proxy leaves the kernel's).
fn go_seconds(d: &str) -> Option<u64> {
    let (mut total, mut num) = (0f64, String::new());
    let mut chars = d.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        total += match c {
            'h' => n * 3600.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                n / 1000.0
            }
            'm' => n * 60.0,
            's' => n,
            _ => return None,
        };
    }
    (num.is_empty() && total >= 1.0).then_some(total as u64)
}

/// `v1.29.3-eksbuild.2` or `1.11.1`: the release's numbers as written, up to `parts` of them.
fn release(tag: &str, parts: usize) -> Option<String> {
    let t = tag.trim_start_matches('v');
    let nums: Vec<&str> = t.split(['.', '-', '+', '_']).take(parts).collect();
    (nums.len() == parts && nums.iter().all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))).then(|| nums.join("."))
}

fn tag(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    image.rsplit('/').next().and_then(|l| l.split_once(':')).map_or("", |(_, t)| t)
}

fn most_common<T: Ord + Clone>(counts: &BTreeMap<T, usize>) -> Option<T> {
    counts.iter().max_by_key(|(_, n)| **n).map(|(k, _)| k.clone())
}

/// The workload a pod belongs to: `deployment/web` for a pod of ReplicaSet `web-7d9f8b6c5d`.
fn workload(pod: &Value) -> String {
    let owner = items(&pod["metadata"]["ownerReferences"]).first();
    match owner.map(|o| (s(o, &["kind"]), s(o, &["name"]))) {
        Some(("ReplicaSet", n)) => match n.rsplit_once('-') {
            Some((d, hash)) if hash.len() >= 5 && hash.bytes().all(|b| b.is_ascii_alphanumeric()) => format!("deployment/{d}"),
            _ => format!("replicaset/{n}"),
        },
        Some((k, n)) => format!("{}/{n}", k.to_ascii_lowercase()),
        None => format!("pod/{}", s(pod, &["metadata", "name"])),
    }
}

/// The container that does the lookups: the first that is not a known sidecar.
fn app_container(pod: &Value) -> Option<&Value> {
    let cs = items(&pod["spec"]["containers"]);
    cs.iter().find(|c| !matches!(s(c, &["name"]), "istio-proxy" | "linkerd-proxy" | "envoy-sidecar")).or(cs.first())
}

/// Reads a dump (YAML or JSON: a `List`, or one object).
pub fn read(text: &str, source: &str, opts: &Options) -> Result<Cluster, String> {
    let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| format!("{source}: not a kubectl dump: {e}"))?;
    let all: Vec<Value> = match doc.get("items") {
        Some(i) => items(i).to_vec(),
        None if doc.get("kind").is_some() => vec![doc],
        None => return Err(format!("{source}: not a kubectl dump: expected a List with `items` or one object with `kind`")),
    };
    fn of<'a>(all: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        all.iter().filter(move |o| s(o, &["kind"]) == kind)
    }
    let named = |kind: &str, ns: &str, names: &[&str]| {
        all.iter()
            .find(|o| s(o, &["kind"]) == kind && s(o, &["metadata", "namespace"]) == ns && names.contains(&s(o, &["metadata", "name"])))
    };
    let mut c = Cluster { source: source.to_string(), domain: "cluster.local".into(), ..Cluster::default() };

    let nodes: Vec<&Value> = of(&all, "Node").collect();
    if nodes.is_empty() {
        return Err(format!(
            "{source}: no Node objects; dump the cluster with `kubectl get nodes,pods,services,endpointslices,configmaps,daemonsets,deployments -A -o yaml`"
        ));
    }
    let mut cpu_counts = BTreeMap::new();
    let (mut regions, mut clouds) = (BTreeMap::new(), BTreeMap::new());
    for n in &nodes {
        c.nodes += 1;
        let labels = &n["metadata"]["labels"];
        let zone = [s(labels, &["topology.kubernetes.io/zone"]), s(labels, &["failure-domain.beta.kubernetes.io/zone"])]
            .into_iter()
            .find(|z| !z.is_empty())
            .unwrap_or("(no zone label)");
        *c.zones.entry(zone.to_string()).or_default() += 1;
        let region = [s(labels, &["topology.kubernetes.io/region"]), s(labels, &["failure-domain.beta.kubernetes.io/region"])]
            .into_iter()
            .find(|r| !r.is_empty());
        if let Some(r) = region {
            *regions.entry(r.to_string()).or_insert(0usize) += 1;
        }
        if let Some((cloud, _)) = s(n, &["spec", "providerID"]).split_once("://") {
            *clouds.entry(cloud.to_string()).or_insert(0usize) += 1;
        }
        if let Ok(k) = s(n, &["status", "nodeInfo", "kernelVersion"]).parse::<Kernel>() {
            *c.kernels.entry(k).or_default() += 1;
        }
        if let Some(cpu) = cpus(s(n, &["status", "capacity", "cpu"])) {
            *cpu_counts.entry(cpu).or_insert(0usize) += 1;
        }
    }
    c.region = most_common(&regions);
    c.cloud = most_common(&clouds);
    c.cpus = most_common(&cpu_counts).unwrap_or(2);

    // CoreDNS (or kube-dns): the Deployment if dumped, else its pods.
    let dns_deploy = named("Deployment", "kube-system", &["coredns", "kube-dns"]);
    let dns_pods: Vec<&Value> = of(&all, "Pod")
        .filter(|p| s(p, &["metadata", "namespace"]) == "kube-system" && s(p, &["metadata", "labels", "k8s-app"]) == "kube-dns")
        .filter(|p| s(p, &["status", "phase"]) == "Running")
        .collect();
    let dns_spec = dns_deploy.map(|d| &d["spec"]["template"]).or(dns_pods.first().copied());
    c.dns.replicas = dns_deploy.and_then(|d| d["spec"]["replicas"].as_u64()).map_or(dns_pods.len(), |r| r as usize).max(1);
    if let Some(t) = dns_spec {
        let cs = items(&t["spec"]["containers"]);
        let main = cs.iter().find(|c| matches!(s(c, &["name"]), "coredns" | "kubedns")).or(cs.first());
        if let Some(m) = main {
            c.dns.image = s(m, &["image"]).to_string();
            c.dns.memory_limit_mib = mib(s(m, &["resources", "limits", "memory"]));
        }
    }
    c.dns.server = if c.dns.image.contains("kube-dns") {
        "kube-dns".into()
    } else if c.dns.image.contains("ndots") {
        "ndots".into()
    } else {
        release(tag(&c.dns.image), 3).map_or("coredns".into(), |v| format!("coredns-{v}"))
    };
    c.dns.corefile =
        named("ConfigMap", "kube-system", &["coredns"]).map(|m| s(m, &["data", "Corefile"]).to_string()).filter(|t| !t.is_empty());
    if let Some(cf) = &c.dns.corefile
        && let Some(zone) = cf.lines().find_map(|l| l.trim().strip_prefix("kubernetes ").and_then(|a| a.split_whitespace().next()))
    {
        c.domain = zone.trim_end_matches('.').to_string();
    }
    c.dns.service_ip = named("Service", "kube-system", &["kube-dns"]).map(|s_| s(s_, &["spec", "clusterIP"]).to_string());

    // kube-proxy: kubeadm's ConfigMap `kube-proxy` (config.conf), EKS's `kube-proxy-config` (config).
    c.kube_proxy.mode = "iptables".into();
    let kp_cm = named("ConfigMap", "kube-system", &["kube-proxy", "kube-proxy-config"]);
    if let Some(cm) = kp_cm {
        let text = [s(cm, &["data", "config.conf"]), s(cm, &["data", "config"])].into_iter().find(|t| !t.is_empty()).unwrap_or_default();
        let cfg: Value = serde_yaml_ng::from_str(text)
            .map_err(|e| format!("{source}: ConfigMap kube-system/{}: not a KubeProxyConfiguration: {e}", s(cm, &["metadata", "name"])))?;
        let mode = s(&cfg, &["mode"]);
        c.kube_proxy.mode = if mode.is_empty() { "iptables".into() } else { mode.to_string() };
        c.kube_proxy.conntrack_max_per_core = cfg["conntrack"]["maxPerCore"].as_u64();
        c.kube_proxy.conntrack_min = cfg["conntrack"]["min"].as_u64();
        c.kube_proxy.ipvs_udp_timeout = go_seconds(s(&cfg, &["ipvs", "udpTimeout"]));
        c.kube_proxy.ipvs_tcp_timeout = go_seconds(s(&cfg, &["ipvs", "tcpTimeout"]));
        c.kube_proxy.from = format!("ConfigMap kube-system/{}", s(cm, &["metadata", "name"]));
    }
    let kp_ds = named("DaemonSet", "kube-system", &["kube-proxy"]);
    c.kube_proxy.version =
        kp_ds.and_then(|d| items(&d["spec"]["template"]["spec"]["containers"]).first()).and_then(|k| release(tag(s(k, &["image"])), 2));
    if c.kube_proxy.version.is_none() {
        let kubelets: BTreeMap<String, usize> =
            nodes.iter().filter_map(|n| release(s(n, &["status", "nodeInfo", "kubeletVersion"]), 2)).fold(BTreeMap::new(), |mut m, v| {
                *m.entry(v).or_default() += 1;
                m
            });
        c.kube_proxy.version = most_common(&kubelets);
    }

    // node-local-dns.
    let nl_ds = of(&all, "DaemonSet").find(|d| {
        s(d, &["metadata", "namespace"]) == "kube-system"
            && (s(d, &["metadata", "name"]) == "node-local-dns" || s(d, &["metadata", "labels", "k8s-app"]) == "node-local-dns")
    });
    if let Some(d) = nl_ds {
        let container = items(&d["spec"]["template"]["spec"]["containers"]).first();
        let args: Vec<&str> = container.map(|k| items(&k["args"]).iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        let localips: Vec<&str> =
            args.iter().position(|a| *a == "-localip").and_then(|i| args.get(i + 1)).map_or(Vec::new(), |l| l.split(',').collect());
        let kube_dns = c.dns.service_ip.clone().unwrap_or_default();
        let mut corefile = named("ConfigMap", "kube-system", &["node-local-dns"])
            .map(|m| s(m, &["data", "Corefile"]).to_string())
            .filter(|t| !t.is_empty());
        // The installer substitutes the addresses into the template; put the variables back, as the
        // simulator substitutes them per node.
        if let Some(cf) = &mut corefile {
            for ip in &localips {
                let var = if *ip == kube_dns { "__PILLAR__DNS__SERVER__" } else { "__PILLAR__LOCAL__DNS__" };
                *cf = cf.split(ip).collect::<Vec<_>>().join(var);
            }
        }
        c.node_local = Some(NodeLocal {
            corefile,
            bind_kube_dns: localips.contains(&kube_dns.as_str()),
            image: container.map(|k| s(k, &["image"]).to_string()).unwrap_or_default(),
        });
    }

    // The state: Namespaces (from the objects when not dumped), Services, EndpointSlices.
    let mut services = names::Services::new();
    let mut namespaces = BTreeSet::new();
    for o in &all {
        let ns = s(o, &["metadata", "namespace"]);
        match s(o, &["kind"]) {
            "Service" => {
                services.entry(ns.to_string()).or_default().insert(s(o, &["metadata", "name"]).to_string());
                c.state.push(o.clone());
            }
            "EndpointSlice" | "Endpoints" => c.state.push(o.clone()),
            "Namespace" => {
                namespaces.insert(s(o, &["metadata", "name"]).to_string());
            }
            _ => {}
        }
        if !ns.is_empty() {
            namespaces.insert(ns.to_string());
        }
    }
    for ns in namespaces.iter().rev() {
        c.state.insert(0, serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
    }

    // The pods.
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for p in of(&all, "Pod") {
        let ns = s(p, &["metadata", "namespace"]);
        let app = s(p, &["metadata", "labels", "k8s-app"]);
        let mut skip = |why: &str| *c.not_simulated.entry(why.to_string()).or_default() += 1;
        if s(p, &["status", "phase"]) != "Running" {
            continue;
        }
        if ns == "kube-system" && matches!(app, "kube-dns" | "node-local-dns") {
            skip("the cluster DNS and node-local-dns themselves");
            continue;
        }
        let host_net = p["spec"]["hostNetwork"].as_bool().unwrap_or(false);
        let policy = match s(p, &["spec", "dnsPolicy"]) {
            "" | "ClusterFirst" if host_net => {
                skip("host-network pods (the node's resolver: dnsPolicy ClusterFirst means Default there)");
                continue;
            }
            "Default" => {
                skip("dnsPolicy Default (the node's resolver)");
                continue;
            }
            "None" => Some("None".to_string()),
            _ => None,
        };
        let Some(container) = app_container(p) else { continue };
        let image = s(container, &["image"]).to_string();
        let guess = library::guess(&image, &opts.rules);
        let dns_config = p["spec"]["dnsConfig"].as_object().map(|_| p["spec"]["dnsConfig"].clone());
        let key = format!("{ns}\u{0}{}\u{0}{}{}\u{0}{policy:?}\u{0}{dns_config:?}", guess.library, guess.java, guess.node);
        let g = groups.entry(key).or_insert_with(|| Group {
            namespace: ns.to_string(),
            count: 0,
            guess: guess.clone(),
            dns_policy: policy.clone().or_else(|| dns_config.as_ref().map(|_| "ClusterFirst".to_string())),
            dns_config: dns_config.clone(),
            workloads: BTreeMap::new(),
            names: Vec::new(),
            fallback: services.get(ns).map(|s| s.iter().filter(|n| *n != "kubernetes").take(3).cloned().collect()).unwrap_or_default(),
        });
        g.count += 1;
        g.workloads.entry(workload(p)).or_insert((0, image.clone())).0 += 1;
        let env: Vec<&str> =
            items(&p["spec"]["containers"]).iter().flat_map(|k| items(&k["env"]).iter().filter_map(|e| e["value"].as_str())).collect();
        for n in names::from_env(env, ns, &c.domain, &services) {
            if !g.names.contains(&n) {
                g.names.push(n);
            }
        }
    }
    c.groups = groups.into_values().collect();
    if c.groups.is_empty() {
        return Err(format!("{source}: no running pod resolves through the cluster DNS; nothing to simulate (were pods dumped with -A?)"));
    }
    Ok(c)
}

/// What `import` produced: the scenario's text, the state file's, and what the user should know.
#[derive(Debug, Clone)]
pub struct Imported {
    pub cluster: Cluster,
    pub scenario: String,
    pub state: String,
}

/// Reads the dump and writes the scenario and its state file's text.
pub fn import(text: &str, source: &str, opts: &Options) -> Result<Imported, String> {
    let cluster = read(text, source, opts)?;
    let state = serde_yaml_ng::to_string(&serde_json::json!({"apiVersion": "v1", "kind": "List", "items": cluster.state}))
        .map_err(|e| format!("writing the state: {e}"))?;
    let scenario = scenario_text(&cluster, opts);
    Ok(Imported { cluster, scenario, state })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_and_releases_read_as_kubernetes_writes_them() {
        assert_eq!((cpus("4"), cpus("3920m"), cpus("500m")), (Some(4), Some(3), Some(1)));
        assert_eq!((mib("170Mi"), mib("1Gi"), mib("200M"), mib("x")), (Some(170), Some(1024), Some(191), None));
        assert_eq!((go_seconds("5m0s"), go_seconds("300s"), go_seconds("0s"), go_seconds("1h")), (Some(300), Some(300), None, Some(3600)));
        assert_eq!(release("v1.29.3-eksbuild.2", 2).as_deref(), Some("1.29"));
        assert_eq!(release("v1.11.1-eksbuild.4", 3).as_deref(), Some("1.11.1"));
        assert_eq!(release("latest", 2), None);
        assert_eq!(tag("602401143452.dkr.ecr.eu-west-1.amazonaws.com/eks/coredns:v1.11.1-eksbuild.4"), "v1.11.1-eksbuild.4");
        let pod = serde_json::json!({"metadata": {"name": "web-7d9f8b6c5d-x2x9k", "ownerReferences": [{"kind": "ReplicaSet", "name": "web-7d9f8b6c5d"}]}});
        assert_eq!(workload(&pod), "deployment/web");
    }
}
