//! Go's native ("go") resolver (sources.md#go-native; golang/go src/net/dnsclient_unix.go, dnsconfig.go).
//!
//! - Names (`nameList`): a rooted name alone; with dots ≥ ndots the name first, then each search
//!   suffix, then the name last if not tried first. Names over 254 octets are dropped.
//! - Per name, A and AAAA are asked concurrently (one goroutine each; `single-request` and
//!   `single-request-reopen` make them sequential); the next name is tried when neither gave
//!   addresses, **whatever the error**, timeouts included (unless StrictErrors).
//! - `tryOneName`: attempts × servers exchanges, **each on a new socket** (so A and AAAA never share
//!   a 5-tuple: immune to the same-socket conntrack race), `timeout` per exchange.
//! - EDNS0 1232 bytes (`maxDNSPacketSize`) on UDP and TCP alike; TC=1 is retried over TCP; `use-vc` is
//!   TCP only.
//! - NXDOMAIN ends the name (no other server); SERVFAIL tries the next server.
//! - `net.Dial("tcp4")` / network "ip4" asks A only; "ip" and "tcp" always ask both.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use resolver::wire::{RCODE_NOERROR, RCODE_NXDOMAIN, TYPE_A, TYPE_AAAA};

use super::{Call, Family, Lookup, Outcome, Process, ResolvConf, Send, Transport, build_query, parse_reply};

/// EDNS0 size Go advertises (dnsflagday.net/2020).
pub const MAX_DNS_PACKET: u16 = 1232;

pub fn names(rc: &ResolvConf, name: &str) -> Vec<String> {
    let bare = name.trim_end_matches('.');
    if name.ends_with('.') {
        return vec![format!("{bare}.")];
    }
    let long = |n: &String| n.len() > 254;
    let dots = bare.matches('.').count() as u32;
    let mut out = Vec::new();
    let first = dots >= rc.ndots.min(15);
    if first {
        out.push(format!("{bare}."));
    }
    for d in &rc.search {
        out.push(format!("{bare}.{d}."));
    }
    if !first {
        out.push(format!("{bare}."));
    }
    out.retain(|n| !long(n));
    out
}

/// One query type's `tryOneName` in progress.
#[derive(Debug, Clone)]
struct Lane {
    qtype: u16,
    /// Exchange number: attempt × servers + server.
    exchange: u32,
    socket: u32,
    transport: Transport,
    id: u16,
    deadline: Duration,
    done: Option<LaneResult>,
    started: bool,
    /// The first server of this lane's `tryOneName` (`serverOffset`, with `rotate`).
    offset: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LaneResult {
    Addrs(Vec<IpAddr>),
    NoData,
    NxDomain,
    Failed,
}

pub struct Go {
    servers: Vec<SocketAddr>,
    names: Vec<String>,
    idx: usize,
    qtypes: Vec<u16>,
    sequential: bool,
    use_tcp: bool,
    timeout: Duration,
    attempts: u32,
    lanes: Vec<Lane>,
    next_socket: u32,
    nxdomain_all: bool,
    sends: VecDeque<Send>,
    closed: VecDeque<u32>,
    rng: fastrand::Rng,
    /// `rotate`: each `tryOneName` (a lane of a name) starts one server further (`dnsConfig.soffset`).
    rotate: bool,
    soffset: usize,
    result: Option<Outcome>,
}

impl Go {
    pub fn new(now: Duration, rc: &ResolvConf, call: &Call, process: Process, seed: u64) -> Go {
        let qtypes = match call.hints.family {
            Family::Inet => vec![TYPE_A],
            Family::Inet6 => vec![TYPE_AAAA],
            Family::Unspec => vec![TYPE_A, TYPE_AAAA],
        };
        let mut g = Go {
            servers: rc.servers(3),
            names: names(rc, &call.name),
            idx: 0,
            qtypes,
            sequential: rc.single_request || rc.single_request_reopen,
            use_tcp: rc.use_vc,
            timeout: Duration::from_secs(u64::from(rc.timeout.max(1))),
            attempts: rc.attempts.max(1),
            lanes: Vec::new(),
            next_socket: 0,
            nxdomain_all: true,
            sends: VecDeque::new(),
            closed: VecDeque::new(),
            rng: fastrand::Rng::with_seed(seed),
            rotate: rc.rotate,
            soffset: process.rotate,
            result: None,
        };
        if g.names.is_empty() {
            g.result = Some(Outcome::NoName);
        } else {
            g.start_name(now);
        }
        g
    }

    fn start_name(&mut self, now: Duration) {
        self.lanes = self
            .qtypes
            .iter()
            .map(|&qtype| Lane {
                qtype,
                exchange: 0,
                socket: 0,
                transport: Transport::Udp,
                id: 0,
                deadline: now,
                done: None,
                started: false,
                offset: 0,
            })
            .collect();
        let n = if self.sequential { 1 } else { self.lanes.len() };
        for i in 0..n {
            self.exchange(now, i, false);
        }
    }

    /// A new exchange for lane `i` on a new socket (`r.exchange` dials each time).
    fn exchange(&mut self, now: Duration, i: usize, tcp: bool) {
        let socket = self.next_socket;
        self.next_socket += 1;
        if !self.lanes[i].started && self.rotate {
            self.lanes[i].offset = self.soffset;
            self.soffset = self.soffset.wrapping_add(1);
        }
        let server = self.servers[(self.lanes[i].offset + self.lanes[i].exchange as usize) % self.servers.len()];
        let name = self.names[self.idx].clone();
        let id = self.rng.u16(..);
        let transport = if tcp || self.use_tcp { Transport::Tcp } else { Transport::Udp };
        let lane = &mut self.lanes[i];
        if lane.started {
            self.closed.push_back(lane.socket);
        }
        lane.started = true;
        lane.socket = socket;
        lane.transport = transport;
        lane.id = id;
        lane.deadline = now + self.timeout;
        // newRequest adds the OPT record whatever the transport (seen on the wire from Go 1.19 over TCP
        // by `cargo xtask client-check`).
        let edns = Some(MAX_DNS_PACKET);
        let payload = build_query(id, &name, lane.qtype, edns);
        self.sends.push_back(Send { socket, transport, server, qname: name, qtype: lane.qtype, edns, payload });
    }

    /// The current exchange of lane `i` failed: the next server or attempt, or the lane fails.
    fn next_exchange(&mut self, now: Duration, i: usize) {
        self.lanes[i].exchange += 1;
        if self.lanes[i].exchange >= self.attempts * self.servers.len() as u32 {
            self.lane_done(now, i, LaneResult::Failed);
        } else {
            self.exchange(now, i, false);
        }
    }

    fn lane_done(&mut self, now: Duration, i: usize, r: LaneResult) {
        self.closed.push_back(self.lanes[i].socket);
        if r != LaneResult::NxDomain {
            self.nxdomain_all = false;
        }
        self.lanes[i].done = Some(r);
        if self.sequential
            && let Some(next) = self.lanes.iter().position(|l| !l.started)
        {
            return self.exchange(now, next, false);
        }
        if self.lanes.iter().all(|l| l.done.is_some()) {
            let addrs: Vec<IpAddr> = self
                .lanes
                .iter()
                .flat_map(|l| match &l.done {
                    Some(LaneResult::Addrs(a)) => a.clone(),
                    _ => Vec::new(),
                })
                .collect();
            if !addrs.is_empty() {
                self.result = Some(Outcome::Addrs(addrs));
                return;
            }
            // Any error: on to the next name.
            self.idx += 1;
            if self.idx < self.names.len() {
                return self.start_name(now);
            }
            self.result = Some(if self.nxdomain_all {
                Outcome::NoName
            } else if self.lanes.iter().any(|l| l.done == Some(LaneResult::Failed)) {
                Outcome::Again
            } else {
                Outcome::NoData
            });
        }
    }
}

impl Lookup for Go {
    fn handle_answer(&mut self, now: Duration, socket: u32, transport: Transport, msg: &[u8]) {
        if self.result.is_some() {
            return;
        }
        let Some(i) = self.lanes.iter().position(|l| l.done.is_none() && l.started && l.socket == socket && l.transport == transport)
        else {
            return;
        };
        let Some(reply) = parse_reply(msg) else { return };
        let name = self.names[self.idx].as_str();
        if reply.id != self.lanes[i].id || reply.qtype != self.lanes[i].qtype || !super::qname_is(&reply.qname_lower, name) {
            return;
        }
        if reply.tc && transport == Transport::Udp {
            return self.exchange(now, i, true);
        }
        match reply.rcode {
            RCODE_NOERROR if reply.addrs.is_empty() => self.lane_done(now, i, LaneResult::NoData),
            RCODE_NOERROR => self.lane_done(now, i, LaneResult::Addrs(reply.addrs)),
            RCODE_NXDOMAIN => self.lane_done(now, i, LaneResult::NxDomain),
            // SERVFAIL and the rest: temporary, next server.
            _ => self.next_exchange(now, i),
        }
    }

    fn handle_refused(&mut self, now: Duration, socket: u32) {
        if let Some(i) = self.lanes.iter().position(|l| l.done.is_none() && l.socket == socket) {
            self.next_exchange(now, i);
        }
    }

    fn handle_timeout(&mut self, now: Duration) {
        if self.result.is_some() {
            return;
        }
        let due: Vec<usize> = (0..self.lanes.len())
            .filter(|&i| self.lanes[i].started && self.lanes[i].done.is_none() && self.lanes[i].deadline <= now)
            .collect();
        for i in due {
            if self.result.is_none() && self.lanes.get(i).is_some_and(|l| l.done.is_none()) {
                self.next_exchange(now, i);
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
        self.lanes.iter().filter(|l| l.started && l.done.is_none()).map(|l| l.deadline).min()
    }

    fn poll_closed(&mut self) -> Option<u32> {
        self.closed.pop_front()
    }

    fn result(&self) -> Option<&Outcome> {
        self.result.as_ref()
    }

    fn process(&self) -> Process {
        Process { rotate: self.soffset, ..Process::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Hints;
    use crate::client::fixtures::*;
    use crate::client::harness::Rule;

    fn go(name: &str, hints: Hints, rc: &ResolvConf) -> Go {
        Go::new(Duration::ZERO, rc, &call(name, hints), Process::default(), 5)
    }

    #[test]
    fn twelve_queries_on_twelve_sockets_with_edns_1232() {
        let (sent, out) = run(&mut go("www.google.com", Hints::NULL, &kubelet_rc()), vec![]);
        assert_eq!(sent.len(), 12);
        let sockets: std::collections::BTreeSet<u32> = sent.iter().map(|s| s.send.socket).collect();
        assert_eq!(sockets.len(), 12, "a socket per query: A and AAAA never share a 5-tuple");
        assert!(sent.iter().all(|s| s.send.edns == Some(1232)));
        assert!(out.expect("done").is_ok());
    }

    #[test]
    fn a_timeout_moves_on_to_the_next_name() {
        let rules = vec![Rule::Drop { qname: "www.google.com.default.svc.cluster.local.".into(), qtype: 0, count: None }];
        let (sent, out) = run(&mut go("www.google.com", Hints::NULL, &kubelet_rc()), rules);
        assert!(out.expect("done").is_ok());
        // 2 attempts × 5 s for the first name, then the rest of the walk.
        let after: Vec<_> = sent.iter().filter(|s| s.send.qname == "www.google.com.svc.cluster.local.").collect();
        assert_eq!(after.first().map(|s| s.at), Some(Duration::from_secs(10)));
    }

    #[test]
    fn tcp4_asks_a_only_and_tc_goes_to_tcp() {
        let (sent, _) = run(&mut go("www.google.com.", Hints { family: Family::Inet, ..Hints::NULL }, &kubelet_rc()), vec![]);
        assert_eq!(sent.len(), 1);
        let (sent, out) = run(&mut go("big.example.com.", Hints { family: Family::Inet, ..Hints::NULL }, &kubelet_rc()), vec![]);
        assert_eq!(sent.iter().map(|s| s.send.transport).collect::<Vec<_>>(), [Transport::Udp, Transport::Tcp]);
        assert!(matches!(out, Some(Outcome::Addrs(ref a)) if a.len() == 100));
    }

    #[test]
    fn single_request_makes_a_and_aaaa_sequential() {
        let mut rc = kubelet_rc();
        rc.single_request = true;
        let (sent, _) = run(&mut go("www.google.com.", Hints::NULL, &rc), vec![]);
        assert_eq!(sent.len(), 2);
        assert!(sent[1].at > sent[0].at);
    }
}
