//! `cargo xtask soak [SECONDS]`: the release `ndots` on loopback under a steady mixed load for
//! SECONDS (default 600) while its upstreams die and come back and its Corefile changes every 30 s
//! (the `reload` plugin picks it up). Checks: the server never crashes; every query gets an answer
//! (SERVFAIL counts as one; only queries with no answer at all are lost); SERVFAIL only while every
//! upstream is down, for names not in the cache; RSS flat after warm-up. Writes
//! `target/soak/report.md` and `report.html` (charts) and exits 1 if a check fails.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Queries per second the load sends.
const RATE: u64 = 2000;
/// A query with no answer after this long is lost (forward's deadline is 5 s).
const LOST_AFTER: Duration = Duration::from_secs(8);
/// The first minute warms the cache and the allocator; RSS is judged after it.
const WARMUP: Duration = Duration::from_secs(60);

pub(crate) fn free_port() -> u16 {
    loop {
        let Ok(u) = UdpSocket::bind("127.0.0.1:0") else { continue };
        let Ok(a) = u.local_addr() else { continue };
        if std::net::TcpListener::bind(("127.0.0.1", a.port())).is_ok() {
            return a.port();
        }
    }
}

pub(crate) fn spawn(bin: &Path, conf: &Path, log: &Path) -> std::io::Result<Child> {
    let log = std::fs::File::create(log)?;
    Command::new(bin).arg("-conf").arg(conf).env("NDOTS_LOG", "warn").stdout(Stdio::null()).stderr(log).spawn()
}

pub(crate) fn wait_answering(port: u16) {
    for _ in 0..100 {
        if let Ok(s) = UdpSocket::bind("127.0.0.1:0") {
            let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
            let _ = s.send_to(&query(1, "cart.shop.svc.cluster.local"), ("127.0.0.1", port));
            let mut b = [0u8; 512];
            if s.recv_from(&mut b).is_ok() {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn query(id: u16, name: &str) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in name.split('.') {
        m.push(l.len() as u8);
        m.extend_from_slice(l.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    m
}

pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// What one 5-second window saw.
#[derive(Default, Clone)]
struct Window {
    t: f64,
    sent: u64,
    answered: u64,
    servfail: u64,
    lost: u64,
    rss_kib: u64,
    upstreams_up: u8,
    reloads: u64,
}

pub fn soak(secs: u64) -> ExitCode {
    if let Err(c) = crate::run(
        "cargo build --release -p resolver --bin ndots",
        crate::cargo().args(["build", "--release", "-p", "resolver", "--bin", "ndots"]),
    ) {
        return c;
    }
    let target = PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()));
    let bin = match std::fs::canonicalize(target.join("release/ndots")) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("xtask: release ndots: {e}");
            return ExitCode::FAILURE;
        }
    };
    let dir = target.join("soak");
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("xtask: {e}");
        return ExitCode::FAILURE;
    }
    // Absolute: the Corefile's own paths resolve against its folder.
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    let state = include_str!("../../examples/cluster-state.yaml");
    let (p_main, p_up1, p_up2) = (free_port(), free_port(), free_port());
    let zone = "$ORIGIN example.org.\n$TTL 60\n@ IN SOA ns h 1 7200 1800 86400 30\n@ IN NS ns\nns IN A 10.0.0.1\n*.hot IN A 10.0.0.2\n*.new IN A 10.0.0.3\n";
    let up_conf =
        |port: u16| format!(".:{port} {{\n    bind 127.0.0.1\n    file {} example.org\n}}\n", dir.join("example.org.zone").display());
    let main_conf = |n: u64| {
        format!(
            "# generation {n}\n.:{p_main} {{\n    bind 127.0.0.1\n    reload 2s 1s\n    kubernetes cluster.local in-addr.arpa ip6.arpa {{\n        pods insecure\n        fallthrough in-addr.arpa ip6.arpa\n        ttl 30\n        cluster_state {}\n    }}\n    forward . 127.0.0.1:{p_up1} 127.0.0.1:{p_up2} {{\n        max_concurrent 1000\n    }}\n    cache 30 {{\n        disable success cluster.local\n        disable denial cluster.local\n        serve_stale\n    }}\n}}\n",
            dir.join("state.yaml").display()
        )
    };
    let conf = dir.join("Corefile");
    let written = [
        std::fs::write(dir.join("state.yaml"), state),
        std::fs::write(dir.join("example.org.zone"), zone),
        std::fs::write(dir.join("up1.Corefile"), up_conf(p_up1)),
        std::fs::write(dir.join("up2.Corefile"), up_conf(p_up2)),
        std::fs::write(&conf, main_conf(0)),
    ];
    if let Some(Err(e)) = written.into_iter().find(Result::is_err) {
        eprintln!("xtask: {e}");
        return ExitCode::FAILURE;
    }
    let start_up = |k: u8| spawn(&bin, &dir.join(format!("up{k}.Corefile")), &dir.join(format!("up{k}.log")));
    let (Ok(up1), Ok(up2), Ok(mut main)) = (start_up(1), start_up(2), spawn(&bin, &conf, &dir.join("ndots.log"))) else {
        eprintln!("xtask: cannot start ndots");
        return ExitCode::FAILURE;
    };
    let mut ups: [Option<Child>; 2] = [Some(up1), Some(up2)];
    wait_answering(p_main);
    eprintln!("soak: ndots pid {} on 127.0.0.1:{p_main}, upstreams :{p_up1} :{p_up2}, {RATE} queries/s for {secs} s", main.id());

    // The load: one sender, one receiver, queries matched by ID.
    let sock = match UdpSocket::bind("127.0.0.1:0").and_then(|s| s.connect(("127.0.0.1", p_main)).map(|()| s)) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("xtask: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    let inflight: Arc<Mutex<BTreeMap<u16, (Instant, bool)>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let (answered, servfail, servfail_explained) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let all_down = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let receiver = {
        let (sock, inflight, answered, servfail, explained, stop) =
            (sock.clone(), inflight.clone(), answered.clone(), servfail.clone(), servfail_explained.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                let Ok(n) = sock.recv(&mut buf) else { continue };
                if n < 12 {
                    continue;
                }
                let id = u16::from_be_bytes([buf[0], buf[1]]);
                let Some((_, during_outage)) = inflight.lock().ok().and_then(|mut m| m.remove(&id)) else { continue };
                answered.fetch_add(1, Ordering::Relaxed);
                if buf[3] & 0x0f == 2 {
                    servfail.fetch_add(1, Ordering::Relaxed);
                    if during_outage {
                        explained.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };

    let serving = [Arc::new(AtomicBool::new(true)), Arc::new(AtomicBool::new(true))];
    let t0 = Instant::now();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next_id: u16 = 1;
    let mut sent = 0u64;
    let mut lost = 0u64;
    let mut windows: Vec<Window> = Vec::new();
    let mut last = Window::default();
    let mut reloads = 0u64;
    let mut next_reload = Duration::from_secs(30);
    let mut events: Vec<(f64, String)> = Vec::new();
    let names =
        ["cart.shop.svc.cluster.local", "db.shop.svc.cluster.local", "kubernetes.default.svc.cluster.local", "nope.shop.svc.cluster.local"];
    while t0.elapsed() < Duration::from_secs(secs) {
        let now = t0.elapsed();
        // Faults: every minute upstream 1 dies for 20 s; at minutes 3, 6, 9 both die for 10 s.
        let minute = now.as_secs() % 60;
        let both = (now.as_secs() / 60) % 3 == 2 && (30..40).contains(&minute);
        let want = [!(minute < 20 || both), !both];
        for (k, up) in ups.iter_mut().enumerate() {
            match (want[k], up.is_some()) {
                (false, true) => {
                    if let Some(mut c) = up.take() {
                        let _ = c.kill();
                        let _ = c.wait();
                    }
                    events.push((now.as_secs_f64(), format!("upstream {} killed", k + 1)));
                }
                (true, false) => {
                    *up = start_up(k as u8 + 1).ok();
                    // The outage lasts until the new process answers (watched off the load's thread,
                    // so the load keeps its pace).
                    serving[k].store(false, Ordering::Relaxed);
                    let (flag, port) = (serving[k].clone(), [p_up1, p_up2][k]);
                    std::thread::spawn(move || {
                        wait_answering(port);
                        flag.store(true, Ordering::Relaxed);
                    });
                    events.push((now.as_secs_f64(), format!("upstream {} restarted", k + 1)));
                }
                _ => {}
            }
        }
        all_down.store(ups.iter().zip(&serving).all(|(u, s)| u.is_none() || !s.load(Ordering::Relaxed)), Ordering::Relaxed);
        if now >= next_reload {
            reloads += 1;
            next_reload += Duration::from_secs(30);
            let _ = std::fs::write(&conf, main_conf(reloads));
        }
        // This millisecond's share of the rate.
        let due = (now.as_secs_f64() * RATE as f64) as u64;
        while sent < due {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let name = match rng % 100 {
                0..40 => names[(rng >> 8) as usize % names.len()].to_string(),
                40..80 => format!("w{}.hot.example.org", (rng >> 8) % 200),
                80..95 => format!("u{}.new.example.org", rng >> 16),
                _ => format!("x{}.missing.example.org", (rng >> 16) % 1000),
            };
            let id = next_id;
            next_id = next_id.wrapping_add(1).max(1);
            if let Ok(mut m) = inflight.lock() {
                if m.contains_key(&id) {
                    // 65,535 queries in flight: the oldest is long lost.
                    m.remove(&id);
                    lost += 1;
                }
                m.insert(id, (Instant::now(), all_down.load(Ordering::Relaxed)));
            }
            let _ = sock.send(&query(id, &name));
            sent += 1;
        }
        if let Ok(mut m) = inflight.lock() {
            let before = m.len();
            m.retain(|_, (at, _)| at.elapsed() < LOST_AFTER);
            lost += (before - m.len()) as u64;
        }
        if now.as_secs() >= 5 * (windows.len() as u64 + 1) {
            let w = Window {
                t: now.as_secs_f64(),
                sent,
                answered: answered.load(Ordering::Relaxed),
                servfail: servfail.load(Ordering::Relaxed),
                lost,
                rss_kib: rss_kib(main.id()).unwrap_or(0),
                upstreams_up: ups.iter().filter(|u| u.is_some()).count() as u8,
                reloads,
            };
            eprintln!(
                "soak {:>4.0}/{secs} s: {} qps sent, {} answered, {} SERVFAIL, {} lost, RSS {} MiB, upstreams up {}, reloads {}",
                w.t,
                (w.sent - last.sent) / 5,
                (w.answered - last.answered) / 5,
                w.servfail - last.servfail,
                w.lost - last.lost,
                w.rss_kib / 1024,
                w.upstreams_up,
                w.reloads
            );
            last = w.clone();
            windows.push(w);
            if main.try_wait().ok().flatten().is_some() {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // Let the last answers arrive, then count what never did.
    std::thread::sleep(LOST_AFTER);
    stop.store(true, Ordering::Relaxed);
    let _ = receiver.join();
    lost += inflight.lock().map(|m| m.len() as u64).unwrap_or(0);
    let crashed = main.try_wait().ok().flatten();
    let _ = Command::new("kill").arg("-TERM").arg(main.id().to_string()).status();
    let exit = main.wait().ok();
    for c in ups.iter_mut().flatten() {
        let _ = c.kill();
        let _ = c.wait();
    }
    let answered = answered.load(Ordering::Relaxed);
    let servfail = servfail.load(Ordering::Relaxed);
    let explained = servfail_explained.load(Ordering::Relaxed);
    let after: Vec<u64> = windows.iter().filter(|w| w.t >= WARMUP.as_secs_f64()).map(|w| w.rss_kib).collect();
    let (rss_first, rss_max, rss_last) =
        (after.first().copied().unwrap_or(0), after.iter().copied().max().unwrap_or(0), after.last().copied().unwrap_or(0));
    let rss_growth = if rss_first == 0 { 0.0 } else { (rss_last as f64 - rss_first as f64) / rss_first as f64 };
    let checks = [
        ("no crash: ndots ran to the end and exited 0 on SIGTERM", crashed.is_none() && exit.is_some_and(|e| e.success())),
        ("no query lost (every one answered, SERVFAIL included)", lost == 0),
        ("SERVFAIL only while every upstream was down", servfail == explained),
        ("RSS flat after warm-up (last within 25% of the first)", rss_growth.abs() <= 0.25),
    ];
    let mut md = format!(
        "# ndots soak\n\n{secs} s at {RATE} queries/s on loopback (40% cluster names, 40% 200 cached external names, 15% new names, 5% NXDOMAIN); upstream 1 killed for 20 s every minute, both for 10 s in minutes 3, 6, 9, ...; Corefile rewritten every 30 s (reload plugin).\n\n| figure | value |\n|---|---|\n| queries sent | {sent} |\n| answered | {answered} |\n| SERVFAIL | {servfail} (during full upstream outages: {explained}) |\n| lost | {lost} |\n| reloads | {reloads} |\n| RSS after warm-up: first / max / last | {} / {} / {} MiB ({:+.1}%) |\n\n",
        rss_first / 1024,
        rss_max / 1024,
        rss_last / 1024,
        100.0 * rss_growth
    );
    for (name, ok) in &checks {
        let _ = writeln!(md, "- {} {name}", if *ok { "PASS" } else { "FAIL" });
    }
    let pts = |f: &dyn Fn(&Window, &Window) -> f64| -> Vec<(f64, f64)> {
        windows.iter().zip(std::iter::once(&Window::default()).chain(windows.iter())).map(|(w, p)| (w.t, f(w, p))).collect()
    };
    let markers = &events;
    let html = sim::html::page(
        "ndots soak",
        &format!(
            "<pre>{}</pre>{}{}",
            sim::html::escape(&md),
            sim::html::marked_chart(
                "Queries per second",
                "seconds",
                "queries/s",
                &[
                    sim::html::Series { label: "sent", color: "#2980b9", points: pts(&|w, p| (w.sent - p.sent) as f64 / 5.0) },
                    sim::html::Series { label: "answered", color: "#27ae60", points: pts(&|w, p| (w.answered - p.answered) as f64 / 5.0) },
                    sim::html::Series { label: "SERVFAIL", color: "#c0392b", points: pts(&|w, p| (w.servfail - p.servfail) as f64 / 5.0) },
                    sim::html::Series { label: "lost", color: "#000", points: pts(&|w, p| (w.lost - p.lost) as f64 / 5.0) },
                ],
                markers
            ),
            sim::html::marked_chart(
                "ndots RSS",
                "seconds",
                "MiB",
                &[sim::html::Series { label: "RSS", color: "#8e44ad", points: pts(&|w, _| w.rss_kib as f64 / 1024.0) }],
                markers
            )
        ),
    );
    let _ = std::fs::write(dir.join("report.md"), &md);
    let _ = std::fs::write(dir.join("report.html"), html);
    println!("{md}");
    eprintln!("soak: report in {}", dir.join("report.md").display());
    if checks.iter().all(|c| c.1) { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
