//! [`PrometheusSource`]: lull's [`MetricSource`] over a Prometheus server.
//!
//! Every tick it sends one query per metric in use for all deployments at once (lull's defaults
//! from [`crate::promql`]), plus one per `query:` override, since an override names its one
//! deployment. The queries run as tasks of their own, at most a few at a time, so a tick that the
//! autoscaler gives up on still records what became of its queries.
//!
//! A query that fails gives no samples, and a metric without a sample never lowers a count. It
//! then backs off (see [`crate::backoff`]) and is sent again by itself; each deployment's status
//! ([`PrometheusSource::status`]) and the `lull_metric_source_*` metrics say why samples are
//! missing.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use lull_core::{
    BoxFuture, DeploymentKey, LatencySummary, MetricSource, ResourceMetric, ResourceSample,
};
use lull_spec::{Deployment, MetricKind, MetricTarget, Summary};
use prometheus_client::registry::Registry;
use prometheus_http_query::response::Data;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::backoff::{Backoff, BackoffConfig};
use crate::client::{self, Endpoint};
use crate::metrics::{Reason, SourceMetrics, names};
use crate::promql::{self, DEPLOYMENT_LABEL, NAME_LABEL, PodNaming, Scope};
use crate::template::{self, Template, Vars};

/// Errors of the source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The HTTP client could not be built.
    #[error(transparent)]
    Client(#[from] client::Error),
    /// Query overrides in the specs are wrong; nothing was applied.
    #[error("{}", lines(.0))]
    Queries(Vec<QueryError>),
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn lines(errors: &[QueryError]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

/// A wrong `query:` in a spec, with the deployment and metric it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: deployment `{deployment}`, metric {metric}: {field}: {problem}")]
pub struct QueryError {
    /// The spec file.
    pub file: String,
    /// The deployment's name.
    pub deployment: String,
    /// The metric, with its summary when it has several: `cpu`, `requestDuration p95`.
    pub metric: String,
    /// The field: `resources.autoscaling.metrics[0].query`.
    pub field: String,
    /// What is wrong.
    pub problem: QueryProblem,
}

/// What is wrong with a `query:`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryProblem {
    /// The template does not parse.
    #[error(transparent)]
    Template(#[from] template::Error),
    /// The metric comes from the activators, never from Prometheus.
    #[error("{0} is measured by lull's activators, not queried from Prometheus; remove `query`")]
    NotQueried(&'static str),
}

/// How the source queries Prometheus.
#[derive(Debug, Clone)]
pub struct PrometheusConfig {
    /// Where Prometheus is.
    pub endpoint: Endpoint,
    /// Longest wait for one query's answer. Default 5 s.
    pub query_timeout: Duration,
    /// Window of `rate()` in lull's default queries: at least four scrape intervals. Default 1m.
    pub rate_window: Duration,
    /// Back-off of failing queries.
    pub backoff: BackoffConfig,
    /// Namespace of deployments whose spec sets no `kubernetes.namespace`. Default `default`.
    pub namespace: String,
    /// How pods are named, for `{{selector}}`.
    pub pods: PodNaming,
    /// Queries in flight at once, at most. Default 8.
    pub max_concurrent_queries: usize,
}

impl PrometheusConfig {
    /// Prometheus at `endpoint`, with the defaults.
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            query_timeout: Duration::from_secs(5),
            rate_window: Duration::from_secs(60),
            backoff: BackoffConfig::default(),
            namespace: "default".to_owned(),
            pods: PodNaming::default(),
            max_concurrent_queries: 8,
        }
    }
}

/// One metric of one deployment, as `lull status` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricStatus {
    /// The metric: `cpu`, `memory`, `gpu`, `gpuMemory`, `requestDuration`.
    pub metric: &'static str,
    /// Its summary: `average`, or `p95` and the like for requestDuration.
    pub summary: &'static str,
    /// Whether the spec's `query:` replaces lull's default query.
    pub overridden: bool,
    /// The latest value (percent, or seconds for requestDuration), while it has one.
    pub value: Option<f64>,
    /// Replicas (series) the value averages.
    pub replicas: u32,
    /// Why the latest tick had no value.
    pub last_error: Option<String>,
}

/// What the source measures of one deployment.
#[derive(Debug, Clone)]
struct Watched {
    namespace: String,
    /// Each measured metric, with the spec's override when it has one.
    targets: Vec<(ResourceMetric, Option<Template>)>,
}

/// Identifies one query across ticks, for its back-off.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum QueryKey {
    Default(ResourceMetric),
    Override(DeploymentKey, ResourceMetric),
}

impl QueryKey {
    fn metric(&self) -> ResourceMetric {
        match self {
            QueryKey::Default(metric) | QueryKey::Override(_, metric) => *metric,
        }
    }
}

#[derive(Debug, Default)]
struct Slot {
    backoff: Backoff,
    /// When the query now in flight was sent.
    sent: Option<Instant>,
    last_error: Option<String>,
}

/// One query of a tick, and the deployments it answers for.
#[derive(Debug)]
struct Planned {
    key: QueryKey,
    query: String,
    /// Deployment by (namespace, slug) for per-pod answers, and by slug for per-deployment ones.
    deployments: BTreeMap<DeploymentKey, String>,
}

type Samples = BTreeMap<DeploymentKey, Vec<ResourceSample>>;

/// Why a query gave no samples.
#[derive(Debug)]
struct Failure {
    reason: Reason,
    message: String,
}

struct Inner {
    client: prometheus_http_query::Client,
    config: PrometheusConfig,
    deployments: Mutex<BTreeMap<DeploymentKey, Watched>>,
    slots: Mutex<HashMap<QueryKey, Slot>>,
    status: Mutex<BTreeMap<DeploymentKey, BTreeMap<ResourceMetric, MetricStatus>>>,
    metrics: SourceMetrics,
    permits: Semaphore,
}

/// Measures cpu, memory, GPU and request duration with PromQL.
#[derive(Clone)]
pub struct PrometheusSource {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PrometheusSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusSource")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is complete before the guard drops.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The metric the source measures for a target, if it measures it.
pub fn measured(target: &MetricTarget) -> Option<ResourceMetric> {
    Some(match target.metric {
        MetricKind::Cpu => ResourceMetric::Cpu,
        MetricKind::Memory => ResourceMetric::Memory,
        MetricKind::Gpu => ResourceMetric::Gpu,
        MetricKind::GpuMemory => ResourceMetric::GpuMemory,
        MetricKind::RequestDuration => ResourceMetric::RequestDuration {
            summary: match target.summary {
                Summary::Average => LatencySummary::Average,
                Summary::Max => LatencySummary::Max,
                Summary::P50 => LatencySummary::P50,
                Summary::P95 => LatencySummary::P95,
                Summary::P99 => LatencySummary::P99,
            },
        },
        MetricKind::Concurrency | MetricKind::Rps => return None,
    })
}

/// `cpu`, `requestDuration p95`: a metric as an error message names it.
fn described(metric: ResourceMetric) -> String {
    match names(metric) {
        (name, "average") if !matches!(metric, ResourceMetric::RequestDuration { .. }) => {
            name.to_owned()
        }
        (name, summary) => format!("{name} {summary}"),
    }
}

/// Checks every `query:` override of `deployments` without a Prometheus: templates parse and
/// only metrics that Prometheus measures are overridden.
pub fn check(deployments: &[Deployment]) -> Vec<QueryError> {
    let mut errors = Vec::new();
    for d in deployments {
        if let Err(e) = targets(d) {
            errors.extend(e);
        }
    }
    errors
}

/// The measured targets of a deployment, overrides parsed.
fn targets(d: &Deployment) -> Result<Vec<(ResourceMetric, Option<Template>)>, Vec<QueryError>> {
    let Some(autoscaling) = &d.spec.resources.autoscaling else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, target) in autoscaling.metrics.iter().enumerate() {
        let error = |metric: String, problem: QueryProblem| QueryError {
            file: d.file.clone(),
            deployment: d.spec.name.clone(),
            metric,
            field: format!("resources.autoscaling.metrics[{i}].query"),
            problem,
        };
        let Some(metric) = measured(target) else {
            if target.query.is_some() {
                let name = target.metric.as_str();
                errors.push(error(name.to_owned(), QueryProblem::NotQueried(name)));
            }
            continue;
        };
        match target.query.as_deref().map(Template::parse).transpose() {
            Ok(template) => out.push((metric, template)),
            Err(e) => errors.push(error(described(metric), e.into())),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

impl PrometheusSource {
    /// A source that queries `config.endpoint`. It measures no deployment until
    /// [`PrometheusSource::apply`].
    pub fn new(config: PrometheusConfig) -> Result<Self> {
        let client = client::build(&config.endpoint, config.query_timeout)?;
        let permits = Semaphore::new(config.max_concurrent_queries.max(1));
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                config,
                deployments: Mutex::new(BTreeMap::new()),
                slots: Mutex::new(HashMap::new()),
                status: Mutex::new(BTreeMap::new()),
                metrics: SourceMetrics::default(),
                permits,
            }),
        })
    }

    /// Makes these the deployments the source measures. When any `query:` is wrong, nothing
    /// changes and every wrong one is named.
    pub fn apply(&self, deployments: &[Deployment]) -> Result<()> {
        let mut watched = BTreeMap::new();
        let mut errors = Vec::new();
        for d in deployments {
            match targets(d) {
                Ok(targets) => {
                    let namespace = d
                        .spec
                        .kubernetes
                        .namespace
                        .clone()
                        .unwrap_or_else(|| self.inner.config.namespace.clone());
                    watched.insert(DeploymentKey::new(&d.slug), Watched { namespace, targets });
                }
                Err(e) => errors.extend(e),
            }
        }
        if !errors.is_empty() {
            return Err(Error::Queries(errors));
        }
        // Forget the back-off and status of overrides and deployments that are gone.
        lock(&self.inner.slots).retain(|key, _| match key {
            QueryKey::Default(_) => true,
            QueryKey::Override(deployment, metric) => watched
                .get(deployment)
                .is_some_and(|w| w.targets.iter().any(|(m, q)| m == metric && q.is_some())),
        });
        lock(&self.inner.status).retain(|key, _| watched.contains_key(key));
        *lock(&self.inner.deployments) = watched;
        Ok(())
    }

    /// What the source last measured of a deployment, metric by metric; `None` for a
    /// deployment it has not been asked about.
    pub fn status(&self, key: &DeploymentKey) -> Option<Vec<MetricStatus>> {
        lock(&self.inner.status)
            .get(key)
            .map(|metrics| metrics.values().cloned().collect())
    }

    /// Registers `lull_metric_source_queries_total` and `lull_metric_source_errors_total` (by
    /// `metric`, `summary`, and `reason` for errors) and
    /// `lull_metric_source_backoff_milliseconds`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.inner.metrics.register(registry);
    }

    /// The queries of one tick for `keys`.
    fn plan(&self, keys: &[DeploymentKey]) -> Vec<Planned> {
        let inner = &self.inner;
        let deployments = lock(&inner.deployments);
        let mut defaults: BTreeMap<ResourceMetric, (Scope, BTreeMap<DeploymentKey, String>)> =
            BTreeMap::new();
        let mut planned = Vec::new();
        for key in keys {
            let Some(watched) = deployments.get(key) else {
                continue;
            };
            for (metric, template) in &watched.targets {
                match template {
                    Some(template) => {
                        let selector = inner.config.pods.selector(key.as_str(), &watched.namespace);
                        let query = template.render(&Vars {
                            deployment: key.as_str(),
                            namespace: &watched.namespace,
                            selector: &selector,
                        });
                        planned.push(Planned {
                            key: QueryKey::Override(key.clone(), *metric),
                            query,
                            deployments: BTreeMap::from([(key.clone(), watched.namespace.clone())]),
                        });
                    }
                    None => {
                        let (scope, members) = defaults.entry(*metric).or_default();
                        scope.slugs.insert(key.to_string());
                        scope.namespaces.insert(watched.namespace.clone());
                        members.insert(key.clone(), watched.namespace.clone());
                    }
                }
            }
        }
        for (metric, (scope, members)) in defaults {
            planned.push(Planned {
                key: QueryKey::Default(metric),
                query: promql::default_query(metric, &scope, inner.config.rate_window),
                deployments: members,
            });
        }
        planned
    }
}

impl MetricSource for PrometheusSource {
    fn sample<'a>(
        &'a self,
        keys: &'a [DeploymentKey],
    ) -> BoxFuture<'a, lull_core::Result<Samples>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut tasks = Vec::new();
            for planned in self.plan(keys) {
                let skipped = {
                    let mut slots = lock(&self.inner.slots);
                    let slot = slots.entry(planned.key.clone()).or_default();
                    if let Some(sent) = slot.sent {
                        Some(format!(
                            "the previous query has not answered after {:.1}s (timeout {:.1}s)",
                            now.saturating_duration_since(sent).as_secs_f64(),
                            self.inner.config.query_timeout.as_secs_f64()
                        ))
                    } else if let Some(at) = slot.backoff.waiting_until(now) {
                        Some(format!(
                            "{}; after {} failures in a row, trying again in {:.1}s",
                            slot.last_error.as_deref().unwrap_or("failing"),
                            slot.backoff.failures(),
                            at.saturating_duration_since(now).as_secs_f64()
                        ))
                    } else {
                        slot.sent = Some(now);
                        None
                    }
                };
                match skipped {
                    Some(why) => self.inner.record_missing(&planned, &why),
                    None => tasks.push(tokio::spawn(self.inner.clone().run(planned))),
                }
            }
            let mut samples = Samples::new();
            for task in tasks {
                // A task ends by itself; a panic in one leaves its metric without samples.
                if let Ok(answer) = task.await {
                    for (key, sample) in answer {
                        samples.entry(key).or_default().push(sample);
                    }
                }
            }
            self.inner.update_backoff_gauges();
            Ok(samples)
        })
    }
}

impl Inner {
    /// Sends one query and turns its answer into samples, recording its outcome in the query's
    /// back-off, the metrics and the status whether or not anyone still waits for it.
    async fn run(self: Arc<Self>, planned: Planned) -> Vec<(DeploymentKey, ResourceSample)> {
        let metric = planned.key.metric();
        let answer = {
            // The semaphore is never closed; without a permit the query runs all the same.
            let _permit = self.permits.acquire().await.ok();
            self.metrics.queried(metric);
            self.query(&planned.query).await
        };
        let series = answer.and_then(|series| {
            if series.is_empty() {
                Err(Failure {
                    reason: Reason::Empty,
                    message: "Prometheus has no series for this query".to_owned(),
                })
            } else {
                Ok(series)
            }
        });
        self.finish(&planned, series.as_ref().err());
        match series {
            Ok(series) => self.record_answer(&planned, series),
            Err(failure) => {
                self.record_missing(&planned, &self.explain(&planned, &failure));
                Vec::new()
            }
        }
    }

    /// One instant query: its series (labels and value), or why there are none.
    async fn query(&self, query: &str) -> Result<Vec<(HashMap<String, String>, f64)>, Failure> {
        let timeout = self.config.query_timeout;
        let millis = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        // POST: the default queries name every deployment and may be long for a URL.
        let request = self.client.query(query).timeout(millis).post();
        let result = match tokio::time::timeout(timeout, request).await {
            Ok(result) => result,
            Err(_) => {
                return Err(Failure {
                    reason: Reason::Timeout,
                    message: format!(
                        "Prometheus at {} did not answer within {:.1}s",
                        self.config.endpoint.url,
                        timeout.as_secs_f64()
                    ),
                });
            }
        };
        let data = result.map_err(|e| self.failure(&e))?;
        match data.into_inner().0 {
            Data::Vector(vector) => Ok(vector
                .into_iter()
                .map(|v| {
                    let (labels, sample) = v.into_inner();
                    (labels, sample.value())
                })
                .collect()),
            Data::Scalar(sample) => Ok(vec![(HashMap::new(), sample.value())]),
            Data::Matrix(_) => Err(Failure {
                reason: Reason::Unusable,
                message: "the query returns a range vector; lull needs an instant vector (drop the trailing `[...]`)".to_owned(),
            }),
        }
    }

    fn failure(&self, error: &prometheus_http_query::Error) -> Failure {
        use prometheus_http_query::Error as E;
        let mut message = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        let reason = match error {
            E::Prometheus(e) if e.is_timeout() => Reason::Timeout,
            E::Prometheus(_) => Reason::Rejected,
            E::Client(e) => match e.inner() {
                Some(e) if e.is_timeout() => Reason::Timeout,
                Some(e) if e.is_connect() || e.is_request() => Reason::Unreachable,
                _ => Reason::Unusable,
            },
            _ => Reason::Unusable,
        };
        let message = match reason {
            Reason::Rejected => format!("Prometheus rejected the query: {message}"),
            _ => format!("Prometheus at {}: {message}", self.config.endpoint.url),
        };
        Failure { reason, message }
    }

    /// Records a finished query in its slot and the metrics, and logs changes of health.
    fn finish(&self, planned: &Planned, failure: Option<&Failure>) {
        let metric = planned.key.metric();
        let now = Instant::now();
        let mut slots = lock(&self.slots);
        let slot = slots.entry(planned.key.clone()).or_default();
        slot.sent = None;
        let what = match &planned.key {
            QueryKey::Default(_) => described(metric),
            QueryKey::Override(key, _) => {
                format!("{} of deployment `{key}` (spec query)", described(metric))
            }
        };
        match failure {
            // An empty answer is a working Prometheus: no back-off, but the metrics count it.
            Some(f) if f.reason == Reason::Empty => {
                self.metrics.failed(metric, f.reason);
                slot.backoff.succeeded();
                slot.last_error = Some(f.message.clone());
            }
            Some(f) => {
                self.metrics.failed(metric, f.reason);
                let wait = slot.backoff.failed(now, &self.config.backoff);
                if slot.backoff.failures() == 1 {
                    tracing::warn!(query = %what, error = %f.message, retry_in = ?wait, "no samples from Prometheus");
                } else {
                    tracing::debug!(query = %what, error = %f.message, failures = slot.backoff.failures(), retry_in = ?wait, "no samples from Prometheus");
                }
                slot.last_error = Some(f.message.clone());
            }
            None => {
                if slot.backoff.failures() > 0 {
                    tracing::info!(query = %what, "Prometheus answers again");
                }
                slot.backoff.succeeded();
                slot.last_error = None;
            }
        }
    }

    /// The status text for a failed query: for an override, whose query it is.
    fn explain(&self, planned: &Planned, failure: &Failure) -> String {
        let metric = described(planned.key.metric());
        match (&planned.key, failure.reason) {
            (QueryKey::Override(key, _), Reason::Rejected | Reason::Unusable | Reason::Empty) => {
                format!(
                    "the query of deployment `{key}`, metric {metric} (resources.autoscaling.metrics[].query): {}",
                    failure.message
                )
            }
            _ => failure.message.clone(),
        }
    }

    /// Groups an answer by deployment, averaging its series, and records each deployment's
    /// value or why it has none.
    fn record_answer(
        &self,
        planned: &Planned,
        series: Vec<(HashMap<String, String>, f64)>,
    ) -> Vec<(DeploymentKey, ResourceSample)> {
        let metric = planned.key.metric();
        // Per deployment: sum and count of the finite values, and how many were not finite.
        let mut sums: BTreeMap<DeploymentKey, (f64, u32, u32)> = BTreeMap::new();
        for (labels, value) in series {
            let key = match &planned.key {
                QueryKey::Override(key, _) => Some(key.clone()),
                QueryKey::Default(_) => deployment_of(metric, &labels, &planned.deployments),
            };
            let Some(key) = key else { continue };
            let entry = sums.entry(key).or_insert((0.0, 0, 0));
            // NaN: no request ended in the window, or a pod has no request to divide by.
            if value.is_finite() {
                entry.0 += value;
                entry.1 += 1;
            } else {
                entry.2 += 1;
            }
        }
        let mut out = Vec::new();
        let mut status = lock(&self.status);
        for key in planned.deployments.keys() {
            let mut state = self.status_entry(planned);
            match sums.get(key) {
                Some(&(sum, count, _)) if count > 0 => {
                    let sample = ResourceSample {
                        metric,
                        percent: sum / f64::from(count),
                        replicas: count,
                    };
                    state.value = Some(sample.percent);
                    state.replicas = count;
                    out.push((key.clone(), sample));
                }
                Some(_) => {
                    state.last_error = Some(
                        "the values are not numbers (NaN or Inf): no request ended in the rate window, or a pod has no resource request to divide by".to_owned(),
                    );
                }
                None => state.last_error = Some(no_series(metric)),
            }
            status.entry(key.clone()).or_default().insert(metric, state);
        }
        out
    }

    /// Records that every deployment of `planned` has no value this tick, and why.
    fn record_missing(&self, planned: &Planned, why: &str) {
        let metric = planned.key.metric();
        let mut status = lock(&self.status);
        for key in planned.deployments.keys() {
            let mut state = self.status_entry(planned);
            state.last_error = Some(why.to_owned());
            status.entry(key.clone()).or_default().insert(metric, state);
        }
    }

    /// A status of `planned`'s metric without a value yet.
    fn status_entry(&self, planned: &Planned) -> MetricStatus {
        let (metric, summary) = names(planned.key.metric());
        MetricStatus {
            metric,
            summary,
            overridden: matches!(planned.key, QueryKey::Override(..)),
            value: None,
            replicas: 0,
            last_error: None,
        }
    }

    /// Sets each metric's back-off gauge to the longest wait among its queries.
    fn update_backoff_gauges(&self) {
        let now = Instant::now();
        let mut longest: BTreeMap<ResourceMetric, f64> = BTreeMap::new();
        for (key, slot) in lock(&self.slots).iter() {
            let wait = slot
                .backoff
                .waiting_until(now)
                .map_or(0.0, |at| at.saturating_duration_since(now).as_secs_f64());
            let entry = longest.entry(key.metric()).or_default();
            *entry = entry.max(wait);
        }
        for (metric, wait) in longest {
            self.metrics.set_backoff(metric, wait);
        }
    }
}

/// The deployment a default query's series belongs to, among those asked about.
fn deployment_of(
    metric: ResourceMetric,
    labels: &HashMap<String, String>,
    asked: &BTreeMap<DeploymentKey, String>,
) -> Option<DeploymentKey> {
    if promql::per_pod(metric) {
        let name = labels.get(NAME_LABEL)?;
        let namespace = labels.get("namespace")?;
        let (key, ns) = asked.get_key_value(name.as_str())?;
        (ns == namespace).then(|| key.clone())
    } else {
        let name = labels.get(DEPLOYMENT_LABEL)?;
        asked.get_key_value(name.as_str()).map(|(k, _)| k.clone())
    }
}

/// Why a deployment is missing from an answer that has other series: what to check.
fn no_series(metric: ResourceMetric) -> String {
    let needs = match metric {
        ResourceMetric::Cpu => {
            "cAdvisor's container_cpu_usage_seconds_total, kube-state-metrics' kube_pod_container_resource_requests{resource=\"cpu\"}"
        }
        ResourceMetric::Memory => {
            "cAdvisor's container_memory_working_set_bytes, kube-state-metrics' kube_pod_container_resource_limits or _requests{resource=\"memory\"}"
        }
        ResourceMetric::Gpu => "DCGM exporter's DCGM_FI_DEV_GPU_UTIL",
        ResourceMetric::GpuMemory => "DCGM exporter's DCGM_FI_DEV_FB_USED and DCGM_FI_DEV_FB_FREE",
        ResourceMetric::RequestDuration { .. } => {
            return format!(
                "Prometheus has no {} series for this deployment (or no request ended in the rate window); are lull's activators scraped?",
                promql::REQUEST_DURATION
            );
        }
    };
    format!(
        "Prometheus has no series for this deployment's pods; it needs {needs} with labels namespace and pod, and kube_pod_labels with {NAME_LABEL} (see docs/prometheus.md)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn series_find_their_deployment_by_namespace_and_name() {
        let asked = BTreeMap::from([
            (DeploymentKey::new("a"), "ml".to_owned()),
            (DeploymentKey::new("b"), "default".to_owned()),
        ]);
        let pod = |ns, name| labels(&[("namespace", ns), ("pod", "x"), (NAME_LABEL, name)]);
        assert_eq!(
            deployment_of(ResourceMetric::Cpu, &pod("ml", "a"), &asked),
            Some(DeploymentKey::new("a"))
        );
        // Same name in another namespace: another deployment, not lull's.
        assert_eq!(
            deployment_of(ResourceMetric::Cpu, &pod("default", "a"), &asked),
            None
        );
        assert_eq!(
            deployment_of(ResourceMetric::Cpu, &pod("ml", "zz"), &asked),
            None
        );
        let duration = ResourceMetric::RequestDuration {
            summary: LatencySummary::P95,
        };
        assert_eq!(
            deployment_of(duration, &labels(&[(DEPLOYMENT_LABEL, "b")]), &asked),
            Some(DeploymentKey::new("b"))
        );
    }

    #[test]
    fn metrics_are_described_as_specs_name_them() {
        assert_eq!(described(ResourceMetric::GpuMemory), "gpuMemory");
        assert_eq!(
            described(ResourceMetric::RequestDuration {
                summary: LatencySummary::Average
            }),
            "requestDuration average"
        );
    }
}
