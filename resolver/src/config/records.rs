//! The configuration of the plugins that answer from local records: `template` and `hosts`.

use std::net::IpAddr;

use crate::corefile::{ConfigError, Directive};
use crate::wire;

use super::args::{Args, num, parse_rcode, parse_type, unknown_option, zones_or_server};
use super::{Files, ServerConfig, zone_wire};

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

pub(super) fn parse_template(d: &Directive, s: &ServerConfig) -> Result<TemplateConfig, ConfigError> {
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

pub(super) fn parse_hosts(d: &Directive, s: &ServerConfig, files: &Files) -> Result<HostsConfig, ConfigError> {
    let mut a = Args::new(d);
    let mut h = HostsConfig { zones: s.zones_wire.clone(), entries: Vec::new(), ttl: 3600, no_reverse: false, fallthrough: None };
    if let Some(file) = a.next() {
        let text = files.read(&file.text).map_err(|e| ConfigError::at(&file.pos, format!("hosts: {e}")))?;
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

pub(super) fn parse_hosts_line(line: &str, out: &mut Vec<(IpAddr, String)>) {
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
