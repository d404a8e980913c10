//! End-to-end tests of `lull up` recovering from kills (issue 3): a replica SIGKILLed under load
//! is replaced while the other replica serves, and a SIGKILLed `lull up` started again on the
//! same state directory leaves no orphan and no duplicate replica.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{
    Sandbox, bounded, fixture_spec, get, replica_pids, replica_processes, replicas, snapshot,
    still_runs, wait_gone, wait_reaped,
};
use tokio::time::Instant;

/// One request of the load: when it was sent and how it ended.
struct Sent {
    at: Instant,
    outcome: Result<u16, String>,
}

/// Two replicas under steady load; one is SIGKILLed. Requests sent after lull noticed the kill
/// all get 200 (from the other replica), and the killed replica is replaced by a new process.
/// Requests in flight to the killed replica at the kill may fail; they are not counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_is_replaced_while_the_other_serves() {
    bounded(async {
        let sandbox = Sandbox::new();
        sandbox.write_spec(
            "sturdy.yaml",
            &fixture_spec(
                "sturdy",
                &["--startup-delay", "0ms", "--work", "0ms", "--sleep", "20ms"],
                "resources:\n  replicas: 2\n",
            ),
        );
        let lull = sandbox.up().start().await;
        let pids = lull.wait_ready("sturdy", 2).await;

        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let stop = stop.clone();
            let url = lull.url("/sturdy/predict");
            workers.spawn(async move {
                let mut sent = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let at = Instant::now();
                    let outcome = get(&url).await.map(|r| r.status);
                    sent.push(Sent { at, outcome });
                }
                sent
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;

        let victim = pids[0];
        let victim_process = snapshot(&[victim]);
        let before = lull.deployment("sturdy").await;
        let victim_id = replicas(&before)
            .iter()
            .find(|r| r["pid"] == victim)
            .and_then(|r| r["id"].as_str().map(str::to_owned))
            .expect("the victim's replica id");
        kill(Pid::from_raw(victim as i32), Signal::SIGKILL).expect("SIGKILL to a replica");

        // Noticed: lull's status no longer shows the victim's pid as a ready replica.
        lull.wait_for("sturdy", "the kill noticed", |d| {
            let still_ready = replicas(d)
                .iter()
                .any(|r| r["pid"] == victim && r["phase"] == "ready");
            (!still_ready).then_some(())
        })
        .await;
        let noticed = Instant::now();

        // Replaced: two ready replicas again, none of them the killed process.
        let replaced = lull
            .wait_for("sturdy", "the killed replica replaced", |d| {
                let ready: Vec<_> = replicas(d)
                    .into_iter()
                    .filter(|r| r["phase"] == "ready")
                    .collect();
                (ready.len() == 2 && ready.iter().all(|r| r["pid"] != victim)).then_some(ready)
            })
            .await;
        let comeback = replaced
            .iter()
            .find(|r| r["id"] == victim_id.as_str())
            .map(|r| r["restarts"].as_u64().unwrap_or(0));
        eprintln!("replacement: {replaced:?} (the victim's id restarted: {comeback:?})");
        wait_reaped(&victim_process, "the killed replica").await;
        // A little more load on the two replicas, then stop.
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Relaxed);

        let mut before_notice = (0, 0);
        let mut after_notice = 0;
        let mut failures_after = Vec::new();
        while let Some(done) = workers.join_next().await {
            for sent in done.expect("a load worker finished") {
                let ok = sent.outcome == Ok(200);
                if sent.at >= noticed {
                    after_notice += 1;
                    if !ok {
                        failures_after.push(sent.outcome);
                    }
                } else if ok {
                    before_notice.0 += 1;
                } else {
                    before_notice.1 += 1;
                }
            }
        }
        eprintln!(
            "before the kill was noticed: {} ok, {} failed; after: {after_notice}",
            before_notice.0, before_notice.1
        );
        assert!(
            after_notice > 0,
            "requests were sent after the kill was noticed"
        );
        assert!(
            failures_after.is_empty(),
            "{} of {after_notice} requests sent after the kill was noticed failed: {:?}",
            failures_after.len(),
            &failures_after[..failures_after.len().min(10)]
        );
        let last = lull.get("/sturdy/predict").await;
        assert_eq!(last.status, 200, "{last:?}");
    })
    .await;
}

/// `lull up` SIGKILLed and started again on the same state directory: every replica of the
/// first run is gone, and exactly the desired number of replicas runs, all children of the new
/// lull.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_lull_restarted_leaves_no_orphan_and_no_duplicate() {
    bounded(async {
        // A name of this run only, so that counting processes by deployment sees no other test's.
        let slug = format!("orphan-{}", std::process::id());
        let sandbox = Sandbox::new();
        sandbox.write_spec(
            "orphan.yaml",
            &fixture_spec(
                &slug,
                &["--startup-delay", "0ms", "--work", "0ms"],
                "resources:\n  replicas: 2\n",
            ),
        );

        let mut first = sandbox.up().start().await;
        let old_pids = first.wait_ready(&slug, 2).await;
        let old = snapshot(&old_pids);
        assert_eq!(old.len(), 2, "both replicas run: {old_pids:?}");
        assert!(
            old.iter().all(|p| p.ppid == first.pid),
            "the replicas are children of the first lull: {old:?}"
        );
        first.kill_hard();
        let orphans = old.iter().filter(|p| still_runs(p)).count();
        eprintln!("{orphans} replicas outlived the SIGKILLed lull");

        let second = sandbox.up().start().await;
        second.wait_ready(&slug, 2).await;
        wait_gone(&old, "replicas of the SIGKILLed lull").await;

        // Three ticks of samples: the running replicas are exactly the ones the new lull shows,
        // as many as it desires, and all its own children.
        for _ in 0..3 {
            let d = second.deployment(&slug).await;
            let desired = d["desired"].as_u64().expect("desired") as usize;
            let shown: BTreeSet<u32> = replica_pids(&d).into_iter().collect();
            let running = replica_processes(&slug);
            let running_pids: BTreeSet<u32> = running.iter().map(|p| p.pid).collect();
            assert_eq!(desired, 2, "{d:#}");
            assert_eq!(
                running_pids, shown,
                "running replica processes are the ones lull shows: {d:#}"
            );
            assert_eq!(running.len(), desired, "no duplicate replica: {running:?}");
            assert!(
                running.iter().all(|p| p.ppid == second.pid),
                "every running replica is a child of the new lull (pid {}): {running:?}",
                second.pid
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .await;
}
