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

/// An observation without its latencies, which go to the [`LatencyWindow`]: in integers, so that
/// running sums add and subtract exactly, and small, so that a fleet's windows stay in cache.
#[derive(Debug, Clone, Copy)]
struct Point {
    /// When it ended, in nanoseconds after the window's epoch.
    at: u64,
    interval_ns: u64,
    /// Requests in flight or parked, integrated over the interval, in request-microseconds.
    concurrency_us: u64,
    arrived: u32,
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
        self.arrived += u64::from(p.arrived);
        self.covered_ns += p.interval_ns;
        if p.served {
            self.served_us += p.concurrency_us;
            self.served_ns += p.interval_ns;
        }
    }

    fn remove(&mut self, p: &Point) {
        self.arrived -= u64::from(p.arrived);
        self.covered_ns -= p.interval_ns;
        if p.served {
            self.served_us -= p.concurrency_us;
            self.served_ns -= p.interval_ns;
        }
    }
}

/// Running sums over the observations of a short window (the panic window) as of `now`, from
/// `start` in the window's points to the newest.
#[derive(Debug, Clone, Copy, Default)]
struct Recent {
    window: Option<Duration>,
    now: Option<Instant>,
    start: usize,
    sums: Sums,
}

/// The latest traffic observations of a deployment, oldest first, with running sums over all of
/// them and over the panic window: a decision reads both windows in constant time, touching only
/// the observation that leaves each.
#[derive(Debug, Clone, Default)]
pub struct TrafficWindow {
    /// The time observations are kept relative to: the first one's.
    epoch: Option<Instant>,
    /// The latest time converted to nanoseconds after the epoch, so that a decision converts its
    /// `now` once and computes every horizon in integers.
    clock: Option<(Instant, u64)>,
    points: VecDeque<Point>,
    /// When the oldest kept observation ended: checked every decision, so kept beside the
    /// points rather than read from the far end of their buffer.
    oldest: Option<u64>,
    sums: Sums,
    recent: Recent,
    /// Requests in flight and waiting at the end of the newest observation: only the newest
    /// one's are ever read, so they are not kept per observation.
    in_flight: u32,
    parked: u32,
    latency: LatencyWindow,
}

impl TrafficWindow {
    /// `t` in nanoseconds after the epoch (0 before it).
    fn relative(&self, t: Instant) -> u64 {
        if let Some((at, relative)) = self.clock
            && at == t
        {
            return relative;
        }
        self.epoch.map_or(0, |epoch| {
            u64::try_from(t.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
        })
    }

    /// Converts `now` once for the queries that follow.
    fn set_clock(&mut self, now: Instant) {
        self.clock = Some((now, self.relative(now)));
    }

    /// The start of `window` before `now`, relative to the epoch; `None` when it starts before
    /// every observation.
    fn horizon(&self, now: Instant, window: Duration) -> Option<u64> {
        self.epoch?;
        let window = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        self.relative(now).checked_sub(window)
    }

    /// Adds an observation and forgets those that ended more than `keep` before it; the newest
    /// is always kept.
    pub fn push(&mut self, observation: TrafficObservation, keep: Duration) {
        let at = observation.at;
        let epoch = *self.epoch.get_or_insert(at);
        self.set_clock(at);
        if let Some(latency) = &observation.latency {
            self.latency.push(at, latency);
        }
        let point = Point {
            at: self.relative(at.max(epoch)),
            interval_ns: u64::try_from(observation.interval.as_nanos()).unwrap_or(u64::MAX),
            // Saturating `as`: NaN and negative integrals count as none.
            concurrency_us: (observation.concurrency_seconds * 1e6).round().max(0.0) as u64,
            arrived: u32::try_from(observation.arrived).unwrap_or(u32::MAX),
            served: true,
        };
        self.in_flight = observation.in_flight;
        self.parked = observation.parked;
        self.sums.add(&point);
        if self.recent.window.is_some() {
            self.recent.sums.add(&point);
            self.recent.now = None;
        }
        self.points.push_back(point);
        self.oldest.get_or_insert(point.at);
        self.expire(at, keep);
    }

    /// Marks the observation that ended at `at` as made while no replica was ready: its
    /// concurrency no longer counts (its arrivals do).
    pub(super) fn mark_unserved(&mut self, at: Instant) {
        let at = self.relative(at);
        let newest = self.points.len().saturating_sub(1);
        let in_recent = self.recent.window.is_some() && self.recent.start <= newest;
        if let Some(p) = self.points.back_mut().filter(|p| p.at == at && p.served) {
            self.sums.remove(p);
            if in_recent {
                self.recent.sums.remove(p);
            }
            p.served = false;
            self.sums.add(p);
            if in_recent {
                self.recent.sums.add(p);
            }
        }
    }

    /// Forgets what ended more than `keep` before `now`; the newest observation stays, so that
    /// requests still in flight or parked are known however long ago it was made.
    pub(super) fn expire(&mut self, now: Instant, keep: Duration) {
        self.set_clock(now);
        let horizon = self.horizon(now, keep);
        if let Some(horizon) = horizon
            && self.oldest.is_some_and(|oldest| oldest <= horizon)
        {
            while self.points.len() > 1 && self.points.front().is_some_and(|p| p.at <= horizon) {
                if let Some(p) = self.points.pop_front() {
                    self.sums.remove(&p);
                    if self.recent.window.is_none() {
                        continue;
                    }
                    if self.recent.start == 0 {
                        self.recent.sums.remove(&p);
                    } else {
                        self.recent.start -= 1;
                    }
                }
            }
            self.oldest = self.points.front().map(|p| p.at);
        }
        if let Some(h) = now.checked_sub(keep) {
            self.latency.expire(h);
        }
    }

    /// Forgets what ended more than `keep` before `now` and brings the running sums of `panic`
    /// up to `now`: [`TrafficWindow::expire`] then [`TrafficWindow::advance`], with the two
    /// observations that leave the windows read first and together. Each is usually a cache miss
    /// on a large fleet, and two loads issued together are waited for once.
    pub(super) fn prepare(&mut self, now: Instant, keep: Duration, panic: Duration) {
        let leaving = (
            self.points.front().map(|p| p.at),
            self.points.get(self.recent.start).map(|p| p.at),
        );
        self.set_clock(now);
        let stable_edge = self.horizon(now, keep);
        let panic_edge = self.horizon(now, panic);
        if leaving.0.zip(stable_edge).is_some_and(|(at, h)| at <= h) {
            self.expire(now, keep);
        } else if let Some(h) = now.checked_sub(keep) {
            self.latency.expire(h);
        }
        let moved = self.recent.window != Some(panic)
            || leaving.1.zip(panic_edge).is_some_and(|(at, h)| at <= h);
        if moved {
            self.advance(now, panic);
        } else {
            self.recent.now = Some(now);
        }
    }

    /// Brings the running sums of `window` (the panic window) up to `now`.
    pub(super) fn advance(&mut self, now: Instant, window: Duration) {
        let horizon = self.horizon(now, window);
        if self.recent.window != Some(window) {
            let within = self
                .points
                .iter()
                .rev()
                .take_while(|p| horizon.is_none_or(|h| p.at > h));
            let mut sums = Sums::default();
            let mut count = 0;
            for p in within {
                sums.add(p);
                count += 1;
            }
            self.recent = Recent {
                window: Some(window),
                now: Some(now),
                start: self.points.len() - count,
                sums,
            };
            return;
        }
        if let Some(horizon) = horizon {
            while let Some(p) = self.points.get(self.recent.start) {
                if p.at > horizon {
                    break;
                }
                self.recent.sums.remove(p);
                self.recent.start += 1;
            }
        }
        self.recent.now = Some(now);
    }

    /// Observations that ended within `window` before `now`, newest first.
    fn within(&self, now: Instant, window: Duration) -> impl Iterator<Item = &Point> {
        let horizon = self.horizon(now, window);
        self.points
            .iter()
            .rev()
            .take_while(move |p| horizon.is_none_or(|h| p.at > h))
    }

    /// Sums over the observations within `window` before `now`: running sums when the window
    /// holds every kept observation or is the panic window brought up to `now`, else a walk
    /// over the newest.
    fn sums(&self, now: Instant, window: Duration) -> Sums {
        let horizon = self.horizon(now, window);
        if horizon.is_none_or(|h| self.oldest.is_none_or(|oldest| oldest > h)) {
            return self.sums;
        }
        if self.recent.window == Some(window) && self.recent.now == Some(now) {
            return self.recent.sums;
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
        // An observation that covers no time (a wake between ticks) counts as it ended.
        self.within(now, window)
            .next()
            .filter(|p| p.served)
            .map(|_| f64::from(self.in_flight) + f64::from(self.parked))
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
        self.parked
    }

    /// Whether the newest observation saw any request.
    pub fn saw_request(&self) -> bool {
        self.points
            .back()
            .is_some_and(|p| p.arrived > 0 || self.in_flight > 0 || self.parked > 0)
    }

    /// Whether requests were in flight or waiting at the end of the newest observation.
    pub fn busy(&self) -> bool {
        !self.points.is_empty() && (self.in_flight > 0 || self.parked > 0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The sums of `window` before `now`, walking every kept observation.
    fn walked(w: &TrafficWindow, now: Instant, window: Duration) -> Sums {
        let horizon = w.horizon(now, window);
        let mut sums = Sums::default();
        for p in w.points.iter().filter(|p| horizon.is_none_or(|h| p.at > h)) {
            sums.add(p);
        }
        sums
    }

    fn same(a: Sums, b: Sums) -> bool {
        (a.arrived, a.covered_ns, a.served_us, a.served_ns)
            == (b.arrived, b.covered_ns, b.served_us, b.served_ns)
    }

    proptest! {
        #[test]
        fn running_sums_equal_a_walk_over_the_window(
            steps in prop::collection::vec((1u64..4000, 0u64..50, 0.0f64..40.0, any::<bool>()), 1..200),
            keep in 1u64..90,
            panic in 1u64..20,
        ) {
            let t0 = Instant::now();
            let (keep, panic) = (Duration::from_secs(keep), Duration::from_secs(panic));
            let mut w = TrafficWindow::default();
            let mut now = t0;
            for (gap_ms, arrived, concurrency, unserved) in steps {
                let interval = Duration::from_millis(gap_ms);
                now += interval;
                w.push(
                    TrafficObservation {
                        at: now,
                        interval,
                        arrived,
                        concurrency_seconds: concurrency * interval.as_secs_f64(),
                        in_flight: 0,
                        parked: 0,
                        latency: None,
                    },
                    keep,
                );
                w.prepare(now, keep, panic);
                if unserved {
                    w.mark_unserved(now);
                }
                prop_assert!(same(w.sums(now, keep), walked(&w, now, keep)));
                prop_assert!(same(w.sums(now, panic), walked(&w, now, panic)));
            }
        }
    }
}
