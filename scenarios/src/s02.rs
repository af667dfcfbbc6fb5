//! S2 topology: 3 nodes, iptables mode, 2 CoreDNS replicas, 30 glibc pods looking up a cluster name
//! once a second for 20 s (sources.md#incident-s2).

use netmodel::Kernel;

use crate::*;
use sim::spec::Library;

pub fn spec(seed: u64, kernel: Kernel, replicas: usize, resolv_options: &str) -> ClusterSpec {
    with_library(seed, kernel, replicas, resolv_options, Library::Glibc(sim::client::glibc::Version::CURRENT))
}

pub fn with_library(seed: u64, kernel: Kernel, replicas: usize, resolv_options: &str, library: Library) -> ClusterSpec {
    let mut spec = cluster(seed, 3, replicas, 30, 1.0, &["web"], 20);
    spec.kernel = kernel;
    spec.pods[0].library = library;
    if !resolv_options.is_empty() {
        spec.pods[0].resolv_conf = Some(format!(
            "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5 {resolv_options}\n"
        ));
    }
    spec
}

/// Lookups that took glibc's 5 s timeout plus a round trip.
pub fn stalled(r: &Report) -> usize {
    stalled_around(r, 5000.0)
}

/// Lookups that took glibc's 5 s timeout, or were still waiting at the end of the run (a drop in
/// the last seconds; a lookup that has waited over 100 ms is waiting on a lost packet here): each
/// accounts for exactly one drop.
pub fn stalled_or_waiting(r: &Report) -> usize {
    stalled(r) + r.unfinished.iter().filter(|w| **w > std::time::Duration::from_millis(100)).count()
}

/// Lookups that took `ms` (a library's retransmit time) plus at most 50 ms.
pub fn stalled_around(r: &Report, ms: f64) -> usize {
    r.lookups.iter().filter(|l| (ms..ms + 50.0).contains(&(l.latency().as_secs_f64() * 1000.0))).count()
}

pub fn incident() -> Incident {
    Incident {
        id: "S2",
        slug: "conntrack-race",
        expect: sim::file::Expect { max_ms_max: Some(1000.0), conntrack_drops_max: Some(0), ..Default::default() },
        title: "conntrack insertion race, 5 s lookups",
        source: "kubernetes#56903; sources.md#conntrack-race",
        seed: 2,
        failure: Case { label: "kernel 4.15", spec: |s| spec(s, Kernel::new(4, 15), 2, "") },
        mitigation: Case { label: "single-request-reopen", spec: |s| spec(s, Kernel::new(4, 15), 2, "single-request-reopen") },
        measure: |r| format!("{} drops, {} lookups of 5 s, p99 {:.0} ms", r.net.dropped_race, stalled(r), r.latency_ms(0.99)),
    }
}
