//! Why lookups were slow or failed: the causes the simulator saw for each one, the summary that
//! names the top ones, the rows per pod group, and the story of one lookup (`ndots-sim explain`).
//!
//! A cause is recorded only where the simulator knows it: a packet of the lookup dropped on its
//! way (and by what), an error answer, a resolver it asked that lost a packet upstream or
//! restarted while it waited, a wait for a thread, or the run ending on it. A lookup slow for
//! none of these (a long TCP handshake, a slow upstream) is "no drop seen", and the fault active
//! at the time is named beside it.

pub mod command;

use std::time::Duration;

pub use crate::cause::{Cause, Drop, SLOW, primary};

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::report::{LookupRecord, Report, quantile_ms};
use crate::spec::ClusterSpec;

/// The lookups `explain` covers: finished slow or failed ones (not what an application cache
/// answered), then those stuck at the end.
pub fn explained(r: &Report) -> impl Iterator<Item = &LookupRecord> {
    r.lookups.iter().filter(|l| !l.cached && (!l.ok || l.latency() >= SLOW)).chain(r.stuck.iter())
}

/// The fault a lookup's trouble came after: the last one (not a repair) at or before the first
/// thing that went wrong (or the lookup's end, when nothing did), at most 60 s before it (index,
/// label, time).
pub fn fault_near(spec: &ClusterSpec, l: &LookupRecord) -> Option<(usize, String, Duration)> {
    let at = l.causes.first().map_or(l.end, |c| c.0);
    spec.faults
        .iter()
        .enumerate()
        .filter(|(_, (t, f))| !f.is_repair() && *t <= at && *t + Duration::from_secs(60) >= at)
        .max_by_key(|(i, (t, _))| (*t, *i))
        .map(|(i, (t, f))| (i, f.label(), *t))
}

/// A cause's words with the fault it came after, for one line of a summary.
fn headline(cause: Option<Cause>, fault: &Option<(usize, String, Duration)>) -> String {
    let what = cause.map_or_else(|| "slow, no drop seen (a slow path or upstream, a TCP handshake)".to_string(), Cause::text);
    match fault {
        Some((i, label, at)) => format!("{what}; after fault {i} ({label} at {:.0} s)", at.as_secs_f64()),
        None => what,
    }
}

/// Explained lookups counted by (primary cause, fault nearby), most first.
pub fn top_causes(r: &Report, spec: &ClusterSpec) -> Vec<(usize, String, String)> {
    let mut counts: BTreeMap<(Option<Cause>, Option<usize>), (usize, String)> = BTreeMap::new();
    for l in explained(r) {
        let cause = primary(&l.causes);
        let fault = fault_near(spec, l);
        let e = counts.entry((cause, fault.as_ref().map(|f| f.0))).or_insert_with(|| (0, headline(cause, &fault)));
        e.0 += 1;
    }
    let mut v: Vec<(usize, String, String)> = counts
        .into_iter()
        .map(|((c, f), (n, text))| {
            (n, text, format!("{}{}", c.map_or("none".into(), Cause::key), f.map_or(String::new(), |f| format!("@fault{f}"))))
        })
        .collect();
    v.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    v
}

/// The summary printed under a run's table: how many lookups were slow or failed, and why.
pub fn summary(r: &Report, spec: &ClusterSpec) -> String {
    let n = explained(r).count();
    let all = r.lookups.iter().filter(|l| !l.cached).count() + r.stuck.len();
    let mut o = String::new();
    if n == 0 {
        let _ = writeln!(o, "no lookup failed or took {} s or more", SLOW.as_secs());
        return o;
    }
    let _ = writeln!(o, "{n} of {all} lookups failed or took >= {} s; by what went wrong first:", SLOW.as_secs());
    let top = top_causes(r, spec);
    for (count, text, _) in top.iter().take(8) {
        let _ = writeln!(o, "  {count:>7}  {text}");
    }
    if top.len() > 8 {
        let rest: usize = top[8..].iter().map(|t| t.0).sum();
        let _ = writeln!(o, "  {rest:>7}  other causes ({} kinds)", top.len() - 8);
    }
    o
}

/// One row per pod group: who suffered.
pub fn group_rows(r: &Report, spec: &ClusterSpec) -> Vec<GroupRow> {
    let mut rows: Vec<GroupRow> = spec
        .pods
        .iter()
        .enumerate()
        .map(|(i, g)| GroupRow {
            label: format!("pods.{i} {} {}", g.namespace, g.library),
            pods: g.count,
            lookups: 0,
            ok: 0,
            slow_or_failed: 0,
            latencies: Vec::new(),
        })
        .collect();
    for l in r.lookups.iter().filter(|l| !l.cached).chain(r.stuck.iter()) {
        let Some(row) = rows.get_mut(l.group) else { continue };
        row.lookups += 1;
        row.ok += usize::from(l.ok);
        row.slow_or_failed += usize::from(!l.ok || l.latency() >= SLOW);
        row.latencies.push(l.latency());
    }
    rows
}

#[derive(Debug, Clone)]
pub struct GroupRow {
    pub label: String,
    pub pods: usize,
    pub lookups: usize,
    pub ok: usize,
    pub slow_or_failed: usize,
    latencies: Vec<Duration>,
}

impl GroupRow {
    pub fn ok_pct(&self) -> f64 {
        if self.lookups == 0 { 100.0 } else { 100.0 * self.ok as f64 / self.lookups as f64 }
    }
    pub fn ms(&self, q: f64) -> f64 {
        quantile_ms(self.latencies.clone(), q)
    }
}

/// The per-group table (and per library, when several groups share one).
pub fn groups_table(r: &Report, spec: &ClusterSpec) -> String {
    let rows = group_rows(r, spec);
    if rows.len() < 2 {
        return String::new();
    }
    let w = rows.iter().map(|g| g.label.len()).max().unwrap_or(0).max(9);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:w$}  {:>5}  {:>8}  {:>8}  {:>8}  {:>8}  {:>9}",
        "pod group", "pods", "lookups", "ok %", "p50 ms", "p99 ms", "slow/fail"
    );
    for g in &rows {
        let _ = writeln!(
            o,
            "{:w$}  {:>5}  {:>8}  {:>8.3}  {:>8.2}  {:>8.1}  {:>9}",
            g.label,
            g.pods,
            g.lookups,
            g.ok_pct(),
            g.ms(0.5),
            g.ms(0.99),
            g.slow_or_failed
        );
    }
    let mut by_lib: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    for (g, spec_g) in rows.iter().zip(&spec.pods) {
        let e = by_lib.entry(spec_g.library.to_string()).or_default();
        e.0 += g.lookups;
        e.1 += g.ok;
        e.2 += g.slow_or_failed;
    }
    if by_lib.len() > 1 && by_lib.len() < rows.len() {
        for (lib, (n, ok, bad)) in &by_lib {
            let pct = if *n == 0 { 100.0 } else { 100.0 * *ok as f64 / *n as f64 };
            let _ = writeln!(o, "{:w$}  {:>5}  {n:>8}  {pct:>8.3}  {:>8}  {:>8}  {bad:>9}", format!("library {lib}"), "", "", "");
        }
    }
    o
}

/// The explained lookups as JSON (at most 10,000), with the summary and the group rows: what
/// `ndots-sim explain` reads.
pub fn json(r: &Report, spec: &ClusterSpec) -> serde_json::Value {
    use serde_json::json;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let finished = explained(r).count() - r.stuck.len();
    let lookups: Vec<serde_json::Value> = explained(r)
        .take(10_000)
        .enumerate()
        .map(|(id, l)| {
            let fault = fault_near(spec, l);
            json!({
                "id": id, "pod": l.pod, "group": l.group, "library": l.library.to_string(), "name": l.name,
                "start_ms": ms(l.start), "end_ms": ms(l.end), "outcome": if id >= finished { "stuck" } else { l.outcome.as_str() },
                "queries": l.queries,
                "causes": l.causes.iter().map(|(t, c)| json!({"t_ms": ms(*t), "cause": c.key(), "text": c.text()})).collect::<Vec<_>>(),
                "fault": fault.map(|(i, label, at)| json!({"index": i, "fault": label, "at_s": at.as_secs_f64()})),
                "wire": l.wire.iter().map(|q| json!({
                    "t_ms": ms(q.at), "qname": q.qname, "qtype": q.qtype,
                    "transport": format!("{:?}", q.transport).to_lowercase(), "server": q.server.to_string(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "slow_ms": ms(SLOW),
        "traced": spec.trace_queries,
        "top": top_causes(r, spec).into_iter().map(|(n, text, key)| json!({"count": n, "cause": key, "text": text})).collect::<Vec<_>>(),
        "groups": group_rows(r, spec).iter().map(|g| json!({
            "group": g.label, "pods": g.pods, "lookups": g.lookups, "ok_pct": g.ok_pct(), "p50_ms": g.ms(0.5), "p99_ms": g.ms(0.99),
            "slow_or_failed": g.slow_or_failed,
        })).collect::<Vec<_>>(),
        "lookups": lookups,
    })
}

/// What the resolvers' detectors raised during the run (ndots's `detect` plugin), a line each.
pub fn findings_text(r: &Report) -> String {
    let mut o = String::new();
    if r.findings.is_empty() {
        let _ = writeln!(o, "the resolvers' detectors found nothing");
        return o;
    }
    let _ = writeln!(o, "the resolvers' detectors found:");
    for x in &r.findings {
        let f = &x.finding;
        let _ = writeln!(o, "  [{}] {}, {}: {}\n      fix: {}", f.detector, x.at, x.when(), f.message, f.fix);
    }
    o
}
