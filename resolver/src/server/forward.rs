//! The `forward` plugin as CoreDNS runs it: per-query attempts over the upstream list by policy
//! within the deadline, read timeouts, `max_concurrent`, coalescing of identical questions,
//! UDP→TCP on truncation, and the health probes that mark upstreams down and up.

use std::net::SocketAddr;
use std::time::Duration;

use crate::cache::{self};
use crate::config::Policy;
use crate::wire::{self, Layout};

use super::{CacheFill, Dest, Exchange, FILLS_MAX, MAX_WAITERS, Now, Server, TimerKind, Transmit, Transport, XKind};

impl Server {
    pub(super) fn forward(&mut self, now: Now, tid: usize, fi: usize) {
        let Some(task) = self.tasks[tid].as_ref() else { return };
        let bi = task.block;
        let dnssec_ok = task.edns.is_some_and(|e| e.dnssec_ok);
        let mut key = Vec::new();
        cache::key(&mut key, &task.current, task.qtype, task.qclass, dnssec_ok, task.cd);
        let client_tcp = task.client.is_some_and(|c| c.transport == Transport::Tcp);
        let (qname, qtype, qclass, cd) = (task.current.clone(), task.qtype, task.qclass, task.cd);
        let block = &self.blocks[bi].cfg;
        let edns = if block.forward_client_edns { task.edns.map(|e| e.udp_size.max(512)) } else { Some(block.bufsize) };
        // Coalesce identical in-flight queries into one upstream exchange. A waiter costs no upstream
        // query; their number per exchange is bounded so memory stays bounded.
        if self.cfg.coalesce
            && let Some(&xid) = self.coalesce.get(&(bi, fi, key.clone()))
            && let Some(XKind::Query { waiters, .. }) = self.exchanges.get_mut(&xid).map(|x| &mut x.kind)
        {
            if waiters.len() >= MAX_WAITERS {
                return self.refuse(now, tid);
            }
            waiters.push(tid);
            return;
        }
        // max_concurrent: REFUSED above the limit, not a health failure (sources.md#coredns-forward). It bounds
        // concurrent upstream queries, which is what CoreDNS's counter bounds (it never coalesces).
        if let Some(max) = self.blocks[bi].cfg.forward[fi].max_concurrent
            && self.blocks[bi].fwd_inflight[fi] >= max
        {
            return self.refuse(now, tid);
        }
        if self.cfg.forward_table.is_some_and(|max| self.fwd_table >= max) {
            return self.refuse(now, tid);
        }
        self.fwd_table += 1;
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
            kind: XKind::Query { block: bi, fwd: fi, key: key.clone(), waiters: vec![tid], qname, qtype, qclass, dnssec_ok, cd, edns },
            generation: self.generation,
            order,
            cursor: 0,
            down_skips: 0,
            send_errors: 0,
            upstream: f.to[0],
            transport: Transport::Udp,
            id: 0,
            deadline: now + self.cfg.forward_deadline,
            read_timeout: f.read_timeout,
            attempt: 0,
            max_fails: f.max_fails,
            health_interval: f.health_check,
            failfast: f.failfast_all_unhealthy,
            force_tcp: f.force_tcp,
            prefer_udp: f.prefer_udp,
            client_tcp,
            sent: now,
        };
        self.exchanges.insert(xid, x);
        if self.cfg.coalesce {
            self.coalesce.insert((bi, fi, key), xid);
        }
        self.next_attempt(now, xid);
    }

    pub(super) fn is_down(&self, addr: &SocketAddr, max_fails: u32) -> bool {
        max_fails > 0 && self.health.get(addr).is_some_and(|h| h.fails > max_fails)
    }

    /// CoreDNS's forward loop (sources.md#coredns-forward): walk the list, skip Down upstreams, and when all are
    /// down pick a random one; keep trying until the 5 s deadline, then SERVFAIL.
    pub(super) fn next_attempt(&mut self, now: Now, xid: u64) {
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

    pub(super) fn send_exchange(&mut self, now: Now, xid: u64, up: SocketAddr, transport: Transport) {
        let id = self.fresh_id(up);
        let Some(x) = self.exchanges.get_mut(&xid) else { return };
        self.wire_ids.remove(&(x.upstream, x.id));
        x.upstream = up;
        x.transport = transport;
        x.id = id;
        x.attempt += 1;
        x.sent = now;
        let attempt = x.attempt;
        let read_timeout = x.read_timeout;
        let payload = match &x.kind {
            XKind::Query { qname, qtype, qclass, dnssec_ok, cd, edns, .. } => {
                build_query(id, qname, *qtype, *qclass, edns.map(|size| (size, *dnssec_ok)), *cd)
            }
            // Health probe: `. IN NS`, RD=1 (sources.md#coredns-forward).
            XKind::Probe { .. } => build_query(id, &[0], wire::TYPE_NS, wire::CLASS_IN, None, false),
        };
        self.wire_ids.insert((up, id), xid);
        self.detect.on_upstream(now, &self.detect_cfg, &mut self.metrics.detect, up);
        self.metrics.upstreams.entry(up).or_default().requests += u64::from(matches!(self.exchanges[&xid].kind, XKind::Query { .. }));
        self.transmits.push_back(Transmit { dest: Dest::Upstream { addr: up, transport }, payload });
        self.add_timer(now + read_timeout, TimerKind::Read { xid, attempt });
    }

    /// A random DNS ID not in use towards this upstream (spoofing resistance: random IDs, and the
    /// driver's random source ports).
    pub(super) fn fresh_id(&mut self, up: SocketAddr) -> u16 {
        loop {
            let id = self.rng.u16(..);
            if !self.wire_ids.contains_key(&(up, id)) {
                return id;
            }
        }
    }

    /// The exchange ran out of time (or of upstreams): SERVFAIL to every waiter.
    pub(super) fn fail_exchange(&mut self, now: Now, xid: u64) {
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
    pub(super) fn release_forward_slot(&mut self, generation: u64, block: usize, fwd: usize) {
        if generation == self.generation
            && let Some(slot) = self.blocks.get_mut(block).and_then(|b| b.fwd_inflight.get_mut(fwd))
        {
            *slot = slot.saturating_sub(1);
            self.fwd_table = self.fwd_table.saturating_sub(1);
        }
    }

    /// Starts health probing of an upstream after a failure (unless already probing).
    pub(super) fn start_probing(&mut self, now: Now, up: SocketAddr, interval: Duration, transport: Transport) {
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

    pub(super) fn send_probe(&mut self, now: Now, key: u64) {
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
                send_errors: 0,
                upstream: up,
                transport,
                id: 0,
                deadline: now + Duration::from_secs(1),
                // Health check read timeout: 1 s (sources.md#coredns-forward).
                read_timeout: Duration::from_secs(1),
                attempt: 0,
                max_fails: 0,
                health_interval: Duration::ZERO,
                failfast: false,
                force_tcp: false,
                prefer_udp: false,
                client_tcp: false,
                sent: now,
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
                    u.duration.entry(rcode).or_default().observe(now.saturating_sub(x.sent));
                }
                if wire::flags::tc(msg) && transport == Transport::Udp && (self.cfg.tcp_on_truncation || x.prefer_udp) {
                    // Truncated over UDP: ask the same upstream again over TCP (CoreDNS: only with
                    // prefer_udp; otherwise the truncated answer goes to the client, uncached).
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
            let Some(x) = self.exchanges.get_mut(&xid) else { continue };
            x.send_errors += 1;
            if matches!(x.kind, XKind::Query { .. }) && x.send_errors >= x.order.len() {
                // Every upstream refused the send itself: SERVFAIL now, not a busy retry until the
                // deadline (a node whose resolv.conf names an unreachable server spun a core so).
                self.fail_exchange(now, xid);
            } else {
                self.exchange_failed(now, xid);
            }
        }
    }

    pub(super) fn complete_exchange(&mut self, now: Now, xid: u64, msg: Vec<u8>, layout: Layout) {
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
            self.set_source(tid, crate::metrics::PLUGIN_FORWARD);
            self.finish_inner(now, tid, msg.clone(), layout.records.clone(), ttl);
        }
    }

    /// One try of an exchange failed (read timeout, connection error).
    pub(super) fn exchange_failed(&mut self, now: Now, xid: u64) {
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
