//! S21 topology: iptables mode, 3 nodes, 2 CoreDNS replicas; 10 pods whose resolver keeps one UDP
//! socket (c-ares, as Envoy and Node run it) and 10 glibc pods, each looking up a cluster name 5 times
//! a second. At 10 s a bad rollout scales CoreDNS to zero; at 40 s it is rolled back to 2
//! (sources.md#kube-proxy-cleanup, sources.md#incident-s21).
//!
//! While the Service has no endpoints kube-proxy REJECTs new flows, so a lookup fails at once and the
//! application sees the outage for what it is. kube-proxy 1.32's conntrack reconciler skips services
//! with no endpoints (kubernetes#139628), so the entries of sockets that keep their port stay DNATed
//! to the deleted pods and every query of those clients is black-holed instead: each lookup waits out
//! its timeouts. The entries go when the Service has endpoints again; 1.31 (events) and 1.37
//! (kubernetes#139629) delete them when the endpoints go.

use std::time::Duration;

use netmodel::dnat::KubeProxyVersion;
use sim::client::cares::Era;
use sim::spec::Library;

use crate::*;

/// The outage: from the scale to zero until the rolled-back replicas are ready.
pub const OUTAGE: (Duration, Duration) = (Duration::from_secs(10), Duration::from_secs(40));

pub fn spec(seed: u64, kube_proxy: KubeProxyVersion) -> ClusterSpec {
    let mut spec = cluster(seed, 3, 2, 10, 5.0, &["web"], 100);
    let glibc = spec.pods[0].clone();
    spec.pods[0].library = Library::CAres(Era::V2023);
    spec.pods.push(glibc);
    spec.kube_proxy.version = kube_proxy;
    spec.faults = vec![(OUTAGE.0, Fault::ScaleReplicas(0)), (OUTAGE.1, Fault::ScaleReplicas(2))];
    spec
}

/// The lookups of a library (pod group 0: c-ares, 1: glibc) started during the outage, after
/// kube-proxy's sync, and how long each took.
pub fn outage_latencies(r: &Report, group: usize) -> Vec<Duration> {
    let per_group = 10;
    r.lookups
        .iter()
        .filter(|l| l.pod / per_group == group && l.start >= OUTAGE.0 + Duration::from_secs(2) && l.start < OUTAGE.1)
        .map(|l| l.latency())
        .collect()
}

pub fn incident() -> Incident {
    Incident {
        id: "S21",
        slug: "scaled-to-zero",
        // The lookups caught by the scale-down before kube-proxy's sync wait out a timeout on every
        // version (under 1% of the run); the kept sockets' whole outage does on 1.32 (about 14%).
        expect: sim::file::Expect { p99_ms_max: Some(3000.0), ..Default::default() },
        title: "CoreDNS scaled to zero: kube-proxy 1.32's reconciler black-holes kept sockets",
        source: "kubernetes#139628, #139629, #127318, #48370; sources.md#kube-proxy-cleanup",
        seed: 21,
        failure: Case { label: "kube-proxy 1.32", spec: |s| spec(s, KubeProxyVersion::new(1, 32)) },
        mitigation: Case { label: "kube-proxy 1.37", spec: |s| spec(s, KubeProxyVersion::new(1, 37)) },
        measure: |r| {
            let c = outage_latencies(r, 0);
            let slow = c.iter().filter(|d| **d >= Duration::from_secs(1)).count();
            format!(
                "c-ares lookups in the outage: {slow} of {} waited ≥ 1 s; {} packets black-holed; p99 {:.0} ms",
                c.len(),
                r.net.dropped_dead,
                r.latency_ms(0.99)
            )
        },
    }
}
