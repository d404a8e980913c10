//! What one metric target recommends: the Kubernetes HPA's formula for utilisation metrics, and
//! Knative's for traffic totals.

use lull_spec::MetricTarget;

use super::decision::{MetricRecommendation, MetricStatus};
use super::{Input, replicas};

/// A recommendation of the current count, for want of a usable sample.
pub(super) fn unknown(
    input: &Input<'_>,
    target: &MetricTarget,
    status: MetricStatus,
) -> MetricRecommendation {
    MetricRecommendation {
        metric: target.metric,
        summary: target.summary,
        target: target.value,
        observed: None,
        panic_observed: None,
        replicas: input.desired,
        status,
        ready: input.ready,
        current: input.desired,
        reported: None,
        sample_age_seconds: None,
        tolerance: input.targets.behavior.tolerance,
    }
}

fn usable(target: f64) -> bool {
    target > 0.0 && target.is_finite()
}

/// Kubernetes HPA: `ceil(ready × observed / target)`, where `observed` is the average over the
/// `reported` ready replicas that have a sample.
///
/// Within the tolerance band the count holds. When some ready replicas have no sample or some
/// replicas are still starting, the ratio is computed again with them counted — replicas without
/// a sample at target on a scale-down and idle on a scale-up, starting replicas idle on a
/// scale-up and at target on a scale-down (they are not idle capacity) — and the count holds if
/// that reverses the direction or falls in the band.
pub(super) fn utilisation(
    input: &Input<'_>,
    target: &MetricTarget,
    observed: f64,
    reported: u32,
) -> MetricRecommendation {
    let mut out = unknown(input, target, MetricStatus::Missing);
    let reported = reported.min(input.ready);
    if !usable(target.value) || reported == 0 || !observed.is_finite() {
        return out;
    }
    out.observed = Some(observed);
    out.reported = Some(reported);
    let (t, current, tolerance) = (target.value, input.desired, input.targets.tolerance());
    let ready = f64::from(input.ready);
    let unready = input.unready();
    let missing = input.ready - reported;
    let ratio = observed / t;
    if missing == 0 && !(unready > 0 && ratio > 1.0) {
        if (ratio - 1.0).abs() <= tolerance {
            out.status = MetricStatus::WithinTolerance;
            return out;
        }
        out.replicas = if ratio > 1.0 {
            replicas(ready * ratio)
        } else {
            replicas(ready * ratio).saturating_add(unready)
        };
        out.status = MetricStatus::Scaled;
        return out;
    }
    let pods = f64::from(input.ready) + f64::from(unready);
    let load = if ratio < 1.0 {
        observed * f64::from(reported) + t * (f64::from(missing) + f64::from(unready))
    } else {
        observed * f64::from(reported)
    };
    let new_ratio = load / (t * pods);
    let reverses = (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0);
    if (new_ratio - 1.0).abs() <= tolerance || reverses {
        out.status = MetricStatus::Held;
        return out;
    }
    let n = replicas(new_ratio * pods);
    if (new_ratio < 1.0 && n > current) || (new_ratio > 1.0 && n < current) {
        out.status = MetricStatus::Held;
        return out;
    }
    out.replicas = n;
    out.status = MetricStatus::Scaled;
    out
}

/// Knative KPA: `ceil(total / target per replica)` over the stable window, within the tolerance
/// band of the current count; while panicking, the panic window's count when it is larger.
pub(super) fn per_replica(
    input: &Input<'_>,
    target: &MetricTarget,
    stable: f64,
    panic: Option<f64>,
    panicking: bool,
) -> MetricRecommendation {
    let mut out = unknown(input, target, MetricStatus::Missing);
    if !usable(target.value) || !stable.is_finite() {
        return out;
    }
    out.observed = Some(stable);
    out.panic_observed = panic;
    let current = input.desired;
    let needed = stable / target.value;
    if current > 0 && (needed / f64::from(current) - 1.0).abs() <= input.targets.tolerance() {
        out.status = MetricStatus::WithinTolerance;
    } else {
        out.replicas = replicas(needed);
        out.status = MetricStatus::Scaled;
    }
    if panicking && let Some(panic) = panic.filter(|p| p.is_finite()) {
        let n = replicas(panic / target.value);
        if n > out.replicas {
            out.replicas = n;
            out.status = MetricStatus::Panic;
        }
    }
    out
}
