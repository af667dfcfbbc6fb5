//! The detectors' findings over the run: every 10 s, as the driver's log checks them
//! (`driver::http::findings_logger`), and at the end, each (where, detector, subject) kept once with
//! the first and last check that raised it and its last state (`Report::findings`).

use std::time::Duration;

use crate::report::Raised;

use super::{Engine, InstKind};

/// How often the findings are checked (the driver's logger's period).
pub(super) const CHECK: Duration = Duration::from_secs(10);

impl Engine {
    /// Checks every detector now: the replicas' counts summed, the node-local caches' summed, and
    /// each node's conntrack scan; new findings are added, held ones updated.
    pub(super) fn raise_findings(&mut self) {
        let now = self.now;
        let mut current = Vec::new();
        for (kind, label) in [(InstKind::ClusterDns, "cluster DNS"), (InstKind::NodeLocal, "node-local-dns")] {
            let mut all = resolver::detect::Stats::default();
            let mut any = false;
            for i in self.insts.iter_mut().filter(|i| i.kind == kind) {
                i.server.detect_tick(now);
                all.merge(&i.server.metrics.detect);
                any = true;
            }
            if any {
                current.extend(all.findings(now).into_iter().map(|f| (label.to_string(), f)));
            }
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
