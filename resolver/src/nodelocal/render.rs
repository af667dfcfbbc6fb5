//! The node-local Corefile from node-cache's template (sources.md#node-local-dns):
//!
//! - `__PILLAR__LOCAL__DNS__` → the `-localip` list, space-separated;
//! - `__PILLAR__DNS__SERVER__` → nothing (the operator has usually replaced it already);
//! - `__PILLAR__CLUSTER__DNS__` → the upstream Service's ClusterIP (`$<SVC>_SERVICE_HOST`);
//! - `__PILLAR__UPSTREAM__SERVERS__` → the kube-dns ConfigMap's `upstreamNameservers`, else
//!   `/etc/resolv.conf`; with custom upstreams, a `{ force_tcp }` block after it is dropped, as
//!   node-cache switches those upstreams to UDP;
//! - each stub domain is appended as its own server block on the local IPs.
//!
//! Where node-cache writes `<nil>` for a missing upstream IP, or leaves a placeholder the operator
//! did not replace (`__PILLAR__DNS__DOMAIN__`), and CoreDNS then fails on it, rendering fails here
//! with the template's line and what was expected.

use std::net::IpAddr;

use super::kubedns::KubeDnsConfig;

pub const LOCAL_DNS: &str = "__PILLAR__LOCAL__DNS__";
pub const DNS_SERVER: &str = "__PILLAR__DNS__SERVER__";
pub const CLUSTER_DNS: &str = "__PILLAR__CLUSTER__DNS__";
pub const UPSTREAM_SERVERS: &str = "__PILLAR__UPSTREAM__SERVERS__";

/// What the template is rendered with.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub local_ips: &'a [IpAddr],
    /// The port stub-domain blocks listen on (node-cache's `-dns.port`, 53).
    pub port: u16,
    /// The upstream Service's ClusterIP, if its environment variable was set.
    pub cluster_dns: Option<IpAddr>,
    /// That variable's name and the Service's, for the error when it is missing.
    pub cluster_dns_env: &'a str,
    pub upstream_svc: &'a str,
    pub kube_dns: &'a KubeDnsConfig,
}

/// Why a template cannot be rendered: the template's name and line, and what was expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}: {msg}")]
pub struct RenderError {
    pub file: String,
    pub line: usize,
    pub msg: String,
}

fn line_of(text: &str, needle: &str) -> usize {
    text.find(needle).map_or(0, |at| text[..at].matches('\n').count() + 1)
}

/// Removes a `{ force_tcp }` block (any spacing) that directly follows each upstream placeholder.
fn drop_force_tcp_after_upstreams(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(UPSTREAM_SERVERS) {
        let end = at + UPSTREAM_SERVERS.len();
        out.push_str(&rest[..end]);
        rest = &rest[end..];
        let after = rest.trim_start_matches([' ', '\t', '\n', '\r']);
        if let Some(body) = after.strip_prefix('{')
            && let Some(close) = body.find('}')
            && body[..close].trim() == "force_tcp"
        {
            rest = &body[close + 1..];
        }
    }
    out.push_str(rest);
    out
}

/// Renders `base` (the template's text; `file` names it in errors).
pub fn render(base: &str, file: &str, inputs: &Inputs) -> Result<String, RenderError> {
    let err = |needle: &str, msg: String| RenderError { file: file.to_string(), line: line_of(base, needle), msg };
    let local = inputs.local_ips.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(" ");
    let mut text = base.to_string();
    if text.contains(CLUSTER_DNS) {
        let Some(ip) = inputs.cluster_dns else {
            return Err(err(
                CLUSTER_DNS,
                format!(
                    "{CLUSTER_DNS} needs the ClusterIP of Service {} from ${}, which is not set; expected the Service to exist in the pod's namespace (-upstreamsvc names it)",
                    inputs.upstream_svc, inputs.cluster_dns_env
                ),
            ));
        };
        text = text.replace(CLUSTER_DNS, &ip.to_string());
    }
    let upstreams = &inputs.kube_dns.upstream_nameservers;
    text = if upstreams.is_empty() {
        text.replace(UPSTREAM_SERVERS, "/etc/resolv.conf")
    } else {
        drop_force_tcp_after_upstreams(&text).replace(UPSTREAM_SERVERS, &upstreams.join(" "))
    };
    text = text.replace(LOCAL_DNS, &local).replace(DNS_SERVER, "");
    if let Some(at) = text.find("__PILLAR__") {
        let name: String = text[at..].chars().take_while(|c| c.is_ascii_uppercase() || *c == '_').collect();
        let hint = if name == "__PILLAR__DNS__DOMAIN__" { " (the cluster domain, replaced by the operator: sed)" } else { "" };
        return Err(err(
            &name,
            format!("placeholder {name} is left unreplaced{hint}; expected the operator to substitute it before deploying"),
        ));
    }
    if !text.ends_with('\n') {
        text.push('\n');
    }
    for (domain, servers) in &inputs.kube_dns.stub_domains {
        text.push_str(&format!(
            "{domain}:{port} {{\n    errors\n    cache 30\n    bind {local}\n    forward . {servers}\n}}\n",
            port = inputs.port,
            servers = servers.join(" ")
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// node-cache's own template, after the operator's sed for an iptables-mode cluster.
    const BASE: &str = "cluster.local:53 {
    errors
    cache {
            success 9984 30
            denial 9984 5
    }
    reload
    loop
    bind 169.254.20.10 10.96.0.10
    forward . __PILLAR__CLUSTER__DNS__ {
            force_tcp
    }
    prometheus :9253
    health 169.254.20.10:8080
    }
.:53 {
    errors
    cache 30
    reload
    loop
    bind 169.254.20.10 10.96.0.10
    forward . __PILLAR__UPSTREAM__SERVERS__
    prometheus :9253
    }
";

    fn ips() -> Vec<IpAddr> {
        vec!["169.254.20.10".parse().expect("ip"), "10.96.0.10".parse().expect("ip")]
    }

    fn inputs<'a>(ips: &'a [IpAddr], kd: &'a KubeDnsConfig, cluster: Option<IpAddr>) -> Inputs<'a> {
        Inputs {
            local_ips: ips,
            port: 53,
            cluster_dns: cluster,
            cluster_dns_env: "KUBE_DNS_UPSTREAM_SERVICE_HOST",
            upstream_svc: "kube-dns-upstream",
            kube_dns: kd,
        }
    }

    #[test]
    fn renders_the_manifests_template() {
        let ips = ips();
        let kd = KubeDnsConfig::default();
        let out = render(BASE, "Corefile.base", &inputs(&ips, &kd, Some("10.96.0.11".parse().expect("ip")))).expect("renders");
        assert!(out.contains("forward . 10.96.0.11 {\n            force_tcp\n    }"), "{out}");
        assert!(out.contains("forward . /etc/resolv.conf\n"), "{out}");
        assert!(!out.contains("__PILLAR__"));
    }

    #[test]
    fn custom_upstreams_use_udp_and_stub_domains_get_blocks() {
        let ips = ips();
        let mut kd = KubeDnsConfig { upstream_nameservers: vec!["8.8.8.8".into(), "8.8.4.4".into()], ..Default::default() };
        kd.stub_domains.insert("acme.local".into(), vec!["1.2.3.4".into()]);
        let base = format!("{BASE}.:5300 {{\n    forward . {UPSTREAM_SERVERS} {{\n        force_tcp\n    }}\n}}\n");
        let out = render(&base, "Corefile.base", &inputs(&ips, &kd, Some("10.96.0.11".parse().expect("ip")))).expect("renders");
        assert!(out.contains("forward . 8.8.8.8 8.8.4.4\n    prometheus"), "{out}");
        assert!(out.contains("forward . 8.8.8.8 8.8.4.4\n}"), "the force_tcp block after the placeholder is gone: {out}");
        assert!(out.contains("force_tcp"), "the cluster domain's force_tcp stays: {out}");
        assert!(
            out.ends_with("acme.local:53 {\n    errors\n    cache 30\n    bind 169.254.20.10 10.96.0.10\n    forward . 1.2.3.4\n}\n"),
            "{out}"
        );
    }

    #[test]
    fn local_and_dns_server_placeholders() {
        let ips = ips();
        let kd = KubeDnsConfig::default();
        let out =
            render("x:53 {\n bind __PILLAR__LOCAL__DNS__ __PILLAR__DNS__SERVER__\n}", "b", &inputs(&ips, &kd, None)).expect("renders");
        assert_eq!(out, "x:53 {\n bind 169.254.20.10 10.96.0.10 \n}\n");
    }

    #[test]
    fn what_node_cache_would_break_on_is_an_error_with_a_line() {
        let ips = ips();
        let kd = KubeDnsConfig::default();
        let e = render(BASE, "Corefile.base", &inputs(&ips, &kd, None)).expect_err("no upstream IP");
        assert_eq!(e.line, 10);
        assert!(e.to_string().starts_with("Corefile.base:10: __PILLAR__CLUSTER__DNS__ needs the ClusterIP of Service kube-dns-upstream from $KUBE_DNS_UPSTREAM_SERVICE_HOST"), "{e}");
        let e = render("a:53 {}\n__PILLAR__DNS__DOMAIN__:53 {\n}\n", "T", &inputs(&ips, &kd, None)).expect_err("domain left");
        assert_eq!((e.line, e.file.as_str()), (2, "T"));
        assert!(e.msg.contains("cluster domain"), "{e}");
    }
}
