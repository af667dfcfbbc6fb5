//! `stale_conntrack`: UDP conntrack entries on a node that still send a DNS Service's traffic to
//! an address that is no longer one of its endpoints (kube-proxy's cleanup was late, failed, or had
//! no `conntrack` binary: docs/sources.md#stale-udp-conntrack). Every query such a client sends is
//! lost, and each one refreshes the entry, so it never ends while the client keeps its socket.
//! No DNS server sees these queries; only the node's table shows them, so this detector runs where
//! the node's table is readable: ndots in node-local mode (host network, NET_ADMIN) and, in the
//! simulator, on every node.
//!
//! Sans-IO: each scan hands in the node's UDP flows to port 53 and the DNS Services as the API has
//! them. A flow is reported when its DNAT target has been out of its Service's endpoints for at
//! least `GRACE` (kube-proxy's own sync gets that long) and its entry was refreshed since the
//! previous scan (its expiry moved later: a packet went through it), so an entry merely waiting to
//! expire is not a finding.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::stats::Stats;

/// How long an address must have been out of the endpoints (since the last scan that saw it)
/// before its flows count as stale: more than this.
pub const GRACE: Duration = Duration::from_secs(10);
/// Flows towards non-endpoints remembered between scans (a bound on memory, not on detection:
/// past it, the first this many are followed).
const MAX_FLOWS: usize = 4096;
/// Addresses remembered as former endpoints.
const MAX_ADDRS: usize = 1024;

/// One UDP conntrack entry to port 53 as the node's table shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtFlow {
    /// The client's address and port (the original direction's source).
    pub client: SocketAddr,
    /// Where the client sent it (the original direction's destination: a Service address).
    pub service: SocketAddr,
    /// Where DNAT sent it (the reply direction's source).
    pub backend: IpAddr,
    /// Time left before the entry expires.
    pub expires_in: Duration,
}

impl CtFlow {
    /// The Service of `services` this flow was sent to, when DNAT took it to an address that is
    /// not one of that Service's endpoints (the flows this detector follows).
    pub fn off_endpoints<'a>(&self, services: &'a [DnsService]) -> Option<&'a DnsService> {
        let svc = services.iter().find(|s| s.ips.contains(&self.service.ip()))?;
        (self.backend != self.service.ip() && !svc.endpoints.contains(&self.backend)).then_some(svc)
    }
}

/// A DNS Service as the API has it: its name, cluster IPs and ready endpoints' addresses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DnsService {
    pub name: String,
    pub ips: Vec<IpAddr>,
    pub endpoints: Vec<IpAddr>,
}

/// What the detector remembers between scans.
#[derive(Debug, Clone, Default)]
pub struct StaleFlows {
    /// When each address was last seen among a DNS Service's endpoints.
    last_endpoint: BTreeMap<IpAddr, Duration>,
    /// When the detector first saw the Services (addresses never seen as endpoints count from here).
    since: Option<Duration>,
    /// Flows towards a non-endpoint at the previous scan: when their entry was to expire.
    seen: BTreeMap<(SocketAddr, SocketAddr), Duration>,
}

/// The subject of a stale flow's finding: `<service> <ip:port> via <backend>`.
fn subject(svc: &str, service: SocketAddr, backend: IpAddr, buf: &mut String) {
    buf.clear();
    let _ = write!(buf, "{svc} {service} via {backend}");
}

impl StaleFlows {
    /// One scan of the node's table at `now`. Counts into `stats.stale` (by Service address and
    /// former endpoint: flows found stale at this scan as the gauge, observations as the count) and
    /// `stats.stale_clients` (by former endpoint and client).
    pub fn handle_scan(&mut self, now: Duration, services: &[DnsService], flows: &[CtFlow], stats: &mut Stats) {
        if services.iter().all(|s| s.ips.is_empty()) {
            // The API has not told us the Services yet: nothing can be judged.
            return;
        }
        let since = *self.since.get_or_insert(now);
        for s in services {
            for ep in &s.endpoints {
                self.last_endpoint.insert(*ep, now);
            }
        }
        while self.last_endpoint.len() > MAX_ADDRS {
            let oldest = self.last_endpoint.iter().min_by_key(|(ip, t)| (**t, **ip)).map(|(ip, _)| *ip);
            oldest.map(|ip| self.last_endpoint.remove(&ip));
        }
        for s in stats.stale.slots.iter_mut() {
            s.peak = 0;
        }
        let mut seen = BTreeMap::new();
        let mut key = String::new();
        for f in flows {
            let Some(svc) = f.off_endpoints(services) else { continue };
            let expires = now + f.expires_in;
            let id = (f.client, f.service);
            if seen.len() < MAX_FLOWS {
                seen.insert(id, expires);
            }
            let gone_since = self.last_endpoint.get(&f.backend).copied().unwrap_or(since);
            let refreshed = self.seen.get(&id).is_some_and(|before| expires > *before + Duration::from_millis(500));
            if now.saturating_sub(gone_since) <= GRACE || !refreshed {
                continue;
            }
            subject(&svc.name, f.service, f.backend, &mut key);
            let slot = stats.stale.slot(key.as_bytes());
            slot.counts[0].add(now, 1);
            slot.peak += 1;
            key.clear();
            let _ = write!(key, "{} {}", f.backend, f.client);
            stats.stale_clients.slot(key.as_bytes()).counts[0].add(now, 1);
        }
        self.seen = seen;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn svc(endpoints: &[&str]) -> Vec<DnsService> {
        vec![DnsService {
            name: "kube-dns".into(),
            ips: vec!["10.96.0.10".parse().expect("ip")],
            endpoints: endpoints.iter().map(|e| e.parse().expect("ip")).collect(),
        }]
    }

    fn flow(port: u16, backend: &str, expires_in: u64) -> CtFlow {
        CtFlow {
            client: SocketAddr::new("10.244.2.7".parse().expect("ip"), port),
            service: "10.96.0.10:53".parse().expect("addr"),
            backend: backend.parse().expect("ip"),
            expires_in: secs(expires_in),
        }
    }

    /// Scans every 5 s from `from` to `to`, the client refreshing its entry (30 s left at each).
    fn scan(d: &mut StaleFlows, st: &mut Stats, from: u64, to: u64, eps: &[&str], flows: &[CtFlow]) {
        for t in (from..=to).step_by(5) {
            d.handle_scan(secs(t), &svc(eps), flows, st);
        }
    }

    #[test]
    fn a_refreshed_entry_to_a_removed_endpoint_is_reported_with_its_client() {
        let (mut d, mut st) = (StaleFlows::default(), Stats::default());
        let pinned = [flow(40000, "10.244.1.5", 30), flow(41000, "10.244.1.6", 30)];
        scan(&mut d, &mut st, 0, 10, &["10.244.1.5", "10.244.1.6"], &pinned);
        assert!(st.findings(secs(10)).is_empty(), "both endpoints live");
        // 10.244.1.5 leaves at 15 s; inside the grace kube-proxy may still clean up.
        scan(&mut d, &mut st, 15, 20, &["10.244.1.6"], &pinned);
        assert!(st.findings(secs(20)).is_empty(), "within the grace");
        scan(&mut d, &mut st, 25, 30, &["10.244.1.6"], &pinned);
        let f = st.findings(secs(30));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!((f[0].detector, f[0].subject.as_str()), ("stale_conntrack", "kube-dns 10.96.0.10:53 via 10.244.1.5"));
        assert!(f[0].message.contains("10.244.2.7:40000") && !f[0].message.contains("41000"), "{}", f[0].message);
        assert!(f[0].message.ends_with("conntrack -D -p udp --orig-dst 10.96.0.10 --reply-src 10.244.1.5"), "{}", f[0].message);
        let mut o = String::new();
        st.render(&mut o);
        assert!(o.contains("ndots_stale_conntrack_flows{flow=\"kube-dns 10.96.0.10:53 via 10.244.1.5\"} 1"), "{o}");
    }

    #[test]
    fn an_entry_left_to_expire_or_deleted_is_not() {
        let (mut d, mut st) = (StaleFlows::default(), Stats::default());
        scan(&mut d, &mut st, 0, 0, &["10.244.1.5"], &[flow(40000, "10.244.1.5", 30)]);
        // Not refreshed: its time left shrinks with the clock.
        for t in [20u64, 25, 30] {
            d.handle_scan(secs(t), &svc(&["10.244.1.6"]), &[flow(40000, "10.244.1.5", 50 - t)], &mut st);
        }
        assert!(st.findings(secs(30)).is_empty());
        // Deleted (kube-proxy cleaned up): the client's next packet went to a live endpoint.
        scan(&mut d, &mut st, 35, 60, &["10.244.1.6"], &[flow(40000, "10.244.1.6", 30)]);
        assert!(st.findings(secs(60)).is_empty());
        let mut o = String::new();
        st.render(&mut o);
        assert!(!o.contains("ndots_stale_conntrack_flows{"), "{o}");
    }

    #[test]
    fn flows_to_other_services_and_unsynced_state_are_ignored() {
        let (mut d, mut st) = (StaleFlows::default(), Stats::default());
        let other = CtFlow { service: "10.96.0.99:53".parse().expect("addr"), ..flow(40000, "10.244.9.9", 30) };
        scan(&mut d, &mut st, 0, 60, &["10.244.1.6"], &[other]);
        for t in (0..=60).step_by(5) {
            d.handle_scan(secs(t), &[], &[flow(40001, "10.244.9.9", 30)], &mut st);
        }
        assert!(st.findings(secs(60)).is_empty());
    }
}
