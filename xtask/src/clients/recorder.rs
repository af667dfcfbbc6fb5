//! The recorder: the nameservers the real library talks to, noting every packet and applying the
//! case's fault rules before relaying to a real `ndots`.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sim::client::Transport;
use sim::client::harness::{Rule, decide};

/// One packet as the recorder saw it or the model sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Packet {
    pub(super) at: Duration,
    pub(super) transport: Transport,
    /// Socket identity: the source port (real) or the model's socket id.
    pub(super) socket: u64,
    /// The nameserver it went to.
    pub(super) server: IpAddr,
    pub(super) qname: String,
    pub(super) qtype: u16,
    pub(super) edns: Option<u16>,
}

impl Packet {
    pub(super) fn key(&self) -> (Transport, &str, u16, Option<u16>) {
        (self.transport, &self.qname, self.qtype, self.edns)
    }
    pub(super) fn show(&self, sockets: &[u64]) -> String {
        let n = sockets.iter().position(|&s| s == self.socket).unwrap_or(0);
        let t = match self.qtype {
            1 => "A".to_string(),
            28 => "AAAA".to_string(),
            t => t.to_string(),
        };
        let edns = self.edns.map(|e| format!(" edns {e}")).unwrap_or_default();
        format!("{:>7.0} ms {:?} socket {n} to {} {} {t}{edns}", self.at.as_secs_f64() * 1000.0, self.transport, self.server, self.qname)
    }
}

#[derive(Default)]
pub(super) struct Recording {
    pub(super) t0: Option<Instant>,
    pub(super) packets: Vec<Packet>,
    pub(super) rules: Vec<Rule>,
}

pub(super) type Shared = Arc<Mutex<Recording>>;

/// Reads a query: exact qname, qtype, the OPT record's UDP size.
pub(super) fn parse_query(msg: &[u8]) -> Option<(String, u16, Option<u16>)> {
    use hickory_proto::op::Message;
    let m = Message::from_vec(msg).ok()?;
    let q = m.queries.first()?;
    let edns = m.edns.as_ref().map(|e| e.max_payload());
    Some((q.name().to_ascii(), u16::from(q.query_type()), edns))
}

/// Notes a query and decides what to do with it.
pub(super) fn record(
    shared: &Shared,
    transport: Transport,
    port: u16,
    server: IpAddr,
    msg: &[u8],
) -> Option<sim::client::harness::Decision> {
    let (qname, qtype, edns) = parse_query(msg)?;
    let mut r = shared.lock().ok()?;
    let t0 = *r.t0.get_or_insert_with(Instant::now);
    let d = decide(&mut r.rules, &qname, qtype);
    r.packets.push(Packet {
        at: t0.elapsed(),
        transport,
        socket: u64::from(port) | ((transport as u64) << 32),
        server,
        qname,
        qtype,
        edns,
    });
    Some(d)
}

pub(super) fn servfail(mut answer: Vec<u8>) -> Vec<u8> {
    if answer.len() > 3 {
        answer[3] = (answer[3] & 0xf0) | 2;
    }
    answer
}

/// The recorder's UDP side: each query forwarded to ndots from a fresh socket, the answer relayed
/// back; with no upstream, a silent nameserver.
pub(super) fn serve_udp(sock: UdpSocket, shared: Shared, upstream: Option<SocketAddr>) {
    let mut buf = [0u8; 65535];
    let Ok(me) = sock.local_addr() else { return };
    while let Ok((n, from)) = sock.recv_from(&mut buf) {
        let msg = buf[..n].to_vec();
        let Some(d) = record(&shared, Transport::Udp, from.port(), me.ip(), &msg) else { continue };
        let Some(upstream) = upstream else { continue };
        if d.drop {
            continue;
        }
        let Ok(reply_sock) = sock.try_clone() else { continue };
        std::thread::spawn(move || {
            let Ok(up) = UdpSocket::bind("127.0.0.1:0") else { return };
            let _ = up.set_read_timeout(Some(Duration::from_secs(3)));
            let mut b = [0u8; 65535];
            if up.send_to(&msg, upstream).is_err() {
                return;
            }
            let Ok((n, _)) = up.recv_from(&mut b) else { return };
            std::thread::sleep(d.extra);
            let answer = if d.servfail { servfail(b[..n].to_vec()) } else { b[..n].to_vec() };
            let _ = reply_sock.send_to(&answer, from);
        });
    }
}

/// The recorder's TCP side: one upstream connection per client connection.
pub(super) fn serve_tcp(listener: TcpListener, shared: Shared, upstream: SocketAddr) {
    let Ok(me) = listener.local_addr() else { return };
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let shared = shared.clone();
        std::thread::spawn(move || {
            let Ok(port) = conn.peer_addr().map(|a| a.port()) else { return };
            let Ok(mut up) = TcpStream::connect(upstream) else { return };
            // One write per message and no Nagle, or delayed ACKs add ~40 ms per answer.
            let _ = conn.set_nodelay(true);
            let _ = up.set_nodelay(true);
            let _ = up.set_read_timeout(Some(Duration::from_secs(3)));
            loop {
                let mut len = [0u8; 2];
                if conn.read_exact(&mut len).is_err() {
                    return;
                }
                let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if conn.read_exact(&mut msg).is_err() {
                    return;
                }
                let Some(d) = record(&shared, Transport::Tcp, port, me.ip(), &msg) else { return };
                if d.drop {
                    continue;
                }
                let _ = up.write_all(&[&len[..], &msg].concat());
                let mut alen = [0u8; 2];
                if up.read_exact(&mut alen).is_err() {
                    return;
                }
                let mut answer = vec![0u8; usize::from(u16::from_be_bytes(alen))];
                if up.read_exact(&mut answer).is_err() {
                    return;
                }
                std::thread::sleep(d.extra);
                let answer = if d.servfail { servfail(answer) } else { answer };
                let _ = conn.write_all(&[&alen[..], &answer].concat());
            }
        });
    }
}
