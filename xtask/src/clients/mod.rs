//! `cargo xtask client-check`: the client-library models (`sim::client`) beside the real libraries,
//! on the wire. Real glibc and musl (one `getaddrinfo` program, `libcheck/gai.c`, built with `gcc` and
//! with `musl-gcc -static`), Go (`libcheck/lookup.go`: `GODEBUG=netdns=go`, `netdns=cgo`, and no
//! GODEBUG with the model choosing as that release does), Debian's c-ares (`libcheck/ares.c`,
//! `ares_getaddrinfo` and `ares_gethostbyname`) and Debian's libevent (`libcheck/evdns.c`,
//! `evdns_getaddrinfo` and `evdns_base_resolve_ipv4`), each model at the installed release, run
//! inside a network namespace whose resolv.conf names recording servers (`recorder`: two that
//! answer, one that never does). The recorder, in this process, notes every packet (time,
//! transport, source port, nameserver, the qname with its case, qtype, EDNS size), applies the same
//! fault rules as `ndots-sim lookup --drop/--delay/--servfail`, and forwards the rest to a real
//! `ndots` serving the zone with its `file` plugin. The model runs the same case (`cases`) against
//! its harness; packets are matched (`compare`) by (transport, qname, qtype, EDNS) within a time
//! tolerance, which sockets and nameservers packets share must agree, and so must the result the
//! application sees (`programs`). Needs root and `ip`; builds with whatever of gcc, musl-gcc and go
//! is installed (installs musl-tools, golang-go, libc-ares-dev and libevent-dev from Debian when
//! missing) and skips, with a message, what it cannot run.

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sim::client::harness::Harness;
use sim::client::{Call, Family, Hints, Lib, PodAddrs, ResolvConf};

use crate::sh;

mod cases;
mod compare;
mod programs;
mod recorder;

use cases::{V6, cases, zone};
use compare::{case_free, compare, numbering};
use programs::{Program, build_programs, lib_name, package_version, real_result, result_of, versions};
use recorder::{Packet, Recording, Shared, serve_tcp, serve_udp};

const NS: &str = "ndots-ccheck";
const SERVER: &str = "10.203.0.1";
/// A second nameserver that answers like the first (for `rotate`).
const SECOND: &str = "10.203.0.3";
/// A nameserver that records queries and never answers.
const SILENT: &str = "10.203.0.4";
const POD: &str = "10.203.0.2";
/// Time tolerance between a real packet and its model counterpart.
const TOLERANCE: Duration = Duration::from_millis(150);

fn in_ns(args: &[&str]) -> Result<String, String> {
    crate::in_netns(NS, args)
}

fn set_ipv6(v6: V6) -> Result<(), String> {
    let settings: &[(&str, &str)] = match v6 {
        V6::Off => &[("all", "1"), ("default", "1"), ("lo", "1"), ("ccheck1", "1")],
        V6::Loopback => &[("all", "0"), ("default", "0"), ("lo", "0"), ("ccheck1", "1")],
        V6::LinkLocal | V6::Global => &[("all", "0"), ("default", "0"), ("lo", "0"), ("ccheck1", "0")],
    };
    for (iface, v) in settings {
        in_ns(&["sysctl", "-q", "-w", &format!("net.ipv6.conf.{iface}.disable_ipv6={v}")])?;
    }
    if v6 == V6::Global {
        in_ns(&["ip", "-6", "addr", "add", "2001:db8::2/64", "dev", "ccheck1", "nodad"])?;
        in_ns(&["ip", "-6", "route", "add", "default", "via", "2001:db8::1"])?;
    }
    if v6 >= V6::LinkLocal {
        // Wait for the link-local address to leave the tentative (DAD) state: glibc ignores tentative ones.
        for _ in 0..50 {
            let a = in_ns(&["ip", "-6", "addr", "show", "dev", "ccheck1"])?;
            if a.contains("fe80") && !a.contains("tentative") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        return Err("the pod's IPv6 link-local address never left DAD".into());
    }
    Ok(())
}

fn setup_network() -> Result<(), String> {
    let _ = sh(&["ip", "link", "del", "ccheck0"]);
    sh(&["ip", "link", "add", "ccheck0", "type", "veth", "peer", "name", "ccheck1"])?;
    sh(&["ip", "link", "set", "ccheck1", "netns", NS])?;
    for ip in [SERVER, SECOND, SILENT] {
        sh(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "ccheck0"])?;
    }
    sh(&["ip", "link", "set", "ccheck0", "up"])?;
    in_ns(&["ip", "link", "set", "lo", "up"])?;
    in_ns(&["ip", "addr", "add", &format!("{POD}/24"), "dev", "ccheck1"])?;
    in_ns(&["ip", "link", "set", "ccheck1", "up"])?;
    // A pod has a default route: IPv4 destinations are reachable (RFC 6724 sorting, as c-ares'
    // ares_gethostbyname relies on, sees them as usable).
    in_ns(&["ip", "route", "add", "default", "via", SERVER])?;
    Ok(())
}

fn teardown() {
    let _ = sh(&["ip", "link", "del", "ccheck0"]);
    let _ = sh(&["ip", "netns", "del", NS]);
    let _ = std::fs::remove_dir_all(format!("/etc/netns/{NS}"));
}

pub fn check(only: &[String]) -> ExitCode {
    if sh(&["id", "-u"]).map(|u| u.trim() != "0").unwrap_or(true) {
        eprintln!("client-check: skipped: needs root (network namespaces)");
        return ExitCode::SUCCESS;
    }
    if sh(&["which", "musl-gcc"]).is_err()
        || sh(&["which", "go"]).is_err()
        || !Path::new("/usr/include/ares.h").exists()
        || !Path::new("/usr/include/event2/dns.h").exists()
    {
        let _ = crate::run(
            "apt-get install -y musl-tools golang-go libc-ares-dev libevent-dev",
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "musl-tools", "golang-go", "libc-ares-dev", "libevent-dev"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        );
    }
    teardown();
    if let Err(e) = sh(&["ip", "netns", "add", NS]) {
        eprintln!("client-check: skipped: network namespaces unavailable ({e})");
        return ExitCode::SUCCESS;
    }
    let result = run_all(only);
    teardown();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("client-check: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_all(only: &[String]) -> Result<bool, String> {
    if let Err(c) = crate::run("cargo build -p resolver --bin ndots", crate::cargo().args(["build", "-p", "resolver", "--bin", "ndots"])) {
        return Err(format!("building ndots failed ({c:?})"));
    }
    let target = PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()));
    let dir = target.join("client-check");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let dir = dir.canonicalize().map_err(|e| e.to_string())?;
    let programs = build_programs(&dir);
    if programs.is_empty() {
        eprintln!("client-check: skipped: no C compiler and no Go toolchain");
        return Ok(true);
    }
    let (glibc_v, musl_v) = versions();
    eprintln!(
        "client-check: glibc {}, musl {}, {}",
        glibc_v.as_deref().unwrap_or("?"),
        musl_v.as_deref().unwrap_or("?"),
        sh(&["go", "version"]).map(|s| s.trim().to_string()).unwrap_or_else(|_| "no Go".into())
    );
    setup_network()?;
    // ndots on loopback, serving the zone.
    let zone = dir.join("zone.db");
    std::fs::write(&zone, cases::zone()).map_err(|e| e.to_string())?;
    let upstream_port = UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).map_err(|e| e.to_string())?.port();
    let corefile = dir.join("Corefile");
    std::fs::write(&corefile, format!(".:{upstream_port} {{\n    bind 127.0.0.1\n    file {} .\n}}\n", zone.display()))
        .map_err(|e| e.to_string())?;
    let mut ndots: Child = Command::new(target.join("debug").join("ndots"))
        .arg("-conf")
        .arg(&corefile)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("ndots: {e}"))?;
    std::thread::sleep(Duration::from_millis(300));
    if let Ok(Some(status)) = ndots.try_wait() {
        return Err(format!("ndots exited at start ({status}); run it on {} to see why", corefile.display()));
    }
    let go_v = sh(&["go", "version"]).ok().and_then(|o| o.split_whitespace().nth(2).map(|v| v.trim_start_matches("go").to_string()));
    let result = run_cases(only, &programs, [glibc_v, musl_v, go_v], SocketAddr::from(([127, 0, 0, 1], upstream_port)));
    let _ = ndots.kill();
    let _ = ndots.wait();
    result
}

fn run_cases(
    only: &[String],
    programs: &[Program],
    [glibc_v, musl_v, go_v]: [Option<String>; 3],
    upstream: SocketAddr,
) -> Result<bool, String> {
    std::thread::sleep(Duration::from_millis(300));
    let shared: Shared = Arc::default();
    // Two answering nameservers and a silent one, all recorded.
    for (ip, answers) in [(SERVER, true), (SECOND, true), (SILENT, false)] {
        let addr = SocketAddr::from((ip.parse::<IpAddr>().map_err(|e| e.to_string())?, 53));
        let udp = UdpSocket::bind(addr).map_err(|e| format!("recorder on {addr}: {e}"))?;
        let s = shared.clone();
        std::thread::spawn(move || serve_udp(udp, s, answers.then_some(upstream)));
        if answers {
            let tcp = TcpListener::bind(addr).map_err(|e| format!("recorder on {addr}: {e}"))?;
            let s = shared.clone();
            std::thread::spawn(move || serve_tcp(tcp, s, upstream));
        }
    }
    let netns_dir = PathBuf::from(format!("/etc/netns/{NS}"));
    std::fs::create_dir_all(&netns_dir).map_err(|e| e.to_string())?;
    // Arguments naming a library (`evdns`, `c-ares`) pick libraries; the others pick cases by id.
    let picks = |p: &Program, o: &str| lib_name(p.lib) == o || p.name() == o;
    let (lib_args, case_args): (Vec<&String>, Vec<&String>) = only.iter().partition(|o| programs.iter().any(|p| picks(p, o)));
    let programs: Vec<&Program> = programs.iter().filter(|p| lib_args.is_empty() || lib_args.iter().any(|l| picks(p, l))).collect();
    let mut cases = cases();
    if !case_args.is_empty() {
        cases.retain(|c| case_args.iter().any(|o| c.id.contains(o.as_str())));
    }
    // IPv6 off first, then on: one switch.
    cases.sort_by_key(|c| c.ipv6);
    let mut ipv6 = None;
    let (mut agreed, mut total) = (0, 0);
    let mut failures = Vec::new();
    for case in &cases {
        if ipv6 != Some(case.ipv6) {
            set_ipv6(case.ipv6)?;
            ipv6 = Some(case.ipv6);
        }
        let rc_text = format!(
            "search default.svc.cluster.local svc.cluster.local cluster.local ec2.internal example.internal\n{}options {}\n",
            case.nameservers.iter().map(|n| format!("nameserver {n}\n")).collect::<String>(),
            case.options
        );
        std::fs::write(netns_dir.join("resolv.conf"), &rc_text).map_err(|e| e.to_string())?;
        let rc = ResolvConf::parse(&rc_text);
        let mut pod: Vec<IpAddr> = vec![POD.parse().map_err(|_| "ip")?, "127.0.0.1".parse().map_err(|_| "ip")?];
        if case.ipv6 >= V6::Loopback {
            pod.push("::1".parse().map_err(|_| "ip")?);
        }
        if case.ipv6 >= V6::LinkLocal {
            pod.push("fe80::1".parse().map_err(|_| "ip")?);
        }
        if case.ipv6 == V6::Global {
            pod.push("2001:db8::2".parse().map_err(|_| "ip")?);
        }
        for program in programs.iter().copied().filter(|p| case.libs.contains(&p.lib) && !case.except.contains(&p.name().as_str())) {
            let lib = &program.lib;
            total += 1;
            // The real library.
            {
                let mut r = shared.lock().map_err(|_| "lock")?;
                *r = Recording { t0: None, packets: Vec::new(), rules: case.rules.clone() };
            }
            let mut args: Vec<String> = vec!["netns".into(), "exec".into(), NS.into(), program.cmd.clone(), case.name.into()];
            let go = matches!(lib, Lib::Go | Lib::GoCgo);
            args.push(
                match (case.family, go) {
                    (Family::Unspec, false) => "unspec",
                    (Family::Inet, false) => "inet",
                    (Family::Inet6, false) => "inet6",
                    (Family::Unspec, true) => "ip",
                    (Family::Inet, true) => "ip4",
                    (Family::Inet6, true) => "ip6",
                }
                .into(),
            );
            if let Some(api) = program.api_arg() {
                args.push(api.into());
            } else if !go && !case.flags.is_empty() {
                args.push(case.flags.into());
            }
            let mut c = Command::new("ip");
            c.args(&args);
            for (k, v) in &program.env {
                c.env(k, v);
            }
            let out = c.output().map_err(|e| format!("{}: {e}", program.cmd))?;
            // Answers still in flight are not packets the library sent; let late retries land.
            std::thread::sleep(Duration::from_millis(100));
            let real_out = real_result(&String::from_utf8_lossy(&out.stdout));
            let real: Vec<Packet> = shared.lock().map_err(|_| "lock")?.packets.clone();
            // The model.
            let mut hints = Hints { family: case.family, ..Hints::NULL };
            hints.addrconfig = case.flags.contains("addrconfig");
            let call = Call { name: case.name.into(), hints, pod: PodAddrs(pod.clone()) };
            let version = match lib {
                Lib::Go if program.go_default => go_v.clone(),
                Lib::Glibc | Lib::GoCgo => glibc_v.clone(),
                Lib::Musl => musl_v.clone(),
                Lib::CAres => package_version("libc-ares2"),
                Lib::Evdns => package_version("libevent-2.1-7"),
                _ => None,
            };
            let mut harness = Harness::new(&zone(), ".", case.rules.clone())?;
            let (sent, outcome) = sim::client::run_model(*lib, version.as_deref(), program.api, &rc, &call, &mut harness)?;
            let model: Vec<Packet> = sent
                .iter()
                .map(|s| Packet {
                    at: s.at,
                    transport: s.send.transport,
                    socket: u64::from(s.send.socket),
                    server: s.send.server.ip(),
                    qname: s.send.qname.clone(),
                    qtype: s.send.qtype,
                    edns: s.send.edns,
                })
                .collect();
            let model_out = result_of(program, &outcome);
            // evdns sends names in DNS 0x20 random case: both must randomise, then compare without case.
            let mut diffs = Vec::new();
            let (real, model) = if *lib == Lib::Evdns { case_free(real, model, &mut diffs) } else { (real, model) };
            diffs.extend(compare(&real, &model));
            if real_out != model_out {
                diffs.push(format!("result: real '{real_out}', model '{model_out}'"));
            }
            let verdict = if diffs.is_empty() { "agree" } else { "DIFFER" };
            eprintln!(
                "{:<24} {:<7} {:>3} real / {:>3} model packets  {verdict}  {}",
                case.id,
                program.name(),
                real.len(),
                model.len(),
                if real_out.len() > 40 { format!("{}...", &real_out[..40]) } else { real_out.clone() }
            );
            if diffs.is_empty() {
                agreed += 1;
            } else {
                let (rs, ms) = (numbering(&real), numbering(&model));
                let mut text = format!("{} / {}:\n", case.id, program.name());
                for d in &diffs {
                    text.push_str(&format!("    {d}\n"));
                }
                text.push_str("    real:\n");
                for p in &real {
                    text.push_str(&format!("      {}\n", p.show(&rs)));
                }
                text.push_str("    model:\n");
                for p in &model {
                    text.push_str(&format!("      {}\n", p.show(&ms)));
                }
                failures.push(text);
            }
        }
    }
    for f in &failures {
        eprintln!("{f}");
    }
    eprintln!("client-check: {agreed} of {total} library/case pairs agree with the models on the wire");
    Ok(failures.is_empty())
}
