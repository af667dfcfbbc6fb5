//! The `cache` plugin: answers stored as wire bytes, served by patching ID, case, TTLs in place.
//!
//! Semantics follow CoreDNS's cache (sources.md#coredns-cache):
//! - two parts, success and denial, each with its own capacity (default 9984, minimum 1024), max TTL
//!   (3600 s / 1800 s, `cache N` caps both) and min TTL (5 s);
//! - a full part evicts a random entry (CoreDNS `plugin/pkg/cache`), drawn from the seeded RNG;
//! - truncated answers, errors other than SERVFAIL and NXDOMAIN/NODATA without an SOA are not stored;
//!   SERVFAIL is stored for `servfail` (5 s);
//! - every record of a served answer carries the entry's remaining TTL (CoreDNS `item.toMsg`),
//!   or the original TTLs with `keepttl`;
//! - `serve_stale` answers expired entries with `response_ttl` and asks for a refresh;
//!   `prefetch` asks for a refresh of popular entries near expiry.
//!
//! Memory: an entry is the response bytes, its record spans (16 bytes each) and ~80 bytes of
//! bookkeeping plus the key (qname + 5 bytes); `Cache::bytes_used` reports it.

use std::time::Duration;

use indexmap::IndexMap;

use crate::config::CacheConfig;
use crate::wire::{self, Layout, RecordSpan};

/// A stored answer, client-independent: ID 0, no OPT record, question lowercased.
#[derive(Debug, Clone)]
pub struct Entry {
    pub msg: Box<[u8]>,
    pub spans: Box<[RecordSpan]>,
    pub question_end: u32,
    pub stored_at: Duration,
    /// Effective TTL in seconds, after the min/max clamp.
    pub ttl: u32,
    pub hits: u32,
    pub last_hit: Duration,
    /// A refresh (prefetch or stale) is under way.
    pub refreshing: bool,
}

impl Entry {
    /// Builds an entry from a response without OPT. The caller chose the TTL.
    pub fn new(msg: Vec<u8>, layout: &Layout, now: Duration, ttl: u32) -> Entry {
        Entry {
            msg: msg.into_boxed_slice(),
            spans: layout.records.clone().into_boxed_slice(),
            question_end: layout.question_end as u32,
            stored_at: now,
            ttl,
            hits: 0,
            last_hit: now,
            refreshing: false,
        }
    }

    pub fn rcode(&self) -> u8 {
        wire::flags::rcode(&self.msg)
    }

    fn expires_at(&self) -> Duration {
        self.stored_at + Duration::from_secs(u64::from(self.ttl))
    }
}

/// What a lookup found.
#[derive(Debug)]
pub enum Hit {
    /// Fresh: TTL to serve. `refresh` is set when prefetch wants the entry re-fetched now.
    Fresh { ttl: u32, refresh: bool },
    /// Expired but within `serve_stale`: serve with this TTL and refresh.
    Stale { ttl: u32, refresh: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartKind {
    Success,
    Denial,
}

struct Part {
    map: IndexMap<Box<[u8]>, Entry, foldhash::fast::RandomState>,
    capacity: usize,
}

/// Cache key: DO and CD bits, qtype, qclass, lowercased qname (CoreDNS keys on the same fields).
pub fn key(buf: &mut Vec<u8>, qname_lower: &[u8], qtype: u16, qclass: u16, dnssec_ok: bool, cd: bool) {
    buf.clear();
    buf.push(u8::from(dnssec_ok) | (u8::from(cd) << 1));
    buf.extend_from_slice(&qtype.to_be_bytes());
    buf.extend_from_slice(&qclass.to_be_bytes());
    buf.extend_from_slice(qname_lower);
}

pub struct Cache {
    pub cfg: CacheConfig,
    success: Part,
    denial: Part,
    pub evictions: u64,
}

/// Counters exported as `coredns_cache_*`.
#[derive(Debug, Default, Clone, Copy)]
pub struct CacheStats {
    pub hits_success: u64,
    pub hits_denial: u64,
    pub misses: u64,
    pub served_stale: u64,
    pub prefetches: u64,
}

impl Cache {
    pub fn new(cfg: CacheConfig) -> Cache {
        let part = |capacity| Part { map: IndexMap::with_hasher(foldhash::fast::RandomState::default()), capacity };
        Cache { success: part(cfg.success.capacity), denial: part(cfg.denial.capacity), cfg, evictions: 0 }
    }

    /// Whether this cache covers `qname` at all (its zones), and whether each part is disabled there.
    pub fn covers(&self, qname: &[u8]) -> bool {
        self.cfg.zones.iter().any(|z| wire::is_subdomain(qname, z))
    }

    fn disabled(&self, kind: PartKind, qname: &[u8]) -> bool {
        let zones = match kind {
            PartKind::Success => &self.cfg.disable_success,
            PartKind::Denial => &self.cfg.disable_denial,
        };
        zones.iter().any(|z| wire::is_subdomain(qname, z))
    }

    pub fn len(&self, kind: PartKind) -> usize {
        match kind {
            PartKind::Success => self.success.map.len(),
            PartKind::Denial => self.denial.map.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.success.map.is_empty() && self.denial.map.is_empty()
    }

    /// Heap bytes held by entries (keys, messages, spans, and the map's slots).
    pub fn bytes_used(&self) -> usize {
        let slot = std::mem::size_of::<(Box<[u8]>, Entry)>() + 2 * std::mem::size_of::<usize>();
        [&self.success, &self.denial]
            .iter()
            .flat_map(|p| p.map.iter())
            .map(|(k, e)| k.len() + e.msg.len() + e.spans.len() * std::mem::size_of::<RecordSpan>() + slot)
            .sum()
    }

    /// Looks up `key` for `qname`; on a hit returns the entry and what to do with it.
    pub fn lookup(&mut self, key: &[u8], qname: &[u8], now: Duration) -> Option<(&Entry, Hit, PartKind)> {
        let stale = self.cfg.serve_stale;
        let prefetch = self.cfg.prefetch;
        let keepttl = self.cfg.keepttl;
        let mut found = None;
        for kind in [PartKind::Success, PartKind::Denial] {
            if self.disabled(kind, qname) {
                continue;
            }
            if let Some(idx) = self.part(kind).map.get_index_of(key) {
                found = Some((kind, idx));
                break;
            }
        }
        let (kind, idx) = found?;
        let part = self.part_mut(kind);
        let e = &mut part.map[idx];
        let expires = e.expires_at();
        if now < expires {
            let remaining = (expires - now).as_secs() as u32;
            // prefetch: seen AMOUNT times with no gap >= DURATION, and less than PERCENTAGE of the
            // TTL left (or 1 s), sources.md#coredns-cache.
            let mut refresh = false;
            if let Some(p) = prefetch {
                if now.saturating_sub(e.last_hit) >= p.duration {
                    e.hits = 0;
                }
                e.hits += 1;
                e.last_hit = now;
                let threshold = (u64::from(e.ttl) * u64::from(p.percentage) / 100).max(1);
                if e.hits >= p.amount && u64::from(remaining) <= threshold && !e.refreshing {
                    e.refreshing = true;
                    refresh = true;
                }
            }
            let ttl = if keepttl { e.ttl } else { remaining };
            return Some((&part.map[idx], Hit::Fresh { ttl, refresh }, kind));
        }
        if let Some(s) = stale
            && now < expires + s.duration
        {
            let refresh = !e.refreshing;
            e.refreshing = true;
            return Some((&part.map[idx], Hit::Stale { ttl: s.response_ttl, refresh }, kind));
        }
        part.map.swap_remove_index(idx);
        None
    }

    fn part(&self, kind: PartKind) -> &Part {
        match kind {
            PartKind::Success => &self.success,
            PartKind::Denial => &self.denial,
        }
    }

    fn part_mut(&mut self, kind: PartKind) -> &mut Part {
        match kind {
            PartKind::Success => &mut self.success,
            PartKind::Denial => &mut self.denial,
        }
    }

    /// Decides whether and how long to keep a response (without OPT), then stores it.
    /// Returns the part it went into and the TTL it got, which the answer being stored is then served
    /// with too (CoreDNS applies the capped TTL to the reply that filled the cache).
    pub fn store(
        &mut self,
        key: &[u8],
        qname: &[u8],
        msg: &[u8],
        layout: &Layout,
        now: Duration,
        rng: &mut fastrand::Rng,
    ) -> Option<(PartKind, u32)> {
        if msg.len() < wire::HEADER_LEN || wire::flags::tc(msg) {
            return None;
        }
        let rcode = wire::flags::rcode(msg);
        let answers = layout.counts[0];
        let (kind, ttl) = match rcode {
            wire::RCODE_NOERROR if answers > 0 => {
                // Minimum TTL over answer and authority (CoreDNS minMsgTTL), clamped.
                let min =
                    layout.records.iter().filter(|r| r.section < 2).filter_map(|r| wire::u32_at(msg, r.ttl_at as usize).ok()).min()?;
                let p = self.cfg.success;
                (PartKind::Success, min.clamp(p.min_ttl.min(p.max_ttl), p.max_ttl))
            }
            wire::RCODE_NOERROR | wire::RCODE_NXDOMAIN => {
                // Negative TTL: min(SOA TTL, SOA MINIMUM) (RFC 2308 §5); no SOA, no caching.
                let soa = layout.records.iter().find(|r| r.section == 1 && r.rtype == wire::TYPE_SOA)?;
                let ttl = wire::u32_at(msg, soa.ttl_at as usize).ok()?;
                let minimum = wire::u32_at(msg, soa.end as usize - 4).ok()?;
                let p = self.cfg.denial;
                (PartKind::Denial, ttl.min(minimum).clamp(p.min_ttl.min(p.max_ttl), p.max_ttl))
            }
            wire::RCODE_SERVFAIL if !self.cfg.servfail_ttl.is_zero() => (PartKind::Denial, self.cfg.servfail_ttl.as_secs() as u32),
            _ => return None,
        };
        if self.disabled(kind, qname) {
            return None;
        }
        let mut stored = msg.to_vec();
        wire::flags::set_id(&mut stored, 0);
        let entry = Entry::new(stored, layout, now, ttl);
        // The other part may hold an older answer for the same key.
        let other = match kind {
            PartKind::Success => PartKind::Denial,
            PartKind::Denial => PartKind::Success,
        };
        self.part_mut(other).map.swap_remove(key);
        let part = self.part_mut(kind);
        if let Some(slot) = part.map.get_mut(key) {
            *slot = entry;
            return Some((kind, ttl));
        }
        if part.map.len() >= part.capacity {
            let victim = rng.usize(..part.map.len());
            part.map.swap_remove_index(victim);
            part.map.insert(key.into(), entry);
            self.evictions += 1;
            return Some((kind, ttl));
        }
        part.map.insert(key.into(), entry);
        Some((kind, ttl))
    }

    /// Marks a refresh as finished without a new answer (so a later hit may try again).
    pub fn refresh_failed(&mut self, key: &[u8]) {
        for part in [&mut self.success, &mut self.denial] {
            if let Some(e) = part.map.get_mut(key) {
                e.refreshing = false;
            }
        }
    }
}

/// How to shape an answer for one client.
#[derive(Debug, Clone, Copy)]
pub struct Shape<'q> {
    pub id: u16,
    pub rd: bool,
    /// The asker's question name bytes, case preserved (DNS 0x20).
    pub qname: &'q [u8],
    /// None: keep the stored TTLs.
    pub ttl: Option<u32>,
    /// Largest message the client accepts (None: TCP, no limit).
    pub limit: Option<usize>,
    /// EDNS to echo: our UDP size and the DO bit.
    pub opt: Option<(u16, bool)>,
}

/// Writes `msg` shaped for a client into `out`: the single raw-bytes path for cache hits, forwarded
/// answers and synthesised answers. No allocation when `out` has capacity.
pub fn write_answer(msg: &[u8], spans: &[RecordSpan], shape: &Shape<'_>, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(msg);
    wire::flags::set_id(out, shape.id);
    wire::flags::set_rd(out, shape.rd);
    let qn = shape.qname;
    if out.len() >= wire::HEADER_LEN + qn.len() && out[wire::HEADER_LEN..wire::HEADER_LEN + qn.len()].eq_ignore_ascii_case(qn) {
        out[wire::HEADER_LEN..wire::HEADER_LEN + qn.len()].copy_from_slice(qn);
    }
    if let Some(ttl) = shape.ttl {
        let b = ttl.to_be_bytes();
        for s in spans {
            let at = s.ttl_at as usize;
            if let Some(slot) = out.get_mut(at..at + 4) {
                slot.copy_from_slice(&b);
            }
        }
    }
    if let Some(limit) = shape.limit {
        let room = limit.saturating_sub(if shape.opt.is_some() { wire::OPT_LEN } else { 0 });
        wire::truncate(out, spans, room);
    }
    if let Some((size, dnssec_ok)) = shape.opt {
        wire::push_opt(out, size, dnssec_ok);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CacheConfig, CachePart};
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    fn cfg() -> CacheConfig {
        CacheConfig {
            zones: vec![vec![0]],
            success: CachePart { capacity: 1024, max_ttl: 3600, min_ttl: 5 },
            denial: CachePart { capacity: 1024, max_ttl: 1800, min_ttl: 5 },
            prefetch: None,
            serve_stale: None,
            servfail_ttl: Duration::from_secs(5),
            disable_success: vec![],
            disable_denial: vec![],
            keepttl: false,
        }
    }

    fn answer(name: &str, n: usize, ttl: u32) -> Vec<u8> {
        let mut m = Message::new(0, MessageType::Response, OpCode::Query);
        let owner = Name::from_ascii(name).expect("name");
        m.add_query(Query::query(owner.clone(), RecordType::A));
        for i in 0..n {
            m.add_answer(Record::from_rdata(owner.clone(), ttl, RData::A(A::new(10, 0, (i / 256) as u8, i as u8))));
        }
        m.to_vec().expect("encodes")
    }

    fn nxdomain(name: &str, soa_ttl: u32, minimum: u32) -> Vec<u8> {
        let mut m = Message::new(0, MessageType::Response, OpCode::Query);
        m.metadata.response_code = hickory_proto::op::ResponseCode::NXDomain;
        m.add_query(Query::query(Name::from_ascii(name).expect("name"), RecordType::A));
        let soa = SOA::new(Name::from_ascii("ns.example.").expect("n"), Name::from_ascii("h.example.").expect("n"), 1, 1, 1, 1, minimum);
        m.add_authority(Record::from_rdata(Name::from_ascii("example.").expect("n"), soa_ttl, RData::SOA(soa)));
        m.to_vec().expect("encodes")
    }

    fn store(c: &mut Cache, name: &str, msg: &[u8], now: Duration) -> Option<PartKind> {
        let l = wire::layout(msg).expect("layout");
        let q = wire::name_from_str(name).expect("name");
        let mut k = Vec::new();
        key(&mut k, &q, wire::TYPE_A, wire::CLASS_IN, false, false);
        c.store(&k, &q, msg, &l, now, &mut fastrand::Rng::with_seed(1)).map(|(kind, _)| kind)
    }

    fn lookup_ttl(c: &mut Cache, name: &str, now: Duration) -> Option<u32> {
        let q = wire::name_from_str(name).expect("name");
        let mut k = Vec::new();
        key(&mut k, &q, wire::TYPE_A, wire::CLASS_IN, false, false);
        c.lookup(&k, &q, now).map(|(_, h, _)| match h {
            Hit::Fresh { ttl, .. } | Hit::Stale { ttl, .. } => ttl,
        })
    }

    #[test]
    fn ttls_are_clamped_and_count_down() {
        let mut c = Cache::new(cfg());
        store(&mut c, "a.example.", &answer("a.example.", 1, 2), Duration::ZERO);
        assert_eq!(lookup_ttl(&mut c, "a.example.", Duration::ZERO), Some(5), "min TTL 5 s");
        assert_eq!(lookup_ttl(&mut c, "a.example.", Duration::from_secs(3)), Some(2));
        assert_eq!(lookup_ttl(&mut c, "a.example.", Duration::from_secs(5)), None, "expired");
        let mut capped = cfg();
        capped.success.max_ttl = 30;
        let mut c = Cache::new(capped);
        store(&mut c, "a.example.", &answer("a.example.", 1, 86400), Duration::ZERO);
        assert_eq!(lookup_ttl(&mut c, "a.example.", Duration::ZERO), Some(30));
    }

    #[test]
    fn denial_uses_the_soa_minimum_and_needs_an_soa() {
        let mut c = Cache::new(cfg());
        assert_eq!(store(&mut c, "x.example.", &nxdomain("x.example.", 3600, 60), Duration::ZERO), Some(PartKind::Denial));
        assert_eq!(lookup_ttl(&mut c, "x.example.", Duration::ZERO), Some(60));
        let mut bare = answer("y.example.", 0, 1);
        wire::flags::set_rcode(&mut bare, wire::RCODE_NXDOMAIN);
        assert_eq!(store(&mut c, "y.example.", &bare, Duration::ZERO), None);
    }

    #[test]
    fn truncated_answers_are_never_stored() {
        let mut c = Cache::new(cfg());
        let mut m = answer("t.example.", 3, 60);
        wire::flags::set_tc(&mut m);
        assert_eq!(store(&mut c, "t.example.", &m, Duration::ZERO), None);
    }

    #[test]
    fn serve_stale_answers_after_expiry_with_response_ttl() {
        let mut sc = cfg();
        sc.serve_stale = Some(crate::config::ServeStale { duration: Duration::from_secs(3600), response_ttl: 0 });
        let mut c = Cache::new(sc);
        store(&mut c, "s.example.", &answer("s.example.", 1, 10), Duration::ZERO);
        assert_eq!(lookup_ttl(&mut c, "s.example.", Duration::from_secs(100)), Some(0));
        assert_eq!(lookup_ttl(&mut c, "s.example.", Duration::from_secs(3700)), None);
    }

    #[test]
    fn capacity_bounds_entries_and_memory() {
        let mut c = Cache::new(cfg());
        for i in 0..5000 {
            let n = format!("n{i}.example.");
            store(&mut c, &n, &answer(&n, 1, 60), Duration::ZERO);
        }
        assert_eq!(c.len(PartKind::Success), 1024);
        assert_eq!(c.evictions, 5000 - 1024);
        let per_entry = c.bytes_used() / 1024;
        assert!(per_entry < 400, "bytes per entry {per_entry}");
    }

    #[test]
    fn write_answer_restores_case_and_truncates_with_tc() {
        let msg = answer("big.example.", 40, 60);
        let l = wire::layout(&msg).expect("layout");
        let mut asker = wire::name_from_str("big.example.").expect("n");
        asker[1] = b'B';
        let mut out = Vec::new();
        let shape = Shape { id: 7, rd: true, qname: &asker, ttl: Some(42), limit: Some(512), opt: None };
        write_answer(&msg, &l.records, &shape, &mut out);
        assert!(out.len() <= 512);
        assert!(wire::flags::tc(&out));
        assert_eq!(wire::flags::id(&out), 7);
        assert_eq!(out[13], b'B');
        let parsed = Message::from_vec(&out).expect("still a valid message");
        assert!(parsed.answers.len() < 40 && !parsed.answers.is_empty());
        assert!(parsed.answers.iter().all(|r| r.ttl == 42));
        let shape = Shape { limit: None, ..shape };
        write_answer(&msg, &l.records, &shape, &mut out);
        assert!(!wire::flags::tc(&out));
        assert_eq!(Message::from_vec(&out).expect("valid").answers.len(), 40);
    }
}
