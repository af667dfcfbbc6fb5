//! Node-local mode's `stale_conntrack` feed (`detect::conntrack`): the DNS Services and their
//! ready endpoints from the API, and every `detect { conntrack_scan }` the node's UDP conntrack
//! entries to them, read over ctnetlink (the `conntrack` crate: what `conntrack -L` lists).
//!
//! The watch is narrow: Services and EndpointSlices in `kube-system` only, the slices selected by
//! `kubernetes.io/service-name in (kube-dns, <-upstreamsvc>)`, so a DaemonSet on every node adds
//! two small watches per node, and RBAC is a Role in `kube-system` (deploy/node-local-dns.yaml).
//! Without an API client (no service account, no kubeconfig) the detector stays off and says so
//! once; a failing watch or dump is logged once per outage and retried.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::detect::{CtFlow, DnsService};

use super::Shared;

/// The namespace the cluster DNS Services live in (node-cache's too).
const NAMESPACE: &str = "kube-system";

/// The DNS Services as the API has them, published on every change.
pub type Services = watch::Receiver<Arc<Vec<DnsService>>>;

/// Starts the watch of `kube-dns` and `upstream_svc` on its own thread. The receiver holds an
/// empty list until the API answers (and for ever without a client: the detector then judges
/// nothing).
pub fn watch_services(upstream_svc: &str) -> Services {
    let (tx, rx) = watch::channel(Arc::new(Vec::new()));
    let mut names = vec!["kube-dns".to_string()];
    if upstream_svc != "kube-dns" && !upstream_svc.is_empty() {
        names.push(upstream_svc.to_string());
    }
    let spawned = std::thread::Builder::new().name("ndots-dns-eps".into()).spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async move {
            match Client::try_default().await {
                Ok(c) => watch(c, names, tx).await,
                Err(e) => warn!("stale_conntrack: no Kubernetes API client ({e}); the detector stays off"),
            }
        });
    });
    if let Err(e) = spawned {
        warn!("stale_conntrack: cannot start the API watch: {e}");
    }
    rx
}

/// The Services named, with their cluster IPs and the ready endpoints of their slices.
fn services(names: &[String], svcs: &Store<Service>, slices: &Store<EndpointSlice>) -> Vec<DnsService> {
    let mut out: BTreeMap<String, DnsService> = BTreeMap::new();
    for s in svcs.state() {
        let Some(name) = s.metadata.name.clone().filter(|n| names.contains(n)) else { continue };
        let spec = s.spec.as_ref();
        let ips = spec.and_then(|sp| sp.cluster_ips.clone().or_else(|| sp.cluster_ip.clone().map(|i| vec![i]))).unwrap_or_default();
        let ips = ips.iter().filter_map(|i| i.parse().ok()).collect();
        out.insert(name.clone(), DnsService { name, ips, endpoints: Vec::new() });
    }
    for sl in slices.state() {
        let svc = sl.metadata.labels.as_ref().and_then(|l| l.get("kubernetes.io/service-name"));
        let Some(d) = svc.and_then(|n| out.get_mut(n)) else { continue };
        for ep in &sl.endpoints {
            // An endpoint without a ready condition is ready (the EndpointSlice API's rule).
            if ep.conditions.as_ref().and_then(|c| c.ready) != Some(false) {
                d.endpoints.extend(ep.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok()));
            }
        }
    }
    let mut v: Vec<DnsService> = out.into_values().collect();
    for d in &mut v {
        d.endpoints.sort_unstable();
        d.endpoints.dedup();
    }
    v
}

async fn watch(client: Client, names: Vec<String>, tx: watch::Sender<Arc<Vec<DnsService>>>) {
    let (svc_store, svc_writer) = reflector::store::<Service>();
    let (slice_store, slice_writer) = reflector::store::<EndpointSlice>();
    let selector = format!("kubernetes.io/service-name in ({})", names.join(","));
    let svcs = reflector::reflector(svc_writer, watcher(Api::<Service>::namespaced(client.clone(), NAMESPACE), watcher::Config::default()))
        .default_backoff()
        .map(|r| r.map(|_| ()));
    let slices = reflector::reflector(
        slice_writer,
        watcher(Api::<EndpointSlice>::namespaced(client, NAMESPACE), watcher::Config::default().labels(&selector)),
    )
    .default_backoff()
    .map(|r| r.map(|_| ()));
    let mut events = futures::stream::select(svcs.boxed(), slices.boxed());
    let mut failing = false;
    while let Some(ev) = events.next().await {
        match ev {
            Ok(()) => {
                if std::mem::take(&mut failing) {
                    info!("stale_conntrack: the DNS Services' watch resumed");
                }
            }
            Err(e) => {
                if !failing {
                    warn!(
                        "stale_conntrack: watching the DNS Services in {NAMESPACE} failed (it retries; RBAC: list and watch on services and endpointslices there, the Role in the node-local manifest): {e}"
                    );
                }
                failing = true;
                continue;
            }
        }
        let now = services(&names, &svc_store, &slice_store);
        if **tx.borrow() != now {
            if tx.borrow().is_empty() {
                info!(services = now.len(), "stale_conntrack: the DNS Services are known; scanning conntrack");
            }
            tx.send_replace(Arc::new(now));
        }
    }
}

/// The node's UDP conntrack entries to port 53 of `to` (ctnetlink; NET_ADMIN).
pub fn dump(to: &[IpAddr]) -> Result<Vec<CtFlow>, String> {
    let ct = conntrack::Conntrack::connect().map_err(|e| format!("ctnetlink: {e}"))?;
    let flows = ct.dump().map_err(|e| format!("ctnetlink dump: {e}"))?;
    let mut out = Vec::new();
    for f in flows {
        let (Some(o), Some(r)) = (f.origin.as_ref(), f.reply.as_ref()) else { continue };
        let Some(op) = o.proto.as_ref() else { continue };
        if op.number != Some(conntrack::model::IpProto::Udp) || op.dst_port != Some(53) {
            continue;
        }
        let (Some(src), Some(dst), Some(sport), Some(backend)) = (o.src, o.dst, op.src_port, r.src) else { continue };
        if !to.contains(&dst) {
            continue;
        }
        out.push(CtFlow {
            client: SocketAddr::new(src, sport),
            service: SocketAddr::new(dst, 53),
            backend,
            expires_in: f.timeout.unwrap_or_default(),
        });
    }
    Ok(out)
}

/// Worker 0's task: every `conntrack_scan` (read from the running configuration, so a reload
/// that turns the detector off stops the scans), the node's table into the detector.
pub(super) async fn scanner(shared: Rc<Shared>, services: Services) {
    let mut failing = false;
    loop {
        let every = shared.server.borrow().conntrack_scan_every();
        tokio::time::sleep(every.unwrap_or(Duration::from_secs(10))).await;
        let svcs = services.borrow().clone();
        if every.is_none() || svcs.iter().all(|s| s.ips.is_empty()) {
            continue;
        }
        let to: Vec<IpAddr> = svcs.iter().flat_map(|s| s.ips.iter().copied()).collect();
        match tokio::task::spawn_blocking(move || dump(&to)).await {
            Ok(Ok(flows)) => {
                if std::mem::take(&mut failing) {
                    info!("stale_conntrack: reading conntrack works again");
                }
                let now = shared.now();
                shared.server.borrow_mut().handle_conntrack(now, &svcs, &flows);
            }
            Ok(Err(e)) => {
                if !failing {
                    warn!("stale_conntrack: cannot read the node's conntrack table (needs NET_ADMIN in the host network): {e}");
                }
                failing = true;
            }
            Err(e) => warn!("stale_conntrack: the conntrack reader panicked: {e}"),
        }
    }
}
