//! Rules 1 and 2: waking from zero, and going there.

use super::*;

#[test]
fn a_wake_at_zero_goes_to_the_activation_scale() {
    let mut case = Case::new(targets(0, 5, vec![]));
    let d = case.decide(10, 0, 0, true);
    assert_eq!(d.desired, 1);
    assert_eq!(d.mode, Mode::Activating);
    assert_eq!(why(&d), "woken by a request at zero → 1 (activation scale)");

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
    assert_eq!(why(&d), "2 requests waiting at zero → 1 (activation scale)");
}

#[test]
fn a_wake_at_zero_takes_the_request_rate_desire_when_larger() {
    let mut case = Case::new(targets(
        0,
        5,
        vec![
            target(MetricKind::Rps, 2.0),
            target(MetricKind::Concurrency, 1.0),
        ],
    ));
    let mut observation = tick(case.at(10), 8, 8.0);
    observation.parked = 8;
    case.state.observe(observation, secs(60));
    let d = case.decide(10, 0, 0, true);
    assert_eq!(d.desired, 4, "{}", why(&d));
    assert_eq!(d.mode, Mode::Activating);
    assert_eq!(
        why(&d),
        "8 requests waiting at zero; rps 8.0 at target 2/replica → 4"
    );
    // Eight requests waiting are no measure of concurrency: none has been served yet.
    assert_eq!(d.metrics[1].status, MetricStatus::Missing);
}

#[test]
fn a_wake_sizes_by_the_burst_not_by_the_idle_stable_window() {
    let mut case = Case::new(targets(0, 20, vec![target(MetricKind::Rps, 1.0)]));
    case.traffic(1, 54, 0, 0.0);
    case.traffic(55, 60, 10, 0.0);
    // The stable window averages 1 rps; the panic window, 10.
    let d = case.decide(60, 0, 0, true);
    assert_eq!(d.desired, 10, "{}", why(&d));
}

#[test]
fn requests_waiting_for_starting_replicas_are_not_load() {
    let mut case = Case::new(targets(0, 20, vec![target(MetricKind::Concurrency, 4.0)]));
    case.traffic(1, 59, 0, 0.0);
    // 80 rps arrive at zero; the replica takes 2 s to start. Parked, they average 40 and then
    // 120 in flight or waiting: that measures the start-up, not the 8 the load needs.
    let mut waiting = tick(case.at(60), 80, 40.0);
    waiting.parked = 80;
    case.state.observe(waiting, secs(60));
    assert_eq!(case.decide(60, 0, 0, true).desired, 1);
    let mut waiting = tick(case.at(61), 80, 120.0);
    waiting.parked = 160;
    case.state.observe(waiting, secs(60));
    let d = case.decide(61, 1, 0, false);
    assert_eq!((d.desired, d.mode), (1, Mode::Activating), "{}", why(&d));
    // Once the replica serves, what it serves is load: 48 in flight, averaged over the 4 s of
    // the panic window a replica was ready in, is 12, three replicas' worth: a burst.
    case.traffic(62, 62, 80, 48.0);
    let d = case.decide(62, 1, 1, false);
    assert_eq!((d.desired, d.mode), (3, Mode::Panic), "{}", why(&d));
}

#[test]
fn gpu_use_never_wakes_a_deployment_at_zero() {
    let mut case = Case::new(targets(
        0,
        5,
        vec![
            target(MetricKind::Gpu, 50.0),
            target(MetricKind::GpuMemory, 50.0),
        ],
    ));
    // A sample that says the GPU is full (a stale exporter, another process on the GPU): a
    // stopped replica uses no GPU, so it cannot be this deployment's load.
    case.resources = ResourceSamples::new(
        case.at(9),
        [
            ResourceSample {
                metric: ResourceMetric::Gpu,
                percent: 100.0,
                replicas: 1,
            },
            ResourceSample {
                metric: ResourceMetric::GpuMemory,
                percent: 100.0,
                replicas: 1,
            },
        ],
    );
    case.steady(10, 0, 0.0);
    let d = case.decide(10, 0, 0, false);
    assert_eq!((d.desired, d.mode), (0, Mode::ScaleToZero), "{}", why(&d));
    // Traffic wakes it, to the activation scale: the GPU sample asks for nothing at zero.
    let d = case.decide(11, 0, 0, true);
    assert_eq!(d.desired, 1, "{}", why(&d));
    assert!(
        d.metrics.iter().all(|m| m.status == MetricStatus::Missing),
        "{:?}",
        d.metrics
    );
}

#[test]
fn activating_lasts_until_a_replica_is_ready() {
    let mut case = Case::new(targets(0, 5, vec![target(MetricKind::Concurrency, 10.0)]));
    assert_eq!(case.decide(10, 0, 0, true).mode, Mode::Activating);
    let mut waiting = tick(case.at(11), 3, 3.0);
    waiting.parked = 3;
    case.state.observe(waiting, secs(60));
    assert_eq!(case.decide(11, 1, 0, false).mode, Mode::Activating);
    case.traffic(12, 12, 3, 3.0);
    assert_eq!(case.decide(12, 1, 1, false).mode, Mode::Stable);
}

#[test]
fn at_zero_without_requests_stays_at_zero_or_rises_to_min() {
    let mut case = Case::new(targets(0, 5, vec![]));
    case.steady(10, 0, 0.0);
    let d = case.decide(10, 0, 0, false);
    assert_eq!((d.desired, d.mode), (0, Mode::ScaleToZero));
    assert_eq!(why(&d), "at zero, no requests");
    case.targets.min = 2;
    let d = case.decide(11, 0, 0, false);
    assert_eq!(d.desired, 2);
    assert_eq!(why(&d), "at zero, below minReplicas 2 → 2");
}

#[test]
fn idle_for_scale_to_zero_after_goes_to_zero() {
    let mut case = Case::new(targets(0, 5, vec![]));
    case.steady(10, 1, 0.5);
    // Last request seen in the observation ending at 10 s; idle from there.
    case.traffic(11, 39, 0, 0.0);
    let d = case.decide(39, 1, 1, false);
    assert_eq!(d.desired, 1, "{}", why(&d));
    case.traffic(40, 40, 0, 0.0);
    let d = case.decide(40, 1, 1, false);
    assert_eq!((d.desired, d.mode), (0, Mode::ScaleToZero));
    assert_eq!(why(&d), "idle for 30s ≥ scaleToZeroAfter 30s → 0");
}

#[test]
fn scale_to_zero_after_is_a_knob_and_zero_skips_the_rate_limit() {
    let mut case = Case::new(targets(0, 10, vec![target(MetricKind::Concurrency, 1.0)]));
    case.targets.scale_to_zero_after = secs(120);
    case.steady(10, 1, 8.0);
    case.traffic(11, 129, 0, 0.0);
    assert_eq!(
        case.decide(129, 8, 8, false).desired,
        4,
        "idle 119 s: halved"
    );
    case.traffic(130, 130, 0, 0.0);
    assert_eq!(case.decide(130, 8, 8, false).desired, 0, "idle 120 s");
}

#[test]
fn a_fresh_state_counts_as_used_when_it_starts() {
    let mut case = Case::fresh(targets(0, 5, vec![]));
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
        why(&d).ends_with("kept at 1 until idle for scaleToZeroAfter 30s"),
        "{}",
        why(&d)
    );
}
