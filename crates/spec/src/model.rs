//! The deployment spec: one YAML document per deployment.
//!
//! It accepts a Paperspace deployment spec as it is and adds, beside Paperspace's fields, what the
//! other systems lull learned from offer: scale to zero, GPU and traffic metrics, routing, load
//! balancing, the activator's queue, rollout strategies, versions and aliases, and Kubernetes
//! placement. Every field's default is in its doc comment and in docs/spec.md.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::secret::ConfigValue;
use crate::units::{Duration, Quantity};

fn yes() -> bool {
    true
}

fn is_true(v: &bool) -> bool {
    *v
}

fn is_false(v: &bool) -> bool {
    !*v
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// One deployment: what to run, how many replicas, how to scale them and how to reach them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentSpec {
    /// Spec format version: `v0alpha0`, `v0alpha1`, `v1` or `latest`. Default `v1`. (Paperspace)
    #[serde(default)]
    pub api_version: ApiVersion,
    /// Name of the deployment, unique among all loaded specs. A display name such as
    /// `my cool deployment` is kept for display; its slug (`my-cool-deployment`) names routes and
    /// Kubernetes objects. Required. (Paperspace)
    pub name: String,
    /// Free-text description shown in status. Default: none. (Kaisar)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `false` drains and stops every replica; requests get 503 "disabled" and never wake it.
    /// Default `true`. (Paperspace)
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub enabled: bool,
    /// Container image, used by the Kubernetes backend. Default: none. (Paperspace)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Name of the registry credentials to pull `image` with (a Kubernetes image pull secret).
    /// Default: none. (Paperspace)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_registry: Option<String>,
    /// Command and arguments; run without a shell by the embedded backend, the container command
    /// on Kubernetes. Default: none (the image's entrypoint). (Paperspace)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Environment variables; values may be `secret:NAME`. Default: none. (Paperspace)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Replicas, machine, ports, limits and autoscaling. (Paperspace)
    #[serde(default, skip_serializing_if = "is_default")]
    pub resources: Resources,
    /// Liveness, readiness and startup probes. Default: none. (Paperspace)
    #[serde(default, skip_serializing_if = "is_default")]
    pub health_checks: HealthChecks,
    /// Data to mount into each replica: git-lfs, s3, model, dataset, volume. At most 5.
    /// Default: none. (Paperspace)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub integrations: Vec<Integration>,
    /// Key that clients must present (HTTP Basic password with any user, or a Bearer token).
    /// Usually `secret:NAME`. Default: none, the endpoint is open. (Paperspace)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth_key: Option<ConfigValue>,
    /// Serve without lull's auth even when `basicAuthKey` is set. Default `false`. (Polyaxon)
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_external: bool,
    /// How requests reach this deployment. (Polyaxon, MyPaas)
    #[serde(default, skip_serializing_if = "is_default")]
    pub routing: Routing,
    /// How requests are spread over ready replicas. (Kaisar)
    #[serde(default, skip_serializing_if = "is_default")]
    pub load_balancing: LoadBalancing,
    /// The activator's queue, concurrency, timeouts and limits for this deployment. (Knative)
    #[serde(default, skip_serializing_if = "is_default")]
    pub activator: Activator,
    /// How a new version replaces the running one. (Kaisar, MyPaas)
    #[serde(default, skip_serializing_if = "is_default")]
    pub rollout: Rollout,
    /// Time a stopping replica gets between SIGTERM (or pod termination) and SIGKILL.
    /// Default `30s`. (Kubernetes)
    #[serde(
        default = "default_termination_grace",
        skip_serializing_if = "is_default_termination_grace"
    )]
    pub termination_grace_period: Duration,
    /// Which stage this deployment serves. Default `development`. (Kaisar)
    #[serde(default, skip_serializing_if = "is_default")]
    pub environment: Environment,
    /// A label for the version being served, such as `20181002.0`. Default: none. (Valohai)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Further names that route to this deployment (`production`, `staging`); repointing an
    /// alias is an edit of two specs. Default: none. (Valohai)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Placement and metadata for the Kubernetes backend. (Polyaxon)
    #[serde(default, skip_serializing_if = "is_default")]
    pub kubernetes: Kubernetes,
}

fn default_termination_grace() -> Duration {
    Duration::from_secs(30)
}

fn is_default_termination_grace(d: &Duration) -> bool {
    *d == default_termination_grace()
}

impl DeploymentSpec {
    /// A spec with this name and every other field at its default.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            api_version: ApiVersion::default(),
            name: name.into(),
            description: None,
            enabled: true,
            image: None,
            container_registry: None,
            command: Vec::new(),
            env: Vec::new(),
            resources: Resources::default(),
            health_checks: HealthChecks::default(),
            integrations: Vec::new(),
            basic_auth_key: None,
            is_external: false,
            routing: Routing::default(),
            load_balancing: LoadBalancing::default(),
            activator: Activator::default(),
            rollout: Rollout::default(),
            termination_grace_period: default_termination_grace(),
            environment: Environment::default(),
            version: None,
            aliases: Vec::new(),
            kubernetes: Kubernetes::default(),
        }
    }
}

/// Spec format versions. All read the same fields today; the version is kept so that a later
/// format can change meaning without breaking older files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum ApiVersion {
    /// Paperspace's first alpha format.
    #[serde(rename = "v0alpha0")]
    V0Alpha0,
    /// Paperspace's second alpha format.
    #[serde(rename = "v0alpha1")]
    V0Alpha1,
    /// The current format.
    #[default]
    #[serde(rename = "v1")]
    V1,
    /// Whatever the newest format is; read as `v1` today.
    #[serde(rename = "latest")]
    Latest,
}

/// One environment variable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    /// Variable name; unique within the deployment.
    pub name: String,
    /// Its value, or `secret:NAME`.
    pub value: ConfigValue,
}

/// Replica counts, machine, ports, limits and autoscaling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    /// Replicas to run when autoscaling is off; the lower bound when it is on and
    /// `autoscaling.minReplicas` is not set. Default `1`. (Paperspace)
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub replicas: u32,
    /// Machine type, such as `C4`, `A4000` or `A100-80G`; sets cpu, memory and GPU requests and node
    /// selection on Kubernetes (see docs/spec.md for the table). Default: none. (Paperspace)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_type: Option<String>,
    /// Paperspace's older name for `machineType`; give one or the other. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// Ports the replica listens on; the first receives traffic. On the embedded backend each
    /// replica gets a free port in `$PORT` that stands for the first one. Default `[8000]`. (Paperspace)
    #[serde(default = "default_ports", skip_serializing_if = "is_default_ports")]
    pub ports: Vec<u16>,
    /// Cpu cores requested per replica (`2`, `500m`). Default: from `machineType`, else none. (Kaisar)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    /// Memory requested per replica (`16Gi`). Default: from `machineType`, else none. (Kaisar)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
    /// GPUs per replica. Default: from `machineType`, else `0`. (Kaisar)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_count: Option<u32>,
    /// GPU model to schedule on (`A100`, `T4`). Default: from `machineType`, else any. (Kaisar)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_type: Option<String>,
    /// Most cpu cores a replica may use (`1.5`); a cgroup limit on the embedded backend where
    /// writable, a limit on Kubernetes. Default: none. (MyPaas `maxcpu`)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cpu: Option<Quantity>,
    /// Most memory a replica may use (`512Mi`); a cgroup limit or an address-space rlimit on the
    /// embedded backend, a limit on Kubernetes. Default: none. (MyPaas `maxmem`)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<Quantity>,
    /// Autoscaling between min and max replicas. Default: off. (Paperspace)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
}

fn one() -> u32 {
    1
}

fn is_one(v: &u32) -> bool {
    *v == 1
}

/// The port a replica listens on when the spec names none.
pub const DEFAULT_PORT: u16 = 8000;

fn default_ports() -> Vec<u16> {
    vec![DEFAULT_PORT]
}

fn is_default_ports(v: &Vec<u16>) -> bool {
    *v == default_ports()
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            replicas: 1,
            machine_type: None,
            instance_type: None,
            ports: default_ports(),
            cpu: None,
            memory: None,
            gpu_count: None,
            gpu_type: None,
            max_cpu: None,
            max_memory: None,
            autoscaling: None,
        }
    }
}

impl Resources {
    /// `machineType`, or `instanceType` when only that is given.
    pub fn machine(&self) -> Option<&str> {
        self.machine_type
            .as_deref()
            .or(self.instance_type.as_deref())
    }

    /// The port that receives traffic.
    pub fn serving_port(&self) -> u16 {
        self.ports.first().copied().unwrap_or(DEFAULT_PORT)
    }
}

/// Autoscaling bounds, targets and behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Autoscaling {
    /// Toggle autoscaling without deleting the section. Default `true`. (Paperspace)
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Fewest replicas; `0` allows scale to zero. Default: `resources.replicas`. (KServe, Kaisar)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<u32>,
    /// Most replicas. Required. (Paperspace)
    pub max_replicas: u32,
    /// With `minReplicas: 0`, go to zero after this long without a request. Default `5m`. (KEDA cooldown)
    #[serde(
        default = "default_scale_to_zero_after",
        skip_serializing_if = "is_default_scale_to_zero_after"
    )]
    pub scale_to_zero_after: Duration,
    /// Targets; several give the largest replica count any of them asks for. Default: none,
    /// which keeps replicas at the minimum, waking from zero on traffic. (Paperspace)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricTarget>,
    /// How fast and how carefully to follow the targets. (Kubernetes HPA, Knative KPA)
    #[serde(default, skip_serializing_if = "is_default")]
    pub behavior: Behavior,
}

fn default_scale_to_zero_after() -> Duration {
    Duration::from_secs(300)
}

fn is_default_scale_to_zero_after(d: &Duration) -> bool {
    *d == default_scale_to_zero_after()
}

/// One metric target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricTarget {
    /// What to measure. (Paperspace: cpu, memory, requestDuration; lull adds the rest)
    pub metric: MetricKind,
    /// How to summarise it across replicas and time. Default `average`. (Paperspace)
    #[serde(default, skip_serializing_if = "is_default")]
    pub summary: Summary,
    /// Target per replica: percent for cpu, memory, gpu and gpuMemory; seconds for
    /// requestDuration; in-flight requests for concurrency; requests per second for rps.
    pub value: f64,
    /// PromQL that replaces lull's default query for this metric on the Prometheus source.
    /// `{{deployment}}`, `{{namespace}}` and `{{selector}}` are filled in. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

/// Metrics lull can scale on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum MetricKind {
    /// Cpu use as a percent of one core per replica (or of the cpu request on Kubernetes).
    Cpu,
    /// Memory use as a percent of the replica's limit (or request).
    Memory,
    /// Time to answer a request, in seconds, as seen by the activator.
    RequestDuration,
    /// GPU utilisation in percent (NVML locally, DCGM on Kubernetes).
    Gpu,
    /// GPU memory in use, in percent of the GPU's memory.
    GpuMemory,
    /// Requests in flight per replica.
    Concurrency,
    /// Requests per second per replica.
    Rps,
}

impl MetricKind {
    /// Every kind, in documentation order.
    pub const ALL: [MetricKind; 7] = [
        MetricKind::Cpu,
        MetricKind::Memory,
        MetricKind::RequestDuration,
        MetricKind::Gpu,
        MetricKind::GpuMemory,
        MetricKind::Concurrency,
        MetricKind::Rps,
    ];

    /// The name used in specs.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Cpu => "cpu",
            MetricKind::Memory => "memory",
            MetricKind::RequestDuration => "requestDuration",
            MetricKind::Gpu => "gpu",
            MetricKind::GpuMemory => "gpuMemory",
            MetricKind::Concurrency => "concurrency",
            MetricKind::Rps => "rps",
        }
    }

    /// Summaries that make sense for this metric.
    pub fn summaries(self) -> &'static [Summary] {
        match self {
            MetricKind::RequestDuration => &[
                Summary::Average,
                Summary::Max,
                Summary::P50,
                Summary::P95,
                Summary::P99,
            ],
            _ => &[Summary::Average],
        }
    }

    /// Whether the target is a percentage (and so at most 100 for a bounded resource).
    pub fn is_percent(self) -> bool {
        matches!(
            self,
            MetricKind::Cpu | MetricKind::Memory | MetricKind::Gpu | MetricKind::GpuMemory
        )
    }

    /// Whether the activator measures it (traffic) rather than the metric source (resources).
    pub fn is_traffic(self) -> bool {
        matches!(
            self,
            MetricKind::Concurrency | MetricKind::Rps | MetricKind::RequestDuration
        )
    }
}

/// How samples are summarised.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Summary {
    /// Mean over replicas and the window.
    #[default]
    Average,
    /// Largest value in the window.
    Max,
    /// Median.
    P50,
    /// 95th percentile.
    P95,
    /// 99th percentile.
    P99,
}

impl Summary {
    /// The name used in specs.
    pub fn as_str(self) -> &'static str {
        match self {
            Summary::Average => "average",
            Summary::Max => "max",
            Summary::P50 => "p50",
            Summary::P95 => "p95",
            Summary::P99 => "p99",
        }
    }
}

/// Knobs of the decision engine. The defaults follow the Kubernetes HPA for resource metrics and
/// Knative's KPA for traffic metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Behavior {
    /// No change while observed/target is within this many percent of 1. Default `10`.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Window that traffic metrics are averaged over. Default `60s`.
    #[serde(default = "default_stable_window")]
    pub stable_window: Duration,
    /// Short window that detects bursts of traffic. Default `6s`.
    #[serde(default = "default_panic_window")]
    pub panic_window: Duration,
    /// Panic when panic-window demand reaches this percent of current capacity. Default `200`.
    #[serde(default = "default_panic_threshold")]
    pub panic_threshold: f64,
    /// Scale down only to the highest recommendation seen over this window. Default: `300s` when
    /// a resource metric (cpu, memory, gpu, gpuMemory) is in use, else `stableWindow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_stabilization: Option<Duration>,
    /// Most a scale-up may multiply replicas by in one decision. Default `1000`.
    #[serde(default = "default_max_scale_up_rate")]
    pub max_scale_up_rate: f64,
    /// Most a scale-down may divide replicas by in one decision. Default `2`.
    #[serde(default = "default_max_scale_down_rate")]
    pub max_scale_down_rate: f64,
    /// Replicas started when a request arrives at zero. Default `1`.
    #[serde(default = "one")]
    pub activation_scale: u32,
}

fn default_tolerance() -> f64 {
    10.0
}
fn default_stable_window() -> Duration {
    Duration::from_secs(60)
}
fn default_panic_window() -> Duration {
    Duration::from_secs(6)
}
fn default_panic_threshold() -> f64 {
    200.0
}
fn default_max_scale_up_rate() -> f64 {
    1000.0
}
fn default_max_scale_down_rate() -> f64 {
    2.0
}

impl Default for Behavior {
    fn default() -> Self {
        Self {
            tolerance: default_tolerance(),
            stable_window: default_stable_window(),
            panic_window: default_panic_window(),
            panic_threshold: default_panic_threshold(),
            scale_down_stabilization: None,
            max_scale_up_rate: default_max_scale_up_rate(),
            max_scale_down_rate: default_max_scale_down_rate(),
            activation_scale: 1,
        }
    }
}

/// Liveness, readiness and startup probes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthChecks {
    /// Failing it restarts the replica. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<Probe>,
    /// A replica receives traffic only while it passes. Default: none (ready once its port accepts
    /// connections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Probe>,
    /// Liveness and readiness wait until it passes once; for slow-loading models. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<Probe>,
}

/// An HTTP probe (`path`, `port`, `host`, `headers`) or a command probe (`exec`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probe {
    /// HTTP path to GET; a 2xx or 3xx answer passes. Default: none (give `path` or `exec`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Port to probe; the first of `resources.ports` means the replica's serving port.
    /// Default: the serving port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Host header to send. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Headers to send; values may be `secret:NAME`. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<Header>,
    /// Command to run instead of an HTTP request; exit 0 passes. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecProbe>,
    /// Seconds to wait after start before the first probe. Default `0`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub initial_delay_seconds: u32,
    /// Seconds between probes. Default `10`.
    #[serde(default = "default_period", skip_serializing_if = "is_default_period")]
    pub period_seconds: u32,
    /// Seconds before a probe counts as failed. Default `1`.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub timeout_seconds: u32,
    /// Consecutive failures that fail the check. Default `3`.
    #[serde(
        default = "default_failures",
        skip_serializing_if = "is_default_failures"
    )]
    pub failure_threshold: u32,
    /// Consecutive successes that pass it again. Default `1`.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub success_threshold: u32,
}

fn default_period() -> u32 {
    10
}
fn is_default_period(v: &u32) -> bool {
    *v == 10
}
fn default_failures() -> u32 {
    3
}
fn is_default_failures(v: &u32) -> bool {
    *v == 3
}

impl Probe {
    /// An HTTP probe of `path` with default timings.
    pub fn http(path: impl Into<String>) -> Self {
        Self {
            path: Some(path.into()),
            port: None,
            host: None,
            headers: Vec::new(),
            exec: None,
            initial_delay_seconds: 0,
            period_seconds: default_period(),
            timeout_seconds: 1,
            failure_threshold: default_failures(),
            success_threshold: 1,
        }
    }
}

/// A command probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecProbe {
    /// Command and arguments, run without a shell.
    pub command: Vec<String>,
}

/// An HTTP header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Header {
    /// Header name.
    pub name: String,
    /// Header value, or `secret:NAME`.
    pub value: ConfigValue,
}

/// Data mounted into each replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Integration {
    /// A git repository with LFS files, such as a Hugging Face model, cloned into `path/name`.
    GitLfs(GitLfsIntegration),
    /// An S3 bucket or prefix synced into `path`.
    S3(S3Integration),
    /// A model from the platform's model registry.
    Model(RegistryIntegration),
    /// A dataset from the platform's dataset registry.
    Dataset(RegistryIntegration),
    /// A persistent volume (Kubernetes) or a directory under the state directory (embedded).
    Volume(VolumeIntegration),
}

impl Integration {
    /// The integration's unique name.
    pub fn name(&self) -> &str {
        match self {
            Integration::GitLfs(i) => &i.name,
            Integration::S3(i) => &i.name,
            Integration::Model(i) | Integration::Dataset(i) => &i.name,
            Integration::Volume(i) => &i.name,
        }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &str {
        match self {
            Integration::GitLfs(i) => &i.path,
            Integration::S3(i) => &i.path,
            Integration::Model(i) | Integration::Dataset(i) => &i.path,
            Integration::Volume(i) => &i.path,
        }
    }

    /// The `type` as written in specs.
    pub fn kind(&self) -> &'static str {
        match self {
            Integration::GitLfs(_) => "git-lfs",
            Integration::S3(_) => "s3",
            Integration::Model(_) => "model",
            Integration::Dataset(_) => "dataset",
            Integration::Volume(_) => "volume",
        }
    }
}

/// A git-lfs integration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitLfsIntegration {
    /// Unique name; the files appear under `path/name`.
    pub name: String,
    /// Mount directory.
    pub path: String,
    /// Repository URL.
    pub url: String,
    /// Branch, tag or commit. Default: the default branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#ref: Option<String>,
}

/// An S3 integration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Integration {
    /// Unique name.
    pub name: String,
    /// Mount directory.
    pub path: String,
    /// `s3://bucket/prefix`.
    pub url: String,
    /// Bucket region. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Endpoint of an S3-compatible store. Default: AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Access key id, plain or `secret:NAME`. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<ConfigValue>,
    /// Secret access key, normally `secret:NAME`. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<ConfigValue>,
}

/// A model or dataset integration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistryIntegration {
    /// Unique name.
    pub name: String,
    /// Mount directory.
    pub path: String,
    /// Registry id.
    pub id: String,
    /// Version. Default: latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A volume integration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeIntegration {
    /// Unique name.
    pub name: String,
    /// Mount directory.
    pub path: String,
    /// Size of the volume (`10Gi`). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Quantity>,
    /// Directory on the host to mount instead of a new volume. Default: none. (MyPaas `volume`)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    /// An existing PersistentVolumeClaim to mount (Kubernetes). Default: none. (Polyaxon)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_name: Option<String>,
}

/// How requests reach the deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Routing {
    /// Host names routed here, besides `<slug>.<domain>`. Default: none. (MyPaas `url`)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Path prefix routed here. Default `/<slug>`. (Valohai)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Strip the prefix before forwarding. Default `true`. (Polyaxon `rewritePath`)
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub rewrite_path: bool,
}

impl Default for Routing {
    fn default() -> Self {
        Self {
            hosts: Vec::new(),
            path_prefix: None,
            rewrite_path: true,
        }
    }
}

/// How requests are spread over ready replicas.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancing {
    /// Replica choice. Default `roundRobin`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub policy: LoadBalancingPolicy,
    /// Keep a client on one replica by cookie. Default: off.
    #[serde(default, skip_serializing_if = "is_default")]
    pub sticky_sessions: StickySessions,
}

/// Replica choice policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LoadBalancingPolicy {
    /// Each replica in turn.
    #[default]
    RoundRobin,
    /// The replica with the fewest requests in flight.
    LeastConnections,
    /// The same client address to the same replica.
    IpHash,
    /// The less busy of two replicas picked at random.
    PowerOfTwoChoices,
}

/// Cookie-based session affinity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StickySessions {
    /// Default `false`.
    #[serde(default)]
    pub enabled: bool,
    /// Cookie that names the replica. Default `lull-affinity`.
    #[serde(default = "default_cookie")]
    pub cookie_name: String,
    /// Cookie lifetime. Default `1h`.
    #[serde(default = "default_cookie_ttl")]
    pub ttl: Duration,
}

fn default_cookie() -> String {
    "lull-affinity".to_owned()
}
fn default_cookie_ttl() -> Duration {
    Duration::from_secs(3600)
}

impl Default for StickySessions {
    fn default() -> Self {
        Self {
            enabled: false,
            cookie_name: default_cookie(),
            ttl: default_cookie_ttl(),
        }
    }
}

/// The activator's per-deployment settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Activator {
    /// Requests that may wait for a replica; more get 503 with Retry-After. Default `1000`.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: u32,
    /// Longest a request waits for a replica before 504. Default `60s`.
    #[serde(default = "default_queue_timeout")]
    pub queue_timeout: Duration,
    /// Requests one replica serves at once; more wait in the queue. `0` is unlimited. Default `0`.
    #[serde(default)]
    pub container_concurrency: u32,
    /// Time limits on the way to a replica.
    #[serde(default, skip_serializing_if = "is_default")]
    pub timeouts: Timeouts,
    /// Request rate limits. Default: none.
    #[serde(default, skip_serializing_if = "is_default")]
    pub rate_limit: RateLimits,
    /// Largest request body accepted; larger gets 413. Default `100Mi`.
    #[serde(default = "default_max_body")]
    pub max_request_body: Quantity,
}

fn default_queue_capacity() -> u32 {
    1000
}
fn default_queue_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_body() -> Quantity {
    "100Mi".parse().expect("100Mi is a valid quantity")
}

impl Default for Activator {
    fn default() -> Self {
        Self {
            queue_capacity: default_queue_capacity(),
            queue_timeout: default_queue_timeout(),
            container_concurrency: 0,
            timeouts: Timeouts::default(),
            rate_limit: RateLimits::default(),
            max_request_body: default_max_body(),
        }
    }
}

/// Time limits between the activator and a replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Timeouts {
    /// Opening a connection to a replica. Default `1s`.
    #[serde(default = "default_connect")]
    pub connect: Duration,
    /// From sending the request to the response's headers. Default `300s`.
    #[serde(default = "default_response_header")]
    pub response_header: Duration,
    /// Longest pause between body chunks in either direction. Default `120s`.
    #[serde(default = "default_idle")]
    pub idle: Duration,
    /// Whole request, queue wait excluded. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<Duration>,
}

fn default_connect() -> Duration {
    Duration::from_secs(1)
}
fn default_response_header() -> Duration {
    Duration::from_secs(300)
}
fn default_idle() -> Duration {
    Duration::from_secs(120)
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: default_connect(),
            response_header: default_response_header(),
            idle: default_idle(),
            total: None,
        }
    }
}

/// Request rate limits.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimits {
    /// For the whole deployment. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_deployment: Option<RateLimit>,
    /// For each client address. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_client_ip: Option<RateLimit>,
}

/// A token bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub requests_per_second: u32,
    /// Requests allowed at once above the rate. Default: `requestsPerSecond`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// How a new version replaces the running one.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rollout {
    /// Default `rolling`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub strategy: RolloutStrategy,
    /// Percent of traffic the new version gets first, with `strategy: canary`. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_percent: Option<u32>,
}

/// Rollout strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RolloutStrategy {
    /// Start a new replica, wait until it is ready, stop an old one; no downtime.
    #[default]
    Rolling,
    /// Start all new replicas, switch traffic at once when they are ready.
    BlueGreen,
    /// Send `canaryPercent` of traffic to the new version first.
    Canary,
    /// Stop every old replica before starting new ones; never two versions at once. (MyPaas `safe`)
    Safe,
}

/// The stage a deployment serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Environment {
    /// Default.
    #[default]
    Development,
    /// Pre-production.
    Staging,
    /// Production.
    Production,
}

/// Kubernetes placement and metadata.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Kubernetes {
    /// Namespace for the objects. Default: the namespace lull runs in (`default` for `lull render`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Extra labels on the pods. Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations on the pods. Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Node labels the pods must run on, merged with the machine type's. Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Service account for the pods. Default: the namespace's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Containers run beside the replica. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sidecars: Vec<Sidecar>,
}

/// A container that runs beside each replica on Kubernetes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sidecar {
    /// Container name, unique in the pod.
    pub name: String,
    /// Image.
    pub image: String,
    /// Command and arguments. Default: the image's entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Environment; values may be `secret:NAME`. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
}
