//! The detectors' counters: fixed-size top-K tables of subjects (a namespace, a source node or /24, a
//! client, an upstream) with their counts in 30 s windows, summed over workers like the metrics,
//! rendered as `ndots_*` metrics and read as findings.

use std::fmt::Write as _;
use std::time::Duration;

use super::{KINDS, RACE, RETRANSMIT, SEARCH_WALK, STALE_CONNTRACK, TRUNCATION, UPSTREAM_BUDGET};

/// The window counts are kept in; "recent" is this window and the previous one.
pub const WINDOW: Duration = Duration::from_secs(30);
const KEY: usize = 64;

/// A count with its total and the events of the current and previous window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Count {
    pub total: u64,
    win: u64,
    cur: u64,
    prev: u64,
}

impl Count {
    fn roll(&mut self, w: u64) {
        if w != self.win {
            self.prev = if w == self.win + 1 { self.cur } else { 0 };
            self.cur = 0;
            self.win = w;
        }
    }

    pub fn add(&mut self, now: Duration, n: u64) {
        self.roll(now.as_secs() / WINDOW.as_secs());
        self.cur += n;
        self.total += n;
    }

    /// Events in this window and the previous one (up to a minute).
    pub fn recent(&self, now: Duration) -> u64 {
        let w = now.as_secs() / WINDOW.as_secs();
        if w == self.win {
            self.cur + self.prev
        } else if w == self.win + 1 {
            self.cur
        } else {
            0
        }
    }

    fn merge(&mut self, o: &Count) {
        self.total += o.total;
        if o.win == self.win {
            self.cur += o.cur;
            self.prev += o.prev;
        } else if o.win > self.win {
            let (t, c, p, w) = (self.total, o.cur, o.prev + if o.win == self.win + 1 { self.cur } else { 0 }, o.win);
            *self = Count { total: t, win: w, cur: c, prev: p };
        } else if o.win + 1 == self.win {
            self.prev += o.cur;
        }
    }
}

/// One subject of a top-K table and its counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slot<const N: usize> {
    key: [u8; KEY],
    len: u8,
    pub counts: [Count; N],
    /// When its finding was last logged.
    pub logged: Option<Duration>,
    /// Upstream packets: the highest per-second count seen. Stale flows: the flows at the last scan.
    pub peak: u64,
    /// Misses of other keys hashed to this slot since it was taken (`TopK::slot_hashed`).
    contest: u64,
}

impl<const N: usize> Slot<N> {
    pub fn key(&self) -> &str {
        std::str::from_utf8(&self.key[..usize::from(self.len)]).unwrap_or("?")
    }
}

/// At most K subjects; a new one takes an empty slot, else evicts the one with the fewest events.
#[derive(Debug, Clone, PartialEq)]
pub struct TopK<const N: usize> {
    pub slots: Vec<Slot<N>>,
    /// The slot used last: most traffic comes from few subjects, so it is tried first.
    last: usize,
}

impl<const N: usize> TopK<N> {
    fn new(k: usize) -> Self {
        TopK { slots: vec![Slot { key: [0; KEY], len: 0, counts: [Count::default(); N], logged: None, peak: 0, contest: 0 }; k], last: 0 }
    }

    /// The slot of `key` (truncated to 64 bytes), made if needed. No allocation.
    pub fn slot(&mut self, key: &[u8]) -> &mut Slot<N> {
        let key = &key[..key.len().min(KEY)];
        let hit = |s: &Slot<N>| usize::from(s.len) == key.len() && &s.key[..key.len()] == key;
        if self.slots.get(self.last).is_some_and(hit) {
            return &mut self.slots[self.last];
        }
        let i = match self.slots.iter().position(hit) {
            Some(i) => i,
            None => {
                let i = self
                    .slots
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, s)| if s.len == 0 { 0 } else { 1 + s.counts.iter().map(|c| c.total).sum::<u64>() })
                    .map_or(0, |(i, _)| i);
                let s = &mut self.slots[i];
                s.key = [0; KEY];
                s.key[..key.len()].copy_from_slice(key);
                s.len = key.len() as u8;
                s.counts = [Count::default(); N];
                s.logged = None;
                s.peak = 0;
                s.contest = 0;
                i
            }
        };
        self.last = i;
        &mut self.slots[i]
    }

    fn merge(&mut self, o: &TopK<N>) {
        for s in o.slots.iter().filter(|s| s.len > 0) {
            let mine = self.slot(&s.key[..usize::from(s.len)]);
            for (a, b) in mine.counts.iter_mut().zip(&s.counts) {
                a.merge(b);
            }
            mine.logged = mine.logged.max(s.logged);
            mine.peak = mine.peak.max(s.peak);
        }
    }

    /// For keys that change at every call (walked names): the slot `hash` maps to, if it holds
    /// `key`, is empty, or has been contested by other keys more often than it was counted (a
    /// frequent key keeps its slot, a rare one gives way). O(1), no scan; None: `key` lost.
    pub fn slot_hashed(&mut self, key: &[u8], hash: u64) -> Option<&mut Slot<N>> {
        let key = &key[..key.len().min(KEY)];
        let i = (hash % self.slots.len() as u64) as usize;
        let s = &mut self.slots[i];
        let mine = usize::from(s.len) == key.len() && &s.key[..key.len()] == key;
        if !mine {
            s.contest += 1;
            if s.len > 0 && s.contest <= s.counts[0].total {
                return None;
            }
            s.key = [0; KEY];
            s.key[..key.len()].copy_from_slice(key);
            s.len = key.len() as u8;
            s.counts = [Count::default(); N];
            s.logged = None;
            s.peak = 0;
            s.contest = 0;
        }
        Some(s)
    }

    pub fn used(&self) -> impl Iterator<Item = &Slot<N>> {
        self.slots.iter().filter(|s| s.len > 0)
    }
}

/// Every detector's counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// By the asking namespace: [walks (first step), NXDOMAIN steps].
    pub walks: TopK<2>,
    /// By the name walked: [steps].
    pub walk_names: TopK<1>,
    /// By source (`node/<name>` or /24): [after about 5 s, about 2.5 s, other intervals].
    pub retransmits: TopK<3>,
    /// By client: [truncated answers]. With `tcp_clients` ([queries over TCP] by client): a client
    /// that gets truncated answers and never asks over TCP ignores TC=1. Judged only by a server
    /// that sees all of its clients' TCP (`replicas` 1); across replicas by summing the metrics.
    pub truncated: TopK<1>,
    pub tcp_clients: TopK<1>,
    /// The replicas this server's clients' connections are spread over (its Service's ready
    /// endpoints; 1 for a node-local cache or when unknown).
    pub replicas: u32,
    /// By upstream: [packets, seconds over the budget, exchanges unanswered]; `peak`: packets/s.
    pub upstreams: TopK<3>,
    /// By source (`node/<name>` or /24): [half pairs asked again after a timeout].
    pub race: TopK<1>,
    /// By `<service> <ip:port> via <former endpoint>`: [stale flows seen at a scan]; `peak`: the
    /// flows at the last scan. With `stale_clients` (by `<former endpoint> <client>`).
    pub stale: TopK<1>,
    pub stale_clients: TopK<1>,
    pub budget: Option<u32>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            walks: TopK::new(16),
            walk_names: TopK::new(32),
            retransmits: TopK::new(16),
            truncated: TopK::new(16),
            tcp_clients: TopK::new(64),
            upstreams: TopK::new(16),
            race: TopK::new(16),
            stale: TopK::new(16),
            stale_clients: TopK::new(64),
            replicas: 1,
            budget: None,
        }
    }
}

/// A pattern seen in live traffic, what it is about, and what to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub detector: &'static str,
    /// A namespace, a source node or /24, a client, an upstream.
    pub subject: String,
    /// Events in the last minute (up to two 30 s windows).
    pub recent: u64,
    pub total: u64,
    pub message: String,
    pub fix: &'static str,
}

impl Finding {
    pub fn json(&self) -> String {
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        format!(
            r#"{{"detector":"{}","subject":"{}","recent":{},"total":{},"message":"{}","fix":"{}"}}"#,
            self.detector,
            esc(&self.subject),
            self.recent,
            self.total,
            esc(&self.message),
            esc(self.fix)
        )
    }
}

pub const FIX_WALK: &str = "set `options ndots:2` in the pods' dnsConfig (or end external names with a dot), or enable autopath";
pub const FIX_RETRANSMIT: &str = "look at that node: conntrack insert_failed and drops (the insertion race: single-request-reopen, node-local-dns, kernel >= 5.0), packet loss on its links";
pub const FIX_TRUNCATION: &str = "the client ignores TC=1 (libevent's evdns before 2.2, PgBouncer): use a resolver that retries over TCP, or keep answers under 512 bytes";
pub const FIX_BUDGET: &str =
    "cache in front of the upstream (cache, node-local-dns), fewer search-path walks (ndots:2), or spread the queries over more interfaces";
pub const FIX_STALE: &str = "kube-proxy did not delete the UDP conntrack entries of a removed DNS endpoint (its sync was late or failed, it has no conntrack binary, or it is 1.32 to 1.36 and the Service has no endpoints): delete them with the command in the finding, then fix kube-proxy's cleanup; clients that keep one UDP socket (Envoy, c-ares, dnsmasq) stay cut off until then";
pub const FIX_RACE: &str = "if the clients' node counts conntrack insert_failed, the insertion race: `options single-request-reopen` (glibc), node-local-dns, or a kernel with the fixes (5.0; 6.12 with NFQUEUE); otherwise look for loss on that node's links or a replica that does not answer";

/// The pods a source key stands for: `node/<name>` (the cluster state knew the pod) or an address
/// range.
fn pods_at(key: &str) -> String {
    if key.starts_with("node/") { format!("pods on {key}") } else { format!("pods in {key}") }
}

impl Stats {
    pub fn merge(&mut self, o: &Stats) {
        self.walks.merge(&o.walks);
        self.walk_names.merge(&o.walk_names);
        self.retransmits.merge(&o.retransmits);
        self.truncated.merge(&o.truncated);
        self.tcp_clients.merge(&o.tcp_clients);
        self.upstreams.merge(&o.upstreams);
        self.race.merge(&o.race);
        self.stale.merge(&o.stale);
        self.stale_clients.merge(&o.stale_clients);
        self.budget = self.budget.or(o.budget);
        self.replicas = self.replicas.max(o.replicas);
    }

    /// The current findings: subjects with enough events in the last minute.
    pub fn findings(&self, now: Duration) -> Vec<Finding> {
        let mut out = Vec::new();
        for s in self.walks.used() {
            let (walks, steps) = (s.counts[0].recent(now), s.counts[1].recent(now));
            if walks >= 5 {
                let mut top: Vec<&Slot<1>> = self.walk_names.used().filter(|n| n.counts[0].recent(now) > 0).collect();
                top.sort_by(|a, b| b.counts[0].recent(now).cmp(&a.counts[0].recent(now)).then(a.key().cmp(b.key())));
                let names: Vec<String> = top.iter().take(3).map(|n| format!("{} ({})", n.key(), n.counts[0].recent(now))).collect();
                out.push(Finding {
                    detector: KINDS[SEARCH_WALK],
                    subject: format!("namespace {}", s.key()),
                    recent: walks,
                    total: s.counts[0].total,
                    message: format!(
                        "namespace {} walks the search path for external names: {walks} walks in the last minute, {:.1} NXDOMAIN answers each before the name itself; walked: {}",
                        s.key(),
                        steps as f64 / walks.max(1) as f64,
                        if names.is_empty() { "-".to_string() } else { names.join(", ") }
                    ),
                    fix: FIX_WALK,
                });
            }
        }
        for s in self.retransmits.used() {
            let [five, two, other] = [s.counts[0].recent(now), s.counts[1].recent(now), s.counts[2].recent(now)];
            let n = five + two + other;
            if n >= 3 {
                out.push(Finding {
                    detector: KINDS[RETRANSMIT],
                    subject: format!("source {}", s.key()),
                    recent: n,
                    total: s.counts.iter().map(|c| c.total).sum(),
                    message: format!(
                        "{} sent {n} queries again in the last minute ({five} after about 5 s: glibc's or Go's timeout; {two} after about 2.5 s: musl's retry; {other} other): their queries or answers are lost",
                        pods_at(s.key())
                    ),
                    fix: FIX_RETRANSMIT,
                });
            }
        }
        for s in self.truncated.used() {
            let tc = s.counts[0].recent(now);
            let tcp = self.tcp_clients.used().find(|c| c.key() == s.key()).map_or(0, |c| c.counts[0].total);
            // One of several replicas sees only the TCP retries the Service sends it, and a client
            // that keeps its TCP connection (c-ares, sources.md#c-ares) sends them all to one
            // replica: only a server that sees all of its clients' traffic judges. Across replicas, the per-client
            // metrics below do (the README's alert rule).
            if self.replicas <= 1 && tc >= 2 && tcp == 0 {
                out.push(Finding {
                    detector: KINDS[TRUNCATION],
                    subject: format!("client {}", s.key()),
                    recent: tc,
                    total: s.counts[0].total,
                    message: format!(
                        "client {} got {tc} truncated answers (TC=1) in the last minute ({} in all) and never asked over TCP: it takes the truncated answer or fails",
                        s.key(),
                        s.counts[0].total
                    ),
                    fix: FIX_TRUNCATION,
                });
            }
        }
        if let Some(budget) = self.budget {
            for s in self.upstreams.used() {
                let over = s.counts[1].recent(now);
                if over >= 1 {
                    let peak = s.peak;
                    out.push(Finding {
                        detector: KINDS[UPSTREAM_BUDGET],
                        subject: format!("upstream {}", s.key()),
                        recent: over,
                        total: s.counts[1].total,
                        message: format!(
                            "upstream {} received more than its budget of {budget} packets/s in {over} of the last seconds (peak {peak}/s); {} exchanges went unanswered: over the budget the cloud drops packets without a word",
                            s.key(),
                            s.counts[2].recent(now)
                        ),
                        fix: FIX_BUDGET,
                    });
                }
            }
        }
        for s in self.race.used() {
            let n = s.counts[0].recent(now);
            if n >= 2 {
                out.push(Finding {
                    detector: KINDS[RACE],
                    subject: format!("source {}", s.key()),
                    recent: n,
                    total: s.counts[0].total,
                    message: format!(
                        "{} that send A and AAAA together had {n} pairs arrive half here and ask again after a timeout in the last minute: the other query or its answer was lost (dropped on the way, as the conntrack insertion race drops it, or sent to another replica that did not answer)",
                        pods_at(s.key())
                    ),
                    fix: FIX_RACE,
                });
            }
        }
        for s in self.stale.used() {
            let n = s.counts[0].recent(now);
            if n >= 1 {
                // The key is `<service> <ip:port> via <former endpoint>`.
                let (service, backend) = s.key().split_once(" via ").unwrap_or((s.key(), ""));
                let vip = service.split(' ').nth(1).and_then(|a| a.rsplit_once(':')).map_or("", |(ip, _)| ip);
                let vip = vip.trim_start_matches('[').trim_end_matches(']');
                let mut clients: Vec<&str> = self
                    .stale_clients
                    .used()
                    .filter(|c| c.counts[0].recent(now) > 0)
                    .filter_map(|c| c.key().split_once(' ').filter(|(b, _)| *b == backend).map(|(_, client)| client))
                    .collect();
                clients.sort_unstable();
                let more = clients.len().saturating_sub(8);
                clients.truncate(8);
                out.push(Finding {
                    detector: KINDS[STALE_CONNTRACK],
                    subject: s.key().to_string(),
                    recent: n,
                    total: s.counts[0].total,
                    message: format!(
                        "conntrack on this node pins {} to {backend}, which is no longer an endpoint: every query sent on {} is lost; clients: {}{}; to free them: conntrack -D -p udp --orig-dst {} --reply-src {backend}",
                        match s.peak {
                            0 => format!("client sockets of {service} (in the last minute; none at the last scan)"),
                            1 => format!("1 client socket of {service}"),
                            n => format!("{n} client sockets of {service}"),
                        },
                        if s.peak == 1 { "it" } else { "them" },
                        clients.join(", "),
                        if more > 0 { format!(" and {more} more") } else { String::new() },
                        vip,
                    ),
                    fix: FIX_STALE,
                });
            }
        }
        out
    }

    /// The `ndots_*` metrics (Prometheus text format).
    pub fn render(&self, o: &mut String) {
        family(
            o,
            "ndots_search_walks_total",
            "Search-path walks for external names seen (first NXDOMAIN step), by source namespace.",
            "counter",
        );
        per_subject(o, "ndots_search_walks_total", "namespace", &self.walks, |s| s.counts[0].total);
        family(o, "ndots_search_walk_nxdomain_total", "NXDOMAIN answers of search-path walks, by source namespace.", "counter");
        per_subject(o, "ndots_search_walk_nxdomain_total", "namespace", &self.walks, |s| s.counts[1].total);
        family(
            o,
            "ndots_client_retransmits_total",
            "Queries a client sent again (same socket, ID and question), by source (node/<name> when the pod is known, else its /24) and interval.",
            "counter",
        );
        for s in self.retransmits.used() {
            for (i, interval) in ["5s", "2.5s", "other"].iter().enumerate() {
                let _ =
                    writeln!(o, "ndots_client_retransmits_total{{source=\"{}\",interval=\"{interval}\"}} {}", s.key(), s.counts[i].total);
            }
        }
        family(o, "ndots_truncated_answers_total", "UDP answers sent with TC=1.", "counter");
        let _ = writeln!(o, "ndots_truncated_answers_total {}", self.truncated.used().map(|s| s.counts[0].total).sum::<u64>());
        family(o, "ndots_truncated_answers_ignored_total", "Truncated answers to clients that never asked over TCP.", "counter");
        let ignored =
            self.truncated.used().filter(|s| !self.tcp_clients.used().any(|c| c.key() == s.key())).map(|s| s.counts[0].total).sum::<u64>();
        let _ = writeln!(o, "ndots_truncated_answers_ignored_total {ignored}");
        family(o, "ndots_client_truncated_answers_total", "UDP answers sent with TC=1, by client (the top clients).", "counter");
        per_subject(o, "ndots_client_truncated_answers_total", "client", &self.truncated, |s| s.counts[0].total);
        family(o, "ndots_client_tcp_queries_total", "Queries over TCP, by client (the top clients).", "counter");
        per_subject(o, "ndots_client_tcp_queries_total", "client", &self.tcp_clients, |s| s.counts[0].total);
        family(o, "ndots_upstream_packets_total", "Packets sent to each upstream.", "counter");
        per_subject(o, "ndots_upstream_packets_total", "to", &self.upstreams, |s| s.counts[0].total);
        family(o, "ndots_upstream_peak_packets_per_second", "The most packets sent to each upstream in one second.", "gauge");
        per_subject(o, "ndots_upstream_peak_packets_per_second", "to", &self.upstreams, |s| s.peak);
        family(
            o,
            "ndots_upstream_over_budget_seconds_total",
            "Seconds in which an upstream received more packets than its budget.",
            "counter",
        );
        per_subject(o, "ndots_upstream_over_budget_seconds_total", "to", &self.upstreams, |s| s.counts[1].total);
        family(o, "ndots_upstream_unanswered_total", "Exchanges with an upstream that timed out (silence, not an error).", "counter");
        per_subject(o, "ndots_upstream_unanswered_total", "to", &self.upstreams, |s| s.counts[2].total);
        family(
            o,
            "ndots_race_half_pairs_total",
            "A/AAAA pairs that arrived half and whose client asked again after a timeout, by source (node/<name> or /24).",
            "counter",
        );
        per_subject(o, "ndots_race_half_pairs_total", "source", &self.race, |s| s.counts[0].total);
        family(
            o,
            "ndots_stale_conntrack_flows",
            "UDP flows on this node pinned by conntrack to an address that left a DNS Service's endpoints, at the last scan.",
            "gauge",
        );
        per_subject(o, "ndots_stale_conntrack_flows", "flow", &self.stale, |s| s.peak);
        family(
            o,
            "ndots_stale_conntrack_observations_total",
            "Scans that found a UDP flow pinned to a former DNS endpoint and still in use.",
            "counter",
        );
        per_subject(o, "ndots_stale_conntrack_observations_total", "flow", &self.stale, |s| s.counts[0].total);
    }
}

/// A metric family's HELP and TYPE lines.
fn family(o: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One sample per subject of a table, labelled `label="<subject>"`.
fn per_subject<const N: usize>(o: &mut String, name: &str, label: &str, t: &TopK<N>, value: impl Fn(&Slot<N>) -> u64) {
    for s in t.used() {
        let _ = writeln!(o, "{name}{{{label}=\"{}\"}} {}", s.key(), value(s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_roll_by_window_and_merge_across_workers() {
        let t = |s: u64| Duration::from_secs(s);
        let mut a = Count::default();
        a.add(t(5), 2);
        a.add(t(35), 1);
        assert_eq!((a.recent(t(40)), a.recent(t(65)), a.recent(t(95)), a.total), (3, 1, 0, 3));
        let mut b = Count::default();
        b.add(t(36), 4);
        a.merge(&b);
        assert_eq!((a.recent(t(40)), a.total), (7, 7));
    }

    #[test]
    fn truncation_ignored_is_judged_only_where_all_of_a_clients_tcp_arrives() {
        let t = Duration::from_secs(1);
        let fired = |st: &Stats| st.findings(t).iter().any(|f| f.detector == "truncation_ignored");
        let mut st = Stats::default();
        st.truncated.slot(b"10.100.1.5").counts[0].add(t, 2);
        assert!(fired(&st), "alone (node-local, a sole replica), two are enough");
        st.replicas = 2;
        assert!(!fired(&st), "one of two replicas: its TCP retries may all go to the other");
        st.replicas = 1;
        st.tcp_clients.slot(b"10.100.1.5").counts[0].add(t, 1);
        assert!(!fired(&st), "a client that came over TCP honours TC");
    }

    #[test]
    fn every_family_is_rendered_with_its_subjects() {
        let t = Duration::from_secs(1);
        let mut st = Stats::default();
        let up = st.upstreams.slot(b"10.0.0.2:53");
        up.counts[0].add(t, 30);
        up.counts[1].add(t, 2);
        up.counts[2].add(t, 4);
        up.peak = 25;
        st.race.slot(b"10.100.0.0/24").counts[0].add(t, 3);
        st.truncated.slot(b"10.100.1.5").counts[0].add(t, 7);
        let mut o = String::new();
        st.render(&mut o);
        for line in [
            "# TYPE ndots_upstream_peak_packets_per_second gauge",
            "ndots_upstream_packets_total{to=\"10.0.0.2:53\"} 30",
            "ndots_upstream_peak_packets_per_second{to=\"10.0.0.2:53\"} 25",
            "ndots_upstream_over_budget_seconds_total{to=\"10.0.0.2:53\"} 2",
            "ndots_upstream_unanswered_total{to=\"10.0.0.2:53\"} 4",
            "ndots_race_half_pairs_total{source=\"10.100.0.0/24\"} 3",
            "ndots_truncated_answers_total 7",
            "ndots_truncated_answers_ignored_total 7",
            "ndots_client_truncated_answers_total{client=\"10.100.1.5\"} 7",
        ] {
            assert!(o.lines().any(|l| l == line), "{line} missing:\n{o}");
        }
    }

    #[test]
    fn a_full_table_evicts_the_quietest_subject() {
        let mut k: TopK<1> = TopK::new(2);
        k.slot(b"a").counts[0].add(Duration::ZERO, 5);
        k.slot(b"b").counts[0].add(Duration::ZERO, 1);
        k.slot(b"c").counts[0].add(Duration::ZERO, 1);
        let keys: Vec<&str> = k.used().map(Slot::key).collect();
        assert_eq!(keys, ["a", "c"]);
    }
}
