//! `cargo xtask bench rss [NAMES]`: the release `ndots` (one worker) caching NAMES distinct names
//! (default 1,000,000) forwarded to a second `ndots` that answers them from a wildcard zone; reports
//! the RSS before and after and the bytes per cached entry (RSS growth over `coredns_cache_entries`).

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use crate::soak::{free_port, query, rss_kib, spawn, wait_answering};

/// Queries in flight at once.
const WINDOW: u64 = 256;

pub fn rss(names: u64) -> ExitCode {
    if let Err(c) = crate::run(
        "cargo build --release -p resolver --bin ndots",
        crate::cargo().args(["build", "--release", "-p", "resolver", "--bin", "ndots"]),
    ) {
        return c;
    }
    let target = PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()));
    let (Ok(bin), dir) = (std::fs::canonicalize(target.join("release/ndots")), target.join("bench-rss")) else {
        eprintln!("xtask: no release ndots");
        return ExitCode::FAILURE;
    };
    let _ = std::fs::create_dir_all(&dir);
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    let (p_main, p_up, prom) = (free_port(), free_port(), free_port());
    let zone = "$ORIGIN m.example.org.\n$TTL 3600\n@ IN SOA ns h 1 7200 1800 86400 3600\n@ IN NS ns\nns IN A 10.0.0.1\n* IN A 10.0.0.3\n";
    let cap = names + names / 10 + 1024;
    let files = [
        ("zone", zone.to_string()),
        ("up.Corefile", format!(".:{p_up} {{\n    bind 127.0.0.1\n    file {} m.example.org\n}}\n", dir.join("zone").display())),
        (
            "main.Corefile",
            format!(
                ".:{p_main} {{\n    bind 127.0.0.1\n    prometheus 127.0.0.1:{prom}\n    forward . 127.0.0.1:{p_up} {{\n        max_concurrent 10000\n    }}\n    cache 3600 {{\n        success {cap}\n        denial 1024\n    }}\n}}\n"
            ),
        ),
    ];
    for (name, text) in &files {
        if let Err(e) = std::fs::write(dir.join(name), text) {
            eprintln!("xtask: {e}");
            return ExitCode::FAILURE;
        }
    }
    let Ok(mut up) = spawn(&bin, &dir.join("up.Corefile"), &dir.join("up.log")) else { return ExitCode::FAILURE };
    let Ok(mut main) =
        Command::new(&bin).arg("-conf").arg(dir.join("main.Corefile")).env("NDOTS_LOG", "warn").env("NDOTS_WORKERS", "1").spawn()
    else {
        return ExitCode::FAILURE;
    };
    wait_answering(p_up);
    wait_answering(p_main);
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kib(main.id()).unwrap_or(0);
    let Ok(sock) = UdpSocket::bind("127.0.0.1:0").and_then(|s| s.connect(("127.0.0.1", p_main)).map(|()| s)) else {
        return ExitCode::FAILURE;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_millis(500)));
    let t0 = Instant::now();
    let (mut sent, mut answered, mut timeouts) = (0u64, 0u64, 0u64);
    let mut buf = [0u8; 512];
    while answered + timeouts < names {
        while sent < names && sent - answered - timeouts < WINDOW {
            let _ = sock.send(&query(sent as u16, &format!("n{sent}.m.example.org")));
            sent += 1;
        }
        match sock.recv(&mut buf) {
            Ok(_) => answered += 1,
            // Lost on loopback under load: count it and move on.
            Err(_) => timeouts += sent - answered - timeouts,
        }
        if answered.is_multiple_of(100_000) && answered > 0 {
            eprintln!(
                "bench rss: {answered} names cached, RSS {} MiB, {:.0} s",
                rss_kib(main.id()).unwrap_or(0) / 1024,
                t0.elapsed().as_secs_f64()
            );
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(main.id()).unwrap_or(0);
    let entries: u64 = http_get(prom, "/metrics")
        .lines()
        .filter(|l| l.starts_with("coredns_cache_entries{") && l.contains("type=\"success\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64;
    let _ = Command::new("kill").arg("-TERM").arg(main.id().to_string()).status();
    let _ = main.wait();
    let _ = up.kill();
    let _ = up.wait();
    let per = (after.saturating_sub(before) * 1024).checked_div(entries).unwrap_or(0);
    println!(
        "bench rss: {names} distinct names sent in {:.0} s ({answered} answered, {timeouts} timed out); {entries} cache entries; RSS {} MiB before, {} MiB after: {per} bytes of RSS per cached entry",
        t0.elapsed().as_secs_f64(),
        before / 1024,
        after / 1024
    );
    ExitCode::SUCCESS
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}
