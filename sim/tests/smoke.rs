//! The smoke scenario (issue: 3 nodes, 2 CoreDNS replicas behind the VIP, 30 pods looking up names):
//! every lookup is answered, conntrack shows the DNS flows, and the same seed replays bit for bit.

use sim::{ClusterSpec, run, seed_or};

fn replay(test: &str, seed: u64) -> String {
    format!("replay: SIM_SEED={seed} cargo test -p sim --test smoke {test}")
}

#[test]
fn a_healthy_cluster_answers_every_lookup_and_tracks_its_flows() {
    let seed = seed_or(1);
    let report = run(ClusterSpec::smoke(seed)).expect("runs");
    let hint = replay("a_healthy_cluster_answers_every_lookup_and_tracks_its_flows", seed);
    println!("{}", report.summary());
    // 30 pods × 1 lookup/s × 10 s, Poisson: 300 ± 3σ.
    assert!((250..=350).contains(&report.lookups.len()), "{} lookups; {hint}", report.lookups.len());
    assert_eq!(report.success_rate(), 1.0, "{hint}\n{}", report.summary());
    // Kernel 5.15: the insertion race drops nothing (IPS_NAT_CLASH).
    assert_eq!(report.net.dropped_race, 0, "{hint}");
    // ndots:5 arithmetic (sources.md#kubelet-resolv-conf): `web` is found at the first search domain (2 queries);
    // `www.google.com` walks 4 search domains then the name (10 queries).
    let per = |name: &str| report.lookups.iter().filter(|l| l.name == name).map(|l| l.queries).collect::<Vec<_>>();
    assert!(per("web").iter().all(|&q| q == 2), "{:?}", per("web"));
    assert!(per("www.google.com").iter().all(|&q| q == 10), "{:?}", per("www.google.com"));
    assert!(per("api.shop.svc.cluster.local").iter().all(|&q| q == 10));
    // Every node's conntrack holds DNS flows (30 s UDP entries) and none overflowed.
    let last = report.series.last().expect("samples");
    assert!(last.conntrack.iter().all(|&n| n > 0), "{:?}", last.conntrack);
    assert_eq!(report.conntrack_max, vec![131072; 3], "kube-proxy: max(32768 × 2 CPUs, 131072)");
    // Cluster names are answered inside the cluster: a few ms at most; external names pay the upstream.
    let web_p99 = sim::report::quantile_ms(report.lookups.iter().filter(|l| l.name == "web").map(|l| l.latency()).collect(), 0.99);
    assert!(web_p99 < 5.0, "web p99 {web_p99} ms");
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    let seed = seed_or(7);
    let a = run(ClusterSpec::smoke(seed)).expect("runs");
    let b = run(ClusterSpec::smoke(seed)).expect("runs");
    assert_eq!(a.trace_hash, b.trace_hash, "{}", replay("the_same_seed_gives_the_same_trace", seed));
    assert_eq!(a.lookups, b.lookups);
    let c = run(ClusterSpec::smoke(seed + 1)).expect("runs");
    assert_ne!(a.trace_hash, c.trace_hash, "another seed, another run");
}
