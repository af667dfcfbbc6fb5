//! Scenario files: the documented, versioned YAML form of a [`ClusterSpec`] and the expectations
//! that make a run fail (README "Scenario files" is the reference; `FORMAT_VERSION` is its version).
//!
//! Every key is optional except `version`; a missing key takes the value of the built-in smoke
//! cluster (`ClusterSpec::smoke`: 3 nodes in 3 AZs, 2 CPUs, kernel 5.15, iptables kube-proxy,
//! kubeadm's Corefile with 2 replicas, AWS's 1024 packets/s per ENI, 10 s). Unknown keys are errors.
//! Errors name the file, the line and column, and what was expected there: serde's own messages for
//! shapes and types, and `TryFrom` conversions for values (library names, kernels, faults), which
//! serde_yaml_ng places at the offending value.
//!
//! API boundary: `load`/`parse` give a [`Scenario`]; `to_yaml` writes one back (used to export the
//! incident registry; `parse(to_yaml(s)) == s` is tested).

mod build;
mod locate;
mod raw;
mod write;
pub use build::aws_search_domain;

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use crate::report::Report;
use crate::spec::ClusterSpec;

use build::build;
use locate::{apply_set, strip_location, yaml_error};
use raw::RawFile;
use write::unbuild;

/// The scenario file format's version; files declare it as `version: 1`.
pub const FORMAT_VERSION: u32 = 1;

/// A loaded scenario: the cluster to simulate and what its run must show.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: Option<String>,
    pub description: Option<String>,
    pub spec: ClusterSpec,
    pub expect: Expect,
}

/// A mistake in a scenario file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("{file}:{line}:{column}: {msg}")]
    At { file: String, line: usize, column: usize, msg: String },
    #[error("{file}: {msg}")]
    File { file: String, msg: String },
}

/// Reads and checks a scenario file; `sets` are `key.path=value` overrides (`--set`).
pub fn load(path: &Path, sets: &[String]) -> Result<Scenario, FileError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| FileError::File { file: file.clone(), msg: e.to_string() })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, &file, base, sets)
}

/// Parses scenario text; relative paths inside resolve against `base`.
pub fn parse(text: &str, file: &str, base: &Path, sets: &[String]) -> Result<Scenario, FileError> {
    let raw: RawFile = if sets.is_empty() {
        serde_yaml_ng::from_str(text).map_err(|e| yaml_error(file, &e))?
    } else {
        let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| yaml_error(file, &e))?;
        for s in sets {
            apply_set(&mut doc, s).map_err(|msg| FileError::File { file: file.to_string(), msg: format!("--set {s}: {msg}") })?;
        }
        serde_yaml_ng::from_value(doc).map_err(|e| FileError::File {
            file: file.to_string(),
            msg: format!("{} (after --set {})", strip_location(&e.to_string()), sets.join(" --set ")),
        })?
    };
    build(raw, file, text, base)
}

/// Writes a scenario as YAML: only what differs from the defaults, with `header` as a comment.
pub fn to_yaml(s: &Scenario, header: &str) -> String {
    let raw = unbuild(s);
    let body = serde_yaml_ng::to_string(&raw).unwrap_or_else(|e| format!("# cannot serialise: {e}\n"));
    let mut out = String::new();
    for line in header.lines() {
        out.push_str(if line.is_empty() { "#" } else { "# " });
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&body);
    out
}

/// The fuzz target's body (`fuzz`, `scenario_file`): any text is a scenario or an error
/// that names the file; a scenario written back with `to_yaml` reads back the same.
pub fn fuzz(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse(text, "fuzz.yaml", Path::new("/nonexistent"), &[]) {
        Ok(s) => {
            let again = parse(&to_yaml(&s, ""), "again.yaml", Path::new("/nonexistent"), &[]);
            assert!(again.as_ref().is_ok_and(|a| *a == s), "round trip: {again:?}");
        }
        Err(e) => assert!(e.to_string().starts_with("fuzz.yaml"), "{e}"),
    }
}

/// Expectations (SLOs) a run must meet; each unset one is not checked.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Expect {
    /// Share of lookups that returned addresses, 0..=1 (NXDOMAIN, NODATA and errors are not).
    pub success_rate_min: Option<f64>,
    pub p50_ms_max: Option<f64>,
    pub p99_ms_max: Option<f64>,
    /// The slowest lookup.
    pub max_ms_max: Option<f64>,
    /// Packets conntrack dropped: insertion races and a full table.
    pub conntrack_drops_max: Option<u64>,
    /// Packets the cloud dropped over the per-ENI budget (`linklocal_allowance_exceeded`).
    pub eni_drops_max: Option<u64>,
    /// Resolver restarts (OOM kills).
    pub restarts_max: Option<u64>,
    /// Queries on the wire per application lookup.
    pub queries_per_lookup_max: Option<f64>,
    /// Lookups still waiting at the end of the run after 1 s or more (stuck, not yet counted).
    pub unfinished_max: Option<u64>,
}

/// One checked expectation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub measured: f64,
    pub limit: f64,
    pub ok: bool,
}

impl Expect {
    /// Checks the run against every set expectation.
    pub fn check(&self, r: &Report) -> Vec<Check> {
        let mut out = Vec::new();
        let mut max = |name, measured: f64, limit: Option<f64>| {
            if let Some(limit) = limit {
                out.push(Check { name, measured, limit, ok: measured <= limit });
            }
        };
        max("p50_ms_max", r.latency_ms(0.5), self.p50_ms_max);
        max("p99_ms_max", r.latency_ms(0.99), self.p99_ms_max);
        max("max_ms_max", r.latency_ms(1.0), self.max_ms_max);
        max("conntrack_drops_max", (r.net.dropped_race + r.net.dropped_table_full) as f64, self.conntrack_drops_max.map(|v| v as f64));
        max("eni_drops_max", r.net.dropped_eni as f64, self.eni_drops_max.map(|v| v as f64));
        max("restarts_max", r.net.restarts as f64, self.restarts_max.map(|v| v as f64));
        max("unfinished_max", r.unfinished_over(Duration::from_secs(1)) as f64, self.unfinished_max.map(|v| v as f64));
        max("queries_per_lookup_max", r.queries() as f64 / r.lookups.len().max(1) as f64, self.queries_per_lookup_max);
        if let Some(limit) = self.success_rate_min {
            let measured = r.success_rate();
            out.push(Check { name: "success_rate_min", measured, limit, ok: measured >= limit });
        }
        out
    }
}
