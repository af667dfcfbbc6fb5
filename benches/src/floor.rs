//! The floor: the least a DNS responder can do per query, for `cargo xtask bench dns` to measure the
//! servers against. One thread, blocking `recvmmsg` and `sendmmsg` of up to 64 datagrams, and for
//! each query its question echoed with one fixed A record; nothing parsed beyond the question.
//! What a server spends per query above this is its own (runtime, wakeups, parsing, cache, ...).

/// Datagrams per `recvmmsg` / `sendmmsg`.
pub const BATCH: usize = 64;
/// The address every answer carries.
pub const ANSWER: [u8; 4] = [192, 0, 2, 1];

/// Writes the answer to `query` into `out` (cleared first): the query's header with QR, AA and RA
/// set, RCODE 0 and one answer; its question; an A record for the question's name (a pointer to it)
/// with TTL 300. False, with `out` empty, when `query` has no well-formed question.
pub fn answer(query: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    if query.len() < 12 || query[2] & 0x80 != 0 || query[4..6] != [0, 1] {
        return false;
    }
    // The question's end: labels, the root, type and class.
    let mut at = 12;
    loop {
        let Some(&len) = query.get(at) else { return false };
        if len == 0 {
            break;
        }
        if len & 0xc0 != 0 {
            return false;
        }
        at += 1 + usize::from(len);
    }
    let end = at + 5;
    if end > query.len() {
        return false;
    }
    out.extend_from_slice(&query[..2]);
    // QR, the query's opcode and RD, AA; RA; RCODE 0.
    out.push(0x80 | (query[2] & 0x79) | 0x04);
    out.push(0x80);
    out.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 0]);
    out.extend_from_slice(&query[12..end]);
    out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4]);
    out.extend_from_slice(&ANSWER);
    true
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, RecordType};

    #[test]
    fn answers_the_question_with_one_a_record() {
        let mut q = Message::new(0x1234, MessageType::Query, OpCode::Query);
        q.metadata.recursion_desired = true;
        q.add_query(Query::query(Name::from_ascii("Svc-1.NS.svc.cluster.local.").expect("name"), RecordType::A));
        let mut out = Vec::new();
        assert!(super::answer(&q.to_vec().expect("query"), &mut out));
        let a = Message::from_vec(&out).expect("a well-formed answer");
        assert_eq!(a.metadata.id, 0x1234);
        assert_eq!(a.metadata.message_type, MessageType::Response);
        assert_eq!(a.metadata.response_code, ResponseCode::NoError);
        assert!(a.metadata.recursion_desired);
        assert_eq!(a.queries[0].name().to_ascii(), "Svc-1.NS.svc.cluster.local.");
        assert_eq!(a.answers.len(), 1);
        assert_eq!(a.answers[0].name.to_ascii(), "Svc-1.NS.svc.cluster.local.");
        assert_eq!(a.answers[0].data, RData::A(A::new(192, 0, 2, 1)));
    }

    #[test]
    fn refuses_what_is_not_a_query_with_one_question() {
        let mut out = Vec::new();
        for bad in
            [&[0u8; 5][..], &[0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1], &[0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'w', b'w']]
        {
            assert!(!super::answer(bad, &mut out));
            assert!(out.is_empty());
        }
    }
}
