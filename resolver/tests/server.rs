//! The real `ndots` binary on loopback, queried with dig, with a second `ndots` as its upstream.

mod common;

use std::net::UdpSocket;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const STATE: &str = include_str!("../../examples/cluster-state.yaml");

fn upstream_corefile() -> String {
    let mut hosts = String::new();
    // 100 A records: 1,600+ bytes, more than fits in 512 or 1232 bytes of UDP.
    for i in 0..100 {
        hosts.push_str(&format!("        10.1.{}.{} big.example.org\n", i / 250, i % 250 + 1));
    }
    format!(".:{{PORT}} {{\n    bind 127.0.0.1\n    hosts {{\n        93.184.215.14 www.example.org\n{hosts}    }}\n}}\n")
}

fn main_corefile(upstream: u16, extra_cache: &str) -> String {
    format!(
        ".:{{PORT}} {{
    bind 127.0.0.1
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
        cluster_state state.yaml
    }}
    forward . 127.0.0.1:{upstream}
    cache 30 {{
        disable success cluster.local
        disable denial cluster.local
        {extra_cache}
    }}
}}
"
    )
}

fn pair(tag: &str, extra_cache: &str) -> (Ndots, Ndots) {
    let up = start(&format!("{tag}-up"), &upstream_corefile(), &[]);
    let main = start(tag, &main_corefile(up.port, extra_cache), &[("state.yaml", STATE)]);
    (up, main)
}

#[test]
fn serves_cluster_records_per_the_kubernetes_dns_spec() {
    let (_up, m) = pair("records", "");
    let p = m.port;
    assert_eq!(short(p, &["cart.shop.svc.cluster.local"]), ["10.96.12.7"]);
    assert_eq!(short(p, &["_http._tcp.cart.shop.svc.cluster.local", "SRV"]), ["0 100 80 cart.shop.svc.cluster.local."]);
    assert_eq!(short(p, &["-x", "10.96.12.7"]), ["cart.shop.svc.cluster.local."]);
    // Headless: one A per ready endpoint (db-2 is not ready), and hostname records.
    assert_eq!(short(p, &["db.shop.svc.cluster.local"]), ["10.244.2.20", "10.244.2.21"]);
    assert_eq!(short(p, &["db-1.db.shop.svc.cluster.local"]), ["10.244.2.21"]);
    assert_eq!(short(p, &["-x", "10.244.2.20"]), ["db-0.db.shop.svc.cluster.local."]);
    assert_eq!(short(p, &["payments.shop.svc.cluster.local", "CNAME"]), ["payments.example.com."]);
    assert_eq!(short(p, &["10-244-1-10.shop.pod.cluster.local"]), ["10.244.1.10"]);
    assert_eq!(short(p, &["dns-version.cluster.local", "TXT"]), ["\"1.1.0\""]);

    let nx = dig(p, &["nope.shop.svc.cluster.local"]);
    assert_eq!(status(&nx), "NXDOMAIN");
    assert!(nx.contains("flags: qr aa"), "authoritative: {nx}");
    assert!(nx.contains("IN\tSOA\tns.dns.cluster.local. hostmaster.cluster.local."), "SOA in authority: {nx}");
    assert!(nx.contains("cluster.local.\t\t30\tIN\tSOA"), "negative TTL is the plugin's ttl: {nx}");

    let nodata = dig(p, &["cart.shop.svc.cluster.local", "AAAA"]);
    assert_eq!(status(&nodata), "NOERROR");
    assert!(nodata.contains("ANSWER: 0") && nodata.contains("SOA"), "NODATA with SOA: {nodata}");
}

#[test]
fn question_case_is_echoed_exactly() {
    let (_up, m) = pair("case", "");
    for _ in 0..2 {
        // The second time is a cache hit for the forwarded name.
        let out = dig(m.port, &["WwW.ExAmPlE.oRg"]);
        assert!(out.contains(";WwW.ExAmPlE.oRg.\t\tIN\tA"), "{out}");
        let out = dig(m.port, &["CaRt.ShOp.svc.cluster.local"]);
        assert!(out.contains(";CaRt.ShOp.svc.cluster.local.\tIN\tA"), "{out}");
    }
}

#[test]
fn forwards_caches_and_keeps_answering_from_cache() {
    let (up, m) = pair("cache", "");
    let first = dig(m.port, &["www.example.org"]);
    assert!(first.contains("www.example.org.\t30\tIN\tA\t93.184.215.14"), "TTL capped at 30 on the first answer too: {first}");
    drop(up);
    thread::sleep(Duration::from_millis(100));
    assert_eq!(short(m.port, &["www.example.org"]), ["93.184.215.14"], "served from cache with the upstream gone");
}

#[test]
fn large_answers_are_truncated_for_udp_and_complete_over_tcp() {
    let (_up, m) = pair("tc", "");
    let udp = dig(m.port, &["big.example.org", "+noedns", "+ignore"]);
    assert!(udp.contains("flags: qr tc") || udp.contains(" tc"), "TC set: {udp}");
    let answers = udp.lines().filter(|l| l.starts_with("big.example.org.")).count();
    assert!(answers > 0 && answers < 100, "truncated on a record boundary, {answers} records");
    let edns = dig(m.port, &["big.example.org", "+bufsize=1232", "+ignore"]);
    assert!(edns.contains(" tc"), "over 1232 bytes still truncated: {edns}");
    // Served from cache the second time: still truncated for UDP, never a partial cached answer.
    let tcp = dig(m.port, &["big.example.org", "+tcp"]);
    assert_eq!(tcp.lines().filter(|l| l.starts_with("big.example.org.")).count(), 100, "{tcp}");
    let udp_again = dig(m.port, &["big.example.org", "+noedns", "+ignore"]);
    assert!(udp_again.contains(" tc"), "cache hit is truncated too: {udp_again}");
}

#[test]
fn dead_upstream_gives_servfail_after_the_forward_deadline() {
    let dead = free_port();
    let m = start("dead", &main_corefile(dead, ""), &[("state.yaml", STATE)]);
    let t0 = Instant::now();
    let out = dig(m.port, &["www.example.org"]);
    let took = t0.elapsed();
    assert_eq!(status(&out), "SERVFAIL", "{out}");
    // forward: 5 s deadline, 2 s read timeouts (sources.md#coredns-forward): tries at 0, 2, 4 s, fail at ~6 s.
    assert!(took >= Duration::from_secs(4) && took < Duration::from_secs(9), "took {took:?}");
    // Cluster names keep working without the upstream.
    assert_eq!(short(m.port, &["cart.shop.svc.cluster.local"]), ["10.96.12.7"]);
}

#[test]
fn serve_stale_keeps_names_resolving_when_the_upstream_dies() {
    let up = start("stale-up", &upstream_corefile(), &[]);
    let core = main_corefile(up.port, "serve_stale").replace("cache 30 {", "cache 1 {");
    let m = start("stale", &core, &[("state.yaml", STATE)]);
    assert_eq!(short(m.port, &["www.example.org"]), ["93.184.215.14"]);
    drop(up);
    thread::sleep(Duration::from_millis(2500));
    let out = dig(m.port, &["www.example.org"]);
    assert!(out.contains("www.example.org.\t0\tIN\tA\t93.184.215.14"), "stale answer with TTL 0: {out}");
}

/// A UDP "upstream" that records queries and answers none (or each after `delay`).
fn blackhole() -> (u16, std::sync::mpsc::Receiver<Vec<u8>>) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = sock.local_addr().expect("addr").port();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    (port, rx)
}

#[test]
fn refuses_above_max_concurrent_and_coalesces_identical_queries() {
    let (hole, seen) = blackhole();
    let core = main_corefile(hole, "")
        .replace(&format!("forward . 127.0.0.1:{hole}"), &format!("forward . 127.0.0.1:{hole} {{\n        max_concurrent 1\n    }}"));
    let m = start("maxc", &core, &[("state.yaml", STATE)]);
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
    client.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
    // Two identical queries: one upstream query (coalesced), one max_concurrent slot taken.
    client.send_to(&raw_query(1, "a.example.org.", 1, false), addr(m.port)).expect("send");
    client.send_to(&raw_query(2, "a.example.org.", 1, false), addr(m.port)).expect("send");
    thread::sleep(Duration::from_millis(200));
    let upstream_queries: Vec<Vec<u8>> = seen.try_iter().collect();
    assert_eq!(upstream_queries.len(), 1, "identical in-flight queries are coalesced");
    // A different name needs a second upstream query: over max_concurrent 1, REFUSED at once.
    client.send_to(&raw_query(3, "b.example.org.", 1, false), addr(m.port)).expect("send");
    let mut buf = [0u8; 512];
    let (n, _) = client.recv_from(&mut buf).expect("an immediate answer");
    assert_eq!(u16::from_be_bytes([buf[0], buf[1]]), 3);
    assert_eq!(rcode(&buf[..n]), 5, "REFUSED");
    // The upstream query asks the lowercased name with RD set and our EDNS size.
    let q = &upstream_queries[0];
    assert_eq!(q[2] & 1, 1, "RD");
    assert!(q.windows(10).any(|w| w == b"\x01a\x07example"));
}

#[test]
fn malformed_packets_get_formerr_or_silence_and_never_kill_the_server() {
    let (_up, m) = pair("malformed", "");
    let p = m.port;
    let wait = Duration::from_millis(300);
    // Shorter than a header: silence.
    assert_eq!(udp_exchange(p, &[1, 2, 3], wait), None);
    // A response sent as a query: silence.
    let mut resp = raw_query(7, "cart.shop.svc.cluster.local.", 1, false);
    resp[2] |= 0x80;
    assert_eq!(udp_exchange(p, &resp, wait), None);
    // Compression pointer loop in the question: FORMERR.
    let looped = vec![0, 9, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1];
    assert_eq!(udp_exchange(p, &looped, wait).map(|a| rcode(&a)), Some(1));
    // QDCOUNT 2 with one question, and QDCOUNT 0: FORMERR.
    let mut two = raw_query(9, "a.example.org.", 1, false);
    two[5] = 2;
    assert_eq!(udp_exchange(p, &two, wait).map(|a| rcode(&a)), Some(1));
    let mut none = raw_query(9, "a.example.org.", 1, false);
    none[5] = 0;
    assert_eq!(udp_exchange(p, &none, wait).map(|a| rcode(&a)), Some(1));
    // ARCOUNT says 3, nothing follows: FORMERR.
    let mut lie = raw_query(10, "a.example.org.", 1, false);
    lie[11] = 3;
    assert_eq!(udp_exchange(p, &lie, wait).map(|a| rcode(&a)), Some(1));
    // Two OPT records: FORMERR (RFC 6891 §6.1.1).
    let mut opts = raw_query(11, "a.example.org.", 1, true);
    opts[11] = 2;
    opts.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(udp_exchange(p, &opts, wait).map(|a| rcode(&a)), Some(1));
    // Opcode STATUS: NOTIMP.
    let mut status_q = raw_query(12, "a.example.org.", 1, false);
    status_q[2] |= 2 << 3;
    assert_eq!(udp_exchange(p, &status_q, wait).map(|a| rcode(&a)), Some(4));
    // Random garbage, many times.
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..500 {
        let len = rng.usize(0..300);
        let junk: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let _ = s.send_to(&junk, addr(p));
    }
    // Still serving.
    assert_eq!(short(p, &["cart.shop.svc.cluster.local"]), ["10.96.12.7"]);
}

#[test]
fn a_bad_corefile_exits_non_zero_naming_file_line_and_column() {
    let dir = temp_dir("badconf");
    let conf = dir.join("Corefile");
    std::fs::write(&conf, ".:5399 {\n    errors\n    cache {\n        sucess 100\n    }\n}\n").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ndots")).arg("-conf").arg(&conf).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:4:9: cache: unknown option 'sucess'", conf.display())), "{err}");
    // --conf spelling works too, and an unknown plugin is named.
    std::fs::write(&conf, ".:5399 {\n    rewrite name a b\n}\n").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ndots")).arg("--conf").arg(&conf).output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(":2:5: unknown plugin 'rewrite'"));
    // The kubernetes plugin outside a cluster with neither a kubeconfig nor a file: no API client.
    std::fs::write(&conf, ".:5399 {\n    kubernetes cluster.local\n}\n").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ndots"))
        .arg("-conf")
        .arg(&conf)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":2:5: kubernetes: in-cluster configuration") && err.contains("use `kubeconfig FILE` or `endpoint URL`"), "{err}");
}

#[test]
fn sigterm_answers_in_flight_queries_then_exits_zero() {
    // An upstream that answers each query after 700 ms.
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let up = sock.local_addr().expect("addr").port();
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let q = buf[..n].to_vec();
            let s = sock.try_clone().expect("clone");
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(700));
                let _ = s.send_to(&slow_answer(&q), from);
            });
        }
    });
    let core = main_corefile(up, "").replace("    errors\n", "    errors\n    health 127.0.0.1:0 {\n        lameduck 200ms\n    }\n");
    let mut m = start("sigterm", &core, &[("state.yaml", STATE)]);
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
    client.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    client.send_to(&raw_query(77, "slow.example.org.", 1, false), addr(m.port)).expect("send");
    thread::sleep(Duration::from_millis(100));
    sigterm(&m.child);
    let mut buf = [0u8; 512];
    let (n, _) = client.recv_from(&mut buf).expect("the in-flight query is answered");
    assert_eq!(rcode(&buf[..n]), 0);
    assert_eq!(&buf[n - 4..n], &[10, 9, 8, 7]);
    let status = m.child.wait().expect("exits");
    assert!(status.success(), "{status:?}");
}

/// Builds an answer with one A record 10.9.8.7 for a query (its OPT record dropped).
fn slow_answer(q: &[u8]) -> Vec<u8> {
    let mut end = 12;
    while q[end] != 0 {
        end += 1 + q[end] as usize;
    }
    let mut a = q[..end + 5].to_vec();
    a[2] |= 0x80;
    a[3] = 0x80;
    a[6..12].copy_from_slice(&[0, 1, 0, 0, 0, 0]);
    a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 9, 8, 7]);
    a
}

#[test]
fn reload_with_a_broken_file_keeps_serving_the_old_config() {
    let up = start("reload-up", &upstream_corefile(), &[]);
    let core = main_corefile(up.port, "").replace("    errors\n", "    errors\n    reload 2s 1s\n");
    let m = start("reload", &core, &[("state.yaml", STATE)]);
    std::fs::write(&m.conf, ".:1 {\n  no_such_plugin\n}\n").expect("break it");
    thread::sleep(Duration::from_millis(3500));
    assert_eq!(short(m.port, &["cart.shop.svc.cluster.local"]), ["10.96.12.7"]);
    assert_eq!(short(m.port, &["www.example.org"]), ["93.184.215.14"]);
}

#[test]
fn a_changed_cluster_state_file_is_served_within_seconds() {
    let (_up, m) = pair("state-reload", "");
    assert_eq!(status(&dig(m.port, &["new.shop.svc.cluster.local"])), "NXDOMAIN");
    let added = format!(
        "{STATE}- apiVersion: v1\n  kind: Service\n  metadata: {{name: new, namespace: shop}}\n  spec: {{type: ClusterIP, clusterIP: 10.96.99.9}}\n"
    );
    std::fs::write(m.dir.join("state.yaml"), added).expect("write");
    let deadline = Instant::now() + Duration::from_secs(8);
    while short(m.port, &["new.shop.svc.cluster.local"]) != ["10.96.99.9"] {
        assert!(Instant::now() < deadline, "the new service never appeared");
        thread::sleep(Duration::from_millis(200));
    }
    // A broken file keeps the previous state.
    std::fs::write(m.dir.join("state.yaml"), "items: [ {").expect("write");
    thread::sleep(Duration::from_millis(2500));
    assert_eq!(short(m.port, &["new.shop.svc.cluster.local"]), ["10.96.99.9"]);
}

/// The sum over `coredns_dns_requests_total` series in a /metrics page.
fn requests_total(metrics: &str) -> u64 {
    metrics.lines().filter(|l| l.starts_with("coredns_dns_requests_total{")).filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum()
}

#[test]
fn two_workers_share_the_port_their_cache_fills_and_their_metrics() {
    let up = start("workers-up", &upstream_corefile(), &[]);
    let prom = free_port();
    let core = main_corefile(up.port, "").replace("    errors\n", &format!("    errors\n    prometheus 127.0.0.1:{prom}\n"));
    // Steering off: every worker receives (with it, one worker would take every query at this rate).
    let m = start_env("workers", &core, &[("state.yaml", STATE)], &[("NDOTS_WORKERS", "2"), ("NDOTS_UDP_STEERING", "off")]);
    let before = requests_total(&http_get(prom, "/metrics"));
    // A fresh socket (source port) per query: the kernel spreads them over both workers.
    let mut answered = 0;
    for i in 0..200u16 {
        let reply = udp_exchange(m.port, &raw_query(i, "www.example.org", 1, false), Duration::from_secs(2)).expect("answered");
        assert_eq!(rcode(&reply), 0);
        assert!(reply.windows(4).any(|w| w == [93, 184, 215, 14]), "the address");
        answered += 1;
        if i == 0 {
            // The fill reaches the other worker's cache asynchronously; a query landing there in the
            // meantime is a miss of its own (seen once in CI under load).
            thread::sleep(Duration::from_millis(300));
        }
    }
    let metrics = http_get(prom, "/metrics");
    // Both workers' counters are in the page: with only one worker's, about half would be missing.
    assert_eq!(requests_total(&metrics) - before, answered, "{metrics}");
    // One upstream query for 200 client queries: the worker that forwarded it filled the other's cache.
    let forwarded: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("coredns_forward_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(forwarded, 1, "{metrics}");
    // The forwarded query's duration, under CoreDNS's names before and since 1.11.
    for series in [
        format!("coredns_forward_request_duration_seconds_count{{rcode=\"NOERROR\",to=\"127.0.0.1:{}\"}} 1", up.port),
        format!("coredns_proxy_request_duration_seconds_count{{proxy_name=\"forward\",rcode=\"NOERROR\",to=\"127.0.0.1:{}\"}} 1", up.port),
    ] {
        assert!(metrics.lines().any(|l| l == series), "{series} missing: {metrics}");
    }
    // Every answer passed through `cache` (the first plugin in the writer's stack, as CoreDNS labels it).
    let by_cache: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("coredns_dns_responses_total{") && l.contains("rcode=\"NOERROR\",plugin=\"cache\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(by_cache, answered, "{metrics}");
    // The process_* metrics CoreDNS's dashboards use, with plausible values.
    let value = |name: &str| -> f64 {
        let line = metrics.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name} missing: {metrics}"));
        line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{line}"))
    };
    let rss = value("process_resident_memory_bytes");
    assert!(rss > 1e6 && rss < 1e9, "rss {rss}");
    let started = value("process_start_time_seconds");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();
    assert!((now - started).abs() < 120.0, "started {started}, now {now}");
    assert!(value("process_open_fds") >= 4.0 && value("process_max_fds") >= value("process_open_fds"));
    assert!(value("process_cpu_seconds_total") >= 0.0 && value("process_virtual_memory_bytes") >= rss);
    // SIGTERM stops every worker and the process exits 0.
    let mut m = m;
    sigterm(&m.child);
    let status = m.child.wait().expect("wait");
    assert!(status.success(), "{status}");
}

#[test]
fn the_log_plugin_writes_corednss_lines_to_standard_output() {
    let up = start("log-up", &upstream_corefile(), &[]);
    let core = main_corefile(up.port, "").replace(
        "    errors\n",
        "    errors\n    log\n    log example.org \"{name} {type} {rcode} {>rflags}\" {\n        class denial\n    }\n",
    );
    let m = start("log", &core, &[("state.yaml", STATE)]);
    assert_eq!(short(m.port, &["www.example.org"]), ["93.184.215.14"]);
    assert_eq!(status(&dig(m.port, &["+tcp", "nothing.shop.svc.cluster.local"])), "NXDOMAIN");
    let deadline = Instant::now() + Duration::from_secs(5);
    let log = loop {
        let log = std::fs::read_to_string(m.dir.join("stdout")).unwrap_or_default();
        if log.lines().count() >= 2 || Instant::now() > deadline {
            break log;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let lines: Vec<&str> = log.lines().filter(|l| !l.contains("ready.invalid")).collect();
    // `log` with no arguments: every answer, in the common format, forwarded or synthesised.
    let www = lines.iter().find(|l| l.contains("\"A IN www.example.org. udp ")).unwrap_or_else(|| panic!("no line for www: {log}"));
    assert!(www.starts_with("[INFO] 127.0.0.1:"), "{www}");
    assert!(www.contains(" NOERROR qr,aa,rd,ra "), "the upstream (`file`) is authoritative, and its flags pass through: {www}");
    assert!(www.ends_with('s') && www.contains(" false 1232\" "), "{www}");
    let nx = lines
        .iter()
        .find(|l| l.contains("nothing.shop.svc.cluster.local. tcp "))
        .unwrap_or_else(|| panic!("no line for the NXDOMAIN: {log}"));
    assert!(nx.contains("\" NXDOMAIN qr,aa,rd"), "{nx}");
    // Queries are logged once, by the first directive whose scope holds the name.
    assert_eq!(lines.iter().filter(|l| l.contains("www.example.org")).count(), 1, "{log}");
}

#[test]
fn a_wildcard_listener_answers_from_the_address_the_query_was_sent_to() {
    let up = start("pktinfo-up", &upstream_corefile(), &[]);
    let corefile = format!(".:{{PORT}} {{\n    forward . 127.0.0.1:{}\n    cache 30\n}}\n", up.port);
    let main = start("pktinfo", &corefile, &[]);
    // No `bind`: one socket on 0.0.0.0. 127.0.0.2 is on lo too; answered from 127.0.0.1 (the kernel's
    // choice without IP_PKTINFO), a connected client socket would never see the reply (CoreDNS's
    // miekg/dns replies from the destination address of the query).
    for round in ["forwarded (a pending answer)", "from the cache (the hot path)"] {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.connect(("127.0.0.2", main.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
        s.send(&raw_query(7, "www.example.org", 1, false)).expect("send");
        let mut b = [0u8; 512];
        let n = s.recv(&mut b).unwrap_or_else(|e| panic!("{round}: no answer from 127.0.0.2: {e}"));
        assert_eq!(rcode(&b[..n]), 0, "{round}");
    }
}
