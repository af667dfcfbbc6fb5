//! The Corefiles real clusters run: kubeadm's default and node-local-dns's template (sources.md#default-corefiles,
//! sources.md#node-local-dns) are accepted unchanged except for `cluster_state` and, where a test must not need root,
//! listen addresses; and a node-local cache in front of a cluster DNS works end to end.

mod common;

use std::path::Path;

use common::*;

const STATE: &str = include_str!("../../examples/cluster-state.yaml");

/// kubeadm's default Corefile (cmd/kubeadm/app/phases/addons/dns/manifests.go), plus `cluster_state`.
fn kubeadm() -> String {
    include_str!("../../examples/kubeadm.Corefile").replace(
        "       ttl 30
",
        "       ttl 30
       cluster_state state.yaml
",
    )
}

/// node-local-dns's Corefile template (kubernetes cluster/addons/dns/nodelocaldns), `__PILLAR__`s
/// substituted as its installer does: local IP 169.254.20.10, kube-dns 10.96.0.10, kube-dns-upstream
/// 10.96.0.11; the upstream servers stay `__PILLAR__UPSTREAM__SERVERS__` for each test to fill in.
fn nodelocal() -> String {
    include_str!("../../examples/nodelocaldns.Corefile")
        .replace("__PILLAR__DNS__DOMAIN__", "cluster.local")
        .replace("__PILLAR__LOCAL__DNS__", "169.254.20.10")
        .replace("__PILLAR__DNS__SERVER__", "10.96.0.10")
        .replace("__PILLAR__CLUSTER__DNS__", "10.96.0.11")
}

fn load(text: &str, dir: &Path) -> Result<resolver::Config, resolver::corefile::ConfigError> {
    let cf = resolver::corefile::parse_str(text, "Corefile", Some(dir.to_path_buf()), &|_| None)?;
    resolver::Config::from_corefile(&cf, dir)
}

#[test]
fn kubeadm_and_node_local_corefiles_are_accepted_unchanged() {
    let dir = temp_dir("accept");
    std::fs::write(dir.join("resolv.conf"), "nameserver 10.0.0.2\nsearch ec2.internal\n").expect("write");
    let kubeadm = load(&kubeadm().replace("/etc/resolv.conf", "resolv.conf"), &dir).expect("kubeadm default");
    let k = kubeadm.servers[0].kubernetes.as_ref().expect("kubernetes");
    assert_eq!((k.ttl, k.pods), (30, resolver::config::PodsMode::Insecure));
    assert_eq!(kubeadm.servers[0].forward[0].max_concurrent, Some(1000));
    let nl = load(&nodelocal().replace("__PILLAR__UPSTREAM__SERVERS__", "resolv.conf"), &dir).expect("node-local template");
    assert_eq!(nl.servers.len(), 4);
    assert!(nl.servers[0].forward[0].force_tcp);
    assert_eq!(nl.servers[0].cache.as_ref().expect("cache").denial.max_ttl, 5);
    assert_eq!(nl.servers[3].forward[0].to, ["10.0.0.2:53".parse::<std::net::SocketAddr>().expect("addr")]);
}

#[test]
fn kubeadm_default_serves_with_only_ports_changed() {
    let up = start("kubeadm-up", ".:{PORT} {\n    bind 127.0.0.1\n    hosts {\n        93.184.215.14 www.example.org\n    }\n}\n", &[]);
    let (health, ready, prom) = (free_port(), free_port(), free_port());
    let core = kubeadm()
        .replace(".:53", ".:{PORT}")
        .replace("    health {", &format!("    health 127.0.0.1:{health} {{"))
        .replace("lameduck 5s", "lameduck 100ms")
        .replace("    ready\n", &format!("    ready 127.0.0.1:{ready}\n"))
        .replace("prometheus :9153", &format!("prometheus 127.0.0.1:{prom}"))
        .replace("/etc/resolv.conf", "resolv.conf");
    let m = start("kubeadm", &core, &[("state.yaml", STATE), ("resolv.conf", "nameserver 127.0.0.1\n")]);
    // resolv.conf names port 53; point forward at the test upstream instead by rewriting and reloading
    // is not needed: ask cluster names, which never leave the server.
    assert_eq!(short(m.port, &["cart.shop.svc.cluster.local"]), ["10.96.12.7"]);
    assert_eq!(status(&dig(m.port, &["nope.cluster.local"])), "NXDOMAIN");
    let h = http_get(health, "/health");
    assert!(h.starts_with("HTTP/1.0 200") && h.ends_with("OK"), "health: {h}");
    let r = http_get(ready, "/ready");
    assert!(r.starts_with("HTTP/1.0 200"), "ready: {r}");
    let metrics = http_get(prom, "/metrics");
    for name in [
        "coredns_dns_requests_total{",
        "coredns_dns_responses_total{",
        "coredns_dns_request_duration_seconds_bucket{",
        "coredns_cache_hits_total{",
        "coredns_cache_misses_total{",
        "coredns_cache_entries{",
        "coredns_forward_healthcheck_failures_total",
        "coredns_build_info{",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics:\n{metrics}");
    }
    assert!(metrics.contains("rcode=\"NXDOMAIN\""), "{metrics}");
    drop(up);
}

#[test]
fn node_local_cache_in_front_of_cluster_dns_over_force_tcp() {
    // The internet, then cluster DNS (kubeadm-like), then the node-local template on loopback.
    let internet =
        start("nl-internet", ".:{PORT} {\n    bind 127.0.0.1\n    hosts {\n        93.184.215.14 www.example.org\n    }\n}\n", &[]);
    let cluster_prom = free_port();
    let cluster = start(
        "nl-cluster",
        &format!(
            ".:{{PORT}} {{\n    bind 127.0.0.1\n    kubernetes cluster.local in-addr.arpa ip6.arpa {{\n        pods insecure\n        fallthrough in-addr.arpa ip6.arpa\n        cluster_state state.yaml\n    }}\n    prometheus 127.0.0.1:{cluster_prom}\n    forward . 127.0.0.1:{}\n}}\n",
            internet.port
        ),
        &[("state.yaml", STATE)],
    );
    let prom = free_port();
    let core = nodelocal()
        .replace(":53 {", ":{PORT} {")
        .replace("bind 169.254.20.10 10.96.0.10", "bind 127.0.0.1")
        .replace("10.96.0.11", &format!("127.0.0.1:{}", cluster.port))
        .replace("health 169.254.20.10:8080", &format!("health 127.0.0.1:{}", free_port()))
        .replace("prometheus :9253", &format!("prometheus 127.0.0.1:{prom}"))
        .replace("__PILLAR__UPSTREAM__SERVERS__", "resolv.conf");
    let nl = start("nl", &core, &[("resolv.conf", "nameserver 127.0.0.1\n")]);
    // Cluster names go to cluster DNS over TCP; the answer comes back to the UDP client.
    assert_eq!(short(nl.port, &["cart.shop.svc.cluster.local"]), ["10.96.12.7"]);
    assert_eq!(short(nl.port, &["-x", "10.96.12.7"]), ["cart.shop.svc.cluster.local."]);
    let m = http_get(cluster_prom, "/metrics");
    assert!(m.contains("proto=\"tcp\""), "cluster DNS saw TCP from the node cache: {m}");
    assert!(!m.contains("proto=\"udp\",family=\"1\",type=\"A\""), "and no UDP A queries: {m}");
    // Denial entries for cluster.local last 5 s (denial 9984 5), so a repeat is a cache hit.
    assert_eq!(status(&dig(nl.port, &["nope.shop.svc.cluster.local"])), "NXDOMAIN");
    assert_eq!(status(&dig(nl.port, &["nope.shop.svc.cluster.local"])), "NXDOMAIN");
    let m = http_get(prom, "/metrics");
    assert!(m.lines().any(|l| l.starts_with("coredns_cache_hits_total") && l.contains("type=\"denial\"") && l.ends_with(" 1")), "{m}");
}

/// k3s's and AKS's Corefiles: a `hosts FILE { ttl; reload; fallthrough }` of node names, `import` of
/// `*.override` files inside the block and of `*.server` files (whole server blocks) at the top level,
/// where a glob that matches nothing (no custom ConfigMap) is fine (docs/sources.md#default-corefiles).
#[test]
fn k3s_and_aks_style_corefiles_with_hosts_files_and_top_level_imports_serve() {
    let corefile = ".:{PORT} {\n    errors\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n      pods insecure\n      fallthrough in-addr.arpa ip6.arpa\n      cluster_state state.yaml\n    }\n    hosts NodeHosts {\n      ttl 60\n      reload 15s\n      fallthrough\n    }\n    cache 30\n    loop\n    reload\n    loadbalance\n    import *.override\n}\nimport *.server\nimport missing-*.server\n";
    let n = start(
        "k3s-aks",
        corefile,
        &[
            ("state.yaml", "apiVersion: v1\nkind: List\nitems: []\n"),
            ("NodeHosts", "10.0.0.5 node-a\n"),
            ("custom.server", "example.server:{PORT} {\n  hosts {\n    192.0.2.9 x.example.server\n  }\n}\n"),
            ("log.override", "log\n"),
        ],
    );
    assert_eq!(short(n.port, &["node-a", "A"]), ["10.0.0.5"], "the hosts file");
    assert_eq!(short(n.port, &["x.example.server", "A"]), ["192.0.2.9"], "the imported server block");
}
