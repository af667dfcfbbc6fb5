//! `ndots-sim`: run simulated clusters, look at what a client library puts on the wire.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use sim::client::harness::{Harness, Rule};
use sim::client::{Api, Call, Family, Hints, Lib, PodAddrs, ResolvConf};
use sim::spec::PodGroup;
use sim::{ClusterSpec, run};

#[derive(Parser)]
#[command(name = "ndots-sim", version, about = "Deterministic simulation of Kubernetes cluster DNS, running the real ndots resolver")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a scenario file: progress, a summary, the report; exit 1 when an expectation fails.
    Run {
        file: PathBuf,
        /// Overrides the file's seed.
        #[arg(long, env = "SIM_SEED")]
        seed: Option<u64>,
        /// KEY.PATH=VALUE, e.g. coredns.replicas=3 or pods.0.library=musl (repeatable).
        #[arg(long = "set")]
        set: Vec<String>,
        /// Write DIR/<file>.html (self-contained charts) and DIR/<file>.json.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Print the run as JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// The same cluster with and without a change (--set-b, or a second file), side by side.
    Compare {
        /// The scenario file: side A, run as written.
        file: PathBuf,
        /// A second scenario file (B); without it, B is FILE with the --set overrides.
        other: Option<PathBuf>,
        /// Overrides both sides' seed (each side runs the same seed).
        #[arg(long, env = "SIM_SEED")]
        seed: Option<u64>,
        /// KEY.PATH=VALUE applied to both sides, e.g. duration=120s (repeatable).
        #[arg(long = "set")]
        set: Vec<String>,
        /// KEY.PATH=VALUE applied to side A only (repeatable).
        #[arg(long = "set-a")]
        set_a: Vec<String>,
        /// KEY.PATH=VALUE applied to side B only, e.g. node_local={}: the change to compare (repeatable).
        #[arg(long = "set-b")]
        set_b: Vec<String>,
        /// Write DIR/<file>-compare.html (both runs overlaid) and DIR/<file>-compare.json.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Print both runs as JSON instead of the side-by-side table.
        #[arg(long)]
        json: bool,
    },
    /// Run a scenario over many seeds: how often does the incident happen?
    Sweep {
        file: PathBuf,
        /// A..B (B excluded), A..=B, or N for 1..=N.
        #[arg(long, default_value = "1..=20")]
        seeds: String,
        /// KEY.PATH=VALUE applied to every seed's run (repeatable).
        #[arg(long = "set")]
        set: Vec<String>,
        /// Runs at once (default: one per core).
        #[arg(long)]
        jobs: Option<usize>,
        /// Write DIR/<file>-sweep.html and .json: the outcome of every seed.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Print the outcomes as JSON instead of the summary.
        #[arg(long)]
        json: bool,
    },
    /// Static warnings for the known horror patterns, each with its source and fix; exit 1 on a warning.
    Lint {
        /// A scenario file: lints its Corefile, every pod group's resolv.conf and its cluster state.
        scenario: Option<PathBuf>,
        #[arg(long)]
        resolv_conf: Option<PathBuf>,
        #[arg(long)]
        corefile: Option<PathBuf>,
        /// A `kubectl get namespaces,services,endpointslices,pods -A -o yaml|json` dump.
        #[arg(long)]
        cluster_state: Option<PathBuf>,
        /// The nodes' resolv.conf, what `forward . /etc/resolv.conf` reads (loop check).
        #[arg(long)]
        node_resolv_conf: Option<PathBuf>,
        /// The cluster DNS replicas' memory limit (default: the scenario's, else CoreDNS's 170 MiB).
        #[arg(long)]
        memory_limit_mib: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Why lookups were slow or failed in a run: the top causes, the pod groups, the slowest lookups,
    /// and one lookup's story (--lookup ID), from the JSON of `run --json` or `run --report DIR`.
    Explain {
        /// The run's JSON (a compare's too: --side a|b, default b).
        file: PathBuf,
        /// The explained lookup to tell the story of (IDs are listed without it).
        #[arg(long)]
        lookup: Option<usize>,
        #[arg(long)]
        side: Option<String>,
    },
    /// A scenario file of a real cluster from a kubectl dump (or a live --context): nodes, zones,
    /// kernels, kube-proxy, CoreDNS, node-local-dns, Services, and pods grouped by DNS settings and the
    /// client library their image implies. Writes FILE and FILE's stem + .state.yaml; exit 2 when the
    /// input cannot be used.
    Import {
        /// `kubectl get nodes,pods,services,endpointslices,configmaps,daemonsets,deployments -A -o yaml` output.
        dump: Option<PathBuf>,
        /// Run that kubectl command against this context instead of reading a file.
        #[arg(long)]
        context: Option<String>,
        /// The scenario file to write (its state goes beside it as STEM.state.yaml).
        #[arg(short, long, default_value = "cluster.scenario.yaml")]
        out: PathBuf,
        /// Lookups per second per pod: a dump has no traffic, so this is an assumption to edit.
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        /// IMAGE-PATTERN=LIBRARY: images containing the pattern use that library, before the built-in
        /// guess (alpine: musl; distroless/static, scratch: go; pgbouncer: evdns-2.1; envoy, istio
        /// proxyv2: c-ares; otherwise glibc; Java images add the JVM cache, node images Node's pool).
        /// Repeatable, e.g. --library acme/payments=go.
        #[arg(long)]
        library: Vec<String>,
        /// The scenario's name (default: the file's stem).
        #[arg(long)]
        name: Option<String>,
    },
    /// The built-in smoke cluster: 3 nodes, 2 CoreDNS replicas behind the kube-dns VIP, 30 glibc pods.
    Smoke {
        #[arg(long, default_value_t = 1, env = "SIM_SEED")]
        seed: u64,
        /// Print only the trace hash (for determinism checks).
        #[arg(long)]
        trace_hash: bool,
    },
    /// Simulated seconds per wall second for a cluster of the given size.
    Bench {
        #[arg(long, default_value_t = 100)]
        nodes: usize,
        #[arg(long, default_value_t = 3000)]
        pods: usize,
        /// Lookups per second across the cluster.
        #[arg(long, default_value_t = 10_000.0)]
        rate: f64,
        /// Simulated seconds.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// What will my pod put on the wire? Runs one lookup of a library model against a simulated server.
    Lookup {
        name: String,
        #[arg(long, value_enum, default_value_t = Lib::Glibc)]
        lib: Lib,
        /// Library version as the distribution ships it: 2.36 for glibc, 1.2.4 for musl, 1.18.1 for c-ares (1.15 to 1.30, 1.32 and later), 2.1.12 for evdns (2.0 to 2.2).
        #[arg(long)]
        version: Option<String>,
        /// The library call: getaddrinfo (ares_getaddrinfo, evdns_getaddrinfo) or byname (ares_gethostbyname, evdns_base_resolve_ipv4/ipv6); glibc, musl and Go have only getaddrinfo.
        #[arg(long, value_enum, default_value_t = Api::Getaddrinfo)]
        api: Api,
        #[arg(long)]
        resolv_conf: PathBuf,
        /// RFC 1035 zone file the server answers from (origin `.`).
        #[arg(long)]
        zone: PathBuf,
        #[arg(long, value_enum, default_value_t = Fam::Unspec)]
        family: Fam,
        /// getaddrinfo flags: addrconfig,v4mapped,all,canonname
        #[arg(long, value_delimiter = ',')]
        flags: Vec<String>,
        /// The pod's interface addresses (ADDR/PREFIX), for AI_ADDRCONFIG.
        #[arg(long = "pod-addr")]
        pod_addr: Vec<String>,
        /// QNAME/QTYPE[/COUNT]: ignore that query COUNT times (default always).
        #[arg(long)]
        drop: Vec<String>,
        /// QNAME/QTYPE/MS: answer late.
        #[arg(long)]
        delay: Vec<String>,
        /// QNAME/QTYPE: answer SERVFAIL.
        #[arg(long)]
        servfail: Vec<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Fam {
    Unspec,
    Inet,
    Inet6,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run { file, seed, set, report, json } => sim::cli::run(&file, seed, &set, report.as_deref(), json),
        Cmd::Compare { file, other, seed, set, set_a, set_b, report, json } => {
            let sets = sim::cli::Sets { both: &set, a: &set_a, b: &set_b };
            sim::cli::compare(&file, other.as_deref(), seed, &sets, report.as_deref(), json)
        }
        Cmd::Sweep { file, seeds, set, jobs, report, json } => {
            let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            sim::cli::sweep(&file, &seeds, &set, jobs, report.as_deref(), json)
        }
        Cmd::Lint { scenario, resolv_conf, corefile, cluster_state, node_resolv_conf, memory_limit_mib, json } => {
            sim::cli::lint(&sim::cli::LintArgs {
                scenario: scenario.as_deref(),
                resolv_conf: resolv_conf.as_deref(),
                corefile: corefile.as_deref(),
                cluster_state: cluster_state.as_deref(),
                node_resolv_conf: node_resolv_conf.as_deref(),
                memory_limit_mib,
                json,
            })
        }
        Cmd::Explain { file, lookup, side } => sim::explain::command::run(&file, side.as_deref(), lookup),
        Cmd::Import { dump, context, out, rate, library, name } => sim::import::command::run(&sim::import::command::Args {
            dump: dump.as_deref(),
            context: context.as_deref(),
            out: &out,
            rate,
            rules: &library,
            name: name.as_deref(),
        }),
        Cmd::Smoke { seed, trace_hash } => match run(ClusterSpec::smoke(seed)) {
            Ok(r) => {
                if trace_hash {
                    println!("{:016x}", r.trace_hash);
                } else {
                    println!("{}", r.summary());
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e.to_string()),
        },
        Cmd::Bench { nodes, pods, rate, seconds, seed } => bench(nodes, pods, rate, seconds, seed),
        Cmd::Lookup { name, lib, version, api, resolv_conf, zone, family, flags, pod_addr, drop, delay, servfail, json } => {
            match lookup(&name, lib, version, api, &resolv_conf, &zone, family, &flags, &pod_addr, &drop, &delay, &servfail, json) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("ndots-sim: {msg}");
    ExitCode::FAILURE
}

fn bench(nodes: usize, pods: usize, rate: f64, seconds: u64, seed: u64) -> ExitCode {
    let mut spec = ClusterSpec::smoke(seed);
    spec.nodes = nodes;
    spec.coredns_replicas = (nodes / 16).max(2);
    spec.duration = Duration::from_secs(seconds);
    spec.eni_limit = None;
    let template = spec.pods[0].clone();
    spec.pods = vec![PodGroup { count: pods, rate: rate / pods.max(1) as f64, ..template }];
    let t0 = Instant::now();
    match run(spec) {
        Ok(r) => {
            let wall = t0.elapsed().as_secs_f64();
            println!(
                "nodes {nodes} pods {pods} rate {rate}/s: {seconds} simulated s in {wall:.2} wall s = {:.2} simulated s per wall s ({} lookups, {} queries, {:.2}% ok)",
                seconds as f64 / wall,
                r.lookups.len(),
                r.queries(),
                100.0 * r.success_rate()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}

fn qtype_of(s: &str) -> Result<u16, String> {
    Ok(match s.to_ascii_uppercase().as_str() {
        "A" => 1,
        "AAAA" => 28,
        "ANY" | "*" => 0,
        other => return Err(format!("unknown query type '{other}'; expected A, AAAA or ANY")),
    })
}

#[allow(clippy::too_many_arguments)] // One argument per command-line flag.
fn lookup(
    name: &str,
    lib: Lib,
    version: Option<String>,
    api: Api,
    rc_path: &PathBuf,
    zone_path: &PathBuf,
    family: Fam,
    flags: &[String],
    pod_addr: &[String],
    drop: &[String],
    delay: &[String],
    servfail: &[String],
    json: bool,
) -> Result<(), String> {
    let rc_text = std::fs::read_to_string(rc_path).map_err(|e| format!("{}: {e}", rc_path.display()))?;
    let zone_text = std::fs::read_to_string(zone_path).map_err(|e| format!("{}: {e}", zone_path.display()))?;
    let mut rules = Vec::new();
    for d in drop {
        let parts: Vec<&str> = d.split('/').collect();
        let count = match parts.get(2) {
            Some(c) => Some(c.parse::<u32>().map_err(|_| format!("--drop {d}: COUNT must be a number"))?),
            None => None,
        };
        let [q, t, ..] = parts[..] else { return Err(format!("--drop {d}: expected QNAME/QTYPE[/COUNT]")) };
        rules.push(Rule::Drop { qname: q.into(), qtype: qtype_of(t)?, count });
    }
    for d in delay {
        let [q, t, ms] = d.split('/').collect::<Vec<_>>()[..] else { return Err(format!("--delay {d}: expected QNAME/QTYPE/MS")) };
        let ms: u64 = ms.parse().map_err(|_| format!("--delay {d}: MS must be a number"))?;
        rules.push(Rule::Delay { qname: q.into(), qtype: qtype_of(t)?, delay: Duration::from_millis(ms) });
    }
    for d in servfail {
        let [q, t] = d.split('/').collect::<Vec<_>>()[..] else { return Err(format!("--servfail {d}: expected QNAME/QTYPE")) };
        rules.push(Rule::ServFail { qname: q.into(), qtype: qtype_of(t)? });
    }
    let mut hints = Hints {
        family: match family {
            Fam::Unspec => Family::Unspec,
            Fam::Inet => Family::Inet,
            Fam::Inet6 => Family::Inet6,
        },
        ..Hints::NULL
    };
    for f in flags {
        match f.as_str() {
            "addrconfig" => hints.addrconfig = true,
            "v4mapped" => hints.v4mapped = true,
            "all" => hints.all = true,
            "canonname" => hints.canonname = true,
            other => return Err(format!("--flags: unknown flag '{other}'; expected addrconfig, v4mapped, all, canonname")),
        }
    }
    let mut addrs = Vec::new();
    for a in pod_addr {
        let ip = a.split('/').next().unwrap_or(a);
        addrs.push(ip.parse::<IpAddr>().map_err(|_| format!("--pod-addr {a}: expected ADDR/PREFIX"))?);
    }
    if addrs.is_empty() {
        addrs = vec!["10.244.1.10".parse().map_err(|_| "ip")?, "127.0.0.1".parse().map_err(|_| "ip")?];
    }
    let rc = ResolvConf::parse(&rc_text);
    let call = Call { name: name.to_string(), hints, pod: PodAddrs(addrs) };
    let mut harness = Harness::new(&zone_text, ".", rules).map_err(|e| format!("{}: {e}", zone_path.display()))?;
    let (sent, outcome) = sim::client::run_model(lib, version.as_deref(), api, &rc, &call, &mut harness)?;
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    // Sockets numbered in order of first use.
    let mut numbering: Vec<u32> = Vec::new();
    for s in &sent {
        if !numbering.contains(&s.send.socket) {
            numbering.push(s.send.socket);
        }
    }
    for s in &sent {
        let socket = numbering.iter().position(|&x| x == s.send.socket).unwrap_or(0);
        let qtype = match s.send.qtype {
            1 => "A".to_string(),
            28 => "AAAA".to_string(),
            t => t.to_string(),
        };
        let transport = format!("{:?}", s.send.transport).to_lowercase();
        if json {
            let _ = writeln!(
                out,
                "{}",
                serde_json::json!({"t_ms": s.at.as_secs_f64() * 1000.0, "transport": transport, "socket": socket, "server": s.send.server.to_string(), "qname": s.send.qname, "qtype": qtype, "edns": s.send.edns})
            );
        } else {
            let _ = writeln!(
                out,
                "{:>9.3} ms  {transport}  socket {}  {}  {} {}{}",
                s.at.as_secs_f64() * 1000.0,
                socket,
                s.send.server,
                s.send.qname,
                qtype,
                s.send.edns.map(|e| format!("  edns {e}")).unwrap_or_default()
            );
        }
    }
    let result = match &outcome {
        Some(sim::client::Outcome::Addrs(a)) => serde_json::json!({"addrs": a.iter().map(ToString::to_string).collect::<Vec<_>>()}),
        Some(o) => serde_json::json!({"error": format!("{o:?}")}),
        None => serde_json::json!({"error": "no result within 300 s"}),
    };
    if json {
        let _ = writeln!(out, "{}", serde_json::json!({ "result": result }));
    } else {
        let _ = writeln!(out, "{} queries; result: {result}", sent.len());
    }
    Ok(())
}
