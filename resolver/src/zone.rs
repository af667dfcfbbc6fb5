//! The `file` plugin: authoritative answers from an RFC 1035 master file (CoreDNS `file DBFILE [ZONES]`).
//!
//! Parsing is hickory-proto's zone parser. Answers: the records of the name and type; a CNAME at the
//! name (followed inside the zone); NODATA when the name exists without the type; NXDOMAIN when it
//! does not exist (an empty non-terminal exists). Negative answers carry the zone's SOA with
//! TTL min(SOA TTL, MINIMUM) (RFC 2308 §3), so resolvers cache them. AA is set.

use std::collections::{BTreeMap, BTreeSet};

use hickory_proto::rr::{RData, Record, RecordType};
use hickory_proto::serialize::txt::Parser;

use crate::synth::Synth;
use crate::wire;

#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    /// Lowercased wire name of the apex.
    pub origin: Vec<u8>,
    records: BTreeMap<(Vec<u8>, u16), Vec<Record>>,
    /// Every owner name and every empty non-terminal between an owner and the apex.
    names: BTreeSet<Vec<u8>>,
    soa: Option<Record>,
}

fn wire_of(name: &hickory_proto::rr::Name) -> Vec<u8> {
    wire::name_from_str(&name.to_ascii()).unwrap_or_else(|| vec![0])
}

impl Zone {
    /// Parses zone text; `origin` is the zone's name (for `@` and relative names).
    pub fn parse(text: &str, origin: &str) -> Result<Zone, String> {
        let origin_name = hickory_proto::rr::Name::from_ascii(origin).map_err(|e| format!("bad origin '{origin}': {e}"))?;
        let (apex, sets) = Parser::new(text, None, Some(origin_name)).parse().map_err(|e| e.to_string())?;
        let origin = wire_of(&apex);
        let mut z = Zone { origin: origin.clone(), records: BTreeMap::new(), names: BTreeSet::new(), soa: None };
        for (key, set) in sets {
            let owner = wire_of(&key.name.clone().into());
            let rtype = u16::from(key.record_type);
            let recs: Vec<Record> = set.records_without_rrsigs().cloned().collect();
            if key.record_type == RecordType::SOA {
                z.soa = recs.first().cloned();
            }
            // Register the owner and its ancestors down to the apex (empty non-terminals exist).
            let mut n = owner.as_slice();
            while n.len() >= origin.len() {
                z.names.insert(n.to_vec());
                if n.len() == origin.len() || n[0] == 0 {
                    break;
                }
                n = &n[1 + n[0] as usize..];
            }
            z.records.insert((owner, rtype), recs);
        }
        if z.soa.is_none() {
            return Err("zone has no SOA record".into());
        }
        Ok(z)
    }

    fn negative_soa(&self) -> Vec<Record> {
        self.soa
            .iter()
            .map(|r| {
                let mut r = r.clone();
                if let RData::SOA(soa) = &r.data {
                    r.ttl = r.ttl.min(soa.minimum);
                }
                r
            })
            .collect()
    }

    /// Answers `qname`/`qtype` (lowercased wire name inside this zone).
    pub fn lookup(&self, qname: &[u8], qtype: u16) -> Synth {
        let mut s = Synth { authoritative: true, ..Synth::default() };
        let mut name = qname.to_vec();
        // Follow CNAMEs inside the zone (at most 8 hops).
        for _ in 0..8 {
            if let Some(recs) = self.records.get(&(name.clone(), qtype)) {
                s.answers.extend(recs.iter().cloned());
                return s;
            }
            if qtype != wire::TYPE_CNAME
                && let Some(cname) = self.records.get(&(name.clone(), wire::TYPE_CNAME))
            {
                s.answers.extend(cname.iter().cloned());
                let Some(RData::CNAME(target)) = cname.first().map(|r| &r.data) else { return s };
                let t = wire_of(&target.0);
                if !wire::is_subdomain(&t, &self.origin) {
                    return s;
                }
                name = t;
                continue;
            }
            break;
        }
        if !self.names.contains(&name) {
            // RFC 4592: a wildcard at the closest encloser answers for names that do not exist.
            if let Some(recs) = self.wildcard(&name, qtype) {
                let owner =
                    hickory_proto::rr::Name::from_ascii(wire::name_to_string(&name)).unwrap_or_else(|_| hickory_proto::rr::Name::root());
                s.answers.extend(recs.into_iter().map(|mut r| {
                    r.name = owner.clone();
                    r
                }));
                if !s.answers.is_empty() {
                    return s;
                }
            } else {
                s.rcode = wire::RCODE_NXDOMAIN;
            }
        }
        s.authority = self.negative_soa();
        s
    }

    /// The records of `*.<closest encloser>` for a name that does not exist: Some(empty) when the
    /// wildcard exists without that type (NODATA), None when there is no wildcard (NXDOMAIN).
    fn wildcard(&self, name: &[u8], qtype: u16) -> Option<Vec<Record>> {
        let mut n = name;
        while n.len() > self.origin.len() && n[0] != 0 {
            n = &n[1 + n[0] as usize..];
            if self.names.contains(n) {
                let mut star = vec![1, b'*'];
                star.extend_from_slice(n);
                if !self.names.contains(&star) {
                    return None;
                }
                return Some(self.records.get(&(star, qtype)).cloned().unwrap_or_default());
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONE: &str = "$TTL 300
@   IN SOA ns.example.com. hostmaster.example.com. 1 7200 1800 86400 60
    IN NS  ns.example.com.
www IN A   93.184.215.14
www IN AAAA 2606:2800:21f:cb07::1
alias IN CNAME www
a.b.deep IN A 10.0.0.1
*.wild IN A 10.0.0.2
";

    fn n(s: &str) -> Vec<u8> {
        wire::name_from_str(s).expect("name")
    }

    #[test]
    fn answers_nodata_nxdomain_and_follows_cnames() {
        let z = Zone::parse(ZONE, "example.com.").expect("parses");
        assert_eq!(z.lookup(&n("www.example.com"), wire::TYPE_A).answers.len(), 1);
        let nodata = z.lookup(&n("www.example.com"), wire::TYPE_TXT);
        assert_eq!((nodata.rcode, nodata.answers.len(), nodata.authority.len()), (0, 0, 1));
        let nx = z.lookup(&n("nope.example.com"), wire::TYPE_A);
        assert_eq!(nx.rcode, wire::RCODE_NXDOMAIN);
        assert_eq!(nx.authority[0].ttl, 60, "negative TTL is min(SOA TTL, MINIMUM)");
        let ent = z.lookup(&n("b.deep.example.com"), wire::TYPE_A);
        assert_eq!(ent.rcode, 0, "an empty non-terminal exists");
        let alias = z.lookup(&n("alias.example.com"), wire::TYPE_AAAA);
        assert_eq!(alias.answers.len(), 2, "CNAME then the AAAA");
        let w = z.lookup(&n("x1.wild.example.com"), wire::TYPE_A);
        assert_eq!((w.rcode, w.answers.len()), (0, 1), "RFC 4592 wildcard");
        assert_eq!(w.answers[0].name.to_ascii(), "x1.wild.example.com.", "owned by the name asked");
        assert_eq!(z.lookup(&n("x1.wild.example.com"), wire::TYPE_TXT).rcode, 0, "wildcard NODATA");
        assert_eq!(z.lookup(&n("x.nope.example.com"), wire::TYPE_A).rcode, wire::RCODE_NXDOMAIN);
    }
}
