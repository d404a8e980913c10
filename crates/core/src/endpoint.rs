//! Where ready replicas listen.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// Names one replica: `<slug>-<n>` for a child process, the pod name on Kubernetes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ReplicaId(Arc<str>);

impl ReplicaId {
    /// A replica id.
    pub fn new(id: impl AsRef<str>) -> Self {
        Self(Arc::from(id.as_ref()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// One ready replica's address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Endpoint {
    /// Which replica.
    pub replica: ReplicaId,
    /// Where it accepts requests.
    pub addr: SocketAddr,
}

/// The replicas of one deployment that may receive new requests, in a stable order.
///
/// A replica that is starting, failing its readiness check, draining or terminating is not in
/// the set, so the activator never sends it a new request. Cloning is cheap; the backend
/// publishes a new set whenever membership changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointSet {
    endpoints: Arc<[Endpoint]>,
}

impl EndpointSet {
    /// A set of these endpoints, sorted by replica id so that equal sets compare equal.
    pub fn new(mut endpoints: Vec<Endpoint>) -> Self {
        endpoints.sort_by(|a, b| a.replica.cmp(&b.replica));
        endpoints.dedup_by(|a, b| a.replica == b.replica);
        Self {
            endpoints: endpoints.into(),
        }
    }

    /// The endpoints.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// How many replicas are ready.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether no replica is ready.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Whether a replica is in the set.
    pub fn contains(&self, replica: &ReplicaId) -> bool {
        self.endpoints.iter().any(|e| &e.replica == replica)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(id: &str, port: u16) -> Endpoint {
        Endpoint {
            replica: ReplicaId::new(id),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    #[test]
    fn sets_with_the_same_members_are_equal_whatever_the_order() {
        let a = EndpointSet::new(vec![ep("x-1", 1), ep("x-2", 2)]);
        let b = EndpointSet::new(vec![ep("x-2", 2), ep("x-1", 1), ep("x-1", 1)]);
        assert_eq!(a, b);
        assert_eq!(a.len(), 2);
        assert!(a.contains(&ReplicaId::new("x-2")));
        assert!(EndpointSet::default().is_empty());
    }
}
