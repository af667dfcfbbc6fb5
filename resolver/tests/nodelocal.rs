//! Node-local mode as a DaemonSet runs it, inside a network namespace with this machine's kernel
//! (root; `ip`, `iptables` legacy and nft, `conntrack` and `dig`, which .ci/run installs).
//!
//! The namespace is a node: the link-local IP and the kube-dns ClusterIP sit on `lo` (this kernel
//! has no dummy link type, so `-setupinterface=false`, as the issue and README say), a
//! kube-proxy-style DNAT sends the kube-dns ClusterIP to a pod IP where nothing listens, and a
//! second ndots plays CoreDNS behind the `kube-dns-upstream` ClusterIP. With node-local mode up,
//! the ClusterIP is answered (the NOTRACK rules bypass the DNAT) and nothing to the local IPs enters
//! conntrack; after SIGTERM every rule is gone and the DNAT decides again; a restart after SIGKILL
//! adds no second copy of any rule. Each iptables back end is run.
//!
//! The `stale_conntrack` detector is run here too: a fake apiserver inside the namespace says the
//! kube-dns-upstream pod left its endpoints while a client's fixed-port socket keeps its DNAT'd
//! entry alive; node-local mode reads the node's table over ctnetlink and names the flow until the
//! entry is deleted.
//!
//! Skips, saying why, when not root or without network namespaces.

mod common;
mod fake_apiserver;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LOCAL: &str = "169.254.20.10";
const KUBE_DNS: &str = "10.96.0.10";
const UPSTREAM_SVC: &str = "10.96.0.11";
const COREDNS_POD: &str = "10.244.0.5";
const DEAD_POD: &str = "10.244.0.99";

const UPSTREAM_COREFILE: &str = "cluster.local:53 {
    bind 10.244.0.5
    hosts {
        10.0.0.1 kubernetes.default.svc.cluster.local
    }
}
acme.local:53 {
    bind 10.244.0.5
    hosts {
        10.0.0.7 db.acme.local
    }
}
beta.local:53 {
    bind 10.244.0.5
    hosts {
        10.0.0.8 db.beta.local
    }
}
";

/// The template the node-local manifest ships (deploy/node-local-dns.yaml, filled in for kubeadm's
/// defaults), with a 2 s reload so the test sees a re-rendering quickly.
fn base_template() -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/node-local-dns.yaml")).expect("the manifest");
    let cm = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| <serde_json::Value as serde::Deserialize>::deserialize(d).expect("yaml"))
        .find(|v| v["kind"] == "ConfigMap" && v["metadata"]["name"] == "node-local-dns")
        .expect("the node-local-dns ConfigMap");
    let base = cm["data"]["Corefile"].as_str().expect("its Corefile").to_string();
    assert!(base.contains("bind 169.254.20.10 10.96.0.10") && base.contains("reload\n"), "{base}");
    base.replace("reload\n", "reload 2s 1s\n")
}

fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

struct Netns {
    name: String,
}

impl Netns {
    fn exec(&self, args: &[&str]) -> Result<String, String> {
        let mut v = vec!["ip", "netns", "exec", &self.name];
        v.extend_from_slice(args);
        sh(&v)
    }
    fn must(&self, args: &[&str]) -> String {
        self.exec(args).unwrap_or_else(|e| panic!("{e}"))
    }
    fn spawn(&self, args: &[&str], env: &[(&str, &str)], log: &Path) -> Child {
        let f = std::fs::File::create(log).expect("log file");
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .expect("spawn in netns")
    }
    fn dig(&self, server: &str, name: &str, tcp: bool) -> String {
        let at = format!("@{server}");
        let mut args = vec!["dig", "+short", "+time=1", "+tries=1", at.as_str(), name];
        if tcp {
            args.push("+tcp");
        }
        // dig exits non-zero on a timeout and says so on stdout.
        let out = Command::new("ip").args(["netns", "exec", &self.name]).args(&args).output().expect("dig");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.name]);
    }
}

fn node_local_rules(ns: &Netns, ipt: &str) -> usize {
    ["raw", "filter"]
        .iter()
        .map(|t| ns.exec(&[ipt, "-t", t, "-S"]).unwrap_or_default().lines().filter(|l| l.contains("NodeLocal DNS Cache")).count())
        .sum()
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stop(child: &mut Child, signal: &str) {
    let _ = sh(&["kill", signal, &child.id().to_string()]);
    let t = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        assert!(t.elapsed() < Duration::from_secs(15), "ndots did not exit after {signal}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The kube-dns ClusterIP's DNAT sends queries to a pod where nothing listens: without node-local
/// mode's rules, a query to the ClusterIP is lost.
fn setup(backend: &str, tag: &str) -> Option<(Netns, String)> {
    let name = format!("ndots-nl-{tag}-{}", std::process::id());
    if let Err(e) = sh(&["ip", "netns", "add", &name]) {
        eprintln!("node-local test skipped: cannot make a network namespace ({e})");
        return None;
    }
    let ns = Netns { name };
    let ipt = format!("iptables-{backend}");
    ns.must(&["ip", "link", "set", "lo", "up"]);
    for ip in [LOCAL, KUBE_DNS, UPSTREAM_SVC, COREDNS_POD] {
        ns.must(&["ip", "addr", "add", &format!("{ip}/32"), "dev", "lo"]);
    }
    for proto in ["udp", "tcp"] {
        for (vip, pod) in [(KUBE_DNS, DEAD_POD), (UPSTREAM_SVC, COREDNS_POD)] {
            let to = format!("{pod}:53");
            ns.must(&[&ipt, "-t", "nat", "-A", "OUTPUT", "-d", vip, "-p", proto, "--dport", "53", "-j", "DNAT", "--to-destination", &to]);
        }
    }
    // kubelet's marker chain, so `-iptables auto` has a back end to find.
    ns.must(&[&ipt, "-t", "mangle", "-N", "KUBE-IPTABLES-HINT"]);
    Some((ns, ipt))
}

struct Files {
    dir: PathBuf,
    base: PathBuf,
    conf: PathBuf,
    kubedns: PathBuf,
    pidfile: PathBuf,
}

fn files(tag: &str) -> Files {
    let dir = common::temp_dir(tag);
    let base = dir.join("Corefile.base");
    std::fs::write(&base, base_template()).expect("write");
    let kubedns = dir.join("kube-dns");
    std::fs::create_dir_all(&kubedns).expect("dir");
    std::fs::write(kubedns.join("stubDomains"), r#"{"acme.local": ["10.244.0.5"]}"#).expect("write");
    std::fs::write(dir.join("upstream.Corefile"), UPSTREAM_COREFILE).expect("write");
    Files { conf: dir.join("Corefile"), pidfile: dir.join("node-cache.pid"), base, kubedns, dir }
}

/// ndots in node-local mode with node-cache's args; `env` beside `$KUBE_DNS_UPSTREAM_SERVICE_HOST`.
fn start_node_local(ns: &Netns, f: &Files, extra: &[&str], env: &[(&str, &str)], log: &str) -> Child {
    let bin = env!("CARGO_BIN_EXE_ndots");
    let (base, conf, kd, pid) = (
        f.base.to_str().expect("utf8"),
        f.conf.to_str().expect("utf8"),
        f.kubedns.to_str().expect("utf8"),
        f.pidfile.to_str().expect("utf8"),
    );
    let localips = format!("{LOCAL},{KUBE_DNS}");
    let mut args = vec![
        bin,
        "-localip",
        &localips,
        "-conf",
        conf,
        "-basecorefile",
        base,
        "-kubednscm",
        kd,
        "-upstreamsvc",
        "kube-dns-upstream",
        "-pidfile",
        pid,
        "-syncinterval",
        "1",
        "-metrics-listen-address",
        "127.0.0.1:9353",
        "-workers",
        "2",
    ];
    args.extend_from_slice(extra);
    let mut all = vec![("KUBE_DNS_UPSTREAM_SERVICE_HOST", UPSTREAM_SVC)];
    all.extend_from_slice(env);
    ns.spawn(&args, &all, &f.dir.join(log))
}

fn log(f: &Files, name: &str) -> String {
    std::fs::read_to_string(f.dir.join(name)).unwrap_or_default()
}

fn run_backend(backend: &str) {
    let Some((ns, ipt)) = setup(backend, backend) else { return };
    let f = files(&format!("nl-{backend}"));
    let bin = env!("CARGO_BIN_EXE_ndots");
    let upstream_conf = f.dir.join("upstream.Corefile");
    let mut coredns = ns.spawn(&[bin, "-conf", upstream_conf.to_str().expect("utf8"), "-workers", "1"], &[], &f.dir.join("upstream.log"));
    wait_for("the upstream", Duration::from_secs(10), || ns.dig(UPSTREAM_SVC, "kubernetes.default.svc.cluster.local", false) == "10.0.0.1");
    let before = ns.dig(KUBE_DNS, "kubernetes.default.svc.cluster.local", false);
    assert!(before.contains("timed out"), "without node-local mode the ClusterIP goes to the dead pod: {before}");

    let mut nl = start_node_local(&ns, &f, &["-setupinterface=false", "-iptables", "auto"], &[], "nl1.log");
    wait_for("the pidfile", Duration::from_secs(10), || f.pidfile.exists());
    wait_for("24 node-local rules", Duration::from_secs(10), || node_local_rules(&ns, &ipt) == 24);
    let l = log(&f, "nl1.log");
    assert!(l.contains(&format!("backend={}", if backend == "nft" { "Nft" } else { "Legacy" })), "auto found the marked back end: {l}");
    let rendered = std::fs::read_to_string(&f.conf).expect("rendered Corefile");
    assert!(rendered.contains(&format!("forward . {UPSTREAM_SVC} {{")) && !rendered.contains("__PILLAR__"), "{rendered}");
    assert!(rendered.contains("acme.local:53 {"), "stub domain block: {rendered}");

    ns.must(&["conntrack", "-F"]);
    for tcp in [false, true] {
        assert_eq!(
            ns.dig(KUBE_DNS, "kubernetes.default.svc.cluster.local", tcp),
            "10.0.0.1",
            "the ClusterIP is answered by node-local (tcp {tcp})"
        );
        assert_eq!(ns.dig(LOCAL, "kubernetes.default.svc.cluster.local", tcp), "10.0.0.1", "and so is the link-local IP (tcp {tcp})");
    }
    assert_eq!(ns.dig(LOCAL, "db.acme.local", false), "10.0.0.7", "the kube-dns ConfigMap's stub domain");
    let ct = ns.exec(&["conntrack", "-L"]).unwrap_or_default();
    for ip in [LOCAL, KUBE_DNS] {
        assert!(!ct.contains(&format!("dst={ip} ")), "NOTRACK: no conntrack entry to {ip}:\n{ct}");
    }
    assert!(
        ct.contains(&format!("dst={UPSTREAM_SVC} ")),
        "the forward to kube-dns-upstream is tracked as usual (the check can see entries):\n{ct}"
    );
    let metrics = ns.must(&["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9353; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3"]);
    assert!(metrics.contains("coredns_nodecache_setup_errors_total{errortype=\"iptables\"} 0"), "{metrics}");

    if backend == "nft" {
        // A changed ConfigMap is rendered (10 s poll) and served (the Corefile's reload).
        std::fs::write(f.kubedns.join("stubDomains"), r#"{"beta.local": ["10.244.0.5"]}"#).expect("write");
        wait_for("the re-rendered stub domain", Duration::from_secs(30), || ns.dig(LOCAL, "db.beta.local", false) == "10.0.0.8");
        // A rule someone deleted comes back within the sync interval.
        let spec = format!("-p udp -d {LOCAL} --dport 53 -j NOTRACK -m comment --comment");
        let mut del: Vec<&str> = vec![&ipt, "-t", "raw", "-D", "PREROUTING"];
        del.extend(spec.split(' '));
        del.push("NodeLocal DNS Cache: skip conntrack");
        ns.must(&del);
        assert_eq!(node_local_rules(&ns, &ipt), 23);
        wait_for("the deleted rule to come back", Duration::from_secs(5), || node_local_rules(&ns, &ipt) == 24);
    }

    stop(&mut nl, "-TERM");
    assert_eq!(node_local_rules(&ns, &ipt), 0, "SIGTERM removes every rule: {}", log(&f, "nl1.log"));
    assert!(!f.pidfile.exists(), "and the pidfile");
    let after = ns.dig(KUBE_DNS, "kubernetes.default.svc.cluster.local", false);
    assert!(after.contains("timed out") || after.contains("refused"), "the DNAT decides again: {after}");

    // SIGKILL leaves the rules; the next start finds them and adds no copy.
    let mut nl = start_node_local(&ns, &f, &["-setupinterface=false", "-iptables", backend], &[], "nl2.log");
    wait_for("24 rules again", Duration::from_secs(10), || node_local_rules(&ns, &ipt) == 24);
    stop(&mut nl, "-KILL");
    assert_eq!(node_local_rules(&ns, &ipt), 24, "SIGKILL tears nothing down");
    let _ = std::fs::remove_file(&f.pidfile);
    let mut nl = start_node_local(&ns, &f, &["-setupinterface=false", "-iptables", backend], &[], "nl3.log");
    wait_for("the restarted pidfile", Duration::from_secs(10), || f.pidfile.exists());
    std::thread::sleep(Duration::from_millis(2500)); // two sync intervals
    assert_eq!(node_local_rules(&ns, &ipt), 24, "no rule twice after a restart");
    assert!(!log(&f, "nl3.log").contains("added node-local rule"), "nothing was added: {}", log(&f, "nl3.log"));
    assert_eq!(ns.dig(KUBE_DNS, "kubernetes.default.svc.cluster.local", false), "10.0.0.1");
    stop(&mut nl, "-TERM");
    assert_eq!(node_local_rules(&ns, &ipt), 0);

    // The interface: made and removed where the kernel has the dummy type, else a start-up error
    // that says so (this machine's kernel).
    let mut nl = start_node_local(&ns, &f, &["-iptables", backend], &[], "nl4.log");
    let t = Instant::now();
    loop {
        if let Some(status) = nl.try_wait().expect("wait") {
            let l = log(&f, "nl4.log");
            assert!(!status.success(), "{l}");
            assert!(l.contains("no dummy link type") && l.contains("-setupinterface=false"), "the error says what to do: {l}");
            assert_eq!(node_local_rules(&ns, &ipt), 0, "no rules for a cache that did not start");
            break;
        }
        if f.pidfile.exists() {
            let addrs = ns.must(&["ip", "addr", "show", "dev", "nodelocaldns"]);
            assert!(addrs.contains(&format!("{LOCAL}/32")) && addrs.contains(&format!("{KUBE_DNS}/32")), "{addrs}");
            stop(&mut nl, "-TERM");
            assert!(ns.exec(&["ip", "link", "show", "nodelocaldns"]).is_err(), "SIGTERM removes the interface");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "neither started nor failed: {}", log(&f, "nl4.log"));
        std::thread::sleep(Duration::from_millis(100));
    }
    stop(&mut coredns, "-TERM");
    let _ = std::fs::remove_dir_all(&f.dir);
}

fn ready() -> bool {
    if !sh(&["id", "-u"]).is_ok_and(|u| u.trim() == "0") {
        eprintln!("node-local test skipped: needs root (network namespaces, iptables)");
        return false;
    }
    for tool in ["iptables-legacy", "iptables-nft", "conntrack", "dig"] {
        assert!(sh(&["which", tool]).is_ok(), "{tool} is missing: install iptables, conntrack and dnsutils (.ci/run does)");
    }
    true
}

#[test]
fn node_local_mode_with_legacy_iptables() {
    if ready() {
        run_backend("legacy");
    }
}

#[test]
fn node_local_mode_with_nft_iptables() {
    if ready() {
        run_backend("nft");
    }
}

/// The fake apiserver on the namespace's loopback: its thread joins the namespace to bind.
fn api_in(ns: &Netns) -> (fake_apiserver::FakeApi, tokio::runtime::Runtime) {
    let path = format!("/run/netns/{}", ns.name);
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).expect("the namespace");
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let api = rt.block_on(fake_apiserver::FakeApi::start());
        (api, rt)
    })
    .join()
    .expect("the apiserver's thread")
}

fn http(ns: &Netns, port: u16, path: &str) -> String {
    let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port}; printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3");
    ns.exec(&["bash", "-c", &script]).unwrap_or_default()
}

#[test]
fn stale_conntrack_names_a_socket_pinned_to_a_removed_endpoint_until_the_entry_goes() {
    use fake_apiserver::{Kind, service, slice};
    if !ready() {
        return;
    }
    let Some((ns, ipt)) = setup("legacy", "stale") else { return };
    let f = files("nl-stale");
    let base = base_template().replacen("reload 2s 1s\n", "reload 2s 1s\n    detect {\n        conntrack_scan 1s\n    }\n", 1);
    std::fs::write(&f.base, base).expect("write");
    let bin = env!("CARGO_BIN_EXE_ndots");
    let upstream_conf = f.dir.join("upstream.Corefile");
    let mut coredns = ns.spawn(&[bin, "-conf", upstream_conf.to_str().expect("utf8"), "-workers", "1"], &[], &f.dir.join("upstream.log"));
    let (api, _rt) = api_in(&ns);
    api.put(Kind::Service, service("kube-system", "kube-dns", KUBE_DNS));
    api.put(Kind::Service, service("kube-system", "kube-dns-upstream", UPSTREAM_SVC));
    api.put(Kind::EndpointSlice, slice("kube-system", "kube-dns-upstream", &[(COREDNS_POD, true)]));
    api.put(Kind::EndpointSlice, slice("kube-system", "kube-dns", &[(COREDNS_POD, true)]));
    // Another namespace's Service of the same name is not the cluster DNS.
    api.put(Kind::EndpointSlice, slice("default", "kube-dns", &[("10.244.0.77", true)]));
    let kubeconfig = f.dir.join("kubeconfig.yaml");
    std::fs::write(&kubeconfig, api.kubeconfig()).expect("write");
    let kc = kubeconfig.to_str().expect("utf8");
    let mut nl = start_node_local(&ns, &f, &["-setupinterface=false", "-iptables", "legacy"], &[("KUBECONFIG", kc)], "stale.log");
    wait_for("the DNS Services from the API", Duration::from_secs(15), || log(&f, "stale.log").contains("the DNS Services are known"));
    let reqs = api.requests();
    assert!(
        reqs.iter()
            .any(|r| r.starts_with("/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices?") && r.contains("labelSelector")),
        "a narrow watch: {reqs:?}"
    );

    // A client that keeps one socket (fixed port 40053) asks the kube-dns-upstream ClusterIP
    // every 200 ms: its entry DNATs to the CoreDNS pod and stays refreshed.
    let stop_client = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let (name, stop) = (ns.name.clone(), stop_client.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = Command::new("ip")
                    .args([
                        "netns",
                        "exec",
                        &name,
                        "dig",
                        "+time=1",
                        "+tries=1",
                        "-b",
                        "127.0.0.1#40053",
                        "@10.96.0.11",
                        "kubernetes.default.svc.cluster.local",
                    ])
                    .output();
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let findings = || http(&ns, 9253, "/debug/findings");
    std::thread::sleep(Duration::from_secs(4));
    assert!(!findings().contains("stale_conntrack"), "every endpoint live: quiet: {}", findings());

    // The pod leaves the endpoints; kube-proxy never deletes the entry.
    api.put(Kind::EndpointSlice, slice("kube-system", "kube-dns-upstream", &[("10.244.0.6", true)]));
    let flow = format!("kube-dns-upstream {UPSTREAM_SVC}:53 via {COREDNS_POD}");
    wait_for("the stale flow's finding", Duration::from_secs(30), || {
        let j = findings();
        j.contains("\"detector\":\"stale_conntrack\"") && j.contains(&flow) && j.contains(":40053")
    });
    let metrics = http(&ns, 9253, "/metrics");
    assert!(metrics.contains(&format!("ndots_stale_conntrack_flows{{flow=\"{flow}\"}} 1")), "{metrics}");
    assert!(log(&f, "stale.log").contains("stale_conntrack"), "logged: {}", log(&f, "stale.log"));

    // kube-proxy's cleanup, late: the rule points at the new pod and the entry is deleted.
    ns.must(&[
        &ipt,
        "-t",
        "nat",
        "-R",
        "OUTPUT",
        "2",
        "-d",
        UPSTREAM_SVC,
        "-p",
        "udp",
        "--dport",
        "53",
        "-j",
        "DNAT",
        "--to-destination",
        "10.244.0.6:53",
    ]);
    ns.must(&["conntrack", "-D", "-p", "udp", "--orig-dst", UPSTREAM_SVC, "--reply-src", COREDNS_POD]);
    wait_for("no stale flow at the last scan", Duration::from_secs(15), || {
        http(&ns, 9253, "/metrics").contains(&format!("ndots_stale_conntrack_flows{{flow=\"{flow}\"}} 0"))
    });
    stop_client.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = client.join();
    stop(&mut nl, "-TERM");
    stop(&mut coredns, "-TERM");
    let _ = std::fs::remove_dir_all(&f.dir);
}
