//! The `process_*` metrics every Go program's Prometheus client exports, CoreDNS's among them, so the
//! dashboards and alerts written for CoreDNS (memory against the limit, CPU, file descriptors) keep
//! working (sources.md#coredns-metrics). Read from /proc through the `procfs` crate at each scrape.

use std::fmt::Write;

use procfs::process::{LimitValue, Process};

/// The metrics, in the exposition format; empty where /proc cannot be read.
pub(super) fn process_metrics() -> String {
    let mut out = String::new();
    let Ok(me) = Process::myself() else { return out };
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    if let Ok(stat) = me.stat() {
        let ticks = procfs::ticks_per_second() as f64;
        metric(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            (stat.utime + stat.stime) as f64 / ticks,
        );
        metric("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", (stat.rss * procfs::page_size()) as f64);
        metric("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", stat.vsize as f64);
        if let Ok(boot) = procfs::boot_time_secs() {
            metric(
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                boot as f64 + stat.starttime as f64 / ticks,
            );
        }
    }
    if let Ok(n) = me.fd_count() {
        metric("process_open_fds", "gauge", "Number of open file descriptors.", n as f64);
    }
    if let Ok(limits) = me.limits() {
        let max = match limits.max_open_files.soft_limit {
            LimitValue::Value(v) => v as f64,
            LimitValue::Unlimited => f64::INFINITY,
        };
        metric("process_max_fds", "gauge", "Maximum number of open file descriptors.", max);
    }
    out
}
