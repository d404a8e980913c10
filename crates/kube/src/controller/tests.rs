//! Every reconcile path against a mock API server: each request's method, path, query and
//! body is checked in the order the controller sends them.

use serde_json::{Value, json};

use super::*;
use crate::testing::{Call, Mock};

const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/ml/deployments/sentiment";
const SERVICE: &str = "/api/v1/namespaces/ml/services/sentiment";
const RESOURCE: &str = "/apis/lull.dev/v1alpha1/namespaces/ml/lulldeployments/sentiment";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/ml/events";

fn resource(spec: Value, extra_metadata: Value, status: Option<Value>) -> LullDeployment {
    let mut metadata = json!({
        "name": "sentiment", "namespace": "ml", "uid": "uid-1", "generation": 2,
        "finalizers": [FINALIZER],
    });
    if let (Some(m), Some(extra)) = (metadata.as_object_mut(), extra_metadata.as_object()) {
        m.extend(extra.clone());
    }
    let mut object = json!({
        "apiVersion": "lull.dev/v1alpha1", "kind": "LullDeployment",
        "metadata": metadata, "spec": spec,
    });
    if let Some(status) = status {
        object["status"] = status;
    }
    serde_json::from_value(object).expect("a LullDeployment")
}

fn scale_to_zero_spec() -> Value {
    json!({
        "name": "sentiment", "image": "registry.example/sentiment:1",
        "resources": { "cpu": "1", "autoscaling": { "minReplicas": 0, "maxReplicas": 3 } },
        "healthChecks": { "readiness": { "path": "/health" } }
    })
}

fn live_deployment(generation: i64, replicas: i32, ready: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "sentiment", "namespace": "ml", "generation": generation,
                      "ownerReferences": [{ "apiVersion": "lull.dev/v1alpha1", "kind": "LullDeployment",
                          "name": "sentiment", "uid": "uid-1", "controller": true }] },
        "spec": { "replicas": replicas, "selector": { "matchLabels": { "app.kubernetes.io/name": "sentiment" } },
                  "template": {} },
        "status": { "replicas": replicas, "readyReplicas": ready }
    })
}

fn start(mock_client: Client, object: LullDeployment) -> tokio::task::JoinHandle<Result<Action>> {
    let ctx = Arc::new(Context::new(
        mock_client,
        Some("lull-control-0".to_owned()),
        "lull-secrets",
    ));
    tokio::spawn(reconcile(Arc::new(object), ctx))
}

/// The applied object echoed back with a generation and a status, as the API server does.
fn echo(call: Call, generation: i64, replicas: i32, ready: i32) {
    let mut body = call.body.clone();
    body["metadata"]["generation"] = json!(generation);
    if body["spec"]["replicas"].is_null() {
        body["spec"]["replicas"] = json!(replicas);
    }
    body["status"] = json!({ "replicas": replicas, "readyReplicas": ready });
    call.respond(body);
}

async fn expect_event(mock: &Mock, reason: &str) -> Value {
    let call = mock.expect("POST", EVENTS).await;
    assert_eq!(call.body["reason"], reason, "{}", call.body);
    assert_eq!(call.body["regarding"]["kind"], "LullDeployment");
    assert_eq!(call.body["reportingController"], "lull-controller");
    let body = call.body.clone();
    call.respond(body.clone());
    body
}

async fn expect_status(mock: &Mock) -> Value {
    let call = mock.expect("PATCH", &format!("{RESOURCE}/status")).await;
    let status = call.body["status"].clone();
    assert!(
        status.get("lastDecision").is_none(),
        "the autoscaler owns lastDecision"
    );
    call.respond(json!({
        "apiVersion": "lull.dev/v1alpha1", "kind": "LullDeployment",
        "metadata": { "name": "sentiment", "namespace": "ml" }, "spec": { "name": "sentiment" },
        "status": status,
    }));
    status
}

fn condition<'a>(status: &'a Value, type_: &str) -> (&'a str, &'a str) {
    let c = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .expect("the condition is present");
    (
        c["status"].as_str().unwrap_or(""),
        c["reason"].as_str().unwrap_or(""),
    )
}

#[tokio::test]
async fn a_new_resource_gets_the_finalizer_first() {
    let (mock, client) = Mock::new();
    let object = resource(scale_to_zero_spec(), json!({ "finalizers": null }), None);
    let task = start(client, object);
    let call = mock.expect("PATCH", RESOURCE).await;
    assert_eq!(
        call.body,
        json!([
            { "op": "test", "path": "/metadata/finalizers", "value": null },
            { "op": "add", "path": "/metadata/finalizers", "value": [FINALIZER] }
        ])
    );
    let body = serde_json::to_value(resource(scale_to_zero_spec(), json!({}), None)).expect("json");
    call.respond(body);
    assert_eq!(
        task.await.expect("no panic").expect("reconciled"),
        Action::await_change()
    );
}

#[tokio::test]
async fn create_applies_both_objects_owned_and_hands_the_count_to_the_scale_manager() {
    let (mock, client) = Mock::new();
    let task = start(client, resource(scale_to_zero_spec(), json!({}), None));

    mock.expect("GET", DEPLOYMENT).await.fail(404, "NotFound");
    let apply = mock.expect("PATCH", DEPLOYMENT).await;
    assert!(
        apply.query.contains("fieldManager=lull&") || apply.query.ends_with("fieldManager=lull"),
        "{}",
        apply.query
    );
    assert!(apply.query.contains("force=true"), "{}", apply.query);
    let body = &apply.body;
    assert_eq!(body["kind"], "Deployment");
    assert_eq!(body["spec"]["replicas"], 0, "scale to zero starts at zero");
    let owner = &body["metadata"]["ownerReferences"][0];
    assert_eq!(
        (
            &owner["kind"],
            &owner["name"],
            &owner["uid"],
            &owner["controller"],
            &owner["blockOwnerDeletion"]
        ),
        (
            &json!("LullDeployment"),
            &json!("sentiment"),
            &json!("uid-1"),
            &json!(true),
            &json!(true)
        )
    );
    let container = &body["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.example/sentiment:1");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/health");
    echo(apply, 1, 0, 0);

    let handover = mock.expect("PATCH", DEPLOYMENT).await;
    assert!(
        handover.query.contains("fieldManager=lull-scale"),
        "{}",
        handover.query
    );
    assert_eq!(handover.body["spec"], json!({ "replicas": 0 }));
    echo(handover, 1, 0, 0);

    let event = expect_event(&mock, "Created").await;
    assert_eq!(event["type"], "Normal");

    let service = mock.expect("PATCH", SERVICE).await;
    assert!(
        service.query.contains("fieldManager=lull"),
        "{}",
        service.query
    );
    assert_eq!(service.body["kind"], "Service");
    assert_eq!(
        service.body["metadata"]["ownerReferences"][0]["uid"],
        "uid-1"
    );
    assert_eq!(service.body["spec"]["ports"][0]["name"], "http");
    let body = service.body.clone();
    service.respond(body);

    let status = expect_status(&mock).await;
    assert_eq!(status["observedGeneration"], 2);
    assert_eq!(status["phase"], "ScaledToZero");
    assert_eq!(status["selector"], "app.kubernetes.io/name=sentiment");
    assert_eq!(condition(&status, "Ready"), ("True", "ScaledToZero"));
    assert_eq!(condition(&status, "ScaledToZero"), ("True", "Idle"));
    assert_eq!(condition(&status, "Disabled"), ("False", "Enabled"));
    let action = task.await.expect("no panic").expect("reconciled");
    assert_eq!(action, Action::requeue(RESYNC));
}

#[tokio::test]
async fn update_applies_without_replicas_and_reports_a_new_version() {
    let (mock, client) = Mock::new();
    let mut spec = scale_to_zero_spec();
    spec["image"] = json!("registry.example/sentiment:2");
    let task = start(client, resource(spec, json!({}), None));

    mock.expect("GET", DEPLOYMENT)
        .await
        .respond(live_deployment(4, 2, 2));
    let apply = mock.expect("PATCH", DEPLOYMENT).await;
    assert!(
        apply.body["spec"].get("replicas").is_none(),
        "{}",
        apply.body["spec"]
    );
    assert_eq!(
        apply.body["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example/sentiment:2"
    );
    echo(apply, 5, 2, 2);
    expect_event(&mock, "Updated").await;
    let service = mock.expect("PATCH", SERVICE).await;
    let body = service.body.clone();
    service.respond(body);
    let status = expect_status(&mock).await;
    assert_eq!(status["phase"], "Active");
    assert_eq!(
        (
            status["desiredReplicas"].clone(),
            status["readyReplicas"].clone()
        ),
        (json!(2), json!(2))
    );
    assert_eq!(condition(&status, "Active"), ("True", "ReplicasReady"));
    task.await.expect("no panic").expect("reconciled");
}

#[tokio::test]
async fn an_unchanged_status_is_not_written_again() {
    let (mock, client) = Mock::new();
    let first = start(
        client.clone(),
        resource(scale_to_zero_spec(), json!({}), None),
    );
    mock.expect("GET", DEPLOYMENT)
        .await
        .respond(live_deployment(4, 1, 1));
    echo(mock.expect("PATCH", DEPLOYMENT).await, 4, 1, 1);
    let service = mock.expect("PATCH", SERVICE).await;
    let body = service.body.clone();
    service.respond(body);
    let status = expect_status(&mock).await;
    first.await.expect("no panic").expect("reconciled");

    // The same observation with the status just written: nothing to write, no event.
    let second = start(
        client,
        resource(scale_to_zero_spec(), json!({}), Some(status)),
    );
    mock.expect("GET", DEPLOYMENT)
        .await
        .respond(live_deployment(4, 1, 1));
    echo(mock.expect("PATCH", DEPLOYMENT).await, 4, 1, 1);
    let service = mock.expect("PATCH", SERVICE).await;
    let body = service.body.clone();
    service.respond(body);
    second.await.expect("no panic").expect("reconciled");
    mock.assert_idle().await;
}

#[tokio::test]
async fn disabled_scales_to_zero_through_the_scale_subresource() {
    let (mock, client) = Mock::new();
    let mut spec = scale_to_zero_spec();
    spec["enabled"] = json!(false);
    let task = start(client, resource(spec, json!({}), None));
    mock.expect("GET", DEPLOYMENT)
        .await
        .respond(live_deployment(4, 2, 2));
    echo(mock.expect("PATCH", DEPLOYMENT).await, 4, 2, 2);
    let service = mock.expect("PATCH", SERVICE).await;
    let body = service.body.clone();
    service.respond(body);

    let scale = mock.expect("PATCH", &format!("{DEPLOYMENT}/scale")).await;
    assert!(
        scale.query.contains("fieldManager=lull-scale"),
        "{}",
        scale.query
    );
    assert_eq!(scale.body, json!({ "spec": { "replicas": 0 } }));
    scale.respond(json!({ "apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": { "name": "sentiment" }, "spec": { "replicas": 0 } }));
    let event = expect_event(&mock, "Disabled").await;
    assert!(
        event["note"]
            .as_str()
            .is_some_and(|n| n.contains("from 2 to 0")),
        "{event}"
    );
    let status = expect_status(&mock).await;
    assert_eq!(status["phase"], "Disabled");
    assert_eq!(condition(&status, "Disabled"), ("True", "EnabledFalse"));
    assert_eq!(condition(&status, "Ready"), ("False", "Disabled"));
    task.await.expect("no panic").expect("reconciled");
}

#[tokio::test]
async fn a_fixed_count_is_patched_when_the_deployment_differs() {
    let (mock, client) = Mock::new();
    // What `kubectl scale lulldeployment/sentiment --replicas 3` leaves in the spec.
    let spec = json!({ "name": "sentiment", "image": "app:1", "resources": { "replicas": 3, "cpu": "1" } });
    let task = start(client, resource(spec, json!({}), None));
    mock.expect("GET", DEPLOYMENT)
        .await
        .respond(live_deployment(4, 1, 1));
    echo(mock.expect("PATCH", DEPLOYMENT).await, 4, 1, 1);
    let service = mock.expect("PATCH", SERVICE).await;
    let body = service.body.clone();
    service.respond(body);
    let scale = mock.expect("PATCH", &format!("{DEPLOYMENT}/scale")).await;
    assert_eq!(scale.body, json!({ "spec": { "replicas": 3 } }));
    scale.respond(json!({ "apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": { "name": "sentiment" }, "spec": { "replicas": 3 } }));
    expect_event(&mock, "Scaled").await;
    let status = expect_status(&mock).await;
    assert_eq!(status["desiredReplicas"], 3);
    assert_eq!(condition(&status, "Ready"), ("True", "Serving"));
    task.await.expect("no panic").expect("reconciled");
}

#[tokio::test]
async fn a_missing_secret_key_applies_nothing_and_says_what_to_create() {
    let (mock, client) = Mock::new();
    let spec = json!({ "name": "sentiment", "image": "app:1", "resources": { "cpu": "1" },
        "env": [{ "name": "HF_TOKEN", "value": "secret:hfToken" }] });
    let task = start(client, resource(spec, json!({}), None));
    mock.expect("GET", DEPLOYMENT).await.fail(404, "NotFound");
    mock.expect("GET", "/api/v1/namespaces/ml/secrets/lull-secrets")
        .await
        .respond(json!({ "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": "lull-secrets", "namespace": "ml" },
            "data": { "otherKey": "eA==" } }));
    let event = expect_event(&mock, "MissingSecret").await;
    assert_eq!(event["type"], "Warning");
    let note = event["note"].as_str().unwrap_or_default();
    assert!(note.contains("`hfToken` (for env[0].value)"), "{note}");
    assert!(!note.contains("eA=="), "values are never shown");
    let status = expect_status(&mock).await;
    assert_eq!(condition(&status, "Ready"), ("False", "MissingSecret"));
    assert_eq!(status["phase"], "Failed");
    let action = task.await.expect("no panic").expect("reconciled");
    assert_eq!(action, Action::requeue(SECRET_RETRY));
    mock.assert_idle().await;
}

#[tokio::test]
async fn an_invalid_spec_is_a_condition_and_an_event() {
    let (mock, client) = Mock::new();
    let spec = json!({ "name": "sentiment",
        "resources": { "autoscaling": { "minReplicas": 4, "maxReplicas": 2 } } });
    let task = start(client, resource(spec, json!({}), None));
    mock.expect("GET", DEPLOYMENT).await.fail(404, "NotFound");
    let event = expect_event(&mock, "InvalidSpec").await;
    assert!(
        event["note"]
            .as_str()
            .is_some_and(|n| n.contains("maxReplicas")),
        "{event}"
    );
    let status = expect_status(&mock).await;
    assert_eq!(condition(&status, "Ready"), ("False", "InvalidSpec"));
    assert_eq!(
        task.await.expect("no panic").expect("reconciled"),
        Action::await_change()
    );
    mock.assert_idle().await;
}

#[tokio::test]
async fn deletion_removes_the_objects_it_owns_then_the_finalizer() {
    let (mock, client) = Mock::new();
    let object = resource(
        scale_to_zero_spec(),
        json!({ "deletionTimestamp": "2026-01-01T00:00:00Z" }),
        None,
    );
    let task = start(client, object.clone());
    let mut owned = live_deployment(4, 0, 0);
    owned["metadata"]["uid"] = json!("deployment-uid");
    mock.expect("GET", DEPLOYMENT).await.respond(owned.clone());
    let delete = mock.expect("DELETE", DEPLOYMENT).await;
    assert_eq!(delete.body["propagationPolicy"], "Foreground");
    assert_eq!(delete.body["preconditions"]["uid"], "deployment-uid");
    delete.respond(owned);
    // Already gone is fine.
    mock.expect("GET", SERVICE).await.fail(404, "NotFound");
    let event = expect_event(&mock, "Deleted").await;
    assert_eq!(event["note"], "deleted Deployment sentiment");
    let remove = mock.expect("PATCH", RESOURCE).await;
    assert_eq!(
        remove.body,
        json!([
            { "op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER },
            { "op": "remove", "path": "/metadata/finalizers/0" }
        ])
    );
    remove.respond(serde_json::to_value(&object).expect("json"));
    assert_eq!(
        task.await.expect("no panic").expect("reconciled"),
        Action::await_change()
    );
}

#[tokio::test]
async fn deletion_leaves_objects_it_does_not_own() {
    let (mock, client) = Mock::new();
    let object = resource(
        scale_to_zero_spec(),
        json!({ "deletionTimestamp": "2026-01-01T00:00:00Z" }),
        None,
    );
    let task = start(client, object.clone());
    let mut foreign = live_deployment(4, 1, 1);
    foreign["metadata"]["ownerReferences"] = json!(null);
    mock.expect("GET", DEPLOYMENT).await.respond(foreign);
    mock.expect("GET", SERVICE).await.respond(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "sentiment", "namespace": "ml" }
    }));
    let remove = mock.expect("PATCH", RESOURCE).await;
    remove.respond(serde_json::to_value(&object).expect("json"));
    task.await.expect("no panic").expect("reconciled");
    mock.assert_idle().await;
}

#[tokio::test]
async fn a_failed_cleanup_keeps_the_finalizer() {
    let (mock, client) = Mock::new();
    let object = resource(
        scale_to_zero_spec(),
        json!({ "deletionTimestamp": "2026-01-01T00:00:00Z" }),
        None,
    );
    let task = start(client, object);
    mock.expect("GET", DEPLOYMENT)
        .await
        .respond(live_deployment(4, 0, 0));
    // Retried by the client on 5xx; a refusal is final.
    mock.expect("DELETE", DEPLOYMENT)
        .await
        .fail(403, "Forbidden");
    assert!(task.await.expect("no panic").is_err());
    mock.assert_idle().await;
}

#[tokio::test]
async fn a_secret_still_missing_is_not_reported_again() {
    let (mock, client) = Mock::new();
    let spec = json!({ "name": "sentiment", "image": "app:1", "resources": { "cpu": "1" },
        "env": [{ "name": "HF_TOKEN", "value": "secret:hfToken" }] });
    let first = start(client.clone(), resource(spec.clone(), json!({}), None));
    mock.expect("GET", DEPLOYMENT).await.fail(404, "NotFound");
    mock.expect("GET", "/api/v1/namespaces/ml/secrets/lull-secrets")
        .await
        .fail(404, "NotFound");
    let event = expect_event(&mock, "MissingSecret").await;
    assert!(
        event["note"]
            .as_str()
            .is_some_and(|n| n.contains("does not exist")),
        "{event}"
    );
    let status = expect_status(&mock).await;
    first.await.expect("no panic").expect("reconciled");

    // The retry finds the same problem: no event, no status write.
    let retry = start(client, resource(spec, json!({}), Some(status)));
    mock.expect("GET", DEPLOYMENT).await.fail(404, "NotFound");
    mock.expect("GET", "/api/v1/namespaces/ml/secrets/lull-secrets")
        .await
        .fail(404, "NotFound");
    assert_eq!(
        retry.await.expect("no panic").expect("reconciled"),
        Action::requeue(SECRET_RETRY)
    );
    mock.assert_idle().await;
}

#[tokio::test]
async fn a_deployment_lull_does_not_own_is_left_alone() {
    let (mock, client) = Mock::new();
    let task = start(client, resource(scale_to_zero_spec(), json!({}), None));
    let mut foreign = live_deployment(7, 3, 3);
    foreign["metadata"]["ownerReferences"] = json!(null);
    mock.expect("GET", DEPLOYMENT).await.respond(foreign);
    let event = expect_event(&mock, "NameConflict").await;
    assert_eq!(event["type"], "Warning");
    let status = expect_status(&mock).await;
    assert_eq!(condition(&status, "Ready"), ("False", "NameConflict"));
    task.await.expect("no panic").expect("reconciled");
    mock.assert_idle().await;
}
