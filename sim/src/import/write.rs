//! The imported cluster as a scenario file: every value with a comment saying where it came from,
//! and the assumptions marked `ASSUMPTION` so the user knows what to edit.

use std::fmt::Write;

use super::{Cluster, Options};

/// A YAML scalar: JSON's quoting is valid YAML.
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn block(out: &mut String, indent: &str, text: &str) {
    for l in text.lines() {
        if l.trim().is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "{indent}{l}");
        }
    }
}

/// `line` with `# comment` at column 40 (or after one space when the line is longer).
fn kv(out: &mut String, line: &str, comment: &str) {
    let pad = 40usize.saturating_sub(line.len()).max(1);
    let _ = writeln!(out, "{line}{:pad$}# {comment}", "");
}

pub fn scenario_text(c: &Cluster, opts: &Options) -> String {
    let mut o = String::new();
    let w = &mut o;
    let _ = writeln!(w, "# Imported by `ndots-sim import` from {}.", c.source);
    let _ = writeln!(w, "# Read from the dump: nodes, zones, kernels, kube-proxy, the cluster DNS, node-local-dns, Services,");
    let _ = writeln!(w, "# EndpointSlices and pods. Not in a dump, so ASSUMPTION below: each group's lookups per second and");
    let _ = writeln!(w, "# the names it looks up (from its containers' environment). Edit them, then:");
    let _ = writeln!(w, "#   ndots-sim run THIS-FILE --report out/   and   ndots-sim lint THIS-FILE");
    for (why, n) in &c.not_simulated {
        let _ = writeln!(w, "# Not simulated (in the cluster state as `extra_pods`): {n} pods, {why}.");
    }
    let _ = writeln!(w, "version: 1");
    let _ = writeln!(w, "name: {}", q(&opts.name));
    let _ = writeln!(w, "seed: 1");
    let _ = writeln!(w, "duration: 60s");

    let _ = writeln!(w, "cluster:");
    let zones: Vec<String> = c.zones.iter().map(|(z, n)| format!("{z}: {n}")).collect();
    kv(w, &format!("  azs: {}", c.zones.len().max(1)), &format!("nodes per zone: {}", zones.join(", ")));
    let _ = writeln!(w, "  nodes: {}", c.nodes);
    kv(w, &format!("  cpus_per_node: {}", c.cpus), "the most common node size");
    let kernels: Vec<String> = c.kernels.iter().map(|(k, n)| format!("{}.{} on {n}", k.major, k.minor)).collect();
    let counted: usize = c.kernels.values().sum();
    match c.kernels.keys().next() {
        Some(_) if c.kernels.len() > 1 && counted == c.nodes => {
            let pairs: Vec<String> = c.kernels.iter().map(|(k, n)| format!("\"{}.{}\": {n}", k.major, k.minor)).collect();
            kv(w, &format!("  kernels: {{{}}}", pairs.join(", ")), "nodes per kernel, oldest first: a cluster mid-upgrade");
        }
        Some(k) if c.kernels.len() > 1 => {
            kv(
                w,
                &format!("  kernel: \"{}.{}\"", k.major, k.minor),
                &format!("the oldest of: {} (some nodes reported none)", kernels.join(", ")),
            );
        }
        Some(k) => {
            let _ = writeln!(w, "  kernel: \"{}.{}\"", k.major, k.minor);
        }
        None => {
            let _ = writeln!(w, "  # kernel: no node reported one; the default (5.15) is used");
        }
    }
    let _ = writeln!(w, "  domain: {}", q(&c.domain));
    match (c.cloud.as_deref(), c.region.as_deref()) {
        (Some("aws"), Some(r)) if crate::file::aws_search_domain(r).is_ok() => {
            kv(w, &format!("  region: {r}"), "AWS: the nodes' search domain (ec2.internal or REGION.compute.internal)");
        }
        (cloud, _) => {
            let cloud = cloud.map_or("nodes of an unknown cloud".to_string(), |c| format!("{c} nodes"));
            kv(w, "  node_search: []", &format!("ASSUMPTION: {cloud}; put a node's /etc/resolv.conf search list here"));
        }
    }
    let extra: usize = c.not_simulated.values().sum();
    if extra > 0 {
        let _ = writeln!(w, "  extra_pods: {extra}");
    }
    kv(w, &format!("  state_file: {}", q(&opts.state_file)), "Namespaces, Services and EndpointSlices from the dump");

    let kp = &c.kube_proxy;
    kv(
        w,
        "kube_proxy:",
        &if kp.from.is_empty() { "no kube-proxy ConfigMap in the dump: its defaults".to_string() } else { format!("from {}", kp.from) },
    );
    match kp.mode.as_str() {
        "ipvs" => {
            let _ = writeln!(w, "  mode: ipvs");
        }
        "iptables" => {
            let _ = writeln!(w, "  mode: iptables");
        }
        other => {
            kv(
                w,
                "  mode: iptables",
                &format!("the cluster says `{other}`, not modelled: simulated as iptables (DNAT through conntrack alike)"),
            );
        }
    }
    if let Some(v) = &kp.version {
        let _ = writeln!(w, "  version: \"{v}\"");
    }
    if let Some(m) = kp.conntrack_max_per_core {
        let _ = writeln!(w, "  conntrack_max_per_core: {m}");
    }
    if let Some(m) = kp.conntrack_min {
        let _ = writeln!(w, "  conntrack_min: {m}");
    }
    if kp.mode == "ipvs" && (kp.ipvs_udp_timeout.is_some() || kp.ipvs_tcp_timeout.is_some()) {
        let mut parts = Vec::new();
        if let Some(t) = kp.ipvs_udp_timeout {
            parts.push(format!("udp_timeout: {t}s"));
        }
        if let Some(t) = kp.ipvs_tcp_timeout {
            parts.push(format!("tcp_timeout: {t}s"));
        }
        let _ = writeln!(w, "  ipvs: {{{}}}", parts.join(", "));
    }

    let d = &c.dns;
    let _ = writeln!(w, "coredns:");
    let _ = writeln!(w, "  replicas: {}", d.replicas);
    kv(w, &format!("  server: {}", d.server), &format!("from the image {}", d.image));
    if let Some(m) = d.memory_limit_mib {
        let model = if d.server.starts_with("coredns") { "coredns" } else { "ndots" };
        let _ = writeln!(w, "  memory: {{limit_mib: {m}, model: {model}}}");
    }
    match &d.corefile {
        Some(cf) if d.server != "kube-dns" => {
            kv(w, "  corefile: |", "ConfigMap kube-system/coredns");
            block(w, "    ", cf);
        }
        _ => {}
    }
    if let Some(nl) = &c.node_local {
        kv(w, "node_local:", &format!("DaemonSet kube-system/node-local-dns ({})", nl.image));
        let _ = writeln!(w, "  bind_kube_dns: {}", nl.bind_kube_dns);
        if let Some(cf) = &nl.corefile {
            kv(w, "  corefile: |", "ConfigMap kube-system/node-local-dns, its addresses back as __PILLAR__ variables");
            block(w, "    ", cf);
        }
    }
    if c.cloud.as_deref() != Some("aws") {
        let _ = writeln!(w, "upstream:");
        kv(w, "  eni_limit: null", "AWS's 1024 packets/s per ENI; no documented per-VM limit elsewhere");
    }

    let _ = writeln!(w, "pods:");
    for g in &c.groups {
        let workloads: Vec<String> = g.workloads.iter().map(|(k, (n, image))| format!("{k} ({n} pods, {image})")).collect();
        let _ = writeln!(w, "  # {}: {}", g.namespace, workloads.join(", "));
        let _ = writeln!(w, "  # library: {}", g.guess.why);
        let _ = writeln!(w, "  - count: {}", g.count);
        let _ = writeln!(w, "    namespace: {}", q(&g.namespace));
        let _ = writeln!(w, "    library: {}", g.guess.library);
        if g.guess.java {
            kv(w, "    client_cache: java", "a JVM's InetAddress cache");
        }
        if g.guess.node {
            kv(w, "    threadpool: 4", "Node's libuv pool");
        }
        kv(w, &format!("    rate: {}", opts.rate), "ASSUMPTION: lookups per second per pod");
        let (names, from): (Vec<String>, &str) = if !g.names.is_empty() {
            (g.names.clone(), "from the containers' environment")
        } else if !g.fallback.is_empty() {
            (g.fallback.clone(), "none in the environment: the namespace's Services")
        } else {
            (vec!["kubernetes.default".into()], "none in the environment and no Service in the namespace: the apiserver")
        };
        let pairs: Vec<String> = names.iter().map(|n| format!("{}: 1", q(n))).collect();
        let _ = writeln!(w, "    # ASSUMPTION, the names looked up: {from}");
        let _ = writeln!(w, "    names: {{{}}}", pairs.join(", "));
        if let Some(p) = &g.dns_policy {
            let _ = writeln!(w, "    dns_policy: {p}");
        }
        if let Some(cfg) = &g.dns_config {
            let _ = writeln!(w, "    dns_config: {}", serde_json::to_string(cfg).unwrap_or_default());
        }
    }
    let _ = writeln!(w, "expect:");
    let _ = writeln!(w, "  success_rate_min: 0.999");
    let _ = writeln!(w, "  unfinished_max: 0");
    o
}
