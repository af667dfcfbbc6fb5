//! S15 topology: kube-dns as it ran before CoreDNS (`server: kube-dns`): dnsmasq holding at most 150
//! forwards in one table for cluster names (to kubedns) and external names alike, and the sidecar's
//! probe through dnsmasq deciding its liveness (sources.md#kube-dns, sources.md#incident-s15); one
//! replica (as small clusters ran kube-dns), 40 glibc pods looking up new external names (180/s),
//! the cloud resolver turning slow (1.5 s) at 5 s. Mitigated: CoreDNS's kubeadm Corefile
//! (`max_concurrent 1000`, cluster names never forwarded) with a health check that does not depend
//! on the forwards.

use std::time::Duration;

use crate::*;

pub fn spec(seed: u64, kube_dns: bool) -> ClusterSpec {
    let mut spec = cluster(seed, 2, 1, 40, 6.0, &["img-{n}.example.com.", "web"], 120);
    // Three new external names for each cluster name: 180 forwarded lookups/s, 360 queries/s.
    spec.pods[0].names = vec![("img-{n}.example.com.".into(), 3), ("web".into(), 1)];
    spec.azs = 1;
    spec.eni_limit = None;
    if kube_dns {
        spec.server = ServerProfile::KubeDns;
        spec.liveness = Some(sim::spec::Liveness::KUBE_DNS);
    }
    spec.faults = vec![(Duration::from_secs(5), Fault::UpstreamSlow { az: 0, delay: Duration::from_millis(1500) })];
    spec
}

/// Seconds after the slowdown in which not one lookup of `web` (a cluster name, never forwarded)
/// succeeded: DNS gone altogether, not merely slow.
pub fn dark_seconds(r: &Report) -> usize {
    (6..r.duration.as_secs()).filter(|&s| !lookups(r, "web").any(|l| l.ok && l.start.as_secs() == s)).count()
}

pub fn incident() -> Incident {
    Incident {
        id: "S15",
        slug: "dnsmasq-forward-limit",
        expect: sim::file::Expect { restarts_max: Some(0), success_rate_min: Some(0.99), ..Default::default() },
        title: "kube-dns: dnsmasq's 150 concurrent forwards and the sidecar's restarts",
        source: "sources.md#kube-dns, sources.md#incident-s15 (kubernetes#45976, kubespray#922)",
        seed: 15,
        failure: Case { label: "kube-dns (dnsmasq's default of 150 concurrent forwards)", spec: |s| spec(s, true) },
        mitigation: Case { label: "CoreDNS, max_concurrent 1000", spec: |s| spec(s, false) },
        measure: |r| {
            format!(
                "{} restarts, {:.1}% lookups ok, {} s with no cluster name resolving",
                r.net.restarts,
                100.0 * r.success_rate(),
                dark_seconds(r)
            )
        },
    }
}
