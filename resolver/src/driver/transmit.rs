//! What the core asks for after it was touched: the flusher that drains `poll_transmit` and
//! arms `poll_timeout`, the dispatch of each transmit to a client or an upstream, and cache fills
//! between workers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::warn;

use crate::server::{CacheFill, Dest, Transmit, Transport};

use super::Shared;
use super::tcp::upstream_tcp;
use super::udp::{send_from, upstream_udp};

/// Stores the siblings' cache fills.
pub(super) async fn fill_receiver(shared: Rc<Shared>, mut inbox: mpsc::Receiver<Arc<CacheFill>>) {
    while let Some(fill) = inbox.recv().await {
        let now = shared.now();
        shared.server.borrow_mut().handle_cache_fill(now, &fill);
    }
}

/// Drains the core's transmits and fires its timers. Returns when the loop plugin halted the server.
pub(super) async fn flusher(shared: Rc<Shared>) -> Option<String> {
    loop {
        loop {
            let c = shared.server.borrow_mut().poll_close_tcp();
            let Some(addr) = c else { break };
            // Dropping the sender ends the writer: the connection closes; the next query dials anew.
            shared.upstream_tcp.borrow_mut().remove(&addr);
        }
        loop {
            let t = shared.server.borrow_mut().poll_transmit();
            let Some(t) = t else { break };
            dispatch(&shared, t);
        }
        if shared.log_queries {
            super::log::write_query_log(&shared);
        }
        loop {
            let f = shared.server.borrow_mut().poll_cache_fill();
            let Some(f) = f else { break };
            let f = Arc::new(f);
            for (k, tx) in shared.hub.fills.iter().enumerate() {
                if k != shared.id {
                    let _ = tx.try_send(f.clone());
                }
            }
        }
        if let Some(reason) = shared.server.borrow().halted() {
            return Some(reason.to_string());
        }
        let next = shared.server.borrow().poll_timeout();
        match next {
            Some(at) => {
                let at = shared.epoch + at;
                tokio::select! {
                    biased;
                    _ = shared.wake.notified() => {}
                    _ = tokio::time::sleep_until(at) => {
                        let now = shared.now();
                        shared.server.borrow_mut().handle_timeout(now);
                    }
                }
            }
            None => shared.wake.notified().await,
        }
    }
}

pub(super) fn dispatch(shared: &Rc<Shared>, t: Transmit) {
    match t.dest {
        Dest::Client(c) => match c.transport {
            Transport::Udp => {
                // Reply from the listener the query came in on: bound to that address, or a wildcard
                // socket answering from it.
                let sock = {
                    let l = shared.listeners.borrow();
                    l.get(&c.local).cloned().map(|s| (s, None)).or_else(|| {
                        let any = [IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)];
                        any.iter().find_map(|ip| l.get(&SocketAddr::new(*ip, c.local.port())).cloned()).map(|s| (s, Some(c.local.ip())))
                    })
                };
                if let Some((sock, from)) = sock {
                    tokio::task::spawn_local(async move {
                        let _ = send_from(&sock, &t.payload, c.src, from).await;
                    });
                }
            }
            Transport::Tcp => {
                let full = match shared.tcp_clients.borrow().get(&c.conn) {
                    Some((tx, _)) => matches!(tx.try_send(t.payload), Err(mpsc::error::TrySendError::Full(_))),
                    None => false,
                };
                if full && let Some((_, writer)) = shared.tcp_clients.borrow_mut().remove(&c.conn) {
                    warn_throttled!(shared, "tcp-no-reader", client = %c.src, "tcp client reads no answers; closing");
                    writer.abort();
                }
            }
        },
        Dest::Upstream { addr, transport: Transport::Udp } => {
            let sock = upstream_udp(shared, addr);
            match sock {
                Ok(s) => {
                    tokio::task::spawn_local(async move {
                        let _ = s.send(&t.payload).await;
                    });
                }
                Err(e) => {
                    warn_throttled!(shared, "upstream-socket", %addr, "upstream udp socket: {e}");
                    let now = shared.now();
                    shared.server.borrow_mut().handle_upstream_error(now, addr, Transport::Udp);
                }
            }
        }
        Dest::Upstream { addr, transport: Transport::Tcp } => upstream_tcp(shared, addr, t.payload),
        Dest::Local { port, ip } => {
            let target = SocketAddr::new(ip.filter(|i| !i.is_unspecified()).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)), port);
            let shared = shared.clone();
            tokio::task::spawn_local(async move {
                let sock = {
                    let existing = shared.local_probe.borrow().clone();
                    match existing {
                        Some(s) => s,
                        None => match UdpSocket::bind(SocketAddr::new(target.ip(), 0)).await {
                            Ok(s) => {
                                let s = Rc::new(s);
                                *shared.local_probe.borrow_mut() = Some(s.clone());
                                // Drain answers to our probes.
                                let r = s.clone();
                                tokio::task::spawn_local(async move {
                                    let mut b = [0u8; 512];
                                    while r.recv_from(&mut b).await.is_ok() {}
                                });
                                s
                            }
                            Err(_) => return,
                        },
                    }
                };
                let _ = sock.send_to(&t.payload, target).await;
            });
        }
    }
}
