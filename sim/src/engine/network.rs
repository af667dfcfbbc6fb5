//! The network path: NOTRACK to node-local-dns, conntrack with the insertion race, kube-proxy's
//! DNAT or IPVS, TCP handshakes and reuse, latency and loss between nodes and AZs, the ENI budget
//! and SNAT to the cloud resolvers, and answers un-NATed on their way back.

use std::net::SocketAddr;
use std::time::Duration;

use netmodel::conntrack::{Race, TcpFlag, Tuple, Verdict};
use netmodel::dnat::Choice;
use netmodel::{Proto, ipvs};

use crate::cause::{Cause, Drop};
use crate::client::Transport;

use super::{
    Conn, Engine, Ev, Frame, InstId, InstKind, KUBE_DNS, KUBE_DNS_UPSTREAM, NODE_LOCAL_IP, NodeId, Owner, Packet, proto, to_res,
    upstream_ip,
};

/// Idle time after which a simulated TCP connection is closed: forward's `expire` default.
const TCP_EXPIRE: Duration = Duration::from_secs(10);
/// TCP's initial retransmission timeout (RFC 6298): a lost SYN costs 1 s.
const TCP_SYN_RTO: Duration = Duration::from_secs(1);

impl Engine {
    /// The apiserver tells every node's kube-proxy the current ready endpoints of kube-dns.
    pub(super) fn endpoints_changed(&mut self) {
        let eps = self.ready_endpoints();
        let now = self.now;
        let mut due = Vec::new();
        for (i, n) in self.nodes.iter_mut().enumerate() {
            for vip in [KUBE_DNS, KUBE_DNS_UPSTREAM] {
                n.kube_proxy.endpoints_changed(now, Proto::Udp, vip, eps.clone());
                n.kube_proxy.endpoints_changed(now, Proto::Tcp, vip, eps.clone());
                if let Some(ipvs) = &mut n.ipvs {
                    ipvs.set_endpoints(now, vip, &eps);
                }
            }
            if let Some(at) = n.kube_proxy.next_due() {
                due.push((at, i));
            }
        }
        for (at, node) in due {
            self.push(at, Ev::KubeProxy { node });
        }
    }

    pub(super) fn latency(&self, a: NodeId, b: NodeId) -> Duration {
        let lat = self.spec.latency;
        if a == b {
            lat.same_node
        } else if self.nodes[a].az == self.nodes[b].az {
            lat.same_az
        } else {
            lat.cross_az
        }
    }

    /// Whether a packet between two nodes is lost to AZ packet loss (sources.md#incident-s12).
    pub(super) fn lost(&mut self, a: NodeId, b: NodeId) -> bool {
        if a == b {
            // Same node: never on the wire.
            return false;
        }
        let (za, zb) = (self.nodes[a].az, self.nodes[b].az);
        if self.in_burst(za) || (za != zb && self.in_burst(zb)) {
            return true;
        }
        let link = self.link_loss.get(&(a.min(b), a.max(b))).copied().unwrap_or(0.0);
        let keep = (1.0 - self.az_loss[za]) * if za == zb { 1.0 } else { 1.0 - self.az_loss[zb] } * (1.0 - link);
        keep < 1.0 && self.rng.f64() >= keep
    }

    /// Whether an AZ with bursty loss is in a burst now: a two-state (Gilbert) channel in time,
    /// bursts of exponential length with the given mean, spaced so that the share of time in a burst
    /// is the loss share; every packet in a burst is lost.
    pub(super) fn in_burst(&mut self, az: usize) -> bool {
        let now = self.now;
        let Some(Some((loss, mean, mut bad, mut until))) = self.az_burst.get(az).copied() else { return false };
        while until <= now {
            bad = !bad;
            let m = if bad { mean.as_secs_f64() } else { mean.as_secs_f64() * (1.0 - loss) / loss };
            let u = self.rng.f64().max(1e-12);
            until += Duration::from_secs_f64(-u.ln() * m).max(Duration::from_micros(1));
        }
        self.az_burst[az] = Some((loss, mean, bad, until));
        bad
    }

    pub(super) fn owner_node(&self, o: Owner) -> NodeId {
        match o {
            Owner::Pod(p) => self.pods[p].node,
            Owner::Inst(i) => self.insts[i].node,
        }
    }

    /// Charges `n` packets to a node's ENI budget; false if the budget refused them.
    pub(super) fn eni(&mut self, node: NodeId, n: u32) -> bool {
        let now = self.now;
        let mut ok = true;
        for _ in 0..n {
            self.net.upstream_packets += 1;
            if let Some(c) = self.wire.eni.get_mut(node) {
                *c += 1;
            }
            if let Some(b) = &mut self.nodes[node].eni
                && !b.allow(now)
            {
                self.net.dropped_eni += 1;
                ok = false;
            }
        }
        ok
    }

    /// A packet leaves its owner (`route`); a drop on its way is charged to the lookup or resolver
    /// it belongs to (`explain`).
    pub(super) fn send(&mut self, from: Owner, pkt: Packet) {
        let before = self.net.clone();
        let (src, dst) = (pkt.src, pkt.dst);
        self.route(from, pkt);
        if let Some(d) = super::blame::dropped(&before, &self.net) {
            self.blame_packet(from, src, dst, d);
        }
    }

    /// Charges a drop: to the pod's lookups when a pod is either end, else to the resolver that sent it.
    pub(super) fn blame_packet(&mut self, from: Owner, src: SocketAddr, dst: SocketAddr, d: Drop) {
        match from {
            Owner::Pod(_) => self.blame(src, Cause::Packet(d)),
            Owner::Inst(_) if self.pod_by_ip.contains_key(&dst.ip()) => self.blame(dst, Cause::Packet(d)),
            Owner::Inst(i) => self.trouble(i, Cause::Upstream(d)),
        }
    }

    /// NOTRACK to node-local-dns, or conntrack and DNAT/IPVS, then routing.
    fn route(&mut self, from: Owner, pkt: Packet) {
        self.net.packets += 1;
        let node = self.owner_node(from);
        let now = self.now;
        // node-local-dns: pod traffic to its listen addresses skips conntrack (NOTRACK, sources.md#node-local-dns).
        if let (Owner::Pod(_), Some(nl)) = (from, self.nodes[node].node_local) {
            let binds_vip = self.spec.node_local.as_ref().is_some_and(|n| n.bind_kube_dns) && self.nodes[node].ipvs.is_none();
            if pkt.dst.ip() == NODE_LOCAL_IP || (binds_vip && pkt.dst == KUBE_DNS) {
                let at = now + self.spec.latency.same_node + self.tcp_delay(&pkt, now);
                self.push(at, Ev::Query { inst: nl, pkt, client_node: None });
                return;
            }
        }
        if pkt.dst.ip() == NODE_LOCAL_IP {
            // The link-local address with no cache behind it (torn down): nothing answers.
            self.net.dropped_dead += 1;
            return;
        }
        // Loopback: the loop plugin's nightmare (a resolver forwarding to 127.0.0.53 inside its pod).
        if pkt.dst.ip().is_loopback() {
            if let Owner::Inst(i) = from {
                self.push(now, Ev::Query { inst: i, pkt, client_node: None });
            }
            return;
        }
        let tuple = Tuple { proto: proto(pkt.transport), src: pkt.src, dst: pkt.dst };
        let race = self.spec.race;
        let kernel = self.nodes[node].kernel;
        let new_tcp = pkt.transport == Transport::Tcp && !self.tcp.contains_key(&(pkt.src, pkt.dst));
        let n = &mut self.nodes[node];
        let target = if let Some((orig, is_reply)) = n.ct.lookup(now, &tuple) {
            let e = n.ct.get(&orig).cloned().expect("lookup found it");
            let mut to = e.nat_target();
            // The second packet of a new UDP flow within the race window, on another CPU or while
            // a policy agent holds the first in its queue: the insertion race
            // (sources.md#conntrack-race).
            let p_race = if self.spec.nfqueue { race.p_nfqueue } else { race.p_cpu_split };
            if !is_reply && pkt.transport == Transport::Udp && now.saturating_sub(e.created) < race.window && self.rng.f64() < p_race {
                let mine = match (&mut n.ipvs, n.rules.choose(proto(pkt.transport), pkt.dst, &mut self.rng)) {
                    (None, Some(Choice::Dnat(ep))) => ep,
                    _ => to,
                };
                let kind = if mine != to {
                    Race::DifferentTargets
                } else if self.rng.f64() < race.p_reply_tuple_taken {
                    Race::ReplyTupleTaken
                } else {
                    Race::SameTarget
                };
                let pending = n.ct.begin(tuple, mine);
                match n.ct.confirm(now, pending, Some(kind), &mut self.rng) {
                    Verdict::Accept { to: t } => to = t,
                    _ => {
                        self.net.dropped_race += 1;
                        self.report.events_race(now, kernel, kind);
                        return;
                    }
                }
            } else {
                n.ct.touch(now, orig, is_reply);
                // IPVS sees every packet to a virtual service, not only a flow's first: it restarts
                // its connection's timer, or drops the packet when the real server is gone
                // (sources.md#ipvs).
                if !is_reply && let Some(ipvs) = &mut n.ipvs {
                    match ipvs.forward(now, proto(pkt.transport), pkt.src, pkt.dst, new_tcp, &mut self.rng) {
                        ipvs::Verdict::To(d) => {
                            if d != to {
                                // Rescheduled (its old connection expired): IPVS NATs and un-NATs
                                // with its own connection; the model keeps the flow's one reply mapping.
                                n.ct.retarget(orig, d);
                                to = d;
                            }
                        }
                        ipvs::Verdict::NotService => {}
                        ipvs::Verdict::NoDest | ipvs::Verdict::NoBackend => {
                            self.net.dropped_ipvs += 1;
                            return;
                        }
                    }
                }
            }
            to
        } else {
            // A new flow: DNAT decision, then insertion.
            let chosen = if let Some(ipvs) = &mut n.ipvs {
                // A TCP SYN opens a connection (`is_new_conn`); for UDP IPVS keeps whatever
                // connection still holds the port.
                match ipvs.forward(now, proto(pkt.transport), pkt.src, pkt.dst, new_tcp, &mut self.rng) {
                    ipvs::Verdict::To(d) => Some(d),
                    ipvs::Verdict::NotService => None,
                    ipvs::Verdict::NoDest | ipvs::Verdict::NoBackend => {
                        self.net.dropped_ipvs += 1;
                        return;
                    }
                }
            } else {
                match n.rules.choose(proto(pkt.transport), pkt.dst, &mut self.rng) {
                    Some(Choice::Dnat(ep)) => Some(ep),
                    Some(Choice::Reject) => {
                        self.net.rejected += 1;
                        if let Owner::Pod(p) = from {
                            // Charged before the ICMP error ends the lookup.
                            self.blame(pkt.src, Cause::Packet(Drop::Rejected));
                            self.refused(p, pkt.src.port());
                        }
                        return;
                    }
                    None => None,
                }
            };
            let target = chosen.unwrap_or(pkt.dst);
            let pending = n.ct.begin(tuple, target);
            match n.ct.confirm(now, pending, None, &mut self.rng) {
                Verdict::Accept { to } => to,
                Verdict::TableFull | Verdict::InsertFailed => {
                    self.net.dropped_table_full += 1;
                    return;
                }
            }
        };
        if new_tcp {
            // SYN went through above; SYN-ACK and ACK complete the handshake.
            let t = Tuple { proto: Proto::Tcp, src: pkt.src, dst: pkt.dst };
            let n = &mut self.nodes[node];
            n.ct.tcp_event(now, t, TcpFlag::SynAck, true);
            n.ct.tcp_event(now, t, TcpFlag::Ack, false);
        }
        if let Some(az) = (0..self.spec.azs).find(|az| upstream_ip(*az) == target.ip()) {
            return self.send_cloud(from, az, pkt);
        }
        let Some(&inst) = self.replica_by_ip.get(&target.ip()) else {
            self.net.dropped_dead += 1;
            return;
        };
        let server_node = self.insts[inst].node;
        if pkt.transport == Transport::Udp && self.lost(node, server_node) {
            self.net.dropped_loss += 1;
            return;
        }
        // The replica's node tracks the flow too (forwarded to its pod, already DNATed): DNS nodes
        // carry an entry per client flow besides their own upstream flows (sources.md#conntrack-table-size).
        if server_node != node && !self.track_on(server_node, Tuple { proto: proto(pkt.transport), src: pkt.src, dst: target }) {
            self.net.dropped_table_full += 1;
            return;
        }
        let at = now + self.latency(node, self.insts[inst].node) + self.tcp_delay(&pkt, now);
        let pkt = Packet { dst: target, ..pkt };
        self.push(at, Ev::Query { inst, pkt, client_node: Some(node) });
    }

    /// A packet of an un-NATed flow through `node`'s conntrack: refreshes its entry or inserts one;
    /// false when a full table refuses it.
    pub(super) fn track_on(&mut self, node: NodeId, t: Tuple) -> bool {
        let now = self.now;
        let ct = &mut self.nodes[node].ct;
        if let Some((orig, is_reply)) = ct.lookup(now, &t) {
            ct.touch(now, orig, is_reply);
            return true;
        }
        let pending = ct.begin(t, t.dst);
        matches!(ct.confirm(now, pending, None, &mut self.rng), Verdict::Accept { .. })
    }

    /// A reply through `node`'s conntrack: refreshes the entry it belongs to and returns that
    /// entry's original tuple (what un-NAT restores), if there is one.
    pub(super) fn track_reply_on(&mut self, node: NodeId, reply: Tuple) -> Option<Tuple> {
        let now = self.now;
        let ct = &mut self.nodes[node].ct;
        match ct.lookup(now, &reply) {
            Some((orig, true)) => {
                ct.touch(now, orig, true);
                Some(orig)
            }
            _ => None,
        }
    }

    /// Extra delay before a TCP message: the handshake of a new (or expired) connection.
    pub(super) fn tcp_delay(&mut self, pkt: &Packet, now: Duration) -> Duration {
        if pkt.transport != Transport::Tcp {
            return Duration::ZERO;
        }
        let key = (pkt.src, pkt.dst);
        let rtt = 2 * self.spec.latency.same_az;
        match self.tcp.get_mut(&key) {
            Some(c) if now <= c.last + TCP_EXPIRE => {
                c.last = now;
                c.ready.saturating_sub(now)
            }
            _ => {
                self.net.tcp_connections += 1;
                self.net.packets += 2;
                self.tcp.insert(key, Conn { ready: now + rtt, last: now });
                rtt
            }
        }
    }

    /// A query for a cloud resolver from an instance: SNAT to the node, the ENI budget (every packet
    /// of a TCP exchange included), then the frame.
    pub(super) fn send_cloud(&mut self, from: Owner, az: usize, pkt: Packet) {
        let Owner::Inst(inst) = from else {
            self.net.dropped_dead += 1;
            return;
        };
        let node = self.insts[inst].node;
        let dialed = pkt.dst;
        // `drain_inst` bound this socket's port on the node and registered its SNAT mapping.
        let node_addr = SocketAddr::new(self.nodes[node].ip, pkt.src.port());
        self.net.upstream_queries += 1;
        let now = self.now;
        let mut at = now;
        if pkt.transport == Transport::Tcp {
            let key = (node_addr, dialed);
            let reuse = self.tcp.get(&key).is_some_and(|c| now <= c.last + TCP_EXPIRE);
            if reuse {
                if let Some(c) = self.tcp.get_mut(&key) {
                    c.last = now;
                    at = c.ready.max(now);
                }
            } else {
                if self.tcp.remove(&key).is_some() {
                    // The expired connection's FIN and ACK.
                    self.eni(node, 2);
                }
                self.net.tcp_connections += 1;
                // SYN (retransmitted after 1 s while the budget refuses it), then ACK.
                let mut ready = now + 2 * self.spec.latency.upstream;
                if !self.eni(node, 1) {
                    ready += TCP_SYN_RTO;
                }
                self.eni(node, 1);
                self.tcp.insert(key, Conn { ready, last: now });
                at = ready;
            }
        }
        if !self.eni(node, 1) {
            // linklocal_allowance_exceeded: dropped silently (sources.md#cloud-resolver-limits).
            return;
        }
        if pkt.transport == Transport::Udp && self.upstream_lost(az) {
            self.net.dropped_loss += 1;
            return;
        }
        self.push(at, Ev::ToUpstream { frame: Frame { node_addr, az, transport: pkt.transport, payload: pkt.payload } });
    }

    /// Whether a UDP packet to or from an AZ's cloud resolver is lost.
    pub(super) fn upstream_lost(&mut self, az: usize) -> bool {
        let loss = self.upstream_loss.get(az).copied().unwrap_or(0.0);
        loss > 0.0 && self.rng.f64() < loss
    }

    /// An answer from the cloud resolver reaches the node that asked; a loss on the way is the
    /// asking resolver's trouble.
    pub(super) fn upstream_answer(&mut self, frame: Frame) {
        let before = self.net.clone();
        let inst = self.snat.get(&frame.node_addr).map(|s| s.0);
        self.upstream_answer_in(frame);
        if let (Some(d), Some(i)) = (super::blame::dropped(&before, &self.net), inst) {
            self.trouble(i, Cause::Upstream(d));
        }
    }

    fn upstream_answer_in(&mut self, frame: Frame) {
        let Some(&(inst, up, transport)) = self.snat.get(&frame.node_addr) else { return };
        if transport == Transport::Udp && self.upstream_lost(frame.az) {
            self.net.dropped_loss += 1;
            return;
        }
        // 1500-byte MTU: 20 bytes of IP and 8 of UDP leave 1472 for DNS; more is fragmented.
        if transport == Transport::Udp && self.spec.drop_fragments && frame.payload.len() > 1472 {
            self.net.dropped_fragments += 1;
            return;
        }
        if !self.insts[inst].alive {
            return;
        }
        // The answer passes the instance's node's conntrack (un-SNAT), refreshing the flow's entry.
        let (node, local) = (self.insts[inst].node, SocketAddr::new(self.insts[inst].ip, frame.node_addr.port()));
        self.track_reply_on(node, Tuple { proto: proto(transport), src: up, dst: local });
        if transport == Transport::Tcp {
            // The ACK of the response is a packet the ENI sends too.
            self.eni(self.insts[inst].node, 1);
        }
        self.insts[inst].server.handle_upstream(self.now, up, to_res(transport), &frame.payload);
        self.drain_inst(inst);
    }

    /// An instance's answer goes back to whoever asked, through the asker's conntrack (un-NAT); a
    /// loss on the way is charged to the asker.
    pub(super) fn answer(&mut self, inst: InstId, client_node: Option<NodeId>, pkt: Packet) {
        let before = self.net.clone();
        let (src, dst) = (pkt.src, pkt.dst);
        self.answer_in(inst, client_node, pkt);
        if let Some(d) = super::blame::dropped(&before, &self.net) {
            self.blame_packet(Owner::Inst(inst), src, dst, d);
        }
    }

    fn answer_in(&mut self, inst: InstId, client_node: Option<NodeId>, pkt: Packet) {
        let owner = if let Some(&p) = self.pod_by_ip.get(&pkt.dst.ip()) {
            Owner::Pod(p)
        } else if let Some(&n) = self.node_by_ip.get(&pkt.dst.ip()) {
            match self.nodes[n].node_local.or_else(|| self.insts.iter().position(|i| i.kind == InstKind::NodeLocal && i.node == n)) {
                Some(i) => Owner::Inst(i),
                None => return,
            }
        } else if pkt.dst.ip() == self.insts[inst].ip || pkt.dst.ip().is_loopback() {
            // The instance asked itself (a forwarding loop): its answer comes back to it.
            Owner::Inst(inst)
        } else {
            return;
        };
        let dest_node = self.owner_node(owner);
        let now = self.now;
        let server_node = self.insts[inst].node;
        let reply = Tuple { proto: proto(pkt.transport), src: pkt.src, dst: pkt.dst };
        if client_node.is_some_and(|cn| cn != server_node) {
            self.track_reply_on(server_node, reply);
        }
        // Un-NAT through the asker's node; no entry (expired, deleted): not un-NATed, and the
        // asker's socket ignores it.
        let src = match client_node {
            Some(cn) => self.track_reply_on(cn, reply).map_or(pkt.src, |o| o.dst),
            None => pkt.src,
        };
        if pkt.transport == Transport::Udp && self.lost(server_node, dest_node) {
            self.net.dropped_loss += 1;
            return;
        }
        let at = now + self.latency(server_node, dest_node);
        self.push(at, Ev::Answer { owner, pkt: Packet { src, ..pkt } });
    }
}
