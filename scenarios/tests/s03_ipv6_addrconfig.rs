//! S3: disabling IPv6 on pods does not stop AAAA queries for every client.
//!
//! Source: the talk ("Let's disable IPv6!", "What triggers IPv6?", "CGO implementation");
//! sources.md#glibc (check_pf.c), sources.md#musl, sources.md#go-native, sources.md#go-cgo, sources.md#incident-s3.
//! Root cause: only getaddrinfo with AI_ADDRCONFIG narrows to A when the pod has no IPv6, and glibc
//! counts a link-local fe80:: address as IPv6, musl even ::1 alone (IPv6 enabled in the kernel). Go's cgo path passes AI_CANONNAME|AI_V4MAPPED|AI_ALL
//! (no AI_ADDRCONFIG); Go's native resolver asks both for network "ip"/"tcp".
//! Guaranteed now: each library's queries per lookup, with and without the mitigations
//! (AI_ADDRCONFIG, glibc 2.36 `no-aaaa`, Go `tcp4`).

use std::net::IpAddr;

use scenarios::*;
use sim::client::Family;
use sim::client::glibc::Version as Glibc;
use sim::spec::Library;

const FILE: &str = "s03_ipv6_addrconfig";

/// Queries per lookup of www.google.com (4 search domains + the name: 5 names).
fn per_lookup(test: &str, library: Library, hints: Hints, extra: Vec<IpAddr>) -> u32 {
    let seed = seed(3);
    let r = run(scenarios::s03::spec(seed, library, hints, extra)).expect("runs");
    let hint = replay(FILE, test, seed);
    assert_eq!(r.success_rate(), 1.0, "{hint}");
    let q: Vec<u32> = r.lookups.iter().map(|l| l.queries).collect();
    assert!(!q.is_empty() && q.iter().all(|&x| x == q[0]), "{q:?}; {hint}");
    q[0]
}

#[test]
fn glibc_ai_addrconfig_asks_a_only_on_a_pod_without_ipv6() {
    let t = "glibc_ai_addrconfig_asks_a_only_on_a_pod_without_ipv6";
    assert_eq!(per_lookup(t, Library::Glibc(Glibc::CURRENT), Hints::NULL, vec![]), 10);
    assert_eq!(per_lookup(t, Library::Glibc(Glibc::CURRENT), Hints::addrconfig(), vec![]), 5);
}

#[test]
fn a_link_local_address_counts_as_ipv6_for_glibc_and_loopback_alone_for_musl() {
    let t = "a_link_local_address_counts_as_ipv6_for_glibc_and_loopback_alone_for_musl";
    let musl = Library::Musl(sim::client::musl::Version::CURRENT);
    let fe80: Vec<IpAddr> = vec!["::1".parse().expect("ip"), "fe80::1".parse().expect("ip")];
    let lo6: Vec<IpAddr> = vec!["::1".parse().expect("ip")];
    // glibc (check_pf.c): any IPv6 address but ::1 counts, a link-local one included.
    assert_eq!(per_lookup(t, Library::Glibc(Glibc::CURRENT), Hints::addrconfig(), fe80.clone()), 10);
    assert_eq!(per_lookup(t, Library::Glibc(Glibc::CURRENT), Hints::addrconfig(), lo6.clone()), 5);
    // musl (lookup_name.c): IPv6 counts when a socket can connect to ::1, so only a pod with IPv6
    // disabled in its kernel asks A alone (both seen on the wire by `cargo xtask client-check`).
    assert_eq!(per_lookup(t, musl, Hints::addrconfig(), fe80), 10);
    assert_eq!(per_lookup(t, musl, Hints::addrconfig(), lo6), 10);
    assert_eq!(per_lookup(t, musl, Hints::addrconfig(), vec![]), 5);
}

#[test]
fn go_cgo_and_go_native_ask_aaaa_anyway() {
    let t = "go_cgo_and_go_native_ask_aaaa_anyway";
    assert_eq!(per_lookup(t, Library::GoCgo(Glibc::CURRENT), Hints::addrconfig(), vec![]), 10, "cgo replaces the hints with its own");
    assert_eq!(per_lookup(t, Library::Go, Hints::NULL, vec![]), 10);
    assert_eq!(per_lookup(t, Library::Go, Hints { family: Family::Inet, ..Hints::NULL }, vec![]), 5, "net.Dial(tcp4)");
}

#[test]
fn glibc_2_36_no_aaaa_asks_a_only_whatever_the_hints() {
    let seed = seed(3);
    let mut spec = scenarios::s03::spec(seed, Library::Glibc(Glibc(2, 36)), Hints::NULL, vec![]);
    spec.pods[0].resolv_conf = Some(
        sim::client::ResolvConf::kubelet_cluster_first("10.96.0.10".parse().expect("ip"), "default", "cluster.local", &["ec2.internal"])
            .replace("ndots:5", "ndots:5 no-aaaa"),
    );
    let r = run(spec).expect("runs");
    assert!(r.lookups.iter().all(|l| l.queries == 5), "{}", replay(FILE, "glibc_2_36_no_aaaa_asks_a_only_whatever_the_hints", seed));
}
