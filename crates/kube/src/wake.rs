//! The activator's wakes on Kubernetes: an HTTP call to the autoscaler, and when that fails,
//! the activator raises the count itself.
//!
//! A request waiting at zero must not depend on the autoscaler being up: during a leader
//! change, a restart or a network problem the activator would otherwise hold requests until
//! they time out. So [`HttpWake`] posts `POST <autoscaler>/v1/wake/<deployment>`, and if that
//! gets no 2xx answer it reads the Deployment's scale and, if it is still 0, sets it to the
//! deployment's `activationScale` through the scale subresource, logging that it did. The
//! autoscaler takes the count from there at its next tick.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::Client;
use lull_core::{DeploymentKey, Wake};

use crate::scale;

/// Path prefix of the autoscaler's wake endpoint; the deployment's name follows.
pub const WAKE_PATH: &str = "/v1/wake/";

/// Longest wait for the autoscaler to accept a wake.
const WAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// Errors of waking one deployment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The deployment is not one the activator routes.
    #[error("no deployment `{0}` to wake")]
    Unknown(DeploymentKey),
    /// Neither the autoscaler nor the scale subresource could be reached.
    #[error(
        "cannot wake `{key}`: the autoscaler did not answer ({autoscaler}) and scaling it failed"
    )]
    Failed {
        /// The deployment.
        key: DeploymentKey,
        /// Why the autoscaler call failed.
        autoscaler: String,
        /// Why scaling failed.
        #[source]
        source: scale::Error,
    },
}

/// How a wake went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The autoscaler accepted it.
    Delivered,
    /// The autoscaler could not be reached; the activator set the count to this itself.
    ScaledItself(u32),
    /// The autoscaler could not be reached, and the Deployment already asks for replicas.
    AlreadyScaling(u32),
}

/// Where a deployment is and how far to wake it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    namespace: String,
    activation_scale: u32,
}

struct Inner {
    autoscaler: String,
    kube: Client,
    http: HttpClient<HttpConnector, Empty<Bytes>>,
    targets: Mutex<BTreeMap<DeploymentKey, Target>>,
}

/// The activator's [`Wake`] on Kubernetes. Cheap to clone.
#[derive(Clone)]
pub struct HttpWake {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HttpWake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpWake")
            .field("autoscaler", &self.inner.autoscaler)
            .finish_non_exhaustive()
    }
}

impl HttpWake {
    /// Wakes through the autoscaler at `autoscaler` (such as `http://lull-autoscaler:9091`),
    /// falling back to the scale subresource through `kube`.
    pub fn new(autoscaler: &str, kube: Client) -> Self {
        Self {
            inner: Arc::new(Inner {
                autoscaler: autoscaler.trim_end_matches('/').to_owned(),
                kube,
                http: HttpClient::builder(TokioExecutor::new()).build_http(),
                targets: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// Makes these the deployments that can be woken.
    pub fn apply(&self, deployments: &[lull_spec::Deployment]) {
        let targets = deployments
            .iter()
            .map(|d| {
                let activation_scale = d
                    .spec
                    .resources
                    .autoscaling
                    .as_ref()
                    .map_or(1, |a| a.behavior.activation_scale.max(1));
                let target = Target {
                    namespace: d.spec.kubernetes.namespace.clone().unwrap_or_default(),
                    activation_scale,
                };
                (DeploymentKey::new(&d.slug), target)
            })
            .collect();
        *self
            .inner
            .targets
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = targets;
    }

    async fn call_autoscaler(&self, key: &DeploymentKey) -> Result<(), String> {
        let uri: http::Uri = format!("{}{WAKE_PATH}{key}", self.inner.autoscaler)
            .parse()
            .map_err(|e: http::uri::InvalidUri| e.to_string())?;
        let request = http::Request::post(uri)
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(WAKE_TIMEOUT, self.inner.http.request(request))
            .await
            .map_err(|_| "no answer within 2 s".to_owned())?
            .map_err(|e| e.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("it answered {}", response.status()))
        }
    }

    /// Wakes one deployment and says how.
    pub async fn wake_now(&self, key: &DeploymentKey) -> Result<Outcome, Error> {
        let target = self
            .inner
            .targets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
            .ok_or_else(|| Error::Unknown(key.clone()))?;
        let why = match self.call_autoscaler(key).await {
            Ok(()) => return Ok(Outcome::Delivered),
            Err(why) => why,
        };
        let failed = |source| Error::Failed {
            key: key.clone(),
            autoscaler: why.clone(),
            source,
        };
        let kube = self.inner.kube.clone();
        let current = scale::replicas(kube.clone(), &target.namespace, key.as_str())
            .await
            .map_err(failed)?;
        if current > 0 {
            return Ok(Outcome::AlreadyScaling(current));
        }
        scale::set_replicas(
            kube,
            &target.namespace,
            key.as_str(),
            target.activation_scale,
        )
        .await
        .map_err(failed)?;
        tracing::warn!(
            deployment = %key,
            namespace = %target.namespace,
            replicas = target.activation_scale,
            autoscaler = %self.inner.autoscaler,
            reason = %why,
            "the autoscaler could not be reached; the activator scaled the deployment to its activation scale itself"
        );
        Ok(Outcome::ScaledItself(target.activation_scale))
    }
}

impl Wake for HttpWake {
    fn wake(&self, key: &DeploymentKey) {
        let this = self.clone();
        let key = key.clone();
        tokio::spawn(async move {
            match this.wake_now(&key).await {
                Ok(outcome) => tracing::debug!(deployment = %key, ?outcome, "woken"),
                Err(error) => {
                    tracing::error!(%error, "a request waits for a deployment that cannot be woken")
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::testing::Mock;

    const SCALE: &str = "/apis/apps/v1/namespaces/ml/deployments/a/scale";

    fn deployment(activation_scale: u32) -> lull_spec::Deployment {
        let (mut deployments, _) = lull_spec::load_str(
            &format!(
                "name: a\nimage: app:1\nkubernetes: {{ namespace: ml }}\nresources:\n  autoscaling: {{ minReplicas: 0, maxReplicas: 4, behavior: {{ activationScale: {activation_scale} }} }}\n"
            ),
            "test.yaml",
        )
        .into_valid()
        .expect("valid");
        deployments.remove(0)
    }

    fn scale(replicas: u32) -> serde_json::Value {
        json!({ "apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": { "name": "a", "namespace": "ml" }, "spec": { "replicas": replicas } })
    }

    async fn closed_port() -> String {
        let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds")
            .local_addr()
            .expect("an address");
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_reachable_autoscaler_gets_the_wake() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accepts");
            let mut buf = [0u8; 1024];
            let n = stream.read(&mut buf).await.expect("reads");
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            stream
                .write_all(
                    b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await
                .expect("writes");
            head
        });
        let (mock, client) = Mock::new();
        let wake = HttpWake::new(&url, client);
        wake.apply(&[deployment(2)]);
        assert_eq!(
            wake.wake_now(&"a".into()).await.expect("woken"),
            Outcome::Delivered
        );
        let head = server.await.expect("no panic");
        assert!(head.starts_with("POST /v1/wake/a HTTP/1.1"), "{head}");
        mock.assert_idle().await;
    }

    #[tokio::test]
    async fn without_the_autoscaler_the_activator_scales_to_the_activation_scale() {
        let (mock, client) = Mock::new();
        let wake = HttpWake::new(&closed_port().await, client);
        wake.apply(&[deployment(2)]);
        let task = tokio::spawn({
            let wake = wake.clone();
            async move { wake.wake_now(&"a".into()).await }
        });
        mock.expect("GET", SCALE).await.respond(scale(0));
        let patch = mock.expect("PATCH", SCALE).await;
        assert!(
            patch.query.contains("fieldManager=lull-scale"),
            "{}",
            patch.query
        );
        assert_eq!(patch.body, json!({ "spec": { "replicas": 2 } }));
        patch.respond(scale(2));
        assert_eq!(
            task.await.expect("no panic").expect("woken"),
            Outcome::ScaledItself(2)
        );
    }

    #[tokio::test]
    async fn a_deployment_already_scaling_is_left_alone() {
        let (mock, client) = Mock::new();
        let wake = HttpWake::new(&closed_port().await, client);
        wake.apply(&[deployment(1)]);
        let task = tokio::spawn({
            let wake = wake.clone();
            async move { wake.wake_now(&"a".into()).await }
        });
        mock.expect("GET", SCALE).await.respond(scale(3));
        assert_eq!(
            task.await.expect("no panic").expect("woken"),
            Outcome::AlreadyScaling(3)
        );
        mock.assert_idle().await;
        assert!(matches!(
            wake.wake_now(&"unknown".into()).await,
            Err(Error::Unknown(_))
        ));
    }
}
