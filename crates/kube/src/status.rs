//! A `LullDeployment`'s status from what the controller saw: pure, so every combination is
//! tested without a cluster.
//!
//! | condition | True when |
//! | --- | --- |
//! | `Ready` | the objects are applied and the deployment serves, now or by waking from zero |
//! | `Active` | at least one replica is ready |
//! | `ScaledToZero` | an enabled deployment is at zero replicas; its next request wakes it |
//! | `Disabled` | `enabled: false`: kept at zero, answered 503, never woken |
//! | `Integrations` | every integration is mounted (False names the model and dataset ones, which need a registry) |

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::jiff::Timestamp;
use lull_spec::{DeploymentSpec, Integration};

use crate::crd::{
    ACTIVE, Condition, DISABLED, INTEGRATIONS, LullDeploymentStatus, READY, SCALED_TO_ZERO,
};
use crate::render::NAME_LABEL;

/// Why a deployment cannot run as asked; `Ready` is False with this reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// One CamelCase word: `InvalidSpec`, `MissingSecret`, `ApplyFailed`.
    pub reason: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// What the status is computed from.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// The resource's `metadata.generation`.
    pub generation: Option<i64>,
    /// Its slug: the name of the Deployment and the Service.
    pub slug: &'a str,
    /// The spec, when it loaded.
    pub spec: Option<&'a DeploymentSpec>,
    /// The Deployment as the API server last returned it, if it exists.
    pub deployment: Option<&'a Deployment>,
    /// What keeps it from running, if anything.
    pub problem: Option<&'a Problem>,
}

/// The status for `observed`, keeping each condition's transition time from `previous` when
/// its status did not change, and `previous`'s last decision (the autoscaler writes that).
pub fn compute(
    observed: &Observed<'_>,
    previous: Option<&LullDeploymentStatus>,
) -> LullDeploymentStatus {
    let replicas = observed
        .deployment
        .and_then(|d| d.spec.as_ref())
        .and_then(|s| s.replicas)
        .map_or(0, non_negative);
    let status = observed.deployment.and_then(|d| d.status.as_ref());
    let current = status.and_then(|s| s.replicas).map_or(0, non_negative);
    let ready = status
        .and_then(|s| s.ready_replicas)
        .map_or(0, non_negative);
    let enabled = observed.spec.is_none_or(|s| s.enabled);
    let mut conditions = Vec::new();
    let mut set = |type_: &str, on: bool, reason: &str, message: String| {
        conditions.push(Condition {
            type_: type_.to_owned(),
            status: if on { "True" } else { "False" }.to_owned(),
            reason: reason.to_owned(),
            message,
            last_transition_time: String::new(),
            observed_generation: observed.generation,
        });
    };
    match (observed.problem, observed.deployment) {
        (Some(problem), _) => set(READY, false, &problem.reason, problem.message.clone()),
        (None, None) => set(
            READY,
            false,
            "NotApplied",
            "the Deployment does not exist yet".to_owned(),
        ),
        (None, Some(_)) if !enabled => set(
            READY,
            false,
            "Disabled",
            "enabled is false: requests are answered 503 and never wake it".to_owned(),
        ),
        (None, Some(_)) if replicas > 0 && ready == 0 => set(
            READY,
            false,
            "ReplicasStarting",
            format!(
                "{replicas} replica(s) asked for, none ready yet; requests wait in the activator"
            ),
        ),
        (None, Some(_)) if replicas == 0 => set(
            READY,
            true,
            "ScaledToZero",
            "no replica runs; the next request wakes one".to_owned(),
        ),
        (None, Some(_)) => set(
            READY,
            true,
            "Serving",
            format!("{ready} of {replicas} replica(s) ready"),
        ),
    }
    set(
        ACTIVE,
        ready > 0,
        if ready > 0 {
            "ReplicasReady"
        } else {
            "NoReadyReplicas"
        },
        format!("{ready} replica(s) ready"),
    );
    let at_zero = enabled && observed.deployment.is_some() && replicas == 0;
    set(
        SCALED_TO_ZERO,
        at_zero,
        if at_zero { "Idle" } else { "Running" },
        if at_zero {
            "at zero replicas; the next request wakes it".to_owned()
        } else {
            format!("{replicas} replica(s) asked for")
        },
    );
    set(
        DISABLED,
        !enabled,
        if enabled { "Enabled" } else { "EnabledFalse" },
        if enabled {
            "enabled".to_owned()
        } else {
            "enabled is false in the spec".to_owned()
        },
    );
    let unmounted = observed.spec.map(unmounted).unwrap_or_default();
    if unmounted.is_empty() {
        set(
            INTEGRATIONS,
            true,
            "Mounted",
            "every integration is mounted".to_owned(),
        );
    } else {
        set(
            INTEGRATIONS,
            false,
            "Unsupported",
            format!(
                "not mounted on Kubernetes: {}; they name a registry the cluster does not have: use an s3, git-lfs or volume integration",
                unmounted.join(", ")
            ),
        );
    }
    let now = Timestamp::now().to_string();
    for condition in &mut conditions {
        condition.last_transition_time = previous
            .and_then(|p| p.conditions.iter().find(|c| c.type_ == condition.type_))
            .filter(|c| c.status == condition.status)
            .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    }
    let phase = if observed.problem.is_some() {
        "Failed"
    } else if !enabled {
        "Disabled"
    } else if observed.deployment.is_some() && replicas == 0 {
        "ScaledToZero"
    } else if ready > 0 {
        "Active"
    } else {
        "Starting"
    };
    LullDeploymentStatus {
        observed_generation: observed.generation,
        replicas: current,
        desired_replicas: replicas,
        ready_replicas: ready,
        selector: Some(format!("{NAME_LABEL}={}", observed.slug)),
        phase: Some(phase.to_owned()),
        conditions,
        last_decision: previous.and_then(|p| p.last_decision.clone()),
    }
}

fn non_negative(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

/// The integrations Kubernetes cannot mount (they name a platform registry), as `kind name`.
fn unmounted(spec: &DeploymentSpec) -> Vec<String> {
    spec.integrations
        .iter()
        .filter(|i| matches!(i, Integration::Model(_) | Integration::Dataset(_)))
        .map(|i| format!("{} `{}`", i.kind(), i.name()))
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{DeploymentSpec as AppsSpec, DeploymentStatus};

    use super::*;

    fn deployment(replicas: i32, ready: i32) -> Deployment {
        Deployment {
            spec: Some(AppsSpec {
                replicas: Some(replicas),
                ..AppsSpec::default()
            }),
            status: Some(DeploymentStatus {
                replicas: Some(replicas),
                ready_replicas: Some(ready),
                ..DeploymentStatus::default()
            }),
            ..Deployment::default()
        }
    }

    fn condition<'a>(status: &'a LullDeploymentStatus, type_: &str) -> (&'a str, &'a str) {
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .expect("the condition is set");
        (c.status.as_str(), c.reason.as_str())
    }

    fn observe<'a>(
        spec: &'a DeploymentSpec,
        d: Option<&'a Deployment>,
        p: Option<&'a Problem>,
    ) -> LullDeploymentStatus {
        compute(
            &Observed {
                generation: Some(3),
                slug: "a",
                spec: Some(spec),
                deployment: d,
                problem: p,
            },
            None,
        )
    }

    #[test]
    fn conditions_follow_replicas_and_the_enabled_flag() {
        let spec = DeploymentSpec::named("a");
        let serving = observe(&spec, Some(&deployment(2, 2)), None);
        assert_eq!(condition(&serving, READY), ("True", "Serving"));
        assert_eq!(condition(&serving, ACTIVE), ("True", "ReplicasReady"));
        assert_eq!(condition(&serving, SCALED_TO_ZERO).0, "False");
        assert_eq!(serving.phase.as_deref(), Some("Active"));
        assert_eq!((serving.desired_replicas, serving.ready_replicas), (2, 2));
        assert_eq!(
            serving.selector.as_deref(),
            Some("app.kubernetes.io/name=a")
        );
        assert_eq!(serving.observed_generation, Some(3));

        let idle = observe(&spec, Some(&deployment(0, 0)), None);
        assert_eq!(condition(&idle, READY), ("True", "ScaledToZero"));
        assert_eq!(condition(&idle, SCALED_TO_ZERO), ("True", "Idle"));
        assert_eq!(idle.phase.as_deref(), Some("ScaledToZero"));

        let starting = observe(&spec, Some(&deployment(1, 0)), None);
        assert_eq!(condition(&starting, READY), ("False", "ReplicasStarting"));
        assert_eq!(starting.phase.as_deref(), Some("Starting"));

        let mut off = DeploymentSpec::named("a");
        off.enabled = false;
        let disabled = observe(&off, Some(&deployment(0, 0)), None);
        assert_eq!(condition(&disabled, DISABLED), ("True", "EnabledFalse"));
        assert_eq!(condition(&disabled, READY), ("False", "Disabled"));
        assert_eq!(condition(&disabled, SCALED_TO_ZERO).0, "False");
        assert_eq!(disabled.phase.as_deref(), Some("Disabled"));
    }

    #[test]
    fn a_problem_fails_ready_and_integrations_say_what_is_not_mounted() {
        let mut spec = DeploymentSpec::named("a");
        spec.integrations = vec![Integration::Model(lull_spec::RegistryIntegration {
            name: "weights".to_owned(),
            path: "/models".to_owned(),
            id: "m1".to_owned(),
            version: None,
        })];
        let problem = Problem {
            reason: "MissingSecret".to_owned(),
            message: "no key hfToken".to_owned(),
        };
        let status = observe(&spec, None, Some(&problem));
        assert_eq!(condition(&status, READY), ("False", "MissingSecret"));
        assert_eq!(condition(&status, INTEGRATIONS), ("False", "Unsupported"));
        let message = &status
            .conditions
            .iter()
            .find(|c| c.type_ == INTEGRATIONS)
            .expect("set")
            .message;
        assert!(message.contains("model `weights`"), "{message}");
        assert_eq!(status.phase.as_deref(), Some("Failed"));
    }

    #[test]
    fn transition_times_stay_while_a_condition_holds() {
        let spec = DeploymentSpec::named("a");
        let mut first = observe(&spec, Some(&deployment(1, 1)), None);
        for c in &mut first.conditions {
            c.last_transition_time = "2026-01-01T00:00:00Z".to_owned();
        }
        first.last_decision = Some(crate::crd::LastDecision {
            desired: 1,
            reason: "wake".to_owned(),
            time: "2026-01-01T00:00:00Z".to_owned(),
        });
        let observed = Observed {
            generation: Some(3),
            slug: "a",
            spec: Some(&spec),
            deployment: Some(&deployment(0, 0)),
            problem: None,
        };
        let second = compute(&observed, Some(&first));
        let time = |s: &LullDeploymentStatus, t: &str| {
            s.conditions
                .iter()
                .find(|c| c.type_ == t)
                .map(|c| c.last_transition_time.clone())
        };
        assert_eq!(
            time(&second, DISABLED).as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        assert_ne!(
            time(&second, ACTIVE).as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        assert_eq!(second.last_decision, first.last_decision);
        // Computing again from the same observation writes nothing new.
        assert_eq!(compute(&observed, Some(&second)), second);
    }
}
