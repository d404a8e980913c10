//! lull's control plane: the decision engine, the scaling loop and the trace simulator.
//!
//! [`engine`] decides, purely, how many replicas a deployment should have and why. The
//! [`Autoscaler`] runs it: every tick it gathers traffic from the activators and resource samples
//! from the metric source, decides for every deployment and tells the backend; a cold request's
//! wake ([`wake_channel`]) is handled at once, between ticks. [`simulate`] replays a traffic
//! trace through the same engine with a model of replicas.

pub mod engine;
mod scaler;
pub mod simulate;
mod wake;

pub use engine::Decision;
pub use scaler::{Autoscaler, AutoscalerConfig, ScalingMode, ScalingStatus};
pub use wake::{ChannelWaker, WakeReceiver, wake_channel};
