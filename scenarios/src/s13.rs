//! S13 topology (Zalando, 2019-01-07): 2 CoreDNS replicas at a 100Mi limit with the Corefile of the
//! time (no `max_concurrent`); 60 Node.js pods without a DNS cache look up 3,000 distinct external
//! names per second; the cloud resolver stalls from 5 s to 15 s, so every forwarded query is held
//! for forward's 5 s deadline (sources.md#incident-s13). The postmortem names no CoreDNS release;
//! it predates `max_concurrent` (1.6.8), so the failing side runs `coredns` and the mitigated side
//! `coredns-1.7.0`, the first whose deployment Corefile sets `max_concurrent 1000`.

use std::time::Duration;

use sim::spec::{CoreDnsMemory, MemoryModel, ReplicaMemory};

use crate::*;

pub fn spec(seed: u64, max_concurrent: bool, model: MemoryModel, limit_mib: u64) -> ClusterSpec {
    let mut spec = cluster(seed, 3, 2, 60, 50.0, &["api-{n}.example.com"], 16);
    spec.azs = 1;
    if !max_concurrent {
        spec.corefile = spec.corefile.replace("       max_concurrent 1000\n", "");
    }
    spec.replica_memory = Some(ReplicaMemory::mib(limit_mib, model));
    spec.faults = vec![(Duration::from_secs(5), Fault::UpstreamBlackhole(0)), (Duration::from_secs(15), Fault::UpstreamRepair(0))];
    spec
}

pub fn coredns() -> MemoryModel {
    MemoryModel::CoreDns(CoreDnsMemory::default())
}

pub fn incident() -> Incident {
    Incident {
        id: "S13",
        slug: "zalando-oom",
        expect: sim::file::Expect { restarts_max: Some(0), ..Default::default() },
        title: "Zalando: a query spike OOM-kills CoreDNS at 100Mi",
        source: "Zalando postmortem (jan-2019-dns-outage); sources.md#incident-s13",
        seed: 13,
        failure: Case { label: "CoreDNS 2019, 100Mi, no max_concurrent", spec: |s| on_coredns(None, spec(s, false, coredns(), 100)) },
        mitigation: Case {
            label: "CoreDNS 1.7.0, max_concurrent 1000",
            spec: |s| on_coredns(Some("1.7.0"), spec(s, true, coredns(), 100)),
        },
        measure: |r| {
            let peak = r.series.iter().map(|s| s.memory_max).max().unwrap_or(0) >> 20;
            format!("{} OOM kills, peak {peak} MiB", r.net.restarts)
        },
    }
}
