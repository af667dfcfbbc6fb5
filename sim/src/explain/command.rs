//! `ndots-sim explain RUN.json [--lookup ID]`: what went wrong in a run, from the JSON `run --json`
//! or `run --report DIR` wrote: the top causes, the pod groups, the slowest lookups, and the story
//! of one lookup, its queries (when the run traced them) and what happened to them, in time order.

use std::fmt::Write;
use std::path::Path;
use std::process::ExitCode;

use serde_json::Value;

fn bad(msg: String) -> ExitCode {
    eprintln!("ndots-sim explain: {msg}");
    ExitCode::from(2)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// The run in a JSON file: a run's object, or side `a`/`b` of a compare.
fn pick<'a>(doc: &'a Value, side: Option<&str>) -> Result<&'a Value, String> {
    match (doc.get("a"), side) {
        (Some(_), Some(x @ ("a" | "b"))) => Ok(&doc[x]),
        (Some(_), None) => Ok(&doc["b"]),
        (Some(_), Some(x)) => Err(format!("--side {x}: a compare has sides a and b")),
        (None, Some(_)) => Err("--side is for a compare's JSON; this is one run".into()),
        (None, None) => Ok(doc),
    }
}

/// The text `explain` prints.
pub fn text(doc: &Value, side: Option<&str>, lookup: Option<usize>, source: &str) -> Result<String, String> {
    let run = pick(doc, side)?;
    let e = run.get("explain").filter(|e| e.is_object()).ok_or_else(|| {
        format!("{source}: no `explain` section; write the JSON with this ndots-sim (`ndots-sim run FILE --json` or `--report DIR`)")
    })?;
    let lookups = e["lookups"].as_array().map(Vec::as_slice).unwrap_or_default();
    let groups = e["groups"].as_array().map(Vec::as_slice).unwrap_or_default();
    let group_label = |g: &Value| groups.get(g.as_u64().unwrap_or(0) as usize).map_or("?", |x| s(&x["group"])).to_string();
    let mut o = String::new();
    let _ = writeln!(o, "{} · seed {} · {:.0} simulated s", s(&run["label"]), run["seed"], f(&run["duration_s"]));
    if let Some(r) = run["replay"].as_str() {
        let _ = writeln!(o, "replay: {r}");
    }
    if let Some(id) = lookup {
        let l = lookups.iter().find(|l| l["id"].as_u64() == Some(id as u64)).ok_or_else(|| {
            format!(
                "{source}: no explained lookup {id}; the {} explained are numbered 0 to {}",
                lookups.len(),
                lookups.len().saturating_sub(1)
            )
        })?;
        let (start, end) = (f(&l["start_ms"]) / 1000.0, f(&l["end_ms"]) / 1000.0);
        let _ = writeln!(
            o,
            "\nlookup {id}: `{}` from pod {} ({}), asked at {start:.3} s, {} after {:.0} ms ({} queries on the wire)",
            s(&l["name"]),
            l["pod"],
            group_label(&l["group"]),
            match s(&l["outcome"]) {
                "stuck" => "still waiting when the run ended".to_string(),
                out => format!("ended `{out}` at {end:.3} s"),
            },
            (end - start) * 1000.0,
            l["queries"]
        );
        // The wire queries and the causes, merged in time order.
        let mut lines: Vec<(f64, String)> = Vec::new();
        for q in l["wire"].as_array().into_iter().flatten() {
            let qtype = match q["qtype"].as_u64() {
                Some(1) => "A".to_string(),
                Some(28) => "AAAA".to_string(),
                Some(t) => format!("TYPE{t}"),
                None => "?".into(),
            };
            lines.push((f(&q["t_ms"]), format!("query {qtype} {} over {} to {}", s(&q["qname"]), s(&q["transport"]), s(&q["server"]))));
        }
        for c in l["causes"].as_array().into_iter().flatten() {
            lines.push((f(&c["t_ms"]), format!("<- {}", s(&c["text"]))));
        }
        lines.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (t, line) in &lines {
            let _ = writeln!(o, "  {:>9.3} s  {line}", t / 1000.0);
        }
        if l["causes"].as_array().is_none_or(Vec::is_empty) {
            let _ = writeln!(o, "  no drop, error answer or crash seen on its path: a slow path (TCP, a slow upstream)");
        }
        if let Some(fault) = l["fault"].as_object() {
            let _ = writeln!(o, "context: after fault {} ({} at {:.0} s)", fault["index"], s(&fault["fault"]), f(&fault["at_s"]));
        }
        if e["traced"] != Value::Bool(true) {
            let replay = run["replay"].as_str().map_or(String::new(), |r| format!(": {r} --set trace_queries=true --json"));
            let _ = writeln!(o, "(its queries are listed when the run traces them{replay})");
        }
        return Ok(o);
    }
    let _ = writeln!(o, "\n{} lookups failed or took >= {:.0} s; by what went wrong first:", lookups.len(), f(&e["slow_ms"]) / 1000.0);
    for t in e["top"].as_array().into_iter().flatten().take(10) {
        let _ = writeln!(o, "  {:>7}  {}", u(&t["count"]), s(&t["text"]));
    }
    if groups.len() > 1 {
        let _ = writeln!(o, "\nby pod group:");
        for g in groups {
            let _ = writeln!(
                o,
                "  {:<40} {:>7} lookups  {:>8.3}% ok  p99 {:>8.1} ms  {:>6} slow or failed",
                s(&g["group"]),
                u(&g["lookups"]),
                f(&g["ok_pct"]),
                f(&g["p99_ms"]),
                u(&g["slow_or_failed"])
            );
        }
    }
    let mut slowest: Vec<&Value> = lookups.iter().collect();
    slowest.sort_by(|a, b| {
        (f(&b["end_ms"]) - f(&b["start_ms"]))
            .total_cmp(&(f(&a["end_ms"]) - f(&a["start_ms"])))
            .then(a["id"].as_u64().cmp(&b["id"].as_u64()))
    });
    if !slowest.is_empty() {
        let _ = writeln!(o, "\nthe slowest (ID, asked at, took, outcome, pod, name, what went wrong first):");
        for l in slowest.iter().take(12) {
            let first = l["causes"].as_array().and_then(|c| c.first()).map_or("no drop seen", |c| s(&c["text"]));
            let _ = writeln!(
                o,
                "  {:>5}  {:>8.3} s  {:>7.0} ms  {:<8} pod {:<5} {:<28} {first}",
                u(&l["id"]),
                f(&l["start_ms"]) / 1000.0,
                f(&l["end_ms"]) - f(&l["start_ms"]),
                s(&l["outcome"]),
                l["pod"].to_string(),
                s(&l["name"])
            );
        }
        let _ = writeln!(o, "\nndots-sim explain {source} --lookup ID tells one lookup's story.");
    }
    Ok(o)
}

pub fn run(file: &Path, side: Option<&str>, lookup: Option<usize>) -> ExitCode {
    let text_in = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return bad(format!("cannot read {}: {e}", file.display())),
    };
    let doc: Value = match serde_json::from_str(&text_in) {
        Ok(d) => d,
        Err(e) => {
            return bad(format!(
                "{}: not a run's JSON ({e}); write one with `ndots-sim run FILE --json > run.json` or `--report DIR`",
                file.display()
            ));
        }
    };
    match text(&doc, side, lookup, &file.display().to_string()) {
        Ok(t) => {
            print!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => bad(e),
    }
}
