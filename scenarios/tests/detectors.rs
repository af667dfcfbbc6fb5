//! The resolver's detectors (`resolver::detect`) judged where the truth is known: each incident's
//! failing side makes its detector fire, naming the right namespace, source, client or upstream,
//! and the mitigated side keeps it quiet. The findings are what every simulated replica and
//! node-local cache reported, summed, and what each node's conntrack scan found
//! (`Report::findings`).

use scenarios::*;

const FILE: &str = "detectors";

fn sides(id: &str, test: &str) -> (Report, Report, String) {
    let inc = incidents().into_iter().find(|i| i.id == id).expect("incident");
    let seed = seed(inc.seed);
    let fail = run((inc.failure.spec)(seed)).expect("runs");
    let fixed = run((inc.mitigation.spec)(seed)).expect("runs");
    (fail, fixed, replay(FILE, test, seed))
}

#[test]
fn every_expected_detector_has_its_test_here() {
    let src = include_str!("detectors.rs");
    for (id, det) in scenarios::detectors::EXPECTED {
        assert!(src.contains(&format!("sides(\"{id}\"")) && src.contains(&format!("\"{det}\"")), "{id} {det}");
    }
}

fn fired<'a>(r: &'a Report, detector: &str) -> Vec<&'a sim::report::Finding> {
    r.findings.iter().map(|x| &x.finding).filter(|f| f.detector == detector).collect()
}

fn all(r: &Report) -> String {
    r.findings
        .iter()
        .map(|x| format!("[{}] {} {}: {}", x.finding.detector, x.at, x.when(), x.finding.message))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn s1_search_walks_fire_for_the_namespace_and_stop_with_ndots_2() {
    let (fail, fixed, hint) = sides("S1", "s1_search_walks_fire_for_the_namespace_and_stop_with_ndots_2");
    let f = fired(&fail, "search_walk");
    assert!(f.iter().any(|f| f.subject == "namespace default" && f.message.contains("www.google.com")), "{}; {hint}", all(&fail));
    assert!(fired(&fixed, "search_walk").is_empty(), "{}; {hint}", all(&fixed));
}

#[test]
fn s2_the_race_and_5s_retransmissions_fire_and_single_request_reopen_is_quiet() {
    let (fail, fixed, hint) = sides("S2", "s2_the_race_and_5s_retransmissions_fire_and_single_request_reopen_is_quiet");
    assert!(!fired(&fail, "race").is_empty(), "{}; {hint}", all(&fail));
    let re = fired(&fail, "retransmit");
    assert!(re.iter().any(|f| f.message.contains("after about 5 s")), "{}; {hint}", all(&fail));
    for d in ["race", "retransmit"] {
        assert!(fired(&fixed, d).is_empty(), "{d}: {}; {hint}", all(&fixed));
    }
}

#[test]
fn s8_the_cloud_resolver_over_its_budget_is_named_and_a_cache_keeps_it_under() {
    let (fail, fixed, hint) = sides("S8", "s8_the_cloud_resolver_over_its_budget_is_named_and_a_cache_keeps_it_under");
    let f = fired(&fail, "upstream_budget");
    assert!(!f.is_empty() && f.iter().all(|f| f.subject.starts_with("upstream 10.255.")), "{}; {hint}", all(&fail));
    assert!(fired(&fixed, "upstream_budget").is_empty(), "{}; {hint}", all(&fixed));
}

#[test]
fn s11_truncation_ignored_fires_for_evdns_and_not_for_c_ares() {
    let (fail, fixed, hint) = sides("S11", "s11_truncation_ignored_fires_for_evdns_and_not_for_c_ares");
    assert!(!fired(&fail, "truncation_ignored").is_empty(), "{}; {hint}", all(&fail));
    // Two replicas: neither judges alone (a client's TCP retries may all reach the other); the
    // replicas' per-client metrics summed do, as the README's alert rule sums them.
    let wheres: Vec<&str> = fail.findings.iter().filter(|x| x.finding.detector == "truncation_ignored").map(|x| x.at.as_str()).collect();
    assert!(wheres.iter().all(|w| *w == "cluster DNS, replicas summed (alert rule)"), "{wheres:?}; {hint}");
    assert!(fired(&fixed, "truncation_ignored").is_empty(), "{}; {hint}", all(&fixed));
}

#[test]
fn s12_retransmissions_name_the_nodes_of_the_lossy_az_and_node_local_dns_is_quiet() {
    let (fail, fixed, hint) = sides("S12", "s12_retransmissions_name_the_nodes_of_the_lossy_az_and_node_local_dns_is_quiet");
    let f = fired(&fail, "retransmit");
    assert!(!f.is_empty(), "{}; {hint}", all(&fail));
    let azs = scenarios::s12::spec(1, false).azs;
    for x in &f {
        // Pod IPs are 10.(100 + node / 256).(node % 256).x: the /24 names the node.
        let third: usize =
            x.subject.trim_start_matches("source 10.100.").split('.').next().and_then(|n| n.parse().ok()).expect("a node's /24");
        // A lookup from another AZ whose query or answer crossed AZ 0 can be lost too (its replica
        // is there): the loud sources are AZ 0's, and every one is a real node.
        assert!(third < scenarios::s12::spec(1, false).nodes, "{}; {hint}", x.subject);
    }
    let loudest = f.iter().max_by_key(|x| x.recent).expect("one");
    let node: usize = loudest.subject.trim_start_matches("source 10.100.").split('.').next().and_then(|n| n.parse().ok()).expect("node");
    assert_eq!(node % azs, 0, "the loudest source is a node in the lossy AZ 0: {}; {hint}", all(&fail));
    assert!(fired(&fixed, "retransmit").is_empty(), "{}; {hint}", all(&fixed));

    // With the pods watched (`pods verified`), the replicas know each client's node
    // (`spec.nodeName`): the same findings name the nodes themselves.
    let inc = incidents().into_iter().find(|i| i.id == "S12").expect("S12");
    let mut spec = (inc.failure.spec)(seed(inc.seed));
    assert!(spec.corefile.contains("pods insecure"), "{}", spec.corefile);
    spec.corefile = spec.corefile.replace("pods insecure", "pods verified");
    let named = run(spec).expect("runs");
    let f = fired(&named, "retransmit");
    assert!(!f.is_empty() && f.iter().all(|x| x.subject.starts_with("source node/node-")), "{}; {hint}", all(&named));
    let loudest = f.iter().max_by_key(|x| x.recent).expect("one");
    let node: usize = loudest.subject.trim_start_matches("source node/node-").parse().expect("node");
    assert_eq!(node % azs, 0, "the loudest source is a node in the lossy AZ 0: {}; {hint}", all(&named));
    assert!(loudest.message.starts_with(&format!("pods on node/node-{node} sent")), "{}", loudest.message);
}

#[test]
fn s17_stale_conntrack_names_the_deleted_replica_and_its_cut_off_pods_and_cleanup_is_quiet() {
    let (fail, fixed, hint) = sides("S17", "s17_stale_conntrack_names_the_deleted_replica_and_its_cut_off_pods_and_cleanup_is_quiet");
    let f = fired(&fail, "stale_conntrack");
    assert!(!f.is_empty(), "{}; {hint}", all(&fail));
    // The deleted replica is the first one: its pod IP is the one every finding names.
    let dead: Vec<String> = f.iter().map(|x| x.subject.rsplit(' ').next().unwrap_or("").to_string()).collect();
    assert!(
        dead.iter().all(|d| *d == dead[0]) && f.iter().all(|x| x.subject.starts_with("kube-dns 10.96.0.10:53 via ")),
        "{}; {hint}",
        all(&fail)
    );
    // The pods that never got an answer again after 20 s are the clients the findings name.
    let cut_off: Vec<usize> = scenarios::s17::success_by_pod(&fail, std::time::Duration::from_secs(20))
        .iter()
        .enumerate()
        .filter(|(_, s)| **s == 0.0)
        .map(|(p, _)| p)
        .collect();
    assert!(!cut_off.is_empty(), "{hint}");
    // Each such pod keeps one c-ares socket: one client address each, named by its node's finding.
    let clients: usize = f.iter().map(|x| x.message.rsplit("clients: ").next().unwrap_or("").split(", ").count()).sum();
    assert_eq!(clients, cut_off.len(), "{}; {hint}", all(&fail));
    assert!(fired(&fixed, "stale_conntrack").is_empty(), "{}; {hint}", all(&fixed));
}

#[test]
fn s21_stale_conntrack_fires_while_scaled_to_zero_on_1_32_and_not_on_1_37() {
    let (fail, fixed, hint) = sides("S21", "s21_stale_conntrack_fires_while_scaled_to_zero_on_1_32_and_not_on_1_37");
    let raised: Vec<_> = fail.findings.iter().filter(|x| x.finding.detector == "stale_conntrack").collect();
    assert!(!raised.is_empty(), "{}; {hint}", all(&fail));
    // Raised during the outage (no endpoints, kept sockets refreshing their entries to the deleted
    // pods); the Service's new endpoints make kube-proxy delete the entries, and the finding stops
    // being raised soon after.
    let (from, to) = scenarios::s21::OUTAGE;
    for x in &raised {
        assert!(x.first > from && x.first <= to + std::time::Duration::from_secs(10), "{} {}; {hint}", x.at, x.when());
        assert!(x.last < fail.duration, "still raised at the end: {} {}; {hint}", x.at, x.when());
    }
    assert!(fired(&fixed, "stale_conntrack").is_empty(), "{}; {hint}", all(&fixed));
}
