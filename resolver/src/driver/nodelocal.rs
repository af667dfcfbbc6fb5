//! Node-local mode: node-cache's job around the same server (sources.md#node-local-dns).
//!
//! Before serving: the Corefile is rendered from `-basecorefile` and the kube-dns ConfigMap
//! (`nodelocal::render`), checked, and written to `-conf`; the dummy interface is made (a kernel
//! without the dummy link type stops ndots here, saying so). The server binds the local IPs with
//! IP_FREEBIND. Once it listens, a thread installs the NOTRACK/ACCEPT rules, then re-checks rules and
//! interface every `-syncinterval` and re-renders the Corefile when its inputs change (polled every
//! 10 s, as node-cache polls; the Corefile's `reload` plugin picks the new file up). It also serves
//! `coredns_nodecache_setup_errors_total{errortype}` on `-metrics-listen-address`. When the server
//! stops (SIGTERM), the rules and the interface are removed unless `-skipteardown`.
//!
//! Unlike node-cache, a rendering that would not load (an unset upstream variable, a placeholder the
//! operator left, a bad stub domain) is never written: the first one stops start-up with the
//! template's line, later ones are logged and counted while the previous Corefile keeps serving.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::flags::NodeLocalFlags;
use crate::nodelocal::kubedns::{self, KubeDnsConfig};
use crate::nodelocal::render::{self, Inputs};
use crate::nodelocal::rules::{self, Rule};
use crate::nodelocal::service_host_env;

use super::iptables::Iptables;
use super::{DriverError, Options, netif};

/// How often the template and the kube-dns ConfigMap are re-read (node-cache: 10 s).
const CONFIG_POLL: Duration = Duration::from_secs(10);
/// Where node-cache looks for the kube-dns ConfigMap when `-kubednscm` is not given.
const DEFAULT_KUBEDNS_DIR: &str = "/etc/kube-dns";
/// The port the rules and stub-domain blocks use (node-cache's `-dns.port`; only 53 is accepted).
const DNS_PORT: u16 = 53;

/// node-cache's setup error kinds, the label values of its one metric.
const ERROR_TYPES: [&str; 5] = ["iptables", "iptables_lock", "interface_add", "interface_check", "configmap"];

#[derive(Default)]
struct SetupErrors([AtomicU64; 5]);

impl SetupErrors {
    fn inc(&self, kind: &str) {
        if let Some(i) = ERROR_TYPES.iter().position(|k| *k == kind) {
            self.0[i].fetch_add(1, Ordering::Relaxed);
        }
    }
    fn render(&self) -> String {
        let mut s = String::from(
            "# HELP coredns_nodecache_setup_errors_total The number of errors during periodic network setup for node-cache\n# TYPE coredns_nodecache_setup_errors_total counter\n",
        );
        for (k, v) in ERROR_TYPES.iter().zip(&self.0) {
            s.push_str(&format!("coredns_nodecache_setup_errors_total{{errortype=\"{k}\"}} {}\n", v.load(Ordering::Relaxed)));
        }
        s
    }
}

/// Renders the Corefile whenever the template or the kube-dns ConfigMap changed.
struct Renderer {
    base: PathBuf,
    out: PathBuf,
    kubedns_dir: Option<PathBuf>,
    local_ips: Vec<IpAddr>,
    cluster_dns: Option<IpAddr>,
    env_name: String,
    upstream_svc: String,
    /// The inputs of the last rendering, to skip unchanged ones.
    last: Option<(String, BTreeMap<String, String>)>,
    /// `-check`: render and load, write nothing.
    dry_run: bool,
}

/// A ConfigMap directory's files (as the kubelet mounts them: symlinks into `..data`; dot-names skipped).
fn read_dir_files(dir: &Path) -> Result<BTreeMap<String, String>, String> {
    let mut files = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        files.insert(name, text);
    }
    Ok(files)
}

impl Renderer {
    /// Renders if an input changed: `Ok(true)` when a new Corefile was written.
    fn sync(&mut self) -> Result<bool, String> {
        let base = std::fs::read_to_string(&self.base).map_err(|e| format!("cannot read the template {}: {e}", self.base.display()))?;
        let files = match &self.kubedns_dir {
            Some(d) => read_dir_files(d)?,
            None => BTreeMap::new(),
        };
        if self.last.as_ref().is_some_and(|(b, f)| *b == base && *f == files) {
            return Ok(false);
        }
        let dir_name = self.kubedns_dir.as_ref().map_or_else(String::new, |d| d.display().to_string());
        let kd: KubeDnsConfig = kubedns::parse(&dir_name, &files)?;
        let inputs = Inputs {
            local_ips: &self.local_ips,
            port: DNS_PORT,
            cluster_dns: self.cluster_dns,
            cluster_dns_env: &self.env_name,
            upstream_svc: &self.upstream_svc,
            kube_dns: &kd,
        };
        let text = render::render(&base, &self.base.display().to_string(), &inputs).map_err(|e| e.to_string())?;
        // The rendering must load before it replaces a Corefile that does.
        let out_name = self.out.display().to_string();
        let parent = self.out.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        let cfg = crate::corefile::parse_str(&text, &out_name, Some(parent.clone()), &|k| std::env::var(k).ok())
            .and_then(|cf| Config::from_corefile(&cf, &parent))
            .map_err(|e| format!("the Corefile rendered from {} would not load, so it was not written: {e}", self.base.display()))?;
        if !self.dry_run && std::fs::read_to_string(&self.out).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&self.out, &text).map_err(|e| format!("cannot write {out_name}: {e}"))?;
            info!(
                corefile = %out_name,
                stub_domains = kd.stub_domains.len(),
                upstreams = %if kd.upstream_nameservers.is_empty() { "/etc/resolv.conf".to_string() } else { kd.upstream_nameservers.join(" ") },
                "rendered the node-local Corefile"
            );
        }
        if self.last.is_none() && !cfg.servers.iter().any(|s| s.reload.is_some()) {
            warn!("the node-local Corefile has no reload plugin: a changed ConfigMap is rendered but served only after a restart");
        }
        self.last = Some((base, files));
        Ok(true)
    }
}

/// Everything the sync thread needs.
struct Networking {
    flags: NodeLocalFlags,
    rules: Vec<Rule>,
    iptables: Option<Iptables>,
    errors: Arc<SetupErrors>,
}

impl Networking {
    async fn ensure_interface(&self) {
        if !self.flags.setup_interface {
            return;
        }
        match netif::ensure(&self.flags.interface_name, &self.flags.local_ips).await {
            Ok(netif::Ensured::Created) => info!(interface = %self.flags.interface_name, "added interface"),
            Ok(netif::Ensured::Present) => {}
            Err(e) => {
                error!("{e}");
                self.errors.inc("interface_add");
            }
        }
    }

    fn ensure_rules(&self) {
        let Some(ipt) = &self.iptables else { return };
        for r in &self.rules {
            match ipt.ensure(r) {
                Ok(true) => info!(table = r.table, chain = r.chain, rule = %r.spec, "added node-local rule"),
                Ok(false) => debug!(rule = %r.spec, "node-local rule present"),
                Err(e) => {
                    error!("{}", e.msg);
                    self.errors.inc(if e.locked { "iptables_lock" } else { "iptables" });
                }
            }
        }
    }

    async fn teardown(&self) {
        info!("tearing down the node-local rules and interface");
        if let Some(ipt) = &self.iptables {
            for r in &self.rules {
                if let Err(e) = ipt.remove(r) {
                    error!("{}", e.msg);
                }
            }
        }
        if self.flags.setup_interface
            && let Err(e) = netif::remove(&self.flags.interface_name).await
        {
            error!("{e}");
        }
    }
}

async fn serve_metrics(addr: std::net::SocketAddr, errors: Arc<SetupErrors>) {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            error!(%addr, "cannot serve the node-cache setup metrics: {e}");
            return;
        }
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let errors = errors.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let errors = errors.clone();
                async move {
                    let (status, body) =
                        if req.uri().path() == "/metrics" { (200, errors.render()) } else { (404, "not found".to_string()) };
                    Ok::<_, Infallible>(hyper::Response::builder().status(status).body(Full::new(Bytes::from(body))).unwrap_or_default())
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await;
        });
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, DriverError> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// `-check` in node-local mode: renders the template with this environment and loads the result,
/// writing nothing and touching no interface or rule.
pub fn check(flags: &NodeLocalFlags, conf: &Path) -> Result<(), DriverError> {
    let mut r = renderer(flags, conf)?;
    r.dry_run = true;
    r.sync().map(|_| ()).map_err(DriverError::Halted)
}

fn renderer(flags: &NodeLocalFlags, conf: &Path) -> Result<Renderer, DriverError> {
    let env_name = service_host_env(&flags.upstream_svc);
    let cluster_dns = match std::env::var(&env_name) {
        Ok(v) => {
            Some(v.trim().parse::<IpAddr>().map_err(|_| DriverError::Halted(format!("${env_name} is '{v}'; expected an IP address")))?)
        }
        Err(_) => {
            warn!("${env_name} is not set: the ClusterIP of Service {} is unknown (-upstreamsvc)", flags.upstream_svc);
            None
        }
    };
    let kubedns_dir =
        flags.kubedns_cm.clone().or_else(|| Path::new(DEFAULT_KUBEDNS_DIR).is_dir().then(|| PathBuf::from(DEFAULT_KUBEDNS_DIR)));
    Ok(Renderer {
        base: flags.base_corefile.clone(),
        out: conf.to_path_buf(),
        kubedns_dir,
        local_ips: flags.local_ips.clone(),
        cluster_dns,
        env_name,
        upstream_svc: flags.upstream_svc.clone(),
        last: None,
        dry_run: false,
    })
}

/// Runs ndots as the node-local cache until SIGTERM/SIGINT, then tears its networking down.
pub fn run(flags: &NodeLocalFlags, mut opts: Options) -> Result<(), DriverError> {
    let mut renderer = renderer(flags, &opts.conf)?;
    renderer.sync().map_err(DriverError::Halted)?;
    // The node's conntrack is readable here (host network, NET_ADMIN): `stale_conntrack` scans it
    // unless the Corefile turns it off.
    let cfg = super::load_config(&opts.conf)?;
    if cfg.detect().on[crate::detect::STALE_CONNTRACK] {
        opts.dns_services = Some(super::node_scan::watch_services(&flags.upstream_svc));
    }
    let ipv6 = flags.local_ips.first().is_some_and(IpAddr::is_ipv6);
    let iptables = if flags.setup_iptables {
        let ipt = Iptables::new(flags.iptables, ipv6).map_err(DriverError::Halted)?;
        info!(backend = ?ipt.backend, "node-local rules go through iptables");
        Some(ipt)
    } else {
        None
    };
    let net = Networking {
        flags: flags.clone(),
        rules: rules::rules(&flags.local_ips, DNS_PORT, flags.health_port),
        iptables,
        errors: Arc::default(),
    };
    // The interface first, as node-cache does, and fatally: serving on addresses nothing routes to
    // would look healthy and answer nobody.
    if flags.setup_interface {
        let rt = runtime()?;
        match rt.block_on(netif::ensure(&flags.interface_name, &flags.local_ips)) {
            Ok(netif::Ensured::Created) => info!(interface = %flags.interface_name, "added interface"),
            Ok(netif::Ensured::Present) => info!(interface = %flags.interface_name, "interface present"),
            Err(e) => return Err(DriverError::Halted(e)),
        }
    }
    let (listening_tx, listening_rx) = oneshot::channel::<()>();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let before = opts.on_listening.take();
    opts.on_listening = Some(Box::new(move || {
        if let Some(f) = before {
            f();
        }
        let _ = listening_tx.send(());
    }));
    opts.freebind = true;
    let sync_interval = flags.sync_interval;
    let metrics_addr = flags.metrics_listen;
    let skip_teardown = flags.skip_teardown;
    let thread = std::thread::Builder::new().name("ndots-nodelocal".into()).spawn(move || -> Result<(), DriverError> {
        let rt = runtime()?;
        rt.block_on(async move {
            tokio::spawn(serve_metrics(metrics_addr, net.errors.clone()));
            let mut stop_rx = stop_rx;
            // Rules only once the server listens: a cache that failed to start must not capture
            // the node's DNS traffic (node-cache waits for its pidfile for the same reason).
            let started = tokio::select! {
                r = listening_rx => r.is_ok(),
                _ = &mut stop_rx => false,
            };
            if started {
                net.ensure_rules();
                let mut sync = tokio::time::interval(sync_interval);
                let mut poll = tokio::time::interval(CONFIG_POLL);
                sync.tick().await;
                poll.tick().await;
                loop {
                    tokio::select! {
                        _ = sync.tick() => {
                            net.ensure_rules();
                            net.ensure_interface().await;
                        }
                        _ = poll.tick() => {
                            if let Err(e) = renderer.sync() {
                                error!("{e}");
                                net.errors.inc("configmap");
                            }
                        }
                        _ = &mut stop_rx => break,
                    }
                }
            }
            if skip_teardown {
                info!("-skipteardown: leaving the node-local rules and interface in place");
            } else {
                net.teardown().await;
            }
        });
        Ok(())
    })?;
    let served = super::run(opts, std::future::pending());
    let _ = stop_tx.send(());
    match thread.join() {
        Ok(r) => r?,
        Err(_) => error!("the node-local thread panicked"),
    }
    served
}
