//! The decision engine: how many replicas a deployment should have now, and why.
//!
//! Pure: no I/O and no clock. Time comes in as `now`, traffic as [`TrafficObservation`]s kept in a
//! [`ScalingState`], resource use as [`ResourceSamples`], so every rule is tested with constructed
//! times and the [simulator](crate::simulate) replays a day of traffic in a second.
//!
//! The rules, in the order [`ScalingState::decide`] applies them:
//! 1. **At zero**: a pending wake or waiting requests go straight to the activation scale (or more
//!    if the request rate asks for more); otherwise the deployment stays at zero, or rises to
//!    `minReplicas`. Only traffic wakes a deployment: a stopped replica uses no cpu, memory or GPU,
//!    so resource metrics never do.
//! 2. **Scale to zero**: with `minReplicas: 0`, after `scaleToZeroAfter` without a request.
//! 3. **Metrics**: each target recommends a count ([`MetricRecommendation`]) — the Kubernetes HPA
//!    formula `ceil(ready × observed / target)` for cpu, memory, gpu, gpuMemory and
//!    requestDuration, Knative's `ceil(total / target per replica)` for concurrency and rps — with
//!    a tolerance band around the target; missing, stale or failed samples hold the current count,
//!    and the largest recommendation wins; no targets means `minReplicas`. Concurrency is
//!    measured only while a replica is ready: before that it is requests waiting, which grows
//!    with the start-up time, not the load.
//! 4. **Panic**: when the traffic of the panic window asks for `panicThreshold` of the replicas
//!    already asked for (starting ones count as capacity, so slow starters are not piled on), the
//!    count follows the larger of the panic and the stable window and never falls, until a whole
//!    stable window passes below the threshold. A state that starts with more than one replica
//!    starts in panic, so a restarted autoscaler does not scale down on a first impression.
//! 5. **Scale-down stabilisation**: never below the highest recommendation of the window.
//! 6. **Bounds and rates**: `[minReplicas, maxReplicas]` (at least 1 until the idle window has
//!    passed), at most `×maxScaleUpRate` up and `÷maxScaleDownRate` down per decision, and the
//!    bounds once more, so they hold whatever the current count is.

mod decision;
mod latency;
mod metric;
mod resources;
mod state;
mod traffic;

use std::time::Duration;

use lull_spec::{Autoscaling, Behavior, MetricKind, MetricTarget};
use tokio::time::Instant;

pub use decision::{
    Bound, Cause, Decision, MetricRecommendation, MetricStatus, Mode, PanicHold, RateLimited,
    Reason, Stabilised,
};
pub use resources::ResourceSamples;
pub use state::ScalingState;
pub use traffic::{TrafficObservation, TrafficWindow};

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

    /// The window traffic metrics are averaged over, and the age past which a resource sample
    /// is stale.
    pub fn stable_window(&self) -> Duration {
        self.behavior.stable_window.get()
    }

    /// The short window that detects bursts.
    pub fn panic_window(&self) -> Duration {
        self.behavior.panic_window.get()
    }

    /// The window whose highest recommendation bounds a scale-down.
    pub fn scale_down_stabilization(&self) -> Duration {
        match self.behavior.scale_down_stabilization {
            Some(window) => window.get(),
            None if self.uses_resource_metric() => RESOURCE_STABILIZATION,
            None => self.stable_window(),
        }
    }

    /// The tolerance as a fraction.
    fn tolerance(&self) -> f64 {
        self.behavior.tolerance / 100.0
    }

    /// The lowest count while running: `minReplicas`, and at least 1 until the idle window has
    /// passed.
    fn floor(&self) -> u32 {
        self.min.max(1).min(self.max)
    }
}

/// What a decision is made from, beside the [`ScalingState`].
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The time of the decision.
    pub now: Instant,
    /// Bounds, targets and behaviour.
    pub targets: &'a Targets,
    /// Replicas currently asked for, ready or starting.
    pub desired: u32,
    /// Replicas currently receiving traffic.
    pub ready: u32,
    /// The newest resource samples.
    pub resources: &'a ResourceSamples,
    /// Whether a request is waiting at zero and asked for a replica.
    pub wake_pending: bool,
}

impl Input<'_> {
    /// Replicas asked for that are not ready yet: they count as idle on a scale-up (they carry
    /// no load) and as busy at target on a scale-down (they are not idle capacity).
    fn unready(&self) -> u32 {
        self.desired.saturating_sub(self.ready)
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
