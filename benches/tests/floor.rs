//! The floor responder answers on a real socket, several queries per batch.

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn dns_floor_answers_every_query_of_a_burst() {
    let port = UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("a free port").port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dns-floor"))
        .arg(format!("127.0.0.1:{port}"))
        .stderr(Stdio::null())
        .spawn()
        .expect("dns-floor starts");
    let client = UdpSocket::bind("127.0.0.1:0").expect("client");
    client.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    // A query for a.example A, ID i; sent until the responder is up, then 20 at once.
    let query = |id: u16| {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0, 0, 1, 0, 1]);
        q
    };
    let mut buf = [0u8; 512];
    let up = (0..50).any(|_| client.send_to(&query(0), ("127.0.0.1", port)).is_ok() && client.recv(&mut buf).is_ok());
    assert!(up, "dns-floor never answered");
    for id in 1..=20u16 {
        client.send_to(&query(id), ("127.0.0.1", port)).expect("send");
    }
    let mut ids = Vec::new();
    while let Ok(n) = client.recv(&mut buf) {
        assert_eq!(&buf[n - 4..n], &benches::floor::ANSWER, "the fixed A record ends each answer");
        ids.push(u16::from_be_bytes([buf[0], buf[1]]));
    }
    let _ = child.kill();
    let _ = child.wait();
    ids.sort_unstable();
    ids.retain(|&i| i != 0);
    assert_eq!(ids, (1..=20).collect::<Vec<_>>());
}
