//! Applying the API's watch events to the cluster's objects, sans-IO: the driver's watchers
//! (kube-runtime) turn what the apiserver streams into `WatchEvent`s, this turns them into a
//! `ClusterState`.
//!
//! The events are kube-runtime's (sources.md#kube-watcher): `Apply` and `Delete` while watching; for
//! every (re)list `Init`, one `InitApply` per object, then `InitDone`. A relist is collected apart and
//! swapped in whole at `InitDone`, so a half-applied list is never served, and an object the relist
//! did not contain is gone. The state is synced once every watched kind has finished its first list;
//! until then it is marked `unsynced` (names it does not know are SERVFAIL, not NXDOMAIN). A watch
//! that fails later keeps what it had: the last state is served while the apiserver is away.

use super::{ClusterObjects, ClusterState, Kind, Object};

/// One event of one kind's watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// An object was added or changed.
    Apply(Object),
    /// An object was deleted (the last state the watch saw of it).
    Delete(Object),
    /// A (re)list starts: the objects that follow replace all of this kind's at `InitDone`.
    Init,
    InitApply(Object),
    InitDone,
}

/// The watched kinds' objects and how far each watch has got.
#[derive(Debug, Clone, Default)]
pub struct Watched {
    live: ClusterObjects,
    /// Per kind, the relist being collected.
    pending: [Option<ClusterObjects>; 4],
    /// Per kind: watched at all, and listed at least once.
    watched: [bool; 4],
    listed: [bool; 4],
    /// Bumped by every event that changed `live`.
    generation: u64,
    /// Records resolve only in namespaces the Namespace watch holds (the API source, as CoreDNS's
    /// `namespace.go`); a file may leave Namespace objects out, so it does not require them.
    namespaces_required: bool,
}

fn slot(kind: Kind) -> usize {
    kind as usize
}

impl Watched {
    /// Watches these kinds (Pods only with `pods verified`; EndpointSlices unless `noendpoints`).
    pub fn new(kinds: &[Kind]) -> Watched {
        let mut w = Watched::default();
        for k in kinds {
            w.watched[slot(*k)] = true;
        }
        w
    }

    /// As `new`, and a Service, EndpointSlice or Pod counts only while its Namespace exists (what the
    /// API source does: a namespace being deleted is NXDOMAIN at once, `namespace_labels` hides the
    /// namespaces it does not select).
    pub fn requiring_namespaces(kinds: &[Kind]) -> Watched {
        Watched { namespaces_required: kinds.contains(&Kind::Namespace), ..Watched::new(kinds) }
    }

    /// Applies one event of `kind`'s watch. Returns whether the served objects changed.
    pub fn handle(&mut self, kind: Kind, event: WatchEvent) -> bool {
        let s = slot(kind);
        let changed = match event {
            WatchEvent::Apply(o) if o.kind() == kind => {
                self.live.insert(o);
                true
            }
            WatchEvent::Delete(o) if o.kind() == kind => {
                self.live.remove(&o);
                true
            }
            WatchEvent::Init => {
                self.pending[s] = Some(ClusterObjects::default());
                false
            }
            WatchEvent::InitApply(o) if o.kind() == kind => {
                // An InitApply without its Init (not something kube-runtime sends) starts the relist.
                self.pending[s].get_or_insert_with(ClusterObjects::default).insert(o);
                false
            }
            WatchEvent::InitDone => {
                let mut fresh = self.pending[s].take().unwrap_or_default();
                self.live.replace_kind(kind, &mut fresh);
                self.listed[s] = true;
                // A relist may change anything of its kind, and a first list changes whether the
                // state is synced.
                true
            }
            // An object of another kind on this watch: not this watch's business.
            WatchEvent::Apply(_) | WatchEvent::Delete(_) | WatchEvent::InitApply(_) => false,
        };
        if changed {
            self.generation += 1;
        }
        changed
    }

    /// Every watched kind has finished its first list.
    pub fn synced(&self) -> bool {
        (0..4).all(|i| !self.watched[i] || self.listed[i])
    }

    /// Changes so far (to tell whether a state built earlier is stale).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn objects(&self) -> &ClusterObjects {
        &self.live
    }

    /// The watches' kinds.
    fn kinds(&self) -> impl Iterator<Item = Kind> + '_ {
        Kind::ALL.into_iter().filter(|k| self.watched[slot(*k)])
    }

    /// The apiserver's objects are now `now`: delivers, as the watches would, an `Apply` for every
    /// object new or changed and a `Delete` for every one gone, in key order (the simulator's
    /// cluster changes go through here). Returns whether anything changed.
    pub fn apply_objects(&mut self, now: &ClusterObjects) -> bool {
        let mut events: Vec<(Kind, WatchEvent)> = Vec::new();
        let live = &self.live;
        for n in now.namespaces.difference(&live.namespaces) {
            events.push((Kind::Namespace, WatchEvent::Apply(Object::Namespace(n.clone()))));
        }
        for n in live.namespaces.difference(&now.namespaces) {
            events.push((Kind::Namespace, WatchEvent::Delete(Object::Namespace(n.clone()))));
        }
        fn diff<V: Clone + PartialEq>(
            kind: Kind,
            old: &std::collections::BTreeMap<super::Key, V>,
            new: &std::collections::BTreeMap<super::Key, V>,
            make: fn(super::Key, V) -> Object,
            out: &mut Vec<(Kind, WatchEvent)>,
        ) {
            for (k, v) in new {
                if old.get(k) != Some(v) {
                    out.push((kind, WatchEvent::Apply(make(k.clone(), v.clone()))));
                }
            }
            for (k, v) in old {
                if !new.contains_key(k) {
                    out.push((kind, WatchEvent::Delete(make(k.clone(), v.clone()))));
                }
            }
        }
        diff(Kind::Service, &live.services, &now.services, Object::Service, &mut events);
        diff(Kind::EndpointSlice, &live.slices, &now.slices, Object::EndpointSlice, &mut events);
        diff(Kind::Pod, &live.pods, &now.pods, Object::Pod, &mut events);
        let mut changed = false;
        for (kind, ev) in events {
            if self.watched[slot(kind)] {
                changed |= self.handle(kind, ev);
            }
        }
        changed
    }

    /// Every watch relists `now` (an apiserver restart, a watch too old to resume): `Init`, one
    /// `InitApply` per object, `InitDone`, kind by kind.
    pub fn relist(&mut self, now: &ClusterObjects) {
        for kind in self.kinds().collect::<Vec<_>>() {
            self.handle(kind, WatchEvent::Init);
            let objects: Vec<Object> = match kind {
                Kind::Namespace => now.namespaces.iter().cloned().map(Object::Namespace).collect(),
                Kind::Service => now.services.iter().map(|(k, v)| Object::Service(k.clone(), v.clone())).collect(),
                Kind::EndpointSlice => now.slices.iter().map(|(k, v)| Object::EndpointSlice(k.clone(), v.clone())).collect(),
                Kind::Pod => now.pods.iter().map(|(k, v)| Object::Pod(k.clone(), v.clone())).collect(),
            };
            for o in objects {
                self.handle(kind, WatchEvent::InitApply(o));
            }
            self.handle(kind, WatchEvent::InitDone);
        }
    }

    /// The state to serve now.
    pub fn state(&self) -> ClusterState {
        ClusterState { unsynced: !self.synced(), ..ClusterState::build_in(&self.live, self.namespaces_required) }
    }
}
