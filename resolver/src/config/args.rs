//! Reading a directive's arguments: a cursor over its tokens, and the number, duration, type,
//! rcode and zone arguments, each error pointing at the token.

use std::time::Duration;

use crate::corefile::{ConfigError, Directive, Token};
use crate::wire;

use super::{ServerConfig, zone_wire};

/// Parses Go-style durations (`500ms`, `5s`, `1m30s`, `1h`), as CoreDNS does.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    if rest.bytes().all(|b| b.is_ascii_digit()) {
        // A bare number is seconds (CoreDNS accepts it for TTL-like durations).
        return rest.parse::<u64>().ok().map(Duration::from_secs);
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += Duration::from_secs_f64(value * mult);
    }
    Some(total)
}

pub(super) struct Args<'a> {
    d: &'a Directive,
    i: usize,
}

impl<'a> Args<'a> {
    pub(super) fn new(d: &'a Directive) -> Self {
        Args { d, i: 0 }
    }
    pub(super) fn next(&mut self) -> Option<&'a Token> {
        let t = self.d.args.get(self.i);
        self.i += 1;
        t
    }
    pub(super) fn peek(&self) -> Option<&'a Token> {
        self.d.args.get(self.i)
    }
    pub(super) fn rest(&mut self) -> &'a [Token] {
        let r = self.d.args.get(self.i..).unwrap_or(&[]);
        self.i = self.d.args.len();
        r
    }
    pub(super) fn need(&mut self, what: &str) -> Result<&'a Token, ConfigError> {
        let last = self.d.args.last().map(|t| &t.pos).unwrap_or(&self.d.name.pos);
        let pos = last.clone();
        self.next().ok_or_else(|| ConfigError::at(&pos, format!("{}: missing argument; expected {what}", self.d.name.text)))
    }
    pub(super) fn done(&self) -> Result<(), ConfigError> {
        match self.d.args.get(self.i) {
            Some(t) => Err(ConfigError::at(&t.pos, format!("{}: unexpected argument '{}'", self.d.name.text, t.text))),
            None => Ok(()),
        }
    }
    pub(super) fn no_block(&self) -> Result<(), ConfigError> {
        match self.d.block.first() {
            Some(b) => Err(ConfigError::at(&b.name.pos, format!("{}: takes no block; unexpected '{}'", self.d.name.text, b.name.text))),
            None => Ok(()),
        }
    }
}

pub(super) fn num<T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy>(
    t: &Token,
    what: &str,
    lo: T,
    hi: T,
) -> Result<T, ConfigError> {
    match t.text.parse::<T>() {
        Ok(v) if v >= lo && v <= hi => Ok(v),
        _ => Err(ConfigError::at(&t.pos, format!("bad value '{}'; expected {what} from {lo} to {hi}", t.text))),
    }
}

pub(super) fn dur(t: &Token, what: &str) -> Result<Duration, ConfigError> {
    parse_duration(&t.text).ok_or_else(|| ConfigError::at(&t.pos, format!("bad duration '{}'; expected {what} such as 5s or 1m", t.text)))
}

pub(super) fn unknown_option(d: &Directive, sub: &Directive, expected: &str) -> ConfigError {
    ConfigError::at(&sub.name.pos, format!("{}: unknown option '{}'; expected one of: {expected}", d.name.text, sub.name.text))
}

pub(super) fn zones_or_server(args: &[Token], s: &ServerConfig) -> Result<Vec<Vec<u8>>, ConfigError> {
    if args.is_empty() { Ok(s.zones_wire.clone()) } else { args.iter().map(zone_wire).collect() }
}

pub(super) fn parse_type(t: &Token) -> Result<Option<u16>, ConfigError> {
    let up = t.text.to_ascii_uppercase();
    Ok(Some(match up.as_str() {
        "ANY" => return Ok(None),
        "A" => wire::TYPE_A,
        "AAAA" => wire::TYPE_AAAA,
        "CNAME" => wire::TYPE_CNAME,
        "SRV" => wire::TYPE_SRV,
        "PTR" => wire::TYPE_PTR,
        "TXT" => wire::TYPE_TXT,
        "NS" => wire::TYPE_NS,
        "SOA" => wire::TYPE_SOA,
        "MX" => 15,
        "HINFO" => wire::TYPE_HINFO,
        "HTTPS" => 65,
        _ => return Err(ConfigError::at(&t.pos, format!("unknown record type '{}'", t.text))),
    }))
}

pub(super) fn parse_rcode(t: &Token) -> Result<u8, ConfigError> {
    Ok(match t.text.to_ascii_uppercase().as_str() {
        "NOERROR" => wire::RCODE_NOERROR,
        "FORMERR" => wire::RCODE_FORMERR,
        "SERVFAIL" => wire::RCODE_SERVFAIL,
        "NXDOMAIN" => wire::RCODE_NXDOMAIN,
        "NOTIMP" => wire::RCODE_NOTIMP,
        "REFUSED" => wire::RCODE_REFUSED,
        _ => {
            return Err(ConfigError::at(&t.pos, format!("unknown rcode '{}'; expected NOERROR, NXDOMAIN, SERVFAIL, REFUSED, ...", t.text)));
        }
    })
}
