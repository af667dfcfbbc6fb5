//! Self-contained HTML reports with inline SVG charts (no network needed to open them).
//!
//! A chart has nice ticks (1, 2 or 5 times a power of ten; whole numbers for counts; decades on a
//! log axis), a caption, its series' legend under the plot, limit lines that are drawn only when
//! they do not flatten the data (a limit far above it is written as an off-scale note instead), and
//! events marked on the time axis: numbered badges, staggered so none overlaps, listed with their
//! times and labels under the chart.

use std::fmt::Write as _;

/// One line on a chart.
pub struct Series<'a> {
    pub label: &'a str,
    pub color: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// A horizontal line the data is measured against (a table size, a budget, a memory limit).
pub struct Limit<'a> {
    pub label: &'a str,
    pub value: f64,
}

/// A chart and everything drawn on it.
pub struct Chart<'a> {
    pub title: &'a str,
    /// Up to two lines under the title: what the chart shows and what to look for.
    pub caption: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub series: &'a [Series<'a>],
    pub limits: &'a [Limit<'a>],
    /// (x, label): events on the x axis.
    pub markers: &'a [(f64, String)],
    /// A log y axis (latencies: one 5 s stall must not flatten the milliseconds).
    pub log_y: bool,
    /// The values are counts: whole-number ticks.
    pub integer: bool,
    /// The axis ends here (a percentage at 100) unless the data goes higher.
    pub y_top: Option<f64>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A tick step of 1, 2 or 5 times a power of ten giving about `n` intervals over `span`.
pub fn nice_step(span: f64, n: f64) -> f64 {
    if span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / n;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let m = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// Linear ticks from 0 to at least `max`, 2 to 6 intervals of 1, 2 or 5 times a power of ten,
/// the lowest top first: (ticks, axis top).
pub fn nice_ticks(max: f64, integer: bool) -> (Vec<f64>, f64) {
    let max = if max > 0.0 && max.is_finite() { max } else { 1.0 };
    let mag = 10f64.powf(max.log10().floor());
    let mut best: Option<(f64, f64)> = None;
    for m in [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0] {
        let step = m * mag;
        if integer && step < 1.0 {
            continue;
        }
        let n = (max / step - 1e-9).ceil().max(1.0);
        // 2 to 6 intervals; a count that reaches 1 may have one.
        let fits = (2.0..=6.0).contains(&n) || (integer && step == 1.0 && n < 2.0);
        if !fits {
            continue;
        }
        let top = n * step;
        if best.is_none_or(|(t, st)| top < t - 1e-9 || ((top - t).abs() < 1e-9 && step > st)) {
            best = Some((top, step));
        }
    }
    let (top, step) = best.unwrap_or_else(|| {
        let step = nice_step(max, 4.0).max(if integer { 1.0 } else { 0.0 });
        ((max / step).ceil() * step, step)
    });
    let n = (top / step).round() as usize;
    ((0..=n).map(|i| i as f64 * step).collect(), top)
}

/// Decade ticks covering `[min, max]` (both > 0): (ticks, bottom, top).
pub fn log_ticks(min: f64, max: f64) -> (Vec<f64>, f64, f64) {
    let lo = 10f64.powf(min.max(1e-3).log10().floor());
    let hi = 10f64.powf(max.max(lo * 10.0).log10().ceil());
    let mut t = Vec::new();
    let mut v = lo;
    while v <= hi * 1.0001 {
        t.push(v);
        v *= 10.0;
    }
    (t, lo, hi)
}

/// A number as a tick or note shows it: no trailing zeros, thousands separated.
pub fn fmt_num(v: f64) -> String {
    if v.abs() >= 1000.0 {
        let s = format!("{:.0}", v.abs());
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 { format!("-{out}") } else { out }
    } else if v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}").trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A line chart as an SVG element: axes with ticks, one polyline per series, and a legend under the
/// plot (one row per series, clear of the data).
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series<'_>]) -> String {
    chart(&Chart { title, caption: "", x_label, y_label, series, limits: &[], markers: &[], log_y: false, integer: false, y_top: None })
}

/// `line_chart` with events marked on the time axis.
pub fn marked_chart(title: &str, x_label: &str, y_label: &str, series: &[Series<'_>], markers: &[(f64, String)]) -> String {
    chart(&Chart { title, caption: "", x_label, y_label, series, limits: &[], markers, log_y: false, integer: false, y_top: None })
}

/// Draws a chart.
pub fn chart(c: &Chart<'_>) -> String {
    let caption: Vec<&str> = c.caption.lines().filter(|l| !l.is_empty()).take(2).collect();
    let (w, ml, mr) = (660.0, 64.0, 24.0);
    let mt = 30.0 + 14.0 * caption.len() as f64 + 18.0;
    let plot = 200.0;
    let axis_y = mt + plot;
    let all: Vec<(f64, f64)> = c.series.iter().flat_map(|s| s.points.iter().copied()).filter(|p| p.1.is_finite()).collect();
    let xmax_data = c.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).fold(1.0f64, f64::max);
    let (xticks, xmax) = nice_ticks(xmax_data, false);
    let data_max = all.iter().map(|p| p.1).fold(0.0f64, f64::max);
    // A limit within 1.5x of the data is drawn and scales the axis; above that it would flatten the
    // data, so it is a note.
    let (drawn, off): (Vec<&Limit<'_>>, Vec<&Limit<'_>>) =
        c.limits.iter().filter(|l| l.value > 0.0).partition(|l| data_max == 0.0 || l.value <= 1.5 * data_max);
    let ymax_in = drawn.iter().map(|l| l.value).fold(data_max, f64::max);
    let (yticks, ylo, yhi) = if c.log_y {
        let pos_min = all.iter().map(|p| p.1).filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
        let min = if pos_min.is_finite() { pos_min } else { 0.1 };
        log_ticks(min, ymax_in.max(min))
    } else {
        let (t, top) = match c.y_top {
            Some(top) if ymax_in <= top => nice_ticks(top, c.integer),
            _ => nice_ticks(ymax_in * 1.05, c.integer),
        };
        (t, 0.0, top)
    };
    let x = |v: f64| ml + v / xmax * (w - ml - mr);
    let y = |v: f64| {
        let f = if c.log_y { (v.max(ylo).log10() - ylo.log10()) / (yhi.log10() - ylo.log10()) } else { (v - ylo) / (yhi - ylo) };
        axis_y - f.clamp(0.0, 1.0) * plot
    };
    // Markers: numbered badges in rows so that none overlaps its neighbour.
    let mut rows_end: Vec<f64> = Vec::new();
    let mut badges = Vec::new();
    for (k, (mx, _)) in c.markers.iter().enumerate() {
        if *mx > xmax {
            continue;
        }
        let px = x(*mx);
        let row = rows_end.iter().position(|end| px - 9.0 > *end).unwrap_or(rows_end.len());
        if row == rows_end.len() {
            rows_end.push(px + 9.0);
        } else {
            rows_end[row] = px + 9.0;
        }
        badges.push((k, px, row));
    }
    let badge_rows = rows_end.len().min(4) as f64;
    let legend_y = axis_y + 38.0 + 14.0 * badge_rows;
    let legend_h = 16.0 * c.series.len() as f64 + 16.0 * c.limits.len() as f64;
    let marker_list = c.markers.iter().filter(|(mx, _)| *mx <= xmax).count();
    let h = legend_y + legend_h + 15.0 * marker_list.min(12) as f64 + 8.0;
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{}">"#,
        esc(c.title)
    );
    let _ = write!(o, r#"<text x="{ml}" y="18" font-size="14" font-weight="bold">{}</text>"#, esc(c.title));
    for (i, line) in caption.iter().enumerate() {
        let _ =
            write!(o, r##"<text class="caption" x="{ml}" y="{}" font-size="11" fill="#555">{}</text>"##, 34.0 + 14.0 * i as f64, esc(line));
    }
    let _ = write!(
        o,
        r##"<line x1="{ml}" y1="{axis_y}" x2="{}" y2="{axis_y}" stroke="#333"/><line x1="{ml}" y1="{mt}" x2="{ml}" y2="{axis_y}" stroke="#333"/>"##,
        w - mr
    );
    for v in &yticks {
        let _ = write!(
            o,
            r##"<text class="ytick" x="{}" y="{}" font-size="10" text-anchor="end">{}</text><line x1="{ml}" y1="{}" x2="{}" y2="{}" stroke="#e3e3e3"/>"##,
            ml - 4.0,
            y(*v) + 3.0,
            fmt_num(*v),
            y(*v),
            w - mr,
            y(*v)
        );
    }
    for v in &xticks {
        let _ = write!(
            o,
            r#"<text class="xtick" x="{}" y="{}" font-size="10" text-anchor="middle">{}</text>"#,
            x(*v),
            axis_y + 13.0,
            fmt_num(*v)
        );
    }
    let _ = write!(
        o,
        r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">{}</text>"#,
        (ml + w - mr) / 2.0,
        axis_y + 27.0,
        esc(c.x_label)
    );
    let mid = (mt + axis_y) / 2.0;
    let y_label = if c.log_y { format!("{} (log)", c.y_label) } else { c.y_label.to_string() };
    let _ = write!(
        o,
        r#"<text x="12" y="{mid}" font-size="11" transform="rotate(-90 12 {mid})" text-anchor="middle">{}</text>"#,
        esc(&y_label)
    );
    for (i, s) in c.series.iter().enumerate() {
        // A point without a value (NaN: nothing to measure that second) breaks the line instead
        // of dragging it to the floor; zero on a log axis sits on the floor.
        let mut d = String::new();
        let finite: Vec<bool> = s.points.iter().map(|p| p.1.is_finite()).collect();
        for (k, &(a, b)) in s.points.iter().enumerate() {
            if !finite[k] {
                continue;
            }
            let joined = k > 0 && finite[k - 1];
            let alone = !joined && !finite.get(k + 1).copied().unwrap_or(false);
            if alone {
                // A value between two gaps: a short dash, so it shows.
                let _ = write!(d, "M{:.1},{:.1} h6 ", x(a) - 3.0, y(b));
            } else {
                let _ = write!(d, "{}{:.1},{:.1} ", if joined { "L" } else { "M" }, x(a), y(b));
            }
        }
        let _ = write!(
            o,
            r#"<path class="series" data-label="{}" data-points="{}" fill="none" stroke="{}" stroke-width="2"{} d="{}"/>"#,
            esc(s.label),
            s.points.len(),
            s.color,
            // Every other line dashed, so lines that coincide (A and AAAA) both stay visible.
            if i % 2 == 1 { r#" stroke-dasharray="7 4""# } else { "" },
            d.trim_end()
        );
        let ly = legend_y + 16.0 * i as f64;
        let _ = write!(
            o,
            r#"<rect x="{ml}" y="{ly}" width="10" height="10" fill="{}"/><text x="{}" y="{}" font-size="11">{}</text>"#,
            s.color,
            ml + 14.0,
            ly + 9.0,
            esc(s.label)
        );
    }
    for (i, l) in c.limits.iter().enumerate() {
        let ly = legend_y + 16.0 * (c.series.len() + i) as f64;
        if drawn.iter().any(|d| std::ptr::eq(*d, l)) {
            let _ = write!(
                o,
                r##"<line class="limit" data-label="{lab}" x1="{ml}" y1="{v:.1}" x2="{}" y2="{v:.1}" stroke="#000" stroke-width="1.5" stroke-dasharray="2 2"/><line x1="{ml}" y1="{}" x2="{}" y2="{}" stroke="#000" stroke-dasharray="2 2"/><text x="{}" y="{}" font-size="11">{lab}: {}</text>"##,
                w - mr,
                ly + 5.0,
                ml + 10.0,
                ly + 5.0,
                ml + 14.0,
                ly + 9.0,
                fmt_num(l.value),
                lab = esc(l.label),
                v = y(l.value),
            );
        } else if off.iter().any(|d| std::ptr::eq(*d, l)) {
            let _ = write!(
                o,
                r##"<text class="limit-off" data-label="{lab}" x="{ml}" y="{}" font-size="11" fill="#555">↑ {lab}: {} (off scale, {}x the highest value)</text>"##,
                ly + 9.0,
                fmt_num(l.value),
                fmt_num((l.value / data_max.max(1e-9)).round()),
                lab = esc(l.label),
            );
        }
    }
    for &(k, px, row) in &badges {
        let (_, label) = &c.markers[k];
        let row = (row as f64).min(badge_rows - 1.0);
        let by = axis_y + 36.0 + 14.0 * row;
        let _ = write!(
            o,
            r##"<g class="marker" data-label="{l}"><title>{l}</title><line x1="{px:.1}" y1="{mt}" x2="{px:.1}" y2="{axis_y}" stroke="#8e44ad" stroke-dasharray="4 3"/><circle cx="{px:.1}" cy="{cy:.1}" r="6.5" fill="#8e44ad"/><text x="{px:.1}" y="{ty:.1}" font-size="9" fill="#fff" text-anchor="middle">{n}</text></g>"##,
            l = esc(label),
            cy = by - 3.5,
            ty = by,
            n = k + 1
        );
    }
    if all.is_empty() {
        let _ = write!(
            o,
            r##"<text class="no-data" x="{}" y="{}" font-size="12" fill="#777" text-anchor="middle">no data in this run</text>"##,
            (ml + w - mr) / 2.0,
            mt + plot / 2.0
        );
    }
    let list_y = legend_y + legend_h + 4.0;
    for (i, (k, (mx, label))) in c.markers.iter().enumerate().filter(|(_, (mx, _))| *mx <= xmax).take(12).enumerate() {
        let _ = write!(
            o,
            r##"<text class="marker-label" x="{ml}" y="{}" font-size="11" fill="#8e44ad">{} · {} s · {}</text>"##,
            list_y + 15.0 * i as f64 + 9.0,
            k + 1,
            fmt_num((mx * 10.0).round() / 10.0),
            esc(label)
        );
    }
    o.push_str("</svg>");
    o
}

/// Wraps sections in a page.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}td.num{{text-align:right;font-variant-numeric:tabular-nums}}.chart{{margin:8px 0;display:block}}code{{background:#f4f4f4;padding:1px 4px}}</style></head><body><h1>{t}</h1>{body}</body></html>",
        t = esc(title)
    )
}

pub fn escape(s: &str) -> String {
    esc(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_carries_its_series_and_points() {
        let svg = line_chart("p99", "s", "ms", &[Series { label: "failure", color: "#c00", points: vec![(1.0, 5000.0), (2.0, 12.0)] }]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains(r#"data-label="failure" data-points="2""#));
        assert!(svg.contains(r#"d="M"#));
    }

    #[test]
    fn ticks_are_round_numbers_and_counts_are_whole() {
        assert_eq!(nice_ticks(5507.0, false).0, vec![0.0, 2000.0, 4000.0, 6000.0]);
        assert_eq!(nice_ticks(4130.0, false).1, 5000.0);
        assert_eq!(nice_ticks(3.0, true).0, vec![0.0, 1.0, 2.0, 3.0]);
        assert!(nice_ticks(2.2, true).0.iter().all(|t| t.fract() == 0.0));
        assert_eq!(log_ticks(0.04, 5002.0), (vec![0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0], 0.01, 10000.0));
        assert_eq!(
            (fmt_num(262144.0), fmt_num(0.25), fmt_num(2.5), fmt_num(40.0)),
            ("262,144".into(), "0.25".into(), "2.5".into(), "40".into())
        );
    }

    #[test]
    fn a_limit_far_above_the_data_is_a_note_and_one_near_it_a_line() {
        let s = [Series { label: "node 0", color: "#c00", points: vec![(0.0, 3000.0), (10.0, 3232.0)] }];
        let far = [Limit { label: "nf_conntrack_max", value: 262_144.0 }];
        let svg = chart(&Chart {
            title: "t",
            caption: "",
            x_label: "s",
            y_label: "n",
            series: &s,
            limits: &far,
            markers: &[],
            log_y: false,
            integer: true,
            y_top: None,
        });
        assert!(svg.contains("class=\"limit-off\"") && svg.contains("262,144 (off scale, 81x"), "{svg}");
        assert!(!svg.contains("class=\"limit\""));
        let near = [Limit { label: "ENI limit", value: 4000.0 }];
        let svg = chart(&Chart {
            title: "t",
            caption: "",
            x_label: "s",
            y_label: "n",
            series: &s,
            limits: &near,
            markers: &[],
            log_y: false,
            integer: true,
            y_top: None,
        });
        assert!(svg.contains("class=\"limit\" data-label=\"ENI limit\""));
    }

    #[test]
    fn markers_close_together_go_to_different_rows() {
        let s = [Series { label: "a", color: "#c00", points: vec![(0.0, 1.0), (60.0, 2.0)] }];
        let m = vec![(20.0, "kill_replica: 0".to_string()), (20.2, "replica created".to_string()), (40.0, "x".to_string())];
        let svg = chart(&Chart {
            title: "t",
            caption: "",
            x_label: "s",
            y_label: "n",
            series: &s,
            limits: &[],
            markers: &m,
            log_y: false,
            integer: false,
            y_top: None,
        });
        let cy: Vec<&str> = svg.match_indices("<circle cx=").map(|(i, _)| &svg[i..i + 40]).collect();
        let rows: Vec<f64> = cy.iter().filter_map(|c| c.split("cy=\"").nth(1)?.split('"').next()?.parse().ok()).collect();
        assert_eq!(rows.len(), 3);
        assert!(rows[0] != rows[1] && rows[0] == rows[2], "{rows:?}");
        assert!(svg.contains("1 · 20 s · kill_replica: 0") && svg.contains("2 · 20.2 s · replica created"));
    }
}
