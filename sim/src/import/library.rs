//! Which client library a container's image implies: a documented heuristic the user overrides.
//!
//! The C library comes from the base image (`alpine` means musl; a static image such as
//! `distroless/static` or `scratch` usually carries a static Go binary, which uses Go's own
//! resolver; anything else is taken as glibc). The runtime adds what sits in front of it: a JVM's
//! InetAddress cache (sources.md#java-cache), Node's 4-thread libuv pool (sources.md#node-threadpool).
//! A few programs bring their own resolver: Envoy (c-ares), PgBouncer (libevent's evdns, the
//! truncation story; sources.md#evdns). `--library PATTERN=LIB` rules come first.

use crate::spec::Library;

/// What the importer writes for a pod group, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Guess {
    pub library: Library,
    pub java: bool,
    pub node: bool,
    /// The rule that decided, for the scenario file's comment.
    pub why: String,
}

/// A user rule: an image containing `pattern` uses `library`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub pattern: String,
    pub library: Library,
}

impl std::str::FromStr for Rule {
    type Err = String;

    /// `PATTERN=LIB`, e.g. `acme/payments=go`.
    fn from_str(s: &str) -> Result<Rule, String> {
        let (p, l) = s.split_once('=').ok_or_else(|| format!("`{s}`: expected IMAGE-PATTERN=LIBRARY such as acme/api=go"))?;
        if p.is_empty() {
            return Err(format!("`{s}`: the image pattern is empty"));
        }
        Ok(Rule { pattern: p.to_ascii_lowercase(), library: l.parse()? })
    }
}

/// The repository's last path segment and the tag: `node` and `20-alpine` for
/// `docker.io/library/node:20-alpine@sha256:...`.
fn name_and_tag(image: &str) -> (&str, &str) {
    let image = image.split('@').next().unwrap_or(image);
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((n, t)) => (n, t),
        None => (last, ""),
    }
}

pub fn guess(image: &str, rules: &[Rule]) -> Guess {
    let img = image.to_ascii_lowercase();
    let (name, tag) = name_and_tag(&img);
    let java = ["openjdk", "eclipse-temurin", "amazoncorretto", "java", "jdk", "jre", "tomcat", "jetty", "wildfly"]
        .iter()
        .any(|j| name.contains(j) || img.contains("distroless/java"));
    let node = name == "node" || img.contains("distroless/nodejs");
    let g = |library: Library, why: String| Guess { library, java, node, why };
    if let Some(r) = rules.iter().find(|r| img.contains(&r.pattern)) {
        return g(r.library, format!("--library {}={}", r.pattern, r.library));
    }
    if name.contains("pgbouncer") {
        return g(Library::Evdns(crate::client::evdns::Version::V2_1), "PgBouncer resolves with libevent's evdns".into());
    }
    if name.contains("envoy") || name == "proxyv2" {
        return g(Library::CAres(crate::client::cares::Era::Current), "Envoy resolves with c-ares".into());
    }
    if name.contains("alpine") || tag.contains("alpine") {
        return g(Library::Musl(crate::client::musl::Version::CURRENT), "an Alpine image: musl".into());
    }
    if img.contains("distroless/static") || name == "scratch" || name == "static" {
        return g(Library::Go, "a static image: a static Go binary, Go's own resolver".into());
    }
    g(Library::Glibc(crate::client::glibc::Version::CURRENT), "any other image: glibc".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_image_decides_the_library_and_the_runtime_adds_its_cache_or_pool() {
        let lib = |i: &str| guess(i, &[]).library.to_string();
        assert_eq!(lib("node:20-alpine"), "musl-1.2.5");
        assert!(guess("node:20-alpine", &[]).node);
        assert_eq!(lib("gcr.io/distroless/static-debian12:nonroot"), "go");
        assert_eq!(lib("python:3.12-slim"), "glibc-2.36");
        assert_eq!(lib("edoburu/pgbouncer:1.18.0"), "evdns-2.1");
        assert_eq!(lib("docker.io/istio/proxyv2:1.22.0"), "c-ares-1.34");
        let j = guess("eclipse-temurin:21-jre-alpine", &[]);
        assert!(j.java && !j.node && j.library.to_string().starts_with("musl"));
        assert!(guess("gcr.io/distroless/java17-debian12", &[]).java);
        let rules = ["acme/payments=go-1.22".parse::<Rule>().expect("rule")];
        let g = guess("ghcr.io/acme/payments:3.1", &rules);
        assert_eq!((g.library.to_string(), g.why.as_str()), ("go-1.22".into(), "--library acme/payments=go-1.22"));
        assert!("acme".parse::<Rule>().is_err() && "x=nolib".parse::<Rule>().is_err());
    }
}
