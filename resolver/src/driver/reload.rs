//! Watching files: the cluster-state file polled for changes, the Corefile reloaded when its
//! digest changes (`reload`).

use crate::cluster::{ClusterSource, FileSource};
use crate::config::Config;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info, warn};

use super::{Shared, for_worker, listen_addrs};

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
        match Config::load(&conf) {
            Ok(cfg) => {
                let old = shared.server.borrow().config().clone();
                if listen_addrs(&old) != listen_addrs(&cfg) {
                    warn!("reload: listen addresses changed; they take effect at the next restart");
                }
                let now = shared.now();
                shared.server.borrow_mut().reconfigure(now, Arc::new(for_worker(&cfg, shared.hub.workers)));
                info!(file = %conf.display(), "reloaded configuration");
            }
            Err(e) => error!("reload: {e}; keeping the running configuration"),
        }
    }
}
