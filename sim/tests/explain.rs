//! Explain: every slow or failed lookup carries what the simulator saw go wrong with it, and
//! `ndots-sim explain` tells it from a run's JSON.

use std::process::Command;
use std::time::Duration;

use sim::explain::{Cause, Drop, SLOW, explained, primary};
use sim::spec::Fault;
use sim::{ClusterSpec, run, seed_or};

fn replay(test: &str, seed: u64) -> String {
    format!("replay: SIM_SEED={seed} cargo test -p sim --test explain {test}")
}

#[test]
fn a_lookup_stalled_by_the_conntrack_race_says_so_and_quick_ones_carry_nothing() {
    let seed = seed_or(2);
    let hint = replay("a_lookup_stalled_by_the_conntrack_race_says_so_and_quick_ones_carry_nothing", seed);
    let mut spec = ClusterSpec::smoke(seed);
    spec.kernel = "4.15".parse().expect("kernel");
    spec.duration = Duration::from_secs(20);
    spec.pods[0].names = vec![("web".into(), 1)];
    let r = run(spec).expect("runs");
    let stalled: Vec<_> = r.lookups.iter().filter(|l| l.latency() >= Duration::from_secs(5)).collect();
    assert!(!stalled.is_empty(), "kernel 4.15 races; {hint}");
    assert_eq!(r.net.dropped_race as usize, stalled.len() + r.unfinished.len(), "one drop per stalled lookup; {hint}");
    for l in &stalled {
        assert_eq!(primary(&l.causes), Some(Cause::Packet(Drop::Race)), "{:?}; {hint}", l.causes);
        assert!(l.causes[0].0 >= l.start && l.causes[0].0 < l.start + Duration::from_millis(10), "charged when it happened");
    }
    assert!(r.lookups.iter().filter(|l| l.ok && l.latency() < SLOW).all(|l| l.causes.is_empty()), "{hint}");
}

#[test]
fn a_killed_replica_a_blackholed_upstream_and_the_end_of_the_run_are_named() {
    let seed = seed_or(7);
    let hint = replay("a_killed_replica_a_blackholed_upstream_and_the_end_of_the_run_are_named", seed);
    let mut spec = ClusterSpec::smoke(seed);
    spec.duration = Duration::from_secs(12);
    spec.pods[0].count = 12;
    spec.pods[0].rate = 2.0;
    spec.pods[0].names = vec![("web".into(), 1), ("item-{n}.example.com".into(), 1)];
    spec.faults = vec![(Duration::from_secs(3), Fault::KillReplica(0)), (Duration::from_secs(6), Fault::UpstreamBlackhole(0))];
    for az in 1..spec.azs {
        spec.faults.push((Duration::from_secs(6), Fault::UpstreamBlackhole(az)));
    }
    let r = run(spec.clone()).expect("runs");
    let firsts: Vec<Cause> = explained(&r).filter_map(|l| primary(&l.causes)).collect();
    assert!(firsts.contains(&Cause::Packet(Drop::Dead)), "queries to the deleted replica: {firsts:?}; {hint}");
    assert!(
        explained(&r).any(|l| l.causes.iter().any(|(_, c)| matches!(c, Cause::Upstream(Drop::Blackhole) | Cause::Answer(2)))),
        "lookups of a new external name while every cloud resolver is silent: {firsts:?}; {hint}"
    );
    assert!(!r.stuck.is_empty(), "the run ends during the black hole; {hint}");
    assert!(r.stuck.iter().all(|l| l.causes.last().map(|c| c.1) == Some(Cause::Stuck)), "{hint}");
    // The summary counts each explained lookup once, with the fault it came after.
    let top = sim::explain::top_causes(&r, &spec);
    assert_eq!(top.iter().map(|t| t.0).sum::<usize>(), explained(&r).count());
    assert!(top.iter().any(|t| t.1.contains("after fault 0 (kill_replica: 0 at 3 s)")), "{top:?}");
}

#[test]
fn explain_reads_a_run_s_json_and_tells_one_lookup_s_story() {
    let d = std::env::temp_dir().join(format!("ndots-explain-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("tmp");
    let f = d.join("race.yaml");
    std::fs::write(
        &f,
        "version: 1\nseed: 2\nduration: 10s\ntrace_queries: true\ncluster: {kernel: \"4.15\"}\npods:\n  - count: 30\n    names: {web: 1}\n",
    )
    .expect("write");
    let bin = env!("CARGO_BIN_EXE_ndots-sim");
    let out = Command::new(bin).args(["run", f.to_str().expect("utf-8"), "--json"]).output().expect("runs");
    let json = d.join("run.json");
    std::fs::write(&json, &out.stdout).expect("write");
    let j = json.to_str().expect("utf-8");
    let o = Command::new(bin).args(["explain", j]).output().expect("runs");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("its query was lost in the conntrack insertion race") && text.contains("the slowest"), "{text}");
    assert!(text.contains("replay: ndots-sim run"), "{text}");
    let o = Command::new(bin).args(["explain", j, "--lookup", "0"]).output().expect("runs");
    let story = String::from_utf8_lossy(&o.stdout);
    assert!(story.contains("lookup 0: `web`"), "{story}");
    // The traced queries and the drop, in time order: the first A and AAAA, the loss, the retry.
    let lines: Vec<&str> = story.lines().filter(|l| l.trim_start().chars().next().is_some_and(|c| c.is_ascii_digit())).collect();
    assert!(
        lines.len() >= 4 && lines[0].contains("query A web.default.svc.cluster.local.") && lines.iter().any(|l| l.contains("<- its query")),
        "{story}"
    );
    let o = Command::new(bin).args(["explain", j, "--lookup", "99999"]).output().expect("runs");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no explained lookup 99999"));
    let _ = std::fs::remove_dir_all(&d);
}
