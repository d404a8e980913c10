//! lull's embedded backend: replicas as supervised child processes.
//!
//! `lull up` runs every deployment's replicas on this machine. [`LocalBackend`] starts each
//! replica's `command` as a process group of its own with a free port in `$PORT`, pipes its output
//! into rotated log files ([`logs`]), checks its health with the spec's startup, readiness and
//! liveness probes, publishes the ready ones as the deployment's endpoint set, restarts it with
//! back-off when it exits, drains and stops it when asked to scale down, and rolls it over to a new
//! version when the spec changes. It measures cpu and memory from /proc (the
//! [`lull_core::MetricSource`] impl), enforces `maxCpu`/`maxMemory` with a cgroup or an rlimit, and
//! records every process it starts in a state file so that a restarted lull reaps what a killed
//! one left behind.
//!
//! The backend never decides scale: the autoscaler calls [`lull_core::Backend::set_desired`].

mod backend;
mod backoff;
mod health;
mod leftovers;
mod limits;
pub mod logs;
mod ports;
mod proc_metrics;
mod process;
mod replica;
mod state;
mod supervisor;
mod template;

pub use backend::{Error, LocalBackend, LocalConfig, LocalDeployment, Result};
pub use state::Error as StateError;
