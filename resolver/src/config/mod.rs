//! Typed configuration from a parsed Corefile, with CoreDNS's defaults.
//!
//! Every default below cites its entry in `docs/sources.md` (the CoreDNS source read at 1.14.7).
//! Unknown plugins, unknown options and bad values are errors that name the file, line, column and
//! what was expected (DEVELOPERS.md: bad input gets a clear error). Plugins run in CoreDNS's fixed
//! `plugin.cfg` order whatever their line order (sources.md#corefile-model); see `Server`.

mod args;
mod cache;
mod detect;
mod files;
mod forward;
mod kubernetes;
mod records;

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use crate::corefile::{ConfigError, Corefile, Directive, Pos, Token};
use crate::wire;

use args::{Args, dur, num, unknown_option, zones_or_server};
use cache::parse_cache;
use forward::parse_forward;
use kubernetes::parse_kubernetes;
use records::{parse_hosts, parse_template};

pub use args::parse_duration;
pub use cache::{CacheConfig, CachePart, Prefetch, ServeStale};
pub use files::Files;
pub use forward::{FORWARD_DEADLINE, ForwardConfig, Policy, ResolvConf, parse_resolv_conf, read_resolv_conf, wildcard_addrs};
pub use kubernetes::{ApiConfig, KubernetesConfig, PodsMode};
pub use records::{HostsConfig, TemplateConfig};

/// The plugins we accept, in CoreDNS's execution order (plugin.cfg, sources.md#corefile-model).
pub const PLUGIN_ORDER: &[&str] = &[
    "reload",
    "bufsize",
    "bind",
    "ready",
    "health",
    "prometheus",
    "errors",
    "log",
    "detect",
    "loadbalance",
    "autopath",
    "cache",
    "template",
    "hosts",
    "kubernetes",
    "file",
    "loop",
    "forward",
];

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub servers: Vec<ServerConfig>,
    /// Identical questions in flight share one upstream exchange (ndots; on by default). CoreDNS
    /// never merges them: the simulator turns this off where a replica stands for CoreDNS.
    pub coalesce: bool,
    /// One table of forwards shared by every `forward` of every block, REFUSED when full: dnsmasq's
    /// 150 (`FTABSIZ`), where the simulator runs kube-dns. CoreDNS and ndots have none (`None`).
    pub forward_table: Option<usize>,
    /// How long a forwarded query is tried before SERVFAIL: CoreDNS's 5 s (`FORWARD_DEADLINE`);
    /// dnsmasq holds a forward 10 s (`TIMEOUT`), where the simulator runs kube-dns.
    pub forward_deadline: std::time::Duration,
    /// An upstream's truncated UDP answer is asked again over TCP by the server (ndots). CoreDNS's
    /// forward does so only with `prefer_udp` and otherwise passes the truncated answer on, so the
    /// client retries over TCP (sources.md#coredns-forward); the simulator turns this off where a
    /// replica stands for CoreDNS. Not Corefile syntax.
    pub tcp_on_truncation: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Zones as given (dotted, lowercase, fully qualified).
    pub zones: Vec<String>,
    /// The plugins the block enables, in execution order (`coredns_plugin_enabled`).
    pub plugins: Vec<&'static str>,
    /// The `detect` plugin (ndots): the detectors, on unless `detect off`.
    pub detect: crate::detect::DetectConfig,
    /// The same zones as lowercased wire names.
    pub zones_wire: Vec<Vec<u8>>,
    pub port: u16,
    /// Addresses to listen on; empty means the wildcard addresses.
    pub bind: Vec<IpAddr>,
    pub errors: bool,
    /// The `log` plugin's rules (empty: no query log).
    pub log: Vec<crate::querylog::LogRule>,
    pub health: Option<HealthConfig>,
    pub ready: Option<String>,
    pub prometheus: Option<String>,
    /// Largest UDP answer we send to an EDNS client (bufsize plugin; default 1232, range 512–4096).
    /// ndots applies 1232 even without the plugin: DNS Flag Day 2020 (sources.md#incident-s18).
    pub bufsize: u16,
    /// Forwarded queries carry the client's EDNS buffer size (no OPT when the client sent none), as
    /// CoreDNS forwards the request it got; ndots advertises its own `bufsize` (false). The simulator
    /// sets it where a replica stands for CoreDNS without the `bufsize` plugin. Not Corefile syntax.
    pub forward_client_edns: bool,
    pub reload: Option<ReloadConfig>,
    pub loadbalance: bool,
    pub loop_detect: bool,
    pub autopath: Option<AutopathConfig>,
    /// The node's own search domains, appended to autopath's list (CoreDNS reads /etc/resolv.conf).
    pub autopath_host_search: Vec<Vec<u8>>,
    pub cache: Option<CacheConfig>,
    pub templates: Vec<TemplateConfig>,
    pub hosts: Option<HostsConfig>,
    pub kubernetes: Option<KubernetesConfig>,
    /// `file DBFILE [ZONES]`: authoritative zones from master files.
    pub files: Vec<crate::zone::Zone>,
    pub forward: Vec<ForwardConfig>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    /// Default `:8080` (sources.md#coredns-health-ready).
    pub addr: String,
    pub lameduck: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReloadConfig {
    /// Default 30 s, jitter 15 s; minimums 2 s and 1 s (sources.md#coredns-misc-plugins).
    pub interval: Duration,
    pub jitter: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AutopathConfig {
    pub zones: Vec<Vec<u8>>,
    /// `@kubernetes`, or a resolv.conf whose search list is used.
    pub source: AutopathSource,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AutopathSource {
    Kubernetes,
    Search(Vec<Vec<u8>>),
}

impl Config {
    /// The detectors' configuration: the first server block with a `detect` directive, else all on.
    pub fn detect(&self) -> crate::detect::DetectConfig {
        self.servers.iter().find(|s| s.plugins.contains(&"detect")).map(|s| s.detect.clone()).unwrap_or_default()
    }

    /// Parses and validates a Corefile from disk.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let cf = crate::corefile::parse_file(path)?;
        Config::from_corefile(&cf, path.parent().unwrap_or(Path::new(".")))
    }

    /// The search list of the host the server runs on (its resolv.conf's `search`), which
    /// `autopath @kubernetes` appends to a pod's search path as CoreDNS does. Empty until set.
    pub fn set_host_search(&mut self, search: &[String]) {
        let names: Vec<Vec<u8>> = search.iter().filter_map(|d| wire::name_from_str(d)).collect();
        for s in &mut self.servers {
            if s.autopath.as_ref().is_some_and(|a| a.source == AutopathSource::Kubernetes) {
                s.autopath_host_search = names.clone();
            }
        }
    }

    /// Whether a server block needs the host's search list (`set_host_search`).
    pub fn needs_host_search(&self) -> bool {
        self.servers.iter().any(|s| s.autopath.as_ref().is_some_and(|a| a.source == AutopathSource::Kubernetes))
    }

    /// Whether the cluster state must hold the pods: `pods verified` answers pod records only for
    /// pods that exist, and `autopath @kubernetes` finds a client's namespace from its pod (ndots
    /// does not need `pods verified` for it). The detectors name a client's node from it too.
    pub fn watches_pods(&self) -> bool {
        self.needs_host_search() || self.servers.iter().filter_map(|s| s.kubernetes.as_ref()).any(|k| k.pods == PodsMode::Verified)
    }

    /// The configuration a Corefile gives, its file arguments read relative to `base`.
    pub fn from_corefile(cf: &Corefile, base: &Path) -> Result<Config, ConfigError> {
        Config::from_corefile_in(cf, &Files::Disk(base))
    }

    /// The configuration a Corefile gives, its file arguments read from `files`.
    pub fn from_corefile_in(cf: &Corefile, files: &Files) -> Result<Config, ConfigError> {
        let mut servers = Vec::new();
        for block in &cf.blocks {
            let mut zones = Vec::new();
            let mut port = None;
            for key in &block.keys {
                let (zone, p) = parse_key(key)?;
                if let Some(prev) = port
                    && prev != p
                {
                    return Err(ConfigError::at(&key.pos, format!("all keys of a server block must use one port; {prev} and {p} differ")));
                }
                port = Some(p);
                zones.push(zone);
            }
            let pos = block.keys.first().map(|k| k.pos.clone()).unwrap_or_else(|| Pos { file: "Corefile".into(), line: 0, col: 0 });
            let port = port.unwrap_or(53);
            let zones_wire: Vec<Vec<u8>> = zones.iter().map(|z| wire::name_from_str(z).unwrap_or_else(|| vec![0])).collect();
            let mut s = ServerConfig {
                zones,
                plugins: Vec::new(),
                detect: crate::detect::DetectConfig::default(),
                zones_wire,
                port,
                bind: Vec::new(),
                errors: false,
                log: Vec::new(),
                health: None,
                ready: None,
                prometheus: None,
                bufsize: 1232,
                forward_client_edns: false,
                reload: None,
                loadbalance: false,
                loop_detect: false,
                autopath: None,
                autopath_host_search: Vec::new(),
                cache: None,
                templates: Vec::new(),
                hosts: None,
                kubernetes: None,
                files: Vec::new(),
                forward: Vec::new(),
                pos,
            };
            let mut seen: Vec<&str> = Vec::new();
            for d in &block.directives {
                let name = d.name.text.as_str();
                if !PLUGIN_ORDER.contains(&name) {
                    return Err(ConfigError::at(
                        &d.name.pos,
                        format!("unknown plugin '{name}'; expected one of: {}", PLUGIN_ORDER.join(", ")),
                    ));
                }
                if !matches!(name, "forward" | "template" | "log") && seen.contains(&name) {
                    return Err(ConfigError::at(&d.name.pos, format!("plugin '{name}' given twice in one server block")));
                }
                seen.push(name);
                apply(&mut s, d, files)?;
            }
            s.plugins = PLUGIN_ORDER.iter().copied().filter(|p| seen.contains(p)).collect();
            if s.autopath.as_ref().is_some_and(|a| a.source == AutopathSource::Kubernetes) && s.kubernetes.is_none() {
                return Err(ConfigError::at(&s.pos, "autopath @kubernetes needs a kubernetes plugin in the same server block"));
            }
            servers.push(s);
        }
        // Two blocks may not claim the same zone on the same port.
        for (i, a) in servers.iter().enumerate() {
            for b in &servers[i + 1..] {
                if a.port == b.port && a.bind == b.bind {
                    for z in &a.zones {
                        if b.zones.contains(z) {
                            return Err(ConfigError::at(&b.pos, format!("zone '{z}' on port {} is already defined at {}", b.port, a.pos)));
                        }
                    }
                }
            }
        }
        Ok(Config { servers, coalesce: true, forward_table: None, forward_deadline: FORWARD_DEADLINE, tcp_on_truncation: true })
    }
}

fn parse_key(key: &Token) -> Result<(String, u16), ConfigError> {
    let mut text = key.text.as_str();
    if let Some((scheme, rest)) = text.split_once("://") {
        if scheme != "dns" {
            return Err(ConfigError::at(&key.pos, format!("scheme '{scheme}://' is not supported; expected dns:// or none")));
        }
        text = rest;
    }
    let (zone, port) = match text.rsplit_once(':') {
        Some((z, p)) => {
            let port = p.parse::<u16>().map_err(|_| ConfigError::at(&key.pos, format!("bad port '{p}'; expected a number 1-65535")))?;
            (z, port)
        }
        None => (text, 53),
    };
    let zone = normalize_zone(zone)
        .ok_or_else(|| ConfigError::at(&key.pos, format!("bad zone '{zone}'; expected a domain name such as cluster.local or .")))?;
    Ok((zone, port))
}

/// Lowercases and roots a zone name; CIDR zones are not supported.
fn normalize_zone(z: &str) -> Option<String> {
    if z.is_empty() || z.contains('/') {
        return None;
    }
    let mut z = z.to_ascii_lowercase();
    if !z.ends_with('.') {
        z.push('.');
    }
    wire::name_from_str(&z)?;
    Some(z)
}

fn zone_wire(t: &Token) -> Result<Vec<u8>, ConfigError> {
    normalize_zone(&t.text)
        .and_then(|z| wire::name_from_str(&z))
        .ok_or_else(|| ConfigError::at(&t.pos, format!("bad zone '{}'; expected a domain name", t.text)))
}

fn apply(s: &mut ServerConfig, d: &Directive, files: &Files) -> Result<(), ConfigError> {
    let mut a = Args::new(d);
    match d.name.text.as_str() {
        "errors" => {
            // `errors { consolidate ... }` only changes log grouping; accepted and logged as-is.
            for sub in &d.block {
                if !matches!(sub.name.text.as_str(), "consolidate" | "stacktrace") {
                    return Err(unknown_option(d, sub, "consolidate, stacktrace"));
                }
            }
            s.errors = true;
        }
        "log" => {
            let mut classes = Vec::new();
            for sub in &d.block {
                if sub.name.text != "class" {
                    return Err(unknown_option(d, sub, "class"));
                }
                classes.push(sub.args.iter().map(|t| t.text.clone()).collect());
            }
            let args: Vec<String> = a.rest().iter().map(|t| t.text.clone()).collect();
            let name = |n: &str| {
                normalize_zone(n).and_then(|z| wire::name_from_str(&z)).ok_or_else(|| format!("bad name '{n}'; expected a domain name"))
            };
            let rules = crate::querylog::rules(&args, &classes, name).map_err(|e| ConfigError::at(&d.name.pos, format!("log: {e}")))?;
            s.log.extend(rules);
        }
        "detect" => {
            let args: Vec<String> = d.args.iter().map(|t| t.text.clone()).collect();
            let block: Vec<(String, Vec<String>)> =
                d.block.iter().map(|b| (b.name.text.clone(), b.args.iter().map(|t| t.text.clone()).collect())).collect();
            s.detect = detect::parse_detect(&args, &block).map_err(|e| ConfigError::at(&d.name.pos, e))?;
        }
        "health" => {
            let addr = a.next().map(|t| t.text.clone()).unwrap_or_else(|| ":8080".into());
            a.done()?;
            let mut lameduck = Duration::ZERO;
            for sub in &d.block {
                match sub.name.text.as_str() {
                    "lameduck" => {
                        let t = sub.args.first().ok_or_else(|| ConfigError::at(&sub.name.pos, "lameduck: expected a duration"))?;
                        lameduck = dur(t, "a lameduck duration")?;
                    }
                    _ => return Err(unknown_option(d, sub, "lameduck")),
                }
            }
            s.health = Some(HealthConfig { addr, lameduck });
        }
        "ready" => {
            s.ready = Some(a.next().map(|t| t.text.clone()).unwrap_or_else(|| ":8181".into()));
            a.done()?;
            for sub in &d.block {
                if sub.name.text != "monitor" {
                    return Err(unknown_option(d, sub, "monitor"));
                }
            }
        }
        "prometheus" => {
            s.prometheus = Some(a.next().map(|t| t.text.clone()).unwrap_or_else(|| "localhost:9153".into()));
            a.done()?;
            for sub in &d.block {
                if sub.name.text != "runtime_metrics" {
                    return Err(unknown_option(d, sub, "runtime_metrics"));
                }
            }
        }
        "bind" => {
            for t in a.rest() {
                let ip = t.text.parse::<IpAddr>().map_err(|_| {
                    ConfigError::at(
                        &t.pos,
                        format!("bind: bad address '{}'; expected an IP address (interface names are not supported)", t.text),
                    )
                })?;
                s.bind.push(ip);
            }
            if s.bind.is_empty() {
                return Err(ConfigError::at(&d.name.pos, "bind: expected at least one address"));
            }
            a.no_block()?;
        }
        "bufsize" => {
            if let Some(t) = a.next() {
                s.bufsize = num(t, "a buffer size", 512u16, 4096u16)?;
            }
            a.done()?;
            a.no_block()?;
        }
        "reload" => {
            let interval = match a.next() {
                Some(t) => dur(t, "a reload interval")?,
                None => Duration::from_secs(30),
            };
            let jitter = match a.next() {
                Some(t) => dur(t, "a reload jitter")?,
                None => Duration::from_secs(15),
            };
            a.done()?;
            if interval < Duration::from_secs(2) {
                return Err(ConfigError::at(&d.name.pos, "reload: interval must be at least 2s"));
            }
            if jitter < Duration::from_secs(1) || jitter > interval / 2 {
                return Err(ConfigError::at(&d.name.pos, "reload: jitter must be at least 1s and at most half the interval"));
            }
            s.reload = Some(ReloadConfig { interval, jitter });
        }
        "loadbalance" => {
            if let Some(t) = a.next()
                && t.text != "round_robin"
            {
                return Err(ConfigError::at(&t.pos, format!("loadbalance: unsupported policy '{}'; expected round_robin", t.text)));
            }
            a.done()?;
            s.loadbalance = true;
        }
        "loop" => {
            a.done()?;
            a.no_block()?;
            s.loop_detect = true;
        }
        "autopath" => {
            let args = a.rest();
            let Some((last, zones)) = args.split_last() else {
                return Err(ConfigError::at(&d.name.pos, "autopath: expected @kubernetes or a resolv.conf file"));
            };
            let source = if last.text == "@kubernetes" {
                // The kubernetes plugin appends the host's search list (sources.md#coredns-autopath):
                // whoever runs the server supplies it (`Config::set_host_search`): the driver from the
                // host's resolv.conf, the simulator from its node, never this parser.
                AutopathSource::Kubernetes
            } else if last.text.starts_with('@') {
                return Err(ConfigError::at(&last.pos, format!("autopath: unknown plugin '{}'; expected @kubernetes", last.text)));
            } else {
                let rc = files
                    .read(&last.text)
                    .map(|t| parse_resolv_conf(&t))
                    .map_err(|e| ConfigError::at(&last.pos, format!("autopath: {e}")))?;
                AutopathSource::Search(rc.search.iter().filter_map(|s| wire::name_from_str(s)).collect())
            };
            s.autopath = Some(AutopathConfig { zones: zones_or_server(zones, s)?, source });
        }
        "cache" => s.cache = Some(parse_cache(d, s)?),
        "template" => s.templates.push(parse_template(d, s)?),
        "hosts" => s.hosts = Some(parse_hosts(d, s, files)?),
        "kubernetes" => s.kubernetes = Some(parse_kubernetes(d, s, files)?),
        "file" => {
            let f = a.need("a zone file")?;
            let zones = zones_or_server(a.rest(), s)?;
            let text = files.read(&f.text).map_err(|e| ConfigError::at(&f.pos, format!("file: {e}")))?;
            for z in zones {
                let origin = wire::name_to_string(&z);
                let zone =
                    crate::zone::Zone::parse(&text, &origin).map_err(|e| ConfigError::at(&f.pos, format!("file: {}: {e}", f.text)))?;
                s.files.push(zone);
            }
            for sub in &d.block {
                if !matches!(sub.name.text.as_str(), "reload") {
                    return Err(unknown_option(d, sub, "reload"));
                }
            }
        }
        "forward" => s.forward.push(parse_forward(d, files)?),
        other => return Err(ConfigError::at(&d.name.pos, format!("plugin '{other}' is not implemented"))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corefile::parse_str;
    use std::net::SocketAddr;

    fn cfg(text: &str) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir();
        let cf = parse_str(text, "Corefile", Some(dir.clone()), &|_| None)?;
        Config::from_corefile(&cf, &dir)
    }

    #[test]
    fn the_host_search_list_is_handed_in_never_read_by_the_parser() {
        let mut c =
            cfg(".:53 {\n kubernetes cluster.local {\n pods insecure\n }\n autopath @kubernetes\n}\nx:53 {\n forward . 10.0.0.1\n}")
                .expect("valid");
        assert!(c.needs_host_search());
        assert!(c.servers[0].autopath_host_search.is_empty(), "parsing reads no host file");
        c.set_host_search(&["ec2.internal".to_string(), "corp.example".to_string()]);
        assert_eq!(c.servers[0].autopath_host_search, vec![b"\x03ec2\x08internal\x00".to_vec(), b"\x04corp\x07example\x00".to_vec()]);
        assert!(c.servers[1].autopath_host_search.is_empty(), "only autopath @kubernetes blocks take it");
        assert!(!cfg(".:53 {\n forward . 10.0.0.1\n}").expect("valid").needs_host_search());
    }

    #[test]
    fn a_reload_tells_a_watch_change_from_a_serving_change() {
        let k = |body: &str| {
            cfg(&format!(".:53 {{\n kubernetes cluster.local {{\n{body}\n }}\n}}")).expect("valid").servers[0]
                .kubernetes
                .clone()
                .expect("k8s")
        };
        let base = k("  pods insecure\n  ttl 30");
        assert!(base.same_watch(&k("  pods insecure\n  ttl 5\n  fallthrough")), "ttl and fallthrough apply to a running watch");
        assert!(base.same_watch(&k("  pods disabled")), "insecure and disabled watch no pods");
        for changed in
            ["  pods verified", "  labels app=x", "  namespace_labels team=a", "  noendpoints", "  endpoint https://10.0.0.1:6443"]
        {
            assert!(!base.same_watch(&k(changed)), "{changed}");
        }
    }

    #[test]
    fn defaults_are_coredns_defaults() {
        let c = cfg(".:53 {\n cache\n forward . 10.0.0.1\n}").expect("valid");
        let s = &c.servers[0];
        let cache = s.cache.as_ref().expect("cache");
        assert_eq!(cache.success, CachePart { capacity: 9984, max_ttl: 3600, min_ttl: 5 });
        assert_eq!(cache.denial, CachePart { capacity: 9984, max_ttl: 1800, min_ttl: 5 });
        assert_eq!(cache.servfail_ttl, Duration::from_secs(5));
        let f = &s.forward[0];
        assert_eq!(
            (f.max_fails, f.expire, f.read_timeout, f.health_check),
            (2, Duration::from_secs(10), Duration::from_secs(2), Duration::from_millis(500))
        );
        assert_eq!(f.policy, Policy::Random);
        assert_eq!(f.to, vec!["10.0.0.1:53".parse::<SocketAddr>().expect("addr")]);
    }

    #[test]
    fn unknown_plugin_and_option_name_their_position() {
        let e = cfg(".:53 {\n  cache\n  rewrite name a b\n}").expect_err("unknown plugin");
        assert_eq!((e.pos.line, e.pos.col), (3, 3));
        assert!(e.msg.contains("unknown plugin 'rewrite'"), "{e}");
        let e = cfg(".:53 {\n cache {\n   sucess 100\n }\n}").expect_err("typo");
        assert_eq!(e.pos.line, 3);
        assert!(e.msg.contains("expected one of: success"), "{e}");
        let e = cfg(".:53 {\n bufsize 100\n}").expect_err("range");
        assert!(e.msg.contains("from 512 to 4096"), "{e}");
    }

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("5x"), None);
    }

    #[test]
    fn kubernetes_cluster_state_is_read_as_a_path() {
        let c = cfg(".:53 {\n kubernetes cluster.local {\n cluster_state state.yaml\n }\n}").expect("valid");
        let k = c.servers[0].kubernetes.as_ref().expect("kubernetes");
        assert_eq!(k.cluster_state, Some(std::env::temp_dir().join("state.yaml")));
        assert_eq!(k.zones, vec![wire::name_from_str("cluster.local").expect("name")]);
    }

    proptest::proptest! {
        #[test]
        fn config_never_panics_on_plugin_soup(lines in proptest::collection::vec((
            proptest::sample::select(vec!["cache", "forward", "kubernetes", "bufsize", "health", "reload", "template", "hosts", "autopath", "bind", "loop", "errors", "log", "prometheus", "ready", "loadbalance", "file", "nope"]),
            proptest::collection::vec("[a-z0-9.:/%]{1,8}", 0..4),
        ), 0..8)) {
            let body: String = lines.iter().map(|(p, args)| format!("  {p} {}\n", args.join(" "))).collect();
            if let Ok(cf) = parse_str(&format!(".:53 {{\n{body}}}\n"), "Corefile", None, &|_| None) {
                let _ = Config::from_corefile(&cf, std::path::Path::new("/nonexistent"));
            }
        }
    }
}
