//! The plugin chain for one query, in CoreDNS's fixed order: block selection, the cache (and its
//! refresh), the memo of synthesised answers, `hosts`, `kubernetes`, then `forward`; and how an
//! answer, cached, forwarded or synthesised, is shaped for its client.

use std::net::{IpAddr, SocketAddr};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::cache::{self, Hit, PartKind, Shape};
use crate::config::ServerConfig;
use crate::kubernetes::{KubeResult, Kubernetes};
use crate::metrics::{PLUGIN_CACHE, PLUGIN_FILE, PLUGIN_HOSTS, PLUGIN_KUBERNETES, PLUGIN_TEMPLATE, type_bucket};
use crate::synth::Synth;
use crate::wire::{self, QueryError, RecordSpan};

use super::autopath::autopath_answer;
use super::forward::build_query;
use super::{Ask, Client, Dest, Handled, MEMO_MAX, Now, Server, Task, Transmit, Transport};

impl Server {
    pub(super) fn pick_block(&self, local: SocketAddr, qname: &[u8]) -> Option<usize> {
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

    pub(super) fn handle_query_inner(&mut self, now: Now, client: Client, query: &[u8], out: &mut Vec<u8>, qname: &mut Vec<u8>) -> Handled {
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
        let tcp = client.transport == Transport::Tcp;
        self.detect.on_query(now, &self.detect_cfg, &mut self.metrics.detect, &self.state, client.src, tcp, view.id, view.qtype, qname);
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
        let qsize = u16::try_from(query.len()).unwrap_or(u16::MAX);
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
                qsize,
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
            qsize,
            source: 0,
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
    pub(super) fn try_cache(&mut self, now: Now, task: &Ask, name: &[u8], out: &mut Vec<u8>) -> Option<Handled> {
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
                let plugin = if b.cache.is_some() { PLUGIN_CACHE } else { PLUGIN_KUBERNETES };
                let sizes = (client.transport == Transport::Tcp, usize::from(task.qsize), out.len());
                m.answered(wire::flags::rcode(out), task.qtype, now.saturating_sub(task.started), plugin, sizes);
                if !b.cfg.log.is_empty() {
                    log_answer(&mut self.query_log, &b.cfg.log, task, name, out, now);
                }
                self.scratch_key = key;
                self.detect_answer(now, &client, name, out);
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
                let sizes = (client.transport == Transport::Tcp, usize::from(task.qsize), out.len());
                m.answered(rcode, task.qtype, now.saturating_sub(task.started), PLUGIN_CACHE, sizes);
                if !b.cfg.log.is_empty() {
                    log_answer(&mut self.query_log, &b.cfg.log, task, name, out, now);
                }
                Some((refresh, rcode))
            }
            None => {
                m.cache_misses += 1;
                None
            }
        };
        self.scratch_key = key;
        let (refresh, _) = result?;
        self.detect_answer(now, &client, name, out);
        if refresh {
            self.start_refresh(now, task, name);
        }
        Some(Handled::Answered)
    }

    pub(super) fn start_refresh(&mut self, now: Now, task: &Ask, name: &[u8]) {
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
            qsize: 0,
            source: 0,
            current: name.to_vec(),
            autopath: None,
            skip_cache: true,
        };
        let tid = self.insert_task(t);
        self.resolve(now, tid, true);
    }

    pub(super) fn insert_task(&mut self, t: Task) -> usize {
        if let Some(i) = self.free.pop() {
            self.tasks[i] = Some(t);
            i
        } else {
            self.tasks.push(Some(t));
            self.tasks.len() - 1
        }
    }

    pub(super) fn take_task(&mut self, tid: usize) -> Option<Task> {
        let t = self.tasks.get_mut(tid)?.take();
        if t.is_some() {
            self.free.push(tid);
        }
        t
    }

    /// Runs the plugins below autopath for `task.current`: cache, template, hosts, kubernetes, forward.
    pub(super) fn resolve(&mut self, now: Now, tid: usize, skip_cache_lookup: bool) {
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
                self.set_source(tid, PLUGIN_CACHE);
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
                self.set_source(tid, PLUGIN_TEMPLATE);
                return self.finish_synth(now, tid, &name, synth, false);
            }
        }
        // hosts
        if let Some(h) = &b.cfg.hosts
            && h.zones.iter().any(|z| wire::is_subdomain(&name, z))
            && let Some(synth) = hosts_lookup(h, &name, qtype)
        {
            self.set_source(tid, PLUGIN_HOSTS);
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
                    self.set_source(tid, PLUGIN_KUBERNETES);
                    return self.finish_synth_memo(now, tid, &name, synth, true, true);
                }
            }
        }
        // file
        if qclass == wire::CLASS_IN
            && let Some(z) = b.cfg.files.iter().filter(|z| wire::is_subdomain(&name, &z.origin)).max_by_key(|z| z.origin.len())
        {
            let synth = z.lookup(&name, qtype);
            self.set_source(tid, PLUGIN_FILE);
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

    pub(super) fn finish_synth(&mut self, now: Now, tid: usize, name: &[u8], synth: Synth, cacheable: bool) {
        self.finish_synth_memo(now, tid, name, synth, cacheable, false);
    }

    pub(super) fn finish_synth_memo(&mut self, now: Now, tid: usize, name: &[u8], synth: Synth, cacheable: bool, memo: bool) {
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

    /// Records which plugin writes the answer of task `tid` (`coredns_dns_responses_total`'s label).
    pub(super) fn set_source(&mut self, tid: usize, plugin: u8) {
        if let Some(t) = self.tasks[tid].as_mut() {
            t.source = plugin;
        }
    }

    pub(super) fn finish_servfail(&mut self, now: Now, tid: usize) {
        self.set_source(tid, 0);
        let Some(task) = self.tasks[tid].as_ref() else { return };
        let msg = build_synth(&task.current, task.qtype, task.qclass, &Synth { rcode: wire::RCODE_SERVFAIL, ..Synth::default() });
        let spans = wire::layout(&msg).map(|l| l.records).unwrap_or_default();
        self.finish_inner(now, tid, msg, spans, None);
    }

    /// An answer for `task.current` is known: continue autopath or answer the client.
    pub(super) fn finish_inner(&mut self, now: Now, tid: usize, msg: Vec<u8>, spans: Vec<RecordSpan>, ttl: Option<u32>) {
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

    pub(super) fn respond(&mut self, now: Now, tid: usize, msg: Vec<u8>, spans: Vec<RecordSpan>, ttl: Option<u32>) {
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
        // CoreDNS labels an answer with the first plugin in the writer's call stack: with `cache` in
        // the block, every plugin after it writes through cache's writer (sources.md#coredns-metrics).
        let plugin = match task.source {
            0 => 0,
            _ if b.cache.is_some() => PLUGIN_CACHE,
            p => p,
        };
        if let Some(m) = self.metrics.blocks.get_mut(task.block) {
            let sizes = (client.transport == Transport::Tcp, usize::from(task.qsize), out.len());
            m.answered(wire::flags::rcode(&out), task.qtype, now.saturating_sub(task.started), plugin, sizes);
        }
        if !b.cfg.log.is_empty() {
            log_answer(&mut self.query_log, &b.cfg.log, &task.ask(client), &task.qname, &out, now);
        }
        self.detect_answer(now, &client, &task.qname, &out);
        self.transmits.push_back(Transmit { dest: Dest::Client(client), payload: out });
    }

    pub(super) fn error_answer(&mut self, query: &[u8], id: u16, rcode: u8, out: &mut Vec<u8>) -> Handled {
        error_message(query, id, rcode, None, out);
        Handled::Answered
    }

    /// Answers REFUSED at once (over `max_concurrent`), past autopath.
    pub(super) fn refuse(&mut self, now: Now, tid: usize) {
        let Some(task) = self.tasks[tid].as_mut() else { return };
        self.metrics.blocks[task.block].forward_max_concurrent_rejects += 1;
        task.autopath = None;
        let msg = build_synth(&task.current, task.qtype, task.qclass, &Synth { rcode: wire::RCODE_REFUSED, ..Synth::default() });
        let spans = wire::layout(&msg).map(|l| l.records).unwrap_or_default();
        self.finish_inner(now, tid, msg, spans, None);
    }
}

pub(super) fn task_client_ip(t: Option<&Task>) -> IpAddr {
    t.and_then(|t| t.client).map_or(IpAddr::from([0, 0, 0, 0]), |c| c.src.ip())
}

/// Lines waiting for the driver beyond which new ones are not queued (the driver takes them after
/// every call; a caller that never does, as the simulator, stops paying for them here).
pub(super) const QUERY_LOG_MAX: usize = 65_536;

/// The `log` plugin's line for an answer, if a rule takes it.
fn log_answer(
    queue: &mut std::collections::VecDeque<String>,
    rules: &[crate::querylog::LogRule],
    task: &Ask,
    qname: &[u8],
    answer: &[u8],
    now: Now,
) {
    let e = crate::querylog::Entry {
        client: task.client.src,
        tcp: task.client.transport == Transport::Tcp,
        id: task.id,
        qname,
        qtype: task.qtype,
        qclass: task.qclass,
        qsize: usize::from(task.qsize),
        edns: task.edns,
        answer,
        took: now.saturating_sub(task.started),
    };
    if queue.len() < QUERY_LOG_MAX
        && let Some(line) = crate::querylog::line(rules, &e)
    {
        queue.push_back(line);
    }
}

/// The memo's key: the server block, then the cache key of the question.
pub(super) fn memo_key(buf: &mut Vec<u8>, block: usize, name: &[u8], qtype: u16, qclass: u16, dnssec_ok: bool, cd: bool) {
    cache::key(buf, name, qtype, qclass, dnssec_ok, cd);
    buf.extend_from_slice(&(block as u16).to_be_bytes());
}

/// The size limit and EDNS echo for a client: 512 without EDNS, else its size capped by `bufsize`
/// (and at least 512); TCP has no limit (RFC 1035 §4.2.1, RFC 6891 §6.2.5, sources.md#truncation).
pub(super) fn shape_for<'t>(task: &Ask<'t>, cfg: &ServerConfig, ttl: Option<u32>, client: Client) -> Shape<'t> {
    let limit = match (client.transport, task.edns) {
        (Transport::Tcp, _) => None,
        (Transport::Udp, None) => Some(wire::MAX_UDP_PLAIN),
        (Transport::Udp, Some(e)) => Some(usize::from(e.udp_size.min(cfg.bufsize)).max(wire::MAX_UDP_PLAIN)),
    };
    Shape { id: task.id, rd: task.rd, qname: task.qname_case, ttl, limit, opt: task.edns.map(|e| (cfg.bufsize, e.dnssec_ok)) }
}

/// `loadbalance round_robin`: rotates each run of A/AAAA answer records of equal length whose owner is
/// a compression pointer (nothing can point into such a record, so moving it is safe).
pub(super) fn round_robin(out: &mut [u8], spans: &[RecordSpan], rng: &mut fastrand::Rng) {
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
pub(super) fn error_message(query: &[u8], id: u16, rcode: u8, _edns: Option<u16>, out: &mut Vec<u8>) {
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

pub(super) fn hosts_lookup(h: &crate::config::HostsConfig, name: &[u8], qtype: u16) -> Option<Synth> {
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

pub(super) fn hname(wire_name: &[u8]) -> Name {
    Name::from_ascii(wire::name_to_string(wire_name)).unwrap_or_else(|_| Name::root())
}

/// Assembles a synthesised answer with hickory-proto (the slow path; the result is then served,
/// and possibly cached, as wire bytes).
pub(super) fn build_synth(qname: &[u8], qtype: u16, qclass: u16, s: &Synth) -> Vec<u8> {
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
