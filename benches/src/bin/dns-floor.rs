//! `dns-floor ADDR:PORT`: the floor responder (`benches::floor`) on a UDP socket, until killed.
//! One thread: a `recvmmsg` of up to 64 queries that blocks for the first (MSG_WAITFORONE), their
//! answers in one `sendmmsg`.

use std::io::{IoSlice, IoSliceMut};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::process::ExitCode;

use benches::floor::{BATCH, answer};
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};

fn main() -> ExitCode {
    let Some(addr) = std::env::args().nth(1) else {
        eprintln!("usage: dns-floor ADDR:PORT");
        return ExitCode::from(2);
    };
    let sock = match UdpSocket::bind(&addr) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dns-floor: cannot bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let fd = sock.as_raw_fd();
    let mut bufs = Box::new([[0u8; 512]; BATCH]);
    let mut lens = [0usize; BATCH];
    let mut srcs: [Option<SockaddrStorage>; BATCH] = [None; BATCH];
    let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(600)).collect();
    let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    loop {
        let n = {
            let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] = bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
            let Ok(got) = recvmmsg(fd, &mut recv_headers, iovs.iter_mut(), MsgFlags::MSG_WAITFORONE, None) else { continue };
            let mut n = 0;
            for (i, m) in got.enumerate() {
                lens[i] = m.bytes;
                srcs[i] = m.address;
                n = i + 1;
            }
            n
        };
        let mut ready = 0;
        let mut addrs: [Option<SockaddrStorage>; BATCH] = [None; BATCH];
        for i in 0..n {
            if answer(&bufs[i][..lens[i].min(512)], &mut outs[ready]) {
                addrs[ready] = srcs[i];
                ready += 1;
            }
        }
        let slices: [[IoSlice<'_>; 1]; BATCH] =
            std::array::from_fn(|j| [IoSlice::new(outs.get(j).filter(|_| j < ready).map_or(&[][..], Vec::as_slice))]);
        let _ = sendmmsg(fd, &mut send_headers, slices[..ready].iter(), &addrs[..ready], [], MsgFlags::empty());
    }
}
