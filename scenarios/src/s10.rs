//! S10 topology: one 2-CPU node (so nf_conntrack_max = max(32768 × 2, 131072) = 131072) with 2
//! CoreDNS replicas and 30 glibc pods, 300 lookups/s of www.google.com: 5 names × one A+AAAA socket
//! each = 1,500 new 4-packet UDP flows per second (sources.md#conntrack-udp-timeouts, sources.md#conntrack-table-size, sources.md#incident-s10). The insertion
//! race is switched off (p_cpu_split 0) to look at the table alone.

use std::time::Duration;

use netmodel::Kernel;

use crate::*;

pub fn spec(seed: u64, kernel: Kernel, conntrack_min: usize) -> ClusterSpec {
    let mut spec = cluster(seed, 1, 2, 30, 10.0, &["www.google.com"], 120);
    spec.azs = 1;
    spec.cpus_per_node = 2;
    spec.kernel = kernel;
    spec.conntrack_min = conntrack_min;
    spec.race.p_cpu_split = 0.0;
    spec
}

pub fn peak(r: &Report) -> usize {
    r.series.iter().flat_map(|s| s.conntrack.iter().copied()).max().unwrap_or(0)
}

/// When the table first held `n` entries.
pub fn reached(r: &Report, n: usize) -> Option<Duration> {
    r.series.iter().find(|s| s.conntrack.iter().any(|&c| c >= n)).map(|s| s.t)
}

pub fn incident() -> Incident {
    Incident {
        id: "S10",
        slug: "conntrack-table-full",
        expect: sim::file::Expect { conntrack_drops_max: Some(0), ..Default::default() },
        title: "conntrack table full at 131,072",
        source: "kubernetes#18604; d535c8a69c19; sources.md#conntrack-udp-timeouts, sources.md#conntrack-table-size",
        seed: 10,
        failure: Case { label: "kernel 4.19 (180 s stream entries)", spec: |s| spec(s, Kernel::new(4, 19), 131_072) },
        mitigation: Case { label: "kernel 5.4 (2 s rule: 30 s entries)", spec: |s| spec(s, Kernel::new(5, 4), 131_072) },
        measure: |r| {
            format!(
                "peak {} entries, {} packets dropped (table full), {:.1}% ok",
                peak(r),
                r.net.dropped_table_full,
                100.0 * r.success_rate()
            )
        },
    }
}
