//! The scenario-file commands of `ndots-sim` (`run`, `compare`, `sweep`, `lint`): argument handling
//! lives in the binary, the work here. Exit codes: 0 fine, 1 an expectation failed (or lint found a
//! warning), 2 the input could not be used.

use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::dashboard::{self, Run};
use crate::file::{self, Check, Scenario};
use crate::lint;
use crate::report::Report;

/// Exit code when an expectation failed.
const FAILED: u8 = 1;
/// Exit code when the input is unusable.
const BAD_INPUT: u8 = 2;

fn bad(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("ndots-sim: {msg}");
    ExitCode::from(BAD_INPUT)
}

/// The command line that replays a run.
pub fn replay_command(file: &Path, seed: u64, sets: &[String]) -> String {
    let mut c = format!("ndots-sim run {} --seed {seed}", shell_word(&file.display().to_string()));
    for s in sets {
        c.push_str(" --set ");
        c.push_str(&shell_word(s));
    }
    c
}

fn shell_word(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Runs a scenario, printing progress lines to stderr while the run is long.
pub fn simulate(sc: &Scenario, label: &str) -> Result<Report, crate::SimError> {
    let total = sc.spec.duration.as_secs_f64();
    let t0 = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let label = label.to_string();
    let mut last_print = Instant::now();
    let progress = move |now: Duration| {
        let wall = t0.elapsed().as_secs_f64();
        // Quiet for short runs; then once a second on a terminal, every 10 s in a log.
        let every = if tty { 1.0 } else { 10.0 };
        if wall < 2.0 || last_print.elapsed().as_secs_f64() < every {
            return;
        }
        last_print = Instant::now();
        let sim = now.as_secs_f64();
        let rate = sim / wall.max(1e-9);
        let eta = (total - sim).max(0.0) / rate.max(1e-9);
        let line = format!("{label}: simulated {sim:.0}/{total:.0} s · {rate:.2} simulated s per wall s · ETA {eta:.0} s");
        if tty {
            eprint!("\r{line}   ");
        } else {
            eprintln!("{line}");
        }
        let _ = std::io::stderr().flush();
    };
    let r = crate::run_with_progress(sc.spec.clone(), Box::new(progress));
    if tty && t0.elapsed().as_secs_f64() >= 3.0 {
        eprintln!();
    }
    r
}

fn load(file: &Path, sets: &[String], seed: Option<u64>) -> Result<Scenario, ExitCode> {
    let mut sc = file::load(file, sets).map_err(bad)?;
    if let Some(s) = seed {
        sc.spec.seed = s;
    }
    Ok(sc)
}

fn write_report(dir: &Path, name: &str, html: &str, json: &serde_json::Value) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let h = dir.join(format!("{name}.html"));
    std::fs::write(&h, html).map_err(|e| format!("{}: {e}", h.display()))?;
    let j = dir.join(format!("{name}.json"));
    std::fs::write(&j, serde_json::to_string_pretty(json).unwrap_or_default()).map_err(|e| format!("{}: {e}", j.display()))?;
    Ok(h)
}

fn stem(p: &Path) -> String {
    p.file_stem().map_or_else(|| "scenario".into(), |s| s.to_string_lossy().into_owned())
}

/// `ndots-sim run FILE`.
pub fn run(file: &Path, seed: Option<u64>, sets: &[String], report: Option<&Path>, json: bool) -> ExitCode {
    let sc = match load(file, sets, seed) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let label = sc.name.clone().unwrap_or_else(|| stem(file));
    let r = match simulate(&sc, &label) {
        Ok(r) => r,
        Err(e) => return bad(format!("{}: {e}", file.display())),
    };
    let checks = sc.expect.check(&r);
    let run = Run { label: &label, spec: &sc.spec, report: &r, checks: &checks };
    let ok = checks.iter().all(|c| c.ok);
    let replay = replay_command(file, sc.spec.seed, sets);
    let with_replay = |mut j: serde_json::Value| {
        j["replay"] = serde_json::json!(replay);
        j
    };
    if json {
        println!("{}", with_replay(dashboard::json(&run)));
    } else {
        println!("{label} · seed {} · {:.0} simulated s · trace {:016x}", r.seed, r.duration.as_secs_f64(), r.trace_hash);
        print!("{}", dashboard::table(&[run]));
        println!();
        print!("{}", crate::explain::groups_table(&r, &sc.spec));
        print!("{}", crate::explain::summary(&r, &sc.spec));
        print!("{}", crate::explain::findings_text(&r));
    }
    let run = Run { label: &label, spec: &sc.spec, report: &r, checks: &checks };
    if let Some(dir) = report {
        match write_report(
            dir,
            &stem(file),
            &dashboard::html(
                &label,
                &[run],
                &dashboard::Header {
                    inputs: [
                        vec![("scenario", file.display().to_string())],
                        if sets.is_empty() { vec![] } else { vec![("--set", sets.join(" "))] },
                        vec![("seed", sc.spec.seed.to_string()), ("simulated", format!("{} s", sc.spec.duration.as_secs_f64()))],
                    ]
                    .concat(),
                    replay: vec![replay.clone()],
                },
            ),
            &with_replay(dashboard::json(&Run { label: &label, spec: &sc.spec, report: &r, checks: &checks })),
        ) {
            Ok(p) => eprintln!("report: {}", p.display()),
            Err(e) => return bad(e),
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("expectations failed; replay: {replay}");
        ExitCode::from(FAILED)
    }
}

/// The overrides of a compare: `set` for both sides, `a` and `b` for one.
pub struct Sets<'a> {
    pub both: &'a [String],
    pub a: &'a [String],
    pub b: &'a [String],
}

/// `ndots-sim compare FILE [OTHER] [--set ...] [--set-a ...] [--set-b ...]`: A is FILE, B is OTHER
/// or FILE again; `--set` changes both, `--set-a`/`--set-b` one side.
pub fn compare(file: &Path, other: Option<&Path>, seed: Option<u64>, sets: &Sets<'_>, report: Option<&Path>, json: bool) -> ExitCode {
    if other.is_none() && sets.a.is_empty() && sets.b.is_empty() {
        return bad("compare needs a second file or a change to one side: --set-b KEY=VALUE (or --set-a); --set applies to both sides");
    }
    let side = |f: &Path, own: &[String]| load(f, &[sets.both, own].concat(), seed);
    let a = match side(file, sets.a) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let b = match side(other.unwrap_or(file), sets.b) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let label = |f: Option<&Path>, own: &[String]| match (f, own.is_empty()) {
        (None, true) => "as is".to_string(),
        (None, false) => own.join(", "),
        (Some(f), true) => stem(f),
        (Some(f), false) => format!("{} with {}", stem(f), own.join(", ")),
    };
    let la = label(other.map(|_| file), sets.a);
    let lb = label(other, sets.b);
    // Both at once: one per core.
    let (ra, rb) = std::thread::scope(|s| {
        let ta = s.spawn(|| simulate(&a, &la));
        let rb = simulate(&b, &lb);
        (ta.join(), rb)
    });
    let ra = match ra {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return bad(format!("{}: {e}", file.display())),
        Err(_) => return bad("the simulation thread panicked"),
    };
    let rb = match rb {
        Ok(r) => r,
        Err(e) => return bad(format!("{}: {e}", other.unwrap_or(file).display())),
    };
    let (ca, cb): (Vec<Check>, Vec<Check>) = (a.expect.check(&ra), b.expect.check(&rb));
    let runs = [Run { label: &la, spec: &a.spec, report: &ra, checks: &ca }, Run { label: &lb, spec: &b.spec, report: &rb, checks: &cb }];
    if json {
        println!("{}", serde_json::json!({"a": dashboard::json(&runs[0]), "b": dashboard::json(&runs[1])}));
    } else {
        println!("{} · seed {}", a.name.clone().unwrap_or_else(|| stem(file)), a.spec.seed);
        print!("{}", dashboard::table(&runs));
        for r in &runs {
            print!("{}: {}", r.label, crate::explain::summary(r.report, r.spec));
        }
    }
    if let Some(dir) = report {
        let title = format!("{}: {la} vs {lb}", a.name.clone().unwrap_or_else(|| stem(file)));
        let j = serde_json::json!({"a": dashboard::json(&runs[0]), "b": dashboard::json(&runs[1])});
        let both = |own: &[String]| [sets.both, own].concat();
        let header = dashboard::Header {
            inputs: [
                vec![(
                    "A",
                    format!(
                        "{}{}",
                        file.display(),
                        if sets.a.is_empty() { String::new() } else { format!(" --set {}", sets.a.join(" --set ")) }
                    ),
                )],
                vec![(
                    "B",
                    format!(
                        "{}{}",
                        other.unwrap_or(file).display(),
                        if sets.b.is_empty() { String::new() } else { format!(" --set {}", sets.b.join(" --set ")) }
                    ),
                )],
                if sets.both.is_empty() { vec![] } else { vec![("both sides", format!("--set {}", sets.both.join(" --set ")))] },
                vec![("seed", b.spec.seed.to_string())],
            ]
            .concat(),
            replay: vec![
                format!("A: {}", replay_command(file, a.spec.seed, &both(sets.a))),
                format!("B: {}", replay_command(other.unwrap_or(file), b.spec.seed, &both(sets.b))),
            ],
        };
        match write_report(dir, &format!("{}-compare", stem(file)), &dashboard::html(&title, &runs, &header), &j) {
            Ok(p) => eprintln!("report: {}", p.display()),
            Err(e) => return bad(e),
        }
    }
    // The change is what is being tried: its expectations decide the exit code.
    if cb.iter().all(|c| c.ok) {
        ExitCode::SUCCESS
    } else {
        let replay = replay_command(other.unwrap_or(file), b.spec.seed, &[sets.both, sets.b].concat());
        eprintln!("the changed run fails its expectations; replay: {replay}");
        ExitCode::from(FAILED)
    }
}

/// Parses `A..B` (B excluded), `A..=B`, or `N` (1..=N).
pub fn parse_seeds(s: &str) -> Result<std::ops::RangeInclusive<u64>, String> {
    let bad = || format!("--seeds {s}: expected A..B, A..=B or a count N");
    if let Some((a, b)) = s.split_once("..=") {
        return Ok(a.parse().map_err(|_| bad())?..=b.parse().map_err(|_| bad())?);
    }
    if let Some((a, b)) = s.split_once("..") {
        let (a, b): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
        if b <= a {
            return Err(bad());
        }
        return Ok(a..=b - 1);
    }
    let n: u64 = s.parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(bad());
    }
    Ok(1..=n)
}

/// What one seed of a sweep showed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SeedOutcome {
    pub seed: u64,
    pub ok: bool,
    pub failed: Vec<&'static str>,
    pub success_rate: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub conntrack_drops: u64,
    pub eni_drops: u64,
    pub restarts: u64,
    pub trace_hash: String,
}

/// `ndots-sim sweep FILE --seeds A..B`: the same scenario over many seeds, `jobs` at a time.
pub fn sweep(file: &Path, seeds: &str, sets: &[String], jobs: usize, report: Option<&Path>, json: bool) -> ExitCode {
    let range = match parse_seeds(seeds) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    let base = match load(file, sets, None) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let seeds: Vec<u64> = range.collect();
    let n = seeds.len();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let t0 = Instant::now();
    let results = std::sync::Mutex::new(Vec::with_capacity(n));
    let error = std::sync::Mutex::new(None::<String>);
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, n.max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(&seed) = seeds.get(i) else { break };
                    let mut sc = base.clone();
                    sc.spec.seed = seed;
                    let r = match crate::run(sc.spec.clone()) {
                        Ok(r) => r,
                        Err(e) => {
                            if let Ok(mut g) = error.lock() {
                                *g = Some(format!("seed {seed}: {e}"));
                            }
                            break;
                        }
                    };
                    let checks = sc.expect.check(&r);
                    let o = SeedOutcome {
                        seed,
                        ok: checks.iter().all(|c| c.ok),
                        failed: checks.iter().filter(|c| !c.ok).map(|c| c.name).collect(),
                        success_rate: r.success_rate(),
                        p99_ms: r.latency_ms(0.99),
                        max_ms: r.latency_ms(1.0),
                        conntrack_drops: r.net.dropped_race + r.net.dropped_table_full,
                        eni_drops: r.net.dropped_eni,
                        restarts: r.net.restarts,
                        trace_hash: format!("{:016x}", r.trace_hash),
                    };
                    let k = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    let wall = t0.elapsed().as_secs_f64();
                    eprintln!(
                        "[{k}/{n}] seed {seed}: {} · ok {:.3}% · p99 {:.1} ms · max {:.1} ms · ETA {:.0} s",
                        if o.ok { "pass" } else { "FAIL" },
                        100.0 * o.success_rate,
                        o.p99_ms,
                        o.max_ms,
                        wall / k as f64 * (n - k) as f64
                    );
                    if let Ok(mut g) = results.lock() {
                        g.push(o);
                    }
                }
            });
        }
    });
    if let Some(e) = error.into_inner().ok().flatten() {
        return bad(format!("{}: {e}", file.display()));
    }
    let mut results = results.into_inner().unwrap_or_default();
    results.sort_by_key(|o| o.seed);
    let failed: Vec<&SeedOutcome> = results.iter().filter(|o| !o.ok).collect();
    let dist = |f: &dyn Fn(&SeedOutcome) -> f64| {
        let mut v: Vec<f64> = results.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        let q = |p: f64| v.get(((p * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1)) - 1).copied().unwrap_or(0.0);
        [q(0.0), q(0.5), q(0.9), q(1.0)]
    };
    let rows: Vec<(&str, [f64; 4])> = vec![
        ("lookups ok %", dist(&|o| 100.0 * o.success_rate)),
        ("latency p99 ms", dist(&|o| o.p99_ms)),
        ("latency max ms", dist(&|o| o.max_ms)),
        ("conntrack drops", dist(&|o| o.conntrack_drops as f64)),
        ("ENI drops", dist(&|o| o.eni_drops as f64)),
        ("restarts", dist(&|o| o.restarts as f64)),
    ];
    if json {
        println!(
            "{}",
            serde_json::json!({
                "file": file.display().to_string(), "seeds": n, "failed": failed.len(),
                "distribution": rows.iter().map(|(k, v)| (k.to_string(), serde_json::json!({"min": v[0], "p50": v[1], "p90": v[2], "max": v[3]}))).collect::<serde_json::Map<_, _>>(),
                "outcomes": results,
            })
        );
    } else {
        println!("{} over {n} seeds ({:.0} s wall)", base.name.clone().unwrap_or_else(|| stem(file)), t0.elapsed().as_secs_f64());
        println!("{:<18} {:>10} {:>10} {:>10} {:>10}", "", "min", "p50", "p90", "max");
        for (k, v) in &rows {
            println!("{k:<18} {:>10.3} {:>10.3} {:>10.3} {:>10.3}", v[0], v[1], v[2], v[3]);
        }
        println!(
            "expectations failed in {}/{n} seeds ({:.1}%){}",
            failed.len(),
            100.0 * failed.len() as f64 / n.max(1) as f64,
            if failed.is_empty() {
                String::new()
            } else {
                format!(": {}", failed.iter().map(|o| o.seed.to_string()).collect::<Vec<_>>().join(", "))
            }
        );
    }
    if let Some(dir) = report {
        let mut p99: Vec<f64> = results.iter().map(|o| o.p99_ms).collect();
        let mut max: Vec<f64> = results.iter().map(|o| o.max_ms).collect();
        p99.sort_by(f64::total_cmp);
        max.sort_by(f64::total_cmp);
        let cdf = |v: &[f64]| v.iter().enumerate().map(|(i, x)| (*x, (i + 1) as f64 / v.len() as f64)).collect::<Vec<_>>();
        let chart = crate::html::line_chart(
            "Share of seeds at or below a latency (CDF over seeds)",
            "ms",
            "share of seeds",
            &[
                crate::html::Series { label: "p99 lookup latency of the run", color: "#2980b9", points: cdf(&p99) },
                crate::html::Series { label: "slowest lookup of the run", color: "#c0392b", points: cdf(&max) },
            ],
        );
        let mut body = format!(
            "<p>{n} seeds; expectations failed in {} of them.</p><table><tr><th></th><th>min</th><th>p50</th><th>p90</th><th>max</th></tr>",
            failed.len()
        );
        for (k, v) in &rows {
            body.push_str(&format!(
                "<tr><td>{k}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>",
                v[0], v[1], v[2], v[3]
            ));
        }
        body.push_str("</table>");
        body.push_str(&chart);
        let title = format!("{}: sweep", base.name.clone().unwrap_or_else(|| stem(file)));
        match write_report(
            dir,
            &format!("{}-sweep", stem(file)),
            &crate::html::page(&title, &body),
            &serde_json::json!({"outcomes": results}),
        ) {
            Ok(p) => eprintln!("report: {}", p.display()),
            Err(e) => return bad(e),
        }
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        for o in failed.iter().take(5) {
            eprintln!("seed {} failed {}; replay: {}", o.seed, o.failed.join(", "), replay_command(file, o.seed, sets));
        }
        ExitCode::from(FAILED)
    }
}

/// Inputs of `ndots-sim lint`.
pub struct LintArgs<'a> {
    pub scenario: Option<&'a Path>,
    pub resolv_conf: Option<&'a Path>,
    pub corefile: Option<&'a Path>,
    pub cluster_state: Option<&'a Path>,
    pub node_resolv_conf: Option<&'a Path>,
    pub memory_limit_mib: Option<u64>,
    pub json: bool,
}

fn read(p: &Path) -> Result<String, ExitCode> {
    std::fs::read_to_string(p).map_err(|e| bad(format!("{}: {e}", p.display())))
}

/// Pods and other objects in a kubectl dump.
fn count_objects(text: &str, name: &str) -> Result<(usize, usize), String> {
    resolver::ClusterState::parse(text, name).map_err(|e| e.to_string())?;
    let doc: serde_json::Value = serde_yaml_ng::from_str(text).map_err(|e| format!("{name}: {e}"))?;
    let items = doc.get("items").and_then(|i| i.as_array()).cloned().unwrap_or_else(|| vec![doc]);
    let pods = items.iter().filter(|o| o["kind"] == "Pod").count();
    Ok((pods, items.len() - pods))
}

/// `ndots-sim lint`: exits 1 when a warning or error is found, 0 when only information.
pub fn lint(a: &LintArgs<'_>) -> ExitCode {
    let mut texts: Vec<(String, String, &str)> = Vec::new(); // (name, text, kind)
    let mut limit = a.memory_limit_mib.map(|m| m << 20);
    let mut pods_state: Option<(usize, usize)> = None;
    if let Some(f) = a.scenario {
        let sc = match file::load(f, &[]) {
            Ok(s) => s,
            Err(e) => return bad(e),
        };
        texts.push((format!("{} (coredns.corefile)", f.display()), sc.spec.corefile.clone(), "corefile"));
        for (i, g) in sc.spec.pods.iter().enumerate() {
            let rc = g.resolv_conf.clone().unwrap_or_else(|| {
                crate::client::ResolvConf::kubelet_cluster_first(
                    crate::engine::KUBE_DNS.ip(),
                    &g.namespace,
                    &sc.spec.cluster_domain,
                    &sc.spec.node_search.iter().map(String::as_str).collect::<Vec<_>>(),
                )
            });
            texts.push((format!("{} (pods[{i}] resolv.conf)", f.display()), rc, "resolv"));
        }
        if limit.is_none() {
            limit = sc.spec.replica_memory.map(|m| m.limit);
        }
        let mut pods = sc.spec.pods.iter().map(|g| g.count).sum::<usize>() + sc.spec.extra_pods + sc.spec.coredns_replicas;
        let mut objects = 0;
        if let Some(dump) = &sc.spec.cluster_state {
            match count_objects(dump, "cluster state") {
                Ok((p, o)) => {
                    pods += p;
                    objects += o;
                }
                Err(e) => return bad(e),
            }
        }
        pods_state = Some((pods, objects));
    }
    for (p, kind) in [(a.corefile, "corefile"), (a.resolv_conf, "resolv")] {
        if let Some(p) = p {
            match read(p) {
                Ok(t) => texts.push((p.display().to_string(), t, kind)),
                Err(c) => return c,
            }
        }
    }
    if let Some(p) = a.cluster_state {
        let t = match read(p) {
            Ok(t) => t,
            Err(c) => return c,
        };
        match count_objects(&t, &p.display().to_string()) {
            Ok(c) => pods_state = Some(c),
            Err(e) => return bad(e),
        }
    }
    let node = match a.node_resolv_conf.map(read).transpose() {
        Ok(t) => t,
        Err(c) => return c,
    };
    let node_name = a.node_resolv_conf.map(|p| p.display().to_string()).unwrap_or_default();
    if texts.is_empty() {
        return bad("lint needs a scenario file, or --corefile and/or --resolv-conf");
    }
    let corefiles: Vec<&(String, String, &str)> = texts.iter().filter(|t| t.2 == "corefile").collect();
    let rcs: Vec<&(String, String, &str)> = texts.iter().filter(|t| t.2 == "resolv").collect();
    let mut all: Vec<lint::Finding> = Vec::new();
    // Each resolv.conf with the Corefile (autopath changes its verdict); the Corefile once.
    let cf = corefiles.first().map(|c| (c.0.as_str(), c.1.as_str()));
    let mut inputs = lint::Inputs {
        resolv_conf: None,
        corefile: cf,
        node_resolv_conf: node.as_deref().map(|t| (node_name.as_str(), t)),
        cluster_pods: pods_state.map(|p| p.0),
        cluster_objects: pods_state.map(|p| p.1),
        memory_limit: limit.unwrap_or(lint::COREDNS_MEMORY_LIMIT),
    };
    match lint::lint(&inputs) {
        Ok(f) => all.extend(f),
        Err(e) => return bad(e),
    }
    for rc in rcs {
        inputs.resolv_conf = Some((rc.0.as_str(), rc.1.as_str()));
        match lint::lint(&inputs) {
            Ok(f) => all.extend(f.into_iter().filter(|f| f.at.as_deref() == Some(rc.0.as_str()))),
            Err(e) => return bad(e),
        }
    }
    let mut all = lint::merge_places(all);
    all.sort_by_key(|f| std::cmp::Reverse(f.severity));
    if a.json {
        println!("{}", serde_json::json!({ "findings": all }));
    } else {
        print!("{}", lint::render(&all));
    }
    if all.iter().any(|f| f.severity >= lint::Severity::Warning) { ExitCode::from(FAILED) } else { ExitCode::SUCCESS }
}
