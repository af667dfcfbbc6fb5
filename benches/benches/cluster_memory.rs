//! Heap held for the cluster state at scale (`cargo bench -p benches --bench cluster_memory`):
//! what the API watch keeps (each object reduced to what DNS needs) plus the state the workers serve,
//! per Service, per EndpointSlice endpoint and per Pod, beside CoreDNS's sizing formula
//! (sources.md#coredns-kubernetes). Heap bytes counted by dhat's allocator, not estimated.

use benches::SyntheticCluster;
use resolver::cluster::{Kind, Watched};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn heap() -> u64 {
    dhat::HeapStats::get().curr_bytes as u64
}

/// Heap held by the watcher's objects and one built state, for these kinds.
fn held(c: &SyntheticCluster, kinds: &[Kind]) -> u64 {
    let before = heap();
    let mut w = Watched::requiring_namespaces(kinds);
    c.list_into(&mut w, kinds);
    let state = w.state();
    assert!(!state.unsynced && state.services.len() == c.services);
    let after = heap();
    drop(state);
    drop(w);
    after - before
}

fn main() {
    let _profiler = dhat::Profiler::builder().testing().build();
    // `cargo bench` passes --bench; a plain run (cargo test --benches) measures a small cluster.
    let full = std::env::args().any(|a| a == "--bench");
    let (services, pods) = if full { (10_000, 100_000) } else { (1_000, 10_000) };
    let per_svc = pods / services;
    let with = |endpoints_per_service, pods| SyntheticCluster { services, endpoints_per_service, pods };
    let ns_svc = [Kind::Namespace, Kind::Service];
    let ns_svc_eps = [Kind::Namespace, Kind::Service, Kind::EndpointSlice];
    let svc_only = held(&with(0, 0), &ns_svc);
    let with_eps = held(&with(per_svc, 0), &ns_svc_eps);
    let with_pods = held(&with(per_svc, pods), &Kind::ALL);
    let endpoints = services * per_svc;
    let b_svc = svc_only as f64 / services as f64;
    let b_ep = (with_eps - svc_only) as f64 / endpoints as f64;
    let b_pod = (with_pods - with_eps) as f64 / pods as f64;
    let mb = |b: u64| b as f64 / 1e6;
    let coredns = (pods + services) as f64 / 1000.0 + 54.0;
    let coredns_autopath = (pods + services) as f64 / 250.0 + 56.0;
    println!("cluster state heap: the watcher's reduced objects plus one served state");
    println!("  per Service (2 ports, ClusterIP):      {b_svc:>7.0} bytes");
    println!("  per EndpointSlice endpoint (ready):     {b_ep:>7.0} bytes");
    println!("  per Pod (pods verified or autopath):    {b_pod:>7.0} bytes");
    println!("  {services} Services, {endpoints} endpoints:                {:>7.1} MB", mb(with_eps));
    println!("  the same and {pods} Pods (pods verified or autopath):  {:>7.1} MB", mb(with_pods));
    println!(
        "  CoreDNS's sizing for {} pods + services: {coredns:.0} MB by default, {coredns_autopath:.0} MB with autopath (whole process)",
        pods + services
    );
    println!("  while a new state is built, the previous one is still served: add one state's share at the peak");
}
