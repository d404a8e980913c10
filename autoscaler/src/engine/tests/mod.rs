//! One test per rule of the engine, on constructed times: `Case` holds a state, targets and
//! samples, and decides at whole seconds after its start.

mod limits;
mod metrics;
mod panic;
mod zero;

use lull_core::{LatencyHistogram, ResourceMetric, ResourceSample, TrafficSnapshot};
use lull_spec::{Behavior, Summary};

use super::*;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn target(metric: MetricKind, value: f64) -> MetricTarget {
    MetricTarget {
        metric,
        summary: Summary::Average,
        value,
        query: None,
    }
}

fn targets(min: u32, max: u32, metrics: Vec<MetricTarget>) -> Targets {
    Targets {
        min,
        max,
        scale_to_zero_after: secs(30),
        metrics,
        behavior: Behavior {
            // Most rules are clearer without stabilisation; its own tests turn it on.
            scale_down_stabilization: Some(lull_spec::Duration::from_secs(0)),
            ..Behavior::default()
        },
    }
}

/// One second of traffic ending at `at` with this average concurrency.
fn tick(at: Instant, arrived: u64, concurrency: f64) -> TrafficObservation {
    TrafficObservation {
        at,
        interval: secs(1),
        arrived,
        concurrency_seconds: concurrency,
        in_flight: 0,
        parked: 0,
        latency: None,
    }
}

struct Case {
    t0: Instant,
    state: ScalingState,
    targets: Targets,
    resources: ResourceSamples,
}

impl Case {
    /// A case whose state has made its first decision (at one replica), so the caution of a
    /// fresh state does not hide the rule under test.
    fn new(targets: Targets) -> Self {
        let mut case = Self::fresh(targets);
        case.decide(0, 1, 1, false);
        case
    }

    /// A case whose state has made no decision yet, as after a restart.
    fn fresh(targets: Targets) -> Self {
        let t0 = Instant::now();
        Self {
            t0,
            state: ScalingState::new(t0),
            targets,
            resources: ResourceSamples::default(),
        }
    }

    fn at(&self, s: u64) -> Instant {
        self.t0 + secs(s)
    }

    /// Ten seconds of steady traffic ending at `end` seconds.
    fn steady(&mut self, end: u64, arrived_per_s: u64, concurrency: f64) {
        self.traffic(end - 9, end, arrived_per_s, concurrency);
    }

    /// Steady traffic in every second from `from` to `to` (inclusive).
    fn traffic(&mut self, from: u64, to: u64, arrived_per_s: u64, concurrency: f64) {
        for s in from..=to {
            let at = self.at(s);
            self.state
                .observe(tick(at, arrived_per_s, concurrency), secs(60));
        }
    }

    /// A sample of `metric` taken at `at` seconds, averaged over `replicas` replicas.
    fn sample(&mut self, metric: ResourceMetric, at: u64, percent: f64, replicas: u32) {
        self.resources = ResourceSamples::new(
            self.at(at),
            [ResourceSample {
                metric,
                percent,
                replicas,
            }],
        );
    }

    /// A cpu sample from every ready replica, taken at the start (decisions in these tests are
    /// less than a stable window after it).
    fn cpu(&mut self, percent: f64) {
        self.sample(ResourceMetric::Cpu, 0, percent, u32::MAX);
    }

    fn decide(&mut self, s: u64, desired: u32, ready: u32, wake_pending: bool) -> Decision {
        let input = Input {
            now: self.at(s),
            targets: &self.targets,
            desired,
            ready,
            resources: &self.resources,
            wake_pending,
        };
        self.state.decide(&input)
    }
}

/// The decision's reason as status shows it.
fn why(d: &Decision) -> String {
    d.reason.to_string()
}
