//! libevent's evdns, pgbouncer's "evdns2" backend (sources.md#evdns; libevent evdns.c at
//! release-2.1.12-stable and HEAD; checked by `cargo xtask client-check` on Debian's 2.1.12).
//!
//! - Defaults (2.1.12 `evdns_base_new`): timeout 5 s; `attempts:` sets max_retransmits, the number
//!   of sends per request (default 3); `randomize-case` on: every query name gets DNS 0x20 random
//!   case, unless `options randomize-case:0`. `rotate`, `edns0` and `use-vc` are not options of 2.1.
//! - The search list (`search_request_new`, `search_make_new`): a name with fewer dots than `ndots`
//!   (the trailing dot counts as one, and does not make the name absolute) gets each search domain
//!   appended, then goes as it is; any other name goes as it is, then with each domain. So
//!   `www.google.com.` under ndots:5 sends twelve queries, like `www.google.com`.
//! - `evdns_getaddrinfo(AF_UNSPEC)`: an A and an AAAA request, each its own search; once one is done
//!   (answer or error) the other gets `getaddrinfo-allow-skew` (3 s) more. Errors become
//!   EAI_NONAME (NXDOMAIN) or EAI_FAIL (anything else, NODATA and timeouts included); of two errors
//!   the later one is reported.
//! - NXDOMAIN, NODATA and any error reaching the default case (a truncated reply included) try the
//!   next search name.
//! - **TC=1 in 2.1.x is DNS_ERR_TRUNCATED ("reply truncated or ill-formed"): no TCP retry.** TCP came
//!   with commit 0f6ee89a in 2.2.1-alpha.
//! - **SERVFAIL calls the timeout handler at once** ("Treat this as a timeout"): the request is sent
//!   again immediately until its sends are used up, then fails with DNS_ERR_TIMEOUT, which ends the
//!   search (three SERVFAILs in a millisecond, then EAI_FAIL: measured).
//! - NOTIMP and REFUSED reissue once to another nameserver; with no other, the default case.
//! - Nameservers: one UDP socket each for the life of the base; every new request and every
//!   retransmission takes the next one of the base's circular list (`nameserver_pick`), so an
//!   AF_UNSPEC lookup sends A to the first nameserver and AAAA to the next. The list runs in the
//!   order added for two nameservers; a third and later are inserted after the head, so three run
//!   a, c, b [source reading, unverified on the wire].
//! - Not modelled: a nameserver that timed out is marked down and probed after 10 s (the probe is
//!   a packet of its own); picks skip down nameservers.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use resolver::wire::{RCODE_FORMERR, RCODE_NOERROR, RCODE_NOTIMP, RCODE_NXDOMAIN, RCODE_REFUSED, RCODE_SERVFAIL, TYPE_A, TYPE_AAAA};

use super::{Api, Call, Family, Lookup, Outcome, PROCESS_SOCKET, Process, ResolvConf, Send, Transport, build_query, parse_reply};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    /// 2.0 and 2.1 (Debian 12: 2.1.12-stable): no TCP.
    V2_1,
    /// 2.2: TCP on TC=1.
    V2_2,
}

impl Version {
    /// The behaviour of a libevent release as people write it (`2.1.12`, `2.1.12-stable`, `2.2.1`),
    /// or the series names `2.1` and `2.2`.
    pub fn for_version(v: &str) -> Result<Version, String> {
        let known = "libevent 2.0-2.1 (no TCP) or 2.2 (TCP on truncation, from 2.2.1-alpha)";
        let release = v.split(['-', '+']).next().unwrap_or(v);
        let parts: Vec<u16> = release
            .split('.')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| format!("libevent version `{v}`: expected a release such as 2.1.12; the model knows {known}"))?;
        match (parts.first(), parts.get(1)) {
            (Some(2), Some(0 | 1)) => Ok(Version::V2_1),
            (Some(2), Some(2)) => Ok(Version::V2_2),
            _ => Err(format!("libevent version `{v}`: not modelled; the model knows {known}")),
        }
    }
}

/// getaddrinfo-allow-skew.
const ALLOW_SKEW: Duration = Duration::from_secs(3);
/// global_max_retransmits: sends per request.
const MAX_TRANSMITS: u32 = 3;
/// global_max_reissues.
const MAX_REISSUES: u32 = 1;

/// The names a search tries, in order (`search_request_new`, `search_try_next`).
pub fn names(rc: &ResolvConf, name: &str) -> Vec<String> {
    let absolute = |n: &str| if n.ends_with('.') { n.to_string() } else { format!("{n}.") };
    if rc.search.is_empty() {
        return vec![absolute(name)];
    }
    let sep = if name.ends_with('.') { "" } else { "." };
    let with_domains = rc.search.iter().map(|d| format!("{name}{sep}{d}."));
    let dots = name.matches('.').count() as u32;
    if dots >= rc.ndots {
        std::iter::once(absolute(name)).chain(with_domains).collect()
    } else {
        with_domains.chain(std::iter::once(absolute(name))).collect()
    }
}

#[derive(Debug, Clone)]
struct Request {
    qtype: u16,
    idx: usize,
    id: u16,
    qname: String,
    /// Sends of this query so far (tx_count).
    transmits: u32,
    reissues: u32,
    server: usize,
    transport: Transport,
    deadline: Duration,
    done: Option<Result<Vec<IpAddr>, Outcome>>,
}

pub struct Evdns {
    version: Version,
    api: Api,
    servers: Vec<SocketAddr>,
    names: Vec<String>,
    timeout: Duration,
    max_transmits: u32,
    randomize_case: bool,
    reqs: Vec<Request>,
    skew_deadline: Option<Duration>,
    /// The error of the request that finished last with one.
    last_error: Option<Outcome>,
    sends: VecDeque<Send>,
    rng: fastrand::Rng,
    result: Option<Outcome>,
    process: Process,
}

impl Evdns {
    pub fn new(now: Duration, version: Version, api: Api, rc: &ResolvConf, call: &Call, process: Process, seed: u64) -> Evdns {
        let qtypes = match (call.hints.family, api) {
            (Family::Inet6, _) => vec![TYPE_AAAA],
            (Family::Inet, _) | (Family::Unspec, Api::Byname) => vec![TYPE_A],
            (Family::Unspec, Api::Getaddrinfo) => vec![TYPE_A, TYPE_AAAA],
        };
        let mut e = Evdns {
            version,
            api,
            servers: rc.servers(usize::MAX),
            names: names(rc, &call.name),
            timeout: Duration::from_secs(u64::from(if rc.timeout == 0 { 5 } else { rc.timeout })),
            max_transmits: if rc.attempts_given { rc.attempts.min(255) } else { MAX_TRANSMITS },
            randomize_case: rc.randomize_case.unwrap_or(true),
            reqs: Vec::new(),
            skew_deadline: None,
            last_error: None,
            sends: VecDeque::new(),
            rng: fastrand::Rng::with_seed(seed),
            result: None,
            process,
        };
        e.reqs = qtypes
            .into_iter()
            .map(|qtype| Request {
                qtype,
                idx: 0,
                id: 0,
                qname: String::new(),
                transmits: 0,
                reissues: 0,
                server: 0,
                transport: Transport::Udp,
                deadline: now,
                done: None,
            })
            .collect();
        for i in 0..e.reqs.len() {
            e.issue(now, i);
        }
        e
    }

    /// `nameserver_pick`: the head of the circular list a, (last added), ..., b, skipping
    /// nameservers marked down; the head moves on. With none up, the one after the head.
    fn pick(&mut self) -> usize {
        let n = self.servers.len();
        // Position k of the list holds nameserver 0 for k = 0, else n - k.
        let at = |k: usize| if k.is_multiple_of(n) { 0 } else { n - k % n };
        let up = |p: &Process, i: usize| i >= 64 || p.evdns_down & (1 << i) == 0;
        if (0..n).all(|i| !up(&self.process, i)) {
            self.process.evdns_head = (self.process.evdns_head + 1) % n;
            return at(self.process.evdns_head);
        }
        loop {
            let k = self.process.evdns_head % n;
            self.process.evdns_head = (k + 1) % n;
            if up(&self.process, at(k)) {
                return at(k);
            }
        }
    }

    /// `nameserver_failed` / `nameserver_up` (the probe that brings a down one back is not modelled).
    fn mark(&mut self, server: usize, up: bool) {
        if server < 64 {
            if up {
                self.process.evdns_down &= !(1 << server);
            } else {
                self.process.evdns_down |= 1 << server;
            }
        }
    }

    /// A new query for request `i`'s current name (a new ID and, with 0x20, a new case pattern).
    fn issue(&mut self, now: Duration, i: usize) {
        let base = self.names[self.reqs[i].idx].clone();
        let qname: String = if self.randomize_case {
            base.chars()
                .map(|c| if c.is_ascii_alphabetic() && self.rng.bool() { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
                .collect()
        } else {
            base
        };
        let r = &mut self.reqs[i];
        r.id = self.rng.u16(..);
        r.qname = qname;
        r.transmits = 0;
        r.reissues = 0;
        self.transmit(now, i);
    }

    /// Sends request `i` to the next nameserver.
    fn transmit(&mut self, now: Duration, i: usize) {
        let server = self.pick();
        let r = &mut self.reqs[i];
        r.deadline = now + self.timeout;
        r.transmits += 1;
        r.server = server;
        let socket = PROCESS_SOCKET + server as u32 + if r.transport == Transport::Tcp { 100 } else { 0 };
        let payload = build_query(r.id, &r.qname, r.qtype, None);
        self.sends.push_back(Send {
            socket,
            transport: r.transport,
            server: self.servers[server],
            qname: r.qname.clone(),
            qtype: r.qtype,
            edns: None,
            payload,
        });
    }

    /// `evdns_request_timeout_callback` (a timeout, or a SERVFAIL): again at once while sends are
    /// left, else DNS_ERR_TIMEOUT, which ends the request without searching further.
    fn timed_out(&mut self, now: Duration, i: usize) {
        if self.reqs[i].transmits >= self.max_transmits {
            let server = self.reqs[i].server;
            self.finish(now, i, Err(Outcome::Again));
            self.mark(server, false);
        } else {
            self.transmit(now, i);
        }
    }

    /// The request's current name failed in the default case: the next search name, or the error.
    fn next_name(&mut self, now: Duration, i: usize, err: Outcome) {
        let r = &mut self.reqs[i];
        if r.idx + 1 < self.names.len() {
            r.idx += 1;
            r.transport = Transport::Udp;
            return self.issue(now, i);
        }
        self.finish(now, i, Err(err));
    }

    fn finish(&mut self, now: Duration, i: usize, r: Result<Vec<IpAddr>, Outcome>) {
        if let Err(e) = &r {
            self.last_error = Some(e.clone());
        }
        self.reqs[i].done = Some(r);
        // The other request gets the skew from the first that is done, answer or error.
        if self.skew_deadline.is_none() && self.reqs.len() > 1 {
            self.skew_deadline = Some(now + ALLOW_SKEW);
        }
        self.settle(now);
    }

    /// getaddrinfo returns when every request is done, or the skew has passed after the first.
    fn settle(&mut self, now: Duration) {
        let all_done = self.reqs.iter().all(|r| r.done.is_some());
        let skew_over = self.skew_deadline.is_some_and(|d| now >= d);
        if !(all_done || skew_over) {
            return;
        }
        let addrs: Vec<IpAddr> = self.reqs.iter().filter_map(|r| r.done.as_ref()?.as_ref().ok()).flatten().copied().collect();
        let err = self.last_error.clone().unwrap_or(Outcome::Again);
        self.result = Some(if !addrs.is_empty() {
            Outcome::Addrs(addrs)
        } else if self.api == Api::Byname {
            err
        } else {
            // evdns_err_to_getaddrinfo_err: EAI_NONAME for NXDOMAIN, EAI_FAIL for anything else.
            match err {
                Outcome::NoName => Outcome::NoName,
                Outcome::NoData => Outcome::Fail("EVUTIL_EAI_FAIL (DNS_ERR_NODATA)".into()),
                Outcome::Again => Outcome::Fail("EVUTIL_EAI_FAIL (DNS_ERR_TIMEOUT)".into()),
                Outcome::Fail(e) => Outcome::Fail(format!("EVUTIL_EAI_FAIL ({e})")),
                Outcome::Addrs(_) => Outcome::Fail("EVUTIL_EAI_FAIL".into()),
            }
        });
    }
}

impl Lookup for Evdns {
    fn handle_answer(&mut self, now: Duration, socket: u32, transport: Transport, msg: &[u8]) {
        if self.result.is_some() || socket < PROCESS_SOCKET {
            return;
        }
        let Some(reply) = parse_reply(msg) else { return };
        // Case-insensitive match of the question (libevent #288).
        let Some(i) = self.reqs.iter().position(|r| {
            r.done.is_none()
                && r.transport == transport
                && r.id == reply.id
                && r.qtype == reply.qtype
                && resolver::wire::name_from_str(&r.qname).is_some_and(|n| n == reply.qname_lower)
        }) else {
            return;
        };
        // A reply that is not SERVFAIL, NOTIMP or REFUSED marks its nameserver up; NOTIMP and
        // REFUSED mark it down when a reissue is left (`nameserver_failed` before
        // `request_reissue`), and leave it as it is otherwise.
        let server = self.reqs[i].server;
        match reply.rcode {
            RCODE_SERVFAIL => {}
            RCODE_NOTIMP | RCODE_REFUSED if self.reqs[i].reissues < MAX_REISSUES => self.mark(server, false),
            RCODE_NOTIMP | RCODE_REFUSED => {}
            _ => self.mark(server, true),
        }
        if reply.tc && transport == Transport::Udp {
            if self.version >= Version::V2_2 {
                self.reqs[i].transport = Transport::Tcp;
                self.reqs[i].transmits -= 1;
                return self.transmit(now, i);
            }
            // 2.1: DNS_ERR_TRUNCATED, the default case: the next search domain, else the error.
            return self.next_name(now, i, Outcome::Fail("DNS_ERR_TRUNCATED".into()));
        }
        match reply.rcode {
            RCODE_NOERROR if reply.addrs.is_empty() => self.next_name(now, i, Outcome::NoData),
            RCODE_NOERROR => self.finish(now, i, Ok(reply.addrs)),
            RCODE_NXDOMAIN => self.next_name(now, i, Outcome::NoName),
            RCODE_SERVFAIL => self.timed_out(now, i),
            RCODE_NOTIMP | RCODE_REFUSED if self.reqs[i].reissues < MAX_REISSUES && self.servers.len() > 1 => {
                self.reqs[i].reissues += 1;
                self.reqs[i].transmits = 0;
                self.transmit(now, i);
            }
            RCODE_NOTIMP => self.next_name(now, i, Outcome::Fail("DNS_ERR_NOTIMPL".into())),
            RCODE_REFUSED => self.next_name(now, i, Outcome::Fail("DNS_ERR_REFUSED".into())),
            RCODE_FORMERR => self.next_name(now, i, Outcome::Fail("DNS_ERR_FORMAT".into())),
            _ => self.next_name(now, i, Outcome::Fail("DNS_ERR_UNKNOWN".into())),
        }
    }

    fn handle_refused(&mut self, _now: Duration, _socket: u32) {}

    fn handle_timeout(&mut self, now: Duration) {
        if self.skew_deadline.is_some_and(|d| now >= d) {
            self.settle(now);
        }
        while self.result.is_none() {
            let Some(i) = self.reqs.iter().position(|r| r.done.is_none() && r.deadline <= now) else { break };
            self.timed_out(now, i);
        }
    }

    fn poll_send(&mut self) -> Option<Send> {
        self.sends.pop_front()
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if self.result.is_some() {
            return None;
        }
        self.reqs.iter().filter(|r| r.done.is_none()).map(|r| r.deadline).chain(self.skew_deadline).min()
    }

    fn poll_closed(&mut self) -> Option<u32> {
        None
    }

    fn result(&self) -> Option<&Outcome> {
        self.result.as_ref()
    }

    fn process(&self) -> Process {
        self.process.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Hints;
    use crate::client::fixtures::*;

    fn evdns(name: &str, v: Version, rc: &ResolvConf) -> Evdns {
        Evdns::new(Duration::ZERO, v, Api::Getaddrinfo, rc, &call(name, Hints::NULL), Process::default(), 9)
    }

    /// The kubelet's file with `ndots:1`: `www.google.com.` goes as it is first.
    fn ndots1() -> ResolvConf {
        ResolvConf { ndots: 1, ..kubelet_rc() }
    }

    fn qnames(sent: &[crate::client::harness::Sent]) -> Vec<String> {
        sent.iter().map(|s| s.send.qname.to_ascii_lowercase()).collect()
    }

    #[test]
    fn a_truncated_answer_is_an_error_in_2_1_and_never_goes_to_tcp() {
        let c = Call { hints: Hints { family: Family::Inet, ..Hints::NULL }, ..call("big.example.com.", Hints::NULL) };
        let mut e = Evdns::new(Duration::ZERO, Version::V2_1, Api::Getaddrinfo, &kubelet_rc(), &c, Process::default(), 9);
        let (sent, out) = run(&mut e, vec![]);
        assert!(sent.iter().all(|s| s.send.transport == Transport::Udp), "no TCP on the wire");
        assert!(matches!(out, Some(Outcome::Fail(ref e)) if e.contains("TRUNCATED")), "{out:?}");
        assert_eq!(sent.len(), 6, "every search domain, then the truncated name");
        let (sent, out) = run(&mut evdns("big.example.com.", Version::V2_2, &ndots1()), vec![]);
        assert!(sent.iter().any(|s| s.send.transport == Transport::Tcp));
        assert!(out.expect("done").is_ok());
    }

    #[test]
    fn a_trailing_dot_does_not_stop_the_search() {
        let (sent, out) = run(&mut evdns("www.google.com.", Version::V2_1, &kubelet_rc()), vec![]);
        assert!(out.expect("done").is_ok());
        let names = qnames(&sent);
        assert_eq!(names.len(), 12, "{names:?}");
        assert_eq!(names[0], "www.google.com.default.svc.cluster.local.");
        assert_eq!(names[11], "www.google.com.");
        // Three dots meet ndots:2: as it is, first.
        let rc = ResolvConf { ndots: 2, ..kubelet_rc() };
        let (sent, _) = run(&mut evdns("www.google.com.", Version::V2_1, &rc), vec![]);
        assert_eq!(qnames(&sent), ["www.google.com.", "www.google.com."]);
    }

    #[test]
    fn servfail_is_sent_again_at_once_then_ends_the_search() {
        let c = Call { hints: Hints { family: Family::Inet, ..Hints::NULL }, ..call("kubernetes.default", Hints::NULL) };
        let mut e = Evdns::new(Duration::ZERO, Version::V2_1, Api::Getaddrinfo, &kubelet_rc(), &c, Process::default(), 9);
        let rule = crate::client::harness::Rule::ServFail { qname: "kubernetes.default.default.svc.cluster.local.".into(), qtype: 0 };
        let (sent, out) = run(&mut e, vec![rule]);
        assert_eq!(sent.len(), 3, "three sends of the first name, none of the next");
        assert!(sent.iter().all(|s| s.at < Duration::from_millis(10)), "no timeout between them");
        assert!(matches!(out, Some(Outcome::Fail(ref e)) if e.contains("EAI_FAIL (DNS_ERR_TIMEOUT)")), "{out:?}");
    }

    #[test]
    fn each_request_and_each_retransmission_takes_the_next_nameserver() {
        let mut rc = ResolvConf { timeout: 1, ..ndots1() };
        rc.nameservers = vec!["10.0.0.1".parse().expect("ip"), "10.0.0.2".parse().expect("ip"), "10.0.0.3".parse().expect("ip")];
        let rule = crate::client::harness::Rule::Drop { qname: "www.google.com.".into(), qtype: TYPE_A, count: Some(1) };
        let (sent, out) = run(&mut evdns("www.google.com.", Version::V2_1, &rc), vec![rule]);
        assert!(out.expect("done").is_ok());
        let servers: Vec<String> = sent.iter().map(|s| s.send.server.ip().to_string()).collect();
        // A to a, AAAA to c (inserted after the head), A again to b.
        assert_eq!(servers, ["10.0.0.1", "10.0.0.3", "10.0.0.2"]);
    }

    #[test]
    fn a_nameserver_a_request_gave_up_on_is_skipped_by_the_next_requests() {
        let mut rc = ResolvConf { timeout: 1, attempts: 1, attempts_given: true, ..ndots1() };
        rc.nameservers = vec!["10.0.0.1".parse().expect("ip"), "10.0.0.2".parse().expect("ip")];
        let c = Call { hints: Hints { family: Family::Inet, ..Hints::NULL }, ..call("www.google.com.", Hints::NULL) };
        let silent = crate::client::harness::Rule::Silent { server: "10.0.0.1".parse().expect("ip") };
        let mut h = crate::client::harness::Harness::new(&zone(), ".", vec![silent]).expect("harness");
        let mut first = Evdns::new(Duration::ZERO, Version::V2_1, Api::Byname, &rc, &c, Process::default(), 9);
        let (sent, out) = h.run(&mut first, Duration::from_secs(60));
        assert_eq!(out, Some(Outcome::Again), "one send, to the silent nameserver, then DNS_ERR_TIMEOUT");
        assert_eq!(sent.len(), 1);
        // The same base, later: both picks skip 10.0.0.1 while it is down.
        let mut next = Evdns::new(Duration::from_secs(2), Version::V2_1, Api::Byname, &rc, &c, first.process(), 10);
        let (sent, out) = h.run(&mut next, Duration::from_secs(60));
        assert!(out.expect("done").is_ok());
        assert!(sent.iter().all(|s| s.send.server.ip().to_string() == "10.0.0.2"), "{sent:?}");
    }

    #[test]
    fn an_error_starts_the_skew_for_the_other_request() {
        // AAAA is NXDOMAIN-free NODATA for txtonly. and A never answers: the lookup ends 3 s after
        // the AAAA search failed, with its error, not after A's three 5 s timeouts.
        let rc = ResolvConf { search: Vec::new(), ..ndots1() };
        let rule = crate::client::harness::Rule::Drop { qname: "nothing.example.".into(), qtype: TYPE_A, count: None };
        let mut h = crate::client::harness::Harness::new(&zone(), ".", vec![rule]).expect("harness");
        let (sent, out) = h.run(&mut evdns("nothing.example.", Version::V2_1, &rc), Duration::from_secs(60));
        assert_eq!(out, Some(Outcome::NoName));
        assert_eq!(sent.len(), 2, "the skew ends it before A's retransmission at 5 s");
    }

    #[test]
    fn names_go_out_in_random_case_unless_randomize_case_0() {
        let (sent, out) = run(&mut evdns("www.google.com.", Version::V2_1, &ndots1()), vec![]);
        assert!(out.expect("done").is_ok(), "our server answers 0x20 queries");
        assert!(
            sent.iter().any(|s| s.send.qname != s.send.qname.to_ascii_lowercase()),
            "{:?}",
            sent.iter().map(|s| &s.send.qname).collect::<Vec<_>>()
        );
        let mut rc = ndots1();
        rc.randomize_case = Some(false);
        let (sent, _) = run(&mut evdns("www.google.com.", Version::V2_1, &rc), vec![]);
        assert!(sent.iter().all(|s| s.send.qname == "www.google.com."));
    }

    #[test]
    fn both_requests_share_the_bases_socket() {
        let (sent, _) = run(&mut evdns("www.google.com.", Version::V2_1, &ndots1()), vec![]);
        assert_eq!(sent.len(), 2);
        assert!(sent.iter().all(|s| s.send.socket == PROCESS_SOCKET));
    }

    #[test]
    fn versions_as_people_write_them() {
        for (v, want) in [
            ("2.1.12", Version::V2_1),
            ("2.1.12-stable", Version::V2_1),
            ("2.0.22", Version::V2_1),
            ("2.2.1", Version::V2_2),
            ("2.2", Version::V2_2),
        ] {
            assert_eq!(Version::for_version(v), Ok(want), "{v}");
        }
        for v in ["1.4.15", "3.0", "x"] {
            assert!(Version::for_version(v).expect_err(v).contains("the model knows libevent 2.0-2.1"), "{v}");
        }
    }
}
