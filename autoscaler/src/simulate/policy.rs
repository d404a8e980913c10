//! The policies a simulation compares: lull as the spec says, and the spec's targets under a
//! plain Kubernetes HPA's and Knative KPA's timing, so users weigh cost and latency side by side
//! on their own traffic with the same engine.

use std::time::Duration;

use lull_spec::Behavior;

use crate::engine::Targets;

/// How the simulated autoscaler decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// lull with the spec's targets and behaviour, at lull's tick.
    Lull,
    /// A plain Kubernetes HPA: a decision every 15 s, no panic, a 300 s scale-down window,
    /// scale-ups of at most 100% per decision, scale-downs straight to the recommendation, and
    /// never below one replica.
    Hpa,
    /// Knative's KPA defaults: a decision every 2 s, 60 s stable and 6 s panic windows, a 200%
    /// panic threshold, no tolerance band or scale-down delay, ×1000 up and ÷2 down per
    /// decision, and zero after a stable window without traffic plus the 30 s grace period.
    Kpa,
}

/// The HPA controller's sync period.
pub const HPA_SYNC: Duration = Duration::from_secs(15);
/// The HPA's default scale-down stabilisation window.
pub const HPA_SCALE_DOWN_WINDOW: Duration = Duration::from_secs(300);
/// The KPA's tick.
pub const KPA_TICK: Duration = Duration::from_secs(2);
/// Knative's scale-to-zero grace period, after the stable window without traffic.
pub const KPA_ZERO_GRACE: Duration = Duration::from_secs(30);

impl Policy {
    /// Every policy, lull first.
    pub const ALL: [Policy; 3] = [Policy::Lull, Policy::Hpa, Policy::Kpa];

    /// The name on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Lull => "lull",
            Policy::Hpa => "hpa",
            Policy::Kpa => "kpa",
        }
    }

    /// Time between decisions; `lull_tick` is lull's own (1 s by default).
    pub fn tick(self, lull_tick: Duration) -> Duration {
        match self {
            Policy::Lull => lull_tick,
            Policy::Hpa => HPA_SYNC,
            Policy::Kpa => KPA_TICK,
        }
    }

    /// The spec's targets under this policy: bounds and metric targets stay, timing changes.
    pub fn targets(self, spec: &Targets) -> Targets {
        let mut targets = spec.clone();
        match self {
            Policy::Lull => {}
            Policy::Hpa => {
                // Without an alpha feature gate and an external metric the HPA never scales
                // to zero.
                targets.min = spec.min.max(1);
                targets.behavior = Behavior {
                    tolerance: 10.0,
                    // The HPA has no panic mode.
                    panic_threshold: f64::INFINITY,
                    scale_down_stabilization: Some(HPA_SCALE_DOWN_WINDOW.into()),
                    // Policies of 100% per 15 s up and 100% per 15 s down (the HPA's second
                    // up policy, 4 pods per 15 s, is not modelled).
                    max_scale_up_rate: 2.0,
                    max_scale_down_rate: f64::INFINITY,
                    ..spec.behavior.clone()
                };
            }
            Policy::Kpa => {
                let defaults = Behavior::default();
                targets.behavior = Behavior {
                    tolerance: 0.0,
                    stable_window: defaults.stable_window,
                    panic_window: defaults.panic_window,
                    panic_threshold: 200.0,
                    scale_down_stabilization: Some(lull_spec::Duration::from_secs(0)),
                    max_scale_up_rate: 1000.0,
                    max_scale_down_rate: 2.0,
                    activation_scale: 1,
                };
                targets.scale_to_zero_after = defaults.stable_window.get() + KPA_ZERO_GRACE;
            }
        }
        targets
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use lull_spec::{MetricKind, MetricTarget, Summary};

    use super::*;

    fn spec() -> Targets {
        Targets {
            min: 0,
            max: 10,
            scale_to_zero_after: Duration::from_secs(300),
            metrics: vec![MetricTarget {
                metric: MetricKind::Concurrency,
                summary: Summary::Average,
                value: 4.0,
                query: None,
            }],
            behavior: Behavior::default(),
        }
    }

    #[test]
    fn presets_keep_bounds_and_targets_and_change_timing() {
        let spec = spec();
        assert_eq!(Policy::Lull.targets(&spec), spec);
        assert_eq!(
            Policy::Lull.tick(Duration::from_millis(500)),
            Duration::from_millis(500)
        );

        let hpa = Policy::Hpa.targets(&spec);
        assert_eq!((hpa.min, hpa.max, &hpa.metrics), (1, 10, &spec.metrics));
        assert_eq!(hpa.scale_down_stabilization(), HPA_SCALE_DOWN_WINDOW);
        assert_eq!(Policy::Hpa.tick(Duration::from_secs(1)), HPA_SYNC);

        let kpa = Policy::Kpa.targets(&spec);
        assert_eq!((kpa.min, kpa.max, &kpa.metrics), (0, 10, &spec.metrics));
        assert_eq!(kpa.scale_to_zero_after, Duration::from_secs(90));
        assert_eq!(kpa.scale_down_stabilization(), Duration::ZERO);
        assert_eq!(Policy::Kpa.tick(Duration::from_secs(1)), KPA_TICK);
    }
}
