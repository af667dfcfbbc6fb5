//! `cargo xtask bench conntrack [ENTRIES]` (root): what node-local mode's `stale_conntrack` scan
//! costs on this kernel. In a network namespace, ENTRIES UDP conntrack entries (default 100,000; one
//! in ten a DNS flow DNATed from a ClusterIP, as kube-proxy would), then the scan's read of the table
//! (`resolver::driver::node_scan::dump`: the whole table over ctnetlink, kept only the flows to the
//! ClusterIP's port 53) timed five times. The scan runs every `detect { conntrack_scan }` (10 s).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const NS: &str = "ndots-ctscan";
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

pub fn bench(entries: usize) -> ExitCode {
    if !crate::sh(&["id", "-u"]).is_ok_and(|u| u.trim() == "0") {
        eprintln!("bench conntrack: needs root (a network namespace, iptables)");
        return ExitCode::FAILURE;
    }
    let _ = crate::sh(&["ip", "netns", "del", NS]);
    if let Err(e) = crate::sh(&["ip", "netns", "add", NS]) {
        eprintln!("bench conntrack: cannot make a network namespace: {e}");
        return ExitCode::FAILURE;
    }
    let setup: [&[&str]; 4] = [
        &["ip", "link", "set", "lo", "up"],
        &["ip", "route", "add", "10.96.0.0/16", "dev", "lo"],
        // Long-lived entries, so none expires while the table fills.
        &["sysctl", "-q", "-w", "net.netfilter.nf_conntrack_udp_timeout=600"],
        &[
            "iptables",
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-d",
            "10.96.0.10",
            "-p",
            "udp",
            "--dport",
            "53",
            "-j",
            "DNAT",
            "--to-destination",
            "127.0.0.1:53",
        ],
    ];
    let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default();
    let n = entries.to_string();
    let result =
        setup.iter().try_for_each(|a| crate::in_netns(NS, a).map(drop)).and_then(|()| crate::in_netns(NS, &[&exe, "__ctscan", &n]));
    let _ = crate::sh(&["ip", "netns", "del", NS]);
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench conntrack: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Inside the namespace: fills the table, then times the scan's read.
pub fn helper(args: &[String]) -> ExitCode {
    let entries: usize = args.first().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let mut made = 0;
    // Source ports 10000-59999 from two source addresses: up to 100,000 distinct flows.
    let dst = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 9999);
    'fill: for src in [Ipv4Addr::LOCALHOST, Ipv4Addr::new(127, 0, 0, 5)] {
        for port in 10_000u16..60_000 {
            if made == entries {
                break 'fill;
            }
            let Ok(s) = UdpSocket::bind(SocketAddr::new(IpAddr::V4(src), port)) else { continue };
            let to = if made % 10 == 0 { SocketAddr::new(IpAddr::V4(VIP), 53) } else { dst };
            if s.send_to(b"x", to).is_ok() {
                made += 1;
            }
        }
    }
    let mut times = Vec::new();
    let mut dns = 0;
    for _ in 0..5 {
        let t = Instant::now();
        match resolver::driver::node_scan::dump(&[IpAddr::V4(VIP)]) {
            Ok(flows) => dns = flows.len(),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        }
        times.push(t.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "conntrack scan: {made} entries in the table, {dns} of them DNS flows to the ClusterIP; a scan took {:.1} ms (median of 5; {:.1} to {:.1})",
        ms(times[2]),
        ms(times[0]),
        ms(times[4])
    );
    ExitCode::SUCCESS
}
