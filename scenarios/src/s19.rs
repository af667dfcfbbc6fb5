//! S19 topologies (sources.md#incident-s19, sources.md#java-cache, sources.md#node-threadpool):
//! - Java: pods with the JVM's InetAddress cache look up the `web` Service twice a second; the Service
//!   is recreated with a new ClusterIP at 20 s.
//! - Node.js: pods whose `dns.lookup` runs on libuv's 4-thread pool look up a cluster name and
//!   external names; the cloud resolver stalls from 10 s to 30 s.

use std::net::IpAddr;
use std::time::Duration;

use sim::spec::ClientCache;

use crate::*;

/// `web.default`'s ClusterIP in the simulated cluster before and after the change.
pub const OLD_IP: &str = "10.96.10.10";
pub const NEW_IP: &str = "10.96.99.99";

pub fn java(seed: u64, cache: ClientCache) -> ClusterSpec {
    let mut spec = cluster(seed, 3, 2, 10, 2.0, &["web"], 70);
    spec.pods[0].client_cache = Some(cache);
    spec.faults = vec![(
        Duration::from_secs(20),
        Fault::ServiceIp { namespace: "default".into(), name: "web".into(), ip: NEW_IP.parse().expect("a literal IP") },
    )];
    spec
}

/// Share of lookups started after `from` that returned the old IP.
pub fn stale_share(r: &Report, from: Duration) -> f64 {
    let old: IpAddr = OLD_IP.parse().expect("a literal IP");
    let after: Vec<_> = r.lookups.iter().filter(|l| l.start >= from).collect();
    after.iter().filter(|l| l.addr == Some(old)).count() as f64 / after.len().max(1) as f64
}

pub fn node(seed: u64, threadpool: Option<usize>) -> ClusterSpec {
    let mut spec = cluster(seed, 3, 2, 10, 4.0, &["web", "api-{n}.example.com"], 40);
    spec.azs = 1;
    spec.pods[0].threadpool = threadpool;
    spec.faults = vec![(Duration::from_secs(10), Fault::UpstreamBlackhole(0)), (Duration::from_secs(30), Fault::UpstreamRepair(0))];
    spec
}

/// p99 latency (ms) of cluster-name lookups asked during the stall.
pub fn web_p99_during_stall(r: &Report) -> f64 {
    let lat =
        lookups(r, "web").filter(|l| (Duration::from_secs(12)..Duration::from_secs(28)).contains(&l.start)).map(|l| l.latency()).collect();
    sim::report::quantile_ms(lat, 0.99)
}

pub fn incident() -> Incident {
    Incident {
        id: "S19",
        slug: "client-caches-and-threadpools",
        expect: sim::file::Expect::default(),
        title: "client caches: a JVM that never forgets",
        source: "java.security networkaddress.cache.ttl; sources.md#java-cache",
        seed: 19,
        failure: Case { label: "JVM with a security manager (cache forever)", spec: |s| java(s, ClientCache::JAVA_SECURITY_MANAGER) },
        mitigation: Case { label: "networkaddress.cache.ttl=30", spec: |s| java(s, ClientCache::JAVA) },
        measure: |r| format!("{:.0}% of lookups after 60 s return the old IP", 100.0 * stale_share(r, Duration::from_secs(60))),
    }
}
