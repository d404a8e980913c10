//! Opening connections to replicas, a bounded number at a time per replica.
//!
//! HTTP/1.1 carries one request at a time, so a burst of parked requests released to a replica
//! that just became ready needs a connection each. Starting thousands of connects at once
//! floods the replica's accept queue faster than it accepts: SYNs are dropped and retried a
//! second later, past the connect timeout, and the burst ends in 504s and 502s (Knative #9888).
//! Here at most [`MAX_CONNECTING`] connects per replica are in progress; the others wait their
//! turn, and hyper's pool hands them any pooled connection that frees up meanwhile, so a burst
//! needs far fewer connections. The connect timeout runs from the moment a connect starts, not
//! while it waits its turn. How many requests a replica serves at once is not limited here
//! (that is `containerConcurrency`'s job).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tower::{Service, ServiceExt};

/// Connects in progress to one replica at most; a listen backlog is rarely under 128.
pub(crate) const MAX_CONNECTING: usize = 64;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An [`HttpConnector`] that limits concurrent connects per replica address.
#[derive(Debug, Clone)]
pub(crate) struct Connector {
    inner: HttpConnector,
    /// One gate per replica with connects in progress; a gate goes when its last connect ends.
    gates: Arc<Mutex<HashMap<String, Weak<Semaphore>>>>,
}

impl Connector {
    /// A connector that gives up on a connect after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        let mut inner = HttpConnector::new();
        inner.set_connect_timeout(Some(timeout));
        // Requests and streamed chunks are small writes; Nagle would hold them back.
        inner.set_nodelay(true);
        Self {
            inner,
            gates: Arc::default(),
        }
    }

    fn gate(&self, dst: &Uri) -> Arc<Semaphore> {
        let key = dst.authority().map_or("", |a| a.as_str());
        // A map of weak pointers is consistent whatever a panicking holder left.
        let mut gates = self.gates.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(gate) = gates.get(key).and_then(Weak::upgrade) {
            return gate;
        }
        gates.retain(|_, gate| gate.strong_count() > 0);
        let gate = Arc::new(Semaphore::new(MAX_CONNECTING));
        gates.insert(key.to_owned(), Arc::downgrade(&gate));
        gate
    }
}

impl Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let gate = self.gate(&dst);
        let inner = self.inner.clone();
        Box::pin(async move {
            // The gate is never closed; were it closed, connecting without a turn is still right.
            let _turn = gate.acquire_owned().await.ok();
            inner.oneshot(dst).await.map_err(Into::into)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connects_to_one_replica_take_turns() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let uri: Uri = format!("http://{addr}/").parse().expect("uri");
        let mut connector = Connector::new(Duration::from_secs(5));
        let gate = connector.gate(&uri);
        assert_eq!(gate.available_permits(), MAX_CONNECTING);
        // Every turn taken: a connect waits until one is given back.
        let turns = gate
            .clone()
            .acquire_many_owned(MAX_CONNECTING as u32)
            .await
            .expect("open gate");
        let mut connecting = connector.call(uri.clone());
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(connecting.as_mut().poll(&mut cx).is_pending());
        drop(turns);
        connecting.await.expect("connected once a turn is free");
        // Another replica has its own gate.
        let other: Uri = "http://127.0.0.1:9/".parse().expect("uri");
        assert!(!Arc::ptr_eq(&connector.gate(&other), &gate));
        drop(gate);
        assert!(
            connector
                .gates
                .lock()
                .expect("not poisoned")
                .get(&addr.to_string())
                .is_some()
        );
    }
}
