//! Detectors: the horror stories, seen in the traffic the server already handles (the `detect`
//! plugin, on unless `detect off`).
//!
//! - `search_walk`: NXDOMAIN answers to an external-looking name under a cluster search domain
//!   (`www.google.com.shop.svc.cluster.local.`): a pod's resolver walking its search list (ndots:5),
//!   by source namespace, with the names walked.
//! - `retransmit`: the same query (client address and port, ID, question) again after 0.5 to 12 s: a
//!   query or answer lost on the way. By interval (5 s: glibc's and Go's timeout; 2.5 s: musl's
//!   retry; other) and by source /24 (a node's pod range with most CNIs).
//! - `truncation_ignored`: a UDP answer with TC=1 whose client never asked again over TCP.
//! - `upstream_budget`: packets per second to each upstream against a budget (`upstream_budget N`,
//!   the AWS ENI's 1024 packets/s), and how many exchanges went unanswered.
//! - `race`: half of an A/AAAA pair (same client socket, same name) from a client that sends pairs:
//!   the other half never arrived, the conntrack insertion race's signature.
//!
//! State is fixed-size (tables indexed by a hash, top-K subjects with eviction of the smallest);
//! nothing on the query path allocates. `Stats` holds the counters (summed over workers like the
//! metrics); `Trackers` the per-worker recent-query tables.

mod stats;
mod track;

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
pub const KINDS: [&str; 5] = ["search_walk", "retransmit", "truncation_ignored", "upstream_budget", "race"];
pub const SEARCH_WALK: usize = 0;
pub const RETRANSMIT: usize = 1;
pub const TRUNCATION: usize = 2;
pub const UPSTREAM_BUDGET: usize = 3;
pub const RACE: usize = 4;

/// The `detect` plugin's configuration: which detectors run, the upstream packet budget.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectConfig {
    pub on: [bool; 5],
    /// Packets per second each upstream may receive (None: no budget, the rate is still measured).
    pub upstream_budget: Option<u32>,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig { on: [true; 5], upstream_budget: None }
    }
}

impl DetectConfig {
    /// `detect [off]` and its block: `off NAME...` (or `off` alone: all), `upstream_budget N`.
    pub fn parse(args: &[String], block: &[(String, Vec<String>)]) -> Result<DetectConfig, String> {
        let mut c = DetectConfig::default();
        match args {
            [] => {}
            [a] if a == "off" => c.on = [false; 5],
            _ => return Err(format!("detect: unexpected arguments {args:?}; expected `detect`, `detect off` or a block")),
        }
        for (key, vals) in block {
            match key.as_str() {
                "off" if vals.is_empty() => c.on = [false; 5],
                "off" => {
                    for v in vals {
                        let i = KINDS
                            .iter()
                            .position(|k| k == v)
                            .ok_or_else(|| format!("detect: unknown detector '{v}'; expected one of {}", KINDS.join(", ")))?;
                        c.on[i] = false;
                    }
                }
                "upstream_budget" => {
                    let [v] = &vals[..] else { return Err("detect: upstream_budget takes one number, packets per second".into()) };
                    let n: u32 =
                        v.parse().map_err(|_| format!("detect: upstream_budget '{v}': expected packets per second, such as 1024"))?;
                    c.upstream_budget = Some(n);
                }
                k => return Err(format!("detect: unknown option '{k}'; expected off or upstream_budget")),
            }
        }
        Ok(c)
    }
}

/// Hashes bytes into a table index (FNV-1a: no allocation, stable across runs).
pub(crate) fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_plugin_turns_detectors_off_and_sets_the_budget() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(DetectConfig::parse(&[], &[]).expect("ok"), DetectConfig::default());
        assert_eq!(DetectConfig::parse(&s(&["off"]), &[]).expect("ok").on, [false; 5]);
        let c =
            DetectConfig::parse(&[], &[("off".into(), s(&["race", "retransmit"])), ("upstream_budget".into(), s(&["1024"]))]).expect("ok");
        assert_eq!((c.on, c.upstream_budget), ([true, false, true, true, false], Some(1024)));
        assert!(DetectConfig::parse(&[], &[("off".into(), s(&["walks"]))]).expect_err("unknown").contains("search_walk"));
        assert!(DetectConfig::parse(&[], &[("upstream_budget".into(), s(&["lots"]))]).is_err());
    }
}
