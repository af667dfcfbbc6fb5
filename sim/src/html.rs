//! Self-contained HTML reports with inline SVG charts (no network needed to open them).

use std::fmt::Write as _;

/// One line on a chart.
pub struct Series<'a> {
    pub label: &'a str,
    pub color: &'a str,
    pub points: Vec<(f64, f64)>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A line chart as an SVG element: axes with ticks, one polyline per series, and a legend under the
/// plot (one row per series, clear of the data).
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series<'_>]) -> String {
    marked_chart(title, x_label, y_label, series, &[])
}

/// `line_chart` with events marked on the time axis: a dashed vertical line per (x, label), the
/// label on hover and numbered above the plot.
pub fn marked_chart(title: &str, x_label: &str, y_label: &str, series: &[Series<'_>], markers: &[(f64, String)]) -> String {
    let (w, plot_h, ml, mr, mt, mb) = (640.0, 260.0, 60.0, 20.0, 30.0, 40.0);
    let h = plot_h + 16.0 * series.len() as f64 + 6.0;
    let axis_y = plot_h - mb;
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.iter().copied()).collect();
    let xmax = all.iter().map(|p| p.0).fold(1.0f64, f64::max);
    let ymax = all.iter().map(|p| p.1).fold(0.0f64, f64::max).max(1e-9) * 1.1;
    let x = |v: f64| ml + v / xmax * (w - ml - mr);
    let y = |v: f64| axis_y - v / ymax * (axis_y - mt);
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{}">"#,
        esc(title)
    );
    let _ = write!(o, r#"<text x="{ml}" y="18" font-size="14" font-weight="bold">{}</text>"#, esc(title));
    let _ = write!(
        o,
        r##"<line x1="{ml}" y1="{axis_y}" x2="{}" y2="{axis_y}" stroke="#333"/><line x1="{ml}" y1="{mt}" x2="{ml}" y2="{axis_y}" stroke="#333"/>"##,
        w - mr
    );
    for i in 0..=4 {
        let v = ymax * f64::from(i) / 4.0;
        let _ = write!(
            o,
            r##"<text x="{}" y="{}" font-size="10" text-anchor="end">{}</text><line x1="{ml}" y1="{}" x2="{}" y2="{}" stroke="#ddd"/>"##,
            ml - 4.0,
            y(v) + 3.0,
            fmt_num(v),
            y(v),
            w - mr,
            y(v)
        );
        let xv = xmax * f64::from(i) / 4.0;
        let _ = write!(o, r#"<text x="{}" y="{}" font-size="10" text-anchor="middle">{}</text>"#, x(xv), axis_y + 14.0, fmt_num(xv));
    }
    let _ =
        write!(o, r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">{}</text>"#, (ml + w - mr) / 2.0, axis_y + 30.0, esc(x_label));
    let mid = (mt + axis_y) / 2.0;
    let _ =
        write!(o, r#"<text x="12" y="{mid}" font-size="11" transform="rotate(-90 12 {mid})" text-anchor="middle">{}</text>"#, esc(y_label));
    for (i, s) in series.iter().enumerate() {
        let pts: Vec<String> = s.points.iter().map(|&(a, b)| format!("{:.1},{:.1}", x(a), y(b))).collect();
        let _ = write!(
            o,
            r#"<polyline class="series" data-label="{}" data-points="{}" fill="none" stroke="{}" stroke-width="2"{} points="{}"/>"#,
            esc(s.label),
            s.points.len(),
            s.color,
            // Every other line dashed, so lines that coincide (A and AAAA) both stay visible.
            if i % 2 == 1 { r#" stroke-dasharray="7 4""# } else { "" },
            pts.join(" ")
        );
        let ly = plot_h + 16.0 * i as f64;
        let _ = write!(
            o,
            r#"<rect x="{ml}" y="{ly}" width="10" height="10" fill="{}"/><text x="{}" y="{}" font-size="11">{}</text>"#,
            s.color,
            ml + 14.0,
            ly + 9.0,
            esc(s.label)
        );
    }
    for (k, (mx, label)) in markers.iter().enumerate() {
        if *mx > xmax {
            continue;
        }
        let _ = write!(
            o,
            r##"<g class="marker" data-label="{l}"><title>{l}</title><line x1="{x:.1}" y1="{mt}" x2="{x:.1}" y2="{axis_y}" stroke="#8e44ad" stroke-dasharray="4 3"/><text x="{x:.1}" y="{ty}" font-size="9" fill="#8e44ad" text-anchor="middle">{n}</text></g>"##,
            l = esc(label),
            x = x(*mx),
            ty = mt - 2.0,
            n = k + 1
        );
    }
    o.push_str("</svg>");
    o
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Wraps sections in a page.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}.chart{{margin:8px 0}}</style></head><body><h1>{t}</h1>{body}</body></html>",
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
        assert!(svg.contains("<polyline"));
    }
}
