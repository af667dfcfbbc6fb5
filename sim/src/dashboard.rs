//! What people look at after a run: the terminal table, the JSON for machines, and a self-contained
//! HTML report with the charts platform teams know from their CoreDNS and node dashboards. One run,
//! or two overlaid (`ndots-sim compare`).

use std::fmt::Write as _;

use serde_json::json;

use crate::file::Check;
use crate::html::{Series, escape, marked_chart, page};
use crate::report::{Report, Second};
use crate::spec::ClusterSpec;

/// A per-second figure to plot.
type Metric<'a> = (&'a str, &'a dyn Fn(&Second) -> f64);
/// A per-second figure built at run time (one per node).
type OwnedMetric = (String, Box<dyn Fn(&Second) -> f64>);

/// One run to show.
pub struct Run<'a> {
    pub label: &'a str,
    pub spec: &'a ClusterSpec,
    pub report: &'a Report,
    pub checks: &'a [Check],
}

/// The figures a run is summed up by, in table order: (name, value as shown, value as number).
pub fn figures(run: &Run<'_>) -> Vec<(&'static str, String, f64)> {
    let r = run.report;
    let secs = r.duration.as_secs_f64().max(1e-9);
    let lookups = r.lookups.len() as f64;
    let peak_ct = r.series.iter().flat_map(|s| s.conntrack.iter().copied()).max().unwrap_or(0) as f64;
    let eni_peak = r.series.iter().flat_map(|s| s.wire.eni.iter().copied()).max().unwrap_or(0) as f64;
    let (hits, misses) = r.series.iter().fold((0, 0), |(h, m), s| (h + s.wire.cache_hits, m + s.wire.cache_misses));
    let hit_ratio = if hits + misses == 0 { 0.0 } else { hits as f64 / (hits + misses) as f64 };
    let replicas_min = r.series.iter().map(|s| s.replicas).min().unwrap_or(0) as f64;
    let mem_peak = r.series.iter().map(|s| s.memory_max).max().unwrap_or(0) as f64 / f64::from(1u32 << 20);
    let drops_ct = (r.net.dropped_race + r.net.dropped_table_full) as f64;
    let unfinished = r.unfinished_over(std::time::Duration::from_secs(1)) as f64;
    let f = |v: f64, p: usize| format!("{v:.p$}");
    vec![
        ("lookups", f(lookups, 0), lookups),
        ("  answered by an application cache", f(r.app_cache_hits() as f64, 0), r.app_cache_hits() as f64),
        ("lookups ok %", f(100.0 * r.success_rate(), 3), 100.0 * r.success_rate()),
        ("latency p50 ms", f(r.latency_ms(0.5), 2), r.latency_ms(0.5)),
        ("latency p99 ms", f(r.latency_ms(0.99), 1), r.latency_ms(0.99)),
        ("latency max ms", f(r.latency_ms(1.0), 1), r.latency_ms(1.0)),
        ("lookups stuck at the end (>= 1 s, failed)", f(unfinished, 0), unfinished),
        ("queries on the wire", f(r.queries() as f64, 0), r.queries() as f64),
        ("queries per lookup", f(r.queries() as f64 / lookups.max(1.0), 2), r.queries() as f64 / lookups.max(1.0)),
        ("upstream packets/s (all ENIs)", f(r.net.upstream_packets as f64 / secs, 0), r.net.upstream_packets as f64 / secs),
        ("upstream packets/s, busiest ENI peak", f(eni_peak, 0), eni_peak),
        ("ENI drops (allowance exceeded)", f(r.net.dropped_eni as f64, 0), r.net.dropped_eni as f64),
        ("conntrack drops (race + full)", f(drops_ct, 0), drops_ct),
        ("conntrack peak entries/node", f(peak_ct, 0), peak_ct),
        ("resolver restarts (OOM)", f(r.net.restarts as f64, 0), r.net.restarts as f64),
        ("cluster DNS replicas, fewest", f(replicas_min, 0), replicas_min),
        ("replica memory peak MiB", f(mem_peak, 1), mem_peak),
        ("resolver cache hit ratio", f(hit_ratio, 3), hit_ratio),
    ]
}

/// The terminal table: one column per run.
pub fn table(runs: &[Run<'_>]) -> String {
    let cols: Vec<Vec<(&str, String, f64)>> = runs.iter().map(figures).collect();
    let w0 = cols.first().map_or(0, |c| c.iter().map(|r| r.0.len()).max().unwrap_or(0));
    let widths: Vec<usize> =
        runs.iter().zip(&cols).map(|(r, c)| c.iter().map(|x| x.1.len()).max().unwrap_or(0).max(r.label.len())).collect();
    let mut o = String::new();
    let _ = write!(o, "{:w0$}", "");
    for (r, w) in runs.iter().zip(&widths) {
        let _ = write!(o, "  {:>w$}", r.label, w = *w);
    }
    o.push('\n');
    for i in 0..cols.first().map_or(0, Vec::len) {
        let _ = write!(o, "{:w0$}", cols[0][i].0);
        for (c, w) in cols.iter().zip(&widths) {
            let _ = write!(o, "  {:>w$}", c[i].1, w = *w);
        }
        o.push('\n');
    }
    for r in runs {
        for c in r.checks {
            let _ = writeln!(
                o,
                "{}expect {} {}: measured {:.4}, limit {}{}",
                if runs.len() > 1 { format!("{}: ", r.label) } else { String::new() },
                c.name,
                if c.ok { "ok" } else { "FAILED" },
                c.measured,
                c.limit,
                if c.ok { "" } else { " <--" }
            );
        }
    }
    o
}

/// The run for machines: figures, expectations, counters and the per-second series.
pub fn json(run: &Run<'_>) -> serde_json::Value {
    let r = run.report;
    let figures: serde_json::Map<String, serde_json::Value> = figures(run).into_iter().map(|(k, _, v)| (k.to_string(), json!(v))).collect();
    let series: Vec<serde_json::Value> = r
        .series
        .iter()
        .map(|s| {
            json!({
                "t_s": s.t.as_secs_f64(), "lookups": s.lookups, "failed": s.failed, "p50_ms": s.p50_ms, "p99_ms": s.p99_ms,
                "max_ms": s.max_ms, "conntrack": s.conntrack, "insert_failed": s.insert_failed, "dropped_eni": s.dropped_eni,
                "upstream_packets": s.upstream_packets, "replicas": s.replicas, "memory_max": s.memory_max,
                "queries_a": s.wire.by_type[0], "queries_aaaa": s.wire.by_type[1], "queries_other": s.wire.by_type[2],
                "queries_cluster": s.wire.cluster, "queries_external": s.wire.external,
                "noerror": s.wire.rcodes[0], "nxdomain": s.wire.rcodes[1], "servfail": s.wire.rcodes[2], "refused": s.wire.rcodes[3],
                "other_rcode": s.wire.rcodes[4], "eni_packets": s.wire.eni, "cache_hits": s.wire.cache_hits, "cache_misses": s.wire.cache_misses,
            })
        })
        .collect();
    let n = &r.net;
    json!({
        "label": run.label,
        "seed": r.seed,
        "duration_s": r.duration.as_secs_f64(),
        "trace_hash": format!("{:016x}", r.trace_hash),
        "unfinished_ages_s": r.unfinished.iter().map(std::time::Duration::as_secs_f64).collect::<Vec<_>>(),
        "ok": run.checks.iter().all(|c| c.ok),
        "checks": run.checks,
        "figures": figures,
        "net": {
            "packets": n.packets, "dropped_race": n.dropped_race, "dropped_table_full": n.dropped_table_full,
            "dropped_eni": n.dropped_eni, "dropped_dead": n.dropped_dead, "dropped_ipvs": n.dropped_ipvs,
            "dropped_blackhole": n.dropped_blackhole, "dropped_fragments": n.dropped_fragments, "dropped_loss": n.dropped_loss,
            "dropped_unnat": n.dropped_unnat,
            "rejected": n.rejected, "upstream_packets": n.upstream_packets, "upstream_queries": n.upstream_queries,
            "tcp_connections": n.tcp_connections, "restarts": n.restarts, "probes": n.probes, "probes_failed": n.probes_failed,
        },
        "conntrack_max": r.conntrack_max,
        "events": r.events.iter().filter(|(_, e)| !is_race(e)).map(|(t, e)| json!({"t_s": t.as_secs_f64(), "event": e})).collect::<Vec<_>>(),
        "series": series,
        "lookups": lookups_json(run),
        "faults": run.spec.faults.iter().enumerate().map(|(i, (at, f))| json!({"index": i, "at_s": at.as_secs_f64(), "fault": f.label()})).collect::<Vec<_>>(),
        "explain": crate::explain::json(r, run.spec),
    })
}

/// Lookups are listed one by one only when the scenario traces wire queries (at most 100,000).
fn lookups_json(run: &Run<'_>) -> serde_json::Value {
    if !run.spec.trace_queries {
        return serde_json::Value::Null;
    }
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    run.report
        .lookups
        .iter()
        .take(100_000)
        .map(|l| {
            json!({
                "pod": l.pod, "library": l.library.to_string(), "name": l.name, "start_ms": ms(l.start), "end_ms": ms(l.end),
                "outcome": l.outcome.as_str(), "addr": l.addr.map(|a| a.to_string()), "cached": l.cached,
                "queries": l.wire.iter().map(|q| json!({
                    "t_ms": ms(q.at), "qname": q.qname, "qtype": q.qtype,
                    "transport": format!("{:?}", q.transport).to_lowercase(), "server": q.server.to_string(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect()
}

fn is_race(event: &str) -> bool {
    event.starts_with("conntrack insertion race")
}

/// Colours per run: the first run warm, the second cool, a shade per line.
const PALETTES: [[&str; 6]; 2] = [
    ["#c0392b", "#e67e22", "#f1c40f", "#8e44ad", "#d35400", "#7f8c8d"],
    ["#2980b9", "#27ae60", "#16a085", "#2c3e50", "#1abc9c", "#34495e"],
];

/// One chart: a line per (metric, run).
fn chart(title: &str, y: &str, runs: &[Run<'_>], metrics: &[Metric<'_>], extra: Vec<Series<'_>>, markers: &[(f64, String)]) -> String {
    let labels: Vec<Vec<String>> = runs
        .iter()
        .map(|r| metrics.iter().map(|(m, _)| if runs.len() > 1 { format!("{}: {m}", r.label) } else { m.to_string() }).collect())
        .collect();
    let mut series = Vec::new();
    for (k, r) in runs.iter().enumerate() {
        for (i, (_, f)) in metrics.iter().enumerate() {
            series.push(Series {
                label: &labels[k][i],
                color: PALETTES[k % 2][i % 6],
                points: r.report.series.iter().map(|s| (s.t.as_secs_f64(), f(s))).collect(),
            });
        }
    }
    series.extend(extra);
    marked_chart(title, "simulated seconds", y, &series, markers)
}

/// The HTML report of one run, or of two overlaid.
pub fn html(title: &str, runs: &[Run<'_>]) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<p>Simulated with the real ndots resolver as cluster DNS{}.</p>",
        if runs.len() > 1 { "; both runs overlaid" } else { "" }
    );
    body.push_str("<table><tr><th></th>");
    for r in runs {
        let _ = write!(body, "<th>{}</th>", escape(r.label));
    }
    body.push_str("</tr>");
    let cols: Vec<_> = runs.iter().map(figures).collect();
    for i in 0..cols.first().map_or(0, Vec::len) {
        let _ = write!(body, "<tr><td>{}</td>", escape(cols[0][i].0));
        for c in &cols {
            let _ = write!(body, "<td>{}</td>", escape(&c[i].1));
        }
        body.push_str("</tr>");
    }
    body.push_str("</table>");
    for r in runs {
        for c in r.checks {
            let _ = write!(
                body,
                "<p class=\"check {}\">{}expect <b>{}</b>: measured {:.4}, limit {} — {}</p>",
                if c.ok { "ok" } else { "failed" },
                if runs.len() > 1 { format!("{}: ", escape(r.label)) } else { String::new() },
                c.name,
                c.measured,
                c.limit,
                if c.ok { "ok" } else { "<b style=\"color:#c0392b\">FAILED</b>" }
            );
        }
    }
    // Faults and what the cluster did about them, marked on every time axis.
    // An event every run had at the same time is shown once, without a run's label.
    let mut markers: Vec<(f64, String)> = Vec::new();
    let events = |r: &Run<'_>| r.report.events.iter().filter(|(_, e)| !is_race(e)).take(40).cloned().collect::<Vec<_>>();
    let all: Vec<_> = runs.iter().map(events).collect();
    for (k, r) in runs.iter().enumerate() {
        for (t, e) in &all[k] {
            let shared = all.iter().all(|evs| evs.iter().any(|(t2, e2)| t2 == t && e2 == e));
            if shared && k > 0 {
                continue;
            }
            let label = if runs.len() > 1 && !shared { format!("{}: {e}", r.label) } else { e.clone() };
            markers.push((t.as_secs_f64(), label));
        }
    }
    markers.sort_by(|a, b| a.0.total_cmp(&b.0));
    if !markers.is_empty() {
        body.push_str("<h2>Events</h2><ol>");
        for (t, e) in &markers {
            let _ = write!(body, "<li>{t:.1} s: {}</li>", escape(e));
        }
        body.push_str("</ol>");
    }
    let m = &markers;
    body.push_str("<h2>Lookups</h2>");
    body.push_str(&chart(
        "Application lookups per second",
        "lookups/s",
        runs,
        &[("lookups", &|s| s.lookups as f64), ("failed", &|s| s.failed as f64)],
        Vec::new(),
        m,
    ));
    body.push_str(&chart(
        "Lookup latency",
        "ms",
        runs,
        &[("p50", &|s| s.p50_ms), ("p99", &|s| s.p99_ms), ("max", &|s| s.max_ms)],
        Vec::new(),
        m,
    ));
    body.push_str("<h2>Queries</h2>");
    body.push_str(&chart(
        "Queries per second by type",
        "queries/s",
        runs,
        &[("A", &|s| s.wire.by_type[0] as f64), ("AAAA", &|s| s.wire.by_type[1] as f64), ("other", &|s| s.wire.by_type[2] as f64)],
        Vec::new(),
        m,
    ));
    let domain = runs.first().map_or("cluster.local".to_string(), |r| r.spec.cluster_domain.clone());
    let in_cluster = format!("{domain}.");
    body.push_str(&chart(
        "Queries per second by zone",
        "queries/s",
        runs,
        &[(in_cluster.as_str(), &|s| s.wire.cluster as f64), (". (everything else)", &|s| s.wire.external as f64)],
        Vec::new(),
        m,
    ));
    body.push_str(&chart(
        "Responses per second by rcode",
        "responses/s",
        runs,
        &[
            ("NOERROR", &|s| s.wire.rcodes[0] as f64),
            ("NXDOMAIN", &|s| s.wire.rcodes[1] as f64),
            ("SERVFAIL", &|s| s.wire.rcodes[2] as f64),
            ("REFUSED", &|s| s.wire.rcodes[3] as f64),
            ("other", &|s| s.wire.rcodes[4] as f64),
        ],
        Vec::new(),
        m,
    ));
    body.push_str(&chart(
        "Resolver cache hit ratio",
        "hits / (hits + misses)",
        runs,
        &[("hit ratio", &|s| {
            let t = s.wire.cache_hits + s.wire.cache_misses;
            if t == 0 { 0.0 } else { s.wire.cache_hits as f64 / t as f64 }
        })],
        Vec::new(),
        m,
    ));
    body.push_str("<h2>Kernel and cloud</h2>");
    let t_end = runs.iter().map(|r| r.report.duration.as_secs_f64()).fold(1.0, f64::max);
    let ct_limit = runs.first().and_then(|r| r.report.conntrack_max.first().copied()).unwrap_or(0) as f64;
    let limit_line = |label: &'static str, v: f64| Series { label, color: "#000", points: vec![(0.0, v), (t_end, v)] };
    let nodes = runs.iter().map(|r| r.spec.nodes).max().unwrap_or(0);
    let shown = nodes.min(6);
    let node_metrics: Vec<OwnedMetric> = (0..shown)
        .map(|n| {
            (
                format!("node {n}"),
                Box::new(move |s: &Second| s.conntrack.get(n).copied().unwrap_or(0) as f64) as Box<dyn Fn(&Second) -> f64>,
            )
        })
        .collect();
    let mut ct: Vec<Metric<'_>> = node_metrics.iter().map(|(l, f)| (l.as_str(), f.as_ref())).collect();
    let busiest = |s: &Second| s.conntrack.iter().copied().max().unwrap_or(0) as f64;
    if nodes > shown {
        ct.push(("busiest node", &busiest));
    }
    body.push_str(&chart("Conntrack entries per node", "entries", runs, &ct, vec![limit_line("nf_conntrack_max", ct_limit)], m));
    let eni_metrics: Vec<OwnedMetric> = (0..shown)
        .map(|n| {
            (format!("node {n}"), Box::new(move |s: &Second| s.wire.eni.get(n).copied().unwrap_or(0) as f64) as Box<dyn Fn(&Second) -> f64>)
        })
        .collect();
    let mut eni: Vec<Metric<'_>> = eni_metrics.iter().map(|(l, f)| (l.as_str(), f.as_ref())).collect();
    let busiest_eni = |s: &Second| s.wire.eni.iter().copied().max().unwrap_or(0) as f64;
    if nodes > shown {
        eni.push(("busiest ENI", &busiest_eni));
    }
    let eni_limit =
        runs.first().and_then(|r| r.spec.eni_limit).map(|e| vec![limit_line("ENI limit (packets/s)", e.rate_per_sec)]).unwrap_or_default();
    body.push_str(&chart("Packets per second from each node's ENI to the cloud resolver", "packets/s", runs, &eni, eni_limit, m));
    body.push_str("<h2>Resolvers</h2>");
    body.push_str(&chart("Cluster DNS replicas", "replicas", runs, &[("replicas alive", &|s| s.replicas as f64)], Vec::new(), m));
    let mem_limit = runs
        .first()
        .and_then(|r| r.spec.replica_memory)
        .map(|mm| vec![limit_line("memory limit", mm.limit as f64 / f64::from(1u32 << 20))])
        .unwrap_or_default();
    body.push_str(&chart(
        "Replica memory (largest replica)",
        "MiB",
        runs,
        &[("memory", &|s| s.memory_max as f64 / f64::from(1u32 << 20))],
        mem_limit,
        m,
    ));
    page(title, &body)
}
