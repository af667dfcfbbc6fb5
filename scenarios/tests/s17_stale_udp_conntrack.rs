//! S17: stale UDP conntrack entries keep a long-lived socket on a deleted CoreDNS pod.
//!
//! Source: kubernetes#19029, #48744, #45976, #125467 (Envoy on EKS); sources.md#stale-udp-conntrack, sources.md#incident-s17.
//! Root cause: the entry (client ip:port → VIP) was DNATed to the old pod; kube-proxy's
//! `conntrack -D` is late, fails, or has no binary; a client that keeps its source port (c-ares's
//! channel socket) refreshes the entry with every retry, so it never expires.
//! Guaranteed now: without the cleanup, the pods whose flow was pinned to the deleted replica stay
//! blackholed to the end, the others are fine; with kube-proxy's cleanup they all recover within a
//! few seconds; a late cleanup ends the outage when it runs.

use std::time::Duration;

use netmodel::dnat::Cleanup;
use scenarios::s17::{spec, success_by_pod};
use scenarios::*;

const FILE: &str = "s17_stale_udp_conntrack";

#[test]
fn without_cleanup_pinned_clients_never_recover() {
    let seed = seed(17);
    let hint = replay(FILE, "without_cleanup_pinned_clients_never_recover", seed);
    let r = run(spec(seed, Cleanup::Never)).expect("runs");
    let after = success_by_pod(&r, Duration::from_secs(20));
    let dead = after.iter().filter(|&&s| s == 0.0).count();
    let fine = after.iter().filter(|&&s| s == 1.0).count();
    assert!(dead >= 1, "{after:?}; {hint}");
    assert_eq!(dead + fine, after.len(), "each pod is either pinned to the dead pod or not: {after:?}; {hint}");
}

#[test]
fn kube_proxys_cleanup_recovers_everyone_and_a_late_one_when_it_runs() {
    let seed = seed(17);
    let hint = replay(FILE, "kube_proxys_cleanup_recovers_everyone_and_a_late_one_when_it_runs", seed);
    let r = run(spec(seed, Cleanup::OnSync)).expect("runs");
    assert!(success_by_pod(&r, Duration::from_secs(20)).iter().all(|&s| s == 1.0), "{hint}");
    // A cleanup 30 s late (kubernetes#45976): blackholed until then, fine after.
    let r = run(spec(seed, Cleanup::Late(Duration::from_secs(30)))).expect("runs");
    let during = success_by_pod(&r, Duration::from_secs(20));
    assert!(during.iter().any(|&s| s < 1.0), "{during:?}; {hint}");
    assert!(success_by_pod(&r, Duration::from_secs(48)).iter().all(|&s| s == 1.0), "{hint}");
}
