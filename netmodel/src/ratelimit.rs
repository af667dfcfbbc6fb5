//! Token buckets: the AWS VPC resolver's 1024 packets/s per ENI (sources.md#cloud-resolver-limits), or any per-VM budget.
//!
//! "Each network interface in an Amazon VPC has a hard limit of 1024 packets that it can send to the
//! Amazon-provided DNS server every second"; excess is dropped silently and counted in the ENA driver's
//! `linklocal_allowance_exceeded`. The burst size is undocumented: default 1024 [unverified].

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    pub rate_per_sec: f64,
    pub burst: f64,
}

impl Config {
    /// AWS: 1024 packets/s per ENI, burst 1024 (unverified).
    pub const AWS_ENI: Config = Config { rate_per_sec: 1024.0, burst: 1024.0 };
}

#[derive(Debug, Clone)]
pub struct TokenBucket {
    pub cfg: Config,
    tokens: f64,
    last: Duration,
    /// Packets let through.
    pub passed: u64,
    /// `linklocal_allowance_exceeded`.
    pub exceeded: u64,
}

impl TokenBucket {
    pub fn new(cfg: Config) -> TokenBucket {
        TokenBucket { cfg, tokens: cfg.burst, last: Duration::ZERO, passed: 0, exceeded: 0 }
    }

    /// One packet at `now`: true if it may go.
    pub fn allow(&mut self, now: Duration) -> bool {
        let dt = now.saturating_sub(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + dt * self.cfg.rate_per_sec).min(self.cfg.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.passed += 1;
            true
        } else {
            self.exceeded += 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_steady_rate_above_1024_loses_the_excess() {
        let mut b = TokenBucket::new(Config::AWS_ENI);
        // 2048 packets/s for 10 s.
        for i in 0..20_480u64 {
            b.allow(Duration::from_micros(i * 1_000_000 / 2048));
        }
        // Burst 1024 plus 1024/s over ~10 s.
        assert!((11_200..=11_300).contains(&b.passed), "passed {}", b.passed);
        assert_eq!(b.passed + b.exceeded, 20_480);
    }

    proptest! {
        #[test]
        fn never_more_than_burst_plus_rate_times_time(gaps in proptest::collection::vec(0u64..5_000, 1..2000)) {
            let mut b = TokenBucket::new(Config { rate_per_sec: 100.0, burst: 10.0 });
            let mut now = Duration::ZERO;
            for g in gaps {
                now += Duration::from_micros(g);
                b.allow(now);
            }
            prop_assert!(b.passed as f64 <= 10.0 + 100.0 * now.as_secs_f64() + 1e-6);
        }
    }
}
