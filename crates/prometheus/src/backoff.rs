//! Back-off of a failing query: exponential with jitter, capped, reset by the first success.
//!
//! A Prometheus that is down or overloaded is not asked again at every tick: after `n`
//! consecutive failures the query waits between half and all of `initial × 2ⁿ⁻¹` (at most
//! `max`) before it is sent again. The jitter spreads the retries of many lull processes.

use std::time::Duration;

use tokio::time::Instant;

/// How long failing queries wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Wait after the first failure (before jitter). Default 1 s.
    pub initial: Duration,
    /// Longest wait. Default 30 s.
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

/// The back-off state of one query.
#[derive(Debug, Clone, Default)]
pub(crate) struct Backoff {
    failures: u32,
    retry_at: Option<Instant>,
}

impl Backoff {
    /// When the query may be sent again, if it must wait.
    pub fn waiting_until(&self, now: Instant) -> Option<Instant> {
        self.retry_at.filter(|at| *at > now)
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The query answered: send it at every tick again.
    pub fn succeeded(&mut self) {
        self.failures = 0;
        self.retry_at = None;
    }

    /// The query failed at `now`; returns how long it waits.
    pub fn failed(&mut self, now: Instant, config: &BackoffConfig) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let wait = jittered(delay(self.failures, config), rand::random_range(0.5..=1.0));
        self.retry_at = Some(now + wait);
        wait
    }
}

/// `initial × 2ⁿ⁻¹`, at most `max`.
fn delay(failures: u32, config: &BackoffConfig) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    config
        .initial
        .saturating_mul(1 << doublings)
        .min(config.max)
}

/// `delay × factor`, where the factor is drawn from `0.5..=1`.
fn jittered(delay: Duration, factor: f64) -> Duration {
    delay.mul_f64(factor.clamp(0.5, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: BackoffConfig = BackoffConfig {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(30),
    };

    #[test]
    fn delays_double_up_to_the_cap() {
        let delays: Vec<u64> = (1..=8).map(|n| delay(n, &CONFIG).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(delay(u32::MAX, &CONFIG), CONFIG.max);
    }

    #[test]
    fn jitter_stays_between_half_and_all_of_the_delay() {
        let d = Duration::from_secs(8);
        assert_eq!(jittered(d, 0.5), Duration::from_secs(4));
        assert_eq!(jittered(d, 1.0), d);
        assert_eq!(jittered(d, 7.0), d);
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_ends_the_wait() {
        let mut backoff = Backoff::default();
        let now = Instant::now();
        assert_eq!(backoff.waiting_until(now), None);
        let wait = backoff.failed(now, &CONFIG);
        assert!(wait >= Duration::from_millis(500) && wait <= CONFIG.initial);
        assert_eq!(backoff.waiting_until(now), Some(now + wait));
        assert_eq!(backoff.waiting_until(now + wait), None);
        let second = backoff.failed(now, &CONFIG);
        assert!(second >= CONFIG.initial && second <= 2 * CONFIG.initial);
        assert_eq!(backoff.failures(), 2);
        backoff.succeeded();
        assert_eq!(backoff.failures(), 0);
        assert_eq!(backoff.waiting_until(now), None);
    }
}
