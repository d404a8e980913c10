//! The scaling loop: every tick it gathers traffic and resource samples, runs the
//! [decision engine](crate::engine) for each deployment and tells the backend what changed.
//!
//! Wakes are handled between ticks, as soon as they arrive, and spec changes through
//! [`Autoscaler::apply`]: disabling a deployment or turning its autoscaling off takes effect at
//! once, new targets at the next tick.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use lull_core::{Backend, DeploymentKey, MetricSource, ResourceSample, TrafficSource};
use lull_spec::{DeploymentSpec, MetricKind};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::engine::{Decision, Input, ResourceSamples, ScalingState, Targets, TrafficObservation};
use crate::wake::WakeReceiver;

/// How the scaling loop runs.
#[derive(Debug, Clone)]
pub struct AutoscalerConfig {
    /// Time between decisions. Default 1 s.
    pub tick: Duration,
}

impl Default for AutoscalerConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(1),
        }
    }
}

/// How a deployment's replica count is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ScalingMode {
    /// By the decision engine, between `minReplicas` and `maxReplicas`.
    Autoscaled,
    /// Autoscaling is off: `resources.replicas`.
    Fixed,
    /// `enabled: false`: zero, never woken.
    Disabled,
}

/// What the autoscaler last did for a deployment, for `lull status`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalingStatus {
    /// How the replica count is set.
    pub mode: ScalingMode,
    /// Replicas the backend was last asked for.
    pub desired: u32,
    /// The latest decision, if one was made.
    pub last_decision: Option<Decision>,
    /// Seconds since the last request (or since lull started watching the deployment).
    pub idle_seconds: f64,
    /// Whether a request waits at zero for a replica that has not been asked for yet.
    pub wake_pending: bool,
    /// Why the backend last refused a new count, until it accepts one.
    pub last_error: Option<String>,
    /// Why the metric source gave no samples at the last tick, until it gives some.
    pub resource_error: Option<String>,
}

/// What a spec asks of the autoscaler.
#[derive(Debug, Clone)]
enum Plan {
    Disabled,
    Fixed(u32),
    Autoscaled(Targets),
}

impl Plan {
    fn of(spec: &DeploymentSpec) -> Self {
        if !spec.enabled {
            return Plan::Disabled;
        }
        match &spec.resources.autoscaling {
            Some(autoscaling) if autoscaling.enabled => {
                Plan::Autoscaled(Targets::new(spec.resources.replicas, autoscaling))
            }
            _ => Plan::Fixed(spec.resources.replicas),
        }
    }

    fn mode(&self) -> ScalingMode {
        match self {
            Plan::Disabled => ScalingMode::Disabled,
            Plan::Fixed(_) => ScalingMode::Fixed,
            Plan::Autoscaled(_) => ScalingMode::Autoscaled,
        }
    }

    fn targets(&self) -> Option<&Targets> {
        match self {
            Plan::Autoscaled(targets) => Some(targets),
            Plan::Disabled | Plan::Fixed(_) => None,
        }
    }
}

/// One deployment as the loop tracks it.
#[derive(Debug)]
struct Managed {
    plan: Plan,
    state: ScalingState,
    resources: ResourceSamples,
    /// When its traffic was last taken, so each observation knows the interval it covers.
    last_snapshot: Instant,
    /// Replicas the backend was last asked for (or had when lull learned of the deployment).
    desired: u32,
    wake_pending: bool,
    last_decision: Option<Decision>,
    last_error: Option<String>,
}

/// What the metric source gave at a tick.
#[derive(Debug)]
enum Sampled {
    /// No deployment needs samples, or there is no metric source.
    Nothing,
    /// Samples per deployment.
    Answered(BTreeMap<DeploymentKey, Vec<ResourceSample>>),
    /// The source failed.
    Failed(String),
    /// The source took longer than a tick.
    Late,
}

/// A new count for the backend.
#[derive(Debug)]
struct Change {
    key: DeploymentKey,
    desired: u32,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeploymentLabels {
    deployment: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    deployment: String,
    /// `up` or `down`.
    direction: &'static str,
}

#[derive(Debug, Default)]
struct Metrics {
    desired: Family<DeploymentLabels, Gauge>,
    decisions: Family<DecisionLabels, Counter>,
}

impl Metrics {
    fn set_desired(&self, key: &DeploymentKey, desired: u32) {
        self.desired
            .get_or_create(&DeploymentLabels {
                deployment: key.to_string(),
            })
            .set(i64::from(desired));
    }

    fn count(&self, key: &DeploymentKey, from: u32, to: u32) {
        let direction = if to > from { "up" } else { "down" };
        self.decisions
            .get_or_create(&DecisionLabels {
                deployment: key.to_string(),
                direction,
            })
            .inc();
    }

    fn forget(&self, key: &DeploymentKey) {
        let deployment = key.to_string();
        self.desired.remove(&DeploymentLabels {
            deployment: deployment.clone(),
        });
        for direction in ["up", "down"] {
            self.decisions.remove(&DecisionLabels {
                deployment: deployment.clone(),
                direction,
            });
        }
    }
}

/// Keeps every deployment's replica count where its spec and its traffic want it.
pub struct Autoscaler {
    backend: Arc<dyn Backend>,
    traffic: Arc<dyn TrafficSource>,
    resources: Option<Arc<dyn MetricSource>>,
    /// Held by the one running loop.
    wakes: tokio::sync::Mutex<WakeReceiver>,
    config: AutoscalerConfig,
    deployments: Mutex<BTreeMap<DeploymentKey, Managed>>,
    /// Signalled by [`Autoscaler::apply`] so that fixed and disabled counts apply at once.
    applied: tokio::sync::Notify,
    metrics: Metrics,
}

impl std::fmt::Debug for Autoscaler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Autoscaler")
            .field("config", &self.config)
            .field("deployments", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl Autoscaler {
    /// An autoscaler that scales through `backend`, learns traffic from `traffic` and resource
    /// use from `resources` (none: resource targets never have samples), and takes wakes from
    /// `wakes`. It manages no deployment until [`Autoscaler::apply`].
    pub fn new(
        backend: Arc<dyn Backend>,
        traffic: Arc<dyn TrafficSource>,
        resources: Option<Arc<dyn MetricSource>>,
        wakes: WakeReceiver,
        config: AutoscalerConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            backend,
            traffic,
            resources,
            wakes: tokio::sync::Mutex::new(wakes),
            config,
            deployments: Mutex::new(BTreeMap::new()),
            applied: tokio::sync::Notify::new(),
            metrics: Metrics::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<DeploymentKey, Managed>> {
        // Every update of an entry is complete before the guard drops, so a poisoned map is
        // still consistent.
        self.deployments
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes these the deployments the autoscaler manages: targets and bounds of known ones
    /// change in place (their traffic history is kept), new ones start with the count the
    /// backend reports, missing ones are forgotten. Disabled deployments go to zero and
    /// deployments without autoscaling to `resources.replicas` at once, when the loop runs.
    pub fn apply(&self, deployments: &[lull_spec::Deployment]) {
        let now = Instant::now();
        let wanted: BTreeMap<DeploymentKey, Plan> = deployments
            .iter()
            .map(|d| (DeploymentKey::new(&d.slug), Plan::of(&d.spec)))
            .collect();
        let mut managed = self.lock();
        let removed: Vec<DeploymentKey> = managed
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for key in removed {
            managed.remove(&key);
            self.metrics.forget(&key);
            tracing::debug!(deployment = %key, "no longer scaled");
        }
        for (key, plan) in wanted {
            match managed.entry(key) {
                Entry::Occupied(mut entry) => {
                    let m = entry.get_mut();
                    if !matches!(plan, Plan::Autoscaled(_)) {
                        m.wake_pending = false;
                    }
                    m.plan = plan;
                }
                Entry::Vacant(entry) => {
                    let desired = self.backend.status(entry.key()).map_or(0, |s| s.desired);
                    self.metrics.set_desired(entry.key(), desired);
                    entry.insert(Managed {
                        plan,
                        state: ScalingState::new(now),
                        resources: ResourceSamples::default(),
                        last_snapshot: now,
                        desired,
                        wake_pending: false,
                        last_decision: None,
                        last_error: None,
                    });
                }
            }
        }
        drop(managed);
        self.applied.notify_one();
    }

    /// What the autoscaler last did for a deployment; `None` for one it does not manage.
    pub fn status(&self, key: &DeploymentKey) -> Option<ScalingStatus> {
        let now = Instant::now();
        self.lock().get(key).map(|m| ScalingStatus {
            mode: m.plan.mode(),
            desired: m.desired,
            last_decision: m.last_decision.clone(),
            idle_seconds: m.state.idle_for(now).as_secs_f64(),
            wake_pending: m.wake_pending,
            last_error: m.last_error.clone(),
            resource_error: m.resources.error().map(str::to_owned),
        })
    }

    /// The deployments managed now.
    pub fn deployments(&self) -> BTreeSet<DeploymentKey> {
        self.lock().keys().cloned().collect()
    }

    /// Registers `lull_desired_replicas` and `lull_scaling_decisions_total` (by `direction`,
    /// `up` or `down`), both labelled by `deployment`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "lull_desired_replicas",
            "Replicas the autoscaler asks the backend for",
            self.metrics.desired.clone(),
        );
        registry.register(
            "lull_scaling_decisions",
            "Changes of the desired replica count",
            self.metrics.decisions.clone(),
        );
    }

    /// Runs the loop until `shutdown`: a decision round every tick (missed ticks are skipped),
    /// wakes as they come, fixed and disabled counts as soon as [`Autoscaler::apply`] changes
    /// them. One loop runs at a time; a second call waits for the first to end.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut wakes = tokio::select! {
            wakes = self.wakes.lock() => wakes,
            () = shutdown.cancelled() => return,
        };
        let mut ticks = tokio::time::interval(self.config.tick);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                keys = wakes.recv() => self.on_wakes(keys).await,
                () = self.applied.notified() => self.on_apply().await,
                _ = ticks.tick() => self.on_tick().await,
            }
        }
    }

    /// A decision round for every deployment.
    async fn on_tick(&self) {
        let samples = self.sample_resources().await;
        let now = Instant::now();
        let changes = {
            let mut managed = self.lock();
            let mut changes = Vec::new();
            for (key, m) in managed.iter_mut() {
                self.observe(key, m, now);
                if m.plan.targets().is_some_and(sampled) {
                    match &samples {
                        Sampled::Answered(all) => {
                            let mine = all.get(key).into_iter().flatten().copied();
                            m.resources = ResourceSamples::new(now, mine);
                        }
                        Sampled::Failed(error) => m.resources = ResourceSamples::failed(error),
                        // The previous samples age; past the stable window they are stale.
                        Sampled::Late | Sampled::Nothing => {}
                    }
                }
                changes.extend(self.decide(key, m, now));
            }
            changes
        };
        self.enact(changes).await;
    }

    /// Decides at once for deployments at zero that a request waits for.
    async fn on_wakes(&self, keys: Vec<DeploymentKey>) {
        let now = Instant::now();
        let changes = {
            let mut managed = self.lock();
            let mut changes = Vec::new();
            for key in keys {
                let Some(m) = managed.get_mut(&key) else {
                    tracing::debug!(deployment = %key, "wake for an unknown deployment");
                    continue;
                };
                // Disabled and fixed deployments are never woken; a deployment already asked
                // for replicas needs nothing more.
                if m.plan.targets().is_none() || m.desired > 0 {
                    continue;
                }
                m.wake_pending = true;
                self.observe(&key, m, now);
                changes.extend(self.decide(&key, m, now));
            }
            changes
        };
        self.enact(changes).await;
    }

    /// Applies fixed and disabled counts without waiting for a tick.
    async fn on_apply(&self) {
        let now = Instant::now();
        let changes = {
            let mut managed = self.lock();
            let mut changes = Vec::new();
            for (key, m) in managed.iter_mut() {
                if m.plan.targets().is_none() {
                    changes.extend(self.decide(key, m, now));
                }
            }
            changes
        };
        self.enact(changes).await;
    }

    /// One `sample` call for every deployment with a resource or request-duration target. A
    /// failed source is an error for every metric it answers (which blocks scale-downs); a
    /// source slower than a tick leaves the previous samples to age. Neither lowers a count.
    async fn sample_resources(&self) -> Sampled {
        let Some(source) = self.resources.as_ref() else {
            return Sampled::Nothing;
        };
        let keys: Vec<DeploymentKey> = self
            .lock()
            .iter()
            .filter(|(_, m)| m.plan.targets().is_some_and(sampled))
            .map(|(k, _)| k.clone())
            .collect();
        if keys.is_empty() {
            return Sampled::Nothing;
        }
        match tokio::time::timeout(self.config.tick, source.sample(&keys)).await {
            Ok(Ok(samples)) => Sampled::Answered(samples),
            Ok(Err(error)) => {
                tracing::warn!(%error, "no resource samples this tick");
                Sampled::Failed(error.to_string())
            }
            Err(_) => {
                tracing::warn!(tick = ?self.config.tick, "the metric source took longer than a tick; keeping the previous samples");
                Sampled::Late
            }
        }
    }

    /// Takes the activators' traffic since the previous snapshot into the deployment's window.
    fn observe(&self, key: &DeploymentKey, m: &mut Managed, now: Instant) {
        let interval = now.saturating_duration_since(m.last_snapshot);
        m.last_snapshot = now;
        let Some(snapshot) = self.traffic.take_snapshot(key) else {
            return;
        };
        let mut observation = TrafficObservation::from_snapshot(now, interval, snapshot);
        let targets = m.plan.targets();
        // Histograms are the bulk of a window; keep them only where a target reads them.
        if !targets.is_some_and(|t| t.uses(MetricKind::RequestDuration)) {
            observation.latency = None;
        }
        let keep = targets.map_or(Duration::ZERO, Targets::stable_window);
        m.state.observe(observation, keep);
    }

    /// Decides for one deployment; a change when the count differs from what was asked.
    fn decide(&self, key: &DeploymentKey, m: &mut Managed, now: Instant) -> Option<Change> {
        let decision = match &m.plan {
            Plan::Disabled => Decision::disabled(),
            Plan::Fixed(replicas) => Decision::fixed(*replicas),
            Plan::Autoscaled(targets) => {
                let ready = self.backend.status(key).map_or(0, |s| s.ready);
                m.state.decide(&Input {
                    now,
                    targets,
                    desired: m.desired,
                    ready,
                    resources: &m.resources,
                    wake_pending: m.wake_pending,
                })
            }
        };
        let desired = decision.desired;
        if desired != m.desired {
            tracing::info!(deployment = %key, from = m.desired, to = desired, mode = %decision.mode, reason = %decision.reason, "scaling");
        }
        m.last_decision = Some(decision);
        (desired != m.desired).then(|| Change {
            key: key.clone(),
            desired,
        })
    }

    /// Tells the backend the new counts. A refused count is kept as an error and decided
    /// again at the next tick; a pending wake stays pending until a replica is asked for.
    async fn enact(&self, changes: Vec<Change>) {
        for change in changes {
            let result = self.backend.set_desired(&change.key, change.desired).await;
            let mut managed = self.lock();
            let Some(m) = managed.get_mut(&change.key) else {
                continue;
            };
            match result {
                Ok(()) => {
                    self.metrics.count(&change.key, m.desired, change.desired);
                    self.metrics.set_desired(&change.key, change.desired);
                    m.desired = change.desired;
                    m.last_error = None;
                    if change.desired > 0 {
                        m.wake_pending = false;
                    }
                }
                Err(error) => {
                    tracing::warn!(deployment = %change.key, desired = change.desired, %error, "the backend refused the new count");
                    m.last_error = Some(error.to_string());
                }
            }
        }
    }
}

/// Whether the metric source is asked about a deployment: for its resource targets, and for
/// request duration, which a source that reads every activator (Prometheus) may answer.
fn sampled(targets: &Targets) -> bool {
    targets.uses_resource_metric() || targets.uses(MetricKind::RequestDuration)
}

#[cfg(test)]
mod tests;
