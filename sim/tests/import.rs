//! `ndots-sim import` on checked-in dumps of realistic clusters (`tests/dumps/`): what it reads from
//! each, that the scenario it writes loads and runs with the success rate a healthy cluster has, and
//! the command's contract (files written, a live context through kubectl, errors that say what to do).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sim::import::{Options, import, library::Rule};

const EKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dumps/eks-shop.yaml");
const ONPREM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dumps/kubeadm-ipvs-nodelocal.yaml");

fn dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ndots-import-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

fn sim(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ndots-sim"));
    c.args(args).env_remove("SIM_SEED");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Imports a dump into `d` and loads what was written.
fn imported(dump: &str, d: &Path, rules: &[&str]) -> sim::file::Scenario {
    let opts = Options {
        name: "t".into(),
        rate: 1.0,
        rules: rules.iter().map(|r| r.parse::<Rule>().expect("rule")).collect(),
        state_file: "t.state.yaml".into(),
    };
    let i = import(&std::fs::read_to_string(dump).expect("dump"), dump, &opts).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(d.join("t.yaml"), &i.scenario).expect("write");
    std::fs::write(d.join("t.state.yaml"), &i.state).expect("write");
    sim::file::load(&d.join("t.yaml"), &[]).unwrap_or_else(|e| panic!("{e}\n{}", i.scenario))
}

#[test]
fn an_eks_dump_becomes_its_cluster_and_runs_healthy() {
    let d = dir("eks");
    let sc = imported(EKS, &d, &[]);
    let s = &sc.spec;
    assert_eq!((s.nodes, s.azs, s.cpus_per_node), (9, 3, 4));
    assert_eq!(s.kernel, "5.10".parse().expect("kernel"), "the oldest of the nodes' kernels");
    let k = |v: &str| v.parse::<netmodel::Kernel>().expect("kernel");
    assert_eq!(s.node_kernels, [vec![k("5.10"); 6], vec![k("6.1"); 3]].concat(), "six on 5.10, three upgraded to 6.1");
    assert_eq!(s.node_search, ["eu-west-1.compute.internal"], "the region's search domain");
    assert!(s.eni_limit.is_some(), "AWS: the ENI's packet budget");
    assert_eq!(s.server, sim::spec::ServerProfile::CoreDns(Some("1.11.1".into())));
    assert_eq!(s.coredns_replicas, 2);
    assert!(s.corefile.contains("lameduck 5s") && s.corefile.contains("forward . /etc/resolv.conf"));
    assert_eq!(s.kube_proxy.version, netmodel::dnat::KubeProxyVersion::new(1, 29));
    assert_eq!((s.proxy, s.conntrack_max_per_core), (sim::spec::ProxyMode::Iptables, 32768));
    assert!(s.node_local.is_none());
    // 18 host-network pods and the 2 CoreDNS pods are state only; the Succeeded job and the Pending
    // pod are not running.
    assert_eq!(s.extra_pods, 20);
    assert_eq!(s.pods.iter().map(|g| g.count).sum::<usize>(), 23);
    let lib = |ns: &str, l: &str| s.pods.iter().filter(|g| g.namespace == ns && g.library.to_string() == l).collect::<Vec<_>>();
    let web = lib("shop", "musl-1.2.5").into_iter().find(|g| g.threadpool == Some(4)).expect("node:20-alpine: musl and Node's pool");
    assert_eq!(web.count, 6);
    assert!(web.names.iter().any(|(n, _)| n == "cart.shop.svc.cluster.local") && web.names.iter().any(|(n, _)| n == "orders-api"));
    assert_eq!(lib("payments", "evdns-2.1")[0].count, 2, "PgBouncer");
    let java = lib("payments", "glibc-2.36");
    assert!(java.iter().all(|g| g.client_cache.is_some()), "Temurin: the JVM's cache");
    let ndots2 = java.iter().find(|g| g.resolv_conf.is_some()).expect("payments-api's dnsConfig");
    assert!(ndots2.resolv_conf.as_deref().is_some_and(|r| r.contains("ndots:2") && r.contains("eu-west-1.compute.internal")));
    let mut spec = sc.spec.clone();
    spec.duration = std::time::Duration::from_secs(20);
    let r = sim::run(spec).expect("runs");
    assert!(r.success_rate() >= 0.999, "{}", r.summary());
    // The Services come from the dump: `redis` is shop's, at the dump's ClusterIP.
    let redis: IpAddr = "10.100.12.200".parse().expect("ip");
    let looked: Vec<_> = r.lookups.iter().filter(|l| l.name == "redis").collect();
    assert!(!looked.is_empty() && looked.iter().all(|l| l.addr == Some(redis)), "{:?}", looked.first());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn an_on_premises_ipvs_dump_with_node_local_dns_becomes_its_cluster_and_runs_healthy() {
    let d = dir("onprem");
    let sc = imported(ONPREM, &d, &["apps/users=go"]);
    let s = &sc.spec;
    assert_eq!((s.nodes, s.azs, s.cpus_per_node), (6, 2, 8));
    assert!(s.node_search.is_empty() && s.eni_limit.is_none(), "no cloud: no search domain, no ENI budget");
    match s.proxy {
        sim::spec::ProxyMode::Ipvs(c) => assert_eq!(c.udp_timeout, std::time::Duration::from_secs(30)),
        p => panic!("{p:?}"),
    }
    let nl = s.node_local.as_ref().expect("node-local-dns");
    assert!(!nl.bind_kube_dns, "IPVS mode: -localip has only the link-local address");
    assert!(nl.corefile.contains("bind __PILLAR__LOCAL__DNS__\n") && !nl.corefile.contains("169.254.20.10"), "{}", nl.corefile);
    let users = s.pods.iter().find(|g| g.library == sim::spec::Library::Go).expect("the --library rule");
    assert_eq!(users.count, 8);
    assert!(users.resolv_conf.as_deref().is_some_and(|r| r.contains("ndots:1") && r.contains("single-request-reopen")));
    assert!(users.names.iter().any(|(n, _)| n == "postgres.apps") && users.names.iter().any(|(n, _)| n == "login.example.net"));
    assert!(s.pods.iter().any(|g| g.library.to_string() == "c-ares-1.34"), "Envoy");
    let r = sim::run(sc.spec.clone()).expect("runs");
    assert!(r.success_rate() >= 0.999, "{}", r.summary());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn the_command_writes_the_scenario_and_its_state_and_they_run_and_lint() {
    let d = dir("cmd");
    let out = d.join("eks.yaml");
    let o = sim(&["import", EKS, "-o", out.to_str().expect("utf-8"), "--rate", "2"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("9 nodes in 3 zones") && text(&o).contains("next: ndots-sim run"), "{}", text(&o));
    assert!(d.join("eks.state.yaml").exists());
    let scenario = std::fs::read_to_string(&out).expect("written");
    assert!(scenario.contains("rate: 2") && scenario.contains("ASSUMPTION"), "{scenario}");
    let run = sim(&["run", out.to_str().expect("utf-8"), "--set", "duration=10s"], &[]);
    assert!(run.status.success(), "{}", text(&run));
    let lint = sim(&["lint", out.to_str().expect("utf-8")], &[]);
    assert!(lint.status.code() != Some(2), "lint reads it: {}", text(&lint));
    assert!(text(&lint).contains("warning[ndots-amplification]"), "the ndots:5 amplification of the imported pods: {}", text(&lint));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_live_context_is_read_through_kubectl_with_every_kind_the_importer_needs() {
    let d = dir("kubectl");
    // A stand-in kubectl that checks it was asked for the right objects and context.
    let fake = d.join("kubectl");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\n[ \"$*\" = \"{} --context prod\" ] || {{ echo \"unexpected: $*\" >&2; exit 1; }}\ncat {EKS}\n",
            sim::import::command::KUBECTL_ARGS.join(" ")
        ),
    )
    .expect("write");
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let out = d.join("prod.yaml");
    let kubectl = fake.to_str().expect("utf-8");
    let o = sim(&["import", "--context", "prod", "-o", out.to_str().expect("utf-8")], &[("KUBECTL", kubectl)]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(std::fs::read_to_string(&out).expect("written").contains("from kubectl context prod"));
    let o = sim(&["import", "--context", "staging", "-o", out.to_str().expect("utf-8")], &[("KUBECTL", kubectl)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("failed: unexpected"), "kubectl's own error is shown: {}", text(&o));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn unusable_input_exits_2_saying_what_was_expected() {
    let d = dir("bad");
    let out = d.join("x.yaml");
    let out = out.to_str().expect("utf-8");
    let no_nodes = d.join("pods.yaml");
    std::fs::write(&no_nodes, "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: a, namespace: b}}\n")
        .expect("write");
    let o = sim(&["import", no_nodes.to_str().expect("utf-8"), "-o", out], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("no Node objects") && text(&o).contains("kubectl get nodes,pods"), "{}", text(&o));
    let broken = d.join("broken.yaml");
    std::fs::write(&broken, "items:\n  - kind: Node\n   bad indent\n").expect("write");
    let o = sim(&["import", broken.to_str().expect("utf-8"), "-o", out], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("broken.yaml: not a kubectl dump") && text(&o).contains("line"), "{}", text(&o));
    let o = sim(&["import", EKS, "-o", out, "--library", "alpine"], &[]);
    assert!(o.status.code() == Some(2) && text(&o).contains("IMAGE-PATTERN=LIBRARY"), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&d);
}
