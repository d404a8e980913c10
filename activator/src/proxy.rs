//! One request's way through the activator, as a stack of tower layers behind hyper:
//!
//! ```text
//! route ─▶ auth ─▶ rate limit ─▶ dispatch: balance ─▶ (park | wait for capacity) ─▶ forward ─▶ retry
//! ```
//!
//! Routing happens first, in [`Proxy`] (hyper's service for one connection), because every
//! layer below acts on the deployment it finds. Each layer reads its settings from the request's
//! [`Target`], so the layers themselves are stateless, cost nothing to clone, and the stack
//! allocates once per request (the dispatch future). Dispatch picks a replica by the
//! deployment's policy, parks the request while the deployment is cold or waits while every
//! replica is at its concurrency limit, forwards it, retries what is safe to retry, and streams
//! the answer back (or opens a tunnel for a protocol switch).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use pin_project_lite::pin_project;
use serde_json::{Map, Value};
use tokio::time::Instant;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing::instrument::Instrumented;

use crate::access::Entry;
use crate::auth::{self, Auth, AuthLayer};
use crate::balance::{Choice, Pick, Replica, ReplicaGuard};
use crate::body::{Done, RequestBody, ResponseBody};
use crate::concurrency::Waited;
use crate::connect::Sender;
use crate::forward::{self, HeadDeadline, Peer};
use crate::ratelimit::{self, RateLimitLayer, RateLimited};
use crate::response::{ErrorResponse, error_response};
use crate::retry::{self, MAX_ATTEMPTS, Replay};
use crate::stats::Tracker;
use crate::table::{Table, Target};
use crate::upgrade::{self, Tunnels};
use crate::{health, parking, timeout};

/// What every connection's service shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The live route table.
    pub table: Arc<ArcSwap<Table>>,
    /// Open protocol-switch tunnels.
    pub tunnels: Tunnels,
    /// Whether each request is logged under `lull::access`.
    pub access_log: AtomicBool,
    /// Worker threads that serve connections.
    pub workers: usize,
}

/// One client connection, as the layers see it.
#[derive(Debug)]
pub(crate) struct Client {
    /// The client.
    pub peer: Peer,
    /// What all connections share.
    pub shared: Arc<Shared>,
    /// When the connection's first request began to wait in the lobby, if it did.
    lobby: Option<Instant>,
    /// Whether the first request has been taken (and with it the lobby's wait).
    first_taken: AtomicBool,
}

impl Client {
    /// When the request now arriving began to wait in the lobby: only the connection's first
    /// request can have.
    fn parked_since(&self) -> Option<Instant> {
        self.lobby
            .filter(|_| !self.first_taken.swap(true, Ordering::Relaxed))
    }
}

/// A routed request on its way down the stack.
#[derive(Debug)]
pub(crate) struct Call {
    /// Its deployment.
    pub target: Arc<Target>,
    /// The request's head as the client sent it (until it is forwarded).
    pub parts: Parts,
    /// Its body, until it is forwarded.
    pub body: Option<Incoming>,
    /// The path and query to forward, when the route rewrote them.
    pub path: Option<String>,
    /// Its connection.
    pub client: Arc<Client>,
    /// Its access log line, when the log is on.
    pub access: Option<Box<Entry>>,
    /// When it began to wait in the lobby, if it did.
    pub parked_since: Option<Instant>,
}

/// A request a layer refused before dispatch.
#[derive(Debug)]
pub(crate) struct Error {
    kind: Refusal,
    access: Option<Box<Entry>>,
}

#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error(transparent)]
    Auth(#[from] auth::Error),
    #[error(transparent)]
    RateLimit(#[from] ratelimit::Error),
}

impl Refusal {
    fn inner(&self) -> &dyn ErrorResponse {
        match self {
            Refusal::Auth(e) => e,
            Refusal::RateLimit(e) => e,
        }
    }
}

impl Error {
    /// Refuses `call` without the deployment's key, counting the refusal for its deployment.
    pub fn unauthorized(why: auth::Error, call: &mut Call) -> Self {
        Self::new(Refusal::Auth(why), call)
    }

    /// Refuses `call` over a rate limit, counting the refusal for its deployment.
    pub fn limited(why: ratelimit::Error, call: &mut Call) -> Self {
        Self::new(Refusal::RateLimit(why), call)
    }

    fn new(kind: Refusal, call: &mut Call) -> Self {
        let inner = kind.inner();
        call.target
            .state
            .stats
            .refused(inner.status(), inner.code());
        Self {
            kind,
            access: call.access.take(),
        }
    }

    fn into_response(self) -> Response<ResponseBody> {
        let response = error_response(self.kind.inner());
        if let Some(mut entry) = self.access {
            entry.status = response.status();
            entry.log("refused");
        }
        response
    }
}

/// Why a dispatched request got no answer from a replica.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// No replica could take it.
    #[error(transparent)]
    Parking(#[from] parking::Error),
    /// The replica could not be reached or failed.
    #[error(transparent)]
    Forward(#[from] forward::Error),
}

impl Failure {
    fn inner(&self) -> &dyn ErrorResponse {
        match self {
            Failure::Parking(e) => e,
            Failure::Forward(e) => e,
        }
    }
}

impl ErrorResponse for Failure {
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

/// The layers under routing.
type Stack = Auth<RateLimited<Dispatch>>;

/// The activator's service for the connection of one client.
#[derive(Debug, Clone)]
pub(crate) struct Proxy {
    client: Arc<Client>,
    stack: Stack,
}

impl Proxy {
    /// The service for a connection from `peer` whose first request waited in the lobby
    /// since `parked_since`, if it did.
    pub fn new(shared: Arc<Shared>, peer: SocketAddr, parked_since: Option<Instant>) -> Self {
        let stack = AuthLayer.layer(RateLimitLayer.layer(Dispatch));
        Self {
            client: Arc::new(Client {
                peer: Peer::new(peer),
                shared,
                lobby: parked_since,
                first_taken: AtomicBool::new(false),
            }),
            stack,
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for Proxy {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Answer<Instrumented<<Stack as Service<Call>>::Future>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let table = self.client.shared.table.load();
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| request.uri().authority().map(|a| a.as_str()));
        let path_and_query = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let (target, path) = match table.router.resolve(host, path_and_query) {
            Ok(resolved) => (resolved.target.clone(), resolved.path),
            Err(error) => {
                return Answer::Ready {
                    response: Some(error_response(&error)),
                };
            }
        };
        drop(table);
        let access = self
            .client
            .shared
            .access_log
            .load(Ordering::Relaxed)
            .then(|| {
                Box::new(Entry {
                    start: Instant::now(),
                    deployment: target.key.clone(),
                    method: request.method().clone(),
                    uri: request.uri().clone(),
                    client: self.client.peer.ip,
                    status: StatusCode::OK,
                    replica: None,
                    attempts: 0,
                })
            });
        // The stack is always ready (its layers hold no capacity of their own), so it is
        // called without `poll_ready`; cloning it clones no state.
        let mut stack = self.stack.clone();
        let (parts, body) = request.into_parts();
        // Disabled unless debug logging is on for lull, and then nearly free: everything the
        // request logs on its way carries where it was going.
        let span = tracing::debug_span!(
            "request",
            deployment = %target.key,
            method = %parts.method,
            path = parts.uri.path(),
        );
        Answer::Running {
            future: stack
                .call(Call {
                    target,
                    parts,
                    body: Some(body),
                    path,
                    parked_since: self.client.parked_since(),
                    client: self.client.clone(),
                    access,
                })
                .instrument(span),
        }
    }
}

pin_project! {
    /// The answer to one request: made at once (no route), or by the stack.
    #[project = AnswerProj]
    pub(crate) enum Answer<F> {
        /// Answered without the stack.
        Ready { response: Option<Response<ResponseBody>> },
        /// Answered by the stack; a refusal becomes its JSON error.
        Running { #[pin] future: F },
    }
}

impl<F> Future for Answer<F>
where
    F: Future<Output = Result<Response<ResponseBody>, Error>>,
{
    type Output = Result<Response<ResponseBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AnswerProj::Ready { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                // Polled after it finished: hyper never does.
                None => Poll::Pending,
            },
            AnswerProj::Running { future } => future
                .poll(cx)
                .map(|answer| Ok(answer.unwrap_or_else(Error::into_response))),
        }
    }
}

/// The innermost service: everything after admission.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dispatch;

impl Service<Call> for Dispatch {
    type Response = Response<ResponseBody>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> Self::Future {
        Box::pin(dispatch(call))
    }
}

/// A response head from a replica, and what came with it.
struct Forwarded {
    response: Response<Incoming>,
    replica: ReplicaGuard,
    conn: Sender,
    /// The client's side of a protocol switch it asked for.
    client_upgrade: Option<OnUpgrade>,
    /// The replica the client's affinity cookie named.
    affinity: Option<u64>,
    /// When the whole exchange must be over.
    deadline: Option<Instant>,
}

// Not an `async fn`: that would keep its argument twice in the future, once as passed and once
// as its local, and every request allocates this future.
#[expect(clippy::manual_async_fn)]
fn dispatch(mut call: Call) -> impl Future<Output = Result<Response<ResponseBody>, Error>> + Send {
    async move {
        let mut tracker = call.target.state.stats.arrive();
        let mut attempts = 0;
        // The call is borrowed rather than moved into the exchange: the request's head and body
        // then live once in this future (which every request allocates) instead of once per level.
        let result = exchange(&mut call, &mut tracker, &mut attempts).await;
        let Call {
            target,
            client,
            mut access,
            ..
        } = call;
        if let Some(entry) = &mut access {
            entry.attempts = attempts;
        }
        let response = match result {
            Ok(forwarded) => respond(&target, &client, tracker, forwarded, access),
            Err(error) => {
                if let Failure::Forward(e) = &error {
                    tracing::debug!(error = %e, "forwarding failed");
                }
                let response = error_response(&error);
                tracker.answered(response.status(), false);
                target.state.stats.rejected(error.code());
                if let Some(mut entry) = access {
                    entry.status = response.status();
                    entry.log("failed");
                }
                response
            }
        };
        tracing::debug!(status = response.status().as_u16(), attempts, "answered");
        Ok(response)
    }
}

/// A request head with nothing in it, to take a head's place once it is sent on.
fn blank() -> Parts {
    Request::new(()).into_parts().0
}

/// Picks a replica (waiting as needed), forwards the request, and retries what may be retried.
///
/// What it keeps across its waits is kept small: this future is part of the one every request
/// allocates, so heads and bodies are moved in plain functions rather than held in it.
async fn exchange(
    call: &mut Call,
    tracker: &mut Tracker,
    attempts: &mut u32,
) -> Result<Forwarded, Failure> {
    let Prepared {
        affinity,
        client_upgrade,
        upgrading,
    } = prepare(call)?;
    let Call {
        ref target,
        ref mut parts,
        ref mut body,
        ref client,
        parked_since,
        ..
    } = *call;
    let peer = &client.peer;
    let limits = &target.limits;
    let mut tried: Vec<Arc<Replica>> = Vec::new();
    // A request that waited in the lobby has waited part of its time in the queue already.
    let mut queue_deadline = parked_since.map(|since| since + target.queue_timeout);
    let mut replica = acquire(
        target,
        tracker,
        &choice(target, peer, affinity, &[]),
        &mut queue_deadline,
        parked_since,
    )
    .await?;
    // The total timeout counts from here: time in the queue is not the replica's.
    tracker.forwarding();
    let deadline = limits.total.map(|total| Instant::now() + total);
    let (request, replay) = outgoing(parts, body, limits, deadline, upgrading);
    let mut request = Some(request);
    loop {
        *attempts += 1;
        let head = HeadDeadline {
            response_header: Instant::now() + limits.response_header,
            total: deadline,
        };
        // Boxed: apart, this future and the request's stay within the sizes glibc's per-thread
        // cache serves (1,032 bytes), which costs less than one allocation of both.
        let sending = Box::pin(forward::send(replica.replica(), &mut request, limits, head));
        // What a failed attempt leaves is handled in a plain function, so none of it takes
        // space in this future while the next attempt waits for a replica.
        request = Some(match sending.await {
            Ok((response, conn)) => {
                replica.replica().health.connected();
                return Ok(Forwarded {
                    response,
                    replica,
                    conn,
                    client_upgrade,
                    affinity,
                    deadline,
                });
            }
            Err(error) => retry_after(
                target,
                replica.replica(),
                error,
                request.take(),
                replay.as_deref(),
                *attempts,
            )?,
        });
        tried.push(replica.replica().clone());
        drop(replica);
        replica = acquire(
            target,
            tracker,
            &choice(target, peer, affinity, &tried),
            &mut queue_deadline,
            None,
        )
        .await?;
    }
}

/// The request for the next attempt after one on `replica` failed with `error`, or the failure
/// to answer with.
fn retry_after(
    target: &Target,
    replica: &Arc<Replica>,
    error: forward::Error,
    unsent: Option<Request<RequestBody>>,
    replay: Option<&Replay>,
    attempts: u32,
) -> Result<Request<RequestBody>, Failure> {
    if matches!(error, forward::Error::Connect { .. }) {
        connect_failed(target, replica);
    }
    let next = if attempts < MAX_ATTEMPTS {
        retry::next(error.retry(), unsent, replay)
    } else {
        None
    };
    let Some(next) = next else {
        return Err(error.into());
    };
    tracing::debug!(
        deployment = %target.key,
        replica = %replica.id(),
        %error,
        "retrying on another replica"
    );
    target.state.stats.retried();
    Ok(next)
}

/// What [`prepare`] found in a request's head.
struct Prepared {
    /// The replica the client's affinity cookie names.
    affinity: Option<u64>,
    /// The client's side of a protocol switch it asked for.
    client_upgrade: Option<OnUpgrade>,
    /// Whether it asks for a protocol switch.
    upgrading: bool,
}

/// Checks the call before it waits for a replica, and turns its head into the one a replica
/// gets.
fn prepare(call: &mut Call) -> Result<Prepared, Failure> {
    let Call {
        ref target,
        ref mut parts,
        ref mut path,
        ref client,
        ..
    } = *call;
    if !target.enabled {
        return Err(parking::Error::Disabled {
            key: target.key.clone(),
        }
        .into());
    }
    let limit = target.limits.max_request_body;
    if forward::declared_too_large(&parts.headers, limit) {
        return Err(forward::Error::BodyTooLarge { limit }.into());
    }
    let affinity = target
        .sticky
        .as_ref()
        .and_then(|sticky| sticky.affinity(&parts.headers));
    let upgrade = upgrade::requested(&parts.headers);
    let client_upgrade = upgrade
        .as_ref()
        .and_then(|_| parts.extensions.remove::<OnUpgrade>());
    forward::prepare(parts, path.take(), &client.peer, upgrade.as_ref())?;
    Ok(Prepared {
        affinity,
        client_upgrade,
        upgrading: upgrade.is_some(),
    })
}

/// The request to send, taken from the call's head and body, and its copy for a replay when it
/// may be replayed.
fn outgoing(
    parts: &mut Parts,
    body: &mut Option<Incoming>,
    limits: &forward::Limits,
    deadline: Option<Instant>,
    upgrading: bool,
) -> (Request<RequestBody>, Option<Box<Replay>>) {
    let body = match body.take() {
        Some(body) => RequestBody::client(
            body,
            limits.max_request_body,
            timeout::Limits {
                idle: limits.idle,
                deadline,
            },
        ),
        None => RequestBody::Empty,
    };
    let head = std::mem::replace(parts, blank());
    // Boxed: only requests that may be replayed carry a copy, and the others keep the
    // request's future small.
    let replay = Replay::of(&head, &body, upgrading).map(Box::new);
    (Request::from_parts(head, body), replay)
}

fn choice<'a>(
    target: &Target,
    peer: &Peer,
    affinity: Option<u64>,
    tried: &'a [Arc<Replica>],
) -> Choice<'a> {
    Choice {
        policy: target.policy,
        limit: target.concurrency,
        client: peer.ip,
        affinity,
        tried,
    }
}

/// Counts a failed connect against `replica`; the failure that ejects it starts its prober.
fn connect_failed(target: &Target, replica: &Arc<Replica>) {
    if replica.health.connect_failed() {
        tracing::warn!(
            deployment = %target.key,
            replica = %replica.id(),
            addr = %replica.addr(),
            "ejecting a replica after {} failed connects in a row; probing it until it recovers",
            health::EJECT_AFTER
        );
        target.state.stats.ejected();
        tokio::spawn(health::probe_until_healthy(
            Arc::downgrade(replica),
            target.probe.clone(),
            target.limits.connect,
        ));
    }
}

/// A replica for `choice`: at once when one can take the request, else after waiting.
/// `parked_since` is when the request began to wait for a cold start in the lobby, if it did.
async fn acquire(
    target: &Target,
    tracker: &Tracker,
    choice: &Choice<'_>,
    queue_deadline: &mut Option<Instant>,
    parked_since: Option<Instant>,
) -> Result<ReplicaGuard, parking::Error> {
    let state = &target.state;
    let gate = (target.concurrency > 0).then_some(&state.gate);
    if let Pick::Ready(replica) = state.balancer.pick(&target.endpoints, choice, gate) {
        if let Some(since) = parked_since {
            tracker.cold_start(since.elapsed());
        }
        return Ok(replica);
    }
    // Boxed so the request's future stays small: it is allocated whole for every request, and
    // warm requests would carry the waiting stage's space unused.
    Box::pin(wait_for_replica(
        target,
        tracker,
        choice,
        queue_deadline,
        parked_since,
    ))
    .await
}

/// Waits for a replica to become ready (parked while the deployment is cold) or to come below
/// its concurrency limit. The request's head and body wait unread in the connection meanwhile.
async fn wait_for_replica(
    target: &Target,
    tracker: &Tracker,
    choice: &Choice<'_>,
    queue_deadline: &mut Option<Instant>,
    parked_since: Option<Instant>,
) -> Result<ReplicaGuard, parking::Error> {
    let state = &target.state;
    let gate = (target.concurrency > 0).then_some(&state.gate);
    let since = parked_since.unwrap_or_else(Instant::now);
    // One deadline for the whole request, however often it waits.
    let deadline = *queue_deadline.get_or_insert(since + target.queue_timeout);
    let mut endpoints = target.endpoints.clone();
    let mut cold = parked_since.is_some();
    loop {
        match state.balancer.pick(&endpoints, choice, gate) {
            Pick::Ready(replica) => {
                if cold {
                    tracker.cold_start(since.elapsed());
                }
                return Ok(replica);
            }
            Pick::Empty => {
                // The set can empty again between release and pick; then the request parks
                // again with the deadline it had.
                endpoints = state.parking.park(deadline).await?;
                cold = true;
            }
            Pick::Busy => {
                let waited = state
                    .gate
                    .wait(&state.parking, &endpoints, deadline, || {
                        state.balancer.pick(&endpoints, choice, gate)
                    })
                    .await?;
                match waited {
                    Waited::Ready(replica) => return Ok(replica),
                    Waited::Empty => {}
                }
            }
        }
    }
}

/// The client's response: the replica's head and streamed body, or a 101 and a tunnel.
fn respond(
    target: &Target,
    client: &Client,
    mut tracker: Tracker,
    forwarded: Forwarded,
    mut access: Option<Box<Entry>>,
) -> Response<ResponseBody> {
    let Forwarded {
        mut response,
        replica,
        conn,
        client_upgrade,
        affinity,
        deadline,
    } = forwarded;
    let status = response.status();
    tracing::debug!(replica = %replica.replica().id(), "forwarded");
    if let Some(entry) = &mut access {
        entry.status = status;
        entry.replica = Some(replica.replica().id().clone());
    }
    if status == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let replica_upgrade = hyper::upgrade::on(&mut response);
        tracker.answered(status, false);
        let (mut parts, _) = response.into_parts();
        upgrade::switching_headers(&mut parts.headers);
        client
            .shared
            .tunnels
            .open(client_upgrade, replica_upgrade, (tracker, replica));
        if let Some(entry) = access {
            entry.log("upgraded");
        }
        // The connection now belongs to the tunnel; its sender is of no more use.
        drop(conn);
        return Response::from_parts(parts, ResponseBody::local(Bytes::new()));
    }
    let (mut parts, body) = response.into_parts();
    forward::strip_hop_by_hop(&mut parts.headers);
    if let Some(sticky) = &target.sticky
        && affinity != Some(replica.replica().token())
        && let Some(cookie) = sticky.set_cookie(replica.replica())
    {
        parts.headers.append(header::SET_COOKIE, cookie);
    }
    tracker.answered(status, true);
    let limits = timeout::Limits {
        idle: target.limits.idle,
        deadline,
    };
    let done = Done {
        _tracker: tracker,
        replica,
        conn: Some(conn),
        access,
    };
    Response::from_parts(parts, ResponseBody::proxied(body, limits, done))
}
