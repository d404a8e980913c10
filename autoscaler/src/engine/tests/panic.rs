//! Rule 4: panic on bursts of traffic, and the caution of a fresh state.

use super::*;

/// A concurrency target of 1 per replica between 1 and 20, no stabilisation.
fn burst_case() -> Case {
    Case::new(targets(1, 20, vec![target(MetricKind::Concurrency, 1.0)]))
}

#[test]
fn a_burst_over_twice_capacity_scales_up_at_once() {
    let mut case = burst_case();
    case.traffic(1, 50, 1, 2.0);
    case.traffic(51, 53, 10, 10.0);
    // Panic window (48, 53]: (3×2 + 3×10) / 6 = 6 ≥ 200% of 2 replicas. The stable window
    // alone would ask for ceil((50×2 + 3×10) / 53) = 3.
    let d = case.decide(53, 2, 2, false);
    assert_eq!(d.mode, Mode::Panic);
    assert_eq!(d.desired, 6, "{}", why(&d));
    assert_eq!(d.metrics[0].status, MetricStatus::Panic);
    assert_eq!(d.metrics[0].panic_observed, Some(6.0));
    assert_eq!(
        why(&d),
        "concurrency 6.0 in the panic window at target 1/replica → 6"
    );
}

#[test]
fn below_the_threshold_the_stable_window_decides() {
    let mut case = burst_case();
    case.traffic(1, 50, 1, 2.0);
    case.traffic(51, 53, 10, 5.0);
    // Panic window: (3×2 + 3×5) / 6 = 3.5 < 4. The stable window's (50×2 + 3×5) / 53 = 2.17
    // is within 10% of 2 replicas.
    let d = case.decide(53, 2, 2, false);
    assert_eq!(d.mode, Mode::Stable);
    assert_eq!(d.desired, 2, "{}", why(&d));
    assert_eq!(d.metrics[0].status, MetricStatus::WithinTolerance);
}

#[test]
fn no_scale_down_while_panicking_and_the_panic_ends_a_stable_window_below_the_threshold() {
    let mut case = burst_case();
    case.traffic(1, 50, 1, 2.0);
    case.traffic(51, 53, 10, 10.0);
    let mut desired = case.decide(53, 2, 2, false).desired;
    assert_eq!(desired, 6);
    // Traffic falls to 1 at once; 53 s was the last decision over the threshold.
    for s in 54..113 {
        case.traffic(s, s, 1, 1.0);
        let d = case.decide(s, desired, desired, false);
        assert_eq!((d.desired, d.mode), (6, Mode::Panic), "at {s}: {}", why(&d));
        desired = d.desired;
    }
    let held = case.decide(112, 6, 6, false);
    assert!(
        why(&held).ends_with("panicking: held at 6, the most this panic asked for, until 1m below the panic threshold"),
        "{}",
        why(&held)
    );
    case.traffic(113, 113, 1, 1.0);
    let d = case.decide(113, 6, 6, false);
    assert_eq!(d.mode, Mode::Stable, "{}", why(&d));
    assert_eq!(
        d.desired,
        3,
        "down to 1, halved by maxScaleDownRate: {}",
        why(&d)
    );
}

#[test]
fn a_panic_is_renewed_while_bursts_continue() {
    let mut case = burst_case();
    case.traffic(1, 50, 1, 1.0);
    case.traffic(51, 53, 10, 10.0);
    let first = case.decide(53, 1, 1, false);
    assert_eq!(first.mode, Mode::Panic);
    // A second, bigger burst 40 s later is over 200% of the count the first one asked for.
    case.traffic(54, 92, 1, 1.0);
    case.traffic(93, 95, 10, 40.0);
    let d = case.decide(95, first.desired, first.desired, false);
    assert_eq!(d.mode, Mode::Panic);
    assert!(d.desired > first.desired, "{}", why(&d));
    // 60 s after the first burst the panic goes on: the second renewed it.
    case.traffic(96, 114, 1, 1.0);
    let d = case.decide(114, d.desired, d.desired, false);
    assert_eq!(d.mode, Mode::Panic, "{}", why(&d));
}

#[test]
fn starting_replicas_count_as_capacity() {
    // Knative compares the panic window with ready replicas only, and keeps panicking (and
    // adding replicas) while slow starters start. Here 3.5 in flight is 175% of the 2 replicas
    // already asked for, one of them still starting: no panic.
    let mut case = burst_case();
    case.traffic(1, 50, 1, 1.0);
    case.traffic(51, 56, 5, 3.5);
    let d = case.decide(56, 2, 1, false);
    assert_eq!(d.mode, Mode::Stable, "{}", why(&d));
    // With the one replica ready and none starting, the same burst is 350% of capacity.
    let mut case = burst_case();
    case.traffic(1, 50, 1, 1.0);
    case.traffic(51, 56, 5, 3.5);
    let d = case.decide(56, 1, 1, false);
    assert_eq!(d.mode, Mode::Panic, "{}", why(&d));
    assert_eq!(d.desired, 4, "{}", why(&d));
}

#[test]
fn the_panic_threshold_and_window_are_knobs() {
    let mut t = targets(1, 20, vec![target(MetricKind::Concurrency, 1.0)]);
    t.behavior.panic_threshold = 300.0;
    let mut case = Case::new(t);
    case.traffic(1, 50, 1, 2.0);
    case.traffic(51, 56, 5, 5.0);
    // 5 on 2 replicas is 250%: over the default 200%, under 300%.
    assert_eq!(case.decide(56, 2, 2, false).mode, Mode::Stable);
    case.targets.behavior.panic_threshold = 200.0;
    assert_eq!(case.decide(57, 2, 2, false).mode, Mode::Panic);

    let mut t = targets(1, 20, vec![target(MetricKind::Concurrency, 1.0)]);
    t.behavior.panic_window = lull_spec::Duration::from_secs(2);
    let mut case = Case::new(t);
    case.traffic(1, 50, 1, 1.0);
    case.traffic(51, 52, 5, 3.0);
    // (51, 52] averages 3 in a 2 s panic window; a 6 s window would average 1.67.
    let d = case.decide(52, 1, 1, false);
    assert_eq!((d.mode, d.desired), (Mode::Panic, 3), "{}", why(&d));
}

#[test]
fn rps_panics_too() {
    let mut case = Case::new(targets(1, 20, vec![target(MetricKind::Rps, 10.0)]));
    case.traffic(1, 50, 10, 1.0);
    case.traffic(51, 56, 60, 1.0);
    let d = case.decide(56, 1, 1, false);
    assert_eq!((d.mode, d.desired), (Mode::Panic, 6), "{}", why(&d));
}

#[test]
fn a_fresh_state_with_replicas_starts_in_panic() {
    let mut case = Case::fresh(targets(1, 10, vec![target(MetricKind::Concurrency, 1.0)]));
    case.steady(10, 1, 1.0);
    let d = case.decide(10, 4, 4, false);
    assert_eq!((d.desired, d.mode), (4, Mode::Panic), "{}", why(&d));
    assert!(
        why(&d).ends_with("held at 4 for stableWindow 1m after the autoscaler started (no scale-down on a first impression)"),
        "{}",
        why(&d)
    );
    case.traffic(11, 69, 1, 1.0);
    assert_eq!(case.decide(69, 4, 4, false).desired, 4);
    case.traffic(70, 70, 1, 1.0);
    let d = case.decide(70, 4, 4, false);
    assert_eq!((d.desired, d.mode), (2, Mode::Stable), "{}", why(&d));
}

#[test]
fn a_fresh_state_with_one_replica_or_no_targets_does_not_panic() {
    let mut case = Case::fresh(targets(1, 10, vec![target(MetricKind::Concurrency, 1.0)]));
    case.steady(10, 1, 1.0);
    assert_eq!(case.decide(10, 1, 1, false).mode, Mode::Stable);
    let mut case = Case::fresh(targets(2, 10, vec![]));
    let d = case.decide(10, 3, 3, false);
    assert_eq!((d.desired, d.mode), (2, Mode::Stable), "{}", why(&d));
}
