//! Crash-loop back-off: how long a replica that keeps exiting waits before its next start.
//!
//! Like Kubernetes' CrashLoopBackOff: the first restart waits 1 s, each further one twice as long
//! up to 5 minutes, and a replica that ran healthy for 10 minutes starts over at 1 s.

use std::time::Duration;

/// The first wait.
pub(crate) const INITIAL: Duration = Duration::from_secs(1);

/// The longest wait.
pub(crate) const MAX: Duration = Duration::from_secs(300);

/// A run at least this long resets the back-off.
pub(crate) const HEALTHY_RESET: Duration = Duration::from_secs(600);

/// The back-off of one replica.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: INITIAL }
    }
}

impl Backoff {
    /// The wait before the next start, given how long the last run lasted.
    pub fn after_run(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= HEALTHY_RESET {
            self.next = INITIAL;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(MAX);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_five_minutes_and_reset_after_ten_healthy_minutes() {
        let mut backoff = Backoff::default();
        let waits: Vec<u64> = (0..11)
            .map(|_| backoff.after_run(Duration::from_secs(1)).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff.after_run(Duration::from_secs(600)).as_secs(), 1);
        assert_eq!(backoff.after_run(Duration::ZERO).as_secs(), 2);
    }
}
