//! Static warnings for the known horror patterns in a pod's resolv.conf, a cluster DNS Corefile and
//! the cluster state, each with its source and the fix (`ndots-sim lint`). Nothing here runs a
//! simulation; each finding names the incident whose simulation shows it (`ndots-sim run`).

use serde::Serialize;

use resolver::corefile::{Directive, ServerBlock};

use crate::client::ResolvConf;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub id: &'static str,
    pub severity: Severity,
    /// `file:line` when it points at a line.
    pub at: Option<String>,
    pub message: String,
    pub source: &'static str,
    pub fix: String,
}

/// What to look at. Names are used in `at`.
#[derive(Default)]
pub struct Inputs<'a> {
    /// A pod's resolv.conf: (name, text).
    pub resolv_conf: Option<(&'a str, &'a str)>,
    /// The cluster DNS Corefile: (name, text).
    pub corefile: Option<(&'a str, &'a str)>,
    /// The node's resolv.conf (what `forward . /etc/resolv.conf` reads): (name, text).
    pub node_resolv_conf: Option<(&'a str, &'a str)>,
    /// Pods and other watched objects in the cluster state (Services, EndpointSlices, Namespaces).
    pub cluster_pods: Option<usize>,
    pub cluster_objects: Option<usize>,
    /// The cluster DNS replicas' memory limit in bytes (coredns/deployment: 170Mi).
    pub memory_limit: u64,
}

/// CoreDNS's default memory limit (coredns/deployment; sources.md#coredns-plugins).
pub const COREDNS_MEMORY_LIMIT: u64 = 170 << 20;

/// Every finding for the inputs, worst first. Errors are for inputs that cannot be read.
pub fn lint(inp: &Inputs<'_>) -> Result<Vec<Finding>, String> {
    let mut out = Vec::new();
    let blocks = match inp.corefile {
        Some((name, text)) => resolver::corefile::parse_str(text, name, None, &|_| None).map_err(|e| e.to_string())?.blocks,
        None => Vec::new(),
    };
    let cf_name = inp.corefile.map_or("Corefile", |c| c.0);
    let at = |d: &Directive| Some(format!("{cf_name}:{}", d.name.pos.line));
    let root = blocks.iter().find(|b| b.keys.iter().any(|k| is_root(&k.text)));
    let autopath = blocks.iter().flat_map(|b| find(b, "autopath")).next();

    if let Some((rc_name, rc_text)) = inp.resolv_conf {
        let rc = ResolvConf::parse(rc_text);
        let k = rc.search.len();
        if rc.ndots > 1 && k > 0 {
            // glibc tries every search domain before the name as given when it has fewer dots than
            // ndots, each with A and AAAA in parallel (sources.md#kubelet-resolv-conf, sources.md#glibc; S1).
            let queries = 2 * (k + 1);
            let example = if rc.ndots > 2 { "www.google.com" } else { "example.com" };
            let (severity, extra) = if autopath.is_some() {
                (
                    Severity::Info,
                    " The Corefile has autopath, which answers at the first search domain: 2 queries reach cluster DNS, unless a node-local cache sits in front of it (autopath is blind behind one, S5).",
                )
            } else {
                (Severity::Warning, "")
            };
            out.push(Finding {
                id: "ndots-amplification",
                severity,
                at: Some(rc_name.to_string()),
                message: format!(
                    "ndots:{} with {k} search domains: a lookup of an external name with fewer than {} dots ({example}) sends {queries} queries, {} of them answered NXDOMAIN, before the one that answers; {}x the queries of a fully-qualified name.{extra}",
                    rc.ndots,
                    rc.ndots,
                    queries - 2,
                    k + 1
                ),
                source: "docs/sources.md#kubelet-resolv-conf, docs/sources.md#glibc, S1 (docs/sources.md#incident-s1) (talk: ndots:5)",
                fix: if rc.ndots > 2 {
                    format!("write external names fully qualified with a trailing dot ({example}.), or set dnsConfig options ndots:2 for the pods (the talk's final setup), or use autopath on the cluster DNS")
                } else {
                    format!("write external names fully qualified with a trailing dot ({example}.), or use autopath on the cluster DNS")
                },
            });
        }
        if rc.nameservers.iter().any(|n| n.is_loopback()) && inp.corefile.is_none() {
            out.push(Finding {
                id: "loopback-nameserver",
                severity: Severity::Info,
                at: Some(rc_name.to_string()),
                message: "the nameserver is a loopback address: a local stub resolver (systemd-resolved's 127.0.0.53). A DNS server that forwards to this file would forward to itself".into(),
                source: "S16 (docs/sources.md#incident-s16)",
                fix: "point DNS servers at the real upstream file (/run/systemd/resolve/resolv.conf) with kubelet --resolv-conf".into(),
            });
        }
    }

    for b in &blocks {
        let zone = b.keys.first().map_or(String::new(), |k| k.text.clone());
        let cache = find(b, "cache").next();
        let forwards: Vec<&Directive> = find(b, "forward").collect();
        if let Some(a) = find(b, "autopath").next()
            && cache.is_none()
        {
            out.push(Finding {
                id: "autopath-without-cache",
                severity: Severity::Warning,
                at: at(a),
                message: format!("server block {zone} has autopath but no cache: every search-path query is synthesised again and every external answer forwarded again"),
                source: "docs/sources.md#coredns-plugins, S4 (docs/sources.md#incident-s4)",
                fix: "add `cache 30` to the block".into(),
            });
        }
        if let Some(f) = forwards.first()
            && cache.is_none()
        {
            out.push(Finding {
                id: "forward-without-cache",
                severity: Severity::Warning,
                at: at(f),
                message: format!("server block {zone} forwards without a cache: every pod query for an external name (and every ndots search miss for one) goes upstream, toward a resolver that may allow only 1024 packets/s per ENI"),
                source: "docs/sources.md#cloud-resolver-limits, S8 (docs/sources.md#incident-s8) (talk: Staging fright on AWS)",
                fix: "add `cache 30` before `forward` (kubeadm's default Corefile has it)".into(),
            });
        }
        if let Some(p) = find(b, "proxy").next() {
            out.push(Finding {
                id: "removed-proxy-plugin",
                severity: Severity::Error,
                at: at(p),
                message: format!("server block {zone} uses `proxy`, which CoreDNS removed in 1.5.0 (the talk's Corefiles still have it): CoreDNS 1.5 and later, and ndots, refuse this Corefile"),
                source: "docs/sources.md#coredns-proxy-removed",
                fix: "replace `proxy FROM TO...` with `forward FROM TO...` (forward's options differ: policy, health_check, max_concurrent, force_tcp, prefer_udp)".into(),
            });
        }
        // node-local-dns's template forwards the cluster zones to the cluster DNS itself (its
        // `__PILLAR__CLUSTER__DNS__`, over TCP on purpose): not a cloud resolver with a packet budget.
        let to_cluster_dns = |f: &Directive| {
            f.args.iter().skip(1).any(|a| a.text.contains("__PILLAR__CLUSTER__DNS__")) || b.keys.iter().all(|k| is_cluster_zone(&k.text))
        };
        for f in &forwards {
            let sub = |n: &str| f.block.iter().find(|d| d.name.text == n);
            if let Some(ft) = sub("force_tcp")
                && !to_cluster_dns(f)
            {
                out.push(Finding {
                    id: "force-tcp-to-limited-resolver",
                    severity: Severity::Warning,
                    at: at(ft),
                    message: "force_tcp: every upstream query that is not reused costs a TCP handshake and teardown, about 7 packets against the cloud resolver's 1024 packets/s per ENI (AWS) instead of 2 over UDP".into(),
                    source: "docs/sources.md#cloud-resolver-limits, docs/sources.md#coredns-forward, S8 (docs/sources.md#incident-s8)",
                    fix: "keep UDP (drop force_tcp; prefer_udp if TC answers are common) and put `cache` in front of forward".into(),
                });
            }
            if sub("max_concurrent").is_none() {
                out.push(Finding {
                    id: "no-max-concurrent",
                    severity: Severity::Warning,
                    at: at(f),
                    message: "forward has no max_concurrent: when the upstream slows down, in-flight queries (about 2 KB each in CoreDNS) pile up without bound until the replica is OOM-killed".into(),
                    source: "docs/sources.md#coredns-forward, S13 (docs/sources.md#incident-s13) (Zalando)",
                    fix: "add `max_concurrent 1000` (kubeadm's default) to the forward block; the excess gets REFUSED instead of memory".into(),
                });
            }
            let to_resolv_conf = f.args.iter().skip(1).any(|a| a.text == "/etc/resolv.conf");
            if to_resolv_conf {
                let node_loopback =
                    inp.node_resolv_conf.map(|(n, t)| (n, ResolvConf::parse(t).nameservers.iter().any(|s| s.is_loopback())));
                let has_loop = find(b, "loop").next().is_some();
                match node_loopback {
                    Some((n, true)) => out.push(Finding {
                        id: "forwarding-loop",
                        severity: Severity::Error,
                        at: at(f),
                        message: format!(
                            "forward . /etc/resolv.conf, and the node's resolv.conf ({n}) names a loopback stub resolver: queries come back to this server {}",
                            if has_loop { "(the loop plugin will detect it and halt: CrashLoopBackOff)" } else { "until they time out, with no loop plugin to stop it" }
                        ),
                        source: "docs/sources.md#coredns-plugins, S16 (docs/sources.md#incident-s16)",
                        fix: "give the kubelet the real upstream file (--resolv-conf=/run/systemd/resolve/resolv.conf) or forward to explicit upstream addresses".into(),
                    }),
                    Some((_, false)) => {}
                    None if !has_loop => out.push(Finding {
                        id: "loop-risk",
                        severity: Severity::Info,
                        at: at(f),
                        message: "forward . /etc/resolv.conf without the loop plugin: if a node's resolv.conf names a local stub (127.0.0.53), queries loop silently".into(),
                        source: "docs/sources.md#coredns-plugins, S16 (docs/sources.md#incident-s16)",
                        fix: "add `loop` to the block, and check the nodes' resolv.conf (lint --node-resolv-conf)".into(),
                    }),
                    None => {}
                }
            }
        }
        for k in find(b, "kubernetes") {
            let verified = k.block.iter().any(|d| d.name.text == "pods" && d.args.first().is_some_and(|a| a.text == "verified"));
            if verified {
                // CoreDNS watches every pod with `pods verified` (sources.md#coredns-plugins, sources.md#incident-s4); the
                // memory coefficients are CoreDnsMemory's, from CoreDNS's published figures (sources.md#coredns-memory).
                let m = crate::spec::CoreDnsMemory::default();
                let steady = |p: usize| m.base + m.watched(p as u64, inp.cluster_objects.unwrap_or(0) as u64, true);
                let msg = match (inp.cluster_pods, inp.cluster_objects) {
                    (Some(p), _) => {
                        let steady = steady(p);
                        let relist = m.base + 2 * (steady - m.base);
                        format!(
                            "`pods verified` makes every replica watch all {p} pods: about {} MiB steady and {} MiB while the informers relist after an apiserver restart, against a limit of {} MiB{}",
                            steady >> 20,
                            relist >> 20,
                            inp.memory_limit >> 20,
                            if relist > inp.memory_limit { ": every replica is OOM-killed at once" } else { "" }
                        )
                    }
                    (None, _) => "`pods verified` makes every replica watch every pod in the cluster: memory grows with the cluster and doubles while the informers relist after an apiserver restart (give --cluster-state for an estimate)".into(),
                };
                let over = inp.cluster_pods.is_some_and(|p| m.base + 2 * (steady(p) - m.base) > inp.memory_limit);
                out.push(Finding {
                    id: "pods-verified-memory",
                    severity: if over { Severity::Error } else { Severity::Warning },
                    at: at(k),
                    message: msg,
                    source: "docs/sources.md#coredns-memory, S4 (docs/sources.md#incident-s4)",
                    fix:
                        "use `pods insecure` (or disabled); CoreDNS's autopath needs verified, ndots' autopath does not (24 bytes per pod)"
                            .into(),
                });
            }
        }
    }
    if root.is_none() && inp.corefile.is_some() {
        out.push(Finding {
            id: "no-root-zone",
            severity: Severity::Info,
            at: Some(cf_name.to_string()),
            message: "no server block for the root zone `.`: external names get REFUSED".into(),
            source: "docs/sources.md#default-corefiles",
            fix: "add a `.:53 { ... forward . /etc/resolv.conf ... }` block".into(),
        });
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.severity));
    Ok(out)
}

fn is_root(key: &str) -> bool {
    let k = key.trim_start_matches("dns://");
    k == "." || k.starts_with(".:")
}

/// A server block key for the cluster's own zones (the cluster domain and the reverse zones).
fn is_cluster_zone(key: &str) -> bool {
    let k = key.trim_start_matches("dns://");
    let zone = k.rsplit_once(':').map_or(k, |(z, _)| z).trim_end_matches('.');
    zone == "cluster.local" || zone.ends_with(".cluster.local") || zone == "in-addr.arpa" || zone == "ip6.arpa"
}

/// Findings that differ only in where they were found (one per pod group) as one, listing every place.
pub fn merge_places(findings: Vec<Finding>) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    for f in findings {
        match out.iter_mut().find(|o| o.id == f.id && o.message == f.message && o.severity == f.severity) {
            Some(o) => {
                if let Some(at) = f.at {
                    o.at = Some(match o.at.take() {
                        Some(prev) => format!("{prev}, {at}"),
                        None => at,
                    });
                }
            }
            None => out.push(f),
        }
    }
    out
}

fn find<'a>(b: &'a ServerBlock, name: &'a str) -> impl Iterator<Item = &'a Directive> {
    b.directives.iter().filter(move |d| d.name.text == name)
}

/// Findings as lines for people.
pub fn render(findings: &[Finding]) -> String {
    let mut o = String::new();
    for f in findings {
        let sev = match f.severity {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        o.push_str(&format!(
            "{}{sev}[{}]: {}\n    fix: {}\n    source: {}\n",
            f.at.as_ref().map(|a| format!("{a}: ")).unwrap_or_default(),
            f.id,
            f.message,
            f.fix,
            f.source
        ));
    }
    if findings.is_empty() {
        o.push_str("no findings\n");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(corefile: &str) -> Vec<&'static str> {
        let inp = Inputs { corefile: Some(("Corefile", corefile)), memory_limit: COREDNS_MEMORY_LIMIT, ..Inputs::default() };
        lint(&inp).expect("lint").iter().map(|f| f.id).collect()
    }

    #[test]
    fn node_local_dns_forwarding_the_cluster_zone_over_tcp_is_not_a_cloud_resolver_finding() {
        let template = "cluster.local:53 {\n    cache {\n        success 9984 30\n    }\n    forward . __PILLAR__CLUSTER__DNS__ {\n        force_tcp\n    }\n}\n";
        assert!(!ids(template).contains(&"force-tcp-to-limited-resolver"), "{:?}", ids(template));
        let cloud = ".:53 {\n    cache 30\n    forward . 169.254.169.253 {\n        force_tcp\n    }\n}\n";
        assert!(ids(cloud).contains(&"force-tcp-to-limited-resolver"));
    }

    #[test]
    fn the_amplification_example_has_fewer_dots_than_ndots() {
        let at = |ndots: u8| {
            let rc = format!("search a.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:{ndots}\n");
            let inp = Inputs { resolv_conf: Some(("resolv.conf", &rc)), memory_limit: COREDNS_MEMORY_LIMIT, ..Inputs::default() };
            lint(&inp).expect("lint").into_iter().find(|f| f.id == "ndots-amplification").expect("finding")
        };
        let two = at(2);
        assert!(two.message.contains("fewer than 2 dots (example.com) sends 8 queries"), "{}", two.message);
        assert!(!two.fix.contains("ndots:2"), "{}", two.fix);
        assert!(at(5).message.contains("fewer than 5 dots (www.google.com)"));
    }

    #[test]
    fn the_removed_proxy_plugin_is_an_error_pointing_to_forward() {
        let talk = ".:53 {\n    cache 30\n    proxy . /etc/resolv.conf\n}\n";
        let inp = Inputs { corefile: Some(("Corefile", talk)), memory_limit: COREDNS_MEMORY_LIMIT, ..Inputs::default() };
        let f = lint(&inp).expect("lint").into_iter().find(|f| f.id == "removed-proxy-plugin").expect("finding");
        assert_eq!((f.severity, f.at.as_deref()), (Severity::Error, Some("Corefile:3")));
        assert!(f.fix.contains("forward"));
    }

    #[test]
    fn one_finding_per_pattern_lists_every_place() {
        let f = |at: &str| Finding {
            id: "ndots-amplification",
            severity: Severity::Warning,
            at: Some(at.into()),
            message: "same".into(),
            source: "s",
            fix: "f".into(),
        };
        let other = Finding { message: "different".into(), ..f("pods.2") };
        let merged = merge_places(vec![f("pods.0"), f("pods.1"), other]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].at.as_deref(), Some("pods.0, pods.1"));
    }
}
