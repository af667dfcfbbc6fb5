//! The incident scenario files (`scenarios/files/`, what users run with `ndots-sim`) are the
//! registry's scenarios exactly, so a file cannot drift from the test it documents.
//! Regenerate them with `cargo run -p scenarios --bin incidents -- --export scenarios/files`.

use std::path::Path;

use scenarios::incidents;

#[test]
fn every_incident_file_is_the_registry_scenario_it_documents() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for inc in incidents() {
        for fixed in [false, true] {
            let path = root.join(inc.file(fixed));
            let loaded = sim::file::load(&path, &[])
                .unwrap_or_else(|e| panic!("{e}\nregenerate: cargo run -p scenarios --bin incidents -- --export scenarios/files"));
            assert!(
                loaded == inc.scenario(fixed, inc.seed),
                "{} differs from the registry; regenerate: cargo run -p scenarios --bin incidents -- --export scenarios/files",
                path.display()
            );
        }
    }
}

#[test]
fn the_s1_files_show_the_incident_and_its_mitigation_through_their_expectations() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let inc = incidents().into_iter().find(|i| i.id == "S1").expect("S1");
    let run = |fixed| {
        let sc = sim::file::load(&root.join(inc.file(fixed)), &[]).expect("loads");
        let r = sim::run(sc.spec.clone()).expect("runs");
        sc.expect.check(&r)
    };
    let failed = run(false);
    assert!(failed.iter().any(|c| c.name == "queries_per_lookup_max" && !c.ok && c.measured >= 10.0), "{failed:?}");
    let fixed = run(true);
    assert!(fixed.iter().all(|c| c.ok), "{fixed:?}");
}
