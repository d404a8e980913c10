//! Replicas that die, fail, change and go away: restarts with back-off, liveness, rollouts,
//! disabling and removal.

mod common;

use common::*;
use lull_core::{Backend, DeploymentKey, ReplicaPhase};
use nix::sys::signal::Signal;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_leaves_the_set_and_is_restarted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = start(dir.path()).await;
    backend.apply(vec![deployment("web", &sh(SERVER))]);
    let key = DeploymentKey::new("web");
    let mut endpoints = backend.endpoints(&key).expect("known");
    backend.set_desired(&key, 1).await.expect("known");
    endpoints_where(&mut endpoints, "one ready replica", |s| s.len() == 1).await;
    let seen = record(&endpoints);
    let pid = pids(&backend, &key)[0];

    kill(pid, Signal::SIGKILL);
    // The endpoint borrow ends before the backend is asked for its pids: the backend publishes
    // under its own lock, so asking it while holding the watch's read lock would deadlock.
    eventually("ready again with a new process", || {
        let ready = endpoints.borrow().len() == 1;
        ready && {
            let now = pids(&backend, &key);
            now.len() == 1 && now[0] != pid
        }
    })
    .await;
    let sets = seen.lock().expect("not poisoned").clone();
    assert!(
        sets.iter().any(|s| s.is_empty()),
        "out of the set meanwhile: {sets:?}"
    );
    let replica = &replicas(&backend, &key)[0];
    assert_eq!(replica.restarts, 1);
    assert_eq!(
        replica.last_failure.as_deref(),
        Some("killed by signal 9 (SIGKILL)")
    );
    backend.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_backs_off_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = start(dir.path()).await;
    backend.apply(vec![deployment("broken", &sh("echo boom; exit 1"))]);
    let key = DeploymentKey::new("broken");
    backend.set_desired(&key, 1).await.expect("known");
    eventually("a second back-off", || {
        replicas(&backend, &key)
            .first()
            .is_some_and(|r| r.restarts >= 2 && r.phase == ReplicaPhase::BackingOff)
    })
    .await;
    let status = backend.status(&key).expect("status");
    let problem = status.problem.expect("a problem");
    assert!(
        problem.starts_with("crash loop: exited with status 1, retrying in "),
        "{problem}"
    );
    assert_eq!(status.ready, 0);
    backend.shutdown().await;
    let log = std::fs::read_to_string(dir.path().join("logs/broken/broken-1.log")).expect("log");
    assert!(log.contains("boom\n"), "{log}");
    assert!(
        log.contains("[lull] exited with status 1; restarting in 1s"),
        "{log}"
    );
    assert!(
        log.contains("[lull] exited with status 1; restarting in 2s"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_liveness_probe_restarts_the_replica() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = start(dir.path()).await;
    let spec = format!(
        "{}healthChecks:\n  liveness: {{ path: /missing, periodSeconds: 1, failureThreshold: 2 }}\n",
        sh(SERVER)
    );
    backend.apply(vec![deployment("sick", &spec)]);
    let key = DeploymentKey::new("sick");
    backend.set_desired(&key, 1).await.expect("known");
    // A slow start can fail liveness by a refused connection first, as on Kubernetes; the 404
    // is what this test waits for.
    eventually("a liveness restart on 404", || {
        replicas(&backend, &key).first().is_some_and(|r| {
            r.restarts >= 1
                && r.last_failure.as_deref()
                    == Some("liveness probe failed: 2 times in a row: GET /missing answered 404 Not Found")
        })
    })
    .await;
    backend.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_spec_rolls_over_without_losing_capacity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = start(dir.path()).await;
    let version = |v: &str| {
        deployment(
            "roll",
            &format!(
                "{}env:\n  - {{ name: VERSION, value: \"{v}\" }}\n",
                sh(&format!("echo version=$VERSION; {SERVER}"))
            ),
        )
    };
    backend.apply(vec![version("1")]);
    let key = DeploymentKey::new("roll");
    let mut endpoints = backend.endpoints(&key).expect("known");
    backend.set_desired(&key, 2).await.expect("known");
    endpoints_where(&mut endpoints, "two ready replicas", |s| s.len() == 2).await;
    let old = pids(&backend, &key);
    let seen = record(&endpoints);

    backend.apply(vec![version("2")]);
    eventually("two new replicas and no old one", || {
        let status = backend.status(&key).expect("status");
        let now = pids(&backend, &key);
        status.ready == 2 && now.len() == 2 && now.iter().all(|p| !old.contains(p))
    })
    .await;
    let sets = seen.lock().expect("not poisoned").clone();
    assert!(
        sets.iter().all(|s| s.len() >= 2),
        "never below two: {sets:?}"
    );
    for pid in old {
        eventually("old replica gone", || !alive(pid)).await;
    }
    backend.shutdown().await;
    let logs = dir.path().join("logs/roll");
    let text: String = std::fs::read_dir(&logs)
        .expect("logs")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .collect();
    assert_eq!(text.matches("version=2").count(), 2, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_safe_strategy_stops_the_old_version_before_starting_the_new() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = start(dir.path()).await;
    let version = |v: &str| {
        deployment(
            "careful",
            &format!(
                "{}env:\n  - {{ name: VERSION, value: \"{v}\" }}\nrollout: {{ strategy: safe }}\n",
                sh(SERVER)
            ),
        )
    };
    backend.apply(vec![version("1")]);
    let key = DeploymentKey::new("careful");
    let mut endpoints = backend.endpoints(&key).expect("known");
    backend.set_desired(&key, 2).await.expect("known");
    endpoints_where(&mut endpoints, "two ready replicas", |s| s.len() == 2).await;
    let old = pids(&backend, &key);

    backend.apply(vec![version("2")]);
    // Both old replicas leave the set at once; the new ones start only once they are gone.
    assert!(endpoints.borrow().is_empty());
    let mut overlap = false;
    eventually("two new replicas", || {
        let now = pids(&backend, &key);
        let new = now.iter().filter(|p| !old.contains(p)).count();
        overlap |= new > 0 && old.iter().any(|p| alive(*p));
        new == 2 && backend.status(&key).is_some_and(|s| s.ready == 2)
    })
    .await;
    assert!(!overlap, "old and new ran at once");
    backend.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_stops_every_replica_and_keeps_it_at_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = start(dir.path()).await;
    backend.apply(vec![deployment("toggle", &sh(SERVER))]);
    let key = DeploymentKey::new("toggle");
    let mut endpoints = backend.endpoints(&key).expect("known");
    backend.set_desired(&key, 2).await.expect("known");
    endpoints_where(&mut endpoints, "two ready replicas", |s| s.len() == 2).await;
    let running = pids(&backend, &key);

    backend.apply(vec![deployment(
        "toggle",
        &format!("enabled: false\n{}", sh(SERVER)),
    )]);
    assert!(endpoints.borrow().is_empty());
    eventually("all stopped", || replicas(&backend, &key).is_empty()).await;
    assert!(running.iter().all(|p| !alive(*p)));
    backend.set_desired(&key, 3).await.expect("known");
    let status = backend.status(&key).expect("status");
    assert_eq!((status.desired, status.replicas.len()), (0, 0));
    backend.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_deployment_is_stopped_and_forgotten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = start(dir.path()).await;
    backend.apply(vec![
        deployment("stays", &sh(SERVER)),
        deployment("goes", &sh(SERVER)),
    ]);
    let key = DeploymentKey::new("goes");
    let mut endpoints = backend.endpoints(&key).expect("known");
    backend.set_desired(&key, 1).await.expect("known");
    endpoints_where(&mut endpoints, "one ready replica", |s| s.len() == 1).await;
    let pid = pids(&backend, &key)[0];

    backend.apply(vec![deployment("stays", &sh(SERVER))]);
    assert!(backend.status(&key).is_none());
    assert!(backend.set_desired(&key, 1).await.is_err());
    endpoints_where(&mut endpoints, "out of the set", |s| s.is_empty()).await;
    eventually("stopped", || !alive(pid)).await;
    assert!(backend.status(&DeploymentKey::new("stays")).is_some());
    backend.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_is_a_problem_and_starts_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = start(dir.path()).await;
    let mut d = deployment("secretive", &sh(SERVER));
    d.deployment.spec.env.push(lull_spec::EnvVar {
        name: "TOKEN".to_owned(),
        value: lull_spec::secret::ConfigValue::parse("secret:token").expect("reference"),
    });
    backend.apply(vec![d]);
    let key = DeploymentKey::new("secretive");
    backend.set_desired(&key, 1).await.expect("known");
    let status = backend.status(&key).expect("status");
    let problem = status.problem.expect("a problem");
    assert!(problem.contains("secret `token`"), "{problem}");
    assert!(status.replicas.is_empty());
    backend.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_startup_probe_holds_readiness_back_until_it_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let started = dir.path().join("model-loaded");
    let spec = format!(
        "{}healthChecks:\n  startup: {{ exec: {{ command: [test, -f, {:?}] }}, periodSeconds: 60, failureThreshold: 10 }}\n",
        sh(SERVER),
        started.display().to_string(),
    );
    let backend = start(dir.path()).await;
    backend.apply(vec![deployment("slow", &spec)]);
    let key = DeploymentKey::new("slow");
    let mut endpoints = backend.endpoints(&key).expect("known");
    backend.set_desired(&key, 1).await.expect("known");

    // The server answers, but its startup probe has not passed: not ready.
    let mut addr = None;
    eventually("an address", || {
        addr = replicas(&backend, &key).first().and_then(|r| r.addr);
        addr.is_some()
    })
    .await;
    let addr = addr.expect("an address");
    let until = tokio::time::Instant::now() + PATIENCE;
    while get(addr, "/").await != Some(200) {
        assert!(
            tokio::time::Instant::now() < until,
            "the server never answered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(endpoints.borrow().is_empty());

    std::fs::write(&started, "").expect("touch");
    endpoints_where(&mut endpoints, "ready once started", |s| s.len() == 1).await;
    backend.shutdown().await;
}
