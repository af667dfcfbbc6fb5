//! The incident suite's own check, in `cargo test`: for every incident in the registry, the run as it
//! failed breaks the incident's expectations and the mitigated run keeps them (what the `incidents`
//! binary reports). A regression that makes a failure look healthy, or a mitigation look broken,
//! fails here even when no incident test asserts that exact figure.

use scenarios::{incidents, run};

#[test]
fn every_incidents_expectations_are_broken_by_the_failure_and_kept_by_the_mitigation() {
    // Each incident on its own thread, as many at once as there are cores (runs share nothing).
    let list = incidents();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while let Some(inc) = list.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
                    let seed = scenarios::seed(inc.seed);
                    let failed = run((inc.failure.spec)(seed)).unwrap_or_else(|e| panic!("{}: {e}", inc.id));
                    let mitigated = run((inc.mitigation.spec)(seed)).unwrap_or_else(|e| panic!("{}: {e}", inc.id));
                    let verdict = inc.tells_apart(&failed, &mitigated).map(|v| v.map_err(|w| format!("{w} (seed {seed})")));
                    results.lock().expect("no thread panicked holding it").push(verdict);
                }
            });
        }
    });
    let results = results.into_inner().expect("no thread panicked holding it");
    let checked = results.iter().filter(|v| matches!(v, Some(Ok(())))).count();
    let wrong: Vec<String> = results.into_iter().filter_map(|v| v?.err()).collect();
    assert!(
        wrong.is_empty(),
        "expectations do not tell the failure from the mitigation:\n{}\nreplay: SIM_SEED=N cargo run --release -p scenarios --bin incidents SN",
        wrong.join("\n")
    );
    // Every incident but S19 (stale addresses, asserted by its own test) has expectations.
    assert!(checked >= list.len() - 1, "only {checked} incidents have expectations");
}
