//! Ready endpoints from EndpointSlices.
//!
//! The activator sends requests to pod IPs directly, so it must know which pods may take a new
//! request: those whose endpoint in the Service's EndpointSlices is ready and not terminating.
//! A terminating pod gets no new request even while it still passes readiness (Knative #15211).
//! The port is the one named [`HTTP_PORT_NAME`], the name the rendered Service gives it.
//!
//! [`EndpointWatch`] watches the EndpointSlices of every Service lull manages (they carry the
//! Service's labels, so one label selector finds them all) and publishes one [`EndpointSet`] per
//! Service through a `tokio::sync::watch` channel that the activator's route reads.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::TryStreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use lull_core::{Endpoint, EndpointSet, ReplicaId};
use tokio::sync::watch;

use crate::render::HTTP_PORT_NAME;

/// Label the EndpointSlice controller sets to the name of the slice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The watch ended with an error that retrying did not cure.
    #[error("watching EndpointSlices failed")]
    Watch(#[from] watcher::Error),
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Label selector of the EndpointSlices of the Services lull manages: the EndpointSlice
/// controller copies a Service's labels to its slices.
pub const MANAGED_SLICES: &str = "app.kubernetes.io/managed-by=lull";

/// A Service: namespace and name.
pub type ServiceRef = (String, String);

/// The endpoints of one Service's slices that may take new requests, on the port named `port`.
pub fn endpoint_set<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    port: &str,
) -> EndpointSet {
    let mut endpoints = Vec::new();
    for slice in slices {
        // FQDN slices name hosts, not addresses a request can be sent to.
        if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
            continue;
        }
        let port = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(port))
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok());
        let Some(port) = port else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let conditions = endpoint.conditions.as_ref();
            // The API says an unset `ready` means ready and an unset `terminating` means not.
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            if !ready || terminating {
                continue;
            }
            // Every address of one endpoint reaches the same pod; the first is enough.
            let Some(ip) = endpoint
                .addresses
                .first()
                .and_then(|a| a.parse::<IpAddr>().ok())
            else {
                continue;
            };
            let replica = endpoint
                .target_ref
                .as_ref()
                .and_then(|r| r.name.clone())
                .unwrap_or_else(|| ip.to_string());
            endpoints.push(Endpoint {
                replica: ReplicaId::new(replica),
                addr: SocketAddr::new(ip, port),
            });
        }
    }
    EndpointSet::new(endpoints)
}

/// The Service an EndpointSlice belongs to.
fn service_of(slice: &EndpointSlice) -> Option<ServiceRef> {
    Some((
        slice.namespace()?,
        slice.labels().get(SERVICE_NAME_LABEL)?.clone(),
    ))
}

struct State {
    /// Name of the port requests go to.
    port: String,
    /// Slices by Service, then by slice name.
    slices: BTreeMap<ServiceRef, BTreeMap<String, EndpointSlice>>,
    /// Slices of a list in progress, swapped in whole when it completes.
    listing: Option<BTreeMap<ServiceRef, BTreeMap<String, EndpointSlice>>>,
    channels: BTreeMap<ServiceRef, watch::Sender<EndpointSet>>,
}

impl State {
    fn set(&self, service: &ServiceRef) -> EndpointSet {
        endpoint_set(
            self.slices
                .get(service)
                .into_iter()
                .flat_map(|s| s.values()),
            &self.port,
        )
    }

    fn publish(&self, service: &ServiceRef) {
        if let Some(sender) = self.channels.get(service) {
            let set = self.set(service);
            // Only a change wakes the activator's parked requests and balancer.
            sender.send_if_modified(|current| {
                let changed = *current != set;
                *current = set;
                changed
            });
        }
    }
}

/// The ready endpoints of a set of Services, kept current by [`EndpointWatch::run`].
#[derive(Clone)]
pub struct EndpointWatch {
    state: Arc<Mutex<State>>,
}

impl Default for EndpointWatch {
    /// Endpoints on the replicas' serving port, [`HTTP_PORT_NAME`].
    fn default() -> Self {
        Self::on_port(HTTP_PORT_NAME)
    }
}

impl std::fmt::Debug for EndpointWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointWatch")
            .field("services", &self.lock().slices.len())
            .finish()
    }
}

impl EndpointWatch {
    /// Endpoints on the port named `port`.
    pub fn on_port(port: &str) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                port: port.to_owned(),
                slices: BTreeMap::new(),
                listing: None,
                channels: BTreeMap::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change leaves the maps whole, so a poisoned lock still guards usable state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The ready endpoints of a Service, updated whenever they change. The first call for a
    /// Service starts its channel, with what is known of it now.
    pub fn subscribe(&self, namespace: &str, service: &str) -> watch::Receiver<EndpointSet> {
        let key = (namespace.to_owned(), service.to_owned());
        let mut state = self.lock();
        if let Some(sender) = state.channels.get(&key) {
            return sender.subscribe();
        }
        let set = state.set(&key);
        let (sender, receiver) = watch::channel(set);
        state.channels.insert(key, sender);
        receiver
    }

    /// Stops publishing for Services other than `keep`.
    pub fn retain(&self, keep: &std::collections::BTreeSet<ServiceRef>) {
        self.lock().channels.retain(|k, _| keep.contains(k));
    }

    /// How many endpoints of a Service may take requests now.
    pub fn ready(&self, namespace: &str, service: &str) -> usize {
        let key = (namespace.to_owned(), service.to_owned());
        self.lock().set(&key).len()
    }

    /// Takes one watch event into the state and publishes the Services it changed.
    pub fn apply(&self, event: Event<EndpointSlice>) {
        let mut state = self.lock();
        match event {
            Event::Init => state.listing = Some(BTreeMap::new()),
            Event::InitApply(slice) => {
                if let (Some(service), Some(listing)) = (service_of(&slice), state.listing.as_mut())
                {
                    listing
                        .entry(service)
                        .or_default()
                        .insert(slice.name_any(), slice);
                }
            }
            Event::InitDone => {
                let listed = state.listing.take().unwrap_or_default();
                let previous = std::mem::replace(&mut state.slices, listed);
                let touched: Vec<ServiceRef> = previous
                    .into_keys()
                    .chain(state.slices.keys().cloned())
                    .collect();
                for service in touched {
                    state.publish(&service);
                }
            }
            Event::Apply(slice) => {
                if let Some(service) = service_of(&slice) {
                    state
                        .slices
                        .entry(service.clone())
                        .or_default()
                        .insert(slice.name_any(), slice);
                    state.publish(&service);
                }
            }
            Event::Delete(slice) => {
                if let Some(service) = service_of(&slice) {
                    if let Some(slices) = state.slices.get_mut(&service) {
                        slices.remove(&slice.name_any());
                        if slices.is_empty() {
                            state.slices.remove(&service);
                        }
                    }
                    state.publish(&service);
                }
            }
        }
    }

    /// Watches the EndpointSlices that match `labels` in `namespace` (every namespace when
    /// `None`) until the stream fails for good; transient errors are retried with back-off.
    /// [`MANAGED_SLICES`] selects the slices of every Service lull manages.
    pub async fn run(self, client: Client, namespace: Option<&str>, labels: &str) -> Result<()> {
        let api: Api<EndpointSlice> = match namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        };
        let config = watcher::Config::default().labels(labels);
        watcher::watcher(api, config)
            .default_backoff()
            .try_for_each(|event| {
                self.apply(event);
                futures::future::ready(Ok(()))
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::api::discovery::v1::{
        Endpoint as SliceEndpoint, EndpointConditions, EndpointPort,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde_json::json;

    use super::*;
    use crate::render::{MANAGED_BY_LABEL, MANAGER};
    use crate::testing::{Mock, watch_event};

    fn endpoint(
        ip: &str,
        pod: &str,
        ready: Option<bool>,
        terminating: Option<bool>,
    ) -> SliceEndpoint {
        SliceEndpoint {
            addresses: vec![ip.to_owned()],
            conditions: Some(EndpointConditions {
                ready,
                serving: ready,
                terminating,
            }),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".to_owned()),
                name: Some(pod.to_owned()),
                ..ObjectReference::default()
            }),
            ..SliceEndpoint::default()
        }
    }

    fn slice(name: &str, service: &str, endpoints: Vec<SliceEndpoint>) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some("ml".to_owned()),
                labels: Some(
                    [
                        (SERVICE_NAME_LABEL.to_owned(), service.to_owned()),
                        (MANAGED_BY_LABEL.to_owned(), MANAGER.to_owned()),
                    ]
                    .into(),
                ),
                resource_version: Some("1".to_owned()),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".to_owned(),
            endpoints,
            ports: Some(vec![
                EndpointPort {
                    name: Some("metrics".to_owned()),
                    port: Some(9090),
                    ..EndpointPort::default()
                },
                EndpointPort {
                    name: Some(HTTP_PORT_NAME.to_owned()),
                    port: Some(8000),
                    ..EndpointPort::default()
                },
            ]),
        }
    }

    fn members(set: &EndpointSet) -> Vec<(String, String)> {
        set.endpoints()
            .iter()
            .map(|e| (e.replica.to_string(), e.addr.to_string()))
            .collect()
    }

    #[test]
    fn only_ready_endpoints_that_are_not_terminating_take_requests() {
        let slices = [
            slice(
                "a-1",
                "a",
                vec![
                    endpoint("10.0.0.1", "a-x", Some(true), Some(false)),
                    endpoint("10.0.0.2", "a-y", Some(false), Some(false)),
                    // Still passing readiness but being deleted: no new requests.
                    endpoint("10.0.0.3", "a-z", Some(true), Some(true)),
                ],
            ),
            slice("a-2", "a", vec![endpoint("10.0.0.4", "a-w", None, None)]),
        ];
        let set = endpoint_set(&slices, HTTP_PORT_NAME);
        assert_eq!(
            members(&set),
            [
                ("a-w".to_owned(), "10.0.0.4:8000".to_owned()),
                ("a-x".to_owned(), "10.0.0.1:8000".to_owned()),
            ]
        );
    }

    #[test]
    fn slices_without_an_http_port_or_with_hostnames_are_skipped() {
        let mut no_port = slice(
            "a-1",
            "a",
            vec![endpoint("10.0.0.1", "a-x", Some(true), None)],
        );
        no_port.ports = Some(Vec::new());
        let mut fqdn = slice(
            "a-2",
            "a",
            vec![endpoint("pod.example", "a-y", Some(true), None)],
        );
        fqdn.address_type = "FQDN".to_owned();
        assert!(endpoint_set(&[no_port, fqdn], HTTP_PORT_NAME).is_empty());
    }

    #[tokio::test]
    async fn the_watch_publishes_each_services_ready_set() {
        let (mock, client) = Mock::new();
        let watch = EndpointWatch::default();
        let mut a = watch.subscribe("ml", "a");
        let task = tokio::spawn(watch.clone().run(client, None, MANAGED_SLICES));

        let list = mock
            .expect("GET", "/apis/discovery.k8s.io/v1/endpointslices")
            .await;
        assert!(
            list.query
                .contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dlull"),
            "{}",
            list.query
        );
        list.respond(json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSliceList",
            "metadata": { "resourceVersion": "5" },
            "items": [slice("a-1", "a", vec![endpoint("10.0.0.1", "a-x", Some(true), Some(false))])],
        }));
        a.changed().await.expect("the list publishes");
        assert_eq!(members(&a.borrow_and_update()).len(), 1);

        let stream = mock
            .expect("GET", "/apis/discovery.k8s.io/v1/endpointslices")
            .await;
        assert!(stream.query.contains("watch=true"), "{}", stream.query);
        assert!(
            stream.query.contains("resourceVersion=5"),
            "{}",
            stream.query
        );
        let terminating = slice(
            "a-1",
            "a",
            vec![
                endpoint("10.0.0.1", "a-x", Some(false), Some(true)),
                endpoint("10.0.0.2", "a-y", Some(true), Some(false)),
            ],
        );
        let sender = stream.respond_stream();
        sender
            .send(watch_event("MODIFIED", &terminating))
            .await
            .expect("the watch reads");
        a.changed().await.expect("the change publishes");
        assert_eq!(
            members(&a.borrow_and_update()),
            [("a-y".to_owned(), "10.0.0.2:8000".to_owned())]
        );
        sender
            .send(watch_event("DELETED", &terminating))
            .await
            .expect("the watch reads");
        a.changed().await.expect("the deletion publishes");
        assert!(a.borrow().is_empty());
        assert_eq!(watch.ready("ml", "a"), 0);
        task.abort();
    }
}
