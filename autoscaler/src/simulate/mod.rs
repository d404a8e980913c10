//! The trace simulator behind `lull simulate`: replays recorded or synthetic traffic through the
//! real [decision engine](crate::engine) with a model of replicas, so users see what a spec
//! costs and how long requests wait on their own traffic, beside a plain Kubernetes HPA and
//! Knative's KPA.
//!
//! [`Trace::parse`] reads a CSV trace (rates or single requests) and says which line is wrong;
//! [`run`] replays it under a [`Policy`] with a [`Model`] of start-up delay, per-replica
//! concurrency, service time and cpu per request, and returns an [`Outcome`]: a [`Summary`], a
//! timeline with a row per second ([`write_timeline`]) and every scale event with its reason.
//! Deterministic: no clock, no randomness; a day of traffic at one-second resolution replays
//! in well under two seconds.

mod model;
mod policy;
mod report;
mod trace;

pub use model::{Model, run, unmodelled};
pub use policy::{HPA_SCALE_DOWN_WINDOW, HPA_SYNC, KPA_TICK, KPA_ZERO_GRACE, Policy};
pub use report::{Outcome, ScaleEvent, Summary, TimelineRow, write_timeline};
pub use trace::{Arrival, RateRow, Request, Trace, TraceError};

#[cfg(test)]
mod tests;
