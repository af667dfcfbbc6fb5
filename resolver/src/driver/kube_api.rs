//! The Kubernetes API as the cluster-state source: the `kubernetes` plugin for real.
//!
//! One thread per process (not per worker) runs kube-runtime watchers for Namespaces, Services,
//! EndpointSlices (unless `noendpoints`) and Pods (only with `pods verified`), each relisting with
//! backoff when its watch fails (410 Gone, a dropped stream, a 5xx). Every object is reduced on
//! arrival to what DNS needs (`cluster::Object`); `cluster::Watched` applies the events and swaps a
//! relist in whole, and every change is published to the workers as a new `Arc<ClusterState>` on a
//! `watch` channel (a pointer swap for them). While the apiserver is away the last state is served.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use serde::Serialize;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::cluster::{ClusterState, Kind, Object, WatchEvent, Watched};
use crate::config::KubernetesConfig;

use super::DriverError;

/// Starts the watches on their own thread. The receiver holds an unsynced empty state until every
/// watch has listed once, then each new state. A configuration that cannot make a client (no
/// in-cluster service account outside a cluster, an unreadable kubeconfig) is an error here, at
/// start-up, as it is for CoreDNS; an apiserver that does not answer is not (the watches retry).
/// `pods`: watch Pods too (`Config::watches_pods`: `pods verified` or `autopath @kubernetes`).
pub(super) fn start(k: &KubernetesConfig, pods: bool) -> Result<watch::Receiver<Arc<ClusterState>>, DriverError> {
    let (tx, rx) = watch::channel(Arc::new(ClusterState { unsynced: true, ..ClusterState::default() }));
    let (made, made_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let kc = k.clone();
    std::thread::Builder::new().name("ndots-kube".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return drop(made.send(Err(format!("cannot start the API client's runtime: {e}")))),
        };
        rt.block_on(async move {
            match client(&kc).await {
                Ok(c) => {
                    let _ = made.send(Ok(()));
                    watch_all(&kc, pods, c, tx).await;
                }
                Err(e) => drop(made.send(Err(e))),
            }
        });
    })?;
    match made_rx.recv() {
        Ok(Ok(())) => Ok(rx),
        Ok(Err(e)) => Err(DriverError::Config(crate::corefile::ConfigError::at(&k.pos, format!("kubernetes: {e}")))),
        Err(_) => Err(DriverError::Halted("kubernetes: the API client's thread ended".into())),
    }
}

/// Waits up to `timeout` for the first sync, as CoreDNS's startup does (it logs the same lines).
pub(super) fn wait_for_sync(rx: &watch::Receiver<Arc<ClusterState>>, timeout: Duration) {
    let t0 = Instant::now();
    let mut next_log = t0;
    while rx.borrow().unsynced {
        let now = Instant::now();
        if now >= t0 + timeout {
            warn!("starting server with unsynced Kubernetes API");
            return;
        }
        if now >= next_log {
            info!("waiting for Kubernetes API before starting server");
            next_log = now + Duration::from_millis(500);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The client, configured as CoreDNS's plugin is: `kubeconfig FILE [CONTEXT]`, else `endpoint URL`
/// (with `tls CERT KEY CACERT`), else in-cluster (the service account's token and CA,
/// `KUBERNETES_SERVICE_HOST`/`_PORT`).
async fn client(k: &KubernetesConfig) -> Result<Client, String> {
    let config = if let Some((file, context)) = &k.api.kubeconfig {
        let kc = Kubeconfig::read_from(file).map_err(|e| format!("kubeconfig {}: {e}", file.display()))?;
        let opts = KubeConfigOptions { context: context.clone(), ..KubeConfigOptions::default() };
        kube::Config::from_custom_kubeconfig(kc, &opts).await.map_err(|e| format!("kubeconfig {}: {e}", file.display()))?
    } else if let Some(url) = &k.api.endpoint {
        // A kubeconfig of one cluster and one user, so kube reads the certificate files itself.
        let tls = k.api.tls.as_ref();
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {url}\n{}users:\n- name: u\n  user:\n{}contexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
            tls.map_or(String::new(), |t| format!("    certificate-authority: {}\n", t[2].display())),
            tls.map_or("    {}\n".to_string(), |t| format!(
                "    client-certificate: {}\n    client-key: {}\n",
                t[0].display(),
                t[1].display()
            )),
        );
        let kc = Kubeconfig::from_yaml(&text).map_err(|e| format!("endpoint {url}: {e}"))?;
        kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.map_err(|e| format!("endpoint {url}: {e}"))?
    } else {
        kube::Config::incluster()
            .map_err(|e| format!("in-cluster configuration: {e} (outside a cluster, use `kubeconfig FILE` or `endpoint URL`)"))?
    };
    Client::try_from(config).map_err(|e| format!("API client: {e}"))
}

/// One kind's watch as a stream of (kind, event) with the object already reduced.
fn stream<K>(
    api: Api<K>,
    kind: Kind,
    cfg: watcher::Config,
) -> impl futures::Stream<Item = (Kind, Result<WatchEvent, watcher::Error>)> + Send + 'static
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Serialize + Send + Sync + 'static,
{
    let reduce = |o: K| serde_json::to_value(o).ok().and_then(Object::from_json);
    watcher::watcher(api, cfg).default_backoff().filter_map(move |r| {
        let out = match r {
            Ok(Event::Apply(o)) => reduce(o).map(|o| Ok(WatchEvent::Apply(o))),
            Ok(Event::Delete(o)) => reduce(o).map(|o| Ok(WatchEvent::Delete(o))),
            Ok(Event::Init) => Some(Ok(WatchEvent::Init)),
            Ok(Event::InitApply(o)) => reduce(o).map(|o| Ok(WatchEvent::InitApply(o))),
            Ok(Event::InitDone) => Some(Ok(WatchEvent::InitDone)),
            Err(e) => Some(Err(e)),
        };
        std::future::ready(out.map(|e| (kind, e)))
    })
}

async fn watch_all(k: &KubernetesConfig, pods: bool, client: Client, tx: watch::Sender<Arc<ClusterState>>) {
    let mut base = watcher::Config::default();
    if let Some(l) = &k.labels {
        base = base.labels(l);
    }
    let mut ns_cfg = watcher::Config::default();
    if let Some(l) = &k.namespace_labels {
        ns_cfg = ns_cfg.labels(l);
    }
    let mut kinds = vec![Kind::Namespace, Kind::Service];
    let mut streams = vec![
        stream(Api::<Namespace>::all(client.clone()), Kind::Namespace, ns_cfg).boxed(),
        stream(Api::<Service>::all(client.clone()), Kind::Service, base.clone()).boxed(),
    ];
    if !k.noendpoints {
        kinds.push(Kind::EndpointSlice);
        streams.push(stream(Api::<EndpointSlice>::all(client.clone()), Kind::EndpointSlice, base.clone()).boxed());
    }
    if pods {
        // As CoreDNS: pods that are gone or finished are not watched.
        let pods = base.clone().fields("status.phase!=Succeeded,status.phase!=Failed,status.phase!=Unknown");
        kinds.push(Kind::Pod);
        streams.push(stream(Api::<Pod>::all(client.clone()), Kind::Pod, pods).boxed());
    }
    let mut events = futures::stream::select_all(streams);
    let mut watched = Watched::requiring_namespaces(&kinds);
    let mut published = 0;
    let mut failing = false;
    while let Some((kind, ev)) = events.next().await {
        let mut apply = |kind: Kind, ev: Result<WatchEvent, watcher::Error>, failing: &mut bool| match ev {
            Ok(ev) => {
                if std::mem::take(failing) {
                    info!("kubernetes: API watch resumed");
                }
                watched.handle(kind, ev);
            }
            Err(e) => {
                // The watcher relists after its backoff; the last state stays served meanwhile.
                if !*failing {
                    warn!("kubernetes: API watch failed, serving the last state while it retries: {e}");
                }
                *failing = true;
            }
        };
        apply(kind, ev, &mut failing);
        // Whatever else is ready already goes into the same new state.
        while let Some(Some((kind, ev))) = events.next().now_or_never() {
            apply(kind, ev, &mut failing);
        }
        if watched.synced() && watched.generation() != published {
            published = watched.generation();
            let state = watched.state();
            let first = tx.borrow().unsynced;
            if first {
                info!(
                    services = state.services.len(),
                    namespaces = state.namespaces.len(),
                    pods = state.pods.len(),
                    "kubernetes: synced with the API"
                );
            }
            tx.send_replace(Arc::new(state));
        }
    }
}
