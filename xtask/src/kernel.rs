//! `cargo xtask kernel-check`: the netmodel conntrack against this machine's real kernel. Inside a
//! network namespace, iptables DNATs UDP "ClusterIPs" to loopback servers; the same packet sequences
//! run through `netmodel::conntrack` for this kernel's version, and `conntrack -L` is compared with the
//! model: the remaining timeout (±2 s), UNREPLIED, ASSURED and the DNAT target, including the stale
//! entry that keeps a flow on a DNAT target the rules no longer name (sources.md#conntrack-udp-timeouts, sources.md#stale-udp-conntrack).
//! Needs root, `ip`, `iptables` and `conntrack` (installed from Debian if missing); skips with a
//! message where namespaces are unavailable. IPVS is not checked (no module here).

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use netmodel::conntrack::{Config, Conntrack, Tuple, Verdict};
use netmodel::{Kernel, Proto};

use crate::sh;

const NS: &str = "ndots-kcheck";
/// Pairs sent per send path in the race measurement.
const PAIRS: u32 = 2000;

/// The hidden helper run inside the namespace: `__udp serve PORT [silent]` answers every datagram
/// with its own port number (or never); `__udp send SRC VIP` sends one and prints the answer.
pub fn helper(args: &[String]) -> ExitCode {
    match args {
        [cmd, port, rest @ ..] if cmd == "serve" => {
            let Ok(s) = UdpSocket::bind(("127.0.0.1", port.parse::<u16>().unwrap_or(0))) else { return ExitCode::FAILURE };
            let silent = rest.first().is_some_and(|a| a == "silent");
            let mut b = [0u8; 512];
            while let Ok((_, from)) = s.recv_from(&mut b) {
                if !silent {
                    let _ = s.send_to(port.as_bytes(), from);
                }
            }
            ExitCode::SUCCESS
        }
        [cmd, src, vip] if cmd == "send" => {
            let Ok(s) = UdpSocket::bind(("127.0.0.1", src.parse::<u16>().unwrap_or(0))) else { return ExitCode::FAILURE };
            let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
            let Ok(vip) = vip.parse::<SocketAddr>() else { return ExitCode::FAILURE };
            let _ = s.send_to(b"q", vip);
            let mut b = [0u8; 64];
            match s.recv_from(&mut b) {
                Ok((n, _)) => println!("{}", String::from_utf8_lossy(&b[..n])),
                Err(_) => println!("none"),
            }
            ExitCode::SUCCESS
        }
        [cmd, path, n] if cmd == "pairs" => crate::race::pairs(path, n),
        [cmd, ip, port] if cmd == "echo" => crate::race::echo(ip, port),
        [cmd, num] if cmd == "nfqueue" => crate::race::nfqueue(num),
        _ => ExitCode::from(2),
    }
}

fn in_ns(args: &[&str]) -> Result<String, String> {
    crate::in_netns(NS, args)
}

/// One conntrack entry as the kernel or the model shows it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    timeout: f64,
    unreplied: bool,
    assured: bool,
    target_port: u16,
}

fn kernel_entry(src: u16) -> Result<Option<Seen>, String> {
    let out = in_ns(&["conntrack", "-L", "-p", "udp", "--orig-port-src", &src.to_string()])?;
    let Some(line) = out.lines().find(|l| l.starts_with("udp")) else { return Ok(None) };
    let words: Vec<&str> = line.split_whitespace().collect();
    let timeout = words.get(2).and_then(|w| w.parse().ok()).ok_or_else(|| format!("conntrack line: {line}"))?;
    // The reply tuple's source port is the DNAT target: the second `sport=`.
    let target_port = words.iter().filter_map(|w| w.strip_prefix("sport=")).nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    Ok(Some(Seen { timeout, unreplied: line.contains("[UNREPLIED]"), assured: line.contains("[ASSURED]"), target_port }))
}

/// The model's flow, driven with the same packets at the same times.
struct Model {
    ct: Conntrack,
    rng: fastrand::Rng,
}

impl Model {
    fn packet(&mut self, now: Duration, src: u16, vip: SocketAddr, target: SocketAddr, replied: bool) -> u16 {
        let t = Tuple::udp(SocketAddr::from(([127, 0, 0, 1], src)), vip);
        let to = match self.ct.lookup(now, &t) {
            Some((orig, _)) => {
                self.ct.touch(now, orig, false);
                self.ct.get(&orig).map_or(0, |e| e.nat_target().port())
            }
            None => match self.ct.confirm(now, self.ct.begin(t, target), None, &mut self.rng) {
                Verdict::Accept { to } => to.port(),
                _ => 0,
            },
        };
        if replied {
            self.ct.touch(now, t, true);
        }
        to
    }

    fn entry(&mut self, now: Duration, src: u16, vip: SocketAddr) -> Option<Seen> {
        self.ct.expire(now);
        let e = self.ct.get(&Tuple::udp(SocketAddr::from(([127, 0, 0, 1], src)), vip))?;
        Some(Seen {
            timeout: (e.expires.saturating_sub(now)).as_secs_f64(),
            unreplied: !e.seen_reply,
            assured: e.assured,
            target_port: e.nat_target().port(),
        })
    }
}

fn this_kernel() -> Option<Kernel> {
    let r = sh(&["uname", "-r"]).ok()?;
    let mut it = r.trim().split(['.', '-']);
    Some(Kernel::new(it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn dnat(vip: &str, port: u16, op: &str) -> Result<String, String> {
    in_ns(&[
        "iptables",
        "-t",
        "nat",
        op,
        "OUTPUT",
        "-p",
        "udp",
        "-d",
        vip,
        "--dport",
        "53",
        "-j",
        "DNAT",
        "--to-destination",
        &format!("127.0.0.1:{port}"),
    ])
}

pub fn check() -> ExitCode {
    if sh(&["id", "-u"]).map(|u| u.trim() != "0").unwrap_or(true) {
        eprintln!("kernel-check: skipped: needs root (network namespaces, iptables)");
        return ExitCode::SUCCESS;
    }
    if sh(&["which", "iptables"]).is_err() || sh(&["which", "conntrack"]).is_err() {
        let _ =
            crate::run("apt-get install -y iptables conntrack", Command::new("apt-get").args(["install", "-y", "iptables", "conntrack"]));
    }
    let _ = sh(&["ip", "netns", "del", NS]);
    if let Err(e) = sh(&["ip", "netns", "add", NS]) {
        eprintln!("kernel-check: skipped: network namespaces unavailable ({e})");
        return ExitCode::SUCCESS;
    }
    let result = run_cases();
    let _ = sh(&["ip", "netns", "del", NS]);
    // The insertion race by send path (race.rs), in namespaces of its own.
    let result = result.and_then(|ok| {
        let kernel = this_kernel().ok_or("cannot read the kernel version")?;
        let rows = crate::race::measure(PAIRS)?;
        Ok(crate::race::compare(kernel, &rows) && ok)
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("kernel-check: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_cases() -> Result<bool, String> {
    let kernel = this_kernel().ok_or("cannot read the kernel version")?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let exe = exe.to_string_lossy().into_owned();
    in_ns(&["ip", "link", "set", "lo", "up"])?;
    in_ns(&["ip", "route", "add", "10.96.0.0/12", "dev", "lo"])?;
    let timeout_udp = in_ns(&["cat", "/proc/sys/net/netfilter/nf_conntrack_udp_timeout"]).unwrap_or_default();
    let timeout_stream = in_ns(&["cat", "/proc/sys/net/netfilter/nf_conntrack_udp_timeout_stream"]).unwrap_or_default();
    eprintln!("kernel-check: kernel {kernel}; udp_timeout {} s, udp_timeout_stream {} s", timeout_udp.trim(), timeout_stream.trim());
    let mut servers: Vec<Child> = Vec::new();
    for (port, silent) in [("5353", false), ("5354", false), ("5399", true)] {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", NS, &exe, "__udp", "serve", port]).stdout(Stdio::null()).stderr(Stdio::null());
        if silent {
            c.arg("silent");
        }
        servers.push(c.spawn().map_err(|e| e.to_string())?);
    }
    std::thread::sleep(Duration::from_millis(300));
    dnat("10.96.0.10", 5353, "-A")?;
    dnat("10.96.0.11", 5399, "-A")?;
    dnat("10.96.0.12", 5353, "-A")?;
    let mut model = Model { ct: Conntrack::new(Config::for_kernel(kernel, 65536)), rng: fastrand::Rng::with_seed(1) };
    let t0 = Instant::now();
    let vip = |last: u8| SocketAddr::from(([10, 96, 0, last], 53));
    let target = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let send = |src: u16, v: SocketAddr| in_ns(&[&exe, "__udp", "send", &src.to_string(), &v.to_string()]).map(|o| o.trim().to_string());
    let mut rows: Vec<(String, Option<Seen>, Option<Seen>)> = Vec::new();
    let mut ok = true;
    // (case, source port, VIP, target, packets at these offsets in ms)
    let cases: [(&str, u16, u8, u16, &[u64]); 4] = [
        ("unreplied: one query, no answer (30 s, UNREPLIED)", 41001, 11, 5399, &[0]),
        ("replied once (30 s, not ASSURED)", 41002, 10, 5353, &[0]),
        ("replied twice within 2 s (30 s, not yet a stream)", 41003, 10, 5353, &[0, 500]),
        ("replied again after 2 s (stream timeout, ASSURED)", 41004, 10, 5353, &[0, 2500]),
    ];
    for (name, src, v, tgt, times) in cases {
        let start = t0.elapsed();
        for &ms in times {
            let at = start + Duration::from_millis(ms);
            if let Some(wait) = at.checked_sub(t0.elapsed()) {
                std::thread::sleep(wait);
            }
            let answer = send(src, vip(v))?;
            model.packet(t0.elapsed(), src, vip(v), target(tgt), answer != "none");
        }
        rows.push((name.to_string(), kernel_entry(src)?, model.entry(t0.elapsed(), src, vip(v))));
    }
    // Stale DNAT: the rules now send 10.96.0.12 to 5354, but the flow's entry still says 5353 until
    // it is deleted (kube-proxy's conntrack cleanup, sources.md#stale-udp-conntrack).
    let src = 41005;
    let a = send(src, vip(12))?;
    model.packet(t0.elapsed(), src, vip(12), target(5353), a != "none");
    dnat("10.96.0.12", 5353, "-D")?;
    dnat("10.96.0.12", 5354, "-A")?;
    let b = send(src, vip(12))?;
    let mb = model.packet(t0.elapsed(), src, vip(12), target(5354), b != "none");
    rows.push((
        format!("rules changed, entry kept: kernel answered from {b}, model to {mb}"),
        kernel_entry(src)?,
        model.entry(t0.elapsed(), src, vip(12)),
    ));
    ok &= b == mb.to_string();
    in_ns(&["conntrack", "-D", "-p", "udp", "--orig-port-src", &src.to_string()])?;
    model.ct.delete_nat(vip(12), target(5353).ip(), Proto::Udp);
    let c = send(src, vip(12))?;
    let mc = model.packet(t0.elapsed(), src, vip(12), target(5354), c != "none");
    rows.push((
        format!("entry deleted: kernel answered from {c}, model to {mc}"),
        kernel_entry(src)?,
        model.entry(t0.elapsed(), src, vip(12)),
    ));
    ok &= c == mc.to_string();
    for s in &mut servers {
        let _ = s.kill();
        let _ = s.wait();
    }
    println!("kernel {kernel}: conntrack -L beside netmodel::conntrack for the same packets");
    println!("{:<72} {:<34} model", "case", "kernel (timeout, flags, target)");
    for (name, k, m) in &rows {
        let show = |s: &Option<Seen>| match s {
            Some(s) => format!(
                "{:>5.1} s {}{} :{}",
                s.timeout,
                if s.unreplied { "UNREPLIED " } else { "" },
                if s.assured { "ASSURED " } else { "" },
                s.target_port
            ),
            None => "no entry".into(),
        };
        let same = match (k, m) {
            (Some(k), Some(m)) => {
                (k.timeout - m.timeout).abs() <= 2.0
                    && k.unreplied == m.unreplied
                    && k.assured == m.assured
                    && k.target_port == m.target_port
            }
            (None, None) => true,
            _ => false,
        };
        ok &= same;
        println!("{name:<72} {:<34} {:<34} {}", show(k), show(m), if same { "same" } else { "DIFFERENT" });
    }
    println!("{}", if ok { "kernel-check: the model matches the kernel" } else { "kernel-check: the model and the kernel differ" });
    Ok(ok)
}
