//! glibc's stub resolver under getaddrinfo (sources.md#glibc; glibc resolv/res_query.c,
//! resolv/res_send.c, nss/getaddrinfo.c, sysdeps/unix/sysv/linux/check_pf.c).
//!
//! Name order (`__res_context_search`): a trailing dot means the name alone; with dots ≥ ndots the
//! name is tried first, then the search list; otherwise the search list, then the name. NXDOMAIN,
//! NODATA and SERVFAIL continue the walk; a timeout ends it and jumps to the as-is name if untried;
//! ECONNREFUSED aborts with TRY_AGAIN.
//!
//! Transport (`__res_context_send`/`send_dg`): for each try (attempts, capped at 5) and each server,
//! A and AAAA go out together from one UDP socket (`sendmmsg`) and both replies are awaited for
//! `retrans << ns` seconds (÷ nscount for ns > 0, at least 1 s). A timeout with one reply in hand sets
//! the sticky RES_F_SNGLKUP (sequential from then on, for the process) and re-sends; a second such
//! timeout sets RES_F_SNGLKUPREOP (a new socket before the second query). TC=1 re-asks both queries of
//! the pair over TCP on the same server. `single-request` sends sequentially, `single-request-reopen`
//! sequentially with a new socket for the second query, `use-vc` uses TCP throughout, `edns0`
//! advertises 1200 bytes (RESOLV_EDNS_BUFFER_SIZE), `no-aaaa` (≥ 2.36) sends A only.
//! Each nameserver keeps its UDP socket for the whole `res_send` of a name, so a retry leaves from the
//! same port; a new socket (a new source port) per name, as res_send closes its sockets after each
//! call. After the sticky switch both queries of the pair are asked again, one after the other.
//! A name whose every try got SERVFAIL/NOTIMP/REFUSED for the whole pair goes on with the walk.
//!
//! getaddrinfo's buffer (nss/getaddrinfo.c): the NSS call stores its addresses in a scratch buffer
//! of 1,024 bytes; when they do not fit it returns ERANGE and getaddrinfo doubles the buffer and
//! calls again, **so the whole lookup goes on the wire again**. The sizes are measured on the wire
//! from glibc 2.36 by `cargo xtask client-check`: AF_UNSPEC (gethostbyname4, a 40-byte
//! `gaih_addrtuple` per address) fits 24 addresses in the first buffer and not 28, 48 in the second
//! and not 56; AF_INET (a hostent: 4 bytes and an 8-byte pointer per address) fits 82 and not 84,
//! 160 and not 168.
//!
//! The sequences above are checked against real glibc 2.36 by `cargo xtask client-check`.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use resolver::wire::{RCODE_NOERROR, RCODE_NOTIMP, RCODE_NXDOMAIN, RCODE_REFUSED, RCODE_SERVFAIL, TYPE_A, TYPE_AAAA};

use super::{Call, Family, Hints, Lookup, Outcome, PodAddrs, Process, ResolvConf, Send, Transport, build_query, parse_reply};

/// RESOLV_EDNS_BUFFER_SIZE (resolv/resolv-internal.h).
pub const EDNS_BUFFER: u16 = 1200;

/// A glibc version, e.g. 2.36.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u16, pub u16);

impl Version {
    pub const CURRENT: Version = Version(2, 36);
}

/// The query types getaddrinfo asks for each name.
pub fn qtypes(version: Version, rc: &ResolvConf, hints: Hints, pod: &PodAddrs) -> Vec<u16> {
    match hints.family {
        Family::Inet => return vec![TYPE_A],
        Family::Inet6 => return if hints.v4mapped { vec![TYPE_A, TYPE_AAAA] } else { vec![TYPE_AAAA] },
        Family::Unspec => {}
    }
    if rc.no_aaaa && version >= Version(2, 36) {
        return vec![TYPE_A];
    }
    if hints.addrconfig {
        // __check_pf: narrow to the families the host has; if it has neither, assume both.
        match (pod.has_v4(), pod.has_v6()) {
            (true, false) => return vec![TYPE_A],
            (false, true) => return vec![TYPE_AAAA],
            _ => {}
        }
    }
    vec![TYPE_A, TYPE_AAAA]
}

/// The names glibc tries, in order, and the index of the as-is name.
pub fn names(version: Version, rc: &ResolvConf, name: &str) -> (Vec<String>, usize, bool) {
    let trailing = name.ends_with('.');
    let bare = name.trim_end_matches('.');
    if trailing {
        return (vec![format!("{bare}.")], 0, true);
    }
    let dots = bare.matches('.').count() as u32;
    let ndots = rc.ndots.min(15);
    let mut search: Vec<&str> = rc.search.iter().map(String::as_str).collect();
    if version <= Version(2, 25) {
        // MAXDNSRCH 6 and a 256-byte list before commit 3f853f22c8 (2.26).
        let mut total = 0;
        search.retain(|d| {
            total += d.len() + 1;
            total <= 256
        });
        search.truncate(6);
    }
    let mut out = Vec::new();
    let first = dots >= ndots;
    if first {
        out.push(format!("{bare}."));
    }
    for d in search {
        out.push(format!("{bare}.{d}."));
    }
    let as_is = if first {
        0
    } else if rc.no_tld_query && dots == 0 {
        usize::MAX
    } else {
        out.push(format!("{bare}."));
        out.len() - 1
    };
    (out, as_is, first)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Parallel,
    Sequential,
    Reopen,
}

#[derive(Debug, Clone)]
struct Query {
    qtype: u16,
    id: u16,
    sent: bool,
    reply: Option<super::Reply>,
}

/// How one name ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameResult {
    Found,
    NxDomain,
    NoData,
    ServFail,
    Timeout,
    Refused,
}

pub struct Glibc {
    rc: ResolvConf,
    servers: Vec<SocketAddr>,
    qtypes: Vec<u16>,
    edns: Option<u16>,
    names: Vec<String>,
    as_is: usize,
    as_is_first: bool,
    tried_as_is: bool,
    idx: usize,
    attempts: u32,
    timeout_s: u32,
    try_no: u32,
    ns_pos: usize,
    rotate_base: usize,
    mode: Mode,
    transport: Transport,
    socket: u32,
    next_socket: u32,
    socket_open: bool,
    /// The UDP socket of each nameserver position, open for the whole `res_send` of a name
    /// (`EXT(statp).nssocks`): a retry to the same server leaves from the same port.
    ns_sockets: Vec<Option<u32>>,
    queries: Vec<Query>,
    deadline: Option<Duration>,
    got_nodata: bool,
    got_servfail: bool,
    last: Option<NameResult>,
    addrs: Vec<IpAddr>,
    sends: VecDeque<Send>,
    closed: VecDeque<u32>,
    process: Process,
    rng: fastrand::Rng,
    result: Option<Outcome>,
    family: Family,
    /// getaddrinfo's scratch buffer for the NSS result, in bytes.
    nss_buffer: usize,
}

/// Bytes the NSS result for `n` addresses of `name` takes in getaddrinfo's scratch buffer (see the
/// module doc for the measurements these fit).
pub fn nss_bytes(family: Family, name: &str, n: usize) -> usize {
    let name = name.trim_end_matches('.').len() + 1;
    match family {
        // gaih_addrtuple: next, name, family, 16-byte address, scope id.
        Family::Unspec => 40 * n + name,
        // hostent: the address and its h_addr_list pointer, the list's and aliases' NULLs.
        Family::Inet => 12 * n + name + 16,
        // As AF_INET with 16-byte addresses [unverified: not measured].
        Family::Inet6 => 24 * n + name + 16,
    }
}

impl Glibc {
    pub fn new(now: Duration, version: Version, rc: &ResolvConf, call: &Call, process: Process, seed: u64) -> Glibc {
        let (name, hints, pod) = (call.name.as_str(), call.hints, &call.pod);
        let (names, as_is, as_is_first) = names(version, rc, name);
        let mode = if rc.single_request_reopen || process.single_request_reopen {
            Mode::Reopen
        } else if rc.single_request || process.single_request {
            Mode::Sequential
        } else {
            Mode::Parallel
        };
        let qtypes = qtypes(version, rc, hints, pod);
        // AI_ADDRCONFIG narrows AF_UNSPEC to the one family present: gethostbyname3 for it.
        let family = match (hints.family, hints.addrconfig, qtypes.as_slice()) {
            (Family::Unspec, true, [TYPE_A]) => Family::Inet,
            (Family::Unspec, true, [TYPE_AAAA]) => Family::Inet6,
            (f, ..) => f,
        };
        let mut g = Glibc {
            servers: rc.servers(3),
            qtypes,
            edns: rc.edns0.then_some(EDNS_BUFFER),
            names,
            as_is,
            as_is_first,
            tried_as_is: false,
            idx: 0,
            // attempts capped at RES_MAXRETRY 5, timeout at RES_MAXRETRANS 30.
            attempts: rc.attempts.clamp(1, 5),
            timeout_s: rc.timeout.clamp(1, 30),
            try_no: 0,
            ns_pos: 0,
            rotate_base: 0,
            mode,
            transport: if rc.use_vc { Transport::Tcp } else { Transport::Udp },
            socket: 0,
            next_socket: 0,
            socket_open: false,
            ns_sockets: Vec::new(),
            queries: Vec::new(),
            deadline: None,
            got_nodata: false,
            got_servfail: false,
            last: None,
            addrs: Vec::new(),
            sends: VecDeque::new(),
            closed: VecDeque::new(),
            process,
            rng: fastrand::Rng::with_seed(seed),
            result: None,
            rc: rc.clone(),
            family,
            nss_buffer: 1024,
        };
        g.start_name(now);
        g
    }

    fn start_name(&mut self, now: Duration) {
        if self.idx == self.as_is {
            self.tried_as_is = true;
        }
        self.try_no = 0;
        self.ns_pos = 0;
        if self.rc.rotate {
            self.rotate_base = self.process.rotate;
            self.process.rotate = self.process.rotate.wrapping_add(1);
        }
        self.transport = if self.rc.use_vc { Transport::Tcp } else { Transport::Udp };
        self.start_server(now);
    }

    fn server(&self) -> (usize, SocketAddr) {
        let n = self.servers.len();
        let i = (self.rotate_base + self.ns_pos) % n;
        (self.ns_pos, self.servers[i])
    }

    /// A new socket; the current one is closed unless a nameserver position keeps it.
    fn open_socket(&mut self) {
        if self.socket_open && !self.ns_sockets.contains(&Some(self.socket)) {
            self.closed.push_back(self.socket);
        }
        self.socket = self.next_socket;
        self.next_socket += 1;
        self.socket_open = true;
    }

    /// The end of a name's `res_send`: every socket closes (`__res_iclose`).
    fn close_socket(&mut self) {
        if self.socket_open && !self.ns_sockets.contains(&Some(self.socket)) {
            self.closed.push_back(self.socket);
        }
        self.socket_open = false;
        let kept: Vec<u32> = self.ns_sockets.drain(..).flatten().collect();
        self.closed.extend(kept);
    }

    /// The UDP socket for the current nameserver position: the one already open, or a new one.
    fn ns_socket(&mut self) {
        if self.ns_sockets.len() < self.servers.len() {
            self.ns_sockets.resize(self.servers.len(), None);
        }
        match self.ns_sockets[self.ns_pos] {
            Some(s) => {
                if self.socket_open && self.socket != s && !self.ns_sockets.contains(&Some(self.socket)) {
                    self.closed.push_back(self.socket);
                }
                self.socket = s;
                self.socket_open = true;
            }
            None => {
                self.open_socket();
                self.ns_sockets[self.ns_pos] = Some(self.socket);
            }
        }
    }

    /// single-request-reopen: this position's socket is closed and a new one opened.
    fn reopen(&mut self) {
        if let Some(slot) = self.ns_sockets.get_mut(self.ns_pos)
            && let Some(old) = slot.take()
        {
            self.closed.push_back(old);
            self.socket_open = false;
        }
        self.ns_socket();
    }

    /// Starts the query pair on the current server.
    fn start_server(&mut self, now: Duration) {
        if self.transport == Transport::Udp {
            self.ns_socket();
        } else {
            self.open_socket();
        }
        self.queries = self.qtypes.iter().map(|&qtype| Query { qtype, id: self.rng.u16(..), sent: false, reply: None }).collect();
        match (self.mode, self.transport) {
            (Mode::Parallel, Transport::Udp) => {
                for i in 0..self.queries.len() {
                    self.send(i);
                }
            }
            _ => self.send(0),
        }
        self.arm(now);
    }

    fn arm(&mut self, now: Duration) {
        let (ns, _) = self.server();
        let mut secs = self.timeout_s << ns;
        if ns > 0 {
            secs /= self.servers.len() as u32;
        }
        self.deadline = Some(now + Duration::from_secs(u64::from(secs.max(1))));
    }

    fn send(&mut self, i: usize) {
        let (_, server) = self.server();
        let name = self.names[self.idx].clone();
        let q = &mut self.queries[i];
        q.sent = true;
        // The query is built once (res_nmkquery, with its OPT record) and sent as it is over either transport.
        let edns = self.edns;
        let payload = build_query(q.id, &name, q.qtype, edns);
        self.sends.push_back(Send { socket: self.socket, transport: self.transport, server, qname: name, qtype: q.qtype, edns, payload });
    }

    fn next_unsent(&self) -> Option<usize> {
        self.queries.iter().position(|q| !q.sent)
    }

    /// The current server failed: a timeout, or error rcodes (`failure` is then ServFail, and a name
    /// whose every try ended so goes on with the search walk, where a timeout ends it).
    fn next_server(&mut self, now: Duration, failure: NameResult) {
        self.ns_pos += 1;
        if self.ns_pos >= self.servers.len() {
            self.ns_pos = 0;
            self.try_no += 1;
            if self.try_no >= self.attempts {
                return self.finish_name(now, failure);
            }
        }
        self.transport = if self.rc.use_vc { Transport::Tcp } else { Transport::Udp };
        self.start_server(now);
    }

    fn finish_name(&mut self, now: Duration, r: NameResult) {
        self.deadline = None;
        self.close_socket();
        self.last = Some(r);
        match r {
            NameResult::Found => {
                if nss_bytes(self.family, &self.names[self.idx], self.addrs.len()) > self.nss_buffer {
                    // ERANGE: getaddrinfo grows its buffer and asks NSS again, from the first name.
                    self.nss_buffer *= 2;
                    self.addrs.clear();
                    self.idx = 0;
                    self.tried_as_is = false;
                    self.got_nodata = false;
                    self.got_servfail = false;
                    return self.start_name(now);
                }
                self.result = Some(Outcome::Addrs(std::mem::take(&mut self.addrs)));
                return;
            }
            NameResult::Refused => {
                self.result = Some(Outcome::Again);
                return;
            }
            NameResult::NoData => self.got_nodata = true,
            NameResult::ServFail => self.got_servfail = true,
            NameResult::NxDomain | NameResult::Timeout => {}
        }
        // Next name: a timeout in the search walk ends it; the as-is name is still tried if it was not.
        let next = if r == NameResult::Timeout && !(self.as_is_first && self.idx == 0) {
            if !self.tried_as_is && self.as_is < self.names.len() { Some(self.as_is) } else { None }
        } else {
            let mut n = self.idx + 1;
            if self.as_is_first && n == self.as_is {
                n += 1;
            }
            (n < self.names.len()).then_some(n)
        };
        match next {
            Some(n) => {
                self.idx = n;
                self.start_name(now);
            }
            None => {
                self.result = Some(if r == NameResult::Timeout {
                    Outcome::Again
                } else if self.got_nodata {
                    Outcome::NoData
                } else if self.got_servfail {
                    Outcome::Again
                } else {
                    Outcome::NoName
                });
            }
        }
    }

    /// Both queries of the pair have replies (or the only one has): judge the name.
    fn judge(&mut self, now: Duration) {
        let replies: Vec<&super::Reply> = self.queries.iter().filter_map(|q| q.reply.as_ref()).collect();
        let addrs: Vec<IpAddr> = replies.iter().filter(|r| r.rcode == RCODE_NOERROR).flat_map(|r| r.addrs.iter().copied()).collect();
        if !addrs.is_empty() {
            self.addrs = addrs;
            return self.finish_name(now, NameResult::Found);
        }
        let any_noerror = replies.iter().any(|r| r.rcode == RCODE_NOERROR);
        let first = replies.first().map_or(RCODE_SERVFAIL, |r| r.rcode);
        let r = if first == RCODE_NXDOMAIN && !any_noerror {
            NameResult::NxDomain
        } else if any_noerror {
            NameResult::NoData
        } else {
            NameResult::ServFail
        };
        self.finish_name(now, r)
    }
}

impl Lookup for Glibc {
    fn handle_answer(&mut self, now: Duration, socket: u32, transport: Transport, msg: &[u8]) {
        if self.result.is_some() || socket != self.socket || transport != self.transport {
            return;
        }
        let Some(reply) = parse_reply(msg) else { return };
        // res_queriesmatch: the ID and the question must match an outstanding query.
        let name = self.names[self.idx].as_str();
        let Some(i) = self.queries.iter().position(|q| {
            q.sent && q.reply.is_none() && q.id == reply.id && q.qtype == reply.qtype && super::qname_is(&reply.qname_lower, name)
        }) else {
            return;
        };
        if reply.tc && transport == Transport::Udp {
            // TC=1: both queries of the pair again, over TCP, same server (v_circuit).
            self.transport = Transport::Tcp;
            self.open_socket();
            for q in &mut self.queries {
                q.sent = false;
                q.reply = None;
            }
            self.send(0);
            return self.arm(now);
        }
        self.queries[i].reply = Some(reply);
        if let Some(next) = self.next_unsent() {
            // Sequential: the second query only after the first reply.
            if self.mode == Mode::Reopen && self.transport == Transport::Udp {
                self.reopen();
            }
            self.send(next);
            return self.arm(now);
        }
        if self.queries.iter().all(|q| q.reply.is_some()) {
            let failed = |q: &Query| q.reply.as_ref().is_some_and(|r| matches!(r.rcode, RCODE_SERVFAIL | RCODE_NOTIMP | RCODE_REFUSED));
            if self.queries.iter().all(failed) {
                // send_dg's next_ns: every reply an error rcode, so the next server, or the next try of
                // this one on the same socket, at once (seen on the wire from glibc 2.36 by
                // `cargo xtask client-check`: the pair again 2 ms later, then the next search name).
                // A lone query (no second buffer) takes the other branch, `__res_iclose`: the
                // sockets close and the next try leaves from a new port.
                if self.queries.len() == 1 {
                    self.close_socket();
                }
                return self.next_server(now, NameResult::ServFail);
            }
            self.judge(now);
        }
    }

    fn handle_refused(&mut self, now: Duration, socket: u32) {
        if self.result.is_none() && socket == self.socket {
            self.finish_name(now, NameResult::Refused);
        }
    }

    fn handle_timeout(&mut self, now: Duration) {
        if self.result.is_some() || self.deadline.is_none_or(|d| now < d) {
            return;
        }
        let answered = self.queries.iter().filter(|q| q.reply.is_some()).count();
        if answered > 0 && self.transport == Transport::Udp && self.queries.len() > 1 {
            // One reply of two: the sticky switch (RES_F_SNGLKUP, then RES_F_SNGLKUPREOP).
            // Either way send_dg goes back to `retry` (or `retry_reopen`), which forgets both replies:
            // the pair is asked again, one after the other, with a fresh timer and no try used up
            // (sources.md#glibc; seen on the wire from glibc 2.36 by `cargo xtask client-check`).
            if !self.process.single_request {
                self.process.single_request = true;
                self.mode = Mode::Sequential;
            } else if !self.process.single_request_reopen {
                self.process.single_request_reopen = true;
                self.mode = Mode::Reopen;
                self.reopen();
            } else {
                // Give up on the missing one and use what we have.
                for q in &mut self.queries {
                    if q.reply.is_none() {
                        q.sent = true;
                    }
                }
                self.queries.retain(|q| q.reply.is_some());
                return self.judge(now);
            }
            for q in &mut self.queries {
                q.sent = false;
                q.reply = None;
            }
            self.send(0);
            return self.arm(now);
        }
        self.next_server(now, NameResult::Timeout);
    }

    fn poll_send(&mut self) -> Option<Send> {
        self.sends.pop_front()
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if self.result.is_some() { None } else { self.deadline }
    }

    fn poll_closed(&mut self) -> Option<u32> {
        if self.result.is_some() && self.socket_open {
            self.socket_open = false;
            self.closed.push_back(self.socket);
        }
        self.closed.pop_front()
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
    use crate::client::harness::{Harness, Rule};

    /// The internet as the tests see it: www.google.com has A and AAAA; big.example.com has 40 A
    /// records (over 512 bytes); v4only.example.com has only A.
    fn zone() -> String {
        let mut z = String::from("$TTL 300\n@ IN SOA ns.example. h.example. 1 7200 1800 86400 60\n");
        z.push_str("www.google.com. IN A 142.250.74.100\nwww.google.com. IN AAAA 2a00:1450:4007:80e::2004\n");
        z.push_str("v4only.example.com. IN A 10.1.1.1\n");
        for i in 0..40 {
            z.push_str(&format!("big.example.com. IN A 10.2.0.{}\n", i + 1));
        }
        z
    }

    fn kubelet_rc() -> ResolvConf {
        // 3 cluster domains + 2 host domains, ndots:5 (sources.md#incident-s1).
        ResolvConf::parse(&ResolvConf::kubelet_cluster_first(
            "10.96.0.10".parse().expect("ip"),
            "default",
            "cluster.local",
            &["ec2.internal", "example.internal"],
        ))
    }

    fn run(
        rc: &ResolvConf,
        name: &str,
        hints: Hints,
        pod: &PodAddrs,
        rules: Vec<Rule>,
        process: Process,
    ) -> (Vec<crate::client::harness::Sent>, Option<Outcome>, Process) {
        let mut h = Harness::new(&zone(), ".", rules).expect("harness");
        let call = Call { name: name.to_string(), hints, pod: pod.clone() };
        let mut g = Glibc::new(Duration::ZERO, Version::CURRENT, rc, &call, process, 7);
        let (sent, out) = h.run(&mut g, Duration::from_secs(120));
        (sent, out, g.process())
    }

    fn v4_pod() -> PodAddrs {
        PodAddrs(vec!["10.244.1.10".parse().expect("ip"), "127.0.0.1".parse().expect("ip"), "::1".parse().expect("ip")])
    }

    #[test]
    fn www_google_com_is_12_queries_with_hints_null() {
        let (sent, out, _) = run(&kubelet_rc(), "www.google.com", Hints::NULL, &v4_pod(), vec![], Process::default());
        assert_eq!(sent.len(), 12, "{:#?}", sent.iter().map(|s| (&s.send.qname, s.send.qtype)).collect::<Vec<_>>());
        let names: Vec<&str> = sent.iter().step_by(2).map(|s| s.send.qname.as_str()).collect();
        assert_eq!(
            names,
            [
                "www.google.com.default.svc.cluster.local.",
                "www.google.com.svc.cluster.local.",
                "www.google.com.cluster.local.",
                "www.google.com.ec2.internal.",
                "www.google.com.example.internal.",
                "www.google.com.",
            ]
        );
        // A and AAAA in parallel, from one socket per name; a new socket per name.
        for pair in sent.chunks(2) {
            assert_eq!((pair[0].send.qtype, pair[1].send.qtype), (TYPE_A, TYPE_AAAA));
            assert_eq!(pair[0].send.socket, pair[1].send.socket);
            assert_eq!(pair[0].at, pair[1].at);
        }
        assert_eq!(sent.iter().map(|s| s.send.socket).collect::<std::collections::BTreeSet<_>>().len(), 6);
        assert!(matches!(out, Some(Outcome::Addrs(ref a)) if a.len() == 2));
    }

    #[test]
    fn addrconfig_without_ipv6_halves_it_and_link_local_v6_counts() {
        let (sent, _, _) = run(&kubelet_rc(), "www.google.com", Hints::addrconfig(), &v4_pod(), vec![], Process::default());
        assert_eq!(sent.len(), 6);
        assert!(sent.iter().all(|s| s.send.qtype == TYPE_A));
        let mut ll = v4_pod();
        ll.0.push("fe80::1".parse().expect("ip"));
        let (sent, _, _) = run(&kubelet_rc(), "www.google.com", Hints::addrconfig(), &ll, vec![], Process::default());
        assert_eq!(sent.len(), 12, "a link-local IPv6 address counts (check_pf.c)");
        // Go's cgo hints never narrow (no AI_ADDRCONFIG).
        let (sent, _, _) = run(&kubelet_rc(), "www.google.com", Hints::GO_CGO, &v4_pod(), vec![], Process::default());
        assert_eq!(sent.len(), 12);
    }

    #[test]
    fn a_trailing_dot_or_low_ndots_is_two_queries() {
        let (sent, _, _) = run(&kubelet_rc(), "www.google.com.", Hints::NULL, &v4_pod(), vec![], Process::default());
        assert_eq!(sent.len(), 2);
        let mut rc = kubelet_rc();
        rc.ndots = 2;
        let (sent, out, _) = run(&rc, "www.google.com", Hints::NULL, &v4_pod(), vec![], Process::default());
        assert_eq!(sent.len(), 2, "dots >= ndots: the name first, and it succeeds");
        assert!(out.expect("done").is_ok());
        rc.no_aaaa = true;
        let (sent, _, _) = run(&rc, "www.google.com", Hints::NULL, &v4_pod(), vec![], Process::default());
        assert_eq!(sent.len(), 1, "no-aaaa (2.36)");
    }

    #[test]
    fn a_lost_reply_costs_5s_and_makes_the_process_sequential() {
        let rules = vec![Rule::Drop { qname: "www.google.com.".into(), qtype: TYPE_AAAA, count: Some(1) }];
        let (sent, out, process) = run(&kubelet_rc(), "www.google.com.", Hints::NULL, &v4_pod(), rules, Process::default());
        assert!(out.expect("done").is_ok());
        // A+AAAA at 0; AAAA lost; after 5 s the pair again, sequentially, on the same socket.
        assert_eq!(sent.len(), 4);
        assert_eq!(sent[2].at, Duration::from_secs(5), "the 5 s timer runs from the send");
        assert_eq!(sent[2].send.qtype, TYPE_A, "retry forgets the reply it had");
        assert_eq!(sent[3].send.qtype, TYPE_AAAA);
        assert!(sent[3].at > sent[2].at, "AAAA only after A's reply");
        assert!(sent.iter().all(|s| s.send.socket == sent[0].send.socket));
        assert!(process.single_request);
        // The next lookup in the process is sequential: A, then AAAA only after A's reply.
        let (sent, _, _) = run(&kubelet_rc(), "www.google.com.", Hints::NULL, &v4_pod(), vec![], process);
        assert_eq!(sent.len(), 2);
        assert!(sent[1].at > sent[0].at);
    }

    #[test]
    fn a_timeout_in_the_search_walk_jumps_to_the_name_as_is() {
        let rules = vec![Rule::Drop { qname: "www.google.com.svc.cluster.local.".into(), qtype: 0, count: None }];
        let (sent, out, _) = run(&kubelet_rc(), "www.google.com", Hints::NULL, &v4_pod(), rules, Process::default());
        assert!(out.expect("done").is_ok());
        let names: Vec<&str> = sent.iter().map(|s| s.send.qname.as_str()).collect();
        // default.svc, then svc (timed out twice: 2 attempts × 5 s), then straight to the name as-is.
        assert_eq!(names.iter().filter(|n| **n == "www.google.com.svc.cluster.local.").count(), 4);
        assert_eq!(*names.last().expect("sent"), "www.google.com.");
        assert!(!names.contains(&"www.google.com.cluster.local."));
        assert_eq!(sent.last().expect("sent").at, Duration::from_millis(10_002), "svc. sent at 2 ms, two 5 s tries");
    }

    #[test]
    fn servfail_continues_the_search_walk() {
        let rules = vec![Rule::ServFail { qname: "www.google.com.default.svc.cluster.local.".into(), qtype: 0 }];
        let (sent, out, _) = run(&kubelet_rc(), "www.google.com", Hints::NULL, &v4_pod(), rules, Process::default());
        assert!(out.expect("done").is_ok());
        // The pair, the pair again at once on the same socket (the second try), then the rest.
        assert_eq!(sent.len(), 14);
        assert_eq!(sent[2].send.qname, "www.google.com.default.svc.cluster.local.");
        assert_eq!(sent[2].send.socket, sent[0].send.socket);
        assert_eq!(sent[2].at, Duration::from_millis(2));
        assert_eq!(sent[4].send.qname, "www.google.com.svc.cluster.local.");
    }

    #[test]
    fn addresses_that_overflow_the_nss_buffer_put_the_lookup_on_the_wire_again() {
        // 40 A records: over 1,024 bytes of tuples for AF_UNSPEC, within 2,048: two rounds.
        let (sent, out, _) = run(&kubelet_rc(), "big.example.com.", Hints::NULL, &v4_pod(), vec![], Process::default());
        assert_eq!(sent.len(), 8, "two rounds of A+AAAA over UDP, then over TCP");
        assert!(matches!(out, Some(Outcome::Addrs(ref a)) if a.len() == 40));
        let inet = Hints { family: Family::Inet, ..Hints::NULL };
        let (sent, _, _) = run(&kubelet_rc(), "big.example.com.", inet, &v4_pod(), vec![], Process::default());
        assert_eq!(sent.len(), 2, "AF_INET: 40 addresses fit the first buffer");
        assert!(nss_bytes(Family::Inet, "big82.example.com.", 82) <= 1024 && nss_bytes(Family::Inet, "big84.example.com.", 84) > 1024);
        assert!(nss_bytes(Family::Unspec, "big24.example.com.", 24) <= 1024 && nss_bytes(Family::Unspec, "big28.example.com.", 28) > 1024);
    }

    #[test]
    fn a_truncated_answer_is_asked_again_over_tcp() {
        let (sent, out, _) = run(&kubelet_rc(), "big.example.com.", Hints::addrconfig(), &v4_pod(), vec![], Process::default());
        assert_eq!(sent.iter().map(|s| s.send.transport).collect::<Vec<_>>(), [Transport::Udp, Transport::Tcp]);
        assert!(matches!(out, Some(Outcome::Addrs(ref a)) if a.len() == 40));
    }

    #[test]
    fn nxdomain_everywhere_is_eai_noname_after_every_name() {
        let (sent, out, _) = run(&kubelet_rc(), "nope.invalid", Hints::NULL, &v4_pod(), vec![], Process::default());
        assert_eq!(sent.len(), 12);
        assert_eq!(out, Some(Outcome::NoName));
        let (_, out, _) = run(&kubelet_rc(), "v4only.example.com.", Hints::NULL, &v4_pod(), vec![], Process::default());
        assert!(out.expect("done").is_ok(), "A answers, AAAA NODATA: success");
    }

    #[test]
    fn old_glibc_caps_the_search_list_at_six() {
        let mut rc = kubelet_rc();
        rc.search = (0..8).map(|i| format!("d{i}.example")).collect();
        assert_eq!(names(Version(2, 25), &rc, "x").0.len(), 7);
        assert_eq!(names(Version(2, 26), &rc, "x").0.len(), 9);
    }
}
