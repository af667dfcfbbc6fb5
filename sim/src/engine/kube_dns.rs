//! kube-dns as it ran before CoreDNS (sources.md#kube-dns): dnsmasq on port 53 in front of kubedns
//! on 127.0.0.1:10053, and the sidecar whose probe decides dnsmasq's liveness.
//!
//! dnsmasq is expressed as ndots server blocks on the same `Server`: the cluster domain and the
//! reverse zones forwarded to kubedns (`--server=/cluster.local/127.0.0.1#10053`), everything else to
//! the node's resolv.conf (the pod's `dnsPolicy: Default`), with one table of 150 forwards shared by
//! both (`Config::forward_table`, dnsmasq's FTABSIZ; REFUSED when full), a 1,000-entry cache of
//! positive answers only (`--cache-size=1000 --no-negcache`; ndots' smallest cache is 1,024) and no
//! merging of identical queries (dnsmasq forwarded each until 2.83). kubedns is the kubernetes plugin
//! on port 10053 with kubedns's TTL of 30 s. The forwards to kubedns leave through the simulator's
//! loopback and come back as upstream answers, so they hold their slots as long as kubedns takes.
//! Not modelled: dnsmasq caches kubedns's positive answers (A and AAAA of Services) where here every
//! cluster query takes a slot, which is what dnsmasq does for the negative ones and for SRV (not
//! cached before 2.90), the probe included. A forward is sent once and held until its reply or
//! dnsmasq's 10 s `TIMEOUT` (`Config::forward_deadline`, `read_timeout 10s`); dnsmasq then drops
//! it silently where ndots answers SERVFAIL, which the clients, having timed out after 5 s, ignore.
//!
//! The sidecar (`--probe=dnsmasq,127.0.0.1:53,kubernetes.default.svc.cluster.local,5,SRV`) sends its
//! SRV query through dnsmasq every 5 s with miekg/dns's 2 s timeout; an error, a timeout or an
//! answer without records (REFUSED when the table is full) makes `/healthcheck/dnsmasq` answer 503
//! until the next probe succeeds (`pkg/sidecar/dnsprobe.go`). The kubelet checks that URL every 10 s
//! (`Liveness::period`) and restarts dnsmasq after `failure_threshold` (5) failures in a row, then not
//! again before its 60 s initial delay (kube-dns.yaml.base).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

use super::events::Ev;
use super::{Engine, InstId, InstKind, Packet};
use crate::client::Transport;

/// dnsmasq, kubedns and their forward table as ndots server blocks (see the module docs).
pub(super) const KUBE_DNS_COREFILE: &str = "cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {
    forward . 127.0.0.1:10053 {
       read_timeout 10s
    }
}
.:53 {
    forward . /etc/resolv.conf {
       read_timeout 10s
    }
    cache {
       success 1024
       disable denial
    }
}
.:10053 {
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       ttl 30
    }
}
";

/// dnsmasq's table of concurrent forwards (`FTABSIZ`, "default 150").
const FORWARD_TABLE: usize = 150;
/// How long dnsmasq holds a forward without a reply (`TIMEOUT`, src/config.h).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// dnsmasq's forwarding on the server built from `KUBE_DNS_COREFILE`: one table of 150 forwards
/// shared by every forward, each held up to 10 s, identical questions each forwarded.
pub(super) fn configure(cfg: &mut resolver::Config) {
    cfg.coalesce = false;
    cfg.forward_table = Some(FORWARD_TABLE);
    cfg.forward_deadline = FORWARD_TIMEOUT;
}

/// The sidecar's probe period and miekg/dns's default read timeout.
pub(super) const PROBE_EVERY: Duration = Duration::from_secs(5);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The dnsmasq container's liveness `initialDelaySeconds` after it (re)starts.
pub(super) const INITIAL_DELAY: Duration = Duration::from_secs(60);
/// The sidecar's socket (any loopback port dnsmasq does not use).
const PROBE_FROM: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 10054);

/// One replica's sidecar probe and the kubelet's count of failed liveness checks.
#[derive(Debug, Clone, Copy)]
pub(super) struct Probe {
    /// The probe in flight: when it was sent and its ID.
    pub(super) pending: Option<(Duration, u16)>,
    /// `/healthcheck/dnsmasq` answers 200 (the last probe succeeded).
    pub(super) healthy: bool,
    pub(super) failures: u32,
    /// No liveness check before this (the initial delay after a restart).
    pub(super) checks_from: Duration,
}

impl Default for Probe {
    fn default() -> Self {
        // The replica has been up long before the run starts.
        Probe { pending: None, healthy: true, failures: 0, checks_from: Duration::ZERO }
    }
}

fn probe_query(id: u16) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    let name = Name::from_ascii("kubernetes.default.svc.cluster.local.").expect("a valid name");
    m.add_query(Query::query(name, RecordType::SRV));
    m.to_vec().expect("a small query encodes")
}

impl Engine {
    /// Every replica's sidecar sends its probe; one still unanswered after 2 s has failed.
    pub(super) fn probe_all(&mut self) {
        for inst in 0..self.insts.len() {
            if self.insts[inst].kind != InstKind::ClusterDns {
                continue;
            }
            self.probe_timed_out(inst);
            self.net.probes += 1;
            let id = self.rng.u16(..);
            self.insts[inst].probe.pending = Some((self.now, id));
            let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
            let pkt = Packet { src: PROBE_FROM, dst: SocketAddr::new(ip, 53), transport: Transport::Udp, payload: probe_query(id) };
            self.push(self.now, Ev::Query { inst, pkt, client_node: None });
        }
        self.push(self.now + PROBE_EVERY, Ev::Probe);
    }

    fn probe_timed_out(&mut self, inst: InstId) {
        let p = &mut self.insts[inst].probe;
        if p.pending.is_some_and(|(sent, _)| self.now >= sent + PROBE_TIMEOUT) {
            p.pending = None;
            p.healthy = false;
            self.net.probes_failed += 1;
        }
    }

    /// An answer to the sidecar's socket: the probe's result. False if `pkt` is not for the sidecar.
    pub(super) fn probe_answer(&mut self, inst: InstId, pkt: &Packet) -> bool {
        if pkt.dst != PROBE_FROM {
            return false;
        }
        let Ok(m) = Message::from_vec(&pkt.payload) else { return true };
        let p = &mut self.insts[inst].probe;
        if let Some((sent, id)) = p.pending
            && id == m.metadata.id
        {
            p.pending = None;
            p.healthy = self.now < sent + PROBE_TIMEOUT && m.metadata.response_code == ResponseCode::NoError && !m.answers.is_empty();
            self.net.probes_failed += u64::from(!p.healthy);
        }
        true
    }

    /// The kubelet's liveness check of every replica's dnsmasq.
    pub(super) fn liveness(&mut self) {
        let Some(l) = self.spec.liveness else { return };
        for inst in 0..self.insts.len() {
            if self.insts[inst].kind != InstKind::ClusterDns || !self.insts[inst].alive || self.now < self.insts[inst].probe.checks_from {
                continue;
            }
            self.probe_timed_out(inst);
            let p = &mut self.insts[inst].probe;
            p.failures = if p.healthy { 0 } else { p.failures + 1 };
            if p.failures >= l.failure_threshold {
                p.failures = 0;
                let why = format!("liveness probe failed {} times: the sidecar's probe through dnsmasq failed", l.failure_threshold);
                let restarts_at = self.crash(inst, why);
                self.insts[inst].probe.checks_from = restarts_at + INITIAL_DELAY;
            }
        }
        self.push(self.now + l.period, Ev::Liveness);
    }
}
