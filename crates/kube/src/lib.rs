//! lull's Kubernetes backend.
//!
//! On Kubernetes a deployment's replicas are the pods of an `apps/v1` Deployment that lull owns,
//! reached through a `core/v1` Service. [`render`] turns a loaded spec into those two objects,
//! for `lull render` and, later, for the controller that applies them.

pub mod render;

pub use render::{RenderOptions, Rendered, render, render_yaml};
