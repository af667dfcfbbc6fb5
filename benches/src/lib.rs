//! Benchmarks live in benches/; this library holds what several of them share, and the floor
//! responder `cargo xtask bench dns` measures the servers against (`floor`, binary `dns-floor`).

pub mod floor;

use resolver::cluster::{Kind, Object, WatchEvent, Watched};
use serde_json::{Value, json};

/// A synthetic cluster as the API serves it: `services` Services over 100 namespaces, one
/// EndpointSlice per Service with `endpoints_per_service` ready endpoints (each a pod with a
/// `targetRef`), and `pods` Pods. Objects carry the labels, annotations and status fields real ones
/// do, so what the reduction drops is dropped here too.
pub struct SyntheticCluster {
    pub services: usize,
    pub endpoints_per_service: usize,
    pub pods: usize,
}

fn ip(base: u32, i: usize) -> String {
    std::net::Ipv4Addr::from(base + i as u32).to_string()
}

impl SyntheticCluster {
    pub fn namespace(i: usize) -> Value {
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("team-{i:03}"),
            "labels": {"kubernetes.io/metadata.name": format!("team-{i:03}")}, "resourceVersion": "1"},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
    }

    pub fn service(i: usize) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("svc-{i:05}"), "namespace": format!("team-{:03}", i % 100),
            "labels": {"app": format!("svc-{i:05}"), "team": format!("team-{:03}", i % 100)},
            "annotations": {"meta.helm.sh/release-name": format!("svc-{i:05}")}, "resourceVersion": "2", "uid": format!("00000000-0000-0000-0000-{i:012}")},
            "spec": {"clusterIP": ip(0x0a60_0000, i + 100), "clusterIPs": [ip(0x0a60_0000, i + 100)], "type": "ClusterIP",
                "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}, {"name": "metrics", "port": 9090, "protocol": "TCP", "targetPort": 9090}],
                "selector": {"app": format!("svc-{i:05}")}, "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"},
            "status": {"loadBalancer": {}}})
    }

    pub fn slice(&self, i: usize) -> Value {
        let endpoints: Vec<Value> = (0..self.endpoints_per_service)
            .map(|e| {
                let n = i * self.endpoints_per_service + e;
                json!({"addresses": [ip(0x0af4_0000, n)], "conditions": {"ready": true, "serving": true, "terminating": false},
                    "nodeName": format!("node-{:04}", n % 1000), "zone": "eu-west-1a",
                    "targetRef": {"kind": "Pod", "name": format!("svc-{i:05}-{e:02}-abcde"), "namespace": format!("team-{:03}", i % 100), "uid": format!("u-{n}")}})
            })
            .collect();
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": format!("svc-{i:05}-x7k2p"), "namespace": format!("team-{:03}", i % 100),
                "labels": {"kubernetes.io/service-name": format!("svc-{i:05}"), "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
                "resourceVersion": "3"},
            "endpoints": endpoints,
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "metrics", "port": 9090, "protocol": "TCP"}]})
    }

    pub fn pod(i: usize) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("pod-{i:06}"), "namespace": format!("team-{:03}", i % 100),
            "labels": {"app": "x"}, "resourceVersion": "4"},
            "spec": {"nodeName": format!("node-{:04}", i % 1000), "containers": [{"name": "app", "image": "registry/app:1"}]},
            "status": {"phase": "Running", "podIP": ip(0x0af4_0000, i), "podIPs": [{"ip": ip(0x0af4_0000, i)}], "hostIP": "10.0.0.1"}})
    }

    /// Lists every kind into `w` as a watcher's first lists would; `pods` only when watched.
    pub fn list_into(&self, w: &mut Watched, kinds: &[Kind]) {
        let reduce = |v: Value| Object::from_json(v).expect("a valid object");
        for &kind in kinds {
            w.handle(kind, WatchEvent::Init);
            let n = match kind {
                Kind::Namespace => 100,
                Kind::Service | Kind::EndpointSlice => self.services,
                Kind::Pod => self.pods,
            };
            for i in 0..n {
                let v = match kind {
                    Kind::Namespace => Self::namespace(i),
                    Kind::Service => Self::service(i),
                    Kind::EndpointSlice => self.slice(i),
                    Kind::Pod => Self::pod(i),
                };
                w.handle(kind, WatchEvent::InitApply(reduce(v)));
            }
            w.handle(kind, WatchEvent::InitDone);
        }
    }
}
