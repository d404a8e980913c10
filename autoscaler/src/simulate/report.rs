//! What a simulation reports: a [`Summary`] (cost, service, waits, scaling), a timeline with one
//! row per second, and the scale events with their reasons.

use std::fmt;
use std::io::{self, Write};

use serde::Serialize;

use crate::engine::{Mode, Reason};

/// A simulation's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The policy simulated (`lull`, `hpa` or `kpa`).
    pub policy: &'static str,
    /// Seconds of trace replayed.
    pub duration_s: f64,
    /// Replicas alive (starting, ready or draining) integrated over time: the cost.
    pub replica_seconds: f64,
    /// `replica_seconds` over the duration.
    pub mean_replicas: f64,
    /// The most replicas asked for at once.
    pub peak_replicas: u32,
    /// Requests that arrived.
    pub requests: u64,
    /// Requests answered by a replica.
    pub served: u64,
    /// Requests turned away because the queue was full (503).
    pub rejected: u64,
    /// Requests that waited past the queue timeout (504).
    pub timed_out: u64,
    /// Requests still waiting or in flight when the trace ended.
    pub unfinished: u64,
    /// Requests that waited for a replica to start: served by a replica that became ready
    /// after they arrived.
    pub cold_waits: u64,
    /// Median time a served request waited for a replica, in seconds.
    pub wait_p50_s: f64,
    /// 95th percentile of the wait.
    pub wait_p95_s: f64,
    /// 99th percentile of the wait.
    pub wait_p99_s: f64,
    /// Longest wait.
    pub wait_max_s: f64,
    /// Most requests waiting at once.
    pub max_queue: u64,
    /// Changes of the desired replica count.
    pub scale_events: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "policy {}: {:.0} s of traffic",
            self.policy, self.duration_s
        )?;
        writeln!(
            f,
            "  replica-seconds   {:.1} ({:.2} replicas on average, peak {})",
            self.replica_seconds, self.mean_replicas, self.peak_replicas
        )?;
        writeln!(
            f,
            "  requests          {} (served {}, rejected {}, timed out {}, unfinished {})",
            self.requests, self.served, self.rejected, self.timed_out, self.unfinished
        )?;
        writeln!(f, "  cold-start waits  {}", self.cold_waits)?;
        writeln!(
            f,
            "  added wait        p50 {:.3} s, p95 {:.3} s, p99 {:.3} s, max {:.3} s",
            self.wait_p50_s, self.wait_p95_s, self.wait_p99_s, self.wait_max_s
        )?;
        writeln!(f, "  longest queue     {}", self.max_queue)?;
        write!(f, "  scale events      {}", self.scale_events)
    }
}

/// The state at a whole second of the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TimelineRow {
    /// Seconds from the start.
    pub time_s: u64,
    /// Replicas asked for.
    pub desired: u32,
    /// Replicas receiving traffic.
    pub ready: u32,
    /// Requests being served.
    pub in_flight: u32,
    /// Requests waiting for a replica.
    pub queued: u32,
    /// Requests that arrived in the second before.
    pub rps: u64,
}

/// A change of the desired count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleEvent {
    /// Seconds from the start.
    pub time_s: f64,
    /// The count before.
    pub from: u32,
    /// The count after.
    pub to: u32,
    /// The engine's mode.
    pub mode: Mode,
    /// Why.
    pub reason: Reason,
}

/// Everything a simulation produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The figures.
    pub summary: Summary,
    /// One row per whole second, from 0 to the end of the trace.
    pub timeline: Vec<TimelineRow>,
    /// Every change of the desired count, in time order.
    pub events: Vec<ScaleEvent>,
}

/// Writes a timeline as CSV: `time_s,desired,ready,in_flight,queued,rps`.
pub fn write_timeline(rows: &[TimelineRow], out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "time_s,desired,ready,in_flight,queued,rps")?;
    for r in rows {
        writeln!(
            out,
            "{},{},{},{},{},{}",
            r.time_s, r.desired, r.ready, r.in_flight, r.queued, r.rps
        )?;
    }
    Ok(())
}
