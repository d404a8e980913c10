//! lull's metric source over Prometheus.
//!
//! [`PrometheusSource`] implements lull-core's [`MetricSource`](lull_core::MetricSource): cpu and
//! memory from cAdvisor against the requests and limits kube-state-metrics exports, GPU
//! utilisation and memory from NVIDIA's DCGM exporter, and request duration from lull's own
//! activator histograms, merged across activators. One query per metric answers for every
//! deployment at each tick ([`promql`]); a spec's `query:` replaces lull's query for its
//! deployment ([`template`]), checked when the spec is loaded ([`check`]).
//!
//! Prometheus down, slow or answering nothing means missing samples, and a missing sample never
//! lowers a count. Failing queries back off ([`backoff`]) and recover by themselves; the status
//! and the `lull_metric_source_*` metrics say why samples are missing. The endpoint may use TLS
//! and a bearer token or basic credentials ([`client`]).

pub mod backoff;
pub mod client;
mod metrics;
pub mod promql;
mod source;
pub mod template;

pub use backoff::BackoffConfig;
pub use client::{Auth, Endpoint, install_crypto_provider};
pub use promql::PodNaming;
pub use source::{
    Error, MetricStatus, PrometheusConfig, PrometheusSource, QueryError, QueryProblem, Result,
    check, measured,
};
