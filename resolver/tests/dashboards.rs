//! CoreDNS's usual Grafana dashboard and alerts (the coredns-mixin, sources.md#coredns-mixin) read
//! ndots unchanged: every metric their queries select is in a scrape of a running `ndots`, with
//! every label they filter, group or describe by. Prometheus's own target labels (`job`,
//! `instance`, `pod`) and `up` come from the scrape, not from the server.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;

/// (what reads it, metric, labels it uses). Written from the mixin's dashboard panels and alert
/// rules as of its current revision.
const USED: &[(&str, &str, &[&str])] = &[
    ("panel Panics", "coredns_panics_total", &[]),
    ("panel RPC Rate", "coredns_dns_responses_total", &["rcode"]),
    ("panel RPC Rate", "coredns_forward_responses_total", &["rcode"]),
    ("panel Request duration 99th quantile", "coredns_dns_request_duration_seconds_bucket", &["server", "zone", "le"]),
    ("panel Request duration 99th quantile", "coredns_forward_request_duration_seconds_bucket", &["to", "le"]),
    ("panel Requests (by qtype)", "coredns_dns_requests_total", &["type"]),
    ("panel Requests (by zone)", "coredns_dns_requests_total", &["zone"]),
    ("panel Forward Requests (by to)", "coredns_forward_requests_total", &["to"]),
    ("panel Plugins Enabled", "coredns_plugin_enabled", &["name"]),
    ("panel Request size", "coredns_dns_request_size_bytes_bucket", &["server", "zone", "proto", "le"]),
    ("panel Response size", "coredns_dns_response_size_bytes_bucket", &["server", "zone", "proto", "le"]),
    ("panel Cached", "coredns_cache_hits_total", &[]),
    ("panel Cached", "coredns_cache_misses_total", &[]),
    ("panel Cache hit Rate", "coredns_cache_hits_total", &["type"]),
    ("panel Cache Size", "coredns_cache_entries", &["type"]),
    ("panel Memory", "process_resident_memory_bytes", &[]),
    ("panel CPU usage", "process_cpu_seconds_total", &[]),
    ("variable instance", "coredns_build_info", &[]),
    ("alert CoreDNSLatencyHigh", "coredns_dns_request_duration_seconds_bucket", &["server", "zone", "le"]),
    ("alert CoreDNSErrorsHigh", "coredns_dns_responses_total", &["rcode"]),
    ("alert CoreDNSForwardLatencyHigh", "coredns_forward_request_duration_seconds_bucket", &["to", "rcode", "le"]),
    ("alert CoreDNSForwardErrorsHigh", "coredns_forward_responses_total", &["rcode", "to"]),
    ("alert CoreDNSForwardHealthcheckFailureCount", "coredns_forward_healthcheck_failures_total", &["to"]),
    ("alert CoreDNSForwardHealthcheckBrokenCount", "coredns_forward_healthcheck_broken_total", &[]),
];

/// What the dashboard reads that ndots does not have, and why (the README says so too).
const NOT_EXPOSED: &[(&str, &str)] = &[
    ("go_goroutines", "a Go runtime gauge; ndots is not a Go program"),
    (
        "coredns_kubernetes_dns_programming_duration_seconds_bucket",
        "the time from an endpoint change (its last-change-trigger-time annotation) to the answer; not measured yet",
    ),
];

/// Metric name → the label names seen on its series.
fn scrape(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (name, rest) = match line.find('{') {
            Some(i) => (&line[..i], &line[i + 1..line.rfind('}').unwrap_or(line.len())]),
            None => (line.split(' ').next().unwrap_or(line), ""),
        };
        let labels = out.entry(name.to_string()).or_default();
        for pair in rest.split(',').filter(|p| !p.is_empty()) {
            if let Some((k, _)) = pair.split_once('=') {
                labels.insert(k.to_string());
            }
        }
    }
    out
}

#[test]
fn corednss_dashboard_and_alerts_find_every_metric_and_label_they_use() {
    let up = start(
        "dash-up",
        ".:{PORT} {\n    bind 127.0.0.1\n    hosts {\n        93.184.215.14 www.example.org\n        fallthrough\n    }\n}\n",
        &[],
    );
    let prom = free_port();
    let core = format!(
        ".:{{PORT}} {{
    bind 127.0.0.1
    errors
    prometheus 127.0.0.1:{prom}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        cluster_state state.yaml
    }}
    forward . 127.0.0.1:{} {{
        health_check 1s
    }}
    cache 30
    loadbalance
}}
",
        up.port
    );
    let m = start("dash", &core, &[("state.yaml", include_str!("../../examples/cluster-state.yaml"))]);
    // A forwarded answer, a cache hit, a cluster name, a name nobody has (NXDOMAIN), over UDP and TCP.
    for args in [
        &["www.example.org"][..],
        &["www.example.org"],
        &["cart.shop.svc.cluster.local"],
        &["nothing.example.org"],
        &["+tcp", "www.example.org"],
    ] {
        dig(m.port, args);
    }
    std::thread::sleep(Duration::from_millis(200));
    let text = http_get(prom, "/metrics");
    let seen = scrape(&text);
    let mut missing = Vec::new();
    for (what, metric, labels) in USED {
        match seen.get(*metric) {
            None => missing.push(format!("{what}: no {metric}")),
            Some(have) => {
                for l in *labels {
                    if !have.contains(*l) {
                        missing.push(format!("{what}: {metric} has no label {l} (has {have:?})"));
                    }
                }
            }
        }
    }
    assert!(missing.is_empty(), "{}\n\n{text}", missing.join("\n"));
    for (metric, why) in NOT_EXPOSED {
        assert!(!seen.contains_key(*metric), "{metric} is exposed now ({why} no longer holds): move it to USED");
    }
    // The sizes are measured, not declared: the UDP and the TCP query each landed in a bucket.
    let count = |name: &str, proto: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}_count{{")) && l.contains(&format!("proto=\"{proto}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    assert_eq!((count("coredns_dns_request_size_bytes", "udp"), count("coredns_dns_request_size_bytes", "tcp")), (4, 1), "{text}");
    assert_eq!(count("coredns_dns_response_size_bytes", "udp"), 4);
    for p in ["cache", "forward", "kubernetes", "prometheus", "errors", "loadbalance"] {
        assert!(
            text.contains(&format!("coredns_plugin_enabled{{server=\"dns://:{}\",zone=\".\",view=\"\",name=\"{p}\"}} 1", m.port)),
            "{p}: {text}"
        );
    }
}
