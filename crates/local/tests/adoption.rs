//! A lull that is killed leaves its replicas running; the next lull on the same state directory
//! must stop them, and only them, and start the desired count afresh.
//!
//! The killed lull is this test binary run again as a child process (the ignored helper test
//! below), so it dies by SIGKILL the way a real lull would.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::*;
use lull_core::{Backend, DeploymentKey};
use lull_local::{LocalBackend, LocalConfig, LocalDeployment};
use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Tells the helper test where its state directory is; without it the helper does nothing.
const HELPER_DIR: &str = "LULL_LOCAL_TEST_ADOPTION_DIR";

/// What the helper prints once its replicas are ready.
const READY_LINE: &str = "LULL-HELPER-READY";

fn adopted() -> LocalDeployment {
    deployment("adopted", &sh(&format!("sleep 1000 & {SERVER}")))
}

/// The lull that gets killed: runs only when the adoption test starts it.
#[test]
#[ignore = "run as a child process by a_restarted_lull_reaps_what_a_killed_one_left"]
fn helper_lull_that_gets_killed() {
    let Ok(dir) = std::env::var(HELPER_DIR) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let backend = start(Path::new(&dir)).await;
        backend.apply(vec![adopted()]);
        let key = DeploymentKey::new("adopted");
        let mut endpoints = backend.endpoints(&key).expect("known");
        backend.set_desired(&key, 2).await.expect("known");
        endpoints_where(&mut endpoints, "two ready replicas", |s| s.len() == 2).await;
        println!("{READY_LINE}");
        std::future::pending::<()>().await;
    });
}

/// Kills the helper's replica groups if the test fails before the second lull does; only
/// groups whose leader is still the recorded process.
struct Leftovers(Vec<(u32, u64)>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for &(pgid, start) in &self.0 {
            let same = procfs::process::Process::new(pgid as i32)
                .and_then(|p| p.stat())
                .is_ok_and(|s| s.starttime == start);
            if same {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pgid as i32),
                    Signal::SIGKILL,
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_lull_reaps_what_a_killed_one_left() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut helper = tokio::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--ignored",
            "--exact",
            "helper_lull_that_gets_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_DIR, dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the helper starts");
    let mut lines = BufReader::new(helper.stdout.take().expect("piped")).lines();
    tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.expect("reads") {
            if line.contains(READY_LINE) {
                return;
            }
        }
        panic!("the helper ended before its replicas were ready");
    })
    .await
    .expect("the helper's replicas become ready");

    let state = std::fs::read_to_string(dir.path().join("local-state.json")).expect("state");
    let state: serde_json::Value = serde_json::from_str(&state).expect("json");
    let recorded = state["deployments"]["adopted"]["replicas"]
        .as_array()
        .expect("recorded replicas")
        .clone();
    assert_eq!(recorded.len(), 2, "{state}");
    let leaders: Vec<(u32, u64)> = recorded
        .iter()
        .map(|r| {
            let pid = r["pgid"].as_u64().expect("pgid") as u32;
            (pid, r["startTimeTicks"].as_u64().expect("start time"))
        })
        .collect();
    let _cleanup = Leftovers(leaders.clone());
    let processes: Vec<u32> = leaders.iter().flat_map(|&(pgid, _)| group(pgid)).collect();
    assert!(
        processes.len() >= 4,
        "servers and their sleeps: {processes:?}"
    );

    // The state directory is taken while the helper lives.
    match LocalBackend::start(LocalConfig::new(dir.path())).await {
        Err(lull_local::Error::Locked { .. }) => {}
        Err(e) => panic!("expected the directory to be locked, got {e}"),
        Ok(_) => panic!("a second lull took a locked state directory"),
    }

    helper.kill().await.expect("SIGKILL the helper");
    for &pid in &processes {
        assert!(alive(pid), "{pid} outlives the killed lull");
    }

    let backend = start(dir.path()).await;
    for &pid in &processes {
        assert!(!alive(pid), "{pid} was reaped by the next lull");
    }
    backend.apply(vec![adopted()]);
    let key = DeploymentKey::new("adopted");
    let mut endpoints = backend.endpoints(&key).expect("known");
    // The desired count of the killed lull carries over, without a set_desired.
    endpoints_where(&mut endpoints, "two ready replicas", |s| s.len() == 2).await;
    let status = backend.status(&key).expect("status");
    assert_eq!((status.desired, status.replicas.len()), (2, 2));
    for replica in &status.replicas {
        let pid = replica.pid.expect("running");
        assert!(!processes.contains(&pid), "{pid} is new");
    }
    backend.shutdown().await;
}
