//! The cluster's edge: the frames that carry DNS messages between the cluster host and the cloud
//! resolver hosts, and the address each AZ's resolver has.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::client::Transport;

/// The cloud resolver an AZ's nodes use (VPC+2 style), as the cluster sees it.
pub fn upstream_ip(az: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 255, az as u8, 2))
}

/// A DNS message crossing the cluster's edge to or from a cloud resolver host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The node-side address (after SNAT): the node IP and the upstream socket's port.
    pub node_addr: SocketAddr,
    pub az: usize,
    pub transport: Transport,
    pub payload: Vec<u8>,
}

impl Frame {
    /// Wire form between turmoil hosts: node ip (4) | port (2) | transport (1) | payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.payload.len() + 7);
        match self.node_addr.ip() {
            IpAddr::V4(v4) => v.extend_from_slice(&v4.octets()),
            IpAddr::V6(_) => v.extend_from_slice(&[0, 0, 0, 0]),
        }
        v.extend_from_slice(&self.node_addr.port().to_be_bytes());
        v.push(u8::from(self.transport == Transport::Tcp));
        v.extend_from_slice(&self.payload);
        v
    }

    pub fn decode(b: &[u8], az: usize) -> Option<Frame> {
        let ip = Ipv4Addr::new(*b.first()?, *b.get(1)?, *b.get(2)?, *b.get(3)?);
        let port = u16::from_be_bytes([*b.get(4)?, *b.get(5)?]);
        let transport = if *b.get(6)? == 1 { Transport::Tcp } else { Transport::Udp };
        Some(Frame { node_addr: SocketAddr::new(IpAddr::V4(ip), port), az, transport, payload: b.get(7..)?.to_vec() })
    }
}
