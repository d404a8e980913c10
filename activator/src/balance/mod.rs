//! Choosing a ready replica, and counting what each replica has in flight.
//!
//! Every request picks one endpoint of the deployment's current [`EndpointSet`] by the
//! deployment's policy ([`policy`]), or the replica its affinity cookie names ([`sticky`]), and
//! holds a [`ReplicaGuard`] until its response is done. A replica is skipped while it is at the
//! deployment's `containerConcurrency` or ejected for failing connections ([`crate::health`]);
//! when every replica is at its limit the request waits ([`crate::concurrency`]). The counters
//! outlive the replica's membership of the set: a backend drains a replica by taking it out of
//! the set and then waiting, through [`Replicas::in_flight`], for the requests it still serves.
//!
//! Each replica is one [`Replica`], shared by every deployment that routes to it: its in-flight
//! count, its pooled connections and its health live there, found without a map lookup.

pub(crate) mod policy;
pub(crate) mod sticky;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use arc_swap::ArcSwap;
use lull_core::{EndpointSet, ReplicaId};
use tokio::sync::watch;

use crate::concurrency::Gate;
use crate::health::Health;
use crate::pool::Pool;
use crate::server::worker;

pub(crate) use policy::Policy;

/// One replica as the activator sends to it.
#[derive(Debug)]
pub(crate) struct Replica {
    id: ReplicaId,
    addr: SocketAddr,
    /// Its affinity cookie's value.
    token: u64,
    in_flight: AtomicUsize,
    /// Connections to it, one pool per worker thread (a connection is driven by the worker
    /// that opened it).
    pools: Box<[Pool]>,
    /// Whether it is ejected for failing connections.
    pub health: Health,
}

impl Replica {
    fn new(id: ReplicaId, addr: SocketAddr, workers: usize) -> Self {
        Self {
            token: sticky::token(&id),
            id,
            addr,
            in_flight: AtomicUsize::new(0),
            pools: (0..workers.max(1)).map(|_| Pool::new(addr)).collect(),
            health: Health::default(),
        }
    }

    /// The connections to it of the worker running this code.
    pub fn pool(&self) -> &Pool {
        &self.pools[worker::index() % self.pools.len()]
    }

    /// Which replica.
    pub fn id(&self) -> &ReplicaId {
        &self.id
    }

    /// Its affinity cookie's value.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests in flight to it now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Counts one more request unless that would take it past `limit` (0: no limit).
    fn try_acquire(&self, limit: usize) -> bool {
        if limit == 0 {
            self.in_flight.fetch_add(1, Ordering::AcqRel);
            return true;
        }
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }
}

/// The replicas every balancer sends to, by id (unique across deployments). Entries live as
/// long as a member set or a request holds them.
#[derive(Debug)]
pub(crate) struct Replicas {
    slots: Mutex<HashMap<ReplicaId, Weak<Replica>>>,
    /// Worker threads, each with its own connections to every replica.
    workers: usize,
}

impl Default for Replicas {
    fn default() -> Self {
        Self::new(1)
    }
}

impl Replicas {
    /// No replicas yet, for `workers` worker threads.
    pub fn new(workers: usize) -> Self {
        Self {
            slots: Mutex::default(),
            workers,
        }
    }

    /// Requests in flight to `replica` now.
    pub fn in_flight(&self, replica: &ReplicaId) -> usize {
        self.lock()
            .get(replica)
            .and_then(Weak::upgrade)
            .map_or(0, |r| r.in_flight())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ReplicaId, Weak<Replica>>> {
        // A map of weak pointers is consistent whatever a panicking holder left.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The endpoints a balancer last saw, with their replicas in the same order.
#[derive(Debug, Default)]
struct Members {
    set: EndpointSet,
    replicas: Box<[Arc<Replica>]>,
}

/// What one request asks of the balancer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Choice<'a> {
    /// The deployment's policy.
    pub policy: Policy,
    /// `containerConcurrency`; 0 is unlimited.
    pub limit: usize,
    /// The client, for `ipHash`.
    pub client: IpAddr,
    /// The replica the client's affinity cookie names, when sticky sessions are on.
    pub affinity: Option<u64>,
    /// Replicas this request already failed on; chosen again only when nothing else can take it.
    pub tried: &'a [Arc<Replica>],
}

/// The outcome of a pick.
#[derive(Debug)]
pub(crate) enum Pick {
    /// A replica took the request.
    Ready(ReplicaGuard),
    /// No replica is ready.
    Empty,
    /// Every replica is at its concurrency limit.
    Busy,
}

/// Replica choice over one deployment's ready endpoints.
#[derive(Debug)]
pub(crate) struct Balancer {
    replicas: Arc<Replicas>,
    next: AtomicUsize,
    members: ArcSwap<Members>,
}

impl Balancer {
    /// A balancer whose replicas are shared through `replicas`.
    pub fn new(replicas: Arc<Replicas>) -> Self {
        Self {
            replicas,
            next: AtomicUsize::new(0),
            members: ArcSwap::default(),
        }
    }

    /// A replica of the current set for `choice`; the guard counts the request against it
    /// and, when `gate` is given, tells the gate's waiters when the request ends.
    pub fn pick(
        &self,
        endpoints: &watch::Receiver<EndpointSet>,
        choice: &Choice<'_>,
        gate: Option<&Arc<Gate>>,
    ) -> Pick {
        // The set stays borrowed (read-locked) until the chosen replica's count is taken: a
        // backend that takes the replica out of the set (a write) and then waits for its
        // in-flight count to reach zero either sees this request counted, or published first
        // and this request sees the new set. So a replica chosen to stop gets no new request.
        let set = endpoints.borrow();
        if set.is_empty() {
            return Pick::Empty;
        }
        let members = self.members.load_full();
        // Sets share their endpoint list until the backend publishes a new one, so this is a
        // pointer comparison on the hot path.
        let members = if members.set == *set {
            members
        } else {
            self.rebuild(&set)
        };
        let replicas = &members.replicas[..];
        let found = choice
            .affinity
            .and_then(|token| sticky::find(replicas, token))
            .filter(|&i| {
                let r = &replicas[i];
                r.health.available() && !tried(choice, r) && r.try_acquire(choice.limit)
            })
            .or_else(|| policy::choose(replicas, choice, &self.next));
        drop(set);
        match found {
            Some(i) => Pick::Ready(ReplicaGuard {
                replica: replicas[i].clone(),
                gate: gate.cloned(),
            }),
            None => Pick::Busy,
        }
    }

    fn rebuild(&self, set: &EndpointSet) -> Arc<Members> {
        let mut slots = self.replicas.lock();
        slots.retain(|_, slot| slot.strong_count() > 0);
        let replicas: Box<[Arc<Replica>]> = set
            .endpoints()
            .iter()
            .map(|endpoint| {
                if let Some(replica) = slots.get(&endpoint.replica).and_then(Weak::upgrade)
                    && replica.addr == endpoint.addr
                {
                    return replica;
                }
                // New, or the same id at a new address (a restarted pod): a fresh replica,
                // while requests to the old address still count on the old one.
                let replica = Arc::new(Replica::new(
                    endpoint.replica.clone(),
                    endpoint.addr,
                    self.replicas.workers,
                ));
                slots.insert(endpoint.replica.clone(), Arc::downgrade(&replica));
                replica
            })
            .collect();
        let members = Arc::new(Members {
            set: set.clone(),
            replicas,
        });
        self.members.store(members.clone());
        members
    }
}

fn tried(choice: &Choice<'_>, replica: &Arc<Replica>) -> bool {
    choice.tried.iter().any(|t| Arc::ptr_eq(t, replica))
}

/// A request in flight to one replica; dropping it ends the request's count.
#[derive(Debug)]
pub(crate) struct ReplicaGuard {
    replica: Arc<Replica>,
    gate: Option<Arc<Gate>>,
}

impl ReplicaGuard {
    /// The replica.
    pub fn replica(&self) -> &Arc<Replica> {
        &self.replica
    }
}

impl Drop for ReplicaGuard {
    fn drop(&mut self) {
        self.replica.in_flight.fetch_sub(1, Ordering::AcqRel);
        if let Some(gate) = &self.gate {
            gate.freed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lull_core::Endpoint;

    pub(crate) fn set(ids: &[(&str, u16)]) -> EndpointSet {
        EndpointSet::new(
            ids.iter()
                .map(|(id, port)| Endpoint {
                    replica: ReplicaId::new(id),
                    addr: SocketAddr::from(([127, 0, 0, 1], *port)),
                })
                .collect(),
        )
    }

    fn choice(policy: Policy, limit: usize) -> Choice<'static> {
        Choice {
            policy,
            limit,
            client: IpAddr::from([10, 0, 0, 1]),
            affinity: None,
            tried: &[],
        }
    }

    fn port(pick: Pick) -> u16 {
        match pick {
            Pick::Ready(guard) => {
                let port = guard.replica().addr().port();
                std::mem::forget(guard);
                port
            }
            other => panic!("no replica: {other:?}"),
        }
    }

    #[test]
    fn picks_in_turn_and_counts_per_replica() {
        let replicas = Arc::new(Replicas::default());
        let balancer = Balancer::new(replicas.clone());
        let (tx, rx) = watch::channel(EndpointSet::default());
        let rr = choice(Policy::RoundRobin, 0);
        assert!(matches!(balancer.pick(&rx, &rr, None), Pick::Empty));

        tx.send_replace(set(&[("a-1", 1), ("a-2", 2)]));
        let guards: Vec<_> = (0..4)
            .map(|_| match balancer.pick(&rx, &rr, None) {
                Pick::Ready(g) => g,
                other => panic!("{other:?}"),
            })
            .collect();
        let ports: Vec<u16> = guards.iter().map(|g| g.replica().addr().port()).collect();
        assert_eq!(ports, [1, 2, 1, 2]);
        assert_eq!(replicas.in_flight(&ReplicaId::new("a-1")), 2);

        // a-1 leaves the set: its requests still count until they finish.
        tx.send_replace(set(&[("a-2", 2)]));
        let third = balancer.pick(&rx, &rr, None);
        assert_eq!(port(third), 2);
        assert_eq!(replicas.in_flight(&ReplicaId::new("a-1")), 2);
        assert_eq!(replicas.in_flight(&ReplicaId::new("a-2")), 3);
        drop(guards);
        assert_eq!(replicas.in_flight(&ReplicaId::new("a-1")), 0);
        assert_eq!(replicas.in_flight(&ReplicaId::new("a-2")), 1);
        assert_eq!(replicas.in_flight(&ReplicaId::new("nope")), 0);
    }

    #[test]
    fn a_replica_at_its_limit_is_skipped_and_all_busy_is_reported() {
        let balancer = Balancer::new(Arc::default());
        let (_tx, rx) = watch::channel(set(&[("a-1", 1), ("a-2", 2)]));
        let limited = choice(Policy::RoundRobin, 1);
        let first = balancer.pick(&rx, &limited, None);
        let second = balancer.pick(&rx, &limited, None);
        assert!(matches!(balancer.pick(&rx, &limited, None), Pick::Busy));
        drop(first);
        assert_eq!(port(balancer.pick(&rx, &limited, None)), 1);
        drop(second);
    }

    #[test]
    fn tried_replicas_are_avoided_while_others_can_take_the_request() {
        let balancer = Balancer::new(Arc::default());
        let (tx, rx) = watch::channel(set(&[("a-1", 1), ("a-2", 2)]));
        let Pick::Ready(first) = balancer.pick(&rx, &choice(Policy::RoundRobin, 0), None) else {
            panic!("ready");
        };
        let tried = [first.replica().clone()];
        for _ in 0..4 {
            let again = Choice {
                tried: &tried,
                ..choice(Policy::RoundRobin, 0)
            };
            assert_eq!(port(balancer.pick(&rx, &again, None)), 2);
        }
        // With only the tried one left, it is tried again.
        tx.send_replace(set(&[("a-1", 1)]));
        let again = Choice {
            tried: &tried,
            ..choice(Policy::RoundRobin, 0)
        };
        assert_eq!(port(balancer.pick(&rx, &again, None)), 1);
    }
}
