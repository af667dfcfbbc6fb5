//! The iptables rules node-local mode keeps for each local IP (sources.md#node-local-dns): NOTRACK in
//! `raw` so neither the queries nor the answers enter conntrack (no insertion race, no table to fill,
//! and kube-proxy's DNAT for the kube-dns ClusterIP, which needs conntrack, is bypassed), and ACCEPT
//! in `filter` because untracked packets miss the usual ESTABLISHED rule. Twelve rules per IP:
//!
//! | table/chain     | match                                   | target  |
//! |-----------------|-----------------------------------------|---------|
//! | raw PREROUTING  | tcp, udp `-d IP --dport 53`             | NOTRACK |
//! | filter INPUT    | tcp, udp `-d IP --dport 53`             | ACCEPT  |
//! | raw OUTPUT      | tcp, udp `-s IP --sport 53`             | NOTRACK |
//! | filter OUTPUT   | tcp, udp `-s IP --sport 53`             | ACCEPT  |
//! | raw OUTPUT      | tcp, udp `-d IP --dport 53`             | NOTRACK |
//! | raw OUTPUT      | tcp `-d IP --dport H`, `-s IP --sport H` | NOTRACK |
//!
//! where H is the health port. Each carries node-cache's comment, so rules either program made are
//! the same rules to the other.

use std::net::IpAddr;

pub const COMMENT_SKIP_CONNTRACK: &str = "NodeLocal DNS Cache: skip conntrack";
pub const COMMENT_ALLOW: &str = "NodeLocal DNS Cache: allow DNS traffic";

/// One rule: its table, chain, and the rule specification as `iptables -C/-I/-D` take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub table: &'static str,
    pub chain: &'static str,
    /// Arguments after the chain, a comment in double quotes.
    pub spec: String,
}

fn rule(table: &'static str, chain: &'static str, proto: &str, dir: &str, ip: IpAddr, port: u16, target: &str) -> Rule {
    let (addr, port_flag) = if dir == "d" { ("-d", "--dport") } else { ("-s", "--sport") };
    let comment = if target == "NOTRACK" { COMMENT_SKIP_CONNTRACK } else { COMMENT_ALLOW };
    Rule { table, chain, spec: format!("-p {proto} {addr} {ip} {port_flag} {port} -j {target} -m comment --comment \"{comment}\"") }
}

/// The rules for every local IP, in the order they are checked.
pub fn rules(ips: &[IpAddr], port: u16, health_port: u16) -> Vec<Rule> {
    let mut v = Vec::new();
    for &ip in ips {
        for proto in ["tcp", "udp"] {
            v.push(rule("raw", "PREROUTING", proto, "d", ip, port, "NOTRACK"));
            v.push(rule("filter", "INPUT", proto, "d", ip, port, "ACCEPT"));
            v.push(rule("raw", "OUTPUT", proto, "s", ip, port, "NOTRACK"));
            v.push(rule("filter", "OUTPUT", proto, "s", ip, port, "ACCEPT"));
            v.push(rule("raw", "OUTPUT", proto, "d", ip, port, "NOTRACK"));
        }
        v.push(rule("raw", "OUTPUT", "tcp", "d", ip, health_port, "NOTRACK"));
        v.push(rule("raw", "OUTPUT", "tcp", "s", ip, health_port, "NOTRACK"));
    }
    v
}

/// iptables 1.8 has two back ends, and rules written through one are invisible to the other's
/// tools, so node-local rules must go where the node's kubelet and kube-proxy put theirs. Like the
/// wrapper kube-proxy's image uses (sources.md#iptables-wrappers): the back end holding kubelet's
/// marker chains (`KUBE-IPTABLES-HINT`, `KUBE-KUBELET-CANARY`) wins; else the one with more rules;
/// else nft, the default of current distributions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Legacy,
    Nft,
}

impl Backend {
    /// The command for this back end and family.
    pub fn command(self, ipv6: bool) -> &'static str {
        match (self, ipv6) {
            (Backend::Legacy, false) => "iptables-legacy",
            (Backend::Legacy, true) => "ip6tables-legacy",
            (Backend::Nft, false) => "iptables-nft",
            (Backend::Nft, true) => "ip6tables-nft",
        }
    }
}

/// Chooses from each back end's `iptables-save` output (`None`: that back end is not installed).
pub fn choose_backend(legacy_save: Option<&str>, nft_save: Option<&str>) -> Backend {
    let marked = |s: Option<&str>| s.is_some_and(|s| s.contains("KUBE-IPTABLES-HINT") || s.contains("KUBE-KUBELET-CANARY"));
    let rules = |s: Option<&str>| s.map_or(0, |s| s.lines().filter(|l| l.starts_with("-A ")).count());
    match (legacy_save, nft_save) {
        (Some(_), None) => Backend::Legacy,
        (None, _) => Backend::Nft,
        _ if marked(nft_save) => Backend::Nft,
        _ if marked(legacy_save) => Backend::Legacy,
        _ if rules(legacy_save) > rules(nft_save) => Backend::Legacy,
        _ => Backend::Nft,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twelve_rules_per_ip_as_node_cache_has_them() {
        let ips: Vec<IpAddr> = vec!["169.254.20.10".parse().expect("ip"), "10.96.0.10".parse().expect("ip")];
        let r = rules(&ips, 53, 8080);
        assert_eq!(r.len(), 24);
        assert_eq!(r[0].table, "raw");
        assert_eq!(r[0].chain, "PREROUTING");
        assert_eq!(r[0].spec, "-p tcp -d 169.254.20.10 --dport 53 -j NOTRACK -m comment --comment \"NodeLocal DNS Cache: skip conntrack\"");
        assert_eq!(r.iter().filter(|r| r.table == "filter").count(), 8);
        assert!(r.iter().any(|r| r.spec.starts_with("-p tcp -s 10.96.0.10 --sport 8080 -j NOTRACK")));
        let mut specs: Vec<_> = r.iter().map(|r| (r.table, r.chain, r.spec.clone())).collect();
        specs.sort();
        specs.dedup();
        assert_eq!(specs.len(), 24, "no rule twice");
    }

    #[test]
    fn backend_follows_the_kubelets_marker_then_the_rule_count() {
        let kube = "*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n";
        let many = "*filter\n-A INPUT -j A\n-A INPUT -j B\nCOMMIT\n";
        let few = "*filter\n-A INPUT -j A\nCOMMIT\n";
        assert_eq!(choose_backend(Some(many), Some(kube)), Backend::Nft);
        assert_eq!(choose_backend(Some(kube), Some(many)), Backend::Legacy);
        assert_eq!(choose_backend(Some(many), Some(few)), Backend::Legacy);
        assert_eq!(choose_backend(Some(few), Some(few)), Backend::Nft);
        assert_eq!(choose_backend(Some(few), None), Backend::Legacy);
        assert_eq!(choose_backend(None, None), Backend::Nft);
        assert_eq!(Backend::Legacy.command(true), "ip6tables-legacy");
    }
}
