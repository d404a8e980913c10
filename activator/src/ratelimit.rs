//! `activator.rateLimit`: token buckets (GCRA, from `governor`) for a whole deployment and for
//! each client address. A request over either gets 429 with `Retry-After`, before it can park
//! or wake anything.
//!
//! The client's own bucket is checked first, so one client over its limit does not spend the
//! deployment's budget. Clients are keyed by their address, IPv6 ones by their /64 (a host
//! usually holds a whole /64, and keying single addresses would let it dodge its limit and
//! fill the map). The map of client buckets is pruned on a timer (`retain_recent` drops the
//! buckets that are full again, indistinguishable from new ones) and is bounded: when it
//! reaches [`MAX_CLIENTS`] it is pruned at once (at most once per [`PRUNE_FULL_EVERY`]), and
//! while it stays full every client shares one bucket, so memory stays bounded when a flood of
//! addresses arrives faster than buckets go stale.
//! Limiters run on tokio's clock, so tests drive them with paused time.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{NotUntil, Quota, RateLimiter};
use http::{Response, StatusCode};
use lull_core::DeploymentKey;
use lull_spec::{RateLimit, RateLimits};
use serde_json::{Map, Value};
use tokio::time::Instant;
use tower::{Layer, Service};

use crate::admit::Admit;
use crate::body::ResponseBody;
use crate::proxy::{self, Call};
use crate::response::ErrorResponse;

/// Most client buckets kept per deployment.
pub(crate) const MAX_CLIENTS: usize = 100_000;

/// How often client buckets are pruned.
pub(crate) const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// Least time between two prunes of a full map, so a flood does not prune on every request.
const PRUNE_FULL_EVERY: Duration = Duration::from_secs(1);

/// The bucket that clients share while the map is full.
const OVERFLOW: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

/// Errors of rate limiting.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The deployment's limit.
    #[error(
        "deployment `{key}` takes no more requests now (activator.rateLimit.perDeployment); retry later"
    )]
    Deployment {
        /// The deployment.
        key: DeploymentKey,
        /// When a request would pass.
        retry_after: Duration,
    },
    /// The client's limit.
    #[error(
        "too many requests from this client to deployment `{key}` (activator.rateLimit.perClientIp); retry later"
    )]
    Client {
        /// The deployment.
        key: DeploymentKey,
        /// When a request would pass.
        retry_after: Duration,
    },
}

impl ErrorResponse for Error {
    fn status(&self) -> StatusCode {
        StatusCode::TOO_MANY_REQUESTS
    }

    fn code(&self) -> &'static str {
        match self {
            Error::Deployment { .. } => "rate_limited",
            Error::Client { .. } => "client_rate_limited",
        }
    }

    fn retry_after(&self) -> Option<u64> {
        let (Error::Deployment { retry_after, .. } | Error::Client { retry_after, .. }) = self;
        // Whole seconds, rounded up, at least one: a client that retries at once would fail.
        Some(retry_after.as_secs_f64().ceil().max(1.0) as u64)
    }

    fn details(&self, body: &mut Map<String, Value>) {
        let (Error::Deployment { key, .. } | Error::Client { key, .. }) = self;
        body.insert("deployment".to_owned(), Value::from(key.as_str()));
    }
}

/// governor's clock on tokio's time.
#[derive(Debug, Clone)]
pub(crate) struct TokioClock {
    start: Instant,
}

impl Default for TokioClock {
    fn default() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

type Direct = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;
type Keyed = RateLimiter<IpAddr, DashMapStateStore<IpAddr>, TokioClock, NoOpMiddleware<Duration>>;

/// One deployment's limiters.
pub(crate) struct Limiter {
    spec: RateLimits,
    clock: TokioClock,
    deployment: Option<Direct>,
    clients: Option<Keyed>,
    /// When the full map was last pruned, in milliseconds of `clock`.
    pruned_full: AtomicU64,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("spec", &self.spec)
            .field("clients", &self.clients.as_ref().map(Keyed::len))
            .finish_non_exhaustive()
    }
}

fn quota(limit: &RateLimit) -> Option<Quota> {
    let rate = NonZeroU32::new(limit.requests_per_second)?;
    let burst = limit.burst.and_then(NonZeroU32::new).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

impl Limiter {
    /// The limiters of `spec`, or `None` when it limits nothing. (A rate of 0 is refused by
    /// spec validation; here it means no limit rather than no traffic.)
    pub fn new(spec: &RateLimits) -> Option<Self> {
        let clock = TokioClock::default();
        let deployment = spec
            .per_deployment
            .as_ref()
            .and_then(quota)
            .map(|q| RateLimiter::direct_with_clock(q, clock.clone()));
        let clients = spec
            .per_client_ip
            .as_ref()
            .and_then(quota)
            .map(|q| RateLimiter::dashmap_with_clock(q, clock.clone()));
        if deployment.is_none() && clients.is_none() {
            return None;
        }
        Some(Self {
            spec: spec.clone(),
            clock,
            deployment,
            clients,
            pruned_full: AtomicU64::new(0),
        })
    }

    /// Whether these limiters implement `spec`: a reload that keeps the limits keeps the
    /// buckets, so it does not hand every client a fresh burst.
    pub fn implements(&self, spec: &RateLimits) -> bool {
        self.spec == *spec
    }

    /// Takes a token for a request from `client`.
    pub fn check(&self, key: &DeploymentKey, client: IpAddr) -> Result<(), Error> {
        if let Some(clients) = &self.clients {
            let mut bucket = client_key(client);
            if clients.len() >= MAX_CLIENTS {
                self.prune_full(clients);
                if clients.len() >= MAX_CLIENTS {
                    bucket = OVERFLOW;
                }
            }
            clients.check_key(&bucket).map_err(|n| Error::Client {
                key: key.clone(),
                retry_after: self.wait(&n),
            })?;
        }
        if let Some(deployment) = &self.deployment {
            deployment.check().map_err(|n| Error::Deployment {
                key: key.clone(),
                retry_after: self.wait(&n),
            })?;
        }
        Ok(())
    }

    fn prune_full(&self, clients: &Keyed) {
        let now = u64::try_from(self.clock.now().as_millis()).unwrap_or(u64::MAX);
        let last = self.pruned_full.load(Ordering::Relaxed);
        let due = now.saturating_sub(last) >= PRUNE_FULL_EVERY.as_millis() as u64;
        if due
            && self
                .pruned_full
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            clients.retain_recent();
        }
    }

    fn wait(&self, not_until: &NotUntil<Duration>) -> Duration {
        not_until.wait_time_from(self.clock.now())
    }

    /// Drops the client buckets that are full again and gives their memory back.
    pub fn prune(&self) {
        if let Some(clients) = &self.clients {
            clients.retain_recent();
            clients.shrink_to_fit();
        }
    }

    /// Client buckets held.
    #[cfg(test)]
    pub fn clients(&self) -> usize {
        self.clients.as_ref().map_or(0, Keyed::len)
    }
}

/// The bucket of a client: its IPv4 address, or its IPv6 /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

/// Checks each request against its deployment's [`Limiter`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RateLimitLayer;

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> RateLimited<S> {
        RateLimited { inner }
    }
}

/// The service of [`RateLimitLayer`].
#[derive(Debug, Clone)]
pub(crate) struct RateLimited<S> {
    inner: S,
}

impl<S> Service<Call> for RateLimited<S>
where
    S: Service<Call, Response = Response<ResponseBody>, Error = proxy::Error>,
{
    type Response = Response<ResponseBody>;
    type Error = proxy::Error;
    type Future = Admit<S::Future, proxy::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), proxy::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut call: Call) -> Self::Future {
        let checked = match &call.target.limiter {
            Some(limiter) => limiter.check(&call.target.key, call.client.peer.ip),
            None => Ok(()),
        };
        match checked {
            Ok(()) => Admit::admitted(self.inner.call(call)),
            Err(error) => Admit::rejected(proxy::Error::limited(error, &mut call)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_deployment: Option<(u32, u32)>, per_client: Option<(u32, u32)>) -> RateLimits {
        let limit = |(rate, burst)| RateLimit {
            requests_per_second: rate,
            burst: Some(burst),
        };
        RateLimits {
            per_deployment: per_deployment.map(limit),
            per_client_ip: per_client.map(limit),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_passes_then_429_with_the_wait_until_a_token_returns() {
        let key = DeploymentKey::new("m");
        let limiter = Limiter::new(&limits(Some((2, 3)), None)).expect("limits");
        let client = IpAddr::from([10, 0, 0, 1]);
        for _ in 0..3 {
            limiter.check(&key, client).expect("within the burst");
        }
        let error = limiter.check(&key, client).expect_err("over");
        assert_eq!(error.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(error.code(), "rate_limited");
        // Two per second: the next token is half a second away, announced as one second.
        assert_eq!(error.retry_after(), Some(1));
        tokio::time::advance(Duration::from_millis(500)).await;
        limiter.check(&key, client).expect("a token came back");
        assert!(limiter.check(&key, client).is_err());
        assert!(Limiter::new(&RateLimits::default()).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn clients_have_their_own_buckets_and_idle_ones_are_pruned() {
        let key = DeploymentKey::new("m");
        let limiter = Limiter::new(&limits(None, Some((1, 1)))).expect("limits");
        let a = IpAddr::from([10, 0, 0, 1]);
        let b = IpAddr::from([10, 0, 0, 2]);
        limiter.check(&key, a).expect("a's first");
        let error = limiter.check(&key, a).expect_err("a is over");
        assert_eq!(error.code(), "client_rate_limited");
        limiter.check(&key, b).expect("b has its own bucket");
        // An IPv6 host's addresses share its /64.
        let v6 = |last: u16| IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last]);
        limiter.check(&key, v6(1)).expect("first of the /64");
        assert!(limiter.check(&key, v6(2)).is_err());
        assert_eq!(limiter.clients(), 3);
        tokio::time::advance(Duration::from_secs(5)).await;
        limiter.prune();
        assert_eq!(limiter.clients(), 0);
    }
}
