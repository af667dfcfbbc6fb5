//! What one dnsperf run says, the per-server summary over rounds, and the table and chart.

/// One measured run of one server on one workload.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Run {
    pub qps: f64,
    pub completed: u64,
    pub lost: u64,
    /// Server CPU (user + system) during the run, seconds.
    pub cpu_s: f64,
    /// Latency percentiles of the fixed-rate run, ms (None when it was skipped or unparsable).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl Run {
    pub fn per_cpu_s(&self) -> f64 {
        if self.cpu_s > 0.0 { self.completed as f64 / self.cpu_s } else { 0.0 }
    }
}

/// dnsperf's summary: (queries per second, completed, lost).
pub fn parse_dnsperf(out: &str) -> Option<(f64, u64, u64)> {
    let field = |key: &str| {
        out.lines().find_map(|l| l.trim().strip_prefix(key)).and_then(|rest| rest.split_whitespace().next().map(str::to_string))
    };
    let qps = field("Queries per second:")?.parse().ok()?;
    let completed = field("Queries completed:")?.parse().ok()?;
    let lost = field("Queries lost:")?.parse().ok()?;
    Some((qps, completed, lost))
}

/// Latencies (ms) from `dnsperf -v` lines: `> NOERROR name A 0.000123` (the last field, seconds).
pub fn parse_latencies(out: &str) -> Vec<f64> {
    out.lines()
        .filter(|l| l.starts_with("> "))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .map(|s| s * 1000.0)
        .collect()
}

pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied()
}

/// The `utime + stime` of a process, in clock ticks (procfs `stat` fields 14 and 15).
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces: count from its end.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 0 => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        n => v[n / 2],
    }
}

/// The median over rounds of one server on one workload, with the spread of queries per CPU-second.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub server: String,
    pub workload: String,
    pub qps: f64,
    pub per_cpu_s: f64,
    pub per_cpu_s_min: f64,
    pub per_cpu_s_max: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub lost: u64,
    pub rounds: usize,
}

pub fn summarise(server: &str, workload: &str, runs: &[Run]) -> Summary {
    let per: Vec<f64> = runs.iter().map(Run::per_cpu_s).collect();
    let opt = |f: fn(&Run) -> Option<f64>| {
        let v: Vec<f64> = runs.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| median(v))
    };
    Summary {
        server: server.into(),
        workload: workload.into(),
        qps: median(runs.iter().map(|r| r.qps).collect()),
        per_cpu_s: median(per.clone()),
        per_cpu_s_min: per.iter().copied().fold(f64::INFINITY, f64::min),
        per_cpu_s_max: per.iter().copied().fold(0.0, f64::max),
        p50_ms: opt(|r| r.p50_ms),
        p99_ms: opt(|r| r.p99_ms),
        lost: runs.iter().map(|r| r.lost).max().unwrap_or(0),
        rounds: runs.len(),
    }
}

fn thousands(x: f64) -> String {
    let s = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The Markdown table: per workload, each server's medians and its ratio to the floor.
pub fn table(rows: &[Summary]) -> String {
    let mut out = String::from(
        "| server/workload | queries/s | queries per server CPU-s (min-max over rounds) | of the floor's | p50 / p99 at fixed rate | lost |\n|---|---|---|---|---|---|\n",
    );
    for r in rows {
        // A forwarder without a cache handles two packets in and two out per answer: against half
        // the floor's rate.
        let share = if r.server.ends_with("-forward") { 0.5 } else { 1.0 };
        let floor = rows.iter().find(|f| f.server == "floor" && f.workload == r.workload).map(|f| f.per_cpu_s * share);
        let ratio = floor.filter(|f| *f > 0.0).map_or("-".into(), |f| format!("{:.2}", r.per_cpu_s / f));
        let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3} ms"));
        out.push_str(&format!(
            "| {}/{} | {} | {} ({}-{}) | {} | {} / {} | {} |\n",
            r.server,
            r.workload,
            thousands(r.qps),
            thousands(r.per_cpu_s),
            thousands(r.per_cpu_s_min),
            thousands(r.per_cpu_s_max),
            ratio,
            ms(r.p50_ms),
            ms(r.p99_ms),
            r.lost
        ));
    }
    out
}

/// A bar chart of queries per CPU-second, one group per workload, the floor as a dashed line.
pub fn svg(rows: &[Summary]) -> String {
    let workloads: Vec<&str> = rows.iter().fold(Vec::new(), |mut v, r| {
        if !v.contains(&r.workload.as_str()) {
            v.push(r.workload.as_str());
        }
        v
    });
    let servers: Vec<&str> = rows.iter().fold(Vec::new(), |mut v, r| {
        if !v.contains(&r.server.as_str()) {
            v.push(r.server.as_str());
        }
        v
    });
    let top_value = rows.iter().map(|r| r.per_cpu_s_max.max(r.per_cpu_s)).fold(1.0, f64::max);
    // Round ticks: the smallest step of 1, 2, 2.5 or 5 × 10^k giving at most five intervals.
    let step = (0..12)
        .flat_map(|k| [1.0, 2.0, 2.5, 5.0].map(|m| m * 10f64.powi(k)))
        .find(|st| (top_value / st).ceil() <= 5.0)
        .unwrap_or(top_value);
    let ticks = (top_value / step).ceil().max(1.0) as u32;
    let max = step * f64::from(ticks);
    let (w, h, left, top, bottom) =
        ((140.0 + 60.0 * (servers.len() * workloads.len()) as f64 + 30.0 * workloads.len() as f64).max(720.0), 400.0, 70.0, 60.0, 70.0);
    let y = |v: f64| top + (h - top - bottom) * (1.0 - v / max);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{left}\" y=\"22\" font-size=\"15\">Queries answered per server CPU-second</text>\n<text x=\"{left}\" y=\"42\" fill=\"#555\">bars: median over rounds; whiskers: min to max; dashed: the floor responder (a -forward server, two packets each way per answer, against half of it)</text>\n"
    );
    for k in 0..=ticks {
        let v = step * f64::from(k);
        s.push_str(&format!(
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}k</text>\n",
            w - 10.0,
            left - 6.0,
            y(v) + 4.0,
            (v / 1000.0).round(),
            y = y(v)
        ));
    }
    let colours = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"];
    let mut x = left + 10.0;
    for wl in &workloads {
        let group_start = x;
        for (i, sv) in servers.iter().enumerate() {
            let Some(r) = rows.iter().find(|r| r.workload == *wl && r.server == *sv) else { continue };
            let c = colours[i % colours.len()];
            s.push_str(&format!(
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"50\" height=\"{:.1}\" fill=\"{c}\"/>\n<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{sv}</text>\n",
                y(r.per_cpu_s),
                y(0.0) - y(r.per_cpu_s),
                x + 25.0,
                x + 25.0,
                y(r.per_cpu_s_min),
                y(r.per_cpu_s_max),
                x + 25.0,
                // Names wider than a bar alternate between two lines.
                y(0.0) + if i % 2 == 0 { 16.0 } else { 30.0 }
            ));
            x += 60.0;
        }
        if let Some(f) = rows.iter().find(|r| r.workload == *wl && r.server == "floor") {
            s.push_str(&format!(
                "<line x1=\"{group_start:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\" stroke-dasharray=\"6 4\"/>\n",
                x - 10.0,
                y(f.per_cpu_s),
                y(f.per_cpu_s)
            ));
        }
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"13\">{wl}</text>\n",
            (group_start + x - 10.0) / 2.0,
            y(0.0) + 52.0
        ));
        x += 30.0;
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const DNSPERF: &str = "Statistics:

  Queries sent:         1520371
  Queries completed:    1520371 (100.00%)
  Queries lost:         0 (0.00%)

  Response codes:       NOERROR 1520371 (100.00%)
  Average packet size:  request 45, response 61
  Run time (s):         10.000122
  Queries per second:   152035.243413

  Average Latency (s):  0.000505 (min 0.000012, max 0.012164)
";

    #[test]
    fn reads_dnsperf_and_procfs() {
        assert_eq!(parse_dnsperf(DNSPERF), Some((152035.243413, 1520371, 0)));
        assert_eq!(parse_dnsperf("nothing"), None);
        let stat = "4242 (dns floor) S 1 4242 4242 0 -1 4194560 120 0 0 0 1234 567 0 0 20 0 1 0 100 1000 10 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(1234 + 567));
        let lat = parse_latencies("> NOERROR svc-1.team-001.svc.cluster.local A 0.000120\n> NOERROR x A 0.000300\nnoise\n");
        assert_eq!(lat.len(), 2);
        assert!((lat[1] - 0.3).abs() < 1e-9);
    }

    #[test]
    fn the_table_gives_each_server_its_ratio_to_the_floor() {
        let run = |qps: f64, cpu: f64| Run { qps, completed: qps as u64 * 10, lost: 0, cpu_s: cpu, p50_ms: Some(0.05), p99_ms: Some(0.1) };
        let floor = summarise("floor", "hit", &[run(200_000.0, 8.0), run(210_000.0, 8.0)]);
        assert_eq!(floor.per_cpu_s, 256_250.0, "the median of two rounds is their mean");
        let ndots = summarise("ndots", "hit", &[run(150_000.0, 9.0), run(140_000.0, 9.0), run(160_000.0, 9.0)]);
        assert_eq!(ndots.rounds, 3);
        assert_eq!(ndots.qps, 150_000.0);
        let t = table(&[floor.clone(), ndots.clone()]);
        assert!(t.contains("| ndots/hit | 150,000 | 166,667 (155,556-177,778) | 0.65 |"), "{t}");
        assert!(t.contains("| floor/hit |") && t.contains("| 1.00 |"), "{t}");
        let forward = summarise("ndots-forward", "hit", &[run(100_000.0, 10.0)]);
        let t = table(&[floor.clone(), forward]);
        assert!(t.contains("| ndots-forward/hit | 100,000 | 100,000 (100,000-100,000) | 0.78 |"), "against half the floor: {t}");
        let chart = svg(&[floor, ndots]);
        assert!(chart.starts_with("<svg") && chart.contains(">ndots<") && chart.contains("stroke-dasharray"));
    }
}
