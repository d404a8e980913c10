//! The seams between planes: backends run replicas, metric sources measure them, wakers carry a
//! cold request's call for a replica to the autoscaler.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use tokio::sync::watch;

use crate::{DeploymentKey, EndpointSet, ReplicaId, ResourceSample};

/// A boxed future, so the traits stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Errors of backends and metric sources.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The backend knows no deployment by this key.
    #[error("no deployment `{0}`")]
    UnknownDeployment(DeploymentKey),
    /// The backend or source could not be reached or failed; trying again later may work.
    #[error("{what}: {message}")]
    Unavailable {
        /// What was being done.
        what: String,
        /// What went wrong.
        message: String,
        /// The cause.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a replica is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ReplicaPhase {
    /// Started, not yet passing its startup and readiness checks.
    Starting,
    /// Receiving traffic.
    Ready,
    /// Running but failing readiness; no new traffic.
    Unready,
    /// Chosen to stop: finishing in-flight requests, no new traffic.
    Draining,
    /// Exited and waiting out a crash-loop back-off before it is started again.
    BackingOff,
}

/// One replica as the backend sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReplicaStatus {
    /// Which replica.
    pub id: ReplicaId,
    /// Its phase.
    pub phase: ReplicaPhase,
    /// Process id (embedded backend).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Where it listens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<std::net::SocketAddr>,
    /// Restarts so far.
    pub restarts: u32,
    /// Why it last exited or failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
}

/// A deployment as the backend sees it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BackendStatus {
    /// Replicas asked for.
    pub desired: u32,
    /// Replicas receiving traffic.
    pub ready: u32,
    /// Every replica.
    pub replicas: Vec<ReplicaStatus>,
    /// Which resource limits apply and how (`cgroup v2`, `rlimit`, `none`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<String>,
    /// Why the deployment cannot run as asked, if it cannot (missing secret, crash loop).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Runs replicas: child processes on this machine, or pods of a Deployment on Kubernetes.
/// Backends never decide scale; they do what the autoscaler asks and report what is ready.
pub trait Backend: Send + Sync {
    /// Asks for `replicas` replicas. Scaling down drains the chosen replicas before stopping
    /// them: they leave the endpoint set first, then finish in-flight work within the grace period.
    fn set_desired<'a>(
        &'a self,
        key: &'a DeploymentKey,
        replicas: u32,
    ) -> BoxFuture<'a, Result<()>>;

    /// The ready endpoints of a deployment, updated whenever they change. Backends may publish
    /// while holding their own locks, so a consumer must not call back into the backend while
    /// it holds a borrow of the receiver (as inside `wait_for`'s closure).
    fn endpoints(&self, key: &DeploymentKey) -> Option<watch::Receiver<EndpointSet>>;

    /// The deployment's replicas and problems.
    fn status(&self, key: &DeploymentKey) -> Option<BackendStatus>;
}

/// Measures resource use: /proc on this machine, Prometheus on Kubernetes.
pub trait MetricSource: Send + Sync {
    /// The latest samples of each deployment asked for. A deployment or metric that is missing
    /// from the answer has no sample: the autoscaler then never scales it down.
    fn sample<'a>(
        &'a self,
        keys: &'a [DeploymentKey],
    ) -> BoxFuture<'a, Result<BTreeMap<DeploymentKey, Vec<ResourceSample>>>>;
}

/// Tells the autoscaler that a request is waiting for a deployment with no ready replica.
/// Called once per cold period, not per request; it must not block.
pub trait Wake: Send + Sync {
    /// Asks for a replica of `key` now, without waiting for the next tick.
    fn wake(&self, key: &DeploymentKey);
}

/// What the activators saw of each deployment's traffic: in-process in embedded mode, scraped
/// from every activator pod on Kubernetes.
pub trait TrafficSource: Send + Sync {
    /// Traffic since the previous call for this deployment (counters restart at each call), or
    /// `None` when no activator knows the deployment. Only the autoscaler calls it.
    fn take_snapshot(&self, key: &DeploymentKey) -> Option<crate::TrafficSnapshot>;
}

/// How many requests the activators have in flight to one replica, so a backend can let a
/// draining replica finish its work before it is signalled to stop.
pub trait ReplicaLoad: Send + Sync {
    /// Requests in flight to `replica` now.
    fn in_flight(&self, replica: &ReplicaId) -> usize;
}
