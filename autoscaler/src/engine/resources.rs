//! Samples from the metric source as the engine reads them — cpu, memory, gpu, gpuMemory, and
//! request duration when the source reads every activator — the newest of each metric with the
//! time it was taken, or the source's failure.
//!
//! A metric without a sample is missing, one older than the stable window is stale, and a failed
//! source is an error; none of the three ever lowers the desired count (the Kubernetes HPA's rule
//! for a metric that errors: it blocks a scale-down, not a scale-up by another metric).

use lull_core::{LatencySummary, ResourceMetric, ResourceSample};
use tokio::time::Instant;

/// One slot per metric the source can answer: four resources and five request-duration
/// summaries. A fixed array, so a decision reads a sample without a map lookup.
const SLOTS: usize = 9;

fn slot(metric: ResourceMetric) -> usize {
    match metric {
        ResourceMetric::Cpu => 0,
        ResourceMetric::Memory => 1,
        ResourceMetric::Gpu => 2,
        ResourceMetric::GpuMemory => 3,
        ResourceMetric::RequestDuration { summary } => match summary {
            LatencySummary::Average => 4,
            LatencySummary::Max => 5,
            LatencySummary::P50 => 6,
            LatencySummary::P95 => 7,
            LatencySummary::P99 => 8,
        },
    }
}

/// The newest samples of a deployment from the metric source, one per metric.
#[derive(Debug, Clone, Default)]
pub struct ResourceSamples {
    samples: [Option<(Instant, ResourceSample)>; SLOTS],
    error: Option<String>,
}

impl ResourceSamples {
    /// Samples a metric source answered at `at`; a later sample of a metric replaces an earlier.
    pub fn new(at: Instant, samples: impl IntoIterator<Item = ResourceSample>) -> Self {
        let mut out = Self::default();
        for sample in samples {
            out.samples[slot(sample.metric)] = Some((at, sample));
        }
        out
    }

    /// The metric source failed: every resource metric is an error until it answers again.
    pub fn failed(error: impl Into<String>) -> Self {
        Self {
            samples: Default::default(),
            error: Some(error.into()),
        }
    }

    /// The sample of `metric` and when it was taken, if there is one.
    pub fn get(&self, metric: ResourceMetric) -> Option<(Instant, &ResourceSample)> {
        self.samples[slot(metric)].as_ref().map(|(at, s)| (*at, s))
    }

    /// Why the metric source gave no samples, if it failed.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}
