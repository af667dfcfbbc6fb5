//! Watching for changes: the cluster state (published by the API watch, or a file polled), the
//! Corefile reloaded when its digest changes (`reload`).

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::cluster::{ClusterError, ClusterState};
use crate::config::Config;

use super::{Shared, listen_addrs};

/// Hands every state the API watch publishes to this worker's server.
pub(super) async fn api_watch(shared: Rc<Shared>, mut rx: tokio::sync::watch::Receiver<Arc<ClusterState>>) {
    while rx.changed().await.is_ok() {
        let state = rx.borrow_and_update().clone();
        let now = shared.now();
        shared.server.borrow_mut().handle_cluster_state(now, state);
    }
}

/// How often the cluster-state file is checked for changes.
pub(super) const CLUSTER_POLL: Duration = Duration::from_secs(2);

pub(super) async fn cluster_watch(shared: Rc<Shared>, cfg: Arc<Config>) {
    let Some(path) = cfg.servers.iter().find_map(|s| s.kubernetes.as_ref()).and_then(|k| k.cluster_state.clone()) else { return };
    let mut source = FileSource::new(path.clone());
    // The first poll returns the state already loaded at start.
    let _ = source.poll();
    loop {
        tokio::time::sleep(CLUSTER_POLL).await;
        match source.poll() {
            Ok(Some(state)) => {
                info!(file = %path.display(), services = state.services.len(), pods = state.pods.len(), "cluster state reloaded");
                let now = shared.now();
                shared.server.borrow_mut().handle_cluster_state(now, Arc::new(state));
            }
            Ok(None) => {}
            Err(e) => error!("cluster state: {e}; keeping the previous state"),
        }
    }
}

pub(super) async fn reload_watch(shared: Rc<Shared>, conf: PathBuf, interval: Duration, jitter: Duration) {
    let mut last = std::fs::read(&conf).ok();
    loop {
        let j = jitter.as_millis() as u64;
        let extra = if j > 0 { shared.rng.borrow_mut().u64(..j) } else { 0 };
        tokio::time::sleep(interval + Duration::from_millis(extra)).await;
        let now_bytes = std::fs::read(&conf).ok();
        if now_bytes == last {
            continue;
        }
        last = now_bytes;
        match super::load_config(&conf) {
            Ok(cfg) => {
                let old = shared.server.borrow().config().clone();
                if listen_addrs(&old) != listen_addrs(&cfg) {
                    warn!("reload: listen addresses changed; they take effect at the next restart");
                }
                let kube = |c: &Config| c.servers.iter().find_map(|s| s.kubernetes.clone());
                let same_watch = match (kube(&old), kube(&cfg)) {
                    (Some(a), Some(b)) => a.same_watch(&b) && old.watches_pods() == cfg.watches_pods(),
                    (None, None) => true,
                    _ => false,
                };
                if !same_watch && shared.id == 0 {
                    // The watch is one per process, started with the process (CoreDNS restarts its
                    // plugins on reload; ndots does not restart the watch yet).
                    warn!(
                        "reload: the kubernetes plugin's source changed (endpoint, kubeconfig, tls, labels, namespace_labels, pods verified or autopath @kubernetes, noendpoints, cluster_state, or the plugin added or removed); the running watch keeps its settings until the next restart"
                    );
                }
                let now = shared.now();
                shared.server.borrow_mut().reconfigure(now, Arc::new(cfg));
                info!(file = %conf.display(), "reloaded configuration");
            }
            Err(e) => error!("reload: {e}; keeping the running configuration"),
        }
    }
}

/// Where cluster state comes from. The file source is the only one today; an API watch would be another.
pub(super) trait ClusterSource {
    /// Returns new state when it changed since the last call (None: unchanged).
    fn poll(&mut self) -> Result<Option<ClusterState>, ClusterError>;
}

/// Reads a List file, again whenever its modification time or length changes.
pub(super) struct FileSource {
    path: PathBuf,
    seen: Option<(std::time::SystemTime, u64)>,
}

impl FileSource {
    pub(super) fn new(path: PathBuf) -> Self {
        FileSource { path, seen: None }
    }
}

impl ClusterSource for FileSource {
    fn poll(&mut self) -> Result<Option<ClusterState>, ClusterError> {
        let meta = std::fs::metadata(&self.path).map_err(|err| ClusterError::Read { file: self.path.display().to_string(), err })?;
        let stamp = (meta.modified().unwrap_or(std::time::UNIX_EPOCH), meta.len());
        if self.seen == Some(stamp) {
            return Ok(None);
        }
        let state = ClusterState::load(&self.path)?;
        self.seen = Some(stamp);
        Ok(Some(state))
    }
}
