//! Turning a deployment spec into the Kubernetes objects that run it.
//!
//! Each spec becomes an `apps/v1` Deployment and a `core/v1` Service, both named by the spec's
//! slug and labelled `app.kubernetes.io/name: <slug>` and `app.kubernetes.io/managed-by: lull`.
//!
//! Secret values never reach the objects: an environment variable whose value is `secret:NAME`
//! becomes a `secretKeyRef` to key `NAME` of one Kubernetes Secret ([`RenderOptions::secret_name`]),
//! which the cluster resolves when it starts the pod. Nothing here reads a secret store.
//!
//! Integrations become volumes, and git-lfs and s3 ones an init container that fills theirs
//! ([`crate::integrations`]). Fields a Kubernetes Deployment cannot express are left out here and
//! reported by [`lull_spec::capabilities`] as warnings for [`lull_spec::Target::Kubernetes`]:
//! probe headers whose value is a secret, model and dataset integrations, and the blue-green and
//! canary rollout strategies (rendered as a rolling update).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use lull_spec::machine::{self, MachineType};
use lull_spec::secret::ConfigValue;
use lull_spec::validate::RESERVED_ENV;
use lull_spec::{DeploymentSpec, EnvVar, Probe, RolloutStrategy};
use serde::Serialize;

use crate::integrations;

/// Namespace of the objects when neither the spec nor the caller names one.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Name of the Kubernetes Secret that holds the values of `secret:NAME` references, one key per
/// name, when the caller names no other.
pub const DEFAULT_SECRET_NAME: &str = "lull-secrets";

/// Default image of the init container that clones git-lfs integrations.
pub const DEFAULT_GIT_IMAGE: &str = "alpine/git:2.47.2";

/// Default image of the init container that syncs s3 integrations.
pub const DEFAULT_S3_IMAGE: &str = "amazon/aws-cli:2.22.35";

/// Label that names the deployment; the Deployment's and the Service's selectors match on it.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";

/// Label that marks objects lull owns.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGER: &str = "lull";

/// Extended resource that NVIDIA's device plugin exposes GPUs as.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

/// Node label NVIDIA's GPU feature discovery sets to the GPU model.
pub const GPU_PRODUCT_LABEL: &str = "nvidia.com/gpu.product";

/// Name of the serving port on the container and the Service.
pub const HTTP_PORT_NAME: &str = "http";

/// Port the Service listens on; it forwards to the container's [`HTTP_PORT_NAME`] port.
pub const SERVICE_PORT: i32 = 80;

/// Errors of rendering.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec names no image, and a pod runs containers.
    #[error(
        "deployment `{deployment}` has no `image`; Kubernetes runs containers, so give the image that runs `command`"
    )]
    MissingImage {
        /// The deployment's name.
        deployment: String,
    },
    /// A number in the spec is larger than the Kubernetes field it goes to can hold.
    #[error(
        "deployment `{deployment}`: {field} is {value}, more than Kubernetes accepts (at most {max})"
    )]
    OutOfRange {
        /// The deployment's name.
        deployment: String,
        /// The spec field's path.
        field: String,
        /// The value in the spec.
        value: u64,
        /// The largest value the Kubernetes field holds.
        max: i64,
    },
    /// The objects could not be written as YAML.
    #[error("cannot write the Kubernetes objects as YAML")]
    Yaml {
        /// The serialiser's error.
        #[source]
        source: serde_saphyr::SerializeError,
    },
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Choices that come from where the objects go rather than from the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    /// Namespace for specs that set no `kubernetes.namespace`. Default [`DEFAULT_NAMESPACE`].
    pub namespace: String,
    /// The Kubernetes Secret that `secret:NAME` references read key `NAME` of.
    /// Default [`DEFAULT_SECRET_NAME`].
    pub secret_name: String,
    /// Image of the init container that clones git-lfs integrations; it needs `sh`, `git` and
    /// `git-lfs`. Default [`DEFAULT_GIT_IMAGE`].
    pub git_image: String,
    /// Image of the init container that syncs s3 integrations; it needs the `aws` CLI.
    /// Default [`DEFAULT_S3_IMAGE`].
    pub s3_image: String,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            namespace: DEFAULT_NAMESPACE.to_owned(),
            secret_name: DEFAULT_SECRET_NAME.to_owned(),
            git_image: DEFAULT_GIT_IMAGE.to_owned(),
            s3_image: DEFAULT_S3_IMAGE.to_owned(),
        }
    }
}

/// The objects of one deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// Runs the replicas.
    pub deployment: apps::Deployment,
    /// Reaches them by the name label.
    pub service: core::Service,
}

/// The Deployment and Service of one loaded spec.
pub fn render(deployment: &lull_spec::Deployment, options: &RenderOptions) -> Result<Rendered> {
    let spec = &deployment.spec;
    let slug = &deployment.slug;
    let image = spec.image.clone().ok_or_else(|| Error::MissingImage {
        deployment: spec.name.clone(),
    })?;
    let namespace = spec
        .kubernetes
        .namespace
        .clone()
        .unwrap_or_else(|| options.namespace.clone());
    let selector = BTreeMap::from([(NAME_LABEL.to_owned(), slug.clone())]);
    let mut labels = spec.kubernetes.labels.clone();
    // lull's labels go in last, so a spec's own labels cannot change what the selectors match.
    labels.extend(selector.clone());
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGER.to_owned());
    let annotations = non_empty_map(spec.kubernetes.annotations.clone());
    let metadata = ObjectMeta {
        name: Some(slug.clone()),
        namespace: Some(namespace),
        labels: Some(labels.clone()),
        ..ObjectMeta::default()
    };
    let check = Check(spec);

    let data = integrations::data(spec, options);
    let placement = Placement::of(spec);
    let mut containers = vec![core::Container {
        name: slug.clone(),
        image: Some(image),
        command: non_empty(spec.command.clone()),
        ports: Some(ports(spec)),
        env: non_empty(replica_env(deployment, &options.secret_name)),
        liveness_probe: probe(&check, "liveness", spec.health_checks.liveness.as_ref())?,
        readiness_probe: probe(&check, "readiness", spec.health_checks.readiness.as_ref())?,
        startup_probe: probe(&check, "startup", spec.health_checks.startup.as_ref())?,
        resources: placement.resources,
        volume_mounts: non_empty(data.mounts),
        ..core::Container::default()
    }];
    containers.extend(spec.kubernetes.sidecars.iter().map(|s| core::Container {
        name: s.name.clone(),
        image: Some(s.image.clone()),
        command: non_empty(s.command.clone()),
        env: non_empty(env(&s.env, &options.secret_name)),
        ..core::Container::default()
    }));

    let grace = spec.termination_grace_period.get();
    // Kubernetes counts whole seconds; rounding up never cuts a shutdown short.
    let grace_seconds = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
    let pod = core::PodSpec {
        containers,
        image_pull_secrets: spec
            .container_registry
            .as_ref()
            .map(|name| vec![core::LocalObjectReference { name: name.clone() }]),
        node_selector: non_empty_map(placement.node_selector),
        tolerations: non_empty(placement.tolerations),
        service_account_name: spec.kubernetes.service_account_name.clone(),
        termination_grace_period_seconds: Some(
            check.int64("terminationGracePeriod (seconds)", grace_seconds)?,
        ),
        init_containers: non_empty(data.init_containers),
        volumes: non_empty(data.volumes),
        ..core::PodSpec::default()
    };

    let deployment_object = apps::Deployment {
        metadata: ObjectMeta {
            annotations: annotations.clone(),
            ..metadata.clone()
        },
        spec: Some(apps::DeploymentSpec {
            replicas: Some(check.int32("resources.replicas", replicas(spec))?),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                match_expressions: None,
            },
            strategy: Some(strategy(spec.rollout.strategy)),
            template: core::PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations,
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..apps::DeploymentSpec::default()
        }),
        status: None,
    };

    let service = core::Service {
        metadata,
        spec: Some(core::ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector),
            ports: Some(vec![core::ServicePort {
                name: Some(HTTP_PORT_NAME.to_owned()),
                port: SERVICE_PORT,
                target_port: Some(IntOrString::String(HTTP_PORT_NAME.to_owned())),
                protocol: Some("TCP".to_owned()),
                ..core::ServicePort::default()
            }]),
            ..core::ServiceSpec::default()
        }),
        status: None,
    };

    Ok(Rendered {
        deployment: deployment_object,
        service,
    })
}

/// Every deployment's objects as one multi-document YAML text: for each spec its Deployment,
/// then its Service, separated by `---`. Empty when there is no deployment.
pub fn render_yaml(
    deployments: &[lull_spec::Deployment],
    options: &RenderOptions,
) -> Result<String> {
    let rendered = deployments
        .iter()
        .map(|d| render(d, options))
        .collect::<Result<Vec<_>>>()?;
    let documents: Vec<Document<'_>> = rendered
        .iter()
        .flat_map(|r| {
            [
                Document::Deployment(&r.deployment),
                Document::Service(&r.service),
            ]
        })
        .collect();
    serde_saphyr::to_string_multiple(&documents).map_err(|source| Error::Yaml { source })
}

/// One YAML document; untagged because each object already writes its `apiVersion` and `kind`.
#[derive(Serialize)]
#[serde(untagged)]
enum Document<'a> {
    Deployment(&'a apps::Deployment),
    Service(&'a core::Service),
}

/// Range checks that name the deployment and the field in their error.
struct Check<'a>(&'a DeploymentSpec);

impl Check<'_> {
    fn int32(&self, field: &str, value: u32) -> Result<i32> {
        i32::try_from(value).map_err(|_| self.out_of_range(field, value.into(), i32::MAX.into()))
    }

    fn int64(&self, field: &str, value: u64) -> Result<i64> {
        i64::try_from(value).map_err(|_| self.out_of_range(field, value, i64::MAX))
    }

    fn out_of_range(&self, field: &str, value: u64, max: i64) -> Error {
        Error::OutOfRange {
            deployment: self.0.name.clone(),
            field: field.to_owned(),
            value,
            max,
        }
    }
}

fn non_empty<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
}

fn non_empty_map(map: BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!map.is_empty()).then_some(map)
}

/// Replicas to start with: the static count, or the autoscaling minimum (0 for scale to zero,
/// where the autoscaler wakes the deployment on its first request). A disabled deployment runs
/// none.
fn replicas(spec: &DeploymentSpec) -> u32 {
    if !spec.enabled {
        return 0;
    }
    match &spec.resources.autoscaling {
        Some(a) if a.enabled => a.min_replicas.unwrap_or(spec.resources.replicas),
        _ => spec.resources.replicas,
    }
}

fn strategy(strategy: RolloutStrategy) -> apps::DeploymentStrategy {
    match strategy {
        RolloutStrategy::Safe => apps::DeploymentStrategy {
            type_: Some("Recreate".to_owned()),
            rolling_update: None,
        },
        // A Deployment has no blue-green or canary; a rolling update that keeps every old
        // replica until its replacement is ready is the closest (capabilities warns).
        RolloutStrategy::Rolling | RolloutStrategy::BlueGreen | RolloutStrategy::Canary => {
            apps::DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }
        }
    }
}

fn ports(spec: &DeploymentSpec) -> Vec<core::ContainerPort> {
    spec.resources
        .ports
        .iter()
        .enumerate()
        .map(|(i, port)| core::ContainerPort {
            container_port: i32::from(*port),
            name: (i == 0).then(|| HTTP_PORT_NAME.to_owned()),
            protocol: Some("TCP".to_owned()),
            ..core::ContainerPort::default()
        })
        .collect()
}

/// Environment variables, secrets as references to `secret_name`.
pub(crate) fn env(vars: &[EnvVar], secret_name: &str) -> Vec<core::EnvVar> {
    vars.iter()
        .map(|var| match &var.value {
            ConfigValue::Plain(value) => core::EnvVar {
                name: var.name.clone(),
                value: Some(value.clone()),
                value_from: None,
            },
            ConfigValue::Secret(secret) => core::EnvVar {
                name: var.name.clone(),
                value: None,
                value_from: Some(core::EnvVarSource {
                    secret_key_ref: Some(core::SecretKeySelector {
                        name: secret_name.to_owned(),
                        key: secret.as_str().to_owned(),
                        optional: None,
                    }),
                    ..core::EnvVarSource::default()
                }),
            },
        })
        .collect()
}

/// The replica's environment: what lull sets for every replica on every backend (the spec's
/// values for those names are replaced, as validation warns), then the spec's own variables.
fn replica_env(deployment: &lull_spec::Deployment, secret_name: &str) -> Vec<core::EnvVar> {
    let plain = |name: &str, value: String| core::EnvVar {
        name: name.to_owned(),
        value: Some(value),
        value_from: None,
    };
    let mut vars = vec![
        plain("PORT", deployment.spec.resources.serving_port().to_string()),
        plain("LULL_DEPLOYMENT", deployment.slug.clone()),
        // A pod is a replica; its name is unique and stable for its lifetime.
        core::EnvVar {
            name: "LULL_REPLICA".to_owned(),
            value: None,
            value_from: Some(core::EnvVarSource {
                field_ref: Some(core::ObjectFieldSelector {
                    api_version: None,
                    field_path: "metadata.name".to_owned(),
                }),
                ..core::EnvVarSource::default()
            }),
        },
    ];
    let own: Vec<EnvVar> = deployment
        .spec
        .env
        .iter()
        .filter(|var| !RESERVED_ENV.contains(&var.name.as_str()))
        .cloned()
        .collect();
    vars.extend(env(&own, secret_name));
    vars
}

fn probe(check: &Check<'_>, kind: &str, probe: Option<&Probe>) -> Result<Option<core::Probe>> {
    let Some(p) = probe else {
        return Ok(None);
    };
    let spec = check.0;
    let field = |name: &str| format!("healthChecks.{kind}.{name}");
    let http_get = p.path.as_ref().map(|path| core::HTTPGetAction {
        path: Some(path.clone()),
        port: IntOrString::Int(i32::from(
            p.port.unwrap_or_else(|| spec.resources.serving_port()),
        )),
        host: p.host.clone(),
        // A probe cannot read a Secret, and writing the value here would leak it into the
        // object; such headers are left out and capabilities warns.
        http_headers: non_empty(
            p.headers
                .iter()
                .filter_map(|h| match &h.value {
                    ConfigValue::Plain(value) => Some(core::HTTPHeader {
                        name: h.name.clone(),
                        value: value.clone(),
                    }),
                    ConfigValue::Secret(_) => None,
                })
                .collect(),
        ),
        scheme: None,
    });
    let exec = p.exec.as_ref().map(|e| core::ExecAction {
        command: Some(e.command.clone()),
    });
    Ok(Some(core::Probe {
        http_get,
        exec,
        initial_delay_seconds: Some(
            check.int32(&field("initialDelaySeconds"), p.initial_delay_seconds)?,
        ),
        period_seconds: Some(check.int32(&field("periodSeconds"), p.period_seconds)?),
        timeout_seconds: Some(check.int32(&field("timeoutSeconds"), p.timeout_seconds)?),
        failure_threshold: Some(check.int32(&field("failureThreshold"), p.failure_threshold)?),
        success_threshold: Some(check.int32(&field("successThreshold"), p.success_threshold)?),
        ..core::Probe::default()
    }))
}

/// Resources, node selection and tolerations from the machine type and the explicit fields.
struct Placement {
    resources: Option<core::ResourceRequirements>,
    node_selector: BTreeMap<String, String>,
    tolerations: Vec<core::Toleration>,
}

impl Placement {
    fn of(spec: &DeploymentSpec) -> Self {
        let r = &spec.resources;
        let machine = r.machine().and_then(machine::lookup);
        let mut requests = BTreeMap::new();
        let mut limits = BTreeMap::new();
        if let Some(max) = &r.max_cpu {
            limits.insert("cpu".to_owned(), quantity(max));
        }
        if let Some(max) = &r.max_memory {
            limits.insert("memory".to_owned(), quantity(max));
        }
        match (&r.cpu, machine) {
            (Some(cpu), _) => {
                requests.insert("cpu".to_owned(), quantity(cpu));
            }
            (None, Some(m)) => {
                let cpu = machine_request(f64::from(m.cpu), m.cpu.to_string(), r.max_cpu.as_ref());
                requests.insert("cpu".to_owned(), cpu);
            }
            (None, None) => {}
        }
        match (&r.memory, machine) {
            (Some(memory), _) => {
                requests.insert("memory".to_owned(), quantity(memory));
            }
            (None, Some(m)) => {
                let bytes = f64::from(m.memory_gib) * 1024.0 * 1024.0 * 1024.0;
                let memory =
                    machine_request(bytes, format!("{}Gi", m.memory_gib), r.max_memory.as_ref());
                requests.insert("memory".to_owned(), memory);
            }
            (None, None) => {}
        }
        let gpus = r.gpu_count.or(machine.map(|m| m.gpus)).unwrap_or(0);
        let mut node_selector = BTreeMap::new();
        let mut tolerations = Vec::new();
        if gpus > 0 {
            // An extended resource must have a limit; the request then equals it.
            let count = Quantity(gpus.to_string());
            requests.insert(GPU_RESOURCE.to_owned(), count.clone());
            limits.insert(GPU_RESOURCE.to_owned(), count);
            if let Some(product) = gpu_product(r.gpu_type.as_deref(), machine) {
                node_selector.insert(GPU_PRODUCT_LABEL.to_owned(), product);
            }
            // GPU nodes are commonly tainted so that only pods asking for GPUs land there.
            tolerations.push(core::Toleration {
                key: Some(GPU_RESOURCE.to_owned()),
                operator: Some("Exists".to_owned()),
                effect: Some("NoSchedule".to_owned()),
                ..core::Toleration::default()
            });
        }
        // The spec's own selector wins over the one derived from the machine type.
        node_selector.extend(spec.kubernetes.node_selector.clone());
        let resources =
            (!requests.is_empty() || !limits.is_empty()).then(|| core::ResourceRequirements {
                requests: (!requests.is_empty()).then_some(requests),
                limits: (!limits.is_empty()).then_some(limits),
                claims: None,
            });
        Self {
            resources,
            node_selector,
            tolerations,
        }
    }
}

pub(crate) fn quantity(q: &lull_spec::Quantity) -> Quantity {
    Quantity(q.as_str().to_owned())
}

/// A request taken from the machine type, unless an explicit limit is smaller: Kubernetes refuses
/// a request above its limit, and the machine's size is only a default.
fn machine_request(amount: f64, text: String, limit: Option<&lull_spec::Quantity>) -> Quantity {
    match limit {
        Some(limit) if limit.value() < amount => quantity(limit),
        _ => Quantity(text),
    }
}

/// The `nvidia.com/gpu.product` value to select nodes by: `gpuType` read as a machine type name
/// (`A100`, `T4`) or, when it is not one, as the label value itself; else the machine type's GPU.
fn gpu_product(gpu_type: Option<&str>, machine: Option<MachineType>) -> Option<String> {
    match gpu_type {
        Some(t) => Some(
            machine::lookup(t)
                .and_then(|m| m.gpu_product)
                .unwrap_or(t)
                .to_owned(),
        ),
        None => machine.and_then(|m| m.gpu_product).map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn load(yaml: &str) -> lull_spec::Deployment {
        let (mut deployments, _) = lull_spec::load_str(yaml, "test.yaml")
            .into_valid()
            .expect("the test spec is valid");
        assert_eq!(deployments.len(), 1, "one spec per test");
        deployments.remove(0)
    }

    fn objects(yaml: &str) -> (apps::Deployment, core::Service) {
        let r = render(&load(yaml), &RenderOptions::default()).expect("renders");
        (r.deployment, r.service)
    }

    fn pod(d: &apps::Deployment) -> &core::PodSpec {
        d.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("a pod spec")
    }

    /// The YAML text as typed objects, one document at a time.
    fn parse_back(text: &str) -> Vec<(apps::Deployment, core::Service)> {
        let documents: Vec<&str> = text
            .split("---\n")
            .filter(|d| !d.trim().is_empty())
            .collect();
        documents
            .chunks(2)
            .map(|pair| {
                let deployment = serde_saphyr::from_str(pair[0]).expect("a Deployment");
                let service = serde_saphyr::from_str(pair[1]).expect("a Service");
                (deployment, service)
            })
            .collect()
    }

    const SECRET_VALUE: &str = "hf_s3cr3t_value_that_must_not_leak";
    const CHILD: &str = "LULL_KUBE_TEST_CHILD";
    const SECRET_SPEC: &str = r#"
name: sentiment
image: registry.example/sentiment:1
env:
  - { name: MODEL, value: distilbert }
  - { name: HF_TOKEN, value: "secret:hfToken" }
healthChecks:
  readiness:
    path: /health
    headers: [{ name: Authorization, value: "secret:hfToken" }, { name: X-Plain, value: shown }]
kubernetes:
  sidecars:
    - { name: proxy, image: envoy:1, env: [{ name: TOKEN, value: "secret:hfToken" }] }
"#;

    #[test]
    fn secret_values_never_reach_the_output() {
        if std::env::var_os(CHILD).is_none() {
            // Setting a variable in this process needs `unsafe`, which the workspace forbids, so
            // the test runs itself again in a child that has the secret in its environment.
            let output = Command::new(std::env::current_exe().expect("the test binary"))
                .args([
                    "--exact",
                    "render::tests::secret_values_never_reach_the_output",
                    "--test-threads=1",
                ])
                .env(CHILD, "1")
                .env("LULL_SECRET_HFTOKEN", SECRET_VALUE)
                .output()
                .expect("the test binary runs");
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success() && stdout.contains("1 passed"),
                "child run failed:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            return;
        }
        assert_eq!(
            std::env::var("LULL_SECRET_HFTOKEN").as_deref(),
            Ok(SECRET_VALUE)
        );
        let deployment = load(SECRET_SPEC);
        let options = RenderOptions {
            secret_name: "team-secrets".to_owned(),
            ..RenderOptions::default()
        };
        let text = render_yaml(std::slice::from_ref(&deployment), &options).expect("renders");
        assert!(!text.contains(SECRET_VALUE), "{text}");

        let r = render(&deployment, &options).expect("renders");
        let containers = &pod(&r.deployment).containers;
        let token = containers[0]
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "HF_TOKEN")
            .expect("HF_TOKEN is set");
        assert_eq!(token.value, None);
        let reference = token
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .expect("a secretKeyRef");
        assert_eq!(
            (reference.name.as_str(), reference.key.as_str()),
            ("team-secrets", "hfToken")
        );
        let sidecar_token = containers[1].env.as_ref().expect("sidecar env")[0].clone();
        assert_eq!(
            sidecar_token
                .value_from
                .and_then(|v| v.secret_key_ref)
                .map(|r| r.key),
            Some("hfToken".to_owned())
        );
        let headers = containers[0]
            .readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.http_headers.clone())
            .expect("the plain header stays");
        assert_eq!(headers.len(), 1);
        assert_eq!(headers[0].name, "X-Plain");
    }

    #[test]
    fn gpu_machines_ask_for_gpus_and_land_on_gpu_nodes() {
        let (d, _) = objects(
            r#"
name: llm
image: vllm:1
resources:
  machineType: A100-80G
kubernetes:
  nodeSelector: { pool: gpu }
"#,
        );
        let pod = pod(&d);
        let resources = pod.containers[0].resources.as_ref().expect("resources");
        let requests = resources.requests.as_ref().expect("requests");
        let limits = resources.limits.as_ref().expect("limits");
        assert_eq!(requests.get(GPU_RESOURCE), Some(&Quantity("1".to_owned())));
        assert_eq!(limits.get(GPU_RESOURCE), Some(&Quantity("1".to_owned())));
        assert_eq!(requests.get("cpu"), Some(&Quantity("12".to_owned())));
        assert_eq!(requests.get("memory"), Some(&Quantity("90Gi".to_owned())));
        let selector = pod.node_selector.as_ref().expect("node selector");
        assert_eq!(
            selector.get(GPU_PRODUCT_LABEL).map(String::as_str),
            Some("NVIDIA-A100-SXM4-80GB")
        );
        assert_eq!(selector.get("pool").map(String::as_str), Some("gpu"));
        let tolerations = pod.tolerations.as_ref().expect("tolerations");
        assert_eq!(tolerations.len(), 1);
        assert_eq!(tolerations[0].key.as_deref(), Some(GPU_RESOURCE));
        assert_eq!(tolerations[0].operator.as_deref(), Some("Exists"));
        assert_eq!(tolerations[0].effect.as_deref(), Some("NoSchedule"));
    }

    #[test]
    fn explicit_resources_override_the_machine_type() {
        let (d, _) = objects(
            r#"
name: small
image: app:1
resources:
  machineType: A100-80G
  memory: 16Gi
  gpuCount: 0
  maxCpu: "4"
  maxMemory: 32Gi
"#,
        );
        let pod = pod(&d);
        let resources = pod.containers[0].resources.as_ref().expect("resources");
        let requests = resources.requests.as_ref().expect("requests");
        let limits = resources.limits.as_ref().expect("limits");
        // The machine's 12 cores would exceed maxCpu, which Kubernetes refuses.
        assert_eq!(requests.get("cpu"), Some(&Quantity("4".to_owned())));
        assert_eq!(requests.get("memory"), Some(&Quantity("16Gi".to_owned())));
        assert_eq!(limits.get("cpu"), Some(&Quantity("4".to_owned())));
        assert_eq!(limits.get("memory"), Some(&Quantity("32Gi".to_owned())));
        assert!(!requests.contains_key(GPU_RESOURCE));
        assert_eq!(pod.tolerations, None);
        assert_eq!(pod.node_selector, None);
    }

    #[test]
    fn replicas_follow_the_autoscaling_minimum() {
        let replicas = |yaml: &str| {
            let (d, _) = objects(yaml);
            d.spec.and_then(|s| s.replicas).expect("replicas")
        };
        let base = "name: a\nimage: app:1\n";
        assert_eq!(
            replicas(&format!(
                "{base}resources: {{ autoscaling: {{ minReplicas: 0, maxReplicas: 3 }} }}"
            )),
            0
        );
        assert_eq!(
            replicas(&format!(
                "{base}resources: {{ replicas: 2, autoscaling: {{ maxReplicas: 3 }} }}"
            )),
            2
        );
        assert_eq!(replicas(&format!("{base}resources: {{ replicas: 3 }}")), 3);
        assert_eq!(replicas(&format!("{base}enabled: false")), 0);
    }

    #[test]
    fn objects_are_named_labelled_and_selected_by_the_slug() {
        let (d, s) = objects(
            r#"
name: My Cool Deployment
image: app:1
containerRegistry: regcred
command: [serve, --port, "9000"]
resources: { ports: [9000, 9090] }
kubernetes:
  namespace: ml
  labels: { team: search, app.kubernetes.io/name: other }
  annotations: { owner: me }
  serviceAccountName: runner
rollout: { strategy: safe }
terminationGracePeriod: 1m
"#,
        );
        assert_eq!(d.metadata.name.as_deref(), Some("my-cool-deployment"));
        assert_eq!(d.metadata.namespace.as_deref(), Some("ml"));
        let labels = d.metadata.labels.as_ref().expect("labels");
        assert_eq!(
            labels.get(NAME_LABEL).map(String::as_str),
            Some("my-cool-deployment")
        );
        assert_eq!(
            labels.get(MANAGED_BY_LABEL).map(String::as_str),
            Some("lull")
        );
        assert_eq!(labels.get("team").map(String::as_str), Some("search"));
        let spec = d.spec.as_ref().expect("spec");
        assert_eq!(
            spec.strategy.as_ref().and_then(|s| s.type_.as_deref()),
            Some("Recreate")
        );
        let template_meta = spec.template.metadata.as_ref().expect("template metadata");
        assert_eq!(template_meta.labels.as_ref(), Some(labels));
        assert_eq!(
            template_meta
                .annotations
                .as_ref()
                .and_then(|a| a.get("owner"))
                .map(String::as_str),
            Some("me")
        );
        let pod = pod(&d);
        assert_eq!(pod.service_account_name.as_deref(), Some("runner"));
        assert_eq!(pod.termination_grace_period_seconds, Some(60));
        assert_eq!(
            pod.image_pull_secrets.as_ref().map(|s| s[0].name.as_str()),
            Some("regcred")
        );
        let container = &pod.containers[0];
        assert_eq!(container.name, "my-cool-deployment");
        let ports = container.ports.as_ref().expect("ports");
        assert_eq!(ports[0].name.as_deref(), Some(HTTP_PORT_NAME));
        assert_eq!(ports[0].container_port, 9000);
        assert_eq!(ports[1].name, None);
        let env = container.env.as_ref().expect("env");
        assert_eq!(env[0].name, "PORT");
        assert_eq!(env[0].value.as_deref(), Some("9000"));

        assert_eq!(s.metadata.name.as_deref(), Some("my-cool-deployment"));
        assert_eq!(s.metadata.namespace.as_deref(), Some("ml"));
        let service = s.spec.as_ref().expect("service spec");
        assert_eq!(service.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(
            service.selector.as_ref().and_then(|m| m.get(NAME_LABEL)),
            Some(&"my-cool-deployment".to_owned())
        );
        let port = &service.ports.as_ref().expect("ports")[0];
        assert_eq!(port.port, SERVICE_PORT);
        assert_eq!(
            port.target_port,
            Some(IntOrString::String(HTTP_PORT_NAME.to_owned()))
        );
    }

    #[test]
    fn probes_keep_their_timings() {
        let (d, _) = objects(
            r#"
name: a
image: app:1
resources: { ports: [8000, 9000] }
healthChecks:
  readiness: { path: /ready, port: 9000, host: localhost, initialDelaySeconds: 5, periodSeconds: 2,
               timeoutSeconds: 3, failureThreshold: 4, successThreshold: 2 }
  liveness: { exec: { command: [check, --live] } }
"#,
        );
        let container = &pod(&d).containers[0];
        let readiness = container.readiness_probe.as_ref().expect("readiness");
        let get = readiness.http_get.as_ref().expect("httpGet");
        assert_eq!(get.path.as_deref(), Some("/ready"));
        assert_eq!(get.port, IntOrString::Int(9000));
        assert_eq!(get.host.as_deref(), Some("localhost"));
        assert_eq!(
            (
                readiness.initial_delay_seconds,
                readiness.period_seconds,
                readiness.timeout_seconds,
                readiness.failure_threshold,
                readiness.success_threshold
            ),
            (Some(5), Some(2), Some(3), Some(4), Some(2))
        );
        let liveness = container.liveness_probe.as_ref().expect("liveness");
        assert_eq!(
            liveness.exec.as_ref().and_then(|e| e.command.clone()),
            Some(vec!["check".to_owned(), "--live".to_owned()])
        );
        assert_eq!(liveness.http_get, None);
        assert_eq!(container.startup_probe, None);
    }

    #[test]
    fn volume_integrations_become_volumes() {
        let (d, _) = objects(
            r#"
name: a
image: app:1
integrations:
  - { type: volume, name: Host Data, path: /data, hostPath: /srv/data }
  - { type: volume, name: claim, path: /claim, claimName: models }
  - { type: volume, name: scratch, path: /scratch, size: 10Gi }
  - { type: model, name: weights, path: /models, id: m1 }
"#,
        );
        let pod = pod(&d);
        let volumes = pod.volumes.as_ref().expect("volumes");
        assert_eq!(volumes.len(), 3, "a model integration is not mounted");
        assert_eq!(pod.init_containers, None);
        assert_eq!(volumes[0].name, "host-data");
        assert_eq!(
            volumes[0].host_path.as_ref().map(|h| h.path.as_str()),
            Some("/srv/data")
        );
        assert_eq!(
            volumes[1]
                .persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.as_str()),
            Some("models")
        );
        assert_eq!(
            volumes[2]
                .empty_dir
                .as_ref()
                .and_then(|e| e.size_limit.clone()),
            Some(Quantity("10Gi".to_owned()))
        );
        let mounts = pod.containers[0].volume_mounts.as_ref().expect("mounts");
        let mounted: Vec<(&str, &str)> = mounts
            .iter()
            .map(|m| (m.name.as_str(), m.mount_path.as_str()))
            .collect();
        assert_eq!(
            mounted,
            [
                ("host-data", "/data"),
                ("claim", "/claim"),
                ("scratch", "/scratch")
            ]
        );
    }

    #[test]
    fn a_spec_without_image_is_refused() {
        let err = render(
            &load("name: local\ncommand: [serve]\n"),
            &RenderOptions::default(),
        )
        .expect_err("no image");
        assert!(matches!(err, Error::MissingImage { .. }), "{err}");
    }

    #[test]
    fn yaml_parses_back_into_the_same_objects() {
        let first = load(SECRET_SPEC);
        let second = load(
            r#"
name: gpu
image: vllm:1
command: ["python", "-m", "serve", "--flag", "true", "8000", "yes", "null"]
env: [{ name: ON, value: "on" }, { name: NUM, value: "0x1F" }]
resources:
  machineType: A100-80Gx2
  cpu: 500m
  autoscaling: { minReplicas: 0, maxReplicas: 2 }
"#,
        );
        let deployments = [first, second];
        let options = RenderOptions::default();
        let text = render_yaml(&deployments, &options).expect("renders");
        let parsed = parse_back(&text);
        assert_eq!(parsed.len(), 2, "{text}");
        for (spec, (deployment, service)) in deployments.iter().zip(parsed) {
            let rendered = render(spec, &options).expect("renders");
            assert_eq!(deployment, rendered.deployment);
            assert_eq!(service, rendered.service);
        }
        assert_eq!(render_yaml(&[], &options).expect("renders"), "");
    }
}
