//! Raw DNS wire-format views used on the hot path (RFC 1035 §4).
//!
//! hickory-proto builds and parses whole messages on the slow paths; this module only reads what the
//! hot path needs (header, the single question, the OPT record) and edits answers in place (ID, TTLs,
//! question case, truncation on record boundaries). Every read is bounds-checked: network input is
//! never trusted and never unwrapped.

/// Fixed header length (RFC 1035 §4.1.1).
pub const HEADER_LEN: usize = 12;
/// Largest UDP answer a client without EDNS accepts (RFC 1035 §4.2.1).
pub const MAX_UDP_PLAIN: usize = 512;
/// Length of the OPT pseudo-RR we append (root name, type, class, ttl, rdlen, no options).
pub const OPT_LEN: usize = 11;
/// The OPT record type (RFC 6891 §6.1.1).
pub const TYPE_OPT: u16 = 41;
pub const TYPE_A: u16 = 1;
pub const TYPE_NS: u16 = 2;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_PTR: u16 = 12;
pub const TYPE_HINFO: u16 = 13;
pub const TYPE_TXT: u16 = 16;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_SRV: u16 = 33;
pub const CLASS_IN: u16 = 1;

pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_FORMERR: u8 = 1;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_NXDOMAIN: u8 = 3;
pub const RCODE_NOTIMP: u8 = 4;
pub const RCODE_REFUSED: u8 = 5;

/// Why a message could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message shorter than its header")]
    ShortHeader,
    #[error("message ends inside a field")]
    Truncated,
    #[error("label longer than 63 octets")]
    LabelTooLong,
    #[error("name longer than 255 octets")]
    NameTooLong,
    #[error("compression pointer loop or forward pointer")]
    BadPointer,
    #[error("reserved label type")]
    BadLabel,
    #[error("more than one OPT record")]
    MultipleOpt,
}

#[inline]
pub fn u16_at(buf: &[u8], at: usize) -> Result<u16, WireError> {
    match buf.get(at..at + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(WireError::Truncated),
    }
}

#[inline]
pub fn u32_at(buf: &[u8], at: usize) -> Result<u32, WireError> {
    match buf.get(at..at + 4) {
        Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(WireError::Truncated),
    }
}

/// Header flag accessors on raw bytes.
pub mod flags {
    pub fn id(m: &[u8]) -> u16 {
        u16::from_be_bytes([m[0], m[1]])
    }
    pub fn is_response(m: &[u8]) -> bool {
        m[2] & 0x80 != 0
    }
    pub fn opcode(m: &[u8]) -> u8 {
        (m[2] >> 3) & 0x0f
    }
    pub fn rd(m: &[u8]) -> bool {
        m[2] & 0x01 != 0
    }
    pub fn tc(m: &[u8]) -> bool {
        m[2] & 0x02 != 0
    }
    pub fn cd(m: &[u8]) -> bool {
        m[3] & 0x10 != 0
    }
    pub fn rcode(m: &[u8]) -> u8 {
        m[3] & 0x0f
    }
    pub fn set_id(m: &mut [u8], id: u16) {
        m[..2].copy_from_slice(&id.to_be_bytes());
    }
    pub fn set_tc(m: &mut [u8]) {
        m[2] |= 0x02;
    }
    pub fn set_rd(m: &mut [u8], rd: bool) {
        m[2] = (m[2] & !0x01) | u8::from(rd);
    }
    pub fn set_rcode(m: &mut [u8], rcode: u8) {
        m[3] = (m[3] & 0xf0) | (rcode & 0x0f);
    }
}

/// Skips a (possibly compressed) name starting at `at`; returns the offset just past it.
/// Does not follow pointers (their targets were validated when first read, or do not matter here).
pub fn skip_name(buf: &[u8], mut at: usize) -> Result<usize, WireError> {
    let mut total = 0usize;
    loop {
        let len = *buf.get(at).ok_or(WireError::Truncated)? as usize;
        match len & 0xc0 {
            0x00 => {
                at += 1;
                if len == 0 {
                    return Ok(at);
                }
                total += len + 1;
                if total > 255 {
                    return Err(WireError::NameTooLong);
                }
                at += len;
            }
            0xc0 => {
                if at + 1 >= buf.len() {
                    return Err(WireError::Truncated);
                }
                return Ok(at + 2);
            }
            _ => return Err(WireError::BadLabel),
        }
    }
}

/// Reads a name (following compression pointers, which must point backwards: that rules out loops)
/// and writes it lowercased, uncompressed, into `out`. Returns the offset just past the name at `at`.
pub fn read_name_lower(buf: &[u8], at: usize, out: &mut Vec<u8>) -> Result<usize, WireError> {
    let mut pos = at;
    let mut end: Option<usize> = None;
    let mut total = 0usize;
    // Each pointer must go strictly backwards, so at most buf.len() jumps can happen.
    let mut limit = pos;
    loop {
        let len = *buf.get(pos).ok_or(WireError::Truncated)? as usize;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    out.push(0);
                    total += 1;
                    if total > 255 {
                        return Err(WireError::NameTooLong);
                    }
                    return Ok(end.unwrap_or(pos + 1));
                }
                if len > 63 {
                    return Err(WireError::LabelTooLong);
                }
                let label = buf.get(pos + 1..pos + 1 + len).ok_or(WireError::Truncated)?;
                total += len + 1;
                if total > 255 {
                    return Err(WireError::NameTooLong);
                }
                out.push(len as u8);
                out.extend(label.iter().map(u8::to_ascii_lowercase));
                pos += 1 + len;
            }
            0xc0 => {
                let lo = *buf.get(pos + 1).ok_or(WireError::Truncated)? as usize;
                let target = ((len & 0x3f) << 8) | lo;
                if end.is_none() {
                    end = Some(pos + 2);
                }
                if target >= limit {
                    return Err(WireError::BadPointer);
                }
                limit = target;
                pos = target;
            }
            _ => return Err(WireError::BadLabel),
        }
    }
}

/// The client's EDNS (RFC 6891) as read from its query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    pub udp_size: u16,
    pub version: u8,
    pub dnssec_ok: bool,
}

/// What the server needs to know about a query, read without allocation except for the
/// lowercased name (kept in a caller-owned buffer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryView {
    pub id: u16,
    pub opcode: u8,
    pub rd: bool,
    pub cd: bool,
    /// Byte range of the question's name in the original query (for 0x20 case restoration).
    pub qname_range: (usize, usize),
    pub qtype: u16,
    pub qclass: u16,
    /// End of the question section.
    pub question_end: usize,
    pub edns: Option<Edns>,
}

/// How a query failed to parse, deciding the answer (RFC 1035 §4.1.1, RFC 6891 §6.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryError {
    /// Not even a header, or a response sent as a query: answer nothing.
    Drop,
    /// Opcode other than QUERY: NOTIMP.
    NotImp(u16),
    /// Malformed: FORMERR.
    FormErr(u16),
    /// EDNS version we do not speak: BADVERS (RFC 6891 §6.1.3).
    BadVers(u16),
}

/// Reads a query: header, exactly one question, and the additional section's OPT record.
/// `qname_lower` receives the lowercased wire name.
pub fn parse_query(m: &[u8], qname_lower: &mut Vec<u8>) -> Result<QueryView, QueryError> {
    if m.len() < HEADER_LEN {
        return Err(QueryError::Drop);
    }
    let id = flags::id(m);
    if flags::is_response(m) {
        // A response sent to a server is not answered (it would make reflection loops).
        return Err(QueryError::Drop);
    }
    let opcode = flags::opcode(m);
    if opcode != 0 {
        return Err(QueryError::NotImp(id));
    }
    let qd = u16_at(m, 4).map_err(|_| QueryError::Drop)?;
    let an = u16_at(m, 6).map_err(|_| QueryError::Drop)?;
    let ns = u16_at(m, 8).map_err(|_| QueryError::Drop)?;
    let ar = u16_at(m, 10).map_err(|_| QueryError::Drop)?;
    if qd != 1 {
        return Err(QueryError::FormErr(id));
    }
    qname_lower.clear();
    let name_end = read_name_lower(m, HEADER_LEN, qname_lower).map_err(|_| QueryError::FormErr(id))?;
    let qtype = u16_at(m, name_end).map_err(|_| QueryError::FormErr(id))?;
    let qclass = u16_at(m, name_end + 2).map_err(|_| QueryError::FormErr(id))?;
    let question_end = name_end + 4;
    let mut at = question_end;
    // Skip answer and authority records a query should not carry, then find OPT in additional.
    for _ in 0..(an as usize + ns as usize) {
        at = skip_record(m, at).map_err(|_| QueryError::FormErr(id))?;
    }
    let mut edns = None;
    for _ in 0..ar {
        let name_end = skip_name(m, at).map_err(|_| QueryError::FormErr(id))?;
        let rtype = u16_at(m, name_end).map_err(|_| QueryError::FormErr(id))?;
        if rtype == TYPE_OPT {
            if edns.is_some() || name_end != at + 1 || m[at] != 0 {
                // A second OPT, or an OPT whose owner is not the root: FORMERR (RFC 6891 §6.1.1).
                return Err(QueryError::FormErr(id));
            }
            let udp_size = u16_at(m, name_end + 2).map_err(|_| QueryError::FormErr(id))?;
            let ttl = u32_at(m, name_end + 4).map_err(|_| QueryError::FormErr(id))?;
            let version = ((ttl >> 16) & 0xff) as u8;
            let dnssec_ok = ttl & 0x8000 != 0;
            edns = Some(Edns { udp_size, version, dnssec_ok });
        }
        at = skip_record(m, at).map_err(|_| QueryError::FormErr(id))?;
    }
    if let Some(e) = edns
        && e.version > 0
    {
        return Err(QueryError::BadVers(id));
    }
    Ok(QueryView { id, opcode, rd: flags::rd(m), cd: flags::cd(m), qname_range: (HEADER_LEN, name_end), qtype, qclass, question_end, edns })
}

/// Skips one resource record starting at `at`.
pub fn skip_record(m: &[u8], at: usize) -> Result<usize, WireError> {
    let name_end = skip_name(m, at)?;
    let rdlen = u16_at(m, name_end + 8)? as usize;
    let end = name_end + 10 + rdlen;
    if end > m.len() {
        return Err(WireError::Truncated);
    }
    Ok(end)
}

/// Where each resource record of a response sits, for TTL patching and truncation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    pub question_end: usize,
    /// (start, end, ttl offset, type) of each record of answer, authority, additional, in order.
    pub records: Vec<RecordSpan>,
    pub counts: [u16; 3],
    /// Index into `records` of the OPT record, if any.
    pub opt: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSpan {
    pub start: u32,
    pub end: u32,
    pub ttl_at: u32,
    pub rtype: u16,
    pub section: u8,
}

/// Reads the layout of a whole message (one question at most is expected in responses).
pub fn layout(m: &[u8]) -> Result<Layout, WireError> {
    if m.len() < HEADER_LEN {
        return Err(WireError::ShortHeader);
    }
    let qd = u16_at(m, 4)?;
    let counts = [u16_at(m, 6)?, u16_at(m, 8)?, u16_at(m, 10)?];
    let mut at = HEADER_LEN;
    for _ in 0..qd {
        at = skip_name(m, at)? + 4;
        if at > m.len() {
            return Err(WireError::Truncated);
        }
    }
    let question_end = at;
    let mut records = Vec::with_capacity(counts.iter().map(|&c| c as usize).sum::<usize>().min(64));
    let mut opt = None;
    for (section, &count) in counts.iter().enumerate() {
        for _ in 0..count {
            let name_end = skip_name(m, at)?;
            let rtype = u16_at(m, name_end)?;
            let end = skip_record(m, at)?;
            if rtype == TYPE_OPT {
                if opt.is_some() {
                    return Err(WireError::MultipleOpt);
                }
                opt = Some(records.len());
            }
            records.push(RecordSpan { start: at as u32, end: end as u32, ttl_at: (name_end + 4) as u32, rtype, section: section as u8 });
            at = end;
        }
    }
    Ok(Layout { question_end, records, counts, opt })
}

/// Appends an OPT record advertising `udp_size` (RFC 6891 §6.1.2) and bumps ARCOUNT.
pub fn push_opt(m: &mut Vec<u8>, udp_size: u16, dnssec_ok: bool) {
    m.push(0);
    m.extend_from_slice(&TYPE_OPT.to_be_bytes());
    m.extend_from_slice(&udp_size.to_be_bytes());
    m.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0]);
    m.extend_from_slice(&[0, 0]);
    let ar = u16::from_be_bytes([m[10], m[11]]).wrapping_add(1);
    m[10..12].copy_from_slice(&ar.to_be_bytes());
}

/// Removes the OPT record (if any) from a response, so stored answers are client-independent.
pub fn strip_opt(m: &mut Vec<u8>, layout: &mut Layout) {
    let Some(i) = layout.opt.take() else { return };
    let span = layout.records.remove(i);
    let (s, e) = (span.start as usize, span.end as usize);
    m.drain(s..e);
    let shift = (e - s) as u32;
    for r in layout.records.iter_mut().skip(i) {
        r.start -= shift;
        r.end -= shift;
        r.ttl_at -= shift;
    }
    layout.counts[2] -= 1;
    m[10..12].copy_from_slice(&layout.counts[2].to_be_bytes());
}

/// Cuts a message (without OPT) to at most `limit` bytes on record boundaries and sets TC when
/// anything was dropped, as miekg/dns#989 does (sources.md#truncation). Returns whether it truncated.
pub fn truncate(m: &mut Vec<u8>, records: &[RecordSpan], limit: usize) -> bool {
    if m.len() <= limit {
        return false;
    }
    let mut keep = 0usize;
    let mut end = records.first().map_or(m.len(), |r| r.start as usize);
    for r in records {
        if r.end as usize > limit {
            break;
        }
        keep += 1;
        end = r.end as usize;
    }
    if end > limit {
        // Not even the question fits: keep the header and question only.
        end = records.first().map_or(limit, |r| r.start as usize).min(m.len());
    }
    m.truncate(end);
    let mut counts = [0u16; 3];
    for r in &records[..keep] {
        counts[r.section as usize] += 1;
    }
    m[6..8].copy_from_slice(&counts[0].to_be_bytes());
    m[8..10].copy_from_slice(&counts[1].to_be_bytes());
    m[10..12].copy_from_slice(&counts[2].to_be_bytes());
    flags::set_tc(m);
    true
}

/// Formats a lowercased wire name as dotted text (for logs and matching).
pub fn name_to_string(wire: &[u8]) -> String {
    let mut s = String::with_capacity(wire.len());
    let mut at = 0;
    while let Some(&len) = wire.get(at) {
        if len == 0 {
            break;
        }
        let label = wire.get(at + 1..at + 1 + len as usize).unwrap_or(&[]);
        for &b in label {
            if b == b'.' || b == b'\\' {
                s.push('\\');
            }
            if b.is_ascii_graphic() {
                s.push(b as char);
            } else {
                s.push_str(&format!("\\{b:03}"));
            }
        }
        s.push('.');
        at += 1 + len as usize;
    }
    if s.is_empty() {
        s.push('.');
    }
    s
}

/// Converts dotted text to a lowercased wire name. `None` if a label is empty or too long.
pub fn name_from_str(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() + 2);
    let t = text.trim_end_matches('.');
    if !t.is_empty() {
        for label in t.split('.') {
            if label.is_empty() || label.len() > 63 {
                return None;
            }
            out.push(label.len() as u8);
            out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
        }
    }
    out.push(0);
    if out.len() > 255 {
        return None;
    }
    Some(out)
}

/// True if wire name `name` equals or is below wire name `zone` (both lowercased).
pub fn is_subdomain(name: &[u8], zone: &[u8]) -> bool {
    if zone.len() > name.len() {
        return false;
    }
    if zone == [0] {
        return true;
    }
    // Walk label boundaries of `name` until the remaining suffix has zone's length.
    let mut at = 0;
    while at < name.len() {
        let rest = &name[at..];
        if rest.len() == zone.len() {
            return rest == zone;
        }
        if rest.len() < zone.len() {
            return false;
        }
        at += 1 + name[at] as usize;
    }
    false
}

/// Number of labels in a wire name.
pub fn label_count(name: &[u8]) -> usize {
    let mut n = 0;
    let mut at = 0;
    while let Some(&len) = name.get(at) {
        if len == 0 {
            break;
        }
        n += 1;
        at += 1 + len as usize;
    }
    n
}

/// Iterates the labels of a wire name.
pub fn labels(name: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let len = *name.get(at)? as usize;
        if len == 0 {
            return None;
        }
        let l = name.get(at + 1..at + 1 + len)?;
        at += 1 + len;
        Some(l)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend(name_from_str(name).expect("valid name"));
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&CLASS_IN.to_be_bytes());
        m
    }

    #[test]
    fn parses_a_plain_query_and_lowercases_its_name() {
        let mut q = query("WwW.Example.COM", TYPE_A);
        q[12 + 1] = b'W';
        let mut lower = Vec::new();
        let v = parse_query(&q, &mut lower).expect("parses");
        assert_eq!(v.id, 0x1234);
        assert_eq!(v.qtype, TYPE_A);
        assert_eq!(name_to_string(&lower), "www.example.com.");
        assert!(v.edns.is_none());
        assert!(v.rd);
    }

    #[test]
    fn reads_edns_and_rejects_two_opt_records() {
        let mut q = query("a.b", TYPE_A);
        push_opt(&mut q, 1232, true);
        let mut lower = Vec::new();
        let v = parse_query(&q, &mut lower).expect("parses");
        assert_eq!(v.edns, Some(Edns { udp_size: 1232, version: 0, dnssec_ok: true }));
        push_opt(&mut q, 4096, false);
        assert_eq!(parse_query(&q, &mut lower), Err(QueryError::FormErr(0x1234)));
    }

    #[test]
    fn malformed_queries_get_the_rfc_answer() {
        let mut lower = Vec::new();
        assert_eq!(parse_query(&[0; 5], &mut lower), Err(QueryError::Drop));
        let mut q = query("a.b", TYPE_A);
        q[5] = 2; // QDCOUNT 2
        assert_eq!(parse_query(&q, &mut lower), Err(QueryError::FormErr(0x1234)));
        let mut q = query("a.b", TYPE_A);
        q[5] = 0; // QDCOUNT 0
        assert_eq!(parse_query(&q, &mut lower), Err(QueryError::FormErr(0x1234)));
        let mut q = query("a.b", TYPE_A);
        q[2] |= 0x80; // a response
        assert_eq!(parse_query(&q, &mut lower), Err(QueryError::Drop));
        let mut q = query("a.b", TYPE_A);
        q[2] |= 2 << 3; // opcode STATUS
        assert_eq!(parse_query(&q, &mut lower), Err(QueryError::NotImp(0x1234)));
        // Compression pointer to itself.
        let mut q = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1];
        assert_eq!(parse_query(&q, &mut lower), Err(QueryError::FormErr(1)));
        // Label of 64 octets.
        q.truncate(12);
        q.push(64);
        q.extend([b'a'; 64]);
        q.extend([0, 0, 1, 0, 1]);
        assert_eq!(parse_query(&q, &mut lower), Err(QueryError::FormErr(1)));
    }

    #[test]
    fn names_over_255_octets_are_rejected() {
        let long = vec!["abcdefghij"; 30].join(".");
        assert!(name_from_str(&long).is_none());
        let mut q = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for _ in 0..30 {
            q.push(10);
            q.extend(b"abcdefghij");
        }
        q.extend([0, 0, 1, 0, 1]);
        let mut lower = Vec::new();
        assert_eq!(parse_query(&q, &mut lower), Err(QueryError::FormErr(1)));
    }

    #[test]
    fn subdomain_matching_follows_label_boundaries() {
        let zone = name_from_str("cluster.local").expect("name");
        assert!(is_subdomain(&name_from_str("a.svc.cluster.local").expect("n"), &zone));
        assert!(is_subdomain(&zone, &zone));
        assert!(!is_subdomain(&name_from_str("xcluster.local").expect("n"), &zone));
        assert!(is_subdomain(&zone, &[0]));
    }

    proptest::proptest! {
        /// Truncation keeps a valid message no larger than the limit, with TC set exactly when records
        /// were dropped, and the counts match what is left.
        #[test]
        fn truncation_fits_and_stays_valid(n in 0usize..80, limit in 12usize..2000) {
            use hickory_proto::op::{Message, MessageType, OpCode, Query};
            use hickory_proto::rr::{Name, RData, Record, RecordType, rdata::A};
            let mut m = Message::new(1, MessageType::Response, OpCode::Query);
            let owner = Name::from_ascii("many.example.").expect("name");
            m.add_query(Query::query(owner.clone(), RecordType::A));
            for i in 0..n {
                m.add_answer(Record::from_rdata(owner.clone(), 60, RData::A(A::new(10, 0, (i / 256) as u8, i as u8))));
            }
            let mut bytes = m.to_vec().expect("encodes");
            let full = bytes.len();
            let l = layout(&bytes).expect("layout");
            let cut = truncate(&mut bytes, &l.records, limit);
            proptest::prop_assert_eq!(cut, full > limit);
            let question_len = l.records.first().map_or(full, |r| r.start as usize);
            proptest::prop_assert!(bytes.len() <= limit.max(question_len));
            let parsed = Message::from_vec(&bytes).expect("still parses");
            proptest::prop_assert_eq!(parsed.metadata.truncation, cut);
            proptest::prop_assert!(parsed.answers.len() <= n);
            if !cut { proptest::prop_assert_eq!(parsed.answers.len(), n); }
        }

        #[test]
        fn parse_query_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let mut lower = Vec::new();
            let _ = parse_query(&bytes, &mut lower);
            let _ = layout(&bytes);
        }
    }
}
