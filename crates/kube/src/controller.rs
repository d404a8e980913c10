//! The controller: each `LullDeployment` becomes an `apps/v1` Deployment and a `core/v1`
//! Service, applied server-side with field manager [`FIELD_MANAGER`], owned by the resource and
//! cleaned up through a finalizer.
//!
//! A reconcile of a resource:
//! 1. loads its spec through lull's loader; an invalid spec is a `Ready=False InvalidSpec`
//!    status and a warning event, and nothing is applied;
//! 2. checks that the Secret holds every key the spec's `secret:NAME` values reference (the
//!    values are never read or copied: the pods get `secretKeyRef`s); a missing key is
//!    `Ready=False MissingSecret`, and the running version, if any, is left alone;
//! 3. applies the objects [`crate::render`] makes. `spec.replicas` belongs to the scale
//!    subresource ([`SCALE_FIELD_MANAGER`]), not to this apply: it is set once when the
//!    Deployment is created and handed over at once, so a later apply never resets a count the
//!    autoscaler chose;
//! 4. sets the count itself where no autoscaling decides it: `enabled: false` → 0, autoscaling
//!    off → `resources.replicas` (this is also how `kubectl scale lulldeployment` acts);
//! 5. writes the status ([`crate::status`]) when it changed, and an event for every creation,
//!    new version, scaling and problem.
//!
//! Deleting the resource deletes both objects before the finalizer is removed, so the activator
//! stops routing to the name before it can be reused. Objects of the same name that the resource
//! does not own are never taken over or deleted: a name conflict is `Ready=False NameConflict`.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use lull_spec::validate::secret_references;
use lull_spec::{DeploymentSpec, Diagnostic};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::crd::{self, LullDeployment};
use crate::render::{self, MANAGED_BY_LABEL, MANAGER, RenderOptions};
use crate::scale::SCALE_FIELD_MANAGER;
use crate::status::{self, Observed, Problem};

/// Field manager of the server-side applies of Deployments and Services.
pub const FIELD_MANAGER: &str = "lull";

/// Finalizer that makes deletion remove the Deployment and the Service first.
pub const FINALIZER: &str = "lull.dev/cleanup";

/// How often a resource is reconciled without a change, to repair drift.
const RESYNC: Duration = Duration::from_secs(300);

/// How soon a resource waiting for its Secret, or for a name taken by another Deployment, is
/// looked at again.
const SECRET_RETRY: Duration = Duration::from_secs(30);

/// How soon a failed reconcile is tried again.
const ERROR_RETRY: Duration = Duration::from_secs(15);

/// Errors of a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or could not be reached.
    #[error("Kubernetes API request failed")]
    Kube(#[from] kube::Error),
    /// The spec could not become Kubernetes objects.
    #[error("cannot render the objects")]
    Render(#[from] render::Error),
    /// Adding or removing the finalizer, or the reconcile it wraps, failed.
    #[error("reconcile failed")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    /// A namespaced resource came without a namespace or a uid.
    #[error("the resource has no {0}")]
    Incomplete(&'static str),
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What every reconcile shares.
pub struct Context {
    client: Client,
    recorder: Recorder,
    secret_name: String,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("secret_name", &self.secret_name)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context whose events name `instance` (the pod) as their reporter, and whose specs'
    /// `secret:NAME` values read key NAME of the Secret `secret_name`.
    pub fn new(client: Client, instance: Option<String>, secret_name: &str) -> Self {
        let reporter = Reporter {
            controller: "lull-controller".to_owned(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            secret_name: secret_name.to_owned(),
        }
    }

    async fn event(&self, object: &LullDeployment, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(%error, reason, "cannot record an event");
        }
    }
}

/// Reconciles every LullDeployment in `namespace` (every namespace when `None`) until
/// `shutdown`.
pub async fn run(ctx: Arc<Context>, namespace: Option<&str>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let (resources, deployments, services) = match namespace {
        Some(ns) => (
            Api::<LullDeployment>::namespaced(client.clone(), ns),
            Api::<Deployment>::namespaced(client.clone(), ns),
            Api::<Service>::namespaced(client, ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client),
        ),
    };
    let owned = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGER}"));
    Controller::new(resources, watcher::Config::default())
        .owns(deployments, owned.clone())
        .owns(services, owned)
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            match result {
                Ok((object, _)) => tracing::debug!(%object, "reconciled"),
                Err(error) => tracing::warn!(error = %error_chain(&error), "reconcile failed"),
            }
            futures::future::ready(())
        })
        .await;
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Brings the cluster in line with one resource.
pub async fn reconcile(object: Arc<LullDeployment>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = object.namespace().ok_or(Error::Incomplete("namespace"))?;
    let api: Api<LullDeployment> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, object, |event| async {
        match event {
            finalizer::Event::Apply(object) => apply(&object, &ctx, &namespace).await,
            finalizer::Event::Cleanup(object) => cleanup(&object, &ctx, &namespace).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Logs a failed reconcile and tries again soon.
pub fn error_policy(object: Arc<LullDeployment>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(resource = %object.name_any(), error = %error_chain(error), "reconcile failed; retrying");
    Action::requeue(ERROR_RETRY)
}

async fn apply(object: &LullDeployment, ctx: &Context, namespace: &str) -> Result<Action> {
    let name = object.name_any();
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    let existing = deployments.get_opt(&name).await?;
    let new_generation =
        object.status.as_ref().and_then(|s| s.observed_generation) != object.metadata.generation;
    let loaded = match crd::load(object) {
        Ok(loaded) => loaded,
        Err(diagnostics) => {
            let problem = Problem {
                reason: "InvalidSpec".to_owned(),
                message: errors_of(&diagnostics),
            };
            if new_generation {
                ctx.event(
                    object,
                    EventType::Warning,
                    "InvalidSpec",
                    problem.message.clone(),
                )
                .await;
            }
            write_status(
                object,
                ctx,
                namespace,
                None,
                existing.as_ref(),
                Some(&problem),
            )
            .await?;
            return Ok(Action::await_change());
        }
    };
    if new_generation {
        for warning in &loaded.warnings {
            ctx.event(
                object,
                EventType::Warning,
                "SpecWarning",
                warning.to_string(),
            )
            .await;
        }
    }
    let spec = &loaded.deployment.spec;
    // A Deployment of that name that this resource does not own is someone else's: applying
    // with force would take it over.
    if let Some(current) = &existing
        && !owned_by(&current.metadata, object)
    {
        let problem = Problem {
            reason: "NameConflict".to_owned(),
            message: format!(
                "Deployment {namespace}/{name} exists and is not owned by this LullDeployment;                  lull leaves it alone. Delete or rename it, or name the LullDeployment differently"
            ),
        };
        if new_generation
            || object
                .condition(crd::READY)
                .is_none_or(|c| c.reason != problem.reason)
        {
            ctx.event(
                object,
                EventType::Warning,
                "NameConflict",
                problem.message.clone(),
            )
            .await;
        }
        write_status(object, ctx, namespace, Some(spec), None, Some(&problem)).await?;
        return Ok(Action::requeue(SECRET_RETRY));
    }
    // A disabled deployment runs nothing, so it needs its secrets only once enabled.
    if spec.enabled
        && let Some(problem) = missing_secrets(ctx, namespace, spec).await?
    {
        // Once per generation or per new finding, not at every retry.
        let reported = object
            .condition(crd::READY)
            .is_some_and(|c| c.reason == problem.reason && c.message == problem.message);
        if new_generation || !reported {
            ctx.event(
                object,
                EventType::Warning,
                "MissingSecret",
                problem.message.clone(),
            )
            .await;
        }
        write_status(
            object,
            ctx,
            namespace,
            Some(spec),
            existing.as_ref(),
            Some(&problem),
        )
        .await?;
        return Ok(Action::requeue(SECRET_RETRY));
    }

    let options = RenderOptions {
        namespace: namespace.to_owned(),
        secret_name: ctx.secret_name.clone(),
        ..RenderOptions::default()
    };
    let mut rendered = render::render(&loaded.deployment, &options)?;
    let owner = {
        let mut owner = object
            .controller_owner_ref(&())
            .ok_or(Error::Incomplete("uid"))?;
        owner.block_owner_deletion = Some(true);
        owner
    };
    rendered.deployment.metadata.owner_references = Some(vec![owner.clone()]);
    rendered.service.metadata.owner_references = Some(vec![owner]);
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let mut applied = match &existing {
        None => {
            let initial = rendered.deployment.spec.as_ref().and_then(|s| s.replicas);
            let created = deployments
                .patch(&name, &apply, &Patch::Apply(&rendered.deployment))
                .await?;
            // The scale manager co-owns the initial count, so the next apply, which leaves
            // `replicas` out, does not reset it to 1.
            deployments
                .patch(
                    &name,
                    &PatchParams::apply(SCALE_FIELD_MANAGER).force(),
                    &Patch::Apply(json!({
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "metadata": { "name": name, "namespace": namespace },
                        "spec": { "replicas": initial },
                    })),
                )
                .await?;
            ctx.event(
                object,
                EventType::Normal,
                "Created",
                format!(
                    "created Deployment and Service {name} with {} replica(s)",
                    initial.unwrap_or(0)
                ),
            )
            .await;
            created
        }
        Some(current) => {
            if let Some(spec) = rendered.deployment.spec.as_mut() {
                spec.replicas = None;
            }
            let updated = deployments
                .patch(&name, &apply, &Patch::Apply(&rendered.deployment))
                .await?;
            if updated.metadata.generation != current.metadata.generation {
                ctx.event(
                    object,
                    EventType::Normal,
                    "Updated",
                    format!(
                        "applied a new version of Deployment {name}; it rolls out with strategy `{:?}`",
                        spec.rollout.strategy
                    ),
                )
                .await;
            }
            updated
        }
    };
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), namespace);
    services
        .patch(&name, &apply, &Patch::Apply(&rendered.service))
        .await?;

    if let Some((replicas, why)) = controller_count(spec) {
        let current = applied.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        if u32::try_from(current).ok() != Some(replicas) {
            deployments
                .patch_scale(
                    &name,
                    &PatchParams {
                        field_manager: Some(SCALE_FIELD_MANAGER.to_owned()),
                        ..PatchParams::default()
                    },
                    &Patch::Merge(json!({ "spec": { "replicas": replicas } })),
                )
                .await?;
            let reason = if spec.enabled { "Scaled" } else { "Disabled" };
            ctx.event(
                object,
                EventType::Normal,
                reason,
                format!("scaled from {current} to {replicas} replica(s): {why}"),
            )
            .await;
            if let Some(s) = applied.spec.as_mut() {
                s.replicas = i32::try_from(replicas).ok();
            }
        }
    }
    write_status(object, ctx, namespace, Some(spec), Some(&applied), None).await?;
    Ok(Action::requeue(RESYNC))
}

/// Whether `object` is the controlling owner of the object with metadata `meta`.
fn owned_by(meta: &ObjectMeta, object: &LullDeployment) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && Some(&r.uid) == object.metadata.uid.as_ref())
}

/// The count the controller sets itself, and why: none when autoscaling decides it.
fn controller_count(spec: &DeploymentSpec) -> Option<(u32, &'static str)> {
    if !spec.enabled {
        return Some((0, "enabled is false"));
    }
    match &spec.resources.autoscaling {
        Some(a) if a.enabled => None,
        _ => Some((
            spec.resources.replicas,
            "autoscaling is off; resources.replicas",
        )),
    }
}

fn errors_of(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The secret references the Secret cannot satisfy, as a problem; `None` when it holds every
/// key. Only the keys are looked at.
async fn missing_secrets(
    ctx: &Context,
    namespace: &str,
    spec: &DeploymentSpec,
) -> Result<Option<Problem>> {
    let references = secret_references(spec);
    if references.is_empty() {
        return Ok(None);
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret = secrets.get_opt(&ctx.secret_name).await?;
    let has = |key: &str| {
        secret.as_ref().is_some_and(|s| {
            s.data.as_ref().is_some_and(|d| d.contains_key(key))
                || s.string_data.as_ref().is_some_and(|d| d.contains_key(key))
        })
    };
    let missing: Vec<String> = references
        .iter()
        .filter(|(_, name)| !has(name.as_str()))
        .map(|(field, name)| format!("`{}` (for {field})", name.as_str()))
        .collect();
    if missing.is_empty() {
        return Ok(None);
    }
    let secret_name = &ctx.secret_name;
    let message = if secret.is_none() {
        format!(
            "Secret {namespace}/{secret_name} does not exist; it needs the key(s) {}. Create it: kubectl -n {namespace} create secret generic {secret_name} --from-literal=KEY=VALUE",
            missing.join(", ")
        )
    } else {
        format!(
            "Secret {namespace}/{secret_name} has no key(s) {}; add them, for example with kubectl -n {namespace} edit secret {secret_name}",
            missing.join(", ")
        )
    };
    Ok(Some(Problem {
        reason: "MissingSecret".to_owned(),
        message,
    }))
}

/// Writes the status when it differs from the one the resource has. The autoscaler's
/// `lastDecision` is not part of the write, so the two never overwrite each other.
async fn write_status(
    object: &LullDeployment,
    ctx: &Context,
    namespace: &str,
    spec: Option<&DeploymentSpec>,
    deployment: Option<&Deployment>,
    problem: Option<&Problem>,
) -> Result<()> {
    let name = object.name_any();
    let observed = Observed {
        generation: object.metadata.generation,
        slug: &name,
        spec,
        deployment,
        problem,
    };
    let previous = object.status.as_ref();
    let status = status::compute(&observed, previous);
    if previous == Some(&status) {
        return Ok(());
    }
    if let Some(was) = previous.and_then(|p| p.phase.as_deref())
        && status.phase.as_deref() != Some(was)
    {
        tracing::info!(resource = %name, from = was, to = ?status.phase, "phase changed");
    }
    let mut body =
        serde_json::to_value(&status).map_err(|e| Error::Kube(kube::Error::SerdeError(e)))?;
    if let Some(fields) = body.as_object_mut() {
        fields.remove("lastDecision");
    }
    let api: Api<LullDeployment> = Api::namespaced(ctx.client.clone(), namespace);
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": body })),
    )
    .await?;
    Ok(())
}

async fn cleanup(object: &LullDeployment, ctx: &Context, namespace: &str) -> Result<Action> {
    let name = object.name_any();
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), namespace);
    let mut deleted = Vec::new();
    if delete_owned(&deployments, &name, object).await? {
        deleted.push("Deployment");
    }
    if delete_owned(&services, &name, object).await? {
        deleted.push("Service");
    }
    if !deleted.is_empty() {
        ctx.event(
            object,
            EventType::Normal,
            "Deleted",
            format!("deleted {} {name}", deleted.join(" and ")),
        )
        .await;
    }
    Ok(Action::await_change())
}

/// Deletes the object `name` if `owner` controls it, and only that very object (a uid
/// precondition), so a same-named object created meanwhile by someone else survives. Whether
/// it deleted something.
async fn delete_owned<K>(api: &Api<K>, name: &str, owner: &LullDeployment) -> Result<bool>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let Some(current) = api.get_opt(name).await? else {
        return Ok(false);
    };
    if !owned_by(current.meta(), owner) {
        return Ok(false);
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: current.meta().uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::foreground()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        // Gone already, or replaced by an object that is not ours.
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(false),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests;
