//! `autopath`: the search path walked on the server, for a client whose namespace the cluster
//! state knows from its source IP.

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::CNAME;
use hickory_proto::rr::{RData, Record, RecordType};

use crate::config::AutopathSource;
use crate::wire::{self, RecordSpan};

use super::chain::hname;
use super::{Client, Server};

impl Server {
    /// autopath: when the name is under the client pod's first search domain, the list of names to
    /// try (sources.md#coredns-autopath). ndots finds the pod's namespace from its compact pod index, so it
    /// does not need `pods verified`.
    pub(super) fn autopath_candidates(&self, bi: usize, client: &Client, qname: &[u8]) -> Option<Autopath> {
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
}

#[derive(Debug)]
pub(super) struct Autopath {
    /// The names to try, the asked one first.
    pub(super) candidates: Vec<Vec<u8>>,
    /// The one being tried.
    pub(super) idx: usize,
    /// The first reply (for the original name), returned if every candidate is NXDOMAIN.
    pub(super) first: Option<(Vec<u8>, Vec<RecordSpan>)>,
}

/// autopath's answer: `qname CNAME found`, then the found name's answer (sources.md#coredns-autopath).
pub(super) fn autopath_answer(qname: &[u8], qtype: u16, found: &[u8], msg: &[u8]) -> Option<Vec<u8>> {
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
