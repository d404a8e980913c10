//! What the engine decides: a [`Decision`] with its [`Mode`], a structured [`Reason`] and what
//! every metric target recommended.
//!
//! Reasons are data, rendered to words only when shown (status, events, logs): a tick over ten
//! thousand deployments formats nothing.

use std::fmt;
use std::time::Duration;

use lull_spec::{MetricKind, Summary};
use serde::Serialize;

use super::show;

/// A desired replica count and the reason for it, as status and events show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// Replicas the deployment should have.
    pub desired: u32,
    /// Why; its text reads `concurrency 8.2 at target 4/replica → 3`.
    pub reason: Reason,
    /// How the count is being decided.
    pub mode: Mode,
    /// What each metric target recommended, in the order of the spec; empty when no metric was
    /// consulted (at zero without requests, going to zero, fixed or disabled).
    pub metrics: Vec<MetricRecommendation>,
}

impl Decision {
    /// `resources.replicas` of a deployment whose autoscaling is off.
    pub fn fixed(replicas: u32) -> Self {
        Self {
            desired: replicas,
            reason: Reason::new(Cause::Fixed { replicas }),
            mode: Mode::Fixed,
            metrics: Vec::new(),
        }
    }

    /// Zero replicas for a disabled deployment.
    pub fn disabled() -> Self {
        Self {
            desired: 0,
            reason: Reason::new(Cause::Disabled),
            mode: Mode::Disabled,
            metrics: Vec::new(),
        }
    }
}

/// How a count is being decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    /// Following the targets over the stable window.
    Stable,
    /// A burst (or a restart): following the panic window too, never scaling down.
    Panic,
    /// Woken from zero; no replica is ready yet.
    Activating,
    /// At zero, or going there after the idle window.
    ScaleToZero,
    /// Autoscaling is off: `resources.replicas`.
    Fixed,
    /// `enabled: false`: zero, never woken.
    Disabled,
}

impl Mode {
    /// The name status shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Stable => "stable",
            Mode::Panic => "panic",
            Mode::Activating => "activating",
            Mode::ScaleToZero => "scaleToZero",
            Mode::Fixed => "fixed",
            Mode::Disabled => "disabled",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one metric target recommended.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricRecommendation {
    /// The metric.
    pub metric: MetricKind,
    /// Its summary (`average` except for requestDuration).
    pub summary: Summary,
    /// The target per replica, in the metric's unit.
    pub target: f64,
    /// What was observed: the deployment's total over the stable window for concurrency and rps;
    /// the average per reporting replica for the others. `None` without a usable sample.
    pub observed: Option<f64>,
    /// Concurrency and rps: the deployment's total over the panic window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub panic_observed: Option<f64>,
    /// Replicas this metric asks for; the current count when it holds.
    pub replicas: u32,
    /// Why it asks for that.
    pub status: MetricStatus,
    /// Ready replicas when deciding.
    pub ready: u32,
    /// Replicas asked for (ready or starting) when deciding.
    pub current: u32,
    /// Replicas the sample was averaged over (resource metrics).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported: Option<u32>,
    /// How old the sample was, when it was too old to use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_age_seconds: Option<f64>,
    /// The tolerance band in percent.
    #[serde(skip)]
    pub tolerance: f64,
}

/// Why a metric recommends its count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum MetricStatus {
    /// Outside the tolerance band: the count follows the observation.
    Scaled,
    /// The panic window asks for more than the stable window: the count follows the burst.
    Panic,
    /// Within the tolerance band: the current count.
    WithinTolerance,
    /// The observation points one way, but with starting replicas counted as idle (scale-up)
    /// and replicas without a sample counted at target (scale-down) it points the other way or
    /// into the band: the current count, as the Kubernetes HPA does.
    Held,
    /// No sample: the current count at least, never a scale-down.
    Missing,
    /// The sample is older than the stable window: the current count at least.
    Stale,
    /// The metric source failed: blocks a scale-down, not a scale-up by another metric.
    Error,
}

impl MetricStatus {
    /// Whether the recommendation is the current count for want of a usable sample. At equal
    /// counts such a reason explains best why a count does not fall.
    pub fn is_unknown(self) -> bool {
        matches!(
            self,
            MetricStatus::Missing | MetricStatus::Stale | MetricStatus::Error
        )
    }
}

impl MetricRecommendation {
    fn name(&self) -> &'static str {
        self.metric.as_str()
    }

    fn unit(&self) -> &'static str {
        match self.metric {
            MetricKind::RequestDuration => "s",
            MetricKind::Concurrency | MetricKind::Rps => "",
            MetricKind::Cpu | MetricKind::Memory | MetricKind::Gpu | MetricKind::GpuMemory => "%",
        }
    }

    fn is_per_replica_total(&self) -> bool {
        matches!(self.metric, MetricKind::Concurrency | MetricKind::Rps)
    }
}

impl fmt::Display for MetricRecommendation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.name();
        if self.metric == MetricKind::RequestDuration {
            write!(f, "{name} {}", self.summary.as_str())?;
        } else {
            f.write_str(name)?;
        }
        let (n, target, unit) = (self.replicas, self.target, self.unit());
        let observed = match (self.status, self.observed) {
            (MetricStatus::Stale, _) => {
                let age = self
                    .sample_age_seconds
                    .map(|s| format!(" is {} old", show(Duration::from_secs_f64(s))))
                    .unwrap_or_default();
                return write!(
                    f,
                    " sample{age} older than the stable window, not scaling down → {n}"
                );
            }
            (MetricStatus::Error, _) => {
                return write!(
                    f,
                    " unavailable (the metric source failed), not scaling down → {n}"
                );
            }
            (MetricStatus::Missing, _) | (_, None) => {
                return write!(f, " has no sample, not scaling down → {n}");
            }
            (_, Some(observed)) => observed,
        };
        if self.is_per_replica_total() {
            return match self.status {
                MetricStatus::WithinTolerance => write!(
                    f,
                    " {observed:.1} within {}% of target {target}/replica × {} → {n}",
                    self.tolerance, self.current
                ),
                MetricStatus::Panic => write!(
                    f,
                    " {:.1} in the panic window at target {target}/replica → {n}",
                    self.panic_observed.unwrap_or(observed)
                ),
                _ => write!(f, " {observed:.1} at target {target}/replica → {n}"),
            };
        }
        write!(f, " {observed:.1}{unit} on {} ready", self.ready)?;
        let direction = if observed > target { "over" } else { "under" };
        match self.status {
            MetricStatus::WithinTolerance => write!(
                f,
                " within {}% of target {target}{unit} → {n}",
                self.tolerance
            ),
            MetricStatus::Held => {
                let starting = self.current.saturating_sub(self.ready);
                let unreported = self.reported.map_or(0, |r| self.ready.saturating_sub(r));
                write!(f, " {direction} target {target}{unit}, held: ")?;
                match (starting, unreported) {
                    (s, 0) => write!(f, "{s} replicas still starting")?,
                    (0, u) => write!(f, "{u} replicas without a sample")?,
                    (s, u) => write!(f, "{s} replicas still starting, {u} without a sample")?,
                }
                write!(f, " → {n}")
            }
            _ => write!(f, " {direction} target {target}{unit} → {n}"),
        }
    }
}

/// Why a decision came out as it did: what drove it, then each adjustment in the order the
/// engine applied them.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    /// What asked for the count.
    pub cause: Cause,
    /// Held up by a panic (or a restart) that does not scale down.
    pub panic: Option<PanicHold>,
    /// Held up by scale-down stabilisation.
    pub stabilised: Option<Stabilised>,
    /// Moved into `[minReplicas, maxReplicas]`.
    pub bound: Option<Bound>,
    /// Slowed by `maxScaleUpRate` or `maxScaleDownRate`.
    pub rate_limited: Option<RateLimited>,
}

impl Reason {
    /// A reason with a cause and no adjustment.
    pub fn new(cause: Cause) -> Self {
        Self {
            cause,
            panic: None,
            stabilised: None,
            bound: None,
            rate_limited: None,
        }
    }
}

/// What asked for a count.
#[derive(Debug, Clone, PartialEq)]
pub enum Cause {
    /// No metric targets: the minimum.
    NoTargets {
        /// The minimum running count.
        min: u32,
    },
    /// The metric target that asked for the most.
    Metric(MetricRecommendation),
    /// A request at zero.
    Woken {
        /// Requests waiting at zero.
        parked: u32,
        /// Whether the activator asked for a replica.
        pending: bool,
        /// `behavior.activationScale`.
        activation: u32,
        /// The traffic metric that asked for more than the activation scale.
        metric: Option<MetricRecommendation>,
    },
    /// At zero without requests.
    AtZero,
    /// At zero below `minReplicas`.
    BelowMinAtZero {
        /// `minReplicas`.
        min: u32,
    },
    /// No request for the idle window: to zero.
    Idle {
        /// Time since the last request.
        idle: Duration,
        /// `scaleToZeroAfter`.
        after: Duration,
    },
    /// Autoscaling off.
    Fixed {
        /// `resources.replicas`.
        replicas: u32,
    },
    /// `enabled: false`.
    Disabled,
}

/// A count held up while panicking.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PanicHold {
    /// The count held.
    pub replicas: u32,
    /// Whether the panic is the caution of a state that started with replicas running.
    pub restarted: bool,
    /// `stableWindow`: how long below the threshold ends the panic.
    pub window: Duration,
}

/// A scale-down held up by stabilisation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stabilised {
    /// The highest recommendation of the window.
    pub replicas: u32,
    /// The stabilisation window.
    pub window: Duration,
}

/// How the bounds moved a count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// Lowered to `maxReplicas`.
    CappedAtMax(u32),
    /// Raised to `minReplicas`.
    RaisedToMin(u32),
    /// Raised to 1 with `minReplicas: 0` before the idle window has passed.
    KeptUntilIdle(Duration),
}

/// A change slowed by a rate limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimited {
    /// The count allowed.
    pub replicas: u32,
    /// Up (`maxScaleUpRate`) or down (`maxScaleDownRate`).
    pub up: bool,
    /// The rate.
    pub rate: f64,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Cause::NoTargets { min } => write!(f, "no metric targets → minimum {min}")?,
            Cause::Metric(metric) => write!(f, "{metric}")?,
            Cause::Woken {
                parked,
                pending,
                activation,
                metric,
            } => {
                if *parked == 1 {
                    f.write_str("1 request waiting at zero")?;
                } else if *parked > 1 {
                    write!(f, "{parked} requests waiting at zero")?;
                } else if *pending {
                    f.write_str("woken by a request at zero")?;
                } else {
                    f.write_str("requests at zero")?;
                }
                match metric {
                    Some(metric) => write!(f, "; {metric}")?,
                    None => write!(f, " → {activation} (activation scale)")?,
                }
            }
            Cause::AtZero => f.write_str("at zero, no requests")?,
            Cause::BelowMinAtZero { min } => write!(f, "at zero, below minReplicas {min} → {min}")?,
            Cause::Idle { idle, after } => write!(
                f,
                "idle for {} ≥ scaleToZeroAfter {} → 0",
                show(*idle),
                show(*after)
            )?,
            Cause::Fixed { replicas } => {
                write!(f, "autoscaling off → resources.replicas {replicas}")?;
            }
            Cause::Disabled => f.write_str("disabled → 0")?,
        }
        if let Some(hold) = self.panic {
            if hold.restarted {
                write!(
                    f,
                    "; held at {} for stableWindow {} after the autoscaler started (no scale-down on a first impression)",
                    hold.replicas,
                    show(hold.window)
                )?;
            } else {
                write!(
                    f,
                    "; panicking: held at {}, the most this panic asked for, until {} below the panic threshold",
                    hold.replicas,
                    show(hold.window)
                )?;
            }
        }
        if let Some(s) = self.stabilised {
            write!(
                f,
                "; held at {}, the highest recommendation of the last {} (scale-down stabilisation)",
                s.replicas,
                show(s.window)
            )?;
        }
        match self.bound {
            Some(Bound::CappedAtMax(n)) => write!(f, ", capped at maxReplicas {n}")?,
            Some(Bound::RaisedToMin(n)) => write!(f, ", raised to minReplicas {n}")?,
            Some(Bound::KeptUntilIdle(after)) => write!(
                f,
                ", kept at 1 until idle for scaleToZeroAfter {}",
                show(after)
            )?,
            None => {}
        }
        if let Some(rate) = self.rate_limited {
            let which = if rate.up {
                "maxScaleUpRate"
            } else {
                "maxScaleDownRate"
            };
            write!(f, ", limited to {} by {which} {}", rate.replicas, rate.rate)?;
        }
        Ok(())
    }
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}
