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

#[test]
fn every_incident_has_its_files_a_test_file_and_a_readme_row() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("../README.md")).expect("README.md");
    let tests: Vec<String> =
        std::fs::read_dir(root.join("tests")).expect("tests/").filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    for inc in incidents() {
        for fixed in [false, true] {
            assert!(root.join(inc.file(fixed)).is_file(), "{}: no {}", inc.id, inc.file(fixed));
        }
        let n: u32 = inc.id.trim_start_matches('S').parse().expect("an id is S and a number");
        let test = tests.iter().find(|t| t.starts_with(&format!("s{n:02}_")) && t.ends_with(".rs"));
        let test = test.unwrap_or_else(|| panic!("{}: no tests/s{n:02}_*.rs", inc.id));
        let row = readme.lines().find(|l| l.starts_with(&format!("| {} |", inc.id)));
        let row = row.unwrap_or_else(|| panic!("{}: no row in the README's incident table", inc.id));
        assert!(row.contains(test.as_str()), "{}: the README row does not name {test}: {row}", inc.id);
        assert!(row.contains(inc.file(false).trim_start_matches("files/")), "{}: the README row does not name its file: {row}", inc.id);
    }
}
