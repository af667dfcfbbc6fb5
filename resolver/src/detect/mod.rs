//! Detectors: the horror stories, seen in the traffic the server already handles (the `detect`
//! plugin, on unless `detect off`).
//!
//! - `search_walk`: NXDOMAIN answers to an external-looking name under a cluster search domain
//!   (`www.google.com.shop.svc.cluster.local.`): a pod's resolver walking its search list (ndots:5),
//!   by source namespace, with the names walked.
//! - `retransmit`: the same query (client address and port, ID, question) again after 0.5 to 12 s: a
//!   query or answer lost on the way. By interval (5 s: glibc's and Go's timeout; 2.5 s: musl's
//!   retry; other) and by source: the client's node when the cluster state knows the pod (`pods
//!   verified`), else its /24 (a node's pod range with most CNIs).
//! - `truncation_ignored`: a UDP answer with TC=1 whose client never asked again over TCP.
//! - `upstream_budget`: packets per second to each upstream against a budget (`upstream_budget N`,
//!   the AWS ENI's 1024 packets/s), and how many exchanges went unanswered.
//! - `race`: half of an A/AAAA pair (same client socket, same name) from a client that sends pairs,
//!   asked again from that socket after a timeout: the other half never arrived, the conntrack
//!   insertion race's signature (a half whose other query reached another replica is answered and
//!   not asked again).
//! - `stale_conntrack`: UDP conntrack entries on the node that pin a client to an address that
//!   left the DNS Service's endpoints, still in use (`conntrack`; node-local mode reads the node's
//!   table, the simulator every node's).
//!
//! State is fixed-size (tables indexed by a hash, top-K subjects with eviction of the smallest);
//! nothing on the query path allocates. `Stats` holds the counters (summed over workers like the
//! metrics); `Trackers` the per-worker recent-query tables.

pub mod conntrack;
mod stats;
mod track;

pub use conntrack::{CtFlow, DnsService, StaleFlows};
pub use stats::{Finding, Stats};
pub use track::Trackers;

/// Which findings to log now: each (detector, subject) at most once a minute.
#[derive(Debug, Default)]
pub struct Throttle {
    last: std::collections::BTreeMap<(&'static str, String), std::time::Duration>,
}

impl Throttle {
    pub const EVERY: std::time::Duration = std::time::Duration::from_secs(60);

    pub fn due(&mut self, now: std::time::Duration, findings: Vec<Finding>) -> Vec<Finding> {
        findings
            .into_iter()
            .filter(|f| {
                let key = (f.detector, f.subject.clone());
                let due = self.last.get(&key).is_none_or(|t| now.saturating_sub(*t) >= Self::EVERY);
                if due {
                    self.last.insert(key, now);
                }
                due
            })
            .collect()
    }
}

/// The detectors, in `Stats` order.
pub const KINDS: [&str; 6] = ["search_walk", "retransmit", "truncation_ignored", "upstream_budget", "race", "stale_conntrack"];
pub const SEARCH_WALK: usize = 0;
pub const RETRANSMIT: usize = 1;
pub const TRUNCATION: usize = 2;
pub const UPSTREAM_BUDGET: usize = 3;
pub const RACE: usize = 4;
pub const STALE_CONNTRACK: usize = 5;

/// The `detect` plugin's configuration: which detectors run, the upstream packet budget.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectConfig {
    pub on: [bool; KINDS.len()],
    /// Packets per second each upstream may receive (None: no budget, the rate is still measured).
    pub upstream_budget: Option<u32>,
    /// How often node-local mode reads the node's conntrack table (`stale_conntrack`).
    pub conntrack_scan: std::time::Duration,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig { on: [true; KINDS.len()], upstream_budget: None, conntrack_scan: std::time::Duration::from_secs(10) }
    }
}

/// Hashes a name for the tables: foldhash with a fixed seed (stable across runs and processes,
/// several bytes per step; no allocation).
pub(crate) fn hash_bytes(b: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x6e64_6f74_7321).hash_one(b)
}

/// Mixes a value into a hash: splitmix64's finalizer, so every input bit reaches the low bits the
/// tables index by (a plain multiply leaves a 32-bit address out of them).
pub(crate) fn mix(h: u64, v: u64) -> u64 {
    let mut z = h ^ v.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// An address as one number for `mix`.
pub(crate) fn ip_hash(ip: std::net::IpAddr) -> u64 {
    match ip {
        std::net::IpAddr::V4(v4) => u64::from(u32::from(v4)),
        std::net::IpAddr::V6(v6) => {
            let n = u128::from(v6);
            mix(n as u64, (n >> 64) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbouring_addresses_spread_over_a_small_table() {
        let slots: std::collections::BTreeSet<u64> =
            (1..=30u8).map(|i| mix(ip_hash(std::net::IpAddr::from([10, 100, i % 3, i])), 2) % 256).collect();
        assert!(slots.len() >= 25, "30 pod addresses in {} of 256 slots", slots.len());
    }

    #[test]
    fn a_finding_is_logged_at_most_once_a_minute_per_subject() {
        let f = |subject: &str| Finding {
            detector: "retransmit",
            subject: subject.into(),
            recent: 3,
            total: 3,
            message: String::new(),
            fix: "",
        };
        let mut t = Throttle::default();
        let s = |secs: u64| std::time::Duration::from_secs(secs);
        assert_eq!(t.due(s(10), vec![f("a"), f("b")]).len(), 2);
        assert_eq!(t.due(s(20), vec![f("a"), f("b")]).len(), 0);
        let again = t.due(s(71), vec![f("a"), f("c")]);
        assert_eq!(again.iter().map(|x| x.subject.as_str()).collect::<Vec<_>>(), ["a", "c"]);
    }
}
