//! The `log` plugin: which answers are logged (name scopes, response classes) and the line written
//! for each, in CoreDNS's format (sources.md#coredns-misc-plugins).
//!
//! `log [NAMES...] [FORMAT] { class CLASSES... }`: with two or more arguments, a last one holding a
//! `{` is the format (`{common}` and `{combined}` expand to CoreDNS's two formats); the others are
//! name scopes (default `.`). Classes: `success`, `denial` (NXDOMAIN or NODATA), `error` (any other
//! rcode), `all` (the default). The core renders the line (`Server::poll_query_log`); the driver
//! writes it to standard output after `[INFO] `, as CoreDNS does.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use crate::wire;

/// CoreDNS's `{common}`.
pub const COMMON: &str =
    r#"{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" {rcode} {>rflags} {rsize} {duration}"#;

const CLASS_SUCCESS: u8 = 1;
const CLASS_DENIAL: u8 = 2;
const CLASS_ERROR: u8 = 4;
const CLASS_ALL: u8 = 7;

/// One `log` directive's rule for one name scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRule {
    /// Wire-format name: queries at or under it are logged.
    pub scope: Vec<u8>,
    /// The format with `{common}`/`{combined}` expanded.
    pub format: String,
    classes: u8,
}

/// Reads one `log` directive: its arguments and its `class` lines. `zone` turns a name into wire
/// format (the caller's, so errors read as the Corefile's others do).
pub fn rules(args: &[String], classes: &[Vec<String>], zone: impl Fn(&str) -> Result<Vec<u8>, String>) -> Result<Vec<LogRule>, String> {
    let (names, format): (&[String], String) = match args {
        [] => (&[], COMMON.to_string()),
        [one] if one.contains('{') => {
            return Err(format!(
                "a single argument is a name to log, not a format (CoreDNS reads it so); to log everything in this format write `log . {one}`"
            ));
        }
        [..] if args.len() >= 2 && args[args.len() - 1].contains('{') => {
            let f = &args[args.len() - 1];
            (&args[..args.len() - 1], f.replace("{common}", COMMON).replace("{combined}", &format!("{COMMON} \"{{>opcode}}\"")))
        }
        _ => (args, COMMON.to_string()),
    };
    let mut mask = 0;
    for line in classes {
        if line.is_empty() {
            return Err("class needs at least one of: success, denial, error, all".into());
        }
        for c in line {
            mask |= match c.as_str() {
                "success" => CLASS_SUCCESS,
                "denial" => CLASS_DENIAL,
                "error" => CLASS_ERROR,
                "all" => CLASS_ALL,
                other => return Err(format!("unknown class \"{other}\"; expected success, denial, error or all")),
            };
        }
    }
    let classes = if mask == 0 { CLASS_ALL } else { mask };
    let scopes = if names.is_empty() { vec![vec![0u8]] } else { names.iter().map(|n| zone(n)).collect::<Result<_, _>>()? };
    Ok(scopes.into_iter().map(|scope| LogRule { scope, format: format.clone(), classes }).collect())
}

/// What a line is made of: the question as the client asked it and the answer sent.
pub struct Entry<'a> {
    pub client: SocketAddr,
    pub tcp: bool,
    pub id: u16,
    /// Lowercased wire-format name.
    pub qname: &'a [u8],
    pub qtype: u16,
    pub qclass: u16,
    pub qsize: usize,
    pub edns: Option<wire::Edns>,
    pub answer: &'a [u8],
    pub took: Duration,
}

fn class_of(answer: &[u8]) -> u8 {
    if answer.len() < wire::HEADER_LEN {
        return CLASS_ERROR;
    }
    let ancount = u16::from_be_bytes([answer[6], answer[7]]);
    match wire::flags::rcode(answer) {
        wire::RCODE_NXDOMAIN => CLASS_DENIAL,
        0 if ancount == 0 => CLASS_DENIAL,
        0 => CLASS_SUCCESS,
        _ => CLASS_ERROR,
    }
}

/// The line for `e` under the first rule whose scope holds the name, if its classes hold the
/// answer's (CoreDNS stops at the first rule in scope, logged or not).
pub fn line(rules: &[LogRule], e: &Entry<'_>) -> Option<String> {
    let rule = rules.iter().find(|r| wire::is_subdomain(e.qname, &r.scope))?;
    (rule.classes & class_of(e.answer) != 0).then(|| render(&rule.format, e))
}

/// Type and class mnemonics from hickory; an unknown one as RFC 3597 writes it (`TYPE65280`,
/// `CLASS7`), as CoreDNS's miekg/dns does.
fn type_name(t: u16) -> String {
    match hickory_proto::rr::RecordType::from(t) {
        hickory_proto::rr::RecordType::Unknown(n) => format!("TYPE{n}"),
        known => known.to_string(),
    }
}

fn class_name(c: u16) -> String {
    match hickory_proto::rr::DNSClass::from(c) {
        hickory_proto::rr::DNSClass::Unknown(n) | hickory_proto::rr::DNSClass::OPT(n) => format!("CLASS{n}"),
        known => known.to_string(),
    }
}

const OPCODES: [&str; 7] = ["QUERY", "IQUERY", "STATUS", "", "NOTIFY", "UPDATE", "STATEFUL"];

/// Header flags as CoreDNS writes them: qr, aa, tc, rd, ra, z, ad, cd.
fn flags(m: &[u8]) -> String {
    if m.len() < 4 {
        return String::new();
    }
    let (a, b) = (m[2], m[3]);
    let set = [
        (a & 0x80, "qr"),
        (a & 0x04, "aa"),
        (a & 0x02, "tc"),
        (a & 0x01, "rd"),
        (b & 0x80, "ra"),
        (b & 0x40, "z"),
        (b & 0x20, "ad"),
        (b & 0x10, "cd"),
    ];
    set.iter().filter(|(bit, _)| *bit != 0).map(|(_, n)| *n).collect::<Vec<_>>().join(",")
}

/// Expands the placeholders of `format`; an unknown one becomes `-`, as CoreDNS's replacer does.
pub fn render(format: &str, e: &Entry<'_>) -> String {
    let mut out = String::with_capacity(format.len() + 64);
    let mut rest = format;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let key = &rest[open + 1..open + close];
        let rcode = if e.answer.len() >= wire::HEADER_LEN { wire::flags::rcode(e.answer) } else { 0 };
        let _ = match key {
            "remote" => match e.client {
                SocketAddr::V4(a) => write!(out, "{}", a.ip()),
                SocketAddr::V6(a) => write!(out, "[{}]", a.ip()),
            },
            "port" => write!(out, "{}", e.client.port()),
            "type" => write!(out, "{}", type_name(e.qtype)),
            "class" => write!(out, "{}", class_name(e.qclass)),
            "name" => write!(out, "{}", wire::name_to_string(e.qname)),
            "proto" => write!(out, "{}", if e.tcp { "tcp" } else { "udp" }),
            "size" => write!(out, "{}", e.qsize),
            "rcode" => write!(out, "{}", crate::metrics::RCODE_LABELS.get(usize::from(rcode)).copied().unwrap_or("RCODE")),
            "rsize" => write!(out, "{}", e.answer.len()),
            "duration" => write!(out, "{}s", e.took.as_secs_f64()),
            ">id" => write!(out, "{}", e.id),
            ">opcode" => write!(out, "{}", OPCODES[0]),
            ">do" => write!(out, "{}", e.edns.is_some_and(|x| x.dnssec_ok)),
            ">bufsize" => write!(out, "{}", e.edns.map_or(512, |x| x.udp_size.max(512))),
            ">rflags" => write!(out, "{}", flags(e.answer)),
            _ => write!(out, "-"),
        };
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(s: &str) -> Result<Vec<u8>, String> {
        let rooted = if s.ends_with('.') { s.to_string() } else { format!("{s}.") };
        wire::name_from_str(&rooted).ok_or_else(|| format!("bad name {s}"))
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// A NOERROR answer with `ancount` records and these flags.
    fn answer(rcode: u8, ancount: u16, len: usize) -> Vec<u8> {
        let mut m = vec![0u8; len];
        m[0..2].copy_from_slice(&29008u16.to_be_bytes());
        m[2] = 0x81; // qr, rd
        m[3] = 0x80 | 0x20 | rcode; // ra, ad
        m[6..8].copy_from_slice(&ancount.to_be_bytes());
        m
    }

    fn entry<'a>(qname: &'a [u8], answer: &'a [u8], client: &str) -> Entry<'a> {
        Entry {
            client: client.parse().expect("addr"),
            tcp: false,
            id: 29008,
            qname,
            qtype: 1,
            qclass: 1,
            qsize: 41,
            edns: Some(wire::Edns { udp_size: 4096, version: 0, dnssec_ok: false }),
            answer,
            took: Duration::from_nanos(37_990_251),
        }
    }

    #[test]
    fn the_common_format_is_corednss_line() {
        let r = rules(&[], &[], zone).expect("rules");
        let name = zone("example.org.").expect("name");
        let a = answer(0, 1, 68);
        assert_eq!(
            line(&r, &entry(&name, &a, "[::1]:50759")).expect("logged"),
            r#"[::1]:50759 - 29008 "A IN example.org. udp 41 false 4096" NOERROR qr,rd,ra,ad 68 0.037990251s"#
        );
        let mut e = entry(&name, &a, "10.244.1.7:41457");
        e.edns = None;
        e.tcp = true;
        assert_eq!(
            line(&r, &e).expect("logged"),
            r#"10.244.1.7:41457 - 29008 "A IN example.org. tcp 41 false 512" NOERROR qr,rd,ra,ad 68 0.037990251s"#
        );
    }

    #[test]
    fn names_formats_and_classes_choose_what_is_logged() {
        let combined = rules(&strings(&["example.org", "{combined}"]), &[], zone).expect("rules");
        let name = zone("www.example.org.").expect("name");
        let other = zone("kubernetes.default.svc.cluster.local.").expect("name");
        let ok = answer(0, 1, 60);
        assert!(line(&combined, &entry(&name, &ok, "10.0.0.1:53")).expect("in scope").ends_with(r#"0.037990251s "QUERY""#));
        assert_eq!(line(&combined, &entry(&other, &ok, "10.0.0.1:53")), None, "out of scope");
        let custom = rules(&strings(&[".", "{name} {type} {rcode} {nothing}"]), &[strings(&["denial", "error"])], zone).expect("rules");
        assert_eq!(line(&custom, &entry(&name, &ok, "10.0.0.1:53")), None, "success is not in the classes");
        let nodata = answer(0, 0, 40);
        assert_eq!(
            line(&custom, &entry(&name, &nodata, "10.0.0.1:53")).as_deref(),
            Some("www.example.org. A NOERROR -"),
            "NODATA is denial"
        );
        let servfail = answer(2, 0, 40);
        assert_eq!(line(&custom, &entry(&name, &servfail, "10.0.0.1:53")).as_deref(), Some("www.example.org. A SERVFAIL -"));
        let mut odd = entry(&name, &ok, "10.0.0.1:53");
        (odd.qtype, odd.qclass) = (65280, 3);
        assert_eq!(render("{type} {class}", &odd), "TYPE65280 CH", "RFC 3597 names for unknown types");
        odd.qtype = 65;
        assert_eq!(render("{type}", &odd), "HTTPS");
        // Several names without a format: one rule each, in the common format.
        assert_eq!(rules(&strings(&["a.example", "b.example"]), &[], zone).expect("rules").len(), 2);
    }

    #[test]
    fn mistakes_are_named() {
        assert!(rules(&strings(&["{combined}"]), &[], zone).expect_err("an error").contains("log . {combined}"));
        assert!(rules(&[], &[strings(&["sucess"])], zone).expect_err("an error").contains("unknown class \"sucess\""));
        assert!(rules(&[], &[vec![]], zone).expect_err("an error").contains("at least one"));
    }
}
