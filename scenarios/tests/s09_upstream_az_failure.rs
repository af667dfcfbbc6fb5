//! S9: the cloud resolver of one AZ fails, and a share of external lookups fail everywhere.
//!
//! Source: the talk ("Upstream DNS issue"); sources.md#coredns-forward, sources.md#incident-s9.
//! Root cause: each CoreDNS replica forwards to its AZ's resolver; the kube-dns VIP spreads clients
//! over all replicas, so the AZ-a replica's forward timeouts (2 s reads, 5 s deadline, health checks
//! that find only a dead upstream) reach clients in every AZ. Cluster names never leave CoreDNS.
//! Guaranteed now: external lookups fail at a visible rate while cluster names are untouched, and
//! forwarding to the resolvers of all AZs removes the failures.

use scenarios::s09::{failed_share, spec};
use scenarios::*;

const FILE: &str = "s09_upstream_az_failure";

#[test]
fn one_dead_az_resolver_fails_external_lookups_cluster_wide_but_not_cluster_names() {
    let seed = seed(9);
    let hint = replay(FILE, "one_dead_az_resolver_fails_external_lookups_cluster_wide_but_not_cluster_names", seed);
    let r = run(spec(seed, false)).expect("runs");
    let ext = failed_share(&r, "api-{n}.example.com");
    // A third of the flows land on the AZ-a replica; glibc's jump to the as-is name on a fresh
    // socket (a new DNAT choice) rescues some of them.
    assert!((0.05..0.40).contains(&ext), "{:.1}% external failures; {hint}", 100.0 * ext);
    assert_eq!(failed_share(&r, "web"), 0.0, "{hint}");
    assert!(r.net.dropped_blackhole > 0, "{hint}");
}

#[test]
fn forwarding_to_every_azs_resolver_removes_the_failures() {
    let seed = seed(9);
    let hint = replay(FILE, "forwarding_to_every_azs_resolver_removes_the_failures", seed);
    let r = run(spec(seed, true)).expect("runs");
    assert!(failed_share(&r, "api-{n}.example.com") < 0.01, "{hint}");
}
