//! The cluster's LullDeployments as loaded lull deployments: what the activator routes and the
//! autoscaler scales on Kubernetes, as the spec files are for `lull up`.
//!
//! [`Catalog`] watches the resources and publishes the whole valid set whenever it changes. A
//! resource whose spec does not load is left out (the controller reports why in its status),
//! and so is one being deleted. Deployments are keyed by name across namespaces, because the
//! activator routes `/<name>/`: when two namespaces hold the same name, the older resource
//! keeps it and the newer is left out with a warning.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::TryStreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use lull_spec::Deployment;
use tokio::sync::watch;

use crate::crd::{self, LullDeployment};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The watch ended with an error that retrying did not cure.
    #[error("watching LullDeployments failed")]
    Watch(#[from] watcher::Error),
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

type Objects = BTreeMap<(String, String), LullDeployment>;

#[derive(Default)]
struct State {
    objects: Objects,
    listing: Option<Objects>,
}

/// The valid deployments of the cluster, kept current by [`Catalog::run`].
pub struct Catalog {
    state: Mutex<State>,
    sender: watch::Sender<Vec<Deployment>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("resources", &self.lock().objects.len())
            .finish()
    }
}

impl Catalog {
    /// An empty catalog, and the receiver of every new set it publishes.
    pub fn new() -> (Arc<Self>, watch::Receiver<Vec<Deployment>>) {
        let (sender, receiver) = watch::channel(Vec::new());
        (
            Arc::new(Self {
                state: Mutex::new(State::default()),
                sender,
            }),
            receiver,
        )
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Each change is one map operation; a poisoned lock still guards a whole map.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes one watch event in, and publishes the deployments if they changed.
    pub fn apply(&self, event: Event<LullDeployment>) {
        let id = |o: &LullDeployment| (o.namespace().unwrap_or_default(), o.name_any());
        let mut state = self.lock();
        match event {
            Event::Init => {
                state.listing = Some(Objects::new());
                return;
            }
            Event::InitApply(object) => {
                if let Some(listing) = state.listing.as_mut() {
                    listing.insert(id(&object), object);
                }
                return;
            }
            Event::InitDone => {
                state.objects = state.listing.take().unwrap_or_default();
            }
            Event::Apply(object) => {
                state.objects.insert(id(&object), object);
            }
            Event::Delete(object) => {
                state.objects.remove(&id(&object));
            }
        }
        let deployments = deployments(state.objects.values());
        drop(state);
        self.sender.send_if_modified(|current| {
            let changed = *current != deployments;
            *current = deployments;
            changed
        });
    }

    /// Watches the LullDeployments of `namespace` (every namespace when `None`) until the
    /// stream fails for good; transient errors are retried with back-off.
    pub async fn run(self: Arc<Self>, client: Client, namespace: Option<&str>) -> Result<()> {
        let api: Api<LullDeployment> = match namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        };
        watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .try_for_each(|event| {
                self.apply(event);
                futures::future::ready(Ok(()))
            })
            .await?;
        Ok(())
    }
}

/// The deployments of these resources that load, one per name, the oldest resource first.
fn deployments<'a>(objects: impl Iterator<Item = &'a LullDeployment>) -> Vec<Deployment> {
    let mut live: Vec<&LullDeployment> = objects
        .filter(|o| o.metadata.deletion_timestamp.is_none())
        .collect();
    live.sort_by_key(|o| {
        (
            o.metadata.creation_timestamp.clone().map(|t| t.0),
            o.namespace(),
            o.name_any(),
        )
    });
    let mut by_name: BTreeMap<String, Deployment> = BTreeMap::new();
    for object in live {
        let loaded = match crd::load(object) {
            Ok(loaded) => loaded,
            Err(_) => {
                tracing::debug!(resource = %object.name_any(), "left out: its spec does not load");
                continue;
            }
        };
        let slug = loaded.deployment.slug.clone();
        if let Some(kept) = by_name.get(&slug) {
            tracing::warn!(
                name = %slug,
                kept = ?kept.spec.kubernetes.namespace,
                ignored = ?object.namespace(),
                "two LullDeployments share a name; the older one is routed and scaled"
            );
            continue;
        }
        by_name.insert(slug, loaded.deployment);
    }
    by_name.into_values().collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::{Mock, watch_event};

    fn resource(
        namespace: &str,
        name: &str,
        created: &str,
        spec: serde_json::Value,
    ) -> serde_json::Value {
        json!({
            "apiVersion": "lull.dev/v1alpha1", "kind": "LullDeployment",
            "metadata": { "name": name, "namespace": namespace, "creationTimestamp": created,
                          "resourceVersion": "1" },
            "spec": spec,
        })
    }

    fn names(deployments: &[Deployment]) -> Vec<(String, Option<String>)> {
        deployments
            .iter()
            .map(|d| (d.slug.clone(), d.spec.kubernetes.namespace.clone()))
            .collect()
    }

    #[tokio::test]
    async fn valid_resources_are_published_one_per_name() {
        let (mock, client) = Mock::new();
        let (catalog, mut receiver) = Catalog::new();
        let task = tokio::spawn(catalog.clone().run(client, None));
        let list = mock
            .expect("GET", "/apis/lull.dev/v1alpha1/lulldeployments")
            .await;
        let valid = json!({ "name": "a", "image": "app:1" });
        list.respond(json!({
            "apiVersion": "lull.dev/v1alpha1", "kind": "LullDeploymentList",
            "metadata": { "resourceVersion": "10" },
            "items": [
                resource("team-b", "a", "2026-01-02T00:00:00Z", valid.clone()),
                resource("team-a", "a", "2026-01-01T00:00:00Z", valid.clone()),
                // No image: invalid on Kubernetes, left out.
                resource("team-a", "b", "2026-01-01T00:00:00Z", json!({ "name": "b" })),
                resource("team-a", "c", "2026-01-01T00:00:00Z", json!({ "name": "C", "image": "app:1" })),
            ],
        }));
        receiver.changed().await.expect("published");
        assert_eq!(
            names(&receiver.borrow_and_update()),
            [
                ("a".to_owned(), Some("team-a".to_owned())),
                ("c".to_owned(), Some("team-a".to_owned())),
            ]
        );

        let stream = mock
            .expect("GET", "/apis/lull.dev/v1alpha1/lulldeployments")
            .await;
        assert!(stream.query.contains("watch=true"), "{}", stream.query);
        let events = stream.respond_stream();
        let mut deleting = resource("team-a", "a", "2026-01-01T00:00:00Z", valid);
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-03T00:00:00Z");
        events
            .send(watch_event("MODIFIED", &deleting))
            .await
            .expect("the watch reads");
        receiver.changed().await.expect("published");
        // The team-b resource takes the name over once the older one goes.
        assert_eq!(
            names(&receiver.borrow_and_update()),
            [
                ("a".to_owned(), Some("team-b".to_owned())),
                ("c".to_owned(), Some("team-a".to_owned())),
            ]
        );
        task.abort();
    }
}
