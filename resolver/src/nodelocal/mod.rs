//! Node-local mode: what node-cache adds around CoreDNS, as pure functions the driver calls
//! (sources.md#node-local-dns).
//!
//! - `render`: the `__PILLAR__` template (`-basecorefile`) and the kube-dns ConfigMap become the
//!   Corefile the server loads.
//! - `kubedns`: that ConfigMap's `stubDomains` and `upstreamNameservers`.
//! - `rules`: the NOTRACK and ACCEPT rules per local IP, and which iptables back end the node uses.
//!
//! The interface, the iptables commands, the file polling and the teardown are I/O and live in
//! `driver::nodelocal`.

pub mod kubedns;
pub mod render;
pub mod rules;

/// The environment variable holding a Service's ClusterIP, as the kubelet sets it in every pod
/// (`kube-dns-upstream` → `KUBE_DNS_UPSTREAM_SERVICE_HOST`, sources.md#service-env).
pub fn service_host_env(service: &str) -> String {
    format!("{}_SERVICE_HOST", service.replace('-', "_").to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    #[test]
    fn service_env_name_is_the_kubelets() {
        assert_eq!(super::service_host_env("kube-dns-upstream"), "KUBE_DNS_UPSTREAM_SERVICE_HOST");
        assert_eq!(super::service_host_env("kube-dns"), "KUBE_DNS_SERVICE_HOST");
    }
}
