//! libevent's evdns, pgbouncer's "evdns2" backend (sources.md#evdns; libevent evdns.c at
//! release-2.1.12-stable and HEAD).
//!
//! - Defaults (2.1.12 `evdns_base_new`): timeout 5 s; `attempts:` sets max_retransmits (default 3);
//!   `randomize-case` on: every query name gets DNS 0x20 random case, unless `options randomize-case:0`.
//! - `evdns_getaddrinfo(AF_UNSPEC)`: A and AAAA as two independent search requests; once one has
//!   addresses the other gets `getaddrinfo-allow-skew` (3 s) more.
//! - Search like glibc's order; NXDOMAIN and errors that reach the default case (including a
//!   truncated reply) try the next search domain; a timeout ends the request.
//! - **TC=1 in 2.1.x is DNS_ERR_TRUNCATED ("reply truncated or ill-formed"): no TCP retry.** TCP came
//!   with commit 0f6ee89a in 2.2.1-alpha.
//! - SERVFAIL is ignored ("will allow the request to time out"); NOTIMP and REFUSED reissue once.
//! - One UDP socket per nameserver for the life of the base.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use resolver::wire::{RCODE_NOERROR, RCODE_NOTIMP, RCODE_NXDOMAIN, RCODE_REFUSED, RCODE_SERVFAIL, TYPE_A, TYPE_AAAA};

use super::{Call, Family, Lookup, Outcome, PROCESS_SOCKET, Process, ResolvConf, Send, Transport, build_query, parse_reply};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    /// 2.1.12-stable: no TCP.
    V2_1,
    /// 2.2: TCP on TC=1.
    V2_2,
}

/// getaddrinfo-allow-skew.
const ALLOW_SKEW: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
struct Request {
    qtype: u16,
    idx: usize,
    id: u16,
    qname: String,
    transmits: u32,
    reissued: bool,
    transport: Transport,
    deadline: Duration,
    done: Option<Result<Vec<IpAddr>, Outcome>>,
}

pub struct Evdns {
    version: Version,
    servers: Vec<SocketAddr>,
    names: Vec<String>,
    timeout: Duration,
    max_retransmits: u32,
    randomize_case: bool,
    reqs: Vec<Request>,
    skew_deadline: Option<Duration>,
    sends: VecDeque<Send>,
    rng: fastrand::Rng,
    result: Option<Outcome>,
    process: Process,
}

impl Evdns {
    pub fn new(now: Duration, version: Version, rc: &ResolvConf, call: &Call, process: Process, seed: u64) -> Evdns {
        let (names, _, _) = super::glibc::names(super::glibc::Version::CURRENT, rc, &call.name);
        let qtypes = match call.hints.family {
            Family::Inet => vec![TYPE_A],
            Family::Inet6 => vec![TYPE_AAAA],
            Family::Unspec => vec![TYPE_A, TYPE_AAAA],
        };
        let mut e = Evdns {
            version,
            servers: rc.servers(3),
            names,
            timeout: Duration::from_secs(u64::from(rc.timeout.max(1))),
            max_retransmits: if rc.attempts == ResolvConf::default().attempts { 3 } else { rc.attempts },
            randomize_case: rc.randomize_case.unwrap_or(true),
            reqs: Vec::new(),
            skew_deadline: None,
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
                reissued: false,
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
        self.transmit(now, i);
    }

    fn transmit(&mut self, now: Duration, i: usize) {
        let r = &mut self.reqs[i];
        r.deadline = now + self.timeout;
        let server = (r.transmits as usize + usize::from(r.reissued)) % self.servers.len();
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

    /// The request's current name failed in the default case: the next search name, or the error.
    fn next_name(&mut self, now: Duration, i: usize, err: Outcome) {
        let r = &mut self.reqs[i];
        if r.idx + 1 < self.names.len() {
            r.idx += 1;
            r.reissued = false;
            r.transport = Transport::Udp;
            return self.issue(now, i);
        }
        self.finish(now, i, Err(err));
    }

    fn finish(&mut self, now: Duration, i: usize, r: Result<Vec<IpAddr>, Outcome>) {
        if r.as_ref().is_ok_and(|a| !a.is_empty()) && self.skew_deadline.is_none() {
            self.skew_deadline = Some(now + ALLOW_SKEW);
        }
        self.reqs[i].done = Some(r);
        self.settle(now);
    }

    /// getaddrinfo returns when every request is done, or the skew has passed after an answer.
    fn settle(&mut self, now: Duration) {
        let all_done = self.reqs.iter().all(|r| r.done.is_some());
        let skew_over = self.skew_deadline.is_some_and(|d| now >= d);
        if !(all_done || skew_over) {
            return;
        }
        let addrs: Vec<IpAddr> = self.reqs.iter().filter_map(|r| r.done.as_ref()?.as_ref().ok()).flatten().copied().collect();
        self.result = Some(if !addrs.is_empty() {
            Outcome::Addrs(addrs)
        } else {
            self.reqs.iter().find_map(|r| r.done.clone()?.err()).unwrap_or(Outcome::NoName)
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
        if reply.tc && transport == Transport::Udp {
            if self.version >= Version::V2_2 {
                self.reqs[i].transport = Transport::Tcp;
                return self.transmit(now, i);
            }
            // 2.1: DNS_ERR_TRUNCATED, the default case: the next search domain, else the error.
            return self.next_name(now, i, Outcome::Fail("DNS_ERR_TRUNCATED: reply truncated or ill-formed".into()));
        }
        match reply.rcode {
            RCODE_NOERROR => {
                let addrs = reply.addrs.clone();
                if addrs.is_empty() {
                    // NODATA: the default case too, next search name.
                    self.next_name(now, i, Outcome::NoData)
                } else {
                    self.finish(now, i, Ok(addrs))
                }
            }
            RCODE_NXDOMAIN => self.next_name(now, i, Outcome::NoName),
            // "will allow the request to time out".
            RCODE_SERVFAIL => {}
            RCODE_NOTIMP | RCODE_REFUSED if !self.reqs[i].reissued => {
                self.reqs[i].reissued = true;
                self.transmit(now, i);
            }
            _ => self.next_name(now, i, Outcome::Fail(format!("rcode {}", reply.rcode))),
        }
    }

    fn handle_refused(&mut self, _now: Duration, _socket: u32) {}

    fn handle_timeout(&mut self, now: Duration) {
        if self.skew_deadline.is_some_and(|d| now >= d) {
            self.settle(now);
        }
        while self.result.is_none() {
            let Some(i) = self.reqs.iter().position(|r| r.done.is_none() && r.deadline <= now) else { break };
            self.reqs[i].transmits += 1;
            if self.reqs[i].transmits > self.max_retransmits {
                self.finish(now, i, Err(Outcome::Again));
            } else {
                self.transmit(now, i);
            }
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
        Evdns::new(Duration::ZERO, v, rc, &call(name, Hints::NULL), Process::default(), 9)
    }

    #[test]
    fn a_truncated_answer_is_an_error_in_2_1_and_never_goes_to_tcp() {
        let (sent, out) = run(&mut evdns("big.example.com.", Version::V2_1, &kubelet_rc()), vec![]);
        assert!(sent.iter().all(|s| s.send.transport == Transport::Udp), "no TCP on the wire");
        assert!(matches!(out, Some(Outcome::Fail(ref e)) if e.contains("TRUNCATED")), "{out:?}");
        let (sent, out) = run(&mut evdns("big.example.com.", Version::V2_2, &kubelet_rc()), vec![]);
        assert!(sent.iter().any(|s| s.send.transport == Transport::Tcp));
        assert!(out.expect("done").is_ok());
    }

    #[test]
    fn names_go_out_in_random_case_unless_randomize_case_0() {
        let (sent, out) = run(&mut evdns("www.google.com.", Version::V2_1, &kubelet_rc()), vec![]);
        assert!(out.expect("done").is_ok(), "our server answers 0x20 queries");
        assert!(
            sent.iter().any(|s| s.send.qname != s.send.qname.to_ascii_lowercase()),
            "{:?}",
            sent.iter().map(|s| &s.send.qname).collect::<Vec<_>>()
        );
        let mut rc = kubelet_rc();
        rc.randomize_case = Some(false);
        let (sent, _) = run(&mut evdns("www.google.com.", Version::V2_1, &rc), vec![]);
        assert!(sent.iter().all(|s| s.send.qname == "www.google.com."));
    }

    #[test]
    fn both_requests_share_the_bases_socket() {
        let (sent, _) = run(&mut evdns("www.google.com.", Version::V2_1, &kubelet_rc()), vec![]);
        assert_eq!(sent.len(), 2);
        assert!(sent.iter().all(|s| s.send.socket == PROCESS_SOCKET));
    }
}
