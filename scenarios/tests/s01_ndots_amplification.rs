//! S1: ndots:5 turns one lookup of www.google.com into 12 queries.
//!
//! Source: the talk ("ndots:5"), sources.md#kubelet-resolv-conf, sources.md#incident-s1.
//! Root cause: the kubelet writes `options ndots:5` and a search list of 3 cluster domains plus the
//! node's; glibc tries every search domain (A and AAAA each) before the name itself.
//! Guaranteed now: the simulator reproduces the counts, and each mitigation the sources give (a
//! trailing dot, AI_ADDRCONFIG without IPv6, ndots:2, autopath on the server) cuts them as stated.

use scenarios::*;

const FILE: &str = "s01_ndots_amplification";

/// Queries per lookup of www.google.com in S1's cluster, after `tweak`.
fn queries(test: &str, tweak: impl FnOnce(&mut ClusterSpec)) -> Vec<u32> {
    let seed = seed(1);
    let mut spec = scenarios::s01::spec(seed);
    tweak(&mut spec);
    let r = run(spec).expect("runs");
    assert_eq!(r.success_rate(), 1.0, "{}", replay(FILE, test, seed));
    assert!(r.lookups.len() > 10, "{}", replay(FILE, test, seed));
    lookups(&r, "www.google.com").chain(lookups(&r, "www.google.com.")).map(|l| l.queries).collect()
}

#[test]
fn glibc_with_hints_null_sends_12_queries() {
    let q = queries("glibc_with_hints_null_sends_12_queries", |_| {});
    assert!(q.iter().all(|&n| n == 12), "{q:?}");
}

#[test]
fn ai_addrconfig_on_a_pod_without_ipv6_halves_it_to_6() {
    let q = queries("ai_addrconfig_on_a_pod_without_ipv6_halves_it_to_6", |s| s.pods[0].hints = Hints::addrconfig());
    assert!(q.iter().all(|&n| n == 6), "{q:?}");
}

#[test]
fn a_trailing_dot_sends_2() {
    let q = queries("a_trailing_dot_sends_2", |s| s.pods[0].names = vec![("www.google.com.".into(), 1)]);
    assert!(q.iter().all(|&n| n == 2), "{q:?}");
}

#[test]
fn the_talks_ndots_2_resolv_conf_sends_2() {
    let q = queries("the_talks_ndots_2_resolv_conf_sends_2", |s| *s = scenarios::s01::ndots2(s.seed));
    assert!(q.iter().all(|&n| n == 2), "{q:?}");
}

#[test]
fn autopath_answers_the_first_search_query_so_the_pod_sends_2() {
    // CoreDNS round trips fall from 6 to 1: the server walks the search path itself and answers the
    // first query with a CNAME to www.google.com. ndots' autopath needs no `pods verified`.
    let q = queries("autopath_answers_the_first_search_query_so_the_pod_sends_2", |s| {
        s.corefile = s.corefile.replace("    prometheus :9153\n", "    prometheus :9153\n    autopath @kubernetes\n");
    });
    assert!(q.iter().all(|&n| n == 2), "{q:?}");
}
