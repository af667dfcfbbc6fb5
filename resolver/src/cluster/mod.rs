//! Cluster state: namespaces, Services, EndpointSlices and Pods, read from Kubernetes' own List format
//! (`kubectl get namespaces,services,endpointslices,pods -A -o yaml|json`).
//!
//! The state is immutable once built and shared (`Arc`) by every server block and, in the simulator,
//! by every replica: a change is a new `ClusterState` handed to `Server::handle_cluster_state`.
//! Where it comes from (a file the driver polls today, an API watch later) is the driver's business
//! (`driver::reload`); the core is handed a parsed `ClusterState`.
//!
//! Memory: pods are kept as a sorted `(IP, namespace index)` array only (24 bytes per pod), not as
//! objects: that is all autopath and `pods verified` need (sources.md#wishlist item 8).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

/// Why cluster state could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{file}: cannot read: {err}")]
    Read { file: String, err: std::io::Error },
    #[error("{file}:{line}:{col}: {msg}")]
    Parse { file: String, line: usize, col: usize, msg: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKind {
    ClusterIp(Vec<IpAddr>),
    Headless,
    ExternalName(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub name: String,
    pub port: u16,
    /// Lowercase: tcp, udp, sctp.
    pub protocol: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub hostname: Option<String>,
    pub pod_name: Option<String>,
    pub ready: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub namespace: String,
    pub kind: ServiceKind,
    pub ports: Vec<Port>,
    pub endpoints: Vec<Endpoint>,
    /// Ports as the EndpointSlices name them (the ones headless SRV records use).
    pub endpoint_ports: Vec<Port>,
}

/// The whole cluster as the DNS sees it. Lookups only; iteration is over `BTreeMap`s (deterministic).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterState {
    pub namespaces: Vec<String>,
    /// Namespaces that exist for DNS: the listed ones and those that have a Service (a dump may omit
    /// Namespace objects). Sorted; computed once at load so no lookup scans the services.
    pub dns_namespaces: Vec<String>,
    /// (namespace, name) → service.
    pub services: BTreeMap<(String, String), Service>,
    /// Every ClusterIP and ready endpoint IP → (namespace, service, endpoint index or None for the ClusterIP).
    pub reverse: BTreeMap<IpAddr, (String, String, Option<usize>)>,
    /// Pod IPs, sorted, with the index of their namespace in `namespaces`.
    pub pods: Vec<(IpAddr, u32)>,
}

#[derive(Deserialize)]
struct List {
    #[serde(default)]
    items: Vec<Item>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: serde_json::Value,
    #[serde(default)]
    status: serde_json::Value,
    #[serde(default)]
    endpoints: Vec<SliceEndpoint>,
    #[serde(default)]
    ports: Option<Vec<SlicePort>>,
}

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SliceEndpoint {
    #[serde(default)]
    addresses: Vec<String>,
    #[serde(default)]
    conditions: Conditions,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    target_ref: Option<TargetRef>,
}

#[derive(Deserialize, Default)]
struct Conditions {
    ready: Option<bool>,
}

#[derive(Deserialize)]
struct TargetRef {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct SlicePort {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    protocol: Option<String>,
}

impl ClusterState {
    /// Loads a List from a YAML or JSON file (JSON is YAML, so one parser reads both).
    pub fn load(path: &Path) -> Result<ClusterState, ClusterError> {
        let text = std::fs::read_to_string(path).map_err(|err| ClusterError::Read { file: path.display().to_string(), err })?;
        ClusterState::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, file: &str) -> Result<ClusterState, ClusterError> {
        let list: List = serde_yaml_ng::from_str(text).map_err(|e| {
            let (line, col) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
            ClusterError::Parse {
                file: file.to_string(),
                line,
                col,
                msg: format!("{e}; expected a Kubernetes List (kubectl get ... -o yaml)"),
            }
        })?;
        Ok(ClusterState::from_items(list.items))
    }

    fn from_items(items: Vec<Item>) -> ClusterState {
        let mut st = ClusterState::default();
        let mut slices = Vec::new();
        let mut pods = Vec::new();
        for it in items {
            match it.kind.as_str() {
                "Namespace" => st.namespaces.push(it.metadata.name),
                "Service" => {
                    let spec = &it.spec;
                    let ty = spec.get("type").and_then(|v| v.as_str()).unwrap_or("ClusterIP");
                    let kind = if ty == "ExternalName" {
                        let mut n = spec.get("externalName").and_then(|v| v.as_str()).unwrap_or("").to_ascii_lowercase();
                        if !n.ends_with('.') {
                            n.push('.');
                        }
                        ServiceKind::ExternalName(n)
                    } else {
                        let mut ips: Vec<IpAddr> = spec
                            .get("clusterIPs")
                            .and_then(|v| v.as_array())
                            .map(|a| a.iter().filter_map(|v| v.as_str()?.parse().ok()).collect())
                            .unwrap_or_default();
                        if ips.is_empty()
                            && let Some(ip) = spec.get("clusterIP").and_then(|v| v.as_str()).and_then(|s| s.parse().ok())
                        {
                            ips.push(ip);
                        }
                        if ips.is_empty() { ServiceKind::Headless } else { ServiceKind::ClusterIp(ips) }
                    };
                    let ports = spec
                        .get("ports")
                        .and_then(|v| v.as_array())
                        .map(|a| {
                            a.iter()
                                .filter_map(|p| {
                                    Some(Port {
                                        name: p.get("name").and_then(|v| v.as_str()).unwrap_or("").to_string(),
                                        port: u16::try_from(p.get("port")?.as_u64()?).ok()?,
                                        protocol: p.get("protocol").and_then(|v| v.as_str()).unwrap_or("TCP").to_ascii_lowercase(),
                                    })
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let name = it.metadata.name.to_ascii_lowercase();
                    let ns = it.metadata.namespace.to_ascii_lowercase();
                    st.services.insert(
                        (ns.clone(), name.clone()),
                        Service { name, namespace: ns, kind, ports, endpoints: Vec::new(), endpoint_ports: Vec::new() },
                    );
                }
                "EndpointSlice" => slices.push(it),
                "Pod" => pods.push(it),
                _ => {}
            }
        }
        st.namespaces.sort();
        st.namespaces.dedup();
        for s in slices {
            let Some(svc) = s.metadata.labels.get("kubernetes.io/service-name") else { continue };
            let key = (s.metadata.namespace.to_ascii_lowercase(), svc.to_ascii_lowercase());
            let Some(service) = st.services.get_mut(&key) else { continue };
            for e in s.endpoints {
                let pod_name = e.target_ref.filter(|t| t.kind == "Pod").map(|t| t.name);
                // EndpointSlice: a missing `ready` condition means ready (discovery.k8s.io/v1 API doc).
                let ready = e.conditions.ready.unwrap_or(true);
                for a in e.addresses {
                    if let Ok(ip) = a.parse() {
                        service.endpoints.push(Endpoint { ip, hostname: e.hostname.clone(), pod_name: pod_name.clone(), ready });
                    }
                }
            }
            for p in s.ports.unwrap_or_default() {
                if let Some(port) = p.port {
                    let port = Port {
                        name: p.name.unwrap_or_default(),
                        port,
                        protocol: p.protocol.unwrap_or_else(|| "TCP".into()).to_ascii_lowercase(),
                    };
                    if !service.endpoint_ports.contains(&port) {
                        service.endpoint_ports.push(port);
                    }
                }
            }
        }
        st.dns_namespaces = st.namespaces.iter().cloned().chain(st.services.keys().map(|(ns, _)| ns.clone())).collect();
        st.dns_namespaces.sort();
        st.dns_namespaces.dedup();
        for ((ns, name), svc) in &st.services {
            if let ServiceKind::ClusterIp(ips) = &svc.kind {
                for ip in ips {
                    st.reverse.insert(*ip, (ns.clone(), name.clone(), None));
                }
            }
            for (i, e) in svc.endpoints.iter().enumerate() {
                if e.ready {
                    st.reverse.entry(e.ip).or_insert_with(|| (ns.clone(), name.clone(), Some(i)));
                }
            }
        }
        for p in pods {
            // hostNetwork pods share the node's IP; they cannot be told apart by source IP (coredns#7120).
            if p.spec.get("hostNetwork").and_then(|v| v.as_bool()) == Some(true) {
                continue;
            }
            let Ok(ns_idx) = st.namespaces.binary_search(&p.metadata.namespace) else { continue };
            let ips: Vec<IpAddr> = p
                .status
                .get("podIPs")
                .and_then(|v| v.as_array())
                .map(|a| a.iter().filter_map(|v| v.get("ip")?.as_str()?.parse().ok()).collect())
                .filter(|v: &Vec<IpAddr>| !v.is_empty())
                .or_else(|| p.status.get("podIP").and_then(|v| v.as_str()).and_then(|s| s.parse().ok()).map(|ip| vec![ip]))
                .unwrap_or_default();
            for ip in ips {
                st.pods.push((ip, ns_idx as u32));
            }
        }
        st.pods.sort();
        st.pods.dedup_by_key(|p| p.0);
        st
    }

    /// The namespace of the pod with this IP, if any (autopath, `pods verified`).
    pub fn pod_namespace(&self, ip: IpAddr) -> Option<&str> {
        let i = self.pods.binary_search_by(|p| p.0.cmp(&ip)).ok()?;
        self.namespaces.get(self.pods[i].1 as usize).map(String::as_str)
    }

    pub fn has_namespace(&self, ns: &str) -> bool {
        self.dns_namespaces.binary_search_by(|n| n.as_str().cmp(ns)).is_ok()
    }

    /// Heap bytes held: the pod index, services with their endpoints and ports, the reverse index.
    pub fn bytes(&self) -> usize {
        let svc: usize = self
            .services
            .values()
            .map(|s| {
                std::mem::size_of::<Service>()
                    + 2 * (s.name.len() + s.namespace.len())
                    + s.endpoints
                        .iter()
                        .map(|e| {
                            std::mem::size_of::<Endpoint>()
                                + e.hostname.as_ref().map_or(0, String::len)
                                + e.pod_name.as_ref().map_or(0, String::len)
                        })
                        .sum::<usize>()
                    + (s.ports.len() + s.endpoint_ports.len()) * (std::mem::size_of::<Port>() + 16)
                    + 64
            })
            .sum();
        let reverse = self.reverse.iter().map(|(_, (ns, n, _))| 64 + ns.len() + n.len()).sum::<usize>();
        self.pods.capacity() * Self::BYTES_PER_POD
            + svc
            + reverse
            + self.namespaces.iter().chain(&self.dns_namespaces).map(|n| n.len() + 24).sum::<usize>()
    }

    /// Heap bytes the pod index uses per pod (reported for autopath's memory, issue 2).
    pub const BYTES_PER_POD: usize = std::mem::size_of::<(IpAddr, u32)>();
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const SAMPLE: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: default}
- apiVersion: v1
  kind: Service
  metadata: {name: web, namespace: default}
  spec:
    clusterIP: 10.96.0.20
    ports: [{name: http, port: 80, protocol: TCP}]
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: web-abc, namespace: default, labels: {kubernetes.io/service-name: web}}
  addressType: IPv4
  endpoints:
  - addresses: [10.244.1.5]
    conditions: {ready: true}
  - addresses: [10.244.1.6]
    conditions: {ready: false}
  ports: [{name: http, port: 8080, protocol: TCP}]
- apiVersion: v1
  kind: Pod
  metadata: {name: web-1, namespace: default}
  status: {podIP: 10.244.1.5, podIPs: [{ip: 10.244.1.5}]}
"#;

    #[test]
    fn reads_a_kubectl_list() {
        let st = ClusterState::parse(SAMPLE, "state.yaml").expect("parses");
        let web = &st.services[&("default".into(), "web".into())];
        assert_eq!(web.kind, ServiceKind::ClusterIp(vec!["10.96.0.20".parse().expect("ip")]));
        assert_eq!(web.endpoints.len(), 2);
        assert_eq!(web.endpoint_ports[0].port, 8080);
        assert_eq!(st.pod_namespace("10.244.1.5".parse().expect("ip")), Some("default"));
        assert_eq!(st.reverse.len(), 2, "the ClusterIP and the one ready endpoint");
    }

    #[test]
    fn a_broken_file_names_its_line() {
        let e = ClusterState::parse("items:\n  - kind: [\n", "s.yaml").expect_err("bad yaml");
        match e {
            ClusterError::Parse { line, .. } => assert!(line >= 2),
            other => panic!("{other}"),
        }
    }
}
