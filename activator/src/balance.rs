//! Choosing a ready replica, and counting what each replica has in flight.
//!
//! Every request picks one endpoint of the deployment's current [`EndpointSet`] in turn (round
//! robin) and holds a [`ReplicaGuard`] until its response is done. The counters outlive the
//! replica's membership of the set: a backend drains a replica by taking it out of the set and
//! then waiting, through [`Replicas::in_flight`], for the requests it still serves.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use arc_swap::ArcSwap;
use lull_core::{EndpointSet, ReplicaId};
use tokio::sync::watch;

/// One replica's in-flight count.
#[derive(Debug, Default)]
struct Slot {
    in_flight: AtomicUsize,
}

/// The in-flight counts of every replica the activator sends to, by replica id (unique across
/// deployments). Entries live as long as a member set or a request holds them.
#[derive(Debug, Default)]
pub(crate) struct Replicas {
    slots: Mutex<HashMap<ReplicaId, Weak<Slot>>>,
}

impl Replicas {
    /// Requests in flight to `replica` now.
    pub fn in_flight(&self, replica: &ReplicaId) -> usize {
        self.lock()
            .get(replica)
            .and_then(Weak::upgrade)
            .map_or(0, |slot| slot.in_flight.load(Ordering::Acquire))
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ReplicaId, Weak<Slot>>> {
        // A map of weak pointers is consistent whatever a panicking holder left.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The endpoints a balancer last saw, with their counters in the same order.
#[derive(Debug, Default)]
struct Members {
    set: EndpointSet,
    slots: Box<[Arc<Slot>]>,
}

/// Round-robin choice over one deployment's ready endpoints.
#[derive(Debug)]
pub(crate) struct Balancer {
    replicas: Arc<Replicas>,
    next: AtomicUsize,
    members: ArcSwap<Members>,
}

impl Balancer {
    /// A balancer that counts in `replicas`.
    pub fn new(replicas: Arc<Replicas>) -> Self {
        Self {
            replicas,
            next: AtomicUsize::new(0),
            members: ArcSwap::default(),
        }
    }

    /// A ready endpoint, or `None` when the set is empty.
    pub fn pick(&self, endpoints: &watch::Receiver<EndpointSet>) -> Option<ReplicaGuard> {
        let set = endpoints.borrow();
        if set.is_empty() {
            return None;
        }
        let mut members = self.members.load_full();
        // Sets share their endpoint list until the backend publishes a new one, so this is
        // a pointer comparison on the hot path.
        if members.set != *set {
            members = self.rebuild(&set);
        }
        drop(set);
        let i = self.next.fetch_add(1, Ordering::Relaxed) % members.slots.len();
        let slot = members.slots[i].clone();
        slot.in_flight.fetch_add(1, Ordering::AcqRel);
        Some(ReplicaGuard {
            addr: members.set.endpoints()[i].addr,
            slot,
        })
    }

    fn rebuild(&self, set: &EndpointSet) -> Arc<Members> {
        let mut slots = self.replicas.lock();
        slots.retain(|_, slot| slot.strong_count() > 0);
        let members: Box<[Arc<Slot>]> = set
            .endpoints()
            .iter()
            .map(|endpoint| {
                if let Some(slot) = slots.get(&endpoint.replica).and_then(Weak::upgrade) {
                    return slot;
                }
                let slot = Arc::new(Slot::default());
                slots.insert(endpoint.replica.clone(), Arc::downgrade(&slot));
                slot
            })
            .collect();
        let members = Arc::new(Members {
            set: set.clone(),
            slots: members,
        });
        self.members.store(members.clone());
        members
    }
}

/// A request in flight to one replica; dropping it ends the request's count.
#[derive(Debug)]
pub(crate) struct ReplicaGuard {
    addr: SocketAddr,
    slot: Arc<Slot>,
}

impl ReplicaGuard {
    /// Where the replica listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ReplicaGuard {
    fn drop(&mut self) {
        self.slot.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lull_core::Endpoint;

    fn set(ids: &[(&str, u16)]) -> EndpointSet {
        EndpointSet::new(
            ids.iter()
                .map(|(id, port)| Endpoint {
                    replica: ReplicaId::new(id),
                    addr: SocketAddr::from(([127, 0, 0, 1], *port)),
                })
                .collect(),
        )
    }

    #[test]
    fn picks_in_turn_and_counts_per_replica() {
        let replicas = Arc::new(Replicas::default());
        let balancer = Balancer::new(replicas.clone());
        let (tx, rx) = watch::channel(EndpointSet::default());
        assert!(balancer.pick(&rx).is_none());

        tx.send_replace(set(&[("a-1", 1), ("a-2", 2)]));
        let guards: Vec<_> = (0..4).map(|_| balancer.pick(&rx).expect("ready")).collect();
        let ports: Vec<u16> = guards.iter().map(|g| g.addr().port()).collect();
        assert_eq!(ports, [1, 2, 1, 2]);
        assert_eq!(replicas.in_flight(&ReplicaId::new("a-1")), 2);

        // a-1 leaves the set: its requests still count until they finish.
        tx.send_replace(set(&[("a-2", 2)]));
        let third = balancer.pick(&rx).expect("ready");
        assert_eq!(third.addr().port(), 2);
        assert_eq!(replicas.in_flight(&ReplicaId::new("a-1")), 2);
        assert_eq!(replicas.in_flight(&ReplicaId::new("a-2")), 3);
        drop(guards);
        assert_eq!(replicas.in_flight(&ReplicaId::new("a-1")), 0);
        assert_eq!(replicas.in_flight(&ReplicaId::new("a-2")), 1);
        assert_eq!(replicas.in_flight(&ReplicaId::new("nope")), 0);
    }
}
