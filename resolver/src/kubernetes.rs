//! The `kubernetes` plugin: authoritative records for the cluster zones, synthesised from `ClusterState`
//! per the Kubernetes DNS specification (kubernetes/dns docs/specification.md, schema 1.1.0;
//! sources.md#coredns-kubernetes).
//!
//! | name | records |
//! |---|---|
//! | `<svc>.<ns>.svc.<zone>` | A/AAAA of the ClusterIP; headless: one per ready endpoint; ExternalName: CNAME |
//! | `<host>.<svc>.<ns>.svc.<zone>` | A/AAAA of a headless endpoint (hostname, pod name with `endpoint_pod_names`, or dashed IP) |
//! | `_<port>._<proto>.<svc>.<ns>.svc.<zone>` | SRV per named port (headless: per endpoint) with A/AAAA in additional |
//! | `<a-b-c-d>.<ns>.pod.<zone>` | A under `pods insecure` (echo) or `pods verified` (must exist); NXDOMAIN when disabled |
//! | reverse of a ClusterIP or endpoint IP | PTR |
//! | `dns-version.<zone>` | TXT `1.1.0` |
//!
//! A name that exists without the asked type is NODATA; one that does not is NXDOMAIN; both carry the
//! zone's SOA in authority with the plugin's TTL as negative TTL (RFC 2308 §3), and AA is set.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record};

use crate::cluster::{ClusterState, Service, ServiceKind};
use crate::config::{KubernetesConfig, PodsMode};
use crate::synth::Synth;
use crate::wire;

pub enum KubeResult {
    Answer(Synth),
    /// NXDOMAIN inside a `fallthrough` zone: the next plugin answers.
    Fallthrough,
}

fn name(text: &str) -> Name {
    // Names we build come from validated labels; an invalid one becomes the root rather than a panic.
    Name::from_ascii(text).unwrap_or_else(|_| Name::root())
}

fn ip_record(owner: &Name, ttl: u32, ip: IpAddr) -> Record {
    let rdata = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(owner.clone(), ttl, rdata)
}

fn type_matches(qtype: u16, ip: &IpAddr) -> bool {
    matches!((qtype, ip), (wire::TYPE_A, IpAddr::V4(_)) | (wire::TYPE_AAAA, IpAddr::V6(_)))
}

/// Dashed form of an IP used in pod and endpoint names (`10-244-1-5`, `fd00--1`).
pub fn dashed(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

fn undash(label: &str) -> Option<IpAddr> {
    if label.contains("--") || label.matches('-').count() > 3 {
        label.replace('-', ":").parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    } else {
        label.replace('-', ".").parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    }
}

/// The plugin's state: configuration plus the serial used in SOA records.
pub struct Kubernetes<'a> {
    pub cfg: &'a KubernetesConfig,
    pub state: &'a ClusterState,
    pub serial: u32,
}

enum Found {
    Records(Vec<Record>, Vec<Record>),
    NoData,
    NxDomain,
}

impl Kubernetes<'_> {
    /// The zone of this plugin that holds `qname`, if any (longest match).
    pub fn zone_for<'z>(&'z self, qname: &[u8]) -> Option<&'z [u8]> {
        self.cfg.zones.iter().filter(|z| wire::is_subdomain(qname, z)).max_by_key(|z| z.len()).map(Vec::as_slice)
    }

    fn soa(&self, zone: &str) -> Record {
        // CoreDNS's SOA for the cluster zone: ns.dns.<zone>, hostmaster.<zone>, 7200/1800/86400, minttl = ttl.
        let soa =
            SOA::new(name(&format!("ns.dns.{zone}")), name(&format!("hostmaster.{zone}")), self.serial, 7200, 1800, 86400, self.cfg.ttl);
        Record::from_rdata(name(zone), self.cfg.ttl, RData::SOA(soa))
    }

    /// Answers `qname`/`qtype` (lowercased wire name) from the cluster state.
    pub fn lookup(&self, zone: &[u8], qname: &[u8], qtype: u16, client: IpAddr) -> KubeResult {
        let zone_text = wire::name_to_string(zone);
        let qname_text = wire::name_to_string(qname);
        let owner = name(&qname_text);
        let zone_labels = wire::label_count(zone);
        let all: Vec<String> = wire::labels(qname).map(|l| String::from_utf8_lossy(l).into_owned()).collect();
        let rel: Vec<&str> = all[..all.len() - zone_labels].iter().rev().map(String::as_str).collect();
        let is_reverse = zone_text.ends_with("in-addr.arpa.") || zone_text.ends_with("ip6.arpa.");
        let found =
            if is_reverse { self.reverse(&qname_text, &owner, qtype) } else { self.forward(&rel, &owner, &zone_text, qtype, client) };
        let mut s = Synth { authoritative: true, ..Synth::default() };
        match found {
            Found::Records(answers, additional) => {
                s.answers = answers;
                s.additional = additional;
            }
            Found::NoData => s.authority.push(self.soa(&zone_text)),
            Found::NxDomain => {
                if let Some(ft) = &self.cfg.fallthrough
                    && (ft.is_empty() || ft.iter().any(|z| wire::is_subdomain(qname, z)))
                {
                    return KubeResult::Fallthrough;
                }
                if self.state.unsynced {
                    // Not every watch has listed yet: the name may exist (sources.md#coredns-kubernetes).
                    return KubeResult::Answer(Synth { rcode: wire::RCODE_SERVFAIL, ..Synth::default() });
                }
                s.rcode = wire::RCODE_NXDOMAIN;
                s.authority.push(self.soa(&zone_text));
            }
        }
        KubeResult::Answer(s)
    }

    fn ns_visible(&self, ns: &str) -> bool {
        (self.cfg.namespaces.is_empty() || self.cfg.namespaces.iter().any(|n| n == ns)) && self.state.has_namespace(ns)
    }

    fn forward(&self, rel: &[&str], owner: &Name, zone: &str, qtype: u16, client: IpAddr) -> Found {
        let ttl = self.cfg.ttl;
        match rel {
            [] => match qtype {
                wire::TYPE_SOA => Found::Records(vec![self.soa(zone)], vec![]),
                wire::TYPE_NS => {
                    Found::Records(vec![Record::from_rdata(owner.clone(), ttl, RData::NS(NS(name(&format!("ns.dns.{zone}")))))], vec![])
                }
                _ => Found::NoData,
            },
            ["dns-version"] => {
                if qtype == wire::TYPE_TXT {
                    Found::Records(vec![Record::from_rdata(owner.clone(), ttl, RData::TXT(TXT::new(vec!["1.1.0".into()])))], vec![])
                } else {
                    Found::NoData
                }
            }
            ["svc"] | ["pod"] => Found::NoData,
            ["svc", ns] | ["pod", ns] => {
                if self.ns_visible(ns) {
                    Found::NoData
                } else {
                    Found::NxDomain
                }
            }
            ["pod", ns, label] => self.pod(ns, label, owner, qtype, client),
            ["svc", ns, svc, rest @ ..] => {
                if !self.ns_visible(ns) {
                    return Found::NxDomain;
                }
                let Some(service) = self.state.services.get(&(ns.to_string(), svc.to_string())) else {
                    return Found::NxDomain;
                };
                // `ignore empty_service`: a ClusterIP service with no ready endpoint does not exist, so
                // the client's search walk goes on (headless and ExternalName ones are left alone).
                if self.cfg.ignore_empty_service
                    && matches!(service.kind, ServiceKind::ClusterIp(_))
                    && !service.endpoints.iter().any(|e| e.ready)
                {
                    return Found::NxDomain;
                }
                self.service(service, rest, owner, zone, qtype)
            }
            _ => Found::NxDomain,
        }
    }

    fn pod(&self, ns: &str, label: &str, owner: &Name, qtype: u16, _client: IpAddr) -> Found {
        let Some(ip) = undash(label) else { return Found::NxDomain };
        match self.cfg.pods {
            PodsMode::Disabled => return Found::NxDomain,
            PodsMode::Insecure => {}
            PodsMode::Verified => {
                if self.state.pod_namespace(ip) != Some(ns) {
                    return Found::NxDomain;
                }
            }
        }
        if type_matches(qtype, &ip) { Found::Records(vec![ip_record(owner, self.cfg.ttl, ip)], vec![]) } else { Found::NoData }
    }

    fn endpoint_label(&self, e: &crate::cluster::Endpoint) -> String {
        if let Some(h) = &e.hostname {
            return h.to_ascii_lowercase();
        }
        if self.cfg.endpoint_pod_names
            && let Some(p) = &e.pod_name
            && p.len() <= 63
        {
            return p.to_ascii_lowercase();
        }
        dashed(&e.ip)
    }

    fn service(&self, svc: &Service, rest: &[&str], owner: &Name, zone: &str, qtype: u16) -> Found {
        let ttl = self.cfg.ttl;
        let svc_fqdn = format!("{}.{}.svc.{zone}", svc.name, svc.namespace);
        let ready = || svc.endpoints.iter().filter(|e| e.ready && !self.cfg.noendpoints);
        match rest {
            [] => match &svc.kind {
                ServiceKind::ExternalName(target) => {
                    Found::Records(vec![Record::from_rdata(owner.clone(), ttl, RData::CNAME(CNAME(name(target))))], vec![])
                }
                _ if qtype == wire::TYPE_SRV => self.srv(svc, &svc_fqdn, None, owner),
                ServiceKind::ClusterIp(ips) => {
                    let recs: Vec<Record> = ips.iter().filter(|ip| type_matches(qtype, ip)).map(|ip| ip_record(owner, ttl, *ip)).collect();
                    if recs.is_empty() { Found::NoData } else { Found::Records(recs, vec![]) }
                }
                ServiceKind::Headless => {
                    let recs: Vec<Record> = ready().filter(|e| type_matches(qtype, &e.ip)).map(|e| ip_record(owner, ttl, e.ip)).collect();
                    if recs.is_empty() { Found::NoData } else { Found::Records(recs, vec![]) }
                }
            },
            [proto] if proto.starts_with('_') => Found::NoData,
            [proto, port] if proto.starts_with('_') && port.starts_with('_') => {
                if qtype != wire::TYPE_SRV {
                    return if self.srv(svc, &svc_fqdn, Some((&proto[1..], &port[1..])), owner).is_found() {
                        Found::NoData
                    } else {
                        Found::NxDomain
                    };
                }
                self.srv(svc, &svc_fqdn, Some((&proto[1..], &port[1..])), owner)
            }
            [host] if svc.kind == ServiceKind::Headless => {
                let recs: Vec<Record> = ready()
                    .filter(|e| self.endpoint_label(e) == *host)
                    .map(|e| e.ip)
                    .filter(|ip| type_matches(qtype, ip))
                    .map(|ip| ip_record(owner, ttl, ip))
                    .collect();
                if !recs.is_empty() {
                    Found::Records(recs, vec![])
                } else if ready().any(|e| self.endpoint_label(e) == *host) {
                    Found::NoData
                } else {
                    Found::NxDomain
                }
            }
            _ => Found::NxDomain,
        }
    }

    /// SRV records: for a ClusterIP service one per port pointing at the service name; for a headless
    /// service one per (endpoint, port) pointing at the endpoint name (specification §2.3.2, §2.4.2).
    fn srv(&self, svc: &Service, svc_fqdn: &str, filter: Option<(&str, &str)>, owner: &Name) -> Found {
        let ttl = self.cfg.ttl;
        let ports = if svc.kind == ServiceKind::Headless { &svc.endpoint_ports } else { &svc.ports };
        let matching: Vec<_> = ports
            .iter()
            .filter(|p| !p.name.is_empty() || filter.is_none())
            .filter(|p| filter.is_none_or(|(proto, port)| p.protocol == proto && p.name == port))
            .collect();
        if matching.is_empty() {
            return Found::NxDomain;
        }
        let mut answers = Vec::new();
        let mut additional = Vec::new();
        for p in matching {
            match &svc.kind {
                ServiceKind::Headless => {
                    let eps: Vec<_> = svc.endpoints.iter().filter(|e| e.ready).collect();
                    // Weight: 100 split evenly (CoreDNS: weight = 100 / number of records).
                    let weight = (100 / eps.len().max(1)) as u16;
                    for e in eps {
                        let target = format!("{}.{svc_fqdn}", self.endpoint_label(e));
                        answers.push(Record::from_rdata(owner.clone(), ttl, RData::SRV(SRV::new(0, weight, p.port, name(&target)))));
                        additional.push(ip_record(&name(&target), ttl, e.ip));
                    }
                }
                ServiceKind::ClusterIp(ips) => {
                    answers.push(Record::from_rdata(owner.clone(), ttl, RData::SRV(SRV::new(0, 100, p.port, name(svc_fqdn)))));
                    for ip in ips {
                        additional.push(ip_record(&name(svc_fqdn), ttl, *ip));
                    }
                }
                ServiceKind::ExternalName(_) => {}
            }
        }
        if answers.is_empty() { Found::NoData } else { Found::Records(answers, additional) }
    }

    fn reverse(&self, qname: &str, owner: &Name, qtype: u16) -> Found {
        let Some(ip) = arpa_to_ip(qname) else {
            return Found::NxDomain;
        };
        let Some((ns, svc, ep)) = self.state.reverse.get(&ip) else {
            return Found::NxDomain;
        };
        if !self.ns_visible(ns) {
            return Found::NxDomain;
        }
        if qtype != wire::TYPE_PTR {
            return Found::NoData;
        }
        let zone = self
            .cfg
            .zones
            .iter()
            .map(|z| wire::name_to_string(z))
            .find(|z| !z.ends_with(".arpa."))
            .unwrap_or_else(|| "cluster.local.".into());
        let target = match ep {
            None => format!("{svc}.{ns}.svc.{zone}"),
            Some(i) => {
                let service = &self.state.services[&(ns.clone(), svc.clone())];
                format!("{}.{svc}.{ns}.svc.{zone}", self.endpoint_label(&service.endpoints[*i]))
            }
        };
        Found::Records(vec![Record::from_rdata(owner.clone(), self.cfg.ttl, RData::PTR(PTR(name(&target))))], vec![])
    }
}

impl Found {
    fn is_found(&self) -> bool {
        matches!(self, Found::Records(..))
    }
}

/// Parses `d.c.b.a.in-addr.arpa.` and the ip6.arpa nibble form.
pub fn arpa_to_ip(qname: &str) -> Option<IpAddr> {
    if let Some(rest) = qname.strip_suffix(".in-addr.arpa.") {
        let mut parts: Vec<u8> = rest.split('.').map(|p| p.parse().ok()).collect::<Option<_>>()?;
        if parts.len() != 4 {
            return None;
        }
        parts.reverse();
        return Some(IpAddr::V4(Ipv4Addr::new(parts[0], parts[1], parts[2], parts[3])));
    }
    let rest = qname.strip_suffix(".ip6.arpa.")?;
    let nibbles: Vec<u8> = rest.split('.').map(|p| u8::from_str_radix(p, 16).ok().filter(|_| p.len() == 1)).collect::<Option<_>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, pair) in nibbles.iter().rev().collect::<Vec<_>>().chunks(2).enumerate() {
        bytes[i] = (pair[0] << 4) | pair[1];
    }
    Some(IpAddr::V6(Ipv6Addr::from(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arpa_names_round_trip() {
        assert_eq!(arpa_to_ip("20.0.96.10.in-addr.arpa."), Some("10.96.0.20".parse().expect("ip")));
        let v6: Ipv6Addr = "fd00::1".parse().expect("ip");
        let nib: String = v6.octets().iter().rev().flat_map(|b| [b & 0xf, b >> 4]).map(|n| format!("{n:x}.")).collect();
        assert_eq!(arpa_to_ip(&format!("{nib}ip6.arpa.")), Some(IpAddr::V6(v6)));
        assert_eq!(arpa_to_ip("1.2.in-addr.arpa."), None);
    }

    #[test]
    fn dashed_ips_round_trip() {
        for ip in ["10.244.1.5", "fd00::1"] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(undash(&dashed(&ip)), Some(ip));
        }
    }
}
