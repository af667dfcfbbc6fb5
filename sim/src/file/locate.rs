//! Placing errors: serde_yaml_ng's messages with the file's name, a key path found on the
//! block-style text, and `--set KEY.PATH=VALUE` edits made before the file is read.

use super::FileError;

pub(super) fn yaml_error(file: &str, e: &serde_yaml_ng::Error) -> FileError {
    let msg = strip_location(&e.to_string());
    match e.location() {
        Some(l) => FileError::At { file: file.to_string(), line: l.line(), column: l.column(), msg },
        None => FileError::File { file: file.to_string(), msg },
    }
}

/// serde_yaml_ng appends " at line L column C"; the error puts the place first instead.
pub(super) fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(" column ") => msg[..i].to_string(),
        _ => msg.to_string(),
    }
}

/// Where a key path (`["faults", "2", "kill_replica"]`) sits in block-style YAML: 1-based line and
/// column of the deepest segment found. Used for errors that need several values to detect, after
/// serde (which knows positions) has finished. Flow-style maps are not searched into.
pub(super) fn locate(text: &str, path: &[&str]) -> Option<(usize, usize)> {
    // (line, indent, body, starts a sequence item). "- key: v" is an item marker at the dash's
    // indent plus a line "key: v" two columns further in.
    let mut lines: Vec<(usize, usize, &str, bool)> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let body = raw.trim_start();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let indent = raw.len() - body.len();
        if let Some(rest) = body.strip_prefix("- ").or(if body == "-" { Some("") } else { None }) {
            lines.push((n, indent, "", true));
            let rest_trim = rest.trim_start();
            if !rest_trim.is_empty() {
                lines.push((n, indent + 2 + (rest.len() - rest_trim.len()), rest_trim, false));
            }
        } else {
            lines.push((n, indent, body, false));
        }
    }
    let (mut from, mut to) = (0, lines.len());
    let mut best = None;
    for seg in path {
        let Some(child_indent) = lines.get(from..to).and_then(|l| l.first()).map(|l| l.1) else { break };
        let hit = if let Ok(idx) = seg.parse::<usize>() {
            lines[from..to].iter().enumerate().filter(|(_, l)| l.3 && l.1 == child_indent).nth(idx).map(|(i, _)| from + i)
        } else {
            lines[from..to]
                .iter()
                .position(|l| {
                    !l.3 && l.1 == child_indent && (l.2.starts_with(&format!("{seg}:")) || l.2.starts_with(&format!("\"{seg}\":")))
                })
                .map(|i| from + i)
        };
        let Some(h) = hit else { break };
        let (line, indent, _, item) = lines[h];
        best = Some((line + 1, indent + 1));
        // The block under it: following lines indented deeper; a key's list may also sit at the
        // key's own indentation (`pods:` then `- count: 1`), an item ends at its dash's column.
        let start = h + 1;
        let end = lines[start..]
            .iter()
            .position(|l| if item { l.1 <= indent } else { l.1 < indent || (l.1 == indent && !l.3) })
            .map_or(lines.len(), |e| start + e);
        (from, to) = (start, end);
    }
    best
}

/// Applies one `--set a.b.0.c=value` to the document (the value is YAML: `3`, `ipvs`, `null`, `{}`).
pub(super) fn apply_set(doc: &mut serde_yaml_ng::Value, set: &str) -> Result<(), String> {
    use serde_yaml_ng::Value;
    let (path, value) = set.split_once('=').ok_or("expected KEY.PATH=VALUE")?;
    let value: Value = serde_yaml_ng::from_str(value).map_err(|e| format!("value: {e}"))?;
    let mut cur = doc;
    let segs: Vec<&str> = path.split('.').collect();
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        if cur.is_null() {
            *cur = Value::Mapping(serde_yaml_ng::Mapping::new());
        }
        cur = match cur {
            Value::Sequence(items) => {
                let n: usize = seg.parse().map_err(|_| format!("`{seg}`: a list, index it with a number"))?;
                let len = items.len();
                items.get_mut(n).ok_or_else(|| format!("index {n}: the list has {len} entries"))?
            }
            Value::Mapping(m) => {
                if last {
                    m.insert(Value::String(seg.to_string()), value);
                    return Ok(());
                }
                m.entry(Value::String(seg.to_string())).or_insert(Value::Null)
            }
            _ => return Err(format!("`{}` is a value, not a section", segs[..i].join("."))),
        };
        if last {
            *cur = value;
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::locate;

    #[test]
    fn locate_finds_keys_in_lists_indented_or_not() {
        let flush = "version: 1\npods:\n- count: 1\n  rate: 2\n- count: 3\n  rate: 4\nfaults:\n- at: 1s\n";
        assert_eq!(locate(flush, &["pods", "1", "rate"]), Some((6, 3)));
        assert_eq!(locate(flush, &["faults", "0", "at"]), Some((8, 3)));
        let nested = "pods:\n  - count: 1\n    rate: 2\n  - count: 3\n    rate: 4\nexpect:\n  p99_ms_max: 1\n";
        assert_eq!(locate(nested, &["pods", "1", "rate"]), Some((5, 5)));
        assert_eq!(locate(nested, &["expect", "p99_ms_max"]), Some((7, 3)));
        // A key that is not there: the deepest one found.
        assert_eq!(locate(nested, &["pods", "0", "names"]), Some((2, 3)));
        assert_eq!(locate(nested, &["coredns"]), None);
    }
}
