//! lull's Kubernetes backend.
//!
//! On Kubernetes a deployment is a `LullDeployment` custom resource ([`crd`], its schema made
//! structural by [`schema`]). Its replicas are the pods of an `apps/v1` Deployment that lull owns,
//! reached through a `core/v1` Service; [`render`] turns a spec into those two objects, for
//! `lull render` and for the [`controller`] that applies them and reports [`status`].
//!
//! The other planes plug in through lull-core's seams: [`scale::KubeBackend`] is the autoscaler's
//! backend (the scale subresource, endpoints from [`endpoints`]), [`traffic::ActivatorTraffic`]
//! its traffic source (every activator pod's report), [`wake::HttpWake`] the activator's wake,
//! and [`catalog`] turns the cluster's resources into the deployments both of them serve.
//! [`lease`] elects the one autoscaler and the one controller that act.

pub mod catalog;
pub mod controller;
pub mod crd;
pub mod endpoints;
mod integrations;
pub mod lease;
pub mod render;
pub mod scale;
pub mod schema;
pub mod status;
#[cfg(test)]
mod testing;
pub mod traffic;
pub mod wake;

pub use crd::{LullDeployment, LullDeploymentSpec, LullDeploymentStatus};
pub use render::{RenderOptions, Rendered, render, render_yaml};
