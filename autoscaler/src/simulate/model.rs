//! The replica model and the event loop that replays a trace through the real engine.
//!
//! Replicas start after a fixed start-up delay, serve up to a per-replica concurrency (or any
//! number), each request for its own duration, and use cpu in proportion to the requests they
//! serve. Requests go round robin to ready replicas with room; the others wait in a bounded
//! queue with a timeout, as the activator parks them; a request at zero wakes the autoscaler at
//! once. Every tick the engine sees what the activators and the metric source would report, and
//! its decision starts or stops replicas: starting ones are cancelled first (the newest first),
//! then the least busy ready ones drain.
//!
//! Times are integer microseconds and events at the same time are taken in a fixed order
//! (completions, replicas becoming ready, queue timeouts, arrivals, the tick, the timeline), so
//! the same input always gives the same output.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use hdrhistogram::Histogram;
use lull_core::{LatencyHistogram, ResourceMetric, ResourceSample};
use lull_spec::{DeploymentSpec, MetricKind};
use tokio::time::Instant;

use super::policy::Policy;
use super::report::{Outcome, ScaleEvent, Summary, TimelineRow};
use super::trace::{Arrival, Trace};
use crate::engine::{Decision, Input, ResourceSamples, ScalingState, Targets, TrafficObservation};

/// How simulated replicas and the activator's queue behave.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// From start to ready. Default 2 s.
    pub startup: Duration,
    /// How long a request takes when the trace does not say. Default 100 ms.
    pub service_time: Duration,
    /// Requests one replica serves at once; 0 is any number. Default 0 (the spec's
    /// `activator.containerConcurrency` with [`Model::for_spec`]).
    pub concurrency: u32,
    /// Cpu a request in flight uses, in percent of one core. Default 100.
    pub cpu_per_request: f64,
    /// Requests that may wait for a replica; more are rejected. Default 1000.
    pub queue_capacity: u32,
    /// Longest a request waits before it times out. Default 60 s.
    pub queue_timeout: Duration,
    /// lull's decision tick (the baselines have their own). Default 1 s.
    pub tick: Duration,
}

impl Default for Model {
    fn default() -> Self {
        Self {
            startup: Duration::from_secs(2),
            service_time: Duration::from_millis(100),
            concurrency: 0,
            cpu_per_request: 100.0,
            queue_capacity: 1000,
            queue_timeout: Duration::from_secs(60),
            tick: Duration::from_secs(1),
        }
    }
}

impl Model {
    /// The defaults, with the queue and the per-replica concurrency of the spec's activator.
    pub fn for_spec(spec: &DeploymentSpec) -> Self {
        Self {
            concurrency: spec.activator.container_concurrency,
            queue_capacity: spec.activator.queue_capacity,
            queue_timeout: spec.activator.queue_timeout.get(),
            ..Self::default()
        }
    }
}

/// Metrics the model has no notion of; their targets are left out of a simulation.
pub fn unmodelled(kind: MetricKind) -> bool {
    matches!(kind, MetricKind::Memory | MetricKind::GpuMemory)
}

/// Replays `trace` through the engine with `targets` under `policy`.
pub fn run(trace: &Trace, targets: &Targets, policy: Policy, model: &Model) -> Outcome {
    let mut targets = policy.targets(targets);
    targets.metrics.retain(|m| !unmodelled(m.metric));
    let mut sim = Sim::new(targets, policy, model);
    sim.replay(trace);
    sim.finish(policy)
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

const SECOND_US: u64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Free,
    Starting,
    Ready,
    Draining,
}

#[derive(Debug, Clone, Copy)]
struct Replica {
    phase: Phase,
    in_flight: u32,
    ready_at: u64,
}

#[derive(Debug, Clone, Copy)]
struct Waiting {
    arrival: u64,
    duration: u64,
}

/// The next thing that happens, in the order events at the same time are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Completion,
    Ready,
    Timeout,
    Arrival,
    Tick,
    Sample,
}

struct Sim<'m> {
    model: &'m Model,
    targets: Targets,
    state: ScalingState,
    resources: ResourceSamples,
    uses_latency: bool,
    uses_resources: bool,
    /// Simulated time zero. Far enough from the real clock's start that `now - window` exists
    /// for any window, so the engine sees the same arithmetic on every machine.
    base: Instant,
    tick_us: u64,
    now: u64,
    desired: u32,
    replicas: Vec<Replica>,
    free_ids: Vec<u32>,
    /// Ready replicas in round-robin order.
    ready: Vec<u32>,
    next_ready: usize,
    /// Requests ready replicas can still take; only kept with a concurrency limit.
    room: u64,
    starting: VecDeque<(u64, u32)>,
    starting_count: u32,
    alive: u32,
    /// (done at, replica, latency as the activator sees it)
    completions: BinaryHeap<Reverse<(u64, u32, u64)>>,
    queue: VecDeque<Waiting>,
    in_flight: u32,
    in_flight_draining: u32,
    // Since the last observation.
    observed_from: u64,
    arrived: u64,
    concurrency_us: u128,
    busy_us: u128,
    ready_us: u128,
    latency: LatencyHistogram,
    // Since the start.
    last_advance: u64,
    replica_us: u128,
    requests: u64,
    served: u64,
    rejected: u64,
    timed_out: u64,
    cold_waits: u64,
    waits: Histogram<u64>,
    max_queue: u64,
    peak: u32,
    events: Vec<ScaleEvent>,
    timeline: Vec<TimelineRow>,
    arrived_this_second: u64,
}

impl<'m> Sim<'m> {
    fn new(targets: Targets, policy: Policy, model: &'m Model) -> Self {
        let base = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        let waits = Histogram::new_with_bounds(1, 7 * 24 * 3600 * SECOND_US, 3)
            .expect("static histogram bounds are valid");
        let mut sim = Self {
            model,
            uses_latency: targets.uses(MetricKind::RequestDuration),
            uses_resources: targets.uses_resource_metric(),
            state: ScalingState::new(base),
            resources: ResourceSamples::default(),
            base,
            tick_us: us(policy.tick(model.tick)).max(1),
            now: 0,
            desired: 0,
            replicas: Vec::new(),
            free_ids: Vec::new(),
            ready: Vec::new(),
            next_ready: 0,
            room: 0,
            starting: VecDeque::new(),
            starting_count: 0,
            alive: 0,
            completions: BinaryHeap::new(),
            queue: VecDeque::new(),
            in_flight: 0,
            in_flight_draining: 0,
            observed_from: 0,
            arrived: 0,
            concurrency_us: 0,
            busy_us: 0,
            ready_us: 0,
            latency: LatencyHistogram::default(),
            last_advance: 0,
            replica_us: 0,
            requests: 0,
            served: 0,
            rejected: 0,
            timed_out: 0,
            cold_waits: 0,
            waits,
            max_queue: 0,
            peak: 0,
            events: Vec::new(),
            timeline: Vec::new(),
            arrived_this_second: 0,
            targets,
        };
        // The deployment has run at its minimum, without traffic, for a stable window before
        // the trace starts, as a deployment that lull has watched for a while.
        // One quiet observation per tick, as the loop makes them, so that the windows hold
        // exactly what they would.
        let window = sim.targets.stable_window();
        let tick = Duration::from_micros(sim.tick_us);
        let mut at = Duration::ZERO;
        while at < window {
            sim.state.observe(
                TrafficObservation {
                    at: base - (window - at - tick.min(window - at)),
                    interval: tick.min(window - at),
                    arrived: 0,
                    concurrency_seconds: 0.0,
                    in_flight: 0,
                    parked: 0,
                    latency: None,
                },
                window,
            );
            at += tick;
        }
        sim.desired = sim.targets.min.min(sim.targets.max);
        sim.peak = sim.desired;
        for _ in 0..sim.desired {
            let id = sim.add_replica(Phase::Ready, 0);
            sim.ready.push(id);
            sim.room += u64::from(sim.model.concurrency);
        }
        sim.sample();
        sim
    }

    fn replay(&mut self, trace: &Trace) {
        let end = trace.end_us();
        let mut arrivals = trace.arrivals(self.model.service_time).peekable();
        let mut next_tick = self.tick_us;
        let mut next_sample = SECOND_US;
        loop {
            let candidates = [
                (
                    self.completions.peek().map(|Reverse(c)| c.0),
                    Event::Completion,
                ),
                (self.starting.front().map(|s| s.0), Event::Ready),
                (
                    self.queue
                        .front()
                        .map(|w| w.arrival.saturating_add(us(self.model.queue_timeout))),
                    Event::Timeout,
                ),
                (arrivals.peek().map(|a| a.at_us), Event::Arrival),
                (Some(next_tick), Event::Tick),
                (Some(next_sample), Event::Sample),
            ];
            let Some((at, event)) = candidates
                .into_iter()
                .filter_map(|(at, e)| at.map(|at| (at, e)))
                .min()
            else {
                break;
            };
            if at > end {
                break;
            }
            self.advance(at);
            match event {
                Event::Completion => self.complete(),
                Event::Ready => self.become_ready(),
                Event::Timeout => {
                    self.queue.pop_front();
                    self.timed_out += 1;
                }
                Event::Arrival => {
                    if let Some(arrival) = arrivals.next() {
                        self.arrive(arrival);
                    }
                }
                Event::Tick => {
                    self.tick(false);
                    next_tick += self.tick_us;
                }
                Event::Sample => {
                    self.sample();
                    next_sample += SECOND_US;
                }
            }
        }
        self.advance(end);
    }

    /// Integrates what is measured over time up to `at`.
    fn advance(&mut self, at: u64) {
        let dt = u128::from(at.saturating_sub(self.last_advance));
        if dt == 0 {
            return;
        }
        self.replica_us += u128::from(self.alive) * dt;
        self.concurrency_us += (u128::from(self.in_flight) + self.queue.len() as u128) * dt;
        self.busy_us += u128::from(self.in_flight - self.in_flight_draining) * dt;
        self.ready_us += self.ready.len() as u128 * dt;
        self.last_advance = at;
        self.now = at;
    }

    fn instant(&self, at: u64) -> Instant {
        self.base + Duration::from_micros(at)
    }

    fn add_replica(&mut self, phase: Phase, ready_at: u64) -> u32 {
        self.alive += 1;
        let replica = Replica {
            phase,
            in_flight: 0,
            ready_at,
        };
        match self.free_ids.pop() {
            Some(id) => {
                self.replicas[id as usize] = replica;
                id
            }
            None => {
                self.replicas.push(replica);
                (self.replicas.len() - 1) as u32
            }
        }
    }

    fn remove_replica(&mut self, id: u32) {
        self.replicas[id as usize].phase = Phase::Free;
        self.free_ids.push(id);
        self.alive -= 1;
    }

    fn limited(&self) -> bool {
        self.model.concurrency > 0
    }

    /// A ready replica with room, round robin.
    fn pick(&mut self) -> Option<u32> {
        let n = self.ready.len();
        if n == 0 || (self.limited() && self.room == 0) {
            return None;
        }
        for i in 0..n {
            let id = self.ready[(self.next_ready + i) % n];
            if !self.limited() || self.replicas[id as usize].in_flight < self.model.concurrency {
                self.next_ready = (self.next_ready + i + 1) % n;
                return Some(id);
            }
        }
        None
    }

    fn dispatch(&mut self, id: u32, waiting: Waiting) {
        let wait = self.now - waiting.arrival;
        self.waits.saturating_record(wait);
        let replica = &mut self.replicas[id as usize];
        if replica.ready_at > waiting.arrival {
            self.cold_waits += 1;
        }
        replica.in_flight += 1;
        self.in_flight += 1;
        if self.limited() {
            self.room -= 1;
        }
        let done = self.now.saturating_add(waiting.duration);
        self.completions
            .push(Reverse((done, id, wait.saturating_add(waiting.duration))));
    }

    fn drain_queue(&mut self) {
        while let Some(&waiting) = self.queue.front() {
            let Some(id) = self.pick() else { break };
            self.queue.pop_front();
            self.dispatch(id, waiting);
        }
    }

    fn complete(&mut self) {
        let Some(Reverse((_, id, latency))) = self.completions.pop() else {
            return;
        };
        self.served += 1;
        self.in_flight -= 1;
        if self.uses_latency {
            self.latency.record(latency);
        }
        let replica = &mut self.replicas[id as usize];
        replica.in_flight -= 1;
        match replica.phase {
            Phase::Draining => {
                self.in_flight_draining -= 1;
                if replica.in_flight == 0 {
                    self.remove_replica(id);
                }
            }
            Phase::Ready => {
                if self.limited() {
                    self.room += 1;
                }
                self.drain_queue();
            }
            Phase::Starting | Phase::Free => {}
        }
    }

    fn become_ready(&mut self) {
        let Some((ready_at, id)) = self.starting.pop_front() else {
            return;
        };
        let replica = &mut self.replicas[id as usize];
        // Cancelled while starting (and perhaps its slot reused since).
        if replica.phase != Phase::Starting || replica.ready_at != ready_at {
            return;
        }
        replica.phase = Phase::Ready;
        self.starting_count -= 1;
        self.ready.push(id);
        self.room += u64::from(self.model.concurrency);
        self.drain_queue();
    }

    fn arrive(&mut self, arrival: Arrival) {
        self.requests += 1;
        self.arrived += 1;
        self.arrived_this_second += 1;
        let waiting = Waiting {
            arrival: self.now,
            duration: arrival.duration_us,
        };
        if let Some(id) = self.pick() {
            self.dispatch(id, waiting);
            return;
        }
        let full = self.queue.len() >= self.model.queue_capacity as usize;
        if full {
            self.rejected += 1;
        } else {
            self.queue.push_back(waiting);
            self.max_queue = self.max_queue.max(self.queue.len() as u64);
        }
        // The activator wakes a deployment at zero at once, not at the next tick, even when it
        // has to turn the request away.
        if self.desired == 0 {
            self.tick(true);
        }
    }

    /// What the activators and the metric source saw since the last observation, then a
    /// decision.
    fn tick(&mut self, wake: bool) {
        let now = self.instant(self.now);
        let interval = Duration::from_micros(self.now - self.observed_from);
        let latency = (self.uses_latency && self.latency.count() > 0)
            .then(|| std::mem::take(&mut self.latency));
        let observation = TrafficObservation {
            at: now,
            interval,
            arrived: self.arrived,
            concurrency_seconds: self.concurrency_us as f64 / 1e6,
            in_flight: self.in_flight,
            parked: self.queue.len() as u32,
            latency,
        };
        self.state
            .observe(observation, self.targets.stable_window());
        if self.uses_resources && !wake {
            self.resources = self.resource_samples(now);
        }
        self.observed_from = self.now;
        self.arrived = 0;
        self.concurrency_us = 0;
        self.busy_us = 0;
        self.ready_us = 0;
        let decision = self.state.decide(&Input {
            now,
            targets: &self.targets,
            desired: self.desired,
            ready: self.ready.len() as u32,
            resources: &self.resources,
            wake_pending: wake,
        });
        self.apply(decision);
    }

    /// Cpu (and GPU, which cannot pass 100%) from the requests the ready replicas served.
    fn resource_samples(&self, now: Instant) -> ResourceSamples {
        if self.ready_us == 0 {
            return ResourceSamples::default();
        }
        let per_replica = self.busy_us as f64 / self.ready_us as f64;
        let cpu = per_replica * self.model.cpu_per_request;
        let replicas = self.ready.len() as u32;
        ResourceSamples::new(
            now,
            [
                ResourceSample {
                    metric: ResourceMetric::Cpu,
                    percent: cpu,
                    replicas,
                },
                ResourceSample {
                    metric: ResourceMetric::Gpu,
                    percent: cpu.min(100.0),
                    replicas,
                },
            ],
        )
    }

    fn apply(&mut self, decision: Decision) {
        let to = decision.desired;
        if to != self.desired {
            self.events.push(ScaleEvent {
                time_s: self.now as f64 / 1e6,
                from: self.desired,
                to,
                mode: decision.mode,
                reason: decision.reason,
            });
        }
        self.desired = to;
        self.peak = self.peak.max(to);
        let active = self.starting_count + self.ready.len() as u32;
        if to > active {
            for _ in active..to {
                let ready_at = self.now.saturating_add(us(self.model.startup));
                let id = self.add_replica(Phase::Starting, ready_at);
                self.starting.push_back((ready_at, id));
                self.starting_count += 1;
            }
        } else {
            let mut excess = active - to;
            while excess > 0 && self.starting_count > 0 {
                let Some((ready_at, id)) = self.starting.pop_back() else {
                    break;
                };
                let replica = self.replicas[id as usize];
                if replica.phase == Phase::Starting && replica.ready_at == ready_at {
                    self.starting_count -= 1;
                    self.remove_replica(id);
                    excess -= 1;
                }
            }
            for _ in 0..excess {
                self.drain_least_busy();
            }
        }
    }

    fn drain_least_busy(&mut self) {
        let Some(index) = (0..self.ready.len())
            .min_by_key(|&i| (self.replicas[self.ready[i] as usize].in_flight, Reverse(i)))
        else {
            return;
        };
        let id = self.ready.remove(index);
        if self.next_ready > index {
            self.next_ready -= 1;
        }
        if self.next_ready >= self.ready.len() {
            self.next_ready = 0;
        }
        let replica = &mut self.replicas[id as usize];
        if self.model.concurrency > 0 {
            self.room -= u64::from(self.model.concurrency - replica.in_flight);
        }
        if replica.in_flight == 0 {
            self.remove_replica(id);
        } else {
            replica.phase = Phase::Draining;
            self.in_flight_draining += replica.in_flight;
        }
    }

    fn sample(&mut self) {
        self.timeline.push(TimelineRow {
            time_s: self.now / SECOND_US,
            desired: self.desired,
            ready: self.ready.len() as u32,
            in_flight: self.in_flight,
            queued: self.queue.len() as u32,
            rps: self.arrived_this_second,
        });
        self.arrived_this_second = 0;
    }

    fn finish(self, policy: Policy) -> Outcome {
        let duration_s = self.now as f64 / 1e6;
        let replica_seconds = self.replica_us as f64 / 1e6;
        let quantile = |q: f64| {
            if self.waits.is_empty() {
                0.0
            } else {
                self.waits.value_at_quantile(q) as f64 / 1e6
            }
        };
        let summary = Summary {
            policy: policy.as_str(),
            duration_s,
            replica_seconds,
            mean_replicas: if duration_s > 0.0 {
                replica_seconds / duration_s
            } else {
                0.0
            },
            peak_replicas: self.peak,
            requests: self.requests,
            served: self.served,
            rejected: self.rejected,
            timed_out: self.timed_out,
            unfinished: u64::from(self.in_flight) + self.queue.len() as u64,
            cold_waits: self.cold_waits,
            wait_p50_s: quantile(0.50),
            wait_p95_s: quantile(0.95),
            wait_p99_s: quantile(0.99),
            wait_max_s: if self.waits.is_empty() {
                0.0
            } else {
                self.waits.max() as f64 / 1e6
            },
            max_queue: self.max_queue,
            scale_events: self.events.len() as u64,
        };
        Outcome {
            summary,
            timeline: self.timeline,
            events: self.events,
        }
    }
}
