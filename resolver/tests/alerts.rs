//! `deploy/ndots-alerts.yaml`, the detectors as Prometheus alerts: every expression is PromQL a
//! Prometheus accepts (the `promql-parser` crate's grammar), and every `ndots_*` metric it reads is
//! one the server renders, with every label the expression groups or joins by.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use resolver::detect::Stats;

/// (alert, expr) of every rule in the PrometheusRule.
fn rules() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/ndots-alerts.yaml");
    let text = std::fs::read_to_string(&path).expect("deploy/ndots-alerts.yaml");
    let doc: serde_json::Value = serde_yaml_ng::from_str(&text).expect("YAML");
    assert_eq!(doc["kind"], "PrometheusRule");
    let mut out = Vec::new();
    for g in doc["spec"]["groups"].as_array().expect("groups") {
        for r in g["rules"].as_array().expect("rules") {
            out.push((r["alert"].as_str().expect("alert").to_string(), r["expr"].as_str().expect("expr").to_string()));
        }
    }
    out
}

/// Metric name → label names of its series, as the server renders its detectors' counts with a
/// subject in every table.
fn rendered() -> BTreeMap<String, BTreeSet<String>> {
    let t = Duration::from_secs(1);
    let mut st = Stats::default();
    st.walks.slot(b"shop").counts[0].add(t, 1);
    st.retransmits.slot(b"node/worker-1").counts[0].add(t, 1);
    st.truncated.slot(b"10.244.1.5").counts[0].add(t, 1);
    st.tcp_clients.slot(b"10.244.1.6").counts[0].add(t, 1);
    st.upstreams.slot(b"10.0.0.2:53").counts[1].add(t, 1);
    st.race.slot(b"10.244.1.0/24").counts[0].add(t, 1);
    st.stale.slot(b"kube-dns 10.96.0.10:53 via 10.244.2.9").counts[0].add(t, 1);
    let mut text = String::new();
    st.render(&mut text);
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, labels) = match line.split_once('{') {
            Some((n, rest)) => (n, rest.split_once('}').map_or("", |x| x.0)),
            None => (line.split(' ').next().unwrap_or(line), ""),
        };
        let set = out.entry(name.to_string()).or_default();
        set.extend(labels.split(',').filter_map(|p| p.split_once('=')).map(|(k, _)| k.to_string()));
    }
    out
}

/// The `ndots_*` names in an expression, and the labels of its `by (...)` and `on (...)` clauses.
fn reads(expr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let names = expr.split(|c: char| !word(c)).filter(|w| w.starts_with("ndots_")).map(str::to_string).collect();
    let mut labels = BTreeSet::new();
    for kw in ["by", "on"] {
        let mut rest = expr;
        while let Some(i) = rest.find(&format!("{kw} (")) {
            let after = &rest[i + kw.len() + 2..];
            let inside = after.split_once(')').map_or("", |x| x.0);
            labels.extend(inside.split(',').map(|l| l.trim().to_string()).filter(|l| !l.is_empty()));
            rest = after;
        }
    }
    (names, labels)
}

#[test]
fn every_alert_is_promql_that_reads_metrics_and_labels_ndots_renders() {
    let rules = rules();
    assert!(rules.len() >= 6, "one alert per detector: {rules:?}");
    let have = rendered();
    for (alert, expr) in &rules {
        if let Err(e) = promql_parser::parser::parse(expr) {
            panic!("{alert}: not PromQL: {e}\n{expr}");
        }
        let (names, labels) = reads(expr);
        assert!(!names.is_empty(), "{alert} reads no ndots metric: {expr}");
        for n in &names {
            let Some(series) = have.get(n) else { panic!("{alert}: ndots renders no {n}") };
            for l in &labels {
                assert!(series.contains(l), "{alert}: {n} has no label {l} (has {series:?})");
            }
        }
    }
}

#[test]
fn the_check_catches_a_wrong_label_and_bad_promql() {
    let have = rendered();
    let (names, labels) = reads("sum by (node) (increase(ndots_client_retransmits_total[5m])) > 1");
    assert!(names.iter().any(|n| labels.iter().any(|l| !have[n].contains(l))), "`node` is not a label of the retransmit counter");
    assert!(promql_parser::parser::parse("sum by (source) (increase(ndots_client_retransmits_total[5m]) > 1").is_err());
}
