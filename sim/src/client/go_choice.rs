//! Which resolver a Go program uses for a name: its own (`go`) or glibc's through cgo
//! (sources.md#go-resolver-choice; golang/go src/net/conf.go `hostLookupOrder` and
//! dnsconfig_unix.go `dnsReadConfig` at go1.19, the source Debian 12 ships in
//! /usr/lib/go-1.19/src/net, and `cargo xtask client-check`'s `go:default` program).
//!
//! In order, for a program built with cgo (a dynamically linked binary):
//! 1. `GODEBUG=netdns=go` (or the `netgo` build tag): Go's resolver; `netdns=cgo`: glibc's.
//! 2. resolv.conf has an option this release does not know: glibc's. Go 1.17-1.19 know `ndots:`,
//!    `timeout:`, `attempts:`, `rotate`, `single-request(-reopen)` and `use-vc`/`usevc`/`tcp`;
//!    1.20 added `edns0` (CL 415579) and `trust-ad` (golang/go#51152, PR #54921). So
//!    `options edns0 trust-ad`, common on hosts with systemd-resolved, or glibc's `no-aaaa`,
//!    turn Go 1.19 into a glibc client, conntrack race and all.
//! 3. The name ends in `.local` (RFC 6762: libc might do mDNS): glibc's. Every fully qualified
//!    cluster name (`*.svc.cluster.local`) takes this path.
//! 4. /etc/nsswitch.conf: none, or a `hosts:` line of `files` and `dns` only: Go's; any other
//!    source (`myhostname` for other names and `mdns*` excepted) or a `[...]` action: glibc's.
//!
//! A program built without cgo (`CGO_ENABLED=0`, static and distroless images) always uses Go's.
//! Later releases rewrote conf.go (1.21) without changing these outcomes for Linux as far as the
//! model goes [unverified on the wire beyond 1.19].

use super::ResolvConf;

/// `GODEBUG=netdns=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetDns {
    Go,
    Cgo,
}

/// A Go program as built and run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoBuild {
    /// Go 1.`minor`.
    pub minor: u16,
    /// Linked with cgo (the default for a dynamically linked Linux binary).
    pub cgo: bool,
    pub netdns: Option<NetDns>,
}

/// The resolver chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Native,
    Cgo,
}

impl GoBuild {
    /// A cgo build of the release as people write it (`1.19`, `1.19.13`, `go1.22.4`).
    pub fn for_version(v: &str) -> Result<GoBuild, String> {
        let known = "Go 1.17 to 1.23";
        let bad = || format!("Go version `{v}`: expected a release such as 1.19.13; the model knows {known}");
        let parts: Vec<u16> = v.trim_start_matches("go").split('.').map(|p| p.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
        match (parts.first(), parts.get(1)) {
            (Some(1), Some(&minor)) if (17..=23).contains(&minor) => Ok(GoBuild { minor, cgo: true, netdns: None }),
            (Some(_), Some(_)) => Err(format!("Go version `{v}`: not modelled; the model knows {known}")),
            _ => Err(bad()),
        }
    }

    /// resolv.conf options this release does not know (any one sends it to cgo).
    pub fn unknown_options(&self, rc: &ResolvConf) -> Vec<String> {
        let mut out: Vec<String> = rc.unknown.iter().filter(|o| !(self.minor >= 20 && o.as_str() == "trust-ad")).cloned().collect();
        if rc.edns0 && self.minor < 20 {
            out.push("edns0".into());
        }
        for (set, name) in [(rc.no_aaaa, "no-aaaa"), (rc.no_tld_query, "no-tld-query"), (rc.randomize_case.is_some(), "randomize-case")] {
            if set {
                out.push(name.into());
            }
        }
        out
    }

    /// Which resolver looks up `name`, and why. `nsswitch_hosts`: the sources of the `hosts:` line
    /// of /etc/nsswitch.conf, or None when the file does not exist.
    pub fn choose(&self, rc: &ResolvConf, nsswitch_hosts: Option<&str>, name: &str) -> (Choice, String) {
        if !self.cgo {
            return (Choice::Native, "built without cgo".into());
        }
        match self.netdns {
            Some(NetDns::Go) => return (Choice::Native, "GODEBUG=netdns=go".into()),
            Some(NetDns::Cgo) => return (Choice::Cgo, "GODEBUG=netdns=cgo".into()),
            None => {}
        }
        let unknown = self.unknown_options(rc);
        if !unknown.is_empty() {
            return (Choice::Cgo, format!("resolv.conf option(s) Go 1.{} does not know: {}", self.minor, unknown.join(" ")));
        }
        let bare = name.trim_end_matches('.');
        // By bytes: a name with a multi-byte character must not be sliced inside it.
        if bare.len() >= 6 && bare.as_bytes()[bare.len() - 6..].eq_ignore_ascii_case(b".local") {
            return (Choice::Cgo, "a .local name (RFC 6762)".into());
        }
        let Some(hosts) = nsswitch_hosts else { return (Choice::Native, "no /etc/nsswitch.conf".into()) };
        for source in hosts.split_whitespace() {
            let ok = match source {
                "files" | "dns" => true,
                s if s.starts_with("mdns") => true,
                "myhostname" => !matches!(bare.to_ascii_lowercase().as_str(), "localhost" | "_gateway") && !bare.ends_with(".localhost"),
                _ => false,
            };
            if !ok {
                return (Choice::Cgo, format!("nsswitch.conf hosts source `{source}`"));
            }
        }
        (Choice::Native, "resolv.conf and nsswitch.conf Go can handle".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rc(options: &str) -> ResolvConf {
        ResolvConf::parse(&format!(
            "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions {options}\n"
        ))
    }

    #[test]
    fn go_1_19_switches_to_cgo_on_options_it_does_not_know() {
        let go119 = GoBuild::for_version("1.19.13").expect("known");
        let go120 = GoBuild::for_version("go1.20").expect("known");
        let files_dns = Some("files dns");
        assert_eq!(go119.choose(&rc("ndots:5"), files_dns, "kubernetes.default").0, Choice::Native);
        for opts in ["ndots:5 edns0", "ndots:5 trust-ad", "ndots:5 no-aaaa", "ndots:5 edns0 trust-ad"] {
            let (c, why) = go119.choose(&rc(opts), files_dns, "kubernetes.default");
            assert_eq!(c, Choice::Cgo, "{opts}: {why}");
        }
        // 1.20 knows edns0 and trust-ad; no release knows glibc's no-aaaa.
        assert_eq!(go120.choose(&rc("ndots:5 edns0 trust-ad"), files_dns, "kubernetes.default").0, Choice::Native);
        assert_eq!(go120.choose(&rc("ndots:5 no-aaaa"), files_dns, "kubernetes.default").0, Choice::Cgo);
        // GODEBUG and a build without cgo decide before anything else.
        let forced = GoBuild { netdns: Some(NetDns::Go), ..go119 };
        assert_eq!(forced.choose(&rc("edns0"), files_dns, "x").0, Choice::Native);
        let static_build = GoBuild { cgo: false, ..go119 };
        assert_eq!(static_build.choose(&rc("edns0"), Some("files mymachines"), "a.local").0, Choice::Native);
    }

    #[test]
    fn local_names_and_unusual_nsswitch_sources_go_to_cgo() {
        let go = GoBuild::for_version("1.19").expect("known");
        let r = rc("ndots:5");
        assert_eq!(go.choose(&r, Some("files dns"), "kubernetes.default.svc.cluster.local.").0, Choice::Cgo);
        assert_eq!(go.choose(&r, None, "www.google.com").0, Choice::Native);
        assert_eq!(go.choose(&r, None, "éabcde").0, Choice::Native, "a multi-byte name is compared, not sliced");
        assert_eq!(go.choose(&r, None, "printer.LOCAL").0, Choice::Cgo);
        assert_eq!(go.choose(&r, Some("files mdns4_minimal dns"), "www.google.com").0, Choice::Native);
        assert_eq!(go.choose(&r, Some("files resolve dns"), "www.google.com").0, Choice::Cgo);
        assert_eq!(go.choose(&r, Some("files [NOTFOUND=return] dns"), "www.google.com").0, Choice::Cgo);
    }

    #[test]
    fn versions_outside_the_model_are_refused_with_the_known_range() {
        for v in ["1.16", "2.0", "x", "1"] {
            let e = GoBuild::for_version(v).expect_err(v);
            assert!(e.contains("Go 1.17 to 1.23") || e.contains("expected a release"), "{e}");
        }
    }
}
