//! The `ndots` command line, read as Go's `flag` package reads CoreDNS's and node-cache's: both are
//! Go programs, and their manifests pass `-conf FILE`, `-localip=a,b`, `-setupinterface=false`.
//!
//! One or two dashes; a valued flag takes `-name=value` or `-name value`; a boolean takes `-name` or
//! `-name=BOOL` (never `-name false`: Go reads that `false` as a positional argument, and so do we,
//! which is an error); parsing stops at `--` or the first non-flag argument, and CoreDNS refuses
//! extra arguments (sources.md#go-flag). clap cannot parse single-dash long flags, so this is the one
//! hand-written parser in the crate.
//!
//! `-localip` turns on node-local mode (node-cache's flags, sources.md#node-local-dns). Pure: the binary
//! passes `std::env::args()` in.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Which iptables the node-local rules go through (an ndots flag; node-cache's image decides the
/// same thing with a wrapper script).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IptablesMode {
    /// The one the host's kubelet and kube-proxy use (`nodelocal::rules::choose_backend`).
    Auto,
    Legacy,
    Nft,
}

/// node-cache's flags, with its defaults (sources.md#node-local-dns).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeLocalFlags {
    /// `-localip`: the addresses to serve on, all of one family.
    pub local_ips: Vec<IpAddr>,
    pub setup_interface: bool,
    pub interface_name: String,
    /// `-syncinterval`: how often the interface and rules are re-checked.
    pub sync_interval: Duration,
    pub metrics_listen: SocketAddr,
    pub setup_iptables: bool,
    pub base_corefile: PathBuf,
    /// `-corefile`, overridden by `-conf`: where the rendered Corefile is written and read from.
    pub corefile: PathBuf,
    /// `-kubednscm`: the kube-dns ConfigMap's directory (stubDomains, upstreamNameservers).
    pub kubedns_cm: Option<PathBuf>,
    pub upstream_svc: String,
    pub health_port: u16,
    pub skip_teardown: bool,
    pub reload_with_signal: bool,
    pub iptables: IptablesMode,
}

impl Default for NodeLocalFlags {
    fn default() -> Self {
        NodeLocalFlags {
            local_ips: Vec::new(),
            setup_interface: true,
            interface_name: "nodelocaldns".into(),
            sync_interval: Duration::from_secs(60),
            metrics_listen: SocketAddr::from(([0, 0, 0, 0], 9353)),
            setup_iptables: true,
            base_corefile: PathBuf::from("/etc/coredns/Corefile.base"),
            corefile: PathBuf::from("/etc/Corefile"),
            kubedns_cm: None,
            upstream_svc: "kube-dns".into(),
            health_port: 8080,
            skip_teardown: false,
            reload_with_signal: false,
            iptables: IptablesMode::Auto,
        }
    }
}

/// Everything the command line says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Flags {
    /// `-conf`; `None` means `Corefile` (or node-cache's `-corefile` in node-local mode).
    pub conf: Option<PathBuf>,
    pub seed: Option<u64>,
    pub workers: Option<usize>,
    pub check: bool,
    pub version: bool,
    pub help: bool,
    /// CoreDNS's `-pidfile`: written once the server listens, removed when it stops.
    pub pidfile: Option<PathBuf>,
    pub quiet: bool,
    pub plugins: bool,
    /// Present when `-localip` was given.
    pub node_local: Option<NodeLocalFlags>,
}

impl Flags {
    /// The Corefile the server loads.
    pub fn corefile(&self) -> PathBuf {
        match (&self.conf, &self.node_local) {
            (Some(c), _) => c.clone(),
            (None, Some(n)) => n.corefile.clone(),
            (None, None) => PathBuf::from("Corefile"),
        }
    }
}

pub const USAGE: &str = "usage: ndots [flags]
  -conf FILE             Corefile to load (default: Corefile; node-local mode: -corefile)
  -seed N                seed for the server's random choices (default: random; NDOTS_SEED)
  -workers N             worker threads (default: one per CPU; NDOTS_WORKERS); UDP goes to as few as keep up
  -check                 validate the Corefile and cluster state (node-local: render it first), then exit
  -pidfile FILE          write the process id here once listening
  -version               print the version
node-local mode (node-cache's flags; -localip turns it on):
  -localip IP[,IP...]    addresses to serve on, one family (required)
  -upstreamsvc NAME      Service whose ClusterIP ($NAME_SERVICE_HOST) is __PILLAR__CLUSTER__DNS__ (kube-dns)
  -basecorefile FILE     the __PILLAR__ template (/etc/coredns/Corefile.base)
  -corefile FILE         where the rendered Corefile is written (/etc/Corefile; -conf overrides)
  -kubednscm DIR         kube-dns ConfigMap directory, stubDomains/upstreamNameservers (/etc/kube-dns if present)
  -setupinterface=BOOL   create the dummy interface holding the local IPs (true)
  -interfacename NAME    its name (nodelocaldns)
  -setupiptables=BOOL    install the NOTRACK and ACCEPT rules (true)
  -iptables MODE         auto, legacy or nft (auto: the back end the node's kube rules are in)
  -health-port N         health port the NOTRACK rules cover (8080)
  -syncinterval N        seconds between checks of the interface and rules (60)
  -metrics-listen-address ADDR   setup-error metrics (0.0.0.0:9353)
  -skipteardown=BOOL     leave the interface and rules on exit (false)
  -reloadwithsignal=BOOL accepted; the rendered Corefile is re-read by its reload plugin";

/// A command-line mistake; the binary prints it with the usage and exits 2, as Go's `flag` does.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct FlagError(pub String);

fn err<T>(s: impl Into<String>) -> Result<T, FlagError> {
    Err(FlagError(s.into()))
}

/// Go's `strconv.ParseBool`.
fn parse_bool(name: &str, v: &str) -> Result<bool, FlagError> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => err(format!("invalid boolean value \"{v}\" for -{name}; expected true or false (as -{name}=false)")),
    }
}

fn parse_num<T: std::str::FromStr>(name: &str, v: &str, what: &str) -> Result<T, FlagError> {
    v.parse().or_else(|_| err(format!("invalid value \"{v}\" for -{name}; expected {what}")))
}

/// node-cache reads `-syncinterval` as a Go duration and multiplies it by a second, so its default
/// `60` and a written `30ns` both mean seconds. A bare number or a sub-second value is read that way
/// here; a value with a larger unit (`1m`) is taken as written, where node-cache would overflow.
fn parse_sync_interval(v: &str) -> Result<Duration, FlagError> {
    let d = crate::config::parse_duration(v)
        .ok_or_else(|| FlagError(format!("invalid value \"{v}\" for -syncinterval; expected seconds such as 60")))?;
    let bare = v.bytes().all(|b| b.is_ascii_digit());
    let d = if bare {
        d
    } else if d < Duration::from_secs(1) {
        Duration::from_secs(d.as_nanos() as u64)
    } else {
        d
    };
    if d.is_zero() {
        return err("invalid value for -syncinterval; expected at least one second");
    }
    Ok(d)
}

/// `-localip`: a comma list of one family; node-cache rejects an empty item (as the English IPVS
/// instructions leave one, `-localip 169.254.20.10,`).
fn parse_local_ips(v: &str) -> Result<Vec<IpAddr>, FlagError> {
    let mut ips: Vec<IpAddr> = Vec::new();
    for item in v.split(',') {
        let ip: IpAddr = item
            .trim()
            .parse()
            .or_else(|_| err(format!("invalid -localip \"{item}\" in \"{v}\"; expected a comma-separated list of IP addresses")))?;
        if let Some(first) = ips.first()
            && first.is_ipv4() != ip.is_ipv4()
        {
            return err(format!("-localip mixes IP families ({first} and {ip}); expected all IPv4 or all IPv6"));
        }
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    Ok(ips)
}

const VALUED: &[&str] = &[
    "conf",
    "seed",
    "workers",
    "pidfile",
    "dns.port",
    "p",
    "localip",
    "interfacename",
    "basecorefile",
    "corefile",
    "kubednscm",
    "upstreamsvc",
    "health-port",
    "syncinterval",
    "metrics-listen-address",
    "iptables",
];
const BOOLS: &[&str] =
    &["check", "version", "h", "help", "quiet", "plugins", "setupinterface", "setupiptables", "skipteardown", "reloadwithsignal"];

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Flags, FlagError> {
    let mut f = Flags::default();
    let mut nl = NodeLocalFlags::default();
    let mut local_ip: Option<String> = None;
    let mut node_only: Vec<String> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            break;
        }
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')).filter(|f| !f.is_empty() && !f.starts_with('-')) else {
            // Go stops at the first argument that is not a flag; what is left is refused below.
            i -= 1;
            break;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        if !BOOLS.contains(&name) && !VALUED.contains(&name) {
            return err(format!("flag provided but not defined: -{name}"));
        }
        let value = if BOOLS.contains(&name) {
            inline.unwrap_or_else(|| "true".into())
        } else {
            match inline {
                Some(v) => v,
                None => match args.get(i) {
                    Some(v) => {
                        i += 1;
                        v.clone()
                    }
                    None => return err(format!("flag needs an argument: -{name}")),
                },
            }
        };
        let v = value.as_str();
        match name {
            "conf" => f.conf = Some(PathBuf::from(v)),
            "seed" => f.seed = Some(parse_num(name, v, "a number")?),
            "workers" => match v.parse::<usize>() {
                Ok(n) if n >= 1 => f.workers = Some(n),
                _ => return err(format!("invalid value \"{v}\" for -workers; expected a number of at least 1")),
            },
            "check" => f.check = parse_bool(name, v)?,
            "version" => f.version = parse_bool(name, v)?,
            "h" | "help" => f.help = parse_bool(name, v)?,
            "quiet" => f.quiet = parse_bool(name, v)?,
            "plugins" => f.plugins = parse_bool(name, v)?,
            "pidfile" => f.pidfile = Some(PathBuf::from(v)),
            "dns.port" | "p" => {
                // CoreDNS's default port for keys without one. Only 53 is supported: put another
                // port in the Corefile's server keys instead (`.:5353`).
                if v != "53" {
                    return err(format!("-{name} {v}: only 53 is supported; write the port in the Corefile's server keys (.:{v})"));
                }
            }
            "localip" => local_ip = Some(v.to_string()),
            "setupinterface" | "setupiptables" | "skipteardown" | "reloadwithsignal" => {
                let b = parse_bool(name, v)?;
                match name {
                    "setupinterface" => nl.setup_interface = b,
                    "setupiptables" => nl.setup_iptables = b,
                    "skipteardown" => nl.skip_teardown = b,
                    _ => nl.reload_with_signal = b,
                }
                node_only.push(name.to_string());
            }
            "interfacename"
            | "basecorefile"
            | "corefile"
            | "kubednscm"
            | "upstreamsvc"
            | "health-port"
            | "syncinterval"
            | "metrics-listen-address"
            | "iptables" => {
                match name {
                    "interfacename" => nl.interface_name = v.to_string(),
                    "basecorefile" => nl.base_corefile = PathBuf::from(v),
                    "corefile" => nl.corefile = PathBuf::from(v),
                    "kubednscm" => nl.kubedns_cm = (!v.is_empty()).then(|| PathBuf::from(v)),
                    "upstreamsvc" => nl.upstream_svc = v.to_string(),
                    "health-port" => nl.health_port = parse_num(name, v, "a port number")?,
                    "syncinterval" => nl.sync_interval = parse_sync_interval(v)?,
                    "metrics-listen-address" => nl.metrics_listen = parse_num(name, v, "an address such as 0.0.0.0:9353")?,
                    _ => {
                        nl.iptables = match v {
                            "auto" => IptablesMode::Auto,
                            "legacy" => IptablesMode::Legacy,
                            "nft" => IptablesMode::Nft,
                            _ => return err(format!("invalid value \"{v}\" for -iptables; expected auto, legacy or nft")),
                        }
                    }
                }
                node_only.push(name.to_string());
            }
            _ => return err(format!("flag provided but not defined: -{name}")),
        }
    }
    if let Some(rest) = args.get(i..).filter(|r| !r.is_empty()) {
        return err(format!("extra command line arguments: {}; expected only flags such as -conf FILE", rest.join(" ")));
    }
    match local_ip {
        Some(v) => {
            nl.local_ips = parse_local_ips(&v)?;
            f.node_local = Some(nl);
        }
        None => {
            if let Some(name) = node_only.first() {
                return err(format!("-{name} is a node-local flag; expected -localip too"));
            }
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Flags, FlagError> {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn coredns_flags_in_every_go_spelling() {
        for s in
            ["-conf /etc/coredns/Corefile", "--conf /etc/coredns/Corefile", "-conf=/etc/coredns/Corefile", "--conf=/etc/coredns/Corefile"]
        {
            let f = p(s).expect(s);
            assert_eq!(f.conf, Some(PathBuf::from("/etc/coredns/Corefile")), "{s}");
            assert!(f.node_local.is_none());
        }
        let f = p("-check -pidfile /tmp/p -dns.port 53 -quiet").expect("ok");
        assert!(f.check && f.quiet);
        assert_eq!(f.pidfile, Some(PathBuf::from("/tmp/p")));
        assert_eq!(p("").expect("empty").corefile(), PathBuf::from("Corefile"));
    }

    #[test]
    fn node_caches_manifest_args_turn_on_node_local_mode() {
        let f = p("-localip 169.254.20.10,10.96.0.10 -conf /etc/Corefile -upstreamsvc kube-dns-upstream -pidfile /tmp/node-cache.pid")
            .expect("the DaemonSet's args");
        let n = f.node_local.as_ref().expect("node-local");
        assert_eq!(n.local_ips, vec!["169.254.20.10".parse::<IpAddr>().expect("ip"), "10.96.0.10".parse().expect("ip")]);
        assert_eq!(n.upstream_svc, "kube-dns-upstream");
        assert!(n.setup_interface && n.setup_iptables && !n.skip_teardown);
        assert_eq!(n.sync_interval, Duration::from_secs(60));
        assert_eq!(n.health_port, 8080);
        assert_eq!(f.corefile(), PathBuf::from("/etc/Corefile"));
        let f = p("-localip=169.254.20.10 -setupinterface=false -setupiptables=0 -skipteardown -corefile /x").expect("bools");
        let n = f.node_local.as_ref().expect("node-local");
        assert!(!n.setup_interface && !n.setup_iptables && n.skip_teardown);
        assert_eq!(f.corefile(), PathBuf::from("/x"));
    }

    #[test]
    fn syncinterval_reads_as_node_cache_does() {
        let si = |v: &str| p(&format!("-localip 1.2.3.4 -syncinterval {v}")).map(|f| f.node_local.expect("nl").sync_interval);
        assert_eq!(si("30"), Ok(Duration::from_secs(30)));
        assert_eq!(si("30ns"), Ok(Duration::from_secs(30)));
        assert_eq!(si("2m"), Ok(Duration::from_secs(120)));
        assert!(si("0").is_err());
        assert!(si("soon").is_err());
    }

    #[test]
    fn mistakes_are_named() {
        let e = |s: &str| p(s).expect_err(s).0;
        assert!(e("-localip 169.254.20.10,").contains("invalid -localip"));
        assert!(e("-localip 169.254.20.10,fd00::a").contains("mixes IP families"));
        assert!(e("-upstreamsvc kube-dns").contains("expected -localip"));
        assert!(e("-conf").contains("needs an argument"));
        assert!(e("-nope").contains("not defined: -nope"));
        assert!(e("-localip 1.2.3.4 -setupinterface false").contains("extra command line arguments: false"));
        assert!(e("-setupinterface=maybe").contains("invalid boolean"));
        assert!(e("-dns.port 5353").contains("only 53"));
        assert!(e("-workers 0").contains("at least 1"));
        assert!(e("stray").contains("extra command line arguments: stray"));
    }
}
