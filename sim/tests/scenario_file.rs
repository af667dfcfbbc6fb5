//! Scenario files: what a file means, and the error every kind of mistake gets (file, line, what was
//! expected).

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use sim::ClusterSpec;
use sim::file::{FileError, Scenario, parse, to_yaml};
use sim::spec::{Fault, Library, MemoryModel, ProxyMode};

fn load(text: &str) -> Result<Scenario, FileError> {
    parse(text, "test.yaml", Path::new("."), &[])
}

fn err(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

const FULL: &str = r#"version: 1
name: busy shop
seed: 42
duration: 30s
cluster:
  azs: 2
  nodes: 4
  cpus_per_node: 8
  kernel: "4.19"
  extra_pods: 100
kube_proxy:
  mode: ipvs
  ipvs:
    udp_timeout: 10s
    graceful: v1
coredns:
  replicas: 3
  memory: {limit_mib: 170, model: coredns}
  autoscaler: {nodes_per_replica: 2}
node_local: {}
upstream:
  eni_limit: null
pods:
  - count: 20
    namespace: shop
    library: musl-1.2.4
    rate: 5
    names: {web: 3, "www.google.com.": 1}
    hints: {addrconfig: true}
  - count: 4
    library: go-cgo-2.31
    client_cache: java
    threadpool: 4
    names: {api: 1}
    dns_config:
      options: [{name: ndots, value: "2"}]
faults:
  - {at: 10s, kill_replica: 1}
  - at: 12s
    az_loss: {az: 1, loss: 0.05}
  - {at: 20s, apiserver_restart: true}
expect:
  p99_ms_max: 100
  success_rate_min: 0.999
"#;

#[test]
fn a_file_sets_every_part_of_the_cluster_and_the_rest_is_the_smoke_default() {
    let sc = load(FULL).expect("valid file");
    let s = &sc.spec;
    assert_eq!(sc.name.as_deref(), Some("busy shop"));
    assert_eq!((s.seed, s.duration, s.azs, s.nodes, s.cpus_per_node, s.extra_pods), (42, Duration::from_secs(30), 2, 4, 8, 100));
    assert_eq!(s.kernel, netmodel::Kernel::new(4, 19));
    let ProxyMode::Ipvs(ipvs) = s.proxy else { panic!("ipvs expected") };
    assert_eq!(ipvs.udp_timeout, Duration::from_secs(10));
    assert_eq!(ipvs.graceful, netmodel::ipvs::Graceful::V1);
    // kube-proxy's own choice for the kernel where the file is silent (conn_reuse_mode 0 below 5.9).
    assert_eq!(ipvs.conn_reuse_mode, 0);
    assert_eq!(s.coredns_replicas, 3);
    let mem = s.replica_memory.expect("memory");
    assert_eq!(mem.limit, 170 << 20);
    assert!(matches!(mem.model, MemoryModel::CoreDns(_)));
    assert_eq!(s.autoscaler.map(|a| (a.nodes_per_replica, a.cores_per_replica, a.nodes)), Some((2, 256, 4)));
    assert!(s.node_local.as_ref().is_some_and(|n| n.bind_kube_dns && n.corefile.contains("__PILLAR__")));
    assert_eq!(s.eni_limit, None);
    assert_eq!(s.corefile, sim::spec::KUBEADM_COREFILE);
    let shop = &s.pods[0];
    assert_eq!((shop.count, shop.namespace.as_str(), shop.rate), (20, "shop", 5.0));
    assert_eq!(shop.library, Library::Musl(sim::client::musl::Version(1, 2, 4)));
    assert_eq!(shop.names, vec![("web".to_string(), 3), ("www.google.com.".to_string(), 1)]);
    assert!(shop.hints.addrconfig && !shop.hints.v4mapped);
    assert_eq!(shop.resolv_conf, None, "ClusterFirst without dnsConfig: the kubelet's file, made per node");
    let java = &s.pods[1];
    assert_eq!(java.library, Library::GoCgo(sim::client::glibc::Version(2, 31)));
    assert_eq!(java.client_cache, Some(sim::spec::ClientCache::JAVA));
    assert_eq!(java.threadpool, Some(4));
    assert_eq!(
        java.resolv_conf.as_deref(),
        Some("search default.svc.cluster.local svc.cluster.local cluster.local ec2.internal\nnameserver 10.96.0.10\noptions ndots:2\n"),
        "dnsConfig options replace the kubelet's of the same name"
    );
    assert_eq!(
        s.faults,
        vec![
            (Duration::from_secs(10), Fault::KillReplica(1)),
            (Duration::from_secs(12), Fault::AzLoss { az: 1, loss: 0.05 }),
            (Duration::from_secs(20), Fault::ApiserverRestart)
        ]
    );
    assert_eq!(sc.expect.p99_ms_max, Some(100.0));
}

#[test]
fn writing_a_scenario_and_reading_it_back_gives_the_same_scenario() {
    let sc = load(FULL).expect("valid");
    let text = to_yaml(&sc, "round trip");
    assert!(text.starts_with("# round trip\n"));
    assert_eq!(load(&text).expect("its own output parses"), sc, "\n{text}");
    // The smoke cluster, written out, is short: defaults are left out.
    let smoke = Scenario { name: None, description: None, spec: ClusterSpec::smoke(1), expect: Default::default() };
    let text = to_yaml(&smoke, "");
    assert_eq!(load(&text).expect("parses").spec, smoke.spec);
    assert!(text.lines().count() < 20, "{text}");
}

#[test]
fn unknown_keys_are_errors_with_the_line_and_the_keys_expected() {
    let e = err("version: 1\ncoredns:\n  replica: 3\n");
    assert!(e.starts_with("test.yaml:3:3: coredns: unknown field `replica`, expected one of"), "{e}");
    assert!(e.contains("`replicas`"), "{e}");
    let e = err("version: 1\npods:\n  - count: 1\n    libary: musl\n");
    assert!(e.starts_with("test.yaml:4:5:") && e.contains("unknown field `libary`"), "{e}");
}

#[test]
fn bad_values_are_errors_at_the_value_saying_what_was_expected() {
    let e = err("version: 1\npods:\n  - count: 1\n    library: glibc-two\n    names: {web: 1}\n");
    assert!(e.starts_with("test.yaml:4:") && e.contains("unknown client library `glibc-two`; expected one of glibc"), "{e}");
    let e = err("version: 1\ncluster:\n  kernel: 5.10\n");
    assert!(e.starts_with("test.yaml:3:") && e.contains("write it quoted"), "{e}");
    let e = err("version: 1\nduration: ten seconds\n");
    assert!(e.starts_with("test.yaml:2:") && e.contains("duration"), "{e}");
    let e = err("version: 1\ncluster:\n  nodes: many\n");
    assert!(e.starts_with("test.yaml:3:") && e.contains("invalid type"), "{e}");
    let e = err("version: 1\nkube_proxy:\n  conntrack_cleanup: sometimes\n");
    assert!(e.starts_with("test.yaml:3:") && e.contains("expected `on-sync`, `never`, or a delay"), "{e}");
}

#[test]
fn a_fault_needs_a_time_and_exactly_one_kind() {
    let e = err("version: 1\nfaults:\n  - {at: 1s, kill_replica: 0, apiserver_restart: true}\n");
    assert!(e.starts_with("test.yaml:3:") && e.contains("exactly one of"), "{e}");
    let e = err("version: 1\nfaults:\n  - kill_replica: 0\n");
    assert!(e.starts_with("test.yaml:3:") && e.contains("needs `at`"), "{e}");
    let e = err("version: 1\nfaults:\n  - {at: 1s, az_loss: {az: 0, loss: 5}}\n");
    assert!(e.contains("expected a fraction from 0.0 to 1.0"), "{e}");
    let e = err("version: 1\nfaults:\n  - {at: 1s, link_loss: {a: 1, b: 1, loss: 0.1}}\n");
    assert!(e.starts_with("test.yaml:3:") && e.contains("a link joins two nodes"), "{e}");
}

#[test]
fn checks_across_keys_point_at_the_line_of_the_offending_key() {
    let text = "version: 1\ncoredns:\n  replicas: 2\nfaults:\n  - at: 1s\n    kill_replica: 0\n  - at: 2s\n    kill_replica: 5\n";
    let e = err(text);
    assert_eq!(e, "test.yaml:8:5: kill_replica 5: out of range, coredns.replicas is 2 (counted from 0)");
    let e = err("version: 1\nduration: 10s\nfaults:\n  - at: 11s\n    apiserver_restart: true\n");
    assert!(e.starts_with("test.yaml:4:5: at 11s: after the end of the run"), "{e}");
    let e = err("version: 1\nfaults:\n  - {at: 1s, node_local_down: 0}\n");
    assert!(e.contains("needs `node_local` deployed"), "{e}");
    let e = err("version: 1\nfaults:\n  - {at: 1s, roll_node_local: 5s}\n");
    assert!(e.starts_with("test.yaml:3:") && e.contains("roll_node_local needs `node_local` deployed"), "{e}");
    let e = err("version: 1\ncluster:\n  nodes: 3\nfaults:\n  - {at: 1s, link_loss: {a: 0, b: 3, loss: 0.1}}\n");
    assert!(e.contains("link_loss 3: out of range, cluster.nodes is 3"), "{e}");
    let e = err("version: 1\npods:\n  - namespace: shop\n");
    assert!(e.starts_with("test.yaml:3:") && e.contains("needs `count`"), "{e}");
}

#[test]
fn the_version_is_required_and_checked() {
    assert_eq!(err("seed: 1\n"), "test.yaml: missing `version: 1` (the file format's version)");
    assert!(err("version: 2\n").starts_with("test.yaml:1:1: unsupported version 2"));
}

#[test]
fn the_replicas_server_is_ndots_coredns_by_release_or_kube_dns() {
    use sim::spec::ServerProfile;
    assert_eq!(load("version: 1\n").expect("loads").spec.server, ServerProfile::Ndots);
    let sc = load("version: 1\ncoredns:\n  server: coredns-1.6.7\n").expect("loads");
    assert_eq!(sc.spec.server, ServerProfile::CoreDns(Some("1.6.7".into())));
    assert_eq!(sc.spec.server.to_string(), "coredns-1.6.7");
    // A release refuses Corefile syntax it did not have, naming the file and the line.
    let e = err(
        "version: 1\ncoredns:\n  server: coredns-1.6.7\n  corefile: |\n    .:53 {\n        forward . /etc/resolv.conf {\n            max_concurrent 1000\n        }\n    }\n",
    );
    assert!(e.contains("coredns.corefile):3: coredns-1.6.7 has no forward's `max_concurrent`") && e.contains("CoreDNS 1.6.8"), "{e}");
    let e = err("version: 1\ncoredns:\n  server: bind9\n");
    assert!(e.starts_with("test.yaml:3:") && e.contains("expected `ndots`, `coredns`, `coredns-VERSION`"), "{e}");
    assert!(e.contains("or `kube-dns`"), "{e}");
    let kd = load("version: 1\ncoredns:\n  server: kube-dns\n").expect("loads");
    assert_eq!((kd.spec.server.clone(), kd.spec.server.to_string()), (ServerProfile::KubeDns, "kube-dns".to_string()));
}

#[test]
fn a_kube_proxy_version_is_a_quoted_release() {
    let sc = load("version: 1\nkube_proxy:\n  version: v1.32.4\n").expect("loads");
    assert_eq!(sc.spec.kube_proxy.version, netmodel::dnat::KubeProxyVersion::new(1, 32));
    let e = err("version: 1\nkube_proxy:\n  version: 1.30\n");
    assert!(e.starts_with("test.yaml:3:") && e.contains("is a number; write it quoted"), "{e}");
    let e = err("version: 1\nkube_proxy:\n  version: latest\n");
    assert!(e.contains("expected MAJOR.MINOR"), "{e}");
}

#[test]
fn a_broken_corefile_names_its_own_line() {
    let e = err("version: 1\ncoredns:\n  corefile: |\n    .:53 {\n        forward\n    }\n");
    assert!(e.starts_with("test.yaml:3:3: ") && e.contains("coredns.corefile):2:"), "{e}");
}

#[test]
fn a_corefile_reads_the_simulated_node_s_files_never_the_machine_s() {
    // `forward . /etc/resolv.conf` reads the node's file (the AZ's resolver) ...
    load("version: 1\ncoredns:\n  corefile: |\n    .:53 {\n        forward . /etc/resolv.conf\n    }\n").expect("node resolv.conf");
    // ... and a file every Linux machine has is not on a simulated node, whatever runs the simulation.
    let e = err("version: 1\ncoredns:\n  corefile: |\n    .:53 {\n        hosts /etc/hosts\n        forward . /etc/resolv.conf\n    }\n");
    assert!(e.contains("coredns.corefile):2:") && e.contains("cannot read /etc/hosts: a simulated node has only /etc/resolv.conf"), "{e}");
}

#[test]
fn set_overrides_change_the_file_and_unknown_keys_still_fail() {
    let sets = |s: &[&str]| s.iter().map(ToString::to_string).collect::<Vec<_>>();
    let sc = parse(FULL, "t.yaml", Path::new("."), &sets(&["coredns.replicas=5", "pods.0.library=go", "node_local=null"])).expect("valid");
    assert_eq!(sc.spec.coredns_replicas, 5);
    assert_eq!(sc.spec.pods[0].library, Library::Go);
    assert!(sc.spec.node_local.is_none());
    let e = parse(FULL, "t.yaml", Path::new("."), &sets(&["coredns.replicaz=5"])).expect_err("unknown key");
    assert!(e.to_string().contains("unknown field `replicaz`") && e.to_string().contains("after --set coredns.replicaz=5"), "{e}");
    let e = parse(FULL, "t.yaml", Path::new("."), &sets(&["pods.7.rate=1"])).expect_err("no such pod group");
    assert!(e.to_string().contains("index 7: the list has 2 entries"), "{e}");
}

#[test]
fn files_next_to_the_scenario_are_read_relative_to_it_and_a_missing_one_is_named() {
    let dir = std::env::temp_dir().join(format!("ndots-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    std::fs::write(dir.join("Corefile"), ".:53 {\n    forward . /etc/resolv.conf\n    cache 30\n}\n").expect("write");
    std::fs::write(dir.join("s.yaml"), "version: 1\ncoredns:\n  corefile_file: Corefile\ncluster:\n  state_file: ../../nowhere.yaml\n")
        .expect("write");
    let e = sim::file::load(&dir.join("s.yaml"), &[]).expect_err("missing state file");
    assert!(e.to_string().contains(":5:3: cluster.state_file: cannot read"), "{e}");
    std::fs::write(dir.join("s.yaml"), "version: 1\ncoredns:\n  corefile_file: Corefile\n").expect("write");
    let sc = sim::file::load(&dir.join("s.yaml"), &[]).expect("valid");
    assert!(sc.spec.corefile.contains("cache 30"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_kubectl_dump_joins_the_simulated_cluster_and_its_services_resolve() {
    let dump = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/cluster-state.yaml")).expect("example");
    let indented: String = dump.lines().map(|l| format!("    {l}\n")).collect();
    let text = format!(
        "version: 1\nseed: 5\nduration: 5s\ncluster:\n  state: |\n{indented}pods:\n  - count: 6\n    namespace: shop\n    rate: 4\n    names: {{cart: 1}}\n"
    );
    let sc = load(&text).expect("valid");
    let r = sim::run(sc.spec).expect("runs");
    let carts: Vec<_> = r.lookups.iter().filter(|l| l.name == "cart").collect();
    assert!(carts.len() > 50, "{} lookups", carts.len());
    let cart_ip: IpAddr = "10.96.12.7".parse().expect("ip");
    assert!(carts.iter().all(|l| l.ok && l.addr == Some(cart_ip)), "cart.shop comes from the dump: {:?}", carts.first());
}

#[test]
fn the_readme_example_file_is_valid() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).expect("README");
    let from = readme.find("The format (version 1)").expect("format section");
    let block = readme[from..].split("```yaml\n").nth(1).and_then(|b| b.split("```").next()).expect("yaml block");
    let dir = std::env::temp_dir().join(format!("ndots-readme-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let ex = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/");
    std::fs::copy(format!("{ex}kubeadm.Corefile"), dir.join("Corefile")).expect("copy");
    std::fs::copy(format!("{ex}cluster-state.yaml"), dir.join("cluster.yaml")).expect("copy");
    std::fs::write(dir.join("internet.zone"), sim::spec::DEFAULT_INTERNET).expect("zone");
    std::fs::write(dir.join("cluster.yaml.scenario"), block).expect("write");
    let sc = sim::file::load(&dir.join("cluster.yaml.scenario"), &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((sc.spec.nodes, sc.spec.pods[0].count, sc.spec.faults.len()), (6, 100, 16));
    assert_eq!(sc.spec.kube_proxy.version, netmodel::dnat::KubeProxyVersion::new(1, 33));
    assert!(sc.spec.cluster_state.is_some() && sc.spec.node_local.is_some());
    assert_eq!(sc.expect.unfinished_max, Some(0));
    // Every fault's label (reports, events, explain) is the file's own syntax: written back as the
    // faults of the same file, they read as the same faults.
    let labels: String = sc.spec.faults.iter().map(|(at, f)| format!("  - {{at: {}ms, {}}}\n", at.as_millis(), f.label())).collect();
    let (head, tail) = block.split_once("faults:\n").expect("faults");
    let rest = &tail[tail.find("expect:").expect("expect after faults")..];
    std::fs::write(dir.join("labels.scenario"), format!("{head}faults:\n{labels}{rest}")).expect("write");
    let again = sim::file::load(&dir.join("labels.scenario"), &[]).unwrap_or_else(|e| panic!("{e}\n{labels}"));
    assert_eq!(again.spec.faults, sc.spec.faults, "{labels}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_scenario_file_fuzz_corpus_and_regressions_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut n = 0;
    for dir in [root.join("corpus/scenario_file"), root.join("regressions/scenario_file")] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.filter_map(Result::ok) {
            sim::file::fuzz(&std::fs::read(e.path()).expect("read"));
            n += 1;
        }
    }
    assert!(n >= 2);
}

#[test]
fn the_default_internet_answers_any_external_name_and_no_search_path_expansion() {
    let text = "version: 1\nseed: 3\nduration: 4s\npods:\n  - count: 4\n    rate: 5\n    names: {shop.example.org: 1, \"db-{n}.abc.eu-west-1.rds.amazonaws.com\": 1, mail.google.com: 1, cart: 1, orders.billing.svc: 1, web.nosuchns: 1}\n  - count: 1\n    namespace: billing\n    names: {orders: 1}\n";
    let r = sim::run(load(text).expect("valid").spec).expect("runs");
    // `cart` and `orders.billing.svc` get generated Services (there is no cluster state).
    for name in ["shop.example.org", "db-{n}.abc.eu-west-1.rds.amazonaws.com", "mail.google.com", "cart", "orders.billing.svc"] {
        let ls: Vec<_> = r.lookups.iter().filter(|l| l.name == name).collect();
        assert!(ls.len() > 5, "{name}: {} lookups", ls.len());
        assert!(ls.iter().all(|l| l.ok), "{name} resolves: {:?}", ls.iter().find(|l| !l.ok));
    }
    // `nosuchns` is no namespace: the walk ends NXDOMAIN at the cloud resolver (the expansions
    // under `ec2.internal` included), as on the internet.
    let nx: Vec<_> = r.lookups.iter().filter(|l| l.name == "web.nosuchns").collect();
    assert!(!nx.is_empty() && nx.iter().all(|l| !l.ok));
    let zone = resolver::zone::Zone::parse(sim::spec::DEFAULT_INTERNET, ".").expect("zone");
    let n = |s: &str| resolver::wire::name_from_str(s).expect("name");
    for nx in ["www.google.com.ec2.internal", "x.us-west-2.compute.internal", "web.cluster.local", "4.3.2.1.in-addr.arpa"] {
        assert_eq!(zone.lookup(&n(nx), resolver::wire::TYPE_A).rcode, resolver::wire::RCODE_NXDOMAIN, "{nx}");
    }
    for ok in ["anything.dev", "a.b.c.example.net", "x.example.com", "gist.github.com", "maps.google.com"] {
        assert_eq!(zone.lookup(&n(ok), resolver::wire::TYPE_A).answers.len(), 1, "{ok}");
    }
}

#[test]
fn an_upstream_zone_that_does_not_parse_names_the_file_and_the_key() {
    let dir = std::env::temp_dir().join(format!("ndots-zone-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    std::fs::write(dir.join("internet.zone"), "www.example.com. 60 IN A 192.0.2.1\n").expect("write");
    std::fs::write(dir.join("s.yaml"), "version: 1\nupstream:\n  zone_file: internet.zone\n").expect("write");
    let e = sim::file::load(&dir.join("s.yaml"), &[]).expect_err("no SOA");
    let e = e.to_string();
    assert!(e.contains(":3:3:") && e.contains("internet.zone") && e.contains("no SOA"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_region_gives_the_nodes_search_domain_as_aws_dhcp_options_do() {
    let sc = load("version: 1\ncluster:\n  region: eu-west-2\npods:\n  - count: 1\n    names: {web: 1}\n    dns_config: {options: [{name: ndots, value: \"2\"}]}\n").expect("valid");
    assert_eq!(sc.spec.node_search, ["eu-west-2.compute.internal"]);
    let rc = sc.spec.pods[0].resolv_conf.as_deref().expect("dns_config writes the file");
    assert!(rc.contains("search default.svc.cluster.local svc.cluster.local cluster.local eu-west-2.compute.internal\n"), "{rc}");
    assert_eq!(load("version: 1\ncluster: {region: us-east-1}\n").expect("valid").spec.node_search, ["ec2.internal"]);
    let gke = load("version: 1\ncluster: {node_search: [c.shop-prod.internal, google.internal]}\n").expect("valid");
    assert_eq!(gke.spec.node_search, ["c.shop-prod.internal", "google.internal"]);
    let e = err("version: 1\ncluster:\n  region: westeurope\n");
    assert!(e.contains(":3:3:") && e.contains("expected an AWS region"), "{e}");
    let e = err("version: 1\ncluster:\n  region: us-east-2\n  node_search: [x.internal]\n");
    assert!(e.contains(":4:3:") && e.contains("not both"), "{e}");
}

#[test]
fn pod_defaults_give_every_group_what_it_does_not_say_itself() {
    let text = "version: 1
pod_defaults:
  library: musl
  rate: 3
  dns_config: {options: [{name: ndots, value: \"2\"}]}
pods:
  - count: 2
    names: {web: 1}
  - count: 1
    library: go
    names: {api: 1}
    resolv_conf: \"nameserver 10.96.0.10\\noptions ndots:5\\n\"
";
    let sc = load(text).expect("valid");
    let [a, b] = &sc.spec.pods[..] else { panic!("two groups") };
    assert_eq!((a.library.to_string(), a.rate), ("musl-1.2.5".into(), 3.0));
    assert!(a.resolv_conf.as_deref().is_some_and(|r| r.contains("options ndots:2")), "{:?}", a.resolv_conf);
    assert_eq!((b.library, b.rate), (Library::Go, 3.0), "its own library, the default rate");
    assert_eq!(b.resolv_conf.as_deref(), Some("nameserver 10.96.0.10\noptions ndots:5\n"), "its own file, not the default dnsConfig");
    let e = err("version: 1\npod_defaults:\n  library: muslx\npods:\n  - count: 1\n    names: {web: 1}\n");
    assert!(e.contains(":3:") && e.contains("unknown client library `muslx`"), "{e}");
    let e = err("version: 1\npod_defaults:\n  count: 3\n");
    assert!(e.contains(":3:3:") && e.contains("give `count` in each group"), "{e}");
}

#[test]
fn a_cluster_mid_upgrade_runs_each_node_s_own_kernel() {
    // Node 0 on 4.15 (the race drops), nodes 1 and 2 on 5.15: only node 0's pods stall.
    let text =
        "version: 1\nseed: 2\nduration: 20s\ncluster:\n  kernels: {\"4.15\": 1, \"5.15\": 2}\npods:\n  - count: 30\n    names: {web: 1}\n";
    let sc = load(text).expect("valid");
    assert_eq!(sc.spec.kernel, "4.15".parse().expect("kernel"), "the oldest");
    let r = sim::run(sc.spec).expect("runs");
    let stalled: Vec<usize> = r.lookups.iter().filter(|l| l.latency() >= Duration::from_secs(5)).map(|l| l.pod % 3).collect();
    assert!(!stalled.is_empty() && stalled.iter().all(|n| *n == 0), "pods are placed round-robin: pod % 3 is its node; {stalled:?}");
    let e = err("version: 1\ncluster:\n  nodes: 4\n  kernels: {\"5.10\": 3}\n");
    assert!(e.contains(":4:3:") && e.contains("add up to 3; cluster.nodes is 4"), "{e}");
    let e = err("version: 1\ncluster:\n  kernel: \"5.4\"\n  kernels: {\"5.10\": 3}\n");
    assert!(e.contains("not both"), "{e}");
    let again = load(&sim::file::to_yaml(&load(text).expect("valid"), "")).expect("round trip");
    assert_eq!(again.spec.node_kernels.len(), 3);
}
