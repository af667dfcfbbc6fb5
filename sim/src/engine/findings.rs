//! The detectors' findings over the run: every 10 s, as the driver's log checks them
//! (`driver::http::findings_logger`), and at the end, each (where, detector, subject) kept once with
//! the first and last check that raised it and its last state (`Report::findings`).

use std::time::Duration;

use crate::report::Raised;

use super::{Engine, InstKind};

/// How often the findings are checked (the driver's logger's period).
pub(super) const CHECK: Duration = Duration::from_secs(10);

impl Engine {
    /// Checks every detector now: each live replica's and node-local cache's own counts, as each
    /// process's `/debug/findings` and log judge them (no process sees another's traffic), the
    /// replicas' summed counts for what only a sum can judge, and each node's conntrack scan; new
    /// findings are added, held ones updated.
    pub(super) fn raise_findings(&mut self) {
        let now = self.now;
        let mut current = Vec::new();
        let mut summed = resolver::detect::Stats::default();
        for i in self.insts.iter_mut().filter(|i| i.alive) {
            i.server.detect_tick(now);
            let at = match i.kind {
                InstKind::ClusterDns => {
                    summed.merge(&i.server.metrics.detect);
                    format!("cluster DNS {}", i.ip)
                }
                InstKind::NodeLocal => format!("node-local-dns on node {}", i.node),
            };
            current.extend(i.server.metrics.detect.findings(now).into_iter().map(|f| (at.clone(), f)));
        }
        // Across replicas, truncation_ignored is an alert rule (NdotsTruncationIgnored in
        // deploy/ndots-alerts.yaml) over the per-client metrics summed by Prometheus: what no
        // single replica can judge (its clients' TCP retries may all reach another one).
        if summed.replicas > 1 {
            summed.replicas = 1;
            current.extend(
                summed
                    .findings(now)
                    .into_iter()
                    .filter(|f| f.detector == resolver::detect::KINDS[resolver::detect::TRUNCATION])
                    .map(|f| ("cluster DNS, replicas summed (alert rule)".to_string(), f)),
            );
        }
        current.extend(self.node_findings());
        for (at, f) in current {
            let held =
                self.report.findings.iter_mut().find(|x| x.at == at && x.finding.detector == f.detector && x.finding.subject == f.subject);
            match held {
                Some(x) => {
                    x.last = now;
                    x.finding = f;
                }
                None => self.report.findings.push(Raised { at, first: now, last: now, finding: f }),
            }
        }
    }
}
