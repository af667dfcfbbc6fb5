//! The real programs (C on glibc, musl, c-ares and libevent; Go) and what their output means.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use sim::client::{Api, Lib, Outcome};

use crate::sh;

/// A real program this machine built: the library, the call it makes, the command, its environment.
pub(super) struct Program {
    pub(super) lib: Lib,
    pub(super) api: Api,
    pub(super) cmd: String,
    pub(super) env: Vec<(&'static str, &'static str)>,
    /// Go without GODEBUG: the program picks its resolver (the model by `go_choice` at this
    /// machine's Go release).
    pub(super) go_default: bool,
}

impl Program {
    pub(super) fn new(lib: Lib, api: Api, cmd: String, env: Vec<(&'static str, &'static str)>) -> Program {
        Program { lib, api, cmd, env, go_default: false }
    }
    /// `glibc`, `c-ares`, `c-ares:byname`, `go:default`.
    pub(super) fn name(&self) -> String {
        match (self.api, self.go_default) {
            (_, true) => format!("{}:default", lib_name(self.lib)),
            (Api::Getaddrinfo, false) => lib_name(self.lib),
            (Api::Byname, false) => format!("{}:byname", lib_name(self.lib)),
        }
    }
    /// The API argument of libcheck/ares.c and libcheck/evdns.c.
    pub(super) fn api_arg(&self) -> Option<&'static str> {
        match (self.lib, self.api) {
            (Lib::CAres, Api::Byname) => Some("gethostbyname"),
            (Lib::Evdns, Api::Byname) => Some("resolve"),
            _ => None,
        }
    }
}

/// The real programs this machine can build.
pub(super) fn build_programs(dir: &Path) -> Vec<Program> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("libcheck");
    let gai = src.join("gai.c").to_string_lossy().into_owned();
    let mut out = Vec::new();
    let path = |n: &str| dir.join(n).to_string_lossy().into_owned();
    match sh(&["gcc", "-O1", "-o", &path("gai-glibc"), &gai]) {
        Ok(_) => out.push(Program::new(Lib::Glibc, Api::Getaddrinfo, path("gai-glibc"), vec![])),
        Err(e) => eprintln!("client-check: glibc skipped: {e}"),
    }
    match sh(&["musl-gcc", "-O1", "-static", "-o", &path("gai-musl"), &gai]) {
        Ok(_) => out.push(Program::new(Lib::Musl, Api::Getaddrinfo, path("gai-musl"), vec![])),
        Err(e) => eprintln!("client-check: musl skipped: {e}"),
    }
    let ares = src.join("ares.c").to_string_lossy().into_owned();
    match sh(&["gcc", "-O1", "-o", &path("ares"), &ares, "-lcares"]) {
        Ok(_) => {
            out.push(Program::new(Lib::CAres, Api::Getaddrinfo, path("ares"), vec![]));
            out.push(Program::new(Lib::CAres, Api::Byname, path("ares"), vec![]));
        }
        Err(e) => eprintln!("client-check: c-ares skipped: {e}"),
    }
    let evdns = src.join("evdns.c").to_string_lossy().into_owned();
    match sh(&["gcc", "-O1", "-o", &path("evdns"), &evdns, "-levent"]) {
        Ok(_) => {
            out.push(Program::new(Lib::Evdns, Api::Getaddrinfo, path("evdns"), vec![]));
            out.push(Program::new(Lib::Evdns, Api::Byname, path("evdns"), vec![]));
        }
        Err(e) => eprintln!("client-check: evdns skipped: {e}"),
    }
    let gocache = path("gocache");
    let go = Command::new("go")
        .args(["build", "-o", &path("lookup-go"), &src.join("lookup.go").to_string_lossy()])
        .env("GOCACHE", &gocache)
        .env("CGO_ENABLED", "1")
        .output();
    match go {
        Ok(o) if o.status.success() => {
            out.push(Program::new(Lib::Go, Api::Getaddrinfo, path("lookup-go"), vec![("GODEBUG", "netdns=go")]));
            out.push(Program::new(Lib::GoCgo, Api::Getaddrinfo, path("lookup-go"), vec![("GODEBUG", "netdns=cgo")]));
            // The model assumes nsswitch.conf's `hosts: files dns`; elsewhere the program's choice differs.
            let hosts = std::fs::read_to_string("/etc/nsswitch.conf")
                .ok()
                .and_then(|t| t.lines().find_map(|l| l.strip_prefix("hosts:").map(|h| h.split_whitespace().collect::<Vec<_>>().join(" "))));
            if hosts.as_deref() == Some(sim::client::NSSWITCH_HOSTS) {
                out.push(Program { go_default: true, ..Program::new(Lib::Go, Api::Getaddrinfo, path("lookup-go"), vec![("GODEBUG", "")]) });
            } else {
                eprintln!(
                    "client-check: go:default skipped: /etc/nsswitch.conf hosts is {hosts:?}, the model assumes `{}`",
                    sim::client::NSSWITCH_HOSTS
                );
            }
        }
        Ok(o) => eprintln!("client-check: Go skipped: go build: {}", String::from_utf8_lossy(&o.stderr).trim()),
        Err(e) => eprintln!("client-check: Go skipped: {e}"),
    }
    out
}

/// The library's name as `ndots-sim lookup --lib` spells it.
pub(super) fn lib_name(l: Lib) -> String {
    use clap::ValueEnum;
    l.to_possible_value().map_or_else(|| format!("{l:?}"), |v| v.get_name().to_string())
}

/// The version of each library on this machine, for the model.
pub(super) fn versions() -> (Option<String>, Option<String>) {
    let glibc = sh(&["ldd", "--version"]).ok().and_then(|o| o.lines().next().and_then(|l| l.split_whitespace().last()).map(str::to_string));
    let musl = Command::new("/lib/ld-musl-x86_64.so.1").output().ok().and_then(|o| {
        let e = String::from_utf8_lossy(&o.stderr).into_owned();
        e.lines().find_map(|l| l.strip_prefix("Version ")).map(|v| v.trim().to_string())
    });
    (glibc, musl)
}

/// A Debian package's upstream release (`1.18.1` from `1.18.1-3`, `2.1.12` from
/// `2.1.12-stable-8`), for the model: libc-ares2, libevent-2.1-7.
pub(super) fn package_version(package: &str) -> Option<String> {
    let v = sh(&["dpkg-query", "-W", "-f=${Version}", package]).ok()?;
    Some(v.trim().split(['-', '+', '~']).next()?.to_string())
}

/// What the application saw, as a comparable token: sorted addresses or the error's name as the
/// program prints it.
pub(super) fn result_of(program: &Program, out: &Option<Outcome>) -> String {
    let err = match out {
        Some(Outcome::Addrs(a)) => {
            let mut v: Vec<String> = a.iter().map(IpAddr::to_string).collect();
            v.sort();
            v.dedup();
            return v.join(" ");
        }
        Some(e) => e,
        None => return "no result".into(),
    };
    let name = match (program.lib, program.api, err) {
        (Lib::CAres, _, Outcome::NoName) => "ARES_ENOTFOUND".into(),
        (Lib::CAres, _, Outcome::NoData) => "ARES_ENODATA".into(),
        (Lib::CAres, _, Outcome::Again) => "ARES_ETIMEOUT".into(),
        // evdns_getaddrinfo: EAI_NONAME for NXDOMAIN, EAI_FAIL for every other error.
        (Lib::Evdns, Api::Getaddrinfo, Outcome::NoName) => "EVUTIL_EAI_NONAME".into(),
        (Lib::Evdns, Api::Getaddrinfo, _) => "EVUTIL_EAI_FAIL".into(),
        (Lib::Evdns, Api::Byname, Outcome::NoName) => "DNS_ERR_NOTEXIST".into(),
        (Lib::Evdns, Api::Byname, Outcome::NoData) => "DNS_ERR_NODATA".into(),
        (Lib::Evdns, Api::Byname, Outcome::Again) => "DNS_ERR_TIMEOUT".into(),
        (Lib::Go | Lib::GoCgo, _, Outcome::NoName | Outcome::NoData) => "notfound".into(),
        (Lib::Go | Lib::GoCgo, _, Outcome::Again) => "timeout".into(),
        (_, _, Outcome::NoName) => "EAI_NONAME".into(),
        (_, _, Outcome::NoData) => "EAI_NODATA".into(),
        (_, _, Outcome::Again) => "EAI_AGAIN".into(),
        (_, _, Outcome::Fail(e)) => e.clone(),
        (_, _, Outcome::Addrs(_)) => String::new(),
    };
    format!("error {name}")
}

pub(super) fn real_result(stdout: &str) -> String {
    if let Some(e) = stdout.lines().find(|l| l.starts_with("error ")) {
        return e.trim().to_string();
    }
    let mut v: Vec<String> = stdout.lines().map(|l| l.trim().trim_start_matches("::ffff:").to_string()).filter(|l| !l.is_empty()).collect();
    v.sort();
    v.dedup();
    v.join(" ")
}
