//! `cargo xtask report-check [HTML...]`: the simulator's reports as a person sees them, in headless
//! Chromium. Without arguments it writes the reports people read (a run with faults, a compare,
//! the incident suite on a few incidents) into `target/report-check/`; each is opened with a
//! script that measures what Chromium laid out: text that overlaps other text in a chart, text
//! outside its chart, fault badges on top of each other, a chart without a drawn line. A
//! screenshot of every report goes beside it (the artefacts to look at). Skips, saying so, where
//! Chromium is not installed.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Runs in the page once it is laid out; writes the problems it finds into `#report-check`.
const CHECK_JS: &str = r#"<script>
(function () {
  const problems = [];
  const charts = document.querySelectorAll('svg.chart');
  const overlap = (a, b) => Math.max(0, Math.min(a.right, b.right) - Math.max(a.left, b.left)) * Math.max(0, Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top));
  charts.forEach((svg) => {
    const name = svg.getAttribute('aria-label');
    const box = svg.getBoundingClientRect();
    const texts = [...svg.querySelectorAll('text')].filter((t) => t.textContent.trim() !== '' && !t.closest('g.marker'));
    const rects = texts.map((t) => [t.textContent.trim(), t.getBoundingClientRect()]);
    for (const [s, r] of rects) {
      if (r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1) {
        problems.push(`${name}: "${s}" outside its chart`);
      }
    }
    for (let i = 0; i < rects.length; i++) {
      for (let j = i + 1; j < rects.length; j++) {
        if (overlap(rects[i][1], rects[j][1]) > 4) {
          problems.push(`${name}: "${rects[i][0]}" overlaps "${rects[j][0]}"`);
        }
      }
    }
    const badges = [...svg.querySelectorAll('g.marker circle')].map((c) => c.getBoundingClientRect());
    for (let i = 0; i < badges.length; i++) {
      for (let j = i + 1; j < badges.length; j++) {
        if (overlap(badges[i], badges[j]) > 4) problems.push(`${name}: fault badges ${i + 1} and ${j + 1} overlap`);
      }
    }
    const drawn = [...svg.querySelectorAll('path.series')].some((p) => p.getTotalLength() > 0);
    if (!drawn && !svg.querySelector('.no-data')) problems.push(`${name}: no line drawn, and no "no data" note`);
  });
  const pre = document.createElement('pre');
  pre.id = 'report-check';
  pre.textContent = JSON.stringify({ charts: charts.length, height: document.documentElement.scrollHeight, problems });
  document.body.appendChild(pre);
})();
</script>"#;

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
}

fn headless(browser: &str, extra: &[String], url: &str) -> Result<String, String> {
    let profile = std::env::temp_dir().join(format!("ndots-report-check-{}", std::process::id()));
    let out = Command::new("timeout")
        .arg("120")
        .arg(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", profile.display()),
        ])
        .args(extra)
        .arg(url)
        .output()
        .map_err(|e| format!("{browser}: {e}"))?;
    let _ = std::fs::remove_dir_all(&profile);
    if !out.status.success() {
        return Err(format!("{browser} failed: {}", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Checks one report: the problems found, or why it could not be checked; writes its screenshot.
pub fn check_file(browser: &str, html: &Path) -> Result<(usize, Vec<String>, PathBuf), String> {
    let text = std::fs::read_to_string(html).map_err(|e| format!("{}: {e}", html.display()))?;
    let probe = html.with_extension("check.html");
    std::fs::write(&probe, text.replace("</body>", &format!("{CHECK_JS}</body>"))).map_err(|e| format!("{}: {e}", probe.display()))?;
    let url = format!("file://{}", std::fs::canonicalize(&probe).map_err(|e| e.to_string())?.display());
    let dom = headless(browser, &["--window-size=1100,900".into(), "--dump-dom".into()], &url)?;
    let _ = std::fs::remove_file(&probe);
    let json = dom
        .split("<pre id=\"report-check\">")
        .nth(1)
        .and_then(|s| s.split("</pre>").next())
        .ok_or_else(|| format!("{}: the check did not run", html.display()))?
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    let v: serde_json::Value = serde_json::from_str(&json).map_err(|e| format!("{}: {e}: {json}", html.display()))?;
    let charts = v["charts"].as_u64().unwrap_or(0) as usize;
    let problems: Vec<String> = v["problems"].as_array().into_iter().flatten().filter_map(|p| p.as_str().map(str::to_string)).collect();
    let height = v["height"].as_u64().unwrap_or(4000).clamp(600, 30_000);
    let png = html.with_extension("png");
    let url = format!("file://{}", std::fs::canonicalize(html).map_err(|e| e.to_string())?.display());
    headless(browser, &[format!("--window-size=1100,{height}"), format!("--screenshot={}", png.display())], &url)?;
    Ok((charts, problems, png))
}

/// Writes the reports to check into `dir`.
fn write_reports(dir: &Path) -> Result<Vec<PathBuf>, ExitCode> {
    let bin = crate::build_sim()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let files = root.join("scenarios/files");
    let d = dir.display().to_string();
    let runs: [Vec<String>; 2] = [
        vec!["run".into(), files.join("s17-stale-udp-conntrack.yaml").display().to_string(), "--report".into(), d.clone()],
        vec![
            "compare".into(),
            files.join("s10-conntrack-table-full.yaml").display().to_string(),
            files.join("s10-conntrack-table-full.fixed.yaml").display().to_string(),
            "--report".into(),
            d.clone(),
        ],
    ];
    for args in &runs {
        // Failing expectations exit 1: the report is written all the same.
        let st = Command::new(&bin).args(args).stdout(std::process::Stdio::null()).status();
        if !matches!(st.map(|s| s.code()), Ok(Some(0 | 1))) {
            eprintln!("report-check: ndots-sim {} did not write its report", args.join(" "));
            return Err(ExitCode::FAILURE);
        }
    }
    crate::run(
        "incidents S1 S4 S10 S11 S17",
        crate::cargo().args(["run", "--release", "-q", "-p", "scenarios", "--bin", "incidents", "--", "S1", "S4", "S10", "S11", "S17"]),
    )?;
    let target = std::env::var("CARGO_TARGET_DIR").map_or_else(|_| root.join("target"), PathBuf::from);
    let incidents = target.join("ndots-report/incidents.html");
    let copy = dir.join("incidents.html");
    std::fs::copy(&incidents, &copy).map_err(|e| {
        eprintln!("report-check: {}: {e}", incidents.display());
        ExitCode::FAILURE
    })?;
    Ok(vec![dir.join("s17-stale-udp-conntrack.html"), dir.join("s10-conntrack-table-full-compare.html"), copy])
}

pub fn check(args: &[String]) -> ExitCode {
    let Some(browser) = chromium() else {
        eprintln!("report-check: skipped: no chromium (apt-get install --no-install-recommends chromium)");
        return ExitCode::SUCCESS;
    };
    let files: Vec<PathBuf> = if args.is_empty() {
        let target = std::env::var("CARGO_TARGET_DIR").map_or_else(|_| PathBuf::from("target"), PathBuf::from);
        let dir = target.join("report-check");
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("report-check: {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
        match write_reports(&dir) {
            Ok(f) => f,
            Err(c) => return c,
        }
    } else {
        args.iter().map(PathBuf::from).collect()
    };
    let mut bad = 0;
    for f in &files {
        match check_file(browser, f) {
            Ok((charts, problems, png)) => {
                eprintln!("report-check: {}: {charts} charts, {} problems; screenshot {}", f.display(), problems.len(), png.display());
                for p in &problems {
                    eprintln!("  {p}");
                }
                if charts == 0 || !problems.is_empty() {
                    bad += 1;
                }
            }
            Err(e) => {
                eprintln!("report-check: {e}");
                bad += 1;
            }
        }
    }
    if bad == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
