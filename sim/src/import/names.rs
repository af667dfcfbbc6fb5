//! The names a workload looks up, read from its containers' environment: URLs (`postgres://u@db:5432/x`),
//! `host:port` pairs and bare host names. A dump carries no traffic, so this is a guess the user
//! edits; it keeps only what is clearly a name: a Service of the cluster (as written: `redis`,
//! `redis.cache`, `redis.cache.svc.cluster.local`) or a name under a top-level domain the simulated
//! internet serves. Values with upper case (class names), IP addresses, and file names are skipped.

use std::collections::{BTreeMap, BTreeSet};

/// The top-level domains the default internet zone answers (`spec::DEFAULT_INTERNET`).
pub const TLDS: &[&str] = &[
    "com", "net", "org", "io", "dev", "app", "ai", "co", "cloud", "info", "biz", "me", "tv", "xyz", "us", "uk", "de", "fr", "nl", "eu",
    "ch", "se", "no", "jp", "cn", "in", "au", "ca", "br",
];

/// Services by namespace, to tell `redis` or `redis.cache` (a Service) from a word.
pub type Services = BTreeMap<String, BTreeSet<String>>;

/// The host part of one token of an environment value, if it has the shape of one.
fn host_of(token: &str) -> Option<&str> {
    let t = token.trim_matches(|c: char| c == '"' || c == '\'');
    let t = t.split_once("://").map_or(t, |(_, rest)| rest);
    let t = t.rsplit_once('@').map_or(t, |(_, host)| host);
    let t = t.split(['/', '?', '#']).next()?;
    let t = match t.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        Some(_) => return None,
        None => t,
    };
    let t = t.strip_suffix('.').unwrap_or(t);
    let ok = !t.is_empty()
        && t.len() <= 253
        && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && t.split('.').all(|l| !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-'))
        && t.bytes().any(|b| b.is_ascii_lowercase())
        && t.parse::<std::net::IpAddr>().is_err();
    ok.then_some(t)
}

/// Whether `host`, looked up from a pod in `namespace`, is a name worth simulating.
fn is_name(host: &str, namespace: &str, domain: &str, services: &Services) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    let svc_in = |ns: &str, svc: &str| services.get(ns).is_some_and(|s| s.contains(svc));
    match labels[..] {
        [svc] => svc_in(namespace, svc),
        [svc, ns] if svc_in(ns, svc) => true,
        [svc, ns, "svc", ..] => {
            let rest = labels[2..].join(".");
            (rest == "svc" || rest == format!("svc.{domain}")) && services.contains_key(ns) && svc_in(ns, svc)
        }
        _ => labels.last().is_some_and(|tld| TLDS.contains(tld)),
    }
}

/// The names in a set of environment values, in the order they appear, without repeats.
pub fn from_env<'a>(values: impl IntoIterator<Item = &'a str>, namespace: &str, domain: &str, services: &Services) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        for token in v.split([',', ';', ' ', '\t', '\n']) {
            if let Some(h) = host_of(token)
                && is_name(h, namespace, domain, services)
                && !out.iter().any(|o| o == h)
            {
                out.push(h.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_host_ports_and_service_names_are_names_and_the_rest_is_not() {
        let mut services = Services::new();
        services.entry("shop".into()).or_default().insert("redis".into());
        services.entry("billing".into()).or_default().insert("ledger".into());
        let env = [
            "postgres://app:secret@orders.abc123.eu-west-1.rds.amazonaws.com:5432/orders?sslmode=require",
            "redis:6379",
            "http://ledger.billing:8080/v1",
            "ledger.billing.svc.cluster.local",
            "https://api.stripe.com/v1, https://hooks.slack.com/x",
            "10.0.0.7:9092",
            "config.yaml",
            "com.acme.Main",
            "true",
            "info",
            "web",
            "kafka.billing:9092",
        ];
        assert_eq!(
            from_env(env, "shop", "cluster.local", &services),
            [
                "orders.abc123.eu-west-1.rds.amazonaws.com",
                "redis",
                "ledger.billing",
                "ledger.billing.svc.cluster.local",
                "api.stripe.com",
                "hooks.slack.com"
            ]
        );
    }
}

#[cfg(test)]
mod zone_tests {
    #[test]
    fn every_tld_the_importer_accepts_is_one_the_default_internet_answers() {
        let zone = resolver::zone::Zone::parse(crate::spec::DEFAULT_INTERNET, ".").expect("zone");
        for tld in super::TLDS {
            let name = resolver::wire::name_from_str(&format!("some-host.{tld}")).expect("name");
            assert_eq!(zone.lookup(&name, resolver::wire::TYPE_A).answers.len(), 1, "{tld}");
        }
    }
}
