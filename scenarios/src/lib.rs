//! Every documented Kubernetes DNS incident as a seeded regression test (`tests/sNN_*.rs`), run in the
//! simulator with the real resolver. This library holds what the incident files share.

use std::time::Duration;

pub use sim::client::Hints;
pub use sim::spec::{ClusterSpec, Fault, PodGroup, ProxyMode};
pub use sim::{Report, run};

/// The line a failing scenario prints so a person can replay it.
pub fn replay(file: &str, test: &str, seed: u64) -> String {
    format!("replay: SIM_SEED={seed} cargo test -p scenarios --test {file} {test}")
}

/// The seed: `SIM_SEED` if set, else the scenario's fixed default.
pub fn seed(default: u64) -> u64 {
    sim::seed_or(default)
}

/// A cluster of `nodes` nodes and `replicas` CoreDNS replicas whose `pods` glibc pods each look up
/// `names` at `rate` per second, for `secs` simulated seconds.
pub fn cluster(seed: u64, nodes: usize, replicas: usize, pods: usize, rate: f64, names: &[&str], secs: u64) -> ClusterSpec {
    let mut spec = ClusterSpec::smoke(seed);
    spec.nodes = nodes;
    spec.azs = nodes.min(3);
    spec.coredns_replicas = replicas;
    spec.duration = Duration::from_secs(secs);
    let template = spec.pods[0].clone();
    spec.pods = vec![PodGroup { count: pods, rate, names: names.iter().map(|n| (n.to_string(), 1)).collect(), ..template }];
    spec
}

/// Lookups of `name` in a report.
pub fn lookups<'a>(r: &'a Report, name: &'a str) -> impl Iterator<Item = &'a sim::report::LookupRecord> {
    r.lookups.iter().filter(move |l| l.name == name)
}
