//! The source's own metrics: queries sent, queries that failed and why, and the back-off each
//! query is in, labelled by the metric (and summary) they measure.

use lull_core::{LatencySummary, ResourceMetric};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why a query gave no samples, as the `reason` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Reason {
    /// No answer: connection refused, reset, DNS.
    Unreachable,
    /// No answer within the query timeout.
    Timeout,
    /// Prometheus answered with an error: a wrong query, an overloaded server.
    Rejected,
    /// An answer that is not an instant vector or scalar (a proxy's page, a range vector).
    Unusable,
    /// No series at all.
    Empty,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unreachable => "unreachable",
            Reason::Timeout => "timeout",
            Reason::Rejected => "rejected",
            Reason::Unusable => "unusable",
            Reason::Empty => "empty",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MetricLabels {
    metric: &'static str,
    summary: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    metric: &'static str,
    summary: &'static str,
    reason: &'static str,
}

/// The spec's names for a metric: `cpu`, `requestDuration` with `p95`.
pub(crate) fn names(metric: ResourceMetric) -> (&'static str, &'static str) {
    match metric {
        ResourceMetric::Cpu => ("cpu", "average"),
        ResourceMetric::Memory => ("memory", "average"),
        ResourceMetric::Gpu => ("gpu", "average"),
        ResourceMetric::GpuMemory => ("gpuMemory", "average"),
        ResourceMetric::RequestDuration { summary } => (
            "requestDuration",
            match summary {
                LatencySummary::Average => "average",
                LatencySummary::Max => "max",
                LatencySummary::P50 => "p50",
                LatencySummary::P95 => "p95",
                LatencySummary::P99 => "p99",
            },
        ),
    }
}

/// The source's counters and gauges.
#[derive(Debug, Default)]
pub(crate) struct SourceMetrics {
    queries: Family<MetricLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    backoff: Family<MetricLabels, Gauge>,
}

impl SourceMetrics {
    fn labels(metric: ResourceMetric) -> MetricLabels {
        let (metric, summary) = names(metric);
        MetricLabels { metric, summary }
    }

    pub fn queried(&self, metric: ResourceMetric) {
        self.queries.get_or_create(&Self::labels(metric)).inc();
    }

    pub fn failed(&self, metric: ResourceMetric, reason: Reason) {
        let (metric, summary) = names(metric);
        self.errors
            .get_or_create(&ErrorLabels {
                metric,
                summary,
                reason: reason.as_str(),
            })
            .inc();
    }

    /// Seconds the query of `metric` that waits longest waits now; 0 when none waits.
    pub fn set_backoff(&self, metric: ResourceMetric, seconds: f64) {
        // Whole milliseconds are plenty, and the gauge holds integers.
        let millis = (seconds * 1000.0).round() as i64;
        self.backoff
            .get_or_create(&Self::labels(metric))
            .set(millis);
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "lull_metric_source_queries",
            "Queries sent to Prometheus, by the metric they measure",
            self.queries.clone(),
        );
        registry.register(
            "lull_metric_source_errors",
            "Queries to Prometheus that gave no samples, by metric and reason (unreachable, timeout, rejected, unusable, empty)",
            self.errors.clone(),
        );
        registry.register(
            "lull_metric_source_backoff_milliseconds",
            "How long the failing query of a metric waits before it is sent again; 0 when it is not failing",
            self.backoff.clone(),
        );
    }
}
