//! S3 topology: pods without IPv6 look up www.google.com with each library and hints
//! (sources.md#incident-s3: "Let's disable IPv6!").

use std::net::IpAddr;

use sim::spec::Library;

use crate::*;

pub fn spec(seed: u64, library: Library, hints: Hints, extra_addrs: Vec<IpAddr>) -> ClusterSpec {
    let mut spec = cluster(seed, 3, 2, 6, 1.0, &["www.google.com"], 5);
    spec.pods[0].library = library;
    spec.pods[0].hints = hints;
    spec.pods[0].extra_addrs = extra_addrs;
    spec
}

/// Mean AAAA queries per lookup.
pub fn aaaa_share(r: &Report) -> String {
    format!("{:.1} queries/lookup", r.queries() as f64 / r.lookups.len().max(1) as f64)
}

pub fn incident() -> Incident {
    Incident {
        id: "S3",
        slug: "ipv6-addrconfig",
        expect: sim::file::Expect { queries_per_lookup_max: Some(6.0), ..Default::default() },
        title: "disabling IPv6 does not stop AAAA",
        source: "talk; sources.md#glibc, sources.md#go-cgo",
        seed: 3,
        failure: Case {
            label: "Go cgo, no IPv6",
            spec: |s| spec(s, Library::GoCgo(sim::client::glibc::Version::CURRENT), Hints::NULL, vec![]),
        },
        mitigation: Case {
            label: "glibc AI_ADDRCONFIG",
            spec: |s| spec(s, Library::Glibc(sim::client::glibc::Version::CURRENT), Hints::addrconfig(), vec![]),
        },
        measure: aaaa_share,
    }
}
