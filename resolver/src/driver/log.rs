//! Logging: the `log` plugin's line per query, and throttling of per-packet warnings.

use std::collections::BTreeMap;
use std::time::Duration;

/// `warn!` through the worker's `LogThrottle`, keyed by call site.
macro_rules! warn_throttled {
    ($shared:expr, $key:literal, $($arg:tt)+) => {
        let held = $shared.log_throttle.borrow_mut().allow($key, $shared.now());
        match held {
            Some(0) => warn!($($arg)+),
            Some(held) => warn!(held_back = held, $($arg)+),
            None => {}
        }
    };
}

/// Warnings that can fire per packet or per connection (a flood, a dead network, a full socket buffer)
/// are let through `BURST` times per key per second; the next one let through says how many were held
/// back, so nothing is hidden and the log cannot become the outage.
#[derive(Default)]
pub(super) struct LogThrottle {
    /// key → (window start, let through in it, held back since the last one let through).
    windows: BTreeMap<&'static str, (Duration, u32, u64)>,
}

impl LogThrottle {
    const BURST: u32 = 10;

    /// Some(held back so far) if this one may be logged.
    pub(super) fn allow(&mut self, key: &'static str, now: Duration) -> Option<u64> {
        let w = self.windows.entry(key).or_insert((now, 0, 0));
        if now.saturating_sub(w.0) >= Duration::from_secs(1) {
            *w = (now, 0, w.2);
        }
        if w.1 < Self::BURST {
            w.1 += 1;
            Some(std::mem::take(&mut w.2))
        } else {
            w.2 += 1;
            None
        }
    }
}

/// Writes the `log` plugin's lines the core has ready to standard output, each after `[INFO] `,
/// as CoreDNS does (its query log is not part of the process's own log on stderr).
pub(super) fn write_query_log(shared: &super::Shared) {
    use std::io::Write;
    let mut server = shared.server.borrow_mut();
    let Some(first) = server.poll_query_log() else { return };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "[INFO] {first}");
    while let Some(line) = server.poll_query_log() {
        let _ = writeln!(out, "[INFO] {line}");
    }
}

#[cfg(test)]
mod throttle_tests {
    use std::time::Duration;

    use super::LogThrottle;

    #[test]
    fn ten_a_second_per_key_then_a_count_of_what_was_held_back() {
        let mut t = LogThrottle::default();
        let s = Duration::from_secs;
        let let_through = (0..25).filter(|_| t.allow("udp-send", s(0)).is_some()).count();
        assert_eq!(let_through, 10);
        assert_eq!(t.allow("tcp-limit", s(0)), Some(0), "keys are separate");
        assert_eq!(t.allow("udp-send", Duration::from_millis(999)), None);
        assert_eq!(t.allow("udp-send", s(1)), Some(16), "the next one says how many were held back");
        assert_eq!(t.allow("udp-send", s(1)), Some(0));
    }
}
