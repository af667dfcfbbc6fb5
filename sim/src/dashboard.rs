//! What people look at after a run: the terminal table, the JSON for machines, and a self-contained
//! HTML report with the charts platform teams know from their CoreDNS and node dashboards. One run,
//! or two overlaid (`ndots-sim compare`).

use std::fmt::Write as _;

use serde_json::json;

use crate::file::Check;
use crate::html::{Chart, Limit, Series, escape, fmt_num, page};
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
    if runs.len() == 2 {
        let _ = write!(o, "  {:>14}", "change");
    }
    o.push('\n');
    for i in 0..cols.first().map_or(0, Vec::len) {
        let _ = write!(o, "{:w0$}", cols[0][i].0);
        for (c, w) in cols.iter().zip(&widths) {
            let _ = write!(o, "  {:>w$}", c[i].1, w = *w);
        }
        if let [a, b] = &cols[..] {
            let _ = write!(o, "  {:>14}", change_of(a[i].0, a[i].2, b[i].2));
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

/// B against A: the difference and, when A is not zero, the ratio (`-99.1%`, `x12.0`); `=` when
/// equal.
pub fn change(a: f64, b: f64) -> String {
    if (a - b).abs() < 1e-9 {
        return "=".into();
    }
    if a.abs() < 1e-9 {
        return format!("+{}", crate::html::fmt_num((b * 100.0).round() / 100.0));
    }
    let r = b / a;
    if r >= 2.0 {
        format!("x{r:.1}")
    } else if ((r - 1.0) * 100.0).abs() < 0.05 {
        "≈".into()
    } else {
        format!("{:+.1}%", (r - 1.0) * 100.0)
    }
}

/// `change` for a figure by its name: a percentage or a ratio changes by points.
pub fn change_of(name: &str, a: f64, b: f64) -> String {
    if name.contains('%') || name.contains("ratio") {
        let d = b - a;
        let unit = if name.contains('%') { " pt" } else { "" };
        return if d.abs() < 5e-4 { "=".into() } else { format!("{d:+.3}{unit}") };
    }
    change(a, b)
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
        "findings": r.findings.iter().map(|x| { let f = &x.finding; json!({"at": x.at, "first_s": x.first.as_secs_f64(), "last_s": x.last.as_secs_f64(), "detector": f.detector, "subject": f.subject, "recent": f.recent, "total": f.total, "message": f.message, "fix": f.fix}) }).collect::<Vec<_>>(),
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

/// How a chart is drawn, beyond its lines.
#[derive(Default)]
struct Look<'a> {
    caption: &'a str,
    log_y: bool,
    integer: bool,
    limits: Vec<Limit<'a>>,
    y_top: Option<f64>,
}

/// One chart: a line per (metric, run), plus `extra` lines.
fn chart(
    title: &str,
    y: &str,
    runs: &[Run<'_>],
    metrics: &[Metric<'_>],
    extra: Vec<Series<'_>>,
    look: Look<'_>,
    markers: &[(f64, String)],
) -> String {
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
    crate::html::chart(&Chart {
        title,
        caption: look.caption,
        x_label: "simulated seconds",
        y_label: y,
        series: &series,
        limits: &look.limits,
        markers,
        log_y: look.log_y,
        integer: look.integer,
        y_top: look.y_top,
    })
}

/// The nodes worth a line of their own: the `n` with the highest peak of `f` (by index when equal).
fn top_nodes(runs: &[Run<'_>], n: usize, f: impl Fn(&Second, usize) -> u64) -> Vec<usize> {
    let nodes = runs.iter().map(|r| r.spec.nodes).max().unwrap_or(0);
    let mut peaks: Vec<(u64, usize)> =
        (0..nodes).map(|i| (runs.iter().flat_map(|r| r.report.series.iter().map(|s| f(s, i))).max().unwrap_or(0), i)).collect();
    peaks.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut top: Vec<usize> = peaks.into_iter().take(n).map(|p| p.1).collect();
    top.sort_unstable();
    top
}

/// The report's header: what was run, how to run it again.
pub struct Header<'a> {
    /// (what, value) rows: scenario files, overrides, seed, duration.
    pub inputs: Vec<(&'a str, String)>,
    /// The commands that replay each run.
    pub replay: Vec<String>,
}

/// The HTML report of one run, or of two overlaid: a header with the inputs and the replay
/// command, the figures (with a change column for two runs), the expectations, what went wrong,
/// the events, and the charts.
pub fn html(title: &str, runs: &[Run<'_>], header: &Header<'_>) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<p>Simulated by ndots-sim {} with the real ndots resolver code{}.</p><table class=\"header\">",
        env!("CARGO_PKG_VERSION"),
        if runs.len() > 1 { "; both runs overlaid" } else { "" }
    );
    for (k, v) in &header.inputs {
        let _ = write!(body, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v));
    }
    for r in &header.replay {
        let _ = write!(body, "<tr><th>replay</th><td><code>{}</code></td></tr>", escape(r));
    }
    body.push_str("</table><h2>Figures</h2><table><tr><th></th>");
    for r in runs {
        let _ = write!(body, "<th>{}</th>", escape(r.label));
    }
    if runs.len() == 2 {
        body.push_str("<th>change</th>");
    }
    body.push_str("</tr>");
    let cols: Vec<_> = runs.iter().map(figures).collect();
    for i in 0..cols.first().map_or(0, Vec::len) {
        let _ = write!(body, "<tr><td>{}</td>", escape(cols[0][i].0));
        for c in &cols {
            let _ = write!(body, "<td class=\"num\">{}</td>", escape(&c[i].1));
        }
        if let [a, b] = &cols[..] {
            let _ = write!(body, "<td class=\"num\">{}</td>", escape(&change_of(a[i].0, a[i].2, b[i].2)));
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
    body.push_str("<h2>What went wrong</h2>");
    for r in runs {
        let top = crate::explain::top_causes(r.report, r.spec);
        let n: usize = top.iter().map(|t| t.0).sum();
        let all = r.report.lookups.iter().filter(|l| !l.cached).count() + r.report.stuck.len();
        let _ = write!(
            body,
            "<p>{}{n} of {all} lookups failed or took ≥ {} s{}</p>",
            if runs.len() > 1 { format!("<b>{}</b>: ", escape(r.label)) } else { String::new() },
            crate::explain::SLOW.as_secs(),
            if n > 0 { "; by what went wrong first:" } else { "." }
        );
        if n > 0 {
            body.push_str("<table><tr><th>lookups</th><th>what went wrong first</th></tr>");
            for (count, text, _) in top.iter().take(10) {
                let _ = write!(body, "<tr><td class=\"num\">{count}</td><td>{}</td></tr>", escape(text));
            }
            body.push_str("</table>");
        }
        let rows = crate::explain::group_rows(r.report, r.spec);
        if rows.len() > 1 {
            body.push_str("<table><tr><th>pod group</th><th>pods</th><th>lookups</th><th>ok %</th><th>p50 ms</th><th>p99 ms</th><th>slow or failed</th></tr>");
            for g in &rows {
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.3}</td><td class=\"num\">{:.2}</td><td class=\"num\">{:.1}</td><td class=\"num\">{}</td></tr>",
                    escape(&g.label),
                    g.pods,
                    g.lookups,
                    g.ok_pct(),
                    g.ms(0.5),
                    g.ms(0.99),
                    g.slow_or_failed
                );
            }
            body.push_str("</table>");
        }
    }
    body.push_str("<h2>What the resolvers' detectors found</h2>");
    for r in runs {
        let who = if runs.len() > 1 { format!("<b>{}</b>: ", escape(r.label)) } else { String::new() };
        if r.report.findings.is_empty() {
            let _ = write!(body, "<p>{who}nothing.</p>");
            continue;
        }
        let _ = write!(body, "<p>{who}</p><table><tr><th>detector</th><th>where</th><th>when</th><th>finding</th><th>fix</th></tr>");
        for x in &r.report.findings {
            let f = &x.finding;
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td style=\"white-space:nowrap\">{}</td><td>{}</td><td>{}</td></tr>",
                f.detector,
                escape(&x.at),
                x.when(),
                escape(&f.message),
                escape(f.fix)
            );
        }
        body.push_str("</table>");
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
            let _ = write!(body, "<li>{} s: {}</li>", fmt_num((t * 10.0).round() / 10.0), escape(e));
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
        Look { caption: "Lookups the applications finished each second, and how many of them failed.", integer: true, ..Look::default() },
        m,
    ));
    body.push_str(&chart(
        "Lookup latency",
        "ms",
        runs,
        &[
            ("p50", &|s| if s.lookups == 0 { f64::NAN } else { s.p50_ms }),
            ("p99", &|s| if s.lookups == 0 { f64::NAN } else { s.p99_ms }),
            ("max", &|s| if s.lookups == 0 { f64::NAN } else { s.max_ms }),
        ],
        Vec::new(),
        Look {
            caption: "Per second, of the lookups finished that second (application cache hits left out).\nLog scale: a 5 s retransmission and a 0.1 ms cache hit on one axis; a gap: none finished.",
            log_y: true,
            ..Look::default()
        },
        m,
    ));
    body.push_str(&chart(
        "Success and SERVFAIL",
        "%",
        runs,
        &[
            ("lookups ok %", &|s| if s.lookups == 0 { f64::NAN } else { 100.0 * (s.lookups - s.failed) as f64 / s.lookups as f64 }),
            ("SERVFAIL % of responses", &|s| {
                let t: u64 = s.wire.rcodes.iter().sum();
                if t == 0 { f64::NAN } else { 100.0 * s.wire.rcodes[2] as f64 / t as f64 }
            }),
        ],
        Vec::new(),
        Look {
            caption: "The share of the lookups finished each second that succeeded, and of the answers pods got that were SERVFAIL.\nA gap: nothing finished (or was answered) that second.",
            y_top: Some(100.0),
            ..Look::default()
        },
        m,
    ));
    body.push_str("<h2>Queries</h2>");
    body.push_str(&chart(
        "Queries per second by type",
        "queries/s",
        runs,
        &[("A", &|s| s.wire.by_type[0] as f64), ("AAAA", &|s| s.wire.by_type[1] as f64), ("other", &|s| s.wire.by_type[2] as f64)],
        Vec::new(),
        Look { caption: "What the pods' libraries put on the wire (every search-path try and retry).", integer: true, ..Look::default() },
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
        Look {
            caption: "Under the cluster domain (the search list's expansions included), and everything else.",
            integer: true,
            ..Look::default()
        },
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
        Look { caption: "The answers pods received; NXDOMAIN is mostly the search list's misses.", integer: true, ..Look::default() },
        m,
    ));
    body.push_str(&chart(
        "Resolver cache hit ratio",
        "hits / (hits + misses)",
        runs,
        &[("hit ratio", &|s| {
            let t = s.wire.cache_hits + s.wire.cache_misses;
            if t == 0 { f64::NAN } else { s.wire.cache_hits as f64 / t as f64 }
        })],
        Vec::new(),
        Look { caption: "The cluster DNS and node-local caches together.", y_top: Some(1.0), ..Look::default() },
        m,
    ));
    body.push_str("<h2>Kernel and cloud</h2>");
    let ct_limit = runs.first().and_then(|r| r.report.conntrack_max.first().copied()).unwrap_or(0) as f64;
    let nodes = runs.iter().map(|r| r.spec.nodes).max().unwrap_or(0);
    let ct_top = top_nodes(runs, 5, |s, i| s.conntrack.get(i).copied().unwrap_or(0) as u64);
    let node_metrics: Vec<OwnedMetric> = ct_top
        .iter()
        .map(|&n| {
            (
                format!("node {n}"),
                Box::new(move |s: &Second| s.conntrack.get(n).copied().unwrap_or(0) as f64) as Box<dyn Fn(&Second) -> f64>,
            )
        })
        .collect();
    let mut ct: Vec<Metric<'_>> = node_metrics.iter().map(|(l, f)| (l.as_str(), f.as_ref())).collect();
    let others =
        |s: &Second| s.conntrack.iter().enumerate().filter(|(i, _)| !ct_top.contains(i)).map(|(_, v)| *v).max().unwrap_or(0) as f64;
    if nodes > ct_top.len() {
        ct.push(("the other nodes' highest", &others));
    }
    let ct_caption = format!(
        "Entries in each node's table; the {} busiest nodes of {nodes} by peak, the rest as one line.\nA full table drops new flows (insert_failed).",
        ct_top.len()
    );
    body.push_str(&chart(
        "Conntrack entries per node",
        "entries",
        runs,
        &ct,
        Vec::new(),
        Look { caption: &ct_caption, integer: true, limits: vec![Limit { label: "nf_conntrack_max", value: ct_limit }], ..Look::default() },
        m,
    ));
    let eni_top = top_nodes(runs, 5, |s, i| s.wire.eni.get(i).copied().unwrap_or(0));
    let eni_metrics: Vec<OwnedMetric> = eni_top
        .iter()
        .map(|&n| {
            (format!("node {n}"), Box::new(move |s: &Second| s.wire.eni.get(n).copied().unwrap_or(0) as f64) as Box<dyn Fn(&Second) -> f64>)
        })
        .collect();
    let mut eni: Vec<Metric<'_>> = eni_metrics.iter().map(|(l, f)| (l.as_str(), f.as_ref())).collect();
    let others_eni =
        |s: &Second| s.wire.eni.iter().enumerate().filter(|(i, _)| !eni_top.contains(i)).map(|(_, v)| *v).max().unwrap_or(0) as f64;
    if nodes > eni_top.len() {
        eni.push(("the other nodes' highest", &others_eni));
    }
    let eni_limit: Vec<Limit<'_>> = runs
        .first()
        .and_then(|r| r.spec.eni_limit)
        .map(|e| vec![Limit { label: "ENI limit (packets/s)", value: e.rate_per_sec }])
        .unwrap_or_default();
    body.push_str(&chart(
        "Packets per second from each node's ENI to the cloud resolver",
        "packets/s",
        runs,
        &eni,
        Vec::new(),
        Look {
            caption: "Over the limit, the cloud drops packets silently (linklocal_allowance_exceeded).",
            integer: true,
            limits: eni_limit,
            ..Look::default()
        },
        m,
    ));
    body.push_str("<h2>Resolvers</h2>");
    body.push_str(&chart(
        "Cluster DNS replicas",
        "replicas",
        runs,
        &[("replicas alive", &|s| s.replicas as f64)],
        Vec::new(),
        Look {
            caption: "Replicas serving (a deleted one is recreated; a crashed one restarts after its back-off).",
            integer: true,
            ..Look::default()
        },
        m,
    ));
    let mem_limit: Vec<Limit<'_>> = runs
        .first()
        .and_then(|r| r.spec.replica_memory)
        .map(|mm| vec![Limit { label: "memory limit (MiB)", value: mm.limit as f64 / f64::from(1u32 << 20) }])
        .unwrap_or_default();
    body.push_str(&chart(
        "Replica memory (largest replica)",
        "MiB",
        runs,
        &[("memory", &|s| s.memory_max as f64 / f64::from(1u32 << 20))],
        Vec::new(),
        Look { caption: "By the scenario's memory model; over the limit the replica is OOM-killed.", limits: mem_limit, ..Look::default() },
        m,
    ));
    page(title, &body)
}
