//! The hot paths, measured with criterion (`cargo bench -p benches`).

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use netmodel::conntrack::{Config, Conntrack, Tuple};
use netmodel::dnat::Rules;
use netmodel::{Kernel, Proto};
use resolver::{Client, ClusterState, Config as DnsConfig, Dest, Server, Transport};

fn query(id: u16, name: &str) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), RecordType::A));
    m.to_vec().expect("encode")
}

fn server(corefile: &str, state: ClusterState) -> Server {
    let cf = resolver::corefile::parse_str(corefile, "Corefile", None, &|_| None).expect("parses");
    let cfg = DnsConfig::from_corefile(&cf, std::path::Path::new(".")).expect("valid");
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

/// A cluster of `services` ClusterIP services and `pods` pods, as a kubectl List.
fn big_state(services: usize, pods: usize) -> ClusterState {
    let mut items = Vec::new();
    items.push(serde_json::json!({"kind": "Namespace", "metadata": {"name": "default"}}));
    for i in 0..services {
        items.push(serde_json::json!({"kind": "Service", "metadata": {"name": format!("svc-{i}"), "namespace": "default"},
            "spec": {"clusterIP": format!("10.96.{}.{}", i / 250, i % 250 + 1), "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}));
    }
    for i in 0..pods {
        items.push(serde_json::json!({"kind": "Pod", "metadata": {"name": format!("p-{i}"), "namespace": "default"},
            "status": {"podIP": format!("10.{}.{}.{}", 100 + i / 65536, (i / 256) % 256, i % 256)}}));
    }
    ClusterState::parse(&serde_json::json!({"kind": "List", "items": items}).to_string(), "bench").expect("state")
}

fn wire(c: &mut Criterion) {
    let q = query(7, "www.example.com.");
    let mut name = Vec::with_capacity(256);
    c.bench_function("wire/parse_query", |b| b.iter(|| resolver::wire::parse_query(black_box(&q), &mut name).expect("parses").qtype));
}

fn cache_hit(c: &mut Criterion) {
    let mut s = server(".:53 {\n forward . 10.0.0.1\n cache 30\n}", ClusterState::default());
    let q = query(7, "www.example.com.");
    let mut out = Vec::with_capacity(4096);
    s.handle_query(Duration::ZERO, client(), &q, &mut out);
    let up = s.poll_transmit().expect("upstream query");
    let req = Message::from_vec(&up.payload).expect("query");
    let mut a = Message::new(req.metadata.id, MessageType::Response, OpCode::Query);
    a.add_query(req.queries[0].clone());
    a.add_answer(Record::from_rdata(req.queries[0].name().clone(), 300, RData::A(A::new(93, 184, 215, 14))));
    let Dest::Upstream { addr, .. } = up.dest else { panic!("upstream") };
    s.handle_upstream(Duration::ZERO, addr, Transport::Udp, &a.to_vec().expect("encode"));
    while s.poll_transmit().is_some() {}
    c.bench_function("server/cache_hit_bytes_to_bytes", |b| {
        b.iter(|| s.handle_query(Duration::from_secs(1), client(), black_box(&q), &mut out));
    });
}

fn synthesis(c: &mut Criterion) {
    let mut s = server(".:53 {\n kubernetes cluster.local {\n pods insecure\n }\n}", big_state(10_000, 100_000));
    let q = query(7, "svc-4242.default.svc.cluster.local.");
    let mut out = Vec::new();
    // The first answer is synthesised; after that the memo answers it inline, as a cache hit.
    c.bench_function("server/cluster_record_10k_services_100k_pods", |b| {
        b.iter(|| {
            if s.handle_query(Duration::ZERO, client(), black_box(&q), &mut out) == resolver::Handled::Pending {
                out = s.poll_transmit().expect("answer").payload;
            }
        })
    });
    // Synthesis itself: a fresh state every time empties the memo.
    let state = s.cluster_state().clone();
    c.bench_function("server/cluster_record_synthesis_uncached", |b| {
        b.iter(|| {
            s.handle_cluster_state(Duration::ZERO, state.clone());
            s.handle_query(Duration::ZERO, client(), black_box(&q), &mut out);
            s.poll_transmit().expect("answer")
        })
    });
}

/// From one watch event to the changed answer, at 10,000 Services with 10 endpoints each and 100,000
/// Pods (pods verified): the event applied, the state rebuilt, handed to a server, the name answered.
/// The rebuild is O(cluster), so this is what a busy cluster pays per batch of events.
fn watch_event_to_answer(c: &mut Criterion) {
    use benches::SyntheticCluster;
    use resolver::cluster::{Kind, Object, WatchEvent, Watched};
    let cluster = SyntheticCluster { services: 10_000, endpoints_per_service: 10, pods: 100_000 };
    let mut w = Watched::requiring_namespaces(&Kind::ALL);
    cluster.list_into(&mut w, &Kind::ALL);
    let mut s = server(".:53 {\n kubernetes cluster.local {\n pods verified\n }\n}", w.state());
    let q = query(7, "svc-00042.team-042.svc.cluster.local.");
    let mut out = Vec::new();
    let mut port = 0u32;
    let mut group = c.benchmark_group("cluster");
    group.sample_size(10);
    group.bench_function("watch_event_to_answer_10k_services_100k_endpoints_100k_pods", |b| {
        b.iter(|| {
            // The Service changes a port each time, so every iteration is a real change.
            port = port.wrapping_add(1);
            let mut v = SyntheticCluster::service(42);
            v["spec"]["ports"][0]["port"] = serde_json::json!(1000 + port % 1000);
            w.handle(Kind::Service, WatchEvent::Apply(Object::from_json(v).expect("object")));
            s.handle_cluster_state(Duration::ZERO, Arc::new(w.state()));
            s.handle_query(Duration::ZERO, client(), black_box(&q), &mut out);
            s.poll_transmit().expect("answer")
        })
    });
    group.finish();
}

fn forwarded(c: &mut Criterion) {
    let mut s = server(".:53 {\n forward . 10.0.0.1\n}", ClusterState::default());
    let q = query(7, "www.example.com.");
    let mut out = Vec::new();
    let up: SocketAddr = "10.0.0.1:53".parse().expect("addr");
    c.bench_function("server/forwarded_query_full_path", |b| {
        b.iter(|| {
            s.handle_query(Duration::ZERO, client(), black_box(&q), &mut out);
            let t = s.poll_transmit().expect("upstream query");
            let mut a = t.payload.clone();
            a[2] |= 0x80;
            s.handle_upstream(Duration::ZERO, up, Transport::Udp, &a);
            s.poll_transmit().expect("answer")
        })
    });
}

fn kernel(c: &mut Criterion) {
    let mut ct = Conntrack::new(Config::for_kernel(Kernel::new(5, 15), 131_072));
    let mut rules = Rules::default();
    let vip: SocketAddr = "10.96.0.10:53".parse().expect("addr");
    rules.set(Proto::Udp, vip, vec!["10.244.0.2:53".parse().expect("addr"), "10.244.1.2:53".parse().expect("addr")]);
    let mut rng = fastrand::Rng::with_seed(1);
    let mut port = 0u16;
    let mut now = Duration::ZERO;
    c.bench_function("netmodel/dnat_and_conntrack_new_flow", |b| {
        b.iter(|| {
            port = port.wrapping_add(1);
            now += Duration::from_micros(100);
            let t = Tuple::udp(SocketAddr::new([10, 0, 0, 5].into(), 32768 + port % 28000), vip);
            let Some(netmodel::dnat::Choice::Dnat(ep)) = rules.choose(Proto::Udp, vip, &mut rng) else { panic!("service") };
            let p = ct.begin(t, ep);
            ct.confirm(now, p, None, &mut rng)
        })
    });
}

fn client_model(c: &mut Criterion) {
    let zone = "$TTL 300\n@ IN SOA ns h 1 7200 1800 86400 60\nwww.google.com. IN A 142.250.74.100\nwww.google.com. IN AAAA 2a00::1\n";
    let rc = sim::client::ResolvConf::parse(&sim::client::ResolvConf::kubelet_cluster_first(
        "10.96.0.10".parse().expect("ip"),
        "default",
        "cluster.local",
        &["ec2.internal"],
    ));
    let call = sim::client::Call {
        name: "www.google.com".into(),
        hints: sim::client::Hints::NULL,
        pod: sim::client::PodAddrs(vec!["10.244.1.10".parse().expect("ip")]),
    };
    let mut h = sim::client::harness::Harness::new(zone, ".", vec![]).expect("harness");
    c.bench_function("sim/glibc_lookup_10_queries", |b| {
        b.iter(|| {
            let mut g =
                sim::client::glibc::Glibc::new(Duration::ZERO, sim::client::glibc::Version::CURRENT, &rc, &call, Default::default(), 1);
            h.run(&mut g, Duration::from_secs(60)).1
        })
    });
}

criterion_group!(benches, wire, cache_hit, synthesis, watch_event_to_answer, forwarded, kernel, client_model);
criterion_main!(benches);
