//! S13: Zalando's total DNS outage: a query spike, ndots:5 and no client cache OOM-kill CoreDNS.
//!
//! Source: Zalando postmortem, kubernetes-on-aws.readthedocs.io/postmortems/jan-2019-dns-outage;
//! sources.md#coredns-forward (max_concurrent, ~2 KB per query), sources.md#incident-s13.
//! Root cause: every forwarded query in flight costs CoreDNS about 2 KB; with no `max_concurrent`
//! and the 100Mi limit of the time, a spike of held queries crosses the limit on every replica at once.
//! Guaranteed now: the spike OOM-kills the replicas in the 2019 setup; `max_concurrent 1000`, the
//! 2000Mi limit Zalando moved to, or ndots' own memory keep them alive.

use scenarios::s13::{coredns, spec};
use scenarios::*;
use sim::spec::MemoryModel;

const FILE: &str = "s13_zalando_oom";

#[test]
fn held_queries_oom_kill_every_replica_at_100mi() {
    let seed = seed(13);
    let hint = replay(FILE, "held_queries_oom_kill_every_replica_at_100mi", seed);
    let r = run(on_coredns(None, spec(seed, false, coredns(), 100))).expect("runs");
    assert!(r.net.restarts >= 2, "{} OOM kills; {hint}", r.net.restarts);
    assert!(r.series.iter().any(|s| s.replicas == 0), "a total outage; {hint}");
}

#[test]
fn max_concurrent_a_larger_limit_or_ndots_memory_survive() {
    let seed = seed(13);
    let hint = replay(FILE, "max_concurrent_a_larger_limit_or_ndots_memory_survive", seed);
    for (label, s) in [
        ("CoreDNS 1.7.0, max_concurrent 1000", on_coredns(Some("1.7.0"), spec(seed, true, coredns(), 100))),
        ("2000Mi", on_coredns(None, spec(seed, false, coredns(), 2000))),
        ("ndots", on_ndots(spec(seed, false, MemoryModel::Ndots, 100))),
    ] {
        let r = run(s).expect("runs");
        assert_eq!(r.net.restarts, 0, "{label}; {hint}");
    }
}
