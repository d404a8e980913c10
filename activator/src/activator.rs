//! The activator as the rest of lull sees it: built once, fed route tables by the spec loader,
//! serving until told to stop, and read by the autoscaler and the backends.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use lull_core::{
    DeploymentKey, EndpointSet, ReplicaId, ReplicaLoad, TrafficSnapshot, TrafficSource, Wake,
};
use lull_spec::secret::SecretStore;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::balance::Replicas;
use crate::metrics::Metrics;
use crate::proxy::Shared;
use crate::server::{self, Result};
use crate::table::{Context, Table};
use crate::upgrade::Tunnels;

/// How the activator serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivatorConfig {
    /// When set, `Host: <name>.<domain>` routes to the deployment or alias `<name>`, besides
    /// the `/<name>/` path prefixes.
    pub domain: Option<String>,
    /// How long in-flight and parked requests may take to finish once serving stops.
    pub drain_timeout: Duration,
}

/// One deployment to route, and where its ready replicas listen.
#[derive(Debug, Clone)]
pub struct Route {
    /// The deployment's spec.
    pub deployment: lull_spec::Deployment,
    /// Its ready endpoints, as the backend publishes them.
    pub endpoints: watch::Receiver<EndpointSet>,
}

/// lull's data plane: routes requests to ready replicas, parks them while a deployment wakes
/// from zero, and counts what it sees for the autoscaler.
pub struct Activator {
    config: ActivatorConfig,
    wake: Arc<dyn Wake>,
    shared: Arc<Shared>,
    replicas: Arc<Replicas>,
    /// Where `secret:NAME` in `basicAuthKey` and probe headers is read; also the lock that
    /// serialises `apply`, so two reloads cannot interleave their view of the previous table.
    secrets: Mutex<Option<Arc<dyn SecretStore>>>,
}

impl fmt::Debug for Activator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Activator")
            .field("config", &self.config)
            .field("deployments", &self.shared.table.load().deployments.len())
            .finish_non_exhaustive()
    }
}

impl Activator {
    /// An activator that routes nothing until [`Activator::apply`], and calls `wake` when a
    /// request waits for a deployment with no ready replica.
    pub fn new(config: ActivatorConfig, wake: Arc<dyn Wake>) -> Arc<Self> {
        let table = Table::empty(config.domain.as_deref());
        let workers = server::worker::count();
        Arc::new(Self {
            config,
            wake,
            shared: Arc::new(Shared {
                table: Arc::new(ArcSwap::from_pointee(table)),
                tunnels: Tunnels::default(),
                access_log: AtomicBool::new(false),
                workers,
            }),
            replicas: Arc::new(Replicas::new(workers)),
            secrets: Mutex::new(None),
        })
    }

    /// Reads `secret:NAME` values of the specs (`basicAuthKey`, readiness probe headers)
    /// from `store` from the next [`Activator::apply`] on. Without a store, a deployment
    /// protected by a secret key refuses every request (503) rather than serve unprotected.
    pub fn set_secrets(&self, store: Arc<dyn SecretStore>) {
        *self.secrets.lock().unwrap_or_else(PoisonError::into_inner) = Some(store);
    }

    /// Turns the access log on or off: one `info` event per request under the tracing target
    /// `lull::access`, with deployment, method, target, client, status, replica, attempts and
    /// duration.
    pub fn set_access_log(&self, on: bool) {
        self.shared.access_log.store(on, Ordering::Relaxed);
    }

    /// Replaces the route table while serving. Deployments that stay keep their parked
    /// requests and statistics, and take their new enabled flag, queue settings, timeouts and
    /// endpoints at once; parked requests of deployments no longer routed are answered 503.
    pub fn apply(&self, routes: Vec<Route>) {
        let secrets = self.secrets.lock().unwrap_or_else(PoisonError::into_inner);
        let previous = self.shared.table.load_full();
        let context = Context {
            domain: self.config.domain.as_deref(),
            wake: &self.wake,
            replicas: &self.replicas,
            secrets: secrets.as_deref(),
        };
        let (table, removed) = Table::build(&previous, routes, &context);
        tracing::debug!(
            deployments = table.deployments.len(),
            removed = removed.len(),
            "route table applied"
        );
        self.shared.table.store(Arc::new(table));
        for state in removed {
            state.parking.remove();
        }
    }

    /// Serves HTTP on `listener` until `shutdown` is cancelled; then stops accepting, lets
    /// in-flight and parked requests finish for up to the drain timeout, and returns. Fails
    /// only when the drain timeout cut requests off.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<()> {
        server::serve(
            self.shared.clone(),
            listener,
            shutdown,
            self.config.drain_timeout,
        )
        .await
    }

    /// Registers the per-deployment metrics (`lull_activator_*`) with `registry`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(Metrics::new(self.shared.table.clone())));
    }
}

impl TrafficSource for Activator {
    fn take_snapshot(&self, key: &DeploymentKey) -> Option<TrafficSnapshot> {
        let table = self.shared.table.load();
        let state = &table.deployments.get(key)?.state;
        Some(state.stats.snapshot(state.parking.parked()))
    }
}

impl ReplicaLoad for Activator {
    fn in_flight(&self, replica: &ReplicaId) -> usize {
        self.replicas.in_flight(replica)
    }
}
