//! `activator.containerConcurrency`: at most that many requests in flight to one replica
//! (0: no limit). When every ready replica is at its limit, a request waits in the deployment's
//! parking queue (counted as parked, bounded by `queueCapacity`, cut off at `queueTimeout`)
//! rather than overload a replica, and the autoscaler sees the waiting demand.
//!
//! The limit is taken by the balancer when it picks (a compare-and-swap on the replica's
//! in-flight count); this module is the waiting. Waiters queue in arrival order on a
//! [`Notify`]: each request that ends on a limited deployment wakes one waiter, a change of the
//! endpoint set wakes them all, and while anyone waits a new request queues behind them rather
//! than take the slot that was freed for them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use lull_core::EndpointSet;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::balance::{Pick, ReplicaGuard};
use crate::parking::{self, ParkingQueue};

/// Where one deployment's requests wait for a replica below its limit.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    waiting: AtomicUsize,
    freed: Notify,
}

/// How a wait for capacity ended.
#[derive(Debug)]
pub(crate) enum Waited {
    /// A replica took the request.
    Ready(ReplicaGuard),
    /// The endpoint set emptied meanwhile: the request waits for a cold start instead.
    Empty,
}

impl Gate {
    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// A request on the deployment ended and freed its replica's slot.
    pub fn freed(&self) {
        if self.waiting() > 0 {
            self.freed.notify_one();
        }
    }

    /// Waits, parked in `parking`, until `pick` finds a replica below its limit, the endpoint
    /// set empties, or `deadline` passes.
    pub async fn wait(
        &self,
        parking: &Arc<ParkingQueue>,
        endpoints: &watch::Receiver<EndpointSet>,
        deadline: Instant,
        mut pick: impl FnMut() -> Pick,
    ) -> parking::Result<Waited> {
        let since = Instant::now();
        let _parked = parking.admit()?;
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Leave(&self.waiting);
        let mut endpoints = endpoints.clone();
        endpoints.borrow_and_update();
        // A backend that dropped its sender changes nothing more; then only freed slots and
        // the deadline end the wait.
        let mut live = true;
        loop {
            let freed = self.freed.notified();
            let mut freed = std::pin::pin!(freed);
            // Registered before looking, so a slot freed between the look and the wait is not
            // missed.
            freed.as_mut().enable();
            match pick() {
                Pick::Ready(guard) => return Ok(Waited::Ready(guard)),
                Pick::Empty => return Ok(Waited::Empty),
                Pick::Busy => {}
            }
            tokio::select! {
                () = &mut freed => {}
                changed = endpoints.changed(), if live => live = changed.is_ok(),
                () = tokio::time::sleep_until(deadline) => {
                    return Err(parking.timeout(since.elapsed()));
                }
            }
        }
    }
}

struct Leave<'a>(&'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
