//! One query per metric per tick whatever the number of deployments, and wrong `query:`
//! overrides named with their deployment and metric: at load time when the template is wrong, in
//! the status when Prometheus rejects it.

mod support;

use std::sync::Arc;
use std::time::Duration;

use lull_core::{DeploymentKey, MetricSource, ResourceMetric, ResourceSample};
use lull_prometheus::{PrometheusSource, check};
use support::{
    Fixture, Load, Prometheus, autoscaled, config, deployment, metrics_text, prometheus_binary,
    wait_for,
};

const METRICS: &str = "{ metric: cpu, value: 50 }
      - { metric: memory, value: 80 }
      - { metric: requestDuration, summary: p95, value: 2 }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_deployments_cost_one_query_per_metric_per_tick() {
    let Some(binary) = prometheus_binary() else {
        return;
    };
    let fixture = Fixture::start().await;
    let slugs: Vec<String> = (0..200).map(|i| format!("model-{i:03}")).collect();
    for (i, slug) in slugs.iter().enumerate() {
        let namespace = if i % 2 == 0 { "default" } else { "ml" };
        fixture.add(slug, namespace, 1, Load::low());
    }
    let prometheus = Prometheus::start(binary, fixture.addr()).await;
    let source = PrometheusSource::new(config(prometheus.url())).expect("a source");
    let deployments: Vec<_> = slugs
        .iter()
        .enumerate()
        .map(|(i, slug)| {
            let mut d = autoscaled(slug, 3, METRICS);
            if i % 2 == 1 {
                d.spec.kubernetes.namespace = Some("ml".to_owned());
            }
            d
        })
        .collect();
    source.apply(&deployments).expect("no overrides to reject");
    let keys: Vec<DeploymentKey> = slugs.iter().map(DeploymentKey::new).collect();

    // Once Prometheus holds a whole rate window, every deployment has all three metrics and
    // rates are no longer underestimated (the fixture's pods use 0.05 of a 0.5 core request).
    let cpu = |samples: &[ResourceSample]| {
        samples
            .iter()
            .find(|s| s.metric == ResourceMetric::Cpu)
            .map(|s| s.percent)
    };
    wait_for(
        "samples of every deployment over a whole window",
        || async {
            source.sample(&keys).await.is_ok_and(|samples| {
                samples.len() == keys.len()
                    && samples.values().all(|s| s.len() == 3)
                    && samples
                        .values()
                        .all(|s| cpu(s).is_some_and(|p| (p - 10.0).abs() < 1.0))
            })
        },
    )
    .await;

    let ticks = 5;
    let before = prometheus.queries_received().await;
    for _ in 0..ticks {
        let samples = source.sample(&keys).await.expect("samples");
        assert_eq!(samples.len(), 200);
    }
    let expected = before + ticks * 3;
    // Prometheus counts a request once it has answered it; wait for the last count to land.
    wait_for("Prometheus to count the queries", || async {
        prometheus.queries_received().await >= expected
    })
    .await;
    assert_eq!(prometheus.queries_received().await, expected);
    let text = metrics_text(&source);
    assert!(
        text.contains(r#"lull_metric_source_queries_total{metric="memory",summary="average"}"#),
        "{text}"
    );

    // An override names its one deployment, so it is one more query of its own.
    let mut overridden = deployments.clone();
    overridden[0] = autoscaled(
        &slugs[0],
        3,
        r#"{ metric: cpu, value: 50, query: "100 * sum(rate(container_cpu_usage_seconds_total{ {{selector}}, container=\"{{deployment}}\" }[5s])) / sum(kube_pod_container_resource_requests{ {{selector}}, resource=\"cpu\" })" }
      - { metric: memory, value: 80 }
      - { metric: requestDuration, summary: p95, value: 2 }"#,
    );
    source.apply(&overridden).expect("a valid override");
    let before = prometheus.queries_received().await;
    let samples = source.sample(&keys).await.expect("samples");
    wait_for("Prometheus to count the queries", || async {
        prometheus.queries_received().await > before + 3
    })
    .await;
    assert_eq!(prometheus.queries_received().await, before + 4);
    let first = &samples[&keys[0]];
    assert_eq!(first.len(), 3, "{first:?}");
    let overridden_cpu = cpu(first).expect("cpu from the override");
    assert!((overridden_cpu - 10.0).abs() < 1.0, "{first:?}");
}

#[test]
fn a_wrong_template_is_named_by_deployment_and_metric_at_load_time() {
    let bad = autoscaled(
        "sentiment",
        3,
        r#"{ metric: cpu, value: 50 }
      - { metric: requestDuration, summary: p95, value: 2, query: "histogram_quantile(0.95, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket{ {{pod}} }[1m]))" }
      - { metric: gpu, value: 50, query: "avg(DCGM_FI_DEV_GPU_UTIL{ {{selector}} }" }
      - { metric: concurrency, value: 4, query: "sum(up)" }"#,
    );
    let errors: Vec<String> = check(std::slice::from_ref(&bad))
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errors,
        [
            "test.yaml: deployment `sentiment`, metric requestDuration p95: resources.autoscaling.metrics[1].query: unknown variable `{{pod}}` at column 85; use {{deployment}}, {{namespace}} or {{selector}}",
            "test.yaml: deployment `sentiment`, metric gpu: resources.autoscaling.metrics[2].query: `(` at column 4 is not closed",
            "test.yaml: deployment `sentiment`, metric concurrency: resources.autoscaling.metrics[3].query: concurrency is measured by lull's activators, not queried from Prometheus; remove `query`",
        ]
    );
    // Applying them is refused whole, with the same errors.
    let source = PrometheusSource::new(config("http://127.0.0.1:9".to_owned())).expect("a source");
    let refused = source.apply(&[bad]).expect_err("wrong queries");
    assert_eq!(refused.to_string(), errors.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_prometheus_rejects_is_named_in_the_status() {
    let Some(binary) = prometheus_binary() else {
        return;
    };
    let fixture = Fixture::start().await;
    fixture.add("typo", "default", 1, Load::low());
    let prometheus = Prometheus::start(binary, fixture.addr()).await;
    let source = PrometheusSource::new(config(prometheus.url())).expect("a source");
    // Balanced, known variables: it passes the local check, but rate() needs a range vector.
    let typo = deployment(
        r#"name: typo
command: ["true"]
resources:
  autoscaling:
    enabled: true
    maxReplicas: 3
    metrics:
      - { metric: cpu, value: 50, query: "rate(container_cpu_usage_seconds_total{ {{selector}} })" }
"#,
    );
    source.apply(&[typo]).expect("passes the local check");
    let key = DeploymentKey::new("typo");
    let samples = source
        .sample(std::slice::from_ref(&key))
        .await
        .expect("a source answers even when its queries fail");
    assert!(samples.is_empty(), "{samples:?}");
    let status = source.status(&key).expect("measured deployment");
    let error = status[0].last_error.as_deref().expect("an error");
    assert!(
        error.contains("deployment `typo`")
            && error.contains("metric cpu")
            && error.contains("rejected")
            && error.contains("range vector"),
        "{error}"
    );
    assert!(status[0].overridden);
    assert!(
        metrics_text(&source).contains(
            r#"lull_metric_source_errors_total{metric="cpu",summary="average",reason="rejected"} 1"#
        ),
        "{}",
        metrics_text(&source)
    );
}

#[test]
fn the_default_request_duration_query_reads_the_activators_histogram() {
    use lull_activator::{Activator, ActivatorConfig, Route};
    let (waker, _wakes) = lull_autoscaler::wake_channel();
    let activator = Activator::new(
        ActivatorConfig {
            domain: None,
            drain_timeout: Duration::from_secs(1),
        },
        Arc::new(waker),
    );
    let (_endpoints, rx) = tokio::sync::watch::channel(lull_core::EndpointSet::default());
    activator.apply(vec![Route {
        deployment: autoscaled("sentiment", 3, "{ metric: cpu, value: 50 }"),
        endpoints: rx,
    }]);
    let mut registry = prometheus_client::registry::Registry::default();
    activator.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    // The default queries read `_bucket` by `le`, and `_sum` and `_count`, by `deployment`.
    let name = lull_prometheus::promql::REQUEST_DURATION;
    let has = |suffix: &str, labels: &[&str]| {
        text.lines().any(|l| {
            l.starts_with(&format!("{name}_{suffix}{{")) && labels.iter().all(|x| l.contains(x))
        })
    };
    let deployment = r#"deployment="sentiment""#;
    assert!(has("bucket", &[deployment, r#"le="+Inf""#]), "{text}");
    assert!(has("sum", &[deployment]), "{text}");
    assert!(has("count", &[deployment]), "{text}");
}
