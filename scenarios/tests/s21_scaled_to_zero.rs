//! S21: CoreDNS scaled to zero by a bad rollout, then rolled back.
//!
//! Source: kubernetes#139628 (the reconciler skips services without endpoints; 13 h of black-holed
//! statsd traffic), #139629 (fixed in 1.37), #127318 (the 1.32 reconciler), #48370 (REJECT and the
//! 0 → N cleanup); sources.md#kube-proxy-cleanup, sources.md#incident-s21.
//! Root cause: kube-proxy 1.32–1.36 leaves a service's conntrack entries alone while it has no
//! endpoints, so a client that keeps its UDP source port (c-ares's channel socket: Envoy, Node)
//! refreshes an entry DNATed to a deleted pod with every query: its packets are black-holed instead
//! of meeting the REJECT rule, and each lookup waits out its timeouts.
//! Guaranteed now: on 1.32 the kept-socket clients' lookups in the outage each take seconds while
//! glibc's (a new port per lookup) fail at once; on 1.37 (and 1.31's events) both fail at once;
//! every version recovers once the rolled-back replicas are ready.

use std::time::Duration;

use netmodel::dnat::KubeProxyVersion;
use scenarios::s21::{OUTAGE, outage_latencies, spec};
use scenarios::*;

const FILE: &str = "s21_scaled_to_zero";

fn share_slow(l: &[Duration]) -> f64 {
    l.iter().filter(|d| **d >= Duration::from_secs(1)).count() as f64 / l.len().max(1) as f64
}

#[test]
fn on_1_32_kept_sockets_hang_through_the_outage_while_new_ports_fail_fast() {
    let seed = seed(21);
    let hint = replay(FILE, "on_1_32_kept_sockets_hang_through_the_outage_while_new_ports_fail_fast", seed);
    let r = run(spec(seed, KubeProxyVersion::new(1, 32))).expect("runs");
    let (cares, glibc) = (outage_latencies(&r, 0), outage_latencies(&r, 1));
    assert!(!cares.is_empty() && !glibc.is_empty(), "{hint}");
    assert!(share_slow(&cares) > 0.9, "c-ares: {:?}; {hint}", &cares[..cares.len().min(20)]);
    assert!(share_slow(&glibc) < 0.01, "glibc: {:?}; {hint}", &glibc[..glibc.len().min(20)]);
    assert!(r.net.dropped_dead > 1000, "black-holed toward the deleted pods: {:?}; {hint}", r.net);
}

#[test]
fn a_release_that_cleans_on_scale_to_zero_lets_everyone_fail_fast_and_all_recover() {
    let seed = seed(21);
    let hint = replay(FILE, "a_release_that_cleans_on_scale_to_zero_lets_everyone_fail_fast_and_all_recover", seed);
    for v in [KubeProxyVersion::new(1, 31), KubeProxyVersion::new(1, 37), KubeProxyVersion::new(1, 32)] {
        let r = run(spec(seed, v)).expect("runs");
        if v != KubeProxyVersion::new(1, 32) {
            let (cares, glibc) = (outage_latencies(&r, 0), outage_latencies(&r, 1));
            assert_eq!((share_slow(&cares), share_slow(&glibc)), (0.0, 0.0), "{v}; {hint}");
            assert!(cares.iter().chain(&glibc).all(|d| *d < Duration::from_millis(100)), "{v}: REJECTed at once; {hint}");
        }
        // Every version: the rolled-back replicas serve everyone (1.32 deletes the stale entries once
        // the Service has endpoints again).
        let after: Vec<_> = r.lookups.iter().filter(|l| l.start >= OUTAGE.1 + Duration::from_secs(10)).collect();
        assert!(after.len() > 500 && after.iter().all(|l| l.ok), "{v}: {} lookups after; {hint}", after.len());
    }
}
