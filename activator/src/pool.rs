//! Pooled connections to one replica, and a bounded number of connects at a time.
//!
//! HTTP/1.1 carries one request at a time, so a burst of parked requests released to a replica
//! that just became ready needs a connection each. Starting thousands of connects at once
//! floods the replica's accept queue faster than it accepts: SYNs are dropped and retried a
//! second later, past the connect timeout, and the burst ends in 504s and 502s (Knative #9888).
//! Here at most [`MAX_CONNECTING`] connects per replica are in progress; the other requests wait
//! for a turn, and a connection that a finished request gives back goes straight to the
//! longest-waiting of them, so a burst needs far fewer connections. The connect timeout runs
//! from the moment a connect starts, not while it waits its turn.
//!
//! Idle connections are reused last-in first-out, so a steady load keeps reusing the same few
//! warm ones and the others age out after [`IDLE_TIMEOUT`]. A connection returns to the pool
//! only when its response was read to the end; one cut short is closed.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Semaphore, oneshot};
use tokio::time::Instant;

use crate::connect::{self, ConnectError, Sender};

/// Connects in progress to one replica at most; a listen backlog is rarely under 128.
pub(crate) const MAX_CONNECTING: usize = 64;

/// Idle connections kept per replica; enough for a burst, bounded.
const MAX_IDLE: usize = 256;

/// How long an idle connection is kept.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Stale waiters (requests that connected on their own instead) are swept past this many.
const SWEEP_WAITERS: usize = 64;

#[derive(Debug)]
struct Idle {
    sender: Sender,
    since: Instant,
}

#[derive(Debug, Default)]
struct State {
    idle: VecDeque<Idle>,
    /// Requests waiting for a connect turn, oldest first; a returned connection goes to them.
    waiters: VecDeque<oneshot::Sender<Sender>>,
}

/// The connections to one replica.
#[derive(Debug)]
pub(crate) struct Pool {
    addr: SocketAddr,
    state: Mutex<State>,
    connecting: Semaphore,
}

enum Next<'a> {
    Reuse(Sender),
    Connect(tokio::sync::SemaphorePermit<'a>),
    Wait(oneshot::Receiver<Sender>),
}

impl Pool {
    /// An empty pool for the replica at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            state: Mutex::default(),
            connecting: Semaphore::new(MAX_CONNECTING),
        }
    }

    /// A connection ready to send on: an idle one, a new one, or one given back while this
    /// request waited for its turn to connect.
    pub async fn get(&self, connect_timeout: Duration) -> Result<Sender, ConnectError> {
        if let Some(sender) = take_ready(&mut self.lock().idle) {
            return Ok(sender);
        }
        // Boxed: connecting and waiting for a turn take far more space than reusing, and the
        // request's future is allocated whole for every request.
        Box::pin(self.connect_or_wait(connect_timeout)).await
    }

    async fn connect_or_wait(&self, connect_timeout: Duration) -> Result<Sender, ConnectError> {
        loop {
            let next = {
                let mut state = self.lock();
                if let Some(sender) = take_ready(&mut state.idle) {
                    Next::Reuse(sender)
                } else if let Ok(permit) = self.connecting.try_acquire() {
                    Next::Connect(permit)
                } else {
                    if state.waiters.len() >= SWEEP_WAITERS {
                        state.waiters.retain(|w| !w.is_closed());
                    }
                    let (tx, rx) = oneshot::channel();
                    state.waiters.push_back(tx);
                    Next::Wait(rx)
                }
            };
            let permit = match next {
                Next::Reuse(sender) => return Ok(sender),
                Next::Connect(permit) => Some(permit),
                Next::Wait(handed) => tokio::select! {
                    biased;
                    handed = handed => match handed {
                        Ok(mut sender) => {
                            // Given back as its response ended: the connection may still be
                            // finishing that exchange, so wait until it takes a new request.
                            if sender.ready().await.is_ok() {
                                return Ok(sender);
                            }
                            continue;
                        }
                        Err(_) => continue,
                    },
                    // The semaphore is never closed; were it, connecting without a turn is still right.
                    permit = self.connecting.acquire() => permit.ok(),
                },
            };
            let connected = connect::connect(self.addr, connect_timeout).await;
            drop(permit);
            return connected;
        }
    }

    /// Gives back a connection whose exchange ended cleanly: to the longest-waiting request,
    /// or to the idle list.
    pub fn put(&self, mut sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut state = self.lock();
        while let Some(waiter) = state.waiters.pop_front() {
            match waiter.send(sender) {
                Ok(()) => return,
                Err(back) => sender = back,
            }
        }
        while state
            .idle
            .front()
            .is_some_and(|i| now.saturating_duration_since(i.since) > IDLE_TIMEOUT)
        {
            state.idle.pop_front();
        }
        if state.idle.len() >= MAX_IDLE {
            state.idle.pop_front();
        }
        state.idle.push_back(Idle { sender, since: now });
    }

    /// Idle connections now.
    #[cfg(test)]
    pub fn idle(&self) -> usize {
        self.lock().idle.len()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change is one push or pop; a panicking holder cannot leave it half-done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The most recently returned idle connection that can take a request now. Closed ones are
/// dropped; ones still finishing their last exchange stay for later.
fn take_ready(idle: &mut VecDeque<Idle>) -> Option<Sender> {
    let mut i = idle.len();
    while i > 0 {
        i -= 1;
        if idle[i].sender.is_closed() {
            idle.remove(i);
        } else if idle[i].sender.is_ready() {
            return idle.remove(i).map(|i| i.sender);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Context;

    #[tokio::test]
    async fn connects_take_turns_and_a_returned_connection_goes_to_a_waiter() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let pool = Pool::new(listener.local_addr().expect("address"));
        // Every turn taken: a connect waits until one is given back.
        let turns = pool
            .connecting
            .acquire_many(MAX_CONNECTING as u32)
            .await
            .expect("open gate");
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut first = std::pin::pin!(pool.get(Duration::from_secs(5)));
        assert!(first.as_mut().poll(&mut cx).is_pending());
        let mut second = std::pin::pin!(pool.get(Duration::from_secs(5)));
        assert!(second.as_mut().poll(&mut cx).is_pending());
        assert_eq!(pool.lock().waiters.len(), 2);
        // A connection given back goes to the first waiter, not to the idle list.
        let spare = connect::connect(pool.addr, Duration::from_secs(5))
            .await
            .expect("connected");
        pool.put(spare);
        assert_eq!(pool.idle(), 0);
        first.await.expect("handed over");
        // The second connects once a turn is free.
        drop(turns);
        let sender = second.await.expect("connected once a turn is free");
        pool.put(sender);
        assert_eq!(pool.idle(), 1);
    }
}
