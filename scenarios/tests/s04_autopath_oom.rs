//! S4: CoreDNS with autopath (so `pods verified`) OOM-kills every replica after an apiserver restart.
//!
//! Source: the talk ("CoreDNS getting OOM-killed"); kubernetes#139117 (235/313 replicas OOM-killed at
//! 170Mi after an apiserver restart); coredns#2095; sources.md#coredns-plugins, sources.md#incident-s4.
//! Root cause: `pods verified` watches every pod; a relist holds the old and the new objects, roughly
//! doubling memory; over the limit, every replica dies at once, and each restart lists again.
//! Guaranteed now: with CoreDNS's memory, all replicas OOM together and crash-loop (a DNS outage);
//! `pods insecure` without autopath or a larger limit avoid it; ndots' autopath keeps 24 bytes per pod
//! and stays far inside 170Mi through the relist.

use std::time::Duration;

use scenarios::s04::{coredns, spec};
use scenarios::*;
use sim::spec::MemoryModel;

const FILE: &str = "s04_autopath_oom";

fn peak_mib(r: &Report) -> u64 {
    r.series.iter().map(|s| s.memory_max).max().unwrap_or(0) >> 20
}

#[test]
fn every_coredns_replica_is_oom_killed_by_the_relist_and_crash_loops() {
    let seed = seed(4);
    let hint = replay(FILE, "every_coredns_replica_is_oom_killed_by_the_relist_and_crash_loops", seed);
    let r = run(on_coredns(None, spec(seed, "verified", coredns(), 170))).expect("runs");
    // Before the restart: steady, under the limit, all lookups fine.
    assert!(r.series.iter().take(19).all(|s| s.replicas == 2 && s.memory_max < 170 << 20), "{hint}");
    assert!(r.lookups.iter().filter(|l| l.end < Duration::from_secs(20)).all(|l| l.ok), "{hint}");
    // Both replicas go within a second of each other, and each restart relists and dies again.
    let first_zero = r.series.iter().find(|s| s.replicas == 0).map(|s| s.t).expect("a total outage");
    assert!(first_zero <= Duration::from_secs(22), "{first_zero:?}; {hint}");
    assert!(r.net.restarts >= 4, "{} OOM kills; {hint}", r.net.restarts);
    assert!(r.events.iter().any(|(_, e)| e.contains("OOMKilled")), "{hint}");
    let after: Vec<_> = r.lookups.iter().filter(|l| l.start > Duration::from_secs(25)).collect();
    assert!(after.iter().filter(|l| !l.ok).count() * 2 > after.len(), "most lookups fail during the crash loop; {hint}");
}

#[test]
fn pods_insecure_without_autopath_or_a_larger_limit_survive() {
    let seed = seed(4);
    let hint = replay(FILE, "pods_insecure_without_autopath_or_a_larger_limit_survive", seed);
    let insecure = run(on_coredns(None, spec(seed, "insecure", coredns(), 170))).expect("runs");
    assert_eq!(insecure.net.restarts, 0, "{hint}");
    let big = run(on_coredns(None, spec(seed, "verified", coredns(), 400))).expect("runs");
    assert_eq!(big.net.restarts, 0, "{hint}");
    assert!(peak_mib(&big) > 170, "it needed more than 170Mi: {} MiB; {hint}", peak_mib(&big));
}

#[test]
fn ndots_autopath_stays_inside_the_limit_through_the_relist() {
    let seed = seed(4);
    let hint = replay(FILE, "ndots_autopath_stays_inside_the_limit_through_the_relist", seed);
    let r = run(on_ndots(spec(seed, "verified", MemoryModel::Ndots, 170))).expect("runs");
    assert_eq!(r.net.restarts, 0, "{hint}");
    assert!(peak_mib(&r) < 20, "peak {} MiB for 45,000 pods; {hint}", peak_mib(&r));
    assert_eq!(r.success_rate(), 1.0, "{hint}");
}
