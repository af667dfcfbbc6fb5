//! `cargo xtask bench dns [SERVERS...]`: ndots beside the caching servers it is measured against
//! and the floor (`benches::floor`), on loopback in a private network namespace, with dnsperf.
//!
//! Each server runs as a caching forwarder to one authoritative upstream (a release `ndots` serving
//! the zone with its `file` plugin, not measured), except the floor, which answers by itself. For
//! each round and each server: start it, wait until it answers, warm its cache with every name of
//! both workloads, then measure each workload at saturation for `DURATION` seconds (dnsperf
//! `-T 1 -c 8 -q 100`) and at a fixed 10,000 queries/s for latency; the server's CPU is read from
//! procfs. Workloads: `hit`, 1,000 cluster names, all cached; `nx`, ndots:5 search-path expansion,
//! 1,600 queries of which 75% NXDOMAIN, the rest NOERROR A or NODATA AAAA. Rounds interleave the
//! servers. `ndots-forward` is ndots without its cache, so every query is forwarded: its ratio is
//! to half the floor's rate (two packets in and two out per answer). `ndots-cluster` is ndots as
//! cluster DNS (CoreDNS's default Corefile shape, its kubernetes plugin reading the same 1,000
//! Services from a cluster-state file): `hit` is then its memoised cluster records, and the search
//! names of `nx` its own NXDOMAIN answers. Installs dnsperf, dig, unbound,
//! dnsdist, knot-resolver and pdns-recursor from Debian (root).
//! Environment: ROUNDS (3), DURATION (15), LAT_QPS (10000, 0 skips the latency run).

mod report;
mod servers;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use report::{Run, Summary};
use servers::Server;

use crate::sh;

const NS: &str = "ndots-bench";
const UPSTREAM: &str = "127.0.0.53";
const CLUSTER_NAMES: usize = 1000;

fn env_num(key: &str, default: u64) -> u64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The cluster.local zone the upstream serves: 1,000 Services over 100 namespaces.
fn zone() -> String {
    let mut z = String::from(
        "$TTL 3600\n@ IN SOA ns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 3600\n@ IN NS ns.cluster.local.\nns IN A 127.0.0.53\n",
    );
    for i in 0..CLUSTER_NAMES {
        z.push_str(&format!("svc-{i}.team-{:03}.svc IN A 10.96.{}.{}\n", i % 100, i / 250, i % 250 + 1));
    }
    z
}

/// The same 1,000 Services as a cluster state (`kubectl get ... -o yaml`) for `ndots-cluster`'s
/// kubernetes plugin.
fn cluster_state() -> String {
    let mut y = String::from("apiVersion: v1\nkind: List\nitems:\n");
    for ns in 0..100 {
        y.push_str(&format!("- {{apiVersion: v1, kind: Namespace, metadata: {{name: team-{ns:03}}}}}\n"));
    }
    for i in 0..CLUSTER_NAMES {
        let ip = format!("10.96.{}.{}", i / 250, i % 250 + 1);
        y.push_str(&format!(
            "- {{apiVersion: v1, kind: Service, metadata: {{name: svc-{i}, namespace: team-{:03}}}, spec: {{type: ClusterIP, clusterIP: {ip}, clusterIPs: [{ip}], ports: [{{name: http, port: 80, protocol: TCP}}]}}}}\n",
            i % 100
        ));
    }
    y
}

/// The example.com zone: the external names of the `nx` workload.
fn external_zone() -> String {
    let mut z =
        String::from("$TTL 3600\n@ IN SOA ns.example.com. hostmaster.example.com. 1 7200 1800 86400 3600\n@ IN NS ns.cluster.local.\n");
    for i in 0..400 {
        z.push_str(&format!("api-{i} IN A 203.0.113.{}\n", i % 250 + 1));
    }
    z
}

/// dnsperf input: `hit`, every cluster name; `nx`, 400 external names as a pod with ndots:5 in
/// namespace `default` asks them: three NXDOMAIN search names, then the name itself (NOERROR A, or
/// NODATA AAAA for every other name).
fn workload(name: &str) -> String {
    let mut out = String::new();
    match name {
        "hit" => {
            for i in 0..CLUSTER_NAMES {
                out.push_str(&format!("svc-{i}.team-{:03}.svc.cluster.local A\n", i % 100));
            }
        }
        _ => {
            for i in 0..400 {
                let name = format!("api-{i}.example.com");
                let t = if i % 2 == 0 { "A" } else { "AAAA" };
                for suffix in ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"] {
                    out.push_str(&format!("{name}.{suffix} {t}\n"));
                }
                out.push_str(&format!("{name} {t}\n"));
            }
        }
    }
    out
}

pub fn bench(servers: &[String]) -> ExitCode {
    if std::env::var_os("NDOTS_BENCH_IN_NETNS").is_some() {
        return match in_netns(servers) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench dns: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(bad) = servers.iter().find(|s| !servers::NAMES.contains(&s.as_str())) {
        eprintln!("bench dns: unknown server `{bad}`; expected some of {}", servers::NAMES.join(", "));
        return ExitCode::from(2);
    }
    if sh(&["id", "-u"]).map(|u| u.trim() != "0").unwrap_or(true) {
        eprintln!("bench dns: needs root (it installs the servers and runs them in a network namespace)");
        return ExitCode::FAILURE;
    }
    for (step, args) in [
        ("cargo build --release -p resolver --bin ndots", vec!["build", "--release", "-p", "resolver", "--bin", "ndots"]),
        ("cargo build --release -p benches --bin dns-floor", vec!["build", "--release", "-p", "benches", "--bin", "dns-floor"]),
    ] {
        if let Err(c) = crate::run(step, crate::cargo().args(args)) {
            return c;
        }
    }
    if let Err(e) = servers::install() {
        eprintln!("bench dns: {e}");
        return ExitCode::FAILURE;
    }
    let _ = sh(&["ip", "netns", "del", NS]);
    if let Err(e) = sh(&["ip", "netns", "add", NS]).and_then(|_| crate::in_netns(NS, &["ip", "link", "set", "lo", "up"])) {
        eprintln!("bench dns: network namespace: {e}");
        return ExitCode::FAILURE;
    }
    // The rest runs inside the namespace: this program again, so every process it starts is there.
    let me = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("xtask"));
    let status = Command::new("ip")
        .args(["netns", "exec", NS])
        .arg(me)
        .args(["bench", "dns"])
        .args(servers)
        .env("NDOTS_BENCH_IN_NETNS", "1")
        .status();
    let _ = sh(&["ip", "netns", "del", NS]);
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// A started server: its process (the measured one) and where it listens.
struct Running {
    child: Child,
    addr: &'static str,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cpu_seconds(pid: u32, hz: f64) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| report::cpu_ticks(&s)).map_or(0.0, |t| t as f64 / hz)
}

/// Waits until `addr` answers `svc-0.team-000.svc.cluster.local A` with an address (dig, one try at a
/// time).
fn wait_ready(addr: &str, child: &mut Child) -> Result<(), String> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited at start ({status})"));
        }
        let ok = Command::new("dig")
            .args(["+time=1", "+tries=1", "+short", &format!("@{addr}"), "svc-0.team-000.svc.cluster.local", "A"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim().parse::<std::net::IpAddr>().is_ok()));
        if ok {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err("not answering after 20 s".into())
}

fn dnsperf(args: &[&str]) -> Result<String, String> {
    let o = Command::new("dnsperf").args(args).stderr(Stdio::null()).output().map_err(|e| format!("dnsperf: {e}"))?;
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn in_netns(only: &[String]) -> Result<(), String> {
    let rounds = env_num("ROUNDS", 3);
    let duration = env_num("DURATION", 15);
    let lat_qps = env_num("LAT_QPS", 10_000);
    let target = PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()));
    let dir = std::fs::canonicalize(&target).map_err(|e| e.to_string())?.join("bench-dns");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let release = dir.parent().map(|t| t.join("release")).unwrap_or_default();
    std::fs::write(dir.join("cluster.local.zone"), zone()).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("example.com.zone"), external_zone()).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("cluster-state.yaml"), cluster_state()).map_err(|e| e.to_string())?;
    for w in ["hit", "nx"] {
        std::fs::write(dir.join(format!("{w}.txt")), workload(w)).map_err(|e| e.to_string())?;
    }
    let hz: f64 = sh(&["getconf", "CLK_TCK"]).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(100.0);
    // The upstream.
    let up_conf = dir.join("upstream.Corefile");
    let block =
        |zone: &str| format!("{zone}.:53 {{\n    bind {UPSTREAM}\n    file {} {zone}\n}}\n", dir.join(format!("{zone}.zone")).display());
    std::fs::write(&up_conf, block("cluster.local") + &block("example.com")).map_err(|e| e.to_string())?;
    let mut upstream = Running {
        child: Command::new(release.join("ndots"))
            .arg("-conf")
            .arg(&up_conf)
            .env("NDOTS_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("upstream: {e}"))?,
        addr: UPSTREAM,
    };
    wait_ready(UPSTREAM, &mut upstream.child).map_err(|e| format!("upstream ndots: {e}"))?;
    let all = servers::all(&release, &dir);
    let list: Vec<&Server> =
        all.iter().filter(|s| only.is_empty() || only.iter().any(|o| o == s.name) || s.name == "floor" || s.name == "ndots").collect();
    eprintln!("bench dns: {rounds} round(s) x {} servers, {duration} s per workload, latency at {lat_qps}/s", list.len());
    let mut runs: Vec<(String, String, Run)> = Vec::new();
    for round in 0..rounds as usize {
        // The order rotates each round.
        for k in 0..list.len() {
            let server = list[(k + round) % list.len()];
            let mut cmd = server.command();
            let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().map_err(|e| format!("{}: {e}", server.name))?;
            let mut running = Running { child, addr: server.addr };
            if let Err(e) = wait_ready(running.addr, &mut running.child) {
                eprintln!("bench dns: {} skipped this round: {e}", server.name);
                continue;
            }
            for w in ["hit", "nx"] {
                let input = dir.join(format!("{w}.txt"));
                let input = input.to_string_lossy();
                // Warm: every name once.
                dnsperf(&["-s", running.addr, "-d", &input, "-n", "1", "-t", "2"])?;
                let pid = running.child.id();
                let cpu0 = cpu_seconds(pid, hz);
                let out = dnsperf(&["-s", running.addr, "-d", &input, "-l", &duration.to_string(), "-T", "1", "-c", "8", "-q", "100"])?;
                let cpu_s = cpu_seconds(pid, hz) - cpu0;
                let Some((qps, completed, lost)) = report::parse_dnsperf(&out) else {
                    eprintln!("bench dns: {} {w}: no dnsperf summary", server.name);
                    continue;
                };
                let (mut p50_ms, mut p99_ms) = (None, None);
                if lat_qps > 0 {
                    let out = dnsperf(&["-s", running.addr, "-d", &input, "-l", "5", "-Q", &lat_qps.to_string(), "-v"])?;
                    let mut lat = report::parse_latencies(&out);
                    lat.sort_by(f64::total_cmp);
                    (p50_ms, p99_ms) = (report::percentile(&lat, 0.5), report::percentile(&lat, 0.99));
                }
                let run = Run { qps, completed, lost, cpu_s, p50_ms, p99_ms };
                eprintln!(
                    "round {} {}/{w}: {:.0} q/s, {:.0} per CPU-s, p99 {} ms, lost {lost}",
                    round + 1,
                    server.name,
                    run.qps,
                    run.per_cpu_s(),
                    p99_ms.map_or("-".into(), |v| format!("{v:.3}"))
                );
                runs.push((server.name.to_string(), w.to_string(), run));
            }
        }
    }
    let mut rows: Vec<Summary> = Vec::new();
    for w in ["hit", "nx"] {
        for s in &list {
            let r: Vec<Run> = runs.iter().filter(|(n, wl, _)| n == s.name && wl == w).map(|(_, _, r)| r.clone()).collect();
            if !r.is_empty() {
                rows.push(report::summarise(s.name, w, &r));
            }
        }
    }
    let table = report::table(&rows);
    write(&dir.join("results.md"), &table)?;
    write(&dir.join("chart.svg"), &report::svg(&rows))?;
    println!("{table}");
    eprintln!("bench dns: {} and {}", dir.join("results.md").display(), dir.join("chart.svg").display());
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}
