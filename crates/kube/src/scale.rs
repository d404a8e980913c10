//! The Kubernetes [`Backend`]: replica counts go to each Deployment's scale subresource,
//! endpoints come from EndpointSlices, and counts are read back from a watch of the
//! Deployments lull manages.
//!
//! Every write of `spec.replicas` uses the field manager [`SCALE_FIELD_MANAGER`]: the
//! autoscaler's decisions, the controller's fixed and disabled counts, and the activator's
//! fallback wake. The controller's server-side apply never includes the count, so it never
//! undoes one of these.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use lull_core::{Backend, BackendStatus, BoxFuture, DeploymentKey, EndpointSet};
use serde_json::json;
use tokio::sync::watch;

use crate::crd::{LastDecision, LullDeployment};
use crate::endpoints::EndpointWatch;
use crate::render::{MANAGED_BY_LABEL, MANAGER};

/// Field manager of every write of a Deployment's replica count.
pub const SCALE_FIELD_MANAGER: &str = "lull-scale";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or could not be reached.
    #[error("Kubernetes API request failed")]
    Kube(#[from] kube::Error),
    /// The Deployment watch ended with an error that retrying did not cure.
    #[error("watching Deployments failed")]
    Watch(#[from] watcher::Error),
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Sets a Deployment's replica count through its scale subresource.
pub async fn set_replicas(
    client: Client,
    namespace: &str,
    name: &str,
    replicas: u32,
) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(client, namespace);
    api.patch_scale(
        name,
        &PatchParams {
            field_manager: Some(SCALE_FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        },
        &Patch::Merge(json!({ "spec": { "replicas": replicas } })),
    )
    .await?;
    Ok(())
}

/// A Deployment's replica count, read through its scale subresource.
pub async fn replicas(client: Client, namespace: &str, name: &str) -> Result<u32> {
    let api: Api<Deployment> = Api::namespaced(client, namespace);
    let scale = api.get_scale(name).await?;
    Ok(scale
        .spec
        .and_then(|s| s.replicas)
        .and_then(|r| u32::try_from(r).ok())
        .unwrap_or(0))
}

/// Writes the autoscaler's latest decision into a resource's status.
pub async fn record_decision(
    client: Client,
    namespace: &str,
    name: &str,
    decision: &LastDecision,
) -> Result<()> {
    let api: Api<LullDeployment> = Api::namespaced(client, namespace);
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": { "lastDecision": decision } })),
    )
    .await?;
    Ok(())
}

#[derive(Default)]
struct State {
    /// Namespace of each deployment scaled.
    namespaces: BTreeMap<DeploymentKey, String>,
    /// `spec.replicas` of each Deployment lull manages, by namespace and name.
    desired: BTreeMap<(String, String), u32>,
}

/// Scales Deployments for the autoscaler.
pub struct KubeBackend {
    client: Client,
    endpoints: EndpointWatch,
    state: Mutex<State>,
}

impl std::fmt::Debug for KubeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeBackend")
            .field("deployments", &self.lock().namespaces.len())
            .finish_non_exhaustive()
    }
}

impl KubeBackend {
    /// A backend whose endpoints come from `endpoints` (which its owner runs).
    pub fn new(client: Client, endpoints: EndpointWatch) -> Arc<Self> {
        Arc::new(Self {
            client,
            endpoints,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Each update is one map operation, so a poisoned lock still guards whole maps.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes these the deployments scaled, each in its spec's namespace (which
    /// [`crate::crd::load`] sets to the resource's).
    pub fn apply(&self, deployments: &[lull_spec::Deployment]) {
        let namespaces: BTreeMap<DeploymentKey, String> = deployments
            .iter()
            .map(|d| {
                let namespace = d.spec.kubernetes.namespace.clone().unwrap_or_default();
                (DeploymentKey::new(&d.slug), namespace)
            })
            .collect();
        let services = namespaces
            .iter()
            .map(|(k, ns)| (ns.clone(), k.to_string()))
            .collect();
        self.endpoints.retain(&services);
        self.lock().namespaces = namespaces;
    }

    fn namespace(&self, key: &DeploymentKey) -> Option<String> {
        self.lock().namespaces.get(key).cloned()
    }

    /// Takes one event of the Deployment watch into the known counts.
    pub fn observe(&self, event: Event<Deployment>) {
        let count = |d: &Deployment| {
            d.spec
                .as_ref()
                .and_then(|s| s.replicas)
                .and_then(|r| u32::try_from(r).ok())
                .unwrap_or(0)
        };
        let id = |d: &Deployment| (d.namespace().unwrap_or_default(), d.name_any());
        let mut state = self.lock();
        match event {
            Event::Init | Event::InitDone => {}
            Event::InitApply(d) | Event::Apply(d) => {
                state.desired.insert(id(&d), count(&d));
            }
            Event::Delete(d) => {
                state.desired.remove(&id(&d));
            }
        }
    }

    /// Watches the Deployments lull manages in `namespace` (all when `None`) so that
    /// [`Backend::status`] reports their counts, whoever set them.
    pub async fn run(self: Arc<Self>, namespace: Option<&str>) -> Result<()> {
        let api: Api<Deployment> = match namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let config = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGER}"));
        watcher::watcher(api, config)
            .default_backoff()
            .try_for_each(|event| {
                self.observe(event);
                futures::future::ready(Ok(()))
            })
            .await?;
        Ok(())
    }
}

impl Backend for KubeBackend {
    fn set_desired<'a>(
        &'a self,
        key: &'a DeploymentKey,
        replicas: u32,
    ) -> BoxFuture<'a, lull_core::Result<()>> {
        Box::pin(async move {
            let namespace = self
                .namespace(key)
                .ok_or_else(|| lull_core::Error::UnknownDeployment(key.clone()))?;
            set_replicas(self.client.clone(), &namespace, key.as_str(), replicas)
                .await
                .map_err(|e| lull_core::Error::Unavailable {
                    what: format!("scaling Deployment {namespace}/{key} to {replicas}"),
                    message: e.to_string(),
                    source: Some(Box::new(e)),
                })?;
            self.lock()
                .desired
                .insert((namespace, key.to_string()), replicas);
            Ok(())
        })
    }

    fn endpoints(&self, key: &DeploymentKey) -> Option<watch::Receiver<EndpointSet>> {
        let namespace = self.namespace(key)?;
        Some(self.endpoints.subscribe(&namespace, key.as_str()))
    }

    fn status(&self, key: &DeploymentKey) -> Option<BackendStatus> {
        let namespace = self.namespace(key)?;
        let desired = self
            .lock()
            .desired
            .get(&(namespace.clone(), key.to_string()))
            .copied()
            .unwrap_or(0);
        let ready = self.endpoints.ready(&namespace, key.as_str());
        Some(BackendStatus {
            desired,
            ready: u32::try_from(ready).unwrap_or(u32::MAX),
            ..BackendStatus::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::Mock;

    fn deployment(name: &str, replicas: i32) -> Deployment {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": name, "namespace": "ml" },
            "spec": { "replicas": replicas, "selector": {}, "template": {} }
        }))
        .expect("a Deployment")
    }

    fn spec(name: &str) -> lull_spec::Deployment {
        let mut spec = lull_spec::DeploymentSpec::named(name);
        spec.kubernetes.namespace = Some("ml".to_owned());
        lull_spec::Deployment {
            spec,
            slug: name.to_owned(),
            file: "test".to_owned(),
            at: lull_spec::node::Position { line: 1, column: 1 },
        }
    }

    #[tokio::test]
    async fn set_desired_patches_the_scale_subresource() {
        let (mock, client) = Mock::new();
        let backend = KubeBackend::new(client, EndpointWatch::default());
        backend.apply(&[spec("a")]);
        backend.observe(Event::Apply(deployment("a", 0)));
        assert_eq!(
            backend.status(&"a".into()).map(|s| (s.desired, s.ready)),
            Some((0, 0))
        );

        let task = {
            let backend = backend.clone();
            tokio::spawn(async move { backend.set_desired(&"a".into(), 3).await })
        };
        let call = mock
            .expect("PATCH", "/apis/apps/v1/namespaces/ml/deployments/a/scale")
            .await;
        assert!(
            call.query.contains("fieldManager=lull-scale"),
            "{}",
            call.query
        );
        assert_eq!(call.body, json!({ "spec": { "replicas": 3 } }));
        call.respond(json!({
            "apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": { "name": "a", "namespace": "ml" },
            "spec": { "replicas": 3 }, "status": { "replicas": 0 }
        }));
        task.await.expect("no panic").expect("scaled");
        assert_eq!(backend.status(&"a".into()).map(|s| s.desired), Some(3));
    }

    #[tokio::test]
    async fn unknown_deployments_and_refusals_are_errors() {
        let (mock, client) = Mock::new();
        let backend = KubeBackend::new(client, EndpointWatch::default());
        assert!(matches!(
            backend.set_desired(&"nope".into(), 1).await,
            Err(lull_core::Error::UnknownDeployment(_))
        ));
        assert!(backend.status(&"nope".into()).is_none());
        backend.apply(&[spec("a")]);
        let task = {
            let backend = backend.clone();
            tokio::spawn(async move { backend.set_desired(&"a".into(), 1).await })
        };
        mock.expect("PATCH", "/apis/apps/v1/namespaces/ml/deployments/a/scale")
            .await
            .fail(403, "Forbidden");
        assert!(matches!(
            task.await.expect("no panic"),
            Err(lull_core::Error::Unavailable { .. })
        ));
    }

    #[tokio::test]
    async fn decisions_are_recorded_in_the_status() {
        let (mock, client) = Mock::new();
        let decision = LastDecision {
            desired: 2,
            reason: "concurrency 18 / target 10 → 2".to_owned(),
            time: "2026-01-01T00:00:00Z".to_owned(),
        };
        let task = tokio::spawn(async move { record_decision(client, "ml", "a", &decision).await });
        let call = mock
            .expect(
                "PATCH",
                "/apis/lull.dev/v1alpha1/namespaces/ml/lulldeployments/a/status",
            )
            .await;
        assert_eq!(call.body["status"]["lastDecision"]["desired"], 2);
        assert_eq!(call.body["status"].as_object().map(|o| o.len()), Some(1));
        call.respond(json!({
            "apiVersion": "lull.dev/v1alpha1", "kind": "LullDeployment",
            "metadata": { "name": "a", "namespace": "ml" }, "spec": { "name": "a" }
        }));
        task.await.expect("no panic").expect("recorded");
    }
}
