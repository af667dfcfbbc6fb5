//! Adaptive UDP workers: how many of the workers the kernel hands queries to.
//!
//! Every worker binds every address with SO_REUSEPORT, but a worker only pays for itself when one
//! worker cannot keep up. Below that, spreading queries over more workers splits each worker's batches
//! into smaller ones and multiplies the wakeups: on a two-core host shared with its clients, two
//! workers answered the same queries per second as one with a quarter more CPU (README, "DNS
//! benchmark"). So a classic BPF program on each reuse-port group (SO_ATTACH_REUSEPORT_CBPF) steers
//! every datagram to one of the first `active` sockets, by the query's ID (random, so the active
//! workers share the load), and `Steering` chooses `active` from what the workers see:
//!
//! - it starts at one;
//! - it grows by one when, over a window, the active workers' receive batches are mostly full (their
//!   sockets hold a backlog: they are behind) while they ran on a CPU for most of the window (from
//!   /proc schedstat: a worker that is behind because it waits for a CPU gains nothing from a
//!   sibling that would wait too), remembering the rate at which that many saturated;
//! - it shrinks by one when the rate has stayed below `SHRINK_SHARE` of the rate at which one fewer
//!   saturated, for `SHRINK_HOLD` windows (hysteresis: no flapping at the boundary).
//!
//! A worker taken out of the set finishes what its socket already holds and keeps its upstream
//! queries; TCP is not steered. If the kernel refuses the program, every worker serves, as before.

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::libc;

/// The controller's window.
pub(super) const WINDOW: std::time::Duration = std::time::Duration::from_millis(100);
/// Windows below the shrink threshold before a worker is taken out.
const SHRINK_HOLD: u32 = 20;
/// The rate, as a share of the rate at which one worker fewer saturated, below which one is taken out.
const SHRINK_SHARE: f64 = 0.6;
/// Fewer receive batches than this in a window say nothing about saturation.
const MIN_BATCHES: u64 = 16;
/// The share of the window the active workers must have run on a CPU to count as busy.
const BUSY_SHARE: f64 = 0.85;

/// What one worker's UDP listeners count, read by the controller (one cache line each).
#[derive(Default)]
#[repr(align(64))]
pub(super) struct Load {
    batches: AtomicU64,
    full: AtomicU64,
    queries: AtomicU64,
    /// The worker thread's id, for its /proc schedstat (0: not started).
    tid: std::sync::atomic::AtomicI32,
}

impl Load {
    /// One receive batch of `n` datagrams, of at most `max`.
    pub(super) fn record(&self, n: usize, max: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.queries.fetch_add(n as u64, Ordering::Relaxed);
        if n >= max {
            self.full.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Called on the worker's own thread when it starts.
    pub(super) fn set_thread(&self) {
        let tid = std::fs::read_link("/proc/thread-self").ok().and_then(|p| p.file_name()?.to_str()?.parse().ok()).unwrap_or(0);
        self.tid.store(tid, Ordering::Relaxed);
    }

    fn read(&self) -> Window {
        let tid = self.tid.load(Ordering::Relaxed);
        let busy_ns = (tid > 0)
            .then(|| std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok())
            .flatten()
            .and_then(|s| s.split_whitespace().next()?.parse().ok());
        Window {
            batches: self.batches.load(Ordering::Relaxed),
            full: self.full.load(Ordering::Relaxed),
            queries: self.queries.load(Ordering::Relaxed),
            busy_ns,
        }
    }
}

/// Counts over one window (or totals since start, before differencing).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Window {
    pub batches: u64,
    pub full: u64,
    pub queries: u64,
    /// Nanoseconds the workers ran on a CPU (none where /proc has no schedstat).
    pub busy_ns: Option<u64>,
}

impl Window {
    fn minus(self, o: Window) -> Window {
        Window {
            batches: self.batches.wrapping_sub(o.batches),
            full: self.full.wrapping_sub(o.full),
            queries: self.queries.wrapping_sub(o.queries),
            busy_ns: self.busy_ns.zip(o.busy_ns).map(|(a, b)| a.wrapping_sub(b)),
        }
    }

    fn plus(self, o: Window) -> Window {
        Window {
            batches: self.batches + o.batches,
            full: self.full + o.full,
            queries: self.queries + o.queries,
            busy_ns: self.busy_ns.zip(o.busy_ns).map(|(a, b)| a + b),
        }
    }
}

/// The choice of how many workers receive UDP queries (sans-IO: fed one window at a time).
#[derive(Debug)]
pub(super) struct Steering {
    workers: usize,
    active: usize,
    /// `saturated[k]`: queries per window at which `k + 1` active workers were last behind.
    saturated: Vec<Option<u64>>,
    quiet: u32,
}

impl Steering {
    pub(super) fn new(workers: usize) -> Steering {
        Steering { workers: workers.max(1), active: 1, saturated: vec![None; workers.max(1)], quiet: 0 }
    }

    pub(super) fn active(&self) -> usize {
        self.active
    }

    /// The active workers' counts over the last window; the new number of active workers when it
    /// changes.
    pub(super) fn handle_window(&mut self, w: Window) -> Option<usize> {
        let busy = w.busy_ns.is_none_or(|ns| ns as f64 >= BUSY_SHARE * WINDOW.as_nanos() as f64 * self.active as f64);
        let behind = w.batches >= MIN_BATCHES && w.full * 2 >= w.batches && busy;
        if behind {
            self.saturated[self.active - 1] = Some(w.queries);
            self.quiet = 0;
            if self.active < self.workers {
                self.active += 1;
                return Some(self.active);
            }
            return None;
        }
        let Some(fewer) = self.active.checked_sub(2).and_then(|i| self.saturated[i]) else {
            self.quiet = 0;
            return None;
        };
        if (w.queries as f64) < fewer as f64 * SHRINK_SHARE {
            self.quiet += 1;
            if self.quiet >= SHRINK_HOLD {
                self.quiet = 0;
                self.active -= 1;
                return Some(self.active);
            }
        } else {
            self.quiet = 0;
        }
        None
    }
}

/// The controller task (worker 0): every window, the active workers' counts into `Steering`, and a
/// new program on each reuse-port group when the choice changes.
pub(super) async fn steer(hub: std::sync::Arc<super::Hub>, groups: Vec<std::rc::Rc<tokio::net::UdpSocket>>) {
    let loads = &hub.loads;
    let mut steering = Steering::new(loads.len());
    for g in &groups {
        if let Err(e) = attach(g.as_ref(), steering.active()) {
            tracing::warn!("cannot steer UDP queries to fewer workers (SO_ATTACH_REUSEPORT_CBPF: {e}); every worker serves");
            return;
        }
    }
    hub.udp_active.store(steering.active(), Ordering::Relaxed);
    let mut last: Vec<Window> = loads.iter().map(Load::read).collect();
    let mut tick = tokio::time::interval(WINDOW);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now: Vec<Window> = loads.iter().map(Load::read).collect();
        let mut sum = Window { busy_ns: Some(0), ..Window::default() };
        for (n, l) in now.iter().zip(&last).take(steering.active()) {
            sum = sum.plus(n.minus(*l));
        }
        last = now;
        if let Some(active) = steering.handle_window(sum) {
            tracing::info!(active, workers = loads.len(), queries_per_s = sum.queries * 10, "udp workers receiving queries");
            for g in &groups {
                if let Err(e) = attach(g.as_ref(), active) {
                    tracing::warn!("steering UDP queries: {e}");
                }
            }
            hub.udp_active.store(active, Ordering::Relaxed);
        }
    }
}

/// The program: `ret 0` for one worker, else `ldh [0]` (the DNS ID: at the time the program runs
/// the packet starts at the UDP payload) `mod active`, `ret a`. A datagram too short for an ID ends
/// the program with 0: the first socket.
fn program(active: usize) -> Vec<libc::sock_filter> {
    let op = |code: u32, k: u32| libc::sock_filter { code: code as u16, jt: 0, jf: 0, k };
    if active <= 1 {
        return vec![op(libc::BPF_RET | libc::BPF_K, 0)];
    }
    vec![
        op(libc::BPF_LD | libc::BPF_H | libc::BPF_ABS, 0),
        op(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, active as u32),
        op(libc::BPF_RET | libc::BPF_A, 0),
    ]
}

/// Sets the program of the reuse-port group `sock` belongs to (any member sets it for all).
pub(super) fn attach(sock: &impl AsFd, active: usize) -> io::Result<()> {
    let mut code = program(active);
    let prog = libc::sock_fprog { len: code.len() as u16, filter: code.as_mut_ptr() };
    nix::sys::socket::setsockopt(sock, nix::sys::socket::sockopt::AttachReusePortCbpf, &prog).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(batches: u64, full: u64, queries: u64) -> Window {
        Window { batches, full, queries, busy_ns: None }
    }

    #[test]
    fn one_worker_until_the_first_is_behind() {
        let mut s = Steering::new(4);
        assert_eq!(s.active(), 1);
        // Busy but keeping up: batches mostly partial.
        for _ in 0..100 {
            assert_eq!(s.handle_window(w(1000, 100, 8000)), None);
        }
        // Too few batches to judge, even if all full.
        assert_eq!(s.handle_window(w(10, 10, 320)), None);
        // Behind: most batches full.
        assert_eq!(s.handle_window(w(500, 300, 15_000)), Some(2));
        assert_eq!(s.handle_window(w(500, 400, 15_000)), Some(3));
        assert_eq!(s.handle_window(w(500, 400, 15_000)), Some(4));
        assert_eq!(s.handle_window(w(500, 400, 15_000)), None, "no more workers than threads");
        assert_eq!(s.active(), 4);
    }

    #[test]
    fn a_worker_behind_for_want_of_a_cpu_gets_no_sibling() {
        let window = WINDOW.as_nanos() as u64;
        let mut s = Steering::new(2);
        // Behind, but on a CPU only 70% of the window (the rest waiting for one): a second worker
        // would split the batches and wait as well.
        let starved = Window { busy_ns: Some(window * 7 / 10), ..w(500, 400, 15_000) };
        for _ in 0..50 {
            assert_eq!(s.handle_window(starved), None);
        }
        let running = Window { busy_ns: Some(window * 95 / 100), ..w(500, 400, 15_000) };
        assert_eq!(s.handle_window(running), Some(2));
        // Two workers are busy when together they ran for most of two windows.
        let one_busy = Window { busy_ns: Some(window), ..w(500, 400, 30_000) };
        let mut t = Steering::new(3);
        t.handle_window(running);
        assert_eq!(t.handle_window(one_busy), None, "one of the two idle");
        assert_eq!(t.handle_window(Window { busy_ns: Some(window * 2), ..one_busy }), Some(3));
    }

    #[test]
    fn shrinks_only_after_a_quiet_hold_well_below_the_saturation_rate() {
        let mut s = Steering::new(2);
        assert_eq!(s.handle_window(w(400, 300, 12_000)), Some(2), "one worker saturated at 12,000 per window");
        // Just under the saturation rate: stays at two (one would be behind again).
        for _ in 0..100 {
            assert_eq!(s.handle_window(w(2000, 0, 11_000)), None);
        }
        // Well below, but not for long enough, then back up: the hold restarts.
        for _ in 0..SHRINK_HOLD - 1 {
            assert_eq!(s.handle_window(w(800, 0, 3_000)), None);
        }
        assert_eq!(s.handle_window(w(2000, 0, 11_000)), None);
        for _ in 0..SHRINK_HOLD - 1 {
            assert_eq!(s.handle_window(w(800, 0, 3_000)), None);
        }
        assert_eq!(s.handle_window(w(800, 0, 3_000)), Some(1));
        assert_eq!(s.handle_window(w(800, 0, 3_000)), None, "never below one");
    }

    #[test]
    fn the_program_is_what_the_kernel_runs() {
        assert_eq!(program(1).len(), 1);
        let p = program(3);
        assert_eq!((p[0].code, p[0].k), (0x28, 0), "ldh [0]");
        assert_eq!((p[1].code, p[1].k), (0x94, 3), "mod #3");
        assert_eq!((p[2].code, p[2].k), (0x16, 0), "ret a");
    }

    /// Two sockets in one reuse-port group: with one active every datagram reaches the first; with
    /// two, the query ID decides (even IDs to the first, odd to the second).
    #[test]
    fn the_kernel_steers_by_the_program() {
        let bind = |addr: std::net::SocketAddr| {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).expect("socket");
            s.set_reuse_port(true).expect("reuseport");
            s.bind(&addr.into()).expect("bind");
            s.set_read_timeout(Some(std::time::Duration::from_millis(50))).expect("timeout");
            std::net::UdpSocket::from(s)
        };
        let a = bind("127.0.0.1:0".parse().expect("addr"));
        let addr = a.local_addr().expect("addr");
        let b = bind(addr);
        let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("client");
        let received = |s: &std::net::UdpSocket| {
            let mut ids = Vec::new();
            let mut buf = [0u8; 64];
            while let Ok(n) = s.recv(&mut buf) {
                if n >= 2 {
                    ids.push(u16::from_be_bytes([buf[0], buf[1]]));
                }
            }
            ids
        };
        attach(&a, 1).expect("attach");
        for id in 0u16..8 {
            client.send_to(&[(id >> 8) as u8, id as u8, 1, 0], addr).expect("send");
        }
        assert_eq!((received(&a), received(&b)), ((0..8).collect(), vec![]));
        attach(&b, 2).expect("any member sets the group's program");
        for id in 0u16..8 {
            client.send_to(&[(id >> 8) as u8, id as u8, 1, 0], addr).expect("send");
        }
        assert_eq!((received(&a), received(&b)), (vec![0, 2, 4, 6], vec![1, 3, 5, 7]));
    }
}
