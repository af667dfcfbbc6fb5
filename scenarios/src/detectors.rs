//! Which of the resolver's detectors (`resolver::detect`) each incident should make fire: on its
//! failing side, and not on its mitigated side. The detector tests assert it at the registry's
//! seeds; `incidents --detectors N` measures misses and false alarms over seeds 1..=N.

use crate::Report;

/// (incident, detector) pairs the detectors are judged on.
pub const EXPECTED: &[(&str, &str)] = &[
    ("S1", "search_walk"),
    ("S2", "race"),
    ("S2", "retransmit"),
    ("S8", "upstream_budget"),
    ("S11", "truncation_ignored"),
    ("S12", "retransmit"),
    ("S17", "stale_conntrack"),
    ("S21", "stale_conntrack"),
];

/// Whether `detector` reported anything in the run.
pub fn fired(r: &Report, detector: &str) -> bool {
    r.findings.iter().any(|x| x.finding.detector == detector)
}
