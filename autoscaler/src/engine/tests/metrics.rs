//! Rule 3: what each metric target recommends, and how several combine.

use super::*;

#[test]
fn concurrency_is_the_window_average_over_the_target_per_replica() {
    let mut case = Case::new(targets(1, 10, vec![target(MetricKind::Concurrency, 4.0)]));
    case.steady(10, 5, 8.2);
    let d = case.decide(10, 4, 4, false);
    assert_eq!(d.desired, 3);
    assert_eq!(why(&d), "concurrency 8.2 at target 4/replica → 3");
    assert_eq!(d.mode, Mode::Stable);
}

#[test]
fn rps_is_arrivals_per_second_over_the_window() {
    let mut case = Case::new(targets(1, 10, vec![target(MetricKind::Rps, 5.0)]));
    case.steady(10, 12, 1.0);
    let d = case.decide(10, 1, 1, false);
    assert_eq!(d.desired, 3, "{}", why(&d));
    assert_eq!(why(&d), "rps 12.0 at target 5/replica → 3");
}

#[test]
fn observations_older_than_the_stable_window_do_not_count() {
    let mut case = Case::new(targets(1, 10, vec![target(MetricKind::Concurrency, 1.0)]));
    // A burst long ago, then quiet: only the quiet part is in the window at t=200.
    case.steady(10, 10, 10.0);
    case.traffic(150, 200, 1, 1.0);
    let d = case.decide(200, 1, 1, false);
    assert_eq!(d.desired, 1, "{}", why(&d));
}

#[test]
fn utilisation_follows_ready_times_observed_over_target() {
    let mut case = Case::new(targets(1, 10, vec![target(MetricKind::Cpu, 50.0)]));
    case.cpu(90.0);
    let d = case.decide(10, 2, 2, false);
    assert_eq!(d.desired, 4, "{}", why(&d));
    assert_eq!(why(&d), "cpu 90.0% on 2 ready over target 50% → 4");
}

#[test]
fn every_resource_metric_uses_the_hpa_formula() {
    for (kind, metric) in [
        (MetricKind::Cpu, ResourceMetric::Cpu),
        (MetricKind::Memory, ResourceMetric::Memory),
        (MetricKind::Gpu, ResourceMetric::Gpu),
        (MetricKind::GpuMemory, ResourceMetric::GpuMemory),
    ] {
        let mut case = Case::new(targets(1, 20, vec![target(kind, 40.0)]));
        case.sample(metric, 5, 100.0, 3);
        let d = case.decide(10, 3, 3, false);
        // ceil(3 × 100 / 40) = ceil(7.5)
        assert_eq!(d.desired, 8, "{kind:?}: {}", why(&d));
        let m = d.metrics[0];
        assert_eq!(
            (m.metric, m.status, m.replicas),
            (kind, MetricStatus::Scaled, 8)
        );
        assert_eq!(m.observed, Some(100.0));
    }
}

#[test]
fn within_tolerance_nothing_changes() {
    let mut case = Case::new(targets(1, 10, vec![target(MetricKind::Cpu, 50.0)]));
    case.cpu(54.0);
    let d = case.decide(10, 3, 3, false);
    assert_eq!(d.desired, 3);
    assert_eq!(d.metrics[0].status, MetricStatus::WithinTolerance);
    assert!(why(&d).contains("within 10% of target 50%"), "{}", why(&d));
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
fn the_tolerance_is_a_knob() {
    let mut t = targets(1, 10, vec![target(MetricKind::Concurrency, 10.0)]);
    t.behavior.tolerance = 2.0;
    let mut case = Case::new(t);
    // 21.5 for 2 replicas at 10 is 7.5% over: inside the default band, outside 2%.
    case.steady(10, 5, 21.5);
    let d = case.decide(10, 2, 2, false);
    assert_eq!(d.desired, 3, "{}", why(&d));
    case.targets.behavior.tolerance = 10.0;
    let d = case.decide(11, 2, 2, false);
    assert_eq!(d.desired, 2, "{}", why(&d));
    assert!(
        why(&d).contains("within 10% of target 10/replica × 2"),
        "{}",
        why(&d)
    );
}

#[test]
fn several_metrics_take_the_largest_and_each_is_reported() {
    let mut case = Case::new(targets(
        1,
        10,
        vec![
            target(MetricKind::Cpu, 50.0),
            target(MetricKind::Concurrency, 2.0),
            target(MetricKind::Rps, 100.0),
        ],
    ));
    case.cpu(100.0);
    case.steady(10, 5, 10.0);
    let d = case.decide(10, 2, 2, false);
    assert_eq!(d.desired, 5, "{}", why(&d));
    assert!(why(&d).starts_with("concurrency"), "{}", why(&d));
    let asked: Vec<(MetricKind, u32)> = d.metrics.iter().map(|m| (m.metric, m.replicas)).collect();
    assert_eq!(
        asked,
        [
            (MetricKind::Cpu, 4),
            (MetricKind::Concurrency, 5),
            (MetricKind::Rps, 1)
        ]
    );
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
    assert_eq!(d.desired, 4, "{}", why(&d));
    assert_eq!(d.metrics[0].status, MetricStatus::Missing);
    assert!(why(&d).contains("cpu has no sample"), "{}", why(&d));
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
fn a_stale_sample_never_lowers_desired() {
    let mut case = Case::new(targets(1, 10, vec![target(MetricKind::Cpu, 50.0)]));
    // 5% cpu would ask for 1, but the sample is 61 s old at t=100, older than the stable window.
    case.sample(ResourceMetric::Cpu, 39, 5.0, 4);
    let d = case.decide(100, 4, 4, false);
    assert_eq!(d.desired, 4, "{}", why(&d));
    assert_eq!(d.metrics[0].status, MetricStatus::Stale);
    assert_eq!(d.metrics[0].sample_age_seconds, Some(61.0));
    assert!(why(&d).contains("sample is 1m1s old"), "{}", why(&d));
    // The same sample 60 s old is still fresh: 1, halved by maxScaleDownRate.
    assert_eq!(case.decide(99, 4, 4, false).desired, 2);
}

#[test]
fn a_failing_metric_blocks_scale_down_but_not_scale_up() {
    let mut case = Case::new(targets(
        1,
        10,
        vec![
            target(MetricKind::Gpu, 50.0),
            target(MetricKind::Concurrency, 2.0),
        ],
    ));
    case.resources = ResourceSamples::failed("prometheus: connection refused");
    // Concurrency alone would go from 4 to 1.
    case.steady(10, 1, 1.0);
    let d = case.decide(10, 4, 4, false);
    assert_eq!(d.desired, 4, "{}", why(&d));
    assert_eq!(d.metrics[0].status, MetricStatus::Error);
    assert!(why(&d).starts_with("gpu unavailable"), "{}", why(&d));
    // Concurrency asking for more still scales up.
    case.steady(20, 10, 16.0);
    let d = case.decide(20, 4, 4, false);
    assert_eq!(d.desired, 8, "{}", why(&d));
}

#[test]
fn no_traffic_observation_is_a_missing_sample() {
    let mut case = Case::new(targets(1, 10, vec![target(MetricKind::Concurrency, 1.0)]));
    let d = case.decide(10, 3, 3, false);
    assert_eq!(d.desired, 3, "{}", why(&d));
}

#[test]
fn without_metrics_the_deployment_stays_at_its_minimum() {
    let mut case = Case::new(targets(2, 10, vec![]));
    case.steady(10, 100, 50.0);
    let d = case.decide(10, 2, 2, false);
    assert_eq!(d.desired, 2);
    assert_eq!(why(&d), "no metric targets → minimum 2");
    assert!(d.metrics.is_empty());
    assert_eq!(case.decide(11, 3, 3, false).desired, 2);
}

#[test]
fn starting_replicas_are_not_idle_capacity() {
    let mut case = Case::new(targets(1, 10, vec![target(MetricKind::Cpu, 50.0)]));
    // One ready replica at 20%: on its own it would ask for 1, but three more are starting and
    // count at target on a scale-down.
    case.cpu(20.0);
    let d = case.decide(10, 4, 1, false);
    assert_eq!(d.desired, 4, "{}", why(&d));
    // A ready replica at 150% asks for 2, which must not stop the starting ones either.
    case.cpu(150.0);
    assert_eq!(case.decide(11, 4, 1, false).desired, 4);
}

#[test]
fn starting_replicas_count_as_idle_on_a_scale_up() {
    let mut case = Case::new(targets(1, 20, vec![target(MetricKind::Cpu, 50.0)]));
    // Two ready at 75% and one starting: counted at 0% the three average 50%, the target, so
    // the count holds (the HPA's rule); the ready replicas alone would ask for 3 anyway.
    case.cpu(75.0);
    let d = case.decide(10, 3, 2, false);
    assert_eq!(d.desired, 3, "{}", why(&d));
    assert_eq!(d.metrics[0].status, MetricStatus::Held);
    assert!(why(&d).contains("1 replicas still starting"), "{}", why(&d));
    // At 200% the load is real: ceil(2 × 200 / 50) = 8, starting replica or not.
    case.cpu(200.0);
    let d = case.decide(11, 3, 2, false);
    assert_eq!(d.desired, 8, "{}", why(&d));
}

#[test]
fn ready_replicas_without_a_sample_count_at_target_down_and_idle_up() {
    let mut case = Case::new(targets(1, 20, vec![target(MetricKind::Cpu, 50.0)]));
    // 2 of 4 ready replicas report 10%: the other two count at 50% on a scale-down, so
    // (2×10 + 2×50) / 4 = 30% → ceil(4 × 0.6) = 3, not ceil(4 × 0.2) = 1.
    case.sample(ResourceMetric::Cpu, 5, 10.0, 2);
    let d = case.decide(10, 4, 4, false);
    assert_eq!(d.desired, 3, "{}", why(&d));
    // 2 of 4 report 90%: the others count as idle on a scale-up, (2×90) / 4 = 45%, under the
    // 50% target: that reverses the direction, so the count holds.
    case.sample(ResourceMetric::Cpu, 5, 90.0, 2);
    let d = case.decide(11, 4, 4, false);
    assert_eq!(d.desired, 4, "{}", why(&d));
    assert_eq!(d.metrics[0].status, MetricStatus::Held);
    assert!(
        why(&d).contains("2 replicas without a sample"),
        "{}",
        why(&d)
    );
}

/// Latencies of completed requests as two activators saw them, merged as the scaler merges
/// their snapshots.
fn latency_from_two_activators() -> LatencyHistogram {
    let mut a = TrafficSnapshot::default();
    let mut b = TrafficSnapshot::default();
    for _ in 0..90 {
        a.latency.record(100_000);
    }
    for _ in 0..9 {
        b.latency.record(1_800_000);
    }
    b.latency.record(3_000_000);
    a.merge(&b);
    a.latency
}

#[test]
fn request_duration_uses_the_summary_of_histograms_merged_across_activators() {
    let cases = [
        // 90 × 0.1 s, 9 × 1.8 s, 1 × 3 s: ceil(2 × observed / 1 s).
        (Summary::Average, 0.282, 1),
        (Summary::P50, 0.1, 1),
        (Summary::P95, 1.8, 4),
        (Summary::P99, 1.8, 4),
        // The histogram keeps 3 s as 3.015 s (its bucket's highest value): ceil(6.03).
        (Summary::Max, 3.0, 7),
    ];
    for (summary, observed, desired) in cases {
        let mut t = targets(1, 10, vec![target(MetricKind::RequestDuration, 1.0)]);
        t.metrics[0].summary = summary;
        let mut case = Case::new(t);
        let mut observation = tick(case.at(10), 100, 2.0);
        observation.latency = Some(latency_from_two_activators());
        case.state.observe(observation, secs(60));
        let d = case.decide(10, 2, 2, false);
        let m = d.metrics[0];
        let seen = m.observed.expect("a latency was observed");
        assert!(
            (seen / observed - 1.0).abs() < 0.03,
            "{summary:?}: {seen} for {observed}"
        );
        assert_eq!(d.desired, desired, "{summary:?}: {}", why(&d));
        let name = format!("requestDuration {}", summary.as_str());
        assert!(why(&d).starts_with(&name), "{}", why(&d));
    }
}

#[test]
fn request_duration_from_the_metric_source_wins_over_this_process_activators() {
    let mut t = targets(1, 10, vec![target(MetricKind::RequestDuration, 1.0)]);
    t.metrics[0].summary = Summary::P95;
    let mut case = Case::new(t);
    let mut observation = tick(case.at(10), 100, 2.0);
    observation.latency = Some(latency_from_two_activators());
    case.state.observe(observation, secs(60));
    case.sample(
        ResourceMetric::RequestDuration {
            summary: lull_core::LatencySummary::P95,
        },
        9,
        3.5,
        1,
    );
    let d = case.decide(10, 2, 2, false);
    assert_eq!(d.desired, 7, "ceil(2 × 3.5): {}", why(&d));
}

#[test]
fn request_duration_without_completed_requests_is_missing() {
    let mut case = Case::new(targets(
        1,
        10,
        vec![target(MetricKind::RequestDuration, 1.0)],
    ));
    case.steady(10, 0, 0.0);
    let d = case.decide(10, 3, 3, false);
    assert_eq!(d.desired, 3, "{}", why(&d));
    assert_eq!(d.metrics[0].status, MetricStatus::Missing);
}
