//! lull's data plane: routing, the parking queue, wakes, proxying and request statistics.
//!
//! Every request to a deployment passes through the [`Activator`]. It is routed by host or
//! path prefix, sent to a ready replica round robin, and streamed through both ways. When the
//! deployment has no ready replica the request waits in a bounded queue while the autoscaler is
//! woken; it is released the moment a replica becomes ready. A disabled deployment is answered
//! 503 at once. What the activator sees feeds the autoscaler ([`lull_core::TrafficSource`]),
//! the backends' draining ([`lull_core::ReplicaLoad`]) and `/metrics`.
//!
//! The pieces, one concern each: `router` (which deployment), `balance` (which replica),
//! `parking` (waiting for a replica), `forward` and `connect` (talking to it), `body` and `stats` (accounting
//! until the response ends), `response` (the activator's own JSON answers), `proxy` (the tower
//! service that strings them together), `server` (connections and graceful stop), `table`
//! (the live route table) and `metrics`.

mod activator;
mod balance;
mod body;
mod connect;
mod forward;
mod metrics;
mod parking;
mod proxy;
mod response;
mod router;
mod server;
mod stats;
mod table;

pub use activator::{Activator, ActivatorConfig, Route};
pub use server::{Error, Result};
