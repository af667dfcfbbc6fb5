//! S14: Preply's partial DNS outage (2020-02-28): kube-proxy failed to delete a conntrack row.
//!
//! Source: Preply postmortem (medium.com/preply-engineering/dns-postmortem); sources.md#stale-udp-conntrack, sources.md#incident-s14.
//! Root cause: as S17: the delete of the entries DNATed to a deleted CoreDNS pod failed, and clients
//! that kept their 5-tuple busy kept being sent to the dead pod (26 minutes to mitigate).
//! Guaranteed now: the affected clients are exactly those whose flow was pinned to the deleted pod
//! and kept alive: every other client is unaffected, and no affected client recovers on its own.

use std::time::Duration;

use netmodel::dnat::Cleanup;
use scenarios::s17::{spec, success_by_pod};
use scenarios::*;

#[test]
fn only_clients_pinned_to_the_deleted_pod_fail_and_they_do_not_recover() {
    let seed = seed(14);
    let hint = replay("s14_preply_stale_conntrack", "only_clients_pinned_to_the_deleted_pod_fail_and_they_do_not_recover", seed);
    let r = run(spec(seed, Cleanup::Never)).expect("runs");
    let before = success_by_pod(&r, Duration::ZERO);
    let late = success_by_pod(&r, Duration::from_secs(30));
    // Everyone worked before the delete; afterwards a pod is either fully out or fully fine.
    assert!(r.lookups.iter().filter(|l| l.end < Duration::from_secs(10)).all(|l| l.ok), "{hint}");
    assert!(late.iter().all(|&s| s == 0.0 || s == 1.0), "{late:?}; {hint}");
    let affected = late.iter().filter(|&&s| s == 0.0).count();
    assert!(affected >= 1 && affected < late.len(), "{affected} of {}; {before:?}; {hint}", late.len());
}
