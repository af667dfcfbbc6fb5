//! The sans-IO DNS server: every query of every server block goes through here, in production
//! (the tokio driver) and in the simulator (the turmoil driver) alike.
//!
//! Inputs: `handle_query`, `handle_upstream`, `handle_upstream_error`, `handle_timeout`,
//! `handle_cluster_state`, `reconfigure`, each with `now` (a `Duration` since an arbitrary epoch the
//! driver picks). Outputs: an immediate answer written into the caller's buffer (the hot path),
//! then `poll_transmit` and `poll_timeout`. Randomness (upstream IDs, policy shuffles, eviction) comes
//! from the seeded `fastrand::Rng` given at construction. No clock, socket or thread is touched here.
//!
//! Plugin order is CoreDNS's fixed order (sources.md#corefile-model), whatever the Corefile's line order:
//! `bufsize → autopath → cache → template → hosts → kubernetes → loop → forward`, with
//! `loadbalance` applied to the answer on its way out.

mod autopath;
mod chain;
mod forward;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::cache::{Cache, PartKind};
use crate::cluster::ClusterState;
use crate::config::{Config, ServerConfig};
use crate::metrics::{BlockMetrics, Metrics};
use crate::wire::{self, RecordSpan};

use autopath::Autopath;

pub use forward::build_query;

/// Question key → (answer bytes without OPT, its record spans).
type Memo = indexmap::IndexMap<Box<[u8]>, (Box<[u8]>, Box<[RecordSpan]>), foldhash::fast::RandomState>;

/// Synthesised cluster answers kept, at most (about 200 bytes each); the memo is emptied when full.
const MEMO_MAX: usize = 65_536;

/// Clients waiting on one coalesced upstream query, at most; more get REFUSED.
const MAX_WAITERS: usize = 4096;

/// Time since the driver's epoch.
pub type Now = Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Who asked, and on which listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub src: SocketAddr,
    pub local: SocketAddr,
    pub transport: Transport,
    /// The driver's TCP connection id (0 for UDP).
    pub conn: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// An answer for a client.
    Client(Client),
    /// A query to an upstream.
    Upstream { addr: SocketAddr, transport: Transport },
    /// The loop plugin's probe, sent to our own listener on this port.
    Local { port: u16, ip: Option<IpAddr> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub dest: Dest,
    pub payload: Vec<u8>,
}

/// What `handle_query` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// The answer is in the output buffer.
    Answered,
    /// The answer will come out of `poll_transmit`.
    Pending,
    /// Nothing is sent back (RFC-mandated silence, e.g. a response sent as a query).
    Dropped,
}

/// The health of one upstream, CoreDNS-style (sources.md#coredns-forward): `fails` counts consecutive failed
/// probes; Down when `fails > max_fails`; probing every `health_check` until a probe succeeds.
#[derive(Debug, Clone, Default)]
struct Health {
    fails: u32,
    probing: bool,
}

struct Block {
    cfg: ServerConfig,
    cache: Option<Cache>,
    /// Loop probe name and how often it was seen.
    loop_probe: Option<(Vec<u8>, u32)>,
    /// Tasks currently waiting on each forward instance (for `max_concurrent`).
    fwd_inflight: Vec<usize>,
    /// Round-robin cursor per forward instance.
    fwd_rr: Vec<usize>,
}

/// What answering a client needs of its question, borrowed: the cache hit path builds one on the
/// stack instead of a `Task`.
#[derive(Debug, Clone, Copy)]
struct Ask<'q> {
    client: Client,
    block: usize,
    id: u16,
    rd: bool,
    qname_case: &'q [u8],
    qtype: u16,
    qclass: u16,
    edns: Option<wire::Edns>,
    cd: bool,
    started: Now,
    /// The query's size in bytes (the `log` plugin's `{size}`).
    qsize: u16,
}

impl Task {
    fn ask(&self, client: Client) -> Ask<'_> {
        Ask {
            client,
            block: self.block,
            id: self.id,
            rd: self.rd,
            qname_case: &self.qname_case,
            qtype: self.qtype,
            qclass: self.qclass,
            edns: self.edns,
            cd: self.cd,
            started: self.started,
            qsize: self.qsize,
        }
    }
}

#[derive(Debug)]
struct Task {
    /// None: an internal refresh (prefetch or serve_stale) that answers nobody.
    client: Option<Client>,
    generation: u64,
    block: usize,
    id: u16,
    rd: bool,
    /// The asker's question name with its case (0x20).
    qname_case: Vec<u8>,
    qname: Vec<u8>,
    qtype: u16,
    qclass: u16,
    edns: Option<wire::Edns>,
    cd: bool,
    started: Now,
    qsize: u16,
    /// The plugin that wrote the answer (`metrics::PLUGIN_LABELS`; 0: none, as for a SERVFAIL when no
    /// plugin answered).
    source: u8,
    /// The name being resolved right now (differs from qname under autopath).
    current: Vec<u8>,
    autopath: Option<Autopath>,
    /// Refresh tasks skip the cache lookup.
    skip_cache: bool,
}

#[derive(Debug)]
enum XKind {
    Query {
        block: usize,
        fwd: usize,
        key: Vec<u8>,
        waiters: Vec<usize>,
        qname: Vec<u8>,
        qtype: u16,
        qclass: u16,
        dnssec_ok: bool,
        cd: bool,
        /// The EDNS buffer size the upstream query advertises (`None`: no OPT record).
        edns: Option<u16>,
    },
    /// A health probe, and the probing it belongs to (`probe_keys`).
    Probe { key: u64 },
}

#[derive(Debug)]
struct Exchange {
    kind: XKind,
    generation: u64,
    /// Upstreams in the order this exchange tries them, and the cursor (CoreDNS's `i` and `fails`).
    order: Vec<SocketAddr>,
    cursor: usize,
    down_skips: usize,
    /// Sends that failed at once (no route, no socket): after one per upstream the exchange fails,
    /// as CoreDNS's forward gives up after `len(proxies)` errors, instead of retrying in a loop.
    send_errors: usize,
    upstream: SocketAddr,
    transport: Transport,
    id: u16,
    deadline: Now,
    read_timeout: Duration,
    /// Bumped on every send so stale timers are ignored.
    attempt: u32,
    max_fails: u32,
    health_interval: Duration,
    failfast: bool,
    force_tcp: bool,
    prefer_udp: bool,
    client_tcp: bool,
    /// When the current attempt went out (`coredns_forward_request_duration_seconds`).
    sent: Now,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    /// Read timeout of exchange `xid` at attempt `attempt`.
    Read { xid: u64, attempt: u32 },
    /// Next health probe of an upstream.
    Probe { key: u64 },
}

/// The server core. See the module docs.
pub struct Server {
    cfg: Arc<Config>,
    blocks: Vec<Block>,
    generation: u64,
    state: Arc<ClusterState>,
    serial: u32,
    rng: fastrand::Rng,
    tasks: Vec<Option<Task>>,
    free: Vec<usize>,
    exchanges: BTreeMap<u64, Exchange>,
    next_xid: u64,
    /// Forwards in flight across all blocks (for `Config::forward_table`).
    fwd_table: usize,
    /// (upstream, DNS id) → exchange.
    wire_ids: BTreeMap<(SocketAddr, u16), u64>,
    /// (block, forward, cache key) → exchange, for coalescing identical in-flight queries.
    coalesce: BTreeMap<(usize, usize, Vec<u8>), u64>,
    health: BTreeMap<SocketAddr, Health>,
    /// Probe settings per upstream while probing: (interval, transport).
    probe_keys: BTreeMap<u64, (SocketAddr, Duration, Transport)>,
    next_probe_key: u64,
    timers: BTreeSet<(Now, u64, TimerKind)>,
    timer_seq: u64,
    transmits: VecDeque<Transmit>,
    halted: Option<String>,
    pub metrics: Metrics,
    /// Authoritative `kubernetes` answers as wire bytes, keyed by block and question: answered at
    /// cache-hit speed, and emptied whenever cluster state or configuration changes, so never stale
    /// (the staleness that makes kubeadm disable caching for cluster.local cannot happen here).
    memo: Memo,
    scratch_name: Vec<u8>,
    scratch_key: Vec<u8>,
    /// Lines of the `log` plugin not yet taken by the driver (`poll_query_log`; at most
    /// `chain::QUERY_LOG_MAX`: only a caller that never polls, as the simulator, reaches it).
    query_log: std::collections::VecDeque<String>,
    /// Whether upstream answers that went into the cache are offered to sibling servers
    /// (`poll_cache_fill`): the driver's other workers, which have caches of their own.
    share_fills: bool,
    fills: VecDeque<CacheFill>,
    /// Upstreams whose pooled TCP connection timed out and must be closed (`poll_close_tcp`).
    close_tcp: VecDeque<SocketAddr>,
    /// The detectors' recent-traffic tables, their configuration and the cluster domain (wire)
    /// the search-walk detector looks under.
    detect: crate::detect::Trackers,
    /// `stale_conntrack`'s memory between scans of the node's table (node-local mode).
    stale_flows: crate::detect::StaleFlows,
    detect_cfg: crate::detect::DetectConfig,
    detect_domain: Vec<u8>,
    /// The address a truncated answer last left from (`truncation_ignored`'s replicas).
    detect_local: Option<IpAddr>,
}

/// The detectors' configuration: the first block with a `detect` directive, else all on; and the
/// cluster domain, the first forward zone of a `kubernetes` plugin.
fn detect_setup(cfg: &Config) -> (crate::detect::DetectConfig, Vec<u8>) {
    let dc = cfg.detect();
    let domain = cfg
        .servers
        .iter()
        .filter_map(|s| s.kubernetes.as_ref())
        .flat_map(|k| k.zones.iter())
        .find(|z| !z.ends_with(b"\x04arpa\x00"))
        .cloned()
        .unwrap_or_else(|| wire::name_from_str("cluster.local").unwrap_or_default());
    (dc, domain)
}

/// An upstream answer one server stored in its cache, for a sibling server to store too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheFill {
    pub block: usize,
    pub key: Box<[u8]>,
    pub qname: Box<[u8]>,
    pub msg: Box<[u8]>,
}

/// At most this many fills wait to be polled; older ones are dropped (a fill only saves a sibling
/// one upstream query).
const FILLS_MAX: usize = 1024;

fn server_label(s: &ServerConfig) -> String {
    format!("dns://:{}", s.port)
}

fn new_block(cfg: &ServerConfig, rng: &mut fastrand::Rng) -> Block {
    let loop_probe = cfg.loop_detect.then(|| {
        // `<rand>.<rand>.<zone>` HINFO, as the loop plugin does (sources.md#coredns-misc-plugins).
        let zone = cfg.zones.first().map(String::as_str).unwrap_or(".");
        let text = format!("{}.{}.{}", rng.u64(..), rng.u64(..), zone.trim_start_matches('.'));
        (wire::name_from_str(&text).unwrap_or_else(|| vec![0]), 0)
    });
    Block {
        cache: cfg.cache.clone().map(Cache::new),
        loop_probe,
        fwd_inflight: vec![0; cfg.forward.len()],
        fwd_rr: vec![0; cfg.forward.len()],
        cfg: cfg.clone(),
    }
}

/// A server block's metrics, labelled as CoreDNS labels them, with its plugins.
fn block_metrics(s: &ServerConfig) -> BlockMetrics {
    let mut m = BlockMetrics::new(server_label(s), s.zones.first().cloned().unwrap_or_default());
    m.plugins.clone_from(&s.plugins);
    m
}

impl Server {
    pub fn new(cfg: Arc<Config>, state: Arc<ClusterState>, seed: u64) -> Server {
        let mut rng = fastrand::Rng::with_seed(seed);
        let blocks: Vec<Block> = cfg.servers.iter().map(|s| new_block(s, &mut rng)).collect();
        let mut metrics = Metrics { blocks: cfg.servers.iter().map(block_metrics).collect(), ..Metrics::default() };
        let (detect_cfg, detect_domain) = detect_setup(&cfg);
        metrics.detect.budget = detect_cfg.upstream_budget;
        let mut s = Server {
            cfg,
            blocks,
            generation: 0,
            state,
            serial: 1,
            rng,
            tasks: Vec::new(),
            free: Vec::new(),
            exchanges: BTreeMap::new(),
            next_xid: 1,
            fwd_table: 0,
            wire_ids: BTreeMap::new(),
            coalesce: BTreeMap::new(),
            health: BTreeMap::new(),
            probe_keys: BTreeMap::new(),
            next_probe_key: 1,
            timers: BTreeSet::new(),
            timer_seq: 0,
            transmits: VecDeque::new(),
            halted: None,
            metrics,
            memo: indexmap::IndexMap::with_hasher(foldhash::fast::RandomState::default()),
            scratch_name: Vec::with_capacity(256),
            scratch_key: Vec::with_capacity(264),
            query_log: std::collections::VecDeque::new(),
            share_fills: false,
            fills: VecDeque::new(),
            close_tcp: VecDeque::new(),
            detect: crate::detect::Trackers::default(),
            stale_flows: crate::detect::StaleFlows::default(),
            detect_cfg,
            detect_domain,
            detect_local: None,
        };
        s.send_loop_probes();
        s
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.cfg
    }

    /// The loop plugin halts the process when it sees its probe more than twice (sources.md#coredns-misc-plugins).
    pub fn halted(&self) -> Option<&str> {
        self.halted.as_deref()
    }

    /// Client queries not yet answered.
    pub fn in_flight(&self) -> usize {
        self.tasks.iter().flatten().filter(|t| t.client.is_some()).count()
    }

    fn send_loop_probes(&mut self) {
        for b in &self.blocks {
            if let Some((name, _)) = &b.loop_probe {
                let q = build_query(self.rng.u16(..), name, wire::TYPE_HINFO, wire::CLASS_IN, None, false);
                self.transmits.push_back(Transmit { dest: Dest::Local { port: b.cfg.port, ip: b.cfg.bind.first().copied() }, payload: q });
            }
        }
    }

    /// Installs new cluster state (a changed file, a relist).
    pub fn handle_cluster_state(&mut self, _now: Now, state: Arc<ClusterState>) {
        self.state = state;
        self.serial = self.serial.wrapping_add(1);
        self.memo.clear();
    }

    /// Swaps in a new configuration (the `reload` plugin). In-flight queries finish; caches of blocks
    /// whose zones, port and cache options are unchanged are kept (CoreDNS loses them, coredns#608).
    pub fn reconfigure(&mut self, _now: Now, cfg: Arc<Config>) {
        let mut old: Vec<Block> = std::mem::take(&mut self.blocks);
        let mut blocks = Vec::with_capacity(cfg.servers.len());
        for s in &cfg.servers {
            let mut b = new_block(s, &mut self.rng);
            b.loop_probe = None;
            if let Some(i) = old.iter().position(|o| o.cfg.zones == s.zones && o.cfg.port == s.port && o.cfg.cache == s.cache) {
                b.cache = old[i].cache.take();
            }
            blocks.push(b);
        }
        self.blocks = blocks;
        (self.detect_cfg, self.detect_domain) = detect_setup(&cfg);
        self.metrics.detect.budget = self.detect_cfg.upstream_budget;
        // Counters survive a reload, as CoreDNS's process-wide Prometheus registry keeps them: a
        // block with the same labels carries its counts over; only new blocks start at zero.
        let mut old_metrics = std::mem::take(&mut self.metrics.blocks);
        self.metrics.blocks = cfg
            .servers
            .iter()
            .map(|s| {
                let (server, zone) = (server_label(s), s.zones.first().cloned().unwrap_or_default());
                match old_metrics.iter().position(|m| m.server == server && m.zone == zone) {
                    Some(i) => {
                        let mut m = old_metrics.swap_remove(i);
                        m.plugins.clone_from(&s.plugins);
                        m
                    }
                    None => block_metrics(s),
                }
            })
            .collect();
        self.cfg = cfg;
        self.generation += 1;
        // Like each block's `max_concurrent` count, the shared table starts again with the config.
        self.fwd_table = 0;
        self.memo.clear();
        // Old-generation exchanges may no longer be coalesced onto.
        self.coalesce.clear();
    }

    // ---------------------------------------------------------------------------------------------
    // forward

    fn add_timer(&mut self, at: Now, kind: TimerKind) {
        self.timer_seq += 1;
        self.timers.insert((at, self.timer_seq, kind));
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Now) {
        while let Some(&first) = self.timers.first() {
            if first.0 > now {
                break;
            }
            self.timers.pop_first();
            match first.2 {
                TimerKind::Read { xid, attempt } => {
                    if let Some(x) = self.exchanges.get(&xid).filter(|x| x.attempt == attempt) {
                        // A TCP connection that timed out is closed, not reused: CoreDNS's forward
                        // closes a connection that errored instead of returning it to its pool
                        // (sources.md#coredns-forward). Otherwise a connection DNATed to a pod that vanished
                        // without a reset keeps swallowing every query while traffic keeps it busy.
                        let up = x.upstream;
                        if x.transport == Transport::Tcp && !self.close_tcp.contains(&up) {
                            self.close_tcp.push_back(up);
                        }
                        self.detect.on_upstream_timeout(now, &self.detect_cfg, &mut self.metrics.detect, up);
                        self.exchange_failed(now, xid);
                    }
                }
                TimerKind::Probe { key } => {
                    if self.probe_keys.contains_key(&key) {
                        self.send_probe(now, key);
                    }
                }
            }
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next line of the `log` plugin (CoreDNS's format, without its `[INFO] ` prefix).
    pub fn poll_query_log(&mut self) -> Option<String> {
        self.query_log.pop_front()
    }

    /// An upstream whose TCP connection timed out: close it, so that the next query to that upstream
    /// (the retry included) dials a new one. Poll before `poll_transmit`.
    pub fn poll_close_tcp(&mut self) -> Option<SocketAddr> {
        self.close_tcp.pop_front()
    }

    /// Offer cache fills to siblings from now on (off by default).
    pub fn share_cache_fills(&mut self, on: bool) {
        self.share_fills = on;
        if !on {
            self.fills.clear();
        }
    }

    /// An upstream answer this server just cached, for its siblings (`handle_cache_fill`).
    pub fn poll_cache_fill(&mut self) -> Option<CacheFill> {
        self.fills.pop_front()
    }

    /// A sibling's cache fill: stored here as if this server had forwarded the query itself (same
    /// TTL rules, counted from `now`). Never offered on again. A fill for a block this configuration
    /// does not have, or a name its cache does not cover (the sibling reloaded first), is ignored.
    pub fn handle_cache_fill(&mut self, now: Now, fill: &CacheFill) {
        let Some(c) = self.blocks.get_mut(fill.block).and_then(|b| b.cache.as_mut()).filter(|c| c.covers(&fill.qname)) else { return };
        let Ok(layout) = wire::layout(&fill.msg) else { return };
        let _ = c.store(&fill.key, &fill.qname, &fill.msg, &layout, now, &mut self.rng);
    }

    /// The detectors' current findings (after settling what timed out by `now`).
    pub fn findings(&mut self, now: Now) -> Vec<crate::detect::Finding> {
        self.detect.sweep(now, &self.detect_cfg, &mut self.metrics.detect);
        self.metrics.detect.findings(now)
    }

    /// The packets per second each upstream may receive (`detect { upstream_budget }`), set by a
    /// caller that knows it (the simulator, from the cloud's limit).
    pub fn set_detect_budget(&mut self, budget: Option<u32>) {
        self.detect_cfg.upstream_budget = budget;
        self.metrics.detect.budget = budget;
    }

    /// How often the node's conntrack table should be scanned for `stale_conntrack` (None: off).
    pub fn conntrack_scan_every(&self) -> Option<Duration> {
        self.detect_cfg.on[crate::detect::STALE_CONNTRACK].then_some(self.detect_cfg.conntrack_scan)
    }

    /// A scan of the node's conntrack table (UDP flows to port 53) beside the DNS Services as the
    /// API has them: the `stale_conntrack` detector (node-local mode's driver, the simulator).
    pub fn handle_conntrack(&mut self, now: Now, services: &[crate::detect::DnsService], flows: &[crate::detect::CtFlow]) {
        if self.detect_cfg.on[crate::detect::STALE_CONNTRACK] {
            self.stale_flows.handle_scan(now, services, flows, &mut self.metrics.detect);
        }
    }

    /// Settles what timed out in the detectors' tables (the driver calls this before a scrape).
    pub fn detect_tick(&mut self, now: Now) {
        self.detect.sweep(now, &self.detect_cfg, &mut self.metrics.detect);
        self.metrics.detect.replicas = self.detect_local.map_or(1, |local| self.state.replicas_of(local));
    }

    /// An answer is leaving for `client`: the detectors read its question, rcode and TC bit.
    pub(super) fn detect_answer(&mut self, now: Now, client: &Client, qname: &[u8], out: &[u8]) {
        if out.len() < 12 {
            return;
        }
        let (rcode, tc) = (out[3] & 0x0f, out[2] & 0x02 != 0 && client.transport == Transport::Udp);
        if rcode != wire::RCODE_NXDOMAIN && !tc {
            return;
        }
        if tc {
            self.detect_local = Some(client.local.ip());
        }
        let ns = self.state.pod_namespace(client.src.ip());
        self.detect.on_answer(now, &self.detect_cfg, &mut self.metrics.detect, client.src.ip(), qname, rcode, tc, ns, &self.detect_domain);
    }

    /// When `handle_timeout` wants to be called next.
    pub fn poll_timeout(&self) -> Option<Now> {
        self.timers.first().map(|t| t.0)
    }

    /// Snapshot of cache sizes into the metrics (for `coredns_cache_entries`).
    pub fn refresh_gauges(&mut self) {
        self.metrics.cache_entries = self
            .blocks
            .iter()
            .filter_map(|b| b.cache.as_ref().map(|c| (server_label(&b.cfg), c.len(PartKind::Success), c.len(PartKind::Denial))))
            .collect();
    }

    /// Bytes held by caches (entries, keys, spans): the resolver's data memory.
    pub fn cache_bytes(&self) -> usize {
        self.blocks.iter().filter_map(|b| b.cache.as_ref()).map(Cache::bytes_used).sum()
    }

    /// Cached answers, success and denial, over all blocks.
    pub fn cache_entries(&self) -> usize {
        self.blocks.iter().filter_map(|b| b.cache.as_ref()).map(|c| c.len(PartKind::Success) + c.len(PartKind::Denial)).sum()
    }

    /// The cluster state the server answers from.
    pub fn cluster_state(&self) -> &Arc<ClusterState> {
        &self.state
    }

    /// Heap bytes the server holds for data: caches, cluster state, queries in flight and upstream
    /// exchanges, summed from the sizes of its own structures. The simulator's OOM model uses it.
    pub fn memory_bytes(&self) -> usize {
        let task = std::mem::size_of::<Task>() + 3 * 64;
        let tasks = self.tasks.iter().flatten().count() * task;
        let exchanges = self.exchanges.len() * (std::mem::size_of::<Exchange>() + 128);
        let memo: usize = self.memo.iter().map(|(k, (m, sp))| k.len() + m.len() + sp.len() * std::mem::size_of::<RecordSpan>() + 64).sum();
        self.cache_bytes() + self.state.bytes() + tasks + exchanges + memo + self.tasks.capacity() * std::mem::size_of::<Option<Task>>()
    }

    /// Whether an upstream is currently marked down.
    pub fn upstream_down(&self, addr: SocketAddr) -> bool {
        self.cfg.servers.iter().flat_map(|s| &s.forward).filter(|f| f.to.contains(&addr)).any(|f| self.is_down(&addr, f.max_fails))
    }
}
