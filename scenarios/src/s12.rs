//! S12 topology: 3 AZs with a node and a CoreDNS replica each; 30 glibc pods look up cluster and
//! external names and send application requests over TCP to pods on random nodes; all traffic into
//! and out of AZ a loses 10% of its packets from 10 s to 40 s (sources.md#incident-s12).

use std::time::Duration;

use sim::spec::NodeLocal;

use crate::*;

pub fn spec(seed: u64, node_local: bool) -> ClusterSpec {
    let mut spec = cluster(seed, 3, 3, 30, 2.0, &["web", "www.google.com"], 50);
    spec.azs = 3;
    spec.pods[0].app_rate = 10.0;
    spec.node_local = node_local.then(NodeLocal::template);
    spec.faults =
        vec![(Duration::from_secs(10), Fault::AzLoss { az: 0, loss: 0.1 }), (Duration::from_secs(40), Fault::AzLoss { az: 0, loss: 0.0 })];
    spec
}

fn during(t: Duration) -> bool {
    (Duration::from_secs(12)..Duration::from_secs(38)).contains(&t)
}

/// Share of lookups asked during the loss that failed or took 5 s or more.
pub fn dns_hurt(r: &Report) -> f64 {
    let l: Vec<_> = r.lookups.iter().filter(|l| during(l.start)).collect();
    l.iter().filter(|l| !l.ok || l.latency() >= Duration::from_secs(5)).count() as f64 / l.len().max(1) as f64
}

/// Share of application requests during the loss that failed or took 5 s or more.
pub fn app_hurt(r: &Report) -> f64 {
    let a: Vec<_> = r.app.iter().filter(|a| during(a.start)).collect();
    a.iter().filter(|a| !a.completed || a.latency >= Duration::from_secs(5)).count() as f64 / a.len().max(1) as f64
}

pub fn app_p99_ms(r: &Report) -> f64 {
    sim::report::quantile_ms(r.app.iter().filter(|a| during(a.start)).map(|a| a.latency).collect(), 0.99)
}

pub fn incident() -> Incident {
    Incident {
        id: "S12",
        slug: "az-loss-looks-like-dns",
        expect: sim::file::Expect { p99_ms_max: Some(1000.0), ..Default::default() },
        title: "AZ packet loss that looked like DNS",
        source: "talk (Sometimes it's not DNS); sources.md#incident-s12",
        seed: 12,
        failure: Case { label: "10% loss in AZ a", spec: |s| spec(s, false) },
        mitigation: Case { label: "node-local-dns (TCP to CoreDNS)", spec: |s| spec(s, true) },
        measure: |r| {
            format!(
                "{:.1}% DNS lookups hurt vs {:.1}% app requests (app p99 {:.0} ms)",
                100.0 * dns_hurt(r),
                100.0 * app_hurt(r),
                app_p99_ms(r)
            )
        },
    }
}
