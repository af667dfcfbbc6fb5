//! Which lookup a lost packet belonged to (`explain`): a drop of a pod's query or of the answer to
//! it is charged to the lookups on that socket; a drop of a resolver's own packet (to the cloud
//! resolver, to the cluster DNS) and a resolver's crash are kept per resolver, and charged to the
//! slow or failed lookups that asked it while they waited.

use std::net::SocketAddr;
use std::time::Duration;

use crate::cause::{Cause, Drop, SLOW};
use crate::report::NetCounters;

use super::{Engine, InstId};

/// Troubles kept per resolver: enough for the lookups waiting on it (a few seconds' worth).
const BLAME_KEEP: usize = 64;

/// Causes kept per lookup: the first ones tell the story.
const CAUSES_KEEP: usize = 16;

/// Which drop counter moved between `before` and `after`, if one did.
pub(super) fn dropped(before: &NetCounters, after: &NetCounters) -> Option<Drop> {
    let moved = |f: fn(&NetCounters) -> u64| f(after) > f(before);
    [
        (moved(|n| n.dropped_race), Drop::Race),
        (moved(|n| n.dropped_table_full), Drop::TableFull),
        (moved(|n| n.dropped_eni), Drop::Eni),
        (moved(|n| n.dropped_ipvs), Drop::Ipvs),
        (moved(|n| n.rejected), Drop::Rejected),
        (moved(|n| n.dropped_dead), Drop::Dead),
        (moved(|n| n.dropped_fragments), Drop::Fragment),
        (moved(|n| n.dropped_loss), Drop::Loss),
        (moved(|n| n.dropped_unnat), Drop::Unnat),
        (moved(|n| n.dropped_blackhole), Drop::Blackhole),
    ]
    .into_iter()
    .find_map(|(m, d)| m.then_some(d))
}

impl Engine {
    /// `cause` happened to the packet at `addr`: a pod's socket (its lookups), or a resolver's.
    pub(super) fn blame(&mut self, addr: SocketAddr, cause: Cause) {
        let now = self.now;
        if let Some(&pod) = self.pod_by_ip.get(&addr.ip()) {
            for (id, _) in self.port_lookups(pod, addr.port()) {
                if let Some(l) = self.pods[pod].lookups.get_mut(&id)
                    && l.causes.len() < CAUSES_KEEP
                    && l.causes.last().is_none_or(|(_, c)| *c != cause)
                {
                    l.causes.push((now, cause));
                }
            }
        } else if let Some(inst) = self.inst_at(addr) {
            let c = match cause {
                Cause::Packet(d) => Cause::Upstream(d),
                c => c,
            };
            self.trouble(inst, c);
        }
    }

    /// A resolver's own trouble, kept for the lookups that asked it.
    pub(super) fn trouble(&mut self, inst: InstId, cause: Cause) {
        let q = self.inst_trouble.entry(inst).or_default();
        if q.len() == BLAME_KEEP {
            q.pop_front();
        }
        q.push_back((self.now, cause));
    }

    /// The resolver a packet address belongs to: a replica's pod IP, or a node socket one of the
    /// node's resolvers bound (node-local-dns, SNAT to the cloud).
    fn inst_at(&self, addr: SocketAddr) -> Option<InstId> {
        if let Some(&i) = self.replica_by_ip.get(&addr.ip()) {
            return Some(i);
        }
        if let Some(&(i, _, _)) = self.snat.get(&addr) {
            return Some(i);
        }
        let node = *self.node_by_ip.get(&addr.ip())?;
        self.insts.iter().position(|i| i.node == node && i.up_ports.values().any(|p| *p == addr.port()))
    }

    /// A lookup's query reached a resolver.
    pub(super) fn reached(&mut self, src: SocketAddr, inst: InstId) {
        let Some(&pod) = self.pod_by_ip.get(&src.ip()) else { return };
        for (id, _) in self.port_lookups(pod, src.port()) {
            if let Some(l) = self.pods[pod].lookups.get_mut(&id)
                && !l.insts.contains(&inst)
                && l.insts.len() < CAUSES_KEEP
            {
                l.insts.push(inst);
            }
        }
    }

    /// A finished lookup's causes: none for a quick success; for a slow or failed one, its own,
    /// with the troubles of the resolvers it asked while it waited, in time order.
    pub(super) fn finish_causes(
        &self,
        start: Duration,
        ok: bool,
        mut own: Vec<(Duration, Cause)>,
        insts: &[InstId],
    ) -> Vec<(Duration, Cause)> {
        if ok && self.now.saturating_sub(start) < SLOW {
            return Vec::new();
        }
        for i in insts {
            for &(t, c) in self.inst_trouble.get(i).into_iter().flatten() {
                if t >= start && t <= self.now && !own.iter().any(|(_, o)| *o == c) && own.len() < CAUSES_KEEP {
                    own.push((t, c));
                }
            }
        }
        own.sort();
        own
    }
}
