//! lull's default PromQL for each metric, and the label conventions it relies on.
//!
//! Each default query answers for every deployment at once: per pod, labelled with the pod's
//! namespace and the deployment's name (cpu, memory, GPU), or per deployment (request duration).
//! The source groups the answer by deployment, so a tick costs one query per metric in use, not
//! one per deployment.
//!
//! The conventions (docs/prometheus.md says the same):
//! - cAdvisor: `container_cpu_usage_seconds_total` and `container_memory_working_set_bytes`
//!   labelled `namespace`, `pod`, `container`.
//! - kube-state-metrics: `kube_pod_container_resource_requests` and
//!   `kube_pod_container_resource_limits` (`resource="cpu"|"memory"`), and `kube_pod_labels` with
//!   the pod label `app.kubernetes.io/name` exported as [`NAME_LABEL`]: lull labels every pod with
//!   its deployment's slug, and this is how a pod is tied to its deployment.
//! - DCGM exporter: `DCGM_FI_DEV_GPU_UTIL`, `DCGM_FI_DEV_FB_USED` and `DCGM_FI_DEV_FB_FREE`
//!   labelled with the `namespace` and `pod` that use the GPU.
//! - lull's activators: [`REQUEST_DURATION`], a histogram labelled `deployment` (the slug).

use std::collections::BTreeSet;
use std::time::Duration;

use lull_core::{LatencySummary, ResourceMetric};

/// kube-state-metrics' name for the pod label `app.kubernetes.io/name` on `kube_pod_labels`.
pub const NAME_LABEL: &str = "label_app_kubernetes_io_name";

/// The label of the activators' series that names the deployment.
pub const DEPLOYMENT_LABEL: &str = "deployment";

/// The activators' request-duration histogram, as lull-activator exposes it on `/metrics`.
pub const REQUEST_DURATION: &str = "lull_activator_request_duration_seconds";

/// How pods are named, for `{{selector}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PodNaming {
    /// Pods of a Kubernetes Deployment: `<slug>-<replica set hash>-<suffix>`.
    #[default]
    Kubernetes,
    /// Replicas of `lull up`: `<slug>-<n>`.
    Embedded,
}

impl PodNaming {
    /// PromQL label matchers that select one deployment's pods. Neither `-` part of a pod name
    /// after the slug holds a `-`, so deployment `a` never matches the pods of `a-b`.
    pub fn selector(self, slug: &str, namespace: &str) -> String {
        let suffix = match self {
            PodNaming::Kubernetes => "-[a-z0-9]+-[a-z0-9]+",
            PodNaming::Embedded => "-[0-9]+",
        };
        format!(r#"namespace="{namespace}",pod=~"{slug}{suffix}""#)
    }
}

/// The deployments one default query asks about. Slugs and namespaces are DNS labels, so they
/// go into regular expressions as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Deployment slugs.
    pub slugs: BTreeSet<String>,
    /// Their namespaces.
    pub namespaces: BTreeSet<String>,
}

/// Whether a default query answers per pod (grouped by namespace and [`NAME_LABEL`]) or per
/// deployment (by [`DEPLOYMENT_LABEL`]).
pub fn per_pod(metric: ResourceMetric) -> bool {
    !matches!(metric, ResourceMetric::RequestDuration { .. })
}

/// lull's query for `metric` over every deployment of `scope`, with rates over `window`.
pub fn default_query(metric: ResourceMetric, scope: &Scope, window: Duration) -> String {
    let names = alternatives(&scope.slugs);
    let namespaces = alternatives(&scope.namespaces);
    let window = promql_duration(window);
    let ns = format!(r#"namespace=~"{namespaces}""#);
    let containers = format!(r#"container!="",container!="POD",{ns}"#);
    // Multiplying by `kube_pod_labels` (always 1) keeps lull's pods and labels each with its
    // deployment; `max by` folds duplicates from several kube-state-metrics replicas.
    let by_deployment = format!(
        r#" * on (namespace, pod) group_left ({NAME_LABEL}) max by (namespace, pod, {NAME_LABEL}) (kube_pod_labels{{{NAME_LABEL}=~"{names}",{ns}}})"#
    );
    let per_pod = |what: &str| format!("sum by (namespace, pod) ({what})");
    match metric {
        ResourceMetric::Cpu => format!(
            "100 * {} / {}{by_deployment}",
            per_pod(&format!(
                "rate(container_cpu_usage_seconds_total{{{containers}}}[{window}])"
            )),
            per_pod(&format!(
                r#"kube_pod_container_resource_requests{{resource="cpu",{ns}}}"#
            )),
        ),
        ResourceMetric::Memory => format!(
            "100 * {} / ({} or {}){by_deployment}",
            per_pod(&format!(
                "container_memory_working_set_bytes{{{containers}}}"
            )),
            per_pod(&format!(
                r#"kube_pod_container_resource_limits{{resource="memory",{ns}}}"#
            )),
            per_pod(&format!(
                r#"kube_pod_container_resource_requests{{resource="memory",{ns}}}"#
            )),
        ),
        ResourceMetric::Gpu => format!(
            r#"avg by (namespace, pod) (DCGM_FI_DEV_GPU_UTIL{{pod!="",{ns}}}){by_deployment}"#
        ),
        ResourceMetric::GpuMemory => {
            let used = per_pod(&format!(r#"DCGM_FI_DEV_FB_USED{{pod!="",{ns}}}"#));
            let free = per_pod(&format!(r#"DCGM_FI_DEV_FB_FREE{{pod!="",{ns}}}"#));
            format!("100 * {used} / ({used} + {free}){by_deployment}")
        }
        ResourceMetric::RequestDuration { summary } => {
            let rate = |suffix: &str| {
                format!(
                    r#"rate({REQUEST_DURATION}_{suffix}{{{DEPLOYMENT_LABEL}=~"{names}"}}[{window}])"#
                )
            };
            let quantile = match summary {
                LatencySummary::Average => {
                    return format!(
                        "sum by ({DEPLOYMENT_LABEL}) ({}) / sum by ({DEPLOYMENT_LABEL}) ({})",
                        rate("sum"),
                        rate("count")
                    );
                }
                // The upper bound of the highest bucket that holds a request.
                LatencySummary::Max => "1",
                LatencySummary::P50 => "0.5",
                LatencySummary::P95 => "0.95",
                LatencySummary::P99 => "0.99",
            };
            format!(
                "histogram_quantile({quantile}, sum by ({DEPLOYMENT_LABEL}, le) ({}))",
                rate("bucket")
            )
        }
    }
}

/// `a|b|c`, for a `=~` matcher.
fn alternatives(values: &BTreeSet<String>) -> String {
    let mut out = String::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push('|');
        }
        out.push_str(v);
    }
    out
}

/// A duration as PromQL writes it: `1m`, `30s`, `1500ms`.
pub fn promql_duration(d: Duration) -> String {
    let ms = d.as_millis().max(1);
    if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Template;

    fn scope() -> Scope {
        Scope {
            slugs: ["a".to_owned(), "b-c".to_owned()].into(),
            namespaces: ["default".to_owned(), "ml".to_owned()].into(),
        }
    }

    #[test]
    fn default_queries_name_every_deployment_once_and_parse() {
        let metrics = [
            ResourceMetric::Cpu,
            ResourceMetric::Memory,
            ResourceMetric::Gpu,
            ResourceMetric::GpuMemory,
            ResourceMetric::RequestDuration {
                summary: LatencySummary::Average,
            },
            ResourceMetric::RequestDuration {
                summary: LatencySummary::P95,
            },
        ];
        for metric in metrics {
            let q = default_query(metric, &scope(), Duration::from_secs(60));
            Template::parse(&q).expect("lull's own query is balanced");
            assert!(q.contains(r#"=~"a|b-c""#), "{q}");
        }
        let p95 = default_query(
            ResourceMetric::RequestDuration {
                summary: LatencySummary::P95,
            },
            &scope(),
            Duration::from_secs(5),
        );
        assert_eq!(
            p95,
            r#"histogram_quantile(0.95, sum by (deployment, le) (rate(lull_activator_request_duration_seconds_bucket{deployment=~"a|b-c"}[5s])))"#
        );
    }

    #[test]
    fn selectors_tell_apart_deployments_that_share_a_prefix() {
        assert_eq!(
            PodNaming::Kubernetes.selector("a", "ml"),
            r#"namespace="ml",pod=~"a-[a-z0-9]+-[a-z0-9]+""#
        );
        assert_eq!(
            PodNaming::Embedded.selector("a", "default"),
            r#"namespace="default",pod=~"a-[0-9]+""#
        );
    }

    #[test]
    fn durations_are_written_in_the_largest_whole_unit() {
        assert_eq!(promql_duration(Duration::from_secs(120)), "2m");
        assert_eq!(promql_duration(Duration::from_secs(5)), "5s");
        assert_eq!(promql_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(promql_duration(Duration::ZERO), "1ms");
    }
}
