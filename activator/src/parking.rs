//! The parking queue: where requests for a deployment with no ready replica wait for one.
//!
//! The queue is bounded (a full queue answers 503 with `Retry-After`, never grows) and each
//! request waits at most until its deadline (then 504). A parked request costs the queue one
//! channel sender: its head and body stay with the connection, unread, until it is forwarded.
//!
//! The first request parked in a cold period wakes the deployment at once. One releaser task per
//! cold period then watches the endpoint set (no polling): the moment it is not empty, every
//! waiter is released in arrival order. While requests stay parked and nothing is ready the wake
//! is sent again once a second, in case the first was lost. The cold period ends when the
//! waiters are released or all of them are gone (timed out or disconnected).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::StatusCode;
use lull_core::{DeploymentKey, EndpointSet, Wake};
use serde_json::{Map, Value};
use tokio::sync::{Notify, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};

use crate::response::ErrorResponse;

/// How often a wake is sent again while requests stay parked and nothing is ready.
pub(crate) const WAKE_RESEND: Duration = Duration::from_secs(1);

/// `Retry-After` of a full queue: a queue fills during a cold start, which takes seconds.
const RETRY_AFTER_SECS: u64 = 5;

/// Errors of parking.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The deployment's queue holds as many requests as it may.
    #[error(
        "deployment `{key}` has no ready replica and its queue of {capacity} waiting requests is full; retry later"
    )]
    QueueFull {
        /// The deployment.
        key: DeploymentKey,
        /// Its queue capacity.
        capacity: usize,
    },
    /// No replica became ready before the request's deadline.
    #[error(
        "no replica of deployment `{key}` became ready within {}s; it may still be starting, retry later",
        waited.as_secs_f64()
    )]
    Timeout {
        /// The deployment.
        key: DeploymentKey,
        /// How long the request waited.
        waited: Duration,
    },
    /// The deployment is disabled.
    #[error("deployment `{key}` is disabled; set enabled: true to serve it")]
    Disabled {
        /// The deployment.
        key: DeploymentKey,
    },
    /// The deployment was removed while the request waited.
    #[error("deployment `{key}` was removed while the request waited for it")]
    Removed {
        /// The deployment.
        key: DeploymentKey,
    },
}

/// `Result` with this module's [`Error`].
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

impl ErrorResponse for Error {
    fn status(&self) -> StatusCode {
        match self {
            Error::QueueFull { .. } | Error::Disabled { .. } | Error::Removed { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Error::QueueFull { .. } => "queue_full",
            Error::Timeout { .. } => "queue_timeout",
            Error::Disabled { .. } => "disabled",
            Error::Removed { .. } => "deployment_removed",
        }
    }

    fn retry_after(&self) -> Option<u64> {
        matches!(self, Error::QueueFull { .. }).then_some(RETRY_AFTER_SECS)
    }

    fn details(&self, body: &mut Map<String, Value>) {
        let key = match self {
            Error::QueueFull { key, .. }
            | Error::Timeout { key, .. }
            | Error::Disabled { key }
            | Error::Removed { key } => key,
        };
        body.insert("deployment".to_owned(), Value::from(key.as_str()));
    }
}

/// The queue's settings, from the deployment's spec and its backend.
#[derive(Debug, Clone)]
pub(crate) struct Lane {
    /// `enabled` of the spec: a disabled deployment parks nothing and never wakes.
    pub enabled: bool,
    /// Most requests waiting at once.
    pub capacity: usize,
    /// The deployment's ready endpoints.
    pub endpoints: watch::Receiver<EndpointSet>,
}

/// Why a waiter was let go.
#[derive(Debug)]
enum Release {
    Ready(watch::Receiver<EndpointSet>),
    Disabled,
    Removed,
}

#[derive(Debug)]
struct State {
    lane: Lane,
    /// Waiters in arrival order; those that gave up are skipped at release.
    waiters: VecDeque<oneshot::Sender<Release>>,
    /// Whether a cold period (and its releaser task) is running.
    cold: bool,
    removed: bool,
}

/// One deployment's parking queue.
pub(crate) struct ParkingQueue {
    key: DeploymentKey,
    wake: Arc<dyn Wake>,
    /// Requests parked now, the released ones included until they leave.
    parked: AtomicUsize,
    wakes: AtomicU64,
    state: Mutex<State>,
    /// Tells the releaser to look again: settings changed, or the last waiter left.
    poke: Notify,
}

impl std::fmt::Debug for ParkingQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParkingQueue")
            .field("key", &self.key)
            .field("parked", &self.parked())
            .field("wakes", &self.wakes())
            .finish_non_exhaustive()
    }
}

impl ParkingQueue {
    /// An empty queue for `key`.
    pub fn new(key: DeploymentKey, wake: Arc<dyn Wake>, lane: Lane) -> Self {
        Self {
            key,
            wake,
            parked: AtomicUsize::new(0),
            wakes: AtomicU64::new(0),
            state: Mutex::new(State {
                lane,
                waiters: VecDeque::new(),
                cold: false,
                removed: false,
            }),
            poke: Notify::new(),
        }
    }

    /// Requests parked now.
    pub fn parked(&self) -> usize {
        self.parked.load(Ordering::Acquire)
    }

    /// Wakes sent since start.
    pub fn wakes(&self) -> u64 {
        self.wakes.load(Ordering::Relaxed)
    }

    /// Replaces the settings; parked requests see the new endpoints and enabled flag at once.
    pub fn configure(&self, lane: Lane) {
        self.lock().lane = lane;
        self.poke.notify_one();
    }

    /// The deployment is no longer routed: its waiters are answered, nothing parks again.
    pub fn remove(&self) {
        self.lock().removed = true;
        self.poke.notify_one();
    }

    /// Waits until the deployment has a ready endpoint, and returns the endpoint set to pick
    /// from. Returns at once when one is ready already.
    pub async fn park(self: &Arc<Self>, deadline: Instant) -> Result<watch::Receiver<EndpointSet>> {
        let since = Instant::now();
        let (tx, rx) = oneshot::channel();
        let (_slot, start) = {
            let mut state = self.lock();
            if state.removed {
                return Err(self.removed());
            }
            if !state.lane.enabled {
                return Err(self.disabled());
            }
            if !state.lane.endpoints.borrow().is_empty() {
                return Ok(state.lane.endpoints.clone());
            }
            let slot = self.take_slot(state.lane.capacity)?;
            if state.waiters.len() >= state.lane.capacity {
                state.waiters.retain(|w| !w.is_closed());
            }
            state.waiters.push_back(tx);
            let start = !state.cold;
            state.cold = true;
            (slot, start)
        };
        if start {
            self.wake();
            tokio::spawn(self.clone().release_when_ready());
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(Release::Ready(endpoints))) => Ok(endpoints),
            Ok(Ok(Release::Disabled)) => Err(self.disabled()),
            // A dropped sender means the queue itself went away with its deployment.
            Ok(Ok(Release::Removed)) | Ok(Err(_)) => Err(self.removed()),
            Err(_) => Err(self.timeout(since.elapsed())),
        }
    }

    /// A place in the queue for a request that waits for something other than a cold start
    /// (a replica below its concurrency limit): counted as parked, refused when the queue is
    /// full.
    pub fn admit(self: &Arc<Self>) -> Result<Slot> {
        let capacity = self.lock().lane.capacity;
        self.take_slot(capacity)
    }

    /// The error of a request that waited `waited` in vain.
    pub fn timeout(&self, waited: Duration) -> Error {
        Error::Timeout {
            key: self.key.clone(),
            waited,
        }
    }

    fn take_slot(self: &Arc<Self>, capacity: usize) -> Result<Slot> {
        self.parked
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < capacity).then_some(n + 1)
            })
            .map_err(|_| Error::QueueFull {
                key: self.key.clone(),
                capacity,
            })?;
        Ok(Slot {
            queue: self.clone(),
        })
    }

    fn wake(&self) {
        self.wakes.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(deployment = %self.key, "waking: a request waits for a replica");
        self.wake.wake(&self.key);
    }

    /// The releaser of one cold period.
    async fn release_when_ready(self: Arc<Self>) {
        let mut resend = tokio::time::interval_at(Instant::now() + WAKE_RESEND, WAKE_RESEND);
        resend.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let Some(mut endpoints) = self.settle() else {
                return;
            };
            // A backend that dropped its sender publishes nothing more through this receiver;
            // the waiters then wait for new settings or their deadline.
            let live = endpoints.has_changed().is_ok();
            tokio::select! {
                _ = endpoints.changed(), if live => {}
                () = self.poke.notified() => {}
                _ = resend.tick() => {
                    if self.parked() > 0 {
                        self.wake();
                    }
                }
            }
        }
    }

    /// Releases the waiters if they can go, ending the cold period; otherwise returns the
    /// endpoints to watch, marked seen.
    fn settle(&self) -> Option<watch::Receiver<EndpointSet>> {
        let mut state = self.lock();
        let mut endpoints = state.lane.endpoints.clone();
        let release = if state.removed {
            Release::Removed
        } else if !state.lane.enabled {
            Release::Disabled
        } else if !endpoints.borrow_and_update().is_empty() {
            Release::Ready(endpoints.clone())
        } else if self.parked() == 0 {
            state.waiters.clear();
            state.cold = false;
            return None;
        } else {
            return Some(endpoints);
        };
        for waiter in state.waiters.drain(..) {
            let release = match &release {
                Release::Ready(endpoints) => Release::Ready(endpoints.clone()),
                Release::Disabled => Release::Disabled,
                Release::Removed => Release::Removed,
            };
            // A waiter that gave up has dropped its receiver; nothing to tell it.
            let _ = waiter.send(release);
        }
        state.cold = false;
        None
    }

    fn disabled(&self) -> Error {
        Error::Disabled {
            key: self.key.clone(),
        }
    }

    fn removed(&self) -> Error {
        Error::Removed {
            key: self.key.clone(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update of the state is a single assignment or push; a panicking holder
        // cannot leave it half-changed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A place in the queue, freed when the request stops waiting, however it stops.
pub(crate) struct Slot {
    queue: Arc<ParkingQueue>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.queue.parked.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.queue.poke.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lull_core::{Endpoint, ReplicaId};
    use std::net::SocketAddr;
    use tokio::task::JoinSet;
    use tokio::time::advance;

    #[derive(Debug, Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(&self, _key: &DeploymentKey) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Wakes {
        fn count(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    fn ready() -> EndpointSet {
        EndpointSet::new(vec![Endpoint {
            replica: ReplicaId::new("m-1"),
            addr: SocketAddr::from(([127, 0, 0, 1], 9)),
        }])
    }

    struct Fixture {
        queue: Arc<ParkingQueue>,
        wakes: Arc<Wakes>,
        endpoints: watch::Sender<EndpointSet>,
    }

    fn fixture(capacity: usize) -> Fixture {
        let wakes = Arc::new(Wakes::default());
        let (endpoints, rx) = watch::channel(EndpointSet::default());
        let lane = Lane {
            enabled: true,
            capacity,
            endpoints: rx,
        };
        let queue = Arc::new(ParkingQueue::new(
            DeploymentKey::new("m"),
            wakes.clone(),
            lane,
        ));
        Fixture {
            queue,
            wakes,
            endpoints,
        }
    }

    /// Lets spawned tasks run until they block; time does not move while they do.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    fn in_a_minute() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[tokio::test(start_paused = true)]
    async fn one_wake_per_cold_period_and_release_in_arrival_order() {
        let f = fixture(1000);
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = JoinSet::new();
        for i in 0..500 {
            let queue = f.queue.clone();
            let order = order.clone();
            tasks.spawn(async move {
                let result = queue.park(in_a_minute()).await;
                order.lock().expect("not poisoned").push(i);
                result.map(|_| ())
            });
            // Each waiter parks before the next arrives, so arrival order is i.
            settle().await;
        }
        assert_eq!(f.queue.parked(), 500);
        assert_eq!(f.wakes.count(), 1);

        f.endpoints.send_replace(ready());
        while let Some(result) = tasks.join_next().await {
            result.expect("no panic").expect("released ready");
        }
        let order = order.lock().expect("not poisoned").clone();
        assert_eq!(order, (0..500).collect::<Vec<_>>());
        assert_eq!(f.wakes.count(), 1);
        assert_eq!(f.queue.parked(), 0);

        // Warm: parking returns at once, no wake.
        f.queue.park(in_a_minute()).await.expect("ready");
        assert_eq!(f.wakes.count(), 1);

        // Cold again: a new period, a new wake.
        f.endpoints.send_replace(EndpointSet::default());
        let queue = f.queue.clone();
        let waiter = tokio::spawn(async move { queue.park(in_a_minute()).await.map(|_| ()) });
        settle().await;
        assert_eq!(f.wakes.count(), 2);
        f.endpoints.send_replace(ready());
        waiter.await.expect("no panic").expect("released");
    }

    #[tokio::test(start_paused = true)]
    async fn wakes_are_resent_each_second_while_nothing_is_ready() {
        let f = fixture(10);
        let queue = f.queue.clone();
        let waiter = tokio::spawn(async move { queue.park(in_a_minute()).await.map(|_| ()) });
        settle().await;
        assert_eq!(f.wakes.count(), 1);
        advance(Duration::from_millis(999)).await;
        settle().await;
        assert_eq!(f.wakes.count(), 1);
        advance(Duration::from_millis(1)).await;
        settle().await;
        assert_eq!(f.wakes.count(), 2);
        for _ in 0..3 {
            advance(Duration::from_secs(1)).await;
            settle().await;
        }
        assert_eq!(f.wakes.count(), 5);
        f.endpoints.send_replace(ready());
        waiter.await.expect("no panic").expect("released");
        advance(Duration::from_secs(5)).await;
        settle().await;
        assert_eq!(f.wakes.count(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_refuses_and_a_freed_slot_admits_again() {
        let f = fixture(2);
        let mut first = Box::pin(f.queue.park(in_a_minute()));
        let mut second = Box::pin(f.queue.park(in_a_minute()));
        assert!(futures_poll(&mut first).is_none());
        assert!(futures_poll(&mut second).is_none());
        let err = f.queue.park(in_a_minute()).await.expect_err("full");
        assert!(matches!(err, Error::QueueFull { capacity: 2, .. }), "{err}");
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err.retry_after(), Some(RETRY_AFTER_SECS));

        // A client that disconnects frees its place.
        drop(first);
        assert_eq!(f.queue.parked(), 1);
        let mut third = Box::pin(f.queue.park(in_a_minute()));
        assert!(futures_poll(&mut third).is_none());
        assert_eq!(f.queue.parked(), 2);
        f.endpoints.send_replace(ready());
        second.await.expect("released");
        third.await.expect("released");
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_time_out_and_the_cold_period_ends_with_them() {
        let f = fixture(10);
        let deadline = Instant::now() + Duration::from_secs(60);
        let err = f.queue.park(deadline).await.expect_err("no replica comes");
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert_eq!(err.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(err.code(), "queue_timeout");
        settle().await;
        let wakes = f.wakes.count();
        assert!(wakes >= 60, "resent while waiting: {wakes}");
        // With nobody parked the releaser is gone: no more wakes.
        advance(Duration::from_secs(10)).await;
        settle().await;
        assert_eq!(f.wakes.count(), wakes);
        assert!(!f.queue.lock().cold);
    }

    #[tokio::test(start_paused = true)]
    async fn disabling_answers_parked_requests_and_never_wakes() {
        let f = fixture(10);
        let queue = f.queue.clone();
        let waiter = tokio::spawn(async move { queue.park(in_a_minute()).await.map(|_| ()) });
        settle().await;
        let lane = |enabled| Lane {
            enabled,
            capacity: 10,
            endpoints: f.endpoints.subscribe(),
        };
        f.queue.configure(lane(false));
        let err = waiter.await.expect("no panic").expect_err("disabled");
        assert_eq!(err.code(), "disabled");
        assert_eq!(
            err.to_string(),
            "deployment `m` is disabled; set enabled: true to serve it"
        );
        let wakes = f.wakes.count();
        let err = f.queue.park(in_a_minute()).await.expect_err("disabled");
        assert_eq!(err.code(), "disabled");
        assert_eq!(f.wakes.count(), wakes);

        f.queue.configure(lane(true));
        f.endpoints.send_replace(ready());
        f.queue.park(in_a_minute()).await.expect("enabled again");
    }

    #[tokio::test(start_paused = true)]
    async fn new_endpoints_from_configure_release_waiters() {
        let f = fixture(10);
        let queue = f.queue.clone();
        let waiter = tokio::spawn(async move { queue.park(in_a_minute()).await });
        settle().await;
        // The backend was replaced: a new receiver that already has a replica.
        let (_tx, rx) = watch::channel(ready());
        f.queue.configure(Lane {
            enabled: true,
            capacity: 10,
            endpoints: rx,
        });
        let endpoints = waiter.await.expect("no panic").expect("released");
        assert_eq!(endpoints.borrow().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn removal_answers_parked_requests() {
        let f = fixture(10);
        let queue = f.queue.clone();
        let waiter = tokio::spawn(async move { queue.park(in_a_minute()).await.map(|_| ()) });
        settle().await;
        f.queue.remove();
        let err = waiter.await.expect("no panic").expect_err("removed");
        assert_eq!(err.code(), "deployment_removed");
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    /// Polls a future once.
    fn futures_poll<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match std::pin::Pin::new(f).poll(&mut cx) {
            std::task::Poll::Ready(out) => Some(out),
            std::task::Poll::Pending => None,
        }
    }
}
