//! resolv.conf as the libraries read it, and the kubelet's generated file (sources.md#kubelet-resolv-conf, sources.md#glibc).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Parsed resolv.conf with glibc's defaults (resolv.conf(5)): ndots 1, timeout 5 s, attempts 2.
/// Each library clamps and interprets options itself; this keeps the raw values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub ndots: u32,
    pub timeout: u32,
    pub attempts: u32,
    pub rotate: bool,
    pub single_request: bool,
    pub single_request_reopen: bool,
    pub use_vc: bool,
    pub edns0: bool,
    pub no_aaaa: bool,
    pub no_tld_query: bool,
    /// evdns `randomize-case:N` (default on in evdns; glibc ignores it).
    pub randomize_case: Option<bool>,
    /// Whether `attempts:` was written (evdns' default, 3, differs from glibc's 2).
    pub attempts_given: bool,
    /// Options no library model recognised (Go falls back to cgo on some of these).
    pub unknown: Vec<String>,
}

impl Default for ResolvConf {
    fn default() -> Self {
        ResolvConf {
            nameservers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
            timeout: 5,
            attempts: 2,
            rotate: false,
            single_request: false,
            single_request_reopen: false,
            use_vc: false,
            edns0: false,
            no_aaaa: false,
            no_tld_query: false,
            randomize_case: None,
            attempts_given: false,
            unknown: Vec::new(),
        }
    }
}

impl ResolvConf {
    /// Parses resolv.conf text (the resolver's parser reads the lines; options are interpreted here).
    pub fn parse(text: &str) -> ResolvConf {
        let base = resolver::config::parse_resolv_conf(text);
        let mut rc = ResolvConf {
            nameservers: base.nameservers,
            search: base.search.iter().map(|s| s.trim_end_matches('.').to_ascii_lowercase()).collect(),
            ..ResolvConf::default()
        };
        for opt in &base.options {
            let (k, v) = opt.split_once(':').map_or((opt.as_str(), None), |(k, v)| (k, v.parse::<u32>().ok()));
            match (k, v) {
                ("ndots", Some(n)) => rc.ndots = n,
                ("timeout", Some(n)) => rc.timeout = n,
                ("attempts", Some(n)) => {
                    rc.attempts = n;
                    rc.attempts_given = true;
                }
                ("rotate", _) => rc.rotate = true,
                ("single-request", _) => rc.single_request = true,
                ("single-request-reopen", _) => rc.single_request_reopen = true,
                ("use-vc", _) | ("usevc", _) | ("tcp", _) => rc.use_vc = true,
                ("edns0", _) => rc.edns0 = true,
                ("no-aaaa", _) => rc.no_aaaa = true,
                ("no-tld-query", _) => rc.no_tld_query = true,
                ("randomize-case", Some(n)) => rc.randomize_case = Some(n != 0),
                _ => rc.unknown.push(opt.clone()),
            }
        }
        rc
    }

    /// The kubelet's resolv.conf for a ClusterFirst pod (sources.md#kubelet-resolv-conf): the cluster DNS IP,
    /// `<ns>.svc.<domain> svc.<domain> <domain>` then the node's search domains without duplicates,
    /// and `options ndots:5`.
    pub fn kubelet_cluster_first(cluster_dns: IpAddr, namespace: &str, cluster_domain: &str, node_search: &[&str]) -> String {
        let mut search = vec![format!("{namespace}.svc.{cluster_domain}"), format!("svc.{cluster_domain}"), cluster_domain.to_string()];
        for s in node_search {
            if !search.iter().any(|x| x == s) {
                search.push(s.to_string());
            }
        }
        format!("search {}\nnameserver {cluster_dns}\noptions ndots:5\n", search.join(" "))
    }

    /// Nameservers as socket addresses on port 53; resolv.conf has no ports.
    pub fn servers(&self, max: usize) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = self.nameservers.iter().take(max).map(|ip| SocketAddr::new(*ip, 53)).collect();
        if v.is_empty() {
            // No nameserver line: the local host (glibc and musl).
            v.push(SocketAddr::from(([127, 0, 0, 1], 53)));
        }
        v
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kubelet_file() {
        let text = ResolvConf::kubelet_cluster_first(
            "10.96.0.10".parse().expect("ip"),
            "default",
            "cluster.local",
            &["ec2.internal", "cluster.local"],
        );
        let rc = ResolvConf::parse(&text);
        assert_eq!(rc.search, ["default.svc.cluster.local", "svc.cluster.local", "cluster.local", "ec2.internal"]);
        assert_eq!(rc.ndots, 5);
        assert_eq!(rc.servers(3), [SocketAddr::from(([10, 96, 0, 10], 53))]);
        assert_eq!((rc.timeout, rc.attempts), (5, 2));
    }

    #[test]
    fn options_and_unknowns() {
        let rc = ResolvConf::parse("options ndots:2 single-request-reopen timeout:1 attempts:3 edns0 trust-ad\nsearch a b\nsearch c\n");
        assert!(rc.single_request_reopen && rc.edns0);
        assert_eq!((rc.ndots, rc.timeout, rc.attempts), (2, 1, 3));
        assert_eq!(rc.search, ["c"]);
        assert_eq!(rc.unknown, ["trust-ad"]);
    }
}
