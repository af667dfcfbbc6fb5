//! Cluster state: namespaces, Services, EndpointSlices and Pods, read from Kubernetes' own List format
//! (`kubectl get namespaces,services,endpointslices,pods -A -o yaml|json`).
//!
//! The state is immutable once built and shared (`Arc`) by every server block and, in the simulator,
//! by every replica: a change is a new `ClusterState` handed to `Server::handle_cluster_state`.
//! Where it comes from (a file the driver polls today, an API watch later) is the driver's business
//! (`driver::reload`); the core is handed a parsed `ClusterState`.
//!
//! Memory: pods are kept as a sorted array of (IP, namespace index, node index) only (24 bytes per
//! pod), not as objects: that is all autopath, `pods verified` and the detectors need
//! (sources.md#wishlist item 8).

mod objects;
mod watch;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use objects::List;
pub use objects::{ClusterObjects, Key, Kind, Object, PodObj, ServiceObj, SliceObj};
pub use watch::{WatchEvent, Watched};

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

/// A pod in the index: 24 bytes (the node index fits beside the namespace's in the address's padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodEntry {
    pub ip: IpAddr,
    /// Index into `ClusterState::namespaces`.
    pub namespace: u32,
    /// Index into `ClusterState::nodes`; `PodEntry::NO_NODE` when unscheduled or past 65,534 nodes.
    pub node: u16,
}

impl PodEntry {
    pub const NO_NODE: u16 = u16::MAX;
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
    /// Pod IPs, sorted, with their namespace and node.
    pub pods: Vec<PodEntry>,
    /// The nodes pods run on (`spec.nodeName`), sorted; `PodEntry::node` indexes it.
    pub nodes: Vec<String>,
    /// Not every watch has listed yet (the API source before its first sync): a name the state does
    /// not know may still exist, so the `kubernetes` plugin answers SERVFAIL where it would say
    /// NXDOMAIN, as CoreDNS does (sources.md#coredns-kubernetes). A file is always complete.
    pub unsynced: bool,
}

impl ClusterState {
    /// Loads a List from a YAML or JSON file (JSON is YAML, so one parser reads both).
    pub fn load(path: &Path) -> Result<ClusterState, ClusterError> {
        let text = std::fs::read_to_string(path).map_err(|err| ClusterError::Read { file: path.display().to_string(), err })?;
        ClusterState::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, file: &str) -> Result<ClusterState, ClusterError> {
        Ok(ClusterState::build(&ClusterObjects::parse(text, file)?))
    }

    /// The one place a `ClusterState` is made: from the objects a file listed or a watch delivered.
    pub fn build(objs: &ClusterObjects) -> ClusterState {
        ClusterState::build_in(objs, false)
    }

    /// As `build`; with `namespaces_required`, a Service (and so its slices) counts only while its
    /// Namespace exists, as the API source needs. Pods always need their namespace (their index).
    pub fn build_in(objs: &ClusterObjects, namespaces_required: bool) -> ClusterState {
        let mut st = ClusterState { namespaces: objs.namespaces.iter().cloned().collect(), ..ClusterState::default() };
        for ((ns, name), o) in &objs.services {
            if namespaces_required && !objs.namespaces.contains(ns) {
                continue;
            }
            st.services.insert(
                (ns.clone(), name.clone()),
                Service {
                    name: name.clone(),
                    namespace: ns.clone(),
                    kind: o.kind.clone(),
                    ports: o.ports.clone(),
                    endpoints: Vec::new(),
                    endpoint_ports: Vec::new(),
                },
            );
        }
        for s in objs.slices.values() {
            let Some(service) = st.services.get_mut(&s.service) else { continue };
            service.endpoints.extend(s.endpoints.iter().cloned());
            for port in &s.ports {
                if !service.endpoint_ports.contains(port) {
                    service.endpoint_ports.push(port.clone());
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
        st.nodes = objs.pods.values().filter(|p| !p.node.is_empty()).map(|p| p.node.clone()).collect();
        st.nodes.sort();
        st.nodes.dedup();
        for ((ns, _), p) in &objs.pods {
            let Ok(ns_idx) = st.namespaces.binary_search(ns) else { continue };
            let node = st.nodes.binary_search(&p.node).ok().and_then(|i| u16::try_from(i).ok()).filter(|i| *i != PodEntry::NO_NODE);
            for ip in &p.ips {
                st.pods.push(PodEntry { ip: *ip, namespace: ns_idx as u32, node: node.unwrap_or(PodEntry::NO_NODE) });
            }
        }
        st.pods.sort();
        st.pods.dedup_by_key(|p| p.ip);
        st
    }

    fn pod(&self, ip: IpAddr) -> Option<&PodEntry> {
        self.pods.binary_search_by(|p| p.ip.cmp(&ip)).ok().map(|i| &self.pods[i])
    }

    /// The namespace of the pod with this IP, if any (autopath, `pods verified`).
    pub fn pod_namespace(&self, ip: IpAddr) -> Option<&str> {
        self.namespaces.get(self.pod(ip)?.namespace as usize).map(String::as_str)
    }

    /// The node the pod with this IP runs on, if known (`pods verified`; the detectors).
    pub fn pod_node(&self, ip: IpAddr) -> Option<&str> {
        self.nodes.get(usize::from(self.pod(ip)?.node)).map(String::as_str)
    }

    /// How many ready endpoints share the Service that has `ip` as an endpoint (a replica behind
    /// kube-dns: the replicas a client's connections are spread over); 1 for an address that is
    /// no endpoint (a node-local cache, a server outside the cluster).
    pub fn replicas_of(&self, ip: IpAddr) -> u32 {
        match self.reverse.get(&ip) {
            Some((ns, name, Some(_))) => {
                self.services.get(&(ns.clone(), name.clone())).map_or(1, |s| s.endpoints.iter().filter(|e| e.ready).count().max(1) as u32)
            }
            _ => 1,
        }
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
            + self.namespaces.iter().chain(&self.dns_namespaces).chain(&self.nodes).map(|n| n.len() + 24).sum::<usize>()
    }

    /// Heap bytes the pod index uses per pod (reported for autopath's memory, issue 2).
    pub const BYTES_PER_POD: usize = std::mem::size_of::<PodEntry>();
}

impl ClusterObjects {
    /// Reads a List (YAML or JSON) into objects; errors name the file, line and column.
    pub fn parse(text: &str, file: &str) -> Result<ClusterObjects, ClusterError> {
        let list: List = serde_yaml_ng::from_str(text).map_err(|e| {
            let (line, col) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
            ClusterError::Parse {
                file: file.to_string(),
                line,
                col,
                msg: format!("{e}; expected a Kubernetes List (kubectl get ... -o yaml)"),
            }
        })?;
        Ok(ClusterObjects::from_list(list))
    }
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
  spec: {nodeName: worker-1}
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
        assert_eq!(st.pod_node("10.244.1.5".parse().expect("ip")), Some("worker-1"));
        assert_eq!(st.pod_node("10.244.1.6".parse().expect("ip")), None, "not a pod");
        assert_eq!(st.reverse.len(), 2, "the ClusterIP and the one ready endpoint");
        assert_eq!(st.replicas_of("10.244.1.5".parse().expect("ip")), 1, "one ready endpoint of web");
        assert_eq!(st.replicas_of("10.96.0.20".parse().expect("ip")), 1, "the ClusterIP is no endpoint");
        let two = SAMPLE.replace("conditions: {ready: false}", "conditions: {ready: true}");
        let st = ClusterState::parse(&two, "state.yaml").expect("parses");
        assert_eq!(st.replicas_of("10.244.1.6".parse().expect("ip")), 2);
    }

    #[test]
    fn the_pod_index_keeps_24_bytes_per_pod_with_the_node() {
        assert_eq!(ClusterState::BYTES_PER_POD, 24);
        let unscheduled = SAMPLE.replace("  spec: {nodeName: worker-1}\n", "");
        let st = ClusterState::parse(&unscheduled, "state.yaml").expect("parses");
        assert_eq!(st.pod_namespace("10.244.1.5".parse().expect("ip")), Some("default"));
        assert_eq!(st.pod_node("10.244.1.5".parse().expect("ip")), None, "no node before scheduling");
        assert!(st.nodes.is_empty());
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
