//! S8 topology: 2 nodes with a CoreDNS replica each (2 ENIs), 60 glibc pods looking up external
//! names; the AWS resolver allows 1024 packets/s per ENI (sources.md#incident-s8, sources.md#cloud-resolver-limits).
//! The replicas behave as CoreDNS (`ServerProfile::CoreDns`): every query a pod sends that misses the
//! cache is its own upstream query, as CoreDNS's `forward` has no merging of identical questions.

use crate::*;

/// Popular names: what a cache absorbs.
pub const HOT: &[&str] = &["www.google.com", "api.github.com", "aws.example.com", "s3.example.com"];
/// A new name every lookup (`{n}`): what neither a cache nor coalescing absorbs.
pub const DISTINCT: &[&str] = &["api-{n}.example.com"];

/// `lookups_per_sec` of `names` across the cluster, for 10 s; `edit` changes the kubeadm Corefile.
pub fn spec(seed: u64, lookups_per_sec: f64, names: &[&str], edit: fn(&str) -> String) -> ClusterSpec {
    let mut spec = cluster(seed, 2, 2, 60, lookups_per_sec / 60.0, names, 10);
    spec.azs = 1;
    spec.corefile = edit(&spec.corefile);
    spec.server = sim::spec::ServerProfile::CoreDns(None);
    spec
}

pub fn without_cache(c: &str) -> String {
    let start = c.find("    cache 30 {").unwrap_or(c.len());
    let end = c[start..].find("    }\n").map_or(start, |e| start + e + 6);
    format!("{}{}", &c[..start], &c[end..])
}

pub fn force_tcp(c: &str) -> String {
    without_cache(c).replace("       max_concurrent 1000\n", "       max_concurrent 1000\n       force_tcp\n")
}

pub fn kept(c: &str) -> String {
    c.to_string()
}

/// Upstream packets per second per ENI over the run, and the share dropped.
pub fn pps(r: &Report) -> (f64, f64) {
    let secs = r.duration.as_secs_f64();
    let per_eni = r.net.upstream_packets as f64 / secs / 2.0;
    (per_eni, r.net.dropped_eni as f64 / r.net.upstream_packets.max(1) as f64)
}

pub fn incident() -> Incident {
    Incident {
        id: "S8",
        slug: "eni-packet-limit",
        expect: sim::file::Expect { eni_drops_max: Some(0), ..Default::default() },
        title: "AWS 1024 packets/s per ENI: the Corefile that lost `cache`",
        source: "talk (Staging fright on AWS); sources.md#cloud-resolver-limits",
        seed: 8,
        failure: Case { label: "no cache", spec: |s| spec(s, 2400.0, HOT, without_cache) },
        mitigation: Case { label: "cache 30", spec: |s| spec(s, 2400.0, HOT, kept) },
        measure: |r| {
            let (pps, dropped) = pps(r);
            format!("{pps:.0} pkt/s per ENI, {:.1}% dropped, p99 {:.0} ms", 100.0 * dropped, r.latency_ms(0.99))
        },
    }
}
