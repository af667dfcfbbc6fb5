//! The README's library × version table, measured from the models themselves: each row runs its
//! model on a few probe lookups (the kubelet's resolv.conf, a zone with a truncated answer, a
//! silent server) and reports what went on the wire, so the table cannot drift from the code.
//! `cargo xtask client-table` writes it into README.md; a test checks it is current.

use std::time::Duration;

use super::harness::{Harness, Rule};
use super::{Api, Call, Family, Hints, Lib, Outcome, PROCESS_SOCKET, PodAddrs, Process, ResolvConf, Transport, build_model};

/// One row: the library as people name it, the releases it stands for, and the model to run.
struct Row {
    library: &'static str,
    releases: &'static str,
    lib: Lib,
    version: Option<&'static str>,
    api: Api,
}

const fn row(library: &'static str, releases: &'static str, lib: Lib, version: Option<&'static str>, api: Api) -> Row {
    Row { library, releases, lib, version, api }
}

const ROWS: &[Row] = &[
    row("glibc", "2.26-2.36+", Lib::Glibc, Some("2.36"), Api::Getaddrinfo),
    row("musl", "1.1.13-1.2.3", Lib::Musl, Some("1.2.3"), Api::Getaddrinfo),
    row("musl", "1.2.4+", Lib::Musl, Some("1.2.5"), Api::Getaddrinfo),
    row("Go, own resolver (static build, `netdns=go`)", "1.17-1.23", Lib::Go, None, Api::Getaddrinfo),
    row("Go, cgo-linked (default build)", "1.17-1.19", Lib::Go, Some("1.19"), Api::Getaddrinfo),
    row("Go, cgo-linked (default build)", "1.20-1.23", Lib::Go, Some("1.20"), Api::Getaddrinfo),
    row("c-ares `ares_gethostbyname`", "1.15-1.16", Lib::CAres, Some("1.16"), Api::Byname),
    row("c-ares `ares_getaddrinfo`", "1.17-1.19", Lib::CAres, Some("1.18.1"), Api::Getaddrinfo),
    row("c-ares `ares_getaddrinfo`", "1.20-1.30", Lib::CAres, Some("1.28"), Api::Getaddrinfo),
    row("c-ares `ares_getaddrinfo`", "1.32+", Lib::CAres, Some("1.34"), Api::Getaddrinfo),
    row("libevent `evdns_getaddrinfo`", "2.0-2.1", Lib::Evdns, Some("2.1.12"), Api::Getaddrinfo),
    row("libevent `evdns_getaddrinfo`", "2.2", Lib::Evdns, Some("2.2.1"), Api::Getaddrinfo),
];

const ZONE: &str = "$TTL 300
@ IN SOA ns.example. h.example. 1 7200 1800 86400 60
www.google.com. IN A 142.250.74.100
www.google.com. IN AAAA 2a00:1450:4007:80e::2004
v4only.example.com. IN A 10.1.0.1
";

fn zone() -> String {
    let mut z = ZONE.to_string();
    for i in 1..=100 {
        z.push_str(&format!("big.example.com. IN A 10.2.0.{i}\n"));
    }
    z
}

fn kubelet(options: &str) -> ResolvConf {
    ResolvConf::parse(&format!(
        "search default.svc.cluster.local svc.cluster.local cluster.local ec2.internal example.internal\nnameserver 10.96.0.10\noptions ndots:5{options}\n"
    ))
}

struct Probe<'a> {
    row: &'a Row,
}

impl Probe<'_> {
    fn run(
        &self,
        name: &str,
        family: Family,
        rc: &ResolvConf,
        rules: Vec<Rule>,
        process: Process,
    ) -> Result<(Vec<super::harness::Sent>, Option<Outcome>, Process), String> {
        let pod = PodAddrs(vec!["10.244.1.10".parse().map_err(|_| "ip")?, "127.0.0.1".parse().map_err(|_| "ip")?]);
        let call = Call { name: name.into(), hints: Hints { family, ..Hints::NULL }, pod };
        let mut lookup = build_model(self.row.lib, self.row.version, self.row.api, rc, &call, process)?;
        let mut h = Harness::new(&zone(), ".", rules)?;
        let (sent, out) = h.run(lookup.as_mut(), Duration::from_secs(300));
        Ok((sent, out, lookup.process()))
    }

    /// How A and AAAA go out, and on which sockets.
    fn pair(&self) -> Result<(String, String), String> {
        let (sent, _, _) = self.run("www.google.com.", Family::Unspec, &kubelet(""), vec![], Process::default())?;
        let first_at = |t: u16| sent.iter().find(|s| s.send.qtype == t).map(|s| s.at);
        let order = match (first_at(1), first_at(28)) {
            (Some(a), Some(b)) if a == b => "together",
            (Some(a), Some(b)) if a < b => "A, then AAAA",
            (Some(_), Some(_)) => "AAAA, then A",
            (None, Some(_)) => "AAAA search; A search only if it finds none",
            _ => "one type",
        };
        let (a, b) = (sent.iter().find(|s| s.send.qtype == 1), sent.iter().find(|s| s.send.qtype == 28));
        let socket = match (a, b) {
            _ if sent.iter().all(|s| s.send.socket >= PROCESS_SOCKET) => "one per server, kept by the process",
            (Some(a), Some(b)) if a.send.socket == b.send.socket => "one per lookup",
            _ => "one per query",
        };
        Ok((order.into(), socket.into()))
    }

    /// Queries for a short name, and for the same name with a trailing dot, under ndots:5.
    fn search(&self) -> Result<String, String> {
        let (bare, _, _) = self.run("www.google.com", Family::Unspec, &kubelet(""), vec![], Process::default())?;
        let (dotted, _, _) = self.run("www.google.com.", Family::Unspec, &kubelet(""), vec![], Process::default())?;
        Ok(format!("{} / {}", bare.len(), dotted.len()))
    }

    fn truncated(&self) -> Result<String, String> {
        let (sent, out, _) = self.run("big.example.com.", Family::Inet, &kubelet(""), vec![], Process::default())?;
        let tcp = sent.iter().any(|s| s.send.transport == Transport::Tcp);
        Ok(match (tcp, out.as_ref().is_some_and(Outcome::is_ok)) {
            (true, true) => "TCP",
            (false, true) => "keeps the truncated records",
            (_, false) => "error, no TCP",
        }
        .into())
    }

    /// When each query to a nameserver that never answers goes out, with the kubelet's defaults.
    fn silent(&self) -> Result<String, String> {
        let rule = Rule::Silent { server: "10.96.0.10".parse().map_err(|_| "ip")? };
        let (sent, _, _) = self.run("www.google.com.", Family::Inet, &kubelet(""), vec![rule], Process::default())?;
        let times: Vec<String> = sent.iter().map(|s| format!("{}", s.at.as_millis() as f64 / 1000.0)).collect();
        Ok(format!("{} s", times.join(", ")))
    }

    /// Whether the same lookup again, 10 s later in the same process, sends anything.
    fn cache(&self) -> Result<String, String> {
        let (_, _, process) = self.run("www.google.com.", Family::Unspec, &kubelet(""), vec![], Process::default())?;
        let (again, _, _) = self.run("www.google.com.", Family::Unspec, &kubelet(""), vec![], process)?;
        Ok(if again.is_empty() { "answers cached (TTL, at most 1 h)" } else { "none" }.into())
    }

    /// For Go's cgo-linked builds: the resolv.conf options that hand lookups to glibc.
    fn switches(&self) -> String {
        let Some(v) = self.row.version.filter(|_| self.row.lib == Lib::Go) else { return "-".into() };
        let Ok(build) = super::go_choice::GoBuild::for_version(v) else { return "-".into() };
        let mut out: Vec<String> = ["edns0", "trust-ad", "no-aaaa"]
            .iter()
            .filter(|o| {
                build.choose(&kubelet(&format!(" {o}")), Some(super::NSSWITCH_HOSTS), "www.google.com").0 == super::go_choice::Choice::Cgo
            })
            .map(|o| format!("`{o}`"))
            .collect();
        out.push("`.local` names".into());
        format!("glibc for {}", out.join(", "))
    }
}

/// The table in Markdown.
pub fn markdown() -> Result<String, String> {
    let mut out = String::from(
        "| Library | Releases | A and AAAA | Socket | Queries for `www.google.com` / `www.google.com.` (ndots:5) | Truncated answer | Silent server: queries at | Cache | Resolver choice |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in ROWS {
        let p = Probe { row };
        let (order, socket) = p.pair()?;
        out.push_str(&format!(
            "| {} | {} | {order} | {socket} | {} | {} | {} | {} | {} |\n",
            row.library,
            row.releases,
            p.search()?,
            p.truncated()?,
            p.silent()?,
            p.cache()?,
            p.switches()
        ));
    }
    Ok(out)
}

/// README.md holds the table between these markers; `cargo xtask client-table` rewrites it.
pub const BEGIN: &str = "<!-- client-table: generated by `cargo xtask client-table` from the models -->\n";
pub const END: &str = "<!-- client-table end -->";

/// `readme` with the table between the markers replaced by the current one.
pub fn update(readme: &str) -> Result<String, String> {
    let start = readme.find(BEGIN).ok_or("README.md has no client-table marker")? + BEGIN.len();
    let end = readme[start..].find(END).ok_or("README.md has no client-table end marker")? + start;
    Ok(format!("{}{}{}", &readme[..start], markdown()?, &readme[end..]))
}
