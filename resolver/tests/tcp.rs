//! DNS over TCP against the real binary: pipelining and out-of-order answers (RFC 7766 §6.2.1.1),
//! zero-length frames, idle and slow clients (a stalled client cannot hold the server).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// Answers `a.example` itself; forwards everything else to a port where nobody listens.
fn corefile(dead: u16) -> String {
    format!(
        ".:{{PORT}} {{\n    bind 127.0.0.1\n    hosts {{\n        10.0.0.1 a.example\n        fallthrough\n    }}\n    forward . 127.0.0.1:{dead}\n}}\n"
    )
}

fn frame(msg: &[u8]) -> Vec<u8> {
    let mut f = (msg.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(msg);
    f
}

fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut msg).ok()?;
    Some(msg)
}

/// Whether the server closed the connection (EOF) within `wait`.
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).expect("timeout");
    let mut b = [0u8; 1];
    // A close with our query unread arrives as a reset.
    match s.read(&mut b) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

#[test]
fn pipelined_queries_are_answered_as_they_complete_not_in_order() {
    let m = start("tcp-pipeline", &corefile(free_port()), &[]);
    let mut s = TcpStream::connect(addr(m.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    // One write: a query that waits on a dead upstream, then two the server answers at once.
    let mut bytes = frame(&raw_query(1, "slow.example.org", 1, false));
    bytes.extend(frame(&raw_query(2, "a.example", 1, false)));
    bytes.extend(frame(&raw_query(3, "a.example", 28, false)));
    s.write_all(&bytes).expect("write");
    let ids: Vec<u16> = (0..3).filter_map(|_| read_frame(&mut s)).map(|m| u16::from_be_bytes([m[0], m[1]])).collect();
    assert_eq!(ids, vec![2, 3, 1], "the fast answers do not wait for the slow one (RFC 7766 §6.2.1.1)");
}

#[test]
fn a_zero_length_frame_closes_the_connection() {
    let m = start("tcp-zero", &corefile(free_port()), &[]);
    let mut s = TcpStream::connect(addr(m.port)).expect("connect");
    s.write_all(&frame(&raw_query(7, "a.example", 1, false))).expect("write");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    assert!(read_frame(&mut s).is_some_and(|a| rcode(&a) == 0), "answered first");
    s.write_all(&[0, 0]).expect("write");
    assert!(closed_within(&mut s, Duration::from_secs(3)), "closed after a zero-length frame");
}

#[test]
fn idle_and_stalled_clients_are_closed_and_do_not_hold_up_others() {
    let m = start("tcp-slow", &corefile(free_port()), &[]);
    let t0 = Instant::now();
    // One client says nothing; another sends a length and half a message, then stalls.
    let mut idle = TcpStream::connect(addr(m.port)).expect("connect");
    let mut stalled = TcpStream::connect(addr(m.port)).expect("connect");
    let q = raw_query(9, "a.example", 1, false);
    stalled.write_all(&frame(&q)[..q.len() / 2]).expect("write");
    // Meanwhile everyone else is served at once, over UDP and over TCP.
    for i in 0..20 {
        let a = udp_exchange(m.port, &raw_query(100 + i, "a.example", 1, false), Duration::from_secs(1)).expect("udp answered");
        assert_eq!(rcode(&a), 0);
        let mut other = TcpStream::connect(addr(m.port)).expect("connect");
        other.set_read_timeout(Some(Duration::from_secs(1))).expect("timeout");
        other.write_all(&frame(&raw_query(200 + i, "a.example", 1, false))).expect("write");
        assert!(read_frame(&mut other).is_some(), "tcp answered while two clients stall");
    }
    assert!(t0.elapsed() < Duration::from_secs(5), "no waiting behind the stalled clients: {:?}", t0.elapsed());
    // Both are closed after the idle timeout (10 s, CoreDNS's default), not before and not never.
    assert!(closed_within(&mut idle, Duration::from_secs(15)), "idle client closed");
    assert!(closed_within(&mut stalled, Duration::from_secs(5)), "stalled client closed");
    let took = t0.elapsed();
    assert!(took >= Duration::from_secs(9) && took < Duration::from_secs(16), "closed at the idle timeout: {took:?}");
}

#[test]
fn connections_beyond_the_limit_are_closed_at_accept_and_room_frees_up() {
    // One worker: the process-wide limit of 1,024 client connections all in one place.
    let m = start_env("tcp-limit", &corefile(free_port()), &[], &[("NDOTS_WORKERS", "1")]);
    let mut conns = Vec::new();
    for i in 0..1024u16 {
        let mut c = TcpStream::connect(addr(m.port)).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        c.write_all(&frame(&raw_query(i, "a.example", 1, false))).expect("write");
        assert!(read_frame(&mut c).is_some(), "connection {i} served");
        conns.push(c);
    }
    let mut extra = TcpStream::connect(addr(m.port)).expect("the kernel still accepts");
    let _ = extra.write_all(&frame(&raw_query(5000, "a.example", 1, false)));
    assert!(closed_within(&mut extra, Duration::from_secs(3)), "the 1,025th connection is closed unanswered");
    // UDP is unaffected.
    assert!(udp_exchange(m.port, &raw_query(6000, "a.example", 1, false), Duration::from_secs(1)).is_some());
    // One client leaves: a new connection is served again.
    drop(conns.pop());
    std::thread::sleep(Duration::from_millis(300));
    let mut again = TcpStream::connect(addr(m.port)).expect("connect");
    again.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    again.write_all(&frame(&raw_query(7000, "a.example", 1, false))).expect("write");
    assert!(read_frame(&mut again).is_some(), "served once there is room");
}

#[test]
fn a_client_that_never_reads_is_not_read_from_and_costs_no_memory() {
    let m = start_env("tcp-noread", &corefile(free_port()), &[], &[("NDOTS_WORKERS", "1")]);
    let pid = m.child.id();
    let rss = || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok()))
            .unwrap_or(0)
    };
    let before = rss();
    // Pipeline queries and never read an answer: the server stops reading once its queue and the
    // socket buffers are full, so our writes stall (here: time out) instead of its memory growing.
    let mut hog = TcpStream::connect(addr(m.port)).expect("connect");
    hog.set_write_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let chunk: Vec<u8> = (0..1000u16).flat_map(|i| frame(&raw_query(i, "a.example", 1, false))).collect();
    let mut sent = 0usize;
    let stalled = loop {
        match hog.write_all(&chunk) {
            Ok(()) => sent += 1000,
            Err(_) => break true,
        }
        if sent >= 2_000_000 {
            break false;
        }
    };
    assert!(stalled, "the server kept reading {sent} queries nobody reads the answers of");
    // Others are served meanwhile, and the server's memory did not follow the queries.
    assert!(udp_exchange(m.port, &raw_query(1, "a.example", 1, false), Duration::from_secs(1)).is_some());
    let mut other = TcpStream::connect(addr(m.port)).expect("connect");
    other.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    other.write_all(&frame(&raw_query(2, "a.example", 1, false))).expect("write");
    assert!(read_frame(&mut other).is_some());
    let grown = rss().saturating_sub(before);
    assert!(grown < 16 * 1024, "RSS grew {grown} KiB after {sent} unread queries");
    // After the idle timeout with a full queue, the connection is closed.
    let mut hog = hog;
    let mut drained = 0usize;
    hog.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    let mut b = vec![0u8; 65536];
    loop {
        match hog.read(&mut b) {
            Ok(0) => break,
            Ok(n) => drained += n,
            Err(e) => panic!("not closed: {e} after {drained} bytes"),
        }
    }
    assert!(drained > 0, "the answers that fit were delivered before the close");
}
