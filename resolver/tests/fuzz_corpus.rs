//! The fuzz targets' checked-in corpus and every past crash (`fuzz/regressions/`), replayed
//! on stable Rust with the same bodies libFuzzer runs (`resolver::fuzzing`).

use std::path::Path;

fn replay(target: &str, f: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut n = 0;
    for dir in [root.join("corpus").join(target), root.join("regressions").join(target)] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut files: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).expect("read");
            eprintln!("{}", file.display());
            f(&data);
            n += 1;
        }
    }
    n
}

#[test]
fn the_query_path_corpus_and_regressions_pass() {
    assert!(replay("server", resolver::fuzzing::server) >= 5);
}

#[test]
fn the_parser_corpora_and_regressions_pass() {
    assert!(replay("corefile", resolver::fuzzing::corefile) >= 3);
    assert!(replay("cluster_state", resolver::fuzzing::cluster_state) >= 1);
    assert!(replay("zone", resolver::fuzzing::zone) >= 1);
}

#[test]
fn the_server_target_exercises_forwarding_and_answers() {
    // A query forwarded upstream, an upstream answer with arbitrary trailing bytes, a cache hit: the
    // seed reaches the forward path (not only the parser), which is what the corpus is for.
    let seed = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/server/udp-forward-answer")).expect("seed");
    resolver::fuzzing::server(&seed);
    let mut garbage = seed.clone();
    garbage.extend_from_slice(&[2, 5, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 12, 1, 0]);
    resolver::fuzzing::server(&garbage);
}
