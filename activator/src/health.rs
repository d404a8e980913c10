//! Endpoint health as the activator sees it: passive ejection of replicas that fail
//! connections, and active probes that bring them back.
//!
//! The backend's endpoint set already holds only replicas that pass their readiness check, but
//! a check runs every few seconds and a replica can die in between (or, on Kubernetes, a pod's
//! endpoint lingers after its process is gone). So the activator watches connections itself:
//! [`EJECT_AFTER`] consecutive failed connects eject a replica; requests then avoid it while
//! another replica can take them. An ejected replica is probed (its readiness probe when the
//! spec has an HTTP one, else a TCP connect) after a back-off that doubles with each ejection in
//! a row, up to [`MAX_BACKOFF`]; the first probe that passes brings it back, and a request it
//! serves resets the back-off.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Request, Uri};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::balance::Replica;

/// Consecutive failed connects that eject a replica.
pub(crate) const EJECT_AFTER: u32 = 3;

/// The first probe of an ejected replica comes after this.
const BASE_BACKOFF: Duration = Duration::from_millis(500);

/// The longest back-off between probes.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One replica's health.
#[derive(Debug, Default)]
pub(crate) struct Health {
    failures: AtomicU32,
    ejected: AtomicBool,
    /// Ejections since the replica last served a request: the back-off's exponent.
    ejections: AtomicU32,
}

impl Health {
    /// Whether requests may go to the replica.
    pub fn available(&self) -> bool {
        !self.ejected.load(Ordering::Relaxed)
    }

    /// A connection to the replica worked. Writes only when there is something to reset, so
    /// the hot path does not bounce the cache line between cores.
    pub fn connected(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.ejections.load(Ordering::Relaxed) != 0 {
            self.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// A connect failed. Returns whether this failure ejected the replica, in which case the
    /// caller starts [`probe_until_healthy`].
    pub fn connect_failed(&self) -> bool {
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        failures >= EJECT_AFTER && !self.ejected.swap(true, Ordering::AcqRel)
    }

    fn recover(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.ejected.store(false, Ordering::Release);
    }
}

/// How an ejected replica is probed: the deployment's HTTP readiness probe.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    /// Path and query to GET.
    pub path: Uri,
    /// `Host` to send; the replica's address when not set.
    pub host: Option<HeaderValue>,
    /// Headers to send, secrets resolved.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// How long one probe may take.
    pub timeout: Duration,
}

/// Probes the ejected `replica` until it passes, then lets requests reach it again. Ends early
/// when the replica is gone (no set or request holds it).
pub(crate) async fn probe_until_healthy(
    replica: Weak<Replica>,
    probe: Option<Arc<Probe>>,
    connect_timeout: Duration,
) {
    let ejections = match replica.upgrade() {
        Some(r) => r.health.ejections.fetch_add(1, Ordering::AcqRel),
        None => return,
    };
    let mut backoff = BASE_BACKOFF
        .saturating_mul(1 << ejections.min(6))
        .min(MAX_BACKOFF);
    loop {
        tokio::time::sleep(backoff).await;
        let Some(target) = replica.upgrade() else {
            return;
        };
        let addr = target.addr();
        // Not held across the probe, so a replica that leaves meanwhile is freed at once.
        drop(target);
        let passed = match &probe {
            Some(probe) => http_probe(addr, probe).await,
            None => tcp_probe(addr, connect_timeout).await,
        };
        let Some(target) = replica.upgrade() else {
            return;
        };
        if passed {
            tracing::info!(replica = %target.id(), %addr, "ejected replica passed a probe; sending to it again");
            target.health.recover();
            return;
        }
        tracing::debug!(replica = %target.id(), %addr, ?backoff, "ejected replica failed a probe");
        backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
    }
}

async fn tcp_probe(addr: SocketAddr, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// GETs the probe's path on a connection of its own; a 2xx or 3xx answer passes.
async fn http_probe(addr: SocketAddr, probe: &Probe) -> bool {
    let attempt = async {
        let stream = TcpStream::connect(addr).await.ok()?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                .await
                .ok()?;
        let connection = tokio::spawn(connection);
        let host = probe
            .host
            .clone()
            .or_else(|| HeaderValue::from_str(&addr.to_string()).ok())?;
        let mut request = Request::get(probe.path.clone())
            .header(http::header::HOST, host)
            .body(Empty::new())
            .ok()?;
        for (name, value) in &probe.headers {
            request.headers_mut().append(name.clone(), value.clone());
        }
        let response = sender.send_request(request).await.ok();
        connection.abort();
        let status = response?.status();
        Some(status.is_success() || status.is_redirection())
    };
    matches!(
        tokio::time::timeout(probe.timeout, attempt).await,
        Ok(Some(true))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_connect_failures_eject_once_and_a_success_resets() {
        let health = Health::default();
        assert!(!health.connect_failed());
        health.connected();
        for _ in 1..EJECT_AFTER {
            assert!(!health.connect_failed());
        }
        assert!(health.available());
        assert!(health.connect_failed(), "the third failure in a row ejects");
        assert!(!health.available());
        assert!(
            !health.connect_failed(),
            "already ejected: no second prober"
        );
        health.recover();
        assert!(health.available());
    }
}
