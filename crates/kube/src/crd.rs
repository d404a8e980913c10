//! The `LullDeployment` custom resource: a lull spec as a Kubernetes object.
//!
//! Its `spec` is the lull spec itself ([`DeploymentSpec`], the same Rust type `lull up` loads),
//! so a spec file's content pastes under `spec:` unchanged. Its `status` says what lull did:
//! replicas desired and ready, the conditions `Ready`, `Active`, `ScaledToZero`, `Disabled` and
//! `Integrations`, the autoscaler's last decision and its reason, and the generation observed.
//!
//! The scale subresource maps to `spec.resources.replicas` (the static count, or the floor when
//! autoscaling is on without `minReplicas`), so `kubectl scale lulldeployment/NAME --replicas N`
//! works. The definition is written by [`crd`]; `manifests/crd.yaml` is its output, and a test
//! keeps the two equal.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceValidation, JSONSchemaProps,
};
use kube::{CustomResource, ResourceExt};
use lull_spec::names::is_dns_label;
use lull_spec::{DeploymentSpec, Diagnostic, Severity, Target};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::schema;

/// API group of lull's resources.
pub const GROUP: &str = "lull.dev";

/// Condition: the deployment's objects are applied and it can serve (at once, or by waking).
pub const READY: &str = "Ready";
/// Condition: at least one replica is ready.
pub const ACTIVE: &str = "Active";
/// Condition: an enabled deployment is at zero replicas and wakes on its next request.
pub const SCALED_TO_ZERO: &str = "ScaledToZero";
/// Condition: `enabled: false`; kept at zero and never woken.
pub const DISABLED: &str = "Disabled";
/// Condition: every integration is mounted (False names those Kubernetes cannot provide).
pub const INTEGRATIONS: &str = "Integrations";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec's schema has no structural form.
    #[error("the LullDeployment schema is not structural")]
    Schema(#[from] schema::Error),
    /// The schema could not be read as Kubernetes schema properties.
    #[error("the LullDeployment schema does not fit JSONSchemaProps")]
    Props(#[source] serde_json::Error),
    /// The definition could not be written as YAML.
    #[error("cannot write the CustomResourceDefinition as YAML")]
    Yaml(#[source] serde_saphyr::SerializeError),
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The spec of a [`LullDeployment`]: exactly a lull spec.
// Each `printcolumn(...)` is one column; clippy reads their repeated `type_` keys as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
#[kube(
    group = "lull.dev",
    version = "v1alpha1",
    kind = "LullDeployment",
    plural = "lulldeployments",
    shortname = "lull",
    category = "all",
    namespaced,
    status = "LullDeploymentStatus",
    derive = "PartialEq",
    schema = "disabled",
    doc = "A lull deployment: an HTTP service that lull keeps between its min and max replicas, scales to zero when idle and wakes on the first request.",
    scale(
        spec_replicas_path = ".spec.resources.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".status.desiredReplicas",
        description = "Replicas asked for"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Replicas receiving traffic"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.phase",
        description = "Active, ScaledToZero, Disabled, Starting or Failed"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.lastDecision.reason",
        description = "Why the autoscaler chose the desired count",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct LullDeploymentSpec(pub DeploymentSpec);

/// What lull did with a [`LullDeployment`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LullDeploymentStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Replicas of the Deployment now (the scale subresource's status).
    #[serde(default)]
    pub replicas: u32,
    /// Replicas asked for.
    #[serde(default)]
    pub desired_replicas: u32,
    /// Replicas ready to receive traffic.
    #[serde(default)]
    pub ready_replicas: u32,
    /// Label selector of the replicas' pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// One word for `kubectl get`: Active, ScaledToZero, Disabled, Starting or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Ready, Active, ScaledToZero, Disabled and Integrations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The autoscaler's latest change of the desired count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<LastDecision>,
}

/// One condition, as Kubernetes conditions are written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Ready, Active, ScaledToZero, Disabled or Integrations.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// One CamelCase word saying why.
    pub reason: String,
    /// What a person needs to know, and what to do.
    #[serde(default)]
    pub message: String,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
    /// The generation the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The autoscaler's decision, as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastDecision {
    /// Replicas decided.
    pub desired: u32,
    /// Why, such as `concurrency 24 / target 10 → 3`.
    pub reason: String,
    /// When (RFC 3339).
    pub time: String,
}

impl LastDecision {
    /// A decision made now.
    pub fn now(desired: u32, reason: String) -> Self {
        Self {
            desired,
            reason,
            time: k8s_openapi::jiff::Timestamp::now().to_string(),
        }
    }
}

/// The CustomResourceDefinition of [`LullDeployment`], with the structural form of the spec's
/// and the status's schemas.
pub fn crd() -> Result<CustomResourceDefinition> {
    let mut definition = <LullDeployment as kube::CustomResourceExt>::crd();
    let props: JSONSchemaProps = serde_json::from_value(openapi_schema()?).map_err(Error::Props)?;
    for version in &mut definition.spec.versions {
        version.schema = Some(CustomResourceValidation {
            open_api_v3_schema: Some(props.clone()),
        });
    }
    Ok(definition)
}

/// The definition as the YAML of `manifests/crd.yaml`.
pub fn crd_yaml() -> Result<String> {
    serde_saphyr::to_string(&crd()?).map_err(Error::Yaml)
}

/// The `openAPIV3Schema` of the resource, structural.
pub fn openapi_schema() -> Result<Value> {
    let mut spec = schema::structural(lull_spec::structure::spec_schema())?;
    // `kubectl scale` reads the scale subresource, which fails when the replicas path is absent;
    // these two defaults make `spec.resources.replicas` always present (1, as lull reads it).
    if let Some(resources) = spec.pointer_mut("/properties/resources") {
        resources["default"] = json!({});
    }
    if let Some(replicas) = spec.pointer_mut("/properties/resources/properties/replicas") {
        replicas["default"] = json!(1);
    }
    let generator = schemars::generate::SchemaSettings::openapi3()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let status = generator
        .into_root_schema_for::<LullDeploymentStatus>()
        .to_value();
    let status = schema::structural(&status)?;
    Ok(json!({
        "type": "object",
        "description": "A lull deployment: an HTTP service that lull keeps between its min and max replicas, scales to zero when idle and wakes on the first request.",
        "properties": {
            "spec": spec,
            "status": status,
        },
        "required": ["spec"],
    }))
}

impl LullDeployment {
    /// The condition of this type in the status, if there is one.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
    }
}

/// A resource's spec, loaded and checked as `lull up` loads a spec file.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The deployment, its slug the resource's name and its namespace the resource's.
    pub deployment: lull_spec::Deployment,
    /// What lull cannot honour as written.
    pub warnings: Vec<Diagnostic>,
}

/// Loads a resource's spec through lull's spec loader, so a resource gets every check and
/// message a spec file gets, with the Kubernetes target's. The objects it becomes are named by
/// `metadata.name` and live in the resource's namespace (owner references cannot cross
/// namespaces). Errors are every finding, errors and warnings.
pub fn load(object: &LullDeployment) -> std::result::Result<Loaded, Vec<Diagnostic>> {
    let name = object.name_any();
    let namespace = object.namespace().unwrap_or_default();
    let file = format!("LullDeployment {namespace}/{name}");
    let finding = |severity: Severity, path: &str, message: String, help: &str| Diagnostic {
        severity,
        file: file.clone(),
        at: None,
        path: path.to_owned(),
        deployment: Some(name.clone()),
        message,
        help: Some(help.to_owned()),
    };
    if !is_dns_label(&name) {
        return Err(vec![finding(
            Severity::Error,
            "metadata.name",
            format!("`{name}` is not a DNS label, and it names the Service"),
            "use 1 to 63 lower-case letters, digits and `-`",
        )]);
    }
    let yaml = serde_saphyr::to_string(&object.spec.0).map_err(|e| {
        vec![finding(
            Severity::Error,
            "spec",
            format!("cannot be read back as a spec: {e}"),
            "report this with the resource",
        )]
    })?;
    let mut catalog = lull_spec::load_str(&yaml, &file);
    catalog.check_target(Target::Kubernetes);
    // Lines and columns would point into YAML written here, not into anything the user wrote;
    // the field path says where.
    for diagnostic in &mut catalog.diagnostics {
        diagnostic.at = None;
    }
    let (mut deployments, mut warnings) = catalog.into_valid().map_err(|e| match e {
        lull_spec::load::Error::Invalid { diagnostics, .. } => diagnostics,
    })?;
    let Some(mut deployment) = deployments.pop() else {
        return Err(vec![finding(
            Severity::Error,
            "spec",
            "is empty".to_owned(),
            "give at least `name` and `image`",
        )]);
    };
    let declared = deployment
        .spec
        .kubernetes
        .namespace
        .replace(namespace.clone());
    if let Some(declared) = declared.filter(|d| *d != namespace) {
        warnings.push(finding(
            Severity::Warning,
            "spec.kubernetes.namespace",
            format!("is `{declared}`, but the objects are created in the resource's namespace `{namespace}`"),
            "remove it, or create the LullDeployment in that namespace",
        ));
    }
    deployment.slug = name;
    Ok(Loaded {
        deployment,
        warnings,
    })
}

/// Labels that select the pods of the deployment named `slug`.
pub fn selector_labels(slug: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(crate::render::NAME_LABEL.to_owned(), slug.to_owned())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_definition_has_status_scale_and_columns() {
        let definition = crd().expect("a definition");
        assert_eq!(
            definition.metadata.name.as_deref(),
            Some("lulldeployments.lull.dev")
        );
        assert_eq!(definition.spec.scope, "Namespaced");
        let version = &definition.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        let subresources = version.subresources.as_ref().expect("subresources");
        assert!(subresources.status.is_some());
        let scale = subresources.scale.as_ref().expect("scale");
        assert_eq!(scale.spec_replicas_path, ".spec.resources.replicas");
        assert_eq!(scale.status_replicas_path, ".status.replicas");
        assert_eq!(
            scale.label_selector_path.as_deref(),
            Some(".status.selector")
        );
        let columns: Vec<&str> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(columns, ["Desired", "Ready", "Status", "Reason", "Age"]);
    }

    #[test]
    fn the_schema_is_structural() {
        let schema = openapi_schema().expect("a schema");
        assert_eq!(schema::violations(&schema), Vec::<String>::new());
        assert_eq!(
            schema.pointer("/properties/spec/properties/resources/properties/replicas/default"),
            Some(&json!(1))
        );
        assert!(
            schema
                .pointer(
                    "/properties/status/properties/conditions/items/properties/lastTransitionTime"
                )
                .is_some()
        );
    }

    #[test]
    fn a_spec_file_pastes_under_spec() {
        let object: LullDeployment = serde_json::from_value(json!({
            "apiVersion": "lull.dev/v1alpha1",
            "kind": "LullDeployment",
            "metadata": { "name": "sentiment", "namespace": "ml" },
            "spec": {
                "name": "sentiment",
                "image": "registry.example/sentiment:1",
                "resources": { "autoscaling": { "minReplicas": 0, "maxReplicas": 3 } }
            }
        }))
        .expect("a LullDeployment");
        assert_eq!(object.spec.0.name, "sentiment");
        assert_eq!(object.status, None);
        let back = serde_json::to_value(&object).expect("serialises");
        assert_eq!(back["spec"]["image"], "registry.example/sentiment:1");
    }

    fn resource(name: &str, spec: serde_json::Value) -> LullDeployment {
        serde_json::from_value(json!({
            "apiVersion": "lull.dev/v1alpha1",
            "kind": "LullDeployment",
            "metadata": { "name": name, "namespace": "ml" },
            "spec": spec,
        }))
        .expect("a LullDeployment")
    }

    #[test]
    fn loading_names_the_objects_by_the_resource_in_its_namespace() {
        let loaded = load(&resource(
            "sentiment",
            json!({ "name": "Sentiment Model", "image": "app:1", "kubernetes": { "namespace": "other" } }),
        ))
        .expect("loads");
        assert_eq!(loaded.deployment.slug, "sentiment");
        assert_eq!(
            loaded.deployment.spec.kubernetes.namespace.as_deref(),
            Some("ml")
        );
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.path == "spec.kubernetes.namespace"),
            "{:?}",
            loaded.warnings
        );
    }

    #[test]
    fn loading_reports_what_a_spec_file_would() {
        let errors = load(&resource(
            "a",
            json!({ "name": "a", "resources": { "autoscaling": { "minReplicas": 3, "maxReplicas": 1 } } }),
        ))
        .expect_err("invalid");
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(text.iter().any(|t| t.contains("image")), "{text:?}");
        assert!(text.iter().any(|t| t.contains("maxReplicas")), "{text:?}");
        let bad_name = load(&resource(
            "Not_A_Label",
            json!({ "name": "a", "image": "app:1" }),
        ))
        .expect_err("the name is not a label");
        assert_eq!(bad_name[0].path, "metadata.name");
    }
}
