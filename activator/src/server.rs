//! Accepting connections: HTTP/1.1 with keep-alive and HTTP/2 over cleartext (h2c), both on
//! one port, protocol upgrades, limits on request heads, and a graceful stop that lets
//! in-flight and parked requests (and open tunnels) finish.

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::proxy::{Proxy, Shared};
use crate::ratelimit;

/// A client that sends its request head slower than this is cut off (slowloris).
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest request head (request line and headers) accepted; a larger one gets 431. Also
/// the most an HTTP/1.1 connection buffers when reading.
pub(crate) const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Pause after an accept error such as too many open files, so the loop does not spin while
/// the process is out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Errors of serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Some requests were still running when the drain timeout ran out; they were cut.
    #[error(
        "{connections} connection(s) still had requests in flight or parked after the drain timeout of {}s; they were closed",
        timeout.as_secs_f64()
    )]
    DrainTimeout {
        /// Connections closed.
        connections: usize,
        /// The drain timeout.
        timeout: Duration,
    },
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Serves `listener` until `shutdown`, then drains for at most `drain_timeout`.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    shutdown: CancellationToken,
    drain_timeout: Duration,
) -> Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    let pruning = tokio::spawn(prune_rate_limits(shared.clone(), shutdown.clone()));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // A client that gave up before its connection was accepted is its own
                        // problem; anything else (out of descriptors, out of memory) needs a pause.
                        if !matches!(
                            error.kind(),
                            ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted
                        ) {
                            tracing::warn!(%error, "cannot accept a connection");
                            tokio::time::sleep(ACCEPT_BACKOFF).await;
                        }
                        continue;
                    }
                };
                // Responses are streamed in small chunks; Nagle would hold them back.
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
                }
                let service = Proxy::new(shared.clone(), peer);
                let connection = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                let connection = graceful.watch(connection);
                connections.spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    pruning.abort();
    tracing::info!(
        connections = connections.len(),
        tunnels = shared.tunnels.len(),
        "stopped accepting; draining in-flight and parked requests"
    );
    let deadline = Instant::now() + drain_timeout;
    let drained = tokio::time::timeout_at(deadline, async {
        graceful.shutdown().await;
        while connections.join_next().await.is_some() {}
        shared.tunnels.wait().await;
    })
    .await;
    if drained.is_err() {
        let open = connections.len() + shared.tunnels.len();
        shared.tunnels.close_all();
        connections.shutdown().await;
        return Err(Error::DrainTimeout {
            connections: open,
            timeout: drain_timeout,
        });
    }
    Ok(())
}

/// Prunes every deployment's client rate-limit buckets on a timer until `shutdown`.
async fn prune_rate_limits(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(ratelimit::PRUNE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let table = shared.table.load();
        for limiter in table
            .deployments
            .values()
            .filter_map(|t| t.limiter.as_ref())
        {
            limiter.prune();
        }
    }
}
