//! The hot paths allocate nothing: a cache hit and a cluster record from the memo go from query bytes
//! to answer bytes without touching the heap (issue: "no allocation per cache hit"). Counted with
//! dhat's allocator in testing mode, so this file holds one test: dhat allows one profiler at a time.

use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use resolver::{Client, ClusterState, Config, Dest, Handled, Server, Transport};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn query(id: u16, name: &str) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), RecordType::A));
    m.to_vec().expect("encode")
}

fn server(corefile: &str, state: ClusterState) -> Server {
    let cf = resolver::corefile::parse_str(corefile, "Corefile", None, &|_| None).expect("parses");
    let cfg = Config::from_corefile(&cf, std::path::Path::new(".")).expect("valid");
    Server::new(Arc::new(cfg), Arc::new(state), 1)
}

fn client() -> Client {
    Client {
        src: "10.244.1.10:40000".parse().expect("addr"),
        local: "10.96.0.10:53".parse().expect("addr"),
        transport: Transport::Udp,
        conn: 0,
    }
}

/// Heap blocks allocated while `f` runs `n` times.
fn blocks(n: usize, mut f: impl FnMut()) -> u64 {
    let before = dhat::HeapStats::get().total_blocks;
    for _ in 0..n {
        f();
    }
    dhat::HeapStats::get().total_blocks - before
}

#[test]
fn cache_hits_and_memoised_cluster_records_allocate_nothing() {
    let _profiler = dhat::Profiler::builder().testing().build();

    // A forwarded answer in the cache.
    let mut s = server(".:53 {\n forward . 10.0.0.1\n cache 30\n loadbalance\n}", ClusterState::default());
    let q = query(7, "www.example.com.");
    let mut out = Vec::with_capacity(4096);
    assert_eq!(s.handle_query(Duration::ZERO, client(), &q, &mut out), Handled::Pending);
    let up = s.poll_transmit().expect("upstream query");
    let req = Message::from_vec(&up.payload).expect("query");
    let mut a = Message::new(req.metadata.id, MessageType::Response, OpCode::Query);
    a.add_query(req.queries[0].clone());
    a.add_answer(Record::from_rdata(req.queries[0].name().clone(), 300, RData::A(A::new(93, 184, 215, 14))));
    let Dest::Upstream { addr, .. } = up.dest else { panic!("upstream") };
    s.handle_upstream(Duration::ZERO, addr, Transport::Udp, &a.to_vec().expect("encode"));
    while s.poll_transmit().is_some() {}
    // Warm once (buffers reach their size), then count.
    assert_eq!(s.handle_query(Duration::from_secs(1), client(), &q, &mut out), Handled::Answered);
    let n = blocks(1000, || {
        assert_eq!(s.handle_query(Duration::from_secs(1), client(), &q, &mut out), Handled::Answered);
    });
    assert_eq!(n, 0, "heap blocks allocated by 1,000 cache hits");
    // The counter counts: a miss builds a task and an upstream query.
    let miss = query(8, "other.example.com.");
    assert!(blocks(1, || assert_eq!(s.handle_query(Duration::from_secs(1), client(), &miss, &mut out), Handled::Pending)) > 0);
    assert_eq!(Message::from_vec(&out).expect("answer").answers.len(), 1);

    // A cluster record, answered from the memo after the first synthesis.
    let state = ClusterState::parse(
        r#"{"kind":"List","items":[{"kind":"Namespace","metadata":{"name":"default"}},
            {"kind":"Service","metadata":{"name":"web","namespace":"default"},"spec":{"clusterIP":"10.96.1.1","ports":[{"port":80}]}}]}"#,
        "state",
    )
    .expect("state");
    let mut s = server(".:53 {\n kubernetes cluster.local\n}", state);
    let q = query(9, "web.default.svc.cluster.local.");
    for _ in 0..2 {
        if s.handle_query(Duration::ZERO, client(), &q, &mut out) == Handled::Pending {
            out = s.poll_transmit().expect("answer").payload;
        }
    }
    let n = blocks(1000, || {
        assert_eq!(s.handle_query(Duration::ZERO, client(), &q, &mut out), Handled::Answered);
    });
    assert_eq!(n, 0, "heap blocks allocated by 1,000 memoised cluster answers");
}
