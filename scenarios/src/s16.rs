//! S16 topology: CoreDNS replicas whose `forward . /etc/resolv.conf` reads the node's resolv.conf
//! naming systemd-resolved's 127.0.0.53, which inside the pod is CoreDNS itself (sources.md#incident-s16).

use crate::*;

pub fn spec(seed: u64, stub_resolver: bool) -> ClusterSpec {
    let mut spec = cluster(seed, 3, 2, 30, 1.0, &["web", "www.google.com"], 60);
    if stub_resolver {
        spec.corefile = spec.corefile.replace("forward . /etc/resolv.conf", "forward . 127.0.0.53");
    }
    spec
}

pub fn incident() -> Incident {
    Incident {
        id: "S16",
        slug: "loop-127-0-0-53",
        expect: sim::file::Expect { restarts_max: Some(0), success_rate_min: Some(0.99), ..Default::default() },
        title: "forwarding loop through 127.0.0.53",
        source: "CoreDNS loop plugin docs; sources.md#coredns-plugins",
        seed: 16,
        failure: Case { label: "resolv.conf: 127.0.0.53", spec: |s| spec(s, true) },
        mitigation: Case { label: "--resolv-conf=/run/systemd/resolve/resolv.conf", spec: |s| spec(s, false) },
        measure: |r| format!("{} restarts, {:.0}% lookups ok", r.net.restarts, 100.0 * r.success_rate()),
    }
}
