//! kube-proxy's iptables mode: Service DNAT and the endpoint sync (sources.md#iptables-dnat, sources.md#stale-udp-conntrack).
//!
//! Backend choice: `-m statistic --mode random --probability 1/(n-i)` over n endpoints is a uniform
//! choice, made independently for every new flow (so two packets racing through conntrack may pick
//! different backends: race 3). A service with no endpoints REJECTs.
//!
//! kube-proxy applies endpoint changes after a sync delay, then cleans UDP conntrack entries the way
//! its version does (sources.md#kube-proxy-cleanup): up to 1.31 on events (a removed endpoint's
//! entries, all of a service's entries when it gets its first endpoint, all of them on a restart);
//! from 1.32 a reconciler that deletes the entries of a service not pointing at a serving endpoint,
//! skipping services with no endpoints until 1.37. Either may be late or never happen (missing
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

/// A kube-proxy release `MAJOR.MINOR`, for what its conntrack cleanup does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KubeProxyVersion {
    pub major: u32,
    pub minor: u32,
}

impl KubeProxyVersion {
    pub const fn new(major: u32, minor: u32) -> KubeProxyVersion {
        KubeProxyVersion { major, minor }
    }

    /// `1.32`, `v1.32` or `v1.32.4` (the patch release does not change the cleanup).
    pub fn parse(s: &str) -> Result<KubeProxyVersion, String> {
        let bad = || format!("kube-proxy version `{s}`: expected MAJOR.MINOR such as \"1.32\" or v1.32.4");
        let mut parts = s.trim().trim_start_matches('v').split('.');
        let major = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let minor = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        if parts.next().is_some_and(|p| p.parse::<u32>().is_err()) || parts.next().is_some() {
            return Err(bad());
        }
        Ok(KubeProxyVersion { major, minor })
    }

    /// The conntrack reconciler (kubernetes#127318, 1.32) instead of cleanup on events.
    pub fn reconciles(self) -> bool {
        self >= KubeProxyVersion::new(1, 32)
    }

    /// The reconciler skipped services with no serving endpoints until kubernetes#139629 (1.37), so
    /// a service scaled to zero kept its entries to the deleted pods (kubernetes#139628).
    pub fn skips_services_without_endpoints(self) -> bool {
        self.reconciles() && self < KubeProxyVersion::new(1, 37)
    }
}

impl std::fmt::Display for KubeProxyVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KubeProxyConfig {
    /// Delay from an endpoint change to rules in the kernel (sync period / propagation).
    pub sync_delay: Duration,
    pub cleanup: Cleanup,
    pub version: KubeProxyVersion,
}

impl Default for KubeProxyConfig {
    fn default() -> Self {
        // Propagation of about 1 s on a healthy control plane; `--iptables-sync-period` (30 s) is the
        // upper bound for periodic syncs (sources.md#stale-udp-conntrack). 1.31: the last release
        // cleaning on events, what the incidents up to 2024 ran.
        KubeProxyConfig { sync_delay: Duration::from_secs(1), cleanup: Cleanup::OnSync, version: KubeProxyVersion::new(1, 31) }
    }
}

#[derive(Debug, Clone)]
enum Pending {
    Rules {
        proto: Proto,
        vip: SocketAddr,
        endpoints: Vec<SocketAddr>,
    },
    Cleanup {
        proto: Proto,
        vip: SocketAddr,
        ip: IpAddr,
    },
    /// The reconciler's pass over one service (1.32+), with the endpoints serving when it runs.
    Reconcile {
        proto: Proto,
        vip: SocketAddr,
    },
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
                    let changed = {
                        let (mut a, mut b) = (old.clone(), endpoints.clone());
                        a.sort_unstable();
                        b.sort_unstable();
                        a != b
                    };
                    rules.set(proto, vip, endpoints);
                    if proto != Proto::Udp {
                        // UDP only: TCP flows to a gone endpoint are reset, not black-holed.
                    } else if self.cfg.version.reconciles() {
                        // ConntrackCleanupRequired: the reconciler runs after UDP endpoints change.
                        match self.cfg.cleanup {
                            _ if !changed => {}
                            Cleanup::OnSync => self.reconcile(proto, vip, rules, ct),
                            Cleanup::Late(d) => {
                                self.seq += 1;
                                self.pending.push((at + d, self.seq, Pending::Reconcile { proto, vip }));
                            }
                            Cleanup::Never => {}
                        }
                    } else {
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
                Pending::Reconcile { proto, vip } => self.reconcile(proto, vip, rules, ct),
            }
        }
    }

    /// The reconciler's pass over one service: its entries not pointing at a serving endpoint go
    /// (`CleanStaleEntries`), unless it has none and this release skips such services.
    fn reconcile(&mut self, proto: Proto, vip: SocketAddr, rules: &Rules, ct: &mut Conntrack) {
        let serving = rules.endpoints(proto, vip).unwrap_or_default();
        if serving.is_empty() && self.cfg.version.skips_services_without_endpoints() {
            return;
        }
        ct.delete_stale(vip, serving, proto);
        self.cleanups_run += 1;
    }

    /// kube-proxy restarts and syncs every service at once. Up to 1.31 every service looks newly
    /// active and all their UDP entries are deleted (kubernetes#122740); the reconciler keeps the
    /// entries that point at serving endpoints.
    pub fn restart(&mut self, rules: &Rules, ct: &mut Conntrack) {
        if self.cfg.cleanup == Cleanup::Never {
            return;
        }
        let services: Vec<(Proto, SocketAddr, bool)> =
            rules.services.iter().filter(|((p, _), _)| *p == Proto::Udp).map(|((p, v), e)| (*p, *v, e.is_empty())).collect();
        for (proto, vip, empty) in services {
            if self.cfg.version.reconciles() {
                self.reconcile(proto, vip, rules, ct);
            } else if !empty {
                ct.delete_dst(vip.ip(), proto);
                self.cleanups_run += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kernel;
    use crate::conntrack::{Config, Entry, Tuple, Verdict};

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
    fn versions_parse_as_people_write_them() {
        assert_eq!(KubeProxyVersion::parse("1.32"), Ok(KubeProxyVersion::new(1, 32)));
        assert_eq!(KubeProxyVersion::parse("v1.36.2"), Ok(KubeProxyVersion::new(1, 36)));
        for bad in ["1", "one.two", "1.32.x", "1.32.1.1", ""] {
            assert!(KubeProxyVersion::parse(bad).expect_err(bad).contains("MAJOR.MINOR"), "{bad}");
        }
        let v = |m| KubeProxyVersion::new(1, m);
        assert_eq!([v(31), v(32), v(36), v(37)].map(KubeProxyVersion::reconciles), [false, true, true, true]);
        assert_eq!([v(31), v(32), v(36), v(37)].map(KubeProxyVersion::skips_services_without_endpoints), [false, true, true, false]);
    }

    /// A client on one port (one-way, or a resolver keeping its socket) with an entry to `a`; the
    /// service then loses every endpoint. Returns where its entry points afterwards (None: deleted).
    fn after_scale_to_zero(version: KubeProxyVersion) -> Option<SocketAddr> {
        let vip = sa("10.96.0.10:53");
        let a = sa("10.244.0.2:53");
        let mut rules = Rules::default();
        let mut ct = Conntrack::new(Config::for_kernel(Kernel::new(5, 15), 1000));
        let mut kp = KubeProxy::new(KubeProxyConfig { version, ..KubeProxyConfig::default() });
        rules.set(Proto::Udp, vip, vec![a]);
        let t = Tuple::udp(sa("10.0.0.5:40000"), vip);
        let mut rng = fastrand::Rng::with_seed(1);
        ct.confirm(Duration::ZERO, ct.begin(t, a), None, &mut rng);
        kp.endpoints_changed(Duration::ZERO, Proto::Udp, vip, vec![]);
        for s in 1..20u64 {
            let now = Duration::from_secs(s);
            kp.poll(now, &mut rules, &mut ct);
            // The sender keeps the entry alive, as kubernetes#139628's statsd clients did.
            if let Some((o, _)) = ct.lookup(now, &t) {
                ct.touch(now, o, false);
            }
        }
        ct.lookup(Duration::from_secs(20), &t).and_then(|(o, _)| ct.get(&o)).map(Entry::nat_target)
    }

    #[test]
    fn a_service_scaled_to_zero_keeps_its_stale_entries_only_on_1_32_to_1_36() {
        let a = sa("10.244.0.2:53");
        // 1.31: the removed endpoint's entries are deleted; new packets meet the REJECT rule.
        assert_eq!(after_scale_to_zero(KubeProxyVersion::new(1, 31)), None);
        // 1.32-1.36: the reconciler skips a service with no endpoints: black-holed to the old pod.
        assert_eq!(after_scale_to_zero(KubeProxyVersion::new(1, 32)), Some(a));
        assert_eq!(after_scale_to_zero(KubeProxyVersion::new(1, 36)), Some(a));
        // 1.37 (kubernetes#139629): processed with an empty set, so deleted.
        assert_eq!(after_scale_to_zero(KubeProxyVersion::new(1, 37)), None);
    }

    #[test]
    fn a_restart_deletes_every_service_entry_up_to_1_31_and_only_stale_ones_since() {
        let vip = sa("10.96.0.10:53");
        let (a, gone) = (sa("10.244.0.2:53"), sa("10.244.9.9:53"));
        for (version, left) in [(KubeProxyVersion::new(1, 31), 0), (KubeProxyVersion::new(1, 32), 1)] {
            let mut rules = Rules::default();
            rules.set(Proto::Udp, vip, vec![a]);
            let mut ct = Conntrack::new(Config::for_kernel(Kernel::new(5, 15), 1000));
            let mut rng = fastrand::Rng::with_seed(1);
            let to_a = Tuple::udp(sa("10.0.0.5:40000"), vip);
            let to_gone = Tuple::udp(sa("10.0.0.5:40001"), vip);
            ct.confirm(Duration::ZERO, ct.begin(to_a, a), None, &mut rng);
            ct.confirm(Duration::ZERO, ct.begin(to_gone, gone), None, &mut rng);
            let mut kp = KubeProxy::new(KubeProxyConfig { version, ..KubeProxyConfig::default() });
            kp.restart(&rules, &mut ct);
            assert_eq!(ct.len(), left, "{version}");
            assert!(ct.lookup(Duration::ZERO, &to_gone).is_none(), "{version}: the entry to a gone endpoint goes either way");
        }
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
            let mut kp = KubeProxy::new(KubeProxyConfig { sync_delay: Duration::from_secs(1), cleanup, ..KubeProxyConfig::default() });
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
