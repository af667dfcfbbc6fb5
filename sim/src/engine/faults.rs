//! The fault timeline: what each scenario fault does to the cluster.

use std::time::Duration;

use crate::spec::Fault;

use super::{Engine, Ev, InstId, InstKind, NodeId};

impl Engine {
    pub(super) fn fault(&mut self, f: Fault) {
        self.report.events.push((self.now, f.label()));
        match f {
            Fault::KillReplica(r) => {
                let Some(inst) = self.insts.iter().enumerate().filter(|(_, i)| i.kind == InstKind::ClusterDns).nth(r).map(|(i, _)| i)
                else {
                    return;
                };
                self.insts[inst].alive = false;
                self.endpoints_changed();
                // Its ReplicaSet sees one pod short and creates a replacement at once, which joins
                // the endpoints once ready (a deleted pod comes back; a scaled-down one does not).
                self.spawn_replica();
            }
            Fault::UpstreamBlackhole(az) => {
                if let Some(b) = self.blackholed.get_mut(az) {
                    *b = true;
                }
            }
            Fault::UpstreamRepair(az) => {
                if let Some(b) = self.blackholed.get_mut(az) {
                    *b = false;
                }
            }
            Fault::UpstreamSlow { az, delay } => {
                if let Some(d) = self.upstream_slow.get_mut(az) {
                    *d = delay;
                }
            }
            Fault::ScaleReplicas(n) => self.scale_to(n, "kubectl scale"),
            Fault::KubeProxyRestart => {
                for n in &mut self.nodes {
                    n.kube_proxy.restart(&n.rules, &mut n.ct);
                }
            }
            Fault::RollReplicas => {
                let old: Vec<InstId> =
                    (0..self.insts.len()).filter(|&i| self.insts[i].kind == InstKind::ClusterDns && self.insts[i].alive).collect();
                self.push(self.now, Ev::RollStep { old });
            }
            Fault::NodeDown(node) => {
                let Some(n) = self.nodes.get_mut(node) else { return };
                n.down = true;
                // Its pods are gone with their lookups; its resolvers stop answering but stay ready
                // endpoints until the node controller marks the node NotReady.
                for p in self.pods.iter_mut().filter(|p| p.node == node) {
                    p.lookups.clear();
                    p.waiting.clear();
                }
                for i in self.insts.iter_mut().filter(|i| i.node == node && i.alive) {
                    i.alive = false;
                    i.unnoticed = i.kind == InstKind::ClusterDns;
                    i.awaiting_eviction = i.kind == InstKind::ClusterDns;
                }
                let grace = self.spec.node_monitor_grace;
                self.push(self.now + grace, Ev::NodeNotReady { node });
            }
            Fault::NodeLocalDown(node) => {
                // Teardown: the NOTRACK rules and the link-local address go (kubernetes/dns#310).
                if let Some(n) = self.nodes.get_mut(node) {
                    n.node_local = None;
                }
                if let Some(i) = self.insts.iter().position(|i| i.kind == InstKind::NodeLocal && i.node == node) {
                    self.insts[i].alive = false;
                }
            }
            Fault::AzLoss { az, loss } => {
                if let Some(l) = self.az_loss.get_mut(az) {
                    *l = loss.clamp(0.0, 1.0);
                }
                if let Some(b) = self.az_burst.get_mut(az) {
                    *b = None;
                }
            }
            Fault::AzBurstLoss { az, loss, burst } => {
                if let Some(b) = self.az_burst.get_mut(az) {
                    let loss = loss.clamp(0.0, 0.999);
                    *b = (loss > 0.0 && !burst.is_zero()).then_some((loss, burst, false, self.now));
                }
            }
            Fault::ServiceIp { namespace, name, ip } => {
                self.service_ips.insert((namespace, name), ip);
                self.publish_state();
            }
            Fault::ClusterNodes(n) => {
                if let Some(cpa) = self.spec.autoscaler {
                    // The autoscaler notices at its next poll.
                    let target = cpa.replicas(n, n * self.spec.cpus_per_node);
                    let at = self.now + cpa.poll;
                    self.push(at, Ev::Scale { replicas: target });
                }
            }
            Fault::ApiserverRestart => {
                // The watches break and relist what the apiserver holds (the same objects): the
                // relist goes through `Watched` as the binary's does and leaves the state as it was;
                // its memory (old and new objects held together) is the replicas' `relist_until`.
                let objects = self.watched.objects().clone();
                self.watched.relist(&objects);
                let until = self.now + self.spec.replica_memory.map_or(Duration::from_secs(10), |m| m.relist);
                for i in &mut self.insts {
                    if i.alive && i.kind == InstKind::ClusterDns {
                        i.relist_until = Some(until);
                    }
                }
                self.check_memory();
            }
            Fault::UpstreamLoss { az, loss } => {
                if let Some(l) = self.upstream_loss.get_mut(az) {
                    *l = loss.clamp(0.0, 1.0);
                }
            }
            Fault::LinkLoss { a, b, loss } => {
                let key = (a.min(b), a.max(b));
                if loss > 0.0 {
                    self.link_loss.insert(key, loss.min(1.0));
                } else {
                    self.link_loss.remove(&key);
                }
            }
            Fault::RollNodeLocal { gap } => {
                // One node at a time, in node order, each waiting for the previous one's new pod.
                let nodes: Vec<NodeId> = self.insts.iter().filter(|i| i.kind == InstKind::NodeLocal).map(|i| i.node).collect();
                for (k, node) in nodes.into_iter().enumerate() {
                    let down = self.now + gap * k as u32;
                    self.push(down, Ev::Fault(Fault::NodeLocalDown(node)));
                    self.push(down + gap, Ev::Fault(Fault::NodeLocalUp(node)));
                }
            }
            Fault::NodeLocalUp(node) => {
                if let Some(i) = self.insts.iter().position(|i| i.kind == InstKind::NodeLocal && i.node == node) {
                    self.nodes[node].node_local = Some(i);
                    self.restart(i);
                }
            }
        }
    }
}
