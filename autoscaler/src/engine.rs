//! The decision engine: how many replicas a deployment should have now, and why.
//!
//! Pure: no I/O and no clock. Time comes in as `now`, traffic as [`TrafficObservation`]s kept in a
//! [`ScalingState`], resource use as [`ResourceSamples`], so every rule is tested with constructed
//! times and a simulator can replay hours of traffic in milliseconds.
//!
//! The rules, in the order [`ScalingState::decide`] applies them:
//! 1. At zero: a pending wake or waiting requests go straight to the activation scale (or more if
//!    the metrics ask for more); otherwise the deployment stays at `minReplicas`.
//! 2. Scale to zero: with `minReplicas: 0`, after `scaleToZeroAfter` without a request.
//! 3. Metrics: each target recommends a count (Kubernetes HPA formula for utilisation metrics,
//!    Knative KPA formula for traffic totals), within-tolerance and missing samples hold the
//!    current count, and the largest recommendation wins; no targets means `minReplicas`.
//! 4. Bounds: `[minReplicas, maxReplicas]`, and at least 1 while the idle window has not passed.
//! 5. Scale-down stabilisation: never below the highest recommendation of the window.
//! 6. Rate limits: at most `×maxScaleUpRate` up and `÷maxScaleDownRate` down per decision.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use lull_core::{LatencyHistogram, ResourceMetric, ResourceSample, TrafficSnapshot};
use lull_spec::{Autoscaling, Behavior, MetricKind, MetricTarget, Summary};
use tokio::time::Instant;

/// Resource metrics get the Kubernetes HPA's scale-down stabilisation window when the spec sets
/// none: cpu and memory are noisy, and a replica that is stopped too early is expensive.
const RESOURCE_STABILIZATION: Duration = Duration::from_secs(300);

/// Rounding slack so that `2 × 1.5` stays 3 replicas even when floating point makes it 3.0000001.
const EPSILON: f64 = 1e-9;

/// What a deployment is scaled towards, with every default resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    /// Fewest replicas; 0 allows scale to zero.
    pub min: u32,
    /// Most replicas.
    pub max: u32,
    /// With `min == 0`, go to zero after this long without a request.
    pub scale_to_zero_after: Duration,
    /// The metric targets; several give the largest count any of them asks for.
    pub metrics: Vec<MetricTarget>,
    /// Tolerance, windows and rates.
    pub behavior: Behavior,
}

impl Targets {
    /// The targets of a spec's `resources.autoscaling`; `replicas` is `resources.replicas`, the
    /// minimum when `minReplicas` is not set.
    pub fn new(replicas: u32, autoscaling: &Autoscaling) -> Self {
        Self {
            min: autoscaling.min_replicas.unwrap_or(replicas),
            max: autoscaling.max_replicas,
            scale_to_zero_after: autoscaling.scale_to_zero_after.get(),
            metrics: autoscaling.metrics.clone(),
            behavior: autoscaling.behavior.clone(),
        }
    }

    /// Whether a target uses this metric.
    pub fn uses(&self, kind: MetricKind) -> bool {
        self.metrics.iter().any(|m| m.metric == kind)
    }

    /// Whether a target needs the metric source (cpu, memory, gpu, gpuMemory).
    pub fn uses_resource_metric(&self) -> bool {
        self.metrics.iter().any(|m| !m.metric.is_traffic())
    }

    /// The window traffic metrics are averaged over.
    pub fn stable_window(&self) -> Duration {
        self.behavior.stable_window.get()
    }

    /// The window whose highest recommendation bounds a scale-down.
    pub fn scale_down_stabilization(&self) -> Duration {
        match self.behavior.scale_down_stabilization {
            Some(window) => window.get(),
            None if self.uses_resource_metric() => RESOURCE_STABILIZATION,
            None => self.stable_window(),
        }
    }

    fn tolerance(&self) -> f64 {
        self.behavior.tolerance / 100.0
    }

    /// `n` within `[min, max]`; `max` wins should the two ever cross.
    fn bound(&self, n: u32) -> u32 {
        n.max(self.min).min(self.max)
    }
}

/// A desired replica count and the reason for it, as status and events show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    /// Replicas the deployment should have.
    pub desired: u32,
    /// Why, in words: `concurrency 8.2 over target 4/replica → 3`.
    pub reason: String,
}

impl Decision {
    fn new(desired: u32, reason: impl Into<String>) -> Self {
        Self {
            desired,
            reason: reason.into(),
        }
    }
}

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

    /// Average requests in flight or parked over the interval.
    pub fn concurrency(&self) -> f64 {
        if self.interval.is_zero() {
            f64::from(self.in_flight + self.parked)
        } else {
            self.concurrency_seconds / self.interval.as_secs_f64()
        }
    }

    /// Whether any request arrived, was in flight or waited.
    pub fn saw_request(&self) -> bool {
        self.arrived > 0 || self.in_flight > 0 || self.parked > 0
    }

    /// Whether requests are in flight or waiting at the end.
    fn busy(&self) -> bool {
        self.in_flight > 0 || self.parked > 0
    }
}

/// The latest traffic observations of a deployment, oldest first.
#[derive(Debug, Clone, Default)]
pub struct TrafficWindow {
    observations: VecDeque<TrafficObservation>,
}

impl TrafficWindow {
    /// Adds an observation and forgets those that ended more than `keep` before it; the newest
    /// is always kept.
    pub fn push(&mut self, observation: TrafficObservation, keep: Duration) {
        let horizon = observation.at.checked_sub(keep);
        self.observations.push_back(observation);
        if let Some(horizon) = horizon {
            while self.observations.len() > 1
                && self.observations.front().is_some_and(|o| o.at <= horizon)
            {
                self.observations.pop_front();
            }
        }
    }

    /// The newest observation.
    pub fn latest(&self) -> Option<&TrafficObservation> {
        self.observations.back()
    }

    /// Observations that ended within `window` before `now`.
    fn within(&self, now: Instant, window: Duration) -> impl Iterator<Item = &TrafficObservation> {
        let horizon = now.checked_sub(window);
        self.observations
            .iter()
            .filter(move |o| horizon.is_none_or(|h| o.at > h))
    }

    /// Average requests in flight or parked over the window; `None` without observations.
    pub fn average_concurrency(&self, now: Instant, window: Duration) -> Option<f64> {
        let (mut seconds, mut covered, mut latest) = (0.0, Duration::ZERO, None);
        for o in self.within(now, window) {
            seconds += o.concurrency_seconds;
            covered += o.interval;
            latest = Some(o);
        }
        let latest = latest?;
        Some(if covered.is_zero() {
            latest.concurrency()
        } else {
            seconds / covered.as_secs_f64()
        })
    }

    /// Arrivals per second over the window; `None` without observations or covered time.
    pub fn rps(&self, now: Instant, window: Duration) -> Option<f64> {
        let (mut arrived, mut covered) = (0u64, Duration::ZERO);
        for o in self.within(now, window) {
            arrived += o.arrived;
            covered += o.interval;
        }
        (!covered.is_zero()).then(|| arrived as f64 / covered.as_secs_f64())
    }

    /// Latencies of the requests completed in the window, merged; `None` when none completed.
    pub fn latency(&self, now: Instant, window: Duration) -> Option<LatencyHistogram> {
        let mut merged: Option<LatencyHistogram> = None;
        for h in self.within(now, window).filter_map(|o| o.latency.as_ref()) {
            match &mut merged {
                Some(m) => m.merge(h),
                None => merged = Some(h.clone()),
            }
        }
        merged
    }
}

/// The newest resource samples of a deployment, one per metric; a metric without a sample is
/// missing, and a missing metric never lowers the desired count.
#[derive(Debug, Clone, Default)]
pub struct ResourceSamples(BTreeMap<ResourceMetric, ResourceSample>);

impl ResourceSamples {
    /// Samples as a metric source answered them; a later sample of a metric replaces an earlier.
    pub fn new(samples: impl IntoIterator<Item = ResourceSample>) -> Self {
        Self(samples.into_iter().map(|s| (s.metric, s)).collect())
    }

    /// The sample of `metric`, if there is one.
    pub fn get(&self, metric: ResourceMetric) -> Option<&ResourceSample> {
        self.0.get(&metric)
    }
}

/// What a decision is made from, beside the [`ScalingState`].
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The time of the decision.
    pub now: Instant,
    /// Bounds, targets and behaviour.
    pub targets: &'a Targets,
    /// Replicas currently asked for.
    pub desired: u32,
    /// Replicas currently receiving traffic.
    pub ready: u32,
    /// The newest resource samples.
    pub resources: &'a ResourceSamples,
    /// Whether a request is waiting at zero and asked for a replica.
    pub wake_pending: bool,
}

impl Input<'_> {
    /// Replicas asked for that are not ready yet: they count as busy at target, never as idle
    /// capacity.
    fn unready(&self) -> u32 {
        self.desired.saturating_sub(self.ready)
    }
}

/// A recommendation kept for scale-down stabilisation.
#[derive(Debug, Clone, Copy)]
struct Recommendation {
    at: Instant,
    replicas: u32,
}

/// Everything the engine remembers of one deployment between decisions: its traffic window, the
/// time of its last request and its recent recommendations.
#[derive(Debug, Clone)]
pub struct ScalingState {
    traffic: TrafficWindow,
    last_request: Instant,
    recommendations: VecDeque<Recommendation>,
}

impl ScalingState {
    /// A state that starts watching at `now`; the deployment counts as used at that time, so a
    /// deployment that lull just learned of is not stopped before its idle window has passed.
    pub fn new(now: Instant) -> Self {
        Self {
            traffic: TrafficWindow::default(),
            last_request: now,
            recommendations: VecDeque::new(),
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
        if input.desired == 0 {
            return self.at_zero(input);
        }
        if let Some(decision) = self.scale_to_zero(input) {
            // A deployment woken later starts its stabilisation afresh.
            self.recommendations.clear();
            return decision;
        }
        let recommended = self.recommend(input);
        let stabilised = self.stabilise(input, recommended);
        let limited = rate_limit(input, stabilised);
        let floor = floor(input.targets);
        let desired = limited.desired.max(floor).min(input.targets.max);
        Decision::new(desired, limited.reason)
    }

    /// Rule 1: a deployment at zero wakes on demand, or rises to its minimum.
    fn at_zero(&self, input: &Input<'_>) -> Decision {
        let targets = input.targets;
        let latest = self.traffic.latest();
        let parked = latest.map_or(0, |o| o.parked);
        let arrived = latest.is_some_and(TrafficObservation::saw_request);
        if !(input.wake_pending || arrived) {
            return if targets.min > 0 {
                let min = targets.bound(targets.min);
                Decision::new(min, format!("at zero, below minReplicas {min} → {min}"))
            } else {
                Decision::new(0, "at zero, no requests")
            };
        }
        let activation = targets.behavior.activation_scale.max(1);
        let cause = if parked > 0 {
            format!("{parked} requests waiting at zero")
        } else if input.wake_pending {
            "woken by a request at zero".to_owned()
        } else {
            "requests at zero".to_owned()
        };
        let metrics = self.metric_desires(input);
        let best = metrics
            .iter()
            .filter_map(|m| match m.desire {
                Desire::Replicas(n) => Some((n, m)),
                Desire::Hold | Desire::Missing => None,
            })
            .max_by_key(|(n, _)| *n);
        match best {
            Some((n, metric)) if n > activation => {
                let desired = targets.bound(n);
                Decision::new(desired, format!("{cause}; {} → {desired}", metric.reason))
            }
            _ => {
                let desired = targets.bound(activation);
                Decision::new(desired, format!("{cause} → {desired} (activation scale)"))
            }
        }
    }

    /// Rule 2: with `minReplicas: 0`, zero after `scaleToZeroAfter` without a request.
    fn scale_to_zero(&self, input: &Input<'_>) -> Option<Decision> {
        let targets = input.targets;
        if targets.min > 0 || input.wake_pending || self.traffic.latest().is_some_and(|o| o.busy())
        {
            return None;
        }
        let idle = self.idle_for(input.now);
        (idle >= targets.scale_to_zero_after).then(|| {
            Decision::new(
                0,
                format!(
                    "idle for {} ≥ scaleToZeroAfter {} → 0",
                    show(idle),
                    show(targets.scale_to_zero_after)
                ),
            )
        })
    }

    /// Rules 3 and 4: the largest metric recommendation within bounds.
    fn recommend(&self, input: &Input<'_>) -> Decision {
        let targets = input.targets;
        let floor = floor(targets);
        let desires = self.metric_desires(input);
        let chosen = desires.iter().max_by_key(|m| {
            let replicas = match m.desire {
                Desire::Replicas(n) => n,
                Desire::Hold | Desire::Missing => input.desired,
            };
            // At equal counts the reason that explains why the count does not fall wins.
            let rank = match m.desire {
                Desire::Replicas(_) => 0,
                Desire::Hold => 1,
                Desire::Missing => 2,
            };
            (replicas, rank)
        });
        let Some(chosen) = chosen else {
            return Decision::new(floor, format!("no metric targets → minimum {floor}"));
        };
        let wanted = match chosen.desire {
            Desire::Replicas(n) => n,
            Desire::Hold | Desire::Missing => input.desired,
        };
        let reason = match chosen.desire {
            Desire::Replicas(_) => chosen.reason.clone(),
            Desire::Hold | Desire::Missing => format!("{} → {wanted}", chosen.reason),
        };
        if wanted > targets.max {
            Decision::new(
                targets.max,
                format!("{reason}, capped at maxReplicas {}", targets.max),
            )
        } else if wanted < floor {
            let why = if targets.min == 0 {
                format!(
                    "kept at 1 until idle for scaleToZeroAfter {}",
                    show(targets.scale_to_zero_after)
                )
            } else {
                format!("raised to minReplicas {floor}")
            };
            Decision::new(floor, format!("{reason}, {why}"))
        } else {
            Decision::new(wanted, reason)
        }
    }

    /// What each metric target asks for.
    fn metric_desires(&self, input: &Input<'_>) -> Vec<MetricDesire> {
        input
            .targets
            .metrics
            .iter()
            .map(|target| self.metric_desire(input, target))
            .collect()
    }

    fn metric_desire(&self, input: &Input<'_>, target: &MetricTarget) -> MetricDesire {
        let window = input.targets.stable_window();
        let name = target.metric.as_str();
        let resource = match target.metric {
            MetricKind::Cpu => Some(ResourceMetric::Cpu),
            MetricKind::Memory => Some(ResourceMetric::Memory),
            MetricKind::Gpu => Some(ResourceMetric::Gpu),
            MetricKind::GpuMemory => Some(ResourceMetric::GpuMemory),
            MetricKind::RequestDuration | MetricKind::Concurrency | MetricKind::Rps => None,
        };
        if let Some(resource) = resource {
            return match input.resources.get(resource) {
                Some(sample) => utilisation(input, name, sample.percent, target.value, "%"),
                None => MetricDesire::missing(name),
            };
        }
        match target.metric {
            MetricKind::RequestDuration => {
                let latency = self.traffic.latency(input.now, window);
                match latency.and_then(|h| summarise(&h, target.summary)) {
                    Some(secs) => {
                        let name = format!("requestDuration {}", target.summary.as_str());
                        utilisation(input, &name, secs, target.value, "s")
                    }
                    None => MetricDesire::missing(name),
                }
            }
            MetricKind::Rps => match self.traffic.rps(input.now, window) {
                Some(rps) => per_replica(input, name, rps, target.value),
                None => MetricDesire::missing(name),
            },
            _ => match self.traffic.average_concurrency(input.now, window) {
                Some(concurrency) => per_replica(input, name, concurrency, target.value),
                None => MetricDesire::missing(name),
            },
        }
    }

    /// Rule 5: a scale-down goes no lower than the highest recommendation of the window.
    fn stabilise(&mut self, input: &Input<'_>, recommended: Decision) -> Decision {
        let window = input.targets.scale_down_stabilization();
        let horizon = input.now.checked_sub(window);
        while self
            .recommendations
            .front()
            .is_some_and(|r| horizon.is_some_and(|h| r.at <= h))
        {
            self.recommendations.pop_front();
        }
        if self.recommendations.is_empty() && !window.is_zero() {
            // Without history (a restarted autoscaler, a changed spec) the current count stands
            // for the window's recommendations, so nothing is stopped on a first impression.
            self.recommendations.push_back(Recommendation {
                at: input.now,
                replicas: input.desired,
            });
        }
        self.recommendations.push_back(Recommendation {
            at: input.now,
            replicas: recommended.desired,
        });
        if recommended.desired >= input.desired {
            return recommended;
        }
        let highest = self
            .recommendations
            .iter()
            .map(|r| r.replicas)
            .max()
            .unwrap_or(recommended.desired)
            .min(input.desired);
        if highest > recommended.desired {
            Decision::new(
                highest,
                format!(
                    "{}; held at {highest}, the highest recommendation of the last {} (scale-down stabilisation)",
                    recommended.reason,
                    show(window)
                ),
            )
        } else {
            recommended
        }
    }
}

/// The lowest count outside scale to zero: `minReplicas`, and at least 1 while running.
fn floor(targets: &Targets) -> u32 {
    targets.min.max(1).min(targets.max)
}

/// Rule 6: at most `×maxScaleUpRate` up and `÷maxScaleDownRate` down, and always at least one
/// replica of progress so a rate close to 1 cannot freeze the count.
fn rate_limit(input: &Input<'_>, decision: Decision) -> Decision {
    let behavior = &input.targets.behavior;
    let current = input.desired;
    let base = f64::from(current.max(1));
    if decision.desired > current {
        let most = replicas(base * behavior.max_scale_up_rate).max(current + 1);
        if decision.desired > most {
            return Decision::new(
                most,
                format!(
                    "{}, limited to {most} by maxScaleUpRate {}",
                    decision.reason, behavior.max_scale_up_rate
                ),
            );
        }
    } else if decision.desired < current {
        let least = replicas(base / behavior.max_scale_down_rate).min(current - 1);
        if decision.desired < least {
            return Decision::new(
                least,
                format!(
                    "{}, limited to {least} by maxScaleDownRate {}",
                    decision.reason, behavior.max_scale_down_rate
                ),
            );
        }
    }
    decision
}

/// What one metric target asks for.
#[derive(Debug)]
struct MetricDesire {
    desire: Desire,
    reason: String,
}

impl MetricDesire {
    fn missing(name: &str) -> Self {
        Self {
            desire: Desire::Missing,
            reason: format!("{name} has no sample, not scaling down"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Desire {
    /// This many replicas.
    Replicas(u32),
    /// The current count: the observation is within tolerance of the target, or following it
    /// would count starting replicas as idle.
    Hold,
    /// The current count at least: no sample to judge by.
    Missing,
}

/// Kubernetes HPA: `ceil(ready × observed / target)`. Replicas not ready yet count as idle on a
/// scale-up (they add no load) and as at target on a scale-down (they are not idle capacity).
fn utilisation(
    input: &Input<'_>,
    name: &str,
    observed: f64,
    target: f64,
    unit: &str,
) -> MetricDesire {
    let current = input.desired;
    let tolerance = input.targets.tolerance();
    let described = format!("{name} {observed:.1}{unit} on {} ready", input.ready);
    if target <= 0.0 || target.is_nan() {
        return MetricDesire {
            desire: Desire::Missing,
            reason: format!("{name} target {target} is not positive, not scaling down"),
        };
    }
    let ratio = observed / target;
    if (ratio - 1.0).abs() <= tolerance {
        return MetricDesire {
            desire: Desire::Hold,
            reason: format!(
                "{described} within {}% of target {target}{unit}",
                input.targets.behavior.tolerance
            ),
        };
    }
    let for_ready = f64::from(input.ready) * ratio;
    let (n, direction) = if ratio > 1.0 {
        (replicas(for_ready), "over")
    } else {
        (replicas(for_ready).saturating_add(input.unready()), "under")
    };
    let flips = (ratio > 1.0 && n < current) || (ratio < 1.0 && n > current);
    if flips {
        return MetricDesire {
            desire: Desire::Hold,
            reason: format!(
                "{described} {direction} target {target}{unit}, {} replicas still starting",
                input.unready()
            ),
        };
    }
    MetricDesire {
        desire: Desire::Replicas(n),
        reason: format!("{described} {direction} target {target}{unit} → {n}"),
    }
}

/// Knative KPA: `ceil(observed total / target per replica)`.
fn per_replica(input: &Input<'_>, name: &str, total: f64, target: f64) -> MetricDesire {
    let current = input.desired;
    if target <= 0.0 || target.is_nan() {
        return MetricDesire {
            desire: Desire::Missing,
            reason: format!("{name} target {target} is not positive, not scaling down"),
        };
    }
    let needed = total / target;
    if current > 0 && (needed / f64::from(current) - 1.0).abs() <= input.targets.tolerance() {
        return MetricDesire {
            desire: Desire::Hold,
            reason: format!(
                "{name} {total:.1} within {}% of target {target}/replica × {current}",
                input.targets.behavior.tolerance
            ),
        };
    }
    let n = replicas(needed);
    MetricDesire {
        desire: Desire::Replicas(n),
        reason: format!("{name} {total:.1} over target {target}/replica → {n}"),
    }
}

/// A histogram summarised as the target asks, in seconds.
fn summarise(latency: &LatencyHistogram, summary: Summary) -> Option<f64> {
    match summary {
        Summary::Average => latency.mean_secs(),
        Summary::Max => latency.max_secs(),
        Summary::P50 => latency.quantile_secs(0.50),
        Summary::P95 => latency.quantile_secs(0.95),
        Summary::P99 => latency.quantile_secs(0.99),
    }
}

/// A fractional replica count rounded up (saturating, never negative).
fn replicas(x: f64) -> u32 {
    // `as` saturates at the bounds of u32 and maps NaN to 0.
    (x - EPSILON).ceil().max(0.0) as u32
}

/// A duration as specs write it: `30s`, `1m30s`.
fn show(d: Duration) -> String {
    lull_spec::Duration::from(d).to_string()
}

#[cfg(test)]
mod tests;
