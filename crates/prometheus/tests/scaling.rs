//! The real autoscaler loop on samples from a real Prometheus: up and down on every metric, and
//! no scale-down while Prometheus is gone.

mod support;

use std::sync::Arc;
use std::time::Duration;

use lull_autoscaler::{Autoscaler, AutoscalerConfig, wake_channel};
use lull_core::DeploymentKey;
use lull_prometheus::PrometheusSource;
use support::{
    Fixture, Load, NoTraffic, Prometheus, RecordingBackend, autoscaled, config, metrics_text,
    prometheus_binary, wait_for,
};
use tokio_util::sync::CancellationToken;

const TICK: Duration = Duration::from_millis(200);

/// The autoscaler loop over `backend` and `source`, running until the token is cancelled.
fn run_autoscaler(
    backend: Arc<RecordingBackend>,
    source: &PrometheusSource,
    deployments: &[lull_spec::Deployment],
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let (_waker, wakes) = wake_channel();
    let autoscaler = Autoscaler::new(
        backend,
        Arc::new(NoTraffic),
        Some(Arc::new(source.clone())),
        wakes,
        AutoscalerConfig { tick: TICK },
    );
    autoscaler.apply(deployments);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(autoscaler.run(shutdown.clone()));
    (shutdown, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_up_and_down_on_cpu_memory_request_duration_and_gpu() {
    let Some(binary) = prometheus_binary() else {
        return;
    };
    let cases = [
        ("cpu", "{ metric: cpu, value: 50 }"),
        ("memory", "{ metric: memory, value: 50 }"),
        (
            "duration-average",
            "{ metric: requestDuration, summary: average, value: 1 }",
        ),
        (
            "duration-p95",
            "{ metric: requestDuration, summary: p95, value: 1 }",
        ),
        ("gpu", "{ metric: gpu, value: 50 }"),
        ("gpu-memory", "{ metric: gpuMemory, value: 50 }"),
    ];
    let fixture = Fixture::start().await;
    for (slug, _) in cases {
        fixture.add(slug, "default", 2, Load::low());
    }
    let prometheus = Prometheus::start(binary, fixture.addr()).await;
    let source = PrometheusSource::new(config(prometheus.url())).expect("a source");
    let deployments: Vec<_> = cases
        .iter()
        .map(|(slug, metric)| autoscaled(slug, 4, metric))
        .collect();
    source
        .apply(&deployments)
        .expect("no query overrides to reject");
    let backend = RecordingBackend::with(&cases.map(|(slug, _)| (slug, 1)));
    let (shutdown, task) = run_autoscaler(backend.clone(), &source, &deployments);

    for (slug, _) in cases {
        fixture.set_load(slug, Load::high());
    }
    for (slug, _) in cases {
        wait_for(&format!("{slug} to scale up to 4"), || async {
            backend.desired(slug) == 4
        })
        .await;
    }
    for (slug, _) in cases {
        let status = source
            .status(&DeploymentKey::new(slug))
            .expect("measured deployment");
        assert!(
            status
                .iter()
                .all(|m| m.last_error.is_none() && m.value.is_some()),
            "{slug}: {status:?}"
        );
    }

    for (slug, _) in cases {
        fixture.set_load(slug, Load::low());
    }
    for (slug, _) in cases {
        wait_for(&format!("{slug} to scale down to 1"), || async {
            backend.desired(slug) == 1
        })
        .await;
    }
    shutdown.cancel();
    task.await.expect("the loop ends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_scale_down_while_prometheus_is_gone_and_scaling_resumes_when_it_is_back() {
    let Some(binary) = prometheus_binary() else {
        return;
    };
    let fixture = Fixture::start().await;
    fixture.add("model", "default", 2, Load::high());
    let mut prometheus = Prometheus::start(binary, fixture.addr()).await;
    let source = PrometheusSource::new(config(prometheus.url())).expect("a source");
    let deployments = [autoscaled("model", 4, "{ metric: cpu, value: 50 }")];
    source
        .apply(&deployments)
        .expect("no query overrides to reject");
    let backend = RecordingBackend::with(&[("model", 1)]);
    let (shutdown, task) = run_autoscaler(backend.clone(), &source, &deployments);
    wait_for("scale-up to 4", || async { backend.desired("model") == 4 }).await;

    prometheus.kill().await;
    fixture.set_load("model", Load::low());
    let key = DeploymentKey::new("model");
    let unreachable = || {
        source.status(&key).is_some_and(|s| {
            s.iter().any(|m| {
                m.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains(&prometheus.url()))
            })
        })
    };
    wait_for("the status to say Prometheus is unreachable", || async {
        unreachable()
    })
    .await;
    // Fifteen ticks without Prometheus: the load is low, but nothing may scale down.
    for _ in 0..15 {
        tokio::time::sleep(TICK).await;
        assert_eq!(backend.desired("model"), 4, "scaled down without samples");
    }
    assert!(unreachable(), "{:?}", source.status(&key));
    let text = metrics_text(&source);
    assert!(
        text.lines().any(|l| l.starts_with(
            r#"lull_metric_source_errors_total{metric="cpu",summary="average",reason="unreachable"}"#
        )),
        "{text}"
    );

    prometheus.restart().await;
    wait_for("scale-down to 1 once Prometheus is back", || async {
        backend.desired("model") == 1
    })
    .await;
    let status = source.status(&key).expect("measured deployment");
    assert!(status.iter().all(|m| m.last_error.is_none()), "{status:?}");
    shutdown.cancel();
    task.await.expect("the loop ends");
}
