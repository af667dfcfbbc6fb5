//! The `kubernetes` plugin's configuration (sources.md#coredns-kubernetes).

use std::path::PathBuf;
use std::time::Duration;

use crate::corefile::{ConfigError, Directive, Pos};

use super::args::{Args, dur, num, unknown_option, zones_or_server};
use super::{Files, ServerConfig, zone_wire};

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
    /// ndots-specific: serve this Kubernetes List (`kubectl get ... -o yaml|json`) instead of watching
    /// the API. The simulator hands cluster state to the server directly.
    pub cluster_state: Option<PathBuf>,
    /// Where the API is and how to reach it (ignored with `cluster_state`).
    pub api: ApiConfig,
    /// `labels SELECTOR`: only Services, EndpointSlices and Pods that match.
    pub labels: Option<String>,
    /// `namespace_labels SELECTOR`: only the records of Namespaces that match.
    pub namespace_labels: Option<String>,
    /// `ignore empty_service`: NXDOMAIN for a ClusterIP Service without a ready endpoint.
    pub ignore_empty_service: bool,
    /// `startup_timeout`: how long to wait for the first sync before serving (default 5 s).
    pub startup_timeout: Duration,
    pub pos: Pos,
}

impl KubernetesConfig {
    /// Whether `other` watches the same things the same way: the source (`cluster_state` or the API
    /// and how it is reached), the selectors, and which kinds are watched (`pods verified`,
    /// `noendpoints`). Everything else applies to a running watch.
    pub fn same_watch(&self, other: &KubernetesConfig) -> bool {
        self.cluster_state == other.cluster_state
            && self.api == other.api
            && self.labels == other.labels
            && self.namespace_labels == other.namespace_labels
            && (self.pods == PodsMode::Verified) == (other.pods == PodsMode::Verified)
            && self.noendpoints == other.noendpoints
    }
}

/// How the `kubernetes` plugin reaches the API (sources.md#coredns-kubernetes): in-cluster (the
/// service account) unless `kubeconfig` or `endpoint` says otherwise.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiConfig {
    /// `endpoint URL`: only the first URL is used, as CoreDNS does.
    pub endpoint: Option<String>,
    /// `tls CERT KEY CACERT` for a remote `endpoint`.
    pub tls: Option<[PathBuf; 3]>,
    /// `kubeconfig FILE [CONTEXT]`.
    pub kubeconfig: Option<(PathBuf, Option<String>)>,
}

pub(super) fn parse_kubernetes(d: &Directive, s: &ServerConfig, files: &Files) -> Result<KubernetesConfig, ConfigError> {
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
        api: ApiConfig::default(),
        labels: None,
        namespace_labels: None,
        ignore_empty_service: false,
        startup_timeout: Duration::from_secs(5),
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
                k.cluster_state = Some(files.path(&t.text));
                sa.done()?;
            }
            "endpoint" => {
                k.api.endpoint = Some(sa.need("the API server's URL")?.text.clone());
                // Further URLs are accepted and not used (CoreDNS uses the first).
                sa.rest();
            }
            "tls" => {
                let cert = files.path(&sa.need("CERT KEY CACERT")?.text);
                let key = files.path(&sa.need("KEY CACERT after CERT")?.text);
                let ca = files.path(&sa.need("CACERT after CERT KEY")?.text);
                k.api.tls = Some([cert, key, ca]);
                sa.done()?;
            }
            "kubeconfig" => {
                let file = files.path(&sa.need("a kubeconfig file")?.text);
                let context = sa.next().map(|t| t.text.clone());
                k.api.kubeconfig = Some((file, context));
                sa.done()?;
            }
            "labels" => k.labels = Some(selector(&mut sa)?),
            "namespace_labels" => k.namespace_labels = Some(selector(&mut sa)?),
            "ignore" => {
                let t = sa.need("empty_service")?;
                if t.text != "empty_service" {
                    return Err(ConfigError::at(&t.pos, format!("ignore: '{}'; expected empty_service", t.text)));
                }
                k.ignore_empty_service = true;
                sa.done()?;
            }
            "startup_timeout" => {
                k.startup_timeout = dur(sa.need("a duration such as 5s")?, "a duration such as 5s")?;
                sa.done()?;
            }
            // Client-side rate limits of the API client: accepted so Corefiles run unchanged; the
            // watches make a handful of requests, far below any such limit.
            "apiserver_qps" | "apiserver_burst" | "apiserver_max_inflight" => {
                sa.rest();
            }
            _ => {
                return Err(unknown_option(
                    d,
                    sub,
                    "pods, ttl, fallthrough, endpoint_pod_names, namespaces, noendpoints, cluster_state, endpoint, tls, kubeconfig, labels, namespace_labels, ignore, startup_timeout",
                ));
            }
        }
    }
    if !k.namespaces.is_empty() && k.namespace_labels.is_some() {
        return Err(ConfigError::at(&d.name.pos, "kubernetes: namespaces and namespace_labels cannot both be set"));
    }
    Ok(k)
}

/// A label selector: the rest of the line, as Kubernetes writes them (`app=web,tier in (a, b)`).
fn selector(sa: &mut Args) -> Result<String, ConfigError> {
    let first = sa.need("a label selector such as app=web")?.text.clone();
    let rest: Vec<&str> = sa.rest().iter().map(|t| t.text.as_str()).collect();
    Ok(std::iter::once(first.as_str()).chain(rest).collect::<Vec<_>>().join(" "))
}
