//! S15: kube-dns's dnsmasq holds at most 150 concurrent forwards; a slow upstream fills them, the
//! sidecar's health check fails, the kubelet restarts the container and DNS is gone for 15 s or more.
//! Source: sources.md#kube-dns, sources.md#incident-s15 (kubernetes#45976; kubespray#922 made the limit configurable).
//! Root cause: forwards held for the upstream's RTT (1.5 s) at 180 new names/s exceed 150 per
//! replica; refusals beyond it and a liveness check coupled to them turn slowness into an outage.
//! Guaranteed now: with CoreDNS's `max_concurrent 1000` and a health check that does not depend on
//! the forwards, the same slowness costs latency only: no restart, every lookup answered.

use scenarios::{replay, s15};

#[test]
fn a_slow_upstream_fills_dnsmasqs_150_forwards_and_the_sidecar_restarts_dns() {
    let seed = scenarios::seed(15);
    let hint = replay("s15_dnsmasq_forward_limit", "a_slow_upstream_fills_dnsmasqs_150_forwards_and_the_sidecar_restarts_dns", seed);
    let r = scenarios::run(s15::spec(seed, true)).expect("runs");
    assert!(r.net.restarts >= 1, "the liveness probe restarts a replica: {}; {hint}", r.summary());
    assert!(r.events.iter().any(|(_, e)| e.contains("liveness probe failed")), "{hint}");
    assert!(r.success_rate() < 0.9, "refused forwards fail lookups: {:.3}; {hint}", r.success_rate());
    // Even cluster names, which dnsmasq never forwards, stop resolving while the container restarts:
    // "DNS is gone for 15 s or more" (CrashLoopBackOff's 10 s, then the listing a start takes).
    println!("{} restarts; {} s dark; {}", r.net.restarts, s15::dark_seconds(&r), r.summary());
    assert!(s15::dark_seconds(&r) >= 10, "{} s dark; {hint}", s15::dark_seconds(&r));
}

#[test]
fn coredns_with_max_concurrent_1000_turns_the_same_slowness_into_latency_only() {
    let seed = scenarios::seed(15);
    let hint = replay("s15_dnsmasq_forward_limit", "coredns_with_max_concurrent_1000_turns_the_same_slowness_into_latency_only", seed);
    let r = scenarios::run(s15::spec(seed, false)).expect("runs");
    assert_eq!(r.net.restarts, 0, "{hint}");
    assert!(r.success_rate() > 0.99, "{:.4}; {hint}", r.success_rate());
    assert_eq!(s15::dark_seconds(&r), 0, "{hint}");
    // The upstream's 1.5 s is what external lookups pay.
    let ext: Vec<_> = scenarios::lookups(&r, "img-{n}.example.com.").filter(|l| l.start.as_secs() >= 6).collect();
    let fast = ext.iter().filter(|l| l.latency().as_millis() < 1500).count();
    // (A `{n}` name drawn twice is a cache hit: a few.)
    assert!(fast * 100 < ext.len(), "{fast} of {} external lookups faster than the upstream; {hint}", ext.len());
}
