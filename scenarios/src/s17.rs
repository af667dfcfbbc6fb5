//! S17/S14 topology: iptables mode, 2 CoreDNS replicas, 10 pods whose resolver keeps one UDP socket
//! (c-ares 1.2x, as in Envoy then) and looks up a cluster name 5 times a second; a replica is deleted
//! at 10 s (sources.md#stale-udp-conntrack, sources.md#incident-s14, sources.md#incident-s17). c-ares from 1.31 caches answers, which changes the story:
//! the socket then sends only when an answer expires, and with an answer TTL at or above the 30 s UDP
//! conntrack timeout the stale entry expires in between (seen in this topology with c-ares 1.34).

use std::time::Duration;

use netmodel::dnat::Cleanup;
use sim::client::cares::Era;
use sim::spec::Library;

use crate::*;

pub fn spec(seed: u64, cleanup: Cleanup) -> ClusterSpec {
    let mut spec = cluster(seed, 3, 2, 10, 5.0, &["web"], 60);
    spec.pods[0].library = Library::CAres(Era::V2023);
    spec.kube_proxy.cleanup = cleanup;
    spec.faults = vec![(Duration::from_secs(10), Fault::KillReplica(0))];
    spec
}

/// Per pod: the share of its lookups started after `from` that succeeded.
pub fn success_by_pod(r: &Report, from: Duration) -> Vec<f64> {
    let pods = r.lookups.iter().map(|l| l.pod).max().map_or(0, |m| m + 1);
    (0..pods)
        .map(|p| {
            let mine: Vec<_> = r.lookups.iter().filter(|l| l.pod == p && l.start >= from).collect();
            mine.iter().filter(|l| l.ok).count() as f64 / mine.len().max(1) as f64
        })
        .collect()
}

pub fn incident() -> Incident {
    Incident {
        id: "S17",
        slug: "stale-udp-conntrack",
        expect: sim::file::Expect { success_rate_min: Some(0.99), ..Default::default() },
        title: "stale UDP conntrack after a CoreDNS pod is deleted",
        source: "kubernetes#19029, #125467; sources.md#stale-udp-conntrack",
        seed: 17,
        failure: Case { label: "conntrack cleanup missing", spec: |s| spec(s, Cleanup::Never) },
        mitigation: Case { label: "kube-proxy deletes the entries", spec: |s| spec(s, Cleanup::OnSync) },
        measure: |r| {
            let dead = success_by_pod(r, Duration::from_secs(20)).iter().filter(|&&s| s == 0.0).count();
            format!("{dead} pods with no lookup working after 20 s, {:.0}% ok", 100.0 * r.success_rate())
        },
    }
}
