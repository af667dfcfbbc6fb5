//! The netfilter connection-tracking table (nf_conntrack), as far as DNS needs it.
//!
//! Sources: sources.md#conntrack-race (the insertion race), sources.md#conntrack-udp-timeouts (UDP timeouts, the 2 s rule, ASSURED),
//! sources.md#conntrack-table-size (table size and the full-table behaviour). Kernel-version switches:
//!
//! | kernel | change | commit |
//! |---|---|---|
//! | 4.19 | race 1 (same DNAT target) resolved: the loser adopts the winner's entry | ed07d9a021df |
//! | 5.0 | race 2 (reply tuple taken) resolved | 4e35c1cb9460 |
//! | 5.0 | UDP stream timeout 180 s → 120 s; stream only after 2 s | 294304e4c522, d535c8a69c19 |
//! | 5.6 | race 3 (different DNAT targets): loser inserted with IPS_NAT_CLASH | bb89abe52bf4 series [unverified version] |
//! | 5.16 | ASSURED only in stream mode | b7b1d02fc439 |
//!
//! A packet goes through `begin` (lookup, NAT decision: PREROUTING/OUTPUT) and, for the first packet of
//! a flow, `confirm` (insertion: POSTROUTING/INPUT). Two packets of one new flow processed concurrently
//! on two CPUs both `begin` before either `confirm`s: that is the insertion race.

use std::collections::{BTreeMap, HashMap, VecDeque};

use foldhash::fast::FixedState;
use std::net::SocketAddr;
use std::time::Duration;

use crate::{Kernel, Proto};

/// Original-direction 5-tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tuple {
    pub proto: Proto,
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

impl Tuple {
    pub fn udp(src: SocketAddr, dst: SocketAddr) -> Tuple {
        Tuple { proto: Proto::Udp, src, dst }
    }
    pub fn reversed(&self) -> Tuple {
        Tuple { proto: self.proto, src: self.dst, dst: self.src }
    }
}

/// Timeouts and sizes. Defaults are the kernel's and kube-proxy's (sources.md#conntrack-udp-timeouts, sources.md#conntrack-table-size).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    pub kernel: Kernel,
    /// nf_conntrack_max.
    pub max: usize,
    /// nf_conntrack_udp_timeout: 30 s.
    pub udp_timeout: Duration,
    /// nf_conntrack_udp_timeout_stream: 180 s before 5.0, 120 s since.
    pub udp_stream_timeout: Duration,
    /// Time after creation before a replied UDP flow may enter stream mode (5.0+): 2 s.
    pub udp_stream_grace: Duration,
    /// kube-proxy --conntrack-tcp-timeout-established: 24 h.
    pub tcp_established: Duration,
    /// TCP SYN_SENT / SYN_RECV: 120 s / 60 s in the kernel; one value here.
    pub tcp_handshake: Duration,
    /// TIME_WAIT 120 s.
    pub tcp_time_wait: Duration,
    /// kube-proxy --conntrack-tcp-timeout-close-wait: 1 h.
    pub tcp_close_wait: Duration,
    /// A network-policy agent NFQUEUEs the first packets of new flows. Before 8af79d3edb5f
    /// ("nfnetlink_queue: remove old clash resolution logic", 6.12) the queue's own clash handling
    /// drops the loser of every insertion race, whatever the kernel fixed since; from 6.12 the
    /// loser goes through the usual clash resolution (sources.md#conntrack-race,
    /// sources.md#incident-s20; netfilter bugzilla 1766). How often queued pairs race is the
    /// simulator's (measured by `kernel-check`).
    pub nfqueue: bool,
}

impl Config {
    /// The defaults for a kernel and a table size.
    pub fn for_kernel(kernel: Kernel, max: usize) -> Config {
        Config {
            kernel,
            max,
            udp_timeout: Duration::from_secs(30),
            udp_stream_timeout: Duration::from_secs(if kernel.at_least(5, 0) { 120 } else { 180 }),
            udp_stream_grace: Duration::from_secs(2),
            tcp_established: Duration::from_secs(24 * 3600),
            tcp_handshake: Duration::from_secs(120),
            tcp_time_wait: Duration::from_secs(120),
            tcp_close_wait: Duration::from_secs(3600),
            nfqueue: false,
        }
    }
}

/// kube-proxy's `getConntrackMax`: max(max_per_core × CPUs, min), defaults 32768 and 131072
/// (sources.md#conntrack-table-size). A node with ≤ 4 CPUs gets 131072.
pub fn kube_proxy_max(cpus: usize, max_per_core: usize, min: usize) -> usize {
    if max_per_core == 0 {
        return min;
    }
    (max_per_core * cpus).max(min)
}

/// TCP connection states the model distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    Handshake,
    Established,
    /// One side sent FIN.
    Closing,
    TimeWait,
}

/// What a TCP packet is, for state tracking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpFlag {
    Syn,
    SynAck,
    Ack,
    Fin,
    Rst,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub orig: Tuple,
    /// The tuple replies carry (after DNAT: from the real backend).
    pub reply: Tuple,
    pub created: Duration,
    pub expires: Duration,
    pub seen_reply: bool,
    pub assured: bool,
    /// Inserted through race-3 clash resolution (IPS_NAT_CLASH): never ASSURED, times out soon.
    pub nat_clash: bool,
    pub tcp: Option<TcpState>,
}

impl Entry {
    /// The DNAT target of this flow (the reply's source).
    pub fn nat_target(&self) -> SocketAddr {
        self.reply.src
    }
}

/// Counters as `conntrack -S` and /proc/net/stat/nf_conntrack show them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub insert_failed: u64,
    pub drop: u64,
    pub early_drop: u64,
    pub inserted: u64,
    /// Entries removed by a `conntrack -D` (kube-proxy cleanup).
    pub deleted: u64,
    pub expired: u64,
}

/// A packet's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver to this destination (DNAT applied for original-direction packets; for replies, the
    /// address the reply is un-NATed to, i.e. the original destination).
    Accept { to: SocketAddr },
    /// Dropped in `__nf_conntrack_confirm` (insertion race lost): `insert_failed` counted.
    InsertFailed,
    /// Table full and nothing early-droppable: "nf_conntrack: table full, dropping packet".
    TableFull,
}

/// A packet between `begin` and `confirm`: an unconfirmed new entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub orig: Tuple,
    pub target: SocketAddr,
}

/// Which race a concurrent pair hit (sources.md#conntrack-race), decided by the simulator from timing and the
/// two DNAT choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Race {
    /// Same target, both entries identical: fixed in 4.19.
    SameTarget,
    /// Same target, but the first was confirmed before the second's NAT: reply tuple taken; fixed in 5.0.
    ReplyTupleTaken,
    /// Different targets: fixed by IPS_NAT_CLASH in ~5.6.
    DifferentTargets,
}

impl Race {
    /// Whether this kernel drops the losing packet of this race.
    pub fn drops_on(self, kernel: Kernel) -> bool {
        match self {
            Race::SameTarget => !kernel.at_least(4, 19),
            Race::ReplyTupleTaken => !kernel.at_least(5, 0),
            Race::DifferentTargets => !kernel.at_least(5, 6),
        }
    }
}

/// A tuple as a map key: three integers compare faster than `SocketAddr`'s enum ordering (the
/// lookup is the simulator's hottest table operation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Key(u128, u128, u64);

impl Key {
    fn of(t: &Tuple) -> Key {
        let ip = |a: &SocketAddr| match a.ip() {
            std::net::IpAddr::V4(v) => (u128::from(u32::from(v)), 0u64),
            std::net::IpAddr::V6(v) => (u128::from(v), 1u64),
        };
        let ((s, s6), (d, d6)) = (ip(&t.src), ip(&t.dst));
        let proto = match t.proto {
            Proto::Udp => 0u64,
            Proto::Tcp => 1,
        };
        Key(s, d, proto << 40 | s6 << 33 | d6 << 32 | u64::from(t.src.port()) << 16 | u64::from(t.dst.port()))
    }
}

pub struct Conntrack {
    pub cfg: Config,
    /// Looked up, never iterated (iteration goes through `by_expiry`, so no order depends on hashing;
    /// the hasher is fixed besides).
    entries: HashMap<Key, Entry, FixedState>,
    /// Reply tuple → original tuple.
    replies: HashMap<Key, Tuple, FixedState>,
    /// (expires, original tuple), for expiry and early drop.
    by_expiry: ExpiryQueues,
    /// The same for non-ASSURED entries: what early drop may evict, without a scan.
    unassured: ExpiryQueues,
    /// Race-3 losers (IPS_NAT_CLASH): inserted in the reply direction only, so their replies are
    /// un-NATed; reply tuple → (original tuple, its own target, expiry). Never ASSURED, a fixed 1 s timeout.
    clashes: BTreeMap<Key, (Tuple, SocketAddr, Duration)>,
    pub counters: Counters,
}

/// The fixed timeout of an IPS_NAT_CLASH entry (6a757c07e51f, sources.md#conntrack-race).
pub const NAT_CLASH_TIMEOUT: Duration = Duration::from_secs(1);

impl Conntrack {
    pub fn new(cfg: Config) -> Conntrack {
        Conntrack {
            cfg,
            entries: HashMap::with_hasher(FixedState::with_seed(0)),
            replies: HashMap::with_hasher(FixedState::with_seed(0)),
            by_expiry: ExpiryQueues::default(),
            unassured: ExpiryQueues::default(),
            clashes: BTreeMap::new(),
            counters: Counters::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, orig: &Tuple) -> Option<&Entry> {
        self.entries.get(&Key::of(orig))
    }

    /// Every entry, soonest to expire first (ties by tuple).
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        let mut live: Vec<(Duration, Key)> =
            self.by_expiry.positions().filter(|(at, k)| self.entries.get(k).is_some_and(|e| e.expires == *at)).collect();
        live.sort_unstable();
        // A flow refreshed twice in one instant has its expiry position twice.
        live.dedup();
        live.into_iter().filter_map(|(_, k)| self.entries.get(&k))
    }

    /// The entries whose original destination is one of `dsts` (what `conntrack -L -p udp
    /// --orig-dst VIP` lists), ordered by original tuple.
    pub fn flows_to(&self, proto: Proto, dsts: &[SocketAddr]) -> Vec<&Entry> {
        let mut v: Vec<&Entry> = self.entries().filter(|e| e.orig.proto == proto && dsts.contains(&e.orig.dst)).collect();
        v.sort_unstable_by_key(|e| e.orig);
        v
    }

    /// Removes every entry that expired by `now` (the kernel's gc worker).
    pub fn expire(&mut self, now: Duration) {
        if self.by_expiry.earliest > now {
            return;
        }
        while let Some((q, (at, k))) = self.by_expiry.first() {
            if at > now {
                break;
            }
            // Pop first, so the loop ends even if the indexes ever disagreed.
            self.by_expiry.pop(q);
            // A position left behind by a later touch is not this entry's expiry.
            if self.entries.get(&k).is_some_and(|e| e.expires == at) && self.remove_key(&k) {
                self.counters.expired += 1;
            }
        }
    }

    fn set_expiry(&mut self, orig: Tuple, now: Duration, expires: Duration) {
        let k = Key::of(&orig);
        if let Some(e) = self.entries.get_mut(&k) {
            e.expires = expires;
            let assured = e.assured;
            let timeout = expires.saturating_sub(now);
            self.by_expiry.push(timeout, expires, k);
            if !assured {
                self.unassured.push(timeout, expires, k);
            }
        }
        // Positions left behind by touches are swept when they outnumber the entries.
        if self.by_expiry.len() > 4 * self.entries.len() + 1024 {
            let entries = &self.entries;
            self.by_expiry.retain(|at, k| entries.get(k).is_some_and(|e| e.expires == at));
            self.unassured.retain(|at, k| entries.get(k).is_some_and(|e| e.expires == at && !e.assured));
        }
    }

    /// Looks up a packet's flow. `Some((orig, is_reply))` if it belongs to a confirmed entry.
    pub fn lookup(&mut self, now: Duration, t: &Tuple) -> Option<(Tuple, bool)> {
        self.expire(now);
        let k = Key::of(t);
        if self.entries.contains_key(&k) {
            return Some((*t, false));
        }
        if let Some(o) = self.replies.get(&k) {
            return Some((*o, true));
        }
        let &(orig, _, expires) = self.clashes.get(&k)?;
        // Before c46172147ebb (5.9) the clash entry was deleted by its first reply.
        if expires <= now || !self.cfg.kernel.at_least(5, 9) {
            self.clashes.remove(&k);
        }
        (expires > now).then_some((orig, true))
    }

    /// Race-3 loser entries alive now (reply direction only).
    pub fn clash_entries(&self, now: Duration) -> usize {
        self.clashes.values().filter(|c| c.2 > now).count()
    }

    /// First half of a packet of a new flow: no confirmed entry exists; the NAT target is decided
    /// (DNAT by the caller, or the original destination).
    pub fn begin(&self, orig: Tuple, target: SocketAddr) -> Pending {
        Pending { orig, target }
    }

    /// Second half: inserts the entry. `race` says this packet lost an insertion race against a
    /// concurrent packet of the same flow (the simulator decides from timing); then the kernel version
    /// decides whether it is dropped (sources.md#conntrack-race).
    pub fn confirm(&mut self, now: Duration, p: Pending, race: Option<Race>, early_drop_rng: &mut fastrand::Rng) -> Verdict {
        self.expire(now);
        if let Some(race) = race {
            if race.drops_on(self.cfg.kernel) || (self.cfg.nfqueue && !self.cfg.kernel.at_least(6, 12)) {
                self.counters.insert_failed += 1;
                self.counters.drop += 1;
                return Verdict::InsertFailed;
            }
            if let Some(existing) = self.entries.get(&Key::of(&p.orig)) {
                let winner_target = existing.nat_target();
                return match race {
                    // The loser adopts the winner's entry (ed07d9a021df / 4e35c1cb9460).
                    Race::SameTarget | Race::ReplyTupleTaken => {
                        self.touch(now, p.orig, false);
                        Verdict::Accept { to: winner_target }
                    }
                    // IPS_NAT_CLASH: the loser keeps its own target and is inserted for its replies
                    // only, never ASSURED, 1 s (6a757c07e51f).
                    Race::DifferentTargets => {
                        let reply = Tuple { proto: p.orig.proto, src: p.target, dst: p.orig.src };
                        if !self.replies.contains_key(&Key::of(&reply)) {
                            if self.clashes.len() >= 64 {
                                self.clashes.retain(|_, c| c.2 > now);
                            }
                            self.clashes.insert(Key::of(&reply), (p.orig, p.target, now + NAT_CLASH_TIMEOUT));
                        }
                        Verdict::Accept { to: p.target }
                    }
                };
            }
        }
        if let Some(to) = self.entries.get(&Key::of(&p.orig)).map(Entry::nat_target) {
            // Confirmed meanwhile by the same packet stream (not a race): use it.
            self.touch(now, p.orig, false);
            return Verdict::Accept { to };
        }
        if self.entries.len() >= self.cfg.max && !self.early_drop(early_drop_rng) {
            self.counters.drop += 1;
            return Verdict::TableFull;
        }
        let reply = Tuple { proto: p.orig.proto, src: p.target, dst: p.orig.src };
        let e = Entry {
            orig: p.orig,
            reply,
            created: now,
            expires: now,
            seen_reply: false,
            assured: false,
            nat_clash: false,
            tcp: (p.orig.proto == Proto::Tcp).then_some(TcpState::Handshake),
        };
        self.entries.insert(Key::of(&p.orig), e);
        self.replies.insert(Key::of(&reply), p.orig);
        self.counters.inserted += 1;
        let timeout = match p.orig.proto {
            Proto::Udp => self.cfg.udp_timeout,
            Proto::Tcp => self.cfg.tcp_handshake,
        };
        self.set_expiry(p.orig, now, now + timeout);
        Verdict::Accept { to: p.target }
    }

    /// A full table evicts one non-ASSURED entry (the one closest to expiry) before refusing a new
    /// flow (sources.md#conntrack-table-size). The kernel scans hash buckets; which one goes is not modelled exactly.
    fn early_drop(&mut self, _rng: &mut fastrand::Rng) -> bool {
        // The soonest-expiring position that is still a non-ASSURED entry's expiry.
        let mut victim = None;
        while let Some((q, (at, k))) = self.unassured.first() {
            if self.entries.get(&k).is_some_and(|e| e.expires == at && !e.assured) {
                victim = Some(k);
                break;
            }
            self.unassured.pop(q);
        }
        match victim {
            Some(t) => {
                self.remove_key(&t);
                self.counters.early_drop += 1;
                true
            }
            None => false,
        }
    }

    /// A packet of a confirmed flow: refresh its timeout with the kernel's UDP rules
    /// (`nf_conntrack_udp_packet`): the decision uses SEEN_REPLY as it was *before* this packet, and
    /// SEEN_REPLY is set after a reply is processed (sources.md#conntrack-udp-timeouts).
    pub fn touch(&mut self, now: Duration, orig: Tuple, is_reply: bool) {
        let cfg = self.cfg;
        let Some(e) = self.entries.get_mut(&Key::of(&orig)) else { return };
        let timeout = match orig.proto {
            Proto::Udp => {
                let t = if e.seen_reply {
                    let stream = if cfg.kernel.at_least(5, 0) {
                        // d535c8a69c19: stream only once the flow is older than 2 s.
                        now > e.created + cfg.udp_stream_grace
                    } else {
                        true
                    };
                    // ASSURED: any replied flow before 5.16, only stream mode since (b7b1d02fc439).
                    if !e.nat_clash && (stream || !cfg.kernel.at_least(5, 16)) {
                        e.assured = true;
                    }
                    if stream { cfg.udp_stream_timeout } else { cfg.udp_timeout }
                } else {
                    cfg.udp_timeout
                };
                if is_reply {
                    e.seen_reply = true;
                }
                t
            }
            Proto::Tcp => {
                if is_reply {
                    e.seen_reply = true;
                }
                match e.tcp.unwrap_or(TcpState::Handshake) {
                    TcpState::Handshake => cfg.tcp_handshake,
                    TcpState::Established => cfg.tcp_established,
                    TcpState::Closing => cfg.tcp_close_wait,
                    TcpState::TimeWait => cfg.tcp_time_wait,
                }
            }
        };
        self.set_expiry(orig, now, now + timeout);
    }

    /// Updates a TCP flow's state for a flag and refreshes it.
    pub fn tcp_event(&mut self, now: Duration, orig: Tuple, flag: TcpFlag, is_reply: bool) {
        if let Some(e) = self.entries.get_mut(&Key::of(&orig)) {
            let st = e.tcp.unwrap_or(TcpState::Handshake);
            e.tcp = Some(match (st, flag) {
                (_, TcpFlag::Rst) => TcpState::TimeWait,
                (TcpState::Handshake, TcpFlag::Ack) if e.seen_reply => {
                    e.assured = true;
                    TcpState::Established
                }
                (TcpState::Established, TcpFlag::Fin) => TcpState::Closing,
                (TcpState::Closing, TcpFlag::Fin) | (TcpState::Closing, TcpFlag::Ack) => TcpState::TimeWait,
                (s, _) => s,
            });
        }
        self.touch(now, orig, is_reply);
    }

    /// `conntrack -D --orig-dst VIP --dst-nat TARGET_IP -p udp` (kube-proxy ClearEntriesForNAT, sources.md#stale-udp-conntrack).
    /// Returns how many entries went.
    pub fn delete_nat(&mut self, vip: SocketAddr, target_ip: std::net::IpAddr, proto: Proto) -> usize {
        self.delete_where(|o, to| o.proto == proto && o.dst.ip() == vip.ip() && to.ip() == target_ip)
    }

    /// `conntrack -D --orig-dst VIP -p udp` (ClearEntriesForIP, on a service going from 0 to ≥1 endpoints).
    pub fn delete_dst(&mut self, vip_ip: std::net::IpAddr, proto: Proto) -> usize {
        self.delete_where(|o, _| o.proto == proto && o.dst.ip() == vip_ip)
    }

    /// Points a flow's replies at a new destination (IPVS rescheduled it).
    pub fn retarget(&mut self, orig: Tuple, to: SocketAddr) {
        let Some(e) = self.entries.get_mut(&Key::of(&orig)) else { return };
        let old = e.reply;
        e.reply = Tuple { proto: orig.proto, src: to, dst: orig.src };
        let new = e.reply;
        self.replies.remove(&Key::of(&old));
        self.replies.insert(Key::of(&new), orig);
    }

    /// The reconciler's delete (kube-proxy 1.32+): the service's entries whose reply does not come
    /// from a serving endpoint (pointing at a deleted pod, or not DNATed at all).
    pub fn delete_stale(&mut self, vip: SocketAddr, serving: &[SocketAddr], proto: Proto) -> usize {
        self.delete_where(|o, to| o.proto == proto && o.dst == vip && !serving.contains(&to))
    }

    /// Deletes the entries, race-3 clash entries included, whose original tuple and NAT target
    /// `doomed` picks (what `conntrack -D` with filters does); returns how many full entries went.
    fn delete_where(&mut self, doomed: impl Fn(&Tuple, SocketAddr) -> bool) -> usize {
        let gone: Vec<Tuple> = self.entries().filter(|e| doomed(&e.orig, e.nat_target())).map(|e| e.orig).collect();
        self.clashes.retain(|_, c| !doomed(&c.0, c.1));
        for t in &gone {
            if self.remove_entry(t) {
                self.counters.deleted += 1;
            }
        }
        gone.len()
    }

    /// Non-ASSURED entries (what early drop can evict).
    pub fn unassured(&self) -> usize {
        self.entries.values().filter(|e| !e.assured).count()
    }

    /// Removes an entry from the table and every index. Returns whether it was there.
    fn remove_entry(&mut self, t: &Tuple) -> bool {
        self.remove_key(&Key::of(t))
    }

    fn remove_key(&mut self, k: &Key) -> bool {
        let Some(e) = self.entries.remove(k) else { return false };
        // Its index positions go stale and are skipped or swept.
        self.replies.remove(&Key::of(&e.reply));
        true
    }
}

/// Expiry times, one FIFO queue per timeout in use. A queue fed `now + timeout` by a clock that only
/// moves forward is sorted by construction, so refreshing a flow is a push at the back rather than a
/// remove and an insert in a tree (the simulator refreshes an entry for every packet). A refreshed,
/// removed or newly ASSURED entry leaves its old position behind; readers skip positions that are no
/// longer an entry's expiry, and `Conntrack::set_expiry` sweeps them when they pile up.
#[derive(Debug)]
struct ExpiryQueues {
    queues: Vec<(Duration, VecDeque<(Duration, Key)>)>,
    positions: usize,
    /// No position is earlier (`Duration::MAX` when empty): `expire` returns at once before it.
    earliest: Duration,
}

impl Default for ExpiryQueues {
    fn default() -> ExpiryQueues {
        ExpiryQueues { queues: Vec::new(), positions: 0, earliest: Duration::MAX }
    }
}

impl ExpiryQueues {
    fn push(&mut self, timeout: Duration, at: Duration, k: Key) {
        let i = match self.queues.iter().position(|(t, _)| *t == timeout) {
            Some(i) => i,
            None => {
                self.queues.push((timeout, VecDeque::new()));
                self.queues.len() - 1
            }
        };
        let q = &mut self.queues[i].1;
        // Sorted by (at, key): at the back unless the clock went backwards or at ties by key.
        if q.back().is_none_or(|b| *b <= (at, k)) {
            q.push_back((at, k));
        } else {
            let pos = q.partition_point(|x| *x <= (at, k));
            q.insert(pos, (at, k));
        }
        self.positions += 1;
        self.earliest = self.earliest.min(at);
    }

    /// The smallest position over every queue: (queue, position).
    fn first(&self) -> Option<(usize, (Duration, Key))> {
        self.queues.iter().enumerate().filter_map(|(i, (_, q))| q.front().map(|f| (i, *f))).min_by_key(|(_, f)| *f)
    }

    fn pop(&mut self, q: usize) {
        if self.queues[q].1.pop_front().is_some() {
            self.positions -= 1;
        }
        self.earliest = self.first().map_or(Duration::MAX, |(_, (at, _))| at);
    }

    fn len(&self) -> usize {
        self.positions
    }

    fn positions(&self) -> impl Iterator<Item = (Duration, Key)> + '_ {
        self.queues.iter().flat_map(|(_, q)| q.iter().copied())
    }

    fn retain(&mut self, mut keep: impl FnMut(Duration, &Key) -> bool) {
        for (_, q) in &mut self.queues {
            q.retain(|(at, k)| keep(*at, k));
        }
        self.positions = self.queues.iter().map(|(_, q)| q.len()).sum();
        self.earliest = self.first().map_or(Duration::MAX, |(_, (at, _))| at);
    }
}

#[cfg(test)]
mod tests;
