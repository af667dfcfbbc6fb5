//! S12: packet loss in one AZ shows up first as DNS errors, while TCP applications only slow down.
//!
//! Source: the talk ("Sometimes it's not DNS"); sources.md#incident-s12.
//! Root cause: DNS over UDP has no retransmission below the client library's 5 s timeout, and ndots
//! multiplies the queries per lookup; TCP retransmits a lost segment after 200 ms.
//! Guaranteed now: during 10% loss in one AZ, DNS lookups fail or take 5 s at a visible rate (over 2%)
//! while application requests over TCP stay well under a second, and at most one in a thousand waits
//! past 5 s (a segment lost five times running, its retransmission timer doubling from 200 ms: about
//! 1 in 7,000 at 10% loss each way, as on a real network); behind node-local-dns (pod→cache on the
//! node, cache→CoreDNS over TCP) the DNS symptoms go.

use scenarios::s12::{app_hurt, app_p99_ms, dns_hurt, spec};
use scenarios::*;

const FILE: &str = "s12_az_loss_looks_like_dns";

#[test]
fn dns_fails_where_tcp_applications_only_slow_down() {
    let seed = seed(12);
    let hint = replay(FILE, "dns_fails_where_tcp_applications_only_slow_down", seed);
    let r = run(spec(seed, false)).expect("runs");
    assert!(r.net.dropped_loss > 0, "{hint}");
    assert!(dns_hurt(&r) > 0.02, "{:.1}% DNS hurt; {hint}", 100.0 * dns_hurt(&r));
    // A 100-seed sweep found seeds with one request in ~7,600 past 5 s: TCP's backoff, not a failure.
    assert!(app_hurt(&r) < 0.001, "{:.3}% of app requests hurt; {hint}", 100.0 * app_hurt(&r));
    assert!(dns_hurt(&r) > 20.0 * app_hurt(&r), "DNS is hurt far more than TCP; {hint}");
    assert!(app_p99_ms(&r) < 1000.0, "app p99 {} ms; {hint}", app_p99_ms(&r));
    assert!(app_p99_ms(&r) > 150.0, "but retransmissions show as latency; {hint}");
}

#[test]
fn behind_node_local_dns_the_dns_symptoms_go() {
    let seed = seed(12);
    let hint = replay(FILE, "behind_node_local_dns_the_dns_symptoms_go", seed);
    let r = run(spec(seed, true)).expect("runs");
    assert!(dns_hurt(&r) < 0.005, "{:.2}% DNS hurt; {hint}", 100.0 * dns_hurt(&r));
}
