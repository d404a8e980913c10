//! One request's way through the activator, as a tower [`Service`]: route it, account for it,
//! wait for a replica if none is ready, forward it, and stream the answer back.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::{Map, Value};
use tokio::time::Instant;
use tower::Service;

use crate::balance::ReplicaGuard;
use crate::body::ResponseBody;
use crate::response::{ErrorResponse, error_response};
use crate::stats::Tracker;
use crate::table::{Table, Target};
use crate::{forward, parking};

/// Why a routed request got no answer from a replica.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// No replica could take it.
    #[error(transparent)]
    Parking(#[from] parking::Error),
    /// The replica could not be reached or failed.
    #[error(transparent)]
    Forward(#[from] forward::Error),
}

/// `Result` with this module's [`Error`].
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    fn inner(&self) -> &dyn ErrorResponse {
        match self {
            Error::Parking(e) => e,
            Error::Forward(e) => e,
        }
    }
}

impl ErrorResponse for Error {
    fn status(&self) -> StatusCode {
        self.inner().status()
    }

    fn code(&self) -> &'static str {
        self.inner().code()
    }

    fn retry_after(&self) -> Option<u64> {
        self.inner().retry_after()
    }

    fn details(&self, body: &mut Map<String, Value>) {
        self.inner().details(body);
    }
}

/// The activator's service for the connection of one client.
#[derive(Debug, Clone)]
pub(crate) struct Proxy {
    table: Arc<ArcSwap<Table>>,
    peer: SocketAddr,
}

impl Proxy {
    /// The service for a connection from `peer`.
    pub fn new(table: Arc<ArcSwap<Table>>, peer: SocketAddr) -> Self {
        Self { table, peer }
    }
}

impl Service<Request<Incoming>> for Proxy {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let table = self.table.load_full();
        let peer = self.peer;
        Box::pin(async move { Ok(handle(table, peer, request).await) })
    }
}

async fn handle(
    table: Arc<Table>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<ResponseBody> {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    let path_and_query = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let (target, path) = match table.router.resolve(host, path_and_query) {
        Ok(resolved) => (resolved.target.clone(), resolved.path),
        Err(error) => return error_response(&error),
    };
    drop(table);
    let mut tracker = target.state.stats.arrive();
    match dispatch(&target, &mut tracker, request, path, peer).await {
        Ok((response, replica)) => {
            tracker.answered(response.status(), true);
            response.map(|body| ResponseBody::proxied(body, (tracker, replica)))
        }
        Err(error) => {
            if let Error::Forward(e) = &error {
                tracing::debug!(deployment = %target.key, error = %e, "forwarding failed");
            }
            let response = error_response(&error);
            tracker.answered(response.status(), false);
            response
        }
    }
}

async fn dispatch(
    target: &Target,
    tracker: &mut Tracker,
    request: Request<Incoming>,
    path: Option<String>,
    peer: SocketAddr,
) -> Result<(Response<Incoming>, ReplicaGuard)> {
    if !target.enabled {
        return Err(parking::Error::Disabled {
            key: target.key.clone(),
        }
        .into());
    }
    // Both stages are boxed so that this future stays small: it is allocated whole for every
    // request, and ten thousand parked requests would each carry the forwarding stage's
    // space unused (and warm requests the waiting stage's).
    let replica = match target.state.balancer.pick(&target.endpoints) {
        Some(replica) => replica,
        None => Box::pin(wait_for_replica(target, tracker)).await?,
    };
    tracker.forwarding();
    let forwarding = target
        .forwarder
        .forward(request, replica.addr(), path, peer);
    let response = Box::pin(forwarding).await?;
    Ok((response, replica))
}

/// Parks until a replica is ready and picks it; the request's head and body wait unread in
/// the connection meanwhile.
async fn wait_for_replica(target: &Target, tracker: &Tracker) -> Result<ReplicaGuard> {
    let parked = Instant::now();
    let deadline = parked + target.queue_timeout;
    loop {
        let endpoints = target.state.parking.park(deadline).await?;
        // The set can empty again between release and pick; then the request parks again
        // with the deadline it had.
        if let Some(replica) = target.state.balancer.pick(&endpoints) {
            tracker.cold_start(parked.elapsed());
            return Ok(replica);
        }
    }
}
