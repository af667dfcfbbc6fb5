//! Each incident's own chart in the suite's report: the figure its story is about (queries per
//! lookup for S1, memory against the limit for the OOM stories, the table against
//! `nf_conntrack_max` for S10, success for S11, ...), with a two-line caption.

use sim::report::Second;

use crate::{ClusterSpec, Report};

/// A limit's value, from the failing side's cluster and run.
pub type LimitOf = fn(&ClusterSpec, &Report) -> f64;

/// What to draw for one incident, both sides overlaid.
pub struct OwnChart {
    pub title: &'static str,
    pub y: &'static str,
    /// Two lines: what is drawn, and what to see in it.
    pub caption: &'static str,
    pub metric: fn(&Second) -> f64,
    /// A line to measure against, from the failing side's cluster and run.
    pub limit: Option<(&'static str, LimitOf)>,
    pub log_y: bool,
    pub integer: bool,
    pub y_top: Option<f64>,
}

fn p99(s: &Second) -> f64 {
    if s.lookups == 0 { f64::NAN } else { s.p99_ms }
}
fn ok_pct(s: &Second) -> f64 {
    if s.lookups == 0 { f64::NAN } else { 100.0 * (s.lookups - s.failed) as f64 / s.lookups as f64 }
}
fn failed(s: &Second) -> f64 {
    s.failed as f64
}
fn queries_per_lookup(s: &Second) -> f64 {
    if s.lookups == 0 { f64::NAN } else { s.wire.by_type.iter().sum::<u64>() as f64 / s.lookups as f64 }
}
fn aaaa(s: &Second) -> f64 {
    s.wire.by_type[1] as f64
}
fn memory_mib(s: &Second) -> f64 {
    s.memory_max as f64 / f64::from(1u32 << 20)
}
fn memory_limit(spec: &ClusterSpec, _: &Report) -> f64 {
    spec.replica_memory.map_or(0.0, |m| m.limit as f64 / f64::from(1u32 << 20))
}
fn replicas(s: &Second) -> f64 {
    s.replicas as f64
}
fn busiest_eni(s: &Second) -> f64 {
    s.wire.eni.iter().copied().max().unwrap_or(0) as f64
}
fn eni_limit(spec: &ClusterSpec, _: &Report) -> f64 {
    spec.eni_limit.map_or(0.0, |e| e.rate_per_sec)
}
fn servfail(s: &Second) -> f64 {
    s.wire.rcodes[2] as f64
}
fn conntrack_max_node(s: &Second) -> f64 {
    s.conntrack.iter().copied().max().unwrap_or(0) as f64
}
fn nf_conntrack_max(_: &ClusterSpec, r: &Report) -> f64 {
    r.conntrack_max.first().copied().unwrap_or(0) as f64
}
fn refused(s: &Second) -> f64 {
    s.wire.rcodes[3] as f64
}

const LATENCY: OwnChart = OwnChart {
    title: "lookup latency p99 per second",
    y: "ms",
    caption: "",
    metric: p99,
    limit: None,
    log_y: true,
    integer: false,
    y_top: None,
};

/// The chart an incident is told by.
pub fn own(id: &str) -> OwnChart {
    match id {
        "S1" => OwnChart {
            title: "queries per lookup",
            y: "queries per lookup",
            caption: "Packets the library sent per lookup, each second.\nndots:5 tries every search domain (A and AAAA) before the name itself; the fix asks once.",
            metric: queries_per_lookup,
            log_y: false,
            ..LATENCY
        },
        "S2" | "S20" => OwnChart {
            caption: "The 99th percentile of the lookups finished each second (log scale).\nOne of a socket's A/AAAA pair lost in conntrack's insertion race: glibc waits out 5 s.",
            ..LATENCY
        },
        "S3" => OwnChart {
            title: "AAAA queries per second",
            y: "queries/s",
            caption: "AAAA queries the pods sent each second.\nWithout AI_ADDRCONFIG an IPv4-only pod asks for AAAA anyway; with it (and no IPv6 address) it does not.",
            metric: aaaa,
            integer: true,
            log_y: false,
            ..LATENCY
        },
        "S4" | "S13" => OwnChart {
            title: "replica memory against its limit",
            y: "MiB",
            caption: "The largest replica's memory by the scenario's memory model, each second.\nOver the limit the kernel OOM-kills it; every replica at once is an outage.",
            metric: memory_mib,
            limit: Some(("memory limit (MiB)", memory_limit)),
            log_y: false,
            ..LATENCY
        },
        "S5" | "S12" => OwnChart {
            caption: "The 99th percentile of the lookups finished each second (log scale).\nRetransmissions show as the seconds and 5 s steps; the mitigated side stays at milliseconds.",
            ..LATENCY
        },
        "S6" | "S17" | "S21" => OwnChart {
            title: "failed lookups per second",
            y: "lookups/s",
            caption: "Lookups that failed each second.\nQueries kept on a deleted replica's address (IPVS, a stale conntrack entry) get no answer until it expires.",
            metric: failed,
            integer: true,
            log_y: false,
            ..LATENCY
        },
        "S7" => OwnChart {
            title: "cluster DNS replicas",
            y: "replicas",
            caption: "Replicas serving, each second.\nThe proportional autoscaler follows the node count down; fewer replicas carry the same load.",
            metric: replicas,
            integer: true,
            log_y: false,
            ..LATENCY
        },
        "S8" => OwnChart {
            title: "packets per second on the busiest ENI",
            y: "packets/s",
            caption: "Packets the busiest node sent to the cloud resolver each second.\nAbove 1,024 the cloud drops them silently; a cache keeps the rate far below it.",
            metric: busiest_eni,
            limit: Some(("ENI limit (packets/s)", eni_limit)),
            integer: true,
            log_y: false,
            ..LATENCY
        },
        "S9" => OwnChart {
            title: "SERVFAIL answers per second",
            y: "responses/s",
            caption: "SERVFAIL answers the pods got each second.\nA replica forwarding to its AZ's failed resolver answers SERVFAIL until health checks steer it away.",
            metric: servfail,
            integer: true,
            log_y: false,
            ..LATENCY
        },
        "S10" => OwnChart {
            title: "conntrack entries on the busiest node",
            y: "entries",
            caption: "Entries in the fullest node's conntrack table, each second.\nAt nf_conntrack_max new flows are dropped: DNS queries first, as each is a new flow.",
            metric: conntrack_max_node,
            limit: Some(("nf_conntrack_max", nf_conntrack_max)),
            integer: true,
            log_y: false,
            ..LATENCY
        },
        "S11" | "S16" | "S18" => OwnChart {
            title: "lookups that succeeded",
            y: "% ok",
            caption: "The share of the lookups finished each second that succeeded.\nA failure that is fast (an error at once) hides in latency charts; here it shows.",
            metric: ok_pct,
            log_y: false,
            y_top: Some(100.0),
            ..LATENCY
        },
        "S15" => OwnChart {
            title: "REFUSED answers per second",
            y: "responses/s",
            caption: "REFUSED answers each second: dnsmasq at its 150 concurrent forwards.\nThe sidecar's probe then fails and the kubelet restarts the pod, making it worse.",
            metric: refused,
            integer: true,
            log_y: false,
            ..LATENCY
        },
        _ => OwnChart {
            caption: "The 99th percentile of the lookups finished each second (log scale).\nThe application cache hides the stale answer; the latency shows what reached the wire.",
            ..LATENCY
        },
    }
}
