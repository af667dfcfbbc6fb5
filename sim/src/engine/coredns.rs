//! CoreDNS as it ran, by release: what the `coredns[-VERSION]` profile changes in the ndots
//! resolver's configuration so that a replica forwards, caches and answers as that CoreDNS did
//! (sources.md#coredns-releases). Without a version the profile is the newest release.
//!
//! Every release:
//! - no merging of identical in-flight questions (`Config::coalesce`): CoreDNS's forward has no
//!   singleflight, so N identical misses are N upstream queries;
//! - a truncated UDP answer from the upstream goes back to the client, uncached, which retries over
//!   TCP; only `prefer_udp` makes forward ask again over TCP itself (`Config::tcp_on_truncation`);
//! - without the `bufsize` plugin the forwarded query is the client's own: its EDNS buffer size, or
//!   no OPT record when it sent none, and the answer is limited only by what the client advertised
//!   (`ServerConfig::forward_client_edns`, `bufsize` 4096). With the plugin every forwarded query
//!   advertises the plugin's size, which is what the plugin did until 1.11 (it even added EDNS to
//!   queries without it); newer releases only lower a larger size, a difference no modelled client
//!   shows (none advertises more than 1,232 bytes).
//!
//! By release: SERVFAIL cached 5 s from 1.5.1 (none before, coredns#2720), the cache's 5 s minimum
//! TTL from 1.2.3 (0 before). Corefile syntax a release did not have is refused with the line and the
//! release that added it (`SINCE`), as that CoreDNS would refuse to start.
//!
//! Not modelled: before 1.3.0 forward's read timeout adapted between 200 ms and 2 s (starting at 1 s);
//! the profile uses the fixed 2 s of every later release. Autopath, the kubernetes plugin's answers
//! and forward's health checks are ndots' own, which follow CoreDNS's (sources.md#coredns-forward,
//! sources.md#coredns-autopath); CoreDNS's memory is `MemoryModel::CoreDns`, fitted on 1.2.

use std::time::Duration;

use resolver::Config;
use resolver::corefile::{Corefile, Directive};

/// A CoreDNS release as (major, minor, patch).
type Release = (u16, u16, u16);

/// The release a profile names; `None` is the newest.
fn release(version: Option<&str>) -> Result<Option<Release>, String> {
    let Some(v) = version else { return Ok(None) };
    let parts: Vec<u16> =
        v.split('.').map(|p| p.parse::<u16>().map_err(|_| format!("coredns-{v}: not a release number"))).collect::<Result<_, _>>()?;
    match parts[..] {
        [a, b] => Ok(Some((a, b, 0))),
        [a, b, c] => Ok(Some((a, b, c))),
        _ => Err(format!("coredns-{v}: expected MAJOR.MINOR or MAJOR.MINOR.PATCH, such as 1.6.7")),
    }
}

/// Corefile syntax and the first release that accepts it: (plugin, option or "" for the plugin,
/// release, source).
const SINCE: &[(&str, &str, Release, &str)] = &[
    ("bufsize", "", (1, 6, 6), "CoreDNS 1.6.6 release notes, coredns#3401"),
    ("cache", "serve_stale", (1, 6, 6), "CoreDNS 1.6.6 release notes, coredns#3468"),
    ("forward", "max_concurrent", (1, 6, 8), "coredns#3640"),
    ("cache", "servfail", (1, 9, 4), "CoreDNS 1.9.4 release notes"),
    ("forward", "failfast_all_unhealthy_upstreams", (1, 12, 1), "CoreDNS 1.12.1 release notes"),
];

fn at_least(r: Option<Release>, min: Release) -> bool {
    r.is_none_or(|r| r >= min)
}

fn v(r: Release) -> String {
    format!("{}.{}.{}", r.0, r.1, r.2)
}

/// The default Corefile (kubeadm's, `examples/kubeadm.Corefile`) as a release's deployment had it:
/// without forward's `max_concurrent 1000` before the release that added the option (the
/// deployments set it from CoreDNS 1.7.0, deployment#233).
pub(crate) fn default_corefile(version: Option<&str>, kubeadm: &str) -> String {
    match release(version) {
        Ok(r) if !at_least(r, (1, 6, 8)) => kubeadm.replace(" {\n       max_concurrent 1000\n    }\n", "\n"),
        _ => kubeadm.to_string(),
    }
}

/// Checks the Corefile against the release and turns `cfg` (built from it) into that CoreDNS.
pub(crate) fn configure(version: Option<&str>, cf: &Corefile, cfg: &mut Config) -> Result<(), String> {
    let r = release(version)?;
    for block in &cf.blocks {
        for d in &block.directives {
            check_since(r, version, d)?;
        }
    }
    cfg.coalesce = false;
    cfg.tcp_on_truncation = false;
    for (s, block) in cfg.servers.iter_mut().zip(&cf.blocks) {
        if !block.directives.iter().any(|d| d.name.text == "bufsize") {
            s.forward_client_edns = true;
            s.bufsize = 4096;
        }
        if let Some(c) = s.cache.as_mut() {
            if !at_least(r, (1, 5, 1)) {
                c.servfail_ttl = Duration::ZERO;
            }
            if !at_least(r, (1, 2, 3)) {
                c.success.min_ttl = 0;
                c.denial.min_ttl = 0;
            }
        }
    }
    Ok(())
}

fn check_since(r: Option<Release>, version: Option<&str>, d: &Directive) -> Result<(), String> {
    for &(plugin, option, since, source) in SINCE {
        if d.name.text != plugin || at_least(r, since) {
            continue;
        }
        let found = if option.is_empty() { Some(&d.name) } else { d.block.iter().map(|o| &o.name).find(|n| n.text == option) };
        if let Some(t) = found {
            let what = if option.is_empty() { format!("the {plugin} plugin") } else { format!("{plugin}'s `{option}`") };
            return Err(format!(
                "{}:{}: coredns-{} has no {what}: it arrived in CoreDNS {} ({source}); remove it or name a later release",
                t.pos.file,
                t.pos.line,
                version.unwrap_or("?"),
                v(since)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str, version: Option<&str>) -> Result<Config, String> {
        let cf = resolver::corefile::parse_str(text, "Corefile", None, &|_| None).map_err(|e| e.to_string())?;
        let files = resolver::config::Files::Only(&[("/etc/resolv.conf", "nameserver 10.0.0.2\n")]);
        let mut cfg = Config::from_corefile_in(&cf, &files).map_err(|e| e.to_string())?;
        configure(version, &cf, &mut cfg)?;
        Ok(cfg)
    }

    #[test]
    fn a_release_refuses_syntax_it_did_not_have_with_the_line() {
        let text = ".:53 {\n    forward . 10.0.0.1 {\n        max_concurrent 1000\n    }\n    cache 30\n}\n";
        let e = cfg(text, Some("1.6.7")).expect_err("1.6.7 has no max_concurrent");
        assert!(e.starts_with("Corefile:3: coredns-1.6.7 has no forward's `max_concurrent`"), "{e}");
        assert!(e.contains("1.6.8") && e.contains("coredns#3640"), "{e}");
        assert!(cfg(text, Some("1.6.8")).is_ok());
        assert!(cfg(text, None).is_ok(), "the newest release has it");
        let e = cfg(".:53 {\n    bufsize 1232\n}\n", Some("1.6.5")).expect_err("no bufsize plugin");
        assert!(e.starts_with("Corefile:2:") && e.contains("bufsize plugin"), "{e}");
    }

    #[test]
    fn an_old_releases_default_corefile_has_no_max_concurrent() {
        let kubeadm = crate::spec::KUBEADM_COREFILE;
        let old = default_corefile(Some("1.6.7"), kubeadm);
        assert!(!old.contains("max_concurrent") && old.contains("forward . /etc/resolv.conf\n    cache 30"), "{old}");
        assert!(cfg(&old, Some("1.6.7")).is_ok());
        assert_eq!(default_corefile(Some("1.7.0"), kubeadm), kubeadm);
        assert_eq!(default_corefile(None, kubeadm), kubeadm);
    }

    #[test]
    fn servfail_caching_and_the_minimum_ttl_follow_the_release() {
        let text = ".:53 {\n    forward . 10.0.0.1\n    cache 30\n}\n";
        for (version, servfail, min_ttl) in [(Some("1.2.2"), 0, 0), (Some("1.5.0"), 0, 5), (Some("1.5.1"), 5, 5), (None, 5, 5)] {
            let c = cfg(text, version).expect("valid");
            let cache = c.servers[0].cache.as_ref().expect("cache");
            assert_eq!((cache.servfail_ttl.as_secs(), cache.success.min_ttl), (servfail, min_ttl), "{version:?}");
            assert!(!c.coalesce && !c.tcp_on_truncation);
        }
    }

    #[test]
    fn without_the_bufsize_plugin_the_clients_edns_is_forwarded() {
        let plain = cfg(".:53 {\n    forward . 10.0.0.1\n}\n", None).expect("valid");
        assert!(plain.servers[0].forward_client_edns);
        let with = cfg(".:53 {\n    bufsize 4096\n    forward . 10.0.0.1\n}\n", None).expect("valid");
        assert!(!with.servers[0].forward_client_edns);
        assert_eq!(with.servers[0].bufsize, 4096);
    }
}
