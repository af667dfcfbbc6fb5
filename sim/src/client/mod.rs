//! Client resolver libraries modelled to the packet (sources.md#kubelet-resolv-conf).
//!
//! Each library is a sans-IO state machine for one `getaddrinfo`-style lookup: given a parsed
//! resolv.conf, the name and hints, the pod's interface addresses and a seeded RNG, it emits sends
//! (socket, transport, server, the exact query bytes) and one timer, and consumes answers and timeouts
//! until it returns addresses or an error. Per-process state that outlives a lookup (glibc's sticky
//! single-request flag, the `rotate` counter) lives in `Process`.

pub mod cares;
pub mod evdns;
pub mod glibc;
pub mod go;
pub mod go_choice;
pub mod harness;
pub mod musl;
pub mod resolvconf;
pub mod table;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub use resolvconf::ResolvConf;

/// Transport of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

/// One packet the library puts on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    /// The library's socket, numbered from 0 in order of creation within the lookup.
    pub socket: u32,
    pub transport: Transport,
    pub server: SocketAddr,
    /// The query name exactly as sent (case included), dotted, fully qualified.
    pub qname: String,
    pub qtype: u16,
    /// EDNS UDP size advertised, if any.
    pub edns: Option<u16>,
    pub payload: Vec<u8>,
}

/// getaddrinfo's family argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Unspec,
    Inet,
    Inet6,
}

/// getaddrinfo hints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hints {
    pub family: Family,
    pub addrconfig: bool,
    pub v4mapped: bool,
    pub all: bool,
    pub canonname: bool,
}

impl Hints {
    /// `hints = NULL`: AF_UNSPEC, no flags.
    pub const NULL: Hints = Hints { family: Family::Unspec, addrconfig: false, v4mapped: false, all: false, canonname: false };
    /// What Go's cgo resolver passes: AI_CANONNAME | AI_V4MAPPED | AI_ALL (sources.md#go-cgo).
    pub const GO_CGO: Hints = Hints { family: Family::Unspec, addrconfig: false, v4mapped: true, all: true, canonname: true };
    pub fn addrconfig() -> Hints {
        Hints { addrconfig: true, ..Hints::NULL }
    }
}

/// One getaddrinfo call: the name, the hints, and the calling pod's interface addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub name: String,
    pub hints: Hints,
    pub pod: PodAddrs,
}

/// What the application gets back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Addrs(Vec<IpAddr>),
    /// EAI_NONAME: NXDOMAIN for every name tried.
    NoName,
    /// EAI_NODATA / no address of the asked family.
    NoData,
    /// EAI_AGAIN: timeouts or SERVFAIL.
    Again,
    /// EAI_FAIL or a library-specific error (e.g. evdns DNS_ERR_TRUNCATED).
    Fail(String),
}

impl Outcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Addrs(_))
    }
}

/// The interface addresses of a pod, for AI_ADDRCONFIG (glibc `__check_pf`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodAddrs(pub Vec<IpAddr>);

impl PodAddrs {
    /// Has IPv4 other than 127.0.0.1 (check_pf.c).
    pub fn has_v4(&self) -> bool {
        self.0.iter().any(|a| matches!(a, IpAddr::V4(v4) if !v4.is_loopback()))
    }
    /// Has IPv6 other than ::1; link-local fe80:: counts (sources.md#glibc).
    pub fn has_v6(&self) -> bool {
        self.0.iter().any(|a| matches!(a, IpAddr::V6(v6) if !v6.is_loopback()))
    }
    /// Has an IPv6 address that can reach the internet: not ::1, not link-local fe80::/10.
    pub fn has_global_v6(&self) -> bool {
        self.0.iter().any(|a| matches!(a, IpAddr::V6(v6) if !v6.is_loopback() && (v6.segments()[0] & 0xffc0) != 0xfe80))
    }
}

/// State a process keeps across lookups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Process {
    /// glibc RES_F_SNGLKUP: after a lost reply, this process sends A and AAAA sequentially.
    pub single_request: bool,
    /// glibc RES_F_SNGLKUPREOP: and reopens the socket between them.
    pub single_request_reopen: bool,
    /// `rotate` round-robin position.
    pub rotate: usize,
    /// evdns: the base's `server_head`, as a position in its circular nameserver list (every new
    /// request and every retransmission takes the next nameserver).
    pub evdns_head: usize,
    /// evdns: nameservers marked down (bit per nameserver), after a request gave up on them.
    pub evdns_down: u64,
    /// Next query ID for libraries that count IDs per process (c-ares, evdns use random ones).
    pub queries_sent: u64,
    /// c-ares (current): the channel's query cache, (lower-case qname, qtype) → (expires, answer).
    pub cares_cache: std::collections::BTreeMap<(Vec<u8>, u16), (Duration, Reply)>,
    /// c-ares (current): per server, (answers, their summed latency), for the dynamic timeout.
    pub cares_latency: std::collections::BTreeMap<SocketAddr, (u32, Duration)>,
}

/// Socket ids at or above this belong to the process, not the lookup: they stay open across lookups
/// (c-ares and evdns keep one UDP socket per nameserver), so their source port never changes.
pub const PROCESS_SOCKET: u32 = 1 << 30;

/// A lookup in progress, whatever the library.
pub trait Lookup {
    /// An answer arrived on one of the lookup's sockets.
    fn handle_answer(&mut self, now: Duration, socket: u32, transport: Transport, msg: &[u8]);
    /// The destination answered with ICMP port unreachable (a REJECTed Service): ECONNREFUSED.
    fn handle_refused(&mut self, now: Duration, socket: u32);
    fn handle_timeout(&mut self, now: Duration);
    fn poll_send(&mut self) -> Option<Send>;
    fn poll_timeout(&self) -> Option<Duration>;
    /// Sockets the library closed (the pod releases their ports).
    fn poll_closed(&mut self) -> Option<u32>;
    fn result(&self) -> Option<&Outcome>;
    /// Process state to keep for the next lookup.
    fn process(&self) -> Process;
}

/// Shared fixtures for the library tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// www.google.com (A, AAAA); big.example.com (100 A, over 1232 bytes); txtonly.default.svc.cluster.local
    /// (a TXT record only: A and AAAA are NODATA).
    pub fn zone() -> String {
        let mut z = String::from("$TTL 300\n@ IN SOA ns.example. h.example. 1 7200 1800 86400 60\n");
        z.push_str("www.google.com. IN A 142.250.74.100\nwww.google.com. IN AAAA 2a00:1450:4007:80e::2004\n");
        z.push_str("txtonly.default.svc.cluster.local. IN TXT \"x\"\ntxtonly. IN A 10.9.9.9\n");
        for i in 0..100 {
            z.push_str(&format!("big.example.com. IN A 10.2.0.{}\n", i + 1));
        }
        z
    }

    pub fn kubelet_rc() -> ResolvConf {
        ResolvConf::parse(&ResolvConf::kubelet_cluster_first(
            "10.96.0.10".parse().expect("ip"),
            "default",
            "cluster.local",
            &["ec2.internal", "example.internal"],
        ))
    }

    pub fn v4_pod() -> PodAddrs {
        PodAddrs(vec!["10.244.1.10".parse().expect("ip"), "127.0.0.1".parse().expect("ip"), "::1".parse().expect("ip")])
    }

    pub fn call(name: &str, hints: Hints) -> Call {
        Call { name: name.to_string(), hints, pod: v4_pod() }
    }

    pub fn run(lookup: &mut dyn Lookup, rules: Vec<harness::Rule>) -> (Vec<harness::Sent>, Option<Outcome>) {
        let mut h = harness::Harness::new(&zone(), ".", rules).expect("harness");
        h.run(lookup, Duration::from_secs(120))
    }
}

/// Whether a wire-format, lower-cased name (as `Reply::qname_lower`) is the dotted `name`, ignoring
/// ASCII case; no allocation (the simulator matches every answer this way).
pub fn qname_is(wire_lower: &[u8], name: &str) -> bool {
    let mut at = 0;
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        let Some(&len) = wire_lower.get(at) else { return false };
        let len = usize::from(len);
        match wire_lower.get(at + 1..at + 1 + len) {
            Some(l) if l.eq_ignore_ascii_case(label.as_bytes()) => at += 1 + len,
            _ => return false,
        }
    }
    wire_lower.get(at) == Some(&0) && at + 1 == wire_lower.len()
}

/// Builds a query: ID, RD, one question, optional OPT.
pub fn build_query(id: u16, qname: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
    let mut m = Vec::with_capacity(qname.len() + 32);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
    for label in qname.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        m.push(label.len().min(63) as u8);
        m.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    if let Some(size) = edns {
        m.extend_from_slice(&[0, 0, 41]);
        m.extend_from_slice(&size.to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    m
}

/// What an answer says, as a stub resolver reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub id: u16,
    pub rcode: u8,
    pub tc: bool,
    pub qname_lower: Vec<u8>,
    pub qtype: u16,
    pub addrs: Vec<IpAddr>,
    pub ancount: u16,
    /// The smallest TTL among the answer records.
    pub ttl: Option<u32>,
    /// For a negative answer: the SOA in the authority section, min(its TTL, its MINIMUM) (RFC 2308).
    pub negative_ttl: Option<u32>,
}

/// Reads an answer's header, question and A/AAAA records; None if it is not a well-formed response.
pub fn parse_reply(msg: &[u8]) -> Option<Reply> {
    use resolver::wire;
    if msg.len() < wire::HEADER_LEN || !wire::flags::is_response(msg) {
        return None;
    }
    let mut qname_lower = Vec::new();
    let (qtype, mut at) = if wire::u16_at(msg, 4).ok()? == 1 {
        let end = wire::read_name_lower(msg, wire::HEADER_LEN, &mut qname_lower).ok()?;
        (wire::u16_at(msg, end).ok()?, end + 4)
    } else {
        (0, wire::HEADER_LEN)
    };
    let ancount = wire::u16_at(msg, 6).ok()?;
    let nscount = wire::u16_at(msg, 8).ok()?;
    let mut addrs = Vec::new();
    let mut ttl: Option<u32> = None;
    let mut negative_ttl = None;
    for i in 0..u32::from(ancount) + u32::from(nscount) {
        let Ok(name_end) = wire::skip_name(msg, at) else { break };
        let (Ok(rtype), Ok(rdlen)) = (wire::u16_at(msg, name_end), wire::u16_at(msg, name_end + 8)) else { break };
        let rdlen = rdlen as usize;
        let Some(rd) = msg.get(name_end + 10..name_end + 10 + rdlen) else { break };
        let rr_ttl = msg.get(name_end + 4..name_end + 8).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        if i >= u32::from(ancount) {
            // Authority: the SOA of a negative answer; MINIMUM is its rdata's last four bytes.
            if rtype == wire::TYPE_SOA && rdlen >= 4 {
                let m = &rd[rdlen - 4..];
                negative_ttl = Some(rr_ttl.min(u32::from_be_bytes([m[0], m[1], m[2], m[3]])));
            }
            at = name_end + 10 + rdlen;
            continue;
        }
        ttl = Some(ttl.map_or(rr_ttl, |t| t.min(rr_ttl)));
        match (rtype, rdlen) {
            (wire::TYPE_A, 4) => addrs.push(IpAddr::from([rd[0], rd[1], rd[2], rd[3]])),
            (wire::TYPE_AAAA, 16) => {
                let mut b = [0u8; 16];
                b.copy_from_slice(rd);
                addrs.push(IpAddr::from(b));
            }
            _ => {}
        }
        at = name_end + 10 + rdlen;
    }
    Some(Reply {
        id: wire::flags::id(msg),
        rcode: wire::flags::rcode(msg),
        tc: wire::flags::tc(msg),
        qname_lower,
        qtype,
        addrs,
        ancount,
        ttl,
        negative_ttl,
    })
}

/// Which call the application makes. glibc, musl and Go have one (getaddrinfo, `net.LookupIP`);
/// c-ares and evdns have two, and they differ on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Api {
    /// `ares_getaddrinfo`, `evdns_getaddrinfo` (and every other library's only call).
    #[default]
    Getaddrinfo,
    /// One family per call: `ares_gethostbyname`, `evdns_base_resolve_ipv4`/`_ipv6`.
    Byname,
}

/// A library to model, as `ndots-sim lookup --lib` names it (glibc, musl, go, go-cgo, c-ares, evdns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lib {
    Glibc,
    Musl,
    Go,
    GoCgo,
    CAres,
    Evdns,
}

/// The `hosts:` line of /etc/nsswitch.conf the models assume (Debian's and most images' default).
pub const NSSWITCH_HOSTS: &str = "files dns";

/// Runs one lookup of `lib` at `version` (None: the library's current version) against `harness` until
/// it returns or 300 simulated seconds pass: every packet it sent and what the application gets.
/// Go's cgo resolver is glibc called with Go's hints (sources.md#go-cgo).
pub fn run_model(
    lib: Lib,
    version: Option<&str>,
    api: Api,
    rc: &ResolvConf,
    call: &Call,
    harness: &mut harness::Harness,
) -> Result<(Vec<harness::Sent>, Option<Outcome>), String> {
    let mut lookup = build_model(lib, version, api, rc, call, Process::default())?;
    Ok(harness.run(lookup.as_mut(), Duration::from_secs(300)))
}

/// One lookup of `lib` at `version`, started at time zero with `process` state (see `run_model`).
pub fn build_model(
    lib: Lib,
    version: Option<&str>,
    api: Api,
    rc: &ResolvConf,
    call: &Call,
    process: Process,
) -> Result<Box<dyn Lookup>, String> {
    if api == Api::Byname && !matches!(lib, Lib::CAres | Lib::Evdns) {
        return Err(format!(
            "--api byname: {lib:?} has no by-name call; only c-ares (ares_gethostbyname) and evdns (evdns_base_resolve_ipv4) do"
        ));
    }
    let t0 = Duration::ZERO;
    Ok(match lib {
        Lib::Glibc | Lib::GoCgo => {
            let v = match version {
                Some(v) => {
                    let bad = || format!("--version {v}: expected MAJOR.MINOR such as 2.36");
                    let (a, b) = v.split_once('.').ok_or_else(bad)?;
                    glibc::Version(a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?)
                }
                None => glibc::Version::CURRENT,
            };
            let mut call = call.clone();
            if lib == Lib::GoCgo {
                call.hints = Hints { family: call.hints.family, ..Hints::GO_CGO };
            }
            Box::new(glibc::Glibc::new(t0, v, rc, &call, process, 1))
        }
        Lib::Musl => {
            let v = match version {
                Some(v) => {
                    let p: Vec<u16> = v
                        .split('.')
                        .map(|x| x.parse().map_err(|_| format!("--version {v}: expected MAJOR.MINOR.PATCH such as 1.2.4")))
                        .collect::<Result<_, _>>()?;
                    musl::Version(p.first().copied().unwrap_or(1), p.get(1).copied().unwrap_or(2), p.get(2).copied().unwrap_or(0))
                }
                None => musl::Version::CURRENT,
            };
            Box::new(musl::Musl::new(t0, v, rc, call, 1))
        }
        // With a version, a cgo build's own choice of resolver (as with no GODEBUG), under a
        // `hosts: files dns` nsswitch.conf; without, Go's resolver (GODEBUG=netdns=go).
        Lib::Go => {
            let choice = match version {
                Some(v) => {
                    go_choice::GoBuild::for_version(v)
                        .map_err(|e| format!("--version {v}: {e}"))?
                        .choose(rc, Some(NSSWITCH_HOSTS), &call.name)
                        .0
                }
                None => go_choice::Choice::Native,
            };
            if choice == go_choice::Choice::Cgo {
                return build_model(Lib::GoCgo, None, api, rc, call, process);
            }
            Box::new(go::Go::new(t0, rc, call, process, 1))
        }
        Lib::CAres => {
            let era = match version {
                None => cares::Era::Current,
                Some(v) => cares::Era::for_version(v).map_err(|e| format!("--version {v}: {e}"))?,
            };
            Box::new(cares::CAres::new(t0, era, api, rc, call, process, 1))
        }
        Lib::Evdns => {
            let v = match version {
                None => evdns::Version::V2_1,
                Some(v) => evdns::Version::for_version(v).map_err(|e| format!("--version {v}: {e}"))?,
            };
            Box::new(evdns::Evdns::new(t0, v, api, rc, call, process, 1))
        }
    })
}

#[cfg(test)]
mod qname_tests {
    #[test]
    fn qname_is_compares_wire_names_with_dotted_ones_ignoring_case() {
        let wire = resolver::wire::name_from_str("www.google.com.").expect("name");
        assert!(super::qname_is(&wire, "WWW.Google.com."));
        assert!(super::qname_is(&wire, "www.google.com"));
        assert!(!super::qname_is(&wire, "www.google.co."));
        assert!(!super::qname_is(&wire, "www.google.com.au."));
        assert!(!super::qname_is(&wire, "google.com."));
        assert!(super::qname_is(&[0], "."));
    }
}
