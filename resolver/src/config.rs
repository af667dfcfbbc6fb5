//! Typed configuration from a parsed Corefile, with CoreDNS's defaults.
//!
//! Every default below cites `dns-servers.md` (the CoreDNS source read at 1.14.7) or `incidents.md` §6.
//! Unknown plugins, unknown options and bad values are errors that name the file, line, column and
//! what was expected (DEVELOPERS.md: bad input gets a clear error). Plugins run in CoreDNS's fixed
//! `plugin.cfg` order whatever their line order (dns-servers.md §1.0); see `Server`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::corefile::{ConfigError, Corefile, Directive, Pos, Token};
use crate::wire;

/// The plugins we accept, in CoreDNS's execution order (plugin.cfg, dns-servers.md §1.0).
pub const PLUGIN_ORDER: &[&str] = &[
    "reload",
    "bufsize",
    "bind",
    "ready",
    "health",
    "prometheus",
    "errors",
    "log",
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
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Zones as given (dotted, lowercase, fully qualified).
    pub zones: Vec<String>,
    /// The same zones as lowercased wire names.
    pub zones_wire: Vec<Vec<u8>>,
    pub port: u16,
    /// Addresses to listen on; empty means the wildcard addresses.
    pub bind: Vec<IpAddr>,
    pub errors: bool,
    pub log: bool,
    pub health: Option<HealthConfig>,
    pub ready: Option<String>,
    pub prometheus: Option<String>,
    /// Largest UDP answer we send to an EDNS client (bufsize plugin; default 1232, range 512–4096).
    /// ndots applies 1232 even without the plugin: DNS Flag Day 2020 (incidents.md S18).
    pub bufsize: u16,
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
    /// Default `:8080` (dns-servers.md §1.6).
    pub addr: String,
    pub lameduck: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReloadConfig {
    /// Default 30 s, jitter 15 s; minimums 2 s and 1 s (dns-servers.md §1.8).
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

#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    pub zones: Vec<Vec<u8>>,
    pub success: CachePart,
    pub denial: CachePart,
    /// `prefetch AMOUNT [DURATION [PERCENTAGE%]]`: off by default (amount 0).
    pub prefetch: Option<Prefetch>,
    /// `serve_stale [DURATION]`: off by default; duration 1h when on (dns-servers.md §1.4).
    pub serve_stale: Option<ServeStale>,
    /// SERVFAIL cached 5 s by default, at most 5 min; 0 disables.
    pub servfail_ttl: Duration,
    pub disable_success: Vec<Vec<u8>>,
    pub disable_denial: Vec<Vec<u8>>,
    pub keepttl: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CachePart {
    /// 9984 entries by default, minimum 1024 (dns-servers.md §1.4).
    pub capacity: usize,
    /// 3600 s success, 1800 s denial.
    pub max_ttl: u32,
    /// 5 s for both.
    pub min_ttl: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prefetch {
    pub amount: u32,
    /// Default 1 minute.
    pub duration: Duration,
    /// Default 10 %.
    pub percentage: u8,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServeStale {
    pub duration: Duration,
    /// TTL on a stale answer; CoreDNS default 0 (dns-servers.md §1.4).
    pub response_ttl: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TemplateConfig {
    pub class: u16,
    /// None: ANY type.
    pub qtype: Option<u16>,
    pub zones: Vec<Vec<u8>>,
    pub rcode: u8,
    pub answers: Vec<String>,
    pub fallthrough: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HostsConfig {
    pub zones: Vec<Vec<u8>>,
    pub entries: Vec<(IpAddr, String)>,
    /// Default 3600 s (CoreDNS hosts README).
    pub ttl: u32,
    pub no_reverse: bool,
    pub fallthrough: Option<Vec<Vec<u8>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodsMode {
    /// The default: pod queries get NXDOMAIN (dns-servers.md §1.2).
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Random,
    RoundRobin,
    Sequential,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ForwardConfig {
    pub from: Vec<u8>,
    pub to: Vec<SocketAddr>,
    pub except: Vec<Vec<u8>>,
    pub force_tcp: bool,
    pub prefer_udp: bool,
    /// Cached connection lifetime, default 10 s.
    pub expire: Duration,
    /// Default 2; 0 disables health checking.
    pub max_fails: u32,
    /// Default 0.5 s.
    pub health_check: Duration,
    /// Default `random`.
    pub policy: Policy,
    /// None: unlimited (the plugin has no default; kubeadm sets 1000).
    pub max_concurrent: Option<usize>,
    /// Per-exchange read timeout, default 2 s.
    pub read_timeout: Duration,
    pub failfast_all_unhealthy: bool,
}

/// CoreDNS's `forward` request deadline (`defaultTimeout`, incidents.md §6.1).
pub const FORWARD_DEADLINE: Duration = Duration::from_secs(5);

impl Config {
    /// Parses and validates a Corefile from disk.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let cf = crate::corefile::parse_file(path)?;
        Config::from_corefile(&cf, path.parent().unwrap_or(Path::new(".")))
    }

    pub fn from_corefile(cf: &Corefile, base: &Path) -> Result<Config, ConfigError> {
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
                zones_wire,
                port,
                bind: Vec::new(),
                errors: false,
                log: false,
                health: None,
                ready: None,
                prometheus: None,
                bufsize: 1232,
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
                if name != "forward" && name != "template" && seen.contains(&name) {
                    return Err(ConfigError::at(&d.name.pos, format!("plugin '{name}' given twice in one server block")));
                }
                seen.push(name);
                apply(&mut s, d, base)?;
            }
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
        Ok(Config { servers })
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

/// Parses Go-style durations (`500ms`, `5s`, `1m30s`, `1h`), as CoreDNS does.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    if rest.bytes().all(|b| b.is_ascii_digit()) {
        // A bare number is seconds (CoreDNS accepts it for TTL-like durations).
        return rest.parse::<u64>().ok().map(Duration::from_secs);
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += Duration::from_secs_f64(value * mult);
    }
    Some(total)
}

struct Args<'a> {
    d: &'a Directive,
    i: usize,
}

impl<'a> Args<'a> {
    fn new(d: &'a Directive) -> Self {
        Args { d, i: 0 }
    }
    fn next(&mut self) -> Option<&'a Token> {
        let t = self.d.args.get(self.i);
        self.i += 1;
        t
    }
    fn peek(&self) -> Option<&'a Token> {
        self.d.args.get(self.i)
    }
    fn rest(&mut self) -> &'a [Token] {
        let r = self.d.args.get(self.i..).unwrap_or(&[]);
        self.i = self.d.args.len();
        r
    }
    fn need(&mut self, what: &str) -> Result<&'a Token, ConfigError> {
        let last = self.d.args.last().map(|t| &t.pos).unwrap_or(&self.d.name.pos);
        let pos = last.clone();
        self.next().ok_or_else(|| ConfigError::at(&pos, format!("{}: missing argument; expected {what}", self.d.name.text)))
    }
    fn done(&self) -> Result<(), ConfigError> {
        match self.d.args.get(self.i) {
            Some(t) => Err(ConfigError::at(&t.pos, format!("{}: unexpected argument '{}'", self.d.name.text, t.text))),
            None => Ok(()),
        }
    }
    fn no_block(&self) -> Result<(), ConfigError> {
        match self.d.block.first() {
            Some(b) => Err(ConfigError::at(&b.name.pos, format!("{}: takes no block; unexpected '{}'", self.d.name.text, b.name.text))),
            None => Ok(()),
        }
    }
}

fn num<T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy>(t: &Token, what: &str, lo: T, hi: T) -> Result<T, ConfigError> {
    match t.text.parse::<T>() {
        Ok(v) if v >= lo && v <= hi => Ok(v),
        _ => Err(ConfigError::at(&t.pos, format!("bad value '{}'; expected {what} from {lo} to {hi}", t.text))),
    }
}

fn dur(t: &Token, what: &str) -> Result<Duration, ConfigError> {
    parse_duration(&t.text).ok_or_else(|| ConfigError::at(&t.pos, format!("bad duration '{}'; expected {what} such as 5s or 1m", t.text)))
}

fn unknown_option(d: &Directive, sub: &Directive, expected: &str) -> ConfigError {
    ConfigError::at(&sub.name.pos, format!("{}: unknown option '{}'; expected one of: {expected}", d.name.text, sub.name.text))
}

fn zones_or_server(args: &[Token], s: &ServerConfig) -> Result<Vec<Vec<u8>>, ConfigError> {
    if args.is_empty() { Ok(s.zones_wire.clone()) } else { args.iter().map(zone_wire).collect() }
}

fn apply(s: &mut ServerConfig, d: &Directive, base: &Path) -> Result<(), ConfigError> {
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
            for sub in &d.block {
                if sub.name.text != "class" {
                    return Err(unknown_option(d, sub, "class"));
                }
            }
            a.rest();
            s.log = true;
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
                // The kubernetes plugin appends the host's search list (dns-servers.md §1.3).
                let host = std::env::var("NDOTS_HOST_RESOLV_CONF").unwrap_or_else(|_| "/etc/resolv.conf".into());
                s.autopath_host_search = read_resolv_conf(Path::new(&host))
                    .map(|rc| rc.search.iter().filter_map(|d| wire::name_from_str(d)).collect())
                    .unwrap_or_default();
                AutopathSource::Kubernetes
            } else if last.text.starts_with('@') {
                return Err(ConfigError::at(&last.pos, format!("autopath: unknown plugin '{}'; expected @kubernetes", last.text)));
            } else {
                let rc = read_resolv_conf(&base.join(&last.text)).map_err(|e| ConfigError::at(&last.pos, format!("autopath: {e}")))?;
                AutopathSource::Search(rc.search.iter().filter_map(|s| wire::name_from_str(s)).collect())
            };
            s.autopath = Some(AutopathConfig { zones: zones_or_server(zones, s)?, source });
        }
        "cache" => s.cache = Some(parse_cache(d, s)?),
        "template" => s.templates.push(parse_template(d, s)?),
        "hosts" => s.hosts = Some(parse_hosts(d, s, base)?),
        "kubernetes" => s.kubernetes = Some(parse_kubernetes(d, s, base)?),
        "file" => {
            let f = a.need("a zone file")?;
            let zones = zones_or_server(a.rest(), s)?;
            let text = std::fs::read_to_string(base.join(&f.text))
                .map_err(|e| ConfigError::at(&f.pos, format!("file: cannot read '{}': {e}", f.text)))?;
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
        "forward" => s.forward.push(parse_forward(d, base)?),
        other => return Err(ConfigError::at(&d.name.pos, format!("plugin '{other}' is not implemented"))),
    }
    Ok(())
}

fn parse_cache(d: &Directive, s: &ServerConfig) -> Result<CacheConfig, ConfigError> {
    let mut a = Args::new(d);
    // dns-servers.md §1.4: success 9984/3600/5, denial 9984/1800/5, servfail 5s.
    let mut c = CacheConfig {
        zones: Vec::new(),
        success: CachePart { capacity: 9984, max_ttl: 3600, min_ttl: 5 },
        denial: CachePart { capacity: 9984, max_ttl: 1800, min_ttl: 5 },
        prefetch: None,
        serve_stale: None,
        servfail_ttl: Duration::from_secs(5),
        disable_success: Vec::new(),
        disable_denial: Vec::new(),
        keepttl: false,
    };
    if let Some(t) = a.peek()
        && t.text.bytes().all(|b| b.is_ascii_digit())
    {
        a.next();
        let ttl = num(t, "a TTL in seconds", 0u32, u32::MAX)?;
        // `cache 30` caps both parts at 30 s; a cap only lowers.
        c.success.max_ttl = ttl;
        c.denial.max_ttl = ttl;
    }
    c.zones = zones_or_server(a.rest(), s)?;
    for sub in &d.block {
        let mut sa = Args::new(sub);
        match sub.name.text.as_str() {
            "success" | "denial" => {
                let cap = num(sa.need("a capacity")?, "a capacity", 0usize, 1 << 26)?;
                let part = if sub.name.text == "success" { &mut c.success } else { &mut c.denial };
                // CoreDNS: minimum 1024 entries (dns-servers.md §1.4).
                part.capacity = cap.max(1024);
                if let Some(t) = sa.next() {
                    part.max_ttl = num(t, "a TTL in seconds", 0u32, u32::MAX)?;
                }
                if let Some(t) = sa.next() {
                    part.min_ttl = num(t, "a minimum TTL in seconds", 0u32, u32::MAX)?;
                }
                sa.done()?;
            }
            "prefetch" => {
                let amount = num(sa.need("an amount")?, "a prefetch amount", 1u32, u32::MAX)?;
                let mut p = Prefetch { amount, duration: Duration::from_secs(60), percentage: 10 };
                if let Some(t) = sa.next() {
                    p.duration = dur(t, "a prefetch duration")?;
                }
                if let Some(t) = sa.next() {
                    let pct = t
                        .text
                        .strip_suffix('%')
                        .ok_or_else(|| ConfigError::at(&t.pos, "prefetch: expected a percentage with '%', such as 10%"))?;
                    let tok = Token { text: pct.to_string(), ..t.clone() };
                    p.percentage = num(&tok, "a percentage", 10u8, 90u8)?;
                }
                sa.done()?;
                c.prefetch = Some(p);
            }
            "serve_stale" => {
                let mut st = ServeStale { duration: Duration::from_secs(3600), response_ttl: 0 };
                if let Some(t) = sa.next() {
                    st.duration = dur(t, "a serve_stale duration")?;
                }
                if let Some(t) = sa.next() {
                    if t.text != "immediate" {
                        return Err(ConfigError::at(&t.pos, format!("serve_stale: unsupported mode '{}'; expected immediate", t.text)));
                    }
                    if let Some(t) = sa.next() {
                        st.response_ttl = num(t, "a response TTL", 0u32, 86400)?;
                    }
                }
                sa.done()?;
                c.serve_stale = Some(st);
            }
            "servfail" => {
                let t = sa.need("a duration")?;
                let v = dur(t, "a servfail duration")?;
                if v > Duration::from_secs(300) {
                    return Err(ConfigError::at(&t.pos, "servfail: at most 5m"));
                }
                c.servfail_ttl = v;
                sa.done()?;
            }
            "disable" => {
                let which = sa.need("success or denial")?;
                let zones = sa.rest().iter().map(zone_wire).collect::<Result<Vec<_>, _>>()?;
                let zones = if zones.is_empty() { c.zones.clone() } else { zones };
                match which.text.as_str() {
                    "success" => c.disable_success.extend(zones),
                    "denial" => c.disable_denial.extend(zones),
                    _ => return Err(ConfigError::at(&which.pos, format!("disable: '{}'; expected success or denial", which.text))),
                }
            }
            "keepttl" => {
                sa.done()?;
                c.keepttl = true;
            }
            _ => return Err(unknown_option(d, sub, "success, denial, prefetch, serve_stale, servfail, disable, keepttl")),
        }
    }
    Ok(c)
}

fn parse_type(t: &Token) -> Result<Option<u16>, ConfigError> {
    let up = t.text.to_ascii_uppercase();
    Ok(Some(match up.as_str() {
        "ANY" => return Ok(None),
        "A" => wire::TYPE_A,
        "AAAA" => wire::TYPE_AAAA,
        "CNAME" => wire::TYPE_CNAME,
        "SRV" => wire::TYPE_SRV,
        "PTR" => wire::TYPE_PTR,
        "TXT" => wire::TYPE_TXT,
        "NS" => wire::TYPE_NS,
        "SOA" => wire::TYPE_SOA,
        "MX" => 15,
        "HINFO" => wire::TYPE_HINFO,
        "HTTPS" => 65,
        _ => return Err(ConfigError::at(&t.pos, format!("unknown record type '{}'", t.text))),
    }))
}

fn parse_rcode(t: &Token) -> Result<u8, ConfigError> {
    Ok(match t.text.to_ascii_uppercase().as_str() {
        "NOERROR" => wire::RCODE_NOERROR,
        "FORMERR" => wire::RCODE_FORMERR,
        "SERVFAIL" => wire::RCODE_SERVFAIL,
        "NXDOMAIN" => wire::RCODE_NXDOMAIN,
        "NOTIMP" => wire::RCODE_NOTIMP,
        "REFUSED" => wire::RCODE_REFUSED,
        _ => {
            return Err(ConfigError::at(&t.pos, format!("unknown rcode '{}'; expected NOERROR, NXDOMAIN, SERVFAIL, REFUSED, ...", t.text)));
        }
    })
}

fn parse_template(d: &Directive, s: &ServerConfig) -> Result<TemplateConfig, ConfigError> {
    let mut a = Args::new(d);
    let class_t = a.need("a class (IN or ANY)")?;
    let class = match class_t.text.to_ascii_uppercase().as_str() {
        "IN" => wire::CLASS_IN,
        "ANY" => 255,
        _ => return Err(ConfigError::at(&class_t.pos, format!("template: class '{}'; expected IN or ANY", class_t.text))),
    };
    let qtype = parse_type(a.need("a record type")?)?;
    let zones = zones_or_server(a.rest(), s)?;
    let mut t = TemplateConfig { class, qtype, zones, rcode: wire::RCODE_NOERROR, answers: Vec::new(), fallthrough: false };
    for sub in &d.block {
        match sub.name.text.as_str() {
            "rcode" => {
                let r = sub.args.first().ok_or_else(|| ConfigError::at(&sub.name.pos, "rcode: expected an rcode"))?;
                t.rcode = parse_rcode(r)?;
            }
            "answer" => {
                let r = sub.args.first().ok_or_else(|| ConfigError::at(&sub.name.pos, "answer: expected a quoted record"))?;
                if r.text.contains("{{") {
                    return Err(ConfigError::at(&r.pos, "answer: Go templates are not supported; expected a literal record"));
                }
                t.answers.push(r.text.clone());
            }
            "fallthrough" => t.fallthrough = true,
            "match" => {
                return Err(ConfigError::at(
                    &sub.name.pos,
                    "template: `match` regexes are not supported yet; expected rcode, answer or fallthrough",
                ));
            }
            _ => return Err(unknown_option(d, sub, "rcode, answer, fallthrough")),
        }
    }
    Ok(t)
}

fn parse_hosts(d: &Directive, s: &ServerConfig, base: &Path) -> Result<HostsConfig, ConfigError> {
    let mut a = Args::new(d);
    let mut h = HostsConfig { zones: s.zones_wire.clone(), entries: Vec::new(), ttl: 3600, no_reverse: false, fallthrough: None };
    if let Some(file) = a.next() {
        let text = std::fs::read_to_string(base.join(&file.text))
            .map_err(|e| ConfigError::at(&file.pos, format!("hosts: cannot read '{}': {e}", file.text)))?;
        for line in text.lines() {
            parse_hosts_line(line, &mut h.entries);
        }
        let zones = a.rest();
        if !zones.is_empty() {
            h.zones = zones.iter().map(zone_wire).collect::<Result<_, _>>()?;
        }
    }
    for sub in &d.block {
        match sub.name.text.as_str() {
            "ttl" => {
                h.ttl = num(sub.args.first().ok_or_else(|| ConfigError::at(&sub.name.pos, "ttl: expected seconds"))?, "a TTL", 0u32, 86400)?
            }
            "no_reverse" => h.no_reverse = true,
            "reload" => {}
            "fallthrough" => h.fallthrough = Some(sub.args.iter().map(zone_wire).collect::<Result<_, _>>()?),
            _ => {
                // Inline entry: `IP NAME...`.
                if sub.name.text.parse::<IpAddr>().is_err() {
                    return Err(unknown_option(d, sub, "ttl, no_reverse, reload, fallthrough, or an inline `IP NAME` line"));
                }
                let line = std::iter::once(&sub.name).chain(&sub.args).map(|t| t.text.as_str()).collect::<Vec<_>>().join(" ");
                parse_hosts_line(&line, &mut h.entries);
            }
        }
    }
    Ok(h)
}

fn parse_hosts_line(line: &str, out: &mut Vec<(IpAddr, String)>) {
    let line = line.split('#').next().unwrap_or("");
    let mut it = line.split_whitespace();
    let Some(ip) = it.next().and_then(|t| t.parse::<IpAddr>().ok()) else { return };
    for name in it {
        let mut n = name.to_ascii_lowercase();
        if !n.ends_with('.') {
            n.push('.');
        }
        out.push((ip, n));
    }
}

fn parse_kubernetes(d: &Directive, s: &ServerConfig, base: &Path) -> Result<KubernetesConfig, ConfigError> {
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

/// A parsed resolv.conf (resolv.conf(5)): nameservers, search list, and the `options` tokens as written
/// (what they mean differs per client library; the simulator's models interpret them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

pub fn read_resolv_conf(path: &Path) -> Result<ResolvConf, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(parse_resolv_conf(&text))
}

pub fn parse_resolv_conf(text: &str) -> ResolvConf {
    let mut rc = ResolvConf::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut it = line.split_whitespace();
        match it.next() {
            Some("nameserver") => {
                if let Some(ip) = it.next().and_then(|t| t.parse().ok()) {
                    rc.nameservers.push(ip);
                }
            }
            // Only the last search/domain line counts (resolv.conf(5)).
            Some("search") | Some("domain") => rc.search = it.map(str::to_string).collect(),
            Some("options") => rc.options.extend(it.map(str::to_string)),
            _ => {}
        }
    }
    rc
}

fn parse_upstream(t: &Token, base: &Path, out: &mut Vec<SocketAddr>) -> Result<(), ConfigError> {
    let mut text = t.text.as_str();
    if let Some((scheme, rest)) = text.split_once("://") {
        if scheme != "dns" {
            return Err(ConfigError::at(
                &t.pos,
                format!("forward: '{scheme}://' upstreams are not supported; expected IP[:PORT], dns:// or a resolv.conf file"),
            ));
        }
        text = rest;
    }
    // CoreDNS (parse.HostPortOrFile): an address if it parses as one, else a resolv.conf file.
    if let Ok(sa) = text.parse::<SocketAddr>() {
        out.push(sa);
    } else if let Ok(ip) = text.parse::<IpAddr>() {
        out.push(SocketAddr::new(ip, 53));
    } else if base.join(text).is_file() {
        let rc = read_resolv_conf(&base.join(text)).map_err(|e| ConfigError::at(&t.pos, format!("forward: {e}")))?;
        if rc.nameservers.is_empty() {
            return Err(ConfigError::at(&t.pos, format!("forward: {text} lists no nameserver")));
        }
        out.extend(rc.nameservers.into_iter().map(|ip| SocketAddr::new(ip, 53)));
    } else {
        return Err(ConfigError::at(
            &t.pos,
            format!("forward: bad upstream '{}'; expected IP[:PORT], [IPv6]:PORT or an existing resolv.conf file", t.text),
        ));
    }
    Ok(())
}

fn parse_forward(d: &Directive, base: &Path) -> Result<ForwardConfig, ConfigError> {
    let mut a = Args::new(d);
    let from = zone_wire(a.need("FROM (a zone, such as .)")?)?;
    let mut to = Vec::new();
    for t in a.rest() {
        parse_upstream(t, base, &mut to)?;
    }
    if to.is_empty() {
        return Err(ConfigError::at(&d.name.pos, "forward: expected at least one upstream after FROM"));
    }
    if to.len() > 15 {
        return Err(ConfigError::at(&d.name.pos, "forward: at most 15 upstreams (as CoreDNS)"));
    }
    // dns-servers.md §1.5 defaults.
    let mut f = ForwardConfig {
        from,
        to,
        except: Vec::new(),
        force_tcp: false,
        prefer_udp: false,
        expire: Duration::from_secs(10),
        max_fails: 2,
        health_check: Duration::from_millis(500),
        policy: Policy::Random,
        max_concurrent: None,
        read_timeout: Duration::from_secs(2),
        failfast_all_unhealthy: false,
    };
    for sub in &d.block {
        let mut sa = Args::new(sub);
        match sub.name.text.as_str() {
            "except" => f.except = sa.rest().iter().map(zone_wire).collect::<Result<_, _>>()?,
            "force_tcp" => f.force_tcp = true,
            "prefer_udp" => f.prefer_udp = true,
            "expire" => f.expire = dur(sa.need("a duration")?, "an expire duration")?,
            "max_fails" => f.max_fails = num(sa.need("a number")?, "max_fails", 0u32, 1000)?,
            "health_check" => {
                f.health_check = dur(sa.need("a duration")?, "a health check interval")?;
                // `no_rec` and `domain FQDN` change the probe's flags/name only.
                sa.rest();
            }
            "policy" => {
                let t = sa.need("random, round_robin or sequential")?;
                f.policy = match t.text.as_str() {
                    "random" => Policy::Random,
                    "round_robin" => Policy::RoundRobin,
                    "sequential" => Policy::Sequential,
                    _ => return Err(ConfigError::at(&t.pos, format!("policy: '{}'; expected random, round_robin or sequential", t.text))),
                };
            }
            "max_concurrent" => f.max_concurrent = Some(num(sa.need("a number")?, "max_concurrent", 1usize, 1 << 24)?),
            "read_timeout" => f.read_timeout = dur(sa.need("a duration")?, "a read timeout")?,
            "failfast_all_unhealthy_upstreams" => f.failfast_all_unhealthy = true,
            "max_idle_conns" | "max_age" => {
                sa.rest();
            }
            _ => {
                return Err(unknown_option(
                    d,
                    sub,
                    "except, force_tcp, prefer_udp, expire, max_fails, health_check, policy, max_concurrent, read_timeout, failfast_all_unhealthy_upstreams, max_idle_conns, max_age",
                ));
            }
        }
        sa.done()?;
    }
    Ok(f)
}

/// The wildcard listen addresses used when a block has no `bind`.
pub fn wildcard_addrs() -> Vec<IpAddr> {
    vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V6(Ipv6Addr::UNSPECIFIED)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corefile::parse_str;

    fn cfg(text: &str) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir();
        let cf = parse_str(text, "Corefile", Some(dir.clone()), &|_| None)?;
        Config::from_corefile(&cf, &dir)
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
