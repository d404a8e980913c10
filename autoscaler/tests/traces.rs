//! The simulator on the example traces in examples/traces/, against examples/traces/endpoint.yaml
//! (a concurrency target of 4 per replica, 0 to 20 replicas, zero after the default 5 min):
//! zero only after the idle window, a 10× step answered within the panic window plus start-up,
//! no scale events on steady noisy load once settled, and on sparse traffic lull cheaper than
//! the HPA with no more cold starts than the KPA.
//!
//! Wall-clock times are printed, never asserted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lull_autoscaler::engine::{Mode, Targets};
use lull_autoscaler::simulate::{self, Model, Outcome, Policy, Trace};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/traces")
}

/// The example spec's targets and model.
fn endpoint() -> (Targets, Model) {
    let catalog = lull_spec::load_paths(&[examples().join("endpoint.yaml")]);
    let (deployments, _) = catalog.into_valid().expect("the example spec is valid");
    let spec = &deployments[0].spec;
    let autoscaling = spec
        .resources
        .autoscaling
        .as_ref()
        .expect("the example autoscales");
    (
        Targets::new(spec.resources.replicas, autoscaling),
        Model::for_spec(spec),
    )
}

fn trace(name: &str) -> Trace {
    let text = std::fs::read_to_string(examples().join(name)).expect("the example trace exists");
    Trace::parse(&text).expect("the example trace is valid")
}

fn simulate(name: &str, policy: Policy) -> (Trace, Outcome) {
    let (targets, model) = endpoint();
    let trace = trace(name);
    let outcome = simulate::run(&trace, &targets, policy, &model);
    eprintln!("{name}, {}", outcome.summary);
    (trace, outcome)
}

/// The arrival times of a trace, in seconds.
fn arrivals(trace: &Trace) -> Vec<f64> {
    trace
        .arrivals(Model::default().service_time)
        .map(|a| a.at_us as f64 / 1e6)
        .collect()
}

#[test]
fn zero_is_reached_only_after_the_idle_window() {
    for (policy, window) in [
        (Policy::Lull, Duration::from_secs(300)),
        (Policy::Kpa, Duration::from_secs(90)),
    ] {
        let (trace, outcome) = simulate("sparse.csv", policy);
        let arrivals = arrivals(&trace);
        let tick = policy.tick(Duration::from_secs(1)).as_secs_f64();
        let window = window.as_secs_f64();
        let zeros: Vec<f64> = outcome
            .events
            .iter()
            .filter(|e| e.to == 0)
            .map(|e| e.time_s)
            .collect();
        assert!(zeros.len() >= 5, "{policy}: {zeros:?}");
        for at in zeros {
            let last = arrivals
                .iter()
                .rev()
                .find(|&&a| a < at)
                .copied()
                .expect("a request came before the deployment went to zero");
            let idle = at - last;
            // Idle counts from the tick that last saw a request waiting or in flight: at most
            // a start-up (2 s), a request (0.1 s) and two ticks after the arrival.
            assert!(
                idle >= window && idle <= window + 2.1 + 2.0 * tick,
                "{policy}: zero at {at} s, {idle} s after the last request at {last} s"
            );
        }
        // And it stays up while requests keep coming.
        for pair in arrivals.windows(2) {
            if pair[1] - pair[0] < window {
                let dropped = outcome
                    .events
                    .iter()
                    .any(|e| e.to == 0 && e.time_s > pair[0] && e.time_s < pair[1]);
                assert!(!dropped, "{policy}: zero between {pair:?}");
            }
        }
    }
}

#[test]
fn a_ten_times_step_is_answered_within_the_panic_window_plus_start_up() {
    let (_, outcome) = simulate("step.csv", Policy::Lull);
    // 10 rps for 300 s, then 100 rps: 0.1 s each at 4 per replica needs 3 replicas.
    let step = 300.0;
    let (panic_window, startup, tick) = (6.0, 2.0, 1.0);
    let answered = outcome
        .events
        .iter()
        .find(|e| e.time_s >= step && e.to >= 3)
        .expect("the step is answered");
    assert_eq!(answered.mode, Mode::Panic, "{answered:?}");
    assert!(
        answered.time_s + startup <= step + panic_window + startup + tick,
        "three replicas asked for at {} s",
        answered.time_s
    );
    let deadline = (step + panic_window + startup + tick).ceil() as usize;
    let row = outcome.timeline[deadline];
    assert!(row.ready >= 3, "{row:?}");
    assert_eq!(
        outcome.timeline[..300].iter().map(|r| r.desired).max(),
        Some(1),
        "10 rps needs one replica"
    );
}

#[test]
fn steady_load_with_noise_makes_no_scale_events_after_settling() {
    for policy in [Policy::Lull, Policy::Hpa] {
        let (_, outcome) = simulate("steady.csv", policy);
        let settled = 300.0;
        let late: Vec<_> = outcome
            .events
            .iter()
            .filter(|e| e.time_s >= settled)
            .collect();
        assert!(late.is_empty(), "{policy}: {late:?}");
        // 80 rps ± 5% of 0.1 s at 4 per replica: 2 replicas.
        let end = outcome.timeline.last().expect("a timeline");
        assert_eq!(end.desired, 2, "{policy}");
    }
}

#[test]
fn on_sparse_traffic_lull_costs_less_than_the_hpa_and_cold_starts_no_more_than_the_kpa() {
    let [lull, hpa, kpa] = Policy::ALL.map(|p| simulate("sparse.csv", p).1.summary);
    eprintln!(
        "sparse.csv: replica-seconds lull {:.0}, hpa {:.0}, kpa {:.0}; cold-start waits lull {}, hpa {}, kpa {}",
        lull.replica_seconds,
        hpa.replica_seconds,
        kpa.replica_seconds,
        lull.cold_waits,
        hpa.cold_waits,
        kpa.cold_waits
    );
    assert!(lull.replica_seconds < hpa.replica_seconds);
    assert!(lull.cold_waits <= kpa.cold_waits);
    assert_eq!(lull.requests, hpa.requests);
    assert_eq!(lull.served, lull.requests);
}

#[test]
fn a_spike_panics_up_and_comes_back_down() {
    let (_, outcome) = simulate("spike.csv", Policy::Lull);
    // 5 rps then 200 rps from 600 s to 630 s: 20 in flight, 5 replicas.
    let spike = outcome
        .events
        .iter()
        .find(|e| e.time_s >= 600.0)
        .expect("the spike is answered");
    assert_eq!(spike.mode, Mode::Panic);
    assert!(spike.time_s <= 606.0, "{spike:?}");
    let peak = outcome.timeline.iter().map(|r| r.desired).max();
    assert!(peak >= Some(5) && peak <= Some(20), "{peak:?}");
    let end = outcome.timeline.last().expect("a timeline");
    assert_eq!(end.desired, 1, "back to one replica by the end");
}

#[test]
fn a_day_at_one_second_resolution() {
    let (targets, model) = endpoint();
    let trace = trace("diurnal.csv");
    let started = std::time::Instant::now();
    let outcome = simulate::run(&trace, &targets, Policy::Lull, &model);
    // Printed for the record; debug builds are several times slower than `lull simulate`.
    eprintln!(
        "diurnal.csv: 24 h, {} requests, simulated in {:?}",
        outcome.summary.requests,
        started.elapsed()
    );
    assert_eq!(outcome.summary.duration_s, 86_400.0);
    assert_eq!(outcome.timeline.len(), 86_401);
    assert!(outcome.summary.requests > 1_000_000);
}
