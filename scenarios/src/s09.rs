//! S9 topology: 3 AZs with a node and a CoreDNS replica each, each forwarding to its AZ's resolver;
//! 30 glibc pods look up cluster and external names; the AZ-a resolver black-holes at 2 s
//! (sources.md#incident-s9, sources.md#coredns-forward).

use std::time::Duration;

use crate::*;

pub fn spec(seed: u64, all_upstreams: bool) -> ClusterSpec {
    let mut spec = cluster(seed, 3, 3, 30, 1.0, &["web", "api-{n}.example.com"], 30);
    spec.azs = 3;
    if all_upstreams {
        spec.corefile = spec.corefile.replace("forward . /etc/resolv.conf", "forward . 10.255.0.2 10.255.1.2 10.255.2.2");
    }
    spec.faults = vec![(Duration::from_secs(2), Fault::UpstreamBlackhole(0))];
    spec
}

/// Share of failed lookups of a name that started after the fault.
pub fn failed_share(r: &Report, name: &str) -> f64 {
    let after: Vec<_> = lookups(r, name).filter(|l| l.start >= Duration::from_secs(3)).collect();
    after.iter().filter(|l| !l.ok).count() as f64 / after.len().max(1) as f64
}

pub fn incident() -> Incident {
    Incident {
        id: "S9",
        slug: "upstream-az-failure",
        expect: sim::file::Expect { success_rate_min: Some(0.999), ..Default::default() },
        title: "upstream resolver failing in one AZ",
        source: "talk (Upstream DNS issue); sources.md#coredns-forward",
        seed: 9,
        failure: Case { label: "each AZ forwards to its own resolver", spec: |s| spec(s, false) },
        mitigation: Case { label: "forward to all three AZs' resolvers", spec: |s| spec(s, true) },
        measure: |r| {
            format!(
                "{:.0}% of external lookups fail, {:.0}% of cluster lookups",
                100.0 * failed_share(r, "api-{n}.example.com"),
                100.0 * failed_share(r, "web")
            )
        },
    }
}
