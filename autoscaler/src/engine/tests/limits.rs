//! Rules 5 and 6: scale-down stabilisation, bounds and rates.

use super::*;

#[test]
fn desired_is_clamped_to_max_and_min() {
    let mut case = Case::new(targets(2, 5, vec![target(MetricKind::Concurrency, 1.0)]));
    case.steady(10, 100, 100.0);
    let d = case.decide(10, 2, 2, false);
    assert_eq!(d.desired, 5);
    assert!(why(&d).ends_with("capped at maxReplicas 5"), "{}", why(&d));

    let mut quiet = Case::new(targets(2, 5, vec![target(MetricKind::Concurrency, 1.0)]));
    quiet.steady(10, 0, 0.0);
    let d = quiet.decide(10, 3, 3, false);
    assert_eq!(d.desired, 2);
    assert!(why(&d).ends_with("raised to minReplicas 2"), "{}", why(&d));
}

#[test]
fn bounds_hold_even_when_the_current_count_is_outside_them() {
    // maxReplicas lowered from 20 to 4 while 20 run: the scale-down rate would allow 10.
    let mut case = Case::new(targets(1, 4, vec![target(MetricKind::Concurrency, 1.0)]));
    case.steady(10, 20, 20.0);
    let d = case.decide(10, 20, 20, false);
    assert_eq!(d.desired, 4, "{}", why(&d));
    assert!(why(&d).ends_with("capped at maxReplicas 4"), "{}", why(&d));
    // minReplicas raised to 6 while 1 runs: the scale-up rate never holds it below.
    case.targets = targets(6, 10, vec![target(MetricKind::Concurrency, 1.0)]);
    case.targets.behavior.max_scale_up_rate = 2.0;
    let d = case.decide(11, 1, 1, false);
    assert_eq!(d.desired, 6, "{}", why(&d));
}

#[test]
fn scale_down_is_stabilised_to_the_window_high() {
    let mut case = Case::new(targets(1, 10, vec![target(MetricKind::Concurrency, 1.0)]));
    case.targets.behavior.scale_down_stabilization = Some(lull_spec::Duration::from_secs(30));
    case.steady(10, 10, 6.0);
    // 6 on 4 replicas is below the panic threshold: this is the stable window's doing.
    assert_eq!(case.decide(10, 4, 4, false).desired, 6);
    // Traffic drops at once; the window still holds the 6 recommended at 10 s.
    for s in 11..=35 {
        let at = case.at(s);
        case.state.observe(tick(at, 1, 0.0), secs(5));
    }
    let d = case.decide(35, 6, 6, false);
    assert_eq!(d.desired, 6, "{}", why(&d));
    assert!(
        why(&d).contains("the highest recommendation of the last 30s (scale-down stabilisation)"),
        "{}",
        why(&d)
    );
    // 30 s after the last high recommendation the window has let it go.
    let d = case.decide(40, 6, 6, false);
    assert_eq!(d.desired, 3, "halved by maxScaleDownRate: {}", why(&d));
}

#[test]
fn stabilisation_holds_the_highest_not_the_latest_recommendation() {
    let mut case = Case::new(targets(1, 10, vec![target(MetricKind::Cpu, 50.0)]));
    case.targets.behavior.scale_down_stabilization = Some(lull_spec::Duration::from_secs(30));
    case.targets.behavior.max_scale_down_rate = 100.0;
    // cpu on 8 ready replicas that asks for 8, 3, 5, then 2.
    for (s, percent) in [(10, 50.0), (15, 18.0), (20, 30.0), (25, 12.0)] {
        case.sample(ResourceMetric::Cpu, s, percent, 8);
        case.decide(s, 8, 8, false);
    }
    // At 41 the 8 of 10 s has left the window; the 5 of 20 s is its highest.
    case.sample(ResourceMetric::Cpu, 41, 6.0, 8);
    let d = case.decide(41, 8, 8, false);
    assert_eq!(d.desired, 5, "{}", why(&d));
    // At 51 only the 2 of 25 s and later recommendations remain.
    case.sample(ResourceMetric::Cpu, 51, 6.0, 5);
    assert_eq!(case.decide(51, 5, 5, false).desired, 2);
}

#[test]
fn a_fresh_state_does_not_scale_down_within_the_window() {
    let mut case = Case::fresh(targets(1, 10, vec![target(MetricKind::Concurrency, 1.0)]));
    case.targets.behavior.scale_down_stabilization = Some(lull_spec::Duration::from_secs(90));
    case.steady(10, 1, 1.0);
    assert_eq!(case.decide(10, 4, 4, false).desired, 4);
    // The panic of a fresh state ends after the stable window; stabilisation holds on.
    case.traffic(11, 99, 1, 1.0);
    let d = case.decide(99, 4, 4, false);
    assert_eq!((d.desired, d.mode), (4, Mode::Stable), "{}", why(&d));
    assert!(why(&d).contains("scale-down stabilisation"), "{}", why(&d));
    case.traffic(100, 101, 1, 1.0);
    assert_eq!(case.decide(101, 4, 4, false).desired, 2);
}

#[test]
fn the_default_stabilisation_window_depends_on_the_metrics() {
    let mut t = targets(1, 10, vec![target(MetricKind::Concurrency, 1.0)]);
    t.behavior.scale_down_stabilization = None;
    assert_eq!(t.scale_down_stabilization(), secs(60));
    t.behavior.stable_window = lull_spec::Duration::from_secs(90);
    assert_eq!(t.scale_down_stabilization(), secs(90));
    t.metrics.push(target(MetricKind::Memory, 80.0));
    assert_eq!(t.scale_down_stabilization(), secs(300));
    t.behavior.scale_down_stabilization = Some(lull_spec::Duration::from_secs(10));
    assert_eq!(t.scale_down_stabilization(), secs(10));
}

#[test]
fn scale_up_and_down_are_rate_limited() {
    let mut case = Case::new(targets(1, 100, vec![target(MetricKind::Concurrency, 1.0)]));
    case.targets.behavior.max_scale_up_rate = 2.0;
    case.steady(10, 50, 50.0);
    let d = case.decide(10, 3, 3, false);
    assert_eq!(d.desired, 6);
    assert!(
        why(&d).ends_with("limited to 6 by maxScaleUpRate 2"),
        "{}",
        why(&d)
    );

    let mut quiet = Case::new(targets(1, 100, vec![target(MetricKind::Concurrency, 1.0)]));
    quiet.steady(10, 1, 1.0);
    let d = quiet.decide(10, 8, 8, false);
    assert_eq!(d.desired, 4);
    assert!(
        why(&d).ends_with("limited to 4 by maxScaleDownRate 2"),
        "{}",
        why(&d)
    );
}

#[test]
fn a_rate_close_to_one_still_makes_progress() {
    let mut case = Case::new(targets(1, 100, vec![target(MetricKind::Concurrency, 1.0)]));
    case.targets.behavior.max_scale_up_rate = 1.01;
    case.targets.behavior.max_scale_down_rate = 1.01;
    case.steady(10, 50, 50.0);
    assert_eq!(case.decide(10, 3, 3, false).desired, 4);
    let mut quiet = Case::new(case.targets.clone());
    quiet.steady(10, 1, 1.0);
    assert_eq!(quiet.decide(10, 3, 3, false).desired, 2);
}

#[test]
fn fixed_and_disabled_decisions_say_so() {
    let d = Decision::fixed(3);
    assert_eq!((d.desired, d.mode), (3, Mode::Fixed));
    assert_eq!(why(&d), "autoscaling off → resources.replicas 3");
    let d = Decision::disabled();
    assert_eq!((d.desired, d.mode), (0, Mode::Disabled));
    assert_eq!(why(&d), "disabled → 0");
}

#[test]
fn a_decision_serialises_its_reason_as_text() {
    let mut case = Case::new(targets(1, 10, vec![target(MetricKind::Cpu, 50.0)]));
    case.cpu(90.0);
    let d = case.decide(10, 2, 2, false);
    let json = serde_json::to_value(&d).expect("a decision serialises");
    assert_eq!(json["desired"], 4);
    assert_eq!(json["mode"], "stable");
    assert_eq!(json["reason"], "cpu 90.0% on 2 ready over target 50% → 4");
    assert_eq!(json["metrics"][0]["metric"], "cpu");
    assert_eq!(json["metrics"][0]["status"], "scaled");
    assert_eq!(json["metrics"][0]["replicas"], 4);
    assert_eq!(json["metrics"][0]["observed"], 90.0);
}

#[test]
fn defaults_are_those_documented() {
    let b = Behavior::default();
    assert_eq!(b.tolerance, 10.0);
    assert_eq!(b.stable_window.get(), secs(60));
    assert_eq!(b.panic_window.get(), secs(6));
    assert_eq!(b.panic_threshold, 200.0);
    assert_eq!(b.scale_down_stabilization, None);
    assert_eq!(b.max_scale_up_rate, 1000.0);
    assert_eq!(b.max_scale_down_rate, 2.0);
    assert_eq!(b.activation_scale, 1);
}
