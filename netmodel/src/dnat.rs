//! kube-proxy's iptables mode: Service DNAT and the endpoint sync (sources.md#iptables-dnat, sources.md#stale-udp-conntrack).
//!
//! Backend choice: `-m statistic --mode random --probability 1/(n-i)` over n endpoints is a uniform
//! choice, made independently for every new flow (so two packets racing through conntrack may pick
//! different backends: race 3). A service with no endpoints REJECTs.
//!
//! kube-proxy applies endpoint changes after a sync delay, and on removal of a UDP endpoint runs
//! `conntrack -D --orig-dst VIP --dst-nat IP -p udp`, which may be late or never happen (missing
//! binary, kubernetes#91216; the Preply postmortem).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::Proto;
use crate::conntrack::Conntrack;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Dnat(SocketAddr),
    /// No endpoints: REJECT (ICMP port unreachable to the client).
    Reject,
}

/// The Service rules kube-proxy has programmed (what the kernel uses right now).
#[derive(Debug, Clone, Default)]
pub struct Rules {
    services: BTreeMap<(Proto, SocketAddr), Vec<SocketAddr>>,
}

impl Rules {
    pub fn set(&mut self, proto: Proto, vip: SocketAddr, endpoints: Vec<SocketAddr>) {
        self.services.insert((proto, vip), endpoints);
    }

    pub fn endpoints(&self, proto: Proto, vip: SocketAddr) -> Option<&[SocketAddr]> {
        self.services.get(&(proto, vip)).map(Vec::as_slice)
    }

    /// The DNAT decision for a new flow to `vip`; None if it is not a Service.
    pub fn choose(&self, proto: Proto, vip: SocketAddr, rng: &mut fastrand::Rng) -> Option<Choice> {
        let eps = self.services.get(&(proto, vip))?;
        if eps.is_empty() {
            return Some(Choice::Reject);
        }
        Some(Choice::Dnat(eps[rng.usize(..eps.len())]))
    }
}

/// How kube-proxy's conntrack cleanup behaves (sources.md#stale-udp-conntrack).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cleanup {
    /// Entries deleted when the rules change.
    OnSync,
    /// Deleted this long after the rules change.
    Late(Duration),
    /// Never (the conntrack binary is missing, or the delete failed).
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KubeProxyConfig {
    /// Delay from an endpoint change to rules in the kernel (sync period / propagation).
    pub sync_delay: Duration,
    pub cleanup: Cleanup,
}

impl Default for KubeProxyConfig {
    fn default() -> Self {
        // Propagation of about 1 s on a healthy control plane; `--iptables-sync-period` (30 s) is the
        // upper bound for periodic syncs (sources.md#stale-udp-conntrack).
        KubeProxyConfig { sync_delay: Duration::from_secs(1), cleanup: Cleanup::OnSync }
    }
}

#[derive(Debug, Clone)]
enum Pending {
    Rules { proto: Proto, vip: SocketAddr, endpoints: Vec<SocketAddr> },
    Cleanup { proto: Proto, vip: SocketAddr, ip: IpAddr },
}

/// kube-proxy on one node: queues endpoint changes and applies them to the node's rules and conntrack.
#[derive(Debug, Clone, Default)]
pub struct KubeProxy {
    pub cfg: KubeProxyConfig,
    pending: Vec<(Duration, u64, Pending)>,
    seq: u64,
    pub cleanups_run: u64,
}

impl KubeProxy {
    pub fn new(cfg: KubeProxyConfig) -> KubeProxy {
        KubeProxy { cfg, ..KubeProxy::default() }
    }

    /// The apiserver reported a new endpoint list for a Service.
    pub fn endpoints_changed(&mut self, now: Duration, proto: Proto, vip: SocketAddr, endpoints: Vec<SocketAddr>) {
        self.seq += 1;
        self.pending.push((now + self.cfg.sync_delay, self.seq, Pending::Rules { proto, vip, endpoints }));
    }

    /// When `poll` next has work.
    pub fn next_due(&self) -> Option<Duration> {
        self.pending.iter().map(|p| p.0).min()
    }

    /// Applies every change due by `now`.
    pub fn poll(&mut self, now: Duration, rules: &mut Rules, ct: &mut Conntrack) {
        self.pending.sort_by_key(|p| (p.0, p.1));
        while self.pending.first().is_some_and(|p| p.0 <= now) {
            let (at, _, p) = self.pending.remove(0);
            match p {
                Pending::Rules { proto, vip, endpoints } => {
                    let old = rules.endpoints(proto, vip).map(<[SocketAddr]>::to_vec).unwrap_or_default();
                    let was_empty = old.is_empty();
                    let removed: Vec<IpAddr> = old.iter().filter(|e| !endpoints.contains(e)).map(|e| e.ip()).collect();
                    let now_nonempty = !endpoints.is_empty();
                    rules.set(proto, vip, endpoints);
                    if proto == Proto::Udp {
                        for ip in removed {
                            match self.cfg.cleanup {
                                Cleanup::OnSync => {
                                    ct.delete_nat(vip, ip, proto);
                                    self.cleanups_run += 1;
                                }
                                Cleanup::Late(d) => {
                                    self.seq += 1;
                                    self.pending.push((at + d, self.seq, Pending::Cleanup { proto, vip, ip }));
                                }
                                Cleanup::Never => {}
                            }
                        }
                        // 0 → ≥1 endpoints: ClearEntriesForIP (entries made while it REJECTed).
                        if was_empty && now_nonempty && self.cfg.cleanup != Cleanup::Never {
                            ct.delete_dst(vip.ip(), proto);
                        }
                    }
                    self.pending.sort_by_key(|p| (p.0, p.1));
                }
                Pending::Cleanup { proto, vip, ip } => {
                    ct.delete_nat(vip, ip, proto);
                    self.cleanups_run += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kernel;
    use crate::conntrack::{Config, Tuple, Verdict};

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn backend_choice_is_uniform() {
        let mut r = Rules::default();
        let eps = vec![sa("10.244.0.2:53"), sa("10.244.1.2:53"), sa("10.244.2.2:53")];
        r.set(Proto::Udp, sa("10.96.0.10:53"), eps.clone());
        let mut rng = fastrand::Rng::with_seed(5);
        let mut counts = [0u32; 3];
        for _ in 0..30_000 {
            if let Some(Choice::Dnat(e)) = r.choose(Proto::Udp, sa("10.96.0.10:53"), &mut rng) {
                counts[eps.iter().position(|x| *x == e).expect("known")] += 1;
            }
        }
        // Each within 3% of 10,000.
        assert!(counts.iter().all(|c| (9_700..=10_300).contains(c)), "{counts:?}");
        r.set(Proto::Udp, sa("10.96.0.10:53"), vec![]);
        assert_eq!(r.choose(Proto::Udp, sa("10.96.0.10:53"), &mut rng), Some(Choice::Reject));
    }

    #[test]
    fn a_stale_entry_keeps_a_flow_on_a_deleted_pod_until_cleanup() {
        let vip = sa("10.96.0.10:53");
        let (a, b) = (sa("10.244.0.2:53"), sa("10.244.1.2:53"));
        for (cleanup, gone_at) in
            [(Cleanup::OnSync, Some(1.0)), (Cleanup::Late(Duration::from_secs(20)), Some(21.0)), (Cleanup::Never, None)]
        {
            let mut rules = Rules::default();
            let mut ct = Conntrack::new(Config::for_kernel(Kernel::new(5, 10), 1000));
            let mut kp = KubeProxy::new(KubeProxyConfig { sync_delay: Duration::from_secs(1), cleanup });
            rules.set(Proto::Udp, vip, vec![a]);
            let t = Tuple::udp(sa("10.0.0.5:40000"), vip);
            let mut rng = fastrand::Rng::with_seed(1);
            let Some(Choice::Dnat(first)) = rules.choose(Proto::Udp, vip, &mut rng) else { panic!("service") };
            assert_eq!(ct.confirm(Duration::ZERO, ct.begin(t, first), None, &mut rng), Verdict::Accept { to: a });
            kp.endpoints_changed(Duration::ZERO, Proto::Udp, vip, vec![b]);
            // The client keeps the port busy (one packet a second): the entry never idles out.
            let mut moved = None;
            for s in 1..40u64 {
                let now = Duration::from_secs(s);
                kp.poll(now, &mut rules, &mut ct);
                let to = match ct.lookup(now, &t) {
                    Some((o, _)) => {
                        ct.touch(now, o, false);
                        ct.get(&o).expect("entry").nat_target()
                    }
                    None => {
                        let Some(Choice::Dnat(e)) = rules.choose(Proto::Udp, vip, &mut rng) else { panic!("service") };
                        ct.confirm(now, ct.begin(t, e), None, &mut rng);
                        e
                    }
                };
                if to == b && moved.is_none() {
                    moved = Some(s as f64);
                }
            }
            assert_eq!(moved, gone_at, "{cleanup:?}");
        }
    }
}
