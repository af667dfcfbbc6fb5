//! Pods: lookups through their client-library models (client cache, thread pool, sockets and
//! ports), the answers they receive, and application TCP requests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use netmodel::Proto;
use netmodel::conntrack::{TcpFlag, Tuple};

use crate::client::cares::CAres;
use crate::client::evdns::Evdns;
use crate::client::glibc::Glibc;
use crate::client::go::Go;
use crate::client::musl::Musl;
use crate::client::{Api, Lookup, Outcome, PROCESS_SOCKET};
use crate::report::{AppRequest, LookupOutcome, LookupRecord, Wire};
use crate::spec::Library;

use super::{ActiveLookup, Engine, Ev, Owner, PROCESS_OWNER, Packet, PodId};

impl Engine {
    pub(super) fn start_lookup(&mut self, pod: PodId) {
        let p = &mut self.pods[pod];
        let total: u32 = p.names.iter().map(|n| n.1).sum();
        let mut pick = self.rng.u32(..total.max(1));
        let mut name = p.names.first().map(|n| n.0.clone()).unwrap_or_default();
        for (n, w) in &p.names {
            if pick < *w {
                name = n.clone();
                break;
            }
            pick -= w;
        }
        self.begin_lookup(pod, name, self.now);
    }

    /// The application asks for `name` (asked at `asked`): the client cache, the thread pool, then
    /// the library.
    pub(super) fn begin_lookup(&mut self, pod: PodId, name: String, asked: Duration) {
        let now = self.now;
        let p = &mut self.pods[pod];
        if p.client_cache.is_some()
            && let Some((expires, addr)) = p.cache.get(&name)
            && expires.is_none_or(|e| now < e)
        {
            let (addr, ok) = (*addr, addr.is_some());
            self.report.lookups.push(LookupRecord {
                pod,
                start: asked,
                end: now,
                name,
                queries: 0,
                ok,
                outcome: if ok { LookupOutcome::Ok } else { LookupOutcome::NxDomain },
                addr,
                cached: true,
                library: p.library,
                wire: Vec::new(),
                group: p.group,
                causes: Vec::new(),
            });
            return;
        }
        if p.threadpool.is_some_and(|n| p.lookups.len() >= n) {
            p.waiting.push_back((asked, name));
            return;
        }
        let id = self.next_lookup;
        self.next_lookup += 1;
        let mut call = p.call.clone();
        // `{n}` in a workload name: a random number per lookup, so every lookup asks a new name.
        call.name = name.replace("{n}", &self.rng.u32(..1_000_000).to_string());
        let seed = self.rng.u64(..);
        let model: Box<dyn Lookup> = match p.library {
            Library::Glibc(v) => Box::new(Glibc::new(self.now, v, &p.rc, &call, p.process.clone(), seed)),
            Library::GoCgo(v) => {
                call.hints = crate::client::Hints::GO_CGO;
                Box::new(Glibc::new(self.now, v, &p.rc, &call, p.process.clone(), seed))
            }
            Library::Musl(v) => Box::new(Musl::new(self.now, v, &p.rc, &call, seed)),
            Library::Go => Box::new(Go::new(self.now, &p.rc, &call, p.process.clone(), seed)),
            Library::GoBuild(b) => match b.choose(&p.rc, Some(crate::client::NSSWITCH_HOSTS), &call.name).0 {
                crate::client::go_choice::Choice::Native => Box::new(Go::new(self.now, &p.rc, &call, p.process.clone(), seed)),
                crate::client::go_choice::Choice::Cgo => {
                    call.hints = crate::client::Hints::GO_CGO;
                    Box::new(Glibc::new(self.now, crate::client::glibc::Version::CURRENT, &p.rc, &call, p.process.clone(), seed))
                }
            },
            Library::CAres(era) => Box::new(CAres::new(self.now, era, era.default_api(), &p.rc, &call, p.process.clone(), seed)),
            Library::Evdns(v) => Box::new(Evdns::new(self.now, v, Api::Getaddrinfo, &p.rc, &call, p.process.clone(), seed)),
        };
        // Asked earlier than now: it waited for a thread.
        let causes = if asked < now { vec![(asked, crate::cause::Cause::Queued)] } else { Vec::new() };
        p.lookups.insert(
            id,
            ActiveLookup {
                model,
                started: asked,
                name,
                queries: 0,
                wire: Vec::new(),
                sockets: BTreeMap::new(),
                timer: None,
                causes,
                insts: Vec::new(),
            },
        );
        self.drive_lookup(pod, id);
    }

    /// Sends what the lookup wants to send, arms its timer, finishes it when it has a result.
    pub(super) fn drive_lookup(&mut self, pod: PodId, id: u64) {
        loop {
            let Some(l) = self.pods[pod].lookups.get_mut(&id) else { return };
            let Some(send) = l.model.poll_send() else { break };
            l.queries += 1;
            if self.spec.trace_queries {
                l.wire.push(crate::report::WireQuery {
                    at: self.now,
                    qname: send.qname.clone(),
                    qtype: send.qtype,
                    transport: send.transport,
                    server: send.server,
                });
            }
            self.wire.by_type[match send.qtype {
                1 => 0,
                28 => 1,
                _ => 2,
            }] += 1;
            if in_zone(&send.qname, &self.spec.cluster_domain) {
                self.wire.cluster += 1;
            } else {
                self.wire.external += 1;
            }
            let port = if send.socket >= PROCESS_SOCKET {
                let p = &mut self.pods[pod];
                match p.proc_sockets.get(&send.socket) {
                    Some(port) => *port,
                    None => {
                        let Some(port) = p.ports.bind(&mut self.rng) else { continue };
                        p.proc_sockets.insert(send.socket, port);
                        p.port_owner.insert(port, PROCESS_OWNER);
                        port
                    }
                }
            } else {
                match l.sockets.get(&send.socket) {
                    Some(p) => *p,
                    None => {
                        let Some(port) = self.pods[pod].ports.bind(&mut self.rng) else { continue };
                        let l = self.pods[pod].lookups.get_mut(&id).expect("lookup present: checked above");
                        l.sockets.insert(send.socket, port);
                        self.pods[pod].port_owner.insert(port, id);
                        port
                    }
                }
            };
            let src = SocketAddr::new(self.pods[pod].ip, port);
            let pkt = Packet { src, dst: send.server, transport: send.transport, payload: send.payload };
            self.send(Owner::Pod(pod), pkt);
        }
        let p = &mut self.pods[pod];
        let Some(l) = p.lookups.get_mut(&id) else { return };
        let mut closed = Vec::new();
        while let Some(s) = l.model.poll_closed() {
            if let Some(port) = l.sockets.remove(&s) {
                closed.push(port);
            }
        }
        let result = l.model.result().cloned();
        if let Some(outcome) = result {
            let l = p.lookups.remove(&id).expect("lookup present: checked above");
            closed.extend(l.sockets.values().copied());
            p.process = l.model.process();
            let addr = match &outcome {
                Outcome::Addrs(a) => a.first().copied(),
                _ => None,
            };
            if let Some(cc) = p.client_cache {
                let ttl = if addr.is_some() { cc.positive } else { Some(cc.negative) };
                p.cache.insert(l.name.clone(), (ttl.map(|t| self.now + t), addr));
            }
            let ok = outcome.is_ok();
            let causes = self.finish_causes(l.started, ok, l.causes, &l.insts);
            self.report.lookups.push(LookupRecord {
                pod,
                group: self.pods[pod].group,
                start: l.started,
                end: self.now,
                name: l.name,
                queries: l.queries,
                ok,
                outcome: LookupOutcome::of(&outcome),
                addr,
                cached: false,
                library: self.pods[pod].library,
                wire: l.wire,
                causes,
            });
            // A thread is free: the next waiting lookup.
            if let Some((asked, name)) = self.pods[pod].waiting.pop_front() {
                for port in std::mem::take(&mut closed) {
                    self.close_pod_socket(pod, port);
                }
                return self.begin_lookup(pod, name, asked);
            }
        }
        for port in closed {
            self.close_pod_socket(pod, port);
        }
        let Some(l) = self.pods[pod].lookups.get_mut(&id) else { return };
        let next = l.model.poll_timeout();
        if next != l.timer {
            l.timer = next;
            if let Some(at) = next {
                self.push(at, Ev::ClientTimer { pod, lookup: id, at });
            }
        }
    }

    /// A pod closes a socket: its port is free again; a TCP connection on it ends with FIN/ACK.
    pub(super) fn close_pod_socket(&mut self, pod: PodId, port: u16) {
        let p = &mut self.pods[pod];
        p.ports.release(port);
        p.port_owner.remove(&port);
        let local = SocketAddr::new(p.ip, port);
        let node = p.node;
        let conns: Vec<(SocketAddr, SocketAddr)> =
            self.tcp.range((local, SocketAddr::from(([0, 0, 0, 0], 0)))..).take_while(|(k, _)| k.0 == local).map(|(k, _)| *k).collect();
        for key in conns {
            self.tcp.remove(&key);
            self.net.packets += 2;
            let t = Tuple { proto: Proto::Tcp, src: key.0, dst: key.1 };
            let now = self.now;
            let ct = &mut self.nodes[node].ct;
            if let Some((orig, _)) = ct.lookup(now, &t) {
                ct.tcp_event(now, orig, TcpFlag::Fin, false);
                ct.tcp_event(now, orig, TcpFlag::Fin, true);
            }
        }
    }

    /// An application request over an established TCP connection to a pod on a random node: the
    /// request and the response segment, each retransmitted after Linux's RTO (200 ms minimum,
    /// doubling) when lost, given up after 15 retransmissions (tcp_retries2).
    pub(super) fn app_request(&mut self, pod: PodId) {
        let from = self.pods[pod].node;
        let to = self.rng.usize(..self.nodes.len());
        let one_way = self.latency(from, to);
        let mut total = Duration::ZERO;
        let mut ok = true;
        for _ in 0..2 {
            let mut rto = Duration::from_millis(200);
            let mut tries = 0;
            while self.lost(from, to) {
                tries += 1;
                if tries > 15 {
                    ok = false;
                    break;
                }
                total += rto;
                rto = (rto * 2).min(Duration::from_secs(120));
            }
            total += one_way;
        }
        self.report.app.push(AppRequest { start: self.now, latency: total, completed: ok });
    }

    /// The destination REJECTed (a Service without endpoints): ICMP port unreachable to the socket.
    pub(super) fn refused(&mut self, pod: PodId, port: u16) {
        for (id, socket) in self.port_lookups(pod, port) {
            if let Some(l) = self.pods[pod].lookups.get_mut(&id) {
                l.model.handle_refused(self.now, socket);
                self.drive_lookup(pod, id);
            }
        }
    }

    /// The lookups a datagram on `port` is for, and their socket id.
    pub(super) fn port_lookups(&self, pod: PodId, port: u16) -> Vec<(u64, u32)> {
        let p = &self.pods[pod];
        match p.port_owner.get(&port) {
            Some(&PROCESS_OWNER) => match p.proc_sockets.iter().find(|(_, q)| **q == port) {
                Some((&socket, _)) => p.lookups.keys().map(|&id| (id, socket)).collect(),
                None => Vec::new(),
            },
            Some(&id) => p
                .lookups
                .get(&id)
                .and_then(|l| l.sockets.iter().find(|(_, q)| **q == port))
                .map(|(&s, _)| vec![(id, s)])
                .unwrap_or_default(),
            None => Vec::new(),
        }
    }

    pub(super) fn at_pod(&mut self, pod: PodId, pkt: Packet) {
        if self.nodes[self.pods[pod].node].down {
            return;
        }
        // Every library takes an answer only from the nameserver it asked: glibc, Go and c-ares
        // connect their UDP sockets (the kernel drops other sources), musl and evdns compare the
        // source with their nameservers; a TCP segment from an unknown address gets a reset. An
        // answer whose conntrack entry went away on its way back keeps the replica's own address
        // and is lost (sources.md#stale-udp-conntrack).
        if pkt.src.port() != 53 || !self.pods[pod].rc.nameservers.contains(&pkt.src.ip()) {
            self.net.dropped_unnat += 1;
            self.blame(pkt.dst, crate::cause::Cause::Packet(crate::cause::Drop::Unnat));
            return;
        }
        // An error or truncated answer is a cause whatever the library does next (retry, TCP, fail).
        if pkt.payload.len() >= 12 && pkt.payload[2] & 0x80 != 0 {
            if matches!(pkt.payload[3] & 0x0f, 2 | 5) {
                self.blame(pkt.dst, crate::cause::Cause::Answer(pkt.payload[3] & 0x0f));
            } else if pkt.payload[2] & 0x02 != 0 && pkt.transport == crate::client::Transport::Udp {
                self.blame(pkt.dst, crate::cause::Cause::Truncated);
            }
        }
        for (id, socket) in self.port_lookups(pod, pkt.dst.port()) {
            if let Some(l) = self.pods[pod].lookups.get_mut(&id) {
                l.model.handle_answer(self.now, socket, pkt.transport, &pkt.payload);
                if let Some(b) = Wire::rcode(&pkt.payload) {
                    self.wire.rcodes[b] += 1;
                }
                self.drive_lookup(pod, id);
            }
        }
    }
}

/// Whether a dotted name (trailing dot or not, any case) is the cluster domain or under it.
pub(super) fn in_zone(name: &str, domain: &str) -> bool {
    let name = name.trim_end_matches('.').as_bytes();
    let domain = domain.trim_end_matches('.').as_bytes();
    name.len() >= domain.len()
        && name[name.len() - domain.len()..].eq_ignore_ascii_case(domain)
        && (name.len() == domain.len() || name[name.len() - domain.len() - 1] == b'.')
}
