//! A sliding window of request latencies, for `requestDuration` targets.
//!
//! The activators' histograms are exact to 1% over an hour's range, which makes each one tens of
//! kilobytes; a stable window of them per deployment would cost megabytes and a merge of sixty
//! histograms per decision. The window keeps instead one running count per 2% bucket and, per
//! observation, only the buckets it touched, so a decision reads a summary in one pass and an
//! observation leaving the window is subtracted exactly (integer counts, no drift).

use std::collections::VecDeque;

use lull_core::LatencyHistogram;
use lull_spec::Summary;
use tokio::time::Instant;

/// Each bucket's upper edge is 2% above its lower one: summaries are within 2% of the
/// activators' own, far inside any tolerance band.
const GROWTH: f64 = 1.02;

/// Latencies up to an hour (the activators' histogram bound), in microseconds.
const MAX_MICROS: f64 = 3.6e9;

fn bucket_of(micros: u64) -> usize {
    let micros = (micros.max(1) as f64).min(MAX_MICROS);
    // Saturating `as`: ln(1) = 0 gives bucket 0, the bound gives the last bucket.
    (micros.ln() / GROWTH.ln()).floor() as usize
}

fn bucket_count() -> usize {
    bucket_of(MAX_MICROS as u64) + 1
}

/// The highest latency a bucket stands for, in microseconds.
fn upper_micros(bucket: usize) -> f64 {
    GROWTH.powi(bucket as i32 + 1)
}

/// The highest latency a bucket stands for, in seconds.
fn upper_secs(bucket: usize) -> f64 {
    upper_micros(bucket) / 1e6
}

/// One observation's latencies.
#[derive(Debug, Clone)]
struct Slice {
    at: Instant,
    buckets: Vec<(u16, u32)>,
    count: u64,
    sum_secs: f64,
    max_secs: f64,
}

/// Latencies of the requests completed in the window.
#[derive(Debug, Clone, Default)]
pub(super) struct LatencyWindow {
    /// Requests per bucket over every slice; empty until a latency is seen.
    counts: Vec<u32>,
    total: u64,
    slices: VecDeque<Slice>,
}

impl LatencyWindow {
    /// Adds the latencies of an observation that ended at `at`.
    pub(super) fn push(&mut self, at: Instant, histogram: &LatencyHistogram) {
        let mut buckets: Vec<(u16, u32)> = Vec::new();
        let (mut count, mut sum_secs, mut max_secs) = (0u64, 0.0, 0.0);
        // The activator's buckets come lowest first, so ours are found by walking up from the
        // previous one: multiplications, not a logarithm per bucket.
        let mut bucket: Option<(usize, f64)> = None;
        let last_bucket = bucket_count() - 1;
        for (micros, n) in histogram.recorded() {
            let value = (micros.max(1) as f64).min(MAX_MICROS);
            let (mut b, mut upper) = bucket.unwrap_or_else(|| {
                let b = bucket_of(micros);
                (b, upper_micros(b))
            });
            while value >= upper && b < last_bucket {
                b += 1;
                upper *= GROWTH;
            }
            bucket = Some((b, upper));
            let n32 = u32::try_from(n).unwrap_or(u32::MAX);
            match buckets.last_mut() {
                Some((last, m)) if usize::from(*last) == b => *m = m.saturating_add(n32),
                _ => buckets.push((b as u16, n32)),
            }
            count += n;
            let secs = micros as f64 / 1e6;
            sum_secs += secs * n as f64;
            max_secs = secs;
        }
        if count == 0 {
            return;
        }
        if self.counts.is_empty() {
            self.counts = vec![0; bucket_count()];
        }
        for &(b, n) in &buckets {
            let c = &mut self.counts[usize::from(b)];
            *c = c.saturating_add(n);
        }
        self.total += count;
        self.slices.push_back(Slice {
            at,
            buckets,
            count,
            sum_secs,
            max_secs,
        });
    }

    /// Forgets the observations that ended at or before `horizon`.
    pub(super) fn expire(&mut self, horizon: Instant) {
        while let Some(slice) = self.slices.front() {
            if slice.at > horizon {
                break;
            }
            for &(b, n) in &slice.buckets {
                let c = &mut self.counts[usize::from(b)];
                *c = c.saturating_sub(n);
            }
            self.total = self.total.saturating_sub(slice.count);
            self.slices.pop_front();
        }
    }

    /// The window summarised as the target asks, in seconds; `None` when no request completed.
    pub(super) fn summary(&self, summary: Summary) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let quantile = match summary {
            Summary::Average => {
                let sum: f64 = self.slices.iter().map(|s| s.sum_secs).sum();
                return Some(sum / self.total as f64);
            }
            Summary::Max => {
                return self.slices.iter().map(|s| s.max_secs).reduce(f64::max);
            }
            Summary::P50 => 0.50,
            Summary::P95 => 0.95,
            Summary::P99 => 0.99,
        };
        let rank = ((quantile * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (b, &n) in self.counts.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                return Some(upper_secs(b));
            }
        }
        self.counts.iter().rposition(|&n| n > 0).map(upper_secs)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn histogram(values: &[(u64, usize)]) -> LatencyHistogram {
        let mut h = LatencyHistogram::default();
        for &(micros, n) in values {
            for _ in 0..n {
                h.record(micros);
            }
        }
        h
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a / b - 1.0).abs() < 0.03)
    }

    #[test]
    fn summaries_match_the_recorded_latencies() {
        let t0 = Instant::now();
        let mut w = LatencyWindow::default();
        w.push(t0, &histogram(&[(100_000, 90)]));
        w.push(t0 + Duration::from_secs(1), &histogram(&[(1_800_000, 10)]));
        assert!(
            close(w.summary(Summary::P50), 0.1),
            "{:?}",
            w.summary(Summary::P50)
        );
        assert!(
            close(w.summary(Summary::P95), 1.8),
            "{:?}",
            w.summary(Summary::P95)
        );
        assert!(close(w.summary(Summary::P99), 1.8));
        assert!(close(w.summary(Summary::Max), 1.8));
        assert!(close(w.summary(Summary::Average), 0.27));
    }

    #[test]
    fn expired_observations_are_subtracted_exactly() {
        let t0 = Instant::now();
        let mut w = LatencyWindow::default();
        w.push(t0, &histogram(&[(2_000_000, 50)]));
        w.push(t0 + Duration::from_secs(5), &histogram(&[(10_000, 50)]));
        assert!(close(w.summary(Summary::P99), 2.0));
        w.expire(t0);
        assert!(
            close(w.summary(Summary::P99), 0.01),
            "{:?}",
            w.summary(Summary::P99)
        );
        assert!(close(w.summary(Summary::Max), 0.01));
        w.expire(t0 + Duration::from_secs(5));
        assert_eq!(w.summary(Summary::P50), None);
        assert!(w.counts.iter().all(|&n| n == 0));
    }
}
