//! The `cache` plugin's configuration, with CoreDNS's defaults (sources.md#coredns-cache).

use std::time::Duration;

use crate::corefile::{ConfigError, Directive, Token};

use super::args::{Args, dur, num, unknown_option, zones_or_server};
use super::{ServerConfig, zone_wire};

#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    pub zones: Vec<Vec<u8>>,
    pub success: CachePart,
    pub denial: CachePart,
    /// `prefetch AMOUNT [DURATION [PERCENTAGE%]]`: off by default (amount 0).
    pub prefetch: Option<Prefetch>,
    /// `serve_stale [DURATION]`: off by default; duration 1h when on (sources.md#coredns-cache).
    pub serve_stale: Option<ServeStale>,
    /// SERVFAIL cached 5 s by default, at most 5 min; 0 disables.
    pub servfail_ttl: Duration,
    pub disable_success: Vec<Vec<u8>>,
    pub disable_denial: Vec<Vec<u8>>,
    pub keepttl: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CachePart {
    /// 9984 entries by default, minimum 1024 (sources.md#coredns-cache).
    pub capacity: usize,
    /// 3600 s success, 1800 s denial.
    pub max_ttl: u32,
    /// 5 s for both.
    pub min_ttl: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prefetch {
    pub amount: u32,
    /// Default 1 minute.
    pub duration: Duration,
    /// Default 10 %.
    pub percentage: u8,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServeStale {
    pub duration: Duration,
    /// TTL on a stale answer; CoreDNS default 0 (sources.md#coredns-cache).
    pub response_ttl: u32,
}

pub(super) fn parse_cache(d: &Directive, s: &ServerConfig) -> Result<CacheConfig, ConfigError> {
    let mut a = Args::new(d);
    // sources.md#coredns-cache: success 9984/3600/5, denial 9984/1800/5, servfail 5s.
    let mut c = CacheConfig {
        zones: Vec::new(),
        success: CachePart { capacity: 9984, max_ttl: 3600, min_ttl: 5 },
        denial: CachePart { capacity: 9984, max_ttl: 1800, min_ttl: 5 },
        prefetch: None,
        serve_stale: None,
        servfail_ttl: Duration::from_secs(5),
        disable_success: Vec::new(),
        disable_denial: Vec::new(),
        keepttl: false,
    };
    if let Some(t) = a.peek()
        && t.text.bytes().all(|b| b.is_ascii_digit())
    {
        a.next();
        let ttl = num(t, "a TTL in seconds", 0u32, u32::MAX)?;
        // `cache 30` caps both parts at 30 s; a cap only lowers.
        c.success.max_ttl = ttl;
        c.denial.max_ttl = ttl;
    }
    c.zones = zones_or_server(a.rest(), s)?;
    for sub in &d.block {
        let mut sa = Args::new(sub);
        match sub.name.text.as_str() {
            "success" | "denial" => {
                let cap = num(sa.need("a capacity")?, "a capacity", 0usize, 1 << 26)?;
                let part = if sub.name.text == "success" { &mut c.success } else { &mut c.denial };
                // CoreDNS: minimum 1024 entries (sources.md#coredns-cache).
                part.capacity = cap.max(1024);
                if let Some(t) = sa.next() {
                    part.max_ttl = num(t, "a TTL in seconds", 0u32, u32::MAX)?;
                }
                if let Some(t) = sa.next() {
                    part.min_ttl = num(t, "a minimum TTL in seconds", 0u32, u32::MAX)?;
                }
                sa.done()?;
            }
            "prefetch" => {
                let amount = num(sa.need("an amount")?, "a prefetch amount", 1u32, u32::MAX)?;
                let mut p = Prefetch { amount, duration: Duration::from_secs(60), percentage: 10 };
                if let Some(t) = sa.next() {
                    p.duration = dur(t, "a prefetch duration")?;
                }
                if let Some(t) = sa.next() {
                    let pct = t
                        .text
                        .strip_suffix('%')
                        .ok_or_else(|| ConfigError::at(&t.pos, "prefetch: expected a percentage with '%', such as 10%"))?;
                    let tok = Token { text: pct.to_string(), ..t.clone() };
                    p.percentage = num(&tok, "a percentage", 10u8, 90u8)?;
                }
                sa.done()?;
                c.prefetch = Some(p);
            }
            "serve_stale" => {
                let mut st = ServeStale { duration: Duration::from_secs(3600), response_ttl: 0 };
                if let Some(t) = sa.next() {
                    st.duration = dur(t, "a serve_stale duration")?;
                }
                if let Some(t) = sa.next() {
                    if t.text != "immediate" {
                        return Err(ConfigError::at(&t.pos, format!("serve_stale: unsupported mode '{}'; expected immediate", t.text)));
                    }
                    if let Some(t) = sa.next() {
                        st.response_ttl = num(t, "a response TTL", 0u32, 86400)?;
                    }
                }
                sa.done()?;
                c.serve_stale = Some(st);
            }
            "servfail" => {
                let t = sa.need("a duration")?;
                let v = dur(t, "a servfail duration")?;
                if v > Duration::from_secs(300) {
                    return Err(ConfigError::at(&t.pos, "servfail: at most 5m"));
                }
                c.servfail_ttl = v;
                sa.done()?;
            }
            "disable" => {
                let which = sa.need("success or denial")?;
                let zones = sa.rest().iter().map(zone_wire).collect::<Result<Vec<_>, _>>()?;
                let zones = if zones.is_empty() { c.zones.clone() } else { zones };
                match which.text.as_str() {
                    "success" => c.disable_success.extend(zones),
                    "denial" => c.disable_denial.extend(zones),
                    _ => return Err(ConfigError::at(&which.pos, format!("disable: '{}'; expected success or denial", which.text))),
                }
            }
            "keepttl" => {
                sa.done()?;
                c.keepttl = true;
            }
            _ => return Err(unknown_option(d, sub, "success, denial, prefetch, serve_stale, servfail, disable, keepttl")),
        }
    }
    Ok(c)
}
