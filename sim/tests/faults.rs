//! Faults whose effect the simulator must show as a real cluster would: a node that dies without a
//! word, and a cloud resolver that turns slow.

use std::time::Duration;

use sim::spec::Fault;
use sim::{ClusterSpec, run, seed_or};

fn replay(test: &str, seed: u64) -> String {
    format!("replay: SIM_SEED={seed} cargo test -p sim --test faults {test}")
}

#[test]
fn a_dead_node_strands_queries_on_its_replica_until_the_control_plane_notices() {
    let seed = seed_or(3);
    let hint = replay("a_dead_node_strands_queries_on_its_replica_until_the_control_plane_notices", seed);
    let mut spec = ClusterSpec::smoke(seed);
    spec.coredns_replicas = 3; // one per node
    spec.duration = Duration::from_secs(60);
    spec.pods[0].names = vec![("web".into(), 1)];
    spec.faults = vec![(Duration::from_secs(5), Fault::NodeDown(0))];
    let r = run(spec).expect("runs");
    let secs = |l: &sim::report::LookupRecord| l.start.as_secs_f64();
    // Pods on node 0 (every third pod) ask nothing more once it is down.
    assert!(r.lookups.iter().filter(|l| l.pod % 3 == 0).all(|l| secs(l) < 5.0), "{hint}");
    // Between the failure and the node controller's 40 s grace, a third of the DNAT choices land on the
    // dead replica: glibc waits out its 5 s timeout and asks again (sources.md#glibc).
    let stalled = r.lookups.iter().filter(|l| (6.0..40.0).contains(&secs(l)) && l.latency() >= Duration::from_secs(5)).count();
    let during = r.lookups.iter().filter(|l| (6.0..40.0).contains(&secs(l))).count();
    assert!(stalled * 10 > during, "{stalled} of {during} lookups stalled; {hint}");
    // After NotReady (45 s) and kube-proxy's sync, nothing stalls any more.
    assert!(r.lookups.iter().filter(|l| secs(l) >= 47.0).all(|l| l.latency() < Duration::from_millis(100)), "{hint}");
    assert!(r.events.iter().any(|(t, e)| *t == Duration::from_secs(45) && e.contains("NotReady")), "{:?}", r.events);
}

#[test]
fn a_slow_cloud_resolver_slows_exactly_the_cache_misses() {
    let seed = seed_or(4);
    let hint = replay("a_slow_cloud_resolver_slows_exactly_the_cache_misses", seed);
    let mut spec = ClusterSpec::smoke(seed);
    spec.azs = 1;
    spec.pods[0].names = vec![("x{n}.example.com.".into(), 1), ("web".into(), 1)];
    spec.faults = vec![(Duration::from_secs(3), Fault::UpstreamSlow { az: 0, delay: Duration::from_millis(300) })];
    let r = run(spec).expect("runs");
    let misses: Vec<_> = r.lookups.iter().filter(|l| l.name.starts_with('x') && l.start >= Duration::from_secs(3)).collect();
    assert!(!misses.is_empty());
    assert!(misses.iter().all(|l| l.ok && l.latency() >= Duration::from_millis(300)), "{hint}");
    let before: Vec<_> = r.lookups.iter().filter(|l| l.name.starts_with('x') && l.end < Duration::from_secs(3)).collect();
    assert!(before.iter().all(|l| l.latency() < Duration::from_millis(50)), "{hint}");
    assert!(
        r.lookups.iter().filter(|l| l.name == "web").all(|l| l.latency() < Duration::from_millis(50)),
        "cluster names never wait: {hint}"
    );
}

#[test]
fn bursty_loss_hurts_lookups_in_clusters_where_iid_loss_spreads_them() {
    let seed = seed_or(5);
    let hint = replay("bursty_loss_hurts_lookups_in_clusters_where_iid_loss_spreads_them", seed);
    let base = {
        let mut s = ClusterSpec::smoke(seed);
        s.duration = Duration::from_secs(60);
        s.pods[0].rate = 5.0;
        s.pods[0].names = vec![("web".into(), 1)];
        s
    };
    let run_with = |f: Fault| {
        let mut s = base.clone();
        s.faults = vec![(Duration::ZERO, f)];
        run(s).expect("runs")
    };
    let iid = run_with(Fault::AzLoss { az: 1, loss: 0.05 });
    let burst = run_with(Fault::AzBurstLoss { az: 1, loss: 0.05, burst: Duration::from_millis(500) });
    // A lookup that lost a packet waits out glibc's timeout; count the seconds in which one started.
    let hurt_seconds = |r: &sim::Report| {
        let mut s: Vec<u64> = r.lookups.iter().filter(|l| l.latency() >= Duration::from_secs(1)).map(|l| l.start.as_secs()).collect();
        s.sort_unstable();
        s.dedup();
        (r.lookups.iter().filter(|l| l.latency() >= Duration::from_secs(1)).count(), s.len())
    };
    let (iid_hurt, iid_secs) = hurt_seconds(&iid);
    let (burst_hurt, burst_secs) = hurt_seconds(&burst);
    println!("iid: {iid_hurt} lookups hurt in {iid_secs} s; bursts: {burst_hurt} in {burst_secs} s");
    assert!(iid_secs >= 25, "i.i.d. loss hurts lookups all through the run: {iid_secs} s; {hint}");
    assert!(burst_secs <= 20 && burst_hurt > 0, "bursts hurt lookups in a few clusters: {burst_secs} s; {hint}");
}

#[test]
fn a_graceful_rolling_update_replaces_every_replica_without_losing_a_lookup() {
    let seed = seed_or(6);
    let hint = replay("a_graceful_rolling_update_replaces_every_replica_without_losing_a_lookup", seed);
    let mut spec = ClusterSpec::smoke(seed);
    spec.coredns_replicas = 3;
    spec.duration = Duration::from_secs(40);
    spec.pods[0].names = vec![("web".into(), 2), ("www.google.com".into(), 1)];
    spec.faults = vec![(Duration::from_secs(5), Fault::RollReplicas)];
    let r = run(spec).expect("runs");
    let count = |what: &str| r.events.iter().filter(|(_, e)| e.contains(what)).count();
    assert_eq!((count("created"), count("terminating"), count("rollout complete")), (3, 3, 1), "{:?}; {hint}", r.events);
    // One at a time (maxUnavailable 1, a new replica ready before an old one goes): never fewer than 3.
    assert!(r.series.iter().all(|s| s.replicas >= 3), "{:?}", r.series.iter().map(|s| s.replicas).collect::<Vec<_>>());
    // Out of the endpoints first, serving through its lameduck: no lookup notices (iptables, 5.15).
    assert_eq!(r.success_rate(), 1.0, "{hint}");
    assert!(r.latency_ms(1.0) < 1000.0, "max {} ms; {hint}", r.latency_ms(1.0));
    assert!(r.lookups.iter().filter(|l| l.start > Duration::from_secs(30)).count() > 100, "still resolving on the new replicas");
}

#[test]
fn loss_to_the_cloud_resolver_hurts_only_the_names_that_go_there() {
    let seed = seed_or(7);
    let hint = replay("loss_to_the_cloud_resolver_hurts_only_the_names_that_go_there", seed);
    let mut spec = ClusterSpec::smoke(seed);
    spec.azs = 1;
    spec.duration = Duration::from_secs(30);
    spec.pods[0].names = vec![("x{n}.example.com.".into(), 1), ("web".into(), 1)];
    spec.faults = vec![(Duration::from_secs(5), Fault::UpstreamLoss { az: 0, loss: 0.3 })];
    let r = run(spec).expect("runs");
    let slow = |l: &&sim::report::LookupRecord| !l.ok || l.latency() >= Duration::from_millis(100);
    let external = |l: &&sim::report::LookupRecord| l.name.starts_with('x');
    let before = r.lookups.iter().filter(|l| external(l) && l.end < Duration::from_secs(5)).filter(slow).count();
    let after: Vec<_> = r.lookups.iter().filter(|l| external(l) && l.start >= Duration::from_secs(5)).collect();
    let hurt = after.iter().filter(|l| slow(l)).count();
    assert_eq!(before, 0, "{hint}");
    assert!(hurt * 10 > after.len(), "{hurt} of {} cache misses waited on a lost packet; {hint}", after.len());
    assert!(r.net.dropped_loss > 0, "{hint}");
    assert!(r.lookups.iter().filter(|l| l.name == "web").all(|l| l.ok && l.latency() < Duration::from_millis(50)), "{hint}");
}

#[test]
fn a_lossy_link_hurts_only_the_pods_on_its_two_nodes() {
    let seed = seed_or(8);
    let hint = replay("a_lossy_link_hurts_only_the_pods_on_its_two_nodes", seed);
    let mut spec = ClusterSpec::smoke(seed);
    spec.coredns_replicas = 2; // on nodes 0 and 1
    spec.duration = Duration::from_secs(40);
    spec.pods[0].names = vec![("web".into(), 1)];
    spec.faults = vec![(Duration::ZERO, Fault::LinkLoss { a: 2, b: 0, loss: 1.0 })];
    let r = run(spec).expect("runs");
    let hurt: Vec<_> = r.lookups.iter().filter(|l| !l.ok || l.latency() >= Duration::from_secs(1)).collect();
    // Pods on node 2 (every third pod) whose flow DNATs to the replica on node 0 wait out timeouts;
    // node 1's pods reach that replica over a healthy link.
    assert!(!hurt.is_empty(), "{hint}");
    assert!(hurt.iter().all(|l| l.pod % 3 == 2), "{:?}; {hint}", hurt.iter().map(|l| l.pod).collect::<Vec<_>>());
    assert!(r.net.dropped_loss > 0, "{hint}");
}

#[test]
fn kube_proxy_deleting_entries_mid_flight_loses_the_answers_still_on_their_way() {
    // kubernetes#45976: a terminating replica keeps answering through its lameduck, but kube-proxy
    // deletes the conntrack entries to it a sync later. An answer that arrives after that is not
    // un-NATed: it comes from the replica's own address and the client's socket drops it.
    let seed = seed_or(7);
    let hint = replay("kube_proxy_deleting_entries_mid_flight_loses_the_answers_still_on_their_way", seed);
    let run_with = |cleanup: netmodel::dnat::Cleanup| {
        let mut spec = ClusterSpec::smoke(seed);
        spec.azs = 1;
        spec.coredns_replicas = 3;
        spec.duration = Duration::from_secs(30);
        spec.kube_proxy.cleanup = cleanup;
        // No insertion race here: its losers have their own reason to lose slow answers (below).
        spec.race.p_cpu_split = 0.0;
        // Every lookup is a cache miss answered 1.5 s later: answers are in flight across the delete.
        spec.pods[0].names = vec![("x{n}.example.com.".into(), 1)];
        spec.faults = vec![
            (Duration::ZERO, Fault::UpstreamSlow { az: 0, delay: Duration::from_millis(1500) }),
            (Duration::from_secs(5), Fault::RollReplicas),
        ];
        run(spec).expect("runs")
    };
    let on_sync = run_with(netmodel::dnat::Cleanup::OnSync);
    assert!(on_sync.net.dropped_unnat > 0, "{:?}; {hint}", on_sync.net);
    // glibc never sees those answers: it times out (5 s) and asks again.
    assert!(on_sync.lookups.iter().any(|l| l.latency() >= Duration::from_secs(5)), "{hint}");
    // Without the delete the entries still un-NAT every answer of the lameduck (and strand new
    // queries once the replica is gone, S17's story).
    let never = run_with(netmodel::dnat::Cleanup::Never);
    assert_eq!(never.net.dropped_unnat, 0, "{hint}");
}

#[test]
fn a_race_3_loser_loses_an_answer_slower_than_its_one_second_clash_entry() {
    // Since 5.6 the loser of a race with different DNAT targets is kept for its replies only, with
    // a fixed 1 s timeout (6a757c07e51f, sources.md#conntrack-race): an answer slower than that comes
    // back from the replica's own address and is dropped, so the lookup waits out glibc's 5 s.
    let seed = seed_or(8);
    let hint = replay("a_race_3_loser_loses_an_answer_slower_than_its_one_second_clash_entry", seed);
    let run_with = |delay_ms: u64| {
        let mut spec = ClusterSpec::smoke(seed);
        spec.azs = 1;
        spec.coredns_replicas = 3;
        spec.duration = Duration::from_secs(20);
        spec.kernel = netmodel::Kernel::new(5, 10);
        spec.pods[0].names = vec![("x{n}.example.com.".into(), 1)];
        spec.faults = vec![(Duration::ZERO, Fault::UpstreamSlow { az: 0, delay: Duration::from_millis(delay_ms) })];
        run(spec).expect("runs")
    };
    let fast = run_with(500);
    assert_eq!((fast.net.dropped_race, fast.net.dropped_unnat), (0, 0), "5.10 resolves the clash; {hint}");
    let slow = run_with(1500);
    assert!(slow.net.dropped_unnat > 0, "{:?}; {hint}", slow.net);
    assert!(slow.lookups.iter().any(|l| l.latency() >= Duration::from_secs(5)), "{hint}");
}

#[test]
fn a_kube_proxy_restart_loses_in_flight_answers_up_to_1_31_and_not_since() {
    // kubernetes#122740: up to 1.31 the first sync after a restart deletes every service UDP entry,
    // so answers on their way back are not un-NATed; 1.32's reconciler keeps entries to serving pods.
    let seed = seed_or(9);
    let hint = replay("a_kube_proxy_restart_loses_in_flight_answers_up_to_1_31_and_not_since", seed);
    let run_with = |minor: u32| {
        let mut spec = ClusterSpec::smoke(seed);
        spec.azs = 1;
        spec.duration = Duration::from_secs(20);
        spec.race.p_cpu_split = 0.0;
        spec.kube_proxy.version = netmodel::dnat::KubeProxyVersion::new(1, minor);
        spec.pods[0].names = vec![("x{n}.example.com.".into(), 1)];
        spec.faults = vec![
            (Duration::ZERO, Fault::UpstreamSlow { az: 0, delay: Duration::from_millis(1500) }),
            (Duration::from_secs(10), Fault::KubeProxyRestart),
        ];
        run(spec).expect("runs")
    };
    let old = run_with(31);
    assert!(old.net.dropped_unnat > 0, "{:?}; {hint}", old.net);
    let new = run_with(32);
    assert_eq!(new.net.dropped_unnat, 0, "{hint}");
}

#[test]
fn without_a_lameduck_a_rolling_update_strands_the_queries_kube_proxy_still_sends_to_the_old_pod() {
    // The Corefile's `health { lameduck 5s }` keeps a deleted replica answering until every node's
    // kube-proxy has moved its traffic away; without it the process exits at once and queries DNATed
    // to it before the sync are lost (glibc waits 5 s).
    let seed = seed_or(10);
    let hint = replay("without_a_lameduck_a_rolling_update_strands_the_queries_kube_proxy_still_sends_to_the_old_pod", seed);
    let run_with = |corefile: String| {
        let mut spec = ClusterSpec::smoke(seed);
        spec.coredns_replicas = 3;
        spec.duration = Duration::from_secs(40);
        spec.corefile = corefile;
        spec.pods[0].names = vec![("web".into(), 1)];
        spec.faults = vec![(Duration::from_secs(5), Fault::RollReplicas)];
        run(spec).expect("runs")
    };
    let with = run_with(sim::spec::KUBEADM_COREFILE.to_string());
    assert!(with.latency_ms(1.0) < 1000.0, "{hint}");
    let without = sim::spec::KUBEADM_COREFILE.replace("health {\n       lameduck 5s\n    }", "health");
    assert_ne!(without, sim::spec::KUBEADM_COREFILE);
    let r = run_with(without);
    assert!(r.lookups.iter().any(|l| l.latency() >= Duration::from_secs(5)), "max {} ms; {hint}", r.latency_ms(1.0));
}

#[test]
fn the_nodes_running_cluster_dns_carry_a_conntrack_entry_for_every_client_flow_they_serve() {
    // A query DNATed on the client's node is forwarded to the replica's node, whose conntrack tracks
    // it too (and the replica's own upstream flows): the DNS nodes' tables fill first.
    let seed = seed_or(11);
    let mut spec = ClusterSpec::smoke(seed);
    spec.nodes = 4;
    spec.coredns_replicas = 1;
    spec.duration = Duration::from_secs(20);
    spec.race.p_cpu_split = 0.0;
    let r = run(spec).expect("runs");
    let peak = |n: usize| r.series.iter().map(|s| s.conntrack[n]).max().unwrap_or(0);
    let peaks: Vec<usize> = (0..4).map(peak).collect();
    let (dns, others) = (peaks[0], peaks[1..].iter().copied().max().unwrap_or(0));
    assert!(
        dns > 2 * others,
        "the replica is on node 0: {peaks:?}; {}",
        replay("the_nodes_running_cluster_dns_carry_a_conntrack_entry_for_every_client_flow_they_serve", seed)
    );
}

#[test]
fn lookups_stuck_when_the_run_ends_count_as_failed_and_with_their_wait() {
    let seed = seed_or(3);
    let hint = replay("lookups_stuck_when_the_run_ends_count_as_failed_and_with_their_wait", seed);
    let mut spec = ClusterSpec::smoke(seed);
    spec.coredns_replicas = 3;
    spec.duration = Duration::from_secs(8);
    spec.pods[0].names = vec![("web".into(), 1)];
    spec.faults = vec![(Duration::from_secs(5), Fault::NodeDown(0))];
    let r = run(spec).expect("runs");
    let stuck = r.unfinished_over(sim::Report::STUCK);
    assert!(stuck > 0, "lookups waiting out glibc's 5 s timeout on the dead replica; {hint}");
    // Every finished lookup succeeded; only the stuck ones make the rate below 1.
    assert!(r.lookups.iter().all(|l| l.ok), "{hint}");
    let expected = r.lookups.len() as f64 / (r.lookups.len() + stuck) as f64;
    assert!((r.success_rate() - expected).abs() < 1e-12 && r.success_rate() < 1.0, "{} vs {expected}; {hint}", r.success_rate());
    assert!(r.latency_ms(1.0) >= 1000.0, "the longest wait is at least the stuck one's: {} ms; {hint}", r.latency_ms(1.0));
}

#[test]
fn a_deleted_replica_is_recreated_at_once_and_a_dead_node_s_after_its_pods_are_evicted() {
    let seed = seed_or(5);
    let hint = replay("a_deleted_replica_is_recreated_at_once_and_a_dead_node_s_after_its_pods_are_evicted", seed);
    let mut spec = ClusterSpec::smoke(seed);
    spec.coredns_replicas = 3;
    spec.duration = Duration::from_secs(330);
    spec.node_monitor_grace = Duration::from_secs(10);
    spec.pods[0].count = 6;
    spec.pods[0].rate = 0.2;
    spec.faults = vec![(Duration::from_secs(5), Fault::KillReplica(1)), (Duration::from_secs(10), Fault::NodeDown(0))];
    let r = run(spec).expect("runs");
    let replicas_at = |s: u64| r.series.iter().find(|x| x.t >= Duration::from_secs(s)).map(|x| x.replicas).expect("sampled");
    // Deleted at 5 s: two left, the replacement ready after its 2 s start-up.
    assert_eq!((replicas_at(6), replicas_at(8)), (2, 3), "{hint}");
    // Node 0 dies at 10 s with its replica; NotReady at 20 s; evicted and replaced at 320 s.
    assert_eq!((replicas_at(25), replicas_at(319), replicas_at(325)), (2, 2, 3), "{hint}");
    assert!(r.events.iter().any(|(t, e)| *t == Duration::from_secs(320) && e.contains("evicted")), "{:?}", r.events);
}
