//! Leader election with a `coordination.k8s.io/v1` Lease, so that of several autoscaler
//! replicas exactly one scales at a time.
//!
//! It follows client-go's leader election. Each candidate reads the Lease every
//! [`LeaseConfig::retry_period`]. The holder renews it; another candidate takes it over only
//! once the record has not changed for [`LeaseConfig::lease_duration`] *as measured on its own
//! clock* since it first saw that record, so clock skew between nodes does not matter. Writes
//! carry the `resourceVersion` that was read, so of two candidates racing for an expired Lease
//! only one write succeeds. A leader that cannot renew for [`LeaseConfig::renew_deadline`]
//! (shorter than the lease duration) stops leading before anyone else may start; one that
//! shuts down releases the Lease so a successor takes over at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Errors of one election round.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or could not be reached.
    #[error("cannot read or write Lease {namespace}/{name}")]
    Api {
        /// The Lease's namespace.
        namespace: String,
        /// The Lease's name.
        name: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which Lease, who is asking, and the timings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This candidate, unique among candidates: the pod name.
    pub identity: String,
    /// How long a record must stay unchanged before another candidate may take the Lease.
    /// Default 15 s.
    pub lease_duration: Duration,
    /// How long a leader keeps leading without a successful renewal. Default 10 s.
    pub renew_deadline: Duration,
    /// Time between attempts. Default 2 s.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// The default timings (client-go's: 15 s, 10 s, 2 s) for this Lease and identity.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            identity: identity.to_owned(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What a candidate last saw of the Lease, and when by its own clock.
#[derive(Debug, Clone)]
struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    at: Instant,
}

/// One candidate.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    observed: Option<Observed>,
}

impl std::fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElector")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl LeaderElector {
    /// A candidate for the Lease `config` names.
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    fn error(&self, source: kube::Error) -> Error {
        Error::Api {
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            source,
        }
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    /// One round: creates, renews or takes over the Lease if this candidate may. `Ok(true)`
    /// when it holds the Lease afterwards; `Ok(false)` when another candidate does, or won a
    /// race for it.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool> {
        let now = Instant::now();
        let Some(lease) = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.error(e))?
        else {
            return self.create().await;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|o| o.holder != spec.holder_identity || o.renew_time != spec.renew_time);
        if changed {
            self.observed = Some(Observed {
                holder: spec.holder_identity.clone(),
                renew_time: spec.renew_time.clone(),
                at: now,
            });
        }
        let mine = spec.holder_identity.as_deref() == Some(self.config.identity.as_str());
        let held = spec
            .holder_identity
            .as_deref()
            .is_some_and(|h| !h.is_empty());
        let lease_duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.config.lease_duration, Duration::from_secs);
        let seen_since = self.observed.as_ref().map_or(now, |o| o.at);
        if held && !mine && now.saturating_duration_since(seen_since) < lease_duration {
            return Ok(false);
        }
        let stamp = MicroTime(Timestamp::now());
        let transitions = spec.lease_transitions.unwrap_or(0);
        let renewed = LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.duration_seconds()),
            acquire_time: if mine {
                spec.acquire_time.clone()
            } else {
                Some(stamp.clone())
            },
            renew_time: Some(stamp),
            lease_transitions: Some(if mine {
                transitions
            } else {
                transitions.saturating_add(1)
            }),
            ..LeaseSpec::default()
        };
        let updated = Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                // The write succeeds only if nobody wrote since the read.
                resource_version: lease.metadata.resource_version.clone(),
                ..ObjectMeta::default()
            },
            spec: Some(renewed),
        };
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => {
                if !mine {
                    tracing::info!(lease = %self.config.name, identity = %self.config.identity, previous = ?spec.holder_identity, "took over the lease");
                }
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(self.error(e)),
        }
    }

    async fn create(&mut self) -> Result<bool> {
        let stamp = MicroTime(Timestamp::now());
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                lease_duration_seconds: Some(self.duration_seconds()),
                acquire_time: Some(stamp.clone()),
                renew_time: Some(stamp),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(_) => {
                tracing::info!(lease = %self.config.name, identity = %self.config.identity, "created and holds the lease");
                Ok(true)
            }
            // Another candidate created it first.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Gives the Lease up if this candidate holds it, so a successor need not wait for it to
    /// expire.
    pub async fn release(&mut self) -> Result<()> {
        let Some(lease) = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.error(e))?
        else {
            return Ok(());
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        let released = Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                resource_version: lease.metadata.resource_version.clone(),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: None,
                lease_duration_seconds: Some(1),
                acquire_time: spec.acquire_time,
                renew_time: Some(MicroTime(Timestamp::now())),
                lease_transitions: spec.lease_transitions,
                ..LeaseSpec::default()
            }),
        };
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &released)
            .await
        {
            Ok(_) | Err(kube::Error::Api(_)) => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Campaigns until `shutdown`, publishing whether this candidate leads on `leading`. A
    /// leader whose renewals fail for the renew deadline publishes `false` before any other
    /// candidate may take over. On shutdown a leader releases the Lease.
    pub async fn run(mut self, leading: watch::Sender<bool>, shutdown: CancellationToken) {
        let mut last_renewal: Option<Instant> = None;
        loop {
            let started = Instant::now();
            let result = tokio::select! {
                result = self.try_acquire_or_renew() => result,
                () = shutdown.cancelled() => break,
            };
            match result {
                Ok(true) => last_renewal = Some(started),
                Ok(false) => last_renewal = None,
                Err(error) => tracing::warn!(%error, "leader election round failed"),
            }
            let leads = last_renewal.is_some_and(|at| {
                Instant::now().saturating_duration_since(at) < self.config.renew_deadline
            });
            if !leads {
                last_renewal = None;
            }
            leading.send_if_modified(|current| {
                let changed = *current != leads;
                if changed {
                    tracing::info!(identity = %self.config.identity, leads, "leadership changed");
                }
                *current = leads;
                changed
            });
            tokio::select! {
                () = tokio::time::sleep(self.config.retry_period) => {}
                () = shutdown.cancelled() => break,
            }
        }
        leading.send_replace(false);
        if last_renewal.is_some()
            && let Err(error) = self.release().await
        {
            tracing::warn!(%error, "cannot release the lease; a successor waits for it to expire");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::testing::Mock;

    const PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/lull/leases/lull-autoscaler";

    fn config(identity: &str) -> LeaseConfig {
        LeaseConfig::new("lull", "lull-autoscaler", identity)
    }

    fn lease(holder: &str, renew: &str, version: &str, transitions: i32) -> Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": { "name": "lull-autoscaler", "namespace": "lull", "resourceVersion": version },
            "spec": { "holderIdentity": holder, "leaseDurationSeconds": 15,
                      "acquireTime": "2026-01-01T00:00:00.000000Z", "renewTime": renew,
                      "leaseTransitions": transitions }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_lease_is_created_and_held() {
        let (mock, client) = Mock::new();
        let mut elector = LeaderElector::new(client, config("pod-a"));
        let round = tokio::spawn(async move { elector.try_acquire_or_renew().await });
        mock.expect("GET", PATH).await.fail(404, "NotFound");
        let create = mock
            .expect(
                "POST",
                "/apis/coordination.k8s.io/v1/namespaces/lull/leases",
            )
            .await;
        assert_eq!(create.body["spec"]["holderIdentity"], "pod-a");
        assert_eq!(create.body["spec"]["leaseDurationSeconds"], 15);
        assert_eq!(create.body["spec"]["leaseTransitions"], 0);
        assert!(create.body["spec"]["renewTime"].is_string());
        let body = create.body.clone();
        create.respond(body);
        assert!(round.await.expect("no panic").expect("no error"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_holder_renews_with_the_version_it_read() {
        let (mock, client) = Mock::new();
        let mut elector = LeaderElector::new(client, config("pod-a"));
        let round = tokio::spawn(async move { elector.try_acquire_or_renew().await });
        mock.expect("GET", PATH).await.respond(lease(
            "pod-a",
            "2026-01-01T00:00:10.000000Z",
            "41",
            3,
        ));
        let put = mock.expect("PUT", PATH).await;
        assert_eq!(put.body["metadata"]["resourceVersion"], "41");
        assert_eq!(put.body["spec"]["holderIdentity"], "pod-a");
        assert_eq!(
            put.body["spec"]["leaseTransitions"], 3,
            "a renewal is no transition"
        );
        assert_eq!(
            put.body["spec"]["acquireTime"], "2026-01-01T00:00:00.000000Z",
            "a renewal keeps the acquire time"
        );
        assert_ne!(put.body["spec"]["renewTime"], "2026-01-01T00:00:10.000000Z");
        let body = put.body.clone();
        put.respond(body);
        assert!(round.await.expect("no panic").expect("no error"));
    }

    #[tokio::test(start_paused = true)]
    async fn another_live_holder_keeps_it_and_an_expired_one_loses_it() {
        let (mock, client) = Mock::new();
        let elector = std::sync::Arc::new(tokio::sync::Mutex::new(LeaderElector::new(
            client,
            config("pod-b"),
        )));
        let round = |elector: std::sync::Arc<tokio::sync::Mutex<LeaderElector>>| {
            tokio::spawn(async move { elector.lock().await.try_acquire_or_renew().await })
        };

        // pod-a holds it and has just been seen: no write at all.
        let first = round(elector.clone());
        mock.expect("GET", PATH).await.respond(lease(
            "pod-a",
            "2026-01-01T00:00:10.000000Z",
            "7",
            0,
        ));
        assert!(!first.await.expect("no panic").expect("no error"));
        mock.assert_idle().await;

        // pod-a renewed 10 s later: still alive, however old its timestamps look.
        tokio::time::advance(Duration::from_secs(10)).await;
        let second = round(elector.clone());
        mock.expect("GET", PATH).await.respond(lease(
            "pod-a",
            "2026-01-01T00:00:20.000000Z",
            "8",
            0,
        ));
        assert!(!second.await.expect("no panic").expect("no error"));

        // 14 s without a change is within the 15 s lease.
        tokio::time::advance(Duration::from_secs(14)).await;
        let third = round(elector.clone());
        mock.expect("GET", PATH).await.respond(lease(
            "pod-a",
            "2026-01-01T00:00:20.000000Z",
            "8",
            0,
        ));
        assert!(!third.await.expect("no panic").expect("no error"));

        // 15 s without a change: expired, and pod-b takes over with the version it read.
        tokio::time::advance(Duration::from_secs(1)).await;
        let fourth = round(elector.clone());
        mock.expect("GET", PATH).await.respond(lease(
            "pod-a",
            "2026-01-01T00:00:20.000000Z",
            "8",
            0,
        ));
        let put = mock.expect("PUT", PATH).await;
        assert_eq!(put.body["metadata"]["resourceVersion"], "8");
        assert_eq!(put.body["spec"]["holderIdentity"], "pod-b");
        assert_eq!(put.body["spec"]["leaseTransitions"], 1);
        let body = put.body.clone();
        put.respond(body);
        assert!(fourth.await.expect("no panic").expect("no error"));
    }

    #[tokio::test(start_paused = true)]
    async fn losing_the_race_for_an_expired_lease_is_not_leading() {
        let (mock, client) = Mock::new();
        let mut elector = LeaderElector::new(client, config("pod-b"));
        let round = tokio::spawn(async move { elector.try_acquire_or_renew().await });
        // Released by its holder: free at once.
        mock.expect("GET", PATH).await.respond(json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": { "name": "lull-autoscaler", "namespace": "lull", "resourceVersion": "9" },
            "spec": { "leaseDurationSeconds": 1 }
        }));
        mock.expect("PUT", PATH).await.fail(409, "Conflict");
        assert!(!round.await.expect("no panic").expect("no error"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_that_cannot_renew_steps_down_before_the_lease_expires() {
        let (mock, client) = Mock::new();
        let elector = LeaderElector::new(client, config("pod-a"));
        let (leading, mut watch_leading) = watch::channel(false);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(elector.run(leading, shutdown.clone()));

        mock.expect("GET", PATH).await.respond(lease(
            "pod-a",
            "2026-01-01T00:00:10.000000Z",
            "1",
            0,
        ));
        let put = mock.expect("PUT", PATH).await;
        let body = put.body.clone();
        put.respond(body);
        watch_leading.changed().await.expect("published");
        assert!(*watch_leading.borrow_and_update());
        let renewed_at = Instant::now();

        // Every later round fails; leadership ends within the renew deadline (10 s), before
        // a successor could take over (15 s after its last sight of a change).
        // Each request comes a retry period after the previous round's result was published.
        let led_for = loop {
            let get = mock.expect("GET", PATH).await;
            if !*watch_leading.borrow() {
                let retry = config("pod-a").retry_period;
                break Instant::now().saturating_duration_since(renewed_at) - retry;
            }
            get.fail(500, "InternalError");
        };
        assert!(
            led_for >= Duration::from_secs(10) && led_for < Duration::from_secs(15),
            "{led_for:?}"
        );

        shutdown.cancel();
        task.await.expect("no panic");
        assert!(!*watch_leading.borrow());
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_releases_the_lease_on_shutdown() {
        let (mock, client) = Mock::new();
        let elector = LeaderElector::new(client, config("pod-a"));
        let (leading, mut watch_leading) = watch::channel(false);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(elector.run(leading, shutdown.clone()));
        mock.expect("GET", PATH).await.fail(404, "NotFound");
        let create = mock
            .expect(
                "POST",
                "/apis/coordination.k8s.io/v1/namespaces/lull/leases",
            )
            .await;
        let body = create.body.clone();
        create.respond(body);
        watch_leading.changed().await.expect("published");
        assert!(*watch_leading.borrow_and_update());

        shutdown.cancel();
        mock.expect("GET", PATH).await.respond(lease(
            "pod-a",
            "2026-01-01T00:00:10.000000Z",
            "2",
            0,
        ));
        let put = mock.expect("PUT", PATH).await;
        assert_eq!(put.body["spec"]["holderIdentity"], Value::Null);
        assert_eq!(put.body["spec"]["leaseDurationSeconds"], 1);
        assert_eq!(put.body["metadata"]["resourceVersion"], "2");
        let body = put.body.clone();
        put.respond(body);
        task.await.expect("no panic");
        assert!(!*watch_leading.borrow());
    }
}
