//! [`ScalingState`]: what the engine remembers of one deployment between decisions, and the
//! decision itself.

use std::collections::VecDeque;
use std::time::Duration;

use lull_core::{LatencySummary, ResourceMetric};
use lull_spec::{MetricKind, MetricTarget, Summary};
use tokio::time::Instant;

use super::decision::{
    Bound, Cause, Decision, MetricRecommendation, MetricStatus, Mode, PanicHold, RateLimited,
    Reason, Stabilised,
};
use super::metric::{per_replica, unknown, utilisation};
use super::traffic::{TrafficObservation, TrafficWindow};
use super::{Input, Targets, replicas};

/// A recommendation kept for scale-down stabilisation.
#[derive(Debug, Clone, Copy)]
struct Recommendation {
    at: Instant,
    replicas: u32,
}

/// A burst being answered.
#[derive(Debug, Clone, Copy)]
struct Panic {
    /// The latest decision at which the panic window was over the threshold.
    last_over: Instant,
    /// The most this panic asked for; the count never falls below it while panicking.
    most: u32,
    /// Whether the panic is a fresh state's caution rather than a burst.
    restarted: bool,
}

/// Traffic totals over the stable and the panic window, read once per decision.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    concurrency: (Option<f64>, Option<f64>),
    rps: (Option<f64>, Option<f64>),
}

impl Totals {
    fn of(&self, kind: MetricKind) -> (Option<f64>, Option<f64>) {
        match kind {
            MetricKind::Rps => self.rps,
            _ => self.concurrency,
        }
    }
}

/// Everything the engine remembers of one deployment between decisions: its traffic window, the
/// time of its last request, its recent recommendations and whether it is panicking.
#[derive(Debug, Clone)]
pub struct ScalingState {
    traffic: TrafficWindow,
    last_request: Instant,
    /// The stabilisation window's recommendations as a monotonic queue: counts fall from front
    /// to back, so the front is the window's highest and each decision costs O(1) amortised.
    recommendations: VecDeque<Recommendation>,
    panic: Option<Panic>,
    /// No decision made yet.
    fresh: bool,
    /// Woken from zero, and no replica ready since.
    activating: bool,
}

impl ScalingState {
    /// A state that starts watching at `now`; the deployment counts as used at that time, so a
    /// deployment that lull just learned of is not stopped before its idle window has passed.
    pub fn new(now: Instant) -> Self {
        Self {
            traffic: TrafficWindow::default(),
            last_request: now,
            recommendations: VecDeque::new(),
            panic: None,
            fresh: true,
            activating: false,
        }
    }

    /// Records a tick's traffic, keeping `keep` of history (the stable window).
    pub fn observe(&mut self, observation: TrafficObservation, keep: Duration) {
        if observation.saw_request() {
            self.last_request = self.last_request.max(observation.at);
        }
        self.traffic.push(observation, keep);
    }

    /// The traffic window.
    pub fn traffic(&self) -> &TrafficWindow {
        &self.traffic
    }

    /// When a request was last seen (or when watching started, if none was).
    pub fn last_request(&self) -> Instant {
        self.last_request
    }

    /// How long the deployment has gone without a request at `now`.
    pub fn idle_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_request)
    }

    /// How many replicas the deployment should have now, and why.
    pub fn decide(&mut self, input: &Input<'_>) -> Decision {
        let targets = input.targets;
        self.traffic
            .prepare(input.now, targets.stable_window(), targets.panic_window());
        if input.ready > 0 {
            self.activating = false;
        } else {
            // Requests parked behind replicas that are not ready yet are a backlog the
            // starting replicas will serve; counting how long they waited as load would start
            // replicas in proportion to the start-up time (Knative #13284).
            self.traffic.mark_unserved(input.now);
        }
        if input.desired == 0 {
            self.fresh = false;
            self.panic = None;
            return self.at_zero(input);
        }
        if let Some(decision) = self.scale_to_zero(input) {
            // A deployment woken later starts its stabilisation and panic afresh.
            self.recommendations.clear();
            self.panic = None;
            self.fresh = false;
            self.activating = false;
            return decision;
        }
        if std::mem::take(&mut self.fresh) {
            self.start_cautiously(input);
        }
        let totals = self.totals(input);
        let over = self.update_panic(input, &totals);
        let panicking = self.panic.is_some();
        // While replicas are starting, the burst they were started for is still parked and
        // counted: the panic window raises the count again only when it is over the threshold
        // of the replicas already asked for, not merely above them (Knative #13284).
        let follow_panic = panicking && (over || input.unready() == 0);
        let metrics: Vec<MetricRecommendation> = targets
            .metrics
            .iter()
            .map(|t| self.recommend(input, t, &totals, follow_panic))
            .collect();
        let (raw, cause) = match strongest(&metrics) {
            Some(m) => (m.replicas, Cause::Metric(*m)),
            None => {
                let min = targets.floor();
                (min, Cause::NoTargets { min })
            }
        };
        let mut reason = Reason::new(cause);
        let held = self.hold_in_panic(input, raw, &mut reason);
        let stabilised = self.stabilise(input, held, &mut reason);
        let (bounded, moved) = bound(targets, stabilised);
        reason.bound = moved;
        let limited = rate_limit(input, bounded, &mut reason);
        // The bounds hold whatever the current count: a rate limit never keeps a count outside
        // them (after a spec lowered maxReplicas, say).
        let (desired, late_bound) = bound(targets, limited);
        if desired != limited {
            reason.bound = late_bound;
            reason.rate_limited = None;
        }
        let mode = if panicking {
            Mode::Panic
        } else if self.activating {
            Mode::Activating
        } else {
            Mode::Stable
        };
        Decision {
            desired,
            reason,
            mode,
            metrics,
        }
    }

    /// Rule 1: a deployment at zero wakes on traffic, or rises to its minimum.
    fn at_zero(&mut self, input: &Input<'_>) -> Decision {
        let targets = input.targets;
        let parked = self.traffic.parked();
        if !(input.wake_pending || self.traffic.saw_request()) {
            return if targets.min > 0 {
                let min = targets.min.min(targets.max);
                Decision {
                    desired: min,
                    reason: Reason::new(Cause::BelowMinAtZero { min }),
                    mode: Mode::Stable,
                    metrics: Vec::new(),
                }
            } else {
                Decision {
                    desired: 0,
                    reason: Reason::new(Cause::AtZero),
                    mode: Mode::ScaleToZero,
                    metrics: Vec::new(),
                }
            };
        }
        // Burst or not, the panic window's traffic sizes a wake: the stable window is mostly
        // the idle time before it. Only arrivals (rps) say how big it is: concurrency at zero is
        // requests waiting, and resource metrics have no ready replica to measure, so they
        // recommend nothing here; GPU use in particular never wakes a deployment.
        let totals = self.totals(input);
        let metrics: Vec<MetricRecommendation> = targets
            .metrics
            .iter()
            .map(|t| self.recommend(input, t, &totals, true))
            .collect();
        let activation = targets.behavior.activation_scale.max(1);
        let best = strongest(&metrics)
            .filter(|m| m.replicas > activation)
            .copied();
        let wanted = best.map_or(activation, |m| m.replicas).max(targets.min);
        let (desired, moved) = bound(targets, wanted);
        let mut reason = Reason::new(Cause::Woken {
            parked,
            pending: input.wake_pending,
            activation,
            metric: best,
        });
        reason.bound = moved.filter(|b| matches!(b, Bound::CappedAtMax(_)));
        self.activating = desired > 0;
        Decision {
            desired,
            reason,
            mode: Mode::Activating,
            metrics,
        }
    }

    /// Rule 2: with `minReplicas: 0`, zero after `scaleToZeroAfter` without a request.
    fn scale_to_zero(&self, input: &Input<'_>) -> Option<Decision> {
        let targets = input.targets;
        if targets.min > 0 || input.wake_pending || self.traffic.busy() {
            return None;
        }
        let idle = self.idle_for(input.now);
        (idle >= targets.scale_to_zero_after).then(|| Decision {
            desired: 0,
            reason: Reason::new(Cause::Idle {
                idle,
                after: targets.scale_to_zero_after,
            }),
            mode: Mode::ScaleToZero,
            metrics: Vec::new(),
        })
    }

    /// A state's first decision with replicas running: whatever history existed was lost (a
    /// restart), so the current count stands for the stabilisation window's recommendations,
    /// and with metric targets and more than one replica the state panics, holding the count
    /// for a stable window (Knative starts its autoscaler in panic for the same reason).
    fn start_cautiously(&mut self, input: &Input<'_>) {
        if !input.targets.scale_down_stabilization().is_zero() {
            push_monotonic(&mut self.recommendations, input.now, input.desired);
        }
        if input.desired > 1 && !input.targets.metrics.is_empty() {
            self.panic = Some(Panic {
                last_over: input.now,
                most: input.desired,
                restarted: true,
            });
        }
    }

    fn totals(&self, input: &Input<'_>) -> Totals {
        let targets = input.targets;
        let (stable, panic) = (targets.stable_window(), targets.panic_window());
        let mut totals = Totals::default();
        if targets.uses(MetricKind::Concurrency) {
            totals.concurrency = (
                self.traffic.average_concurrency(input.now, stable),
                self.traffic.average_concurrency(input.now, panic),
            );
        }
        if targets.uses(MetricKind::Rps) {
            totals.rps = (
                self.traffic.rps(input.now, stable),
                self.traffic.rps(input.now, panic),
            );
        }
        totals
    }

    /// Rule 4: panic when the panic window asks for `panicThreshold` of the replicas already
    /// asked for. Starting replicas count as capacity: a burst already answered by replicas
    /// that are still starting does not start more (Knative #13284 over-scaled slow starters by
    /// comparing with ready replicas only). The panic ends a stable window after the last
    /// decision over the threshold. Whether this decision is over the threshold is returned.
    fn update_panic(&mut self, input: &Input<'_>, totals: &Totals) -> bool {
        let targets = input.targets;
        if let Some(panic) = self.panic
            && input.now >= panic.last_over + targets.stable_window()
        {
            self.panic = None;
        }
        let capacity = f64::from(input.desired.max(1));
        let threshold = targets.behavior.panic_threshold / 100.0;
        let over = targets.metrics.iter().any(|t| {
            let kind = t.metric;
            if !matches!(kind, MetricKind::Concurrency | MetricKind::Rps) || t.value <= 0.0 {
                return false;
            }
            totals
                .of(kind)
                .1
                .is_some_and(|panic| panic / t.value >= threshold * capacity)
        });
        if over {
            match &mut self.panic {
                Some(panic) => {
                    panic.last_over = input.now;
                    panic.restarted = false;
                }
                None => {
                    self.panic = Some(Panic {
                        last_over: input.now,
                        most: input.desired,
                        restarted: false,
                    });
                }
            }
        }
        over
    }

    /// Rule 3: what one metric target recommends; with `follow_panic`, concurrency and rps
    /// take the panic window's count when it is larger.
    fn recommend(
        &self,
        input: &Input<'_>,
        target: &MetricTarget,
        totals: &Totals,
        follow_panic: bool,
    ) -> MetricRecommendation {
        let resource = match target.metric {
            MetricKind::Cpu => ResourceMetric::Cpu,
            MetricKind::Memory => ResourceMetric::Memory,
            MetricKind::Gpu => ResourceMetric::Gpu,
            MetricKind::GpuMemory => ResourceMetric::GpuMemory,
            MetricKind::RequestDuration => {
                // A source that merges every activator's histogram (Prometheus) sees the whole
                // deployment; this process's activators may be only some of them.
                let merged = ResourceMetric::RequestDuration {
                    summary: latency_summary(target.summary),
                };
                if let Some((at, sample)) = input.resources.get(merged)
                    && input.now.saturating_duration_since(at) <= input.targets.stable_window()
                {
                    return utilisation(input, target, sample.percent, input.ready);
                }
                return match self.traffic.latency(target.summary) {
                    Some(secs) => utilisation(input, target, secs, input.ready),
                    None => unknown(input, target, MetricStatus::Missing),
                };
            }
            kind @ (MetricKind::Concurrency | MetricKind::Rps) => {
                return match totals.of(kind) {
                    (Some(stable), panic) => {
                        per_replica(input, target, stable, panic, follow_panic)
                    }
                    (None, _) => unknown(input, target, MetricStatus::Missing),
                };
            }
        };
        if input.resources.error().is_some() {
            return unknown(input, target, MetricStatus::Error);
        }
        let Some((at, sample)) = input.resources.get(resource) else {
            return unknown(input, target, MetricStatus::Missing);
        };
        let age = input.now.saturating_duration_since(at);
        if age > input.targets.stable_window() {
            let mut out = unknown(input, target, MetricStatus::Stale);
            out.sample_age_seconds = Some(age.as_secs_f64());
            return out;
        }
        utilisation(input, target, sample.percent, sample.replicas)
    }

    /// While panicking the count never falls below the most the panic asked for.
    fn hold_in_panic(&mut self, input: &Input<'_>, raw: u32, reason: &mut Reason) -> u32 {
        let Some(panic) = &mut self.panic else {
            return raw;
        };
        if raw >= panic.most {
            panic.most = raw;
            return raw;
        }
        reason.panic = Some(PanicHold {
            replicas: panic.most,
            restarted: panic.restarted,
            window: input.targets.stable_window(),
        });
        panic.most
    }

    /// Rule 5: a scale-down goes no lower than the highest recommendation of the window.
    fn stabilise(&mut self, input: &Input<'_>, recommended: u32, reason: &mut Reason) -> u32 {
        let window = input.targets.scale_down_stabilization();
        if window.is_zero() {
            self.recommendations.clear();
            return recommended;
        }
        if let Some(horizon) = input.now.checked_sub(window) {
            while self
                .recommendations
                .front()
                .is_some_and(|r| r.at <= horizon)
            {
                self.recommendations.pop_front();
            }
        }
        push_monotonic(&mut self.recommendations, input.now, recommended);
        if recommended >= input.desired {
            return recommended;
        }
        let highest = self
            .recommendations
            .front()
            .map_or(recommended, |r| r.replicas)
            .min(input.desired);
        if highest > recommended {
            reason.stabilised = Some(Stabilised {
                replicas: highest,
                window,
            });
            highest
        } else {
            recommended
        }
    }
}

fn latency_summary(summary: Summary) -> LatencySummary {
    match summary {
        Summary::Average => LatencySummary::Average,
        Summary::Max => LatencySummary::Max,
        Summary::P50 => LatencySummary::P50,
        Summary::P95 => LatencySummary::P95,
        Summary::P99 => LatencySummary::P99,
    }
}

/// Adds a recommendation, dropping the older ones it outranks.
fn push_monotonic(queue: &mut VecDeque<Recommendation>, at: Instant, replicas: u32) {
    while queue.back().is_some_and(|r| r.replicas <= replicas) {
        queue.pop_back();
    }
    queue.push_back(Recommendation { at, replicas });
}

/// The recommendation that asks for the most; at equal counts the one that best explains why
/// the count does not fall (no sample, then a hold, then a scaling metric).
fn strongest(metrics: &[MetricRecommendation]) -> Option<&MetricRecommendation> {
    metrics.iter().max_by_key(|m| {
        let rank = match m.status {
            MetricStatus::Scaled | MetricStatus::Panic => 0,
            MetricStatus::WithinTolerance | MetricStatus::Held => 1,
            MetricStatus::Missing | MetricStatus::Stale | MetricStatus::Error => 2,
        };
        (m.replicas, rank)
    })
}

/// Rule 6: `n` within `[floor, maxReplicas]`, and which bound moved it.
fn bound(targets: &Targets, n: u32) -> (u32, Option<Bound>) {
    if n > targets.max {
        return (targets.max, Some(Bound::CappedAtMax(targets.max)));
    }
    let floor = targets.floor();
    if n >= floor {
        return (n, None);
    }
    let why = if targets.min == 0 {
        Bound::KeptUntilIdle(targets.scale_to_zero_after)
    } else {
        Bound::RaisedToMin(floor)
    };
    (floor, Some(why))
}

/// Rule 6: at most `×maxScaleUpRate` up and `÷maxScaleDownRate` down, and always at least one
/// replica of progress so a rate close to 1 cannot freeze the count.
fn rate_limit(input: &Input<'_>, wanted: u32, reason: &mut Reason) -> u32 {
    let behavior = &input.targets.behavior;
    let current = input.desired;
    let base = f64::from(current.max(1));
    let limited = if wanted > current {
        let most = replicas(base * behavior.max_scale_up_rate).max(current + 1);
        (wanted > most).then_some((most, true, behavior.max_scale_up_rate))
    } else if wanted < current {
        let least = replicas(base / behavior.max_scale_down_rate).min(current - 1);
        (wanted < least).then_some((least, false, behavior.max_scale_down_rate))
    } else {
        None
    };
    match limited {
        Some((replicas, up, rate)) => {
            reason.rate_limited = Some(RateLimited { replicas, up, rate });
            replicas
        }
        None => wanted,
    }
}
