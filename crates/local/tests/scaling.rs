//! Scaling real replicas up and down: the endpoint set follows readiness, stopped replicas are
//! drained first and leave nothing running.

mod common;

use std::sync::Arc;

use common::*;
use lull_core::{Backend, DeploymentKey, ReplicaPhase};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_from_zero_to_two_and_back_to_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = start(dir.path()).await;
    backend.apply(vec![deployment("web", &sh(SERVER))]);
    let key = DeploymentKey::new("web");
    let mut endpoints = backend.endpoints(&key).expect("web is known");
    assert!(endpoints.borrow().is_empty());
    assert_eq!(backend.status(&key).expect("status").desired, 0);

    backend.set_desired(&key, 2).await.expect("web is known");
    let set = endpoints_where(&mut endpoints, "two ready replicas", |s| s.len() == 2).await;
    for endpoint in set.endpoints() {
        assert_eq!(get(endpoint.addr, "/").await, Some(200), "{endpoint:?}");
    }
    let status = backend.status(&key).expect("status");
    assert_eq!((status.desired, status.ready), (2, 2));
    assert!(
        status
            .replicas
            .iter()
            .all(|r| r.phase == ReplicaPhase::Ready)
    );
    assert_eq!(status.limits.as_deref(), Some("none"));
    let pids = pids(&backend, &key);
    assert_eq!(pids.len(), 2);

    backend.set_desired(&key, 0).await.expect("web is known");
    // Chosen replicas leave the set before they are stopped.
    assert!(endpoints.borrow().is_empty());
    eventually("every replica gone", || replicas(&backend, &key).is_empty()).await;
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{pid} is reaped"
        );
    }
    backend.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_is_not_ready_until_its_readiness_probe_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ready_file = dir.path().join("ready");
    let spec = format!(
        "{}env:\n  - {{ name: READY_FILE, value: {:?} }}\n\
         healthChecks:\n  readiness: {{ path: /health, periodSeconds: 1 }}\n",
        python(GATED_SERVER),
        ready_file.display().to_string(),
    );
    let backend = start(dir.path()).await;
    backend.apply(vec![deployment("gated", &spec)]);
    let key = DeploymentKey::new("gated");
    let mut endpoints = backend.endpoints(&key).expect("known");
    backend.set_desired(&key, 1).await.expect("known");

    // The server answers, but 503 on /health: the replica stays out of the set.
    let mut addr = None;
    eventually("the server answers", || {
        addr = replicas(&backend, &key).first().and_then(|r| r.addr);
        addr.is_some()
    })
    .await;
    let addr = addr.expect("an address");
    let until = tokio::time::Instant::now() + PATIENCE;
    while get(addr, "/health").await != Some(503) {
        assert!(
            tokio::time::Instant::now() < until,
            "the server never answered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Several fast probes see 503 meanwhile.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(endpoints.borrow().is_empty());
    let status = backend.status(&key).expect("status");
    assert_eq!(status.ready, 0);
    assert_eq!(status.replicas[0].phase, ReplicaPhase::Starting);

    std::fs::write(&ready_file, "").expect("touch");
    let set = endpoints_where(&mut endpoints, "ready once /health passes", |s| {
        s.len() == 1
    })
    .await;
    assert_eq!(set.endpoints()[0].addr, addr);
    backend.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_waits_for_in_flight_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = start(dir.path()).await;
    let load = Arc::new(FakeLoad::default());
    backend.set_replica_load(load.clone());
    backend.apply(vec![deployment(
        "busy",
        &format!("{}terminationGracePeriod: 5m\n", sh(SERVER)),
    )]);
    let key = DeploymentKey::new("busy");
    let mut endpoints = backend.endpoints(&key).expect("known");
    backend.set_desired(&key, 1).await.expect("known");
    let set = endpoints_where(&mut endpoints, "one ready replica", |s| s.len() == 1).await;
    let replica = set.endpoints()[0].replica.clone();
    let pid = pids(&backend, &key)[0];
    load.set(&replica, 1);

    backend.set_desired(&key, 0).await.expect("known");
    assert!(endpoints.borrow().is_empty(), "out of the set at once");
    // With a request in flight and minutes of grace left, it keeps running.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(alive(pid), "still serving its request");
    let status = backend.status(&key).expect("status");
    assert_eq!(status.replicas[0].phase, ReplicaPhase::Draining);

    load.set(&replica, 0);
    eventually("stopped once idle", || !alive(pid)).await;
    eventually("forgotten", || replicas(&backend, &key).is_empty()).await;
    backend.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_escalates_to_sigkill_for_a_replica_that_ignores_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = start(dir.path()).await;
    let script = format!("trap '' TERM; {SERVER}");
    backend.apply(vec![deployment(
        "stubborn",
        &format!("{}terminationGracePeriod: 1s\n", sh(&script)),
    )]);
    let key = DeploymentKey::new("stubborn");
    let mut endpoints = backend.endpoints(&key).expect("known");
    backend.set_desired(&key, 1).await.expect("known");
    endpoints_where(&mut endpoints, "one ready replica", |s| s.len() == 1).await;
    let pid = pids(&backend, &key)[0];

    backend.set_desired(&key, 0).await.expect("known");
    eventually("killed", || !alive(pid)).await;
    eventually("forgotten", || replicas(&backend, &key).is_empty()).await;
    backend.shutdown().await;
    let log = std::fs::read_to_string(dir.path().join("logs/stubborn/stubborn-1.log"))
        .expect("the replica has a log");
    assert!(log.contains("killed by signal 9 (SIGKILL)"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_s_children_die_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = start(dir.path()).await;
    let script = format!("sleep 1000 & {SERVER}");
    backend.apply(vec![deployment("parent", &sh(&script))]);
    let key = DeploymentKey::new("parent");
    let mut endpoints = backend.endpoints(&key).expect("known");
    backend.set_desired(&key, 1).await.expect("known");
    endpoints_where(&mut endpoints, "one ready replica", |s| s.len() == 1).await;
    let pgid = pids(&backend, &key)[0];
    let members = group(pgid);
    assert!(members.len() >= 2, "the server and its sleep: {members:?}");

    backend.set_desired(&key, 0).await.expect("known");
    eventually("the whole group is gone", || group(pgid).is_empty()).await;
    for pid in members {
        assert!(!alive(pid), "{pid} is gone");
    }
    backend.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_every_replica_of_every_deployment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = start(dir.path()).await;
    backend.apply(vec![
        deployment("one", &sh(SERVER)),
        deployment("two", &sh(&format!("sleep 1000 & {SERVER}"))),
    ]);
    let mut all = Vec::new();
    for (name, n) in [("one", 2), ("two", 1)] {
        let key = DeploymentKey::new(name);
        let mut endpoints = backend.endpoints(&key).expect("known");
        backend.set_desired(&key, n).await.expect("known");
        endpoints_where(&mut endpoints, "ready replicas", |s| s.len() == n as usize).await;
        all.extend(pids(&backend, &key).into_iter().flat_map(group));
    }
    backend.shutdown().await;
    for pid in all {
        assert!(!alive(pid), "{pid} is gone when shutdown returns");
    }
    let state = std::fs::read_to_string(dir.path().join("local-state.json")).expect("state");
    let state: serde_json::Value = serde_json::from_str(&state).expect("json");
    // Desired counts stay for the next start; no process is left recorded.
    assert_eq!(state["deployments"]["one"]["desired"], 2);
    assert!(
        state["deployments"]["one"].get("replicas").is_none(),
        "{state}"
    );
}
