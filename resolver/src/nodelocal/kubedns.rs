//! The kube-dns ConfigMap node-cache reads (`-kubednscm`, mounted at /etc/kube-dns): `stubDomains`, a
//! JSON object of domain → nameservers, and `upstreamNameservers`, a JSON list (sources.md#node-local-dns).
//! Other keys (`federations`) are ignored, as node-cache ignores them.

use std::collections::BTreeMap;

/// The part of the kube-dns ConfigMap that shapes the node-local Corefile. Domains are kept sorted,
/// so a rendering is the same every time (node-cache ranges over a Go map: random order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeDnsConfig {
    pub stub_domains: BTreeMap<String, Vec<String>>,
    pub upstream_nameservers: Vec<String>,
}

/// Reads the ConfigMap's files (name → content, as mounted); `dir` names them in errors.
pub fn parse(dir: &str, files: &BTreeMap<String, String>) -> Result<KubeDnsConfig, String> {
    let mut c = KubeDnsConfig::default();
    if let Some(text) = files.get("stubDomains").filter(|t| !t.trim().is_empty()) {
        c.stub_domains = serde_json::from_str(text).map_err(|e| {
            format!("{dir}/stubDomains: {e}; expected a JSON object of domain to nameservers, such as {{\"acme.local\": [\"1.2.3.4\"]}}")
        })?;
    }
    if let Some(text) = files.get("upstreamNameservers").filter(|t| !t.trim().is_empty()) {
        c.upstream_nameservers = serde_json::from_str(text)
            .map_err(|e| format!("{dir}/upstreamNameservers: {e}; expected a JSON list of nameservers, such as [\"8.8.8.8\"]"))?;
    }
    for (domain, servers) in &c.stub_domains {
        if domain.is_empty() || domain.contains(|ch: char| ch.is_whitespace() || ch == '{' || ch == '}') {
            return Err(format!("{dir}/stubDomains: bad domain \"{domain}\"; expected a DNS name"));
        }
        check_servers(&format!("{dir}/stubDomains[{domain}]"), servers)?;
        if servers.is_empty() {
            return Err(format!("{dir}/stubDomains[{domain}]: no nameserver; expected at least one"));
        }
    }
    check_servers(&format!("{dir}/upstreamNameservers"), &c.upstream_nameservers)?;
    Ok(c)
}

/// node-cache accepts only plain and `dns://` (and `tls://`, which ndots' forward does not speak yet)
/// upstreams; anything else would break the Corefile, so it is refused here with the key named.
fn check_servers(what: &str, servers: &[String]) -> Result<(), String> {
    for s in servers {
        let rest = s.strip_prefix("dns://").unwrap_or(s);
        if rest.contains("://") {
            return Err(format!("{what}: \"{s}\" is not supported; expected IP[:PORT] or dns://IP[:PORT]"));
        }
        if rest.is_empty() || rest.contains(char::is_whitespace) {
            return Err(format!("{what}: bad nameserver \"{s}\"; expected IP[:PORT]"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn reads_the_configmap_keys() {
        let c = parse(
            "/etc/kube-dns",
            &files(&[
                ("stubDomains", r#"{"acme.local": ["1.2.3.4"], "corp.example": ["10.0.0.1:5353", "dns://10.0.0.2"]}"#),
                ("upstreamNameservers", r#"["8.8.8.8", "8.8.4.4"]"#),
                ("federations", "{}"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.stub_domains.keys().collect::<Vec<_>>(), ["acme.local", "corp.example"]);
        assert_eq!(c.upstream_nameservers, ["8.8.8.8", "8.8.4.4"]);
        assert_eq!(parse("d", &BTreeMap::new()), Ok(KubeDnsConfig::default()));
    }

    #[test]
    fn mistakes_name_the_key() {
        let e = parse("/etc/kube-dns", &files(&[("stubDomains", "[1]")])).expect_err("not an object");
        assert!(e.starts_with("/etc/kube-dns/stubDomains:"), "{e}");
        let e = parse("d", &files(&[("upstreamNameservers", r#"["tls://1.1.1.1"]"#)])).expect_err("tls");
        assert!(e.contains("not supported"), "{e}");
        let e = parse("d", &files(&[("stubDomains", r#"{"a.b": []}"#)])).expect_err("empty");
        assert!(e.contains("no nameserver"), "{e}");
    }
}
