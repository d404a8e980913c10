//! lull's data plane: routing, the parking queue, wakes, proxying and request statistics.
//!
//! Every request to a deployment passes through the [`Activator`]. It is routed by host or
//! path prefix, checked against the deployment's key and rate limits, sent to a ready replica
//! by the deployment's load-balancing policy within its per-replica concurrency limit, retried
//! on another replica when that is safe, and streamed through both ways (HTTP/1.1, h2c,
//! WebSocket upgrades, server-sent events chunk by chunk). When the deployment has no ready
//! replica the request waits in a bounded queue while the autoscaler is woken; it is released
//! the moment a replica becomes ready. A disabled deployment is answered 503 at once. What the
//! activator sees feeds the autoscaler ([`lull_core::TrafficSource`]), the backends' draining
//! ([`lull_core::ReplicaLoad`]), `/metrics` and an optional access log.
//!
//! The pieces, one concern each: `router` (which deployment), `auth` and `ratelimit`
//! (admission layers, with `admit` their shared future), `balance` (which replica, with its
//! `policy` and `sticky` sessions), `concurrency` (waiting for a replica below its limit),
//! `parking` (waiting for a replica at all), `health` (ejecting replicas that fail, probing
//! them back), `lobby` (where a new connection's first request waits for a cold deployment
//! before hyper holds any buffer for it, with `prefixed` giving hyper back what it read), `pool` and `connect` (connections to replicas), `forward` (sending one request),
//! `retry` (when to send it again), `timeout` (idle and total limits on bodies), `upgrade`
//! (protocol switches), `body` and `stats` (accounting until the response ends), `access` (the
//! access log), `response` (the activator's own JSON answers), `proxy` (the tower stack that
//! strings them together), `server` (connections, limits and graceful stop), `table` (the
//! live route table) and `metrics`.

mod access;
mod activator;
mod admit;
mod auth;
mod balance;
mod body;
mod concurrency;
mod connect;
mod forward;
mod health;
mod lobby;
mod metrics;
mod parking;
mod pool;
mod prefixed;
mod proxy;
mod ratelimit;
mod response;
mod retry;
mod router;
mod server;
mod stats;
mod table;
mod timeout;
mod upgrade;

pub use activator::{Activator, ActivatorConfig, Route};
pub use server::{Error, Result};
