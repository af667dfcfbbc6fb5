//! Chaos against the talk's final setup (`scenarios/chaos/final-setup.yaml`): replica kills, a cloud
//! resolver black-holed in one AZ and then another, packet loss, an apiserver restart and a
//! node-local restart over two minutes, with ndots as node-local cache and cluster DNS.
//! Source: the talk ("include DNS failures in your chaos tests", its final setup); sources.md#node-local-dns,
//! S5, S9, S12. Guarantee: every lookup answers, p99 under 1.5 s, none waits longer than one glibc
//! timeout (a query in flight as node-local stops is lost: S5's restart gap), no
//! resolver restarts, no conntrack drops, on every seed of the sweep (`ndots-sim sweep
//! scenarios/chaos/final-setup.yaml --seeds 1..100` for the long one).

use std::path::Path;

#[test]
fn the_final_setup_keeps_its_slos_through_chaos_on_four_seeds() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("chaos/final-setup.yaml");
    let base = sim::file::load(&file, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert!(base.spec.faults.len() >= 10, "the chaos timeline");
    let default = scenarios::seed(1);
    for seed in default..default + 4 {
        let mut sc = base.clone();
        sc.spec.seed = seed;
        let r = sim::run(sc.spec.clone()).expect("runs");
        let failed: Vec<_> = sc.expect.check(&r).into_iter().filter(|c| !c.ok).collect();
        assert!(failed.is_empty(), "{failed:?}\nreplay: ndots-sim run scenarios/chaos/final-setup.yaml --seed {seed}");
        assert!(r.lookups.len() > 10_000, "the workload ran: {}", r.lookups.len());
    }
}
