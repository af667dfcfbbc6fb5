//! Runs a cluster under turmoil: the deterministic runtime, the clock and the machines and links.
//!
//! Hosts: `cluster` (the whole cluster's `Engine`, a client host) and one `dns-<az>` per AZ (the
//! cloud's resolver: `resolver::Server` answering from the scenario's internet zone, on turmoil UDP
//! through `cloud_resolver`, the resolver's turmoil driver). The host count is 1 + AZs whatever the
//! cluster size (sources.md#turmoil-cost: cost grows with the cube of the host count).

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use resolver::{Client, ClusterState, Config, Dest, Handled, Server};
use turmoil::net::UdpSocket;

use crate::engine::{Engine, Frame, SimError, upstream_ip};
use crate::report::Report;
use crate::spec::ClusterSpec;

/// The port frames travel on between turmoil hosts.
const FRAME_PORT: u16 = 53;

/// Seed from `SIM_SEED`, else the given default (house style: a fixed default, overridable).
pub fn seed_or(default: u64) -> u64 {
    std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// Runs the scenario to its duration and returns what it measured.
pub fn run(spec: ClusterSpec) -> Result<Report, SimError> {
    run_with_progress(spec, Box::new(|_| {}))
}

/// `run`, calling `progress` with the simulated time at every simulated second (for progress lines).
pub fn run_with_progress(spec: ClusterSpec, mut progress: Box<dyn FnMut(Duration)>) -> Result<Report, SimError> {
    let engine = Engine::new(spec.clone())?;
    let slot: Rc<RefCell<Option<Engine>>> = Rc::new(RefCell::new(Some(engine)));
    let mut sim = turmoil::Builder::new()
        // A fixed epoch and seed: turmoil defaults both to something random (sources.md#turmoil-cost).
        .epoch(SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600))
        .rng_seed(spec.seed)
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(spec.latency.upstream)
        .max_message_latency(spec.latency.upstream)
        .simulation_duration(spec.duration + Duration::from_secs(30))
        .build();
    for az in 0..spec.azs {
        let zone = spec.upstream_zone.clone();
        let seed = spec.seed ^ (0xc10d_0000 + az as u64);
        sim.host(format!("dns-{az}"), move || cloud_resolver(zone.clone(), az, seed));
    }
    let azs = spec.azs;
    let duration = spec.duration;
    let s2 = slot.clone();
    sim.client("cluster", async move {
        let mut engine = s2.borrow_mut().take().ok_or("engine taken twice")?;
        let sock = UdpSocket::bind(("0.0.0.0", 9000)).await?;
        let dns: Vec<IpAddr> = (0..azs).map(|az| turmoil::lookup(format!("dns-{az}"))).collect();
        let start = tokio::time::Instant::now();
        let mut buf = vec![0u8; 65535];
        let mut reported = 0;
        loop {
            let now = start.elapsed();
            if now.as_secs() > reported {
                reported = now.as_secs();
                progress(now);
            }
            for f in engine.run_until(now) {
                sock.send_to(&f.encode(), SocketAddr::new(dns[f.az], FRAME_PORT)).await?;
            }
            if now >= duration {
                break;
            }
            let next = engine.next_event().unwrap_or(duration).min(duration);
            tokio::select! {
                biased;
                r = sock.recv_from(&mut buf) => {
                    let (n, from) = r?;
                    let now = start.elapsed();
                    for f in engine.run_until(now) {
                        sock.send_to(&f.encode(), SocketAddr::new(dns[f.az], FRAME_PORT)).await?;
                    }
                    if let Some(az) = dns.iter().position(|ip| *ip == from.ip())
                        && let Some(frame) = Frame::decode(&buf[..n], az)
                    {
                        engine.deliver_frame(frame);
                    }
                }
                _ = tokio::time::sleep_until(start + next) => {}
            }
        }
        *s2.borrow_mut() = Some(engine);
        Ok(())
    });
    sim.run().map_err(|e| SimError::Spec(format!("simulation failed: {e}")))?;
    let engine = slot.borrow_mut().take().ok_or_else(|| SimError::Spec("the cluster host did not finish".into()))?;
    Ok(engine.into_report())
}

/// The cloud resolver of one AZ: our resolver serving the internet zone, on turmoil UDP.
async fn cloud_resolver(zone: String, az: usize, seed: u64) -> turmoil::Result {
    let cf = resolver::corefile::parse_str(".:53 {\n}\n", "cloud", None, &|_| None).map_err(|e| e.to_string())?;
    let mut cfg = Config::from_corefile_in(&cf, &resolver::config::Files::Only(&[])).map_err(|e| e.to_string())?;
    cfg.servers[0].files.push(resolver::zone::Zone::parse(&zone, ".")?);
    // A cloud resolver answers up to the asker's EDNS size, as real ones do (RFC 6891).
    cfg.servers[0].bufsize = 4096;
    let mut server = Server::new(Arc::new(cfg), Arc::new(ClusterState::default()), seed);
    let sock = UdpSocket::bind(("0.0.0.0", FRAME_PORT)).await?;
    let local = SocketAddr::new(upstream_ip(az), 53);
    let start = tokio::time::Instant::now();
    let mut buf = vec![0u8; 65535];
    let mut out = Vec::new();
    loop {
        let (n, from) = sock.recv_from(&mut buf).await?;
        let Some(frame) = Frame::decode(&buf[..n], az) else { continue };
        let transport = match frame.transport {
            crate::client::Transport::Udp => resolver::Transport::Udp,
            crate::client::Transport::Tcp => resolver::Transport::Tcp,
        };
        let client = Client { src: frame.node_addr, local, transport, conn: 0 };
        let now = start.elapsed();
        let mut answers = Vec::new();
        if server.handle_query(now, client, &frame.payload, &mut out) == Handled::Answered {
            answers.push(out.clone());
        }
        while let Some(t) = server.poll_transmit() {
            if let Dest::Client(_) = t.dest {
                answers.push(t.payload);
            }
        }
        for a in answers {
            let reply = Frame { payload: a, ..frame.clone() };
            sock.send_to(&reply.encode(), from).await?;
        }
    }
}
