//! The `kubernetes` plugin against an API server: the real `ndots` binary, pointed by a kubeconfig at
//! a fake apiserver on loopback that speaks the real LIST/WATCH protocol (`fake_apiserver`), queried
//! with `dig`. What a CoreDNS user relies on (sources.md#coredns-kubernetes): a Service added is
//! answered, an endpoint that turns not-ready leaves a headless answer, a deleted namespace is
//! NXDOMAIN, a watch that gets 410 Gone relists, an apiserver that goes away leaves the last state
//! served, and one that is down at start-up means SERVFAIL (not NXDOMAIN) and a 503 `/ready` until
//! the first sync.

mod common;
mod fake_apiserver;

use std::time::{Duration, Instant};

use common::{dig, free_port, http_get, short, start, status};
use fake_apiserver::{FakeApi, Kind, namespace, service, slice};

/// Polls `f` until it returns true, for up to 15 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("not within 15 s: {what}");
}

fn corefile(ready: u16, extra: &str) -> String {
    format!(".:{{PORT}} {{\n  ready 127.0.0.1:{ready}\n  kubernetes cluster.local {{\n    kubeconfig kubeconfig.yaml\n{extra}  }}\n}}\n")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

#[test]
fn services_endpoints_and_namespaces_follow_the_api_through_410_and_an_outage() {
    let rt = runtime();
    let api = rt.block_on(FakeApi::start());
    api.put(Kind::Namespace, namespace("default"));
    api.put(Kind::Namespace, namespace("shop"));
    api.put(Kind::Service, service("default", "web", "10.96.0.20"));
    api.put(Kind::Service, service("shop", "cart", "10.96.0.30"));
    api.put(Kind::Service, service("default", "db", "None"));
    api.put(Kind::EndpointSlice, slice("default", "db", &[("10.244.1.5", true), ("10.244.1.6", true)]));
    let ready = free_port();
    let n = start("kube-api", &corefile(ready, ""), &[("kubeconfig.yaml", &api.kubeconfig())]);
    let p = n.port;

    // Listed at start-up: served at once, ready.
    assert_eq!(short(p, &["web.default.svc.cluster.local", "A"]), ["10.96.0.20"]);
    assert_eq!(short(p, &["db.default.svc.cluster.local", "A"]), ["10.244.1.5", "10.244.1.6"]);
    assert!(http_get(ready, "/ready").starts_with("HTTP/1.0 200"), "{}", http_get(ready, "/ready"));
    let reqs = api.requests();
    for path in ["/api/v1/namespaces?", "/api/v1/services?", "/apis/discovery.k8s.io/v1/endpointslices?"] {
        assert!(reqs.iter().any(|r| r.starts_with(path) && r.contains("watch=true")), "{path} watched: {reqs:?}");
    }
    assert!(!reqs.iter().any(|r| r.starts_with("/api/v1/pods")), "pods are watched only with `pods verified` or autopath: {reqs:?}");

    // A Service added: answered.
    api.put(Kind::Service, service("default", "api", "10.96.0.40"));
    eventually("a new Service is answered", || short(p, &["api.default.svc.cluster.local", "A"]) == ["10.96.0.40"]);

    // An endpoint that turns not-ready leaves the headless answer.
    api.put(Kind::EndpointSlice, slice("default", "db", &[("10.244.1.5", true), ("10.244.1.6", false)]));
    eventually("a not-ready endpoint leaves the headless answer", || short(p, &["db.default.svc.cluster.local", "A"]) == ["10.244.1.5"]);

    // A namespace deleted: NXDOMAIN at once, even while its Services are still being cleaned up (a
    // namespace's records resolve only while the Namespace exists, as in CoreDNS).
    assert_eq!(short(p, &["cart.shop.svc.cluster.local", "A"]), ["10.96.0.30"]);
    api.delete(Kind::Namespace, "", "shop");
    eventually("a deleted namespace is NXDOMAIN", || status(&dig(p, &["cart.shop.svc.cluster.local", "A"])) == "NXDOMAIN");
    api.delete(Kind::Service, "shop", "cart");
    assert_eq!(status(&dig(p, &["anything.shop.svc.cluster.local", "A"])), "NXDOMAIN");

    // 410 Gone: the history is compacted and the watches dropped; the re-watch is refused with 410,
    // the watcher relists, and a change made meanwhile arrives. Nothing served goes missing.
    api.compact_and_drop_watches();
    api.put(Kind::Service, service("default", "after-gone", "10.96.0.50"));
    eventually("a change after 410 Gone arrives through the relist", || {
        short(p, &["after-gone.default.svc.cluster.local", "A"]) == ["10.96.0.50"]
    });
    assert_eq!(short(p, &["web.default.svc.cluster.local", "A"]), ["10.96.0.20"]);
    let lists = api.requests().iter().filter(|r| r.starts_with("/api/v1/services?") && !r.contains("watch=true")).count();
    assert!(lists >= 2, "the services were listed again after 410 Gone: {:?}", api.requests());

    // The apiserver goes away: the last state is still served, and ready stays ready.
    api.set_down(true);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(short(p, &["web.default.svc.cluster.local", "A"]), ["10.96.0.20"]);
    assert_eq!(short(p, &["api.default.svc.cluster.local", "A"]), ["10.96.0.40"]);
    assert!(http_get(ready, "/ready").starts_with("HTTP/1.0 200"));
    // And comes back: changes flow again.
    api.set_down(false);
    api.put(Kind::Service, service("default", "back", "10.96.0.60"));
    eventually("changes flow again once the apiserver is back", || short(p, &["back.default.svc.cluster.local", "A"]) == ["10.96.0.60"]);
    drop(n);
    drop(rt);
}

#[test]
fn autopath_watches_pods_without_pods_verified_and_finds_the_clients_namespace() {
    let rt = runtime();
    let api = rt.block_on(FakeApi::start());
    api.put(Kind::Namespace, namespace("default"));
    api.put(Kind::Namespace, namespace("shop"));
    api.put(Kind::Service, service("default", "web", "10.96.0.20"));
    // dig asks from 127.0.0.1: the pod shop/cart-1.
    api.put(
        Kind::Pod,
        serde_json::json!({"metadata": {"name": "cart-1", "namespace": "shop"}, "spec": {"nodeName": "worker-1"},
            "status": {"phase": "Running", "podIP": "127.0.0.1"}}),
    );
    let ready = free_port();
    let corefile = format!(
        ".:{{PORT}} {{\n  ready 127.0.0.1:{ready}\n  autopath @kubernetes\n  kubernetes cluster.local {{\n    kubeconfig kubeconfig.yaml\n    pods insecure\n  }}\n}}\n"
    );
    let n = start("kube-api-autopath", &corefile, &[("kubeconfig.yaml", &api.kubeconfig())]);
    let reqs = api.requests();
    assert!(reqs.iter().any(|r| r.starts_with("/api/v1/pods?") && r.contains("watch=true")), "autopath watches pods: {reqs:?}");
    // glibc in namespace shop appends shop.svc.cluster.local first: autopath answers the name the
    // search path would reach (web.default.svc) in one round trip, with a CNAME.
    assert_eq!(short(n.port, &["web.default.shop.svc.cluster.local", "A"]), ["10.96.0.20", "web.default.svc.cluster.local."]);
    drop(n);
    drop(rt);
}

#[test]
fn an_apiserver_down_at_start_up_means_servfail_and_not_ready_until_the_first_sync() {
    let rt = runtime();
    let api = rt.block_on(FakeApi::start());
    api.put(Kind::Namespace, namespace("default"));
    api.put(Kind::Service, service("default", "web", "10.96.0.20"));
    api.set_down(true);
    let ready = free_port();
    let t0 = Instant::now();
    let n = start("kube-api-down", &corefile(ready, "    startup_timeout 1s\n"), &[("kubeconfig.yaml", &api.kubeconfig())]);
    assert!(t0.elapsed() >= Duration::from_millis(900), "serving waited for startup_timeout: {:?}", t0.elapsed());
    let p = n.port;
    // Unsynced: a name the state does not know may exist, so SERVFAIL, not NXDOMAIN.
    assert_eq!(status(&dig(p, &["web.default.svc.cluster.local", "A"])), "SERVFAIL");
    let r = http_get(ready, "/ready");
    assert!(r.starts_with("HTTP/1.0 503") && r.contains("kubernetes"), "{r}");
    api.set_down(false);
    eventually("the first sync after the apiserver comes up", || short(p, &["web.default.svc.cluster.local", "A"]) == ["10.96.0.20"]);
    assert!(http_get(ready, "/ready").starts_with("HTTP/1.0 200"));
    assert_eq!(status(&dig(p, &["nope.default.svc.cluster.local", "A"])), "NXDOMAIN", "synced: unknown names are NXDOMAIN again");
    drop(n);
    drop(rt);
}

#[test]
fn outside_a_cluster_without_a_kubeconfig_ndots_stops_at_start_up_saying_why() {
    let dir = common::temp_dir("kube-no-config");
    let conf = dir.join("Corefile");
    std::fs::write(&conf, format!(".:{} {{\n  kubernetes cluster.local\n}}\n", free_port())).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ndots"))
        .arg("-conf")
        .arg(&conf)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .expect("run ndots");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("Corefile:2:3") && err.contains("in-cluster") && err.contains("kubeconfig"), "{err}");
}
