//! Every documented Kubernetes DNS incident as a seeded regression test (`tests/sNN_*.rs`), run in the
//! simulator with the real resolver.
//!
//! Each incident's topology lives here once (`s01`, `s02`, ...) and is used by both its test file and
//! the `incidents` suite (the README's main job), so the two cannot drift apart.

use std::time::Duration;

pub use sim::client::Hints;
pub use sim::spec::{ClusterSpec, Fault, PodGroup, ProxyMode, ServerProfile};
pub use sim::{Report, run};

pub mod charts;
pub mod detectors;
pub mod s01;
pub mod s02;
pub mod s03;
pub mod s04;
pub mod s05;
pub mod s06;
pub mod s07;
pub mod s08;
pub mod s09;
pub mod s10;
pub mod s11;
pub mod s12;
pub mod s13;
pub mod s15;
pub mod s16;
pub mod s17;
pub mod s18;
pub mod s19;
pub mod s20;
pub mod s21;

/// The line a failing scenario prints so a person can replay it.
pub fn replay(file: &str, test: &str, seed: u64) -> String {
    format!("replay: SIM_SEED={seed} cargo test -p scenarios --test {file} {test}")
}

/// The seed: `SIM_SEED` if set, else the scenario's fixed default.
pub fn seed(default: u64) -> u64 {
    sim::seed_or(default)
}

/// A cluster of `nodes` nodes and `replicas` CoreDNS replicas whose `pods` glibc pods each look up
/// `names` at `rate` per second, for `secs` simulated seconds. The replicas run CoreDNS (the
/// `coredns` profile: what the incidents' clusters ran); a side whose mitigation is ndots says so
/// with `on_ndots`.
pub fn cluster(seed: u64, nodes: usize, replicas: usize, pods: usize, rate: f64, names: &[&str], secs: u64) -> ClusterSpec {
    let mut spec = ClusterSpec::smoke(seed);
    spec.server = ServerProfile::CoreDns(None);
    spec.nodes = nodes;
    spec.azs = nodes.min(3);
    spec.coredns_replicas = replicas;
    spec.duration = Duration::from_secs(secs);
    let template = spec.pods[0].clone();
    spec.pods = vec![PodGroup { count: pods, rate, names: names.iter().map(|n| (n.to_string(), 1)).collect(), ..template }];
    spec
}

/// The same cluster with CoreDNS (of `version`, when a source names one) on the cluster DNS replicas.
pub fn on_coredns(version: Option<&str>, spec: ClusterSpec) -> ClusterSpec {
    ClusterSpec { server: ServerProfile::CoreDns(version.map(str::to_string)), ..spec }
}

/// The same cluster with ndots on the cluster DNS replicas (where ndots is the mitigation).
pub fn on_ndots(spec: ClusterSpec) -> ClusterSpec {
    ClusterSpec { server: ServerProfile::Ndots, ..spec }
}

/// Lookups of `name` in a report.
pub fn lookups<'a>(r: &'a Report, name: &'a str) -> impl Iterator<Item = &'a sim::report::LookupRecord> {
    r.lookups.iter().filter(move |l| l.name == name)
}

/// One side of an incident: a configuration and what to read off its run.
pub struct Case {
    pub label: &'static str,
    pub spec: fn(u64) -> ClusterSpec,
}

/// An incident for the suite: how it failed, how it is mitigated, and the measure that shows it.
pub struct Incident {
    pub id: &'static str,
    /// The incident's scenario files are `files/sNN-<slug>.yaml` (as it failed) and
    /// `files/sNN-<slug>.fixed.yaml` (mitigated).
    pub slug: &'static str,
    /// What a healthy run shows: the failure breaks it, the mitigation keeps it (checked by the
    /// suite). Empty where no generic figure tells the two apart (S19: stale addresses).
    pub expect: sim::file::Expect,
    pub title: &'static str,
    pub source: &'static str,
    pub seed: u64,
    pub failure: Case,
    pub mitigation: Case,
    /// What a run shows, in a few words (measured, never computed beside the run).
    pub measure: fn(&Report) -> String,
}

impl Incident {
    /// The scenario file of one side, relative to the `scenarios` crate.
    pub fn file(&self, fixed: bool) -> String {
        let n: u32 = self.id.trim_start_matches('S').parse().unwrap_or(0);
        format!("files/s{n:02}-{}{}.yaml", self.slug, if fixed { ".fixed" } else { "" })
    }

    /// The scenario of one side at a seed, as its file holds it.
    pub fn scenario(&self, fixed: bool, seed: u64) -> sim::file::Scenario {
        let case = if fixed { &self.mitigation } else { &self.failure };
        sim::file::Scenario {
            name: Some(format!("{} {}: {}", self.id, self.title, case.label)),
            description: None,
            spec: (case.spec)(seed),
            expect: self.expect.clone(),
        }
    }

    /// Whether a run meets the incident's expectations, and the names of those it breaks.
    pub fn verdict(&self, r: &Report) -> Verdict {
        let broken: Vec<&'static str> = self.expect.check(r).iter().filter(|c| !c.ok).map(|c| c.name).collect();
        Verdict { ok: broken.is_empty(), broken }
    }

    /// Whether the expectations tell the two sides apart: the failure breaks them and the mitigation
    /// keeps them. `None` when the incident has no generic expectation (S19: stale addresses, which
    /// its own test asserts); otherwise `Err` says what went wrong.
    pub fn tells_apart(&self, failed: &Report, mitigated: &Report) -> Option<Result<(), String>> {
        if self.expect.check(failed).is_empty() {
            return None;
        }
        let (f, m) = (self.verdict(failed), self.verdict(mitigated));
        Some(if !f.ok && m.ok { Ok(()) } else { Err(format!("{}: as it failed {f}; mitigated {m}", self.id)) })
    }

    /// The comment a scenario file opens with.
    pub fn header(&self, fixed: bool) -> String {
        let (this, other) = if fixed { (&self.mitigation, &self.failure) } else { (&self.failure, &self.mitigation) };
        format!(
            "{} {}: {}.\nSource: {}.\nThis file: {} ({}); the other side: {}.\nCompare: ndots-sim compare scenarios/{} scenarios/{}\nGenerated from the scenarios crate's registry (cargo run -p scenarios --bin incidents -- --export scenarios/files); a test keeps the two equal.",
            self.id,
            self.title,
            if fixed { "mitigated" } else { "as it failed" },
            self.source,
            this.label,
            if fixed { "mitigated" } else { "as it failed" },
            other.label,
            self.file(false),
            self.file(true)
        )
    }
}

/// What a run's expectations said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub ok: bool,
    /// The expectations the run broke.
    pub broken: Vec<&'static str>,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.ok { f.write_str("meets expectations") } else { write!(f, "breaks {}", self.broken.join(", ")) }
    }
}

/// Every incident the suite runs, in order.
pub fn incidents() -> Vec<Incident> {
    vec![
        s01::incident(),
        s02::incident(),
        s03::incident(),
        s04::incident(),
        s05::incident(),
        s06::incident(),
        s07::incident(),
        s08::incident(),
        s09::incident(),
        s10::incident(),
        s11::incident(),
        s12::incident(),
        s13::incident(),
        s15::incident(),
        s16::incident(),
        s17::incident(),
        s18::incident(),
        s19::incident(),
        s20::incident(),
        s21::incident(),
    ]
}
