//! `cargo xtask client-check`: the client-library models (`sim::client`) beside the real libraries,
//! on the wire. Real glibc and musl (one `getaddrinfo` program, `libcheck/gai.c`, built with `gcc` and
//! with `musl-gcc -static`), Go (`libcheck/lookup.go`, with `GODEBUG=netdns=go` and `netdns=cgo`) and
//! Debian's c-ares (`libcheck/ares.c`, `ares_getaddrinfo`, the model at the installed release) run
//! inside a network namespace whose resolv.conf names a recording server. The recorder, in this
//! process, notes every packet (time, transport, source port, the qname with its case, qtype, EDNS
//! size), applies the same fault rules as `ndots-sim lookup --drop/--delay/--servfail`, and forwards
//! the rest to a real `ndots` serving the zone with its `file` plugin. The model runs the same case
//! against its harness; packets are matched by (transport, qname, qtype, EDNS) within a time
//! tolerance, which sockets packets share must agree, and so must the result the application sees.
//! Needs root and `ip`; builds with whatever of gcc, musl-gcc and go is installed (installs
//! musl-tools and golang-go from Debian when missing) and skips, with a message, what it cannot run.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sim::client::harness::{Harness, Rule, decide};
use sim::client::{Call, Family, Hints, Lib, Outcome, PodAddrs, ResolvConf, Transport};

use crate::sh;

const NS: &str = "ndots-ccheck";
const SERVER: &str = "10.203.0.1";
const POD: &str = "10.203.0.2";
/// Time tolerance between a real packet and its model counterpart.
const TOLERANCE: Duration = Duration::from_millis(150);

/// The zone both servers answer from (origin `.`).
const ZONE: &str = "$TTL 300
@ IN SOA ns.example. h.example. 1 7200 1800 86400 60
www.google.com. IN A 142.250.74.100
www.google.com. IN AAAA 2a00:1450:4007:80e::2004
kubernetes.default.svc.cluster.local. IN A 10.96.0.1
txtonly.default.svc.cluster.local. IN TXT \"x\"
txtonly. IN A 10.9.9.9
";

/// big.example.com: 100 A records, over 512 and 1232 bytes.
fn zone() -> String {
    let mut z = ZONE.to_string();
    for i in 1..=100 {
        z.push_str(&format!("big.example.com. IN A 10.2.0.{i}\n"));
    }
    for n in [24, 28, 48, 56, 82, 84, 160, 168] {
        for i in 1..=n {
            z.push_str(&format!("big{n}.example.com. IN A 10.3.{}.{}\n", i / 250, i % 250 + 1));
        }
    }
    z
}

/// One packet as the recorder saw it or the model sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Packet {
    at: Duration,
    transport: Transport,
    /// Socket identity: the source port (real) or the model's socket id.
    socket: u64,
    qname: String,
    qtype: u16,
    edns: Option<u16>,
}

impl Packet {
    fn key(&self) -> (Transport, &str, u16, Option<u16>) {
        (self.transport, &self.qname, self.qtype, self.edns)
    }
    fn show(&self, sockets: &[u64]) -> String {
        let n = sockets.iter().position(|&s| s == self.socket).unwrap_or(0);
        let t = match self.qtype {
            1 => "A".to_string(),
            28 => "AAAA".to_string(),
            t => t.to_string(),
        };
        let edns = self.edns.map(|e| format!(" edns {e}")).unwrap_or_default();
        format!("{:>7.0} ms {:?} socket {n} {} {t}{edns}", self.at.as_secs_f64() * 1000.0, self.transport, self.qname)
    }
}

#[derive(Default)]
struct Recording {
    t0: Option<Instant>,
    packets: Vec<Packet>,
    rules: Vec<Rule>,
}

type Shared = Arc<Mutex<Recording>>;

/// Reads a query: exact qname, qtype, the OPT record's UDP size.
fn parse_query(msg: &[u8]) -> Option<(String, u16, Option<u16>)> {
    use hickory_proto::op::Message;
    let m = Message::from_vec(msg).ok()?;
    let q = m.queries.first()?;
    let edns = m.edns.as_ref().map(|e| e.max_payload());
    Some((q.name().to_ascii(), u16::from(q.query_type()), edns))
}

/// Notes a query and decides what to do with it.
fn record(shared: &Shared, transport: Transport, port: u16, msg: &[u8]) -> Option<sim::client::harness::Decision> {
    let (qname, qtype, edns) = parse_query(msg)?;
    let mut r = shared.lock().ok()?;
    let t0 = *r.t0.get_or_insert_with(Instant::now);
    let d = decide(&mut r.rules, &qname, qtype);
    r.packets.push(Packet { at: t0.elapsed(), transport, socket: u64::from(port) | ((transport as u64) << 32), qname, qtype, edns });
    Some(d)
}

fn servfail(mut answer: Vec<u8>) -> Vec<u8> {
    if answer.len() > 3 {
        answer[3] = (answer[3] & 0xf0) | 2;
    }
    answer
}

/// The recorder's UDP side: each query forwarded to ndots from a fresh socket, the answer relayed back.
fn serve_udp(sock: UdpSocket, shared: Shared, upstream: SocketAddr) {
    let mut buf = [0u8; 65535];
    while let Ok((n, from)) = sock.recv_from(&mut buf) {
        let msg = buf[..n].to_vec();
        let Some(d) = record(&shared, Transport::Udp, from.port(), &msg) else { continue };
        if d.drop {
            continue;
        }
        let Ok(reply_sock) = sock.try_clone() else { continue };
        std::thread::spawn(move || {
            let Ok(up) = UdpSocket::bind("127.0.0.1:0") else { return };
            let _ = up.set_read_timeout(Some(Duration::from_secs(3)));
            let mut b = [0u8; 65535];
            if up.send_to(&msg, upstream).is_err() {
                return;
            }
            let Ok((n, _)) = up.recv_from(&mut b) else { return };
            std::thread::sleep(d.extra);
            let answer = if d.servfail { servfail(b[..n].to_vec()) } else { b[..n].to_vec() };
            let _ = reply_sock.send_to(&answer, from);
        });
    }
}

/// The recorder's TCP side: one upstream connection per client connection.
fn serve_tcp(listener: TcpListener, shared: Shared, upstream: SocketAddr) {
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let shared = shared.clone();
        std::thread::spawn(move || {
            let Ok(port) = conn.peer_addr().map(|a| a.port()) else { return };
            let Ok(mut up) = TcpStream::connect(upstream) else { return };
            // One write per message and no Nagle, or delayed ACKs add ~40 ms per answer.
            let _ = conn.set_nodelay(true);
            let _ = up.set_nodelay(true);
            let _ = up.set_read_timeout(Some(Duration::from_secs(3)));
            loop {
                let mut len = [0u8; 2];
                if conn.read_exact(&mut len).is_err() {
                    return;
                }
                let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if conn.read_exact(&mut msg).is_err() {
                    return;
                }
                let Some(d) = record(&shared, Transport::Tcp, port, &msg) else { return };
                if d.drop {
                    continue;
                }
                let _ = up.write_all(&[&len[..], &msg].concat());
                let mut alen = [0u8; 2];
                if up.read_exact(&mut alen).is_err() {
                    return;
                }
                let mut answer = vec![0u8; usize::from(u16::from_be_bytes(alen))];
                if up.read_exact(&mut answer).is_err() {
                    return;
                }
                std::thread::sleep(d.extra);
                let answer = if d.servfail { servfail(answer) } else { answer };
                let _ = conn.write_all(&[&alen[..], &answer].concat());
            }
        });
    }
}

/// The pod's IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum V6 {
    /// Disabled (sysctl disable_ipv6): no IPv6 address at all.
    Off,
    /// ::1 on lo, none on the pod's interface.
    Loopback,
    /// ::1 and a link-local fe80:: address on the pod's interface (no global one).
    LinkLocal,
}

/// One case: a lookup, the resolv.conf options, the pod's IPv6, the server's faults.
struct Case {
    id: &'static str,
    name: &'static str,
    family: Family,
    flags: &'static str,
    /// resolv.conf `options` (beside the kubelet's search list and our nameserver).
    options: &'static str,
    ipv6: V6,
    rules: Vec<Rule>,
    libs: &'static [Lib],
}

const ALL: &[Lib] = &[Lib::Glibc, Lib::Musl, Lib::Go, Lib::GoCgo, Lib::CAres];

fn drop_rule(qname: &str, qtype: u16, count: Option<u32>) -> Rule {
    Rule::Drop { qname: qname.into(), qtype, count }
}

fn cases() -> Vec<Case> {
    let c = |id, name, family, flags, options, ipv6, rules, libs| Case { id, name, family, flags, options, ipv6, rules, libs };
    vec![
        // sources.md#kubelet-resolv-conf, sources.md#incident-s1: the kubelet's resolv.conf turns one name into 12 queries.
        c("ndots5-null-hints", "www.google.com", Family::Unspec, "", "ndots:5", V6::Off, vec![], ALL),
        // S3: AI_ADDRCONFIG without IPv6 halves it; with a link-local IPv6 address it does not (glibc).
        c("addrconfig-no-ipv6", "www.google.com", Family::Unspec, "addrconfig", "ndots:5", V6::Off, vec![], &[Lib::Glibc, Lib::Musl]),
        c(
            "addrconfig-loopback-v6",
            "www.google.com",
            Family::Unspec,
            "addrconfig",
            "ndots:5",
            V6::Loopback,
            vec![],
            &[Lib::Glibc, Lib::Musl],
        ),
        c(
            "addrconfig-link-local",
            "www.google.com",
            Family::Unspec,
            "addrconfig",
            "ndots:5",
            V6::LinkLocal,
            vec![],
            &[Lib::Glibc, Lib::Musl],
        ),
        // The trailing dot: the name as is, nothing else.
        c("trailing-dot", "www.google.com.", Family::Unspec, "", "ndots:5", V6::Off, vec![], ALL),
        c("inet-only", "www.google.com", Family::Inet, "", "ndots:5", V6::Off, vec![], &[Lib::Glibc, Lib::Musl, Lib::Go, Lib::CAres]),
        // A cluster name found on the second search domain.
        c("search-hit", "kubernetes.default", Family::Unspec, "", "ndots:5", V6::Off, vec![], ALL),
        // NODATA on a search name goes on to the next name.
        c("nodata-goes-on", "txtonly", Family::Unspec, "", "ndots:5", V6::Off, vec![], ALL),
        // A lost AAAA answer: the retransmission after `timeout`, and what each library does next.
        c(
            "lost-aaaa-once",
            "www.google.com.",
            Family::Unspec,
            "",
            "ndots:5 timeout:1 attempts:2",
            V6::Off,
            vec![drop_rule("www.google.com.", 28, Some(1))],
            ALL,
        ),
        // A server that never answers: every retry, then the error.
        c(
            "silent-server",
            "www.google.com.",
            Family::Unspec,
            "",
            "ndots:5 timeout:1 attempts:2",
            V6::Off,
            vec![drop_rule("www.google.com.", 0, None)],
            ALL,
        ),
        // SERVFAIL for a search name: the walk goes on (glibc, Go) or stops (c-ares 1.18 with
        // ECONNREFUSED once every try got SERVFAIL; musl, after re-sending
        // at once 2 × nqueries times per retry window; A only here, as which of a pair's answers
        // comes back first, and so gets the re-sends, is a race on a real machine).
        c(
            "servfail-search",
            "kubernetes.default",
            Family::Unspec,
            "",
            "ndots:5",
            V6::Off,
            vec![Rule::ServFail { qname: "kubernetes.default.default.svc.cluster.local.".into(), qtype: 0 }],
            &[Lib::Glibc, Lib::Go, Lib::GoCgo],
        ),
        c(
            "servfail-search-inet",
            "kubernetes.default",
            Family::Inet,
            "",
            "ndots:5",
            V6::Off,
            vec![Rule::ServFail { qname: "kubernetes.default.default.svc.cluster.local.".into(), qtype: 0 }],
            &[Lib::Glibc, Lib::Musl, Lib::Go, Lib::CAres],
        ),
        c("single-request", "www.google.com.", Family::Unspec, "", "ndots:5 single-request", V6::Off, vec![], &[Lib::Glibc, Lib::Go]),
        c("use-vc", "www.google.com.", Family::Unspec, "", "ndots:5 use-vc", V6::Off, vec![], &[Lib::Glibc, Lib::Go]),
        // A truncated answer: TCP (glibc, Go, musl from 1.2.4) or the truncated records (musl before).
        c(
            "truncated-answer",
            "big.example.com.",
            Family::Inet,
            "",
            "ndots:5",
            V6::Off,
            vec![],
            &[Lib::Glibc, Lib::Musl, Lib::Go, Lib::CAres],
        ),
        // glibc's getaddrinfo buffer: addresses that do not fit send the whole lookup again.
        c("nss-buffer-unspec-24", "big24.example.com.", Family::Unspec, "", "ndots:5", V6::Off, vec![], &[Lib::Glibc, Lib::GoCgo]),
        c("nss-buffer-unspec-28", "big28.example.com.", Family::Unspec, "", "ndots:5", V6::Off, vec![], &[Lib::Glibc, Lib::GoCgo]),
        c("nss-buffer-unspec-48", "big48.example.com.", Family::Unspec, "", "ndots:5", V6::Off, vec![], &[Lib::Glibc]),
        c("nss-buffer-unspec-56", "big56.example.com.", Family::Unspec, "", "ndots:5", V6::Off, vec![], &[Lib::Glibc]),
        c("nss-buffer-inet-82", "big82.example.com.", Family::Inet, "", "ndots:5", V6::Off, vec![], &[Lib::Glibc]),
        c("nss-buffer-inet-84", "big84.example.com.", Family::Inet, "", "ndots:5", V6::Off, vec![], &[Lib::Glibc]),
        c("nss-buffer-inet-160", "big160.example.com.", Family::Inet, "", "ndots:5", V6::Off, vec![], &[Lib::Glibc]),
        c("nss-buffer-inet-168", "big168.example.com.", Family::Inet, "", "ndots:5", V6::Off, vec![], &[Lib::Glibc]),
        c("ndots2", "www.google.com", Family::Unspec, "", "ndots:2", V6::Off, vec![], ALL),
    ]
}

fn in_ns(args: &[&str]) -> Result<String, String> {
    crate::in_netns(NS, args)
}

/// The real programs this machine can build: (library, command, environment).
fn build_programs(dir: &Path) -> Vec<Program> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("libcheck");
    let gai = src.join("gai.c").to_string_lossy().into_owned();
    let mut out = Vec::new();
    let path = |n: &str| dir.join(n).to_string_lossy().into_owned();
    match sh(&["gcc", "-O1", "-o", &path("gai-glibc"), &gai]) {
        Ok(_) => out.push((Lib::Glibc, vec![path("gai-glibc")], vec![])),
        Err(e) => eprintln!("client-check: glibc skipped: {e}"),
    }
    match sh(&["musl-gcc", "-O1", "-static", "-o", &path("gai-musl"), &gai]) {
        Ok(_) => out.push((Lib::Musl, vec![path("gai-musl")], vec![])),
        Err(e) => eprintln!("client-check: musl skipped: {e}"),
    }
    let ares = src.join("ares.c").to_string_lossy().into_owned();
    match sh(&["gcc", "-O1", "-o", &path("ares"), &ares, "-lcares"]) {
        Ok(_) => out.push((Lib::CAres, vec![path("ares")], vec![])),
        Err(e) => eprintln!("client-check: c-ares skipped: {e}"),
    }
    let gocache = path("gocache");
    let go = Command::new("go")
        .args(["build", "-o", &path("lookup-go"), &src.join("lookup.go").to_string_lossy()])
        .env("GOCACHE", &gocache)
        .env("CGO_ENABLED", "1")
        .output();
    match go {
        Ok(o) if o.status.success() => {
            out.push((Lib::Go, vec![path("lookup-go")], vec![("GODEBUG", "netdns=go")]));
            out.push((Lib::GoCgo, vec![path("lookup-go")], vec![("GODEBUG", "netdns=cgo")]));
        }
        Ok(o) => eprintln!("client-check: Go skipped: go build: {}", String::from_utf8_lossy(&o.stderr).trim()),
        Err(e) => eprintln!("client-check: Go skipped: {e}"),
    }
    out
}

/// The library's name as `ndots-sim lookup --lib` spells it.
fn lib_name(l: Lib) -> String {
    use clap::ValueEnum;
    l.to_possible_value().map_or_else(|| format!("{l:?}"), |v| v.get_name().to_string())
}

/// The version of each library on this machine, for the model.
fn versions() -> (Option<String>, Option<String>) {
    let glibc = sh(&["ldd", "--version"]).ok().and_then(|o| o.lines().next().and_then(|l| l.split_whitespace().last()).map(str::to_string));
    let musl = Command::new("/lib/ld-musl-x86_64.so.1").output().ok().and_then(|o| {
        let e = String::from_utf8_lossy(&o.stderr).into_owned();
        e.lines().find_map(|l| l.strip_prefix("Version ")).map(|v| v.trim().to_string())
    });
    (glibc, musl)
}

/// Debian's libc-ares release (`1.18.1` from `1.18.1-3`), for the model.
fn cares_version() -> Option<String> {
    let v = sh(&["dpkg-query", "-W", "-f=${Version}", "libc-ares2"]).ok()?;
    Some(v.trim().split(['-', '+', '~']).next()?.to_string())
}

/// What the application saw, as a comparable token: sorted addresses or the error's kind.
fn result_of(lib: Lib, out: &Option<Outcome>) -> String {
    let go = matches!(lib, Lib::Go | Lib::GoCgo);
    match out {
        Some(Outcome::Addrs(a)) => {
            let mut v: Vec<String> = a.iter().map(IpAddr::to_string).collect();
            v.sort();
            v.dedup();
            v.join(" ")
        }
        Some(Outcome::NoName) if lib == Lib::CAres => "error ARES_ENOTFOUND".into(),
        Some(Outcome::NoData) if lib == Lib::CAres => "error ARES_ENODATA".into(),
        Some(Outcome::Again) if lib == Lib::CAres => "error ARES_ETIMEOUT".into(),
        Some(Outcome::NoName) if go => "error notfound".into(),
        Some(Outcome::NoData) if go => "error notfound".into(),
        Some(Outcome::Again) if go => "error timeout".into(),
        Some(Outcome::NoName) => "error EAI_NONAME".into(),
        Some(Outcome::NoData) => "error EAI_NODATA".into(),
        Some(Outcome::Again) => "error EAI_AGAIN".into(),
        Some(Outcome::Fail(e)) => format!("error {e}"),
        None => "no result".into(),
    }
}

fn real_result(stdout: &str) -> String {
    if let Some(e) = stdout.lines().find(|l| l.starts_with("error ")) {
        return e.trim().to_string();
    }
    let mut v: Vec<String> = stdout.lines().map(|l| l.trim().trim_start_matches("::ffff:").to_string()).filter(|l| !l.is_empty()).collect();
    v.sort();
    v.dedup();
    v.join(" ")
}

/// Matches real packets to model packets; the differences, if any.
fn compare(real: &[Packet], model: &[Packet]) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut used = vec![false; model.len()];
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for (i, r) in real.iter().enumerate() {
        let m = model.iter().enumerate().find(|(j, m)| !used[*j] && m.key() == r.key() && m.at.abs_diff(r.at) <= TOLERANCE);
        match m {
            Some((j, _)) => {
                used[j] = true;
                pairs.push((i, j));
            }
            None => diffs.push(format!("real packet {} has no model counterpart", i + 1)),
        }
    }
    for (j, u) in used.iter().enumerate() {
        if !u {
            diffs.push(format!("model packet {} was not sent by the real library", j + 1));
        }
    }
    for (a, &(ri, mi)) in pairs.iter().enumerate() {
        for &(rj, mj) in &pairs[a + 1..] {
            let same_real = real[ri].socket == real[rj].socket;
            let same_model = model[mi].socket == model[mj].socket;
            if same_real != same_model {
                diffs.push(format!(
                    "packets {} and {}: {} socket for the real library, {} in the model",
                    ri + 1,
                    rj + 1,
                    if same_real { "one" } else { "different" },
                    if same_model { "one" } else { "different" }
                ));
            }
        }
    }
    diffs
}

fn numbering(p: &[Packet]) -> Vec<u64> {
    let mut v = Vec::new();
    for x in p {
        if !v.contains(&x.socket) {
            v.push(x.socket);
        }
    }
    v
}

fn set_ipv6(v6: V6) -> Result<(), String> {
    let settings: &[(&str, &str)] = match v6 {
        V6::Off => &[("all", "1"), ("default", "1"), ("lo", "1"), ("ccheck1", "1")],
        V6::Loopback => &[("all", "0"), ("default", "0"), ("lo", "0"), ("ccheck1", "1")],
        V6::LinkLocal => &[("all", "0"), ("default", "0"), ("lo", "0"), ("ccheck1", "0")],
    };
    for (iface, v) in settings {
        in_ns(&["sysctl", "-q", "-w", &format!("net.ipv6.conf.{iface}.disable_ipv6={v}")])?;
    }
    if v6 == V6::LinkLocal {
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
    sh(&["ip", "addr", "add", &format!("{SERVER}/24"), "dev", "ccheck0"])?;
    sh(&["ip", "link", "set", "ccheck0", "up"])?;
    in_ns(&["ip", "link", "set", "lo", "up"])?;
    in_ns(&["ip", "addr", "add", &format!("{POD}/24"), "dev", "ccheck1"])?;
    in_ns(&["ip", "link", "set", "ccheck1", "up"])?;
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
    if sh(&["which", "musl-gcc"]).is_err() || sh(&["which", "go"]).is_err() || !Path::new("/usr/include/ares.h").exists() {
        let _ = crate::run(
            "apt-get install -y musl-tools golang-go libc-ares-dev",
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "musl-tools", "golang-go", "libc-ares-dev"])
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
    std::fs::write(&zone, self::zone()).map_err(|e| e.to_string())?;
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
    let result = run_cases(only, &programs, glibc_v, musl_v, SocketAddr::from(([127, 0, 0, 1], upstream_port)));
    let _ = ndots.kill();
    let _ = ndots.wait();
    result
}

type Program = (Lib, Vec<String>, Vec<(&'static str, &'static str)>);

fn run_cases(
    only: &[String],
    programs: &[Program],
    glibc_v: Option<String>,
    musl_v: Option<String>,
    upstream: SocketAddr,
) -> Result<bool, String> {
    std::thread::sleep(Duration::from_millis(300));
    let shared: Shared = Arc::default();
    let server = SocketAddr::from((SERVER.parse::<IpAddr>().map_err(|e| e.to_string())?, 53));
    let udp = UdpSocket::bind(server).map_err(|e| format!("recorder: {e}"))?;
    let tcp = TcpListener::bind(server).map_err(|e| format!("recorder: {e}"))?;
    {
        let s = shared.clone();
        std::thread::spawn(move || serve_udp(udp, s, upstream));
        let s = shared.clone();
        std::thread::spawn(move || serve_tcp(tcp, s, upstream));
    }
    let netns_dir = PathBuf::from(format!("/etc/netns/{NS}"));
    std::fs::create_dir_all(&netns_dir).map_err(|e| e.to_string())?;
    let mut cases = cases();
    if !only.is_empty() {
        cases.retain(|c| only.iter().any(|o| c.id.contains(o.as_str())));
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
            "search default.svc.cluster.local svc.cluster.local cluster.local ec2.internal example.internal\nnameserver {SERVER}\noptions {}\n",
            case.options
        );
        std::fs::write(netns_dir.join("resolv.conf"), &rc_text).map_err(|e| e.to_string())?;
        let rc = ResolvConf::parse(&rc_text);
        let mut pod: Vec<IpAddr> = vec![POD.parse().map_err(|_| "ip")?, "127.0.0.1".parse().map_err(|_| "ip")?];
        if case.ipv6 >= V6::Loopback {
            pod.push("::1".parse().map_err(|_| "ip")?);
        }
        if case.ipv6 == V6::LinkLocal {
            pod.push("fe80::1".parse().map_err(|_| "ip")?);
        }
        for (lib, cmd, env) in programs.iter().filter(|p| case.libs.contains(&p.0)) {
            total += 1;
            // The real library.
            {
                let mut r = shared.lock().map_err(|_| "lock")?;
                *r = Recording { t0: None, packets: Vec::new(), rules: case.rules.clone() };
            }
            let mut args: Vec<String> = vec!["netns".into(), "exec".into(), NS.into(), cmd[0].clone(), case.name.into()];
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
            if !go && !case.flags.is_empty() {
                args.push(case.flags.into());
            }
            let mut c = Command::new("ip");
            c.args(&args);
            for (k, v) in env {
                c.env(k, v);
            }
            let out = c.output().map_err(|e| format!("{}: {e}", cmd[0]))?;
            // Answers still in flight are not packets the library sent; let late retries land.
            std::thread::sleep(Duration::from_millis(100));
            let real_out = real_result(&String::from_utf8_lossy(&out.stdout));
            let real: Vec<Packet> = shared.lock().map_err(|_| "lock")?.packets.clone();
            // The model.
            let mut hints = Hints { family: case.family, ..Hints::NULL };
            hints.addrconfig = case.flags.contains("addrconfig");
            let call = Call { name: case.name.into(), hints, pod: PodAddrs(pod.clone()) };
            let version = match lib {
                Lib::Glibc | Lib::GoCgo => glibc_v.clone(),
                Lib::Musl => musl_v.clone(),
                Lib::CAres => cares_version(),
                _ => None,
            };
            let mut harness = Harness::new(&self::zone(), ".", case.rules.clone())?;
            let (sent, outcome) = sim::client::run_model(*lib, version.as_deref(), &rc, &call, &mut harness)?;
            let model: Vec<Packet> = sent
                .iter()
                .map(|s| Packet {
                    at: s.at,
                    transport: s.send.transport,
                    socket: u64::from(s.send.socket),
                    qname: s.send.qname.clone(),
                    qtype: s.send.qtype,
                    edns: s.send.edns,
                })
                .collect();
            let model_out = result_of(*lib, &outcome);
            let mut diffs = compare(&real, &model);
            if real_out != model_out {
                diffs.push(format!("result: real '{real_out}', model '{model_out}'"));
            }
            let verdict = if diffs.is_empty() { "agree" } else { "DIFFER" };
            eprintln!(
                "{:<24} {:<7} {:>3} real / {:>3} model packets  {verdict}  {}",
                case.id,
                lib_name(*lib),
                real.len(),
                model.len(),
                if real_out.len() > 40 { format!("{}...", &real_out[..40]) } else { real_out.clone() }
            );
            if diffs.is_empty() {
                agreed += 1;
            } else {
                let (rs, ms) = (numbering(&real), numbering(&model));
                let mut text = format!("{} / {}:\n", case.id, lib_name(*lib));
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
