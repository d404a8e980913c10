//! `lull up --prometheus`: query overrides are checked before anything starts, and the
//! deployment's status and `/metrics` say why Prometheus gave no samples.
//!
//! lull-prometheus' own tests scale with a real Prometheus; these check the wiring of the
//! embedded runtime, with a Prometheus address where nothing listens.

mod support;

use support::{Sandbox, bounded, fixture_spec, free_addr, get};

/// An autoscaled fixture deployment with a cpu target and a request-duration override.
fn spec(query: &str) -> String {
    fixture_spec(
        "model",
        &[],
        &format!(
            "resources:
  autoscaling:
    enabled: true
    minReplicas: 1
    maxReplicas: 2
    metrics:
      - {{ metric: cpu, value: 50 }}
      - {{ metric: requestDuration, summary: p95, value: 1, query: {query:?} }}
"
        ),
    )
}

#[test]
fn a_wrong_query_stops_lull_up_before_it_starts_naming_deployment_and_metric() {
    let sandbox = Sandbox::new();
    let file = sandbox.write_spec(
        "model.yaml",
        &spec("histogram_quantile(0.95, sum by (le) (rate(x_bucket{pod=\"{{pod}}\"}[1m])))"),
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lull"))
        .arg("--state-dir")
        .arg(sandbox.state())
        .arg("up")
        .arg(&file)
        .args(["--prometheus", "http://127.0.0.1:9"])
        .args(["--listen", &free_addr().to_string()])
        .args(["--admin", &free_addr().to_string()])
        .output()
        .expect("run lull up");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("deployment `model`, metric requestDuration p95: resources.autoscaling.metrics[1].query: unknown variable `{{pod}}`"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was started"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_prometheus_the_status_and_metrics_say_why() {
    bounded(async {
        let sandbox = Sandbox::new();
        sandbox.write_spec(
            "model.yaml",
            &spec("histogram_quantile(0.95, sum by (le) (rate(x_bucket{ {{selector}} }[1m])))"),
        );
        // Port 9 (discard) is closed on loopback: every query is refused.
        let mut lull = sandbox
            .up()
            .arg("--prometheus")
            .arg("http://127.0.0.1:9")
            .start()
            .await;
        let errors = lull
            .wait_for("model", "metric errors in the status", |d| {
                let metrics = d["metrics"].as_array()?;
                let all_failing = metrics.len() == 2
                    && metrics.iter().all(|m| {
                        m["lastError"]
                            .as_str()
                            .is_some_and(|e| e.contains("http://127.0.0.1:9"))
                    });
                all_failing.then(|| metrics.clone())
            })
            .await;
        assert_eq!(errors[1]["metric"], "requestDuration", "{errors:?}");
        assert_eq!(errors[1]["overridden"], true, "{errors:?}");
        let metrics = get(&lull.admin_url("/metrics")).await.expect("/metrics");
        assert!(
            metrics.body.contains(
                r#"lull_metric_source_errors_total{metric="cpu",summary="average",reason="unreachable"}"#
            ),
            "{}",
            metrics.body
        );
        // The activator's histogram is where the default request-duration query reads it.
        assert!(
            metrics
                .body
                .contains("# TYPE lull_activator_request_duration_seconds histogram"),
            "{}",
            metrics.body
        );
        lull.stop().await;
    })
    .await;
}
