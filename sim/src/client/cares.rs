//! c-ares (sources.md#c-ares; c-ares ares_gethostbyname.c, ares_search.c, ares_process.c at
//! cares-1_16_0 and HEAD).
//!
//! | | 2020 (1.15/1.16) | 1.17–1.19 (Debian 12: 1.18.1) | 1.2x (1.20–1.30) | current (1.32+) |
//! |---|---|---|---|---|
//! | timeout, tries | 5000 ms, 4; doubles each full round of servers | as 2020 (measured) | 2000 ms, 3; doubles each full round | 3 tries; the dynamic timeout below |
//! | AF_UNSPEC | `ares_gethostbyname`: the whole search for AAAA, then (on ENODATA, EBADRESP, ETIMEOUT) the whole search for A | `ares_getaddrinfo`: A and AAAA together per name (measured) | as 1.17 | as 1.17 |
//! | query cache | — | — | — | on, 3600 s max TTL (since 1.31) |
//!
//! resolv.conf's `timeout:` and `attempts:` are not applied in any era (measured on 1.18.1).
//!
//! - One UDP socket per nameserver for the life of the channel (`ARES_OPT_UDP_MAX_QUERIES` 0 =
//!   unlimited): a process's queries all leave from the same source port. That is what keeps a stale
//!   conntrack or IPVS entry alive (sources.md#stale-udp-conntrack: Envoy).
//! - Search (`ares_search`): like glibc's order; ENODATA, ESERVFAIL and ENOTFOUND go on to the next
//!   name, anything else (a timeout) ends it.
//! - SERVFAIL, NOTIMP and REFUSED answers are discarded and the next server is tried.
//! - TC=1 (or an answer over the packet size) is re-queued over TCP (unless ARES_FLAG_IGNTC).
//! - No 0x20 (ARES_FLAG_DNS0x20 came in 1.32 and is off by default).
//! - Current only (c-ares docs/FEATURES.md, "Dynamic Server Timeout Calculation" and "Query Cache"):
//!   - the timeout of a query to a server is 5 × that server's average latency once it has answered
//!     3 queries, else 2000 ms, bounded to 250–5000 ms, and about doubles each time the query is
//!     re-queued to the same server (kept per process in `Process::cares_latency`; c-ares keeps time
//!     buckets from a minute to a day, the model one average since the channel began);
//!   - every NOERROR answer and every NXDOMAIN with an SOA is cached per (name, type) for its TTL (the
//!     SOA's minimum for negatives), at most 3600 s (`qcache_max_ttl`), in `Process::cares_cache`:
//!     a process asking the same name again sends nothing until it expires. Concurrent lookups of one
//!     process each start from the process state of their start (the last to finish writes it back).

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use resolver::wire::{RCODE_NOERROR, RCODE_NXDOMAIN, TYPE_A, TYPE_AAAA};

use super::{Api, Call, Family, Lookup, Outcome, PROCESS_SOCKET, Process, ResolvConf, Send, Transport, build_query, parse_reply};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// c-ares 1.15/1.16, as pgbouncer ran it in 2020.
    V2020,
    /// c-ares 1.17–1.19 (Debian 12 ships 1.18.1): `ares_getaddrinfo` sends A and AAAA together per
    /// name, 5000 ms and 4 tries doubling each round of servers, resolv.conf's `timeout:` and
    /// `attempts:` not applied [measured: `cargo xtask client-check` on Debian's 1.18.1; the range's
    /// ends by the same code, unverified].
    V2022,
    /// c-ares 1.20–1.30 (2023–mid 2024, what Envoy shipped then): 2 s and 3 tries, the old doubling
    /// timer, no query cache (sources.md#c-ares).
    V2023,
    /// c-ares 1.34.
    Current,
}

impl Era {
    /// The call a program of this era makes: pgbouncer's c-ares backend in 2020 called
    /// `ares_gethostbyname`; later programs (Envoy, Node) `ares_getaddrinfo`.
    pub fn default_api(self) -> Api {
        match self {
            Era::V2020 => Api::Byname,
            Era::V2022 | Era::V2023 | Era::Current => Api::Getaddrinfo,
        }
    }

    /// The behaviour of a c-ares release as people write it (`1.18.1`, `1.28`, `1.34.5`), or the
    /// era names `2020` and `current`.
    pub fn for_version(v: &str) -> Result<Era, String> {
        let known = "c-ares 1.15-1.19, 1.20-1.30 or 1.32 and later (or 2020, current)";
        match v {
            "2020" => return Ok(Era::V2020),
            "current" => return Ok(Era::Current),
            "1.2x" => return Ok(Era::V2023),
            _ => {}
        }
        let parts: Vec<u16> = v
            .split('.')
            .map(|p| p.parse::<u16>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("c-ares version `{v}`: expected a release such as 1.18.1; the model knows {known}"))?;
        match (parts.first(), parts.get(1)) {
            (Some(1), Some(15 | 16)) => Ok(Era::V2020),
            (Some(1), Some(17..=19)) => Ok(Era::V2022),
            (Some(1), Some(20..=30)) => Ok(Era::V2023),
            (Some(1), Some(&m)) if m >= 32 => Ok(Era::Current),
            _ => Err(format!("c-ares version `{v}`: not modelled; the model knows {known}")),
        }
    }
}

#[derive(Debug, Clone)]
struct Query {
    qtype: u16,
    id: u16,
    try_count: u32,
    transport: Transport,
    deadline: Duration,
    sent_at: Duration,
    reply: Option<super::Reply>,
    /// A try of this query timed out (c-ares' `error_status` becomes ETIMEOUT; it starts as
    /// ECONNREFUSED and a discarded SERVFAIL leaves it).
    timed_out: bool,
    /// The server of the first try (with `rotate`, the channel's next one).
    first: u32,
}

/// `qcache_max_ttl` default (c-ares docs/FEATURES.md).
const QCACHE_MAX_TTL: u32 = 3600;
/// The dynamic timeout's bounds and default (c-ares docs/FEATURES.md).
const MIN_TIMEOUT: Duration = Duration::from_millis(250);
const MAX_TIMEOUT: Duration = Duration::from_millis(5000);

pub struct CAres {
    era: Era,
    /// `ares_gethostbyname(AF_UNSPEC)` from 1.17: one family of the sorted getaddrinfo result.
    one_family: Option<Family>,
    /// `rotate` (ARES_OPT_ROTATE, read from resolv.conf): each query starts at the channel's next
    /// server (`last_server`, kept in `Process::rotate`).
    rotate: bool,
    servers: Vec<SocketAddr>,
    names: Vec<String>,
    as_is_first: bool,
    /// The query types of the current phase (2020 AF_UNSPEC: AAAA first, then A).
    phases: Vec<Vec<u16>>,
    phase: usize,
    idx: usize,
    timeout: Duration,
    tries: u32,
    queries: Vec<Query>,
    got_nodata: bool,
    sends: VecDeque<Send>,
    rng: fastrand::Rng,
    result: Option<Outcome>,
    process: Process,
}

impl CAres {
    pub fn new(now: Duration, era: Era, api: Api, rc: &ResolvConf, call: &Call, process: Process, seed: u64) -> CAres {
        let (names, _, as_is_first) = super::glibc::names(super::glibc::Version::CURRENT, rc, &call.name);
        let phases = match (call.hints.family, api, era) {
            (Family::Inet, _, _) => vec![vec![TYPE_A]],
            (Family::Inet6, _, _) => vec![vec![TYPE_AAAA]],
            (Family::Unspec, Api::Byname, Era::V2020) => vec![vec![TYPE_AAAA], vec![TYPE_A]],
            (Family::Unspec, _, _) => vec![vec![TYPE_A, TYPE_AAAA]],
        };
        let (timeout, tries) = match era {
            Era::V2020 | Era::V2022 => (Duration::from_millis(5000), 4),
            Era::V2023 | Era::Current => (Duration::from_millis(2000), 3),
        };
        // ares_gethostbyname keeps the family of the first address of ares_getaddrinfo's
        // RFC 6724-sorted list (ares__addrinfo2hostent): IPv4 unless the pod can reach IPv6
        // (a global IPv6 address), as IPv6 sorts first only by precedence [measured on 1.18.1].
        let one_family = match (call.hints.family, api, era) {
            (Family::Unspec, Api::Byname, Era::V2022 | Era::V2023 | Era::Current) => {
                Some(if call.pod.has_global_v6() || !call.pod.has_v4() { Family::Inet6 } else { Family::Inet })
            }
            _ => None,
        };
        let mut c = CAres {
            era,
            one_family,
            rotate: rc.rotate,
            servers: rc.servers(3),
            names,
            as_is_first,
            phases,
            phase: 0,
            idx: 0,
            timeout,
            tries,
            queries: Vec::new(),
            got_nodata: false,
            sends: VecDeque::new(),
            rng: fastrand::Rng::with_seed(seed),
            result: None,
            process,
        };
        c.start_name(now);
        c
    }

    fn start_name(&mut self, now: Duration) {
        let qtypes = self.phases[self.phase].clone();
        let name = resolver::wire::name_from_str(&self.names[self.idx]).unwrap_or_default();
        self.queries = qtypes
            .into_iter()
            .map(|qtype| {
                // The query cache answers without a packet while the entry lives.
                let cached = match self.era {
                    Era::Current => {
                        self.process.cares_cache.get(&(name.clone(), qtype)).filter(|(exp, _)| *exp > now).map(|(_, r)| r.clone())
                    }
                    Era::V2020 | Era::V2022 | Era::V2023 => None,
                };
                Query {
                    qtype,
                    id: self.rng.u16(..),
                    try_count: 0,
                    transport: Transport::Udp,
                    deadline: now,
                    sent_at: now,
                    reply: cached,
                    timed_out: false,
                    first: 0,
                }
            })
            .collect();
        for i in 0..self.queries.len() {
            if self.queries[i].reply.is_none() {
                if self.rotate {
                    self.queries[i].first = (self.process.rotate % self.servers.len()) as u32;
                    self.process.rotate = self.process.rotate.wrapping_add(1);
                }
                self.send(now, i);
            }
        }
        if self.queries.iter().all(|q| q.reply.is_some()) {
            self.judge(now);
        }
    }

    /// The current era's timeout for try `try_count` of a query to `server`.
    fn timeout_for(&self, server: SocketAddr, try_count: u32) -> Duration {
        let n = self.servers.len() as u32;
        match self.era {
            // ares__send_query: timeplus = timeout << (try_count / nservers) before 1.32.
            Era::V2020 | Era::V2022 | Era::V2023 => self.timeout * (1 << (try_count / n).min(8)),
            Era::Current => {
                let base = match self.process.cares_latency.get(&server) {
                    Some(&(answers, total)) if answers >= 3 => total / answers * 5,
                    _ => self.timeout,
                };
                (base.clamp(MIN_TIMEOUT, MAX_TIMEOUT) * (1 << (try_count / n).min(8))).min(MAX_TIMEOUT)
            }
        }
    }

    fn send(&mut self, now: Duration, i: usize) {
        let n = self.servers.len() as u32;
        let server = ((self.queries[i].first + self.queries[i].try_count) % n) as usize;
        let timeout = self.timeout_for(self.servers[server], self.queries[i].try_count);
        let q = &mut self.queries[i];
        q.deadline = now + timeout;
        q.sent_at = now;
        // The channel's long-lived socket to this server (one per server, per transport).
        let socket = PROCESS_SOCKET + server as u32 + if q.transport == Transport::Tcp { 100 } else { 0 };
        let name = self.names[self.idx].clone();
        self.process.queries_sent += 1;
        let payload = build_query(q.id, &name, q.qtype, None);
        self.sends.push_back(Send {
            socket,
            transport: q.transport,
            server: self.servers[server],
            qname: name,
            qtype: q.qtype,
            edns: None,
            payload,
        });
    }

    /// A try failed (timeout or a discarded rcode): the next server, or the query's error when tries
    /// run out: ETIMEOUT, or on 1.17–1.19 ECONNREFUSED when no try timed out (every server answered
    /// SERVFAIL, NOTIMP or REFUSED), which also ends the search [measured on 1.18.1; other eras keep
    /// ETIMEOUT, unverified].
    fn next_try(&mut self, now: Duration, i: usize, timed_out: bool) {
        self.queries[i].try_count += 1;
        self.queries[i].timed_out |= timed_out;
        if self.queries[i].try_count >= self.tries * self.servers.len() as u32 {
            let err = if self.era == Era::V2022 && !self.queries[i].timed_out {
                Outcome::Fail("ARES_ECONNREFUSED".into())
            } else {
                Outcome::Again
            };
            return self.end(now, err);
        }
        self.send(now, i);
    }

    fn end(&mut self, now: Duration, err: Outcome) {
        // 2020 AF_UNSPEC: an AAAA search that found nothing, or timed out, becomes an A search.
        if self.era == Era::V2020 && self.phase + 1 < self.phases.len() && matches!(err, Outcome::NoData | Outcome::Again) {
            self.phase += 1;
            self.idx = 0;
            self.got_nodata = false;
            return self.start_name(now);
        }
        self.queries.clear();
        self.result = Some(err);
    }

    fn judge(&mut self, now: Duration) {
        let replies: Vec<&super::Reply> = self.queries.iter().filter_map(|q| q.reply.as_ref()).collect();
        let mut addrs: Vec<IpAddr> = replies.iter().filter(|r| r.rcode == RCODE_NOERROR).flat_map(|r| r.addrs.iter().copied()).collect();
        if let Some(first) = self.one_family {
            let preferred: Vec<IpAddr> = addrs.iter().copied().filter(|a| a.is_ipv6() == (first == Family::Inet6)).collect();
            if !preferred.is_empty() {
                addrs = preferred;
            } else {
                addrs.retain(|a| a.is_ipv6() != (first == Family::Inet6));
            }
        }
        if !addrs.is_empty() {
            self.queries.clear();
            self.result = Some(Outcome::Addrs(addrs));
            return;
        }
        if replies.iter().any(|r| r.rcode == RCODE_NOERROR) {
            self.got_nodata = true;
        }
        // ENODATA and ENOTFOUND: the next name of the search.
        let mut next = self.idx + 1;
        if self.as_is_first && next == 0 {
            next += 1;
        }
        if next < self.names.len() {
            self.idx = next;
            return self.start_name(now);
        }
        let err = if self.got_nodata { Outcome::NoData } else { Outcome::NoName };
        self.end(now, err);
    }
}

impl Lookup for CAres {
    fn handle_answer(&mut self, now: Duration, socket: u32, transport: Transport, msg: &[u8]) {
        if self.result.is_some() || socket < PROCESS_SOCKET {
            return;
        }
        let Some(reply) = parse_reply(msg) else { return };
        let name = self.names[self.idx].as_str();
        let Some(i) = self.queries.iter().position(|q| {
            q.reply.is_none()
                && q.transport == transport
                && q.id == reply.id
                && q.qtype == reply.qtype
                && super::qname_is(&reply.qname_lower, name)
        }) else {
            return;
        };
        if reply.tc && transport == Transport::Udp {
            // Re-queued over TCP to the same server.
            self.queries[i].transport = Transport::Tcp;
            return self.send(now, i);
        }
        if reply.rcode != RCODE_NOERROR && reply.rcode != RCODE_NXDOMAIN {
            // SERVFAIL, NOTIMP, REFUSED: discarded; the next server.
            return self.next_try(now, i, false);
        }
        if self.era == Era::Current {
            let q = &self.queries[i];
            let server = self.servers[((q.first + q.try_count) % self.servers.len() as u32) as usize];
            let m = self.process.cares_latency.entry(server).or_insert((0, Duration::ZERO));
            *m = (m.0 + 1, m.1 + now.saturating_sub(q.sent_at));
            let ttl = match reply.rcode {
                RCODE_NOERROR if !reply.addrs.is_empty() || reply.ancount > 0 => reply.ttl,
                _ => reply.negative_ttl,
            };
            if let Some(ttl) = ttl.map(|t| t.min(QCACHE_MAX_TTL)).filter(|&t| t > 0) {
                let key = (reply.qname_lower.clone(), reply.qtype);
                self.process.cares_cache.insert(key, (now + Duration::from_secs(u64::from(ttl)), reply.clone()));
            }
        }
        self.queries[i].reply = Some(reply);
        if self.queries.iter().all(|q| q.reply.is_some()) {
            self.judge(now);
        }
    }

    fn handle_refused(&mut self, now: Duration, _socket: u32) {
        if let Some(i) = self.queries.iter().position(|q| q.reply.is_none()) {
            self.next_try(now, i, false);
        }
    }

    fn handle_timeout(&mut self, now: Duration) {
        while self.result.is_none() {
            let Some(i) = self.queries.iter().position(|q| q.reply.is_none() && q.deadline <= now) else { break };
            self.next_try(now, i, true);
        }
    }

    fn poll_send(&mut self) -> Option<Send> {
        self.sends.pop_front()
    }

    fn poll_timeout(&self) -> Option<Duration> {
        self.queries.iter().filter(|q| q.reply.is_none()).map(|q| q.deadline).min()
    }

    fn poll_closed(&mut self) -> Option<u32> {
        // The channel's sockets outlive the lookup.
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
    #[test]
    fn versions_as_people_write_them_map_to_eras() {
        for (v, era) in [
            ("1.16.1", Era::V2020),
            ("1.18.1", Era::V2022),
            ("1.19", Era::V2022),
            ("1.28.1", Era::V2023),
            ("1.34.5", Era::Current),
            ("2020", Era::V2020),
            ("current", Era::Current),
        ] {
            assert_eq!(Era::for_version(v), Ok(era), "{v}");
        }
        for v in ["1.31.0", "1.14", "2.0", "x"] {
            let e = Era::for_version(v).expect_err(v);
            assert!(e.contains("the model knows c-ares 1.15-1.19"), "{e}");
        }
    }

    use super::*;
    use crate::client::Hints;
    use crate::client::fixtures::*;
    use crate::client::harness::Rule;

    #[test]
    fn every_query_leaves_from_the_channels_one_socket() {
        let mut c = CAres::new(
            Duration::ZERO,
            Era::Current,
            Era::Current.default_api(),
            &kubelet_rc(),
            &call("www.google.com", Hints::NULL),
            Process::default(),
            1,
        );
        let (sent, out) = run(&mut c, vec![]);
        assert_eq!(sent.len(), 12);
        assert!(sent.iter().all(|s| s.send.socket == PROCESS_SOCKET));
        assert!(out.expect("done").is_ok());
    }

    #[test]
    fn the_2020_unspec_lookup_searches_aaaa_then_a() {
        // A name with A records only: the AAAA search ends in ENODATA, then the A search.
        let mut c = CAres::new(
            Duration::ZERO,
            Era::V2020,
            Era::V2020.default_api(),
            &kubelet_rc(),
            &call("big.example.com", Hints::NULL),
            Process::default(),
            1,
        );
        let (sent, out) = run(&mut c, vec![]);
        let types: Vec<u16> = sent.iter().filter(|s| s.send.transport == Transport::Udp).map(|s| s.send.qtype).collect();
        assert!(types[..6].iter().all(|&t| t == TYPE_AAAA), "{types:?}");
        assert!(types[6..].iter().all(|&t| t == TYPE_A), "{types:?}");
        assert!(sent.iter().any(|s| s.send.transport == Transport::Tcp), "TC=1 re-queued over TCP");
        assert!(matches!(out, Some(Outcome::Addrs(ref a)) if a.len() == 100));
    }

    #[test]
    fn timeouts_double_each_round_in_2020_and_stay_at_2s_now() {
        let drop = || vec![Rule::Drop { qname: "www.google.com.".into(), qtype: 0, count: None }];
        let mut old = CAres::new(
            Duration::ZERO,
            Era::V2020,
            Api::Byname,
            &kubelet_rc(),
            &call("www.google.com.", Hints { family: Family::Inet, ..Hints::NULL }),
            Process::default(),
            1,
        );
        let (sent, out) = run(&mut old, drop());
        let times: Vec<u64> = sent.iter().map(|s| s.at.as_secs()).collect();
        assert_eq!(times, [0, 5, 15, 35], "5 s << try (one server), 4 tries");
        assert_eq!(out, Some(Outcome::Again));
        let mut new = CAres::new(
            Duration::ZERO,
            Era::Current,
            Api::Getaddrinfo,
            &kubelet_rc(),
            &call("www.google.com.", Hints { family: Family::Inet, ..Hints::NULL }),
            Process::default(),
            1,
        );
        let (sent, _) = run(&mut new, drop());
        assert_eq!(sent.iter().map(|s| s.at.as_millis()).collect::<Vec<_>>(), [0, 2000, 6000], "2 s, then about double");
    }

    #[test]
    fn the_current_channel_caches_answers_and_learns_its_servers_latency() {
        let c = call("www.google.com.", Hints::NULL);
        let mut h = crate::client::harness::Harness::new(&zone(), ".", vec![]).expect("harness");
        let mut first = CAres::new(Duration::ZERO, Era::Current, Era::Current.default_api(), &kubelet_rc(), &c, Process::default(), 1);
        let (sent, out) = h.run(&mut first, Duration::from_secs(60));
        assert_eq!(sent.len(), 2);
        assert!(out.expect("done").is_ok());
        let process = first.process();
        assert_eq!(process.cares_cache.len(), 2, "A and AAAA cached");
        // Within the TTL (300 s) the same lookup sends nothing.
        let mut again =
            CAres::new(Duration::from_secs(100), Era::Current, Era::Current.default_api(), &kubelet_rc(), &c, process.clone(), 2);
        assert!(again.poll_send().is_none());
        assert!(again.result().expect("answered from the cache").is_ok());
        // After it, the name goes on the wire again; the 2020 channel never caches.
        let mut later =
            CAres::new(Duration::from_secs(301), Era::Current, Era::Current.default_api(), &kubelet_rc(), &c, process.clone(), 3);
        assert!(later.poll_send().is_some());
        let mut old = CAres::new(Duration::from_secs(100), Era::V2020, Era::V2020.default_api(), &kubelet_rc(), &c, process, 4);
        assert!(old.poll_send().is_some());
        // Three answers at 2 ms each: the timeout becomes 5 × 2 ms, raised to the 250 ms floor.
        let mut p = Process::default();
        p.cares_latency.insert("10.96.0.10:53".parse().expect("addr"), (3, Duration::from_millis(6)));
        let c4 = call("nothere.example.", Hints { family: Family::Inet, ..Hints::NULL });
        let mut fast = CAres::new(Duration::ZERO, Era::Current, Era::Current.default_api(), &kubelet_rc(), &c4, p, 5);
        let drop = vec![Rule::Drop { qname: "nothere.example.".into(), qtype: 0, count: None }];
        let mut h = crate::client::harness::Harness::new(&zone(), ".", drop).expect("harness");
        let (sent, _) = h.run(&mut fast, Duration::from_secs(60));
        assert_eq!(sent.iter().map(|s| s.at.as_millis()).collect::<Vec<_>>(), [0, 250, 750]);
    }
}
