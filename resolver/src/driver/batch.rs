//! Batched UDP I/O: up to `BATCH` queries per `recvmmsg` and their answers per `sendmmsg` (Linux),
//! so that under load the two system calls per query of `recv_from`/`send_to` are shared by a batch.
//! Through nix's safe wrappers; the buffers are allocated once per listener.

use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::net::IpAddr;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use nix::libc;
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg, sendmsg};

/// Datagrams per system call.
pub const BATCH: usize = 64;
/// The largest query read whole; a larger datagram is cut here, fails to parse and gets FORMERR
/// (queries are a few dozen bytes; RFC 6891 clients do not send 4 KB questions).
pub const QUERY_MAX: usize = 4096;

pub struct Batch {
    bufs: Box<[[u8; QUERY_MAX]; BATCH]>,
    lens: [usize; BATCH],
    srcs: [Option<SocketAddr>; BATCH],
    /// Destination address of each datagram, from IP_PKTINFO (wildcard sockets only).
    dsts: [Option<IpAddr>; BATCH],
    recv_headers: MultiHeaders<SockaddrStorage>,
    send_headers: MultiHeaders<SockaddrStorage>,
    /// The same with room for exactly one IP_PKTINFO / IPV6_PKTINFO message (the kernel reads the
    /// whole control buffer, so each size gets its own headers).
    send_v4: MultiHeaders<SockaddrStorage>,
    send_v6: MultiHeaders<SockaddrStorage>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch {
            bufs: Box::new([[0u8; QUERY_MAX]; BATCH]),
            lens: [0; BATCH],
            srcs: [None; BATCH],
            dsts: [None; BATCH],
            recv_headers: MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(libc::in6_pktinfo))),
            send_headers: MultiHeaders::preallocate(BATCH, None),
            send_v4: MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(libc::in_pktinfo))),
            send_v6: MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(libc::in6_pktinfo))),
        }
    }

    /// Receives what is queued, without blocking: how many datagrams (WouldBlock: none).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] = self.bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
        let got = recvmmsg(fd, &mut self.recv_headers, iovs.iter_mut(), MsgFlags::MSG_DONTWAIT, None).map_err(io::Error::from)?;
        let mut n = 0;
        for (i, m) in got.enumerate() {
            self.lens[i] = m.bytes;
            self.srcs[i] = m.address.and_then(|a: SockaddrStorage| {
                a.as_sockaddr_in().map(|v4| SocketAddr::from(*v4)).or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6)))
            });
            self.dsts[i] = m.cmsgs().ok().and_then(|mut c| {
                c.find_map(|c| match c {
                    ControlMessageOwned::Ipv4PacketInfo(pi) => Some(IpAddr::from(u32::from_be(pi.ipi_addr.s_addr).to_be_bytes())),
                    ControlMessageOwned::Ipv6PacketInfo(pi) => Some(IpAddr::from(pi.ipi6_addr.s6_addr)),
                    _ => None,
                })
                // A query to a broadcast or multicast address is answered from the route's source.
                .filter(|ip| !ip.is_multicast() && *ip != IpAddr::from([255, 255, 255, 255]))
            });
            n = i + 1;
        }
        Ok(n)
    }

    /// Datagram `i` of the last `recv`, where it came from and (wildcard sockets) where it went.
    pub fn get(&self, i: usize) -> (&[u8], Option<SocketAddr>, Option<IpAddr>) {
        (&self.bufs[i][..self.lens[i].min(QUERY_MAX)], self.srcs[i], self.dsts[i])
    }

    /// Sends the replies `outs[slot]` to their destinations in one call: how many went (WouldBlock:
    /// none).
    pub fn send(&mut self, fd: RawFd, outs: &[Vec<u8>], ready: &[(usize, SocketAddr, Option<IpAddr>)]) -> io::Result<usize> {
        // The replies leave in runs of one source address (one run, unless a wildcard socket got
        // queries for several of its addresses).
        let ready = &ready[..ready.len().min(BATCH)];
        let mut done = 0;
        while done < ready.len() {
            let from = ready[done].2;
            let run = &ready[done..done + ready[done..].iter().take_while(|r| r.2 == from).count()];
            let slices: [[IoSlice<'_>; 1]; BATCH] =
                std::array::from_fn(|j| [IoSlice::new(run.get(j).and_then(|r| outs.get(r.0)).map_or(&[][..], Vec::as_slice))]);
            let addrs: [Option<SockaddrStorage>; BATCH] = std::array::from_fn(|j| run.get(j).map(|r| SockaddrStorage::from(r.1)));
            let pi = from.map(PktInfo::new);
            let cmsg = pi.as_ref().map(PktInfo::cmsg);
            let headers = match from {
                None => &mut self.send_headers,
                Some(IpAddr::V4(_)) => &mut self.send_v4,
                Some(IpAddr::V6(_)) => &mut self.send_v6,
            };
            let sent = match sendmmsg(fd, headers, slices.iter(), &addrs[..run.len()], cmsg.as_slice(), MsgFlags::MSG_DONTWAIT) {
                Ok(s) => s.count(),
                // What went before stays sent; the caller sends the rest one by one.
                Err(_) if done > 0 => return Ok(done),
                Err(e) => return Err(io::Error::from(e)),
            };
            done += sent;
            if sent < run.len() {
                break;
            }
        }
        Ok(done)
    }
}

/// The source address of a reply, as IP_PKTINFO / IPV6_PKTINFO wants it.
enum PktInfo {
    V4(libc::in_pktinfo),
    V6(libc::in6_pktinfo),
}

impl PktInfo {
    fn new(from: IpAddr) -> PktInfo {
        match from {
            IpAddr::V4(v4) => PktInfo::V4(libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr { s_addr: u32::from(v4).to_be() },
                ipi_addr: libc::in_addr { s_addr: 0 },
            }),
            IpAddr::V6(v6) => PktInfo::V6(libc::in6_pktinfo { ipi6_addr: libc::in6_addr { s6_addr: v6.octets() }, ipi6_ifindex: 0 }),
        }
    }

    fn cmsg(&self) -> ControlMessage<'_> {
        match self {
            PktInfo::V4(p) => ControlMessage::Ipv4PacketInfo(p),
            PktInfo::V6(p) => ControlMessage::Ipv6PacketInfo(p),
        }
    }
}

/// One reply from `from` (the slow path, when the socket would not take a whole batch).
pub fn send_one(fd: RawFd, payload: &[u8], dst: SocketAddr, from: IpAddr) -> io::Result<()> {
    let pi = PktInfo::new(from);
    let iov = [IoSlice::new(payload)];
    sendmsg(fd, &iov, &[pi.cmsg()], MsgFlags::MSG_DONTWAIT, Some(&SockaddrStorage::from(dst))).map(|_| ()).map_err(io::Error::from)
}
