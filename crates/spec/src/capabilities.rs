//! What each backend can honour. A field lull accepts but the chosen backend cannot act on gives a
//! warning that names it; nothing is dropped silently.

use crate::diagnostic::Issue;
use crate::{DeploymentSpec, Integration, RolloutStrategy};

/// Where a deployment will run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// `lull up`: replicas are child processes on this machine.
    Embedded,
    /// The Kubernetes add-on: replicas are pods.
    Kubernetes,
}

impl Target {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Embedded => "embedded",
            Target::Kubernetes => "kube",
        }
    }
}

/// Warnings for the fields of `spec` that `target` cannot honour.
pub fn unsupported(spec: &DeploymentSpec, target: Target) -> Vec<Issue> {
    match target {
        Target::Embedded => embedded(spec),
        Target::Kubernetes => kubernetes(spec),
    }
}

fn embedded(spec: &DeploymentSpec) -> Vec<Issue> {
    let mut out = Vec::new();
    let ignored = "is ignored by the embedded backend";
    if spec.image.is_some() {
        out.push(Issue::warning(
            "image",
            format!("{ignored}, which runs `command` as a process"),
        ));
    }
    if spec.command.is_empty() {
        out.push(
            Issue::error(
                "command",
                "is empty: the embedded backend runs processes, not images",
            )
            .help(
                "give the command that starts the server, for example [\"python3\", \"serve.py\"]",
            ),
        );
    }
    if spec.container_registry.is_some() {
        out.push(Issue::warning("containerRegistry", ignored));
    }
    for field in ["machineType", "instanceType"] {
        let set = if field == "machineType" {
            &spec.resources.machine_type
        } else {
            &spec.resources.instance_type
        };
        if set.is_some() {
            out.push(Issue::warning(
                format!("resources.{field}"),
                format!("{ignored}: replicas share this machine"),
            ));
        }
    }
    if spec.resources.gpu_type.is_some() {
        out.push(Issue::warning(
            "resources.gpuType",
            format!("{ignored}: replicas use this machine's GPUs"),
        ));
    }
    for (i, integration) in spec.integrations.iter().enumerate() {
        match integration {
            Integration::Volume(v) if v.claim_name.is_none() => {}
            _ => out.push(
                Issue::warning(
                    format!("integrations[{i}]"),
                    format!(
                        "{} integrations are not mounted by the embedded backend",
                        integration.kind()
                    ),
                )
                .help("fetch the data before `lull up`, or run on Kubernetes"),
            ),
        }
    }
    if matches!(
        spec.rollout.strategy,
        RolloutStrategy::BlueGreen | RolloutStrategy::Canary
    ) {
        out.push(Issue::warning(
            "rollout.strategy",
            "the embedded backend rolls out with `rolling`",
        ));
    }
    if spec.kubernetes != Default::default() {
        out.push(Issue::warning("kubernetes", ignored));
    }
    out
}

fn kubernetes(spec: &DeploymentSpec) -> Vec<Issue> {
    let mut out = Vec::new();
    if spec.image.is_none() {
        out.push(
            Issue::error("image", "is required on Kubernetes")
                .help("give the container image that runs `command`"),
        );
    }
    let hc = &spec.health_checks;
    for (name, probe) in [
        ("liveness", &hc.liveness),
        ("readiness", &hc.readiness),
        ("startup", &hc.startup),
    ] {
        for (i, h) in probe.iter().flat_map(|p| p.headers.iter().enumerate()) {
            if h.value.secret().is_some() {
                out.push(
                    Issue::warning(format!("healthChecks.{name}.headers[{i}].value"), "Kubernetes probes cannot read Secrets; the header is left out of the probe")
                        .help("let the health endpoint answer without it, or use an exec probe that reads an environment variable"),
                );
            }
        }
    }
    if matches!(
        spec.rollout.strategy,
        RolloutStrategy::BlueGreen | RolloutStrategy::Canary
    ) {
        out.push(
            Issue::warning(
                "rollout.strategy",
                "is rendered as a rolling update; the Deployment has no blue-green or canary steps",
            )
            .help("use `rolling` or `safe`, or shift traffic between two deployments with aliases"),
        );
    }
    for (i, integration) in spec.integrations.iter().enumerate() {
        if matches!(integration, Integration::Model(_) | Integration::Dataset(_)) {
            out.push(
                Issue::warning(
                    format!("integrations[{i}]"),
                    format!(
                        "{} integrations need a registry lull does not have; nothing is mounted",
                        integration.kind()
                    ),
                )
                .help("use an s3, git-lfs or volume integration"),
            );
        }
    }
    if spec.resources.max_cpu.is_none()
        && spec.resources.max_memory.is_none()
        && spec.resources.machine().is_none()
        && spec.resources.cpu.is_none()
    {
        out.push(
            Issue::warning(
                "resources",
                "sets no cpu request, so cpu utilisation targets have nothing to measure against",
            )
            .help("set resources.machineType or resources.cpu"),
        );
    }
    out
}
