//! TCP: the listener with its process-wide connection limit, one task per client connection
//! (pipelined queries, bounded answer queues, the idle timeout), and pooled upstream connections.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::warn;

use crate::server::{Client, Handled, Transport};

use super::Shared;
use super::log::write_query_log;

/// TCP connections idle longer than this are closed (CoreDNS `timeouts` idle default 10 s).
pub(super) const TCP_IDLE: Duration = Duration::from_secs(10);

/// At most this many client TCP connections at once, shared out over the workers; more are closed at
/// accept.
pub(super) const MAX_TCP_CONNS: usize = 1024;

/// Answers queued for one TCP client at most. A client that sends queries without reading the
/// answers is not read from while its queue is full (TCP flow control pushes back), and is closed
/// when the queue is still full after `TCP_IDLE` or an answer from upstream finds no room.
pub(super) const TCP_OUT_MAX: usize = 64;

/// A client TCP connection's answer queue and its writer task.
pub(super) type TcpClient = (mpsc::Sender<Vec<u8>>, tokio::task::AbortHandle);

pub(super) fn tcp_listener_socket(addr: SocketAddr, reuse_port: bool, freebind: bool) -> std::io::Result<std::net::TcpListener> {
    let domain = if addr.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    if freebind {
        super::udp::set_freebind(&s, addr)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

pub(super) async fn tcp_listener(shared: Rc<Shared>, listener: TcpListener) {
    loop {
        let (stream, src) = match listener.accept().await {
            Ok(v) => v,
            Err(e) => {
                warn_throttled!(shared, "tcp-accept", "tcp accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if shared.tcp_clients.borrow().len() >= MAX_TCP_CONNS.div_ceil(shared.hub.workers) {
            warn_throttled!(shared, "tcp-limit", %src, "too many tcp connections; closing");
            continue;
        }
        let local = stream.local_addr().unwrap_or(src);
        let id = {
            let mut n = shared.next_conn.borrow_mut();
            *n += 1;
            *n
        };
        let client = Client { src, local, transport: Transport::Tcp, conn: id };
        tokio::task::spawn_local(tcp_conn(shared.clone(), stream, client));
    }
}

/// One client TCP connection: length-prefixed queries in (RFC 1035 §4.2.2, RFC 7766 pipelining),
/// answers out in whatever order they complete; closed after `TCP_IDLE` without a query.
pub(super) async fn tcp_conn(shared: Rc<Shared>, stream: TcpStream, client: Client) {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(TCP_OUT_MAX);
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::task::spawn_local(async move {
        while let Some(msg) = rx.recv().await {
            let len = (msg.len() as u16).to_be_bytes();
            if wr.write_all(&len).await.is_err() || wr.write_all(&msg).await.is_err() {
                break;
            }
        }
    });
    shared.tcp_clients.borrow_mut().insert(client.conn, (tx.clone(), writer.abort_handle()));
    let mut out = Vec::with_capacity(4096);
    let mut buf = vec![0u8; 65535];
    loop {
        // Room for this query's answer first: a client that does not read is not read from.
        let Ok(Ok(permit)) = tokio::time::timeout(TCP_IDLE, tx.reserve()).await else { break };
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, rd.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => break,
        }
        let n = u16::from_be_bytes(len) as usize;
        if n == 0 {
            // A zero-length frame carries no message: close (RFC 7766 §8 leaves it to the server).
            break;
        }
        // A slow sender may not hold the connection forever: the frame must arrive within the idle time.
        match tokio::time::timeout(TCP_IDLE, rd.read_exact(&mut buf[..n])).await {
            Ok(Ok(_)) => {}
            _ => break,
        }
        let handled = {
            let now = shared.now();
            shared.server.borrow_mut().handle_query(now, client, &buf[..n], &mut out)
        };
        match handled {
            Handled::Answered => {
                if shared.log_queries {
                    write_query_log(&shared);
                }
                permit.send(out.clone());
            }
            Handled::Pending => {
                drop(permit);
                shared.wake.notify_one();
            }
            Handled::Dropped => {}
        }
    }
    drop(tx);
    // Let pending answers for this connection still be written: drop our sender only once the
    // server has nothing in flight for it (bounded by the forward deadline).
    let deadline = Instant::now() + Duration::from_secs(6);
    while shared.server.borrow().in_flight() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shared.tcp_clients.borrow_mut().remove(&client.conn);
    let _ = writer.await;
}

/// Sends a query over the upstream's pooled TCP connection, opening one when there is none.
/// forward's `expire` for an upstream (default 10 s): how long an idle TCP connection is kept.
pub(super) fn expire_for(shared: &Shared, addr: SocketAddr) -> Duration {
    let server = shared.server.borrow();
    server
        .config()
        .servers
        .iter()
        .flat_map(|s| &s.forward)
        .filter(|f| f.to.contains(&addr))
        .map(|f| f.expire)
        .min()
        .unwrap_or(Duration::from_secs(10))
}

pub(super) fn upstream_tcp(shared: &Rc<Shared>, addr: SocketAddr, payload: Vec<u8>) {
    if let Some(tx) = shared.upstream_tcp.borrow().get(&addr)
        && tx.send(payload.clone()).is_ok()
    {
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let _ = tx.send(payload);
    shared.upstream_tcp.borrow_mut().insert(addr, tx);
    let sh = shared.clone();
    let expire = expire_for(shared, addr);
    tokio::task::spawn_local(async move {
        let stream = match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            _ => {
                sh.upstream_tcp.borrow_mut().remove(&addr);
                let now = sh.now();
                sh.server.borrow_mut().handle_upstream_error(now, addr, Transport::Tcp);
                sh.wake.notify_one();
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        let sh2 = sh.clone();
        let reader = tokio::task::spawn_local(async move {
            let mut buf = vec![0u8; 65535];
            loop {
                let mut len = [0u8; 2];
                if rd.read_exact(&mut len).await.is_err() {
                    break;
                }
                let n = u16::from_be_bytes(len) as usize;
                if rd.read_exact(&mut buf[..n]).await.is_err() {
                    break;
                }
                let now = sh2.now();
                sh2.server.borrow_mut().handle_upstream(now, addr, Transport::Tcp, &buf[..n]);
                sh2.wake.notify_one();
            }
        });
        // Write queries until the connection has been idle for `expire`.
        while let Ok(Some(q)) = tokio::time::timeout(expire, rx.recv()).await {
            let len = (q.len() as u16).to_be_bytes();
            if wr.write_all(&len).await.is_err() || wr.write_all(&q).await.is_err() {
                break;
            }
        }
        sh.upstream_tcp.borrow_mut().remove(&addr);
        // Give outstanding answers a moment before closing the read side.
        let _ = tokio::time::timeout(Duration::from_secs(3), reader).await;
    });
}
