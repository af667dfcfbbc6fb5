//! What the detectors remember of recent traffic, per worker: fixed tables indexed by a hash of
//! the query (a retransmission is the same key again; an A/AAAA pair shares a socket and a name; a
//! truncated answer waits for its TCP retry). Sized once; the query path never allocates.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::stats::Stats;
use super::{DetectConfig, RACE, RETRANSMIT, SEARCH_WALK, TRUNCATION, UPSTREAM_BUDGET, hash_bytes, ip_hash, mix};
use crate::cluster::ClusterState;
use crate::wire;

const RETRANSMIT_SLOTS: usize = 4096;
const PAIR_SLOTS: usize = 2048;
/// A pair's second query follows its first within this (glibc's `sendmmsg`: microseconds).
const PAIR_WINDOW: Duration = Duration::from_millis(200);
/// Pairs a client must have completed before a lone half counts as the race's signature.
const PAIRS_BEFORE: u32 = 2;
/// A lone half counts when the same socket asks the same name again this long after it: the
/// client timed out waiting for the other answer (glibc's timeout is 1 to 30 s, 5 s by default;
/// musl retries after 2.5 s). A half whose other query went to another replica (the kernel's NAT
/// clash resolution lets both through) is answered, and nothing is asked again.
const RETRY_AFTER: (Duration, Duration) = (Duration::from_millis(900), Duration::from_secs(12));

#[derive(Debug, Clone, Copy, Default)]
struct Pair {
    key: u64,
    at: Duration,
    /// Bit 0: A seen, bit 1: AAAA seen.
    seen: u8,
    src: Option<IpAddr>,
}

/// A client IP's record of complete pairs (does it send A and AAAA together?).
#[derive(Debug, Clone, Copy, Default)]
struct PairClient {
    ip: Option<IpAddr>,
    pairs: u32,
}

#[derive(Debug, Clone)]
pub struct Trackers {
    retransmits: Vec<(u64, Duration)>,
    pairs: Vec<Pair>,
    pair_clients: Vec<PairClient>,
    /// The current second's packets to each upstream: (upstream, second, packets).
    upstream_secs: Vec<(Option<SocketAddr>, u64, u64)>,
    /// The namespace of each client's last first walk step (`<ns>.svc`), for its later steps
    /// when the cluster state does not know the client: (client, namespace, length).
    walkers: Vec<(Option<IpAddr>, [u8; 63], u8)>,
    last_sweep: Duration,
}

impl Default for Trackers {
    fn default() -> Self {
        Trackers {
            retransmits: vec![(0, Duration::ZERO); RETRANSMIT_SLOTS],
            pairs: vec![Pair::default(); PAIR_SLOTS],
            pair_clients: vec![PairClient::default(); 256],
            upstream_secs: vec![(None, 0, 0); 16],
            walkers: vec![(None, [0; 63], 0); 256],
            last_sweep: Duration::ZERO,
        }
    }
}

/// Where a client's pods are: `node/<name>` when the cluster state knows the pod (`pods verified`
/// watches pods with their `spec.nodeName`), else `a.b.c.0/24` for IPv4 (a node's pod range with
/// most CNIs) or the /64 for IPv6. In a fixed buffer (a name past 64 bytes is cut by `TopK::slot`).
fn source_key(ip: IpAddr, state: &ClusterState, buf: &mut [u8; 72]) -> usize {
    use std::io::Write;
    let mut c = std::io::Cursor::new(&mut buf[..]);
    let _ = match (state.pod_node(ip), ip) {
        (Some(node), _) => write!(c, "node/{node}"),
        (None, IpAddr::V4(v4)) => {
            let o = v4.octets();
            write!(c, "{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        (None, IpAddr::V6(v6)) => {
            let s = v6.segments();
            write!(c, "{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    };
    c.position() as usize
}

fn ip_key(ip: IpAddr, buf: &mut [u8; 48]) -> usize {
    use std::io::Write;
    let mut c = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(c, "{ip}");
    c.position() as usize
}

impl Trackers {
    /// A client query arrived (`qname`: lowercased wire name). `tcp`: it came over TCP. `state`
    /// names the client's node when it knows the pod.
    #[allow(clippy::too_many_arguments)] // One value per part of the query the detectors read.
    pub fn on_query(
        &mut self,
        now: Duration,
        cfg: &DetectConfig,
        stats: &mut Stats,
        state: &ClusterState,
        src: SocketAddr,
        tcp: bool,
        id: u16,
        qtype: u16,
        qname: &[u8],
    ) {
        if now.saturating_sub(self.last_sweep) >= Duration::from_secs(1) {
            self.sweep(now, cfg, stats);
        }
        // One pass over the name; the rest is mixed in.
        let socket = mix(ip_hash(src.ip()), u64::from(src.port()));
        let name = hash_bytes(qname);
        if cfg.on[RETRANSMIT] && !tcp {
            let key = mix(mix(socket, name), (u64::from(id) << 16) | u64::from(qtype)) | 1;
            let slot = &mut self.retransmits[(key % RETRANSMIT_SLOTS as u64) as usize];
            if slot.0 == key {
                let dt = now.saturating_sub(slot.1);
                if dt >= Duration::from_millis(500) && dt <= Duration::from_secs(12) {
                    let ms = dt.as_millis();
                    let bucket = if (4500..=5600).contains(&ms) {
                        0
                    } else if (2200..=2800).contains(&ms) {
                        1
                    } else {
                        2
                    };
                    let mut buf = [0u8; 72];
                    let n = source_key(src.ip(), state, &mut buf);
                    stats.retransmits.slot(&buf[..n]).counts[bucket].add(now, 1);
                }
            }
            *slot = (key, now);
        }
        if cfg.on[TRUNCATION] && tcp {
            // A client that got truncated answers asks over TCP: it honours TC=1.
            let mut buf = [0u8; 48];
            let n = ip_key(src.ip(), &mut buf);
            stats.tcp_clients.slot(&buf[..n]).counts[0].add(now, 1);
        }
        if cfg.on[RACE] && !tcp && (qtype == wire::TYPE_A || qtype == wire::TYPE_AAAA) {
            let key = mix(socket, name) | 1;
            let bit = if qtype == wire::TYPE_A { 1 } else { 2 };
            let i = (key % PAIR_SLOTS as u64) as usize;
            let p = self.pairs[i];
            let age = now.saturating_sub(p.at);
            if p.key == key && age <= PAIR_WINDOW && p.seen & bit == 0 {
                self.pairs[i].seen |= bit;
                self.pair_done(src.ip());
            } else {
                if p.key == key && p.seen != 3 && (RETRY_AFTER.0..=RETRY_AFTER.1).contains(&age) {
                    self.count_half(p, state, stats);
                }
                self.pairs[i] = Pair { key, at: now, seen: bit, src: Some(src.ip()) };
            }
        }
    }

    /// An answer went to a client: `rcode`, `tc` (UDP answer truncated), `namespace` of the client
    /// when the cluster state knows its IP, `domain` the cluster domain (wire).
    #[allow(clippy::too_many_arguments)] // One value per part of the answer the detectors read.
    pub fn on_answer(
        &mut self,
        now: Duration,
        cfg: &DetectConfig,
        stats: &mut Stats,
        client: IpAddr,
        qname: &[u8],
        rcode: u8,
        tc: bool,
        namespace: Option<&str>,
        domain: &[u8],
    ) {
        if cfg.on[SEARCH_WALK] && rcode == wire::RCODE_NXDOMAIN {
            let w = &mut self.walkers[(mix(ip_hash(client), 1) % 256) as usize];
            let remembered = (w.0 == Some(client)).then(|| &w.1[..usize::from(w.2)]);
            let mut learned = [0u8; 63];
            let learned_len = walk_step(now, stats, qname, namespace.map(str::as_bytes).or(remembered), domain, &mut learned);
            if learned_len > 0 {
                *w = (Some(client), learned, learned_len as u8);
            }
        }
        if cfg.on[TRUNCATION] && tc {
            let mut buf = [0u8; 48];
            let n = ip_key(client, &mut buf);
            stats.truncated.slot(&buf[..n]).counts[0].add(now, 1);
        }
    }

    /// A message went to an upstream.
    pub fn on_upstream(&mut self, now: Duration, cfg: &DetectConfig, stats: &mut Stats, up: SocketAddr) {
        if !cfg.on[UPSTREAM_BUDGET] {
            return;
        }
        let sec = now.as_secs();
        let i = match self.upstream_secs.iter().position(|u| u.0 == Some(up)) {
            Some(i) => i,
            None => {
                let i = self.upstream_secs.iter().position(|u| u.0.is_none()).unwrap_or(0);
                self.upstream_secs[i] = (Some(up), sec, 0);
                i
            }
        };
        if self.upstream_secs[i].1 != sec {
            self.close_second(i, stats);
            self.upstream_secs[i].1 = sec;
            self.upstream_secs[i].2 = 0;
        }
        self.upstream_secs[i].2 += 1;
        let mut buf = [0u8; 48];
        let n = socket_key(up, &mut buf);
        let slot = stats.upstreams.slot(&buf[..n]);
        slot.counts[0].add(now, 1);
        if let Some(budget) = cfg.upstream_budget
            && self.upstream_secs[i].2 == u64::from(budget) + 1
        {
            slot.counts[1].add(now, 1);
        }
    }

    /// An exchange with an upstream timed out.
    pub fn on_upstream_timeout(&mut self, now: Duration, cfg: &DetectConfig, stats: &mut Stats, up: SocketAddr) {
        if cfg.on[UPSTREAM_BUDGET] {
            let mut buf = [0u8; 48];
            let n = socket_key(up, &mut buf);
            stats.upstreams.slot(&buf[..n]).counts[2].add(now, 1);
        }
    }

    fn close_second(&mut self, i: usize, stats: &mut Stats) {
        let (Some(up), _, packets) = self.upstream_secs[i] else { return };
        let mut buf = [0u8; 48];
        let n = socket_key(up, &mut buf);
        let s = stats.upstreams.slot(&buf[..n]);
        s.peak = s.peak.max(packets);
    }

    fn pair_done(&mut self, ip: IpAddr) {
        let i = (mix(ip_hash(ip), 2) % self.pair_clients.len() as u64) as usize;
        let c = &mut self.pair_clients[i];
        if c.ip != Some(ip) {
            *c = PairClient { ip: Some(ip), pairs: 0 };
        }
        c.pairs = c.pairs.saturating_add(1);
    }

    /// A lone half whose socket asked the same name again after a timeout, from a client that
    /// sends pairs: the race's signature.
    fn count_half(&mut self, p: Pair, state: &ClusterState, stats: &mut Stats) {
        let Some(ip) = p.src else { return };
        let c = self.pair_clients[(mix(ip_hash(ip), 2) % self.pair_clients.len() as u64) as usize];
        if c.ip == Some(ip) && c.pairs >= PAIRS_BEFORE {
            let mut buf = [0u8; 72];
            let n = source_key(ip, state, &mut buf);
            stats.race.slot(&buf[..n]).counts[0].add(p.at, 1);
        }
    }

    /// Once a second: the seconds of upstreams that went quiet.
    pub fn sweep(&mut self, now: Duration, _cfg: &DetectConfig, stats: &mut Stats) {
        self.last_sweep = now;
        let sec = now.as_secs();
        for i in 0..self.upstream_secs.len() {
            if self.upstream_secs[i].0.is_some() && self.upstream_secs[i].1 != sec {
                self.close_second(i, stats);
                self.upstream_secs[i].2 = 0;
                self.upstream_secs[i].1 = sec;
            }
        }
    }
}

fn socket_key(a: SocketAddr, buf: &mut [u8; 48]) -> usize {
    use std::io::Write;
    let mut c = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(c, "{a}");
    c.position() as usize
}

/// An NXDOMAIN answer: a step of a search-path walk when the name is an external-looking name
/// (two labels or more) under one of the cluster's search domains: `<ns>.svc.<domain>` (the first
/// step, which names the namespace), `svc.<domain>` or `<domain>`. `namespace`: the asker's, when
/// known. Returns the length of the namespace a first step names, written into `learned`.
fn walk_step(now: Duration, stats: &mut Stats, qname: &[u8], namespace: Option<&[u8]>, domain: &[u8], learned: &mut [u8; 63]) -> usize {
    if domain.len() <= 1 || !wire::is_subdomain(qname, domain) || qname.len() <= domain.len() {
        return 0;
    }
    let head = &qname[..qname.len() - domain.len()];
    // The labels before the domain.
    let mut labels: [(usize, usize); 16] = [(0, 0); 16];
    let mut n = 0;
    let mut i = 0;
    while i < head.len() && head[i] != 0 && n < labels.len() {
        let l = usize::from(head[i]);
        labels[n] = (i + 1, i + 1 + l);
        n += 1;
        i += 1 + l;
    }
    let label = |k: usize| &head[labels[k].0..labels[k].1];
    // X.<ns>.svc: the first step; X.svc: the second; X: the third. X has two labels or more. With
    // the asker's namespace known, X.svc is the first step only when the label before `svc` is it.
    let names_ns = |l: &[u8]| namespace.is_none_or(|ns| ns == l);
    let (first, x_labels, ns) = if n >= 4 && label(n - 1) == b"svc" && names_ns(label(n - 2)) {
        (true, n - 2, Some(label(n - 2)))
    } else if n >= 3 && label(n - 1) == b"svc" {
        // `web.shop.svc.<domain>` is a Service's name that missed, not a walk: X needs 3 labels.
        if n - 1 < 3 {
            return 0;
        }
        (false, n - 1, None)
    } else {
        (false, n, None)
    };
    if x_labels < 2 {
        return 0;
    }
    // The asker's namespace: from the cluster state (or its earlier first step), else the one in
    // this first step's name.
    let asker: &[u8] = match (ns, namespace) {
        (_, Some(n)) => n,
        (Some(n), None) => n,
        (None, None) => b"unknown",
    };
    let mut learned_len = 0;
    if let Some(n) = ns {
        learned_len = n.len().min(63);
        learned[..learned_len].copy_from_slice(&n[..learned_len]);
    }
    let slot = stats.walks.slot(asker);
    if first {
        slot.counts[0].add(now, 1);
    }
    slot.counts[1].add(now, 1);
    // The name walked, dotted, in a fixed buffer.
    let mut name = [0u8; 64];
    let mut len = 0;
    for k in 0..x_labels {
        let l = label(k);
        if len + l.len() + 1 > name.len() {
            break;
        }
        if k > 0 {
            name[len] = b'.';
            len += 1;
        }
        name[len..len + l.len()].copy_from_slice(l);
        len += l.len();
    }
    if first && let Some(s) = stats.walk_names.slot_hashed(&name[..len], super::hash_bytes(&name[..len])) {
        s.counts[0].add(now, 1);
    }
    learned_len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Vec<u8> {
        wire::name_from_str(s).expect("name")
    }

    #[test]
    fn a_search_walk_is_counted_by_namespace_with_its_name() {
        let (mut tr, mut st, cfg) = (Trackers::default(), Stats::default(), DetectConfig::default());
        let d = n("cluster.local");
        let t = Duration::from_secs(1);
        let ip: IpAddr = "10.100.0.4".parse().expect("ip");
        for q in ["www.google.com.shop.svc.cluster.local", "www.google.com.svc.cluster.local", "www.google.com.cluster.local"] {
            tr.on_answer(t, &cfg, &mut st, ip, &n(q), wire::RCODE_NXDOMAIN, false, None, &d);
        }
        // A service lookup that misses is no walk: one label before the namespace.
        tr.on_answer(t, &cfg, &mut st, ip, &n("web.shop.svc.cluster.local"), wire::RCODE_NXDOMAIN, false, None, &d);
        let s = st.walks.used().next().expect("a namespace");
        assert_eq!((s.key(), s.counts[0].total, s.counts[1].total), ("shop", 1, 3));
        assert_eq!(st.walk_names.used().next().map(|x| x.key()), Some("www.google.com"));
    }

    #[test]
    fn the_same_query_again_after_five_seconds_is_a_retransmission_from_its_source() {
        let (mut tr, mut st, cfg) = (Trackers::default(), Stats::default(), DetectConfig::default());
        let src: SocketAddr = "10.100.3.7:40000".parse().expect("addr");
        let q = n("web.default.svc.cluster.local");
        tr.on_query(Duration::from_millis(1000), &cfg, &mut st, &ClusterState::default(), src, false, 7, 1, &q);
        tr.on_query(Duration::from_millis(6001), &cfg, &mut st, &ClusterState::default(), src, false, 7, 1, &q);
        // Another ID is another query.
        tr.on_query(Duration::from_millis(9000), &cfg, &mut st, &ClusterState::default(), src, false, 8, 1, &q);
        let s = st.retransmits.used().next().expect("a source");
        assert_eq!((s.key(), s.counts[0].total, s.counts[2].total), ("10.100.3.0/24", 1, 0));
    }

    #[test]
    fn a_pod_the_cluster_state_knows_is_counted_by_its_node() {
        let (mut tr, mut st, cfg) = (Trackers::default(), Stats::default(), DetectConfig::default());
        let state = ClusterState::parse(
            "items:\n- {kind: Namespace, metadata: {name: shop}}\n- {kind: Pod, metadata: {name: a, namespace: shop}, spec: {nodeName: worker-3}, status: {podIP: 10.100.3.7}}\n",
            "state.yaml",
        )
        .expect("state");
        let q = n("web.default.svc.cluster.local");
        let s = Duration::from_secs;
        // The known pod and one the state does not know, on the same /24.
        for src in ["10.100.3.7:40000", "10.100.3.8:40000"] {
            let src: SocketAddr = src.parse().expect("addr");
            tr.on_query(s(1), &cfg, &mut st, &state, src, false, 7, 1, &q);
            tr.on_query(s(6), &cfg, &mut st, &state, src, false, 7, 1, &q);
        }
        let keys: Vec<&str> = st.retransmits.used().map(|x| x.key()).collect();
        assert_eq!(keys, ["node/worker-3", "10.100.3.0/24"]);
    }

    #[test]
    fn a_lone_half_asked_again_after_a_timeout_is_the_race_and_a_split_pair_is_not() {
        let (mut tr, mut st, cfg) = (Trackers::default(), Stats::default(), DetectConfig::default());
        let q = n("web.default.svc.cluster.local");
        let ms = Duration::from_millis;
        let ip = "10.100.0.9".parse().expect("ip");
        // Two complete pairs: this client sends A and AAAA together.
        for (k, port) in [40000u16, 40001].into_iter().enumerate() {
            let src = SocketAddr::new(ip, port);
            let t = ms(1000 * (k as u64 + 1));
            tr.on_query(t, &cfg, &mut st, &ClusterState::default(), src, false, 1, wire::TYPE_A, &q);
            tr.on_query(t + Duration::from_micros(30), &cfg, &mut st, &ClusterState::default(), src, false, 2, wire::TYPE_AAAA, &q);
        }
        // A lone A never asked again: its AAAA went to another replica (NAT clash resolution)
        // and was answered there.
        tr.on_query(ms(3000), &cfg, &mut st, &ClusterState::default(), SocketAddr::new(ip, 40002), false, 1, wire::TYPE_A, &q);
        tr.sweep(ms(10_000), &cfg, &mut st);
        assert!(st.race.used().next().is_none(), "a split pair is not a loss");
        // A lone A, then 5 s later the same socket asks again (glibc's timeout): the AAAA was lost.
        let src = SocketAddr::new(ip, 40003);
        tr.on_query(ms(11_000), &cfg, &mut st, &ClusterState::default(), src, false, 1, wire::TYPE_A, &q);
        tr.on_query(ms(16_000), &cfg, &mut st, &ClusterState::default(), src, false, 1, wire::TYPE_A, &q);
        tr.on_query(ms(16_000) + Duration::from_micros(30), &cfg, &mut st, &ClusterState::default(), src, false, 2, wire::TYPE_AAAA, &q);
        let s = st.race.used().next().expect("the lone A");
        assert_eq!((s.key(), s.counts[0].total), ("10.100.0.0/24", 1));
        // single-request: the AAAA follows the A's answer a few ms later, not a loss.
        let src = SocketAddr::new(ip, 40004);
        tr.on_query(ms(20_000), &cfg, &mut st, &ClusterState::default(), src, false, 1, wire::TYPE_A, &q);
        tr.on_query(ms(20_300), &cfg, &mut st, &ClusterState::default(), src, false, 2, wire::TYPE_AAAA, &q);
        assert_eq!(st.race.used().next().map(|s| s.counts[0].total), Some(1));
    }

    #[test]
    fn a_client_that_gets_truncated_answers_and_never_asks_over_tcp_ignores_them() {
        let (mut tr, mut st, cfg) = (Trackers::default(), Stats::default(), DetectConfig::default());
        let d = n("cluster.local");
        let (a, b): (IpAddr, IpAddr) = ("10.100.1.5".parse().expect("ip"), "10.100.2.5".parse().expect("ip"));
        let q = n("big.example.org");
        for t in [1, 2] {
            for ip in [a, b] {
                tr.on_answer(Duration::from_secs(t), &cfg, &mut st, ip, &q, 0, true, None, &d);
            }
        }
        // b asks over TCP (to this replica or another: the counts are summed).
        tr.on_query(Duration::from_millis(2100), &cfg, &mut st, &ClusterState::default(), SocketAddr::new(b, 5000), true, 9, 1, &q);
        let f = st.findings(Duration::from_secs(3));
        let subjects: Vec<&str> = f.iter().filter(|f| f.detector == "truncation_ignored").map(|f| f.subject.as_str()).collect();
        assert_eq!(subjects, ["client 10.100.1.5"]);
    }

    #[test]
    fn an_upstream_over_its_budget_counts_the_seconds() {
        let (mut tr, mut st) = (Trackers::default(), Stats::default());
        let cfg = DetectConfig { upstream_budget: Some(10), ..DetectConfig::default() };
        let up: SocketAddr = "10.0.0.2:53".parse().expect("addr");
        for i in 0..25u64 {
            tr.on_upstream(Duration::from_millis(1000 + i * 10), &cfg, &mut st, up);
        }
        for i in 0..5u64 {
            tr.on_upstream(Duration::from_millis(2000 + i * 10), &cfg, &mut st, up);
        }
        tr.sweep(Duration::from_secs(3), &cfg, &mut st);
        let s = st.upstreams.used().next().expect("upstream");
        assert_eq!((s.counts[0].total, s.counts[1].total), (30, 1));
        assert_eq!(s.peak, 25);
    }
}
