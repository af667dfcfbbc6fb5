//! What went wrong with a lookup, as the simulator saw it: the causes the engine charges to lookups
//! (`engine/blame.rs`) and `explain` counts and tells.

use std::time::Duration;

/// Where a packet was lost, as the network model decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Drop {
    /// The conntrack insertion race dropped it (sources.md#conntrack-race).
    Race,
    /// The conntrack table was full.
    TableFull,
    /// Over the ENI's packet budget to the cloud resolver (sources.md#cloud-resolver-limits).
    Eni,
    /// Sent to a resolver that is gone (deleted, crashed, its node down).
    Dead,
    /// IPVS kept the flow on a real server that is gone (sources.md#ipvs).
    Ipvs,
    /// Rejected: the Service had no endpoints.
    Rejected,
    /// Lost on a lossy link, AZ or path to the cloud resolver.
    Loss,
    /// An IP fragment of a large UDP answer, dropped.
    Fragment,
    /// An answer whose conntrack entry was gone, so nothing un-NATed it and the socket ignored it.
    Unnat,
    /// The cloud resolver did not answer (black-holed).
    Blackhole,
}

impl Drop {
    /// What happened, to one of the lookup's own packets.
    pub fn as_str(self) -> &'static str {
        match self {
            Drop::Race => "its query was lost in the conntrack insertion race",
            Drop::TableFull => "a packet was dropped: conntrack table full",
            Drop::Eni => "a packet went over the ENI's packet budget",
            Drop::Dead => "its query went to a resolver that was gone",
            Drop::Ipvs => "IPVS kept its query on a deleted replica",
            Drop::Rejected => "its query was rejected: the Service had no endpoints",
            Drop::Loss => "a packet was lost on the network",
            Drop::Fragment => "its answer was fragmented and dropped",
            Drop::Unnat => "its answer was ignored: the conntrack entry was gone (not un-NATed)",
            Drop::Blackhole => "the cloud resolver did not answer",
        }
    }

    /// What happened, to a packet of a resolver the lookup asked.
    pub fn upstream_str(self) -> &'static str {
        match self {
            Drop::Race => "its resolver's upstream query was lost in the conntrack race",
            Drop::TableFull => "its resolver's upstream packet was dropped: conntrack table full",
            Drop::Eni => "its resolver's upstream query went over the ENI's packet budget",
            Drop::Dead => "its resolver forwarded to a resolver that was gone",
            Drop::Ipvs => "IPVS kept its resolver's upstream query on a deleted replica",
            Drop::Rejected => "its resolver's upstream query was rejected (no endpoints)",
            Drop::Loss => "its resolver's upstream packet was lost on the network",
            Drop::Fragment => "its resolver's upstream answer was fragmented and dropped",
            Drop::Unnat => "its resolver's upstream answer was not un-NATed",
            Drop::Blackhole => "the cloud resolver did not answer its resolver",
        }
    }

    /// The short key JSON and tests use.
    pub fn key(self) -> &'static str {
        match self {
            Drop::Race => "race",
            Drop::TableFull => "table_full",
            Drop::Eni => "eni",
            Drop::Dead => "dead",
            Drop::Ipvs => "ipvs",
            Drop::Rejected => "rejected",
            Drop::Loss => "loss",
            Drop::Fragment => "fragment",
            Drop::Unnat => "unnat",
            Drop::Blackhole => "blackhole",
        }
    }
}

/// One thing that happened to a lookup that makes it slow or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cause {
    /// A packet of the lookup (its query or its answer) was dropped.
    Packet(Drop),
    /// A resolver it asked lost a packet of its own (to the cloud resolver or the cluster DNS).
    Upstream(Drop),
    /// It got this rcode (2 SERVFAIL, 5 REFUSED).
    Answer(u8),
    /// It got a truncated UDP answer (TC=1): a client that ignores it fails, one that honours it
    /// asks again over TCP.
    Truncated,
    /// A resolver it asked crashed (OOM, liveness) while it waited.
    Restart,
    /// It waited for a free thread (Node's pool) before it started.
    Queued,
    /// Still waiting when the run ended.
    Stuck,
}

impl Cause {
    pub fn text(self) -> String {
        match self {
            Cause::Packet(d) => d.as_str().into(),
            Cause::Upstream(d) => d.upstream_str().into(),
            Cause::Answer(2) => "answered SERVFAIL".into(),
            Cause::Answer(5) => "answered REFUSED".into(),
            Cause::Answer(r) => format!("answered rcode {r}"),
            Cause::Truncated => "got a truncated answer (TC=1)".into(),
            Cause::Restart => "its resolver crashed and restarted".into(),
            Cause::Queued => "waited for a free thread".into(),
            Cause::Stuck => "still waiting when the run ended".into(),
        }
    }

    pub fn key(self) -> String {
        match self {
            Cause::Packet(d) => d.key().to_string(),
            Cause::Upstream(d) => format!("upstream_{}", d.key()),
            Cause::Answer(2) => "servfail".into(),
            Cause::Answer(5) => "refused".into(),
            Cause::Answer(r) => format!("rcode_{r}"),
            Cause::Truncated => "truncated".into(),
            Cause::Restart => "restart".into(),
            Cause::Queued => "queued".into(),
            Cause::Stuck => "stuck".into(),
        }
    }
}

/// A lookup is explained when it failed or took at least this long (a retransmission: every
/// modelled library waits a second or more before it asks again).
pub const SLOW: Duration = Duration::from_secs(1);

/// The cause a slow or failed lookup is counted under: the first thing that went wrong, so one
/// lookup counts once.
pub fn primary(causes: &[(Duration, Cause)]) -> Option<Cause> {
    causes.first().map(|(_, c)| *c)
}
