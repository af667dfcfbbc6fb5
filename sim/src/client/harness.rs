//! Runs one library lookup against a simulated DNS server: our own `resolver::Server` answering from
//! an RFC 1035 zone (so NXDOMAIN/NODATA carry SOA and large UDP answers are truncated with TC exactly
//! as the server does), with fault rules on top. Used by the table-driven tests and by
//! `ndots-sim lookup`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use resolver::{Client, ClusterState, Config, Dest, Handled, Server};

use super::{Lookup, Outcome, Send, Transport};

/// What the server does with a query, on top of answering it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Ignore the query `count` times (None: always).
    Drop { qname: String, qtype: u16, count: Option<u32> },
    /// Answer after this extra delay.
    Delay { qname: String, qtype: u16, delay: Duration },
    /// Answer SERVFAIL.
    ServFail { qname: String, qtype: u16 },
    /// A nameserver that never answers anything.
    Silent { server: std::net::IpAddr },
}

impl Rule {
    pub fn matches(&self, qname: &str, qtype: u16) -> bool {
        let (n, t) = match self {
            Rule::Drop { qname, qtype, .. } | Rule::Delay { qname, qtype, .. } | Rule::ServFail { qname, qtype } => (qname, *qtype),
            Rule::Silent { .. } => return false,
        };
        n.trim_end_matches('.').eq_ignore_ascii_case(qname.trim_end_matches('.')) && (t == 0 || t == qtype)
    }
}

/// What the rules make of one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decision {
    /// Ignore it.
    pub drop: bool,
    /// Answer this much later.
    pub extra: Duration,
    /// Answer with RCODE SERVFAIL.
    pub servfail: bool,
}

/// Applies `rules` to a query for `qname`/`qtype`, counting down `Drop` rules with a count.
pub fn decide(rules: &mut [Rule], qname: &str, qtype: u16) -> Decision {
    let mut d = Decision::default();
    for r in rules.iter_mut() {
        if !r.matches(qname, qtype) {
            continue;
        }
        match r {
            Rule::Drop { count, .. } => match count {
                Some(0) => {}
                Some(c) => {
                    *c -= 1;
                    d.drop = true;
                }
                None => d.drop = true,
            },
            Rule::Delay { delay, .. } => d.extra += *delay,
            Rule::ServFail { .. } => d.servfail = true,
            Rule::Silent { .. } => {}
        }
    }
    d
}

/// A packet the library sent, with its time since the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub at: Duration,
    pub send: Send,
}

pub struct Harness {
    server: Server,
    rules: Vec<Rule>,
    /// One-way latency to the server.
    pub latency: Duration,
}

impl Harness {
    /// A server authoritative for `origin` from zone text, listening on `server` (port 53).
    pub fn new(zone_text: &str, origin: &str, rules: Vec<Rule>) -> Result<Harness, String> {
        // `.:53 { file ZONE ORIGIN }`, with the zone handed over in memory.
        let cf = resolver::corefile::parse_str(".:53 {\n}\n", "harness", None, &|_| None).map_err(|e| e.to_string())?;
        let mut cfg = Config::from_corefile_in(&cf, &resolver::config::Files::Only(&[])).map_err(|e| e.to_string())?;
        cfg.servers[0].files.push(resolver::zone::Zone::parse(zone_text, origin)?);
        Ok(Harness { server: Server::new(Arc::new(cfg), Arc::new(ClusterState::default()), 1), rules, latency: Duration::from_millis(1) })
    }

    /// Runs the lookup to completion (or `limit` of simulated time): every packet sent, and the outcome.
    pub fn run(&mut self, lookup: &mut dyn Lookup, limit: Duration) -> (Vec<Sent>, Option<Outcome>) {
        let mut now = Duration::ZERO;
        let mut sent = Vec::new();
        // (deliver at, socket, transport, answer)
        let mut inbox: Vec<(Duration, u64, u32, Transport, Vec<u8>)> = Vec::new();
        let mut seq = 0u64;
        let mut out = Vec::new();
        while lookup.result().is_none() && now <= limit {
            while let Some(s) = lookup.poll_send() {
                sent.push(Sent { at: now, send: s.clone() });
                let qtype = s.qtype;
                let Decision { drop, extra, servfail } = decide(&mut self.rules, &s.qname, qtype);
                if drop || self.rules.iter().any(|r| matches!(r, Rule::Silent { server } if *server == s.server.ip())) {
                    continue;
                }
                let transport = match s.transport {
                    Transport::Udp => resolver::Transport::Udp,
                    Transport::Tcp => resolver::Transport::Tcp,
                };
                let client = Client {
                    src: SocketAddr::from(([10, 244, 1, 10], 40000 + s.socket as u16)),
                    local: s.server,
                    transport,
                    conn: u64::from(s.socket),
                };
                let answer = match self.server.handle_query(now, client, &s.payload, &mut out) {
                    Handled::Answered => Some(out.clone()),
                    Handled::Pending => {
                        std::iter::from_fn(|| self.server.poll_transmit()).find(|t| matches!(t.dest, Dest::Client(_))).map(|t| t.payload)
                    }
                    Handled::Dropped => None,
                };
                if let Some(mut a) = answer {
                    if servfail {
                        resolver::wire::flags::set_rcode(&mut a, resolver::wire::RCODE_SERVFAIL);
                    }
                    seq += 1;
                    inbox.push((now + 2 * self.latency + extra, seq, s.socket, s.transport, a));
                }
            }
            if lookup.result().is_some() {
                break;
            }
            let next_answer = inbox.iter().map(|m| (m.0, m.1)).min();
            let next_timer = lookup.poll_timeout();
            match (next_answer, next_timer) {
                (Some((at, id)), t) if t.is_none_or(|t| at <= t) => {
                    now = at;
                    let i = inbox.iter().position(|m| m.1 == id).unwrap_or(0);
                    let (_, _, socket, transport, a) = inbox.remove(i);
                    lookup.handle_answer(now, socket, transport, &a);
                }
                (_, Some(t)) => {
                    now = t;
                    lookup.handle_timeout(now);
                }
                _ => break,
            }
        }
        (sent, lookup.result().cloned())
    }
}
