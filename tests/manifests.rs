//! manifests/ and `lull render` output are Kubernetes objects: every document parses into its
//! k8s-openapi type without a field left over, the CRD is what `lull render crd` writes today,
//! and its schema is structural.

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use lull_kube::LullDeployment;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn lull(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_lull"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("lull runs");
    assert!(
        output.status.success(),
        "lull {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// The documents of a multi-document YAML text, as JSON values.
fn documents(text: &str) -> Vec<Value> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else if let Some(last) = docs.last_mut() {
            last.push_str(line);
            last.push('\n');
        }
    }
    docs.iter()
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .map(|d| serde_saphyr::from_str::<Value>(d).expect("a YAML document"))
        .collect()
}

/// Every key of `original` is still there after a trip through the typed object: a misspelt or
/// misplaced field would be dropped by the typed object and fail here.
fn assert_kept(original: &Value, typed: &Value, path: &str) {
    match (original, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let here = format!("{path}.{key}");
                match b.get(key) {
                    Some(other) => assert_kept(value, other, &here),
                    None => assert!(
                        value.is_null(),
                        "{here} is not a field of the Kubernetes type"
                    ),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{path}");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_kept(x, y, &format!("{path}[{i}]"));
            }
        }
        // Numbers may change form (1 → 1.0); the types already checked them.
        (Value::Number(_), Value::Number(_)) => {}
        (a, b) => assert_eq!(a, b, "{path}"),
    }
}

fn typed<T: DeserializeOwned + Serialize>(doc: &Value, name: &str) {
    let object: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{name} does not parse as its Kubernetes type: {e}"));
    let back = serde_json::to_value(&object).expect("serialises");
    assert_kept(doc, &back, name);
}

/// Parses one document into the k8s-openapi type of its kind; the kinds lull's manifests use.
fn check_document(doc: &Value, file: &str) -> String {
    let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
    let name = format!("{file}: {kind} {}", doc["metadata"]["name"]);
    match kind.as_str() {
        "Namespace" => typed::<Namespace>(doc, &name),
        "ServiceAccount" => typed::<ServiceAccount>(doc, &name),
        "ClusterRole" => typed::<ClusterRole>(doc, &name),
        "ClusterRoleBinding" => typed::<ClusterRoleBinding>(doc, &name),
        "Role" => typed::<Role>(doc, &name),
        "RoleBinding" => typed::<RoleBinding>(doc, &name),
        "Deployment" => typed::<Deployment>(doc, &name),
        "Service" => typed::<Service>(doc, &name),
        "PodDisruptionBudget" => typed::<PodDisruptionBudget>(doc, &name),
        "CustomResourceDefinition" => typed::<CustomResourceDefinition>(doc, &name),
        // The lull spec refuses unknown fields itself, and leaves defaults out when written
        // back, so parsing is the whole check.
        "LullDeployment" => {
            if let Err(e) = serde_json::from_value::<LullDeployment>(doc.clone()) {
                panic!("{name} does not parse: {e}");
            }
        }
        other => panic!("{name}: no Kubernetes type checks kind {other:?}"),
    }
    kind
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the directory reads")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn the_crd_is_what_lull_render_crd_writes() {
    let rendered = lull(&["render", "crd"]);
    let committed = std::fs::read_to_string(root().join("manifests/crd.yaml"))
        .expect("manifests/crd.yaml exists");
    assert!(
        rendered == committed,
        "manifests/crd.yaml is stale; regenerate it with `cargo run -- render crd > manifests/crd.yaml`"
    );
}

#[test]
fn the_crd_schema_is_structural() {
    let text = std::fs::read_to_string(root().join("manifests/crd.yaml")).expect("reads");
    let docs = documents(&text);
    assert_eq!(docs.len(), 1);
    let crd: CustomResourceDefinition =
        serde_json::from_value(docs[0].clone()).expect("a CustomResourceDefinition");
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("lulldeployments.lull.dev")
    );
    for version in &crd.spec.versions {
        // The schema as written, not as the typed object would keep it: unknown keywords count.
        let schema = docs[0]
            .pointer(&format!(
                "/spec/versions/{}/schema/openAPIV3Schema",
                crd.spec
                    .versions
                    .iter()
                    .position(|v| v.name == version.name)
                    .unwrap_or(0)
            ))
            .expect("a schema");
        assert_eq!(lull_kube::schema::violations(schema), Vec::<String>::new());
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.scale.as_ref())
                .is_some(),
            "the scale subresource is on"
        );
    }
}

#[test]
fn every_manifest_parses_into_its_kubernetes_type() {
    let mut kinds = Vec::new();
    for file in yaml_files(&root().join("manifests")) {
        let name = file.display().to_string();
        if file.ends_with("kustomization.yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("reads");
        for doc in documents(&text) {
            kinds.push(check_document(&doc, &name));
        }
    }
    for kind in [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "Role",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in manifests/");
    }
}

#[test]
fn the_kustomization_lists_every_manifest() {
    let text = std::fs::read_to_string(root().join("manifests/kustomization.yaml")).expect("reads");
    let kustomization = &documents(&text)[0];
    let mut listed: Vec<&str> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let files: Vec<String> = yaml_files(&root().join("manifests"))
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| n != "kustomization.yaml")
        .collect();
    listed.sort_unstable();
    assert_eq!(listed, files);
}

#[test]
fn the_examples_are_lull_deployments_that_load() {
    for file in yaml_files(&root().join("manifests/examples")) {
        let text = std::fs::read_to_string(&file).expect("reads");
        for doc in documents(&text) {
            check_document(&doc, &file.display().to_string());
            let object: LullDeployment = serde_json::from_value(doc).expect("a LullDeployment");
            let loaded = lull_kube::crd::load(&object)
                .unwrap_or_else(|e| panic!("{}: {e:?}", file.display()));
            assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        }
    }
}

#[test]
fn the_optional_service_monitor_is_a_prometheus_operator_object() {
    let text = std::fs::read_to_string(root().join("manifests/optional/servicemonitor.yaml"))
        .expect("reads");
    let doc = &documents(&text)[0];
    assert_eq!(doc["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(doc["kind"], "ServiceMonitor");
    assert_eq!(doc["spec"]["endpoints"][0]["port"], "admin");
}

#[test]
fn lull_render_output_parses_into_kubernetes_objects() {
    let text = lull(&["render", "--target", "kube", "examples/scale-to-zero.yaml"]);
    let docs = documents(&text);
    assert_eq!(docs.len(), 2, "{text}");
    let kinds: Vec<String> = docs
        .iter()
        .map(|d| check_document(d, "lull render"))
        .collect();
    assert_eq!(kinds, ["Deployment", "Service"]);
}
