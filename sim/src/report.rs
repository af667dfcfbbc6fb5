//! What a simulation run measured: every lookup, a per-second time series, the events, the trace hash.

use std::time::Duration;

use netmodel::Kernel;
use netmodel::conntrack::Race;

use crate::spec::ClusterSpec;

/// A resolver's detector finding (`resolver::detect`), as the report carries them.
pub use resolver::detect::Finding;

/// One application lookup (one getaddrinfo call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupRecord {
    pub pod: usize,
    /// The scenario's pod group the pod belongs to (index into `ClusterSpec::pods`).
    pub group: usize,
    pub start: Duration,
    pub end: Duration,
    pub name: String,
    /// Packets the library put on the wire for it.
    pub queries: u32,
    pub ok: bool,
    pub outcome: LookupOutcome,
    /// The first address returned.
    pub addr: Option<std::net::IpAddr>,
    /// Answered by an application cache, no query sent.
    pub cached: bool,
    /// The client library of the pod that asked.
    pub library: crate::spec::Library,
    /// Every query the library put on the wire for it, when the scenario records them
    /// (`ClusterSpec::trace_queries`; off by default: a long run would hold millions).
    pub wire: Vec<WireQuery>,
    /// What made it slow or failed, in time order (`explain`); empty for a quick success.
    pub causes: Vec<(Duration, crate::cause::Cause)>,
}

/// One query a lookup put on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireQuery {
    pub at: Duration,
    /// As sent: case included, fully qualified.
    pub qname: String,
    pub qtype: u16,
    pub transport: crate::client::Transport,
    pub server: std::net::SocketAddr,
}

/// How a lookup ended, as the application saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupOutcome {
    /// Addresses (from the wire or the application's cache).
    Ok,
    NxDomain,
    NoData,
    /// A temporary failure (EAI_AGAIN): timeouts, SERVFAIL.
    Again,
    Fail,
}

impl LookupOutcome {
    /// The library's result, without its data.
    pub fn of(o: &crate::client::Outcome) -> LookupOutcome {
        use crate::client::Outcome;
        match o {
            Outcome::Addrs(_) => LookupOutcome::Ok,
            Outcome::NoName => LookupOutcome::NxDomain,
            Outcome::NoData => LookupOutcome::NoData,
            Outcome::Again => LookupOutcome::Again,
            Outcome::Fail(_) => LookupOutcome::Fail,
        }
    }

    /// The name reports and the JSON use.
    pub fn as_str(self) -> &'static str {
        match self {
            LookupOutcome::Ok => "ok",
            LookupOutcome::NxDomain => "nxdomain",
            LookupOutcome::NoData => "nodata",
            LookupOutcome::Again => "again",
            LookupOutcome::Fail => "fail",
        }
    }
}

/// One application TCP request (S12): two segments over an established connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppRequest {
    pub start: Duration,
    /// Both segments' one-way latencies plus every retransmission timeout waited.
    pub latency: Duration,
    /// False when a segment was given up on (tcp_retries2).
    pub completed: bool,
}

impl LookupRecord {
    pub fn latency(&self) -> Duration {
        self.end - self.start
    }
}

/// One simulated second.
#[derive(Debug, Clone, PartialEq)]
pub struct Second {
    pub t: Duration,
    pub lookups: usize,
    pub failed: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Conntrack entries per node at the end of the second.
    pub conntrack: Vec<usize>,
    pub insert_failed: u64,
    pub dropped_eni: u64,
    /// Packets nodes sent to the cloud resolvers so far (what the ENI budgets count).
    pub upstream_packets: u64,
    /// CoreDNS replicas alive.
    pub replicas: usize,
    /// The largest replica memory this second (bytes, by the scenario's memory model).
    pub memory_max: u64,
    /// Queries pods sent and responses they got this second, ENI packets per node, cache hits.
    pub wire: Wire,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub seed: u64,
    pub duration: Duration,
    pub lookups: Vec<LookupRecord>,
    pub series: Vec<Second>,
    pub events: Vec<(Duration, String)>,
    /// Application TCP requests.
    pub app: Vec<AppRequest>,
    pub net: NetCounters,
    pub conntrack_max: Vec<usize>,
    pub trace_hash: u64,
    /// How long each lookup still in flight at the end had been waiting, shortest first.
    pub unfinished: Vec<Duration>,
    /// The lookups still in flight at the end after `STUCK` or more, as records ending at the end
    /// of the run (outcome `Again`, cause `Stuck` last).
    pub stuck: Vec<LookupRecord>,
    /// What the resolvers' detectors raised during the run (`resolver::detect`), checked every
    /// 10 s as the driver's log does and at the end, in the order first raised: by where they run,
    /// "cluster DNS <pod IP>" (a replica), "cluster DNS, replicas summed (alert rule)"
    /// (`truncation_ignored` over every replica's per-client metrics), "node-local-dns on node N" and
    /// "node N" (that node's conntrack scan).
    pub findings: Vec<Raised>,
}

/// A finding as the run raised it: where, the first and last check that raised it, and its state
/// at the last.
#[derive(Debug, Clone, PartialEq)]
pub struct Raised {
    pub at: String,
    pub first: Duration,
    pub last: Duration,
    pub finding: Finding,
}

impl Raised {
    /// `20-60 s` (or `at 60 s` for one check).
    pub fn when(&self) -> String {
        if self.first == self.last {
            format!("at {} s", self.first.as_secs())
        } else {
            format!("{}-{} s", self.first.as_secs(), self.last.as_secs())
        }
    }
}

/// The `q`-quantile (0..=1) of durations in milliseconds, nearest-rank.
pub fn quantile_ms(mut v: Vec<Duration>, q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1].as_secs_f64() * 1000.0
}

impl Report {
    pub fn new(spec: &ClusterSpec) -> Report {
        Report {
            seed: spec.seed,
            duration: spec.duration,
            // Room for the lookups the workload will start (10% over; at most 4M up front), so a long
            // run does not copy the record list every time it doubles.
            lookups: Vec::with_capacity({
                let per_s: f64 = spec.pods.iter().map(|g| g.rate * g.count as f64).sum();
                (per_s * spec.duration.as_secs_f64() * 1.1).clamp(0.0, 4e6) as usize
            }),
            series: Vec::new(),
            events: Vec::new(),
            app: Vec::new(),
            net: NetCounters::default(),
            conntrack_max: Vec::new(),
            trace_hash: 0,
            unfinished: Vec::new(),
            stuck: Vec::new(),
            findings: Vec::new(),
        }
    }

    #[allow(clippy::too_many_arguments)] // One value per column of the series.
    pub fn sample(
        &mut self,
        t: Duration,
        conntrack: Vec<usize>,
        window: &[LookupRecord],
        net: &NetCounters,
        insert_failed: u64,
        replicas: usize,
        memory_max: u64,
        wire: Wire,
    ) {
        let lat: Vec<Duration> = window.iter().filter(|l| !l.cached).map(LookupRecord::latency).collect();
        self.series.push(Second {
            t,
            lookups: window.len(),
            failed: window.iter().filter(|l| !l.ok).count(),
            p50_ms: quantile_ms(lat.clone(), 0.5),
            p99_ms: quantile_ms(lat.clone(), 0.99),
            max_ms: quantile_ms(lat, 1.0),
            conntrack,
            insert_failed,
            dropped_eni: net.dropped_eni,
            upstream_packets: net.upstream_packets,
            replicas,
            memory_max,
            wire,
        });
    }

    pub fn events_race(&mut self, t: Duration, kernel: Kernel, race: Race) {
        if self.events.len() < 10_000 {
            self.events.push((t, format!("conntrack insertion race {race:?} dropped a packet (kernel {kernel})")));
        }
    }

    /// Lookups still waiting at the end after this long count as failed: the application has been
    /// waiting a second or more, and a run that ends must not hide them.
    pub const STUCK: Duration = Duration::from_secs(1);

    /// Lookups that succeeded, of those finished and those stuck at the end (`STUCK`).
    pub fn success_rate(&self) -> f64 {
        let all = self.lookups.len() + self.unfinished_over(Self::STUCK);
        if all == 0 {
            return 1.0;
        }
        self.lookups.iter().filter(|l| l.ok).count() as f64 / all as f64
    }

    /// A latency quantile of the lookups that reached the library: those an application cache
    /// answered (Java's, no query sent) are left out, and those stuck at the end count with the
    /// time they had waited (a lower bound).
    pub fn latency_ms(&self, q: f64) -> f64 {
        let stuck = self.unfinished.iter().copied().filter(|a| *a >= Self::STUCK);
        quantile_ms(self.lookups.iter().filter(|l| !l.cached).map(LookupRecord::latency).chain(stuck).collect(), q)
    }

    /// Lookups an application cache answered without a query.
    pub fn app_cache_hits(&self) -> usize {
        self.lookups.iter().filter(|l| l.cached).count()
    }

    /// Lookups in flight at the end that had waited at least `age`.
    pub fn unfinished_over(&self, age: Duration) -> usize {
        self.unfinished.iter().filter(|a| **a >= age).count()
    }

    pub fn queries(&self) -> u64 {
        self.lookups.iter().map(|l| u64::from(l.queries)).sum()
    }

    /// A few lines for people.
    pub fn summary(&self) -> String {
        let peak_ct = self.series.iter().flat_map(|s| s.conntrack.iter().copied()).max().unwrap_or(0);
        format!(
            "seed {} · {:.0} s simulated · {} lookups, {:.2}% ok · latency p50 {:.1} ms p99 {:.1} ms max {:.1} ms · {} queries on the wire · conntrack peak {} entries/node, insert_failed {} · drops: race {} table-full {} eni {} dead {} · trace {:016x}",
            self.seed,
            self.duration.as_secs_f64(),
            self.lookups.len(),
            100.0 * self.success_rate(),
            self.latency_ms(0.5),
            self.latency_ms(0.99),
            self.latency_ms(1.0),
            self.queries(),
            peak_ct,
            self.series.last().map_or(0, |s| s.insert_failed),
            self.net.dropped_race,
            self.net.dropped_table_full,
            self.net.dropped_eni,
            self.net.dropped_dead,
            self.trace_hash,
        )
    }
}

/// Counters of what happened on the simulated network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetCounters {
    pub packets: u64,
    pub dropped_race: u64,
    pub dropped_table_full: u64,
    pub dropped_eni: u64,
    pub dropped_dead: u64,
    pub dropped_ipvs: u64,
    pub dropped_blackhole: u64,
    pub rejected: u64,
    /// Packets nodes sent to the cloud resolvers (what the ENI budget counts).
    pub upstream_packets: u64,
    pub upstream_queries: u64,
    pub tcp_connections: u64,
    pub restarts: u64,
    pub dropped_fragments: u64,
    pub dropped_loss: u64,
    /// Answers a pod's socket discarded because they came from a replica's own address: their
    /// conntrack entry was gone (deleted by kube-proxy, expired) so nothing un-NATed them, and the
    /// libraries accept answers only from the nameserver they asked (kubernetes#45976).
    pub dropped_unnat: u64,
    /// The sidecar's probe queries (`liveness`): sent, and failed (an error, no records, no answer
    /// within 2 s).
    pub probes: u64,
    pub probes_failed: u64,
}

/// Counters of one simulated second, what the report's per-second series show.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Wire {
    /// Queries pods sent, by type: A, AAAA, other.
    pub by_type: [u64; 3],
    /// Queries pods sent, by zone: under the cluster domain, or not.
    pub cluster: u64,
    pub external: u64,
    /// Responses pods received, by rcode: NOERROR, NXDOMAIN, SERVFAIL, REFUSED, other.
    pub rcodes: [u64; 5],
    /// Packets each node's ENI sent to the cloud resolver.
    pub eni: Vec<u64>,
    /// Resolver cache hits and misses (cluster DNS and node-local caches together).
    pub cache_hits: u64,
    pub cache_misses: u64,
}

impl Wire {
    /// The rcode bucket a response falls in.
    pub(crate) fn rcode(payload: &[u8]) -> Option<usize> {
        // A response (QR set) with a whole header (RFC 1035 §4.1.1).
        if payload.len() < 12 || payload[2] & 0x80 == 0 {
            return None;
        }
        Some(match payload[3] & 0x0f {
            0 => 0,
            3 => 1,
            2 => 2,
            5 => 3,
            _ => 4,
        })
    }
}
