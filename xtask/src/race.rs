//! `cargo xtask kernel-check`'s second half: the conntrack insertion race measured by send path on
//! this machine's kernel, beside what the simulator assumes for each path.
//!
//! A pod namespace sends pairs of datagrams (an "A" and an "AAAA") from one source port to a
//! Service IP through a veth; the node namespace DNATs the Service IP to one of two backends at
//! random (iptables `statistic`, as kube-proxy does) and counts, with `conntrack -S`, the clashes it
//! resolved (`clash_resolve`) and the packets it dropped (`insert_failed`). Each pair that overlapped
//! in conntrack (its second packet looked up before its first was confirmed) is one clash; a pair
//! whose two answers came from different backends overlapped with different DNAT choices (race 3).
//!
//! Send paths, as the client libraries use them (sources.md#conntrack-race):
//! - `threads`: two threads, one socket, released together (the kernel selftest `udpclash.c`);
//! - `sendmmsg`: one thread, both datagrams in one `sendmmsg` (glibc's default);
//! - `sequential`: one thread, two `sendto` calls on one socket (musl, c-ares);
//! - `sockets`: two sockets, two threads (Go's native resolver; `single-request-reopen`);
//! - `nfqueue`: glibc's `sendmmsg` with a network-policy agent queueing new flows to user space
//!   before conntrack confirms them (iptables `NFQUEUE` in the node's INPUT, a consumer that accepts
//!   each packet: the kernel selftest `nft_queue.sh`'s udp race, e306e3739d9a).
//!
//! `KRACE_LOAD=K` runs K more senders of the same path at once (a busy node's softirq).

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Barrier;
use std::time::Duration;

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrIn, sendmmsg};

use crate::{in_netns, sh};

const NODE: &str = "ndots-krace";
const POD: &str = "ndots-krace-pod";
const SERVICE: &str = "10.96.0.20:53";
const NODE_IP: &str = "10.244.9.1";
const POD_IP: &str = "10.244.9.2";
const BACKENDS: [u16; 2] = [5353, 5354];

/// How a client library sends the two queries of one lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Threads,
    Sendmmsg,
    Sequential,
    Sockets,
    Nfqueue,
}

impl Path {
    const ALL: [Path; 5] = [Path::Threads, Path::Sendmmsg, Path::Sequential, Path::Sockets, Path::Nfqueue];
    fn name(self) -> &'static str {
        match self {
            Path::Threads => "threads",
            Path::Sendmmsg => "sendmmsg",
            Path::Sequential => "sequential",
            Path::Sockets => "sockets",
            Path::Nfqueue => "nfqueue",
        }
    }
    fn parse(s: &str) -> Option<Path> {
        Path::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// What the pod saw for its pairs.
#[derive(Debug, Default, Clone, Copy)]
struct Pairs {
    same: u32,
    split: u32,
    lost: u32,
}

/// `__udp pairs PATH N`, run in the pod namespace: N pairs to the Service, one fresh source port per
/// pair; prints `same S split P lost L`.
pub fn pairs(path: &str, n: &str) -> ExitCode {
    let (Some(path), Ok(n)) = (Path::parse(path), n.parse::<u32>()) else { return ExitCode::from(2) };
    let service: SocketAddr = SERVICE.parse().expect("service address");
    let mut seen = Pairs::default();
    for i in 0..n {
        let Ok(answers) = one_pair(path, service, i) else { return ExitCode::FAILURE };
        match answers {
            [Some(a), Some(b)] if a == b => seen.same += 1,
            [Some(_), Some(_)] => seen.split += 1,
            _ => seen.lost += 1,
        }
    }
    println!("same {} split {} lost {}", seen.same, seen.split, seen.lost);
    ExitCode::SUCCESS
}

fn bind() -> std::io::Result<UdpSocket> {
    let s = UdpSocket::bind((POD_IP, 0))?;
    s.set_read_timeout(Some(Duration::from_millis(300)))?;
    Ok(s)
}

/// Sends one pair by `path`; returns the backend port that answered each query, if any.
fn one_pair(path: Path, to: SocketAddr, i: u32) -> std::io::Result<[Option<u16>; 2]> {
    let q = [format!("A {i}"), format!("AAAA {i}")];
    let socks = match path {
        Path::Sockets => vec![bind()?, bind()?],
        _ => vec![bind()?],
    };
    match path {
        Path::Threads | Path::Sockets => {
            let go = Barrier::new(2);
            std::thread::scope(|s| {
                for (k, q) in q.iter().enumerate() {
                    let (sock, go) = (&socks[k % socks.len()], &go);
                    s.spawn(move || {
                        go.wait();
                        let _ = sock.send_to(q.as_bytes(), to);
                    });
                }
            });
        }
        Path::Sendmmsg | Path::Nfqueue => {
            let SocketAddr::V4(v4) = to else { return Err(std::io::Error::other("IPv4 only")) };
            let addr = SockaddrIn::from(v4);
            let iovs: Vec<[std::io::IoSlice; 1]> = q.iter().map(|q| [std::io::IoSlice::new(q.as_bytes())]).collect();
            let mut headers = MultiHeaders::<SockaddrIn>::preallocate(2, None);
            let cmsgs: [nix::sys::socket::ControlMessage; 0] = [];
            sendmmsg(socks[0].as_raw_fd(), &mut headers, &iovs, [Some(addr), Some(addr)], cmsgs, MsgFlags::empty())
                .map_err(std::io::Error::from)?;
        }
        Path::Sequential => {
            for q in &q {
                socks[0].send_to(q.as_bytes(), to)?;
            }
        }
    }
    let mut got = [None, None];
    for sock in &socks {
        let mut b = [0u8; 64];
        for _ in 0..(3 - socks.len()) {
            let Ok((n, _)) = sock.recv_from(&mut b) else { break };
            let text = String::from_utf8_lossy(&b[..n]);
            let (query, port) = text.rsplit_once(' ').unwrap_or((&text, ""));
            let k = usize::from(query.starts_with("AAAA"));
            got[k] = port.parse().ok();
        }
    }
    Ok(got)
}

/// `__udp echo IP PORT`, run in the node namespace: answers each datagram with itself and the port.
pub fn echo(ip: &str, port: &str) -> ExitCode {
    let Ok(s) = UdpSocket::bind(format!("{ip}:{port}")) else { return ExitCode::FAILURE };
    let mut b = [0u8; 512];
    while let Ok((n, from)) = s.recv_from(&mut b) {
        let mut answer = b[..n].to_vec();
        answer.extend_from_slice(format!(" {port}").as_bytes());
        let _ = s.send_to(&answer, from);
    }
    ExitCode::SUCCESS
}

/// The NFQUEUE number the policy agent's rule sends new flows to.
const QUEUE: u16 = 7;

/// `__udp nfqueue NUM`, run in the node namespace: a policy agent that accepts every packet queued
/// to NUM, one at a time, as it arrives.
pub fn nfqueue(num: &str) -> ExitCode {
    let Ok(num) = num.parse::<u16>() else { return ExitCode::from(2) };
    let Ok(mut q) = nfq::Queue::open() else { return ExitCode::FAILURE };
    if q.bind(num).is_err() {
        return ExitCode::FAILURE;
    }
    while let Ok(mut msg) = q.recv() {
        msg.set_verdict(nfq::Verdict::Accept);
        if q.verdict(msg).is_err() {
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// The node namespace's conntrack statistics, summed over CPUs.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    clash_resolve: u64,
    insert_failed: u64,
}

fn stats() -> Result<Stats, String> {
    let out = in_netns(NODE, &["conntrack", "-S"])?;
    let mut s = Stats::default();
    for word in out.split_whitespace() {
        let Some((k, v)) = word.split_once('=') else { continue };
        let v: u64 = v.parse().unwrap_or(0);
        match k {
            "clash_resolve" => s.clash_resolve += v,
            "insert_failed" => s.insert_failed += v,
            _ => {}
        }
    }
    Ok(s)
}

/// One path's measurement.
pub struct Measured {
    pub path: &'static str,
    pub pairs: u32,
    pub clashes: u64,
    pub dropped: u64,
    pub split: u32,
    pub lost: u32,
}

/// Sets up the two namespaces, measures every path with `n` pairs, tears down.
pub fn measure(n: u32) -> Result<Vec<Measured>, String> {
    let _ = sh(&["ip", "netns", "del", NODE]);
    let _ = sh(&["ip", "netns", "del", POD]);
    sh(&["ip", "netns", "add", NODE])?;
    sh(&["ip", "netns", "add", POD])?;
    let mut servers: Vec<Child> = Vec::new();
    let result = setup(&mut servers).and_then(|()| Path::ALL.into_iter().map(|p| measure_path(p, n)).collect());
    for s in &mut servers {
        let _ = s.kill();
        let _ = s.wait();
    }
    let _ = sh(&["ip", "netns", "del", POD]);
    let _ = sh(&["ip", "netns", "del", NODE]);
    result
}

fn setup(servers: &mut Vec<Child>) -> Result<(), String> {
    let node = |a: &[&str]| in_netns(NODE, a);
    let pod = |a: &[&str]| in_netns(POD, a);
    node(&["ip", "link", "add", "name", "kc-node", "type", "veth", "peer", "name", "kc-pod", "netns", POD])?;
    node(&["ip", "link", "set", "lo", "up"])?;
    node(&["ip", "addr", "add", &format!("{NODE_IP}/24"), "dev", "kc-node"])?;
    node(&["ip", "link", "set", "kc-node", "up"])?;
    pod(&["ip", "link", "set", "lo", "up"])?;
    pod(&["ip", "addr", "add", &format!("{POD_IP}/24"), "dev", "kc-pod"])?;
    pod(&["ip", "link", "set", "kc-pod", "up"])?;
    pod(&["ip", "route", "add", "default", "via", NODE_IP])?;
    let (vip, port) = SERVICE.split_once(':').expect("service");
    // kube-proxy's two-endpoint chain: the first with probability 1/2, else the second.
    for (i, backend) in BACKENDS.iter().enumerate() {
        let mut rule = vec!["iptables", "-t", "nat", "-A", "PREROUTING", "-p", "udp", "-d", vip, "--dport", port];
        if i == 0 {
            rule.extend(["-m", "statistic", "--mode", "random", "--probability", "0.5"]);
        }
        let to = format!("{NODE_IP}:{backend}");
        rule.extend(["-j", "DNAT", "--to-destination", &to]);
        node(&rule)?;
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    for backend in BACKENDS {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", NODE]).arg(&exe).args(["__udp", "echo", NODE_IP, &backend.to_string()]);
        servers.push(c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().map_err(|e| e.to_string())?);
    }
    let mut c = Command::new("ip");
    c.args(["netns", "exec", NODE]).arg(&exe).args(["__udp", "nfqueue", &QUEUE.to_string()]);
    servers.push(c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().map_err(|e| e.to_string())?);
    std::thread::sleep(Duration::from_millis(300));
    Ok(())
}

/// The policy agent's rule: the packets of new flows to the backends go to the queue before
/// conntrack confirms them (INPUT runs before the confirm at the end of LOCAL_IN).
fn queue_rule(op: &str) -> Result<String, String> {
    let q = QUEUE.to_string();
    in_netns(NODE, &["iptables", op, "INPUT", "-p", "udp", "-m", "conntrack", "--ctstate", "NEW", "-j", "NFQUEUE", "--queue-num", &q])
}

fn measure_path(path: Path, n: u32) -> Result<Measured, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let exe = exe.to_string_lossy().into_owned();
    // `KRACE_LOAD=K`: K more senders of the same path at once, loading the node's softirq.
    let load: usize = std::env::var("KRACE_LOAD").ok().and_then(|k| k.parse().ok()).unwrap_or(0);
    let mut loaders: Vec<Child> = Vec::new();
    for _ in 0..load {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", POD, &exe, "__udp", "pairs", path.name(), &n.to_string()]);
        loaders.push(c.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().map_err(|e| e.to_string())?);
    }
    if path == Path::Nfqueue {
        queue_rule("-A")?;
    }
    let before = stats()?;
    let out = in_netns(POD, &[&exe, "__udp", "pairs", path.name(), &n.to_string()]);
    let after = stats()?;
    if path == Path::Nfqueue {
        queue_rule("-D")?;
    }
    let out = out?;
    // The table counts every sender's overlaps, so every sender's pairs count.
    let mut outs = vec![out];
    for c in loaders {
        let o = c.wait_with_output().map_err(|e| e.to_string())?;
        outs.push(String::from_utf8_lossy(&o.stdout).into_owned());
    }
    let (mut split, mut lost) = (0, 0);
    for out in &outs {
        let w: Vec<u32> = out.split_whitespace().filter_map(|w| w.parse().ok()).collect();
        let [_same, s, l] = w[..] else { return Err(format!("pairs printed {out:?}")) };
        split += s;
        lost += l;
    }
    Ok(Measured {
        path: path.name(),
        pairs: n * outs.len() as u32,
        clashes: after.clash_resolve - before.clash_resolve,
        dropped: after.insert_failed - before.insert_failed,
        split,
        lost,
    })
}

/// Prints the measurement beside the model and says whether they agree: splits and losses within
/// four standard deviations of the model's for the same number of overlapped pairs.
pub fn compare(kernel: netmodel::Kernel, rows: &[Measured]) -> bool {
    let assumed = sim::spec::RaceParams::default().p_cpu_split;
    println!(
        "kernel {kernel}: the insertion race by send path, {} pairs each to a Service DNATed to 2 backends through a veth",
        rows.first().map_or(0, |r| r.pairs)
    );
    println!(
        "{:<11} {:>10} {:>9} {:>8} {:>13} {:>12}  simulator's chance of an overlap for this path",
        "path", "overlapped", "resolved", "dropped", "split k/model", "lost k/model"
    );
    let mut ok = true;
    for (i, r) in rows.iter().enumerate() {
        let overlapped = r.clashes + r.dropped;
        let (split, lost) = model(kernel, r.path, r.pairs, overlapped, i as u64 + 1);
        let sd = 4.0 * (f64::from(r.pairs) * 0.25).sqrt() + 2.0;
        let same = (f64::from(r.split) - f64::from(split)).abs() <= sd && (f64::from(r.lost) - f64::from(lost)).abs() <= sd;
        ok &= same;
        let sim_says = match r.path {
            "threads" => "not used: no modelled library sends from two threads".to_string(),
            "sockets" => "none: two flows (Go native, single-request-reopen)".to_string(),
            "nfqueue" => format!(
                "p_nfqueue {} (measured here {:.2})",
                sim::spec::RaceParams::default().p_nfqueue,
                overlapped as f64 / f64::from(r.pairs.max(1))
            ),
            _ => format!("p_cpu_split {assumed} (assumption: production reports; measured here {overlapped}/{})", r.pairs),
        };
        println!(
            "{:<11} {:>10} {:>9} {:>8} {:>13} {:>12}  {sim_says}{}",
            r.path,
            overlapped,
            r.clashes,
            r.dropped,
            format!("{}/{split}", r.split),
            format!("{}/{lost}", r.lost),
            if same { "" } else { "  DIFFERENT" }
        );
    }
    println!(
        "{}",
        if ok { "kernel-check: the race model matches the kernel" } else { "kernel-check: the race model and the kernel differ" }
    );
    ok
}

/// What netmodel's conntrack does with the same pairs on this kernel, given how many overlapped
/// (the overlap itself is the machine's scheduling, not the table's): (split, lost).
pub fn model(kernel: netmodel::Kernel, path: &str, pairs: u32, overlapped: u64, seed: u64) -> (u32, u32) {
    use netmodel::conntrack::{Config, Conntrack, Race, Tuple, Verdict};
    let mut ct = Conntrack::new(Config { nfqueue: path == "nfqueue", ..Config::for_kernel(kernel, 1 << 20) });
    let mut rng = fastrand::Rng::with_seed(seed);
    let reply_tuple_taken = sim::spec::RaceParams::default().p_reply_tuple_taken;
    let service: SocketAddr = SERVICE.parse().expect("service");
    let backend = |rng: &mut fastrand::Rng| SocketAddr::from(([10, 244, 9, 1], BACKENDS[rng.usize(..2)]));
    let now = Duration::from_secs(1);
    let (mut split, mut lost) = (0, 0);
    for i in 0..pairs {
        let port = |k: u16| 20000 + (i as u16) * 2 + k;
        let first = Tuple::udp(SocketAddr::from(([10, 244, 9, 2], port(0))), service);
        // Separate sockets: the second query is a flow of its own.
        let second = if path == "sockets" { Tuple::udp(SocketAddr::from(([10, 244, 9, 2], port(1))), service) } else { first };
        let t1 = backend(&mut rng);
        let Verdict::Accept { to: a } = ct.confirm(now, ct.begin(first, t1), None, &mut rng) else { unreachable!("empty table") };
        let b = if u64::from(i) < overlapped {
            let t2 = backend(&mut rng);
            let kind = if t2 != t1 {
                Race::DifferentTargets
            } else if rng.f64() < reply_tuple_taken {
                Race::ReplyTupleTaken
            } else {
                Race::SameTarget
            };
            match ct.confirm(now, ct.begin(second, t2), Some(kind), &mut rng) {
                Verdict::Accept { to } => Some(to),
                _ => None,
            }
        } else if let Some((orig, _)) = ct.lookup(now, &second) {
            ct.get(&orig).map(|e| e.nat_target())
        } else {
            match ct.confirm(now, ct.begin(second, backend(&mut rng)), None, &mut rng) {
                Verdict::Accept { to } => Some(to),
                _ => None,
            }
        };
        // Each answer must find a reply mapping back to the Service address.
        let answered = |ct: &mut Conntrack, to: SocketAddr, t: &Tuple| ct.lookup(now, &Tuple::udp(to, t.src)).is_some();
        match b {
            Some(b) if answered(&mut ct, a, &first) && answered(&mut ct, b, &second) => split += u32::from(a != b),
            _ => lost += 1,
        }
    }
    (split, lost)
}
