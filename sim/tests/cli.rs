//! `ndots-sim run | compare | sweep | lint` as users call them: exit codes, the replay line, the
//! report's charts carrying the run's data.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ndots-cli-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ndots-sim")).args(args).env_remove("SIM_SEED").output().expect("runs")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// A small cluster that loses a replica a third of the way in: lookups caught on it wait out glibc's
/// 5 s timeout.
const KILL: &str = "version: 1
name: replica killed
seed: 7
duration: 12s
coredns:
  replicas: 2
pods:
  - count: 12
    rate: 2
    names: {web: 1, www.google.com: 1}
faults:
  - {at: 4s, kill_replica: 0}
expect:
  success_rate_min: 0.99
";

fn write(d: &Path, name: &str, body: &str) -> String {
    let p = d.join(name);
    std::fs::write(&p, body).expect("write");
    p.display().to_string()
}

#[test]
fn run_prints_the_table_and_fails_with_a_replay_command_that_reproduces_the_run() {
    let d = dir("run");
    let f = write(&d, "kill.yaml", KILL);
    let ok = sim(&["run", &f]);
    let (out, _) = text(&ok);
    assert!(ok.status.success(), "{out}");
    assert!(out.contains("lookups ok %") && out.contains("expect success_rate_min ok"), "{out}");
    // Ended 4 s after the kill, lookups are still waiting out their timeout: they count as failed
    // (and fail a strict expectation); the replay line reproduces the run exactly.
    let bad = sim(&["run", &f, "--set", "duration=8s", "--set", "expect.unfinished_max=0"]);
    let (out, err) = text(&bad);
    assert_eq!(bad.status.code(), Some(1), "{out}{err}");
    assert!(out.contains("expect unfinished_max FAILED") && out.contains("expect success_rate_min FAILED"), "{out}");
    let replay = err.lines().find_map(|l| l.split("replay: ").nth(1)).expect("replay line");
    assert_eq!(replay, format!("ndots-sim run {f} --seed 7 --set duration=8s --set expect.unfinished_max=0"));
    let args: Vec<&str> = replay.split(' ').skip(1).collect();
    let again = sim(&args);
    let trace = |o: &str| o.lines().next().and_then(|l| l.split("trace ").nth(1)).map(str::to_string);
    assert_eq!(trace(&text(&again).0), trace(&out), "same seed, same trace");
    assert!(trace(&out).is_some());
}

#[test]
fn run_writes_a_self_contained_report_whose_charts_carry_the_data() {
    let d = dir("report");
    let f = write(&d, "kill.yaml", KILL);
    let rep = d.join("out");
    let o = sim(&["run", &f, "--report", &rep.display().to_string()]);
    assert!(o.status.success(), "{:?}", text(&o));
    let html = std::fs::read_to_string(rep.join("kill.html")).expect("html");
    assert!(
        !html.contains("http://") || html.matches("http://").all(|_| html.contains("xmlns=\"http://www.w3.org/2000/svg\"")),
        "no network"
    );
    assert!(!html.contains("<script src") && !html.contains("<link "), "self-contained");
    for title in [
        "Application lookups per second",
        "Lookup latency",
        "Queries per second by type",
        "Queries per second by zone",
        "Responses per second by rcode",
        "Resolver cache hit ratio",
        "Conntrack entries per node",
        "Packets per second from each node",
        "Cluster DNS replicas",
        "Replica memory",
    ] {
        assert!(html.contains(title), "chart {title} missing");
    }
    // Series carry one point per simulated second; the fault is marked on the time axis.
    assert!(html.contains(r#"data-label="AAAA" data-points="12""#), "AAAA series");
    assert!(html.contains(r#"data-label="NXDOMAIN" data-points="12""#), "rcode series");
    assert!(html.contains(r#"data-label="nf_conntrack_max""#), "the table size is drawn");
    assert!(html.contains(r#"<g class="marker" data-label="kill_replica: 0">"#), "fault marker");
    assert!(html.contains("1 · 4 s · kill_replica: 0"), "the marker's label under the chart");
    // The header says how to run it again; latency is on a log axis; what went wrong is named.
    assert!(html.contains(&format!("<code>ndots-sim run {f} --seed 7</code>")), "replay command in the header");
    assert!(html.contains("ms (log)") && html.contains("What went wrong"));
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(rep.join("kill.json")).expect("json")).expect("valid json");
    assert_eq!(json["series"].as_array().map(Vec::len), Some(12));
    let replicas: Vec<u64> = json["series"].as_array().into_iter().flatten().filter_map(|s| s["replicas"].as_u64()).collect();
    let fewest = replicas.iter().min();
    assert_eq!(
        (replicas.first(), fewest, replicas.last()),
        (Some(&2), Some(&1), Some(&2)),
        "the kill and the replacement show in the series"
    );
    let a: u64 = json["series"].as_array().into_iter().flatten().filter_map(|s| s["queries_a"].as_u64()).sum();
    assert!(a > 100, "A queries counted: {a}");
}

#[test]
fn compare_runs_the_change_beside_the_original_and_overlays_both() {
    let d = dir("compare");
    let f = write(&d, "kill.yaml", KILL);
    let rep = d.join("out");
    let o = sim(&["compare", &f, "--set-b", "coredns.replicas=3", "--report", &rep.display().to_string()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    let header = out.lines().nth(1).expect("table header");
    assert!(header.contains("as is") && header.contains("coredns.replicas=3"), "{out}");
    let fewest = out.lines().find(|l| l.starts_with("cluster DNS replicas, fewest")).expect("row");
    // Side A, side B, and B's change against A.
    let cols: Vec<&str> = fewest.split_whitespace().rev().skip(1).take(2).collect();
    assert_eq!(fewest.split_whitespace().last(), Some("x2.0"), "the change column: {fewest}");
    assert_eq!(cols, vec!["2", "1"], "3 replicas minus one vs 2 minus one: {fewest}");
    let html = std::fs::read_to_string(rep.join("kill-compare.html")).expect("html");
    assert!(html.contains(r#"data-label="as is: p99""#) && html.contains(r#"data-label="coredns.replicas=3: p99""#));
    let none = sim(&["compare", &f]);
    assert_eq!(none.status.code(), Some(2), "a compare without a change is a usage error");
    let both_only = sim(&["compare", &f, "--set", "coredns.replicas=3"]);
    assert_eq!(both_only.status.code(), Some(2), "--set changes both sides: still no change");
    assert!(text(&both_only).1.contains("--set-b"), "{}", text(&both_only).1);
    // --set reaches both sides: without the kill, neither loses a replica.
    let o = sim(&["compare", &f, "--set", "faults=[]", "--set-b", "coredns.replicas=3"]);
    let (out, err) = text(&o);
    let fewest = out.lines().find(|l| l.starts_with("cluster DNS replicas, fewest")).unwrap_or_else(|| panic!("{out}{err}"));
    assert_eq!(fewest.split_whitespace().rev().take(3).collect::<Vec<_>>(), vec!["+50.0%", "3", "2"], "{fewest}");
}

#[test]
fn sweep_reports_how_often_an_expectation_fails_over_seeds() {
    let d = dir("sweep");
    let f = write(&d, "kill.yaml", KILL);
    let o = sim(&["sweep", &f, "--seeds", "1..=3", "--set", "duration=8s", "--set", "expect.unfinished_max=0", "--json"]);
    let (out, err) = text(&o);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["seeds"], 3);
    let outcomes = v["outcomes"].as_array().expect("outcomes");
    assert_eq!(outcomes.iter().filter_map(|o| o["seed"].as_u64()).collect::<Vec<_>>(), vec![1, 2, 3]);
    let failed = v["failed"].as_u64().expect("count");
    assert_eq!(failed, outcomes.iter().filter(|o| o["ok"] == false).count() as u64);
    assert!(failed > 0, "a replica killed under load strands lookups in every seed");
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("replay: ndots-sim run"), "{err}");
    assert!(err.contains("[3/3] seed"), "progress lines: {err}");
}

#[test]
fn lint_names_each_horror_pattern_with_its_source_and_fix() {
    let d = dir("lint");
    let no_cache = write(
        &d,
        "Corefile",
        ".:53 {\n    errors\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n       pods verified\n    }\n    autopath @kubernetes\n    forward . /etc/resolv.conf {\n       force_tcp\n    }\n}\n",
    );
    let rc = write(
        &d,
        "resolv.conf",
        "search default.svc.cluster.local svc.cluster.local cluster.local ec2.internal\nnameserver 10.96.0.10\noptions ndots:5\n",
    );
    let node = write(&d, "node-resolv.conf", "nameserver 127.0.0.53\n");
    let state = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/cluster-state.yaml");
    let o = sim(&["lint", "--corefile", &no_cache, "--resolv-conf", &rc, "--node-resolv-conf", &node, "--cluster-state", state, "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&text(&o).0).expect("json");
    let ids: Vec<&str> = v["findings"].as_array().expect("list").iter().filter_map(|f| f["id"].as_str()).collect();
    for id in [
        "forwarding-loop",
        "autopath-without-cache",
        "forward-without-cache",
        "force-tcp-to-limited-resolver",
        "no-max-concurrent",
        "pods-verified-memory",
        "ndots-amplification",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    let f = v["findings"].as_array().expect("list").iter().find(|f| f["id"] == "force-tcp-to-limited-resolver").expect("finding");
    assert_eq!(f["at"], format!("{no_cache}:8"), "points at the force_tcp line");
    assert!(f["source"].as_str().is_some_and(|s| s.contains("S8")) && f["fix"].as_str().is_some_and(|s| !s.is_empty()));
    let nd = v["findings"].as_array().expect("list").iter().find(|f| f["id"] == "ndots-amplification").expect("finding");
    assert!(nd["message"].as_str().is_some_and(|m| m.contains("sends 10 queries")), "{nd}");
    assert_eq!(v["findings"][0]["severity"], "error", "worst first");
    // kubeadm's default Corefile with a ndots:2 resolv.conf: nothing to warn about.
    let kubeadm = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/kubeadm.Corefile");
    let rc2 = write(
        &d,
        "resolv2.conf",
        "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:1\n",
    );
    let o = sim(&["lint", "--corefile", kubeadm, "--resolv-conf", &rc2]);
    assert!(o.status.success(), "{:?}", text(&o));
}

#[test]
fn a_bad_scenario_file_exits_2_naming_file_line_and_expectation() {
    let d = dir("bad");
    let f = write(&d, "bad.yaml", "version: 1\ncoredns:\n  replicas: two\n");
    let o = sim(&["run", &f]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o).1;
    assert!(err.starts_with(&format!("ndots-sim: {f}:3:")) && err.contains("invalid type"), "{err}");
}

#[test]
fn traced_runs_list_every_lookup_with_the_queries_it_put_on_the_wire() {
    let d = dir("trace");
    let f = write(&d, "kill.yaml", KILL);
    let o = sim(&["run", &f, "--set", "trace_queries=true", "--set", "duration=5s", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&text(&o).0).expect("json");
    let lookups = v["lookups"].as_array().expect("lookups listed");
    let google = lookups.iter().find(|l| l["name"] == "www.google.com" && l["outcome"] == "ok").expect("a www.google.com lookup");
    assert_eq!(google["library"], "glibc-2.36");
    let names: Vec<&str> = google["queries"].as_array().expect("queries").iter().filter_map(|q| q["qname"].as_str()).collect();
    // ndots:5: the search list first, A and AAAA for each, then the name as given (sources.md#glibc).
    assert_eq!(names.first().copied(), Some("www.google.com.default.svc.cluster.local."));
    assert_eq!(names.last().copied(), Some("www.google.com."));
    assert_eq!(names.len(), 10, "{names:?}");
    // Untraced runs do not list lookups.
    let o = sim(&["run", &f, "--set", "duration=5s", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&text(&o).0).expect("json");
    assert!(v["lookups"].is_null());
}
