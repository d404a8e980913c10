//! `/metrics`: the activator's per-deployment statistics under `lull_activator_` names, read
//! from the live atomics at scrape time, so requests never touch a metrics registry.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::stats::{Buckets, REJECTIONS, STATUS_CLASSES};
use crate::table::{Table, Target};

/// Encodes every routed deployment's statistics.
#[derive(Debug)]
pub(crate) struct Metrics {
    table: Arc<ArcSwap<Table>>,
}

impl Metrics {
    /// Metrics of the deployments in `table`, whatever it holds at scrape time.
    pub fn new(table: Arc<ArcSwap<Table>>) -> Self {
        Self { table }
    }
}

type Encode = fn(&Target, &mut MetricEncoder<'_>, &str) -> fmt::Result;

impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let table = self.table.load();
        let families: [(&str, &str, MetricType, Encode); 10] = [
            (
                "lull_activator_requests",
                "Requests routed to the deployment.",
                MetricType::Counter,
                |t, e, d| counter(e, d, t.state.stats.arrived()),
            ),
            (
                "lull_activator_responses",
                "Responses by status class, the activator's own errors included.",
                MetricType::Counter,
                |t, e, d| {
                    let counts = t.state.stats.responses();
                    for (class, count) in STATUS_CLASSES.iter().zip(counts) {
                        e.encode_family(&[("deployment", d), ("class", class)])?
                            .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
                    }
                    Ok(())
                },
            ),
            (
                "lull_activator_rejections",
                "Requests the activator refused, by reason (the error code of its answer).",
                MetricType::Counter,
                |t, e, d| {
                    let counts = t.state.stats.rejections();
                    for (reason, count) in REJECTIONS.iter().zip(counts) {
                        e.encode_family(&[("deployment", d), ("reason", reason)])?
                            .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
                    }
                    Ok(())
                },
            ),
            (
                "lull_activator_retries",
                "Requests sent again to another replica after a failed attempt.",
                MetricType::Counter,
                |t, e, d| counter(e, d, t.state.stats.retries()),
            ),
            (
                "lull_activator_ejections",
                "Replicas ejected for failing connections.",
                MetricType::Counter,
                |t, e, d| counter(e, d, t.state.stats.ejections()),
            ),
            (
                "lull_activator_in_flight",
                "Requests sent to a replica whose response is not finished.",
                MetricType::Gauge,
                |t, e, d| gauge(e, d, t.state.stats.in_flight()),
            ),
            (
                "lull_activator_parked",
                "Requests waiting for a ready replica, or for one below its concurrency limit.",
                MetricType::Gauge,
                |t, e, d| gauge(e, d, t.state.parking.parked() as u64),
            ),
            (
                "lull_activator_wakes",
                "Wakes sent because a request found no ready replica.",
                MetricType::Counter,
                |t, e, d| counter(e, d, t.state.parking.wakes()),
            ),
            (
                "lull_activator_request_duration_seconds",
                "Time from a request's arrival to the end of its response, for requests a replica answered.",
                MetricType::Histogram,
                |t, e, d| histogram(e, d, t.state.stats.latency()),
            ),
            (
                "lull_activator_cold_start_wait_seconds",
                "Time requests waited for a replica to become ready.",
                MetricType::Histogram,
                |t, e, d| histogram(e, d, t.state.stats.cold_start()),
            ),
        ];
        for (name, help, kind, encode) in families {
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for (key, target) in &table.deployments {
                encode(target, &mut family, key.as_str())?;
            }
        }
        Ok(())
    }
}

fn counter(encoder: &mut MetricEncoder<'_>, deployment: &str, value: u64) -> fmt::Result {
    encoder
        .encode_family(&[("deployment", deployment)])?
        .encode_counter::<NoLabelSet, _, u64>(&value, None)
}

fn gauge(encoder: &mut MetricEncoder<'_>, deployment: &str, value: u64) -> fmt::Result {
    let value = i64::try_from(value).unwrap_or(i64::MAX);
    encoder
        .encode_family(&[("deployment", deployment)])?
        .encode_gauge(&value)
}

fn histogram(encoder: &mut MetricEncoder<'_>, deployment: &str, buckets: &Buckets) -> fmt::Result {
    let (sum, count, buckets) = buckets.read();
    encoder
        .encode_family(&[("deployment", deployment)])?
        .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
}
