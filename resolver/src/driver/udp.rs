//! UDP: listener sockets (SO_REUSEPORT, IP_PKTINFO), the receive loop that answers cache hits
//! inline in batches, and the pooled sockets queries to upstreams leave from.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

use tokio::net::UdpSocket;
use tracing::{error, warn};

use crate::server::{Client, Handled, Transport};

use super::log::write_query_log;
use super::{Shared, batch};

/// Sockets per upstream for UDP queries; each query goes out of a random one.
pub(super) const UDP_SOCKETS_PER_UPSTREAM: usize = 4;

/// IP_FREEBIND: binding an address the host does not hold (yet). Node-local mode binds its local
/// IPs this way, so a restart does not race the interface that holds them.
pub(super) fn set_freebind(s: &socket2::Socket, addr: SocketAddr) -> std::io::Result<()> {
    if addr.is_ipv4() { s.set_freebind_v4(true) } else { s.set_freebind_v6(true) }
}

/// A listening UDP socket; `reuse_port` when several workers share the address, `freebind` to bind
/// an address not (yet) on any interface.
pub(super) fn udp_socket(addr: SocketAddr, reuse_port: bool, freebind: bool) -> std::io::Result<std::net::UdpSocket> {
    let domain = if addr.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    if freebind {
        set_freebind(&s, addr)?;
    }
    // A larger receive buffer absorbs bursts (coredns#4506: the UDP buffer is the real limit).
    let _ = s.set_recv_buffer_size(4 << 20);
    if addr.ip().is_unspecified() {
        // A wildcard socket learns each query's destination address (IP_PKTINFO) and answers from it:
        // on a host with several addresses the kernel would otherwise pick the source by route, and a
        // client that sent to another address drops the reply (as miekg/dns, under CoreDNS, does).
        use nix::sys::socket::{setsockopt, sockopt};
        let r = if addr.is_ipv4() {
            setsockopt(&s, sockopt::Ipv4PacketInfo, &true)
        } else {
            setsockopt(&s, sockopt::Ipv6RecvPacketInfo, &true)
        };
        r.map_err(std::io::Error::from)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// Sends one datagram from `from` (IP_PKTINFO) when the listener is a wildcard socket, else plainly.
pub(super) async fn send_from(sock: &UdpSocket, payload: &[u8], dst: SocketAddr, from: Option<IpAddr>) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    match from {
        None => sock.send_to(payload, dst).await.map(|_| ()),
        Some(ip) => {
            let fd = sock.as_raw_fd();
            sock.async_io(tokio::io::Interest::WRITABLE, || batch::send_one(fd, payload, dst, ip)).await
        }
    }
}

/// A UDP listener: a batch of queries per wakeup, cache hits answered in one `sendmmsg`, the rest
/// left to the flusher.
pub(super) async fn udp_listener(shared: Rc<Shared>, sock: Rc<UdpSocket>) {
    use std::os::fd::AsRawFd;
    let local = match sock.local_addr() {
        Ok(a) => a,
        Err(e) => return error!("udp local_addr: {e}"),
    };
    let fd = sock.as_raw_fd();
    let mut batch = batch::Batch::new();
    let mut outs: Vec<Vec<u8>> = (0..batch::BATCH).map(|_| Vec::with_capacity(4096)).collect();
    let mut ready: Vec<(usize, SocketAddr, Option<IpAddr>)> = Vec::with_capacity(batch::BATCH);
    loop {
        if let Err(e) = sock.readable().await {
            warn_throttled!(shared, "udp-readable", "udp readable on {local}: {e}");
            continue;
        }
        // A batch short of full emptied the socket: report WouldBlock to tokio as well, so that
        // readiness is cleared and the next wait goes to epoll instead of another `recvmmsg` that
        // would find nothing (one system call fewer per batch). Datagrams arriving meanwhile raise
        // a new edge that the next epoll_wait returns.
        let mut got = 0;
        let r = sock.try_io(tokio::io::Interest::READABLE, || {
            got = batch.recv(fd)?;
            if got < batch::BATCH { Err(std::io::ErrorKind::WouldBlock.into()) } else { Ok(got) }
        });
        let n = match r {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && got > 0 => got,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                warn_throttled!(shared, "udp-recv", "udp recv on {local}: {e}");
                continue;
            }
        };
        shared.hub.loads[shared.id].record(n, batch::BATCH);
        ready.clear();
        let mut pending = false;
        for (i, out) in outs.iter_mut().enumerate().take(n) {
            let (query, src, dst) = batch.get(i);
            let Some(src) = src else { continue };
            // On a wildcard socket, the address the query was sent to (IP_PKTINFO).
            let local = SocketAddr::new(dst.unwrap_or(local.ip()), local.port());
            let client = Client { src, local, transport: Transport::Udp, conn: 0 };
            let handled = {
                let now = shared.now();
                shared.server.borrow_mut().handle_query(now, client, query, out)
            };
            match handled {
                Handled::Answered => ready.push((i, src, dst)),
                Handled::Pending => pending = true,
                Handled::Dropped => {}
            }
        }
        if pending {
            shared.wake.notify_one();
        }
        if shared.log_queries {
            write_query_log(&shared);
        }
        let sent =
            if ready.is_empty() { 0 } else { sock.try_io(tokio::io::Interest::WRITABLE, || batch.send(fd, &outs, &ready)).unwrap_or(0) };
        // What the socket would not take at once goes out one by one, waiting for room.
        for &(i, dst, from) in ready.iter().skip(sent) {
            if let Err(e) = send_from(&sock, &outs[i], dst, from).await {
                warn_throttled!(shared, "udp-send", "udp send to {dst}: {e}");
            }
        }
    }
}

pub(super) fn upstream_udp(shared: &Rc<Shared>, addr: SocketAddr) -> std::io::Result<Rc<UdpSocket>> {
    let mut map = shared.upstream_udp.borrow_mut();
    let pool = map.entry(addr).or_default();
    if pool.len() < UDP_SOCKETS_PER_UPSTREAM {
        // The kernel picks a random ephemeral port for each socket (spoofing resistance, RFC 5452 §10).
        let bind = if addr.is_ipv4() { SocketAddr::from(([0, 0, 0, 0], 0)) } else { SocketAddr::from(([0u16; 8], 0)) };
        let std_sock = std::net::UdpSocket::bind(bind)?;
        std_sock.connect(addr)?;
        std_sock.set_nonblocking(true)?;
        let s = Rc::new(UdpSocket::from_std(std_sock)?);
        pool.push(s.clone());
        let r = s.clone();
        let sh = shared.clone();
        tokio::task::spawn_local(async move {
            let mut buf = vec![0u8; 65535];
            loop {
                // ICMP port unreachable surfaces as ECONNREFUSED on a connected socket. It is treated
                // as a lost packet: the read timeout decides, so a dead upstream is not retried in a
                // tight loop.
                if let Ok(n) = r.recv(&mut buf).await {
                    let now = sh.now();
                    sh.server.borrow_mut().handle_upstream(now, addr, Transport::Udp, &buf[..n]);
                    sh.wake.notify_one();
                }
            }
        });
        return Ok(s);
    }
    let i = shared.rng.borrow_mut().usize(..pool.len());
    Ok(pool[i].clone())
}
