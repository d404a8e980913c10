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
    fn new(targets: Targets) -> Self {
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
        for s in end - 9..=end {
            let at = self.at(s);
            self.state
                .observe(tick(at, arrived_per_s, concurrency), secs(60));
        }
    }

    fn cpu(&mut self, percent: f64) {
        self.resources = ResourceSamples::new([ResourceSample {
            metric: ResourceMetric::Cpu,
            percent,
            replicas: 1,
        }]);
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

#[test]
fn concurrency_is_the_window_average_over_the_target_per_replica() {
    let mut case = Case::new(targets(1, 10, vec![target(MetricKind::Concurrency, 4.0)]));
    case.steady(10, 5, 8.2);
    let d = case.decide(10, 1, 1, false);
    assert_eq!(d.desired, 3);
    assert_eq!(d.reason, "concurrency 8.2 over target 4/replica → 3");
}

#[test]
fn rps_is_arrivals_per_second_over_the_window() {
    let mut case = Case::new(targets(1, 10, vec![target(MetricKind::Rps, 5.0)]));
    case.steady(10, 12, 1.0);
    let d = case.decide(10, 1, 1, false);
    assert_eq!(d.desired, 3, "{}", d.reason);
    assert!(
        d.reason.starts_with("rps 12.0 over target 5/replica"),
        "{}",
        d.reason
    );
}

#[test]
fn observations_older_than_the_stable_window_do_not_count() {
    let mut case = Case::new(targets(1, 10, vec![target(MetricKind::Concurrency, 1.0)]));
    // A burst long ago, then quiet: only the quiet part is in the window at t=200.
    case.steady(10, 10, 10.0);
    for s in 150..=200 {
        let at = case.at(s);
        case.state.observe(tick(at, 1, 1.0), secs(60));
    }
    let d = case.decide(200, 1, 1, false);
    assert_eq!(d.desired, 1, "{}", d.reason);
}

#[test]
fn utilisation_follows_ready_times_observed_over_target() {
    let mut case = Case::new(targets(1, 10, vec![target(MetricKind::Cpu, 50.0)]));
    case.cpu(90.0);
    let d = case.decide(10, 2, 2, false);
    assert_eq!(d.desired, 4, "{}", d.reason);
    assert_eq!(d.reason, "cpu 90.0% on 2 ready over target 50% → 4");
}

#[test]
fn within_tolerance_nothing_changes() {
    let mut case = Case::new(targets(1, 10, vec![target(MetricKind::Cpu, 50.0)]));
    case.cpu(54.0);
    let d = case.decide(10, 3, 3, false);
    assert_eq!(d.desired, 3);
    assert!(
        d.reason.contains("within 10% of target 50%"),
        "{}",
        d.reason
    );
    case.cpu(46.0);
    assert_eq!(case.decide(11, 3, 3, false).desired, 3);
    case.cpu(44.0);
    assert_eq!(
        case.decide(12, 3, 3, false).desired,
        3,
        "44% of 3 is 2.64, still 3"
    );
    case.cpu(30.0);
    assert_eq!(case.decide(13, 3, 3, false).desired, 2);
}

#[test]
fn several_metrics_take_the_largest() {
    let mut case = Case::new(targets(
        1,
        10,
        vec![
            target(MetricKind::Cpu, 50.0),
            target(MetricKind::Concurrency, 2.0),
        ],
    ));
    case.cpu(100.0);
    case.steady(10, 5, 10.0);
    let d = case.decide(10, 2, 2, false);
    assert_eq!(d.desired, 5, "{}", d.reason);
    assert!(d.reason.starts_with("concurrency"), "{}", d.reason);
}

#[test]
fn a_missing_sample_never_lowers_desired() {
    let mut case = Case::new(targets(
        1,
        10,
        vec![
            target(MetricKind::Cpu, 50.0),
            target(MetricKind::Concurrency, 10.0),
        ],
    ));
    case.steady(10, 1, 1.0);
    let d = case.decide(10, 4, 4, false);
    assert_eq!(d.desired, 4, "{}", d.reason);
    assert!(d.reason.contains("cpu has no sample"), "{}", d.reason);
}

#[test]
fn a_missing_sample_does_not_stop_a_scale_up() {
    let mut case = Case::new(targets(
        1,
        10,
        vec![
            target(MetricKind::Cpu, 50.0),
            target(MetricKind::Concurrency, 1.0),
        ],
    ));
    case.steady(10, 5, 6.0);
    assert_eq!(case.decide(10, 2, 2, false).desired, 6);
}

#[test]
fn no_traffic_observation_is_a_missing_sample() {
    let mut case = Case::new(targets(1, 10, vec![target(MetricKind::Concurrency, 1.0)]));
    let d = case.decide(10, 3, 3, false);
    assert_eq!(d.desired, 3, "{}", d.reason);
}

#[test]
fn without_metrics_the_deployment_stays_at_its_minimum() {
    let mut case = Case::new(targets(2, 10, vec![]));
    case.steady(10, 100, 50.0);
    let d = case.decide(10, 2, 2, false);
    assert_eq!(d, Decision::new(2, "no metric targets → minimum 2"));
    assert_eq!(case.decide(11, 3, 3, false).desired, 2);
}

#[test]
fn desired_is_clamped_to_max_and_min() {
    let mut case = Case::new(targets(2, 5, vec![target(MetricKind::Concurrency, 1.0)]));
    case.steady(10, 100, 100.0);
    let d = case.decide(10, 2, 2, false);
    assert_eq!(d.desired, 5);
    assert!(
        d.reason.ends_with("capped at maxReplicas 5"),
        "{}",
        d.reason
    );

    let mut quiet = Case::new(targets(2, 5, vec![target(MetricKind::Concurrency, 1.0)]));
    quiet.steady(10, 0, 0.0);
    let d = quiet.decide(10, 3, 3, false);
    assert_eq!(d.desired, 2);
    assert!(
        d.reason.ends_with("raised to minReplicas 2"),
        "{}",
        d.reason
    );
}

#[test]
fn a_wake_at_zero_goes_to_the_activation_scale() {
    let mut case = Case::new(targets(0, 5, vec![]));
    let d = case.decide(10, 0, 0, true);
    assert_eq!(
        d,
        Decision::new(1, "woken by a request at zero → 1 (activation scale)")
    );

    case.targets.behavior.activation_scale = 3;
    assert_eq!(case.decide(11, 0, 0, true).desired, 3);
}

#[test]
fn parked_requests_at_zero_wake_without_a_wake_call() {
    let mut case = Case::new(targets(0, 5, vec![]));
    let mut observation = tick(case.at(10), 2, 1.5);
    observation.parked = 2;
    case.state.observe(observation, secs(60));
    let d = case.decide(10, 0, 0, false);
    assert_eq!(d.desired, 1);
    assert_eq!(
        d.reason,
        "2 requests waiting at zero → 1 (activation scale)"
    );
}

#[test]
fn a_wake_at_zero_takes_the_metric_desire_when_larger() {
    let mut case = Case::new(targets(0, 5, vec![target(MetricKind::Concurrency, 2.0)]));
    let mut observation = tick(case.at(10), 8, 8.0);
    observation.parked = 8;
    case.state.observe(observation, secs(60));
    let d = case.decide(10, 0, 0, true);
    assert_eq!(d.desired, 4, "{}", d.reason);
}

#[test]
fn at_zero_without_requests_stays_at_zero_or_rises_to_min() {
    let mut case = Case::new(targets(0, 5, vec![]));
    case.steady(10, 0, 0.0);
    assert_eq!(
        case.decide(10, 0, 0, false),
        Decision::new(0, "at zero, no requests")
    );
    case.targets.min = 2;
    assert_eq!(case.decide(11, 0, 0, false).desired, 2);
}

#[test]
fn idle_for_scale_to_zero_after_goes_to_zero() {
    let mut case = Case::new(targets(0, 5, vec![]));
    case.steady(10, 1, 0.5);
    // Last request seen in the observation ending at 10 s; idle from there.
    for s in 11..=39 {
        let at = case.at(s);
        case.state.observe(tick(at, 0, 0.0), secs(60));
    }
    let d = case.decide(39, 1, 1, false);
    assert_eq!(d.desired, 1, "{}", d.reason);
    case.state.observe(tick(case.at(40), 0, 0.0), secs(60));
    let d = case.decide(40, 1, 1, false);
    assert_eq!(
        d,
        Decision::new(0, "idle for 30s ≥ scaleToZeroAfter 30s → 0")
    );
}

#[test]
fn a_fresh_state_counts_as_used_when_it_starts() {
    let mut case = Case::new(targets(0, 5, vec![]));
    assert_eq!(case.decide(29, 2, 2, false).desired, 1);
    assert_eq!(case.decide(30, 2, 2, false).desired, 0);
    assert_eq!(case.state.idle_for(case.at(45)), secs(45));
}

#[test]
fn requests_in_flight_or_a_wake_prevent_scale_to_zero() {
    let mut case = Case::new(targets(0, 5, vec![]));
    let mut long_request = tick(case.at(100), 0, 1.0);
    long_request.in_flight = 1;
    // The observation itself counts as a request seen, so mark time as having passed without
    // one by deciding long after it: a request still in flight must keep the replica.
    case.state.observe(long_request, secs(60));
    assert_eq!(case.decide(200, 1, 1, false).desired, 1);
    assert_eq!(case.decide(200, 1, 1, true).desired, 1);
}

#[test]
fn min_above_zero_never_scales_to_zero() {
    let mut case = Case::new(targets(1, 5, vec![]));
    assert_eq!(case.decide(1000, 1, 1, false).desired, 1);
}

#[test]
fn below_the_idle_window_min_zero_keeps_one_replica() {
    let mut case = Case::new(targets(0, 5, vec![target(MetricKind::Concurrency, 1.0)]));
    case.steady(10, 0, 0.0);
    let d = case.decide(10, 2, 2, false);
    assert_eq!(d.desired, 1);
    assert!(
        d.reason
            .ends_with("kept at 1 until idle for scaleToZeroAfter 30s"),
        "{}",
        d.reason
    );
}

#[test]
fn scale_down_is_stabilised_to_the_window_high() {
    let mut case = Case::new(targets(1, 10, vec![target(MetricKind::Concurrency, 1.0)]));
    case.targets.behavior.scale_down_stabilization = Some(lull_spec::Duration::from_secs(30));
    case.steady(10, 10, 6.0);
    assert_eq!(case.decide(10, 1, 1, false).desired, 6);
    // Traffic drops at once; the window still holds the 6 recommended at 10 s.
    for s in 11..=35 {
        let at = case.at(s);
        case.state.observe(tick(at, 1, 0.0), secs(5));
    }
    let d = case.decide(35, 6, 6, false);
    assert_eq!(d.desired, 6, "{}", d.reason);
    assert!(
        d.reason.contains("scale-down stabilisation"),
        "{}",
        d.reason
    );
    // 30 s after the last high recommendation the window has let it go.
    let d = case.decide(40, 6, 6, false);
    assert_eq!(d.desired, 3, "halved by maxScaleDownRate: {}", d.reason);
}

#[test]
fn a_fresh_state_does_not_scale_down_within_the_window() {
    let mut case = Case::new(targets(1, 10, vec![target(MetricKind::Concurrency, 1.0)]));
    case.targets.behavior.scale_down_stabilization = Some(lull_spec::Duration::from_secs(30));
    case.steady(10, 1, 1.0);
    assert_eq!(case.decide(10, 4, 4, false).desired, 4);
    assert_eq!(case.decide(39, 4, 4, false).desired, 4);
    assert_eq!(case.decide(41, 4, 4, false).desired, 2);
}

#[test]
fn the_default_stabilisation_window_depends_on_the_metrics() {
    let mut t = targets(1, 10, vec![target(MetricKind::Concurrency, 1.0)]);
    t.behavior.scale_down_stabilization = None;
    assert_eq!(t.scale_down_stabilization(), secs(60));
    t.metrics.push(target(MetricKind::Memory, 80.0));
    assert_eq!(t.scale_down_stabilization(), secs(300));
}

#[test]
fn scale_up_and_down_are_rate_limited() {
    let mut case = Case::new(targets(1, 100, vec![target(MetricKind::Concurrency, 1.0)]));
    case.targets.behavior.max_scale_up_rate = 2.0;
    case.steady(10, 50, 50.0);
    let d = case.decide(10, 3, 3, false);
    assert_eq!(d.desired, 6);
    assert!(
        d.reason.ends_with("limited to 6 by maxScaleUpRate 2"),
        "{}",
        d.reason
    );

    let mut quiet = Case::new(targets(1, 100, vec![target(MetricKind::Concurrency, 1.0)]));
    quiet.steady(10, 1, 1.0);
    let d = quiet.decide(10, 8, 8, false);
    assert_eq!(d.desired, 4);
    assert!(
        d.reason.ends_with("limited to 4 by maxScaleDownRate 2"),
        "{}",
        d.reason
    );
}

#[test]
fn starting_replicas_are_not_idle_capacity() {
    let mut case = Case::new(targets(1, 10, vec![target(MetricKind::Cpu, 50.0)]));
    // One ready replica at 20%: on its own it would ask for 1, but three more are starting.
    case.cpu(20.0);
    let d = case.decide(10, 4, 1, false);
    assert_eq!(d.desired, 4, "{}", d.reason);
    // A ready replica at 150% asks for 2, which must not stop the starting ones either.
    case.cpu(150.0);
    assert_eq!(case.decide(11, 4, 1, false).desired, 4);
}

#[test]
fn request_duration_uses_the_summary_percentile() {
    let mut t = targets(1, 10, vec![target(MetricKind::RequestDuration, 1.0)]);
    t.metrics[0].summary = Summary::P95;
    let mut case = Case::new(t);
    let mut latency = LatencyHistogram::default();
    for _ in 0..90 {
        latency.record(100_000);
    }
    for _ in 0..10 {
        latency.record(1_800_000);
    }
    let mut observation = tick(case.at(10), 100, 2.0);
    observation.latency = Some(latency);
    case.state.observe(observation, secs(60));
    let d = case.decide(10, 2, 2, false);
    assert_eq!(
        d.desired, 4,
        "p95 is 1.8s, 2 × 1.8 asks for 4: {}",
        d.reason
    );
    assert!(
        d.reason.starts_with("requestDuration p95 1.8s"),
        "{}",
        d.reason
    );

    case.targets.metrics[0].summary = Summary::Average;
    // The mean is 0.27 s: 2 × 0.27 asks for 1.
    assert_eq!(case.decide(11, 2, 2, false).desired, 1);
}
