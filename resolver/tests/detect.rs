//! The detectors in the real binary: a pod walking its search path and a client re-sending a query
//! show up in `ndots_*` metrics and at `/debug/findings`; `detect off` silences them.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::*;

fn corefile(prom: u16, detect: &str) -> String {
    format!(
        ".:{{PORT}} {{
    bind 127.0.0.1
    prometheus 127.0.0.1:{prom}
    {detect}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        cluster_state state.yaml
    }}
    cache 30
}}
"
    )
}

/// A search-path walk for an external name from namespace `shop`, as glibc sends it under ndots:5
/// (the cluster part: the three names the cluster DNS answers NXDOMAIN), six times; then one query
/// re-sent four times from the same socket with the same ID, 0.6 s apart.
fn traffic(port: u16) {
    for i in 0..6u16 {
        for suffix in ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local"] {
            let q = raw_query(100 + i, &format!("www.example.org.{suffix}"), 1, false);
            let reply = udp_exchange(port, &q, Duration::from_secs(2)).expect("answered");
            assert_eq!(rcode(&reply), 3, "NXDOMAIN for the walk's steps");
        }
    }
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let q = raw_query(4242, "nothing-here.shop.svc.cluster.local", 1, false);
    for _ in 0..4 {
        sock.send_to(&q, ("127.0.0.1", port)).expect("send");
        std::thread::sleep(Duration::from_millis(600));
    }
}

#[test]
fn walks_and_retransmissions_are_metrics_and_findings_and_detect_off_silences_them() {
    let state = include_str!("../../examples/cluster-state.yaml");
    let prom = free_port();
    let m = start("detect-on", &corefile(prom, ""), &[("state.yaml", state)]);
    traffic(m.port);
    let metrics = http_get(prom, "/metrics");
    assert!(metrics.lines().any(|l| l == "ndots_search_walks_total{namespace=\"shop\"} 6"), "{metrics}");
    assert!(metrics.lines().any(|l| l == "ndots_search_walk_nxdomain_total{namespace=\"shop\"} 18"), "{metrics}");
    assert!(metrics.lines().any(|l| l == "ndots_client_retransmits_total{source=\"127.0.0.0/24\",interval=\"other\"} 3"), "{metrics}");
    let findings = http_get(prom, "/debug/findings");
    assert!(findings.contains(r#""detector":"search_walk","subject":"namespace shop""#), "{findings}");
    assert!(findings.contains("www.example.org (6)"), "the walked name: {findings}");
    assert!(findings.contains(r#""detector":"retransmit","subject":"source 127.0.0.0/24""#), "{findings}");
    assert!(findings.contains("ndots:2"), "each finding names the fix: {findings}");

    let prom = free_port();
    let off = start("detect-off", &corefile(prom, "detect off"), &[("state.yaml", state)]);
    traffic(off.port);
    assert!(!http_get(prom, "/metrics").contains("ndots_search_walks_total{"));
    assert!(http_get(prom, "/debug/findings").ends_with("[]\n"));
}

#[test]
fn a_retransmitting_pod_the_cluster_state_knows_is_named_by_its_node() {
    // The pod 127.0.0.2 on node worker-7 (as `pods verified` or a state file with pods knows it);
    // 127.0.0.3 is no pod the state knows: its /24 stands for it.
    let state = "apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: shop}}
- {apiVersion: v1, kind: Pod, metadata: {name: cart-1, namespace: shop}, spec: {nodeName: worker-7}, status: {podIP: 127.0.0.2}}
";
    let prom = free_port();
    let m = start("detect-node", &corefile(prom, ""), &[("state.yaml", state)]);
    for (ip, id) in [("127.0.0.2", 7), ("127.0.0.3", 8)] {
        let sock = UdpSocket::bind((ip, 0)).expect("bind");
        let q = raw_query(id, "nothing-here.shop.svc.cluster.local", 1, false);
        for _ in 0..4 {
            sock.send_to(&q, ("127.0.0.1", m.port)).expect("send");
            std::thread::sleep(Duration::from_millis(600));
        }
    }
    let metrics = http_get(prom, "/metrics");
    assert!(metrics.lines().any(|l| l == "ndots_client_retransmits_total{source=\"node/worker-7\",interval=\"other\"} 3"), "{metrics}");
    assert!(metrics.lines().any(|l| l == "ndots_client_retransmits_total{source=\"127.0.0.0/24\",interval=\"other\"} 3"), "{metrics}");
    let findings = http_get(prom, "/debug/findings");
    assert!(findings.contains(r#""detector":"retransmit","subject":"source node/worker-7""#), "{findings}");
    assert!(findings.contains("pods on node/worker-7 sent 3 queries again"), "{findings}");
}
