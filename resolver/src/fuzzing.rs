//! Fuzzing entry points: the bodies of the `cargo fuzz` targets in `fuzz`, here so that the
//! ordinary test suite replays the checked-in corpus and every past crash on stable Rust
//! (`tests/fuzz_corpus.rs`). Each takes arbitrary bytes, must never panic, and asserts what must
//! hold whatever the input.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::{Client, ClusterState, Config, Dest, Handled, Server, Transport};

/// Any text as a Corefile: parsed and turned into a configuration, or a positioned error. Imports
/// and environment variables are off (no files, no environment).
pub fn corefile(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cf) = crate::corefile::parse_str(text, "fuzz", None, &|_| None) {
        let _ = Config::from_corefile(&cf, std::path::Path::new("/nonexistent"));
    }
}

/// Any text as a `kubectl get ... -o yaml|json` List: a cluster state or an error.
pub fn cluster_state(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(state) = ClusterState::parse(text, "fuzz") {
        let _ = state.bytes();
    }
}

/// Any text as an RFC 1035 zone file (`file` plugin): a zone or an error.
pub fn zone(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = crate::zone::Zone::parse(text, "example.org.");
}

const COREFILE: &str = ".:53 {
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    autopath @kubernetes
    forward . 10.0.0.2:53 10.0.0.3:53 {
       max_concurrent 100
    }
    cache 30 {
       serve_stale
       prefetch 2
    }
    loop
    loadbalance
}
example.org:53 {
    template IN A example.org {
       answer \"www.example.org 60 IN A 10.9.9.9\"
    }
}
";

fn setup() -> &'static (Arc<Config>, Arc<ClusterState>) {
    static S: OnceLock<(Arc<Config>, Arc<ClusterState>)> = OnceLock::new();
    S.get_or_init(|| {
        let cf = crate::corefile::parse_str(COREFILE, "fuzz", None, &|_| None).expect("corefile");
        let cfg = Config::from_corefile(&cf, std::path::Path::new("/")).expect("config");
        let state = ClusterState::parse(include_str!("../../examples/cluster-state.yaml"), "state").expect("state");
        (Arc::new(cfg), Arc::new(state))
    })
}

/// The server's whole input surface from raw bytes: client queries over UDP and over TCP (split into
/// frames by their 2-byte length prefix, as the driver reads them), upstream answers (arbitrary
/// bytes, with the ID of a query the server really sent so they get past the ID check), and time
/// passing. Every answer is a DNS response; memory stays bounded.
///
/// Input: a sequence of operations, each an opcode byte and, for the first three, a length byte
/// and that many bytes.
pub fn server(data: &[u8]) {
    let (cfg, state) = setup();
    let mut server = Server::new(cfg.clone(), state.clone(), 7);
    let local: SocketAddr = "10.96.0.10:53".parse().expect("addr");
    let mut now = Duration::from_secs(1);
    let mut out = Vec::new();
    // The upstream queries the server sent: (upstream, transport, DNS id).
    let mut sent: Vec<(SocketAddr, Transport, [u8; 2])> = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let op = data[i];
        i += 1;
        let len = data.get(i).copied().unwrap_or(0) as usize;
        let chunk = data.get(i + 1..(i + 1 + len).min(data.len())).unwrap_or(&[]);
        match op % 4 {
            0 => {
                i += 1 + len;
                let src = SocketAddr::from(([10, 244, 1, 10], 40000 + u16::from(op)));
                let c = Client { src, local, transport: Transport::Udp, conn: 0 };
                check(server.handle_query(now, c, chunk, &mut out), &out);
            }
            1 => {
                i += 1 + len;
                let src = SocketAddr::from(([10, 244, 1, 11], 50000));
                let c = Client { src, local, transport: Transport::Tcp, conn: 1 };
                let mut rest = chunk;
                while rest.len() >= 2 {
                    let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                    if n == 0 || rest.len() < 2 + n {
                        break;
                    }
                    check(server.handle_query(now, c, &rest[2..2 + n], &mut out), &out);
                    rest = &rest[2 + n..];
                }
            }
            2 => {
                i += 1 + len;
                if let Some(&(up, transport, id)) = sent.get(usize::from(op / 4) % sent.len().max(1)) {
                    let mut msg = chunk.to_vec();
                    if msg.len() >= 2 {
                        msg[..2].copy_from_slice(&id);
                    }
                    server.handle_upstream(now, up, transport, &msg);
                }
            }
            _ => {
                now += Duration::from_millis(u64::from(op) * 40);
                server.handle_timeout(now);
            }
        }
        while let Some(t) = server.poll_transmit() {
            match t.dest {
                Dest::Upstream { addr, transport, .. } if t.payload.len() >= 2 => {
                    sent.push((addr, transport, [t.payload[0], t.payload[1]]))
                }
                Dest::Client(_) => assert!(t.payload.len() >= 12 && t.payload[2] & 0x80 != 0, "a client gets a DNS response"),
                _ => {}
            }
        }
        while server.poll_cache_fill().is_some() {}
        assert!(server.memory_bytes() < 64 << 20, "memory bounded: {}", server.memory_bytes());
    }
}

fn check(h: Handled, out: &[u8]) {
    if h == Handled::Answered {
        assert!(out.len() >= 12 && out[2] & 0x80 != 0, "an answer is a DNS response");
    }
}
