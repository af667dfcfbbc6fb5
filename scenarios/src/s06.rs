//! S6 topology: IPVS mode, 3 CoreDNS replicas, 2 busy glibc clients (200 lookups/s each, a new
//! source port per lookup, so ports come round again within IPVS's 300 s); a replica is deleted at
//! 10 s (sources.md#ipvs, sources.md#incident-s6).

use std::time::Duration;

use netmodel::Kernel;
use netmodel::ipvs::{Config, Graceful};
use sim::spec::ProxyMode;

use crate::*;

pub fn spec(seed: u64, kernel: Kernel, ipvs: Config) -> ClusterSpec {
    let mut spec = cluster(seed, 3, 3, 2, 200.0, &["web.default.svc.cluster.local."], 120);
    spec.kernel = kernel;
    spec.proxy = ProxyMode::Ipvs(ipvs);
    spec.faults = vec![(Duration::from_secs(10), Fault::KillReplica(0))];
    spec
}

/// The 2018 setup: graceful termination v1, the kernel's expire_nodest_conn 0.
pub fn v1(k: Kernel) -> Config {
    Config { expire_nodest_conn: false, conn_reuse_mode: 1, graceful: Graceful::V1, ..Config::kube_proxy(k) }
}

/// Lookups that failed or took 5 s or more, started after `from`.
pub fn hurt_after(r: &Report, from: Duration) -> usize {
    r.lookups.iter().filter(|l| l.start >= from && (!l.ok || l.latency() >= Duration::from_secs(5))).count()
}

pub fn incident() -> Incident {
    Incident {
        id: "S6",
        slug: "ipvs-port-reuse",
        expect: sim::file::Expect { p99_ms_max: Some(1000.0), ..Default::default() },
        title: "IPVS source-port reuse during a CoreDNS rollout",
        source: "kubernetes#71514, #81775, #76664; sources.md#ipvs",
        seed: 6,
        failure: Case {
            label: "graceful v1, expire_nodest_conn 0, kernel 4.19",
            spec: |s| spec(s, Kernel::new(4, 19), v1(Kernel::new(4, 19))),
        },
        mitigation: Case {
            label: "kernel 5.10, expire_nodest_conn 1",
            spec: |s| spec(s, Kernel::new(5, 10), Config::kube_proxy(Kernel::new(5, 10))),
        },
        measure: |r| {
            format!(
                "{} lookups hurt after 60 s, {} IPVS drops",
                hurt_after(r, Duration::from_secs(60)),
                r.net.dropped_ipvs + r.net.dropped_dead
            )
        },
    }
}
