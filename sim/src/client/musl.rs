//! musl libc's resolver (sources.md#musl; musl src/network/resolvconf.c, lookup_name.c, res_msend.c).
//!
//! - Options: only `ndots:` (cap 15), `timeout:` (cap 60), `attempts:` (cap 10); at most 3 nameservers.
//! - Search since 1.1.13 (commit 3d6e2e47): with dots ≥ ndots or a trailing dot only the name is asked;
//!   otherwise each search domain, then the name. NXDOMAIN continues; NODATA, SERVFAIL, a timeout or
//!   any other rcode stop the walk.
//! - Per name, one socket; A then AAAA are sent together to every nameserver in parallel, and
//!   re-sent to all of them every timeout/attempts (2.5 s) until `timeout` (5 s) has passed.
//! - Only rcodes 0 and 3 are answers; SERVFAIL is retried at once, at most once per retry window;
//!   other rcodes are ignored (the query waits).
//! - TC=1 falls back to TCP only since 1.2.4 (commit 51d4669f); before, the truncated answer is used.
//! - AI_ADDRCONFIG: musl probes by connecting a UDP socket to a global address of each family, so a
//!   link-local-only IPv6 interface does not count (unlike glibc) [src: getaddrinfo.c].

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use resolver::wire::{RCODE_NOERROR, RCODE_NXDOMAIN, RCODE_SERVFAIL, TYPE_A, TYPE_AAAA};

use super::{Call, Family, Lookup, Outcome, Process, ResolvConf, Send, Transport, build_query, parse_reply};

/// A musl version, e.g. 1.2.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u16, pub u16, pub u16);

impl Version {
    pub const CURRENT: Version = Version(1, 2, 5);
}

/// The names musl asks, in order.
pub fn names(version: Version, rc: &ResolvConf, name: &str) -> Vec<String> {
    let bare = name.trim_end_matches('.');
    let dots = bare.matches('.').count() as u32;
    if name.ends_with('.') || dots >= rc.ndots.min(15) || version < Version(1, 1, 13) {
        return vec![format!("{bare}.")];
    }
    // The search line is read into a 256-byte buffer.
    let mut out = Vec::new();
    let mut total = 0;
    for d in &rc.search {
        total += d.len() + 1;
        if total > 256 {
            break;
        }
        out.push(format!("{bare}.{d}."));
    }
    out.push(format!("{bare}."));
    out
}

/// AI_ADDRCONFIG in musl (lookup_name.c): a family counts as configured when a UDP socket of that
/// family can `connect` to its loopback address, ::1 for IPv6. So any pod whose kernel has IPv6
/// enabled (::1 on lo; a link-local address implies it) asks AAAA; only a pod with IPv6 disabled
/// does not. Seen on the wire from musl 1.2.3 by `cargo xtask client-check`.
fn has_ipv6(call: &Call) -> bool {
    call.pod.0.iter().any(IpAddr::is_ipv6)
}

#[derive(Debug, Clone)]
struct Query {
    qtype: u16,
    id: u16,
    reply: Option<super::Reply>,
    /// Re-asked over TCP after a truncated answer (1.2.4).
    over_tcp: bool,
}

pub struct Musl {
    version: Version,
    servers: Vec<SocketAddr>,
    qtypes: Vec<u16>,
    names: Vec<String>,
    idx: usize,
    timeout: Duration,
    retry_interval: Duration,
    /// The TCP connection of the current name, once a truncated answer opened one (1.2.4).
    tcp: Option<u32>,
    socket: u32,
    next_socket: u32,
    open: bool,
    queries: Vec<Query>,
    started: Duration,
    next_retry: Option<Duration>,
    /// Immediate re-sends on SERVFAIL left in this retry window: 2 × nqueries (res_msend.c).
    servfail_retry: usize,
    sends: VecDeque<Send>,
    closed: VecDeque<u32>,
    rng: fastrand::Rng,
    result: Option<Outcome>,
}

impl Musl {
    pub fn new(now: Duration, version: Version, rc: &ResolvConf, call: &Call, seed: u64) -> Musl {
        let qtypes = match call.hints.family {
            Family::Inet => vec![TYPE_A],
            Family::Inet6 => vec![TYPE_AAAA],
            Family::Unspec if call.hints.addrconfig && !has_ipv6(call) => vec![TYPE_A],
            Family::Unspec => vec![TYPE_A, TYPE_AAAA],
        };
        let timeout = rc.timeout.clamp(1, 60);
        let attempts = rc.attempts.clamp(1, 10);
        let mut m = Musl {
            version,
            servers: rc.servers(3),
            qtypes,
            names: names(version, rc, &call.name),
            idx: 0,
            timeout: Duration::from_secs(u64::from(timeout)),
            retry_interval: Duration::from_millis(u64::from(timeout) * 1000 / u64::from(attempts)),
            tcp: None,
            socket: 0,
            next_socket: 0,
            open: false,
            queries: Vec::new(),
            started: now,
            next_retry: None,
            servfail_retry: 0,
            sends: VecDeque::new(),
            closed: VecDeque::new(),
            rng: fastrand::Rng::with_seed(seed),
            result: None,
        };
        m.start_name(now);
        m
    }

    fn open_socket(&mut self) {
        if self.open {
            self.closed.push_back(self.socket);
        }
        self.socket = self.next_socket;
        self.next_socket += 1;
        self.open = true;
    }

    fn close_tcp(&mut self) {
        if let Some(t) = self.tcp.take() {
            self.closed.push_back(t);
        }
    }

    fn start_name(&mut self, now: Duration) {
        self.open_socket();
        self.close_tcp();
        self.started = now;
        self.queries = self.qtypes.iter().map(|&qtype| Query { qtype, id: self.rng.u16(..), reply: None, over_tcp: false }).collect();
        self.send_unanswered(now);
    }

    /// Every unanswered query to every server.
    fn send_unanswered(&mut self, now: Duration) {
        let name = self.names[self.idx].clone();
        for i in 0..self.queries.len() {
            if self.queries[i].reply.is_some() || self.queries[i].over_tcp {
                continue;
            }
            for s in 0..self.servers.len() {
                self.send_one(i, s, &name, Transport::Udp);
            }
        }
        self.next_retry = Some((now + self.retry_interval).min(self.started + self.timeout));
        self.servfail_retry = 2 * self.queries.len();
    }

    fn send_one(&mut self, i: usize, server: usize, name: &str, transport: Transport) {
        let q = &self.queries[i];
        let payload = build_query(q.id, name, q.qtype, None);
        let socket = match transport {
            Transport::Udp => self.socket,
            Transport::Tcp => *self.tcp.get_or_insert_with(|| {
                self.next_socket += 1;
                self.next_socket - 1
            }),
        };
        self.sends.push_back(Send {
            socket,
            transport,
            server: self.servers[server],
            qname: name.to_string(),
            qtype: q.qtype,
            edns: None,
            payload,
        });
    }

    fn finish(&mut self, outcome: Outcome) {
        self.next_retry = None;
        self.close_tcp();
        if self.open {
            self.closed.push_back(self.socket);
            self.open = false;
        }
        self.result = Some(outcome);
    }

    fn judge(&mut self, now: Duration) {
        let replies: Vec<&super::Reply> = self.queries.iter().filter_map(|q| q.reply.as_ref()).collect();
        let addrs: Vec<IpAddr> = replies.iter().flat_map(|r| r.addrs.iter().copied()).collect();
        if !addrs.is_empty() {
            return self.finish(Outcome::Addrs(addrs));
        }
        if replies.iter().all(|r| r.rcode == RCODE_NXDOMAIN) {
            self.idx += 1;
            if self.idx < self.names.len() {
                return self.start_name(now);
            }
            return self.finish(Outcome::NoName);
        }
        // NODATA stops the search walk (the difference from glibc). musl 1.2.3 reports it as EAI_NONAME
        // (name_from_dns falls through to it; seen by `cargo xtask client-check`); EAI_NODATA from
        // 1.2.4 [unverified: version boundary].
        self.finish(if self.version >= Version(1, 2, 4) { Outcome::NoData } else { Outcome::NoName })
    }
}

impl Lookup for Musl {
    fn handle_answer(&mut self, now: Duration, socket: u32, transport: Transport, msg: &[u8]) {
        let ours = match transport {
            Transport::Udp => socket == self.socket,
            Transport::Tcp => self.tcp == Some(socket),
        };
        if self.result.is_some() || !ours {
            return;
        }
        let Some(reply) = parse_reply(msg) else { return };
        let name = self.names[self.idx].as_str();
        let Some(i) = self
            .queries
            .iter()
            .position(|q| q.reply.is_none() && q.id == reply.id && q.qtype == reply.qtype && super::qname_is(&reply.qname_lower, name))
        else {
            return;
        };
        match reply.rcode {
            RCODE_NOERROR | RCODE_NXDOMAIN => {}
            RCODE_SERVFAIL if self.servfail_retry > 0 => {
                // SERVFAIL: an immediate re-send (res_msend.c), 2 × nqueries per retry window in all
                // (seen on the wire from musl 1.2.3: four re-sends of an A/AAAA pair per window).
                self.servfail_retry -= 1;
                let n = self.names[self.idx].clone();
                for s in 0..self.servers.len() {
                    self.send_one(i, s, &n, Transport::Udp);
                }
                return;
            }
            // Other rcodes are not answers: keep waiting.
            _ => return,
        }
        if reply.tc && transport == Transport::Udp && self.version >= Version(1, 2, 4) {
            // 1.2.4: TCP fallback for the truncated query; the others stay on UDP.
            self.queries[i].over_tcp = true;
            let n = self.names[self.idx].clone();
            self.send_one(i, 0, &n, Transport::Tcp);
            return;
        }
        self.queries[i].reply = Some(reply);
        if self.queries.iter().all(|q| q.reply.is_some()) {
            self.judge(now);
        }
    }

    fn handle_refused(&mut self, _now: Duration, _socket: u32) {}

    fn handle_timeout(&mut self, now: Duration) {
        if self.result.is_some() || self.next_retry.is_none_or(|t| now < t) {
            return;
        }
        if now >= self.started + self.timeout {
            // EAI_AGAIN: the walk stops.
            return self.finish(Outcome::Again);
        }
        self.send_unanswered(now);
    }

    fn poll_send(&mut self) -> Option<Send> {
        self.sends.pop_front()
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if self.result.is_some() { None } else { self.next_retry }
    }

    fn poll_closed(&mut self) -> Option<u32> {
        self.closed.pop_front()
    }

    fn result(&self) -> Option<&Outcome> {
        self.result.as_ref()
    }

    fn process(&self) -> Process {
        Process::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Hints;
    use crate::client::fixtures::*;
    use crate::client::harness::Rule;

    fn musl(name: &str, hints: Hints, v: Version) -> Musl {
        Musl::new(Duration::ZERO, v, &kubelet_rc(), &call(name, hints), 3)
    }

    #[test]
    fn twelve_queries_one_socket_per_name_a_and_aaaa_together() {
        let (sent, out) = run(&mut musl("www.google.com", Hints::NULL, Version::CURRENT), vec![]);
        assert_eq!(sent.len(), 12);
        assert!(sent.chunks(2).all(|p| p[0].send.socket == p[1].send.socket && p[0].at == p[1].at));
        assert!(out.expect("done").is_ok());
    }

    #[test]
    fn a_lost_reply_costs_the_2_5s_retransmit() {
        let rules = vec![Rule::Drop { qname: "www.google.com.".into(), qtype: TYPE_AAAA, count: Some(1) }];
        let (sent, out) = run(&mut musl("www.google.com.", Hints::NULL, Version::CURRENT), rules);
        assert!(out.expect("done").is_ok());
        assert_eq!(sent.len(), 3);
        assert_eq!(sent[2].at, Duration::from_millis(2500), "timeout/attempts = 2.5 s");
        assert_eq!(sent[2].send.qtype, TYPE_AAAA);
    }

    #[test]
    fn nodata_stops_the_search_walk_where_glibc_goes_on() {
        let (sent, out) = run(&mut musl("txtonly", Hints::NULL, Version::CURRENT), vec![]);
        assert_eq!(out, Some(Outcome::NoData), "stops at txtonly.default.svc.cluster.local");
        assert_eq!(sent.len(), 2);
        let mut g = crate::client::glibc::Glibc::new(
            Duration::ZERO,
            crate::client::glibc::Version::CURRENT,
            &kubelet_rc(),
            &call("txtonly", Hints::NULL),
            Process::default(),
            1,
        );
        let (_, out) = run(&mut g, vec![]);
        assert!(out.expect("done").is_ok(), "glibc continues to the bare name and finds it");
    }

    #[test]
    fn servfail_and_timeouts_end_the_lookup_with_eai_again() {
        let rules = vec![Rule::ServFail { qname: "www.google.com.default.svc.cluster.local.".into(), qtype: 0 }];
        let (sent, out) = run(&mut musl("www.google.com", Hints::NULL, Version::CURRENT), rules);
        assert_eq!(out, Some(Outcome::Again));
        assert!(sent.iter().all(|s| s.send.qname == "www.google.com.default.svc.cluster.local."));
    }

    #[test]
    fn truncated_answers_use_tcp_only_from_1_2_4() {
        let (sent, out) = run(&mut musl("big.example.com.", Hints::addrconfig(), Version(1, 2, 3)), vec![]);
        assert!(sent.iter().all(|s| s.send.transport == Transport::Udp));
        assert!(matches!(out, Some(Outcome::Addrs(ref a)) if a.len() < 100), "the truncated answer is used as it is");
        let (sent, out) = run(&mut musl("big.example.com.", Hints::addrconfig(), Version(1, 2, 4)), vec![]);
        assert!(sent.iter().any(|s| s.send.transport == Transport::Tcp));
        assert!(matches!(out, Some(Outcome::Addrs(ref a)) if a.len() == 100));
    }

    #[test]
    fn before_1_1_13_the_search_list_is_ignored() {
        assert_eq!(names(Version(1, 1, 12), &kubelet_rc(), "web"), ["web."]);
        assert_eq!(names(Version(1, 1, 13), &kubelet_rc(), "web").len(), 6);
    }

    #[test]
    fn addrconfig_asks_aaaa_whenever_ipv6_is_enabled() {
        let mut c = call("www.google.com.", Hints::addrconfig());
        c.pod.0.retain(|a| a.is_ipv4());
        let (sent, _) = run(&mut Musl::new(Duration::ZERO, Version::CURRENT, &kubelet_rc(), &c, 1), vec![]);
        assert_eq!(sent.len(), 1, "IPv6 disabled: no ::1 to connect to, only A");
        c.pod.0.push("::1".parse().expect("ip"));
        let (sent, _) = run(&mut Musl::new(Duration::ZERO, Version::CURRENT, &kubelet_rc(), &c, 1), vec![]);
        assert_eq!(sent.len(), 2, "::1 alone is enough for musl, unlike glibc");
    }

    #[test]
    fn servfail_is_resent_at_once_four_times_per_window_for_a_pair() {
        let rules = vec![Rule::ServFail { qname: "www.google.com.".into(), qtype: 0 }];
        let (sent, out) = run(&mut musl("www.google.com.", Hints::NULL, Version(1, 2, 3)), rules);
        let first_window = sent.iter().filter(|s| s.at < Duration::from_millis(2500)).count();
        assert_eq!(first_window, 6, "the pair and four re-sends");
        assert_eq!(sent.len(), 12);
        assert_eq!(out, Some(Outcome::Again));
    }
}
