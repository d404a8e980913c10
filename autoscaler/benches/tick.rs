//! One scaling tick over 10,000 deployments: for each, the tick's traffic goes into its window
//! and the engine decides. A third of the fleet scales on concurrency, a third on rps and a
//! third on cpu with concurrency, each with a full stable window of history and its own load,
//! one in a hundred bursting tenfold at each tick. A second figure is for request duration
//! (p95), which reads each tick's latency histogram: 1,000 such deployments. Run with
//! `cargo bench -p lull-autoscaler --bench tick`; the README's performance table has the
//! figures.
//!
//! Each is measured twice: in wall-clock time, and in the CPU time of the benchmarking thread
//! (Linux's `/proc/thread-self/schedstat`), which on a shared machine leaves out the time other
//! processes held the core.

use std::cell::RefCell;
use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use lull_autoscaler::engine::{Input, ResourceSamples, ScalingState, Targets, TrafficObservation};
use lull_core::{LatencyHistogram, ResourceMetric, ResourceSample};
use lull_spec::{Behavior, MetricKind, MetricTarget, Summary};
use tokio::time::Instant;

/// The fleet's classes; request duration is measured on its own.
const CONCURRENCY: usize = 0;
const REQUEST_DURATION: usize = 3;

fn target(metric: MetricKind, summary: Summary, value: f64) -> MetricTarget {
    MetricTarget {
        metric,
        summary,
        value,
        query: None,
    }
}

/// The four kinds of deployment in the fleet.
fn classes() -> [Targets; 4] {
    let targets = |metrics| Targets {
        min: 0,
        max: 50,
        scale_to_zero_after: Duration::from_secs(300),
        metrics,
        behavior: Behavior::default(),
    };
    [
        targets(vec![target(MetricKind::Concurrency, Summary::Average, 4.0)]),
        targets(vec![target(MetricKind::Rps, Summary::Average, 20.0)]),
        targets(vec![
            target(MetricKind::Cpu, Summary::Average, 60.0),
            target(MetricKind::Concurrency, Summary::Average, 8.0),
        ]),
        targets(vec![target(MetricKind::RequestDuration, Summary::P95, 0.5)]),
    ]
}

/// Deterministic pseudo-random numbers, so every run measures the same fleet.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Deployment {
    class: usize,
    state: ScalingState,
    desired: u32,
    /// Average requests in flight.
    load: f64,
}

struct Fleet {
    size: usize,
    t0: Instant,
    tick: u64,
    classes: [Targets; 4],
    deployments: Vec<Deployment>,
    /// The latencies one request-duration deployment's activators report in a second.
    latency: LatencyHistogram,
    rng: Lcg,
}

impl Fleet {
    /// `size` deployments, of the first three classes in turn, or all on request duration.
    fn new(size: usize, request_duration: bool) -> Self {
        let t0 = Instant::now();
        let mut rng = Lcg(7);
        let mut latency = LatencyHistogram::default();
        for i in 0..200u64 {
            latency.record(50_000 + i * 2_000);
        }
        let deployments = (0..size)
            .map(|i| Deployment {
                class: if request_duration {
                    REQUEST_DURATION
                } else {
                    CONCURRENCY + i % 3
                },
                state: ScalingState::new(t0),
                desired: 1,
                load: 1.0 + 30.0 * rng.next(),
            })
            .collect();
        let mut fleet = Self {
            size,
            t0,
            tick: 0,
            classes: classes(),
            deployments,
            latency,
            rng,
        };
        // A full stable window of history before measuring.
        for _ in 0..60 {
            let observations = fleet.observations();
            fleet.tick(observations);
        }
        fleet
    }

    /// The next tick's traffic for every deployment; one in a hundred bursts tenfold.
    fn observations(&mut self) -> Vec<TrafficObservation> {
        self.tick += 1;
        let at = self.t0 + Duration::from_secs(self.tick);
        let mut out = Vec::with_capacity(self.size);
        for d in &self.deployments {
            let burst = if self.rng.next() < 0.01 { 10.0 } else { 1.0 };
            let concurrency = d.load * burst * (0.9 + 0.2 * self.rng.next());
            out.push(TrafficObservation {
                at,
                interval: Duration::from_secs(1),
                arrived: (concurrency * 10.0) as u64,
                concurrency_seconds: concurrency,
                in_flight: concurrency as u32,
                parked: 0,
                latency: (d.class == REQUEST_DURATION).then(|| self.latency.clone()),
            });
        }
        out
    }

    fn tick(&mut self, observations: Vec<TrafficObservation>) {
        let now = self.t0 + Duration::from_secs(self.tick);
        for (d, observation) in self.deployments.iter_mut().zip(observations) {
            let targets = &self.classes[d.class];
            let load = observation.concurrency_seconds;
            d.state.observe(observation, targets.stable_window());
            let resources = if d.class == 2 {
                ResourceSamples::new(
                    now,
                    [ResourceSample {
                        metric: ResourceMetric::Cpu,
                        percent: load * 25.0 / f64::from(d.desired.max(1)),
                        replicas: d.desired,
                    }],
                )
            } else {
                ResourceSamples::default()
            };
            let decision = d.state.decide(&Input {
                now,
                targets,
                desired: d.desired,
                ready: d.desired,
                resources: &resources,
                wake_pending: false,
            });
            d.desired = black_box(decision).desired;
        }
    }
}

/// Nanoseconds this thread has run on a CPU.
fn thread_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")
        .expect("Linux with schedstat reports a thread's CPU time");
    stat.split_whitespace()
        .next()
        .and_then(|ns| ns.parse().ok())
        .expect("schedstat starts with the thread's CPU time in nanoseconds")
}

/// The benchmarking thread's CPU time, in nanoseconds.
struct ThreadCpuTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }

    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, ns: &u64) -> f64 {
        *ns as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        // Nanoseconds, as wall-clock time is formatted.
        WallTime.formatter()
    }
}

/// Making the tick's traffic (the activators' work) is setup; taking it in and deciding is
/// measured. Both need the fleet, one at a time.
fn measure<M: Measurement + 'static>(c: &mut Criterion<M>, name: &str, fleet: Fleet) {
    let fleet = RefCell::new(fleet);
    c.bench_function(name, |b| {
        b.iter_batched(
            || fleet.borrow_mut().observations(),
            |observations| fleet.borrow_mut().tick(observations),
            BatchSize::PerIteration,
        );
    });
}

/// Both figures, named with `suffix` so that the wall-clock and CPU-time results do not share
/// a name.
fn ticks<M: Measurement + 'static>(c: &mut Criterion<M>, suffix: &str) {
    measure(
        c,
        &format!("one tick over 10,000 deployments{suffix}"),
        Fleet::new(10_000, false),
    );
    measure(
        c,
        &format!("one tick over 1,000 deployments on request duration p95{suffix}"),
        Fleet::new(1_000, true),
    );
}

fn wall_clock(c: &mut Criterion) {
    ticks(c, "");
}

fn thread_cpu(c: &mut Criterion<ThreadCpuTime>) {
    ticks(c, ", thread CPU time");
}

criterion_group!(wall, wall_clock);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = thread_cpu
}
criterion_main!(wall, cpu);
