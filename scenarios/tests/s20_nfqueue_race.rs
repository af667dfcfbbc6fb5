//! S20: a network-policy agent that NFQUEUEs new flows brings the conntrack race back on a kernel
//! that had fixed it.
//!
//! Source: netfilter bugzilla 1766; the fix 8af79d3edb5f "netfilter: nfnetlink_queue: remove old
//! clash resolution logic" (2024); kubernetes-sigs/kube-network-policies PR #95; sources.md#conntrack-race,
//! sources.md#incident-s20.
//! Root cause: packets reinjected from the queue went through nfnetlink_queue's own, older clash
//! handling, which drops the loser of an insertion race, so glibc's A/AAAA pair from one socket
//! loses a packet and waits out its 5 s timeout as it did before 4.19.
//! Guaranteed now: on 5.15 the race drops only with the agent queueing (a queued pair races
//! `race.p_nfqueue` of the time, measured by `cargo xtask kernel-check`); without it, or on 6.12 with
//! it, nothing drops; `single-request-reopen` avoids it with the agent, and Go's native resolver (a
//! socket per query) never races.

use netmodel::Kernel;
use scenarios::*;
use sim::spec::Library;

const FILE: &str = "s20_nfqueue_race";

#[test]
fn an_nfqueue_agent_brings_back_the_5s_lookups_on_a_fixed_kernel() {
    let seed = seed(20);
    let hint = replay(FILE, "an_nfqueue_agent_brings_back_the_5s_lookups_on_a_fixed_kernel", seed);
    let k5_15 = Kernel::new(5, 15);
    let queued = run(scenarios::s20::spec(seed, k5_15, true, "")).expect("runs");
    let drops = queued.net.dropped_race;
    assert!(drops >= 5, "{drops} drops; {hint}");
    assert_eq!(scenarios::s02::stalled_or_waiting(&queued) as u64, drops, "one 5 s lookup per drop; {hint}");
    assert_eq!(queued.success_rate(), 1.0, "{hint}");
    for (kernel, agent) in [(k5_15, false), (Kernel::new(6, 12), true)] {
        let fixed = run(scenarios::s20::spec(seed, kernel, agent, "")).expect("runs");
        assert_eq!(fixed.net.dropped_race, 0, "kernel {kernel}, agent {agent}; {hint}");
        assert!(fixed.latency_ms(1.0) < 50.0, "kernel {kernel}, agent {agent}: max {} ms; {hint}", fixed.latency_ms(1.0));
    }
}

#[test]
fn single_request_reopen_and_go_native_avoid_it_with_the_agent() {
    let seed = seed(20);
    let hint = replay(FILE, "single_request_reopen_and_go_native_avoid_it_with_the_agent", seed);
    let reopen = run(scenarios::s20::spec(seed, Kernel::new(5, 15), true, "single-request-reopen")).expect("runs");
    assert_eq!(reopen.net.dropped_race, 0, "{hint}");
    let mut go = scenarios::s02::with_library(seed, Kernel::new(5, 15), 2, "", Library::Go);
    go.nfqueue = true;
    let go = run(go).expect("runs");
    assert_eq!(go.net.dropped_race, 0, "a socket per query: no two packets of one flow; {hint}");
}
