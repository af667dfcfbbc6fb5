//! Linux ephemeral source ports: a socket bound to port 0 gets a port drawn at random from
//! `net.ipv4.ip_local_port_range` (default 32768–60999, 28232 ports), skipping ports in use, so a
//! busy client reuses a given port after about 28232/N seconds at N new sockets per second
//! (sources.md#ipvs, "Client port reuse probability").

use std::collections::BTreeSet;

/// Default `ip_local_port_range`.
pub const RANGE: (u16, u16) = (32768, 60999);

#[derive(Debug, Clone)]
pub struct Ports {
    lo: u16,
    hi: u16,
    in_use: BTreeSet<u16>,
}

impl Default for Ports {
    fn default() -> Self {
        Ports::new(RANGE.0, RANGE.1)
    }
}

impl Ports {
    pub fn new(lo: u16, hi: u16) -> Ports {
        Ports { lo, hi, in_use: BTreeSet::new() }
    }

    /// Binds a new socket: a random free port, or None when the range is exhausted.
    pub fn bind(&mut self, rng: &mut fastrand::Rng) -> Option<u16> {
        let span = u32::from(self.hi - self.lo) + 1;
        if self.in_use.len() as u32 >= span {
            return None;
        }
        // Random start, then linear probe (as __inet_hash_connect / inet_csk_get_port do).
        let start = rng.u32(..span);
        for i in 0..span {
            let p = self.lo + ((start + i) % span) as u16;
            if self.in_use.insert(p) {
                return Some(p);
            }
        }
        None
    }

    pub fn release(&mut self, port: u16) {
        self.in_use.remove(&port);
    }

    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_the_linux_range_and_are_reused_after_release() {
        let mut p = Ports::default();
        let mut rng = fastrand::Rng::with_seed(2);
        let mut seen = BTreeSet::new();
        let mut reuse_after = None;
        for i in 0..100_000u32 {
            let port = p.bind(&mut rng).expect("free port");
            assert!((32768..=60999).contains(&port));
            p.release(port);
            if !seen.insert(port) && reuse_after.is_none() {
                reuse_after = Some(i);
            }
        }
        // Birthday bound over 28232 ports: a repeat comes after a few hundred sockets.
        let first = reuse_after.expect("ports repeat");
        assert!(first < 2000, "first reuse after {first}");
        // Uniform draws: distinct ports after n sockets ≈ N(1 - e^(-n/N)) = 27,413 for N = 28232.
        assert!((27_200..=27_600).contains(&seen.len()), "distinct ports over 100k sockets: {}", seen.len());
    }

    #[test]
    fn ports_in_use_are_never_handed_out_twice() {
        let mut p = Ports::new(1000, 1009);
        let mut rng = fastrand::Rng::with_seed(1);
        let got: BTreeSet<u16> = (0..10).map(|_| p.bind(&mut rng).expect("port")).collect();
        assert_eq!(got.len(), 10);
        assert_eq!(p.bind(&mut rng), None);
    }
}
