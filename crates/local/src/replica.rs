//! One replica's life, run by a task of its own: start the process, probe it, publish it while
//! ready, restart it with back-off when it exits or fails its liveness probe, and when asked to
//! stop, drain it and stop its process group.
//!
//! Stopping follows Kubernetes pod termination within `terminationGracePeriod`: the replica has
//! already left the endpoint set; lull waits until the activators have no request in flight to it
//! (or the grace period is over), sends SIGTERM to its group, waits for the rest of the grace
//! period, then sends SIGKILL.

use std::sync::Arc;
use std::time::Duration;

use lull_core::{ReplicaId, ReplicaLoad, ReplicaPhase};
use lull_spec::secret::Secret;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::backend::Shared;
use crate::backoff::Backoff;
use crate::health::{self, Target};
use crate::limits;
use crate::logs::ReplicaLog;
use crate::process::{self, Launch, ReplicaProcess, describe_exit};
use crate::supervisor::{Running, Supervisor, reconcile};
use crate::template::Template;

/// How often a draining replica's in-flight count is checked.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// What a replica task needs.
pub(crate) struct ReplicaTask {
    /// The backend.
    pub shared: Arc<Shared>,
    /// Its deployment.
    pub supervisor: Arc<Supervisor>,
    /// Its id.
    pub id: ReplicaId,
    /// What it runs.
    pub template: Arc<Template>,
    /// Cancelled when it must stop.
    pub stop: CancellationToken,
}

/// How one run of the process ended.
enum RunEnd {
    /// It was asked to stop and did.
    Stopped,
    /// It failed and is to be restarted.
    Failed { why: String, ran_for: Duration },
}

/// Runs the replica until it is asked to stop and its processes are gone.
pub(crate) async fn run(task: ReplicaTask) {
    let ReplicaTask {
        shared,
        supervisor,
        id,
        stop,
        ..
    } = &task;
    let log = ReplicaLog::open(
        shared.logs_dir().join(supervisor.key.as_str()),
        id,
        &shared.tasks,
    );
    let mut backoff = Backoff::default();
    while !stop.is_cancelled() {
        let (why, ran_for) = match run_once(&task, &log).await {
            RunEnd::Stopped => break,
            RunEnd::Failed { why, ran_for } => (why, ran_for),
        };
        let wait = backoff.after_run(ran_for);
        log.note(format_args!("{why}; restarting in {}s", wait.as_secs()));
        tracing::warn!(replica = %id, %why, wait_secs = wait.as_secs(), "replica failed; restarting");
        let retry_at = Instant::now() + wait;
        supervisor.update(id, |r| {
            r.restarts += 1;
            r.last_failure = Some(why);
            r.retry_at = Some(retry_at);
            if r.phase != ReplicaPhase::Draining {
                r.phase = ReplicaPhase::BackingOff;
            }
        });
        reconcile(shared, supervisor);
        tokio::select! {
            () = stop.cancelled() => break,
            () = sleep_until(retry_at) => {}
        }
    }
    supervisor.forget(id);
    reconcile(shared, supervisor);
    shared.persist().await;
    shared.forget_if_finished(supervisor);
}

/// Starts the process once and supervises it until it stops or fails.
async fn run_once(task: &ReplicaTask, log: &ReplicaLog) -> RunEnd {
    let ReplicaTask {
        shared,
        supervisor,
        id,
        template,
        stop,
    } = task;
    let failed = |why: String| RunEnd::Failed {
        why,
        ran_for: Duration::ZERO,
    };
    // Held until this run's process is gone, so no other replica is given the port meanwhile.
    let lease = match shared.ports().lease() {
        Ok(lease) => lease,
        Err(e) => return failed(e.to_string()),
    };
    let port = lease.port();
    let env = replica_env(template, port, supervisor.key.as_str(), id);
    let spawned = match process::spawn(&Launch {
        program: &template.program,
        args: &template.args,
        dir: template.dir.as_deref(),
        env: &env,
    }) {
        Ok(spawned) => spawned,
        Err(e) => return failed(e.to_string()),
    };
    let process = spawned.process;
    log.attach(spawned.stdout);
    log.attach(spawned.stderr);
    let pid = process.pid();
    let cgroup = match shared.limits().apply(id, pid, &template.limits) {
        Ok(cgroup) => cgroup,
        Err(e) => {
            log.note(format_args!("limits not applied: {e}"));
            tracing::warn!(replica = %id, error = %e, "limits not applied");
            None
        }
    };
    supervisor.update(id, |r| {
        r.process = Some(Running {
            pid,
            start_ticks: process.start_ticks(),
            port,
            cgroup: cgroup.clone(),
        });
        r.retry_at = None;
        if r.phase != ReplicaPhase::Draining {
            r.phase = ReplicaPhase::Starting;
        }
    });
    log.note(format_args!("started pid {pid} with PORT={port}"));
    tracing::info!(replica = %id, pid, port, "replica started");
    // Recorded before anything else, so that a lull killed from here on leaves nothing unknown.
    shared.persist().await;
    let started = Instant::now();

    enum Outcome {
        Stop,
        Exited,
        Unhealthy(health::Unhealthy),
    }
    let target = Target {
        port,
        env: &env,
        dir: template.dir.as_deref(),
    };
    let outcome = tokio::select! {
        biased;
        () = stop.cancelled() => Outcome::Stop,
        () = process.exited() => Outcome::Exited,
        why = health::supervise(&template.probes, &target, |ready| {
            supervisor.set_ready(id, ready);
            reconcile(shared, supervisor);
        }) => Outcome::Unhealthy(why),
    };
    let (status, why) = match outcome {
        Outcome::Stop => {
            let deadline = Instant::now() + supervisor.grace();
            drain(shared.replica_load(), id, &process, deadline).await;
            log.note("stopping: SIGTERM to the process group");
            (process.terminate(deadline).await, None)
        }
        Outcome::Exited => {
            supervisor.fail(id);
            reconcile(shared, supervisor);
            let status = process.reap().await;
            (status, Some(describe_exit(status)))
        }
        Outcome::Unhealthy(why) => {
            supervisor.fail(id);
            reconcile(shared, supervisor);
            log.note(format_args!("{why}: SIGTERM to the process group"));
            let deadline = Instant::now() + supervisor.grace();
            (process.terminate(deadline).await, Some(why.to_string()))
        }
    };
    log.note(describe_exit(status));
    if let Some(cgroup) = &cgroup {
        limits::release(cgroup).await;
    }
    supervisor.update(id, |r| r.process = None);
    drop(lease);
    shared.persist().await;
    match why {
        None => RunEnd::Stopped,
        Some(why) => RunEnd::Failed {
            why,
            ran_for: started.elapsed(),
        },
    }
}

/// Waits until no request is in flight to the replica, the deadline passes or the process exits.
async fn drain(
    load: Option<Arc<dyn ReplicaLoad>>,
    id: &ReplicaId,
    process: &ReplicaProcess,
    deadline: Instant,
) {
    let Some(load) = load else { return };
    let idle = async {
        while load.in_flight(id) > 0 && Instant::now() < deadline {
            sleep(DRAIN_POLL).await;
        }
    };
    tokio::select! {
        () = idle => {}
        () = process.exited() => {}
    }
}

/// The spec's environment, then what lull sets (and so wins over the spec): `PORT`,
/// `LULL_DEPLOYMENT` and `LULL_REPLICA`.
fn replica_env(
    template: &Template,
    port: u16,
    deployment: &str,
    id: &ReplicaId,
) -> Vec<(String, Secret)> {
    let mut env = template.env.clone();
    env.push(("PORT".to_owned(), Secret::new(port.to_string())));
    env.push(("LULL_DEPLOYMENT".to_owned(), Secret::new(deployment)));
    env.push(("LULL_REPLICA".to_owned(), Secret::new(id.as_str())));
    env
}
