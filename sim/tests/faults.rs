//! Faults whose effect the simulator must show as a real cluster would: a node that dies without a
//! word, and a cloud resolver that turns slow.

use std::time::Duration;

use sim::spec::Fault;
use sim::{ClusterSpec, run, seed_or};

fn replay(test: &str, seed: u64) -> String {
    format!("replay: SIM_SEED={seed} cargo test -p sim --test faults {test}")
}

#[test]
fn a_dead_node_strands_queries_on_its_replica_until_the_control_plane_notices() {
    let seed = seed_or(3);
    let hint = replay("a_dead_node_strands_queries_on_its_replica_until_the_control_plane_notices", seed);
    let mut spec = ClusterSpec::smoke(seed);
    spec.coredns_replicas = 3; // one per node
    spec.duration = Duration::from_secs(60);
    spec.pods[0].names = vec![("web".into(), 1)];
    spec.faults = vec![(Duration::from_secs(5), Fault::NodeDown(0))];
    let r = run(spec).expect("runs");
    let secs = |l: &sim::report::LookupRecord| l.start.as_secs_f64();
    // Pods on node 0 (every third pod) ask nothing more once it is down.
    assert!(r.lookups.iter().filter(|l| l.pod % 3 == 0).all(|l| secs(l) < 5.0), "{hint}");
    // Between the failure and the node controller's 40 s grace, a third of the DNAT choices land on the
    // dead replica: glibc waits out its 5 s timeout and asks again (incidents.md §1.1).
    let stalled = r.lookups.iter().filter(|l| (6.0..40.0).contains(&secs(l)) && l.latency() >= Duration::from_secs(5)).count();
    let during = r.lookups.iter().filter(|l| (6.0..40.0).contains(&secs(l))).count();
    assert!(stalled * 10 > during, "{stalled} of {during} lookups stalled; {hint}");
    // After NotReady (45 s) and kube-proxy's sync, nothing stalls any more.
    assert!(r.lookups.iter().filter(|l| secs(l) >= 47.0).all(|l| l.latency() < Duration::from_millis(100)), "{hint}");
    assert!(r.events.iter().any(|(t, e)| *t == Duration::from_secs(45) && e.contains("NotReady")), "{:?}", r.events);
}

#[test]
fn a_slow_cloud_resolver_slows_exactly_the_cache_misses() {
    let seed = seed_or(4);
    let hint = replay("a_slow_cloud_resolver_slows_exactly_the_cache_misses", seed);
    let mut spec = ClusterSpec::smoke(seed);
    spec.azs = 1;
    spec.pods[0].names = vec![("x{n}.example.com.".into(), 1), ("web".into(), 1)];
    spec.faults = vec![(Duration::from_secs(3), Fault::UpstreamSlow { az: 0, delay: Duration::from_millis(300) })];
    let r = run(spec).expect("runs");
    let misses: Vec<_> = r.lookups.iter().filter(|l| l.name.starts_with('x') && l.start >= Duration::from_secs(3)).collect();
    assert!(!misses.is_empty());
    assert!(misses.iter().all(|l| l.ok && l.latency() >= Duration::from_millis(300)), "{hint}");
    let before: Vec<_> = r.lookups.iter().filter(|l| l.name.starts_with('x') && l.end < Duration::from_secs(3)).collect();
    assert!(before.iter().all(|l| l.latency() < Duration::from_millis(50)), "{hint}");
    assert!(
        r.lookups.iter().filter(|l| l.name == "web").all(|l| l.latency() < Duration::from_millis(50)),
        "cluster names never wait: {hint}"
    );
}
