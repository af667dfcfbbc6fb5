//! S5 topology: 3 nodes, kernel 4.15 (racy), 30 glibc pods, node-local-dns on every node
//! (sources.md#incident-s5, sources.md#node-local-dns).

use netmodel::Kernel;
use sim::spec::NodeLocal;

use crate::*;

pub fn spec(seed: u64, node_local: bool, names: &[&str]) -> ClusterSpec {
    let mut spec = cluster(seed, 3, 2, 30, 1.0, names, 20);
    spec.kernel = Kernel::new(4, 15);
    spec.node_local = node_local.then(NodeLocal::template);
    spec
}

pub fn incident() -> Incident {
    Incident {
        id: "S5",
        slug: "node-local-dns",
        expect: sim::file::Expect { conntrack_drops_max: Some(0), p99_ms_max: Some(100.0), ..Default::default() },
        title: "node-local-dns removes the race (and hides pods)",
        source: "talk; sources.md#node-local-dns",
        seed: 5,
        failure: Case { label: "kube-dns VIP, kernel 4.15", spec: |s| spec(s, false, &["web"]) },
        mitigation: Case { label: "node-local-dns", spec: |s| spec(s, true, &["web"]) },
        measure: |r| {
            let ct = r.series.last().map_or(0, |s| s.conntrack.iter().sum::<usize>());
            format!("{} race drops, p99 {:.0} ms, {ct} conntrack entries", r.net.dropped_race, r.latency_ms(0.99))
        },
    }
}
