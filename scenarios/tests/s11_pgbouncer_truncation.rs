//! S11: pgbouncer built with libevent 2.1 evdns cannot resolve a name whose answer is truncated.
//!
//! Source: the talk ("DNS is broken for a single app"); pgbouncer #122, PR #232; libevent commit
//! 0f6ee89a (TCP in 2.2); sources.md#c-ares, sources.md#evdns, sources.md#incident-s11.
//! Root cause: 40 A records need more than 512 bytes; CoreDNS answers a client without EDNS with
//! TC=1; evdns 2.1 turns TC into DNS_ERR_TRUNCATED and never tries TCP, c-ares re-asks over TCP.
//! Guaranteed now: evdns 2.1 fails every lookup without a TCP packet; c-ares, glibc and libevent 2.2
//! succeed over TCP.

use scenarios::*;
use sim::client::{cares, evdns};
use sim::spec::Library;

const FILE: &str = "s11_pgbouncer_truncation";

fn outcome(test: &str, library: Library) -> (Report, String) {
    let seed = seed(11);
    (run(scenarios::s11::spec(seed, library)).expect("runs"), replay(FILE, test, seed))
}

#[test]
fn evdns_2_1_fails_without_ever_trying_tcp() {
    let (r, hint) = outcome("evdns_2_1_fails_without_ever_trying_tcp", Library::Evdns(evdns::Version::V2_1));
    assert!(!r.lookups.is_empty(), "{hint}");
    assert!(r.lookups.iter().all(|l| l.outcome == sim::report::LookupOutcome::Fail), "{hint}");
    assert_eq!(r.net.tcp_connections, 0, "no TCP on the wire; {hint}");
}

#[test]
fn c_ares_glibc_and_libevent_2_2_retry_over_tcp_and_succeed() {
    for (name, lib) in [
        ("c-ares 2020", Library::CAres(cares::Era::V2020)),
        ("c-ares current", Library::CAres(cares::Era::Current)),
        ("glibc", Library::Glibc(sim::client::glibc::Version::CURRENT)),
        ("libevent 2.2", Library::Evdns(evdns::Version::V2_2)),
    ] {
        let (r, hint) = outcome("c_ares_glibc_and_libevent_2_2_retry_over_tcp_and_succeed", lib);
        assert_eq!(r.success_rate(), 1.0, "{name}; {hint}");
        assert!(r.net.tcp_connections > 0, "{name}; {hint}");
    }
}
