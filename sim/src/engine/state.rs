//! The apiserver's view: the cluster state every resolver reads, as a Kubernetes List, rebuilt
//! and handed to every resolver when it changes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use resolver::cluster::ClusterObjects;
use resolver::{ClusterState, Config};

use super::{Engine, KUBE_DNS, KUBE_DNS_UPSTREAM, Pod, SimError};

impl Engine {
    /// The apiserver's view changed: rebuild the cluster state and hand it to every resolver.
    pub(super) fn publish_state(&mut self) {
        let list = cluster_list(&self.replica_ips, &self.pods, self.spec.extra_pods, &self.service_ips, &self.dump);
        // The change reaches the replicas as the watches deliver it: one event per changed object.
        if let Ok(objects) = ClusterObjects::parse(&list, "simulated-cluster") {
            self.watched.apply_objects(&objects);
            self.states = States::new(self.watched.state());
            let now = self.now;
            for i in &mut self.insts {
                let state = self.states.for_config(i.server.config());
                i.server.handle_cluster_state(now, state);
            }
        }
    }
}

/// The cluster state as the apiserver has it, and as a resolver holds it: only one whose
/// configuration watches pods (`Config::watches_pods`, as the binary's API watch) holds the pods.
/// Both shared by every resolver they serve.
#[derive(Debug, Clone)]
pub(super) struct States {
    pub(super) full: Arc<ClusterState>,
    podless: Arc<ClusterState>,
}

impl States {
    pub(super) fn new(full: ClusterState) -> States {
        let podless = ClusterState { pods: Vec::new(), nodes: Vec::new(), ..full.clone() };
        States { full: Arc::new(full), podless: Arc::new(podless) }
    }

    pub(super) fn for_config(&self, cfg: &Config) -> Arc<ClusterState> {
        if cfg.watches_pods() { self.full.clone() } else { self.podless.clone() }
    }
}

/// The cluster as `kubectl get namespaces,services,endpointslices,pods -A -o json` would print it.
pub(super) fn cluster_list(
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
    // The apiserver's Service, which every cluster has (kube-dns's sidecar probes its SRV records).
    items.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kubernetes", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}}));
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
    for (i, (node, ip)) in replicas.iter().enumerate() {
        items.push(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("coredns-{i}"), "namespace": "kube-system"}, "spec": {"nodeName": node_name(*node)}, "status": {"podIP": ip.to_string()}}));
    }
    for (i, p) in pods.iter().enumerate() {
        items.push(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("app-{i}"), "namespace": p.namespace}, "spec": {"nodeName": node_name(p.node)}, "status": {"podIP": p.ip.to_string()}}));
    }
    // The rest of a large cluster: pods that only exist in the state.
    for i in 0..extra_pods {
        items.push(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("bulk-{i}"), "namespace": "bulk"},
            "status": {"podIP": format!("10.{}.{}.{}", 200 + (i >> 16), (i >> 8) & 255, i & 255)}}));
    }
    items.extend(dump.iter().cloned());
    json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

/// A simulated node's name as its Node object would have it (the report's "node N").
pub(crate) fn node_name(node: usize) -> String {
    format!("node-{node}")
}

/// Services for the cluster names the pod groups look up, for a scenario without a cluster state:
/// `svc` in the group's namespace, `svc.ns`, `svc.ns.svc` and `svc.ns.svc.<domain>` (a `svc.ns`
/// only when `ns` is a namespace of some pod group, since `name.tld` is as likely). Names with
/// `{n}` stand for many names and get none; `web` and `api` exist in every namespace already.
/// ClusterIPs from 10.100.0.0/16, with the namespaces they need.
pub(crate) fn target_services(groups: &[crate::spec::PodGroup], domain: &str) -> Vec<serde_json::Value> {
    use serde_json::json;
    let namespaces: Vec<&str> = groups.iter().map(|g| g.namespace.as_str()).collect();
    let mut wanted: Vec<(String, String)> = Vec::new();
    for g in groups {
        for (name, _) in &g.names {
            if name.contains('{') || name.ends_with('.') {
                continue;
            }
            let labels: Vec<&str> = name.split('.').collect();
            let rest = labels.get(2..).map(|r| r.join(".")).unwrap_or_default();
            let target = match labels[..] {
                [svc] => Some((g.namespace.as_str(), svc)),
                [svc, ns] if namespaces.contains(&ns) => Some((ns, svc)),
                [svc, ns, "svc", ..] if rest == "svc" || rest == format!("svc.{domain}") => Some((ns, svc)),
                _ => None,
            };
            if let Some((ns, svc)) = target
                && !matches!(svc, "web" | "api")
                && !wanted.iter().any(|(n, s)| n == ns && s == svc)
            {
                wanted.push((ns.to_string(), svc.to_string()));
            }
        }
    }
    let mut items = Vec::new();
    let mut made: Vec<&str> = Vec::new();
    for (k, (ns, svc)) in wanted.iter().enumerate() {
        if !made.contains(&ns.as_str()) && !namespaces.contains(&ns.as_str()) {
            made.push(ns);
            items.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
        }
        let k = k + 1;
        items.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": svc, "namespace": ns},
            "spec": {"clusterIP": format!("10.100.{}.{}", k >> 8, k & 255), "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}));
    }
    items
}

/// The objects of a `kubectl get ... -o yaml|json` dump that join the simulated state: everything
/// but kube-dns's own Services and EndpointSlices and the `kubernetes` Service, which the simulator
/// owns.
pub(super) fn dump_items(text: &str) -> Result<Vec<serde_json::Value>, SimError> {
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
        (ns == "default" && kind == "Service" && name == "kubernetes")
            || ns == "kube-system"
                && ((kind == "Service" && name.starts_with("kube-dns"))
                    || (kind == "EndpointSlice" && svc.starts_with("kube-dns"))
                    || (kind == "Endpoints" && name.starts_with("kube-dns")))
    };
    Ok(items.into_iter().filter(|o| !owned(o)).collect())
}
