//! Tidy checks, run by `cargo test` (rust-analyzer's habit): the invariants ARCHITECTURE.md states,
//! checked on the source text so that a change that breaks one fails CI instead of waiting for a
//! reader to notice.
//!
//! - the resolver's sans-IO core and the simulated code read no clock, touch no socket, thread or
//!   runtime, and draw no unseeded randomness;
//! - simulated code never iterates a `HashMap`/`HashSet` (its order depends on the hasher);
//! - every `sources.md#anchor` cited anywhere exists in docs/sources.md, and nothing cites the
//!   reference notes that live outside the repository;
//! - every path the README and ARCHITECTURE.md name exists.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the workspace").to_path_buf()
}

/// Every text file of the repository below `dir` (relative to the root), skipping build output,
/// git's own files and non-UTF-8 files.
fn files(dir: &str) -> Vec<(String, String)> {
    fn walk(root: &Path, at: &Path, out: &mut Vec<(String, String)>) {
        let Ok(entries) = std::fs::read_dir(at) else { return };
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    walk(root, &path, out);
                }
            } else if let Ok(text) = std::fs::read_to_string(&path) {
                let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
                out.push((rel, text));
            }
        }
    }
    let root = root();
    let mut out = Vec::new();
    walk(&root, &root.join(dir), &mut out);
    out
}

/// The code of a line: what comes before a `//` comment (good enough for these checks: no pattern
/// below is looked for inside a string literal).
fn code(line: &str) -> &str {
    line.find("//").map_or(line, |i| &line[..i])
}

/// Lines of `.rs` files under `dirs` (minus `except`) whose code contains one of `banned`.
fn find_banned(dirs: &[&str], except: &[&str], banned: &[&str]) -> Vec<String> {
    let mut hits = Vec::new();
    for dir in dirs {
        for (path, text) in files(dir) {
            if !path.ends_with(".rs") || except.iter().any(|e| path.starts_with(e)) {
                continue;
            }
            for (n, line) in text.lines().enumerate() {
                if let Some(b) = banned.iter().find(|b| code(line).contains(*b)) {
                    hits.push(format!("{path}:{}: `{b}`: {}", n + 1, line.trim()));
                }
            }
        }
    }
    hits
}

/// Clocks, sockets, threads, runtimes and unseeded randomness.
const IO: &[&str] = &[
    "tokio",
    "UdpSocket",
    "TcpStream",
    "TcpListener",
    "socket2",
    "nix::",
    "Instant",
    "SystemTime::now",
    "UNIX_EPOCH",
    "std::thread",
    "thread::spawn",
    "getrandom",
    "fastrand::u",
    "fastrand::i",
    "fastrand::f",
    "fastrand::bool",
    "fastrand::shuffle",
];

#[test]
fn the_resolver_core_touches_no_clock_socket_thread_or_runtime() {
    // The driver and the binary are where the core meets the OS.
    let hits = find_banned(&["resolver/src"], &["resolver/src/driver", "resolver/src/bin"], IO);
    assert!(hits.is_empty(), "outside resolver::driver and bin/ (ARCHITECTURE.md, resolver invariant):\n{}", hits.join("\n"));
}

#[test]
fn the_resolver_core_reads_no_environment_but_at_its_loading_boundary() {
    let allowed = [
        // `corefile::load` substitutes `{$ENV}` from the process for the binary; the simulator parses with
        // its own environment (`parse_str` takes the lookup).
        "resolver/src/corefile.rs",
    ];
    let mut except = vec!["resolver/src/driver", "resolver/src/bin"];
    except.extend(allowed);
    let hits = find_banned(&["resolver/src"], &except, &["std::env::var", "env::var("]);
    assert!(hits.is_empty(), "the core reads the environment:\n{}", hits.join("\n"));
}

#[test]
fn simulated_code_reads_no_host_clock_and_draws_no_unseeded_randomness() {
    // What runs inside a simulation: the kernel models, the engine, the client models, the report.
    let dirs = ["netmodel/src", "sim/src/engine", "sim/src/client", "sim/src/report.rs", "sim/src/spec.rs"];
    let hits = find_banned(&dirs, &[], IO);
    assert!(hits.is_empty(), "simulated code must be a function of the seed (ARCHITECTURE.md, sim invariant):\n{}", hits.join("\n"));
}

#[test]
fn simulated_code_reads_no_host_file() {
    // A simulated resolver's Corefile reads the node's files (`Files::Only`), so a run is the same on
    // every machine: never the host's /etc/resolv.conf, zone or hosts files.
    let dirs = ["netmodel/src", "sim/src/engine", "sim/src/client", "sim/src/report.rs", "sim/src/spec.rs", "sim/src/run.rs"];
    let hits = find_banned(&dirs, &[], &["std::fs", "fs::read", "File::open", "Files::Disk", "from_corefile(", "read_resolv_conf"]);
    assert!(hits.is_empty(), "simulated code reads the machine's files (ARCHITECTURE.md, sim invariant):\n{}", hits.join("\n"));
}

/// Names bound to a `HashMap` or `HashSet` in one file: fields, lets and parameters declared with the
/// type, and lets initialised with its constructor.
fn hash_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in text.lines().map(code) {
        for kind in ["HashMap", "HashSet"] {
            let mut rest = line;
            while let Some(i) = rest.find(kind) {
                let before = rest[..i].trim_end();
                let ident = |s: &str| s.rsplit(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or("").to_string();
                // `name: HashMap<` or `name: std::collections::HashMap<`
                let before_path = before.trim_end_matches("std::collections::").trim_end_matches("collections::");
                if let Some(b) = before_path.strip_suffix(':') {
                    names.push(ident(b.trim_end()));
                }
                // `let name = HashMap::new()` / `with_hasher`
                if let Some(b) = before.strip_suffix('=')
                    && rest[i + kind.len()..].starts_with("::")
                {
                    names.push(ident(b.trim_end()));
                }
                rest = &rest[i + kind.len()..];
            }
        }
    }
    names.retain(|n| !n.is_empty());
    names.sort();
    names.dedup();
    names
}

#[test]
fn simulated_code_never_iterates_a_hash_map() {
    const ITERATE: &[&str] = &[".iter()", ".iter_mut()", ".keys()", ".values()", ".values_mut()", ".drain()", ".into_iter()", ".retain("];
    // Reductions whose result does not depend on the order.
    const ORDER_FREE: &[&str] = &[".count()", ".any(", ".all(", ".len()"];
    let mut hits = Vec::new();
    for dir in ["netmodel/src", "sim/src", "resolver/src"] {
        for (path, text) in files(dir) {
            if !path.ends_with(".rs") || path.starts_with("resolver/src/driver") || path.starts_with("resolver/src/bin") {
                continue;
            }
            let names = hash_names(&text);
            for (n, line) in text.lines().enumerate() {
                let c = code(line);
                for name in &names {
                    let iterated = ITERATE.iter().any(|m| c.contains(&format!("{name}{m}")))
                        || c.contains(&format!("in &{name}"))
                        || c.contains(&format!("in &self.{name}"))
                        || c.contains(&format!("in &mut self.{name}"));
                    if iterated && !ORDER_FREE.iter().any(|r| c.contains(r)) {
                        hits.push(format!("{path}:{}: `{name}` is a hash map or set: {}", n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(
        hits.is_empty(),
        "iteration over a HashMap/HashSet on a simulated path (order depends on the hasher; use a BTreeMap or an IndexMap):\n{}",
        hits.join("\n")
    );
}

#[test]
fn the_hash_map_check_sees_fields_lets_and_iteration() {
    let text = "struct A {\n    entries: HashMap<u32, u32, S>,\n}\nfn f() {\n    let mut seen = HashSet::new();\n    for x in &self.entries {}\n}\n";
    assert_eq!(hash_names(text), ["entries", "seen"]);
}

/// The anchors docs/sources.md defines.
fn anchors() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("docs/sources.md")).expect("docs/sources.md");
    text.split("<a id=\"").skip(1).filter_map(|s| s.split('"').next()).map(str::to_string).collect()
}

#[test]
fn every_cited_source_has_its_entry_in_docs_sources_md() {
    let anchors = anchors();
    assert!(anchors.len() > 40, "docs/sources.md defines {} anchors", anchors.len());
    let mut dup = anchors.clone();
    dup.sort();
    dup.dedup();
    assert_eq!(dup.len(), anchors.len(), "an anchor is defined twice");
    let mut missing = Vec::new();
    let mut cited = 0;
    for (path, text) in files("") {
        if path == "xtask/src/tidy.rs" {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            for part in line.split("sources.md#").skip(1) {
                let anchor: String = part.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
                if anchor.is_empty() {
                    // Prose about citations ("`sources.md#` and its anchor"), not one.
                    continue;
                }
                cited += 1;
                if !anchors.contains(&anchor) {
                    missing.push(format!("{path}:{}: sources.md#{anchor}", n + 1));
                }
            }
        }
    }
    assert!(cited > 150, "only {cited} citations found: is the walk finding the code?");
    assert!(missing.is_empty(), "cited anchors missing from docs/sources.md:\n{}", missing.join("\n"));
}

#[test]
fn no_citation_points_outside_the_repository() {
    // The team's reference notes live beside the repository, not in it: a clone cannot follow them.
    const OUTSIDE: &[&str] = &[
        "incidents.md",
        "dns-servers.md",
        "as-it-was.md",
        "client-versions.md",
        "kubernetes-deploy.md",
        "turmoil-notes.md",
        "house-style.md",
        "talk-k8s-dns-horror-stories",
        "shared/reference",
        "../shared",
    ];
    let mut hits = Vec::new();
    for (path, text) in files("") {
        if path == "xtask/src/tidy.rs" {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            if let Some(o) = OUTSIDE.iter().find(|o| line.contains(*o)) {
                hits.push(format!("{path}:{}: `{o}`", n + 1));
            }
        }
    }
    assert!(hits.is_empty(), "cite docs/sources.md#anchor instead:\n{}", hits.join("\n"));
}

/// Backticked words of a Markdown text that look like repository paths.
fn named_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 0 || part.contains(' ') || part.contains('<') || part.contains('*') || part.contains('{') {
            continue;
        }
        let p = part.trim_end_matches('/');
        let looks_like_path = p.contains('/')
            || [".rs", ".md", ".yaml", ".toml", ".c", ".go", ".sh", ".Corefile"].iter().any(|e| p.ends_with(e) && p.len() > e.len());
        // `sNN` and the like are patterns, `.fixed.yaml` a suffix.
        let placeholder = p.contains("NN") || p.starts_with('.');
        let generated = placeholder || p.starts_with("target/") || p.starts_with('/') || p.starts_with("DIR/") || p.starts_with("..");
        // `discovery.k8s.io/v1` is an API group: a first segment with a dot is a domain, not a folder.
        let domain = p.contains('/') && p.split('/').next().is_some_and(|f| f.contains('.') && !f.starts_with('.'));
        let not_a_path = domain || p.contains("://") || p.contains(':') || p.contains('=') || p.starts_with('-');
        if looks_like_path && !generated && !not_a_path {
            out.push(p.to_string());
        }
    }
    out
}

#[test]
fn every_file_the_readme_and_architecture_name_exists() {
    let root = root();
    let all: Vec<String> = files("").into_iter().map(|(p, _)| p).collect();
    let mut missing = Vec::new();
    let mut checked = 0;
    for doc in ["README.md", "ARCHITECTURE.md"] {
        let text = std::fs::read_to_string(root.join(doc)).expect(doc);
        for p in named_paths(&text) {
            checked += 1;
            // A bare file name (a table cell under its folder's heading) is found anywhere; a path is
            // found from the root or below any folder (crate-relative paths such as `bin/ndots.rs`).
            let exists = root.join(&p).exists()
                || all
                    .iter()
                    .any(|f| f == &p || f.ends_with(&format!("/{p}")) || f.starts_with(&format!("{p}/")) || f.contains(&format!("/{p}/")));
            if !exists {
                missing.push(format!("{doc}: `{p}`"));
            }
        }
    }
    assert!(checked > 40, "only {checked} paths found in the README and ARCHITECTURE.md");
    assert!(missing.is_empty(), "named but not in the repository:\n{}", missing.join("\n"));
}

/// The module graph of one crate: for each top-level module (`src/NAME.rs` or `src/NAME/`), the other
/// top-level modules its code names through `crate::` (a name the crate root re-exports counts as
/// its module). Test modules (`#[cfg(test)]` to the end of a file) are left out.
fn module_graph(src: &str) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    use std::collections::{BTreeMap, BTreeSet};
    let root = root().join(src);
    let lib = std::fs::read_to_string(root.join("lib.rs")).expect("lib.rs");
    let mut modules = BTreeSet::new();
    for l in lib.lines() {
        if let Some(m) = l.trim().strip_prefix("pub mod ").or_else(|| l.trim().strip_prefix("mod ")) {
            modules.insert(m.trim_end_matches(';').to_string());
        }
    }
    // `pub use server::{Client, Server}` at the root: `crate::Client` is `server`'s.
    let mut reexport = BTreeMap::new();
    for l in lib.lines() {
        if let Some(rest) = l.trim().strip_prefix("pub use ")
            && let Some((m, names)) = rest.split_once("::")
        {
            for n in names.trim_matches(|c| c == '{' || c == '}' || c == ';').split(',') {
                reexport.insert(n.trim().to_string(), m.to_string());
            }
        }
    }
    let mut graph = BTreeMap::new();
    for m in &modules {
        let mut text = String::new();
        let single = std::fs::read_to_string(root.join(format!("{m}.rs"))).map(|t| (format!("{m}.rs"), t));
        for (path, t) in files(&format!("{src}/{m}")).into_iter().chain(single) {
            if path.ends_with(".rs") {
                text.push_str(t.split("#[cfg(test)]").next().unwrap_or(""));
                text.push('\n');
            }
        }
        let mut deps = BTreeSet::new();
        for line in text.lines().map(code) {
            for part in line.split("crate::").skip(1) {
                let first: String = part.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                let target = if modules.contains(&first) {
                    Some(first)
                } else if let Some(braced) = part.strip_prefix('{') {
                    // `use crate::{Client, Server}`: every re-exported name in the braces.
                    for n in braced.split('}').next().unwrap_or("").split(',') {
                        if let Some(t) = reexport.get(n.trim()).filter(|t| *t != m) {
                            deps.insert(t.clone());
                        }
                    }
                    None
                } else {
                    reexport.get(&first).cloned()
                };
                if let Some(t) = target.filter(|t| t != m) {
                    deps.insert(t);
                }
            }
        }
        graph.insert(m.clone(), deps);
    }
    graph
}

/// A cycle in a graph, if there is one.
fn cycle(graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = std::collections::BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_module_graphs_have_no_cycles() {
    for src in ["resolver/src", "sim/src", "netmodel/src"] {
        let g = module_graph(src);
        assert!(g.len() >= 5, "{src}: only {} modules found", g.len());
        if let Some(c) = cycle(&g) {
            panic!("{src}: modules import each other: {}\n{g:#?}", c.join(" -> "));
        }
    }
    // The layering ARCHITECTURE.md states, spot-checked: the wire format and the Corefile grammar
    // know nothing above them; the core never names its driver; the report never names the engine.
    let r = module_graph("resolver/src");
    assert!(r["wire"].is_empty(), "wire: {:?}", r["wire"]);
    assert!(r["corefile"].iter().all(|d| d == "wire"), "corefile: {:?}", r["corefile"]);
    assert!(r.iter().all(|(m, d)| m == "driver" || m == "fuzzing" || !d.contains("driver")), "{r:#?}");
    let s = module_graph("sim/src");
    assert!(!s["report"].contains("engine"), "report: {:?}", s["report"]);
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let g = [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"]), ("d", vec![])]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(str::to_string).collect()))
        .collect();
    assert_eq!(cycle(&g), Some(vec!["a".to_string(), "b".to_string(), "c".to_string(), "a".to_string()]));
}

#[test]
fn the_readme_client_table_is_what_the_models_do() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let current = sim::client::table::update(&readme).expect("table");
    assert!(readme == current, "README.md's client-library table is stale: run `cargo xtask client-table`");
}
