//! S19: client-side caches and thread pools change what DNS trouble looks like to the application.
//!
//! Source: the `java.security` file (networkaddress.cache.ttl, .negative.ttl); Node.js CLI docs
//! (UV_THREADPOOL_SIZE, dns.lookup vs dns.resolve); Zalando's postmortem; sources.md#java-cache, sources.md#node-threadpool,
//! sources.md#incident-s19.
//! Root cause: a JVM with a security manager caches every answer for ever, so it never follows a
//! Service recreated with a new IP; Node's `dns.lookup` runs getaddrinfo on a 4-thread pool, so four
//! lookups stuck in 5 s glibc timeouts stall every other lookup (and fs, crypto) behind them.
//! Guaranteed now: the forever cache keeps returning the old IP while a 30 s cache follows the
//! change; during an upstream stall, cluster names wait seconds behind external ones in a 4-thread
//! pool and stay fast without the pool (dns.resolve, c-ares).

use std::time::Duration;

use scenarios::s19::{java, node, stale_share, web_p99_during_stall};
use scenarios::*;
use sim::spec::ClientCache;

const FILE: &str = "s19_client_caches_and_threadpools";

#[test]
fn a_jvm_with_a_security_manager_never_follows_a_new_service_ip() {
    let seed = seed(19);
    let hint = replay(FILE, "a_jvm_with_a_security_manager_never_follows_a_new_service_ip", seed);
    let forever = run(java(seed, ClientCache::JAVA_SECURITY_MANAGER)).expect("runs");
    assert_eq!(stale_share(&forever, Duration::from_secs(60)), 1.0, "{hint}");
    assert!(forever.lookups.iter().filter(|l| l.start > Duration::from_secs(5)).all(|l| l.cached), "no query after the first; {hint}");
    // 30 s: the next lookup after the entry expires asks again and gets the new IP.
    let ttl = run(java(seed, ClientCache::JAVA)).expect("runs");
    assert_eq!(stale_share(&ttl, Duration::from_secs(55)), 0.0, "{hint}");
    assert!(stale_share(&ttl, Duration::from_secs(20)) > 0.0, "stale until its 30 s run out; {hint}");
}

#[test]
fn node_s_4_thread_pool_makes_cluster_names_wait_behind_stuck_external_lookups() {
    let seed = seed(19);
    let hint = replay(FILE, "node_s_4_thread_pool_makes_cluster_names_wait_behind_stuck_external_lookups", seed);
    let pool = run(node(seed, Some(4))).expect("runs");
    let free = run(node(seed, None)).expect("runs");
    assert!(web_p99_during_stall(&pool) > 1000.0, "pool: p99 {} ms; {hint}", web_p99_during_stall(&pool));
    assert!(web_p99_during_stall(&free) < 50.0, "no pool: p99 {} ms; {hint}", web_p99_during_stall(&free));
}
