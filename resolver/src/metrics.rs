//! Counters kept by the sans-IO core and rendered with CoreDNS's metric names and labels
//! (sources.md#coredns-metrics), so existing dashboards keep working.
//!
//! Plain arrays on the hot path (no map lookup, no allocation); the text rendering is done by the
//! driver when `/metrics` is scraped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use crate::wire;

/// CoreDNS's `type` label buckets (plugin/metrics/vars).
pub const TYPE_LABELS: [&str; 19] = [
    "A", "AAAA", "MX", "SOA", "CNAME", "PTR", "TXT", "NS", "SRV", "DS", "DNSKEY", "RRSIG", "NSEC", "NSEC3", "HTTPS", "IXFR", "AXFR", "ANY",
    "other",
];

pub fn type_bucket(qtype: u16) -> usize {
    match qtype {
        wire::TYPE_A => 0,
        wire::TYPE_AAAA => 1,
        15 => 2,
        wire::TYPE_SOA => 3,
        wire::TYPE_CNAME => 4,
        wire::TYPE_PTR => 5,
        wire::TYPE_TXT => 6,
        wire::TYPE_NS => 7,
        wire::TYPE_SRV => 8,
        43 => 9,
        48 => 10,
        46 => 11,
        47 => 12,
        50 => 13,
        65 => 14,
        251 => 15,
        252 => 16,
        255 => 17,
        _ => 18,
    }
}

pub const RCODE_LABELS: [&str; 11] =
    ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE"];

/// `coredns_dns_responses_total`'s `plugin` label: the plugin that wrote the answer ("" when none
/// did, as for a SERVFAIL when no plugin answered).
pub const PLUGIN_LABELS: [&str; 7] = ["", "cache", "template", "hosts", "kubernetes", "file", "forward"];
pub const PLUGIN_CACHE: u8 = 1;
pub const PLUGIN_TEMPLATE: u8 = 2;
pub const PLUGIN_HOSTS: u8 = 3;
pub const PLUGIN_KUBERNETES: u8 = 4;
pub const PLUGIN_FILE: u8 = 5;
pub const PLUGIN_FORWARD: u8 = 6;

/// `coredns_dns_request_duration_seconds` buckets: ExponentialBuckets(0.00025, 2, 16).
pub const DURATION_BUCKETS: usize = 16;

fn bucket_bound(i: usize) -> f64 {
    0.00025 * f64::from(1u32 << i)
}

#[derive(Debug, Clone, Default)]
pub struct Histogram {
    pub buckets: [u64; DURATION_BUCKETS],
    pub count: u64,
    pub sum_ns: u128,
}

impl Histogram {
    pub fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in self.buckets.iter_mut().enumerate() {
            if s <= bucket_bound(i) {
                *b += 1;
            }
        }
        self.count += 1;
        self.sum_ns += d.as_nanos();
    }
}

/// `coredns_dns_request_size_bytes` and `_response_size_bytes` buckets (plugin/metrics/vars).
pub const SIZE_BOUNDS: [f64; 14] = [0.0, 100.0, 200.0, 300.0, 400.0, 511.0, 1023.0, 2047.0, 4095.0, 8291.0, 16e3, 32e3, 48e3, 64e3];

/// A histogram of message sizes in bytes.
#[derive(Debug, Clone, Default)]
pub struct SizeHistogram {
    pub buckets: [u64; 14],
    pub count: u64,
    pub sum: u64,
}

impl SizeHistogram {
    pub fn observe(&mut self, bytes: usize) {
        // Cumulative: every bucket whose bound is at least the size (no allocation, 14 compares).
        for (b, bound) in self.buckets.iter_mut().zip(SIZE_BOUNDS) {
            if bytes as f64 <= bound {
                *b += 1;
            }
        }
        self.count += 1;
        self.sum += bytes as u64;
    }

    fn merge(&mut self, o: &SizeHistogram) {
        for (a, b) in self.buckets.iter_mut().zip(&o.buckets) {
            *a += b;
        }
        self.count += o.count;
        self.sum += o.sum;
    }
}

/// Per server block (CoreDNS's `server` and `zone` labels).
#[derive(Debug, Clone)]
pub struct BlockMetrics {
    pub server: String,
    pub zone: String,
    /// [proto udp/tcp][family 1/2][type bucket]
    pub requests: [[[u64; 19]; 2]; 2],
    /// [plugin (`PLUGIN_LABELS`)][rcode]
    pub responses: [[u64; 16]; 7],
    pub duration: Vec<Histogram>,
    pub cache_hits_success: u64,
    pub cache_hits_denial: u64,
    pub cache_misses: u64,
    pub cache_served_stale: u64,
    pub cache_prefetch: u64,
    pub autopath_success: u64,
    pub forward_max_concurrent_rejects: u64,
    /// [udp, tcp]: the query's and the answer's size.
    pub request_size: [SizeHistogram; 2],
    pub response_size: [SizeHistogram; 2],
    /// `coredns_plugin_enabled`: the block's plugins.
    pub plugins: Vec<&'static str>,
}

impl BlockMetrics {
    pub fn new(server: String, zone: String) -> Self {
        BlockMetrics {
            server,
            zone,
            requests: [[[0; 19]; 2]; 2],
            responses: [[0; 16]; 7],
            duration: vec![Histogram::default(); 19],
            cache_hits_success: 0,
            cache_hits_denial: 0,
            cache_misses: 0,
            cache_served_stale: 0,
            cache_prefetch: 0,
            autopath_success: 0,
            forward_max_concurrent_rejects: 0,
            request_size: Default::default(),
            response_size: Default::default(),
            plugins: Vec::new(),
        }
    }
}

impl BlockMetrics {
    /// One answer sent: `coredns_dns_responses_total`, `coredns_dns_request_duration_seconds` and
    /// the request and response sizes (`tcp`: the query came over TCP).
    pub fn answered(&mut self, rcode: u8, qtype: u16, took: Duration, plugin: u8, sizes: (bool, usize, usize)) {
        self.responses[usize::from(plugin).min(PLUGIN_LABELS.len() - 1)][usize::from(rcode & 0x0f)] += 1;
        self.duration[type_bucket(qtype)].observe(took);
        let (tcp, request, response) = sizes;
        self.request_size[usize::from(tcp)].observe(request);
        self.response_size[usize::from(tcp)].observe(response);
    }
}

#[derive(Debug, Clone, Default)]
pub struct UpstreamMetrics {
    pub requests: u64,
    pub responses: [u64; 16],
    /// Time from the last send to the answer, by the answer's rcode.
    pub duration: BTreeMap<u8, Histogram>,
    pub healthcheck_failures: u64,
    pub timeouts: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub blocks: Vec<BlockMetrics>,
    pub upstreams: BTreeMap<SocketAddr, UpstreamMetrics>,
    /// Queries matching no server block, or dropped before one was chosen (zone `dropped`).
    pub dropped: u64,
    pub healthcheck_broken: u64,
    pub cache_entries: Vec<(String, usize, usize)>,
    /// The detectors' counts (`detect`), rendered as `ndots_*`.
    pub detect: crate::detect::Stats,
}

/// A histogram's `_bucket`, `_sum` and `_count` lines.
fn write_histogram(o: &mut String, name: &str, labels: &str, h: &Histogram) {
    for (i, c) in h.buckets.iter().enumerate() {
        let _ = writeln!(o, "{name}_bucket{{{labels},le=\"{}\"}} {c}", bucket_bound(i));
    }
    let _ = writeln!(o, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(o, "{name}_sum{{{labels}}} {}", h.sum_ns as f64 / 1e9);
    let _ = writeln!(o, "{name}_count{{{labels}}} {}", h.count);
}

impl Histogram {
    fn merge(&mut self, o: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(&o.buckets) {
            *a += b;
        }
        self.count += o.count;
        self.sum_ns += o.sum_ns;
    }
}

impl Metrics {
    /// Adds another worker's metrics to these: counters and histograms summed per server block
    /// (matched by its labels), upstream and cache gauges summed.
    pub fn merge(&mut self, o: &Metrics) {
        for ob in &o.blocks {
            let b = match self.blocks.iter_mut().position(|b| b.server == ob.server && b.zone == ob.zone) {
                Some(i) => &mut self.blocks[i],
                None => {
                    self.blocks.push(BlockMetrics::new(ob.server.clone(), ob.zone.clone()));
                    let last = self.blocks.len() - 1;
                    &mut self.blocks[last]
                }
            };
            for (x, y) in b.requests.iter_mut().flatten().flatten().zip(ob.requests.iter().flatten().flatten()) {
                *x += y;
            }
            for (x, y) in b.responses.iter_mut().flatten().zip(ob.responses.iter().flatten()) {
                *x += y;
            }
            for (x, y) in b.duration.iter_mut().zip(&ob.duration) {
                x.merge(y);
            }
            b.cache_hits_success += ob.cache_hits_success;
            b.cache_hits_denial += ob.cache_hits_denial;
            b.cache_misses += ob.cache_misses;
            b.cache_served_stale += ob.cache_served_stale;
            b.cache_prefetch += ob.cache_prefetch;
            b.autopath_success += ob.autopath_success;
            b.forward_max_concurrent_rejects += ob.forward_max_concurrent_rejects;
            for p in 0..2 {
                b.request_size[p].merge(&ob.request_size[p]);
                b.response_size[p].merge(&ob.response_size[p]);
            }
            if b.plugins.is_empty() {
                b.plugins.clone_from(&ob.plugins);
            }
        }
        for (addr, ou) in &o.upstreams {
            let u = self.upstreams.entry(*addr).or_default();
            u.requests += ou.requests;
            for (x, y) in u.responses.iter_mut().zip(&ou.responses) {
                *x += y;
            }
            u.healthcheck_failures += ou.healthcheck_failures;
            u.timeouts += ou.timeouts;
            for (rcode, h) in &ou.duration {
                u.duration.entry(*rcode).or_default().merge(h);
            }
        }
        self.dropped += o.dropped;
        self.healthcheck_broken += o.healthcheck_broken;
        self.detect.merge(&o.detect);
        for (k, s, d) in &o.cache_entries {
            match self.cache_entries.iter_mut().find(|(k2, ..)| k2 == k) {
                Some(e) => {
                    e.1 += s;
                    e.2 += d;
                }
                None => self.cache_entries.push((k.clone(), *s, *d)),
            }
        }
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# HELP coredns_build_info A metric with a constant '1' value labeled by version, revision, and goversion from which CoreDNS was built.\n# TYPE coredns_build_info gauge"
        );
        let _ = writeln!(o, "coredns_build_info{{version=\"ndots-{}\",revision=\"\",goversion=\"rust\"}} 1", env!("CARGO_PKG_VERSION"));
        let _ = writeln!(
            o,
            "# HELP coredns_dns_requests_total Counter of DNS requests made per zone, protocol and family.\n# TYPE coredns_dns_requests_total counter"
        );
        for b in &self.blocks {
            for (p, proto) in ["udp", "tcp"].iter().enumerate() {
                for (f, fam) in ["1", "2"].iter().enumerate() {
                    for (t, ty) in TYPE_LABELS.iter().enumerate() {
                        let v = b.requests[p][f][t];
                        if v > 0 {
                            let _ = writeln!(
                                o,
                                "coredns_dns_requests_total{{server=\"{}\",zone=\"{}\",view=\"\",proto=\"{proto}\",family=\"{fam}\",type=\"{ty}\"}} {v}",
                                b.server, b.zone
                            );
                        }
                    }
                }
            }
        }
        let _ =
            writeln!(o, "# HELP coredns_dns_responses_total Counter of response status codes.\n# TYPE coredns_dns_responses_total counter");
        for b in &self.blocks {
            for (p, per_rcode) in b.responses.iter().enumerate() {
                for (r, v) in per_rcode.iter().enumerate() {
                    if *v > 0 {
                        let label = RCODE_LABELS.get(r).copied().unwrap_or("other");
                        let _ = writeln!(
                            o,
                            "coredns_dns_responses_total{{server=\"{}\",zone=\"{}\",view=\"\",rcode=\"{label}\",plugin=\"{}\"}} {v}",
                            b.server, b.zone, PLUGIN_LABELS[p]
                        );
                    }
                }
            }
        }
        let _ = writeln!(
            o,
            "# HELP coredns_dns_request_duration_seconds Histogram of the time (in seconds) each request took per zone.\n# TYPE coredns_dns_request_duration_seconds histogram"
        );
        // Labelled server, zone and view since CoreDNS 1.8.4 dropped `type` (sources.md#coredns-metrics).
        for b in &self.blocks {
            let mut all = Histogram::default();
            for h in &b.duration {
                all.merge(h);
            }
            if all.count == 0 {
                continue;
            }
            let labels = format!("server=\"{}\",zone=\"{}\",view=\"\"", b.server, b.zone);
            write_histogram(&mut o, "coredns_dns_request_duration_seconds", &labels, &all);
        }
        for (name, help, pick) in [
            (
                "coredns_dns_request_size_bytes",
                "Size of the EDNS0 UDP buffer in bytes (64K for TCP).",
                (|b: &BlockMetrics| &b.request_size) as fn(&BlockMetrics) -> &[SizeHistogram; 2],
            ),
            ("coredns_dns_response_size_bytes", "Size of the returned response in bytes.", |b: &BlockMetrics| &b.response_size),
        ] {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} histogram");
            for b in &self.blocks {
                for (p, proto) in ["udp", "tcp"].iter().enumerate() {
                    let h = &pick(b)[p];
                    if h.count == 0 {
                        continue;
                    }
                    let labels = format!("server=\"{}\",zone=\"{}\",view=\"\",proto=\"{proto}\"", b.server, b.zone);
                    for (c, bound) in h.buckets.iter().zip(SIZE_BOUNDS) {
                        let _ = writeln!(o, "{name}_bucket{{{labels},le=\"{bound}\"}} {c}");
                    }
                    let _ = writeln!(o, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
                    let _ = writeln!(o, "{name}_sum{{{labels}}} {}", h.sum);
                    let _ = writeln!(o, "{name}_count{{{labels}}} {}", h.count);
                }
            }
        }
        // CoreDNS counts the panics its recover handler caught; ndots recovers none (a panic ends
        // the process and the kubelet restarts it), so this stays 0 for the dashboards that read it.
        let _ = writeln!(o, "# HELP coredns_panics_total A metrics that counts the number of panics.\n# TYPE coredns_panics_total counter");
        let _ = writeln!(o, "coredns_panics_total 0");
        let _ = writeln!(
            o,
            "# HELP coredns_plugin_enabled A metric that indicates whether a plugin is enabled on per server and zone basis.\n# TYPE coredns_plugin_enabled gauge"
        );
        for b in &self.blocks {
            for p in &b.plugins {
                let _ = writeln!(o, "coredns_plugin_enabled{{server=\"{}\",zone=\"{}\",view=\"\",name=\"{p}\"}} 1", b.server, b.zone);
            }
        }
        let _ = writeln!(o, "# HELP coredns_cache_entries The number of elements in the cache.\n# TYPE coredns_cache_entries gauge");
        for (server, success, denial) in &self.cache_entries {
            let _ = writeln!(o, "coredns_cache_entries{{server=\"{server}\",type=\"success\",zones=\".\",view=\"\"}} {success}");
            let _ = writeln!(o, "coredns_cache_entries{{server=\"{server}\",type=\"denial\",zones=\".\",view=\"\"}} {denial}");
        }
        let _ = writeln!(o, "# HELP coredns_cache_hits_total The count of cache hits.\n# TYPE coredns_cache_hits_total counter");
        for b in &self.blocks {
            let _ = writeln!(
                o,
                "coredns_cache_hits_total{{server=\"{}\",type=\"success\",zones=\"{}\",view=\"\"}} {}",
                b.server, b.zone, b.cache_hits_success
            );
            let _ = writeln!(
                o,
                "coredns_cache_hits_total{{server=\"{}\",type=\"denial\",zones=\"{}\",view=\"\"}} {}",
                b.server, b.zone, b.cache_hits_denial
            );
        }
        let _ = writeln!(
            o,
            "# HELP coredns_cache_misses_total The count of cache misses. Deprecated, derive misses from cache hits/requests counters.\n# TYPE coredns_cache_misses_total counter"
        );
        for b in &self.blocks {
            let _ = writeln!(o, "coredns_cache_misses_total{{server=\"{}\",zones=\"{}\",view=\"\"}} {}", b.server, b.zone, b.cache_misses);
        }
        let _ =
            writeln!(o, "# HELP coredns_cache_requests_total The count of cache requests.\n# TYPE coredns_cache_requests_total counter");
        for b in &self.blocks {
            let total = b.cache_hits_success + b.cache_hits_denial + b.cache_misses;
            let _ = writeln!(o, "coredns_cache_requests_total{{server=\"{}\",zones=\"{}\",view=\"\"}} {total}", b.server, b.zone);
        }
        let _ = writeln!(
            o,
            "# HELP coredns_cache_served_stale_total The number of requests served from stale cache entries.\n# TYPE coredns_cache_served_stale_total counter"
        );
        for b in &self.blocks {
            let _ = writeln!(
                o,
                "coredns_cache_served_stale_total{{server=\"{}\",zones=\"{}\",view=\"\"}} {}",
                b.server, b.zone, b.cache_served_stale
            );
        }
        let _ = writeln!(
            o,
            "# HELP coredns_cache_prefetch_total The number of times the cache has prefetched a cached item.\n# TYPE coredns_cache_prefetch_total counter"
        );
        for b in &self.blocks {
            let _ =
                writeln!(o, "coredns_cache_prefetch_total{{server=\"{}\",zones=\"{}\",view=\"\"}} {}", b.server, b.zone, b.cache_prefetch);
        }
        let _ = writeln!(
            o,
            "# HELP coredns_autopath_success_total Counter of requests that did autopath.\n# TYPE coredns_autopath_success_total counter"
        );
        for b in &self.blocks {
            let _ = writeln!(o, "coredns_autopath_success_total{{server=\"{}\"}} {}", b.server, b.autopath_success);
        }
        let _ = writeln!(
            o,
            "# HELP coredns_forward_requests_total Counter of requests made per upstream.\n# TYPE coredns_forward_requests_total counter"
        );
        for (to, u) in &self.upstreams {
            let _ = writeln!(o, "coredns_forward_requests_total{{to=\"{to}\"}} {}", u.requests);
        }
        let _ = writeln!(
            o,
            "# HELP coredns_forward_responses_total Counter of responses received per upstream.\n# TYPE coredns_forward_responses_total counter"
        );
        for (to, u) in &self.upstreams {
            for (r, v) in u.responses.iter().enumerate() {
                if *v > 0 {
                    let _ = writeln!(
                        o,
                        "coredns_forward_responses_total{{rcode=\"{}\",to=\"{to}\"}} {v}",
                        RCODE_LABELS.get(r).copied().unwrap_or("other")
                    );
                }
            }
        }
        // Before CoreDNS 1.11 `coredns_forward_request_duration_seconds{to,rcode}`; since,
        // `coredns_proxy_request_duration_seconds{proxy_name,to,rcode}`: both, so dashboards and
        // alerts written for either keep working (sources.md#coredns-metrics).
        for (name, extra, help) in [
            ("coredns_forward_request_duration_seconds", "", "Histogram of the time each request took."),
            ("coredns_proxy_request_duration_seconds", "proxy_name=\"forward\",", "Histogram of the time each request took."),
        ] {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} histogram");
            for (to, u) in &self.upstreams {
                for (rcode, h) in &u.duration {
                    let rc = RCODE_LABELS.get(usize::from(*rcode)).copied().unwrap_or("other");
                    let labels = format!("{extra}rcode=\"{rc}\",to=\"{to}\"");
                    write_histogram(&mut o, name, &labels, h);
                }
            }
        }
        let _ = writeln!(
            o,
            "# HELP coredns_proxy_healthcheck_failures_total Count of failed health checks.\n# TYPE coredns_proxy_healthcheck_failures_total counter"
        );
        for (to, u) in &self.upstreams {
            let _ =
                writeln!(o, "coredns_proxy_healthcheck_failures_total{{proxy_name=\"forward\",to=\"{to}\"}} {}", u.healthcheck_failures);
        }
        let _ = writeln!(
            o,
            "# HELP coredns_forward_healthcheck_failures_total Counter of the number of failed healthchecks.\n# TYPE coredns_forward_healthcheck_failures_total counter"
        );
        for (to, u) in &self.upstreams {
            let _ = writeln!(o, "coredns_forward_healthcheck_failures_total{{to=\"{to}\"}} {}", u.healthcheck_failures);
        }
        let _ = writeln!(
            o,
            "# HELP coredns_forward_healthcheck_broken_total Counter of the number of complete failures of the healthchecks.\n# TYPE coredns_forward_healthcheck_broken_total counter"
        );
        let _ = writeln!(o, "coredns_forward_healthcheck_broken_total {}", self.healthcheck_broken);
        let _ = writeln!(
            o,
            "# HELP coredns_forward_max_concurrent_rejects_total Counter of the number of queries rejected because the concurrent queries were at maximum.\n# TYPE coredns_forward_max_concurrent_rejects_total counter"
        );
        let rejects: u64 = self.blocks.iter().map(|b| b.forward_max_concurrent_rejects).sum();
        let _ = writeln!(o, "coredns_forward_max_concurrent_rejects_total {rejects}");
        self.detect.render(&mut o);
        o
    }
}
