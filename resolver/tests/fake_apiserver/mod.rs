//! A fake Kubernetes API server on loopback that speaks the real protocol for the four kinds the
//! `kubernetes` plugin watches (sources.md#kube-watcher): LIST returns a `*List` with
//! `metadata.resourceVersion`; WATCH (`?watch=true&resourceVersion=N`) streams newline-delimited
//! `{"type", "object"}` events after N, a BOOKMARK, then live events; a watch from a compacted version
//! gets an in-stream `ERROR` with a 410 `Status`; "down" answers 503 and drops every stream.
//! Namespaced paths (`/api/v1/namespaces/NS/services`) and `labelSelector`s of the forms `k=v` and
//! `k in (a,b)` narrow a list or watch as the real server does.

#![allow(dead_code)] // Each test file uses its own subset of the helpers.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub use resolver::cluster::Kind;

/// Where a kind is listed and watched.
fn path(k: Kind) -> &'static str {
    match k {
        Kind::Namespace => "/api/v1/namespaces",
        Kind::Service => "/api/v1/services",
        Kind::EndpointSlice => "/apis/discovery.k8s.io/v1/endpointslices",
        Kind::Pod => "/api/v1/pods",
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Namespace => "Namespace",
        Kind::Service => "Service",
        Kind::EndpointSlice => "EndpointSlice",
        Kind::Pod => "Pod",
    }
}

fn api_version(k: Kind) -> &'static str {
    if k == Kind::EndpointSlice { "discovery.k8s.io/v1" } else { "v1" }
}

/// What a namespaced path and a label selector let through.
#[derive(Default, Clone)]
struct Filter {
    namespace: Option<String>,
    /// (label, accepted values)
    label: Option<(String, Vec<String>)>,
}

impl Filter {
    fn parse(namespace: Option<String>, selector: Option<&str>) -> Filter {
        let label = selector.filter(|s| !s.is_empty()).map(|s| {
            if let Some((k, vals)) = s.split_once(" in ") {
                let vals = vals.trim().trim_start_matches('(').trim_end_matches(')');
                (k.trim().to_string(), vals.split(',').map(|v| v.trim().to_string()).collect())
            } else {
                let (k, v) = s.split_once('=').unwrap_or((s, ""));
                (k.trim_end_matches('=').to_string(), vec![v.trim_start_matches('=').to_string()])
            }
        });
        Filter { namespace, label }
    }

    fn matches(&self, obj: &Value) -> bool {
        let ns_ok = self.namespace.as_deref().is_none_or(|ns| obj["metadata"]["namespace"] == ns);
        let label_ok =
            self.label.as_ref().is_none_or(|(k, vals)| obj["metadata"]["labels"][k].as_str().is_some_and(|v| vals.iter().any(|x| x == v)));
        ns_ok && label_ok
    }
}

/// The kind and namespace of a path: cluster-wide or under `namespaces/NS/`.
fn route(path: &str) -> Option<(Kind, Option<String>)> {
    if let Some(k) = Kind::ALL.into_iter().find(|k| self::path(*k) == path) {
        return Some((k, None));
    }
    for k in Kind::ALL.into_iter().filter(|k| *k != Kind::Namespace) {
        let full = self::path(k);
        let (prefix, plural) = full.rsplit_once('/')?;
        let rest = path.strip_prefix(prefix)?.strip_prefix("/namespaces/");
        if let Some((ns, p)) = rest.and_then(|r| r.split_once('/'))
            && p == plural
        {
            return Some((k, Some(ns.to_string())));
        }
    }
    None
}

#[derive(Default)]
struct State {
    rv: u64,
    objects: BTreeMap<(Kind, String, String), Value>,
    /// Every event, for watches that start from an older version.
    log: Vec<(u64, Kind, &'static str, Value)>,
    /// Events at or below this version are forgotten: a watch from there gets 410 Gone.
    compacted: u64,
    watches: Vec<(Kind, Filter, mpsc::UnboundedSender<Bytes>)>,
    down: bool,
    /// Requests seen, for the test to read (path and query).
    requests: Vec<String>,
}

#[derive(Clone)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
    pub addr: SocketAddr,
}

fn line(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

type Body = BoxBody<Bytes, Infallible>;

fn full(status: u16, v: &Value) -> hyper::Response<Body> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())).boxed())
        .expect("response")
}

impl FakeApi {
    /// Starts on a free loopback port, on the current tokio runtime.
    pub async fn start() -> FakeApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let api = FakeApi { state: Arc::new(Mutex::new(State { rv: 100, ..State::default() })), addr };
        let a = api.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let a = a.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let a = a.clone();
                        async move { Ok::<_, Infallible>(a.serve(req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await;
                });
            }
        });
        api
    }

    fn serve(&self, req: hyper::Request<hyper::body::Incoming>) -> hyper::Response<Body> {
        let path = req.uri().path().to_string();
        let query: BTreeMap<String, String> =
            form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let mut st = self.state.lock().expect("lock");
        st.requests.push(format!("{path}?{}", req.uri().query().unwrap_or("")));
        if st.down {
            return full(
                503,
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 503, "reason": "ServiceUnavailable"}),
            );
        }
        let Some((kind, namespace)) = route(&path) else {
            return full(404, &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound"}));
        };
        let filter = Filter::parse(namespace, query.get("labelSelector").map(String::as_str));
        if query.get("watch").map(String::as_str) != Some("true") {
            let items: Vec<Value> =
                st.objects.iter().filter(|((k, _, _), v)| *k == kind && filter.matches(v)).map(|(_, v)| v.clone()).collect();
            let list = json!({"apiVersion": api_version(kind), "kind": format!("{}List", kind_name(kind)),
                "metadata": {"resourceVersion": st.rv.to_string()}, "items": items});
            return full(200, &list);
        }
        let from: u64 = query.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        if from < st.compacted {
            let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("too old resource version: {from} ({})", st.compacted), "reason": "Expired", "code": 410}});
            let _ = tx.send(line(&gone));
            drop(tx);
        } else {
            for (rv, k, ty, obj) in &st.log {
                if *k == kind && *rv > from && filter.matches(obj) {
                    let _ = tx.send(line(&json!({"type": ty, "object": obj})));
                }
            }
            if query.get("allowWatchBookmarks").map(String::as_str) == Some("true") {
                let bm = json!({"type": "BOOKMARK", "object": {"apiVersion": api_version(kind), "kind": kind_name(kind),
                    "metadata": {"resourceVersion": st.rv.to_string()}}});
                let _ = tx.send(line(&bm));
            }
            st.watches.push((kind, filter, tx));
        }
        let stream =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx)) });
        hyper::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(BodyExt::boxed(StreamBody::new(stream)))
            .expect("response")
    }

    fn event(st: &mut State, kind: Kind, ty: &'static str, obj: Value) {
        let rv = st.rv;
        st.log.push((rv, kind, ty, obj.clone()));
        let l = line(&json!({"type": ty, "object": obj.clone()}));
        st.watches.retain(|(k, f, tx)| *k != kind || !f.matches(&obj) || tx.send(l.clone()).is_ok());
    }

    /// Creates or replaces an object (its kind, namespace and name from the JSON).
    pub fn put(&self, kind: Kind, mut obj: Value) {
        let mut st = self.state.lock().expect("lock");
        st.rv += 1;
        obj["apiVersion"] = json!(api_version(kind));
        obj["kind"] = json!(kind_name(kind));
        obj["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        let key = (
            kind,
            obj["metadata"]["namespace"].as_str().unwrap_or("").to_string(),
            obj["metadata"]["name"].as_str().unwrap_or("").to_string(),
        );
        let ty = if st.objects.contains_key(&key) { "MODIFIED" } else { "ADDED" };
        st.objects.insert(key, obj.clone());
        Self::event(&mut st, kind, ty, obj);
    }

    pub fn delete(&self, kind: Kind, namespace: &str, name: &str) {
        let mut st = self.state.lock().expect("lock");
        let Some(mut obj) = st.objects.remove(&(kind, namespace.to_string(), name.to_string())) else { return };
        st.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        Self::event(&mut st, kind, "DELETED", obj);
    }

    /// Forgets the event history and ends every watch: clients re-watch from their last version,
    /// get 410 Gone, and must relist.
    pub fn compact_and_drop_watches(&self) {
        let mut st = self.state.lock().expect("lock");
        st.compacted = st.rv + 1;
        st.log.clear();
        st.watches.clear();
    }

    /// Down: every request gets 503 and every open watch ends. Up: serves again.
    pub fn set_down(&self, down: bool) {
        let mut st = self.state.lock().expect("lock");
        st.down = down;
        if down {
            st.watches.clear();
        }
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.lock().expect("lock").requests.clone()
    }

    /// A kubeconfig that points at this server (plain HTTP, no credentials).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\nusers:\n- name: test\n  user: {{}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: test}}\ncurrent-context: fake\n",
            self.addr
        )
    }
}

pub fn namespace(name: &str) -> Value {
    json!({"metadata": {"name": name}})
}

pub fn service(ns: &str, name: &str, cluster_ip: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": ns}, "spec": {"clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
}

/// An EndpointSlice of `service` with (address, ready) endpoints.
pub fn slice(ns: &str, service: &str, endpoints: &[(&str, bool)]) -> Value {
    let eps: Vec<Value> = endpoints.iter().map(|(ip, ready)| json!({"addresses": [ip], "conditions": {"ready": ready}})).collect();
    json!({"metadata": {"name": format!("{service}-abcde"), "namespace": ns, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4", "endpoints": eps, "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
}
