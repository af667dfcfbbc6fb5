//! Resolver instances (CoreDNS replicas and node-local caches): each a `resolver::Server` driven
//! directly, with its transmits, timers, replica lifecycle (startup, lameduck, restart,
//! CrashLoopBackOff) and memory against its limit.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use resolver::{Dest, Handled};

use crate::client::Transport;
use crate::spec::MemoryModel;

use super::build::{pod_ip, server_for};
use super::{Engine, Ev, Inst, InstId, InstKind, NodeId, Owner, Packet, from_res, to_res, upstream_ip};

impl Engine {
    pub(super) fn ready_endpoints(&self) -> Vec<SocketAddr> {
        self.insts
            .iter()
            .filter(|i| i.kind == InstKind::ClusterDns && ((i.alive && !i.terminating) || i.unnoticed))
            .map(|i| SocketAddr::new(i.ip, 53))
            .collect()
    }

    /// A new CoreDNS replica on the node with the fewest (a new pod IP, in the cluster state at once);
    /// it joins the endpoints when its readiness probe passes, `ClusterSpec::replica_startup` later.
    pub(super) fn spawn_replica(&mut self) {
        let node = (0..self.nodes.len())
            .filter(|&n| !self.nodes[n].down)
            .min_by_key(|&n| self.insts.iter().filter(|i| i.kind == InstKind::ClusterDns && i.alive && i.node == n).count())
            .unwrap_or(0);
        let ip = pod_ip(node, self.per_node[node]);
        self.per_node[node] += 1;
        self.replica_ips.push((node, ip));
        self.publish_state();
        let corefile = self.spec.corefile.clone();
        let seed = self.spec.seed ^ (0x5eed_0000 + self.replica_ips.len() as u64);
        let relist = self.spec.replica_memory.map_or(Duration::from_secs(10), |m| m.relist);
        // The Corefile parsed when the cluster was built, so it parses again.
        let Ok(server) = server_for(&corefile, self.nodes[node].az, &self.spec, InstKind::ClusterDns, &self.states, seed) else {
            return;
        };
        self.insts.push(Inst {
            alive: false,
            relist_until: Some(self.now + relist),
            ..Inst::new(InstKind::ClusterDns, node, ip, server, corefile, seed)
        });
        let inst = self.insts.len() - 1;
        self.replica_by_ip.insert(ip, inst);
        self.report.events.push((self.now, format!("replica {ip} created on node {node}")));
        self.push(self.now + self.spec.replica_startup, Ev::ReplicaReady { inst });
    }

    /// The Deployment now wants `replicas`: the newest extra replicas are deleted at once, missing
    /// ones created (ready after start-up).
    pub(super) fn scale_to(&mut self, replicas: usize, by: &str) {
        let alive: Vec<InstId> =
            (0..self.insts.len()).filter(|&i| self.insts[i].kind == InstKind::ClusterDns && self.insts[i].alive).collect();
        if alive.len() > replicas {
            for &i in &alive[replicas..] {
                self.insts[i].alive = false;
            }
            self.report.events.push((self.now, format!("{by}: {} → {replicas} replicas", alive.len())));
            self.endpoints_changed();
        } else if alive.len() < replicas {
            for _ in alive.len()..replicas {
                self.spawn_replica();
            }
            self.report.events.push((self.now, format!("{by}: {} → {replicas} replicas", alive.len())));
        }
    }

    /// A replica is deleted gracefully: out of the endpoints at once, serving through its lameduck,
    /// then gone (sources.md#coredns-health-ready).
    pub(super) fn terminate(&mut self, inst: InstId) {
        let Some(i) = self.insts.get_mut(inst) else { return };
        i.terminating = true;
        let ip = i.ip;
        self.report.events.push((self.now, format!("replica {ip} terminating")));
        self.endpoints_changed();
        // `health { lameduck D }`: CoreDNS keeps serving D after SIGTERM, then exits; without it at
        // once (kubeadm's Corefile says 5s; sources.md#coredns-health-ready).
        let lameduck = self.insts[inst].server.config().servers.iter().filter_map(|s| s.health.as_ref()).map(|h| h.lameduck).max();
        self.push(self.now + lameduck.unwrap_or(Duration::ZERO), Ev::ReplicaExit { inst });
    }

    /// A replica's memory by the scenario's model.
    pub(super) fn memory(&self, inst: InstId) -> u64 {
        let i = &self.insts[inst];
        let relisting = i.relist_until.is_some_and(|t| self.now < t);
        let state = i.server.cluster_state();
        match self.spec.replica_memory.map(|m| m.model) {
            None | Some(MemoryModel::Ndots) => {
                // The new state is built beside the old one while relisting.
                (i.server.memory_bytes() + if relisting { state.bytes() } else { 0 }) as u64
            }
            Some(MemoryModel::CoreDns(m)) => {
                let verified = i
                    .server
                    .config()
                    .servers
                    .iter()
                    .filter_map(|s| s.kubernetes.as_ref())
                    .any(|k| k.pods == resolver::config::PodsMode::Verified);
                // The published fit counts the cluster's pods whether or not they are watched.
                let full = &self.states.full;
                let watched = m.watched(full.pods.len() as u64, full.services.len() as u64, verified);
                m.base
                    + watched * if relisting { 2 } else { 1 }
                    + i.server.in_flight() as u64 * m.per_inflight
                    + i.server.cache_entries() as u64 * m.per_cache_entry
            }
        }
    }

    /// OOM-kills replicas over their limit; returns the largest replica memory.
    pub(super) fn check_memory(&mut self) -> u64 {
        let mut max = 0;
        for inst in 0..self.insts.len() {
            if self.insts[inst].kind != InstKind::ClusterDns || !self.insts[inst].alive {
                continue;
            }
            let m = self.memory(inst);
            max = max.max(m);
            if let Some(limit) = self.spec.replica_memory.map(|r| r.limit)
                && m > limit
            {
                self.crash(inst, format!("OOMKilled: {} MiB over the {} MiB limit", m >> 20, limit >> 20));
            }
        }
        max
    }

    /// A fresh process for an instance: a new `Server` (empty cache), as a pod restart does.
    pub(super) fn restart(&mut self, inst: InstId) {
        let relist = self.spec.replica_memory.map_or(Duration::from_secs(10), |m| m.relist);
        let now = self.now;
        let i = &mut self.insts[inst];
        if i.kind == InstKind::ClusterDns {
            // A starting replica lists everything.
            i.relist_until = Some(now + relist);
        }
        i.seed = i.seed.wrapping_add(0x9e37_79b9);
        match server_for(&i.corefile, self.nodes[i.node].az, &self.spec, i.kind, &self.states, i.seed) {
            Ok(s) => i.server = s,
            Err(_) => return,
        }
        i.alive = true;
        i.timer = None;
        i.up_ports.clear();
        let was_replica = i.kind == InstKind::ClusterDns;
        self.snat.retain(|_, v| v.0 != inst);
        self.drain_inst(inst);
        if was_replica {
            self.endpoints_changed();
        }
    }

    /// The process died (the loop plugin halted it, or the OOM killer): CrashLoopBackOff (10 s,
    /// doubling, at most 5 min).
    /// The instance's process dies; the kubelet restarts it after its back-off. Returns when.
    pub(super) fn crash(&mut self, inst: InstId, why: String) -> Duration {
        let i = &mut self.insts[inst];
        if !i.alive {
            return self.now;
        }
        i.alive = false;
        let backoff = Duration::from_secs(10u64.saturating_mul(1 << i.restarts.min(5)).min(300));
        i.restarts += 1;
        self.net.restarts += 1;
        let was_replica = i.kind == InstKind::ClusterDns;
        self.trouble(inst, crate::cause::Cause::Restart);
        self.report.events.push((self.now, format!("instance {inst} crashed: {why}; restart in {backoff:?}")));
        self.push(self.now + backoff, Ev::Restart { inst });
        if was_replica {
            self.endpoints_changed();
        }
        self.now + backoff
    }

    pub(super) fn at_inst(&mut self, inst: InstId, pkt: Packet, client_node: Option<NodeId>) {
        if !self.insts[inst].alive {
            self.net.dropped_dead += 1;
            self.blame(pkt.src, crate::cause::Cause::Packet(crate::cause::Drop::Dead));
            return;
        }
        self.reached(pkt.src, inst);
        let conn = match pkt.transport {
            Transport::Udp => 0,
            Transport::Tcp => {
                (u64::from(u32::from_be_bytes(match pkt.src.ip() {
                    IpAddr::V4(v4) => v4.octets(),
                    IpAddr::V6(_) => [0; 4],
                })) << 16)
                    | u64::from(pkt.src.port())
            }
        };
        let client = resolver::Client { src: pkt.src, local: pkt.dst, transport: to_res(pkt.transport), conn };
        let mut out = Vec::new();
        let h = self.insts[inst].server.handle_query(self.now, client, &pkt.payload, &mut out);
        if h == Handled::Answered {
            self.answer(inst, client_node, Packet { src: pkt.dst, dst: pkt.src, transport: pkt.transport, payload: out });
        }
        self.drain_inst(inst);
    }

    /// Adds the resolvers' cache hits and misses since the last sample to this second's counters.
    pub(super) fn count_cache(&mut self) {
        self.cache_seen.resize(self.insts.len(), (0, 0));
        for (i, inst) in self.insts.iter().enumerate() {
            let (hits, misses) = inst
                .server
                .metrics
                .blocks
                .iter()
                .fold((0, 0), |(h, m), b| (h + b.cache_hits_success + b.cache_hits_denial, m + b.cache_misses));
            let (h0, m0) = self.cache_seen[i];
            // A restarted instance starts its counters again from zero.
            self.wire.cache_hits += if hits >= h0 { hits - h0 } else { hits };
            self.wire.cache_misses += if misses >= m0 { misses - m0 } else { misses };
            self.cache_seen[i] = (hits, misses);
        }
    }

    /// Sends an instance's transmits and re-arms its timer.
    pub(super) fn drain_inst(&mut self, inst: InstId) {
        // A timed-out TCP connection is abandoned: the next query to that upstream opens a new one
        // from a new port (through DNAT again, so to a live endpoint).
        while let Some(addr) = self.insts[inst].server.poll_close_tcp() {
            self.insts[inst].up_ports.remove(&(addr, Transport::Tcp));
        }
        while let Some(t) = self.insts[inst].server.poll_transmit() {
            match t.dest {
                Dest::Client(c) => {
                    let client_node = if self.insts[inst].kind == InstKind::ClusterDns && c.local.ip() == self.insts[inst].ip {
                        // Came through DNAT (or straight to the pod IP): find the asker's node.
                        self.pod_by_ip.get(&c.src.ip()).map(|&p| self.pods[p].node).or_else(|| self.node_by_ip.get(&c.src.ip()).copied())
                    } else {
                        None
                    };
                    self.answer(
                        inst,
                        client_node,
                        Packet { src: c.local, dst: c.src, transport: from_res(c.transport), payload: t.payload },
                    );
                }
                Dest::Upstream { addr, transport } => {
                    let node = self.insts[inst].node;
                    // hostNetwork node-local sockets live on the node IP; replica sockets on the pod IP.
                    let local_ip = match self.insts[inst].kind {
                        InstKind::NodeLocal => self.nodes[node].ip,
                        InstKind::ClusterDns => self.insts[inst].ip,
                    };
                    let transport = from_res(transport);
                    let port = match self.insts[inst].up_ports.get(&(addr, transport)) {
                        Some(p) => *p,
                        None => {
                            let Some(p) = self.nodes[node].ports.bind(&mut self.rng) else { continue };
                            self.insts[inst].up_ports.insert((addr, transport), p);
                            if (0..self.spec.azs).any(|az| upstream_ip(az) == addr.ip()) {
                                self.snat.insert(SocketAddr::new(self.nodes[node].ip, p), (inst, addr, transport));
                            }
                            p
                        }
                    };
                    self.send(Owner::Inst(inst), Packet { src: SocketAddr::new(local_ip, port), dst: addr, transport, payload: t.payload });
                }
                // The loop plugin's probe to itself.
                Dest::Local { port, .. } => {
                    let ip = self.insts[inst].ip;
                    let pkt = Packet {
                        src: SocketAddr::new(ip, 33_000),
                        dst: SocketAddr::new(ip, port),
                        transport: Transport::Udp,
                        payload: t.payload,
                    };
                    self.push(self.now, Ev::Query { inst, pkt, client_node: None });
                }
            }
        }
        if let Some(why) = self.insts[inst].server.halted() {
            let why = why.to_string();
            self.crash(inst, why);
            return;
        }
        let r = &mut self.insts[inst];
        let next = r.server.poll_timeout();
        if let Some(at) = next
            && next != r.timer
        {
            r.timer = next;
            self.push(at, Ev::InstTimer { inst, at });
        }
    }
}
