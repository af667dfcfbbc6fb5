//! The `kubernetes` plugin's configuration (sources.md#coredns-kubernetes).

use std::path::{Path, PathBuf};

use crate::corefile::{ConfigError, Directive, Pos};

use super::args::{Args, num, unknown_option, zones_or_server};
use super::{ServerConfig, zone_wire};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodsMode {
    /// The default: pod queries get NXDOMAIN (sources.md#coredns-kubernetes).
    Disabled,
    Insecure,
    Verified,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KubernetesConfig {
    pub zones: Vec<Vec<u8>>,
    pub pods: PodsMode,
    /// Default 5 s, range 0–3600.
    pub ttl: u32,
    /// None: no fallthrough; Some(empty): all zones.
    pub fallthrough: Option<Vec<Vec<u8>>>,
    pub endpoint_pod_names: bool,
    pub namespaces: Vec<String>,
    pub noendpoints: bool,
    /// ndots-specific: the Kubernetes List (`kubectl get ... -o yaml|json`) to serve. The `ndots` binary
    /// requires it; the simulator hands cluster state to the server directly.
    pub cluster_state: Option<PathBuf>,
    pub pos: Pos,
}

pub(super) fn parse_kubernetes(d: &Directive, s: &ServerConfig, base: &Path) -> Result<KubernetesConfig, ConfigError> {
    let mut a = Args::new(d);
    let zones = zones_or_server(a.rest(), s)?;
    let mut k = KubernetesConfig {
        zones,
        pods: PodsMode::Disabled,
        ttl: 5,
        fallthrough: None,
        endpoint_pod_names: false,
        namespaces: Vec::new(),
        noendpoints: false,
        cluster_state: None,
        pos: d.name.pos.clone(),
    };
    for sub in &d.block {
        let mut sa = Args::new(sub);
        match sub.name.text.as_str() {
            "pods" => {
                let t = sa.need("disabled, insecure or verified")?;
                k.pods = match t.text.as_str() {
                    "disabled" => PodsMode::Disabled,
                    "insecure" => PodsMode::Insecure,
                    "verified" => PodsMode::Verified,
                    _ => return Err(ConfigError::at(&t.pos, format!("pods: '{}'; expected disabled, insecure or verified", t.text))),
                };
                sa.done()?;
            }
            "ttl" => {
                k.ttl = num(sa.need("a TTL")?, "a TTL in seconds", 0u32, 3600)?;
                sa.done()?;
            }
            "fallthrough" => k.fallthrough = Some(sa.rest().iter().map(zone_wire).collect::<Result<_, _>>()?),
            "endpoint_pod_names" => k.endpoint_pod_names = true,
            "namespaces" => k.namespaces = sa.rest().iter().map(|t| t.text.clone()).collect(),
            "noendpoints" => k.noendpoints = true,
            "cluster_state" => {
                let t = sa.need("a file with `kubectl get namespaces,services,endpointslices,pods -A -o yaml` output")?;
                k.cluster_state = Some(base.join(&t.text));
                sa.done()?;
            }
            // Options about reaching a real apiserver: accepted so manifests run, meaningless with a file source.
            "endpoint" | "tls" | "kubeconfig" | "apiserver_qps" | "apiserver_burst" | "apiserver_max_inflight" | "startup_timeout" => {
                sa.rest();
            }
            _ => {
                return Err(unknown_option(
                    d,
                    sub,
                    "pods, ttl, fallthrough, endpoint_pod_names, namespaces, noendpoints, cluster_state, endpoint, kubeconfig, startup_timeout",
                ));
            }
        }
    }
    Ok(k)
}
