//! Traffic as the activators saw it: one [`TrafficObservation`] per tick, kept in a
//! [`TrafficWindow`] for the stable window, read over the stable and the panic windows.

use std::collections::VecDeque;
use std::time::Duration;

use lull_core::{LatencyHistogram, TrafficSnapshot};
use lull_spec::Summary;
use tokio::time::Instant;

use super::latency::LatencyWindow;

/// What the activators saw of one deployment over one tick.
#[derive(Debug, Clone)]
pub struct TrafficObservation {
    /// When the observation ended.
    pub at: Instant,
    /// How long it covers.
    pub interval: Duration,
    /// Requests that arrived.
    pub arrived: u64,
    /// Requests in flight or parked, integrated over the interval (request-seconds).
    pub concurrency_seconds: f64,
    /// Requests in flight to replicas at the end.
    pub in_flight: u32,
    /// Requests waiting for a replica at the end.
    pub parked: u32,
    /// Latency of the requests completed; `None` when none completed or nobody scales on it.
    pub latency: Option<LatencyHistogram>,
}

impl TrafficObservation {
    /// An observation from an activator snapshot that covers `interval` up to `at`.
    pub fn from_snapshot(at: Instant, interval: Duration, snapshot: TrafficSnapshot) -> Self {
        Self {
            at,
            interval,
            arrived: snapshot.arrived,
            concurrency_seconds: snapshot.concurrency_seconds,
            in_flight: snapshot.in_flight,
            parked: snapshot.parked,
            latency: (snapshot.latency.count() > 0).then_some(snapshot.latency),
        }
    }

    /// Whether any request arrived, was in flight or waited.
    pub fn saw_request(&self) -> bool {
        self.arrived > 0 || self.in_flight > 0 || self.parked > 0
    }
}

/// An observation without its latencies, which go to the [`LatencyWindow`], in integers so that
/// running sums add and subtract exactly.
#[derive(Debug, Clone, Copy)]
struct Point {
    at: Instant,
    interval_ns: u64,
    arrived: u64,
    /// Requests in flight or parked, integrated over the interval, in request-microseconds.
    concurrency_us: u64,
    in_flight: u32,
    parked: u32,
    /// Whether a replica was ready to serve: without one, the concurrency is only requests
    /// waiting, and grows with the start-up time rather than with the load.
    served: bool,
}

/// Sums over observations.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    arrived: u64,
    covered_ns: u64,
    served_us: u64,
    served_ns: u64,
}

impl Sums {
    fn add(&mut self, p: &Point) {
        self.arrived += p.arrived;
        self.covered_ns += p.interval_ns;
        if p.served {
            self.served_us += p.concurrency_us;
            self.served_ns += p.interval_ns;
        }
    }

    fn remove(&mut self, p: &Point) {
        self.arrived -= p.arrived;
        self.covered_ns -= p.interval_ns;
        if p.served {
            self.served_us -= p.concurrency_us;
            self.served_ns -= p.interval_ns;
        }
    }
}

/// The latest traffic observations of a deployment, oldest first, with running sums over all of
/// them: a decision reads the stable window in constant time and walks only the few newest
/// observations of the panic window.
#[derive(Debug, Clone, Default)]
pub struct TrafficWindow {
    points: VecDeque<Point>,
    /// When the oldest kept observation ended: checked every decision, so kept beside the
    /// points rather than read from the far end of their buffer.
    oldest: Option<Instant>,
    sums: Sums,
    latency: LatencyWindow,
}

impl TrafficWindow {
    /// Adds an observation and forgets those that ended more than `keep` before it; the newest
    /// is always kept.
    pub fn push(&mut self, observation: TrafficObservation, keep: Duration) {
        let at = observation.at;
        if let Some(latency) = &observation.latency {
            self.latency.push(at, latency);
        }
        let point = Point {
            at,
            interval_ns: u64::try_from(observation.interval.as_nanos()).unwrap_or(u64::MAX),
            arrived: observation.arrived,
            // Saturating `as`: NaN and negative integrals count as none.
            concurrency_us: (observation.concurrency_seconds * 1e6).round().max(0.0) as u64,
            in_flight: observation.in_flight,
            parked: observation.parked,
            served: true,
        };
        self.sums.add(&point);
        self.points.push_back(point);
        self.oldest.get_or_insert(at);
        self.expire(at, keep);
    }

    /// Marks the observation that ended at `at` as made while no replica was ready: its
    /// concurrency no longer counts (its arrivals do).
    pub(super) fn mark_unserved(&mut self, at: Instant) {
        if let Some(p) = self.points.back_mut().filter(|p| p.at == at && p.served) {
            self.sums.remove(p);
            p.served = false;
            self.sums.add(p);
        }
    }

    /// Forgets what ended more than `keep` before `now`; the newest observation stays, so that
    /// requests still in flight or parked are known however long ago it was made.
    pub(super) fn expire(&mut self, now: Instant, keep: Duration) {
        let Some(horizon) = now.checked_sub(keep) else {
            return;
        };
        if self.oldest.is_some_and(|oldest| oldest <= horizon) {
            while self.points.len() > 1 && self.points.front().is_some_and(|p| p.at <= horizon) {
                if let Some(p) = self.points.pop_front() {
                    self.sums.remove(&p);
                }
            }
            self.oldest = self.points.front().map(|p| p.at);
        }
        self.latency.expire(horizon);
    }

    /// Observations that ended within `window` before `now`, newest first.
    fn within(&self, now: Instant, window: Duration) -> impl Iterator<Item = &Point> {
        let horizon = now.checked_sub(window);
        self.points
            .iter()
            .rev()
            .take_while(move |p| horizon.is_none_or(|h| p.at > h))
    }

    /// Sums over the observations within `window` before `now`: the running sums when the
    /// window holds every kept observation, else a walk over the newest.
    fn sums(&self, now: Instant, window: Duration) -> Sums {
        let horizon = now.checked_sub(window);
        let all_within = self
            .oldest
            .is_none_or(|oldest| horizon.is_none_or(|h| oldest > h));
        if all_within {
            return self.sums;
        }
        let mut sums = Sums::default();
        for p in self.within(now, window) {
            sums.add(p);
        }
        sums
    }

    /// Average requests in flight or parked over the window, while a replica was ready to serve
    /// them; `None` without such observations.
    pub fn average_concurrency(&self, now: Instant, window: Duration) -> Option<f64> {
        let sums = self.sums(now, window);
        if sums.served_ns > 0 {
            return Some(sums.served_us as f64 * 1e3 / sums.served_ns as f64);
        }
        // Observations that cover no time (a wake between ticks) count as they ended.
        let newest = self.within(now, window).find(|p| p.served)?;
        Some(f64::from(newest.in_flight) + f64::from(newest.parked))
    }

    /// Arrivals per second over the window; `None` without observations or covered time.
    pub fn rps(&self, now: Instant, window: Duration) -> Option<f64> {
        let sums = self.sums(now, window);
        (sums.covered_ns > 0).then(|| sums.arrived as f64 * 1e9 / sums.covered_ns as f64)
    }

    /// Latency of the requests completed in the kept window, summarised, in seconds; `None`
    /// when none completed.
    pub fn latency(&self, summary: Summary) -> Option<f64> {
        self.latency.summary(summary)
    }

    /// Requests waiting for a replica at the end of the newest observation.
    pub fn parked(&self) -> u32 {
        self.points.back().map_or(0, |p| p.parked)
    }

    /// Whether the newest observation saw any request.
    pub fn saw_request(&self) -> bool {
        self.points
            .back()
            .is_some_and(|p| p.arrived > 0 || p.in_flight > 0 || p.parked > 0)
    }

    /// Whether requests were in flight or waiting at the end of the newest observation.
    pub fn busy(&self) -> bool {
        self.points
            .back()
            .is_some_and(|p| p.in_flight > 0 || p.parked > 0)
    }
}
