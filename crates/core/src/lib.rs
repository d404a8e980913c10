//! The vocabulary lull's planes share.
//!
//! The activator, the autoscaler and the backends talk in these types and never about each
//! other: a [`DeploymentKey`] names a deployment, an [`EndpointSet`] is where its ready replicas
//! listen, [`TrafficSnapshot`] and [`ResourceSample`] are what scaling decisions are made of, and
//! the [`Backend`], [`MetricSource`] and [`Wake`] traits are the seams the embedded and the
//! Kubernetes runtimes plug into. Nothing here does I/O.

mod backend;
mod endpoint;
mod key;
mod sample;

pub use backend::{
    Backend, BackendStatus, BoxFuture, Error, MetricSource, ReplicaLoad, ReplicaPhase,
    ReplicaStatus, Result, TrafficSource, Wake,
};
pub use endpoint::{Endpoint, EndpointSet, ReplicaId};
pub use key::DeploymentKey;
pub use sample::{
    LatencyHistogram, LatencySummary, ResourceMetric, ResourceSample, TrafficSnapshot,
};
