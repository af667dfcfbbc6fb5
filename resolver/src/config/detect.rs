//! The `detect` plugin's directive (ndots): which detectors run, the upstream packet budget, how
//! often node-local mode scans conntrack (`crate::detect::DetectConfig`).

use crate::detect::{DetectConfig, KINDS};

/// `detect [off]` and its block: `off NAME...` (or `off` alone: all), `upstream_budget N`,
/// `conntrack_scan DURATION`.
pub fn parse_detect(args: &[String], block: &[(String, Vec<String>)]) -> Result<DetectConfig, String> {
    let mut c = DetectConfig::default();
    match args {
        [] => {}
        [a] if a == "off" => c.on = [false; KINDS.len()],
        _ => return Err(format!("detect: unexpected arguments {args:?}; expected `detect`, `detect off` or a block")),
    }
    for (key, vals) in block {
        match key.as_str() {
            "off" if vals.is_empty() => c.on = [false; KINDS.len()],
            "off" => {
                for v in vals {
                    let i = KINDS
                        .iter()
                        .position(|k| k == v)
                        .ok_or_else(|| format!("detect: unknown detector '{v}'; expected one of {}", KINDS.join(", ")))?;
                    c.on[i] = false;
                }
            }
            "upstream_budget" => {
                let [v] = &vals[..] else { return Err("detect: upstream_budget takes one number, packets per second".into()) };
                let n: u32 = v.parse().map_err(|_| format!("detect: upstream_budget '{v}': expected packets per second, such as 1024"))?;
                c.upstream_budget = Some(n);
            }
            "conntrack_scan" => {
                let d = match &vals[..] {
                    [v] => super::parse_duration(v).filter(|d| !d.is_zero()),
                    _ => None,
                };
                c.conntrack_scan =
                    d.ok_or_else(|| format!("detect: conntrack_scan {}: expected one duration, such as 10s", vals.join(" ")))?;
            }
            k => return Err(format!("detect: unknown option '{k}'; expected off, upstream_budget or conntrack_scan")),
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugin_turns_detectors_off_and_sets_the_budget() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_detect(&[], &[]).expect("ok"), DetectConfig::default());
        assert_eq!(parse_detect(&s(&["off"]), &[]).expect("ok").on, [false; KINDS.len()]);
        let scan = parse_detect(&[], &[("conntrack_scan".into(), s(&["2s"]))]).expect("ok");
        assert_eq!(scan.conntrack_scan, std::time::Duration::from_secs(2));
        assert!(parse_detect(&[], &[("conntrack_scan".into(), s(&["often"]))]).expect_err("bad").contains("10s"));
        let c = parse_detect(&[], &[("off".into(), s(&["race", "retransmit"])), ("upstream_budget".into(), s(&["1024"]))]).expect("ok");
        assert_eq!((c.on, c.upstream_budget), ([true, false, true, true, false, true], Some(1024)));
        assert!(parse_detect(&[], &[("off".into(), s(&["walks"]))]).expect_err("unknown").contains("search_walk"));
        assert!(parse_detect(&[], &[("upstream_budget".into(), s(&["lots"]))]).is_err());
    }
}
