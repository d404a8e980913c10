//! The embedded runtime behind `lull up`: one process runs the activator, the autoscaler and the
//! replicas (child processes of the local backend), wired through lull-core's seams.
//!
//! [`Runtime`] owns the three planes and the loaded specs. A new set of specs is applied only
//! whole: if any enabled deployment needs a secret that no store holds, nothing changes.

pub mod admin;
pub mod reload;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use lull_activator::{Activator, ActivatorConfig, Route};
use lull_autoscaler::{Autoscaler, AutoscalerConfig, ScalingStatus, wake_channel};
use lull_core::{Backend, BackendStatus, DeploymentKey, MetricSource};
use lull_local::{LocalBackend, LocalConfig, LocalDeployment};
use lull_prometheus::{MetricStatus, PrometheusSource};
use lull_spec::Deployment;
use lull_spec::secret::{self, SecretStore};
use lull_spec::validate::secret_references;
use prometheus_client::registry::Registry;
use serde::Serialize;

/// Why a set of specs was not applied.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An enabled deployment references secrets that no store holds.
    #[error("deployment `{deployment}`: {source}")]
    Secrets {
        /// The deployment.
        deployment: String,
        /// Which secrets and fields.
        #[source]
        source: secret::Error,
    },
    /// The backend could not start.
    #[error("the embedded backend could not start: {0}")]
    Backend(#[from] lull_local::Error),
    /// The Prometheus metric source could not start, or a spec's `query:` is wrong.
    #[error("{0}")]
    Prometheus(#[from] lull_prometheus::Error),
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the runtime serves.
pub struct Settings {
    /// lull's state directory.
    pub state_dir: std::path::PathBuf,
    /// Host-based routing domain.
    pub domain: Option<String>,
    /// Scaling tick.
    pub tick: std::time::Duration,
    /// How long in-flight and parked requests may finish at shutdown.
    pub drain_timeout: std::time::Duration,
    /// Measure cpu, memory, GPU and request duration with this Prometheus instead of /proc.
    pub prometheus: Option<lull_prometheus::PrometheusConfig>,
    /// Log every request under the tracing target `lull::access`.
    pub access_log: bool,
}

/// The three planes and the specs they run.
pub struct Runtime {
    /// Runs replicas as child processes.
    pub backend: Arc<LocalBackend>,
    /// Routes and parks requests.
    pub activator: Arc<Activator>,
    /// Decides replica counts.
    pub autoscaler: Arc<Autoscaler>,
    /// Measures resources when `lull up --prometheus` is given; /proc does otherwise.
    pub prometheus: Option<PrometheusSource>,
    secrets: Arc<dyn SecretStore>,
    deployments: Mutex<Vec<Deployment>>,
    registry: Registry,
}

/// One deployment as `GET /v1/deployments` shows it.
#[derive(Debug, Serialize)]
pub struct DeploymentStatus {
    /// Display name.
    pub name: String,
    /// Slug used in routes.
    pub slug: String,
    /// Spec file.
    pub file: String,
    /// `enabled` in the spec.
    pub enabled: bool,
    /// Replicas the autoscaler asks for.
    pub desired: u32,
    /// Replicas receiving traffic.
    pub ready: u32,
    /// The autoscaler's view: mode, last decision and its reason, idle time.
    pub scaling: Option<ScalingStatus>,
    /// The backend's view: replicas, limits, problems.
    pub backend: Option<BackendStatus>,
    /// What Prometheus answered for each metric, or why it did not (`lull up --prometheus`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Vec<MetricStatus>>,
}

impl Runtime {
    /// Starts the backend (reaping replicas a previous run left behind) and wires the planes.
    pub async fn start(settings: &Settings, secrets: Box<dyn SecretStore>) -> Result<Arc<Self>> {
        let backend = LocalBackend::start(LocalConfig::new(&settings.state_dir)).await?;
        let (waker, wakes) = wake_channel();
        let activator = Activator::new(
            ActivatorConfig {
                domain: settings.domain.clone(),
                drain_timeout: settings.drain_timeout,
            },
            Arc::new(waker),
        );
        // The activator reads `basicAuthKey` and probe headers from the same stores.
        let secrets: Arc<dyn SecretStore> = Arc::from(secrets);
        activator.set_secrets(secrets.clone());
        activator.set_access_log(settings.access_log);
        backend.set_replica_load(activator.clone());
        let prometheus = settings
            .prometheus
            .clone()
            .map(PrometheusSource::new)
            .transpose()?;
        let metric_source: Arc<dyn MetricSource> = match &prometheus {
            Some(source) => Arc::new(source.clone()),
            None => backend.clone(),
        };
        let autoscaler = Autoscaler::new(
            backend.clone(),
            activator.clone(),
            Some(metric_source),
            wakes,
            AutoscalerConfig {
                tick: settings.tick,
            },
        );
        // Every metric is named `lull_...` already; a registry prefix would make it `lull_lull_...`
        // and the activator histogram would not be where lull-prometheus' queries read it.
        let mut registry = Registry::default();
        activator.register_metrics(&mut registry);
        autoscaler.register_metrics(&mut registry);
        if let Some(source) = &prometheus {
            source.register_metrics(&mut registry);
        }
        Ok(Arc::new(Self {
            backend,
            activator,
            autoscaler,
            prometheus,
            secrets,
            deployments: Mutex::new(Vec::new()),
            registry,
        }))
    }

    /// Applies a complete set of specs to all three planes, or nothing when a secret is missing.
    pub fn apply(&self, deployments: Vec<Deployment>) -> Result<()> {
        let mut local = Vec::with_capacity(deployments.len());
        for deployment in &deployments {
            // A disabled deployment never runs, so its secrets are needed only once enabled.
            let secrets = if deployment.spec.enabled {
                secret::resolve(secret_references(&deployment.spec), self.secrets.as_ref())
                    .map_err(|source| Error::Secrets {
                        deployment: deployment.spec.name.clone(),
                        source,
                    })?
            } else {
                secret::ResolvedSecrets::default()
            };
            local.push(LocalDeployment {
                deployment: deployment.clone(),
                secrets,
            });
        }
        // Checked before anything changes, so a wrong `query:` leaves everything as it was.
        if let Some(source) = &self.prometheus {
            source.apply(&deployments)?;
        }
        self.backend.apply(local);
        let routes = deployments
            .iter()
            .filter_map(|d| {
                let endpoints = self.backend.endpoints(&DeploymentKey::new(&d.slug))?;
                Some(Route {
                    deployment: d.clone(),
                    endpoints,
                })
            })
            .collect();
        self.activator.apply(routes);
        self.autoscaler.apply(&deployments);
        *self.lock_deployments() = deployments;
        Ok(())
    }

    fn lock_deployments(&self) -> std::sync::MutexGuard<'_, Vec<Deployment>> {
        // A panic while holding the lock leaves a whole Vec behind; it is still usable.
        self.deployments
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The specs being run.
    pub fn deployments(&self) -> Vec<Deployment> {
        self.lock_deployments().clone()
    }

    /// Every deployment's status, in name order.
    pub fn status(&self) -> Vec<DeploymentStatus> {
        let mut out: BTreeMap<String, DeploymentStatus> = BTreeMap::new();
        for d in self.deployments() {
            let key = DeploymentKey::new(&d.slug);
            let scaling = self.autoscaler.status(&key);
            let backend = self.backend.status(&key);
            out.insert(
                d.slug.clone(),
                DeploymentStatus {
                    name: d.spec.name.clone(),
                    slug: d.slug.clone(),
                    file: d.file.clone(),
                    enabled: d.spec.enabled,
                    desired: backend.as_ref().map_or(0, |b| b.desired),
                    ready: backend.as_ref().map_or(0, |b| b.ready),
                    scaling,
                    backend,
                    metrics: self.prometheus.as_ref().and_then(|p| p.status(&key)),
                },
            );
        }
        out.into_values().collect()
    }

    /// The Prometheus registry of the activator and the autoscaler.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}
