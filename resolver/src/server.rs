//! The sans-IO DNS server: every query of every server block goes through here, in production
//! (the tokio driver) and in the simulator (the turmoil driver) alike.
//!
//! Inputs: `handle_query`, `handle_upstream`, `handle_upstream_error`, `handle_timeout`,
//! `handle_cluster_state`, `reconfigure`, each with `now` (a `Duration` since an arbitrary epoch the
//! driver picks). Outputs: an immediate answer written into the caller's buffer (the hot path),
//! then `poll_transmit` and `poll_timeout`. Randomness (upstream IDs, policy shuffles, eviction) comes
//! from the seeded `fastrand::Rng` given at construction. No clock, socket or thread is touched here.
//!
//! Plugin order is CoreDNS's fixed order (dns-servers.md §1.0), whatever the Corefile's line order:
//! `bufsize → autopath → cache → template → hosts → kubernetes → loop → forward`, with
//! `loadbalance` applied to the answer on its way out.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::CNAME;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::cache::{self, Cache, Hit, PartKind, Shape};
use crate::cluster::ClusterState;
use crate::config::{AutopathSource, Config, FORWARD_DEADLINE, Policy, ServerConfig};
use crate::kubernetes::{KubeResult, Kubernetes, Synth};
use crate::metrics::{BlockMetrics, Metrics, type_bucket};
use crate::wire::{self, Layout, QueryError, RecordSpan};

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

/// The health of one upstream, CoreDNS-style (incidents.md §6.1): `fails` counts consecutive failed
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

#[derive(Debug)]
struct Autopath {
    candidates: Vec<Vec<u8>>,
    idx: usize,
    /// The first reply (for the original name), returned if every candidate is NXDOMAIN.
    first: Option<(Vec<u8>, Vec<RecordSpan>)>,
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
    /// Whether upstream answers that went into the cache are offered to sibling servers
    /// (`poll_cache_fill`): the driver's other workers, which have caches of their own.
    share_fills: bool,
    fills: VecDeque<CacheFill>,
    /// Upstreams whose pooled TCP connection timed out and must be closed (`poll_close_tcp`).
    close_tcp: VecDeque<SocketAddr>,
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
        // `<rand>.<rand>.<zone>` HINFO, as the loop plugin does (dns-servers.md §1.8).
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

impl Server {
    pub fn new(cfg: Arc<Config>, state: Arc<ClusterState>, seed: u64) -> Server {
        let mut rng = fastrand::Rng::with_seed(seed);
        let blocks: Vec<Block> = cfg.servers.iter().map(|s| new_block(s, &mut rng)).collect();
        let metrics = Metrics {
            blocks: cfg.servers.iter().map(|s| BlockMetrics::new(server_label(s), s.zones.first().cloned().unwrap_or_default())).collect(),
            ..Metrics::default()
        };
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
            share_fills: false,
            fills: VecDeque::new(),
            close_tcp: VecDeque::new(),
        };
        s.send_loop_probes();
        s
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.cfg
    }

    /// The loop plugin halts the process when it sees its probe more than twice (dns-servers.md §1.8).
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
        // Counters survive a reload, as CoreDNS's process-wide Prometheus registry keeps them: a
        // block with the same labels carries its counts over; only new blocks start at zero.
        let mut old_metrics = std::mem::take(&mut self.metrics.blocks);
        self.metrics.blocks = cfg
            .servers
            .iter()
            .map(|s| {
                let (server, zone) = (server_label(s), s.zones.first().cloned().unwrap_or_default());
                match old_metrics.iter().position(|m| m.server == server && m.zone == zone) {
                    Some(i) => old_metrics.swap_remove(i),
                    None => BlockMetrics::new(server, zone),
                }
            })
            .collect();
        self.cfg = cfg;
        self.generation += 1;
        self.memo.clear();
        // Old-generation exchanges may no longer be coalesced onto.
        self.coalesce.clear();
    }

    fn pick_block(&self, local: SocketAddr, qname: &[u8]) -> Option<usize> {
        let mut best: Option<(usize, usize)> = None;
        for (i, b) in self.blocks.iter().enumerate() {
            if b.cfg.port != local.port() || !(b.cfg.bind.is_empty() || b.cfg.bind.contains(&local.ip())) {
                continue;
            }
            for z in &b.cfg.zones_wire {
                if wire::is_subdomain(qname, z) && best.is_none_or(|(_, l)| z.len() > l) {
                    best = Some((i, z.len()));
                }
            }
        }
        best.map(|(i, _)| i)
    }

    /// A client query arrived. On the hot path (a cache hit) the answer is written into `out` and
    /// `Answered` returned; otherwise the answer comes later from `poll_transmit`.
    pub fn handle_query(&mut self, now: Now, client: Client, query: &[u8], out: &mut Vec<u8>) -> Handled {
        let mut qname = std::mem::take(&mut self.scratch_name);
        let handled = self.handle_query_inner(now, client, query, out, &mut qname);
        self.scratch_name = qname;
        handled
    }

    fn handle_query_inner(&mut self, now: Now, client: Client, query: &[u8], out: &mut Vec<u8>, qname: &mut Vec<u8>) -> Handled {
        let view = match wire::parse_query(query, qname) {
            Ok(v) => v,
            Err(QueryError::Drop) => {
                self.metrics.dropped += 1;
                return Handled::Dropped;
            }
            Err(QueryError::NotImp(id)) => return self.error_answer(query, id, wire::RCODE_NOTIMP, out),
            Err(QueryError::FormErr(id)) => return self.error_answer(query, id, wire::RCODE_FORMERR, out),
            Err(QueryError::BadVers(id)) => {
                // BADVERS is extended rcode 16: header rcode 0, OPT's extended rcode 1 (RFC 6891 §6.1.3).
                error_message(query, id, 0, None, out);
                out.push(0);
                out.extend_from_slice(&wire::TYPE_OPT.to_be_bytes());
                out.extend_from_slice(&1232u16.to_be_bytes());
                out.extend_from_slice(&[1, 0, 0, 0, 0, 0]);
                let ar = u16::from_be_bytes([out[10], out[11]]) + 1;
                out[10..12].copy_from_slice(&ar.to_be_bytes());
                return Handled::Answered;
            }
        };
        let Some(bi) = self.pick_block(client.local, qname) else {
            // No server block for this zone: REFUSED (CoreDNS).
            self.metrics.dropped += 1;
            return self.error_answer(query, view.id, wire::RCODE_REFUSED, out);
        };
        {
            let m = &mut self.metrics.blocks[bi];
            let fam = usize::from(client.src.is_ipv6());
            m.requests[usize::from(client.transport == Transport::Tcp)][fam][type_bucket(view.qtype)] += 1;
        }
        // loop: count our own probe.
        let b = &mut self.blocks[bi];
        if let Some((probe, seen)) = &mut b.loop_probe
            && view.qtype == wire::TYPE_HINFO
            && probe == qname
        {
            *seen += 1;
            if *seen > 2 {
                let zone = b.cfg.zones.first().cloned().unwrap_or_default();
                let msg = format!(
                    "Loop ({}) detected for zone {zone}: the HINFO probe {} came back {} times",
                    client.local,
                    wire::name_to_string(probe),
                    seen
                );
                self.halted = Some(msg);
            }
        }
        let (qs, qe) = view.qname_range;
        let autopath = self.autopath_candidates(bi, &client, qname);
        // Hot path: a cache hit with no autopath in the way, answered into `out` without a task
        // (nothing on the heap: tests/alloc.rs).
        if autopath.is_none() {
            let ask = Ask {
                client,
                block: bi,
                id: view.id,
                rd: view.rd,
                qname_case: &query[qs..qe],
                qtype: view.qtype,
                qclass: view.qclass,
                edns: view.edns,
                cd: view.cd,
                started: now,
            };
            if let Some(handled) = self.try_cache(now, &ask, qname, out) {
                return handled;
            }
        }
        let mut task = Task {
            client: Some(client),
            generation: self.generation,
            block: bi,
            id: view.id,
            rd: view.rd,
            qname_case: query[qs..qe].to_vec(),
            qname: qname.clone(),
            qtype: view.qtype,
            qclass: view.qclass,
            edns: view.edns,
            cd: view.cd,
            started: now,
            current: Vec::new(),
            autopath,
            skip_cache: false,
        };
        task.current = qname.clone();
        let tid = self.insert_task(task);
        self.resolve(now, tid, false);
        Handled::Pending
    }

    /// Cache lookup for the hot path: on a hit writes the answer into `out`.
    fn try_cache(&mut self, now: Now, task: &Ask, name: &[u8], out: &mut Vec<u8>) -> Option<Handled> {
        let client = task.client;
        if !self.memo.is_empty() {
            let mut key = std::mem::take(&mut self.scratch_key);
            memo_key(&mut key, task.block, name, task.qtype, task.qclass, task.edns.is_some_and(|e| e.dnssec_ok), task.cd);
            let hit = self.memo.get(key.as_slice());
            if let Some((msg, spans)) = hit {
                let b = &self.blocks[task.block];
                let shape = shape_for(task, &b.cfg, None, client);
                cache::write_answer(msg, spans, &shape, out);
                if b.cfg.loadbalance {
                    round_robin(out, spans, &mut self.rng);
                }
                let m = &mut self.metrics.blocks[task.block];
                m.answered(wire::flags::rcode(out), task.qtype, now.saturating_sub(task.started));
                self.scratch_key = key;
                return Some(Handled::Answered);
            }
            self.scratch_key = key;
        }
        let b = &mut self.blocks[task.block];
        let cache = b.cache.as_mut()?;
        if !cache.covers(name) {
            return None;
        }
        let mut key = std::mem::take(&mut self.scratch_key);
        cache::key(&mut key, name, task.qtype, task.qclass, task.edns.is_some_and(|e| e.dnssec_ok), task.cd);
        let m = &mut self.metrics.blocks[task.block];
        let result = match cache.lookup(&key, name, now) {
            Some((entry, hit, kind)) => {
                let (ttl, refresh, stale) = match hit {
                    Hit::Fresh { ttl, refresh } => (ttl, refresh, false),
                    Hit::Stale { ttl, refresh } => (ttl, refresh, true),
                };
                match kind {
                    PartKind::Success => m.cache_hits_success += 1,
                    PartKind::Denial => m.cache_hits_denial += 1,
                }
                if stale {
                    m.cache_served_stale += 1;
                }
                if refresh && !stale {
                    m.cache_prefetch += 1;
                }
                let rcode = entry.rcode();
                let shape = shape_for(task, &b.cfg, Some(ttl), client);
                cache::write_answer(&entry.msg, &entry.spans, &shape, out);
                if b.cfg.loadbalance {
                    round_robin(out, &entry.spans, &mut self.rng);
                }
                m.answered(rcode, task.qtype, now.saturating_sub(task.started));
                Some((refresh, rcode))
            }
            None => {
                m.cache_misses += 1;
                None
            }
        };
        self.scratch_key = key;
        let (refresh, _) = result?;
        if refresh {
            self.start_refresh(now, task, name);
        }
        Some(Handled::Answered)
    }

    fn start_refresh(&mut self, now: Now, task: &Ask, name: &[u8]) {
        let t = Task {
            client: None,
            generation: self.generation,
            block: task.block,
            id: 0,
            rd: true,
            qname_case: name.to_vec(),
            qname: name.to_vec(),
            qtype: task.qtype,
            qclass: task.qclass,
            edns: task.edns,
            cd: task.cd,
            started: now,
            current: name.to_vec(),
            autopath: None,
            skip_cache: true,
        };
        let tid = self.insert_task(t);
        self.resolve(now, tid, true);
    }

    fn insert_task(&mut self, t: Task) -> usize {
        if let Some(i) = self.free.pop() {
            self.tasks[i] = Some(t);
            i
        } else {
            self.tasks.push(Some(t));
            self.tasks.len() - 1
        }
    }

    fn take_task(&mut self, tid: usize) -> Option<Task> {
        let t = self.tasks.get_mut(tid)?.take();
        if t.is_some() {
            self.free.push(tid);
        }
        t
    }

    /// autopath: when the name is under the client pod's first search domain, the list of names to
    /// try (dns-servers.md §1.3). ndots finds the pod's namespace from its compact pod index, so it
    /// does not need `pods verified`.
    fn autopath_candidates(&self, bi: usize, client: &Client, qname: &[u8]) -> Option<Autopath> {
        let b = &self.blocks[bi];
        let ap = b.cfg.autopath.as_ref()?;
        if !ap.zones.iter().any(|z| wire::is_subdomain(qname, z)) {
            return None;
        }
        let search: Vec<Vec<u8>> = match &ap.source {
            AutopathSource::Kubernetes => {
                let k = b.cfg.kubernetes.as_ref()?;
                let ns = self.state.pod_namespace(client.src.ip())?;
                let zone = k.zones.iter().find(|z| !wire::name_to_string(z).ends_with(".arpa."))?;
                let zone_text = wire::name_to_string(zone);
                let mut s = vec![
                    wire::name_from_str(&format!("{ns}.svc.{zone_text}"))?,
                    wire::name_from_str(&format!("svc.{zone_text}"))?,
                    zone.clone(),
                ];
                s.extend(b.cfg.autopath_host_search.iter().cloned());
                s
            }
            AutopathSource::Search(list) => list.clone(),
        };
        let first = search.first()?;
        if !wire::is_subdomain(qname, first) || qname.len() == first.len() {
            return None;
        }
        let base = &qname[..qname.len() - first.len()];
        let mut candidates: Vec<Vec<u8>> = search
            .iter()
            .filter_map(|s| {
                let mut n = base.to_vec();
                n.extend_from_slice(s);
                (n.len() <= 255).then_some(n)
            })
            .collect();
        let mut bare = base.to_vec();
        bare.push(0);
        candidates.push(bare);
        Some(Autopath { candidates, idx: 0, first: None })
    }

    /// Runs the plugins below autopath for `task.current`: cache, template, hosts, kubernetes, forward.
    fn resolve(&mut self, now: Now, tid: usize, skip_cache_lookup: bool) {
        let Some(task) = self.tasks[tid].as_ref() else { return };
        let name = task.current.clone();
        let (bi, qtype, qclass) = (task.block, task.qtype, task.qclass);
        let dnssec_ok = task.edns.is_some_and(|e| e.dnssec_ok);
        let cd = task.cd;
        if task.generation != self.generation {
            // Configuration changed under an autopath walk: answer what we have.
            return self.finish_servfail(now, tid);
        }
        // cache
        if !skip_cache_lookup && !task.skip_cache {
            let mut key = Vec::new();
            cache::key(&mut key, &name, qtype, qclass, dnssec_ok, cd);
            let b = &mut self.blocks[bi];
            if let Some(c) = b.cache.as_mut().filter(|c| c.covers(&name))
                && let Some((entry, hit, kind)) = c.lookup(&key, &name, now)
            {
                let (ttl, stale) = match hit {
                    Hit::Fresh { ttl, .. } => (ttl, false),
                    Hit::Stale { ttl, .. } => (ttl, true),
                };
                let m = &mut self.metrics.blocks[bi];
                match kind {
                    PartKind::Success => m.cache_hits_success += 1,
                    PartKind::Denial => m.cache_hits_denial += 1,
                }
                if stale {
                    m.cache_served_stale += 1;
                }
                let msg = entry.msg.to_vec();
                let spans = entry.spans.to_vec();
                return self.finish_inner(now, tid, msg, spans, Some(ttl));
            }
        }
        let b = &self.blocks[bi];
        // template (the AAAA-suppression idiom: `template IN AAAA . { rcode NOERROR }`)
        for t in &b.cfg.templates {
            let type_ok = t.qtype.is_none_or(|ty| ty == qtype);
            let class_ok = t.class == 255 || t.class == qclass;
            if type_ok && class_ok && t.zones.iter().any(|z| wire::is_subdomain(&name, z)) {
                let synth = Synth { rcode: t.rcode, authoritative: true, ..Synth::default() };
                return self.finish_synth(now, tid, &name, synth, false);
            }
        }
        // hosts
        if let Some(h) = &b.cfg.hosts
            && h.zones.iter().any(|z| wire::is_subdomain(&name, z))
            && let Some(synth) = hosts_lookup(h, &name, qtype)
        {
            return self.finish_synth(now, tid, &name, synth, false);
        }
        // kubernetes
        if let Some(k) = &b.cfg.kubernetes
            && qclass == wire::CLASS_IN
        {
            let plugin = Kubernetes { cfg: k, state: &self.state, serial: self.serial };
            if let Some(zone) = plugin.zone_for(&name) {
                let client_ip = task_client_ip(self.tasks[tid].as_ref());
                if let KubeResult::Answer(synth) = plugin.lookup(zone, &name, qtype, client_ip) {
                    return self.finish_synth_memo(now, tid, &name, synth, true, true);
                }
            }
        }
        // file
        if qclass == wire::CLASS_IN
            && let Some(z) = b.cfg.files.iter().filter(|z| wire::is_subdomain(&name, &z.origin)).max_by_key(|z| z.origin.len())
        {
            let synth = z.lookup(&name, qtype);
            return self.finish_synth(now, tid, &name, synth, true);
        }
        // forward
        let fwd =
            b.cfg.forward.iter().position(|f| wire::is_subdomain(&name, &f.from) && !f.except.iter().any(|z| wire::is_subdomain(&name, z)));
        match fwd {
            Some(fi) => self.forward(now, tid, fi),
            // No plugin answered: SERVFAIL, as CoreDNS's `plugin.NextOrFailure`.
            None => self.finish_servfail(now, tid),
        }
    }

    fn finish_synth(&mut self, now: Now, tid: usize, name: &[u8], synth: Synth, cacheable: bool) {
        self.finish_synth_memo(now, tid, name, synth, cacheable, false);
    }

    fn finish_synth_memo(&mut self, now: Now, tid: usize, name: &[u8], synth: Synth, cacheable: bool, memo: bool) {
        let Some(task) = self.tasks[tid].as_ref() else { return };
        let msg = build_synth(name, task.qtype, task.qclass, &synth);
        let Ok(layout) = wire::layout(&msg) else { return self.finish_servfail(now, tid) };
        let (bi, qtype, qclass, dnssec_ok, cd) = (task.block, task.qtype, task.qclass, task.edns.is_some_and(|e| e.dnssec_ok), task.cd);
        if memo {
            if self.memo.len() >= MEMO_MAX {
                self.memo.clear();
            }
            let mut key = Vec::with_capacity(name.len() + 8);
            memo_key(&mut key, bi, name, qtype, qclass, dnssec_ok, cd);
            self.memo.insert(key.into(), (msg.clone().into_boxed_slice(), layout.records.clone().into_boxed_slice()));
        }
        let mut ttl = None;
        if cacheable && let Some(c) = self.blocks[bi].cache.as_mut().filter(|c| c.covers(name)) {
            let mut key = Vec::new();
            cache::key(&mut key, name, qtype, qclass, dnssec_ok, cd);
            ttl = c.store(&key, name, &msg, &layout, now, &mut self.rng).map(|(_, t)| t);
        }
        self.finish_inner(now, tid, msg, layout.records, ttl);
    }

    fn finish_servfail(&mut self, now: Now, tid: usize) {
        let Some(task) = self.tasks[tid].as_ref() else { return };
        let msg = build_synth(&task.current, task.qtype, task.qclass, &Synth { rcode: wire::RCODE_SERVFAIL, ..Synth::default() });
        let spans = wire::layout(&msg).map(|l| l.records).unwrap_or_default();
        self.finish_inner(now, tid, msg, spans, None);
    }

    /// An answer for `task.current` is known: continue autopath or answer the client.
    fn finish_inner(&mut self, now: Now, tid: usize, msg: Vec<u8>, spans: Vec<RecordSpan>, ttl: Option<u32>) {
        let Some(task) = self.tasks[tid].as_mut() else { return };
        if let Some(ap) = task.autopath.as_mut() {
            let rcode = wire::flags::rcode(&msg);
            if ap.idx == 0 {
                ap.first = Some((msg.clone(), spans.clone()));
            }
            if rcode == wire::RCODE_NXDOMAIN && ap.idx + 1 < ap.candidates.len() {
                ap.idx += 1;
                task.current = ap.candidates[ap.idx].clone();
                return self.resolve(now, tid, false);
            }
            if rcode == wire::RCODE_NXDOMAIN {
                // Every candidate failed: the first reply, unchanged (the client searches itself).
                let (m, s) = ap.first.take().unwrap_or((msg, spans));
                return self.respond(now, tid, m, s, ttl);
            }
            if ap.idx > 0 {
                let idx = ap.idx;
                let combined = autopath_answer(&task.qname, task.qtype, &ap.candidates[idx], &msg);
                let bi = task.block;
                if let Some(c) = combined
                    && let Ok(l) = wire::layout(&c)
                {
                    self.metrics.blocks[bi].autopath_success += 1;
                    return self.respond(now, tid, c, l.records, None);
                }
            }
        }
        self.respond(now, tid, msg, spans, ttl)
    }

    fn respond(&mut self, now: Now, tid: usize, msg: Vec<u8>, spans: Vec<RecordSpan>, ttl: Option<u32>) {
        let Some(task) = self.take_task(tid) else { return };
        let Some(client) = task.client else { return };
        let b = &self.blocks.get(task.block);
        let Some(b) = b else { return };
        let shape = shape_for(&task.ask(client), &b.cfg, ttl, client);
        let mut out = Vec::with_capacity(msg.len() + wire::OPT_LEN);
        cache::write_answer(&msg, &spans, &shape, &mut out);
        if b.cfg.loadbalance {
            round_robin(&mut out, &spans, &mut self.rng);
        }
        if let Some(m) = self.metrics.blocks.get_mut(task.block) {
            m.answered(wire::flags::rcode(&out), task.qtype, now.saturating_sub(task.started));
        }
        self.transmits.push_back(Transmit { dest: Dest::Client(client), payload: out });
    }

    fn error_answer(&mut self, query: &[u8], id: u16, rcode: u8, out: &mut Vec<u8>) -> Handled {
        error_message(query, id, rcode, None, out);
        Handled::Answered
    }

    // ---------------------------------------------------------------------------------------------
    // forward

    /// Answers REFUSED at once (over `max_concurrent`), past autopath.
    fn refuse(&mut self, now: Now, tid: usize) {
        let Some(task) = self.tasks[tid].as_mut() else { return };
        self.metrics.blocks[task.block].forward_max_concurrent_rejects += 1;
        task.autopath = None;
        let msg = build_synth(&task.current, task.qtype, task.qclass, &Synth { rcode: wire::RCODE_REFUSED, ..Synth::default() });
        let spans = wire::layout(&msg).map(|l| l.records).unwrap_or_default();
        self.finish_inner(now, tid, msg, spans, None);
    }

    fn forward(&mut self, now: Now, tid: usize, fi: usize) {
        let Some(task) = self.tasks[tid].as_ref() else { return };
        let bi = task.block;
        let dnssec_ok = task.edns.is_some_and(|e| e.dnssec_ok);
        let mut key = Vec::new();
        cache::key(&mut key, &task.current, task.qtype, task.qclass, dnssec_ok, task.cd);
        let client_tcp = task.client.is_some_and(|c| c.transport == Transport::Tcp);
        let (qname, qtype, qclass, cd) = (task.current.clone(), task.qtype, task.qclass, task.cd);
        // Coalesce identical in-flight queries into one upstream exchange. A waiter costs no upstream
        // query; their number per exchange is bounded so memory stays bounded.
        if let Some(&xid) = self.coalesce.get(&(bi, fi, key.clone()))
            && let Some(XKind::Query { waiters, .. }) = self.exchanges.get_mut(&xid).map(|x| &mut x.kind)
        {
            if waiters.len() >= MAX_WAITERS {
                return self.refuse(now, tid);
            }
            waiters.push(tid);
            return;
        }
        // max_concurrent: REFUSED above the limit, not a health failure (incidents.md §6.1). It bounds
        // concurrent upstream queries, which is what CoreDNS's counter bounds (it never coalesces).
        if let Some(max) = self.blocks[bi].cfg.forward[fi].max_concurrent
            && self.blocks[bi].fwd_inflight[fi] >= max
        {
            return self.refuse(now, tid);
        }
        self.blocks[bi].fwd_inflight[fi] += 1;
        let f = &self.blocks[bi].cfg.forward[fi];
        let mut order = f.to.clone();
        match f.policy {
            Policy::Random => self.rng.shuffle(&mut order),
            Policy::RoundRobin => {
                let rr = &mut self.blocks[bi].fwd_rr[fi];
                let n = order.len();
                order.rotate_left(*rr % n);
                *rr = (*rr + 1) % n;
            }
            Policy::Sequential => {}
        }
        let f = &self.blocks[bi].cfg.forward[fi];
        let xid = self.next_xid;
        self.next_xid += 1;
        let x = Exchange {
            kind: XKind::Query { block: bi, fwd: fi, key: key.clone(), waiters: vec![tid], qname, qtype, qclass, dnssec_ok, cd },
            generation: self.generation,
            order,
            cursor: 0,
            down_skips: 0,
            upstream: f.to[0],
            transport: Transport::Udp,
            id: 0,
            deadline: now + FORWARD_DEADLINE,
            read_timeout: f.read_timeout,
            attempt: 0,
            max_fails: f.max_fails,
            health_interval: f.health_check,
            failfast: f.failfast_all_unhealthy,
            force_tcp: f.force_tcp,
            prefer_udp: f.prefer_udp,
            client_tcp,
        };
        self.exchanges.insert(xid, x);
        self.coalesce.insert((bi, fi, key), xid);
        self.next_attempt(now, xid);
    }

    fn is_down(&self, addr: &SocketAddr, max_fails: u32) -> bool {
        max_fails > 0 && self.health.get(addr).is_some_and(|h| h.fails > max_fails)
    }

    /// CoreDNS's forward loop (incidents.md §6.1): walk the list, skip Down upstreams, and when all are
    /// down pick a random one; keep trying until the 5 s deadline, then SERVFAIL.
    fn next_attempt(&mut self, now: Now, xid: u64) {
        loop {
            let Some(x) = self.exchanges.get(&xid) else { return };
            if now >= x.deadline {
                return self.fail_exchange(now, xid);
            }
            let n = x.order.len();
            let (mut cursor, mut skips) = (x.cursor, x.down_skips);
            if cursor >= n {
                cursor = 0;
                skips = 0;
            }
            let mut up = x.order[cursor];
            cursor += 1;
            if self.is_down(&up, x.max_fails) {
                skips += 1;
                if skips < n {
                    let x = self.exchanges.get_mut(&xid).expect("exchange present: checked above");
                    x.cursor = cursor;
                    x.down_skips = skips;
                    continue;
                }
                // All down: assume health checking is broken and spray (or fail fast).
                self.metrics.healthcheck_broken += 1;
                if x.failfast {
                    return self.fail_exchange(now, xid);
                }
                up = x.order[self.rng.usize(..n)];
            }
            let transport = if x.force_tcp || (x.client_tcp && !x.prefer_udp) { Transport::Tcp } else { Transport::Udp };
            let x = self.exchanges.get_mut(&xid).expect("exchange present: checked above");
            x.cursor = cursor;
            x.down_skips = skips;
            return self.send_exchange(now, xid, up, transport);
        }
    }

    fn send_exchange(&mut self, now: Now, xid: u64, up: SocketAddr, transport: Transport) {
        let id = self.fresh_id(up);
        let Some(x) = self.exchanges.get_mut(&xid) else { return };
        self.wire_ids.remove(&(x.upstream, x.id));
        x.upstream = up;
        x.transport = transport;
        x.id = id;
        x.attempt += 1;
        let attempt = x.attempt;
        let read_timeout = x.read_timeout;
        let payload = match &x.kind {
            XKind::Query { qname, qtype, qclass, dnssec_ok, cd, block, .. } => {
                let bufsize = self.blocks.get(*block).map_or(1232, |b| b.cfg.bufsize);
                build_query(id, qname, *qtype, *qclass, Some((bufsize, *dnssec_ok)), *cd)
            }
            // Health probe: `. IN NS`, RD=1 (dns-servers.md §1.5).
            XKind::Probe { .. } => build_query(id, &[0], wire::TYPE_NS, wire::CLASS_IN, None, false),
        };
        self.wire_ids.insert((up, id), xid);
        self.metrics.upstreams.entry(up).or_default().requests += u64::from(matches!(self.exchanges[&xid].kind, XKind::Query { .. }));
        self.transmits.push_back(Transmit { dest: Dest::Upstream { addr: up, transport }, payload });
        self.add_timer(now + read_timeout, TimerKind::Read { xid, attempt });
    }

    /// A random DNS ID not in use towards this upstream (spoofing resistance: random IDs, and the
    /// driver's random source ports).
    fn fresh_id(&mut self, up: SocketAddr) -> u16 {
        loop {
            let id = self.rng.u16(..);
            if !self.wire_ids.contains_key(&(up, id)) {
                return id;
            }
        }
    }

    fn add_timer(&mut self, at: Now, kind: TimerKind) {
        self.timer_seq += 1;
        self.timers.insert((at, self.timer_seq, kind));
    }

    /// The exchange ran out of time (or of upstreams): SERVFAIL to every waiter.
    fn fail_exchange(&mut self, now: Now, xid: u64) {
        let Some(x) = self.exchanges.remove(&xid) else { return };
        self.wire_ids.remove(&(x.upstream, x.id));
        let XKind::Query { block, fwd, key, waiters, .. } = x.kind else { return };
        if self.coalesce.get(&(block, fwd, key.clone())) == Some(&xid) {
            self.coalesce.remove(&(block, fwd, key.clone()));
        }
        self.release_forward_slot(x.generation, block, fwd);
        for tid in waiters {
            let stale = self.tasks[tid].as_ref().is_some_and(|t| t.client.is_none());
            if stale {
                // A refresh failed; let a later hit try again.
                if let Some(c) = self.blocks.get_mut(block).and_then(|b| b.cache.as_mut()) {
                    c.refresh_failed(&key);
                }
                self.take_task(tid);
                continue;
            }
            self.finish_servfail(now, tid);
        }
    }

    /// An exchange ended: its `max_concurrent` slot is free again.
    fn release_forward_slot(&mut self, generation: u64, block: usize, fwd: usize) {
        if generation == self.generation
            && let Some(slot) = self.blocks.get_mut(block).and_then(|b| b.fwd_inflight.get_mut(fwd))
        {
            *slot = slot.saturating_sub(1);
        }
    }

    /// Starts health probing of an upstream after a failure (unless already probing).
    fn start_probing(&mut self, now: Now, up: SocketAddr, interval: Duration, transport: Transport) {
        let h = self.health.entry(up).or_default();
        if h.probing {
            return;
        }
        h.probing = true;
        let key = self.next_probe_key;
        self.next_probe_key += 1;
        self.probe_keys.insert(key, (up, interval, transport));
        // The first check runs at once (CoreDNS up.Probe).
        self.add_timer(now, TimerKind::Probe { key });
    }

    fn send_probe(&mut self, now: Now, key: u64) {
        let Some(&(up, _, transport)) = self.probe_keys.get(&key) else { return };
        let xid = self.next_xid;
        self.next_xid += 1;
        self.exchanges.insert(
            xid,
            Exchange {
                kind: XKind::Probe { key },
                generation: self.generation,
                order: vec![up],
                cursor: 0,
                down_skips: 0,
                upstream: up,
                transport,
                id: 0,
                deadline: now + Duration::from_secs(1),
                // Health check read timeout: 1 s (incidents.md §6.1).
                read_timeout: Duration::from_secs(1),
                attempt: 0,
                max_fails: 0,
                health_interval: Duration::ZERO,
                failfast: false,
                force_tcp: false,
                prefer_udp: false,
                client_tcp: false,
            },
        );
        self.send_exchange(now, xid, up, transport);
    }

    /// An upstream answered (`from` is the upstream's address).
    pub fn handle_upstream(&mut self, now: Now, from: SocketAddr, transport: Transport, msg: &[u8]) {
        if msg.len() < wire::HEADER_LEN || !wire::flags::is_response(msg) {
            return;
        }
        let id = wire::flags::id(msg);
        let Some(&xid) = self.wire_ids.get(&(from, id)) else { return };
        let Some(x) = self.exchanges.get(&xid) else { return };
        // The answer must repeat our question, or it is ignored (spoofing resistance, RFC 5452 §9.1).
        let mut name = Vec::new();
        let Ok(name_end) = (if wire::u16_at(msg, 4) == Ok(1) {
            wire::read_name_lower(msg, wire::HEADER_LEN, &mut name)
        } else {
            Err(wire::WireError::Truncated)
        }) else {
            return;
        };
        let (Ok(qt), Ok(qc)) = (wire::u16_at(msg, name_end), wire::u16_at(msg, name_end + 2)) else { return };
        match &x.kind {
            &XKind::Probe { key } => {
                if name != [0] || qt != wire::TYPE_NS {
                    return;
                }
                // Any response, even REFUSED or SERVFAIL, means healthy.
                self.exchanges.remove(&xid);
                self.wire_ids.remove(&(from, id));
                self.probe_keys.remove(&key);
                let h = self.health.entry(from).or_default();
                h.fails = 0;
                h.probing = false;
            }
            XKind::Query { qname, qtype, qclass, .. } => {
                if &name != qname || qt != *qtype || qc != *qclass {
                    return;
                }
                let rcode = wire::flags::rcode(msg);
                if let Some(u) = self.metrics.upstreams.get_mut(&from) {
                    u.responses[usize::from(rcode)] += 1;
                }
                if wire::flags::tc(msg) && transport == Transport::Udp {
                    // Truncated over UDP: ask the same upstream again over TCP.
                    return self.send_exchange(now, xid, from, Transport::Tcp);
                }
                let Ok(mut layout) = wire::layout(msg) else { return };
                let mut m = msg.to_vec();
                wire::strip_opt(&mut m, &mut layout);
                self.complete_exchange(now, xid, m, layout);
            }
        }
    }

    /// The driver could not reach an upstream (e.g. TCP connection refused): a failed try.
    pub fn handle_upstream_error(&mut self, now: Now, to: SocketAddr, transport: Transport) {
        let xids: Vec<u64> = self.exchanges.iter().filter(|(_, x)| x.upstream == to && x.transport == transport).map(|(k, _)| *k).collect();
        for xid in xids {
            self.exchange_failed(now, xid);
        }
    }

    fn complete_exchange(&mut self, now: Now, xid: u64, msg: Vec<u8>, layout: Layout) {
        let Some(x) = self.exchanges.remove(&xid) else { return };
        self.wire_ids.remove(&(x.upstream, x.id));
        let XKind::Query { block, fwd, key, waiters, qname, .. } = x.kind else { return };
        if self.coalesce.get(&(block, fwd, key.clone())) == Some(&xid) {
            self.coalesce.remove(&(block, fwd, key.clone()));
        }
        let mut ttl = None;
        if x.generation == self.generation
            && let Some(c) = self.blocks.get_mut(block).and_then(|b| b.cache.as_mut()).filter(|c| c.covers(&qname))
        {
            match c.store(&key, &qname, &msg, &layout, now, &mut self.rng) {
                Some((_, t)) => {
                    ttl = Some(t);
                    if self.share_fills {
                        if self.fills.len() >= FILLS_MAX {
                            self.fills.pop_front();
                        }
                        self.fills.push_back(CacheFill {
                            block,
                            key: key.clone().into_boxed_slice(),
                            qname: qname.clone().into_boxed_slice(),
                            msg: msg.clone().into_boxed_slice(),
                        });
                    }
                }
                None => c.refresh_failed(&key),
            }
        }
        self.release_forward_slot(x.generation, block, fwd);
        for tid in waiters {
            if self.tasks[tid].as_ref().is_some_and(|t| t.client.is_none()) {
                self.take_task(tid);
                continue;
            }
            self.finish_inner(now, tid, msg.clone(), layout.records.clone(), ttl);
        }
    }

    /// One try of an exchange failed (read timeout, connection error).
    fn exchange_failed(&mut self, now: Now, xid: u64) {
        let Some(x) = self.exchanges.get(&xid) else { return };
        let (up, id) = (x.upstream, x.id);
        let probe = match x.kind {
            XKind::Probe { key } => Some(key),
            XKind::Query { .. } => None,
        };
        let (max_fails, interval, force_tcp) = (x.max_fails, x.health_interval, x.force_tcp);
        if let Some(u) = self.metrics.upstreams.get_mut(&up) {
            u.timeouts += 1;
        }
        match probe {
            Some(key) => {
                self.exchanges.remove(&xid);
                self.wire_ids.remove(&(up, id));
                self.health.entry(up).or_default().fails += 1;
                self.metrics.upstreams.entry(up).or_default().healthcheck_failures += 1;
                // Try again after the interval.
                if let Some(&(_, interval, _)) = self.probe_keys.get(&key) {
                    self.add_timer(now + interval, TimerKind::Probe { key });
                }
            }
            None => {
                if max_fails > 0 {
                    let transport = if force_tcp { Transport::Tcp } else { Transport::Udp };
                    self.start_probing(now, up, interval, transport);
                }
                self.next_attempt(now, xid);
            }
        }
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
                        // (incidents.md §6.1). Otherwise a connection DNATed to a pod that vanished
                        // without a reset keeps swallowing every query while traffic keeps it busy.
                        if x.transport == Transport::Tcp && !self.close_tcp.contains(&x.upstream) {
                            self.close_tcp.push_back(x.upstream);
                        }
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

fn task_client_ip(t: Option<&Task>) -> IpAddr {
    t.and_then(|t| t.client).map_or(IpAddr::from([0, 0, 0, 0]), |c| c.src.ip())
}

/// The memo's key: the server block, then the cache key of the question.
fn memo_key(buf: &mut Vec<u8>, block: usize, name: &[u8], qtype: u16, qclass: u16, dnssec_ok: bool, cd: bool) {
    cache::key(buf, name, qtype, qclass, dnssec_ok, cd);
    buf.extend_from_slice(&(block as u16).to_be_bytes());
}

/// The size limit and EDNS echo for a client: 512 without EDNS, else its size capped by `bufsize`
/// (and at least 512); TCP has no limit (RFC 1035 §4.2.1, RFC 6891 §6.2.5, dns-servers.md §2).
fn shape_for<'t>(task: &Ask<'t>, cfg: &ServerConfig, ttl: Option<u32>, client: Client) -> Shape<'t> {
    let limit = match (client.transport, task.edns) {
        (Transport::Tcp, _) => None,
        (Transport::Udp, None) => Some(wire::MAX_UDP_PLAIN),
        (Transport::Udp, Some(e)) => Some(usize::from(e.udp_size.min(cfg.bufsize)).max(wire::MAX_UDP_PLAIN)),
    };
    Shape { id: task.id, rd: task.rd, qname: task.qname_case, ttl, limit, opt: task.edns.map(|e| (cfg.bufsize, e.dnssec_ok)) }
}

/// `loadbalance round_robin`: rotates each run of A/AAAA answer records of equal length whose owner is
/// a compression pointer (nothing can point into such a record, so moving it is safe).
fn round_robin(out: &mut [u8], spans: &[RecordSpan], rng: &mut fastrand::Rng) {
    // The answer records: the spans are in message order, so they are one run (no allocation).
    let first = spans.iter().position(|s| s.section == 0).unwrap_or(spans.len());
    let answers = &spans[first..first + spans[first..].iter().take_while(|s| s.section == 0).count()];
    let movable = |out: &[u8], s: &RecordSpan| {
        (s.rtype == wire::TYPE_A || s.rtype == wire::TYPE_AAAA)
            && (s.end as usize) <= out.len()
            && out.get(s.start as usize).is_some_and(|b| b & 0xc0 == 0xc0)
    };
    let mut i = 0;
    while i < answers.len() {
        let mut j = i;
        while j < answers.len()
            && movable(out, &answers[j])
            && answers[j].end - answers[j].start == answers[i].end - answers[i].start
            && answers[j].rtype == answers[i].rtype
        {
            j += 1;
        }
        if j - i > 1 {
            let (start, end) = (answers[i].start as usize, answers[j - 1].end as usize);
            let len = (answers[i].end - answers[i].start) as usize;
            let k = rng.usize(..j - i);
            out[start..end].rotate_left(k * len);
        }
        i = j.max(i + 1);
    }
}

/// An error answer: header of the query with QR and the rcode, the question if it could be read.
fn error_message(query: &[u8], id: u16, rcode: u8, _edns: Option<u16>, out: &mut Vec<u8>) {
    out.clear();
    let rd = query.get(2).is_some_and(|b| b & 1 != 0);
    let opcode = query.get(2).map_or(0, |b| b & 0x78);
    out.extend_from_slice(&id.to_be_bytes());
    out.push(0x80 | opcode | u8::from(rd));
    out.push(0x80 | rcode);
    // Echo the question when it parses (FORMERR may not have one).
    let question = (query.len() >= wire::HEADER_LEN && wire::u16_at(query, 4) == Ok(1))
        .then(|| wire::skip_name(query, wire::HEADER_LEN).ok().filter(|e| e + 4 <= query.len()))
        .flatten();
    out.extend_from_slice(&[0, u8::from(question.is_some()), 0, 0, 0, 0, 0, 0]);
    if let Some(end) = question {
        out.extend_from_slice(&query[wire::HEADER_LEN..end + 4]);
    }
}

/// A query for an upstream: random ID, RD, the (lowercased) question, optional OPT.
pub fn build_query(id: u16, qname: &[u8], qtype: u16, qclass: u16, edns: Option<(u16, bool)>, cd: bool) -> Vec<u8> {
    let mut m = Vec::with_capacity(wire::HEADER_LEN + qname.len() + 4 + wire::OPT_LEN);
    m.extend_from_slice(&id.to_be_bytes());
    m.push(0x01);
    m.push(if cd { 0x10 } else { 0 });
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(qname);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&qclass.to_be_bytes());
    if let Some((size, dnssec_ok)) = edns {
        wire::push_opt(&mut m, size, dnssec_ok);
    }
    m
}

fn hname(wire_name: &[u8]) -> Name {
    Name::from_ascii(wire::name_to_string(wire_name)).unwrap_or_else(|_| Name::root())
}

/// Assembles a synthesised answer with hickory-proto (the slow path; the result is then served,
/// and possibly cached, as wire bytes).
fn build_synth(qname: &[u8], qtype: u16, qclass: u16, s: &Synth) -> Vec<u8> {
    let mut m = Message::new(0, MessageType::Response, OpCode::Query);
    m.metadata.authoritative = s.authoritative;
    m.metadata.recursion_available = true;
    m.metadata.response_code = ResponseCode::from(0, s.rcode);
    let mut q = Query::query(hname(qname), RecordType::from(qtype));
    q.set_query_class(DNSClass::from(qclass));
    m.add_query(q);
    m.add_answers(s.answers.iter().cloned());
    m.add_authorities(s.authority.iter().cloned());
    m.add_additionals(s.additional.iter().cloned());
    m.to_vec().unwrap_or_else(|_| {
        let mut e = Vec::new();
        let mut q = build_query(0, qname, qtype, qclass, None, false);
        q[2] = 0x81;
        error_message(&q, 0, wire::RCODE_SERVFAIL, None, &mut e);
        e
    })
}

/// autopath's answer: `qname CNAME found`, then the found name's answer (dns-servers.md §1.3).
fn autopath_answer(qname: &[u8], qtype: u16, found: &[u8], msg: &[u8]) -> Option<Vec<u8>> {
    let inner = Message::from_vec(msg).ok()?;
    let mut m = Message::new(0, MessageType::Response, OpCode::Query);
    m.metadata = inner.metadata;
    m.metadata.id = 0;
    m.add_query(Query::query(hname(qname), RecordType::from(qtype)));
    let ttl = inner.answers.first().map_or(5, |r| r.ttl);
    m.add_answer(Record::from_rdata(hname(qname), ttl, RData::CNAME(CNAME(hname(found)))));
    m.add_answers(inner.answers);
    m.add_authorities(inner.authorities);
    m.add_additionals(inner.additionals);
    m.to_vec().ok()
}

fn hosts_lookup(h: &crate::config::HostsConfig, name: &[u8], qtype: u16) -> Option<Synth> {
    let text = wire::name_to_string(name);
    let mut s = Synth { authoritative: true, ..Synth::default() };
    if qtype == wire::TYPE_PTR && !h.no_reverse {
        let ip = crate::kubernetes::arpa_to_ip(&text)?;
        let names: Vec<&String> = h.entries.iter().filter(|(i, _)| *i == ip).map(|(_, n)| n).collect();
        if names.is_empty() {
            return h.fallthrough.is_none().then(|| Synth { rcode: wire::RCODE_NXDOMAIN, ..s.clone() });
        }
        for n in names {
            s.answers.push(Record::from_rdata(
                hname(name),
                h.ttl,
                RData::PTR(hickory_proto::rr::rdata::PTR(Name::from_ascii(n).unwrap_or_else(|_| Name::root()))),
            ));
        }
        return Some(s);
    }
    let ips: Vec<IpAddr> = h.entries.iter().filter(|(_, n)| *n == text).map(|(ip, _)| *ip).collect();
    if ips.is_empty() {
        // Not in hosts: fall through when configured, else NXDOMAIN (CoreDNS hosts).
        return if h.fallthrough.as_ref().is_some_and(|ft| ft.is_empty() || ft.iter().any(|z| wire::is_subdomain(name, z))) {
            None
        } else {
            Some(Synth { rcode: wire::RCODE_NXDOMAIN, ..s })
        };
    }
    for ip in ips {
        match (qtype, ip) {
            (wire::TYPE_A, IpAddr::V4(v4)) => {
                s.answers.push(Record::from_rdata(hname(name), h.ttl, RData::A(hickory_proto::rr::rdata::A(v4))))
            }
            (wire::TYPE_AAAA, IpAddr::V6(v6)) => {
                s.answers.push(Record::from_rdata(hname(name), h.ttl, RData::AAAA(hickory_proto::rr::rdata::AAAA(v6))))
            }
            _ => {}
        }
    }
    Some(s)
}
