//! lull's deployment spec.
//!
//! One YAML document describes one deployment. This crate holds its types ([`DeploymentSpec`]),
//! loads files and directories with errors that say where and what ([`load`]), checks what the
//! types alone cannot ([`validate`]), tells which fields a backend cannot honour
//! ([`capabilities`]), and resolves `secret:NAME` references ([`secret`]).

pub mod capabilities;
pub mod diagnostic;
pub mod load;
pub mod machine;
mod model;
pub mod names;
pub mod node;
pub mod secret;
pub mod structure;
pub mod units;
pub mod validate;

pub use capabilities::Target;
pub use diagnostic::{Diagnostic, Severity};
pub use load::{Catalog, Deployment, load_paths, load_str};
pub use model::*;
pub use units::{Duration, Quantity};
