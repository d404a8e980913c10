//! Properties of the decision engine over generated targets, traffic and replica counts:
//! desired always within `[minReplicas, maxReplicas]` (0 only by scaling to zero), missing data
//! never lowers it, and it is monotone in load.

use std::time::Duration;

use lull_autoscaler::engine::{
    Input, Mode, ResourceSamples, ScalingState, Targets, TrafficObservation,
};
use lull_core::{ResourceMetric, ResourceSample};
use lull_spec::{Behavior, MetricKind, MetricTarget, Summary};
use proptest::prelude::*;
use tokio::time::Instant;

/// The metric a generated case scales on.
#[derive(Debug, Clone, Copy)]
enum Load {
    Concurrency,
    Rps,
    Cpu,
}

impl Load {
    fn kind(self) -> MetricKind {
        match self {
            Load::Concurrency => MetricKind::Concurrency,
            Load::Rps => MetricKind::Rps,
            Load::Cpu => MetricKind::Cpu,
        }
    }
}

fn load() -> impl Strategy<Value = Load> {
    prop_oneof![Just(Load::Concurrency), Just(Load::Rps), Just(Load::Cpu)]
}

/// Bounds, a metric target and the behaviour knobs, within what validation accepts.
fn targets() -> impl Strategy<Value = (Targets, Load)> {
    (
        0u32..4,
        1u32..30,
        load(),
        0.5f64..50.0,
        0.0f64..30.0,
        prop_oneof![Just(None), (0u64..400).prop_map(Some)],
        1.1f64..10.0,
        1.1f64..5.0,
        101.0f64..400.0,
        5u64..120,
        1u32..4,
    )
        .prop_map(
            |(
                min,
                span,
                load,
                value,
                tolerance,
                stabilization,
                up,
                down,
                threshold,
                stable,
                activation,
            )| {
                let max = min.max(1) + span - 1;
                let targets = Targets {
                    min,
                    max,
                    scale_to_zero_after: Duration::from_secs(30),
                    metrics: vec![MetricTarget {
                        metric: load.kind(),
                        summary: Summary::Average,
                        value,
                        query: None,
                    }],
                    behavior: Behavior {
                        tolerance,
                        stable_window: lull_spec::Duration::from_secs(stable),
                        panic_window: lull_spec::Duration::from_secs((stable / 10).max(1)),
                        panic_threshold: threshold,
                        scale_down_stabilization: stabilization.map(lull_spec::Duration::from_secs),
                        max_scale_up_rate: up,
                        max_scale_down_rate: down,
                        activation_scale: activation.min(max),
                    },
                };
                (targets, load)
            },
        )
}

/// One second of traffic: requests that arrived, average in flight, waiting at the end.
fn second(at: Instant, load: Load, value: f64) -> TrafficObservation {
    let (arrived, concurrency) = match load {
        Load::Rps => (value.round() as u64, 1.0),
        Load::Concurrency | Load::Cpu => (1, value),
    };
    TrafficObservation {
        at,
        interval: Duration::from_secs(1),
        arrived,
        concurrency_seconds: concurrency,
        in_flight: concurrency.round() as u32,
        parked: 0,
        latency: None,
    }
}

fn cpu(at: Instant, percent: f64, replicas: u32) -> ResourceSamples {
    ResourceSamples::new(
        at,
        [ResourceSample {
            metric: ResourceMetric::Cpu,
            percent,
            replicas,
        }],
    )
}

/// A state that has decided once, at one replica, so that a fresh state's caution does not
/// stand in for the load.
fn settled(t0: Instant, targets: &Targets) -> ScalingState {
    let mut state = ScalingState::new(t0);
    state.decide(&Input {
        now: t0,
        targets,
        desired: 1,
        ready: 1,
        resources: &ResourceSamples::default(),
        wake_pending: false,
    });
    state
}

/// Feeds `loads` one second at a time and returns the decision after the last.
fn decide_after(
    targets: &Targets,
    load: Load,
    loads: &[f64],
    current: u32,
    ready: u32,
    reported: u32,
) -> lull_autoscaler::Decision {
    let t0 = Instant::now();
    let mut state = settled(t0, targets);
    let mut resources = ResourceSamples::default();
    let mut now = t0;
    for (i, &value) in loads.iter().enumerate() {
        now = t0 + Duration::from_secs(i as u64 + 1);
        state.observe(second(now, load, value), targets.stable_window());
        if matches!(load, Load::Cpu) {
            resources = cpu(now, value, reported);
        }
    }
    state.decide(&Input {
        now,
        targets,
        desired: current,
        ready,
        resources: &resources,
        wake_pending: false,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn desired_is_always_within_min_and_max(
        (targets, load) in targets(),
        loads in prop::collection::vec(0.0f64..400.0, 1..150),
        start in 0u32..40,
        readiness in prop::collection::vec(0.0f64..=1.0, 1..150),
        wakes in prop::collection::vec(any::<bool>(), 1..150),
    ) {
        let t0 = Instant::now();
        let mut state = ScalingState::new(t0);
        let mut desired = start;
        for (i, &value) in loads.iter().enumerate() {
            let now = t0 + Duration::from_secs(i as u64 + 1);
            let ready = (f64::from(desired) * readiness[i % readiness.len()]).floor() as u32;
            state.observe(second(now, load, value), targets.stable_window());
            let resources = cpu(now, value, ready);
            let d = state.decide(&Input {
                now,
                targets: &targets,
                desired,
                ready,
                resources: &resources,
                wake_pending: wakes[i % wakes.len()] && desired == 0,
            });
            prop_assert!(d.desired <= targets.max, "{} > max {}: {}", d.desired, targets.max, d.reason);
            if d.desired < targets.min {
                prop_assert!(d.desired == 0 && targets.min == 0, "{} < min {}: {}", d.desired, targets.min, d.reason);
            }
            if d.desired == 0 {
                prop_assert_eq!(d.mode, Mode::ScaleToZero, "{}", d.reason);
            }
            desired = d.desired;
        }
    }

    #[test]
    fn missing_stale_or_failed_data_never_lowers_desired(
        (mut targets, load) in targets(),
        loads in prop::collection::vec(0.0f64..400.0, 0..90),
        current in 1u32..40,
        readiness in 0.0f64..=1.0,
        how in 0u8..3,
    ) {
        // A cpu target with no usable sample beside the generated one (or alone).
        targets.metrics.push(MetricTarget {
            metric: MetricKind::Cpu,
            summary: Summary::Average,
            value: 50.0,
            query: None,
        });
        let t0 = Instant::now();
        let mut state = settled(t0, &targets);
        let mut now = t0;
        for (i, &value) in loads.iter().enumerate() {
            now = t0 + Duration::from_secs(i as u64 + 1);
            state.observe(second(now, load, value), targets.stable_window());
        }
        let now = now + Duration::from_secs(1);
        let resources = match how {
            0 => ResourceSamples::default(),
            1 => cpu(now - targets.stable_window() - Duration::from_secs(1), 1.0, current),
            _ => ResourceSamples::failed("the metric source is down"),
        };
        let ready = (f64::from(current) * readiness).floor() as u32;
        let d = state.decide(&Input {
            now,
            targets: &targets,
            desired: current,
            ready,
            resources: &resources,
            wake_pending: false,
        });
        if d.mode != Mode::ScaleToZero {
            prop_assert!(
                d.desired >= current.min(targets.max),
                "{} from {current}: {}", d.desired, d.reason
            );
        }
    }

    #[test]
    fn desired_is_monotone_in_load(
        (targets, load) in targets(),
        loads in prop::collection::vec(0.0f64..200.0, 1..90),
        factor in 1.0f64..4.0,
        current in 1u32..30,
        readiness in 0.0f64..=1.0,
        reporting in 0.0f64..=1.0,
    ) {
        let ready = (f64::from(current) * readiness).floor() as u32;
        let reported = (f64::from(ready) * reporting).ceil() as u32;
        let more: Vec<f64> = loads.iter().map(|v| v * factor).collect();
        let low = decide_after(&targets, load, &loads, current, ready, reported);
        let high = decide_after(&targets, load, &more, current, ready, reported);
        prop_assert!(
            high.desired >= low.desired,
            "×{factor}: {} < {}\nlow: {}\nhigh: {}", high.desired, low.desired, low.reason, high.reason
        );
    }
}
