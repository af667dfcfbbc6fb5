//! The API watch and the file give the same cluster state: any sequence of watch events (applies,
//! deletes, relists interleaved across kinds, as kube-runtime's merged watchers deliver them) that
//! ends synced yields exactly the `ClusterState` that parsing a List of the surviving objects yields.
//! The List parser is the oracle.

use std::collections::BTreeMap;

use proptest::prelude::*;
use resolver::ClusterState;
use resolver::cluster::{Kind, Object, WatchEvent, Watched};
use serde_json::{Value, json};

/// An object of `kind` from a small pool: `i` picks which (so keys collide), `v` a variant of its
/// contents (so updates change something).
fn object(kind: Kind, i: u8, v: u8) -> Value {
    let ns = format!("ns{}", i % 3);
    match kind {
        Kind::Namespace => json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        Kind::Service => {
            let spec = if v.is_multiple_of(3) {
                json!({"clusterIP": "None", "ports": [{"name": "http", "port": 80}]})
            } else {
                json!({"clusterIP": format!("10.96.{i}.{v}"), "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]})
            };
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("svc{}", i % 4), "namespace": ns}, "spec": spec})
        }
        Kind::EndpointSlice => json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("svc{}-{}", i % 4, i % 2), "namespace": ns, "labels": {"kubernetes.io/service-name": format!("svc{}", i % 4)}},
            "endpoints": [
                {"addresses": [format!("10.1.{i}.{v}")], "conditions": {"ready": v.is_multiple_of(2)}, "hostname": format!("h{v}")},
                {"addresses": [format!("10.2.{i}.{v}")], "targetRef": {"kind": "Pod", "name": format!("pod-{v}")}},
            ],
            "ports": [{"name": "http", "port": 8000 + u16::from(v), "protocol": "TCP"}],
        }),
        Kind::Pod => json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("pod{}", i % 5), "namespace": ns},
            "spec": {"hostNetwork": v % 5 == 4}, "status": {"podIP": format!("10.3.{i}.{v}")},
        }),
    }
}

fn key(kind: Kind, o: &Value) -> (Kind, String, String) {
    (kind, o["metadata"]["namespace"].as_str().unwrap_or("").to_string(), o["metadata"]["name"].as_str().unwrap_or("").to_string())
}

fn reduce(o: &Value) -> Object {
    Object::from_json(o.clone()).expect("the pool's objects are all DNS kinds")
}

#[derive(Debug, Clone)]
enum Op {
    Apply(Kind, u8, u8),
    Delete(Kind, u8, u8),
    /// A relist of one kind, with an event of another kind's watch arriving in the middle of it.
    Relist(Kind, Vec<(u8, u8)>, Option<(Kind, u8, u8)>),
}

fn kind() -> impl Strategy<Value = Kind> {
    prop::sample::select(Kind::ALL.to_vec())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (kind(), 0..10u8, 0..6u8).prop_map(|(k, i, v)| Op::Apply(k, i, v)),
        2 => (kind(), 0..10u8, 0..6u8).prop_map(|(k, i, v)| Op::Delete(k, i, v)),
        1 => (kind(), prop::collection::vec((0..10u8, 0..6u8), 0..8), prop::option::of((kind(), 0..10u8, 0..6u8)))
            .prop_map(|(k, l, mid)| Op::Relist(k, l, mid)),
    ]
}

/// The first lists (every kind, any objects, in any kind order), then anything.
fn history() -> impl Strategy<Value = Vec<Op>> {
    let first = prop::collection::vec(prop::collection::vec((0..10u8, 0..6u8), 0..8), 4)
        .prop_map(|lists| Kind::ALL.iter().zip(lists).map(|(k, l)| Op::Relist(*k, l, None)).collect::<Vec<_>>())
        .prop_shuffle();
    (first, prop::collection::vec(op(), 0..40)).prop_map(|(mut a, b)| {
        a.extend(b);
        a
    })
}

proptest! {
    #[test]
    fn any_synced_event_sequence_gives_the_state_of_the_equivalent_list(ops in history()) {
        let mut w = Watched::new(&Kind::ALL);
        // The API source's view: the same, without what lives in a namespace that does not exist.
        let mut api = Watched::requiring_namespaces(&Kind::ALL);
        // The model: the objects the apiserver holds, by kind and key.
        let mut model: BTreeMap<(Kind, String, String), Value> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Apply(k, i, v) => {
                    let o = object(k, i, v);
                    model.insert(key(k, &o), o.clone());
                    w.handle(k, WatchEvent::Apply(reduce(&o)));
                    api.handle(k, WatchEvent::Apply(reduce(&o)));
                }
                Op::Delete(k, i, v) => {
                    let o = object(k, i, v);
                    model.remove(&key(k, &o));
                    w.handle(k, WatchEvent::Delete(reduce(&o)));
                    api.handle(k, WatchEvent::Delete(reduce(&o)));
                }
                Op::Relist(k, list, mid) => {
                    w.handle(k, WatchEvent::Init);
                    api.handle(k, WatchEvent::Init);
                    model.retain(|(kk, _, _), _| *kk != k);
                    for (n, (i, v)) in list.iter().enumerate() {
                        let o = object(k, *i, *v);
                        model.insert(key(k, &o), o.clone());
                        w.handle(k, WatchEvent::InitApply(reduce(&o)));
                        api.handle(k, WatchEvent::InitApply(reduce(&o)));
                        // Another kind's watch delivers between two objects of this relist.
                        if n == 0 && let Some((mk, mi, mv)) = mid.filter(|m| m.0 != k) {
                            let m = object(mk, mi, mv);
                            model.insert(key(mk, &m), m.clone());
                            w.handle(mk, WatchEvent::Apply(reduce(&m)));
                            api.handle(mk, WatchEvent::Apply(reduce(&m)));
                        }
                    }
                    w.handle(k, WatchEvent::InitDone);
                    api.handle(k, WatchEvent::InitDone);
                }
            }
        }
        prop_assert!(w.synced());
        let list = json!({"apiVersion": "v1", "kind": "List", "items": model.values().collect::<Vec<_>>()});
        let oracle = ClusterState::parse(&list.to_string(), "list.json").expect("the List parses");
        prop_assert_eq!(w.state(), oracle);
        let namespaces: Vec<String> =
            model.keys().filter(|(k, _, _)| *k == Kind::Namespace).map(|(_, _, n)| n.clone()).collect();
        let in_existing_ns: Vec<&Value> = model
            .iter()
            .filter(|((k, ns, _), _)| *k == Kind::Namespace || namespaces.contains(ns))
            .map(|(_, v)| v)
            .collect();
        let list = json!({"apiVersion": "v1", "kind": "List", "items": in_existing_ns});
        let oracle = ClusterState::parse(&list.to_string(), "list.json").expect("the List parses");
        prop_assert_eq!(api.state(), oracle);
    }
}

#[test]
fn a_relist_is_served_only_when_done_and_drops_what_it_did_not_list() {
    let svc = |i, v| reduce(&object(Kind::Service, i, v));
    let mut w = Watched::new(&[Kind::Namespace, Kind::Service]);
    for k in [Kind::Namespace, Kind::Service] {
        w.handle(k, WatchEvent::Init);
    }
    w.handle(Kind::Service, WatchEvent::InitApply(svc(0, 1)));
    assert!(!w.synced());
    assert!(w.state().unsynced, "before every kind has listed, the state says so");
    w.handle(Kind::Service, WatchEvent::InitDone);
    w.handle(Kind::Namespace, WatchEvent::InitDone);
    assert!(w.synced() && !w.state().unsynced);
    w.handle(Kind::Service, WatchEvent::Apply(svc(1, 1)));
    assert_eq!(w.state().services.len(), 2);
    // A relist (after 410 Gone) that no longer has svc0: half-way, both are still served.
    w.handle(Kind::Service, WatchEvent::Init);
    w.handle(Kind::Service, WatchEvent::InitApply(svc(1, 2)));
    assert_eq!(w.state().services.len(), 2, "a half-applied relist is never served");
    w.handle(Kind::Service, WatchEvent::InitDone);
    let st = w.state();
    assert_eq!(st.services.len(), 1, "what the relist did not contain is gone");
    assert!(st.services.contains_key(&("ns1".to_string(), "svc1".to_string())));
}

/// A set of objects from the pool, as a List.
fn pool_list() -> impl Strategy<Value = String> {
    prop::collection::vec((kind(), 0..10u8, 0..6u8), 0..24).prop_map(|objs| {
        let mut by_key: BTreeMap<(Kind, String, String), Value> = BTreeMap::new();
        for (k, i, v) in objs {
            let o = object(k, i, v);
            by_key.insert(key(k, &o), o);
        }
        json!({"apiVersion": "v1", "kind": "List", "items": by_key.values().collect::<Vec<_>>()}).to_string()
    })
}

proptest! {
    /// The simulator moves its watch from one cluster to the next by `apply_objects` (the changes as
    /// events) and restarts the apiserver by `relist`: either way the state is the List's.
    #[test]
    fn relist_then_diffs_as_events_give_the_state_of_the_last_list(a in pool_list(), b in pool_list(), c in pool_list()) {
        let objs = |t: &str| resolver::cluster::ClusterObjects::parse(t, "list.json").expect("parses");
        let mut w = Watched::new(&Kind::ALL);
        w.relist(&objs(&a));
        prop_assert!(w.synced());
        prop_assert_eq!(w.state(), ClusterState::parse(&a, "a").expect("a"));
        let changed = w.apply_objects(&objs(&b));
        prop_assert_eq!(changed, objs(&a) != objs(&b), "a change is reported exactly when the objects differ");
        prop_assert_eq!(w.state(), ClusterState::parse(&b, "b").expect("b"));
        w.relist(&objs(&c));
        prop_assert_eq!(w.state(), ClusterState::parse(&c, "c").expect("c"));
    }
}
