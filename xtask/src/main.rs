//! Project automation, run as `cargo xtask <command>` (alias in .cargo/config.toml).
//!
//! - `ci`: what CI checks, in order: `cargo fmt --check`, `cargo clippy --all-targets -- -D warnings`,
//!   `cargo test --workspace`, then `client-check` and `report-check`. Stops at the first failure with its exit code.
//! - `sim check-determinism [SEED]`: the smoke scenario twice in two processes, same trace hash or fail.
//! - `bench sim`: simulated seconds per wall second for 10, 100 and 1,000-node clusters (release build).
//! - `bench dns [SERVERS...]`: ndots beside unbound, dnsdist, kresd, pdns-recursor and the floor
//!   responder with dnsperf, in a private network namespace (see `bench_dns/`); root, Debian.
//!   `ROUNDS`, `DURATION`, `LAT_QPS`; SERVERS picks peers (ndots and the floor always run).
//! - `bench rss [NAMES]`: the release `ndots` caching NAMES distinct forwarded names; RSS before and
//!   after, bytes per cached entry (`rss.rs`).
//! - `sim sweep [N] [FILTER]`: the scenario tests (release) for seeds 1..=N (default 100); prints each
//!   failing seed with its replay command and a pass count per seed.
//! - `fuzz [SECONDS] [TARGETS...]`: each cargo-fuzz target of `fuzz` for SECONDS (default 60)
//!   with nightly and libFuzzer (installs cargo-fuzz if missing), seeded from the checked-in corpus;
//!   new inputs go to `target/fuzz/corpus/`, crashes to `target/fuzz/artifacts/`.
//! - `kernel-check`: netmodel's conntrack beside the real kernel's for the same packets (see
//!   `kernel.rs`), then the insertion race by send path (threads, `sendmmsg`, sequential sends, two
//!   sockets, `sendmmsg` through a policy agent's NFQUEUE) through a veth, beside the model
//!   (`race.rs`); root, network namespaces, iptables and conntrack.
//! - `client-check [CASE|LIB...]`: the client-library models beside real glibc, musl, Go, c-ares and
//!   evdns on the wire (see `clients/`); root, network namespaces, gcc, musl-gcc, go, libc-ares-dev,
//!   libevent-dev.
//! - `client-table`: rewrites README.md's library × release table from the models
//!   (`sim::client::table`).
//! - `report-check [HTML...]`: the simulator's HTML reports in headless Chromium: text overlapping
//!   or clipped, badges on top of each other, charts without a line; screenshots beside them (see
//!   `report_check.rs`).
//! - `soak [SECONDS]`: the release `ndots` under steady load while upstreams fail and the config
//!   reloads (see `soak.rs`); report in `target/soak/`.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

mod bench_dns;
mod clients;
mod ct_scan;
mod kernel;
mod race;
mod report_check;
mod rss;
mod soak;
#[cfg(test)]
mod tidy;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("sim") if args.get(1).map(String::as_str) == Some("check-determinism") => {
            check_determinism(args.get(2).map(String::as_str).unwrap_or("42"))
        }
        Some("bench") if args.get(1).map(String::as_str) == Some("sim") => bench_sim(),
        Some("bench") if args.get(1).map(String::as_str) == Some("dns") => bench_dns::bench(&args[2..]),
        Some("bench") if args.get(1).map(String::as_str) == Some("conntrack") => {
            ct_scan::bench(args.get(2).and_then(|n| n.parse().ok()).unwrap_or(100_000))
        }
        Some("__ctscan") => ct_scan::helper(&args[1..]),
        Some("bench") if args.get(1).map(String::as_str) == Some("rss") => {
            rss::rss(args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1_000_000))
        }
        Some("fuzz") => fuzz(&args[1..]),
        Some("kernel-check") => kernel::check(),
        Some("client-check") => clients::check(&args[1..]),
        Some("client-table") => client_table(),
        Some("report-check") => report_check::check(&args[1..]),
        Some("__udp") => kernel::helper(&args[1..]),
        Some("soak") => soak::soak(args.get(1).and_then(|s| s.parse().ok()).unwrap_or(600)),
        Some("sim") if args.get(1).map(String::as_str) == Some("sweep") => {
            sweep(args.get(2).and_then(|n| n.parse().ok()).unwrap_or(100), args.get(3).map(String::as_str))
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n  ci                            fmt --check, clippy -D warnings, the whole test suite, client-check\n  sim check-determinism [SEED]  run the smoke scenario in two processes and compare trace hashes\n  bench sim                     simulated seconds per wall second for 10, 100, 1000 nodes\n  bench dns [SERVERS...]        ndots and the floor beside unbound, dnsdist, kresd, pdns-recursor (dnsperf; root)\n  bench rss [NAMES]             RSS of ndots caching NAMES distinct names (default 1,000,000)\n  bench conntrack [ENTRIES]     node-local mode's stale_conntrack scan of a table of ENTRIES (default 100,000; root)\n  sim sweep [N] [FILTER]        every scenario test for seeds 1..=N (default 100)\n  fuzz [SECONDS] [TARGETS...]   each fuzz target for SECONDS (default 60) with libFuzzer\n  soak [SECONDS]                the release binary under load, faults and reloads (default 600 s)\n  kernel-check                  netmodel's conntrack against this kernel's, in a network namespace (root)\n  client-check [CASE|LIB...]    the client-library models against real glibc, musl, Go, c-ares and evdns on the wire (root)\n  client-table                  rewrite README.md's library x version table from the models\n  report-check [HTML...]        the simulator's reports in headless Chromium: overlapping or clipped text, screenshots"
            );
            ExitCode::from(2)
        }
    }
}

/// Rewrites README.md's client-library table from the models (`sim::client::table`).
fn client_table() -> ExitCode {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let result = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: {e}", path.display()))
        .and_then(|readme| sim::client::table::update(&readme))
        .and_then(|text| std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display())));
    match result {
        Ok(()) => {
            eprintln!("client-table: README.md updated");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("client-table: {e}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn run(step: &str, cmd: &mut Command) -> Result<(), ExitCode> {
    let t0 = Instant::now();
    eprintln!("==> {step}");
    let status = cmd.status().map_err(|e| {
        eprintln!("xtask: cannot run {step}: {e}");
        ExitCode::FAILURE
    })?;
    eprintln!("<== {step}: {} in {:.1}s", if status.success() { "ok" } else { "FAILED" }, t0.elapsed().as_secs_f64());
    if status.success() { Ok(()) } else { Err(ExitCode::from(status.code().unwrap_or(1).clamp(1, 255) as u8)) }
}

/// Runs a command, its stdout, or an error naming it and its stderr (the namespace checks).
pub(crate) fn sh(args: &[&str]) -> Result<String, String> {
    let o = Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if !o.status.success() {
        return Err(format!("{}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// `sh` inside network namespace `ns`.
pub(crate) fn in_netns(ns: &str, args: &[&str]) -> Result<String, String> {
    let mut v = vec!["ip", "netns", "exec", ns];
    v.extend_from_slice(args);
    sh(&v)
}

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn ci() -> ExitCode {
    let steps: [(&str, Vec<&str>); 3] = [
        ("cargo fmt --check", vec!["fmt", "--all", "--check"]),
        ("cargo clippy --all-targets -- -D warnings", vec!["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]),
        ("cargo test --workspace", vec!["test", "--workspace"]),
    ];
    for (name, args) in steps {
        if let Err(code) = run(name, cargo().args(&args)) {
            return code;
        }
    }
    // The client models against the real libraries (skips, with a message, without root or netns).
    eprintln!("==> cargo xtask client-check");
    let code = clients::check(&[]);
    if code != ExitCode::SUCCESS {
        return code;
    }
    // The reports as a person sees them (skips, with a message, without Chromium).
    eprintln!("==> cargo xtask report-check");
    report_check::check(&[])
}

pub(crate) fn build_sim() -> Result<std::path::PathBuf, ExitCode> {
    run("cargo build --release -p sim", cargo().args(["build", "--release", "-p", "sim", "--bin", "ndots-sim"]))?;
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    Ok(std::path::Path::new(&target).join("release").join("ndots-sim"))
}

fn check_determinism(seed: &str) -> ExitCode {
    let bin = match build_sim() {
        Ok(b) => b,
        Err(c) => return c,
    };
    let mut hashes = Vec::new();
    for i in 1..=2 {
        let out = match Command::new(&bin).args(["smoke", "--seed", seed, "--trace-hash"]).output() {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
            Ok(o) => {
                eprintln!("run {i} failed: {}", String::from_utf8_lossy(&o.stderr));
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("cannot run {}: {e}", bin.display());
                return ExitCode::FAILURE;
            }
        };
        eprintln!("process {i}: seed {seed} trace {out}");
        hashes.push(out);
    }
    if hashes[0] != hashes[1] {
        eprintln!("NOT deterministic: seed {seed} gave {} and {}\nreplay: {} smoke --seed {seed}", hashes[0], hashes[1], bin.display());
        return ExitCode::FAILURE;
    }
    // And twice in one process (the test compares whole lookup records too).
    match run(
        "in-process double run",
        cargo().args(["test", "--release", "-p", "sim", "--test", "smoke", "the_same_seed_gives_the_same_trace"]).env("SIM_SEED", seed),
    ) {
        Ok(()) => {
            eprintln!("deterministic: seed {seed} -> {}", hashes[0]);
            ExitCode::SUCCESS
        }
        Err(c) => c,
    }
}

fn bench_sim() -> ExitCode {
    let bin = match build_sim() {
        Ok(b) => b,
        Err(c) => return c,
    };
    // Realistic load: about 3.3 lookups per pod per second, 30 pods per node; 1,000 nodes at the
    // 10,000 lookups/s of the 100-node target (the talk's largest cluster ran 60,000 queries/s).
    let cases: [(&str, &str, &str, &str); 4] =
        [("10", "300", "1000", "20"), ("100", "3000", "10000", "10"), ("1000", "30000", "10000", "5"), ("1000", "30000", "30000", "3")];
    for (nodes, pods, rate, secs) in cases {
        let status = Command::new(&bin).args(["bench", "--nodes", nodes, "--pods", pods, "--rate", rate, "--seconds", secs]).status();
        if !status.is_ok_and(|s| s.success()) {
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn sweep(n: u64, filter: Option<&str>) -> ExitCode {
    if let Err(c) = run("cargo test --release -p scenarios --no-run", cargo().args(["test", "--release", "-p", "scenarios", "--no-run"])) {
        return c;
    }
    let t0 = Instant::now();
    let mut failed = Vec::new();
    for seed in 1..=n {
        let mut cmd = cargo();
        cmd.args(["test", "-q", "--release", "-p", "scenarios", "--tests"]);
        if let Some(f) = filter {
            cmd.args(["--", f]);
        }
        let out = match cmd.env("SIM_SEED", seed.to_string()).output() {
            Ok(o) => o,
            Err(e) => {
                eprintln!("xtask: cannot run cargo: {e}");
                return ExitCode::FAILURE;
            }
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let passed: usize =
            text.lines().filter_map(|l| l.strip_prefix("test result: ")).filter_map(|l| l.split(' ').nth(1)?.parse::<usize>().ok()).sum();
        if out.status.success() {
            eprintln!("seed {seed:>4}: {passed} passed ({:.0} s)", t0.elapsed().as_secs_f64());
        } else {
            for l in text.lines().filter(|l| l.contains("replay:") || l.starts_with("test ") && l.ends_with("FAILED")) {
                eprintln!("seed {seed:>4}: {l}");
            }
            failed.push(seed);
        }
    }
    if failed.is_empty() {
        eprintln!("sweep: all {n} seeds pass ({:.0} s)", t0.elapsed().as_secs_f64());
        ExitCode::SUCCESS
    } else {
        eprintln!("sweep: {} of {n} seeds fail: {failed:?}", failed.len());
        ExitCode::FAILURE
    }
}

/// The fuzz targets in `fuzz/fuzz_targets`.
const FUZZ_TARGETS: [&str; 5] = ["server", "corefile", "cluster_state", "zone", "scenario_file"];

fn fuzz(args: &[String]) -> ExitCode {
    let secs: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(60);
    let named: Vec<&str> =
        args.iter().skip(usize::from(args.first().is_some_and(|a| a.parse::<u64>().is_ok()))).map(String::as_str).collect();
    if let Some(bad) = named.iter().find(|t| !FUZZ_TARGETS.contains(t)) {
        eprintln!("xtask: unknown fuzz target '{bad}'; expected one of {FUZZ_TARGETS:?}");
        return ExitCode::from(2);
    }
    let targets: Vec<&str> = if named.is_empty() { FUZZ_TARGETS.to_vec() } else { named };
    if Command::new("cargo").args(["fuzz", "--version"]).output().map(|o| !o.status.success()).unwrap_or(true)
        && let Err(c) = run("cargo install cargo-fuzz", cargo().args(["install", "cargo-fuzz", "--locked"]))
    {
        return c;
    }
    let root = std::env::current_dir().unwrap_or_default();
    let target_dir = std::path::PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()));
    let target_dir = if target_dir.is_absolute() { target_dir } else { root.join(target_dir) };
    let mut failed = Vec::new();
    for t in &targets {
        let work = target_dir.join("fuzz/corpus").join(t);
        let artifacts = target_dir.join("fuzz/artifacts").join(t);
        if let Err(e) = std::fs::create_dir_all(&work).and_then(|_| std::fs::create_dir_all(&artifacts)) {
            eprintln!("xtask: {e}");
            return ExitCode::FAILURE;
        }
        // New inputs go to the first corpus folder (under target/); the checked-in one only seeds.
        let seeds = root.join("fuzz/corpus").join(t);
        let step = format!("fuzz {t} for {secs} s");
        let r = run(
            &step,
            Command::new("cargo")
                .current_dir(root.join("fuzz"))
                .env("CARGO_TARGET_DIR", target_dir.join("fuzz/build"))
                .args(["+nightly", "fuzz", "run", t])
                .arg(&work)
                .arg(&seeds)
                .arg("--")
                .arg(format!("-max_total_time={secs}"))
                .arg(format!("-artifact_prefix={}/", artifacts.display()))
                .arg("-max_len=4096")
                .arg("-rss_limit_mb=2048")
                .arg("-print_final_stats=1"),
        );
        if r.is_err() {
            eprintln!(
                "fuzz {t}: crash inputs in {} (replay: cd fuzz && cargo +nightly fuzz run {t} FILE; keep it in fuzz/regressions/{t}/)",
                artifacts.display()
            );
            failed.push(*t);
        }
    }
    if failed.is_empty() {
        eprintln!("fuzz: {} targets ran {secs} s each without a crash", targets.len());
        ExitCode::SUCCESS
    } else {
        eprintln!("fuzz: crashes in {failed:?}");
        ExitCode::FAILURE
    }
}
