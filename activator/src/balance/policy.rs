//! The load-balancing policies of `loadBalancing.policy`, each a scan over the member list
//! that also takes the chosen replica's concurrency slot.
//!
//! A replica is a candidate in three rounds, the first that has any candidate deciding: healthy
//! and not yet tried by this request; then not yet tried, ejected or not (when every replica is
//! ejected, trying one beats refusing the request: the ejection may be stale); then any. Within
//! a round, a candidate at its concurrency limit is skipped; if every candidate is, the request
//! waits for one rather than fall to a later round.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use lull_spec::LoadBalancingPolicy;

use super::{Choice, Replica, tried};

/// How a deployment spreads requests over its ready replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Policy {
    /// Each replica in turn.
    #[default]
    RoundRobin,
    /// The replica with the fewest requests in flight.
    LeastConnections,
    /// The same client address to the same replica (rendezvous hashing, so a change of
    /// replicas moves only the clients of the replicas that came or went).
    IpHash,
    /// The less busy of two replicas picked at random.
    PowerOfTwoChoices,
}

impl From<LoadBalancingPolicy> for Policy {
    fn from(policy: LoadBalancingPolicy) -> Self {
        match policy {
            LoadBalancingPolicy::RoundRobin => Policy::RoundRobin,
            LoadBalancingPolicy::LeastConnections => Policy::LeastConnections,
            LoadBalancingPolicy::IpHash => Policy::IpHash,
            LoadBalancingPolicy::PowerOfTwoChoices => Policy::PowerOfTwoChoices,
        }
    }
}

/// The index of the replica that took the request, or `None` when every candidate is at its
/// limit.
pub(super) fn choose(
    replicas: &[Arc<Replica>],
    choice: &Choice<'_>,
    next: &AtomicUsize,
) -> Option<usize> {
    for round in 0..3 {
        let candidate = |r: &Arc<Replica>| match round {
            0 => r.health.available() && !tried(choice, r),
            1 => !tried(choice, r),
            _ => true,
        };
        if replicas.iter().any(candidate) {
            return by_policy(replicas, choice, next, candidate);
        }
    }
    None
}

fn by_policy(
    replicas: &[Arc<Replica>],
    choice: &Choice<'_>,
    next: &AtomicUsize,
    candidate: impl Fn(&Arc<Replica>) -> bool,
) -> Option<usize> {
    let n = replicas.len();
    let limit = choice.limit;
    let first = match choice.policy {
        Policy::RoundRobin => next.fetch_add(1, Ordering::Relaxed) % n,
        Policy::LeastConnections => {
            // Ties go round robin, so equal replicas share the load.
            let start = next.fetch_add(1, Ordering::Relaxed) % n;
            (0..n)
                .map(|k| (start + k) % n)
                .filter(|&i| candidate(&replicas[i]))
                .min_by_key(|&i| replicas[i].in_flight())
                .unwrap_or(start)
        }
        Policy::IpHash => {
            let client = ip_hash(choice.client);
            (0..n)
                .filter(|&i| candidate(&replicas[i]))
                .max_by_key(|&i| mix(client ^ replicas[i].token))
                .unwrap_or(0)
        }
        Policy::PowerOfTwoChoices if n > 1 => {
            let a = rand::random_range(0..n);
            let mut b = rand::random_range(0..n - 1);
            if b >= a {
                b += 1;
            }
            let (a_ok, b_ok) = (candidate(&replicas[a]), candidate(&replicas[b]));
            match (a_ok, b_ok) {
                (true, true) if replicas[b].in_flight() < replicas[a].in_flight() => b,
                (false, true) => b,
                _ => a,
            }
        }
        Policy::PowerOfTwoChoices => 0,
    };
    // The policy's choice first; if it cannot take the request (ineligible, or it reached its
    // limit meanwhile), the next one that can.
    (0..n)
        .map(|k| (first + k) % n)
        .find(|&i| candidate(&replicas[i]) && replicas[i].try_acquire(limit))
}

/// A client address as 64 bits; IPv4-mapped IPv6 addresses hash as their IPv4 address.
fn ip_hash(ip: IpAddr) -> u64 {
    let bits = match ip {
        IpAddr::V4(v4) => u128::from(v4.to_bits()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(v4.to_bits()),
            None => v6.to_bits(),
        },
    };
    mix((bits >> 64) as u64 ^ mix(bits as u64))
}

/// splitmix64's finaliser: every input bit moves every output bit.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::super::tests::set;
    use super::super::{Balancer, Pick, ReplicaGuard};
    use super::*;
    use std::collections::BTreeMap;
    use tokio::sync::watch;

    fn pick(
        balancer: &Balancer,
        rx: &watch::Receiver<lull_core::EndpointSet>,
        c: &Choice<'_>,
    ) -> ReplicaGuard {
        match balancer.pick(rx, c, None) {
            Pick::Ready(guard) => guard,
            other => panic!("no replica: {other:?}"),
        }
    }

    fn choice(policy: Policy, client: IpAddr) -> Choice<'static> {
        Choice {
            policy,
            limit: 0,
            client,
            affinity: None,
            tried: &[],
        }
    }

    #[test]
    fn least_connections_goes_to_the_idlest_replica() {
        let balancer = Balancer::new(Arc::default());
        let (_tx, rx) = watch::channel(set(&[("a", 1), ("b", 2), ("c", 3)]));
        let lc = choice(Policy::LeastConnections, IpAddr::from([10, 0, 0, 1]));
        // Three held requests spread one each.
        let held: Vec<_> = (0..3).map(|_| pick(&balancer, &rx, &lc)).collect();
        let mut ports: Vec<u16> = held.iter().map(|g| g.replica().addr().port()).collect();
        ports.sort_unstable();
        assert_eq!(ports, [1, 2, 3]);
        // Two more go to two different replicas; the sixth to the one left with one.
        let x = pick(&balancer, &rx, &lc);
        let y = pick(&balancer, &rx, &lc);
        let (x, y) = (x.replica().addr().port(), y.replica().addr().port());
        assert_ne!(x, y);
        let z = pick(&balancer, &rx, &lc).replica().addr().port();
        assert!(z != x && z != y, "{x} {y} {z}");
    }

    #[test]
    fn ip_hash_keeps_a_client_and_moves_few_when_a_replica_goes() {
        let balancer = Balancer::new(Arc::default());
        let (tx, rx) = watch::channel(set(&[("a", 1), ("b", 2), ("c", 3), ("d", 4)]));
        let clients: Vec<IpAddr> = (0..400u32)
            .map(|i| IpAddr::from(std::net::Ipv4Addr::from_bits((10 << 24) | i)))
            .collect();
        let placed: Vec<u16> = clients
            .iter()
            .map(|&ip| {
                pick(&balancer, &rx, &choice(Policy::IpHash, ip))
                    .replica()
                    .addr()
                    .port()
            })
            .collect();
        for (&ip, &port) in clients.iter().zip(&placed) {
            let again = pick(&balancer, &rx, &choice(Policy::IpHash, ip));
            assert_eq!(again.replica().addr().port(), port);
        }
        let mut per: BTreeMap<u16, usize> = BTreeMap::new();
        for port in &placed {
            *per.entry(*port).or_default() += 1;
        }
        assert_eq!(per.len(), 4, "{per:?}");
        assert!(per.values().all(|&n| n > 50), "{per:?}");
        // d goes: only its clients move.
        tx.send_replace(set(&[("a", 1), ("b", 2), ("c", 3)]));
        for (&ip, &port) in clients.iter().zip(&placed) {
            let now = pick(&balancer, &rx, &choice(Policy::IpHash, ip))
                .replica()
                .addr()
                .port();
            if port != 4 {
                assert_eq!(now, port);
            }
        }
    }

    #[test]
    fn power_of_two_choices_avoids_the_busiest_replica() {
        let balancer = Balancer::new(Arc::default());
        let (_tx, rx) = watch::channel(set(&[("a", 1), ("b", 2), ("c", 3)]));
        let p2c = choice(Policy::PowerOfTwoChoices, IpAddr::from([10, 0, 0, 1]));
        // Load one replica (picked round robin): of any two p2c picks, it is the busier.
        let rr = choice(Policy::RoundRobin, IpAddr::from([10, 0, 0, 1]));
        let mut held = Vec::new();
        while held.len() < 10 {
            let g = pick(&balancer, &rx, &rr);
            if g.replica().addr().port() == 1 {
                held.push(g);
            }
        }
        for _ in 0..200 {
            let g = pick(&balancer, &rx, &p2c);
            assert_ne!(g.replica().addr().port(), 1);
        }
    }
}
