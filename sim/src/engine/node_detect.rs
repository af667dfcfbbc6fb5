//! ndots' node-side detector (`stale_conntrack`) on every node, as ndots in node-local mode runs
//! it on a real one: every `SCAN` the node's UDP conntrack entries to the DNS Services beside their
//! endpoints as the API has them (`resolver::detect::conntrack`). A node's detector state is made
//! the first time its table holds a flow to an address that is not an endpoint.

use std::time::Duration;

use netmodel::Proto;
use resolver::detect::{CtFlow, DnsService, StaleFlows, Stats};

use super::{Engine, KUBE_DNS, KUBE_DNS_UPSTREAM};

/// How often each node's table is read (the `detect { conntrack_scan }` default).
pub(super) const SCAN: Duration = Duration::from_secs(10);

/// A node's detector: its memory between scans and its counts.
#[derive(Default)]
pub(super) struct NodeDetect {
    flows: StaleFlows,
    stats: Stats,
}

impl Engine {
    /// One scan of every node's table.
    pub(super) fn scan_conntrack(&mut self) {
        let now = self.now;
        let eps: Vec<_> = self.ready_endpoints().iter().map(|a| a.ip()).collect();
        let services: Vec<DnsService> = [("kube-dns", KUBE_DNS), ("kube-dns-upstream", KUBE_DNS_UPSTREAM)]
            .iter()
            .map(|(name, vip)| DnsService { name: name.to_string(), ips: vec![vip.ip()], endpoints: eps.clone() })
            .collect();
        for (i, n) in self.nodes.iter().enumerate().filter(|(_, n)| !n.down) {
            let flows: Vec<CtFlow> =
                n.ct.flows_to(Proto::Udp, &[KUBE_DNS, KUBE_DNS_UPSTREAM])
                    .into_iter()
                    .map(|e| CtFlow {
                        client: e.orig.src,
                        service: e.orig.dst,
                        backend: e.nat_target().ip(),
                        expires_in: e.expires.saturating_sub(now),
                    })
                    .collect();
            if !self.node_detect.contains_key(&i) && flows.iter().all(|f| f.off_endpoints(&services).is_none()) {
                continue;
            }
            let d = self.node_detect.entry(i).or_default();
            d.flows.handle_scan(now, &services, &flows, &mut d.stats);
        }
    }

    /// The node detectors' current findings, labelled by node.
    pub(super) fn node_findings(&self) -> Vec<(String, resolver::detect::Finding)> {
        self.node_detect.iter().flat_map(|(n, d)| d.stats.findings(self.now).into_iter().map(move |f| (format!("node {n}"), f))).collect()
    }
}
