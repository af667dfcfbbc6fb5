//! kube-proxy's IPVS mode: the kernel's IPVS connection table (separate from conntrack) and
//! kube-proxy's graceful termination (sources.md#ipvs).
//!
//! Model, after `ip_vs_in` (`net/netfilter/ipvs/ip_vs_core.c`): IPVS sees every packet to a virtual
//! service. One connection per (proto, client ip:port, VIP) pins it to a real server (RS); every
//! forwarded packet restarts its timer (`udp_timeout`, 300 s unless `--ipvs-udp-timeout`). When the
//! RS is gone (unavailable):
//! - the packet is dropped without restarting the timer (`__ip_vs_conn_put`), so with
//!   `expire_nodest_conn = 0` the flow is black-holed until the connection times out, counted from
//!   its last forwarded packet;
//! - with `expire_nodest_conn = 1` the connection is expired too: that packet is lost, the next one
//!   is scheduled anew;
//! - kernel ≥ 5.9 with `expire_nodest_conn = 1` (04231e52d355): deleting the RS expires its
//!   connections from delayed work, so nothing is dropped.
//!
//! `conn_reuse_mode` acts only on a packet that opens a connection (`is_new_conn`: a TCP SYN), never
//! on UDP: a SYN from a reused port on a connection whose RS is inhibited (weight 0) is rescheduled
//! when `expire_nodest_conn` is set and `conn_reuse_mode` is not 0 (from 5.16, c95c07836fa4, also
//! when it is 0); otherwise it stays on the old RS (kubernetes#81775).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::{Kernel, Proto};

/// kube-proxy's graceful-termination logic, by era (sources.md#ipvs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Graceful {
    /// 2018: RS deleted at once for UDP (ActiveConn is always 0), entries stay (kubernetes#71514).
    V1,
    /// The #71514 fix: RS kept at weight 0 until no entry uses it (kubernetes#76664).
    V2,
    /// Current: UDP RS deleted at once, entries expire on their next packet via expire_nodest_conn.
    V3,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    pub kernel: Kernel,
    /// IP_VS_UDP_S_NORMAL: 300 s unless `--ipvs-udp-timeout` sets it.
    pub udp_timeout: Duration,
    /// IPVS TCP established timeout: 900 s.
    pub tcp_timeout: Duration,
    /// net/ipv4/vs/expire_nodest_conn: kernel default 0; kube-proxy sets 1.
    pub expire_nodest_conn: bool,
    /// net/ipv4/vs/conn_reuse_mode: kernel default 1; kube-proxy sets 0 below 5.9.
    pub conn_reuse_mode: u8,
    pub graceful: Graceful,
}

impl Config {
    /// What a current kube-proxy sets up on this kernel.
    pub fn kube_proxy(kernel: Kernel) -> Config {
        Config {
            kernel,
            udp_timeout: Duration::from_secs(300),
            tcp_timeout: Duration::from_secs(900),
            expire_nodest_conn: true,
            conn_reuse_mode: if kernel.at_least(5, 9) { 1 } else { 0 },
            graceful: Graceful::V3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Dest {
    addr: SocketAddr,
    weight: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conn {
    pub dest: SocketAddr,
    pub expires: Duration,
}

/// Where a packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// To this real server (which may be a deleted pod: the simulator then loses the packet).
    To(SocketAddr),
    /// Dropped by IPVS: the entry's RS is gone.
    NoDest,
    /// Not an IPVS virtual service.
    NotService,
    /// A virtual service with no usable RS.
    NoBackend,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub scheduled: u64,
    pub nodest_drops: u64,
    pub expired_nodest: u64,
}

pub struct Ipvs {
    pub cfg: Config,
    services: BTreeMap<SocketAddr, Vec<Dest>>,
    conns: BTreeMap<(Proto, SocketAddr, SocketAddr), Conn>,
    pub counters: Counters,
}

impl Ipvs {
    pub fn new(cfg: Config) -> Ipvs {
        Ipvs { cfg, services: BTreeMap::new(), conns: BTreeMap::new(), counters: Counters::default() }
    }

    pub fn conns(&self) -> usize {
        self.conns.len()
    }

    pub fn conn(&self, proto: Proto, client: SocketAddr, vip: SocketAddr) -> Option<Conn> {
        self.conns.get(&(proto, client, vip)).copied()
    }

    /// Sets a virtual service's real servers (as kube-proxy's sync does), applying graceful
    /// termination to the ones that disappeared.
    pub fn set_endpoints(&mut self, now: Duration, vip: SocketAddr, endpoints: &[SocketAddr]) {
        let cfg = self.cfg;
        let dests = self.services.entry(vip).or_default();
        for e in endpoints {
            match dests.iter_mut().find(|d| d.addr == *e) {
                Some(d) => d.weight = 1,
                None => dests.push(Dest { addr: *e, weight: 1 }),
            }
        }
        let removed: Vec<SocketAddr> = dests.iter().filter(|d| !endpoints.contains(&d.addr)).map(|d| d.addr).collect();
        for r in removed {
            match cfg.graceful {
                Graceful::V2 => {
                    if let Some(d) = dests.iter_mut().find(|d| d.addr == r) {
                        d.weight = 0;
                    }
                }
                Graceful::V1 | Graceful::V3 => dests.retain(|d| d.addr != r),
            }
        }
        self.gc(now, vip);
    }

    /// Removes weight-0 RS nobody uses any more (v2), and with kernel ≥ 5.9 + expire_nodest_conn the
    /// entries of deleted RS (04231e52d355).
    fn gc(&mut self, now: Duration, vip: SocketAddr) {
        self.conns.retain(|_, c| c.expires > now);
        let Some(dests) = self.services.get(&vip) else { return };
        let live: Vec<SocketAddr> = dests.iter().map(|d| d.addr).collect();
        if self.cfg.expire_nodest_conn && self.cfg.kernel.at_least(5, 9) {
            let before = self.conns.len();
            self.conns.retain(|(_, _, v), c| *v != vip || live.contains(&c.dest));
            self.counters.expired_nodest += (before - self.conns.len()) as u64;
        }
        let used: Vec<SocketAddr> = self.conns.iter().filter(|((_, _, v), _)| *v == vip).map(|(_, c)| c.dest).collect();
        if let Some(dests) = self.services.get_mut(&vip) {
            dests.retain(|d| d.weight > 0 || used.contains(&d.addr));
        }
    }

    /// A packet from `client` to `vip`. `reused_port` says the packet opens a new connection (a TCP
    /// SYN) from a port an old connection still holds; it changes nothing for UDP.
    pub fn forward(
        &mut self,
        now: Duration,
        proto: Proto,
        client: SocketAddr,
        vip: SocketAddr,
        reused_port: bool,
        rng: &mut fastrand::Rng,
    ) -> Verdict {
        let Some(dests) = self.services.get(&vip) else { return Verdict::NotService };
        let timeout = match proto {
            Proto::Udp => self.cfg.udp_timeout,
            Proto::Tcp => self.cfg.tcp_timeout,
        };
        let key = (proto, client, vip);
        if let Some(c) = self.conns.get(&key).copied() {
            if c.expires > now {
                match dests.iter().find(|d| d.addr == c.dest) {
                    Some(d) => {
                        let new_conn = proto == Proto::Tcp && reused_port;
                        let resched = new_conn
                            && d.weight == 0
                            && self.cfg.expire_nodest_conn
                            && (self.cfg.conn_reuse_mode != 0 || self.cfg.kernel.at_least(5, 16));
                        if !resched {
                            self.conns.insert(key, Conn { dest: c.dest, expires: now + timeout });
                            return Verdict::To(c.dest);
                        }
                    }
                    None => {
                        // The RS is unavailable: dropped, the timer not restarted.
                        self.counters.nodest_drops += 1;
                        if self.cfg.expire_nodest_conn {
                            self.conns.remove(&key);
                            self.counters.expired_nodest += 1;
                        }
                        return Verdict::NoDest;
                    }
                }
            }
            self.conns.remove(&key);
        }
        // Schedule: kube-proxy's default scheduler is round-robin (rr); weight-0 RS get no new entries.
        let live: Vec<SocketAddr> = dests.iter().filter(|d| d.weight > 0).map(|d| d.addr).collect();
        if live.is_empty() {
            return Verdict::NoBackend;
        }
        let dest = live[rng.usize(..live.len())];
        self.counters.scheduled += 1;
        self.conns.insert(key, Conn { dest, expires: now + timeout });
        Verdict::To(dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }
    const VIP: &str = "10.96.0.10:53";
    const A: &str = "10.244.0.2:53";
    const B: &str = "10.244.1.2:53";

    /// Pins a client to A, removes A, then sends packets every second from the same port; returns
    /// the verdicts.
    fn stale(cfg: Config, reused_port: bool) -> Vec<Verdict> {
        let mut ipvs = Ipvs::new(cfg);
        let mut rng = fastrand::Rng::with_seed(1);
        ipvs.set_endpoints(Duration::ZERO, sa(VIP), &[sa(A)]);
        let c = sa("10.0.0.5:40000");
        assert_eq!(ipvs.forward(Duration::ZERO, Proto::Udp, c, sa(VIP), false, &mut rng), Verdict::To(sa(A)));
        ipvs.set_endpoints(Duration::from_secs(1), sa(VIP), &[sa(B)]);
        (2..6).map(|s| ipvs.forward(Duration::from_secs(s), Proto::Udp, c, sa(VIP), reused_port, &mut rng)).collect()
    }

    #[test]
    fn graceful_termination_and_expire_nodest_conn_by_era() {
        let k = Kernel::new(4, 19);
        // v1, expire_nodest_conn 0: every packet on the stale connection is dropped (below: until it
        // times out).
        let v1 = Config { expire_nodest_conn: false, conn_reuse_mode: 1, graceful: Graceful::V1, ..Config::kube_proxy(k) };
        assert!(stale(v1, false).iter().all(|v| *v == Verdict::NoDest));
        // v2: the RS stays at weight 0 and keeps receiving the pinned client: traffic to the dead pod.
        let v2 = Config { graceful: Graceful::V2, ..v1 };
        assert!(stale(v2, false).iter().all(|v| *v == Verdict::To(sa(A))));
        // expire_nodest_conn 1 on < 5.9: one drop, then rescheduled to a live RS.
        let v3 = Config::kube_proxy(k);
        assert_eq!(stale(v3, false), [Verdict::NoDest, Verdict::To(sa(B)), Verdict::To(sa(B)), Verdict::To(sa(B))]);
        // conn_reuse_mode 0 (what kube-proxy sets below 5.9) changes nothing for UDP.
        assert_eq!(stale(v3, true), stale(v3, false));
        // Kernel 5.9+: entries go with the RS; nothing dropped.
        assert!(stale(Config::kube_proxy(Kernel::new(5, 10)), true).iter().all(|v| *v == Verdict::To(sa(B))));
    }

    #[test]
    fn a_dropped_packet_does_not_restart_the_timer_so_a_busy_port_recovers_at_the_timeout() {
        // ip_vs_in: "don't restart its timer, and silently drop the packet".
        let cfg = Config { expire_nodest_conn: false, graceful: Graceful::V1, ..Config::kube_proxy(Kernel::new(4, 19)) };
        let mut ipvs = Ipvs::new(cfg);
        let mut rng = fastrand::Rng::with_seed(1);
        ipvs.set_endpoints(Duration::ZERO, sa(VIP), &[sa(A)]);
        let c = sa("10.0.0.5:40000");
        ipvs.forward(Duration::ZERO, Proto::Udp, c, sa(VIP), false, &mut rng);
        ipvs.set_endpoints(Duration::from_secs(1), sa(VIP), &[sa(B)]);
        // A packet every second: all dropped up to 300 s after the last forwarded one, then rescheduled.
        let verdicts: Vec<Verdict> =
            (2..=301).map(|s| ipvs.forward(Duration::from_secs(s), Proto::Udp, c, sa(VIP), false, &mut rng)).collect();
        assert!(verdicts[..298].iter().all(|v| *v == Verdict::NoDest), "{:?}", &verdicts[290..]);
        assert_eq!(verdicts[298..], [Verdict::To(sa(B)), Verdict::To(sa(B))]);
    }

    #[test]
    fn a_reused_tcp_port_leaves_an_inhibited_server_only_when_conn_reuse_mode_allows() {
        // kubernetes#81775: with conn_reuse_mode 0 a SYN from a reused port stays on the weight-0 RS
        // (before 5.16); with 1, or from 5.16, it is rescheduled. Not a SYN: stays either way.
        for (reuse_mode, kernel, moves) in [(0, Kernel::new(5, 4), false), (1, Kernel::new(5, 4), true), (0, Kernel::new(5, 16), true)] {
            let cfg = Config { conn_reuse_mode: reuse_mode, graceful: Graceful::V2, ..Config::kube_proxy(kernel) };
            let mut ipvs = Ipvs::new(cfg);
            let mut rng = fastrand::Rng::with_seed(1);
            ipvs.set_endpoints(Duration::ZERO, sa(VIP), &[sa(A)]);
            let c = sa("10.0.0.5:40000");
            ipvs.forward(Duration::ZERO, Proto::Tcp, c, sa(VIP), true, &mut rng);
            ipvs.set_endpoints(Duration::from_secs(1), sa(VIP), &[sa(B)]);
            assert_eq!(ipvs.forward(Duration::from_secs(2), Proto::Tcp, c, sa(VIP), false, &mut rng), Verdict::To(sa(A)));
            let syn = ipvs.forward(Duration::from_secs(3), Proto::Tcp, c, sa(VIP), true, &mut rng);
            assert_eq!(syn, Verdict::To(if moves { sa(B) } else { sa(A) }), "conn_reuse_mode {reuse_mode}, {kernel}");
        }
    }

    #[test]
    fn entries_expire_after_the_udp_timeout_of_idleness() {
        let cfg = Config {
            udp_timeout: Duration::from_secs(30),
            expire_nodest_conn: false,
            graceful: Graceful::V1,
            ..Config::kube_proxy(Kernel::new(4, 19))
        };
        let mut ipvs = Ipvs::new(cfg);
        let mut rng = fastrand::Rng::with_seed(1);
        ipvs.set_endpoints(Duration::ZERO, sa(VIP), &[sa(A)]);
        let c = sa("10.0.0.5:40000");
        ipvs.forward(Duration::ZERO, Proto::Udp, c, sa(VIP), false, &mut rng);
        ipvs.set_endpoints(Duration::from_secs(1), sa(VIP), &[sa(B)]);
        assert_eq!(ipvs.forward(Duration::from_secs(29), Proto::Udp, c, sa(VIP), false, &mut rng), Verdict::NoDest);
        // 30 s idle after the last packet: a fresh schedule.
        assert_eq!(ipvs.forward(Duration::from_secs(60), Proto::Udp, c, sa(VIP), false, &mut rng), Verdict::To(sa(B)));
    }
}
