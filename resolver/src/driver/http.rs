//! The HTTP endpoints (`health`, `ready`, `prometheus`) on worker 0, and the metrics summed over
//! every worker when scraped.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tracing::info;

use crate::config::Config;
use crate::metrics::Metrics;

use super::{DriverError, Shared};

/// Answers worker 0's requests for this worker's metrics.
pub(super) async fn metrics_responder(shared: Rc<Shared>, mut rx: mpsc::UnboundedReceiver<oneshot::Sender<Metrics>>) {
    while let Some(reply) = rx.recv().await {
        let now = shared.now();
        let mut s = shared.server.borrow_mut();
        s.refresh_gauges();
        s.detect_tick(now);
        let _ = reply.send(s.metrics.clone());
    }
}

/// Every worker's metrics, summed (worker 0's own plus the others' snapshots).
pub(super) async fn all_metrics(shared: &Rc<Shared>) -> Metrics {
    let mut total = {
        let now = shared.now();
        let mut s = shared.server.borrow_mut();
        s.refresh_gauges();
        s.detect_tick(now);
        s.metrics.clone()
    };
    for tx in &shared.hub.snapshots {
        let (reply, rx) = oneshot::channel();
        if tx.send(reply).is_ok()
            && let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(1), rx).await
        {
            total.merge(&m);
        }
    }
    total
}

/// Every 10 s, the findings over every worker; each logged at most once a minute per detector
/// and subject (`detect::Throttle`), as a warning naming the pattern and the fix.
pub(super) async fn findings_logger(shared: Rc<Shared>) {
    let mut throttle = crate::detect::Throttle::default();
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let now = shared.now();
        let m = all_metrics(&shared).await;
        for f in throttle.due(now, m.detect.findings(now)) {
            tracing::warn!("finding [{}]: {} (fix: {})", f.detector, f.message, f.fix);
        }
    }
}

/// Parses `:8080`, `localhost:9153`, `169.254.20.10:8080` into listen addresses.
pub(super) fn http_addr(spec: &str) -> Option<SocketAddr> {
    let (host, port) = spec.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let ip = match host {
        "" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => h.trim_matches(['[', ']']).parse().ok()?,
    };
    Some(SocketAddr::new(ip, port))
}

#[derive(Clone, Copy)]
pub(super) enum Endpoint {
    Health,
    Ready,
    Metrics,
}

/// The health, ready and metrics listeners, one per address (several endpoints may share one),
/// bound before any worker serves: a readiness probe or scrape that follows the first DNS answer
/// finds them listening, and a bind error stops start-up with nothing half-open.
pub(super) fn bind_http(cfg: &Config) -> Result<Vec<(Vec<Endpoint>, std::net::TcpListener)>, DriverError> {
    let mut specs: Vec<(String, Endpoint)> = Vec::new();
    for s in &cfg.servers {
        if let Some(h) = &s.health {
            specs.push((h.addr.clone(), Endpoint::Health));
        }
        if let Some(r) = &s.ready {
            specs.push((r.clone(), Endpoint::Ready));
        }
        if let Some(p) = &s.prometheus {
            specs.push((p.clone(), Endpoint::Metrics));
        }
    }
    // One listener per address; several endpoints may share it.
    let mut by_addr: BTreeMap<SocketAddr, Vec<Endpoint>> = BTreeMap::new();
    for (spec, ep) in specs {
        let addr =
            http_addr(&spec).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bad http address '{spec}'")))?;
        by_addr.entry(addr).or_default().push(ep);
    }
    let mut out = Vec::new();
    for (addr, eps) in by_addr {
        let listener = std::net::TcpListener::bind(addr).map_err(|err| DriverError::Bind { addr, proto: "http", err })?;
        listener.set_nonblocking(true)?;
        info!(%addr, "http listening");
        out.push((eps, listener));
    }
    Ok(out)
}

/// Serves the listeners `bind_http` bound (worker 0).
pub(super) fn start_http(
    listeners: Vec<(Vec<Endpoint>, std::net::TcpListener)>,
    shared: &Rc<Shared>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, DriverError> {
    let mut handles = Vec::new();
    for (eps, listener) in listeners {
        let listener = TcpListener::from_std(listener)?;
        let shared = shared.clone();
        handles.push(tokio::task::spawn_local(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let shared = shared.clone();
                let eps = eps.clone();
                tokio::task::spawn_local(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (shared, eps) = (shared.clone(), eps.clone());
                        async move { Ok::<_, Infallible>(http_response(&shared, &eps, req.uri().path()).await) }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
                });
            }
        }));
    }
    Ok(handles)
}

pub(super) async fn http_response(shared: &Rc<Shared>, eps: &[Endpoint], path: &str) -> hyper::Response<Full<Bytes>> {
    let (status, body) = match path {
        // /health stays 200 through lameduck (sources.md#coredns-health-ready).
        "/health" if eps.iter().any(|e| matches!(e, Endpoint::Health)) => (200, "OK".to_string()),
        "/ready" if eps.iter().any(|e| matches!(e, Endpoint::Ready)) => {
            if shared.stopping.get() {
                (503, "shutting down".to_string())
            } else if shared.server.borrow().cluster_state().unsynced {
                // CoreDNS lists the plugins not ready yet; the API watch has not synced.
                (503, "kubernetes".to_string())
            } else {
                (200, "OK".to_string())
            }
        }
        "/metrics" if eps.iter().any(|e| matches!(e, Endpoint::Metrics)) => {
            let active = shared.hub.udp_active.load(std::sync::atomic::Ordering::Relaxed);
            let workers = format!(
                "# HELP ndots_udp_workers Worker threads, and how many of them the kernel hands UDP queries to.\n# TYPE ndots_udp_workers gauge\nndots_udp_workers{{state=\"started\"}} {}\nndots_udp_workers{{state=\"receiving\"}} {active}\n",
                shared.hub.workers
            );
            (200, all_metrics(shared).await.render() + &super::process::process_metrics() + &workers)
        }
        // The detectors' current findings over every worker, as JSON (`detect`).
        "/debug/findings" if eps.iter().any(|e| matches!(e, Endpoint::Metrics)) => {
            let now = shared.now();
            let f = all_metrics(shared).await.detect.findings(now);
            (200, format!("[{}]\n", f.iter().map(crate::detect::Finding::json).collect::<Vec<_>>().join(",")))
        }
        _ => (404, "not found".to_string()),
    };
    hyper::Response::builder().status(status).body(Full::new(Bytes::from(body))).unwrap_or_default()
}
