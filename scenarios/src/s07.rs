//! S7 topology: IPVS mode (2018 settings), CoreDNS managed by the cluster-proportional-autoscaler
//! with the addon's 16 nodes per replica; the cluster shrinks from 64 to 16 nodes at 10 s, so the
//! autoscaler goes from 4 replicas to 2 at its next poll (sources.md#dns-autoscaler, sources.md#incident-s7).

use std::time::Duration;

use netmodel::Kernel;
use netmodel::ipvs::Config;
use sim::spec::{Autoscaler, ProxyMode};

use crate::*;

pub fn spec(seed: u64, kernel: Kernel, ipvs: Config) -> ClusterSpec {
    let mut spec = cluster(seed, 3, 4, 2, 200.0, &["web.default.svc.cluster.local."], 120);
    spec.kernel = kernel;
    spec.proxy = ProxyMode::Ipvs(ipvs);
    spec.autoscaler = Some(Autoscaler::addon(64));
    spec.faults = vec![(Duration::from_secs(10), Fault::ClusterNodes(16))];
    spec
}

pub fn incident() -> Incident {
    Incident {
        id: "S7",
        slug: "autoscaler-scale-down",
        expect: sim::file::Expect { p99_ms_max: Some(1000.0), ..Default::default() },
        title: "the proportional autoscaler scales CoreDNS down",
        source: "talk; sources.md#dns-autoscaler",
        seed: 7,
        failure: Case { label: "64→16 nodes, IPVS 2018", spec: |s| spec(s, Kernel::new(4, 19), crate::s06::v1(Kernel::new(4, 19))) },
        mitigation: Case {
            label: "kernel 5.10, expire_nodest_conn 1",
            spec: |s| spec(s, Kernel::new(5, 10), Config::kube_proxy(Kernel::new(5, 10))),
        },
        measure: |r| {
            format!(
                "{} lookups hurt after 60 s, replicas {}",
                crate::s06::hurt_after(r, Duration::from_secs(60)),
                r.series.last().map_or(0, |s| s.replicas)
            )
        },
    }
}
