//! The replica model on small traces whose outcome can be worked out by hand.

use std::time::Duration;

use lull_spec::{Behavior, MetricKind, MetricTarget, Summary as Aggregate};

use super::*;
use crate::engine::{Mode, Targets};

fn targets(min: u32, max: u32, metrics: &[(MetricKind, f64)]) -> Targets {
    Targets {
        min,
        max,
        scale_to_zero_after: Duration::from_secs(30),
        metrics: metrics
            .iter()
            .map(|&(metric, value)| MetricTarget {
                metric,
                summary: Aggregate::Average,
                value,
                query: None,
            })
            .collect(),
        behavior: Behavior::default(),
    }
}

fn trace(text: &str) -> Trace {
    Trace::parse(text).expect("a valid test trace")
}

#[test]
fn a_fixed_count_costs_its_replicas_times_the_duration() {
    let outcome = run(
        &trace("time_s,rps\n0,10\n50,10\n"),
        &targets(2, 2, &[]),
        Policy::Lull,
        &Model::default(),
    );
    let s = &outcome.summary;
    assert_eq!(s.duration_s, 100.0);
    assert_eq!(s.replica_seconds, 200.0);
    // The last request arrives at 99.95 s and is still in flight at the end.
    assert_eq!((s.requests, s.served, s.unfinished), (1000, 999, 1));
    assert_eq!(s.cold_waits, 0);
    assert_eq!((s.wait_p99_s, s.max_queue, s.scale_events), (0.0, 0, 0));
    assert_eq!(outcome.timeline.len(), 101);
    assert_eq!(outcome.timeline[50].rps, 10);
    assert_eq!(outcome.timeline[50].in_flight, 1);
}

#[test]
fn a_request_at_zero_waits_for_the_start_up_and_the_replica_costs_from_its_start() {
    let outcome = run(
        &trace("arrival_s,duration_s\n10,1\n10.5,1\n40,0\n100,0\n"),
        &targets(0, 3, &[]),
        Policy::Lull,
        &Model::default(),
    );
    let s = &outcome.summary;
    // The last request wakes the deployment as the trace ends: it is still waiting.
    assert_eq!((s.served, s.unfinished, s.cold_waits), (3, 1, 2), "{s}");
    // Started at 10 s, ready at 12 s: the first two waited 2 s and 1.5 s.
    assert!((s.wait_max_s - 2.0).abs() < 0.01, "{s}");
    let wake = &outcome.events[0];
    assert_eq!(
        (wake.time_s, wake.from, wake.to, wake.mode),
        (10.0, 0, 1, Mode::Activating)
    );
    // The request at 40 s finds the replica warm; 30 s without a request later it goes.
    let to_zero = &outcome.events[1];
    assert_eq!(
        (to_zero.time_s, to_zero.to, to_zero.mode),
        (70.0, 0, Mode::ScaleToZero),
        "{:?}",
        outcome.events
    );
    assert_eq!(outcome.events[2].time_s, 100.0);
    assert!((s.replica_seconds - 60.0).abs() < 1e-9, "{s}");
}

#[test]
fn a_full_queue_rejects_and_a_long_wait_times_out() {
    let mut model = Model {
        concurrency: 1,
        queue_capacity: 3,
        queue_timeout: Duration::from_secs(5),
        ..Model::default()
    };
    // One replica, one request at a time, 10 s each: five arrive at once.
    let five = "arrival_s,duration_s\n1,10\n1,10\n1,10\n1,10\n1,10\n";
    let outcome = run(&trace(five), &targets(1, 1, &[]), Policy::Lull, &model);
    let s = &outcome.summary;
    // One served at once, three queued (the capacity), one rejected; the queued wait past 5 s.
    assert_eq!((s.requests, s.rejected, s.timed_out), (5, 1, 3), "{s}");
    assert_eq!((s.served, s.max_queue), (1, 3), "{s}");
    model.queue_timeout = Duration::from_secs(60);
    let s = run(&trace(five), &targets(1, 1, &[]), Policy::Lull, &model).summary;
    // The trace ends as the first finishes: one more in flight, two waiting.
    assert_eq!((s.served, s.timed_out, s.unfinished), (1, 0, 3), "{s}");
}

#[test]
fn a_request_turned_away_at_zero_still_wakes_the_deployment() {
    let model = Model {
        queue_capacity: 0,
        ..Model::default()
    };
    let outcome = run(
        &trace("arrival_s,duration_s\n1,0.1\n5,0.1\n"),
        &targets(0, 2, &[]),
        Policy::Lull,
        &model,
    );
    let s = &outcome.summary;
    assert_eq!((s.rejected, s.served), (1, 1), "{s}");
    assert_eq!(outcome.events[0].time_s, 1.0);
}

#[test]
fn concurrency_above_target_adds_replicas_that_share_the_load() {
    let model = Model {
        concurrency: 2,
        ..Model::default()
    };
    // 20 rps of 0.5 s: 10 in flight, 5 replicas at 2 each.
    let outcome = run(
        &trace("time_s,rps,mean_duration_s\n0,20,0.5\n300,20,0.5\n"),
        &targets(1, 10, &[(MetricKind::Concurrency, 2.0)]),
        Policy::Lull,
        &model,
    );
    let end = outcome.timeline.last().expect("a timeline");
    assert_eq!(
        (end.desired, end.ready, end.in_flight),
        (5, 5, 10),
        "{end:?}"
    );
    assert!(outcome.summary.wait_p50_s == 0.0, "{}", outcome.summary);
}

#[test]
fn cpu_per_request_drives_cpu_targets() {
    let model = Model {
        cpu_per_request: 50.0,
        ..Model::default()
    };
    // 40 rps of 0.5 s: 20 in flight at 50% each is 1000% of a core; at 80% per replica that
    // is 12.5, so 13 replicas.
    let outcome = run(
        &trace("time_s,rps,mean_duration_s\n0,40,0.5\n600,40,0.5\n"),
        &targets(1, 20, &[(MetricKind::Cpu, 80.0)]),
        Policy::Lull,
        &model,
    );
    let end = outcome.timeline.last().expect("a timeline");
    assert_eq!(end.desired, 13, "{:?}", outcome.events);
}

#[test]
fn gpu_targets_never_wake_a_deployment_traffic_does() {
    let outcome = run(
        &trace("arrival_s,duration_s\n5,1\n20,0\n"),
        &targets(0, 4, &[(MetricKind::Gpu, 50.0)]),
        Policy::Lull,
        &Model::default(),
    );
    let wake = &outcome.events[0];
    assert_eq!((wake.time_s, wake.to), (5.0, 1));
    assert_eq!(
        wake.reason.to_string(),
        "1 request waiting at zero → 1 (activation scale)"
    );
    assert_eq!(outcome.summary.served, 2);
}

#[test]
fn the_hpa_never_goes_to_zero_and_the_kpa_does_after_its_grace() {
    let text = "arrival_s,duration_s\n1,0.1\n400,0\n";
    let spec = targets(0, 4, &[(MetricKind::Concurrency, 1.0)]);
    let hpa = run(&trace(text), &spec, Policy::Hpa, &Model::default());
    assert!(hpa.timeline.iter().all(|r| r.desired >= 1));
    let kpa = run(&trace(text), &spec, Policy::Kpa, &Model::default());
    let zero = kpa
        .events
        .iter()
        .find(|e| e.to == 0)
        .expect("the KPA scales to zero");
    // Idle from the 2 s tick after the request; 60 s + 30 s later, at the next tick.
    assert_eq!(zero.time_s, 92.0, "{:?}", kpa.events);
}

#[test]
fn the_same_input_gives_the_same_output() {
    let text = "time_s,rps,mean_duration_s\n0,3,0.4\n20,80,0.4\n40,1,0.2\n100,0,1\n";
    let spec = targets(
        0,
        10,
        &[(MetricKind::Concurrency, 2.0), (MetricKind::Rps, 30.0)],
    );
    for policy in Policy::ALL {
        let a = run(&trace(text), &spec, policy, &Model::default());
        let b = run(&trace(text), &spec, policy, &Model::default());
        assert_eq!(a, b, "{policy}");
        let mut csv = Vec::new();
        write_timeline(&a.timeline, &mut csv).expect("writes to memory");
        let csv = String::from_utf8(csv).expect("utf-8");
        let zero = if policy == Policy::Hpa { 1 } else { 0 };
        let start = format!("time_s,desired,ready,in_flight,queued,rps\n0,{zero},{zero},0,0,0\n");
        assert!(csv.starts_with(&start), "{policy}: {}", &csv[..80]);
    }
}

#[test]
fn memory_targets_are_left_out() {
    assert!(unmodelled(MetricKind::Memory) && unmodelled(MetricKind::GpuMemory));
    let outcome = run(
        &trace("time_s,rps\n0,5\n100,5\n"),
        &targets(1, 4, &[(MetricKind::Memory, 50.0)]),
        Policy::Lull,
        &Model::default(),
    );
    assert_eq!(outcome.summary.scale_events, 0);
}

#[test]
fn the_summary_reads_as_text_and_json() {
    let outcome = run(
        &trace("arrival_s,duration_s\n10,1\n20,0\n"),
        &targets(0, 3, &[]),
        Policy::Lull,
        &Model::default(),
    );
    let text = outcome.summary.to_string();
    assert!(text.starts_with("policy lull: 20 s of traffic\n"), "{text}");
    assert!(text.contains("cold-start waits  1\n"), "{text}");
    let json = serde_json::to_value(&outcome.summary).expect("serialises");
    for key in [
        "replica_seconds",
        "requests",
        "cold_waits",
        "wait_p50_s",
        "wait_p95_s",
        "wait_p99_s",
        "max_queue",
        "scale_events",
    ] {
        assert!(json.get(key).is_some(), "{key} in {json}");
    }
}
