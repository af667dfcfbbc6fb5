//! The `forward` plugin's configuration, with CoreDNS's defaults (sources.md#coredns-forward), and
//! the resolv.conf files it may name.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use crate::corefile::{ConfigError, Directive, Token};

use super::args::{Args, dur, num, unknown_option};
use super::{Files, zone_wire};

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

/// CoreDNS's `forward` request deadline (`defaultTimeout`, sources.md#coredns-forward).
pub const FORWARD_DEADLINE: Duration = Duration::from_secs(5);

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

pub(super) fn parse_upstream(t: &Token, files: &Files, out: &mut Vec<SocketAddr>) -> Result<(), ConfigError> {
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
    } else if files.exists(text) {
        let rc = files.read(text).map(|t| parse_resolv_conf(&t)).map_err(|e| ConfigError::at(&t.pos, format!("forward: {e}")))?;
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

pub(super) fn parse_forward(d: &Directive, files: &Files) -> Result<ForwardConfig, ConfigError> {
    let mut a = Args::new(d);
    let from = zone_wire(a.need("FROM (a zone, such as .)")?)?;
    let mut to = Vec::new();
    for t in a.rest() {
        parse_upstream(t, files, &mut to)?;
    }
    if to.is_empty() {
        return Err(ConfigError::at(&d.name.pos, "forward: expected at least one upstream after FROM"));
    }
    if to.len() > 15 {
        return Err(ConfigError::at(&d.name.pos, "forward: at most 15 upstreams (as CoreDNS)"));
    }
    // sources.md#coredns-forward defaults.
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
