//! The events of the simulation and what each one does when its time comes.

use std::time::Duration;

use crate::report::Wire;
use crate::spec::Fault;

use super::{Engine, Frame, InstId, InstKind, NodeId, Owner, Packet, PodId, to_res};

#[derive(Debug)]
pub(super) enum Ev {
    /// The autoscaler sets the replica count (scale-down deletes the newest replicas).
    Scale {
        replicas: usize,
    },
    /// An application TCP request from a pod.
    AppRequest {
        pod: PodId,
    },
    LookupStart {
        pod: PodId,
    },
    ClientTimer {
        pod: PodId,
        lookup: u64,
        at: Duration,
    },
    /// A query reaches an instance (after DNAT or NOTRACK). `client_node` is where the sender's
    /// conntrack lives (for un-NAT of the answer), if it went through one.
    Query {
        inst: InstId,
        pkt: Packet,
        client_node: Option<NodeId>,
    },
    /// An answer reaches its owner.
    Answer {
        owner: Owner,
        pkt: Packet,
    },
    InstTimer {
        inst: InstId,
        at: Duration,
    },
    /// An answer from the cloud resolver reaches a node.
    FromUpstream {
        frame: Frame,
    },
    /// ... after the resolver's slowness.
    FromUpstreamLate {
        frame: Frame,
    },
    /// The kubelet checks the replicas' liveness.
    Liveness,
    /// kube-dns's sidecar sends its probe query.
    Probe,
    /// The control plane notices a node that went down.
    NodeNotReady {
        node: NodeId,
    },
    /// The NotReady node's pods are evicted (their tolerations ran out).
    Evict {
        node: NodeId,
    },
    /// A new replica's readiness probe passes: it joins the endpoints.
    ReplicaReady {
        inst: InstId,
    },
    /// A terminating replica's lameduck is over: the process exits.
    ReplicaExit {
        inst: InstId,
    },
    /// A rolling update: a new replica, and once it is ready the next old one goes.
    RollStep {
        old: Vec<InstId>,
    },
    RollNext {
        old: Vec<InstId>,
    },
    /// A frame leaves for the cloud resolver (after the node's TCP handshake, if any).
    ToUpstream {
        frame: Frame,
    },
    Sample,
    Fault(Fault),
    KubeProxy {
        node: NodeId,
    },
    Restart {
        inst: InstId,
    },
}

impl Engine {
    pub(super) fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::LookupStart { pod } => {
                if self.nodes[self.pods[pod].node].down {
                    return;
                }
                self.start_lookup(pod);
                let next = self.exp_gap(pod);
                self.push(next, Ev::LookupStart { pod });
            }
            Ev::ClientTimer { pod, lookup, at } => {
                let Some(l) = self.pods[pod].lookups.get_mut(&lookup) else { return };
                if l.timer != Some(at) {
                    return;
                }
                l.model.handle_timeout(self.now);
                self.drive_lookup(pod, lookup);
            }
            Ev::Query { inst, pkt, client_node } => self.at_inst(inst, pkt, client_node),
            Ev::Answer { owner, pkt } => match owner {
                Owner::Pod(p) => self.at_pod(p, pkt),
                Owner::Inst(i) => {
                    if self.probe_answer(i, &pkt) {
                        return;
                    }
                    if self.insts[i].alive {
                        self.insts[i].server.handle_upstream(self.now, pkt.src, to_res(pkt.transport), &pkt.payload);
                        self.drain_inst(i);
                    }
                }
            },
            Ev::InstTimer { inst, at } => {
                let r = &mut self.insts[inst];
                if r.timer != Some(at) || !r.alive {
                    return;
                }
                r.timer = None;
                r.server.handle_timeout(self.now);
                self.drain_inst(inst);
            }
            Ev::FromUpstream { frame } => match self.upstream_slow.get(frame.az).copied().filter(|d| !d.is_zero()) {
                // A slow cloud resolver: its answers leave it late.
                Some(delay) => self.push(self.now + delay, Ev::FromUpstreamLate { frame }),
                None => self.upstream_answer(frame),
            },
            Ev::FromUpstreamLate { frame } => self.upstream_answer(frame),
            Ev::Liveness => self.liveness(),
            Ev::Probe => self.probe_all(),
            Ev::ReplicaReady { inst } => {
                if let Some(i) = self.insts.get_mut(inst) {
                    i.alive = true;
                }
                self.endpoints_changed();
            }
            Ev::ReplicaExit { inst } => {
                if let Some(i) = self.insts.get_mut(inst) {
                    i.alive = false;
                    i.terminating = false;
                }
                self.endpoints_changed();
            }
            Ev::RollStep { old } => {
                if old.is_empty() {
                    self.report.events.push((self.now, "rollout complete".into()));
                    return;
                }
                self.spawn_replica();
                self.push(self.now + self.spec.replica_startup, Ev::RollNext { old });
            }
            Ev::RollNext { mut old } => {
                let first = old.remove(0);
                self.terminate(first);
                self.push(self.now, Ev::RollStep { old });
            }
            Ev::NodeNotReady { node } => {
                // The node controller marked the node NotReady: its pods leave the endpoints.
                for i in &mut self.insts {
                    if i.node == node {
                        i.unnoticed = false;
                    }
                }
                self.report.events.push((self.now, format!("node {node} NotReady: its replicas leave the endpoints")));
                self.endpoints_changed();
                // Pods tolerate a NotReady node for 300 s (the DefaultTolerationSeconds admission
                // plugin; sources.md#pod-eviction), then are evicted and their ReplicaSet replaces them.
                self.push(self.now + super::EVICTION_TOLERATION, Ev::Evict { node });
            }
            Ev::Evict { node } => {
                let mut stranded = 0;
                for i in self.insts.iter_mut().filter(|i| i.node == node && i.awaiting_eviction) {
                    i.awaiting_eviction = false;
                    stranded += 1;
                }
                if stranded > 0 {
                    self.report.events.push((self.now, format!("node {node}'s {stranded} replicas evicted: the Deployment replaces them")));
                }
                for _ in 0..stranded {
                    self.spawn_replica();
                }
            }
            Ev::ToUpstream { frame } => {
                if self.blackholed[frame.az] {
                    self.net.dropped_blackhole += 1;
                    if let Some(&(inst, _, _)) = self.snat.get(&frame.node_addr) {
                        self.trouble(inst, crate::cause::Cause::Upstream(crate::cause::Drop::Blackhole));
                    }
                } else {
                    self.outbox.push(frame);
                }
            }
            Ev::Sample => {
                for n in &mut self.nodes {
                    n.ct.expire(self.now);
                }
                if self.now.as_secs().is_multiple_of(super::node_detect::SCAN.as_secs()) {
                    self.scan_conntrack();
                }
                if self.now.as_secs().is_multiple_of(super::findings::CHECK.as_secs()) {
                    self.raise_findings();
                }
                let entries = self.conntrack_entries();
                let done = self.report.lookups.len();
                let window = self.report.lookups[self.last_sample_lookups..].to_vec();
                let insert_failed = self.insert_failed();
                let replicas = self.insts.iter().filter(|i| i.kind == InstKind::ClusterDns && i.alive).count();
                let memory_max = self.check_memory();
                self.count_cache();
                let wire = std::mem::replace(&mut self.wire, Wire { eni: vec![0; self.nodes.len()], ..Wire::default() });
                self.report.sample(self.now, entries, &window, &self.net, insert_failed, replicas, memory_max, wire);
                self.last_sample_lookups = done;
                self.push(self.now + Duration::from_secs(1), Ev::Sample);
            }
            Ev::Fault(f) => self.fault(f),
            Ev::KubeProxy { node } => {
                let n = &mut self.nodes[node];
                n.kube_proxy.poll(self.now, &mut n.rules, &mut n.ct);
                // Work it queued for later (a late conntrack cleanup) needs its own wake-up.
                if let Some(at) = n.kube_proxy.next_due() {
                    self.push(at, Ev::KubeProxy { node });
                }
            }
            Ev::Restart { inst } => self.restart(inst),
            Ev::AppRequest { pod } => {
                if self.nodes[self.pods[pod].node].down {
                    return;
                }
                self.app_request(pod);
                let rate = self.pods[pod].app_rate;
                let u = self.rng.f64().max(1e-12);
                let at = self.now + Duration::from_secs_f64(-u.ln() / rate);
                self.push(at, Ev::AppRequest { pod });
            }
            Ev::Scale { replicas } => self.scale_to(replicas, "autoscaler"),
        }
    }
}
