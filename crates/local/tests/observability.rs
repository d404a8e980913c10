//! What can be seen of replicas: their environment, their logs (rotated, and through
//! `logs::show`) and their cpu and memory.

mod common;

use std::time::Duration;

use common::*;
use lull_core::{Backend, DeploymentKey, MetricSource, ResourceMetric};
use lull_local::logs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_gets_its_port_names_and_resolved_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = start(dir.path()).await;
    let script = format!(
        "echo \"port=$PORT deployment=$LULL_DEPLOYMENT replica=$LULL_REPLICA token=$TOKEN model=$MODEL\"; {SERVER}"
    );
    let spec = format!(
        "{}env:\n  - {{ name: TOKEN, value: \"secret:hfToken\" }}\n  - {{ name: MODEL, value: tiny }}\n",
        sh(&script)
    );
    backend.apply(vec![deployment_with_secrets(
        "env-check",
        &spec,
        &[("hfToken", "hunter2")],
    )]);
    let key = DeploymentKey::new("env-check");
    let mut endpoints = backend.endpoints(&key).expect("known");
    backend.set_desired(&key, 1).await.expect("known");
    let set = endpoints_where(&mut endpoints, "one ready replica", |s| s.len() == 1).await;
    let port = set.endpoints()[0].addr.port();
    backend.shutdown().await;
    let log = std::fs::read_to_string(dir.path().join("logs/env-check/env-check-1.log"))
        .expect("the replica has a log");
    let want =
        format!("port={port} deployment=env-check replica=env-check-1 token=hunter2 model=tiny\n");
    assert!(log.contains(&want), "{log}");
    let state = std::fs::read_to_string(dir.path().join("local-state.json")).expect("state");
    assert!(
        !state.contains("hunter2"),
        "secrets never reach the state file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_written_rotated_and_shown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = start(dir.path()).await;
    // 40 MB of output, as fast as a pipe goes: what the disk does not keep up with is dropped
    // (and the log says so), but well over the 20 MiB of two rotations is written.
    let script = format!(
        "echo first line; yes 0123456789012345678901234567890123456789 | head -c 40000000; echo; {SERVER}"
    );
    backend.apply(vec![deployment("chatty", &sh(&script))]);
    let key = DeploymentKey::new("chatty");
    let mut endpoints = backend.endpoints(&key).expect("known");
    backend.set_desired(&key, 1).await.expect("known");
    endpoints_where(&mut endpoints, "one ready replica", |s| s.len() == 1).await;
    // The server starts after the flood; shutting down writes out what is queued.
    backend.shutdown().await;
    let logs_dir = backend.logs_dir().join("chatty");
    for name in ["chatty-1.log.1", "chatty-1.log.2"] {
        let size = std::fs::metadata(logs_dir.join(name))
            .expect("rotated")
            .len();
        assert!(size <= logs::ROTATE_BYTES, "{name} is {size} bytes");
    }
    assert!(!logs_dir.join("chatty-1.log.4").exists());

    let mut out = Vec::new();
    logs::show(dir.path(), "chatty", false, &mut out)
        .await
        .expect("shows");
    let text = String::from_utf8(out).expect("utf-8");
    let first = text
        .find("chatty-1 | first line\n")
        .expect("the first line");
    // Only lull's note that the replica started may come before it.
    assert!(first < 200, "oldest rotation first");
    assert!(text.lines().all(|l| l.starts_with("chatty-1 | ")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_shows_new_lines_and_new_replicas() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = start(dir.path()).await;
    let script = format!("echo hello from $LULL_REPLICA; {SERVER}");
    backend.apply(vec![deployment("follow", &sh(&script))]);
    let key = DeploymentKey::new("follow");
    let mut endpoints = backend.endpoints(&key).expect("known");
    backend.set_desired(&key, 1).await.expect("known");
    endpoints_where(&mut endpoints, "one ready replica", |s| s.len() == 1).await;

    let (writer, mut reader) = tokio::io::duplex(1024 * 1024);
    let state_dir = dir.path().to_path_buf();
    let follower =
        tokio::spawn(async move { logs::show(&state_dir, "follow", true, writer).await });
    let mut seen = String::new();
    let mut expect = async |want: &str| {
        use tokio::io::AsyncReadExt;
        let until = tokio::time::Instant::now() + PATIENCE;
        while !seen.contains(want) {
            let mut buf = [0; 4096];
            let n = tokio::time::timeout_at(until, reader.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {want:?} in {seen:?}"))
                .expect("reads");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    };
    expect("follow-1 | hello from follow-1\n").await;
    backend.set_desired(&key, 2).await.expect("known");
    expect("follow-2 | hello from follow-2\n").await;
    follower.abort();
    backend.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_replica_has_cpu_and_memory_samples() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = start(dir.path()).await;
    // The server and a busy loop in one process group: the group is what is measured.
    let script =
        "python3 -m http.server --bind 127.0.0.1 \"$PORT\" & i=0; while :; do i=$((i+1)); done";
    backend.apply(vec![deployment(
        "hot",
        &format!("{}resources: {{ maxMemory: 4Gi }}\n", sh(script)),
    )]);
    let key = DeploymentKey::new("hot");
    let mut endpoints = backend.endpoints(&key).expect("known");
    backend.set_desired(&key, 1).await.expect("known");
    endpoints_where(&mut endpoints, "one ready replica", |s| s.len() == 1).await;
    let status = backend.status(&key).expect("status");
    // Which one depends on whether this machine delegates cgroup v2 to lull.
    let limits = status.limits.expect("limits");
    assert!(
        limits == "cgroup v2 (cpu.max, memory.max)" || limits == "rlimit (RLIMIT_AS)",
        "{limits}"
    );
    if limits == "rlimit (RLIMIT_AS)" {
        let pid = pids(&backend, &key)[0];
        let table = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
        let line = table
            .lines()
            .find(|l| l.starts_with("Max address space"))
            .expect("an address space line");
        let values: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(values[3..5], ["4294967296", "4294967296"], "{line}");
    }

    let keys = [key.clone(), DeploymentKey::new("unknown")];
    let first = backend.sample(&keys).await.expect("samples");
    let memory = first[&key]
        .iter()
        .find(|s| s.metric == ResourceMetric::Memory)
        .expect("memory at once");
    assert!(memory.percent > 0.0 && memory.replicas == 1, "{memory:?}");
    assert!(
        first[&key].iter().all(|s| s.metric != ResourceMetric::Cpu),
        "cpu needs two readings"
    );
    assert!(!first.contains_key(&DeploymentKey::new("unknown")));

    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = backend.sample(&keys).await.expect("samples");
    let cpu = second[&key]
        .iter()
        .find(|s| s.metric == ResourceMetric::Cpu)
        .expect("cpu from two readings");
    assert!(cpu.percent > 0.0 && cpu.replicas == 1, "{cpu:?}");
    backend.shutdown().await;
}
