//! The cases: a lookup, the resolv.conf, the pod's IPv6, the faults, and the libraries each concerns.

use std::net::IpAddr;

use sim::client::harness::Rule;
use sim::client::{Family, Lib};

use super::{SECOND, SERVER, SILENT};

/// The zone both servers answer from (origin `.`).
pub(super) const ZONE: &str = "$TTL 300
@ IN SOA ns.example. h.example. 1 7200 1800 86400 60
www.google.com. IN A 142.250.74.100
www.google.com. IN AAAA 2a00:1450:4007:80e::2004
kubernetes.default.svc.cluster.local. IN A 10.96.0.1
txtonly.default.svc.cluster.local. IN TXT \"x\"
txtonly. IN A 10.9.9.9
";

/// big.example.com: 100 A records, over 512 and 1232 bytes.
pub(super) fn zone() -> String {
    let mut z = ZONE.to_string();
    for i in 1..=100 {
        z.push_str(&format!("big.example.com. IN A 10.2.0.{i}\n"));
    }
    for n in [24, 28, 48, 56, 82, 84, 160, 168] {
        for i in 1..=n {
            z.push_str(&format!("big{n}.example.com. IN A 10.3.{}.{}\n", i / 250, i % 250 + 1));
        }
    }
    z
}

/// The pod's IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum V6 {
    /// Disabled (sysctl disable_ipv6): no IPv6 address at all.
    Off,
    /// ::1 on lo, none on the pod's interface.
    Loopback,
    /// ::1 and a link-local fe80:: address on the pod's interface (no global one).
    LinkLocal,
    /// And a global address (2001:db8::2) with a default route.
    Global,
}

/// One case: a lookup, the resolv.conf options, the pod's IPv6, the server's faults.
pub(super) struct Case {
    pub(super) id: &'static str,
    pub(super) name: &'static str,
    pub(super) family: Family,
    pub(super) flags: &'static str,
    /// resolv.conf `options` (beside the kubelet's search list and our nameserver).
    pub(super) options: &'static str,
    pub(super) ipv6: V6,
    pub(super) rules: Vec<Rule>,
    pub(super) libs: &'static [Lib],
    /// The resolv.conf `nameserver` lines, in order.
    pub(super) nameservers: &'static [&'static str],
    /// Programs (by `Program::name`) left out, each for a reason given where the case is listed.
    pub(super) except: &'static [&'static str],
}

impl Case {
    pub(super) fn nameservers(self, nameservers: &'static [&'static str]) -> Case {
        Case { nameservers, ..self }
    }
    pub(super) fn except(self, except: &'static [&'static str]) -> Case {
        Case { except, ..self }
    }
}

pub(super) const ALL: &[Lib] = &[Lib::Glibc, Lib::Musl, Lib::Go, Lib::GoCgo, Lib::CAres, Lib::Evdns];
/// The libraries whose call takes no getaddrinfo flags from the program here.
const NO_FLAGS: &[Lib] = &[Lib::Go, Lib::GoCgo, Lib::CAres, Lib::Evdns];

/// The model's side of the SILENT nameserver (the recorder never answers there anyway).
pub(super) fn silent() -> Rule {
    Rule::Silent { server: IpAddr::from([10, 203, 0, 4]) }
}

pub(super) fn drop_rule(qname: &str, qtype: u16, count: Option<u32>) -> Rule {
    Rule::Drop { qname: qname.into(), qtype, count }
}

pub(super) fn cases() -> Vec<Case> {
    let c = |id, name, family, flags, options, ipv6, rules, libs| Case {
        id,
        name,
        family,
        flags,
        options,
        ipv6,
        rules,
        libs,
        nameservers: &[SERVER],
        except: &[],
    };
    vec![
        // sources.md#kubelet-resolv-conf, sources.md#incident-s1: the kubelet's resolv.conf turns one name into 12 queries.
        c("ndots5-null-hints", "www.google.com", Family::Unspec, "", "ndots:5", V6::Off, vec![], ALL),
        // S3: AI_ADDRCONFIG without IPv6 halves it; with a link-local IPv6 address it does not (glibc).
        c("addrconfig-no-ipv6", "www.google.com", Family::Unspec, "addrconfig", "ndots:5", V6::Off, vec![], &[Lib::Glibc, Lib::Musl]),
        c(
            "addrconfig-loopback-v6",
            "www.google.com",
            Family::Unspec,
            "addrconfig",
            "ndots:5",
            V6::Loopback,
            vec![],
            &[Lib::Glibc, Lib::Musl],
        ),
        c(
            "addrconfig-link-local",
            "www.google.com",
            Family::Unspec,
            "addrconfig",
            "ndots:5",
            V6::LinkLocal,
            vec![],
            &[Lib::Glibc, Lib::Musl],
        ),
        // The trailing dot: the name as is, nothing else (evdns walks the search list all the same).
        c("trailing-dot", "www.google.com.", Family::Unspec, "", "ndots:5", V6::Off, vec![], ALL),
        c(
            "inet-only",
            "www.google.com",
            Family::Inet,
            "",
            "ndots:5",
            V6::Off,
            vec![],
            &[Lib::Glibc, Lib::Musl, Lib::Go, Lib::GoCgo, Lib::CAres, Lib::Evdns],
        ),
        // A cluster name found on the second search domain.
        c("search-hit", "kubernetes.default", Family::Unspec, "", "ndots:5", V6::Off, vec![], ALL),
        // NODATA on a search name goes on to the next name.
        c("nodata-goes-on", "txtonly", Family::Unspec, "", "ndots:5", V6::Off, vec![], ALL),
        // A lost AAAA answer: the retransmission after `timeout`, and what each library does next.
        c(
            "lost-aaaa-once",
            "www.google.com.",
            Family::Unspec,
            "",
            "ndots:5 timeout:1 attempts:2",
            V6::Off,
            vec![drop_rule("www.google.com.", 28, Some(1))],
            ALL,
        ),
        // A server that never answers: every retry, then the error.
        c(
            "silent-server",
            "www.google.com.",
            Family::Unspec,
            "",
            "ndots:5 timeout:1 attempts:2",
            V6::Off,
            vec![drop_rule("www.google.com.", 0, None)],
            ALL,
        )
        // c-ares takes 75 s to give up here (it ignores the options); its by-name call sends the
        // same packets (1.17+: ares_getaddrinfo underneath), so it runs once.
        .except(&["c-ares:byname"]),
        // SERVFAIL for a search name: the walk goes on (glibc, Go) or stops (c-ares 1.18 with
        // ECONNREFUSED once every try got SERVFAIL; musl, after re-sending
        // at once 2 × nqueries times per retry window; A only here, as which of a pair's answers
        // comes back first, and so gets the re-sends, is a race on a real machine).
        c(
            "servfail-search",
            "kubernetes.default",
            Family::Unspec,
            "",
            "ndots:5",
            V6::Off,
            vec![Rule::ServFail { qname: "kubernetes.default.default.svc.cluster.local.".into(), qtype: 0 }],
            &[Lib::Glibc, Lib::Go, Lib::GoCgo, Lib::CAres, Lib::Evdns],
        ),
        c(
            "servfail-search-inet",
            "kubernetes.default",
            Family::Inet,
            "",
            "ndots:5",
            V6::Off,
            vec![Rule::ServFail { qname: "kubernetes.default.default.svc.cluster.local.".into(), qtype: 0 }],
            &[Lib::Glibc, Lib::Musl, Lib::Go, Lib::CAres, Lib::Evdns],
        ),
        c("single-request", "www.google.com.", Family::Unspec, "", "ndots:5 single-request", V6::Off, vec![], &[Lib::Glibc, Lib::Go]),
        c("use-vc", "www.google.com.", Family::Unspec, "", "ndots:5 use-vc", V6::Off, vec![], ALL),
        // A truncated answer: TCP (glibc, Go, musl from 1.2.4) or the truncated records (musl before).
        c(
            "truncated-answer",
            "big.example.com.",
            Family::Inet,
            "",
            "ndots:5",
            V6::Off,
            vec![],
            &[Lib::Glibc, Lib::Musl, Lib::Go, Lib::CAres, Lib::Evdns],
        ),
        // glibc's getaddrinfo buffer: addresses that do not fit send the whole lookup again.
        c("nss-buffer-unspec-24", "big24.example.com.", Family::Unspec, "", "ndots:5", V6::Off, vec![], &[Lib::Glibc, Lib::GoCgo]),
        c("nss-buffer-unspec-28", "big28.example.com.", Family::Unspec, "", "ndots:5", V6::Off, vec![], &[Lib::Glibc, Lib::GoCgo]),
        c("nss-buffer-unspec-48", "big48.example.com.", Family::Unspec, "", "ndots:5", V6::Off, vec![], &[Lib::Glibc]),
        c("nss-buffer-unspec-56", "big56.example.com.", Family::Unspec, "", "ndots:5", V6::Off, vec![], &[Lib::Glibc]),
        c("nss-buffer-inet-82", "big82.example.com.", Family::Inet, "", "ndots:5", V6::Off, vec![], &[Lib::Glibc]),
        c("nss-buffer-inet-84", "big84.example.com.", Family::Inet, "", "ndots:5", V6::Off, vec![], &[Lib::Glibc]),
        c("nss-buffer-inet-160", "big160.example.com.", Family::Inet, "", "ndots:5", V6::Off, vec![], &[Lib::Glibc]),
        c("nss-buffer-inet-168", "big168.example.com.", Family::Inet, "", "ndots:5", V6::Off, vec![], &[Lib::Glibc]),
        c("ndots2", "www.google.com", Family::Unspec, "", "ndots:2", V6::Off, vec![], ALL),
        // The first nameserver never answers: each query waits out `timeout` there, then the next.
        // evdns_getaddrinfo is left out: its A retransmission is answered in the very millisecond
        // its AAAA query to the silent nameserver times out, and which is handled first decides
        // the nameserver of everything after (evdns:byname checks the same code in one request).
        c("silent-first-ns", "www.google.com.", Family::Unspec, "", "ndots:5 timeout:1 attempts:2", V6::Off, vec![silent()], ALL)
            .nameservers(&[SILENT, SERVER])
            .except(&["evdns"]),
        // `rotate` across a search walk: which nameserver each query goes to. evdns_getaddrinfo is
        // left out: its A and AAAA searches each take the next nameserver for their next name in
        // the order their answers are handled, and both answers come in the same millisecond. Go's
        // own resolver too: A and AAAA are two goroutines, and whichever starts first takes the
        // first server (seen both ways on the same machine).
        c("rotate", "kubernetes.default", Family::Unspec, "", "ndots:5 rotate", V6::Off, vec![], ALL)
            .nameservers(&[SERVER, SECOND])
            .except(&["evdns", "go", "go:default"]),
        c("two-ns", "kubernetes.default", Family::Unspec, "", "ndots:5", V6::Off, vec![], ALL)
            .nameservers(&[SERVER, SECOND])
            .except(&["evdns"]),
        // One try, one second: how soon each library gives up.
        c(
            "timeout1-attempts1",
            "www.google.com.",
            Family::Unspec,
            "",
            "ndots:5 timeout:1 attempts:1",
            V6::Off,
            vec![drop_rule("www.google.com.", 0, None)],
            ALL,
        )
        // c-ares ignores both options: silent-server already shows its 75 s.
        .except(&["c-ares", "c-ares:byname"]),
        // EDNS0: who advertises what size, and a truncated answer with it.
        c("edns0", "www.google.com.", Family::Unspec, "", "ndots:5 edns0", V6::Off, vec![], ALL),
        c(
            "truncated-edns0",
            "big.example.com.",
            Family::Inet,
            "",
            "ndots:5 edns0",
            V6::Off,
            vec![],
            &[Lib::Glibc, Lib::Musl, Lib::Go, Lib::CAres, Lib::Evdns],
        ),
        // Options Go 1.19 does not know send a default (cgo-linked) Go program to glibc; so does a
        // name ending in .local (go:default; go and go-cgo are forced by GODEBUG).
        c("no-aaaa", "www.google.com.", Family::Unspec, "", "ndots:5 no-aaaa", V6::Off, vec![], &[Lib::Glibc, Lib::Go]),
        c("trust-ad", "www.google.com.", Family::Unspec, "", "ndots:5 trust-ad", V6::Off, vec![], &[Lib::Glibc, Lib::Go]),
        c("local-name", "kubernetes.default.svc.cluster.local", Family::Unspec, "", "ndots:5", V6::Off, vec![], &[Lib::Glibc, Lib::Go]),
        // A pod with a global IPv6 address: AI_ADDRCONFIG asks for AAAA; ares_gethostbyname returns IPv6.
        c("addrconfig-global-v6", "www.google.com", Family::Unspec, "addrconfig", "ndots:5", V6::Global, vec![], &[Lib::Glibc, Lib::Musl]),
        // The other libraries in each IPv6 state (no AI_ADDRCONFIG to give them; ares_gethostbyname
        // picks its family by what the pod can reach).
        c("loopback-v6", "www.google.com.", Family::Unspec, "", "ndots:5", V6::Loopback, vec![], NO_FLAGS),
        c("link-local-v6", "www.google.com.", Family::Unspec, "", "ndots:5", V6::LinkLocal, vec![], NO_FLAGS),
        c("global-v6", "www.google.com.", Family::Unspec, "", "ndots:5", V6::Global, vec![], NO_FLAGS),
    ]
}
