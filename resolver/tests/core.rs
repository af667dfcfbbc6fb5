//! The sans-IO server core driven in memory with a virtual clock: the numbers asserted here are
//! CoreDNS's (sources.md#coredns-forward, sources.md#coredns-autopath, sources.md#coredns-cache, sources.md#coredns-forward), checked to the millisecond.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use resolver::{Client, ClusterState, Config, Dest, Handled, Server, Transmit, Transport};

const STATE: &str = include_str!("../../examples/cluster-state.yaml");

fn config(corefile: &str) -> Config {
    let cf = resolver::corefile::parse_str(corefile, "Corefile", None, &|_| None).expect("parses");
    Config::from_corefile(&cf, std::path::Path::new(".")).expect("valid")
}

fn server_with(cfg: Config) -> Server {
    let state = ClusterState::parse(STATE, "state").expect("state");
    Server::new(Arc::new(cfg), Arc::new(state), 42)
}

fn server(corefile: &str) -> Server {
    server_with(config(corefile))
}

fn k8s_block(extra: &str) -> String {
    format!(
        ".:53 {{
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        cluster_state /dev/null
    }}
    {extra}
}}"
    )
}

fn client(transport: Transport) -> Client {
    Client { src: "10.244.1.10:40000".parse().expect("addr"), local: "10.96.0.10:53".parse().expect("addr"), transport, conn: 1 }
}

fn query(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    m.to_vec().expect("encode")
}

fn drain(s: &mut Server) -> Vec<Transmit> {
    std::iter::from_fn(|| s.poll_transmit()).collect()
}

fn up(addr: &str) -> SocketAddr {
    addr.parse().expect("addr")
}

/// An upstream's answer to `q` with `n` A records (TTL 60), or with TC set.
fn answer(q: &[u8], n: usize, tc: bool) -> Vec<u8> {
    let req = Message::from_vec(q).expect("query parses");
    let mut m = Message::new(req.metadata.id, MessageType::Response, OpCode::Query);
    m.metadata.recursion_available = true;
    m.metadata.truncation = tc;
    m.add_query(req.queries[0].clone());
    for i in 0..n {
        m.add_answer(Record::from_rdata(req.queries[0].name().clone(), 60, RData::A(A::new(10, 9, (i / 250) as u8, (i % 250) as u8 + 1))));
    }
    m.to_vec().expect("encode")
}

fn to_upstream(t: &Transmit) -> Option<(SocketAddr, Transport)> {
    match t.dest {
        Dest::Upstream { addr, transport } => Some((addr, transport)),
        _ => None,
    }
}

fn parse(t: &Transmit) -> Message {
    Message::from_vec(&t.payload).expect("valid message")
}

fn is_probe(t: &Transmit) -> bool {
    let m = parse(t);
    m.queries[0].query_type() == RecordType::NS && m.queries[0].name().is_root()
}

fn s(secs: f64) -> Duration {
    Duration::from_secs_f64(secs)
}

#[test]
fn forward_tries_each_upstream_for_2s_until_the_5s_deadline_then_servfails() {
    let mut srv = server(".:53 {\n forward . 10.0.0.1 10.0.0.2 {\n policy sequential\n }\n}");
    let mut out = Vec::new();
    assert_eq!(srv.handle_query(s(0.0), client(Transport::Udp), &query(7, "www.example.org.", RecordType::A), &mut out), Handled::Pending);
    let t = drain(&mut srv);
    assert_eq!(t.iter().filter_map(to_upstream).collect::<Vec<_>>(), [(up("10.0.0.1:53"), Transport::Udp)]);
    assert_eq!(srv.poll_timeout(), Some(s(2.0)), "read timeout 2 s");
    srv.handle_timeout(s(2.0));
    let t = drain(&mut srv);
    let queries: Vec<_> = t.iter().filter(|t| !is_probe(t)).filter_map(to_upstream).collect();
    assert_eq!(queries, [(up("10.0.0.2:53"), Transport::Udp)], "next upstream after the read timeout");
    assert!(
        t.iter().any(|t| is_probe(t) && to_upstream(t) == Some((up("10.0.0.1:53"), Transport::Udp))),
        "health check of the failed one starts at once"
    );
    srv.handle_timeout(s(4.0));
    let t = drain(&mut srv);
    assert!(t.iter().filter(|t| !is_probe(t)).filter_map(to_upstream).any(|u| u.0 == up("10.0.0.1:53")), "the list wraps around");
    srv.handle_timeout(s(6.0));
    let t = drain(&mut srv);
    let answer = t.iter().find(|t| matches!(t.dest, Dest::Client(_))).expect("client answered");
    let m = parse(answer);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(m.metadata.id, 7);
}

#[test]
fn a_send_that_fails_at_once_moves_on_and_servfails_after_one_try_per_upstream() {
    // An unreachable network or no socket: the driver reports the send as failed at once. Each
    // upstream is tried once more, then the client gets SERVFAIL, with no retry loop until the
    // 5 s deadline (which spun a CPU when resolv.conf named a server with no route).
    let mut srv = server(".:53 {\n forward . 10.0.0.1 10.0.0.2 {\n policy sequential\n }\n}");
    let mut out = Vec::new();
    assert_eq!(srv.handle_query(s(0.0), client(Transport::Udp), &query(9, "www.example.org.", RecordType::A), &mut out), Handled::Pending);
    drain(&mut srv);
    srv.handle_upstream_error(s(0.0), up("10.0.0.1:53"), Transport::Udp);
    let t = drain(&mut srv);
    let queries: Vec<_> = t.iter().filter(|t| !is_probe(t)).filter_map(to_upstream).collect();
    assert_eq!(queries, [(up("10.0.0.2:53"), Transport::Udp)], "the next upstream");
    assert!(!t.iter().any(|t| matches!(t.dest, Dest::Client(_))));
    srv.handle_upstream_error(s(0.0), up("10.0.0.2:53"), Transport::Udp);
    let t = drain(&mut srv);
    assert!(
        !t.iter().filter(|t| !is_probe(t)).any(|t| to_upstream(t).is_some()),
        "no third send: {:?}",
        t.iter().filter_map(to_upstream).collect::<Vec<_>>()
    );
    let answer = t.iter().find(|t| matches!(t.dest, Dest::Client(_))).expect("client answered at once");
    assert_eq!(parse(answer).metadata.response_code, ResponseCode::ServFail);
    assert_eq!(srv.in_flight(), 0);
}

#[test]
fn an_upstream_is_down_after_three_failed_probes_and_up_after_one_answer() {
    let mut srv = server(".:53 {\n forward . 10.0.0.1\n}");
    let mut out = Vec::new();
    srv.handle_query(s(0.0), client(Transport::Udp), &query(1, "a.example.", RecordType::A), &mut out);
    drain(&mut srv);
    // Read timeout at 2 s starts probing: probe 1 at 2 s (1 s timeout), probe 2 at 3.5 s, probe 3 at 5 s.
    let mut probes = Vec::new();
    let mut now = s(0.0);
    while now < s(7.0) {
        now = srv.poll_timeout().expect("timer");
        srv.handle_timeout(now);
        for t in drain(&mut srv) {
            if is_probe(&t) {
                probes.push((now, t));
            }
        }
        if srv.upstream_down(up("10.0.0.1:53")) {
            break;
        }
    }
    let times: Vec<f64> = probes.iter().map(|(t, _)| t.as_secs_f64()).collect();
    assert_eq!(times, [2.0, 3.5, 5.0]);
    assert!(srv.upstream_down(up("10.0.0.1:53")), "Down once fails > max_fails (2), at {now:?}");
    assert_eq!(now, s(6.0));
    // The next probe (at 6.5 s) is answered, even with REFUSED: healthy again.
    srv.handle_timeout(s(6.5));
    let probe = drain(&mut srv).into_iter().find(is_probe).expect("probing continues");
    let mut refused = answer(&probe.payload, 0, false);
    refused[3] = (refused[3] & 0xf0) | 5;
    srv.handle_upstream(s(6.6), up("10.0.0.1:53"), Transport::Udp, &refused);
    assert!(!srv.upstream_down(up("10.0.0.1:53")));
}

#[test]
fn when_every_upstream_is_down_one_is_tried_anyway() {
    let mut srv = server(".:53 {\n forward . 10.0.0.1\n}");
    let mut out = Vec::new();
    srv.handle_query(s(0.0), client(Transport::Udp), &query(1, "a.example.", RecordType::A), &mut out);
    let mut now = s(0.0);
    while !srv.upstream_down(up("10.0.0.1:53")) {
        now = srv.poll_timeout().expect("timer");
        srv.handle_timeout(now);
        drain(&mut srv);
    }
    srv.handle_query(now, client(Transport::Udp), &query(2, "b.example.", RecordType::A), &mut out);
    let t = drain(&mut srv);
    assert!(t.iter().filter(|t| !is_probe(t)).any(|t| to_upstream(t).is_some()), "all down: spray to a random upstream");
    assert!(srv.metrics.healthcheck_broken > 0);
}

#[test]
fn truncated_udp_answers_are_retried_over_tcp_and_truncated_per_client() {
    let mut srv = server(".:53 {\n forward . 10.0.0.1\n cache 30\n}");
    let mut out = Vec::new();
    srv.handle_query(s(0.0), client(Transport::Udp), &query(5, "big.example.", RecordType::A), &mut out);
    let q = drain(&mut srv).pop().expect("upstream query");
    srv.handle_upstream(s(0.01), up("10.0.0.1:53"), Transport::Udp, &answer(&q.payload, 0, true));
    let retry = drain(&mut srv).pop().expect("retry");
    assert_eq!(to_upstream(&retry), Some((up("10.0.0.1:53"), Transport::Tcp)));
    srv.handle_upstream(s(0.02), up("10.0.0.1:53"), Transport::Tcp, &answer(&retry.payload, 100, false));
    let a = drain(&mut srv).pop().expect("client answer");
    assert!(a.payload.len() <= 512, "no EDNS: 512 bytes");
    let m = parse(&a);
    assert!(m.metadata.truncation && !m.answers.is_empty() && m.answers.len() < 100);
    // The whole answer was cached: a TCP client gets all 100 records straight from the cache.
    let h = srv.handle_query(s(1.0), client(Transport::Tcp), &query(6, "big.example.", RecordType::A), &mut out);
    assert_eq!(h, Handled::Answered);
    let m = Message::from_vec(&out).expect("valid");
    assert_eq!(m.answers.len(), 100);
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers[0].ttl, 29, "cache 30 caps the TTL, and it counts down");
}

/// A server whose `forward` behaves as CoreDNS's (the simulator's `coredns` profile): the client's
/// EDNS size goes upstream and a truncated answer goes back to the client unless `prefer_udp`.
fn coredns_server(corefile: &str) -> Server {
    let mut cfg = config(corefile);
    cfg.coalesce = false;
    cfg.tcp_on_truncation = false;
    for b in &mut cfg.servers {
        b.forward_client_edns = true;
    }
    server_with(cfg)
}

fn with_edns(mut q: Vec<u8>, size: u16) -> Vec<u8> {
    let mut m = Message::from_vec(&q).expect("parses");
    let mut e = hickory_proto::op::Edns::new();
    e.set_max_payload(size);
    m.set_edns(e);
    q = m.to_vec().expect("encode");
    q
}

#[test]
fn coredns_forward_sends_the_clients_edns_and_passes_truncation_back() {
    let mut srv = coredns_server(".:53 {\n forward . 10.0.0.1\n cache 30\n}");
    let mut out = Vec::new();
    // No EDNS from the client: none upstream. 4096 from the client: 4096 upstream.
    srv.handle_query(s(0.0), client(Transport::Udp), &query(5, "big.example.", RecordType::A), &mut out);
    let q = drain(&mut srv).pop().expect("upstream query");
    assert!(parse(&q).edns.is_none(), "no OPT when the client sent none");
    srv.handle_query(s(0.0), client(Transport::Udp), &with_edns(query(6, "other.example.", RecordType::A), 4096), &mut out);
    let q2 = drain(&mut srv).pop().expect("upstream query");
    assert_eq!(parse(&q2).edns.as_ref().map(|e| e.max_payload()), Some(4096));
    // A truncated upstream answer is the client's answer: no TCP retry, not cached.
    srv.handle_upstream(s(0.01), up("10.0.0.1:53"), Transport::Udp, &answer(&q.payload, 0, true));
    let a = drain(&mut srv);
    assert_eq!(a.len(), 1, "one transmit, to the client: {:?}", a.iter().map(to_upstream).collect::<Vec<_>>());
    assert!(to_upstream(&a[0]).is_none());
    assert!(parse(&a[0]).metadata.truncation, "TC passed on");
    srv.handle_query(s(0.5), client(Transport::Udp), &query(7, "big.example.", RecordType::A), &mut out);
    assert!(drain(&mut srv).iter().any(|t| to_upstream(t).is_some()), "a truncated answer is never cached");
    // With prefer_udp, CoreDNS asks again over TCP.
    let mut pu = coredns_server(".:53 {\n forward . 10.0.0.1 {\n  prefer_udp\n }\n}");
    pu.handle_query(s(0.0), client(Transport::Udp), &query(8, "big.example.", RecordType::A), &mut out);
    let q = drain(&mut pu).pop().expect("upstream query");
    pu.handle_upstream(s(0.01), up("10.0.0.1:53"), Transport::Udp, &answer(&q.payload, 0, true));
    let retry = drain(&mut pu).pop().expect("retry");
    assert_eq!(to_upstream(&retry), Some((up("10.0.0.1:53"), Transport::Tcp)));
}

#[test]
fn answers_with_the_wrong_id_question_or_source_are_ignored() {
    let mut srv = server(".:53 {\n forward . 10.0.0.1\n}");
    let mut out = Vec::new();
    srv.handle_query(s(0.0), client(Transport::Udp), &query(5, "www.example.", RecordType::A), &mut out);
    let q = drain(&mut srv).pop().expect("upstream query");
    let good = answer(&q.payload, 1, false);
    let mut wrong_id = good.clone();
    wrong_id[0] ^= 0xff;
    srv.handle_upstream(s(0.1), up("10.0.0.1:53"), Transport::Udp, &wrong_id);
    let other_q = answer(
        &{
            let mut qq = query(0, "evil.example.", RecordType::A);
            qq[..2].copy_from_slice(&q.payload[..2]);
            qq
        },
        1,
        false,
    );
    srv.handle_upstream(s(0.1), up("10.0.0.1:53"), Transport::Udp, &other_q);
    srv.handle_upstream(s(0.1), up("10.6.6.6:53"), Transport::Udp, &good);
    assert!(drain(&mut srv).is_empty(), "nothing accepted");
    srv.handle_upstream(s(0.2), up("10.0.0.1:53"), Transport::Udp, &good);
    let a = drain(&mut srv).pop().expect("answer");
    assert_eq!(parse(&a).answers.len(), 1);
}

#[test]
fn identical_in_flight_queries_share_one_upstream_query() {
    let mut srv = server(".:53 {\n forward . 10.0.0.1\n}");
    let mut out = Vec::new();
    for id in [11, 12, 13] {
        srv.handle_query(s(0.0), client(Transport::Udp), &query(id, "same.example.", RecordType::A), &mut out);
    }
    let ups: Vec<Transmit> = drain(&mut srv);
    assert_eq!(ups.len(), 1);
    srv.handle_upstream(s(0.05), up("10.0.0.1:53"), Transport::Udp, &answer(&ups[0].payload, 1, false));
    let ids: Vec<u16> = drain(&mut srv).iter().map(|t| parse(t).metadata.id).collect();
    assert_eq!(ids, [11, 12, 13]);
}

#[test]
fn autopath_answers_a_search_path_query_in_one_round_trip_with_a_cname() {
    let mut srv = server(&k8s_block("autopath @kubernetes\n forward . 10.0.0.1\n cache 30"));
    let mut out = Vec::new();
    // The pod 10.244.1.10 is in namespace shop; its glibc appends shop.svc.cluster.local first.
    srv.handle_query(s(0.0), client(Transport::Udp), &query(3, "www.google.com.shop.svc.cluster.local.", RecordType::A), &mut out);
    let q = drain(&mut srv).pop().expect("the bare name goes upstream");
    assert_eq!(parse(&q).queries[0].name().to_ascii(), "www.google.com.");
    srv.handle_upstream(s(0.01), up("10.0.0.1:53"), Transport::Udp, &answer(&q.payload, 1, false));
    let a = parse(&drain(&mut srv).pop().expect("answer"));
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a.queries[0].name().to_ascii(), "www.google.com.shop.svc.cluster.local.");
    assert_eq!(a.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(a.answers[1].record_type(), RecordType::A);
    assert_eq!(srv.metrics.blocks[0].autopath_success, 1);
    // A real service under the first search domain answers directly, no CNAME.
    let h = srv.handle_query(s(0.1), client(Transport::Udp), &query(4, "cart.shop.svc.cluster.local.", RecordType::A), &mut out);
    assert_eq!(h, Handled::Pending);
    let a = parse(&drain(&mut srv).pop().expect("answer"));
    assert_eq!(a.answers.len(), 1);
    assert_eq!(a.answers[0].record_type(), RecordType::A);
    // The second search element finds a service in another namespace: `db.shop` from ... is not the
    // case here, but `kube-dns.kube-system` via svc.cluster.local is.
    srv.handle_query(s(0.2), client(Transport::Udp), &query(5, "kube-dns.kube-system.shop.svc.cluster.local.", RecordType::A), &mut out);
    let a = parse(&drain(&mut srv).pop().expect("answer"));
    assert_eq!(a.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(a.answers[1].data, RData::A(A::new(10, 96, 0, 10)));
}

#[test]
fn autopath_without_a_known_pod_passes_through() {
    let mut srv = server(&k8s_block("autopath @kubernetes\n forward . 10.0.0.1"));
    let mut out = Vec::new();
    // Behind node-local-dns the source is the node, not a pod (coredns#4308): plain NXDOMAIN.
    let node = Client { src: "192.168.1.5:5353".parse().expect("addr"), ..client(Transport::Udp) };
    srv.handle_query(s(0.0), node, &query(3, "www.google.com.shop.svc.cluster.local.", RecordType::A), &mut out);
    let a = parse(&drain(&mut srv).pop().expect("answer"));
    assert_eq!(a.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn the_loop_plugin_halts_when_its_probe_comes_back_three_times() {
    let mut srv = server(".:53 {\n loop\n forward . 127.0.0.1:53\n}");
    let mut out = Vec::new();
    let probe = drain(&mut srv).pop().expect("probe to self");
    assert!(matches!(probe.dest, Dest::Local { port: 53, .. }));
    let me = Client {
        src: "127.0.0.1:33333".parse().expect("addr"),
        local: "127.0.0.1:53".parse().expect("addr"),
        transport: Transport::Udp,
        conn: 0,
    };
    // The upstream is us: every probe query we forward arrives again as a query. The first copy is
    // forwarded; copies arriving while it is in flight are coalesced onto it, so the loop goes round
    // once per read timeout (2 s) and the third sighting (at 4 s) halts.
    let mut pkt = probe.payload;
    let mut now = s(0.0);
    let mut sightings = 0;
    while srv.halted().is_none() {
        srv.handle_query(now, me, &pkt, &mut out);
        sightings += 1;
        loop {
            let fwd = drain(&mut srv).into_iter().find(|t| to_upstream(t).is_some() && !is_probe(t));
            if let Some(f) = fwd {
                pkt = f.payload;
                break;
            }
            now = srv.poll_timeout().expect("a retry is scheduled");
            srv.handle_timeout(now);
        }
        assert!(sightings <= 3, "halts on the third sighting");
    }
    assert_eq!(sightings, 3);
    assert_eq!(now, s(4.0));
    assert!(srv.halted().expect("halted").contains("Loop"));
}

#[test]
fn prefetch_refreshes_a_popular_entry_before_it_expires() {
    let mut srv = server(".:53 {\n forward . 10.0.0.1\n cache 3600 {\n prefetch 2 10m 10%\n }\n}");
    let mut out = Vec::new();
    srv.handle_query(s(0.0), client(Transport::Udp), &query(1, "hot.example.", RecordType::A), &mut out);
    let q = drain(&mut srv).pop().expect("upstream");
    srv.handle_upstream(s(0.0), up("10.0.0.1:53"), Transport::Udp, &answer(&q.payload, 1, false));
    drain(&mut srv);
    // TTL 60: hits at 10 s and 30 s do nothing; at 55 s (5 s left < 10% = 6 s) a hit triggers a refresh.
    for (t, expect_refresh) in [(10.0, false), (30.0, false), (55.0, true)] {
        assert_eq!(srv.handle_query(s(t), client(Transport::Udp), &query(2, "hot.example.", RecordType::A), &mut out), Handled::Answered);
        let refresh = drain(&mut srv).iter().any(|t| to_upstream(t).is_some());
        assert_eq!(refresh, expect_refresh, "at {t} s");
    }
}

#[test]
fn reload_keeps_the_cache_of_unchanged_blocks() {
    let text = ".:53 {\n forward . 10.0.0.1\n cache 30\n}";
    let mut srv = server(text);
    let mut out = Vec::new();
    srv.handle_query(s(0.0), client(Transport::Udp), &query(1, "k.example.", RecordType::A), &mut out);
    let q = drain(&mut srv).pop().expect("upstream");
    srv.handle_upstream(s(0.0), up("10.0.0.1:53"), Transport::Udp, &answer(&q.payload, 1, false));
    drain(&mut srv);
    let reparse = |t: &str| {
        let cf = resolver::corefile::parse_str(t, "Corefile", None, &|_| None).expect("parses");
        Arc::new(Config::from_corefile(&cf, std::path::Path::new(".")).expect("valid"))
    };
    srv.reconfigure(s(1.0), reparse(".:53 {\n forward . 10.0.0.2\n cache 30\n}"));
    assert_eq!(srv.handle_query(s(1.0), client(Transport::Udp), &query(2, "k.example.", RecordType::A), &mut out), Handled::Answered);
    srv.reconfigure(s(2.0), reparse(".:53 {\n forward . 10.0.0.2\n cache 10\n}"));
    assert_eq!(srv.handle_query(s(2.0), client(Transport::Udp), &query(3, "k.example.", RecordType::A), &mut out), Handled::Pending);
    // The counters carried over both reloads (Prometheus sees no reset): three queries, one hit.
    let b = &srv.metrics.blocks[0];
    assert_eq!(b.requests.iter().flatten().flatten().sum::<u64>(), 3);
    assert_eq!(b.cache_hits_success, 1);
}

#[test]
fn the_aaaa_suppression_template_answers_nodata_and_lets_a_through() {
    let mut srv = server(".:53 {\n template IN AAAA . {\n rcode NOERROR\n }\n forward . 10.0.0.1\n}");
    let mut out = Vec::new();
    srv.handle_query(s(0.0), client(Transport::Udp), &query(1, "www.example.", RecordType::AAAA), &mut out);
    let t = drain(&mut srv);
    assert_eq!(t.len(), 1);
    let m = parse(&t[0]);
    assert!(matches!(t[0].dest, Dest::Client(_)));
    assert_eq!((m.metadata.response_code, m.answers.len()), (ResponseCode::NoError, 0));
    srv.handle_query(s(0.0), client(Transport::Udp), &query(2, "www.example.", RecordType::A), &mut out);
    assert!(drain(&mut srv).iter().any(|t| to_upstream(t).is_some()));
}

#[test]
fn round_robin_policy_alternates_upstreams() {
    let mut srv = server(".:53 {\n forward . 10.0.0.1 10.0.0.2 {\n policy round_robin\n }\n}");
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for i in 0..4u16 {
        srv.handle_query(s(0.0), client(Transport::Udp), &query(i, &format!("n{i}.example."), RecordType::A), &mut out);
        seen.push(drain(&mut srv).iter().find_map(to_upstream).expect("upstream").0);
    }
    assert_eq!(seen, [up("10.0.0.1:53"), up("10.0.0.2:53"), up("10.0.0.1:53"), up("10.0.0.2:53")]);
}

#[test]
fn force_tcp_sends_every_upstream_query_over_tcp() {
    let mut srv = server(".:53 {\n forward . 10.0.0.1 {\n force_tcp\n }\n}");
    let mut out = Vec::new();
    srv.handle_query(s(0.0), client(Transport::Udp), &query(1, "a.example.", RecordType::A), &mut out);
    assert_eq!(drain(&mut srv).iter().find_map(to_upstream), Some((up("10.0.0.1:53"), Transport::Tcp)));
}

#[test]
fn pod_index_costs_24_bytes_per_pod() {
    // autopath's memory per pod (issue: "not proportional to every pod the way pods verified is"):
    // the index is one (IP, namespace) pair per pod.
    let mut text = String::from("apiVersion: v1\nkind: List\nitems:\n- {kind: Namespace, metadata: {name: a}}\n");
    for i in 0..2000u32 {
        text.push_str(&format!(
            "- {{kind: Pod, metadata: {{name: p{i}, namespace: a}}, status: {{podIP: 10.{}.{}.{}}}}}\n",
            i >> 16,
            (i >> 8) & 255,
            i & 255
        ));
    }
    let st = ClusterState::parse(&text, "pods").expect("parses");
    assert_eq!(st.pods.len(), 2000);
    assert_eq!(ClusterState::BYTES_PER_POD, 24);
    assert_eq!(st.pod_namespace(IpAddr::from([10, 0, 7, 207])), Some("a"));
    assert_eq!(st.pod_namespace(IpAddr::from([10, 0, 7, 208])), None);
}

#[test]
fn the_file_plugin_answers_authoritatively_from_a_zone() {
    let dir = std::env::temp_dir().join(format!("ndots-core-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("example.zone"), "$TTL 300\n@ IN SOA ns h 1 7200 1800 86400 60\nwww IN A 10.1.1.1\n").expect("write");
    let cf = resolver::corefile::parse_str(
        ".:53 {\n file example.zone example.org\n forward . 10.0.0.1\n}",
        "Corefile",
        Some(dir.clone()),
        &|_| None,
    )
    .expect("parses");
    let cfg = Config::from_corefile(&cf, &dir).expect("valid");
    let mut srv = Server::new(Arc::new(cfg), Arc::new(ClusterState::default()), 1);
    let mut out = Vec::new();
    srv.handle_query(s(0.0), client(Transport::Udp), &query(1, "www.example.org.", RecordType::A), &mut out);
    let a = parse(&drain(&mut srv).pop().expect("answer"));
    assert!(a.metadata.authoritative);
    assert_eq!(a.answers[0].data, RData::A(A::new(10, 1, 1, 1)));
    srv.handle_query(s(0.0), client(Transport::Udp), &query(2, "nope.example.org.", RecordType::A), &mut out);
    let a = parse(&drain(&mut srv).pop().expect("answer"));
    assert_eq!(a.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(a.authorities[0].record_type(), RecordType::SOA);
    // Outside the zone: forwarded.
    srv.handle_query(s(0.0), client(Transport::Udp), &query(3, "www.example.com.", RecordType::A), &mut out);
    assert!(drain(&mut srv).iter().any(|t| to_upstream(t).is_some()));
}

#[test]
fn prefer_udp_asks_upstream_over_udp_even_for_tcp_clients() {
    let mut srv = server(".:53 {\n forward . 10.0.0.1 {\n prefer_udp\n }\n}");
    let mut out = Vec::new();
    srv.handle_query(s(0.0), client(Transport::Tcp), &query(1, "a.example.", RecordType::A), &mut out);
    assert_eq!(drain(&mut srv).iter().find_map(to_upstream), Some((up("10.0.0.1:53"), Transport::Udp)));
    // Without it, a TCP client's query goes upstream over TCP (CoreDNS mirrors the client).
    let mut srv = server(".:53 {\n forward . 10.0.0.1\n}");
    srv.handle_query(s(0.0), client(Transport::Tcp), &query(1, "a.example.", RecordType::A), &mut out);
    assert_eq!(drain(&mut srv).iter().find_map(to_upstream), Some((up("10.0.0.1:53"), Transport::Tcp)));
}

#[test]
fn cluster_answers_are_memoised_and_never_outlive_a_state_change() {
    let mut srv = server(&k8s_block(""));
    let mut out = Vec::new();
    let q = query(1, "cart.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(srv.handle_query(s(0.0), client(Transport::Udp), &q, &mut out), Handled::Pending, "synthesised the first time");
    drain(&mut srv);
    assert_eq!(srv.handle_query(s(1.0), client(Transport::Udp), &q, &mut out), Handled::Answered, "then from the memo");
    let a = Message::from_vec(&out).expect("valid");
    assert_eq!((a.metadata.id, a.answers[0].data.clone()), (1, RData::A(A::new(10, 96, 12, 7))));
    // The Service gets a new ClusterIP: the next answer carries it.
    let changed = STATE.replace("clusterIP: 10.96.12.7", "clusterIP: 10.96.12.8");
    srv.handle_cluster_state(s(2.0), Arc::new(ClusterState::parse(&changed, "state").expect("state")));
    assert_eq!(srv.handle_query(s(2.0), client(Transport::Udp), &q, &mut out), Handled::Pending);
    let a = parse(&drain(&mut srv).pop().expect("answer"));
    assert_eq!(a.answers[0].data, RData::A(A::new(10, 96, 12, 8)));
}

#[test]
fn identical_questions_in_flight_share_an_upstream_exchange_unless_coalescing_is_off() {
    let corefile = ".:53 {\n    forward . 192.0.2.1\n}\n";
    for coalesce in [true, false] {
        let cf = resolver::corefile::parse_str(corefile, "Corefile", None, &|_| None).expect("parses");
        let mut cfg = Config::from_corefile(&cf, std::path::Path::new(".")).expect("valid");
        cfg.coalesce = coalesce;
        let mut srv = Server::new(Arc::new(cfg), Arc::new(ClusterState::default()), 42);
        let mut out = Vec::new();
        for id in 1..=3 {
            srv.handle_query(Duration::ZERO, client(Transport::Udp), &query(id, "www.example.org.", RecordType::A), &mut out);
        }
        let sent: Vec<Transmit> = drain(&mut srv).into_iter().filter(|t| matches!(t.dest, Dest::Upstream { .. })).collect();
        assert_eq!(sent.len(), if coalesce { 1 } else { 3 }, "coalesce {coalesce}");
        // Every client gets its answer either way.
        let mut answered = 0;
        for t in &sent {
            let Dest::Upstream { addr, transport } = t.dest else { continue };
            srv.handle_upstream(Duration::from_millis(1), addr, transport, &answer(&t.payload, 1, false));
        }
        for t in drain(&mut srv) {
            if matches!(t.dest, Dest::Client(_)) {
                answered += 1;
            }
        }
        assert_eq!(answered, 3, "coalesce {coalesce}");
    }
}

#[test]
fn a_shared_forward_table_refuses_across_blocks_when_full_and_frees_a_slot_per_answer() {
    // dnsmasq's one table for every forward (kube-dns in the simulator): cluster names to kubedns and
    // other names upstream take slots from the same 2.
    let corefile = "cluster.local:53 {\n    forward . 127.0.0.1:10053\n}\n.:53 {\n    forward . 192.0.2.1\n}\n";
    let cf = resolver::corefile::parse_str(corefile, "Corefile", None, &|_| None).expect("parses");
    let mut cfg = Config::from_corefile(&cf, std::path::Path::new(".")).expect("valid");
    cfg.forward_table = Some(2);
    let mut srv = Server::new(Arc::new(cfg), Arc::new(ClusterState::default()), 42);
    let mut out = Vec::new();
    let names = ["a.example.org.", "web.default.svc.cluster.local.", "b.example.org."];
    for (id, name) in names.iter().enumerate() {
        srv.handle_query(Duration::ZERO, client(Transport::Udp), &query(id as u16 + 1, name, RecordType::A), &mut out);
    }
    let all = drain(&mut srv);
    let sent: Vec<&Transmit> = all.iter().filter(|t| matches!(t.dest, Dest::Upstream { .. })).collect();
    assert_eq!(sent.len(), 2, "two slots, one per block");
    let refused: Vec<Message> = all.iter().filter(|t| matches!(t.dest, Dest::Client(_))).map(parse).collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].metadata.response_code, hickory_proto::op::ResponseCode::Refused);
    assert_eq!(refused[0].queries[0].name().to_ascii(), "b.example.org.");
    // One answer frees one slot: the next name is forwarded again.
    let Dest::Upstream { addr, transport } = sent[0].dest else { unreachable!() };
    srv.handle_upstream(Duration::from_millis(1), addr, transport, &answer(&sent[0].payload, 1, false));
    drain(&mut srv);
    srv.handle_query(Duration::from_millis(2), client(Transport::Udp), &query(9, "c.example.org.", RecordType::A), &mut out);
    assert_eq!(drain(&mut srv).iter().filter(|t| matches!(t.dest, Dest::Upstream { .. })).count(), 1);
}
