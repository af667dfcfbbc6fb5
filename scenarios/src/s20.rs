//! S20 topology: S2's cluster (3 nodes, iptables mode, 2 CoreDNS replicas, 30 glibc pods, a cluster
//! name once a second) on kernel 5.15, where the insertion race no longer drops, with a
//! network-policy agent that NFQUEUEs the first packets of new flows; the fix is kernel 6.12, whose
//! queue resolves the race as the kernel does without one (sources.md#conntrack-race,
//! sources.md#incident-s20).

use netmodel::Kernel;

use crate::*;

pub fn spec(seed: u64, kernel: Kernel, nfqueue: bool, resolv_options: &str) -> ClusterSpec {
    let mut spec = s02::spec(seed, kernel, 2, resolv_options);
    spec.nfqueue = nfqueue;
    spec
}

pub fn incident() -> Incident {
    Incident {
        id: "S20",
        slug: "nfqueue-race",
        expect: sim::file::Expect { max_ms_max: Some(1000.0), conntrack_drops_max: Some(0), ..Default::default() },
        title: "NFQUEUE re-opens the conntrack race on a fixed kernel",
        source: "netfilter bugzilla 1766, 8af79d3edb5f; sources.md#conntrack-race",
        seed: 20,
        failure: Case { label: "kernel 5.15 + NFQUEUE policy agent", spec: |s| spec(s, Kernel::new(5, 15), true, "") },
        mitigation: Case { label: "kernel 6.12 (nfnetlink_queue fix) + the same agent", spec: |s| spec(s, Kernel::new(6, 12), true, "") },
        measure: |r| format!("{} drops, {} lookups of 5 s, p99 {:.0} ms", r.net.dropped_race, s02::stalled(r), r.latency_ms(0.99)),
    }
}
