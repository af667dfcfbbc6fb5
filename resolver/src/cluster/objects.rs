//! What DNS needs of each Kubernetes object, and nothing more: a Namespace's name; a Service's kind
//! (ClusterIPs, headless, ExternalName) and ports; an EndpointSlice's service, endpoints and ports; a
//! Pod's IPs. Objects are read from the List format's items (serde), whether a file listed them or
//! the API watch delivered them (the driver serialises the API's objects and reads them back here),
//! so there is one reading of every field, and `ClusterState::build` is the one place state is made.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Deserialize;

use super::{Endpoint, Port, ServiceKind};

#[derive(Deserialize)]
pub(super) struct List {
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
    endpoints: Option<Vec<SliceEndpoint>>,
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

/// (namespace, name) of an object.
pub type Key = (String, String);

/// The kinds the `kubernetes` plugin watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Namespace,
    Service,
    EndpointSlice,
    Pod,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Namespace, Kind::Service, Kind::EndpointSlice, Kind::Pod];
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceObj {
    pub kind: ServiceKind,
    pub ports: Vec<Port>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceObj {
    /// The Service it belongs to (`kubernetes.io/service-name`), as a service key.
    pub service: Key,
    pub endpoints: Vec<Endpoint>,
    pub ports: Vec<Port>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodObj {
    /// Empty for a hostNetwork pod: it shares the node's IP and cannot be told apart by source IP
    /// (coredns#7120).
    pub ips: Vec<IpAddr>,
    /// `spec.nodeName`: the node it was scheduled to (empty before scheduling). The detectors name
    /// a client's node by it.
    pub node: String,
}

/// One object, reduced to what DNS needs, with its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Namespace(String),
    Service(Key, ServiceObj),
    EndpointSlice(Key, SliceObj),
    Pod(Key, PodObj),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Namespace(_) => Kind::Namespace,
            Object::Service(..) => Kind::Service,
            Object::EndpointSlice(..) => Kind::EndpointSlice,
            Object::Pod(..) => Kind::Pod,
        }
    }

    /// An object as the API serialises it (`apiVersion`, `kind`, `metadata`, ...). None for another
    /// kind or a shape that is not an object.
    pub fn from_json(value: serde_json::Value) -> Option<Object> {
        Object::from_item(serde_json::from_value(value).ok()?, None)
    }

    /// `index` names an object that has no name (only a hand-written file can hold one) so that it
    /// is kept, as the List holds it, instead of colliding with another nameless one.
    fn from_item(it: Item, index: Option<usize>) -> Option<Object> {
        let name = match (it.metadata.name.is_empty(), index) {
            (true, Some(i)) => format!("#{i}"),
            _ => it.metadata.name,
        };
        Some(match it.kind.as_str() {
            "Namespace" => Object::Namespace(name),
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
                let key = (it.metadata.namespace.to_ascii_lowercase(), name.to_ascii_lowercase());
                Object::Service(key, ServiceObj { kind, ports })
            }
            "EndpointSlice" => {
                let service = it.metadata.labels.get("kubernetes.io/service-name").map(|s| s.to_ascii_lowercase()).unwrap_or_default();
                let mut endpoints = Vec::new();
                for e in it.endpoints.unwrap_or_default() {
                    let pod_name = e.target_ref.filter(|t| t.kind == "Pod").map(|t| t.name);
                    // EndpointSlice: a missing `ready` condition means ready (discovery.k8s.io/v1 API doc).
                    let ready = e.conditions.ready.unwrap_or(true);
                    for a in e.addresses {
                        if let Ok(ip) = a.parse() {
                            endpoints.push(Endpoint { ip, hostname: e.hostname.clone(), pod_name: pod_name.clone(), ready });
                        }
                    }
                }
                let ports = it
                    .ports
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|p| {
                        Some(Port {
                            name: p.name.unwrap_or_default(),
                            port: p.port?,
                            protocol: p.protocol.unwrap_or_else(|| "TCP".into()).to_ascii_lowercase(),
                        })
                    })
                    .collect();
                let service = (it.metadata.namespace.to_ascii_lowercase(), service);
                Object::EndpointSlice((it.metadata.namespace, name), SliceObj { service, endpoints, ports })
            }
            "Pod" => {
                let host_network = it.spec.get("hostNetwork").and_then(|v| v.as_bool()) == Some(true);
                let ips: Vec<IpAddr> = if host_network {
                    Vec::new()
                } else {
                    it.status
                        .get("podIPs")
                        .and_then(|v| v.as_array())
                        .map(|a| a.iter().filter_map(|v| v.get("ip")?.as_str()?.parse().ok()).collect())
                        .filter(|v: &Vec<IpAddr>| !v.is_empty())
                        .or_else(|| it.status.get("podIP").and_then(|v| v.as_str()).and_then(|s| s.parse().ok()).map(|ip| vec![ip]))
                        .unwrap_or_default()
                };
                let node = it.spec.get("nodeName").and_then(|v| v.as_str()).unwrap_or("").to_string();
                Object::Pod((it.metadata.namespace, name), PodObj { ips, node })
            }
            _ => return None,
        })
    }
}

/// Every watched object, by kind and key: what a file lists, or what the watches have delivered.
/// Maps, not lists, so a watch's updates and deletes apply by key; iterated in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterObjects {
    pub namespaces: BTreeSet<String>,
    pub services: BTreeMap<Key, ServiceObj>,
    pub slices: BTreeMap<Key, SliceObj>,
    pub pods: BTreeMap<Key, PodObj>,
}

impl ClusterObjects {
    pub(super) fn from_list(list: List) -> ClusterObjects {
        let mut objs = ClusterObjects::default();
        for (i, it) in list.items.into_iter().enumerate() {
            if let Some(o) = Object::from_item(it, Some(i)) {
                objs.insert(o);
            }
        }
        objs
    }

    /// Adds or replaces an object.
    pub fn insert(&mut self, o: Object) {
        match o {
            Object::Namespace(n) => {
                self.namespaces.insert(n);
            }
            Object::Service(k, s) => {
                self.services.insert(k, s);
            }
            Object::EndpointSlice(k, s) => {
                self.slices.insert(k, s);
            }
            Object::Pod(k, p) => {
                self.pods.insert(k, p);
            }
        }
    }

    /// Removes the object with this one's key.
    pub fn remove(&mut self, o: &Object) {
        match o {
            Object::Namespace(n) => {
                self.namespaces.remove(n);
            }
            Object::Service(k, _) => {
                self.services.remove(k);
            }
            Object::EndpointSlice(k, _) => {
                self.slices.remove(k);
            }
            Object::Pod(k, _) => {
                self.pods.remove(k);
            }
        }
    }

    /// Empties one kind.
    pub fn clear(&mut self, kind: Kind) {
        match kind {
            Kind::Namespace => self.namespaces.clear(),
            Kind::Service => self.services.clear(),
            Kind::EndpointSlice => self.slices.clear(),
            Kind::Pod => self.pods.clear(),
        }
    }

    /// Moves one kind's objects in from `other` (a finished relist), leaving the other kinds alone.
    pub fn replace_kind(&mut self, kind: Kind, other: &mut ClusterObjects) {
        match kind {
            Kind::Namespace => self.namespaces = std::mem::take(&mut other.namespaces),
            Kind::Service => self.services = std::mem::take(&mut other.services),
            Kind::EndpointSlice => self.slices = std::mem::take(&mut other.slices),
            Kind::Pod => self.pods = std::mem::take(&mut other.pods),
        }
    }

    /// Objects held, all kinds.
    pub fn len(&self) -> usize {
        self.namespaces.len() + self.services.len() + self.slices.len() + self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
