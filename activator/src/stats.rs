//! Per-deployment request statistics: what the autoscaler decides on ([`TrafficSnapshot`]) and
//! what `/metrics` shows.
//!
//! Counters and gauges are atomics. The concurrency integral and the interval's latency
//! histogram sit behind one short per-deployment lock, taken once when a request arrives and
//! once when it finishes: the integral is only exact if the level and the time of its last
//! change move together, which separate atomics cannot promise.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::StatusCode;
use lull_core::{LatencyHistogram, TrafficSnapshot};
use tokio::time::Instant;

/// Bucket bounds of the request duration histogram, in seconds: model calls run from
/// milliseconds to minutes.
pub(crate) const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Bucket bounds of the cold-start wait histogram, in seconds: from a warm process to a GPU
/// model that loads for minutes.
pub(crate) const COLD_START_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

/// Response status classes counted: 1xx to 5xx.
pub(crate) const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Why the activator itself refused requests, by the `error` code of its answer.
pub(crate) const REJECTIONS: [&str; 10] = [
    "unauthorized",
    "auth_unavailable",
    "rate_limited",
    "client_rate_limited",
    "queue_full",
    "queue_timeout",
    "disabled",
    "deployment_removed",
    "request_too_large",
    "request_body_timeout",
];

/// A histogram with fixed buckets, lock-free, for Prometheus.
#[derive(Debug)]
pub(crate) struct Buckets {
    bounds: &'static [f64],
    /// Per bucket, not cumulative; the last one is above every bound.
    counts: Box<[AtomicU64]>,
    sum_micros: AtomicU64,
}

impl Buckets {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn record(&self, value: Duration) {
        let secs = value.as_secs_f64();
        let i = self.bounds.partition_point(|&bound| bound < secs);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Sum in seconds, count, and cumulative `(upper bound, count)` pairs ending with +Inf.
    pub fn read(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(self.counts.len());
        for (i, count) in self.counts.iter().enumerate() {
            total += count.load(Ordering::Relaxed);
            let bound = self.bounds.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, total));
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        (sum, total, buckets)
    }
}

/// One deployment's statistics.
#[derive(Debug)]
pub(crate) struct Stats {
    arrived: AtomicU64,
    in_flight: AtomicU64,
    responses: [AtomicU64; 5],
    rejections: [AtomicU64; REJECTIONS.len()],
    retries: AtomicU64,
    ejections: AtomicU64,
    latency: Buckets,
    cold_start: Buckets,
    window: Mutex<Window>,
}

/// What accumulates between snapshots.
#[derive(Debug)]
struct Window {
    /// Requests arrived and not finished: parked or in flight.
    level: u64,
    changed: Instant,
    /// Integral of `level` since the last snapshot, in request-seconds.
    integral: f64,
    /// Allocates its buckets on the first completion of an interval: idle deployments hold
    /// none, and their snapshots allocate nothing.
    latency: LatencyHistogram,
    /// `arrived` at the last snapshot.
    arrived_mark: u64,
}

impl Window {
    fn advance(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.changed);
        self.integral += self.level as f64 * elapsed.as_secs_f64();
        self.changed = now;
    }
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            arrived: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            responses: Default::default(),
            rejections: Default::default(),
            retries: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            latency: Buckets::new(LATENCY_BUCKETS),
            cold_start: Buckets::new(COLD_START_BUCKETS),
            window: Mutex::new(Window {
                level: 0,
                changed: Instant::now(),
                integral: 0.0,
                latency: LatencyHistogram::default(),
                arrived_mark: 0,
            }),
        }
    }
}

impl Stats {
    /// Counts a request routed to this deployment; the tracker follows it to its end.
    pub fn arrive(self: &Arc<Self>) -> Tracker {
        let now = Instant::now();
        self.arrived.fetch_add(1, Ordering::Relaxed);
        {
            let mut window = self.window();
            window.advance(now);
            window.level += 1;
        }
        Tracker {
            stats: self.clone(),
            start: now,
            in_flight: false,
            timed: false,
        }
    }

    /// What happened since the previous snapshot; starts a new interval.
    pub fn snapshot(&self, parked: usize) -> TrafficSnapshot {
        let now = Instant::now();
        let mut window = self.window();
        window.advance(now);
        let arrived = self.arrived.load(Ordering::Relaxed);
        let snapshot = TrafficSnapshot {
            in_flight: saturate(self.in_flight()),
            parked: saturate(parked as u64),
            arrived: arrived.saturating_sub(window.arrived_mark),
            concurrency_seconds: window.integral,
            latency: std::mem::take(&mut window.latency),
        };
        window.integral = 0.0;
        window.arrived_mark = arrived;
        snapshot
    }

    /// Requests routed here since start.
    pub fn arrived(&self) -> u64 {
        self.arrived.load(Ordering::Relaxed)
    }

    /// Requests sent to a replica whose response is not finished.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Responses by status class, 1xx first.
    pub fn responses(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.responses[i].load(Ordering::Relaxed))
    }

    /// Counts an answer the activator made without a tracked request (refused before it was
    /// counted as arrived: auth, rate limits).
    pub fn refused(&self, status: StatusCode, code: &str) {
        self.responses[class(status)].fetch_add(1, Ordering::Relaxed);
        self.rejected(code);
    }

    /// Counts a refusal by its error code, if the code is one of [`REJECTIONS`].
    pub fn rejected(&self, code: &str) {
        if let Some(i) = REJECTIONS.iter().position(|&r| r == code) {
            self.rejections[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Refusals by reason, in [`REJECTIONS`] order.
    pub fn rejections(&self) -> [u64; REJECTIONS.len()] {
        std::array::from_fn(|i| self.rejections[i].load(Ordering::Relaxed))
    }

    /// A request was sent again after a failed attempt.
    pub fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Retries since start.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// A replica was ejected for failing connections.
    pub fn ejected(&self) {
        self.ejections.fetch_add(1, Ordering::Relaxed);
    }

    /// Ejections since start.
    pub fn ejections(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
    }

    /// Durations of requests answered by a replica, arrival to the end of the response body.
    pub fn latency(&self) -> &Buckets {
        &self.latency
    }

    /// How long requests that found no ready replica waited for one.
    pub fn cold_start(&self) -> &Buckets {
        &self.cold_start
    }

    fn window(&self) -> MutexGuard<'_, Window> {
        // The window holds plain numbers that are valid whatever a panicking holder left.
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn class(status: StatusCode) -> usize {
    usize::from(status.as_u16() / 100).clamp(1, 5) - 1
}

fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// One request's accounting; finishing it is dropping it.
#[derive(Debug)]
pub(crate) struct Tracker {
    stats: Arc<Stats>,
    start: Instant,
    in_flight: bool,
    /// Whether its duration is recorded: only for answers from a replica, so instant local
    /// errors do not drag the latency the autoscaler scales on toward zero.
    timed: bool,
}

impl Tracker {
    /// The request is being sent to a replica.
    pub fn forwarding(&mut self) {
        if !self.in_flight {
            self.in_flight = true;
            self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The request is answered with `status`; `timed` when its duration is the replica's
    /// work (answered by a replica, not a protocol switch whose tunnel lasts as long as the
    /// client wants).
    pub fn answered(&mut self, status: StatusCode, timed: bool) {
        self.stats.responses[class(status)].fetch_add(1, Ordering::Relaxed);
        self.timed = timed;
    }

    /// The request waited `waited` for a replica to become ready.
    pub fn cold_start(&self, waited: Duration) {
        self.stats.cold_start.record(waited);
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let now = Instant::now();
        let lived = now.saturating_duration_since(self.start);
        if self.in_flight {
            self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        if self.timed {
            self.stats.latency.record(lived);
        }
        let mut window = self.stats.window();
        window.advance(now);
        window.level = window.level.saturating_sub(1);
        if self.timed {
            let micros = u64::try_from(lived.as_micros()).unwrap_or(u64::MAX);
            window.latency.record(micros);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    #[tokio::test(start_paused = true)]
    async fn snapshots_integrate_concurrency_and_restart_each_interval() {
        let stats = Arc::new(Stats::default());
        let mut a = stats.arrive();
        let b = stats.arrive();
        a.forwarding();
        advance(Duration::from_secs(2)).await;
        a.answered(StatusCode::OK, true);
        drop(a);
        advance(Duration::from_secs(1)).await;

        let first = stats.snapshot(1);
        assert_eq!(first.arrived, 2);
        assert_eq!(first.in_flight, 0);
        assert_eq!(first.parked, 1);
        // Two requests for 2 s, then one for 1 s.
        assert!((first.concurrency_seconds - 5.0).abs() < 1e-6, "{first:?}");
        assert_eq!(first.latency.count(), 1);
        let p50 = first.latency.quantile_secs(0.5).expect("one recorded");
        assert!((p50 - 2.0).abs() < 0.02, "{p50}");

        advance(Duration::from_secs(4)).await;
        drop(b);
        let second = stats.snapshot(0);
        assert_eq!(second.arrived, 0);
        assert!(
            (second.concurrency_seconds - 4.0).abs() < 1e-6,
            "{second:?}"
        );
        // b was never answered by a replica, so no latency.
        assert_eq!(second.latency.count(), 0);
        assert_eq!(stats.responses(), [0, 1, 0, 0, 0]);
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_lasts_until_the_tracker_is_dropped() {
        let stats = Arc::new(Stats::default());
        let mut t = stats.arrive();
        t.forwarding();
        t.forwarding();
        assert_eq!(stats.in_flight(), 1);
        drop(t);
        assert_eq!(stats.in_flight(), 0);
    }

    #[test]
    fn buckets_are_cumulative_and_inclusive() {
        let b = Buckets::new(&[0.1, 1.0]);
        b.record(Duration::from_millis(100));
        b.record(Duration::from_millis(500));
        b.record(Duration::from_secs(5));
        let (sum, count, buckets) = b.read();
        assert_eq!(count, 3);
        assert!((sum - 5.6).abs() < 1e-9);
        assert_eq!(buckets, vec![(0.1, 1), (1.0, 2), (f64::INFINITY, 3)]);
    }
}
