//! S6: IPVS keeps sending reused source ports to a deleted CoreDNS pod.
//!
//! Source: the talk; kubernetes#71514 (lbernail), #81775, #76664, #93297; sources.md#ipvs, sources.md#incident-s6.
//! Root cause: an IPVS UDP entry (client ip:port → VIP) lives 300 s after its last packet and pins
//! the port to one real server; a busy client reuses ports within that time. With graceful
//! termination v1 and expire_nodest_conn 0, packets on entries of the deleted pod are dropped (without
//! restarting the entry's timer, so each entry black-holes its port until 300 s after its last
//! forwarded packet); with expire_nodest_conn 1 before 5.9 one packet per entry is lost; from 5.9 the
//! entries go with the real server. `conn_reuse_mode` plays no part: it acts on TCP SYNs only.
//! Guaranteed now: failures that go on long after the delete in the 2018 setup, one-off losses with
//! expire_nodest_conn 1 on 4.19, none on 5.10, and a 30 s UDP timeout shortening the stale window.

use std::time::Duration;

use netmodel::Kernel;
use netmodel::ipvs::Config;
use scenarios::s06::{hurt_after, spec, v1};
use scenarios::*;

const FILE: &str = "s06_ipvs_port_reuse";

#[test]
fn the_2018_setup_keeps_failing_long_after_the_delete() {
    let seed = seed(6);
    let hint = replay(FILE, "the_2018_setup_keeps_failing_long_after_the_delete", seed);
    let r = run(spec(seed, Kernel::new(4, 19), v1(Kernel::new(4, 19)))).expect("runs");
    assert!(hurt_after(&r, Duration::from_secs(60)) > 10, "{}; {hint}", hurt_after(&r, Duration::from_secs(60)));
}

#[test]
fn kernel_5_9_with_expire_nodest_conn_loses_nothing_after_the_sync() {
    let seed = seed(6);
    let hint = replay(FILE, "kernel_5_9_with_expire_nodest_conn_loses_nothing_after_the_sync", seed);
    let r = run(spec(seed, Kernel::new(5, 10), Config::kube_proxy(Kernel::new(5, 10)))).expect("runs");
    assert_eq!(hurt_after(&r, Duration::from_secs(20)), 0, "{hint}");
    assert_eq!(r.net.dropped_ipvs, 0, "{hint}");
}

#[test]
fn a_30s_ipvs_udp_timeout_shortens_the_stale_window() {
    let seed = seed(6);
    let hint = replay(FILE, "a_30s_ipvs_udp_timeout_shortens_the_stale_window", seed);
    let k = Kernel::new(4, 19);
    let long = run(spec(seed, k, v1(k))).expect("runs");
    let short = run(spec(seed, k, Config { udp_timeout: Duration::from_secs(30), ..v1(k) })).expect("runs");
    let (l, s) = (hurt_after(&long, Duration::from_secs(60)), hurt_after(&short, Duration::from_secs(60)));
    assert!(s < l / 2, "30 s timeout: {s} hurt after 60 s vs {l}; {hint}");
}
