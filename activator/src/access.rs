//! The optional access log: one structured event per request, under the tracing target
//! `lull::access`, written when the response is over (so it has the whole duration and
//! whether the body was cut). Off by default; nothing of it is allocated while it is off.

use std::net::IpAddr;

use http::{Method, StatusCode, Uri};
use lull_core::{DeploymentKey, ReplicaId};
use tokio::time::Instant;

/// The tracing target of access log events.
pub(crate) const TARGET: &str = "lull::access";

/// What the log says of one request.
#[derive(Debug)]
pub(crate) struct Entry {
    /// When it arrived.
    pub start: Instant,
    /// Its deployment.
    pub deployment: DeploymentKey,
    /// Its method.
    pub method: Method,
    /// Its target as the client sent it.
    pub uri: Uri,
    /// The client.
    pub client: IpAddr,
    /// The answer's status.
    pub status: StatusCode,
    /// The replica that answered, when one did.
    pub replica: Option<ReplicaId>,
    /// Attempts made on replicas.
    pub attempts: u32,
}

impl Entry {
    /// Writes the event; `outcome` is `done` for a complete response, `cut` otherwise.
    pub fn log(&self, outcome: &str) {
        tracing::info!(
            target: TARGET,
            deployment = %self.deployment,
            method = %self.method,
            uri = %self.uri,
            client = %self.client,
            status = self.status.as_u16(),
            replica = self.replica.as_ref().map(ReplicaId::as_str),
            attempts = self.attempts,
            duration_ms = self.start.elapsed().as_secs_f64() * 1e3,
            outcome,
            "request"
        );
    }
}
