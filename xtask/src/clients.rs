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
use sim::client::{Api, Call, Family, Hints, Lib, Outcome, PodAddrs, ResolvConf, Transport};

use crate::sh;

const NS: &str = "ndots-ccheck";
const SERVER: &str = "10.203.0.1";
/// A second nameserver that answers like the first (for `rotate`).
const SECOND: &str = "10.203.0.3";
/// A nameserver that records queries and never answers.
const SILENT: &str = "10.203.0.4";
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
    /// The nameserver it went to.
    server: IpAddr,
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
        format!("{:>7.0} ms {:?} socket {n} to {} {} {t}{edns}", self.at.as_secs_f64() * 1000.0, self.transport, self.server, self.qname)
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
fn record(shared: &Shared, transport: Transport, port: u16, server: IpAddr, msg: &[u8]) -> Option<sim::client::harness::Decision> {
    let (qname, qtype, edns) = parse_query(msg)?;
    let mut r = shared.lock().ok()?;
    let t0 = *r.t0.get_or_insert_with(Instant::now);
    let d = decide(&mut r.rules, &qname, qtype);
    r.packets.push(Packet {
        at: t0.elapsed(),
        transport,
        socket: u64::from(port) | ((transport as u64) << 32),
        server,
        qname,
        qtype,
        edns,
    });
    Some(d)
}

fn servfail(mut answer: Vec<u8>) -> Vec<u8> {
    if answer.len() > 3 {
        answer[3] = (answer[3] & 0xf0) | 2;
    }
    answer
}

/// The recorder's UDP side: each query forwarded to ndots from a fresh socket, the answer relayed
/// back; with no upstream, a silent nameserver.
fn serve_udp(sock: UdpSocket, shared: Shared, upstream: Option<SocketAddr>) {
    let mut buf = [0u8; 65535];
    let Ok(me) = sock.local_addr() else { return };
    while let Ok((n, from)) = sock.recv_from(&mut buf) {
        let msg = buf[..n].to_vec();
        let Some(d) = record(&shared, Transport::Udp, from.port(), me.ip(), &msg) else { continue };
        let Some(upstream) = upstream else { continue };
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
    let Ok(me) = listener.local_addr() else { return };
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
                let Some(d) = record(&shared, Transport::Tcp, port, me.ip(), &msg) else { return };
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
    /// And a global address (2001:db8::2) with a default route.
    Global,
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
    /// The resolv.conf `nameserver` lines, in order.
    nameservers: &'static [&'static str],
    /// Programs (by `Program::name`) left out, each for a reason given where the case is listed.
    except: &'static [&'static str],
}

impl Case {
    fn nameservers(self, nameservers: &'static [&'static str]) -> Case {
        Case { nameservers, ..self }
    }
    fn except(self, except: &'static [&'static str]) -> Case {
        Case { except, ..self }
    }
}

const ALL: &[Lib] = &[Lib::Glibc, Lib::Musl, Lib::Go, Lib::GoCgo, Lib::CAres, Lib::Evdns];

/// The model's side of the SILENT nameserver (the recorder never answers there anyway).
fn silent() -> Rule {
    Rule::Silent { server: IpAddr::from([10, 203, 0, 4]) }
}

fn drop_rule(qname: &str, qtype: u16, count: Option<u32>) -> Rule {
    Rule::Drop { qname: qname.into(), qtype, count }
}

fn cases() -> Vec<Case> {
    let c = |id, name, family, flags, options, ipv6, rules, libs| Case {
        id,
        name,
        family,
        flags,
        options,
        ipv6,
        rules,
        libs,
        nameservers: &[SERVER],
        except: &[],
    };
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
        c(
            "inet-only",
            "www.google.com",
            Family::Inet,
            "",
            "ndots:5",
            V6::Off,
            vec![],
            &[Lib::Glibc, Lib::Musl, Lib::Go, Lib::CAres, Lib::Evdns],
        ),
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
            &[Lib::Glibc, Lib::Musl, Lib::Go, Lib::CAres, Lib::Evdns],
        ),
        c("single-request", "www.google.com.", Family::Unspec, "", "ndots:5 single-request", V6::Off, vec![], &[Lib::Glibc, Lib::Go]),
        c("use-vc", "www.google.com.", Family::Unspec, "", "ndots:5 use-vc", V6::Off, vec![], ALL),
        // A truncated answer: TCP (glibc, Go, musl from 1.2.4) or the truncated records (musl before).
        c(
            "truncated-answer",
            "big.example.com.",
            Family::Inet,
            "",
            "ndots:5",
            V6::Off,
            vec![],
            &[Lib::Glibc, Lib::Musl, Lib::Go, Lib::CAres, Lib::Evdns],
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
        // The first nameserver never answers: each query waits out `timeout` there, then the next.
        // evdns_getaddrinfo is left out: its A retransmission is answered in the very millisecond
        // its AAAA query to the silent nameserver times out, and which is handled first decides
        // the nameserver of everything after (evdns:byname checks the same code in one request).
        c("silent-first-ns", "www.google.com.", Family::Unspec, "", "ndots:5 timeout:1 attempts:2", V6::Off, vec![silent()], ALL)
            .nameservers(&[SILENT, SERVER])
            .except(&["evdns"]),
        // `rotate` across a search walk: which nameserver each query goes to. evdns_getaddrinfo is
        // left out: its A and AAAA searches each take the next nameserver for their next name in
        // the order their answers are handled, and both answers come in the same millisecond.
        c("rotate", "kubernetes.default", Family::Unspec, "", "ndots:5 rotate", V6::Off, vec![], ALL)
            .nameservers(&[SERVER, SECOND])
            .except(&["evdns"]),
        c("two-ns", "kubernetes.default", Family::Unspec, "", "ndots:5", V6::Off, vec![], ALL)
            .nameservers(&[SERVER, SECOND])
            .except(&["evdns"]),
        // One try, one second: how soon each library gives up.
        c(
            "timeout1-attempts1",
            "www.google.com.",
            Family::Unspec,
            "",
            "ndots:5 timeout:1 attempts:1",
            V6::Off,
            vec![drop_rule("www.google.com.", 0, None)],
            ALL,
        ),
        // EDNS0: who advertises what size, and a truncated answer with it.
        c("edns0", "www.google.com.", Family::Unspec, "", "ndots:5 edns0", V6::Off, vec![], ALL),
        c(
            "truncated-edns0",
            "big.example.com.",
            Family::Inet,
            "",
            "ndots:5 edns0",
            V6::Off,
            vec![],
            &[Lib::Glibc, Lib::Musl, Lib::Go, Lib::CAres, Lib::Evdns],
        ),
        // Options Go 1.19 does not know send a default (cgo-linked) Go program to glibc; so does a
        // name ending in .local (go:default; go and go-cgo are forced by GODEBUG).
        c("no-aaaa", "www.google.com.", Family::Unspec, "", "ndots:5 no-aaaa", V6::Off, vec![], &[Lib::Glibc, Lib::Go]),
        c("trust-ad", "www.google.com.", Family::Unspec, "", "ndots:5 trust-ad", V6::Off, vec![], &[Lib::Glibc, Lib::Go]),
        c("local-name", "kubernetes.default.svc.cluster.local", Family::Unspec, "", "ndots:5", V6::Off, vec![], &[Lib::Glibc, Lib::Go]),
        // A pod with a global IPv6 address: AI_ADDRCONFIG asks for AAAA; ares_gethostbyname returns IPv6.
        c("addrconfig-global-v6", "www.google.com", Family::Unspec, "addrconfig", "ndots:5", V6::Global, vec![], &[Lib::Glibc, Lib::Musl]),
        c("global-v6", "www.google.com.", Family::Unspec, "", "ndots:5", V6::Global, vec![], &[Lib::Go, Lib::CAres, Lib::Evdns]),
    ]
}

fn in_ns(args: &[&str]) -> Result<String, String> {
    crate::in_netns(NS, args)
}

/// A real program this machine built: the library, the call it makes, the command, its environment.
struct Program {
    lib: Lib,
    api: Api,
    cmd: String,
    env: Vec<(&'static str, &'static str)>,
    /// Go without GODEBUG: the program picks its resolver (the model by `go_choice` at this
    /// machine's Go release).
    go_default: bool,
}

impl Program {
    fn new(lib: Lib, api: Api, cmd: String, env: Vec<(&'static str, &'static str)>) -> Program {
        Program { lib, api, cmd, env, go_default: false }
    }
    /// `glibc`, `c-ares`, `c-ares:byname`, `go:default`.
    fn name(&self) -> String {
        match (self.api, self.go_default) {
            (_, true) => format!("{}:default", lib_name(self.lib)),
            (Api::Getaddrinfo, false) => lib_name(self.lib),
            (Api::Byname, false) => format!("{}:byname", lib_name(self.lib)),
        }
    }
    /// The API argument of libcheck/ares.c and libcheck/evdns.c.
    fn api_arg(&self) -> Option<&'static str> {
        match (self.lib, self.api) {
            (Lib::CAres, Api::Byname) => Some("gethostbyname"),
            (Lib::Evdns, Api::Byname) => Some("resolve"),
            _ => None,
        }
    }
}

/// The real programs this machine can build.
fn build_programs(dir: &Path) -> Vec<Program> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("libcheck");
    let gai = src.join("gai.c").to_string_lossy().into_owned();
    let mut out = Vec::new();
    let path = |n: &str| dir.join(n).to_string_lossy().into_owned();
    match sh(&["gcc", "-O1", "-o", &path("gai-glibc"), &gai]) {
        Ok(_) => out.push(Program::new(Lib::Glibc, Api::Getaddrinfo, path("gai-glibc"), vec![])),
        Err(e) => eprintln!("client-check: glibc skipped: {e}"),
    }
    match sh(&["musl-gcc", "-O1", "-static", "-o", &path("gai-musl"), &gai]) {
        Ok(_) => out.push(Program::new(Lib::Musl, Api::Getaddrinfo, path("gai-musl"), vec![])),
        Err(e) => eprintln!("client-check: musl skipped: {e}"),
    }
    let ares = src.join("ares.c").to_string_lossy().into_owned();
    match sh(&["gcc", "-O1", "-o", &path("ares"), &ares, "-lcares"]) {
        Ok(_) => {
            out.push(Program::new(Lib::CAres, Api::Getaddrinfo, path("ares"), vec![]));
            out.push(Program::new(Lib::CAres, Api::Byname, path("ares"), vec![]));
        }
        Err(e) => eprintln!("client-check: c-ares skipped: {e}"),
    }
    let evdns = src.join("evdns.c").to_string_lossy().into_owned();
    match sh(&["gcc", "-O1", "-o", &path("evdns"), &evdns, "-levent"]) {
        Ok(_) => {
            out.push(Program::new(Lib::Evdns, Api::Getaddrinfo, path("evdns"), vec![]));
            out.push(Program::new(Lib::Evdns, Api::Byname, path("evdns"), vec![]));
        }
        Err(e) => eprintln!("client-check: evdns skipped: {e}"),
    }
    let gocache = path("gocache");
    let go = Command::new("go")
        .args(["build", "-o", &path("lookup-go"), &src.join("lookup.go").to_string_lossy()])
        .env("GOCACHE", &gocache)
        .env("CGO_ENABLED", "1")
        .output();
    match go {
        Ok(o) if o.status.success() => {
            out.push(Program::new(Lib::Go, Api::Getaddrinfo, path("lookup-go"), vec![("GODEBUG", "netdns=go")]));
            out.push(Program::new(Lib::GoCgo, Api::Getaddrinfo, path("lookup-go"), vec![("GODEBUG", "netdns=cgo")]));
            // The model assumes nsswitch.conf's `hosts: files dns`; elsewhere the program's choice differs.
            let hosts = std::fs::read_to_string("/etc/nsswitch.conf")
                .ok()
                .and_then(|t| t.lines().find_map(|l| l.strip_prefix("hosts:").map(|h| h.split_whitespace().collect::<Vec<_>>().join(" "))));
            if hosts.as_deref() == Some(sim::client::NSSWITCH_HOSTS) {
                out.push(Program { go_default: true, ..Program::new(Lib::Go, Api::Getaddrinfo, path("lookup-go"), vec![("GODEBUG", "")]) });
            } else {
                eprintln!(
                    "client-check: go:default skipped: /etc/nsswitch.conf hosts is {hosts:?}, the model assumes `{}`",
                    sim::client::NSSWITCH_HOSTS
                );
            }
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

/// A Debian package's upstream release (`1.18.1` from `1.18.1-3`, `2.1.12` from
/// `2.1.12-stable-8`), for the model: libc-ares2, libevent-2.1-7.
fn package_version(package: &str) -> Option<String> {
    let v = sh(&["dpkg-query", "-W", "-f=${Version}", package]).ok()?;
    Some(v.trim().split(['-', '+', '~']).next()?.to_string())
}

/// What the application saw, as a comparable token: sorted addresses or the error's name as the
/// program prints it.
fn result_of(program: &Program, out: &Option<Outcome>) -> String {
    let err = match out {
        Some(Outcome::Addrs(a)) => {
            let mut v: Vec<String> = a.iter().map(IpAddr::to_string).collect();
            v.sort();
            v.dedup();
            return v.join(" ");
        }
        Some(e) => e,
        None => return "no result".into(),
    };
    let name = match (program.lib, program.api, err) {
        (Lib::CAres, _, Outcome::NoName) => "ARES_ENOTFOUND".into(),
        (Lib::CAres, _, Outcome::NoData) => "ARES_ENODATA".into(),
        (Lib::CAres, _, Outcome::Again) => "ARES_ETIMEOUT".into(),
        // evdns_getaddrinfo: EAI_NONAME for NXDOMAIN, EAI_FAIL for every other error.
        (Lib::Evdns, Api::Getaddrinfo, Outcome::NoName) => "EVUTIL_EAI_NONAME".into(),
        (Lib::Evdns, Api::Getaddrinfo, _) => "EVUTIL_EAI_FAIL".into(),
        (Lib::Evdns, Api::Byname, Outcome::NoName) => "DNS_ERR_NOTEXIST".into(),
        (Lib::Evdns, Api::Byname, Outcome::NoData) => "DNS_ERR_NODATA".into(),
        (Lib::Evdns, Api::Byname, Outcome::Again) => "DNS_ERR_TIMEOUT".into(),
        (Lib::Go | Lib::GoCgo, _, Outcome::NoName | Outcome::NoData) => "notfound".into(),
        (Lib::Go | Lib::GoCgo, _, Outcome::Again) => "timeout".into(),
        (_, _, Outcome::NoName) => "EAI_NONAME".into(),
        (_, _, Outcome::NoData) => "EAI_NODATA".into(),
        (_, _, Outcome::Again) => "EAI_AGAIN".into(),
        (_, _, Outcome::Fail(e)) => e.clone(),
        (_, _, Outcome::Addrs(_)) => String::new(),
    };
    format!("error {name}")
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
        let silent = |p: &Packet| p.server.to_string() == SILENT;
        let fits = |j: usize, m: &Packet| !used[j] && m.key() == r.key() && silent(m) == silent(r) && m.at.abs_diff(r.at) <= TOLERANCE;
        // The same nameserver if the model has one such packet (musl asks all at once), else any.
        let m = model
            .iter()
            .enumerate()
            .find(|&(j, m)| fits(j, m) && m.server == r.server)
            .or_else(|| model.iter().enumerate().find(|&(j, m)| fits(j, m)));
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
            // Which nameserver: the same one or another (glibc's `rotate` starts at a random one).
            let same_real = real[ri].server == real[rj].server;
            let same_model = model[mi].server == model[mj].server;
            if same_real != same_model {
                diffs.push(format!(
                    "packets {} and {}: {} nameserver for the real library, {} in the model",
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

/// Whether both sides sent some name in mixed case (0x20), then both with names lower-cased.
fn case_free(mut real: Vec<Packet>, mut model: Vec<Packet>, diffs: &mut Vec<String>) -> (Vec<Packet>, Vec<Packet>) {
    let mixed = |p: &[Packet]| p.iter().any(|x| x.qname.bytes().any(|b| b.is_ascii_uppercase()));
    if mixed(&real) != mixed(&model) {
        diffs.push(format!("random case (0x20): real {}, model {}", mixed(&real), mixed(&model)));
    }
    for p in real.iter_mut().chain(model.iter_mut()) {
        p.qname.make_ascii_lowercase();
    }
    (real, model)
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
            let mut harness = Harness::new(&self::zone(), ".", case.rules.clone())?;
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
