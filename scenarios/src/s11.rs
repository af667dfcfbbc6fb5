//! S11 topology: pgbouncer pods resolve their database's name, whose 40 A records do not fit a
//! 512-byte UDP answer (sources.md#incident-s11, sources.md#c-ares, sources.md#evdns).

use sim::spec::Library;

use crate::*;

pub fn spec(seed: u64, library: Library) -> ClusterSpec {
    let mut spec = cluster(seed, 3, 2, 10, 0.5, &["db.example.com"], 20);
    spec.pods[0].library = library;
    let mut zone = spec.upstream_zone.clone();
    for i in 0..40 {
        zone.push_str(&format!("db.example.com. 300 IN A 10.20.0.{}\n", i + 1));
    }
    spec.upstream_zone = zone;
    spec
}

pub fn incident() -> Incident {
    use sim::client::{cares, evdns};
    Incident {
        id: "S11",
        slug: "pgbouncer-truncation",
        expect: sim::file::Expect { success_rate_min: Some(0.99), ..Default::default() },
        title: "pgbouncer: evdns gives up on TC=1",
        source: "talk (DNS is broken for a single app); sources.md#evdns",
        seed: 11,
        failure: Case { label: "pgbouncer + libevent 2.1 evdns", spec: |s| spec(s, Library::Evdns(evdns::Version::V2_1)) },
        mitigation: Case { label: "pgbouncer + c-ares", spec: |s| spec(s, Library::CAres(cares::Era::V2020)) },
        measure: |r| format!("{:.0}% lookups ok, {} TCP connections", 100.0 * r.success_rate(), r.net.tcp_connections),
    }
}
