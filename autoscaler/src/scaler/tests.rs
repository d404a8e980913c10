use std::sync::atomic::{AtomicUsize, Ordering};

use lull_core::{BackendStatus, BoxFuture, EndpointSet, ResourceMetric, TrafficSnapshot, Wake};
use tokio::sync::watch;

use super::*;
use crate::wake::{ChannelWaker, wake_channel};

/// A backend whose replicas are ready the moment they are asked for.
#[derive(Default)]
struct FakeBackend {
    desired: Mutex<BTreeMap<DeploymentKey, u32>>,
    calls: Mutex<Vec<(DeploymentKey, u32, Instant)>>,
}

impl FakeBackend {
    fn with(key: &str, desired: u32) -> Self {
        let backend = Self::default();
        backend
            .desired
            .lock()
            .expect("not poisoned")
            .insert(DeploymentKey::new(key), desired);
        backend
    }

    fn calls(&self) -> Vec<(DeploymentKey, u32, Instant)> {
        self.calls.lock().expect("not poisoned").clone()
    }

    fn counts(&self) -> Vec<u32> {
        self.calls().into_iter().map(|(_, n, _)| n).collect()
    }
}

impl Backend for FakeBackend {
    fn set_desired<'a>(
        &'a self,
        key: &'a DeploymentKey,
        replicas: u32,
    ) -> BoxFuture<'a, lull_core::Result<()>> {
        Box::pin(async move {
            self.desired
                .lock()
                .expect("not poisoned")
                .insert(key.clone(), replicas);
            self.calls
                .lock()
                .expect("not poisoned")
                .push((key.clone(), replicas, Instant::now()));
            Ok(())
        })
    }

    fn endpoints(&self, _: &DeploymentKey) -> Option<watch::Receiver<EndpointSet>> {
        None
    }

    fn status(&self, key: &DeploymentKey) -> Option<BackendStatus> {
        let desired = *self.desired.lock().expect("not poisoned").get(key)?;
        Some(BackendStatus {
            desired,
            ready: desired,
            ..BackendStatus::default()
        })
    }
}

/// Activators that see the same traffic every tick.
#[derive(Default)]
struct FakeTraffic {
    steady: Mutex<BTreeMap<DeploymentKey, TrafficSnapshot>>,
}

impl FakeTraffic {
    fn set(&self, key: &str, snapshot: TrafficSnapshot) {
        self.steady
            .lock()
            .expect("not poisoned")
            .insert(DeploymentKey::new(key), snapshot);
    }
}

impl TrafficSource for FakeTraffic {
    fn take_snapshot(&self, key: &DeploymentKey) -> Option<TrafficSnapshot> {
        Some(
            self.steady
                .lock()
                .expect("not poisoned")
                .get(key)
                .cloned()
                .unwrap_or_default(),
        )
    }
}

/// A metric source that answers with fixed cpu samples, or fails while `cpu` is `None`.
#[derive(Default)]
struct FakeMetrics {
    cpu: Mutex<Option<f64>>,
    calls: AtomicUsize,
    keys_asked: Mutex<BTreeSet<DeploymentKey>>,
}

impl MetricSource for FakeMetrics {
    fn sample<'a>(
        &'a self,
        keys: &'a [DeploymentKey],
    ) -> BoxFuture<'a, lull_core::Result<BTreeMap<DeploymentKey, Vec<ResourceSample>>>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.keys_asked
                .lock()
                .expect("not poisoned")
                .extend(keys.iter().cloned());
            let Some(percent) = *self.cpu.lock().expect("not poisoned") else {
                return Err(lull_core::Error::Unavailable {
                    what: "querying cpu".to_owned(),
                    message: "connection refused".to_owned(),
                    source: None,
                });
            };
            Ok(keys
                .iter()
                .map(|k| {
                    // Every ready replica reports: no more than 5 run in these tests.
                    let sample = ResourceSample {
                        metric: ResourceMetric::Cpu,
                        percent,
                        replicas: 5,
                    };
                    (k.clone(), vec![sample])
                })
                .collect())
        })
    }
}

fn deployment(yaml: &str) -> lull_spec::Deployment {
    let (mut deployments, _) = lull_spec::load_str(yaml, "test.yaml")
        .into_valid()
        .expect("the test spec is valid");
    deployments.remove(0)
}

struct Harness {
    backend: Arc<FakeBackend>,
    traffic: Arc<FakeTraffic>,
    metrics: Arc<FakeMetrics>,
    waker: ChannelWaker,
    scaler: Arc<Autoscaler>,
    shutdown: CancellationToken,
}

impl Harness {
    fn start(backend: FakeBackend, tick: Duration, deployments: &[lull_spec::Deployment]) -> Self {
        let backend = Arc::new(backend);
        let traffic = Arc::new(FakeTraffic::default());
        let metrics = Arc::new(FakeMetrics::default());
        let (waker, wakes) = wake_channel();
        let scaler = Autoscaler::new(
            backend.clone(),
            traffic.clone(),
            Some(metrics.clone()),
            wakes,
            AutoscalerConfig { tick },
        );
        scaler.apply(deployments);
        let shutdown = CancellationToken::new();
        tokio::spawn(scaler.clone().run(shutdown.clone()));
        Self {
            backend,
            traffic,
            metrics,
            waker,
            scaler,
            shutdown,
        }
    }

    /// Waits (in paused time) until `done`, failing after `limit` of virtual time.
    async fn wait_for(&self, limit: Duration, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(self) {
            assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

const COLD: &str = "
name: cold
command: [serve]
resources:
  autoscaling: { minReplicas: 0, maxReplicas: 3, scaleToZeroAfter: 5m }
";

#[tokio::test(start_paused = true)]
async fn a_wake_at_zero_asks_for_the_activation_scale_before_the_next_tick() {
    let tick = Duration::from_secs(10);
    let h = Harness::start(FakeBackend::default(), tick, &[deployment(COLD)]);
    // Let the first tick pass: at zero without requests nothing changes.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(h.backend.calls().is_empty());

    let woken_at = Instant::now();
    h.waker.wake(&DeploymentKey::new("cold"));
    h.wait_for(tick, "a replica asked for", |h| {
        !h.backend.calls().is_empty()
    })
    .await;
    let calls = h.backend.calls();
    assert_eq!(calls.len(), 1);
    let (key, desired, at) = &calls[0];
    assert_eq!((key.as_str(), *desired), ("cold", 1));
    assert!(
        *at - woken_at < tick,
        "asked for after {:?}",
        *at - woken_at
    );
    let status = h.scaler.status(key).expect("managed");
    assert_eq!(status.desired, 1);
    assert!(!status.wake_pending);
    let decision = status.last_decision.expect("decided");
    assert_eq!(
        decision.reason.to_string(),
        "woken by a request at zero → 1 (activation scale)"
    );
    assert_eq!(decision.mode, crate::engine::Mode::Activating);
}

#[tokio::test(start_paused = true)]
async fn load_above_target_raises_desired_up_to_max_and_never_past_it() {
    let busy = deployment(
        "
name: busy
command: [serve]
resources:
  autoscaling:
    minReplicas: 1
    maxReplicas: 4
    metrics: [{ metric: concurrency, value: 1 }]
",
    );
    let h = Harness::start(FakeBackend::default(), Duration::from_secs(1), &[busy]);
    h.traffic.set(
        "busy",
        TrafficSnapshot {
            in_flight: 10,
            arrived: 10,
            concurrency_seconds: 10.0,
            ..TrafficSnapshot::default()
        },
    );
    h.wait_for(Duration::from_secs(10), "scaled to max", |h| {
        h.backend.counts().last() == Some(&4)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let counts = h.backend.counts();
    assert!(counts.iter().all(|&n| n <= 4), "{counts:?}");
    assert_eq!(counts.last(), Some(&4), "{counts:?}");
    let status = h
        .scaler
        .status(&DeploymentKey::new("busy"))
        .expect("managed");
    let reason = status.last_decision.expect("decided").reason.to_string();
    assert!(reason.ends_with("capped at maxReplicas 4"), "{reason}");
}

#[tokio::test(start_paused = true)]
async fn an_idle_deployment_goes_to_zero_after_scale_to_zero_after() {
    let idle = deployment(
        "
name: idle
command: [serve]
resources:
  autoscaling: { minReplicas: 0, maxReplicas: 3, scaleToZeroAfter: 30s }
",
    );
    let tick = Duration::from_secs(1);
    let started = Instant::now();
    let h = Harness::start(FakeBackend::with("idle", 2), tick, &[idle]);
    h.wait_for(Duration::from_secs(40), "scaled to zero", |h| {
        h.backend.counts().contains(&0)
    })
    .await;
    let calls = h.backend.calls();
    assert_eq!(calls.len(), 1, "straight from 2 to 0: {calls:?}");
    let elapsed = calls[0].2 - started;
    assert!(
        elapsed >= Duration::from_secs(30) && elapsed <= Duration::from_secs(30) + 2 * tick,
        "{elapsed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_disabled_deployment_goes_to_zero_at_once_and_is_never_woken() {
    let enabled = deployment(
        "
name: off
command: [serve]
resources:
  autoscaling: { minReplicas: 2, maxReplicas: 3 }
",
    );
    let disabled = deployment(
        "
name: off
enabled: false
command: [serve]
resources:
  autoscaling: { minReplicas: 2, maxReplicas: 3 }
",
    );
    let tick = Duration::from_secs(10);
    let h = Harness::start(FakeBackend::default(), tick, &[enabled]);
    h.wait_for(tick, "min replicas", |h| h.backend.counts() == [2])
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let applied_at = Instant::now();
    h.scaler.apply(&[disabled]);
    h.wait_for(tick, "disabled", |h| h.backend.counts() == [2, 0])
        .await;
    assert!(Instant::now() - applied_at < tick);

    h.waker.wake(&DeploymentKey::new("off"));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(h.backend.counts(), [2, 0]);
    let status = h
        .scaler
        .status(&DeploymentKey::new("off"))
        .expect("managed");
    assert_eq!(status.mode, ScalingMode::Disabled);
    assert_eq!(status.desired, 0);
    assert!(!status.wake_pending);
}

#[tokio::test(start_paused = true)]
async fn metric_source_errors_never_scale_down() {
    let spec = |name: &str| {
        deployment(&format!(
            "
name: {name}
command: [serve]
resources:
  autoscaling:
    minReplicas: 1
    maxReplicas: 5
    metrics: [{{ metric: cpu, value: 50 }}]
"
        ))
    };
    let backend = FakeBackend::with("a", 4);
    backend
        .desired
        .lock()
        .expect("not poisoned")
        .insert(DeploymentKey::new("b"), 4);
    let h = Harness::start(backend, Duration::from_secs(1), &[spec("a"), spec("b")]);
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(h.backend.calls().is_empty(), "{:?}", h.backend.calls());
    // One call per tick for both deployments, not one per deployment.
    let calls = h.metrics.calls.load(Ordering::SeqCst);
    assert!((600..=601).contains(&calls), "{calls} sample calls");
    assert_eq!(
        *h.metrics.keys_asked.lock().expect("not poisoned"),
        BTreeSet::from([DeploymentKey::new("a"), DeploymentKey::new("b")])
    );

    let status = h.scaler.status(&DeploymentKey::new("a")).expect("managed");
    assert_eq!(
        status.resource_error.as_deref(),
        Some("querying cpu: connection refused")
    );
    let decision = status.last_decision.expect("decided");
    assert_eq!(
        decision.reason.to_string(),
        "cpu unavailable (the metric source failed), not scaling down → 4"
    );

    // With samples again, low cpu does scale down, after the stabilisation window.
    *h.metrics.cpu.lock().expect("not poisoned") = Some(10.0);
    h.wait_for(Duration::from_secs(400), "scaled down", |h| {
        h.scaler
            .status(&DeploymentKey::new("a"))
            .is_some_and(|s| s.desired == 1)
    })
    .await;
    let status = h.scaler.status(&DeploymentKey::new("a")).expect("managed");
    assert_eq!(status.resource_error, None);
}

#[tokio::test(start_paused = true)]
async fn fixed_counts_status_metrics_and_forgetting() {
    let fixed = deployment(
        "
name: fixed
command: [serve]
resources: { replicas: 2 }
",
    );
    let h = Harness::start(FakeBackend::default(), Duration::from_secs(10), &[fixed]);
    let mut registry = Registry::default();
    h.scaler.register_metrics(&mut registry);
    h.wait_for(Duration::from_secs(1), "fixed count", |h| {
        h.backend.counts() == [2]
    })
    .await;
    let key = DeploymentKey::new("fixed");
    let status = h.scaler.status(&key).expect("managed");
    assert_eq!(status.mode, ScalingMode::Fixed);
    assert_eq!(
        status.last_decision.expect("decided").reason.to_string(),
        "autoscaling off → resources.replicas 2"
    );
    // A wake never changes a fixed count.
    h.waker.wake(&key);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(h.backend.counts(), [2]);

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    assert!(
        text.contains("lull_desired_replicas{deployment=\"fixed\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("lull_scaling_decisions_total{deployment=\"fixed\",direction=\"up\"} 1"),
        "{text}"
    );

    h.scaler.apply(&[]);
    assert!(h.scaler.status(&key).is_none());
    assert!(h.scaler.deployments().is_empty());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    assert!(!text.contains("fixed"), "{text}");
}
