//! S1 topology: 3 nodes, 2 replicas, glibc pods with the kubelet's resolv.conf (3 cluster + 2 node
//! search domains, ndots:5) looking up www.google.com (sources.md#incident-s1).

use crate::*;

pub fn spec(seed: u64) -> ClusterSpec {
    let mut spec = cluster(seed, 3, 2, 6, 1.0, &["www.google.com"], 5);
    for g in &mut spec.pods {
        g.resolv_conf = Some(sim::client::ResolvConf::kubelet_cluster_first(
            "10.96.0.10".parse().expect("a literal IP"),
            &g.namespace,
            "cluster.local",
            &["ec2.internal", "example.internal"],
        ));
    }
    spec
}

/// The talk's final setup: an ndots:2 resolv.conf.
pub fn ndots2(seed: u64) -> ClusterSpec {
    let mut s = spec(seed);
    let rc = s.pods[0].resolv_conf.clone().unwrap_or_default().replace("ndots:5", "ndots:2");
    s.pods[0].resolv_conf = Some(rc);
    s
}

pub fn queries_per_lookup(r: &Report) -> String {
    let q: Vec<u32> = r.lookups.iter().map(|l| l.queries).collect();
    let mean = q.iter().map(|&x| f64::from(x)).sum::<f64>() / q.len().max(1) as f64;
    format!("{mean:.1} queries/lookup")
}

pub fn incident() -> Incident {
    Incident {
        id: "S1",
        slug: "ndots-amplification",
        expect: sim::file::Expect { queries_per_lookup_max: Some(3.0), ..Default::default() },
        title: "ndots:5 query amplification",
        source: "talk; sources.md#kubelet-resolv-conf",
        seed: 1,
        failure: Case { label: "kubelet default, ndots:5", spec },
        mitigation: Case { label: "ndots:2", spec: ndots2 },
        measure: queries_per_lookup,
    }
}
