//! S7: the cluster-proportional-autoscaler scales CoreDNS down and clients pinned to the removed
//! replicas fail, as in S6.
//!
//! Source: the talk; the dns-autoscaler addon parameters (256 cores, 16 nodes per replica);
//! sources.md#dns-autoscaler, sources.md#incident-s7.
//! Root cause: fewer nodes → fewer replicas (linear mode) → endpoints removed → the IPVS (or
//! conntrack) stale-entry mechanisms of S6/S17.
//! Guaranteed now: 64 → 16 nodes takes the replicas from 4 to 2 after one poll, and the 2018 IPVS
//! setup keeps failing reused ports long after, while kernel 5.9+ with expire_nodest_conn does not.

use std::time::Duration;

use netmodel::Kernel;
use netmodel::ipvs::Config;
use scenarios::s06::hurt_after;
use scenarios::s07::spec;
use scenarios::*;
use sim::spec::Autoscaler;

const FILE: &str = "s07_autoscaler_scale_down";

#[test]
fn the_linear_formula_gives_4_then_2_replicas() {
    let cpa = Autoscaler::addon(64);
    assert_eq!(cpa.replicas(64, 64 * 2), 4);
    assert_eq!(cpa.replicas(16, 16 * 2), 2);
    assert_eq!(cpa.replicas(1, 2), 1, "preventSinglePointFailure needs more than one node");
    assert_eq!(cpa.replicas(2, 4), 2);
}

#[test]
fn the_scale_down_blackholes_reused_ports_in_the_2018_ipvs_setup() {
    let seed = seed(7);
    let hint = replay(FILE, "the_scale_down_blackholes_reused_ports_in_the_2018_ipvs_setup", seed);
    let k = Kernel::new(4, 19);
    let r = run(spec(seed, k, scenarios::s06::v1(k))).expect("runs");
    assert_eq!(r.series[5].replicas, 4, "{hint}");
    assert_eq!(r.series.last().expect("samples").replicas, 2, "{hint}");
    assert!(r.events.iter().any(|(t, e)| e.contains("4 → 2") && *t == Duration::from_secs(20)), "one poll (10 s) after the shrink; {hint}");
    assert!(hurt_after(&r, Duration::from_secs(60)) > 10, "{hint}");
    let fixed = run(spec(seed, Kernel::new(5, 10), Config::kube_proxy(Kernel::new(5, 10)))).expect("runs");
    assert_eq!(hurt_after(&fixed, Duration::from_secs(30)), 0, "{hint}");
}
