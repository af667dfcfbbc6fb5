//! S4 topology: a large cluster (45,000 pods in the state, 1,500 nodes' worth), 2 CoreDNS replicas
//! with `autopath @kubernetes` and `pods verified`, memory limit 170Mi (coredns/deployment); the
//! apiserver restarts at 20 s (sources.md#coredns-plugins, sources.md#incident-s4; kubernetes#139117).
//! By CoreDNS's published memory fit (sources.md#coredns-memory) such a replica holds about 125 MiB
//! and twice its watched objects while relisting: a cluster between ~32,000 and ~63,000 pods fits
//! the limit until the apiserver restarts. The talk names no CoreDNS version: the failing side runs
//! `coredns`.

use std::time::Duration;

use sim::spec::{CoreDnsMemory, MemoryModel, ReplicaMemory};

use crate::*;

pub fn spec(seed: u64, pods_mode: &str, model: MemoryModel, limit_mib: u64) -> ClusterSpec {
    let mut spec = cluster(seed, 3, 2, 30, 1.0, &["web", "www.google.com"], 90);
    spec.extra_pods = 45_000;
    spec.corefile = spec.corefile.replace("       pods insecure\n", &format!("       pods {pods_mode}\n")).replace(
        "    prometheus :9153\n",
        if pods_mode == "verified" { "    prometheus :9153\n    autopath @kubernetes\n" } else { "    prometheus :9153\n" },
    );
    spec.replica_memory = Some(ReplicaMemory::mib(limit_mib, model));
    spec.faults = vec![(Duration::from_secs(20), Fault::ApiserverRestart)];
    spec
}

pub fn coredns() -> MemoryModel {
    MemoryModel::CoreDns(CoreDnsMemory::default())
}

pub fn incident() -> Incident {
    Incident {
        id: "S4",
        slug: "autopath-oom",
        expect: sim::file::Expect { restarts_max: Some(0), success_rate_min: Some(0.99), ..Default::default() },
        title: "autopath + pods verified: every replica OOM after an apiserver restart",
        source: "talk (CoreDNS getting OOM-killed); kubernetes#139117",
        seed: 4,
        failure: Case { label: "CoreDNS, 170Mi", spec: |s| on_coredns(None, spec(s, "verified", coredns(), 170)) },
        mitigation: Case { label: "ndots autopath, 170Mi", spec: |s| on_ndots(spec(s, "verified", MemoryModel::Ndots, 170)) },
        measure: |r| {
            let peak = r.series.iter().map(|s| s.memory_max).max().unwrap_or(0) >> 20;
            format!("{} OOM restarts, peak {peak} MiB, {:.0}% lookups ok", r.net.restarts, 100.0 * r.success_rate())
        },
    }
}
