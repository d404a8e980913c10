//! Samples that scaling decisions are made of.

use hdrhistogram::Histogram;

/// Metrics a [`crate::MetricSource`] measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ResourceMetric {
    /// Cpu use, percent of one core (or of the cpu request).
    Cpu,
    /// Memory use, percent of the limit (or request).
    Memory,
    /// GPU utilisation, percent.
    Gpu,
    /// GPU memory in use, percent.
    GpuMemory,
    /// Request duration in seconds, summarised across every activator (a source that reads the
    /// activators' histograms, such as Prometheus). The autoscaler prefers it to its own
    /// snapshot of the activators when a source answers it.
    RequestDuration {
        /// How the durations are summarised.
        summary: LatencySummary,
    },
}

/// How request durations are summarised into one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum LatencySummary {
    /// Mean.
    Average,
    /// Largest.
    Max,
    /// Median.
    P50,
    /// 95th percentile.
    P95,
    /// 99th percentile.
    P99,
}

/// One metric of one deployment: the average over the replicas that reported it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ResourceSample {
    /// What was measured.
    pub metric: ResourceMetric,
    /// Average percent over reporting replicas; seconds for [`ResourceMetric::RequestDuration`].
    pub percent: f64,
    /// How many replicas reported; replicas without a sample are not in the average. For
    /// [`ResourceMetric::RequestDuration`], how many series were summarised (1 when the
    /// activators' histograms were merged first).
    pub replicas: u32,
}

/// Request latency in microseconds, mergeable across activators.
///
/// The histogram behind it (about 26 KiB) is allocated on the first recording, so the empty
/// histograms of idle deployments' snapshots cost nothing.
#[derive(Debug, Clone, Default)]
pub struct LatencyHistogram(Option<Box<Histogram<u64>>>);

/// Highest latency recorded exactly: one hour. Longer requests count as one hour.
const MAX_LATENCY_MICROS: u64 = 3_600_000_000;

fn histogram() -> Box<Histogram<u64>> {
    Box::new(
        Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 2)
            .expect("static histogram bounds are valid"),
    )
}

impl LatencyHistogram {
    /// Records one request's latency.
    pub fn record(&mut self, micros: u64) {
        self.0
            .get_or_insert_with(histogram)
            .saturating_record(micros.clamp(1, MAX_LATENCY_MICROS));
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        let Some(theirs) = other.0.as_deref().filter(|h| !h.is_empty()) else {
            return;
        };
        // Both share the same bounds, so adding cannot fail.
        let _ = self.0.get_or_insert_with(histogram).add(theirs);
    }

    /// Requests recorded.
    pub fn count(&self) -> u64 {
        self.0.as_ref().map_or(0, |h| h.len())
    }

    fn recorded_histogram(&self) -> Option<&Histogram<u64>> {
        self.0.as_deref().filter(|h| !h.is_empty())
    }

    /// Mean latency in seconds, `None` when empty.
    pub fn mean_secs(&self) -> Option<f64> {
        self.recorded_histogram().map(|h| h.mean() / 1e6)
    }

    /// Latency at quantile `q` (0.0 to 1.0) in seconds, `None` when empty.
    pub fn quantile_secs(&self, q: f64) -> Option<f64> {
        self.recorded_histogram()
            .map(|h| h.value_at_quantile(q) as f64 / 1e6)
    }

    /// Largest latency in seconds, `None` when empty.
    pub fn max_secs(&self) -> Option<f64> {
        self.recorded_histogram().map(|h| h.max() as f64 / 1e6)
    }

    /// Every recorded latency bucket, lowest first: the highest latency the bucket stands for,
    /// in microseconds, and how many requests fell in it. Lets a consumer keep its own compact
    /// window of latencies instead of a full histogram per interval.
    pub fn recorded(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        // Only the buckets between the smallest and the largest latency: hdrhistogram's own
        // iterator visits all of its thousands of buckets, tens of microseconds a histogram.
        let h = self.recorded_histogram();
        let (mut value, last) = h.map_or((1, 0), |h| (h.min_nz(), h.max()));
        std::iter::from_fn(move || {
            let h = h?;
            while value <= last {
                let here = value;
                value = h.next_non_equivalent(here);
                let n = h.count_at(here);
                if n > 0 {
                    return Some((h.highest_equivalent(here), n));
                }
            }
            None
        })
    }

    /// Forgets every recording.
    pub fn clear(&mut self) {
        if let Some(h) = &mut self.0 {
            h.reset();
        }
    }
}

/// What the activators saw of one deployment since the previous snapshot.
#[derive(Debug, Clone, Default)]
pub struct TrafficSnapshot {
    /// Requests in flight to replicas now.
    pub in_flight: u32,
    /// Requests parked, waiting for a replica, now.
    pub parked: u32,
    /// Requests that arrived since the previous snapshot.
    pub arrived: u64,
    /// Integral of requests in flight or parked over time since the previous snapshot, in
    /// request-seconds: divided by the interval it is the average concurrency.
    pub concurrency_seconds: f64,
    /// Latency of requests completed since the previous snapshot.
    pub latency: LatencyHistogram,
}

impl TrafficSnapshot {
    /// Adds another activator's snapshot of the same deployment and interval.
    pub fn merge(&mut self, other: &TrafficSnapshot) {
        self.in_flight += other.in_flight;
        self.parked += other.parked;
        self.arrived += other.arrived;
        self.concurrency_seconds += other.concurrency_seconds;
        self.latency.merge(&other.latency);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_merge_across_activators() {
        let mut a = LatencyHistogram::default();
        let mut b = LatencyHistogram::default();
        for _ in 0..90 {
            a.record(10_000);
        }
        for _ in 0..10 {
            b.record(1_000_000);
        }
        a.merge(&b);
        assert_eq!(a.count(), 100);
        let p50 = a.quantile_secs(0.5).expect("non-empty");
        let p99 = a.quantile_secs(0.99).expect("non-empty");
        assert!((p50 - 0.01).abs() < 0.001, "{p50}");
        assert!((p99 - 1.0).abs() < 0.02, "{p99}");
        assert!(LatencyHistogram::default().mean_secs().is_none());
        assert!(
            LatencyHistogram::default().0.is_none(),
            "empty ones allocate nothing"
        );
    }

    #[test]
    fn recorded_buckets_cover_every_request_in_order() {
        let mut h = LatencyHistogram::default();
        for micros in [5_000, 5_000, 250_000, 1_000_000] {
            h.record(micros);
        }
        let buckets: Vec<(u64, u64)> = h.recorded().collect();
        assert_eq!(buckets.iter().map(|(_, n)| n).sum::<u64>(), 4);
        assert_eq!(buckets.len(), 3, "{buckets:?}");
        assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0), "{buckets:?}");
        assert!(
            (buckets[0].0 as f64 / 5_000.0 - 1.0).abs() < 0.01,
            "{buckets:?}"
        );
        assert_eq!(buckets[0].1, 2);
        let expected: Vec<(u64, u64)> = h
            .recorded_histogram()
            .expect("recorded")
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_since_last_iteration()))
            .collect();
        assert_eq!(buckets, expected);
        assert_eq!(LatencyHistogram::default().recorded().count(), 0);
    }
}
