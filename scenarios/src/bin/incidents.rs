//! The incident suite: every incident's failure and mitigation, run in the simulator with the real
//! resolver, side by side in a table; an HTML report with the charts goes to target/ndots-report/.
//!
//! `incidents [S1 S2 ...]` runs some; `--hashes` prints only each side's trace hash (a refactor leaves every
//! one as it was); `--export DIR` writes the registry as scenario files.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use scenarios::{Report, incidents, run};
use sim::html::{Chart, Limit, Series, chart, page};

fn series(r: &Report, f: fn(&sim::report::Second) -> f64) -> Vec<(f64, f64)> {
    r.series.iter().map(|s| (s.t.as_secs_f64(), f(s))).collect()
}

/// Writes every incident's two scenario files into `dir`.
fn export(dir: &std::path::Path) -> ExitCode {
    for inc in incidents() {
        for fixed in [false, true] {
            let path = dir.join(inc.file(fixed).trim_start_matches("files/"));
            let text = sim::file::to_yaml(&inc.scenario(fixed, inc.seed), &inc.header(fixed));
            if let Err(e) = std::fs::create_dir_all(dir).and_then(|_| std::fs::write(&path, text)) {
                eprintln!("cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            eprintln!("wrote {}", path.display());
        }
    }
    ExitCode::SUCCESS
}

const USAGE: &str = "usage: incidents [S1 S2 ...] [--hashes] | --export DIR | --detectors N
  (no arguments)  every incident as it failed and as mitigated, a table, and target/ndots-report/incidents.html
  S1 S2 ...       only these incidents
  --hashes        only each side's trace hash, one line each (a refactor leaves every one as it was)
  --export DIR    write the registry as scenario files (sNN-<slug>.yaml and .fixed.yaml) into DIR
  --detectors N   each incident's detector over seeds 1..=N: how often it misses the failure, how often it fires on the mitigation";

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if let Some(i) = args.iter().position(|a| a == "--detectors") {
        let Some(n) = args.get(i + 1).and_then(|n| n.parse::<u64>().ok()) else {
            eprintln!("--detectors N: the number of seeds");
            return ExitCode::from(2);
        };
        return detector_sweep(n);
    }
    if let Some(bad) = args.iter().find(|a| a.starts_with('-') && !["--export", "--hashes"].contains(&a.as_str())) {
        eprintln!("incidents: unknown option `{bad}`\n{USAGE}");
        return ExitCode::from(2);
    }
    if let Some(i) = args.iter().position(|a| a == "--export") {
        let Some(dir) = args.get(i + 1) else {
            eprintln!("--export DIR");
            return ExitCode::FAILURE;
        };
        return export(std::path::Path::new(dir));
    }
    // `--hashes`: only each side's trace hash, one line each (a refactor must leave them all as they were).
    let hashes = args.iter().any(|a| a == "--hashes");
    args.retain(|a| !a.starts_with("--"));
    let only = args;
    let known: Vec<&str> = incidents().iter().map(|i| i.id).collect();
    if let Some(bad) = only.iter().find(|o| !known.iter().any(|k| k.eq_ignore_ascii_case(o))) {
        eprintln!("incidents: no incident `{bad}`; the registry has {}", known.join(" "));
        return ExitCode::from(2);
    }
    let list: Vec<_> = incidents().into_iter().filter(|i| only.is_empty() || only.iter().any(|o| o.eq_ignore_ascii_case(i.id))).collect();
    eprintln!(
        "running {} incidents, each as it failed and as mitigated, in the simulator with the real resolver code (as CoreDNS, kube-dns or ndots)",
        list.len()
    );
    let t0 = Instant::now();
    let mut rows = Vec::new();
    // Incidents whose failure did not break its expectations, or whose mitigation did.
    let mut wrong = Vec::new();
    let mut html = String::new();
    for (k, inc) in list.iter().enumerate() {
        let seed = scenarios::seed(inc.seed);
        let t = Instant::now();
        let fail = match run((inc.failure.spec)(seed)) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{}: {e}", inc.id);
                return ExitCode::FAILURE;
            }
        };
        let fixed = match run((inc.mitigation.spec)(seed)) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{}: {e}", inc.id);
                return ExitCode::FAILURE;
            }
        };
        eprintln!("[{}/{}] {} {} ({:.1} s)", k + 1, list.len(), inc.id, inc.title, t.elapsed().as_secs_f64());
        if hashes {
            println!("{} seed {seed} as-it-failed {:016x} mitigated {:016x}", inc.id, fail.trace_hash, fixed.trace_hash);
            continue;
        }
        let (mf, mm) = ((inc.measure)(&fail), (inc.measure)(&fixed));
        let apart = inc.tells_apart(&fail, &fixed);
        if let Some(Err(w)) = &apart {
            wrong.push(w.clone());
        }
        let (mf, mm) =
            if apart.is_some() { (format!("{mf} ({})", inc.verdict(&fail)), format!("{mm} ({})", inc.verdict(&fixed))) } else { (mf, mm) };
        rows.push([
            inc.id.to_string(),
            inc.title.to_string(),
            format!("{}: {mf}", inc.failure.label),
            format!("{}: {mm}", inc.mitigation.label),
        ]);
        let _ = write!(
            html,
            "<h2>{} {}</h2><p>Source: {}. Seed {seed}.</p><table><tr><th></th><th>{}</th><th>{}</th></tr><tr><td>measured</td><td>{}</td><td>{}</td></tr><tr><td>lookups ok</td><td>{:.2}%</td><td>{:.2}%</td></tr><tr><td>trace</td><td>{:016x}</td><td>{:016x}</td></tr></table>",
            inc.id,
            sim::html::escape(inc.title),
            sim::html::escape(inc.source),
            sim::html::escape(inc.failure.label),
            sim::html::escape(inc.mitigation.label),
            sim::html::escape(&mf),
            sim::html::escape(&mm),
            100.0 * fail.success_rate(),
            100.0 * fixed.success_rate(),
            fail.trace_hash,
            fixed.trace_hash,
        );
        let own = scenarios::charts::own(inc.id);
        let spec = (inc.failure.spec)(seed);
        let limits: Vec<Limit<'_>> = own.limit.iter().map(|(label, f)| Limit { label, value: f(&spec, &fail) }).collect();
        let sides = [
            Series { label: inc.failure.label, color: "#c0392b", points: series(&fail, own.metric) },
            Series { label: inc.mitigation.label, color: "#27ae60", points: series(&fixed, own.metric) },
        ];
        let markers: Vec<(f64, String)> = spec.faults.iter().map(|(at, f)| (at.as_secs_f64(), f.label())).collect();
        let title = format!("{}: {}", inc.id, own.title);
        html.push_str(&chart(&Chart {
            title: &title,
            caption: own.caption,
            x_label: "simulated seconds",
            y_label: own.y,
            series: &sides,
            limits: &limits,
            markers: &markers,
            log_y: own.log_y,
            integer: own.integer,
            y_top: own.y_top,
        }));
        if !own.log_y {
            let p99 = [
                Series {
                    label: inc.failure.label,
                    color: "#c0392b",
                    points: series(&fail, |s| if s.lookups == 0 { f64::NAN } else { s.p99_ms }),
                },
                Series {
                    label: inc.mitigation.label,
                    color: "#27ae60",
                    points: series(&fixed, |s| if s.lookups == 0 { f64::NAN } else { s.p99_ms }),
                },
            ];
            let title = format!("{}: lookup latency p99 per second", inc.id);
            html.push_str(&chart(&Chart {
                title: &title,
                caption: "The 99th percentile of the lookups finished each second (log scale; a gap: none finished).",
                x_label: "simulated seconds",
                y_label: "ms",
                series: &p99,
                limits: &[],
                markers: &markers,
                log_y: true,
                integer: false,
                y_top: None,
            }));
        }
    }
    if hashes {
        return ExitCode::SUCCESS;
    }
    let widths: Vec<usize> = (0..4)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0).max(["ID", "Incident", "As it failed", "Mitigated"][c].len()))
        .collect();
    let line = |cells: [&str; 4]| cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join(" | ");
    println!("{}", line(["ID", "Incident", "As it failed", "Mitigated"]));
    println!("{}", widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("-|-"));
    for r in &rows {
        println!("{}", line([&r[0], &r[1], &r[2], &r[3]]));
    }
    let dir = PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into())).join("ndots-report");
    let path = dir.join("incidents.html");
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, page("ndots incident suite", &html))) {
        eprintln!("cannot write {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    eprintln!("report: {} ({:.1} s in all)", path.display(), t0.elapsed().as_secs_f64());
    if wrong.is_empty() {
        ExitCode::SUCCESS
    } else {
        for w in &wrong {
            eprintln!("expectations do not tell the failure from the mitigation: {w}");
        }
        ExitCode::FAILURE
    }
}

/// Every (incident, detector) of `scenarios::detectors::EXPECTED` over seeds 1..=n, both sides, in
/// parallel (one thread per core): misses on the failing side, false alarms on the mitigated side.
fn detector_sweep(n: u64) -> ExitCode {
    use scenarios::detectors::{EXPECTED, fired};
    let mut ids: Vec<&str> = EXPECTED.iter().map(|e| e.0).collect();
    ids.dedup();
    let jobs: Vec<(&str, u64)> = ids.iter().flat_map(|id| (1..=n).map(move |s| (*id, s))).collect();
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    let t0 = Instant::now();
    std::thread::scope(|sc| {
        for _ in 0..threads {
            sc.spawn(|| {
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&(id, seed)) = jobs.get(k) else { break };
                    let inc = incidents().into_iter().find(|i| i.id == id).expect("registered");
                    let (Ok(fail), Ok(fixed)) = (run((inc.failure.spec)(seed)), run((inc.mitigation.spec)(seed))) else { continue };
                    let row: Vec<(&str, bool, bool)> =
                        EXPECTED.iter().filter(|e| e.0 == id).map(|e| (e.1, fired(&fail, e.1), fired(&fixed, e.1))).collect();
                    let mut r = results.lock().expect("lock");
                    r.push((id, seed, row));
                    if r.len() % 20 == 0 {
                        eprintln!("[{}/{}] runs done ({:.0} s)", r.len(), jobs.len(), t0.elapsed().as_secs_f64());
                    }
                }
            });
        }
    });
    let results = results.into_inner().expect("lock");
    println!("| Incident | Detector | Missed on the failing side | Fired on the mitigated side |");
    println!("|---|---|---|---|");
    for (id, det) in EXPECTED {
        let rows: Vec<(bool, bool)> =
            results.iter().filter(|r| r.0 == *id).flat_map(|r| r.2.iter().filter(|x| x.0 == *det).map(|x| (x.1, x.2))).collect();
        let missed = rows.iter().filter(|r| !r.0).count();
        let alarms = rows.iter().filter(|r| r.1).count();
        println!("| {id} | `{det}` | {missed} of {} | {alarms} of {} |", rows.len(), rows.len());
    }
    eprintln!("{} seeds x {} incidents in {:.0} s", n, ids.len(), t0.elapsed().as_secs_f64());
    ExitCode::SUCCESS
}
