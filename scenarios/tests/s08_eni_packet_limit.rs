//! S8: the AWS resolver's 1024 packets/s per ENI: the Corefile that lost `cache`, then `force_tcp`.
//!
//! Source: the talk ("Staging fright on AWS"); AWS "Hybrid Cloud DNS Options for Amazon VPC";
//! sources.md#cloud-resolver-limits, sources.md#incident-s8; aws/amazon-vpc-cni-k8s#595.
//! Root cause: every packet a node sends to the VPC resolver counts against its ENI's 1024/s budget;
//! excess is dropped silently. Without `cache` every client query (search suffixes included) goes
//! upstream; `force_tcp` adds the ACKs and handshakes of TCP to every query.
//! Guaranteed now: the measured packet rate per ENI hits the budget and drops show as 2 s forward
//! timeouts without `cache` (ndots' coalescing keeps hot names from failing outright), `cache 30`
//! removes the load, and `force_tcp` needs about twice the packets of UDP for the same queries.

use scenarios::s08::{DISTINCT, HOT, force_tcp, kept, pps, spec, without_cache};
use scenarios::*;

const FILE: &str = "s08_eni_packet_limit";

#[test]
fn without_cache_the_eni_budget_is_hit_and_drops_cost_2s() {
    let seed = seed(8);
    let hint = replay(FILE, "without_cache_the_eni_budget_is_hit_and_drops_cost_2s", seed);
    let r = run(spec(seed, 2400.0, HOT, without_cache)).expect("runs");
    let (per_eni, dropped) = pps(&r);
    // Offered load at the 1024/s budget: 946–1,115 packets/s per ENI over the first 63 seeds of a sweep;
    // its bursts over the bucket are what drops.
    assert!(per_eni > 900.0, "{per_eni:.0} packets/s per ENI; {hint}");
    assert!(dropped > 0.0 && r.net.dropped_eni > 0, "{hint}");
    // A dropped query costs forward's 2 s read timeout (sources.md#coredns-forward).
    assert!(r.latency_ms(0.99) >= 1900.0, "p99 {} ms; {hint}", r.latency_ms(0.99));
}

#[test]
fn cache_30_takes_the_load_off_the_eni() {
    let seed = seed(8);
    let hint = replay(FILE, "cache_30_takes_the_load_off_the_eni", seed);
    let r = run(spec(seed, 2400.0, HOT, kept)).expect("runs");
    let (per_eni, _) = pps(&r);
    assert!(per_eni < 20.0, "{per_eni:.1} packets/s per ENI; {hint}");
    assert_eq!(r.net.dropped_eni, 0, "{hint}");
    assert!(r.latency_ms(0.99) < 20.0, "{hint}");
}

#[test]
fn force_tcp_doubles_the_packets_and_crosses_the_budget_udp_stays_under() {
    let seed = seed(8);
    let hint = replay(FILE, "force_tcp_doubles_the_packets_and_crosses_the_budget_udp_stays_under", seed);
    let udp = run(spec(seed, 300.0, DISTINCT, without_cache)).expect("runs");
    let tcp = run(spec(seed, 300.0, DISTINCT, force_tcp)).expect("runs");
    let per_query = |r: &Report| r.net.upstream_packets as f64 / r.net.upstream_queries.max(1) as f64;
    assert!((per_query(&udp) - 1.0).abs() < 1e-9, "UDP: one packet per query; {hint}");
    // Reused connections: the query and the ACK of its answer (about 2; ≥ 5 without reuse).
    assert!((1.8..3.0).contains(&per_query(&tcp)), "{:.2} packets per query; {hint}", per_query(&tcp));
    assert!(pps(&udp).0 < 1024.0 && udp.net.dropped_eni == 0, "{hint}");
    assert!(pps(&tcp).0 > 1024.0 && tcp.net.dropped_eni > 0, "{hint}");
}
