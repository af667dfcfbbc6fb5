//! S16: CoreDNS forwards to 127.0.0.53, itself: the loop plugin halts it, over and over.
//!
//! Source: CoreDNS `loop` plugin README; kontena/pharos-cluster#448; sources.md#coredns-plugins, sources.md#incident-s16.
//! Root cause: the kubelet hands pods with dnsPolicy Default the node's resolv.conf, which names
//! systemd-resolved's stub 127.0.0.53; inside the CoreDNS pod that address is CoreDNS itself.
//! Guaranteed now: ndots' loop plugin sees its HINFO probe come back and halts (CrashLoopBackOff with
//! 10 s doubling back-off), so DNS is down; pointing the kubelet at the real resolv.conf fixes it.

use scenarios::*;

const FILE: &str = "s16_loop_127_0_0_53";

#[test]
fn the_loop_plugin_halts_every_replica_and_dns_is_down() {
    let seed = seed(16);
    let hint = replay(FILE, "the_loop_plugin_halts_every_replica_and_dns_is_down", seed);
    let r = run(scenarios::s16::spec(seed, true)).expect("runs");
    // Both replicas halt soon after start and again after each back-off (10 s, 20 s, 40 s...).
    assert!(r.net.restarts >= 4, "{} restarts; {hint}", r.net.restarts);
    assert!(r.events.iter().any(|(_, e)| e.contains("Loop")), "{hint}");
    assert!(r.series.iter().any(|s| s.replicas == 0), "no replica alive at some point; {hint}");
    assert!(r.success_rate() < 0.5, "{:.0}% ok; {hint}", 100.0 * r.success_rate());
}

#[test]
fn the_real_resolv_conf_has_no_loop() {
    let seed = seed(16);
    let r = run(scenarios::s16::spec(seed, false)).expect("runs");
    assert_eq!(r.net.restarts, 0, "{}", replay(FILE, "the_real_resolv_conf_has_no_loop", seed));
    assert_eq!(r.success_rate(), 1.0);
}
