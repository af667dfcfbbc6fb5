//! S18 topology: an upstream answer of 120 A records (about 1,950 bytes) and a path that drops IP
//! fragments between the nodes and the cloud resolver (sources.md#incident-s18, sources.md#coredns-plugins bufsize).

use sim::spec::Library;

use crate::*;

pub fn spec(seed: u64, bufsize: Option<u16>, library: Library) -> ClusterSpec {
    let mut spec = cluster(seed, 3, 2, 10, 0.5, &["big.example.com"], 30);
    spec.pods[0].library = library;
    spec.drop_fragments = true;
    if let Some(b) = bufsize {
        spec.corefile = spec.corefile.replace("    loop\n", &format!("    loop\n    bufsize {b}\n"));
    }
    let mut zone = spec.upstream_zone.clone();
    for i in 0..120 {
        zone.push_str(&format!("big.example.com. 300 IN A 10.30.0.{}\n", i + 1));
    }
    spec.upstream_zone = zone;
    spec
}

pub fn glibc() -> Library {
    Library::Glibc(sim::client::glibc::Version::CURRENT)
}

pub fn incident() -> Incident {
    Incident {
        id: "S18",
        slug: "edns-fragmentation",
        expect: sim::file::Expect { success_rate_min: Some(0.99), ..Default::default() },
        title: "EDNS buffers above 1232 lose fragmented answers",
        source: "DNS Flag Day 2020; CoreDNS bufsize; sources.md#incident-s18",
        seed: 18,
        failure: Case { label: "bufsize 4096", spec: |s| spec(s, Some(4096), glibc()) },
        mitigation: Case { label: "bufsize 1232", spec: |s| spec(s, Some(1232), glibc()) },
        measure: |r| {
            format!(
                "{:.0}% lookups ok, {} fragmented answers lost, p99 {:.0} ms",
                100.0 * r.success_rate(),
                r.net.dropped_fragments,
                r.latency_ms(0.99)
            )
        },
    }
}
