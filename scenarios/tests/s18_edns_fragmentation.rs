//! S18: with an EDNS buffer above 1232 bytes, large answers come back fragmented and are lost.
//!
//! Source: DNS Flag Day 2020 (dnsflagday.net); CoreDNS `bufsize` (commit e23a34abb, default 1232);
//! sources.md#coredns-plugins, sources.md#incident-s18.
//! Root cause: a resolver advertising 4096 bytes gets a 1,950-byte UDP answer, which the 1500-byte
//! path fragments; the network drops fragments, the answer never arrives, and the query times out.
//! At 1232 the upstream answers with TC=1; CoreDNS passes the truncated answer on and the client
//! asks again over TCP (ndots asks the upstream over TCP itself); the client gets the whole answer.
//! Guaranteed now: CoreDNS with `bufsize 4096` fails the lookups; `bufsize 1232`, CoreDNS without the
//! plugin (it forwards the client's own EDNS size: none from glibc) and ndots' default answer them;
//! libraries without TCP (evdns 2.1) still fail on the truncated answer.

use scenarios::s18::{glibc, spec};
use scenarios::*;
use sim::client::evdns;
use sim::spec::Library;

const FILE: &str = "s18_edns_fragmentation";

#[test]
fn a_4096_byte_buffer_loses_the_fragmented_answers() {
    let seed = seed(18);
    let hint = replay(FILE, "a_4096_byte_buffer_loses_the_fragmented_answers", seed);
    let r = run(spec(seed, Some(4096), glibc())).expect("runs");
    assert!(r.net.dropped_fragments > 0, "{hint}");
    assert!(r.success_rate() < 0.1, "{:.0}% ok; {hint}", 100.0 * r.success_rate());
}

#[test]
fn at_1232_bytes_tc_and_tcp_deliver_the_answer() {
    let seed = seed(18);
    let hint = replay(FILE, "at_1232_bytes_tc_and_tcp_deliver_the_answer", seed);
    for (label, s) in [
        ("CoreDNS, bufsize 1232", spec(seed, Some(1232), glibc())),
        ("CoreDNS without bufsize", spec(seed, None, glibc())),
        ("ndots' default", on_ndots(spec(seed, None, glibc()))),
    ] {
        let r = run(s).expect("runs");
        assert_eq!(r.net.dropped_fragments, 0, "{label}; {hint}");
        assert_eq!(r.success_rate(), 1.0, "{label}; {hint}");
        assert!(r.net.tcp_connections > 0, "{label}; {hint}");
    }
    let evdns = run(spec(seed, Some(1232), Library::Evdns(evdns::Version::V2_1))).expect("runs");
    assert_eq!(evdns.success_rate(), 0.0, "evdns 2.1 has no TCP; {hint}");
}
