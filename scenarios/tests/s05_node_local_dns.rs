//! S5: node-local-dns removes the conntrack race for the pod hop, and has side effects.
//!
//! Source: the talk (node-local-dns); sources.md#node-local-dns, sources.md#incident-s5; coredns#4308; kubernetes/dns#310.
//! Root cause: pod→cache traffic is NOTRACK (no DNAT, no conntrack entry), the cache talks to
//! CoreDNS over TCP (`force_tcp`) from the node's IP, and a teardown removes the cache's address.
//! Guaranteed now: no race drops and few conntrack entries with the cache on a racy kernel; autopath
//! behind the cache cannot see pods; with the cache bound to the kube-dns IP, its restart falls back
//! to kube-dns, while pods pointed only at 169.254.20.10 lose DNS for the gap.

use std::time::Duration;

use scenarios::*;
use sim::spec::{Fault, NodeLocal};

const FILE: &str = "s05_node_local_dns";

#[test]
fn pod_traffic_to_the_cache_has_no_race_and_no_conntrack_entries() {
    let seed = seed(5);
    let hint = replay(FILE, "pod_traffic_to_the_cache_has_no_race_and_no_conntrack_entries", seed);
    let without = run(scenarios::s05::spec(seed, false, &["web"])).expect("runs");
    let with = run(scenarios::s05::spec(seed, true, &["web"])).expect("runs");
    assert!(without.net.dropped_race > 0, "kernel 4.15 without the cache races; {hint}");
    assert_eq!(with.net.dropped_race, 0, "{hint}");
    assert!(with.latency_ms(1.0) < 50.0, "{hint}");
    let ct = |r: &Report| r.series.last().expect("samples").conntrack.iter().sum::<usize>();
    // Without: a 30 s entry per lookup flow. With: only the cache's TCP connections to CoreDNS.
    assert!(ct(&without) > 300, "{} entries; {hint}", ct(&without));
    assert!(ct(&with) < 20, "{} entries; {hint}", ct(&with));
    assert!(with.net.tcp_connections >= 1, "cache → CoreDNS over TCP (force_tcp); {hint}");
}

#[test]
fn autopath_behind_the_cache_cannot_see_pods() {
    let seed = seed(5);
    let hint = replay(FILE, "autopath_behind_the_cache_cannot_see_pods", seed);
    let with_autopath = |node_local: bool| {
        let mut s = scenarios::s05::spec(seed, node_local, &["www.google.com"]);
        s.kernel = netmodel::Kernel::new(5, 15);
        s.corefile = s.corefile.replace("    prometheus :9153\n", "    prometheus :9153\n    autopath @kubernetes\n");
        run(s).expect("runs")
    };
    let direct = with_autopath(false);
    let behind = with_autopath(true);
    assert!(direct.lookups.iter().all(|l| l.queries == 2), "pods talk to CoreDNS: autopath answers the first query; {hint}");
    assert!(behind.lookups.iter().all(|l| l.queries == 10), "the cache's node IP is no pod: the whole search walk; {hint}");
}

#[test]
fn a_cache_restart_is_a_dns_gap_only_for_pods_pointed_at_the_link_local_address() {
    let seed = seed(5);
    let hint = replay(FILE, "a_cache_restart_is_a_dns_gap_only_for_pods_pointed_at_the_link_local_address", seed);
    let restart = |bind_kube_dns: bool| {
        let mut s = scenarios::s05::spec(seed, true, &["web"]);
        s.kernel = netmodel::Kernel::new(5, 15);
        s.node_local = Some(NodeLocal { bind_kube_dns, ..NodeLocal::template() });
        // The DaemonSet's rolling update on node 0: about 10 s without the cache (kubernetes/dns#310).
        s.faults = vec![(Duration::from_secs(5), Fault::NodeLocalDown(0)), (Duration::from_secs(15), Fault::NodeLocalUp(0))];
        run(s).expect("runs")
    };
    let vip = restart(true);
    assert_eq!(vip.success_rate(), 1.0, "teardown falls back to the kube-dns DNAT path; {hint}");
    let link_local = restart(false);
    let failed: Vec<_> = link_local.lookups.iter().filter(|l| !l.ok).collect();
    assert!(!failed.is_empty(), "{hint}");
    assert!(failed.iter().all(|l| l.start >= Duration::from_secs(4) && l.start < Duration::from_secs(15)), "only during the gap; {hint}");
}

#[test]
fn a_daemonset_rollout_moves_the_gap_from_node_to_node() {
    let seed = seed(5);
    let hint = replay(FILE, "a_daemonset_rollout_moves_the_gap_from_node_to_node", seed);
    let mut s = scenarios::s05::spec(seed, true, &["web"]);
    s.kernel = netmodel::Kernel::new(5, 15);
    s.duration = Duration::from_secs(45);
    s.node_local = Some(NodeLocal { bind_kube_dns: false, ..NodeLocal::template() });
    // maxUnavailable 1: node 0 from 5 s, node 1 from 15 s, node 2 from 25 s, 10 s each.
    s.faults = vec![(Duration::from_secs(5), Fault::RollNodeLocal { gap: Duration::from_secs(10) })];
    let r = run(s).expect("runs");
    for node in 0..3u64 {
        let (from, to) = (Duration::from_secs(4 + 10 * node), Duration::from_secs(15 + 10 * node));
        let failed: Vec<_> = r.lookups.iter().filter(|l| !l.ok && l.pod as u64 % 3 == node).collect();
        assert!(!failed.is_empty(), "node {node}'s pods lose DNS in their turn; {hint}");
        assert!(failed.iter().all(|l| l.start >= from && l.start < to), "node {node}: only in its turn; {hint}");
    }
    assert!(r.lookups.iter().filter(|l| l.start >= Duration::from_secs(36)).all(|l| l.ok), "every new cache serves; {hint}");
}
