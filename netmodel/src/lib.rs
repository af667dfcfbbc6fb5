//! Sans-IO models of the Linux node kernel on a Kubernetes node's DNS path.
//!
//! Every table is a plain struct that takes `now` (a `Duration` since the simulation's epoch) and,
//! where the kernel makes a random choice, a seeded `fastrand::Rng`. Nothing here reads a clock or
//! touches a socket; the simulator drives these tables packet by packet.
//!
//! - `conntrack`: the netfilter connection table with kernel-version semantics (sources.md#conntrack-race, sources.md#conntrack-udp-timeouts, sources.md#conntrack-table-size).
//! - `dnat`: kube-proxy's iptables-mode Service DNAT and its endpoint sync / conntrack cleanup (sources.md#iptables-dnat, sources.md#stale-udp-conntrack).
//! - `ipvs`: kube-proxy's IPVS mode: connection table, expire_nodest_conn, conn_reuse_mode, graceful
//!   termination (sources.md#ipvs).
//! - `ratelimit`: token buckets, e.g. the AWS 1024 packets/s per ENI budget to the VPC resolver (sources.md#cloud-resolver-limits).
//! - `ports`: Linux ephemeral port choice (random in `ip_local_port_range`).

pub mod conntrack;
pub mod dnat;
pub mod ipvs;
pub mod ports;
pub mod ratelimit;

use std::fmt;

/// A Linux kernel version, compared as (major, minor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Kernel {
    pub major: u16,
    pub minor: u16,
}

impl Kernel {
    pub const fn new(major: u16, minor: u16) -> Kernel {
        Kernel { major, minor }
    }
    pub fn at_least(self, major: u16, minor: u16) -> bool {
        self >= Kernel::new(major, minor)
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl std::str::FromStr for Kernel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut it = s.split('.');
        let major =
            it.next().and_then(|v| v.parse().ok()).ok_or_else(|| format!("bad kernel version '{s}'; expected MAJOR.MINOR such as 5.15"))?;
        let minor = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(Kernel { major, minor })
    }
}

/// IP protocol of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Udp,
    Tcp,
}
